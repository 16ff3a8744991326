//! Shrinking: from a failing case to a small one that fails the same way.
//!
//! Two passes, both deterministic and bounded:
//! 1. proptest's own value-tree shrinking over the whole generated case (swarm profile, plan,
//!    workload), when the case is the one its seed generates;
//! 2. a structural pass over the plan that works on any plan, hand-written ones included:
//!    drop each episode in turn, then halve each duration while the failure persists, and
//!    again until a whole round changes nothing.
//!
//! The result is checked to be **1-minimal**: the last round ran the case without each of its
//! episodes in turn, and none of those runs failed the same way, so every episode left is
//! needed. Randomness drawn per link, per disk and per episode (see `sim_core::rng`) is what
//! makes this meaningful: removing an episode does not reshuffle the others' random choices.
//! When a budget runs out first, [`Shrunk::minimal`] says so.
//!
//! "The same way" means the same verdict and the same invariant ([`Verdict::same_failure`]).
//! The simulation seed never changes. Budgets are counts of runs, never wall time, so the same
//! failure shrinks to the same case on a fast and on a slow machine.

use crate::case::{Case, DynScenario, RunOptions, Verdict};

/// Most value-tree steps in pass 1.
pub const TREE_STEPS_MAX: usize = 300;
/// Most runs in pass 2.
pub const STRUCTURAL_RUNS_MAX: usize = 300;
/// Most runs of one whole shrink (both passes): past it, the best case so far is kept.
pub const RUNS_MAX: usize = 500;

/// The result of shrinking.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The smallest case found that fails the same way.
    pub case: Case,
    /// Its verdict.
    pub verdict: Verdict,
    /// Its trace hash.
    pub trace_hash: u64,
    /// Runs spent shrinking.
    pub runs: usize,
    /// Whether the final run of the case matched the run that chose it (verdict and hash).
    pub reproduced: bool,
    /// Whether the case was checked to be 1-minimal: without any one of its episodes, it
    /// did not fail the same way. False when a budget ran out before the check.
    pub minimal: bool,
}

/// Shrinks `case`, which failed with `verdict` when run with `options` (whose muted
/// invariants every candidate runs with too; the trace is not kept).
///
/// The returned verdict is that of a final run of the returned case: a caller must check that
/// it is still the same failure before storing the case as one (it may not be, when the code
/// under test is not deterministic).
pub fn shrink(
    scenario: &dyn DynScenario,
    case: &Case,
    verdict: &Verdict,
    options: &RunOptions,
) -> Shrunk {
    let options = RunOptions {
        keep_trace: false,
        log: None,
        ..options.clone()
    };
    let mut runs = 0;
    let mut exhausted = false;
    let mut last: Option<(Case, Verdict, u64)> = None;
    let (best, minimal) = {
        let mut still_fails = |candidate: &Case| -> bool {
            if runs >= RUNS_MAX {
                // Past the budget every candidate counts as passing, which would wrongly
                // confirm minimality: remembered, and the claim dropped below.
                exhausted = true;
                return false;
            }
            runs += 1;
            match scenario.run_case(candidate, &options) {
                Ok(result) if result.verdict.same_failure(verdict) => {
                    last = Some((candidate.clone(), result.verdict, result.trace_hash));
                    true
                }
                _ => false,
            }
        };
        let from_tree = scenario.shrink_tree(case, &mut still_fails);
        structural(&from_tree, &mut still_fails)
    };
    // Re-run the winner so that verdict and hash belong to exactly this case, and so that a
    // winner that fails only sometimes shows up.
    runs += 1;
    let result = scenario
        .run_case(&best, &options)
        .expect("a case derived from a valid case is valid");
    let reproduced = match &last {
        Some((last_case, verdict, hash)) if *last_case == best => {
            *verdict == result.verdict && *hash == result.trace_hash
        }
        _ => true,
    };
    Shrunk {
        case: best,
        verdict: result.verdict,
        trace_hash: result.trace_hash,
        runs,
        reproduced,
        minimal: minimal && !exhausted,
    }
}

/// Pass 2: drop episodes, then halve durations, in rounds until a round changes nothing.
/// Returns the smallest case and whether it is 1-minimal (false when the budget ran out).
pub fn structural(case: &Case, still_fails: &mut dyn FnMut(&Case) -> bool) -> (Case, bool) {
    let mut best = case.clone();
    let mut budget = STRUCTURAL_RUNS_MAX;
    loop {
        let Some(dropped) = drop_episodes(&mut best, &mut budget, still_fails) else {
            return (best, false);
        };
        let shortened = shorten_episodes(&mut best, &mut budget, still_fails);
        if !dropped && !shortened {
            // The drop round just ran this very case without each of its episodes.
            return (best, true);
        }
    }
}

/// Drops each episode in turn, last first (later faults are less often the cause), keeping
/// the drops that still fail. Whether any was dropped; `None` if the budget ran out.
fn drop_episodes(
    best: &mut Case,
    budget: &mut usize,
    still_fails: &mut dyn FnMut(&Case) -> bool,
) -> Option<bool> {
    let mut dropped = false;
    let mut index = best.plan.episodes.len();
    while index > 0 {
        index -= 1;
        if *budget == 0 {
            return None;
        }
        *budget -= 1;
        let mut candidate = best.clone();
        candidate.plan.episodes.remove(index);
        if still_fails(&candidate) {
            *best = candidate;
            dropped = true;
        }
    }
    Some(dropped)
}

/// Halves each episode's duration while the failure persists. Whether any was shortened.
fn shorten_episodes(
    best: &mut Case,
    budget: &mut usize,
    still_fails: &mut dyn FnMut(&Case) -> bool,
) -> bool {
    let mut shortened = false;
    for index in 0..best.plan.episodes.len() {
        while *budget > 0 {
            let Some(duration) = best.plan.episodes[index].duration_ms else {
                break;
            };
            if duration <= 1 {
                break;
            }
            let mut candidate = best.clone();
            candidate.plan.episodes[index].duration_ms = Some(duration / 2);
            *budget -= 1;
            if still_fails(&candidate) {
                *best = candidate;
                shortened = true;
            } else {
                break;
            }
        }
    }
    shortened
}
