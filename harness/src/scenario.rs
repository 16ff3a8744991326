//! Scenarios: what a project writes to put its system under the harness.
//!
//! A scenario *declares*; the harness *runs and judges*. A [`Scenario`] declares its nodes, the
//! fault budget it is expected to survive, its [`Invariant`]s and its named mutants in a
//! [`ScenarioSpec`], generates workloads with a `proptest` strategy, and fills in the phases of
//! a run. The harness owns the order of the phases and what they guarantee:
//!
//! 1. [`Scenario::setup`] builds the nodes (and whatever the scenario shares with them: state
//!    may be `Rc<RefCell<..>>`, a run is single-threaded);
//! 2. the harness starts the fault plan, episode by episode, each a typed trace event; an
//!    episode naming a node that does not exist when it is due ends the run with verdict
//!    `error`;
//! 3. [`Scenario::drive`] runs the workload while the plan goes on;
//! 4. [`Scenario::check`] judges always-invariants over what the workload observed (for
//!    example linearizability of the client history);
//! 5. the harness waits for the end of the plan and heals every fault;
//! 6. [`Scenario::after_heal`] judges eventually-invariants, each with [`Env::eventually`],
//!    which re-probes until the invariant's declared bound;
//! 7. the harness verifies that every declared eventually-invariant was judged (else
//!    `error`).
//!
//! Violations are made from invariant handles ([`Invariant::violated`]) and returned from a
//! phase, or reported at once from anywhere with [`Observer::violation`]. A check that cannot
//! decide (a linearizability search that gave up, a full history) calls
//! [`Observer::inconclusive`]: the run is then `inconclusive`, never a pass.
//!
//! ```text
//! static LINEARIZABLE: Invariant = Invariant::always("linearizable", "...");
//! static AVAILABLE: Invariant = Invariant::eventually("available-after-heal", "...", Duration::from_secs(2));
//!
//! impl Scenario for Register {
//!     type Workload = Workload;
//!     type System = System;
//!     fn spec(&self) -> ScenarioSpec { /* nodes, budget, invariants, mutants */ }
//!     fn workload(&self) -> BoxedStrategy<Workload> { /* proptest */ }
//!     fn setup(&self, env: &Env, _: &Workload) -> System { /* env.sim.node(..).init(..).build() */ }
//!     async fn drive(&self, env: &Env, system: &System, workload: Workload) -> Checked { /* clients */ }
//!     async fn check(&self, env: &Env, system: &System) -> Checked {
//!         env.linearizable(&LINEARIZABLE, &RegisterModel::new(0), &system.history.borrow())
//!     }
//!     async fn after_heal(&self, env: &Env, system: &System) -> Checked {
//!         env.eventually(&AVAILABLE, || probe_write_then_read(system)).await
//!     }
//! }
//! ```

use crate::generate::FaultBudget;
use crate::history::History;
use crate::invariant::{Checked, Invariant, InvariantKind};
use crate::linearizability::{check_with, CheckLimits, CheckOptions, CheckResult, Model, Report};
use crate::plan::{Episode, Fault, FaultPlan};
use proptest::strategy::BoxedStrategy;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sim_core::disk::Corruption;
use sim_core::trace::FaultField;
use sim_core::{NodeState, Sim, SimConfig};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A deliberately broken variant of the code under test, switched on by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MutantSpec {
    /// Name, as given to `--mutant` (kebab-case).
    pub name: String,
    /// The real bug it mirrors.
    pub description: String,
    /// Random plans rarely catch it (about one seed in several hundred): the scoreboard
    /// searches [`crate::scoreboard::HARD_SEEDS_FACTOR`] times the seeds for it and leaves it
    /// out of the median. Such mutants measure guided search against random search.
    #[serde(default)]
    pub hard: bool,
    /// The invariant it breaks, the one meant to catch it: an always- or eventually-invariant
    /// of its scenario ([`ScenarioSpec::validate`] checks). The scoreboard (`dst mutants`)
    /// tells a mutant caught by it from one caught otherwise (another invariant, a panic, a
    /// limit), which proves less.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaks: Option<String>,
}

