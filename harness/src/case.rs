//! Cases, verdicts, and running a case.
//!
//! A [`Case`] is everything one run depends on: scenario, seed, mutant, the fault kinds allowed,
//! the swarm profile, the plan and the workload. [`DynScenario::generate`] draws it from the seed alone, so
//! `dst run X --start S --seeds 1` is the case seed S had in any larger run.

use crate::generate::{plan_strategy, swarm_strategy, tree_for_seed, SwarmProfile};
use crate::invariant::InvariantKind;
use crate::plan::{FaultKind, FaultPlan};
use crate::scenario::{run_phases, Env, Observer, Scenario, ScenarioSpec};
use proptest::strategy::{BoxedStrategy, Strategy, ValueTree};
use serde::{Deserialize, Serialize};
use sim_core::trace::Timeline;
use sim_core::Outcome;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// Everything one run depends on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Scenario name.
    pub scenario: String,
    /// The seed of the simulation (and of the generation).
    pub seed: u64,
    /// Mutant switched on, if any.
    pub mutant: Option<String>,
    /// Fault kinds the case was allowed to draw (`--faults`).
    pub faults: BTreeSet<FaultKind>,
    /// The drawn swarm profile.
    pub swarm: SwarmProfile,
    /// The fault plan.
    pub plan: FaultPlan,
    /// The scenario's workload, as JSON.
    pub workload: serde_json::Value,
}

/// The verdict of a run; serialized with the lowercase names below.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// Nothing broken.
    Pass,
    /// An always-invariant broke.
    Safety,
    /// An eventually-invariant did not hold within its bound.
    Liveness,
    /// Some task panicked.
    Panic,
    /// Simulated time ran out.
    TimeLimit,
    /// Too many steps.
    StepLimit,
    /// Nothing left to run.
    Deadlock,
    /// The wall-clock watchdog fired.
    Hung,
    /// The scenario or the harness broke its contract (an episode naming a node that does not
    /// exist, a violation of an undeclared invariant, an eventually-invariant never judged):
    /// counted as failed, never saved as a case.
    Error,
    /// The run could not be judged (a checker answered "unknown", a history was full, another
    /// harness limit): neither a pass nor a failure; counted, never saved.
    Inconclusive,
    /// The same case failed once and did something else when run again: the code under test
    /// reads a source the simulation does not control.
    Nondeterministic,
}

impl VerdictKind {
    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            VerdictKind::Pass => "pass",
            VerdictKind::Safety => "safety",
            VerdictKind::Liveness => "liveness",
            VerdictKind::Panic => "panic",
            VerdictKind::TimeLimit => "time_limit",
            VerdictKind::StepLimit => "step_limit",
            VerdictKind::Deadlock => "deadlock",
            VerdictKind::Hung => "hung",
            VerdictKind::Error => "error",
            VerdictKind::Inconclusive => "inconclusive",
            VerdictKind::Nondeterministic => "nondeterministic",
        }
    }

    /// Whether this verdict is a failure (everything but `pass` and `inconclusive`).
    pub fn is_failure(self) -> bool {
        !matches!(self, VerdictKind::Pass | VerdictKind::Inconclusive)
    }
}

impl fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A verdict with its details.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Which verdict.
    pub kind: VerdictKind,
    /// The broken invariant, for `safety` and `liveness`.
    pub invariant: Option<String>,
    /// What was seen.
    pub message: Option<String>,
    /// Where (node name), if known.
    pub node: Option<String>,
    /// When, in simulated nanoseconds, if known.
    pub time_ns: Option<u64>,
}

impl Verdict {
    /// Whether the run passed.
    pub fn is_pass(&self) -> bool {
        self.kind == VerdictKind::Pass
    }

    /// Whether the run failed (neither passed nor was inconclusive).
    pub fn is_failure(&self) -> bool {
        self.kind.is_failure()
    }

