//! The network's state in the world, and the paths every message takes: send, schedule,
//! deliver or drop.
//!
//! In-flight messages wait in one priority queue keyed by `(deliver_at_ns, seq)`; `seq` grows
//! with every scheduling, so messages due at the same nanosecond keep their scheduling order
//! (which is what keeps ordered links and released hold queues in order). Everything here runs
//! inside `world::with`: it never awaits and never calls user code.

use super::event::{DropReason, MessageKind, NetEvent};
use super::tap::{self, Header, Tapped};
use super::{Addr, LinkConfig, NetConfig, NetError};
use crate::node::{NodeId, NodeState};
use crate::trace::Event;
use crate::world::World;
use rand::Rng;
use std::cell::OnceCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::task::Waker;

const NS_PER_MS: u64 = 1_000_000;
/// Ephemeral ports handed out by `Socket::bind(0)`.
pub(crate) const EPHEMERAL_FIRST: u16 = 49_152;

/// A message on the wire.
pub(super) struct Packet {
    pub id: u64,
    pub from: Addr,
    pub to: Addr,
    /// The destination's incarnation when the message was sent.
    pub to_incarnation: u64,
    pub kind: MessageKind,
    pub payload: Vec<u8>,
    /// For an ordered message, the epoch of its link's connection when it was sent (see
    /// [`Link::epoch`]); `None` for a datagram.
    pub connection: Option<u64>,
    /// A duplicate made by the network (never duplicated again).
    pub copy: bool,
    pub sent_at_ns: u64,
    /// The payload as the taps share it, made by the message's first tap event (and shared
    /// with its duplicate), so that a message is copied once however often it is tapped;
    /// empty until a tap sees the message.
    pub tapped: OnceCell<Rc<[u8]>>,
}

impl Packet {
    pub fn ordered(&self) -> bool {
        self.connection.is_some()
    }

    pub fn header(&self) -> Header {
        Header {
            id: self.id,
            from: self.from,
            to: self.to,
            kind: self.kind,
        }
    }

    /// The payload for the taps (copied on first use).
    pub fn tapped_payload(&self) -> Rc<[u8]> {
        let shared = self.tapped.get_or_init(|| Rc::from(&self.payload[..]));
        Rc::clone(shared)
    }
}

/// A message waiting in a socket's inbox.
pub(super) struct Inbound {
    pub id: u64,
    pub from: Addr,
    /// Correlation id of a request (0 for data).
    pub call: u64,
    pub payload: Vec<u8>,
}

/// The caller's side of an RPC in progress.
pub(super) enum CallSlot {
    Waiting(Option<Waker>),
    Done(Vec<u8>),
}

pub(super) struct SocketEntry {
    pub id: u64,
    pub ordered: bool,
    pub data: VecDeque<Inbound>,
    pub requests: VecDeque<Inbound>,
    pub data_waiters: Vec<Waker>,
    pub request_waiters: Vec<Waker>,
    pub calls: BTreeMap<u64, CallSlot>,
    pub next_call: u64,
    /// Connection epoch of each peer's link as this socket last saw it (ordered sends only).
    pub connections: BTreeMap<NodeId, u64>,
    /// Carries TCP segments (see `super::tcp`): a segment of it that finds no socket, or a
    /// restarted receiver, is answered with a reset, as the receiver's kernel would.
    pub tcp: bool,
}

impl SocketEntry {
    fn new(id: u64) -> Self {
        SocketEntry {
            id,
            ordered: false,
            data: VecDeque::new(),
            requests: VecDeque::new(),
            data_waiters: Vec::new(),
            request_waiters: Vec::new(),
            calls: BTreeMap::new(),
            next_call: 1,
            connections: BTreeMap::new(),
            tcp: false,
        }
    }

    pub fn queued(&self) -> usize {
        self.data.len() + self.requests.len()
    }
}

#[derive(Default)]
pub(super) struct NodeNet {
    pub sockets: BTreeMap<u16, SocketEntry>,
    pub next_ephemeral: u16,
}

