//! The scheduler: every partition's search runs in rounds of equal step quanta from one
//! shared budget, so a partition that is quick to refute answers for the whole history
//! however hard the others are, and the answer does not depend on threads or machine.
//!
//! Each round gives every undecided partition the same quantum (at most
//! [`CheckOptions::quantum_steps`], less when the budget left is short), then settles the
//! round in partition order: finished searches give their verdicts; if any partition is
//! illegal, the check ends and the undecided ones are [`PartitionVerdict::Stopped`]; if
//! the memos together exceed the byte budget, the largest is stopped as unknown and freed.
//! A search's path does not depend on where its quanta end, and a round's settlement only
//! on what its searches did, so running a round's quanta on several threads changes the
//! time and nothing else.

use crate::history::{History, Operation};
use crate::report::{Limit, PartitionReport, PartitionVerdict, Report};
use crate::search::{self, Finished, Search};
use crate::{CheckOptions, CheckResult, Model};
use std::time::{Duration, Instant};

/// One partition's search and what it found.
pub(crate) struct Slot<'a, M: Model> {
    label: String,
    ops: Vec<&'a Operation<M::Input, M::Output>>,
    /// `None` once decided, to free its memo.
    search: Option<Search<'a, M>>,
    finished: Option<Finished<'a, M::Input, M::Output>>,
    verdict: Option<PartitionVerdict>,
    steps: u64,
    memo_entries: usize,
    memo_bytes: usize,
    elapsed: Duration,
}

impl<'a, M: Model> Slot<'a, M> {
    /// Runs the search for `quantum` more steps.
    fn advance(&mut self, quantum: u64, measure_time: bool) {
        let Some(search) = self.search.as_mut() else {
            return;
        };
        let started = measure_time.then(now);
        self.finished = search.run_until(search.steps().saturating_add(quantum));
        self.steps = search.steps();
        self.memo_entries = search.memo_entries();
        self.memo_bytes = search.memo_bytes();
        if let Some(started) = started {
            self.elapsed += now() - started;
        }
    }

    fn decide(&mut self, verdict: PartitionVerdict) {
        self.verdict = Some(verdict);
        self.search = None;
    }
}

/// The wall clock, read only when the caller set a deadline or asked for times: neither
/// decides anything inside a simulation run (the deadline is off by default and documented
/// for callers outside simulation).
#[allow(clippy::disallowed_methods)]
fn now() -> Instant {
    Instant::now()
}

/// How a round's quanta are run: one after the other, or on threads.
pub(crate) type RoundRunner<'r, 'a, M> = &'r dyn Fn(&mut [Slot<'a, M>], u64, bool);

/// Runs every quantum of a round on this thread.
pub(crate) fn sequential<M: Model>(slots: &mut [Slot<'_, M>], quantum: u64, measure_time: bool) {
    for slot in slots {
        slot.advance(quantum, measure_time);
    }
}

/// Runs a round's quanta on `threads` scoped threads, each taking every `threads`-th
/// undecided slot. The threads end with the round, so nothing outlives the check.
pub(crate) fn parallel<M>(
    slots: &mut [Slot<'_, M>],
    quantum: u64,
    measure_time: bool,
    threads: usize,
) where
    M: Model + Sync,
    M::State: Send,
    M::Input: Sync,
    M::Output: Sync,
{
    let mut undecided: Vec<&mut Slot<'_, M>> =
        slots.iter_mut().filter(|s| s.search.is_some()).collect();
    let chunk = undecided.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        for part in undecided.chunks_mut(chunk) {
            scope.spawn(move || {
                for slot in part {
                    slot.advance(quantum, measure_time);
                }
            });
        }
    });
}

/// Checks every partition in rounds (see the module docs).
pub(crate) fn run<'a, M: Model>(
    model: &'a M,
    history: &'a History<M::Input, M::Output>,
    options: &CheckOptions,
    run_round: RoundRunner<'_, 'a, M>,
) -> Report {
    let timed = options.measure_time || options.deadline.is_some();
    let started = timed.then(now);
    let mut slots = slots(model, history);
    let mut rounds = 0;
    loop {
        let undecided = slots.iter().filter(|s| s.verdict.is_none()).count();
        if undecided == 0 {
            break;
        }
        if let (Some(deadline), Some(started)) = (options.deadline, started) {
            if now() - started >= deadline {
                stop_all(&mut slots, &Limit::Deadline { deadline });
                break;
            }
        }
        let spent: u64 = slots.iter().map(|s| s.steps).sum();
        let share = options.steps_max.saturating_sub(spent) / undecided as u64;
        if share == 0 {
            let steps_max = options.steps_max;
            stop_all(&mut slots, &Limit::Steps { steps_max });
            break;
        }
        rounds += 1;
        run_round(
            &mut slots,
            share.min(options.quantum_steps.max(1)),
            options.measure_time,
        );
        if settle(model, &mut slots, options) {
            break;
        }
    }
    let elapsed = started.filter(|_| options.measure_time).map(|s| now() - s);
    finish(slots, rounds, elapsed)
}

