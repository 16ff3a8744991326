//! Deliberately re-introduced bugs ("mutants"), switchable at run time and off by default.
//!
//! Each mutant mirrors a real bug class from `shared/research/patterns.md` section 4(c). A
//! simulation scenario or a test turns one on through [`Mutants`] in the store's config and
//! must then fail some check; a mutant that no check catches points at a missing invariant.

// The enum exists in every build, so that the code consulting a mutant compiles everywhere;
// its names (`Debug`, serde, `as_str`, `Display`, `FromStr`) only in simulation builds: a
// production build's `Mutants` is always empty (see `crate::mutant_set`).
/// One deliberately re-introduced bug of the event store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(madsim, derive(Debug, serde::Serialize, serde::Deserialize))]
#[cfg_attr(madsim, serde(rename_all = "kebab-case"))]
pub enum Mutant {
    /// The append is acknowledged when its log write completes, before the sync (ES-M5).
    AckBeforeFsync,
    /// Recovery keeps a torn tail record, trusting its length field instead of its checksum
    /// (ES-M5, LiteDB#2935).
    KeepTornRecord,
    /// Recovery truncates at the first bad record even inside the synced part (ES-M5,
    /// harper#2016).
    DropAfterBad,
    /// The expected-version check reads the committed view, not the view that includes
    /// pending appends (ES-M1, Eventuous#553).
    NonAtomicExpectedVersion,
    /// Rehydration from a snapshot applies the snapshot's last event again (ES-M4).
    SnapshotDoubleApply,
    /// Recovery does not rebuild the event-id idempotency map (ES-M3, KurrentDB#1970).
    IdempotencyLostOnRestart,
    /// The event-id idempotency check looks only at committed events, missing an append of the
    /// same ids still in flight (ES-M3).
    IdempotencyMissesPending,
    /// A failed fsync is retried instead of halting the store, and the retry's success is
    /// taken as durability (ES-M5, acid-state#175, PostgreSQL's "fsyncgate").
    RetryFailedFsync,
    /// A retry of an append whose group commit is still in flight is answered with success at
    /// once, before its events are durable (ES-M3, KurrentDB PR #1915).
    IdempotentAckBeforeDurable,
    /// The event-id idempotency check sees the recovered events only once the recovery commit
    /// completes (ES-M3, KurrentDB#1970, documentation#465).
    IdempotencyBeforeRecoveryCommit,
    /// While the recovery commit runs, the expected-version check reads the committed view,
    /// which does not hold the recovered events yet (ES-M1, Eventuous#553).
    ExpectedVersionBeforeRecoveryCommit,
}

