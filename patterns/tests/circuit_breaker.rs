//! Scripted unit tests of the circuit breaker's state machine.
//!
//! Each test runs a script of inputs through the breaker and the reference oracle in lockstep
//! (any disagreement fails the test) and compares the printed effect trace with an `insta`
//! snapshot. Trace lines: `[t=..] input`, then `=>` the input's result, `-` the events it
//! published (`eN` is the epoch after the event), `~` a change of the next deadline.

mod circuit_breaker_support;

use std::time::Duration;

use circuit_breaker_support::check;
use patterns::circuit_breaker::{Backoff, Config, Window};

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// A small count-window breaker: window 4, 2 calls minimum, 50 % failures, 10 s open, 2 probes.
fn small() -> Config {
    Config::builder()
        .window(Window::Count { size: 4 })
        .calls_min(2)
        .failure_rate_threshold_percent(50)
        .slow_call_duration_threshold(ms(1000))
        .open_wait_fixed(Duration::from_secs(10))
        .half_open_probes_max(2)
        .build()
        .expect("valid")
}

#[test]
fn closed_trips_on_failure_rate_then_rejects_while_open() {
    // Goal: the rates count only from calls_min calls; 1 failure in 2 calls reaches 50 %; an
    // open breaker rejects with the wait left and counts the rejections.
    let trace = check(
        small(),
        "
        acquire 2
        fail p0
        metrics
        ok p1
        acquire
        wait 4s
        acquire
        metrics
        ",
    );
    insta::assert_snapshot!(trace);
}

#[test]
fn calls_min_is_capped_by_count_window_size() {
    // Goal: calls_min 100 with a count window of 3 trips once the window is full (resilience4j
    // caps the minimum at the window size; CB-M6).
    let config = Config::builder()
        .window(Window::Count { size: 3 })
        .calls_min(100)
        .build()
        .expect("valid");
    let trace = check(
        config,
        "
        acquire 3
        fail p0
        fail p1
        metrics
        ok p2
        ",
    );
    insta::assert_snapshot!(trace);
}

#[test]
fn count_window_evicts_oldest_call() {
    // Goal: the count window slides: old failures leave as new successes arrive, so the rate
    // never reaches the threshold until failures dominate the last 4 calls.
    let config = Config::builder()
        .window(Window::Count { size: 4 })
        .calls_min(4)
        .failure_rate_threshold_percent(75)
        .build()
        .expect("valid");
    let trace = check(
        config,
        "
        acquire 8
        fail p0
        fail p1
        ok p2
        ok p3
        metrics
        ok p4
        fail p5
        metrics
        fail p6
        metrics
        fail p7
        ",
    );
    insta::assert_snapshot!(trace);
}

#[test]
fn time_window_forgets_calls_older_than_its_seconds() {
    // Goal: a 3-second window keeps one-second buckets; failures older than 3 s leave it, so
    // late successes do not average with them, and the trip happens only when the failures
    // of the last 3 s reach the threshold.
    let config = Config::builder()
        .window(Window::Time { seconds: 3 })
        .calls_min(3)
        .failure_rate_threshold_percent(60)
        .build()
        .expect("valid");
    let trace = check(
        config,
        "
        acquire 7
        fail p0
        fail p1
        metrics
        wait 2999ms
        metrics
        wait 1ms
        # the window now covers seconds 1, 2 and 3: the second-0 bucket left it
        metrics
        ok p2
        wait 500ms
        ok p3
        fail p4
        wait 1s
        fail p5
        metrics
        fail p6
        ",
    );
    insta::assert_snapshot!(trace);
}

#[test]
fn slow_calls_trip_on_slow_call_rate() {
    // Goal: a call lasting longer than the slow-call threshold (strictly) is slow, successful
    // or not; half the calls slow reaches a 50 % slow-call threshold.
    let config = Config::builder()
        .window(Window::Count { size: 4 })
        .calls_min(4)
        .failure_rate_threshold_percent(100)
        .slow_call_rate_threshold_percent(50)
        .slow_call_duration_threshold(ms(1000))
        .build()
        .expect("valid");
    let trace = check(
        config,
        "
        acquire 4
        wait 1s
        # exactly the threshold: not slow
        ok p0
        wait 1ms
        ok p1
        fail p2
        metrics
        acquire
        ok p3
        ",
    );
    insta::assert_snapshot!(trace);
}

