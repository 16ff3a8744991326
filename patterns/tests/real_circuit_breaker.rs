//! The circuit breaker's driver in a real build (no `--cfg madsim`): a client node calls a
//! server node over real UDP on a loopback cluster, on real time.
//!
//! What the `circuit-breaker` scenario checks from the clients' side, on a short real
//! workload: while the server fails (it answers errors, or it is killed and calls time out) the
//! breaker opens, and an open breaker refuses calls without sending them (the server's own
//! count of requests does not move, and the driver's tap shows no send while open); after the
//! open wait it lets a probe through, and once the server is healthy again (restarted) the
//! probe closes it and calls succeed.
//!
//! Real time: every wait for something that must happen is a polling loop with a generous
//! deadline, never a fixed sleep; only the calls to a killed server must time out, and they
//! take the call timeout.
#![cfg(not(madsim))]

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use patterns::circuit_breaker::driver::{CallError, Driver, Observation, Observed};
use patterns::circuit_breaker::{
    CircuitBreaker, Config, EventKind, Outcome, RejectReason, State, TransitionReason, Window,
};
use sim_core::net::{Addr, RpcError, Socket};
use sim_core::node::{block_on, run_as, Cluster, NodeHandle, NodeId};
use sim_core::time;

/// The server's port (unprivileged: a real test needs no root).
const SERVICE_PORT: u16 = 7400;
/// The longest a test may take; a passing one takes about a second.
const BOUND: Duration = Duration::from_secs(10);
/// How long a wait for what must happen may last.
const GENEROUS: Duration = Duration::from_secs(3);
/// How long the breaker stays open: long enough to make a few refused calls in, short enough
/// for a quick test.
const OPEN_WAIT: Duration = Duration::from_millis(500);
/// Each call's timeout: generous for a healthy server on loopback; a call to a killed server
/// takes this long to fail.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// Calls made while the breaker is open, each of which must be refused.
const CALLS_WHILE_OPEN: usize = 5;

/// A data folder of its own for one test (the breaker writes no files, but a cluster names
/// one per node), removed when dropped.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new(test: &str) -> TempRoot {
        let path = std::env::temp_dir().join(format!(
            "patterns-real-breaker-{}-{test}",
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

/// Polls `done` every few milliseconds until it holds; fails after [`GENEROUS`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = time::now();
    while !done() {
        assert!(
            time::now() - started < GENEROUS,
            "{what} within {GENEROUS:?}"
        );
        time::sleep(Duration::from_millis(2)).await;
    }
}

/// What the server answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Behaviour {
    /// `false`: an error the caller classifies as a failure.
    Failing,
    /// `true`.
    Healthy,
}

/// The server node and what it keeps: the requests it received, one count per start.
struct Server {
    node: NodeHandle,
    behaviour: Rc<Cell<Behaviour>>,
    received_per_start: Rc<RefCell<Vec<u64>>>,
}

impl Server {
    /// Starts the server node, answering as `behaviour` says.
    fn start(cluster: &Cluster, node: NodeId, behaviour: Behaviour) -> Server {
        let behaviour = Rc::new(Cell::new(behaviour));
        let received_per_start = Rc::new(RefCell::new(Vec::new()));
        let handle = cluster.start(node, {
            let behaviour = behaviour.clone();
            let received_per_start = received_per_start.clone();
            move || {
                let behaviour = behaviour.clone();
                let received_per_start = received_per_start.clone();
                async move {
                    let socket = Socket::bind(SERVICE_PORT).expect("the service port is free");
                    received_per_start.borrow_mut().push(0);
                    while let Ok((request, _body)) = socket.recv_request::<u64>().await {
                        *received_per_start
                            .borrow_mut()
                            .last_mut()
                            .expect("counted from the start") += 1;
                        let healthy = behaviour.get() == Behaviour::Healthy;
                        let _ = socket.reply(request, &healthy);
                    }
                }
            }
        });
        Server {
            node: handle,
            behaviour,
            received_per_start,
        }
    }

    /// Requests received since the latest start (0 before the node bound its port).
    fn received(&self) -> u64 {
        self.received_per_start
            .borrow()
            .last()
            .copied()
            .unwrap_or(0)
    }

    /// Whether the latest start has bound the port (a start counts from 0 once bound).
    fn started(&self) -> usize {
        self.received_per_start.borrow().len()
    }

    /// Kills the node, sets how it answers from now on, starts it again and waits until it
    /// listens.
    async fn restart_as(&self, behaviour: Behaviour) {
        self.node.kill().await;
        self.behaviour.set(behaviour);
        let starts = self.started();
        self.node.restart().await;
        wait_until("the restarted server binds its port", || {
            self.started() > starts
        })
        .await;
    }
}

