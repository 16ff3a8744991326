//! Messages too large for one UDP datagram: a real [`Socket`](super::Socket) carries each over
//! a TCP connection of its own, as DNS falls back to TCP for an answer that does not fit.
//!
//! Every socket listens on the TCP port of the same number as its UDP port (in a simulation
//! the two share one port space, so node code tested there never takes both). A message
//! whose envelope is longer than [`DATAGRAM_MAX_BYTES`](super::udp::DATAGRAM_MAX_BYTES) is sent
//! from the sender's node address to the receiver's TCP port, as a frame: the sending
//! socket's port (2 bytes, big-endian; the connection itself leaves from a port the kernel
//! picks), the envelope's length (4 bytes, big-endian), then the envelope, exactly as a
//! datagram would carry it. Then the connection closes. The receiver reads frames while its
//! socket is polled, as it reads datagrams, and files each envelope as if it had come in one
//! datagram.
//!
//! The datagram promise holds, and no more: such a message may be lost (a connection refused
//! or cut, a receiver killed, a frame not done within [`STREAM_TIMEOUT`]), and nothing tells
//! the sender. Everything is bounded: the frame's length ([`MESSAGE_MAX_BYTES`]), the frames
//! a socket sends at once ([`OUTGOING_MAX`]) and reads at once ([`INCOMING_MAX`]), and the
//! time either takes.

use crate::node::NodeId;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// The longest envelope a real socket sends, in bytes (16 MiB); a longer one is refused at the
/// sender with [`NetError::Encode`](super::NetError::Encode).
pub const MESSAGE_MAX_BYTES: usize = 16 << 20;
/// A frame's header: the sending socket's port (2 bytes) and the envelope's length (4 bytes).
const HEADER_BYTES: usize = 6;
/// Frames a socket sends at once; beyond, a message is lost (with a warning).
pub(super) const OUTGOING_MAX: usize = 64;
/// Frames a socket reads at once; beyond, the oldest connection is dropped (with a warning).
pub(super) const INCOMING_MAX: usize = 64;
/// How long a frame may take, on either side, before it is given up.
pub(super) const STREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections accepted in one read, before the other tasks get a turn.
const ACCEPT_BATCH: usize = 16;

/// The frame that carries `envelope` from the socket on `port`.
fn frame_header(port: u16, envelope: &[u8]) -> [u8; HEADER_BYTES] {
    let length = u32::try_from(envelope.len()).expect("the length was checked against the limit");
    let mut header = [0; HEADER_BYTES];
    header[..2].copy_from_slice(&port.to_be_bytes());
    header[2..].copy_from_slice(&length.to_be_bytes());
    header
}

/// The sending side of a socket: delivers frames in tasks of their own, so that `send` and
/// `reply` stay non-waiting as they are for datagrams.
pub(super) struct Outgoing {
    /// The node of the socket: a kill aborts its deliveries.
    node: NodeId,
    /// The node's address: connections leave from it, so the receiver knows who sent.
    ip: IpAddr,
    port: u16,
    in_flight: Arc<AtomicUsize>,
}

/// Counts a delivery in flight until it ends, however it ends (delivered, failed, timed out,
/// aborted by a kill).
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Outgoing {
    pub(super) fn new(node: NodeId, ip: IpAddr, port: u16) -> Outgoing {
        Outgoing {
            node,
            ip,
            port,
            in_flight: Arc::default(),
        }
    }

    /// Starts delivering `envelope` (checked to be at most [`MESSAGE_MAX_BYTES`]) to the socket
    /// at `target`. A message that cannot start is lost, with a warning.
    pub(super) fn send(&self, target: SocketAddr, envelope: Vec<u8>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                port = self.port, %target,
                "a message too large for a datagram needs a tokio runtime to go over TCP: it is lost"
            );
            return;
        };
        if self.in_flight.fetch_add(1, Ordering::Relaxed) >= OUTGOING_MAX {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(
                port = self.port, %target,
                "{OUTGOING_MAX} large messages are on their way from this socket: one more is lost"
            );
            return;
        }
        let in_flight = InFlight(self.in_flight.clone());
        let (ip, port) = (self.ip, self.port);
        let delivery = runtime.spawn(async move {
            let _in_flight = in_flight;
            let delivered = tokio::time::timeout(STREAM_TIMEOUT, deliver(ip, port, target, envelope));
            match delivered.await {
                Ok(Ok(())) => {}
                // Lost, as a datagram to a host that is down would be; said at debug level as
                // the simulation's drops are, since a down receiver is an everyday event.
                Ok(Err(error)) => tracing::debug!(
                    port, %target, %error,
                    "a large message could not be delivered over TCP: it is lost"
                ),
                Err(_) => tracing::debug!(
                    port, %target,
                    "a large message was not delivered over TCP within {STREAM_TIMEOUT:?}: it is lost"
                ),
            }
        });
        crate::node::register(self.node, delivery.abort_handle());
    }
}

