//! The event store core, sans-IO: requests and I/O completions in, effects out.
//!
//! # Protocol with the driver
//!
//! The store never does I/O. It hands out [`Effect`]s through [`Store::poll_effect`]; the driver
//! performs each file effect and reports its completion with [`Store::on_write_done`],
//! [`Store::on_sync_done`] or [`Store::on_truncate_done`]. At most one file effect is
//! outstanding at a time, so a completion needs no identifier. The driver also delivers
//! [`Effect::Ack`] to the client named by the request id and [`Effect::Deliver`] to the
//! subscriber, then reports the latter with [`Store::on_delivered`].
//!
//! A driver over a file API (`read_at`, `write_at`, `len`, `truncate`, `sync`, `sync_dir`)
//! looks like this:
//!
//! ```text
//! open:   create `events.log` and `events.chk` if missing, then sync_dir (so the files
//!         themselves survive a crash); read both whole; Store::recover(config, log, chk)
//! pump:   while let Some(effect) = store.poll_effect():
//!           Write { file, offset, bytes } -> start write_at(file, offset, bytes)
//!                                            (may extend the file; a gap reads as zeros)
//!           Sync { file }                 -> start sync(file)
//!           Truncate { file, len }        -> start truncate(file, len)
//!           Ack { request, result }       -> reply to the client of `request`
//!           Deliver { subscriber, events }-> send, then store.on_delivered(subscriber)
//!           Halted { .. }                 -> drop the store, go to `open` (restart)
//! inputs: a request        -> store.append(id, request); pump
//!         an I/O completes -> store.on_write_done / on_sync_done / on_truncate_done; pump
//! ```
//!
//! The driver must keep taking requests while a file effect is in flight (for example with a
//! `select` over the request channel and the I/O); if it awaited each I/O before reading the
//! next request, no two appends would ever share a commit.
//!
//! # Durability
//!
//! An append is written to the log with the other appends that arrived meanwhile (group
//! commit), then the log is synced, then the checkpoint (the log's synced length, see
//! [`crate::event_sourcing::log`]) is written and synced. Only then are the appends
//! acknowledged and their events readable and delivered: nothing is ever served that a crash
//! could take back. A failed write, sync or truncate halts the store (fail-stop, as after Linux
//! "fsyncgate": after a failed fsync the page cache no longer tells what is on disk). Appends
//! in flight get [`AppendError::OutcomeUnknown`], later ones [`AppendError::Unavailable`], and
//! the driver must rebuild the store from the files with [`Store::recover`].
//!
//! # Concurrency control
//!
//! Appends are decided one at a time, in arrival order, against the *write view*: committed
//! events plus the pending ones, which will commit in that same order or not at all (the store
//! halts). So the expected-version check and the append are one atomic step. Every answer that
//! depended on pending events (a success, a conflict, an idempotent retry) waits until those
//! events are durable, so no client ever hears of a state that a crash could undo.

use crate::event_sourcing::event::{
    AppendError, AppendRequest, Appended, EventId, Limits, RecordedEvent,
};
use crate::event_sourcing::log::{self, Batch, Checkpoint, RecoveryError, TornTail};
use crate::event_sourcing::mutant::{Mutant, Mutants};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

/// The driver's identifier of an append request, echoed in its [`Effect::Ack`].
pub type RequestId = u64;
/// The driver's identifier of a subscriber.
pub type SubscriberId = u64;

/// The store's two files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreFile {
    /// The log of records.
    Log,
    /// The checkpoint holding the log's synced length.
    Checkpoint,
}

impl fmt::Display for StoreFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreFile::Log => "log",
            StoreFile::Checkpoint => "checkpoint",
        })
    }
}

/// A failed disk operation, as the driver reports it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct IoError {
    /// What failed.
    pub message: String,
}

impl IoError {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        IoError {
            message: message.into(),
        }
    }
}

