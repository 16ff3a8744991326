//! Scenarios: what a project writes to put its system under the harness.
//!
//! A [`Scenario`] declares its nodes, the fault budget it is expected to survive, its
//! invariants and its named mutants in a [`ScenarioSpec`], generates workloads with a `proptest`
//! strategy, and runs: it builds its nodes on the [`Env`]'s `Sim`, starts the fault plan, drives
//! its workload, then heals and checks its *eventually* invariants.
//!
//! ```text
//! impl Scenario for Register {
//!     type Workload = Vec<Op>;
//!     fn spec(&self) -> ScenarioSpec { /* nodes, budget, invariants, mutants */ }
//!     fn workload(&self) -> BoxedStrategy<Vec<Op>> { proptest::collection::vec(op(), 1..50).boxed() }
//!     fn run(&self, env: Env<Vec<Op>>) -> LocalBoxFuture<'static, Result<(), Violation>> {
//!         Box::pin(async move {
//!             let primary = env.sim.node("primary").init(|| primary_main()).build();
//!             env.start_faults();
//!             // ... drive env.workload, report safety violations as they happen ...
//!             env.heal().await;
//!             // ... check eventually-invariants within the stated bound ...
//!             Ok(())
//!         })
//!     }
//! }
//! ```

use crate::generate::FaultBudget;
use crate::plan::{Episode, Fault, FaultPlan};
use futures::future::LocalBoxFuture;
use proptest::strategy::BoxedStrategy;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sim_core::{NodeState, Sim, SimConfig, Violation};
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The three kinds of invariant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvariantKind {
    /// Checked as events happen; the run stops at the first violating step (verdict `safety`).
    Always,
    /// Must hold within a stated bound after every fault is healed (verdict `liveness`).
    Eventually,
    /// Must be seen in at least one run of a batch (reported for the batch).
    Sometimes,
}

/// An invariant a scenario checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvariantSpec {
    /// Name, used in verdicts and case files.
    pub name: String,
    /// Kind.
    pub kind: InvariantKind,
    /// What it says.
    pub description: String,
}

impl InvariantSpec {
    /// An always-invariant.
    pub fn always(name: &str, description: &str) -> Self {
        Self::new(name, InvariantKind::Always, description)
    }
    /// An eventually-invariant.
    pub fn eventually(name: &str, description: &str) -> Self {
        Self::new(name, InvariantKind::Eventually, description)
    }
    /// A sometimes-invariant.
    pub fn sometimes(name: &str, description: &str) -> Self {
        Self::new(name, InvariantKind::Sometimes, description)
    }
    fn new(name: &str, kind: InvariantKind, description: &str) -> Self {
        InvariantSpec {
            name: name.into(),
            kind,
            description: description.into(),
        }
    }
}

/// A deliberately broken variant of the code under test, switched on by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutantSpec {
    /// Name, as given to `--mutant`.
    pub name: String,
    /// The real bug it mirrors.
    pub description: String,
}

impl MutantSpec {
    /// A mutant called `name` mirroring the bug described.
    pub fn new(name: &str, description: &str) -> Self {
        MutantSpec {
            name: name.into(),
            description: description.into(),
        }
    }
}

/// What a scenario declares about itself.
#[derive(Clone, Debug)]
pub struct ScenarioSpec {
    /// Name, as given on the command line and used as the corpus folder.
    pub name: String,
    /// One line on what it tests.
    pub description: String,
    /// Names of the nodes the scenario builds (fault plans name them).
    pub nodes: Vec<String>,
    /// The fault model the scenario is expected to survive.
    pub budget: FaultBudget,
    /// Its invariants.
    pub invariants: Vec<InvariantSpec>,
    /// Its mutants.
    pub mutants: Vec<MutantSpec>,
    /// Sometimes-invariants are only judged on batches of at least this many runs.
    pub sometimes_batch_min: usize,
    /// The simulation settings (limits, network and disk defaults).
    pub sim_config: SimConfig,
}

impl ScenarioSpec {
    /// Checks the spec itself: fault targets name real nodes, names are unique, the
    /// simulation config is valid.
    pub fn validate(&self) -> Result<(), String> {
        let at = |what: &str| format!("scenario {}: {what}", self.name);
        for name in self.budget.targets.iter().chain(&self.budget.crash_targets) {
            if !self.nodes.contains(name) {
                return Err(at(&format!(
                    "fault target {name:?} is not one of its nodes"
                )));
            }
        }
        let unique =
            |names: Vec<&String>| names.len() == names.iter().collect::<BTreeSet<_>>().len();
        if !unique(self.nodes.iter().collect()) {
            return Err(at("node names repeat"));
        }
        if !unique(self.invariants.iter().map(|i| &i.name).collect()) {
            return Err(at("invariant names repeat"));
        }
        if !unique(self.mutants.iter().map(|m| &m.name).collect()) {
            return Err(at("mutant names repeat"));
        }
        self.sim_config.validate().map_err(|e| at(&e.to_string()))
    }