impl MutantSpec {
    /// A mutant called `name` mirroring the bug described.
    pub fn new(name: &str, description: &str) -> Self {
        MutantSpec {
            name: name.into(),
            description: description.into(),
            hard: false,
            breaks: None,
        }
    }

    /// The same mutant, marked [hard](MutantSpec::hard) to catch.
    pub fn hard(self) -> Self {
        MutantSpec { hard: true, ..self }
    }

    /// The same mutant, declared to break the invariant called `invariant` (see
    /// [`MutantSpec::breaks`]).
    pub fn breaks(self, invariant: &str) -> Self {
        MutantSpec {
            breaks: Some(invariant.into()),
            ..self
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
    /// Its invariants: the only ones it may report.
    pub invariants: Vec<Invariant>,
    /// Its mutants.
    pub mutants: Vec<MutantSpec>,
    /// Sometimes-invariants are only judged on hunts of at least this many seeds (measured per
    /// scenario: every window of this many seeds reaches every sometimes-invariant).
    pub sometimes_batch_min: usize,
    /// The simulation settings (limits, network and disk defaults).
    pub sim_config: SimConfig,
}

impl ScenarioSpec {
    /// Checks the spec itself: fault targets name real nodes, names are unique, eventually-
    /// invariants have a bound, a mutant breaks an always- or eventually-invariant of the
    /// scenario, the simulation config is valid.
    pub fn validate(&self) -> Result<(), String> {
        let at = |what: &str| format!("scenario {}: {what}", self.name);
        let budget = &self.budget;
        let named = budget.targets.iter().chain(&budget.crash_targets);
        for name in named.chain(&budget.disk_targets) {
            if !self.nodes.contains(name) {
                return Err(at(&format!(
                    "fault target {name:?} is not one of its nodes"
                )));
            }
        }
        let unique = |names: Vec<&str>| names.len() == names.iter().collect::<BTreeSet<_>>().len();
        if !unique(self.nodes.iter().map(String::as_str).collect()) {
            return Err(at("node names repeat"));
        }
        if !unique(self.invariants.iter().map(|i| i.name()).collect()) {
            return Err(at("invariant names repeat"));
        }
        if !unique(self.mutants.iter().map(|m| m.name.as_str()).collect()) {
            return Err(at("mutant names repeat"));
        }
        for mutant in &self.mutants {
            let Some(invariant) = &mutant.breaks else {
                continue;
            };
            match self.invariant_kind(invariant) {
                Some(InvariantKind::Always | InvariantKind::Eventually) => {}
                Some(InvariantKind::Sometimes) => {
                    return Err(at(&format!(
                        "mutant {} breaks {invariant}, a sometimes-invariant: no single seed breaks one",
                        mutant.name
                    )))
                }
                None => {
                    return Err(at(&format!(
                        "mutant {} breaks {invariant}, not one of its invariants",
                        mutant.name
                    )))
                }
            }
        }
        self.sim_config.validate().map_err(|e| at(&e.to_string()))
    }

    /// The invariant called `name`.
    pub fn invariant(&self, name: &str) -> Option<&Invariant> {
        self.invariants
            .iter()
            .find(|invariant| invariant.name() == name)
    }

    /// The kind of the invariant called `name`.
    pub fn invariant_kind(&self, name: &str) -> Option<InvariantKind> {
        self.invariant(name).map(Invariant::kind)
    }

    /// Names of the invariants of one kind.
    pub fn invariant_names(&self, kind: InvariantKind) -> Vec<String> {
        self.invariants
            .iter()
            .filter(|invariant| invariant.kind() == kind)
            .map(|invariant| invariant.name().to_string())
            .collect()
    }
}

/// A scenario: see the [module docs](self).
///
/// The phase methods may be written as `async fn` in the `impl`.
pub trait Scenario: Clone + Send + Sync + 'static {
    /// The generated workload, stored in case files.
    type Workload: Clone + Debug + Serialize + DeserializeOwned + Send + 'static;
    /// What [`Scenario::setup`] builds and the later phases use: node ids, histories, shared
    /// state. It lives on the run's thread only (`Rc<RefCell<..>>` is fine).
    type System: 'static;

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

    /// Builds the nodes before the plan starts. No fault, heal or check calls here: the
    /// harness owns the phases.
    fn setup(&self, env: &Env, workload: &Self::Workload) -> Self::System;

    /// Drives the workload while the harness applies the fault plan around it. Returns when the
    /// workload is done (every client finished).
    fn drive(
        &self,
        env: &Env,
        system: &Self::System,
        workload: Self::Workload,
    ) -> impl Future<Output = Checked>;

    /// Judges always-invariants over what the workload observed, right after [`Self::drive`]
    /// (faults may still be going on). Always-invariants can also be reported as they break,
    /// from anywhere, with [`Observer::violation`].
    fn check(&self, env: &Env, system: &Self::System) -> impl Future<Output = Checked> {
        let _ = (env, system);
        async { Ok(()) }
    }

    /// Judges eventually-invariants once every fault is healed, each with
    /// [`Env::eventually`]. May also stress the healed system further (a last crash) and judge
    /// always-invariants over the whole run.
    fn after_heal(&self, env: &Env, system: &Self::System) -> impl Future<Output = Checked> {
        let _ = (env, system);
        async { Ok(()) }
    }
}

/// What a run records for the harness besides its outcome.
#[derive(Debug, Default)]
pub(crate) struct RunRecord {
    /// Sometimes-invariants reached.
    pub reached: BTreeSet<String>,
    /// Why the run could not be judged, if it could not (the first reason).
    pub inconclusive: Option<String>,
    /// Violations of muted invariants: (invariant, message).
    pub skipped: Vec<(String, String)>,
    /// Eventually-invariants judged.
    pub judged: BTreeSet<String>,
    /// The HTML view of the last client history checked, when asked for.
    pub history: Option<String>,
    /// Violations told to a detached observer ([`Observer::detached`]): (invariant, message).
    pub told: Vec<(String, String)>,
}

/// The handle nodes and checkers use to report to the harness: sometimes-invariants reached,
/// violations, inconclusive checks. Cheap to clone into nodes.
#[derive(Clone, Debug)]
pub struct Observer {
    record: Arc<Mutex<RunRecord>>,
    declared: Arc<[Invariant]>,
    muted: Arc<BTreeSet<String>>,
    /// Whether checked histories are drawn ([`Env::keep_history`]).
    keep_history: bool,
    /// Outside any run: violations are kept for [`Observer::violations`], not reported.
    detached: bool,
}

impl Observer {
    pub(crate) fn new(declared: &[Invariant], muted: BTreeSet<String>, keep_history: bool) -> Self {
        Observer {
            record: Arc::default(),
            declared: declared.into(),
            muted: Arc::new(muted),
            keep_history,
            detached: false,
        }
    }

