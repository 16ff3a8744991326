//! A linearizability checker in the style of Porcupine: the Wing & Gong search with Lowe's
//! memoization, and P-compositionality.
//!
//! A [`History`] is linearizable with respect to a sequential [`Model`] when every
//! completed operation can be given a single instant inside its call..return interval such
//! that applying the operations in that order to the model yields the recorded outputs.
//! Indeterminate operations (no response) may take effect at any instant after their call,
//! or never, following Jepsen.
//!
//! The search walks the events in time order, tries to linearize each operation whose call
//! comes before the first outstanding return, and backtracks when an operation cannot be
//! placed before its return. A memo of every (set of linearized operations, model state)
//! pair already explored cuts the repeated work (Lowe, "Testing for linearizability", 2017).
//! Indeterminate operations need two more reductions, or every subset of them would be a new
//! memo key and a few dozen timeouts would make an illegal history too expensive to refute:
//! a configuration is skipped when one with the same state, the same completed operations
//! and a *subset* of its indeterminate operations was explored (it can do everything this one
//! can), and among indeterminate operations with equal inputs only the latest called is tried
//! (an earlier one stays available whenever a later one is).
//! A model may split a history into independent parts ([`Model::partition`], for example per
//! key or per stream); each part is searched on its own, which is what makes the check fast
//! on long histories (Horn & Kroening, "Faster linearizability checking via
//! P-compositionality", 2015). The parts are searched together, in rounds of equal step
//! quanta from one shared budget ([`CheckOptions`]): a part that is quick to refute answers
//! `illegal` for the whole history however hard the others are, and the answer is the same
//! on one thread or several ([`check_parallel`]) and on any machine. The budgets are steps
//! and memo bytes (deterministic, for simulation runs), plus an optional wall-clock deadline
//! for callers outside simulation; a search they stop answers [`CheckResult::Unknown`],
//! never a pass. [`check_with`] returns a [`Report`]: per part the verdict, steps, memo size
//! and time, a witness order for linearizable parts, and for an illegal part the longest
//! linearizable prefix and the operation that cannot be placed ([`html::render`] draws it).
//!
//! This crate needs neither the simulator nor `--cfg madsim`; `harness` re-exports it as
//! `harness::linearizability` and `harness::history`.
//!
//! ## Modules
//! - [`history`]: histories built call by call ([`History::invoke`]), from recorded
//!   operations, or from ordered call/return events ([`History::from_events`]).
//! - [`models`]: register (read, write, compare-and-set), key-value map (get, put, delete,
//!   append, compare-and-set; a configurable missing-key value), event log.
//! - [`html`]: the picture of a checked history.
//! - [`generate`]: seeded key-value histories for tests and benchmarks.
//!
//! ## Writing your own model
//! Implement [`Model`]: a `State` (`Clone + Ord + Debug`: states are interned in an ordered
//! map, each distinct state stored once), `init`, `step` (the state after an operation with
//! its observed output, `None` if that output is impossible), `step_unknown` (the states an
//! unanswered operation may lead to if it took effect), and optionally `partition` (split
//! by key), `step_all` (several possible next states: override it and write `step` as
//! `self.step_all(..).into_iter().next()`), `state_bytes` (heap held by a state, for the
//! memo budget). Equal inputs must have equal effects.
//!
//! ## Cost
//! Measured in a release build on register histories from 5 clients (see
//! `examples/register_bench.rs`; `examples/kv_bench.rs` measures 50-client key-value
//! histories with hard keys): a linearizable history takes about 2 ms for 1,000
//! operations, 25-40 ms for 10,000 and 0.5 s for 100,000; refuting an illegal one (a
//! read of a value never written, at the end) takes about 40 ms for 1,000 and 0.25-0.4 s
//! for 10,000 operations. Indeterminate operations are what makes a search expensive: each
//! stays a candidate for ever, so refuting a history costs roughly exponentially in the
//! number of them in one partition. With 1% of operations unanswered, 1,000-operation
//! histories are still refuted in under a second, but 10,000-operation ones reach the
//! default step limit (`Unknown`, in about a second). To keep checks decisive: partition
//! (per key, per stream), write unique values, and keep each partition's history short.
//!
//! ```
//! use linearizability::history::History;
//! use linearizability::{check, CheckLimits, CheckResult};
//! use linearizability::models::{Register, RegisterInput, RegisterOutput};
//!
//! let mut history = History::new();
//! let write = history.invoke(1, RegisterInput::Write(1), 0).unwrap();
//! history.complete(write, RegisterOutput::WriteOk, 10).unwrap();
//! let read = history.invoke(2, RegisterInput::Read, 20).unwrap();
//! history.complete(read, RegisterOutput::ReadOk(0), 30).unwrap(); // stale read
//! let result = check(&Register::new(0), &history, &CheckLimits::default());
//! assert!(result.is_illegal(), "{result}");
//! ```

