//! Ready-made models: a register, a key-value map partitioned by key, and an append-only
//! event log with optimistic concurrency, partitioned by stream.

use super::{Model, Partition};
use crate::history::Operation;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::mem::size_of;

/// A request to a single register.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegisterInput<V> {
    /// Read the value.
    Read,
    /// Overwrite the value.
    Write(V),
    /// Set the value to `new` if it equals `expected`.
    Cas {
        /// The value the register must hold.
        expected: V,
        /// The value to store.
        new: V,
    },
}

/// A response from a single register.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RegisterOutput<V> {
    /// A read saw this value.
    ReadOk(V),
    /// A write took effect.
    WriteOk,
    /// A compare-and-set took effect.
    CasOk,
    /// A compare-and-set found another value and changed nothing.
    CasFailed,
}

/// A single read/write/compare-and-set register starting at `initial`.
#[derive(Clone, Debug)]
pub struct Register<V> {
    /// The value before any write.
    pub initial: V,
}

impl<V> Register<V> {
    /// A register holding `initial` before any write.
    pub fn new(initial: V) -> Self {
        Self { initial }
    }
}

impl<V: Clone + Ord + Debug> Model for Register<V> {
    type State = V;
    type Input = RegisterInput<V>;
    type Output = RegisterOutput<V>;

    fn init(&self) -> V {
        self.initial.clone()
    }

    fn step(&self, state: &V, input: &RegisterInput<V>, output: &RegisterOutput<V>) -> Option<V> {
        match (input, output) {
            (RegisterInput::Read, RegisterOutput::ReadOk(seen)) => {
                (seen == state).then(|| state.clone())
            }
            (RegisterInput::Write(value), RegisterOutput::WriteOk) => Some(value.clone()),
            (RegisterInput::Cas { expected, new }, RegisterOutput::CasOk) => {
                (expected == state).then(|| new.clone())
            }
            (RegisterInput::Cas { expected, .. }, RegisterOutput::CasFailed) => {
                (expected != state).then(|| state.clone())
            }
            _ => None,
        }
    }

    fn step_unknown(&self, state: &V, input: &RegisterInput<V>) -> Vec<V> {
        match input {
            RegisterInput::Read => Vec::new(),
            RegisterInput::Write(value) => vec![value.clone()],
            RegisterInput::Cas { expected, new } if expected == state => vec![new.clone()],
            RegisterInput::Cas { .. } => Vec::new(),
        }
    }
}

/// A request to a key-value map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvInput<K, V> {
    /// Read a key.
    Get {
        /// The key.
        key: K,
    },
    /// Write a key.
    Put {
        /// The key.
        key: K,
        /// The value to store.
        value: V,
    },
    /// Remove a key.
    Delete {
        /// The key.
        key: K,
    },
    /// Append `value` to a key's value (to the missing-key value, or to nothing, when
    /// absent); needs a model built with [`KeyValue::with_append`].
    Append {
        /// The key.
        key: K,
        /// The suffix.
        value: V,
    },
    /// Set a key to `new` if its value equals `expected` (`None`: absent).
    Cas {
        /// The key.
        key: K,
        /// The value the key must hold, `None` for absent.
        expected: Option<V>,
        /// The value to store.
        new: V,
    },
}

impl<K, V> KvInput<K, V> {
    /// The key the request touches.
    pub fn key(&self) -> &K {
        match self {
            KvInput::Get { key }
            | KvInput::Put { key, .. }
            | KvInput::Delete { key }
            | KvInput::Append { key, .. }
            | KvInput::Cas { key, .. } => key,
        }
    }
}

/// A response from a key-value map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOutput<V> {
    /// A read saw this value (`None`: absent).
    GetOk(Option<V>),
    /// A put took effect.
    PutOk,
    /// A delete took effect (whether or not the key existed).
    DeleteOk,
    /// An append took effect.
    AppendOk,
    /// A compare-and-set took effect.
    CasOk,
    /// A compare-and-set found another value and changed nothing.
    CasFailed,
}