/// One slot per partition of the model, in its order.
///
/// # Panics
/// If the model's [`Model::partition`] returns an index out of range (a bug in the model).
fn slots<'a, M: Model>(
    model: &'a M,
    history: &'a History<M::Input, M::Output>,
) -> Vec<Slot<'a, M>> {
    let operations = history.operations();
    let mut slots = Vec::new();
    for partition in model.partition(operations) {
        let ops: Vec<&Operation<M::Input, M::Output>> = partition
            .operations
            .iter()
            .map(|&i| {
                assert!(
                    i < operations.len(),
                    "Model::partition returned index {i} for {} operations",
                    operations.len()
                );
                &operations[i]
            })
            .collect();
        slots.push(Slot {
            label: partition.label,
            search: Some(Search::new(model, ops.clone(), None)),
            ops,
            finished: None,
            verdict: None,
            steps: 0,
            memo_entries: 0,
            memo_bytes: 0,
            elapsed: Duration::ZERO,
        });
    }
    slots
}

/// Takes the round's verdicts in partition order; returns whether the check is over (a
/// partition is illegal).
fn settle<M: Model>(model: &M, slots: &mut [Slot<'_, M>], options: &CheckOptions) -> bool {
    let mut illegal = false;
    for slot in slots.iter_mut() {
        match slot.finished.take() {
            None => {}
            Some(Finished::Linearizable(witness)) => {
                slot.decide(PartitionVerdict::Linearizable { witness });
            }
            Some(Finished::Illegal { depth_max, .. }) => {
                illegal = true;
                let explanation = search::explain(model, slot.ops.clone(), depth_max)
                    .expect("a deterministic search changed its verdict")
                    .explain(&slot.label);
                slot.decide(PartitionVerdict::Illegal { explanation });
            }
        }
    }
    if illegal {
        for slot in slots.iter_mut().filter(|s| s.verdict.is_none()) {
            slot.decide(PartitionVerdict::Stopped);
        }
        return true;
    }
    // Over the memo budget: stop the largest memo (the lowest partition among equals), which
    // frees the most and leaves the smaller searches, likelier to finish, running.
    loop {
        let undecided = slots.iter_mut().filter(|s| s.verdict.is_none());
        let held: usize = undecided.map(|s| s.memo_bytes).sum();
        if held <= options.memo_bytes_max {
            return false;
        }
        let largest = slots
            .iter_mut()
            .filter(|s| s.verdict.is_none())
            .rev()
            .max_by_key(|s| s.memo_bytes)
            .expect("some memo holds the bytes");
        let memo_bytes_max = options.memo_bytes_max;
        largest.decide(PartitionVerdict::Unknown {
            limit: Limit::MemoBytes { memo_bytes_max },
        });
    }
}

fn stop_all<M: Model>(slots: &mut [Slot<'_, M>], limit: &Limit) {
    for slot in slots.iter_mut().filter(|s| s.verdict.is_none()) {
        slot.decide(PartitionVerdict::Unknown {
            limit: limit.clone(),
        });
    }
}

/// The report: the first illegal partition answers for the history; otherwise the first
/// unknown one makes it unknown; otherwise it is linearizable.
fn finish<M: Model>(slots: Vec<Slot<'_, M>>, rounds: u64, elapsed: Option<Duration>) -> Report {
    let partitions: Vec<PartitionReport> = slots
        .into_iter()
        .map(|slot| PartitionReport {
            operation_count: slot.ops.len(),
            verdict: slot.verdict.expect("every partition is decided"),
            label: slot.label,
            steps: slot.steps,
            memo_entries: slot.memo_entries,
            memo_bytes: slot.memo_bytes,
            elapsed: elapsed.map(|_| slot.elapsed),
        })
        .collect();
    let illegal = partitions.iter().find_map(|part| match &part.verdict {
        PartitionVerdict::Illegal { explanation } => Some(CheckResult::Illegal {
            partition: part.label.clone(),
            explanation: explanation.clone(),
        }),
        _ => None,
    });
    let unknown = || {
        partitions.iter().find_map(|part| match &part.verdict {
            PartitionVerdict::Unknown { limit } => Some(CheckResult::Unknown {
                reason: format!("partition {}: {limit}", part.label),
            }),
            _ => None,
        })
    };
    let result = illegal.or_else(unknown).unwrap_or(CheckResult::Ok);
    Report {
        result,
        steps: partitions.iter().map(|part| part.steps).sum(),
        partitions,
        rounds,
        elapsed,
    }
}
