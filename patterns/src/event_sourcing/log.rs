//! The on-disk log: record format, checkpoint format and the recovery scanner.
//!
//! # Files
//!
//! The store keeps two files. The *log* is a sequence of records, one per append (so a batch of
//! events is one record and a torn write can never expose half a batch). The *checkpoint*
//! holds the log's synced length: how many bytes of the log were made durable by a completed
//! sync before any of them was acknowledged. Recovery needs that number to tell a torn tail
//! (never acknowledged, may be dropped) from corruption of acknowledged data (must be
//! reported), which the log bytes alone cannot tell apart for the last records.
//!
//! # Record layout (little-endian)
//!
//! ```text
//! header  magic u32 = "ESR1" | body_len u32 | crc u32 = crc32c(magic ++ body_len ++ body)
//! body    kind u8 = 1 (batch)
//!         stream_len u16 | stream (UTF-8)
//!         first_version u64 | first_position u64 | event_count u32 (>= 1)
//!         event_count x ( event_id u128 | type_len u16 | type (UTF-8)
//!                         | schema_version u32 | payload_len u32 | payload )
//! ```
//!
//! Event `i` of a batch has stream version `first_version + i` and global position
//! `first_position + i`; global positions count events, not bytes.
//!
//! # Checkpoint layout
//!
//! Two slots, at offsets 0 and [`CHECKPOINT_SLOT_SPACING`] (so that tearing a write of one slot
//! cannot damage the other), each `magic u32 = "ESC1" | sequence u64 | synced_len u64 | crc
//! u32`. Checkpoint number `sequence` (from 1) goes to slot `sequence % 2`; the valid slot with
//! the highest sequence wins. See [`read_checkpoint`] for how damaged slots are judged.
//!
//! # Torn tail or corruption: the rule of [`scan`]
//!
//! The scanner reads records from offset 0 and stops at the first *bad* record: an incomplete
//! header, a wrong magic, an impossible length, a body running past the end of the file, or a
//! checksum mismatch. Where that record starts decides:
//!
//! * it starts **inside the synced part** (`offset < synced_len`): the bytes were durable and
//!   acknowledged, so they cannot be torn by a crash; this is corruption and the scan fails with
//!   [`RecoveryError::CorruptRecord`]. Also when valid records follow it: corruption followed
//!   by valid records is still corruption, never a torn tail.
//! * it starts **at or after `synced_len`**: no byte from there on was ever acknowledged
//!   (acknowledgements wait for the checkpoint sync), so the bad record and everything after it
//!   is a torn tail: [`Recovery::torn_tail`] reports it and the store truncates it. Valid
//!   records after a bad one are dropped with it, because a crash may persist unsynced writes
//!   out of order and such records were never acknowledged either.
//!
//! Two more cases are always errors, wherever they occur, because a crash cannot cause them:
//! a record whose checksum holds but whose body does not parse
//! ([`RecoveryError::MalformedRecord`]), and a record whose positions or versions do not follow
//! the previous ones ([`RecoveryError::Discontinuous`], for example a misdirected write). A log
//! shorter than its synced length lost acknowledged data ([`RecoveryError::LogShorterThanSynced`]).

use crate::event_sourcing::event::{EventData, EventId, Limits, RecordedEvent};
use crate::event_sourcing::mutant::{Mutant, Mutants};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The first four bytes of every log record: "ESR1".
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"ESR1");
/// Bytes of a record header: magic, body length, checksum.
pub const RECORD_HEADER_LEN: usize = 12;
/// The largest record (header and body) the scanner accepts; longer lengths are bad records.
pub const RECORD_BYTES_MAX: usize = 16 * 1024 * 1024;
/// The record kind of an atomic batch of events appended to one stream.
pub const RECORD_KIND_BATCH: u8 = 1;

/// The first four bytes of a checkpoint slot: "ESC1".
pub const CHECKPOINT_MAGIC: u32 = u32::from_le_bytes(*b"ESC1");
/// Bytes of one checkpoint slot.
pub const CHECKPOINT_SLOT_LEN: usize = 24;
/// Distance between the two checkpoint slots: a sector, so one slot's torn write spares the
/// other.
pub const CHECKPOINT_SLOT_SPACING: u64 = 4096;

/// An atomic batch of events appended to one stream: the content of one log record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The stream.
    pub stream: String,
    /// The stream version of the first event.
    pub first_version: u64,
    /// The global position of the first event.
    pub first_position: u64,
    /// The events, at least one.
    pub events: Vec<EventData>,
}