pub mod generate;
pub mod history;
pub mod html;
mod memo;
pub mod models;
mod report;
mod run;
mod search;

pub use report::{Limit, PartitionReport, PartitionVerdict, Report};

use crate::history::{describe, render_timeline, History, OpId, Operation};
use search::Deepest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::{self, Debug, Display, Write as _};
use std::mem::size_of;
use std::time::Duration;

/// A sequential specification: the state machine that a linearizable history must match.
pub trait Model {
    /// The model's state; compared and ordered for the memo.
    type State: Clone + Ord + Debug;
    /// An operation's request. Equal inputs must have equal effects (`step` and
    /// `step_unknown` depend on the input only through its value): the search treats
    /// indeterminate operations with equal inputs as interchangeable.
    type Input: Debug + PartialEq;
    /// An operation's response.
    type Output: Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// The state after `input` answered with `output` in `state`, or `None` when that
    /// output is impossible from that state.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Option<Self::State>;

    /// Every state that `input` answered with `output` may lead to from `state`; empty when
    /// that output is impossible from that state. The checker calls only this method; the
    /// default wraps [`Model::step`]. A model whose operations have nondeterministic effects
    /// (a completed operation that can leave several states) overrides it and implements
    /// `step` as `self.step_all(state, input, output).into_iter().next()`.
    fn step_all(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: &Self::Output,
    ) -> Vec<Self::State> {
        self.step(state, input, output).into_iter().collect()
    }

    /// The estimated bytes of one copy of `state`, for the memo's byte budget
    /// ([`CheckOptions::memo_bytes_max`]). The default is the state's inline size; a state
    /// with heap data (a map, a string) should add what it holds there.
    fn state_bytes(&self, state: &Self::State) -> usize {
        let _ = state;
        size_of::<Self::State>()
    }

    /// The states an indeterminate operation (no response seen) can lead to *if it took
    /// effect*, with any output. The checker separately considers that it never took
    /// effect, so an outcome that changes nothing (a read, a refused write) need not be
    /// listed; return an empty `Vec` when the operation can only leave the state unchanged.
    fn step_unknown(&self, state: &Self::State, input: &Self::Input) -> Vec<Self::State>;

    /// Splits the operations into parts that are linearizable independently (the model's
    /// state is a product of independent parts, each touched by one part's operations).
    /// Every operation should be in exactly one part. The default is one part holding all.
    fn partition(&self, operations: &[Operation<Self::Input, Self::Output>]) -> Vec<Partition> {
        vec![Partition::whole(operations.len())]
    }
}

/// One independent part of a history: indices into the history's operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// A readable name for reports, for example the key or stream.
    pub label: String,
    /// Indices into the slice given to [`Model::partition`].
    pub operations: Vec<usize>,
}

impl Partition {
    /// One part holding all `operation_count` operations, labelled `all`.
    pub fn whole(operation_count: usize) -> Self {
        Self {
            label: "all".to_string(),
            operations: (0..operation_count).collect(),
        }
    }

    /// One part per distinct key, in key order, labelled with the key's `Debug` form.
    pub fn by_key<T, K: Ord + Debug>(items: &[T], key: impl Fn(&T) -> K) -> Vec<Partition> {
        let mut parts: BTreeMap<K, Vec<usize>> = BTreeMap::new();
        for (index, item) in items.iter().enumerate() {
            parts.entry(key(item)).or_default().push(index);
        }
        parts
            .into_iter()
            .map(|(key, operations)| Partition {
                label: format!("{key:?}"),
                operations,
            })
            .collect()
    }
}

