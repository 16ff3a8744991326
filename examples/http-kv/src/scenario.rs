//! The `http-kv` scenario: the service of [`crate::service`] under faults, judged from what
//! its HTTP clients saw.
//!
//! ## The run
//! `primary` and `backup` run [`serve`] unchanged; three clients (`client-1` .. `client-3`)
//! issue `GET` and `PUT` on three keys with hyper's client ([`KvClient`]), each write a value
//! never written before, and fail over to the other node when an operation fails. Fault model
//! (the budget): every network fault on every link, pauses and clock faults anywhere, crashes
//! of either server (one down at a time) and disk faults on both (I/O errors, fsync failures,
//! full disks, latency; crashes lose, tear and reorder unsynced writes). Not corruption: the
//! state file has no checksum, so a flipped bit in a stored value would be a value nobody
//! wrote.
//!
//! ## The checks
//! - `linearizable` (always): the clients' history (an operation without an answer is
//!   indeterminate) against a key-value model, by the linearizability checker; checked when
//!   the clients finish, and again after the heal with a final read of every key added, so
//!   that an acknowledged write lost late in the run shows too.
//! - `available-after-heal` (eventually, 3 s): a client writes a fresh value and reads it
//!   back, from whichever node serves.
//! - `failed-over`, `reloaded` (sometimes): a client was served by the backup; a client read
//!   an acknowledged value from a later boot of the node that acknowledged it (it came back
//!   from the disk).
//!
//! ## Mutants
//! - `replication-optional`: the primary goes on alone when the backup does not answer
//!   (acknowledges writes it could not replicate, answers reads without asking whether the
//!   backup took over). A partition between the two, long enough for the backup to take
//!   over, shows the backup serving without writes the primary acknowledged.
//! - `ack-before-fsync`: saves skip fsync (file and directory); a crash of a node loses
//!   acknowledged writes, and after its restart a read returns an older value.
//! - `listen-only-on-first-boot`: a restarted node starts its background duties but not its
//!   listener. After a crash of either node the pair serves no client again, which
//!   `available-after-heal` judges.

use crate::client::{KvClient, Served};
use crate::service::{serve, Bugs, Config, Role, PORT};
use harness::history::History;
use harness::linearizability::models::{KeyValue, KvInput, KvOutput};
use harness::{
    Checked, Env, FaultBudget, FaultKind, Invariant, MutantSpec, Observer, Scenario, ScenarioSpec,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use sim_core::{time, NodeId, SimConfig};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

/// The clients' operations are linearizable.
pub static LINEARIZABLE: Invariant = Invariant::always(
    "linearizable",
    "the clients' GETs and PUTs are linearizable (key-value model, operations without an answer indeterminate); checked over the whole history when the clients finish",
);
/// After healing, the service serves again.
pub static AVAILABLE_AFTER_HEAL: Invariant = Invariant::eventually(
    "available-after-heal",
    "within 3 s of healing, a client writes a fresh value and reads it back (from the primary, or from the backup if it took over)",
    Duration::from_secs(3),
);
/// A batch reaches a failover.
pub static FAILED_OVER: Invariant =
    Invariant::sometimes("failed-over", "the backup took over and served a client");
/// A batch reaches a value read back after the node that acknowledged it restarted.
pub static RELOADED: Invariant = Invariant::sometimes(
    "reloaded",
    "a client read an acknowledged value from a later boot of the node that acknowledged it",
);

const PRIMARY: &str = "primary";
const BACKUP: &str = "backup";
const CLIENTS: [&str; 3] = ["client-1", "client-2", "client-3"];
/// The keys the workload touches.
const KEYS: [&str; 3] = ["a", "b", "c"];
/// How long a client waits for one operation, connection included.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(500);
/// Attempts of the final read of each key.
const FINAL_READ_TRIES: usize = 4;

/// One client operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `GET` the key of this index in the scenario's keys.
    Get(usize),
    /// `PUT` a value never written before to the key of this index.
    Put(usize),
}

/// The workload: per client, its operations with the pause before each, in ms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    /// Per client: (think time in ms, operation).
    pub clients: Vec<Vec<(u64, Op)>>,
}

/// The `http-kv` scenario.
#[derive(Clone, Debug, Default)]
pub struct HttpKv;

type KvHistory = History<KvInput<String, String>, KvOutput<String>>;

/// What `setup` builds.
pub struct System {
    clients: Vec<NodeId>,
    /// The clients' record of operations: the checker's, not the system's.
    history: Rc<RefCell<KvHistory>>,
    /// Per acknowledged value: the server that acknowledged it and its boot.
    acked: Rc<RefCell<BTreeMap<String, (usize, u64)>>>,
}

/// The servers, primary first, as clients address them.
fn servers() -> Vec<String> {
    vec![format!("{PRIMARY}:{PORT}"), format!("{BACKUP}:{PORT}")]
}

