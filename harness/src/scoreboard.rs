//! The mutant scoreboard (`dst mutants`): how fast each scenario's mutants are caught, with
//! all faults and with none, by which invariant, and how small the shrunk plan gets.
//!
//! A mutant that only a fault-free run also catches proves the workload, not the fault
//! machinery; the column `without faults` tells the two apart. Seeds are searched in order,
//! in chunks run in parallel, so "seeds to detect" is exact: the lowest failing seed minus
//! the first seed, plus one, whatever the number of jobs.

use crate::batch::{run_batch, BatchOptions, BatchReport};
use crate::case::{DynScenario, RunOptions, Verdict};
use crate::plan::FaultKind;
use crate::shrink;
use crate::MutantSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// A [hard](crate::MutantSpec::hard) mutant gets this many times the seeds with all faults.
pub const HARD_SEEDS_FACTOR: u64 = 20;

/// How hard the scoreboard looks.
#[derive(Clone, Debug)]
pub struct ScoreOptions {
    /// First seed.
    pub start: u64,
    /// Seeds tried with all faults before a mutant counts as surviving ([`HARD_SEEDS_FACTOR`]
    /// times as many for a hard one).
    pub seeds: u64,
    /// Seeds tried with `--faults none` (`dst mutants` uses `max(seeds, 1000)`).
    pub quiet_seeds: u64,
    /// Worker threads.
    pub jobs: usize,
    /// Also search with coverage-guided exploration (`dst mutants --explore`), on the same
    /// budget: [`MutantScore::explore_seeds_to_detect`].
    pub explore: bool,
    /// With `explore`: the scenario's stored pool to start each exploration from
    /// ([`crate::pool`]), built from unmutated runs.
    pub pool: Option<std::sync::Arc<crate::pool::StoredPool>>,
}

/// One mutant's score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MutantScore {
    /// Scenario name.
    pub scenario: String,
    /// Mutant name.
    pub mutant: String,
    /// Whether the scenario marks it [hard](crate::MutantSpec::hard) to catch.
    pub hard: bool,
    /// Seeds searched with all faults.
    pub seeds: u64,
    /// Whether a seed failed with all faults allowed.
    pub detected: bool,
    /// The lowest failing seed minus the first seed, plus one; `None` if undetected.
    pub seeds_to_detect: Option<u64>,
    /// Wall time of the search with all faults, up to and including the first failing seed
    /// (shrinking not included), in seconds.
    pub wall_seconds: f64,
    /// The verdict of the first failing seed (`safety`, `liveness`, ...).
    pub verdict: Option<String>,
    /// The invariant it broke, if any.
    pub invariant: Option<String>,
    /// The invariant it is declared to break ([`crate::MutantSpec::breaks`]), if declared.
    #[serde(default)]
    pub breaks: Option<String>,
    /// Episodes in the first failing seed's plan, as found.
    pub plan_steps_found: Option<usize>,
    /// Episodes in its plan after shrinking.
    pub plan_steps: Option<usize>,
    /// Whether the shrunk plan was checked 1-minimal.
    pub plan_minimal: Option<bool>,
    /// Whether a seed failed with no faults at all.
    pub detected_without_faults: bool,
    /// As `seeds_to_detect`, with no faults.
    pub seeds_to_detect_without_faults: Option<u64>,
    /// Seeds tried with no faults.
    pub quiet_seeds: u64,
    /// With [`ScoreOptions::explore`]: the runs coverage-guided exploration took to its first
    /// failure (every run counted, fresh or derived), on the same budget and faults as
    /// `seeds_to_detect`; `None` when it found none or did not search.
    #[serde(default)]
    pub explore_seeds_to_detect: Option<u64>,
    /// Wall time of that exploration, in seconds.
    #[serde(default)]
    pub explore_wall_seconds: Option<f64>,
}

