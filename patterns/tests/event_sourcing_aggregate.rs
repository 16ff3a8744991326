//! Aggregates: replay equals live state, snapshot plus tail equals full replay (also through
//! old schema versions), upcasting, snapshot encoding, and the example account end to end.
//!
//! Mutants exist in simulation builds only (`--cfg madsim`): the tests of a mutant, and the
//! mutant cases of the others, are compiled there only; the rest runs in every build.

use patterns::event_sourcing::account::{
    account_upcasters, deposited_v1, Account, AccountCommand, AccountError, AccountEvent,
    ACCOUNT_SNAPSHOT_SCHEMA,
};
use patterns::event_sourcing::aggregate::{
    rehydrate, replay, tail_from, Aggregate, EventCodec, LoadError, Loaded, Snapshot,
    SnapshotPolicy, UpcastError, UpcastFn, Upcasters,
};
use patterns::event_sourcing::event::{
    Appended, EventData, EventId, ExpectedVersion, RecordedEvent,
};
use patterns::event_sourcing::memdisk::MemStore;
#[cfg(madsim)]
use patterns::event_sourcing::mutant::Mutant;
use patterns::event_sourcing::mutant::Mutants;
use patterns::event_sourcing::store::StoreConfig;
use proptest::prelude::*;
#[cfg(madsim)]
use proptest::test_runner::TestRunner;
use proptest::test_runner::{Config, RngSeed};

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0xE5_A6),
        failure_persistence: None,
        ..Config::default()
    }
}

/// A command, and whether a deposit is stored the old way (schema version 1).
fn commands() -> impl Strategy<Value = Vec<(AccountCommand, bool)>> {
    let command = prop_oneof![
        1 => Just(AccountCommand::Open { owner: "ada".to_owned() }),
        5 => (1..1000u64).prop_map(|amount| AccountCommand::Deposit { amount, memo: format!("m{amount}") }),
        3 => (1..1500u64).prop_map(|amount| AccountCommand::Withdraw { amount }),
        1 => Just(AccountCommand::Close),
    ];
    prop::collection::vec((command, any::<bool>()), 1..40)
}

/// Runs the commands against the live state; returns the live state and the stored stream.
fn history(commands: &[(AccountCommand, bool)]) -> (Loaded<Account>, Vec<RecordedEvent>) {
    let mut live = Loaded::<Account>::default();
    let mut stream = Vec::new();
    for (command, old_schema) in commands {
        let Ok(events) = live.state.handle(command.clone()) else {
            continue;
        };
        let first_version = live.version.map_or(0, |v| v + 1);
        for (event, version) in events.iter().zip(first_version..) {
            let event_id = EventId(u128::from(version) + 1);
            let data = match event {
                AccountEvent::Deposited { amount, .. } if *old_schema => {
                    deposited_v1(event_id, u32::try_from(*amount).unwrap())
                }
                event => event.to_data(event_id),
            };
            let stream_name = "acct".to_owned();
            let position = version;
            stream.push(RecordedEvent {
                stream: stream_name,
                version,
                position,
                data,
            });
        }
        let count = events.len() as u64;
        let last = first_version + count - 1;
        let appended = Appended {
            first_version,
            last_version: last,
            first_position: first_version,
            last_position: last,
        };
        live.apply_appended(&events, &appended).unwrap();
    }
    (live, stream)
}

