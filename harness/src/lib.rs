//! # harness: generic deterministic-simulation testing machinery
//!
//! Reusable by any project, with no knowledge of the patterns tested here.
//!
//! ## Map of the crate
//! - [`history`]: a bounded, serializable history of client operations with simulated call
//!   and return times, indeterminate operations (Jepsen's `:info`) included, and a
//!   per-client timeline rendering for failure reports.
//! - [`linearizability`]: a Porcupine-style linearizability checker (Wing & Gong search,
//!   Lowe's memoization, P-compositionality) over a user [`linearizability::Model`], with a
//!   search limit that answers "unknown", and ready-made models (register, key-value map,
//!   append-only event log with expected versions).

pub mod history;
pub mod linearizability;