/// The state of one directed link; links that were never touched have no entry.
///
/// The link carries one ordered connection at a time, numbered by `epoch`; every ordered
/// message is stamped with the epoch it was sent in. A break bumps the epoch (senders learn
/// it at their next ordered send, see `connection_usable`). Messages of a broken connection
/// that were sent after a lost one must never arrive, or the receiver would see a gap: the
/// connections below `lost_below` are lost, and what is left of them is dropped as
/// [`DropReason::ConnectionBroken`] when it arrives or is released.
#[derive(Default)]
pub(super) struct Link {
    pub config: Option<LinkConfig>,
    pub blocked: bool,
    pub hold: Option<VecDeque<Packet>>,
    /// The current ordered connection; bumped every time it breaks.
    pub epoch: u64,
    /// Ordered messages of connections below this epoch are lost (never more than `epoch`).
    pub lost_below: u64,
    /// Delivery time of the last ordered message scheduled on the link.
    pub ordered_last_ns: u64,
    /// The link's own random stream (latency, loss, duplication), made on first use.
    pub rng: Option<rand_xoshiro::Xoshiro256PlusPlus>,
}

impl Link {
    /// Whether `packet` belongs to a connection whose remaining messages are lost.
    pub fn is_lost(&self, packet: &Packet) -> bool {
        packet
            .connection
            .is_some_and(|epoch| epoch < self.lost_below)
    }

    /// Breaks the current connection and loses every ordered message still in flight or held
    /// on the link (a partition or a crash).
    pub fn break_connection(&mut self) {
        self.epoch += 1;
        self.lost_below = self.epoch;
    }

    /// The newest message of connection `epoch` was dropped on its way out (hold or in-flight
    /// overflow): the connection breaks, and the messages sent before it still arrive.
    pub fn lost_newest(&mut self, epoch: u64) {
        if epoch == self.epoch {
            self.epoch += 1;
        }
    }

    /// A message of connection `epoch` was dropped at its receiver: the connection breaks,
    /// and every message of it that is left is lost. Ordered messages arrive in the order they
    /// were sent, so all that is left of the connection was sent after the dropped one.
    pub fn lost_on_arrival(&mut self, epoch: u64) {
        self.lost_newest(epoch);
        self.lost_below = self.lost_below.max(epoch + 1);
    }
}

/// Running totals, see [`super::NetStats`].
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Counters {
    pub sent: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub duplicated: u64,
}

pub(crate) struct NetState {
    pub(super) inbox_capacity: usize,
    pub(super) hold_capacity: usize,
    pub(super) in_flight_max: usize,
    pub(super) default_link: LinkConfig,
    config_links: Vec<super::LinkOverride>,
    pub(super) nodes: Vec<NodeNet>,
    pub(super) links: BTreeMap<(NodeId, NodeId), Link>,
    pub(super) in_flight: BTreeMap<(u64, u64), Packet>,
    next_seq: u64,
    next_message_id: u64,
    pub(super) next_socket_id: u64,
    /// The madsim node of the supervisor, where the delivery engine runs.
    pub(super) supervisor: Option<madsim::task::NodeId>,
    pub(super) pump_started: bool,
    pub(super) pump_waker: Option<Waker>,
    /// madsim's instant at the start of the run (it never changes within a run), so that a
    /// delivery time converts to a timer deadline without reading the clock again.
    pub(super) time_base: std::cell::OnceCell<std::time::Instant>,
    pub(super) counters: Counters,
    pub(super) taps: tap::Taps,
    /// The next TCP connection's identifier (unique in the run).
    pub(super) tcp_next_isn: u64,
}

impl NetState {
    /// Messages sent so far in the run (for the run's report).
    pub fn messages_sent(&self) -> u64 {
        self.counters.sent
    }

    pub fn new(config: &NetConfig) -> Self {
        NetState {
            inbox_capacity: config.inbox_capacity,
            hold_capacity: config.hold_capacity,
            in_flight_max: config.in_flight_max,
            default_link: config.link,
            config_links: config.links.clone(),
            nodes: Vec::new(),
            links: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            next_seq: 0,
            next_message_id: 0,
            next_socket_id: 0,
            supervisor: None,
            pump_started: false,
            pump_waker: None,
            time_base: std::cell::OnceCell::new(),
            counters: Counters::default(),
            taps: tap::Taps::default(),
            tcp_next_isn: 1,
        }
    }

