//! Sockets in a real build: typed messages and RPC over one real UDP socket each (and TCP for
//! a message too large for a datagram: see `stream.rs`).

use super::stream::{Incomings, Outgoing, MESSAGE_MAX_BYTES};
use super::udp::DATAGRAM_MAX_BYTES;
use super::{Addr, NetError, RpcError};
use crate::node::{NodeId, NodeSpec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::future::{poll_fn, Future};
use std::io;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;
use tokio::io::ReadBuf;

/// Messages (data and requests) a socket keeps received and unread; beyond, arrivals are
/// dropped. The simulation's default inbox capacity.
const INBOX_CAPACITY: usize = 1_024;
/// The bytes of the messages a socket keeps received and unread; beyond, arrivals are dropped.
/// (The simulation counts messages only; a real process must bound its memory too.)
const INBOX_BYTES_MAX: usize = 64 << 20;
/// Ports the operating system picks for a `bind(0)` before one is free for UDP and TCP both.
const BIND_ATTEMPTS: usize = 64;
/// The first byte of every envelope: the version of its format.
const ENVELOPE_VERSION: u8 = 1;
/// Datagrams read from the operating system in one go, before the other tasks get a turn.
const READ_BATCH: usize = 256;
/// Distinct waiting tasks a socket remembers; beyond, all are woken and forgotten (those still
/// waiting register again), so that tasks that stopped waiting cannot pile up.
const WAITERS_MAX: usize = 1_024;
/// The receive buffer: more than any UDP payload, so a datagram is never cut short.
const RECEIVE_BUFFER_BYTES: usize = 65_536;

thread_local! {
    /// One receive buffer for every socket of the thread: a datagram is copied out of it
    /// before the next is read, and no read runs inside another.
    static RECEIVE_BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What a datagram is: its envelope's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Kind {
    /// A message sent with [`Socket::send`].
    Data,
    /// A request of [`Socket::call`], with its correlation id.
    Request { call: u64 },
    /// The response to the request with this correlation id.
    Response { call: u64 },
}

/// A message in the inbox, still encoded.
struct Inbound {
    from: Addr,
    /// The correlation id of a request (0 for data).
    call: u64,
    payload: Vec<u8>,
}

/// A call waiting for its response.
struct PendingCall {
    /// The server called: only it may answer.
    to: Addr,
    /// The response, once it arrived.
    response: Option<Vec<u8>>,
}

#[derive(Default)]
struct Inbox {
    data: VecDeque<Inbound>,
    requests: VecDeque<Inbound>,
    /// The payload bytes of `data` and `requests`.
    bytes: usize,
    calls: BTreeMap<u64, PendingCall>,
    next_call: u64,
}

impl Inbox {
    fn queued(&self) -> usize {
        self.data.len() + self.requests.len()
    }

    fn pop_data(&mut self) -> Option<Inbound> {
        let inbound = self.data.pop_front()?;
        self.bytes -= inbound.payload.len();
        Some(inbound)
    }

    fn pop_request(&mut self) -> Option<Inbound> {
        let inbound = self.requests.pop_front()?;
        self.bytes -= inbound.payload.len();
        Some(inbound)
    }
}

/// The tasks waiting on a socket. As a waker (given to tokio's reactor) it wakes them all.
/// A `Mutex`, not a `RefCell`: a `Waker` must be `Send` and `Sync`, though every task of a
/// socket runs on its one thread.
#[derive(Default)]
struct Waiters {
    wakers: Mutex<Vec<Waker>>,
}

impl Waiters {
    fn register(&self, waker: &Waker) {
        let overflow = {
            let mut wakers = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
            if wakers.iter().any(|known| known.will_wake(waker)) {
                return;
            }
            let overflow = if wakers.len() >= WAITERS_MAX {
                std::mem::take(&mut *wakers)
            } else {
                Vec::new()
            };
            wakers.push(waker.clone());
            overflow
        };
        overflow.into_iter().for_each(Waker::wake);
    }

    fn wake_all(&self) {
        // Taken out before waking: a waker that registered again under the lock would
        // deadlock.
        let wakers =
            std::mem::take(&mut *self.wakers.lock().unwrap_or_else(PoisonError::into_inner));
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl Wake for Waiters {
    fn wake(self: Arc<Self>) {
        self.wake_all();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wake_all();
    }
}

/// A socket bound to a port of the current node: sends and receives typed messages and makes
/// and answers RPCs, over one real UDP socket on the node's address (and, for a message too
/// large for one datagram, a TCP connection to the same port number).
///
/// The same API as the simulated build's. Messages are any `serde` types, encoded with
/// `postcard`; the receiver names the type it expects, and a message that does not decode as
/// that type is consumed and reported as [`NetError::Decode`]. Every message is a UDP
/// datagram: it may be lost, duplicated or reordered, and nothing tells the sender (an error
/// the operating system reports on a send is logged as a warning and the datagram counted
/// lost, as in a simulation).
///
/// Several tasks of the node may share a socket (through an `Rc`): calls are matched to their
/// responses by correlation id, and every waiting task is woken when a message arrives.
/// Dropping the socket closes its UDP socket at once (so its port can be bound again). The
/// socket is not `Send`, as in the simulation.
///
/// Needs a tokio runtime with I/O and time enabled, as [`crate::node::block_on`] gives.
///
/// # The wire
/// Every message is an *envelope*: a version byte (1), a `postcard` header that says what the
/// message is (a datagram message, a request with its correlation id, or the response to one),
/// and the message itself, encoded with `postcard` exactly as the simulated network carries
/// it. An envelope that fits in one UDP datagram ([`DATAGRAM_MAX_BYTES`]) goes as one.
/// A longer one, up to [`MESSAGE_MAX_BYTES`] (16 MiB), goes over a TCP connection of its own,
/// from the sender's node address to the TCP port of the receiving socket's port number,
/// which every socket listens on; it keeps the datagram's promise and no more (it may be
/// lost, and nothing tells the sender), and it may overtake datagrams or be overtaken. An
/// envelope longer still is refused at the sender with [`NetError::Encode`]. So a socket takes
/// its port for UDP and TCP both, as the simulation's one port space does: [`Socket::bind`]
/// fails if either is taken.
///
/// # Receiving
/// There is no background task: whichever task waits on a socket (in [`Socket::recv`],
/// [`Socket::recv_request`], [`Socket::call`], or the non-waiting [`Socket::try_recv`] and
/// [`Socket::queued`]) reads every datagram the operating system holds for it and sorts it:
/// data and requests into the socket's inbox (bounded: 1,024 unread messages, beyond which
/// arrivals are dropped, as the simulation's default inbox), a response into the slot of the
/// call that waits for it. tokio remembers one waker per socket, so the socket gives it one
/// that wakes every task waiting on the socket: a response reaches its call even while
/// another task is blocked in `recv` on the same socket, and the other way round. While no
/// task waits, datagrams wait in the operating system's receive buffer (bounded by it: beyond,
/// the operating system drops them).
///
/// A datagram is dropped, with a `tracing` warning that says why, when its source address is
/// no node's in the installed cluster, when it is not an envelope, when the inbox is full, and
/// when it answers a call from another address than the one called. A response to a call that
/// gave up (or a second response to one call) is dropped with a debug event, as the
/// simulation's late replies are. The inbox holds at most 64 MiB of unread messages, beyond
/// which arrivals are dropped the same way.
pub struct Socket {
    addr: Addr,
    /// Reads, through tokio's reactor.
    receiver: tokio::net::UdpSocket,
    /// Writes: the same socket (a second descriptor of it), written directly, since tokio's
    /// non-waiting send refuses until its reactor has once seen the socket writable.
    sender: std::net::UdpSocket,
    /// Messages too large for a datagram, on their way out.
    outgoing: Outgoing,
    /// Messages too large for a datagram, on their way in.
    incoming: RefCell<Incomings>,
    inbox: RefCell<Inbox>,
    waiters: Arc<Waiters>,
    /// `waiters` as the waker tokio's reactor keeps for this socket.
    readiness: Waker,
    _not_send: PhantomData<Rc<()>>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// An RPC request received by [`Socket::recv_request`]; answer it with [`Socket::reply`].
#[derive(Debug, PartialEq, Eq)]
#[must_use = "a request that gets no reply makes its caller time out"]
pub struct Request {
    from: Addr,
    call: u64,
}

impl Request {
    /// The calling socket.
    pub fn from(&self) -> Addr {
        self.from
    }

    /// The correlation id (unique per calling socket).
    pub fn call_id(&self) -> u64 {
        self.call
    }
}

/// `message` in an envelope of `kind`, refused if it is longer than [`MESSAGE_MAX_BYTES`].
fn envelope<M: Serialize + ?Sized>(kind: Kind, message: &M) -> Result<Vec<u8>, NetError> {
    let envelope = postcard::to_extend(&kind, vec![ENVELOPE_VERSION])
        .and_then(|envelope| postcard::to_extend(message, envelope))
        .map_err(|error| NetError::Encode(error.to_string()))?;
    if envelope.len() > MESSAGE_MAX_BYTES {
        // Logged as well as returned: code tested in simulation (where messages have no size
        // limit) may ignore a failed reply, and an answer lost for its size must not be silent.
        tracing::warn!(
            bytes = envelope.len(),
            limit = MESSAGE_MAX_BYTES,
            "a message too large for a real socket is not sent"
        );
        return Err(NetError::Encode(format!(
            "the message takes {} bytes on the wire, more than the {MESSAGE_MAX_BYTES} bytes \
             a real socket sends",
            envelope.len()
        )));
    }
    Ok(envelope)
}

/// The header and the message of an envelope, or why `datagram` is none.
fn open_envelope(datagram: &[u8]) -> Result<(Kind, &[u8]), String> {
    let Some((&version, rest)) = datagram.split_first() else {
        return Err("it is empty".to_string());
    };
    if version != ENVELOPE_VERSION {
        return Err(format!(
            "its first byte is {version}, not the envelope version {ENVELOPE_VERSION}"
        ));
    }
    postcard::take_from_bytes::<Kind>(rest)
        .map_err(|error| format!("its header does not decode: {error}"))
}

fn decode<M: DeserializeOwned>(from: Addr, payload: &[u8]) -> Result<M, NetError> {
    postcard::from_bytes(payload).map_err(|error| NetError::Decode {
        from,
        message: error.to_string(),
    })
}

/// Binds `port` on `ip` for UDP and TCP both (`0`: a port the operating system picks that is
/// free for both), as non-blocking sockets.
fn bind_both(ip: IpAddr, port: u16) -> io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let attempts = if port == 0 { BIND_ATTEMPTS } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let udp = std::net::UdpSocket::bind(SocketAddr::new(ip, port))?;
        let picked = udp.local_addr()?.port();
        match std::net::TcpListener::bind(SocketAddr::new(ip, picked)) {
            Ok(tcp) => {
                // Non-blocking is a property of each socket, shared by all its descriptors.
                udp.set_nonblocking(true)?;
                tcp.set_nonblocking(true)?;
                return Ok((udp, tcp));
            }
            // Some other program has that TCP port: with 0, let the operating system pick
            // another UDP port.
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => last_error = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last_error.expect("at least one attempt"))
}

/// The error for a bind of `port` on `node` that the operating system refused.
fn bind_error(node: NodeId, spec: &NodeSpec, port: u16, error: io::Error) -> NetError {
    match error.kind() {
        io::ErrorKind::AddrInUse if port == 0 => NetError::NoFreePort(node),
        io::ErrorKind::AddrInUse => NetError::AddrInUse(Addr::new(node, port)),
        io::ErrorKind::PermissionDenied => NetError::InvalidConfig(format!(
            "cannot bind {}:{port} for node {}: {error} (ports below 1024 need privileges)",
            spec.ip, spec.name
        )),
        _ => NetError::InvalidConfig(format!(
            "cannot bind {}:{port} for node {}: {error}",
            spec.ip, spec.name
        )),
    }
}

impl Socket {
    /// Binds `port` on the current node's address from the installed cluster (`0`: a free
    /// port the operating system picks).
    ///
    /// Errors: [`NetError::NotOnNode`] outside node code (or with no cluster installed),
    /// [`NetError::UnknownNode`] if the current node is not in the cluster,
    /// [`NetError::AddrInUse`] if the port is taken, [`NetError::NoFreePort`] if no port is
    /// free, and [`NetError::InvalidConfig`] if the host refuses the address otherwise (not one
    /// of its addresses, a privileged port) or there is no tokio runtime.
    ///
    /// # Panics
    /// In a tokio runtime without I/O enabled (tokio's own panic).
    pub fn bind(port: u16) -> Result<Socket, NetError> {
        let node = crate::node::current_node().ok_or(NetError::NotOnNode)?;
        let (_, spec) =
            crate::node::current_spec().ok_or_else(|| match crate::node::cluster() {
                None => NetError::NotOnNode,
                Some(_) => NetError::UnknownNode(node),
            })?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(NetError::InvalidConfig(
                "a real socket needs a tokio runtime with I/O and time enabled: run node code \
                 inside sim_core::node::block_on"
                    .to_string(),
            ));
        }
        let (sender, listener) =
            bind_both(spec.ip, port).map_err(|error| bind_error(node, &spec, port, error))?;
        let prepare = |sender: &std::net::UdpSocket| {
            let port = sender.local_addr()?.port();
            let receiver = tokio::net::UdpSocket::from_std(sender.try_clone()?)?;
            let listener = tokio::net::TcpListener::from_std(listener)?;
            Ok::<_, io::Error>((port, receiver, listener))
        };
        let (port, receiver, listener) = prepare(&sender).map_err(|error| {
            NetError::InvalidConfig(format!(
                "cannot set up the socket bound on {}:{port} for node {}: {error}",
                spec.ip, spec.name
            ))
        })?;
        let waiters = Arc::new(Waiters::default());
        Ok(Socket {
            addr: Addr::new(node, port),
            receiver,
            sender,
            outgoing: Outgoing::new(node, spec.ip, port),
            incoming: RefCell::new(Incomings::new(listener)),
            inbox: RefCell::new(Inbox {
                // Random, not 1: a client restarted on the same port must not take a late
                // answer to its previous incarnation's call n for its own call n. (Half the
                // range, so counting up never wraps.)
                next_call: rand::RngCore::next_u64(&mut rand::rngs::OsRng) >> 1,
                ..Inbox::default()
            }),
            readiness: Waker::from(waiters.clone()),
            waiters,
            _not_send: PhantomData,
        })
    }

    /// The socket's address.
    pub fn local_addr(&self) -> Addr {
        self.addr
    }

    /// Ordered sockets are simulation-only: `set_ordered(true)` fails with
    /// [`NetError::InvalidConfig`] (a real socket sends UDP datagrams, which nothing orders;
    /// use a [`TcpStream`](super::TcpStream) for ordered, reliable bytes). `set_ordered(false)`
    /// is what the socket already is.
    pub fn set_ordered(&self, ordered: bool) -> Result<(), NetError> {
        if ordered {
            return Err(NetError::InvalidConfig(
                "ordered sockets are simulation-only: a real Socket sends UDP datagrams, which \
                 may be lost, duplicated or reordered; use a TcpStream for ordered delivery"
                    .to_string(),
            ));
        }
        Ok(())
    }

    /// Whether this socket's messages are ordered: never, in a real build.
    pub fn is_ordered(&self) -> Result<bool, NetError> {
        Ok(false)
    }

    /// Messages (data and requests) received and not read yet, counting those the operating
    /// system holds for the socket (they are read into the inbox first).
    pub fn queued(&self) -> Result<usize, NetError> {
        self.read_arrivals();
        Ok(self.inbox.borrow().queued())
    }

    /// Calls of this socket waiting for their response.
    pub fn pending_calls(&self) -> Result<usize, NetError> {
        Ok(self.inbox.borrow().calls.len())
    }

    /// Sends `message` to `to`, fire and forget: it may be lost, duplicated, delayed or
    /// reordered by the network, and nothing tells the sender.
    ///
    /// Errors: [`NetError::UnknownNode`] if `to` is no node of the installed cluster,
    /// [`NetError::Encode`] if the message does not encode or is longer than
    /// [`MESSAGE_MAX_BYTES`] encoded.
    pub fn send<M: Serialize + ?Sized>(&self, to: Addr, message: &M) -> Result<(), NetError> {
        let envelope = envelope(Kind::Data, message)?;
        self.transmit(to, envelope)
    }

    /// Puts `envelope` on the wire to `to`: one datagram, or a TCP connection if it is longer.
    fn transmit(&self, to: Addr, envelope: Vec<u8>) -> Result<(), NetError> {
        let ip = crate::node::ip_of(to.node).ok_or(NetError::UnknownNode(to.node))?;
        let target = SocketAddr::new(ip, to.port);
        if envelope.len() > DATAGRAM_MAX_BYTES {
            self.outgoing.send(target, envelope);
            return Ok(());
        }
        if let Err(error) = self.sender.send_to(&envelope, target) {
            // UDP promises no delivery, and the API has no error for a lost datagram: a full
            // send buffer or an unreachable network loses it, as the simulated network would.
            tracing::warn!(
                socket = %self.addr, %to, %target, %error,
                "the operating system refused a datagram: it is lost"
            );
        }
        Ok(())
    }

    /// Waits for the next message and decodes it as `M`.
    ///
    /// Cancel-safe: a message is taken from the inbox only when this returns it.
    pub async fn recv<M: DeserializeOwned>(&self) -> Result<(Addr, M), NetError> {
        let inbound = poll_fn(|cx| self.poll_inbox(cx, Inbox::pop_data)).await;
        Ok((inbound.from, decode(inbound.from, &inbound.payload)?))
    }

    /// The next message if one is queued, without waiting.
    pub fn try_recv<M: DeserializeOwned>(&self) -> Result<Option<(Addr, M)>, NetError> {
        self.read_arrivals();
        let inbound = self.inbox.borrow_mut().pop_data();
        match inbound {
            None => Ok(None),
            Some(inbound) => Ok(Some((
                inbound.from,
                decode(inbound.from, &inbound.payload)?,
            ))),
        }
    }

    /// Calls the server at `to` with `request` and waits for its response, at most `timeout`
    /// (real time, tokio's timer).
    ///
    /// A response that comes after the timeout is dropped when it arrives. Dropping the
    /// returned future gives up the call the same way.
    pub async fn call<Q, R>(&self, to: Addr, request: &Q, timeout: Duration) -> Result<R, RpcError>
    where
        Q: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let call = {
            let mut inbox = self.inbox.borrow_mut();
            let call = inbox.next_call;
            inbox.next_call += 1;
            call
        };
        let datagram = envelope(Kind::Request { call }, request)?;
        self.inbox
            .borrow_mut()
            .calls
            .insert(call, PendingCall { to, response: None });
        let _slot = CallSlot {
            inbox: &self.inbox,
            call,
        };
        self.transmit(to, datagram)?;
        let response =
            poll_fn(|cx| self.poll_inbox(cx, |inbox| inbox.calls.get_mut(&call)?.response.take()));
        match tokio::time::timeout(timeout, response).await {
            Err(_) => Err(RpcError::Timeout { to, after: timeout }),
            Ok(payload) => Ok(decode(to, &payload)?),
        }
    }

    /// Waits for the next RPC request and decodes it as `Q`.
    ///
    /// A request that does not decode is consumed and reported as [`NetError::Decode`]; its
    /// caller gets no response. Cancel-safe, as [`Socket::recv`].
    pub async fn recv_request<Q: DeserializeOwned>(&self) -> Result<(Request, Q), NetError> {
        let inbound = poll_fn(|cx| self.poll_inbox(cx, Inbox::pop_request)).await;
        let body = decode(inbound.from, &inbound.payload)?;
        let request = Request {
            from: inbound.from,
            call: inbound.call,
        };
        Ok((request, body))
    }

    /// Answers `request` with `response`. Like [`Socket::send`], the response may be lost on
    /// the way.
    pub fn reply<R: Serialize + ?Sized>(
        &self,
        request: Request,
        response: &R,
    ) -> Result<(), NetError> {
        let envelope = envelope(Kind::Response { call: request.call }, response)?;
        self.transmit(request.from, envelope)
    }

    /// Serves RPCs with `handler`, one at a time, until the socket closes; returns why it
    /// stopped. Requests that do not decode as `Q` get no response. (A real socket closes
    /// only when dropped, so in practice this serves until its task is dropped.)
    pub async fn serve<Q, R, F, Fut>(&self, mut handler: F) -> NetError
    where
        Q: DeserializeOwned,
        R: Serialize,
        F: FnMut(Addr, Q) -> Fut,
        Fut: Future<Output = R>,
    {
        loop {
            let (request, body) = match self.recv_request::<Q>().await {
                Ok(received) => received,
                Err(NetError::Decode { .. }) => continue,
                Err(error) => return error,
            };
            let response = handler(request.from, body).await;
            // Only a closed socket ends the service; a response that does not encode (or fit
            // in a datagram) loses one response, as a real server would.
            if let Err(NetError::Closed) = self.reply(request, &response) {
                return NetError::Closed;
            }
        }
    }

    /// Takes what `take` finds in the inbox, reading what has arrived first if it finds
    /// nothing, or waits.
    fn poll_inbox<T>(
        &self,
        cx: &mut Context<'_>,
        mut take: impl FnMut(&mut Inbox) -> Option<T>,
    ) -> Poll<T> {
        if let Some(found) = take(&mut self.inbox.borrow_mut()) {
            return Poll::Ready(found);
        }
        // Registered before reading, so that every wake-up while reading reaches this task
        // too: tokio's cooperative budget may run out in the middle of a read, and then tokio
        // wakes the socket's waiters instead of arming its reactor for the socket.
        self.waiters.register(cx.waker());
        let more = self.read_arrivals();
        if let Some(found) = take(&mut self.inbox.borrow_mut()) {
            return Poll::Ready(found);
        }
        if more {
            // The batch ended before the operating system's queue did, so the reactor will not
            // wake anyone for it: poll again once the other tasks had their turn.
            self.waiters.wake_all();
        }
        Poll::Pending
    }

    /// Moves the datagrams the operating system holds for this socket into the inbox and the
    /// calls' slots (at most a batch), and the messages that came over TCP too, and wakes every
    /// waiting task if one arrived. Returns
    /// whether the batch ran out before the operating system's queue did.
    fn read_arrivals(&self) -> bool {
        RECEIVE_BUFFER.with(|buffer| {
            let Ok(mut buffer) = buffer.try_borrow_mut() else {
                // Unreachable (no read runs inside another); reading later is always safe.
                return true;
            };
            if buffer.len() < RECEIVE_BUFFER_BYTES {
                buffer.resize(RECEIVE_BUFFER_BYTES, 0);
            }
            let mut cx = Context::from_waker(&self.readiness);
            let mut arrived = false;
            let mut more = true;
            for _ in 0..READ_BATCH {
                let mut read = ReadBuf::new(&mut buffer);
                let received = match self.receiver.poll_recv_from(&mut cx, &mut read) {
                    Poll::Ready(Ok(source)) => Ok((read.filled().len(), source)),
                    Poll::Ready(Err(error)) => Err(error),
                    // The reactor has registered the waker. It may not have seen yet what the
                    // operating system already holds: ask the socket itself, so that a
                    // datagram is visible as soon as it arrived (`try_recv`, `queued`).
                    Poll::Pending => match self.sender.recv_from(&mut buffer) {
                        Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                            more = false;
                            break;
                        }
                        received => received,
                    },
                };
                match received {
                    Ok((len, source)) => arrived |= self.sort(source, &buffer[..len]),
                    Err(error) => tracing::warn!(
                        socket = %self.addr, %error,
                        "the operating system reported an error on a receive"
                    ),
                }
            }
            if let Ok(mut incoming) = self.incoming.try_borrow_mut() {
                incoming.poll(&mut cx, &self.addr, |source, envelope| {
                    arrived |= self.sort(source, envelope);
                });
            }
            if arrived {
                self.waiters.wake_all();
            }
            more
        })
    }

    /// Files a datagram from `source` where its reader will look; returns whether it was kept.
    fn sort(&self, source: SocketAddr, datagram: &[u8]) -> bool {
        let Some(node) = crate::node::node_of_ip(source.ip().to_canonical()) else {
            tracing::warn!(
                socket = %self.addr, %source,
                "a datagram from an address that is no node of the cluster is dropped"
            );
            return false;
        };
        let from = Addr::new(node, source.port());
        let (kind, payload) = match open_envelope(datagram) {
            Ok(opened) => opened,
            Err(why) => {
                tracing::warn!(
                    socket = %self.addr, %from, %source,
                    "a datagram that is not a sim-core envelope is dropped: {why}"
                );
                return false;
            }
        };
        let mut inbox = self.inbox.borrow_mut();
        match kind {
            Kind::Response { call } => match inbox.calls.get_mut(&call) {
                None => {
                    tracing::debug!(
                        socket = %self.addr, %from, call,
                        "a response to a call that gave up is dropped"
                    );
                    false
                }
                Some(pending) if pending.to != from => {
                    tracing::warn!(
                        socket = %self.addr, %from, call, called = %pending.to,
                        "a response from another address than the one called is dropped"
                    );
                    false
                }
                Some(pending) if pending.response.is_some() => {
                    tracing::debug!(
                        socket = %self.addr, %from, call,
                        "a second response to one call is dropped"
                    );
                    false
                }
                Some(pending) => {
                    pending.response = Some(payload.to_vec());
                    true
                }
            },
            Kind::Data | Kind::Request { .. } => {
                if inbox.queued() >= INBOX_CAPACITY {
                    tracing::warn!(
                        socket = %self.addr, %from,
                        "the inbox holds {INBOX_CAPACITY} unread messages: an arrival is dropped"
                    );
                    return false;
                }
                if inbox.bytes + payload.len() > INBOX_BYTES_MAX {
                    tracing::warn!(
                        socket = %self.addr, %from, bytes = payload.len(),
                        "the inbox holds {} bytes unread, and this arrival would pass \
                         {INBOX_BYTES_MAX}: it is dropped",
                        inbox.bytes
                    );
                    return false;
                }
                let call = match kind {
                    Kind::Request { call } => call,
                    _ => 0,
                };
                let inbound = Inbound {
                    from,
                    call,
                    payload: payload.to_vec(),
                };
                inbox.bytes += inbound.payload.len();
                if kind == Kind::Data {
                    inbox.data.push_back(inbound);
                } else {
                    inbox.requests.push_back(inbound);
                }
                true
            }
        }
    }
}

/// Frees a call's slot however the call ends (response, timeout, an error, or the caller
/// dropped).
struct CallSlot<'a> {
    inbox: &'a RefCell<Inbox>,
    call: u64,
}

impl Drop for CallSlot<'_> {
    fn drop(&mut self) {
        if let Ok(mut inbox) = self.inbox.try_borrow_mut() {
            inbox.calls.remove(&self.call);
        }
    }
}
