//! Scripted tests of the CQRS sans-IO cores: the bank domain's decisions and event format, the
//! read model's fold, file format and rebuild path, and the projection driven by hand (time is
//! an argument); each mutant shown breaking the rule it targets.
//!
//! Mutants exist in simulation builds only (`--cfg madsim`): the tests of a mutant, and the
//! mutant cases of the others, are compiled there only; the rest runs in every build.

use patterns::cqrs::bank::{
    account_of, event_id, stream_of, AccountState, BankCommand, BankError, BankEvent, BankEventBody,
};
#[cfg(madsim)]
use patterns::cqrs::mutant::Mutant;
use patterns::cqrs::mutant::Mutants;
use patterns::cqrs::projection::{Mode, Note, Projection, ProjectionConfig, Step};
use patterns::cqrs::view::{rebuild, Applied, BankView, Query, QueryBody, Totals};
use patterns::event_sourcing::event::{EventData, EventId, RecordedEvent};
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------------------------------------
// Events.

/// A bank event of `account` at global `position` (stream version `version`), made by
/// `command_id`; a credit is event 1 of its command, everything else event 0.
fn recorded_at(
    position: u64,
    version: u64,
    account: &str,
    command_id: u64,
    body: BankEventBody,
) -> RecordedEvent {
    let index = u8::from(matches!(body, BankEventBody::Credited { .. }));
    RecordedEvent {
        stream: stream_of(account),
        version,
        position,
        data: BankEvent {
            command_id,
            principal: None,
            body,
        }
        .to_data(event_id(command_id, index)),
    }
}

/// A bank event at `position`, made by command `100 + position`.
fn recorded(position: u64, account: &str, body: BankEventBody) -> RecordedEvent {
    recorded_at(position, 0, account, 100 + position, body)
}

fn opened(position: u64, account: &str) -> RecordedEvent {
    let owner = format!("owner-{account}");
    recorded(position, account, BankEventBody::Opened { owner })
}

fn deposited(position: u64, account: &str, amount: u64) -> RecordedEvent {
    recorded(position, account, BankEventBody::Deposited { amount })
}

fn withdrew(position: u64, account: &str, amount: u64) -> RecordedEvent {
    recorded(position, account, BankEventBody::Withdrew { amount })
}

fn debited(position: u64, from: &str, to: &str, amount: u64) -> RecordedEvent {
    let to = to.to_owned();
    recorded(position, from, BankEventBody::Debited { amount, to })
}

fn credited(position: u64, to: &str, from: &str, amount: u64) -> RecordedEvent {
    let from = from.to_owned();
    recorded(position, to, BankEventBody::Credited { amount, from })
}

/// An event with a raw type and payload, in account `z`'s stream.
fn raw(position: u64, event_type: &str, payload: &[u8]) -> RecordedEvent {
    RecordedEvent {
        stream: stream_of("z"),
        version: 0,
        position,
        data: EventData {
            event_id: EventId(u128::from(position) << 8),
            event_type: event_type.to_owned(),
            schema_version: 1,
            payload: payload.to_vec(),
        },
    }
}

/// A bank event whose payload is not JSON: a poison event.
fn poison(position: u64) -> RecordedEvent {
    raw(position, "bank.deposited", b"{not json")
}

/// An event of another domain, in another stream.
fn foreign(position: u64) -> RecordedEvent {
    RecordedEvent {
        stream: "orders-1".to_owned(),
        ..raw(position, "orders.placed", b"\x00\xff")
    }
}

/// Positions 0..=6: a and b opened, 100 in to a, 30 out of a, 50 from a to b (debit, then
/// credit), c opened and never funded.
fn ledger() -> Vec<RecordedEvent> {
    vec![
        opened(0, "a"),
        opened(1, "b"),
        deposited(2, "a", 100),
        withdrew(3, "a", 30),
        debited(4, "a", "b", 50),
        credited(5, "b", "a", 50),
        opened(6, "c"),
    ]
}

/// Folds `events` into an empty view with `mutants`, each expected to be folded in.
fn fold(events: &[RecordedEvent], mutants: &Mutants) -> BankView {
    let mut view = BankView::default();
    for event in events {
        assert_eq!(view.apply(event, mutants), Applied::Done, "{event:?}");
    }
    view
}

fn conserved(totals: &Totals) -> bool {
    totals.balances + totals.in_transit == totals.deposited - totals.withdrawn
}

fn balance(view: &BankView, account: &str) -> Option<i64> {
    view.rows.get(account).map(|row| row.balance)
}

// ---------------------------------------------------------------------------------------------
// bank: decide, load, the event format.

fn open_state(balance: u64) -> AccountState {
    AccountState {
        owner: Some("ann".to_owned()),
        balance,
        ..AccountState::default()
    }
}

fn open(account: &str) -> BankCommand {
    BankCommand::Open {
        account: account.to_owned(),
        owner: "ann".to_owned(),
    }
}

fn deposit(account: &str, amount: u64) -> BankCommand {
    BankCommand::Deposit {
        account: account.to_owned(),
        amount,
    }
}

fn withdraw(account: &str, amount: u64) -> BankCommand {
    BankCommand::Withdraw {
        account: account.to_owned(),
        amount,
    }
}

fn transfer(from: &str, to: &str, amount: u64) -> BankCommand {
    BankCommand::Transfer {
        from: from.to_owned(),
        to: to.to_owned(),
        amount,
    }
}

#[test]
fn decide_opens_once_and_refuses_a_second_open() {
    // Goal: an unopened account can be opened (the event names the owner); an open one refuses
    // a second open, whatever the owner.
    let fresh = AccountState::default();
    assert_eq!(
        fresh.decide("a", &open("a"), false),
        Ok(BankEventBody::Opened {
            owner: "ann".to_owned()
        })
    );
    assert_eq!(
        open_state(0).decide("a", &open("a"), false),
        Err(BankError::AlreadyOpen)
    );
}

#[test]
fn decide_refuses_money_movements_on_an_unopened_account() {
    // Goal: deposit, withdraw and transfer on an account never opened are refused NotOpen
    // naming the account, before the amount is even looked at.
    let fresh = AccountState::default();
    for command in [deposit("a", 10), withdraw("a", 0), transfer("a", "b", 5)] {
        assert_eq!(
            fresh.decide("a", &command, true),
            Err(BankError::NotOpen("a".to_owned())),
            "{command:?}"
        );
    }
}

#[test]
fn decide_refuses_a_zero_amount() {
    // Goal: a zero deposit, withdrawal or transfer is refused ZeroAmount, even with funds.
    let state = open_state(100);
    for command in [deposit("a", 0), withdraw("a", 0), transfer("a", "b", 0)] {
        assert_eq!(
            state.decide("a", &command, true),
            Err(BankError::ZeroAmount),
            "{command:?}"
        );
    }
}

