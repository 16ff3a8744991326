//! The independent oracle of the `event-sourcing` scenario: what clients submitted, what the
//! store acknowledged, and every event any read, subscription push or acknowledgement placed,
//! checked as it is observed.
//!
//! The oracle never asks the store; it judges only what crossed the network. Its rules:
//!
//! * **versions-gapless**: a stream read returns versions `from, from+1, ..` of that stream with
//!   increasing positions; a read of all streams returns positions `from, from+1, ..` with each
//!   stream's versions consecutive; every event was submitted by some append (no phantom);
//!   batches are contiguous and whole (no partial batch at the end of a read, none cut inside).
//! * **corruption-detected**: every event read carries exactly the stream and data that were
//!   submitted under its id.
//! * **acked-appends-survive**: a position (or stream version), once acknowledged or served,
//!   always holds the same event; and a read invoked after an event was acknowledged or served
//!   reaches at least that far (the store serves only durable events, so a crash may not take
//!   back anything a client has seen).
//! * **idempotent**: an event id sits at one position only (a retry never duplicates); an
//!   append answered with a definite failure after a retry has none of its events stored.
//! * **linearizable** (here only its by-product): an append answered with a definite failure
//!   on its first attempt has none of its events stored.

use harness::{Checked, Invariant};
use patterns::event_sourcing::event::{AppendRequest, Appended, EventData, EventId, RecordedEvent};
use std::collections::BTreeMap;

/// Reads return gapless, unique versions and positions.
pub static VERSIONS_GAPLESS: Invariant = Invariant::always(
    "versions-gapless",
    "reads return gapless, unique versions and positions; no phantom event, no partial batch",
);
/// Every event served is what was submitted under its id.
pub static CORRUPTION_DETECTED: Invariant = Invariant::always(
    "corruption-detected",
    "every event served carries exactly the stream and data submitted under its id",
);
/// What was acknowledged or served stays.
pub static ACKED_SURVIVE: Invariant = Invariant::always(
    "acked-appends-survive",
    "every acknowledged (or once served) event keeps its position and version through every crash, and every later read reaches it",
);
/// Retries never duplicate.
pub static IDEMPOTENT: Invariant = Invariant::always(
    "idempotent",
    "a retried append with the same event ids never duplicates events, also across restarts, and is never refused while its events are stored",
);
/// Appends and stream reads are linearizable per stream.
pub static LINEARIZABLE: Invariant = Invariant::always(
    "linearizable",
    "appends with expected versions and stream reads are linearizable per stream (EventLog model; indeterminate appends allowed), checked when the workload ends and again over the whole run; a checker that gives up makes the run inconclusive",
);

/// What a read asked for.
#[derive(Clone, Debug)]
pub enum ReadKind {
    /// A stream from a version.
    Stream {
        /// The stream.
        stream: String,
        /// The first version asked for.
        from_version: u64,
    },
    /// All streams from a global position.
    All {
        /// The first position asked for.
        from_position: u64,
    },
    /// A subscription push (consecutive events; its ends may cut batches).
    Push,
}

/// One observed read.
#[derive(Clone, Debug)]
pub struct ReadObservation<'a> {
    /// What was asked.
    pub kind: ReadKind,
    /// What came back.
    pub events: &'a [RecordedEvent],
    /// The most events asked for (a read that returns fewer reached the end).
    pub count_max: u64,
    /// True time the read was sent.
    pub invoked_ns: u64,
    /// True time the answer came.
    pub returned_ns: u64,
}

impl ReadObservation<'_> {
    /// Whether the read reached the end of what it reads (not cut by `count_max`).
    fn complete(&self) -> bool {
        !matches!(self.kind, ReadKind::Push) && (self.events.len() as u64) < self.count_max
    }
}

/// The largest value known at each time, for "what must a read invoked at `t` see".
#[derive(Clone, Debug, Default)]
struct MaxTimeline {
    /// (time, running maximum), both increasing.
    points: Vec<(u64, u64)>,
}

impl MaxTimeline {
    fn record(&mut self, at_ns: u64, value: u64) {
        let last = self.points.last().copied();
        if last.is_some_and(|(_, max)| max >= value) {
            return;
        }
        match last {
            // Observations are fed in time order; a same-instant one raises the last point.
            Some((at, _)) if at >= at_ns => self.points.last_mut().expect("a last point").1 = value,
            _ => self.points.push((at_ns, value)),
        }
    }

    /// The largest value recorded strictly before `at_ns`.
    fn max_before(&self, at_ns: u64) -> Option<u64> {
        let index = self.points.partition_point(|&(at, _)| at < at_ns);
        index.checked_sub(1).map(|i| self.points[i].1)
    }
}

