//! The harness machinery on a small scenario that needs no network: a lease on a node's clock.
//!
//! The holder takes a lease of `LEASE` on its own clock and uses it only while it believes the
//! lease is valid. The checker, an independent oracle on true time, requires every use to fall
//! within the lease's longest possible true span given the budget's drift. The mutant
//! `wall-clock-lease` measures the lease on the wall clock, which a clock jump stretches: the
//! kind of lease bug etcd had (etcd-io/etcd#12291).

use harness::case::DynScenario;
use harness::corpus::{self, CaseFile};
use harness::plan::FaultKind;
use harness::{
    Checked, Env, FaultBudget, Invariant, MutantSpec, Observer, RunOptions, Scenario, ScenarioSpec,
    VerdictKind,
};
use proptest::prelude::*;
use sim_core::{time, SimConfig};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

static LEASE_RESPECTED: Invariant =
    Invariant::always("lease-respected", "no use of a lease after it ended");
static HOLDER_PROGRESS: Invariant = Invariant::eventually(
    "holder-progress",
    "after healing the holder uses leases again",
    Duration::from_secs(1),
);
static LEASE_RENEWED: Invariant =
    Invariant::sometimes("lease-renewed", "a lease ended and a new one was taken");
static HOLDER_RESTARTED: Invariant =
    Invariant::sometimes("holder-restarted", "the holder crashed and came back");

const LEASE: Duration = Duration::from_millis(100);
const DRIFT_MAX_PPM: i64 = 200_000;

/// The lease scenario; `crashes: false` takes crashes out of its fault model (while still
/// declaring the sometimes-invariant that needs one).
#[derive(Clone)]
struct LeaseWith {
    crashes: bool,
}

#[allow(non_upper_case_globals)]
const Lease: LeaseWith = LeaseWith { crashes: true };

/// How many lease rounds the holder runs.
type Workload = u32;

impl Scenario for LeaseWith {
    type Workload = Workload;
    type System = Rc<Cell<u64>>;

    fn spec(&self) -> ScenarioSpec {
        ScenarioSpec {
            name: "lease".into(),
            description: "a lease measured on the holder's clock is never used past its end".into(),
            nodes: vec!["holder".into()],
            budget: FaultBudget {
                kinds: [FaultKind::Clock, FaultKind::Pause, FaultKind::Crash]
                    .into_iter()
                    .filter(|kind| self.crashes || *kind != FaultKind::Crash)
                    .collect(),
                episodes_max: 6,
                plan_duration_ms: 3_000,
                episode_duration_max_ms: 1_000,
                ..FaultBudget::default()
            },
            invariants: vec![
                LEASE_RESPECTED,
                HOLDER_PROGRESS,
                LEASE_RENEWED,
                HOLDER_RESTARTED,
            ],
            mutants: vec![MutantSpec::new(
                "wall-clock-lease",
                "the lease is measured on the wall clock, so a jump stretches it (etcd-io/etcd#12291)",
            )],
            sometimes_batch_min: 10,
            sim_config: SimConfig {
                time_limit_ms: 60_000,
                ..SimConfig::default()
            },
        }
    }

    fn workload(&self) -> BoxedStrategy<Workload> {
        (20u32..40).boxed()
    }

    /// The holder node; its count of lease uses is shared with the scenario through an `Rc`:
    /// a run is single-threaded, and node programs need not be `Send`.
    fn setup(&self, env: &Env, rounds: &Workload) -> Rc<Cell<u64>> {
        let rounds = *rounds;
        let wall_clock = env.is_mutant("wall-clock-lease");
        let observer = env.observer();
        let uses = Rc::new(Cell::new(0u64));
        let counted = uses.clone();
        let boots = Rc::new(Cell::new(0u64));
        env.sim
            .node("holder")
            .init(move || {
                boots.set(boots.get() + 1);
                if boots.get() > 1 {
                    observer.reached(&HOLDER_RESTARTED);
                }
                holder(rounds, wall_clock, observer.clone(), counted.clone())
            })
            .build();
        uses
    }

    async fn drive(&self, _: &Env, _: &Rc<Cell<u64>>, _: Workload) -> Checked {
        // The holder runs on its own; the plan goes on around it.
        Ok(())
    }

