//! The detailed answer of a check: per partition the verdict, the steps, the memo's size and
//! (when asked for) the time; for linearizable partitions a witness order.

use crate::history::OpId;
use crate::{CheckResult, Explanation};
use serde::{Deserialize, Serialize};
use std::fmt::{self, Display};
use std::time::Duration;

/// Everything a check found: the verdict for the whole history and one report per partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The verdict for the whole history, as [`crate::check`] returns it.
    pub result: CheckResult,
    /// One report per partition, in the model's partition order.
    pub partitions: Vec<PartitionReport>,
    /// The steps of all partitions together (searches only; an illegal partition's
    /// explanation costs its steps once more).
    pub steps: u64,
    /// How many rounds of quanta were run.
    pub rounds: u64,
    /// Wall time of the whole check, when [`crate::CheckOptions::measure_time`] is set.
    pub elapsed: Option<Duration>,
}

impl Report {
    /// The report of the partition labelled `label`, if any.
    pub fn partition(&self, label: &str) -> Option<&PartitionReport> {
        self.partitions.iter().find(|part| part.label == label)
    }
}

/// What the check found in one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionReport {
    /// The partition's label (for example its key).
    pub label: String,
    /// How many operations it holds.
    pub operation_count: usize,
    /// Its verdict.
    pub verdict: PartitionVerdict,
    /// The search steps spent on it.
    pub steps: u64,
    /// The memo entries (explored configurations) it held when its search ended.
    pub memo_entries: usize,
    /// The estimated bytes of its memo and distinct states when its search ended.
    pub memo_bytes: usize,
    /// Wall time spent searching it, when [`crate::CheckOptions::measure_time`] is set.
    pub elapsed: Option<Duration>,
}

/// The verdict of one partition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum PartitionVerdict {
    /// Linearizable; `witness` is a linearization: the completed operations and the
    /// indeterminate ones that took effect, in order. Replaying it through the model yields
    /// the observed outputs.
    Linearizable {
        /// The operations in linearization order.
        witness: Vec<OpId>,
    },
    /// Not linearizable.
    Illegal {
        /// The longest linearizable prefix and the operation that cannot be placed.
        explanation: Explanation,
    },
    /// A limit stopped the search before it decided.
    Unknown {
        /// Which limit.
        limit: Limit,
    },
    /// Not decided when another partition was found illegal, which decided the history.
    Stopped,
}

/// The limit that stopped a search.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "limit")]
pub enum Limit {
    /// The shared step budget ran out.
    Steps {
        /// The budget.
        steps_max: u64,
    },
    /// The memo's byte budget ran out; the partition with the largest memo is stopped
    /// first, so the others can go on.
    MemoBytes {
        /// The budget.
        memo_bytes_max: usize,
    },
    /// The wall-clock deadline passed (only for callers outside simulation).
    Deadline {
        /// The deadline.
        deadline: Duration,
    },
}

impl Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Steps { steps_max } => write!(
                f,
                "search limit reached: {steps_max} steps shared by the partitions (steps_max)"
            ),
            Limit::MemoBytes { memo_bytes_max } => write!(
                f,
                "search limit reached: {memo_bytes_max} bytes of memo (memo_bytes_max; from \
                 CheckLimits: memo_entries_max x {} bytes)",
                crate::MEMO_BYTES_PER_ENTRY
            ),
            Limit::Deadline { deadline } => {
                write!(f, "search limit reached: deadline of {deadline:?}")
            }
        }
    }
}
