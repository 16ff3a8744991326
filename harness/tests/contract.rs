//! The harness v2 contract: the harness runs the phases and judges, whatever a scenario forgets.
//!
//! One small scenario whose `behaviour` breaks one rule at a time; each test shows the verdict
//! the harness gives: `error` for a broken contract, `inconclusive` for a check that could not
//! decide, never a silent pass.

use harness::case::{Case, DynScenario};
use harness::history::History;
use harness::linearizability::models::{Register, RegisterInput, RegisterOutput};
use harness::{
    Checked, Env, Episode, Fault, FaultBudget, FaultKind, Invariant, RunOptions, RunResult,
    Scenario, ScenarioSpec, VerdictKind,
};
use proptest::prelude::*;
use sim_core::trace::{Event, FaultField};
use sim_core::{time, SimConfig};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

static SAFE: Invariant = Invariant::always("safe", "nothing bad happens");
static OTHER: Invariant = Invariant::always("other", "nothing else bad happens");
static SERVES: Invariant = Invariant::eventually(
    "serves-after-heal",
    "after healing the server answers",
    Duration::from_millis(500),
);
static RESTARTED: Invariant = Invariant::sometimes("restarted", "the server restarted");
/// Declared by no spec: reporting it is a broken contract.
static STRAY: Invariant = Invariant::always("stray", "an invariant of another scenario");

#[derive(Clone, Copy, Debug, PartialEq)]
enum Behaviour {
    /// Builds every node, reports nothing wrong.
    Honest,
    /// Never builds the node `b` that its spec (and so its plans) name.
    SkipsNode,
    /// Reports a violation of an invariant its spec does not declare.
    Undeclared,
    /// Marks an always-invariant as a reached sometimes-invariant.
    WrongKind,
    /// Never judges its eventually-invariant.
    NeverJudged,
    /// A check that could not decide.
    Inconclusive,
    /// A linearizability check over a history that refused operations.
    FullHistory,
    /// Violates `safe`, then later `other`.
    TwoViolations,
    /// Violates `safe` with this wording.
    Worded(&'static str),
    /// The eventually-probe succeeds from this attempt on (`u32::MAX`: never).
    ServesFrom(u32),
    /// After healing, requires node `a` to have booted this many times (read through the `Rc`
    /// it shares with the node's program).
    Boots(usize),
    /// After healing, returns a violation of `safe` before judging its eventually-invariant.
    FailsAfterHeal,
    /// Reports `safe` around the harness, with a bare `sim_core::report_violation`.
    BareReport,
    /// Node `b` sends datagrams to `a`; the checker judges what was sent from a network tap
    /// opened in setup: no datagram may carry a value above 100 (`b` sends 7, then this).
    Sends(u64),
    /// Node `a` writes a file under page-cache pressure, so that what reaches the disk is
    /// written back without an fsync, then fsyncs it or not (`fsync`); after healing, the
    /// corruptions of `a`'s disk must number `corruptions`, each `synced` as `fsync` is.
    Writes { fsync: bool, corruptions: usize },
}

#[derive(Clone)]
struct Contract(Behaviour);

/// What setup builds: the boots of node `a`, kept in an `Rc<RefCell<..>>` shared with the node.
struct System {
    boots: Rc<RefCell<Vec<Duration>>>,
    tap: Option<sim_core::net::NetTap>,
}

impl Scenario for Contract {
    type Workload = u8;
    type System = System;

    fn spec(&self) -> ScenarioSpec {
        let mut sim_config = SimConfig {
            time_limit_ms: 60_000,
            ..SimConfig::default()
        };
        if matches!(self.0, Behaviour::Writes { .. }) {
            // A full page cache writes back: durable bytes that no fsync vouched for.
            sim_config.disk.pending_ops_max = 8;
        }
        ScenarioSpec {
            name: "contract".into(),
            description: "breaks one rule of the harness contract at a time".into(),
            nodes: vec!["a".into(), "b".into()],
            budget: FaultBudget {
                kinds: [FaultKind::Crash].into_iter().collect(),
                targets: vec!["a".into(), "b".into()],
                crash_targets: vec!["a".into(), "b".into()],
                ..FaultBudget::default()
            },
            invariants: vec![SAFE, OTHER, SERVES, RESTARTED],
            mutants: vec![],
            sometimes_batch_min: 10,
            sim_config,
        }
    }

