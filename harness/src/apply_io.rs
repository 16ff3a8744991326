//! Network and disk faults of a plan, applied through sim-core's network and disk controls.

use crate::plan::Fault;
use sim_core::trace::Timeline;
use sim_core::Sim;

pub(crate) fn start(_sim: &Sim, fault: &Fault) {
    unreachable!("network and disk faults are not wired yet: {fault}")
}

pub(crate) fn end(_sim: &Sim, fault: &Fault) {
    unreachable!("network and disk faults are not wired yet: {fault}")
}

pub(crate) fn heal(_sim: &Sim) {}

pub(crate) fn mermaid_line(
    _timeline: &Timeline,
    _event: &sim_core::net::NetEvent,
    _at: &str,
) -> Option<String> {
    None
}