    /// A node was added (on the supervisor, which is where the delivery engine will run).
    pub fn add_node(&mut self, node: NodeId) {
        assert_eq!(
            node.0 as usize,
            self.nodes.len(),
            "nodes are added in order"
        );
        if self.supervisor.is_none() {
            self.supervisor = Some(madsim::plugin::node());
        }
        self.nodes.push(NodeNet {
            sockets: BTreeMap::new(),
            next_ephemeral: EPHEMERAL_FIRST,
        });
        // Links of the configuration whose last node now exists.
        for index in 0..self.config_links.len() {
            let link = self.config_links[index];
            if link.from.max(link.to) == node {
                self.links.entry((link.from, link.to)).or_default().config = Some(link.link);
            }
        }
    }

    /// Nothing to do: a restarted node binds new sockets, and the incarnation that messages
    /// are checked against lives in the node's entry.
    pub fn restart_node(&mut self, _node: NodeId) {}

    pub(super) fn node_exists(&self, node: NodeId) -> bool {
        (node.0 as usize) < self.nodes.len()
    }

    /// The settings that apply to the link `from` to `to`.
    pub(super) fn link_config(&self, from: NodeId, to: NodeId) -> LinkConfig {
        self.links
            .get(&(from, to))
            .and_then(|link| link.config)
            .unwrap_or(self.default_link)
    }

    pub(super) fn socket(&self, addr: Addr, id: u64) -> Option<&SocketEntry> {
        let socket = self
            .nodes
            .get(addr.node.0 as usize)?
            .sockets
            .get(&addr.port)?;
        (socket.id == id).then_some(socket)
    }

    pub(super) fn socket_mut(&mut self, addr: Addr, id: u64) -> Option<&mut SocketEntry> {
        let socket = self
            .nodes
            .get_mut(addr.node.0 as usize)?
            .sockets
            .get_mut(&addr.port)?;
        (socket.id == id).then_some(socket)
    }

    /// Binds a new socket; `port` 0 picks a free ephemeral port.
    pub(super) fn bind(&mut self, node: NodeId, port: u16) -> Result<(Addr, u64), NetError> {
        let net = &mut self.nodes[node.0 as usize];
        let port = if port == 0 {
            ephemeral_port(net).ok_or(NetError::NoFreePort(node))?
        } else {
            port
        };
        let addr = Addr::new(node, port);
        if net.sockets.contains_key(&port) {
            return Err(NetError::AddrInUse(addr));
        }
        let id = self.next_socket_id;
        self.next_socket_id += 1;
        net.sockets.insert(port, SocketEntry::new(id));
        Ok((addr, id))
    }

    /// The id [`NetState::next_message_id`] hands out next.
    pub(super) fn peek_message_id(&self) -> u64 {
        self.next_message_id
    }

    pub(super) fn next_message_id(&mut self) -> u64 {
        let id = self.next_message_id;
        self.next_message_id += 1;
        id
    }

    /// The state of the link `from` to `to` (a default one if it was never touched).
    pub(super) fn link_mut(&mut self, from: NodeId, to: NodeId) -> &mut Link {
        self.links.entry((from, to)).or_default()
    }

    /// Whether `packet` belongs to an ordered connection whose remaining messages are lost.
    pub(super) fn is_lost(&self, packet: &Packet) -> bool {
        if !packet.ordered() {
            return false;
        }
        let link = self.links.get(&(packet.from.node, packet.to.node));
        link.is_some_and(|link| link.is_lost(packet))
    }
}

fn ephemeral_port(net: &mut NodeNet) -> Option<u16> {
    let span = u16::MAX - EPHEMERAL_FIRST + 1;
    for _ in 0..span {
        let port = net.next_ephemeral;
        net.next_ephemeral = if port == u16::MAX {
            EPHEMERAL_FIRST
        } else {
            port + 1
        };
        if !net.sockets.contains_key(&port) {
            return Some(port);
        }
    }
    None
}

pub(super) fn now_ns(world: &World) -> u64 {
    u64::try_from(world.now().as_nanos()).unwrap_or(u64::MAX)
}

/// Records a dropped message on `node` and copies it to the taps (`payload` is called only
/// if a tap is open).
pub(super) fn record_drop(
    world: &mut World,
    node: NodeId,
    header: Header,
    reason: DropReason,
    payload: impl FnOnce() -> Rc<[u8]>,
) {
    world.net.counters.dropped += 1;
    let event = NetEvent::Drop {
        id: header.id,
        from: header.from,
        to: header.to,
        reason,
    };
    world.record(Some(node), Event::Net(event));
    tap::copy(world, header, Tapped::Drop(reason), payload);
}

