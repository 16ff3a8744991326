//! Tests of the shared-budget scheduler and the rich report: an illegal partition among
//! hard ones, sequential and parallel agreement, witnesses that replay, a model with
//! several next states, and each limit.

use linearizability::generate::{kv_history, KvHistory, KvHistoryShape};
use linearizability::history::{History, OpId};
use linearizability::models::{KeyValue, KvInput, KvOutput};
use linearizability::{
    check_parallel, check_with, CheckOptions, CheckResult, Limit, Model, PartitionVerdict, Report,
};
use std::collections::BTreeSet;
use std::time::Duration;

fn options() -> CheckOptions {
    CheckOptions {
        steps_max: 20_000_000,
        quantum_steps: 1_000,
        ..CheckOptions::default()
    }
}

/// The sub-history of the operations on `keys`, with their ids.
fn only_keys(history: &KvHistory, keys: &[u64]) -> KvHistory {
    let ops: Vec<_> = history
        .operations()
        .iter()
        .filter(|op| keys.contains(op.input.key()))
        .cloned()
        .collect();
    History::from_operations(ops, history.len()).unwrap()
}

fn shape() -> KvHistoryShape {
    KvHistoryShape {
        operation_count: 2_000,
        key_count: 10,
        hard_key_count: 3,
        ..KvHistoryShape::default()
    }
}

#[test]
fn an_illegal_partition_among_hard_ones_answers_within_twice_its_solo_steps() {
    // Goal: the 3.2 s case. Hard keys that end unknown alone must not delay the
    // answer: the illegal key is refuted after no more of its own steps than alone (its
    // path does not depend on the others), the hard keys get at most a quantum more than
    // that each, and the whole check stays far inside the budget.
    let history = kv_history(&shape());
    let model = KeyValue::new();
    let alone = check_with(&model, &only_keys(&history, &[0]), &options());
    assert!(alone.result.is_illegal(), "{}", alone.result);
    let solo_steps = alone.steps;
    // A budget of ten times what refuting the illegal key takes, which each hard key
    // exhausts alone.
    let options = CheckOptions {
        steps_max: 10 * solo_steps,
        ..options()
    };
    assert!(
        solo_steps > 10 * options.quantum_steps,
        "refuting takes many quanta: {solo_steps}"
    );
    for hard in 10..13 {
        let hard_alone = check_with(&model, &only_keys(&history, &[hard]), &options);
        assert!(
            hard_alone.result.is_unknown(),
            "key {hard}: {}",
            hard_alone.result
        );
    }

    let report = check_with(&model, &history, &options);
    let CheckResult::Illegal { partition, .. } = &report.result else {
        panic!("expected illegal, got {}", report.result);
    };
    assert_eq!(partition, "0");
    let illegal = report.partition("0").unwrap();
    assert!(
        illegal.steps <= 2 * solo_steps,
        "{} > 2 x {solo_steps}",
        illegal.steps
    );
    assert_eq!(illegal.steps, solo_steps, "the same path, in quanta");
    for hard in ["10", "11", "12"] {
        let part = report.partition(hard).unwrap();
        assert_eq!(part.verdict, PartitionVerdict::Stopped, "{hard}");
        assert!(
            part.steps <= solo_steps + 2 * options.quantum_steps,
            "{hard}: {}",
            part.steps
        );
    }
    let partitions = report.partitions.len() as u64;
    assert!(report.steps <= partitions * (solo_steps + 2 * options.quantum_steps));
    // Every hard key spent no more than the illegal one and a quantum or two.
    let hard_steps: u64 = (10..13)
        .map(|k| report.partition(&k.to_string()).unwrap().steps)
        .sum();
    assert!(
        hard_steps <= 3 * (solo_steps + 2 * options.quantum_steps),
        "{hard_steps}"
    );
    assert!(
        report.steps < options.steps_max,
        "answered before the budget ran out"
    );
}

#[test]
fn sequential_and_parallel_checks_give_the_same_report() {
    // Goal: threads change only the time. Reports carry no times unless asked for.
    let model = KeyValue::new();
    for illegal in [true, false] {
        let history = kv_history(&KvHistoryShape { illegal, ..shape() });
        let options = CheckOptions {
            steps_max: 2_000_000,
            ..options()
        };
        let sequential = check_with(&model, &history, &options);
        let threads = CheckOptions {
            threads: 3,
            ..options
        };
        let parallel = check_parallel(&model, &history, &threads);
        assert_eq!(sequential, parallel);
        assert_eq!(sequential.result.is_illegal(), illegal);
        assert!(
            illegal || sequential.result.is_unknown(),
            "the hard keys stop at the budget"
        );
    }
}

