//! A discovery client on sim-core: queries replicas, follows a watch, and keeps a
//! [`ClientCache`] of what it learned.
//!
//! A query may go to any replica. The watch follows one replica from the cache's cursor; when
//! that replica does not answer, or answers with a gap the cache refuses, the client moves to
//! the next one, which answers the foreign cursor with a resync.

use super::cache::ClientCache;
use super::driver::{RegistryRequest, RegistryResponse};
use super::mutant::Mutants;
use super::registry::{Answer, WatchAnswer};
use sim_core::net::{Addr, NetError, Socket};
use std::time::Duration;

/// What one watch request brought.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    /// The cursor it resumed from: the change log's id and the last event applied
    /// (`(0, 0)` for a first watch).
    pub after: (u64, u64),
    /// The replica's answer, as received (already applied to the cache, unless refused).
    pub answer: WatchAnswer,
}

/// A client of the registry.
#[derive(Debug)]
pub struct DiscoveryClient {
    socket: Socket,
    registries: Vec<Addr>,
    timeout: Duration,
    cache: ClientCache,
    /// The replica the watch follows (an index into `registries`).
    watched: usize,
}

impl DiscoveryClient {
    /// A client on `port` of the current node, knowing the replicas, following the watch of
    /// `registries[first]` first, waiting at most `timeout` for each answer.
    ///
    /// # Panics
    /// If `registries` is empty: a client with no replica to ask is a programming error.
    pub fn new(
        port: u16,
        registries: Vec<Addr>,
        first: usize,
        timeout: Duration,
        mutants: Mutants,
    ) -> Result<DiscoveryClient, NetError> {
        assert!(!registries.is_empty(), "a client needs a replica to ask");
        Ok(DiscoveryClient {
            socket: Socket::bind(port)?,
            watched: first % registries.len(),
            registries,
            timeout,
            cache: ClientCache::new(mutants),
        })
    }

    /// Asks `registries[at]` (modulo their number) for every record of `service` and merges
    /// the answer into the cache; `None` if it did not answer.
    pub async fn discover(&mut self, service: &str, at: usize) -> Option<Answer> {
        let registry = self.registries[at % self.registries.len()];
        let request = RegistryRequest::Discover {
            service: service.to_owned(),
        };
        match self
            .socket
            .call::<_, RegistryResponse>(registry, &request, self.timeout)
            .await
        {
            Ok(RegistryResponse::Discovered(answer)) => {
                self.cache.apply_answer(service, &answer);
                Some(answer)
            }
            _ => None,
        }
    }

    /// Resumes the watch of `service` from the cache's cursor at the followed replica and
    /// applies what it answers; `None` if it did not answer (the watch then moves on).
    pub async fn watch(&mut self, service: &str) -> Option<Watched> {
        let after = self.cache.cursor(service).unwrap_or((0, 0));
        let request = RegistryRequest::Watch {
            service: service.to_owned(),
            replica: after.0,
            seq: after.1,
        };
        let registry = self.registries[self.watched];
        let answer = match self
            .socket
            .call::<_, RegistryResponse>(registry, &request, self.timeout)
            .await
        {
            Ok(RegistryResponse::Watched(answer)) => answer,
            _ => {
                self.move_on();
                return None;
            }
        };
        match &answer {
            WatchAnswer::Resync { replica, seq, .. } => {
                tracing::info!(service, log = replica, seq, "watch resynced");
            }
            WatchAnswer::Events(events) => {
                for event in events {
                    tracing::debug!(
                        service,
                        seq = event.seq,
                        key = %event.key,
                        incarnation = event.record.incarnation,
                        status = ?event.record.status,
                        "watch event"
                    );
                }
            }
        }
        if let Err(gap) = self.cache.apply_watch(service, &answer) {
            tracing::info!(%gap, "watch gap refused: moving to the next replica");
            self.move_on();
        }
        Some(Watched { after, answer })
    }

    fn move_on(&mut self) {
        self.watched = (self.watched + 1) % self.registries.len();
    }

    /// What the client knows.
    pub fn cache(&self) -> &ClientCache {
        &self.cache
    }

    /// The cache, when the client is done.
    pub fn into_cache(self) -> ClientCache {
        self.cache
    }
}