    /// Whether `other` is the same failure, for shrinking: same verdict and invariant, and for
    /// a panic the same message and location (another panic is another bug).
    pub fn same_failure(&self, other: &Verdict) -> bool {
        let same_panic = self.kind != VerdictKind::Panic || self.message == other.message;
        self.kind == other.kind && self.invariant == other.invariant && same_panic
    }

    /// The verdict of a run from its outcome, judged against the spec: a violation of an
    /// always-invariant is `safety`, of an eventually-invariant `liveness`, of anything the
    /// spec does not declare as one of those `error`; a pass with an inconclusive check is
    /// `inconclusive`.
    pub(crate) fn from_outcome(
        outcome: &Outcome,
        spec: &ScenarioSpec,
        inconclusive: Option<&str>,
        muted: &BTreeSet<String>,
    ) -> Verdict {
        let simple = |kind, time_ns: Option<u64>| Verdict {
            kind,
            invariant: None,
            message: None,
            node: None,
            time_ns,
        };
        match outcome {
            Outcome::Pass => match inconclusive {
                None => simple(VerdictKind::Pass, None),
                Some(reason) => Verdict {
                    message: Some(reason.to_string()),
                    ..simple(VerdictKind::Inconclusive, None)
                },
            },
            Outcome::Violation {
                invariant,
                message,
                node,
                time_ns,
            } => {
                if muted.contains(invariant) {
                    // Reported around the harness (a bare `sim_core::report_violation`), so
                    // the run stopped although the invariant is muted: what came after it was
                    // never judged.
                    return Verdict {
                        message: Some(format!(
                            "muted invariant {invariant:?} was reported with sim_core::report_violation, which stops the run; report through Env or Observer so that muting can go on judging: {message}"
                        )),
                        time_ns: Some(*time_ns),
                        ..simple(VerdictKind::Inconclusive, None)
                    };
                }
                let (kind, message) = match spec.invariant_kind(invariant) {
                    Some(InvariantKind::Always) => (VerdictKind::Safety, message.clone()),
                    Some(InvariantKind::Eventually) => (VerdictKind::Liveness, message.clone()),
                    Some(InvariantKind::Sometimes) | None => (
                        VerdictKind::Error,
                        format!(
                            "violation of {invariant:?}, which the spec does not declare as an always- or eventually-invariant: {message}"
                        ),
                    ),
                };
                Verdict {
                    kind,
                    invariant: (kind != VerdictKind::Error).then(|| invariant.clone()),
                    message: Some(message),
                    node: node.clone(),
                    time_ns: Some(*time_ns),
                }
            }
            Outcome::Panic {
                message,
                node,
                time_ns,
            } => Verdict {
                kind: VerdictKind::Panic,
                invariant: None,
                message: Some(message.clone()),
                node: node.clone(),
                time_ns: Some(*time_ns),
            },
            Outcome::TimeLimit { time_ns } => simple(VerdictKind::TimeLimit, Some(*time_ns)),
            Outcome::StepLimit { time_ns, .. } => simple(VerdictKind::StepLimit, Some(*time_ns)),
            Outcome::Deadlock { time_ns } => simple(VerdictKind::Deadlock, Some(*time_ns)),
            Outcome::Error { message, time_ns } => Verdict {
                kind: VerdictKind::Error,
                invariant: None,
                message: Some(message.clone()),
                node: None,
                time_ns: Some(*time_ns),
            },
            Outcome::Hung { time_ns, .. } => simple(VerdictKind::Hung, *time_ns),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(invariant) = &self.invariant {
            write!(f, " ({invariant})")?;
        }
        if let Some(time_ns) = self.time_ns {
            write!(f, " at {}", sim_core::trace::format_time(time_ns))?;
        }
        if let Some(node) = &self.node {
            write!(f, " on {node}")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// The verdict.
    pub verdict: Verdict,
    /// The trace hash.
    pub trace_hash: u64,
    /// Simulated time at the end, in nanoseconds.
    pub sim_time_ns: u64,
    /// Hashed trace events.
    pub events: u64,
    /// Messages sent through the simulated network.
    pub messages: u64,
    /// Sometimes-invariants reached.
    pub sometimes: BTreeSet<String>,
    /// Violations of muted invariants ([`RunOptions::skip_invariants`]) seen and let pass:
    /// (invariant, message).
    pub skipped: Vec<(String, String)>,
    /// The kept timeline, when asked for.
    pub timeline: Option<Timeline>,
    /// The HTML view of the last client history the run checked for linearizability
    /// ([`crate::Env::linearizable`], [`crate::Env::keep_history`]), when asked for
    /// ([`RunOptions::keep_history`]); `None` when the run checked none.
    pub history: Option<String>,
    /// What the run reached ([`RunOptions::coverage`]): sim-core's features (event kinds and
    /// transitions per node, `buggify!` sites, interest points) and the sometimes-invariants
    /// reached.
    pub coverage: Option<sim_core::coverage::Coverage>,
    /// Wall-clock milliseconds.
    pub wall_ms: u64,
}

/// How to run: trace options only (they never change the verdict or the hash).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Keep the timeline.
    pub keep_trace: bool,
    /// Draw the last client history checked for linearizability ([`RunResult::history`]).
    pub keep_history: bool,
    /// Application log filter, printed live.
    pub log: Option<String>,
    /// Invariants muted for this run (`--skip-invariant`): a violation of one is noted in the
    /// trace and in [`RunResult::skipped`], and the run goes on checking the others. Muting
    /// changes the run (it does not stop there), so its trace hash differs from an unmuted run.
    pub skip_invariants: BTreeSet<String>,
    /// Collect [`RunResult::coverage`] (for guided search; it changes nothing in the run).
    pub coverage: bool,
}

/// Errors of the harness that come from input: a case that does not fit its scenario.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CaseError {
    /// The case names another scenario.
    #[error("case is for scenario {found:?}, not {expected:?}")]
    WrongScenario {
        /// Scenario expected.
        expected: String,
        /// Scenario in the case.
        found: String,
    },
    /// The mutant is not one of the scenario's.
    #[error("unknown mutant {mutant:?} for scenario {scenario}; known: {known}")]
    UnknownMutant {
        /// Scenario.
        scenario: String,
        /// The name given.
        mutant: String,
        /// Known names.
        known: String,
    },
    /// The workload does not parse.
    #[error("workload does not fit scenario {scenario}: {error}")]
    BadWorkload {
        /// Scenario.
        scenario: String,
        /// Parser's message.
        error: String,
    },
    /// The plan does not fit the topology.
    #[error("fault plan: {0}")]
    BadPlan(String),
    /// The run's settings are invalid (for example a bad log filter).
    #[error("{0}")]
    BadConfig(String),
}

/// The scenario behind a trait object, with its workload as JSON: what registries hold.
pub trait DynScenario: Send + Sync {
    /// What the scenario declares.
    fn spec(&self) -> ScenarioSpec;
    /// The case of `seed`.
    fn generate(&self, seed: u64, mutant: Option<String>, faults: BTreeSet<FaultKind>) -> Case;
    /// Checks a workload, as JSON, against the scenario without running it.
    fn check_workload(&self, workload: &serde_json::Value) -> Result<(), CaseError>;
    /// Runs a case.
    fn run_case(&self, case: &Case, options: &RunOptions) -> Result<RunResult, CaseError>;
    /// Shrinking candidates for `case` through proptest's value tree, when the case is the one
    /// its seed generates: calls `still_fails` on simpler cases, returns the simplest failing.
    fn shrink_tree(&self, case: &Case, still_fails: &mut dyn FnMut(&Case) -> bool) -> Case;
}

/// The generated part of a case.
type Drawn<W> = (SwarmProfile, FaultPlan, W);

fn case_strategy<S: Scenario>(
    scenario: &S,
    faults: &BTreeSet<FaultKind>,
) -> BoxedStrategy<Drawn<S::Workload>> {
    let spec = scenario.spec();
    let nodes = spec.nodes.clone();
    let budget = spec.budget.clone();
    let workload = scenario.workload();
    swarm_strategy(&spec.budget, faults.clone())
        .prop_flat_map(move |swarm| {
            let plan = plan_strategy(&nodes, &budget, &swarm);
            (proptest::strategy::Just(swarm), plan, workload.clone())
        })
        .boxed()
}

fn to_case<W: Serialize>(
    name: &str,
    seed: u64,
    mutant: Option<String>,
    faults: &BTreeSet<FaultKind>,
    drawn: Drawn<W>,
) -> Case {
    let (swarm, plan, workload) = drawn;
    Case {
        scenario: name.to_string(),
        seed,
        mutant,
        faults: faults.clone(),
        swarm,
        plan,
        workload: serde_json::to_value(workload).expect("workloads serialize"),
    }
}

impl<S: Scenario> DynScenario for S {
    fn spec(&self) -> ScenarioSpec {
        Scenario::spec(self)
    }