/// A window of the last 2 calls, both needed, 50 % failures trip it; a fixed open wait; one
/// probe; the pump moves open to half-open at the deadline (so a test can wait for it).
fn config() -> Config {
    Config::builder()
        .window(Window::Count { size: 2 })
        .calls_min(2)
        .failure_rate_threshold_percent(50)
        .open_wait_fixed(OPEN_WAIT)
        .half_open_probes_max(1)
        .auto_half_open(true)
        .build()
        .expect("a valid config")
}

type Log = Rc<RefCell<Vec<Observation>>>;

/// On the client node: a driver for `server`'s service with a tap that keeps every
/// observation.
fn driver(server: NodeId) -> (Driver, Log) {
    let breaker = CircuitBreaker::new(config(), Driver::read_now()).expect("a valid breaker");
    let socket = Socket::bind(0).expect("an ephemeral port");
    let driver = Driver::new(
        breaker,
        socket,
        Addr::new(server, SERVICE_PORT),
        CALL_TIMEOUT,
    );
    let log: Log = Rc::default();
    let tap = log.clone();
    driver.set_tap(move |observation| tap.borrow_mut().push(observation.clone()));
    (driver, log)
}

fn classify(healthy: &bool) -> Outcome {
    if *healthy {
        Outcome::Success
    } else {
        Outcome::Failure
    }
}

async fn call(driver: &Driver) -> Result<bool, CallError> {
    driver.call(&7u64, classify).await
}

/// When the breaker last opened, by the driver's clock (from its tap).
fn opened_at(log: &Log) -> Duration {
    log.borrow()
        .iter()
        .rev()
        .find(|observation| {
            observation.events.iter().any(|event| {
                matches!(
                    event.kind,
                    EventKind::Transition {
                        to: State::Open,
                        ..
                    }
                )
            })
        })
        .expect("the breaker opened")
        .at
        .monotonic
}

/// Calls up to [`CALLS_WHILE_OPEN`] times while the breaker is open: each is refused by the
/// breaker (nothing sent), with the time left before probes.
///
/// Real time runs on while a test waits for its turn on a busy machine: a call made after the
/// open wait has run out is not one the breaker must refuse. So the loop calls only in the
/// first half of the wait, and stops when a slow machine took it past that (an idle one
/// makes every call in well under a millisecond).
async fn calls_are_refused(driver: &Driver, log: &Log) {
    let calls_end = opened_at(log) + OPEN_WAIT / 2;
    let mut refused = 0;
    for _ in 0..CALLS_WHILE_OPEN {
        if Driver::read_now().monotonic >= calls_end {
            break;
        }
        match call(driver).await {
            Err(CallError::Rejected(rejected)) => {
                assert_eq!(rejected.reason, RejectReason::Open);
                let left = rejected.retry_after.expect("an open breaker says when");
                assert!(left <= OPEN_WAIT, "{left:?}");
                refused += 1;
            }
            other => panic!("an open breaker refuses calls, got {other:?}"),
        }
    }
    if refused < CALLS_WHILE_OPEN {
        eprintln!("a slow machine: {refused} of {CALLS_WHILE_OPEN} calls made while open");
    }
}

/// The sends in the log, each with the breaker's state when it went out.
fn sends(log: &Log) -> Vec<State> {
    log.borrow()
        .iter()
        .filter(|observation| matches!(observation.observed, Observed::Sent { .. }))
        .map(|observation| observation.metrics.state)
        .collect()
}

fn transitions(log: &Log) -> Vec<(State, State, TransitionReason)> {
    log.borrow()
        .iter()
        .flat_map(|observation| &observation.events)
        .filter_map(|event| match event.kind {
            EventKind::Transition { from, to, reason } => Some((from, to, reason)),
            _ => None,
        })
        .collect()
}

const TRIPPED: TransitionReason = TransitionReason::RatesExceeded {
    failure_rate: true,
    slow_call_rate: false,
};