/// Connects from `ip` to `target` and writes the frame of `envelope`.
async fn deliver(ip: IpAddr, port: u16, target: SocketAddr, envelope: Vec<u8>) -> io::Result<()> {
    let socket = match ip {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    let mut stream = socket.connect(target).await?;
    stream.write_all(&frame_header(port, &envelope)).await?;
    stream.write_all(&envelope).await?;
    stream.shutdown().await
}

/// A connection being read.
struct Incoming {
    stream: tokio::net::TcpStream,
    /// Where it comes from (the port the kernel picked).
    peer: SocketAddr,
    since: Instant,
    /// What has been read so far: the header, then the envelope.
    bytes: Vec<u8>,
}

/// What reading an incoming connection came to.
enum Read {
    /// The whole frame: the sending socket's port and the envelope.
    Frame(u16, Vec<u8>),
    /// Not yet: the reactor will wake the socket's waiters when more arrives.
    Pending,
    /// Given up, with why.
    Failed(String),
}

impl Incoming {
    fn read(&mut self, cx: &mut Context<'_>) -> Read {
        loop {
            let wanted = match self.header() {
                None => HEADER_BYTES,
                Some((_, 0)) => return Read::Failed("its frame announces no bytes".to_string()),
                Some((_, length)) if length > MESSAGE_MAX_BYTES => {
                    return Read::Failed(format!(
                        "its frame announces {length} bytes, more than the {MESSAGE_MAX_BYTES} \
                         a socket accepts"
                    ))
                }
                Some((_, length)) => HEADER_BYTES + length,
            };
            if self.bytes.len() == wanted && wanted > HEADER_BYTES {
                let (port, _) = self.header().expect("the header was read");
                return Read::Frame(port, self.bytes.split_off(HEADER_BYTES));
            }
            // Grown as bytes arrive, not to the announced length at once: a header alone must
            // not make the receiver allocate 16 MiB.
            let start = self.bytes.len();
            let chunk = (wanted - start).min(1 << 16);
            self.bytes.resize(start + chunk, 0);
            match self.stream.try_read(&mut self.bytes[start..]) {
                Ok(0) => {
                    self.bytes.truncate(start);
                    return Read::Failed(format!(
                        "the connection closed after {start} of the frame's {wanted} bytes"
                    ));
                }
                Ok(read) => self.bytes.truncate(start + read),
                Err(error) => {
                    self.bytes.truncate(start);
                    if error.kind() != io::ErrorKind::WouldBlock {
                        return Read::Failed(format!("reading it failed: {error}"));
                    }
                    match self.stream.poll_read_ready(cx) {
                        Poll::Ready(Ok(())) => continue,
                        Poll::Ready(Err(error)) => {
                            return Read::Failed(format!("reading it failed: {error}"))
                        }
                        Poll::Pending => return Read::Pending,
                    }
                }
            }
        }
    }

    /// The sending socket's port and the envelope's length, once the header is read.
    fn header(&self) -> Option<(u16, usize)> {
        let header = self.bytes.get(..HEADER_BYTES)?;
        let port = u16::from_be_bytes([header[0], header[1]]);
        let length = u32::from_be_bytes([header[2], header[3], header[4], header[5]]);
        Some((port, length as usize))
    }
}

/// The receiving side of a socket: its TCP listener and the connections being read.
pub(super) struct Incomings {
    listener: tokio::net::TcpListener,
    reading: Vec<Incoming>,
}

impl Incomings {
    pub(super) fn new(listener: tokio::net::TcpListener) -> Incomings {
        Incomings {
            listener,
            reading: Vec::new(),
        }
    }

    /// Accepts what connected and reads what arrived, handing each whole frame to `file` with
    /// the address of the socket that sent it (the connection's address, with the frame's
    /// port). `socket` names the receiving socket in warnings.
    pub(super) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        socket: &dyn std::fmt::Display,
        mut file: impl FnMut(SocketAddr, &[u8]),
    ) {
        for _ in 0..ACCEPT_BATCH {
            match self.listener.poll_accept(cx) {
                Poll::Ready(Ok((stream, peer))) => {
                    if self.reading.len() >= INCOMING_MAX {
                        let oldest = self.reading.remove(0);
                        tracing::warn!(
                            %socket, peer = %oldest.peer,
                            "{INCOMING_MAX} large messages are arriving at once: the oldest is dropped"
                        );
                    }
                    self.reading.push(Incoming {
                        stream,
                        peer,
                        since: Instant::now(),
                        bytes: Vec::new(),
                    });
                }
                Poll::Ready(Err(error)) => {
                    // A connection that failed before it was accepted (reset, out of
                    // descriptors): lost, as a datagram the kernel could not queue.
                    tracing::warn!(%socket, %error, "accepting a large message failed");
                    break;
                }
                Poll::Pending => break,
            }
        }
        self.reading.retain_mut(|incoming| match incoming.read(cx) {
            Read::Frame(port, envelope) => {
                file(SocketAddr::new(incoming.peer.ip(), port), &envelope);
                false
            }
            Read::Pending if incoming.since.elapsed() > STREAM_TIMEOUT => {
                tracing::warn!(
                    %socket, peer = %incoming.peer,
                    "a large message took longer than {STREAM_TIMEOUT:?} to arrive: it is dropped"
                );
                false
            }
            Read::Pending => true,
            Read::Failed(why) => {
                tracing::warn!(
                    %socket, peer = %incoming.peer,
                    "a large message is dropped: {why}"
                );
                false
            }
        });
    }
}