    /// The kind of the invariant called `name`.
    pub fn invariant_kind(&self, name: &str) -> Option<InvariantKind> {
        self.invariants
            .iter()
            .find(|invariant| invariant.name == name)
            .map(|invariant| invariant.kind)
    }
}

/// A scenario: see the [module docs](self).
pub trait Scenario: Clone + Send + Sync + 'static {
    /// The generated workload, stored in case files.
    type Workload: Clone + Debug + Serialize + DeserializeOwned + Send + 'static;

    /// What the scenario declares about itself.
    fn spec(&self) -> ScenarioSpec;

    /// Strategy for workloads.
    fn workload(&self) -> BoxedStrategy<Self::Workload>;

    /// Checks a workload read from a case file (generated ones are valid by construction):
    /// a hand-edited file gets a clear error rather than a panic inside the run.
    fn validate_workload(&self, workload: &Self::Workload) -> Result<(), String> {
        let _ = workload;
        Ok(())
    }

    /// Runs one case: build nodes, [`Env::start_faults`], drive the workload, [`Env::heal`],
    /// check eventually-invariants. Return `Err` (or call [`Env::violation`]) on a broken
    /// invariant.
    fn run(&self, env: Env<Self::Workload>) -> LocalBoxFuture<'static, Result<(), Violation>>;
}

/// What a run observed besides its outcome: the sometimes-invariants it reached.
#[derive(Clone, Debug, Default)]
pub struct Observer {
    reached: Arc<Mutex<BTreeSet<String>>>,
}

impl Observer {
    /// Marks the sometimes-invariant `name` as reached in this run.
    pub fn sometimes(&self, name: &str) {
        let mut reached = self.reached.lock().expect("observer lock");
        if !reached.contains(name) {
            reached.insert(name.to_string());
        }
    }

    /// The sometimes-invariants reached so far.
    pub fn reached(&self) -> BTreeSet<String> {
        self.reached.lock().expect("observer lock").clone()
    }
}

/// Everything a scenario's run gets.
pub struct Env<W> {
    /// The supervisor's handle.
    pub sim: Sim,
    /// The generated workload.
    pub workload: W,
    mutant: Option<String>,
    plan: FaultPlan,
    observer: Observer,
    faults: std::cell::RefCell<Option<sim_core::task::JoinHandle<()>>>,
}

impl<W> Env<W> {
    pub(crate) fn new(
        sim: Sim,
        workload: W,
        mutant: Option<String>,
        plan: FaultPlan,
        observer: Observer,
    ) -> Self {
        Env {
            sim,
            workload,
            mutant,
            plan,
            observer,
            faults: Default::default(),
        }
    }

    /// The mutant switched on for this run, if any.
    pub fn mutant(&self) -> Option<&str> {
        self.mutant.as_deref()
    }

    /// Whether mutant `name` is on.
    pub fn is_mutant(&self, name: &str) -> bool {
        self.mutant.as_deref() == Some(name)
    }

    /// The fault plan of this run.
    pub fn plan(&self) -> &FaultPlan {
        &self.plan
    }

    /// A handle for marking sometimes-invariants, cheap to clone into nodes.
    pub fn observer(&self) -> Observer {
        self.observer.clone()
    }

    /// Marks the sometimes-invariant `name` as reached.
    pub fn sometimes(&self, name: &str) {
        self.observer.sometimes(name);
    }

    /// Reports a broken invariant: the run stops at this step.
    pub fn violation(&self, invariant: &str, message: impl Into<String>) {
        sim_core::report_violation(invariant, message);
    }

    /// Starts applying the fault plan, in the background, on the supervisor. Call it once
    /// the nodes the plan names exist.
    pub fn start_faults(&self) {
        let plan = self.plan.clone();
        let sim = self.sim.clone();
        let handle = sim_core::task::spawn(async move { execute_plan(sim, plan).await });
        *self.faults.borrow_mut() = Some(handle);
    }

