//! The set of a pattern's mutants switched on, shared by every pattern's `Mutants`.
//!
//! Mutants exist only in simulation builds. This module and the patterns' `mutant.rs` files
//! are the only places that switch on `cfg(madsim)` for them: the code that consults a mutant
//! (`config.mutants.contains(Mutant::X)`, a `&Mutants` parameter) is the same in both builds.
//! - Under `--cfg madsim` (every build of this workspace), a [`MutantSet`] holds the mutants a
//!   test switched on, and each pattern's `Mutant` enum has its names, descriptions, `Display`,
//!   `FromStr` and serde form.
//! - Without it (a production build), a [`MutantSet`] is zero-sized and always empty, with no
//!   way to switch a mutant on; [`MutantSet::contains`] is a constant `false` that the
//!   optimizer folds, so the mutant branches are compiled out, and the `Mutant` enums carry no
//!   names: the binary holds neither the bugs nor their names.

#[cfg(madsim)]
pub use sim::MutantSet;

#[cfg(not(madsim))]
pub use real::MutantSet;

/// Simulation builds: the mutants a test switched on.
#[cfg(madsim)]
mod sim {
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeSet;

    /// The mutants of one pattern switched on; empty (the correct code) by default.
    ///
    /// In simulation builds (`--cfg madsim`) it is a set that tests and scenarios fill with
    /// [`only`](Self::only) and [`insert`](Self::insert), serialized as the list of the
    /// mutants' names. In production builds it is zero-sized and always empty: `contains` is
    /// a constant `false`, `only` and `insert` do not exist, and it serializes as an empty
    /// list and accepts only an empty list (see the [module](super) docs).
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
}

/// Production builds: no mutant can be switched on.
#[cfg(not(madsim))]
mod real {
    use serde::de::{self, IgnoredAny, SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::fmt;
    use std::marker::PhantomData;

    /// Why a non-empty list of mutants is refused.
    const SIMULATION_ONLY: &str = "mutants exist only in simulation builds (`--cfg madsim`); \
                                   this build accepts only an empty list of mutants";

    /// The mutants of one pattern switched on: in this (production) build, none, ever.
    ///
    /// In production builds (no `--cfg madsim`) it is zero-sized and always empty:
    /// [`contains`](Self::contains) is a constant `false`, so the optimizer drops every mutant
    /// branch; there is no `only` or `insert`; it serializes as an empty list and accepts only
    /// an empty list. In simulation builds it is the set of the mutants a test switched on
    /// (see the [module](super) docs).
    pub struct MutantSet<M: Ord>(PhantomData<M>);

    // Written by hand rather than derived: a derive would ask `M` for the same trait, and the
    // `Mutant` enums have no `Debug` here (it would carry their names). Not `Copy`, as in
    // simulation builds, so the same `.clone()` calls are right in both.
    impl<M: Ord> Clone for MutantSet<M> {
        fn clone(&self) -> Self {
            MutantSet(PhantomData)
        }
    }

    impl<M: Ord> fmt::Debug for MutantSet<M> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("MutantSet({})")
        }
    }

    impl<M: Ord> PartialEq for MutantSet<M> {
        fn eq(&self, _: &Self) -> bool {
            true
        }
    }

    impl<M: Ord> Eq for MutantSet<M> {}

    impl<M: Ord> Default for MutantSet<M> {
        fn default() -> Self {
            MutantSet(PhantomData)
        }
    }

    impl<M: Ord + Copy> MutantSet<M> {
        /// No mutant: the correct behaviour (the only value in a production build).
        #[inline(always)]
        pub fn none() -> Self {
            MutantSet(PhantomData)
        }

        /// Whether `mutant` is switched on: never, in a production build.
        #[inline(always)]
        pub fn contains(&self, _mutant: M) -> bool {
            false
        }

        /// The mutants switched on: none.
        #[inline(always)]
        pub fn iter(&self) -> impl Iterator<Item = M> + '_ {
            std::iter::empty()
        }

        /// Whether no mutant is switched on: always.
        #[inline(always)]
        pub fn is_empty(&self) -> bool {
            true
        }
    }

    impl<M: Ord> Serialize for MutantSet<M> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_seq(Some(0))?.end()
        }
    }

    impl<'de, M: Ord> Deserialize<'de> for MutantSet<M> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_seq(EmptyList(PhantomData))
        }
    }

    /// Accepts an empty sequence only.
    struct EmptyList<M: Ord>(PhantomData<M>);

    impl<'de, M: Ord> Visitor<'de> for EmptyList<M> {
        type Value = MutantSet<M>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an empty list of mutants")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            // The length first, where the format gives it (postcard does), so a non-empty list
            // gets this error and not the format's refusal to skip an element it cannot name.
            let non_empty = seq.size_hint().is_some_and(|len| len > 0)
                || seq.next_element::<IgnoredAny>()?.is_some();
            if non_empty {
                return Err(de::Error::custom(SIMULATION_ONLY));
            }
            Ok(MutantSet(PhantomData))
        }
    }
}

/// A mutant name that is not one of a pattern's mutants (simulation builds only).
#[cfg(madsim)]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {pattern} mutant `{name}`")]
pub struct UnknownMutant {
    /// The pattern whose mutants were searched.
    pub pattern: &'static str,
    /// The name that was given.
    pub name: String,
}

/// `Display` (the kebab-case name) and `FromStr` (back from it, or [`UnknownMutant`]) for a
/// pattern's mutant enum with `all()` and `as_str()`. Both impls exist in simulation builds
/// only, like the names they carry.
macro_rules! mutant_names {
    ($mutant:ty, $pattern:literal) => {
        #[cfg(madsim)]
        impl std::fmt::Display for $mutant {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        #[cfg(madsim)]
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

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::MutantSet;

    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Mutant {
        Broken,
    }

    #[test]
    fn production_set_is_empty_zero_sized_and_serializes_as_an_empty_list() {
        let set = MutantSet::<Mutant>::none();
        assert_eq!(std::mem::size_of::<MutantSet<Mutant>>(), 0);
        assert!(!set.contains(Mutant::Broken));
        assert!(set.is_empty());
        assert_eq!(set.iter().count(), 0);
        assert_eq!(set, MutantSet::default());
        assert_eq!(serde_json::to_string(&set).unwrap(), "[]");
        assert_eq!(postcard::to_allocvec(&set).unwrap(), [0]);
    }

    #[test]
    fn production_set_accepts_only_an_empty_list() {
        let empty: MutantSet<Mutant> = serde_json::from_str("[]").unwrap();
        assert!(empty.is_empty());
        let empty: MutantSet<Mutant> = postcard::from_bytes(&[0]).unwrap();
        assert!(empty.is_empty());
        let error = serde_json::from_str::<MutantSet<Mutant>>(r#"["ack-before-fsync"]"#)
            .expect_err("a mutant in a production build");
        assert!(
            error.to_string().contains("only in simulation builds"),
            "{error}"
        );
        let error = serde_json::from_str::<MutantSet<Mutant>>("{}").expect_err("not a list");
        assert!(
            error.to_string().contains("an empty list of mutants"),
            "{error}"
        );
        // postcard: a list of one name, refused by its length (postcard could not skip the
        // element: it does not describe its types), with this module's error, which postcard
        // reports as a custom one.
        let error = postcard::from_bytes::<MutantSet<Mutant>>(&[1, 1, b'x'])
            .expect_err("a mutant in a production build");
        assert_eq!(error, postcard::Error::SerdeDeCustom);
    }
}
