//! Scripted tests of the store core: each drives the sans-IO store through the in-memory
//! driver one I/O completion at a time and compares the trace of inputs and effects with a
//! snapshot.
//!
//! Mutants exist in simulation builds only (`--cfg madsim`): the tests of a mutant, and the
//! mutant cases of the others, are compiled there only; the rest runs in every build.

use patterns::event_sourcing::event::{
    AppendError, AppendRequest, EventData, EventId, ExpectedVersion, InvalidAppend,
};
use patterns::event_sourcing::log::{RecoveryError, CHECKPOINT_SLOT_SPACING};
use patterns::event_sourcing::memdisk::{CrashPoint, MemStore};
#[cfg(madsim)]
use patterns::event_sourcing::mutant::Mutant;
use patterns::event_sourcing::mutant::Mutants;
use patterns::event_sourcing::store::{
    Effect, IoError, OpenError, ReadError, StoreConfig, SubscribeError,
};

fn event(id: u128) -> EventData {
    EventData {
        event_id: EventId(id),
        event_type: "noted".to_owned(),
        schema_version: 1,
        payload: vec![id as u8; 3],
    }
}

fn request(stream: &str, expected: ExpectedVersion, ids: &[u128]) -> AppendRequest {
    AppendRequest {
        stream: stream.to_owned(),
        expected,
        events: ids.iter().map(|&id| event(id)).collect(),
    }
}

fn open() -> MemStore {
    MemStore::open(StoreConfig::default()).unwrap()
}

fn open_with(mutants: Mutants) -> MemStore {
    let config = StoreConfig {
        mutants,
        ..StoreConfig::default()
    };
    MemStore::open(config).unwrap()
}

fn trace(mem: &mut MemStore) -> String {
    mem.take_trace().join("\n")
}

fn ids_of(mem: &MemStore, stream: &str) -> Vec<u128> {
    let events = mem.store().read_stream(stream, 0, 100).unwrap();
    events.iter().map(|e| e.data.event_id.0).collect()
}

#[test]
fn append_is_acknowledged_after_log_and_checkpoint_syncs() {
    // Goal: the whole durability protocol of one append, in order.
    let mut mem = open();
    mem.append(request("s", ExpectedVersion::NoStream, &[1, 2]));
    assert!(
        mem.store().read_all(0, 10).unwrap().is_empty(),
        "nothing readable before sync"
    );
    mem.settle();
    insta::assert_snapshot!(trace(&mut mem));
    assert_eq!(ids_of(&mem, "s"), [1, 2]);
    assert_eq!(mem.store().stream_version("s"), Some(1));
}

#[test]
fn expected_version_conflicts_wait_for_the_state_they_saw() {
    // Goal: each expected-version mode; a conflict decided against a pending append is only
    // answered once that append is durable.
    let mut mem = open();
    mem.append(request("s", ExpectedVersion::NoStream, &[1]));
    mem.settle();
    mem.note("-- committed s@v0");
    mem.append(request("s", ExpectedVersion::NoStream, &[2]));
    mem.append(request("t", ExpectedVersion::StreamExists, &[3]));
    mem.append(request("s", ExpectedVersion::Exactly(0), &[4]));
    mem.note("-- r4 pending; r5 expects the version r4 replaces");
    mem.append(request("s", ExpectedVersion::Exactly(0), &[5]));
    mem.append(request("s", ExpectedVersion::StreamExists, &[6]));
    mem.append(request("s", ExpectedVersion::Any, &[7]));
    mem.settle();
    insta::assert_snapshot!(trace(&mut mem));
    assert_eq!(ids_of(&mem, "s"), [1, 4, 6, 7]);
}

