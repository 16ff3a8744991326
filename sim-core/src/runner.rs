//! The runner: one seed, one configuration, one supervisor future, one [`Report`].
//!
//! Every run gets a fresh OS thread: madsim seeds std's `HashMap` hasher only for the first
//! runtime on a thread, so reusing threads would make runs in one process differ from runs in
//! fresh processes. The runner registers the world before any node exists, runs the supervisor,
//! turns whatever ended the run into an [`Outcome`], and tears everything down (kills every
//! node and aborts the supervisor's tasks, then lets madsim drop them) so that nothing of the
//! run outlives it, whatever the outcome.

use crate::coverage::Coverage;
use crate::node::{NodeId, Sim};
use crate::run_thread::{self, Sent};
use crate::trace::{Event, Timeline};
use crate::world::{self, StopReason, World};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Once};
use std::task::{Context, Poll};
use std::time::Duration;

/// Settings of a run. Serializable, so that tools can store and compare them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Simulated time after which the run ends as `time_limit`, in milliseconds.
    pub time_limit_ms: u64,
    /// Steps (trace events and task polls) after which the run ends as `step_limit`.
    pub step_limit: u64,
    /// Wall-clock time after which the watchdog ends the run as `hung`, in milliseconds
    /// (0: no watchdog). A last resort; the step and time limits should fire first.
    pub wall_limit_ms: u64,
    /// Code-level fault injection.
    pub buggify: crate::buggify::BuggifyConfig,
    /// What to keep and print of the trace. Never changes the trace hash.
    pub trace: TraceConfig,
    /// The network.
    pub net: crate::net::NetConfig,
    /// The disks.
    pub disk: crate::disk::DiskConfig,
}

impl SimConfig {
    /// Checks every field, so that bad input gets a clear error before a run starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.step_limit == 0 {
            return Err(ConfigError("step_limit must be at least 1".into()));
        }
        if self.time_limit_ms == 0 {
            return Err(ConfigError("time_limit_ms must be at least 1".into()));
        }
        let p = self.buggify.activation_probability;
        if !(0.0..=1.0).contains(&p) {
            return Err(ConfigError(format!(
                "buggify.activation_probability must be within 0..=1, got {p}"
            )));
        }
        if let Some(filter) = &self.trace.log {
            filter
                .parse::<tracing_subscriber::filter::Targets>()
                .map_err(|error| ConfigError(format!("trace.log filter {filter:?}: {error}")))?;
        }
        self.net.validate().map_err(ConfigError)?;
        self.disk.validate().map_err(ConfigError)?;
        Ok(())
    }
}

/// A configuration that cannot run, with what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid simulation config: {0}")]
pub struct ConfigError(pub String);

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            time_limit_ms: 3_600_000,
            step_limit: 50_000_000,
            wall_limit_ms: 120_000,
            buggify: Default::default(),
            trace: Default::default(),
            net: Default::default(),
            disk: Default::default(),
        }
    }
}

/// What to keep and print of the trace.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraceConfig {
    /// Keep every event in the report's [`Timeline`].
    pub keep: bool,
    /// At most this many events are kept (the hash still covers all of them).
    pub events_max: usize,
    /// A `tracing` filter (such as `info` or `my_crate=debug`) for application logs; madsim's own
    /// lines are off unless the filter names `madsim`; `None`
    /// installs no subscriber.
    pub log: Option<String>,
    /// Print application log lines to stderr as they happen.
    pub print: bool,
    /// Collect the run's [`Coverage`] ([`Report::coverage`]): what a guided search steers by.
    /// Never changes the trace or its hash.
    pub coverage: bool,
}

impl Default for TraceConfig {
    fn default() -> Self {
        TraceConfig {
            keep: false,
            events_max: 1_000_000,
            log: None,
            print: false,
            coverage: false,
        }
    }
}

/// A broken invariant, as returned by a workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("invariant {invariant} violated: {message}")]
pub struct Violation {
    /// Name of the invariant.
    pub invariant: String,
    /// What was seen.
    pub message: String,
}

impl Violation {
    /// A violation of `invariant`.
    pub fn new(invariant: impl Into<String>, message: impl Into<String>) -> Self {
        Violation {
            invariant: invariant.into(),
            message: message.into(),
        }
    }
}

