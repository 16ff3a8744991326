//! Generation of cases: swarm profiles and fault plans as `proptest` strategies.
//!
//! Each case first draws a [`SwarmProfile`]: which fault kinds are on and how intense they are
//! (swarm testing: a seed that turns most kinds off explores deeper into the ones left on). The
//! plan is then drawn within that profile and the scenario's [`FaultBudget`] (for example at
//! most one node down at a time). The profile is part of the case and is stored with failures.
//!
//! Everything is drawn from proptest's ChaCha generator seeded from the case's seed, so the seed
//! alone determines the case.

use crate::plan::{Episode, Fault, FaultKind, FaultPlan, PartitionShape};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The fault model a scenario is expected to survive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultBudget {
    /// Kinds of fault the scenario survives.
    pub kinds: BTreeSet<FaultKind>,
    /// Nodes that faults may name; empty: all nodes.
    pub targets: Vec<String>,
    /// Nodes that may crash or pause, among `targets`; empty: all targets. A design that
    /// recovers a node's state from a peer survives one crash, not two in a row.
    pub crash_targets: Vec<String>,
    /// Nodes whose disks disk faults (errors, latency, no space, corruption) may hit, among
    /// `targets`; empty: all targets. Name the nodes that keep state on disk, so that no disk
    /// episode is spent on a node that never touches its disk.
    #[serde(default)]
    pub disk_targets: Vec<String>,
    /// At most this many nodes crashed or paused at the same time.
    pub down_max: usize,
    /// At most this many episodes in a plan.
    pub episodes_max: usize,
    /// Faults start within this many milliseconds from the start of the run.
    pub plan_duration_ms: u64,
    /// No episode lasts longer than this.
    pub episode_duration_max_ms: u64,
}

impl Default for FaultBudget {
    fn default() -> Self {
        FaultBudget {
            kinds: FaultKind::ALL.into_iter().collect(),
            targets: Vec::new(),
            crash_targets: Vec::new(),
            disk_targets: Vec::new(),
            down_max: 1,
            episodes_max: 8,
            plan_duration_ms: 5_000,
            episode_duration_max_ms: 2_000,
        }
    }
}

/// The swarm knobs drawn for one case: which kinds are on, and how hard they hit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwarmProfile {
    /// Kinds of fault on in this case.
    pub kinds: BTreeSet<FaultKind>,
    /// Most episodes in this case's plan.
    pub episodes_max: usize,
    /// Highest link loss and duplication probability.
    pub link_probability_max: f64,
    /// Highest disk error probability.
    pub disk_error_max: f64,
    /// Highest link latency in milliseconds.
    pub latency_max_ms: u64,
}

impl SwarmProfile {
    /// A profile with nothing on (`--faults none`).
    pub fn quiet() -> Self {
        SwarmProfile {
            kinds: BTreeSet::new(),
            episodes_max: 0,
            link_probability_max: 0.0,
            disk_error_max: 0.0,
            latency_max_ms: 1,
        }
    }
}

/// Strategy for swarm profiles over the `allowed` kinds.
pub fn swarm_strategy(
    budget: &FaultBudget,
    allowed: BTreeSet<FaultKind>,
) -> BoxedStrategy<SwarmProfile> {
    let kinds: Vec<FaultKind> = allowed.intersection(&budget.kinds).copied().collect();
    if kinds.is_empty() || budget.episodes_max == 0 {
        return Just(SwarmProfile::quiet()).boxed();
    }
    let count = kinds.len();
    let episodes_max = budget.episodes_max;
    (
        proptest::sample::subsequence(kinds, 1..=count),
        1..=episodes_max,
        0.05f64..0.5,
        0.05f64..0.3,
        5u64..200,
    )
        .prop_map(
            |(kinds, episodes_max, link_probability_max, disk_error_max, latency_max_ms)| {
                SwarmProfile {
                    kinds: kinds.into_iter().collect(),
                    episodes_max,
                    link_probability_max,
                    disk_error_max,
                    latency_max_ms,
                }
            },
        )
        .boxed()
}

