//! TCP streams with tokio's API ([`TcpListener`], [`TcpStream`]) on the simulated network.
//!
//! A service written against `tokio::net` runs unchanged when its imports are switched (by a
//! `cfg`) to these: `TcpListener::bind("0.0.0.0:8080")`, `TcpStream::connect("primary:8080")`
//! (node names resolve through [`super::dns`]), and the streams implement tokio's
//! [`AsyncRead`] and [`AsyncWrite`], so hyper, tonic or a hand-written codec run on them.
//!
//! # What is modelled
//! Each connection is a small TCP of its own over datagrams, run by a task on its node (the
//! node's "kernel": it dies with the node):
//! - **Handshake**: the client sends a SYN to the listener, which answers from a fresh socket
//!   for the connection; SYNs are retransmitted ([`SYN_RETRIES_MAX`] times), a SYN to a port
//!   with no listener is answered with a reset (`ConnectionRefused`), and a listener keeps at
//!   most [`BACKLOG_MAX`] connections waiting for `accept` (beyond, SYNs are ignored and the
//!   client retries, as Linux does).
//! - **Reliable, ordered bytes**: data travels in segments of at most [`SEGMENT_BYTES_MAX`]
//!   bytes, each an ordinary datagram of the network, so latency, jitter, loss, duplication,
//!   holds and partitions apply to segments exactly as to any message and the trace records
//!   every segment. Receivers acknowledge cumulatively, reassemble out-of-order segments and
//!   discard duplicates; senders retransmit unacknowledged data after a retransmission
//!   timeout that starts at [`RTO_INITIAL`] and doubles up to [`RTO_MAX`].
//! - **Back-pressure**: each side has a send buffer and a receive buffer of [`BUFFER_BYTES`].
//!   The receiver advertises the free space of its buffer; a sender never has more bytes in
//!   flight than that, and a write waits while its send buffer is full. A zero window is
//!   probed at every timeout, so a lost window update cannot stall a connection.
//! - **Breaks, with the errors a real stack returns**:
//!   - a connection whose segments go unacknowledged through [`RETRIES_MAX`] retransmissions
//!     (a partition longer than about 11 s, a peer that is down) fails with `TimedOut`; a
//!     shorter partition only delays it, as in real TCP;
//!   - a segment that reaches a node with no socket for it (the peer closed the connection,
//!     or crashed and restarted) is answered with a reset by the network on the node's
//!     behalf: the connection fails with `ConnectionReset` (`ConnectionRefused` during the
//!     handshake);
//!   - after a failure, the first write returns that error, later ones `BrokenPipe`; reads
//!     return what was received before the failure, then the error;
//!   - closing a stream that still has unread received data resets the connection, as Linux
//!     does; otherwise a close sends a FIN after the data, and the peer reads end-of-file.
//! - A crash of a node ends its connections at once (their tasks die with it); its peers
//!   learn it at their next segment (reset, once the node is back) or time out.
//!
//! # What differs from a real stack
//! - The accepted side of a connection sends from an ephemeral port of its node: the trace
//!   shows that port, while [`TcpStream::local_addr`] reports the listener's address.
//! - TCP, UDP and typed [`super::Socket`]s share one port space per node.
//! - No delayed acknowledgements, no Nagle, no congestion control: the window is the
//!   receiver's buffer. Timeouts are scaled to simulations (seconds, not Linux's minutes).
//! - `set_nodelay` and `set_ttl` are accepted and change nothing. Not provided: `peek`,
//!   `try_read`/`try_write`, `readable`/`writable`, `TcpSocket`, `from_std`/`into_std`.
//! - A connection joins the accept queue when its SYN arrives, before the handshake
//!   completes (Linux queues it after): a client that gives up right after its SYN leaves an
//!   accepted connection that times out.
//! - After a reset, reads return what had arrived before it, then the error (Linux discards
//!   it).
//! - The streams are not `Send` (the simulation runs on one thread): code with a `Send`
//!   bound on its I/O type (tower's or tonic's servers, hyper-util's executors) does not
//!   compile against them.
//!
//! The trace records `tcp-connect`, `tcp-accept`, `tcp-close`, `tcp-reset` and `tcp-timeout`
//! notes with both ends by node name.