    /// An observer outside any run, for unit tests of a checker on hand-made inputs (rule:
    /// a check that cannot fail is a defect): the violations it is told are kept, in order,
    /// for [`Observer::violations`], and nothing stops. `declared` are the invariants the
    /// checker may report, as in the scenario's spec.
    pub fn detached(declared: &[Invariant]) -> Observer {
        Observer {
            detached: true,
            ..Observer::new(declared, BTreeSet::new(), false)
        }
    }

    /// The violations told to a [detached](Observer::detached) observer so far, as
    /// (invariant name, message); always empty for an observer of a run.
    pub fn violations(&self) -> Vec<(String, String)> {
        self.record().told.clone()
    }

    /// The sometimes-invariants reached so far, by name.
    pub fn reached_names(&self) -> Vec<String> {
        self.record().reached.iter().cloned().collect()
    }

    pub(crate) fn record(&self) -> std::sync::MutexGuard<'_, RunRecord> {
        self.record.lock().expect("run record lock")
    }

    /// Whether `invariant` is one the spec declared, with that kind; if not, the run ends
    /// with verdict `error` (the scenario broke its contract).
    fn declared(&self, invariant: &Invariant, kind: InvariantKind, use_: &str) -> bool {
        let ok = invariant.kind() == kind && self.declared.iter().any(|d| d == invariant);
        if !ok && self.detached {
            // A unit test of a checker: its contract is broken, so the test fails here.
            panic!(
                "{use_}: invariant {:?} ({}) is not among the detached observer's declared invariants",
                invariant.name(),
                invariant.kind().name()
            );
        }
        if !ok {
            sim_core::report_error(format!(
                "{use_}: invariant {:?} ({}) is not declared as {} in the scenario's spec",
                invariant.name(),
                invariant.kind().name(),
                match kind {
                    InvariantKind::Always => "an always-invariant",
                    InvariantKind::Eventually => "an eventually-invariant",
                    InvariantKind::Sometimes => "a sometimes-invariant",
                }
            ));
        }
        ok
    }

