//! [`NetControl`]: faults switched at run time, each applied to messages in flight too.

use super::event::{DropReason, NetEvent};
use super::state::{self, Packet};
use super::tap::NetTap;
use super::{LinkConfig, NetError};
use crate::node::NodeId;
use crate::trace::Event;
use crate::world::World;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, VecDeque};

/// Control of the network, from [`crate::Sim::net`]: partitions, link settings, hold and
/// release. Every change is a [`NetEvent`] in the trace.
///
/// Node groups may overlap; a node is never cut from itself.
#[derive(Clone, Copy, Debug)]
pub struct NetControl {
    _private: (),
}

/// Running totals of the network, from [`NetControl::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetStats {
    /// Messages put on the wire (duplicates not counted).
    pub sent: u64,
    /// Messages handed to a socket (duplicates counted).
    pub delivered: u64,
    /// Messages dropped, for any reason.
    pub dropped: u64,
    /// Duplicates made by the network.
    pub duplicated: u64,
    /// Messages in flight now.
    pub in_flight: u64,
    /// Messages queued on held links now.
    pub held: u64,
    /// The id the next message will get (ids grow by one per message and per duplicate):
    /// every message put on the wire after this reading has an id at least this, so an
    /// observer can order its own notes against a [`NetTap`]'s events without comparing
    /// times, which tie within an instant.
    pub next_message_id: u64,
}

fn check_nodes(world: &World, nodes: &[NodeId]) -> Result<(), NetError> {
    match nodes.iter().find(|node| !world.net.node_exists(**node)) {
        Some(node) => Err(NetError::UnknownNode(*node)),
        None => Ok(()),
    }
}

fn record(world: &mut World, event: NetEvent) {
    let node = world.current_node();
    world.record(node, Event::Net(event));
}

/// Removes and returns the in-flight messages of the links `on` selects, in send order.
fn take_in_flight(world: &mut World, on: impl Fn(NodeId, NodeId) -> bool) -> Vec<Packet> {
    let keys: Vec<(u64, u64)> = world
        .net
        .in_flight
        .iter()
        .filter(|(_, packet)| on(packet.from.node, packet.to.node))
        .map(|(key, _)| *key)
        .collect();
    let mut packets: Vec<Packet> = keys
        .iter()
        .filter_map(|key| world.net.in_flight.remove(key))
        .collect();
    packets.sort_by_key(|packet| packet.id);
    packets
}

fn drop_all(world: &mut World, packets: impl IntoIterator<Item = Packet>, reason: DropReason) {
    for packet in packets {
        state::drop_packet(world, packet.to.node, &packet, reason);
    }
}

/// Cuts the link `from` to `to`: its queue and messages in flight are lost, and its ordered
/// connection breaks.
fn block(world: &mut World, from: NodeId, to: NodeId) {
    let link = world.net.links.entry((from, to)).or_default();
    if link.blocked {
        return;
    }
    link.blocked = true;
    link.break_connection();
    let held: Vec<Packet> = link
        .hold
        .as_mut()
        .map(|queue| queue.drain(..).collect())
        .unwrap_or_default();
    drop_all(world, held, DropReason::Partition);
    let in_flight = take_in_flight(world, |a, b| a == from && b == to);
    drop_all(world, in_flight, DropReason::Partition);
}

fn unblock(world: &mut World, from: NodeId, to: NodeId) {
    if let Some(link) = world.net.links.get_mut(&(from, to)) {
        link.blocked = false;
    }
}

/// Every link from a node of `from` to a node of `to` (never a node to itself).
fn pairs<'a>(from: &'a [NodeId], to: &'a [NodeId]) -> impl Iterator<Item = (NodeId, NodeId)> + 'a {
    from.iter()
        .flat_map(move |a| to.iter().map(move |b| (*a, *b)))
        .filter(|(a, b)| a != b)
}

/// Redraws the delivery time of messages in flight on the links `on` selects, after their
/// latency settings changed: from their send time, never sooner than 1 ms from now (madsim's
/// floor), ordered messages still in order.
fn redraw_in_flight(world: &mut World, on: impl Fn(&World, NodeId, NodeId) -> bool) {
    let selected: BTreeSet<(NodeId, NodeId)> = world
        .net
        .in_flight
        .values()
        .map(|packet| (packet.from.node, packet.to.node))
        .filter(|(from, to)| on(world, *from, *to))
        .collect();
    if selected.is_empty() {
        return;
    }
    let packets = take_in_flight(world, |from, to| selected.contains(&(from, to)));
    for link in &selected {
        if let Some(link) = world.net.links.get_mut(link) {
            link.ordered_last_ns = 0;
        }
    }
    let earliest = state::now_ns(world) + 1_000_000;
    for packet in packets {
        let config = world.net.link_config(packet.from.node, packet.to.node);
        let ends = (packet.from.node, packet.to.node);
        let at = (packet.sent_at_ns + state::draw_latency(world, ends, &config)).max(earliest);
        state::schedule_on_link(world, packet, at);
    }
}

