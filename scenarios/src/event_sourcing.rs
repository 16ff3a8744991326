//! # `event-sourcing`: an event store on a simulated disk, under crashes and partitions
//!
//! ## The system
//! One store node runs [`patterns::event_sourcing::driver::run_node`]: the sans-IO store over
//! the node's disk (log and checkpoint files, fsync before acknowledging, group commit), served
//! over the network. Three writers run bank-account commands on three shared streams: each
//! loads the account (from its own snapshot plus the stream's tail), decides events, and
//! appends them with the loaded version as the expected version; on a conflict it reloads and
//! decides again; without an answer it retries the same batch with the same event ids. Writers
//! also append audit notes to a shared stream with no expected version, some deposits in the
//! old schema version (upcast at read time), some as multi-event batches, and some with memos
//! long enough that a record spans disk sectors (so a torn write can cut inside a record). A
//! reader reads streams and the whole log; a subscriber follows the log by subscription.
//!
//! ## Fault model (the budget)
//! Crashes of the store (the disk's crash model is on: unsynced data lost, torn and reordered
//! writes), pauses of the store, disk errors (read, write, fsync), disk latency and a full
//! disk, corruption of the store's stored sectors, partitions, loss, duplication, latency and
//! held links between clients and the store, and clock faults. A single store cannot survive
//! corruption of its synced log and stay available: a store that detects it and refuses to
//! serve, with a clear "corrupt log" error and without serving anything wrong, is correct, and
//! availability is not demanded after a corruption episode hit the store. It is demanded after
//! everything else.
//!
//! ## The run
//! Faults start; the writers, the reader and the subscriber run their workload; the history
//! is checked for linearizability; every fault heals; the liveness check runs; then the
//! healed store is crashed while a burst of appends is in flight (the crash every run ends
//! with, so that torn tails and retries across a restart happen in every run), restarted,
//! and read whole once more.
//!
//! ## The checks
//! Always (see [`oracle`] for the exact rules): `replay-equals-live`, `acked-appends-survive`,
//! `versions-gapless`, `linearizable` (appends and stream reads against the harness's
//! `EventLog` model, partitioned by stream; the checker's "unknown" counts as a pass and is
//! counted, see [`measurements_of`]), `idempotent`, `corruption-detected`. Eventually:
//! `available-after-heal`: within 3 s of healing, an append and a full read succeed and the
//! subscriber has every event; within 3 s of the final crash's restart, a full read succeeds
//! (and holds everything acknowledged, and replays to every writer's live state). Sometimes:
//! `recovered-torn-tail`, `group-commit`, `wrong-expected-version`, `idempotent-retry`,
//! `io-error-restart`, `corruption-refused`. The sometimes-invariants and the measurements
//! come from the store's own reports: they measure coverage, and no check relies on them.
//!
//! ## Mutants
//! The store core's six mutants, by their names (see
//! [`patterns::event_sourcing::mutant::Mutant`] for the bug each mirrors); each is caught
//! within a few dozen seeds (`scenarios/tests/event_sourcing.rs` prints the first seed).

mod clients;
pub mod oracle;

pub use clients::{check_live, LogHistory};
use clients::{report, true_ns, Ctx, CALL_TIMEOUT, READ_COUNT_MAX};
use futures::future::LocalBoxFuture;
use harness::linearizability::models::EventLog;
use harness::linearizability::{check, CheckLimits, CheckResult};
use harness::{
    Env, Fault, FaultBudget, FaultKind, InvariantSpec, MutantSpec, Observer, Scenario, ScenarioSpec,
};
use oracle::{Oracle, ReadKind};
use patterns::event_sourcing::account::account_upcasters;
use patterns::event_sourcing::driver::{
    run_node, CallError, NodeConfig, NodeEvent, NodeHook, Refusal, StoreClient, STORE_PORT,
};
use patterns::event_sourcing::event::{AppendRequest, EventData, EventId, ExpectedVersion};
use patterns::event_sourcing::mutant::{Mutant, Mutants};
use patterns::event_sourcing::store::StoreConfig;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use sim_core::disk::{DiskConfig, DiskFaults, Latency};
use sim_core::net::Addr;
use sim_core::{time, NodeId, SimConfig, Violation};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// Node names.
const STORE: &str = "store";
const WRITERS: [&str; 3] = ["writer-1", "writer-2", "writer-3"];
const READER: &str = "reader";
/// The shared account streams.
const ACCOUNT_STREAMS: u8 = 3;
/// The stream of audit notes (appended with no expected version).
pub const AUDIT_STREAM: &str = "audit";
/// The stream of the liveness probes.
const PROBE_STREAM: &str = "probe";
/// How long after healing (or the final restart) the store must be available.
const LIVENESS_BOUND: Duration = Duration::from_secs(3);