fn bugs_of(env: &Env) -> Bugs {
    Bugs {
        replication_optional: env.is_mutant("replication-optional"),
        ack_before_fsync: env.is_mutant("ack-before-fsync"),
        listen_only_on_first_boot: env.is_mutant("listen-only-on-first-boot"),
    }
}

/// A server node's program: the service, unchanged.
async fn server_main(config: Config) {
    if let Err(error) = serve(config).await {
        tracing::error!(%error, "the server stopped");
    }
}

impl Scenario for HttpKv {
    type Workload = Workload;
    type System = System;

    fn spec(&self) -> ScenarioSpec {
        let mut nodes = vec![PRIMARY.to_string(), BACKUP.to_string()];
        nodes.extend(CLIENTS.iter().map(|c| c.to_string()));
        let servers = vec![PRIMARY.to_string(), BACKUP.to_string()];
        ScenarioSpec {
            name: "http-kv".into(),
            description: "a primary-backup key-value service over HTTP/1.1 (hyper on simulated TCP, tokio's names): linearizable and durable under faults".into(),
            nodes: nodes.clone(),
            budget: FaultBudget {
                kinds: FaultKind::all_except(&[FaultKind::Corrupt]),
                targets: nodes,
                crash_targets: servers.clone(),
                disk_targets: servers,
                down_max: 1,
                episodes_max: 6,
                plan_duration_ms: 3_000,
                episode_duration_max_ms: 1_500,
            },
            invariants: vec![LINEARIZABLE, AVAILABLE_AFTER_HEAL, FAILED_OVER, RELOADED],
            mutants: vec![
                MutantSpec::new(
                    "replication-optional",
                    "the primary goes on alone when the backup does not answer (replication falls back to asynchronous, as MySQL's semi-synchronous replication does after its timeout): after a failover the backup lacks acknowledged writes",
                )
                .breaks("linearizable"),
                MutantSpec::new(
                    "ack-before-fsync",
                    "writes are acknowledged once in the page cache, never fsynced: a crash loses acknowledged writes",
                )
                .breaks("linearizable"),
                MutantSpec::new(
                    "listen-only-on-first-boot",
                    "a restarted node runs its heartbeats and takeover watch but never listens again: after a crash the pair stays unavailable (a restarted primary still heartbeats, so the backup never takes over)",
                )
                .breaks("available-after-heal"),
            ],
            sometimes_batch_min: 200,
            sim_config: SimConfig {
                time_limit_ms: 120_000,
                ..SimConfig::default()
            },
        }
    }

    fn workload(&self) -> BoxedStrategy<Workload> {
        let key = 0..KEYS.len();
        let op = prop_oneof![key.clone().prop_map(Op::Get), key.prop_map(Op::Put)];
        let client = proptest::collection::vec((0u64..200, op), 10..40);
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
        let keys = workload.clients.iter().flatten().map(|(_, op)| match op {
            Op::Get(key) | Op::Put(key) => *key,
        });
        if let Some(key) = keys.into_iter().find(|&key| key >= KEYS.len()) {
            return Err(format!(
                "key index {key}: the scenario has {} keys",
                KEYS.len()
            ));
        }
        Ok(())
    }

    fn setup(&self, env: &Env, _: &Workload) -> System {
        let bugs = bugs_of(env);
        let backup = Config {
            bugs,
            ..Config::new(Role::Backup)
        };
        env.sim
            .node(BACKUP)
            .init(move || server_main(backup.clone()))
            .build();
        let primary = Config {
            bugs,
            ..Config::new(Role::Primary {
                backup: format!("{BACKUP}:{PORT}"),
            })
        };
        env.sim
            .node(PRIMARY)
            .init(move || server_main(primary.clone()))
            .build();
        let clients = CLIENTS
            .iter()
            .map(|name| env.sim.node(*name).build())
            .collect();
        System {
            clients,
            history: Rc::default(),
            acked: Rc::default(),
        }
    }

