//! Coverage-guided exploration (`dst run --explore`) on real scenarios: the same options run
//! the same cases and find the same failures in the same order, whatever the number of
//! workers; it finds a mutant; its derived cases are complete cases that replay.

use harness::explore::{explore, ExploreOptions, ExploreReport};
use harness::FaultKind;

fn options(jobs: usize) -> ExploreOptions {
    ExploreOptions {
        start: 0,
        runs: 160,
        jobs,
        mutant: Some("half-open-unbounded".into()),
        faults: FaultKind::ALL.into_iter().collect(),
        corpus_dir: None,
        fail_fast: false,
        // Shrinking is the batch's, tested there; here it would only cost time.
        shrink: false,
        ..ExploreOptions::default()
    }
}

/// What must not change from one exploration to the next: every count, the coverage after
/// each generation, and each failure with its run, origin and trace hash.
fn signature(report: &ExploreReport) -> String {
    let failures: Vec<String> = report
        .failures
        .iter()
        .map(|found| {
            format!(
                "run {} {:?} x{} {} {:?} {}",
                found.run,
                found.origin,
                found.count,
                found.failure.verdict,
                found.failure.invariant,
                found.failure.trace_hash
            )
        })
        .collect();
    format!(
        "runs {} fresh {} passed {} failed {} inconclusive {} refused {} coverage {} pool {} \
         growth {:?} failures {failures:?}",
        report.runs,
        report.fresh,
        report.passed,
        report.failed,
        report.inconclusive,
        report.refused,
        report.coverage,
        report.pool,
        report
            .growth
            .iter()
            .map(|g| (g.runs, g.coverage, g.failures))
            .collect::<Vec<_>>(),
    )
}

#[test]
fn exploration_is_deterministic_whatever_the_workers_and_finds_the_mutant() {
    let registry = scenarios::registry();
    let scenario = registry.get("circuit-breaker").expect("registered");
    let one = explore(scenario.as_ref(), &options(1), &mut |_| {});
    let two = explore(scenario.as_ref(), &options(2), &mut |_| {});
    assert_eq!(signature(&one), signature(&two));
    assert_eq!(one.runs, 160);
    assert!(
        one.fresh < one.runs,
        "nothing was derived: {}",
        signature(&one)
    );
    assert!(one.pool > 0 && one.coverage > 100, "{}", signature(&one));
    assert!(!one.ok(), "the mutant survived: {}", signature(&one));
    assert_eq!(
        one.failures[0].failure.invariant.as_deref(),
        Some("half-open-probes"),
        "{}",
        signature(&one)
    );
}

#[test]
fn the_pool_keeps_at_most_its_bound_and_stays_deterministic() {
    let registry = scenarios::registry();
    let scenario = registry.get("register").expect("registered");
    let options = ExploreOptions {
        mutant: None,
        runs: 96,
        pool_max: 8,
        ..options(2)
    };
    let first = explore(scenario.as_ref(), &options, &mut |_| {});
    assert_eq!(first.pool, 8, "{}", signature(&first));
    assert!(first.fresh < first.runs);
    let again = explore(
        scenario.as_ref(),
        &ExploreOptions { jobs: 1, ..options },
        &mut |_| {},
    );
    assert_eq!(signature(&first), signature(&again));
}

#[test]
fn a_fail_fast_exploration_stops_at_its_first_failure() {
    let registry = scenarios::registry();
    let scenario = registry.get("circuit-breaker").expect("registered");
    let options = ExploreOptions {
        fail_fast: true,
        ..options(2)
    };
    let report = explore(scenario.as_ref(), &options, &mut |_| {});
    let first = report.first_failure_run.expect("found");
    assert_eq!(report.runs, first);
    let last = report.growth.last().expect("growth recorded");
    assert_eq!(
        (last.runs, last.failures),
        (first, 1),
        "the failing run is in the growth"
    );
    assert_eq!(report.failed, 1);
    assert_eq!(report.failures.len(), 1);
}

#[test]
fn derived_cases_are_valid_complete_cases_that_replay_the_same_run() {
    // Goal: what the explorer runs can be stored and rerun like any case, and its mutations
    // vary: derived cases fit the scenario, survive a round trip through JSON (a case file)
    // and rerun to the same verdict and trace hash.
    let registry = scenarios::registry();
    let scenario = registry.get("event-sourcing").expect("registered");
    let options = ExploreOptions {
        mutant: None,
        ..options(1)
    };
    let parent = scenario.generate(5, None, options.faults.clone());
    let mut kinds = std::collections::BTreeSet::new();
    let mut derived = 0;
    for seed in 0..24 {
        let Some((case, mutations)) =
            harness::explore::derive(scenario.as_ref(), &options, &parent, seed)
        else {
            continue;
        };
        derived += 1;
        kinds.extend(mutations);
        assert_ne!(case, parent);
        harness::case::check_case(&scenario.spec(), &case).expect("a valid plan");
        let text = serde_json::to_string(&case).expect("cases serialize");
        let back: harness::Case = serde_json::from_str(&text).expect("cases parse");
        let run = |case: &harness::Case| {
            scenario
                .run_case(case, &Default::default())
                .expect("a valid case")
        };
        let (first, again) = (run(&case), run(&back));
        assert_eq!(first.trace_hash, again.trace_hash);
        assert_eq!(first.verdict, again.verdict);
        assert!(!first.verdict.is_failure(), "{:?}", first.verdict);
    }
    assert!(
        derived >= 16,
        "only {derived} of 24 derivations gave a case"
    );
    assert!(kinds.len() >= 6, "mutations used: {kinds:?}");
}

