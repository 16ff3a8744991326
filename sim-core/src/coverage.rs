//! What a run reached, as a set of *features*: the behaviour signal a guided search steers by.
//!
//! A run with [`crate::runner::TraceConfig::coverage`] on hashes, for every trace event, two
//! features into a fixed bitmap (as AFL does with edges):
//! - the event's *kind* on its node: a node crash, a `buggify!` site firing, a note's key, a
//!   message sent to a port as request, response or datagram (every ephemeral port counting
//!   as one), a drop and its reason, a disk operation and its error kind, a fault starting...
//!   but never times, ids, sizes or socket counts, which would make every run new;
//! - the *transition* from the node's previous kind to this one (a crash right after a
//!   write, a response sent after a failed fsync);
//! - while faults of the plan are in effect, the kind with the set of their kinds (a
//!   write answered during a partition is another behaviour than one answered without);
//! - and, within about a second of the node's last lifecycle event (start, crash, restart,
//!   pause, resume, exit) or clock change, or of the last fault starting or ending anywhere,
//!   the kind with how long ago that was, in doubling buckets (a query answered 2 ms after
//!   its node restarted is another behaviour than one answered 500 ms after). The buckets
//!   give a search a slope to climb: a case that came within 60 ms of a window is kept and
//!   mutated toward it.
//!
//! A scenario adds its own *interest points* with [`interest`] (a breaker open while a fault
//! is in effect, a lease held while its holder's clock jumped): features that no event shows.
//!
//! Coverage never feeds the trace hash, and collecting it does not change the run: the same
//! run with and without it has the same trace. It is as deterministic as the trace itself.

use crate::disk::DiskEvent;
use crate::net::{MessageKind, NetEvent};
use crate::stable_hash::StableHasher;
use crate::trace::{ClockEvent, Event};
use crate::NodeId;

/// Bits in a [`Coverage`] map: features are hashed into this many slots.
pub const COVERAGE_BITS: usize = 1 << 16;
const WORDS: usize = COVERAGE_BITS / 64;

/// A set of features, hashed into [`COVERAGE_BITS`] bits (two features may share a bit; at
/// the few thousand features a scenario reaches, seldom).
#[derive(Clone, PartialEq, Eq)]
pub struct Coverage {
    words: Box<[u64]>,
}

impl Default for Coverage {
    fn default() -> Self {
        Coverage {
            words: vec![0; WORDS].into_boxed_slice(),
        }
    }
}

impl std::fmt::Debug for Coverage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Coverage({} features, fingerprint {:016x})",
            self.count(),
            self.fingerprint()
        )
    }
}

impl Coverage {
    /// An empty map.
    pub fn new() -> Self {
        Coverage::default()
    }

    /// Adds the feature named by the 64-bit hash `feature`; whether its bit was new.
    pub fn insert(&mut self, feature: u64) -> bool {
        // The high bits: FNV's low bits mix poorly.
        let bit = (feature >> 48) as usize % COVERAGE_BITS;
        let (word, mask) = (bit / 64, 1u64 << (bit % 64));
        let new = self.words[word] & mask == 0;
        self.words[word] |= mask;
        new
    }

    /// Sets bit `bit` (as [`Coverage::bits`] lists them) directly: a map kept between runs
    /// (a stored exploration pool) restores its bits so. Bits past [`COVERAGE_BITS`] wrap.
    pub fn insert_bit(&mut self, bit: u32) -> bool {
        debug_assert!(
            (bit as usize) < COVERAGE_BITS,
            "coverage bit {bit} out of range"
        );
        self.insert(u64::from(bit) << 48)
    }

    /// Adds a feature named by a string (the harness's sometimes-invariants, say).
    pub fn insert_named(&mut self, namespace: &str, name: &str) -> bool {
        let mut h = StableHasher::default();
        h.u8(0xff);
        h.str(namespace);
        h.str(name);
        self.insert(h.finish())
    }

    /// Features (bits) set.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The bits set here and not in `seen`.
    pub fn new_against(&self, seen: &Coverage) -> usize {
        self.words
            .iter()
            .zip(seen.words.iter())
            .map(|(mine, theirs)| (mine & !theirs).count_ones() as usize)
            .sum()
    }

    /// Adds every feature of `other`; how many were new here.
    pub fn merge(&mut self, other: &Coverage) -> usize {
        let mut added = 0;
        for (mine, theirs) in self.words.iter_mut().zip(other.words.iter()) {
            added += (*theirs & !*mine).count_ones() as usize;
            *mine |= theirs;
        }
        added
    }