/// A submitted batch.
#[derive(Clone, Debug)]
struct SubmittedBatch {
    stream: String,
    events: Vec<EventData>,
}

/// Where an event was observed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Slot {
    stream: String,
    version: u64,
    position: u64,
}

/// The oracle; see the [module docs](self).
#[derive(Debug, Default)]
pub struct Oracle {
    /// Submitted batches by their first event id.
    batches: BTreeMap<EventId, SubmittedBatch>,
    /// Every submitted event: its batch (first id) and index in it.
    events: BTreeMap<EventId, (EventId, usize)>,
    /// Where each event was observed.
    slots: BTreeMap<EventId, Slot>,
    /// The event observed at each position, and how (for messages).
    by_position: BTreeMap<u64, (EventId, &'static str)>,
    /// The event observed at each stream version.
    by_version: BTreeMap<(String, u64), EventId>,
    /// Batches whose append failed definitely: (what, after a retry).
    failed: BTreeMap<EventId, (String, bool)>,
    /// Per stream: the stream length known durable, by time.
    stream_ends: BTreeMap<String, MaxTimeline>,
    /// The global length known durable, by time.
    global_end: MaxTimeline,
}

fn violation(invariant: &Invariant, message: String) -> Checked {
    Err(invariant.violated(message))
}

impl Oracle {
    /// An oracle that has seen nothing.
    pub fn new() -> Self {
        Oracle::default()
    }

    /// The event observed (acknowledged or served) at version `version` of `stream`.
    pub fn event_at(&self, stream: &str, version: u64) -> Option<EventId> {
        self.by_version.get(&(stream.to_owned(), version)).copied()
    }

    /// Records a batch a client is about to send (again, for a retry: then it must be the same).
    ///
    /// # Panics
    /// If an event id is reused for different content: a bug in the workload.
    pub fn submit(&mut self, append: &AppendRequest) {
        let first = append.events[0].event_id;
        if let Some(known) = self.batches.get(&first) {
            assert!(
                known.stream == append.stream && known.events == append.events,
                "the workload reused event id {first} for another batch"
            );
            return;
        }
        for (index, event) in append.events.iter().enumerate() {
            let reused = self.events.insert(event.event_id, (first, index));
            assert!(
                reused.is_none(),
                "the workload reused event id {}",
                event.event_id
            );
        }
        let batch = SubmittedBatch {
            stream: append.stream.clone(),
            events: append.events.clone(),
        };
        self.batches.insert(first, batch);
    }

    /// Records the acknowledgement of a submitted batch at `now_ns`.
    pub fn acked(&mut self, append: &AppendRequest, appended: &Appended, now_ns: u64) -> Checked {
        let count = append.events.len() as u64;
        let versions = appended.last_version.checked_sub(appended.first_version);
        let positions = appended.last_position.checked_sub(appended.first_position);
        if versions != Some(count - 1) || positions != Some(count - 1) {
            return violation(
                &VERSIONS_GAPLESS,
                format!("a batch of {count} events was acknowledged as {appended}"),
            );
        }
        let first = append.events[0].event_id;
        for (index, event) in (0u64..).zip(&append.events) {
            let slot = Slot {
                stream: append.stream.clone(),
                version: appended.first_version + index,
                position: appended.first_position + index,
            };
            self.place(event.event_id, slot, "acknowledged")?;
        }
        self.check_not_failed(first)?;
        self.raise_ends(
            &append.stream,
            appended.last_version,
            appended.last_position,
            now_ns,
        );
        Ok(())
    }

    /// Records that the append of a submitted batch failed definitely (nothing may be stored);
    /// `retried`: the failure came on a retry after an attempt whose outcome was unknown.
    pub fn failed(&mut self, append: &AppendRequest, what: &str, retried: bool) -> Checked {
        let first = append.events[0].event_id;
        self.failed.insert(first, (what.to_owned(), retried));
        self.check_not_failed(first)
    }

    /// Checks one read and records what it placed.
    pub fn read(&mut self, read: &ReadObservation<'_>) -> Checked {
        self.check_structure(read)?;
        for (index, event) in read.events.iter().enumerate() {
            self.check_content(event)?;
            self.check_batch_neighbours(read, index)?;
        }
        self.check_reaches(read)?;
        for event in read.events {
            let slot = Slot {
                stream: event.stream.clone(),
                version: event.version,
                position: event.position,
            };
            self.place(event.data.event_id, slot, "served")?;
            let (first, _) = self.events[&event.data.event_id];
            self.check_not_failed(first)?;
            self.raise_ends(
                &event.stream,
                event.version,
                event.position,
                read.returned_ns,
            );
        }
        Ok(())
    }

