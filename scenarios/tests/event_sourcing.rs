//! The `event-sourcing` scenario: it passes under its fault budget, each of its mutants
//! declares the invariant it breaks (tests/scoreboard.rs shows each caught by it), group
//! commit forms, and each checker fails on a hand-made bad input.

use harness::history::History;
use harness::linearizability::models::{ExpectedVersion as ModelExpected, LogInput, LogOutput};
use harness::testing::check;
use harness::{DynScenario, RunOptions, Scenario};
use patterns::event_sourcing::account::{account_upcasters, deposited_v1, Account, AccountEvent};
use patterns::event_sourcing::aggregate::{EventCodec, Loaded};
use patterns::event_sourcing::event::{
    AppendRequest, Appended, EventData, EventId, ExpectedVersion, RecordedEvent,
};
use patterns::event_sourcing::mutant::Mutant;
use scenarios::event_sourcing::fold::{AccountModel, Intent};
use scenarios::event_sourcing::oracle::{
    Oracle, ReadKind, ReadObservation, ACKED_SURVIVE, CORRUPTION_DETECTED, IDEMPOTENT,
    LINEARIZABLE, VERSIONS_GAPLESS,
};
use scenarios::event_sourcing::{
    check_linearizable, check_live, judge, measurements_of, EventSourcing, Linearizability,
    Liveness, LogHistory, Measurements, REPLAY_EQUALS_LIVE,
};
use sim_core::disk::Corruption;
use std::collections::{BTreeMap, BTreeSet};

#[test]
fn event_store_survives_its_fault_budget() {
    // Goal: the unmutated store keeps every invariant over generated cases (DST_CASES).
    check(EventSourcing);
}

#[test]
fn every_core_mutant_is_listed_and_declares_the_invariant_it_breaks() {
    // Goal: each of the store core's mutants is a scenario mutant, with the invariant it
    // breaks. That each is caught by it is the scoreboard test's to show (tests/scoreboard.rs).
    let listed: BTreeMap<String, Option<String>> = Scenario::spec(&EventSourcing)
        .mutants
        .into_iter()
        .map(|mutant| (mutant.name, mutant.breaks))
        .collect();
    for mutant in Mutant::all() {
        let name = scenarios::event_sourcing::mutant_name(*mutant);
        assert!(listed.contains_key(&name), "{name} is not listed");
        // Caught for the right reason: by the invariant that the bug breaks (a kept torn
        // record is read back as corrupt data; a lost idempotency table lets a retry apply
        // twice). The hard ones are first caught at seeds 151, 213 and 439.
        let expected = match name.as_str() {
            "ack-before-fsync" | "drop-after-bad" => "acked-appends-survive",
            "keep-torn-record" => "corruption-detected",
            "non-atomic-expected-version" => "linearizable",
            "snapshot-double-apply" => "replay-equals-live",
            "idempotency-lost-on-restart" | "idempotency-misses-pending" => "idempotent",
            // The dropped write leaves a hole in the synced log: after the final crash the
            // store refuses to serve, its disk never corrupted.
            "retry-failed-fsync" => "available-after-heal",
            // A retry acknowledged before its events are durable: a read or a crash before
            // the commit ends misses them.
            "idempotent-ack-before-durable" => "acked-appends-survive",
            "idempotency-before-recovery-commit" => "idempotent",
            // An append judged against a stream that looks empty while the recovery commit runs.
            "expected-version-before-recovery-commit" => "linearizable",
            other => panic!("no expected invariant for mutant {other}"),
        };
        assert_eq!(listed[&name], Some(expected.to_string()), "{name}");
    }
}

