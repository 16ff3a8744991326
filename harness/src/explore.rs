//! Coverage-guided exploration (`dst run <scenario> --explore`): random search that keeps the
//! cases which reached something new and derives new cases from them.
//!
//! Every run collects its coverage (sim-core's features: event kinds and transitions per
//! node, `buggify!` sites, interest points; and the sometimes-invariants reached). A case
//! whose run set a feature no earlier run had joins the *pool*. Each new case is either a
//! fresh draw (the next seed, as random search would run it) or derived from a pool case by
//! one to three mutations: add, remove, shift, stretch or retarget an episode (the added and
//! retargeted faults are drawn by the scenario's own generator, so they stay within its
//! budget), splice in an episode of another pool case, move an episode to just after another
//! ends (faults meeting at a boundary), take another draw's fault plan and swarm profile,
//! perturb or replace the workload, or reseed the simulation. The explorer never reads a
//! mutant's name: it steers by coverage only.
//!
//! Deterministic: the explorer decides a whole *generation* of cases from what it knew before
//! it, runs them on any number of workers, and learns from them in order, so the same options
//! run the same cases in the same order whatever `jobs` is. Every derived case is a complete
//! [`Case`]: a failing one is saved as a case file and replays like any other.

use crate::batch::{self, BatchOptions, Failure, Found};
use crate::case::{check_case, Case, DynScenario, RunOptions, RunResult, VerdictKind};
use crate::generate::within_budget;
use crate::plan::FaultKind;
use crate::pool::{StoredCase, StoredPool};
use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;
use sim_core::coverage::{Coverage, COVERAGE_BITS};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Cases decided before any of them runs: the unit that makes exploration independent of
/// the number of workers.
pub const GENERATION: usize = 16;

/// The share of cases drawn fresh once the pool has cases: the seeds random search would run
/// keep coming, a quarter as fast, so that what random search finds in its first seeds
/// exploration finds too (within about four times the runs, or sooner through a derived case).
pub const FRESH_SHARE: f64 = 0.25;

/// Cases the pool keeps at most: past it, the ones whose features are commonest go (a pool
/// case holds its features, a few kilobytes, and is rated every generation).
pub const POOL_MAX: usize = 2048;

/// Mutations tried on one derived case, at most.
const MUTATIONS_MAX: usize = 3;

/// What to explore.
#[derive(Clone, Debug)]
pub struct ExploreOptions {
    /// The first fresh seed; the explorer's own choices are seeded from it too.
    pub start: u64,
    /// Cases to run in all, fresh and derived.
    pub runs: u64,
    /// Worker threads.
    pub jobs: usize,
    /// Mutant switched on, if any.
    pub mutant: Option<String>,
    /// Fault kinds cases may draw.
    pub faults: BTreeSet<FaultKind>,
    /// Where failing cases are saved.
    pub corpus_dir: Option<PathBuf>,
    /// Stop at the first failure (its run is [`ExploreReport::first_failure_run`]).
    pub fail_fast: bool,
    /// Shrink failing cases before saving them.
    pub shrink: bool,
    /// The share of cases drawn fresh once the pool has cases ([`FRESH_SHARE`]); 1 is random
    /// search (seeds in order) with its coverage recorded, to compare against.
    pub fresh_share: f64,
    /// Cases the pool keeps at most ([`POOL_MAX`]).
    pub pool_max: usize,
    /// The exploration fails when more than one run ran and more than this share of them
    /// was inconclusive, as a batch does (`--inconclusive-max`).
    pub inconclusive_max: f64,
    /// A stored pool to start from ([`crate::pool`]): its cases join the pool before the
    /// first run, and the runs behind it count in how rare each feature is.
    pub pool: Option<Arc<StoredPool>>,
    /// Also return the pool at the end, as stored ([`ExploreReport::kept_pool`]).
    pub keep_pool: bool,
}

impl Default for ExploreOptions {
    fn default() -> Self {
        let batch = BatchOptions::default();
        ExploreOptions {
            start: batch.start,
            runs: batch.seeds,
            jobs: batch.jobs,
            mutant: None,
            faults: batch.faults,
            corpus_dir: None,
            fail_fast: false,
            shrink: true,
            fresh_share: FRESH_SHARE,
            pool_max: POOL_MAX,
            inconclusive_max: batch.inconclusive_max,
            pool: None,
            keep_pool: false,
        }
    }
}