#[test]
fn step_counts_and_memo_sizes_are_the_ordered_memo_s() {
    // Goal: the memo's data structures change only the time. Step counts (and with them
    // where every budget stops a search), memo entries and the byte estimate are pinned to
    // what the memo kept as one ordered set of (completed, state, indeterminate) keys
    // reported, on an illegal history with hard keys under the step budget and under a
    // memo byte budget.
    let model = KeyValue::new();
    let history = kv_history(&KvHistoryShape {
        seed: 1,
        operation_count: 2_000,
        key_count: 10,
        hard_key_count: 3,
        hard_writes: 25,
        indeterminate_per_mille: 20,
        illegal: true,
        ..KvHistoryShape::default()
    });
    let memo = |report: &Report| {
        let entries: usize = report.partitions.iter().map(|p| p.memo_entries).sum();
        let bytes: usize = report.partitions.iter().map(|p| p.memo_bytes).sum();
        (report.steps, report.rounds, entries, bytes)
    };
    let steps = CheckOptions {
        steps_max: 3_000_000,
        memo_bytes_max: 100_000_000,
        quantum_steps: 10_000,
        ..CheckOptions::default()
    };
    let report = check_with(&model, &history, &steps);
    assert!(report.result.is_illegal(), "{}", report.result);
    assert_eq!(memo(&report), (474_063, 9, 50_552, 3_901_136));
    let bytes = CheckOptions {
        steps_max: 5_000_000,
        memo_bytes_max: 300_000,
        quantum_steps: 5_000,
        ..CheckOptions::default()
    };
    let report = check_with(&model, &history, &bytes);
    assert!(report.result.is_unknown(), "{}", report.result);
    assert_eq!(memo(&report), (128_286, 8, 17_085, 1_365_656));
}

/// Replays `witness` through `model` from its initial state, following every possible
/// state: whether the observed outputs are reproduced and every completed operation is in.
fn replays<M: Model>(
    model: &M,
    history: &History<M::Input, M::Output>,
    witness: &[OpId],
) -> Result<(), String> {
    let mut states = vec![model.init()];
    let mut placed = BTreeSet::new();
    for &id in witness {
        let op = history
            .get(id)
            .ok_or(format!("{id} is not in the history"))?;
        if !placed.insert(id) {
            return Err(format!("{id} placed twice"));
        }
        let next: Vec<M::State> = states
            .iter()
            .flat_map(|state| match &op.output {
                Some(output) => model.step_all(state, &op.input, output),
                None => model.step_unknown(state, &op.input),
            })
            .collect();
        if next.is_empty() {
            return Err(format!("{id} cannot follow the witness before it"));
        }
        states = next;
    }
    for op in history.operations().iter().filter(|op| op.is_complete()) {
        if !placed.contains(&op.id) {
            return Err(format!("completed {} is not in the witness", op.id));
        }
    }
    // Each operation's interval must hold its place: nothing placed later returned before
    // it was called.
    for (position, &id) in witness.iter().enumerate() {
        let op = history.get(id).unwrap();
        for &later in &witness[position + 1..] {
            if history.get(later).unwrap().precedes(op) {
                return Err(format!("{later} precedes {id} but is placed after it"));
            }
        }
    }
    Ok(())
}

#[test]
fn witness_orders_replay_to_the_observed_results() {
    // Goal: a linearizable partition's witness is a real linearization, indeterminate
    // operations included, checked by an independent replay.
    let history = kv_history(&KvHistoryShape {
        illegal: false,
        hard_key_count: 0,
        indeterminate_per_mille: 50,
        ..shape()
    });
    let model = KeyValue::new();
    let report = check_with(&model, &history, &options());
    assert!(report.result.is_ok(), "{}", report.result);
    let mut checked = 0;
    for part in &report.partitions {
        let PartitionVerdict::Linearizable { witness } = &part.verdict else {
            panic!("{}: {:?}", part.label, part.verdict);
        };
        let key: u64 = part.label.parse().unwrap();
        let sub = only_keys(&history, &[key]);
        replays(&model, &sub, witness).unwrap_or_else(|e| panic!("key {key}: {e}"));
        checked += witness.len();
    }
    assert!(checked > 1_000, "{checked} operations replayed");
    // And the replay can fail: a witness with two operations swapped does not replay.
    let PartitionVerdict::Linearizable { witness } = &report.partitions[0].verdict else {
        unreachable!()
    };
    let sub = only_keys(&history, &[0]);
    let broken: Vec<OpId> = witness.iter().rev().copied().collect();
    assert!(replays(&model, &sub, &broken).is_err());
}

/// A counter whose increment adds 1 or 2, unseen by the client: a completed operation may
/// lead to two states.
struct SloppyCounter;

impl Model for SloppyCounter {
    type State = u32;
    type Input = &'static str;
    type Output = Option<u32>;

    fn init(&self) -> u32 {
        0
    }

