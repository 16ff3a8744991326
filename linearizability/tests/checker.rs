//! Tests of the linearizability checker on known linearizable and non-linearizable histories
//! for each ready-made model, indeterminate operations, the search limit, partitioning, and
//! property tests against histories generated from sequential executions and against a
//! brute-force oracle.

use linearizability::history::{History, OpId, Operation};
use linearizability::models::{
    EventLog, ExpectedVersion, KeyValue, KvInput, KvOutput, LogInput, LogOutput, Register,
    RegisterInput, RegisterOutput,
};
use linearizability::{check, CheckLimits, CheckResult, Model, Partition};
use proptest::prelude::*;

/// One recorded operation: client, input, call time, and the output with its return time
/// (`None`: no response).
type Spec<I, O> = (u64, I, u64, Option<(O, u64)>);

fn history<I, O>(specs: Vec<Spec<I, O>>) -> History<I, O> {
    let operations = specs
        .into_iter()
        .enumerate()
        .map(|(id, (client, input, call_ns, response))| {
            let (output, return_ns) = match response {
                Some((output, return_ns)) => (Some(output), Some(return_ns)),
                None => (None, None),
            };
            Operation {
                id: OpId(id as u64),
                client,
                input,
                call_ns,
                output,
                return_ns,
            }
        })
        .collect();
    History::from_operations(operations, 100_000).expect("valid history")
}

fn check_default<M: Model>(model: &M, history: &History<M::Input, M::Output>) -> CheckResult {
    check(model, history, &CheckLimits::default())
}

use RegisterInput::{Cas, Read, Write};
use RegisterOutput::{CasFailed, CasOk, ReadOk, WriteOk};

fn register_check(specs: Vec<Spec<RegisterInput<u32>, RegisterOutput<u32>>>) -> CheckResult {
    check_default(&Register::new(0), &history(specs))
}

#[test]
fn empty_history_is_linearizable() {
    assert!(register_check(vec![]).is_ok());
}

#[test]
fn sequential_write_then_read_of_it_is_linearizable() {
    let result = register_check(vec![
        (1, Write(1), 0, Some((WriteOk, 10))),
        (2, Read, 20, Some((ReadOk(1), 30))),
    ]);
    assert!(result.is_ok(), "{result}");
}

#[test]
fn stale_read_after_a_completed_write_is_illegal_and_explained() {
    let result = register_check(vec![
        (1, Write(1), 0, Some((WriteOk, 10))),
        (2, Read, 20, Some((ReadOk(0), 30))),
    ]);
    let CheckResult::Illegal {
        partition,
        explanation,
    } = &result
    else {
        panic!("expected illegal, got {result}");
    };
    assert_eq!(partition, "all");
    assert_eq!(explanation.linearized, vec![OpId(0)]);
    assert_eq!(explanation.state_after, "1");
    assert_eq!(explanation.blocking, OpId(1));
    assert_eq!(explanation.candidates, vec![OpId(1)]);
    let text = result.to_string();
    assert!(
        text.contains("longest linearizable prefix has 1 operations"),
        "{text}"
    );
    assert!(text.contains("Read -> ReadOk(0)"), "{text}");
    assert!(text.contains("timeline"), "{text}");
}

#[test]
fn explanation_of_a_long_history_shows_the_end_of_the_prefix() {
    // 30 sequential writes, then a read of the first value: the report lists the last 20
    // writes of the prefix, but the explanation keeps all 30 ids.
    let mut specs: Vec<Spec<_, _>> = (0..30)
        .map(|i| {
            (
                1,
                Write(i),
                u64::from(i) * 10,
                Some((WriteOk, u64::from(i) * 10 + 5)),
            )
        })
        .collect();
    specs.push((2, Read, 1_000, Some((ReadOk(0), 1_010))));
    let result = register_check(specs);
    let CheckResult::Illegal { explanation, .. } = &result else {
        panic!("expected illegal, got {result}");
    };
    assert_eq!(explanation.linearized.len(), 30);
    assert_eq!(explanation.state_after, "29");
    assert!(
        explanation.report.contains("(the last 20 shown)"),
        "{result}"
    );
    assert!(!explanation.report.contains("Write(9) "), "{result}");
    assert!(explanation.report.contains("Write(10) "), "{result}");
}

