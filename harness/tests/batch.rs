//! The batch runner's accounting and honesty on a toy scenario: failures that do not reproduce
//! are `nondeterministic` and never saved, a shrunk case that passes is never saved as a
//! failure, shrinking does not depend on wall time, shards merge to the unsharded report, the
//! inconclusive share fails only a judged batch, `expect_caught` wants the named invariant, and
//! the scoreboard tells a mutant caught otherwise than by the invariant it declares it breaks.

use harness::batch::{run_batch, BatchOptions, BatchReport, InconclusiveSeed};
use harness::case::DynScenario;
use harness::plan::{Fault, FaultKind};
use harness::{
    Checked, Env, FaultBudget, Invariant, MutantSpec, RunOptions, Scenario, ScenarioSpec,
};
use proptest::prelude::*;
use sim_core::{time, SimConfig};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How the toy misbehaves.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
enum Mode {
    /// Deterministic: with the mutant `fragile`, a plan that crashes `a` breaks
    /// `a-survives-crash`.
    #[default]
    Honest,
    /// Every run fails, at a time taken from a counter outside the simulation: the second run
    /// of a case differs from the first.
    Drifting,
    /// Every run fails, at a time drawn from the operating system's random source (a
    /// dependency calling `rand::thread_rng` does the same): not controlled by the seed.
    OsRandom,
    /// The first two runs fail (identically), every later run passes: a failure that
    /// reproduces once, then goes away while shrinking.
    FailsTwice,
}

static A_SURVIVES_CRASH: Invariant =
    Invariant::always("a-survives-crash", "a crash of a loses nothing");
static B_ANSWERS: Invariant = Invariant::eventually(
    "b-answers",
    "b answers after healing",
    Duration::from_secs(1),
);
static B_PAUSED: Invariant = Invariant::sometimes("b-paused", "b was paused");

/// Two idle nodes under crash and pause faults.
#[derive(Clone, Default)]
struct Toy {
    mode: Mode,
    /// Sleep a little real time in every run: a slow machine.
    slow: bool,
    /// Runs so far (the source outside the simulation for `Drifting` and `FailsTwice`).
    runs: Arc<AtomicU64>,
}

impl Toy {
    fn with(mode: Mode) -> Toy {
        Toy {
            mode,
            ..Toy::default()
        }
    }
}

impl Scenario for Toy {
    type Workload = u32;
    /// This run's number in the process (outside the simulation).
    type System = u64;

    fn spec(&self) -> ScenarioSpec {
        ScenarioSpec {
            name: "toy".into(),
            description: "two idle nodes".into(),
            nodes: vec!["a".into(), "b".into()],
            budget: FaultBudget {
                kinds: [FaultKind::Crash, FaultKind::Pause].into_iter().collect(),
                episodes_max: 5,
                plan_duration_ms: 1_000,
                episode_duration_max_ms: 400,
                ..FaultBudget::default()
            },
            invariants: vec![A_SURVIVES_CRASH, B_ANSWERS, B_PAUSED],
            mutants: vec![MutantSpec::new("fragile", "a loses its state in a crash")],
            sometimes_batch_min: 10,
            sim_config: SimConfig {
                time_limit_ms: 30_000,
                ..SimConfig::default()
            },
        }
    }

    fn workload(&self) -> BoxedStrategy<u32> {
        (1u32..20).boxed()
    }

    fn setup(&self, env: &Env, _: &u32) -> u64 {
        if self.slow {
            #[allow(clippy::disallowed_methods)] // The test's slow machine, outside sim time.
            std::thread::sleep(Duration::from_millis(2));
        }
        for name in ["a", "b"] {
            env.sim
                .node(name)
                .init(|| async {
                    loop {
                        time::sleep(Duration::from_millis(50)).await;
                    }
                })
                .build();
        }
        self.runs.fetch_add(1, Ordering::SeqCst)
    }