use super::dns::{self, ToSocketAddrs};
use super::socket::{Queue, Socket};
use super::Addr;
use crate::time::Sleep;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest segment's payload, in bytes (an Ethernet MSS).
pub const SEGMENT_BYTES_MAX: usize = 1460;
/// Each side's send buffer and receive buffer, in bytes.
pub const BUFFER_BYTES: usize = 64 * 1024;
/// The first retransmission timeout (Linux's minimum).
pub const RTO_INITIAL: Duration = Duration::from_millis(200);
/// The longest retransmission timeout.
pub const RTO_MAX: Duration = Duration::from_secs(2);
/// Retransmissions of unacknowledged data before the connection fails with `TimedOut`
/// (about 11 s of silence with the timeouts above).
pub const RETRIES_MAX: u32 = 8;
/// Retransmissions of a SYN before `connect` fails with `TimedOut` (about 5 s).
pub const SYN_RETRIES_MAX: u32 = 4;
/// Connections a listener keeps waiting for `accept`.
pub const BACKLOG_MAX: usize = 128;
/// How long a closed connection waits for its peer's FIN, and then (TIME-WAIT) for a
/// retransmitted FIN to acknowledge again, before its socket is freed.
const LINGER: Duration = Duration::from_secs(5);
const TIME_WAIT: Duration = Duration::from_secs(1);
/// Handshakes a listener remembers, so that a late duplicate SYN is known to be stale.
const HANDSHAKES_REMEMBERED: usize = 4096;

/// What a connection's datagrams carry. Sequence numbers count bytes from 0 in each
/// direction; a FIN takes the number after the last byte.
#[derive(Debug, Serialize, Deserialize)]
enum Segment {
    /// Opens connection `isn` (unique in the run).
    Syn { isn: u64 },
    /// Accepts connection `isn`, from the accepted side's own socket.
    SynAck { isn: u64 },
    /// Bytes from `seq` on; empty: a window probe.
    Data {
        seq: u64,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Everything before `ack` arrived; `window` bytes of buffer are free.
    Ack { ack: u64, window: u32 },
    /// The sender writes nothing after `seq`.
    Fin { seq: u64 },
    /// The connection is reset.
    Rst,
}

impl Segment {
    /// What the kept timeline shows: the kind, the numbers, and data as text (HTTP reads as
    /// itself), with bytes that are not printable escaped.
    fn summary(&self) -> String {
        match self {
            Segment::Syn { isn } => format!("tcp syn {isn}"),
            Segment::SynAck { isn } => format!("tcp syn-ack {isn}"),
            Segment::Data { seq, bytes } if bytes.is_empty() => format!("tcp probe seq {seq}"),
            Segment::Data { seq, bytes } => {
                let text: String = String::from_utf8_lossy(&bytes[..bytes.len().min(160)])
                    .escape_debug()
                    .collect();
                format!("tcp data seq {seq} len {}: \"{text}\"", bytes.len())
            }
            Segment::Ack { ack, window } => format!("tcp ack {ack} window {window}"),
            Segment::Fin { seq } => format!("tcp fin seq {seq}"),
            Segment::Rst => "tcp rst".to_string(),
        }
    }
}

/// `Segment::Rst` as encoded by postcard (its variant index): the network answers with it.
const RESET_BYTES: [u8; 1] = [5];

/// The encoded reset that the network sends on behalf of a node (see `state::reset_if_tcp`).
pub(super) fn reset_segment() -> Vec<u8> {
    RESET_BYTES.to_vec()
}

/// Whether `payload` is an encoded reset.
pub(super) fn is_reset(payload: &[u8]) -> bool {
    payload == RESET_BYTES
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The client waits for the SYN-ACK.
    SynSent,
    /// Established (a FIN may have been sent or received).
    Open,
    /// Finished: closed cleanly or failed; the socket is freed.
    Closed,
}

/// One connection's state, shared by its kernel task and the application's handles.
struct Conn {
    socket: Option<Socket>,
    /// Reported by `local_addr` and `peer_addr`.
    local: SocketAddr,
    peer: SocketAddr,
    /// Where segments go: the listener until the SYN-ACK, then the peer's connection socket.
    peer_socket: Addr,
    isn: u64,
    phase: Phase,
    error: Option<io::ErrorKind>,
    /// The error was returned by a write once: later writes get `BrokenPipe`.
    write_error_reported: bool,
    /// Accepted side: the client has not answered the SYN-ACK yet.
    syn_ack_pending: bool,
    syn_due: bool,
    // Sending.
    send_buf: VecDeque<u8>,
    snd_una: u64,
    snd_nxt: u64,
    peer_window: u64,
    fin_queued: bool,
    fin_sent: bool,
    fin_acked: bool,
    probe_due: bool,
    // Receiving.
    recv_buf: VecDeque<u8>,
    rcv_nxt: u64,
    out_of_order: BTreeMap<u64, Vec<u8>>,
    peer_fin: Option<u64>,
    eof: bool,
    window_advertised: u64,
    ack_due: bool,
    // Timers.
    rto: Duration,
    retries: u32,
    retransmit: Option<Pin<Box<Sleep>>>,
    linger: Option<Pin<Box<Sleep>>>,
    // The application.
    read_open: bool,
    write_open: bool,
    /// The listener went away before this connection was accepted: reset it.
    reset_requested: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
    driver: Option<Waker>,
}

impl Conn {
    fn new(socket: Socket, local: SocketAddr, peer: SocketAddr, peer_socket: Addr) -> Self {
        Conn {
            socket: Some(socket),
            local,
            peer,
            peer_socket,
            isn: 0,
            phase: Phase::SynSent,
            error: None,
            write_error_reported: false,
            syn_ack_pending: false,
            syn_due: false,
            send_buf: VecDeque::new(),
            snd_una: 0,
            snd_nxt: 0,
            peer_window: BUFFER_BYTES as u64,
            fin_queued: false,
            fin_sent: false,
            fin_acked: false,
            probe_due: false,
            recv_buf: VecDeque::new(),
            rcv_nxt: 0,
            out_of_order: BTreeMap::new(),
            peer_fin: None,
            eof: false,
            window_advertised: BUFFER_BYTES as u64,
            ack_due: false,
            rto: RTO_INITIAL,
            retries: 0,
            retransmit: None,
            linger: None,
            read_open: true,
            write_open: true,
            reset_requested: false,
            reader: None,
            writer: None,
            driver: None,
        }
    }