    async fn after_heal(&self, env: &Env, uses: &Rc<Cell<u64>>) -> Checked {
        env.eventually(&HOLDER_PROGRESS, || async {
            let before = uses.get();
            env.sim.sleep(Duration::from_millis(100)).await;
            if uses.get() > before {
                Ok(())
            } else {
                Err("no lease used in 100 ms".into())
            }
        })
        .await
    }
}

async fn holder(rounds: u32, wall_clock: bool, observer: Observer, uses: Rc<Cell<u64>>) {
    // The longest true time a lease can last on a clock within the drift budget.
    let span_max = LEASE.mul_f64(1e6 / (1e6 - DRIFT_MAX_PPM as f64));
    for round in 0..u32::MAX {
        let taken_true = time::true_now();
        let (mono_start, wall_start) = (time::now(), time::wall());
        loop {
            let elapsed = if wall_clock {
                time::wall().duration_since(wall_start).unwrap_or_default()
            } else {
                mono_start.elapsed()
            };
            if elapsed >= LEASE {
                break;
            }
            // The oracle: true time since the lease was taken.
            let true_elapsed = time::true_now() - taken_true;
            if true_elapsed > span_max {
                observer.violation(
                    &LEASE_RESPECTED,
                    format!(
                        "lease used {true_elapsed:?} after it was taken (at most {span_max:?})"
                    ),
                );
            }
            uses.set(uses.get() + 1);
            time::sleep(Duration::from_millis(10)).await;
        }
        if round > 0 {
            observer.reached(&LEASE_RENEWED);
        }
        if round >= rounds {
            // Keep renewing slowly so that the liveness phase can see progress.
            time::sleep(Duration::from_millis(200)).await;
        }
        time::sleep(Duration::from_millis(20)).await;
    }
}

fn all_faults() -> BTreeSet<FaultKind> {
    FaultKind::ALL.into_iter().collect()
}

#[test]
fn lease_passes_generated_cases_under_clock_pause_and_crash_faults() {
    harness::testing::check(Lease);
}

#[test]
fn the_seed_alone_determines_the_case() {
    let a = Lease.generate(42, None, all_faults());
    let b = Lease.generate(42, None, all_faults());
    assert_eq!(a, b);
    assert_ne!(a, Lease.generate(43, None, all_faults()));
    // A plan never exceeds the budget.
    for seed in 0..50 {
        let case = Lease.generate(seed, None, all_faults());
        assert!(case.plan.max_down() <= 1, "seed {seed}: {}", case.plan);
        assert!(case.plan.episodes.len() <= 6);
        assert!(case.plan.kinds().is_subset(&case.swarm.kinds));
    }
}

#[test]
fn faults_none_gives_empty_plans() {
    for seed in 0..20 {
        let case = Lease.generate(seed, None, BTreeSet::new());
        assert!(case.plan.episodes.is_empty());
    }
}

#[test]
fn mutant_is_caught_shrunk_saved_and_replayed_exactly() {
    let report =
        harness::testing::expect_caught(&Lease, "wall-clock-lease", "lease-respected", 200);
    let failure = &report.failures[0];
    assert_eq!(failure.verdict, "safety");
    assert_eq!(failure.invariant.as_deref(), Some("lease-respected"));
    assert!(failure.episodes.1 <= 2, "not shrunk: {}", failure.plan);
    let file = failure.file.as_ref().expect("saved");
    let case_file = corpus::load(std::path::Path::new(file)).unwrap();
    assert_eq!(case_file.verdict, VerdictKind::Safety);
    assert!(
        case_file.plan.kinds().contains(&FaultKind::Clock),
        "{}",
        failure.plan
    );
    harness::testing::replay_matches(&Lease, &case_file).unwrap();
    // And again: replay is exact, not lucky.
    let result = Lease
        .run_case(&case_file.case(), &RunOptions::default())
        .unwrap();
    assert_eq!(corpus::hex(result.trace_hash), case_file.trace_hash);
}

