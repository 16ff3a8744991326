//! One registry replica: records ordered by rank, TTL leases on the monotonic clock,
//! anti-entropy with lease ages, a per-service change log for watches, and its durable state.
//!
//! ```
//! use std::time::Duration;
//! use patterns::discovery::{DownReason, HeartbeatReply, Key, Now, Registration, Replica, ReplicaConfig};
//!
//! let mut now = Now::from_monotonic(Duration::ZERO);
//! let mut replica = Replica::new(ReplicaConfig::default(), now)?;
//! let key = Key::new("orders", "orders-1");
//! replica.register(now, Registration {
//!     key: key.clone(),
//!     address: "10.0.0.7:8080".into(),
//!     incarnation: 1,
//!     ttl: Duration::from_secs(3),
//! })?;
//! assert_eq!(replica.discover("orders").healthy().count(), 1);
//!
//! // No heartbeat for longer than the TTL: a tick (every 100 ms) marks it down. (A tick later
//! // than scheduled would mean the replica itself was stalled, and the delay would not count.)
//! for _ in 0..32 {
//!     now = now.advanced(Duration::from_millis(100));
//!     replica.tick(now);
//! }
//! assert_eq!(replica.discover("orders").healthy().count(), 0);
//! assert_eq!(replica.heartbeat(now, &key, 1), HeartbeatReply::Gone(DownReason::Expired));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::mutant::{Mutant, Mutants};
use super::Now;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::{Duration, SystemTime};

/// An instance's identity: its service and its id within the service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    /// Service name.
    pub service: String,
    /// Instance id, unique within the service.
    pub instance: String,
}

impl Key {
    /// The key of `instance` of `service`.
    pub fn new(service: &str, instance: &str) -> Self {
        Key {
            service: service.to_owned(),
            instance: instance.to_owned(),
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.service, self.instance)
    }
}

/// Why an instance is down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum DownReason {
    /// Its lease ran out.
    Expired,
    /// It deregistered.
    Deregistered,
}

/// An instance's status in a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Registered and within its lease.
    Up,
    /// Down for good at this incarnation.
    Down(DownReason),
}

/// What a replica holds of one instance.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Record {
    /// Where the instance serves.
    pub address: String,
    /// Raised by the instance on every start; orders its registrations.
    pub incarnation: u64,
    /// Up, or down and why.
    pub status: Status,
}

impl Record {
    /// The order records replace each other in: a higher incarnation, then down over up
    /// (deregistered over expired), then the address (only so that the order is total, for two
    /// replicas that accepted the same incarnation at two addresses).
    pub fn rank(&self) -> (u64, u8, &str) {
        let status = match self.status {
            Status::Up => 0,
            Status::Down(DownReason::Expired) => 1,
            Status::Down(DownReason::Deregistered) => 2,
        };
        (self.incarnation, status, &self.address)
    }

    /// Whether the record is up.
    pub fn is_up(&self) -> bool {
        self.status == Status::Up
    }
}

/// A registration request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The instance.
    pub key: Key,
    /// Where it serves.
    pub address: String,
    /// Its incarnation (raised on every start of the instance).
    pub incarnation: u64,
    /// Its lease: it must heartbeat more often than this.
    pub ttl: Duration,
}

/// Why a registration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum RegisterError {
    /// A service name or an instance id is empty or too long.
    #[error("invalid name `{name}`: names are 1 to {max} bytes")]
    InvalidName {
        /// The name given.
        name: String,
        /// The longest name allowed.
        max: usize,
    },
    /// The address is empty or too long.
    #[error("invalid address `{address}`: addresses are 1 to {max} bytes")]
    InvalidAddress {
        /// The address given.
        address: String,
        /// The longest address allowed.
        max: usize,
    },
    /// The TTL is outside the replica's limits.
    #[error("TTL {ttl_ms} ms is outside {min_ms}..={max_ms} ms")]
    TtlOutOfRange {
        /// The TTL asked for.
        ttl_ms: u128,
        /// The shortest allowed.
        min_ms: u128,
        /// The longest allowed.
        max_ms: u128,
    },
    /// The replica holds a later incarnation, or this one already went down.
    #[error("incarnation {incarnation} is stale: the registry holds incarnation {current}")]
    Stale {
        /// The incarnation given.
        incarnation: u64,
        /// The one the replica holds.
        current: u64,
    },
    /// The same incarnation is registered at another address.
    #[error("incarnation {incarnation} is already registered at {address}")]
    AddressConflict {
        /// The incarnation given.
        incarnation: u64,
        /// The address it holds.
        address: String,
    },
}

