//! A node's durable state: two slots, written in turn, each a whole JSON copy with a number.
//!
//! A save writes the whole state into the slot that does not hold the last good save
//! (truncated first), fsyncs it and fsyncs the directory (the slot may be new). Once that
//! returns, a crash leaves that copy. Until it does, the other slot still holds the last good
//! copy, untouched: a save that fails at any step (an I/O error, a failed fsync, a full disk)
//! leaves it as it was, and the next save writes into the same slot again. A load takes the
//! slot with the highest number among those that parse: a slot torn by a crash mid-save, or
//! left half-written by a failed fsync (on Linux the failed pages are dropped, and the next
//! fsync succeeds without them), does not parse and is passed over.

use crate::rt::fs;
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

/// What a slot holds.
#[derive(Serialize, Deserialize)]
struct Slot {
    /// The save's number: the highest that parses is the state.
    saved: u64,
    state: State,
}

/// The two slots a node keeps its [`State`] in.
#[derive(Clone, Debug)]
pub struct Store {
    dir: String,
    bugs: Bugs,
    /// The last good save: its slot and number.
    last: Option<(usize, u64)>,
}

impl Store {
    /// The store in directory `dir`.
    pub fn new(dir: &str, bugs: Bugs) -> Self {
        Store {
            dir: dir.to_string(),
            bugs,
            last: None,
        }
    }

    fn slot_path(&self, slot: usize) -> String {
        format!("{}/kv.{slot}.json", self.dir)
    }

    /// Reads the state: the newest slot that parses, or the empty state when none does
    /// (then no save ever completed: nothing was acknowledged).
    pub async fn load(&mut self) -> io::Result<State> {
        fs::create_dir_all(&self.dir).await?;
        let mut newest: Option<(usize, Slot)> = None;
        for slot in 0..2 {
            let bytes = match fs::read(self.slot_path(slot)).await {
                Ok(bytes) => bytes,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(error),
            };
            let Ok(read) = serde_json::from_slice::<Slot>(&bytes) else {
                tracing::warn!(slot, "a slot does not parse (a save that did not complete)");
                continue;
            };
            if newest
                .as_ref()
                .is_none_or(|(_, best)| read.saved > best.saved)
            {
                newest = Some((slot, read));
            }
        }
        self.last = newest.as_ref().map(|(slot, read)| (*slot, read.saved));
        Ok(newest.map(|(_, read)| read.state).unwrap_or_default())
    }

    /// Replaces the stored state with `state`, durably: once this returns `Ok`, a crash
    /// leaves `state`.
    pub async fn save(&mut self, state: &State) -> io::Result<()> {
        let (slot, saved) = match self.last {
            Some((last, saved)) => (1 - last, saved + 1),
            None => (0, 1),
        };
        let bytes = serde_json::to_vec(&Slot {
            saved,
            state: state.clone(),
        })?;
        let mut file = fs::File::create(self.slot_path(slot)).await?;
        file.write_all(&bytes).await?;
        file.flush().await?;
        if !self.bugs.ack_before_fsync() {
            file.sync_all().await?;
            fs::File::open(&self.dir).await?.sync_all().await?;
        }
        self.last = Some((slot, saved));
        Ok(())
    }
}
