//! The state of one run, kept in a thread-local of the run's own OS thread.
//!
//! madsim runs every task of a run on the thread that called `block_on`, and sim-core gives
//! every run a fresh thread, so a thread-local holds exactly one world. Every access goes
//! through [`with`], which borrows it for the length of a closure: no sim-core code calls back
//! into user code or into madsim's locking APIs while the world is borrowed.

use crate::node::{NodeEntry, NodeId};
use crate::runner::SimConfig;
use crate::trace::{Event, Trace, TraceEvent};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

thread_local! {
    static WORLD: RefCell<Option<World>> = const { RefCell::new(None) };
}

/// Why a run stopped before its supervisor finished.
#[derive(Clone, Debug)]
pub(crate) enum StopReason {
    Violation {
        invariant: String,
        message: String,
        node: Option<NodeId>,
        time: Duration,
    },
    Error {
        message: String,
        time: Duration,
    },
    StepLimit {
        time: Duration,
        steps: u64,
    },
    Hung {
        time: Duration,
    },
}

pub(crate) struct World {
    pub seed: u64,
    pub config: SimConfig,
    pub trace: Trace,
    streams: BTreeMap<String, Xoshiro256PlusPlus>,
    pub nodes: Vec<NodeEntry>,
    pub buggify: crate::buggify::BuggifyState,
    pub steps: u64,
    pub stop: Option<StopReason>,
    pub stop_waker: Option<Waker>,
    abort: Arc<AtomicBool>,
    /// Tasks spawned through sim-core on the supervisor; aborted at teardown because killing
    /// nodes does not reach them.
    pub supervisor_tasks: Vec<madsim::task::AbortHandle>,
    /// Set at teardown: nothing is recorded and no task makes progress after it.
    pub finished: bool,
    time: Option<madsim::time::TimeHandle>,
    pub next_sleep_id: u64,
    pub net: crate::net::NetState,
    pub disk: crate::disk::DiskState,
    /// The directories made through `sim_core::fs` (the disk has none of its own).
    pub fs: crate::fs::FsState,
    /// Coverage being collected, when [`crate::runner::TraceConfig::coverage`] is on.
    pub coverage: Option<crate::coverage::Collector>,
}

impl World {
    pub fn new(seed: u64, config: SimConfig, abort: Arc<AtomicBool>) -> Self {
        let trace = Trace::new(config.trace.keep, config.trace.events_max);
        let buggify = crate::buggify::BuggifyState::new(&config.buggify);
        let net = crate::net::NetState::new(&config.net);
        let disk = crate::disk::DiskState::new(&config.disk);
        let coverage = config
            .trace
            .coverage
            .then(crate::coverage::Collector::default);
        World {
            seed,
            config,
            trace,
            streams: BTreeMap::new(),
            nodes: Vec::new(),
            buggify,
            steps: 0,
            stop: None,
            stop_waker: None,
            abort,
            supervisor_tasks: Vec::new(),
            finished: false,
            time: None,
            next_sleep_id: 0,
            net,
            disk,
            fs: crate::fs::FsState::default(),
            coverage,
        }
    }

    pub fn set_time_handle(&mut self, handle: madsim::time::TimeHandle) {
        self.time = Some(handle);
    }

    /// Simulated time since the start of the run.
    pub fn now(&self) -> Duration {
        match &self.time {
            Some(handle) => handle.elapsed(),
            None => Duration::ZERO,
        }
    }

    /// The time handle of the run's runtime.
    pub fn time_handle(&self) -> &madsim::time::TimeHandle {
        self.time
            .as_ref()
            .expect("sim-core: time handle used before the run started")
    }

    /// The generator of stream `name`, created on first use.
    pub fn stream(&mut self, name: &str) -> &mut Xoshiro256PlusPlus {
        if !self.streams.contains_key(name) {
            let rng = crate::rng::new_stream(self.seed, name);
            self.streams.insert(name.to_string(), rng);
        }
        self.streams.get_mut(name).expect("inserted above")
    }

