//! Property tests of the store core: it answers like the reference model when no fault
//! strikes, and under crashes, torn writes and I/O failures it never loses an acknowledged
//! append, never serves a partial or phantom batch, never takes back what it served, and
//! keeps idempotency across restarts. Each store mutant is shown to fail one of them.
//!
//! Mutants exist in simulation builds only (`--cfg madsim`): the tests of a mutant, and the
//! mutant cases of the others, are compiled there only; the rest runs in every build.

use patterns::event_sourcing::event::{
    AppendError, AppendRequest, Appended, EventData, EventId, ExpectedVersion, RecordedEvent,
};
use patterns::event_sourcing::log::RecoveryError;
use patterns::event_sourcing::memdisk::{CrashPoint, MemStore};
use patterns::event_sourcing::model::{self, Model};
#[cfg(madsim)]
use patterns::event_sourcing::mutant::Mutant;
use patterns::event_sourcing::mutant::Mutants;
use patterns::event_sourcing::store::{Effect, IoError, OpenError, RequestId, StoreConfig};
use proptest::prelude::*;
#[cfg(madsim)]
use proptest::test_runner::TestRunner;
use proptest::test_runner::{Config, RngSeed};
use std::collections::BTreeMap;

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0xE5_50),
        failure_persistence: None,
        ..Config::default()
    }
}

const STREAMS: [&str; 3] = ["acct-1", "acct-2", "acct-3"];

/// How a generated append states its expected version.
#[derive(Clone, Debug)]
enum Expect {
    Fixed(ExpectedVersion),
    /// Exactly the version the client last read (a read-modify-write client).
    FromRead,
}

#[derive(Clone, Debug)]
enum Op {
    /// A new append of `events` fresh events.
    Append {
        stream: usize,
        expect: Expect,
        events: usize,
    },
    /// Sends an earlier request again, unchanged (a client retry).
    Retry { index: usize },
    /// Completes the outstanding I/O.
    Step,
    /// Makes the next I/O fail (the driver then restarts the store from its files).
    FailIo,
    /// Crashes: each file keeps some unsynced changes, the next one torn.
    Crash(CrashPoint),
    /// Flips a bit of the acknowledged part of the log, then crashes: recovery must refuse;
    /// the bit is then repaired (as from a replica) and the run goes on.
    BitRot { at: usize, bit: u8 },
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        Just(Expect::Fixed(ExpectedVersion::Any)),
        Just(Expect::Fixed(ExpectedVersion::NoStream)),
        Just(Expect::Fixed(ExpectedVersion::StreamExists)),
        (0..4u64).prop_map(|v| Expect::Fixed(ExpectedVersion::Exactly(v))),
        Just(Expect::FromRead),
        Just(Expect::FromRead),
    ]
}

fn op(faults: bool) -> BoxedStrategy<Op> {
    let append =
        (0..STREAMS.len(), expect(), 1..4usize).prop_map(|(stream, expect, events)| Op::Append {
            stream,
            expect,
            events,
        });
    let retry = any::<usize>().prop_map(|index| Op::Retry { index });
    let crash = (0..3usize, 0..120usize, 0..2usize, 0..30usize).prop_map(|(l, t, c, ct)| {
        Op::Crash(CrashPoint {
            log_ops_kept: l,
            log_torn_bytes: t,
            checkpoint_ops_kept: c,
            checkpoint_torn_bytes: ct,
        })
    });
    let rot = (any::<usize>(), 0..8u8).prop_map(|(at, bit)| Op::BitRot { at, bit });
    if faults {
        prop_oneof![
            4 => append,
            2 => retry,
            10 => Just(Op::Step),
            1 => Just(Op::FailIo),
            1 => crash,
            1 => rot,
        ]
        .boxed()
    } else {
        prop_oneof![4 => append, 2 => retry, 6 => Just(Op::Step)].boxed()
    }
}

fn ops(faults: bool) -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(faults), 1..80)
}

/// A test driver: the store, what was submitted and answered, what subscriber 1 received.
struct Run {
    mem: MemStore,
    submitted: BTreeMap<RequestId, AppendRequest>,
    answers: BTreeMap<RequestId, Result<Appended, AppendError>>,
    delivered: Vec<RecordedEvent>,
    next_event_id: u128,
}

impl Run {
    fn new(mutants: Mutants) -> Run {
        let config = StoreConfig {
            mutants,
            deliver_batch_max: 3,
            ..StoreConfig::default()
        };
        let mut mem = MemStore::open(config).unwrap();
        mem.subscribe(1, 0).unwrap();
        Run {
            mem,
            submitted: BTreeMap::new(),
            answers: BTreeMap::new(),
            delivered: Vec::new(),
            next_event_id: 1,
        }
    }