    /// Marks the sometimes-invariant as reached in this run.
    pub fn reached(&self, invariant: &Invariant) {
        if self.declared(invariant, InvariantKind::Sometimes, "reached") {
            let mut record = self.record();
            if !record.reached.contains(invariant.name()) {
                record.reached.insert(invariant.name().to_string());
            }
        }
    }

    /// Reports a broken always- or eventually-invariant: the run stops at this step (unless
    /// the invariant is muted with `--skip-invariant`: then the violation is noted and the run
    /// goes on judging the others).
    pub fn violation(&self, invariant: &Invariant, message: impl Into<String>) {
        let kind = match invariant.kind() {
            InvariantKind::Sometimes => InvariantKind::Always,
            kind => kind,
        };
        if !self.declared(invariant, kind, "violation") {
            return;
        }
        let message = message.into();
        if self.detached {
            self.record()
                .told
                .push((invariant.name().to_string(), message));
            return;
        }
        if self.muted.contains(invariant.name()) {
            sim_core::trace::note(
                &format!("muted-violation {}", invariant.name()),
                format!("muted violation of {}: {message}", invariant.name()),
            );
            self.record()
                .skipped
                .push((invariant.name().to_string(), message));
            return;
        }
        sim_core::report_violation(invariant.name(), message);
    }

    /// Reports a broken invariant returned by a check.
    pub fn report(&self, checked: Checked) {
        if let Err(violation) = checked {
            self.violation(violation.invariant(), violation.message());
        }
    }

    /// The run could not be judged (a checker answered "unknown", a history was full): its
    /// verdict is `inconclusive` unless something fails. The first reason is kept.
    pub fn inconclusive(&self, reason: impl Into<String>) {
        let reason = reason.into();
        sim_core::trace::note("inconclusive", reason.clone());
        let mut record = self.record();
        if record.inconclusive.is_none() {
            record.inconclusive = Some(reason);
        }
    }
}

/// How long [`Env::eventually`] waits between two probes.
pub const EVENTUALLY_RETRY: Duration = Duration::from_millis(10);

/// Everything a scenario's phases get.
pub struct Env {
    /// The supervisor's handle.
    pub sim: Sim,
    mutant: Option<String>,
    plan: FaultPlan,
    observer: Observer,
    plan_task: RefCell<Option<sim_core::task::JoinHandle<()>>>,
}

