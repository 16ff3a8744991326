//! The set of a pattern's mutants switched on, shared by every pattern's `Mutants`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// The mutants of one pattern switched on; empty (the correct code) by default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MutantSet<M: Ord>(BTreeSet<M>);

impl<M: Ord> Default for MutantSet<M> {
    fn default() -> Self {
        MutantSet(BTreeSet::new())
    }
}

impl<M: Ord + Copy> MutantSet<M> {
    /// No mutant: the correct behaviour.
    pub fn none() -> Self {
        MutantSet::default()
    }

    /// Exactly one mutant switched on.
    pub fn only(mutant: M) -> Self {
        MutantSet(BTreeSet::from([mutant]))
    }

    /// Whether `mutant` is switched on.
    pub fn contains(&self, mutant: M) -> bool {
        self.0.contains(&mutant)
    }

    /// Switches `mutant` on.
    pub fn insert(&mut self, mutant: M) {
        self.0.insert(mutant);
    }

    /// The mutants switched on, in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = M> + '_ {
        self.0.iter().copied()
    }

    /// Whether no mutant is switched on.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
