//! One node's disk: the durable image, the page cache of unsynced operations, and what syncs,
//! crashes, faults and corruption do to them. Synchronous; randomness is passed in.

use super::error::{DiskError, DiskOp};
use super::event::DiskEvent;
use super::image::{path_problem, Image, InodeId, PendingOp};
use super::page_cache::PageCache;
use super::provenance::{Corruption, Landing, Provenance};
use super::{CrashModel, DiskConfig, DiskFaults};
use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::BTreeSet;

/// The bounds and geometry that hold for every node's disk during a run.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub sector_size_bytes: u64,
    pub pending_ops_max: usize,
    pub pending_bytes_max: u64,
    pub files_max: usize,
}

impl Settings {
    pub fn new(config: &DiskConfig) -> Self {
        Settings {
            sector_size_bytes: u64::from(config.sector_size_bytes),
            pending_ops_max: config.pending_ops_max as usize,
            pending_bytes_max: config.pending_bytes_max,
            files_max: config.files_max as usize,
        }
    }
}

/// Checks a path, with a clear error.
pub(crate) fn check_path(path: &str, allow_root: bool) -> Result<(), DiskError> {
    match path_problem(path, allow_root) {
        None => Ok(()),
        Some(reason) => Err(DiskError::InvalidPath {
            path: path.to_string(),
            reason,
        }),
    }
}

/// One node's disk.
#[derive(Clone, Debug)]
pub(crate) struct NodeDisk {
    /// What survives power loss.
    pub durable: Image,
    /// What the running node sees: the durable image with the page cache on top.
    pub volatile: Image,
    /// Unsynced operations, oldest first. Bounded by [`Settings::pending_ops_max`] and
    /// [`Settings::pending_bytes_max`]: past them the oldest is written back.
    pub pending: PageCache,
    /// [`NodeDisk::usage_bytes`], kept up to date on every change (recounting on every write
    /// would cost a pass over all files).
    usage: u64,
    pub faults: DiskFaults,
    pub crash_model: CrashModel,
    next_inode: InodeId,
    /// Which durable bytes no successful fsync vouches for, and every corruption.
    pub provenance: Provenance,
    /// The disk's random stream (see [`super::take_rng`]), made on first use: kept here rather
    /// than looked up by name in the world, which cost a formatted name and a map search per
    /// disk operation (measured).
    pub rng: Option<Xoshiro256PlusPlus>,
}

impl NodeDisk {
    pub fn new(faults: DiskFaults, crash_model: CrashModel) -> Self {
        NodeDisk {
            durable: Image::default(),
            volatile: Image::default(),
            pending: PageCache::default(),
            usage: 0,
            faults,
            crash_model,
            next_inode: 1,
            provenance: Provenance::default(),
            rng: None,
        }
    }

    /// A name for `inode` in events: its current name, else its durable one.
    pub fn name_of(&self, inode: InodeId) -> Option<&str> {
        self.volatile
            .names
            .get(&inode)
            .or_else(|| self.durable.names.get(&inode))
            .map(String::as_str)
    }

    /// The file at `path` in the running node's view.
    pub fn lookup(&self, path: &str) -> Result<InodeId, DiskError> {
        check_path(path, false)?;
        if let Some(inode) = self.volatile.dir.get(path) {
            return Ok(*inode);
        }
        if self.volatile.is_dir(path) {
            return Err(DiskError::IsADirectory { path: path.into() });
        }
        Err(DiskError::NotFound { path: path.into() })
    }

    /// Checks that a new entry can be made at `path` (no file in the way of its directories,
    /// and not a directory itself).
    fn check_new_entry(&self, path: &str) -> Result<(), DiskError> {
        if let Some(file) = self.volatile.file_ancestor(path) {
            return Err(DiskError::NotADirectory {
                path: path.into(),
                file,
            });
        }
        if self.volatile.is_dir(path) {
            return Err(DiskError::IsADirectory { path: path.into() });
        }
        Ok(())
    }

