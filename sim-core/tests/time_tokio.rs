//! tokio's time names on the per-node clocks: `Instant::now`, `timeout_at`, `Sleep::reset`,
//! and `interval` with its three behaviours for missed ticks, on nodes whose clocks drift.
#![cfg(madsim)]

use sim_core::time::{self, ClockConfig, Instant, MissedTickBehavior};
use sim_core::{run, Report, SimConfig};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn assert_pass(report: &Report) {
    assert!(report.outcome.is_pass(), "{}", report.outcome);
}

/// One tick of an interval, in nanoseconds since the interval started: when it was due and
/// when it completed on the node's clock, and when it completed in true time.
#[derive(Clone, Copy, Debug)]
struct Tick {
    due_ns: u64,
    local_ns: u64,
    true_ns: u64,
}

/// A node whose oscillator drifts by `drift_ppm` runs `program` with a [`Recorder`] of its
/// ticks; the run lasts 2 s.
fn on_drifting_node<F, Fut>(seed: u64, drift_ppm: i64, program: F) -> (Vec<Tick>, Report)
where
    F: Fn(Recorder) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let ticks = Arc::new(Mutex::new(Vec::new()));
    let t = ticks.clone();
    let report = run(seed, SimConfig::default(), move |sim| async move {
        let program = Arc::new(program);
        sim.node("ticker")
            .clock(ClockConfig {
                offset_ns: 0,
                drift_ppm,
            })
            .init(move || {
                let ticks = t.clone();
                let program = program.clone();
                async move {
                    // Read inside the node's task: the clocks are the node's only there.
                    let recorder = Recorder {
                        start: time::now(),
                        true_start: time::true_now(),
                        ticks,
                    };
                    program.as_ref()(recorder).await;
                }
            })
            .build();
        sim.sleep(Duration::from_secs(2)).await;
        Ok(())
    });
    let ticks = ticks.lock().unwrap().clone();
    (ticks, report)
}

/// Records ticks relative to the node program's start.
struct Recorder {
    start: Instant,
    true_start: Duration,
    ticks: Arc<Mutex<Vec<Tick>>>,
}

impl Recorder {
    fn record(&self, due: Instant) {
        let tick = Tick {
            due_ns: (due - self.start).as_nanos() as u64,
            local_ns: (Instant::now() - self.start).as_nanos() as u64,
            true_ns: (time::true_now() - self.true_start).as_nanos() as u64,
        };
        self.ticks.lock().unwrap().push(tick);
    }
}

/// Checks that ticks were due at `due_ms`, completed at about `local_ms` on the node's
/// clock (within 1 ms), and in true time at about the node's time over its rate.
fn assert_ticks(ticks: &[Tick], due_ms: &[u64], local_ms: &[u64], drift_ppm: i64) {
    let due: Vec<u64> = ticks.iter().map(|tick| tick.due_ns / 1_000_000).collect();
    assert_eq!(due, due_ms, "{ticks:?}");
    let local: Vec<u64> = ticks.iter().map(|tick| tick.local_ns / 1_000_000).collect();
    assert_eq!(local, local_ms, "{ticks:?}");
    let rate = 1.0 + drift_ppm as f64 / 1e6;
    for tick in ticks {
        let expected_true_ns = tick.local_ns as f64 / rate;
        let off_ns = (tick.true_ns as f64 - expected_true_ns).abs();
        assert!(off_ns < 1_000.0, "{tick:?} true time off by {off_ns} ns");
    }
}

#[test]
fn interval_ticks_at_once_then_every_period_of_a_slow_node_clock() {
    // A clock running 20 % slow: a 100 ms period takes 125 ms of true time.
    let (ticks, report) = on_drifting_node(1, -200_000, |recorder| async move {
        let mut interval = time::interval(ms(100));
        assert_eq!(interval.period(), ms(100));
        assert_eq!(interval.missed_tick_behavior(), MissedTickBehavior::Burst);
        for _ in 0..4 {
            let due = interval.tick().await;
            recorder.record(due);
        }
    });
    assert_pass(&report);
    assert_ticks(&ticks, &[0, 100, 200, 300], &[0, 100, 200, 300], -200_000);
    assert_eq!(ticks[0].local_ns, 0, "the first tick completes at once");
    assert_eq!(ticks[3].true_ns / 1_000_000, 375);
}

