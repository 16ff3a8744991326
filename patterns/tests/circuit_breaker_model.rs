//! Model-based test: random configurations and random sequences of inputs (acquire, complete
//! with an outcome, release, time passing, wall-clock jumps, stale readings, timeouts, manual
//! transitions) run through the breaker and the reference oracle in lockstep. After every
//! input the two must agree on the decision, the state, the epoch, the metrics, the next
//! deadline and the transitions; every transition must be legal, half-open must hold at most
//! its permitted probes, and every published admission must get exactly one completion event.
//!
//! Then, for each mutant, the same test must fail: a comparison that cannot catch the bugs it
//! is meant for would be worthless. (Mutants exist in simulation builds only, so those tests
//! are compiled there only; the rest runs in every build.)

mod circuit_breaker_support;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::Duration;

#[cfg(madsim)]
use circuit_breaker_support::run_script;
use circuit_breaker_support::{Lockstep, Step};
use patterns::circuit_breaker::oracle::{is_legal_transition, Oracle, OracleError};
#[cfg(madsim)]
use patterns::circuit_breaker::Mutant;
use patterns::circuit_breaker::{
    Backoff, Completion, Config, Mutants, OpenWait, Outcome, PermitId, State, TransitionReason,
    Window,
};
use proptest::prelude::*;
use proptest::test_runner::{
    Config as RunnerConfig, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner,
};

/// One random input; permits are picked among those held by index, modulo their number.
#[derive(Clone, Debug)]
enum Op {
    Acquire,
    Complete(usize, Outcome),
    Release(usize),
    Wait(Duration),
    WallJump(Duration, bool),
    StaleAcquire(Duration),
    Timeout,
    TimeoutAtDeadline,
    Trip,
    Reset,
    To(State),
}

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn window() -> impl Strategy<Value = Window> {
    prop_oneof![
        (1u32..=8).prop_map(|size| Window::Count { size }),
        (1u32..=5).prop_map(|seconds| Window::Time { seconds }),
    ]
}

fn percent() -> impl Strategy<Value = u8> {
    prop_oneof![Just(1u8), Just(50), Just(100), 1u8..=100]
}

fn open_wait() -> impl Strategy<Value = OpenWait> {
    let jitter = prop_oneof![Just(0.0), 0.0f64..0.9];
    prop_oneof![
        (100u64..=3000).prop_map(|wait| OpenWait::Fixed(ms(wait))),
        (100u64..=1000, 1.0f64..3.0, 1u64..=8, jitter).prop_map(
            |(initial, multiplier, cap, jitter)| {
                OpenWait::Backoff(Backoff {
                    initial: ms(initial),
                    multiplier,
                    max: ms(initial * cap),
                    jitter,
                })
            }
        ),
    ]
}

/// Small windows and short waits, so that runs reach every state (the research notes: with
/// resilience4j's defaults a breaker cannot open before 100 calls).
fn config(mutants: Mutants) -> impl Strategy<Value = Config> {
    let rates = (percent(), percent(), 100u64..=2000);
    let half_open = (1u32..=4, proptest::option::of(200u64..=4000), any::<bool>());
    (
        window(),
        1u32..=8,
        rates,
        open_wait(),
        any::<u64>(),
        half_open,
    )
        .prop_map(
            move |(
                window,
                calls_min,
                (failure, slow, slow_ms),
                open_wait,
                seed,
                (probes, wait_max, auto),
            )| Config {
                window,
                calls_min,
                failure_rate_threshold_percent: failure,
                slow_call_rate_threshold_percent: slow,
                slow_call_duration_threshold: ms(slow_ms),
                open_wait,
                jitter_seed: seed,
                half_open_probes_max: probes,
                half_open_wait_max: wait_max.map(ms),
                auto_half_open: auto,
                event_queue_capacity: 1024,
                mutants: mutants.clone(),
            },
        )
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![5 => Just(Outcome::Success), 4 => Just(Outcome::Failure), 1 => Just(Outcome::Ignored)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => Just(Op::Acquire),
        30 => (0usize..16, outcome()).prop_map(|(pick, outcome)| Op::Complete(pick, outcome)),
        5 => (0usize..16).prop_map(Op::Release),
        15 => (0u64..=2500).prop_map(|wait| Op::Wait(ms(wait))),
        2 => (1u64..=120, any::<bool>()).prop_map(|(s, forward)| Op::WallJump(Duration::from_secs(s), forward)),
        2 => (1u64..=2000).prop_map(|back| Op::StaleAcquire(ms(back))),
        3 => Just(Op::Timeout),
        4 => Just(Op::TimeoutAtDeadline),
        1 => Just(Op::Trip),
        1 => Just(Op::Reset),
        2 => proptest::sample::select(State::ALL.to_vec()).prop_map(Op::To),
    ]
}