    fn generate(&self, seed: u64, mutant: Option<String>, faults: BTreeSet<FaultKind>) -> Case {
        let strategy = case_strategy(self, &faults);
        let tree = tree_for_seed(&strategy, seed);
        to_case(
            &Scenario::spec(self).name,
            seed,
            mutant,
            &faults,
            tree.current(),
        )
    }

    fn check_workload(&self, workload: &serde_json::Value) -> Result<(), CaseError> {
        parse_workload(self, workload).map(|_| ())
    }

    fn run_case(&self, case: &Case, options: &RunOptions) -> Result<RunResult, CaseError> {
        run_typed(self, case, options)
    }

    fn shrink_tree(&self, case: &Case, still_fails: &mut dyn FnMut(&Case) -> bool) -> Case {
        let name = Scenario::spec(self).name;
        let strategy = case_strategy(self, &case.faults);
        let mut tree = tree_for_seed(&strategy, case.seed);
        let make = |drawn| to_case(&name, case.seed, case.mutant.clone(), &case.faults, drawn);
        if &make(tree.current()) != case {
            // A hand-written or edited case: only the structural shrinker applies.
            return case.clone();
        }
        let mut best = case.clone();
        // proptest's shrinking loop: simplify while the failure persists, complicate back when
        // a simplification made it pass. Bounded.
        if !tree.simplify() {
            return best;
        }
        for _ in 0..crate::shrink::TREE_STEPS_MAX {
            let candidate = make(tree.current());
            let stepped = if still_fails(&candidate) {
                best = candidate;
                tree.simplify()
            } else {
                tree.complicate()
            };
            if !stepped {
                break;
            }
        }
        best
    }
}

fn parse_workload<S: Scenario>(
    scenario: &S,
    workload: &serde_json::Value,
) -> Result<S::Workload, CaseError> {
    let bad = |error| CaseError::BadWorkload {
        scenario: Scenario::spec(scenario).name,
        error,
    };
    let workload: S::Workload =
        serde_json::from_value(workload.clone()).map_err(|error| bad(error.to_string()))?;
    scenario.validate_workload(&workload).map_err(bad)?;
    Ok(workload)
}

fn run_typed<S: Scenario>(
    scenario: &S,
    case: &Case,
    options: &RunOptions,
) -> Result<RunResult, CaseError> {
    let spec = scenario.spec();
    check_case(&spec, case)?;
    let workload = parse_workload(scenario, &case.workload)?;
    let mut config = spec.sim_config.clone();
    config.trace.keep = options.keep_trace;
    config.trace.log = options.log.clone();
    config.trace.print = options.log.is_some();
    config.trace.coverage = options.coverage;
    config
        .validate()
        .map_err(|error| CaseError::BadConfig(error.to_string()))?;
    let observer = Observer::new(
        &spec.invariants,
        options.skip_invariants.clone(),
        options.keep_history,
    );
    let scenario = scenario.clone();
    let (mutant, plan, seen) = (case.mutant.clone(), case.plan.clone(), observer.clone());
    let declared = spec.invariants.clone();
    let report = sim_core::run(case.seed, config, move |sim| async move {
        let env = Env::new(sim, mutant, plan, seen);
        run_phases(scenario, env, workload, declared).await;
        Ok(())
    });
    let record = observer.record();
    let coverage = report.coverage.map(|mut coverage| {
        for reached in &record.reached {
            coverage.insert_named("sometimes", reached);
        }
        coverage
    });
    Ok(RunResult {
        verdict: Verdict::from_outcome(
            &report.outcome,
            &spec,
            record.inconclusive.as_deref(),
            &options.skip_invariants,
        ),
        trace_hash: report.trace_hash,
        sim_time_ns: report.sim_time_ns,
        events: report.events,
        messages: report.messages,
        sometimes: record.reached.clone(),
        skipped: record.skipped.clone(),
        timeline: report.timeline,
        history: record.history.clone(),
        coverage,
        wall_ms: report.wall_ms,
    })
}

/// Checks that a case fits its scenario: name, mutant, plan.
pub fn check_case(spec: &ScenarioSpec, case: &Case) -> Result<(), CaseError> {
    if case.scenario != spec.name {
        return Err(CaseError::WrongScenario {
            expected: spec.name.clone(),
            found: case.scenario.clone(),
        });
    }
    if let Some(mutant) = &case.mutant {
        if !spec.mutants.iter().any(|m| &m.name == mutant) {
            let known: Vec<&str> = spec.mutants.iter().map(|m| m.name.as_str()).collect();
            return Err(CaseError::UnknownMutant {
                scenario: spec.name.clone(),
                mutant: mutant.clone(),
                known: if known.is_empty() {
                    "(none)".into()
                } else {
                    known.join(", ")
                },
            });
        }
    }
    case.plan.validate(&spec.nodes).map_err(CaseError::BadPlan)
}

/// A set of scenarios, as a `dst` binary registers them.
#[derive(Clone, Default)]
pub struct Registry {
    scenarios: Vec<Arc<dyn DynScenario>>,
    command: Option<String>,
    /// `dst bench`'s targets of simulated seconds per wall second, by scenario.
    sim_wall_targets: Vec<(String, f64)>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds a scenario.
    pub fn with<S: Scenario>(mut self, scenario: S) -> Self {
        self.scenarios.push(Arc::new(scenario));
        self
    }

