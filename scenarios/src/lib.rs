//! Our patterns' scenarios, registered for the `dst` binary and the workspace tests.
//!
//! - `register` (from the example crate `register-example`): primary-backup register.
//! - `event-sourcing` ([`event_sourcing`]): the event store on a simulated disk.

pub mod event_sourcing;

/// Every scenario `dst` knows, in the order `dst list` shows them.
pub fn registry() -> harness::Registry {
    harness::Registry::new()
        .with(register_example::Register)
        .with(event_sourcing::EventSourcing)
}