impl Batch {
    /// The events with their stream versions and global positions.
    pub fn recorded(&self) -> impl Iterator<Item = RecordedEvent> + '_ {
        self.events
            .iter()
            .zip(0u64..)
            .map(|(data, index)| RecordedEvent {
                stream: self.stream.clone(),
                version: self.first_version + index,
                position: self.first_position + index,
                data: data.clone(),
            })
    }

    /// The global position after the batch's last event.
    pub fn end_position(&self) -> u64 {
        self.first_position + self.events.len() as u64
    }

    /// The stream version after the batch's last event.
    pub fn end_version(&self) -> u64 {
        self.first_version + self.events.len() as u64
    }
}

/// An upper bound of the encoded size of any batch within `limits`.
pub fn record_len_bound(limits: &Limits) -> usize {
    let fixed = RECORD_HEADER_LEN + 1 + 2 + limits.stream_name_bytes_max + 8 + 8 + 4;
    let event = 16 + 2 + limits.event_type_bytes_max + 4 + 4 + limits.payload_bytes_max;
    fixed.saturating_add(limits.batch_events_max.saturating_mul(event))
}

/// Encodes a batch as one log record.
///
/// # Panics
/// If the batch is empty or a field exceeds the format (longer than `u16::MAX` names, a payload
/// over `u32::MAX`, a record over [`RECORD_BYTES_MAX`]): the store checks requests against
/// [`Limits`] first, so this is a bug.
pub fn encode(batch: &Batch) -> Vec<u8> {
    assert!(!batch.events.is_empty(), "a batch record needs an event");
    let mut body = Vec::new();
    body.push(RECORD_KIND_BATCH);
    put_str16(&mut body, &batch.stream);
    body.extend_from_slice(&batch.first_version.to_le_bytes());
    body.extend_from_slice(&batch.first_position.to_le_bytes());
    let count = u32::try_from(batch.events.len()).expect("event count fits u32");
    body.extend_from_slice(&count.to_le_bytes());
    for event in &batch.events {
        body.extend_from_slice(&event.event_id.0.to_le_bytes());
        put_str16(&mut body, &event.event_type);
        body.extend_from_slice(&event.schema_version.to_le_bytes());
        let len = u32::try_from(event.payload.len()).expect("payload length fits u32");
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(&event.payload);
    }
    assert!(
        RECORD_HEADER_LEN + body.len() <= RECORD_BYTES_MAX,
        "record of {} bytes exceeds the format",
        body.len()
    );
    let body_len = u32::try_from(body.len()).expect("checked above");
    let mut record = Vec::with_capacity(RECORD_HEADER_LEN + body.len());
    record.extend_from_slice(&RECORD_MAGIC.to_le_bytes());
    record.extend_from_slice(&body_len.to_le_bytes());
    record.extend_from_slice(&record_crc(body_len, &body).to_le_bytes());
    record.extend_from_slice(&body);
    record
}

fn put_str16(out: &mut Vec<u8>, text: &str) {
    let len = u16::try_from(text.len()).expect("name length fits u16");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn record_crc(body_len: u32, body: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&RECORD_MAGIC.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &body_len.to_le_bytes());
    crc32c::crc32c_append(crc, body)
}

/// What makes a record bad (a torn tail in the unsynced part, corruption in the synced part).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CorruptReason {
    /// Fewer bytes than a header remain.
    HeaderIncomplete {
        /// Bytes remaining.
        available: u64,
    },
    /// The record does not start with [`RECORD_MAGIC`].
    BadMagic {
        /// The four bytes found, little-endian.
        found: u32,
    },
    /// The body length is larger than [`RECORD_BYTES_MAX`] allows.
    LengthOutOfRange {
        /// The body length found.
        body_len: u64,
    },
    /// The body runs past the end of the file.
    BodyIncomplete {
        /// Body bytes the header announces.
        body_len: u64,
        /// Body bytes present.
        available: u64,
    },
    /// The checksum does not match the header and body.
    ChecksumMismatch {
        /// The checksum stored in the header.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
}