/// A key-value map where every key starts absent, partitioned by key.
///
/// Systems differ on what a read of a missing key returns: `None` here by default,
/// [`KeyValue::with_missing`] for systems that answer a value (often `""`). Appends need
/// to know how values concatenate: [`KeyValue::with_append`].
#[derive(Clone, Debug)]
pub struct KeyValue<K, V> {
    /// What a read of an absent key returns, and what an append to it extends.
    missing: Option<V>,
    /// How an append extends a value; `None`: appends are not part of the model, and an
    /// `Append` can never be linearized.
    append: Option<fn(&V, &V) -> V>,
    marker: PhantomData<K>,
}

impl<K, V> Default for KeyValue<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> KeyValue<K, V> {
    /// The model of a map whose keys all start absent and read as `None`, without appends.
    pub fn new() -> Self {
        Self {
            missing: None,
            append: None,
            marker: PhantomData,
        }
    }

    /// The same model where a read of an absent key returns `GetOk(Some(missing))` (and
    /// `GetOk(None)` never happens), and an append to it extends `missing`.
    pub fn with_missing(mut self, missing: V) -> Self {
        self.missing = Some(missing);
        self
    }

    /// The same model with appends: `append(current, suffix)` is the value after appending
    /// `suffix` to `current`.
    pub fn with_append(mut self, append: fn(&V, &V) -> V) -> Self {
        self.append = Some(append);
        self
    }
}

impl<K> KeyValue<K, String> {
    /// A map of strings where an append concatenates and a missing key reads as `""`
    /// (the usual shape of Jepsen's and Porcupine's key-value tests).
    pub fn strings() -> Self {
        Self::new()
            .with_missing(String::new())
            .with_append(|current, suffix| format!("{current}{suffix}"))
    }
}

impl<K: Clone + Ord, V: Clone> KeyValue<K, V> {
    /// The value a read of `key` returns in `state`.
    fn current<'s>(&'s self, state: &'s BTreeMap<K, V>, key: &K) -> Option<&'s V> {
        state.get(key).or(self.missing.as_ref())
    }

    /// `state` after appending `suffix` to `key`, if the model has appends.
    fn appended(&self, state: &BTreeMap<K, V>, key: &K, suffix: &V) -> Option<BTreeMap<K, V>> {
        let append = self.append?;
        let value = match self.current(state, key) {
            Some(current) => append(current, suffix),
            None => suffix.clone(),
        };
        Some(with(state, key, Some(&value)))
    }
}

impl<K: Clone + Ord + Debug, V: Clone + Ord + Debug> Model for KeyValue<K, V> {
    // The whole map, so the model is right even without partitioning; a partition touches
    // one key, so its states hold at most one entry.
    type State = BTreeMap<K, V>;
    type Input = KvInput<K, V>;
    type Output = KvOutput<V>;

    fn init(&self) -> Self::State {
        BTreeMap::new()
    }

    fn step(
        &self,
        state: &Self::State,
        input: &KvInput<K, V>,
        output: &KvOutput<V>,
    ) -> Option<Self::State> {
        let current = self.current(state, input.key());
        match (input, output) {
            (KvInput::Get { .. }, KvOutput::GetOk(seen)) => {
                (seen.as_ref() == current).then(|| state.clone())
            }
            (KvInput::Put { key, value }, KvOutput::PutOk) => Some(with(state, key, Some(value))),
            (KvInput::Delete { key }, KvOutput::DeleteOk) => Some(with(state, key, None)),
            (KvInput::Append { key, value }, KvOutput::AppendOk) => {
                self.appended(state, key, value)
            }
            (KvInput::Cas { key, expected, new }, KvOutput::CasOk) => {
                (expected.as_ref() == current).then(|| with(state, key, Some(new)))
            }
            (KvInput::Cas { expected, .. }, KvOutput::CasFailed) => {
                (expected.as_ref() != current).then(|| state.clone())
            }
            _ => None,
        }
    }