/// Invariant name.
pub const REPLAY_EQUALS_LIVE: &str = "replay-equals-live";
/// Invariant name.
pub const AVAILABLE_AFTER_HEAL: &str = "available-after-heal";

/// The stream of account `index`.
fn account_stream(index: u8) -> String {
    format!("account-{}", index % ACCOUNT_STREAMS)
}

/// An account stream, or the audit stream for the index past them.
fn any_stream(index: u8) -> String {
    if index % (ACCOUNT_STREAMS + 1) == ACCOUNT_STREAMS {
        AUDIT_STREAM.to_owned()
    } else {
        account_stream(index)
    }
}

/// A writer's command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Deposit, with a memo of `memo_len` bytes.
    Deposit {
        /// Cents.
        amount: u64,
        /// Memo length in bytes.
        memo_len: u16,
    },
    /// Several deposits in one atomic batch.
    DepositMany {
        /// Cents, one per event.
        amounts: Vec<u64>,
        /// Memo length in bytes, for each.
        memo_len: u16,
    },
    /// Withdraw (at most the balance).
    Withdraw {
        /// Cents.
        amount: u64,
    },
    /// Deposit in the old schema version 1.
    LegacyDeposit {
        /// Cents.
        amount: u32,
    },
    /// Append a note to the audit stream with no expected version.
    Audit {
        /// Note length in bytes.
        note_len: u16,
    },
    /// Append `count` notes to the audit stream at once (concurrent appends, one batch each).
    AuditBurst {
        /// How many appends.
        count: u8,
        /// Note length in bytes, for each.
        note_len: u16,
    },
    /// Only load the account (and check it).
    Load,
}

/// One writer operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterOp {
    /// Pause before it, in ms.
    pub think_ms: u64,
    /// The account (an index into the account streams).
    pub stream: u8,
    /// Reload the account before deciding (else decide on the cached state, which may be
    /// stale and then conflicts).
    pub reload: bool,
    /// What to do.
    pub command: Command,
}

/// What the reader reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReaderRead {
    /// A whole stream (an account, or the audit stream).
    Stream {
        /// The stream index.
        stream: u8,
    },
    /// The log from a position.
    All {
        /// The first position.
        from_position: u64,
    },
}

/// One reader operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReaderOp {
    /// Pause before it, in ms.
    pub think_ms: u64,
    /// What to read.
    pub read: ReaderRead,
}

/// The crash of the healed store under load that ends every run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalCrash {
    /// Audit notes appended at once just before the crash.
    pub burst: u8,
    /// Their length in bytes.
    pub note_len: u16,
    /// When the store crashes after the burst starts, in ms.
    pub delay_ms: u64,
}

/// The workload: each writer's operations and the reader's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// Per writer.
    pub writers: Vec<Vec<WriterOp>>,
    /// The reader's.
    pub reader: Vec<ReaderOp>,
    /// The final crash.
    pub final_crash: FinalCrash,
}

/// The `event-sourcing` scenario.
#[derive(Clone, Debug, Default)]
pub struct EventSourcing;

