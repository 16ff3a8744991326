//! Fault plans: plain serde data, written by hand or generated, shrunk, stored in the corpus.
//!
//! A plan is a list of timed [`Episode`]s. An episode starts a fault at `at_ms` (simulated
//! milliseconds since the start of the run) and, when it has a `duration_ms`, ends it that much
//! later (a crashed node restarts, a partition heals, a paused node resumes, a disk fault mode
//! switches off). Episodes without a duration last until the liveness phase heals everything.
//! Shrinking removes episodes and shortens them, so failures come back as few, short faults.
//!
//! Nodes are named, not numbered, so that a stored plan reads like a story:
//!
//! ```json
//! { "episodes": [
//!     { "at_ms": 120, "duration_ms": 300, "fault": { "kind": "partition", "groups": [["primary"], ["backup", "client"]] } },
//!     { "at_ms": 500, "duration_ms": 50,  "fault": { "kind": "crash", "node": "backup" } }
//! ] }
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// A fault plan: timed episodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultPlan {
    /// The episodes, in any order (they are applied by time).
    pub episodes: Vec<Episode>,
}

/// One fault, started at `at_ms`, ended after `duration_ms` (if any).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Episode {
    /// Start, in simulated milliseconds since the start of the run.
    pub at_ms: u64,
    /// How long the fault lasts; `None`: until the liveness phase heals it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// What goes wrong.
    pub fault: Fault,
}

/// What goes wrong in an episode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Symmetric partition: no message crosses between different groups.
    Partition {
        /// Groups of node names.
        groups: Vec<Vec<String>>,
    },
    /// One-way partition: messages from `from` to `to` are lost, the other way works.
    PartitionOneWay {
        /// Senders cut off.
        from: Vec<String>,
        /// Receivers cut off.
        to: Vec<String>,
    },
    /// Links cut in one of the shapes Jepsen's nemeses draw, non-transitive ones included:
    /// messages on each listed link are lost, both ways unless `one_way`.
    Cut {
        /// The shape the links were drawn in; the links are what is applied.
        shape: PartitionShape,
        /// Cut only from the first node of each link to the second.
        #[serde(default)]
        one_way: bool,
        /// The cut links, `[from, to]`.
        links: Vec<[String; 2]>,
    },
    /// The node crashes (volatile state and unsynced writes lost); restarts at the end.
    Crash {
        /// Node name.
        node: String,
    },
    /// The node freezes (a long GC pause); resumes at the end.
    Pause {
        /// Node name.
        node: String,
    },
    /// The node's wall clock is offset from true time; back to zero at the end.
    ClockOffset {
        /// Node name.
        node: String,
        /// Offset in milliseconds (negative: behind).
        offset_ms: i64,
    },
    /// The node's oscillator drifts; back to zero at the end.
    ClockDrift {
        /// Node name.
        node: String,
        /// Drift in parts per million.
        ppm: i64,
    },
    /// The node's wall clock jumps (an NTP step); jumps back at the end.
    ClockJump {
        /// Node name.
        node: String,
        /// Size of the jump in milliseconds (negative: backwards).
        delta_ms: i64,
    },
    /// Messages on the link are lost with this probability.
    LinkLoss {
        /// Sender.
        from: String,
        /// Receiver.
        to: String,
        /// Probability in 0..=1.
        probability: f64,
    },
    /// Messages on the link are duplicated with this probability.
    LinkDuplicate {
        /// Sender.
        from: String,
        /// Receiver.
        to: String,
        /// Probability in 0..=1.
        probability: f64,
    },
    /// Messages on the link take this latency range.
    LinkLatency {
        /// Sender.
        from: String,
        /// Receiver.
        to: String,
        /// Lower bound, at least 1.
        min_ms: u64,
        /// Upper bound.
        max_ms: u64,
    },
    /// Messages on the link are held (queued, bounded) and released in order at the end.
    Hold {
        /// Sender.
        from: String,
        /// Receiver.
        to: String,
    },
    /// The node's disk fails operations with these probabilities.
    DiskErrors {
        /// Node name.
        node: String,
        /// Probability that a read fails.
        read_error: f64,
        /// Probability that a write fails.
        write_error: f64,
        /// Probability that an fsync fails.
        fsync_error: f64,
    },
    /// The node's disk is slow.
    DiskLatency {
        /// Node name.
        node: String,
        /// Lower bound, at least 1.
        min_ms: u64,
        /// Upper bound.
        max_ms: u64,
    },
    /// The node's disk is full beyond what it holds now plus `free_bytes`.
    DiskFull {
        /// Node name.
        node: String,
        /// Bytes still free.
        free_bytes: u64,
    },
    /// One stored sector of one of the node's files is corrupted (bits flipped).
    DiskCorrupt {
        /// Node name.
        node: String,
    },
    /// Code-level fault injection (`buggify!`) is on.
    Buggify,
}