/// Something the store asks its driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Write `bytes` at `offset` of `file`, then call [`Store::on_write_done`].
    Write {
        /// The file.
        file: StoreFile,
        /// Where to write.
        offset: u64,
        /// What to write.
        bytes: Vec<u8>,
    },
    /// Sync `file` (fsync), then call [`Store::on_sync_done`].
    Sync {
        /// The file.
        file: StoreFile,
    },
    /// Truncate `file` to `len` bytes, then call [`Store::on_truncate_done`].
    Truncate {
        /// The file.
        file: StoreFile,
        /// The new length.
        len: u64,
    },
    /// Answer the append request `request`.
    Ack {
        /// The request.
        request: RequestId,
        /// Its result.
        result: Result<Appended, AppendError>,
    },
    /// Hand `events` to `subscriber`, then call [`Store::on_delivered`].
    Deliver {
        /// The subscriber.
        subscriber: SubscriberId,
        /// Consecutive committed events, in position order.
        events: Vec<RecordedEvent>,
    },
    /// The store stopped after an I/O failure; rebuild it with [`Store::recover`].
    Halted {
        /// The failure.
        error: IoError,
    },
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::Write {
                file,
                offset,
                bytes,
            } => write!(f, "write {file} @{offset} +{}B", bytes.len()),
            Effect::Sync { file } => write!(f, "sync {file}"),
            Effect::Truncate { file, len } => write!(f, "truncate {file} to {len}"),
            Effect::Ack {
                request,
                result: Ok(appended),
            } => write!(f, "ack r{request} ok {appended}"),
            Effect::Ack {
                request,
                result: Err(error),
            } => write!(f, "ack r{request} err {error}"),
            Effect::Deliver { subscriber, events } => match (events.first(), events.last()) {
                (Some(first), Some(last)) => write!(
                    f,
                    "deliver s{subscriber} p{}..={}",
                    first.position, last.position
                ),
                _ => write!(f, "deliver s{subscriber} nothing"),
            },
            Effect::Halted { error } => write!(f, "halted: {error}"),
        }
    }
}

/// Settings of a store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Size limits of append requests.
    pub limits: Limits,
    /// Most appends waiting for durability (and for their answer); more are refused with
    /// [`AppendError::Busy`].
    pub pending_appends_max: usize,
    /// Most bytes one group commit writes (it always takes at least one record).
    pub group_bytes_max: usize,
    /// Most events the store holds; more are refused with [`AppendError::StoreFull`].
    pub events_max: u64,
    /// Most subscribers at a time.
    pub subscribers_max: usize,
    /// Most events in one [`Effect::Deliver`].
    pub deliver_batch_max: usize,
    /// Deliberate bugs, off by default.
    pub mutants: Mutants,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            limits: Limits::default(),
            pending_appends_max: 256,
            group_bytes_max: 1024 * 1024,
            events_max: 1_000_000,
            subscribers_max: 16,
            deliver_batch_max: 64,
            mutants: Mutants::none(),
        }
    }
}

impl StoreConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        self.limits.validate()?;
        let positive = [
            ("pending_appends_max", self.pending_appends_max),
            ("group_bytes_max", self.group_bytes_max),
            ("deliver_batch_max", self.deliver_batch_max),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        Ok(())
    }
}

/// Why [`Store::recover`] refused to open.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The configuration is invalid.
    #[error("invalid store config: {0}")]
    Config(String),
    /// The files are damaged beyond what a crash explains.
    #[error("recovery failed: {0}")]
    Recovery(#[from] RecoveryError),
}

/// Why a read was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ReadError {
    /// The store is halted.
    #[error("the store is unavailable")]
    Unavailable,
    /// The store's recovery commit has not completed: what it recovered is not confirmed
    /// durable yet, and reading nothing instead would show a state older than acknowledged
    /// appends. Retry shortly.
    #[error("the store is recovering")]
    Recovering,
}

/// Why a subscription was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SubscribeError {
    /// The store is halted.
    #[error("the store is unavailable")]
    Unavailable,
    /// The subscriber id is in use.
    #[error("subscriber {0} is already subscribed")]
    AlreadySubscribed(SubscriberId),
    /// As many subscribers as allowed exist.
    #[error("too many subscribers (at most {0})")]
    TooManySubscribers(usize),
}

/// Group-commit measurements.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitStats {
    /// Commits completed (log sync and checkpoint sync), the recovery commit included.
    pub commits: u64,
    /// Appends made durable.
    pub appends: u64,
    /// Events made durable.
    pub events: u64,
    /// How many commits made `n` appends durable, by `n`.
    pub appends_per_commit: BTreeMap<u64, u64>,
}

impl CommitStats {
    /// Appends per commit, on average over the commits that carried appends.
    pub fn appends_per_commit_mean(&self) -> f64 {
        let commits: u64 = self.appends_per_commit.values().sum();
        if commits == 0 {
            return 0.0;
        }
        self.appends as f64 / commits as f64
    }

