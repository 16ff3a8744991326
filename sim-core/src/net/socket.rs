//! Sockets: typed messages and RPC on the current node.

use super::event::MessageKind;
use super::state::{self, CallSlot, Inbound};
use super::{Addr, NetError, RpcError};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::{poll_fn, Future};
use std::marker::PhantomData;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

/// A socket bound to a port of the current node: sends and receives typed messages and makes
/// and answers RPCs.
///
/// Messages are any `serde` types, encoded with `postcard` on the wire; the receiver names the
/// type it expects, and a message that does not decode as that type is consumed and reported
/// as [`NetError::Decode`]. Dropping the socket closes it (queued messages are dropped as
/// [`super::DropReason::SocketClosed`]); a crash of the node closes it too, and every
/// operation then fails with [`NetError::Closed`].
///
/// Several tasks of the node may share a socket (through an `Rc`): calls are matched to their
/// responses by correlation id, and every waiting receiver is woken when a message arrives.
#[derive(Debug)]
pub struct Socket {
    addr: Addr,
    id: u64,
    _not_send: PhantomData<Rc<()>>,
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

/// Which inbound queue to read.
#[derive(Clone, Copy)]
pub(super) enum Queue {
    Data,
    Requests,
}

fn encode<M: Serialize + ?Sized>(message: &M) -> Result<Vec<u8>, NetError> {
    postcard::to_allocvec(message).map_err(|error| NetError::Encode(error.to_string()))
}

/// What `message` carries, for the kept timeline; `None` (and no formatting at all) when the
/// run keeps no events, so a hunt pays nothing for it.
fn summary<M: Serialize + ?Sized>(message: &M) -> Option<String> {
    let keep = crate::world::with(|world| world.trace.keeps_events());
    // Formatted outside the world's borrow: a `Serialize` impl is user code.
    keep.then(|| crate::trace::message_summary(message))
}

fn decode<M: DeserializeOwned>(inbound: &Inbound) -> Result<M, NetError> {
    postcard::from_bytes(&inbound.payload).map_err(|error| NetError::Decode {
        from: inbound.from,
        message: error.to_string(),
    })
}

impl Socket {
    /// Binds `port` on the current node (`0`: a free ephemeral port, 49152 and up).
    ///
    /// Fails with [`NetError::AddrInUse`] if the port is taken, and with
    /// [`NetError::NotOnNode`] on the supervisor.
    pub fn bind(port: u16) -> Result<Socket, NetError> {
        let (addr, id, start_pump) = crate::world::with(|world| {
            let node = world.current_node().ok_or(NetError::NotOnNode)?;
            let (addr, id) = world.net.bind(node, port)?;
            let start_pump = !world.net.pump_started;
            world.net.pump_started = true;
            Ok::<_, NetError>((addr, id, start_pump))
        })?;
        if start_pump {
            super::pump::start();
        }
        Ok(Socket {
            addr,
            id,
            _not_send: PhantomData,
        })
    }

    /// The socket's address.
    pub fn local_addr(&self) -> Addr {
        self.addr
    }

    /// Makes every message this socket sends ordered (TCP-like: see the module docs), or
    /// datagrams again.
    pub fn set_ordered(&self, ordered: bool) -> Result<(), NetError> {
        self.with_entry(|socket| socket.ordered = ordered)
    }

    /// Marks the socket as carrying TCP segments (see `super::tcp`).
    pub(super) fn set_tcp(&self) -> Result<(), NetError> {
        self.with_entry(|socket| socket.tcp = true)
    }

    /// Whether this socket's messages are ordered.
    pub fn is_ordered(&self) -> Result<bool, NetError> {
        self.with_entry(|socket| socket.ordered)
    }

    /// Messages (data and requests) received and not read yet.
    pub fn queued(&self) -> Result<usize, NetError> {
        self.with_entry(|socket| socket.queued())
    }

    /// Calls of this socket waiting for their response.
    pub fn pending_calls(&self) -> Result<usize, NetError> {
        self.with_entry(|socket| socket.calls.len())
    }

    fn with_entry<R>(&self, f: impl FnOnce(&mut state::SocketEntry) -> R) -> Result<R, NetError> {
        crate::world::with(|world| match world.net.socket_mut(self.addr, self.id) {
            Some(socket) => Ok(f(socket)),
            None => Err(NetError::Closed),
        })
    }

    /// Sends `message` to `to`, fire and forget: it may be lost, duplicated, delayed or
    /// reordered by the network, and nothing tells the sender.
    ///
    /// Errors: [`NetError::Closed`], [`NetError::UnknownNode`], [`NetError::Encode`], and for
    /// an ordered message [`NetError::ConnectionBroken`] (the message was not sent).
    ///
    /// A kept timeline shows what the message carried (display only, never hashed).
    pub fn send<M: Serialize + ?Sized>(&self, to: Addr, message: &M) -> Result<(), NetError> {
        let payload = encode(message)?;
        self.send_kind(to, MessageKind::Data, payload, summary(message))
    }

    /// Sends bytes that are already encoded, with a summary for the kept timeline made only
    /// when the run keeps events.
    pub(super) fn send_encoded(
        &self,
        to: Addr,
        payload: Vec<u8>,
        summary: impl FnOnce() -> String,
    ) -> Result<(), NetError> {
        let keep = crate::world::with(|world| world.trace.keeps_events());
        self.send_kind(to, MessageKind::Data, payload, keep.then(summary))
    }

    fn send_kind(
        &self,
        to: Addr,
        kind: MessageKind,
        payload: Vec<u8>,
        summary: Option<String>,
    ) -> Result<(), NetError> {
        crate::world::with(|world| {
            state::send(world, self.addr, self.id, to, kind, payload, summary)
        })
    }

