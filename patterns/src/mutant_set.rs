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

/// A mutant name that is not one of a pattern's mutants.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {pattern} mutant `{name}`")]
pub struct UnknownMutant {
    /// The pattern whose mutants were searched.
    pub pattern: &'static str,
    /// The name that was given.
    pub name: String,
}

/// `Display` (the kebab-case name) and `FromStr` (back from it, or [`UnknownMutant`]) for a
/// pattern's mutant enum with `all()` and `as_str()`.
macro_rules! mutant_names {
    ($mutant:ty, $pattern:literal) => {
        impl std::fmt::Display for $mutant {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $mutant {
            type Err = $crate::mutant_set::UnknownMutant;

            fn from_str(name: &str) -> Result<Self, Self::Err> {
                <$mutant>::all()
                    .iter()
                    .copied()
                    .find(|mutant| mutant.as_str() == name)
                    .ok_or_else(|| $crate::mutant_set::UnknownMutant {
                        pattern: $pattern,
                        name: name.to_owned(),
                    })
            }
        }
    };
}
pub(crate) use mutant_names;