impl ExploreOptions {
    fn batch(&self) -> BatchOptions {
        BatchOptions {
            start: self.start,
            seeds: self.runs,
            jobs: self.jobs,
            mutant: self.mutant.clone(),
            faults: self.faults.clone(),
            corpus_dir: self.corpus_dir.clone(),
            shrink: self.shrink,
            ..BatchOptions::default()
        }
    }
}

/// Where a case came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "origin")]
pub enum Origin {
    /// The case of a seed, as random search runs it.
    Fresh,
    /// Derived from the case of run `parent` (1-based) by these mutations.
    Derived {
        /// The run whose case it was derived from; 0 for a case of the stored pool the
        /// exploration started from.
        parent: u64,
        /// The mutations, in order.
        mutations: Vec<&'static str>,
    },
}

/// A failure the exploration found: the first run that failed in its way.
#[derive(Clone, Debug, Serialize)]
pub struct ExploreFailure {
    /// The run (1-based, counting every run, fresh or derived) that found it.
    pub run: u64,
    /// Where that run's case came from.
    #[serde(flatten)]
    pub origin: Origin,
    /// Runs that failed the same way.
    pub count: u64,
    /// The failure, shrunk and saved as a batch's are.
    pub failure: Failure,
}

/// Coverage and failures after a number of runs.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Growth {
    /// Runs so far.
    pub runs: u64,
    /// Features reached so far.
    pub coverage: usize,
    /// Distinct failures so far.
    pub failures: usize,
}

/// What an exploration did.
#[derive(Clone, Debug, Serialize)]
pub struct ExploreReport {
    /// Scenario.
    pub scenario: String,
    /// Mutant, if any.
    pub mutant: Option<String>,
    /// Fault kinds cases could draw.
    pub faults: BTreeSet<FaultKind>,
    /// First fresh seed.
    pub start: u64,
    /// Runs asked for.
    pub runs_max: u64,
    /// Runs done (fewer with `fail_fast`).
    pub runs: u64,
    /// Of them, fresh draws.
    pub fresh: u64,
    /// Runs that passed.
    pub passed: u64,
    /// Runs that failed.
    pub failed: u64,
    /// Runs that were inconclusive.
    pub inconclusive: u64,
    /// Derived cases that could not run (a perturbed workload the scenario refused): not
    /// counted as runs.
    pub refused: u64,
    /// The run (1-based) of the first failure, if any.
    pub first_failure_run: Option<u64>,
    /// Each distinct failure (verdict and invariant), by its first run.
    pub failures: Vec<ExploreFailure>,
    /// Features reached by its runs (not counting those behind a stored pool it started from).
    pub coverage: usize,
    /// Cases in the pool at the end.
    pub pool: usize,
    /// Cases taken from the stored pool it started from ([`ExploreOptions::pool`]).
    pub pool_loaded: usize,
    /// Cases of that stored pool left out: they could not run with these options (a fault
    /// kind not allowed, a plan or workload the scenario refuses now).
    pub pool_skipped: usize,
    /// With [`ExploreOptions::keep_pool`]: the pool at the end, as stored.
    #[serde(skip)]
    pub kept_pool: Option<StoredPool>,
    /// Coverage and failures after each generation.
    pub growth: Vec<Growth>,
    /// Simulated seconds over all runs.
    pub sim_seconds: f64,
    /// Wall seconds.
    pub wall_seconds: f64,
    /// The share of inconclusive runs allowed ([`ExploreOptions::inconclusive_max`]).
    pub inconclusive_max: f64,
}

impl ExploreReport {
    /// Whether no run failed and few enough were inconclusive: an undecided run is never a
    /// pass.
    pub fn ok(&self) -> bool {
        self.failed == 0 && !self.too_inconclusive()
    }

    /// Whether more than one run ran and more than the allowed share was inconclusive.
    pub fn too_inconclusive(&self) -> bool {
        self.runs > 1 && self.inconclusive as f64 > self.inconclusive_max * self.runs as f64
    }
}