#[test]
fn read_concurrent_with_a_write_may_see_either_value() {
    for seen in [0, 1] {
        let result = register_check(vec![
            (1, Write(1), 0, Some((WriteOk, 100))),
            (2, Read, 50, Some((ReadOk(seen), 60))),
        ]);
        assert!(result.is_ok(), "read of {seen}: {result}");
    }
    let result = register_check(vec![
        (1, Write(1), 0, Some((WriteOk, 100))),
        (2, Read, 50, Some((ReadOk(2), 60))),
    ]);
    assert!(result.is_illegal(), "{result}");
}

#[test]
fn touching_intervals_are_concurrent() {
    // The read is called at the instant the write returns: either order is allowed.
    let result = register_check(vec![
        (1, Write(1), 0, Some((WriteOk, 10))),
        (2, Read, 10, Some((ReadOk(0), 20))),
    ]);
    assert!(result.is_ok(), "{result}");
}

#[test]
fn two_concurrent_writes_seen_in_opposite_orders_are_illegal() {
    // Both writes overlap; afterwards client 3 sees 1 then 2 while client 4 sees 2 then 1.
    let writes = vec![
        (1, Write(1), 0, Some((WriteOk, 100))),
        (2, Write(2), 0, Some((WriteOk, 100))),
    ];
    let mut opposite = writes.clone();
    opposite.extend([
        (3, Read, 10, Some((ReadOk(1), 20))),
        (3, Read, 30, Some((ReadOk(2), 40))),
        (4, Read, 10, Some((ReadOk(2), 20))),
        (4, Read, 30, Some((ReadOk(1), 40))),
    ]);
    let result = register_check(opposite);
    assert!(result.is_illegal(), "{result}");

    let mut same = writes;
    same.extend([
        (3, Read, 10, Some((ReadOk(1), 20))),
        (3, Read, 30, Some((ReadOk(2), 40))),
        (4, Read, 10, Some((ReadOk(1), 20))),
        (4, Read, 30, Some((ReadOk(2), 40))),
    ]);
    let result = register_check(same);
    assert!(result.is_ok(), "{result}");
}

#[test]
fn cas_race_with_two_winners_is_illegal_and_with_one_winner_is_not() {
    let cas = |new| Cas { expected: 0, new };
    let two_winners = register_check(vec![
        (1, cas(1), 0, Some((CasOk, 10))),
        (2, cas(2), 0, Some((CasOk, 10))),
    ]);
    assert!(two_winners.is_illegal(), "{two_winners}");

    let one_winner = vec![
        (1, cas(1), 0, Some((CasOk, 10))),
        (2, cas(2), 0, Some((CasFailed, 10))),
        (3, Read, 20, Some((ReadOk(1), 30))),
    ];
    assert!(register_check(one_winner.clone()).is_ok());
    let mut wrong_winner = one_winner;
    wrong_winner[2] = (3, Read, 20, Some((ReadOk(2), 30)));
    assert!(register_check(wrong_winner).is_illegal());
}

#[test]
fn indeterminate_write_may_or_may_not_have_taken_effect() {
    // The write got no response; a later read may see it or not.
    for seen in [0, 1] {
        let result = register_check(vec![
            (1, Write(1), 0, None),
            (2, Read, 50, Some((ReadOk(seen), 60))),
        ]);
        assert!(result.is_ok(), "read of {seen}: {result}");
    }
    // It may take effect long after the client gave up, between two reads...
    let late = register_check(vec![
        (1, Write(1), 0, None),
        (2, Read, 50, Some((ReadOk(0), 60))),
        (2, Read, 500, Some((ReadOk(1), 600))),
    ]);
    assert!(late.is_ok(), "{late}");
    // ...but once seen it stays: a write is not undone.
    let undone = register_check(vec![
        (1, Write(1), 0, None),
        (2, Read, 50, Some((ReadOk(1), 60))),
        (2, Read, 500, Some((ReadOk(0), 600))),
    ]);
    assert!(undone.is_illegal(), "{undone}");
    // And never before its call.
    let early = register_check(vec![
        (2, Read, 0, Some((ReadOk(1), 10))),
        (1, Write(1), 20, None),
    ]);
    assert!(early.is_illegal(), "{early}");
}

