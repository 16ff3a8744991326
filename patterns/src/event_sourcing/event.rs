//! The data every part of the event store shares: events, append requests and their results.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A client-chosen identity of one event, used to make appends idempotent.
///
/// Derive it from the command id (for example `command_id * 256 + index`) so that a retried
/// command produces the same event ids and the store recognises the retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EventId(pub u128);

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{:x}", self.0)
    }
}

/// One event as a client submits it: identity, type, schema version and opaque payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    /// Identity for idempotent appends.
    pub event_id: EventId,
    /// The event's type name, for example `money-deposited`.
    pub event_type: String,
    /// The schema version the payload was written with (upcasters raise it at read time).
    pub schema_version: u32,
    /// The encoded event.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// One event as the store recorded it: its stream, stream version and global position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// The stream the event belongs to.
    pub stream: String,
    /// The event's version in its stream: 0 for the first event, gapless.
    pub version: u64,
    /// The event's position in the global log (all streams): 0 for the first event, gapless.
    pub position: u64,
    /// The event as submitted.
    pub data: EventData,
}

/// The optimistic-concurrency condition of an append, checked against the stream's last
/// version (KurrentDB's `ExpectedRevision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedVersion {
    /// No condition.
    Any,
    /// The stream must have no event yet.
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's last event must have exactly this version.
    Exactly(u64),
}

impl ExpectedVersion {
    /// Whether a stream whose last version is `current` (`None`: no event) satisfies the
    /// condition.
    pub fn matches(self, current: Option<u64>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current.is_none(),
            ExpectedVersion::StreamExists => current.is_some(),
            ExpectedVersion::Exactly(version) => current == Some(version),
        }
    }

    /// The condition that holds exactly when the stream's last version is `current`.
    pub fn exactly_current(current: Option<u64>) -> Self {
        match current {
            None => ExpectedVersion::NoStream,
            Some(version) => ExpectedVersion::Exactly(version),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no-stream"),
            ExpectedVersion::StreamExists => f.write_str("stream-exists"),
            ExpectedVersion::Exactly(version) => write!(f, "v{version}"),
        }
    }
}

/// An atomic append of one or more events to one stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendRequest {
    /// The stream to append to.
    pub stream: String,
    /// The optimistic-concurrency condition.
    pub expected: ExpectedVersion,
    /// The events, in order; all or none of them are stored.
    pub events: Vec<EventData>,
}

/// Where a successful append put its events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appended {
    /// The stream version of the first event.
    pub first_version: u64,
    /// The stream version of the last event (the stream's version after the append).
    pub last_version: u64,
    /// The global position of the first event.
    pub first_position: u64,
    /// The global position of the last event.
    pub last_position: u64,
}

impl fmt::Display for Appended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "v{}..={} p{}..={}",
            self.first_version, self.last_version, self.first_position, self.last_position
        )
    }
}