    async fn drive(&self, env: &Env, count: &u64, workload: u32) -> Checked {
        let has = |kind: &str, node: &str| {
            env.plan()
                .episodes
                .iter()
                .any(|episode| match &episode.fault {
                    Fault::Crash { node: n } => kind == "crash" && n == node,
                    Fault::Pause { node: n } => kind == "pause" && n == node,
                    _ => false,
                })
        };
        let (crashes_a, pauses_b) = (has("crash", "a"), has("pause", "b"));
        if pauses_b {
            env.reached(&B_PAUSED);
        }
        env.sim
            .sleep(Duration::from_millis(u64::from(workload)))
            .await;
        let broken = match self.mode {
            Mode::Honest => env.is_mutant("fragile") && crashes_a,
            Mode::OsRandom => {
                // 1 ms to 1 s, to the microsecond: two runs agree once in a million.
                let mut bytes = [0u8; 8];
                use std::io::Read;
                std::fs::File::open("/dev/urandom")
                    .and_then(|mut file| file.read_exact(&mut bytes))
                    .expect("the OS random source");
                let delay = u64::from_le_bytes(bytes) % 1_000_000 + 1_000;
                env.sim.sleep(Duration::from_micros(delay)).await;
                true
            }
            Mode::Drifting => {
                env.sim.sleep(Duration::from_millis(count + 1)).await;
                true
            }
            Mode::FailsTwice => *count < 2,
        };
        if broken {
            return Err(A_SURVIVES_CRASH.violated("a lost its state"));
        }
        Ok(())
    }

    async fn after_heal(&self, env: &Env, _: &u64) -> Checked {
        env.eventually(&B_ANSWERS, || async { Ok(()) }).await
    }
}

fn options(seeds: u64) -> BatchOptions {
    BatchOptions {
        seeds,
        jobs: 2,
        shrink: false,
        ..BatchOptions::default()
    }
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    harness::corpus::list(dir)
        .unwrap_or_default()
        .iter()
        .map(|path| path.display().to_string())
        .collect()
}

#[test]
fn a_failure_that_does_not_reproduce_is_nondeterministic_and_not_saved() {
    // Goal: a run that reads a source the simulation does not control is reported as such,
    // with the first diverging event, and never stored as a case that will not replay.
    let dir = tempfile::tempdir().unwrap();
    let batch = BatchOptions {
        corpus_dir: Some(dir.path().to_path_buf()),
        shrink: true,
        ..options(3)
    };
    let report = run_batch(&Toy::with(Mode::Drifting), &batch, &|| {});
    assert_eq!(report.failed, 3, "{:?}", report.failures);
    for failure in &report.failures {
        assert_eq!(failure.verdict, "nondeterministic", "{failure:?}");
        assert_eq!(failure.file, None);
        let divergence = failure.divergence.as_deref().unwrap_or_default();
        assert!(divergence.contains("second run: "), "{divergence}");
    }
    assert!(
        files_in(dir.path()).is_empty(),
        "{:?}",
        files_in(dir.path())
    );
}

#[test]
fn a_failure_that_reads_the_os_random_source_is_nondeterministic_and_not_saved() {
    let dir = tempfile::tempdir().unwrap();
    let batch = BatchOptions {
        corpus_dir: Some(dir.path().to_path_buf()),
        shrink: true,
        ..options(2)
    };
    let report = run_batch(&Toy::with(Mode::OsRandom), &batch, &|| {});
    assert_eq!(report.failed, 2, "{:?}", report.failures);
    for failure in &report.failures {
        assert_eq!(failure.verdict, "nondeterministic", "{failure:?}");
        assert_eq!(failure.file, None);
    }
    assert!(files_in(dir.path()).is_empty());
}

#[test]
fn a_shrunk_case_that_no_longer_fails_is_not_saved_as_a_failure() {
    // Goal: the found case failed twice (so it reproduces), then every shrinking run passes,
    // the final run of the "smallest" case too: the file saved is the found case with its
    // failure, never a case that passes.
    let dir = tempfile::tempdir().unwrap();
    let batch = BatchOptions {
        corpus_dir: Some(dir.path().to_path_buf()),
        shrink: true,
        jobs: 1,
        ..options(1)
    };
    let report = run_batch(&Toy::with(Mode::FailsTwice), &batch, &|| {});
    let failure = &report.failures[0];
    assert_eq!(failure.verdict, "safety", "{failure:?}");
    assert_eq!(failure.episodes.0, failure.episodes.1, "kept as found");
    let files = files_in(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(
        files[0].ends_with("/safety-a-survives-crash.json"),
        "{files:?}"
    );
    let saved = harness::corpus::load(std::path::Path::new(&files[0])).unwrap();
    assert_eq!(saved.verdict, harness::VerdictKind::Safety);
    assert_eq!(saved.case(), Toy::default().generate(0, None, batch.faults));
}

/// The first seed whose case fails with the `fragile` mutant, with its verdict.
fn failing_case(toy: &Toy) -> (harness::Case, harness::Verdict) {
    let faults: std::collections::BTreeSet<FaultKind> = FaultKind::ALL.into_iter().collect();
    (0..200)
        .find_map(|seed| {
            let case = toy.generate(seed, Some("fragile".into()), faults.clone());
            let result = toy.run_case(&case, &RunOptions::default()).unwrap();
            (!result.verdict.is_pass()).then_some((case, result.verdict))
        })
        .expect("some seed crashes a")
}

#[test]
fn shrinking_gives_the_same_case_on_a_slow_machine() {
    // Goal: shrink budgets count runs, not wall time, so a slower machine (every run sleeps)
    // shrinks the same failure to the same case with the same number of runs.
    let fast = Toy::default();
    let slow = Toy {
        slow: true,
        ..Toy::default()
    };
    let (case, verdict) = failing_case(&fast);
    let options = RunOptions::default();
    let quick = harness::shrink::shrink(&fast, &case, &verdict, &options);
    let slowly = harness::shrink::shrink(&slow, &case, &verdict, &options);
    assert!(quick.reproduced && slowly.reproduced);
    assert!(quick.verdict.same_failure(&verdict), "{}", quick.verdict);
    assert!(quick.runs > 10, "too few runs to tell: {}", quick.runs);
    assert!(quick.case.plan.episodes.len() <= case.plan.episodes.len());
    assert_eq!(quick.case, slowly.case);
    assert_eq!(quick.trace_hash, slowly.trace_hash);
    assert_eq!(quick.runs, slowly.runs);
    assert!(quick.runs <= harness::shrink::RUNS_MAX + 1);
}

fn without_wall_time(report: &BatchReport) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap();
    value.as_object_mut().unwrap().remove("wall_seconds");
    value
}

