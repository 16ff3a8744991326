//! The discovery registry and client in a real build (no `--cfg madsim`): three registry
//! replicas ([`run_registry`]), instances that register and heartbeat, and a
//! [`DiscoveryClient`], each a node of a loopback cluster on real UDP, real files (each
//! replica's state under its data folder, fsynced) and real time.
//!
//! What the `discovery` scenario checks from the clients' side, on a short real workload: an
//! instance that registers is discovered and a watch sees it; replicas that were never told
//! of it learn it by anti-entropy; one that stops renewing is marked expired at every replica,
//! never before its TTL since its last renewal; a killed replica's peers still answer, the
//! client's watch moves on, and the replica comes back with its state from its disk (when no
//! peer is alive to tell it anything); replicas converge again.
//!
//! Real time: every wait for something that must happen is a polling loop with a generous
//! deadline; only calls to a killed replica time out, and they take the short call timeout of
//! the test that kills replicas.
#![cfg(not(madsim))]

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use patterns::discovery::client::Watched;
use patterns::discovery::driver::{
    run_registry, RegistryHooks, RegistryNodeConfig, RegistryRequest, RegistryResponse,
};

/// The registries' port: above 1024, so that the test needs no privileges (the driver's
/// default, `REGISTRY_PORT`, is DNS's 53).
const REGISTRY_PORT: u16 = 7053;
use patterns::discovery::mutant::Mutants;
use patterns::discovery::registry::{Answer, WatchAnswer};
use patterns::discovery::{
    DiscoveryClient, DownReason, HeartbeatReply, Key, Now, Registration, Replica, ReplicaConfig,
    Status,
};
use sim_core::net::{Addr, Socket};
use sim_core::node::{block_on, run_as, Cluster, NodeHandle, NodeId};
use sim_core::time;

const SERVICE: &str = "orders";
/// The replicas' node names; the index of a name is the replica's index in every list here.
const REPLICAS: [&str; 3] = ["registry-1", "registry-2", "registry-3"];
/// The port an instance serves on: what it registers as its address.
const INSTANCE_PORT: u16 = 7500;
/// How often replicas check leases.
const TICK: Duration = Duration::from_millis(50);
/// How often replicas send their state to their peers.
const GOSSIP_EVERY: Duration = Duration::from_millis(100);
/// The shortest lease a replica grants (above the tick, as the replica requires).
const TTL_MIN: Duration = Duration::from_millis(200);
/// The lease of an instance that goes silent: short, so that it expires within the test.
const SHORT_TTL: Duration = Duration::from_millis(400);
/// The lease of an instance that stays: far longer than any test, so that a busy machine
/// delaying its heartbeats cannot expire it.
const LONG_TTL: Duration = Duration::from_secs(10);
/// How often instances renew.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(100);
/// A registry call's timeout where no replica is killed: generous.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// A registry call's timeout where replicas are killed: calls to a dead replica take this
/// long to fail; calls that must succeed are retried until a deadline.
const SHORT_CALL_TIMEOUT: Duration = Duration::from_millis(300);
/// The longest a test may take; a passing one takes about a second.
const BOUND: Duration = Duration::from_secs(15);
/// How long a wait for what must happen may last.
const GENEROUS: Duration = Duration::from_secs(4);

