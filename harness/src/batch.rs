//! Running many seeds of a scenario in parallel: the engine behind `dst run` and the
//! `cargo test` integration.

use crate::case::{Case, DynScenario, RunOptions, RunResult, Verdict, VerdictKind};
use crate::corpus::{self, CaseFile};
use crate::invariant::InvariantKind;
use crate::plan::FaultKind;
use crate::shrink;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// What to run.
#[derive(Clone, Debug)]
pub struct BatchOptions {
    /// First seed.
    pub start: u64,
    /// Number of seeds (before sharding).
    pub seeds: u64,
    /// Worker threads.
    pub jobs: usize,
    /// Mutant to switch on.
    pub mutant: Option<String>,
    /// Fault kinds allowed.
    pub faults: BTreeSet<FaultKind>,
    /// Where failing cases are saved (`None`: not saved).
    pub corpus_dir: Option<PathBuf>,
    /// Run every seed twice and compare traces.
    pub check_determinism: bool,
    /// Stop at the first failure.
    pub fail_fast: bool,
    /// Run only part `k` of `n` (1-based) of the seed range.
    pub shard: Option<(u64, u64)>,
    /// Shrink failures before saving them.
    pub shrink: bool,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            start: 0,
            seeds: 100,
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mutant: None,
            faults: FaultKind::ALL.into_iter().collect(),
            corpus_dir: None,
            check_determinism: false,
            fail_fast: false,
            shard: None,
            shrink: true,
        }
    }
}

impl BatchOptions {
    /// The seeds this batch runs, after sharding.
    pub fn seed_range(&self) -> std::ops::Range<u64> {
        let end = self.start.saturating_add(self.seeds);
        match self.shard {
            None => self.start..end,
            Some((k, n)) => {
                let size = self.seeds.div_ceil(n);
                let first = self
                    .start
                    .saturating_add(size.saturating_mul(k - 1))
                    .min(end);
                first..first.saturating_add(size).min(end)
            }
        }
    }
}

/// One failing seed.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    /// The seed.
    pub seed: u64,
    /// The verdict name.
    pub verdict: String,
    /// The broken invariant, if any.
    pub invariant: Option<String>,
    /// Details.
    pub message: Option<String>,
    /// The trace hash of the saved (shrunk) case, 16 hex digits.
    pub trace_hash: String,
    /// The saved case file, if saved.
    pub file: Option<String>,
    /// The shrunk plan, readable.
    pub plan: String,
    /// Episodes before and after shrinking.
    pub episodes: (usize, usize),
    /// Set when the failure is a determinism failure: the first diverging event.
    pub divergence: Option<String>,
}

/// The result of a batch.
#[derive(Clone, Debug, Serialize)]
pub struct BatchReport {
    /// Scenario name.
    pub scenario: String,
    /// Seeds run.
    pub seeds_run: u64,
    /// Seeds that passed.
    pub passed: u64,
    /// Seeds that failed.
    pub failed: u64,
    /// The failures, by seed.
    pub failures: Vec<Failure>,
    /// Sometimes-invariants never reached (judged only on large enough batches).
    pub sometimes_unmet: Vec<String>,
    /// Whether sometimes-invariants were judged: the batch was large enough, unmutated, and
    /// ran the scenario's whole fault model.
    pub sometimes_judged: bool,
    /// Sometimes-invariants reached by at least one run (merge these across shards).
    pub sometimes_reached: Vec<String>,
    /// Simulated seconds, summed over runs.
    pub sim_seconds: f64,
    /// Wall-clock seconds of the batch.
    pub wall_seconds: f64,
}

impl BatchReport {
    /// Whether everything passed.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.sometimes_unmet.is_empty()
    }
}

struct Collected {
    failures: Vec<Failure>,
    reached: BTreeSet<String>,
    sim_ns: u128,
    passed: u64,
    run: u64,
}