    /// Whether the run goes on: false once it stopped or finished.
    pub fn running(&self) -> bool {
        self.stop.is_none() && !self.finished
    }

    /// Counts one step (an event or a task poll). Returns false when the run must not make
    /// progress any more: it stopped, it hit the step limit, or the watchdog fired.
    pub fn step(&mut self) -> bool {
        if !self.running() {
            return false;
        }
        if self.abort.load(Ordering::Relaxed) {
            let time = self.now();
            self.stop_with(StopReason::Hung { time });
            return false;
        }
        self.steps += 1;
        if self.steps > self.config.step_limit {
            let time = self.now();
            let steps = self.steps;
            self.stop_with(StopReason::StepLimit { time, steps });
            return false;
        }
        true
    }

    /// Records a hashed event on `node`, counting it as a step. Does nothing once stopped.
    pub fn record(&mut self, node: Option<NodeId>, event: Event) {
        if !self.step() {
            return;
        }
        let time_ns = self.now().as_nanos() as u64;
        if let Some(coverage) = self.coverage.as_mut() {
            coverage.observe(node, time_ns, &event);
        }
        self.trace.push(TraceEvent {
            time_ns,
            node,
            event,
        });
    }

    /// Records an application log line (not hashed, not a step); prints it if asked.
    pub fn record_log(&mut self, event: Event) {
        if self.finished {
            return;
        }
        let node = self.current_node();
        let time_ns = self.now().as_nanos() as u64;
        let trace_event = TraceEvent {
            time_ns,
            node,
            event,
        };
        if self.config.trace.print {
            let name = match node {
                Some(id) => self.nodes[id.0 as usize].name.as_str(),
                None => "supervisor",
            };
            eprintln!(
                "{:>14} {:<12} {}",
                crate::trace::format_time(time_ns),
                name,
                trace_event.event
            );
        }
        self.trace.push(trace_event);
    }

    /// Stops the run; the first reason wins.
    pub fn stop_with(&mut self, reason: StopReason) {
        if self.stop.is_some() || self.finished {
            return;
        }
        self.stop = Some(reason);
        if let Some(waker) = self.stop_waker.take() {
            waker.wake();
        }
    }

    /// The sim-core node of the task running now, or `None` on the supervisor.
    pub fn current_node(&self) -> Option<NodeId> {
        crate::task::current_node()
    }

    pub fn node(&self, id: NodeId) -> &NodeEntry {
        self.nodes
            .get(id.0 as usize)
            .unwrap_or_else(|| panic!("sim-core: unknown node {id:?}"))
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut NodeEntry {
        self.nodes
            .get_mut(id.0 as usize)
            .unwrap_or_else(|| panic!("sim-core: unknown node {id:?}"))
    }
}

/// Installs the world of the run on this thread.
pub(crate) fn install(world: World) {
    WORLD.with(|cell| {
        let mut slot = cell.borrow_mut();
        assert!(
            slot.is_none(),
            "sim-core: a run is already active on this thread"
        );
        *slot = Some(world);
    });
}

/// Removes the world of the run from this thread.
pub(crate) fn take() -> Option<World> {
    WORLD.with(|cell| cell.borrow_mut().take())
}

/// Runs `f` on the current run's world.
///
/// # Panics
/// Outside a run, or when called re-entrantly (a sim-core bug).
pub(crate) fn with<R>(f: impl FnOnce(&mut World) -> R) -> R {
    WORLD.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .expect("sim-core: world borrowed re-entrantly (sim-core bug)");
        let world = slot
            .as_mut()
            .expect("sim-core API used outside a simulation: start one with sim_core::run");
        f(world)
    })
}

/// Like [`with`], but returns `None` outside a run or while the world is borrowed.
pub(crate) fn try_with<R>(f: impl FnOnce(&mut World) -> R) -> Option<R> {
    WORLD.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        slot.as_mut().map(f)
    })
}
