//! The trace: every simulated event with its simulated time and node, and a stable hash.
//!
//! The hash covers a fixed set of *simulation* events (node lifecycle, clock changes, timers,
//! buggify firings, violations, user notes, and the network and disk events). It is computed
//! with FNV-1a over a little-endian encoding that sim-core writes by hand, so it depends neither
//! on the log filter, nor on whether the trace is kept or printed, nor on debug versus release
//! builds, nor on the machine. Application logs (`tracing` events) are kept in the trace for
//! reading but are never part of the hash.

use crate::node::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub use crate::stable_hash::{hash_str, StableHasher};

/// Something that feeds itself into the trace hash.
pub trait StableHash {
    /// Feeds `self` into `hasher` with a fixed encoding.
    fn stable_hash(&self, hasher: &mut StableHasher);
}

/// One parameter of a fault, for [`Event::Fault`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultField {
    /// A node, by name.
    Node(String),
    /// A whole number (milliseconds, ppm, bytes...).
    Int(i64),
    /// A probability or other fraction, hashed by its bits.
    Float(f64),
    /// The end of a group of nodes (partitions).
    GroupEnd,
}

impl StableHash for FaultField {
    fn stable_hash(&self, h: &mut StableHasher) {
        match self {
            FaultField::Node(name) => {
                h.u8(0);
                h.str(name);
            }
            FaultField::Int(value) => {
                h.u8(1);
                h.i64(*value);
            }
            FaultField::Float(value) => {
                h.u8(2);
                h.u64(value.to_bits());
            }
            FaultField::GroupEnd => h.u8(3),
        }
    }
}

/// One event of a node's life.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeEvent {
    /// The node was added and its `init` started.
    Start,
    /// The node crashed: volatile state gone, crash effects applied.
    Crash,
    /// The node's `init` ran again after a crash.
    Restart,
    /// The node was frozen.
    Pause,
    /// The node was thawed.
    Resume,
    /// The node's `init` future returned.
    Exit,
}

/// A change to a node's clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockEvent {
    /// The drift of the node's oscillator was set, in parts per million.
    Drift {
        /// New drift.
        ppm: i64,
    },
    /// The wall clock's offset from true time was set, in nanoseconds.
    Offset {
        /// New offset.
        ns: i64,
    },
    /// The wall clock jumped by this many nanoseconds (negative: backwards).
    Jump {
        /// Size of the jump.
        delta_ns: i64,
    },
}

/// What happened. Network and disk events have their own enums in [`crate::net`] and
/// [`crate::disk`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Node lifecycle.
    Node(NodeEvent),
    /// Clock change.
    Clock(ClockEvent),
    /// A sleep on a node's clock ended.
    Timer {
        /// The deadline, on the node's monotonic clock, in nanoseconds.
        deadline_local_ns: u64,
    },
    /// A [`crate::buggify!`] site fired.
    Buggify {
        /// `module::path:line:column` of the site.
        site: String,
    },
    /// An invariant was reported broken. Only the name is hashed: rewording a message must not
    /// change recorded traces.
    Violation {
        /// Name of the invariant.
        invariant: String,
        /// What was seen (display only).
        message: String,
    },
    /// A user-defined event (see [`note`]): its key is hashed, its text is display only.
    Note {
        /// A stable key, chosen by the caller (such as `write-acked`).
        key: String,
        /// Free text (display only).
        text: String,
    },
    /// A fault of a test's plan started or ended (recorded by the harness). Hashed by its
    /// typed fields; the text is display only.
    Fault {
        /// Whether the fault started (else it ended).
        start: bool,
        /// The episode's index in its plan.
        episode: u32,
        /// The kind of fault, such as `partition`.
        kind: String,
        /// The fault's parameters.
        fields: Vec<FaultField>,
        /// A readable description (display only).
        text: String,
    },
    /// The test itself broke its contract (for example a fault plan naming a node that does not
    /// exist); the run ends with [`crate::Outcome::Error`]. The message is display only.
    Error {
        /// What broke.
        message: String,
    },
    /// A network event.
    Net(crate::net::NetEvent),
    /// A disk event.
    Disk(crate::disk::DiskEvent),
    /// An application log line from `tracing`; never part of the hash.
    Log {
        /// Level, such as `INFO`.
        level: String,
        /// The `tracing` target.
        target: String,
        /// Message and fields.
        message: String,
    },
}

