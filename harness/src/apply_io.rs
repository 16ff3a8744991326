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
        Fault::Cut { one_way, links, .. } => {
            for [from, to] in links {
                if let Some((from, to)) = link_ids(sim, from, to) {
                    let _ = if *one_way {
                        net.partition_one_way(&[from], &[to])
                    } else {
                        net.partition(&[from], &[to])
                    };
                }
            }
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
        Fault::Cut { one_way, links, .. } => {
            for [from, to] in links {
                if let Some((from, to)) = link_ids(sim, from, to) {
                    let _ = if *one_way {
                        net.heal_one_way(&[from], &[to])
                    } else {
                        net.heal(&[from], &[to])
                    };
                }
            }
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

#[cfg(test)]
mod tests {
    use crate::generate::{plan_strategy, tree_for_seed, FaultBudget, SwarmProfile};
    use crate::plan::{Fault, FaultKind, PartitionShape};
    use std::collections::BTreeSet;

    #[test]
    fn every_partition_shape_is_generated_and_applied() {
        // Goal: plans draw each of Jepsen's partition shapes, both ways and one way, and
        // applying one cuts exactly its links (and ending it heals them).
        let names: Vec<String> = (1..=5).map(|n| format!("n{n}")).collect();
        let kinds: BTreeSet<FaultKind> = [FaultKind::Partition, FaultKind::OneWay].into();
        let budget = FaultBudget {
            kinds: kinds.clone(),
            ..FaultBudget::default()
        };
        let swarm = SwarmProfile {
            kinds,
            episodes_max: 8,
            ..SwarmProfile::quiet()
        };
        let strategy = plan_strategy(&names, &budget, &swarm);
        let mut cuts = Vec::new();
        let mut seen = BTreeSet::new();
        for seed in 0..100 {
            for episode in tree_for_seed(&strategy, seed).current().episodes {
                if let Fault::Cut { shape, one_way, .. } = &episode.fault {
                    if seen.insert((*shape, *one_way)) {
                        cuts.push(episode.fault.clone());
                    }
                }
            }
        }
        let expected: BTreeSet<(PartitionShape, bool)> = PartitionShape::GENERATED
            .into_iter()
            .flat_map(|shape| [(shape, false), (shape, true)])
            .collect();
        assert_eq!(seen, expected);
        let report = sim_core::run(1, sim_core::SimConfig::default(), move |sim| async move {
            let ids: Vec<sim_core::NodeId> = names
                .iter()
                .map(|name| sim.node(name.as_str()).build())
                .collect();
            let cut_now = || -> BTreeSet<(usize, usize)> {
                let net = sim.net();
                (0..ids.len())
                    .flat_map(|a| (0..ids.len()).map(move |b| (a, b)))
                    .filter(|&(a, b)| a != b && net.is_cut(ids[a], ids[b]))
                    .collect()
            };
            let index = |name: &str| names.iter().position(|n| n == name).unwrap();
            for fault in &cuts {
                let Fault::Cut { one_way, links, .. } = fault else {
                    unreachable!()
                };
                let mut expected = BTreeSet::new();
                for [from, to] in links {
                    expected.insert((index(from), index(to)));
                    if !one_way {
                        expected.insert((index(to), index(from)));
                    }
                }
                assert!(!expected.is_empty(), "{fault}");
                super::start(&sim, fault);
                assert_eq!(cut_now(), expected, "{fault}");
                super::end(&sim, fault);
                assert!(cut_now().is_empty(), "{fault}");
            }
            Ok(())
        });
        assert!(report.outcome.is_pass(), "{:?}", report.outcome);
    }

    #[test]
    fn the_ring_and_the_bridge_are_not_transitive() {
        // Goal: in a ring every node reaches a majority yet two neighbours see different
        // majorities; a bridge reaches both halves that cannot reach each other.
        let names: Vec<String> = (1..=5).map(|n| format!("n{n}")).collect();
        let reaches = |links: &[[String; 2]], a: &str| -> BTreeSet<String> {
            names
                .iter()
                .filter(|b| {
                    b.as_str() == a
                        || !links
                            .iter()
                            .any(|[x, y]| (x == a && y == *b) || (y == a && x == *b))
                })
                .cloned()
                .collect()
        };
        let ring = PartitionShape::Ring.links(&names, &names, false, false);
        let views: Vec<BTreeSet<String>> = names.iter().map(|n| reaches(&ring, n)).collect();
        assert!(views.iter().all(|view| view.len() == 3), "{views:?}");
        assert_eq!(views.iter().collect::<BTreeSet<_>>().len(), 5, "{views:?}");
        let bridge = PartitionShape::Bridge.links(&names, &names, false, false);
        assert_eq!(reaches(&bridge, "n1").len(), 5);
        assert_eq!(
            reaches(&bridge, "n2"),
            ["n1", "n2", "n3"].map(String::from).into()
        );
        assert_eq!(
            reaches(&bridge, "n4"),
            ["n1", "n4", "n5"].map(String::from).into()
        );
    }
}