#[cfg(madsim)]
impl Mutant {
    /// Every mutant, in a stable order.
    pub fn all() -> &'static [Mutant] {
        &[
            Mutant::AckBeforeFsync,
            Mutant::KeepTornRecord,
            Mutant::DropAfterBad,
            Mutant::NonAtomicExpectedVersion,
            Mutant::SnapshotDoubleApply,
            Mutant::IdempotencyLostOnRestart,
            Mutant::IdempotencyMissesPending,
            Mutant::RetryFailedFsync,
            Mutant::IdempotentAckBeforeDurable,
            Mutant::IdempotencyBeforeRecoveryCommit,
            Mutant::ExpectedVersionBeforeRecoveryCommit,
        ]
    }

    /// The mutant's name as used on command lines and in configs.
    pub fn as_str(self) -> &'static str {
        match self {
            Mutant::AckBeforeFsync => "ack-before-fsync",
            Mutant::KeepTornRecord => "keep-torn-record",
            Mutant::DropAfterBad => "drop-after-bad",
            Mutant::NonAtomicExpectedVersion => "non-atomic-expected-version",
            Mutant::SnapshotDoubleApply => "snapshot-double-apply",
            Mutant::IdempotencyLostOnRestart => "idempotency-lost-on-restart",
            Mutant::IdempotencyMissesPending => "idempotency-misses-pending",
            Mutant::RetryFailedFsync => "retry-failed-fsync",
            Mutant::IdempotentAckBeforeDurable => "idempotent-ack-before-durable",
            Mutant::IdempotencyBeforeRecoveryCommit => "idempotency-before-recovery-commit",
            Mutant::ExpectedVersionBeforeRecoveryCommit => {
                "expected-version-before-recovery-commit"
            }
        }
    }

    /// The bug the mutant mirrors, in one or two sentences.
    pub fn description(self) -> &'static str {
        match self {
            Mutant::AckBeforeFsync => {
                "Acknowledges an append as soon as its log write completes, before the sync that \
                 makes it durable; a crash then loses acknowledged events (cadis#3032, \
                 acid-state#175)."
            }
            Mutant::KeepTornRecord => {
                "Recovery trusts the length field of a record in the unsynced tail and skips its \
                 checksum: a torn record (bytes missing, read as zeros, or garbled) is kept and \
                 served (LiteDB#2935: no log checksum, a partial transaction is applied)."
            }
            Mutant::DropAfterBad => {
                "Recovery treats a corrupt record inside the synced part as a torn tail and \
                 silently truncates there, losing acknowledged records (harper#2016)."
            }
            Mutant::NonAtomicExpectedVersion => {
                "The expected-version check reads a stale view (committed events only) while \
                 another append to the stream is pending, so two appends with the same expected \
                 version both succeed (Eventuous#553, marten PR #5300)."
            }
            Mutant::SnapshotDoubleApply => {
                "Rehydration folds the tail from the snapshot's own version instead of the next \
                 one, applying the snapshot's last event twice (protoactor-dotnet PR #221)."
            }
            Mutant::IdempotencyLostOnRestart => {
                "The event-id idempotency map lives only in memory and is not rebuilt from the \
                 log on recovery, so a retry after a restart appends duplicates \
                 (KurrentDB#1970, documentation#465)."
            }
            Mutant::IdempotencyMissesPending => {
                "The event-id idempotency check consults only committed events: a duplicate of an \
                 append whose group commit is still in flight (a duplicated or re-sent request) \
                 is appended a second time (the in-flight gap of KurrentDB's idempotency window, \
                 ES-M3)."
            }
            Mutant::RetryFailedFsync => {
                "A failed fsync is retried and the retry's success taken for durability; but the \
                 kernel dropped the failed pages and the retry writes nothing, so a later crash \
                 loses acknowledged events (PostgreSQL's fsyncgate, acid-state#175)."
            }
            Mutant::IdempotentAckBeforeDurable => {
                "A retry of an append that is still being committed is recognized as idempotent \
                 and answered with success at once, not when the original's events are durable; \
                 if the commit then fails (a crash, a failed write), the acknowledged events are \
                 gone (KurrentDB PR #1915: an idempotent write acknowledged before replication)."
            }
            Mutant::IdempotencyBeforeRecoveryCommit => {
                "After a restart the event-id idempotency map holds the recovered events only once \
                 the recovery commit has made them durable; a retry that arrives while it runs \
                 (appends are taken meanwhile) is appended a second time (KurrentDB#1970, \
                 documentation#465: the idempotency cache is not there after a restart)."
            }
            Mutant::ExpectedVersionBeforeRecoveryCommit => {
                "After a restart the expected-version check reads the committed view while the \
                 recovery commit runs, and the recovered events are not in it yet: an append \
                 taken meanwhile is judged against a stream that looks empty (Eventuous#553: \
                 the version read from another view than the one the append goes to)."
            }
        }
    }
}

crate::mutant_set::mutant_names!(Mutant, "event-sourcing");

/// A mutant name that is not one of [`Mutant::all`].
#[cfg(madsim)]
pub type UnknownMutant = crate::mutant_set::UnknownMutant;

/// The set of this pattern's mutants switched on; empty (the correct store) by default.
pub type Mutants = crate::mutant_set::MutantSet<Mutant>;