/// A case of the pool: it reached features no earlier run had.
struct PoolEntry {
    case: Case,
    /// The run that reached it; 0 for a case of a stored pool.
    run: u64,
    /// The seed whose draw its workload is, when it is one (it is stored as that seed).
    workload_seed: Option<u64>,
    /// The features its run reached.
    bits: Vec<u32>,
    /// How rare they are: the sum over them of 1 / the square of the runs that reached each,
    /// so that a feature few runs reach outweighs thousands that most runs reach (with 1 /
    /// runs, measured on the hard mutants, the pool's weight spread over common features and
    /// exploration caught them hardly sooner than random search).
    rarity: f64,
    /// Times a case was derived from it.
    chosen: u64,
}

/// A case decided for the next generation.
struct Planned {
    case: Case,
    origin: Origin,
    workload_seed: Option<u64>,
}

/// The explorer's state between generations.
struct Explorer<'a> {
    scenario: &'a dyn DynScenario,
    /// The scenario's spec, built once (derivations check cases against it).
    spec: crate::ScenarioSpec,
    options: &'a ExploreOptions,
    rng: Xoshiro256PlusPlus,
    next_fresh: u64,
    pool: Vec<PoolEntry>,
    seen: Coverage,
    /// Runs that reached each feature (bit).
    hits: Vec<u32>,
}

/// Explores `scenario`; `progress` is called after each generation.
pub fn explore(
    scenario: &dyn DynScenario,
    options: &ExploreOptions,
    progress: &mut dyn FnMut(&Growth),
) -> ExploreReport {
    #[allow(clippy::disallowed_methods)] // Wall time of the exploration, outside any run.
    let wall_start = std::time::Instant::now();
    let spec = scenario.spec();
    let batch_options = options.batch();
    let run_options = RunOptions {
        coverage: true,
        ..RunOptions::default()
    };
    let mut explorer = Explorer {
        scenario,
        spec: spec.clone(),
        options,
        rng: sim_core::rng::new_stream(options.start, "explore"),
        next_fresh: options.start,
        pool: Vec::new(),
        seen: Coverage::new(),
        hits: vec![0; COVERAGE_BITS],
    };
    let mut report = ExploreReport {
        scenario: spec.name.clone(),
        mutant: options.mutant.clone(),
        faults: options.faults.clone(),
        start: options.start,
        runs_max: options.runs,
        runs: 0,
        fresh: 0,
        passed: 0,
        failed: 0,
        inconclusive: 0,
        refused: 0,
        first_failure_run: None,
        failures: Vec::new(),
        coverage: 0,
        pool: 0,
        pool_loaded: 0,
        pool_skipped: 0,
        kept_pool: None,
        growth: Vec::new(),
        sim_seconds: 0.0,
        wall_seconds: 0.0,
        inconclusive_max: options.inconclusive_max,
    };
    // The features this exploration's own runs reached (a stored pool's are not counted).
    let mut own = Coverage::new();
    let mut stored_runs = 0;
    if let Some(stored) = &options.pool {
        // Its runs stand behind the features it counts only when those were taken in.
        if stored.faults == options.faults {
            stored_runs = stored.runs;
        }
        (report.pool_loaded, report.pool_skipped) = explorer.load(stored);
    }
    // Failing runs to settle after the exploration, with their kind's first run.
    let mut found: Vec<(u64, Origin, Found)> = Vec::new();
    let mut kinds: Vec<((String, Option<String>), u64)> = Vec::new();
    let mut sim_ns: u128 = 0;
    // Refused cases count against the budget too, so that the loop ends whatever happens.
    let mut stop = false;
    while !stop && report.runs + report.refused < options.runs {
        let size = GENERATION.min((options.runs - report.runs - report.refused) as usize);
        let planned: Vec<Planned> = (0..size).map(|_| explorer.plan()).collect();
        let results = run_generation(scenario, &planned, &run_options, options.jobs);
        for (planned, result) in planned.into_iter().zip(results) {
            let result = match result {
                Ok(result) => result,
                Err(_) => {
                    report.refused += 1;
                    continue;
                }
            };
            report.runs += 1;
            let run = report.runs;
            if planned.origin == Origin::Fresh {
                report.fresh += 1;
            }
            sim_ns += u128::from(result.sim_time_ns);
            if let Some(coverage) = &result.coverage {
                own.merge(coverage);
                let bits: Vec<u32> = coverage.bits().collect();
                for &bit in &bits {
                    let hits = &mut explorer.hits[bit as usize];
                    *hits = hits.saturating_add(1);
                }
                if explorer.seen.merge(coverage) > 0 {
                    explorer.pool.push(PoolEntry {
                        case: planned.case.clone(),
                        run,
                        workload_seed: planned.workload_seed,
                        bits,
                        rarity: 0.0,
                        chosen: 0,
                    });
                }
            }
            if result.verdict.is_failure() {
                report.failed += 1;
                report.first_failure_run.get_or_insert(run);
                let key = (
                    result.verdict.kind.name().to_string(),
                    result.verdict.invariant.clone(),
                );
                match kinds.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, count)) => *count += 1,
                    None => {
                        let checked =
                            batch::check_failure(scenario, planned.case, &result, &batch_options);
                        // Only a reproduced failure claims its kind: a nondeterministic one
                        // (or an error, a hang) is reported under its own verdict, so that a
                        // later run failing reproducibly that way is still shrunk and saved.
                        let key = match &checked {
                            Found::Reproduced { .. } => key,
                            Found::Final(failure) => {
                                (failure.verdict.clone(), failure.invariant.clone())
                            }
                        };
                        match kinds.iter_mut().find(|(k, _)| *k == key) {
                            Some((_, count)) => *count += 1,
                            None => {
                                kinds.push((key, 1));
                                found.push((run, planned.origin, checked));
                            }
                        }
                    }
                }
                if options.fail_fast {
                    stop = true;
                    break;
                }
            } else if result.verdict.kind == VerdictKind::Inconclusive {
                report.inconclusive += 1;
            } else {
                report.passed += 1;
            }
        }
        explorer.rate();
        let growth = Growth {
            runs: report.runs,
            coverage: own.count(),
            failures: kinds.len(),
        };
        report.growth.push(growth);
        progress(&growth);
    }
    report.failures = found
        .into_iter()
        .zip(kinds.iter().map(|(_, count)| *count))
        .map(|((run, origin, found), count)| ExploreFailure {
            run,
            origin,
            count,
            failure: match found {
                Found::Final(failure) => failure,
                Found::Reproduced { case, result } => {
                    batch::shrink_and_save(scenario, &case, &result, &batch_options)
                }
            },
        })
        .collect();
    report.coverage = own.count();
    report.pool = explorer.pool.len();
    if options.keep_pool {
        report.kept_pool = Some(explorer.stored(stored_runs + report.runs));
    }
    report.sim_seconds = sim_ns as f64 / 1e9;
    report.wall_seconds = wall_start.elapsed().as_secs_f64();
    report
}