#[test]
fn appends_share_commits() {
    // Goal: the driver takes requests while a commit is in flight, so commits carry several
    // appends (group commit); also how often the linearizability check gives up (such a run is
    // inconclusive, and measured like the others).
    let options = RunOptions {
        keep_trace: true,
        ..RunOptions::default()
    };
    let mut total = Measurements::default();
    // DST_CASES measures more seeds (as `harness::testing::check` reads it).
    let runs = std::env::var("DST_CASES").map_or(20, |n| n.parse().expect("DST_CASES is a number"));
    for seed in 0..runs {
        let case = DynScenario::generate(&EventSourcing, seed, None, all_faults());
        let result = DynScenario::run_case(&EventSourcing, &case, &options).unwrap();
        assert!(
            result.verdict.is_pass() || result.verdict.kind == harness::VerdictKind::Inconclusive,
            "seed {seed}: {:?}",
            result.verdict
        );
        let timeline = result.timeline.expect("the trace was kept");
        let measured = measurements_of(&timeline).expect("a passing run notes its measurements");
        total.commits_with_appends += measured.commits_with_appends;
        total.appends_committed += measured.appends_committed;
        total.appends_per_commit_max = total
            .appends_per_commit_max
            .max(measured.appends_per_commit_max);
        total.linearizability_checks += measured.linearizability_checks;
        total.linearizability_unknown += measured.linearizability_unknown;
    }
    println!(
        "{runs} runs: {} appends in {} commits ({:.2} per commit, at most {}); \
         linearizability unknown in {} of {} checks",
        total.appends_committed,
        total.commits_with_appends,
        total.appends_committed as f64 / total.commits_with_appends as f64,
        total.appends_per_commit_max,
        total.linearizability_unknown,
        total.linearizability_checks
    );
    assert!(
        total.appends_committed > total.commits_with_appends,
        "no commit carried two appends"
    );
    // Once when the workload ends, and once more over the whole history after the final crash
    // (in every run, also when the store refused a corrupt log).
    assert!(
        total.linearizability_checks == 2 * runs,
        "{} linearizability checks in {runs} runs",
        total.linearizability_checks
    );
}

fn all_faults() -> BTreeSet<harness::FaultKind> {
    harness::FaultKind::ALL.into_iter().collect()
}

// ---- The checkers on hand-made bad inputs ----

fn data(id: u128) -> EventData {
    EventData {
        event_id: EventId(id),
        event_type: "noted".into(),
        schema_version: 1,
        payload: vec![id as u8; 4],
    }
}

fn append(stream: &str, ids: &[u128]) -> AppendRequest {
    AppendRequest {
        stream: stream.into(),
        expected: ExpectedVersion::Any,
        events: ids.iter().map(|&id| data(id)).collect(),
    }
}

fn recorded(stream: &str, version: u64, position: u64, id: u128) -> RecordedEvent {
    RecordedEvent {
        stream: stream.into(),
        version,
        position,
        data: data(id),
    }
}

fn appended(first_version: u64, first_position: u64, count: u64) -> Appended {
    Appended {
        first_version,
        last_version: first_version + count - 1,
        first_position,
        last_position: first_position + count - 1,
    }
}

fn read_all(oracle: &mut Oracle, events: &[RecordedEvent], at_ns: u64) -> Result<(), &'static str> {
    let read = ReadObservation {
        kind: ReadKind::All { from_position: 0 },
        events,
        count_max: 100,
        invoked_ns: at_ns,
        returned_ns: at_ns + 1,
    };
    oracle
        .read(&read)
        .map_err(|violation| violation.invariant().name())
}

fn read_stream(
    oracle: &mut Oracle,
    stream: &str,
    events: &[RecordedEvent],
) -> Result<(), &'static str> {
    let read = ReadObservation {
        kind: ReadKind::Stream {
            stream: stream.into(),
            from_version: 0,
        },
        events,
        count_max: 100,
        invoked_ns: 1_000,
        returned_ns: 1_001,
    };
    oracle
        .read(&read)
        .map_err(|violation| violation.invariant().name())
}

/// An oracle that saw batch [1, 2] to `s` acknowledged at v0..=1 p0..=1 at time 10.
fn acked_oracle() -> Oracle {
    let mut oracle = Oracle::new();
    let batch = append("s", &[1, 2]);
    oracle.submit(&batch);
    oracle.acked(&batch, &appended(0, 0, 2), 10).unwrap();
    oracle
}

#[test]
fn oracle_accepts_a_correct_read() {
    // Goal: the checkers pass what a correct store serves (so the failures below mean it).
    let mut oracle = acked_oracle();
    let events = [recorded("s", 0, 0, 1), recorded("s", 1, 1, 2)];
    assert_eq!(read_all(&mut oracle, &events, 100), Ok(()));
    assert_eq!(read_stream(&mut oracle, "s", &events), Ok(()));
}

