//! The breaker's state machine.

use std::time::{Duration, SystemTime};

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use super::config::{jitter_draw, Backoff, Config, ConfigError, OpenWait, Window, BACKOFF_PPM};
use super::event::{Event, EventKind, EventQueue, Metrics, TransitionReason};
use super::mutant::Mutant;
use super::permit::{
    CallClass, Completion, Outcome, Permit, PermitId, PermitKind, RejectReason, Rejected, State,
    TransitionError,
};
use super::time::Now;
use super::window::{Exceeded, SlidingWindow};

/// When the current opening ends.
#[derive(Clone, Copy, Debug)]
struct OpenDeadline {
    /// Monotonic end of the wait: what decides, and what `poll_timeout` reports.
    until: Duration,
    /// Wall-clock end of the wait: what decides under the `open_wait_wall_clock` mutant.
    until_wall: SystemTime,
}

/// A sans-IO circuit breaker: see the [module documentation](super) for its contract.
#[derive(Clone, Debug)]
pub struct CircuitBreaker {
    config: Config,
    state: State,
    epoch: u64,
    /// The latest reading seen; its monotonic part never goes backwards.
    now: Now,
    permit_next: u64,
    /// Live in closed and metrics-only, frozen in open, the probes' window in half-open.
    window: SlidingWindow,
    /// Half-open: probe slots taken (in flight or recorded).
    probe_slots_used: u32,
    /// Half-open: when it was entered.
    half_open_since: Duration,
    open_deadline: OpenDeadline,
    /// Consecutive openings since the breaker was last closed: the backoff exponent.
    openings: u32,
    /// Metrics-only: which rates were above threshold at the last record, so that the
    /// rate-exceeded events fire on crossing rather than on every call.
    exceeded_reported: Exceeded,
    jitter: Xoshiro256PlusPlus,
    events: EventQueue,
}