impl Env {
    pub(crate) fn new(
        sim: Sim,
        mutant: Option<String>,
        plan: FaultPlan,
        observer: Observer,
    ) -> Self {
        Env {
            sim,
            mutant,
            plan,
            observer,
            plan_task: RefCell::new(None),
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

    /// Every corruption of node `name`'s disk so far in this run, oldest first (`disk_corrupt`
    /// episodes, and any the scenario made itself); empty for a node that does not exist.
    ///
    /// Each one tells whether it hit fsynced data ([`Corruption::synced`], sim-core's truth,
    /// as it stands now: a later successful fsync of the file can still vouch for damaged
    /// bytes and turn it true). A checker may excuse what a system does about damage to data
    /// it made durable (refusing to serve it); damage to bytes that never were fsynced is
    /// damage to nothing the system promised to keep, and excuses nothing.
    pub fn disk_corruptions(&self, name: &str) -> Vec<Corruption> {
        node(&self.sim, name)
            .map(|id| self.sim.disk(id).corruptions())
            .unwrap_or_default()
    }

    /// A handle for reporting from nodes and checkers, cheap to clone.
    pub fn observer(&self) -> Observer {
        self.observer.clone()
    }

    /// Marks the sometimes-invariant as reached.
    pub fn reached(&self, invariant: &Invariant) {
        self.observer.reached(invariant);
    }

    /// Reports a broken invariant at once (see [`Observer::violation`]).
    pub fn violation(&self, invariant: &Invariant, message: impl Into<String>) {
        self.observer.violation(invariant, message);
    }

    /// Marks the run inconclusive (see [`Observer::inconclusive`]).
    pub fn inconclusive(&self, reason: impl Into<String>) {
        self.observer.inconclusive(reason);
    }

    /// Judges `history` against `model` with the harness's linearizability checker. A search
    /// that gives up, or a history that refused operations because it was full, makes the run
    /// inconclusive (never a pass, never blamed on the system).
    pub fn linearizable<M: Model>(
        &self,
        invariant: &Invariant,
        model: &M,
        history: &History<M::Input, M::Output>,
    ) -> Checked {
        if history.refused() > 0 {
            self.inconclusive(format!(
                "{}: the history was full and refused {} operations",
                invariant.name(),
                history.refused()
            ));
            return Ok(());
        }
        let report = check_with(model, history, &CheckOptions::from(&CheckLimits::default()));
        self.keep_history(history, &report);
        match report.result {
            CheckResult::Ok => Ok(()),
            CheckResult::Unknown { reason } => {
                self.inconclusive(format!("{}: checker gave up: {reason}", invariant.name()));
                Ok(())
            }
            illegal => Err(invariant.violated(illegal.to_string())),
        }
    }

    /// Hands a checked client history and the checker's report on it to the harness, which
    /// draws it ([`crate::linearizability::html::render`]) when the run was asked for its
    /// history (`dst replay --history FILE`, [`crate::RunOptions::keep_history`]) and does
    /// nothing otherwise. [`Env::linearizable`] calls it; a scenario that runs the checker
    /// itself ([`check_with`]) calls it with the report. The last history handed over is the
    /// one kept.
    pub fn keep_history<I: Debug, O: Debug>(&self, history: &History<I, O>, report: &Report) {
        if self.observer.keep_history {
            let page = crate::linearizability::html::render(history, report);
            self.observer.record().history = Some(page);
        }
    }

    /// Judges an eventually-invariant: calls `probe` until it answers `Ok` or the invariant's
    /// bound (from the moment of this call) runs out, waiting [`EVENTUALLY_RETRY`] between
    /// probes; a probe still running at the bound is abandoned, and no probe starts after it
    /// (so the invariant holds only if a probe *finished* within the bound). Each probe should make a fresh
    /// attempt (a new request, a new value), so that an earlier attempt's leftovers cannot
    /// decide a later one. The violation carries the last probe's answer.
    pub async fn eventually<F, Fut>(&self, invariant: &Invariant, probe: F) -> Checked
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let bound = invariant.within().unwrap_or_default();
        self.eventually_within(invariant, bound, probe).await
    }

    /// Like [`Env::eventually`], with a bound computed for this run (for example from the
    /// generated configuration) instead of the declared one.
    pub async fn eventually_within<F, Fut>(
        &self,
        invariant: &Invariant,
        bound: Duration,
        mut probe: F,
    ) -> Checked
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        if !self
            .observer
            .declared(invariant, InvariantKind::Eventually, "eventually")
        {
            return Ok(());
        }
        self.observer
            .record()
            .judged
            .insert(invariant.name().to_string());
        let deadline = self.sim.now() + bound;
        let mut last = String::from("no probe finished");
        let mut probes = 0u64;
        while self.sim.now() < deadline {
            probes += 1;
            let left = deadline - self.sim.now();
            match sim_core::time::timeout(left, probe()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(seen)) => last = seen,
                Err(_) => {
                    last = format!("{last} (probe {probes} was still running at the bound)");
                    break;
                }
            }
            let now = self.sim.now();
            if now >= deadline {
                break;
            }
            self.sim.sleep(EVENTUALLY_RETRY.min(deadline - now)).await;
        }
        Err(invariant.violated(format!(
            "not within {} ms of healing ({probes} probes); last: {last}",
            bound.as_millis()
        )))
    }

    /// Starts the plan (harness-owned).
    pub(crate) fn start_plan(&self) {
        let plan = self.plan.clone();
        let sim = self.sim.clone();
        let handle = sim_core::task::spawn(async move { execute_plan(sim, plan).await });
        *self.plan_task.borrow_mut() = Some(handle);
    }

    /// Waits until every episode of the plan has started and ended, then heals every fault:
    /// partitions, holds and link faults end, paused nodes resume, crashed nodes restart,
    /// clocks, disks, links and buggify go back to what the scenario configured.
    pub(crate) async fn heal(&self) {
        let task = self.plan_task.borrow_mut().take();
        if let Some(task) = task {
            let _ = task.await;
        }
        heal_all(&self.sim);
        sim_core::trace::note("healed", "every fault healed: the liveness phase starts");
    }

    /// The contract checks at the end of a run that got this far.
    pub(crate) fn finish(&self, declared: &[Invariant]) {
        let record = self.observer.record();
        let unjudged: Vec<&str> = declared
            .iter()
            .filter(|i| i.kind() == InvariantKind::Eventually)
            .map(Invariant::name)
            .filter(|name| !record.judged.contains(*name))
            .collect();
        let muted_before = !record.skipped.is_empty();
        drop(record);
        if !unjudged.is_empty() && muted_before {
            // A muted violation returned by a phase ended that phase early: what it had not
            // judged yet cannot be judged in this run.
            self.inconclusive(format!(
                "eventually-invariant(s) {} not judged: a muted violation ended a phase early",
                unjudged.join(", ")
            ));
        } else if !unjudged.is_empty() {
            sim_core::report_error(format!(
                "eventually-invariant(s) {} declared but never judged (call Env::eventually in after_heal)",
                unjudged.join(", ")
            ));
        }
    }
}