/// Bounds on the search, per partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckLimits {
    /// The most search steps spent on one partition before answering
    /// [`CheckResult::Unknown`]: a step is a look at one candidate operation, one backtrack,
    /// or one comparison with an explored configuration.
    pub steps_max: u64,
    /// The most memo entries kept for one partition (this bounds memory: an entry holds a
    /// model state and a compressed set of operations) before answering
    /// [`CheckResult::Unknown`].
    pub memo_entries_max: usize,
}

impl Default for CheckLimits {
    /// Limits that keep one partition to about a second in a release build (10 million
    /// steps took 0.3 to 1 s on register histories) and its memo to about 100 MB.
    fn default() -> Self {
        Self {
            steps_max: 10_000_000,
            memo_entries_max: 1_000_000,
        }
    }
}

/// The verdict of [`check`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum CheckResult {
    /// Every partition is linearizable.
    Ok,
    /// A partition is not linearizable.
    Illegal {
        /// The label of the first partition found not linearizable.
        partition: String,
        /// How far the search got, and what could not be placed.
        explanation: Explanation,
    },
    /// No partition is known illegal, but the search limit stopped the check of one.
    Unknown {
        /// Which partition and which limit.
        reason: String,
    },
}

impl CheckResult {
    /// Whether the history is linearizable.
    pub fn is_ok(&self) -> bool {
        matches!(self, CheckResult::Ok)
    }

    /// Whether the history is shown not linearizable.
    pub fn is_illegal(&self) -> bool {
        matches!(self, CheckResult::Illegal { .. })
    }

    /// Whether the search limit stopped the check.
    pub fn is_unknown(&self) -> bool {
        matches!(self, CheckResult::Unknown { .. })
    }
}

impl Display for CheckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckResult::Ok => f.write_str("linearizable"),
            CheckResult::Illegal {
                partition,
                explanation,
            } => write!(
                f,
                "not linearizable (partition {partition})\n{}",
                explanation.report
            ),
            CheckResult::Unknown { reason } => write!(f, "unknown: {reason}"),
        }
    }
}

/// Why a partition is not linearizable: the longest linearizable prefix the search found,
/// and the operations that could not come next.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// The longest linearizable prefix found, in linearization order.
    pub linearized: Vec<OpId>,
    /// The model state after that prefix (its `Debug` form).
    pub state_after: String,
    /// The operations that could have come next (called before `blocking` returned);
    /// none of them leads to a linearization.
    pub candidates: Vec<OpId>,
    /// The operation whose return was reached before it could be linearized.
    pub blocking: OpId,
    /// All of the above as readable text, with a timeline of the operations involved.
    pub report: String,
}

impl Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.report)
    }
}

/// The nominal bytes of one memo entry, to turn [`CheckLimits::memo_entries_max`] into a
/// byte budget (an entry with its share of the distinct states took 60 to 100 bytes on the
/// register and key-value models).
pub const MEMO_BYTES_PER_ENTRY: usize = 100;

/// Everything [`check_with`] can be told: shared budgets, the quantum, a deadline,
/// threads, and whether to measure time.
///
/// Inside a simulation run, keep `deadline` off, `threads` at 1 and `measure_time` off: the
/// step and byte budgets alone make the answer a function of the history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckOptions {
    /// The most search steps of all partitions together (a step is a look at one candidate
    /// operation, one backtrack, or one comparison with an explored configuration).
    pub steps_max: u64,
    /// The most estimated bytes held by the memos of the undecided partitions together;
    /// above it, the partition with the largest memo is stopped as unknown.
    pub memo_bytes_max: usize,
    /// The steps each undecided partition runs per round. Smaller answers sooner when one
    /// partition is quick to refute among slow ones; larger costs less switching. Part of
    /// the answer's definition: the same quantum gives the same answer everywhere.
    pub quantum_steps: u64,
    /// A wall-clock bound on the whole check, for callers outside simulation; `None` (the
    /// default) for none. The only option that makes the answer depend on the machine.
    pub deadline: Option<Duration>,
    /// Threads for [`check_parallel`] (1: on the caller's thread). Changes only the time.
    pub threads: usize,
    /// Whether to measure wall time per partition for the [`Report`].
    pub measure_time: bool,
}

impl Default for CheckOptions {
    /// The default [`CheckLimits`], a quantum of 10,000 steps (about a millisecond), no
    /// deadline, one thread, no timing.
    fn default() -> Self {
        Self::from(&CheckLimits::default())
    }
}

