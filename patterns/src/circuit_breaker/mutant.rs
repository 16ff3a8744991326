//! Deliberately broken variants of the breaker, each mirroring a real bug.
//!
//! A mutant is switched on at run time through [`Config::mutants`](super::Config::mutants), in
//! simulation builds only (`--cfg madsim`); all are off by default. The simulation scenario
//! and the model-based test must catch every one of them: a mutant that survives means a
//! missing invariant or a workload that cannot reach the bug.

// The enum exists in every build, so that the breaker's `has_mutant` calls compile everywhere;
// its names (`Debug`, serde, `as_str`, `description`, `Display`, `FromStr`) only in simulation
// builds, where a configuration can switch a mutant on. In a production build `Mutants` is
// always empty (see `crate::mutant_set`).

/// A named, deliberately broken variant of the breaker.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(madsim, derive(Debug, serde::Serialize, serde::Deserialize))]
#[cfg_attr(madsim, serde(rename_all = "snake_case"))]
pub enum Mutant {
    /// Half-open admits every call instead of at most the permitted number of probes.
    HalfOpenUnbounded,
    /// A late success from an older epoch closes a half-open breaker.
    StaleEpochCloses,
    /// A window bucket's failure counters are not zeroed when the bucket is evicted.
    BucketNotReset,
    /// The open wait is measured on the wall clock instead of the monotonic clock.
    OpenWaitWallClock,
    /// Half-open ignores its maximum wait and never gets back the slot of a released or ignored
    /// probe, so a probe that never returns keeps it half-open for ever.
    HalfOpenStuck,
    /// An ignored probe neither records an outcome nor gives its slot back: the ignored error
    /// consumes the trial.
    IgnoredProbeKeepsSlot,
    /// Half-open records an ignored outcome as a failure, so an error the configuration ignores
    /// reopens the breaker.
    IgnoredProbeFails,
    /// A probe released in half-open gives a slot back whatever epoch it was admitted in, so a
    /// probe abandoned from an earlier half-open epoch lets an extra probe through.
    StaleReleaseFreesSlot,
    /// The backoff of the open wait is computed as `initial x multiplier^openings` in signed
    /// 64-bit nanoseconds and capped only afterwards: after enough consecutive openings the
    /// product overflows and the open wait collapses to nothing.
    BackoffOverflows,
    /// A probe's ignored outcome skips the epoch check: a probe that comes back ignored after
    /// its half-open epoch ended is taken as an ignored call of the current epoch instead of
    /// a stale outcome.
    IgnoredProbeSkipsEpochCheck,
}

/// Every mutant, in a fixed order.
#[cfg(madsim)]
const ALL: [Mutant; 10] = [
    Mutant::HalfOpenUnbounded,
    Mutant::StaleEpochCloses,
    Mutant::BucketNotReset,
    Mutant::OpenWaitWallClock,
    Mutant::HalfOpenStuck,
    Mutant::IgnoredProbeKeepsSlot,
    Mutant::IgnoredProbeFails,
    Mutant::StaleReleaseFreesSlot,
    Mutant::BackoffOverflows,
    Mutant::IgnoredProbeSkipsEpochCheck,
];