fn invariants() -> Vec<InvariantSpec> {
    vec![
        InvariantSpec::always(REPLAY_EQUALS_LIVE, "a writer's live state equals the replay of its stream up to that version, and its snapshot plus the tail equals the full replay (also after the final restart)"),
        InvariantSpec::always(oracle::ACKED_SURVIVE, "every acknowledged (or once served) event keeps its position and version through every crash, and every later read reaches it"),
        InvariantSpec::always(oracle::VERSIONS_GAPLESS, "reads return gapless, unique versions and positions; no phantom event, no partial batch"),
        InvariantSpec::always(oracle::LINEARIZABLE, "appends with expected versions and stream reads are linearizable per stream (EventLog model; indeterminate appends allowed; the checker's unknown is counted as a pass)"),
        InvariantSpec::always(oracle::IDEMPOTENT, "a retried append with the same event ids never duplicates events, also across restarts, and is never refused while its events are stored"),
        InvariantSpec::always(oracle::CORRUPTION_DETECTED, "every event served carries exactly the stream and data submitted under its id"),
        InvariantSpec::eventually(AVAILABLE_AFTER_HEAL, "within 3 s of healing, an append and a full read succeed and the subscriber has every event; within 3 s of the final crash's restart, a full read succeeds. A store that refuses with a corrupt-log error passes when a corruption episode hit it: a single store cannot survive corruption of its synced log"),
        InvariantSpec::sometimes("recovered-torn-tail", "recovery truncated a torn tail"),
        InvariantSpec::sometimes("group-commit", "one commit made more than one append durable"),
        InvariantSpec::sometimes("wrong-expected-version", "an append was refused for its expected version"),
        InvariantSpec::sometimes("idempotent-retry", "a retry was answered with the earlier append's result"),
        InvariantSpec::sometimes("io-error-restart", "a disk error halted the store and it restarted from its files"),
        InvariantSpec::sometimes("corruption-refused", "the store detected corruption of its synced log and refused to serve"),
    ]
}

fn mutants() -> Vec<MutantSpec> {
    Mutant::all()
        .iter()
        .map(|mutant| MutantSpec::new(mutant.as_str(), mutant.description()))
        .collect()
}

fn budget() -> FaultBudget {
    let kinds = FaultKind::all_except(&[FaultKind::Buggify]);
    FaultBudget {
        kinds,
        targets: vec![STORE.into(), WRITERS[0].into(), READER.into()],
        crash_targets: vec![STORE.into()],
        down_max: 1,
        episodes_max: 8,
        plan_duration_ms: 3_000,
        episode_duration_max_ms: 1_000,
    }
}

fn sim_config() -> SimConfig {
    // A real disk takes time: without latency every operation would complete at once and no
    // two appends would ever share a commit.
    let faults = DiskFaults {
        latency: Some(Latency {
            min_ms: 1,
            max_ms: 6,
        }),
        ..DiskFaults::default()
    };
    SimConfig {
        time_limit_ms: 120_000,
        disk: DiskConfig {
            faults,
            ..DiskConfig::default()
        },
        ..SimConfig::default()
    }
}

impl Scenario for EventSourcing {
    type Workload = Workload;

    fn spec(&self) -> ScenarioSpec {
        let mut nodes = vec![STORE.to_string()];
        nodes.extend(WRITERS.iter().map(|name| name.to_string()));
        nodes.push(READER.to_string());
        ScenarioSpec {
            name: "event-sourcing".into(),
            description: "event store on a simulated disk: durable, gapless, idempotent, linearizable appends; replay equals live".into(),
            nodes,
            budget: budget(),
            invariants: invariants(),
            mutants: mutants(),
            sometimes_batch_min: 50,
            sim_config: sim_config(),
        }
    }