#[test]
fn decide_refuses_what_the_balance_does_not_cover() {
    // Goal: a withdrawal or transfer above the balance is refused with the balance and the
    // amount; exactly the balance is allowed; a deposit that would overflow is refused.
    let state = open_state(40);
    let short = Err(BankError::InsufficientFunds {
        balance: 40,
        amount: 41,
    });
    assert_eq!(state.decide("a", &withdraw("a", 41), false), short);
    assert_eq!(state.decide("a", &transfer("a", "b", 41), true), short);
    assert_eq!(
        state.decide("a", &withdraw("a", 40), false),
        Ok(BankEventBody::Withdrew { amount: 40 })
    );
    assert_eq!(
        state.decide("a", &deposit("a", 7), false),
        Ok(BankEventBody::Deposited { amount: 7 })
    );
    assert_eq!(
        open_state(u64::MAX).decide("a", &deposit("a", 1), false),
        Err(BankError::Overflow)
    );
}

#[test]
fn decide_refuses_a_transfer_to_the_same_account() {
    // Goal: a transfer from an account to itself is refused SameAccount, even though the
    // "target" is open and the balance covers it.
    assert_eq!(
        open_state(100).decide("a", &transfer("a", "a", 10), true),
        Err(BankError::SameAccount)
    );
}

#[test]
fn decide_refuses_a_transfer_to_an_account_that_is_not_open() {
    // Goal: a transfer whose target is not open is refused NotOpen naming the target, not the
    // source, even when the balance would not cover it either.
    let state = open_state(100);
    assert_eq!(
        state.decide("a", &transfer("a", "b", 10), false),
        Err(BankError::NotOpen("b".to_owned()))
    );
    assert_eq!(
        state.decide("a", &transfer("a", "b", 1000), false),
        Err(BankError::NotOpen("b".to_owned()))
    );
}

#[test]
fn decide_a_valid_transfer_yields_a_debit_to_the_target() {
    // Goal: a covered transfer to another open account yields Debited with the amount and the
    // target (the credit is the command side's second append, not decide's).
    assert_eq!(
        open_state(100).decide("a", &transfer("a", "b", 60), true),
        Ok(BankEventBody::Debited {
            amount: 60,
            to: "b".to_owned()
        })
    );
}

#[test]
fn load_folds_the_stream_and_records_command_ids_and_positions() {
    // Goal: load folds the balance and owner, takes the last version (also of an event it
    // skips), and records per command id the event index and global position, so that
    // position_of finds a retried command's events and nothing else.
    let events = vec![
        recorded_at(
            3,
            0,
            "a",
            1,
            BankEventBody::Opened {
                owner: "ann".into(),
            },
        ),
        recorded_at(7, 1, "a", 2, BankEventBody::Deposited { amount: 100 }),
        recorded_at(
            9,
            2,
            "a",
            3,
            BankEventBody::Debited {
                amount: 30,
                to: "b".into(),
            },
        ),
        recorded_at(
            12,
            3,
            "a",
            4,
            BankEventBody::Credited {
                amount: 5,
                from: "c".into(),
            },
        ),
        RecordedEvent {
            version: 4,
            stream: stream_of("a"),
            ..foreign(15)
        },
    ];
    let state = AccountState::load(&events);
    assert_eq!(state.owner.as_deref(), Some("ann"));
    assert!(state.is_open());
    assert_eq!(state.balance, 75);
    assert_eq!(state.version, Some(4));
    assert_eq!(state.position_of(1, 0), Some(3));
    assert_eq!(state.position_of(2, 0), Some(7));
    assert_eq!(state.position_of(3, 0), Some(9));
    assert_eq!(state.position_of(4, 1), Some(12));
    assert_eq!(state.position_of(4, 0), None);
    assert_eq!(state.position_of(99, 0), None);
    assert_eq!(state.commands.len(), 4);
    assert_eq!(AccountState::load(&[]), AccountState::default());
}

#[test]
fn event_ids_derive_from_the_command_id_and_index() {
    // Goal: event ids are command_id * 256 + index, so a retry appends the same ids, and the
    // debit and the credit of one transfer differ; streams name their account.
    assert_eq!(event_id(7, 0), EventId(7 << 8));
    assert_eq!(event_id(7, 1), EventId((7 << 8) | 1));
    assert_ne!(event_id(7, 0), event_id(7, 1));
    assert_eq!(stream_of("a"), "account-a");
    assert_eq!(account_of("account-a"), Some("a"));
    assert_eq!(account_of("orders-1"), None);
}

#[test]
fn bank_events_round_trip_through_the_store_format() {
    // Goal: every body encodes to its `bank.*` type, schema 1, the given event id, a JSON
    // payload with the command id beside the body's fields, and decodes back equal.
    let bodies = [
        BankEventBody::Opened {
            owner: "ann".into(),
        },
        BankEventBody::Deposited { amount: 25 },
        BankEventBody::Withdrew { amount: 25 },
        BankEventBody::Debited {
            amount: 25,
            to: "b".into(),
        },
        BankEventBody::Credited {
            amount: 25,
            from: "a".into(),
        },
    ];
    for (i, body) in bodies.into_iter().enumerate() {
        let event = BankEvent {
            command_id: 7 + i as u64,
            principal: None,
            body: body.clone(),
        };
        let data = event.to_data(event_id(7, 1));
        assert_eq!(data.event_type, body.event_type());
        assert!(data.event_type.starts_with("bank."));
        assert_eq!(data.schema_version, 1);
        assert_eq!(data.event_id, event_id(7, 1));
        let json: serde_json::Value = serde_json::from_slice(&data.payload).unwrap();
        assert_eq!(json["command_id"], 7 + i as u64);
        let recorded = RecordedEvent {
            stream: stream_of("a"),
            version: 0,
            position: 3,
            data,
        };
        assert_eq!(BankEvent::decode(&recorded), Ok(Some(event)));
    }
}

#[test]
fn an_event_of_another_domain_decodes_to_none() {
    // Goal: an event whose type does not start with `bank.` is not the domain's, whatever its
    // payload: Ok(None), never a poison event.
    assert_eq!(BankEvent::decode(&foreign(4)), Ok(None));
    let valid_payload = deposited(5, "a", 10).data.payload;
    assert_eq!(
        BankEvent::decode(&raw(5, "deposited", &valid_payload)),
        Ok(None)
    );
}

#[test]
fn a_bank_event_with_a_bad_payload_is_poison() {
    // Goal: a `bank.*` event whose payload does not decode (not JSON, missing fields, an
    // unknown kind, an empty payload) is Err naming its position.
    for payload in [
        &b"{not json"[..],
        b"",
        br#"{"command_id": 7}"#,
        br#"{"command_id": 7, "kind": "deposited"}"#,
        br#"{"command_id": 7, "kind": "stolen", "amount": 1}"#,
        br#"{"command_id": -1, "kind": "deposited", "amount": 1}"#,
    ] {
        let result = BankEvent::decode(&raw(42, "bank.deposited", payload));
        let error = result.expect_err("poison");
        assert!(error.contains("42"), "{error}");
    }
}

