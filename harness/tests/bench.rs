//! `dst bench --json` prints one JSON object with every key the project's issue 17 asks for.
//! Measured with `--quick` (a token amount of each measurement) over a toy scenario: this
//! checks the output's shape, never the numbers, which are wall times of a shared machine.

use harness::bench::{self, BenchOptions};
use harness::plan::{Fault, FaultKind};
use harness::{Checked, Env, FaultBudget, Invariant, MutantSpec, Registry, Scenario, ScenarioSpec};
use proptest::prelude::*;
use sim_core::{time, SimConfig};
use std::time::Duration;

static A_SURVIVES_CRASH: Invariant =
    Invariant::always("a-survives-crash", "a crash of a loses nothing");

/// Two idle nodes; with the mutant `fragile`, a plan that crashes `a` breaks the invariant.
#[derive(Clone)]
struct Toy;

impl Scenario for Toy {
    type Workload = u32;
    type System = ();

    fn spec(&self) -> ScenarioSpec {
        ScenarioSpec {
            name: "toy".into(),
            description: "two idle nodes".into(),
            nodes: vec!["a".into(), "b".into()],
            budget: FaultBudget {
                kinds: [FaultKind::Crash].into_iter().collect(),
                episodes_max: 4,
                plan_duration_ms: 1_000,
                episode_duration_max_ms: 400,
                ..FaultBudget::default()
            },
            invariants: vec![A_SURVIVES_CRASH],
            mutants: vec![MutantSpec::new("fragile", "a loses its state in a crash")],
            sometimes_batch_min: 1,
            sim_config: SimConfig {
                time_limit_ms: 30_000,
                ..SimConfig::default()
            },
        }
    }

    fn workload(&self) -> BoxedStrategy<u32> {
        (1u32..20).boxed()
    }

    fn setup(&self, env: &Env, _: &u32) {
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
    }

    async fn drive(&self, env: &Env, _: &(), workload: u32) -> Checked {
        let crashes_a = env
            .plan()
            .episodes
            .iter()
            .any(|episode| matches!(&episode.fault, Fault::Crash { node } if node == "a"));
        env.sim
            .sleep(Duration::from_millis(u64::from(workload)))
            .await;
        if env.is_mutant("fragile") && crashes_a {
            return Err(A_SURVIVES_CRASH.violated("a lost its state"));
        }
        Ok(())
    }
}

#[test]
fn bench_json_has_every_key_of_the_issue() {
    let options = BenchOptions {
        jobs: 2,
        quick: true,
    };
    let registry = Registry::new().with(Toy);
    let report = bench::run(&registry, &options, &mut |_| {}).expect("measured");
    // What `dst bench --json` prints, parsed back as any reader would.
    let text = bench::json(&report);
    let value: serde_json::Value = serde_json::from_str(&text).expect("one JSON value");
    for key in [
        "net_vs_madsim_ratio",
        "empty_run_vs_madsim_ratio",
        "parallel_speedup",
        "rss_mb_start",
        "rss_mb_end",
        "first_failure_to_case_seconds",
        "scenarios",
    ] {
        assert!(value.get(key).is_some(), "no {key} in {text}");
    }
    for key in [
        "net_vs_madsim_ratio",
        "empty_run_vs_madsim_ratio",
        "parallel_speedup",
    ] {
        let measured = value[key].as_f64();
        assert!(measured.is_some_and(|v| v > 0.0), "{key}: {text}");
    }
    // Memory is read from /proc on Linux, where CI runs.
    if cfg!(target_os = "linux") {
        assert!(value["rss_mb_start"].as_f64().is_some(), "{text}");
        assert!(value["rss_mb_end"].as_f64().is_some(), "{text}");
    }
    // The mutant fails within the searched seeds, and its shrunk case is saved.
    let to_case = value["first_failure_to_case_seconds"].as_f64();
    assert!(to_case.is_some(), "{text}");
    assert_eq!(value["first_failures"][0]["saved"], true, "{text}");
    assert_eq!(value["first_failures"][0]["episodes"][1], 1, "{text}");
    // Every registered scenario, with its speeds.
    let scenarios = value["scenarios"].as_array().expect("an array");
    assert_eq!(scenarios.len(), 1, "{text}");
    assert_eq!(scenarios[0]["name"], "toy", "{text}");
    for key in ["runs_per_second", "sim_wall_ratio"] {
        let measured = scenarios[0][key].as_f64();
        assert!(measured.is_some_and(|v| v > 0.0), "{key}: {text}");
    }
}

#[test]
fn bench_refuses_an_empty_registry_with_a_message() {
    let options = BenchOptions {
        jobs: 1,
        quick: true,
    };
    let error = bench::run(&Registry::new(), &options, &mut |_| {}).expect_err("refused");
    assert!(error.contains("no scenario"), "{error}");
}
