//! The API gateway in a real build (no `--cfg madsim`): a gateway node ([`run_gateway`]), a
//! registry replica, a backend instance of `orders` that registers and heartbeats, and a
//! client, each a node of a loopback cluster on real UDP and real time. The client sends the
//! bytes of HTTP/1.1 requests in [`ExternalCall`]s, as the `gateway` scenario's clients do.
//!
//! What the scenario checks from the clients' side, on a short real workload: a request with a
//! valid signed token is admitted and routed to the backend with its principal (never a
//! spoofed one) and its normalised path; forged, expired, early, tampered tokens and path
//! tricks are refused before any backend sees them (the backend's own log says so); the rate
//! limit answers 429 beyond its rate and admits again once the key's bucket refilled; a killed
//! backend makes the gateway answer an error within its route timeout, and a restarted one is
//! served again. And a request larger than one UDP datagram reaches the gateway (over TCP), so
//! the gateway's own body limit decides, as in a simulation.
//!
//! Real time: every wait for something that must happen is a polling loop with a generous
//! deadline; only attempts to a killed backend time out (the gateway's per-try timeout).
#![cfg(not(madsim))]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use patterns::discovery::driver::{
    run_registry, RegistryHooks, RegistryNodeConfig, RegistryRequest, RegistryResponse,
};

/// The registries' port: above 1024, so that the test needs no privileges (the driver's
/// default, `REGISTRY_PORT`, is DNS's 53).
const REGISTRY_PORT: u16 = 7053;
use patterns::discovery::{HeartbeatReply, Key, Registration, ReplicaConfig};
use patterns::gateway::auth::{sign, AuthConfig, Claims, KeyRing};
use patterns::gateway::driver::{
    run_gateway, ExternalAnswer, ExternalCall, GatewayConfig, GatewayEvent, GatewayHook,
};
use patterns::gateway::http::{parse_response, BackendRequest, BackendResponse, Limits};
use patterns::gateway::limit::LimitConfig;
use patterns::gateway::mutant::Mutants;
use patterns::gateway::route::{Access, HostMatch, PathMatch, Route};
use patterns::gateway::upstream::UpstreamConfig;
use sim_core::net::udp::DATAGRAM_MAX_BYTES;
use sim_core::net::{Addr, Socket};
use sim_core::node::{block_on, run_as, Cluster, NodeHandle, NodeId};
use sim_core::time;

const SERVICE: &str = "orders";
/// The gateway's port: its config picks it, so an unprivileged one.
const GATEWAY_PORT: u16 = 7080;
/// The backend's port.
const BACKEND_PORT: u16 = 7600;
const KEY_ID: &str = "k1";
const SECRET: &[u8] = b"the signing secret";
/// The clock-skew allowance of token checks.
const SKEW_S: u64 = 5;
/// Rate limits per key: a burst of this many, then...
const BURST: u32 = 4;
/// ... this many per second.
const RATE_PER_S: u32 = 2;
/// The longest one attempt to a backend may take.
const PER_TRY_TIMEOUT: Duration = Duration::from_millis(300);
/// The longest a request may take in the gateway, every attempt included.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(1);
/// The backend's lease: longer than any test, so that a busy machine cannot expire it.
const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often the backend renews its lease.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(200);
/// A client's wait for the gateway's answer: far beyond the route timeout, so that a missing
/// answer is a hang, not a slow machine.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// What the gateway may take beyond its route timeout to answer, on a busy machine.
const ANSWER_SLACK: Duration = Duration::from_secs(1);
/// The longest a test may take; a passing one takes well under a second.
const BOUND: Duration = Duration::from_secs(15);
/// How long a wait for what must happen may last.
const GENEROUS: Duration = Duration::from_secs(4);