/// Runs `ops` in lockstep and returns what the run reached; on a disagreement, the reason and
/// the end of the trace.
fn run(config: Config, ops: &[Op]) -> Result<BTreeSet<String>, String> {
    let mut lockstep = Lockstep::new(config);
    for op in ops {
        let held = lockstep.held();
        let pick = |index: usize| held.get(index % held.len().max(1)).copied();
        let step = match *op {
            Op::Acquire => Step::Acquire,
            Op::Complete(index, outcome) => match pick(index) {
                Some(id) => Step::Complete(id, outcome),
                None => continue,
            },
            Op::Release(index) => match pick(index) {
                Some(id) => Step::Release(id),
                None => continue,
            },
            Op::Wait(wait) => Step::Wait(wait),
            Op::WallJump(jump, forward) => Step::WallJump(jump, forward),
            Op::StaleAcquire(back) => Step::StaleReading(back),
            Op::Timeout => Step::Timeout,
            Op::TimeoutAtDeadline => Step::TimeoutAtDeadline,
            Op::Trip => Step::Trip,
            Op::Reset => Step::Reset,
            Op::To(state) => Step::To(state),
        };
        lockstep
            .step(&step)
            .map_err(|reason| explain(&lockstep, &reason))?;
    }
    lockstep
        .finish()
        .map_err(|reason| explain(&lockstep, &reason))?;
    Ok(lockstep.coverage)
}

fn explain(lockstep: &Lockstep, reason: &str) -> String {
    let lines: Vec<&str> = lockstep.trace.lines().collect();
    let tail = lines[lines.len().saturating_sub(30)..].join("\n");
    format!("{reason}\n--- end of the trace ---\n{tail}")
}

/// A failed model-based run, with the shrunk configuration and inputs.
type ModelFailure = TestError<(Config, Vec<Op>)>;

/// Runs the model-based test with a fixed generator, so every run checks the same cases;
/// returns what the runs reached together.
fn run_model(mutants: Mutants, cases: u32) -> Result<BTreeSet<String>, Box<ModelFailure>> {
    let runner_config = RunnerConfig {
        cases,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..RunnerConfig::default()
    };
    let rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut runner = TestRunner::new_with_rng(runner_config, rng);
    let strategy = (config(mutants), proptest::collection::vec(op(), 1..120));
    let reached = RefCell::new(BTreeSet::new());
    runner
        .run(&strategy, |(config, ops)| {
            let coverage = run(config, &ops).map_err(TestCaseError::fail)?;
            reached.borrow_mut().extend(coverage);
            Ok(())
        })
        .map_err(Box::new)?;
    Ok(reached.into_inner())
}

/// What the random runs must reach at least once (the "sometimes" side of the test): every
/// state, every kind of transition, every kind of event.
const MUST_REACH: &[&str] = &[
    "transition closed -> open (rates exceeded)",
    "transition open -> half_open (open wait elapsed)",
    "transition half_open -> closed (probes passed)",
    "transition half_open -> open (rates exceeded)",
    "transition half_open -> open (half-open wait max elapsed)",
    "transition closed -> disabled (manual)",
    "transition closed -> forced_open (manual)",
    "transition closed -> metrics_only (manual)",
    "transition closed -> open (manual)",
    "transition open -> closed (reset)",
    "transition closed -> closed (reset)",
    "admitted Normal",
    "admitted Probe",
    "rejected Open",
    "rejected HalfOpenFull",
    "Success",
    "Failure",
    "slow (failed: false)",
    "slow (failed: true)",
    "Ignored",
    "StaleOutcome",
    "Released",
    "FailureRateExceeded",
    "SlowCallRateExceeded",
];

