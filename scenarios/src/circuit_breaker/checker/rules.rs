//! The checker's own bookkeeping: live permits, its window of calls, the failure window of
//! `opens-under-failure`, its transition relation, and the feeding of the reference oracle.

use std::collections::VecDeque;
use std::time::Duration;

use patterns::circuit_breaker::driver::Observed;
use patterns::circuit_breaker::oracle::{
    calls_min_closed, Admission, Oracle, OracleError, Refusal,
};
use patterns::circuit_breaker::{
    Completion, Config, Outcome, PermitId, PermitKind, State, TransitionReason, Window,
};

/// A permit admitted and not yet completed nor released, as the checker saw it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Live {
    /// The epoch its admission happened in, by the breaker's events.
    pub epoch: u64,
    pub kind: PermitKind,
    /// The monotonic reading of its admission.
    pub admitted_at: Duration,
}

/// What one step of the driver did, for the rules that judge the step as a whole.
#[derive(Debug)]
pub(super) struct StepContext {
    /// The epoch the input was handled in: after the transitions due to time that the input
    /// found (they come first).
    pub handling_epoch: u64,
    /// Permits whose calls the step recorded.
    pub recorded: Vec<PermitId>,
    /// Whether the step made a transition not due to time (a decision).
    pub decided: bool,
}

impl StepContext {
    pub fn new(epoch: u64) -> Self {
        StepContext {
            handling_epoch: epoch,
            recorded: Vec::new(),
            decided: false,
        }
    }
}

/// A recorded call's class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Recorded {
    pub failed: bool,
    pub slow: bool,
}

impl Recorded {
    pub fn fast(failed: bool) -> Self {
        Recorded {
            failed,
            slow: false,
        }
    }

    pub fn slow(failed: bool) -> Self {
        Recorded { failed, slow: true }
    }

    /// The class of an outcome reported `duration` after admission; `None` for an ignored
    /// outcome (never recorded).
    pub fn classify(outcome: Outcome, duration: Duration, slow_after: Duration) -> Option<Self> {
        let slow = duration > slow_after;
        match outcome {
            Outcome::Success => Some(Recorded {
                failed: false,
                slow,
            }),
            Outcome::Failure => Some(Recorded { failed: true, slow }),
            Outcome::Ignored => None,
        }
    }
}

/// Counts of a window's calls.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Counts {
    pub calls: u64,
    pub failed: u64,
    pub slow: u64,
    pub slow_failed: u64,
}

/// The checker's window of recorded calls: the list itself, recounted on demand.
#[derive(Clone, Debug)]
pub(super) struct CallWindow {
    shape: Window,
    calls_min: u32,
    /// Monotonic second and class of each call, oldest first.
    calls: VecDeque<(u64, Recorded)>,
    /// Time-window membership is judged at this second (frozen outside closed).
    now_second: u64,
}

impl CallWindow {
    /// The closed state's window, started at `now`.
    pub fn closed(config: &Config, now: Duration) -> Self {
        CallWindow {
            shape: config.window,
            calls_min: calls_min_closed(config),
            calls: VecDeque::new(),
            now_second: now.as_secs(),
        }
    }

    /// Half-open's window: its probes.
    pub fn half_open(probes: u32, now: Duration) -> Self {
        CallWindow {
            shape: Window::Count { size: probes },
            calls_min: probes,
            calls: VecDeque::new(),
            now_second: now.as_secs(),
        }
    }

    pub fn calls_min(&self) -> u64 {
        u64::from(self.calls_min)
    }

    /// Moves a time window to `now`, dropping the calls it no longer holds.
    pub fn advance(&mut self, now: Duration) {
        self.now_second = self.now_second.max(now.as_secs());
        if let Window::Time { seconds } = self.shape {
            let now_second = self.now_second;
            self.calls
                .retain(|(second, _)| second + u64::from(seconds) > now_second);
        }
    }

    pub fn push(&mut self, now: Duration, call: Recorded) {
        self.calls.push_back((now.as_secs(), call));
        if let Window::Count { size } = self.shape {
            while self.calls.len() > size as usize {
                self.calls.pop_front();
            }
        }
    }

    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for (_, call) in &self.calls {
            counts.calls += 1;
            counts.failed += u64::from(call.failed);
            counts.slow += u64::from(call.slow);
            counts.slow_failed += u64::from(call.slow && call.failed);
        }
        counts
    }
}