#[test]
fn a_saved_pool_loads_back_and_explorations_from_it_derive_at_once_and_stay_deterministic() {
    // Goal: a stored pool is what the exploration that wrote it knew, its workloads kept as
    // seeds where they are draws; an exploration started from it derives from its first
    // generation on, takes in every case, and runs the same cases whatever the workers.
    use harness::pool;
    let registry = scenarios::registry();
    let scenario = registry.get("circuit-breaker").expect("registered");
    let builder = ExploreOptions {
        mutant: None,
        runs: 64,
        keep_pool: true,
        ..options(2)
    };
    let built = explore(scenario.as_ref(), &builder, &mut |_| {});
    let kept = built.kept_pool.expect("kept");
    assert_eq!((kept.runs, kept.scenario.as_str()), (64, "circuit-breaker"));
    assert!(!kept.cases.is_empty() && kept.cases.len() <= built.pool);
    assert!(
        kept.cases.iter().any(|case| case.workload.is_none()),
        "no workload stored as its seed"
    );
    let dir = tempfile::tempdir().expect("temporary folder");
    kept.save(&pool::path(dir.path(), "circuit-breaker"))
        .expect("saved");
    let loaded = pool::load_for(dir.path(), "circuit-breaker")
        .expect("readable")
        .expect("there");
    assert_eq!(loaded, kept);
    assert!(pool::load_for(dir.path(), "register")
        .expect("no file is no pool")
        .is_none());

    let from_pool = |jobs| ExploreOptions {
        runs: 32,
        pool: Some(std::sync::Arc::new(loaded.clone())),
        ..options(jobs)
    };
    let one = explore(scenario.as_ref(), &from_pool(1), &mut |_| {});
    let two = explore(scenario.as_ref(), &from_pool(2), &mut |_| {});
    assert_eq!(signature(&one), signature(&two));
    assert_eq!((one.pool_loaded, one.pool_skipped), (loaded.cases.len(), 0));
    assert!(
        one.fresh < one.runs / 2,
        "an exploration from a stored pool derives from the start: {}",
        signature(&one)
    );
    assert!(
        one.coverage > 0 && one.coverage < loaded.hits.len(),
        "coverage counts the exploration's own runs only: {}",
        signature(&one)
    );

    // Without faults, the stored cases with fault episodes cannot run: left out, counted.
    let quiet = explore(
        scenario.as_ref(),
        &ExploreOptions {
            runs: 16,
            faults: Default::default(),
            pool: Some(std::sync::Arc::new(loaded.clone())),
            ..options(1)
        },
        &mut |_| {},
    );
    let with_faults = loaded
        .cases
        .iter()
        .filter(|case| !case.plan.episodes.is_empty())
        .count();
    assert_eq!(quiet.pool_skipped, with_faults);
    assert_eq!(quiet.pool_loaded, loaded.cases.len() - with_faults);
    // Learned with other fault kinds, the pool's features are not taken as seen: the
    // exploration's own new features still join its pool.
    assert!(quiet.pool > quiet.pool_loaded, "{}", signature(&quiet));
}

#[test]
fn a_bad_pool_file_is_a_one_line_error() {
    use harness::pool;
    let dir = tempfile::tempdir().expect("temporary folder");
    let file = pool::path(dir.path(), "circuit-breaker");
    std::fs::write(&file, "not gzip").expect("written");
    let error = pool::load_for(dir.path(), "circuit-breaker")
        .expect_err("garbage")
        .to_string();
    assert!(
        error.contains("circuit-breaker.json.gz")
            && error.contains("gzip")
            && !error.contains('\n'),
        "{error}"
    );
    // A pool of another scenario under this one's name.
    let registry = scenarios::registry();
    let scenario = registry.get("register").expect("registered");
    let built = explore(
        scenario.as_ref(),
        &ExploreOptions {
            mutant: None,
            runs: 16,
            keep_pool: true,
            ..options(1)
        },
        &mut |_| {},
    );
    built.kept_pool.expect("kept").save(&file).expect("saved");
    let error = pool::load_for(dir.path(), "circuit-breaker")
        .expect_err("another scenario's")
        .to_string();
    assert!(error.contains("holds scenario \"register\""), "{error}");
}