/// Records `packet` as dropped on `node`.
pub(super) fn drop_packet(world: &mut World, node: NodeId, packet: &Packet, reason: DropReason) {
    record_drop(world, node, packet.header(), reason, || {
        packet.tapped_payload()
    });
}

/// The random stream of the link `from -> to`: named after the link's end nodes (see
/// [`crate::rng::link_stream_name`]), so what one link draws never shifts another's draws.
/// Removing a fault on one link then leaves the random choices of every other link as they
/// were, which is what lets a shrunk plan drop the episodes that do not matter.
fn link_rng(world: &mut World, from: NodeId, to: NodeId) -> &mut rand_xoshiro::Xoshiro256PlusPlus {
    if world
        .net
        .links
        .get(&(from, to))
        .is_none_or(|link| link.rng.is_none())
    {
        let name = crate::rng::link_stream_name(&world.node(from).name, &world.node(to).name);
        let rng = crate::rng::new_stream(world.seed, &name);
        world.net.link_mut(from, to).rng = Some(rng);
    }
    world
        .net
        .link_mut(from, to)
        .rng
        .as_mut()
        .expect("made above")
}

/// A latency drawn from `link`'s range for the link `from -> to`, in nanoseconds.
pub(super) fn draw_latency(
    world: &mut World,
    (from, to): (NodeId, NodeId),
    link: &LinkConfig,
) -> u64 {
    let (min, max) = link.latency_range_ns();
    if min == max {
        return min;
    }
    link_rng(world, from, to).gen_range(min..=max)
}

fn draw(world: &mut World, (from, to): (NodeId, NodeId), probability: f64) -> bool {
    probability > 0.0 && link_rng(world, from, to).gen_bool(probability)
}

/// Puts a message on the wire from socket `socket_id` at `from`; see the module docs for what
/// can happen to it. Errors only for what the sender must learn.
pub(super) fn send(
    world: &mut World,
    from: Addr,
    socket_id: u64,
    to: Addr,
    kind: MessageKind,
    payload: Vec<u8>,
    summary: Option<String>,
) -> Result<(), NetError> {
    let (socket_ordered, socket_tcp) = match world.net.socket(from, socket_id) {
        Some(socket) => (socket.ordered, socket.tcp),
        None => return Err(NetError::Closed),
    };
    if !world.net.node_exists(to.node) {
        return Err(NetError::UnknownNode(to.node));
    }
    if !world.running() {
        // The run stopped: nothing moves any more.
        return Ok(());
    }
    // TCP segments are datagrams even on an ordered link: the TCP of `super::tcp` orders and
    // repairs them itself, and a link's break must not fail its connections at once.
    let ordered_from = (!socket_tcp).then_some((socket_id, socket_ordered));
    transmit(world, from, to, kind, payload, summary, ordered_from)
}

/// Records a message from `from` and puts it on the wire. `ordered_from` names the sending
/// socket and whether it is ordered, when the message may travel on an ordered connection
/// (`None`: always a datagram).
fn transmit(
    world: &mut World,
    from: Addr,
    to: Addr,
    kind: MessageKind,
    payload: Vec<u8>,
    summary: Option<String>,
    ordered_from: Option<(u64, bool)>,
) -> Result<(), NetError> {
    let id = world.net.next_message_id();
    let bytes = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    world.net.counters.sent += 1;
    let event = NetEvent::Send {
        id,
        from,
        to,
        bytes,
        kind,
    };
    if let Some(summary) = summary {
        world.trace.keep_message(id, summary);
    }
    world.record(Some(from.node), Event::Net(event));
    let header = Header { id, from, to, kind };
    // Copied at most once for all the taps: the message is dropped right here or carries the
    // copy in `Packet::tapped`.
    let tapped: OnceCell<Rc<[u8]>> = OnceCell::new();
    let tapped_payload = || Rc::clone(tapped.get_or_init(|| Rc::from(&payload[..])));
    tap::copy(world, header, Tapped::Send, tapped_payload);
    let (config, blocked, held) = match world.net.links.get(&(from.node, to.node)) {
        None => (world.net.default_link, false, false),
        Some(link) => (
            link.config.unwrap_or(world.net.default_link),
            link.blocked,
            link.hold.is_some(),
        ),
    };
    let connection = match ordered_from {
        Some((socket_id, socket_ordered)) if socket_ordered || config.ordered => {
            let Some(epoch) = connection_usable(world, from, socket_id, to.node, blocked) else {
                let reason = DropReason::ConnectionBroken;
                record_drop(world, from.node, header, reason, tapped_payload);
                return Err(NetError::ConnectionBroken { peer: to.node });
            };
            Some(epoch)
        }
        _ => None,
    };
    if blocked {
        let reason = DropReason::Partition;
        record_drop(world, from.node, header, reason, tapped_payload);
        return Ok(());
    }
    let packet = Packet {
        id,
        from,
        to,
        to_incarnation: world.node(to.node).incarnation,
        kind,
        payload,
        connection,
        copy: false,
        sent_at_ns: now_ns(world),
        tapped,
    };
    dispatch(world, packet, &config, held);
    Ok(())
}

