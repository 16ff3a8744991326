//! The simulated network: typed messages, RPC, and faults on every link.
//!
//! Nodes talk through [`Socket`]s bound to a port on the current node. A message is any
//! `serde` type; it crosses the wire encoded with `postcard`, so encoding bugs show and the
//! trace records real sizes. Every send, delivery, drop (with its [`DropReason`]), duplicate,
//! partition, heal, hold and release is a [`NetEvent`] in the trace hash.
//!
//! ```
//! use sim_core::net::{Addr, RpcError, Socket};
//! use sim_core::{run, SimConfig};
//! use std::time::Duration;
//!
//! let report = run(7, SimConfig::default(), |sim| async move {
//!     let server = sim
//!         .node("server")
//!         .init(|| async {
//!             let socket = Socket::bind(80).expect("port 80 is free");
//!             // Answer `u64` requests with their double until the socket closes.
//!             socket.serve(|_from, n: u64| async move { n * 2 }).await;
//!         })
//!         .build();
//!     sim.node("client")
//!         .init(move || async move {
//!             let socket = Socket::bind(0).expect("an ephemeral port");
//!             let to = Addr::new(server, 80);
//!             socket.send(to, "a datagram").unwrap(); // fire and forget
//!             let doubled: Result<u64, RpcError> =
//!                 socket.call(to, &21u64, Duration::from_millis(100)).await;
//!             assert_eq!(doubled, Ok(42));
//!         })
//!         .build();
//!     sim.sleep(Duration::from_millis(200)).await;
//!     // Faults are switched at run time, from the supervisor:
//!     let net = sim.net();
//!     net.partition(&[server], &sim.nodes()[1..]).unwrap();
//!     sim.sleep(Duration::from_millis(50)).await;
//!     net.heal_all();
//!     Ok(())
//! });
//! assert!(report.outcome.is_pass(), "{}", report.outcome);
//! ```
//!
//! ## The wire
//! Every message gets a latency drawn uniformly from its link's range (at least 1 ms, madsim's
//! time floor), so independent messages reorder (jitter). All randomness comes from the
//! [`crate::rng::NETWORK`] stream. Links are directed (`from` node to `to` node); each has the
//! default [`LinkConfig`] of [`NetConfig::link`] unless [`NetControl::set_link`] (or
//! [`NetConfig::links`]) gives it its own.
//!
//! A receiver is not rate-limited: one delivery engine (a task on the supervisor that sleeps
//! until the earliest delivery) hands every due message to its socket at once, so a receive loop
//! takes as many messages per simulated millisecond as arrive. (madsim's own `Endpoint` sleeps
//! 1 ms in every `send` and `recv`.)
//!
//! ## Faults ([`NetControl`], from [`crate::Sim::net`])
//! Every fault can be switched on and off at run time, and each also applies to messages
//! already in flight:
//! - **Partition** ([`NetControl::partition`], [`NetControl::partition_one_way`],
//!   [`NetControl::isolate`]): messages on a cut link are dropped, those in flight included,
//!   and those sent while it is cut. [`NetControl::heal`], [`NetControl::heal_one_way`] and
//!   [`NetControl::heal_all`] restore links.
//! - **Latency** ([`LinkConfig::latency_min_us`]/[`LinkConfig::latency_max_us`]): a change
//!   redraws the delivery time of messages in flight on the link (from their send time, never
//!   earlier than 1 ms from now).
//! - **Loss** and **duplication** ([`LinkConfig::loss_probability`],
//!   [`LinkConfig::duplicate_probability`]) are decided when a message arrives, so they hit
//!   messages in flight too. A duplicate travels with its own latency and is never duplicated
//!   again.
//! - **Hold** ([`NetControl::hold`]): the link's messages, in flight and new, queue up to
//!   [`NetConfig::hold_capacity`] (beyond that they are dropped as [`DropReason::HoldFull`]);
//!   [`NetControl::release`] lets them flow again, in the order they were sent.
//!
//! ## Ordered links (TCP-like)
//! By default messages are datagrams: they may reorder, be lost or duplicated. A message is
//! *ordered* when its socket is ([`Socket::set_ordered`]) or its link is
//! ([`LinkConfig::ordered`]). Ordered messages on a link are delivered in the order they were
//! sent, never lost to [`LinkConfig::loss_probability`] and never duplicated (TCP retransmits
//! and deduplicates). The link carries a *connection*, and a connection delivers a gapless
//! prefix of what was sent on it, in order. It breaks whenever one of its messages is
//! dropped, for any reason: the link is partitioned, the hold queue or the network is full
//! ([`DropReason::HoldFull`], [`DropReason::InFlightFull`]), the receiver has no socket, a
//! full inbox, is down or restarted, or either node crashes. Every message sent on it after
//! the dropped one, still in flight or held, is dropped too ([`DropReason::ConnectionBroken`]);
//! those sent before it still arrive (a crash or a partition loses them all). The sender
//! learns it: its next ordered send to that node fails once with
//! [`NetError::ConnectionBroken`] (and every ordered send fails so while the link is cut); the
//! send after that opens a fresh connection. An RPC response that comes after its caller gave
//! up ([`DropReason::LateReply`]) did arrive: it breaks nothing.
//!
//! ## RPC
//! [`Socket::call`] sends a request with a correlation id and waits for the response until a
//! timeout on the calling node's clock ([`crate::time::timeout`]); the server reads requests
//! with [`Socket::recv_request`] and answers with [`Socket::reply`] (or runs
//! [`Socket::serve`]). A response that arrives after its caller gave up is dropped
//! ([`DropReason::LateReply`]) and freed.
//!
//! ## Crashes and pauses
//! A crash closes the node's sockets and drops what was queued for it
//! ([`DropReason::Crash`]); messages still on their way to the crashed incarnation are dropped
//! when they arrive ([`DropReason::NodeDown`], [`DropReason::StaleIncarnation`]). Messages
//! to a paused node queue in its sockets' inboxes, bounded by [`NetConfig::inbox_capacity`]
//! ([`DropReason::InboxFull`] beyond).
//!
//! Sockets live on nodes; the supervisor has no address ([`NetError::NotOnNode`]).
//!
//! ## tokio-style sockets
//! A service written against `tokio::net` runs unchanged on [`TcpListener`] and [`TcpStream`]
//! ([`tcp`]: a small TCP of its own over this network's datagrams, with handshake,
//! retransmission, flow control, resets and timeouts), with node names resolved by
//! [`dns`] (node `n<i>` has the address `10.0.0.1 + i`). Every segment is a message of this
//! network: every fault above applies to it and the trace records it. [`UdpSocket`] has
//! tokio's UDP names and signatures; each datagram is a datagram message of a [`Socket`],
//! under every fault above (see [`udp`]).
//!
//! ## Taps
//! A checker judges what was sent from the network, not from the code under test:
//! [`NetControl::tap`] opens a [`NetTap`], a bounded live copy of every send, delivery, drop
//! and duplicate the trace records, in trace order, with node names and the payload
//! ([`TapEvent::decode`] reads it as the sender's type). A tap does not change the trace
//! hash; one that overflowed ([`NetTap::overflowed`]) makes a judgement inconclusive.