    fn workload(&self) -> BoxedStrategy<Workload> {
        let memo_len = prop_oneof![Just(0u16), 0u16..1400];
        let command = prop_oneof![
            4 => (1u64..1000, memo_len.clone())
                .prop_map(|(amount, memo_len)| Command::Deposit { amount, memo_len }),
            2 => (proptest::collection::vec(1u64..500, 2..5), memo_len)
                .prop_map(|(amounts, memo_len)| Command::DepositMany { amounts, memo_len }),
            2 => (1u64..800).prop_map(|amount| Command::Withdraw { amount }),
            1 => (1u32..500).prop_map(|amount| Command::LegacyDeposit { amount }),
            2 => (0u16..900).prop_map(|note_len| Command::Audit { note_len }),
            1 => (2u8..6, 0u16..900)
                .prop_map(|(count, note_len)| Command::AuditBurst { count, note_len }),
            1 => Just(Command::Load),
        ];
        let writer_op = (0u64..40, 0..ACCOUNT_STREAMS, any::<bool>(), command).prop_map(
            |(think_ms, stream, reload, command)| WriterOp {
                think_ms,
                stream,
                reload,
                command,
            },
        );
        let read = prop_oneof![
            (0..=ACCOUNT_STREAMS).prop_map(|stream| ReaderRead::Stream { stream }),
            prop_oneof![Just(0u64), 0u64..60]
                .prop_map(|from_position| ReaderRead::All { from_position }),
        ];
        let reader_op = (10u64..200, read).prop_map(|(think_ms, read)| ReaderOp { think_ms, read });
        let final_crash =
            (1u8..8, 0u16..2000, 1u64..30).prop_map(|(burst, note_len, delay_ms)| FinalCrash {
                burst,
                note_len,
                delay_ms,
            });
        (
            proptest::collection::vec(proptest::collection::vec(writer_op, 8..30), WRITERS.len()),
            proptest::collection::vec(reader_op, 5..20),
            final_crash,
        )
            .prop_map(|(writers, reader, final_crash)| Workload {
                writers,
                reader,
                final_crash,
            })
            .boxed()
    }

    fn run(&self, env: Env<Workload>) -> LocalBoxFuture<'static, Result<(), Violation>> {
        Box::pin(run(env))
    }
}

/// A run's counters, for measuring (they never change a verdict). A passing run notes them in
/// its trace; read them back with [`measurements_of`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measurements {
    /// Commits that made at least one append durable.
    pub commits_with_appends: u64,
    /// Appends those commits made durable.
    pub appends_committed: u64,
    /// The most appends one commit made durable.
    pub appends_per_commit_max: u64,
    /// Linearizability checks run.
    pub linearizability_checks: u64,
    /// Of those, answered "unknown" (the search limit stopped them).
    pub linearizability_unknown: u64,
}

thread_local! {
    // Every run has its own thread (sim-core's runner), so these count exactly one run.
    static MEASUREMENTS: Cell<Measurements> = const { Cell::new(Measurements {
        commits_with_appends: 0,
        appends_committed: 0,
        appends_per_commit_max: 0,
        linearizability_checks: 0,
        linearizability_unknown: 0,
    }) };
}

/// The trace note that carries a run's measurements.
const MEASUREMENTS_NOTE: &str = "event-sourcing measurements: ";

fn note_measurements() {
    let measurements = MEASUREMENTS.with(Cell::get);
    let json = serde_json::to_string(&measurements).expect("plain counters serialize");
    sim_core::trace::note("measurements", format!("{MEASUREMENTS_NOTE}{json}"));
}

/// The measurements a passing run noted in its trace (run it with the trace kept).
pub fn measurements_of(timeline: &sim_core::trace::Timeline) -> Option<Measurements> {
    timeline.events.iter().find_map(|event| match &event.event {
        sim_core::trace::Event::Note { text, .. } => text
            .strip_prefix(MEASUREMENTS_NOTE)
            .and_then(|json| serde_json::from_str(json).ok()),
        _ => None,
    })
}

fn measure(change: impl FnOnce(&mut Measurements)) {
    MEASUREMENTS.with(|cell| {
        let mut measurements = cell.get();
        change(&mut measurements);
        cell.set(measurements);
    });
}

/// The store node's hook: sometimes-invariants and measurements (coverage only: no check
/// trusts what the store says about itself).
fn node_hook(observer: Observer) -> NodeHook {
    Arc::new(move |event: &NodeEvent| match event {
        NodeEvent::Opened { report } if report.torn_tail.is_some() => {
            observer.sometimes("recovered-torn-tail");
        }
        NodeEvent::Halted { .. } => observer.sometimes("io-error-restart"),
        NodeEvent::RefusedCorrupt { .. } => observer.sometimes("corruption-refused"),
        NodeEvent::Committed { appends, .. } if *appends > 0 => {
            if *appends > 1 {
                observer.sometimes("group-commit");
            }
            measure(|m| {
                m.commits_with_appends += 1;
                m.appends_committed += appends;
                m.appends_per_commit_max = m.appends_per_commit_max.max(*appends);
            });
        }
        NodeEvent::RetryRecognized => observer.sometimes("idempotent-retry"),
        _ => {}
    })
}