fn shards(toy: &Toy, batch: &BatchOptions, count: u64) -> Vec<(String, BatchReport)> {
    (1..=count)
        .map(|k| {
            let shard = BatchOptions {
                shard: Some((k, count)),
                ..batch.clone()
            };
            (format!("shard{k}.json"), run_batch(toy, &shard, &|| {}))
        })
        .collect()
}

#[test]
fn shards_merge_to_exactly_the_unsharded_report() {
    // Goal: `dst merge` of the shards of a hunt is what one unsharded run prints (but for
    // wall time), failures, sometimes-invariants and judgement included.
    let toy = Toy::default();
    let batch = BatchOptions {
        mutant: Some("fragile".into()),
        ..options(24)
    };
    let spec = Scenario::spec(&toy);
    for batch in [batch.clone(), options(24)] {
        let whole = run_batch(&toy, &batch, &|| {});
        let parts = shards(&toy, &batch, 3);
        for (_, part) in &parts {
            assert!(!part.sometimes_judged);
            let reason = part.sometimes_reason.as_deref().unwrap_or_default();
            assert!(reason.contains("dst merge"), "{reason}");
        }
        // Through JSON, as the command line does.
        let parts: Vec<(String, BatchReport)> = parts
            .into_iter()
            .map(|(name, part)| {
                let text = serde_json::to_string(&part).unwrap();
                (name, serde_json::from_str(&text).unwrap())
            })
            .collect();
        let merged = harness::merge::merge(&spec, &parts, 0.01).unwrap();
        assert_eq!(without_wall_time(&merged), without_wall_time(&whole));
        assert_eq!(merged.ok(), whole.ok());
    }
    // The unmutated hunt is judged: 24 seeds of the whole fault model.
    let whole = run_batch(&toy, &options(24), &|| {});
    assert!(whole.sometimes_judged, "{:?}", whole.sometimes_reason);
    assert_eq!(whole.sometimes_reason, None);
    assert!(whole.ok(), "{:?}", whole);
}

#[test]
fn merge_refuses_what_is_not_the_shards_of_one_hunt() {
    // Goal: a missing, repeated or foreign shard is an error naming it, never a wrong sum.
    let toy = Toy::default();
    let spec = Scenario::spec(&toy);
    let parts = shards(&toy, &options(6), 3);
    let error = harness::merge::merge(&spec, &parts[..2], 0.01).unwrap_err();
    assert!(error.contains("shard 3/3 of toy missing"), "{error}");
    let mut repeated = parts.clone();
    repeated[2] = ("again.json".into(), parts[1].1.clone());
    let error = harness::merge::merge(&spec, &repeated, 0.01).unwrap_err();
    assert!(
        error.starts_with("again.json: shard 2/3 repeated"),
        "{error}"
    );
    type Change = fn(&mut BatchReport);
    let changes: [(&str, Change); 5] = [
        ("mutant", |r| r.mutant = Some("fragile".into())),
        ("seeds", |r| r.start = 1),
        ("faults", |r| r.faults.clear()),
        ("scenario", |r| r.scenario = "other".into()),
        ("skipped", |r| {
            r.skipped_invariants = vec!["b-answers".into()]
        }),
    ];
    for (what, change) in changes {
        let mut foreign = parts.clone();
        foreign[1].0 = "foreign.json".into();
        change(&mut foreign[1].1);
        let error = harness::merge::merge(&spec, &foreign, 0.01).unwrap_err();
        assert!(error.starts_with("foreign.json: not a shard"), "{error}");
        assert!(error.contains(what), "{what}: {error}");
    }
    let mut other_count = parts.clone();
    other_count[2].1.shard = Some((3, 4));
    let error = harness::merge::merge(&spec, &other_count, 0.01).unwrap_err();
    assert!(error.contains("one of 3 shards"), "{error}");
}