    fn step_unknown(&self, state: &Self::State, input: &KvInput<K, V>) -> Vec<Self::State> {
        match input {
            KvInput::Get { .. } => Vec::new(),
            KvInput::Put { key, value } => vec![with(state, key, Some(value))],
            KvInput::Delete { key } => vec![with(state, key, None)],
            KvInput::Append { key, value } => {
                self.appended(state, key, value).into_iter().collect()
            }
            KvInput::Cas { key, expected, new }
                if expected.as_ref() == self.current(state, key) =>
            {
                vec![with(state, key, Some(new))]
            }
            KvInput::Cas { .. } => Vec::new(),
        }
    }

    fn state_bytes(&self, state: &Self::State) -> usize {
        // Inline sizes only: the values' own heap (a string's bytes) is not seen here.
        size_of::<Self::State>() + state.len() * (size_of::<K>() + size_of::<V>() + 16)
    }

    fn partition(&self, operations: &[Operation<KvInput<K, V>, KvOutput<V>>]) -> Vec<Partition> {
        Partition::by_key(operations, |op| op.input.key().clone())
    }
}

/// `state` with `key` set to `value` (`None`: removed).
fn with<K: Clone + Ord, V: Clone>(
    state: &BTreeMap<K, V>,
    key: &K,
    value: Option<&V>,
) -> BTreeMap<K, V> {
    let mut next = state.clone();
    match value {
        Some(value) => next.insert(key.clone(), value.clone()),
        None => next.remove(key),
    };
    next
}

/// The condition an append puts on the stream's version (optimistic concurrency).
///
/// A stream's *version* is the number of its last event, counting from 0; a stream without
/// events has no version ("no stream"), written `None` in outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No condition.
    Any,
    /// The stream must have no events.
    NoStream,
    /// The stream must have at least one event.
    StreamExists,
    /// The stream's last event must have exactly this version.
    Exactly(u64),
}

impl ExpectedVersion {
    /// Whether a stream at `version` (`None`: no events) meets the condition.
    pub fn admits(self, version: Option<u64>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => version.is_none(),
            ExpectedVersion::StreamExists => version.is_some(),
            ExpectedVersion::Exactly(expected) => version == Some(expected),
        }
    }
}

/// A request to an append-only log of streams.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogInput<S> {
    /// Append `events` events (at least one) to `stream` atomically, if the stream's
    /// version meets `expected_version`.
    Append {
        /// The stream.
        stream: S,
        /// The condition on the stream's version.
        expected_version: ExpectedVersion,
        /// How many events the batch holds; an append of zero events is never
        /// linearizable in this model, so record only non-empty appends.
        events: u64,
    },
    /// Read the stream's version.
    Read {
        /// The stream.
        stream: S,
    },
}

impl<S> LogInput<S> {
    /// The stream the request touches.
    pub fn stream(&self) -> &S {
        match self {
            LogInput::Append { stream, .. } | LogInput::Read { stream } => stream,
        }
    }
}

/// A response from an append-only log of streams.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogOutput {
    /// The batch was appended; `version` is the version of its last event, the value the
    /// next append passes as [`ExpectedVersion::Exactly`].
    Appended {
        /// The stream's version after the append.
        version: u64,
    },
    /// The stream's version did not meet the condition; nothing was appended.
    WrongExpectedVersion {
        /// The version the store saw (`None`: no stream).
        actual: Option<u64>,
    },
    /// A read saw the stream at this version (`None`: no events).
    ReadOk {
        /// The stream's version.
        version: Option<u64>,
    },
}

/// An append-only log of streams with optimistic concurrency, partitioned by stream; the
/// state is each stream's event count.
#[derive(Clone, Debug, Default)]
pub struct EventLog<S> {
    marker: PhantomData<S>,
}

impl<S> EventLog<S> {
    /// The model of a log whose streams all start empty.
    pub fn new() -> Self {
        Self {
            marker: PhantomData,
        }
    }
}

/// The version of a stream holding `event_count` events.
fn version_of(event_count: u64) -> Option<u64> {
    event_count.checked_sub(1)
}