/// One case derived from `parent` as the explorer derives from a pool case, with its choices
/// drawn from a stream seeded by `seed`: the case and the mutations applied, or `None` when
/// the mutations drawn gave nothing new or valid. To see what the explorer does to a case.
pub fn derive(
    scenario: &dyn DynScenario,
    options: &ExploreOptions,
    parent: &Case,
    seed: u64,
) -> Option<(Case, Vec<&'static str>)> {
    let mut explorer = Explorer {
        scenario,
        spec: scenario.spec(),
        options,
        rng: sim_core::rng::new_stream(seed, "explore"),
        next_fresh: options.start,
        pool: vec![PoolEntry {
            case: parent.clone(),
            run: 1,
            workload_seed: None,
            bits: Vec::new(),
            rarity: 1.0,
            chosen: 0,
        }],
        seen: Coverage::new(),
        hits: Vec::new(),
    };
    let planned = explorer.derive(0)?;
    match planned.origin {
        Origin::Derived { mutations, .. } => Some((planned.case, mutations)),
        Origin::Fresh => None,
    }
}

/// Runs a generation's cases on `jobs` workers; the results in the cases' order.
fn run_generation(
    scenario: &dyn DynScenario,
    planned: &[Planned],
    options: &RunOptions,
    jobs: usize,
) -> Vec<Result<RunResult, crate::case::CaseError>> {
    let results: Mutex<Vec<Option<Result<RunResult, crate::case::CaseError>>>> =
        Mutex::new((0..planned.len()).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let worker = || loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(one) = planned.get(index) else {
            break;
        };
        let result = scenario.run_case(&one.case, options);
        results.lock().expect("explore lock")[index] = Some(result);
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1).min(planned.len()) {
            // Workers only schedule runs; every run gets its own fresh thread inside sim-core.
            scope.spawn(worker);
        }
    });
    results
        .into_inner()
        .expect("explore lock")
        .into_iter()
        .map(|result| result.expect("every case ran"))
        .collect()
}

