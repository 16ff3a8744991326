//! Aggregates: state rebuilt by replaying a stream, commands turned into events, snapshots,
//! and upcasting of old event schema versions at read time.
//!
//! Loading an aggregate reads its stream (raw [`RecordedEvent`]s), raises each event to the
//! current schema with the [`Upcasters`], decodes it with [`EventCodec`] and folds it with
//! [`Aggregate::apply`]. A [`Snapshot`] saves the fold at some version; loading from it folds
//! only the tail after that version, and must give exactly what a full replay gives.
//!
//! ```
//! use patterns::event_sourcing::account::{account_upcasters, Account, AccountCommand};
//! use patterns::event_sourcing::aggregate::{replay, Aggregate, Loaded};
//!
//! let fresh: Loaded<Account> = replay(&[], &account_upcasters()).unwrap();
//! let events = fresh.state.handle(AccountCommand::Open { owner: "ada".into() }).unwrap();
//! assert_eq!(events.len(), 1);
//! ```

use crate::event_sourcing::event::{
    AppendRequest, Appended, EventData, EventId, ExpectedVersion, RecordedEvent,
};
use crate::event_sourcing::mutant::{Mutant, Mutants};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A consistency boundary whose state is the fold of its events.
pub trait Aggregate: Default + Clone {
    /// A request to change the aggregate.
    type Command;
    /// A fact that happened to the aggregate.
    type Event;
    /// Why a command is refused.
    type Error;

    /// Folds one event into the state. Events are facts: this must not fail.
    fn apply(&mut self, event: &Self::Event);

    /// Decides which events a command produces, without changing the state.
    fn handle(&self, command: Self::Command) -> Result<Vec<Self::Event>, Self::Error>;
}

/// How an aggregate's events are stored: type name, schema version and payload.
pub trait EventCodec: Sized {
    /// The stored type name of this event.
    fn event_type(&self) -> &'static str;
    /// The schema version [`EventCodec::encode`] writes (the current one).
    fn schema_version(&self) -> u32;
    /// The payload.
    fn encode(&self) -> Vec<u8>;
    /// Decodes an event of the *current* schema version (older ones are upcast first).
    fn decode(event_type: &str, schema_version: u32, payload: &[u8]) -> Result<Self, DecodeError>;

    /// The event as data to append, with the given id.
    fn to_data(&self, event_id: EventId) -> EventData {
        EventData {
            event_id,
            event_type: self.event_type().to_owned(),
            schema_version: self.schema_version(),
            payload: self.encode(),
        }
    }
}

/// An event that cannot be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode `{event_type}` v{schema_version}: {detail}")]
pub struct DecodeError {
    /// The stored type name.
    pub event_type: String,
    /// The stored (or upcast) schema version.
    pub schema_version: u32,
    /// What is wrong.
    pub detail: String,
}

/// One upcasting step: an event at schema version `k` to the same event at `k + 1` (the type
/// name may change too).
pub type UpcastFn = fn(&EventData) -> Result<EventData, String>;

/// Why upcasting failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpcastError {
    /// An upcaster for this type and version is already registered.
    #[error("an upcaster for `{event_type}` v{from_version} is already registered")]
    Duplicate {
        /// The type name.
        event_type: String,
        /// The version it upcasts from.
        from_version: u32,
    },
    /// An upcaster failed.
    #[error("upcasting `{event_type}` v{from_version} failed: {detail}")]
    Failed {
        /// The type name.
        event_type: String,
        /// The version it upcasts from.
        from_version: u32,
        /// What went wrong.
        detail: String,
    },
    /// An upcaster did not produce version `from_version + 1`.
    #[error("upcaster for `{event_type}` v{from_version} produced v{produced}")]
    WrongVersion {
        /// The type name.
        event_type: String,
        /// The version it upcasts from.
        from_version: u32,
        /// The version it produced.
        produced: u32,
    },
}

/// A registry of upcasters, applied at read time on every read path.
#[derive(Clone, Debug, Default)]
pub struct Upcasters {
    steps: BTreeMap<(String, u32), UpcastFn>,
}

impl Upcasters {
    /// An empty registry: events are read as stored.
    pub fn new() -> Self {
        Upcasters::default()
    }

