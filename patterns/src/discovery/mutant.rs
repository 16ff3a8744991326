//! Deliberately broken variants of the discovery cores, each mirroring a real bug (see
//! `../shared/research/patterns.md`, section 3). Off by default.

// The enum exists in every build, so that the code consulting a mutant compiles everywhere;
// its names (`Debug`, serde, `as_str`, `Display`, `FromStr`) only in simulation builds: a
// production build's `Mutants` is always empty (see `crate::mutant_set`).
/// One mutant.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(madsim, derive(Debug, serde::Serialize, serde::Deserialize))]
pub enum Mutant {
    /// A replica that learns a lease by anti-entropy starts it afresh instead of keeping its
    /// age, so replicas that keep syncing keep a dead instance alive (etcd#9888).
    LeaseResetOnSync,
    /// Leases are measured on the wall clock: a clock jump expires live instances at once
    /// (etcd#12291).
    ExpiryOnWallClock,
    /// A heartbeat of a down incarnation (late, duplicated, or from before the instance was
    /// deregistered) brings the record back up (Consul#3703).
    StaleHeartbeatRevives,
    /// An empty answer replaces the client's cache, so a replica that knows nothing wipes it
    /// (Nacos#4470).
    EmptyAnswerWipesCache,
    /// A replica counts its own pause against every lease and evicts them all at once: after
    /// a stall its due lease check runs before it reads the renewals waiting in its inbox, and
    /// it does not discount the stall (Nacos#8090).
    EvictAfterPause,
    /// A registration replaces the record whatever its incarnation, so a late or duplicated
    /// registration of an earlier incarnation (from before a restart or a deregistration)
    /// brings it back (the conflict Eureka's `lastDirtyTimestamp` comparison exists for).
    StaleRegistrationAccepted,
    /// A resumed watch starts one event late: an off-by-one in the resume position loses the
    /// first event after the cursor.
    WatchResumeSkipsOne,
    /// A watch resync (the replica's whole state) replaces the client's cached records of the
    /// service instead of merging them by rank, so a resync from a replica that lags wipes or
    /// lowers what the cache knew (Nacos#4470).
    ResyncReplacesCache,
    /// A restarted replica restores its up records' leases without their renewal time
    /// (never stored): left at the clock's origin instead of now, every restored lease has
    /// already run out, and the first lease check after the restart expires live instances
    /// unless a renewal gets there first (etcd#2660: TTL keys lost when nodes restarted, fixed
    /// by refreshing every lease on recovery, etcd PR #4778).
    RestoredLeaseNotRefreshed,
}

#[cfg(madsim)]
impl Mutant {
    /// Every mutant, in a stable order.
    pub fn all() -> &'static [Mutant] {
        &[
            Mutant::LeaseResetOnSync,
            Mutant::ExpiryOnWallClock,
            Mutant::StaleHeartbeatRevives,
            Mutant::EmptyAnswerWipesCache,
            Mutant::EvictAfterPause,
            Mutant::StaleRegistrationAccepted,
            Mutant::WatchResumeSkipsOne,
            Mutant::ResyncReplacesCache,
            Mutant::RestoredLeaseNotRefreshed,
        ]
    }

    /// The mutant's name on command lines (kebab-case).
    pub fn as_str(self) -> &'static str {
        match self {
            Mutant::LeaseResetOnSync => "lease-reset-on-sync",
            Mutant::ExpiryOnWallClock => "expiry-on-wall-clock",
            Mutant::StaleHeartbeatRevives => "stale-heartbeat-revives",
            Mutant::EmptyAnswerWipesCache => "empty-answer-wipes-cache",
            Mutant::EvictAfterPause => "evict-after-pause",
            Mutant::StaleRegistrationAccepted => "stale-registration-accepted",
            Mutant::WatchResumeSkipsOne => "watch-resume-skips-one",
            Mutant::ResyncReplacesCache => "resync-replaces-cache",
            Mutant::RestoredLeaseNotRefreshed => "restored-lease-not-refreshed",
        }
    }
}

crate::mutant_set::mutant_names!(Mutant, "discovery");

/// A mutant name that is not one of [`Mutant::all`].
#[cfg(madsim)]
pub type UnknownMutant = crate::mutant_set::UnknownMutant;

/// The set of this pattern's mutants switched on (none in production).
pub type Mutants = crate::mutant_set::MutantSet<Mutant>;