    /// Versions and positions as the kind of read requires.
    fn check_structure(&self, read: &ReadObservation<'_>) -> Checked {
        let events = read.events;
        let mut next_versions: BTreeMap<&str, u64> = BTreeMap::new();
        for (index, event) in (0u64..).zip(events) {
            let where_ = format!("{:?} read, event {index} ({})", read.kind, describe(event));
            match &read.kind {
                ReadKind::Stream {
                    stream,
                    from_version,
                } => {
                    if event.stream != *stream || event.version != from_version + index {
                        let want = from_version + index;
                        let message = format!("{where_}: expected `{stream}` v{want}");
                        return violation(&VERSIONS_GAPLESS, message);
                    }
                }
                ReadKind::All { from_position } => {
                    if event.position != from_position + index {
                        let want = from_position + index;
                        return violation(&VERSIONS_GAPLESS, format!("{where_}: expected p{want}"));
                    }
                }
                ReadKind::Push => {}
            }
            if let Some(previous) = index.checked_sub(1).map(|i| &events[i as usize]) {
                if event.position <= previous.position
                    || (!matches!(read.kind, ReadKind::Stream { .. })
                        && event.position != previous.position + 1)
                {
                    let message = format!("{where_}: position follows p{}", previous.position);
                    return violation(&VERSIONS_GAPLESS, message);
                }
            }
            if let Some(next) = next_versions.get(event.stream.as_str()) {
                if event.version != *next {
                    let message = format!("{where_}: stream's previous event was v{}", next - 1);
                    return violation(&VERSIONS_GAPLESS, message);
                }
            } else if matches!(read.kind, ReadKind::All { from_position: 0 }) && event.version != 0
            {
                let message = format!("{where_}: a full read starts the stream at v0");
                return violation(&VERSIONS_GAPLESS, message);
            }
            next_versions.insert(&event.stream, event.version + 1);
        }
        Ok(())
    }

    /// The event was submitted (no phantom) with exactly this stream and data.
    fn check_content(&self, event: &RecordedEvent) -> Checked {
        let id = event.data.event_id;
        let Some(&(first, index)) = self.events.get(&id) else {
            let message = format!("phantom event {}: no append submitted it", describe(event));
            return violation(&VERSIONS_GAPLESS, message);
        };
        let batch = &self.batches[&first];
        if batch.stream != event.stream || batch.events[index] != event.data {
            let message = format!(
                "event {} differs from what was submitted: submitted to `{}` as {}, read from \
                 `{}` as {}{}",
                id,
                batch.stream,
                short(&batch.events[index]),
                event.stream,
                short(&event.data),
                first_difference(&batch.events[index].payload, &event.data.payload)
            );
            return violation(&CORRUPTION_DETECTED, message);
        }
        Ok(())
    }

    /// Batches are contiguous and whole within the read.
    fn check_batch_neighbours(&self, read: &ReadObservation<'_>, index: usize) -> Checked {
        let event = &read.events[index];
        let (first, position_in_batch) = self.events[&event.data.event_id];
        let batch_len = self.batches[&first].events.len();
        let partial = |what: &str| {
            let message = format!(
                "{:?} read, event {index} ({}, event {position_in_batch} of a batch of \
                 {batch_len}): {what}",
                read.kind,
                describe(event)
            );
            violation(&VERSIONS_GAPLESS, message)
        };
        if let Some(previous) = index.checked_sub(1).map(|i| &read.events[i]) {
            let (previous_first, previous_index) = self.events[&previous.data.event_id];
            let previous_len = self.batches[&previous_first].events.len();
            let follows = if position_in_batch > 0 {
                previous_first == first && previous_index + 1 == position_in_batch
            } else {
                previous_index + 1 == previous_len
            };
            if !follows {
                return partial("does not follow the previous event's batch");
            }
        } else if position_in_batch > 0 && read_starts_at_zero(&read.kind) {
            return partial("a read from the start begins inside a batch");
        }
        let last = index + 1 == read.events.len();
        if last && read.complete() && position_in_batch + 1 != batch_len {
            return partial("the read ends inside the batch (a partial batch)");
        }
        Ok(())
    }

