//! An independent reference model of the breaker, for checking it step by step.
//!
//! The oracle is written to be obviously right rather than fast: its window is the list of
//! recorded calls itself (no running totals, no buckets), rates are recounted from that list
//! at every decision, and it reads only the monotonic clock. Feed it the same inputs as the
//! breaker (acquire attempts, outcomes and releases by permit id, timeouts, manual
//! transitions, each with the monotonic `now`) and compare what it returns with what the
//! breaker did:
//!
//! * [`Oracle::acquire`] returns the expected admission (permit id, epoch, kind) or refusal
//!   (reason, time left open);
//! * [`Oracle::complete`] and [`Oracle::release`] return the expected [`Completion`], or an
//!   [`OracleError`] if the permit was never issued or was already completed (a permit
//!   completed twice);
//! * [`Oracle::last_transitions`] lists the transitions the latest input caused, to compare
//!   with the breaker's `Transition` events;
//! * [`Oracle::state`], [`Oracle::epoch`], [`Oracle::metrics`] and [`Oracle::deadline`] give
//!   the expected state, window counts and next deadline after each input.
//!
//! [`is_legal_transition`] is the transition relation on its own, for trace checkers.
//!
//! Feed it *every* input, including the calls made while the breaker is disabled or forced
//! open: those states publish no events, but their permits still take ids, so a checker that
//! rebuilds the inputs from the breaker's events alone must also record the driver's own
//! acquire attempts.
//!
//! Policy pinned down here (CB-S7 leaves it open): an outcome from an older epoch is never
//! recorded, in any state.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use thiserror::Error;

use super::config::{Config, ConfigError, OpenWait, Window};
use super::event::{Metrics, TransitionReason};
use super::permit::{
    CallClass, Completion, Outcome, PermitId, PermitKind, RejectReason, State, TransitionError,
};

/// Whether `from → to` for `reason` is a transition the breaker may make.
///
/// Automatic edges are closed → open and half-open → open on rates, open → half-open when the
/// wait ends, half-open → closed when the probes pass, half-open → open when half-open lasted
/// its maximum wait. Manual transitions go between any two different states, and a reset goes
/// to closed from anywhere (closed included).
pub fn is_legal_transition(from: State, to: State, reason: TransitionReason) -> bool {
    use State::{Closed, HalfOpen, Open};
    match reason {
        TransitionReason::RatesExceeded {
            failure_rate,
            slow_call_rate,
        } => (failure_rate || slow_call_rate) && matches!((from, to), (Closed | HalfOpen, Open)),
        TransitionReason::OpenWaitElapsed => (from, to) == (Open, HalfOpen),
        TransitionReason::ProbesPassed => (from, to) == (HalfOpen, Closed),
        TransitionReason::HalfOpenWaitMaxElapsed => (from, to) == (HalfOpen, Open),
        TransitionReason::Manual => from != to,
        TransitionReason::Reset => to == Closed,
    }
}

/// An expected admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    /// The id the permit must carry.
    pub permit: PermitId,
    /// The epoch it must carry.
    pub epoch: u64,
    /// Normal call or probe.
    pub kind: PermitKind,
}

/// An expected refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Why.
    pub reason: RejectReason,
    /// When open: the wait left.
    pub retry_after: Option<Duration>,
}

/// An expected transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransitionRecord {
    /// Monotonic time of the transition.
    pub at: Duration,
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
    /// The epoch entered.
    pub epoch: u64,
    /// Why.
    pub reason: TransitionReason,
}

/// A permit the oracle cannot complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum OracleError {
    /// No permit with this id was ever issued.
    #[error("permit {0} was never issued")]
    UnknownPermit(PermitId),
    /// The permit was already completed or released.
    #[error("permit {0} was already completed or released")]
    AlreadyCompleted(PermitId),
}

#[derive(Clone, Copy, Debug)]
struct Issued {
    epoch: u64,
    admitted_at: Duration,
}