/// Sends `packet` on its way: into its link's hold queue if the link is held, else in flight.
fn dispatch(world: &mut World, packet: Packet, config: &LinkConfig, held: bool) {
    if held {
        return hold_push(world, packet);
    }
    if world.net.in_flight.len() >= world.net.in_flight_max {
        if let Some(epoch) = packet.connection {
            let link = world.net.link_mut(packet.from.node, packet.to.node);
            link.lost_newest(epoch);
        }
        return drop_packet(world, packet.from.node, &packet, DropReason::InFlightFull);
    }
    let ends = (packet.from.node, packet.to.node);
    let deliver_at = packet.sent_at_ns + draw_latency(world, ends, config);
    schedule_on_link(world, packet, deliver_at);
}

/// The connection epoch an ordered send from this socket to `peer` goes out in, or `None`
/// if it may not go ahead: a broken connection is reported once (then the next send
/// reconnects), and always while the link is cut.
fn connection_usable(
    world: &mut World,
    from: Addr,
    socket_id: u64,
    peer: NodeId,
    blocked: bool,
) -> Option<u64> {
    let epoch = world.net.link_mut(from.node, peer).epoch;
    let socket = world
        .net
        .socket_mut(from, socket_id)
        .expect("checked by the caller");
    let seen = socket.connections.entry(peer).or_insert(epoch);
    let broken = *seen != epoch || blocked;
    *seen = epoch;
    (!broken).then_some(epoch)
}

/// Schedules `packet` at `deliver_at_ns`, later if an ordered message of its link is due
/// later (ordered messages never overtake each other).
pub(super) fn schedule_on_link(world: &mut World, packet: Packet, mut deliver_at_ns: u64) {
    if packet.ordered() {
        let link = world.net.link_mut(packet.from.node, packet.to.node);
        deliver_at_ns = deliver_at_ns.max(link.ordered_last_ns);
        link.ordered_last_ns = deliver_at_ns;
    }
    schedule(world, packet, deliver_at_ns);
}

/// Puts `packet` in the in-flight queue and makes sure the delivery engine wakes for it.
pub(super) fn schedule(world: &mut World, packet: Packet, deliver_at_ns: u64) {
    let seq = world.net.next_seq;
    world.net.next_seq += 1;
    world.net.in_flight.insert((deliver_at_ns, seq), packet);
    super::pump::arm(world, deliver_at_ns);
}

/// Queues `packet` on its held link, or drops it if the queue is full or its connection is
/// lost.
pub(super) fn hold_push(world: &mut World, packet: Packet) {
    let capacity = world.net.hold_capacity;
    let link = world.net.link_mut(packet.from.node, packet.to.node);
    let reason = if link.is_lost(&packet) {
        // Taken from flight by `NetControl::hold` after its connection broke.
        DropReason::ConnectionBroken
    } else if link.hold.as_ref().expect("the link is held").len() >= capacity {
        // It is the newest of its connection: either it was just sent, or `NetControl::hold`
        // is queueing what was in flight, in send order, and once full the queue stays full
        // until the release, so every later message of the connection overflows too.
        if let Some(epoch) = packet.connection {
            link.lost_newest(epoch);
        }
        DropReason::HoldFull
    } else {
        link.hold.as_mut().expect("checked above").push_back(packet);
        return;
    };
    drop_packet(world, packet.from.node, &packet, reason);
}