    fn workload(&self) -> BoxedStrategy<u8> {
        Just(0u8).boxed()
    }

    fn setup(&self, env: &Env, _: &u8) -> System {
        let boots = Rc::new(RefCell::new(Vec::new()));
        if let Behaviour::Writes { fsync, .. } = self.0 {
            env.sim.node("a").init(move || write_file(fsync)).build();
            env.sim.node("b").build();
            return System { boots, tap: None };
        }
        let seen = boots.clone();
        let observer = env.observer();
        env.sim
            .node("a")
            .init(move || {
                seen.borrow_mut().push(time::true_now());
                if seen.borrow().len() > 1 {
                    observer.reached(&RESTARTED);
                }
                std::future::pending::<()>()
            })
            .build();
        if self.0 != Behaviour::SkipsNode {
            env.sim.node("b").build();
        }
        let tap = matches!(self.0, Behaviour::Sends(_)).then(|| env.sim.net().tap(64));
        System { boots, tap }
    }

    async fn drive(&self, env: &Env, _: &System, _: u8) -> Checked {
        if let Behaviour::Sends(value) = self.0 {
            let (a, b) = (env.sim.node_id("a").unwrap(), env.sim.node_id("b").unwrap());
            let sent = env.sim.spawn_on(b, async move {
                let socket = sim_core::net::Socket::bind(0).unwrap();
                for value in [7u64, value] {
                    socket.send(sim_core::net::Addr::new(a, 9), &value).unwrap();
                }
            });
            let _ = sent.await;
        }
        env.sim.sleep(Duration::from_millis(50)).await;
        match self.0 {
            Behaviour::Undeclared => env.violation(&STRAY, "reported by mistake"),
            Behaviour::WrongKind => env.reached(&SAFE),
            Behaviour::TwoViolations => {
                env.violation(&SAFE, "first");
                env.sim.sleep(Duration::from_millis(50)).await;
                return Err(OTHER.violated("second"));
            }
            Behaviour::Worded(text) => return Err(SAFE.violated(text)),
            Behaviour::BareReport => sim_core::report_violation("safe", "around the harness"),
            _ => {}
        }
        Ok(())
    }

    async fn check(&self, env: &Env, system: &System) -> Checked {
        if let Some(tap) = &system.tap {
            // Judged from the network, not from what the sender says it sent.
            if tap.overflowed() {
                env.inconclusive("the network tap overflowed");
            }
            for event in tap.drain() {
                let value = event.decode::<u64>();
                if event.what == sim_core::net::Tapped::Send && value > Some(100) {
                    return Err(SAFE.violated(format!(
                        "{} sent {value:?} to {}",
                        event.from_name, event.to_name
                    )));
                }
            }
        }
        match self.0 {
            Behaviour::Inconclusive => {
                env.inconclusive("the checker gave up");
                Ok(())
            }
            Behaviour::FullHistory => {
                let mut history: History<RegisterInput<u64>, RegisterOutput<u64>> =
                    History::with_ops_max(1);
                let op = history.invoke(0, RegisterInput::Write(1), 1).unwrap();
                history.complete(op, RegisterOutput::WriteOk, 2).unwrap();
                assert!(history.invoke(0, RegisterInput::Read, 3).is_err());
                env.linearizable(&SAFE, &Register::new(0u64), &history)
            }
            _ => Ok(()),
        }
    }

