//! The command line, as a library: a project's `dst` binary is a `main` of a few lines.
//!
//! ```text
//! fn main() -> std::process::ExitCode {
//!     harness::cli::main(harness::Registry::new().with(MyScenario))
//! }
//! ```
//!
//! The human summary goes to stdout, last, after any failure reports, with the replay command
//! of each distinct failure; progress and diagnostics go to stderr. With `--json`, stdout
//! carries exactly one JSON value (and the human summary goes to stderr). Exit status: 0 when
//! everything passes, 1 when a seed fails, a sometimes-invariant is unmet or too many seeds
//! are inconclusive, 2 on bad usage or bad input, with one line naming the culprit.
//!
//! Replay lines start with [`Registry::command_prefix`]: what the binary set (such as
//! `cargo dst`), else the name it was invoked as.

use crate::batch::{self, BatchOptions, BatchReport};
use crate::case::{DynScenario, Registry, RunOptions};
use crate::corpus::{self, CaseFile};
use crate::plan::FaultKind;
use crate::scoreboard;
use crate::shrink;
use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "dst",
    version,
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
    /// Reruns a stored case exactly (`dst replay FILE`), or any seed of a scenario exactly as
    /// `dst run` ran it, saved or not (`dst replay SCENARIO --seed S`).
    Replay {
        /// A case file; with `--seed`, a scenario name.
        target: String,
        /// Replay this seed of the scenario named by TARGET; exit 0 when it passes, 1 when it
        /// fails.
        #[arg(long)]
        seed: Option<u64>,
        /// With `--seed`: switch on a mutant, as `dst run --mutant`.
        #[arg(long, requires = "seed")]
        mutant: Option<String>,
        /// With `--seed`: the fault kinds, as `dst run --faults`.
        #[arg(long, requires = "seed", value_parser = parse_faults)]
        faults: Option<std::collections::BTreeSet<FaultKind>>,
        /// With `--seed`: mute an invariant, as `dst run --skip-invariant` (repeatable).
        #[arg(long, value_name = "NAME", requires = "seed")]
        skip_invariant: Vec<String>,
        /// Print the timeline (simulated time, node, event) with the violation marked.
        #[arg(long)]
        trace: bool,
        /// Write a Mermaid sequence diagram of the run's messages and faults to this file.
        #[arg(long, value_name = "FILE")]
        mermaid: Option<PathBuf>,
        /// Write the HTML view of the client history the run checked for linearizability to
        /// this file: operations as bars per client over time, the linearization found or the
        /// longest linearizable prefix and the operation that cannot be placed.
        #[arg(long, value_name = "FILE")]
        history: Option<PathBuf>,
        /// Print application logs matching this `tracing` filter (such as `info`).
        #[arg(long, value_name = "FILTER")]
        log: Option<String>,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Merges the `--json` outputs of the shards of one hunt (`dst run --shard K/N`) and
    /// prints what one unsharded run of all their seeds would print.
    Merge {
        /// The shards' JSON outputs (objects, or the arrays of `--all`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Fail when more than this share of the seeds is inconclusive.
        #[arg(long, value_name = "FRACTION", default_value_t = batch::INCONCLUSIVE_MAX_DEFAULT, value_parser = parse_fraction)]
        inconclusive_max: f64,
        /// One JSON value on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Measures how often each sometimes-invariant is reached over a range of seeds, and the
    /// smallest batch minimum (`sometimes_batch_min`) that range supports.
    Sometimes {
        /// Scenario name (see `dst list`).
        scenario: String,
        /// Number of seeds.
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
        seeds: u64,
        /// First seed.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Parallel jobs (default: all cores).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
        jobs: Option<u64>,
        /// One JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
    /// The mutant scoreboard: for each mutant, how many seeds and how much wall time its first
    /// detection takes with all faults and with none, the invariant that caught it and the
    /// shrunk plan's size; then the unmutated scenarios over the same seeds. Exit 1 if a
    /// mutant survives, is caught otherwise than by the invariant it is declared to break, or
    /// an unmutated scenario fails.
    Mutants {
        /// Scenario name (see `dst list`); all scenarios when left out.
        scenario: Option<String>,
        /// Seeds tried with all faults before a mutant counts as surviving; with no faults,
        /// max(N, 1000).
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
        seeds: u64,
        /// First seed.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Parallel jobs (default: all cores).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
        jobs: Option<u64>,
        /// Also hunt each mutant with coverage-guided exploration (`dst run --explore`) on the
        /// same budget: an "explore" column of runs to catch, and the median over hard mutants
        /// both ways (`--json`: `explore_seeds_to_detect`).
        #[arg(long)]
        explore: bool,
        #[command(flatten)]
        pools: PoolArgs,
        /// One JSON array on stdout, one object per mutant, and nothing else.
        #[arg(long)]
        json: bool,
    },
    /// Measures how fast this machine simulates, side by side with madsim in the same run:
    /// sim-core's network and empty runs against raw madsim, each scenario's runs per second
    /// and simulated seconds per wall second with one job and with all (the parallel speedup),
    /// resident memory over a long batch, and the time from a mutant's first failure to its
    /// shrunk, saved case (in a temporary folder, never the corpus); then the project's
    /// targets, met or not. Takes about 2 minutes on 2 cores. Wall-time numbers move with
    /// the machine's load; the ratios against madsim much less. Exit 0 when it measured
    /// (whether or not the targets were met).
    Bench {
        /// All jobs means this many worker threads (default: all cores).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
        jobs: Option<u64>,
        /// A token amount of each measurement, in seconds rather than minutes (to check the
        /// output; the numbers mean nothing, and only the first scenario's mutant is timed
        /// to its case).
        #[arg(long)]
        quick: bool,
        /// One JSON object on stdout (the human summary goes to stderr).
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
    /// Adds a case file (such as one a hunt saved) to the corpus, named with its seed; `cargo
    /// test` replays it from then on. A byte-identical case already there is not copied.
    Add {
        /// The case file.
        file: PathBuf,
        /// The corpus folder.
        #[arg(long, default_value = "corpus")]
        corpus: PathBuf,
    },
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
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
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
    /// Folder where failing cases are saved, one per distinct failure (default: `dst-failures/`
    /// in `$CARGO_TARGET_DIR`, else in the `target/` folder above this binary, else in the
    /// temporary folder; never the source tree).
    #[arg(long, value_name = "DIR")]
    corpus: Option<PathBuf>,
    /// Run every seed twice and compare the traces.
    #[arg(long)]
    check_determinism: bool,
    /// Stop at the first failure.
    #[arg(long)]
    fail_fast: bool,
    /// Run only the K-th of N equal parts of the seed range (1-based), e.g. `--shard 2/8`;
    /// `dst merge` judges the shards' outputs together.
    #[arg(long, value_parser = batch::parse_shard)]
    shard: Option<(u64, u64)>,
    /// Mute an invariant (repeatable): its violations are noted and the runs go on checking
    /// the others, so a known failure does not hide the next bug.
    #[arg(long, value_name = "NAME")]
    skip_invariant: Vec<String>,
    /// Fail an unsharded run when more than this share of its seeds is inconclusive.
    #[arg(long, value_name = "FRACTION", default_value_t = batch::INCONCLUSIVE_MAX_DEFAULT, value_parser = parse_fraction)]
    inconclusive_max: f64,
    /// Coverage-guided: keep the cases that reached new coverage and derive new cases from
    /// them (add, remove, shift, stretch or retarget an episode, another plan, another or a
    /// perturbed workload, another simulation seed) beside fresh seeds from --start; --seeds
    /// is the number of runs in all. Deterministic: the same command runs the same cases.
    #[arg(long, conflicts_with_all = ["check_determinism", "shard", "skip_invariant"])]
    explore: bool,
    /// With --explore on one scenario: also run random search on the same budget and draw
    /// coverage and distinct failures against runs, random beside explore, as SVG into FILE.
    #[arg(
        long,
        value_name = "FILE",
        requires = "explore",
        conflicts_with = "all"
    )]
    plot: Option<PathBuf>,
    #[command(flatten)]
    pools: PoolArgs,
    /// With --explore: write each scenario's pool at the end to DIR/<scenario>.json.gz, to
    /// start later explorations from (see --pools). Not with --mutant: a pool learns the
    /// scenario, never a mutant.
    #[arg(
        long,
        value_name = "DIR",
        requires = "explore",
        conflicts_with = "mutant"
    )]
    save_pools: Option<PathBuf>,
    /// One JSON value on stdout.
    #[arg(long)]
    json: bool,
}

