//! # A primary-backup replicated register, simulation-tested
//!
//! The example of how a project puts its own system under the harness, using only the public
//! APIs of `sim-core` and `harness`.
//!
//! ## The system
//! - `primary` serves clients. A write gets the next version, is replicated to `backup` (an
//!   RPC with a timeout), and only then committed and acknowledged; writes are replicated one
//!   at a time. Reads are answered at once with the committed value, also while a write is
//!   being replicated.
//! - `backup` applies replicated writes whose version is newer than its own, and answers
//!   `Fetch` with its state and a new epoch; replicates from an older epoch (a crashed
//!   primary's, still in flight) are fenced off. A primary whose replicate is fenced although
//!   it is alive has met a late `Fetch` of an earlier incarnation (held in the network and
//!   released after it recovered): it fetches again to adopt the newer epoch. A primary whose
//!   replicate timed out fetches too (the backup may or may not hold that write): it serves
//!   what the backup holds.
//! - The primary keeps its state in memory only: when it restarts, it fetches the backup's
//!   state before serving anything. The backup holds every acknowledged write, so nothing
//!   acknowledged is lost. (It may also hold a write whose client got an error: such a write
//!   was indeterminate, and keeping it is allowed.)
//! - The network may deliver a request twice. A write applied twice is not linearizable (a
//!   write of another client in between would be undone, as seed 30993 of a 100,000-seed hunt
//!   showed), so the primary drops a copy of a write it already accepted, known by the
//!   client's socket and call id (clients send one call at a time, with increasing ids). The
//!   table of the last call applied per client travels with the replicated state, so a
//!   successor primary drops copies of its predecessor's writes too.
//! - Fault model (the budget): any network fault on any link, pauses and clock faults
//!   anywhere, `buggify!` sites in the primary (a slow start, a duplicated replicate, a
//!   replicate timeout that fires early), and crashes of the primary only. A crash of the backup would lose the only
//!   other copy: this design survives one crash, not the loss of both copies.
//!
//! ## The checks
//! - `linearizable` (always): the history of client operations (with indeterminate ones: a
//!   timed-out write may or may not have happened) is linearizable against a register model,
//!   checked by the harness's linearizability checker, an oracle independent of the system.
//! - `available-after-heal` (eventually): within 2 s of healing, a client writes a value never
//!   written before and reads it back. Each probe writes a fresh value: a workload write
//!   released by the heal may legally land after a probe's write.
//! - `primary-recovered`, `write-indeterminate` (sometimes): a batch reaches a primary restart
//!   with recovered state, and a write whose outcome the client could not know.
//!
//! ## Mutants
//! - `ack-before-replicate`: the primary acknowledges a write before the backup has it
//!   (asynchronous replication); a crash of the primary then loses acknowledged writes.
//! - `read-from-backup`: reads are balanced over both replicas; the backup may hold a write
//!   the primary has not committed yet, and a later read from the primary returns the older
//!   value.
//! - `no-recovery`: the restarted primary serves from empty state instead of fetching the
//!   backup's.
//! - `epoch-churn`: the backup opens a new epoch on every `Fetch`, retries and duplicates
//!   included, and a fenced primary never fetches again: a `Fetch` whose answer is lost, or a
//!   late or duplicated one, fences the live primary for good (`available-after-heal` catches
//!   it). The unmutated register
//!   had a rarer form of this bug (seed 11159 of a 20,000-seed hunt; its case is kept in
//!   `corpus/register/` as a regression that must pass).

