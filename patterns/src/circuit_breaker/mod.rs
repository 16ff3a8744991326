//! Circuit breaker: a sans-IO state machine at the level of resilience4j.
//!
//! A breaker sits in front of a remote service. While the service answers, the breaker is
//! *closed* and records each call's outcome in a sliding window. When the failure rate or the
//! slow-call rate of the window reaches its threshold, it trips *open* and rejects calls for the
//! open wait; then it goes *half-open* and lets a few probes through, whose outcomes decide
//! whether it closes again or reopens. *Disabled*, *forced-open* and *metrics-only* are manual
//! states that never transition on their own.
//!
//! ```
//! use std::time::Duration;
//! use patterns::circuit_breaker::{CircuitBreaker, Config, Now, Outcome, State, Window};
//!
//! let config = Config::builder()
//!     .window(Window::Count { size: 4 })
//!     .calls_min(2)
//!     .open_wait_fixed(Duration::from_secs(10))
//!     .half_open_probes_max(1)
//!     .build()?;
//! let mut now = Now::from_monotonic(Duration::ZERO);
//! let mut breaker = CircuitBreaker::new(config, now)?;
//!
//! // Two failures out of two calls: 100 % >= 50 %, so the breaker opens.
//! for _ in 0..2 {
//!     let permit = breaker.try_acquire(now)?;
//!     let _ = breaker.on_result(permit, Outcome::Failure, now);
//! }
//! assert_eq!(breaker.state(), State::Open);
//! assert!(breaker.try_acquire(now).is_err());
//!
//! // After the open wait, one probe goes through; its success closes the breaker.
//! now = now.advanced(Duration::from_secs(10));
//! let probe = breaker.try_acquire(now)?;
//! assert_eq!(breaker.state(), State::HalfOpen);
//! let _ = breaker.on_result(probe, Outcome::Success, now);
//! assert_eq!(breaker.state(), State::Closed);
//! while let Some(event) = breaker.poll_event() {
//!     println!("{event:?}");
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Contract
//!
//! * **Time is an input.** Every input takes a [`Now`]: a monotonic reading, which measures
//!   every wait, call duration and window, and a wall-clock reading, which only stamps events.
//!   A monotonic reading older than one already seen counts as the latest one.
//! * **Epochs.** The epoch starts at 0 and grows by one at every transition. A [`Permit`] carries
//!   the epoch it was admitted in; an outcome or release from an older epoch is *stale*: it is
//!   reported ([`EventKind::StaleOutcome`]) but never recorded and never decides anything.
//! * **Permits.** [`CircuitBreaker::try_acquire`] returns a [`Permit`] or [`Rejected`]. Every
//!   permit must be completed once, by [`CircuitBreaker::on_result`] or
//!   [`CircuitBreaker::release`]; both take it by value.
//! * **Half-open** hands out at most `half_open_probes_max` probe slots per epoch. A recorded
//!   probe keeps its slot; an ignored or released probe gives it back. Once every slot's
//!   outcome is recorded the breaker closes, unless a rate reached its threshold, in which case
//!   it reopens; it also reopens after `half_open_wait_max`, if set.
//! * **Windows.** Every transition starts a fresh window, except a transition to open, which
//!   freezes the window that led to it. Rates are evaluated after each record only, and only
//!   once the window holds `calls_min` calls (capped by a count window's size; all probes in
//!   half-open).
//! * **Deadlines.** Every input first processes the deadlines it passes;
//!   [`CircuitBreaker::poll_timeout`] says when to call [`CircuitBreaker::handle_timeout`]
//!   if no input comes. Open moves to half-open on the first `try_acquire` after its wait, or at
//!   the deadline itself when `auto_half_open` is on.
//! * **Events** are drained with [`CircuitBreaker::poll_event`] from a bounded queue.
//!   Disabled and forced-open publish only transitions, as in resilience4j; a permit's outcome
//!   or release is published if and only if its admission was.
//!
//! # Modules
//!
//! * [`driver`]: the async driver that calls a remote service over sim-core RPC through a
//!   breaker, releases abandoned permits, pumps the deadlines and reports every step.
//! * [`oracle`]: an independent reference model that predicts every decision, for the
//!   model-based test and the simulation's trace checker.
//! * [`Mutant`]: deliberately broken variants, each mirroring a real bug.

mod breaker;
mod config;
pub mod driver;
mod event;
mod mutant;
pub mod oracle;
mod permit;
mod time;
mod window;

pub use breaker::CircuitBreaker;
pub use config::{
    jitter_draw, Backoff, Config, ConfigBuilder, ConfigError, OpenWait, Window, BACKOFF_PPM,
    EVENT_QUEUE_CAPACITY_MAX, HALF_OPEN_PROBES_MAX, WINDOW_SIZE_MAX,
};
pub use event::{Event, EventKind, Metrics, TransitionReason};
pub use mutant::{Mutant, Mutants};
// Mutant names exist in simulation builds only (see `crate::mutant_set`).
#[cfg(madsim)]
pub use mutant::UnknownMutant;
pub use permit::{
    CallClass, Completion, Outcome, Permit, PermitId, PermitKind, RejectReason, Rejected, State,
    TransitionError,
};
pub use time::Now;
