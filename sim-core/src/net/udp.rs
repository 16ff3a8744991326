//! A UDP socket with tokio's shape, on the simulated network.
//!
//! [`UdpSocket`] has the names and signatures of `tokio::net::UdpSocket` (every method returns
//! `std::io::Result`), so a service written against tokio runs unchanged when a `cfg` switches
//! its imports to sim-core's:
//!
//! ```
//! #[cfg(madsim)]
//! use sim_core::net::UdpSocket;
//! #[cfg(not(madsim))]
//! use tokio::net::UdpSocket;
//! # fn main() {}
//! ```
//!
//! Each datagram is one datagram message of a typed [`Socket`], carrying the bytes as a
//! `serde_bytes` buffer: loss, duplication, reordering, partitions, holds and crashes apply to
//! it exactly as to any other message, and the trace records every datagram. Hosts are node
//! names or node addresses (see [`super::dns`]): `UdpSocket::bind("0.0.0.0:53")` on the node
//! `server`, and `send_to(b"ping", "server:53")` from any other node.
//!
//! ```
//! use sim_core::net::UdpSocket;
//! use sim_core::{run, SimConfig};
//! use std::time::Duration;
//!
//! let report = run(3, SimConfig::default(), |sim| async move {
//!     sim.node("server")
//!         .init(|| async {
//!             let socket = UdpSocket::bind("0.0.0.0:53").await.unwrap();
//!             let mut buf = [0u8; 512];
//!             // Echo every datagram to its sender.
//!             while let Ok((len, from)) = socket.recv_from(&mut buf).await {
//!                 socket.send_to(&buf[..len], from).await.unwrap();
//!             }
//!         })
//!         .build();
//!     sim.node("client")
//!         .init(|| async {
//!             let socket = UdpSocket::bind("0.0.0.0:0").await.unwrap();
//!             socket.connect("server:53").await.unwrap();
//!             socket.send(b"ping").await.unwrap();
//!             let mut buf = [0u8; 512];
//!             let len = socket.recv(&mut buf).await.unwrap();
//!             assert_eq!(&buf[..len], b"ping");
//!         })
//!         .build();
//!     sim.sleep(Duration::from_millis(100)).await;
//!     Ok(())
//! });
//! assert!(report.outcome.is_pass(), "{}", report.outcome);
//! ```
//!
//! ## Simplifications
//! - UDP sockets and the other sockets of a node share one port space: a UDP socket and a
//!   [`Socket`] (or a TCP listener) cannot have the same port number, as they could on a real
//!   host.
//! - A datagram sent to a port where nothing is bound is dropped
//!   ([`super::DropReason::NoSocket`] in the trace); no ICMP error comes back, so a connected
//!   socket never sees `ConnectionRefused`.
//! - A link made ordered ([`super::LinkConfig::ordered`]) orders datagrams too.
//! - [`UdpSocket::local_addr`] names the node's own address, also for a socket bound to
//!   `0.0.0.0`, because that is the address its peers see.
//! - The socket is not `Send`: the whole simulation runs on one thread, and tasks spawned with
//!   [`crate::task::spawn`] need not be `Send`. Share it between a node's tasks with an `Rc`.

use super::dns::{first_addr, node_ip, socket_addr, ToSocketAddrs};
use super::{Addr, NetError, Socket};
use serde_bytes::{ByteBuf, Bytes};
use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;

/// The largest payload of one datagram, in bytes: what fits in an IPv4 UDP packet (65,535
/// bytes less 20 of IP header and 8 of UDP header).
pub const DATAGRAM_MAX_BYTES: usize = 65_507;

/// A datagram received: its sender and its bytes.
type Datagram = (Addr, ByteBuf);