impl NetControl {
    pub(crate) fn new() -> Self {
        NetControl { _private: () }
    }

    /// Cuts every link between the groups `a` and `b`, both ways. Messages in flight on them
    /// are dropped, and so is everything sent on them until they heal.
    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) -> Result<(), NetError> {
        cut(a, b, false)
    }

    /// Cuts the links from every node of `from` to every node of `to`, one way only.
    pub fn partition_one_way(&self, from: &[NodeId], to: &[NodeId]) -> Result<(), NetError> {
        cut(from, to, true)
    }

    /// Cuts `node` from every other node, both ways.
    pub fn isolate(&self, node: NodeId) -> Result<(), NetError> {
        let others: Vec<NodeId> = crate::world::with(|world| {
            (0..world.net.nodes.len() as u32)
                .map(NodeId)
                .filter(|other| *other != node)
                .collect()
        });
        cut(&[node], &others, false)
    }

    /// Heals every link between the groups `a` and `b`, both ways.
    pub fn heal(&self, a: &[NodeId], b: &[NodeId]) -> Result<(), NetError> {
        mend(a, b, false)
    }

    /// Heals the links from every node of `from` to every node of `to`, one way only.
    pub fn heal_one_way(&self, from: &[NodeId], to: &[NodeId]) -> Result<(), NetError> {
        mend(from, to, true)
    }

    /// Heals every partition (held links stay held).
    pub fn heal_all(&self) {
        crate::world::with(|world| {
            record(world, NetEvent::HealAll);
            for link in world.net.links.values_mut() {
                link.blocked = false;
            }
        });
    }

    /// Whether the link `from` to `to` is cut.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        crate::world::with(|world| world.net.links.get(&(from, to)).is_some_and(|l| l.blocked))
    }

    /// Holds the link `from` to `to`: its messages, those in flight included, queue up (at
    /// most [`super::NetConfig::hold_capacity`]; more are dropped) until [`NetControl::release`].
    pub fn hold(&self, from: NodeId, to: NodeId) -> Result<(), NetError> {
        crate::world::with(|world| {
            check_nodes(world, &[from, to])?;
            let link = world.net.links.entry((from, to)).or_default();
            if link.hold.is_some() {
                return Ok(());
            }
            link.hold = Some(VecDeque::new());
            record(world, NetEvent::Hold { from, to });
            for packet in take_in_flight(world, |a, b| a == from && b == to) {
                state::hold_push(world, packet);
            }
            Ok(())
        })
    }

    /// Releases a held link: the queued messages flow again, in the order they were sent
    /// (each with a fresh latency, never overtaking the one before). Ordered messages whose
    /// connection broke while they were held are dropped
    /// ([`super::DropReason::ConnectionBroken`]).
    pub fn release(&self, from: NodeId, to: NodeId) -> Result<(), NetError> {
        crate::world::with(|world| {
            check_nodes(world, &[from, to])?;
            let queue = match world.net.links.get_mut(&(from, to)) {
                Some(link) => link.hold.take(),
                None => None,
            };
            let Some(queue) = queue else {
                return Ok(());
            };
            let count = u32::try_from(queue.len()).unwrap_or(u32::MAX);
            record(world, NetEvent::Release { from, to, count });
            let config = world.net.link_config(from, to);
            let now = state::now_ns(world);
            let mut previous = 0;
            for packet in queue {
                if world.net.is_lost(&packet) {
                    // Its connection broke while it was held (a crash of either node).
                    let reason = DropReason::ConnectionBroken;
                    state::drop_packet(world, packet.to.node, &packet, reason);
                    continue;
                }
                let at = (now + state::draw_latency(world, (from, to), &config)).max(previous);
                previous = at;
                state::schedule_on_link(world, packet, at);
            }
            Ok(())
        })
    }

    /// Releases every held link.
    pub fn release_all(&self) {
        let held: Vec<(NodeId, NodeId)> = crate::world::with(|world| {
            let links = world.net.links.iter();
            links
                .filter(|(_, link)| link.hold.is_some())
                .map(|(key, _)| *key)
                .collect()
        });
        for (from, to) in held {
            self.release(from, to)
                .expect("held links join existing nodes");
        }
    }

    /// Whether the link `from` to `to` is held.
    pub fn is_held(&self, from: NodeId, to: NodeId) -> bool {
        crate::world::with(|world| {
            let link = world.net.links.get(&(from, to));
            link.is_some_and(|link| link.hold.is_some())
        })
    }

    /// Sets the settings of every link that has none of its own. A latency change redraws the
    /// delivery times of the messages in flight on those links.
    pub fn set_default(&self, link: LinkConfig) -> Result<(), NetError> {
        link.validate().map_err(NetError::InvalidConfig)?;
        crate::world::with(|world| {
            let event = NetEvent::Configure {
                from: None,
                to: None,
                link: Some(link),
            };
            record(world, event);
            let old = std::mem::replace(&mut world.net.default_link, link);
            if old.latency_range_ns() != link.latency_range_ns() {
                redraw_in_flight(world, |world, from, to| {
                    world
                        .net
                        .links
                        .get(&(from, to))
                        .and_then(|l| l.config)
                        .is_none()
                });
            }
        });
        Ok(())
    }

    /// Gives the link `from` to `to` its own settings. A latency change redraws the delivery
    /// times of the messages in flight on it.
    pub fn set_link(&self, from: NodeId, to: NodeId, link: LinkConfig) -> Result<(), NetError> {
        link.validate().map_err(NetError::InvalidConfig)?;
        configure(from, to, Some(link))
    }

    /// Gives the link `from` to `to` the default settings again.
    pub fn reset_link(&self, from: NodeId, to: NodeId) -> Result<(), NetError> {
        configure(from, to, None)
    }

    /// The settings that apply to the link `from` to `to`.
    pub fn link(&self, from: NodeId, to: NodeId) -> Result<LinkConfig, NetError> {
        crate::world::with(|world| {
            check_nodes(world, &[from, to])?;
            Ok(world.net.link_config(from, to))
        })
    }

    /// Opens a [`NetTap`]: from now on, every message event of the trace (send, deliver, drop,
    /// duplicate) is also copied into the tap's queue, which holds at most `capacity` unread
    /// events (see [`NetTap`] on overflow). Works on the supervisor and in any task of the
    /// run; several taps may be open at once, each sees every event.
    ///
    /// # Panics
    /// If `capacity` is 0.
    pub fn tap(&self, capacity: usize) -> NetTap {
        NetTap::open(capacity)
    }

    /// Running totals.
    pub fn stats(&self) -> NetStats {
        crate::world::with(|world| {
            let net = &world.net;
            let held = net.links.values().filter_map(|link| link.hold.as_ref());
            NetStats {
                sent: net.counters.sent,
                delivered: net.counters.delivered,
                dropped: net.counters.dropped,
                duplicated: net.counters.duplicated,
                in_flight: net.in_flight.len() as u64,
                held: held.map(|queue| queue.len() as u64).sum(),
                next_message_id: net.peek_message_id(),
            }
        })
    }
}