#[test]
fn a_type_and_payload_kind_mismatch_is_poison() {
    // Goal: a payload that decodes but is of another kind than the event's type (a deposit
    // stored as `bank.withdrew`, or under an unknown `bank.*` type) is Err, never folded as
    // either.
    let deposit = deposited(8, "a", 10).data.payload;
    let error = BankEvent::decode(&raw(8, "bank.withdrew", &deposit)).expect_err("mismatch");
    assert!(
        error.contains("bank.withdrew") && error.contains("bank.deposited"),
        "{error}"
    );
    assert!(BankEvent::decode(&raw(8, "bank.closed", &deposit)).is_err());
}

#[test]
fn the_documented_payload_format_decodes() {
    // Goal: the module documentation's table promises that an event is `{"command_id": 7,
    // "kind": "deposited", "amount": 25}` under type `bank.deposited` (so that a reader or an
    // oracle with code of its own can write and read them); such an event decodes.
    let event = raw(
        0,
        "bank.deposited",
        br#"{"command_id": 7, "kind": "deposited", "amount": 25}"#,
    );
    assert_eq!(
        BankEvent::decode(&event),
        Ok(Some(BankEvent {
            command_id: 7,
            principal: None,
            body: BankEventBody::Deposited { amount: 25 }
        }))
    );
}

// ---------------------------------------------------------------------------------------------
// view: the fold, the file, the rebuild.

#[test]
fn the_fold_keeps_balances_statements_and_conservation() {
    // Goal: deposits, withdrawals and both halves of a transfer land in the right rows and
    // totals; money in transit between debit and credit keeps balances + in transit ==
    // deposited - withdrawn after every event; the position follows the log.
    let mut view = BankView::default();
    let none = Mutants::none();
    for event in ledger() {
        assert_eq!(view.apply(&event, &none), Applied::Done);
        assert_eq!(view.position, event.position + 1);
        assert!(
            conserved(&view.totals),
            "at {}: {:?}",
            event.position,
            view.totals
        );
        if event.position == 4 {
            // Between the debit and the credit.
            assert_eq!(view.totals.in_transit, 50);
            assert_eq!(balance(&view, "a"), Some(20));
            assert_eq!(balance(&view, "b"), Some(0));
        }
    }
    assert_eq!(
        view.totals,
        Totals {
            accounts: 3,
            balances: 70,
            deposited: 100,
            withdrawn: 30,
            in_transit: 0,
        }
    );
    assert_eq!(balance(&view, "a"), Some(20));
    assert_eq!(balance(&view, "b"), Some(50));
    assert_eq!(balance(&view, "c"), Some(0));
    assert_eq!(view.rows["a"].owner, "owner-a");
    let kinds: Vec<(u64, &str, i64)> = view.rows["a"]
        .entries
        .iter()
        .map(|e| (e.position, e.kind.as_str(), e.amount))
        .collect();
    assert_eq!(
        kinds,
        [
            (2, "deposit", 100),
            (3, "withdrawal", -30),
            (4, "transfer-out", -50)
        ]
    );
    let b = &view.rows["b"].entries;
    assert_eq!(
        (b[0].kind.as_str(), b[0].amount, b[0].command_id),
        ("transfer-in", 50, 105)
    );
    assert!(view.rows["c"].entries.is_empty());
    assert_eq!(
        view.answer(&Query::Balance("a".into())),
        QueryBody::Balance(Some(20))
    );
    assert_eq!(
        view.answer(&Query::Balance("x".into())),
        QueryBody::Balance(None)
    );
    assert_eq!(
        view.answer(&Query::Statement("x".into())),
        QueryBody::Statement(None)
    );
    assert_eq!(view.answer(&Query::Totals), QueryBody::Totals(view.totals));
}

#[test]
fn the_fold_ignores_a_duplicate_below_the_position() {
    // Goal: an event below the position (redelivered) is Duplicate and changes nothing, so the
    // fold is idempotent by position.
    let events = ledger();
    let mut view = fold(&events[..4], &Mutants::none());
    let before = view.clone();
    assert_eq!(view.apply(&events[2], &Mutants::none()), Applied::Duplicate);
    assert_eq!(view.apply(&events[0], &Mutants::none()), Applied::Duplicate);
    assert_eq!(view, before);
}

#[cfg(madsim)]
#[test]
fn mutant_duplicate_applied_twice_folds_a_redelivered_deposit_again() {
    // Goal: under DuplicateAppliedTwice a redelivered deposit is folded a second time (the
    // position does not move, so nothing shows it but the money): conservation still holds
    // but the deposit is counted twice.
    let events = ledger();
    let mutants = Mutants::only(Mutant::DuplicateAppliedTwice);
    let mut view = fold(&events[..4], &mutants);
    assert_eq!(view.apply(&events[2], &mutants), Applied::Done);
    assert_eq!(view.position, 4);
    assert_eq!(view.totals.deposited, 200);
    assert_eq!(balance(&view, "a"), Some(170));
    assert_eq!(view.rows["a"].entries.len(), 3);
}

#[test]
fn an_event_of_another_domain_moves_the_position_only() {
    // Goal: a foreign event is folded as nothing: Done, the position moves past it, no row or
    // total changes; a bank event outside an account stream is likewise skipped.
    let mut view = fold(&ledger()[..3], &Mutants::none());
    let before = view.clone();
    assert_eq!(view.apply(&foreign(3), &Mutants::none()), Applied::Done);
    let outside = RecordedEvent {
        stream: "orders-1".to_owned(),
        ..deposited(4, "a", 5)
    };
    assert_eq!(view.apply(&outside, &Mutants::none()), Applied::Done);
    assert_eq!(view.position, 5);
    assert_eq!(
        (view.rows.clone(), view.totals),
        (before.rows, before.totals)
    );
}

#[test]
fn a_poison_event_stays_until_parked_at_the_position() {
    // Goal: a poison event is not folded and does not move the position; park records it and
    // moves on, but only at the position (parking elsewhere is a no-op).
    let mut view = fold(&ledger()[..2], &Mutants::none());
    assert!(matches!(
        view.apply(&poison(2), &Mutants::none()),
        Applied::Poison(_)
    ));
    assert_eq!(view.position, 2);
    view.park(5);
    view.park(1);
    assert_eq!((view.position, view.parked.clone()), (2, vec![]));
    view.park(2);
    assert_eq!((view.position, view.parked.clone()), (3, vec![2]));
    assert_eq!(
        view.apply(&deposited(3, "a", 9), &Mutants::none()),
        Applied::Done
    );
    assert_eq!(balance(&view, "a"), Some(9));
}

#[test]
fn the_view_file_round_trips() {
    // Goal: encode then decode gives the same model (rows, totals, position, generation,
    // parked), and the file ends with the CRC-32C of the rest.
    let mut view = fold(&ledger(), &Mutants::none());
    view.generation = 3;
    view.apply(&poison(7), &Mutants::none());
    view.park(7);
    let bytes = view.encode();
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    assert_eq!(crc, crc32c::crc32c(body).to_le_bytes());
    assert_eq!(BankView::decode(&bytes), Ok(view));
    let empty = BankView::default();
    assert_eq!(BankView::decode(&empty.encode()), Ok(empty));
}