impl<S: Clone + Ord + Debug> Model for EventLog<S> {
    type State = BTreeMap<S, u64>;
    type Input = LogInput<S>;
    type Output = LogOutput;

    fn init(&self) -> Self::State {
        BTreeMap::new()
    }

    fn step(
        &self,
        state: &Self::State,
        input: &LogInput<S>,
        output: &LogOutput,
    ) -> Option<Self::State> {
        let count = state.get(input.stream()).copied().unwrap_or(0);
        match (input, output) {
            (LogInput::Read { .. }, LogOutput::ReadOk { version }) => {
                (*version == version_of(count)).then(|| state.clone())
            }
            (
                LogInput::Append {
                    stream,
                    expected_version,
                    events,
                },
                LogOutput::Appended { version },
            ) => {
                let count_after = count.checked_add(*events)?;
                let admitted = *events > 0 && expected_version.admits(version_of(count));
                (admitted && Some(*version) == version_of(count_after))
                    .then(|| with_count(state, stream, count_after))
            }
            (
                LogInput::Append {
                    expected_version, ..
                },
                LogOutput::WrongExpectedVersion { actual },
            ) => {
                let refused = !expected_version.admits(version_of(count));
                (refused && *actual == version_of(count)).then(|| state.clone())
            }
            _ => None,
        }
    }

    fn step_unknown(&self, state: &Self::State, input: &LogInput<S>) -> Vec<Self::State> {
        let count = state.get(input.stream()).copied().unwrap_or(0);
        match input {
            LogInput::Append {
                stream,
                expected_version,
                events,
            } if *events > 0 && expected_version.admits(version_of(count)) => count
                .checked_add(*events)
                .map(|count_after| with_count(state, stream, count_after))
                .into_iter()
                .collect(),
            // A refused append or a read changes nothing: the same as never taking effect.
            LogInput::Append { .. } | LogInput::Read { .. } => Vec::new(),
        }
    }

    fn partition(&self, operations: &[Operation<LogInput<S>, LogOutput>]) -> Vec<Partition> {
        Partition::by_key(operations, |op| op.input.stream().clone())
    }
}

