//! Per-node clocks: a monotonic clock and a wall clock, each node with its own offset, drift
//! and jumps.
//!
//! madsim has one global clock ("true time"). Each node reads time through its own
//! oscillator: `local = base + (true - anchor) * (1 + drift_ppm / 1e6)`. The monotonic clock
//! ([`now`]) follows the oscillator only, so it never goes backwards. The wall clock ([`wall`])
//! adds an offset that can be set and can jump forwards and backwards, like NTP stepping a
//! server's clock.
//!
//! Sleeps and timeouts on a node follow the node's monotonic clock: on a node whose clock runs
//! 10 % fast, `sleep(1s)` ends after about 0.909 s of true time. A drift change wakes sleepers so
//! they re-aim. madsim rounds every sleep up to at least 1 ms of true time.
//!
//! Called on the supervisor (outside any node), these functions use true time.
//!
//! ## tokio's names
//! A service written against `tokio::time` runs unchanged with its imports switched to this
//! module: [`Instant`] has tokio's methods and operators ([`Instant::now`],
//! [`Instant::duration_since`], [`Instant::checked_add`]...), and [`sleep`], [`sleep_until`],
//! [`timeout`], [`timeout_at`], [`interval`], [`interval_at`], [`Interval`],
//! [`MissedTickBehavior`], [`error::Elapsed`] and [`Duration`] have tokio's names. One
//! difference: a node's monotonic clock starts at zero when the node is created, so
//! subtracting a duration longer than the node's age from an instant saturates at that origin
//! (tokio's instants come from the host's uptime, which is rarely that young).

use crate::node::NodeId;
use crate::trace::{ClockEvent, Event};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::time_shared::{duration_ns, MISSED_TICK_TOLERANCE};
pub use crate::time_shared::{error, Elapsed, Instant, MissedTickBehavior, Timeout};

/// `std::time::Duration`, as `tokio::time` re-exports it.
pub use std::time::Duration;

/// The wall clock's true value at the start of every run: 2026-01-01T00:00:00Z.
///
/// Fixed (madsim picks a random point in 2022) so that wall-clock values in traces are
/// readable and do not depend on madsim's generator.
pub const WALL_EPOCH_UNIX_S: u64 = 1_767_225_600;

/// Drift is bounded so that a clock always moves forwards.
pub const DRIFT_MAX_PPM: i64 = 500_000;

/// A node's clock at the start of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClockConfig {
    /// Offset of the wall clock from true time, in nanoseconds.
    pub offset_ns: i64,
    /// Drift of the oscillator, in parts per million (positive: runs fast).
    pub drift_ppm: i64,
}

/// The state of one node's clock.
#[derive(Clone, Debug)]
pub(crate) struct ClockState {
    /// Local monotonic reading at `anchor_true_ns`.
    base_local_ns: u64,
    anchor_true_ns: u64,
    drift_ppm: i64,
    wall_offset_ns: i64,
    /// What the node was built with, for [`ClockControl::reset`].
    configured: ClockConfig,
    /// Bumped on every drift change, so sleepers re-aim.
    pub generation: u64,
    /// Sleepers to wake when the drift changes, by sleep id.
    pub sleepers: BTreeMap<u64, Waker>,
}

impl ClockState {
    pub fn new(config: ClockConfig, true_now_ns: u64) -> Self {
        ClockState {
            base_local_ns: 0,
            anchor_true_ns: true_now_ns,
            drift_ppm: config.drift_ppm.clamp(-DRIFT_MAX_PPM, DRIFT_MAX_PPM),
            wall_offset_ns: config.offset_ns,
            configured: config,
            generation: 0,
            sleepers: BTreeMap::new(),
        }
    }

    /// Local monotonic reading at true time `true_ns`.
    pub fn local_ns(&self, true_ns: u64) -> u64 {
        let elapsed = i128::from(true_ns.saturating_sub(self.anchor_true_ns));
        let scaled = elapsed * i128::from(1_000_000 + self.drift_ppm) / 1_000_000;
        self.base_local_ns.saturating_add(scaled as u64)
    }

    /// True time needed for the local clock to advance by `local_ns` (rounded up).
    pub fn true_span_ns(&self, local_ns: u64) -> u64 {
        let rate = i128::from(1_000_000 + self.drift_ppm);
        let span = (i128::from(local_ns) * 1_000_000 + rate - 1) / rate;
        u64::try_from(span).unwrap_or(u64::MAX)
    }