    fn send(&mut self, to: Addr, segment: &Segment) {
        let Some(socket) = &self.socket else {
            return;
        };
        let payload = postcard::to_allocvec(segment).expect("a segment always encodes");
        match socket.send_encoded(to, payload, || segment.summary()) {
            Ok(()) => {}
            // The socket closed: its node is going down.
            Err(super::NetError::Closed) => self.fail(io::ErrorKind::ConnectionAborted),
            // Anything else loses this segment only; retransmission deals with it.
            Err(_) => {}
        }
    }

    fn wake_app(&mut self) {
        if let Some(waker) = self.reader.take() {
            waker.wake();
        }
        if let Some(waker) = self.writer.take() {
            waker.wake();
        }
    }

    fn wake_driver(&self) {
        if let Some(waker) = &self.driver {
            waker.wake_by_ref();
        }
    }

    fn window(&self) -> u64 {
        (BUFFER_BYTES - self.recv_buf.len()) as u64
    }

    fn note(&self, key: &str) {
        let (local, peer) = (name_of(self.local), name_of(self.peer));
        crate::trace::note(key, format!("{local} <-> {peer}"));
    }

    /// Ends the connection with `kind` (the first failure wins).
    fn fail(&mut self, kind: io::ErrorKind) {
        if self.phase == Phase::Closed {
            return;
        }
        self.error = Some(kind);
        let key = match kind {
            io::ErrorKind::TimedOut => "tcp-timeout",
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused => "tcp-reset",
            _ => "tcp-close",
        };
        self.note(key);
        self.close();
    }

    /// Frees the socket and wakes everyone: the kernel task ends at its next poll.
    fn close(&mut self) {
        if self.phase != Phase::Closed && self.error.is_none() {
            self.note("tcp-close");
        }
        self.phase = Phase::Closed;
        self.socket = None;
        self.retransmit = None;
        self.linger = None;
        self.wake_app();
        self.wake_driver();
    }

    /// Resets the connection from this side.
    fn abort(&mut self, kind: io::ErrorKind) {
        if self.phase == Phase::Open {
            let to = self.peer_socket;
            self.send(to, &Segment::Rst);
        }
        self.fail(kind);
    }

    fn on_segment(&mut self, from: Addr, segment: Segment) {
        match self.phase {
            Phase::Closed => {}
            Phase::SynSent => match segment {
                Segment::SynAck { isn } if isn == self.isn => {
                    self.peer_socket = from;
                    self.phase = Phase::Open;
                    self.retries = 0;
                    self.rto = RTO_INITIAL;
                    self.retransmit = None;
                    self.ack_due = true;
                    self.note("tcp-connect");
                    self.wake_app();
                }
                Segment::Rst if from == self.peer_socket => {
                    self.fail(io::ErrorKind::ConnectionRefused)
                }
                _ => {}
            },
            Phase::Open => {
                if from != self.peer_socket {
                    if let Segment::SynAck { .. } = segment {
                        // A stale handshake's answer: refuse it, as a real client does.
                        self.send(from, &Segment::Rst);
                    }
                    return;
                }
                self.syn_ack_pending = false;
                match segment {
                    Segment::Syn { .. } => {}
                    // Our acknowledgement of it was lost.
                    Segment::SynAck { .. } => self.ack_due = true,
                    Segment::Data { seq, bytes } => self.on_data(seq, bytes),
                    Segment::Fin { seq } => {
                        self.peer_fin = Some(seq);
                        self.ack_due = true;
                        self.take_fin();
                    }
                    Segment::Ack { ack, window } => self.on_ack(ack, u64::from(window)),
                    Segment::Rst => self.fail(io::ErrorKind::ConnectionReset),
                }
            }
        }
    }

