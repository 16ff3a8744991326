//! placeholder

pub mod event_sourcing;