impl fmt::Display for CorruptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptReason::HeaderIncomplete { available } => {
                write!(f, "incomplete header ({available} bytes)")
            }
            CorruptReason::BadMagic { found } => write!(f, "bad magic {found:#010x}"),
            CorruptReason::LengthOutOfRange { body_len } => {
                write!(f, "body length {body_len} out of range")
            }
            CorruptReason::BodyIncomplete {
                body_len,
                available,
            } => write!(f, "incomplete body ({available} of {body_len} bytes)"),
            CorruptReason::ChecksumMismatch { stored, computed } => {
                write!(f, "checksum {computed:#010x} != stored {stored:#010x}")
            }
        }
    }
}

/// Why the body of a record with a valid checksum does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MalformedReason {
    /// The record kind is not one this version knows.
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    /// The body ends inside a field.
    #[error("body ends inside a field")]
    Truncated,
    /// A name is not UTF-8.
    #[error("a name is not UTF-8")]
    NotUtf8,
    /// A batch announces no event.
    #[error("a batch with no event")]
    EmptyBatch,
    /// Bytes remain after the last event.
    #[error("{0} bytes after the last event")]
    TrailingBytes(usize),
}

/// Why recovery refuses to open the log. Each variant means acknowledged data is damaged or
/// the files are inconsistent; serving anything would risk serving wrong data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum RecoveryError {
    /// A record inside the synced part is bad.
    #[error(
        "corrupt record at offset {offset} inside the synced part ({synced_len} bytes): {reason}"
    )]
    CorruptRecord {
        /// Where the record starts.
        offset: u64,
        /// The synced length.
        synced_len: u64,
        /// What is wrong.
        reason: CorruptReason,
    },
    /// A record's checksum holds but its body does not parse.
    #[error("malformed record at offset {offset}: {reason}")]
    MalformedRecord {
        /// Where the record starts.
        offset: u64,
        /// What is wrong.
        reason: MalformedReason,
    },
    /// A valid record does not continue the log's positions or its stream's versions.
    #[error(
        "record at offset {offset} (stream `{stream}`) starts at position {found_position} \
         version {found_version}, expected position {expected_position} version {expected_version}"
    )]
    Discontinuous {
        /// Where the record starts.
        offset: u64,
        /// The record's stream.
        stream: String,
        /// The next global position.
        expected_position: u64,
        /// The record's first global position.
        found_position: u64,
        /// The stream's next version.
        expected_version: u64,
        /// The record's first stream version.
        found_version: u64,
    },
    /// The synced length falls inside a valid record, so the checkpoint does not match the log.
    #[error("synced length {synced_len} falls inside the record at {offset}..{end}")]
    SyncedLenInsideRecord {
        /// The synced length.
        synced_len: u64,
        /// Where the record starts.
        offset: u64,
        /// Where it ends.
        end: u64,
    },
    /// The log is shorter than its synced length: acknowledged bytes are missing.
    #[error("the log has {log_len} bytes, fewer than its synced length {synced_len}")]
    LogShorterThanSynced {
        /// Bytes in the log.
        log_len: u64,
        /// The synced length.
        synced_len: u64,
    },
    /// The checkpoint file cannot be trusted (see [`read_checkpoint`]).
    #[error("the checkpoint is corrupt: {detail}")]
    CheckpointCorrupt {
        /// What is wrong.
        detail: String,
    },
}

/// One valid record found by the scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScannedBatch {
    /// Where the record starts in the log.
    pub offset: u64,
    /// The record's length in bytes.
    pub len: u64,
    /// Its content.
    pub batch: Batch,
}

/// The discarded tail of a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// Where the first bad record starts: the length to truncate the log to.
    pub offset: u64,
    /// Bytes discarded.
    pub len: u64,
    /// What is wrong with the first bad record.
    pub reason: CorruptReason,
}

/// The result of scanning a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The valid records, in log order.
    pub batches: Vec<ScannedBatch>,
    /// The end of the last valid record: the log's length after truncating the torn tail.
    /// (Only under [`Mutant::KeepTornRecord`] can it exceed the file's length.)
    pub valid_len: u64,
    /// The synced length the scan was given.
    pub synced_len: u64,
    /// The torn tail, if the log does not end exactly after a valid record.
    pub torn_tail: Option<TornTail>,
}

impl Recovery {
    /// The global position after the last recovered event.
    pub fn end_position(&self) -> u64 {
        self.batches
            .last()
            .map_or(0, |scanned| scanned.batch.end_position())
    }
}

