//! Time in a real build: the operating system's clocks, with the simulated build's names.
//!
//! [`now`] reads the monotonic clock, [`wall`] the system clock; [`sleep`], [`timeout`] and
//! [`interval`] are tokio's timers. The names, types and signatures are those of the simulated
//! `sim_core::time` (which has tokio's names too), so node code compiles unchanged in both
//! builds. An [`Instant`] counts nanoseconds from an origin one day before the process first
//! read the clock: durations since it are meaningful only within one process, and subtracting
//! up to a day from a fresh reading does not saturate. Per-node clocks, drift and jumps are
//! simulation-only; so is `true_now` (an oracle's view of true time).

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::SystemTime;

use crate::time_shared::duration_ns;
pub use crate::time_shared::{error, Elapsed, Instant, MissedTickBehavior, Timeout};

/// `std::time::Duration`, as `tokio::time` re-exports it.
pub use std::time::Duration;

/// How far before the first reading an [`Instant`]'s origin lies.
const ORIGIN_BEFORE_FIRST_READING: Duration = Duration::from_secs(24 * 60 * 60);

/// The tokio instant of the first reading: `Instant::from_nanos(ORIGIN_BEFORE_FIRST_READING)`.
fn first_reading() -> tokio::time::Instant {
    static FIRST: OnceLock<tokio::time::Instant> = OnceLock::new();
    *FIRST.get_or_init(tokio::time::Instant::now)
}

fn to_tokio(instant: Instant) -> tokio::time::Instant {
    let offset = duration_ns(ORIGIN_BEFORE_FIRST_READING);
    let first = first_reading();
    match instant.as_nanos().checked_sub(offset) {
        Some(after) => first + Duration::from_nanos(after),
        None => {
            let before = Duration::from_nanos(offset - instant.as_nanos());
            first.checked_sub(before).unwrap_or(first)
        }
    }
}

fn from_tokio(instant: tokio::time::Instant) -> Instant {
    let first = first_reading();
    let offset = duration_ns(ORIGIN_BEFORE_FIRST_READING);
    if instant >= first {
        Instant::from_nanos(offset.saturating_add(duration_ns(instant - first)))
    } else {
        Instant::from_nanos(offset.saturating_sub(duration_ns(first - instant)))
    }
}

/// The monotonic clock.
pub fn now() -> Instant {
    // The first reading is taken before this one, so no reading precedes it.
    first_reading();
    from_tokio(tokio::time::Instant::now())
}

/// The system's wall clock. It may jump.
#[allow(clippy::disallowed_methods)] // the real build reads the real clock: that is its point
pub fn wall() -> SystemTime {
    SystemTime::now()
}

/// Sleeps for `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(now() + duration)
}

/// Sleeps until the monotonic clock reads `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        inner: Box::pin(tokio::time::sleep_until(to_tokio(deadline))),
    }
}

/// Future returned by [`sleep`] and [`sleep_until`].
#[must_use = "futures do nothing unless you `.await` or poll them"]
#[derive(Debug)]
pub struct Sleep {
    inner: Pin<Box<tokio::time::Sleep>>,
}

impl Sleep {
    /// The deadline on the monotonic clock.
    pub fn deadline(&self) -> Instant {
        from_tokio(self.inner.deadline())
    }

    /// Whether the clock has reached the deadline.
    pub fn is_elapsed(&self) -> bool {
        self.inner.is_elapsed()
    }

    /// Moves the deadline to `deadline` (earlier or later), also after the sleep completed.
    pub fn reset(self: Pin<&mut Self>, deadline: Instant) {
        self.get_mut().inner.as_mut().reset(to_tokio(deadline));
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.inner.as_mut().poll(cx)
    }
}

/// Runs `future` until it completes or `duration` passes.
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    timeout_at(now() + duration, future)
}

/// Runs `future` until it completes or the clock reaches `deadline`.
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout::new(future, sleep_until(deadline))
}

/// Ticks every `period`; the first tick completes at once. As `tokio::time::interval`.
///
/// # Panics
/// If `period` is zero, as tokio's.
pub fn interval(period: Duration) -> Interval {
    assert!(!period.is_zero(), "interval: `period` must be non-zero");
    interval_at(now(), period)
}

/// Ticks every `period`, the first tick at `start`. As `tokio::time::interval_at`.
///
/// # Panics
/// If `period` is zero, as tokio's.
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(!period.is_zero(), "interval_at: `period` must be non-zero");
    Interval {
        inner: tokio::time::interval_at(to_tokio(start), period),
    }
}

/// Ticks, from [`interval`] or [`interval_at`]: tokio's `Interval` with this module's
/// [`Instant`].
#[must_use = "an interval does nothing unless you call `tick`"]
#[derive(Debug)]
pub struct Interval {
    inner: tokio::time::Interval,
}

impl Interval {
    /// Waits for the next tick; returns when it was due (not when it completed).
    ///
    /// Cancel-safe: a tick is used up only when this returns it.
    pub async fn tick(&mut self) -> Instant {
        from_tokio(self.inner.tick().await)
    }

    /// Polls for the next tick; when ready, returns when it was due and aims at the one after.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        self.inner.poll_tick(cx).map(from_tokio)
    }

    /// The next tick comes one period from now.
    pub fn reset(&mut self) {
        self.inner.reset();
    }

    /// The next tick comes now.
    pub fn reset_immediately(&mut self) {
        self.inner.reset_immediately();
    }

    /// The next tick comes `after` from now.
    pub fn reset_after(&mut self, after: Duration) {
        self.inner.reset_after(after);
    }

    /// The next tick comes at `deadline`.
    pub fn reset_at(&mut self, deadline: Instant) {
        self.inner.reset_at(to_tokio(deadline));
    }

    /// The time between ticks.
    pub fn period(&self) -> Duration {
        self.inner.period()
    }

    /// What the interval does when it falls behind.
    pub fn missed_tick_behavior(&self) -> MissedTickBehavior {
        match self.inner.missed_tick_behavior() {
            tokio::time::MissedTickBehavior::Burst => MissedTickBehavior::Burst,
            tokio::time::MissedTickBehavior::Delay => MissedTickBehavior::Delay,
            tokio::time::MissedTickBehavior::Skip => MissedTickBehavior::Skip,
        }
    }

    /// Sets what the interval does when it falls behind.
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTickBehavior) {
        self.inner.set_missed_tick_behavior(match behavior {
            MissedTickBehavior::Burst => tokio::time::MissedTickBehavior::Burst,
            MissedTickBehavior::Delay => tokio::time::MissedTickBehavior::Delay,
            MissedTickBehavior::Skip => tokio::time::MissedTickBehavior::Skip,
        });
    }
}