#[test]
fn oracle_catches_a_version_gap() {
    let mut oracle = acked_oracle();
    let events = [recorded("s", 0, 0, 1), recorded("s", 2, 1, 2)];
    assert_eq!(
        read_stream(&mut oracle, "s", &events),
        Err(VERSIONS_GAPLESS.name())
    );
}

#[test]
fn oracle_catches_a_position_gap_in_a_full_read() {
    let mut oracle = acked_oracle();
    let events = [recorded("s", 0, 0, 1), recorded("s", 1, 2, 2)];
    assert_eq!(
        read_all(&mut oracle, &events, 100),
        Err(VERSIONS_GAPLESS.name())
    );
}

#[test]
fn oracle_catches_a_phantom_event() {
    let mut oracle = Oracle::new();
    let events = [recorded("s", 0, 0, 99)];
    assert_eq!(
        read_all(&mut oracle, &events, 100),
        Err(VERSIONS_GAPLESS.name())
    );
}

#[test]
fn oracle_catches_a_partial_batch() {
    // Goal: the first event of an unacknowledged two-event batch, alone at the log's end.
    let mut oracle = Oracle::new();
    oracle.submit(&append("s", &[1, 2]));
    let events = [recorded("s", 0, 0, 1)];
    assert_eq!(
        read_all(&mut oracle, &events, 100),
        Err(VERSIONS_GAPLESS.name())
    );
}

#[test]
fn oracle_catches_changed_data() {
    let mut oracle = acked_oracle();
    let mut damaged = recorded("s", 1, 1, 2);
    damaged.data.payload[3] ^= 0x10;
    let events = [recorded("s", 0, 0, 1), damaged];
    assert_eq!(
        read_all(&mut oracle, &events, 100),
        Err(CORRUPTION_DETECTED.name())
    );
}

#[test]
fn oracle_catches_a_lost_acknowledged_event() {
    // Goal: a read invoked after the acknowledgement ends before the acknowledged event.
    let mut oracle = acked_oracle();
    let events = [];
    assert_eq!(
        read_all(&mut oracle, &events, 100),
        Err(ACKED_SURVIVE.name())
    );
    // A read invoked before the acknowledgement may legitimately miss it.
    let mut oracle = acked_oracle();
    assert_eq!(read_all(&mut oracle, &events, 5), Ok(()));
}

#[test]
fn oracle_catches_a_replaced_event() {
    // Goal: another event at an acknowledged position.
    let mut oracle = acked_oracle();
    let other = append("s", &[7, 8]);
    oracle.submit(&other);
    let events = [recorded("s", 0, 0, 7), recorded("s", 1, 1, 8)];
    assert_eq!(
        read_all(&mut oracle, &events, 100),
        Err(ACKED_SURVIVE.name())
    );
}

#[test]
fn oracle_catches_a_duplicated_retry() {
    // Goal: the same event ids stored twice.
    let mut oracle = Oracle::new();
    oracle.submit(&append("s", &[1]));
    let events = [recorded("s", 0, 0, 1), recorded("s", 1, 1, 1)];
    assert_eq!(read_all(&mut oracle, &events, 100), Err(IDEMPOTENT.name()));
}

#[test]
fn oracle_catches_stored_events_of_a_refused_append() {
    // Goal: an append answered with a definite failure has events stored: after a retry it
    // is idempotency that failed, on a first attempt the answer itself was wrong.
    for (retried, invariant) in [(true, &IDEMPOTENT), (false, &LINEARIZABLE)] {
        let mut oracle = acked_oracle();
        let refused = append("s", &[3]);
        oracle.submit(&refused);
        oracle
            .failed(&refused, "wrong expected version", retried)
            .unwrap();
        let events = [
            recorded("s", 0, 0, 1),
            recorded("s", 1, 1, 2),
            recorded("s", 2, 2, 3),
        ];
        let result = read_all(&mut oracle, &events, 100);
        assert_eq!(result, Err(invariant.name()), "retried: {retried}");
    }
}

