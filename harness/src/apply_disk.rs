//! Disk faults of a plan, applied through sim-core's disk controls.
//!
//! A disk fault episode ends by putting the node's disk faults back to the run's configured
//! ones, so overlapping disk episodes on one node end together, at the end of the first.

use crate::plan::Fault;
use crate::scenario::node;
use sim_core::disk::Latency;
use sim_core::Sim;

pub(crate) fn start(sim: &Sim, fault: &Fault) {
    match fault {
        Fault::DiskErrors {
            node: name,
            read_error,
            write_error,
            fsync_error,
        } => {
            if let Some(id) = node(sim, name) {
                let disk = sim.disk(id);
                // Probabilities come from validated plans.
                disk.set_read_error_probability(*read_error)
                    .expect("validated");
                disk.set_write_error_probability(*write_error)
                    .expect("validated");
                disk.set_fsync_error_probability(*fsync_error)
                    .expect("validated");
            }
        }
        Fault::DiskLatency {
            node: name,
            min_ms,
            max_ms,
        } => {
            if let Some(id) = node(sim, name) {
                let latency = Latency {
                    min_ms: *min_ms,
                    max_ms: *max_ms,
                };
                sim.disk(id).set_latency(Some(latency)).expect("validated");
            }
        }
        Fault::DiskFull {
            node: name,
            free_bytes,
        } => {
            if let Some(id) = node(sim, name) {
                let disk = sim.disk(id);
                let capacity = disk.usage_bytes().saturating_add(*free_bytes);
                disk.set_capacity_bytes(capacity)
                    .expect("a capacity above usage");
            }
        }
        Fault::DiskCorrupt { node: name } => {
            if let Some(id) = node(sim, name) {
                // The disk keeps the corruption, with whether it hit fsynced data, for
                // `Env::disk_corruptions`; without stored data there is nothing to corrupt.
                let _ = sim.disk(id).corrupt_random_sector(None);
            }
        }
        other => unreachable!("not a disk fault: {other}"),
    }
}

pub(crate) fn end(sim: &Sim, fault: &Fault) {
    match fault {
        Fault::DiskErrors { node: name, .. }
        | Fault::DiskLatency { node: name, .. }
        | Fault::DiskFull { node: name, .. } => {
            if let Some(id) = node(sim, name) {
                sim.disk(id).reset_faults();
            }
        }
        // Corruption is permanent: there is nothing to end.
        Fault::DiskCorrupt { .. } => {}
        other => unreachable!("not a disk fault: {other}"),
    }
}

/// Every node's disk faults back to the configured ones (corruption stays).
pub(crate) fn heal(sim: &Sim) {
    for id in sim.nodes() {
        sim.disk(id).reset_faults();
    }
}