#[test]
fn lazy_half_open_admits_probes_then_closes() {
    // Goal: without automatic transition, open becomes half-open on the first acquire after
    // the wait; half-open admits exactly 2 probes, and 2 successes close it with a fresh window.
    let trace = check(
        small(),
        "
        acquire 2
        fail p0
        fail p1
        wait 9999ms
        acquire
        wait 1ms
        acquire 3
        metrics
        ok p2
        ok p3
        metrics
        acquire
        ",
    );
    insta::assert_snapshot!(trace);
}

#[test]
fn failed_probe_reopens_with_exponential_backoff_and_closing_resets_it() {
    // Goal: each consecutive opening waits longer (1 s, 2 s, 4 s, capped at 5 s); closing
    // resets the backoff, so the next opening waits 1 s again (CB-L4).
    let config = Config::builder()
        .window(Window::Count { size: 2 })
        .calls_min(1)
        .half_open_probes_max(1)
        .open_wait_backoff(Backoff {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(5),
            jitter: 0.0,
        })
        .build()
        .expect("valid");
    let trace = check(
        config,
        "
        acquire
        fail p0
        acquire
        wait 1s
        acquire
        fail p1
        acquire
        wait 2s
        acquire
        fail p2
        acquire
        wait 4s
        acquire
        fail p3
        acquire
        wait 5s
        acquire
        ok p4
        acquire
        fail p5
        acquire
        ",
    );
    insta::assert_snapshot!(trace);
}

#[test]
fn backoff_jitter_is_drawn_from_the_seeded_stream() {
    // Goal: with jitter, the waits vary around 1 s, 2 s, 4 s within ±50 %, and the same seed
    // gives the same waits (the oracle draws from its own stream with the same seed).
    let config = Config::builder()
        .window(Window::Count { size: 1 })
        .calls_min(1)
        .half_open_probes_max(1)
        .open_wait_backoff(Backoff {
            initial: Duration::from_secs(1),
            multiplier: 2.0,
            max: Duration::from_secs(60),
            jitter: 0.5,
        })
        .jitter_seed(42)
        .build()
        .expect("valid");
    let script = "
        acquire
        fail p0
        acquire
        wait 2s
        acquire
        fail p1
        acquire
        wait 3s
        acquire
        fail p2
        acquire
        ";
    let trace = check(config.clone(), script);
    assert_eq!(trace, check(config, script), "same seed, same waits");
    insta::assert_snapshot!(trace);
}

#[test]
fn half_open_max_wait_reopens_when_probes_never_return() {
    // Goal: a probe that never returns cannot keep the breaker half-open: after the maximum
    // wait it reopens (through handle_timeout, or lazily on any input), and the late outcome
    // of that probe is stale (CB-L2, resilience4j#903).
    let config = Config::builder()
        .window(Window::Count { size: 2 })
        .calls_min(1)
        .half_open_probes_max(1)
        .open_wait_fixed(Duration::from_secs(5))
        .half_open_wait_max(Some(Duration::from_secs(3)))
        .build()
        .expect("valid");
    let trace = check(
        config,
        "
        acquire
        fail p0
        wait 5s
        acquire 2
        wait 2999ms
        timeout
        timeout-at-deadline
        acquire
        wait 5s
        acquire
        wait 4s
        ok p1
        fail p2
        acquire
        ",
    );
    insta::assert_snapshot!(trace);
}

#[test]
fn automatic_transition_half_opens_at_the_deadline_without_traffic() {
    // Goal: with auto_half_open, poll_timeout reports the end of the open wait and
    // handle_timeout there moves to half-open without any call.
    let config = Config::builder()
        .window(Window::Count { size: 2 })
        .calls_min(1)
        .half_open_probes_max(1)
        .open_wait_fixed(Duration::from_secs(5))
        .auto_half_open(true)
        .build()
        .expect("valid");
    let trace = check(
        config,
        "
        acquire
        fail p0
        wait 4s
        timeout
        timeout-at-deadline
        acquire
        ok p1
        ",
    );
    insta::assert_snapshot!(trace);
}