/// Strategy for plans within `swarm` and `budget`, over the given node names.
pub fn plan_strategy(
    nodes: &[String],
    budget: &FaultBudget,
    swarm: &SwarmProfile,
) -> BoxedStrategy<FaultPlan> {
    let targets: Vec<String> = if budget.targets.is_empty() {
        nodes.to_vec()
    } else {
        budget.targets.clone()
    };
    let kinds: Vec<FaultKind> = swarm.kinds.iter().copied().collect();
    if kinds.is_empty() || swarm.episodes_max == 0 || targets.is_empty() {
        return Just(FaultPlan::none()).boxed();
    }
    let or_targets = |nodes: &Vec<String>| {
        if nodes.is_empty() {
            targets.clone()
        } else {
            nodes.clone()
        }
    };
    let crash_targets = or_targets(&budget.crash_targets);
    let disk_targets = or_targets(&budget.disk_targets);
    let episode = episode_strategy(targets, crash_targets, disk_targets, kinds, budget, swarm);
    let down_max = budget.down_max;
    proptest::collection::vec(episode, 0..=swarm.episodes_max)
        .prop_map(move |episodes| within_budget(FaultPlan { episodes }, down_max))
        .boxed()
}

/// Drops episodes, in order, that would take more than `down_max` nodes down at once.
pub fn within_budget(plan: FaultPlan, down_max: usize) -> FaultPlan {
    let mut kept = FaultPlan::none();
    for episode in plan.episodes {
        kept.episodes.push(episode);
        if kept.max_down() > down_max {
            kept.episodes.pop();
        }
    }
    kept
}

/// The parameters of one episode, each its own draw: shrinking one never changes another
/// (a shorter clock step stays a clock step of the same kind on the same node).
#[derive(Clone, Debug)]
struct Draws {
    kind: FaultKind,
    at_ms: u64,
    duration_ms: u64,
    target: String,
    peer: String,
    crash_target: String,
    disk_target: String,
    shape: PartitionShape,
    shuffled: Vec<String>,
    reverse: bool,
    clock: ClockFault,
    disk: DiskFault,
    /// Magnitudes in [0, 1): the first sizes the fault, the others the disk's further rates.
    units: [f64; 3],
}

#[derive(Clone, Copy, Debug)]
enum ClockFault {
    Offset,
    Drift,
    Jump,
}

#[derive(Clone, Copy, Debug)]
enum DiskFault {
    Errors,
    Latency,
    Full,
}

fn episode_strategy(
    targets: Vec<String>,
    crash_targets: Vec<String>,
    disk_targets: Vec<String>,
    kinds: Vec<FaultKind>,
    budget: &FaultBudget,
    swarm: &SwarmProfile,
) -> BoxedStrategy<Episode> {
    let plan_duration = budget.plan_duration_ms.max(1);
    let duration_max = budget.episode_duration_max_ms.max(1);
    let swarm = swarm.clone();
    let shapes: Vec<PartitionShape> = PartitionShape::GENERATED
        .into_iter()
        .filter(|shape| shape.nodes_min() <= targets.len().max(2))
        .collect();
    let listed = targets.clone();
    let unit = || 0.0f64..1.0;
    (
        (
            proptest::sample::select(kinds),
            0..plan_duration,
            1..=duration_max,
        ),
        (
            proptest::sample::select(targets.clone()),
            proptest::sample::select(targets.clone()),
            proptest::sample::select(crash_targets),
            proptest::sample::select(disk_targets),
        ),
        (
            proptest::sample::select(shapes),
            Just(targets.clone()).prop_shuffle(),
            any::<bool>(),
        ),
        (
            proptest::sample::select(vec![
                ClockFault::Offset,
                ClockFault::Drift,
                ClockFault::Jump,
            ]),
            proptest::sample::select(vec![DiskFault::Errors, DiskFault::Latency, DiskFault::Full]),
        ),
        (unit(), unit(), unit()),
    )
        .prop_map(
            move |(
                (kind, at_ms, duration_ms),
                (target, peer, crash_target, disk_target),
                (shape, shuffled, reverse),
                (clock, disk),
                (unit_a, unit_b, unit_c),
            )| {
                let draws = Draws {
                    kind,
                    at_ms,
                    duration_ms,
                    target,
                    peer,
                    crash_target,
                    disk_target,
                    shape,
                    shuffled,
                    reverse,
                    clock,
                    disk,
                    units: [unit_a, unit_b, unit_c],
                };
                Episode {
                    at_ms: draws.at_ms,
                    duration_ms: Some(draws.duration_ms),
                    fault: fault_of(&draws, &listed, &swarm),
                }
            },
        )
        .boxed()
}