/// Scans a log for recovery; see the [module documentation](self) for the exact rule.
pub fn scan(bytes: &[u8], synced_len: u64) -> Result<Recovery, RecoveryError> {
    scan_with(bytes, synced_len, &Mutants::none())
}

/// [`scan`] with mutants: [`Mutant::KeepTornRecord`] and [`Mutant::DropAfterBad`] act here.
pub fn scan_with(
    bytes: &[u8],
    synced_len: u64,
    mutants: &Mutants,
) -> Result<Recovery, RecoveryError> {
    let log_len = bytes.len() as u64;
    if log_len < synced_len {
        return Err(RecoveryError::LogShorterThanSynced {
            log_len,
            synced_len,
        });
    }
    let mut continuity = Continuity::default();
    let mut batches = Vec::new();
    let mut offset = 0u64;
    let mut torn_tail = None;
    while offset < log_len {
        let (batch, len) = match read_record(bytes, offset)? {
            Ok(found) => found,
            Err(reason) => match judge_bad(bytes, offset, synced_len, reason, mutants)? {
                Ok(kept) => kept,
                Err(tail) => {
                    torn_tail = Some(tail);
                    break;
                }
            },
        };
        let end = offset + len;
        if offset < synced_len && end > synced_len {
            return Err(RecoveryError::SyncedLenInsideRecord {
                synced_len,
                offset,
                end,
            });
        }
        continuity.check(offset, &batch)?;
        batches.push(ScannedBatch { offset, len, batch });
        offset = end;
    }
    Ok(Recovery {
        batches,
        valid_len: offset,
        synced_len,
        torn_tail,
    })
}

/// Decides what a bad record at `offset` means: an error inside the synced part, a torn tail
/// after it, or (under [`Mutant::KeepTornRecord`]) a record kept despite its checksum.
fn judge_bad(
    bytes: &[u8],
    offset: u64,
    synced_len: u64,
    reason: CorruptReason,
    mutants: &Mutants,
) -> Result<Result<(Batch, u64), TornTail>, RecoveryError> {
    if offset < synced_len && !mutants.contains(Mutant::DropAfterBad) {
        return Err(RecoveryError::CorruptRecord {
            offset,
            synced_len,
            reason,
        });
    }
    let keep = mutants.contains(Mutant::KeepTornRecord)
        && matches!(
            reason,
            CorruptReason::ChecksumMismatch { .. } | CorruptReason::BodyIncomplete { .. }
        );
    if keep {
        // The bug trusts the length field: it reads the body without checking it, and a
        // body cut short by the crash reads as zeros (an allocated, unwritten extent).
        let start = usize::try_from(offset).expect("offset within a slice") + RECORD_HEADER_LEN;
        let body_len = u32::from_le_bytes(field4(bytes, start - 8)) as usize;
        let mut body = bytes[start..bytes.len().min(start + body_len)].to_vec();
        body.resize(body_len, 0);
        if let Ok(batch) = decode_body(&body) {
            return Ok(Ok((batch, (RECORD_HEADER_LEN + body_len) as u64)));
        }
    }
    let len = bytes.len() as u64 - offset;
    Ok(Err(TornTail {
        offset,
        len,
        reason,
    }))
}

fn field4(bytes: &[u8], at: usize) -> [u8; 4] {
    bytes[at..at + 4].try_into().expect("four bytes")
}

/// Reads the record at `offset`: the outer error is a checksum-valid record that does not
/// parse, the inner one a bad record.
#[allow(clippy::type_complexity)]
fn read_record(
    bytes: &[u8],
    offset: u64,
) -> Result<Result<(Batch, u64), CorruptReason>, RecoveryError> {
    let start = usize::try_from(offset).expect("offset within a slice");
    let rest = &bytes[start..];
    if rest.len() < RECORD_HEADER_LEN {
        let available = rest.len() as u64;
        return Ok(Err(CorruptReason::HeaderIncomplete { available }));
    }
    let magic = u32::from_le_bytes(field4(rest, 0));
    if magic != RECORD_MAGIC {
        return Ok(Err(CorruptReason::BadMagic { found: magic }));
    }
    let body_len_field = u32::from_le_bytes(field4(rest, 4));
    let body_len = body_len_field as usize;
    if body_len > RECORD_BYTES_MAX - RECORD_HEADER_LEN {
        let body_len = u64::from(body_len_field);
        return Ok(Err(CorruptReason::LengthOutOfRange { body_len }));
    }
    let available = rest.len() - RECORD_HEADER_LEN;
    if available < body_len {
        return Ok(Err(CorruptReason::BodyIncomplete {
            body_len: body_len as u64,
            available: available as u64,
        }));
    }
    let body = &rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + body_len];
    let stored = u32::from_le_bytes(field4(rest, 8));
    let computed = record_crc(body_len_field, body);
    if stored != computed {
        return Ok(Err(CorruptReason::ChecksumMismatch { stored, computed }));
    }
    let batch =
        decode_body(body).map_err(|reason| RecoveryError::MalformedRecord { offset, reason })?;
    Ok(Ok((batch, (RECORD_HEADER_LEN + body_len) as u64)))
}