/// A UDP socket on the current node, with the methods of `tokio::net::UdpSocket`.
///
/// A datagram longer than the buffer it is read into is truncated and the rest discarded, as
/// real UDP does. Once [`UdpSocket::connect`]ed, the socket sends to its peer with
/// [`UdpSocket::send`] and receives only from it: datagrams from any other address are
/// discarded when they are read, as the operating system does.
///
/// Dropping the socket closes it. A crash of its node closes it too: every operation then
/// fails with `io::ErrorKind::NotConnected`, also after the node restarted.
///
/// A message that a typed [`Socket`] sent to its port is read as a byte buffer from its
/// encoding; when that encoding is not one (most are not), the next receive consumes it and
/// fails with `io::ErrorKind::InvalidData`. A real UDP socket never sees such a message: it
/// is a bug of the test.
#[derive(Debug)]
pub struct UdpSocket {
    socket: Socket,
    /// The connected peer, if any.
    peer: Cell<Option<Addr>>,
    /// A datagram that a peek took from the inbox and the next receive returns: a peek must
    /// not consume, and the typed socket's inbox can only be taken from.
    peeked: RefCell<Option<Datagram>>,
}

impl UdpSocket {
    /// Binds a socket to `addr` on the current node: `0.0.0.0:port`, `127.0.0.1:port`,
    /// `localhost:port`, or the node's own address or name (port `0`: a free ephemeral port).
    ///
    /// Errors: `AddrNotAvailable` for another node's address (or one that is no node's),
    /// `AddrInUse` for a port taken by any socket of the node, `NotFound` for an unknown host,
    /// and `Unsupported` on the supervisor, which has no address.
    pub async fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        let current = crate::task::current_node().ok_or(NetError::NotOnNode)?;
        let wanted = first_addr(&addr)?;
        if wanted.node != current {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!(
                    "cannot bind {}: it is the address of node {}, not of this node {current} ({})",
                    socket_addr(wanted),
                    wanted.node,
                    node_ip(current),
                ),
            ));
        }
        Ok(UdpSocket {
            socket: Socket::bind(wanted.port)?,
            peer: Cell::new(None),
            peeked: RefCell::new(None),
        })
    }

    /// The address this socket is bound to (the node's own address, see the module docs).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(socket_addr(self.socket.local_addr()))
    }

    /// The connected peer; `NotConnected` if the socket was never connected.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        match self.peer.get() {
            Some(peer) => Ok(socket_addr(peer)),
            None => Err(not_connected()),
        }
    }

    /// Connects the socket to `addr`: [`UdpSocket::send`] sends there, and every receive
    /// takes only datagrams from there (others are discarded). Connecting again replaces the
    /// peer.
    pub async fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        let peer = first_addr(&addr)?;
        // A closed socket cannot connect; an open one sends nothing: UDP has no handshake.
        self.socket.queued()?;
        self.peer.set(Some(peer));
        Ok(())
    }

    /// Sends `buf` as one datagram to `target`; returns its length. The network may lose,
    /// duplicate, delay or reorder it, and nothing tells the sender.
    ///
    /// Errors: `InvalidInput` for more than [`DATAGRAM_MAX_BYTES`], `NotFound` for an unknown
    /// host, `AddrNotAvailable` for an address that is no node's, `NotConnected` once the
    /// socket is closed.
    pub async fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], target: A) -> io::Result<usize> {
        let to = first_addr(&target)?;
        self.send_datagram(buf, to)
    }

    /// [`UdpSocket::send_to`] without waiting (a simulated send never has to).
    pub fn try_send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        let to = super::dns::sim_addr(target)?;
        self.send_datagram(buf, to)
    }

    /// Sends `buf` as one datagram to the connected peer; `NotConnected` if there is none.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.try_send(buf)
    }

    /// [`UdpSocket::send`] without waiting (a simulated send never has to).
    pub fn try_send(&self, buf: &[u8]) -> io::Result<usize> {
        let peer = self.peer.get().ok_or_else(not_connected)?;
        self.send_datagram(buf, peer)
    }

    fn send_datagram(&self, buf: &[u8], to: Addr) -> io::Result<usize> {
        if buf.len() > DATAGRAM_MAX_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "datagram of {} bytes is larger than UDP's maximum of {DATAGRAM_MAX_BYTES}",
                    buf.len()
                ),
            ));
        }
        self.socket.send(to, Bytes::new(buf))?;
        Ok(buf.len())
    }

    /// Waits for a datagram and copies it into `buf`; returns the bytes copied and the sender.
    /// A datagram longer than `buf` is truncated, the rest discarded.
    ///
    /// Cancel-safe: a datagram is taken only when this returns it.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (from, datagram) = self.recv_datagram().await?;
        Ok((copy_truncated(buf, &datagram), socket_addr(from)))
    }

    /// [`UdpSocket::recv_from`] without waiting: `WouldBlock` when no datagram is queued.
    pub fn try_recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (from, datagram) = self.try_recv_datagram()?;
        Ok((copy_truncated(buf, &datagram), socket_addr(from)))
    }

    /// Waits for a datagram and copies it into `buf` (truncated as in
    /// [`UdpSocket::recv_from`]); returns the bytes copied. On a connected socket only the
    /// peer's datagrams are taken; on an unconnected one, anyone's (as on Linux).
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let (_, datagram) = self.recv_datagram().await?;
        Ok(copy_truncated(buf, &datagram))
    }

    /// [`UdpSocket::recv`] without waiting: `WouldBlock` when no datagram is queued.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        let (_, datagram) = self.try_recv_datagram()?;
        Ok(copy_truncated(buf, &datagram))
    }

    /// Waits for a datagram and copies it into `buf` without taking it: the next receive
    /// returns the same datagram.
    pub async fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (from, datagram) = self.peek_datagram().await?;
        Ok((copy_truncated(buf, &datagram), socket_addr(from)))
    }

    /// Waits for a datagram and returns its sender without taking it.
    pub async fn peek_sender(&self) -> io::Result<SocketAddr> {
        let (from, _) = self.peek_datagram().await?;
        Ok(socket_addr(from))
    }

    /// Whether a datagram from `from` is taken: from anyone unless the socket is connected.
    fn accepts(&self, from: Addr) -> bool {
        self.peer.get().is_none_or(|peer| peer == from)
    }

    /// The datagram a peek left, if the socket is still open and it is still accepted.
    fn take_peeked(&self) -> io::Result<Option<Datagram>> {
        self.socket.queued()?;
        let peeked = self.peeked.borrow_mut().take();
        Ok(peeked.filter(|(from, _)| self.accepts(*from)))
    }

    async fn recv_datagram(&self) -> io::Result<Datagram> {
        if let Some(datagram) = self.take_peeked()? {
            return Ok(datagram);
        }
        loop {
            let (from, bytes) = self.socket.recv::<ByteBuf>().await?;
            if self.accepts(from) {
                return Ok((from, bytes));
            }
        }
    }

    fn try_recv_datagram(&self) -> io::Result<Datagram> {
        if let Some(datagram) = self.take_peeked()? {
            return Ok(datagram);
        }
        loop {
            match self.socket.try_recv::<ByteBuf>()? {
                None => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "no datagram is queued",
                    ))
                }
                Some((from, bytes)) if self.accepts(from) => return Ok((from, bytes)),
                Some(_) => {}
            }
        }
    }

    async fn peek_datagram(&self) -> io::Result<Datagram> {
        let datagram = self.recv_datagram().await?;
        // Nothing awaits between the receive and this: a cancelled peek loses nothing.
        *self.peeked.borrow_mut() = Some(datagram.clone());
        Ok(datagram)
    }
}

fn not_connected() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "the UDP socket is not connected: call connect first",
    )
}

/// Copies what fits of `datagram` into `buf`; the rest is discarded.
fn copy_truncated(buf: &mut [u8], datagram: &[u8]) -> usize {
    let len = buf.len().min(datagram.len());
    buf[..len].copy_from_slice(&datagram[..len]);
    len
}