/// The answer to a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeartbeatReply {
    /// The lease is renewed.
    Renewed,
    /// The replica does not know this incarnation yet: register it.
    Unknown,
    /// This incarnation is down (expired or deregistered, as said): register a higher one.
    Gone(DownReason),
    /// A higher incarnation is registered: this one is stale.
    Superseded,
}

/// A replica's limits and timing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaConfig {
    /// This replica's id, carried by its watch events and answers.
    pub replica: u64,
    /// Shortest TTL a registration may ask for.
    pub ttl_min: Duration,
    /// Longest TTL a registration may ask for.
    pub ttl_max: Duration,
    /// How often the driver ticks the replica (lease checks). A tick later than that means the
    /// replica itself was stalled (paused, starved): the lateness is not counted against
    /// leases, since renewals may be waiting unread in its inbox.
    pub tick: Duration,
    /// Longest service name, instance id or address, in bytes.
    pub name_len_max: usize,
    /// Most watch events kept per service; a watcher further behind gets a resync.
    pub watch_log_max: usize,
    /// Mutants switched on (none in production).
    pub mutants: Mutants,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            replica: 0,
            ttl_min: Duration::from_millis(500),
            ttl_max: Duration::from_secs(60),
            tick: Duration::from_millis(100),
            name_len_max: 128,
            watch_log_max: 256,
            mutants: Mutants::none(),
        }
    }
}

impl ReplicaConfig {
    /// Checks the limits: a clear message for each bad value.
    pub fn validate(&self) -> Result<(), String> {
        if self.ttl_min.is_zero() || self.ttl_min > self.ttl_max {
            return Err(format!(
                "ttl_min ({:?}) must be positive and at most ttl_max ({:?})",
                self.ttl_min, self.ttl_max
            ));
        }
        if self.tick.is_zero() || self.tick >= self.ttl_min {
            return Err(format!(
                "tick ({:?}) must be positive and shorter than ttl_min ({:?})",
                self.tick, self.ttl_min
            ));
        }
        if self.name_len_max == 0 || self.watch_log_max == 0 {
            return Err("name_len_max and watch_log_max must be positive".to_owned());
        }
        Ok(())
    }
}

/// A lease held by a replica: renewed on the monotonic clock (and the wall clock, which only
/// the `expiry-on-wall-clock` mutant reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lease {
    ttl: Duration,
    renewed_at: Duration,
    renewed_wall: SystemTime,
}

/// One record as anti-entropy carries it: with its lease's TTL and age for an up record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gossip {
    /// The instance.
    pub key: Key,
    /// The sender's record.
    pub record: Record,
    /// For an up record with a lease at the sender: the TTL and how long ago it was renewed.
    pub lease: Option<(Duration, Duration)>,
}

/// One change of a service's records at one replica, numbered per service from 1.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// The change log that numbered it ([`Replica::log_id`]: the replica and its boot).
    pub replica: u64,
    /// Its number in the service's change log at that replica.
    pub seq: u64,
    /// The instance.
    pub key: Key,
    /// Its new record.
    pub record: Record,
}

/// What a replica answers a watcher resuming after `seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatchAnswer {
    /// The events after the watcher's number, in order (maybe none).
    Events(Vec<WatchEvent>),
    /// The watcher is too far behind (or resumes from another replica): the whole state of
    /// the service, then events after `seq`.
    Resync {
        /// The replica.
        replica: u64,
        /// The service's current number.
        seq: u64,
        /// Every record of the service.
        records: Vec<(Key, Record)>,
    },
}

/// The answer to a discovery query: every record of the service at the replica, down ones
/// included, so that a cache can merge answers by rank.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// The replica that answered.
    pub replica: u64,
    /// The records.
    pub records: Vec<(Key, Record)>,
}

impl Answer {
    /// The healthy instances of the answer.
    pub fn healthy(&self) -> impl Iterator<Item = &(Key, Record)> {
        self.records.iter().filter(|(_, record)| record.is_up())
    }
}

/// Why stored state could not be read back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    /// The configuration is invalid.
    #[error("invalid replica config: {0}")]
    Config(String),
    /// The stored bytes are damaged.
    #[error("registry state is corrupt: {0}")]
    Corrupt(String),
}

/// One registry replica.
#[derive(Debug)]
pub struct Replica {
    config: ReplicaConfig,
    records: BTreeMap<Key, Record>,
    leases: BTreeMap<Key, Lease>,
    last_tick: Duration,
    /// Restarts so far (stored with the records).
    boot: u64,
    seqs: BTreeMap<String, u64>,
    watch_logs: BTreeMap<String, VecDeque<WatchEvent>>,
    /// Whether the durable state changed since [`Replica::take_dirty`].
    dirty: bool,
}

