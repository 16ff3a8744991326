//! `dst bench`: how fast this machine simulates, measured in one run, side by side with madsim.
//!
//! Four measurements, each as a ratio against a contender measured in the same process
//! where there is one, so that a slower or busier machine slows both alike:
//!
//! 1. sim-core's network against raw madsim `Endpoint`s on the same ping-pong (messages per
//!    wall second), and sim-core's empty run against an empty madsim runtime on a fresh
//!    thread (runs per second): the fixed cost of a run ([`sim_core::bench`] holds both);
//! 2. each registered scenario, unmutated, with every fault kind and its default workload:
//!    runs per second and simulated seconds per wall second with one job, then the same seeds
//!    with all jobs (the parallel speedup);
//! 3. resident memory at the start and at the end of a long batch over every scenario;
//! 4. for one mutant of each scenario, the wall time from its first failing seed to the shrunk
//!    case saved on disk (in a temporary folder, never the corpus), as `dst run` does it: the
//!    rerun that checks the failure reproduces, the shrinking, the save.
//!
//! Nothing here is simulated: it reads real time and starts real threads, like the batch
//! runner. Measurements are of wall time on a possibly shared machine: compare ratios, not
//! absolute numbers, and never assert on them in tests.

use crate::batch::{run_batch, BatchOptions, BatchReport};
use crate::case::{DynScenario, Registry, RunOptions, VerdictKind};
use crate::plan::FaultKind;
use serde::{Deserialize, Serialize};
use sim_core::bench::{self as sim_bench, Measured};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How much to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Worker threads of the "all jobs" measurements.
    pub jobs: usize,
    /// A token amount of every measurement (for tests of the output's shape): the numbers
    /// mean nothing, and the first failure is searched in the first scenario only.
    pub quick: bool,
}

/// The targets the project set for `dst bench` (its issue 17), checked in [`BenchReport`].
pub mod targets {
    /// `net_vs_madsim_ratio` at least this.
    pub const NET_VS_MADSIM_RATIO_MIN: f64 = 2.0;
    /// `empty_run_vs_madsim_ratio` at least this.
    pub const EMPTY_RUN_VS_MADSIM_RATIO_MIN: f64 = 1.0;
    /// `parallel_speedup` at least this (on 2 cores).
    pub const PARALLEL_SPEEDUP_MIN: f64 = 1.8;
    /// `rss_mb_end` at most this times `rss_mb_start`, plus [`RSS_GROWTH_MB_MAX`].
    pub const RSS_GROWTH_FACTOR_MAX: f64 = 1.1;
    /// See [`RSS_GROWTH_FACTOR_MAX`].
    pub const RSS_GROWTH_MB_MAX: f64 = 1.0;
    /// `first_failure_to_case_seconds` below this.
    pub const FIRST_FAILURE_TO_CASE_SECONDS_MAX: f64 = 10.0;
}

/// What `dst bench --json` prints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// sim-core's ping-pong messages per wall second divided by raw madsim's.
    pub net_vs_madsim_ratio: f64,
    /// The ping-pong behind `net_vs_madsim_ratio`.
    pub net: NetSpeed,
    /// sim-core's empty runs per second divided by an empty madsim runtime's on a fresh thread
    /// (each the rate of its median run).
    pub empty_run_vs_madsim_ratio: f64,
    /// The empty runs behind `empty_run_vs_madsim_ratio`.
    pub empty_runs: EmptyRuns,
    /// Every scenario's seeds with `jobs` workers against one worker: the ratio of their wall
    /// times, summed over scenarios.
    pub parallel_speedup: f64,
    /// Workers of the "all jobs" measurements.
    pub jobs: usize,
    /// Resident memory (MiB) at the start of the long batch; `null` where unknown (not Linux).
    pub rss_mb_start: Option<f64>,
    /// Resident memory (MiB) at its end.
    pub rss_mb_end: Option<f64>,
    /// The most resident memory (MiB) seen between its chunks.
    pub rss_mb_max: Option<f64>,
    /// Runs of the long batch.
    pub long_batch_runs: u64,
    /// Wall seconds of the long batch.
    pub long_batch_seconds: f64,
    /// The slowest of `first_failures`, in seconds; `null` when no mutant failed.
    pub first_failure_to_case_seconds: Option<f64>,
    /// One mutant per scenario: from its first failure to its shrunk, saved case.
    pub first_failures: Vec<FirstFailure>,
    /// Each scenario's speed.
    pub scenarios: Vec<ScenarioSpeed>,
    /// The project's targets, each met or not.
    pub targets: Vec<Target>,
    /// Whether this was `--quick` (numbers not meaningful).
    pub quick: bool,
    /// Whether the binary was built with debug assertions (numbers not meaningful).
    pub debug_build: bool,
    /// Wall seconds of the whole bench.
    pub wall_seconds: f64,
}