/// Builds the fault an episode's draws describe.
fn fault_of(draws: &Draws, targets: &[String], swarm: &SwarmProfile) -> Fault {
    let [unit, unit_b, unit_c] = draws.units;
    let node = draws.target.clone();
    let disk_node = draws.disk_target.clone();
    // A link needs two ends: a peer drawn equal to the target stands for the next target.
    let peer = if draws.peer == draws.target {
        let index = targets.iter().position(|n| *n == draws.target).unwrap_or(0);
        targets[(index + 1) % targets.len()].clone()
    } else {
        draws.peer.clone()
    };
    let cut = |one_way: bool| Fault::Cut {
        shape: draws.shape,
        one_way,
        links: draws
            .shape
            .links(targets, &draws.shuffled, one_way, draws.reverse),
    };
    match draws.kind {
        FaultKind::Partition => cut(false),
        FaultKind::OneWay => cut(true),
        FaultKind::Crash => Fault::Crash {
            node: draws.crash_target.clone(),
        },
        FaultKind::Pause => Fault::Pause {
            node: draws.crash_target.clone(),
        },
        FaultKind::Clock => match draws.clock {
            ClockFault::Offset => Fault::ClockOffset {
                node,
                offset_ms: (unit * 20_000.0) as i64 - 10_000,
            },
            ClockFault::Drift => Fault::ClockDrift {
                node,
                ppm: (unit * 400_000.0) as i64 - 200_000,
            },
            ClockFault::Jump => Fault::ClockJump {
                node,
                delta_ms: (unit * 120_000.0) as i64 - 60_000,
            },
        },
        FaultKind::Loss => Fault::LinkLoss {
            from: node,
            to: peer,
            probability: round2(unit * swarm.link_probability_max),
        },
        FaultKind::Duplicate => Fault::LinkDuplicate {
            from: node,
            to: peer,
            probability: round2(unit * swarm.link_probability_max),
        },
        FaultKind::Latency => {
            let max_ms = 1 + (unit * swarm.latency_max_ms as f64) as u64;
            Fault::LinkLatency {
                from: node,
                to: peer,
                min_ms: 1 + max_ms / 4,
                max_ms: max_ms.max(1 + max_ms / 4),
            }
        }
        FaultKind::Hold => Fault::Hold {
            from: node,
            to: peer,
        },
        FaultKind::Disk => match draws.disk {
            DiskFault::Errors => Fault::DiskErrors {
                node: disk_node.clone(),
                read_error: round2(unit * swarm.disk_error_max),
                write_error: round2(unit_b * swarm.disk_error_max),
                fsync_error: round2(unit_c * swarm.disk_error_max / 2.0),
            },
            DiskFault::Latency => Fault::DiskLatency {
                node: disk_node.clone(),
                min_ms: 1,
                max_ms: 1 + (unit * 50.0) as u64,
            },
            DiskFault::Full => Fault::DiskFull {
                node: disk_node.clone(),
                free_bytes: (unit * 65_536.0) as u64,
            },
        },
        FaultKind::Corrupt => Fault::DiskCorrupt { node: disk_node },
        FaultKind::Buggify => Fault::Buggify,
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// A proptest runner whose generator is seeded from `seed` alone, with proptest's own
/// failure persistence off (the corpus replaces it).
pub fn runner_for_seed(seed: u64) -> TestRunner {
    let mut bytes = [0u8; 32];
    let mut state = seed;
    for chunk in bytes.chunks_mut(8) {
        state = sim_core::rng::splitmix64(state);
        chunk.copy_from_slice(&state.to_le_bytes());
    }
    // Pinned rather than read from `PROPTEST_*` variables: the seed alone determines the case.
    let config = Config {
        failure_persistence: None,
        max_flat_map_regens: 1_000_000,
        max_default_size_range: 100,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

/// Draws the value tree of `strategy` for `seed`.
pub fn tree_for_seed<T: std::fmt::Debug>(
    strategy: &BoxedStrategy<T>,
    seed: u64,
) -> Box<dyn ValueTree<Value = T>> {
    let mut runner = runner_for_seed(seed);
    strategy
        .new_tree(&mut runner)
        .expect("harness strategies never reject")
}