/// The reference model; see the [module documentation](self).
#[derive(Clone, Debug)]
pub struct Oracle {
    config: Config,
    state: State,
    epoch: u64,
    now: Duration,
    permit_next: u64,
    outstanding: BTreeMap<PermitId, Issued>,
    /// The calls of the current window, oldest first, with the second they were recorded in.
    records: VecDeque<(u64, CallClass)>,
    /// The current window's shape: the configured one, or the probes' count window.
    window: Window,
    calls_min: u64,
    /// Time-window membership is judged at this time (frozen while open).
    window_now: Duration,
    not_permitted: u64,
    probes_taken: u32,
    half_open_since: Duration,
    open_until: Duration,
    open_waits: OpenWaits,
    transitions: Vec<TransitionRecord>,
}

impl Oracle {
    /// A closed model at epoch 0 and time `now`, for a breaker built with `config`.
    pub fn new(config: &Config, now: Duration) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Oracle {
            state: State::Closed,
            epoch: 0,
            now,
            permit_next: 0,
            outstanding: BTreeMap::new(),
            records: VecDeque::new(),
            window: config.window,
            calls_min: u64::from(calls_min_closed(config)),
            window_now: now,
            not_permitted: 0,
            probes_taken: 0,
            half_open_since: now,
            open_until: now,
            open_waits: OpenWaits::new(config),
            transitions: Vec::new(),
            config: config.clone(),
        })
    }

    /// The expected answer to a call attempt at `now`.
    pub fn acquire(&mut self, now: Duration) -> Result<Admission, Refusal> {
        self.begin(now);
        if self.state == State::Open && self.now >= self.open_until {
            self.go(State::HalfOpen, TransitionReason::OpenWaitElapsed);
        }
        match self.state {
            State::Closed | State::MetricsOnly | State::Disabled => {
                Ok(self.issue(PermitKind::Normal))
            }
            State::HalfOpen if self.probes_taken < self.config.half_open_probes_max => {
                self.probes_taken += 1;
                Ok(self.issue(PermitKind::Probe))
            }
            State::HalfOpen => Err(self.refuse(RejectReason::HalfOpenFull, None)),
            State::Open => {
                let left = self.open_until - self.now;
                Err(self.refuse(RejectReason::Open, Some(left)))
            }
            State::ForcedOpen => Err(Refusal {
                reason: RejectReason::ForcedOpen,
                retry_after: None,
            }),
        }
    }

    /// The expected handling of `permit`'s `outcome` reported at `now`.
    pub fn complete(
        &mut self,
        permit: PermitId,
        outcome: Outcome,
        now: Duration,
    ) -> Result<Completion, OracleError> {
        let issued = self.take(permit)?;
        self.begin(now);
        if issued.epoch != self.epoch {
            return Ok(Completion::Stale {
                permit_epoch: issued.epoch,
            });
        }
        if self.state == State::Disabled {
            return Ok(Completion::Unrecorded);
        }
        let slow = self.now - issued.admitted_at > self.config.slow_call_duration_threshold;
        let class = match (outcome, slow) {
            (Outcome::Ignored, _) => {
                self.give_back_probe();
                return Ok(Completion::Ignored);
            }
            (Outcome::Success, false) => CallClass::Success,
            (Outcome::Success, true) => CallClass::SlowSuccess,
            (Outcome::Failure, false) => CallClass::Failure,
            (Outcome::Failure, true) => CallClass::SlowFailure,
        };
        self.records.push_back((self.now.as_secs(), class));
        if let Window::Count { size } = self.window {
            while self.records.len() > size as usize {
                self.records.pop_front();
            }
        }
        self.decide();
        Ok(Completion::Recorded(class))
    }

    /// The expected handling of `permit` given back without an outcome at `now`.
    pub fn release(&mut self, permit: PermitId, now: Duration) -> Result<(), OracleError> {
        let issued = self.take(permit)?;
        self.begin(now);
        if issued.epoch == self.epoch {
            self.give_back_probe();
        }
        Ok(())
    }

    /// The expected handling of a timeout at `now`.
    pub fn timeout(&mut self, now: Duration) {
        self.begin(now);
    }

    /// The expected handling of a manual transition to `target` at `now`.
    pub fn transition_to(&mut self, target: State, now: Duration) -> Result<(), TransitionError> {
        self.begin(now);
        if target == self.state {
            return Err(TransitionError::AlreadyInState(target));
        }
        self.go(target, TransitionReason::Manual);
        Ok(())
    }

    /// The expected handling of a manual reset at `now`.
    pub fn reset(&mut self, now: Duration) {
        self.begin(now);
        self.go(State::Closed, TransitionReason::Reset);
    }

    /// The expected state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The expected epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The transitions caused by the latest input, in order.
    pub fn last_transitions(&self) -> &[TransitionRecord] {
        &self.transitions
    }

    /// Permits issued and not yet completed or released.
    pub fn outstanding(&self) -> impl Iterator<Item = PermitId> + '_ {
        self.outstanding.keys().copied()
    }

    /// The expected next deadline.
    pub fn deadline(&self) -> Option<Duration> {
        match self.state {
            State::Open if self.config.auto_half_open => Some(self.open_until),
            State::HalfOpen => self
                .config
                .half_open_wait_max
                .map(|wait| self.half_open_since + wait),
            _ => None,
        }
    }

    /// The expected metrics, recounted from the window's calls.
    pub fn metrics(&self) -> Metrics {
        let members: Vec<CallClass> = self.members().collect();
        let count =
            |keep: fn(&CallClass) -> bool| members.iter().filter(|c| keep(c)).count() as u64;
        Metrics {
            state: self.state,
            epoch: self.epoch,
            buffered_calls: members.len() as u64,
            failed_calls: count(|c| matches!(c, CallClass::Failure | CallClass::SlowFailure)),
            slow_calls: count(|c| matches!(c, CallClass::SlowSuccess | CallClass::SlowFailure)),
            slow_failed_calls: count(|c| matches!(c, CallClass::SlowFailure)),
            not_permitted_calls: self.not_permitted,
            calls_min: self.calls_min,
            probe_slots_used: self.probes_taken,
        }
    }

    /// The calls currently in the window.
    fn members(&self) -> impl Iterator<Item = CallClass> + '_ {
        let now_second = self.window_now.as_secs();
        let window = self.window;
        self.records
            .iter()
            .filter(move |(second, _)| match window {
                Window::Count { .. } => true,
                Window::Time { seconds } => second + u64::from(seconds) > now_second,
            })
            .map(|(_, class)| *class)
    }

    fn begin(&mut self, now: Duration) {
        self.transitions.clear();
        self.now = self.now.max(now);
        match self.state {
            State::Open if self.config.auto_half_open && self.now >= self.open_until => {
                self.go(State::HalfOpen, TransitionReason::OpenWaitElapsed);
            }
            State::HalfOpen => {
                let max = self.config.half_open_wait_max;
                if max.is_some_and(|wait| self.now >= self.half_open_since + wait) {
                    self.go(State::Open, TransitionReason::HalfOpenWaitMaxElapsed);
                }
            }
            State::Closed | State::MetricsOnly => {
                self.window_now = self.now;
                self.forget_expired();
            }
            _ => {}
        }
    }

    /// Drops the calls a time window no longer holds, so the list stays bounded.
    fn forget_expired(&mut self) {
        let Window::Time { seconds } = self.window else {
            return;
        };
        let now_second = self.window_now.as_secs();
        while let Some(&(second, _)) = self.records.front() {
            if second + u64::from(seconds) > now_second {
                break;
            }
            self.records.pop_front();
        }
    }

    fn take(&mut self, permit: PermitId) -> Result<Issued, OracleError> {
        if permit.0 >= self.permit_next {
            return Err(OracleError::UnknownPermit(permit));
        }
        self.outstanding
            .remove(&permit)
            .ok_or(OracleError::AlreadyCompleted(permit))
    }

    fn issue(&mut self, kind: PermitKind) -> Admission {
        let permit = PermitId(self.permit_next);
        self.permit_next += 1;
        let issued = Issued {
            epoch: self.epoch,
            admitted_at: self.now,
        };
        self.outstanding.insert(permit, issued);
        Admission {
            permit,
            epoch: self.epoch,
            kind,
        }
    }

    fn refuse(&mut self, reason: RejectReason, retry_after: Option<Duration>) -> Refusal {
        self.not_permitted += 1;
        Refusal {
            reason,
            retry_after,
        }
    }

    fn give_back_probe(&mut self) {
        if self.state == State::HalfOpen {
            self.probes_taken -= 1;
        }
    }

    fn decide(&mut self) {
        let metrics = self.metrics();
        let calls = metrics.buffered_calls;
        let reaches = |part: u64, percent: u8| {
            calls >= self.calls_min
                && u128::from(part) * 100 >= u128::from(percent) * u128::from(calls)
        };
        let failure_rate = reaches(
            metrics.failed_calls,
            self.config.failure_rate_threshold_percent,
        );
        let slow_call_rate = reaches(
            metrics.slow_calls,
            self.config.slow_call_rate_threshold_percent,
        );
        let tripped = TransitionReason::RatesExceeded {
            failure_rate,
            slow_call_rate,
        };
        let probes = u64::from(self.config.half_open_probes_max);
        match self.state {
            State::Closed | State::HalfOpen if failure_rate || slow_call_rate => {
                self.go(State::Open, tripped);
            }
            State::HalfOpen if calls >= probes => {
                self.go(State::Closed, TransitionReason::ProbesPassed)
            }
            _ => {}
        }
    }

    fn go(&mut self, to: State, reason: TransitionReason) {
        let from = self.state;
        self.state = to;
        self.epoch += 1;
        self.probes_taken = 0;
        self.transitions.push(TransitionRecord {
            at: self.now,
            from,
            to,
            epoch: self.epoch,
            reason,
        });
        if to == State::Open {
            // Open keeps the window (and its rejection count) that led to it.
            self.open_until = self.now + self.open_waits.next_wait();
            return;
        }
        self.records.clear();
        self.not_permitted = 0;
        self.window_now = self.now;
        if to == State::HalfOpen {
            self.half_open_since = self.now;
            self.window = Window::Count {
                size: self.config.half_open_probes_max,
            };
            self.calls_min = u64::from(self.config.half_open_probes_max);
        } else {
            self.open_waits.reset();
            self.window = self.config.window;
            self.calls_min = u64::from(calls_min_closed(&self.config));
        }
    }
}