fn parse_faults(text: &str) -> Result<std::collections::BTreeSet<FaultKind>, String> {
    // An empty list is more likely a shell variable that was not set than a wish for no
    // faults: `none` says that.
    if text.trim().is_empty() {
        return Err("empty; give `all`, `none` or a comma list such as crash,partition".into());
    }
    FaultKind::parse_list(text)
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!("expected a fraction from 0 to 1, got {text:?}")),
    }
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
    // Before any run: a command runs thousands, each on a fresh thread.
    sim_core::cap_allocator_arenas(std::thread::available_parallelism().map_or(1, |n| n.get()));
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => {
            // --help and --version.
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            // clap's first paragraph names the culprit (a missing argument on the lines after
            // the first); its usage and hint paragraphs follow. One line of it.
            let text = error.render().to_string();
            let paragraph: Vec<&str> = text
                .lines()
                .take_while(|line| !line.trim().is_empty())
                .map(str::trim)
                .collect();
            let line = if paragraph.is_empty() {
                "bad usage".to_string()
            } else {
                paragraph.join(" ")
            };
            let line = line.strip_prefix("error: ").unwrap_or(&line);
            eprintln!("dst: error: {line} (see dst --help)");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::List { json } => list(&registry, json),
        Command::Run(args) => run(&registry, args),
        Command::Replay {
            target,
            seed,
            mutant,
            faults,
            skip_invariant,
            trace,
            mermaid,
            history,
            log,
            json,
        } => {
            let show = Show {
                trace,
                mermaid,
                history,
                log,
                json,
            };
            match seed {
                Some(seed) => {
                    let faults = faults.unwrap_or_else(|| FaultKind::ALL.into_iter().collect());
                    let generated = (seed, mutant, faults, skip_invariant);
                    replay_seed(&registry, &target, generated, &show)
                }
                None => replay_target(&registry, &target, &show),
            }
        }
        Command::Merge {
            files,
            inconclusive_max,
            json,
        } => merge(&registry, &files, inconclusive_max, json),
        Command::Sometimes {
            scenario,
            seeds,
            start,
            jobs,
            json,
        } => sometimes(&registry, &scenario, start, seeds, jobs, json),
        Command::Mutants {
            scenario,
            seeds,
            start,
            jobs,
            explore,
            pools,
            json,
        } => mutants(
            &registry,
            scenario.as_deref(),
            (start, seeds),
            jobs,
            explore.then_some(&pools),
            json,
        ),
        Command::Bench { jobs, quick, json } => bench(&registry, jobs, quick, json),
        Command::Shrink { file } => shrink_file(&registry, &file),
        Command::Corpus {
            command: CorpusCommand::Add { file, corpus },
        } => corpus_add(&registry, &file, &corpus),
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
        println!("{}: {}", spec.name, spec.description);
        println!("  nodes: {}", spec.nodes.join(", "));
        for invariant in &spec.invariants {
            let kind = serde_json::to_value(invariant.kind()).unwrap_or_default();
            println!(
                "  invariant {} [{}]: {}",
                invariant.name(),
                kind.as_str().unwrap_or("?"),
                invariant.description()
            );
        }
        for mutant in &spec.mutants {
            let hard = if mutant.hard { " (hard)" } else { "" };
            println!("  mutant {}{hard}: {}", mutant.name, mutant.description);
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
        check_mutant(target.as_ref(), mutant)?;
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
        let spec = target.spec();
        spec.validate().map_err(InputError)?;
        // Fault kinds that the scenario's model never draws would run it fault-free while
        // the command line says otherwise (with --all, another scenario may draw them).
        if !args.all && !args.faults.is_empty() && args.faults.is_disjoint(&spec.budget.kinds) {
            let names = |kinds: &std::collections::BTreeSet<FaultKind>| {
                kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(",")
            };
            return Err(InputError(format!(
                "scenario {} draws none of the fault kinds {} (its model: {}); use --faults none for a fault-free run",
                spec.name,
                names(&args.faults),
                names(&spec.budget.kinds)
            )));
        }
    }
    check_skipped(&targets, &args.skip_invariant)?;
    if let Some(file) = &args.plot {
        // Before hours of exploring, not after.
        std::fs::File::create(file)
            .map_err(|error| InputError(format!("--plot {}: {error}", file.display())))?;
    }
    if args.explore {
        return explore_all(registry, &targets, &args);
    }
    let options = BatchOptions {
        start: args.start,
        seeds: args.seeds,
        jobs: args
            .jobs
            .map_or(BatchOptions::default().jobs, |j| j as usize),
        mutant: args.mutant.clone(),
        faults: args.faults.clone(),
        corpus_dir: Some(
            args.corpus
                .clone()
                .unwrap_or_else(crate::testing::failures_dir),
        ),
        check_determinism: args.check_determinism,
        fail_fast: args.fail_fast,
        shard: args.shard,
        shrink: true,
        skip_invariants: Default::default(),
        inconclusive_max: args.inconclusive_max,
    };
    let mut reports = Vec::new();
    for target in &targets {
        // With --all, each scenario mutes the names it declares.
        let declared: Vec<String> = target
            .spec()
            .invariants
            .into_iter()
            .map(|i| i.name().to_string())
            .collect();
        let options = BatchOptions {
            skip_invariants: args
                .skip_invariant
                .iter()
                .filter(|name| declared.contains(name))
                .cloned()
                .collect(),
            ..options.clone()
        };
        reports.push(run_one(target.as_ref(), &options));
    }
    print_summary(registry, &reports, args.json);
    print_json(&reports, args.all, args.json);
    Ok(reports.iter().all(BatchReport::ok))
}