/// The ping-pong of part 1: 2 nodes, latency 1-10 ms, in short rounds of each contender in
/// turn; each number is from the median round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetSpeed {
    /// Rounds of each contender.
    pub rounds: u32,
    /// Round trips per round.
    pub round_trips: u32,
    /// sim-core `Socket`s: messages per wall second.
    pub sim_core_msgs_per_second: f64,
    /// Raw madsim `Endpoint`s: messages per wall second.
    pub madsim_msgs_per_second: f64,
    /// The median over rounds of sim-core's messages per second divided by madsim's in the
    /// same round: `net_vs_madsim_ratio`.
    pub ratio: f64,
    /// sim-core: simulated seconds per wall second.
    pub sim_core_sim_wall_ratio: f64,
    /// madsim: simulated seconds per wall second.
    pub madsim_sim_wall_ratio: f64,
}

/// The empty runs of part 1: 2 nodes and no message, interleaved run by run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmptyRuns {
    /// Runs of each contender.
    pub runs: u64,
    /// sim-core runs per second, from its median run.
    pub sim_core_runs_per_second: f64,
    /// madsim (fresh thread) runs per second, from its median run.
    pub madsim_runs_per_second: f64,
    /// sim-core runs per second over the total wall time (hit by preemption).
    pub sim_core_runs_per_second_total: f64,
    /// madsim runs per second over the total wall time.
    pub madsim_runs_per_second_total: f64,
}

/// One scenario's speed (part 2): unmutated, every fault kind, the default workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioSpeed {
    /// Scenario name.
    pub name: String,
    /// Seeds run (the same ones with one job and with all).
    pub seeds: u64,
    /// Runs per wall second with one job.
    pub runs_per_second: f64,
    /// Simulated seconds per wall second with one job.
    pub sim_wall_ratio: f64,
    /// Runs per wall second with all jobs.
    pub runs_per_second_all_jobs: f64,
    /// Simulated seconds per wall second with all jobs.
    pub sim_wall_ratio_all_jobs: f64,
    /// Seeds that failed (an unmutated scenario should have none).
    pub failed: u64,
}

/// One mutant's way from first failure to saved case (part 4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FirstFailure {
    /// Scenario name.
    pub scenario: String,
    /// The mutant switched on.
    pub mutant: String,
    /// Its lowest failing seed (searched from 0, every fault kind).
    pub seed: u64,
    /// Wall seconds from the end of the failing run to the saved case: the rerun that checks
    /// it reproduces, the shrinking, the save.
    pub seconds: f64,
    /// Seeds of the mutant searched up to the failure, the failing one included.
    pub seeds_searched: u64,
    /// Episodes of the plan as found and as saved.
    pub episodes: (usize, usize),
    /// Whether a case file was saved (not for `error`, `hung` or `nondeterministic`).
    pub saved: bool,
}

/// One target and whether it was met.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// What is measured, as named in the JSON.
    pub name: String,
    /// The target, readable (`>= 2.0`).
    pub bound: String,
    /// The measured value, `null` when it could not be measured.
    pub value: Option<f64>,
    /// Whether it was met.
    pub met: bool,
}