/// The calls of the current closed window, by the simplest rule that can fail: a window whose
/// calls all failed, with at least the minimum number of calls, must have tripped, whatever the
/// threshold.
#[derive(Clone, Debug)]
pub(super) struct FailureWindow {
    window: Window,
    calls_min: usize,
    /// Monotonic second and failure of each call in the window, oldest first.
    calls: VecDeque<(u64, bool)>,
}

impl FailureWindow {
    pub fn new(window: Window, calls_min: u32) -> Self {
        FailureWindow {
            window,
            calls_min: calls_min as usize,
            calls: VecDeque::new(),
        }
    }

    pub fn record(&mut self, at: Duration, failed: bool) {
        let second = at.as_secs();
        self.calls.push_back((second, failed));
        match self.window {
            Window::Count { size } => {
                while self.calls.len() > size as usize {
                    self.calls.pop_front();
                }
            }
            Window::Time { seconds } => {
                while self
                    .calls
                    .front()
                    .is_some_and(|(first, _)| first + u64::from(seconds) <= second)
                {
                    self.calls.pop_front();
                }
            }
        }
    }

    /// The number of calls if the window holds at least the minimum and all of them failed.
    pub fn all_failed(&self) -> Option<usize> {
        let all = self.calls.iter().all(|(_, failed)| *failed);
        (all && self.calls.len() >= self.calls_min).then_some(self.calls.len())
    }
}

/// The checker's transition relation: rate trips from closed or half-open to open, the open
/// wait to half-open, passed probes to closed, half-open's maximum wait back to open; manual
/// moves between different states; a reset to closed from anywhere.
pub(super) fn is_legal(from: State, to: State, reason: TransitionReason) -> bool {
    match reason {
        TransitionReason::RatesExceeded {
            failure_rate,
            slow_call_rate,
        } => {
            let tripped = failure_rate || slow_call_rate;
            tripped && to == State::Open && matches!(from, State::Closed | State::HalfOpen)
        }
        TransitionReason::OpenWaitElapsed => from == State::Open && to == State::HalfOpen,
        TransitionReason::ProbesPassed => from == State::HalfOpen && to == State::Closed,
        TransitionReason::HalfOpenWaitMaxElapsed => from == State::HalfOpen && to == State::Open,
        TransitionReason::Manual => from != to,
        TransitionReason::Reset => to == State::Closed,
    }
}

/// What the oracle answered to a step's input.
#[derive(Clone, Copy, Debug)]
pub(super) enum Expected {
    Acquire(Result<Admission, Refusal>),
    Complete(Result<Completion, OracleError>),
    Release(Result<(), OracleError>),
    Nothing,
}

/// Feeds the oracle the step's input at the checker's monotonic reading `now`.
pub(super) fn feed_oracle(oracle: &mut Oracle, observed: &Observed, now: Duration) -> Expected {
    match observed {
        Observed::Acquire(_) => Expected::Acquire(oracle.acquire(now)),
        Observed::Complete {
            permit, outcome, ..
        } => Expected::Complete(oracle.complete(*permit, *outcome, now)),
        Observed::Release { permit } => Expected::Release(oracle.release(*permit, now)),
        Observed::Timeout => {
            oracle.timeout(now);
            Expected::Nothing
        }
        // A send is no input of the breaker's.
        Observed::Sent { .. } => Expected::Nothing,
    }
}

/// How the breaker's answer differs from the oracle's, if it does.
pub(super) fn decision_mismatch(observed: &Observed, expected: &Expected) -> Option<String> {
    match (observed, expected) {
        (Observed::Acquire(made), Expected::Acquire(expected)) => {
            let same = match (made, expected) {
                (Ok(made), Ok(expected)) => {
                    (made.permit, made.epoch, made.kind)
                        == (expected.permit, expected.epoch, expected.kind)
                }
                (Err(made), Err(expected)) => {
                    (made.reason, made.retry_after) == (expected.reason, expected.retry_after)
                }
                _ => false,
            };
            (!same).then(|| format!("the breaker answered {made:?}, the oracle {expected:?}"))
        }
        (Observed::Complete { completion, .. }, Expected::Complete(expected)) => (Ok(*completion)
            != *expected)
            .then(|| format!("the breaker completed as {completion:?}, the oracle {expected:?}")),
        (Observed::Release { permit }, Expected::Release(Err(error))) => {
            Some(format!("release of permit {permit}: {error}"))
        }
        _ => None,
    }
}