#[test]
fn breaker_agrees_with_oracle_on_random_inputs() {
    // Goal: no disagreement, illegal transition, probe overrun or lost permit in 3000 random
    // runs of up to 120 inputs each (about 180 000 inputs, a fraction of a second), and every
    // state, transition and event reached at least once.
    let reached = run_model(Mutants::none(), 3000).unwrap_or_else(|error| panic!("{error}"));
    let missed: Vec<_> = MUST_REACH
        .iter()
        .filter(|label| !reached.contains(**label))
        .collect();
    assert!(missed.is_empty(), "never reached: {missed:?}");
}

/// Asserts the model-based test catches `mutant`, and returns the shrunk failure's reason.
#[cfg(madsim)]
fn assert_model_catches(mutant: Mutant) -> String {
    let error = match run_model(Mutants::only(mutant), 1000) {
        Ok(_) => panic!("mutant {mutant} survived 1000 random runs"),
        Err(error) => *error,
    };
    match error {
        TestError::Fail(reason, (_config, ops)) => {
            let reason = reason.to_string();
            println!("{mutant} caught with {} inputs: {reason}", ops.len());
            reason
        }
        error => panic!("mutant {mutant}: unexpected {error}"),
    }
}

#[cfg(madsim)]
#[test]
fn model_catches_half_open_unbounded() {
    let reason = assert_model_catches(Mutant::HalfOpenUnbounded);
    assert!(
        reason.contains("breaker Ok"),
        "caught by an extra admission: {reason}"
    );
}

#[cfg(madsim)]
#[test]
fn model_catches_stale_epoch_closes() {
    let reason = assert_model_catches(Mutant::StaleEpochCloses);
    assert!(
        reason.contains("ProbesPassed"),
        "caught by the stale close: {reason}"
    );
}

#[cfg(madsim)]
#[test]
fn model_catches_bucket_not_reset() {
    let reason = assert_model_catches(Mutant::BucketNotReset);
    assert!(
        reason.contains("metrics"),
        "caught by the window counts: {reason}"
    );
}

#[cfg(madsim)]
#[test]
fn model_catches_open_wait_wall_clock() {
    assert_model_catches(Mutant::OpenWaitWallClock);
}

#[cfg(madsim)]
#[test]
fn model_catches_half_open_stuck() {
    assert_model_catches(Mutant::HalfOpenStuck);
}

#[cfg(madsim)]
#[test]
fn model_catches_ignored_probe_keeps_slot() {
    let reason = assert_model_catches(Mutant::IgnoredProbeKeepsSlot);
    assert!(
        reason.contains("probe_slots_used") || reason.contains("HalfOpenFull"),
        "caught by the slot it kept: {reason}"
    );
}

#[cfg(madsim)]
#[test]
fn model_catches_stale_release_frees_slot() {
    let reason = assert_model_catches(Mutant::StaleReleaseFreesSlot);
    assert!(reason.contains("probe_slots_used"), "{reason}");
}

#[cfg(madsim)]
#[test]
fn model_catches_ignored_probe_fails() {
    let reason = assert_model_catches(Mutant::IgnoredProbeFails);
    assert!(
        reason.contains("Ignored"),
        "caught by the ignored outcome it recorded: {reason}"
    );
}

/// Runs `script` with and without `mutant`: it must pass without and diverge with it.
#[cfg(madsim)]
fn targeted(mutant: Mutant, config: Config, script: &str) -> String {
    run_script(config.clone(), script).expect("the unmutated breaker agrees with the oracle");
    let mut mutated = config;
    mutated.mutants.insert(mutant);
    match run_script(mutated, script) {
        Ok(trace) => panic!("mutant {mutant} not caught:\n{trace}"),
        Err(trace) => trace,
    }
}

#[cfg(madsim)]
fn one_probe() -> Config {
    Config::builder()
        .window(Window::Count { size: 2 })
        .calls_min(1)
        .half_open_probes_max(1)
        .open_wait_fixed(Duration::from_secs(5))
        .build()
        .expect("valid")
}

#[cfg(madsim)]
#[test]
fn script_catches_half_open_unbounded() {
    // Goal: a second probe is admitted while the only slot is taken (resilience4j#1432).
    let trace = targeted(
        Mutant::HalfOpenUnbounded,
        one_probe(),
        "trip\nwait 5s\nacquire 2",
    );
    insta::assert_snapshot!(trace);
}