impl CircuitBreaker {
    /// A closed breaker at epoch 0, whose windows start at `now`.
    pub fn new(config: Config, now: Now) -> Result<Self, ConfigError> {
        config.validate()?;
        let window = SlidingWindow::new(
            config.window,
            config.calls_min_effective(),
            now.monotonic,
            !config.has_mutant(Mutant::BucketNotReset),
        );
        Ok(CircuitBreaker {
            state: State::Closed,
            epoch: 0,
            now,
            permit_next: 0,
            window,
            probe_slots_used: 0,
            half_open_since: now.monotonic,
            open_deadline: OpenDeadline {
                until: now.monotonic,
                until_wall: now.wall,
            },
            openings: 0,
            exceeded_reported: Exceeded::default(),
            jitter: Xoshiro256PlusPlus::seed_from_u64(config.jitter_seed),
            events: EventQueue::new(config.event_queue_capacity),
            config,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The current epoch: 0 at creation, plus one per transition.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// A snapshot of the current window as of the latest input.
    pub fn metrics(&self) -> Metrics {
        let totals = self.window.totals();
        Metrics {
            state: self.state,
            epoch: self.epoch,
            buffered_calls: totals.calls,
            failed_calls: totals.failed,
            slow_calls: totals.slow,
            slow_failed_calls: totals.slow_failed,
            not_permitted_calls: self.window.not_permitted(),
            calls_min: self.window.calls_min(),
            probe_slots_used: self.probe_slots_used,
        }
    }

    /// Asks to make one call at `now`.
    ///
    /// Open moves to half-open here once its wait has ended (the lazy transition), whether or
    /// not automatic transitions are on.
    pub fn try_acquire(&mut self, now: Now) -> Result<Permit, Rejected> {
        self.observe(now);
        if self.state == State::Open && self.open_wait_elapsed() {
            self.transition(State::HalfOpen, TransitionReason::OpenWaitElapsed);
        }
        match self.state {
            State::Closed | State::MetricsOnly | State::Disabled => {
                Ok(self.admit(PermitKind::Normal))
            }
            State::HalfOpen => {
                let unbounded = self.config.has_mutant(Mutant::HalfOpenUnbounded);
                if self.probe_slots_used < self.config.half_open_probes_max || unbounded {
                    self.probe_slots_used += 1;
                    Ok(self.admit(PermitKind::Probe))
                } else {
                    Err(self.reject(RejectReason::HalfOpenFull, None))
                }
            }
            State::Open => {
                let retry_after = self.open_wait_left();
                Err(self.reject(RejectReason::Open, Some(retry_after)))
            }
            State::ForcedOpen => Err(self.reject(RejectReason::ForcedOpen, None)),
        }
    }

    /// Completes `permit` with the call's `outcome`, reported at `now`; the call's duration
    /// runs from the permit's admission to `now`.
    ///
    /// An outcome from an older epoch is stale: it is reported as an event but neither
    /// recorded nor allowed to decide anything.
    pub fn on_result(&mut self, permit: Permit, outcome: Outcome, now: Now) -> Completion {
        self.observe(now);
        let duration = self.now.monotonic.saturating_sub(permit.admitted_at);
        if self.is_stale(&permit, outcome) {
            return self.on_stale(&permit, outcome);
        }
        let threshold = self.config.slow_call_duration_threshold;
        let class = CallClass::classify(self.recorded_as(outcome), duration, threshold);
        match (self.state, class) {
            (State::Disabled, _) => Completion::Unrecorded,
            (_, None) => {
                // The mutant: like resilience4j#544, the ignored probe keeps its slot.
                // Only a probe of this epoch holds a slot (a stale one gets here only under
                // `ignored_probe_skips_epoch_check`).
                let current = permit.epoch == self.epoch;
                if current && !self.config.has_mutant(Mutant::IgnoredProbeKeepsSlot) {
                    self.give_back_probe_slot();
                }
                self.publish(EventKind::Ignored {
                    permit: permit.id,
                    duration,
                });
                Completion::Ignored
            }
            (State::Closed | State::MetricsOnly | State::HalfOpen, Some(class)) => {
                self.publish(recorded_event(permit.id, class, duration));
                self.window.record(self.now.monotonic, class);
                self.evaluate();
                Completion::Recorded(class)
            }
            (State::Open | State::ForcedOpen, Some(_)) => {
                unreachable!("open states admit no call, so no permit has their epoch")
            }
        }
    }

    /// Gives `permit` back without an outcome (the call was cancelled or its result lost).
    /// A half-open probe of the current epoch frees its slot.
    pub fn release(&mut self, permit: Permit, now: Now) {
        self.observe(now);
        if permit.epoch == self.epoch {
            self.give_back_probe_slot();
        } else if permit.kind == PermitKind::Probe
            && self.config.has_mutant(Mutant::StaleReleaseFreesSlot)
        {
            // The mutant: like failsafe#391, a released probe frees a half-open slot, whatever
            // epoch it was admitted in.
            self.give_back_stale_slot();
        }
        if permit.published {
            self.push(EventKind::Released {
                permit: permit.id,
                permit_epoch: permit.epoch,
            });
        }
    }

    /// Processes the deadlines due at `now` (see [`poll_timeout`](Self::poll_timeout)).
    pub fn handle_timeout(&mut self, now: Now) {
        self.observe(now);
        if self.state == State::Open && self.config.auto_half_open && !self.open_wait_elapsed() {
            // Only the wall-clock mutant gets here at its deadline: re-estimate the monotonic
            // deadline from the wall time left, so the driver does not spin.
            let left = self.open_wait_left();
            self.open_deadline.until = self.now.monotonic.saturating_add(left);
        }
    }

    /// The next monotonic deadline at which [`handle_timeout`](Self::handle_timeout) has work:
    /// the end of the open wait when automatic transitions are on, or the end of the maximum
    /// wait in half-open.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Duration> {
        match self.state {
            State::Open if self.config.auto_half_open => Some(self.open_deadline.until),
            State::HalfOpen if !self.config.has_mutant(Mutant::HalfOpenStuck) => self
                .config
                .half_open_wait_max
                .map(|wait| self.half_open_since.saturating_add(wait)),
            _ => None,
        }
    }

    /// The oldest event not yet polled.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop()
    }

    /// Events lost because the queue was full.
    pub fn events_dropped(&self) -> u64 {
        self.events.dropped()
    }

    /// Opens the breaker by hand (a counted opening: it waits `open_wait` as usual).
    pub fn trip(&mut self, now: Now) -> Result<(), TransitionError> {
        self.transition_to(State::Open, now)
    }

    /// Closes the breaker by hand with a fresh window, from any state (closed included).
    pub fn reset(&mut self, now: Now) {
        self.observe(now);
        self.transition(State::Closed, TransitionReason::Reset);
    }

    /// Moves to `target` by hand. Refused if the breaker is already there.
    pub fn transition_to(&mut self, target: State, now: Now) -> Result<(), TransitionError> {
        self.observe(now);
        if target == self.state {
            return Err(TransitionError::AlreadyInState(target));
        }
        self.transition(target, TransitionReason::Manual);
        Ok(())
    }

    /// Takes in a new reading, fires the deadlines it passes, and moves the live window to it.
    fn observe(&mut self, now: Now) {
        // A reading older than one already seen (two tasks that read the clock and then call
        // in the other order) must not move anything backwards.
        self.now.monotonic = self.now.monotonic.max(now.monotonic);
        self.now.wall = now.wall;
        match self.state {
            State::Open if self.config.auto_half_open && self.open_wait_elapsed() => {
                self.transition(State::HalfOpen, TransitionReason::OpenWaitElapsed);
            }
            State::HalfOpen if self.half_open_wait_elapsed() => {
                self.transition(State::Open, TransitionReason::HalfOpenWaitMaxElapsed);
            }
            State::Closed | State::MetricsOnly => self.window.advance(self.now.monotonic),
            _ => {}
        }
    }

    fn half_open_wait_elapsed(&self) -> bool {
        if self.config.has_mutant(Mutant::HalfOpenStuck) {
            return false;
        }
        self.config
            .half_open_wait_max
            .is_some_and(|wait| self.now.monotonic >= self.half_open_since.saturating_add(wait))
    }

    fn open_wait_elapsed(&self) -> bool {
        if self.config.has_mutant(Mutant::OpenWaitWallClock) {
            return self.now.wall >= self.open_deadline.until_wall;
        }
        self.now.monotonic >= self.open_deadline.until
    }

    fn open_wait_left(&self) -> Duration {
        if self.config.has_mutant(Mutant::OpenWaitWallClock) {
            let until = self.open_deadline.until_wall;
            return until.duration_since(self.now.wall).unwrap_or_default();
        }
        self.open_deadline.until.saturating_sub(self.now.monotonic)
    }

    fn admit(&mut self, kind: PermitKind) -> Permit {
        let permit = Permit {
            id: PermitId(self.permit_next),
            epoch: self.epoch,
            kind,
            admitted_at: self.now.monotonic,
            published: self.state.publishes_events(),
        };
        self.permit_next += 1;
        self.publish(EventKind::Admitted {
            permit: permit.id,
            kind,
        });
        permit
    }

    fn reject(&mut self, reason: RejectReason, retry_after: Option<Duration>) -> Rejected {
        if self.state.publishes_events() {
            self.window.count_not_permitted();
            self.push(EventKind::Rejected { reason });
        }
        Rejected {
            state: self.state,
            epoch: self.epoch,
            reason,
            retry_after,
        }
    }

    /// The outcome recorded for `outcome`: itself, except under the `ignored_probe_fails`
    /// mutant, which (like Polly#311) counts an ignored outcome in half-open as a failure.
    fn recorded_as(&self, outcome: Outcome) -> Outcome {
        let fails = self.config.has_mutant(Mutant::IgnoredProbeFails)
            && self.state == State::HalfOpen
            && outcome == Outcome::Ignored;
        if fails {
            Outcome::Failure
        } else {
            outcome
        }
    }

    /// Whether the outcome of `permit` is stale: its epoch is over. Under the
    /// `ignored_probe_skips_epoch_check` mutant, a probe's ignored outcome never is: the
    /// ignored path returns before the epoch is looked at.
    fn is_stale(&self, permit: &Permit, outcome: Outcome) -> bool {
        let unchecked = permit.kind == PermitKind::Probe
            && outcome == Outcome::Ignored
            && self.config.has_mutant(Mutant::IgnoredProbeSkipsEpochCheck);
        permit.epoch != self.epoch && !unchecked
    }

    fn give_back_probe_slot(&mut self) {
        if self.state == State::HalfOpen && !self.config.has_mutant(Mutant::HalfOpenStuck) {
            // Under `stale_release_frees_slot` a stale probe may have taken this one's slot.
            assert!(
                self.probe_slots_used > 0 || self.config.has_mutant(Mutant::StaleReleaseFreesSlot),
                "a probe of this epoch holds a slot"
            );
            self.probe_slots_used = self.probe_slots_used.saturating_sub(1);
        }
    }

    /// Under `stale_release_frees_slot`: a probe of an older epoch frees a slot of half-open's
    /// current epoch, if one is taken.
    fn give_back_stale_slot(&mut self) {
        if self.state == State::HalfOpen && self.probe_slots_used > 0 {
            self.probe_slots_used -= 1;
        }
    }

    fn on_stale(&mut self, permit: &Permit, outcome: Outcome) -> Completion {
        if permit.published {
            self.push(EventKind::StaleOutcome {
                permit: permit.id,
                permit_epoch: permit.epoch,
                outcome,
            });
        }
        let closes = self.config.has_mutant(Mutant::StaleEpochCloses)
            && self.state == State::HalfOpen
            && outcome == Outcome::Success;
        if closes {
            // The mutant: like Polly#217, any success seen in half-open closes the breaker.
            self.transition(State::Closed, TransitionReason::ProbesPassed);
        }
        Completion::Stale {
            permit_epoch: permit.epoch,
        }
    }

    /// Decides on the window after a record.
    fn evaluate(&mut self) {
        let exceeded = self.window.exceeded(
            self.config.failure_rate_threshold_percent,
            self.config.slow_call_rate_threshold_percent,
        );
        match self.state {
            State::Closed if exceeded.any() => self.trip_on(exceeded),
            State::HalfOpen => {
                let probes = u64::from(self.config.half_open_probes_max);
                if exceeded.any() {
                    self.trip_on(exceeded);
                } else if self.window.totals().calls >= probes {
                    self.transition(State::Closed, TransitionReason::ProbesPassed);
                }
            }
            State::MetricsOnly => {
                let fresh = Exceeded {
                    failure_rate: exceeded.failure_rate && !self.exceeded_reported.failure_rate,
                    slow_call_rate: exceeded.slow_call_rate
                        && !self.exceeded_reported.slow_call_rate,
                };
                self.publish_exceeded(fresh);
                self.exceeded_reported = exceeded;
            }
            _ => {}
        }
    }

    fn trip_on(&mut self, exceeded: Exceeded) {
        self.publish_exceeded(exceeded);
        let reason = TransitionReason::RatesExceeded {
            failure_rate: exceeded.failure_rate,
            slow_call_rate: exceeded.slow_call_rate,
        };
        self.transition(State::Open, reason);
    }

    fn publish_exceeded(&mut self, exceeded: Exceeded) {
        let totals = self.window.totals();
        if exceeded.failure_rate {
            self.publish(EventKind::FailureRateExceeded {
                failed_calls: totals.failed,
                buffered_calls: totals.calls,
                threshold_percent: self.config.failure_rate_threshold_percent,
            });
        }
        if exceeded.slow_call_rate {
            self.publish(EventKind::SlowCallRateExceeded {
                slow_calls: totals.slow,
                buffered_calls: totals.calls,
                threshold_percent: self.config.slow_call_rate_threshold_percent,
            });
        }
    }

    /// Moves to `to`, starting a new epoch. Every state but open starts a fresh window; open
    /// keeps the one that led to it.
    fn transition(&mut self, to: State, reason: TransitionReason) {
        let from = self.state;
        self.state = to;
        self.epoch += 1;
        self.probe_slots_used = 0;
        self.exceeded_reported = Exceeded::default();
        let now = self.now.monotonic;
        let reset_on_evict = !self.config.has_mutant(Mutant::BucketNotReset);
        match to {
            State::Open => self.start_open_wait(),
            State::HalfOpen => {
                self.half_open_since = now;
                let probes = self.config.half_open_probes_max;
                let window = Window::Count { size: probes };
                self.window = SlidingWindow::new(window, probes, now, reset_on_evict);
            }
            State::Closed | State::MetricsOnly | State::Disabled | State::ForcedOpen => {
                self.openings = 0;
                let calls_min = self.config.calls_min_effective();
                self.window =
                    SlidingWindow::new(self.config.window, calls_min, now, reset_on_evict);
            }
        }
        self.push(EventKind::Transition { from, to, reason });
    }

    fn start_open_wait(&mut self) {
        let draw = if self.config.open_wait.draws_jitter() {
            jitter_draw(&mut self.jitter)
        } else {
            0
        };
        let wait = match &self.config.open_wait {
            OpenWait::Backoff(backoff) if self.config.has_mutant(Mutant::BackoffOverflows) => {
                overflowing_wait(backoff, self.openings, draw)
            }
            open_wait => open_wait.wait(self.openings, draw),
        };
        self.openings = self.openings.saturating_add(1);
        self.open_deadline = OpenDeadline {
            until: self.now.monotonic.saturating_add(wait),
            until_wall: self.now.wall.checked_add(wait).unwrap_or(self.now.wall),
        };
    }

    /// Pushes an event if the current state publishes events.
    fn publish(&mut self, kind: EventKind) {
        if self.state.publishes_events() {
            self.push(kind);
        }
    }

    fn push(&mut self, kind: EventKind) {
        self.events.push(Event {
            at: self.now,
            epoch: self.epoch,
            kind,
        });
    }
}

/// The open wait under the `backoff_overflows` mutant: `initial x multiplier^openings` in
/// signed 64-bit nanoseconds, with the multiplier kept in tenths so that the arithmetic stays
/// in integers (`initial x tenths^k / 10^k`), and the cap applied only at the end. A long run
/// of openings overflows the product, often to a negative wait, which then ends at once.
/// Until it overflows it equals [`OpenWait::wait`] for the generated multipliers (whole
/// tenths).
fn overflowing_wait(backoff: &Backoff, openings: u32, draw: u32) -> Duration {
    let tenths = (backoff.multiplier * 10.0).round() as i64;
    let initial = i64::try_from(backoff.initial.as_nanos()).unwrap_or(i64::MAX);
    let max = i64::try_from(backoff.max.as_nanos()).unwrap_or(i64::MAX);
    let grown = initial.wrapping_mul(tenths.wrapping_pow(openings));
    let base = grown / 10i64.wrapping_pow(openings).max(1);
    // Clamped below by zero the way a timer treats a negative delay: it fires at once.
    let base = u128::try_from(base.min(max)).unwrap_or(0);
    let (ppm, jitter) = (u128::from(BACKOFF_PPM), u128::from(backoff.jitter_ppm()));
    let scaled = base * ((ppm - jitter) << 32) + base * 2 * jitter * u128::from(draw);
    let wait = (scaled / (ppm << 32))
        .min(u128::from(max.unsigned_abs()))
        .max(1);
    Duration::from_nanos(u64::try_from(wait).unwrap_or(u64::MAX))
}

fn recorded_event(permit: PermitId, class: CallClass, duration: Duration) -> EventKind {
    match class {
        CallClass::Success => EventKind::Success { permit, duration },
        CallClass::Failure => EventKind::Failure { permit, duration },
        CallClass::SlowSuccess | CallClass::SlowFailure => EventKind::Slow {
            permit,
            duration,
            failed: class.is_failure(),
        },
    }
}