mod control;
pub mod dns;
mod event;
mod pump;
mod socket;
mod state;
mod tap;
pub mod tcp;
mod types;
pub mod udp;

pub use control::{NetControl, NetStats};
pub use dns::{lookup_host, ToSocketAddrs};
pub use event::{DropReason, MessageKind, NetEvent};
pub use socket::{Request, Socket};
pub use tap::{NetTap, NodeClocks, TapEvent, Tapped};
pub use tcp::{TcpListener, TcpStream};
pub use types::{Addr, NetError, RpcError};
pub use udp::UdpSocket;

pub(crate) use state::{on_crash, NetState, EPHEMERAL_FIRST};

use crate::node::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The settings of a directed link.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinkConfig {
    /// Shortest latency, in microseconds (at least 1000: madsim's time floor is 1 ms).
    pub latency_min_us: u64,
    /// Longest latency, in microseconds (at least `latency_min_us`).
    pub latency_max_us: u64,
    /// Probability that a datagram is lost, within `0..=1`.
    pub loss_probability: f64,
    /// Probability that a datagram arrives twice, within `0..=1`.
    pub duplicate_probability: f64,
    /// Every message on the link is ordered (TCP-like; see the module docs).
    pub ordered: bool,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            latency_min_us: 1_000,
            latency_max_us: 10_000,
            loss_probability: 0.0,
            duplicate_probability: 0.0,
            ordered: false,
        }
    }
}