fn mutants_of(env: &Env<Workload>) -> Mutants {
    match env.mutant() {
        None => Mutants::none(),
        Some(name) => {
            // The harness checked the name against the spec, which lists exactly these.
            let mutant: Mutant = name.parse().expect("a mutant of the spec");
            Mutants::only(mutant)
        }
    }
}

async fn run(env: Env<Workload>) -> Result<(), Violation> {
    let result = run_phases(env).await;
    note_measurements();
    result
}

/// The nodes of a run.
struct Nodes {
    store: NodeId,
    writers: Vec<NodeId>,
    reader: NodeId,
}

fn build_nodes(env: &Env<Workload>, mutants: &Mutants) -> Nodes {
    let config = NodeConfig {
        store: StoreConfig {
            mutants: mutants.clone(),
            ..StoreConfig::default()
        },
        ..NodeConfig::default()
    };
    let hook = node_hook(env.observer());
    let store = env
        .sim
        .node(STORE)
        .init(move || run_node(config.clone(), hook.clone()))
        .build();
    let writers = WRITERS
        .iter()
        .map(|name| env.sim.node(*name).build())
        .collect();
    let reader = env.sim.node(READER).build();
    Nodes {
        store,
        writers,
        reader,
    }
}

/// Runs the writers and the reader to the end of their operations.
async fn run_clients(env: &Env<Workload>, ctx: &Rc<Ctx>, nodes: &Nodes) {
    let mut running = Vec::new();
    for ((node, ops), index) in nodes.writers.iter().zip(&env.workload.writers).zip(1u64..) {
        let (ctx, ops) = (ctx.clone(), ops.clone());
        running.push(env.sim.spawn_on(*node, async move {
            clients::Writer::new(&ctx, index).run(ops).await;
        }));
    }
    let (reader_ctx, reader_ops) = (ctx.clone(), env.workload.reader.clone());
    let reader_id = WRITERS.len() as u64 + 1;
    running.push(env.sim.spawn_on(nodes.reader, async move {
        clients::reader(&reader_ctx, reader_id, reader_ops).await;
    }));
    for client in running {
        // Clients never crash; a client task ends when its operations are done.
        let _ = client.await;
    }
}

async fn run_phases(env: Env<Workload>) -> Result<(), Violation> {
    let mutants = mutants_of(&env);
    let nodes = build_nodes(&env, &mutants);
    let ctx = Rc::new(Ctx {
        store: Addr::new(nodes.store, STORE_PORT),
        oracle: RefCell::new(Oracle::new()),
        history: RefCell::new(Default::default()),
        lives: RefCell::new(Vec::new()),
        subscribed: RefCell::new(Vec::new()),
        stop: Cell::new(false),
        mutants,
        observer: env.observer(),
        upcasters: account_upcasters(),
    });
    env.start_faults();
    let subscriber_ctx = ctx.clone();
    let subscription = env.sim.spawn_on(nodes.reader, async move {
        clients::subscriber(&subscriber_ctx).await;
    });
    run_clients(&env, &ctx, &nodes).await;
    let result = after_workload(&env, &ctx, &nodes).await;
    ctx.stop.set(true);
    subscription.abort();
    result
}

/// The linearizability check, then healing and the liveness checks.
async fn after_workload(
    env: &Env<Workload>,
    ctx: &Rc<Ctx>,
    nodes: &Nodes,
) -> Result<(), Violation> {
    check_linearizable(&ctx.history.borrow())?;
    env.heal().await;
    let corrupted = store_corrupted(env);
    let outcome = liveness(env, ctx, nodes.writers[0]).await;
    if let Some(done) = judge(outcome, corrupted, "after healing") {
        return done;
    }
    crash_under_load(env, ctx, nodes.writers[1], nodes.store).await;
    let outcome = final_read(env, ctx, nodes.writers[0]).await;
    judge(outcome, corrupted, "after a restart of the healed store").unwrap_or(Ok(()))
}