    /// The most appends one commit made durable.
    pub fn appends_per_commit_max(&self) -> u64 {
        self.appends_per_commit
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0)
    }
}

/// What recovery found, for observation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The synced length from the checkpoint.
    pub synced_len: u64,
    /// The length of the valid records.
    pub valid_len: u64,
    /// The torn tail that is truncated, if any.
    pub torn_tail: Option<TornTail>,
    /// A damaged checkpoint slot that was set aside.
    pub damaged_checkpoint_slot: Option<u64>,
    /// Events recovered (durable and unsynced ones).
    pub events: u64,
}

/// A subscriber's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionState {
    /// The position of the next event to deliver.
    pub cursor: u64,
    /// Whether a [`Effect::Deliver`] awaits [`Store::on_delivered`].
    pub in_flight: bool,
    /// Whether the subscriber has every committed event (it follows live).
    pub live: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    TruncatingLog,
    WritingLog,
    SyncingLog,
    WritingCheckpoint,
    SyncingCheckpoint,
}

/// One group commit in flight.
#[derive(Clone, Copy, Debug)]
struct Group {
    stage: Stage,
    /// The log's length once the group is written.
    log_end: u64,
    /// The global position after the group's last event.
    events_end: u64,
    /// Appends in the group (0 for the recovery commit).
    appends: u64,
}

/// An encoded record waiting for the next group commit.
struct QueuedRecord {
    bytes: Vec<u8>,
    events_end: u64,
}

/// An answer waiting until the events it depends on are durable.
struct Waiter {
    request: RequestId,
    result: Result<Appended, AppendError>,
    events_end: u64,
}

/// Where an event id was used: its position and its batch.
#[derive(Clone, Copy, Debug)]
struct IdEntry {
    position: u64,
    batch_first: u64,
    batch_len: u64,
}

#[derive(Clone, Copy, Debug)]
struct Subscriber {
    cursor: u64,
    in_flight: bool,
}

/// The event store state machine. See the [module documentation](self).
pub struct Store {
    config: StoreConfig,
    halted: Option<IoError>,
    /// Durable events, by global position.
    committed: Vec<RecordedEvent>,
    /// Positions of durable events, by stream.
    committed_streams: BTreeMap<String, Vec<u64>>,
    /// Accepted events not yet durable, following `committed`.
    pending: VecDeque<RecordedEvent>,
    /// Events per stream in the write view (durable and pending).
    heads: BTreeMap<String, u64>,
    /// Every event id of the write view.
    ids: BTreeMap<EventId, IdEntry>,
    queued: VecDeque<QueuedRecord>,
    inflight: Option<Group>,
    /// The log's length once every started group is written.
    log_end: u64,
    /// The log's synced length, as the last durable checkpoint says.
    synced_len: u64,
    checkpoint_sequence: u64,
    /// The kept unsynced records the recovery commit writes again: offset and bytes.
    rewrite: Option<(u64, Vec<u8>)>,
    /// Whether the recovery commit is still running (reads are refused until it completes).
    recovering: bool,
    waiters: Vec<Waiter>,
    subscribers: BTreeMap<SubscriberId, Subscriber>,
    effects: VecDeque<Effect>,
    stats: CommitStats,
    recovery: RecoveryReport,
}

impl Store {
    /// A store over empty files.
    pub fn new(config: StoreConfig) -> Result<Store, OpenError> {
        Store::recover(config, &[], &[])
    }