    /// A read invoked after an event was acknowledged or served reaches that event.
    fn check_reaches(&self, read: &ReadObservation<'_>) -> Checked {
        if !read.complete() {
            return Ok(());
        }
        let len = read.events.len() as u64;
        let (required, reached, what) = match &read.kind {
            ReadKind::Stream {
                stream,
                from_version,
            } => {
                let required = self
                    .stream_ends
                    .get(stream)
                    .and_then(|timeline| timeline.max_before(read.invoked_ns));
                (required, from_version + len, format!("stream `{stream}`"))
            }
            ReadKind::All { from_position } => {
                let required = self.global_end.max_before(read.invoked_ns);
                (required, from_position + len, "the log".to_owned())
            }
            ReadKind::Push => return Ok(()),
        };
        match required {
            Some(required) if required > reached => violation(
                &ACKED_SURVIVE,
                format!(
                    "a read of {what} invoked at {} ns ends at {reached} events, but {required} \
                     were acknowledged or served before",
                    read.invoked_ns
                ),
            ),
            _ => Ok(()),
        }
    }

    /// Records where `id` was observed; a position or version holds one event for ever, and an
    /// event sits at one place.
    fn place(&mut self, id: EventId, slot: Slot, how: &'static str) -> Checked {
        if let Some(known) = self.slots.get(&id) {
            if *known != slot {
                let invariant = if known.position != slot.position {
                    &IDEMPOTENT
                } else {
                    &VERSIONS_GAPLESS
                };
                let message =
                    format!(
                    "event {id} was at `{}` v{} p{} and is now {how} at `{}` v{} p{} (duplicated \
                     or moved)",
                    known.stream, known.version, known.position, slot.stream, slot.version,
                    slot.position
                );
                return violation(invariant, message);
            }
            return Ok(());
        }
        if let Some((other, other_how)) = self.by_position.get(&slot.position) {
            let message = format!(
                "position p{} held event {other} ({other_how}) and now {how} holds event {id}",
                slot.position
            );
            return violation(&ACKED_SURVIVE, message);
        }
        let key = (slot.stream.clone(), slot.version);
        if let Some(other) = self.by_version.get(&key) {
            let message = format!(
                "`{}` v{} held event {other} and now {how} holds event {id}",
                slot.stream, slot.version
            );
            return violation(&ACKED_SURVIVE, message);
        }
        self.by_position.insert(slot.position, (id, how));
        self.by_version.insert(key, id);
        self.slots.insert(id, slot);
        Ok(())
    }

    /// A batch whose append failed definitely has no event stored.
    fn check_not_failed(&self, first: EventId) -> Checked {
        let Some((what, retried)) = self.failed.get(&first) else {
            return Ok(());
        };
        let batch = &self.batches[&first];
        let stored = batch
            .events
            .iter()
            .find_map(|event| self.slots.get(&event.event_id));
        let Some(slot) = stored else {
            return Ok(());
        };
        let (invariant, attempt) = if *retried {
            (&IDEMPOTENT, "a retry of it")
        } else {
            (&LINEARIZABLE, "its only attempt")
        };
        violation(
            invariant,
            format!(
                "the append of batch {first} to `{}` was answered `{what}` ({attempt}), yet its \
                 events are stored at v{} p{}",
                batch.stream, slot.version, slot.position
            ),
        )
    }

    fn raise_ends(&mut self, stream: &str, last_version: u64, last_position: u64, at_ns: u64) {
        self.stream_ends
            .entry(stream.to_owned())
            .or_default()
            .record(at_ns, last_version + 1);
        self.global_end.record(at_ns, last_position + 1);
    }
}

fn read_starts_at_zero(kind: &ReadKind) -> bool {
    matches!(
        kind,
        ReadKind::Stream {
            from_version: 0,
            ..
        } | ReadKind::All { from_position: 0 }
    )
}

fn describe(event: &RecordedEvent) -> String {
    format!(
        "{} `{}` v{} p{}",
        event.data.event_id, event.stream, event.version, event.position
    )
}

/// An event's data without its payload, for messages.
fn short(data: &EventData) -> String {
    format!(
        "{} {} v{} ({} payload bytes)",
        data.event_id,
        data.event_type,
        data.schema_version,
        data.payload.len()
    )
}

/// Where two payloads first differ, for messages.
fn first_difference(submitted: &[u8], read: &[u8]) -> String {
    let Some(at) = submitted
        .iter()
        .zip(read)
        .position(|(a, b)| a != b)
        .or_else(|| (submitted.len() != read.len()).then(|| submitted.len().min(read.len())))
    else {
        return String::new();
    };
    let window = |bytes: &[u8]| -> Vec<u8> { bytes.iter().skip(at).take(8).copied().collect() };
    format!(
        "; payloads differ from byte {at}: submitted {:02x?}.., read {:02x?}..",
        window(submitted),
        window(read)
    )
}