/// Runs one case's phases: see the [module docs](self).
pub(crate) async fn run_phases<S: Scenario>(
    scenario: S,
    env: Env,
    workload: S::Workload,
    declared: Vec<Invariant>,
) {
    let system = scenario.setup(&env, &workload);
    env.start_plan();
    let observer = env.observer();
    observer.report(scenario.drive(&env, &system, workload).await);
    observer.report(scenario.check(&env, &system).await);
    env.heal().await;
    observer.report(scenario.after_heal(&env, &system).await);
    env.finish(&declared);
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
    for (at, index, edge) in edges {
        let target = Duration::from_millis(at);
        let now = sim.now();
        if target > now {
            sim.sleep(target - now).await;
        }
        let (start, episode) = match edge {
            Edge::Start(episode) => (true, episode),
            Edge::End(episode) => (false, episode),
        };
        // A plan naming a node the scenario never built would silently do nothing: the run
        // would pass without the fault. That is the scenario's contract broken, not a pass.
        if let Some(name) = episode
            .fault
            .nodes()
            .into_iter()
            .find(|name| sim.node_id(name).is_none())
        {
            sim_core::report_error(format!(
                "the fault plan's episode starting at {} ms ({}) names node {name:?}, which the scenario has not built at {at} ms",
                episode.at_ms, episode.fault
            ));
            return;
        }
        let (kind, fields) = fault_fields(&episode.fault);
        let text = episode.fault.to_string();
        sim_core::trace::fault_edge(start, index as u32, kind, fields, text);
        if start {
            start_fault(&sim, &episode.fault);
        } else {
            end_fault(&sim, &episode.fault);
        }
    }
}