/// Where explorations start from (`dst run --explore`, `dst mutants --explore`).
#[derive(clap::Args, Debug, Clone)]
struct PoolArgs {
    /// Start each exploration from the stored pool DIR/<scenario>.json.gz where there is one
    /// (what an earlier exploration learned: see `pools/README.md`). Default: the `pools`
    /// folder in the current folder or the nearest folder above it that has one (the
    /// workspace's, from anywhere in it).
    #[arg(long, value_name = "DIR", requires = "explore")]
    pools: Option<PathBuf>,
    /// Start every exploration with an empty pool.
    #[arg(long, conflicts_with = "pools", requires = "explore")]
    no_pools: bool,
}

/// A stored pool as loaded, with its file.
type LoadedPool = (PathBuf, std::sync::Arc<crate::pool::StoredPool>);

impl PoolArgs {
    /// The folder pools are read from: `None` with `--no-pools` or when there is none.
    fn dir(&self) -> Result<Option<PathBuf>, InputError> {
        if self.no_pools {
            return Ok(None);
        }
        if let Some(dir) = &self.pools {
            if !dir.is_dir() {
                return Err(InputError(format!(
                    "--pools {}: no such folder",
                    dir.display()
                )));
            }
            return Ok(Some(dir.clone()));
        }
        Ok(std::env::current_dir().ok().and_then(|here| {
            here.ancestors()
                .map(|folder| folder.join("pools"))
                .find(|folder| folder.is_dir())
        }))
    }

    /// Each target's stored pool, if there is one and pools are on; says on stderr where each
    /// exploration starts from.
    fn load(
        &self,
        targets: &[std::sync::Arc<dyn DynScenario>],
    ) -> Result<Vec<Option<LoadedPool>>, InputError> {
        let dir = self.dir()?;
        let mut pools = Vec::new();
        for target in targets {
            let name = target.spec().name;
            let Some(dir) = &dir else {
                if !self.no_pools {
                    eprintln!("explore {name}: no pools folder found; starting empty");
                }
                pools.push(None);
                continue;
            };
            let pool =
                crate::pool::load_for(dir, &name).map_err(|error| InputError(error.to_string()))?;
            let file = crate::pool::path(dir, &name);
            match pool {
                Some(pool) => {
                    eprintln!(
                        "explore {name}: starting from the stored pool {} ({} cases, {} runs)",
                        file.display(),
                        pool.cases.len(),
                        pool.runs
                    );
                    pools.push(Some((file, std::sync::Arc::new(pool))));
                }
                None => {
                    eprintln!(
                        "explore {name}: no stored pool at {}; starting empty",
                        file.display()
                    );
                    pools.push(None);
                }
            }
        }
        Ok(pools)
    }
}

/// `dst run --explore`: each target explored in turn; whether none failed.
fn explore_all(
    registry: &Registry,
    targets: &[std::sync::Arc<dyn DynScenario>],
    args: &RunArgs,
) -> Result<bool, InputError> {
    let pools = args.pools.load(targets)?;
    if let Some(dir) = &args.save_pools {
        std::fs::create_dir_all(dir)
            .map_err(|error| InputError(format!("--save-pools {}: {error}", dir.display())))?;
    }
    let options = crate::explore::ExploreOptions {
        start: args.start,
        runs: args.seeds,
        jobs: args
            .jobs
            .map_or(BatchOptions::default().jobs, |j| j as usize),
        mutant: args.mutant.clone(),
        faults: args.faults.clone(),
        corpus_dir: Some(
            args.corpus
                .clone()
                .unwrap_or_else(crate::testing::failures_dir),
        ),
        fail_fast: args.fail_fast,
        shrink: true,
        inconclusive_max: args.inconclusive_max,
        ..crate::explore::ExploreOptions::default()
    };
    let mut reports = Vec::new();
    for (target, pool) in targets.iter().zip(pools) {
        let name = target.spec().name;
        let options = crate::explore::ExploreOptions {
            pool: pool.map(|(_, pool)| pool),
            keep_pool: args.save_pools.is_some(),
            ..options.clone()
        };
        // A line per 1,000 runs: how coverage grows is what a person watches.
        let mut shown = 0;
        let mut report = crate::explore::explore(target.as_ref(), &options, &mut |growth| {
            if growth.runs / 1000 > shown {
                shown = growth.runs / 1000;
                eprintln!(
                    "explore {name}: {} runs, coverage {}, failures {}",
                    growth.runs, growth.coverage, growth.failures
                );
            }
        });
        if let Some(file) = &args.plot {
            // Random search on the same budget, its coverage recorded: seeds in order, as
            // `dst run` runs them (failures counted, not shrunk nor saved).
            let random = crate::explore::explore(
                target.as_ref(),
                &crate::explore::ExploreOptions {
                    fresh_share: 1.0,
                    corpus_dir: None,
                    shrink: false,
                    pool: None,
                    keep_pool: false,
                    ..options.clone()
                },
                &mut |_| {},
            );
            let title = match &options.mutant {
                Some(mutant) => format!("{name} --mutant {mutant}: random search and exploration"),
                None => format!("{name}: random search and exploration"),
            };
            let drawn = crate::plot::plot_growth(
                file,
                &title,
                &[
                    crate::plot::Series {
                        name: "random",
                        growth: &random.growth,
                        failure_runs: random.failures.iter().map(|f| f.run).collect(),
                    },
                    crate::plot::Series {
                        name: "explore",
                        growth: &report.growth,
                        failure_runs: report.failures.iter().map(|f| f.run).collect(),
                    },
                ],
            );
            match drawn {
                Ok(()) => eprintln!(
                    "plot: {} (random: coverage {}, {} failures; explore: coverage {}, {} failures)",
                    file.display(),
                    random.coverage,
                    random.failures.len(),
                    report.coverage,
                    report.failures.len()
                ),
                Err(error) => eprintln!("dst: {error}"),
            }
        }
        if let (Some(dir), Some(pool)) = (&args.save_pools, report.kept_pool.take()) {
            let file = crate::pool::path(dir, &name);
            match pool.save(&file) {
                Ok(()) => eprintln!(
                    "explore {name}: pool saved to {} ({} cases, {} runs)",
                    file.display(),
                    pool.cases.len(),
                    pool.runs
                ),
                Err(error) => return Err(InputError(error.to_string())),
            }
        }
        if report.pool_skipped > 0 {
            eprintln!(
                "explore {name}: {} cases of the stored pool could not run with these options \
                 (fault kinds not allowed, or a plan or workload the scenario now refuses)",
                report.pool_skipped
            );
        }
        reports.push(report);
    }
    print_explore_summary(registry, &reports, args.json);
    if args.json {
        let values: Vec<serde_json::Value> = reports
            .iter()
            .map(|r| serde_json::to_value(r).expect("explore reports serialize"))
            .collect();
        let value = if args.all {
            serde_json::Value::Array(values)
        } else {
            values.into_iter().next().unwrap_or_default()
        };
        println!("{value}");
    }
    Ok(reports.iter().all(crate::explore::ExploreReport::ok))
}