use harness::history::History;
use harness::linearizability::models::{Register as RegisterModel, RegisterInput, RegisterOutput};
use harness::{
    Checked, Env, FaultBudget, FaultKind, Invariant, MutantSpec, Observer, Scenario, ScenarioSpec,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use sim_core::net::{Addr, Socket};
use sim_core::{time, NodeId, SimConfig};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// Client reads and writes are linearizable.
pub static LINEARIZABLE: Invariant = Invariant::always(
    "linearizable",
    "client reads and writes are linearizable (register model, indeterminate writes allowed); checked over the whole history when the clients finish",
);
/// After healing, the register serves again.
pub static AVAILABLE_AFTER_HEAL: Invariant = Invariant::eventually(
    "available-after-heal",
    "within 2 s of healing, a client writes a fresh value and then reads it back",
    Duration::from_secs(2),
);
/// A batch reaches a primary restart with recovered state.
pub static PRIMARY_RECOVERED: Invariant = Invariant::sometimes(
    "primary-recovered",
    "the primary restarted and recovered a written state",
);
/// A batch reaches a write whose outcome its client could not know.
pub static WRITE_INDETERMINATE: Invariant = Invariant::sometimes(
    "write-indeterminate",
    "a client could not learn whether its write happened",
);

/// The port every register node listens on.
const PORT: u16 = 7;
/// How long the primary waits for the backup.
const REPLICATE_TIMEOUT: Duration = Duration::from_millis(100);
/// How long a client waits for an answer.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(300);

/// Client requests.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum ClientRequest {
    Write(u64),
    Read,
}

/// Answers to clients.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum ClientResponse {
    WriteOk,
    ReadOk(u64),
    /// The write may or may not have happened (replication failed or the node is recovering).
    Unavailable,
}

/// Requests between the two replicas.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum PeerRequest {
    /// Apply `value` at `version`, sent by the primary of `epoch`, for the client write
    /// `write` (its socket and call id: the dedup table travels with the state).
    Replicate {
        epoch: u64,
        version: u64,
        value: u64,
        write: (Addr, u64),
    },
    /// A (re)starting primary asks for the state and a new epoch. `incarnation` is drawn by
    /// each primary incarnation, so that retried or duplicated fetches of one incarnation get
    /// the same epoch.
    Fetch { incarnation: u64 },
}

/// Answers between the two replicas.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum PeerResponse {
    Ack,
    /// The replicate came from an older primary incarnation: not applied.
    Fenced,
    State {
        epoch: u64,
        version: u64,
        value: u64,
        /// Per client socket, the highest call id of its writes applied.
        applied: Writes,
    },
}

/// Per client socket, the highest call id of a write accepted or applied: the network may
/// deliver a request twice, and a write that takes effect twice is not linearizable (a later
/// write in between would be undone), so a copy of an older call is dropped. The backup keeps
/// the table with the value, so a successor primary drops copies of its predecessor's writes
/// too. Clients send one call at a time, with increasing call ids.
type Writes = BTreeMap<Addr, u64>;

/// Every request a replica receives.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Request {
    Client(ClientRequest),
    Peer(PeerRequest),
}

/// One client operation of the workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Write this value.
    Write(u64),
    /// Read.
    Read,
}

/// The workload: for each client, its operations with the pause before each, in ms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// Per client: (think time in ms, operation).
    pub clients: Vec<Vec<(u64, Op)>>,
}

/// The register scenario.
#[derive(Clone, Debug, Default)]
pub struct Register;

/// Node names.
const PRIMARY: &str = "primary";
const BACKUP: &str = "backup";
const CLIENTS: [&str; 3] = ["client-1", "client-2", "client-3"];

impl Scenario for Register {
    type Workload = Workload;
    type System = System;

    fn spec(&self) -> ScenarioSpec {
        let mut nodes = vec![PRIMARY.to_string(), BACKUP.to_string()];
        nodes.extend(CLIENTS.iter().map(|c| c.to_string()));
        // Every kind but the disk's (the register keeps its state in memory).
        let kinds = FaultKind::all_except(&[FaultKind::Disk, FaultKind::Corrupt]);
        ScenarioSpec {
            name: "register".into(),
            description: "primary-backup replicated register: linearizable under faults".into(),
            nodes,
            budget: FaultBudget {
                kinds,
                targets: vec![PRIMARY.into(), BACKUP.into(), CLIENTS[0].into()],
                crash_targets: vec![PRIMARY.into()],
                disk_targets: Vec::new(),
                down_max: 1,
                episodes_max: 6,
                plan_duration_ms: 3_000,
                episode_duration_max_ms: 1_000,
            },
            invariants: vec![
                LINEARIZABLE,
                AVAILABLE_AFTER_HEAL,
                PRIMARY_RECOVERED,
                WRITE_INDETERMINATE,
            ],
            mutants: vec![
                MutantSpec::new(
                    "ack-before-replicate",
                    "acknowledges a write before the backup has it: asynchronous replication loses acknowledged writes on failover (the classic primary-backup bug)",
                ),
                MutantSpec::new(
                    "read-from-backup",
                    "balances reads over both replicas; the backup applies a write before the primary commits it, so a read can see a value that a later read from the primary does not (reading from followers without a read barrier)",
                ),
                MutantSpec::new(
                    "no-recovery",
                    "a restarted primary serves from empty state instead of recovering the backup's",
                ),
                MutantSpec::new(
                    "epoch-churn",
                    "the backup opens a new epoch on every Fetch (retries and duplicates too) and a fenced primary never fetches again: one late Fetch fences the live primary for good (the epoch churn a 50,000-seed hunt found)",
                ),
            ],
            // Measured (`dst sometimes register --seeds 20000`): every window of 70 seeds reaches
            // both sometimes-invariants (`primary-recovered` is the rarer). Rounded up for margin.
            sometimes_batch_min: 100,
            sim_config: SimConfig {
                time_limit_ms: 120_000,
                ..SimConfig::default()
            },
        }
    }