    fn on_data(&mut self, seq: u64, bytes: Vec<u8>) {
        self.ack_due = true;
        if bytes.is_empty() {
            return; // A window probe: the acknowledgement is the answer.
        }
        let end = seq + bytes.len() as u64;
        if end <= self.rcv_nxt {
            return; // A duplicate: the acknowledgement tells the sender again.
        }
        if !self.read_open && !self.write_open {
            // The application closed the socket: nobody will ever read new bytes, a real
            // stack resets.
            return self.abort(io::ErrorKind::ConnectionReset);
        }
        if seq > self.rcv_nxt {
            if end <= self.rcv_nxt + self.window() {
                self.out_of_order.entry(seq).or_insert(bytes);
            }
            return;
        }
        self.take_in_order(seq, &bytes);
        while let Some(entry) = self.out_of_order.first_entry() {
            if *entry.key() > self.rcv_nxt {
                break;
            }
            let (seq, bytes) = entry.remove_entry();
            self.take_in_order(seq, &bytes);
        }
        self.take_fin();
        if let Some(waker) = self.reader.take() {
            waker.wake();
        }
    }

    /// Appends what `bytes` (starting at `seq`, at most `rcv_nxt`) adds, within the window.
    fn take_in_order(&mut self, seq: u64, bytes: &[u8]) {
        let end = seq + bytes.len() as u64;
        let window_end = self.rcv_nxt + self.window();
        if end <= self.rcv_nxt || self.eof {
            return;
        }
        let skip = (self.rcv_nxt - seq) as usize;
        let take = (end.min(window_end) - self.rcv_nxt) as usize;
        self.recv_buf.extend(&bytes[skip..skip + take]);
        self.rcv_nxt += take as u64;
    }

    fn take_fin(&mut self) {
        if !self.eof && self.peer_fin == Some(self.rcv_nxt) {
            self.eof = true;
            self.rcv_nxt += 1;
            if let Some(waker) = self.reader.take() {
                waker.wake();
            }
        }
    }

    fn on_ack(&mut self, ack: u64, window: u64) {
        if ack < self.snd_una {
            return; // An old acknowledgement, overtaken by jitter: its window is stale too.
        }
        let data_end = self.snd_una + self.send_buf.len() as u64;
        if ack > self.snd_una {
            let acked = (ack.min(data_end) - self.snd_una) as usize;
            self.send_buf.drain(..acked);
            self.snd_una += acked as u64;
            if self.fin_sent && ack > data_end {
                self.fin_acked = true;
            }
            self.snd_nxt = self.snd_nxt.max(self.snd_una);
            self.retries = 0;
            self.rto = RTO_INITIAL;
            self.retransmit = None;
            if let Some(waker) = self.writer.take() {
                waker.wake();
            }
        } else if self.window_blocked() && (self.read_open || self.write_open) {
            // A probe was answered: the peer is alive, only its reader is slow. An orphan
            // (the application closed the stream) is not kept alive by this, as Linux bounds
            // its orphans: it times out.
            self.retries = 0;
        }
        self.peer_window = window;
    }

    /// Bytes wait to be sent and the peer's window allows none of them.
    fn window_blocked(&self) -> bool {
        let data_end = self.snd_una + self.send_buf.len() as u64;
        self.snd_nxt < data_end && self.snd_nxt >= self.snd_una + self.peer_window
    }

    fn on_timeout(&mut self) {
        self.retransmit = None;
        self.retries += 1;
        let retries_max = match self.phase {
            Phase::SynSent => SYN_RETRIES_MAX,
            _ => RETRIES_MAX,
        };
        if self.retries > retries_max {
            return self.fail(io::ErrorKind::TimedOut);
        }
        self.rto = (self.rto * 2).min(RTO_MAX);
        match self.phase {
            Phase::SynSent => self.syn_due = true,
            Phase::Open => {
                self.syn_due = self.syn_ack_pending;
                // Go back to the first unacknowledged byte and send everything again.
                self.snd_nxt = self.snd_una;
                if self.fin_sent && !self.fin_acked {
                    self.fin_sent = false;
                }
                self.probe_due = self.window_blocked();
            }
            Phase::Closed => {}
        }
    }