/// How a run ended. Serialized with the lowercase names `pass`, `violation`, `panic`,
/// `time_limit`, `step_limit`, `deadlock`, `hung` in the field `outcome`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The supervisor finished and nothing was reported broken.
    Pass,
    /// The workload or a checker reported a broken invariant.
    Violation {
        /// Name of the invariant.
        invariant: String,
        /// What was seen.
        message: String,
        /// Node that reported it (`None`: the supervisor).
        node: Option<String>,
        /// Simulated time, in nanoseconds.
        time_ns: u64,
    },
    /// Some task panicked.
    Panic {
        /// The panic message.
        message: String,
        /// Node of the task (`None`: the supervisor).
        node: Option<String>,
        /// Simulated time, in nanoseconds.
        time_ns: u64,
    },
    /// Simulated time ran out.
    TimeLimit {
        /// Simulated time, in nanoseconds.
        time_ns: u64,
    },
    /// Too many steps.
    StepLimit {
        /// Simulated time, in nanoseconds.
        time_ns: u64,
        /// Steps counted.
        steps: u64,
    },
    /// Nothing was left to run and the supervisor had not finished.
    Deadlock {
        /// Simulated time, in nanoseconds.
        time_ns: u64,
    },
    /// The test broke its own contract (see [`report_error`]): not the system's fault.
    Error {
        /// What broke.
        message: String,
        /// Simulated time, in nanoseconds.
        time_ns: u64,
    },
    /// The wall-clock watchdog fired.
    Hung {
        /// Simulated time when the run was stopped, if it could be stopped.
        time_ns: Option<u64>,
        /// Wall-clock milliseconds the run had taken.
        wall_ms: u64,
    },
}

impl Outcome {
    /// The lowercase name of the outcome, as serialized.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Violation { .. } => "violation",
            Outcome::Panic { .. } => "panic",
            Outcome::TimeLimit { .. } => "time_limit",
            Outcome::StepLimit { .. } => "step_limit",
            Outcome::Deadlock { .. } => "deadlock",
            Outcome::Error { .. } => "error",
            Outcome::Hung { .. } => "hung",
        }
    }

    /// Whether the run passed.
    pub fn is_pass(&self) -> bool {
        matches!(self, Outcome::Pass)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = |ns: u64| crate::trace::format_time(ns);
        let on = |node: &Option<String>| node.clone().unwrap_or_else(|| "supervisor".into());
        match self {
            Outcome::Pass => write!(f, "pass"),
            Outcome::Violation {
                invariant,
                message,
                node,
                time_ns,
            } => write!(
                f,
                "violation of {invariant} at {} on {}: {message}",
                at(*time_ns),
                on(node)
            ),
            Outcome::Panic {
                message,
                node,
                time_ns,
            } => write!(f, "panic at {} on {}: {message}", at(*time_ns), on(node)),
            Outcome::TimeLimit { time_ns } => write!(f, "time_limit at {}", at(*time_ns)),
            Outcome::StepLimit { time_ns, steps } => {
                write!(f, "step_limit ({steps} steps) at {}", at(*time_ns))
            }
            Outcome::Deadlock { time_ns } => write!(f, "deadlock at {}", at(*time_ns)),
            Outcome::Error { message, time_ns } => {
                write!(f, "error at {}: {message}", at(*time_ns))
            }
            Outcome::Hung { wall_ms, .. } => write!(f, "hung after {wall_ms} ms of wall time"),
        }
    }
}

/// The result of a run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// Stable hash of the simulation events.
    pub trace_hash: u64,
    /// Simulated time at the end, in nanoseconds.
    pub sim_time_ns: u64,
    /// Steps counted (trace events and task polls).
    pub steps: u64,
    /// Hashed trace events.
    pub events: u64,
    /// Messages sent through the simulated network.
    pub messages: u64,
    /// The kept events, when [`TraceConfig::keep`] was on.
    pub timeline: Option<Timeline>,
    /// What the run reached, when [`TraceConfig::coverage`] was on (not serialized).
    #[serde(skip)]
    pub coverage: Option<Coverage>,
    /// Wall-clock milliseconds the run took (not deterministic; informative only).
    pub wall_ms: u64,
}

/// Records an invariant violation on the current node and stops the run: nothing happens after
/// it, and the run's outcome is `violation`. The first violation wins. Does nothing outside a
/// run.
pub fn report_violation(invariant: &str, message: impl Into<String>) {
    let message = message.into();
    world::try_with(|world| {
        if !world.running() {
            return;
        }
        let node = world.current_node();
        world.record(
            node,
            Event::Violation {
                invariant: invariant.to_string(),
                message: message.clone(),
            },
        );
        let time = world.now();
        world.stop_with(StopReason::Violation {
            invariant: invariant.to_string(),
            message,
            node,
            time,
        });
    });
}

