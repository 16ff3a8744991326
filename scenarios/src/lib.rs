//! Our patterns' scenarios, registered for the `dst` binary and the workspace tests.
//!
//! - `register` (from the example crate `register-example`): primary-backup register.
//! - `circuit-breaker` ([`circuit_breaker`]): client-side breakers in front of a flaky service.

pub mod circuit_breaker;

/// Every scenario `dst` knows, in the order `dst list` shows them.
pub fn registry() -> harness::Registry {
    harness::Registry::new()
        .with(register_example::Register)
        .with(circuit_breaker::CircuitBreakerScenario)
}
