//! The network in a real build: typed messages and RPC over real UDP, and tokio's own TCP and
//! UDP sockets.
//!
//! Node code written against the simulated `sim_core::net` compiles against this module
//! unchanged and does, for real, what the simulation's docs promise:
//!
//! - [`Socket`]: typed messages (any `serde` type, `postcard` on the wire) and RPC with
//!   correlation ids, over one real UDP socket bound on the current node's address from the
//!   installed [`Cluster`](crate::node::Cluster). A sender's [`Addr`] is its UDP source address
//!   mapped back through the cluster. Datagrams are what UDP gives: they may be lost,
//!   duplicated or reordered, and nothing tells the sender. A message too large for one
//!   datagram goes over a TCP connection of its own, with the same promise, up to
//!   [`MESSAGE_MAX_BYTES`] (16 MiB). See [`Socket`] for the details (the envelope, the size
//!   limits, what is dropped and why, sharing a socket between tasks).
//! - [`TcpListener`], [`TcpStream`], [`UdpSocket`], [`lookup_host`], [`ToSocketAddrs`]: tokio's
//!   own (re-exported), so a service written for tokio runs as it is; [`tcp`] and [`udp`] name
//!   the same items at the paths the simulated build has.
//! - [`dns`]: a node's [`Addr`] as a real `SocketAddr` and back, through the cluster.
//! - [`Addr`], [`NetError`], [`RpcError`]: the very types of the simulated build (one file
//!   compiled in both).
//!
//! ```no_run
//! use sim_core::net::{Addr, Socket};
//! use sim_core::node::{block_on, run_as, Cluster};
//! use std::time::Duration;
//!
//! block_on(async {
//!     let cluster = Cluster::loopback(&["server", "client"], &std::env::temp_dir().join("doc"))
//!         .expect("a valid cluster");
//!     let server = cluster.id("server").unwrap();
//!     let _server = cluster.start(server, || async {
//!         let socket = Socket::bind(7000).expect("port 7000 is free");
//!         socket.serve(|_from, n: u64| async move { n * 2 }).await;
//!     });
//!     let client = cluster.id("client").unwrap();
//!     run_as(client, async {
//!         let socket = Socket::bind(0).unwrap();
//!         let doubled: u64 = socket
//!             .call(Addr::new(server, 7000), &21u64, Duration::from_secs(1))
//!             .await
//!             .unwrap();
//!         assert_eq!(doubled, 42);
//!     })
//!     .await;
//! });
//! ```
//!
//! ## What exists only in a simulation
//! The simulator's controls and observers have no real counterpart and are absent from this
//! build: `NetControl` and `NetStats` (partitions, loss, latency, holds), `NetConfig`,
//! `LinkConfig` and `LinkOverride`, `NetEvent`, `DropReason` and `MessageKind` (the trace),
//! `NetTap`, `TapEvent`, `Tapped` and `NodeClocks` (taps), and the simulated TCP's model
//! constants (`tcp::RTO_INITIAL`...). Ordered sockets ([`Socket::set_ordered`]) are
//! simulation-only too: a real [`Socket`] refuses `set_ordered(true)`; use a [`TcpStream`]
//! for ordered, reliable bytes.
//!
//! ## What differs from the simulation
//! - Host names resolve through the operating system's resolver, not through node names:
//!   `TcpStream::connect("primary:8080")` needs `primary` in real DNS (or `/etc/hosts`).
//!   Address nodes with [`dns::socket_addr`] instead.
//! - tokio's sockets have their own port space per protocol, as on any host (the simulation
//!   shares one port space between TCP, UDP and [`Socket`]s). A [`Socket`] takes its port
//!   number for UDP and TCP both.
//! - A [`Socket`] message is at most [`MESSAGE_MAX_BYTES`] encoded (the simulation sets no
//!   limit), and the socket keeps at most 64 MiB of messages unread.
//! - An outgoing TCP connection leaves from the address the kernel picks, which on a loopback
//!   cluster is `127.0.0.1`, no node's address: bind the client to its node's address first
//!   (tokio's `TcpSocket`) when the server must know which node called.
//! - A [`Socket`] is closed when its handle is dropped (a node killed with
//!   [`NodeHandle::kill`](crate::node::NodeHandle::kill) drops the tasks that hold its
//!   sockets); nothing closes it under a handle still held, so [`NetError::Closed`] never
//!   comes from a real socket.

pub mod dns;
mod socket;
mod stream;
pub mod tcp;
#[path = "../../net/types.rs"]
mod types;
pub mod udp;

pub use dns::{lookup_host, ToSocketAddrs};
pub use socket::{Request, Socket};
pub use stream::MESSAGE_MAX_BYTES;
pub use tcp::{TcpListener, TcpStream};
pub use types::{Addr, NetError, RpcError};
pub use udp::UdpSocket;
