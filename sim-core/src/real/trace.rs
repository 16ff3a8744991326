//! Trace in a real build: there is no simulated trace; [`note`] becomes a `tracing` event.

pub use crate::stable_hash::{hash_str, StableHasher};

/// Logs a point of interest as a `tracing` event at `DEBUG` (target `sim_core::note`, fields
/// `key` and `text`); in a simulation the same call is a trace event.
pub fn note(key: &str, text: impl Into<String>) {
    let text = text.into();
    tracing::debug!(target: "sim_core::note", key, text = %text);
}
