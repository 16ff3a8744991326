//! Network events of the trace, with their stable hash encoding and one-line display.

use super::{Addr, LinkConfig};
use crate::node::NodeId;
use crate::trace::{StableHash, StableHasher};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a message on the wire is: a datagram, or one half of an RPC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// A plain message, read with [`super::Socket::recv`].
    Data,
    /// An RPC request with its correlation id (unique per calling socket).
    Request {
        /// Correlation id.
        call: u64,
    },
    /// The response to the request with this correlation id.
    Response {
        /// Correlation id.
        call: u64,
    },
}

/// Why a message never reached its receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// The link was partitioned when the message was sent or while it was in flight.
    Partition,
    /// Lost on the wire (the link's loss probability).
    Loss,
    /// The link was held and its hold queue was full.
    HoldFull,
    /// The receiving socket's inbox was full.
    InboxFull,
    /// Nothing was bound to the destination port.
    NoSocket,
    /// The destination node was down at delivery.
    NodeDown,
    /// The destination node restarted after the message was sent: it was meant for the old
    /// incarnation.
    StaleIncarnation,
    /// The receiver crashed with the message still queued in its inbox.
    Crash,
    /// The receiving socket was closed with the message still queued in its inbox.
    SocketClosed,
    /// An RPC response arrived after its caller gave up (timed out or was dropped).
    LateReply,
    /// An ordered send was refused because the connection broke (see [`super::Socket::send`]),
    /// or an ordered message in flight or held belongs to a connection that lost a message
    /// sent before it (so that its receiver never sees a gap).
    ConnectionBroken,
    /// Too many messages were in flight in the whole network
    /// ([`super::NetConfig::in_flight_max`]).
    InFlightFull,
}

impl DropReason {
    fn tag(self) -> u8 {
        match self {
            DropReason::Partition => 0,
            DropReason::Loss => 1,
            DropReason::HoldFull => 2,
            DropReason::InboxFull => 3,
            DropReason::NoSocket => 4,
            DropReason::NodeDown => 5,
            DropReason::StaleIncarnation => 6,
            DropReason::Crash => 7,
            DropReason::SocketClosed => 8,
            DropReason::LateReply => 9,
            DropReason::ConnectionBroken => 10,
            DropReason::InFlightFull => 11,
        }
    }

    /// The snake_case name, as serialized.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Partition => "partition",
            DropReason::Loss => "loss",
            DropReason::HoldFull => "hold_full",
            DropReason::InboxFull => "inbox_full",
            DropReason::NoSocket => "no_socket",
            DropReason::NodeDown => "node_down",
            DropReason::StaleIncarnation => "stale_incarnation",
            DropReason::Crash => "crash",
            DropReason::SocketClosed => "socket_closed",
            DropReason::LateReply => "late_reply",
            DropReason::ConnectionBroken => "connection_broken",
            DropReason::InFlightFull => "in_flight_full",
        }
    }
}