#[test]
fn idempotent_retries_return_the_original_result() {
    // Goal: a retry of a durable batch, of a pending batch, and the reuses that must conflict.
    let mut mem = open();
    mem.append(request("s", ExpectedVersion::NoStream, &[1, 2]));
    mem.settle();
    mem.note("-- retry of a durable batch: answered at once, nothing written");
    mem.append(request("s", ExpectedVersion::NoStream, &[1, 2]));
    mem.append(request("s", ExpectedVersion::Exactly(1), &[3]));
    mem.note("-- retry of a pending batch: answered with the original");
    mem.append(request("s", ExpectedVersion::Exactly(1), &[3]));
    mem.settle();
    mem.note("-- reuses that are not retries");
    mem.append(request("s", ExpectedVersion::Any, &[2]));
    mem.append(request("s", ExpectedVersion::Any, &[1, 2, 9]));
    mem.append(request("other", ExpectedVersion::Any, &[1, 2]));
    mem.append(request("s", ExpectedVersion::Exactly(5), &[1, 2]));
    let mut changed = request("s", ExpectedVersion::NoStream, &[1, 2]);
    changed.events[1].payload = b"different".to_vec();
    mem.append(changed);
    mem.settle();
    insta::assert_snapshot!(trace(&mut mem));
    assert_eq!(ids_of(&mem, "s"), [1, 2, 3]);
    assert!(ids_of(&mem, "other").is_empty());
}

#[test]
fn group_commit_shares_one_sync_among_waiting_appends() {
    // Goal: appends that arrive while a commit is in flight go out together in the next one.
    let mut mem = open();
    mem.append(request("a", ExpectedVersion::Any, &[1]));
    mem.step();
    for id in 2..=4 {
        mem.append(request("b", ExpectedVersion::Any, &[id]));
    }
    mem.settle();
    insta::assert_snapshot!(trace(&mut mem));
    let stats = mem.store().stats();
    assert_eq!(stats.commits, 2);
    assert_eq!(stats.appends, 4);
    assert_eq!(stats.appends_per_commit_max(), 3);
    assert_eq!(stats.appends_per_commit_mean(), 2.0);
}

#[test]
fn group_commit_respects_its_byte_limit() {
    let config = StoreConfig {
        group_bytes_max: 100,
        ..StoreConfig::default()
    };
    let mut mem = MemStore::open(config).unwrap();
    mem.append(request("a", ExpectedVersion::Any, &[1]));
    for id in 2..=6 {
        mem.append(request("a", ExpectedVersion::Any, &[id]));
    }
    mem.settle();
    // Each record takes 70 bytes, so a group of at most 100 bytes holds one.
    assert_eq!(mem.store().stats().commits, 6);
    assert_eq!(ids_of(&mem, "a"), [1, 2, 3, 4, 5, 6]);
}

#[test]
fn failed_sync_halts_the_store_without_acknowledging() {
    // Goal: fsyncgate. After a failed sync the store answers "outcome unknown", refuses
    // everything, and only a recovery from the files brings it back; the retry then tells.
    let mut mem = open();
    mem.append(request("s", ExpectedVersion::NoStream, &[1]));
    mem.step();
    mem.append(request("s", ExpectedVersion::Exactly(0), &[2]));
    mem.fail_next_io(IoError::new("EIO on fsync"));
    mem.step();
    mem.append(request("s", ExpectedVersion::Any, &[3]));
    assert_eq!(mem.store().read_all(0, 10), Err(ReadError::Unavailable));
    assert_eq!(
        mem.store_mut().subscribe(1, 0),
        Err(SubscribeError::Unavailable)
    );
    mem.note("-- restart: the written record is still in the file and becomes durable");
    mem.recover().unwrap();
    mem.settle();
    mem.append(request("s", ExpectedVersion::NoStream, &[1]));
    mem.append(request("s", ExpectedVersion::Exactly(0), &[2]));
    mem.settle();
    insta::assert_snapshot!(trace(&mut mem));
    assert_eq!(ids_of(&mem, "s"), [1, 2]);
}

#[test]
fn failed_write_halts_and_a_crash_loses_the_unsynced_append() {
    let mut mem = open();
    mem.append(request("s", ExpectedVersion::NoStream, &[1]));
    mem.fail_next_io(IoError::new("EIO on write"));
    mem.step();
    let outputs = mem.take_outputs();
    assert!(outputs.contains(&Effect::Ack {
        request: 1,
        result: Err(AppendError::OutcomeUnknown)
    }));
    mem.crash_and_recover().unwrap();
    assert!(ids_of(&mem, "s").is_empty());
    let retried = mem.append_and_settle(request("s", ExpectedVersion::NoStream, &[1]));
    assert_eq!(retried.unwrap().first_version, 0);
}