    /// Registers the step from `from_version` of `event_type` to the next version.
    pub fn register(
        &mut self,
        event_type: &str,
        from_version: u32,
        step: UpcastFn,
    ) -> Result<(), UpcastError> {
        let key = (event_type.to_owned(), from_version);
        if self.steps.contains_key(&key) {
            let event_type = event_type.to_owned();
            return Err(UpcastError::Duplicate {
                event_type,
                from_version,
            });
        }
        self.steps.insert(key, step);
        Ok(())
    }

    /// Raises an event through every registered step, one version at a time.
    pub fn upcast(&self, event: &EventData) -> Result<EventData, UpcastError> {
        let mut event = event.clone();
        // Each step raises the version by exactly one, so at most `len` steps apply.
        for _ in 0..=self.steps.len() {
            let key = (event.event_type.clone(), event.schema_version);
            let Some(step) = self.steps.get(&key) else {
                break;
            };
            let (event_type, from_version) = key;
            let raised = step(&event).map_err(|detail| UpcastError::Failed {
                event_type: event_type.clone(),
                from_version,
                detail,
            })?;
            if raised.schema_version != from_version + 1 {
                let produced = raised.schema_version;
                return Err(UpcastError::WrongVersion {
                    event_type,
                    from_version,
                    produced,
                });
            }
            event = raised;
        }
        Ok(event)
    }
}

/// Why an aggregate could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// An event could not be upcast.
    #[error(transparent)]
    Upcast(#[from] UpcastError),
    /// An event could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The events do not continue the stream's versions.
    #[error("expected version {expected} of the stream, got {found}")]
    VersionGap {
        /// The next version.
        expected: u64,
        /// The version read.
        found: u64,
    },
}

/// An aggregate's state and the stream version it reflects.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loaded<A> {
    /// The folded state.
    pub state: A,
    /// The version of the last event folded (`None`: no event).
    pub version: Option<u64>,
}

impl<A: Aggregate> Loaded<A> {
    /// The expected version for the next append: exactly this state.
    pub fn expected(&self) -> ExpectedVersion {
        ExpectedVersion::exactly_current(self.version)
    }

    /// The append that records `events` right after this state; `event_id(i)` names event `i`.
    pub fn to_append(
        &self,
        stream: &str,
        events: &[A::Event],
        mut event_id: impl FnMut(u32) -> EventId,
    ) -> AppendRequest
    where
        A::Event: EventCodec,
    {
        let events = events.iter().zip(0u32..);
        AppendRequest {
            stream: stream.to_owned(),
            expected: self.expected(),
            events: events
                .map(|(event, index)| event.to_data(event_id(index)))
                .collect(),
        }
    }

    /// Folds `events` that the store appended as `appended` (the live state after a command).
    ///
    /// `appended` comes from the store, over a network: when it does not directly follow this
    /// state (a store bug, or mixed-up streams) nothing is folded and the gap is returned.
    pub fn apply_appended(
        &mut self,
        events: &[A::Event],
        appended: &Appended,
    ) -> Result<(), AppendGap> {
        let next = self.version.map_or(0, |version| version + 1);
        if appended.first_version != next {
            return Err(AppendGap {
                expected_first: next,
                appended_first: appended.first_version,
            });
        }
        for event in events {
            self.state.apply(event);
        }
        self.version = Some(appended.last_version);
        Ok(())
    }
}

/// An acknowledged append that does not directly follow the state it was applied to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the append starts at version {appended_first}, but the state expects {expected_first}")]
pub struct AppendGap {
    /// The version that would follow the state.
    pub expected_first: u64,
    /// The first version of the append.
    pub appended_first: u64,
}

/// A saved fold of an aggregate's stream up to a version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot<A> {
    /// The state after folding versions `0..=version`.
    pub state: A,
    /// The version of the last event folded.
    pub version: u64,
}

/// Why a stored snapshot cannot be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot decode a snapshot: {0}")]
pub struct SnapshotDecodeError(pub String);

impl<A> Snapshot<A> {
    /// The snapshot of a loaded state, if it has an event.
    pub fn of(loaded: &Loaded<A>) -> Option<Snapshot<A>>
    where
        A: Clone,
    {
        let version = loaded.version?;
        let state = loaded.state.clone();
        Some(Snapshot { state, version })
    }