#[test]
fn errors_open_the_breaker_which_sends_nothing_until_a_probe_finds_the_server_healthy() {
    let root = TempRoot::new("errors");
    bounded(async {
        let cluster = Cluster::loopback(&["server", "client"], &root.0).expect("a cluster");
        let (server_id, client) = (cluster.id("server").unwrap(), cluster.id("client").unwrap());
        let server = Server::start(&cluster, server_id, Behaviour::Failing);
        wait_until("the server binds its port", || server.started() == 1).await;

        run_as(client, async {
            let (driver, log) = driver(server_id);
            // Two errors fill the window at 100 % failures: the breaker opens.
            assert_eq!(call(&driver).await, Ok(false));
            assert_eq!(call(&driver).await, Ok(false));
            assert_eq!(driver.state(), State::Open);
            assert_eq!(server.received(), 2);

            // Open: refused without a send. The server's own count says nothing arrived.
            calls_are_refused(&driver, &log).await;
            assert_eq!(
                server.received(),
                2,
                "nothing reaches the server while open"
            );

            // After the open wait the pump makes it half-open; the probe meets the failing
            // server and the breaker opens again.
            wait_until("the breaker is half-open after its wait", || {
                driver.state() == State::HalfOpen
            })
            .await;
            assert_eq!(call(&driver).await, Ok(false));
            assert_eq!(driver.state(), State::Open);
            assert_eq!(server.received(), 3, "the probe, and only it, got through");

            // The server is restarted healthy; while the breaker is still open, the new
            // server gets nothing.
            server.restart_as(Behaviour::Healthy).await;
            calls_are_refused(&driver, &log).await;
            assert_eq!(server.received(), 0, "nothing reaches the restarted server");

            // The next probe succeeds and closes the breaker; calls succeed.
            wait_until("the breaker is half-open again", || {
                driver.state() == State::HalfOpen
            })
            .await;
            assert_eq!(call(&driver).await, Ok(true));
            assert_eq!(driver.state(), State::Closed);
            for _ in 0..3 {
                assert_eq!(call(&driver).await, Ok(true));
            }
            assert_eq!(server.received(), 4);

            // Every send went out closed or half-open, one per call the server counted.
            let sent = sends(&log);
            assert!(!sent.contains(&State::Open), "{sent:?}");
            assert_eq!(sent.len(), 3 + 4);
            assert_eq!(
                transitions(&log),
                [
                    (State::Closed, State::Open, TRIPPED),
                    (
                        State::Open,
                        State::HalfOpen,
                        TransitionReason::OpenWaitElapsed
                    ),
                    (State::HalfOpen, State::Open, TRIPPED),
                    (
                        State::Open,
                        State::HalfOpen,
                        TransitionReason::OpenWaitElapsed
                    ),
                    (
                        State::HalfOpen,
                        State::Closed,
                        TransitionReason::ProbesPassed
                    ),
                ]
            );
        })
        .await;
    });
}

#[test]
fn a_killed_server_makes_calls_time_out_and_opens_the_breaker_until_it_is_restarted() {
    let root = TempRoot::new("killed");
    bounded(async {
        let cluster = Cluster::loopback(&["server", "client"], &root.0).expect("a cluster");
        let (server_id, client) = (cluster.id("server").unwrap(), cluster.id("client").unwrap());
        let server = Server::start(&cluster, server_id, Behaviour::Healthy);
        wait_until("the server binds its port", || server.started() == 1).await;

        run_as(client, async {
            let (driver, log) = driver(server_id);
            assert_eq!(call(&driver).await, Ok(true));
            assert_eq!(server.received(), 1);

            // Killed: its port is closed, the call's datagram is lost, the call times out.
            // A success and a timeout: 50 % failures, the breaker opens.
            server.node.kill().await;
            let started = time::now();
            let timed_out = call(&driver).await;
            assert!(
                matches!(timed_out, Err(CallError::Rpc(RpcError::Timeout { .. }))),
                "{timed_out:?}"
            );
            assert!(time::now() - started >= CALL_TIMEOUT);
            assert_eq!(driver.state(), State::Open);

            // Restarted at once, while the breaker is still open: the new server receives
            // nothing until the open wait has passed.
            server.restart_as(Behaviour::Healthy).await;
            calls_are_refused(&driver, &log).await;
            assert_eq!(
                server.received(),
                0,
                "nothing reaches the server while open"
            );

            wait_until("the breaker is half-open after its wait", || {
                driver.state() == State::HalfOpen
            })
            .await;
            assert_eq!(
                call(&driver).await,
                Ok(true),
                "the probe reaches the server"
            );
            assert_eq!(driver.state(), State::Closed);
            assert_eq!(call(&driver).await, Ok(true));
            assert_eq!(server.received(), 2);

            let sent = sends(&log);
            assert!(!sent.contains(&State::Open), "{sent:?}");
            assert_eq!(sent.len(), 2 + 2);
            assert_eq!(
                transitions(&log).last(),
                Some(&(
                    State::HalfOpen,
                    State::Closed,
                    TransitionReason::ProbesPassed
                ))
            );
        })
        .await;
    });
}