/// Delivers every message that is due; called by the delivery engine.
pub(super) fn deliver_due(world: &mut World) {
    let now = now_ns(world);
    while world.running() {
        let Some(entry) = world.net.in_flight.first_entry() else {
            break;
        };
        if entry.key().0 > now {
            break;
        }
        let packet = entry.remove();
        deliver(world, packet, now);
    }
}

fn deliver(world: &mut World, packet: Packet, now: u64) {
    let to = packet.to;
    if world.net.is_lost(&packet) {
        return drop_packet(world, to.node, &packet, DropReason::ConnectionBroken);
    }
    let node = world.node(to.node);
    if node.state == NodeState::Down {
        return drop_on_arrival(world, &packet, DropReason::NodeDown);
    }
    if node.incarnation != packet.to_incarnation {
        drop_on_arrival(world, &packet, DropReason::StaleIncarnation);
        if !super::tcp::is_reset(&packet.payload) {
            reset_if_tcp(world, packet.from, packet.to);
        }
        return;
    }
    if !packet.ordered() {
        let link = world.net.link_config(packet.from.node, to.node);
        let ends = (packet.from.node, to.node);
        if draw(world, ends, link.loss_probability) {
            return drop_packet(world, to.node, &packet, DropReason::Loss);
        }
        if !packet.copy && draw(world, ends, link.duplicate_probability) {
            duplicate(world, &packet, &link, now);
        }
    }
    let (header, connection) = (packet.header(), packet.connection);
    let (id, from) = (header.id, header.from);
    let bytes = u32::try_from(packet.payload.len()).unwrap_or(u32::MAX);
    // The socket takes the packet: keep the taps' copy of its payload (if a tap is open).
    let tapped = world.net.taps.is_open().then(|| packet.tapped_payload());
    let tapped_payload = || tapped.expect("made above when a tap is open");
    // A reset is never answered with a reset.
    let answerable = !super::tcp::is_reset(&packet.payload);
    match into_socket(&mut world.net, packet) {
        Ok(()) => {
            world.net.counters.delivered += 1;
            let event = NetEvent::Deliver {
                id,
                from,
                to,
                bytes,
            };
            world.record(Some(to.node), Event::Net(event));
            tap::copy(world, header, Tapped::Deliver, tapped_payload);
        }
        Err(reason) => {
            match connection {
                // A late reply did arrive: its connection carried it, its caller gave up.
                Some(_) if reason == DropReason::LateReply => {}
                Some(epoch) => world
                    .net
                    .link_mut(from.node, to.node)
                    .lost_on_arrival(epoch),
                None => {}
            }
            record_drop(world, to.node, header, reason, tapped_payload);
            if reason == DropReason::NoSocket && answerable {
                reset_if_tcp(world, from, to);
            }
        }
    }
}

/// Answers a TCP segment that reached a running node with no socket for it (nothing bound
/// there, or the node restarted since) with a reset, as the node's kernel would; the reset
/// travels back like any message, from the address the segment was sent to.
fn reset_if_tcp(world: &mut World, segment_from: Addr, segment_to: Addr) {
    let (from, to) = (segment_to, segment_from);
    let sender_is_tcp = world.net.nodes[to.node.0 as usize]
        .sockets
        .get(&to.port)
        .is_some_and(|socket| socket.tcp);
    // A node whose program exited still has a kernel that answers; a paused node (a frozen
    // machine) answers nothing, like a node that is down.
    let state = world.node(from.node).state;
    let answers = matches!(state, NodeState::Up | NodeState::Exited);
    if !sender_is_tcp || !answers || !world.running() {
        return;
    }
    let reset = super::tcp::reset_segment();
    // A datagram: it cannot fail.
    let _ = transmit(world, from, to, MessageKind::Data, reset, None, None);
}

/// Drops `packet` at its receiver; if it is ordered, its connection breaks and loses the
/// rest of its messages.
fn drop_on_arrival(world: &mut World, packet: &Packet, reason: DropReason) {
    if let Some(epoch) = packet.connection {
        let link = world.net.link_mut(packet.from.node, packet.to.node);
        link.lost_on_arrival(epoch);
    }
    drop_packet(world, packet.to.node, packet, reason);
}