/// How a [`Fault::Cut`] splits the nodes (Jepsen's partition nemeses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionShape {
    /// One node from all the others.
    Isolate,
    /// The nodes in their listed order cut in two: the first half (a minority when the
    /// count is odd) from the rest.
    Halves,
    /// The nodes shuffled, then cut in two halves.
    RandomHalves,
    /// Two halves that cannot reach each other, and one node that reaches both (at least
    /// three nodes). Each half believes it can reach a majority through the bridge.
    Bridge,
    /// The nodes shuffled into a ring; each reaches its nearest neighbours, a majority with
    /// itself, and no node the same majority as the next (at least four nodes).
    Ring,
    /// Links chosen by hand.
    Custom,
}

impl PartitionShape {
    /// Every shape a generator draws, in a fixed order.
    pub const GENERATED: [PartitionShape; 5] = [
        PartitionShape::Isolate,
        PartitionShape::Halves,
        PartitionShape::RandomHalves,
        PartitionShape::Bridge,
        PartitionShape::Ring,
    ];

    /// The fewest nodes for which the shape cuts anything and differs from a simpler one.
    pub fn nodes_min(self) -> usize {
        match self {
            PartitionShape::Bridge => 3,
            PartitionShape::Ring => 4,
            _ => 2,
        }
    }