    /// Sets the command printed in replay lines, such as `cargo dst`: what a person types
    /// to run this binary (the default is the name it was invoked as).
    pub fn command(mut self, prefix: impl Into<String>) -> Self {
        self.command = Some(prefix.into());
        self
    }

    /// Sets a target for `dst bench`: `scenario` (with one job, faults on, its default
    /// workload) runs at least `min` simulated seconds per wall second.
    pub fn sim_wall_target(mut self, scenario: impl Into<String>, min: f64) -> Self {
        self.sim_wall_targets.push((scenario.into(), min));
        self
    }

    /// The targets set with [`Registry::sim_wall_target`].
    pub fn sim_wall_targets(&self) -> &[(String, f64)] {
        &self.sim_wall_targets
    }

    /// The command printed in replay lines: the one set with [`Registry::command`], else the
    /// name this binary was invoked as, else `dst`.
    pub fn command_prefix(&self) -> String {
        self.command.clone().unwrap_or_else(|| {
            std::env::args_os()
                .next()
                .map(|name| name.to_string_lossy().into_owned())
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "dst".into())
        })
    }

    /// The scenario called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<dyn DynScenario>> {
        self.scenarios
            .iter()
            .find(|scenario| scenario.spec().name == name)
            .cloned()
    }

    /// All scenarios, in registration order.
    pub fn all(&self) -> &[Arc<dyn DynScenario>] {
        &self.scenarios
    }

    /// Names of all scenarios.
    pub fn names(&self) -> Vec<String> {
        self.scenarios.iter().map(|s| s.spec().name).collect()
    }
}