/// The typed fields of a fault, for its trace events: what the trace hash covers.
fn fault_fields(fault: &Fault) -> (&'static str, Vec<FaultField>) {
    let node = |name: &str| FaultField::Node(name.to_string());
    let int = |value: i64| FaultField::Int(value);
    let uint = |value: u64| FaultField::Int(i64::try_from(value).unwrap_or(i64::MAX));
    let link = |from: &str, to: &str| vec![node(from), node(to)];
    let link_with = |from: &str, to: &str, value: FaultField| vec![node(from), node(to), value];
    match fault {
        Fault::Partition { groups } => {
            let mut fields = Vec::new();
            for group in groups {
                fields.extend(group.iter().map(|name| node(name)));
                fields.push(FaultField::GroupEnd);
            }
            ("partition", fields)
        }
        Fault::PartitionOneWay { from, to } => {
            let mut fields: Vec<FaultField> = from.iter().map(|name| node(name)).collect();
            fields.push(FaultField::GroupEnd);
            fields.extend(to.iter().map(|name| node(name)));
            fields.push(FaultField::GroupEnd);
            ("partition_one_way", fields)
        }
        // The shape is a label: the links are what happens.
        Fault::Cut { one_way, links, .. } => {
            let mut fields = Vec::new();
            for [from, to] in links {
                fields.extend([node(from), node(to), FaultField::GroupEnd]);
            }
            (if *one_way { "cut_one_way" } else { "cut" }, fields)
        }
        Fault::Crash { node: name } => ("crash", vec![node(name)]),
        Fault::Pause { node: name } => ("pause", vec![node(name)]),
        Fault::ClockOffset {
            node: name,
            offset_ms,
        } => ("clock_offset", vec![node(name), int(*offset_ms)]),
        Fault::ClockDrift { node: name, ppm } => ("clock_drift", vec![node(name), int(*ppm)]),
        Fault::ClockJump {
            node: name,
            delta_ms,
        } => ("clock_jump", vec![node(name), int(*delta_ms)]),
        Fault::LinkLoss {
            from,
            to,
            probability,
        } => (
            "link_loss",
            link_with(from, to, FaultField::Float(*probability)),
        ),
        Fault::LinkDuplicate {
            from,
            to,
            probability,
        } => (
            "link_duplicate",
            link_with(from, to, FaultField::Float(*probability)),
        ),
        Fault::LinkLatency {
            from,
            to,
            min_ms,
            max_ms,
        } => {
            let mut fields = link(from, to);
            fields.extend([uint(*min_ms), uint(*max_ms)]);
            ("link_latency", fields)
        }
        Fault::Hold { from, to } => ("hold", link(from, to)),
        Fault::DiskErrors {
            node: name,
            read_error,
            write_error,
            fsync_error,
        } => (
            "disk_errors",
            vec![
                node(name),
                FaultField::Float(*read_error),
                FaultField::Float(*write_error),
                FaultField::Float(*fsync_error),
            ],
        ),
        Fault::DiskLatency {
            node: name,
            min_ms,
            max_ms,
        } => (
            "disk_latency",
            vec![node(name), uint(*min_ms), uint(*max_ms)],
        ),
        Fault::DiskFull {
            node: name,
            free_bytes,
        } => ("disk_full", vec![node(name), uint(*free_bytes)]),
        Fault::DiskCorrupt { node: name } => ("disk_corrupt", vec![node(name)]),
        Fault::Buggify => ("buggify", Vec::new()),
    }
}

pub(crate) fn node(sim: &Sim, name: &str) -> Option<sim_core::NodeId> {
    sim.node_id(name)
}

pub(crate) fn nodes(sim: &Sim, names: &[String]) -> Vec<sim_core::NodeId> {
    names.iter().filter_map(|name| sim.node_id(name)).collect()
}

fn start_fault(sim: &Sim, fault: &Fault) {
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
