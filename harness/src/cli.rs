//! The command line, as a library: a project's `dst` binary is a `main` of a few lines.
//!
//! ```text
//! fn main() -> std::process::ExitCode {
//!     harness::cli::main(harness::Registry::new().with(MyScenario))
//! }
//! ```
//!
//! Human output (progress bar, tables, replay hints) goes to stderr; with `--json`, stdout
//! carries exactly one JSON value. Exit status: 0 when everything passes, 1 when a seed fails
//! or a sometimes-invariant is unmet, 2 on bad usage or bad input.

use crate::batch::{self, BatchOptions, BatchReport};
use crate::case::{DynScenario, Registry, RunOptions};
use crate::corpus::{self, CaseFile};
use crate::plan::FaultKind;
use crate::shrink;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "dst",
    about = "Deterministic simulation testing: hunt, shrink and replay failures"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Lists scenarios with their invariants and mutants.
    List {
        /// One JSON array on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Runs seeds of a scenario (or of all scenarios) in parallel.
    Run(RunArgs),
    /// Reruns a stored case exactly.
    Replay {
        /// The case file.
        file: PathBuf,
        /// Print the timeline (simulated time, node, event) with the violation marked.
        #[arg(long)]
        trace: bool,
        /// Write a Mermaid sequence diagram of the run's messages and faults to this file.
        #[arg(long, value_name = "FILE")]
        mermaid: Option<PathBuf>,
        /// Print application logs matching this `tracing` filter (such as `info`).
        #[arg(long, value_name = "FILTER")]
        log: Option<String>,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Shrinks a stored failing case further and rewrites the file.
    Shrink {
        /// The case file.
        file: PathBuf,
    },
    /// Manages the corpus.
    Corpus {
        #[command(subcommand)]
        command: CorpusCommand,
    },
}

#[derive(Subcommand, Debug)]
enum CorpusCommand {
    /// Rewrites recorded trace hashes after an intended change; refuses changed verdicts.
    Bless {
        /// The corpus folder.
        #[arg(long, default_value = "corpus")]
        corpus: PathBuf,
    },
    /// Replays every case file and checks verdicts and hashes.
    Check {
        /// The corpus folder.
        #[arg(long, default_value = "corpus")]
        corpus: PathBuf,
    },
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Scenario name (see `dst list`).
    scenario: Option<String>,
    /// Run every scenario.
    #[arg(long, conflicts_with = "scenario")]
    all: bool,
    /// Number of seeds.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Parallel jobs (default: all cores).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    jobs: Option<u64>,
    /// Switch on a mutant by name.
    #[arg(long, conflicts_with = "all")]
    mutant: Option<String>,
    /// Fault kinds allowed: `all`, `none`, or a comma list (partition,crash,...).
    #[arg(long, default_value = "all", value_parser = parse_faults)]
    faults: std::collections::BTreeSet<FaultKind>,
    /// Folder where failing cases are saved.
    #[arg(long, default_value = "corpus")]
    corpus: PathBuf,
    /// Run every seed twice and compare the traces.
    #[arg(long)]
    check_determinism: bool,
    /// Stop at the first failure.
    #[arg(long)]
    fail_fast: bool,
    /// Run only the K-th of N equal parts of the seed range (1-based), e.g. `--shard 2/8`.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<(u64, u64)>,
    /// One JSON value on stdout.
    #[arg(long)]
    json: bool,
}

fn parse_faults(text: &str) -> Result<std::collections::BTreeSet<FaultKind>, String> {
    FaultKind::parse_list(text)
}

fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let bad = || format!("expected K/N with 1 <= K <= N, got {text:?}");
    let (k, n) = text.split_once('/').ok_or_else(bad)?;
    let k: u64 = k.trim().parse().map_err(|_| bad())?;
    let n: u64 = n.trim().parse().map_err(|_| bad())?;
    if k == 0 || n == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

/// An error that ends the command with status 2 and one line on stderr.
struct InputError(String);

impl<E: std::fmt::Display> From<E> for InputError {
    fn from(error: E) -> Self {
        InputError(error.to_string())
    }
}

/// Runs the command line over `registry`; returns the exit status.
pub fn main(registry: Registry) -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match cli.command {
        Command::List { json } => list(&registry, json),
        Command::Run(args) => run(&registry, args),
        Command::Replay {
            file,
            trace,
            mermaid,
            log,
            json,
        } => replay(&registry, &file, trace, mermaid.as_deref(), log, json),
        Command::Shrink { file } => shrink_file(&registry, &file),
        Command::Corpus {
            command: CorpusCommand::Bless { corpus },
        } => corpus_bless(&registry, &corpus),
        Command::Corpus {
            command: CorpusCommand::Check { corpus },
        } => corpus_check(&registry, &corpus),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(InputError(message)) => {
            eprintln!("dst: error: {message}");
            ExitCode::from(2)
        }
    }
}