/// Marks the first `count` passing seeds of `report` inconclusive, as a run would.
fn make_inconclusive(report: &mut BatchReport, count: u64) {
    let first = report.start;
    for seed in first..first + count {
        report.inconclusive_seeds.push(InconclusiveSeed {
            seed,
            reason: "checker gave up".into(),
        });
    }
    report.passed -= count;
    report.inconclusive += count;
}

#[test]
fn too_many_inconclusive_seeds_fail_a_judged_batch_but_not_a_shard() {
    // Goal: inconclusive seeds are neither passes nor failures; a judged batch fails when
    // more than the allowed share of its seeds are, a shard only reports its count.
    let toy = Toy::default();
    let spec = Scenario::spec(&toy);
    let mut whole = run_batch(&toy, &options(20), &|| {});
    assert!(whole.ok());
    make_inconclusive(&mut whole, 1);
    whole.judge(&spec, 0.1);
    assert!(whole.ok(), "1 of 20 is within 10%");
    whole.judge(&spec, 0.01);
    assert!(!whole.ok(), "1 of 20 is more than 1%");
    assert!(whole.too_inconclusive());
    assert_eq!(
        whole.passed + whole.failed + whole.inconclusive,
        whole.seeds_run
    );
    // One seed alone is never judged on the share.
    let mut single = run_batch(&toy, &options(1), &|| {});
    make_inconclusive(&mut single, 1);
    single.judge(&spec, 0.0);
    assert!(single.ok());
    // Each shard has one inconclusive seed of ten and passes; merged, 2 of 20 is too many.
    let mut parts = shards(&toy, &options(20), 2);
    for (_, part) in &mut parts {
        make_inconclusive(part, 1);
        part.judge(&spec, 0.01);
        assert!(part.ok(), "a shard never fails on the share alone");
    }
    let merged = harness::merge::merge(&spec, &parts, 0.01).unwrap();
    assert_eq!(merged.inconclusive, 2);
    assert_eq!(merged.inconclusive_seeds.len(), 2);
    assert!(!merged.ok());
    assert!(harness::merge::merge(&spec, &parts, 0.1).unwrap().ok());
}

#[test]
fn expect_caught_returns_the_failure_of_the_named_invariant() {
    let report =
        harness::testing::expect_caught(&Toy::default(), "fragile", "a-survives-crash", 50);
    let failure = &report.failures[0];
    assert_eq!(failure.verdict, "safety");
    assert_eq!(failure.invariant.as_deref(), Some("a-survives-crash"));
}

#[test]
#[should_panic(expected = "was not caught by liveness (b-answers)")]
fn expect_caught_wants_the_named_invariant() {
    harness::testing::expect_caught(&Toy::default(), "fragile", "b-answers", 50);
}

#[test]
#[should_panic(expected = "no-such is not an invariant of toy")]
fn expect_caught_refuses_an_undeclared_invariant() {
    harness::testing::expect_caught(&Toy::default(), "fragile", "no-such", 50);
}

#[test]
#[should_panic(expected = "was not caught by safety (a-survives-crash)")]
fn a_nondeterministic_failure_does_not_count_as_caught() {
    harness::testing::expect_caught(&Toy::with(Mode::Drifting), "fragile", "a-survives-crash", 3);
}

