//! Where the bytes of a durable image came from: which of them no successful fsync vouches for,
//! and which corruptions damaged bytes that one does.
//!
//! A byte reaches the durable image either through a successful fsync of its file, or without
//! one: written back when the page cache was full, landed (whole or torn) at a crash, landed
//! during a failed fsync. A node never acknowledged the second kind, so a correct store treats
//! damage there like a torn tail; damage to the first kind is damage to acknowledged data. The
//! simulator knows which is which; this module keeps that truth for [`super::DiskControl`].
//!
//! Everything is keyed by inode, so it follows files through renames, and kept in `BTreeMap`s
//! and `Vec`s: deterministic, and bounded by the files of the disk and the corruptions made.

use super::image::{InodeId, PendingOp};
use std::collections::BTreeMap;

/// One corruption of a disk: bits flipped in a sector of a file's durable image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// The file's path when it was corrupted.
    pub path: String,
    /// Index of the sector in the file.
    pub sector: u64,
    /// Number of bits flipped.
    pub bits: u32,
    /// Whether the damage hit fsynced data: a flipped bit lay in bytes a successful fsync of
    /// the file had made durable, or a later successful fsync of the file vouched for a flipped
    /// byte still on the disk (the fsync does not rewrite bytes already written back, so the
    /// node takes the damaged bytes for acknowledged ones). `false`: every flipped bit lay in
    /// bytes that reached the disk without a successful fsync, and no later one covered them.
    pub synced: bool,
}

/// Half-open byte ranges `start..end` of one file, disjoint and not adjacent (merged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ByteRanges {
    /// Start to end.
    ranges: BTreeMap<u64, u64>,
}

impl ByteRanges {
    /// Adds `start..end`, merging it with the ranges it overlaps or touches.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut start, mut end) = (start, end);
        // The ranges that overlap or touch `start..end` start at most at `end`; of those, the
        // ones that end before `start` stay apart.
        let touching: Vec<(u64, u64)> = self
            .ranges
            .range(..=end)
            .rev()
            .take_while(|(_, range_end)| **range_end >= start)
            .map(|(s, e)| (*s, *e))
            .collect();
        for (range_start, range_end) in touching {
            self.ranges.remove(&range_start);
            start = start.min(range_start);
            end = end.max(range_end);
        }
        self.ranges.insert(start, end);
    }

    /// Drops every byte at or past `len` (the file was truncated to `len` bytes).
    pub fn clip(&mut self, len: u64) {
        let past: Vec<u64> = self.ranges.range(len..).map(|(start, _)| *start).collect();
        for start in past {
            self.ranges.remove(&start);
        }
        if let Some((_, end)) = self.ranges.range_mut(..len).next_back() {
            *end = (*end).min(len);
        }
    }

    /// Whether byte `at` lies in a range.
    pub fn contains(&self, at: u64) -> bool {
        self.ranges
            .range(..=at)
            .next_back()
            .is_some_and(|(_, end)| at < *end)
    }

    /// Whether there is no range.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges, in order.
    #[cfg(test)]
    pub fn to_vec(&self) -> Vec<(u64, u64)> {
        self.ranges.iter().map(|(s, e)| (*s, *e)).collect()
    }
}

/// How an operation reached the durable image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Landing {
    /// Through a successful fsync of its file (or a directory sync, for a name operation).
    Synced,
    /// Without one: writeback, a crash, a failed fsync.
    Unsynced,
}

/// A corruption and the damage of it that no fsync has vouched for yet.
#[derive(Clone, Debug)]
struct Damage {
    corruption: Corruption,
    inode: InodeId,
    /// Offsets of the flipped bytes that lay in never-fsynced bytes and that no write has
    /// overwritten since; a successful fsync of the file turns them into damaged synced data.
    unsynced_bytes: Vec<u64>,
}

/// The provenance of one disk's durable image.
#[derive(Clone, Debug, Default)]
pub(crate) struct Provenance {
    /// Per file, the durable bytes that arrived without a successful fsync since the file's
    /// last one. Files without such bytes have no entry.
    unsynced: BTreeMap<InodeId, ByteRanges>,
    /// Every corruption of the disk, oldest first.
    damages: Vec<Damage>,
}