#[test]
fn recovery_truncates_a_torn_tail_and_keeps_acknowledged_appends() {
    // Goal: a crash tears the write of an unacknowledged append; recovery cuts it off, syncs,
    // moves the checkpoint, and serves exactly the acknowledged events.
    let mut mem = open();
    mem.append(request("s", ExpectedVersion::NoStream, &[1]));
    mem.settle();
    mem.append(request("s", ExpectedVersion::Exactly(0), &[2, 3]));
    mem.step();
    mem.crash(CrashPoint {
        log_torn_bytes: 30,
        ..CrashPoint::default()
    });
    mem.recover().unwrap();
    mem.settle();
    insta::assert_snapshot!(trace(&mut mem));
    assert_eq!(ids_of(&mem, "s"), [1]);
    let report = mem.store().recovery_report();
    assert_eq!(report.torn_tail.as_ref().map(|tail| tail.len), Some(30));
    assert_eq!(mem.store().synced_len(), report.valid_len);
}

#[test]
fn recovery_keeps_a_complete_unsynced_record_and_makes_it_durable() {
    // Goal: an append whose write survived the crash (unacknowledged, "outcome unknown") is
    // kept whole, made durable before it is readable, and stays after the next crash.
    let mut mem = open();
    mem.append(request("s", ExpectedVersion::NoStream, &[1, 2]));
    mem.step();
    mem.crash(CrashPoint {
        log_ops_kept: 1,
        ..CrashPoint::default()
    });
    mem.recover().unwrap();
    assert_eq!(
        mem.store().read_stream("s", 0, 10),
        Err(ReadError::Recovering),
        "not readable before its recovery commit"
    );
    let retry = mem.append(request("s", ExpectedVersion::NoStream, &[1, 2]));
    mem.settle();
    assert_eq!(mem.answer(retry).unwrap().unwrap().last_version, 1);
    mem.crash_and_recover().unwrap();
    assert_eq!(ids_of(&mem, "s"), [1, 2]);
}

#[test]
fn reads_are_refused_until_the_recovery_commit_completes() {
    // Goal: after a restart, acknowledged events are not readable until the recovery commit
    // confirms them, and a read meanwhile is refused rather than answered with a shorter
    // (stale) log. Found by the `event-sourcing` simulation: a read right after a restart
    // returned no events although 74 were acknowledged.
    let mut mem = open();
    mem.append_and_settle(request("s", ExpectedVersion::NoStream, &[1]))
        .unwrap();
    mem.crash(CrashPoint::default());
    mem.recover().unwrap();
    assert!(mem.store().is_recovering());
    assert_eq!(mem.store().read_all(0, 10), Err(ReadError::Recovering));
    assert_eq!(
        mem.store().read_stream("s", 0, 10),
        Err(ReadError::Recovering)
    );
    mem.settle();
    assert!(!mem.store().is_recovering());
    assert_eq!(ids_of(&mem, "s"), [1]);
}

#[test]
fn recovery_refuses_a_corrupt_synced_record() {
    // Goal: bit rot in acknowledged data stops the store with a clear error; nothing served.
    let mut mem = open();
    let mut ends = Vec::new();
    for id in 1..=3 {
        mem.append_and_settle(request("s", ExpectedVersion::Any, &[id]))
            .unwrap();
        ends.push(mem.log().contents().len() as u64);
    }
    mem.log_mut().flip_bit(ends[0] + 7, 3);
    mem.crash(CrashPoint::default());
    let error = mem.recover().unwrap_err();
    let expected = ends[0];
    assert!(
        matches!(error, OpenError::Recovery(RecoveryError::CorruptRecord { offset, .. }) if offset == expected),
        "{error:?}"
    );
    insta::assert_snapshot!(error.to_string(), @"recovery failed: corrupt record at offset 70 inside the synced part (210 bytes): body length 134217786 out of range");
}

