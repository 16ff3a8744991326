//! `cargo test` integration: check a scenario over generated cases in one call.
//!
//! ```text
//! #[test]
//! fn register_survives_faults() {
//!     harness::testing::check(Register::default());
//! }
//! ```
//!
//! Environment variables:
//! - `DST_CASES` (default 16): how many seeds; `DST_START` (default 0): the first seed.
//! - `DST_SEED=<n>`: run only seed `n`, printing its full trace.
//! - `DST_REPLAY=<case file>`: replay that file instead, printing its full trace.
//! - `DST_LOG=<filter>`: application logs to print with those two (such as `info`).
//!
//! On a failure the case is shrunk, written under `target/dst-failures/` (never into the source
//! tree: committing a case to `corpus/` is a deliberate act), and the test panics with the seed,
//! the shrunk plan, the invariant and the exact command that shows its trace:
//! `DST_REPLAY=<file> cargo test -p <package> -- <test> --exact --nocapture`.

use crate::batch::{self, BatchOptions, BatchReport};
use crate::case::{DynScenario, Registry, RunOptions, VerdictKind};
use crate::corpus::{self, CaseFile};
use crate::invariant::InvariantKind;
use crate::plan::FaultKind;
use crate::scenario::Scenario;
use std::path::{Path, PathBuf};

/// Default number of cases per `check` in `cargo test`.
pub const CASES_DEFAULT: u64 = 16;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {text:?}")),
        Err(_) => default,
    }
}

/// Where failing cases found by `cargo test` are written: `target/dst-failures/`.
pub fn failures_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("dst-failures");
    }
    let exe = std::env::current_exe().unwrap_or_default();
    for dir in exe.ancestors() {
        if dir.file_name().is_some_and(|name| name == "target") {
            return dir.join("dst-failures");
        }
    }
    std::env::temp_dir().join("dst-failures")
}

/// Checks `scenario` over `DST_CASES` generated cases with every fault kind; panics with a
/// replayable report on the first failures.
pub fn check<S: Scenario>(scenario: S) {
    check_dyn(&scenario, None);
}

/// Like [`check`], for a scenario behind a trait object and an optional mutant.
pub fn check_dyn(scenario: &dyn DynScenario, mutant: Option<&str>) {
    if let Ok(file) = std::env::var("DST_REPLAY") {
        replay_verbose(scenario, Path::new(&file));
        return;
    }
    if let Ok(seed) = std::env::var("DST_SEED") {
        let seed: u64 = seed.trim().parse().expect("DST_SEED must be a number");
        run_seed_verbose(scenario, seed, mutant);
        return;
    }
    let options = BatchOptions {
        start: env_u64("DST_START", 0),
        seeds: env_u64("DST_CASES", CASES_DEFAULT),
        mutant: mutant.map(str::to_string),
        corpus_dir: Some(failures_dir()),
        ..BatchOptions::default()
    };
    let report = batch::run_batch(scenario, &options, &|| {});
    if !report.ok() {
        panic!("{}", failure_text(&report));
    }
}