impl Provenance {
    /// Notes that data operation `op` reached the durable image, where its file was
    /// `len_before` bytes long before. An unsynced write marks its bytes (and the zeros it
    /// grew the file with) as never fsynced; any write overwrites the damage under it; a
    /// truncate drops what lies past the new end and marks the zeros it grew the file with.
    pub fn landed(&mut self, op: &PendingOp, len_before: u64, landing: Landing) {
        let (inode, start, end) = match op {
            PendingOp::Write {
                inode,
                offset,
                data,
            } => {
                let end = offset + data.len() as u64;
                self.overwritten(*inode, *offset, end);
                (*inode, (*offset).min(len_before), end)
            }
            PendingOp::Truncate { inode, len } => {
                self.truncated(*inode, *len);
                (*inode, len_before, *len)
            }
            _ => return,
        };
        if landing == Landing::Unsynced && start < end {
            self.unsynced.entry(inode).or_default().insert(start, end);
        }
    }

    fn overwritten(&mut self, inode: InodeId, start: u64, end: u64) {
        for damage in self.damages.iter_mut().filter(|d| d.inode == inode) {
            damage
                .unsynced_bytes
                .retain(|at| !(start..end).contains(at));
        }
    }

    fn truncated(&mut self, inode: InodeId, len: u64) {
        if let Some(ranges) = self.unsynced.get_mut(&inode) {
            ranges.clip(len);
            if ranges.is_empty() {
                self.unsynced.remove(&inode);
            }
        }
        for damage in self.damages.iter_mut().filter(|d| d.inode == inode) {
            damage.unsynced_bytes.retain(|at| *at < len);
        }
    }

    /// A successful fsync of `inode`: every durable byte of it is now vouched for, including
    /// flipped ones still on the disk. Returns how many flipped bytes that turned into damaged
    /// synced data.
    pub fn fsynced(&mut self, inode: InodeId) -> u64 {
        self.unsynced.remove(&inode);
        let mut bytes = 0;
        for damage in self.damages.iter_mut().filter(|d| d.inode == inode) {
            if !damage.unsynced_bytes.is_empty() {
                bytes += damage.unsynced_bytes.len() as u64;
                damage.unsynced_bytes.clear();
                damage.corruption.synced = true;
            }
        }
        bytes
    }

    /// Forgets the files for which `exists` is false (removed, replaced, or garbage collected):
    /// their bytes are gone, so no fsync can vouch for their damage any more.
    pub fn retain(&mut self, exists: impl Fn(InodeId) -> bool) {
        self.unsynced.retain(|inode, _| exists(*inode));
        for damage in self.damages.iter_mut().filter(|d| !exists(d.inode)) {
            damage.unsynced_bytes.clear();
        }
    }

    /// Records a corruption of `inode` that flipped bits in the bytes at `flipped` (offsets in
    /// the file); returns it with `synced` decided.
    pub fn corrupted(
        &mut self,
        inode: InodeId,
        flipped: &[u64],
        mut corruption: Corruption,
    ) -> Corruption {
        let never_fsynced = |at: &u64| self.unsynced.get(&inode).is_some_and(|r| r.contains(*at));
        let unsynced_bytes: Vec<u64> = flipped.iter().copied().filter(never_fsynced).collect();
        corruption.synced = unsynced_bytes.len() < flipped.len();
        self.damages.push(Damage {
            corruption: corruption.clone(),
            inode,
            unsynced_bytes,
        });
        corruption
    }

    /// Every corruption of the disk, oldest first, with `synced` as it stands now.
    pub fn corruptions(&self) -> Vec<Corruption> {
        self.damages.iter().map(|d| d.corruption.clone()).collect()
    }

    /// Checks that only stored files have ranges, within their length and never empty (a test
    /// helper).
    #[cfg(test)]
    pub fn check(&self, files: &BTreeMap<InodeId, Vec<u8>>, step: usize) {
        for (inode, ranges) in &self.unsynced {
            let len = files.get(inode).map(Vec::len);
            assert!(
                len.is_some(),
                "ranges of a dropped file {inode}, step {step}"
            );
            let last_end = ranges.ranges.values().next_back().copied();
            assert!(last_end.is_some(), "empty ranges of {inode}, step {step}");
            assert!(
                last_end <= len.map(|len| len as u64),
                "ranges of {inode} past its end, step {step}"
            );
        }
    }