/// The failures an exploration found, its table and the replay commands; on stderr when
/// stdout carries JSON.
fn print_explore_summary(
    registry: &Registry,
    reports: &[crate::explore::ExploreReport],
    json: bool,
) {
    use crate::explore::Origin;
    use std::fmt::Write;
    let prefix = registry.command_prefix();
    let replay = |r: &crate::explore::ExploreReport, found: &crate::explore::ExploreFailure| {
        let f = &found.failure;
        match (&f.file, &found.origin) {
            (Some(file), _) => format!("{prefix} replay {}", shell_word(file)),
            (None, Origin::Fresh) => {
                let mut line = format!("{prefix} replay {} --seed {}", r.scenario, f.seed);
                if let Some(mutant) = &r.mutant {
                    line.push_str(&format!(" --mutant {mutant}"));
                }
                if r.faults != FaultKind::ALL.into_iter().collect() {
                    line.push_str(&format!(" --faults {}", faults_word(&r.faults)));
                }
                line
            }
            (None, Origin::Derived { .. }) => {
                "(a derived case replays only from its file, which was not saved: see above)".into()
            }
        }
    };
    let mut out = String::new();
    for r in reports {
        for found in &r.failures {
            let f = &found.failure;
            let origin = match &found.origin {
                Origin::Fresh => format!("seed {}", f.seed),
                Origin::Derived {
                    parent: 0,
                    mutations,
                } => format!(
                    "derived from a case of the stored pool by {}",
                    mutations.join(", ")
                ),
                Origin::Derived { parent, mutations } => {
                    format!("derived from run {parent} by {}", mutations.join(", "))
                }
            };
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "FAIL {} run {} ({origin}): {}",
                r.scenario, found.run, f.verdict
            );
            if let Some(invariant) = &f.invariant {
                let _ = writeln!(out, "  invariant: {invariant}");
            }
            if let Some(message) = &f.message {
                let _ = writeln!(out, "  message:   {message}");
            }
            if let Some(divergence) = &f.divergence {
                let _ = writeln!(out, "  diverged:  {divergence}");
            }
            let _ = writeln!(
                out,
                "  plan ({} as found, {} saved):\n{}",
                episodes(f.episodes.0),
                episodes(f.episodes.1),
                f.plan
            );
            if found.count > 1 {
                let _ = writeln!(out, "  {} runs failed this way", found.count);
            }
            let _ = writeln!(out, "  replay: {}", replay(r, found));
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<18} {:>7} {:>7} {:>7} {:>7} {:>12} {:>9} {:>6} {:>10} {:>9}",
        "scenario",
        "runs",
        "fresh",
        "passed",
        "failed",
        "inconclusive",
        "coverage",
        "pool",
        "sim s",
        "wall s"
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:<18} {:>7} {:>7} {:>7} {:>7} {:>12} {:>9} {:>6} {:>10.1} {:>9.2}",
            r.scenario,
            r.runs,
            r.fresh,
            r.passed,
            r.failed,
            r.inconclusive,
            r.coverage,
            r.pool,
            r.sim_seconds,
            r.wall_seconds
        );
    }
    for r in reports.iter().filter(|r| r.too_inconclusive()) {
        let _ = writeln!(
            out,
            "{}: {} of {} runs inconclusive, more than the {} allowed (--inconclusive-max)",
            r.scenario, r.inconclusive, r.runs, r.inconclusive_max
        );
    }
    let lines: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.failures.iter().map(move |found| {
                let what = match &found.failure.invariant {
                    Some(invariant) => format!("{} ({invariant})", found.failure.verdict),
                    None => found.failure.verdict.clone(),
                };
                format!("  {}  # run {}: {what}", replay(r, found), found.run)
            })
        })
        .collect();
    finish_summary(out, &lines, json);
}

fn check_mutant(target: &dyn DynScenario, mutant: &str) -> Result<(), InputError> {
    let spec = target.spec();
    if spec.mutants.iter().any(|m| m.name == mutant) {
        return Ok(());
    }
    let known: Vec<&str> = spec.mutants.iter().map(|m| m.name.as_str()).collect();
    Err(InputError(format!(
        "unknown mutant {mutant:?} for scenario {}; known: {}",
        spec.name,
        known.join(", ")
    )))
}