#[cfg(madsim)]
#[test]
fn script_catches_stale_epoch_closes() {
    // Goal: a success from a call admitted while closed closes the half-open breaker (Polly#217).
    let script = "acquire 2\nfail p0\nwait 5s\nacquire\nok p1";
    let trace = targeted(Mutant::StaleEpochCloses, one_probe(), script);
    insta::assert_snapshot!(trace);
}

#[cfg(madsim)]
#[test]
fn script_catches_bucket_not_reset() {
    // Goal: the evicted second-0 bucket keeps its failure, which is subtracted again when the
    // bucket is evicted the next time, so the window under-counts failures (resilience4j#1262).
    let config = Config::builder()
        .window(Window::Time { seconds: 2 })
        .calls_min(3)
        .failure_rate_threshold_percent(100)
        .build()
        .expect("valid");
    let script = "acquire 3\nfail p0\nwait 2s\nfail p1\nwait 1s\nfail p2\nwait 1s\nmetrics";
    let trace = targeted(Mutant::BucketNotReset, config, script);
    insta::assert_snapshot!(trace);
}

#[cfg(madsim)]
#[test]
fn script_catches_open_wait_wall_clock() {
    // Goal: a wall-clock jump of an hour ends the open wait at once (CB-S6).
    let trace = targeted(
        Mutant::OpenWaitWallClock,
        one_probe(),
        "trip\nwall +3600s\nacquire",
    );
    insta::assert_snapshot!(trace);
}

#[cfg(madsim)]
#[test]
fn script_catches_half_open_stuck_without_max_wait() {
    // Goal: the maximum wait in half-open is ignored, so the breaker reports no deadline and a
    // probe that never returns would hold it half-open for ever (resilience4j#903).
    let mut config = one_probe();
    config.half_open_wait_max = Some(Duration::from_secs(3));
    let trace = targeted(
        Mutant::HalfOpenStuck,
        config,
        "trip\nwait 5s\nacquire\nwait 3s\ntimeout",
    );
    insta::assert_snapshot!(trace);
}

#[cfg(madsim)]
#[test]
fn script_catches_half_open_stuck_on_release() {
    // Goal: a released probe's slot is never given back, so half-open can admit no probe
    // again: an abandoned probe consumes the only trial for ever (resilience4j#903).
    let script = "trip\nwait 5s\nacquire\nrelease p0\nacquire";
    let trace = targeted(Mutant::HalfOpenStuck, one_probe(), script);
    insta::assert_snapshot!(trace);
}

#[cfg(madsim)]
#[test]
fn script_catches_ignored_probe_keeps_slot() {
    // Goal: an ignored probe keeps the only slot (the metrics show it at once), so half-open
    // would refuse every later probe and, with no maximum wait, never decide (resilience4j#544,
    // Polly#1979).
    let script = "trip\nwait 5s\nacquire\nignore p0";
    let trace = targeted(Mutant::IgnoredProbeKeepsSlot, one_probe(), script);
    insta::assert_snapshot!(trace);
}

#[cfg(madsim)]
#[test]
fn script_catches_ignored_probe_fails() {
    // Goal: an ignored outcome of the probe is recorded as a failure and reopens the breaker
    // (Hystrix#1610, Polly#311).
    let script = "trip\nwait 5s\nacquire\nignore p0";
    let trace = targeted(Mutant::IgnoredProbeFails, one_probe(), script);
    insta::assert_snapshot!(trace);
}

#[cfg(madsim)]
#[test]
fn script_catches_stale_release_frees_slot() {
    // Goal: a probe of an earlier half-open epoch, abandoned by its caller after the maximum
    // wait reopened the breaker, frees the slot of the next half-open epoch's probe, so a
    // second probe could go out beside it (failsafe#391).
    let mut config = one_probe();
    config.half_open_wait_max = Some(Duration::from_secs(3));
    let script = "trip\nwait 5s\nacquire\nwait 3s\ntimeout\nwait 5s\nacquire\nrelease p0";
    let trace = targeted(Mutant::StaleReleaseFreesSlot, config, script);
    insta::assert_snapshot!(trace);
}