    /// Encodes the snapshot, tagged with the state's schema version `schema`.
    pub fn encode(&self, schema: u32) -> Vec<u8>
    where
        A: Serialize,
    {
        let mut bytes = schema.to_le_bytes().to_vec();
        let body = postcard::to_allocvec(self).expect("a snapshot state serializes");
        bytes.extend_from_slice(&body);
        bytes
    }

    /// Decodes a snapshot written by [`Snapshot::encode`]; `Ok(None)` if it was written under
    /// another schema, so the caller discards it and replays the whole stream (ES-S8).
    pub fn decode(bytes: &[u8], schema: u32) -> Result<Option<Snapshot<A>>, SnapshotDecodeError>
    where
        A: DeserializeOwned,
    {
        let Some((tag, body)) = bytes.split_first_chunk::<4>() else {
            return Err(SnapshotDecodeError(
                "shorter than its schema tag".to_owned(),
            ));
        };
        if u32::from_le_bytes(*tag) != schema {
            return Ok(None);
        }
        let snapshot =
            postcard::from_bytes(body).map_err(|e| SnapshotDecodeError(e.to_string()))?;
        Ok(Some(snapshot))
    }
}

/// When to take a snapshot: every `every_events` events (0: never).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPolicy {
    /// Events between snapshots; 0 disables snapshots.
    pub every_events: u64,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy { every_events: 100 }
    }
}

impl SnapshotPolicy {
    /// Whether a stream now at `version`, last snapshotted at `snapshot_version`, is due.
    pub fn due(&self, snapshot_version: Option<u64>, version: u64) -> bool {
        let covered = snapshot_version.map_or(0, |v| v + 1);
        self.every_events > 0 && (version + 1).saturating_sub(covered) >= self.every_events
    }
}

/// Rebuilds an aggregate by folding its whole stream.
pub fn replay<A>(events: &[RecordedEvent], upcasters: &Upcasters) -> Result<Loaded<A>, LoadError>
where
    A: Aggregate,
    A::Event: EventCodec,
{
    rehydrate(None, events, upcasters, &Mutants::none())
}

/// The stream version to read the tail from when loading from `snapshot`: the one after the
/// snapshot's (0 without a snapshot). Under [`Mutant::SnapshotDoubleApply`] it is the
/// snapshot's own version, the off-by-one that folds that event twice.
pub fn tail_from<A>(snapshot: Option<&Snapshot<A>>, mutants: &Mutants) -> u64 {
    match snapshot {
        None => 0,
        Some(snapshot) if mutants.contains(Mutant::SnapshotDoubleApply) => snapshot.version,
        Some(snapshot) => snapshot.version + 1,
    }
}

/// Rebuilds an aggregate from a snapshot (if any) and its stream's events.
///
/// `events` must cover the versions after the snapshot: read the stream from
/// [`tail_from`]. Events the snapshot already covers are skipped, so passing the whole stream
/// is also correct. Under [`Mutant::SnapshotDoubleApply`] the event at the snapshot's own
/// version is folded a second time.
pub fn rehydrate<A>(
    snapshot: Option<&Snapshot<A>>,
    events: &[RecordedEvent],
    upcasters: &Upcasters,
    mutants: &Mutants,
) -> Result<Loaded<A>, LoadError>
where
    A: Aggregate,
    A::Event: EventCodec,
{
    let mut loaded = match snapshot {
        Some(snapshot) => Loaded {
            state: snapshot.state.clone(),
            version: Some(snapshot.version),
        },
        None => Loaded::default(),
    };
    // The bug re-folds the event at the snapshot's own version, as an inclusive
    // `from_version` would.
    let refold = mutants.contains(Mutant::SnapshotDoubleApply);
    for event in events {
        let next = loaded.version.map_or(0, |version| version + 1);
        let refolds = refold && snapshot.is_some() && Some(event.version) == loaded.version;
        if event.version < next && !refolds {
            continue;
        }
        if event.version > next {
            let found = event.version;
            return Err(LoadError::VersionGap {
                expected: next,
                found,
            });
        }
        let data = upcasters.upcast(&event.data)?;
        let decoded = A::Event::decode(&data.event_type, data.schema_version, &data.payload)?;
        loaded.state.apply(&decoded);
        loaded.version = Some(event.version);
    }
    Ok(loaded)
}