    fn workload(&self) -> BoxedStrategy<Workload> {
        let op = prop_oneof![(1u64..1000).prop_map(Op::Write), Just(Op::Read)];
        let client = proptest::collection::vec((0u64..200, op), 5..25);
        proptest::collection::vec(client, CLIENTS.len())
            .prop_map(|clients| Workload { clients })
            .boxed()
    }

    fn validate_workload(&self, workload: &Workload) -> Result<(), String> {
        if workload.clients.len() != CLIENTS.len() {
            return Err(format!(
                "the workload has {} clients; the scenario has {}",
                workload.clients.len(),
                CLIENTS.len()
            ));
        }
        Ok(())
    }

    fn setup(&self, env: &Env, _: &Workload) -> System {
        let mutants = Mutants::of(env);
        let observer = env.observer();
        let backup = env
            .sim
            .node(BACKUP)
            .init(move || backup_main(mutants))
            .build();
        let primary = env
            .sim
            .node(PRIMARY)
            .init(move || primary_main(backup, mutants, observer.clone()))
            .build();
        let clients = CLIENTS
            .iter()
            .map(|name| env.sim.node(*name).build())
            .collect();
        System {
            primary,
            backup,
            clients,
            mutants,
            history: Rc::default(),
        }
    }

    async fn drive(&self, env: &Env, system: &System, workload: Workload) -> Checked {
        let mut running = Vec::new();
        for (index, ops) in workload.clients.into_iter().enumerate() {
            let ctx = ClientCtx {
                client: index as u64,
                primary: system.primary,
                backup: system.backup,
                mutants: system.mutants,
                history: system.history.clone(),
                observer: env.observer(),
            };
            running.push(
                env.sim
                    .spawn_on(system.clients[index], client_main(ctx, ops)),
            );
        }
        for client in running {
            // A client task ends when its operations are done (clients never crash).
            let _ = client.await;
        }
        Ok(())
    }

    async fn check(&self, env: &Env, system: &System) -> Checked {
        env.linearizable(
            &LINEARIZABLE,
            &RegisterModel::new(0u64),
            &system.history.borrow(),
        )
    }

    async fn after_heal(&self, env: &Env, system: &System) -> Checked {
        // Each probe writes a value never written before and reads until it sees it: a write of
        // the workload released late by the heal may legally land after the probe's write, and
        // the next probe's fresh value then decides.
        let attempt = Cell::new(0u64);
        env.eventually(&AVAILABLE_AFTER_HEAL, || {
            attempt.set(attempt.get() + 1);
            probe(env, system, PROBE_VALUE_FIRST + attempt.get())
        })
        .await
    }
}

/// Values the liveness probes write: above any the workload writes.
const PROBE_VALUE_FIRST: u64 = 1_000_000;

/// What `setup` builds: the nodes and the client history.
pub struct System {
    primary: NodeId,
    backup: NodeId,
    clients: Vec<NodeId>,
    mutants: Mutants,
    /// The record of client operations: the checker's, not the system's.
    history: Rc<RefCell<RegisterHistory>>,
}

type RegisterHistory = History<RegisterInput<u64>, RegisterOutput<u64>>;

