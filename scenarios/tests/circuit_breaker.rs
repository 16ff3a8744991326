//! The `circuit-breaker` scenario: generated cases pass, every mutant is caught, and the trace
//! checker catches hand-made bad traces for the invariants no mutant reaches first.

use scenarios::circuit_breaker::CircuitBreakerScenario;

#[test]
fn circuit_breaker_passes_generated_cases_under_every_fault() {
    // Goal: the unmutated breakers and driver survive the whole fault budget.
    harness::testing::check(CircuitBreakerScenario);
}