#[test]
fn oracle_catches_a_misshapen_acknowledgement() {
    let mut oracle = Oracle::new();
    let batch = append("s", &[1, 2]);
    oracle.submit(&batch);
    let wrong = appended(0, 0, 3);
    let result = oracle
        .acked(&batch, &wrong, 10)
        .map_err(|v| v.invariant().name());
    assert_eq!(result, Err(VERSIONS_GAPLESS.name()));
}

/// An oracle and a model that saw `account-0` opened for ada (v0) and a deposit of 5 (v1,
/// stored as `stored_deposit`) acknowledged.
fn account_oracle(stored_deposit: EventData) -> (Oracle, AccountModel, Vec<RecordedEvent>) {
    let opened = AccountEvent::Opened {
        owner: "ada".into(),
    };
    let deposited = AccountEvent::Deposited {
        amount: 5,
        memo: String::new(),
    };
    let batch = AppendRequest {
        stream: "account-0".into(),
        expected: ExpectedVersion::NoStream,
        events: vec![opened.to_data(EventId(1)), stored_deposit],
    };
    let mut oracle = Oracle::new();
    oracle.submit(&batch);
    oracle.acked(&batch, &appended(0, 0, 2), 10).unwrap();
    let mut model = AccountModel::new();
    model.intend(EventId(1), Intent::of(&opened));
    model.intend(EventId(2), Intent::of(&deposited));
    let events = batch
        .events
        .iter()
        .zip(0u64..)
        .map(|(data, v)| RecordedEvent {
            stream: "account-0".into(),
            version: v,
            position: v,
            data: data.clone(),
        })
        .collect();
    (oracle, model, events)
}

fn ada_with(balance: u64) -> Loaded<Account> {
    let mut live = Loaded::<Account>::default();
    live.state.owner = Some("ada".into());
    live.state.balance = balance;
    live.state.transactions = 1;
    live.version = Some(1);
    live
}

#[test]
fn replay_check_catches_a_live_state_the_events_do_not_add_up_to() {
    // Goal: the oracle's own fold of the acknowledged events judges a live state: a bug in the
    // aggregate's `apply` (here: a balance of 6 after opening and depositing 5) is caught.
    let deposit = AccountEvent::Deposited {
        amount: 5,
        memo: String::new(),
    };
    let (oracle, model, events) = account_oracle(deposit.to_data(EventId(2)));
    let upcasters = account_upcasters();
    let live = ada_with(5);
    assert_eq!(
        check_live(&model, &oracle, "account-0", &live, &events, &upcasters),
        Ok(())
    );
    let violation = check_live(
        &model,
        &oracle,
        "account-0",
        &ada_with(6),
        &events,
        &upcasters,
    )
    .unwrap_err();
    assert_eq!(*violation.invariant(), REPLAY_EQUALS_LIVE);
}

#[test]
fn replay_check_catches_a_replay_that_misreads_an_old_schema() {
    // Goal: the writer meant a deposit of 5, the store holds it in schema 1 as 7 (as a broken
    // upcaster or decoder would make of it): the aggregate's replay gives 7, the oracle's model
    // 5, so the replay of the read is caught, whatever the aggregate's code says.
    let (oracle, model, events) = account_oracle(deposited_v1(EventId(2), 7));
    let upcasters = account_upcasters();
    let violation = check_live(
        &model,
        &oracle,
        "account-0",
        &ada_with(5),
        &events,
        &upcasters,
    )
    .unwrap_err();
    assert_eq!(*violation.invariant(), REPLAY_EQUALS_LIVE);
    assert!(violation.message().contains("replay"), "{violation}");
}

#[test]
fn replay_check_catches_a_state_past_what_was_observed() {
    // Goal: a live state at a version no acknowledgement or read placed is not vouched for.
    let deposit = AccountEvent::Deposited {
        amount: 5,
        memo: String::new(),
    };
    let (oracle, model, _) = account_oracle(deposit.to_data(EventId(2)));
    let mut live = ada_with(5);
    live.version = Some(2);
    let violation = model
        .judge(&oracle, "account-0", "a live state", &live)
        .unwrap_err();
    assert_eq!(*violation.invariant(), REPLAY_EQUALS_LIVE);
}

