//! Network and disk faults of a plan, applied through sim-core's controls.
//!
//! Link faults (loss, duplication, latency) end by putting the link back to its settings
//! before the plan first changed it (the scenario's own, `ordered` included), and partitions
//! end by healing the links between their groups: two overlapping episodes on the same link
//! therefore end together, at the end of the first. The liveness phase heals everything
//! regardless.

use crate::plan::Fault;
use crate::scenario::{node, nodes};
use sim_core::net::{NetControl, NetEvent};
use sim_core::trace::Timeline;
use sim_core::{NodeId, Sim};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

thread_local! {
    /// The settings of each link before the plan first changed it. Every run has a fresh
    /// thread of its own, so this is per run.
    static LINK_BASELINE: RefCell<BTreeMap<(NodeId, NodeId), sim_core::net::LinkConfig>> =
        const { RefCell::new(BTreeMap::new()) };
}

/// Puts a link back to its settings before the plan changed it.
fn restore_link(net: &NetControl, key: (NodeId, NodeId)) {
    if let Some(link) = LINK_BASELINE.with(|b| b.borrow_mut().remove(&key)) {
        net.set_link(key.0, key.1, link)
            .expect("a link's own earlier settings are valid");
    }
}

fn link_ids(sim: &Sim, from: &str, to: &str) -> Option<(NodeId, NodeId)> {
    Some((node(sim, from)?, node(sim, to)?))
}

/// Applies `change` to the current settings of the link `from -> to`.
fn change_link(
    net: &NetControl,
    (from, to): (NodeId, NodeId),
    change: impl FnOnce(sim_core::net::LinkConfig) -> sim_core::net::LinkConfig,
) {
    if let Ok(link) = net.link(from, to) {
        LINK_BASELINE.with(|b| {
            b.borrow_mut().entry((from, to)).or_insert(link);
        });
        // Values come from validated plans; a refusal would be a harness bug.
        net.set_link(from, to, change(link))
            .expect("link settings from a validated plan");
    }
}

pub(crate) fn start(sim: &Sim, fault: &Fault) {
    let net = sim.net();
    match fault {
        Fault::Partition { groups } => {
            for (index, a) in groups.iter().enumerate() {
                for b in &groups[index + 1..] {
                    let _ = net.partition(&nodes(sim, a), &nodes(sim, b));
                }
            }
        }
        Fault::PartitionOneWay { from, to } => {
            let _ = net.partition_one_way(&nodes(sim, from), &nodes(sim, to));
        }
        Fault::LinkLoss {
            from,
            to,
            probability,
        } => {
            if let Some(link) = link_ids(sim, from, to) {
                change_link(&net, link, |l| l.with_loss(*probability));
            }
        }
        Fault::LinkDuplicate {
            from,
            to,
            probability,
        } => {
            if let Some(link) = link_ids(sim, from, to) {
                change_link(&net, link, |l| l.with_duplicate(*probability));
            }
        }
        Fault::LinkLatency {
            from,
            to,
            min_ms,
            max_ms,
        } => {
            if let Some(link) = link_ids(sim, from, to) {
                let (min, max) = (
                    Duration::from_millis(*min_ms),
                    Duration::from_millis(*max_ms),
                );
                change_link(&net, link, |l| l.with_latency(min, max));
            }
        }
        Fault::Hold { from, to } => {
            if let Some((from, to)) = link_ids(sim, from, to) {
                let _ = net.hold(from, to);
            }
        }
        other => crate::apply_disk::start(sim, other),
    }
}

pub(crate) fn end(sim: &Sim, fault: &Fault) {
    let net = sim.net();
    match fault {
        Fault::Partition { groups } => {
            for (index, a) in groups.iter().enumerate() {
                for b in &groups[index + 1..] {
                    let _ = net.heal(&nodes(sim, a), &nodes(sim, b));
                }
            }
        }
        Fault::PartitionOneWay { from, to } => {
            let _ = net.heal_one_way(&nodes(sim, from), &nodes(sim, to));
        }
        Fault::LinkLoss { from, to, .. }
        | Fault::LinkDuplicate { from, to, .. }
        | Fault::LinkLatency { from, to, .. } => {
            if let Some(key) = link_ids(sim, from, to) {
                restore_link(&net, key);
            }
        }
        Fault::Hold { from, to } => {
            if let Some((from, to)) = link_ids(sim, from, to) {
                let _ = net.release(from, to);
            }
        }
        other => crate::apply_disk::end(sim, other),
    }
}

/// Heals the network and the disks: partitions, holds, link settings, disk fault modes.
pub(crate) fn heal(sim: &Sim) {
    let net = sim.net();
    net.heal_all();
    net.release_all();
    let changed: Vec<_> = LINK_BASELINE.with(|b| b.borrow().keys().copied().collect());
    for key in changed {
        restore_link(&net, key);
    }
    crate::apply_disk::heal(sim);
}

/// One line of a Mermaid sequence diagram for a network event, if it draws one.
pub(crate) fn mermaid_line(timeline: &Timeline, event: &NetEvent, at: &str) -> Option<String> {
    use crate::mermaid::{clean, ident};
    let name = |node: NodeId| ident(timeline.node_name(Some(node)));
    match event {
        NetEvent::Deliver {
            id,
            from,
            to,
            bytes,
            ..
        } => Some(format!(
            "{}->>{}: {at} #{id} ({bytes} B)",
            name(from.node),
            name(to.node)
        )),
        NetEvent::Drop {
            id,
            from,
            to,
            reason,
        } => Some(format!(
            "{}-x{}: {at} #{id} dropped ({})",
            name(from.node),
            name(to.node),
            clean(reason.name())
        )),
        NetEvent::Partition { from, to, one_way } => {
            let side =
                |group: &[NodeId]| group.iter().map(|n| name(*n)).collect::<Vec<_>>().join(",");
            Some(format!(
                "Note over supervisor: {at} partition {} {} {}",
                side(from),
                if *one_way { "-/->" } else { "-/-" },
                side(to)
            ))
        }
        NetEvent::HealAll => Some(format!("Note over supervisor: {at} heal all")),
        _ => None,
    }
}