impl Replica {
    /// An empty replica.
    pub fn new(config: ReplicaConfig, now: Now) -> Result<Replica, String> {
        config.validate()?;
        Ok(Replica {
            config,
            records: BTreeMap::new(),
            leases: BTreeMap::new(),
            last_tick: now.monotonic,
            boot: 0,
            seqs: BTreeMap::new(),
            watch_logs: BTreeMap::new(),
            dirty: false,
        })
    }

    /// A replica restarted from its stored state ([`Replica::state_bytes`]). Its up records
    /// get a fresh lease: their last renewals died with the process, so a restart extends a
    /// dead instance's life by at most one TTL (anti-entropy may bring older ages sooner).
    pub fn restore(config: ReplicaConfig, now: Now, bytes: &[u8]) -> Result<Replica, RestoreError> {
        let mut replica = Replica::new(config, now).map_err(RestoreError::Config)?;
        if bytes.is_empty() {
            return Ok(replica);
        }
        let (body, crc) = bytes
            .split_last_chunk::<4>()
            .ok_or_else(|| RestoreError::Corrupt(format!("{} bytes", bytes.len())))?;
        if crc32c::crc32c(body) != u32::from_le_bytes(*crc) {
            return Err(RestoreError::Corrupt("checksum mismatch".to_owned()));
        }
        let (boot, records): (u64, Vec<(Key, Record, Duration)>) =
            postcard::from_bytes(body).map_err(|e| RestoreError::Corrupt(e.to_string()))?;
        // A new boot numbers its watch events afresh: cursors of the last boot get a resync.
        replica.boot = boot + 1;
        replica.dirty = true;
        let refresh = !replica
            .config
            .mutants
            .contains(Mutant::RestoredLeaseNotRefreshed);
        for (key, record, ttl) in records {
            if record.is_up() {
                replica.renew(&key, ttl, now);
                if let Some(lease) = replica.leases.get_mut(&key).filter(|_| !refresh) {
                    // The bug: the renewal time, never stored, stays at the clock's origin.
                    lease.renewed_at = Duration::ZERO;
                }
            }
            replica.records.insert(key, record);
        }
        Ok(replica)
    }