/// A data folder of its own for one test, removed when dropped.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new(test: &str) -> TempRoot {
        let path = std::env::temp_dir().join(format!(
            "patterns-real-gateway-{}-{test}",
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

fn wall_s() -> u64 {
    time::wall()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs()
}

/// A token of `principal` signed with `secret` under `key_id`, valid from `not_before_s` to
/// `expires_s` (s since the epoch).
fn token(
    principal: &str,
    key_id: &str,
    secret: &[u8],
    not_before_s: u64,
    expires_s: u64,
) -> String {
    let claims = Claims {
        principal: principal.into(),
        key_id: key_id.into(),
        not_before_s,
        expires_s,
    };
    sign(&claims, secret)
}

/// A genuine token of `principal`, valid for five minutes from a second ago.
fn valid_token(principal: &str) -> String {
    let now = wall_s();
    token(principal, KEY_ID, SECRET, now - 1, now + 300)
}

/// The bytes of an HTTP/1.1 request: `head` is the request line and any headers, each line
/// without its `\r\n`; `Host` and, for a body, `Content-Length` are added.
fn http(head: &[&str], body: &str) -> Vec<u8> {
    let (request_line, headers) = head.split_first().expect("a request line");
    let mut text = format!("{request_line}\r\nHost: gw.example\r\n");
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    if !body.is_empty() {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    text.push_str(body);
    text.into_bytes()
}

/// `GET path`, with a bearer token if one is given.
fn get(path: &str, token: Option<&str>) -> Vec<u8> {
    let request_line = format!("GET {path} HTTP/1.1");
    let authorization = token.map(|token| format!("Authorization: Bearer {token}"));
    let mut head = vec![request_line.as_str()];
    head.extend(authorization.as_deref());
    http(&head, "")
}

/// What the backend received, over all its starts.
type BackendLog = Rc<RefCell<Vec<BackendRequest>>>;
type Events = Rc<RefCell<Vec<GatewayEvent>>>;

/// The system of a test: a registry, one backend instance, a gateway and a client.
struct System {
    cluster: Cluster,
    backend: NodeHandle,
    backend_address: String,
    received: BackendLog,
    events: Events,
    gateway: Addr,
    _nodes: Vec<NodeHandle>,
}

fn routes() -> Vec<Route> {
    let route = |name: &str, path: &str, access| Route {
        name: name.into(),
        host: HostMatch::Any,
        path: PathMatch::Prefix(path.into()),
        methods: None,
        service: SERVICE.into(),
        access,
    };
    vec![
        route("public", "/public", Access::Public),
        route("orders", "/api/orders", Access::Authenticated),
    ]
}

fn gateway_config(registry: Addr) -> GatewayConfig {
    GatewayConfig {
        port: GATEWAY_PORT,
        registries: vec![registry],
        services: vec![SERVICE.into()],
        table_version: 1,
        routes: routes(),
        keys: KeyRing {
            current: BTreeMap::from([(KEY_ID.to_string(), SECRET.to_vec())]),
            ..KeyRing::default()
        },
        auth: AuthConfig {
            skew_s: SKEW_S,
            ..AuthConfig::default()
        },
        limit: LimitConfig {
            rate_per_s: RATE_PER_S,
            burst: BURST,
            ..LimitConfig::default()
        },
        upstream: UpstreamConfig {
            per_try_timeout: PER_TRY_TIMEOUT,
            route_timeout: ROUTE_TIMEOUT,
            ..UpstreamConfig::default()
        },
        http: Limits::default(),
        refresh_every: Duration::from_millis(100),
        discovery_timeout: Duration::from_millis(300),
        mutants: Mutants::none(),
    }
}

/// The backend instance's program: serves every request with 200 and what it saw (its
/// instance, the path, the principal, the query), logging each; registers (a higher
/// incarnation at every start, from `starts`) and renews its lease.
async fn backend(registry: Addr, received: BackendLog, incarnation: u64) {
    let socket = Socket::bind(BACKEND_PORT).expect("the backend's port is free");
    let address = socket.local_addr().to_string();
    let registrar = Socket::bind(0).expect("an ephemeral port");
    sim_core::task::spawn(async move {
        let key = Key::new(SERVICE, "orders-1");
        let mut registered = false;
        loop {
            let request = if registered {
                RegistryRequest::Heartbeat {
                    key: key.clone(),
                    incarnation,
                }
            } else {
                RegistryRequest::Register(Registration {
                    key: key.clone(),
                    address: address.clone(),
                    incarnation,
                    ttl: LEASE_TTL,
                })
            };
            let answer = registrar
                .call::<_, RegistryResponse>(registry, &request, Duration::from_secs(1))
                .await;
            registered = matches!(
                answer,
                Ok(RegistryResponse::Registered(Ok(())))
                    | Ok(RegistryResponse::Heartbeat(HeartbeatReply::Renewed))
            );
            time::sleep(HEARTBEAT_EVERY).await;
        }
    });
    loop {
        let Ok((request, message)) = socket.recv_request::<BackendRequest>().await else {
            return;
        };
        let body = serde_json::json!({
            "instance": "orders-1",
            "path": message.path,
            "principal": message.principal,
            "query": message.query,
        });
        received.borrow_mut().push(message);
        let _ = socket.reply(request, &BackendResponse { status: 200, body });
    }
}

impl System {
    /// Starts the registry, the backend and the gateway, and waits until the gateway lists
    /// the backend (its hook reports the instance's breaker, closed, when discovery lists it).
    async fn start(root: &TempRoot) -> System {
        let cluster = Cluster::loopback(&["registry", "orders-1", "gateway", "client"], &root.0)
            .expect("a valid cluster");
        cluster.install();
        let id = |name: &str| cluster.id(name).expect("a node of the test");
        let registry = Addr::new(id("registry"), REGISTRY_PORT);
        let registry_node = cluster.start(id("registry"), || {
            let config = RegistryNodeConfig {
                port: REGISTRY_PORT,
                replica: ReplicaConfig {
                    replica: 1,
                    ..ReplicaConfig::default()
                },
                peers: Vec::new(),
                gossip_every: Duration::from_millis(300),
            };
            run_registry(config, RegistryHooks::default())
        });
        let received = BackendLog::default();
        let starts = Rc::new(std::cell::Cell::new(0u64));
        let backend_node = cluster.start(id("orders-1"), {
            let received = received.clone();
            move || {
                // A new incarnation at every start: a lease that ran out is not renewed.
                starts.set(starts.get() + 1);
                backend(registry, received.clone(), starts.get())
            }
        });
        let events = Events::default();
        let hook: GatewayHook = {
            let events = events.clone();
            Rc::new(move |event: &GatewayEvent| events.borrow_mut().push(event.clone()))
        };
        let config = gateway_config(registry);
        let gateway_node = cluster.start(id("gateway"), move || {
            run_gateway(config.clone(), hook.clone())
        });
        let backend_address = Addr::new(id("orders-1"), BACKEND_PORT).to_string();
        let deadline = Deadline::new("the gateway lists the backend");
        while !events.borrow().iter().any(|event| {
            matches!(event, GatewayEvent::Breaker { instance, .. } if *instance == backend_address)
        }) {
            deadline.next().await;
        }
        System {
            gateway: Addr::new(id("gateway"), GATEWAY_PORT),
            backend: backend_node,
            backend_address,
            received,
            events,
            _nodes: vec![registry_node, gateway_node],
            cluster,
        }
    }

    fn client(&self) -> NodeId {
        self.cluster.id("client").expect("a client node")
    }

    /// Sends `bytes` to the gateway from `socket` and parses the answer; also returns how
    /// long the answer took.
    async fn send(&self, socket: &Socket, bytes: Vec<u8>) -> (BackendResponse, Duration) {
        let started = time::now();
        let answer: ExternalAnswer = socket
            .call(self.gateway, &ExternalCall { bytes }, CLIENT_TIMEOUT)
            .await
            .expect("the gateway answers");
        let took = time::now() - started;
        (
            parse_response(&answer.bytes).expect("a readable answer"),
            took,
        )
    }

    async fn status(&self, socket: &Socket, bytes: Vec<u8>) -> u16 {
        self.send(socket, bytes).await.0.status
    }
}

#[test]
fn tokens_and_path_tricks_are_judged_before_any_backend_sees_a_request() {
    let root = TempRoot::new("admission");
    bounded(async {
        let system = System::start(&root).await;
        run_as(system.client(), async {
            let socket = Socket::bind(0).expect("an ephemeral port");
            let ann = valid_token("ann");

            // A genuine token is admitted and routed; the backend sees the token's principal,
            // not the spoofed header, and the normalised path.
            let spoofed = http(
                &[
                    "GET /api/orders/1?page=2 HTTP/1.1",
                    &format!("Authorization: Bearer {ann}"),
                    "X-Principal: root",
                ],
                "",
            );
            let (answer, _) = system.send(&socket, spoofed).await;
            assert_eq!(answer.status, 200, "{answer:?}");
            assert_eq!(answer.body["principal"], "ann");
            assert_eq!(answer.body["path"], "/api/orders/1");
            assert_eq!(answer.body["query"], "page=2");
            assert_eq!(answer.body["instance"], "orders-1");
            // A disguised path is normalised once, and that path is what the backend gets.
            let (answer, _) = system
                .send(&socket, get("/public/../api/%6frders//./1", Some(&ann)))
                .await;
            assert_eq!(answer.status, 200, "{answer:?}");
            assert_eq!(answer.body["path"], "/api/orders/1");

            // Tokens that are not genuine, or not valid now by the gateway's clock.
            let now = wall_s();
            let far = 10 * SKEW_S;
            let tampered = ann.replacen(".ann.", ".eve.", 1);
            let refused_tokens = [
                (
                    "expired",
                    token("ann", KEY_ID, SECRET, now - 2 * far, now - far),
                ),
                (
                    "not yet valid",
                    token("ann", KEY_ID, SECRET, now + far, now + 2 * far),
                ),
                (
                    "forged",
                    token("ann", KEY_ID, b"a guessed secret", now - 1, now + 300),
                ),
                (
                    "unknown key",
                    token("ann", "k9", SECRET, now - 1, now + 300),
                ),
                ("tampered", tampered),
                ("garbage", "not-a-token".to_string()),
            ];
            for (what, token) in &refused_tokens {
                let status = system
                    .status(&socket, get("/api/orders/1", Some(token)))
                    .await;
                assert_eq!(status, 401, "a token {what}");
            }
            assert_eq!(
                system.status(&socket, get("/api/orders/1", None)).await,
                401
            );

            // Path tricks: a detour through a public route still lands on the protected one
            // (so it needs a token); an escaped slash and a climb above the root are refused.
            for (path, expected) in [
                ("/public/../api/orders/1", 401),
                ("/public/%2e%2e/api/orders/1", 401),
                ("/public/..%2fapi/orders/1", 400),
                ("/api%2forders/1", 400),
                ("/public/../../api/orders/1", 400),
                ("/api/orders/1#fragment", 400),
            ] {
                let status = system.status(&socket, get(path, None)).await;
                assert_eq!(status, expected, "{path}");
            }

            // Only the two admitted requests reached the backend; the gateway's own events
            // agree.
            let received = system.received.borrow();
            assert_eq!(received.len(), 2, "{received:?}");
            assert!(received
                .iter()
                .all(|request| request.principal.as_deref() == Some("ann")
                    && request.path == "/api/orders/1"));
            let events = system.events.borrow();
            let admitted = events
                .iter()
                .filter(|event| matches!(event, GatewayEvent::Admitted { .. }))
                .count();
            let refused = events
                .iter()
                .filter(|event| matches!(event, GatewayEvent::Refused { .. }))
                .count();
            assert_eq!((admitted, refused), (2, refused_tokens.len() + 1 + 6));
        })
        .await;
    });
}

#[test]
fn the_rate_limit_answers_429_beyond_its_rate_and_admits_again_once_refilled() {
    let root = TempRoot::new("rate");
    bounded(async {
        let system = System::start(&root).await;
        run_as(system.client(), async {
            let socket = Socket::bind(0).expect("an ephemeral port");
            let flooder = valid_token("flo");
            // Twice the burst, back to back: a fresh key gets its whole burst, then 429s.
            let started = time::now();
            let mut statuses = Vec::new();
            let mut retry_after = Vec::new();
            for _ in 0..2 * BURST {
                let (answer, _) = system
                    .send(&socket, get("/api/orders/1", Some(&flooder)))
                    .await;
                if answer.status == 429 {
                    retry_after.push(answer.body["error"].clone());
                }
                statuses.push(answer.status);
            }
            let elapsed = time::now() - started;
            let admitted = statuses.iter().filter(|&&status| status == 200).count();
            assert!(
                statuses
                    .iter()
                    .all(|&status| status == 200 || status == 429),
                "{statuses:?}"
            );
            assert_eq!(
                &statuses[..BURST as usize],
                &[200; BURST as usize],
                "the burst is admitted"
            );
            // GCRA's bound: at most `burst + rate x d` in any interval `d`.
            let bound = BURST as f64 + f64::from(RATE_PER_S) * elapsed.as_secs_f64();
            assert!(
                admitted as f64 <= bound,
                "{admitted} admitted in {elapsed:?}: {statuses:?}"
            );
            // Beyond the burst, a 429 (unless this machine took longer than the refill of
            // every extra request, which no passing run comes near).
            let refill_all = Duration::from_secs(u64::from(BURST / RATE_PER_S));
            assert!(
                statuses.contains(&429) || elapsed >= refill_all,
                "{statuses:?} in {elapsed:?}"
            );
            assert!(
                retry_after
                    .iter()
                    .all(|error| error.as_str().is_some_and(|e| e.contains("retry after"))),
                "{retry_after:?}"
            );
            assert_eq!(
                system.received.borrow().len(),
                admitted,
                "refused requests never reach the backend"
            );

            // Refused requests cost nothing: the bucket refills and the key is admitted again.
            let deadline = Deadline::new("the flooder is admitted again");
            while system
                .status(&socket, get("/api/orders/1", Some(&flooder)))
                .await
                != 200
            {
                deadline.next().await;
            }
            // Another key was never limited by the flood.
            let other = valid_token("ann");
            assert_eq!(
                system
                    .status(&socket, get("/api/orders/2", Some(&other)))
                    .await,
                200
            );
        })
        .await;
    });
}

#[test]
fn a_killed_backend_makes_the_gateway_answer_an_error_in_time_and_a_restarted_one_is_served() {
    let root = TempRoot::new("killed");
    bounded(async {
        let system = System::start(&root).await;
        run_as(system.client(), async {
            let socket = Socket::bind(0).expect("an ephemeral port");
            assert_eq!(system.status(&socket, get("/public/a", None)).await, 200);

            // The backend dies; discovery still lists it (its lease runs on): attempts to it
            // time out, and the gateway answers 504 within its route timeout.
            system.backend.kill().await;
            let (answer, took) = system.send(&socket, get("/public/b", None)).await;
            assert_eq!(answer.status, 504, "{answer:?}");
            assert!(
                took >= PER_TRY_TIMEOUT,
                "it waited for the backend: {took:?}"
            );
            assert!(
                took <= ROUTE_TIMEOUT + ANSWER_SLACK,
                "answered in time: {took:?}"
            );
            eprintln!("a killed backend: answered {} in {took:?}", answer.status);
            let attempts = system
                .events
                .borrow()
                .iter()
                .filter(|event| {
                    matches!(event, GatewayEvent::Attempt { instance, .. }
                        if *instance == system.backend_address)
                })
                .count();
            assert!(attempts >= 2, "the GET was retried: {attempts} attempts");

            // Restarted, it registers again and is served again.
            system.backend.restart().await;
            let deadline = Deadline::new("the restarted backend is served");
            while system.status(&socket, get("/public/c", None)).await != 200 {
                deadline.next().await;
            }
        })
        .await;
    });
}

#[test]
fn a_request_larger_than_one_datagram_reaches_the_gateway_up_to_its_body_limit() {
    // An `ExternalCall` too large for one UDP datagram (65,507 bytes with the envelope) goes
    // over TCP, so the gateway's own limit decides, as in a simulation: a body of up to
    // `Limits::body_max_bytes` (64 KiB) is routed whole to the backend, and a longer one is
    // answered 413 without reaching it.
    let root = TempRoot::new("large");
    bounded(async {
        let system = System::start(&root).await;
        run_as(system.client(), async {
            let socket = Socket::bind(0).expect("an ephemeral port");
            let json_string = |length: usize| format!("\"{}\"", "x".repeat(length - 2));
            let post = |body: &str| http(&["POST /public/upload HTTP/1.1"], body);

            // A body that fits one datagram, and one that does not.
            let fits = post(&json_string(60_000));
            assert!(fits.len() < DATAGRAM_MAX_BYTES);
            assert_eq!(system.status(&socket, fits).await, 200);
            let body_max = Limits::default().body_max_bytes;
            let largest = post(&json_string(body_max));
            assert!(largest.len() > DATAGRAM_MAX_BYTES);
            assert_eq!(system.status(&socket, largest).await, 200);
            {
                let received = system.received.borrow();
                assert_eq!(received.len(), 2);
                assert_eq!(
                    received[1].body.as_str().map(str::len),
                    Some(body_max - 2),
                    "the backend got the largest body whole"
                );
            }

            // Beyond the gateway's limit: 413, and the backend sees nothing.
            let over = post(&json_string(body_max + 1));
            assert_eq!(system.status(&socket, over).await, 413);
            assert_eq!(system.received.borrow().len(), 2);
        })
        .await;
    });
}