/// Runs seeds `0..seeds_max` of `scenario` with `mutant` on until one fails; returns the
/// failing batch report (shrunk case saved under `target/dst-failures/`), with the failure that
/// caught the mutant first in `failures`.
///
/// Panics unless a failing seed broke `invariant` the way its kind says: verdict `safety` for
/// an always-invariant, `liveness` for an eventually-invariant. Another verdict (`error`,
/// `panic`, `nondeterministic`, a limit) or another invariant does not count as caught. Panics
/// too when `invariant` is not an always- or eventually-invariant of the scenario.
pub fn expect_caught(
    scenario: &dyn DynScenario,
    mutant: &str,
    invariant: &str,
    seeds_max: u64,
) -> BatchReport {
    let spec = scenario.spec();
    let expected = match spec.invariant_kind(invariant) {
        Some(InvariantKind::Always) => VerdictKind::Safety,
        Some(InvariantKind::Eventually) => VerdictKind::Liveness,
        Some(InvariantKind::Sometimes) => panic!(
            "{invariant} is a sometimes-invariant of {}: no single seed breaks it",
            spec.name
        ),
        None => panic!(
            "{invariant} is not an invariant of {}; declared: {}",
            spec.name,
            spec.invariants
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let options = BatchOptions {
        seeds: seeds_max,
        mutant: Some(mutant.to_string()),
        corpus_dir: Some(failures_dir()),
        fail_fast: true,
        ..BatchOptions::default()
    };
    let mut report = batch::run_batch(scenario, &options, &|| {});
    let caught = report.failures.iter().position(|failure| {
        failure.verdict == expected.name() && failure.invariant.as_deref() == Some(invariant)
    });
    let Some(index) = caught else {
        panic!(
            "mutant {mutant} of {} was not caught by {expected} ({invariant}) in {} seeds{}",
            report.scenario,
            report.seeds_run,
            if report.failures.is_empty() {
                String::new()
            } else {
                format!("; what failed instead:\n{}", failure_text(&report))
            }
        );
    };
    let failure = report.failures.remove(index);
    report.failures.insert(0, failure);
    report
}

/// The text a failing `check` panics with.
pub fn failure_text(report: &BatchReport) -> String {
    let mut text = format!(
        "{}: {} of {} seeds failed, {} inconclusive",
        report.scenario, report.failed, report.seeds_run, report.inconclusive
    );
    if report.too_inconclusive() {
        text.push_str(&format!(
            "\ntoo many inconclusive seeds (first: {})",
            report
                .inconclusive_seeds
                .iter()
                .take(3)
                .map(|s| format!("seed {}: {}", s.seed, s.reason))
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    if !report.sometimes_unmet.is_empty() {
        text.push_str(&format!(
            "\nsometimes-invariants never reached: {}",
            report.sometimes_unmet.join(", ")
        ));
    }
    for failure in report.failures.iter().take(3) {
        text.push_str(&format!(
            "\n\nseed {}: {}{}\n{}\nshrunk plan ({} -> {} episodes):\n{}\ntrace hash {}",
            failure.seed,
            failure.verdict,
            failure
                .invariant
                .as_deref()
                .map(|i| format!(" of {i}"))
                .unwrap_or_default(),
            failure.message.as_deref().unwrap_or(""),
            failure.episodes.0,
            failure.episodes.1,
            failure.plan,
            failure.trace_hash,
        ));
        let rerun = match &failure.file {
            Some(file) => format!("DST_REPLAY={file}"),
            None => format!("DST_SEED={}", failure.seed),
        };
        text.push_str(&format!(
            "\nsee its trace: {rerun} {}",
            cargo_test_command()
        ));
        if failure.same_as.is_some() {
            text.push_str(" (the case of the lowest seed failing this way is the one saved)");
        }
    }
    text
}

/// The `cargo test` command that reruns the current test alone with its output shown: the
/// package from `CARGO_PKG_NAME` (set by cargo for test binaries) and the test's name from
/// its thread (libtest names each test's thread after the test).
pub fn cargo_test_command() -> String {
    let package = std::env::var("CARGO_PKG_NAME")
        .map(|name| format!(" -p {name}"))
        .unwrap_or_default();
    let test = std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .map(|name| format!(" {name} --exact"))
        .unwrap_or_default();
    format!("cargo test{package} --{test} --nocapture")
}

fn verbose_options() -> RunOptions {
    RunOptions {
        keep_trace: true,
        log: std::env::var("DST_LOG").ok(),
        ..RunOptions::default()
    }
}

fn run_seed_verbose(scenario: &dyn DynScenario, seed: u64, mutant: Option<&str>) {
    let case = scenario.generate(
        seed,
        mutant.map(str::to_string),
        FaultKind::ALL.into_iter().collect(),
    );
    eprintln!("seed {seed}; plan:\n{}", case.plan);
    let result = scenario
        .run_case(&case, &verbose_options())
        .expect("generated cases are valid");
    if let Some(timeline) = &result.timeline {
        eprint!("{timeline}");
    }
    eprintln!(
        "verdict: {} (trace hash {})",
        result.verdict,
        corpus::hex(result.trace_hash)
    );
    assert!(result.verdict.is_pass(), "seed {seed}: {}", result.verdict);
}

fn replay_verbose(scenario: &dyn DynScenario, file: &Path) {
    let case_file = corpus::load(file).unwrap_or_else(|error| panic!("{error}"));
    let options = RunOptions {
        skip_invariants: case_file.skip_invariants.clone(),
        ..verbose_options()
    };
    let result = scenario
        .run_case(&case_file.case(), &options)
        .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
    if let Some(timeline) = &result.timeline {
        eprint!("{timeline}");
    }
    eprintln!(
        "verdict: {} (trace hash {})",
        result.verdict,
        corpus::hex(result.trace_hash)
    );
}

/// Replays a stored case and compares verdict, invariant and trace hash with the record.
pub fn replay_matches(scenario: &dyn DynScenario, case_file: &CaseFile) -> Result<(), String> {
    let result = scenario
        .run_case(&case_file.case(), &case_file.run_options())
        .map_err(|error| error.to_string())?;
    if !case_file.verdict_matches(&result.verdict) {
        return Err(format!(
            "verdict {} but recorded {}",
            result.verdict,
            case_file.expected()
        ));
    }
    let expected = case_file.trace_hash_value()?;
    if result.trace_hash != expected {
        return Err(format!(
            "trace hash {} but recorded {} (if the change is intended: dst corpus bless)",
            corpus::hex(result.trace_hash),
            case_file.trace_hash
        ));
    }
    Ok(())
}

/// Replays every case file under `dir` against `registry`; panics listing every mismatch or
/// unreadable file.
pub fn replay_corpus(registry: &Registry, dir: &Path) -> usize {
    let files = corpus::list(dir).unwrap_or_else(|error| panic!("{error}"));
    let mut problems = Vec::new();
    for path in &files {
        let outcome = corpus::load(path)
            .map_err(|e| e.to_string())
            .and_then(|case_file| {
                let scenario = registry
                    .get(&case_file.scenario)
                    .ok_or_else(|| format!("unknown scenario {:?}", case_file.scenario))?;
                replay_matches(scenario.as_ref(), &case_file)
            });
        if let Err(problem) = outcome {
            problems.push(format!("{}: {problem}", path.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "corpus replay failed:\n{}",
        problems.join("\n")
    );
    files.len()
}