impl Explorer<'_> {
    /// The next case: fresh, or derived from the pool.
    fn plan(&mut self) -> Planned {
        if self.pool.is_empty() || self.rng.gen_bool(self.options.fresh_share.clamp(0.0, 1.0)) {
            return self.fresh();
        }
        for _ in 0..4 {
            let parent = self.choose();
            if let Some(planned) = self.derive(parent) {
                return planned;
            }
        }
        self.fresh()
    }

    fn fresh(&mut self) -> Planned {
        let seed = self.next_fresh;
        self.next_fresh = self.next_fresh.wrapping_add(1);
        Planned {
            case: self.draw(seed),
            origin: Origin::Fresh,
            workload_seed: Some(seed),
        }
    }

    fn draw(&self, seed: u64) -> Case {
        self.scenario.generate(
            seed,
            self.options.mutant.clone(),
            self.options.faults.clone(),
        )
    }

    /// A donor case: the draw of a seed no fresh run uses (from the explorer's stream).
    fn donor(&mut self) -> Case {
        self.donor_seeded().1
    }

    /// [`Self::donor`] with its seed.
    fn donor_seeded(&mut self) -> (u64, Case) {
        let seed = self.rng.gen::<u64>();
        (seed, self.draw(seed))
    }

    /// Rates the pool's cases by how rare what they reached is now, and keeps the
    /// [`ExploreOptions::pool_max`] rarest.
    fn rate(&mut self) {
        for entry in &mut self.pool {
            entry.rarity = entry
                .bits
                .iter()
                .map(|&bit| {
                    let runs = f64::from(self.hits[bit as usize].max(1));
                    1.0 / (runs * runs)
                })
                .sum();
        }
        if self.pool.len() > self.options.pool_max.max(1) {
            // Rarest first, the earlier run first among equals: a deterministic order.
            self.pool.sort_by(|a, b| {
                b.rarity
                    .total_cmp(&a.rarity)
                    .then_with(|| a.run.cmp(&b.run))
            });
            self.pool.truncate(self.options.pool_max.max(1));
            self.pool.sort_by_key(|entry| entry.run);
        }
    }

    /// Takes in a stored pool: the cases that can run with these options and, when the pool
    /// was learned with the same fault kinds, the runs behind each feature and the features
    /// as seen (learned with other kinds, they would keep this exploration's own new
    /// features out of its pool). How many cases joined and how many could not.
    fn load(&mut self, stored: &StoredPool) -> (usize, usize) {
        if stored.faults == self.options.faults {
            for &(bit, runs) in &stored.hits {
                if let Some(hits) = self.hits.get_mut(bit as usize) {
                    *hits = hits.saturating_add(runs);
                    self.seen.insert_bit(bit);
                }
            }
        }
        let (mut loaded, mut skipped) = (0, 0);
        for (index, one) in stored.cases.iter().enumerate() {
            let case = stored.case(
                index,
                self.scenario,
                &self.spec,
                self.options.mutant.clone(),
                &self.options.faults,
            );
            match case {
                Some(case) => {
                    self.pool.push(PoolEntry {
                        case,
                        run: 0,
                        workload_seed: one.workload_seed,
                        bits: one.bits.clone(),
                        rarity: 0.0,
                        chosen: 0,
                    });
                    loaded += 1;
                }
                None => skipped += 1,
            }
        }
        self.rate();
        (loaded, skipped)
    }

    /// The pool as stored, `runs` runs behind its features: the [`crate::pool::CASES_MAX`]
    /// cases that reached the rarest features, each with only its rare ones.
    fn stored(&self, runs: u64) -> StoredPool {
        let rare_max = StoredPool::rare_runs_max(runs);
        let mut order: Vec<usize> = (0..self.pool.len()).collect();
        order.sort_by(|&a, &b| {
            self.pool[b]
                .rarity
                .total_cmp(&self.pool[a].rarity)
                .then(a.cmp(&b))
        });
        order.truncate(crate::pool::CASES_MAX);
        order.sort_unstable();
        let cases = order
            .into_iter()
            .map(|index| {
                let entry = &self.pool[index];
                // A workload is stored as its seed only when drawing it again gives it.
                let workload_seed = entry.workload_seed.filter(|&seed| {
                    self.scenario
                        .generate(seed, None, self.options.faults.clone())
                        .workload
                        == entry.case.workload
                });
                StoredCase {
                    seed: entry.case.seed,
                    swarm: entry.case.swarm.clone(),
                    plan: entry.case.plan.clone(),
                    workload_seed,
                    workload: workload_seed.is_none().then(|| entry.case.workload.clone()),
                    bits: entry
                        .bits
                        .iter()
                        .copied()
                        .filter(|&bit| self.hits[bit as usize] <= rare_max)
                        .collect(),
                }
            })
            .collect();
        StoredPool {
            format: crate::pool::FORMAT.to_string(),
            scenario: self.spec.name.clone(),
            start: self.options.start,
            runs,
            faults: self.options.faults.clone(),
            hits: self
                .hits
                .iter()
                .enumerate()
                .filter(|(_, &runs)| runs > 0)
                .map(|(bit, &runs)| (bit as u32, runs))
                .collect(),
            cases,
            workloads: Default::default(),
        }
    }

    /// A pool entry, weighted toward cases that reached rare features and were derived from
    /// less.
    fn choose(&mut self) -> usize {
        let weight = |entry: &PoolEntry| entry.rarity / ((1 + entry.chosen) as f64).sqrt();
        let total: f64 = self.pool.iter().map(weight).sum();
        let mut point = self.rng.gen::<f64>() * total;
        for (index, entry) in self.pool.iter().enumerate() {
            point -= weight(entry);
            if point <= 0.0 {
                return index;
            }
        }
        self.pool.len() - 1
    }

    /// A case derived from pool entry `index`, or `None` when its mutations gave nothing
    /// new or valid.
    fn derive(&mut self, index: usize) -> Option<Planned> {
        self.pool[index].chosen += 1;
        let parent = self.pool[index].run;
        let mut case = self.pool[index].case.clone();
        let mut workload_seed = self.pool[index].workload_seed;
        let count = self.rng.gen_range(1..=MUTATIONS_MAX);
        let mut mutations = Vec::new();
        for _ in 0..count {
            if let Some(name) = self.mutate(&mut case, &mut workload_seed) {
                mutations.push(name);
            }
        }
        let budget = &self.spec.budget;
        case.plan = within_budget(case.plan, budget.down_max);
        case.plan.episodes.truncate(budget.episodes_max.max(1));
        case.plan.episodes.sort_by_key(|episode| episode.at_ms);
        let valid = check_case(&self.spec, &case).is_ok()
            && self.scenario.check_workload(&case.workload).is_ok();
        (valid && !mutations.is_empty() && case != self.pool[index].case).then_some(Planned {
            case,
            origin: Origin::Derived { parent, mutations },
            workload_seed,
        })
    }

    /// Applies one mutation; its name, or `None` when it did not apply. `workload_seed`
    /// follows what the workload is a draw of.
    fn mutate(&mut self, case: &mut Case, workload_seed: &mut Option<u64>) -> Option<&'static str> {
        let (plan_duration_ms, episode_duration_max_ms) = (
            self.spec.budget.plan_duration_ms,
            self.spec.budget.episode_duration_max_ms,
        );
        let episodes = case.plan.episodes.len();
        // Out of 20: changes of timing (a shifted, stretched or abutted episode) and changes
        // that keep what the case reached (another seed, an episode spliced in) most often,
        // since rare states are reached by the case that is mutated and lost by a fresh draw;
        // weighed on `harness/tests/explore_power.rs` and the hard mutants.
        let mutation = match self.rng.gen_range(0..20) {
            0 => Mutation::Add,
            1..=2 => Mutation::Splice,
            3..=4 => Mutation::Remove,
            5..=8 => Mutation::Shift,
            9..=10 => Mutation::Stretch,
            11 => Mutation::Retarget,
            12 => Mutation::Swarm,
            13 => Mutation::PerturbWorkload,
            14 => Mutation::Workload,
            15..=16 => Mutation::Reseed,
            _ => Mutation::Abut,
        };
        match mutation {
            Mutation::Add => {
                let donor = self.donor();
                let pick = donor.plan.episodes.len().checked_sub(1)?;
                let at = self.rng.gen_range(0..=pick);
                case.plan.episodes.push(donor.plan.episodes[at].clone());
                Some("add-episode")
            }
            Mutation::Remove => {
                let at = self
                    .rng
                    .gen_range(0..episodes.checked_sub(1).map(|n| n + 1)?);
                case.plan.episodes.remove(at);
                Some("remove-episode")
            }
            Mutation::Shift => {
                let at = self
                    .rng
                    .gen_range(0..episodes.checked_sub(1).map(|n| n + 1)?);
                let episode = &mut case.plan.episodes[at];
                let reach = (episode.at_ms / 2).max(250);
                // A distance drawn evenly over its doublings (1 ms as often as 128 ms), so
                // that a case that came near a timing window can be nudged into it.
                let octaves = 64 - reach.leading_zeros();
                let octave = self.rng.gen_range(0..octaves);
                let distance = self
                    .rng
                    .gen_range((1u64 << octave) / 2 + 1..=1u64 << octave);
                let shifted = if self.rng.gen_bool(0.5) {
                    episode.at_ms.saturating_add(distance)
                } else {
                    episode.at_ms.saturating_sub(distance)
                };
                episode.at_ms = shifted.min(plan_duration_ms);
                Some("shift-episode")
            }
            Mutation::Stretch => {
                let at = self
                    .rng
                    .gen_range(0..episodes.checked_sub(1).map(|n| n + 1)?);
                let longer = self.rng.gen_bool(0.5);
                let episode = &mut case.plan.episodes[at];
                let duration = episode.duration_ms?;
                let stretched = if longer { duration * 2 } else { duration / 2 };
                episode.duration_ms = Some(stretched.clamp(1, episode_duration_max_ms.max(1)));
                Some("stretch-episode")
            }
            Mutation::Retarget => {
                // The same time, another fault: of the same kind if a donor has one.
                let at = self
                    .rng
                    .gen_range(0..episodes.checked_sub(1).map(|n| n + 1)?);
                let kind = case.plan.episodes[at].fault.kind();
                let donor = self.donor();
                let fault = donor
                    .plan
                    .episodes
                    .iter()
                    .find(|episode| episode.fault.kind() == kind)
                    .or(donor.plan.episodes.first())?
                    .fault
                    .clone();
                case.plan.episodes[at].fault = fault;
                Some("retarget-episode")
            }
            Mutation::Swarm => {
                let donor = self.donor();
                case.swarm = donor.swarm;
                case.plan = donor.plan;
                Some("swarm")
            }
            Mutation::PerturbWorkload => {
                let mut workload = case.workload.clone();
                perturb(&mut workload, &mut self.rng).then(|| {
                    case.workload = workload;
                })?;
                *workload_seed = None;
                if self.scenario.check_workload(&case.workload).is_err() {
                    return None;
                }
                Some("perturb-workload")
            }
            Mutation::Workload => {
                let (seed, donor) = self.donor_seeded();
                case.workload = donor.workload;
                *workload_seed = Some(seed);
                Some("workload")
            }
            Mutation::Reseed => {
                case.seed = self.rng.gen();
                Some("reseed")
            }
            Mutation::Abut => {
                // One episode moved to start just after another ends (or, one time in four,
                // just before it starts, so that the two overlap from its edge): faults
                // meeting at a boundary (a crash right after a pause, a partition healing as a
                // node restarts) are where recovery code breaks, and random plans seldom place
                // them so.
                if episodes < 2 {
                    return None;
                }
                let anchor = self.rng.gen_range(0..episodes);
                let mut moved = self.rng.gen_range(0..episodes - 1);
                if moved >= anchor {
                    moved += 1;
                }
                let octave = self.rng.gen_range(0..8u32);
                let gap = self.rng.gen_range(0..=(1u64 << octave));
                let (start, end) = {
                    let a = &case.plan.episodes[anchor];
                    (a.at_ms, a.at_ms + a.duration_ms.unwrap_or(0))
                };
                let at = if self.rng.gen_bool(0.75) {
                    end + gap
                } else {
                    start.saturating_sub(gap)
                };
                case.plan.episodes[moved].at_ms = at.min(plan_duration_ms);
                Some("abut-episode")
            }
            Mutation::Splice => {
                // Another pool case's episode, chosen as parents are: what reached one rare
                // behaviour joins what reached another (a restart here, a duplicated message
                // there), as fuzzers splice inputs.
                let other = self.choose();
                let donor = &self.pool[other].case.plan.episodes;
                let pick = donor.len().checked_sub(1)?;
                let episode = donor[self.rng.gen_range(0..=pick)].clone();
                case.plan.episodes.push(episode);
                Some("splice-episode")
            }
        }
    }
}