    fn fresh_request(&mut self, stream: usize, expect: &Expect, events: usize) -> AppendRequest {
        let stream = STREAMS[stream];
        let expected = match expect {
            Expect::Fixed(expected) => *expected,
            Expect::FromRead => {
                ExpectedVersion::exactly_current(self.mem.store().stream_version(stream))
            }
        };
        let events = (0..events)
            .map(|_| {
                let id = self.next_event_id;
                self.next_event_id += 1;
                EventData {
                    event_id: EventId(id),
                    event_type: "noted".to_owned(),
                    schema_version: 1,
                    payload: id.to_le_bytes()[..2].to_vec(),
                }
            })
            .collect();
        AppendRequest {
            stream: stream.to_owned(),
            expected,
            events,
        }
    }

    /// The request an op submits, if any.
    fn request_for(&mut self, op: &Op) -> Option<AppendRequest> {
        match op {
            Op::Append {
                stream,
                expect,
                events,
            } => Some(self.fresh_request(*stream, expect, *events)),
            Op::Retry { index } if !self.submitted.is_empty() => {
                let requests: Vec<&AppendRequest> = self.submitted.values().collect();
                Some(requests[index % requests.len()].clone())
            }
            _ => None,
        }
    }

    fn submit(&mut self, request: AppendRequest) -> RequestId {
        let id = self.mem.append(request.clone());
        self.submitted.insert(id, request);
        id
    }

    /// Collects answers and deliveries; restarts the store from its files after a halt.
    fn drain(&mut self) -> Result<(), String> {
        loop {
            let outputs = self.mem.take_outputs();
            if outputs.is_empty() {
                return Ok(());
            }
            for effect in outputs {
                self.take(effect)?;
            }
        }
    }

    fn take(&mut self, effect: Effect) -> Result<(), String> {
        match effect {
            Effect::Ack { request, result } => {
                if self.answers.insert(request, result).is_some() {
                    return Err(format!("request r{request} answered twice"));
                }
            }
            Effect::Deliver { events, .. } => {
                self.delivered.extend(events);
                self.mem.delivered(1);
            }
            Effect::Halted { .. } => self.restart()?,
            other => return Err(format!("unexpected output {other}")),
        }
        Ok(())
    }

    fn restart(&mut self) -> Result<(), String> {
        self.mem
            .recover()
            .map_err(|e| format!("recovery failed: {e}"))?;
        self.mem.settle();
        // The subscriber reconnects from what it has, like a catch-up subscription client.
        self.mem
            .subscribe(1, self.delivered.len() as u64)
            .map_err(|e| e.to_string())
    }

    fn read_all(&self) -> Vec<RecordedEvent> {
        self.mem.store().read_all(0, usize::MAX).unwrap()
    }
}

/// No fault: the store gives the model's answers (the model applies the appends in
/// submission order), its log equals the model's, and the subscriber got all of it.
fn check_against_model(ops: &[Op], mutants: &Mutants) -> Result<(), String> {
    let mut run = Run::new(mutants.clone());
    let mut model = Model::new();
    let mut expected = BTreeMap::new();
    let limits = run.mem.store().config().limits.clone();
    for op in ops {
        if let Some(request) = run.request_for(op) {
            let id = run.submit(request.clone());
            expected.insert(id, model.append(&request, &limits));
        }
        if let Op::Step = op {
            run.mem.step();
        }
        run.drain()?;
    }
    run.mem.settle();
    run.drain()?;
    if run.answers != expected {
        let differ = expected
            .iter()
            .find(|(id, want)| run.answers.get(id) != Some(want));
        return Err(format!(
            "answers differ from the model: first at {differ:?}, store said {:?}",
            differ.and_then(|(id, _)| run.answers.get(id))
        ));
    }
    model::diff(model.events(), &run.read_all())?;
    model::diff(model.events(), &run.delivered).map_err(|e| format!("subscriber: {e}"))
}

/// Checks the state after a recovery; `served` is what was readable before.
fn check_after_recovery(run: &mut Run, served: &[RecordedEvent]) -> Result<(), String> {
    let log = run.read_all();
    model::check_log(&log)?;
    if log.len() < served.len() || log[..served.len()] != *served {
        return Err("an event that was served is gone or changed after recovery".to_owned());
    }
    check_batches_whole(run, &log)?;
    for (id, result) in &run.answers {
        let Ok(appended) = result else { continue };
        let request = &run.submitted[id];
        let stored = log.get(appended.first_position as usize..=appended.last_position as usize);
        let stored: Vec<&EventData> = stored.unwrap_or(&[]).iter().map(|e| &e.data).collect();
        if stored != request.events.iter().collect::<Vec<_>>() {
            return Err(format!("acknowledged r{id} ({appended}) is not in the log"));
        }
    }
    check_retries_after_restart(run)
}