    /// Wall clock reading in nanoseconds since the Unix epoch.
    pub fn wall_ns(&self, true_ns: u64) -> i128 {
        i128::from(WALL_EPOCH_UNIX_S) * 1_000_000_000
            + i128::from(self.local_ns(true_ns))
            + i128::from(self.wall_offset_ns)
    }

    fn set_drift(&mut self, ppm: i64, true_ns: u64) {
        self.base_local_ns = self.local_ns(true_ns);
        self.anchor_true_ns = true_ns;
        self.drift_ppm = ppm.clamp(-DRIFT_MAX_PPM, DRIFT_MAX_PPM);
        self.generation += 1;
        for waker in self.sleepers.values() {
            waker.wake_by_ref();
        }
    }
}

fn true_ns(world: &crate::world::World) -> u64 {
    duration_ns(world.now())
}

/// The current node's monotonic clock (true time on the supervisor).
pub fn now() -> Instant {
    crate::world::with(|world| {
        let t = true_ns(world);
        match world.current_node() {
            Some(node) => Instant::from_nanos(world.node(node).clock.local_ns(t)),
            None => Instant::from_nanos(t),
        }
    })
}

/// True simulated time since the start of the run, whatever node asks.
///
/// For checkers and oracles, which judge what nodes did against the truth. Node code must use
/// [`now`] and [`wall`]: a node has no access to true time in the real world.
pub fn true_now() -> Duration {
    crate::world::with(|world| world.now())
}

/// The current node's wall clock (true wall time on the supervisor). It may jump.
pub fn wall() -> SystemTime {
    crate::world::with(|world| {
        let t = true_ns(world);
        let ns = match world.current_node() {
            Some(node) => world.node(node).clock.wall_ns(t),
            None => i128::from(WALL_EPOCH_UNIX_S) * 1_000_000_000 + i128::from(t),
        };
        system_time_from_ns(ns)
    })
}

fn system_time_from_ns(ns: i128) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    } else {
        UNIX_EPOCH - Duration::from_nanos(u64::try_from(-ns).unwrap_or(u64::MAX))
    }
}

/// Control of one node's clock, from the supervisor or a fault plan.
#[derive(Clone, Copy, Debug)]
pub struct ClockControl {
    pub(crate) node: NodeId,
}

impl ClockControl {
    /// Sets the oscillator's drift in parts per million (clamped to ±[`DRIFT_MAX_PPM`]).
    pub fn set_drift_ppm(&self, ppm: i64) {
        let node = self.node;
        crate::world::with(|world| {
            let t = true_ns(world);
            world.node_mut(node).clock.set_drift(ppm, t);
            world.record(Some(node), Event::Clock(ClockEvent::Drift { ppm }));
        });
    }

    /// Sets the wall clock's offset from the oscillator's reading, in nanoseconds.
    pub fn set_offset_ns(&self, ns: i64) {
        let node = self.node;
        crate::world::with(|world| {
            world.node_mut(node).clock.wall_offset_ns = ns;
            world.record(Some(node), Event::Clock(ClockEvent::Offset { ns }));
        });
    }

    /// Steps the wall clock by `delta_ns` (negative: backwards). The monotonic clock is not
    /// affected.
    pub fn jump_ns(&self, delta_ns: i64) {
        let node = self.node;
        crate::world::with(|world| {
            let clock = &mut world.node_mut(node).clock;
            clock.wall_offset_ns = clock.wall_offset_ns.saturating_add(delta_ns);
            world.record(Some(node), Event::Clock(ClockEvent::Jump { delta_ns }));
        });
    }

    /// Puts drift and wall-clock offset back to what the node was built with (jumps are undone
    /// too). Records nothing when they are there already.
    pub fn reset(&self) {
        let node = self.node;
        let (configured, drift, offset) = crate::world::with(|world| {
            let clock = &world.node(node).clock;
            (clock.configured, clock.drift_ppm, clock.wall_offset_ns)
        });
        if drift != configured.drift_ppm {
            self.set_drift_ppm(configured.drift_ppm);
        }
        if offset != configured.offset_ns {
            self.set_offset_ns(configured.offset_ns);
        }
    }

    /// The node's current monotonic reading.
    pub fn now(&self) -> Instant {
        crate::world::with(|world| {
            let t = true_ns(world);
            Instant::from_nanos(world.node(self.node).clock.local_ns(t))
        })
    }