    /// Sends what is due.
    fn transmit(&mut self) {
        match self.phase {
            Phase::Closed => return,
            Phase::SynSent => {
                if self.syn_due {
                    self.syn_due = false;
                    let (to, isn) = (self.peer_socket, self.isn);
                    self.send(to, &Segment::Syn { isn });
                }
            }
            Phase::Open => {
                let to = self.peer_socket;
                if self.syn_due {
                    self.syn_due = false;
                    let isn = self.isn;
                    self.send(to, &Segment::SynAck { isn });
                }
                let data_end = self.snd_una + self.send_buf.len() as u64;
                let window_end = self.snd_una + self.peer_window;
                while self.snd_nxt < data_end.min(window_end) {
                    let len = (data_end.min(window_end) - self.snd_nxt)
                        .min(SEGMENT_BYTES_MAX as u64) as usize;
                    let start = (self.snd_nxt - self.snd_una) as usize;
                    let bytes: Vec<u8> = self.send_buf.range(start..start + len).copied().collect();
                    let seq = self.snd_nxt;
                    self.snd_nxt += len as u64;
                    self.send(to, &Segment::Data { seq, bytes });
                }
                if self.probe_due {
                    self.probe_due = false;
                    let seq = self.snd_una;
                    let bytes = Vec::new();
                    self.send(to, &Segment::Data { seq, bytes });
                }
                if self.fin_queued && !self.fin_sent && self.snd_nxt == data_end {
                    self.fin_sent = true;
                    self.send(to, &Segment::Fin { seq: data_end });
                }
                if self.ack_due {
                    self.ack_due = false;
                    let window = self.window();
                    self.window_advertised = window;
                    let (ack, window) = (self.rcv_nxt, window as u32);
                    self.send(to, &Segment::Ack { ack, window });
                }
            }
        }
        if self.phase == Phase::Closed {
            return;
        }
        // A blocked window is probed at every timeout: the window update that would open it
        // may be lost.
        let outstanding = self.phase == Phase::SynSent
            || self.syn_ack_pending
            || self.snd_nxt > self.snd_una
            || (self.fin_sent && !self.fin_acked)
            || self.window_blocked();
        if !outstanding {
            self.retransmit = None;
        } else if self.retransmit.is_none() {
            self.retransmit = Some(Box::pin(crate::time::sleep(self.rto)));
        }
    }

    /// The kernel task's work: take segments, send what is due, run the timers.
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self
            .driver
            .as_ref()
            .is_none_or(|waker| !waker.will_wake(cx.waker()))
        {
            self.driver = Some(cx.waker().clone());
        }
        loop {
            while let Some(socket) = &self.socket {
                match socket.poll_queue(cx, Queue::Data) {
                    Poll::Ready(Ok(inbound)) => {
                        // What does not decode is not a segment of ours: a real stack drops it.
                        if let Ok(segment) = postcard::from_bytes::<Segment>(&inbound.payload) {
                            self.on_segment(inbound.from, segment);
                        }
                    }
                    Poll::Ready(Err(_)) => self.fail(io::ErrorKind::ConnectionAborted),
                    Poll::Pending => break,
                }
            }
            if self.phase == Phase::Closed {
                return Poll::Ready(());
            }
            let app_gone = !self.read_open && !self.write_open;
            if app_gone {
                if self.phase == Phase::SynSent || !self.recv_buf.is_empty() || self.reset_requested
                {
                    self.abort(io::ErrorKind::ConnectionAborted);
                    return Poll::Ready(());
                }
                self.fin_queued = true;
            }
            self.transmit();
            if self.phase == Phase::Closed {
                return Poll::Ready(());
            }
            // Both directions closed cleanly: wait a moment for a retransmitted FIN.
            let done = self.fin_acked && self.eof;
            let orphan = app_gone && self.fin_acked;
            if (done || orphan) && self.linger.is_none() {
                let wait = if done { TIME_WAIT } else { LINGER };
                self.linger = Some(Box::pin(crate::time::sleep(wait)));
            }
            if let Some(linger) = &mut self.linger {
                if linger.as_mut().poll(cx).is_ready() {
                    self.close();
                    return Poll::Ready(());
                }
            }
            let fired = match &mut self.retransmit {
                Some(timer) => timer.as_mut().poll(cx).is_ready(),
                None => false,
            };
            if !fired {
                return Poll::Pending;
            }
            self.on_timeout();
        }
    }

    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.recv_buf.is_empty() {
            let n = buf.remaining().min(self.recv_buf.len());
            let (front, back) = self.recv_buf.as_slices();
            let from_front = n.min(front.len());
            buf.put_slice(&front[..from_front]);
            buf.put_slice(&back[..n - from_front]);
            self.recv_buf.drain(..n);
            // Tell the sender the window opened once it is worth a segment.
            let half = (BUFFER_BYTES / 2) as u64;
            if self.window_advertised < half && self.window() >= half {
                self.ack_due = true;
                self.wake_driver();
            }
            return Poll::Ready(Ok(()));
        }
        if self.eof {
            return Poll::Ready(Ok(()));
        }
        if let Some(kind) = self.error {
            return Poll::Ready(Err(io::Error::from(kind)));
        }
        if self.phase == Phase::Closed {
            return Poll::Ready(Ok(()));
        }
        self.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(kind) = self.error {
            let kind = if self.write_error_reported {
                io::ErrorKind::BrokenPipe
            } else {
                kind
            };
            self.write_error_reported = true;
            return Poll::Ready(Err(io::Error::from(kind)));
        }
        if self.fin_queued || self.phase == Phase::Closed {
            return Poll::Ready(Err(io::Error::from(io::ErrorKind::BrokenPipe)));
        }
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let free = BUFFER_BYTES - self.send_buf.len();
        if free == 0 {
            self.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = free.min(data.len());
        self.send_buf.extend(&data[..n]);
        self.wake_driver();
        Poll::Ready(Ok(n))
    }

