//! Network taps: a live copy of every message event, for checkers.
//!
//! A checker that judges "what was sent" from the code under test believes that code; a tap
//! lets it judge from the network instead. [`super::NetControl::tap`] opens a [`NetTap`]; from
//! then on every `Send`, `Deliver`, `Drop` and `Duplicate` [`super::NetEvent`] the trace
//! records is also copied into the tap's bounded queue as a [`TapEvent`], in trace order, with
//! the node names and the payload bytes (which [`TapEvent::decode`] reads as the sender's
//! type).
//!
//! A tap is invisible to the run: it records no trace event, counts no step and draws no
//! random number, so a run with taps has the trace hash of the same run without. Waiting on
//! [`NetTap::next`] is different only in that it wakes the waiting task, which madsim
//! schedules like any other wake-up: the run stays deterministic, but its interleaving (and so
//! its hash) may differ from a run that does not wait.
//!
//! Copies are made inside `world::with`, at the points where the trace records the events
//! (`state.rs` and `control.rs`); with no tap open they cost one emptiness check.

use super::event::{DropReason, MessageKind};
use super::Addr;
use crate::node::NodeId;
use crate::world::World;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::poll_fn;
use std::marker::PhantomData;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// What happened to a message, as the trace's [`super::NetEvent`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tapped {
    /// Put on the wire by its sender ([`super::NetEvent::Send`]).
    Send,
    /// Handed to its receiving socket ([`super::NetEvent::Deliver`]).
    Deliver,
    /// Dropped, and why ([`super::NetEvent::Drop`]).
    Drop(DropReason),
    /// The network duplicated it; the copy travels as message `copy` and shows up later with
    /// that id ([`super::NetEvent::Duplicate`]).
    Duplicate {
        /// The copy's message id.
        copy: u64,
    },
}

/// One message event seen by a [`NetTap`].
#[derive(Clone, Debug, PartialEq)]
pub struct TapEvent {
    /// Simulated time since the start of the run, in nanoseconds (the trace event's time).
    pub time_ns: u64,
    /// The message id, as in the trace (a duplicate's copy has its own id).
    pub id: u64,
    /// Sending socket.
    pub from: Addr,
    /// Destination.
    pub to: Addr,
    /// Name of the sending node.
    pub from_name: Rc<str>,
    /// Name of the destination node.
    pub to_name: Rc<str>,
    /// Datagram, request or response (with its correlation id).
    pub kind: MessageKind,
    /// What happened to the message.
    pub what: Tapped,
    /// The encoded payload (postcard), shared by every tap and event of the message.
    pub payload: Rc<[u8]>,
    /// The sending node's clocks at the event.
    pub from_clock: NodeClocks,
    /// The receiving node's clocks at the event: at a [`Tapped::Deliver`], what the receiver
    /// reads when it takes the message (if it runs then: a paused node reads later).
    pub to_clock: NodeClocks,
}

/// A node's clock readings at one instant, as the node itself would read them: a checker
/// that judges a node by its own clock (a lease, a token's expiry, a rate limit) needs them,
/// not true time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeClocks {
    /// The monotonic clock ([`crate::time::now`]), in ns since the node's clock started.
    pub monotonic_ns: u64,
    /// The wall clock ([`crate::time::wall`]), in ns since the Unix epoch.
    pub wall_ns: i128,
}

impl TapEvent {
    /// The payload decoded as `T`, with the socket's encoding; `None` if it does not decode.
    ///
    /// `T` is what the sender sent: the message type of a datagram ([`MessageKind::Data`]),
    /// the request type of a [`MessageKind::Request`], the response type of a
    /// [`MessageKind::Response`].
    pub fn decode<T: DeserializeOwned>(&self) -> Option<T> {
        postcard::from_bytes(&self.payload).ok()
    }
}

