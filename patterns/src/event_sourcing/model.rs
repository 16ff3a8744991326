//! A reference model of a correct event store: the oracle for tests and simulation scenarios.
//!
//! The model is a plain list of events, applied one append at a time with no I/O, no
//! pipelining and no crash. It is written independently of [`crate::event_sourcing::store`]
//! (it shares only the request limits) so that it can judge the store: a correct store that
//! receives the same appends in the same order gives the same answers and the same reads.

use crate::event_sourcing::event::{
    AppendError, AppendRequest, Appended, ExpectedVersion, Limits, RecordedEvent,
};
use std::collections::BTreeMap;

/// The reference store: per-stream sequences over one global sequence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Model {
    events: Vec<RecordedEvent>,
    /// Positions of each stream's events, in version order.
    streams: BTreeMap<String, Vec<u64>>,
    /// For each event, its batch as (first index, event count).
    batches: Vec<(usize, usize)>,
}

impl Model {
    /// An empty store.
    pub fn new() -> Model {
        Model::default()
    }

    /// Applies an append atomically, with the store's semantics: limits, idempotent retries
    /// by event id, then the expected version.
    pub fn append(
        &mut self,
        request: &AppendRequest,
        limits: &Limits,
    ) -> Result<Appended, AppendError> {
        limits.check(request).map_err(AppendError::Invalid)?;
        if let Some(result) = self.retry(request) {
            return result;
        }
        let current = self.stream_version(&request.stream);
        if !request.expected.matches(current) {
            let expected = request.expected;
            return Err(AppendError::WrongExpectedVersion { expected, current });
        }
        let first_version = current.map_or(0, |version| version + 1);
        let first_position = self.events.len() as u64;
        let batch = (self.events.len(), request.events.len());
        for (data, index) in request.events.iter().zip(0u64..) {
            let position = first_position + index;
            self.events.push(RecordedEvent {
                stream: request.stream.clone(),
                version: first_version + index,
                position,
                data: data.clone(),
            });
            self.batches.push(batch);
            self.streams
                .entry(request.stream.clone())
                .or_default()
                .push(position);
        }
        let count = request.events.len() as u64;
        Ok(Appended {
            first_version,
            last_version: first_version + count - 1,
            first_position,
            last_position: first_position + count - 1,
        })
    }

    /// A retry repeats an earlier append exactly (same stream, same events in order, the whole
    /// batch, condition met before it): its original result. Any other reuse of a known event
    /// id is a conflict. `None` if no event id is known.
    fn retry(&self, request: &AppendRequest) -> Option<Result<Appended, AppendError>> {
        let position_of = |id| self.events.iter().position(|e| e.data.event_id == id);
        let known = request
            .events
            .iter()
            .find(|event| position_of(event.event_id).is_some())?;
        let conflict = Err(AppendError::EventIdConflict {
            event_id: known.event_id,
        });
        let Some(start) = position_of(request.events[0].event_id) else {
            return Some(conflict);
        };
        let count = request.events.len();
        if self.batches[start] != (start, count) {
            return Some(conflict);
        }
        let stored = &self.events[start..start + count];
        let same = stored
            .iter()
            .zip(&request.events)
            .all(|(stored, data)| stored.stream == request.stream && stored.data == *data);
        if !same || !request.expected.matches(stored[0].version.checked_sub(1)) {
            return Some(conflict);
        }
        let (first, last) = (&stored[0], &stored[count - 1]);
        Some(Ok(Appended {
            first_version: first.version,
            last_version: last.version,
            first_position: first.position,
            last_position: last.position,
        }))
    }

    /// The stream's last version (`None`: no event).
    pub fn stream_version(&self, stream: &str) -> Option<u64> {
        let count = self.streams.get(stream).map_or(0, Vec::len);
        (count as u64).checked_sub(1)
    }

    /// Up to `count_max` events of `stream` from version `from_version`.
    pub fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        count_max: usize,
    ) -> Vec<RecordedEvent> {
        let Some(positions) = self.streams.get(stream) else {
            return Vec::new();
        };
        let skip = usize::try_from(from_version).unwrap_or(usize::MAX);
        let events = positions.iter().skip(skip).take(count_max);
        events.map(|&p| self.events[p as usize].clone()).collect()
    }

    /// Up to `count_max` events from global position `from_position`.
    pub fn read_all(&self, from_position: u64, count_max: usize) -> Vec<RecordedEvent> {
        let skip = usize::try_from(from_position).unwrap_or(usize::MAX);
        self.events
            .iter()
            .skip(skip)
            .take(count_max)
            .cloned()
            .collect()
    }

    /// Every event, by position.
    pub fn events(&self) -> &[RecordedEvent] {
        &self.events
    }

    /// The expected version that holds exactly at the stream's current state.
    pub fn expected_now(&self, stream: &str) -> ExpectedVersion {
        ExpectedVersion::exactly_current(self.stream_version(stream))
    }
}

/// Checks that `events`, a read of the whole log from position 0, is well formed: positions
/// `0..n` in order, and each stream's versions `0..k` in order (ES-S3).
pub fn check_log(events: &[RecordedEvent]) -> Result<(), String> {
    let mut next_versions: BTreeMap<&str, u64> = BTreeMap::new();
    for (event, position) in events.iter().zip(0u64..) {
        if event.position != position {
            return Err(format!(
                "event {} is at position {}, expected {position}",
                event.data.event_id, event.position
            ));
        }
        let next = next_versions.entry(&event.stream).or_default();
        if event.version != *next {
            return Err(format!(
                "event {} of stream `{}` has version {}, expected {next}",
                event.data.event_id, event.stream, event.version
            ));
        }
        *next += 1;
    }
    Ok(())
}

/// Describes the first difference between two event sequences, if any.
pub fn diff(expected: &[RecordedEvent], actual: &[RecordedEvent]) -> Result<(), String> {
    for (index, (want, got)) in expected.iter().zip(actual).enumerate() {
        if want != got {
            return Err(format!(
                "event {index} differs: expected {want:?}, got {got:?}"
            ));
        }
    }
    if expected.len() != actual.len() {
        return Err(format!(
            "expected {} events, got {}",
            expected.len(),
            actual.len()
        ));
    }
    Ok(())
}