/// Why an append request is malformed (checked before anything else).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum InvalidAppend {
    /// The batch has no event.
    #[error("the batch has no event")]
    EmptyBatch,
    /// The batch has more events than allowed.
    #[error("the batch has {count} events, more than {max}")]
    TooManyEvents {
        /// Events in the batch.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The stream name is empty or longer than allowed.
    #[error("the stream name has {len} bytes, allowed 1..={max}")]
    BadStreamName {
        /// Bytes in the name.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An event type name is empty or longer than allowed.
    #[error("event {event_id}: the type name has {len} bytes, allowed 1..={max}")]
    BadEventType {
        /// The event.
        event_id: EventId,
        /// Bytes in the name.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A payload is larger than allowed.
    #[error("event {event_id}: the payload has {len} bytes, more than {max}")]
    PayloadTooLarge {
        /// The event.
        event_id: EventId,
        /// Bytes in the payload.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The same event id appears twice in the batch.
    #[error("event id {event_id} appears twice in the batch")]
    DuplicateEventId {
        /// The repeated id.
        event_id: EventId,
    },
}

/// Why an append did not succeed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AppendError {
    /// The request is malformed; nothing was stored.
    #[error("invalid append: {0}")]
    Invalid(InvalidAppend),
    /// The expected-version condition does not hold; nothing was stored.
    #[error("wrong expected version: expected {expected}, stream at {}", fmt_version(*current))]
    WrongExpectedVersion {
        /// The condition of the request.
        expected: ExpectedVersion,
        /// The stream's last version when the request was decided (`None`: no event).
        current: Option<u64>,
    },
    /// An event id of the batch was already used by a different append; nothing was stored.
    #[error("event id {event_id} was already used by a different append")]
    EventIdConflict {
        /// The reused id.
        event_id: EventId,
    },
    /// Too many appends are waiting for the disk; nothing was stored; retry later.
    #[error("the store is busy")]
    Busy,
    /// The store holds as many events as it may; nothing was stored.
    #[error("the store is full")]
    StoreFull,
    /// The store is stopped after an I/O failure; nothing was stored; retry after restart.
    #[error("the store is unavailable")]
    Unavailable,
    /// The disk failed while the append was in flight: it may or may not be stored. Retry
    /// with the same event ids after the restart to learn which.
    #[error("the outcome is unknown (I/O failure while in flight)")]
    OutcomeUnknown,
}

impl AppendError {
    /// Whether the error proves that nothing of the append was stored.
    pub fn is_definite(&self) -> bool {
        !matches!(self, AppendError::OutcomeUnknown)
    }
}

fn fmt_version(version: Option<u64>) -> String {
    match version {
        None => "no-stream".to_owned(),
        Some(version) => format!("v{version}"),
    }
}

/// Size limits of append requests; they also bound every log record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest stream name, in bytes (at most `u16::MAX`).
    pub stream_name_bytes_max: usize,
    /// Longest event type name, in bytes (at most `u16::MAX`).
    pub event_type_bytes_max: usize,
    /// Largest payload, in bytes.
    pub payload_bytes_max: usize,
    /// Most events in one append.
    pub batch_events_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            stream_name_bytes_max: 200,
            event_type_bytes_max: 100,
            payload_bytes_max: 64 * 1024,
            batch_events_max: 100,
        }
    }
}

impl Limits {
    /// Checks that records within these limits fit the log format.
    pub fn validate(&self) -> Result<(), String> {
        let name_max = usize::from(u16::MAX);
        if self.stream_name_bytes_max == 0 || self.stream_name_bytes_max > name_max {
            return Err(format!("stream_name_bytes_max must be in 1..={name_max}"));
        }
        if self.event_type_bytes_max == 0 || self.event_type_bytes_max > name_max {
            return Err(format!("event_type_bytes_max must be in 1..={name_max}"));
        }
        if self.batch_events_max == 0 {
            return Err("batch_events_max must be at least 1".to_owned());
        }
        let record_max = crate::event_sourcing::log::record_len_bound(self);
        if record_max > crate::event_sourcing::log::RECORD_BYTES_MAX {
            return Err(format!(
                "a batch within these limits may take {record_max} bytes, more than the log's \
                 record limit of {} bytes",
                crate::event_sourcing::log::RECORD_BYTES_MAX
            ));
        }
        Ok(())
    }

    /// Checks an append request against the limits.
    pub fn check(&self, request: &AppendRequest) -> Result<(), InvalidAppend> {
        let len = request.stream.len();
        if len == 0 || len > self.stream_name_bytes_max {
            let max = self.stream_name_bytes_max;
            return Err(InvalidAppend::BadStreamName { len, max });
        }
        let count = request.events.len();
        if count == 0 {
            return Err(InvalidAppend::EmptyBatch);
        }
        if count > self.batch_events_max {
            let max = self.batch_events_max;
            return Err(InvalidAppend::TooManyEvents { count, max });
        }
        for (index, event) in request.events.iter().enumerate() {
            self.check_event(event)?;
            let earlier = &request.events[..index];
            if earlier.iter().any(|other| other.event_id == event.event_id) {
                let event_id = event.event_id;
                return Err(InvalidAppend::DuplicateEventId { event_id });
            }
        }
        Ok(())
    }

    fn check_event(&self, event: &EventData) -> Result<(), InvalidAppend> {
        let event_id = event.event_id;
        let len = event.event_type.len();
        if len == 0 || len > self.event_type_bytes_max {
            let max = self.event_type_bytes_max;
            return Err(InvalidAppend::BadEventType { event_id, len, max });
        }
        let len = event.payload.len();
        if len > self.payload_bytes_max {
            let max = self.payload_bytes_max;
            return Err(InvalidAppend::PayloadTooLarge { event_id, len, max });
        }
        Ok(())
    }
}