impl LinkConfig {
    /// The same settings with latencies drawn from `min..=max` (rounded down to microseconds).
    pub fn with_latency(mut self, min: Duration, max: Duration) -> Self {
        self.latency_min_us = u64::try_from(min.as_micros()).unwrap_or(u64::MAX);
        self.latency_max_us = u64::try_from(max.as_micros()).unwrap_or(u64::MAX);
        self
    }

    /// The same settings with this loss probability.
    pub fn with_loss(mut self, probability: f64) -> Self {
        self.loss_probability = probability;
        self
    }

    /// The same settings with this duplication probability.
    pub fn with_duplicate(mut self, probability: f64) -> Self {
        self.duplicate_probability = probability;
        self
    }

    /// The same settings, ordered or not.
    pub fn with_ordered(mut self, ordered: bool) -> Self {
        self.ordered = ordered;
        self
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        if self.latency_min_us < 1_000 {
            return Err(format!(
                "latency_min_us must be at least 1000 (madsim's 1 ms floor), got {}",
                self.latency_min_us
            ));
        }
        if self.latency_max_us < self.latency_min_us {
            return Err(format!(
                "latency_max_us ({}) must be at least latency_min_us ({})",
                self.latency_max_us, self.latency_min_us
            ));
        }
        if self.latency_max_us > 86_400_000_000 {
            return Err(format!(
                "latency_max_us must be at most one day, got {}",
                self.latency_max_us
            ));
        }
        for (name, p) in [
            ("loss_probability", self.loss_probability),
            ("duplicate_probability", self.duplicate_probability),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{name} must be within 0..=1, got {p}"));
            }
        }
        Ok(())
    }

    pub(crate) fn latency_range_ns(&self) -> (u64, u64) {
        (self.latency_min_us * 1_000, self.latency_max_us * 1_000)
    }
}

impl fmt::Display for LinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "latency {:?}..{:?} loss {} duplicate {}{}",
            Duration::from_micros(self.latency_min_us),
            Duration::from_micros(self.latency_max_us),
            self.loss_probability,
            self.duplicate_probability,
            if self.ordered { " ordered" } else { "" }
        )
    }
}

/// Settings of one directed link, given in [`NetConfig::links`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkOverride {
    /// Sending node.
    pub from: NodeId,
    /// Receiving node.
    pub to: NodeId,
    /// Its settings.
    pub link: LinkConfig,
}

/// Network settings of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetConfig {
    /// The settings of every link that has none of its own.
    pub link: LinkConfig,
    /// Links with their own settings (applied when both nodes exist).
    pub links: Vec<LinkOverride>,
    /// Messages queued per socket, not yet received; beyond, arrivals are dropped.
    pub inbox_capacity: usize,
    /// Messages queued per held link; beyond, they are dropped.
    pub hold_capacity: usize,
    /// Messages in flight in the whole network; beyond, sends are dropped.
    pub in_flight_max: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            link: LinkConfig::default(),
            links: Vec::new(),
            inbox_capacity: 1_024,
            hold_capacity: 1_024,
            in_flight_max: 1_000_000,
        }
    }
}

impl NetConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        self.link
            .validate()
            .map_err(|error| format!("net.link: {error}"))?;
        for (index, link) in self.links.iter().enumerate() {
            link.link
                .validate()
                .map_err(|error| format!("net.links[{index}]: {error}"))?;
        }
        for (name, value) in [
            ("inbox_capacity", self.inbox_capacity),
            ("hold_capacity", self.hold_capacity),
            ("in_flight_max", self.in_flight_max),
        ] {
            if value == 0 {
                return Err(format!("net.{name} must be at least 1"));
            }
        }
        Ok(())
    }
}