    /// Waits for the next message and decodes it as `M`.
    ///
    /// Cancel-safe: a message is taken from the inbox only when this returns it.
    pub async fn recv<M: DeserializeOwned>(&self) -> Result<(Addr, M), NetError> {
        let inbound = poll_fn(|cx| self.poll_queue(cx, Queue::Data)).await?;
        Ok((inbound.from, decode(&inbound)?))
    }

    /// The next message if one is queued, without waiting.
    pub fn try_recv<M: DeserializeOwned>(&self) -> Result<Option<(Addr, M)>, NetError> {
        let inbound = self.with_entry(|socket| socket.data.pop_front())?;
        match inbound {
            None => Ok(None),
            Some(inbound) => Ok(Some((inbound.from, decode(&inbound)?))),
        }
    }

    pub(super) fn poll_queue(
        &self,
        cx: &mut Context<'_>,
        queue: Queue,
    ) -> Poll<Result<Inbound, NetError>> {
        crate::world::with(|world| {
            let Some(socket) = world.net.socket_mut(self.addr, self.id) else {
                return Poll::Ready(Err(NetError::Closed));
            };
            let (inbox, waiters) = match queue {
                Queue::Data => (&mut socket.data, &mut socket.data_waiters),
                Queue::Requests => (&mut socket.requests, &mut socket.request_waiters),
            };
            if let Some(inbound) = inbox.pop_front() {
                return Poll::Ready(Ok(inbound));
            }
            if !waiters.iter().any(|waker| waker.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }

    /// Calls the server at `to` with `request` and waits for its response, at most `timeout`
    /// on this node's clock.
    ///
    /// A response that comes after the timeout is dropped when it arrives
    /// ([`super::DropReason::LateReply`]). Dropping the returned future gives up the call
    /// the same way.
    pub async fn call<Q, R>(&self, to: Addr, request: &Q, timeout: Duration) -> Result<R, RpcError>
    where
        Q: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let payload = encode(request)?;
        let call = self.start_call(to, payload, summary(request))?;
        let _pending = PendingCall {
            addr: self.addr,
            socket: self.id,
            call,
        };
        let response = poll_fn(|cx| self.poll_call(cx, call));
        match crate::time::timeout(timeout, response).await {
            Err(_) => Err(RpcError::Timeout { to, after: timeout }),
            Ok(Err(error)) => Err(RpcError::Net(error)),
            Ok(Ok(payload)) => {
                let inbound = Inbound {
                    id: 0,
                    from: to,
                    call,
                    payload,
                };
                Ok(decode(&inbound)?)
            }
        }
    }

    fn start_call(
        &self,
        to: Addr,
        payload: Vec<u8>,
        summary: Option<String>,
    ) -> Result<u64, NetError> {
        crate::world::with(|world| {
            let socket = world
                .net
                .socket_mut(self.addr, self.id)
                .ok_or(NetError::Closed)?;
            let call = socket.next_call;
            socket.next_call += 1;
            socket.calls.insert(call, CallSlot::Waiting(None));
            let kind = MessageKind::Request { call };
            let sent = state::send(world, self.addr, self.id, to, kind, payload, summary);
            if sent.is_err() {
                if let Some(socket) = world.net.socket_mut(self.addr, self.id) {
                    socket.calls.remove(&call);
                }
            }
            sent.map(|()| call)
        })
    }

    fn poll_call(&self, cx: &mut Context<'_>, call: u64) -> Poll<Result<Vec<u8>, NetError>> {
        crate::world::with(|world| {
            let Some(socket) = world.net.socket_mut(self.addr, self.id) else {
                return Poll::Ready(Err(NetError::Closed));
            };
            match socket.calls.get_mut(&call) {
                None => Poll::Ready(Err(NetError::Closed)),
                Some(CallSlot::Waiting(waker)) => {
                    if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        *waker = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
                Some(CallSlot::Done(_)) => match socket.calls.remove(&call) {
                    Some(CallSlot::Done(payload)) => Poll::Ready(Ok(payload)),
                    _ => unreachable!("matched Done above"),
                },
            }
        })
    }

    /// Waits for the next RPC request and decodes it as `Q`.
    ///
    /// A request that does not decode is consumed and reported as [`NetError::Decode`]; its
    /// caller gets no response.
    pub async fn recv_request<Q: DeserializeOwned>(&self) -> Result<(Request, Q), NetError> {
        let inbound = poll_fn(|cx| self.poll_queue(cx, Queue::Requests)).await?;
        let body = decode(&inbound)?;
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
        let payload = encode(response)?;
        let kind = MessageKind::Response { call: request.call };
        self.send_kind(request.from, kind, payload, summary(response))
    }

    /// Serves RPCs with `handler`, one at a time, until the socket closes; returns why it
    /// stopped. Requests that do not decode as `Q` get no response.
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
            // Only a closed socket ends the service; a broken connection or a response that
            // does not encode loses one response, as a real server would.
            if let Err(NetError::Closed) = self.reply(request, &response) {
                return NetError::Closed;
            }
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        let (addr, id) = (self.addr, self.id);
        crate::world::try_with(|world| state::unbind(world, addr, id));
    }
}

/// Frees the call's slot however the call ends (response, timeout, or the caller dropped).
struct PendingCall {
    addr: Addr,
    socket: u64,
    call: u64,
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        let (addr, socket, call) = (self.addr, self.socket, self.call);
        crate::world::try_with(|world| {
            if let Some(socket) = world.net.socket_mut(addr, socket) {
                socket.calls.remove(&call);
            }
        });
    }
}