/// The closed window's minimum number of calls, capped by the size of a count window: the
/// checkers' one rule (the breaker has its own, `Config::calls_min_effective`).
pub fn calls_min_closed(config: &Config) -> u32 {
    match config.window {
        Window::Count { size } => config.calls_min.min(size),
        Window::Time { .. } => config.calls_min,
    }
}

/// The waits of consecutive openings, by the oracle's own arithmetic (not the breaker's
/// `OpenWait::wait`): the first wait since closed is `initial`, each next one the previous
/// times the multiplier (in parts per million, rounded down), both capped at `max`; the jitter
/// scales it by `1 - j + 2 j u`, with `u` the top 32 bits of one draw over 2^32, rounded down
/// and capped at `max` again. Checkers use it on their own, fed by the breaker's transitions.
#[derive(Clone, Debug)]
pub struct OpenWaits {
    open_wait: OpenWait,
    /// The un-jittered wait of the latest opening since the last reset, in ns.
    base: Option<u128>,
    jitter: Xoshiro256PlusPlus,
}

impl OpenWaits {
    /// The waits of a breaker built with `config`, before its first opening.
    pub fn new(config: &Config) -> Self {
        OpenWaits {
            open_wait: config.open_wait,
            base: None,
            jitter: Xoshiro256PlusPlus::seed_from_u64(config.jitter_seed),
        }
    }