    fn shutdown_write(&mut self) {
        if !self.fin_queued {
            self.fin_queued = true;
            self.wake_driver();
        }
    }
}

/// `host:port` with the node's name, for notes.
fn name_of(addr: SocketAddr) -> String {
    match dns::ip_node(addr.ip()) {
        Some(node) => {
            let name = crate::world::with(|world| world.node(node).name.clone());
            format!("{name}:{}", addr.port())
        }
        None => addr.to_string(),
    }
}

fn not_on_node() -> io::Error {
    io::Error::from(super::NetError::NotOnNode)
}

/// Binds a TCP socket on the current node: `port` 0 picks an ephemeral one.
fn bind_socket(port: u16) -> io::Result<Socket> {
    let socket = Socket::bind(port)?;
    socket.set_tcp()?;
    Ok(socket)
}

/// Runs a connection's kernel task on the current node.
fn spawn_driver(conn: &Rc<RefCell<Conn>>) {
    let conn = Rc::clone(conn);
    crate::task::spawn(async move {
        poll_fn(|cx| conn.borrow_mut().drive(cx)).await;
    });
}

/// A TCP listener, as `tokio::net::TcpListener`.
///
/// Dropping it stops accepting: connections not accepted yet are reset.
pub struct TcpListener {
    shared: Rc<RefCell<Listening>>,
    task: crate::task::AbortHandle,
}

struct Listening {
    /// Taken when the listener is dropped, which frees the port at once.
    socket: Option<Socket>,
    local: SocketAddr,
    queue: VecDeque<Rc<RefCell<Conn>>>,
    /// Connections by their client's address and id, so that a retransmitted SYN gets the
    /// same connection's SYN-ACK again.
    handshakes: BTreeMap<(Addr, u64), Weak<RefCell<Conn>>>,
    /// The keys of `handshakes`, oldest first, to forget the oldest beyond the limit.
    handshakes_order: VecDeque<(Addr, u64)>,
    acceptor: Option<Waker>,
}

impl Listening {
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let Some(socket) = &self.socket else {
                return Poll::Ready(());
            };
            let inbound = match socket.poll_queue(cx, Queue::Data) {
                Poll::Ready(Ok(inbound)) => inbound,
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            };
            let Ok(Segment::Syn { isn }) = postcard::from_bytes::<Segment>(&inbound.payload) else {
                continue;
            };
            let key = (inbound.from, isn);
            if let Some(conn) = self.handshakes.get(&key) {
                // A retransmitted or duplicated SYN: answer again while the handshake is
                // open; one for a connection that is gone is stale.
                if let Some(conn) = conn.upgrade() {
                    let mut conn = conn.borrow_mut();
                    if conn.syn_ack_pending {
                        conn.syn_due = true;
                        conn.wake_driver();
                    }
                }
                continue;
            }
            if self.queue.len() >= BACKLOG_MAX {
                continue; // The client retries, as with a full Linux accept queue.
            }
            let Ok(socket) = bind_socket(0) else {
                continue; // No free port: the SYN goes unanswered.
            };
            let peer = dns::socket_addr(inbound.from);
            let mut conn = Conn::new(socket, self.local, peer, inbound.from);
            conn.isn = isn;
            conn.phase = Phase::Open;
            conn.syn_ack_pending = true;
            conn.syn_due = true;
            conn.note("tcp-accept");
            let conn = Rc::new(RefCell::new(conn));
            spawn_driver(&conn);
            self.handshakes.insert(key, Rc::downgrade(&conn));
            self.handshakes_order.push_back(key);
            if self.handshakes_order.len() > HANDSHAKES_REMEMBERED {
                let oldest = self
                    .handshakes_order
                    .pop_front()
                    .expect("longer than the limit");
                self.handshakes.remove(&oldest);
            }
            self.queue.push_back(conn);
            if let Some(waker) = self.acceptor.take() {
                waker.wake();
            }
        }
    }
}

