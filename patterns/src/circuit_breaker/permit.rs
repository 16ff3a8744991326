//! States, permits, outcomes and rejections.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Admits every call and records its outcome; trips to open when a rate reaches its
    /// threshold.
    Closed,
    /// Rejects every call until the open wait ends.
    Open,
    /// Admits a bounded number of probes whose outcomes decide between closed and open.
    HalfOpen,
    /// Admits every call, records nothing, never transitions on its own, publishes only
    /// transitions.
    Disabled,
    /// Rejects every call, never transitions on its own, publishes only transitions.
    ForcedOpen,
    /// Admits every call, records and publishes like closed, but never transitions on its own.
    MetricsOnly,
}

impl State {
    /// Every state, in a fixed order.
    pub const ALL: [State; 6] = [
        State::Closed,
        State::Open,
        State::HalfOpen,
        State::Disabled,
        State::ForcedOpen,
        State::MetricsOnly,
    ];

    /// The state's name in snake case.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
            State::Disabled => "disabled",
            State::ForcedOpen => "forced_open",
            State::MetricsOnly => "metrics_only",
        }
    }

    /// Whether calls, outcomes and rejections in this state produce events (as in resilience4j,
    /// disabled and forced-open publish only transitions).
    pub fn publishes_events(self) -> bool {
        !matches!(self, State::Disabled | State::ForcedOpen)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A permit's identity: permits are numbered from 0 in admission order, per breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PermitId(pub u64);

impl fmt::Display for PermitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// Whether a permit was a normal call or a half-open probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PermitKind {
    /// Admitted in closed, disabled or metrics-only.
    Normal,
    /// Admitted in half-open; holds one of its probe slots.
    Probe,
}

/// The right to make one call, tied to the epoch in which it was admitted.
///
/// It is neither `Clone` nor `Copy`: [`CircuitBreaker::on_result`] and
/// [`CircuitBreaker::release`] take it by value, so it is completed at most once. A permit
/// dropped without either is lost to the breaker; the async driver's guard releases it on drop.
///
/// [`CircuitBreaker::on_result`]: super::CircuitBreaker::on_result
/// [`CircuitBreaker::release`]: super::CircuitBreaker::release
#[derive(Debug, PartialEq, Eq)]
#[must_use = "complete a permit with on_result or give it back with release"]
pub struct Permit {
    pub(crate) id: PermitId,
    pub(crate) epoch: u64,
    pub(crate) kind: PermitKind,
    pub(crate) admitted_at: Duration,
    pub(crate) published: bool,
}

impl Permit {
    /// The permit's identity.
    pub fn id(&self) -> PermitId {
        self.id
    }
    /// The breaker epoch in which it was admitted.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }
    /// Normal call or half-open probe.
    pub fn kind(&self) -> PermitKind {
        self.kind
    }
    /// Monotonic time of admission; a call's duration is measured from here.
    pub fn admitted_at(&self) -> Duration {
        self.admitted_at
    }
}

/// What the caller reports about a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The call succeeded (slow if it lasted longer than the slow-call threshold).
    Success,
    /// The call failed (slow if it lasted longer than the slow-call threshold).
    Failure,
    /// The call counts neither way (an error the configuration does not record); a half-open
    /// probe gives its slot back.
    Ignored,
}

/// How a recorded call was classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallClass {
    /// Success within the slow-call threshold.
    Success,
    /// Success that took longer than the slow-call threshold.
    SlowSuccess,
    /// Failure within the slow-call threshold.
    Failure,
    /// Failure that took longer than the slow-call threshold.
    SlowFailure,
}

impl CallClass {
    /// Classifies a success or failure by its duration (`None` for [`Outcome::Ignored`]).
    /// Slow means strictly longer than the threshold, as in resilience4j.
    pub fn classify(outcome: Outcome, duration: Duration, threshold: Duration) -> Option<Self> {
        let slow = duration > threshold;
        match (outcome, slow) {
            (Outcome::Success, false) => Some(CallClass::Success),
            (Outcome::Success, true) => Some(CallClass::SlowSuccess),
            (Outcome::Failure, false) => Some(CallClass::Failure),
            (Outcome::Failure, true) => Some(CallClass::SlowFailure),
            (Outcome::Ignored, _) => None,
        }
    }
    /// Whether the call failed.
    pub fn is_failure(self) -> bool {
        matches!(self, CallClass::Failure | CallClass::SlowFailure)
    }
    /// Whether the call was slow.
    pub fn is_slow(self) -> bool {
        matches!(self, CallClass::SlowSuccess | CallClass::SlowFailure)
    }
}

/// What the breaker did with an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Completion {
    /// Recorded in the current window.
    Recorded(CallClass),
    /// An ignored outcome: not recorded.
    Ignored,
    /// The current state records nothing (disabled).
    Unrecorded,
    /// The permit is from an older epoch: not recorded and decides nothing.
    Stale {
        /// The epoch the permit was admitted in.
        permit_epoch: u64,
    },
}

/// Why a call was not permitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The breaker is open and its wait has not ended.
    Open,
    /// The breaker is half-open and every probe slot is taken.
    HalfOpenFull,
    /// The breaker is held open by hand.
    ForcedOpen,
}

/// A call the breaker did not permit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[error("call not permitted: circuit breaker {state} (epoch {epoch}): {reason:?}")]
pub struct Rejected {
    /// The state that rejected it.
    pub state: State,
    /// The epoch that rejected it.
    pub epoch: u64,
    /// Why.
    pub reason: RejectReason,
    /// When open: the time left before the breaker lets probes through.
    pub retry_after: Option<Duration>,
}

/// A manual transition that was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum TransitionError {
    /// The breaker is already in the target state (use `reset` to restart closed).
    #[error("the circuit breaker is already {0}")]
    AlreadyInState(State),
}
