//! The simulated disk. (Built in sim-core part 3; this is the skeleton the world calls.)

use crate::node::NodeId;
use crate::trace::{StableHash, StableHasher};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Disk settings of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskConfig {}

impl DiskConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A disk event of the trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskEvent {}

impl StableHash for DiskEvent {
    fn stable_hash(&self, _hasher: &mut StableHasher) {
        match *self {}
    }
}

impl fmt::Display for DiskEvent {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

pub(crate) struct DiskState {}

impl DiskState {
    pub fn new(_config: &DiskConfig) -> Self {
        DiskState {}
    }
    pub fn add_node(&mut self, _node: NodeId) {}
}

/// Crash effects on the disk: the crash model decides what unsynced data survives.
pub(crate) fn on_crash(_world: &mut crate::world::World, _node: NodeId) {}

/// Control of one node's disk, from [`crate::Sim::disk`].
#[derive(Clone, Copy, Debug)]
pub struct DiskControl {
    #[allow(dead_code)]
    node: NodeId,
}

impl DiskControl {
    pub(crate) fn new(node: NodeId) -> Self {
        DiskControl { node }
    }
}