#[test]
fn stale_outcomes_from_older_epochs_decide_nothing() {
    // Goal: calls admitted while closed and completed after the breaker moved on are stale:
    // a late success does not close a half-open breaker (Polly#217), a late failure in open
    // does not reopen it, and a stale release frees no probe slot (CB-S7).
    let config = Config::builder()
        .window(Window::Count { size: 2 })
        .calls_min(1)
        .half_open_probes_max(1)
        .open_wait_fixed(Duration::from_secs(5))
        .build()
        .expect("valid");
    let trace = check(
        config,
        "
        acquire 4
        fail p0
        fail p1
        wait 5s
        acquire
        ok p2
        release p3
        metrics
        acquire
        fail p4
        ",
    );
    insta::assert_snapshot!(trace);
}

#[test]
fn released_and_ignored_probes_give_their_slots_back() {
    // Goal: a probe released without outcome, or completed with an ignored outcome, frees its
    // slot, so another probe can be admitted; ignored outcomes never count (CB-S10).
    let config = Config::builder()
        .window(Window::Count { size: 2 })
        .calls_min(1)
        .half_open_probes_max(1)
        .open_wait_fixed(Duration::from_secs(5))
        .build()
        .expect("valid");
    let trace = check(
        config,
        "
        acquire
        fail p0
        wait 5s
        acquire 2
        release p1
        acquire 2
        ignore p2
        metrics
        acquire
        ok p3
        acquire
        ignore p4
        metrics
        ",
    );
    insta::assert_snapshot!(trace);
}

#[test]
fn manual_states_disabled_forced_open_metrics_only() {
    // Goal: disabled admits everything silently and records nothing; forced-open rejects
    // everything silently; metrics-only records and reports rate crossings but never trips;
    // trip and reset work from any state; a transition to the current state is refused.
    let trace = check(
        small(),
        "
        to disabled
        acquire 2
        fail p0
        fail p1
        metrics
        to disabled
        to forced_open
        acquire
        metrics
        to metrics_only
        acquire 4
        fail p2
        fail p3
        fail p4
        ok p5
        metrics
        trip
        trip
        acquire
        reset
        reset
        to half_open
        acquire
        metrics
        ",
    );
    insta::assert_snapshot!(trace);
}

#[test]
fn open_wait_ignores_wall_clock_jumps_and_stale_readings() {
    // Goal: the open wait runs on the monotonic clock: a wall jump of an hour forward or back
    // changes neither the decision nor the wait left (CB-S6); an acquire with an older
    // monotonic reading counts as the latest reading.
    let trace = check(
        small(),
        "
        acquire 2
        fail p0
        fail p1
        wall +3600s
        acquire
        wall -7200s
        wait 5s
        acquire
        stale-reading 5s
        wait 5s
        acquire
        ",
    );
    insta::assert_snapshot!(trace);
}

#[test]
fn full_event_queue_drops_oldest_events_and_counts_them() {
    // Goal: the event queue is bounded; when the consumer does not drain it, the oldest
    // events go and the drops are counted.
    let mut config = small();
    config.event_queue_capacity = 2;
    let now = patterns::circuit_breaker::Now::from_monotonic(Duration::ZERO);
    let mut breaker = patterns::circuit_breaker::CircuitBreaker::new(config, now).expect("valid");
    for _ in 0..5 {
        let permit = breaker.try_acquire(now).expect("closed admits");
        breaker.release(permit, now);
    }
    let mut kept = Vec::new();
    while let Some(event) = breaker.poll_event() {
        kept.push(circuit_breaker_support::show_event(&event));
    }
    assert_eq!(breaker.events_dropped(), 8);
    assert_eq!(
        kept,
        ["e0 admitted p4 Normal", "e0 released p4 from epoch 0"]
    );
}