    /// Rebuilds a store from the contents of its log and checkpoint files.
    ///
    /// Unless both files are empty, the store first runs a *recovery commit* through the usual
    /// effects: truncate the torn tail (if any), write the records kept from the unsynced part
    /// again, sync the log, write and sync a new checkpoint. Until it completes nothing is
    /// readable (reads answer [`ReadError::Recovering`]), delivered or answered, because after a process restart the files as read may
    /// still hold unsynced data (the checkpoint slot itself, or log records): serving them
    /// before they are durable could serve what a later crash takes back. Appends may be
    /// submitted meanwhile; they commit after it.
    pub fn recover(config: StoreConfig, log: &[u8], checkpoint: &[u8]) -> Result<Store, OpenError> {
        config.validate().map_err(OpenError::Config)?;
        let checkpoint_read = log::read_checkpoint(checkpoint)?;
        // A damaged slot may have held the newest checkpoint, so the surviving one may
        // understate the synced length: the last commit's records, acknowledged, would pass
        // for an unsynced tail and a bad one would be dropped as torn. But a slot is written
        // only after the log's sync, and the next group's records only after the slot's sync,
        // so whenever a slot is damaged (bit rot, or a torn slot write) every record in the
        // log was synced: the whole log is scanned as synced, and a bad record anywhere is
        // corruption, refused.
        let synced_len = match checkpoint_read.damaged_slot {
            Some(_) => log.len() as u64,
            None => checkpoint_read.synced_len(),
        };
        let recovery = log::scan_with(log, synced_len, &config.mutants)?;
        let mut store = Store::empty(config);
        store.checkpoint_sequence = checkpoint_read.checkpoint.map_or(0, |c| c.sequence);
        for scanned in &recovery.batches {
            store.load_batch(&scanned.batch);
        }
        // Under `drop-after-bad` the valid part may end before the synced length.
        store.synced_len = recovery.synced_len.min(recovery.valid_len);
        store.log_end = recovery.valid_len;
        store.recovery = RecoveryReport {
            synced_len: recovery.synced_len,
            valid_len: recovery.valid_len,
            torn_tail: recovery.torn_tail.clone(),
            damaged_checkpoint_slot: checkpoint_read.damaged_slot,
            events: recovery.end_position(),
        };
        let fresh = log.is_empty() && checkpoint.iter().all(|&byte| byte == 0);
        if !fresh {
            store.start_recovery_commit(log, log.len() as u64 > recovery.valid_len);
        }
        Ok(store)
    }

    fn empty(config: StoreConfig) -> Store {
        Store {
            config,
            halted: None,
            committed: Vec::new(),
            committed_streams: BTreeMap::new(),
            pending: VecDeque::new(),
            heads: BTreeMap::new(),
            ids: BTreeMap::new(),
            queued: VecDeque::new(),
            inflight: None,
            log_end: 0,
            synced_len: 0,
            checkpoint_sequence: 0,
            rewrite: None,
            recovering: false,
            waiters: Vec::new(),
            subscribers: BTreeMap::new(),
            effects: VecDeque::new(),
            stats: CommitStats::default(),
            recovery: RecoveryReport::default(),
        }
    }

    /// Adds a recovered batch to the pending events (the recovery commit commits them).
    fn load_batch(&mut self, batch: &Batch) {
        let rebuild_ids = !self
            .config
            .mutants
            .contains(Mutant::IdempotencyLostOnRestart);
        for event in batch.recorded() {
            if rebuild_ids {
                self.ids.insert(
                    event.data.event_id,
                    IdEntry {
                        position: event.position,
                        batch_first: batch.first_position,
                        batch_len: batch.events.len() as u64,
                    },
                );
            }
            self.heads.insert(event.stream.clone(), event.version + 1);
            self.pending.push_back(event);
        }
    }

    /// Starts the recovery commit: truncate the torn tail (if any), write the kept unsynced
    /// records again, sync, checkpoint.
    ///
    /// The rewrite is for fsyncgate: after a failed fsync, Linux may have marked the unwritten
    /// pages clean, so the bytes a restarted process reads back are not on disk and a sync
    /// alone would not put them there. Writing them again dirties them, and the sync that
    /// follows covers them.
    fn start_recovery_commit(&mut self, log: &[u8], truncate: bool) {
        self.recovering = true;
        let (synced_len, log_end) = (self.synced_len as usize, self.log_end as usize);
        if log_end > synced_len {
            // Only under `keep-torn-record` can a kept record end past the file: its missing
            // bytes were read as zeros, and are written so.
            let mut kept = log[synced_len..log_end.min(log.len())].to_vec();
            kept.resize(log_end - synced_len, 0);
            self.rewrite = Some((self.synced_len, kept));
        }
        self.inflight = Some(Group {
            stage: Stage::TruncatingLog,
            log_end: self.log_end,
            events_end: self.write_end(),
            appends: 0,
        });
        if truncate {
            let (file, len) = (StoreFile::Log, self.log_end);
            self.effects.push_back(Effect::Truncate { file, len });
        } else {
            self.after_truncate();
        }
    }

    /// Continues the recovery commit with the rewrite, or the sync if nothing is to rewrite.
    fn after_truncate(&mut self) {
        let file = StoreFile::Log;
        match self.rewrite.take() {
            Some((offset, bytes)) => {
                let effect = Effect::Write {
                    file,
                    offset,
                    bytes,
                };
                self.set_stage(Stage::WritingLog, effect);
            }
            None => self.set_stage(Stage::SyncingLog, Effect::Sync { file }),
        }
    }

