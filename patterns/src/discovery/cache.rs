//! A client's cache of discovery answers and watch events: merged by rank, so it never goes
//! backwards, and an empty answer removes nothing.

use super::mutant::{Mutant, Mutants};
use super::registry::{Answer, Key, Record, WatchAnswer, WatchEvent};
use std::collections::BTreeMap;

/// A watch event that does not follow the last one the cache applied: the watcher must resume
/// (and will get a resync if the replica cannot fill the gap).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("watch of `{service}` at replica {replica}: expected event {expected}, got {got}")]
pub struct WatchGap {
    /// The service watched.
    pub service: String,
    /// The replica numbering the events.
    pub replica: u64,
    /// The number expected next.
    pub expected: u64,
    /// The number received.
    pub got: u64,
}

/// A client's view of the registry.
#[derive(Clone, Debug, Default)]
pub struct ClientCache {
    mutants: Mutants,
    records: BTreeMap<Key, Record>,
    /// Per service: the replica whose events the watch follows and the last number applied.
    cursors: BTreeMap<String, (u64, u64)>,
}

impl ClientCache {
    /// An empty cache.
    pub fn new(mutants: Mutants) -> Self {
        ClientCache {
            mutants,
            ..ClientCache::default()
        }
    }

    /// Merges a discovery answer for `service`.
    pub fn apply_answer(&mut self, service: &str, answer: &Answer) {
        if answer.records.is_empty() && self.mutants.contains(Mutant::EmptyAnswerWipesCache) {
            // The bug: "the registry says there is nothing" replaces what the client knew.
            self.records.retain(|key, _| key.service != service);
            return;
        }
        for (key, record) in &answer.records {
            if key.service == service {
                self.merge(key, record);
            }
        }
    }

    /// Applies what a replica answered a watch of `service`; a gap is refused (nothing
    /// applied) so that the watcher resumes from its cursor.
    pub fn apply_watch(&mut self, service: &str, answer: &WatchAnswer) -> Result<(), WatchGap> {
        match answer {
            WatchAnswer::Resync {
                replica,
                seq,
                records,
            } => {
                if self.mutants.contains(Mutant::ResyncReplacesCache) {
                    // The bug: the replica's state is taken as the whole truth.
                    self.records.retain(|key, _| key.service != service);
                }
                for (key, record) in records {
                    if key.service == service {
                        self.merge(key, record);
                    }
                }
                self.cursors.insert(service.to_owned(), (*replica, *seq));
                Ok(())
            }
            WatchAnswer::Events(events) => {
                for event in events {
                    self.apply_event(service, event)?;
                }
                Ok(())
            }
        }
    }

    fn apply_event(&mut self, service: &str, event: &WatchEvent) -> Result<(), WatchGap> {
        let (replica, last) = self
            .cursors
            .get(service)
            .copied()
            .unwrap_or((event.replica, 0));
        if event.replica != replica || event.seq != last + 1 {
            if event.replica == replica && event.seq <= last {
                // A duplicate of an event already applied.
                return Ok(());
            }
            return Err(WatchGap {
                service: service.to_owned(),
                replica: event.replica,
                expected: last + 1,
                got: event.seq,
            });
        }
        self.merge(&event.key, &event.record);
        self.cursors
            .insert(service.to_owned(), (event.replica, event.seq));
        Ok(())
    }

    /// Where a watch of `service` resumes: the replica and the last number applied.
    pub fn cursor(&self, service: &str) -> Option<(u64, u64)> {
        self.cursors.get(service).copied()
    }

    /// The healthy instances of `service` as the cache knows them.
    pub fn healthy(&self, service: &str) -> Vec<(Key, Record)> {
        self.records
            .iter()
            .filter(|(key, record)| key.service == service && record.is_up())
            .map(|(key, record)| (key.clone(), record.clone()))
            .collect()
    }

    /// The record of `key`, if known.
    pub fn record(&self, key: &Key) -> Option<&Record> {
        self.records.get(key)
    }

    fn merge(&mut self, key: &Key, record: &Record) {
        let newer = self
            .records
            .get(key)
            .is_none_or(|current| record.rank() > current.rank());
        if newer {
            self.records.insert(key.clone(), record.clone());
        }
    }
}