#[test]
fn two_indeterminate_writes_may_take_effect_in_either_order_at_any_time() {
    // Both writes are pending for ever. The read of 1 puts W1 first; the failed CAS(1 -> 0)
    // then needs W0 to land after the read. A checker that confuses "W1 used" with "W1
    // still available" (or drops one of two pending writes) rejects this.
    let result = register_check(vec![
        (0, Write(0), 0, None),
        (1, Write(1), 0, None),
        (2, Read, 1, Some((ReadOk(1), 11))),
        (
            2,
            Cas {
                expected: 1,
                new: 0,
            },
            20,
            Some((CasFailed, 20)),
        ),
    ]);
    assert!(result.is_ok(), "{result}");
    // Without W0 the CAS must have succeeded.
    let result = register_check(vec![
        (1, Write(1), 0, None),
        (2, Read, 1, Some((ReadOk(1), 11))),
        (
            2,
            Cas {
                expected: 1,
                new: 0,
            },
            20,
            Some((CasFailed, 20)),
        ),
    ]);
    assert!(result.is_illegal(), "{result}");
}

#[test]
fn indeterminate_cas_may_or_may_not_have_taken_effect() {
    for seen in [0, 7] {
        let result = register_check(vec![
            (
                1,
                Cas {
                    expected: 0,
                    new: 7,
                },
                0,
                None,
            ),
            (2, Read, 50, Some((ReadOk(seen), 60))),
        ]);
        assert!(result.is_ok(), "read of {seen}: {result}");
    }
    // A CAS that cannot succeed cannot explain the value.
    let result = register_check(vec![
        (
            1,
            Cas {
                expected: 3,
                new: 7,
            },
            0,
            None,
        ),
        (2, Read, 50, Some((ReadOk(7), 60))),
    ]);
    assert!(result.is_illegal(), "{result}");
}

#[test]
fn a_definitely_failed_write_is_removed_from_the_history() {
    let build = |fail: bool| {
        let mut history = History::new();
        let write = history.invoke(1, Write(1), 0).unwrap();
        if fail {
            history.fail_definitely(write).unwrap();
        } else {
            history.mark_indeterminate(write).unwrap();
        }
        let read = history.invoke(2, Read, 50).unwrap();
        history.complete(read, ReadOk(1), 60).unwrap();
        history
    };
    let model = Register::new(0u32);
    assert!(check_default(&model, &build(false)).is_ok());
    assert!(check_default(&model, &build(true)).is_illegal());
}

/// `writers` writes of distinct values, all concurrent, then a read of a value never
/// written: illegal, but the search must try every order of the writes to know it.
fn adversarial_register_history(writers: u32) -> History<RegisterInput<u32>, RegisterOutput<u32>> {
    let mut specs: Vec<Spec<_, _>> = (1..=writers)
        .map(|value| (u64::from(value), Write(value), 0, Some((WriteOk, 1_000))))
        .collect();
    specs.push((0, Read, 2_000, Some((ReadOk(u32::MAX), 2_001))));
    history(specs)
}

#[test]
fn search_limit_answers_unknown_on_an_adversarial_history() {
    // The same shape is found illegal when small...
    let small = check_default(&Register::new(0), &adversarial_register_history(8));
    assert!(small.is_illegal(), "{small}");
    // ...and, when large, stopped by the step limit rather than searching 2^40 orders.
    let limits = CheckLimits {
        steps_max: 100_000,
        memo_entries_max: 1_000_000,
    };
    let large = check(
        &Register::new(0),
        &adversarial_register_history(40),
        &limits,
    );
    let CheckResult::Unknown { reason } = &large else {
        panic!("expected unknown, got {large}");
    };
    assert!(reason.contains("steps_max"), "{reason}");
    // The memo limit stops it too.
    let limits = CheckLimits {
        steps_max: u64::MAX,
        memo_entries_max: 10_000,
    };
    let large = check(
        &Register::new(0),
        &adversarial_register_history(40),
        &limits,
    );
    assert!(large.to_string().contains("memo_entries_max"), "{large}");
}