impl NodeEvent {
    /// The variant's fixed code, as the trace hash encodes it.
    pub(crate) fn code(&self) -> u8 {
        match self {
            NodeEvent::Start => 0,
            NodeEvent::Crash => 1,
            NodeEvent::Restart => 2,
            NodeEvent::Pause => 3,
            NodeEvent::Resume => 4,
            NodeEvent::Exit => 5,
        }
    }
}

impl Event {
    /// Whether this event is part of the trace hash and of the step count.
    pub fn is_hashed(&self) -> bool {
        !matches!(self, Event::Log { .. })
    }
}

impl StableHash for Event {
    fn stable_hash(&self, h: &mut StableHasher) {
        match self {
            Event::Node(event) => {
                h.u8(1);
                h.u8(event.code());
            }
            Event::Clock(event) => {
                h.u8(2);
                match event {
                    ClockEvent::Drift { ppm } => {
                        h.u8(0);
                        h.i64(*ppm);
                    }
                    ClockEvent::Offset { ns } => {
                        h.u8(1);
                        h.i64(*ns);
                    }
                    ClockEvent::Jump { delta_ns } => {
                        h.u8(2);
                        h.i64(*delta_ns);
                    }
                }
            }
            Event::Timer { deadline_local_ns } => {
                h.u8(3);
                h.u64(*deadline_local_ns);
            }
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
            Event::Fault {
                start,
                episode,
                kind,
                fields,
                ..
            } => {
                h.u8(9);
                h.u8(u8::from(*start));
                h.u32(*episode);
                h.str(kind);
                h.u32(fields.len() as u32);
                for field in fields {
                    field.stable_hash(h);
                }
            }
            Event::Error { .. } => {
                h.u8(10);
            }
            Event::Net(event) => {
                h.u8(7);
                event.stable_hash(h);
            }
            Event::Disk(event) => {
                h.u8(8);
                event.stable_hash(h);
            }
            Event::Log { .. } => {}
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Node(event) => write!(f, "node {event:?}"),
            Event::Clock(ClockEvent::Drift { ppm }) => write!(f, "clock drift {ppm} ppm"),
            Event::Clock(ClockEvent::Offset { ns }) => write!(f, "clock offset {ns} ns"),
            Event::Clock(ClockEvent::Jump { delta_ns }) => write!(f, "clock jump {delta_ns} ns"),
            Event::Timer { deadline_local_ns } => {
                write!(f, "timer {:?}", Duration::from_nanos(*deadline_local_ns))
            }
            Event::Buggify { site } => write!(f, "buggify {site}"),
            Event::Violation { invariant, message } => {
                write!(f, "VIOLATION {invariant}: {message}")
            }
            Event::Note { key, text } => write!(f, "note [{key}] {text}"),
            Event::Fault {
                start,
                episode,
                text,
                ..
            } => write!(
                f,
                "FAULT {} #{episode}: {text}",
                if *start { "start" } else { "end" }
            ),
            Event::Error { message } => write!(f, "ERROR {message}"),
            Event::Net(event) => write!(f, "net {event}"),
            Event::Disk(event) => write!(f, "disk {event}"),
            Event::Log {
                level,
                target,
                message,
            } => write!(f, "{level} {target}: {message}"),
        }
    }
}

/// An event with its simulated time and node (`None`: the supervisor).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    /// Simulated time since the start of the run, in nanoseconds.
    pub time_ns: u64,
    /// The node it happened on, or `None` for the supervisor.
    pub node: Option<NodeId>,
    /// What happened.
    pub event: Event,
}

impl TraceEvent {
    fn stable_hash(&self, h: &mut StableHasher) {
        h.u64(self.time_ns);
        match self.node {
            None => h.u8(0),
            Some(node) => {
                h.u8(1);
                h.u32(node.0);
            }
        }
        self.event.stable_hash(h);
    }
}