/// A reader over a record body that fails with [`MalformedReason::Truncated`] at its end.
struct BodyReader<'a> {
    rest: &'a [u8],
}

impl<'a> BodyReader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], MalformedReason> {
        if self.rest.len() < len {
            return Err(MalformedReason::Truncated);
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], MalformedReason> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn str16(&mut self) -> Result<String, MalformedReason> {
        let len = u16::from_le_bytes(self.array()?);
        let bytes = self.take(usize::from(len))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| MalformedReason::NotUtf8)
    }
}

fn decode_body(body: &[u8]) -> Result<Batch, MalformedReason> {
    let mut reader = BodyReader { rest: body };
    let [kind] = reader.array()?;
    if kind != RECORD_KIND_BATCH {
        return Err(MalformedReason::UnknownKind(kind));
    }
    let stream = reader.str16()?;
    let first_version = u64::from_le_bytes(reader.array()?);
    let first_position = u64::from_le_bytes(reader.array()?);
    let count = u32::from_le_bytes(reader.array()?);
    if count == 0 {
        return Err(MalformedReason::EmptyBatch);
    }
    // Each event takes at least 26 bytes, so a corrupt count cannot make us reserve much.
    let mut events = Vec::with_capacity((count as usize).min(reader.rest.len() / 26));
    for _ in 0..count {
        let event_id = EventId(u128::from_le_bytes(reader.array()?));
        let event_type = reader.str16()?;
        let schema_version = u32::from_le_bytes(reader.array()?);
        let len = u32::from_le_bytes(reader.array()?);
        let payload = reader.take(len as usize)?.to_vec();
        events.push(EventData {
            event_id,
            event_type,
            schema_version,
            payload,
        });
    }
    if !reader.rest.is_empty() {
        return Err(MalformedReason::TrailingBytes(reader.rest.len()));
    }
    Ok(Batch {
        stream,
        first_version,
        first_position,
        events,
    })
}

/// The next global position and the next version of every stream, checked record by record.
#[derive(Default)]
struct Continuity {
    next_position: u64,
    next_versions: BTreeMap<String, u64>,
}

impl Continuity {
    fn check(&mut self, offset: u64, batch: &Batch) -> Result<(), RecoveryError> {
        let expected_version = self.next_versions.get(&batch.stream).copied().unwrap_or(0);
        if batch.first_position != self.next_position || batch.first_version != expected_version {
            return Err(RecoveryError::Discontinuous {
                offset,
                stream: batch.stream.clone(),
                expected_position: self.next_position,
                found_position: batch.first_position,
                expected_version,
                found_version: batch.first_version,
            });
        }
        self.next_position = batch.end_position();
        self.next_versions
            .insert(batch.stream.clone(), batch.end_version());
        Ok(())
    }
}

/// The content of one checkpoint slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The checkpoint's number, from 1; it picks the slot and orders the slots.
    pub sequence: u64,
    /// The log's synced length.
    pub synced_len: u64,
}

impl Checkpoint {
    /// The offset in the checkpoint file of the slot this checkpoint goes to.
    pub fn slot_offset(&self) -> u64 {
        (self.sequence % 2) * CHECKPOINT_SLOT_SPACING
    }

    /// Encodes the slot.
    pub fn encode(&self) -> Vec<u8> {
        let mut slot = Vec::with_capacity(CHECKPOINT_SLOT_LEN);
        slot.extend_from_slice(&CHECKPOINT_MAGIC.to_le_bytes());
        slot.extend_from_slice(&self.sequence.to_le_bytes());
        slot.extend_from_slice(&self.synced_len.to_le_bytes());
        let crc = crc32c::crc32c(&slot);
        slot.extend_from_slice(&crc.to_le_bytes());
        slot
    }
}