    async fn after_heal(&self, env: &Env, system: &System) -> Checked {
        if self.0 == Behaviour::NeverJudged {
            return Ok(());
        }
        if self.0 == Behaviour::FailsAfterHeal {
            return Err(SAFE.violated("broken after healing"));
        }
        if let Behaviour::Writes { fsync, corruptions } = self.0 {
            let found = env.disk_corruptions("a");
            let as_expected = found.len() == corruptions && found.iter().all(|c| c.synced == fsync);
            if !as_expected || !env.disk_corruptions("nobody").is_empty() {
                return Err(SAFE.violated(format!("corruptions of a's disk: {found:?}")));
            }
        }
        if let Behaviour::Boots(expected) = self.0 {
            let boots = system.boots.borrow().len();
            if boots != expected {
                return Err(SAFE.violated(format!("{boots} boots, expected {expected}")));
            }
        }
        let from = match self.0 {
            Behaviour::ServesFrom(attempt) => attempt,
            _ => 1,
        };
        let attempts = std::cell::Cell::new(0u32);
        env.eventually(&SERVES, || {
            attempts.set(attempts.get() + 1);
            let answer = if attempts.get() >= from {
                Ok(())
            } else {
                Err(format!("attempt {} refused", attempts.get()))
            };
            async move {
                time::sleep(Duration::from_millis(20)).await;
                answer
            }
        })
        .await
    }
}

/// Node `a` of [`Behaviour::Writes`]: 40 appends of 64 bytes to a new file (the page cache
/// holds 8 operations, so most are written back), then an fsync of it if `fsync`.
async fn write_file(fsync: bool) {
    let file = sim_core::disk::create("f").await.unwrap();
    for round in 0..40u8 {
        file.append(&[round; 64]).await.unwrap();
    }
    if fsync {
        file.sync_all().await.unwrap();
        sim_core::disk::sync_dir("").await.unwrap();
    }
    std::future::pending::<()>().await
}

fn case_with(behaviour: Behaviour, episodes: Vec<Episode>) -> (Contract, Case) {
    let scenario = Contract(behaviour);
    let mut case = scenario.generate(7, None, BTreeSet::new());
    case.plan.episodes = episodes;
    (scenario, case)
}

fn crash(node: &str, at_ms: u64) -> Episode {
    Episode {
        at_ms,
        duration_ms: Some(100),
        fault: Fault::Crash { node: node.into() },
    }
}

fn run(behaviour: Behaviour, episodes: Vec<Episode>) -> RunResult {
    run_with(behaviour, episodes, &RunOptions::default())
}

fn run_with(behaviour: Behaviour, episodes: Vec<Episode>, options: &RunOptions) -> RunResult {
    let (scenario, case) = case_with(behaviour, episodes);
    scenario.run_case(&case, options).expect("a valid case")
}

#[test]
fn an_honest_scenario_passes_and_its_plan_is_applied_as_typed_events() {
    let options = RunOptions {
        keep_trace: true,
        ..RunOptions::default()
    };
    let result = run_with(Behaviour::Honest, vec![crash("a", 10)], &options);
    assert_eq!(result.verdict.kind, VerdictKind::Pass, "{}", result.verdict);
    let timeline = result.timeline.expect("kept");
    let edges: Vec<(bool, u32, String, Vec<FaultField>)> = timeline
        .events
        .iter()
        .filter_map(|event| match &event.event {
            Event::Fault {
                start,
                episode,
                kind,
                fields,
                ..
            } => Some((*start, *episode, kind.clone(), fields.clone())),
            _ => None,
        })
        .collect();
    let a = vec![FaultField::Node("a".into())];
    assert_eq!(
        edges,
        vec![
            (true, 0, "crash".to_string(), a.clone()),
            (false, 0, "crash".to_string(), a)
        ]
    );
    // The scenario never asked for faults: the harness applied the crash anyway.
    assert!(result.sometimes.contains("restarted"));
}

#[test]
fn an_episode_naming_a_node_that_was_never_built_is_an_error() {
    let result = run(Behaviour::SkipsNode, vec![crash("b", 10)]);
    assert_eq!(
        result.verdict.kind,
        VerdictKind::Error,
        "{}",
        result.verdict
    );
    let message = result.verdict.message.unwrap_or_default();
    assert!(message.contains("\"b\""), "{message}");
    assert!(message.contains("starting at 10 ms"), "{message}");
    // Without such an episode the same scenario passes: the error is the plan's node.
    let result = run(Behaviour::SkipsNode, vec![crash("a", 10)]);
    assert_eq!(result.verdict.kind, VerdictKind::Pass, "{}", result.verdict);
}

#[test]
fn a_violation_of_an_undeclared_invariant_is_an_error() {
    let result = run(Behaviour::Undeclared, vec![]);
    assert_eq!(
        result.verdict.kind,
        VerdictKind::Error,
        "{}",
        result.verdict
    );
    assert!(result.verdict.invariant.is_none());
    assert!(
        result
            .verdict
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("\"stray\""),
        "{}",
        result.verdict
    );
    assert!(result.verdict.is_failure());
}

#[test]
fn an_invariant_used_as_another_kind_is_an_error() {
    let result = run(Behaviour::WrongKind, vec![]);
    assert_eq!(
        result.verdict.kind,
        VerdictKind::Error,
        "{}",
        result.verdict
    );
}

#[test]
fn an_eventually_invariant_never_judged_is_an_error() {
    let result = run(Behaviour::NeverJudged, vec![]);
    assert_eq!(
        result.verdict.kind,
        VerdictKind::Error,
        "{}",
        result.verdict
    );
    assert!(
        result
            .verdict
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("serves-after-heal"),
        "{}",
        result.verdict
    );
}

#[test]
fn a_check_that_cannot_decide_is_inconclusive_not_a_pass() {
    let result = run(Behaviour::Inconclusive, vec![]);
    assert_eq!(result.verdict.kind, VerdictKind::Inconclusive);
    assert!(!result.verdict.is_failure());
    assert!(!result.verdict.is_pass());
    assert_eq!(
        result.verdict.message.as_deref(),
        Some("the checker gave up")
    );
    let result = run(Behaviour::FullHistory, vec![]);
    assert_eq!(result.verdict.kind, VerdictKind::Inconclusive);
    assert!(
        result
            .verdict
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("refused 1 operations"),
        "{}",
        result.verdict
    );
}

#[test]
fn eventually_reprobes_until_its_bound() {
    let result = run(Behaviour::ServesFrom(3), vec![]);
    assert_eq!(result.verdict.kind, VerdictKind::Pass, "{}", result.verdict);
    let result = run(Behaviour::ServesFrom(u32::MAX), vec![]);
    assert_eq!(result.verdict.kind, VerdictKind::Liveness);
    assert_eq!(
        result.verdict.invariant.as_deref(),
        Some("serves-after-heal")
    );
    let message = result.verdict.message.unwrap_or_default();
    assert!(message.contains("not within 500 ms"), "{message}");
    assert!(message.contains("refused"), "{message}");
}

#[test]
fn a_muted_invariant_is_noted_and_the_others_are_still_judged() {
    let result = run(Behaviour::TwoViolations, vec![]);
    assert_eq!(result.verdict.invariant.as_deref(), Some("safe"));
    let options = RunOptions {
        skip_invariants: ["safe".to_string()].into_iter().collect(),
        ..RunOptions::default()
    };
    let result = run_with(Behaviour::TwoViolations, vec![], &options);
    assert_eq!(result.verdict.kind, VerdictKind::Safety);
    assert_eq!(result.verdict.invariant.as_deref(), Some("other"));
    assert_eq!(
        result.skipped,
        vec![("safe".to_string(), "first".to_string())]
    );
}

#[test]
fn the_trace_hash_covers_the_invariant_not_the_wording_of_its_message() {
    let a = run(Behaviour::Worded("value 3 seen twice"), vec![]);
    let b = run(Behaviour::Worded("saw the value 3 two times"), vec![]);
    assert_eq!(a.verdict.kind, VerdictKind::Safety);
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_ne!(a.verdict.message, b.verdict.message);
    // The violation itself does count.
    let c = run(Behaviour::Honest, vec![]);
    assert_ne!(a.trace_hash, c.trace_hash);
}

#[test]
fn node_state_in_rc_refcell_survives_restarts_and_is_shared_with_the_scenario() {
    // Two crashes of `a`: three boots, counted by the node's program in an `Rc<RefCell<..>>`
    // that the scenario's after_heal reads.
    let result = run(Behaviour::Boots(3), vec![crash("a", 10), crash("a", 300)]);
    assert_eq!(result.verdict.kind, VerdictKind::Pass, "{}", result.verdict);
    assert!(result.sometimes.contains("restarted"));
    let result = run(Behaviour::Boots(3), vec![crash("a", 10)]);
    assert_eq!(
        result.verdict.kind,
        VerdictKind::Safety,
        "{}",
        result.verdict
    );
}

#[test]
fn a_checker_judges_what_was_sent_from_the_network_tap() {
    let result = run(Behaviour::Sends(50), vec![]);
    assert_eq!(result.verdict.kind, VerdictKind::Pass, "{}", result.verdict);
    let result = run(Behaviour::Sends(500), vec![]);
    assert_eq!(
        result.verdict.kind,
        VerdictKind::Safety,
        "{}",
        result.verdict
    );
    let message = result.verdict.message.unwrap_or_default();
    assert_eq!(message, "b sent Some(500) to a");
}

#[test]
fn a_muted_violation_that_ends_a_phase_early_leaves_the_rest_inconclusive() {
    let result = run(Behaviour::FailsAfterHeal, vec![]);
    assert_eq!(
        result.verdict.kind,
        VerdictKind::Safety,
        "{}",
        result.verdict
    );
    let options = RunOptions {
        skip_invariants: ["safe".to_string()].into_iter().collect(),
        ..RunOptions::default()
    };
    let result = run_with(Behaviour::FailsAfterHeal, vec![], &options);
    assert_eq!(
        result.verdict.kind,
        VerdictKind::Inconclusive,
        "{}",
        result.verdict
    );
    assert_eq!(result.skipped.len(), 1);
}

#[test]
fn a_muted_invariant_reported_around_the_harness_is_inconclusive_not_a_failure() {
    let result = run(Behaviour::BareReport, vec![]);
    assert_eq!(
        result.verdict.kind,
        VerdictKind::Safety,
        "{}",
        result.verdict
    );
    let options = RunOptions {
        skip_invariants: ["safe".to_string()].into_iter().collect(),
        ..RunOptions::default()
    };
    let result = run_with(Behaviour::BareReport, vec![], &options);
    assert_eq!(
        result.verdict.kind,
        VerdictKind::Inconclusive,
        "{}",
        result.verdict
    );
}

#[test]
fn a_scenario_learns_whether_a_disk_corrupt_episode_hit_fsynced_data() {
    // Goal: `Env::disk_corruptions` reports the corruptions of a node's disk that the plan's
    // `disk_corrupt` episodes made, each with sim-core's truth of whether it hit fsynced
    // data: bytes written back without an fsync are not, the same bytes fsynced are.
    let corrupt = |at_ms| Episode {
        at_ms,
        duration_ms: None,
        fault: Fault::DiskCorrupt { node: "a".into() },
    };
    for fsync in [false, true] {
        let episodes = vec![corrupt(100), corrupt(200)];
        let result = run(
            Behaviour::Writes {
                fsync,
                corruptions: 2,
            },
            episodes,
        );
        assert_eq!(
            result.verdict.kind,
            VerdictKind::Pass,
            "fsync {fsync}: {}",
            result.verdict
        );
    }
    // No episode, no corruption.
    let result = run(
        Behaviour::Writes {
            fsync: true,
            corruptions: 0,
        },
        vec![],
    );
    assert_eq!(result.verdict.kind, VerdictKind::Pass, "{}", result.verdict);
}

/// A checker's unit test on hand-made inputs: a detached observer keeps what it is told.
#[test]
fn a_detached_observer_keeps_violations_for_a_checkers_unit_test() {
    let observer = harness::Observer::detached(&[SAFE, RESTARTED]);
    observer.reached(&RESTARTED);
    observer.violation(&SAFE, "one");
    observer.report(Err(SAFE.violated("two")));
    assert_eq!(
        observer.violations(),
        vec![
            ("safe".to_string(), "one".to_string()),
            ("safe".to_string(), "two".to_string())
        ]
    );
    assert_eq!(observer.reached_names(), vec!["restarted".to_string()]);
}

#[test]
#[should_panic(expected = "not among the detached observer's declared invariants")]
fn a_detached_observer_refuses_an_undeclared_invariant() {
    harness::Observer::detached(&[SAFE]).violation(&OTHER, "not declared");
}