/// The recorded trace of one run: the hash always, the events when asked for.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    hasher: StableHasher,
    hashed_count: u64,
    events: Vec<TraceEvent>,
    keep: bool,
    events_max: usize,
    truncated: bool,
    /// What each message carried (see [`message_summary`]), by message id; kept only with
    /// the events, for reading. Never hashed: its text changes with a field's name, and the
    /// hash must not.
    messages: BTreeMap<u64, String>,
}

/// The longest message summary kept in a timeline, in characters; longer ones are cut with `…`.
pub const MESSAGE_SUMMARY_MAX: usize = 120;

/// What a message carries, as compact JSON on one line, cut to [`MESSAGE_SUMMARY_MAX`]
/// characters.
///
/// JSON through `Serialize` rather than `Debug`: every message is `Serialize` already (it goes
/// on the wire), so sockets need no `Debug` bound that generic drivers would have to repeat.
pub fn message_summary(message: &(impl Serialize + ?Sized)) -> String {
    let text =
        serde_json::to_string(message).unwrap_or_else(|error| format!("(not shown: {error})"));
    let mut summary: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MESSAGE_SUMMARY_MAX)
        .collect();
    if text.chars().count() > MESSAGE_SUMMARY_MAX {
        summary.push('…');
    }
    summary
}

impl Trace {
    pub(crate) fn new(keep: bool, events_max: usize) -> Self {
        Trace {
            keep,
            events_max,
            ..Default::default()
        }
    }

    pub(crate) fn push(&mut self, event: TraceEvent) {
        if event.event.is_hashed() {
            event.stable_hash(&mut self.hasher);
            self.hashed_count += 1;
        }
        if self.keep {
            // A duplicate carries what its original carried.
            if let Event::Net(crate::net::NetEvent::Duplicate { id, copy }) = &event.event {
                if let Some(summary) = self.messages.get(id).cloned() {
                    self.messages.insert(*copy, summary);
                }
            }
            if self.events.len() < self.events_max {
                self.events.push(event);
            } else {
                self.truncated = true;
            }
        }
    }

    /// The stable hash of the hashed events so far.
    pub fn hash(&self) -> u64 {
        self.hasher.finish()
    }

    /// How many hashed events were recorded.
    pub fn hashed_count(&self) -> u64 {
        self.hashed_count
    }

    /// Whether events are being kept.
    pub fn keeps_events(&self) -> bool {
        self.keep
    }

    /// Keeps what message `id` carried, for display; only when events are kept.
    pub(crate) fn keep_message(&mut self, id: u64, summary: String) {
        if self.keep {
            self.messages.insert(id, summary);
        }
    }

    pub(crate) fn into_events(self) -> (Vec<TraceEvent>, bool, BTreeMap<u64, String>) {
        (self.events, self.truncated, self.messages)
    }
}

/// The kept events of a finished run, with the node names needed to print them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Timeline {
    /// Node names, indexed by [`NodeId`].
    pub node_names: Vec<String>,
    /// The events in order.
    pub events: Vec<TraceEvent>,
    /// Whether events were dropped because the trace reached `events_max`.
    pub truncated: bool,
    /// What each message carried, by message id, cut short (display only, never hashed; see
    /// [`message_summary`]).
    #[serde(default)]
    pub messages: BTreeMap<u64, String>,
}

impl Timeline {
    /// The name of a node, or `supervisor`.
    pub fn node_name(&self, node: Option<NodeId>) -> &str {
        match node {
            None => "supervisor",
            Some(id) => self
                .node_names
                .get(id.0 as usize)
                .map_or("?", |name| name.as_str()),
        }
    }