#[test]
fn an_illegal_partition_is_reported_even_when_another_hits_the_limit() {
    let mut specs: Vec<Spec<KvInput<u32, u32>, KvOutput<u32>>> = (1..=40)
        .map(|value| {
            (
                u64::from(value),
                KvInput::Put { key: 0, value },
                0,
                Some((KvOutput::PutOk, 1_000)),
            )
        })
        .collect();
    specs.push((
        0,
        KvInput::Get { key: 0 },
        2_000,
        Some((KvOutput::GetOk(Some(99)), 2_001)),
    ));
    let limits = CheckLimits {
        steps_max: 50_000,
        memo_entries_max: 1_000_000,
    };
    let only_adversarial = check(&KeyValue::new(), &history(specs.clone()), &limits);
    assert!(only_adversarial.is_unknown(), "{only_adversarial}");

    specs.push((
        50,
        KvInput::Put { key: 1, value: 5 },
        0,
        Some((KvOutput::PutOk, 10)),
    ));
    specs.push((
        51,
        KvInput::Get { key: 1 },
        20,
        Some((KvOutput::GetOk(None), 30)),
    ));
    let result = check(&KeyValue::new(), &history(specs), &limits);
    let CheckResult::Illegal { partition, .. } = &result else {
        panic!("expected illegal, got {result}");
    };
    assert_eq!(partition, "1");
}

#[test]
fn kv_violation_in_one_key_is_found_and_other_keys_pass() {
    use KvInput::{Delete, Get, Put};
    use KvOutput::{DeleteOk, GetOk, PutOk};
    let good = vec![
        (1, Put { key: "a", value: 1 }, 0, Some((PutOk, 10))),
        (2, Get { key: "a" }, 20, Some((GetOk(Some(1)), 30))),
        (3, Put { key: "c", value: 3 }, 0, Some((PutOk, 100))),
        (4, Get { key: "c" }, 10, Some((GetOk(None), 20))),
        (4, Delete { key: "c" }, 200, Some((DeleteOk, 210))),
        (4, Get { key: "c" }, 220, Some((GetOk(None), 230))),
    ];
    assert!(check_default(&KeyValue::new(), &history(good.clone())).is_ok());

    let mut bad = good;
    bad.push((5, Put { key: "b", value: 2 }, 0, Some((PutOk, 10))));
    bad.push((6, Get { key: "b" }, 20, Some((GetOk(None), 30))));
    let result = check_default(&KeyValue::new(), &history(bad));
    let CheckResult::Illegal {
        partition,
        explanation,
    } = &result
    else {
        panic!("expected illegal, got {result}");
    };
    assert_eq!(partition, "\"b\"");
    assert_eq!(explanation.blocking, OpId(7));
}

#[test]
fn a_read_across_keys_would_be_wrong_without_partitioning_by_key() {
    // Partitioning must not lose cross-operation facts inside one key: a CAS race on one
    // key among other keys' traffic is still caught.
    use KvInput::{Cas, Put};
    use KvOutput::{CasOk, PutOk};
    let cas = |new| Cas {
        key: 7,
        expected: None,
        new,
    };
    let result = check_default(
        &KeyValue::new(),
        &history(vec![
            (1, cas(1), 0, Some((CasOk, 10))),
            (2, Put { key: 8, value: 1 }, 0, Some((PutOk, 10))),
            (3, cas(2), 0, Some((CasOk, 10))),
        ]),
    );
    let CheckResult::Illegal { partition, .. } = &result else {
        panic!("expected illegal, got {result}");
    };
    assert_eq!(partition, "7");
}

fn append(
    stream: &'static str,
    expected_version: ExpectedVersion,
    events: u64,
) -> LogInput<&'static str> {
    LogInput::Append {
        stream,
        expected_version,
        events,
    }
}