fn cut(from: &[NodeId], to: &[NodeId], one_way: bool) -> Result<(), NetError> {
    crate::world::with(|world| {
        check_nodes(world, from)?;
        check_nodes(world, to)?;
        let event = NetEvent::Partition {
            from: from.to_vec(),
            to: to.to_vec(),
            one_way,
        };
        record(world, event);
        for (a, b) in pairs(from, to) {
            block(world, a, b);
            if !one_way {
                block(world, b, a);
            }
        }
        Ok(())
    })
}

fn mend(from: &[NodeId], to: &[NodeId], one_way: bool) -> Result<(), NetError> {
    crate::world::with(|world| {
        check_nodes(world, from)?;
        check_nodes(world, to)?;
        let event = NetEvent::Heal {
            from: from.to_vec(),
            to: to.to_vec(),
            one_way,
        };
        record(world, event);
        for (a, b) in pairs(from, to) {
            unblock(world, a, b);
            if !one_way {
                unblock(world, b, a);
            }
        }
        Ok(())
    })
}

fn configure(from: NodeId, to: NodeId, link: Option<LinkConfig>) -> Result<(), NetError> {
    crate::world::with(|world| {
        check_nodes(world, &[from, to])?;
        let event = NetEvent::Configure {
            from: Some(from),
            to: Some(to),
            link,
        };
        record(world, event);
        let old = world.net.link_config(from, to);
        world.net.links.entry((from, to)).or_default().config = link;
        let new = world.net.link_config(from, to);
        if old.latency_range_ns() != new.latency_range_ns() {
            redraw_in_flight(world, |_, a, b| a == from && b == to);
        }
        Ok(())
    })
}