    /// The next effect for the driver, if any.
    #[must_use]
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// Submits an append; its answer comes as [`Effect::Ack`] with `request`.
    pub fn append(&mut self, request: RequestId, append: AppendRequest) {
        let (result, events_end) = self.decide(&append);
        match events_end {
            Some(events_end) if events_end > self.committed_end() => {
                self.waiters.push(Waiter {
                    request,
                    result,
                    events_end,
                });
            }
            _ => self.effects.push_back(Effect::Ack { request, result }),
        }
        self.start_group();
    }

    /// Decides an append against the write view: the result, and the global position the
    /// answer must wait for (`None`: answer now, nothing observed can be undone).
    fn decide(&mut self, append: &AppendRequest) -> (Result<Appended, AppendError>, Option<u64>) {
        if self.halted.is_some() {
            return (Err(AppendError::Unavailable), None);
        }
        if let Err(invalid) = self.config.limits.check(append) {
            return (Err(AppendError::Invalid(invalid)), None);
        }
        if self.waiters.len() >= self.config.pending_appends_max {
            return (Err(AppendError::Busy), None);
        }
        let write_end = self.write_end();
        if let Some(result) = self.find_retry(append) {
            let ack_at_once = self
                .config
                .mutants
                .contains(Mutant::IdempotentAckBeforeDurable);
            let events_end = match &result {
                // The bug: the retry found its events, so it is answered now, durable or not.
                Ok(_) if ack_at_once => return (result, None),
                Ok(appended) => appended.last_position + 1,
                Err(_) => write_end,
            };
            return (result, Some(events_end));
        }
        let current = self.expected_version_view(&append.stream);
        if !append.expected.matches(current) {
            let expected = append.expected;
            let error = AppendError::WrongExpectedVersion { expected, current };
            return (Err(error), Some(write_end));
        }
        if write_end + append.events.len() as u64 > self.config.events_max {
            return (Err(AppendError::StoreFull), None);
        }
        let appended = self.accept(append);
        (Ok(appended), Some(appended.last_position + 1))
    }

    /// The stream's last version as the expected-version check sees it: the write view, or
    /// under [`Mutant::NonAtomicExpectedVersion`] the stale committed view.
    fn expected_version_view(&self, stream: &str) -> Option<u64> {
        let mutants = &self.config.mutants;
        // Under `expected-version-before-recovery-commit` the recovered events count only once
        // the recovery commit has made them durable.
        if mutants.contains(Mutant::NonAtomicExpectedVersion)
            || (self.recovering && mutants.contains(Mutant::ExpectedVersionBeforeRecoveryCommit))
        {
            let count = self.committed_streams.get(stream).map_or(0, Vec::len);
            return (count as u64).checked_sub(1);
        }
        self.heads
            .get(stream)
            .and_then(|count| count.checked_sub(1))
    }

    /// If any event id of the append is known: the original result when the append repeats an
    /// earlier one exactly, else a conflict.
    fn find_retry(&self, append: &AppendRequest) -> Option<Result<Appended, AppendError>> {
        let committed = self.committed.len() as u64;
        let mutants = &self.config.mutants;
        // Under `idempotency-before-recovery-commit` the recovered ids count only once the
        // recovery commit has made them durable: until then every recovered event is pending.
        let misses_pending = mutants.contains(Mutant::IdempotencyMissesPending)
            || (self.recovering && mutants.contains(Mutant::IdempotencyBeforeRecoveryCommit));
        let known = append.events.iter().find(|event| {
            self.ids
                .get(&event.event_id)
                .is_some_and(|entry| !misses_pending || entry.position < committed)
        })?;
        let conflict = Err(AppendError::EventIdConflict {
            event_id: known.event_id,
        });
        let first = append.events[0].event_id;
        let Some(entry) = self.ids.get(&first) else {
            return Some(conflict);
        };
        let same_batch = entry.position == entry.batch_first
            && entry.batch_len == append.events.len() as u64
            && append
                .events
                .iter()
                .zip(entry.position..)
                .all(|(event, position)| {
                    let stored = self.event_at(position);
                    stored.stream == append.stream && stored.data == *event
                });
        if !same_batch {
            return Some(conflict);
        }
        let first_event = self.event_at(entry.position);
        let before = first_event.version.checked_sub(1);
        if !append.expected.matches(before) {
            return Some(conflict);
        }
        let last = entry.position + entry.batch_len - 1;
        Some(Ok(Appended {
            first_version: first_event.version,
            last_version: self.event_at(last).version,
            first_position: entry.position,
            last_position: last,
        }))
    }