    /// The name used in files and reports.
    pub fn name(self) -> &'static str {
        match self {
            PartitionShape::Isolate => "isolate",
            PartitionShape::Halves => "halves",
            PartitionShape::RandomHalves => "random_halves",
            PartitionShape::Bridge => "bridge",
            PartitionShape::Ring => "ring",
            PartitionShape::Custom => "custom",
        }
    }

    /// The links this shape cuts among `nodes`, given as `listed` (their order in the
    /// budget) and `shuffled` (a permutation of them: the shape's random choice), both ways
    /// unless `one_way`, which cuts them from the first side to the second only (`reverse`
    /// swaps the sides). Each undirected link appears once when not `one_way`.
    pub fn links(
        self,
        listed: &[String],
        shuffled: &[String],
        one_way: bool,
        reverse: bool,
    ) -> Vec<[String; 2]> {
        let count = shuffled.len();
        let across = |a: &[String], b: &[String]| -> Vec<[String; 2]> {
            let (a, b) = if one_way && reverse { (b, a) } else { (a, b) };
            a.iter()
                .flat_map(|x| b.iter().map(move |y| [x.clone(), y.clone()]))
                .collect()
        };
        match self {
            PartitionShape::Isolate if count >= 2 => across(&shuffled[..1], &shuffled[1..]),
            PartitionShape::Halves if count >= 2 => {
                across(&listed[..count / 2], &listed[count / 2..])
            }
            PartitionShape::RandomHalves if count >= 2 => {
                across(&shuffled[..count / 2], &shuffled[count / 2..])
            }
            PartitionShape::Bridge if count >= 3 => {
                // shuffled[0] is the bridge, in neither half.
                let middle = 1 + (count - 1) / 2;
                across(&shuffled[1..middle], &shuffled[middle..])
            }
            PartitionShape::Ring if count >= 4 => {
                // Each node reaches the `reach` nearest on either side: 2 * reach + 1 nodes,
                // a majority, and fewer than all.
                let reach = (count / 2).div_ceil(2);
                let mut links = Vec::new();
                for i in 0..count {
                    for j in i + 1..count {
                        let distance = (j - i).min(count - (j - i));
                        if distance > reach {
                            let (a, b) = (&shuffled[i], &shuffled[j]);
                            if one_way && reverse {
                                links.push([b.clone(), a.clone()]);
                            } else {
                                links.push([a.clone(), b.clone()]);
                            }
                        }
                    }
                }
                links
            }
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for PartitionShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The kinds of fault, for budgets, swarm profiles and `--faults`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// [`Fault::Partition`], [`Fault::Cut`] both ways.
    Partition,
    /// [`Fault::PartitionOneWay`], [`Fault::Cut`] one way.
    OneWay,
    /// [`Fault::Crash`].
    Crash,
    /// [`Fault::Pause`].
    Pause,
    /// [`Fault::ClockOffset`], [`Fault::ClockDrift`], [`Fault::ClockJump`].
    Clock,
    /// [`Fault::LinkLoss`].
    Loss,
    /// [`Fault::LinkDuplicate`].
    Duplicate,
    /// [`Fault::LinkLatency`].
    Latency,
    /// [`Fault::Hold`].
    Hold,
    /// [`Fault::DiskErrors`], [`Fault::DiskLatency`], [`Fault::DiskFull`].
    Disk,
    /// [`Fault::DiskCorrupt`].
    Corrupt,
    /// [`Fault::Buggify`].
    Buggify,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 12] = [
        FaultKind::Partition,
        FaultKind::OneWay,
        FaultKind::Crash,
        FaultKind::Pause,
        FaultKind::Clock,
        FaultKind::Loss,
        FaultKind::Duplicate,
        FaultKind::Latency,
        FaultKind::Hold,
        FaultKind::Disk,
        FaultKind::Corrupt,
        FaultKind::Buggify,
    ];

    /// Every kind but `excluded`: how a scenario states a fault model that leaves a few out.
    pub fn all_except(excluded: &[FaultKind]) -> BTreeSet<FaultKind> {
        FaultKind::ALL
            .into_iter()
            .filter(|kind| !excluded.contains(kind))
            .collect()
    }

    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Partition => "partition",
            FaultKind::OneWay => "one_way",
            FaultKind::Crash => "crash",
            FaultKind::Pause => "pause",
            FaultKind::Clock => "clock",
            FaultKind::Loss => "loss",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Latency => "latency",
            FaultKind::Hold => "hold",
            FaultKind::Disk => "disk",
            FaultKind::Corrupt => "corrupt",
            FaultKind::Buggify => "buggify",
        }
    }

    /// Parses a comma-separated list such as `crash,partition`; `all` and `none` are accepted.
    pub fn parse_list(text: &str) -> Result<BTreeSet<FaultKind>, String> {
        let text = text.trim();
        match text {
            "all" => return Ok(FaultKind::ALL.into_iter().collect()),
            "none" | "" => return Ok(BTreeSet::new()),
            _ => {}
        }
        text.split(',')
            .map(|word| {
                let word = word.trim();
                FaultKind::ALL
                    .into_iter()
                    .find(|kind| kind.name() == word)
                    .ok_or_else(|| {
                        let names: Vec<&str> = FaultKind::ALL.iter().map(|k| k.name()).collect();
                        format!(
                            "unknown fault kind {word:?}; known: all, none, {}",
                            names.join(", ")
                        )
                    })
            })
            .collect()
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Fault {
    /// The kind of this fault.
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Partition { .. } => FaultKind::Partition,
            Fault::PartitionOneWay { .. } => FaultKind::OneWay,
            Fault::Cut { one_way: false, .. } => FaultKind::Partition,
            Fault::Cut { one_way: true, .. } => FaultKind::OneWay,
            Fault::Crash { .. } => FaultKind::Crash,
            Fault::Pause { .. } => FaultKind::Pause,
            Fault::ClockOffset { .. } | Fault::ClockDrift { .. } | Fault::ClockJump { .. } => {
                FaultKind::Clock
            }
            Fault::LinkLoss { .. } => FaultKind::Loss,
            Fault::LinkDuplicate { .. } => FaultKind::Duplicate,
            Fault::LinkLatency { .. } => FaultKind::Latency,
            Fault::Hold { .. } => FaultKind::Hold,
            Fault::DiskErrors { .. } | Fault::DiskLatency { .. } | Fault::DiskFull { .. } => {
                FaultKind::Disk
            }
            Fault::DiskCorrupt { .. } => FaultKind::Corrupt,
            Fault::Buggify => FaultKind::Buggify,
        }
    }

    /// Every node name the fault mentions.
    pub fn nodes(&self) -> Vec<&str> {
        match self {
            Fault::Partition { groups } => groups.iter().flatten().map(String::as_str).collect(),
            Fault::PartitionOneWay { from, to } => {
                from.iter().chain(to.iter()).map(String::as_str).collect()
            }
            Fault::Cut { links, .. } => links.iter().flatten().map(String::as_str).collect(),
            Fault::Crash { node }
            | Fault::Pause { node }
            | Fault::ClockOffset { node, .. }
            | Fault::ClockDrift { node, .. }
            | Fault::ClockJump { node, .. }
            | Fault::DiskErrors { node, .. }
            | Fault::DiskLatency { node, .. }
            | Fault::DiskFull { node, .. }
            | Fault::DiskCorrupt { node } => vec![node.as_str()],
            Fault::LinkLoss { from, to, .. }
            | Fault::LinkDuplicate { from, to, .. }
            | Fault::LinkLatency { from, to, .. }
            | Fault::Hold { from, to } => vec![from.as_str(), to.as_str()],
            Fault::Buggify => vec![],
        }
    }

    /// The node this fault takes down (crash, pause), if any.
    pub fn downs(&self) -> Option<&str> {
        match self {
            Fault::Crash { node } | Fault::Pause { node } => Some(node),
            _ => None,
        }
    }

    /// Checks values and names against the topology.
    pub fn validate(&self, nodes: &[String]) -> Result<(), String> {
        self.validate_values()?;
        for name in self.nodes() {
            if !nodes.iter().any(|node| node == name) {
                return Err(format!(
                    "unknown node {name:?} (nodes: {})",
                    nodes.join(", ")
                ));
            }
        }
        let probability = |p: f64, what: &str| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(format!("{what} must be within 0..=1, got {p}"))
            }
        };
        match self {
            Fault::LinkLoss { probability: p, .. } => probability(*p, "loss probability"),
            Fault::LinkDuplicate { probability: p, .. } => probability(*p, "duplicate probability"),
            Fault::DiskErrors {
                read_error,
                write_error,
                fsync_error,
                ..
            } => {
                probability(*read_error, "read_error")?;
                probability(*write_error, "write_error")?;
                probability(*fsync_error, "fsync_error")
            }
            Fault::LinkLatency { min_ms, max_ms, .. }
            | Fault::DiskLatency { min_ms, max_ms, .. } => {
                if *min_ms == 0 || min_ms > max_ms {
                    Err(format!(
                        "latency needs 1 <= min_ms <= max_ms, got {min_ms}..{max_ms}"
                    ))
                } else {
                    Ok(())
                }
            }
            Fault::Partition { groups } if groups.len() < 2 => {
                Err("a partition needs at least two groups".into())
            }
            Fault::Cut { links, .. } if links.iter().any(|[from, to]| from == to) => {
                Err("a cut link needs two different nodes".into())
            }
            Fault::ClockDrift { ppm, .. } if ppm.abs() > sim_core::time::DRIFT_MAX_PPM => {
                Err(format!(
                    "drift must be within ±{} ppm",
                    sim_core::time::DRIFT_MAX_PPM
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Every episode ends within this many milliseconds of the start (30 days).
pub const EPISODE_END_MAX_MS: u64 = 30 * 24 * 3_600_000;
/// The longest latency a plan may ask for, in milliseconds (one hour, as sim-core allows).
pub const LATENCY_MAX_MS: u64 = 3_600_000;
/// The largest clock offset or jump a plan may ask for, in milliseconds (one year).
pub const CLOCK_STEP_MAX_MS: i64 = 365 * 24 * 3_600_000;
/// The most free bytes a disk-full episode may leave (1 GiB).
pub const DISK_FREE_MAX_BYTES: u64 = 1 << 30;

impl Fault {
    /// Bounds on numbers, so that no plan from a file can overflow or be refused at run time.
    fn validate_values(&self) -> Result<(), String> {
        match self {
            Fault::LinkLatency { max_ms, .. } | Fault::DiskLatency { max_ms, .. }
                if *max_ms > LATENCY_MAX_MS =>
            {
                Err(format!("latency max_ms must be at most {LATENCY_MAX_MS}"))
            }
            Fault::ClockOffset {
                offset_ms: step, ..
            }
            | Fault::ClockJump { delta_ms: step, .. }
                if step.unsigned_abs() > CLOCK_STEP_MAX_MS as u64 =>
            {
                Err(format!(
                    "clock steps must be within ±{CLOCK_STEP_MAX_MS} ms"
                ))
            }
            Fault::DiskFull { free_bytes, .. } if *free_bytes > DISK_FREE_MAX_BYTES => {
                Err(format!("free_bytes must be at most {DISK_FREE_MAX_BYTES}"))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Partition { groups } => {
                let groups: Vec<String> = groups.iter().map(|g| g.join(",")).collect();
                write!(f, "partition {}", groups.join(" | "))
            }
            Fault::PartitionOneWay { from, to } => {
                write!(f, "one-way partition {} -/-> {}", from.join(","), to.join(","))
            }
            Fault::Cut {
                shape,
                one_way,
                links,
            } => {
                let arrow = if *one_way { "-/->" } else { "-/-" };
                let links: Vec<String> = links
                    .iter()
                    .map(|[from, to]| format!("{from} {arrow} {to}"))
                    .collect();
                let links = if links.is_empty() {
                    "(no link)".to_string()
                } else {
                    links.join(", ")
                };
                let way = if *one_way { " one way" } else { "" };
                write!(f, "cut {shape}{way}: {links}")
            }
            Fault::Crash { node } => write!(f, "crash {node}"),
            Fault::Pause { node } => write!(f, "pause {node}"),
            Fault::ClockOffset { node, offset_ms } => {
                write!(f, "clock offset {node} {offset_ms} ms")
            }
            Fault::ClockDrift { node, ppm } => write!(f, "clock drift {node} {ppm} ppm"),
            Fault::ClockJump { node, delta_ms } => write!(f, "clock jump {node} {delta_ms} ms"),
            Fault::LinkLoss {
                from,
                to,
                probability,
            } => write!(f, "loss {from}->{to} {probability:.2}"),
            Fault::LinkDuplicate {
                from,
                to,
                probability,
            } => write!(f, "duplicate {from}->{to} {probability:.2}"),
            Fault::LinkLatency {
                from,
                to,
                min_ms,
                max_ms,
            } => write!(f, "latency {from}->{to} {min_ms}..{max_ms} ms"),
            Fault::Hold { from, to } => write!(f, "hold {from}->{to}"),
            Fault::DiskErrors {
                node,
                read_error,
                write_error,
                fsync_error,
            } => write!(
                f,
                "disk errors {node} read {read_error:.2} write {write_error:.2} fsync {fsync_error:.2}"
            ),
            Fault::DiskLatency {
                node,
                min_ms,
                max_ms,
            } => write!(f, "disk latency {node} {min_ms}..{max_ms} ms"),
            Fault::DiskFull { node, free_bytes } => {
                write!(f, "disk full {node} ({free_bytes} bytes free)")
            }
            Fault::DiskCorrupt { node } => write!(f, "disk corrupt {node}"),
            Fault::Buggify => write!(f, "buggify on"),
        }
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.episodes.is_empty() {
            return write!(f, "(no faults)");
        }
        let mut episodes: Vec<&Episode> = self.episodes.iter().collect();
        episodes.sort_by_key(|episode| episode.at_ms);
        for (index, episode) in episodes.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            match episode.duration_ms {
                Some(duration) => write!(
                    f,
                    "  at {:>6} ms for {:>6} ms: {}",
                    episode.at_ms, duration, episode.fault
                )?,
                None => write!(
                    f,
                    "  at {:>6} ms until healed: {}",
                    episode.at_ms, episode.fault
                )?,
            }
        }
        Ok(())
    }
}

impl FaultPlan {
    /// A plan with no faults.
    pub fn none() -> Self {
        FaultPlan::default()
    }

    /// When the last episode ends (episodes without a duration count from their start).
    pub fn end_ms(&self) -> u64 {
        self.episodes
            .iter()
            .map(|e| e.at_ms.saturating_add(e.duration_ms.unwrap_or(0)))
            .max()
            .unwrap_or(0)
    }

    /// The kinds of fault the plan uses.
    pub fn kinds(&self) -> BTreeSet<FaultKind> {
        self.episodes.iter().map(|e| e.fault.kind()).collect()
    }

    /// Checks every episode against the topology and the bounds on times.
    pub fn validate(&self, nodes: &[String]) -> Result<(), String> {
        for (index, episode) in self.episodes.iter().enumerate() {
            let end = episode.at_ms.checked_add(episode.duration_ms.unwrap_or(0));
            if end.is_none_or(|end| end > EPISODE_END_MAX_MS) {
                return Err(format!(
                    "episode {index} ({}): must end within {EPISODE_END_MAX_MS} ms",
                    episode.fault
                ));
            }
            episode
                .fault
                .validate(nodes)
                .map_err(|error| format!("episode {index} ({}): {error}", episode.fault))?;
        }
        Ok(())
    }

    /// The largest number of nodes down (crashed or paused) at the same time.
    pub fn max_down(&self) -> usize {
        let mut edges: Vec<(u64, i32, &str)> = Vec::new();
        for episode in &self.episodes {
            if let Some(node) = episode.fault.downs() {
                edges.push((episode.at_ms, 1, node));
                if let Some(duration) = episode.duration_ms {
                    edges.push((episode.at_ms + duration, -1, node));
                }
            }
        }
        // Ends before starts at the same instant.
        edges.sort_by_key(|&(at, delta, _)| (at, delta));
        let mut down: std::collections::BTreeMap<&str, i32> = Default::default();
        let mut max = 0;
        for (_, delta, node) in edges {
            *down.entry(node).or_default() += delta;
            max = max.max(down.values().filter(|&&count| count > 0).count());
        }
        max
    }
}