impl From<&CheckLimits> for CheckOptions {
    fn from(limits: &CheckLimits) -> Self {
        Self {
            steps_max: limits.steps_max,
            memo_bytes_max: limits.memo_entries_max.saturating_mul(MEMO_BYTES_PER_ENTRY),
            quantum_steps: 10_000,
            deadline: None,
            threads: 1,
            measure_time: false,
        }
    }
}

/// Checks `history` against `model` within `limits`, which all partitions share (see
/// [`check_with`]). Returns the first illegal partition found; otherwise `Unknown` if a
/// limit stopped any partition; otherwise `Ok`.
///
/// # Panics
/// If the model's [`Model::partition`] returns an index out of range (a bug in the model).
pub fn check<M: Model>(
    model: &M,
    history: &History<M::Input, M::Output>,
    limits: &CheckLimits,
) -> CheckResult {
    check_with(model, history, &CheckOptions::from(limits)).result
}

/// Checks `history` against `model` with every partition searched in rounds of equal step
/// quanta from the shared budgets of `options`, on the caller's thread; the first round in
/// which a partition is refuted ends the check. Returns the full [`Report`].
///
/// # Panics
/// If the model's [`Model::partition`] returns an index out of range (a bug in the model).
pub fn check_with<M: Model>(
    model: &M,
    history: &History<M::Input, M::Output>,
    options: &CheckOptions,
) -> Report {
    run::run(model, history, options, &run::sequential)
}

/// As [`check_with`], with each round's quanta spread over `options.threads` threads. The
/// report is the same as [`check_with`]'s but for the times: a search's path does not depend
/// on when its quanta run, and each round is settled in partition order. Not for use
/// inside a simulation run, which has no real threads.
///
/// # Panics
/// If the model's [`Model::partition`] returns an index out of range (a bug in the model).
pub fn check_parallel<M>(
    model: &M,
    history: &History<M::Input, M::Output>,
    options: &CheckOptions,
) -> Report
where
    M: Model + Sync,
    M::State: Send,
    M::Input: Sync,
    M::Output: Sync,
{
    let threads = options.threads;
    if threads <= 1 {
        return check_with(model, history, options);
    }
    let round = move |slots: &mut [run::Slot<'_, M>], quantum: u64, measure_time: bool| {
        run::parallel(slots, quantum, measure_time, threads);
    };
    run::run(model, history, options, &round)
}

/// At most this many operations of the prefix are listed in a report.
const REPORT_PREFIX_MAX: usize = 20;

impl<I: Debug, O: Debug> Deepest<'_, I, O> {
    pub(crate) fn explain(&self, label: &str) -> Explanation {
        let total = self.linearized.len();
        let shown = total.min(REPORT_PREFIX_MAX);
        let mut report =
            format!("partition {label}: the longest linearizable prefix has {total} operations");
        if shown < total {
            let _ = write!(report, " (the last {shown} shown)");
        }
        report.push_str(":\n");
        for op in &self.linearized[total - shown..] {
            let _ = writeln!(report, "  {} {}", op.id, describe(op));
        }
        let _ = writeln!(report, "state after it: {}", self.state_after);
        let blocking = self.blocking;
        let _ = writeln!(
            report,
            "no candidate below leads to a linearization; {} had to take effect before its return:",
            blocking.id
        );
        for op in &self.candidates {
            let _ = writeln!(report, "  {} {}", op.id, describe(op));
        }
        let mut involved: Vec<&Operation<I, O>> = self.linearized[total - shown..].to_vec();
        involved.extend(self.candidates.iter().copied());
        let _ = write!(
            report,
            "timeline of these operations:\n{}",
            render_timeline(&involved)
        );
        Explanation {
            linearized: self.linearized.iter().map(|op| op.id).collect(),
            state_after: self.state_after.clone(),
            candidates: self.candidates.iter().map(|op| op.id).collect(),
            blocking: blocking.id,
            report,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_by_key_groups_in_key_order() {
        let parts = Partition::by_key(&["b", "a", "b"], |s| *s);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].label, "\"a\"");
        assert_eq!(parts[0].operations, vec![1]);
        assert_eq!(parts[1].operations, vec![0, 2]);
    }
}