impl fmt::Display for TapEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.what {
            Tapped::Send => "send",
            Tapped::Deliver => "deliver",
            Tapped::Drop(_) => "drop",
            Tapped::Duplicate { .. } => "duplicate",
        };
        write!(
            f,
            "{what} m{} {}({}) -> {}({}) {} B {}",
            self.id,
            self.from_name,
            self.from,
            self.to_name,
            self.to,
            self.payload.len(),
            self.kind
        )?;
        match self.what {
            Tapped::Drop(reason) => write!(f, " ({})", reason.name()),
            Tapped::Duplicate { copy } => write!(f, " as m{copy}"),
            Tapped::Send | Tapped::Deliver => Ok(()),
        }
    }
}

/// A message as the taps describe it, apart from its payload.
#[derive(Clone, Copy)]
pub(super) struct Header {
    pub id: u64,
    pub from: Addr,
    pub to: Addr,
    pub kind: MessageKind,
}

/// The queue of one open tap.
struct TapQueue {
    events: VecDeque<TapEvent>,
    capacity: usize,
    overflowed: bool,
    /// Tasks waiting in [`NetTap::next`]; one entry per distinct waker.
    waiters: Vec<Waker>,
}

/// The open taps of a run, by handle id (ids are never reused within a run).
#[derive(Default)]
pub(super) struct Taps {
    queues: BTreeMap<u64, TapQueue>,
    next_id: u64,
    /// Node names by node id, shared by every event that names the node (copying two names
    /// per message event was a third of a tap's cost, measured in the e2e scenario).
    names: Vec<Rc<str>>,
}

impl Taps {
    /// Whether at least one tap is open (copies are made only then).
    pub fn is_open(&self) -> bool {
        !self.queues.is_empty()
    }
}

/// Copies a message event into every open tap. Call it right after `world.record` of the
/// matching [`super::NetEvent`]: `record` keeps nothing once the run stopped (or its step
/// hit the limit), and then `running()` is false, so the taps see exactly what the trace
/// kept. `payload` is only called when a tap is open.
pub(super) fn copy(
    world: &mut World,
    header: Header,
    what: Tapped,
    payload: impl FnOnce() -> Rc<[u8]>,
) {
    if !world.net.taps.is_open() || !world.running() {
        return;
    }
    let name = |world: &mut World, addr: Addr| {
        let index = addr.node.0 as usize;
        while world.net.taps.names.len() <= index {
            let next = NodeId(world.net.taps.names.len() as u32);
            let name: Rc<str> = Rc::from(world.node(next).name.as_str());
            world.net.taps.names.push(name);
        }
        Rc::clone(&world.net.taps.names[index])
    };
    let (from_name, to_name) = (name(world, header.from), name(world, header.to));
    let true_ns = u64::try_from(world.now().as_nanos()).unwrap_or(u64::MAX);
    let clocks = |world: &World, addr: Addr| {
        let clock = &world.node(addr.node).clock;
        NodeClocks {
            monotonic_ns: clock.local_ns(true_ns),
            wall_ns: clock.wall_ns(true_ns),
        }
    };
    let event = TapEvent {
        time_ns: true_ns,
        id: header.id,
        from: header.from,
        to: header.to,
        from_name,
        to_name,
        kind: header.kind,
        what,
        payload: payload(),
        from_clock: clocks(world, header.from),
        to_clock: clocks(world, header.to),
    };
    // The last open queue takes the event itself: a run usually has one tap, and a clone
    // copies both node names (two allocations per message event, measured in the gateway
    // scenario's profile).
    let mut queues = world.net.taps.queues.values_mut().peekable();
    while let Some(queue) = queues.next() {
        if queue.events.len() >= queue.capacity {
            queue.overflowed = true;
            continue;
        }
        if queues.peek().is_some() {
            queue.events.push_back(event.clone());
        } else {
            queue.events.push_back(event);
            queue.wake_waiters();
            return;
        }
        queue.wake_waiters();
    }
}