#[test]
fn linearizability_check_catches_two_winners_of_one_expected_version() {
    // Goal: two appends expecting the same version both succeed (Eventuous#553's symptom).
    let append = |expected_version| LogInput::Append {
        stream: "s".to_owned(),
        expected_version,
        events: 1,
    };
    let mut history = History::new();
    let first = history
        .invoke(1, append(ModelExpected::NoStream), 0)
        .unwrap();
    history
        .complete(first, LogOutput::Appended { version: 0 }, 5)
        .unwrap();
    let winner = history
        .invoke(1, append(ModelExpected::Exactly(0)), 10)
        .unwrap();
    let racer = history
        .invoke(2, append(ModelExpected::Exactly(0)), 11)
        .unwrap();
    history
        .complete(winner, LogOutput::Appended { version: 1 }, 20)
        .unwrap();
    let mut raced = history.clone();
    let refused = LogOutput::WrongExpectedVersion { actual: Some(1) };
    history.complete(racer, refused, 21).unwrap();
    assert_eq!(check_linearizable(&history), Linearizability::Linearizable);
    raced
        .complete(racer, LogOutput::Appended { version: 2 }, 21)
        .unwrap();
    match check_linearizable(&raced) {
        Linearizability::Violated(violation) => assert_eq!(*violation.invariant(), LINEARIZABLE),
        other => panic!("two winners of one expected version judged {other:?}"),
    }
}

#[test]
fn linearizability_check_of_a_full_history_is_unknown() {
    // Goal: a history that refused operations is never judged linearizable (the run is then
    // inconclusive), even when what it holds is.
    let mut history = LogHistory::with_ops_max(1);
    let read = || LogInput::Read {
        stream: "s".to_owned(),
    };
    let first = history.invoke(1, read(), 0).unwrap();
    history
        .complete(first, LogOutput::ReadOk { version: None }, 5)
        .unwrap();
    assert!(history.invoke(1, read(), 10).is_err());
    assert!(matches!(
        check_linearizable(&history),
        Linearizability::Unknown(_)
    ));
}

fn corruption(synced: bool) -> Corruption {
    Corruption {
        path: "log".into(),
        sector: 3,
        bits: 2,
        synced,
    }
}

#[test]
fn liveness_judge_demands_availability_unless_fsynced_data_was_corrupted() {
    // Goal: an unavailable store fails the probe; a store refusing with a corrupt log passes
    // only when a corruption hit data it had fsynced, as the disk reports.
    let (synced, unsynced) = ([corruption(true)], [corruption(false)]);
    assert_eq!(judge(&Liveness::Available, &[]), Ok(()));
    assert_eq!(judge(&Liveness::Available, &unsynced), Ok(()));
    let unavailable = Liveness::Unavailable("no full read succeeded".into());
    assert!(judge(&unavailable, &synced).is_err());
    let refused = Liveness::RefusedCorrupt("corrupt record at offset 0".into());
    assert_eq!(judge(&refused, &synced), Ok(()));
    let both = [corruption(false), corruption(true)];
    assert_eq!(judge(&refused, &both), Ok(()));
    let never = judge(&refused, &[]).unwrap_err();
    assert!(never.contains("never corrupted"), "{never}");
}

#[test]
fn corruption_of_never_fsynced_bytes_does_not_excuse_a_refusal() {
    // Goal: the stricter rule. A corruption episode that hit only bytes the store never
    // fsynced (written back, landed at a crash or in a failed fsync) is damage to nothing it
    // acknowledged, and a store that refuses to serve after it gives up availability for
    // nothing. The earlier rule ("a corruption episode hit the store") passed this input.
    let refused = Liveness::RefusedCorrupt("corrupt record at offset 4096".into());
    let unsynced = [corruption(false), corruption(false)];
    let message = judge(&refused, &unsynced).unwrap_err();
    assert!(message.contains("2 corruption(s)"), "{message}");
    assert!(message.contains("never-fsynced"), "{message}");
}