#[test]
fn a_flipped_byte_fails_the_view_file_checksum() {
    // Goal: any single flipped byte, in the body or in the checksum, makes decode fail, never
    // a silently different model.
    let bytes = fold(&ledger(), &Mutants::none()).encode();
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x20;
        assert!(BankView::decode(&bad).is_err(), "byte {i}");
    }
    let mut bad = bytes.clone();
    bad[0] ^= 1;
    let error = BankView::decode(&bad).expect_err("checksum");
    assert!(error.contains("checksum"), "{error}");
}

#[test]
fn an_empty_view_file_is_the_empty_view_and_a_short_one_an_error() {
    // Goal: a missing or empty file is the first start (the empty model); a file shorter than
    // its checksum, or truncated, is an error.
    assert_eq!(BankView::decode(&[]), Ok(BankView::default()));
    assert!(BankView::decode(&[1, 2, 3]).is_err());
    let bytes = fold(&ledger(), &Mutants::none()).encode();
    assert!(BankView::decode(&bytes[..bytes.len() - 1]).is_err());
}

#[test]
fn rebuild_equals_the_incremental_fold() {
    // Goal: rebuilding from the log (with a foreign and a poison event in it) gives the model
    // the live fold gives when it parks the poison event, with the generation asked for.
    let mut events = ledger();
    events.push(foreign(7));
    events.push(poison(8));
    events.push(deposited(9, "c", 5));
    let mut live = BankView::default();
    for event in &events {
        if let Applied::Poison(_) = live.apply(event, &Mutants::none()) {
            live.park(event.position);
        }
    }
    assert_eq!(live.position, 10);
    assert_eq!(live.parked, vec![8]);
    let rebuilt = rebuild(&events, 4, &Mutants::none());
    assert_eq!(rebuilt.generation, 4);
    assert_eq!(
        BankView {
            generation: 4,
            ..live
        },
        rebuilt
    );
}

#[test]
fn rebuild_ignores_events_out_of_order() {
    // Goal: the rebuild folds only the next position: a duplicate or an event beyond a hole
    // is ignored, and the model stops at the hole.
    let events = ledger();
    let shuffled = vec![
        events[0].clone(),
        events[0].clone(),
        events[2].clone(),
        events[1].clone(),
    ];
    let rebuilt = rebuild(&shuffled, 1, &Mutants::none());
    assert_eq!(rebuilt.position, 2);
    assert_eq!(rebuilt.totals.accounts, 2);
    assert_eq!(rebuilt.totals.deposited, 0);
}

#[cfg(madsim)]
#[test]
fn mutant_rebuild_drops_unchanged_rows_loses_an_unfunded_account() {
    // Goal: under RebuildDropsUnchangedRows the rebuilt model has no row for c (opened, never
    // funded), though the live fold has one; a with money movements stays. Without the mutant
    // the row is there.
    let events = ledger();
    let live = fold(&events, &Mutants::none());
    assert!(live.rows.contains_key("c"));
    let correct = rebuild(&events, 1, &Mutants::none());
    assert_eq!(correct.rows, live.rows);
    let broken = rebuild(
        &events,
        1,
        &Mutants::only(Mutant::RebuildDropsUnchangedRows),
    );
    assert!(!broken.rows.contains_key("c"));
    assert!(broken.rows.contains_key("a") && broken.rows.contains_key("b"));
    assert_eq!(
        broken.answer(&Query::Balance("c".into())),
        QueryBody::Balance(None)
    );
}

// ---------------------------------------------------------------------------------------------
// projection: driven by hand.

const PAGE: u64 = 4;

fn config(mutants: Mutants) -> ProjectionConfig {
    ProjectionConfig {
        page_size: PAGE,
        buffer_max: 8,
        idle_resubscribe: ms(300),
        gap_wait: ms(30),
        poison_attempts: 3,
        poison_backoff: ms(40),
        mutants,
    }
}

fn steps(projection: &mut Projection) -> Vec<Step> {
    std::iter::from_fn(|| projection.poll_step()).collect()
}

/// A short description of a step: `read 3+4`, `subscribe 3`, `store 3`.
fn show(step: &Step) -> String {
    match step {
        Step::Read { from, count } => format!("read {from}+{count}"),
        Step::Subscribe { from } => format!("subscribe {from}"),
        Step::Store(view) => format!("store {}", view.position),
    }
}

fn shown(projection: &mut Projection) -> Vec<String> {
    steps(projection).iter().map(show).collect()
}

/// Performs the steps like a driver whose stores succeed at once; returns the others.
fn run_steps(projection: &mut Projection) -> Vec<String> {
    let mut others = Vec::new();
    while let Some(step) = projection.poll_step() {
        match step {
            Step::Store(_) => projection.on_stored(Ok(())).unwrap(),
            other => others.push(show(&other)),
        }
    }
    others
}

/// A projection with `config`, started at 0 on an empty store and caught up with `events`
/// (positions from 0, in pages), live at time 0 with everything stored.
fn live_with(config: ProjectionConfig, events: &[RecordedEvent]) -> Projection {
    let page = config.page_size as usize;
    let mut projection = Projection::new(config, BankView::default(), ms(0));
    let mut chunks = events.chunks(page).collect::<Vec<_>>();
    if events.len().is_multiple_of(page) {
        chunks.push(&[]);
    }
    for chunk in chunks {
        let from = chunk.first().map_or(events.len() as u64, |e| e.position);
        assert_eq!(run_steps(&mut projection), [format!("read {from}+{page}")]);
        projection.on_page(ms(0), from, Ok(chunk.to_vec()));
    }
    let end = events.len() as u64;
    assert_eq!(run_steps(&mut projection), [format!("subscribe {end}")]);
    assert_eq!(projection.mode(), Mode::Live);
    assert_eq!(projection.served().position, end);
    projection.take_notes();
    projection
}

fn live(mutants: Mutants, events: &[RecordedEvent]) -> Projection {
    live_with(config(mutants), events)
}

/// What a driver does after each input: a tick at the same time; and it checks that the
/// next tick is strictly later, since nothing is due right after a tick.
fn tick(projection: &mut Projection, now: Duration) {
    projection.on_tick(now);
    let next = projection.next_tick(now);
    assert!(next > now, "next tick {next:?} is not after {now:?}");
}

#[test]
fn projection_starts_by_reading_from_its_stored_position() {
    // Goal: a new projection catches up first: its first step is a read of one page from the
    // stored model's position (0 on a first start), and it serves the stored model meanwhile.
    let mut fresh = Projection::new(config(Mutants::none()), BankView::default(), ms(0));
    assert_eq!(fresh.mode(), Mode::CatchingUp);
    assert_eq!(
        fresh.poll_step(),
        Some(Step::Read {
            from: 0,
            count: PAGE
        })
    );
    assert_eq!(fresh.poll_step(), None);
    let stored = fold(&ledger()[..5], &Mutants::none());
    let mut restarted = Projection::new(config(Mutants::none()), stored.clone(), ms(7));
    assert_eq!(shown(&mut restarted), ["read 5+4"]);
    assert_eq!(restarted.served(), &stored);
    assert_eq!(restarted.working(), &stored);
}