impl TapQueue {
    fn wake_waiters(&mut self) {
        for waker in self.waiters.drain(..) {
            waker.wake();
        }
    }
}

/// A live feed of the network's message events, from [`super::NetControl::tap`].
///
/// The handle belongs to the run (it is not `Send`); dropping it closes the tap and frees its
/// queue.
///
/// **Overflow.** The queue holds at most the capacity given to
/// [`super::NetControl::tap`]; events that arrive while it is full are lost (the queue keeps
/// the older ones), and [`NetTap::overflowed`] says so from then on. A checker whose tap
/// overflowed saw an incomplete network: it must call its judgement inconclusive, never pass
/// or fail on it. Drain often enough, or give a capacity above the number of message events
/// the run can make.
#[derive(Debug)]
pub struct NetTap {
    id: u64,
    _not_send: PhantomData<Rc<()>>,
}

impl NetTap {
    /// Opens a tap with room for `capacity` unread events.
    pub(super) fn open(capacity: usize) -> NetTap {
        assert!(
            capacity > 0,
            "sim-core: a network tap needs a capacity of at least 1"
        );
        let id = crate::world::with(|world| {
            let taps = &mut world.net.taps;
            let id = taps.next_id;
            taps.next_id += 1;
            let queue = TapQueue {
                events: VecDeque::new(),
                capacity,
                overflowed: false,
                waiters: Vec::new(),
            };
            taps.queues.insert(id, queue);
            id
        });
        NetTap {
            id,
            _not_send: PhantomData,
        }
    }

    fn with_queue<R>(&self, f: impl FnOnce(&mut TapQueue) -> R) -> R {
        crate::world::with(|world| {
            let queue = world.net.taps.queues.get_mut(&self.id);
            f(queue.expect("sim-core: an open tap has a queue"))
        })
    }

    /// The oldest unread event, without waiting.
    pub fn try_next(&self) -> Option<TapEvent> {
        self.with_queue(|queue| queue.events.pop_front())
    }

    /// Waits for the next event. Returns `None` only once the run stopped and every event
    /// copied before the stop was read (tasks spawned through sim-core are not polled after a
    /// stop, so they never see that `None`).
    ///
    /// Cancel-safe: an event is taken from the queue only when this returns it.
    pub async fn next(&self) -> Option<TapEvent> {
        poll_fn(|cx| {
            crate::world::with(|world| {
                let running = world.running();
                let queue = world.net.taps.queues.get_mut(&self.id);
                let queue = queue.expect("sim-core: an open tap has a queue");
                if let Some(event) = queue.events.pop_front() {
                    return Poll::Ready(Some(event));
                }
                if !running {
                    return Poll::Ready(None);
                }
                if !queue.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    queue.waiters.push(cx.waker().clone());
                }
                Poll::Pending
            })
        })
        .await
    }

    /// Every unread event, oldest first.
    pub fn drain(&self) -> Vec<TapEvent> {
        self.with_queue(|queue| queue.events.drain(..).collect())
    }

    /// Whether events were lost because the queue was full (see the type's docs: the
    /// checker's judgement is then inconclusive). Stays true once set.
    pub fn overflowed(&self) -> bool {
        self.with_queue(|queue| queue.overflowed)
    }
}

impl Drop for NetTap {
    fn drop(&mut self) {
        let id = self.id;
        // At teardown the world may be gone already, and the queue with it.
        crate::world::try_with(|world| world.net.taps.queues.remove(&id));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dropping_a_tap_frees_its_queue() {
        let report = crate::run(1, crate::SimConfig::default(), |sim| async move {
            let open = || crate::world::with(|world| world.net.taps.queues.len());
            let first = sim.net().tap(8);
            let second = sim.net().tap(8);
            assert_eq!(open(), 2);
            drop(first);
            assert_eq!(open(), 1);
            drop(second);
            assert_eq!(open(), 0);
            Ok(())
        });
        assert!(report.outcome.is_pass(), "{}", report.outcome);
    }
}