fn with_count<S: Clone + Ord>(
    state: &BTreeMap<S, u64>,
    stream: &S,
    count: u64,
) -> BTreeMap<S, u64> {
    let mut next = state.clone();
    next.insert(stream.clone(), count);
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_steps() {
        let model = Register::new(0);
        assert_eq!(
            model.step(&0, &RegisterInput::Read, &RegisterOutput::ReadOk(0)),
            Some(0)
        );
        assert_eq!(
            model.step(&0, &RegisterInput::Read, &RegisterOutput::ReadOk(1)),
            None
        );
        assert_eq!(
            model.step(&0, &RegisterInput::Write(3), &RegisterOutput::WriteOk),
            Some(3)
        );
        let cas = RegisterInput::Cas {
            expected: 0,
            new: 5,
        };
        assert_eq!(model.step(&0, &cas, &RegisterOutput::CasOk), Some(5));
        assert_eq!(model.step(&1, &cas, &RegisterOutput::CasOk), None);
        assert_eq!(model.step(&1, &cas, &RegisterOutput::CasFailed), Some(1));
        assert_eq!(model.step(&0, &cas, &RegisterOutput::CasFailed), None);
        assert_eq!(
            model.step(&0, &RegisterInput::Read, &RegisterOutput::WriteOk),
            None
        );
        assert_eq!(model.step_unknown(&0, &cas), vec![5]);
        assert_eq!(model.step_unknown(&1, &cas), Vec::<i32>::new());
    }

    #[test]
    fn kv_steps() {
        let model: KeyValue<&str, u32> = KeyValue::new();
        let empty = model.init();
        let get = KvInput::Get { key: "a" };
        assert_eq!(
            model.step(&empty, &get, &KvOutput::GetOk(None)),
            Some(empty.clone())
        );
        assert_eq!(model.step(&empty, &get, &KvOutput::GetOk(Some(1))), None);
        let put = KvInput::Put { key: "a", value: 1 };
        let one = model.step(&empty, &put, &KvOutput::PutOk).unwrap();
        assert_eq!(
            model.step(&one, &get, &KvOutput::GetOk(Some(1))),
            Some(one.clone())
        );
        let cas = KvInput::Cas {
            key: "a",
            expected: None,
            new: 2,
        };
        assert_eq!(model.step(&one, &cas, &KvOutput::CasOk), None);
        assert_eq!(
            model.step(&one, &cas, &KvOutput::CasFailed),
            Some(one.clone())
        );
        let deleted = model.step(&one, &KvInput::Delete { key: "a" }, &KvOutput::DeleteOk);
        assert_eq!(deleted, Some(empty));
    }

    #[test]
    fn kv_appends_and_reads_missing_keys_as_configured() {
        let model: KeyValue<&str, String> = KeyValue::strings();
        let empty = model.init();
        let get = KvInput::Get { key: "a" };
        let seen = |value: &str| KvOutput::GetOk(Some(value.to_string()));
        assert!(model.step(&empty, &get, &seen("")).is_some());
        assert!(model.step(&empty, &get, &KvOutput::GetOk(None)).is_none());
        let append = |value: &str| KvInput::Append {
            key: "a",
            value: value.to_string(),
        };
        let x = model
            .step(&empty, &append("x"), &KvOutput::AppendOk)
            .unwrap();
        let xy = model.step(&x, &append("y"), &KvOutput::AppendOk).unwrap();
        assert!(model.step(&xy, &get, &seen("xy")).is_some());
        assert!(model.step(&xy, &get, &seen("yx")).is_none());
        assert_eq!(model.step_unknown(&x, &append("y")), vec![xy]);
        let plain: KeyValue<&str, String> = KeyValue::new();
        assert!(
            plain
                .step(&empty, &append("x"), &KvOutput::AppendOk)
                .is_none(),
            "appends are not in a model without with_append"
        );
    }

    #[test]
    fn log_steps_follow_expected_versions() {
        let model: EventLog<&str> = EventLog::new();
        let empty = model.init();
        let append = |expected_version, events| LogInput::Append {
            stream: "s",
            expected_version,
            events,
        };
        let first = append(ExpectedVersion::NoStream, 2);
        let two = model
            .step(&empty, &first, &LogOutput::Appended { version: 1 })
            .unwrap();
        assert_eq!(two.get("s"), Some(&2));
        assert_eq!(
            model.step(&empty, &first, &LogOutput::Appended { version: 2 }),
            None
        );
        let refused = LogOutput::WrongExpectedVersion { actual: Some(1) };
        assert_eq!(model.step(&two, &first, &refused), Some(two.clone()));
        assert_eq!(
            model.step(&empty, &first, &refused),
            None,
            "no stream admits NoStream"
        );
        let exact = append(ExpectedVersion::Exactly(1), 1);
        assert!(model
            .step(&two, &exact, &LogOutput::Appended { version: 2 })
            .is_some());
        assert!(model
            .step(
                &empty,
                &append(ExpectedVersion::StreamExists, 1),
                &LogOutput::Appended { version: 0 }
            )
            .is_none());
        assert!(model
            .step(
                &empty,
                &append(ExpectedVersion::Any, 0),
                &LogOutput::Appended { version: 0 }
            )
            .is_none());
        let read = LogInput::Read { stream: "s" };
        assert!(model
            .step(&two, &read, &LogOutput::ReadOk { version: Some(1) })
            .is_some());
        assert!(model
            .step(&empty, &read, &LogOutput::ReadOk { version: None })
            .is_some());
        assert!(model
            .step(&empty, &read, &LogOutput::ReadOk { version: Some(0) })
            .is_none());
        assert_eq!(model.step_unknown(&two, &first), Vec::new());
        assert_eq!(model.step_unknown(&two, &exact).len(), 1);
    }
}