/// Every event read was submitted, with its data and stream, and every submitted batch is
/// either wholly in the log, consecutively, or absent.
fn check_batches_whole(run: &Run, log: &[RecordedEvent]) -> Result<(), String> {
    let mut by_id = BTreeMap::new();
    for event in log {
        by_id.insert(event.data.event_id, event);
    }
    let submitted: BTreeMap<EventId, (&String, &EventData)> = run
        .submitted
        .values()
        .flat_map(|r| r.events.iter().map(move |e| (e.event_id, (&r.stream, e))))
        .collect();
    for event in log {
        match submitted.get(&event.data.event_id) {
            Some((stream, data)) if **stream == event.stream && **data == event.data => {}
            _ => return Err(format!("phantom event {}", event.data.event_id)),
        }
    }
    for (id, request) in &run.submitted {
        let found: Vec<Option<&&RecordedEvent>> = request
            .events
            .iter()
            .map(|e| by_id.get(&e.event_id))
            .collect();
        let present = found.iter().filter(|f| f.is_some()).count();
        if present != 0 && present != found.len() {
            return Err(format!(
                "r{id}: {present} of {} events present",
                found.len()
            ));
        }
    }
    Ok(())
}

/// Every acknowledged append, sent again after the restart, gets its original answer.
fn check_retries_after_restart(run: &mut Run) -> Result<(), String> {
    let acked: Vec<(RequestId, Appended)> = run
        .answers
        .iter()
        .filter_map(|(id, result)| Some((*id, *result.as_ref().ok()?)))
        .collect();
    for (id, appended) in acked {
        let request = run.submitted[&id].clone();
        let retry = run.mem.append(request);
        run.mem.settle();
        match run.mem.answer(retry) {
            Some(Ok(again)) if again == appended => {}
            other => {
                return Err(format!(
                    "retry of r{id} after restart: {other:?}, was {appended}"
                ))
            }
        }
    }
    Ok(())
}

/// Crashes at `point`, restarts, and checks the recovered state.
fn crash_and_check(run: &mut Run, point: CrashPoint) -> Result<(), String> {
    let served = run.read_all();
    run.mem.crash(point);
    run.drain()?;
    run.restart()?;
    run.drain()?;
    check_after_recovery(run, &served)
}

/// Flips a bit of the acknowledged log and crashes: recovery must refuse with a corrupt
/// record at or before the flip. Then the bit is repaired and the store recovers.
fn rot_and_check(run: &mut Run, at: usize, bit: u8) -> Result<(), String> {
    let synced_len = run.mem.store().synced_len();
    if synced_len == 0 {
        return Ok(());
    }
    let offset = at as u64 % synced_len;
    let served = run.read_all();
    run.mem.log_mut().flip_bit(offset, bit);
    run.mem.crash(CrashPoint::default());
    run.drain()?;
    match run.mem.recover() {
        Err(OpenError::Recovery(RecoveryError::CorruptRecord { offset: found, .. }))
            if found <= offset => {}
        other => {
            return Err(format!(
                "bit rot at {offset} of {synced_len} synced bytes: recovery gave {other:?}"
            ))
        }
    }
    run.mem.log_mut().flip_bit(offset, bit);
    run.restart()?;
    run.drain()?;
    check_after_recovery(run, &served)
}