#[test]
fn log_concurrent_appends_at_the_same_expected_version_cannot_both_win() {
    let exactly = ExpectedVersion::Exactly(0);
    let prefix = vec![(
        1,
        append("s", ExpectedVersion::NoStream, 1),
        0,
        Some((LogOutput::Appended { version: 0 }, 10)),
    )];
    let mut both_win = prefix.clone();
    both_win.push((
        2,
        append("s", exactly, 1),
        20,
        Some((LogOutput::Appended { version: 1 }, 40)),
    ));
    both_win.push((
        3,
        append("s", exactly, 1),
        20,
        Some((LogOutput::Appended { version: 1 }, 40)),
    ));
    let result = check_default(&EventLog::new(), &history(both_win));
    assert!(result.is_illegal(), "{result}");

    let mut one_wins = prefix;
    one_wins.push((
        2,
        append("s", exactly, 2),
        20,
        Some((LogOutput::Appended { version: 2 }, 40)),
    ));
    one_wins.push((
        3,
        append("s", exactly, 1),
        20,
        Some((LogOutput::WrongExpectedVersion { actual: Some(2) }, 40)),
    ));
    one_wins.push((
        3,
        LogInput::Read { stream: "s" },
        50,
        Some((LogOutput::ReadOk { version: Some(2) }, 60)),
    ));
    let result = check_default(&EventLog::new(), &history(one_wins.clone()));
    assert!(result.is_ok(), "{result}");

    // The loser must report the version it really saw.
    let mut wrong_actual = one_wins;
    wrong_actual[2].3 = Some((LogOutput::WrongExpectedVersion { actual: Some(0) }, 40));
    let result = check_default(&EventLog::new(), &history(wrong_actual));
    assert!(result.is_illegal(), "{result}");
}

#[test]
fn log_indeterminate_append_may_or_may_not_have_taken_effect() {
    let lost = (1, append("s", ExpectedVersion::NoStream, 3), 0, None);
    // A later append that assumes it took effect, or one that assumes it did not: both fine.
    for (expected_version, version) in [
        (ExpectedVersion::Exactly(2), 3),
        (ExpectedVersion::NoStream, 0),
    ] {
        let specs = vec![
            lost.clone(),
            (
                2,
                append("s", expected_version, 1),
                100,
                Some((LogOutput::Appended { version }, 110)),
            ),
        ];
        let result = check_default(&EventLog::new(), &history(specs));
        assert!(result.is_ok(), "{expected_version:?}: {result}");
    }
    // A read cannot see part of the batch.
    let partial = vec![
        lost,
        (
            2,
            LogInput::Read { stream: "s" },
            100,
            Some((LogOutput::ReadOk { version: Some(1) }, 110)),
        ),
    ];
    let result = check_default(&EventLog::new(), &history(partial));
    assert!(result.is_illegal(), "{result}");
}

#[test]
fn log_violation_in_one_stream_is_found_and_other_streams_pass() {
    let ok = |version| Some((LogOutput::Appended { version }, 10));
    let read = |stream, version| {
        (
            9,
            LogInput::Read { stream },
            20,
            Some((LogOutput::ReadOk { version }, 30)),
        )
    };
    let specs = vec![
        (1, append("a", ExpectedVersion::Any, 2), 0, ok(1)),
        (2, append("b", ExpectedVersion::NoStream, 1), 0, ok(0)),
        (3, append("c", ExpectedVersion::Any, 1), 0, ok(0)),
        read("a", Some(1)),
        read("b", None), // lost acknowledged append
        read("c", Some(0)),
    ];
    let result = check_default(&EventLog::new(), &history(specs));
    let CheckResult::Illegal {
        partition,
        explanation,
    } = &result
    else {
        panic!("expected illegal, got {result}");
    };
    assert_eq!(partition, "\"b\"");
    assert_eq!(explanation.linearized, vec![OpId(1)]);
    assert_eq!(explanation.blocking, OpId(4));
}

#[test]
fn check_result_round_trips_through_json() {
    let result = register_check(vec![
        (1, Write(1), 0, Some((WriteOk, 10))),
        (2, Read, 20, Some((ReadOk(0), 30))),
    ]);
    let json = serde_json::to_string(&result).unwrap();
    assert!(json.contains("\"result\":\"illegal\""), "{json}");
    let back: CheckResult = serde_json::from_str(&json).unwrap();
    assert_eq!(back, result);
}

/// A model with a custom partition and several outcomes for an indeterminate operation:
/// "add a random number from a set" to a counter.
struct Counter;

impl Model for Counter {
    type State = u32;
    type Input = Vec<u32>; // the choices an add draws from; empty: a read
    type Output = u32; // the counter after the add, or the value read

    fn init(&self) -> u32 {
        0
    }

    fn step(&self, state: &u32, input: &Vec<u32>, output: &u32) -> Option<u32> {
        let possible = input.is_empty() && output == state
            || input.iter().any(|choice| state + choice == *output);
        possible.then_some(*output)
    }