#[test]
fn a_short_page_makes_the_projection_live() {
    // Goal: a page shorter than page_size is the end of the log: the events are folded, the
    // projection subscribes from its new position, goes live (noted), and stores the model.
    let mut projection = Projection::new(config(Mutants::none()), BankView::default(), ms(0));
    steps(&mut projection);
    projection.on_page(ms(5), 0, Ok(ledger()[..3].to_vec()));
    assert_eq!(shown(&mut projection), ["subscribe 3", "store 3"]);
    assert_eq!(projection.mode(), Mode::Live);
    assert_eq!(projection.take_notes(), [Note::WentLive(3)]);
    assert_eq!(projection.working().position, 3);
}

#[test]
fn an_empty_log_goes_live_at_zero_without_storing() {
    // Goal: an empty first page goes live at 0; nothing changed, so nothing is stored.
    let mut projection = Projection::new(config(Mutants::none()), BankView::default(), ms(0));
    steps(&mut projection);
    projection.on_page(ms(0), 0, Ok(vec![]));
    assert_eq!(shown(&mut projection), ["subscribe 0"]);
    assert_eq!(projection.mode(), Mode::Live);
}

#[test]
fn a_full_page_reads_the_next_page() {
    // Goal: a full page may not be the end: the projection stays catching up and reads the
    // next page from its new position; then a short page takes it live.
    let events = ledger();
    let mut projection = Projection::new(config(Mutants::none()), BankView::default(), ms(0));
    steps(&mut projection);
    projection.on_page(ms(1), 0, Ok(events[..4].to_vec()));
    assert_eq!(shown(&mut projection), ["read 4+4", "store 4"]);
    assert_eq!(projection.mode(), Mode::CatchingUp);
    projection.on_stored(Ok(())).unwrap();
    projection.on_page(ms(2), 4, Ok(events[4..].to_vec()));
    assert_eq!(shown(&mut projection), ["subscribe 7", "store 7"]);
    assert_eq!(projection.mode(), Mode::Live);
}

#[test]
fn a_failed_or_broken_page_is_read_again_after_the_backoff() {
    // Goal: a failed read, or a page that does not start at `from` or has a hole, folds
    // nothing and is read again from the same position poison_backoff later, not before.
    for page in [
        Err("unavailable".to_owned()),
        Ok(vec![opened(1, "a")]),
        Ok(vec![opened(0, "a"), deposited(2, "a", 5)]),
    ] {
        let mut projection = Projection::new(config(Mutants::none()), BankView::default(), ms(0));
        steps(&mut projection);
        projection.on_page(ms(10), 0, page);
        assert!(shown(&mut projection).is_empty());
        assert_eq!(projection.working().position, 0);
        assert_eq!(projection.next_tick(ms(10)), ms(50));
        tick(&mut projection, ms(49));
        assert!(shown(&mut projection).is_empty());
        tick(&mut projection, ms(50));
        assert_eq!(shown(&mut projection), ["read 0+4"]);
    }
}

#[test]
fn a_pushed_duplicate_is_ignored() {
    // Goal: live, a push that repeats events below the position folds only the new ones:
    // totals count each event once.
    let events = ledger();
    let mut projection = live(Mutants::none(), &events[..3]);
    projection.on_push(ms(5), vec![events[2].clone(), events[3].clone()]);
    projection.on_push(ms(6), vec![events[3].clone()]);
    assert_eq!(projection.working().position, 4);
    assert_eq!(projection.working().totals.deposited, 100);
    assert_eq!(projection.working().totals.withdrawn, 30);
    assert_eq!(run_steps(&mut projection), Vec::<String>::new());
    assert_eq!(projection.served(), &fold(&events[..4], &Mutants::none()));
}

#[cfg(madsim)]
#[test]
fn mutant_duplicate_applied_twice_counts_a_pushed_duplicate_again() {
    // Goal: under DuplicateAppliedTwice the same redelivered push doubles the deposit in the
    // working model.
    let events = ledger();
    let mut projection = live(Mutants::only(Mutant::DuplicateAppliedTwice), &events[..3]);
    projection.on_push(ms(5), vec![events[2].clone()]);
    assert_eq!(projection.working().totals.deposited, 200);
}

#[test]
fn a_gap_in_the_pushes_is_read_after_gap_wait_never_skipped() {
    // Goal: a push beyond the position waits in the buffer; the position does not move past
    // the hole; gap_wait after the gap was seen the projection goes back to catch-up and reads
    // from its position (noted); the page fills the hole and the buffered event follows.
    let events = ledger();
    let mut projection = live(Mutants::none(), &events[..3]);
    projection.on_push(ms(100), vec![events[5].clone()]);
    tick(&mut projection, ms(100));
    assert_eq!(projection.working().position, 3);
    assert_eq!(projection.next_tick(ms(100)), ms(130));
    tick(&mut projection, ms(129));
    assert!(shown(&mut projection).is_empty());
    tick(&mut projection, ms(130));
    assert_eq!(shown(&mut projection), ["read 3+4"]);
    assert_eq!(projection.take_notes(), [Note::GapRead(3)]);
    assert_eq!(projection.mode(), Mode::CatchingUp);
    assert_eq!(projection.working().position, 3);
    projection.on_page(ms(140), 3, Ok(events[3..5].to_vec()));
    assert_eq!(projection.working().position, 6);
    assert_eq!(shown(&mut projection), ["subscribe 6", "store 6"]);
    assert_eq!(projection.working(), &fold(&events[..6], &Mutants::none()));
}

#[test]
fn a_gap_closed_by_a_late_push_needs_no_read() {
    // Goal: pushes are reordered, not only lost: when the missing events arrive before
    // gap_wait, everything is folded in order and no read is issued.
    let events = ledger();
    let mut projection = live(Mutants::none(), &events[..2]);
    projection.on_push(ms(100), vec![events[4].clone()]);
    tick(&mut projection, ms(100));
    projection.on_push(ms(110), vec![events[3].clone(), events[2].clone()]);
    tick(&mut projection, ms(110));
    assert_eq!(projection.working().position, 5);
    tick(&mut projection, ms(200));
    assert_eq!(shown(&mut projection), ["store 5"]);
    assert!(projection.take_notes().is_empty());
}