/// One liveness probe from the first client: write `value`, then read until the read sees it.
async fn probe(env: &Env, system: &System, value: u64) -> Result<(), String> {
    let primary = system.primary;
    let attempt = env.sim.spawn_on(system.clients[0], async move {
        let socket = Socket::bind(0).expect("a client binds an ephemeral port");
        let to = Addr::new(primary, PORT);
        let write = Request::Client(ClientRequest::Write(value));
        match socket.call(to, &write, CLIENT_TIMEOUT).await {
            Ok(ClientResponse::WriteOk) => {}
            other => return Err(format!("write of {value}: {other:?}")),
        }
        let read = Request::Client(ClientRequest::Read);
        match socket.call(to, &read, CLIENT_TIMEOUT).await {
            Ok(ClientResponse::ReadOk(seen)) if seen == value => Ok(()),
            other => Err(format!("wrote {value}, then read {other:?}")),
        }
    });
    attempt
        .await
        .unwrap_or_else(|_| Err("the probing client's task ended".into()))
}

/// The mutants that change the nodes' code.
#[derive(Clone, Copy, Debug, Default)]
struct Mutants {
    ack_before_replicate: bool,
    read_from_backup: bool,
    no_recovery: bool,
    epoch_churn: bool,
}

impl Mutants {
    fn of(env: &Env) -> Self {
        Mutants {
            ack_before_replicate: env.is_mutant("ack-before-replicate"),
            read_from_backup: env.is_mutant("read-from-backup"),
            no_recovery: env.is_mutant("no-recovery"),
            epoch_churn: env.is_mutant("epoch-churn"),
        }
    }
}

/// Writes waiting for the primary's writer, at most.
const WRITES_QUEUED_MAX: usize = 64;

/// The primary's program: a receiver that answers reads at once from the committed value, and
/// a writer that replicates writes one at a time.
async fn primary_main(backup: NodeId, mutants: Mutants, observer: Observer) {
    let socket = Rc::new(Socket::bind(PORT).expect("the primary binds its port"));
    let backup = Addr::new(backup, PORT);
    let (mut epoch, mut version) = (0, 0);
    let incarnation = rand::RngCore::next_u64(&mut sim_core::rng::stream("register/primary"));
    let committed = Rc::new(Cell::new(0u64));
    let accepted: Rc<RefCell<Writes>> = Rc::default();
    if !mutants.no_recovery {
        if sim_core::buggify!() {
            // A slow start: clients meet a primary that does not answer yet.
            time::sleep(Duration::from_millis(200)).await;
        }
        // Recover: the backup holds every acknowledged write.
        loop {
            let fetch = Request::Peer(PeerRequest::Fetch { incarnation });
            let fetched = socket.call(backup, &fetch, REPLICATE_TIMEOUT).await;
            if let Ok(PeerResponse::State {
                epoch: e,
                version: v,
                value,
                applied,
            }) = fetched
            {
                (epoch, version) = (e, v);
                committed.set(value);
                *accepted.borrow_mut() = applied;
                tracing::info!(
                    epoch,
                    version,
                    value,
                    "primary recovered the backup's state"
                );
                break;
            }
            time::sleep(Duration::from_millis(10)).await;
        }
        if version > 0 {
            observer.reached(&PRIMARY_RECOVERED);
        }
    }
    let (queue, writes) = futures::channel::mpsc::channel(WRITES_QUEUED_MAX);
    let start = (epoch, version);
    sim_core::task::spawn(writer(
        socket.clone(),
        backup,
        (incarnation, start),
        (committed.clone(), accepted.clone()),
        writes,
        mutants,
    ));
    let mut queue = queue;
    loop {
        let Ok((request, body)) = socket.recv_request::<Request>().await else {
            return;
        };
        match body {
            Request::Client(ClientRequest::Read) => {
                let _ = socket.reply(request, &ClientResponse::ReadOk(committed.get()));
            }
            Request::Client(ClientRequest::Write(value)) => {
                let (from, call) = (request.from(), request.call_id());
                if accepted
                    .borrow()
                    .get(&from)
                    .is_some_and(|&last| call <= last)
                {
                    tracing::debug!(%from, call, "primary dropped a copy of an earlier write");
                    continue;
                }
                accepted.borrow_mut().insert(from, call);
                if let Err(full) = queue.try_send((request, value)) {
                    let (request, _) = full.into_inner();
                    let _ = socket.reply(request, &ClientResponse::Unavailable);
                }
            }
            Request::Peer(_) => {}
        }
    }
}