    /// The event at `position` of the write view.
    fn event_at(&self, position: u64) -> &RecordedEvent {
        let committed = self.committed.len() as u64;
        if position < committed {
            &self.committed[position as usize]
        } else {
            &self.pending[(position - committed) as usize]
        }
    }

    /// Adds the append to the write view and queues its record.
    fn accept(&mut self, append: &AppendRequest) -> Appended {
        let first_position = self.write_end();
        let first_version = self.heads.get(&append.stream).copied().unwrap_or(0);
        let batch = Batch {
            stream: append.stream.clone(),
            first_version,
            first_position,
            events: append.events.clone(),
        };
        let batch_len = append.events.len() as u64;
        for event in batch.recorded() {
            let entry = IdEntry {
                position: event.position,
                batch_first: first_position,
                batch_len,
            };
            self.ids.insert(event.data.event_id, entry);
            self.pending.push_back(event);
        }
        self.heads
            .insert(append.stream.clone(), batch.end_version());
        self.queued.push_back(QueuedRecord {
            bytes: log::encode(&batch),
            events_end: batch.end_position(),
        });
        Appended {
            first_version,
            last_version: batch.end_version() - 1,
            first_position,
            last_position: batch.end_position() - 1,
        }
    }

    /// Starts a group commit of the queued records, if no commit is in flight.
    fn start_group(&mut self) {
        if self.halted.is_some() || self.inflight.is_some() || self.queued.is_empty() {
            return;
        }
        let mut bytes = Vec::new();
        let mut appends = 0;
        let mut events_end = 0;
        while let Some(record) = self.queued.front() {
            if appends > 0 && bytes.len() + record.bytes.len() > self.config.group_bytes_max {
                break;
            }
            let record = self.queued.pop_front().expect("front exists");
            bytes.extend_from_slice(&record.bytes);
            events_end = record.events_end;
            appends += 1;
        }
        let offset = self.log_end;
        self.log_end += bytes.len() as u64;
        self.inflight = Some(Group {
            stage: Stage::WritingLog,
            log_end: self.log_end,
            events_end,
            appends,
        });
        let file = StoreFile::Log;
        self.effects.push_back(Effect::Write {
            file,
            offset,
            bytes,
        });
    }

    /// The outstanding group; `None` once halted (late completions are ignored then).
    ///
    /// # Panics
    /// If no file effect is outstanding on a running store: a driver bug.
    fn outstanding(&mut self, what: &str) -> Option<Group> {
        if self.halted.is_some() {
            return None;
        }
        let group = self.inflight;
        assert!(
            group.is_some(),
            "driver reported {what} with no file effect outstanding"
        );
        group
    }

    fn set_stage(&mut self, stage: Stage, effect: Effect) {
        let group = self.inflight.as_mut().expect("a group is in flight");
        group.stage = stage;
        self.effects.push_back(effect);
    }

    /// Reports the completion of the outstanding [`Effect::Write`].
    ///
    /// # Panics
    /// If the outstanding effect is not a write: a driver bug.
    pub fn on_write_done(&mut self, result: Result<(), IoError>) {
        let Some(group) = self.outstanding("a write") else {
            return;
        };
        if let Err(error) = result {
            return self.halt(error);
        }
        match group.stage {
            Stage::WritingLog => {
                if self.config.mutants.contains(Mutant::AckBeforeFsync) {
                    self.answer_waiters(group.events_end);
                }
                let file = StoreFile::Log;
                self.set_stage(Stage::SyncingLog, Effect::Sync { file });
            }
            Stage::WritingCheckpoint => {
                let file = StoreFile::Checkpoint;
                self.set_stage(Stage::SyncingCheckpoint, Effect::Sync { file });
            }
            stage => panic!("driver reported a write while the store was in {stage:?}"),
        }
    }