/// Scores every mutant of `scenario`, in the order the scenario lists them; `each` sees
/// each score as it is made.
pub fn score_scenario(
    scenario: &dyn DynScenario,
    options: &ScoreOptions,
    each: &mut dyn FnMut(&MutantScore),
) -> Vec<MutantScore> {
    scenario
        .spec()
        .mutants
        .iter()
        .map(|mutant| {
            let mut options = options.clone();
            if mutant.hard {
                options.seeds = options.seeds.saturating_mul(HARD_SEEDS_FACTOR);
            }
            let score = score_mutant(scenario, mutant, &options);
            each(&score);
            score
        })
        .collect()
}

impl MutantScore {
    /// Whether it was caught, but not by the invariant it is declared to break: by another,
    /// by a panic or by a limit. That proves less than the declaration claims.
    pub fn caught_otherwise(&self) -> bool {
        self.detected && self.breaks.is_some() && self.invariant != self.breaks
    }
}

/// Scores one mutant of `scenario` with `options.seeds` as given (the caller multiplies them
/// for a hard one).
pub fn score_mutant(
    scenario: &dyn DynScenario,
    spec: &MutantSpec,
    options: &ScoreOptions,
) -> MutantScore {
    let mutant = spec.name.as_str();
    let all: BTreeSet<FaultKind> = FaultKind::ALL.into_iter().collect();
    #[allow(clippy::disallowed_methods)] // Wall time of the search, outside any simulation.
    let started = std::time::Instant::now();
    let found = first_failure(
        scenario,
        mutant,
        &all,
        options.start,
        options.seeds,
        options.jobs,
    );
    let wall_seconds = started.elapsed().as_secs_f64();
    let quiet = first_failure(
        scenario,
        mutant,
        &BTreeSet::new(),
        options.start,
        options.quiet_seeds,
        options.jobs,
    );
    let mut score = MutantScore {
        scenario: scenario.spec().name,
        mutant: mutant.to_string(),
        hard: spec.hard,
        seeds: options.seeds,
        detected: found.is_some(),
        seeds_to_detect: found.as_ref().map(|(seed, _)| seed - options.start + 1),
        wall_seconds,
        verdict: None,
        invariant: None,
        breaks: spec.breaks.clone(),
        plan_steps_found: None,
        plan_steps: None,
        plan_minimal: None,
        detected_without_faults: quiet.is_some(),
        seeds_to_detect_without_faults: quiet.map(|(seed, _)| seed - options.start + 1),
        quiet_seeds: options.quiet_seeds,
        explore_seeds_to_detect: None,
        explore_wall_seconds: None,
    };
    if options.explore {
        #[allow(clippy::disallowed_methods)] // Wall time of the search, outside any simulation.
        let started = std::time::Instant::now();
        let explored = crate::explore::explore(
            scenario,
            &crate::explore::ExploreOptions {
                start: options.start,
                runs: options.seeds,
                jobs: options.jobs,
                mutant: Some(mutant.to_string()),
                faults: all.clone(),
                corpus_dir: None,
                fail_fast: true,
                shrink: false,
                pool: options.pool.clone(),
                ..crate::explore::ExploreOptions::default()
            },
            &mut |_| {},
        );
        score.explore_seeds_to_detect = explored.first_failure_run;
        score.explore_wall_seconds = Some(started.elapsed().as_secs_f64());
    }
    if let Some((seed, verdict)) = found {
        score.verdict = Some(verdict.kind.name().to_string());
        score.invariant = verdict.invariant.clone();
        let case = scenario.generate(seed, Some(mutant.to_string()), all);
        score.plan_steps_found = Some(case.plan.episodes.len());
        if verdict.kind == crate::VerdictKind::Nondeterministic {
            // Nothing to shrink against: the case does not fail the same way twice.
            score.plan_steps = Some(case.plan.episodes.len());
            score.plan_minimal = Some(false);
            return score;
        }
        let shrunk = shrink::shrink(scenario, &case, &verdict, &RunOptions::default());
        if shrunk.reproduced && shrunk.verdict.same_failure(&verdict) {
            score.plan_steps = Some(shrunk.case.plan.episodes.len());
            score.plan_minimal = Some(shrunk.minimal);
        } else {
            // Shrinking lost the failure: the plan as found is what is known to fail.
            score.plan_steps = Some(case.plan.episodes.len());
            score.plan_minimal = Some(false);
        }
    }
    score
}