/// The primary's writer: replicate, then commit and acknowledge, one write at a time.
async fn writer(
    socket: Rc<Socket>,
    backup: Addr,
    (incarnation, (mut epoch, version)): (u64, (u64, u64)),
    (committed, accepted): (Rc<Cell<u64>>, Rc<RefCell<Writes>>),
    mut writes: futures::channel::mpsc::Receiver<(sim_core::net::Request, u64)>,
    mutants: Mutants,
) {
    use futures::StreamExt;
    // The last version sent to the backup: never reused, even when replication failed.
    let mut attempted = version;
    while let Some((request, value)) = writes.next().await {
        attempted += 1;
        let replicate = Request::Peer(PeerRequest::Replicate {
            epoch,
            version: attempted,
            value,
            write: (request.from(), request.call_id()),
        });
        let response = if mutants.ack_before_replicate {
            let _ = socket.send(backup, &replicate);
            committed.set(value);
            ClientResponse::WriteOk
        } else {
            if sim_core::buggify!() {
                // A duplicate delivery (a retransmission whose first copy arrived).
                let _ = socket.send(backup, &replicate);
            }
            // A timeout that fires early: the write may still land on the backup.
            let timeout = if sim_core::buggify!() {
                REPLICATE_TIMEOUT / 8
            } else {
                REPLICATE_TIMEOUT
            };
            let ack = socket.call::<_, PeerResponse>(backup, &replicate, timeout);
            match ack.await {
                Ok(PeerResponse::Ack) => {
                    committed.set(value);
                    tracing::debug!(version = attempted, value, "write committed");
                    ClientResponse::WriteOk
                }
                Ok(PeerResponse::Fenced) if !mutants.epoch_churn => {
                    tracing::info!(epoch, "replicate fenced: the backup has a newer epoch");
                    // The backup opened a newer epoch than ours. Only this incarnation is
                    // alive, so the Fetch that opened it was a stale message of an earlier
                    // one (held in the network and released late): fetch again to adopt the
                    // backup's epoch and state, which hold every acknowledged write. Without
                    // this, one late Fetch fences the live primary for good.
                    resync(
                        &socket,
                        backup,
                        incarnation,
                        (&mut epoch, &mut attempted),
                        (&committed, &accepted),
                    )
                    .await;
                    ClientResponse::Unavailable
                }
                Ok(PeerResponse::Fenced) => ClientResponse::Unavailable,
                _ => {
                    // The replicate timed out: the backup may or may not hold the write. Ask
                    // it, so that what this primary serves catches up with what the backup
                    // will hand a successor (the client was told nothing either way).
                    resync(
                        &socket,
                        backup,
                        incarnation,
                        (&mut epoch, &mut attempted),
                        (&committed, &accepted),
                    )
                    .await;
                    ClientResponse::Unavailable
                }
            }
        };
        let _ = socket.reply(request, &response);
    }
}

/// Fetches the backup's state and adopts its epoch, version and value. The backup's value is
/// at least as new as the committed one (it holds everything this primary committed); a newer
/// one is a write whose client got no answer. A fetch that fails changes nothing.
async fn resync(
    socket: &Socket,
    backup: Addr,
    incarnation: u64,
    (epoch, attempted): (&mut u64, &mut u64),
    (committed, accepted): (&Cell<u64>, &RefCell<Writes>),
) {
    let fetch = Request::Peer(PeerRequest::Fetch { incarnation });
    if let Ok(PeerResponse::State {
        epoch: e,
        version: v,
        value: x,
        applied,
    }) = socket.call(backup, &fetch, REPLICATE_TIMEOUT).await
    {
        *epoch = e;
        *attempted = (*attempted).max(v);
        committed.set(x);
        let mut accepted = accepted.borrow_mut();
        for (client, call) in applied {
            let last = accepted.entry(client).or_default();
            *last = (*last).max(call);
        }
        tracing::info!(epoch = e, version = v, "primary adopted the backup's state");
    }
}

