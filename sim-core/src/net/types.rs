//! The network's shared vocabulary: socket addresses and errors. Both builds compile this
//! file (the simulated `net` and the real one mount it), so node code sees one set of types.

use crate::node::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The address of a socket: a node and a port on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Addr {
    /// The node.
    pub node: NodeId,
    /// The port.
    pub port: u16,
}

impl Addr {
    /// The address of `port` on `node`.
    pub const fn new(node: NodeId, port: u16) -> Self {
        Addr { node, port }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.node, self.port)
    }
}

/// What can go wrong with a socket.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// Sockets live on nodes; this code is not a node's: in a simulation it runs on the
    /// supervisor (or in a task not spawned through sim-core); in a real build it runs outside
    /// a started node (`Cluster::start`) and outside `run_as`, or no cluster is installed.
    #[cfg_attr(
        madsim,
        error("not on a node: sockets are bound on simulated nodes, not on the supervisor")
    )]
    #[cfg_attr(
        not(madsim),
        error(
            "not on a node: sockets are bound by node code (a task of a node started with \
             Cluster::start, or inside node::run_as)"
        )
    )]
    NotOnNode,
    /// Another socket is bound to that address.
    #[error("address {0} is in use")]
    AddrInUse(Addr),
    /// Every ephemeral port of the node is taken.
    #[error("no free ephemeral port on {0}")]
    NoFreePort(NodeId),
    /// The socket was closed (its node crashed; simulation only: a real socket is open as
    /// long as its handle lives).
    #[error("socket closed")]
    Closed,
    /// The ordered connection to `peer` broke; messages sent on it may be lost (never one
    /// without those sent after it). The next send opens a new connection (if the link is not
    /// cut). Simulation only: ordered sockets exist only there.
    #[error("connection to {peer} broken")]
    ConnectionBroken {
        /// The node at the other end.
        peer: NodeId,
    },
    /// No such node: not in this run (simulation), not in the installed cluster (real build).
    #[error("unknown node {0}")]
    UnknownNode(NodeId),
    /// The message could not be encoded (in a real build, also: its datagram would exceed the
    /// largest UDP datagram).
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// A message arrived that does not decode as the expected type; it is consumed.
    #[error("cannot decode message from {from}: {message}")]
    Decode {
        /// Its sender.
        from: Addr,
        /// The decoder's complaint.
        message: String,
    },
    /// Invalid network settings: a link's settings in a simulation; in a real build, a setting
    /// this host cannot honour (an address or port it refuses to bind, an ordered socket).
    #[error("invalid network setting: {0}")]
    InvalidConfig(String),
}

/// What can go wrong with [`Socket::call`](super::Socket::call).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// No response within the timeout (lost, late, or the server never answered).
    #[error("call to {to} timed out after {after:?}")]
    Timeout {
        /// The server.
        to: Addr,
        /// The timeout.
        after: Duration,
    },
    /// The request could not be sent or the response could not be read.
    #[error(transparent)]
    Net(#[from] NetError),
}

impl From<NetError> for std::io::Error {
    /// The error a real socket returns in the same situation, for the tokio-style sockets.
    fn from(error: NetError) -> Self {
        use std::io::ErrorKind;
        let kind = match &error {
            NetError::NotOnNode => ErrorKind::Unsupported,
            NetError::AddrInUse(_) => ErrorKind::AddrInUse,
            NetError::NoFreePort(_) => ErrorKind::AddrNotAvailable,
            NetError::Closed => ErrorKind::NotConnected,
            NetError::ConnectionBroken { .. } => ErrorKind::ConnectionReset,
            NetError::UnknownNode(_) => ErrorKind::AddrNotAvailable,
            NetError::Encode(_) | NetError::Decode { .. } => ErrorKind::InvalidData,
            NetError::InvalidConfig(_) => ErrorKind::InvalidInput,
        };
        std::io::Error::new(kind, error)
    }
}
