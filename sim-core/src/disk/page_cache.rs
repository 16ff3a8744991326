//! The page cache of one disk: its unsynced operations, oldest first, with the indexes that
//! keep an fsync proportional to the file's own operations and a directory sync proportional
//! to the name operations.

use super::image::{InodeId, PendingOp};
use std::collections::{BTreeMap, BTreeSet};

/// Unsynced operations in the order they were issued.
#[derive(Clone, Debug, Default)]
pub(crate) struct PageCache {
    /// Operations by sequence number (issue order).
    ops: BTreeMap<u64, PendingOp>,
    next_seq: u64,
    /// Bytes of writes held.
    bytes: u64,
    /// Operations per inode, so that deciding whether an inode is garbage needs no scan.
    refs: BTreeMap<InodeId, usize>,
    /// Sequence numbers of each inode's writes and truncates.
    data_seqs: BTreeMap<InodeId, BTreeSet<u64>>,
    /// Sequence numbers of the name operations.
    name_seqs: BTreeSet<u64>,
}

impl PageCache {
    /// How many operations it holds.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Bytes of writes it holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether any operation is about `inode`.
    pub fn references(&self, inode: InodeId) -> bool {
        self.refs.contains_key(&inode)
    }

    /// The operations, oldest first.
    #[cfg(test)]
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &PendingOp> {
        self.ops.values()
    }

    /// Adds the newest operation.
    pub fn push(&mut self, op: PendingOp) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += op.payload_bytes();
        *self.refs.entry(op.inode()).or_default() += 1;
        if op.is_data() {
            self.data_seqs.entry(op.inode()).or_default().insert(seq);
        } else {
            self.name_seqs.insert(seq);
        }
        self.ops.insert(seq, op);
    }

    /// Takes operation `seq`.
    fn take(&mut self, seq: u64) -> PendingOp {
        let op = self.ops.remove(&seq).expect("a pending sequence number");
        self.bytes -= op.payload_bytes();
        let inode = op.inode();
        let refs = self.refs.get_mut(&inode).expect("counted");
        *refs -= 1;
        if *refs == 0 {
            self.refs.remove(&inode);
        }
        if op.is_data() {
            let seqs = self.data_seqs.get_mut(&inode).expect("indexed");
            seqs.remove(&seq);
            if seqs.is_empty() {
                self.data_seqs.remove(&inode);
            }
        } else {
            self.name_seqs.remove(&seq);
        }
        op
    }

    /// Takes the oldest operation.
    pub fn pop_oldest(&mut self) -> Option<PendingOp> {
        let seq = *self.ops.keys().next()?;
        Some(self.take(seq))
    }

    /// The writes and truncates of `inode`, oldest first.
    pub fn data_of(&self, inode: InodeId) -> impl Iterator<Item = &PendingOp> {
        self.data_seqs
            .get(&inode)
            .into_iter()
            .flatten()
            .map(|seq| &self.ops[seq])
    }

    /// Takes the writes and truncates of `inode`, oldest first.
    pub fn take_data_of(&mut self, inode: InodeId) -> Vec<PendingOp> {
        let seqs: Vec<u64> = self
            .data_seqs
            .get(&inode)
            .map_or_else(Vec::new, |seqs| seqs.iter().copied().collect());
        seqs.into_iter().map(|seq| self.take(seq)).collect()
    }

    /// The name operations with their sequence numbers, newest first.
    pub fn names_newest_first(&self) -> impl Iterator<Item = (u64, &PendingOp)> {
        self.name_seqs
            .iter()
            .rev()
            .map(|seq| (*seq, &self.ops[seq]))
    }

    /// Takes the operations `seqs` (in increasing order).
    pub fn take_seqs(&mut self, seqs: &[u64]) -> Vec<PendingOp> {
        seqs.iter().map(|seq| self.take(*seq)).collect()
    }

    /// Takes every operation, oldest first.
    pub fn drain(&mut self) -> Vec<PendingOp> {
        let ops = std::mem::take(&mut self.ops);
        *self = PageCache {
            next_seq: self.next_seq,
            ..PageCache::default()
        };
        ops.into_values().collect()
    }

    /// Checks the indexes against the operations (a test helper).
    #[cfg(test)]
    pub fn check(&self) {
        let mut rebuilt = PageCache {
            next_seq: self.next_seq,
            ..PageCache::default()
        };
        for (seq, op) in &self.ops {
            assert!(*seq < self.next_seq);
            rebuilt.next_seq = *seq;
            rebuilt.push(op.clone());
        }
        assert_eq!(rebuilt.ops, self.ops);
        assert_eq!(rebuilt.bytes, self.bytes);
        assert_eq!(rebuilt.refs, self.refs);
        assert_eq!(rebuilt.data_seqs, self.data_seqs);
        assert_eq!(rebuilt.name_seqs, self.name_seqs);
    }
}