/// The backup's program.
///
/// Every new primary incarnation's `Fetch` opens a new epoch (a retried or duplicated fetch of
/// the same incarnation does not); replicates of older epochs are fenced off. Without the fence, a replicate that a crashed primary sent before the crash can arrive
/// after its successor has already reused that version, and an acknowledged write would later
/// be recovered as the old value.
async fn backup_main(mutants: Mutants) {
    let socket = Socket::bind(PORT).expect("the backup binds its port");
    let (mut epoch, mut version, mut value) = (0u64, 0u64, 0u64);
    let mut applied = Writes::new();
    let mut fetched_by = None;
    loop {
        let Ok((request, body)) = socket.recv_request::<Request>().await else {
            return;
        };
        match body {
            Request::Peer(PeerRequest::Replicate {
                epoch: e,
                version: v,
                value: x,
                write: (client, call),
            }) => {
                if e < epoch {
                    tracing::info!(stale = e, epoch, version = v, "backup fenced a replicate");
                    let _ = socket.reply(request, &PeerResponse::Fenced);
                    continue;
                }
                if v > version {
                    (version, value) = (v, x);
                    let last = applied.entry(client).or_default();
                    *last = (*last).max(call);
                }
                let _ = socket.reply(request, &PeerResponse::Ack);
            }
            Request::Peer(PeerRequest::Fetch { incarnation }) => {
                if fetched_by != Some(incarnation) || mutants.epoch_churn {
                    fetched_by = Some(incarnation);
                    epoch += 1;
                    tracing::info!(
                        epoch,
                        version,
                        "backup opened a new epoch for a fetching primary"
                    );
                }
                let state = PeerResponse::State {
                    epoch,
                    version,
                    value,
                    applied: applied.clone(),
                };
                let _ = socket.reply(request, &state);
            }
            // Only the read-from-backup mutant sends client reads here.
            Request::Client(ClientRequest::Read) => {
                let _ = socket.reply(request, &ClientResponse::ReadOk(value));
            }
            Request::Client(ClientRequest::Write(_)) => {
                let _ = socket.reply(request, &ClientResponse::Unavailable);
            }
        }
    }
}

struct ClientCtx {
    client: u64,
    primary: NodeId,
    backup: NodeId,
    mutants: Mutants,
    history: Rc<RefCell<RegisterHistory>>,
    observer: Observer,
}

/// A client: runs its operations one after another and records them in the history, with
/// true times (the history is the checker's, not the system's).
async fn client_main(ctx: ClientCtx, ops: Vec<(u64, Op)>) {
    let socket = Socket::bind(0).expect("a client binds an ephemeral port");
    let mut reads = 0u64;
    for (think_ms, op) in ops {
        time::sleep(Duration::from_millis(think_ms.max(1))).await;
        let (input, request, target) = match op {
            Op::Write(value) => (
                RegisterInput::Write(value),
                ClientRequest::Write(value),
                ctx.primary,
            ),
            Op::Read => {
                // The mutant balances reads over both replicas.
                reads += 1;
                let target = if ctx.mutants.read_from_backup && reads.is_multiple_of(2) {
                    ctx.backup
                } else {
                    ctx.primary
                };
                (RegisterInput::Read, ClientRequest::Read, target)
            }
        };
        let now = || time::true_now().as_nanos() as u64;
        let invoked = ctx.history.borrow_mut().invoke(ctx.client, input, now());
        let Ok(id) = invoked else {
            // The history is full: it counts what it refused, and the check is inconclusive.
            return;
        };
        let answer = socket
            .call::<_, ClientResponse>(
                Addr::new(target, PORT),
                &Request::Client(request),
                CLIENT_TIMEOUT,
            )
            .await;
        let output = match answer {
            Ok(ClientResponse::WriteOk) => Some(RegisterOutput::WriteOk),
            Ok(ClientResponse::ReadOk(value)) => Some(RegisterOutput::ReadOk(value)),
            Ok(ClientResponse::Unavailable) | Err(_) => None,
        };
        let mut history = ctx.history.borrow_mut();
        match output {
            Some(output) => {
                let _ = history.complete(id, output, now());
            }
            None => {
                if matches!(op, Op::Write(_)) {
                    ctx.observer.reached(&WRITE_INDETERMINATE);
                }
                // No answer: the operation may or may not have happened.
                let _ = history.mark_indeterminate(id);
            }
        }
    }
}