/// Faults: crashes with torn writes, failed I/O, restarts and bit rot, checked after every
/// recovery: acknowledged appends survive, batches are whole, nothing served is taken back,
/// retries of acknowledged appends get their original answer, corruption of acknowledged
/// data is refused; at the end the reconnected subscriber has everything.
fn check_under_faults(ops: &[Op], mutants: &Mutants) -> Result<(), String> {
    let mut run = Run::new(mutants.clone());
    for op in ops {
        if let Some(request) = run.request_for(op) {
            run.submit(request);
        }
        match op {
            Op::Step => {
                run.mem.step();
            }
            Op::FailIo => run.mem.fail_next_io(IoError::new("injected EIO")),
            Op::Crash(point) => crash_and_check(&mut run, *point)?,
            Op::BitRot { at, bit } => rot_and_check(&mut run, *at, *bit)?,
            Op::Append { .. } | Op::Retry { .. } => {}
        }
        run.drain()?;
    }
    crash_and_check(&mut run, CrashPoint::default())?;
    // Liveness: the reconnected subscriber catches up with everything.
    run.mem.settle();
    run.drain()?;
    model::diff(&run.read_all(), &run.delivered).map_err(|e| format!("subscriber: {e}"))
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn store_answers_like_the_model(ops in ops(false)) {
        let outcome = check_against_model(&ops, &Mutants::none());
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }

    #[test]
    fn store_keeps_every_acknowledged_append_under_faults(ops in ops(true)) {
        let outcome = check_under_faults(&ops, &Mutants::none());
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}

/// Runs `check` over the property's cases with `mutant` on; returns the first failure.
#[cfg(madsim)]
fn first_failure(
    mutant: Mutant,
    faults: bool,
    check: fn(&[Op], &Mutants) -> Result<(), String>,
) -> String {
    let mutants = Mutants::only(mutant);
    let mut runner = TestRunner::new(config(512));
    let result = runner.run(&ops(faults), |ops| {
        let outcome = check(&ops, &mutants);
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
        Ok(())
    });
    match result {
        Err(failure) => failure.to_string(),
        Ok(()) => panic!("mutant {mutant} survived the property"),
    }
}

#[cfg(madsim)]
#[test]
fn mutant_non_atomic_expected_version_is_caught_by_the_model() {
    let failure = first_failure(Mutant::NonAtomicExpectedVersion, false, check_against_model);
    assert!(
        failure.contains("answers differ from the model"),
        "{failure}"
    );
}

#[cfg(madsim)]
#[test]
fn mutant_ack_before_fsync_is_caught_under_faults() {
    let failure = first_failure(Mutant::AckBeforeFsync, true, check_under_faults);
    assert!(failure.contains("is not in the log"), "{failure}");
}

#[cfg(madsim)]
#[test]
fn mutant_keep_torn_record_is_caught_under_faults() {
    let failure = first_failure(Mutant::KeepTornRecord, true, check_under_faults);
    assert!(
        failure.contains("phantom") || failure.contains("recovery failed"),
        "{failure}"
    );
}

#[cfg(madsim)]
#[test]
fn mutant_drop_after_bad_is_caught_under_faults() {
    let failure = first_failure(Mutant::DropAfterBad, true, check_under_faults);
    assert!(failure.contains("bit rot at"), "{failure}");
}

#[cfg(madsim)]
#[test]
fn mutant_idempotency_lost_on_restart_is_caught_under_faults() {
    let failure = first_failure(Mutant::IdempotencyLostOnRestart, true, check_under_faults);
    assert!(failure.contains("after restart"), "{failure}");
}

/// A run with one durable two-event append of "acct-1".
fn run_with_one_batch() -> Run {
    let mut run = Run::new(Mutants::none());
    let request = run.fresh_request(0, &Expect::Fixed(ExpectedVersion::Any), 2);
    run.submit(request);
    run.mem.settle();
    run.drain().unwrap();
    run
}

#[test]
fn the_fault_checks_can_fail() {
    // Goal: each check of `check_after_recovery` rejects the state it exists to reject.
    let mut run = run_with_one_batch();
    let served = run.read_all();
    assert_eq!(check_after_recovery(&mut run, &served), Ok(()));

    let mut more_served = served.clone();
    more_served.push(served[0].clone());
    let gone = check_after_recovery(&mut run, &more_served).unwrap_err();
    assert!(gone.contains("is gone or changed"), "{gone}");

    let mut phantom = run_with_one_batch();
    phantom.submitted.get_mut(&1).unwrap().events[0]
        .payload
        .push(0);
    let error = check_batches_whole(&phantom, &phantom.read_all()).unwrap_err();
    assert!(error.contains("phantom"), "{error}");

    let mut partial = run_with_one_batch();
    let extra = partial
        .fresh_request(0, &Expect::Fixed(ExpectedVersion::Any), 1)
        .events;
    partial.submitted.get_mut(&1).unwrap().events.extend(extra);
    let error = check_batches_whole(&partial, &partial.read_all()).unwrap_err();
    assert!(error.contains("2 of 3 events present"), "{error}");

    let mut unacked = run_with_one_batch();
    let appended = *unacked.answers[&1].as_ref().unwrap();
    let moved = Appended {
        first_position: 5,
        last_position: 6,
        ..appended
    };
    unacked.answers.insert(1, Ok(moved));
    let error = check_after_recovery(&mut unacked, &[]).unwrap_err();
    assert!(error.contains("is not in the log"), "{error}");
}