#[cfg(madsim)]
impl Mutant {
    /// Every mutant, in a fixed order.
    pub fn all() -> &'static [Mutant] {
        &ALL
    }

    /// The mutant's name, as accepted by [`FromStr`](std::str::FromStr) and the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Mutant::HalfOpenUnbounded => "half_open_unbounded",
            Mutant::StaleEpochCloses => "stale_epoch_closes",
            Mutant::BucketNotReset => "bucket_not_reset",
            Mutant::OpenWaitWallClock => "open_wait_wall_clock",
            Mutant::HalfOpenStuck => "half_open_stuck",
            Mutant::IgnoredProbeKeepsSlot => "ignored_probe_keeps_slot",
            Mutant::IgnoredProbeFails => "ignored_probe_fails",
            Mutant::StaleReleaseFreesSlot => "stale_release_frees_slot",
            Mutant::BackoffOverflows => "backoff_overflows",
            Mutant::IgnoredProbeSkipsEpochCheck => "ignored_probe_skips_epoch_check",
        }
    }

    /// What the mutant breaks and the real bug it mirrors.
    pub fn description(self) -> &'static str {
        match self {
            Mutant::HalfOpenUnbounded => {
                "half-open admits unbounded probes instead of the permitted number \
                 (resilience4j#1432, Polly#216; failsafe-rs admits every call in half-open)"
            }
            Mutant::StaleEpochCloses => {
                "a late success from a call admitted in an older epoch closes a half-open \
                 breaker (Polly#217, fixed in Polly PR #223; Hystrix#1350)"
            }
            Mutant::BucketNotReset => {
                "an evicted window bucket keeps its failure counters, so the window's totals \
                 drift and the breaker opens or fails to open at the wrong time \
                 (resilience4j#1262 / PR #1263, #1335)"
            }
            Mutant::OpenWaitWallClock => {
                "the open wait is measured on the wall clock, so a wall-clock jump shortens or \
                 stretches it (etcd#12291-style clock confusion; CB-S6)"
            }
            Mutant::HalfOpenStuck => {
                "half-open stays for ever when a probe never returns: the maximum wait in \
                 half-open and the slot of a released or ignored probe are ignored \
                 (resilience4j#903, #935)"
            }
            Mutant::IgnoredProbeKeepsSlot => {
                "an ignored outcome of a half-open probe is neither recorded nor given back, so \
                 the ignored error consumes the trial and half-open refuses every later probe \
                 (resilience4j#544, Polly#311 and #1979)"
            }
            Mutant::IgnoredProbeFails => {
                "half-open records an ignored outcome as a failure, so an error the \
                 configuration ignores reopens the breaker (Hystrix#1610 and #674, Polly#311, \
                 smallrye-fault-tolerance#320)"
            }
            Mutant::StaleReleaseFreesSlot => {
                "a probe released in half-open gives a slot back whatever epoch it was admitted \
                 in, so a probe abandoned from an earlier half-open epoch lets an extra probe \
                 through (failsafe#391: `releasePermit` in half-open frees a slot for any \
                 permit, not only for one of the current half-open state)"
            }
            Mutant::BackoffOverflows => {
                "the open wait's backoff is computed as initial x multiplier^openings in signed \
                 64-bit nanoseconds and capped only afterwards, so after enough consecutive \
                 openings it overflows and the open wait collapses (onos-lib-go PR #127: \
                 \"after about 40 retries ... the duration overflows to negative values, and \
                 then retry happens after 0ms\"; carlescere/goback#5)"
            }
            Mutant::IgnoredProbeSkipsEpochCheck => {
                "a probe's ignored outcome returns before the epoch is checked, so a probe \
                 that comes back ignored after its half-open epoch ended (the breaker has \
                 reopened) is taken as an ignored call of the current epoch, not as a stale \
                 outcome (resilience4j#544 and PR #545: ignored errors take a path of their \
                 own that acts on whatever state is current; Polly#218: results of \
                 'overhanging' calls that return to a breaker in another state)"
            }
        }
    }
}

#[cfg(madsim)]
impl std::fmt::Display for Mutant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A mutant name that names no mutant.
#[cfg(madsim)]
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown circuit-breaker mutant `{name}` (known: half_open_unbounded, stale_epoch_closes, bucket_not_reset, open_wait_wall_clock, half_open_stuck, ignored_probe_keeps_slot, ignored_probe_fails, stale_release_frees_slot, backoff_overflows, ignored_probe_skips_epoch_check)")]
pub struct UnknownMutant {
    /// The name that was given.
    pub name: String,
}

#[cfg(madsim)]
impl std::str::FromStr for Mutant {
    type Err = UnknownMutant;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        ALL.iter()
            .copied()
            .find(|mutant| mutant.as_str() == name)
            .ok_or_else(|| UnknownMutant {
                name: name.to_owned(),
            })
    }
}

/// The set of the breaker's mutants switched on (none by default; none ever in a production
/// build).
pub type Mutants = crate::mutant_set::MutantSet<Mutant>;
