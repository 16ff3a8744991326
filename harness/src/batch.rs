//! Running many seeds of a scenario in parallel: the engine behind `dst run` and the
//! `cargo test` integration.

use crate::case::{Case, DynScenario, RunOptions, RunResult, Verdict, VerdictKind};
use crate::corpus::{self, CaseFile};
use crate::invariant::InvariantKind;
use crate::plan::FaultKind;
use crate::scenario::ScenarioSpec;
use crate::shrink;
use serde::{Deserialize, Serialize};
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
    /// Invariants muted in every run (`--skip-invariant`): their violations are noted and the
    /// runs go on checking the others.
    pub skip_invariants: BTreeSet<String>,
    /// A judged (unsharded) batch fails when more than one seed ran and more than this share
    /// of them were inconclusive (`--inconclusive-max`).
    pub inconclusive_max: f64,
}

/// The default of [`BatchOptions::inconclusive_max`]: one seed in a hundred.
pub const INCONCLUSIVE_MAX_DEFAULT: f64 = 0.01;

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
            skip_invariants: BTreeSet::new(),
            inconclusive_max: INCONCLUSIVE_MAX_DEFAULT,
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

    pub(crate) fn run_options(&self, keep_trace: bool) -> RunOptions {
        RunOptions {
            keep_trace,
            keep_history: false,
            log: None,
            skip_invariants: self.skip_invariants.clone(),
            coverage: false,
        }
    }
}

/// One failing seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// Whether the shrunk plan was checked 1-minimal (every episode left is needed); `None`
    /// when the plan was not shrunk.
    #[serde(default)]
    pub plan_minimal: Option<bool>,
    /// Set when the failure is a determinism failure: the first diverging event.
    pub divergence: Option<String>,
    /// When a lower seed of the batch failed the same way (verdict and invariant), that seed:
    /// only its case is shrunk and saved, and this failure is reported as found.
    #[serde(default)]
    pub same_as: Option<u64>,
}

/// One seed whose run could not be judged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InconclusiveSeed {
    /// The seed.
    pub seed: u64,
    /// Why it could not be judged (a checker's "unknown", a full history, ...).
    pub reason: String,
}

/// The result of a batch; its JSON form is what `dst run --json` prints and `dst merge` reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchReport {
    /// Scenario name.
    pub scenario: String,
    /// First seed of the hunt.
    pub start: u64,
    /// Seeds in the hunt, before sharding.
    pub seeds: u64,
    /// The part of the hunt this batch ran (`"K/N"`), if sharded.
    #[serde(with = "shard_text")]
    pub shard: Option<(u64, u64)>,
    /// Mutant switched on, if any.
    pub mutant: Option<String>,
    /// Fault kinds allowed.
    pub faults: BTreeSet<FaultKind>,
    /// Invariants muted (`--skip-invariant`).
    pub skipped_invariants: Vec<String>,
    /// Seeds run: `passed + failed + inconclusive`.
    pub seeds_run: u64,
    /// Seeds that passed.
    pub passed: u64,
    /// Seeds that failed.
    pub failed: u64,
    /// Seeds that could not be judged.
    pub inconclusive: u64,
    /// Whether every seed was run twice and the two traces compared (`--check-determinism`).
    #[serde(default)]
    pub determinism_checked: bool,
    /// Failures that were nondeterministic: a rerun of the seed did not repeat the first run.
    #[serde(default)]
    pub nondeterministic: u64,
    /// The failures, by seed.
    pub failures: Vec<Failure>,
    /// The inconclusive seeds, by seed.
    pub inconclusive_seeds: Vec<InconclusiveSeed>,
    /// Sometimes-invariants never reached (judged only on large enough batches).
    pub sometimes_unmet: Vec<String>,
    /// Whether sometimes-invariants were judged: the batch was large enough, unmutated,
    /// unsharded, and ran the scenario's whole fault model.
    pub sometimes_judged: bool,
    /// Why sometimes-invariants were not judged, when they were not.
    pub sometimes_reason: Option<String>,
    /// Sometimes-invariants reached by at least one run (merge these across shards).
    pub sometimes_reached: Vec<String>,
    /// Simulated seconds, summed over runs.
    pub sim_seconds: f64,
    /// Wall-clock seconds of the batch.
    pub wall_seconds: f64,
    /// The inconclusive share past which this batch fails; `None` for a shard, which is
    /// never judged on the share alone. Not part of the JSON: `dst merge` takes its own.
    #[serde(skip)]
    pub inconclusive_max: Option<f64>,
}