    fn step(&self, state: &u32, input: &&'static str, output: &Option<u32>) -> Option<u32> {
        self.step_all(state, input, output).into_iter().next()
    }

    fn step_all(&self, state: &u32, input: &&'static str, output: &Option<u32>) -> Vec<u32> {
        match (*input, output) {
            ("inc", None) => vec![state + 1, state + 2],
            ("read", Some(seen)) if seen == state => vec![*state],
            _ => Vec::new(),
        }
    }

    fn step_unknown(&self, state: &u32, input: &&'static str) -> Vec<u32> {
        self.step_all(state, input, &None)
    }
}

#[test]
fn a_model_with_several_next_states_is_searched_through_each() {
    // Goal: `step_all` lets a completed operation lead to several states; the search must
    // try each (a read of 3 after two increments needs 1 + 2 or 2 + 1; 5 needs more).
    let history = |seen: u32| {
        let mut history: History<&'static str, Option<u32>> = History::new();
        for (client, at) in [(1, 0), (2, 10)] {
            let inc = history.invoke(client, "inc", at).unwrap();
            history.complete(inc, None, at + 5).unwrap();
        }
        let read = history.invoke(3, "read", 20).unwrap();
        history.complete(read, Some(seen), 25).unwrap();
        history
    };
    for (seen, linearizable) in [(2, true), (3, true), (4, true), (1, false), (5, false)] {
        let report = check_with(&SloppyCounter, &history(seen), &options());
        assert_eq!(
            report.result.is_ok(),
            linearizable,
            "read {seen}: {}",
            report.result
        );
        assert!(report.result.is_ok() || report.result.is_illegal());
    }
}

#[test]
fn each_limit_answers_unknown_and_names_itself() {
    // Goal: unknown says which limit stopped it, never passes.
    let history = kv_history(&KvHistoryShape {
        illegal: false,
        hard_key_count: 2,
        ..shape()
    });
    let model = KeyValue::new();
    let steps = CheckOptions {
        steps_max: 300_000,
        ..options()
    };
    let report = check_with(&model, &history, &steps);
    assert!(report.result.is_unknown(), "{}", report.result);
    let hard = report.partition("10").unwrap();
    assert_eq!(
        hard.verdict,
        PartitionVerdict::Unknown {
            limit: Limit::Steps { steps_max: 300_000 }
        }
    );
    assert!(report.steps <= 300_000 + report.partitions.len() as u64 * 1_000);
    assert!(report.partition("3").unwrap().verdict != PartitionVerdict::Stopped);

    let memo = CheckOptions {
        memo_bytes_max: 2_000_000,
        ..options()
    };
    let report = check_with(&model, &history, &memo);
    let reason = report.result.to_string();
    assert!(reason.contains("memo_bytes_max"), "{reason}");
    let stopped = report
        .partitions
        .iter()
        .filter(|p| matches!(p.verdict, PartitionVerdict::Unknown { .. }));
    assert!(stopped.count() >= 1);
    for part in &report.partitions[..10] {
        assert!(
            matches!(part.verdict, PartitionVerdict::Linearizable { .. }),
            "{}",
            part.label
        );
    }

    let deadline = CheckOptions {
        deadline: Some(Duration::ZERO),
        ..options()
    };
    let report = check_with(&model, &history, &deadline);
    assert!(
        report.result.to_string().contains("deadline"),
        "{}",
        report.result
    );
    assert_eq!(report.steps, 0);
}

#[test]
fn key_value_strings_with_appends_check_as_a_system_that_reads_missing_as_empty() {
    // Goal: the configurable missing value and appends reach the checker.
    let model: KeyValue<&str, String> = KeyValue::strings();
    let mut history = History::new();
    let get = history.invoke(1, KvInput::Get { key: "k" }, 0).unwrap();
    history
        .complete(get, KvOutput::GetOk(Some(String::new())), 1)
        .unwrap();
    let append = |value: &str| KvInput::Append {
        key: "k",
        value: value.into(),
    };
    let a = history.invoke(1, append("a"), 2).unwrap();
    let b = history.invoke(2, append("b"), 2).unwrap();
    history.complete(a, KvOutput::AppendOk, 5).unwrap();
    history.complete(b, KvOutput::AppendOk, 5).unwrap();
    let get = history.invoke(1, KvInput::Get { key: "k" }, 6).unwrap();
    let mut illegal = history.clone();
    history
        .complete(get, KvOutput::GetOk(Some("ba".into())), 7)
        .unwrap();
    illegal
        .complete(get, KvOutput::GetOk(Some("aa".into())), 7)
        .unwrap();
    assert!(check_with(&model, &history, &options()).result.is_ok());
    assert!(check_with(&model, &illegal, &options()).result.is_illegal());
}