#[cfg(madsim)]
#[test]
fn script_catches_backoff_overflows() {
    // Goal: a probe fails after every open wait, so the openings run on without a close; at
    // the eleventh, `initial x 10^k` no longer fits in 64 bits and the wait collapses to a
    // nanosecond (onos-lib-go PR #127).
    let config = Config::builder()
        .window(Window::Count { size: 2 })
        .calls_min(1)
        .half_open_probes_max(1)
        .open_wait_backoff(Backoff {
            initial: Duration::from_secs(1),
            multiplier: 1.0,
            max: Duration::from_secs(2),
            jitter: 0.0,
        })
        .build()
        .expect("valid");
    let cycles: Vec<String> = (0..12)
        .map(|i| format!("wait 1s\nacquire\nfail p{i}\nacquire"))
        .collect();
    let script = format!("trip\n{}", cycles.join("\n"));
    let trace = targeted(Mutant::BackoffOverflows, config, &script);
    insta::assert_snapshot!(trace);
}

#[cfg(madsim)]
#[test]
fn script_catches_ignored_probe_skips_epoch_check() {
    // Goal: a probe that comes back ignored after the maximum wait reopened the breaker is a
    // stale outcome; under the mutant it is taken as an ignored call of the open epoch
    // (resilience4j#544 / PR #545, Polly#218).
    let mut config = one_probe();
    config.half_open_wait_max = Some(Duration::from_secs(3));
    let script = "trip\nwait 5s\nacquire\nwait 3s\ntimeout\nignore p0";
    let trace = targeted(Mutant::IgnoredProbeSkipsEpochCheck, config, script);
    insta::assert_snapshot!(trace);
}

#[test]
fn legal_transition_relation_rejects_illegal_edges() {
    // Goal: the relation the trace checkers rely on refuses the transitions resilience4j
    // reported as bugs (#562 closed -> half-open, #646 open -> open) and unjustified trips.
    use State::{Closed, Disabled, ForcedOpen, HalfOpen, MetricsOnly, Open};
    let rates = TransitionReason::RatesExceeded {
        failure_rate: true,
        slow_call_rate: false,
    };
    let no_rates = TransitionReason::RatesExceeded {
        failure_rate: false,
        slow_call_rate: false,
    };
    assert!(is_legal_transition(Closed, Open, rates));
    assert!(is_legal_transition(HalfOpen, Open, rates));
    assert!(!is_legal_transition(Closed, Open, no_rates));
    assert!(!is_legal_transition(MetricsOnly, Open, rates));
    assert!(!is_legal_transition(
        Closed,
        HalfOpen,
        TransitionReason::OpenWaitElapsed
    ));
    assert!(is_legal_transition(
        Open,
        HalfOpen,
        TransitionReason::OpenWaitElapsed
    ));
    assert!(!is_legal_transition(Open, Open, TransitionReason::Manual));
    assert!(!is_legal_transition(
        Open,
        Closed,
        TransitionReason::ProbesPassed
    ));
    assert!(!is_legal_transition(
        Open,
        Open,
        TransitionReason::HalfOpenWaitMaxElapsed
    ));
    assert!(is_legal_transition(Closed, Closed, TransitionReason::Reset));
    assert!(!is_legal_transition(
        Closed,
        Disabled,
        TransitionReason::Reset
    ));
    assert!(is_legal_transition(
        Disabled,
        ForcedOpen,
        TransitionReason::Manual
    ));
}

#[test]
fn oracle_detects_double_completion_and_unknown_permits() {
    // Goal: "every permit released exactly once" can fail in a trace checker: the oracle
    // refuses a permit completed twice and one never issued.
    let config = Config::builder().build().expect("valid");
    let mut oracle = Oracle::new(&config, Duration::ZERO).expect("valid");
    let admission = oracle.acquire(Duration::ZERO).expect("closed admits");
    let permit = admission.permit;
    let first = oracle.complete(permit, Outcome::Success, Duration::ZERO);
    assert_eq!(
        first,
        Ok(Completion::Recorded(
            patterns::circuit_breaker::CallClass::Success
        ))
    );
    let again = oracle.complete(permit, Outcome::Failure, Duration::ZERO);
    assert_eq!(again, Err(OracleError::AlreadyCompleted(permit)));
    assert_eq!(
        oracle.release(permit, Duration::ZERO),
        Err(OracleError::AlreadyCompleted(permit))
    );
    let unknown = PermitId(99);
    assert_eq!(
        oracle.release(unknown, Duration::ZERO),
        Err(OracleError::UnknownPermit(unknown))
    );
    assert_eq!(oracle.outstanding().count(), 0);
}
