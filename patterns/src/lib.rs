//! Cloud patterns as sans-IO state machines, simulation-tested.
//!
//! Each pattern is a core that never reads a clock or does I/O: it takes the time and its
//! inputs as arguments, hands out effects and events as data, and says when it next needs to
//! be woken (`poll_timeout`). The same core is unit-tested with scripts of inputs, checked
//! against a small reference model (an *oracle*) with property tests, and driven by the
//! simulator under faults. Deliberately broken variants (*mutants*), each mirroring a real
//! bug, show that the tests catch what they claim to catch.
//!
//! # Modules
//!
//! * [`circuit_breaker`]: closed / open / half-open breaker with count and time windows,
//!   failure and slow-call thresholds, backoff, probes, epochs and permits.
//! * [`event_sourcing`]: an event store with a checksummed log, crash recovery, optimistic
//!   concurrency, idempotent appends, group commit, subscriptions, and aggregates with
//!   snapshots and upcasting.
//! * [`cqrs`]: a command side and projections into read models kept on other nodes, with
//!   consistency tokens, read-your-writes, rebuilds and parked poison events.
//! * [`gateway`] (in progress): path normalisation, routing with a documented precedence,
//!   per-key GCRA rate limiting.
//! * [`discovery`]: a replicated service registry with TTL leases, incarnations, anti-entropy
//!   and watches, and a client cache that never goes backwards.
//!
//! ```
//! use std::time::Duration;
//! use patterns::circuit_breaker::{CircuitBreaker, Config, Now};
//!
//! let now = Now::from_monotonic(Duration::ZERO);
//! let mut breaker = CircuitBreaker::new(Config::default(), now)?;
//! let permit = breaker.try_acquire(now)?;
//! breaker.release(permit, now);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod circuit_breaker;
pub mod cqrs;
pub mod discovery;
pub mod event_sourcing;
pub mod gateway;
pub mod mutant_set;