impl BatchReport {
    /// Whether everything passed: no failure, no unmet sometimes-invariant, and (for a
    /// judged batch) not too many inconclusive seeds.
    pub fn ok(&self) -> bool {
        self.failed == 0 && self.sometimes_unmet.is_empty() && !self.too_inconclusive()
    }

    /// Whether a judged batch had more than one seed and more than its allowed share of
    /// inconclusive seeds.
    pub fn too_inconclusive(&self) -> bool {
        self.inconclusive_max.is_some_and(|max| {
            self.seeds_run > 1 && self.inconclusive as f64 > max * self.seeds_run as f64
        })
    }

    /// Judges the batch as a whole: sometimes-invariants (only for the whole fault model,
    /// unmutated, unsharded, with at least the scenario's batch minimum of seeds) and the
    /// inconclusive share (only unsharded).
    pub fn judge(&mut self, spec: &ScenarioSpec, inconclusive_max: f64) {
        let mut reasons = Vec::new();
        if let Some((k, n)) = self.shard {
            reasons.push(format!("shard {k}/{n}: merge the shards with dst merge"));
        }
        if let Some(mutant) = &self.mutant {
            reasons.push(format!("mutant {mutant} is on"));
        }
        // With fewer fault kinds than the model, a state may be out of reach.
        if !spec.budget.kinds.is_subset(&self.faults) {
            reasons.push(format!(
                "fault kinds {} are not the whole model ({})",
                kinds_text(&self.faults),
                kinds_text(&spec.budget.kinds)
            ));
        }
        if self.seeds_run < spec.sometimes_batch_min as u64 {
            reasons.push(format!(
                "{} seeds run, fewer than the {} needed",
                self.seeds_run, spec.sometimes_batch_min
            ));
        }
        self.sometimes_judged = reasons.is_empty();
        self.sometimes_reason = (!reasons.is_empty()).then(|| reasons.join("; "));
        self.sometimes_unmet = if self.sometimes_judged {
            spec.invariants
                .iter()
                .filter(|i| i.kind() == InvariantKind::Sometimes)
                .map(|i| i.name().to_string())
                .filter(|name| !self.sometimes_reached.contains(name))
                .collect()
        } else {
            Vec::new()
        };
        self.inconclusive_max = self.shard.is_none().then_some(inconclusive_max);
    }
}

fn kinds_text(kinds: &BTreeSet<FaultKind>) -> String {
    if kinds.is_empty() {
        return "none".into();
    }
    let names: Vec<String> = kinds
        .iter()
        .map(|kind| {
            serde_json::to_value(kind)
                .ok()
                .and_then(|value| value.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("{kind:?}"))
        })
        .collect();
    names.join(",")
}

