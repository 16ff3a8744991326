//! Deliberately broken variants of the CQRS cores and drivers, each mirroring a real bug (see
//! `../shared/research/patterns.md`, section 5). Off by default.

// The enum exists in every build, so that the code consulting a mutant compiles everywhere;
// its names (`Debug`, serde, `as_str`, `Display`, `FromStr`) only in simulation builds: a
// production build's `Mutants` is always empty (see `crate::mutant_set`).
/// One mutant.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(madsim, derive(Debug, serde::Serialize, serde::Deserialize))]
pub enum Mutant {
    /// The read model and its checkpoint are kept in two files, written one after the other:
    /// a crash between the two leaves data ahead of the checkpoint, and the restarted
    /// projection applies those events again (prooph/proophessor-do-symfony#17).
    CheckpointNotAtomic,
    /// A delivered event is applied without comparing its position with the checkpoint, so a
    /// duplicated or redelivered event is applied twice.
    DuplicateAppliedTwice,
    /// At the catch-up to live handover the projection takes the first live event as where
    /// live starts: if events between the catch-up's end and that event were lost on the
    /// way, they are skipped for good (KurrentDB#2356, occurrent PR #208).
    HandoverSkipsGap,
    /// The read-your-writes wait returns as soon as the projection has *received* the
    /// awaited position, before it has applied and stored it, and answers as fresh
    /// (marten#3166, fisher#102).
    RywWaitReturnsEarly,
    /// Queries are answered from the read model in memory, before it is stored: a restart
    /// brings back the stored, older one and the view goes back in time.
    ServesUnpersistedView,
    /// The command handler does not look for a retried command's events and gives every
    /// attempt fresh event ids: a command retried after a lost answer is applied twice.
    RetriedCommandNotDeduplicated,
    /// A withdrawal is appended without the expected version (no optimistic concurrency):
    /// two withdrawals validated against the same balance both land and overdraw.
    WithdrawSkipsVersionCheck,
    /// The rebuild path differs from the live path: it drops accounts whose rows carry no
    /// change (opened, never funded), as state lost at a no-change checkpoint
    /// (KurrentDB#1517, marten#2615).
    RebuildDropsUnchangedRows,
    /// A poison event is retried for ever instead of parked: the projection stalls behind it.
    PoisonNeverParked,
    /// A rebuild replaces the live model with the model it built up to the position the
    /// live one had when the rebuild started, without checking that the live one has not
    /// moved on meanwhile: an unguarded update by a stale writer, and the view goes back in
    /// time (serverlesstechnology/postgres-es#12).
    RebuildAdoptsStale,
    /// The transfer completer (a process manager, one per command node) names the credits it
    /// makes afresh instead of by the transfer's command: the store cannot recognise the
    /// credit another completer, or the handler, makes at the same time, and the transfer is
    /// credited twice (a write retried with a fresh event id: KurrentDB PR #1357).
    CompleterFreshEventId,
    /// The read-your-writes wait judges the projection by the progress it has committed: a
    /// projection that has not committed since it (re)started has no progress to be behind,
    /// and the wait counts it as caught up, answering from the old stored model as fresh
    /// (JasperFx/fisher#102, JasperFx/polecat#602: a shard that has not written its first
    /// progression row is invisible to `WaitForNonStaleProjectionDataAsync`).
    UncommittedCountsAsCaughtUp,
    /// The catch-up path folds a page as read from its position, without comparing each
    /// event's position with the checkpoint: events pushed and folded while the read was in
    /// flight (a late push that filled the gap it was sent to read) are folded again
    /// (KurrentDB#2356: a catch-up restarted from the last event processed while the pushed
    /// events are still queued processes them twice; YoEight/eventstore#62).
    PageSkipsCheckpoint,
}

#[cfg(madsim)]
impl Mutant {
    /// Every mutant, in a stable order.
    pub fn all() -> &'static [Mutant] {
        &[
            Mutant::CheckpointNotAtomic,
            Mutant::DuplicateAppliedTwice,
            Mutant::HandoverSkipsGap,
            Mutant::RywWaitReturnsEarly,
            Mutant::ServesUnpersistedView,
            Mutant::RetriedCommandNotDeduplicated,
            Mutant::WithdrawSkipsVersionCheck,
            Mutant::RebuildDropsUnchangedRows,
            Mutant::PoisonNeverParked,
            Mutant::RebuildAdoptsStale,
            Mutant::CompleterFreshEventId,
            Mutant::UncommittedCountsAsCaughtUp,
            Mutant::PageSkipsCheckpoint,
        ]
    }

    /// The mutant's name on command lines (kebab-case).
    pub fn as_str(self) -> &'static str {
        match self {
            Mutant::CheckpointNotAtomic => "checkpoint-not-atomic",
            Mutant::DuplicateAppliedTwice => "duplicate-applied-twice",
            Mutant::HandoverSkipsGap => "handover-skips-gap",
            Mutant::RywWaitReturnsEarly => "ryw-wait-returns-early",
            Mutant::ServesUnpersistedView => "serves-unpersisted-view",
            Mutant::RetriedCommandNotDeduplicated => "retried-command-not-deduplicated",
            Mutant::WithdrawSkipsVersionCheck => "withdraw-skips-version-check",
            Mutant::RebuildDropsUnchangedRows => "rebuild-drops-unchanged-rows",
            Mutant::PoisonNeverParked => "poison-never-parked",
            Mutant::RebuildAdoptsStale => "rebuild-adopts-stale",
            Mutant::CompleterFreshEventId => "completer-fresh-event-id",
            Mutant::UncommittedCountsAsCaughtUp => "uncommitted-counts-as-caught-up",
            Mutant::PageSkipsCheckpoint => "page-skips-checkpoint",
        }
    }
}

crate::mutant_set::mutant_names!(Mutant, "cqrs");

/// A mutant name that is not one of [`Mutant::all`].
#[cfg(madsim)]
pub type UnknownMutant = crate::mutant_set::UnknownMutant;

/// The set of this pattern's mutants switched on (none in production).
pub type Mutants = crate::mutant_set::MutantSet<Mutant>;