    /// The set bits, in increasing order.
    pub fn bits(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(index, &word)| {
            (0..64)
                .filter(move |bit| word & (1u64 << bit) != 0)
                .map(move |bit| (index * 64 + bit) as u32)
        })
    }

    /// A stable hash of the set: two runs with the same fingerprint reached the same
    /// features.
    pub fn fingerprint(&self) -> u64 {
        let mut h = StableHasher::default();
        for word in self.words.iter() {
            h.u64(*word);
        }
        h.finish()
    }
}

/// Coverage being collected in a run: the map, each node's previous event kind and the
/// faults in effect.
#[derive(Debug, Default)]
pub(crate) struct Collector {
    pub map: Coverage,
    /// Index 0: the supervisor; node `i` at `i + 1`.
    last_kind: Vec<u64>,
    /// The plan's episodes in effect (from the trace's fault edges): (episode, kind).
    faults: Vec<(u32, String)>,
    /// A hash of the kinds of fault in effect, 0 when none.
    fault_context: u64,
    /// Per slot, when the node last started, crashed, restarted, paused, resumed, exited or
    /// had its clock changed (simulated nanoseconds). Its start counts too: what a node does
    /// in its first second (recovery, its first requests) is a phase of its own.
    last_lifecycle_ns: Vec<Option<u64>>,
    /// When a fault last started or ended.
    last_fault_edge_ns: Option<u64>,
}

/// How far after a node's lifecycle change or a fault edge the time buckets reach: events
/// later than this are only "after".
const WINDOW_NS: u64 = 1 << 30;

/// The doubling bucket of an interval: 0 below 2^20 ns (about a millisecond), k for
/// [2^(k-1), 2^k) × 2^20 ns, 10 the last below [`WINDOW_NS`]; `None` past it.
fn bucket(since_ns: u64) -> Option<u8> {
    (since_ns < WINDOW_NS).then(|| (64 - (since_ns >> 20).leading_zeros()) as u8)
}

impl Collector {
    /// Notes `event` on `node` at `time_ns`.
    pub fn observe(&mut self, node: Option<NodeId>, time_ns: u64, event: &Event) {
        if let Event::Fault {
            start,
            episode,
            kind,
            ..
        } = event
        {
            self.faults.retain(|(index, _)| index != episode);
            if *start {
                self.faults.push((*episode, kind.clone()));
            }
            let kinds: std::collections::BTreeSet<&str> =
                self.faults.iter().map(|(_, kind)| kind.as_str()).collect();
            self.fault_context = if kinds.is_empty() {
                0
            } else {
                let mut h = StableHasher::default();
                for kind in kinds {
                    h.str(kind);
                }
                h.finish()
            };
        }
        let Some(kind) = kind_of(event) else {
            return;
        };
        let slot = node.map_or(0, |id| id.0 as usize + 1);
        if self.last_kind.len() <= slot {
            self.last_kind.resize(slot + 1, 0);
            self.last_lifecycle_ns.resize(slot + 1, None);
        }
        let previous = std::mem::replace(&mut self.last_kind[slot], kind);
        let mut h = StableHasher::default();
        h.u32(slot as u32);
        h.u64(kind);
        self.map.insert(h.finish());
        // The time buckets are taken before this event moves the marks, so that a restart's
        // own bucket tells how long the node was down.
        for (family, mark) in [
            (1u8, self.last_lifecycle_ns[slot]),
            (2u8, self.last_fault_edge_ns),
        ] {
            if let Some(bucket) = mark.and_then(|mark| bucket(time_ns.saturating_sub(mark))) {
                let mut timed = h.clone();
                timed.u8(family);
                timed.u8(bucket);
                self.map.insert(timed.finish());
            }
        }
        match event {
            Event::Node(_) | Event::Clock(_) => self.last_lifecycle_ns[slot] = Some(time_ns),
            Event::Fault { .. } => self.last_fault_edge_ns = Some(time_ns),
            _ => {}
        }
        if self.fault_context != 0 {
            // The same kind while these kinds of fault are in effect: a behaviour under a
            // fault is another behaviour.
            let mut under = h.clone();
            under.u64(self.fault_context);
            self.map.insert(under.finish());
        }
        h.u64(previous);
        self.map.insert(h.finish());
    }

    /// An interest point reached on `node`.
    pub fn interest(&mut self, node: Option<NodeId>, point: &str) {
        let mut h = StableHasher::default();
        h.u8(0xfe);
        h.u32(node.map_or(0, |id| id.0 + 1));
        h.str(point);
        self.map.insert(h.finish());
    }
}

