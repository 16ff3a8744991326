//! Disk events of the trace: every operation, crash verdict and fault.

use super::error::{DiskErrorKind, DiskOp};
use super::{CrashModel, DiskFaults};
use crate::trace::{StableHash, StableHasher};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A disk event of the trace. Every variant and field is part of the trace hash.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskEvent {
    /// An operation of node code and its result. `offset` and `len` are the bytes asked for or
    /// moved (read: bytes read; list: entries; sync: operations made durable; 0 where
    /// meaningless).
    Op {
        /// The operation.
        op: DiskOp,
        /// The file (or directory) it acted on.
        path: String,
        /// Byte offset.
        offset: u64,
        /// Length in bytes (see above).
        len: u64,
        /// `Ok` or the kind of error.
        result: Result<(), DiskErrorKind>,
    },
    /// A rename and its result.
    Rename {
        /// Old path.
        from: String,
        /// New path.
        to: String,
        /// `Ok` or the kind of error.
        result: Result<(), DiskErrorKind>,
    },
    /// A failed fsync's verdict on the file's unsynced writes: `landed` reached the durable
    /// image, `dropped` are gone for good although the running node still reads them.
    FsyncLost {
        /// The file.
        path: String,
        /// Operations that reached the durable image.
        landed: u64,
        /// Operations dropped.
        dropped: u64,
    },
    /// A failed directory sync: `landed` of the `pending` name operations reached the disk, the
    /// others stay unsynced.
    SyncDirFailed {
        /// The directory.
        dir: String,
        /// Name operations the sync tried to make durable.
        pending: u64,
        /// Of those, how many did.
        landed: u64,
    },
    /// The page cache was full: its oldest unsynced operation was written back to the disk.
    Writeback {
        /// The kind of operation (`write`, `truncate`, `create`, `rename`, `remove`).
        op: DiskOp,
        /// The file.
        path: String,
        /// Bytes written back.
        len: u64,
    },
    /// Power loss: of `pending` unsynced operations, `landed` reached the disk whole, `torn`
    /// in part (a prefix of whole sectors); the rest were lost.
    Crash {
        /// Unsynced operations at the crash.
        pending: u64,
        /// Operations that reached the disk whole.
        landed: u64,
        /// Writes that reached the disk in part.
        torn: u64,
    },
    /// Bits flipped in a sector of a file's durable image.
    Corrupt {
        /// The file.
        path: String,
        /// Index of the sector in the file.
        sector: u64,
        /// Number of bits flipped.
        bits: u32,
        /// Whether a flipped bit lay in bytes a successful fsync had made durable (the
        /// simulator's truth; see [`super::Corruption::synced`]).
        synced: bool,
    },
    /// A successful fsync vouched for `bytes` flipped bytes that had reached the disk without
    /// an fsync and that no write had overwritten: the damage is now in fsynced data.
    DamageSynced {
        /// The file.
        path: String,
        /// Flipped bytes now fsynced.
        bytes: u64,
    },
    /// The node's disk faults were set.
    Faults(DiskFaults),
    /// The node's crash model was set.
    CrashModel(CrashModel),
}

fn hash_result(h: &mut StableHasher, result: &Result<(), DiskErrorKind>) {
    match result {
        Ok(()) => h.u8(0),
        Err(kind) => {
            h.u8(1);
            h.u8(kind.tag());
        }
    }
}

fn hash_faults(h: &mut StableHasher, faults: &DiskFaults) {
    h.u64(faults.read_error_probability.to_bits());
    h.u64(faults.write_error_probability.to_bits());
    h.u64(faults.fsync_error_probability.to_bits());
    h.u64(faults.capacity_bytes);
    match &faults.latency {
        None => h.u8(0),
        Some(latency) => {
            h.u8(1);
            h.u64(latency.min_ms);
            h.u64(latency.max_ms);
        }
    }
}

/// A tag, a path and numbers.
fn hash_fields(h: &mut StableHasher, tag: u8, path: &str, numbers: &[u64]) {
    h.u8(tag);
    h.str(path);
    numbers.iter().for_each(|number| h.u64(*number));
}