    /// The node's current wall clock reading.
    pub fn wall(&self) -> SystemTime {
        crate::world::with(|world| {
            let t = true_ns(world);
            system_time_from_ns(world.node(self.node).clock.wall_ns(t))
        })
    }

    /// The node's current drift in parts per million.
    pub fn drift_ppm(&self) -> i64 {
        crate::world::with(|world| world.node(self.node).clock.drift_ppm)
    }
}

/// Sleeps for `duration` on the current node's monotonic clock (at least 1 ms of true time).
pub fn sleep(duration: Duration) -> Sleep {
    let (node, deadline) = crate::world::with(|world| {
        let t = true_ns(world);
        let node = world.current_node();
        let local = match node {
            Some(id) => world.node(id).clock.local_ns(t),
            None => t,
        };
        (node, local.saturating_add(duration_ns(duration)))
    });
    Sleep::new(node, deadline)
}

/// Sleeps until the current node's monotonic clock reads `deadline`.
pub fn sleep_until(deadline: Instant) -> Sleep {
    let node = crate::world::with(|world| world.current_node());
    Sleep::new(node, deadline.as_nanos())
}

/// Future returned by [`sleep`] and [`sleep_until`].
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct Sleep {
    node: Option<NodeId>,
    deadline_local_ns: u64,
    id: u64,
    generation: u64,
    inner: Option<Pin<Box<madsim::time::Sleep>>>,
    registered: bool,
}

impl Sleep {
    fn new(node: Option<NodeId>, deadline_local_ns: u64) -> Self {
        let id = crate::world::with(|world| {
            world.next_sleep_id += 1;
            world.next_sleep_id
        });
        Sleep {
            node,
            deadline_local_ns,
            id,
            generation: 0,
            inner: None,
            registered: false,
        }
    }

    /// The deadline on the node's monotonic clock.
    pub fn deadline(&self) -> Instant {
        Instant::from_nanos(self.deadline_local_ns)
    }

    /// Whether the node's clock has reached the deadline.
    pub fn is_elapsed(&self) -> bool {
        self.clock_now() >= self.deadline()
    }

    /// Moves the deadline to `deadline` (earlier or later), also after the sleep completed.
    pub fn reset(self: Pin<&mut Self>, deadline: Instant) {
        let this = self.get_mut();
        this.deadline_local_ns = deadline.as_nanos();
        // The true-time sleep aims at the old deadline; the next poll aims again.
        this.inner = None;
    }

    /// The monotonic clock of the node the sleep belongs to (true time on the supervisor).
    fn clock_now(&self) -> Instant {
        crate::world::with(|world| {
            let t = true_ns(world);
            match self.node {
                Some(node) => Instant::from_nanos(world.node(node).clock.local_ns(t)),
                None => Instant::from_nanos(t),
            }
        })
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let this = &mut *self;
            // Where is the node's clock, and does the inner true-time sleep still aim right?
            let aim = crate::world::with(|world| {
                let t = true_ns(world);
                match this.node {
                    None => {
                        if t >= this.deadline_local_ns {
                            return None;
                        }
                        Some((this.deadline_local_ns - t, 0))
                    }
                    Some(node) => {
                        let clock = &mut world.node_mut(node).clock;
                        let local = clock.local_ns(t);
                        if local >= this.deadline_local_ns {
                            clock.sleepers.remove(&this.id);
                            return None;
                        }
                        clock.sleepers.insert(this.id, cx.waker().clone());
                        let span = clock.true_span_ns(this.deadline_local_ns - local);
                        Some((span, clock.generation))
                    }
                }
            });
            let Some((span_true_ns, generation)) = aim else {
                this.registered = false;
                let deadline_local_ns = this.deadline_local_ns;
                let node = this.node;
                crate::world::with(|world| world.record(node, Event::Timer { deadline_local_ns }));
                return Poll::Ready(());
            };
            this.registered = this.node.is_some();
            if this.inner.is_none() || generation != this.generation {
                this.generation = generation;
                let handle = crate::world::with(|world| world.time_handle().clone());
                let start = handle.now_instant();
                // One extra nanosecond absorbs the rounding of the local clock.
                let deadline = start + Duration::from_nanos(span_true_ns.saturating_add(1));
                this.inner = Some(Box::pin(handle.sleep_until(deadline)));
            }
            let inner = this.inner.as_mut().expect("set above");
            match inner.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                // The true-time sleep ended: loop to check the node's clock again.
                Poll::Ready(()) => this.inner = None,
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if self.registered {
            if let Some(node) = self.node {
                let id = self.id;
                crate::world::try_with(|world| {
                    if let Some(entry) = world.nodes.get_mut(node.0 as usize) {
                        entry.clock.sleepers.remove(&id);
                    }
                });
            }
        }
    }
}

