//! In-memory files with a crash model, and a synchronous driver of [`Store`] over them.
//!
//! This is the test double of the simulated disk: a file keeps its durable content (as of the
//! last sync) and the writes since; a crash keeps a prefix of those writes, the last one
//! possibly torn. Unit tests and property tests drive the store through [`MemStore`] one I/O
//! completion at a time, so they can crash it at any point.

use crate::event_sourcing::event::{AppendError, AppendRequest, Appended};
use crate::event_sourcing::store::{
    Effect, IoError, OpenError, RequestId, Store, StoreConfig, StoreFile, SubscribeError,
    SubscriberId,
};
use std::collections::VecDeque;

/// A change to a file since its last sync.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FileOp {
    Write { offset: u64, bytes: Vec<u8> },
    Truncate { len: u64 },
}

/// An in-memory file: what a crash keeps for sure, and the changes since the last sync.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemFile {
    durable: Vec<u8>,
    current: Vec<u8>,
    unsynced: Vec<FileOp>,
}

fn apply(content: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write { offset, bytes } => {
            let start = *offset as usize;
            let end = start + bytes.len();
            if content.len() < end {
                content.resize(end, 0);
            }
            content[start..end].copy_from_slice(bytes);
        }
        FileOp::Truncate { len } => content.truncate(*len as usize),
    }
}

impl MemFile {
    /// The file as a read sees it now.
    pub fn contents(&self) -> &[u8] {
        &self.current
    }

    /// The file as the last sync left it.
    pub fn durable(&self) -> &[u8] {
        &self.durable
    }

    /// Writes `bytes` at `offset`, filling any gap with zeros.
    pub fn write_at(&mut self, offset: u64, bytes: &[u8]) {
        let op = FileOp::Write {
            offset,
            bytes: bytes.to_vec(),
        };
        apply(&mut self.current, &op);
        self.unsynced.push(op);
    }

    /// Cuts the file to `len` bytes.
    pub fn truncate(&mut self, len: u64) {
        let op = FileOp::Truncate { len };
        apply(&mut self.current, &op);
        self.unsynced.push(op);
    }

    /// Makes every change durable.
    pub fn sync(&mut self) {
        self.durable = self.current.clone();
        self.unsynced.clear();
    }

    /// Changes since the last sync.
    pub fn unsynced_ops(&self) -> usize {
        self.unsynced.len()
    }

    /// Crashes: keeps the first `ops_kept` unsynced changes, then `torn_bytes` bytes of the
    /// next one if it is a write (a torn write), and loses the rest.
    pub fn crash(&mut self, ops_kept: usize, torn_bytes: usize) {
        let mut content = self.durable.clone();
        let kept = ops_kept.min(self.unsynced.len());
        for op in &self.unsynced[..kept] {
            apply(&mut content, op);
        }
        if let Some(FileOp::Write { offset, bytes }) = self.unsynced.get(kept) {
            let torn = FileOp::Write {
                offset: *offset,
                bytes: bytes[..torn_bytes.min(bytes.len())].to_vec(),
            };
            apply(&mut content, &torn);
        }
        self.durable = content.clone();
        self.current = content;
        self.unsynced.clear();
    }

    /// Flips bit `bit` (0..8) of byte `offset`, durably (bit rot).
    ///
    /// # Panics
    /// If `offset` is past the end of the file.
    pub fn flip_bit(&mut self, offset: u64, bit: u8) {
        let mask = 1u8 << (bit % 8);
        self.current[offset as usize] ^= mask;
        if let Some(byte) = self.durable.get_mut(offset as usize) {
            *byte ^= mask;
        }
    }
}

/// What survives a crash of a [`MemStore`]: per file, how many unsynced changes are kept and
/// how many bytes of the next one (a torn write). The default loses every unsynced change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CrashPoint {
    /// Unsynced log changes kept whole.
    pub log_ops_kept: usize,
    /// Bytes kept of the next unsynced log write.
    pub log_torn_bytes: usize,
    /// Unsynced checkpoint changes kept whole.
    pub checkpoint_ops_kept: usize,
    /// Bytes kept of the next unsynced checkpoint write.
    pub checkpoint_torn_bytes: usize,
}