/// A network event of the trace. Every variant is part of the trace hash.
///
/// Message ids (`id`) number every message of a run in the order it was put on the wire,
/// duplicates included, so a trace can follow one message from send to delivery or drop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetEvent {
    /// A message was put on the wire (recorded on the sender).
    Send {
        /// Message id.
        id: u64,
        /// Sending socket.
        from: Addr,
        /// Destination.
        to: Addr,
        /// Encoded size of the payload, in bytes.
        bytes: u32,
        /// Datagram, request or response.
        kind: MessageKind,
    },
    /// A message reached its socket (recorded on the receiver).
    Deliver {
        /// Message id.
        id: u64,
        /// Sending socket.
        from: Addr,
        /// Destination.
        to: Addr,
        /// Encoded size of the payload, in bytes.
        bytes: u32,
    },
    /// A message was dropped.
    Drop {
        /// Message id.
        id: u64,
        /// Sending socket.
        from: Addr,
        /// Destination.
        to: Addr,
        /// Why.
        reason: DropReason,
    },
    /// The network duplicated message `id`; the copy travels as message `copy`.
    Duplicate {
        /// The original message.
        id: u64,
        /// The copy's id.
        copy: u64,
    },
    /// Links from every node of `from` to every node of `to` were cut (and back, unless
    /// `one_way`).
    Partition {
        /// One side.
        from: Vec<NodeId>,
        /// The other side.
        to: Vec<NodeId>,
        /// Only the direction `from` to `to`.
        one_way: bool,
    },
    /// Links between the groups were healed (and back, unless `one_way`).
    Heal {
        /// One side.
        from: Vec<NodeId>,
        /// The other side.
        to: Vec<NodeId>,
        /// Only the direction `from` to `to`.
        one_way: bool,
    },
    /// Every partition was healed.
    HealAll,
    /// The link `from` to `to` was held: its messages queue up.
    Hold {
        /// Sending node.
        from: NodeId,
        /// Receiving node.
        to: NodeId,
    },
    /// The held link `from` to `to` was released; `count` queued messages flow again, in order.
    Release {
        /// Sending node.
        from: NodeId,
        /// Receiving node.
        to: NodeId,
        /// Messages that were queued.
        count: u32,
    },
    /// A link's settings changed (`None` on both ends: the default of every link without
    /// its own settings; `link: None`: the link went back to the default).
    Configure {
        /// Sending node.
        from: Option<NodeId>,
        /// Receiving node.
        to: Option<NodeId>,
        /// The new settings.
        link: Option<LinkConfig>,
    },
}

fn hash_addr(h: &mut StableHasher, addr: Addr) {
    h.u32(addr.node.0);
    h.u32(u32::from(addr.port));
}

fn hash_group(h: &mut StableHasher, group: &[NodeId]) {
    h.u64(group.len() as u64);
    for node in group {
        h.u32(node.0);
    }
}

fn hash_option_node(h: &mut StableHasher, node: Option<NodeId>) {
    match node {
        None => h.u8(0),
        Some(node) => {
            h.u8(1);
            h.u32(node.0);
        }
    }
}

fn hash_link(h: &mut StableHasher, link: &LinkConfig) {
    h.u64(link.latency_min_us);
    h.u64(link.latency_max_us);
    h.u64(link.loss_probability.to_bits());
    h.u64(link.duplicate_probability.to_bits());
    h.u8(u8::from(link.ordered));
}

impl StableHash for MessageKind {
    fn stable_hash(&self, h: &mut StableHasher) {
        match *self {
            MessageKind::Data => h.u8(0),
            MessageKind::Request { call } => {
                h.u8(1);
                h.u64(call);
            }
            MessageKind::Response { call } => {
                h.u8(2);
                h.u64(call);
            }
        }
    }
}

impl StableHash for NetEvent {
    fn stable_hash(&self, h: &mut StableHasher) {
        match self {
            NetEvent::Send {
                id,
                from,
                to,
                bytes,
                kind,
            } => {
                h.u8(0);
                h.u64(*id);
                hash_addr(h, *from);
                hash_addr(h, *to);
                h.u32(*bytes);
                kind.stable_hash(h);
            }
            // Every message id has a `Send` (or, for a copy, a `Duplicate`) earlier in the
            // trace that hashes its addresses and size: the id alone identifies it here, which
            // keeps the per-message hashing cost low.
            NetEvent::Deliver { id, .. } => {
                h.u8(1);
                h.u64(*id);
            }
            NetEvent::Drop { id, reason, .. } => {
                h.u8(2);
                h.u64(*id);
                h.u8(reason.tag());
            }
            NetEvent::Duplicate { id, copy } => {
                h.u8(3);
                h.u64(*id);
                h.u64(*copy);
            }
            NetEvent::Partition { from, to, one_way } => {
                h.u8(4);
                hash_group(h, from);
                hash_group(h, to);
                h.u8(u8::from(*one_way));
            }
            NetEvent::Heal { from, to, one_way } => {
                h.u8(5);
                hash_group(h, from);
                hash_group(h, to);
                h.u8(u8::from(*one_way));
            }
            NetEvent::HealAll => h.u8(6),
            NetEvent::Hold { from, to } => {
                h.u8(7);
                h.u32(from.0);
                h.u32(to.0);
            }
            NetEvent::Release { from, to, count } => {
                h.u8(8);
                h.u32(from.0);
                h.u32(to.0);
                h.u32(*count);
            }
            NetEvent::Configure { from, to, link } => {
                h.u8(9);
                hash_option_node(h, *from);
                hash_option_node(h, *to);
                match link {
                    None => h.u8(0),
                    Some(link) => {
                        h.u8(1);
                        hash_link(h, link);
                    }
                }
            }
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MessageKind::Data => write!(f, "data"),
            MessageKind::Request { call } => write!(f, "request #{call}"),
            MessageKind::Response { call } => write!(f, "response #{call}"),
        }
    }
}