#[test]
fn a_full_buffer_keeps_the_lowest_positions() {
    // Goal: with the buffer full, a push keeps the events nearest the position and drops the
    // highest; the dropped ones are read again once the hole is filled and a gap remains.
    let events = ledger();
    let mut projection = live_with(
        ProjectionConfig {
            buffer_max: 2,
            ..config(Mutants::none())
        },
        &events[..1],
    );
    projection.on_push(
        ms(10),
        vec![events[5].clone(), events[4].clone(), events[3].clone()],
    );
    tick(&mut projection, ms(10));
    assert_eq!(projection.working().position, 1);
    // 1 and 2 push 4 out, then 3 (each is folded before the next arrives).
    projection.on_push(ms(11), vec![events[1].clone()]);
    tick(&mut projection, ms(11));
    assert_eq!(projection.working().position, 2);
    projection.on_push(ms(12), vec![events[2].clone()]);
    tick(&mut projection, ms(12));
    assert_eq!(projection.working().position, 4);
    projection.on_push(ms(13), vec![events[6].clone()]);
    tick(&mut projection, ms(13));
    tick(&mut projection, ms(43));
    assert_eq!(run_steps(&mut projection), ["read 4+4"]);
    assert_eq!(projection.served().position, 4);
}

#[test]
fn a_store_is_issued_and_served_only_once_acknowledged() {
    // Goal: folded events are served only after their Store is acknowledged; one store at a
    // time: what is folded meanwhile is stored after; a failed store changes nothing served
    // and is reported to the driver.
    let events = ledger();
    let mut projection = live(Mutants::none(), &events[..2]);
    projection.on_push(ms(5), vec![events[2].clone()]);
    let stored = steps(&mut projection);
    assert_eq!(stored.iter().map(show).collect::<Vec<_>>(), ["store 3"]);
    assert_eq!(projection.served().position, 2);
    projection.on_push(ms(6), vec![events[3].clone()]);
    assert!(steps(&mut projection).is_empty(), "one store at a time");
    assert_eq!(projection.served().position, 2);
    projection.on_stored(Ok(())).unwrap();
    assert_eq!(projection.served().position, 3);
    assert_eq!(projection.served(), &fold(&events[..3], &Mutants::none()));
    assert_eq!(shown(&mut projection), ["store 4"]);
    assert_eq!(
        projection.on_stored(Err("disk full".into())),
        Err("disk full".to_owned())
    );
    assert_eq!(projection.served().position, 3);
    assert_eq!(projection.on_stored(Ok(())), Ok(()), "no store in flight");
}

#[cfg(madsim)]
#[test]
fn mutant_serves_unpersisted_view_serves_the_working_model() {
    // Goal: under ServesUnpersistedView a folded event is served before its store.
    let events = ledger();
    let mut projection = live(Mutants::only(Mutant::ServesUnpersistedView), &events[..2]);
    projection.on_push(ms(5), vec![events[2].clone()]);
    assert_eq!(projection.served().position, 3);
}

#[test]
fn reached_waits_for_the_stored_model() {
    // Goal: a query needing position 4 is fresh only once a model at 4 is stored; received or
    // folded is not enough.
    let events = ledger();
    let mut projection = live(Mutants::none(), &events[..2]);
    assert!(projection.reached(2) && !projection.reached(3));
    projection.on_push(ms(5), vec![events[2].clone(), events[3].clone()]);
    projection.on_push(ms(5), vec![events[5].clone()]);
    assert_eq!(projection.working().position, 4);
    assert!(!projection.reached(4));
    assert!(!projection.reached(6));
    run_steps(&mut projection);
    assert!(projection.reached(4));
    assert!(!projection.reached(5));
}

#[cfg(madsim)]
#[test]
fn mutant_ryw_wait_returns_early_trusts_the_received_position() {
    // Goal: under RywWaitReturnsEarly a position counts as reached as soon as an event at or
    // beyond it was received, unfolded (behind a gap) and unstored.
    let events = ledger();
    let mut projection = live(Mutants::only(Mutant::RywWaitReturnsEarly), &events[..2]);
    projection.on_push(ms(5), vec![events[5].clone()]);
    assert_eq!(projection.served().position, 2);
    assert!(projection.reached(6));
    assert!(!projection.reached(7));
}

/// A projection catching up on [opened a, poison, deposit 5 to a] at time 0.
fn poisoned(mutants: Mutants) -> Projection {
    let mut projection = Projection::new(config(mutants), BankView::default(), ms(0));
    steps(&mut projection);
    let page = vec![opened(0, "a"), poison(1), deposited(2, "a", 5)];
    projection.on_page(ms(0), 0, Ok(page));
    projection
}

#[test]
fn a_poison_event_is_parked_after_its_attempts_with_backoff_between() {
    // Goal: a poison event stops the fold at its position; it is tried poison_attempts times
    // (3), poison_backoff (40 ms) apart, not sooner; then parked (noted, recorded in the
    // model) and the events behind it are folded; the projection then reads on and goes live.
    let mut projection = poisoned(Mutants::none());
    assert_eq!(
        shown(&mut projection),
        ["store 1"],
        "no subscribe behind a poison event"
    );
    projection.on_stored(Ok(())).unwrap();
    assert_eq!(projection.next_tick(ms(0)), ms(40));
    tick(&mut projection, ms(39));
    assert_eq!(projection.working().position, 1);
    tick(&mut projection, ms(40)); // The second attempt.
    assert_eq!(projection.next_tick(ms(40)), ms(80));
    tick(&mut projection, ms(79));
    assert!(projection.take_notes().is_empty());
    assert!(shown(&mut projection).is_empty());
    tick(&mut projection, ms(80)); // The third: parked.
    let notes = projection.take_notes();
    assert!(
        matches!(notes.as_slice(), [Note::Parked { position: 1, .. }]),
        "{notes:?}"
    );
    assert_eq!(projection.working().parked, vec![1]);
    assert_eq!(projection.working().position, 3);
    assert_eq!(balance(projection.working(), "a"), Some(5));
    assert_eq!(shown(&mut projection), ["read 3+4", "store 3"]);
    projection.on_stored(Ok(())).unwrap();
    assert_eq!(projection.served().parked, vec![1]);
    projection.on_page(ms(81), 3, Ok(vec![]));
    assert_eq!(shown(&mut projection), ["subscribe 3"]);
}

#[cfg(madsim)]
#[test]
fn mutant_poison_never_parked_stalls_the_projection() {
    // Goal: under PoisonNeverParked the poison event is retried for ever: long after
    // poison_attempts * poison_backoff nothing is parked and the position stays at it.
    let mut projection = poisoned(Mutants::only(Mutant::PoisonNeverParked));
    run_steps(&mut projection);
    let mut now = ms(0);
    for _ in 0..50 {
        now = projection.next_tick(now);
        tick(&mut projection, now);
    }
    assert!(now >= ms(2000));
    assert!(projection.working().parked.is_empty());
    assert_eq!(projection.working().position, 1);
    assert!(projection.take_notes().is_empty());
    assert!(run_steps(&mut projection).is_empty());
}