impl std::fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "log keeps {} ops + {}B, checkpoint keeps {} ops + {}B",
            self.log_ops_kept,
            self.log_torn_bytes,
            self.checkpoint_ops_kept,
            self.checkpoint_torn_bytes
        )
    }
}

/// A synchronous driver of a [`Store`] over two [`MemFile`]s.
///
/// File effects wait until [`MemStore::step`] performs them, so a test controls how I/O
/// interleaves with requests and where a crash falls. Answers and deliveries are collected in
/// [`MemStore::take_outputs`]; every input and effect is recorded as a line of
/// [`MemStore::take_trace`].
pub struct MemStore {
    config: StoreConfig,
    store: Store,
    log: MemFile,
    checkpoint: MemFile,
    outstanding: Option<Effect>,
    fail_next: Option<IoError>,
    outputs: VecDeque<Effect>,
    trace: Vec<String>,
    next_request: RequestId,
}

impl MemStore {
    /// A store over empty files.
    pub fn open(config: StoreConfig) -> Result<MemStore, OpenError> {
        let store = Store::new(config.clone())?;
        let mut mem = MemStore {
            config,
            store,
            log: MemFile::default(),
            checkpoint: MemFile::default(),
            outstanding: None,
            fail_next: None,
            outputs: VecDeque::new(),
            trace: Vec::new(),
            next_request: 1,
        };
        mem.pump();
        Ok(mem)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The store, for inputs the driver does not wrap; call [`MemStore::settle`] or
    /// [`MemStore::step`] after them to collect their effects.
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// The log file.
    pub fn log(&self) -> &MemFile {
        &self.log
    }

    /// The log file, for fault injection.
    pub fn log_mut(&mut self) -> &mut MemFile {
        &mut self.log
    }

    /// The checkpoint file.
    pub fn checkpoint(&self) -> &MemFile {
        &self.checkpoint
    }

    /// The checkpoint file, for fault injection.
    pub fn checkpoint_mut(&mut self) -> &mut MemFile {
        &mut self.checkpoint
    }

    /// Submits an append with the next request id (returned); no I/O is performed.
    pub fn append(&mut self, append: AppendRequest) -> RequestId {
        let request = self.next_request;
        self.next_request += 1;
        let ids: Vec<String> = append
            .events
            .iter()
            .map(|event| event.event_id.to_string())
            .collect();
        self.trace.push(format!(
            "> append r{request} {} {} [{}]",
            append.stream,
            append.expected,
            ids.join(" ")
        ));
        self.store.append(request, append);
        self.pump();
        request
    }

    /// Subscribes `subscriber` from `from_position` (see [`Store::subscribe`]).
    pub fn subscribe(
        &mut self,
        subscriber: SubscriberId,
        from_position: u64,
    ) -> Result<(), SubscribeError> {
        self.trace
            .push(format!("> subscribe s{subscriber} from p{from_position}"));
        let result = self.store.subscribe(subscriber, from_position);
        self.pump();
        result
    }

    /// Reports a delivery to `subscriber` as handed over (see [`Store::on_delivered`]).
    pub fn delivered(&mut self, subscriber: SubscriberId) {
        self.trace.push(format!("> delivered s{subscriber}"));
        self.store.on_delivered(subscriber);
        self.pump();
    }

    /// Makes the next file operation fail with `error`.
    pub fn fail_next_io(&mut self, error: IoError) {
        self.fail_next = Some(error);
    }

    /// Performs the outstanding file effect and reports it; false if there was none.
    pub fn step(&mut self) -> bool {
        self.pump();
        let Some(effect) = self.outstanding.take() else {
            return false;
        };
        let result = match self.fail_next.take() {
            Some(error) => Err(error),
            None => Ok(()),
        };
        let outcome = if result.is_ok() { "ok" } else { "FAILED" };
        self.trace.push(format!("< {effect}: {outcome}"));
        match effect {
            Effect::Write {
                file,
                offset,
                bytes,
            } => {
                if result.is_ok() {
                    self.file_mut(file).write_at(offset, &bytes);
                }
                self.store.on_write_done(result);
            }
            Effect::Sync { file } => {
                if result.is_ok() {
                    self.file_mut(file).sync();
                }
                self.store.on_sync_done(result);
            }
            Effect::Truncate { file, len } => {
                if result.is_ok() {
                    self.file_mut(file).truncate(len);
                }
                self.store.on_truncate_done(result);
            }
            other => unreachable!("only file effects are outstanding, got {other}"),
        }
        self.pump();
        true
    }

    /// Performs file effects until none is outstanding.
    pub fn settle(&mut self) {
        self.pump();
        while self.step() {}
    }

    /// Appends, settles, and returns the append's answer.
    pub fn append_and_settle(&mut self, append: AppendRequest) -> Result<Appended, AppendError> {
        let request = self.append(append);
        self.settle();
        self.answer(request).expect("a settled store answered")
    }

    /// Takes the answer to `request` from the outputs, if it came.
    pub fn answer(&mut self, request: RequestId) -> Option<Result<Appended, AppendError>> {
        let index = self
            .outputs
            .iter()
            .position(|effect| matches!(effect, Effect::Ack { request: r, .. } if *r == request))?;
        match self.outputs.remove(index) {
            Some(Effect::Ack { result, .. }) => Some(result),
            _ => unreachable!("found an ack"),
        }
    }

    /// Takes the answers, deliveries and halts collected so far.
    pub fn take_outputs(&mut self) -> Vec<Effect> {
        self.outputs.drain(..).collect()
    }

    /// Takes the trace lines recorded so far.
    pub fn take_trace(&mut self) -> Vec<String> {
        std::mem::take(&mut self.trace)
    }

    /// Adds a line to the trace (a test's comment or input).
    pub fn note(&mut self, line: impl Into<String>) {
        self.trace.push(line.into());
    }

    /// Crashes both files (see [`MemFile::crash`]) and drops the store's memory; call
    /// [`MemStore::recover`] next. Outputs already produced stay (they were sent).
    pub fn crash(&mut self, point: CrashPoint) {
        self.trace.push(format!("> crash ({point})"));
        self.log.crash(point.log_ops_kept, point.log_torn_bytes);
        self.checkpoint
            .crash(point.checkpoint_ops_kept, point.checkpoint_torn_bytes);
        self.outstanding = None;
        self.fail_next = None;
    }

    /// Rebuilds the store from the files (after a crash or a halt).
    pub fn recover(&mut self) -> Result<(), OpenError> {
        self.outstanding = None;
        let store = Store::recover(
            self.config.clone(),
            self.log.contents(),
            self.checkpoint.contents(),
        );
        match store {
            Ok(store) => {
                self.trace.push("> recover: ok".to_owned());
                self.store = store;
                self.pump();
                Ok(())
            }
            Err(error) => {
                self.trace.push(format!("> recover: {error}"));
                Err(error)
            }
        }
    }

    /// Crashes losing every unsynced change, recovers and settles.
    pub fn crash_and_recover(&mut self) -> Result<(), OpenError> {
        self.crash(CrashPoint::default());
        self.recover()?;
        self.settle();
        Ok(())
    }

    fn file_mut(&mut self, file: StoreFile) -> &mut MemFile {
        match file {
            StoreFile::Log => &mut self.log,
            StoreFile::Checkpoint => &mut self.checkpoint,
        }
    }

    /// Moves the store's effects to the outstanding slot or the outputs.
    fn pump(&mut self) {
        while let Some(effect) = self.store.poll_effect() {
            self.trace.push(effect.to_string());
            match effect {
                Effect::Write { .. } | Effect::Sync { .. } | Effect::Truncate { .. } => {
                    assert!(
                        self.outstanding.is_none(),
                        "the store issued a second file effect while one is outstanding"
                    );
                    self.outstanding = Some(effect);
                }
                other => self.outputs.push_back(other),
            }
        }
    }
}