/// How a node is written in a line: `n2` by default, its name in a [`crate::trace::Timeline`].
type NodeNamer<'a> = &'a dyn Fn(NodeId) -> String;

struct Group<'a>(&'a [NodeId], NodeNamer<'a>);

impl fmt::Display for Group<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{")?;
        for (index, node) in self.0.iter().enumerate() {
            if index > 0 {
                write!(f, ",")?;
            }
            write!(f, "{}", (self.1)(*node))?;
        }
        write!(f, "}}")
    }
}

fn arrow(one_way: bool) -> &'static str {
    if one_way {
        "->"
    } else {
        "<->"
    }
}

impl NetEvent {
    /// Writes the event on one line, naming nodes with `name` (so a timeline can print
    /// `primary:49152` where the plain [`fmt::Display`] prints `n0:49152`).
    pub fn fmt_named(
        &self,
        f: &mut fmt::Formatter<'_>,
        name: &dyn Fn(NodeId) -> String,
    ) -> fmt::Result {
        let addr = |addr: &Addr| format!("{}:{}", name(addr.node), addr.port);
        let or_all = |node: &Option<NodeId>| node.map_or_else(|| "*".to_string(), name);
        match self {
            NetEvent::Send {
                id,
                from,
                to,
                bytes,
                kind,
            } => write!(
                f,
                "send m{id} {} -> {} {bytes} B {kind}",
                addr(from),
                addr(to)
            ),
            NetEvent::Deliver {
                id,
                from,
                to,
                bytes,
            } => write!(f, "deliver m{id} {} -> {} {bytes} B", addr(from), addr(to)),
            NetEvent::Drop {
                id,
                from,
                to,
                reason,
            } => write!(
                f,
                "drop m{id} {} -> {} ({})",
                addr(from),
                addr(to),
                reason.name()
            ),
            NetEvent::Duplicate { id, copy } => write!(f, "duplicate m{id} as m{copy}"),
            NetEvent::Partition { from, to, one_way } => write!(
                f,
                "partition {} {} {}",
                Group(from, name),
                arrow(*one_way),
                Group(to, name)
            ),
            NetEvent::Heal { from, to, one_way } => write!(
                f,
                "heal {} {} {}",
                Group(from, name),
                arrow(*one_way),
                Group(to, name)
            ),
            NetEvent::HealAll => write!(f, "heal all"),
            NetEvent::Hold { from, to } => write!(f, "hold {} -> {}", name(*from), name(*to)),
            NetEvent::Release { from, to, count } => write!(
                f,
                "release {} -> {} ({count} queued)",
                name(*from),
                name(*to)
            ),
            NetEvent::Configure { from, to, link } => {
                write!(f, "configure {} -> {}: ", or_all(from), or_all(to))?;
                match link {
                    None => write!(f, "default"),
                    Some(link) => write!(f, "{link}"),
                }
            }
        }
    }

    /// The id of the message this event is about (send, delivery or drop), if any.
    pub fn message_id(&self) -> Option<u64> {
        match self {
            NetEvent::Send { id, .. }
            | NetEvent::Deliver { id, .. }
            | NetEvent::Drop { id, .. } => Some(*id),
            _ => None,
        }
    }
}

impl fmt::Display for NetEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_named(f, &|node: NodeId| node.to_string())
    }
}
