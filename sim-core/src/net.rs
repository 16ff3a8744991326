//! The simulated network. (Built in sim-core part 2; this is the skeleton the world calls.)

use crate::node::NodeId;
use crate::trace::{StableHash, StableHasher};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Network settings of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetConfig {}

impl NetConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A network event of the trace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetEvent {}

impl StableHash for NetEvent {
    fn stable_hash(&self, _hasher: &mut StableHasher) {
        match *self {}
    }
}

impl fmt::Display for NetEvent {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

pub(crate) struct NetState {}

impl NetState {
    pub fn new(_config: &NetConfig) -> Self {
        NetState {}
    }
    pub fn add_node(&mut self, _node: NodeId) {}
    pub fn restart_node(&mut self, _node: NodeId) {}
    pub fn messages_sent(&self) -> u64 {
        0
    }
}

/// Crash effects on the network: the node's sockets close and what was queued for it is lost.
pub(crate) fn on_crash(_world: &mut crate::world::World, _node: NodeId) {}

/// Control of the network, from [`crate::Sim::net`].
#[derive(Clone, Copy, Debug)]
pub struct NetControl {}

impl NetControl {
    pub(crate) fn new() -> Self {
        NetControl {}
    }
}