/// Whether a corruption episode hit the store.
fn store_corrupted(env: &Env<Workload>) -> bool {
    env.plan()
        .episodes
        .iter()
        .any(|episode| matches!(&episode.fault, Fault::DiskCorrupt { node } if node == STORE))
}

/// Checks a history of appends and stream reads against the `EventLog` model, partitioned by
/// stream; "unknown" (the search limit) passes and is counted.
pub fn check_linearizable(history: &LogHistory) -> Result<(), Violation> {
    let limits = CheckLimits {
        steps_max: 2_000_000,
        memo_entries_max: 200_000,
    };
    measure(|m| m.linearizability_checks += 1);
    match check(&EventLog::new(), history, &limits) {
        CheckResult::Ok => Ok(()),
        CheckResult::Unknown { reason } => {
            // The search limit stopped the check: counted, and taken as a pass.
            measure(|m| m.linearizability_unknown += 1);
            sim_core::trace::note(
                "linearizability-unknown",
                format!("linearizability check gave up: {reason}"),
            );
            Ok(())
        }
        illegal => Err(Violation::new(oracle::LINEARIZABLE, illegal.to_string())),
    }
}

/// How a liveness check ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// The store served within the bound.
    Available,
    /// The store refused with a corrupt-log error.
    RefusedCorrupt(String),
    /// The bound passed; what was still missing.
    Unavailable(String),
    /// A safety invariant broke meanwhile (already reported).
    Broken,
}

/// The verdict of a liveness outcome (`when` says which check, for the message): `None` to go
/// on, `Some(result)` to end the run. A refusal with a corrupt log passes only if `corrupted`
/// (a corruption episode hit the store).
pub fn judge(outcome: Liveness, corrupted: bool, when: &str) -> Option<Result<(), Violation>> {
    match outcome {
        Liveness::Available => None,
        Liveness::Broken => Some(Ok(())),
        Liveness::RefusedCorrupt(_) if corrupted => Some(Ok(())),
        Liveness::RefusedCorrupt(detail) => Some(Err(Violation::new(
            AVAILABLE_AFTER_HEAL,
            format!("{when}, the store refuses with a corrupt log, but no corruption was injected: {detail}"),
        ))),
        Liveness::Unavailable(missing) => Some(Err(Violation::new(
            AVAILABLE_AFTER_HEAL,
            format!("{} {when}: {missing}", humanize(LIVENESS_BOUND)),
        ))),
    }
}

fn humanize(duration: Duration) -> String {
    format!("{} ms", duration.as_millis())
}

/// After healing: a probe append and a full read succeed, and the subscriber catches up.
async fn liveness(env: &Env<Workload>, ctx: &Rc<Ctx>, node: NodeId) -> Liveness {
    let ctx = ctx.clone();
    let task = env.sim.spawn_on(node, async move {
        let client = StoreClient::bind(ctx.store, CALL_TIMEOUT).expect("a client binds a port");
        let deadline = time::now() + LIVENESS_BOUND;
        if let Err(outcome) = probe(&ctx, &client, deadline).await {
            return outcome;
        }
        let end = match read_everything(&ctx, &client, deadline).await {
            Ok(events) => events.len(),
            Err(outcome) => return outcome,
        };
        while time::now() < deadline {
            if ctx.subscribed.borrow().len() >= end {
                return Liveness::Available;
            }
            time::sleep(Duration::from_millis(20)).await;
        }
        let got = ctx.subscribed.borrow().len();
        Liveness::Unavailable(format!("the subscriber has {got} of {end} events"))
    });
    // A task that ended without an answer (cancelled, its node gone) proved nothing: that is
    // unavailability, never a pass.
    task.await.unwrap_or_else(|_| {
        Liveness::Unavailable("the liveness task ended without an answer".into())
    })
}