/// Runs `future` until it completes or `duration` passes on the current node's clock.
pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<F> {
    Timeout::new(future, sleep(duration))
}

/// Runs `future` until it completes or the current node's clock reaches `deadline`.
pub fn timeout_at<F: Future>(deadline: Instant, future: F) -> Timeout<F> {
    Timeout::new(future, sleep_until(deadline))
}

/// Ticks every `period` on the current node's monotonic clock; the first tick completes at
/// once. As `tokio::time::interval`.
///
/// # Panics
/// If `period` is zero, as tokio's.
pub fn interval(period: Duration) -> Interval {
    assert!(!period.is_zero(), "interval: `period` must be non-zero");
    interval_at(now(), period)
}

/// Ticks every `period` on the current node's monotonic clock, the first tick at `start`. As
/// `tokio::time::interval_at`.
///
/// # Panics
/// If `period` is zero, as tokio's.
pub fn interval_at(start: Instant, period: Duration) -> Interval {
    assert!(!period.is_zero(), "interval_at: `period` must be non-zero");
    Interval {
        delay: sleep_until(start),
        period,
        missed_tick_behavior: MissedTickBehavior::default(),
    }
}

/// Ticks on a node's clock, from [`interval`] or [`interval_at`].
#[must_use = "an interval does nothing unless you call `tick`"]
pub struct Interval {
    /// Ends when the next tick is due; its deadline is that tick's.
    delay: Sleep,
    period: Duration,
    missed_tick_behavior: MissedTickBehavior,
}

impl Interval {
    /// Waits for the next tick; returns when it was due (not when it completed).
    ///
    /// Cancel-safe: a tick is used up only when this returns it.
    pub async fn tick(&mut self) -> Instant {
        std::future::poll_fn(|cx| self.poll_tick(cx)).await
    }

    /// Polls for the next tick; when ready, returns when it was due and aims at the one after.
    pub fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<Instant> {
        if Pin::new(&mut self.delay).poll(cx).is_pending() {
            return Poll::Pending;
        }
        let due = self.delay.deadline();
        let now = self.delay.clock_now();
        let next = if now > due + MISSED_TICK_TOLERANCE {
            (self.missed_tick_behavior).next_due(due, now, self.period)
        } else {
            due + self.period
        };
        Pin::new(&mut self.delay).reset(next);
        Poll::Ready(due)
    }

    /// The next tick comes one period from now.
    pub fn reset(&mut self) {
        let next = self.delay.clock_now() + self.period;
        Pin::new(&mut self.delay).reset(next);
    }

    /// The next tick comes now.
    pub fn reset_immediately(&mut self) {
        let next = self.delay.clock_now();
        Pin::new(&mut self.delay).reset(next);
    }

    /// The next tick comes `after` from now.
    pub fn reset_after(&mut self, after: Duration) {
        let next = self.delay.clock_now() + after;
        Pin::new(&mut self.delay).reset(next);
    }

    /// The next tick comes at `deadline`.
    pub fn reset_at(&mut self, deadline: Instant) {
        Pin::new(&mut self.delay).reset(deadline);
    }

    /// The time between ticks.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// What the interval does when it falls behind.
    pub fn missed_tick_behavior(&self) -> MissedTickBehavior {
        self.missed_tick_behavior
    }

    /// Sets what the interval does when it falls behind.
    pub fn set_missed_tick_behavior(&mut self, behavior: MissedTickBehavior) {
        self.missed_tick_behavior = behavior;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_scales_local_time_and_true_span_inverts_it() {
        let mut clock = ClockState::new(ClockConfig::default(), 0);
        clock.set_drift(100_000, 0);
        assert_eq!(clock.local_ns(1_000_000_000), 1_100_000_000);
        let span = clock.true_span_ns(1_100_000_000);
        assert!(clock.local_ns(span) >= 1_100_000_000);
        assert!(span <= 1_000_000_001);
    }

    #[test]
    fn drift_change_keeps_the_clock_continuous() {
        let mut clock = ClockState::new(ClockConfig::default(), 0);
        clock.set_drift(200_000, 0);
        let before = clock.local_ns(500);
        clock.set_drift(-200_000, 500);
        assert_eq!(clock.local_ns(500), before);
        assert!(clock.local_ns(600) > before);
    }
}