/// A data folder of its own for one test, removed when dropped.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new(test: &str) -> TempRoot {
        let path = std::env::temp_dir().join(format!(
            "patterns-real-discovery-{}-{test}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        TempRoot(path)
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `test` on a fresh runtime, failing it if it takes longer than [`BOUND`].
fn bounded(test: impl Future<Output = ()>) {
    block_on(async {
        time::timeout(BOUND, test)
            .await
            .expect("the test ends within its bound");
    });
}

/// The end of a polling loop: each [`Deadline::next`] fails the test once [`GENEROUS`] has
/// passed, else sleeps a little.
struct Deadline {
    what: String,
    started: time::Instant,
}

impl Deadline {
    fn new(what: impl Into<String>) -> Deadline {
        Deadline {
            what: what.into(),
            started: time::now(),
        }
    }

    async fn next(&self) {
        assert!(
            time::now() - self.started < GENEROUS,
            "{} within {GENEROUS:?}",
            self.what
        );
        time::sleep(Duration::from_millis(5)).await;
    }
}

fn monotonic() -> Duration {
    time::now().since_origin()
}

/// A replica's decision to expire an instance, as its hook reported it.
#[derive(Clone, Debug)]
struct Expiry {
    replica: usize,
    instance: String,
    at: Duration,
}

type Expiries = Rc<RefCell<Vec<Expiry>>>;

/// The cluster of a test: its nodes by name, the replicas' addresses.
struct Nodes {
    cluster: Cluster,
    replicas: Vec<NodeId>,
    registries: Vec<Addr>,
}

impl Nodes {
    fn new(root: &TempRoot, others: &[&str]) -> Nodes {
        let names: Vec<&str> = REPLICAS.iter().chain(others).copied().collect();
        let cluster = Cluster::loopback(&names, &root.0).expect("a valid cluster");
        // Addresses resolve in the thread's cluster: node code before any start needs it.
        cluster.install();
        let replicas: Vec<NodeId> = REPLICAS
            .iter()
            .map(|name| cluster.id(name).expect("a replica"))
            .collect();
        let registries = replicas
            .iter()
            .map(|&node| Addr::new(node, REGISTRY_PORT))
            .collect();
        Nodes {
            cluster,
            replicas,
            registries,
        }
    }

    fn id(&self, name: &str) -> NodeId {
        self.cluster.id(name).expect("a node of the test")
    }

    /// Starts every replica; each reports the expiries it decides to `expiries`. Returns once
    /// they have had their first turn (in which they bind their port): a call that came
    /// earlier would find no socket and only cost a timeout and a retry.
    async fn start_replicas(&self, expiries: &Expiries) -> Vec<NodeHandle> {
        let replicas = (0..REPLICAS.len())
            .map(|index| {
                let peers: Vec<Addr> = self
                    .registries
                    .iter()
                    .enumerate()
                    .filter(|&(peer, _)| peer != index)
                    .map(|(_, &addr)| addr)
                    .collect();
                let config = RegistryNodeConfig {
                    port: REGISTRY_PORT,
                    replica: ReplicaConfig {
                        replica: index as u64 + 1,
                        ttl_min: TTL_MIN,
                        tick: TICK,
                        ..ReplicaConfig::default()
                    },
                    peers,
                    gossip_every: GOSSIP_EVERY,
                };
                let expiries = expiries.clone();
                let hooks = RegistryHooks {
                    on_expired: Rc::new(move |key: &Key, _incarnation| {
                        expiries.borrow_mut().push(Expiry {
                            replica: index,
                            instance: key.instance.clone(),
                            at: monotonic(),
                        });
                    }),
                };
                self.cluster.start(self.replicas[index], move || {
                    run_registry(config.clone(), hooks.clone())
                })
            })
            .collect();
        time::sleep(Duration::from_millis(1)).await;
        replicas
    }
}

/// What an instance saw of the registry.
#[derive(Debug, Default)]
struct InstanceLog {
    /// The replicas (indexes) that answered it.
    answered_by: BTreeSet<usize>,
    /// Registrations and renewals acknowledged.
    renewals: u64,
    /// When the latest acknowledged registration or renewal was sent: the replica renewed the
    /// lease no earlier.
    last_renewal_sent: Option<Duration>,
    /// Answers that told it its lease was gone, or refused it.
    refusals: Vec<String>,
}

type SharedLog = Rc<RefCell<InstanceLog>>;

/// Starts an instance of [`SERVICE`] on `node`: it registers with incarnation 1 and `ttl` at
/// the first of `registries` (replica index and address) and renews every
/// [`HEARTBEAT_EVERY`]; when a call gets no answer it moves to the next one and registers
/// again there (the same incarnation: idempotent), as the scenario's instances do.
fn start_instance(
    nodes: &Nodes,
    name: &'static str,
    ttl: Duration,
    registries: Vec<(usize, Addr)>,
    call_timeout: Duration,
) -> (NodeHandle, SharedLog) {
    let log = SharedLog::default();
    let handle = nodes.cluster.start(nodes.id(name), {
        let log = log.clone();
        move || {
            let (log, registries) = (log.clone(), registries.clone());
            async move {
                let service = Socket::bind(INSTANCE_PORT).expect("the instance's port");
                let address = service.local_addr().to_string();
                let calls = Socket::bind(0).expect("an ephemeral port");
                let key = Key::new(SERVICE, name);
                let mut target = 0;
                let mut registered = false;
                loop {
                    let (replica, registry) = registries[target % registries.len()];
                    let request = if registered {
                        RegistryRequest::Heartbeat {
                            key: key.clone(),
                            incarnation: 1,
                        }
                    } else {
                        RegistryRequest::Register(Registration {
                            key: key.clone(),
                            address: address.clone(),
                            incarnation: 1,
                            ttl,
                        })
                    };
                    let sent = monotonic();
                    let answer = calls
                        .call::<_, RegistryResponse>(registry, &request, call_timeout)
                        .await;
                    let renewed = match answer {
                        Ok(RegistryResponse::Registered(Ok(())))
                        | Ok(RegistryResponse::Heartbeat(HeartbeatReply::Renewed)) => true,
                        Ok(RegistryResponse::Heartbeat(HeartbeatReply::Unknown)) => false,
                        Ok(other) => {
                            log.borrow_mut().refusals.push(format!("{other:?}"));
                            false
                        }
                        Err(_) => {
                            // No answer: the next replica (it may not know us yet).
                            target += 1;
                            registered = false;
                            continue;
                        }
                    };
                    {
                        let mut log = log.borrow_mut();
                        log.answered_by.insert(replica);
                        if renewed {
                            log.renewals += 1;
                            log.last_renewal_sent = Some(sent);
                        }
                    }
                    registered = renewed;
                    time::sleep(HEARTBEAT_EVERY).await;
                }
            }
        }
    });
    (handle, log)
}

fn status_of(records: &[(Key, patterns::discovery::Record)], instance: &str) -> Option<Status> {
    records
        .iter()
        .find(|(key, _)| key.instance == instance)
        .map(|(_, record)| record.status)
}

/// Asks replica `at` until it answers and `done` holds for its answer.
async fn discover_until(
    client: &mut DiscoveryClient,
    at: usize,
    what: &str,
    done: impl Fn(&Answer) -> bool,
) -> Answer {
    let deadline = Deadline::new(format!("{what} (replica {})", at + 1));
    loop {
        if let Some(answer) = client.discover(SERVICE, at).await {
            if done(&answer) {
                return answer;
            }
        }
        deadline.next().await;
    }
}

/// Resumes the watch until `done` holds for the client's cache; returns every answer it got.
async fn watch_until(
    client: &mut DiscoveryClient,
    what: &str,
    done: impl Fn(&DiscoveryClient) -> bool,
) -> Vec<Watched> {
    let deadline = Deadline::new(what);
    let mut answers = Vec::new();
    loop {
        if let Some(watched) = client.watch(SERVICE).await {
            answers.push(watched);
        }
        if done(client) {
            return answers;
        }
        deadline.next().await;
    }
}

/// The records that came as watch events (not in a resync), in order.
fn watch_events(answers: &[Watched]) -> Vec<(String, Status)> {
    answers
        .iter()
        .filter_map(|watched| match &watched.answer {
            WatchAnswer::Events(events) => Some(events),
            WatchAnswer::Resync { .. } => None,
        })
        .flatten()
        .map(|event| (event.key.instance.clone(), event.record.status))
        .collect()
}

fn cached_status(client: &DiscoveryClient, instance: &str) -> Option<Status> {
    client
        .cache()
        .record(&Key::new(SERVICE, instance))
        .map(|record| record.status)
}

#[test]
fn an_instance_is_discovered_and_watched_and_one_that_stops_renewing_expires_after_its_ttl() {
    let root = TempRoot::new("leases");
    bounded(async {
        let nodes = Nodes::new(&root, &["live", "silent", "client"]);
        let expiries = Expiries::default();
        let _replicas = nodes.start_replicas(&expiries).await;

        run_as(nodes.id("client"), async {
            let mut client = DiscoveryClient::new(
                0,
                nodes.registries.clone(),
                0,
                CALL_TIMEOUT,
                Mutants::none(),
            )
            .expect("the client binds");
            // Before anyone registers: the watch of replica 1 starts with an empty resync.
            let first = watch_until(&mut client, "a first watch answer", |client| {
                client.cache().cursor(SERVICE).is_some()
            })
            .await;
            assert!(
                matches!(&first.last().expect("an answer").answer,
                    WatchAnswer::Resync { records, .. } if records.is_empty()),
                "{first:?}"
            );

            // `live` registers at replica 1 only, `silent` at replica 2 only.
            let (_live, live_log) = start_instance(
                &nodes,
                "live",
                LONG_TTL,
                vec![(0, nodes.registries[0])],
                CALL_TIMEOUT,
            );
            let (silent, silent_log) = start_instance(
                &nodes,
                "silent",
                SHORT_TTL,
                vec![(1, nodes.registries[1])],
                CALL_TIMEOUT,
            );

            // The watch sees both registrations as events: `silent` reached replica 1 by
            // anti-entropy.
            let answers = watch_until(&mut client, "the watch sees both instances", |client| {
                cached_status(client, "live") == Some(Status::Up)
                    && cached_status(client, "silent") == Some(Status::Up)
            })
            .await;
            let events = watch_events(&answers);
            for instance in ["live", "silent"] {
                assert!(
                    events.contains(&(instance.to_string(), Status::Up)),
                    "{instance} came as a watch event: {answers:?}"
                );
            }
            // Every replica knows both, though each instance told only one of them.
            for at in 0..REPLICAS.len() {
                discover_until(&mut client, at, "both instances up", |answer| {
                    status_of(&answer.records, "live") == Some(Status::Up)
                        && status_of(&answer.records, "silent") == Some(Status::Up)
                })
                .await;
            }
            assert_eq!(live_log.borrow().answered_by, BTreeSet::from([0]));
            assert_eq!(silent_log.borrow().answered_by, BTreeSet::from([1]));

            // `silent` renews a few times, then its node dies: it renews no more.
            let deadline = Deadline::new("silent renews three times");
            while silent_log.borrow().renewals < 3 {
                deadline.next().await;
            }
            silent.kill().await;
            let killed = monotonic();
            let last_renewal = silent_log
                .borrow()
                .last_renewal_sent
                .expect("silent renewed");

            // Every replica marks it expired (by its own lease, or a peer's record), and
            // still has `live` up.
            for at in 0..REPLICAS.len() {
                let answer = discover_until(&mut client, at, "silent expired", |answer| {
                    status_of(&answer.records, "silent") == Some(Status::Down(DownReason::Expired))
                })
                .await;
                assert_eq!(status_of(&answer.records, "live"), Some(Status::Up));
            }
            let everywhere = monotonic();

            // No replica expired it before its TTL had passed since its last renewal; some
            // replica judged it itself; nobody expired `live`.
            let expiries = expiries.borrow().clone();
            let of_silent: Vec<&Expiry> = expiries
                .iter()
                .filter(|expiry| expiry.instance == "silent")
                .collect();
            assert!(!of_silent.is_empty(), "{expiries:?}");
            for expiry in &of_silent {
                assert!(
                    expiry.at >= last_renewal + SHORT_TTL,
                    "replica {} expired silent {:?} after its last renewal, under its TTL \
                     {SHORT_TTL:?}",
                    expiry.replica + 1,
                    expiry.at - last_renewal
                );
            }
            assert!(
                expiries.iter().all(|expiry| expiry.instance != "live"),
                "{expiries:?}"
            );
            eprintln!(
                "silent: killed {:?} after its last renewal; first expiry {:?} after it; \
                 down at every replica {:?} after it",
                killed - last_renewal,
                of_silent.iter().map(|e| e.at).min().expect("one") - last_renewal,
                everywhere - last_renewal
            );

            // The watch sees the expiry as an event; the cache keeps `live` only.
            let answers = watch_until(&mut client, "the watch sees the expiry", |client| {
                cached_status(client, "silent") == Some(Status::Down(DownReason::Expired))
            })
            .await;
            assert!(
                watch_events(&answers)
                    .contains(&("silent".to_string(), Status::Down(DownReason::Expired))),
                "{answers:?}"
            );
            let healthy: Vec<String> = client
                .cache()
                .healthy(SERVICE)
                .into_iter()
                .map(|(key, _)| key.instance)
                .collect();
            assert_eq!(healthy, ["live"]);
            assert!(live_log.borrow().refusals.is_empty());
        })
        .await;
    });
}

#[test]
fn a_killed_replica_comes_back_with_its_state_from_disk_and_the_live_instance_stays_discoverable() {
    let root = TempRoot::new("restart");
    bounded(async {
        let nodes = Nodes::new(&root, &["live", "client"]);
        let expiries = Expiries::default();
        let replicas = nodes.start_replicas(&expiries).await;

        run_as(nodes.id("client"), async {
            let mut client = DiscoveryClient::new(
                0,
                nodes.registries.clone(),
                0,
                SHORT_CALL_TIMEOUT,
                Mutants::none(),
            )
            .expect("the client binds");
            // `live` knows only replicas 2 and 3: replica 1 hears of it by anti-entropy only.
            let (_live, live_log) = start_instance(
                &nodes,
                "live",
                LONG_TTL,
                vec![(1, nodes.registries[1]), (2, nodes.registries[2])],
                SHORT_CALL_TIMEOUT,
            );
            let up = |answer: &Answer| status_of(&answer.records, "live") == Some(Status::Up);
            discover_until(&mut client, 0, "replica 1 learns live", up).await;
            watch_until(&mut client, "the watch of replica 1 sees live", |client| {
                cached_status(client, "live") == Some(Status::Up)
            })
            .await;

            // Replica 1 is killed: the others still answer, and the watch moves on to them.
            replicas[0].kill().await;
            for at in [1, 2] {
                discover_until(&mut client, at, "live up at the living replicas", up).await;
            }
            let cursor = client.cache().cursor(SERVICE).expect("a cursor");
            watch_until(
                &mut client,
                "the watch moves to another replica",
                |client| {
                    client
                        .cache()
                        .cursor(SERVICE)
                        .is_some_and(|now| now.0 != cursor.0)
                },
            )
            .await;
            assert_eq!(
                cached_status(&client, "live"),
                Some(Status::Up),
                "the cache kept live"
            );

            // Its state is in its data folder, on the real disk.
            let stored = std::fs::read(root.0.join(REPLICAS[0]).join("registry.state"))
                .expect("replica 1 stored its state");
            let restored = Replica::restore(
                ReplicaConfig {
                    replica: 1,
                    ttl_min: TTL_MIN,
                    tick: TICK,
                    ..ReplicaConfig::default()
                },
                Now::from_monotonic(Duration::ZERO),
                &stored,
            )
            .expect("the stored state reads back");
            assert!(restored
                .record(&Key::new(SERVICE, "live"))
                .is_some_and(|record| record.is_up()));

            // The other two die too, and replica 1 restarts alone: no peer is alive and the
            // instance never calls it, so only its disk can tell it of live.
            replicas[1].kill().await;
            replicas[2].kill().await;
            replicas[0].restart().await;
            let answer = discover_until(&mut client, 0, "replica 1 answers again", |_| true).await;
            assert!(up(&answer), "restored from disk: {answer:?}");
            assert!(!live_log.borrow().answered_by.contains(&0));
            // A new boot: its watch log is numbered afresh (boot 1 of replica 1), and a
            // watcher gets the restored records in a resync.
            let mut fresh = DiscoveryClient::new(
                0,
                nodes.registries.clone(),
                0,
                SHORT_CALL_TIMEOUT,
                Mutants::none(),
            )
            .expect("a second client binds");
            let resync = watch_until(&mut fresh, "a watch of the restarted replica", |c| {
                c.cache().cursor(SERVICE).is_some()
            })
            .await;
            match &resync.last().expect("an answer").answer {
                WatchAnswer::Resync {
                    replica, records, ..
                } => {
                    assert_eq!(*replica, (1 << 32) | 1, "replica 1, its second boot");
                    assert_eq!(status_of(records, "live"), Some(Status::Up));
                }
                other => panic!("a first watch is a resync: {other:?}"),
            }

            // Replicas 2 and 3 come back too; the instance renews again; all converge.
            let renewals = live_log.borrow().renewals;
            replicas[1].restart().await;
            replicas[2].restart().await;
            let deadline = Deadline::new("the replicas converge with live up");
            loop {
                let mut views = Vec::new();
                for at in 0..REPLICAS.len() {
                    views.push(client.discover(SERVICE, at).await.map(|a| a.records));
                }
                let converged = views.iter().all(|view| {
                    view.as_ref()
                        .is_some_and(|records| Some(records) == views[0].as_ref())
                });
                if converged
                    && views[0]
                        .as_ref()
                        .is_some_and(|records| status_of(records, "live") == Some(Status::Up))
                    && live_log.borrow().renewals > renewals
                {
                    break;
                }
                deadline.next().await;
            }
            assert!(expiries.borrow().is_empty(), "{:?}", expiries.borrow());
            assert!(live_log.borrow().refusals.is_empty());
        })
        .await;
    });
}