fn duplicate(world: &mut World, packet: &Packet, link: &LinkConfig, now: u64) {
    let copy = world.net.next_message_id();
    world.net.counters.duplicated += 1;
    let event = NetEvent::Duplicate {
        id: packet.id,
        copy,
    };
    world.record(Some(packet.to.node), Event::Net(event));
    let what = Tapped::Duplicate { copy };
    tap::copy(world, packet.header(), what, || packet.tapped_payload());
    let twin = Packet {
        id: copy,
        from: packet.from,
        to: packet.to,
        to_incarnation: packet.to_incarnation,
        kind: packet.kind,
        payload: packet.payload.clone(),
        connection: None,
        copy: true,
        sent_at_ns: now,
        tapped: packet.tapped.clone(),
    };
    let ends = (packet.from.node, packet.to.node);
    let deliver_at = now + draw_latency(world, ends, link).max(NS_PER_MS);
    schedule(world, twin, deliver_at);
}

/// Hands `packet` to its socket, waking whoever waits for it.
fn into_socket(net: &mut NetState, packet: Packet) -> Result<(), DropReason> {
    let capacity = net.inbox_capacity;
    let socket = net
        .nodes
        .get_mut(packet.to.node.0 as usize)
        .and_then(|node| node.sockets.get_mut(&packet.to.port))
        .ok_or(DropReason::NoSocket)?;
    let call = match packet.kind {
        MessageKind::Response { call } => {
            let slot = socket.calls.get_mut(&call).ok_or(DropReason::LateReply)?;
            let CallSlot::Waiting(waker) = slot else {
                // A second response to the same call (the network duplicated it).
                return Err(DropReason::LateReply);
            };
            if let Some(waker) = waker.take() {
                waker.wake();
            }
            *slot = CallSlot::Done(packet.payload);
            return Ok(());
        }
        MessageKind::Data => 0,
        MessageKind::Request { call } => call,
    };
    if socket.queued() >= capacity {
        return Err(DropReason::InboxFull);
    }
    let inbound = Inbound {
        id: packet.id,
        from: packet.from,
        call,
        payload: packet.payload,
    };
    let waiters = if matches!(packet.kind, MessageKind::Data) {
        socket.data.push_back(inbound);
        &mut socket.data_waiters
    } else {
        socket.requests.push_back(inbound);
        &mut socket.request_waiters
    };
    for waker in waiters.drain(..) {
        waker.wake();
    }
    Ok(())
}

/// Crash effects: the node's sockets close and what was queued for them is dropped; ordered
/// connections to and from the node break, and their messages still in flight or held are
/// dropped when they arrive or are released. Datagrams still in flight to the node are
/// dropped when they arrive (the node is down, or restarted as a new incarnation).
pub(crate) fn on_crash(world: &mut World, node: NodeId) {
    let sockets = std::mem::take(&mut world.net.nodes[node.0 as usize].sockets);
    for (port, socket) in sockets {
        drop_queued(world, Addr::new(node, port), socket, DropReason::Crash);
    }
    for ((from, to), link) in world.net.links.iter_mut() {
        if *from == node || *to == node {
            link.break_connection();
        }
    }
}

/// Closes the socket `id` at `addr` (if it is still bound), dropping what it had queued.
pub(super) fn unbind(world: &mut World, addr: Addr, id: u64) {
    let Some(net) = world.net.nodes.get_mut(addr.node.0 as usize) else {
        return;
    };
    if net.sockets.get(&addr.port).map(|socket| socket.id) != Some(id) {
        return;
    }
    let socket = net.sockets.remove(&addr.port).expect("checked above");
    drop_queued(world, addr, socket, DropReason::SocketClosed);
}

fn drop_queued(world: &mut World, addr: Addr, socket: SocketEntry, reason: DropReason) {
    let data = socket
        .data
        .into_iter()
        .map(|inbound| (MessageKind::Data, inbound));
    let requests = socket.requests.into_iter().map(|inbound| {
        let kind = MessageKind::Request { call: inbound.call };
        (kind, inbound)
    });
    for (kind, inbound) in data.chain(requests) {
        let header = Header {
            id: inbound.id,
            from: inbound.from,
            to: addr,
            kind,
        };
        record_drop(world, addr.node, header, reason, || {
            Rc::from(inbound.payload)
        });
    }
}
