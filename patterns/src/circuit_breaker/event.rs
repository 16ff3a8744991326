//! Events a breaker publishes, its bounded event queue, and its metrics snapshot.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::permit::{Outcome, PermitId, PermitKind, RejectReason, State};
use super::time::Now;

/// Why a transition happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionReason {
    /// Closed or half-open window reached a threshold (closed → open, half-open → open).
    RatesExceeded {
        /// The failure rate reached its threshold.
        failure_rate: bool,
        /// The slow-call rate reached its threshold.
        slow_call_rate: bool,
    },
    /// The open wait ended (open → half-open).
    OpenWaitElapsed,
    /// Every probe was recorded and no rate reached its threshold (half-open → closed).
    ProbesPassed,
    /// Half-open lasted its maximum wait (half-open → open).
    HalfOpenWaitMaxElapsed,
    /// A manual transition (`trip` or `transition_to`).
    Manual,
    /// A manual `reset` to closed, with a fresh window.
    Reset,
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The state changed; the event's epoch is the new one.
    Transition {
        /// The state left.
        from: State,
        /// The state entered.
        to: State,
        /// Why.
        reason: TransitionReason,
    },
    /// A call was permitted.
    Admitted {
        /// The permit handed out.
        permit: PermitId,
        /// Normal call or probe.
        kind: PermitKind,
    },
    /// A call was not permitted.
    Rejected {
        /// Why.
        reason: RejectReason,
    },
    /// A fast success was recorded.
    Success {
        /// Its permit.
        permit: PermitId,
        /// Time from admission to outcome.
        duration: Duration,
    },
    /// A fast failure was recorded.
    Failure {
        /// Its permit.
        permit: PermitId,
        /// Time from admission to outcome.
        duration: Duration,
    },
    /// A slow call was recorded.
    Slow {
        /// Its permit.
        permit: PermitId,
        /// Time from admission to outcome.
        duration: Duration,
        /// Whether the slow call failed.
        failed: bool,
    },
    /// An ignored outcome.
    Ignored {
        /// Its permit.
        permit: PermitId,
        /// Time from admission to outcome.
        duration: Duration,
    },
    /// An outcome from an older epoch: not recorded, decides nothing.
    StaleOutcome {
        /// Its permit.
        permit: PermitId,
        /// The epoch the permit was admitted in.
        permit_epoch: u64,
        /// The outcome reported.
        outcome: Outcome,
    },
    /// A permit was given back without an outcome.
    Released {
        /// The permit.
        permit: PermitId,
        /// The epoch it was admitted in.
        permit_epoch: u64,
    },
    /// The window's failure rate reached its threshold.
    FailureRateExceeded {
        /// Failed calls in the window.
        failed_calls: u64,
        /// Calls in the window.
        buffered_calls: u64,
        /// The threshold.
        threshold_percent: u8,
    },
    /// The window's slow-call rate reached its threshold.
    SlowCallRateExceeded {
        /// Slow calls in the window.
        slow_calls: u64,
        /// Calls in the window.
        buffered_calls: u64,
        /// The threshold.
        threshold_percent: u8,
    },
}

/// An event, stamped with both clocks and the breaker's epoch after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// When it happened.
    pub at: Now,
    /// The breaker's epoch once the event happened.
    pub epoch: u64,
    /// What happened.
    pub kind: EventKind,
}

/// A bounded FIFO of events that drops its oldest event when full and counts the drops.
#[derive(Clone, Debug)]
pub(crate) struct EventQueue {
    events: VecDeque<Event>,
    capacity: usize,
    dropped: u64,
}

impl EventQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        EventQueue {
            events: VecDeque::new(),
            capacity,
            dropped: 0,
        }
    }

    pub(crate) fn push(&mut self, event: Event) {
        if self.events.len() == self.capacity {
            self.events.pop_front();
            self.dropped += 1;
        }
        self.events.push_back(event);
    }

    pub(crate) fn pop(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// A snapshot of the current window and counters.
///
/// In closed and metrics-only it shows the live window; in open, the window that was frozen
/// when the breaker opened (so it shows why); in half-open, the probes' window; in disabled
/// and forced-open, an empty window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    /// The state.
    pub state: State,
    /// The epoch.
    pub epoch: u64,
    /// Calls in the window.
    pub buffered_calls: u64,
    /// Failed calls in the window (slow or not).
    pub failed_calls: u64,
    /// Slow calls in the window (successful or not).
    pub slow_calls: u64,
    /// Slow failed calls in the window.
    pub slow_failed_calls: u64,
    /// Calls rejected since the window started.
    pub not_permitted_calls: u64,
    /// Calls the window must hold before its rates count.
    pub calls_min: u64,
    /// In half-open, probe slots taken (in flight or recorded); 0 otherwise.
    pub probe_slots_used: u32,
}

impl Metrics {
    /// Successful calls in the window.
    pub fn successful_calls(&self) -> u64 {
        self.buffered_calls.saturating_sub(self.failed_calls)
    }

    /// Failed calls as a percentage of the window, or `None` below `calls_min` calls.
    pub fn failure_rate_percent(&self) -> Option<f64> {
        self.rate_percent(self.failed_calls)
    }

    /// Slow calls as a percentage of the window, or `None` below `calls_min` calls.
    pub fn slow_call_rate_percent(&self) -> Option<f64> {
        self.rate_percent(self.slow_calls)
    }

    fn rate_percent(&self, part: u64) -> Option<f64> {
        if self.buffered_calls == 0 || self.buffered_calls < self.calls_min {
            return None;
        }
        Some(part as f64 * 100.0 / self.buffered_calls as f64)
    }
}