    fn step_unknown(&self, state: &u32, input: &Vec<u32>) -> Vec<u32> {
        input.iter().map(|choice| state + choice).collect()
    }
}

#[test]
fn indeterminate_operation_with_several_possible_effects_tries_each() {
    // The add drew 1, 10 or 100; the reads pin which one (the middle choice) took effect.
    let result = check_default(
        &Counter,
        &history(vec![
            (1, vec![1, 10, 100], 0, None),
            (2, vec![], 50, Some((10, 60))),
        ]),
    );
    assert!(result.is_ok(), "{result}");
    let result = check_default(
        &Counter,
        &history(vec![
            (1, vec![1, 10, 100], 0, None),
            (2, vec![], 50, Some((11, 60))),
        ]),
    );
    assert!(result.is_illegal(), "{result}");
    assert_eq!(
        Counter.partition(&[] as &[Operation<Vec<u32>, u32>]),
        vec![Partition::whole(0)]
    );
}

// ---------------------------------------------------------------------------------------
// Property tests.

/// One generated step of a client workload: which client, what operation, and the delays
/// around its linearization point.
#[derive(Clone, Debug)]
struct GenStep {
    client: usize,
    kind: u8,
    value: u32,
    think_ns: u64,
    before_ns: u64,
    after_ns: u64,
    /// 0: complete; 1: no response; 2: removed if it had no effect.
    fate: u8,
}

fn gen_steps(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<GenStep>> {
    let step = (
        0..5usize,
        0..3u8,
        0..4u32,
        0..20u64,
        0..30u64,
        0..30u64,
        prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)],
    );
    prop::collection::vec(step, len).prop_map(|steps| {
        steps
            .into_iter()
            .map(
                |(client, kind, value, think_ns, before_ns, after_ns, fate)| GenStep {
                    client,
                    kind,
                    value,
                    think_ns,
                    before_ns,
                    after_ns,
                    fate,
                },
            )
            .collect()
    })
}

/// Runs `steps` against a sequential register: each client issues operations one after
/// the other; each takes effect at an instant strictly after the previous one's, inside its
/// own call..return interval. The result is linearizable by construction.
fn linearizable_register_history(
    steps: &[GenStep],
) -> History<RegisterInput<u32>, RegisterOutput<u32>> {
    let mut history = History::new();
    let mut client_free_ns = [0u64; 5];
    let mut effect_last_ns = 0;
    let mut value = 0;
    for step in steps {
        let call_ns = client_free_ns[step.client] + step.think_ns;
        let effect_ns = call_ns.max(effect_last_ns + 1) + step.before_ns;
        effect_last_ns = effect_ns;
        let return_ns = effect_ns + step.after_ns;
        let (input, output, changed) = match step.kind {
            0 => (Read, ReadOk(value), false),
            1 => (Write(step.value), WriteOk, true),
            _ if value == step.value => (
                Cas {
                    expected: step.value,
                    new: step.value + 1,
                },
                CasOk,
                true,
            ),
            _ => (
                Cas {
                    expected: step.value,
                    new: step.value + 1,
                },
                CasFailed,
                false,
            ),
        };
        if let Write(new) | Cas { new, .. } = input {
            if changed {
                value = new;
            }
        }
        let op = history.invoke(step.client as u64, input, call_ns).unwrap();
        match step.fate {
            1 => history.mark_indeterminate(op).unwrap(),
            2 if !changed => history.fail_definitely(op).unwrap(),
            _ => history.complete(op, output, return_ns).unwrap(),
        }
        client_free_ns[step.client] = return_ns;
    }
    history
}

/// Makes one completed read (or a new one at the end) return a value never written.
fn with_impossible_read(
    history: &History<RegisterInput<u32>, RegisterOutput<u32>>,
    pick: usize,
) -> History<RegisterInput<u32>, RegisterOutput<u32>> {
    let mut operations = history.operations().to_vec();
    let reads: Vec<usize> = (0..operations.len())
        .filter(|&i| matches!(operations[i].output, Some(ReadOk(_))))
        .collect();
    if reads.is_empty() {
        let end = operations
            .iter()
            .filter_map(|op| op.return_ns)
            .max()
            .unwrap_or(0);
        operations.push(Operation {
            id: OpId(1_000_000),
            client: 9,
            input: Read,
            call_ns: end + 1,
            output: None,
            return_ns: None,
        });
    }
    let target = reads
        .get(pick % reads.len().max(1))
        .copied()
        .unwrap_or(operations.len() - 1);
    operations[target].output = Some(ReadOk(u32::MAX));
    operations[target].return_ns = Some(operations[target].call_ns + 1);
    History::from_operations(operations, 100_000).unwrap()
}