    /// Reports the completion of the outstanding [`Effect::Sync`].
    ///
    /// # Panics
    /// If the outstanding effect is not a sync: a driver bug.
    pub fn on_sync_done(&mut self, result: Result<(), IoError>) {
        let Some(group) = self.outstanding("a sync") else {
            return;
        };
        if let Err(error) = result {
            if self.config.mutants.contains(Mutant::RetryFailedFsync) {
                let file = match group.stage {
                    Stage::SyncingLog => StoreFile::Log,
                    _ => StoreFile::Checkpoint,
                };
                return self.effects.push_back(Effect::Sync { file });
            }
            return self.halt(error);
        }
        match group.stage {
            Stage::SyncingLog => {
                let checkpoint = Checkpoint {
                    sequence: self.checkpoint_sequence + 1,
                    synced_len: group.log_end,
                };
                let effect = Effect::Write {
                    file: StoreFile::Checkpoint,
                    offset: checkpoint.slot_offset(),
                    bytes: checkpoint.encode(),
                };
                self.set_stage(Stage::WritingCheckpoint, effect);
            }
            Stage::SyncingCheckpoint => self.commit(group),
            stage => panic!("driver reported a sync while the store was in {stage:?}"),
        }
    }

    /// Reports the completion of the outstanding [`Effect::Truncate`].
    ///
    /// # Panics
    /// If the outstanding effect is not a truncate: a driver bug.
    pub fn on_truncate_done(&mut self, result: Result<(), IoError>) {
        let Some(group) = self.outstanding("a truncate") else {
            return;
        };
        if let Err(error) = result {
            return self.halt(error);
        }
        assert_eq!(
            group.stage,
            Stage::TruncatingLog,
            "driver reported a truncate out of turn"
        );
        self.after_truncate();
    }

    /// The group is durable: publish its events, answer, deliver, start the next group.
    fn commit(&mut self, group: Group) {
        self.inflight = None;
        // Only the recovery commit carries no append.
        if group.appends == 0 {
            self.recovering = false;
        }
        self.synced_len = group.log_end;
        self.checkpoint_sequence += 1;
        let before = self.committed_end();
        while self.committed_end() < group.events_end {
            let event = self.pending.pop_front().expect("pending covers the group");
            self.commit_event(event);
        }
        self.stats.commits += 1;
        self.stats.appends += group.appends;
        self.stats.events += self.committed_end() - before;
        if group.appends > 0 {
            *self
                .stats
                .appends_per_commit
                .entry(group.appends)
                .or_default() += 1;
        }
        self.answer_waiters(self.committed_end());
        let subscribers: Vec<SubscriberId> = self.subscribers.keys().copied().collect();
        for subscriber in subscribers {
            self.deliver(subscriber);
        }
        self.start_group();
    }

    fn commit_event(&mut self, event: RecordedEvent) {
        assert_eq!(
            event.position,
            self.committed_end(),
            "events commit in order"
        );
        self.committed_streams
            .entry(event.stream.clone())
            .or_default()
            .push(event.position);
        self.committed.push(event);
    }

    /// Answers, in arrival order, every waiter whose events end at or before `events_end`.
    fn answer_waiters(&mut self, events_end: u64) {
        let mut waiting = Vec::with_capacity(self.waiters.len());
        for waiter in std::mem::take(&mut self.waiters) {
            if waiter.events_end <= events_end {
                let (request, result) = (waiter.request, waiter.result);
                self.effects.push_back(Effect::Ack { request, result });
            } else {
                waiting.push(waiter);
            }
        }
        self.waiters = waiting;
    }

    /// Fail-stop: nothing more is written; answers in flight become "outcome unknown".
    fn halt(&mut self, error: IoError) {
        self.inflight = None;
        self.queued.clear();
        for waiter in std::mem::take(&mut self.waiters) {
            let request = waiter.request;
            let result = Err(AppendError::OutcomeUnknown);
            self.effects.push_back(Effect::Ack { request, result });
        }
        self.halted = Some(error.clone());
        self.effects.push_back(Effect::Halted { error });
    }

    /// Subscribes from global position `from_position`: committed events are delivered in
    /// batches (catch-up), then new ones as they commit (live).
    pub fn subscribe(
        &mut self,
        subscriber: SubscriberId,
        from_position: u64,
    ) -> Result<(), SubscribeError> {
        if self.halted.is_some() {
            return Err(SubscribeError::Unavailable);
        }
        if self.subscribers.contains_key(&subscriber) {
            return Err(SubscribeError::AlreadySubscribed(subscriber));
        }
        if self.subscribers.len() >= self.config.subscribers_max {
            return Err(SubscribeError::TooManySubscribers(
                self.config.subscribers_max,
            ));
        }
        let state = Subscriber {
            cursor: from_position,
            in_flight: false,
        };
        self.subscribers.insert(subscriber, state);
        self.deliver(subscriber);
        Ok(())
    }