/// `Option<(k, n)>` as `"k/n"` or `null`.
mod shard_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(shard: &Option<(u64, u64)>, s: S) -> Result<S::Ok, S::Error> {
        match shard {
            Some((k, n)) => s.serialize_str(&format!("{k}/{n}")),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<(u64, u64)>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        super::parse_shard(&text)
            .map(Some)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses `K/N` with `1 <= K <= N`.
pub fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("expected K/N with 1 <= K <= N, got {text:?}");
    let (k, n) = text.split_once('/').ok_or_else(bad)?;
    let k: u64 = k.trim().parse().map_err(|_| bad())?;
    let n: u64 = n.trim().parse().map_err(|_| bad())?;
    if k == 0 || n == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

#[derive(Default)]
struct Collected {
    failures: Vec<Found>,
    inconclusive: Vec<InconclusiveSeed>,
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
    let collected = Mutex::new(Collected::default());
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
        match outcome.judged {
            Judged::Pass => c.passed += 1,
            Judged::Inconclusive(reason) => c.inconclusive.push(InconclusiveSeed { seed, reason }),
            Judged::Failed(failure) => {
                c.failures.push(*failure);
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
    c.inconclusive.sort_by_key(|seed| seed.seed);
    let failures = settle_failures(scenario, std::mem::take(&mut c.failures), options);
    let nondeterministic = failures
        .iter()
        .filter(|f| f.verdict == VerdictKind::Nondeterministic.name())
        .count() as u64;
    let mut report = BatchReport {
        scenario: spec.name.clone(),
        start: options.start,
        seeds: options.seeds,
        shard: options.shard,
        mutant: options.mutant.clone(),
        faults: options.faults.clone(),
        skipped_invariants: options.skip_invariants.iter().cloned().collect(),
        seeds_run: c.run,
        passed: c.passed,
        failed: failures.len() as u64,
        inconclusive: c.inconclusive.len() as u64,
        determinism_checked: options.check_determinism,
        nondeterministic,
        failures,
        inconclusive_seeds: c.inconclusive,
        sometimes_unmet: Vec::new(),
        sometimes_judged: false,
        sometimes_reason: None,
        sometimes_reached: c.reached.into_iter().collect(),
        sim_seconds: c.sim_ns as f64 / 1e9,
        wall_seconds: wall_start.elapsed().as_secs_f64(),
        inconclusive_max: None,
    };
    report.judge(&spec, options.inconclusive_max);
    report
}

enum Judged {
    Pass,
    Inconclusive(String),
    Failed(Box<Found>),
}

/// A failing seed as its worker left it.
pub(crate) enum Found {
    /// Reported as it is: nondeterministic, `error`, `hung`, or refused input.
    Final(Failure),
    /// Reproduced by a rerun: shrunk and saved after the batch if it is the lowest seed
    /// failing its way.
    Reproduced { case: Case, result: Box<RunResult> },
}

impl Found {
    fn seed(&self) -> u64 {
        match self {
            Found::Final(failure) => failure.seed,
            Found::Reproduced { case, .. } => case.seed,
        }
    }
}

struct SeedOutcome {
    judged: Judged,
    reached: BTreeSet<String>,
    sim_ns: u64,
}

fn run_seed(scenario: &dyn DynScenario, seed: u64, options: &BatchOptions) -> SeedOutcome {
    let case = scenario.generate(seed, options.mutant.clone(), options.faults.clone());
    let run_options = options.run_options(options.check_determinism);
    let result = match scenario.run_case(&case, &run_options) {
        Ok(result) => result,
        Err(error) => {
            return SeedOutcome {
                judged: Judged::Failed(Box::new(Found::Final(input_failure(
                    seed,
                    error.to_string(),
                )))),
                reached: BTreeSet::new(),
                sim_ns: 0,
            }
        }
    };
    let judged = if result.verdict.is_failure() {
        Judged::Failed(Box::new(check_failure(scenario, case, &result, options)))
    } else if let Some(failure) = options
        .check_determinism
        .then(|| determinism_failure(scenario, &case, &result, &run_options))
        .flatten()
    {
        Judged::Failed(Box::new(Found::Final(failure)))
    } else if result.verdict.kind == VerdictKind::Inconclusive {
        let reason = result.verdict.message.clone();
        Judged::Inconclusive(reason.unwrap_or_else(|| "no reason given".into()))
    } else {
        Judged::Pass
    };
    SeedOutcome {
        judged,
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
        plan_minimal: None,
        divergence: None,
        same_as: None,
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
    if same_run(first, &second) {
        return None;
    }
    Some(nondeterministic(
        case,
        first,
        &second,
        divergence(first, &second, ("first run", "second run")),
    ))
}

fn same_run(first: &RunResult, second: &RunResult) -> bool {
    second.trace_hash == first.trace_hash && second.verdict == first.verdict
}

/// The first diverging event of two runs whose timelines were kept.
fn divergence(first: &RunResult, second: &RunResult, names: (&str, &str)) -> String {
    match (&first.timeline, &second.timeline) {
        (Some(a), Some(b)) => match a.first_divergence(b) {
            Some((i, j)) => format!(
                "{}: {} / {}: {}",
                names.0,
                a.events.get(i).map_or("(end)".into(), |e| a.format_line(e)),
                names.1,
                b.events.get(j).map_or("(end)".into(), |e| b.format_line(e)),
            ),
            None => "same events, different verdict".into(),
        },
        _ => "hashes differ (run with --check-determinism to see the event)".into(),
    }
}

fn nondeterministic(
    case: &Case,
    first: &RunResult,
    second: &RunResult,
    divergence: String,
) -> Failure {
    Failure {
        seed: case.seed,
        verdict: VerdictKind::Nondeterministic.name().into(),
        invariant: first.verdict.invariant.clone(),
        message: Some(format!(
            "first run: {} (trace hash {}); second run: {} (trace hash {})",
            first.verdict,
            corpus::hex(first.trace_hash),
            second.verdict,
            corpus::hex(second.trace_hash)
        )),
        trace_hash: corpus::hex(first.trace_hash),
        file: None,
        plan: case.plan.to_string(),
        episodes: (case.plan.episodes.len(), case.plan.episodes.len()),
        plan_minimal: None,
        divergence: Some(divergence),
        same_as: None,
    }
}

/// Reruns a failing case with its trace kept; a failure that does not reproduce is
/// `nondeterministic`, with the first diverging event.
fn reproduce(
    scenario: &dyn DynScenario,
    case: &Case,
    first: &RunResult,
    options: &BatchOptions,
) -> Option<Failure> {
    let traced = options.run_options(true);
    let second = match scenario.run_case(case, &traced) {
        Ok(second) => second,
        Err(error) => return Some(input_failure(case.seed, error.to_string())),
    };
    if same_run(first, &second) {
        return None;
    }
    let text = if first.timeline.is_some() {
        divergence(first, &second, ("first run", "second run"))
    } else {
        // The first run kept no trace: a third run shows where the reruns part, if they do.
        match scenario.run_case(case, &traced) {
            Ok(third) if !same_run(&second, &third) => {
                divergence(&second, &third, ("second run", "third run"))
            }
            _ => "the first run (trace not kept) differs from two reruns that agree".into(),
        }
    };
    Some(nondeterministic(case, first, &second, text))
}

/// Checks that a failure reproduces. A failure that does not is `nondeterministic`; an
/// `error` and a `hung` run are reported as found, never shrunk nor saved.
pub(crate) fn check_failure(
    scenario: &dyn DynScenario,
    case: Case,
    result: &RunResult,
    options: &BatchOptions,
) -> Found {
    // A hung run took the whole wall-clock watchdog and its trace depends on when the
    // watchdog fired: it is neither rerun, shrunk nor saved; its seed is reported.
    let hung = result.verdict.kind == VerdictKind::Hung;
    if !hung {
        if let Some(failure) = reproduce(scenario, &case, result, options) {
            return Found::Final(failure);
        }
    }
    if hung || result.verdict.kind == VerdictKind::Error {
        return Found::Final(as_found(&case, result, None));
    }
    Found::Reproduced {
        case,
        result: Box::new(RunResult {
            // The timeline served the rerun's comparison; the report needs none.
            timeline: None,
            ..result.clone()
        }),
    }
}

/// A failure reported as it was found: not shrunk, not saved.
pub(crate) fn as_found(case: &Case, result: &RunResult, same_as: Option<u64>) -> Failure {
    Failure {
        seed: case.seed,
        verdict: result.verdict.kind.name().into(),
        invariant: result.verdict.invariant.clone(),
        message: result.verdict.message.clone(),
        trace_hash: corpus::hex(result.trace_hash),
        file: None,
        plan: case.plan.to_string(),
        episodes: (case.plan.episodes.len(), case.plan.episodes.len()),
        plan_minimal: None,
        divergence: None,
        same_as,
    }
}

/// The batch's failures by seed, each reproduced one settled: the lowest seed failing each
/// way (verdict and invariant) is shrunk and saved, the others point at it.
///
/// Done after the batch rather than as failures come in, so the case kept is the same
/// whatever `--jobs` and timing, and each distinct failure is shrunk once (shrinking costs
/// hundreds of runs; the distinct failures are shrunk in parallel).
fn settle_failures(
    scenario: &dyn DynScenario,
    mut found: Vec<Found>,
    options: &BatchOptions,
) -> Vec<Failure> {
    found.sort_by_key(Found::seed);
    let mut first_of_kind: std::collections::BTreeMap<(String, Option<String>), u64> =
        Default::default();
    let mut representatives = Vec::new();
    for item in &found {
        if let Found::Reproduced { case, result } = item {
            let key = (
                result.verdict.kind.name().to_string(),
                result.verdict.invariant.clone(),
            );
            first_of_kind.entry(key).or_insert_with(|| {
                representatives.push((case, result));
                case.seed
            });
        }
    }
    let settled = Mutex::new(std::collections::BTreeMap::new());
    let next = AtomicU64::new(0);
    let worker = || loop {
        let index = next.fetch_add(1, Ordering::Relaxed) as usize;
        let Some((case, result)) = representatives.get(index) else {
            break;
        };
        let failure = shrink_and_save(scenario, case, result, options);
        settled
            .lock()
            .expect("settle lock")
            .insert(case.seed, failure);
    };
    std::thread::scope(|scope| {
        for _ in 0..options.jobs.max(1).min(representatives.len()) {
            // Workers only schedule runs; every run gets its own fresh thread inside sim-core.
            scope.spawn(worker);
        }
    });
    let mut settled = settled.into_inner().expect("settle lock");
    found
        .iter()
        .map(|item| match item {
            Found::Final(failure) => failure.clone(),
            Found::Reproduced { case, result } => match settled.remove(&case.seed) {
                Some(failure) => failure,
                None => {
                    let key = (
                        result.verdict.kind.name().to_string(),
                        result.verdict.invariant.clone(),
                    );
                    as_found(case, result, first_of_kind.get(&key).copied())
                }
            },
        })
        .collect()
}

/// Shrinks a reproduced failure (if asked) and saves it; a shrunk case that no longer fails
/// the same way is not saved in place of the found one.
pub(crate) fn shrink_and_save(
    scenario: &dyn DynScenario,
    case: &Case,
    result: &RunResult,
    options: &BatchOptions,
) -> Failure {
    let (case_out, verdict, hash, plan_minimal) = if options.shrink {
        let shrunk = shrink::shrink(scenario, case, &result.verdict, &options.run_options(false));
        if shrunk.reproduced && shrunk.verdict.same_failure(&result.verdict) {
            let minimal = Some(shrunk.minimal);
            (shrunk.case, shrunk.verdict, shrunk.trace_hash, minimal)
        } else {
            // The shrunk case did not fail the same way when rerun: keep the found case,
            // which reproduced.
            (
                case.clone(),
                result.verdict.clone(),
                result.trace_hash,
                None,
            )
        }
    } else {
        (
            case.clone(),
            result.verdict.clone(),
            result.trace_hash,
            None,
        )
    };
    // A case the explorer derived is not its seed's: its file must not say a seed found it.
    let derived = scenario.generate(case.seed, case.mutant.clone(), case.faults.clone()) != *case;
    let file = options
        .corpus_dir
        .as_ref()
        .and_then(|dir| save(dir, case, &case_out, &verdict, hash, options, derived));
    Failure {
        seed: case.seed,
        verdict: verdict.kind.name().into(),
        invariant: verdict.invariant.clone(),
        message: verdict.message.clone(),
        trace_hash: corpus::hex(hash),
        file,
        plan: case_out.plan.to_string(),
        episodes: (case.plan.episodes.len(), case_out.plan.episodes.len()),
        plan_minimal,
        divergence: None,
        same_as: None,
    }
}

fn save(
    dir: &std::path::Path,
    found: &Case,
    case: &Case,
    verdict: &Verdict,
    hash: u64,
    options: &BatchOptions,
    derived: bool,
) -> Option<String> {
    assert!(verdict.is_failure(), "only failures are saved: {verdict}");
    let mut description = describe(case, verdict, found.plan.episodes.len());
    if derived {
        description = description.replacen(
            &format!("found by seed {}", case.seed),
            &format!(
                "found by exploration (a derived case, simulation seed {})",
                case.seed
            ),
            1,
        );
    }
    let mut file = CaseFile::new(
        case,
        verdict.kind,
        verdict.invariant.clone(),
        hash,
        description,
    );
    file.skip_invariants = options.skip_invariants.clone();
    match corpus::save_failure(dir, &file) {
        Ok(path) => Some(path.display().to_string()),
        Err(error) => {
            eprintln!("dst: cannot save the failing case: {error}");
            None
        }
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

/// How often a scenario's sometimes-invariants are reached over a range of seeds, from
/// [`sometimes_coverage`]: what a scenario's `sometimes_batch_min` is set from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SometimesCoverage {
    /// The sometimes-invariant.
    pub invariant: String,
    /// Seeds whose run reached it.
    pub reached: u64,
    /// The longest run of consecutive seeds that did not reach it (at the start, between two
    /// reaching seeds, or at the end).
    pub gap_longest: u64,
}

/// Runs `seeds` seeds from `start` (unmutated, every fault kind) and measures, for each
/// sometimes-invariant, how many seeds reach it and the longest stretch of seeds that does not.
/// Every window of `max(gap_longest) + 1` consecutive seeds of the range reaches every one:
/// the smallest batch minimum this range supports (a longer range measures it better).
pub fn sometimes_coverage(
    scenario: &dyn DynScenario,
    start: u64,
    seeds: u64,
    jobs: usize,
) -> Vec<SometimesCoverage> {
    let spec = scenario.spec();
    let faults: BTreeSet<FaultKind> = FaultKind::ALL.into_iter().collect();
    let end = start.saturating_add(seeds);
    let next = AtomicU64::new(start);
    let reached_by_seed = Mutex::new(std::collections::BTreeMap::new());
    let worker = || loop {
        let claimed = next.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |seed| {
            (seed < end).then_some(seed + 1)
        });
        let Ok(seed) = claimed else {
            break;
        };
        let case = scenario.generate(seed, None, faults.clone());
        let reached = scenario
            .run_case(&case, &RunOptions::default())
            .map(|result| result.sometimes)
            .unwrap_or_default();
        reached_by_seed
            .lock()
            .expect("coverage lock")
            .insert(seed, reached);
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            // Workers only schedule runs; every run gets its own fresh thread inside sim-core.
            scope.spawn(worker);
        }
    });
    let reached_by_seed = reached_by_seed.into_inner().expect("coverage lock");
    spec.invariant_names(InvariantKind::Sometimes)
        .into_iter()
        .map(|name| {
            let (mut reached, mut gap, mut gap_longest) = (0, 0, 0);
            for seen in reached_by_seed.values() {
                if seen.contains(&name) {
                    reached += 1;
                    gap = 0;
                } else {
                    gap += 1;
                    gap_longest = gap_longest.max(gap);
                }
            }
            SometimesCoverage {
                invariant: name,
                reached,
                gap_longest,
            }
        })
        .collect()
}