/// Whether some order of a subset of `operations` holding every completed one respects
/// real time and the model: tried exhaustively, for small histories only.
fn brute_force_linearizable<M: Model>(
    model: &M,
    operations: &[Operation<M::Input, M::Output>],
) -> bool {
    fn search<M: Model>(
        model: &M,
        ops: &[Operation<M::Input, M::Output>],
        used: &mut Vec<bool>,
        state: &M::State,
    ) -> bool {
        if ops
            .iter()
            .zip(used.iter())
            .all(|(op, &u)| u || !op.is_complete())
        {
            return true;
        }
        for i in 0..ops.len() {
            let ready = !used[i] && (0..ops.len()).all(|j| used[j] || !ops[j].precedes(&ops[i]));
            if !ready {
                continue;
            }
            let next_states = match &ops[i].output {
                Some(output) => model
                    .step(state, &ops[i].input, output)
                    .into_iter()
                    .collect(),
                None => model.step_unknown(state, &ops[i].input),
            };
            for next in next_states {
                used[i] = true;
                let found = search(model, ops, used, &next);
                used[i] = false;
                if found {
                    return true;
                }
            }
        }
        false
    }
    search(
        model,
        operations,
        &mut vec![false; operations.len()],
        &model.init(),
    )
}

/// A random register history (outputs random, so often not linearizable).
fn random_register_history(
) -> impl Strategy<Value = History<RegisterInput<u32>, RegisterOutput<u32>>> {
    random_register_history_with(7, 0.8)
}

/// A random register history of fewer than `len_max` operations, each answered with
/// probability `response_probability`.
fn random_register_history_with(
    len_max: usize,
    response_probability: f64,
) -> impl Strategy<Value = History<RegisterInput<u32>, RegisterOutput<u32>>> {
    let response = prop::option::weighted(response_probability, (0..3u32, 0..30u64));
    let op = (0..3u64, 0..3u8, 0..3u32, 0..3u32, 0..40u64, response);
    prop::collection::vec(op, 0..len_max).prop_map(|ops| {
        let specs = ops
            .into_iter()
            .map(|(client, kind, a, b, call_ns, response)| {
                let input = match kind {
                    0 => Read,
                    1 => Write(a),
                    _ => Cas {
                        expected: a,
                        new: b,
                    },
                };
                let response = response.map(|(seen, duration)| {
                    let output = match (kind, seen) {
                        (0, _) => ReadOk(seen),
                        (1, _) => WriteOk,
                        (_, 0) => CasFailed,
                        _ => CasOk,
                    };
                    (output, call_ns + duration)
                });
                (client, input, call_ns, response)
            })
            .collect();
        history(specs)
    })
}