/// Ends the run because the test itself broke its contract (for example a fault plan naming a
/// node that was never built): the outcome is [`Outcome::Error`], never blamed on the system.
/// The first stop wins. Does nothing outside a run.
pub fn report_error(message: impl Into<String>) {
    let message = message.into();
    world::try_with(|world| {
        if !world.running() {
            return;
        }
        world.record(
            None,
            Event::Error {
                message: message.clone(),
            },
        );
        let time = world.now();
        world.stop_with(StopReason::Error { message, time });
    });
}

/// Runs the supervisor `main` in a fresh world seeded with `seed`.
///
/// `main` gets the [`Sim`] handle, adds nodes, injects faults and drives the workload; the run
/// passes when it returns `Ok(())` and nothing reported a violation. The call blocks until the
/// run ends, whatever the outcome; it never panics because of the run (a panic inside the run is
/// the `panic` outcome).
///
/// # Panics
/// If `config` is invalid ([`SimConfig::validate`]): check configs that come from users first.
pub fn run<F, Fut>(seed: u64, config: SimConfig, main: F) -> Report
where
    F: FnOnce(Sim) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), Violation>> + 'static,
{
    if let Err(error) = config.validate() {
        panic!("sim_core::run: {error}");
    }
    install_panic_hook();
    let abort = Arc::new(AtomicBool::new(false));
    let wall_limit = Duration::from_millis(config.wall_limit_ms);
    // A slot for the one thing the thread sends: an unbounded channel would allocate and zero
    // a block of 31 reports per run, a tenth of an empty run's instructions (measured).
    let (sender, receiver) = mpsc::sync_channel::<Sent>(1);
    let thread_abort = abort.clone();
    #[allow(clippy::disallowed_methods)] // Wall time of the watchdog, outside the simulation.
    let wall_start = std::time::Instant::now();
    let thread = run_thread::spawn(
        seed,
        Box::new(move || {
            let sent = catch_unwind(AssertUnwindSafe(|| {
                run_here(seed, config, thread_abort, main)
            }))
            .map_err(|payload| panic_message(payload.as_ref()));
            let _ = sender.send(sent);
        }),
    )
    .expect("sim-core: cannot start the run's thread");
    let ended = run_thread::wait(thread, receiver, wall_limit, || {
        // Ask the run to stop at its next step, then give it a moment to do so.
        abort.store(true, Ordering::Relaxed);
        Duration::from_secs(5)
    });
    let wall_ms = wall_start.elapsed().as_millis() as u64;
    match ended {
        Some(Ok(mut report)) => {
            report.wall_ms = wall_ms;
            // The run only knows its simulated time; the watchdog knows how long it took.
            if let Outcome::Hung {
                wall_ms: hung_ms, ..
            } = &mut report.outcome
            {
                *hung_ms = wall_ms;
            }
            report
        }
        Some(Err(message)) => runner_panic_report(seed, message, wall_ms),
        // The thread is stuck outside any poll (a busy loop in user code): left behind.
        None => hung_report(seed, wall_ms),
    }
}

/// Caps the C allocator's arenas at 2 × `threads` + 1, in a process that runs many runs
/// `threads` at a time; call it once, before the first run. Every run has a fresh thread (see
/// the module docs), and glibc gives threads arenas of their own, up to eight per core, each
/// keeping the memory its threads freed: over a long batch resident memory grew by megabytes
/// that no run held (measured with `dst bench`, part 3). Twice as many arenas as runs at a
/// time, not one each: with `threads` + 1, parallel runs were slower, most likely sharing an
/// arena and its lock (glibc hands a new thread the next arena not locked at that instant).
/// `dst bench` on 2 cores, the two binaries one after the other: the long batch ran 11,264
/// runs in 41 s with 3 arenas, 13,056 with 5, its resident memory growing 0.4 and 1.3 MiB;
/// the parallel speedup read 1.76 and 2.00. Does nothing where the C library is not glibc.
pub fn cap_allocator_arenas(threads: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let arenas = threads.saturating_mul(2).saturating_add(1);
        let arenas = libc::c_int::try_from(arenas).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets a limit that glibc reads when it makes a new arena.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = threads;
}

fn runner_panic_report(seed: u64, message: String, wall_ms: u64) -> Report {
    Report {
        seed,
        outcome: Outcome::Panic {
            message: format!("sim-core runner: {message}"),
            node: None,
            time_ns: 0,
        },
        trace_hash: 0,
        sim_time_ns: 0,
        steps: 0,
        events: 0,
        messages: 0,
        timeline: None,
        coverage: None,
        wall_ms,
    }
}