#[test]
fn the_scoreboard_tells_a_mutant_caught_otherwise_than_declared() {
    // Goal: `fragile` breaks `a-survives-crash`; declared to break `b-answers` instead, the
    // scoreboard still counts it caught but says it was caught otherwise (and `dst mutants`
    // exits 1 on such a score).
    use harness::scoreboard::{score_mutant, ScoreOptions};
    let options = ScoreOptions {
        start: 0,
        seeds: 50,
        quiet_seeds: 5,
        jobs: 1,
        explore: false,
        pool: None,
    };
    let fragile = MutantSpec::new("fragile", "a loses its state in a crash");
    let declared = score_mutant(
        &Toy::default(),
        &fragile.clone().breaks("a-survives-crash"),
        &options,
    );
    assert!(declared.detected);
    assert_eq!(declared.invariant.as_deref(), Some("a-survives-crash"));
    assert!(!declared.caught_otherwise());
    let misdeclared = score_mutant(
        &Toy::default(),
        &fragile.clone().breaks("b-answers"),
        &options,
    );
    assert!(misdeclared.detected);
    assert!(misdeclared.caught_otherwise());
    let undeclared = score_mutant(&Toy::default(), &fragile, &options);
    assert!(undeclared.detected && !undeclared.caught_otherwise());
}

#[test]
fn a_mutant_must_declare_an_always_or_eventually_invariant_it_breaks() {
    // Goal: a declaration no single seed can bear out is refused when the spec is checked.
    let with = |invariant: &str| {
        let mut spec = Scenario::spec(&Toy::default());
        spec.mutants = vec![MutantSpec::new("fragile", "a loses its state").breaks(invariant)];
        spec.validate()
    };
    assert_eq!(with("a-survives-crash"), Ok(()));
    assert_eq!(with("b-answers"), Ok(()));
    assert_eq!(
        with("b-paused"),
        Err("scenario toy: mutant fragile breaks b-paused, a sometimes-invariant: no single seed breaks one".to_string())
    );
    assert_eq!(
        with("no-such"),
        Err("scenario toy: mutant fragile breaks no-such, not one of its invariants".to_string())
    );
}

#[test]
fn a_two_episode_case_shrinks_to_the_episode_that_matters() {
    // Goal: of a pause of b (harmless) and a crash of a (the cause), shrinking keeps only the
    // crash and checks that the result is 1-minimal.
    let toy = Toy::default();
    let faults: std::collections::BTreeSet<FaultKind> = FaultKind::ALL.into_iter().collect();
    let mut case = toy.generate(0, Some("fragile".into()), faults);
    let episode = |at_ms: u64, fault: Fault| harness::Episode {
        at_ms,
        duration_ms: Some(200),
        fault,
    };
    case.plan.episodes = vec![
        episode(100, Fault::Pause { node: "b".into() }),
        episode(300, Fault::Crash { node: "a".into() }),
    ];
    let options = RunOptions::default();
    let verdict = toy.run_case(&case, &options).unwrap().verdict;
    assert!(!verdict.is_pass(), "{verdict}");
    let shrunk = harness::shrink::shrink(&toy, &case, &verdict, &options);
    assert!(shrunk.reproduced && shrunk.minimal, "{shrunk:?}");
    assert_eq!(
        shrunk
            .case
            .plan
            .episodes
            .iter()
            .map(|e| e.fault.clone())
            .collect::<Vec<_>>(),
        vec![Fault::Crash { node: "a".into() }]
    );
}

#[test]
fn hard_medians_compare_random_search_and_exploration_counting_misses_as_beyond_any_budget() {
    // Goal: the number issue 21 judges exploration by, on hand-made scores: the median runs
    // to catch the hard mutants each way, where a mutant not caught is worse than any catch.
    let score =
        |hard: bool, random: Option<u64>, explore: Option<u64>| harness::scoreboard::MutantScore {
            scenario: "s".into(),
            mutant: "m".into(),
            hard,
            seeds: 100,
            detected: random.is_some(),
            seeds_to_detect: random,
            wall_seconds: 0.0,
            verdict: None,
            invariant: None,
            breaks: None,
            plan_steps_found: None,
            plan_steps: None,
            plan_minimal: None,
            detected_without_faults: false,
            seeds_to_detect_without_faults: None,
            quiet_seeds: 0,
            explore_seeds_to_detect: explore,
            explore_wall_seconds: Some(0.0),
        };
    let scores = [
        score(true, Some(300), Some(100)),
        score(true, Some(100), Some(40)),
        score(true, Some(500), None),
        // Not hard: left out.
        score(false, Some(1), Some(1)),
    ];
    assert_eq!(
        harness::scoreboard::hard_medians(&scores),
        (Some(300.0), Some(100.0))
    );
    let misses = [
        score(true, Some(10), None),
        score(true, None, None),
        score(true, Some(20), Some(5)),
        score(true, Some(30), Some(6)),
    ];
    assert_eq!(
        harness::scoreboard::hard_medians(&misses),
        (Some(25.0), None)
    );
    assert_eq!(
        harness::scoreboard::hard_medians(&scores[3..]),
        (None, None)
    );
}