/// What [`read_checkpoint`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointRead {
    /// The newest valid checkpoint, if any slot holds one.
    pub checkpoint: Option<Checkpoint>,
    /// A damaged slot that was set aside because the other slot is valid.
    pub damaged_slot: Option<u64>,
}

impl CheckpointRead {
    /// The synced length to scan the log with: 0 without a checkpoint.
    pub fn synced_len(&self) -> u64 {
        self.checkpoint
            .map_or(0, |checkpoint| checkpoint.synced_len)
    }
}

enum Slot {
    Empty,
    Damaged,
    Valid(Checkpoint),
}

fn read_slot(bytes: &[u8], index: u64) -> Slot {
    let start = (index * CHECKPOINT_SLOT_SPACING) as usize;
    let end = (start + CHECKPOINT_SLOT_LEN).min(bytes.len());
    let slot = bytes.get(start..end).unwrap_or(&[]);
    if slot.iter().all(|&byte| byte == 0) {
        return Slot::Empty;
    }
    if slot.len() < CHECKPOINT_SLOT_LEN {
        return Slot::Damaged;
    }
    let magic = u32::from_le_bytes(field4(slot, 0));
    let crc = u32::from_le_bytes(field4(slot, 20));
    if magic != CHECKPOINT_MAGIC || crc != crc32c::crc32c(&slot[..20]) {
        return Slot::Damaged;
    }
    let sequence = u64::from_le_bytes(slot[4..12].try_into().expect("8 bytes"));
    let synced_len = u64::from_le_bytes(slot[12..20].try_into().expect("8 bytes"));
    if sequence == 0 || sequence % 2 != index {
        return Slot::Damaged;
    }
    Slot::Valid(Checkpoint {
        sequence,
        synced_len,
    })
}

/// Reads the checkpoint file.
///
/// Checkpoint 1 goes to slot 1 and checkpoint 2 to slot 0, then they alternate, so the slot
/// being written always holds the older checkpoint. Rules, each slot being empty (all zero or
/// absent), valid, or damaged:
///
/// * the valid slot with the highest sequence wins; a damaged other slot is reported in
///   [`CheckpointRead::damaged_slot`] (it may be a torn write of the next checkpoint);
/// * both empty: a fresh store, synced length 0;
/// * slot 1 damaged and slot 0 empty: the very first checkpoint write tore; synced length 0;
/// * otherwise (both damaged, or slot 0 damaged and slot 1 empty, which the write order
///   cannot produce): [`RecoveryError::CheckpointCorrupt`].
///
/// If the newer slot is damaged after its sync (bit rot), the older slot wins and understates
/// the synced length: the last commit's records would pass for an unsynced tail. So
/// [`Store::recover`](crate::event_sourcing::store::Store::recover) scans the whole log as
/// synced whenever a slot is damaged (a slot is written only after the log's sync, and the
/// next records only after the slot's sync, so then every record was synced): a rotted record
/// there is refused as corruption, never cut off as a torn tail.
pub fn read_checkpoint(bytes: &[u8]) -> Result<CheckpointRead, RecoveryError> {
    let slots = [read_slot(bytes, 0), read_slot(bytes, 1)];
    let read = |checkpoint, damaged_slot| {
        Ok(CheckpointRead {
            checkpoint,
            damaged_slot,
        })
    };
    match slots {
        [Slot::Valid(a), Slot::Valid(b)] => {
            read(Some(if a.sequence > b.sequence { a } else { b }), None)
        }
        [Slot::Valid(a), Slot::Empty] | [Slot::Empty, Slot::Valid(a)] => read(Some(a), None),
        [Slot::Valid(a), Slot::Damaged] => read(Some(a), Some(1)),
        [Slot::Damaged, Slot::Valid(b)] => read(Some(b), Some(0)),
        [Slot::Empty, Slot::Empty] => read(None, None),
        [Slot::Empty, Slot::Damaged] => read(None, Some(1)),
        [Slot::Damaged, Slot::Empty] => Err(RecoveryError::CheckpointCorrupt {
            detail: "slot 0 is damaged and slot 1, written first, is empty".to_owned(),
        }),
        [Slot::Damaged, Slot::Damaged] => Err(RecoveryError::CheckpointCorrupt {
            detail: "both slots are damaged".to_owned(),
        }),
    }
}