impl TcpListener {
    /// Listens on `addr` of the current node (`0.0.0.0:port`, `localhost:port`, the node's
    /// name or address; port 0 picks a free one).
    ///
    /// Errors: `AddrInUse`, `AddrNotAvailable` (another node's address), `NotFound` (an
    /// unknown name), `Unsupported` on the supervisor.
    pub async fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        let node = crate::task::current_node().ok_or_else(not_on_node)?;
        let addr = dns::first_addr(&addr)?;
        if addr.node != node {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!(
                    "cannot bind {}: not this node's address",
                    dns::socket_addr(addr)
                ),
            ));
        }
        let socket = bind_socket(addr.port)?;
        let local = dns::socket_addr(socket.local_addr());
        let shared = Rc::new(RefCell::new(Listening {
            socket: Some(socket),
            local,
            queue: VecDeque::new(),
            handshakes: BTreeMap::new(),
            handshakes_order: VecDeque::new(),
            acceptor: None,
        }));
        let driven = Rc::clone(&shared);
        let task = crate::task::spawn(async move {
            poll_fn(|cx| driven.borrow_mut().drive(cx)).await;
        });
        Ok(TcpListener {
            shared,
            task: task.abort_handle(),
        })
    }

    /// Waits for the next connection; returns it with its peer's address.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Polls for the next connection, as `tokio::net::TcpListener::poll_accept`.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let mut shared = self.shared.borrow_mut();
        while let Some(conn) = shared.queue.pop_front() {
            let peer = conn.borrow().peer;
            // A connection that failed before it was accepted is skipped, as Linux does.
            if conn.borrow().phase != Phase::Closed {
                return Poll::Ready(Ok((TcpStream { conn }, peer)));
            }
        }
        shared.acceptor = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.shared.borrow().local)
    }

    /// Accepted and changes nothing (the simulated network has no TTL).
    pub fn set_ttl(&self, _ttl: u32) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        self.task.abort();
        // Freed now, so that the port can be bound again at once (the aborted task is only
        // dropped later); `Socket`'s drop is safe at teardown.
        let socket = self.shared.borrow_mut().socket.take();
        drop(socket);
        // Drop may run at teardown, when the world is gone: the connections' own tasks reset
        // them.
        let queue = std::mem::take(&mut self.shared.borrow_mut().queue);
        for conn in queue {
            let mut conn = conn.borrow_mut();
            conn.read_open = false;
            conn.write_open = false;
            conn.reset_requested = true;
            conn.wake_driver();
        }
    }
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener")
            .field("local", &self.shared.borrow().local)
            .finish()
    }
}

/// A TCP connection, as `tokio::net::TcpStream`: tokio's [`AsyncRead`] and [`AsyncWrite`].
///
/// `poll_flush` does nothing (the bytes are with the simulated kernel, as with a real
/// socket); `poll_shutdown` sends a FIN after the buffered bytes. Dropping it closes the
/// connection (a reset if received bytes were left unread).
pub struct TcpStream {
    conn: Rc<RefCell<Conn>>,
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let conn = self.conn.borrow();
        f.debug_struct("TcpStream")
            .field("local", &conn.local)
            .field("peer", &conn.peer)
            .finish()
    }
}

impl TcpStream {
    /// Connects to `addr` (`"primary:8080"`, a node's address...).
    ///
    /// Errors: `ConnectionRefused` (nothing listens there), `TimedOut` (no answer to
    /// [`SYN_RETRIES_MAX`] retransmitted SYNs: the node is down or cut off), `NotFound` (an
    /// unknown name), `AddrNotAvailable`, `Unsupported` on the supervisor.
    pub async fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        crate::task::current_node().ok_or_else(not_on_node)?;
        let target = dns::first_addr(&addr)?;
        let socket = bind_socket(0)?;
        let local = dns::socket_addr(socket.local_addr());
        let mut conn = Conn::new(socket, local, dns::socket_addr(target), target);
        conn.isn = crate::world::with(|world| {
            let isn = world.net.tcp_next_isn;
            world.net.tcp_next_isn += 1;
            isn
        });
        conn.syn_due = true;
        let stream = TcpStream {
            conn: Rc::new(RefCell::new(conn)),
        };
        spawn_driver(&stream.conn);
        poll_fn(|cx| {
            let mut conn = stream.conn.borrow_mut();
            match conn.phase {
                Phase::Open => Poll::Ready(Ok(())),
                Phase::Closed => Poll::Ready(Err(io::Error::from(
                    conn.error.unwrap_or(io::ErrorKind::ConnectionAborted),
                ))),
                Phase::SynSent => {
                    conn.writer = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await?;
        Ok(stream)
    }

    /// This end's address (for an accepted stream, the listener's).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.conn.borrow().local)
    }

    /// The other end's address (for a connected stream, the address it connected to).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.conn.borrow().peer)
    }

    /// Accepted and changes nothing (segments are never delayed for coalescing).
    pub fn set_nodelay(&self, _nodelay: bool) -> io::Result<()> {
        Ok(())
    }

    /// Always `true`: segments are never delayed for coalescing.
    pub fn nodelay(&self) -> io::Result<bool> {
        Ok(true)
    }

    /// Accepted and changes nothing (the simulated network has no TTL).
    pub fn set_ttl(&self, _ttl: u32) -> io::Result<()> {
        Ok(())
    }

    /// Splits into halves that borrow the stream.
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        (ReadHalf { stream: self }, WriteHalf { stream: self })
    }