    async fn drive(&self, env: &Env, system: &System, workload: Workload) -> Checked {
        let mut running = Vec::new();
        for (index, ops) in workload.clients.into_iter().enumerate() {
            let ctx = ClientCtx {
                client: index as u64,
                history: system.history.clone(),
                acked: system.acked.clone(),
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
        env.linearizable(&LINEARIZABLE, &KeyValue::new(), &system.history.borrow())
    }

    async fn after_heal(&self, env: &Env, system: &System) -> Checked {
        let attempt = Cell::new(0u64);
        env.eventually(&AVAILABLE_AFTER_HEAL, || {
            attempt.set(attempt.get() + 1);
            let value = format!("probe-{}", attempt.get());
            let probe = env.sim.spawn_on(system.clients[0], probe(value));
            async move {
                probe
                    .await
                    .unwrap_or_else(|_| Err("the probing client's task ended".into()))
            }
        })
        .await?;
        // A final read of every key, added to the history and checked with it: an
        // acknowledged write lost by a crash late in the run shows here.
        let reader = FinalReader {
            client: CLIENTS.len() as u64,
            history: system.history.clone(),
        };
        let _ = env.sim.spawn_on(system.clients[0], reader.read_all()).await;
        env.linearizable(&LINEARIZABLE, &KeyValue::new(), &system.history.borrow())
    }
}

/// Reads every key once more after the heal, as one more client of the history.
struct FinalReader {
    client: u64,
    history: Rc<RefCell<KvHistory>>,
}

impl FinalReader {
    async fn read_all(self) {
        let mut client = KvClient::new(servers(), CLIENT_TIMEOUT);
        let now = || time::true_now().as_nanos() as u64;
        for key in KEYS {
            // A refused or lost read says nothing: try each server a few times.
            for _ in 0..FINAL_READ_TRIES {
                let input = KvInput::Get {
                    key: key.to_string(),
                };
                let Ok(id) = self.history.borrow_mut().invoke(self.client, input, now()) else {
                    return;
                };
                let answer = client.get(key).await;
                let mut history = self.history.borrow_mut();
                match answer {
                    Ok(served) => {
                        let _ = history.complete(id, KvOutput::GetOk(served.value), now());
                        break;
                    }
                    Err(_) => {
                        let _ = history.mark_indeterminate(id);
                    }
                }
            }
        }
    }
}

/// One liveness probe: write `value` (trying each server once), then read it back (likewise).
async fn probe(value: String) -> Result<(), String> {
    let mut client = KvClient::new(servers(), CLIENT_TIMEOUT);
    let mut last = String::new();
    let mut written = false;
    for _ in 0..2 {
        match client.put("probe", &value).await {
            Ok(_) => {
                written = true;
                break;
            }
            Err(failed) => last = format!("PUT at server {}: {}", failed.server, failed.reason),
        }
    }
    if !written {
        return Err(last);
    }
    for _ in 0..2 {
        match client.get("probe").await {
            Ok(Served {
                value: Some(seen), ..
            }) if seen == value => return Ok(()),
            Ok(served) => last = format!("wrote {value}, read {served:?}"),
            Err(failed) => last = format!("GET at server {}: {}", failed.server, failed.reason),
        }
    }
    Err(last)
}

struct ClientCtx {
    client: u64,
    history: Rc<RefCell<KvHistory>>,
    acked: Rc<RefCell<BTreeMap<String, (usize, u64)>>>,
    observer: Observer,
}

impl ClientCtx {
    /// Notes what an answer shows for the sometimes-invariants.
    fn observe<T>(&self, served: &Served<T>, read: Option<&str>) {
        if served.server == 1 {
            self.observer.reached(&FAILED_OVER);
        }
        let acked = self.acked.borrow();
        let earlier_boot = read
            .and_then(|value| acked.get(value))
            .is_some_and(|&(server, boot)| server == served.server && boot < served.boot);
        if earlier_boot {
            self.observer.reached(&RELOADED);
        }
    }
}

/// A client: runs its operations one after another and records them, with true times (the
/// history is the checker's, not the system's).
async fn client_main(ctx: ClientCtx, ops: Vec<(u64, Op)>) {
    let mut client = KvClient::new(servers(), CLIENT_TIMEOUT);
    let now = || time::true_now().as_nanos() as u64;
    for (n, (think_ms, op)) in ops.into_iter().enumerate() {
        time::sleep(Duration::from_millis(think_ms.max(1))).await;
        let (key, value) = match op {
            Op::Get(key) => (KEYS[key].to_string(), None),
            Op::Put(key) => (
                KEYS[key].to_string(),
                Some(format!("{}.{n}", ctx.client + 1)),
            ),
        };
        let input = match &value {
            None => KvInput::Get { key: key.clone() },
            Some(value) => KvInput::Put {
                key: key.clone(),
                value: value.clone(),
            },
        };
        let Ok(id) = ctx.history.borrow_mut().invoke(ctx.client, input, now()) else {
            // The history is full: it counts what it refused, and the check is inconclusive.
            return;
        };
        let output = match &value {
            None => client.get(&key).await.map(|served| {
                ctx.observe(&served, served.value.as_deref());
                KvOutput::GetOk(served.value)
            }),
            Some(value) => client.put(&key, value).await.map(|served| {
                ctx.observe(&served, None);
                ctx.acked
                    .borrow_mut()
                    .insert(value.clone(), (served.server, served.boot));
                KvOutput::PutOk
            }),
        };
        let mut history = ctx.history.borrow_mut();
        let _ = match output {
            Ok(output) => history.complete(id, output, now()),
            // No answer: the operation may or may not have happened.
            Err(_) => history.mark_indeterminate(id),
        };
    }
}
