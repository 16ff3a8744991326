//! Our patterns' scenarios, registered for the `dst` binary and the workspace tests.
//!
//! - `register` (from the example crate `register-example`): primary-backup register.
//! - `circuit-breaker` ([`circuit_breaker`]): client-side breakers in front of a flaky service.
//! - `event-sourcing` ([`event_sourcing`]): the event store on a simulated disk.
//! - `discovery` ([`discovery`]): a replicated service registry with leases.
//! - `cqrs` ([`cqrs`]): bank accounts in CQRS over the event store.
//! - `gateway` ([`gateway`]): API gateway replicas in front of services found through discovery.
//! - `e2e` ([`e2e`]): the five patterns as one system.
//! - `http-kv` (from the example crate `http-kv`): a primary-backup key-value service over
//!   HTTP/1.1, written with hyper for tokio and run unchanged on simulated TCP.

pub mod circuit_breaker;
pub mod cqrs;
pub mod discovery;
pub mod e2e;
pub mod event_sourcing;
pub mod gateway;

/// Every scenario `dst` knows, in the order `dst list` shows them.
pub fn registry() -> harness::Registry {
    harness::Registry::new()
        .with(register_example::Register)
        .with(circuit_breaker::CircuitBreakerScenario)
        .with(event_sourcing::EventSourcing)
        .with(discovery::Discovery)
        .with(cqrs::Cqrs)
        .with(gateway::GatewayScenario)
        .with(e2e::EndToEnd::default())
        .with(http_kv::HttpKv)
        // The project's target for the composed system (issue 17).
        .sim_wall_target("e2e", 1000.0)
}