/// Runs a batch; `progress` is called after every seed.
pub fn run_batch(
    scenario: &dyn DynScenario,
    options: &BatchOptions,
    progress: &(dyn Fn() + Sync),
) -> BatchReport {
    #[allow(clippy::disallowed_methods)] // Wall time of the batch, outside any simulation.
    let wall_start = std::time::Instant::now();
    let spec = scenario.spec();
    let range = options.seed_range();
    let next = AtomicU64::new(range.start);
    let stop = AtomicBool::new(false);
    let collected = Mutex::new(Collected {
        failures: Vec::new(),
        reached: BTreeSet::new(),
        sim_ns: 0,
        passed: 0,
        run: 0,
    });
    let worker = || loop {
        // Claim a seed without ever going past the end (no wrap-around near u64::MAX).
        let claimed = next.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |seed| {
            (seed < range.end).then_some(seed + 1)
        });
        let Ok(seed) = claimed else {
            break;
        };
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let outcome = run_seed(scenario, seed, options);
        let mut c = collected.lock().expect("batch lock");
        c.run += 1;
        c.sim_ns += u128::from(outcome.sim_ns);
        c.reached.extend(outcome.reached);
        match outcome.failure {
            None => c.passed += 1,
            Some(failure) => {
                c.failures.push(failure);
                if options.fail_fast {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
        drop(c);
        progress();
    };
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.max(1) {
            // Workers only schedule runs; every run gets its own fresh thread inside sim-core.
            scope.spawn(worker);
        }
    });
    let mut c = collected.into_inner().expect("batch lock");
    c.failures.sort_by_key(|failure| failure.seed);
    let sometimes: Vec<String> = spec
        .invariants
        .iter()
        .filter(|i| i.kind() == InvariantKind::Sometimes)
        .map(|i| i.name().to_string())
        .collect();
    // Sometimes-invariants are a property of a large enough batch of unmutated runs under the
    // scenario's whole fault model: with fewer fault kinds a state may be out of reach.
    let full_faults = spec.budget.kinds.is_subset(&options.faults);
    let judged =
        c.run >= spec.sometimes_batch_min as u64 && options.mutant.is_none() && full_faults;
    let unmet = if judged {
        sometimes
            .into_iter()
            .filter(|name| !c.reached.contains(name))
            .collect()
    } else {
        Vec::new()
    };
    BatchReport {
        scenario: spec.name,
        seeds_run: c.run,
        passed: c.passed,
        failed: c.failures.len() as u64,
        failures: c.failures,
        sometimes_unmet: unmet,
        sometimes_judged: judged,
        sometimes_reached: c.reached.iter().cloned().collect(),
        sim_seconds: c.sim_ns as f64 / 1e9,
        wall_seconds: wall_start.elapsed().as_secs_f64(),
    }
}

struct SeedOutcome {
    failure: Option<Failure>,
    reached: BTreeSet<String>,
    sim_ns: u64,
}

fn run_seed(scenario: &dyn DynScenario, seed: u64, options: &BatchOptions) -> SeedOutcome {
    let case = scenario.generate(seed, options.mutant.clone(), options.faults.clone());
    let run_options = RunOptions {
        keep_trace: options.check_determinism,
        log: None,
        ..RunOptions::default()
    };
    let result = match scenario.run_case(&case, &run_options) {
        Ok(result) => result,
        Err(error) => {
            return SeedOutcome {
                failure: Some(input_failure(seed, error.to_string())),
                reached: BTreeSet::new(),
                sim_ns: 0,
            }
        }
    };
    let mut failure = None;
    if options.check_determinism {
        failure = determinism_failure(scenario, &case, &result, &run_options);
    }
    if failure.is_none() && !result.verdict.is_pass() {
        failure = Some(record_failure(scenario, &case, &result, options));
    }
    SeedOutcome {
        failure,
        reached: result.sometimes,
        sim_ns: result.sim_time_ns,
    }
}

fn input_failure(seed: u64, message: String) -> Failure {
    Failure {
        seed,
        verdict: "error".into(),
        invariant: None,
        message: Some(message),
        trace_hash: corpus::hex(0),
        file: None,
        plan: String::new(),
        episodes: (0, 0),
        divergence: None,
    }
}

