//! The types of [`crate::time`] that both builds share: [`Instant`] (a monotonic reading as
//! nanoseconds since an origin), [`Elapsed`] and [`MissedTickBehavior`], with tokio's names.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A reading of a node's monotonic clock.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Instant {
    nanos: u64,
}

impl Instant {
    /// The instant `nanos` nanoseconds after the clock's origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant { nanos }
    }
    /// Nanoseconds since the clock's origin (the node's creation).
    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }
    /// Time since the clock's origin.
    pub const fn since_origin(self) -> Duration {
        Duration::from_nanos(self.nanos)
    }
    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.nanos.saturating_sub(earlier.nanos))
    }
    /// Time elapsed on the current node's clock since `self`.
    pub fn elapsed(self) -> Duration {
        crate::time::now().saturating_duration_since(self)
    }
    /// `self + duration`, saturating.
    pub fn saturating_add(self, duration: Duration) -> Instant {
        Instant {
            nanos: self.nanos.saturating_add(duration_ns(duration)),
        }
    }
    /// The current node's monotonic clock, as [`now`] (tokio's name).
    pub fn now() -> Instant {
        crate::time::now()
    }
    /// `self - earlier`, or zero if `earlier` is later (as tokio's, which saturates too).
    pub fn duration_since(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
    /// `self - earlier`, or `None` if `earlier` is later.
    pub fn checked_duration_since(self, earlier: Instant) -> Option<Duration> {
        self.nanos
            .checked_sub(earlier.nanos)
            .map(Duration::from_nanos)
    }
    /// `self + duration`, or `None` if that is beyond what an `Instant` holds.
    pub fn checked_add(self, duration: Duration) -> Option<Instant> {
        let nanos = u64::try_from(duration.as_nanos()).ok()?;
        self.nanos.checked_add(nanos).map(Instant::from_nanos)
    }
    /// `self - duration`, or `None` if that is before the clock's origin.
    pub fn checked_sub(self, duration: Duration) -> Option<Instant> {
        let nanos = u64::try_from(duration.as_nanos()).ok()?;
        self.nanos.checked_sub(nanos).map(Instant::from_nanos)
    }
    /// `self - duration`, or the clock's origin if that is before it.
    pub fn saturating_sub(self, duration: Duration) -> Instant {
        Instant {
            nanos: self.nanos.saturating_sub(duration_ns(duration)),
        }
    }
}

impl std::ops::Add<Duration> for Instant {
    type Output = Instant;
    /// Saturates at the largest instant.
    fn add(self, duration: Duration) -> Instant {
        self.saturating_add(duration)
    }
}

impl std::ops::AddAssign<Duration> for Instant {
    fn add_assign(&mut self, duration: Duration) {
        *self = *self + duration;
    }
}

impl std::ops::Sub<Duration> for Instant {
    type Output = Instant;
    /// Saturates at the clock's origin (see the module docs).
    fn sub(self, duration: Duration) -> Instant {
        self.saturating_sub(duration)
    }
}

impl std::ops::SubAssign<Duration> for Instant {
    fn sub_assign(&mut self, duration: Duration) {
        *self = *self - duration;
    }
}

impl std::ops::Sub for Instant {
    type Output = Duration;
    /// Zero if `earlier` is later.
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

pub(crate) fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The error of [`timeout`](crate::time::timeout): the deadline passed first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("deadline has elapsed")]
pub struct Elapsed;

impl From<Elapsed> for std::io::Error {
    /// `TimedOut`, as tokio converts it.
    fn from(_: Elapsed) -> Self {
        std::io::ErrorKind::TimedOut.into()
    }
}

/// The errors of this module at tokio's path (`tokio::time::error::Elapsed`).
pub mod error {
    pub use super::Elapsed;
}

/// A tick that comes more than this late counts as missed (tokio's tolerance).
#[cfg(madsim)] // the simulated interval's; the real one is tokio's
pub(crate) const MISSED_TICK_TOLERANCE: Duration = Duration::from_millis(5);

/// What an [`Interval`] does when it falls behind: when [`Interval::tick`] is called more
/// than 5 ms after the tick was due (the task was busy, or its node paused), as tokio's.
///
/// In the examples, the period is 100 ms, the ticks are due at 0, 100, 200, 300..., and the
/// task calls `tick` again at 350 ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MissedTickBehavior {
    /// Ticks as fast as it can until it caught up: ticks for 100, 200 and 300 complete at
    /// once at 350, then 400, 500... on time. The default.
    #[default]
    Burst,
    /// Starts again from now: the tick for 100 completes at 350, the next ones come at 450,
    /// 550...
    Delay,
    /// Skips the missed ticks and keeps the schedule: the tick for 100 completes at 350, the
    /// next ones come at 400, 500...
    Skip,
}

#[cfg(madsim)] // the simulated interval's arithmetic; the real one is tokio's
impl MissedTickBehavior {
    /// When the tick after the one due at `due` comes, if it completed late, at `now`.
    pub(crate) fn next_due(self, due: Instant, now: Instant, period: Duration) -> Instant {
        match self {
            MissedTickBehavior::Burst => due + period,
            MissedTickBehavior::Delay => now + period,
            MissedTickBehavior::Skip => {
                let late_ns = (now - due).as_nanos() % period.as_nanos();
                now + period - Duration::from_nanos(late_ns as u64)
            }
        }
    }
}

/// Future returned by [`timeout`](crate::time::timeout) and
/// [`timeout_at`](crate::time::timeout_at): the future, raced against a sleep of the build's
/// clock.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Timeout<F> {
    future: std::pin::Pin<Box<F>>,
    sleep: crate::time::Sleep,
}

impl<F> Timeout<F> {
    pub(crate) fn new(future: F, sleep: crate::time::Sleep) -> Self {
        Timeout {
            future: Box::pin(future),
            sleep,
        }
    }
}

impl<F: std::future::Future> std::future::Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        if let Poll::Ready(output) = self.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match std::pin::Pin::new(&mut self.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(madsim)]
    #[test]
    fn missed_ticks_follow_tokio_arithmetic() {
        let (due, now, period) = (ms(100), ms(350), Duration::from_millis(100));
        let next = |behavior: MissedTickBehavior| behavior.next_due(due, now, period);
        assert_eq!(next(MissedTickBehavior::Burst), ms(200));
        assert_eq!(next(MissedTickBehavior::Delay), ms(450));
        assert_eq!(next(MissedTickBehavior::Skip), ms(400));
    }

    fn ms(n: u64) -> Instant {
        Instant::from_nanos(n * 1_000_000)
    }

    #[test]
    fn instant_arithmetic_saturates_or_checks_at_the_origin() {
        let second = Duration::from_secs(1);
        let at = ms(1_500);
        assert_eq!(at - second, ms(500));
        assert_eq!(ms(500) - second, ms(0));
        assert_eq!(ms(500).checked_sub(second), None);
        assert_eq!(at.checked_sub(second), Some(ms(500)));
        assert_eq!(at.checked_add(second), Some(ms(2_500)));
        assert_eq!(Instant::from_nanos(u64::MAX).checked_add(second), None);
        assert_eq!(at.duration_since(ms(500)), second);
        assert_eq!(ms(500).duration_since(at), Duration::ZERO);
        assert_eq!(ms(500).checked_duration_since(at), None);
        assert_eq!(at.checked_duration_since(ms(500)), Some(second));
        let mut moving = at;
        moving += second;
        assert_eq!(moving, ms(2_500));
        moving -= second;
        assert_eq!(moving, at);
        assert_eq!(at - ms(500), second);
    }
}