#[test]
fn recovery_refuses_when_the_newest_checkpoint_and_its_last_record_both_rot() {
    // Goal: a double fault never loses an acknowledged append silently. The newest checkpoint
    // slot rots, so the older slot's synced length leaves the last acknowledged record looking
    // like an unsynced tail; that record rots too. Read as a torn tail it would be cut off;
    // since a damaged slot means every record was synced, recovery refuses instead.
    let mut mem = open();
    for id in 1..=3 {
        mem.append_and_settle(request("s", ExpectedVersion::Any, &[id]))
            .unwrap();
    }
    let last_record = mem.log().contents().len() as u64 - 10;
    mem.log_mut().flip_bit(last_record, 1);
    // Three commits and the recovery-free open: checkpoint 3 is the newest, in slot 1.
    let newest_slot = CHECKPOINT_SLOT_SPACING + 5;
    mem.checkpoint_mut().flip_bit(newest_slot, 2);
    mem.crash(CrashPoint::default());
    let error = mem.recover().unwrap_err();
    assert!(
        matches!(
            error,
            OpenError::Recovery(RecoveryError::CorruptRecord { .. })
        ),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("inside the synced part"),
        "{error}"
    );
}

#[test]
fn a_damaged_checkpoint_slot_alone_costs_nothing() {
    // Goal: with one slot rotted and the log intact, every acknowledged append is back, and
    // the recovery commit writes the next checkpoint over the damaged slot.
    let mut mem = open();
    for id in 1..=3 {
        mem.append_and_settle(request("s", ExpectedVersion::Any, &[id]))
            .unwrap();
    }
    mem.checkpoint_mut()
        .flip_bit(CHECKPOINT_SLOT_SPACING + 5, 2);
    mem.crash(CrashPoint::default());
    mem.recover().unwrap();
    assert_eq!(
        mem.store().recovery_report().damaged_checkpoint_slot,
        Some(1)
    );
    mem.settle();
    assert_eq!(ids_of(&mem, "s"), [1, 2, 3]);
    mem.crash_and_recover().unwrap();
    assert_eq!(mem.store().recovery_report().damaged_checkpoint_slot, None);
    mem.settle();
    assert_eq!(ids_of(&mem, "s"), [1, 2, 3]);
}

#[test]
fn subscription_catches_up_then_follows_live() {
    // Goal: catch-up in bounded batches, one in flight at a time, then live delivery.
    let config = StoreConfig {
        deliver_batch_max: 2,
        ..StoreConfig::default()
    };
    let mut mem = MemStore::open(config).unwrap();
    mem.append_and_settle(request("a", ExpectedVersion::Any, &[1, 2]))
        .unwrap();
    mem.append_and_settle(request("b", ExpectedVersion::Any, &[3]))
        .unwrap();
    mem.append_and_settle(request("a", ExpectedVersion::Any, &[4, 5]))
        .unwrap();
    mem.take_trace();
    mem.subscribe(7, 1).unwrap();
    let mut delivered = Vec::new();
    while let Some(Effect::Deliver { events, .. }) = mem.take_outputs().pop() {
        delivered.extend(events.iter().map(|e| e.position));
        mem.delivered(7);
    }
    assert_eq!(delivered, [1, 2, 3, 4]);
    assert!(mem.store().subscription(7).unwrap().live);
    mem.append(request("b", ExpectedVersion::Any, &[6]));
    mem.settle();
    insta::assert_snapshot!(trace(&mut mem));
    let live = mem.take_outputs();
    assert!(
        matches!(&live[..], [Effect::Ack { .. }, Effect::Deliver { subscriber: 7, events }] if events[0].position == 5)
    );
    assert!(mem.store_mut().unsubscribe(7));
    mem.delivered(7);
    assert!(
        mem.take_outputs().is_empty(),
        "nothing for a gone subscriber"
    );
}

#[test]
fn subscribers_are_bounded() {
    let config = StoreConfig {
        subscribers_max: 2,
        ..StoreConfig::default()
    };
    let mut mem = MemStore::open(config).unwrap();
    mem.store_mut().subscribe(1, 0).unwrap();
    assert_eq!(
        mem.store_mut().subscribe(1, 0),
        Err(SubscribeError::AlreadySubscribed(1))
    );
    mem.store_mut().subscribe(2, 0).unwrap();
    assert_eq!(
        mem.store_mut().subscribe(3, 0),
        Err(SubscribeError::TooManySubscribers(2))
    );
}