/// Runs `case` a second time and compares; on a difference names the first diverging event.
pub fn determinism_failure(
    scenario: &dyn DynScenario,
    case: &Case,
    first: &RunResult,
    options: &RunOptions,
) -> Option<Failure> {
    let second = scenario.run_case(case, options).ok()?;
    if second.trace_hash == first.trace_hash && second.verdict == first.verdict {
        return None;
    }
    let divergence = match (&first.timeline, &second.timeline) {
        (Some(a), Some(b)) => match a.first_divergence(b) {
            Some((i, j)) => format!(
                "first run: {} / second run: {}",
                a.events.get(i).map_or("(end)".into(), |e| a.format_line(e)),
                b.events.get(j).map_or("(end)".into(), |e| b.format_line(e)),
            ),
            None => "same events, different verdict".into(),
        },
        _ => "hashes differ (run with --check-determinism to see the event)".into(),
    };
    Some(Failure {
        seed: case.seed,
        verdict: "nondeterministic".into(),
        invariant: None,
        message: Some(format!(
            "trace hash {} then {}",
            corpus::hex(first.trace_hash),
            corpus::hex(second.trace_hash)
        )),
        trace_hash: corpus::hex(first.trace_hash),
        file: None,
        plan: case.plan.to_string(),
        episodes: (case.plan.episodes.len(), case.plan.episodes.len()),
        divergence: Some(divergence),
    })
}

/// Shrinks (if asked) and saves a failing case; returns its description.
fn record_failure(
    scenario: &dyn DynScenario,
    case: &Case,
    result: &RunResult,
    options: &BatchOptions,
) -> Failure {
    // A hung run took the whole wall-clock watchdog: shrinking would repeat that hundreds of
    // times, so a hung case is saved as found.
    let shrink = options.shrink && result.verdict.kind != VerdictKind::Hung;
    let (case_out, verdict, hash) = if shrink {
        let shrunk = shrink::shrink(scenario, case, &result.verdict);
        (shrunk.case, shrunk.verdict, shrunk.trace_hash)
    } else {
        (case.clone(), result.verdict.clone(), result.trace_hash)
    };
    // A hung case's trace depends on when the watchdog fired: it cannot replay, so it is not
    // saved; its seed is reported for a rerun.
    let saving = options
        .corpus_dir
        .as_ref()
        .filter(|_| verdict.kind != VerdictKind::Hung);
    let file = saving.and_then(|dir| {
        let path = corpus::path_for(dir, &case_out, verdict.kind, verdict.invariant.as_deref());
        let description = describe(&case_out, &verdict, case.plan.episodes.len());
        let file = CaseFile::new(
            &case_out,
            verdict.kind,
            verdict.invariant.clone(),
            hash,
            description,
        );
        match corpus::save(&path, &file) {
            Ok(()) => Some(path.display().to_string()),
            Err(error) => {
                eprintln!("dst: cannot save the failing case: {error}");
                None
            }
        }
    });
    Failure {
        seed: case.seed,
        verdict: verdict.kind.name().into(),
        invariant: verdict.invariant.clone(),
        message: verdict.message.clone(),
        trace_hash: corpus::hex(hash),
        file,
        plan: case_out.plan.to_string(),
        episodes: (case.plan.episodes.len(), case_out.plan.episodes.len()),
        divergence: None,
    }
}

/// The one-line description stored with a failing case.
pub fn describe(case: &Case, verdict: &Verdict, episodes_before: usize) -> String {
    let mut text = format!(
        "{}: {} found by seed {}",
        case.scenario, verdict.kind, case.seed
    );
    if let Some(invariant) = &verdict.invariant {
        text.push_str(&format!(" ({invariant})"));
    }
    if let Some(mutant) = &case.mutant {
        text.push_str(&format!(" with mutant {mutant}"));
    }
    text.push_str(&format!(
        "; plan shrunk from {} to {} episodes",
        episodes_before,
        case.plan.episodes.len()
    ));
    text
}