    /// The wait of the next opening (one jitter draw, if the backoff jitters).
    pub fn next_wait(&mut self) -> Duration {
        let backoff = match self.open_wait {
            OpenWait::Fixed(wait) => return wait,
            OpenWait::Backoff(backoff) => backoff,
        };
        const PPM: u128 = 1_000_000;
        let nanos = |d: Duration| d.as_nanos().min(u128::from(u64::MAX));
        let max = nanos(backoff.max);
        let multiplier = (backoff.multiplier * 1e6).round() as u128;
        let base = match self.base {
            None => nanos(backoff.initial).min(max),
            Some(previous) => (previous * multiplier / PPM).min(max),
        };
        self.base = Some(base);
        let jitter = ((backoff.jitter * 1e6).round() as u128).min(PPM - 1);
        if jitter == 0 {
            return Duration::from_nanos(base.max(1) as u64);
        }
        let unit = u128::from(self.jitter.next_u64() >> 32);
        let factor = ((PPM - jitter) << 32) + 2 * jitter * unit;
        let wait = (base * factor / (PPM << 32)).clamp(1, max);
        Duration::from_nanos(wait as u64)
    }

    /// The breaker closed: the next opening waits `initial` again (the jitter stream goes on).
    pub fn reset(&mut self) {
        self.base = None;
    }
}