    /// One line per event: simulated time, node, event; nodes by name, and a message's send,
    /// delivery or drop with what it carried.
    pub fn format_line(&self, event: &TraceEvent) -> String {
        let what = match &event.event {
            Event::Net(net) => {
                let name = |node: NodeId| self.node_name(Some(node)).to_string();
                let mut text = format!("net {}", Named(net, &name));
                if let Some(summary) = net.message_id().and_then(|id| self.messages.get(&id)) {
                    text.push_str(": ");
                    text.push_str(summary);
                }
                text
            }
            other => other.to_string(),
        };
        format!(
            "{:>14} {:<12} {what}",
            format_time(event.time_ns),
            self.node_name(event.node),
        )
    }

    /// Index of the first event where the hashed parts of two timelines differ, if any.
    ///
    /// Application logs are skipped, as the hash skips them.
    pub fn first_divergence(&self, other: &Timeline) -> Option<(usize, usize)> {
        let a: Vec<usize> = hashed_indices(&self.events);
        let b: Vec<usize> = hashed_indices(&other.events);
        for (position, (ia, ib)) in a.iter().zip(b.iter()).enumerate() {
            if self.events[*ia] != other.events[*ib] {
                return Some((a[position], b[position]));
            }
        }
        if a.len() != b.len() {
            let position = a.len().min(b.len());
            return Some((
                a.get(position).copied().unwrap_or(self.events.len()),
                b.get(position).copied().unwrap_or(other.events.len()),
            ));
        }
        None
    }
}

/// A network event written with node names.
struct Named<'a>(&'a crate::net::NetEvent, &'a dyn Fn(NodeId) -> String);

impl fmt::Display for Named<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_named(f, self.1)
    }
}

fn hashed_indices(events: &[TraceEvent]) -> Vec<usize> {
    (0..events.len())
        .filter(|&index| events[index].event.is_hashed())
        .collect()
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for event in &self.events {
            writeln!(f, "{}", self.format_line(event))?;
        }
        if self.truncated {
            writeln!(f, "... (trace truncated at events_max)")?;
        }
        Ok(())
    }
}

/// Formats simulated nanoseconds as seconds with microsecond precision, such as `1.234567s`.
pub fn format_time(time_ns: u64) -> String {
    format!(
        "{}.{:06}s",
        time_ns / 1_000_000_000,
        (time_ns % 1_000_000_000) / 1_000
    )
}

/// Records a user event that is part of the trace hash, on the current node.
///
/// Use it to mark points of interest in a workload, so that the hash and the printed timeline
/// show them: `note("write-acked", format!("client 2 wrote {value}"))`. The hash covers the
/// key (and when and where the note was made), never the text, so rewording a text keeps every
/// recorded trace hash. Does nothing outside a run.
pub fn note(key: &str, text: impl Into<String>) {
    let text = text.into();
    crate::world::try_with(|world| {
        let node = world.current_node();
        let key = key.to_string();
        world.record(node, Event::Note { key, text });
    });
}

/// Records that a fault of the test's plan started or ended (see [`Event::Fault`]); for
/// harnesses. Does nothing outside a run.
pub fn fault_edge(start: bool, episode: u32, kind: &str, fields: Vec<FaultField>, text: String) {
    crate::world::try_with(|world| {
        let event = Event::Fault {
            start,
            episode,
            kind: kind.to_string(),
            fields,
            text,
        };
        world.record(None, event);
    });
}

/// A `tracing` layer that stamps every application event with simulated time and node name.
///
/// The runner installs it on the run's thread when [`crate::runner::TraceConfig::log`] is set;
/// lines go to stderr when `print` is on, and into the kept timeline when `keep` is on.
pub struct SimLayer;

impl<S> tracing_subscriber::Layer<S> for SimLayer
where
    S: tracing::Subscriber,
{
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let metadata = event.metadata();
        let log = Event::Log {
            level: metadata.level().to_string(),
            target: metadata.target().to_string(),
            message: visitor.text,
        };
        crate::world::try_with(|world| world.record_log(log));
    }
}

#[derive(Default)]
struct MessageVisitor {
    text: String,
}

impl tracing::field::Visit for MessageVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.text, "{value:?}");
        } else {
            if !self.text.is_empty() {
                self.text.push(' ');
            }
            let _ = write!(self.text, "{}={value:?}", field.name());
        }
    }
}