fn hung_report(seed: u64, wall_ms: u64) -> Report {
    Report {
        seed,
        outcome: Outcome::Hung {
            time_ns: None,
            wall_ms,
        },
        trace_hash: 0,
        sim_time_ns: 0,
        steps: 0,
        events: 0,
        messages: 0,
        timeline: None,
        coverage: None,
        wall_ms,
    }
}

/// What the panic hook saw of the last panic on a run's thread.
#[derive(Clone, Debug)]
struct PanicSeen {
    message: String,
    node: Option<NodeId>,
    time: Duration,
}

thread_local! {
    static ON_RUN_THREAD: Cell<bool> = const { Cell::new(false) };
    static PANIC_SEEN: RefCell<Option<PanicSeen>> = const { RefCell::new(None) };
}

/// Keeps panics of simulated code off stderr (they become outcomes) and records where they
/// happened; panics on any other thread go to the previous hook.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !ON_RUN_THREAD.with(|flag| flag.get()) {
                previous(info);
                return;
            }
            let payload = info.payload();
            let mut message = panic_message(payload);
            if let Some(location) = info.location() {
                message = format!("{message} (at {location})");
            }
            let time = madsim::time::TimeHandle::try_current()
                .map(|handle| handle.elapsed())
                .unwrap_or_default();
            let node = crate::task::current_node();
            // The last panic wins: the one that unwinds out of the run is the last one seen
            // (a panic that user code caught earlier must not stand for it).
            PANIC_SEEN.with(|seen| {
                if let Ok(mut seen) = seen.try_borrow_mut() {
                    *seen = Some(PanicSeen {
                        message,
                        node,
                        time,
                    });
                }
            });
        }));
    });
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

const MADSIM_DEADLOCK: &str = "no events, all tasks will block forever";
const MADSIM_TIME_LIMIT: &str = "time limit exceeded";

/// How the supervisor future ended.
enum End {
    Finished(Result<(), Violation>),
    Stopped,
}

/// The supervisor: polls the stop signal first, then the workload.
struct Supervisor<F> {
    workload: Pin<Box<crate::task::Counted<F>>>,
}

impl<F: Future<Output = Result<(), Violation>>> Future for Supervisor<F> {
    type Output = End;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<End> {
        let stopped = world::with(|world| {
            if world.stop.is_some() {
                return true;
            }
            world.stop_waker = Some(cx.waker().clone());
            false
        });
        if stopped {
            return Poll::Ready(End::Stopped);
        }
        match self.workload.as_mut().poll(cx) {
            Poll::Ready(result) => Poll::Ready(End::Finished(result)),
            Poll::Pending if world::with(|world| world.stop.is_some()) => Poll::Ready(End::Stopped),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn run_here<F, Fut>(seed: u64, config: SimConfig, abort: Arc<AtomicBool>, main: F) -> Report
where
    F: FnOnce(Sim) -> Fut,
    Fut: Future<Output = Result<(), Violation>> + 'static,
{
    ON_RUN_THREAD.with(|flag| flag.set(true));
    PANIC_SEEN.with(|seen| seen.borrow_mut().take());
    let log_filter = config.trace.log.clone();
    let time_limit = Duration::from_millis(config.time_limit_ms);
    let mut runtime =
        madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
    runtime.set_time_limit(time_limit);
    world::install(World::new(seed, config, abort));
    let _log_guard = log_filter.map(|filter| {
        use tracing_subscriber::layer::SubscriberExt;
        // `Targets` rather than `EnvFilter`: EnvFilter keeps std HashMaps, and every
        // `RandomState` created on the run's thread shifts the keys of the workload's own maps.
        let mut targets: tracing_subscriber::filter::Targets =
            filter.parse().expect("checked by SimConfig::validate");
        if !filter.contains("madsim") {
            // madsim's own lines (its executor and network internals) number nodes its own
            // way, which differs from the trace's; they are noise unless asked for by name.
            targets = targets.with_target("madsim", tracing::level_filters::LevelFilter::OFF);
        }
        let filter = targets;
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::Layer::with_filter(crate::trace::SimLayer, filter),
        );
        tracing::subscriber::set_default(subscriber)
    });

    let result = catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(async move {
            world::with(|world| world.set_time_handle(madsim::time::TimeHandle::current()));
            let workload = crate::task::Counted::new(None, main(Sim::new()));
            Supervisor {
                workload: Box::pin(workload),
            }
            .await
        })
    }));
    let outcome = outcome_of(result);
    let sim_time = world::with(|world| world.now());

    // Teardown: freeze the world, kill every node, abort supervisor tasks, and let madsim drop
    // them all (madsim drops a killed task's future the next time the task is scheduled).
    let (madsim_nodes, supervisor_tasks) = world::with(|world| {
        world.finished = true;
        let nodes: Vec<_> = world.nodes.iter().filter_map(|n| n.madsim_id).collect();
        (nodes, std::mem::take(&mut world.supervisor_tasks))
    });
    runtime.set_time_limit(Duration::MAX);
    let teardown = catch_unwind(AssertUnwindSafe(|| {
        runtime.block_on(async move {
            let handle = madsim::runtime::Handle::current();
            for id in madsim_nodes {
                handle.kill(id);
            }
            for task in supervisor_tasks {
                task.abort();
            }
            madsim::time::sleep(Duration::from_millis(1)).await;
        })
    }));
    drop(runtime);
    let world = world::take().expect("the world was installed above");
    ON_RUN_THREAD.with(|flag| flag.set(false));
    let outcome = match teardown {
        Ok(()) => outcome,
        Err(_) if outcome.is_pass() => {
            let seen = PANIC_SEEN.with(|seen| seen.borrow_mut().take());
            Outcome::Panic {
                message: seen.map_or_else(|| "panic during teardown".into(), |s| s.message),
                node: None,
                time_ns: sim_time.as_nanos() as u64,
            }
        }
        Err(_) => outcome,
    };
    finish_report(seed, world, outcome, sim_time)
}