#[test]
fn a_store_refusing_a_corrupt_log_still_goes_through_the_final_crash() {
    // Goal: corruption of the store's disk does not end the run early: the final crash under
    // load happens, the restarted store is probed again, and the whole history (with the
    // burst) is judged linearizable a second time, also when the store refuses to serve.
    let options = RunOptions {
        keep_trace: true,
        ..RunOptions::default()
    };
    let corrupt = |at_ms| harness::Episode {
        at_ms,
        duration_ms: None,
        fault: harness::Fault::DiskCorrupt {
            node: "store".into(),
        },
    };
    let mut refused = 0;
    for seed in 0..6 {
        let mut case = DynScenario::generate(&EventSourcing, seed, None, all_faults());
        case.plan = harness::FaultPlan {
            episodes: vec![corrupt(1_500), corrupt(1_600), corrupt(1_700)],
        };
        let result = DynScenario::run_case(&EventSourcing, &case, &options).unwrap();
        assert!(
            result.verdict.is_pass() || result.verdict.kind == harness::VerdictKind::Inconclusive,
            "seed {seed}: {:?}",
            result.verdict
        );
        let timeline = result.timeline.expect("the trace was kept");
        let measured = measurements_of(&timeline).expect("the run reached its end");
        assert_eq!(measured.linearizability_checks, 2, "seed {seed}");
        refused += usize::from(result.sometimes.contains("corruption-refused"));
    }
    assert!(refused > 0, "no seed's store refused its corrupt log");
}

#[test]
fn a_store_hit_only_in_never_fsynced_bytes_must_serve_again() {
    // Goal: the stricter rule on real runs. The store crashes early and stays down for a
    // second; a corruption while it is down sometimes hits only bytes that landed at the crash
    // without an fsync. Nothing acknowledged was damaged, so the store must truncate them like
    // a torn tail and serve again: such a run passes only if it does (the earlier rule would
    // have passed a refusal too, since a corruption episode hit the store).
    let options = RunOptions {
        keep_trace: true,
        ..RunOptions::default()
    };
    let mut unsynced_only = 0;
    for seed in 0..200u64 {
        let mut case = DynScenario::generate(&EventSourcing, seed, None, all_faults());
        let crash_at = 5 + (seed % 40) * 5;
        let episode = |at_ms, duration_ms, fault| harness::Episode {
            at_ms,
            duration_ms,
            fault,
        };
        let store = || "store".to_string();
        case.plan = harness::FaultPlan {
            episodes: vec![
                episode(
                    crash_at,
                    Some(1_000),
                    harness::Fault::Crash { node: store() },
                ),
                episode(
                    crash_at + 100,
                    None,
                    harness::Fault::DiskCorrupt { node: store() },
                ),
            ],
        };
        let result = DynScenario::run_case(&EventSourcing, &case, &options).unwrap();
        assert!(
            result.verdict.is_pass() || result.verdict.kind == harness::VerdictKind::Inconclusive,
            "seed {seed}: {:?}",
            result.verdict
        );
        if only_never_fsynced_corruption(&result.timeline.expect("the trace was kept")) {
            unsynced_only += 1;
            assert!(
                !result.sometimes.contains("corruption-refused"),
                "seed {seed}"
            );
        }
    }
    println!("{unsynced_only} of 200 runs: corruption of never-fsynced bytes only");
    assert!(
        unsynced_only > 0,
        "no corruption hit only never-fsynced bytes"
    );
}

/// Whether a run's trace records corruption, none of it of fsynced data: every `Corrupt` hit
/// never-fsynced bytes only and no fsync vouched for the damage later (`DamageSynced`).
fn only_never_fsynced_corruption(timeline: &sim_core::trace::Timeline) -> bool {
    use sim_core::disk::DiskEvent;
    let disk = timeline
        .events
        .iter()
        .filter_map(|event| match &event.event {
            sim_core::trace::Event::Disk(disk) => Some(disk),
            _ => None,
        });
    let (mut unsynced, mut synced) = (0, 0);
    for event in disk {
        match event {
            DiskEvent::Corrupt { synced: false, .. } => unsynced += 1,
            DiskEvent::Corrupt { synced: true, .. } | DiskEvent::DamageSynced { .. } => synced += 1,
            _ => {}
        }
    }
    unsynced > 0 && synced == 0
}