/// Each muted name must be an invariant of the scenario (with `--all`, of at least one).
fn check_skipped(
    targets: &[std::sync::Arc<dyn DynScenario>],
    names: &[String],
) -> Result<(), InputError> {
    let declared: std::collections::BTreeSet<String> = targets
        .iter()
        .flat_map(|target| target.spec().invariants)
        .map(|invariant| invariant.name().to_string())
        .collect();
    match names.iter().find(|name| !declared.contains(*name)) {
        None => Ok(()),
        Some(name) => Err(InputError(format!(
            "--skip-invariant {name:?}: no such invariant; known: {}",
            declared.into_iter().collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn print_json(reports: &[BatchReport], array: bool, json: bool) {
    if !json {
        return;
    }
    let values: Vec<serde_json::Value> = reports.iter().map(report_json).collect();
    let value = if array {
        serde_json::Value::Array(values)
    } else {
        values.into_iter().next().unwrap_or_default()
    };
    println!("{value}");
}

/// `dst merge`: the shards' reports, grouped by scenario, merged and judged as one run.
fn merge(
    registry: &Registry,
    files: &[PathBuf],
    inconclusive_max: f64,
    json: bool,
) -> Result<bool, InputError> {
    let mut arrays = None;
    let mut groups: Vec<(String, Vec<(String, BatchReport)>)> = Vec::new();
    for file in files {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(file).map_err(|e| InputError(format!("{name}: {e}")))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| InputError(format!("{name}: not the JSON output of dst run: {e}")))?;
        let is_array = value.is_array();
        if *arrays.get_or_insert(is_array) != is_array {
            return Err(InputError(format!(
                "{name}: mixes the output of dst run --all (an array) with that of one scenario"
            )));
        }
        let values = match value {
            serde_json::Value::Array(values) => values,
            other => vec![other],
        };
        let mut in_file = std::collections::BTreeSet::new();
        for value in values {
            let report: BatchReport = serde_json::from_value(value)
                .map_err(|e| InputError(format!("{name}: not the JSON output of dst run: {e}")))?;
            if !in_file.insert(report.scenario.clone()) {
                return Err(InputError(format!(
                    "{name}: scenario {} twice",
                    report.scenario
                )));
            }
            if !is_array {
                if let Some((first, parts)) = groups.first() {
                    if *first != report.scenario {
                        return Err(InputError(format!(
                            "{name}: not a shard of the same hunt as {}: scenario {}, not {first}",
                            parts[0].0, report.scenario
                        )));
                    }
                }
            }
            match groups.iter_mut().find(|(s, _)| *s == report.scenario) {
                Some((_, parts)) => parts.push((name.clone(), report)),
                None => groups.push((report.scenario.clone(), vec![(name.clone(), report)])),
            }
        }
    }
    // In registry order, as dst run --all prints.
    let names = registry.names();
    groups.sort_by_key(|(s, _)| names.iter().position(|n| n == s));
    let mut reports = Vec::new();
    for (name, parts) in &groups {
        let spec = scenario(registry, name)?.spec();
        reports.push(crate::merge::merge(&spec, parts, inconclusive_max).map_err(InputError)?);
    }
    print_summary(registry, &reports, json);
    print_json(&reports, arrays == Some(true), json);
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
    serde_json::to_value(report).expect("batch reports serialize")
}

/// Failure reports first, then the summary table and the replay command of each distinct
/// failure, so that a long list of failures does not scroll the table away. On stdout, or on
/// stderr when stdout carries JSON.
fn print_summary(registry: &Registry, reports: &[BatchReport], json: bool) {
    use std::fmt::Write;
    let prefix = registry.command_prefix();
    let mut out = String::new();
    for r in reports {
        for f in &r.failures {
            write_failure(&mut out, &prefix, r, f);
        }
        write_inconclusive(&mut out, r);
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<18} {:>7} {:>7} {:>7} {:>12} {:>12} {:>10} {:>9} {:>12}",
        "scenario",
        "seeds",
        "passed",
        "failed",
        "inconclusive",
        "determinism",
        "sim s",
        "wall s",
        "sim/wall"
    );
    for r in reports {
        let _ = writeln!(
            out,
            "{:<18} {:>7} {:>7} {:>7} {:>12} {:>12} {:>10.1} {:>9.2} {:>12.0}",
            r.scenario,
            r.seeds_run,
            r.passed,
            r.failed,
            r.inconclusive,
            determinism_cell(r),
            r.sim_seconds,
            r.wall_seconds,
            r.sim_seconds / r.wall_seconds.max(1e-9)
        );
    }
    for r in reports {
        write_judgement(&mut out, r);
    }
    let prefix = prefix.as_str();
    let distinct: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.failures
                .iter()
                .filter(|f| f.same_as.is_none())
                .map(move |f| format!("  {}  # {}", replay_line(prefix, r, f), what_failed(f)))
        })
        .collect();
    finish_summary(out, &distinct, json);
}

/// Ends a summary with its replay commands, then prints it: on stdout, or on stderr when
/// stdout carries JSON.
fn finish_summary(mut out: String, replay_lines: &[String], json: bool) {
    use std::fmt::Write;
    if !replay_lines.is_empty() {
        let _ = writeln!(out, "replay:");
        for line in replay_lines {
            let _ = writeln!(out, "{line}");
        }
    }
    if json {
        eprint!("{out}");
    } else {
        print!("{out}");
    }
}

/// `checked`, `not checked`, or how many failures were nondeterministic.
fn determinism_cell(r: &BatchReport) -> String {
    match (r.nondeterministic, r.determinism_checked) {
        (0, true) => "checked".into(),
        (0, false) => "not checked".into(),
        (n, _) => format!("{n} nondet"),
    }
}

/// `safety (linearizable)`, `panic`, ...
fn what_failed(f: &batch::Failure) -> String {
    match &f.invariant {
        Some(invariant) => format!("seed {}: {} ({invariant})", f.seed, f.verdict),
        None => format!("seed {}: {}", f.seed, f.verdict),
    }
}

/// The command that replays a failure: its saved case, else its seed as the batch ran it.
fn replay_line(prefix: &str, r: &BatchReport, f: &batch::Failure) -> String {
    if let Some(file) = &f.file {
        return format!("{prefix} replay {}", shell_word(file));
    }
    let mut line = format!("{prefix} replay {} --seed {}", r.scenario, f.seed);
    if let Some(mutant) = &r.mutant {
        line.push_str(&format!(" --mutant {mutant}"));
    }
    if r.faults != FaultKind::ALL.into_iter().collect() {
        line.push_str(&format!(" --faults {}", faults_word(&r.faults)));
    }
    for name in &r.skipped_invariants {
        line.push_str(&format!(" --skip-invariant {name}"));
    }
    line
}

/// `--faults`' argument for these kinds: `none` or a comma list.
fn faults_word(kinds: &std::collections::BTreeSet<FaultKind>) -> String {
    if kinds.is_empty() {
        "none".to_string()
    } else {
        let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
        names.join(",")
    }
}

/// A path as one shell word: quoted when it holds anything but plain characters.
fn shell_word(text: &str) -> String {
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@%".contains(c));
    if plain && !text.is_empty() {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

fn write_failure(out: &mut String, prefix: &str, r: &BatchReport, f: &batch::Failure) {
    use std::fmt::Write;
    let _ = writeln!(out);
    let _ = writeln!(out, "FAIL {} seed {}: {}", r.scenario, f.seed, f.verdict);
    if let Some(invariant) = &f.invariant {
        let _ = writeln!(out, "  invariant: {invariant}");
    }
    if let Some(message) = &f.message {
        let _ = writeln!(out, "  message:   {message}");
    }
    if let Some(divergence) = &f.divergence {
        let _ = writeln!(out, "  diverged:  {divergence}");
    }
    match f.same_as {
        Some(seed) => {
            let _ = writeln!(
                out,
                "  plan (as found, {}; seed {seed} failed the same way and is the case shrunk and saved):\n{}",
                episodes(f.episodes.0),
                f.plan
            );
        }
        None if f.plan_minimal.is_none() => {
            let _ = writeln!(
                out,
                "  plan ({}, as found):\n{}",
                episodes(f.episodes.0),
                f.plan
            );
        }
        None => {
            let minimal = if f.plan_minimal == Some(true) {
                "1-minimal: each episode is needed"
            } else {
                "not checked 1-minimal: the shrink budget ran out"
            };
            let _ = writeln!(
                out,
                "  plan (shrunk from {} to {}; {minimal}):\n{}",
                episodes(f.episodes.0),
                episodes(f.episodes.1),
                f.plan
            );
        }
    }
    let _ = writeln!(out, "  trace hash {}", f.trace_hash);
    let _ = writeln!(out, "  replay: {}", replay_line(prefix, r, f));
}

/// The first few inconclusive seeds with their reasons.
fn write_inconclusive(out: &mut String, r: &BatchReport) {
    use std::fmt::Write;
    const SHOWN_MAX: usize = 10;
    if r.inconclusive_seeds.is_empty() {
        return;
    }
    let _ = writeln!(out);
    for seed in r.inconclusive_seeds.iter().take(SHOWN_MAX) {
        let _ = writeln!(
            out,
            "INCONCLUSIVE {} seed {}: {}",
            r.scenario, seed.seed, seed.reason
        );
    }
    if r.inconclusive_seeds.len() > SHOWN_MAX {
        let _ = writeln!(
            out,
            "... and {} more inconclusive seeds",
            r.inconclusive_seeds.len() - SHOWN_MAX
        );
    }
}

/// What was judged of the batch as a whole, under the table.
fn write_judgement(out: &mut String, r: &BatchReport) {
    use std::fmt::Write;
    if !r.skipped_invariants.is_empty() {
        let _ = writeln!(
            out,
            "{}: invariants muted: {}",
            r.scenario,
            r.skipped_invariants.join(", ")
        );
    }
    if !r.sometimes_unmet.is_empty() {
        let _ = writeln!(
            out,
            "{}: sometimes-invariants never reached in {} seeds: {}",
            r.scenario,
            r.seeds_run,
            r.sometimes_unmet.join(", ")
        );
    }
    if let Some(reason) = &r.sometimes_reason {
        let _ = writeln!(
            out,
            "{}: sometimes-invariants not judged: {reason}",
            r.scenario
        );
    }
    if r.too_inconclusive() {
        let _ = writeln!(
            out,
            "{}: {} of {} seeds inconclusive, more than the {} allowed (--inconclusive-max)",
            r.scenario,
            r.inconclusive,
            r.seeds_run,
            r.inconclusive_max.unwrap_or_default()
        );
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

/// What `dst replay` shows besides the verdict.
struct Show {
    trace: bool,
    mermaid: Option<PathBuf>,
    history: Option<PathBuf>,
    log: Option<String>,
    json: bool,
}

/// `dst replay TARGET` without `--seed`: TARGET is a case file.
fn replay_target(registry: &Registry, target: &str, show: &Show) -> Result<bool, InputError> {
    let path = Path::new(target);
    if !path.exists() && registry.get(target).is_some() {
        return Err(InputError(format!(
            "{target} is a scenario: give the seed to replay, as in `replay {target} --seed 0`"
        )));
    }
    replay_file(registry, path, show)
}

/// `dst replay SCENARIO --seed S [--mutant M] [--faults K] [--skip-invariant N]`: the seed's
/// case generated and run exactly as `dst run` generates and runs it.
fn replay_seed(
    registry: &Registry,
    name: &str,
    (seed, mutant, faults, skip): (
        u64,
        Option<String>,
        std::collections::BTreeSet<FaultKind>,
        Vec<String>,
    ),
    show: &Show,
) -> Result<bool, InputError> {
    let target = scenario(registry, name)?;
    target.spec().validate().map_err(InputError)?;
    if let Some(mutant) = &mutant {
        check_mutant(target.as_ref(), mutant)?;
    }
    check_skipped(std::slice::from_ref(&target), &skip)?;
    let case = target.generate(seed, mutant, faults);
    let options = RunOptions {
        skip_invariants: skip.into_iter().collect(),
        ..RunOptions::default()
    };
    let result = run_shown(target.as_ref(), &case, options, show)?;
    let failed = result.verdict.is_failure();
    let mut out = format!("{name} seed {seed}");
    if let Some(mutant) = &case.mutant {
        out.push_str(&format!(" (mutant {mutant})"));
    }
    out.push_str(&format!(
        ": {}\n  plan ({}):\n{}\n  trace hash: {}\n  {}\n",
        result.verdict,
        episodes(case.plan.episodes.len()),
        case.plan,
        corpus::hex(result.trace_hash),
        if failed { "FAIL" } else { "ok" }
    ));
    emit(&out, show.json);
    if show.json {
        println!("{}", result_json(&result, None));
    }
    Ok(!failed)
}

/// Runs `case`, printing the timeline (`--trace`) and writing the diagram (`--mermaid`) and
/// the history's picture (`--history`).
fn run_shown(
    scenario: &dyn DynScenario,
    case: &crate::case::Case,
    options: RunOptions,
    show: &Show,
) -> Result<crate::case::RunResult, InputError> {
    let options = RunOptions {
        keep_trace: show.trace || show.mermaid.is_some(),
        keep_history: show.history.is_some(),
        log: show.log.clone(),
        ..options
    };
    let result = scenario.run_case(case, &options)?;
    if let Some(timeline) = &result.timeline {
        if show.trace {
            let mut out = String::new();
            for event in &timeline.events {
                let marker = match event.event {
                    sim_core::trace::Event::Violation { .. } => ">>>",
                    _ => "   ",
                };
                out.push_str(&format!("{marker} {}\n", timeline.format_line(event)));
            }
            if timeline.truncated {
                out.push_str("... (trace truncated at events_max)\n");
            }
            emit(&out, show.json);
        }
        if let Some(path) = &show.mermaid {
            std::fs::write(path, crate::mermaid::diagram(timeline))
                .map_err(|error| InputError(format!("{}: {error}", path.display())))?;
            eprintln!("wrote {}", path.display());
        }
    }
    if let Some(path) = &show.history {
        let Some(page) = &result.history else {
            return Err(InputError(format!(
                "--history {}: this run of {} checked no client history for linearizability \
                 (the scenario keeps none, or the run ended before its check)",
                path.display(),
                scenario.spec().name
            )));
        };
        std::fs::write(path, page)
            .map_err(|error| InputError(format!("{}: {error}", path.display())))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(result)
}

/// Human output: on stdout, or on stderr when stdout carries JSON.
fn emit(text: &str, json: bool) {
    if json {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
}

fn result_json(result: &crate::case::RunResult, reproduced: Option<bool>) -> serde_json::Value {
    let mut value = serde_json::json!({
        "verdict": result.verdict.kind,
        "invariant": result.verdict.invariant,
        "message": result.verdict.message,
        "trace_hash": corpus::hex(result.trace_hash),
        "sim_time_ns": result.sim_time_ns,
        "events": result.events,
        "messages": result.messages,
    });
    if let Some(reproduced) = reproduced {
        value["reproduced"] = reproduced.into();
    }
    value
}

fn replay_file(registry: &Registry, file: &Path, show: &Show) -> Result<bool, InputError> {
    let (case_file, scenario) = load_case(registry, file)?;
    let result = run_shown(
        scenario.as_ref(),
        &case_file.case(),
        case_file.run_options(),
        show,
    )?;
    let expected_hash = case_file.trace_hash_value().map_err(InputError)?;
    let reproduced =
        case_file.verdict_matches(&result.verdict) && result.trace_hash == expected_hash;
    let out = format!(
        "{}: {}\n  verdict:    {} (recorded: {})\n  trace hash: {} (recorded: {})\n  {}\n",
        file.display(),
        case_file.description,
        result.verdict,
        case_file.expected(),
        corpus::hex(result.trace_hash),
        case_file.trace_hash,
        if reproduced {
            "reproduced"
        } else {
            "NOT reproduced"
        }
    );
    emit(&out, show.json);
    if show.json {
        println!("{}", result_json(&result, Some(reproduced)));
    }
    Ok(reproduced)
}

fn sometimes(
    registry: &Registry,
    name: &str,
    start: u64,
    seeds: u64,
    jobs: Option<u64>,
    json: bool,
) -> Result<bool, InputError> {
    let target = scenario(registry, name)?;
    if start.checked_add(seeds).is_none() {
        return Err(InputError(format!(
            "--start {start} --seeds {seeds} goes past the last seed ({})",
            u64::MAX
        )));
    }
    let spec = target.spec();
    let jobs = jobs.map_or(BatchOptions::default().jobs, |j| j as usize);
    let coverage = batch::sometimes_coverage(target.as_ref(), start, seeds, jobs);
    let suggested = coverage
        .iter()
        .map(|c| c.gap_longest + 1)
        .max()
        .unwrap_or(1);
    let unreached: Vec<&str> = coverage
        .iter()
        .filter(|c| c.reached == 0)
        .map(|c| c.invariant.as_str())
        .collect();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "scenario": spec.name,
                "start": start,
                "seeds": seeds,
                "coverage": coverage,
                "batch_min_supported": unreached.is_empty().then_some(suggested),
                "sometimes_batch_min": spec.sometimes_batch_min,
            })
        );
    } else {
        println!(
            "{:<28} {:>9} {:>12}",
            "sometimes-invariant", "reached", "longest gap"
        );
        for c in &coverage {
            println!("{:<28} {:>9} {:>12}", c.invariant, c.reached, c.gap_longest);
        }
        if unreached.is_empty() {
            println!(
                "{}: every window of {suggested} seeds in {start}..{} reaches every sometimes-invariant (the scenario's batch minimum is {})",
                spec.name,
                start + seeds,
                spec.sometimes_batch_min
            );
        } else {
            println!(
                "{}: never reached in {seeds} seeds: {}",
                spec.name,
                unreached.join(", ")
            );
        }
    }
    Ok(unreached.is_empty() && suggested <= spec.sometimes_batch_min as u64)
}

/// `dst mutants`: see [`crate::scoreboard`].
fn mutants(
    registry: &Registry,
    name: Option<&str>,
    (start, seeds): (u64, u64),
    jobs: Option<u64>,
    explore: Option<&PoolArgs>,
    json: bool,
) -> Result<bool, InputError> {
    let targets: Vec<_> = match name {
        Some(name) => vec![scenario(registry, name)?],
        None => registry.all().to_vec(),
    };
    let quiet_seeds = seeds.max(1000);
    let any_hard = targets
        .iter()
        .any(|target| target.spec().mutants.iter().any(|mutant| mutant.hard));
    let hard_seeds = seeds.saturating_mul(scoreboard::HARD_SEEDS_FACTOR);
    let seeds_max = if any_hard {
        quiet_seeds.max(hard_seeds)
    } else {
        quiet_seeds
    };
    if start.checked_add(seeds_max).is_none() {
        return Err(InputError(format!(
            "--start {start} with {seeds_max} seeds goes past the last seed ({})",
            u64::MAX
        )));
    }
    for target in &targets {
        target.spec().validate().map_err(InputError)?;
    }
    let options = scoreboard::ScoreOptions {
        start,
        seeds,
        quiet_seeds,
        jobs: jobs.map_or(BatchOptions::default().jobs, |j| j as usize),
        explore: explore.is_some(),
        pool: None,
    };
    let pools = match explore {
        Some(args) => args.load(&targets)?,
        None => vec![None; targets.len()],
    };
    let explore = explore.is_some();
    let mut header = format!(
        "{:<16} {:<30} {:>14} {:>8} {:<26} {:>9} {:>9} {:>16}",
        "scenario",
        "mutant",
        "seeds to catch",
        "wall s",
        "caught by",
        "plan",
        "1-minimal",
        "without faults"
    );
    if explore {
        header.push_str(&format!(" {:>14} {:>8}", "explore", "wall s"));
    }
    if !json {
        println!("{header}");
    }
    let mut scores = Vec::new();
    for (target, pool) in targets.iter().zip(pools) {
        let options = scoreboard::ScoreOptions {
            pool: pool.map(|(_, pool)| pool),
            ..options.clone()
        };
        scores.extend(scoreboard::score_scenario(
            target.as_ref(),
            &options,
            &mut |score| {
                if !json {
                    println!("{}", score_row(score));
                }
            },
        ));
    }
    let survivors: Vec<&scoreboard::MutantScore> = scores.iter().filter(|s| !s.detected).collect();
    let caught_otherwise = scores.iter().filter(|s| s.caught_otherwise()).count();
    if json {
        println!(
            "{}",
            serde_json::to_string(&scores).expect("scores serialize")
        );
    } else {
        print_scoreboard_summary(&scores, &survivors, (start, seeds, quiet_seeds), any_hard);
        if explore {
            print_explore_medians(&scores);
        }
        println!();
        println!("the unmutated scenarios over the same {seeds} seeds:");
    }
    let batch_options = BatchOptions {
        start,
        seeds,
        jobs: options.jobs,
        corpus_dir: Some(crate::testing::failures_dir()),
        shrink: true,
        ..BatchOptions::default()
    };
    let reports: Vec<BatchReport> = targets
        .iter()
        .map(|target| run_one(target.as_ref(), &batch_options))
        .collect();
    // Under --json the unmutated runs' summary goes to stderr: stdout is the array only.
    print_summary(registry, &reports, json);
    Ok(survivors.is_empty() && caught_otherwise == 0 && reports.iter().all(BatchReport::ok))
}

/// The scoreboard's summary line and its survivors.
fn print_scoreboard_summary(
    scores: &[scoreboard::MutantScore],
    survivors: &[&scoreboard::MutantScore],
    (start, seeds, quiet_seeds): (u64, u64, u64),
    any_hard: bool,
) {
    let fault_dependent = scores
        .iter()
        .filter(|s| s.detected && !s.detected_without_faults)
        .count();
    let median = scoreboard::median_seeds_to_detect(scores)
        .map_or("none caught".to_string(), |m| m.to_string());
    let hard = if any_hard {
        format!(
            " ({} for hard ones)",
            seeds.saturating_mul(scoreboard::HARD_SEEDS_FACTOR)
        )
    } else {
        String::new()
    };
    println!(
        "{} of {} mutants caught within {seeds} seeds from seed {start}{hard}; {fault_dependent} of them only with faults (none caught in {quiet_seeds} fault-free seeds); median seeds to catch over the caught ones, hard ones left out: {median}",
        scores.len() - survivors.len(),
        scores.len(),
    );
    for score in scores.iter().filter(|s| s.caught_otherwise()) {
        println!(
            "caught otherwise: {} --mutant {} broke {} at its first failing seed, not {}, the invariant it is declared to break",
            score.scenario,
            score.mutant,
            score
                .invariant
                .as_deref()
                .or(score.verdict.as_deref())
                .unwrap_or("-"),
            score.breaks.as_deref().unwrap_or("-"),
        );
    }
    for survivor in survivors {
        let quiet = match survivor.seeds_to_detect_without_faults {
            Some(n) => format!("; fault-free runs catch it, the {} seed", ordinal(n)),
            None => String::new(),
        };
        println!(
            "survived: {} --mutant {} (no failure in {} seeds with all faults{quiet})",
            survivor.scenario, survivor.mutant, survivor.seeds
        );
    }
}

/// "1st", "2nd", "3rd", "11th", "22nd".
fn ordinal(n: u64) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// The medians of runs to catch the hard mutants, random search against exploration, and the
/// mutants exploration missed.
fn print_explore_medians(scores: &[scoreboard::MutantScore]) {
    let (random, explore) = scoreboard::hard_medians(scores);
    let show = |median: Option<f64>| median.map_or("not caught".to_string(), |m| m.to_string());
    let hard = scores.iter().filter(|s| s.hard).count();
    if hard == 0 {
        println!("exploration: no hard mutants to compare on");
    } else {
        let ratio = match (random, explore) {
            (Some(random), Some(explore)) if explore > 0.0 => {
                format!(" ({:.2} times as many runs)", explore / random)
            }
            _ => String::new(),
        };
        println!(
            "hard mutants ({hard}): median runs to catch {} by random search, {} by exploration{ratio}",
            show(random),
            show(explore)
        );
    }
    let missed: Vec<String> = scores
        .iter()
        .filter(|s| s.detected && s.explore_seeds_to_detect.is_none())
        .map(|s| format!("{} --mutant {}", s.scenario, s.mutant))
        .collect();
    if !missed.is_empty() {
        println!(
            "caught by random search, missed by exploration: {}",
            missed.join(", ")
        );
    }
}

/// One mutant's line of the scoreboard.
fn score_row(score: &scoreboard::MutantScore) -> String {
    let caught = score
        .seeds_to_detect
        .map_or(format!("survived {}", score.seeds), |n| n.to_string());
    let mutant = if score.hard {
        format!("{} (hard)", score.mutant)
    } else {
        score.mutant.clone()
    };
    let plan = match (score.plan_steps_found, score.plan_steps) {
        (Some(found), Some(shrunk)) => format!("{found} -> {shrunk}"),
        _ => "-".to_string(),
    };
    let minimal = match score.plan_minimal {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    };
    let quiet = score
        .seeds_to_detect_without_faults
        .map_or(format!("never in {}", score.quiet_seeds), |n| {
            format!("{} seed", ordinal(n))
        });
    let mut by = match (&score.invariant, &score.verdict) {
        (Some(invariant), _) => invariant.clone(),
        (None, Some(verdict)) => verdict.clone(),
        (None, None) => "-".to_string(),
    };
    if score.caught_otherwise() {
        by = format!("{by} (not {})", score.breaks.as_deref().unwrap_or("-"));
    }
    let mut row = format!(
        "{:<16} {:<30} {:>14} {:>8.2} {:<26} {:>9} {:>9} {:>16}",
        score.scenario, mutant, caught, score.wall_seconds, by, plan, minimal, quiet
    );
    if let Some(wall) = score.explore_wall_seconds {
        let explored = score
            .explore_seeds_to_detect
            .map_or(format!("survived {}", score.seeds), |n| n.to_string());
        row.push_str(&format!(" {explored:>14} {wall:>8.2}"));
    }
    row
}

/// `dst bench`: see [`crate::bench`].
fn bench(
    registry: &Registry,
    jobs: Option<u64>,
    quick: bool,
    json: bool,
) -> Result<bool, InputError> {
    let options = crate::bench::BenchOptions {
        jobs: jobs.map_or(BatchOptions::default().jobs, |j| j as usize),
        quick,
    };
    let report = crate::bench::run(registry, &options, &mut |step| eprintln!("bench: {step}"))
        .map_err(InputError)?;
    emit(&crate::bench::summary(&report), json);
    if json {
        println!("{}", crate::bench::json(&report));
    }
    Ok(true)
}

fn shrink_file(registry: &Registry, file: &Path) -> Result<bool, InputError> {
    let (case_file, scenario) = load_case(registry, file)?;
    let case = case_file.case();
    let options = case_file.run_options();
    let result = scenario.run_case(&case, &options)?;
    if !result.verdict.is_failure() || result.verdict.kind == crate::VerdictKind::Error {
        eprintln!(
            "{}: the case does not fail ({}); nothing to shrink",
            file.display(),
            result.verdict
        );
        return Ok(false);
    }
    let shrunk = shrink::shrink(scenario.as_ref(), &case, &result.verdict, &options);
    if !shrunk.reproduced || !shrunk.verdict.same_failure(&result.verdict) {
        eprintln!(
            "{}: the shrunk case did not fail the same way when rerun ({}); file left as it was",
            file.display(),
            shrunk.verdict
        );
        return Ok(false);
    }
    let description = batch::describe(&shrunk.case, &shrunk.verdict, case.plan.episodes.len());
    let mut updated = CaseFile::new(
        &shrunk.case,
        shrunk.verdict.kind,
        shrunk.verdict.invariant.clone(),
        shrunk.trace_hash,
        description,
    );
    updated.skip_invariants = case_file.skip_invariants.clone();
    corpus::save(file, &updated)?;
    eprintln!(
        "{}: {} -> {} ({} runs; {})\n{}",
        file.display(),
        episodes(case.plan.episodes.len()),
        episodes(shrunk.case.plan.episodes.len()),
        shrunk.runs,
        if shrunk.minimal {
            "1-minimal: each episode is needed"
        } else {
            "not checked 1-minimal: the shrink budget ran out"
        },
        shrunk.case.plan
    );
    Ok(true)
}

/// The case files of a corpus folder; a missing or empty folder is bad input.
fn corpus_files(dir: &Path) -> Result<Vec<PathBuf>, InputError> {
    if !dir.is_dir() {
        return Err(InputError(format!(
            "{}: no such corpus folder (choose one with --corpus DIR)",
            dir.display()
        )));
    }
    let files = corpus::list(dir)?;
    if files.is_empty() {
        return Err(InputError(format!(
            "{}: no case files in this corpus folder (expected {}/<scenario>/*.json)",
            dir.display(),
            dir.display()
        )));
    }
    Ok(files)
}

fn corpus_add(registry: &Registry, file: &Path, dir: &Path) -> Result<bool, InputError> {
    // Checked against its scenario first: a case that cannot replay has no place in a corpus.
    load_case(registry, file)?;
    match corpus::add(dir, file)? {
        Ok(path) => println!("added {}", path.display()),
        Err(same) => println!(
            "{} is in the corpus already: {}",
            file.display(),
            same.display()
        ),
    }
    Ok(true)
}

fn corpus_bless(registry: &Registry, dir: &Path) -> Result<bool, InputError> {
    let mut ok = true;
    for path in corpus_files(dir)? {
        let (mut case_file, scenario) = load_case(registry, &path)?;
        let result = scenario.run_case(&case_file.case(), &case_file.run_options())?;
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
    for path in corpus_files(dir)? {
        let (case_file, scenario) = load_case(registry, &path)?;
        let check = crate::testing::replay_matches(scenario.as_ref(), &case_file);
        match check {
            Ok(()) => println!("{}: reproduced", path.display()),
            Err(problem) => {
                println!("{}: {problem}", path.display());
                ok = false;
            }
        }
    }
    Ok(ok)
}

/// "1 episode", "3 episodes".
fn episodes(count: usize) -> String {
    if count == 1 {
        "1 episode".into()
    } else {
        format!("{count} episodes")
    }
}