    /// The durable state: every record (with its TTL for up ones), checksummed.
    pub fn state_bytes(&self) -> Vec<u8> {
        let records: Vec<(&Key, &Record, Duration)> = self
            .records
            .iter()
            .map(|(key, record)| {
                let ttl = self.leases.get(key).map_or(self.config.ttl_max, |l| l.ttl);
                (key, record, ttl)
            })
            .collect();
        let mut bytes = postcard::to_allocvec(&(self.boot, records)).expect("records serialize");
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Marks the state as changed (a store that failed is retried with the next change).
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    /// Whether the records changed since the last call (the driver then stores
    /// [`Replica::state_bytes`] before answering what changed them).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The replica's id.
    pub fn id(&self) -> u64 {
        self.config.replica
    }

    /// The id of this boot's change log, which watch events and cursors carry: the replica's
    /// id and how many times it restarted. Change numbers start again at every restart, so a
    /// cursor of an earlier boot is answered with a resync.
    pub fn log_id(&self) -> u64 {
        (self.config.replica << 32) | (self.boot & 0xffff_ffff)
    }

    /// Refuses an empty or too long service name.
    pub fn check_service(&self, service: &str) -> Result<(), RegisterError> {
        self.check_name(service)
    }

    /// Refuses a key with an empty or too long service name or instance id.
    pub fn check_key(&self, key: &Key) -> Result<(), RegisterError> {
        self.check_name(&key.service)?;
        self.check_name(&key.instance)
    }

    fn check_name(&self, name: &str) -> Result<(), RegisterError> {
        if name.is_empty() || name.len() > self.config.name_len_max {
            return Err(RegisterError::InvalidName {
                name: name.to_owned(),
                max: self.config.name_len_max,
            });
        }
        Ok(())
    }

    /// Registers an instance (again, idempotently, for the same incarnation and address).
    pub fn register(&mut self, now: Now, registration: Registration) -> Result<(), RegisterError> {
        let Registration {
            key,
            address,
            incarnation,
            ttl,
        } = registration;
        self.check_name(&key.service)?;
        self.check_name(&key.instance)?;
        if address.is_empty() || address.len() > self.config.name_len_max {
            return Err(RegisterError::InvalidAddress {
                address,
                max: self.config.name_len_max,
            });
        }
        if ttl < self.config.ttl_min || ttl > self.config.ttl_max {
            return Err(RegisterError::TtlOutOfRange {
                ttl_ms: ttl.as_millis(),
                min_ms: self.config.ttl_min.as_millis(),
                max_ms: self.config.ttl_max.as_millis(),
            });
        }
        if self
            .config
            .mutants
            .contains(Mutant::StaleRegistrationAccepted)
        {
            // The bug: the registration wins, whatever the registry already holds.
            self.records.remove(&key);
        }
        if let Some(current) = self.records.get(&key) {
            let stale = current.incarnation > incarnation
                || (current.incarnation == incarnation && !current.is_up());
            if stale {
                return Err(RegisterError::Stale {
                    incarnation,
                    current: current.incarnation,
                });
            }
            if current.incarnation == incarnation && current.address != address {
                return Err(RegisterError::AddressConflict {
                    incarnation,
                    address: current.address.clone(),
                });
            }
        }
        let record = Record {
            address,
            incarnation,
            status: Status::Up,
        };
        self.apply(&key, record);
        self.renew(&key, ttl, now);
        Ok(())
    }

    /// A heartbeat of `incarnation` of `key`.
    pub fn heartbeat(&mut self, now: Now, key: &Key, incarnation: u64) -> HeartbeatReply {
        let Some(current) = self.records.get(key) else {
            return HeartbeatReply::Unknown;
        };
        if current.incarnation > incarnation {
            return HeartbeatReply::Superseded;
        }
        if current.incarnation < incarnation {
            return HeartbeatReply::Unknown;
        }
        if let Status::Down(reason) = current.status {
            if !self.config.mutants.contains(Mutant::StaleHeartbeatRevives) {
                return HeartbeatReply::Gone(reason);
            }
            // The bug: the heartbeat's instance is taken to be alive, whatever the record says.
            let revived = Record {
                status: Status::Up,
                ..current.clone()
            };
            self.records.remove(key);
            self.apply(key, revived);
        }
        let ttl = self.leases.get(key).map_or(self.config.ttl_max, |l| l.ttl);
        self.renew(key, ttl, now);
        HeartbeatReply::Renewed
    }

    /// Deregisters `incarnation` of `key`; false when the replica holds a later record.
    pub fn deregister(&mut self, key: &Key, incarnation: u64) -> bool {
        let address = match self.records.get(key) {
            Some(current) if current.incarnation == incarnation => current.address.clone(),
            _ => String::new(),
        };
        let record = Record {
            address,
            incarnation,
            status: Status::Down(DownReason::Deregistered),
        };
        self.apply(key, record)
    }

    /// Every record of `service`, down ones included.
    pub fn discover(&self, service: &str) -> Answer {
        Answer {
            replica: self.config.replica,
            records: self.service_records(service),
        }
    }

    fn service_records(&self, service: &str) -> Vec<(Key, Record)> {
        let from = Key::new(service, "");
        self.records
            .range(from..)
            .take_while(|(key, _)| key.service == service)
            .map(|(key, record)| (key.clone(), record.clone()))
            .collect()
    }

    /// The whole state for a peer, with each lease's TTL and age.
    pub fn gossip(&self, now: Now) -> Vec<Gossip> {
        self.records
            .iter()
            .map(|(key, record)| Gossip {
                key: key.clone(),
                record: record.clone(),
                lease: self
                    .leases
                    .get(key)
                    .map(|lease| (lease.ttl, now.monotonic.saturating_sub(lease.renewed_at))),
            })
            .collect()
    }

    /// Merges a peer's state: higher records replace lower ones; a lease keeps the fresher of
    /// its own renewal and the peer's (`now` minus the peer's age).
    pub fn merge(&mut self, now: Now, gossip: Vec<Gossip>) {
        for Gossip { key, record, lease } in gossip {
            let up = record.is_up();
            let same = self.records.get(&key) == Some(&record);
            if !same && !self.apply(&key, record) {
                continue;
            }
            let Some((ttl, age)) = lease.filter(|_| up) else {
                if up && !self.leases.contains_key(&key) {
                    // An up record must expire somewhere: without the sender's lease, the
                    // longest one, from now.
                    self.renew(&key, self.config.ttl_max, now);
                }
                continue;
            };
            let age = if self.config.mutants.contains(Mutant::LeaseResetOnSync) {
                // The bug: a lease learned from a peer starts afresh.
                Duration::ZERO
            } else {
                age
            };
            let renewed = now.monotonic.saturating_sub(age);
            match self.leases.get_mut(&key) {
                Some(own) if own.renewed_at >= renewed => {}
                Some(own) => {
                    own.renewed_at = renewed;
                    own.renewed_wall = wall_minus(now.wall, age);
                }
                None => {
                    let lease = Lease {
                        ttl,
                        renewed_at: renewed,
                        renewed_wall: wall_minus(now.wall, age),
                    };
                    self.leases.insert(key, lease);
                }
            }
        }
    }

    /// Checks the leases: every up record whose lease ran out goes down (expired). Returns
    /// the keys it expired. A tick later than scheduled means this replica was stalled
    /// (paused, starved), with renewals perhaps unread in its inbox: the lateness is not
    /// counted against the leases, which it judges only after reading them.
    pub fn tick(&mut self, now: Now) -> Vec<Key> {
        let gap = now.monotonic.saturating_sub(self.last_tick);
        self.last_tick = now.monotonic;
        let paused = gap.saturating_sub(self.config.tick);
        if !paused.is_zero() && !self.config.mutants.contains(Mutant::EvictAfterPause) {
            for lease in self.leases.values_mut() {
                lease.renewed_at = (lease.renewed_at + paused).min(now.monotonic);
                lease.renewed_wall = lease.renewed_wall.checked_add(paused).unwrap_or(now.wall);
            }
        }
        let on_wall = self.config.mutants.contains(Mutant::ExpiryOnWallClock);
        let expired: Vec<Key> = self
            .leases
            .iter()
            .filter(|(_, lease)| {
                let elapsed = if on_wall {
                    now.wall
                        .duration_since(lease.renewed_wall)
                        .unwrap_or(Duration::ZERO)
                } else {
                    now.monotonic.saturating_sub(lease.renewed_at)
                };
                elapsed > lease.ttl
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in &expired {
            let current = self.records[key].clone();
            let record = Record {
                status: Status::Down(DownReason::Expired),
                ..current
            };
            self.apply(key, record);
        }
        expired
    }

    /// When the driver should call [`Replica::tick`] next (monotonic).
    pub fn poll_timeout(&self) -> Duration {
        self.last_tick + self.config.tick
    }

    /// The watch events of `service` after `seq` from this replica, or a resync when the
    /// watcher is too far behind or was numbered by another replica.
    pub fn watch(&self, service: &str, replica: u64, seq: u64) -> WatchAnswer {
        let current = self.seqs.get(service).copied().unwrap_or(0);
        let log = self.watch_logs.get(service);
        let oldest = log
            .and_then(|log| log.front())
            .map_or(current + 1, |e| e.seq);
        if replica != self.log_id() || seq > current || seq + 1 < oldest {
            return WatchAnswer::Resync {
                replica: self.log_id(),
                seq: current,
                records: self.service_records(service),
            };
        }
        // The bug: resume one event late.
        let skip = u64::from(self.config.mutants.contains(Mutant::WatchResumeSkipsOne) && seq > 0);
        let events = log
            .map(|log| log.iter().filter(|e| e.seq > seq + skip).cloned().collect())
            .unwrap_or_default();
        WatchAnswer::Events(events)
    }

    /// The record of `key`, if any.
    pub fn record(&self, key: &Key) -> Option<&Record> {
        self.records.get(key)
    }

    /// Replaces the record of `key` if `record` ranks higher; logs the change.
    fn apply(&mut self, key: &Key, record: Record) -> bool {
        if let Some(current) = self.records.get(key) {
            if record.rank() <= current.rank() {
                return false;
            }
        }
        if !record.is_up() {
            self.leases.remove(key);
        } else if self
            .records
            .get(key)
            .is_some_and(|current| current.incarnation != record.incarnation)
        {
            // A new incarnation starts without the old one's lease.
            self.leases.remove(key);
        }
        self.records.insert(key.clone(), record.clone());
        self.log_change(key, record);
        self.dirty = true;
        true
    }

    fn log_change(&mut self, key: &Key, record: Record) {
        let log_id = self.log_id();
        let seq = self.seqs.entry(key.service.clone()).or_default();
        *seq += 1;
        let event = WatchEvent {
            replica: log_id,
            seq: *seq,
            key: key.clone(),
            record,
        };
        let log = self.watch_logs.entry(key.service.clone()).or_default();
        log.push_back(event);
        while log.len() > self.config.watch_log_max {
            log.pop_front();
        }
    }

    fn renew(&mut self, key: &Key, ttl: Duration, now: Now) {
        self.leases.insert(
            key.clone(),
            Lease {
                ttl,
                renewed_at: now.monotonic,
                renewed_wall: now.wall,
            },
        );
    }
}

fn wall_minus(wall: SystemTime, age: Duration) -> SystemTime {
    wall.checked_sub(age).unwrap_or(wall)
}