    /// Waits until the plan is over, then heals every fault: partitions, holds and link faults
    /// end, paused nodes resume, crashed nodes restart, clocks, disks, links and buggify go back
    /// to what the scenario configured. What follows is the liveness phase.
    pub async fn heal(&self) {
        let end = Duration::from_millis(self.plan.end_ms());
        let now = self.sim.now();
        if now < end {
            self.sim.sleep(end - now).await;
        }
        if let Some(handle) = self.faults.borrow_mut().take() {
            handle.abort();
        }
        heal_all(&self.sim);
        sim_core::trace::note("healed", "liveness phase: every fault healed");
    }
}

/// One change the plan makes at a time: the start or the end of an episode.
enum Edge<'a> {
    Start(&'a Episode),
    End(&'a Episode),
}

async fn execute_plan(sim: Sim, plan: FaultPlan) {
    let mut edges: Vec<(u64, usize, Edge<'_>)> = Vec::new();
    for (index, episode) in plan.episodes.iter().enumerate() {
        edges.push((episode.at_ms, index, Edge::Start(episode)));
        if let Some(duration) = episode.duration_ms {
            edges.push((episode.at_ms + duration, index, Edge::End(episode)));
        }
    }
    // Sorted by time, then by episode, ends before starts at the same instant: stable for a plan.
    edges.sort_by_key(|(at, index, edge)| (*at, matches!(edge, Edge::Start(_)), *index));
    for (at, _, edge) in edges {
        let target = Duration::from_millis(at);
        let now = sim.now();
        if target > now {
            sim.sleep(target - now).await;
        }
        match edge {
            Edge::Start(episode) => start_fault(&sim, &episode.fault),
            Edge::End(episode) => end_fault(&sim, &episode.fault),
        }
    }
}

pub(crate) fn node(sim: &Sim, name: &str) -> Option<sim_core::NodeId> {
    sim.node_id(name)
}

pub(crate) fn nodes(sim: &Sim, names: &[String]) -> Vec<sim_core::NodeId> {
    names.iter().filter_map(|name| sim.node_id(name)).collect()
}

fn start_fault(sim: &Sim, fault: &Fault) {
    sim_core::trace::note("fault-start", format!("fault start: {fault}"));
    match fault {
        Fault::Crash { node: name } => {
            if let Some(id) = node(sim, name) {
                sim.crash(id);
            }
        }
        Fault::Pause { node: name } => {
            if let Some(id) = node(sim, name) {
                sim.pause(id);
            }
        }
        Fault::ClockOffset {
            node: name,
            offset_ms,
        } => {
            if let Some(id) = node(sim, name) {
                sim.clock(id)
                    .set_offset_ns(offset_ms.saturating_mul(1_000_000));
            }
        }
        Fault::ClockDrift { node: name, ppm } => {
            if let Some(id) = node(sim, name) {
                sim.clock(id).set_drift_ppm(*ppm);
            }
        }
        Fault::ClockJump {
            node: name,
            delta_ms,
        } => {
            if let Some(id) = node(sim, name) {
                sim.clock(id).jump_ns(delta_ms.saturating_mul(1_000_000));
            }
        }
        Fault::Buggify => sim.set_buggify(true),
        other => crate::apply_io::start(sim, other),
    }
}

fn end_fault(sim: &Sim, fault: &Fault) {
    sim_core::trace::note("fault-end", format!("fault end: {fault}"));
    match fault {
        Fault::Crash { node: name } => {
            if let Some(id) = node(sim, name) {
                if sim.node_state(id) == NodeState::Down {
                    sim.restart(id);
                }
            }
        }
        Fault::Pause { node: name } => {
            if let Some(id) = node(sim, name) {
                sim.resume(id);
            }
        }
        Fault::ClockOffset { node: name, .. } | Fault::ClockDrift { node: name, .. } => {
            if let Some(id) = node(sim, name) {
                sim.clock(id).reset();
            }
        }
        Fault::ClockJump {
            node: name,
            delta_ms,
        } => {
            if let Some(id) = node(sim, name) {
                sim.clock(id).jump_ns(-delta_ms.saturating_mul(1_000_000));
            }
        }
        Fault::Buggify => sim.reset_buggify(),
        other => crate::apply_io::end(sim, other),
    }
}

/// Heals everything the plan could have done.
/// Heals everything the plan could have done, back to what the scenario configured.
fn heal_all(sim: &Sim) {
    sim.reset_buggify();
    crate::apply_io::heal(sim);
    for id in sim.nodes() {
        match sim.node_state(id) {
            NodeState::Paused => sim.resume(id),
            NodeState::Down => sim.restart(id),
            NodeState::Up | NodeState::Exited => {}
        }
        sim.clock(id).reset();
    }
}