/// The ways a case is mutated.
#[derive(Clone, Copy)]
enum Mutation {
    Add,
    Splice,
    Remove,
    Shift,
    Stretch,
    Retarget,
    Swarm,
    PerturbWorkload,
    Workload,
    Reseed,
    Abut,
}

/// Perturbs one part of a workload (as JSON): an array loses, repeats or swaps elements, or a
/// number moves a little; whether anything changed. Whether the result is a valid workload
/// is for the scenario to say.
fn perturb(value: &mut serde_json::Value, rng: &mut Xoshiro256PlusPlus) -> bool {
    // Every array and number in the tree, by a path of indices, in document order.
    let mut spots = Vec::new();
    collect_spots(value, &mut Vec::new(), &mut spots);
    if spots.is_empty() {
        return false;
    }
    let path = spots.swap_remove(rng.gen_range(0..spots.len()));
    let Some(spot) = walk(value, &path) else {
        return false;
    };
    match spot {
        serde_json::Value::Array(items) if !items.is_empty() => {
            let at = rng.gen_range(0..items.len());
            match rng.gen_range(0..3) {
                0 => {
                    items.remove(at);
                }
                1 => {
                    let copy = items[at].clone();
                    items.insert(at, copy);
                }
                _ => {
                    let other = rng.gen_range(0..items.len());
                    items.swap(at, other);
                }
            }
            true
        }
        serde_json::Value::Number(number) => {
            if let Some(n) = number.as_u64() {
                let moved = match rng.gen_range(0..4) {
                    0 => n.saturating_add(1),
                    1 => n.saturating_sub(1),
                    2 => n.saturating_mul(2),
                    _ => n / 2,
                };
                *spot = serde_json::Value::from(moved);
                true
            } else if let Some(x) = number.as_f64() {
                let factor = if rng.gen_bool(0.5) { 0.5 } else { 2.0 };
                *spot = serde_json::Value::from(x * factor);
                true
            } else {
                false
            }
        }
        _ => false,
    }
}

fn collect_spots(value: &serde_json::Value, path: &mut Vec<String>, spots: &mut Vec<Vec<String>>) {
    match value {
        serde_json::Value::Array(items) => {
            spots.push(path.clone());
            for (index, item) in items.iter().enumerate() {
                path.push(index.to_string());
                collect_spots(item, path, spots);
                path.pop();
            }
        }
        serde_json::Value::Object(fields) => {
            // serde_json's map iterates in a fixed order (sorted, or as serialized): stable.
            for (key, item) in fields {
                path.push(key.clone());
                collect_spots(item, path, spots);
                path.pop();
            }
        }
        serde_json::Value::Number(_) => spots.push(path.clone()),
        _ => {}
    }
}

fn walk<'a>(
    value: &'a mut serde_json::Value,
    path: &[String],
) -> Option<&'a mut serde_json::Value> {
    let mut here = value;
    for step in path {
        here = match here {
            serde_json::Value::Array(items) => items.get_mut(step.parse::<usize>().ok()?)?,
            serde_json::Value::Object(fields) => fields.get_mut(step)?,
            _ => return None,
        };
    }
    Some(here)
}