    /// Creates an empty file (fails if one exists).
    pub fn create(&mut self, path: &str, settings: &Settings) -> Result<InodeId, DiskError> {
        check_path(path, false)?;
        if self.volatile.dir.contains_key(path) {
            return Err(DiskError::AlreadyExists { path: path.into() });
        }
        self.check_new_entry(path)?;
        if self.volatile.dir.len() >= settings.files_max {
            return Err(DiskError::NoSpace {
                path: path.into(),
                detail: format!("the disk holds {} files, its most", settings.files_max),
            });
        }
        let inode = self.next_inode;
        self.next_inode += 1;
        self.push(PendingOp::Link {
            path: path.into(),
            inode,
        });
        Ok(inode)
    }

    /// Renames `from` to `to`, replacing a file at `to`.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), DiskError> {
        check_path(to, false)?;
        let inode = self.lookup(from)?;
        if from == to {
            return Ok(());
        }
        if !self.volatile.dir.contains_key(to) {
            self.check_new_entry(to)?;
        }
        self.push(PendingOp::Rename {
            from: from.into(),
            to: to.into(),
            inode,
        });
        Ok(())
    }

    /// Removes the file at `path`.
    pub fn remove(&mut self, path: &str) -> Result<(), DiskError> {
        let inode = self.lookup(path)?;
        self.push(PendingOp::Unlink {
            path: path.into(),
            inode,
        });
        Ok(())
    }

    /// Paths of the files below `dir`.
    pub fn list(&self, dir: &str) -> Result<Vec<String>, DiskError> {
        check_path(dir, true)?;
        if self.volatile.dir.contains_key(dir) {
            return Err(DiskError::NotADirectory {
                path: dir.into(),
                file: dir.into(),
            });
        }
        Ok(self.volatile.paths_under(dir))
    }

    /// The running node's view of an open file's contents.
    pub fn contents(&self, inode: InodeId, opened_as: &str) -> Result<&Vec<u8>, DiskError> {
        if !self.volatile.names.contains_key(&inode) {
            return Err(DiskError::Removed {
                path: opened_as.into(),
            });
        }
        Ok(self
            .volatile
            .files
            .get(&inode)
            .expect("a named inode has contents"))
    }

    /// Bytes the disk holds: per file, the larger of its size in the two images (the blocks of
    /// an old version stay allocated until the new one is durable).
    pub fn usage_bytes(&self) -> u64 {
        self.usage
    }

    /// Bytes `inode` holds.
    fn held(&self, inode: InodeId) -> u64 {
        let volatile_len = self.volatile.files.get(&inode).map_or(0, Vec::len);
        let durable_len = self.durable.files.get(&inode).map_or(0, Vec::len);
        volatile_len.max(durable_len) as u64
    }

    /// [`NodeDisk::usage_bytes`] counted from scratch.
    fn count_usage(&self) -> u64 {
        let inodes: BTreeSet<&InodeId> = self
            .volatile
            .files
            .keys()
            .chain(self.durable.files.keys())
            .collect();
        inodes.into_iter().map(|inode| self.held(*inode)).sum()
    }

    /// Runs `change`, which may change the sizes of `inodes` only, and keeps the usage count.
    fn tracking(&mut self, inodes: [Option<InodeId>; 2], change: impl FnOnce(&mut Self)) {
        let inodes = match inodes {
            [Some(a), Some(b)] if a == b => [Some(a), None],
            other => other,
        };
        let count = |disk: &Self| -> u64 { inodes.iter().flatten().map(|i| disk.held(*i)).sum() };
        let before = count(self);
        change(self);
        self.usage = self.usage - before + count(self);
    }

    /// Applies `op` to the running view.
    fn apply_to_volatile(&mut self, op: &PendingOp) {
        let replaced = op
            .target_path()
            .and_then(|path| self.volatile.dir.get(path).copied());
        self.tracking([Some(op.inode()), replaced], |disk| disk.volatile.apply(op));
    }

    /// Applies `op` to the durable image, which got it by `landing`.
    fn land(&mut self, op: &PendingOp, landing: Landing) {
        let replaced = op
            .target_path()
            .and_then(|path| self.durable.dir.get(path).copied());
        self.tracking([Some(op.inode()), replaced], |disk| {
            disk.land_untracked(op, landing);
        });
    }

    /// [`NodeDisk::land`] without keeping the usage count (a crash recounts it).
    fn land_untracked(&mut self, op: &PendingOp, landing: Landing) {
        let len_before = self.durable.files.get(&op.inode()).map_or(0, Vec::len) as u64;
        self.durable.apply(op);
        if op.is_data() {
            self.provenance.landed(op, len_before, landing);
        } else {
            // A name operation may drop the file it unlinks or replaces.
            self.forget_dropped_files();
        }
    }

    /// Forgets the provenance of files whose stored contents are gone.
    fn forget_dropped_files(&mut self) {
        let files = &self.durable.files;
        self.provenance.retain(|inode| files.contains_key(&inode));
    }

    /// Checks that `inode` may grow to `new_len` bytes within the capacity.
    fn check_space(&self, inode: InodeId, new_len: u64, path: &str) -> Result<(), DiskError> {
        let capacity = self.faults.capacity_bytes;
        let volatile_len = self.volatile.files.get(&inode).map_or(0, Vec::len) as u64;
        let durable_len = self.durable.files.get(&inode).map_or(0, Vec::len) as u64;
        let held = volatile_len.max(durable_len);
        if new_len <= held {
            return Ok(());
        }
        let usage = self.usage;
        if new_len > capacity || usage.saturating_add(new_len - held) > capacity {
            return Err(DiskError::NoSpace {
                path: path.into(),
                detail: format!(
                    "{usage} of {capacity} bytes used, {} more needed",
                    new_len - held
                ),
            });
        }
        Ok(())
    }

    /// Writes `data` at `offset` of an open file, in the page cache.
    pub fn write(
        &mut self,
        inode: InodeId,
        offset: u64,
        data: &[u8],
        path: &str,
    ) -> Result<(), DiskError> {
        let current_len = self.contents(inode, path)?.len() as u64;
        let Some(end) = offset.checked_add(data.len() as u64) else {
            return Err(DiskError::InvalidInput {
                path: path.into(),
                reason: format!("offset {offset} + {} bytes overflows", data.len()),
            });
        };
        self.check_space(inode, end.max(current_len), path)?;
        if !data.is_empty() {
            self.push(PendingOp::Write {
                inode,
                offset,
                data: data.to_vec(),
            });
        }
        Ok(())
    }

    /// Sets an open file's length, in the page cache.
    pub fn truncate(&mut self, inode: InodeId, len: u64, path: &str) -> Result<(), DiskError> {
        self.contents(inode, path)?;
        self.check_space(inode, len, path)?;
        self.push(PendingOp::Truncate { inode, len });
        Ok(())
    }

    fn push(&mut self, op: PendingOp) {
        self.apply_to_volatile(&op);
        self.pending.push(op);
    }

    /// Drops what of `inode` nothing can reach any more: its cached contents once it has no
    /// name, its stored contents once it has no name on either side and nothing pending.
    fn collect_inode(&mut self, inode: InodeId) {
        self.tracking([Some(inode), None], |disk| {
            if disk.volatile.names.contains_key(&inode) {
                return;
            }
            disk.volatile.files.remove(&inode);
            if !disk.durable.names.contains_key(&inode) && !disk.pending.references(inode) {
                disk.durable.files.remove(&inode);
                disk.forget_dropped_files();
            }
        });
    }

    /// Writes back the oldest unsynced operations while the page cache is over its bounds, as
    /// the kernel flushes dirty pages under memory pressure. Returns the events to record.
    pub fn enforce_bounds(&mut self, settings: &Settings) -> Vec<DiskEvent> {
        let mut events = Vec::new();
        while self.pending.len() > settings.pending_ops_max
            || self.pending.bytes() > settings.pending_bytes_max
        {
            let op = self.pending.pop_oldest().expect("over bounds: not empty");
            events.push(self.writeback_event(&op));
            // Written back without an fsync: nothing vouches for these bytes yet.
            self.land(&op, Landing::Unsynced);
            self.collect_inode(op.inode());
        }
        events
    }

    fn writeback_event(&self, op: &PendingOp) -> DiskEvent {
        let (kind, path) = match op {
            PendingOp::Write { .. } => (DiskOp::Write, None),
            PendingOp::Truncate { .. } => (DiskOp::Truncate, None),
            PendingOp::Link { path, .. } => (DiskOp::Create, Some(path.as_str())),
            PendingOp::Unlink { path, .. } => (DiskOp::Remove, Some(path.as_str())),
            PendingOp::Rename { to, .. } => (DiskOp::Rename, Some(to.as_str())),
        };
        let path = path.or_else(|| self.name_of(op.inode())).unwrap_or("?");
        DiskEvent::Writeback {
            op: kind,
            path: path.to_string(),
            len: op.payload_bytes(),
        }
    }

    /// fsync of a file: its unsynced writes and truncates reach the durable image, in order,
    /// and every durable byte of the file is now fsynced, also those that got there earlier
    /// without an fsync. Returns how many operations there were, and a `DamageSynced` event
    /// when that vouched for bytes a corruption had flipped.
    ///
    /// `failure`: the fsync fails. Then each of those operations independently reaches the
    /// durable image (unsynced: the node was told it failed) or is dropped for good, and none
    /// stays pending, so a later fsync succeeds without persisting the dropped ones (Linux
    /// after a writeback error); the running node keeps reading what it wrote. Returns the
    /// verdict's event then.
    pub fn sync_file(
        &mut self,
        inode: InodeId,
        failure: Option<&mut Xoshiro256PlusPlus>,
        path: &str,
    ) -> (u64, Option<DiskEvent>) {
        let ops = self.pending.take_data_of(inode);
        let count = ops.len() as u64;
        let event = match failure {
            None => {
                ops.iter().for_each(|op| self.land(op, Landing::Synced));
                let bytes = self.provenance.fsynced(inode);
                (bytes > 0).then(|| DiskEvent::DamageSynced {
                    path: path.into(),
                    bytes,
                })
            }
            Some(rng) => {
                let mut landed = 0;
                for op in &ops {
                    if rng.gen_bool(0.5) {
                        self.land(op, Landing::Unsynced);
                        landed += 1;
                    }
                }
                Some(DiskEvent::FsyncLost {
                    path: path.into(),
                    landed,
                    dropped: count - landed,
                })
            }
        };
        self.collect_inode(inode);
        (count, event)
    }

    /// Sequence numbers of the pending name operations a sync of `dir` makes durable, oldest
    /// first: every one that changes an entry of `dir`, and, so that the durable names stay a
    /// state the node went through, every earlier one that changes a directory those touch (a
    /// rename across directories pulls in the other directory's earlier operations).
    fn dir_sync_selection(&self, dir: &str) -> Vec<u64> {
        let mut needed: BTreeSet<&str> = BTreeSet::new();
        let mut selected = Vec::new();
        for (seq, op) in self.pending.names_newest_first() {
            let dirs = op.dirs().expect("a name operation");
            if dirs.contains(&dir) || dirs.iter().any(|d| needed.contains(d)) {
                needed.insert(dir);
                needed.extend(dirs);
                selected.push(seq);
            }
        }
        selected.reverse();
        selected
    }

    /// fsync of a directory: its unsynced creates, renames and removes reach the durable image.
    /// Returns how many did.
    ///
    /// `failure`: the sync fails; a random prefix of those operations (not all) lands and the
    /// rest stays unsynced, as with a journal commit cut short. Returns the event then.
    pub fn sync_dir(
        &mut self,
        dir: &str,
        failure: Option<&mut Xoshiro256PlusPlus>,
    ) -> Result<(u64, Option<DiskEvent>), DiskError> {
        check_path(dir, true)?;
        if self.volatile.dir.contains_key(dir) {
            return Err(DiskError::NotADirectory {
                path: dir.into(),
                file: dir.into(),
            });
        }
        let selected = self.dir_sync_selection(dir);
        let landing = match failure {
            Some(rng) if !selected.is_empty() => rng.gen_range(0..selected.len()),
            _ => selected.len(),
        };
        let ops = self.pending.take_seqs(&selected[..landing]);
        for op in &ops {
            // Name operations carry no bytes: how they landed does not matter.
            self.land(op, Landing::Synced);
        }
        for op in &ops {
            self.collect_inode(op.inode());
        }
        let event = (landing < selected.len()).then(|| DiskEvent::SyncDirFailed {
            dir: dir.into(),
            pending: selected.len() as u64,
            landed: landing as u64,
        });
        Ok((landing as u64, event))
    }

    /// Power loss: the crash model decides which unsynced operations reach the disk; the page
    /// cache is gone and the running view restarts from the durable image. Returns the event to
    /// record (`None` when nothing was unsynced: nothing to decide).
    pub fn crash(&mut self, rng: &mut Xoshiro256PlusPlus, sector_bytes: u64) -> Option<DiskEvent> {
        let ops = self.pending.drain();
        let verdict = if ops.is_empty() {
            None
        } else {
            let (landed, torn) = self.land_at_crash(&ops, rng, sector_bytes);
            Some(DiskEvent::Crash {
                pending: ops.len() as u64,
                landed,
                torn,
            })
        };
        // With the page cache gone, whatever has no durable name is garbage.
        let named = self.durable.names.clone();
        self.durable
            .retain_inodes(|inode| named.contains_key(&inode));
        self.forget_dropped_files();
        self.volatile = self.durable.clone();
        self.usage = self.count_usage();
        verdict
    }

    /// Applies what of `ops` reaches the disk under the crash model; returns (whole, torn).
    /// Nothing of it was fsynced: the node never learnt it was durable.
    fn land_at_crash(
        &mut self,
        ops: &[PendingOp],
        rng: &mut Xoshiro256PlusPlus,
        sector_bytes: u64,
    ) -> (u64, u64) {
        let model = self.crash_model;
        if !model.lose_unsynced {
            ops.iter()
                .for_each(|op| self.land_untracked(op, Landing::Unsynced));
            return (ops.len() as u64, 0);
        }
        if !model.reorder_unsynced {
            // Written back in order until the power went: a prefix, and the write at the cut
            // may be half done.
            let cut = rng.gen_range(0..=ops.len());
            ops[..cut]
                .iter()
                .for_each(|op| self.land_untracked(op, Landing::Unsynced));
            let torn = match ops.get(cut) {
                Some(op) if model.torn_writes => torn_part(op, rng, sector_bytes),
                _ => None,
            };
            let torn_count = u64::from(torn.is_some());
            if let Some(part) = torn {
                self.land_untracked(&part, Landing::Unsynced);
            }
            return (cut as u64, torn_count);
        }
        // Out of order: any subset of the data writes lands (each torn or not), while name
        // operations, which the file system journals in order, land as a prefix.
        let names = ops.iter().filter(|op| !op.is_data()).count();
        let names_landing = rng.gen_range(0..=names);
        let (mut landed, mut torn, mut names_seen) = (0, 0, 0);
        for op in ops {
            if !op.is_data() {
                names_seen += 1;
                if names_seen <= names_landing {
                    self.land_untracked(op, Landing::Unsynced);
                    landed += 1;
                }
            } else if rng.gen_bool(0.5) {
                self.land_untracked(op, Landing::Unsynced);
                landed += 1;
            } else if model.torn_writes {
                if let Some(part) = torn_part(op, rng, sector_bytes) {
                    self.land_untracked(&part, Landing::Unsynced);
                    torn += 1;
                }
            }
        }
        (landed, torn)
    }

    /// Flips bits in sector `sector` of the durable image of the file at `path`. The running
    /// node reads the flipped bits too when its cached copy of the sector is clean (no unsynced
    /// write covers it, and it matches the disk); a dirty cached copy hides them until a crash.
    /// Returns what it did, with whether it hit fsynced bytes.
    pub fn corrupt(
        &mut self,
        path: &str,
        sector: u64,
        rng: &mut Xoshiro256PlusPlus,
        sector_bytes: u64,
    ) -> Result<Corruption, DiskError> {
        check_path(path, false)?;
        let Some(&inode) = self.durable.dir.get(path) else {
            return Err(DiskError::NotFound { path: path.into() });
        };
        let stored_len = self.durable.files.get(&inode).map_or(0, Vec::len) as u64;
        let sectors = stored_len.div_ceil(sector_bytes);
        if sector >= sectors {
            return Err(DiskError::InvalidInput {
                path: path.into(),
                reason: format!("sector {sector} is past the stored file ({sectors} sectors)"),
            });
        }
        let start = (sector * sector_bytes) as usize;
        let end = (start + sector_bytes as usize).min(stored_len as usize);
        let clean = self.sector_is_clean(inode, start, end);
        let span_bits = (end - start) * 8;
        let bits = rng.gen_range(1..=span_bits.min(8));
        let positions = rand::seq::index::sample(rng, span_bits, bits);
        let mut flipped = BTreeSet::new();
        for bit in positions.iter() {
            let (byte, mask) = (start + bit / 8, 1u8 << (bit % 8));
            self.durable.files.get_mut(&inode).expect("stored")[byte] ^= mask;
            if clean {
                self.volatile.files.get_mut(&inode).expect("clean")[byte] ^= mask;
            }
            flipped.insert(byte as u64);
        }
        let flipped: Vec<u64> = flipped.into_iter().collect();
        let corruption = Corruption {
            path: path.into(),
            sector,
            bits: bits as u32,
            synced: false,
        };
        Ok(self.provenance.corrupted(inode, &flipped, corruption))
    }

    fn sector_is_clean(&self, inode: InodeId, start: usize, end: usize) -> bool {
        let Some(cached) = self.volatile.files.get(&inode) else {
            return false;
        };
        let stored = &self.durable.files[&inode];
        let dirty = self.pending.data_of(inode).any(|op| match op {
            PendingOp::Write { offset, data, .. } => {
                let offset = *offset as usize;
                offset < end && offset + data.len() > start
            }
            _ => true,
        });
        !dirty && cached.len() >= end && cached[start..end] == stored[start..end]
    }

    /// A random sector of a random non-empty durable file (of `path` only, if given).
    pub fn random_sector(
        &self,
        path: Option<&str>,
        rng: &mut Xoshiro256PlusPlus,
        sector_bytes: u64,
    ) -> Option<(String, u64)> {
        let candidates: Vec<(&String, u64)> = self
            .durable
            .dir
            .iter()
            .filter(|(name, _)| path.is_none() || path == Some(name.as_str()))
            .map(|(name, inode)| (name, self.durable.files.get(inode).map_or(0, Vec::len)))
            .filter(|(_, len)| *len > 0)
            .map(|(name, len)| (name, (len as u64).div_ceil(sector_bytes)))
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let (name, sectors) = candidates[rng.gen_range(0..candidates.len())];
        Some((name.clone(), rng.gen_range(0..sectors)))
    }
}

