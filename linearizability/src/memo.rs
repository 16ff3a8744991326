//! The memo of explored configurations: sets of operations as compact bit sets, and a hash
//! table of groups (the same completed set and state), each holding its indeterminate sets
//! in ascending order for the dominance check.
//!
//! A look-up hashes the completed set in place (no key is built unless the configuration is
//! new) and scans one group, so its cost does not grow with the memo. The scan visits a
//! group's sets in the same ascending order, and so counts the same comparisons, as the
//! ordered set of (completed, state, open) keys this replaced: the steps, and with them every
//! answer, are the same.

// Looked up, never iterated: the table's order never shows (see `hash`).
#[allow(clippy::disallowed_types)]
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::size_of;

/// A fixed-size set of operation indices that keeps its compact key cheap: operations are
/// numbered in call order and the search linearizes roughly in that order, so the set is
/// mostly a run of full words, a few mixed words, then zero words.
pub(crate) struct BitSet {
    words: Vec<u64>,
    /// How many leading words are full.
    full_words: usize,
    /// How many leading words hold every set bit (the rest are zero).
    used_words: usize,
}

impl BitSet {
    pub(crate) fn new(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(64)],
            full_words: 0,
            used_words: 0,
        }
    }

    pub(crate) fn set(&mut self, index: usize, member: bool) {
        let (word, bit) = (index / 64, 1 << (index % 64));
        if member {
            self.words[word] |= bit;
            self.used_words = self.used_words.max(word + 1);
            while self.full_words < self.words.len() && self.words[self.full_words] == u64::MAX {
                self.full_words += 1;
            }
        } else {
            self.words[word] &= !bit;
            self.full_words = self.full_words.min(word);
            while self.used_words > 0 && self.words[self.used_words - 1] == 0 {
                self.used_words -= 1;
            }
        }
    }

    /// The words after the leading full ones, up to the last used one.
    fn rest(&self) -> &[u64] {
        &self.words[self.full_words..self.used_words.max(self.full_words)]
    }

    /// The used words: a key for sets with no long full prefix.
    fn trimmed(&self) -> &[u64] {
        &self.words[..self.used_words]
    }
}

/// Whether the trimmed set `small` is a subset of the trimmed set `large`.
fn is_subset(small: &[u64], large: &[u64]) -> bool {
    small.len() <= large.len() && small.iter().zip(large).all(|(s, l)| s & !l == 0)
}

/// A run of `Memo::words`.
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
}

/// No group or entry: the end of a chain.
const NONE: usize = usize::MAX;

/// The explored configurations with one completed set and one state.
struct Group {
    state: u32,
    /// The completed set: its count of leading full words, then the rest.
    full_words: usize,
    completed: Span,
    /// The first of the group's entries, in ascending order of their indeterminate sets.
    first: usize,
    /// The next group whose hash is the same.
    next: usize,
}

/// One explored configuration of a group: its linearized indeterminate operations (trimmed).
struct Entry {
    open: Span,
    /// The next entry of the group.
    next: usize,
}

/// The bytes a memo entry costs beyond its key's inline size: the table's and the groups'
/// share of spare slots. Part of the estimate that the byte budget is checked against.
pub(crate) const MEMO_ENTRY_OVERHEAD_BYTES: usize = 16;

/// The inline size of one entry in the estimate: a completed key, a state id and an open
/// set (what an entry of the ordered set this memo replaced held; the estimate is kept, so
/// that byte budgets give the same answers as before).
const MEMO_ENTRY_INLINE_BYTES: usize = size_of::<(usize, Box<[u64]>, u32, Box<[u64]>)>();

/// Explored configurations (completed set, state, indeterminate set), grouped by completed
/// set and state and found through a hash of both (groups whose hashes collide are
/// chained). Groups, entries and the words of their sets live in three growing vectors, so
/// recording a configuration allocates nothing of its own.
#[derive(Default)]
#[allow(clippy::disallowed_types)]
pub(crate) struct Memo {
    /// A hash of (completed set, state) to the first group with that hash.
    index: HashMap<u64, usize, FixedState>,
    groups: Vec<Group>,
    entries: Vec<Entry>,
    words: Vec<u64>,
    bytes: usize,
}

impl Memo {
    /// How many configurations are recorded.
    pub(crate) fn entries(&self) -> usize {
        self.entries.len()
    }

