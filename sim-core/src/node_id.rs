//! [`NodeId`], shared by the simulated and the real build.

use serde::{Deserialize, Serialize};

/// A node. In a simulation: its index in the order nodes were added, stable for a seed. In a
/// real build: its index in the [`Cluster`](crate::node::Cluster) address book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub u32);

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "n{}", self.0)
    }
}