/// The lowest seed in `start..start + seeds` that fails with `mutant` and `faults`, with its
/// verdict: chunks of seeds run in parallel, in order, until one has a failure.
fn first_failure(
    scenario: &dyn DynScenario,
    mutant: &str,
    faults: &BTreeSet<FaultKind>,
    start: u64,
    seeds: u64,
    jobs: usize,
) -> Option<(u64, Verdict)> {
    let chunk = (jobs.max(1) as u64 * 4).max(8);
    let end = start.saturating_add(seeds);
    let mut from = start;
    while from < end {
        let count = chunk.min(end - from);
        let options = BatchOptions {
            start: from,
            seeds: count,
            jobs,
            mutant: Some(mutant.to_string()),
            faults: faults.clone(),
            corpus_dir: None,
            shrink: false,
            ..BatchOptions::default()
        };
        let report: BatchReport = run_batch(scenario, &options, &|| {});
        if let Some(failure) = report.failures.iter().min_by_key(|f| f.seed) {
            let seed = failure.seed;
            // Rerun it for its whole verdict (the batch checked that it reproduces; one that
            // does not, `nondeterministic`, keeps the batch's account).
            let case = scenario.generate(seed, Some(mutant.to_string()), faults.clone());
            let verdict = match scenario.run_case(&case, &RunOptions::default()) {
                Ok(result) => result.verdict,
                Err(error) => Verdict {
                    kind: crate::VerdictKind::Error,
                    invariant: None,
                    message: Some(error.to_string()),
                    node: None,
                    time_ns: None,
                },
            };
            if verdict.is_failure() && verdict.kind.name() == failure.verdict {
                return Some((seed, verdict));
            }
            return Some((
                seed,
                Verdict {
                    kind: crate::VerdictKind::Nondeterministic,
                    invariant: failure.invariant.clone(),
                    message: failure.message.clone(),
                    node: None,
                    time_ns: None,
                },
            ));
        }
        from += count;
    }
    None
}

/// The median of the detected mutants' seeds to detection, hard ones left out (survivors
/// too: the median is over what was caught).
pub fn median_seeds_to_detect(scores: &[MutantScore]) -> Option<f64> {
    let mut seeds: Vec<u64> = scores
        .iter()
        .filter(|s| !s.hard)
        .filter_map(|s| s.seeds_to_detect)
        .collect();
    seeds.sort_unstable();
    match seeds.len() {
        0 => None,
        n if n % 2 == 1 => Some(seeds[n / 2] as f64),
        n => Some((seeds[n / 2 - 1] + seeds[n / 2]) as f64 / 2.0),
    }
}

/// The median runs to catch over the [hard](crate::MutantSpec::hard) mutants, by random search
/// and by exploration (`--explore`), a mutant not caught counting as more than any budget;
/// `None` when the median is one not caught (or there are no hard mutants).
pub fn hard_medians(scores: &[MutantScore]) -> (Option<f64>, Option<f64>) {
    let hard: Vec<&MutantScore> = scores.iter().filter(|s| s.hard).collect();
    (
        median_counting_misses(hard.iter().map(|s| s.seeds_to_detect)),
        median_counting_misses(hard.iter().map(|s| s.explore_seeds_to_detect)),
    )
}

fn median_counting_misses(found: impl Iterator<Item = Option<u64>>) -> Option<f64> {
    let mut runs: Vec<u64> = found.map(|n| n.unwrap_or(u64::MAX)).collect();
    runs.sort_unstable();
    let n = runs.len();
    if n == 0 {
        return None;
    }
    let (low, high) = if n % 2 == 1 {
        (runs[n / 2], runs[n / 2])
    } else {
        (runs[n / 2 - 1], runs[n / 2])
    };
    (high != u64::MAX).then(|| (low as f64 + high as f64) / 2.0)
}