    /// Splits into halves that own the connection (each can move to its own task). Dropping
    /// the write half shuts the writing direction down, as tokio's does.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        let conn = Rc::clone(&self.conn);
        // The halves take over closing the directions.
        std::mem::forget(self);
        let read = OwnedReadHalf {
            conn: Rc::clone(&conn),
        };
        (read, OwnedWriteHalf { conn })
    }
}

impl Drop for TcpStream {
    fn drop(&mut self) {
        let mut conn = self.conn.borrow_mut();
        conn.read_open = false;
        conn.write_open = false;
        conn.wake_driver();
    }
}

/// The reading half of [`TcpStream::split`].
#[derive(Debug)]
pub struct ReadHalf<'a> {
    stream: &'a TcpStream,
}

/// The writing half of [`TcpStream::split`].
#[derive(Debug)]
pub struct WriteHalf<'a> {
    stream: &'a TcpStream,
}

/// The reading half of [`TcpStream::into_split`].
pub struct OwnedReadHalf {
    conn: Rc<RefCell<Conn>>,
}

/// The writing half of [`TcpStream::into_split`]; dropping it shuts the writing direction
/// down.
pub struct OwnedWriteHalf {
    conn: Rc<RefCell<Conn>>,
}

impl std::fmt::Debug for OwnedReadHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedReadHalf").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for OwnedWriteHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedWriteHalf").finish_non_exhaustive()
    }
}

impl OwnedReadHalf {
    /// The other end's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.conn.borrow().peer)
    }

    /// This end's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.conn.borrow().local)
    }
}

impl OwnedWriteHalf {
    /// The other end's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.conn.borrow().peer)
    }

    /// This end's address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.conn.borrow().local)
    }
}

impl Drop for OwnedReadHalf {
    fn drop(&mut self) {
        let mut conn = self.conn.borrow_mut();
        conn.read_open = false;
        conn.wake_driver();
    }
}

impl Drop for OwnedWriteHalf {
    fn drop(&mut self) {
        let mut conn = self.conn.borrow_mut();
        conn.write_open = false;
        conn.shutdown_write();
    }
}

/// tokio's I/O traits for a handle, given how it reaches its connection: every handle reads
/// and writes through [`Conn`]; flushing has nothing to wait for (the bytes are with the
/// simulated kernel), and a shutdown sends a FIN after them.
macro_rules! impl_io {
    (read $handle:ty, |$this:ident| $conn:expr) => {
        impl AsyncRead for $handle {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                let $this = &*self;
                $conn.borrow_mut().poll_read(cx, buf)
            }
        }
    };
    (write $handle:ty, |$this:ident| $conn:expr) => {
        impl AsyncWrite for $handle {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                data: &[u8],
            ) -> Poll<io::Result<usize>> {
                let $this = &*self;
                $conn.borrow_mut().poll_write(cx, data)
            }

            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }

            fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                let $this = &*self;
                $conn.borrow_mut().shutdown_write();
                Poll::Ready(Ok(()))
            }
        }
    };
}

impl_io!(read TcpStream, |this| this.conn);
impl_io!(write TcpStream, |this| this.conn);
impl_io!(read ReadHalf<'_>, |this| this.stream.conn);
impl_io!(write WriteHalf<'_>, |this| this.stream.conn);
impl_io!(read OwnedReadHalf, |this| this.conn);
impl_io!(write OwnedWriteHalf, |this| this.conn);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_reset_is_an_encoded_rst() {
        let encoded = postcard::to_allocvec(&Segment::Rst).unwrap();
        assert_eq!(encoded, reset_segment());
        assert!(is_reset(&encoded));
        let data = postcard::to_allocvec(&Segment::Data {
            seq: 0,
            bytes: vec![5],
        })
        .unwrap();
        assert!(!is_reset(&data));
    }
}