#[test]
fn pushes_do_not_hasten_a_poison_events_attempts() {
    // Goal: live, a poison event waiting for its next attempt is not tried again by every push
    // that arrives meanwhile: it is parked no sooner than (poison_attempts - 1) *
    // poison_backoff after its first attempt.
    let mut projection = live(Mutants::none(), &[]);
    projection.on_push(ms(10), vec![poison(0)]);
    tick(&mut projection, ms(10));
    projection.on_push(ms(11), vec![opened(1, "a")]);
    tick(&mut projection, ms(11));
    projection.on_push(ms(12), vec![deposited(2, "a", 5)]);
    tick(&mut projection, ms(12));
    assert!(
        projection.working().parked.is_empty(),
        "parked 2 ms after the first attempt: {:?}",
        projection.take_notes()
    );
}

#[test]
fn a_live_projection_resubscribes_after_silence() {
    // Goal: live, hearing nothing for idle_resubscribe (300 ms) makes the projection subscribe
    // again from its position (the store may have restarted and forgotten it); a push defers
    // it; the timer restarts after subscribing.
    let events = ledger();
    let mut projection = live(Mutants::none(), &events[..2]);
    assert_eq!(projection.next_tick(ms(0)), ms(300));
    tick(&mut projection, ms(299));
    assert!(shown(&mut projection).is_empty());
    tick(&mut projection, ms(300));
    assert_eq!(shown(&mut projection), ["subscribe 2"]);
    projection.on_push(ms(500), vec![events[2].clone()]);
    tick(&mut projection, ms(500));
    run_steps(&mut projection);
    tick(&mut projection, ms(600));
    assert!(shown(&mut projection).is_empty());
    assert_eq!(projection.next_tick(ms(600)), ms(800));
    tick(&mut projection, ms(800));
    assert_eq!(shown(&mut projection), ["subscribe 3"]);
    assert_eq!(projection.next_tick(ms(800)), ms(1100));
}

#[test]
fn catching_up_never_resubscribes() {
    // Goal: while a read is in flight, silence does not subscribe and no tick is due before
    // idle_resubscribe from now.
    let mut projection = Projection::new(config(Mutants::none()), BankView::default(), ms(0));
    steps(&mut projection);
    for t in [0, 300, 1000, 5000] {
        tick(&mut projection, ms(t));
        assert_eq!(projection.next_tick(ms(t)), ms(t + 300));
        assert!(shown(&mut projection).is_empty());
    }
}

#[test]
fn next_tick_is_never_in_the_past_nor_now_when_nothing_is_due() {
    // Goal: in every state a script passes through (catching up, live, a gap, a poison event,
    // a failed read, a late tick), next_tick(now) >= now, and right after on_tick(now) it is
    // strictly later (the driver would spin otherwise); a deadline already passed gives now.
    let events = ledger();
    let mut projection = live(Mutants::none(), &events[..2]);
    tick(&mut projection, ms(0));
    // A late driver: the resubscription is overdue.
    assert_eq!(projection.next_tick(ms(1000)), ms(1000));
    tick(&mut projection, ms(1000));
    projection.on_push(ms(1001), vec![events[4].clone()]);
    tick(&mut projection, ms(1001));
    assert_eq!(projection.next_tick(ms(1001)), ms(1031));
    assert_eq!(projection.next_tick(ms(1500)), ms(1500));
    tick(&mut projection, ms(1500)); // The gap read.
    assert!(projection.next_tick(ms(1500)) >= ms(1800));
    projection.on_page(ms(1510), 2, Err("timeout".into()));
    tick(&mut projection, ms(1510));
    assert_eq!(projection.next_tick(ms(1510)), ms(1550));
    tick(&mut projection, ms(1550));
    projection.on_page(ms(1560), 2, Ok(vec![events[2].clone(), poison(3)]));
    tick(&mut projection, ms(1560));
    assert_eq!(projection.next_tick(ms(1560)), ms(1600));
    let mut now = ms(1560);
    for _ in 0..10 {
        now = projection.next_tick(now);
        tick(&mut projection, now);
    }
    assert_eq!(projection.working().parked, vec![3]);
    assert_eq!(projection.working().position, 5);
}

#[test]
fn next_tick_does_not_spin_behind_a_poison_event_when_live() {
    // Goal: live, with a poison event waiting for a retry later than idle_resubscribe
    // (backoff 500 ms > 300 ms), next_tick after a tick is not now: on_tick does not
    // resubscribe while a poison event is pending, so a deadline at the idle resubscription
    // would wake the driver again and again (every millisecond, given its clamp) until the
    // retry.
    let mut projection = live_with(
        ProjectionConfig {
            poison_backoff: ms(500),
            ..config(Mutants::none())
        },
        &[],
    );
    projection.on_push(ms(10), vec![poison(0)]);
    tick(&mut projection, ms(10));
    assert_eq!(projection.next_tick(ms(10)), ms(310));
    projection.on_tick(ms(310));
    assert!(
        shown(&mut projection).is_empty(),
        "no resubscription behind poison"
    );
    assert!(
        projection.next_tick(ms(310)) > ms(310),
        "nothing is due before the retry at 510 ms"
    );
}

#[test]
fn adopt_takes_a_rebuild_only_at_the_live_position() {
    // Goal: a rebuilt model at another position than the live one is refused (a stale one
    // would make the view go back); one at the same position is taken with the next
    // generation and stored; the projection then folds on from there.
    let events = ledger();
    let mut projection = live(Mutants::none(), &events[..5]);
    let mut stale = projection.rebuilder();
    for event in &events[..3] {
        stale.push(event);
    }
    assert!(!projection.adopt(stale.finish()));
    assert_eq!(projection.working(), &fold(&events[..5], &Mutants::none()));
    assert!(shown(&mut projection).is_empty());
    let mut fresh = projection.rebuilder();
    for event in &events[..5] {
        fresh.push(event);
    }
    assert_eq!(fresh.position(), 5);
    assert!(projection.adopt(fresh.finish()));
    assert_eq!(projection.working().generation, 1);
    let stored = steps(&mut projection);
    assert!(
        matches!(stored.as_slice(), [Step::Store(view)] if view.generation == 1 && view.position == 5),
        "{stored:?}"
    );
    projection.on_stored(Ok(())).unwrap();
    assert_eq!(projection.served().generation, 1);
    projection.on_push(ms(5), vec![events[5].clone()]);
    assert_eq!(projection.working().position, 6);
}

#[cfg(madsim)]
#[test]
fn mutant_rebuild_adopts_stale_takes_the_view_back() {
    // Goal: under RebuildAdoptsStale a rebuild built to an older position replaces the live
    // model: the working and then the served model go back in position.
    let events = ledger();
    let mut projection = live(Mutants::only(Mutant::RebuildAdoptsStale), &events[..5]);
    let mut stale = projection.rebuilder();
    for event in &events[..3] {
        stale.push(event);
    }
    assert!(projection.adopt(stale.finish()));
    assert_eq!(projection.working().position, 3);
    run_steps(&mut projection);
    assert_eq!(projection.served().position, 3);
    assert_eq!(projection.served().generation, 1);
}