#[test]
fn sometimes_invariants_are_judged_on_the_batch() {
    // With every fault kind, some seed crashes the holder: both sometimes-invariants are met.
    let options = harness::batch::BatchOptions {
        seeds: 24,
        ..Default::default()
    };
    let report = harness::batch::run_batch(&Lease, &options, &|| {});
    assert!(report.sometimes_judged);
    assert!(
        report.sometimes_unmet.is_empty(),
        "{:?}",
        report.sometimes_unmet
    );
    // A fault model without crashes never restarts the holder: the batch fails although every
    // seed passes.
    let no_crash = LeaseWith { crashes: false };
    let report = harness::batch::run_batch(&no_crash, &options, &|| {});
    assert!(report.sometimes_judged);
    assert_eq!(report.failed, 0);
    assert_eq!(report.sometimes_unmet, vec!["holder-restarted".to_string()]);
    assert!(!report.ok());
    // Fewer fault kinds than the fault model (`--faults none`): not judged, since the states
    // may be out of reach.
    let quiet = harness::batch::BatchOptions {
        seeds: 12,
        faults: BTreeSet::new(),
        ..Default::default()
    };
    assert!(!harness::batch::run_batch(&Lease, &quiet, &|| {}).sometimes_judged);
    // Too small a batch is not judged.
    let small = harness::batch::BatchOptions {
        seeds: 3,
        faults: BTreeSet::new(),
        ..Default::default()
    };
    assert!(!harness::batch::run_batch(&Lease, &small, &|| {}).sometimes_judged);
}

#[test]
fn check_determinism_finds_no_divergence() {
    let options = harness::batch::BatchOptions {
        seeds: 6,
        check_determinism: true,
        ..Default::default()
    };
    let report = harness::batch::run_batch(&Lease, &options, &|| {});
    assert_eq!(report.failed, 0, "{:?}", report.failures);
}

#[test]
fn shards_split_the_seed_range_exactly() {
    let mut seen = Vec::new();
    for k in 1..=4 {
        let options = harness::batch::BatchOptions {
            start: 10,
            seeds: 10,
            shard: Some((k, 4)),
            ..Default::default()
        };
        seen.extend(options.seed_range());
    }
    assert_eq!(seen, (10..20).collect::<Vec<_>>());
}

#[test]
fn corrupt_case_files_give_a_clear_error_naming_the_file() {
    let path = std::path::Path::new("corpus/lease/broken.json");
    let error = corpus::parse(path, "{ not json").unwrap_err().to_string();
    assert!(error.contains("corpus/lease/broken.json"), "{error}");
    assert!(error.contains("not a valid case file"), "{error}");
    let error = corpus::parse(path, r#"{"version": 99}"#)
        .unwrap_err()
        .to_string();
    assert!(error.contains("version 99 is not supported"), "{error}");
    let error = corpus::parse(path, r#"{"version": 1, "seed": 3}"#)
        .unwrap_err()
        .to_string();
    assert!(error.contains("missing field"), "{error}");
    // A valid file whose hash is not hex.
    let case = Lease.generate(1, None, all_faults());
    let mut file = CaseFile::new(&case, VerdictKind::Pass, None, 7, "x".into());
    file.trace_hash = "zz".into();
    let text = serde_json::to_string(&file).unwrap();
    let error = corpus::parse(path, &text).unwrap_err().to_string();
    assert!(error.contains("16 hex digits"), "{error}");
}

#[test]
fn a_case_with_an_unknown_mutant_or_node_is_rejected_with_a_clear_error() {
    let mut case = Lease.generate(1, None, all_faults());
    case.mutant = Some("no-such-mutant".into());
    let error = Lease.run_case(&case, &RunOptions::default()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("unknown mutant \"no-such-mutant\""),
        "{error}"
    );
    let mut case = Lease.generate(1, None, all_faults());
    case.plan.episodes.push(harness::Episode {
        at_ms: 1,
        duration_ms: Some(1),
        fault: harness::Fault::Crash {
            node: "ghost".into(),
        },
    });
    let error = Lease.run_case(&case, &RunOptions::default()).unwrap_err();
    assert!(
        error.to_string().contains("unknown node \"ghost\""),
        "{error}"
    );
}