    /// The never-fsynced ranges of `inode`.
    #[cfg(test)]
    pub fn unsynced_of(&self, inode: InodeId) -> Vec<(u64, u64)> {
        self.unsynced
            .get(&inode)
            .map_or_else(Vec::new, ByteRanges::to_vec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(pairs: &[(u64, u64)]) -> ByteRanges {
        let mut ranges = ByteRanges::default();
        pairs.iter().for_each(|(s, e)| ranges.insert(*s, *e));
        ranges
    }

    #[test]
    fn byte_ranges_merge_overlapping_and_adjacent_ranges() {
        assert_eq!(ranges(&[(0, 4), (4, 8)]).to_vec(), vec![(0, 8)]);
        assert_eq!(ranges(&[(0, 4), (6, 8)]).to_vec(), vec![(0, 4), (6, 8)]);
        assert_eq!(ranges(&[(0, 4), (6, 8), (3, 7)]).to_vec(), vec![(0, 8)]);
        assert_eq!(ranges(&[(2, 3), (6, 8), (0, 10)]).to_vec(), vec![(0, 10)]);
        assert_eq!(
            ranges(&[(5, 6), (1, 2), (3, 3)]).to_vec(),
            vec![(1, 2), (5, 6)]
        );
    }

    #[test]
    fn byte_ranges_clip_and_contain() {
        let mut clipped = ranges(&[(0, 4), (6, 10), (12, 14)]);
        clipped.clip(8);
        assert_eq!(clipped.to_vec(), vec![(0, 4), (6, 8)]);
        clipped.clip(6);
        assert_eq!(clipped.to_vec(), vec![(0, 4)]);
        assert!(clipped.contains(0) && clipped.contains(3));
        assert!(!clipped.contains(4) && !clipped.contains(100));
        clipped.clip(0);
        assert!(clipped.is_empty());
    }

    fn write(offset: u64, len: usize) -> PendingOp {
        PendingOp::Write {
            inode: 1,
            offset,
            data: vec![1; len],
        }
    }

    fn corruption() -> Corruption {
        Corruption {
            path: "f".into(),
            sector: 0,
            bits: 1,
            synced: false,
        }
    }

    #[test]
    fn unsynced_writes_and_growth_are_marked_until_a_successful_fsync() {
        let mut provenance = Provenance::default();
        provenance.landed(&write(0, 4), 0, Landing::Synced);
        assert_eq!(provenance.unsynced_of(1), vec![]);
        // A write past the end also lands the zeros before it.
        provenance.landed(&write(8, 2), 4, Landing::Unsynced);
        assert_eq!(provenance.unsynced_of(1), vec![(4, 10)]);
        let grow = PendingOp::Truncate { inode: 1, len: 16 };
        provenance.landed(&grow, 10, Landing::Unsynced);
        assert_eq!(provenance.unsynced_of(1), vec![(4, 16)]);
        let shrink = PendingOp::Truncate { inode: 1, len: 6 };
        provenance.landed(&shrink, 16, Landing::Synced);
        assert_eq!(provenance.unsynced_of(1), vec![(4, 6)]);
        assert_eq!(provenance.fsynced(1), 0);
        assert_eq!(provenance.unsynced_of(1), vec![]);
    }

    #[test]
    fn damage_to_unsynced_bytes_becomes_synced_at_the_next_fsync_unless_overwritten() {
        let mut provenance = Provenance::default();
        provenance.landed(&write(0, 8), 0, Landing::Synced);
        provenance.landed(&write(8, 8), 8, Landing::Unsynced);
        let hit_synced = provenance.corrupted(1, &[3, 9], corruption());
        assert!(hit_synced.synced, "byte 3 was fsynced");
        let hit_unsynced = provenance.corrupted(1, &[9, 12], corruption());
        assert!(!hit_unsynced.synced);
        let healed = provenance.corrupted(1, &[14], corruption());
        assert!(!healed.synced);
        provenance.landed(&write(13, 3), 16, Landing::Synced);
        assert_eq!(provenance.fsynced(1), 3, "bytes 9 (twice) and 12");
        let synced: Vec<bool> = provenance.corruptions().iter().map(|c| c.synced).collect();
        assert_eq!(
            synced,
            vec![true, true, false],
            "byte 14 was overwritten first"
        );
    }

    #[test]
    fn removed_files_take_their_ranges_and_pending_damage_with_them() {
        let mut provenance = Provenance::default();
        provenance.landed(&write(0, 8), 0, Landing::Unsynced);
        provenance.corrupted(1, &[2], corruption());
        provenance.retain(|inode| inode != 1);
        assert_eq!(provenance.unsynced_of(1), vec![]);
        assert_eq!(provenance.fsynced(1), 0);
        assert!(!provenance.corruptions()[0].synced);
    }
}