impl StableHash for DiskEvent {
    fn stable_hash(&self, h: &mut StableHasher) {
        match self {
            DiskEvent::Op {
                op,
                path,
                offset,
                len,
                result,
            } => {
                h.u8(0);
                h.u8(op.tag());
                h.str(path);
                h.u64(*offset);
                h.u64(*len);
                hash_result(h, result);
            }
            DiskEvent::Rename { from, to, result } => {
                h.u8(1);
                h.str(from);
                h.str(to);
                hash_result(h, result);
            }
            DiskEvent::FsyncLost {
                path,
                landed,
                dropped,
            } => hash_fields(h, 2, path, &[*landed, *dropped]),
            DiskEvent::SyncDirFailed {
                dir,
                pending,
                landed,
            } => hash_fields(h, 3, dir, &[*pending, *landed]),
            DiskEvent::Writeback { op, path, len } => {
                h.u8(4);
                h.u8(op.tag());
                h.str(path);
                h.u64(*len);
            }
            DiskEvent::Crash {
                pending,
                landed,
                torn,
            } => {
                h.u8(5);
                h.u64(*pending);
                h.u64(*landed);
                h.u64(*torn);
            }
            DiskEvent::Corrupt {
                path,
                sector,
                bits,
                synced,
            } => {
                h.u8(6);
                h.str(path);
                h.u64(*sector);
                h.u32(*bits);
                h.u8(u8::from(*synced));
            }
            DiskEvent::DamageSynced { path, bytes } => hash_fields(h, 9, path, &[*bytes]),
            DiskEvent::Faults(faults) => {
                h.u8(7);
                hash_faults(h, faults);
            }
            DiskEvent::CrashModel(model) => {
                h.u8(8);
                for flag in [
                    model.lose_unsynced,
                    model.torn_writes,
                    model.reorder_unsynced,
                ] {
                    h.u8(u8::from(flag));
                }
            }
        }
    }
}

struct ShowResult<'a>(&'a Result<(), DiskErrorKind>);

impl fmt::Display for ShowResult<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(()) => f.write_str("ok"),
            Err(kind) => write!(f, "error {kind}"),
        }
    }
}

impl fmt::Display for DiskEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskEvent::Op {
                op,
                path,
                offset,
                len,
                result,
            } => write!(f, "{op} {path:?} @{offset}+{len}: {}", ShowResult(result)),
            DiskEvent::Rename { from, to, result } => {
                write!(f, "rename {from:?} -> {to:?}: {}", ShowResult(result))
            }
            DiskEvent::FsyncLost {
                path,
                landed,
                dropped,
            } => write!(
                f,
                "FSYNC FAILED {path:?}: {landed} unsynced ops landed, {dropped} dropped"
            ),
            DiskEvent::SyncDirFailed {
                dir,
                pending,
                landed,
            } => write!(
                f,
                "SYNC_DIR FAILED {dir:?}: {landed} of {pending} name ops landed"
            ),
            DiskEvent::Writeback { op, path, len } => {
                write!(f, "writeback {op} {path:?} ({len} bytes)")
            }
            DiskEvent::Crash {
                pending,
                landed,
                torn,
            } => write!(
                f,
                "power loss: {pending} unsynced ops, {landed} landed, {torn} torn, {} lost",
                pending.saturating_sub(landed + torn)
            ),
            DiskEvent::Corrupt {
                path,
                sector,
                bits,
                synced,
            } => {
                let data = if *synced {
                    "fsynced data"
                } else {
                    "never-fsynced bytes only"
                };
                write!(
                    f,
                    "CORRUPT {path:?} sector {sector}: {bits} bits flipped in {data}"
                )
            }
            DiskEvent::DamageSynced { path, bytes } => write!(
                f,
                "fsync of {path:?} vouched for {bytes} corrupted bytes: damage now in fsynced data"
            ),
            DiskEvent::Faults(faults) => write!(f, "faults {faults:?}"),
            DiskEvent::CrashModel(model) => write!(f, "crash model {model:?}"),
        }
    }
}