/// Ticks of a 100 ms interval with `behavior` on a clock 25 % fast, whose task is busy from
/// the first tick to 350 ms.
fn missed_ticks(behavior: MissedTickBehavior) -> (Vec<Tick>, Report) {
    on_drifting_node(2, 250_000, move |recorder| async move {
        let mut interval = time::interval_at(recorder.start, ms(100));
        interval.set_missed_tick_behavior(behavior);
        assert_eq!(interval.missed_tick_behavior(), behavior);
        recorder.record(interval.tick().await);
        time::sleep(ms(350)).await;
        for _ in 0..4 {
            let due = interval.tick().await;
            recorder.record(due);
        }
    })
}

#[test]
fn missed_ticks_burst_delay_or_skip_on_the_node_clock() {
    let burst = [0, 100, 200, 300, 400];
    let (ticks, report) = missed_ticks(MissedTickBehavior::Burst);
    assert_pass(&report);
    assert_ticks(&ticks, &burst, &[0, 350, 350, 350, 400], 250_000);

    let (ticks, report) = missed_ticks(MissedTickBehavior::Skip);
    assert_pass(&report);
    assert_ticks(
        &ticks,
        &[0, 100, 400, 500, 600],
        &[0, 350, 400, 500, 600],
        250_000,
    );

    // Delay starts again from when the late tick completed (350 ms and a few nanoseconds).
    let (ticks, report) = missed_ticks(MissedTickBehavior::Delay);
    assert_pass(&report);
    let late_ns = ticks[1].local_ns;
    let expected: Vec<u64> = (1..=3).map(|k| late_ns + k * 100_000_000).collect();
    let due: Vec<u64> = ticks[2..].iter().map(|tick| tick.due_ns).collect();
    assert_eq!(due, expected);
    assert_ticks(
        &ticks,
        &[0, 100, 450, 550, 650],
        &[0, 350, 450, 550, 650],
        250_000,
    );
}

#[test]
fn interval_reset_moves_the_next_tick() {
    let (ticks, report) = on_drifting_node(3, 100_000, |recorder| async move {
        let mut interval = time::interval(ms(100));
        recorder.record(interval.tick().await);
        time::sleep(ms(30)).await;
        interval.reset(); // Next at 130.
        recorder.record(interval.tick().await);
        interval.reset_immediately(); // Next at 130, now.
        recorder.record(interval.tick().await);
        interval.reset_after(ms(10)); // Next at 140.
        recorder.record(interval.tick().await);
        interval.reset_at(recorder.start + ms(200));
        recorder.record(interval.tick().await);
        recorder.record(interval.tick().await); // One period later: 300.
    });
    assert_pass(&report);
    let local = [0, 130, 130, 140, 200, 300];
    assert_ticks(&ticks, &local, &local, 100_000);
}

#[test]
#[should_panic(expected = "`period` must be non-zero")]
fn interval_with_a_zero_period_panics() {
    let _ = time::interval(Duration::ZERO);
}

#[test]
fn timeout_at_and_sleep_reset_follow_the_node_clock() {
    let (ticks, report) = on_drifting_node(4, -200_000, |recorder| async move {
        let deadline = Instant::now() + ms(100);
        let result = time::timeout_at(deadline, std::future::pending::<()>()).await;
        assert_eq!(result, Err(time::error::Elapsed));
        let as_io: std::io::Error = time::error::Elapsed.into();
        assert_eq!(as_io.kind(), std::io::ErrorKind::TimedOut);
        assert!(deadline.elapsed() < ms(1));
        recorder.record(deadline);
        let done = time::timeout_at(Instant::now() + ms(10), async { 7 }).await;
        assert_eq!(done, Ok(7));

        // A sleep of a second moved to 50 ms from now ends then.
        let mut sleep = Box::pin(time::sleep(Duration::from_secs(1)));
        assert!(!sleep.is_elapsed());
        let moved = Instant::now() + ms(50);
        sleep.as_mut().reset(moved);
        sleep.as_mut().await;
        assert!(sleep.is_elapsed());
        assert_eq!(sleep.deadline(), moved);
        recorder.record(moved);
    });
    assert_pass(&report);
    assert_ticks(&ticks, &[100, 150], &[100, 150], -200_000);
}

#[test]
fn determinism_intervals_give_the_same_trace_hash() {
    let (_, first) = missed_ticks(MissedTickBehavior::Skip);
    let (_, second) = missed_ticks(MissedTickBehavior::Skip);
    let (_, other) = missed_ticks(MissedTickBehavior::Delay);
    assert_pass(&first);
    assert_eq!(first.trace_hash, second.trace_hash);
    assert_eq!(first.steps, second.steps);
    assert_ne!(first.trace_hash, other.trace_hash);
}