    /// The estimated bytes the recorded configurations hold.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    fn span(&self, span: Span) -> &[u64] {
        &self.words[span.start..span.start + span.len]
    }

    fn store(&mut self, words: &[u64]) -> Span {
        let start = self.words.len();
        self.words.extend_from_slice(words);
        Span {
            start,
            len: words.len(),
        }
    }

    /// The group of (`completed`, `state`), made if there is none.
    fn group(&mut self, completed: &BitSet, state: u32) -> usize {
        let slot = self.index.entry(hash(completed, state)).or_insert(NONE);
        let mut last = NONE;
        let mut at = *slot;
        while at != NONE {
            let group = &self.groups[at];
            if group.state == state
                && group.full_words == completed.full_words
                && self.words[group.completed.start..][..group.completed.len] == *completed.rest()
            {
                return at;
            }
            last = at;
            at = group.next;
        }
        let index = self.groups.len();
        if last == NONE {
            *slot = index;
        } else {
            self.groups[last].next = index;
        }
        let completed_span = self.store(completed.rest());
        self.groups.push(Group {
            state,
            full_words: completed.full_words,
            completed: completed_span,
            first: NONE,
            next: NONE,
        });
        index
    }

    /// Records the configuration (`completed`, `state`, `open`) unless a recorded one covers
    /// it: the same completed set and state, and a subset of `open`. Returns whether it was
    /// new, and how many recorded configurations it was compared with (in ascending order of
    /// their indeterminate sets, up to the first that covers it).
    pub(crate) fn insert(&mut self, completed: &BitSet, state: u32, open: &BitSet) -> (bool, u64) {
        let open = open.trimmed();
        let group = self.group(completed, state);
        let mut compared = 0;
        // The last entry below `open`, after which it goes.
        let mut below = NONE;
        let mut at = self.groups[group].first;
        while at != NONE {
            let seen = self.span(self.entries[at].open);
            compared += 1;
            if is_subset(seen, open) {
                return (false, compared);
            }
            // Not covered, so not recorded either (a set is a subset of itself).
            if seen < open {
                below = at;
            }
            at = self.entries[at].next;
        }
        let entry = Entry {
            open: self.store(open),
            next: match below {
                NONE => self.groups[group].first,
                below => self.entries[below].next,
            },
        };
        let index = self.entries.len();
        self.entries.push(entry);
        match below {
            NONE => self.groups[group].first = index,
            below => self.entries[below].next = index,
        }
        self.bytes += MEMO_ENTRY_INLINE_BYTES
            + size_of::<u64>() * (self.groups[group].completed.len + open.len())
            + MEMO_ENTRY_OVERHEAD_BYTES;
        (true, compared)
    }
}

/// A hash of a completed set and a state (FxHash's mix; [`FixedState`] spreads it). Fixed,
/// so the table behaves the same on every run; it is only looked up, never iterated, so its
/// order never matters.
fn hash(completed: &BitSet, state: u32) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mix = |hash: u64, word: u64| (hash.rotate_left(5) ^ word).wrapping_mul(K);
    let mut hash = mix(mix(0, u64::from(state)), completed.full_words as u64);
    for &word in completed.rest() {
        hash = mix(hash, word);
    }
    hash
}

/// The hasher of tables keyed by a `u64`: a fixed avalanche (MurmurHash3's finalizer), so
/// that every bit of the hash depends on every bit of the key; no random seed.
pub(crate) type FixedState = BuildHasherDefault<Avalanche>;

/// See [`FixedState`].
#[derive(Default)]
pub(crate) struct Avalanche(u64);

impl Hasher for Avalanche {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _bytes: &[u8]) {
        unreachable!("only u64 keys are hashed");
    }

    fn write_u64(&mut self, key: u64) {
        let mut hash = key ^ (key >> 33);
        hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
        hash ^= hash >> 33;
        hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        self.0 = hash ^ (hash >> 33);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitset_keeps_its_full_prefix_and_used_words() {
        let mut bits = BitSet::new(64 * 4);
        for i in 0..64 {
            bits.set(i, true);
        }
        bits.set(64 + 3, true);
        assert_eq!(bits.full_words, 1);
        assert_eq!(bits.rest(), &[1 << 3]);
        bits.set(64 + 3, false);
        assert_eq!(bits.rest().len(), 0);
        bits.set(0, false);
        assert_eq!(bits.full_words, 0);
        assert_eq!(bits.rest(), &[u64::MAX - 1]);
        assert_eq!(bits.trimmed().len(), 1);
        bits.set(0, true);
        assert_eq!(bits.full_words, 1);
        for i in 0..64 {
            bits.set(i, false);
        }
        assert_eq!((bits.full_words, bits.trimmed().len()), (0, 0));
        bits.set(64 * 3 + 1, true);
        assert_eq!(bits.trimmed(), &[0, 0, 0, 2]);
    }

    #[test]
    fn subset_of_trimmed_sets() {
        assert!(is_subset(&[], &[]));
        assert!(is_subset(&[], &[5]));
        assert!(is_subset(&[0b01], &[0b11]));
        assert!(!is_subset(&[0b10], &[0b01]));
        assert!(!is_subset(&[0, 1], &[u64::MAX]));
    }

    fn set(len: usize, members: &[usize]) -> BitSet {
        let mut bits = BitSet::new(len);
        for &member in members {
            bits.set(member, true);
        }
        bits
    }

    #[test]
    fn a_configuration_is_covered_by_one_with_fewer_indeterminate_operations() {
        // Goal: the dominance rule, counted comparisons included.
        let mut memo = Memo::default();
        let completed = set(10, &[0, 1]);
        assert_eq!(memo.insert(&completed, 0, &set(4, &[1, 2])), (true, 0));
        assert_eq!(memo.insert(&completed, 0, &set(4, &[0])), (true, 1));
        // Ascending: {0} = [1] comes before {1, 2} = [6]; {0} is not a subset, {1, 2} is.
        assert_eq!(memo.insert(&completed, 0, &set(4, &[1, 2, 3])), (false, 2));
        assert_eq!(memo.insert(&completed, 0, &set(4, &[0, 3])), (false, 1));
        // Another state or completed set is another group.
        assert_eq!(memo.insert(&completed, 1, &set(4, &[1, 2, 3])), (true, 0));
        assert_eq!(memo.insert(&set(10, &[0]), 0, &set(4, &[1, 2])), (true, 0));
        assert_eq!(memo.entries(), 4);
        assert!(memo.bytes() >= 4 * MEMO_ENTRY_OVERHEAD_BYTES);
    }
}
