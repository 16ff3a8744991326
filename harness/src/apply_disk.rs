//! Disk faults of a plan, applied through sim-core's disk controls.

use crate::plan::Fault;
use sim_core::Sim;

pub(crate) fn start(_sim: &Sim, fault: &Fault) {
    unreachable!("disk faults are not wired yet: {fault}")
}

pub(crate) fn end(_sim: &Sim, fault: &Fault) {
    unreachable!("disk faults are not wired yet: {fault}")
}

pub(crate) fn heal(_sim: &Sim) {}