/// The same for the event log: one stream, random expected versions and outputs.
fn random_log_history() -> impl Strategy<Value = History<LogInput<&'static str>, LogOutput>> {
    let expected = prop_oneof![
        Just(ExpectedVersion::Any),
        Just(ExpectedVersion::NoStream),
        Just(ExpectedVersion::StreamExists),
        (0..3u64).prop_map(ExpectedVersion::Exactly)
    ];
    let op = (
        0..3u64,
        any::<bool>(),
        expected,
        1..3u64,
        0..40u64,
        prop::option::weighted(0.8, (0..4u8, 0..3u64, 0..30u64)),
    );
    prop::collection::vec(op, 0..7).prop_map(|ops| {
        let specs = ops
            .into_iter()
            .map(
                |(client, is_append, expected_version, events, call_ns, response)| {
                    let input = if is_append {
                        append("s", expected_version, events)
                    } else {
                        LogInput::Read { stream: "s" }
                    };
                    let response = response.map(|(kind, version, duration)| {
                        let version_or_none = (kind != 0).then_some(version);
                        let output = match (is_append, kind) {
                            (false, _) => LogOutput::ReadOk {
                                version: version_or_none,
                            },
                            (true, 0 | 1) => LogOutput::WrongExpectedVersion {
                                actual: version_or_none,
                            },
                            (true, _) => LogOutput::Appended { version },
                        };
                        (output, call_ns + duration)
                    });
                    (client, input, call_ns, response)
                },
            )
            .collect();
        history(specs)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn generated_sequential_register_histories_are_linearizable(steps in gen_steps(0..80)) {
        let history = linearizable_register_history(&steps);
        let result = check_default(&Register::new(0), &history);
        prop_assert!(result.is_ok(), "{}\n{}", result, history);
    }

    #[test]
    fn a_read_of_a_never_written_value_is_illegal(steps in gen_steps(0..80), pick in any::<usize>()) {
        let history = with_impossible_read(&linearizable_register_history(&steps), pick);
        let result = check_default(&Register::new(0), &history);
        prop_assert!(result.is_illegal(), "{}\n{}", result, history);
    }

    #[test]
    fn checker_agrees_with_brute_force_on_small_register_histories(history in random_register_history()) {
        let expected = brute_force_linearizable(&Register::new(0), history.operations());
        let result = check_default(&Register::new(0), &history);
        prop_assert_eq!(result.is_ok(), expected, "{}\n{}", result, history);
        prop_assert!(!result.is_unknown());
    }

    #[test]
    fn checker_agrees_with_brute_force_when_many_operations_are_indeterminate(
        history in random_register_history_with(9, 0.5)
    ) {
        let expected = brute_force_linearizable(&Register::new(0), history.operations());
        let result = check_default(&Register::new(0), &history);
        prop_assert_eq!(result.is_ok(), expected, "{}\n{}", result, history);
    }

    #[test]
    fn checker_agrees_with_brute_force_on_small_log_histories(history in random_log_history()) {
        let expected = brute_force_linearizable(&EventLog::new(), history.operations());
        let result = check_default(&EventLog::new(), &history);
        prop_assert_eq!(result.is_ok(), expected, "{}\n{}", result, history);
    }
}

#[test]
fn random_histories_for_the_oracle_comparison_hold_both_verdicts() {
    // Guards the brute-force comparisons above against a generator that only ever makes
    // linearizable (or only illegal) histories, which would let a broken checker pass.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut register_ok, mut log_ok) = (0, 0);
    let cases = 300;
    for _ in 0..cases {
        let history = random_register_history()
            .new_tree(&mut runner)
            .unwrap()
            .current();
        register_ok += usize::from(brute_force_linearizable(
            &Register::new(0),
            history.operations(),
        ));
        let history = random_log_history()
            .new_tree(&mut runner)
            .unwrap()
            .current();
        log_ok += usize::from(brute_force_linearizable(
            &EventLog::new(),
            history.operations(),
        ));
    }
    for (name, ok) in [("register", register_ok), ("log", log_ok)] {
        assert!(
            ok > cases / 10 && ok < cases * 9 / 10,
            "{name}: {ok} of {cases} linearizable"
        );
    }
}

/// A register whose partition is wrong: it names an operation that does not exist.
struct BadPartition;

impl Model for BadPartition {
    type State = u32;
    type Input = RegisterInput<u32>;
    type Output = RegisterOutput<u32>;

    fn init(&self) -> u32 {
        0
    }

    fn step(&self, state: &u32, input: &Self::Input, output: &Self::Output) -> Option<u32> {
        Register::new(0).step(state, input, output)
    }

    fn step_unknown(&self, state: &u32, input: &Self::Input) -> Vec<u32> {
        Register::new(0).step_unknown(state, input)
    }

    fn partition(&self, operations: &[Operation<Self::Input, Self::Output>]) -> Vec<Partition> {
        vec![Partition {
            label: "bad".into(),
            operations: vec![operations.len()],
        }]
    }
}

#[test]
#[should_panic(expected = "Model::partition returned index 1 for 1 operations")]
fn a_model_partition_out_of_range_is_a_bug_reported_clearly() {
    let history = history(vec![(1, Write(1), 0, Some((WriteOk, 10)))]);
    let _ = check_default(&BadPartition, &history);
}