#[test]
fn malformed_busy_and_full_appends_are_refused_at_once() {
    let config = StoreConfig {
        pending_appends_max: 2,
        events_max: 4,
        ..StoreConfig::default()
    };
    let mut mem = MemStore::open(config).unwrap();
    let empty = mem.append(request("s", ExpectedVersion::Any, &[]));
    let twice = mem.append(request("s", ExpectedVersion::Any, &[1, 1]));
    let nameless = mem.append(request("", ExpectedVersion::Any, &[1]));
    mem.append(request("s", ExpectedVersion::Any, &[1]));
    mem.append(request("s", ExpectedVersion::Any, &[2]));
    let busy = mem.append(request("s", ExpectedVersion::Any, &[3]));
    assert_eq!(
        mem.answer(empty),
        Some(Err(AppendError::Invalid(InvalidAppend::EmptyBatch)))
    );
    let duplicate = InvalidAppend::DuplicateEventId {
        event_id: EventId(1),
    };
    assert_eq!(
        mem.answer(twice),
        Some(Err(AppendError::Invalid(duplicate)))
    );
    assert!(matches!(
        mem.answer(nameless),
        Some(Err(AppendError::Invalid(InvalidAppend::BadStreamName {
            len: 0,
            ..
        })))
    ));
    assert_eq!(mem.answer(busy), Some(Err(AppendError::Busy)));
    mem.settle();
    let full = mem.append_and_settle(request("s", ExpectedVersion::Any, &[4, 5, 6]));
    assert_eq!(full, Err(AppendError::StoreFull));
}

#[test]
fn mutant_ack_before_fsync_acknowledges_what_a_crash_loses() {
    // Goal: the scripted durability check catches the mutant; the correct store passes it.
    let cases = [
        (Mutants::none(), true),
        #[cfg(madsim)]
        (Mutants::only(Mutant::AckBeforeFsync), false),
    ];
    for (mutants, survives) in cases {
        let mut mem = open_with(mutants);
        let first = mem.append(request("s", ExpectedVersion::NoStream, &[1]));
        mem.step();
        let acked = mem.answer(first).is_some();
        mem.crash_and_recover().unwrap();
        let durable = ids_of(&mem, "s") == [1];
        assert_eq!(
            !acked || durable,
            survives,
            "acked {acked}, durable {durable}"
        );
    }
}

#[test]
fn mutant_non_atomic_expected_version_lets_two_writers_win() {
    // Goal: two appends expecting the same version while the first is pending: exactly one
    // may succeed. The mutant checks the second against the committed view.
    let cases = [
        (Mutants::none(), 1),
        #[cfg(madsim)]
        (Mutants::only(Mutant::NonAtomicExpectedVersion), 2),
    ];
    for (mutants, winners_expected) in cases {
        let mut mem = open_with(mutants);
        let a = mem.append(request("s", ExpectedVersion::NoStream, &[1]));
        let b = mem.append(request("s", ExpectedVersion::NoStream, &[2]));
        mem.settle();
        let winners = [a, b]
            .into_iter()
            .filter(|&r| mem.answer(r).unwrap().is_ok())
            .count();
        assert_eq!(winners, winners_expected);
    }
}

#[test]
fn mutant_idempotency_lost_on_restart_duplicates_a_retry() {
    // Goal: a retry after a restart returns the original result and adds nothing, unless the
    // idempotency map is not rebuilt.
    let cases = [
        (Mutants::none(), false),
        #[cfg(madsim)]
        (Mutants::only(Mutant::IdempotencyLostOnRestart), true),
    ];
    for (mutants, duplicated) in cases {
        let mut mem = open_with(mutants);
        let original = mem.append_and_settle(request("s", ExpectedVersion::Any, &[1]));
        mem.crash_and_recover().unwrap();
        let retry = mem.append_and_settle(request("s", ExpectedVersion::Any, &[1]));
        assert_eq!(retry != original, duplicated);
        assert_eq!(ids_of(&mem, "s").len() == 2, duplicated);
    }
}