fn scenario(
    registry: &Registry,
    name: &str,
) -> Result<std::sync::Arc<dyn DynScenario>, InputError> {
    registry.get(name).ok_or_else(|| {
        InputError(format!(
            "unknown scenario {name:?}; known: {}",
            registry.names().join(", ")
        ))
    })
}

fn list(registry: &Registry, json: bool) -> Result<bool, InputError> {
    let specs: Vec<_> = registry.all().iter().map(|s| s.spec()).collect();
    if json {
        let value: Vec<serde_json::Value> = specs
            .iter()
            .map(|spec| {
                serde_json::json!({
                    "name": spec.name,
                    "description": spec.description,
                    "nodes": spec.nodes,
                    "invariants": spec.invariants.iter().map(|i| i.name()).collect::<Vec<_>>(),
                    "invariant_details": spec.invariants,
                    "mutants": spec.mutants.iter().map(|m| &m.name).collect::<Vec<_>>(),
                    "mutant_details": spec.mutants,
                    "fault_kinds": spec.budget.kinds,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(value));
        return Ok(true);
    }
    for spec in specs {
        eprintln!("{}: {}", spec.name, spec.description);
        eprintln!("  nodes: {}", spec.nodes.join(", "));
        for invariant in &spec.invariants {
            let kind = serde_json::to_value(invariant.kind()).unwrap_or_default();
            eprintln!(
                "  invariant {} [{}]: {}",
                invariant.name(),
                kind.as_str().unwrap_or("?"),
                invariant.description()
            );
        }
        for mutant in &spec.mutants {
            eprintln!("  mutant {}: {}", mutant.name, mutant.description);
        }
    }
    Ok(true)
}

fn run(registry: &Registry, args: RunArgs) -> Result<bool, InputError> {
    let targets: Vec<_> = if args.all {
        registry.all().to_vec()
    } else {
        let name = args
            .scenario
            .as_deref()
            .ok_or_else(|| InputError("give a scenario name or --all".into()))?;
        vec![scenario(registry, name)?]
    };
    if let (Some(mutant), Some(target)) = (&args.mutant, targets.first()) {
        let spec = target.spec();
        if !spec.mutants.iter().any(|m| &m.name == mutant) {
            let known: Vec<&str> = spec.mutants.iter().map(|m| m.name.as_str()).collect();
            return Err(InputError(format!(
                "unknown mutant {mutant:?} for scenario {}; known: {}",
                spec.name,
                known.join(", ")
            )));
        }
    }
    if args.start.checked_add(args.seeds).is_none() {
        return Err(InputError(format!(
            "--start {} --seeds {} goes past the last seed ({})",
            args.start,
            args.seeds,
            u64::MAX
        )));
    }
    for target in &targets {
        target.spec().validate().map_err(InputError)?;
    }
    let options = BatchOptions {
        start: args.start,
        seeds: args.seeds,
        jobs: args
            .jobs
            .map_or(BatchOptions::default().jobs, |j| j as usize),
        mutant: args.mutant.clone(),
        faults: args.faults.clone(),
        corpus_dir: Some(args.corpus.clone()),
        check_determinism: args.check_determinism,
        fail_fast: args.fail_fast,
        shard: args.shard,
        shrink: true,
    };
    let mut reports = Vec::new();
    for target in &targets {
        reports.push(run_one(target.as_ref(), &options));
    }
    print_summary(&reports);
    if args.json {
        let values: Vec<serde_json::Value> = reports.iter().map(report_json).collect();
        let value = if args.all {
            serde_json::Value::Array(values)
        } else {
            values.into_iter().next().unwrap_or_default()
        };
        println!("{value}");
    }
    Ok(reports.iter().all(BatchReport::ok))
}

fn run_one(scenario: &dyn DynScenario, options: &BatchOptions) -> BatchReport {
    let name = scenario.spec().name;
    let total = options.seed_range().end - options.seed_range().start;
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>16} [{bar:40}] {pos}/{len} seeds {elapsed_precise} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(name.clone());
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let report = batch::run_batch(scenario, options, &|| bar.inc(1));
    bar.finish_and_clear();
    report
}

fn report_json(report: &BatchReport) -> serde_json::Value {
    serde_json::json!({
        "scenario": report.scenario,
        "seeds_run": report.seeds_run,
        "passed": report.passed,
        "failed": report.failed,
        "failures": report.failures,
        "sometimes_unmet": report.sometimes_unmet,
        "sometimes_judged": report.sometimes_judged,
        "sometimes_reached": report.sometimes_reached,
        "sim_seconds": report.sim_seconds,
        "wall_seconds": report.wall_seconds,
    })
}

fn print_summary(reports: &[BatchReport]) {
    eprintln!(
        "{:<18} {:>7} {:>7} {:>7} {:>10} {:>9} {:>12}",
        "scenario", "seeds", "passed", "failed", "sim s", "wall s", "sim/wall"
    );
    for r in reports {
        eprintln!(
            "{:<18} {:>7} {:>7} {:>7} {:>10.1} {:>9.2} {:>12.0}",
            r.scenario,
            r.seeds_run,
            r.passed,
            r.failed,
            r.sim_seconds,
            r.wall_seconds,
            r.sim_seconds / r.wall_seconds.max(1e-9)
        );
    }
    for r in reports {
        if !r.sometimes_unmet.is_empty() {
            eprintln!(
                "{}: sometimes-invariants never reached in {} seeds: {}",
                r.scenario,
                r.seeds_run,
                r.sometimes_unmet.join(", ")
            );
        }
        for f in &r.failures {
            eprintln!();
            eprintln!("FAIL {} seed {}: {}", r.scenario, f.seed, f.verdict);
            if let Some(invariant) = &f.invariant {
                eprintln!("  invariant: {invariant}");
            }
            if let Some(message) = &f.message {
                eprintln!("  message:   {message}");
            }
            if let Some(divergence) = &f.divergence {
                eprintln!("  diverged:  {divergence}");
            }
            eprintln!(
                "  plan (shrunk from {} to {} episodes):\n{}",
                f.episodes.0, f.episodes.1, f.plan
            );
            eprintln!("  trace hash {}", f.trace_hash);
            match &f.file {
                Some(file) => eprintln!("  replay: dst replay {file}"),
                None => eprintln!(
                    "  rerun:  dst run {} --start {} --seeds 1",
                    r.scenario, f.seed
                ),
            }
        }
    }
}

fn load_case(
    registry: &Registry,
    file: &Path,
) -> Result<(CaseFile, std::sync::Arc<dyn DynScenario>), InputError> {
    let case_file = corpus::load(file)?;
    let scenario = scenario(registry, &case_file.scenario)?;
    crate::case::check_case(&scenario.spec(), &case_file.case())
        .map_err(|error| InputError(format!("{}: {error}", file.display())))?;
    Ok((case_file, scenario))
}

fn replay(
    registry: &Registry,
    file: &Path,
    trace: bool,
    mermaid: Option<&Path>,
    log: Option<String>,
    json: bool,
) -> Result<bool, InputError> {
    let (case_file, scenario) = load_case(registry, file)?;
    let options = RunOptions {
        keep_trace: trace || mermaid.is_some(),
        log,
        ..RunOptions::default()
    };
    let result = scenario.run_case(&case_file.case(), &options)?;
    let expected_hash = case_file.trace_hash_value().map_err(InputError)?;
    let reproduced =
        case_file.verdict_matches(&result.verdict) && result.trace_hash == expected_hash;
    if let Some(timeline) = &result.timeline {
        if trace {
            for event in &timeline.events {
                let marker = match event.event {
                    sim_core::trace::Event::Violation { .. } => ">>>",
                    _ => "   ",
                };
                eprintln!("{marker} {}", timeline.format_line(event));
            }
        }
        if let Some(path) = mermaid {
            std::fs::write(path, crate::mermaid::diagram(timeline))
                .map_err(|error| InputError(format!("{}: {error}", path.display())))?;
            eprintln!("wrote {}", path.display());
        }
    }
    eprintln!("{}: {}", file.display(), case_file.description);
    eprintln!(
        "  verdict:    {} (recorded: {})",
        result.verdict,
        case_file.expected()
    );
    eprintln!(
        "  trace hash: {} (recorded: {})",
        corpus::hex(result.trace_hash),
        case_file.trace_hash
    );
    eprintln!(
        "  {}",
        if reproduced {
            "reproduced"
        } else {
            "NOT reproduced"
        }
    );
    if json {
        println!(
            "{}",
            serde_json::json!({
                "verdict": result.verdict.kind,
                "invariant": result.verdict.invariant,
                "message": result.verdict.message,
                "trace_hash": corpus::hex(result.trace_hash),
                "reproduced": reproduced,
                "sim_time_ns": result.sim_time_ns,
                "events": result.events,
                "messages": result.messages,
            })
        );
    }
    Ok(reproduced)
}

fn shrink_file(registry: &Registry, file: &Path) -> Result<bool, InputError> {
    let (case_file, scenario) = load_case(registry, file)?;
    let case = case_file.case();
    let result = scenario.run_case(&case, &RunOptions::default())?;
    if result.verdict.is_pass() {
        eprintln!("{}: the case passes; nothing to shrink", file.display());
        return Ok(false);
    }
    let shrunk = shrink::shrink(scenario.as_ref(), &case, &result.verdict);
    let description = batch::describe(&shrunk.case, &shrunk.verdict, case.plan.episodes.len());
    let updated = CaseFile::new(
        &shrunk.case,
        shrunk.verdict.kind,
        shrunk.verdict.invariant.clone(),
        shrunk.trace_hash,
        description,
    );
    corpus::save(file, &updated)?;
    eprintln!(
        "{}: {} episodes -> {} ({} runs)\n{}",
        file.display(),
        case.plan.episodes.len(),
        shrunk.case.plan.episodes.len(),
        shrunk.runs,
        shrunk.case.plan
    );
    Ok(true)
}

fn corpus_bless(registry: &Registry, dir: &Path) -> Result<bool, InputError> {
    let mut ok = true;
    for path in corpus::list(dir)? {
        let (mut case_file, scenario) = load_case(registry, &path)?;
        let result = scenario.run_case(&case_file.case(), &RunOptions::default())?;
        if !case_file.verdict_matches(&result.verdict) {
            eprintln!(
                "{}: verdict changed to {} (recorded {}): not blessed; fix the code or replace the case",
                path.display(),
                result.verdict,
                case_file.expected()
            );
            ok = false;
            continue;
        }
        let hash = corpus::hex(result.trace_hash);
        if hash != case_file.trace_hash {
            eprintln!(
                "{}: trace hash {} -> {}",
                path.display(),
                case_file.trace_hash,
                hash
            );
            case_file.trace_hash = hash;
            corpus::save(&path, &case_file)?;
        }
    }
    Ok(ok)
}

fn corpus_check(registry: &Registry, dir: &Path) -> Result<bool, InputError> {
    let mut ok = true;
    for path in corpus::list(dir)? {
        let (case_file, scenario) = load_case(registry, &path)?;
        let check = crate::testing::replay_matches(scenario.as_ref(), &case_file);
        match check {
            Ok(()) => eprintln!("{}: reproduced", path.display()),
            Err(problem) => {
                eprintln!("{}: {problem}", path.display());
                ok = false;
            }
        }
    }
    Ok(ok)
}