    /// Ends a subscription; false if there was none.
    pub fn unsubscribe(&mut self, subscriber: SubscriberId) -> bool {
        self.subscribers.remove(&subscriber).is_some()
    }

    /// Reports that the last [`Effect::Deliver`] to `subscriber` was handed over; the next
    /// batch follows if there is one. Unknown subscribers are ignored (they may have
    /// unsubscribed meanwhile).
    pub fn on_delivered(&mut self, subscriber: SubscriberId) {
        if let Some(state) = self.subscribers.get_mut(&subscriber) {
            state.in_flight = false;
            self.deliver(subscriber);
        }
    }

    fn deliver(&mut self, subscriber: SubscriberId) {
        if self.halted.is_some() {
            return;
        }
        let end = self.committed_end();
        let batch_max = self.config.deliver_batch_max as u64;
        let Some(state) = self.subscribers.get_mut(&subscriber) else {
            return;
        };
        if state.in_flight || state.cursor >= end {
            return;
        }
        let from = state.cursor;
        let to = end.min(from + batch_max);
        state.cursor = to;
        state.in_flight = true;
        let events = self.committed[from as usize..to as usize].to_vec();
        self.effects
            .push_back(Effect::Deliver { subscriber, events });
    }

    /// A subscriber's progress.
    pub fn subscription(&self, subscriber: SubscriberId) -> Option<SubscriptionState> {
        let state = self.subscribers.get(&subscriber)?;
        Some(SubscriptionState {
            cursor: state.cursor,
            in_flight: state.in_flight,
            live: state.cursor >= self.committed_end(),
        })
    }

    /// Up to `count_max` durable events of `stream` from version `from_version`.
    pub fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        count_max: usize,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        self.check_readable()?;
        let Some(positions) = self.committed_streams.get(stream) else {
            return Ok(Vec::new());
        };
        let skip = usize::try_from(from_version).unwrap_or(usize::MAX);
        let events = positions.iter().skip(skip).take(count_max);
        Ok(events
            .map(|&p| self.committed[p as usize].clone())
            .collect())
    }

    /// Up to `count_max` durable events of all streams from global position `from_position`.
    pub fn read_all(
        &self,
        from_position: u64,
        count_max: usize,
    ) -> Result<Vec<RecordedEvent>, ReadError> {
        self.check_readable()?;
        let skip = usize::try_from(from_position).unwrap_or(usize::MAX);
        Ok(self
            .committed
            .iter()
            .skip(skip)
            .take(count_max)
            .cloned()
            .collect())
    }

    fn check_readable(&self) -> Result<(), ReadError> {
        if self.halted.is_some() {
            return Err(ReadError::Unavailable);
        }
        if self.recovering {
            return Err(ReadError::Recovering);
        }
        Ok(())
    }

    /// Whether the recovery commit is still running: reads answer [`ReadError::Recovering`].
    pub fn is_recovering(&self) -> bool {
        self.recovering
    }

    /// The last durable version of `stream` (`None`: no durable event).
    pub fn stream_version(&self, stream: &str) -> Option<u64> {
        let count = self.committed_streams.get(stream).map_or(0, Vec::len);
        (count as u64).checked_sub(1)
    }

    /// The global position after the last durable event (the number of durable events).
    pub fn committed_end(&self) -> u64 {
        self.committed.len() as u64
    }

    /// The global position after the last accepted event, durable or pending.
    fn write_end(&self) -> u64 {
        self.committed_end() + self.pending.len() as u64
    }

    /// The log's synced length, as the last durable checkpoint says.
    pub fn synced_len(&self) -> u64 {
        self.synced_len
    }

    /// The I/O failure that halted the store, if it is halted.
    pub fn halted(&self) -> Option<&IoError> {
        self.halted.as_ref()
    }

    /// Whether no commit is in flight or queued and no answer is waiting.
    pub fn is_idle(&self) -> bool {
        self.inflight.is_none() && self.queued.is_empty() && self.waiters.is_empty()
    }

    /// Group-commit measurements.
    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }

    /// What recovery found.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// The configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }
}
