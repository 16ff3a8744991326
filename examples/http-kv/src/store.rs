//! A node's durable state: one JSON file, replaced whole on every change.
//!
//! A save writes `<path>.tmp`, fsyncs it, renames it over `<path>` and fsyncs the directory,
//! so a crash leaves the old state or the new one, whole. A save that fails at any step leaves
//! the node's state in memory as it was: the caller treats the change as not made (its
//! outcome is unknown to the client), and the next save writes the whole state again, so a
//! half-done save never outlives the next good one. (An append-only log would need a
//! PostgreSQL-style crash after a failed fsync: on Linux the failed pages are dropped and the
//! next fsync succeeds without them.)

use crate::rt::{self, fs};
use crate::Bugs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use tokio::io::AsyncWriteExt;

/// The version of a write: the primary's boot number, then the write's number in that boot.
/// A restarted primary's writes are newer than any of its earlier boots'.
pub type Version = (u64, u64);

/// One key's value and the version that wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The value.
    pub value: String,
    /// The write that stored it.
    pub version: Version,
}

/// What a node keeps on its disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// How many times the node started (its boot number is this after its start).
    pub boot: u64,
    /// The backup took over from the primary (for good).
    pub promoted: bool,
    /// The data.
    pub entries: BTreeMap<String, Entry>,
}

/// The file a node keeps its [`State`] in.
#[derive(Clone, Debug)]
pub struct Store {
    path: String,
    bugs: Bugs,
}

impl Store {
    /// The store at `path` (relative to the node's working directory).
    pub fn new(path: &str, bugs: Bugs) -> Self {
        Store {
            path: path.to_string(),
            bugs,
        }
    }

    /// Reads the state; a node that never saved one has the empty state. A file that does
    /// not parse is `InvalidData`: the node must not serve from a state it cannot read.
    pub async fn load(&self) -> io::Result<State> {
        match fs::read(&self.path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|error| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {error}", self.path),
                )
            }),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(error) => Err(error),
        }
    }

    /// Replaces the stored state with `state`, durably: once this returns `Ok`, a crash
    /// leaves `state`.
    pub async fn save(&self, state: &State) -> io::Result<()> {
        let tmp = format!("{}.tmp", self.path);
        let bytes = serde_json::to_vec(state)?;
        let mut file = fs::File::create(&tmp).await?;
        file.write_all(&bytes).await?;
        file.flush().await?;
        if !self.bugs.ack_before_fsync {
            file.sync_all().await?;
        }
        drop(file);
        fs::rename(&tmp, &self.path).await?;
        if !self.bugs.ack_before_fsync {
            let dir = self.path.rsplit_once('/').map_or("", |(dir, _)| dir);
            rt::sync_dir(dir).await?;
        }
        Ok(())
    }
}