#[test]
fn a_first_push_beyond_the_position_is_a_gap_not_a_skip() {
    // Goal: right after subscribing, a first push that starts beyond the position (events lost
    // on the way) is buffered as a gap: the position stays, and the gap read brings the lost
    // events in.
    let events = ledger();
    let mut projection = live(Mutants::none(), &events[..2]);
    projection.on_push(ms(5), vec![events[4].clone()]);
    tick(&mut projection, ms(5));
    assert_eq!(projection.working().position, 2);
    tick(&mut projection, ms(35));
    assert_eq!(shown(&mut projection), ["read 2+4"]);
}

#[cfg(madsim)]
#[test]
fn mutant_handover_skips_gap_skips_the_lost_events() {
    // Goal: under HandoverSkipsGap the first push after subscribing is taken as where live
    // starts: positions 2 and 3 are skipped for good (the deposit and the withdrawal are never
    // folded) and no read is issued. Only the first push after a subscription does so.
    let events = ledger();
    let mutants = Mutants::only(Mutant::HandoverSkipsGap);
    let mut projection = live(mutants.clone(), &events[..2]);
    projection.on_push(ms(5), vec![events[4].clone()]);
    tick(&mut projection, ms(5));
    assert_eq!(projection.working().position, 5);
    assert_eq!(projection.working().totals.deposited, 0);
    assert_eq!(projection.working().totals.in_transit, 50);
    tick(&mut projection, ms(100));
    assert_eq!(shown(&mut projection), ["store 5"]);

    let mut second = live(mutants, &events[..2]);
    second.on_push(ms(5), vec![events[2].clone()]);
    second.on_push(ms(6), vec![events[4].clone()]);
    assert_eq!(second.working().position, 3);
}

mod execution {
    use patterns::cqrs::bank::{
        event_id, AccountState, BankCommand, BankError, BankEvent, BankEventBody,
    };
    use patterns::cqrs::execution::{Appended, Execution, Need, Step};
    #[cfg(madsim)]
    use patterns::cqrs::mutant::Mutant;
    use patterns::cqrs::mutant::Mutants;
    use patterns::event_sourcing::event::{ExpectedVersion, RecordedEvent};

    fn stream(events: &[(u64, u8, BankEventBody)]) -> AccountState {
        let recorded: Vec<RecordedEvent> = events
            .iter()
            .enumerate()
            .map(|(version, (command_id, index, body))| RecordedEvent {
                stream: "account-x".into(),
                version: version as u64,
                position: 10 + version as u64,
                data: BankEvent {
                    command_id: *command_id,
                    principal: None,
                    body: body.clone(),
                }
                .to_data(event_id(*command_id, *index)),
            })
            .collect();
        AccountState::load(&recorded)
    }

    fn opened(balance: u64) -> AccountState {
        stream(&[
            (1, 0, BankEventBody::Opened { owner: "o".into() }),
            (2, 0, BankEventBody::Deposited { amount: balance }),
        ])
    }

    #[test]
    fn a_retried_command_is_answered_from_the_stream() {
        // Goal: a command whose event is in the stream is done at that position, nothing
        // appended; under the mutant it is decided and appended again.
        let deposit = BankCommand::Deposit {
            account: "x".into(),
            amount: 5,
        };
        let (mut run, need) = Execution::start(2, deposit.clone(), Mutants::none());
        assert_eq!(need, Need::Load("x".into()));
        assert_eq!(run.on_loaded(opened(5)), Step::Done(11));
        #[cfg(madsim)]
        {
            let (mut broken, _) = Execution::start(
                2,
                deposit,
                Mutants::only(Mutant::RetriedCommandNotDeduplicated),
            );
            assert!(matches!(
                broken.on_loaded(opened(5)),
                Step::Need(Need::Append { .. })
            ));
        }
    }

    #[test]
    fn a_withdrawal_expects_the_version_it_decided_on() {
        // Goal: the append carries the loaded version; a conflict starts over; the mutant
        // drops the condition; too little money is refused.
        let withdraw = |amount| BankCommand::Withdraw {
            account: "x".into(),
            amount,
        };
        let (mut run, _) = Execution::start(9, withdraw(3), Mutants::none());
        let Step::Need(Need::Append {
            expected, index, ..
        }) = run.on_loaded(opened(5))
        else {
            panic!("an append");
        };
        assert_eq!((expected, index), (ExpectedVersion::Exactly(1), 0));
        assert_eq!(run.on_appended(Appended::Conflict), Step::StartOver);
        #[cfg(madsim)]
        {
            let (mut broken, _) = Execution::start(
                9,
                withdraw(3),
                Mutants::only(Mutant::WithdrawSkipsVersionCheck),
            );
            let Step::Need(Need::Append { expected, .. }) = broken.on_loaded(opened(5)) else {
                panic!("an append");
            };
            assert_eq!(expected, ExpectedVersion::Any);
        }
        let (mut poor, _) = Execution::start(9, withdraw(6), Mutants::none());
        assert_eq!(
            poor.on_loaded(opened(5)),
            Step::Refused(BankError::InsufficientFunds {
                balance: 5,
                amount: 6
            })
        );
    }

    #[test]
    fn a_transfer_debits_then_credits_and_resumes_after_the_debit() {
        // Goal: load source, load target, append the debit, load target, append the credit,
        // done at the credit; a retry that finds its debit goes straight to the credit.
        let transfer = BankCommand::Transfer {
            from: "x".into(),
            to: "y".into(),
            amount: 4,
        };
        let (mut run, _) = Execution::start(7, transfer.clone(), Mutants::none());
        assert_eq!(run.on_loaded(opened(5)), Step::Need(Need::Load("y".into())));
        let debit = run.on_loaded(opened(0));
        assert!(
            matches!(debit, Step::Need(Need::Append { index: 0, .. })),
            "{debit:?}"
        );
        assert_eq!(
            run.on_appended(Appended::At(20)),
            Step::Need(Need::Load("y".into()))
        );
        let credit = run.on_loaded(opened(0));
        let Step::Need(Need::Append {
            account,
            index,
            expected,
            ..
        }) = credit
        else {
            panic!("{credit:?}");
        };
        assert_eq!(
            (account.as_str(), index, expected),
            ("y", 1, ExpectedVersion::Any)
        );
        assert_eq!(run.on_appended(Appended::At(21)), Step::Done(21));
        // Resumed: the debit is already in the source.
        let debited = stream(&[
            (1, 0, BankEventBody::Opened { owner: "o".into() }),
            (2, 0, BankEventBody::Deposited { amount: 5 }),
            (
                7,
                0,
                BankEventBody::Debited {
                    amount: 4,
                    to: "y".into(),
                },
            ),
        ]);
        let (mut resumed, _) = Execution::start(7, transfer, Mutants::none());
        assert_eq!(
            resumed.on_loaded(debited),
            Step::Need(Need::Load("y".into()))
        );
        let credited = stream(&[
            (3, 0, BankEventBody::Opened { owner: "p".into() }),
            (
                7,
                1,
                BankEventBody::Credited {
                    amount: 4,
                    from: "x".into(),
                },
            ),
        ]);
        assert_eq!(resumed.on_loaded(credited), Step::Done(11));
    }
}