/// Wall-clock time, outside any simulation.
#[allow(clippy::disallowed_methods)] // A benchmark measures real time; no simulated code runs here.
fn wall_clock() -> Instant {
    Instant::now()
}

/// Runs every measurement; `progress` gets one line as each part starts.
///
/// # Errors
/// A registry without scenarios, or a temporary folder that cannot be made.
pub fn run(
    registry: &Registry,
    options: &BenchOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchReport, String> {
    if registry.all().is_empty() {
        return Err("no scenario is registered: nothing to measure".into());
    }
    let started = wall_clock();
    let jobs = options.jobs.max(1);
    progress("1/4 network and empty runs against madsim");
    let net = network(options.quick);
    let empty_runs = empty_runs(options.quick);
    progress("2/4 scenarios with all faults, one job then all jobs");
    let (scenarios, parallel_speedup) = scenario_speeds(registry, jobs, options.quick, progress);
    progress("3/4 resident memory over a long batch");
    let memory = long_batch(registry, jobs, options.quick);
    progress("4/4 first failure to shrunk, saved case");
    let first_failures = first_failures(registry, jobs, options.quick, progress)?;
    let mut report = BenchReport {
        net_vs_madsim_ratio: net.ratio,
        net,
        empty_run_vs_madsim_ratio: empty_runs.sim_core_runs_per_second
            / empty_runs.madsim_runs_per_second,
        empty_runs,
        parallel_speedup,
        jobs,
        rss_mb_start: memory.rss_mb_start,
        rss_mb_end: memory.rss_mb_end,
        rss_mb_max: memory.rss_mb_max,
        long_batch_runs: memory.runs,
        long_batch_seconds: memory.seconds,
        first_failure_to_case_seconds: first_failures.iter().map(|f| f.seconds).reduce(f64::max),
        first_failures,
        scenarios,
        targets: Vec::new(),
        quick: options.quick,
        debug_build: cfg!(debug_assertions),
        wall_seconds: 0.0,
    };
    report.targets = judge(&report, registry.sim_wall_targets());
    report.wall_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Part 1: ping-pong messages per second, sim-core against raw madsim, in short rounds in turn.
fn network(quick: bool) -> NetSpeed {
    let (round_trips, rounds) = if quick { (500, 1) } else { (20_000, 15) };
    // madsim gets a fresh thread too, as sim-core always has: the thread costs nothing next
    // to this many messages, and no madsim runtime ever runs on the caller's thread.
    let paired = sim_bench::paired_rounds(
        rounds,
        || sim_bench::sim_core_ping_pong(1, 1, round_trips),
        || sim_bench::on_fresh_thread(move || sim_bench::madsim_ping_pong(1, 1, round_trips)),
    );
    let (ours, theirs) = (paired.ours, paired.theirs);
    NetSpeed {
        rounds: rounds as u32,
        ratio: paired.ratio,
        round_trips,
        sim_core_msgs_per_second: ours.messages_per_second(),
        madsim_msgs_per_second: theirs.messages_per_second(),
        sim_core_sim_wall_ratio: ours.simulated_per_wall(),
        madsim_sim_wall_ratio: theirs.simulated_per_wall(),
    }
}

/// Part 1: empty runs per second, sim-core against madsim on a fresh thread, interleaved.
fn empty_runs(quick: bool) -> EmptyRuns {
    let runs = if quick { 50 } else { 4_000 };
    let sim_core = |seed| sim_bench::sim_core_ping_pong(seed, 1, 0);
    let madsim = |seed| sim_bench::on_fresh_thread(move || sim_bench::madsim_ping_pong(seed, 1, 0));
    let contenders: [&dyn Fn(u64) -> Measured; 2] = [&sim_core, &madsim];
    let rates = sim_bench::runs_per_second(runs, &contenders);
    EmptyRuns {
        runs,
        sim_core_runs_per_second: rates[0].median,
        madsim_runs_per_second: rates[1].median,
        sim_core_runs_per_second_total: rates[0].total,
        madsim_runs_per_second_total: rates[1].total,
    }
}

/// The options of an unmutated batch with every fault kind that neither shrinks nor saves.
fn plain_batch(start: u64, seeds: u64, jobs: usize) -> BatchOptions {
    BatchOptions {
        start,
        seeds,
        jobs,
        mutant: None,
        faults: FaultKind::ALL.into_iter().collect(),
        corpus_dir: None,
        shrink: false,
        ..BatchOptions::default()
    }
}

/// Part 2: each scenario's seeds with one job, in growing chunks until its time is spent,
/// then the same seeds with all jobs. Returns the speeds and the overall parallel speedup.
fn scenario_speeds(
    registry: &Registry,
    jobs: usize,
    quick: bool,
    progress: &mut dyn FnMut(&str),
) -> (Vec<ScenarioSpeed>, f64) {
    let budget = if quick {
        Duration::ZERO
    } else {
        Duration::from_secs(4)
    };
    let (mut wall_one_job, mut wall_all_jobs) = (0.0, 0.0);
    let mut speeds = Vec::new();
    for scenario in registry.all() {
        let name = scenario.spec().name;
        progress(&format!("    {name}"));
        let one_job = seeds_within(scenario.as_ref(), budget);
        let all_jobs = run_batch(
            scenario.as_ref(),
            &plain_batch(0, one_job.seeds_run, jobs),
            &|| {},
        );
        wall_one_job += one_job.wall_seconds;
        wall_all_jobs += all_jobs.wall_seconds;
        speeds.push(ScenarioSpeed {
            name,
            seeds: one_job.seeds_run,
            runs_per_second: one_job.seeds_run as f64 / one_job.wall_seconds,
            sim_wall_ratio: one_job.sim_seconds / one_job.wall_seconds,
            runs_per_second_all_jobs: all_jobs.seeds_run as f64 / all_jobs.wall_seconds,
            sim_wall_ratio_all_jobs: all_jobs.sim_seconds / all_jobs.wall_seconds,
            failed: one_job.failed,
        });
    }
    (speeds, wall_one_job / wall_all_jobs)
}

/// What a one-job batch did over several chunks.
struct Totals {
    seeds_run: u64,
    sim_seconds: f64,
    wall_seconds: f64,
    failed: u64,
}

/// Seeds from 0 with one job, in chunks that double from 2 but stop short of what the rest of
/// `budget` allows at the speed seen so far (at least one chunk).
fn seeds_within(scenario: &dyn DynScenario, budget: Duration) -> Totals {
    let mut totals = Totals {
        seeds_run: 0,
        sim_seconds: 0.0,
        wall_seconds: 0.0,
        failed: 0,
    };
    let mut chunk = 2;
    loop {
        let report = run_batch(scenario, &plain_batch(totals.seeds_run, chunk, 1), &|| {});
        totals.seeds_run += report.seeds_run;
        totals.sim_seconds += report.sim_seconds;
        totals.wall_seconds += report.wall_seconds;
        totals.failed += report.failed;
        let left_seconds = budget.as_secs_f64() - totals.wall_seconds;
        let seed_seconds = totals.wall_seconds / totals.seeds_run.max(1) as f64;
        let affordable = (left_seconds / seed_seconds.max(1e-6)).floor();
        if affordable < 1.0 {
            return totals;
        }
        chunk = (chunk * 2).min(affordable as u64).max(1);
    }
}

/// Resident memory over the long batch (part 3).
struct Memory {
    rss_mb_start: Option<f64>,
    rss_mb_end: Option<f64>,
    rss_mb_max: Option<f64>,
    runs: u64,
    seconds: f64,
}

/// Part 3: every scenario in turn, chunk after chunk with all jobs, until its time is spent;
/// resident memory before the first chunk, after each and after the last. Seeds start past
/// those of part 2, so the batch does not repeat them.
fn long_batch(registry: &Registry, jobs: usize, quick: bool) -> Memory {
    let (budget, chunk) = if quick {
        (Duration::ZERO, 1)
    } else {
        (Duration::from_secs(40), 16 * jobs as u64)
    };
    let started = wall_clock();
    let rss_mb_start = sim_bench::resident_mib();
    let mut rss_mb_max = rss_mb_start;
    let mut runs = 0;
    let mut next_seed = 1_000_000;
    loop {
        for scenario in registry.all() {
            let report: BatchReport = run_batch(
                scenario.as_ref(),
                &plain_batch(next_seed, chunk, jobs),
                &|| {},
            );
            runs += report.seeds_run;
            rss_mb_max = max_of(rss_mb_max, sim_bench::resident_mib());
        }
        next_seed += chunk;
        if started.elapsed() >= budget {
            break;
        }
    }
    let rss_mb_end = sim_bench::resident_mib();
    Memory {
        rss_mb_start,
        rss_mb_end,
        rss_mb_max: max_of(rss_mb_max, rss_mb_end),
        runs,
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn max_of(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// Seeds searched for a mutant's first failure before the next mutant is tried.
const SEARCH_SEEDS_MAX: u64 = 300;

/// Part 4: for each scenario (the first only when quick), its first mutant (hard ones last)
/// that fails within [`SEARCH_SEEDS_MAX`] seeds, timed from its first failure to its case.
fn first_failures(
    registry: &Registry,
    jobs: usize,
    quick: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<Vec<FirstFailure>, String> {
    let folder = scratch_folder()?;
    let scenarios = if quick {
        &registry.all()[..1]
    } else {
        registry.all()
    };
    let mut found = Vec::new();
    for scenario in scenarios {
        let spec = scenario.spec();
        progress(&format!("    {}", spec.name));
        let mut mutants: Vec<_> = spec.mutants.iter().collect();
        mutants.sort_by_key(|mutant| mutant.hard);
        for mutant in mutants {
            if let Some(first) = first_failure(scenario.as_ref(), &mutant.name, jobs, &folder) {
                found.push(first);
                break;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&folder);
    Ok(found)
}

/// A fresh temporary folder for the cases part 4 saves.
fn scratch_folder() -> Result<PathBuf, String> {
    let folder = std::env::temp_dir().join(format!("dst-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&folder);
    std::fs::create_dir_all(&folder).map_err(|error| {
        format!(
            "{}: cannot make a temporary folder: {error}",
            folder.display()
        )
    })?;
    Ok(folder)
}

/// The lowest failing seed of `mutant` (chunks of seeds in parallel, in order), then its way
/// to a saved case, timed.
fn first_failure(
    scenario: &dyn DynScenario,
    mutant: &str,
    jobs: usize,
    folder: &Path,
) -> Option<FirstFailure> {
    let chunk = (jobs as u64 * 4).max(8);
    let mut start = 0;
    let seed = loop {
        if start >= SEARCH_SEEDS_MAX {
            return None;
        }
        let options = BatchOptions {
            mutant: Some(mutant.to_string()),
            ..plain_batch(start, chunk, jobs)
        };
        let report = run_batch(scenario, &options, &|| {});
        if let Some(failure) = report.failures.iter().min_by_key(|f| f.seed) {
            break failure.seed;
        }
        start += chunk;
    };
    Some(time_to_case(scenario, mutant, seed, folder))
}

/// Times `dst run`'s way from the failing run of `seed` to its saved case. A batch of that one
/// seed runs it first: the time of one run of it, measured just before, is taken off.
fn time_to_case(
    scenario: &dyn DynScenario,
    mutant: &str,
    seed: u64,
    folder: &Path,
) -> FirstFailure {
    let faults: BTreeSet<FaultKind> = FaultKind::ALL.into_iter().collect();
    let case = scenario.generate(seed, Some(mutant.to_string()), faults);
    let one_run = wall_clock();
    let _ = scenario.run_case(&case, &RunOptions::default());
    let one_run = one_run.elapsed();
    let options = BatchOptions {
        mutant: Some(mutant.to_string()),
        corpus_dir: Some(folder.to_path_buf()),
        shrink: true,
        ..plain_batch(seed, 1, 1)
    };
    let started = wall_clock();
    let report = run_batch(scenario, &options, &|| {});
    let seconds = started.elapsed().saturating_sub(one_run).as_secs_f64();
    let failure = report.failures.first();
    FirstFailure {
        scenario: scenario.spec().name,
        mutant: mutant.to_string(),
        seed,
        seconds,
        seeds_searched: seed + 1,
        episodes: failure.map_or((0, 0), |f| f.episodes),
        saved: failure
            .is_some_and(|f| f.file.is_some() && f.verdict != VerdictKind::Nondeterministic.name()),
    }
}

/// The report's values against [`targets`] and the registry's per-scenario speed targets
/// ([`crate::Registry::sim_wall_target`]).
fn judge(report: &BenchReport, sim_wall_targets: &[(String, f64)]) -> Vec<Target> {
    let at_least = |name: &str, value: Option<f64>, min: f64| Target {
        name: name.to_string(),
        bound: format!(">= {min}"),
        value,
        met: value.is_some_and(|v| v >= min),
    };
    let mut judged = vec![
        at_least(
            "net_vs_madsim_ratio",
            Some(report.net_vs_madsim_ratio),
            targets::NET_VS_MADSIM_RATIO_MIN,
        ),
        at_least(
            "empty_run_vs_madsim_ratio",
            Some(report.empty_run_vs_madsim_ratio),
            targets::EMPTY_RUN_VS_MADSIM_RATIO_MIN,
        ),
        at_least(
            "parallel_speedup",
            Some(report.parallel_speedup),
            targets::PARALLEL_SPEEDUP_MIN,
        ),
    ];
    for (scenario, min) in sim_wall_targets {
        if let Some(speed) = report.scenarios.iter().find(|s| s.name == *scenario) {
            judged.push(at_least(
                &format!("scenarios[{scenario}].sim_wall_ratio"),
                Some(speed.sim_wall_ratio),
                *min,
            ));
        }
    }
    let rss_bound = report
        .rss_mb_start
        .map(|start| targets::RSS_GROWTH_FACTOR_MAX * start + targets::RSS_GROWTH_MB_MAX);
    judged.push(Target {
        name: "rss_mb_end".into(),
        bound: format!(
            "<= {} x rss_mb_start + {}{}",
            targets::RSS_GROWTH_FACTOR_MAX,
            targets::RSS_GROWTH_MB_MAX,
            rss_bound.map_or(String::new(), |bound| format!(" = {bound:.1}"))
        ),
        value: report.rss_mb_end,
        met: matches!((report.rss_mb_end, rss_bound), (Some(end), Some(bound)) if end <= bound),
    });
    judged.push(Target {
        name: "first_failure_to_case_seconds".into(),
        bound: format!("< {}", targets::FIRST_FAILURE_TO_CASE_SECONDS_MAX),
        value: report.first_failure_to_case_seconds,
        met: report
            .first_failure_to_case_seconds
            .is_some_and(|s| s < targets::FIRST_FAILURE_TO_CASE_SECONDS_MAX),
    });
    judged
}

/// What `dst bench --json` prints: the report as one JSON object on one line.
pub fn json(report: &BenchReport) -> String {
    serde_json::to_string(report).expect("bench reports serialize")
}

/// The human summary.
pub fn summary(report: &BenchReport) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    let caveat = match (report.quick, report.debug_build) {
        (true, _) => "; --quick: token workloads, numbers not meaningful",
        (false, true) => "; debug build: numbers not meaningful, use the release binary",
        (false, false) => "",
    };
    line(format!(
        "dst bench: {} jobs, {:.0} s of wall time{caveat}; wall-time numbers of a shared \
         machine move with its load, ratios against madsim much less",
        report.jobs, report.wall_seconds
    ));
    line(String::new());
    let net = &report.net;
    line(format!(
        "1. ping-pong, 2 nodes, {} round trips a round, {} rounds each in turn (median round)",
        net.round_trips, net.rounds
    ));
    line(format!(
        "   sim-core Socket   {:>12.0} msgs/s  {:>8.0} sim s/wall s",
        net.sim_core_msgs_per_second, net.sim_core_sim_wall_ratio
    ));
    line(format!(
        "   madsim Endpoint   {:>12.0} msgs/s  {:>8.0} sim s/wall s",
        net.madsim_msgs_per_second, net.madsim_sim_wall_ratio
    ));
    line(format!(
        "   net_vs_madsim_ratio {:.2} (median of the rounds' ratios)",
        report.net_vs_madsim_ratio
    ));
    let empty = &report.empty_runs;
    line(format!(
        "   empty runs (2 nodes, no message; {} each, interleaved; median run, total in brackets):",
        empty.runs
    ));
    line(format!(
        "   sim-core          {:>12.0} runs/s  ({:.0})",
        empty.sim_core_runs_per_second, empty.sim_core_runs_per_second_total
    ));
    line(format!(
        "   madsim, fresh thread {:>9.0} runs/s  ({:.0})",
        empty.madsim_runs_per_second, empty.madsim_runs_per_second_total
    ));
    line(format!(
        "   empty_run_vs_madsim_ratio {:.2}",
        report.empty_run_vs_madsim_ratio
    ));
    line(String::new());
    scenario_lines(report, &mut line);
    line(String::new());
    let mib = |value: Option<f64>| value.map_or("n/a".to_string(), |v| format!("{v:.1} MiB"));
    line(format!(
        "3. long batch: {} runs in {:.0} s; resident memory {} at the start, {} at the end, {} at most",
        report.long_batch_runs,
        report.long_batch_seconds,
        mib(report.rss_mb_start),
        mib(report.rss_mb_end),
        mib(report.rss_mb_max)
    ));
    line(String::new());
    failure_lines(report, &mut line);
    line(String::new());
    for target in &report.targets {
        let value = target
            .value
            .map_or("n/a".to_string(), |value| format!("{value:.2}"));
        let met = if target.met { "met" } else { "NOT met" };
        line(format!(
            "target {:<36} {:>10}  {:<40} {met}",
            target.name, value, target.bound
        ));
    }
    out
}

fn scenario_lines(report: &BenchReport, line: &mut dyn FnMut(String)) {
    line(format!(
        "2. scenarios, unmutated, all faults, default workload: 1 job, then {} jobs on the same seeds",
        report.jobs
    ));
    line(format!(
        "   {:<18} {:>7} {:>12} {:>14} {:>16} {:>7}",
        "scenario", "seeds", "runs/s", "sim s/wall s", "runs/s all jobs", "failed"
    ));
    for speed in &report.scenarios {
        line(format!(
            "   {:<18} {:>7} {:>12.1} {:>14.0} {:>16.1} {:>7}",
            speed.name,
            speed.seeds,
            speed.runs_per_second,
            speed.sim_wall_ratio,
            speed.runs_per_second_all_jobs,
            speed.failed
        ));
    }
    line(format!(
        "   parallel_speedup {:.2} ({} jobs against 1, wall time summed over scenarios)",
        report.parallel_speedup, report.jobs
    ));
}

fn failure_lines(report: &BenchReport, line: &mut dyn FnMut(String)) {
    line("4. first failure to shrunk, saved case (one mutant per scenario)".into());
    line(format!(
        "   {:<18} {:<30} {:>6} {:>9} {:>10} {:>6}",
        "scenario", "mutant", "seed", "seconds", "episodes", "saved"
    ));
    for first in &report.first_failures {
        line(format!(
            "   {:<18} {:<30} {:>6} {:>9.2} {:>10} {:>6}",
            first.scenario,
            first.mutant,
            first.seed,
            first.seconds,
            format!("{} -> {}", first.episodes.0, first.episodes.1),
            if first.saved { "yes" } else { "no" }
        ));
    }
    let slowest = report
        .first_failure_to_case_seconds
        .map_or("n/a (no mutant failed)".to_string(), |s| {
            format!("{s:.2} s")
        });
    line(format!("   slowest: {slowest}"));
}