/// Records that the current run reached the interest point `point` on the current node (or
/// the supervisor): a feature of its own in the run's [`Coverage`], for a guided search to
/// steer toward. Never part of the trace hash; does nothing outside a run or when the run
/// collects no coverage.
pub fn interest(point: &str) {
    crate::world::try_with(|world| {
        let node = world.current_node();
        if let Some(collector) = world.coverage.as_mut() {
            collector.interest(node, point);
        }
    });
}

/// What kind of event this is, for coverage: its type and the fields that name a behaviour,
/// never times, ids, sizes or paths; `None` for events that carry no behaviour (log lines,
/// timers: every run has them in every order).
fn kind_of(event: &Event) -> Option<u64> {
    let mut h = StableHasher::default();
    match event {
        Event::Node(event) => {
            h.u8(1);
            h.u8(event.code());
        }
        Event::Clock(event) => {
            h.u8(2);
            h.u8(match event {
                ClockEvent::Drift { .. } => 0,
                ClockEvent::Offset { .. } => 1,
                ClockEvent::Jump { delta_ns } => 2 + u8::from(*delta_ns < 0),
            });
        }
        Event::Timer { .. } | Event::Log { .. } => return None,
        Event::Buggify { site } => {
            h.u8(4);
            h.str(site);
        }
        Event::Violation { invariant, .. } => {
            h.u8(5);
            h.str(invariant);
        }
        Event::Note { key, .. } => {
            h.u8(6);
            h.str(key);
        }
        Event::Fault { start, kind, .. } => {
            h.u8(9);
            h.u8(u8::from(*start));
            h.str(kind);
        }
        Event::Error { .. } => h.u8(10),
        Event::Net(event) => {
            h.u8(7);
            net_kind(event, &mut h);
        }
        Event::Disk(event) => {
            h.u8(8);
            disk_kind(event, &mut h);
        }
    }
    Some(h.finish())
}

/// A port as coverage sees it: every ephemeral port (49152 and up, handed out in turn to the
/// sockets a node binds to port 0) is one, since its number counts sockets like an id.
fn port_kind(port: u16) -> u32 {
    if port >= crate::net::EPHEMERAL_FIRST {
        u32::from(u16::MAX)
    } else {
        u32::from(port)
    }
}

fn net_kind(event: &NetEvent, h: &mut StableHasher) {
    match event {
        NetEvent::Send { to, kind, .. } => {
            h.u8(0);
            h.u32(port_kind(to.port));
            h.u8(match kind {
                MessageKind::Data => 0,
                MessageKind::Request { .. } => 1,
                MessageKind::Response { .. } => 2,
            });
        }
        NetEvent::Deliver { to, .. } => {
            h.u8(1);
            h.u32(port_kind(to.port));
        }
        NetEvent::Drop { to, reason, .. } => {
            h.u8(2);
            h.u32(port_kind(to.port));
            h.u8(*reason as u8);
        }
        NetEvent::Duplicate { .. } => h.u8(3),
        NetEvent::Partition { one_way, .. } => {
            h.u8(4);
            h.u8(u8::from(*one_way));
        }
        NetEvent::Heal { .. } => h.u8(5),
        NetEvent::HealAll => h.u8(6),
        NetEvent::Hold { .. } => h.u8(7),
        NetEvent::Release { .. } => h.u8(8),
        NetEvent::Configure { .. } => h.u8(9),
    }
}

fn disk_kind(event: &DiskEvent, h: &mut StableHasher) {
    match event {
        DiskEvent::Op { op, result, .. } => {
            h.u8(0);
            h.u8(*op as u8);
            h.u8(result.map_or_else(|kind| kind as u8 + 1, |()| 0));
        }
        DiskEvent::Rename { result, .. } => {
            h.u8(1);
            h.u8(result.map_or_else(|kind| kind as u8 + 1, |()| 0));
        }
        DiskEvent::FsyncLost { .. } => h.u8(2),
        DiskEvent::SyncDirFailed { .. } => h.u8(3),
        DiskEvent::Writeback { op, .. } => {
            h.u8(4);
            h.u8(*op as u8);
        }
        DiskEvent::Crash { .. } => h.u8(5),
        DiskEvent::Corrupt { .. } => h.u8(6),
        DiskEvent::DamageSynced { .. } => h.u8(7),
        DiskEvent::Faults(_) => h.u8(8),
        DiskEvent::CrashModel(_) => h.u8(9),
    }
}