/// The part of `op` that reached the disk when power went mid-write: a prefix of whole sectors
/// (the first one counted from the write's start, even if the write starts mid-sector), at
/// least one and not all. `None` when nothing landed, when `op` is not a write, or when the
/// write touches one sector only (sector writes are atomic).
fn torn_part(op: &PendingOp, rng: &mut Xoshiro256PlusPlus, sector_bytes: u64) -> Option<PendingOp> {
    let PendingOp::Write { offset, data, .. } = op else {
        return None;
    };
    let first = offset / sector_bytes;
    let last = (offset + data.len() as u64 - 1) / sector_bytes;
    let sectors = last - first + 1;
    if sectors < 2 {
        return None;
    }
    let whole = rng.gen_range(0..sectors);
    if whole == 0 {
        return None;
    }
    let cut = (first + whole) * sector_bytes - offset;
    op.write_prefix(cut as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn settings() -> Settings {
        Settings {
            sector_size_bytes: 4,
            pending_ops_max: 12,
            pending_bytes_max: 64,
            files_max: 10,
        }
    }

    fn disk() -> NodeDisk {
        NodeDisk::new(DiskFaults::default(), CrashModel::default())
    }

    #[test]
    fn dir_sync_pulls_in_the_other_directory_of_a_rename() {
        let mut disk = disk();
        let s = settings();
        disk.create("a/x", &s).unwrap();
        disk.create("c/z", &s).unwrap();
        disk.rename("a/x", "b/y").unwrap();
        disk.create("a/later", &s).unwrap();
        disk.remove("b/y").unwrap();
        let (synced, event) = disk.sync_dir("b", None).unwrap();
        assert_eq!(synced, 3, "create a/x, rename, remove; not c/z nor a/later");
        assert!(event.is_none());
        assert!(disk.durable.dir.is_empty());
        assert_eq!(disk.pending.len(), 2);
        assert!(
            disk.durable.files.is_empty(),
            "the removed file's inode is collected"
        );
    }

    #[test]
    fn crash_with_lose_unsynced_off_keeps_everything() {
        let mut disk = disk();
        disk.crash_model.lose_unsynced = false;
        let inode = disk.create("f", &settings()).unwrap();
        disk.write(inode, 0, b"hello", "f").unwrap();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let event = disk.crash(&mut rng, 4);
        assert_eq!(
            event,
            Some(DiskEvent::Crash {
                pending: 2,
                landed: 2,
                torn: 0
            })
        );
        assert_eq!(
            disk.volatile.file("f").map(Vec::as_slice),
            Some(&b"hello"[..])
        );
    }

    /// Checks the bookkeeping, and (`exact`: no fsync failure dropped data) that the durable
    /// image with the page cache replayed on top is exactly what the node sees.
    fn check_invariants(disk: &NodeDisk, exact: bool, step: usize) {
        assert_eq!(disk.usage, disk.count_usage(), "usage, step {step}");
        disk.pending.check();
        disk.provenance.check(&disk.durable.files, step);
        let named: BTreeSet<&InodeId> = disk.volatile.dir.values().collect();
        let cached: BTreeSet<&InodeId> = disk.volatile.files.keys().collect();
        assert_eq!(
            named, cached,
            "cached contents are those of named files, step {step}"
        );
        for inode in disk.durable.files.keys() {
            let reachable = disk.durable.names.contains_key(inode)
                || disk.volatile.names.contains_key(inode)
                || disk.pending.references(*inode);
            assert!(reachable, "stored garbage {inode}, step {step}");
        }
        if exact {
            let mut replayed = disk.durable.clone();
            disk.pending.iter().for_each(|op| replayed.apply(op));
            assert_eq!(replayed.dir, disk.volatile.dir, "names, step {step}");
            for inode in disk.volatile.dir.values() {
                let contents = (replayed.files.get(inode), disk.volatile.files.get(inode));
                assert_eq!(contents.0, contents.1, "contents of {inode}, step {step}");
            }
        }
    }

    /// One random operation on `disk`.
    fn random_op(disk: &mut NodeDisk, rng: &mut Xoshiro256PlusPlus, fail: bool, step: usize) {
        const PATHS: [&str; 6] = ["a/x", "a/y", "b/x", "b/z", "top", "a"];
        let s = settings();
        let path = PATHS[rng.gen_range(0..PATHS.len())];
        let inode = disk.lookup(path).ok();
        let failure = fail && rng.gen_bool(0.3);
        match (rng.gen_range(0..9), inode) {
            (0, _) => drop(disk.create(path, &s)),
            (1 | 2, Some(inode)) => {
                let data = vec![step as u8; rng.gen_range(0..10)];
                let offset = rng.gen_range(0..20);
                disk.write(inode, offset, &data, path).unwrap();
            }
            (3, Some(inode)) => disk.truncate(inode, rng.gen_range(0..16), path).unwrap(),
            (4, _) => drop(disk.rename(path, PATHS[rng.gen_range(0..PATHS.len())])),
            (5, _) => drop(disk.remove(path)),
            (6, Some(inode)) => {
                let mut verdict_rng = rng.clone();
                let _ = disk.sync_file(inode, failure.then_some(&mut verdict_rng), path);
                *rng = verdict_rng;
            }
            (7, _) => {
                let dir = ["", "a", "b"][rng.gen_range(0..3)];
                let mut verdict_rng = rng.clone();
                let _ = disk.sync_dir(dir, failure.then_some(&mut verdict_rng));
                *rng = verdict_rng;
            }
            (8, _) if rng.gen_bool(0.2) => drop(disk.crash(rng, 4)),
            _ => {}
        }
        let _ = disk.enforce_bounds(&s);
    }

    #[test]
    fn model_invariants_hold_under_random_operations() {
        for seed in 0..40 {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            let mut disk = disk();
            disk.crash_model.reorder_unsynced = seed % 2 == 0;
            let fail = seed % 4 == 3;
            for step in 0..400 {
                random_op(&mut disk, &mut rng, fail, step);
                check_invariants(&disk, !fail, step);
            }
        }
    }

    #[test]
    fn torn_part_is_a_sector_prefix() {
        let op = PendingOp::Write {
            inode: 1,
            offset: 2,
            data: vec![7; 10],
        };
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let mut cuts = BTreeSet::new();
        for _ in 0..100 {
            if let Some(PendingOp::Write { offset, data, .. }) = torn_part(&op, &mut rng, 4) {
                assert_eq!((offset + data.len() as u64) % 4, 0);
                cuts.insert(data.len());
            }
        }
        assert_eq!(
            cuts,
            BTreeSet::from([2, 6]),
            "sectors 0..=2 give cuts at 4 and 8"
        );
    }
}