/// Full replay equals the live state; for every snapshot version, snapshot plus tail (read
/// from `tail_from`) equals full replay, state and version.
fn check_snapshots(commands: &[(AccountCommand, bool)], mutants: &Mutants) -> Result<(), String> {
    let upcasters = account_upcasters();
    let (live, stream) = history(commands);
    let full: Loaded<Account> = replay(&stream, &upcasters).map_err(|e| e.to_string())?;
    if full != live {
        return Err(format!("replay {full:?} != live {live:?}"));
    }
    for at in 0..stream.len() {
        let prefix: Loaded<Account> =
            replay(&stream[..=at], &upcasters).map_err(|e| e.to_string())?;
        let snapshot = Snapshot::of(&prefix).expect("a prefix with an event");
        let tail = &stream[tail_from(Some(&snapshot), mutants) as usize..];
        let loaded =
            rehydrate(Some(&snapshot), tail, &upcasters, mutants).map_err(|e| e.to_string())?;
        if loaded != full {
            return Err(format!(
                "snapshot at v{at} + tail = {loaded:?}, full replay = {full:?}"
            ));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn snapshot_plus_tail_equals_full_replay(commands in commands()) {
        let outcome = check_snapshots(&commands, &Mutants::none());
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}

#[cfg(madsim)]
#[test]
fn mutant_snapshot_double_apply_is_caught_by_the_snapshot_property() {
    let mutants = Mutants::only(Mutant::SnapshotDoubleApply);
    let mut runner = TestRunner::new(config(128));
    let result = runner.run(&commands(), |commands| {
        let outcome = check_snapshots(&commands, &mutants);
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
        Ok(())
    });
    let failure = result.expect_err("the mutant survived");
    assert!(failure.to_string().contains("snapshot at v"), "{failure}");
}

#[test]
fn replay_reports_a_gap_in_versions() {
    let commands = [
        (
            AccountCommand::Open {
                owner: "bo".to_owned(),
            },
            false,
        ),
        (
            AccountCommand::Deposit {
                amount: 5,
                memo: String::new(),
            },
            false,
        ),
        (
            AccountCommand::Deposit {
                amount: 6,
                memo: String::new(),
            },
            false,
        ),
    ];
    let (_, mut stream) = history(&commands);
    stream.remove(1);
    let error = replay::<Account>(&stream, &account_upcasters()).unwrap_err();
    assert_eq!(
        error,
        LoadError::VersionGap {
            expected: 1,
            found: 2
        }
    );
}

#[test]
fn old_deposits_are_upcast_on_read() {
    // Goal: a version-1 deposit reads as the version-2 event with an empty memo, and is not
    // readable at all without the upcaster (so a read path that forgets it fails loudly).
    let old = deposited_v1(EventId(7), 250);
    let raised = account_upcasters().upcast(&old).unwrap();
    assert_eq!(raised.schema_version, 2);
    let event = AccountEvent::decode(&raised.event_type, 2, &raised.payload).unwrap();
    assert_eq!(
        event,
        AccountEvent::Deposited {
            amount: 250,
            memo: String::new()
        }
    );
    let error =
        AccountEvent::decode(&old.event_type, old.schema_version, &old.payload).unwrap_err();
    insta::assert_snapshot!(error.to_string(), @"cannot decode `money-deposited` v1: unknown type or schema version");
    let current = AccountEvent::Deposited {
        amount: 3,
        memo: "x".to_owned(),
    }
    .to_data(EventId(8));
    assert_eq!(
        account_upcasters().upcast(&current).unwrap(),
        current,
        "current events pass"
    );
}

fn ping(version: u32) -> EventData {
    EventData {
        event_id: EventId(1),
        event_type: "ping".to_owned(),
        schema_version: version,
        payload: vec![version as u8],
    }
}

fn ping_up(event: &EventData) -> Result<EventData, String> {
    let mut raised = event.clone();
    raised.schema_version += 1;
    raised.payload.push(raised.schema_version as u8);
    if raised.schema_version == 3 {
        raised.event_type = "pinged".to_owned();
    }
    Ok(raised)
}

fn skips_a_version(event: &EventData) -> Result<EventData, String> {
    Ok(EventData {
        schema_version: event.schema_version + 2,
        ..event.clone()
    })
}

fn fails(_: &EventData) -> Result<EventData, String> {
    Err("payload unreadable".to_owned())
}

#[test]
fn upcasters_chain_one_version_at_a_time() {
    let mut upcasters = Upcasters::new();
    let step: UpcastFn = ping_up;
    upcasters.register("ping", 1, step).unwrap();
    upcasters.register("ping", 2, step).unwrap();
    let raised = upcasters.upcast(&ping(1)).unwrap();
    assert_eq!(
        (raised.event_type.as_str(), raised.schema_version),
        ("pinged", 3)
    );
    assert_eq!(raised.payload, [1, 2, 3]);
    let duplicate = upcasters.register("ping", 1, step).unwrap_err();
    assert!(matches!(
        duplicate,
        UpcastError::Duplicate {
            from_version: 1,
            ..
        }
    ));
}

#[test]
fn upcasters_report_bad_steps() {
    let mut skipping = Upcasters::new();
    skipping.register("ping", 1, skips_a_version).unwrap();
    let error = skipping.upcast(&ping(1)).unwrap_err();
    assert!(
        matches!(error, UpcastError::WrongVersion { produced: 3, .. }),
        "{error:?}"
    );
    let mut failing = Upcasters::new();
    failing.register("ping", 1, fails).unwrap();
    let error = failing.upcast(&ping(1)).unwrap_err();
    insta::assert_snapshot!(error.to_string(), @"upcasting `ping` v1 failed: payload unreadable");
}

#[test]
fn snapshots_encode_and_are_discarded_under_another_schema() {
    let snapshot = Snapshot {
        state: Account {
            owner: Some("cy".to_owned()),
            balance: 40,
            transactions: 2,
            closed: false,
        },
        version: 2,
    };
    let bytes = snapshot.encode(ACCOUNT_SNAPSHOT_SCHEMA);
    assert_eq!(
        Snapshot::decode(&bytes, ACCOUNT_SNAPSHOT_SCHEMA),
        Ok(Some(snapshot))
    );
    assert_eq!(
        Snapshot::<Account>::decode(&bytes, ACCOUNT_SNAPSHOT_SCHEMA + 1),
        Ok(None)
    );
    assert!(Snapshot::<Account>::decode(&bytes[..2], ACCOUNT_SNAPSHOT_SCHEMA).is_err());
    let mut garbled = bytes.clone();
    garbled.truncate(6);
    assert!(Snapshot::<Account>::decode(&garbled, ACCOUNT_SNAPSHOT_SCHEMA).is_err());
}

#[test]
fn snapshot_policy_is_due_every_n_events() {
    let policy = SnapshotPolicy { every_events: 3 };
    assert!(!policy.due(None, 1));
    assert!(policy.due(None, 2));
    assert!(!policy.due(Some(2), 4));
    assert!(policy.due(Some(2), 5));
    assert!(!SnapshotPolicy { every_events: 0 }.due(None, 1000));
}

#[test]
fn account_refuses_invalid_commands() {
    let fresh = Account::default();
    assert_eq!(
        fresh.handle(AccountCommand::Withdraw { amount: 1 }),
        Err(AccountError::NotOpen)
    );
    let mut open = Account::default();
    open.apply(&AccountEvent::Opened {
        owner: "di".to_owned(),
    });
    open.apply(&AccountEvent::Deposited {
        amount: 10,
        memo: String::new(),
    });
    assert_eq!(
        open.handle(AccountCommand::Open {
            owner: "x".to_owned()
        }),
        Err(AccountError::AlreadyOpen)
    );
    assert_eq!(
        open.handle(AccountCommand::Withdraw { amount: 11 }),
        Err(AccountError::InsufficientFunds {
            balance: 10,
            amount: 11
        })
    );
    assert_eq!(
        open.handle(AccountCommand::Deposit {
            amount: 0,
            memo: String::new()
        }),
        Err(AccountError::ZeroAmount)
    );
    assert_eq!(
        open.handle(AccountCommand::Close),
        Err(AccountError::BalanceNotZero(10))
    );
    open.apply(&AccountEvent::Withdrew { amount: 10 });
    assert_eq!(
        open.handle(AccountCommand::Close),
        Ok(vec![AccountEvent::Closed])
    );
    open.apply(&AccountEvent::Closed);
    assert_eq!(
        open.handle(AccountCommand::Deposit {
            amount: 1,
            memo: String::new()
        }),
        Err(AccountError::Closed)
    );
}

#[test]
fn account_through_the_store_replays_to_its_live_state_after_a_crash() {
    // Goal: the end-to-end loop the scenario uses: load, decide, append with the loaded
    // version, apply the acknowledged events to the live state; after a crash the replay
    // (through the upcaster, with one legacy event) equals the live state.
    let mut mem = MemStore::open(StoreConfig::default()).unwrap();
    let upcasters = account_upcasters();
    let legacy = deposited_v1(EventId(900), 70);
    let mut live = Loaded::<Account>::default();
    let commands = [
        AccountCommand::Open {
            owner: "eve".to_owned(),
        },
        AccountCommand::Deposit {
            amount: 30,
            memo: "salary".to_owned(),
        },
        AccountCommand::Withdraw { amount: 10 },
    ];
    for (command, index) in commands.into_iter().zip(0u128..) {
        let events = live.state.handle(command).unwrap();
        let append = live.to_append("acct-eve", &events, |i| EventId(index * 16 + u128::from(i)));
        let appended = mem.append_and_settle(append).unwrap();
        live.apply_appended(&events, &appended).unwrap();
    }
    let old = patterns::event_sourcing::event::AppendRequest {
        stream: "acct-eve".to_owned(),
        expected: live.expected(),
        events: vec![legacy],
    };
    let appended = mem.append_and_settle(old).unwrap();
    live.apply_appended(
        &[AccountEvent::Deposited {
            amount: 70,
            memo: String::new(),
        }],
        &appended,
    )
    .unwrap();
    mem.crash_and_recover().unwrap();
    let stream = mem.store().read_stream("acct-eve", 0, 100).unwrap();
    let replayed: Loaded<Account> = replay(&stream, &upcasters).unwrap();
    assert_eq!(replayed, live);
    assert_eq!(replayed.state.balance, 90);
    assert_eq!(replayed.expected(), ExpectedVersion::Exactly(3));
}

#[test]
fn an_acknowledged_append_that_does_not_follow_the_state_is_an_error_not_a_panic() {
    // Goal: an answer from the store is input from the network: a wrong version folds nothing.
    let mut live = Loaded {
        state: Account::default(),
        version: Some(2),
    };
    let before = live.clone();
    let gap = Appended {
        first_version: 5,
        last_version: 5,
        first_position: 9,
        last_position: 9,
    };
    let error = live
        .apply_appended(
            &[AccountEvent::Deposited {
                amount: 1,
                memo: String::new(),
            }],
            &gap,
        )
        .unwrap_err();
    assert_eq!(error.expected_first, 3);
    assert_eq!(error.appended_first, 5);
    assert_eq!(live, before);
}