fn outcome_of(result: std::thread::Result<End>) -> Outcome {
    let (stop, names) = world::with(|world| {
        let names: Vec<String> = world.nodes.iter().map(|n| n.name.clone()).collect();
        (world.stop.clone(), names)
    });
    let name_of = |node: Option<NodeId>| node.map(|id| names[id.0 as usize].clone());
    let ns = |time: Duration| time.as_nanos() as u64;
    // A stop happened before anything that followed it.
    if let Some(reason) = stop {
        return match reason {
            StopReason::Violation {
                invariant,
                message,
                node,
                time,
            } => Outcome::Violation {
                invariant,
                message,
                node: name_of(node),
                time_ns: ns(time),
            },
            StopReason::Error { message, time } => Outcome::Error {
                message,
                time_ns: ns(time),
            },
            StopReason::StepLimit { time, steps } => Outcome::StepLimit {
                time_ns: ns(time),
                steps,
            },
            StopReason::Hung { time } => Outcome::Hung {
                time_ns: Some(ns(time)),
                wall_ms: 0,
            },
        };
    }
    match result {
        Ok(End::Finished(Ok(()))) => Outcome::Pass,
        Ok(End::Finished(Err(violation))) => {
            let time = world::with(|world| {
                world.record(
                    None,
                    Event::Violation {
                        invariant: violation.invariant.clone(),
                        message: violation.message.clone(),
                    },
                );
                world.now()
            });
            Outcome::Violation {
                invariant: violation.invariant,
                message: violation.message,
                node: None,
                time_ns: ns(time),
            }
        }
        Ok(End::Stopped) => unreachable!("stopped without a stop reason"),
        Err(payload) => {
            let seen = PANIC_SEEN.with(|seen| seen.borrow_mut().take());
            let message = seen
                .as_ref()
                .map_or_else(|| panic_message(payload.as_ref()), |s| s.message.clone());
            let time = seen.as_ref().map_or(Duration::ZERO, |s| s.time);
            if message.starts_with(MADSIM_DEADLOCK) {
                Outcome::Deadlock { time_ns: ns(time) }
            } else if message.starts_with(MADSIM_TIME_LIMIT) {
                Outcome::TimeLimit { time_ns: ns(time) }
            } else {
                Outcome::Panic {
                    message,
                    node: name_of(seen.and_then(|s| s.node)),
                    time_ns: ns(time),
                }
            }
        }
    }
}

fn finish_report(seed: u64, world: World, outcome: Outcome, sim_time: Duration) -> Report {
    let messages = world.net.messages_sent();
    let World {
        trace,
        nodes,
        steps,
        coverage,
        ..
    } = world;
    let trace_hash = trace.hash();
    let events = trace.hashed_count();
    let timeline = trace.keeps_events().then(|| {
        let (events, truncated, messages) = trace.into_events();
        Timeline {
            node_names: nodes.into_iter().map(|n| n.name).collect(),
            events,
            truncated,
            messages,
        }
    });
    Report {
        seed,
        outcome,
        trace_hash,
        sim_time_ns: sim_time.as_nanos() as u64,
        steps,
        events,
        messages,
        timeline,
        coverage: coverage.map(|collector| collector.map),
        wall_ms: 0,
    }
}