/// Appends a probe event until it is acknowledged.
async fn probe(
    ctx: &Ctx,
    client: &StoreClient,
    deadline: sim_core::time::Instant,
) -> Result<(), Liveness> {
    let probe = AppendRequest {
        stream: PROBE_STREAM.into(),
        expected: ExpectedVersion::Any,
        events: vec![EventData {
            event_id: EventId(u128::MAX),
            event_type: "probe".into(),
            schema_version: 1,
            payload: Vec::new(),
        }],
    };
    ctx.oracle.borrow_mut().submit(&probe);
    let mut last = String::from("no attempt");
    while time::now() < deadline {
        match client.append(&probe).await {
            Ok(Ok(appended)) => {
                let acked = ctx.oracle.borrow_mut().acked(&probe, &appended, true_ns());
                return if report(acked) {
                    Ok(())
                } else {
                    Err(Liveness::Broken)
                };
            }
            Err(CallError::Refused(Refusal::CorruptLog { detail })) => {
                return Err(Liveness::RefusedCorrupt(detail));
            }
            Ok(Err(error)) => last = error.to_string(),
            Err(error) => last = error.to_string(),
        }
        time::sleep(Duration::from_millis(20)).await;
    }
    Err(Liveness::Unavailable(format!(
        "the probe append failed: {last}"
    )))
}

/// Reads the whole log until a read succeeds; checks it with the oracle.
async fn read_everything(
    ctx: &Ctx,
    client: &StoreClient,
    deadline: sim_core::time::Instant,
) -> Result<Vec<patterns::event_sourcing::event::RecordedEvent>, Liveness> {
    let mut last = String::from("no attempt");
    while time::now() < deadline {
        let invoked = true_ns();
        match client.read_all(0, READ_COUNT_MAX).await {
            Ok(Ok(events)) => {
                let kind = ReadKind::All { from_position: 0 };
                if !report(ctx.observe(kind, &events, invoked, true_ns())) {
                    return Err(Liveness::Broken);
                }
                return Ok(events);
            }
            Err(CallError::Refused(Refusal::CorruptLog { detail })) => {
                return Err(Liveness::RefusedCorrupt(detail));
            }
            Ok(Err(error)) => last = error.to_string(),
            Err(error) => last = error.to_string(),
        }
        time::sleep(Duration::from_millis(20)).await;
    }
    Err(Liveness::Unavailable(format!(
        "no full read succeeded: {last}"
    )))
}

/// Crashes the healed store while a burst of appends is in flight, restarts it, and waits
/// until the burst's appends are settled (they retry across the restart).
async fn crash_under_load(env: &Env<Workload>, ctx: &Rc<Ctx>, node: NodeId, store: NodeId) {
    let crash = env.workload.final_crash.clone();
    let burst_ctx = ctx.clone();
    let burst = env.sim.spawn_on(node, async move {
        let writer_index = WRITERS.len() as u64 + 2;
        let mut writer = clients::Writer::new(&burst_ctx, writer_index);
        report(writer.burst(crash.burst, crash.note_len).await);
    });
    env.sim.sleep(Duration::from_millis(crash.delay_ms)).await;
    env.sim.restart(store);
    let _ = burst.await;
}

/// After a restart of the healed store: a full read holds everything, and every writer's live
/// state equals the replay of its stream.
async fn final_read(env: &Env<Workload>, ctx: &Rc<Ctx>, node: NodeId) -> Liveness {
    let ctx = ctx.clone();
    let task = env.sim.spawn_on(node, async move {
        let client = StoreClient::bind(ctx.store, CALL_TIMEOUT).expect("a client binds a port");
        let deadline = time::now() + LIVENESS_BOUND;
        let events = match read_everything(&ctx, &client, deadline).await {
            Ok(events) => events,
            Err(outcome) => return outcome,
        };
        for (stream, live) in ctx.lives.borrow().iter() {
            let of_stream: Vec<_> = events
                .iter()
                .filter(|e| e.stream == *stream)
                .cloned()
                .collect();
            if !report(clients::check_live(
                stream,
                live,
                &of_stream,
                &ctx.upcasters,
            )) {
                return Liveness::Broken;
            }
        }
        Liveness::Available
    });
    // A task that ended without an answer (cancelled, its node gone) proved nothing: that is
    // unavailability, never a pass.
    task.await.unwrap_or_else(|_| {
        Liveness::Unavailable("the liveness task ended without an answer".into())
    })
}
