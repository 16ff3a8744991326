//! The gateway as a sim-core node: external requests in (HTTP/1.1 bytes, carried as
//! [`ExternalCall`] until the tokio-compatible streams land), admitted by
//! [`crate::gateway::admit`], sent to backend instances found through discovery as typed
//! [`BackendRequest`]s, with [`crate::gateway::upstream`]'s balancing, breakers, ejection,
//! retries and timeouts; answers rendered back as HTTP/1.1 bytes.
//!
//! Operators reload the route table by version on [`ADMIN_PORT`] ([`AdminRequest`]).
//!
//! Every external request is handled in its own task. A background task follows discovery
//! (a watch per service, every [`GatewayConfig::refresh_every`]) and hands each service's up
//! instances to the upstream state. An instance's address is what it registered: its
//! sim-core address, `n<node>:<port>`.
//!
//! Answers: the backend's status and body; 503 when no instance is available; 504 when the
//! route timeout passes; 502 when the last attempt failed and no retry was allowed.

use crate::circuit_breaker::State as BreakerState;
use crate::discovery::client::DiscoveryClient;
use crate::discovery::mutant::Mutants as DiscoveryMutants;
use crate::discovery::registry::WatchAnswer;
use crate::gateway::admit::{admit, Clocks};
use crate::gateway::auth::{AuthConfig, KeyRing, Verifier};
use crate::gateway::http::{
    render_refusal, render_response, BackendRequest, BackendResponse, Limits,
};
use crate::gateway::limit::{LimitConfig, Limiter};
use crate::gateway::mutant::Mutants;
use crate::gateway::route::{Route, RouteTable};
use crate::gateway::upstream::{
    attempt_timeout, may_retry, AttemptOutcome, NoAttempt, UpstreamConfig, Upstreams,
};
use serde::{Deserialize, Serialize};
use sim_core::net::{Addr, NetError, Request, RpcError, Socket};
use sim_core::time;
use sim_core::NodeId;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};
use tracing::{debug, info, warn};

/// The port a gateway listens on by default.
pub const GATEWAY_PORT: u16 = 13;
/// The port a gateway takes operators' requests on ([`AdminRequest`]).
pub const ADMIN_PORT: u16 = 15;

/// An operator's request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Replace the route table with version `version`: taken only if it is newer than the
    /// one in use and valid (no conflict, normalised patterns). Requests already admitted
    /// finish on the table that admitted them.
    LoadRoutes {
        /// The new version.
        version: u64,
        /// The routes.
        routes: Vec<Route>,
    },
    /// The version in use.
    RoutesVersion,
}

/// A gateway's answer to an operator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminAnswer {
    /// The route table version now in use.
    Routes {
        /// The version.
        version: u64,
    },
    /// The table was refused; the version in use is unchanged.
    Refused {
        /// Why.
        reason: String,
        /// The version in use.
        version: u64,
    },
}

/// An external request: the bytes of one HTTP/1.1 request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalCall {
    /// The request's bytes.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// The gateway's answer: the bytes of one HTTP/1.1 response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalAnswer {
    /// The response's bytes.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// Settings of a gateway node.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The port to listen on.
    pub port: u16,
    /// The discovery replicas.
    pub registries: Vec<Addr>,
    /// The services to follow in discovery.
    pub services: Vec<String>,
    /// The route table's version.
    pub table_version: u64,
    /// The routes.
    pub routes: Vec<Route>,
    /// The signing keys.
    pub keys: KeyRing,
    /// Token checks.
    pub auth: AuthConfig,
    /// Rate limits (per replica).
    pub limit: LimitConfig,
    /// Upstream calls.
    pub upstream: UpstreamConfig,
    /// Request size limits.
    pub http: Limits,
    /// How often discovery is followed.
    pub refresh_every: Duration,
    /// The timeout of a discovery call.
    pub discovery_timeout: Duration,
    /// The deliberately broken variants switched on (none in production).
    pub mutants: Mutants,
}

/// What a gateway reports, for observation (tests, scenarios, logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatewayEvent {
    /// A request was refused before any backend saw it.
    Refused {
        /// Its id.
        request_id: u64,
        /// The status.
        status: u16,
    },
    /// A request was admitted.
    Admitted {
        /// Its id.
        request_id: u64,
        /// The route.
        route: String,
        /// The principal authenticated, if any.
        principal: Option<String>,
    },
    /// An attempt went to an instance.
    Attempt {
        /// The request.
        request_id: u64,
        /// The instance's address.
        instance: String,
        /// Whether it is a retry.
        retry: bool,
    },
    /// The request was answered.
    Answered {
        /// Its id.
        request_id: u64,
        /// The status.
        status: u16,
    },
    /// An instance's breaker changed state (an instance newly listed starts closed), reported
    /// before any attempt that the new state let through.
    Breaker {
        /// The instance's address.
        instance: String,
        /// Its breaker's new state.
        state: BreakerState,
    },
}

/// A callback for [`GatewayEvent`]s.
pub type GatewayHook = Rc<dyn Fn(&GatewayEvent)>;

/// Parses an address as sim-core prints it: `n<node>:<port>`.
pub fn parse_addr(text: &str) -> Option<Addr> {
    let (node, port) = text.strip_prefix('n')?.split_once(':')?;
    Some(Addr::new(NodeId(node.parse().ok()?), port.parse().ok()?))
}

struct Core {
    table: RouteTable,
    verifier: Verifier,
    limiter: Limiter,
    upstreams: Upstreams,
}

struct Gateway {
    config: GatewayConfig,
    core: RefCell<Core>,
    hook: GatewayHook,
    next_request: Cell<u64>,
    socket: Socket,
    /// Calls to backends.
    upstream_socket: Socket,
}

fn now() -> Duration {
    time::now().since_origin()
}

fn wall() -> Duration {
    time::wall()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// The gateway node's program. Returns only when its socket closes (or its configuration is
/// invalid: then it logs why).
pub async fn run_gateway(config: GatewayConfig, hook: GatewayHook) {
    let table = match RouteTable::new(
        config.table_version,
        config.routes.clone(),
        config.mutants.clone(),
    ) {
        Ok(table) => table,
        Err(error) => return warn!("the gateway's route table is refused: {error}"),
    };
    let limiter = match Limiter::new(config.limit.clone()) {
        Ok(limiter) => limiter,
        Err(error) => return warn!("the gateway's limits are refused: {error}"),
    };
    let upstreams = match Upstreams::new(config.upstream.clone()) {
        Ok(upstreams) => upstreams,
        Err(error) => return warn!("the gateway's upstream settings are refused: {error}"),
    };
    let (socket, upstream_socket) = match (Socket::bind(config.port), Socket::bind(0)) {
        (Ok(socket), Ok(upstream)) => (socket, upstream),
        (Err(error), _) | (_, Err(error)) => {
            return warn!(
                "the gateway cannot bind port {} or an upstream one: {error}",
                config.port
            )
        }
    };
    let verifier = Verifier::new(config.auth.clone(), config.keys.clone());
    let gateway = Rc::new(Gateway {
        core: RefCell::new(Core {
            table,
            verifier,
            limiter,
            upstreams,
        }),
        hook,
        next_request: Cell::new(1),
        socket,
        upstream_socket,
        config,
    });
    let admin = gateway.clone();
    sim_core::task::spawn(async move { admin.serve_admin().await });
    let follower = gateway.clone();
    sim_core::task::spawn(async move { follower.follow_discovery().await });
    loop {
        match gateway.socket.recv_request::<ExternalCall>().await {
            Ok((request, call)) => {
                let gateway = gateway.clone();
                sim_core::task::spawn(async move { gateway.serve(request, call).await });
            }
            Err(NetError::Decode { from, message }) => {
                debug!("an undecodable call from {from}: {message}");
            }
            Err(_) => return,
        }
    }
}

impl Gateway {
    /// Serves operators: route table reloads, by version.
    async fn serve_admin(&self) {
        let Ok(socket) = Socket::bind(ADMIN_PORT) else {
            return warn!("the gateway cannot bind its admin port {ADMIN_PORT}");
        };
        loop {
            let (request, body) = match socket.recv_request::<AdminRequest>().await {
                Ok(received) => received,
                Err(NetError::Decode { .. }) => continue,
                Err(_) => return,
            };
            let answer = match body {
                AdminRequest::RoutesVersion => AdminAnswer::Routes {
                    version: self.core.borrow().table.version(),
                },
                AdminRequest::LoadRoutes { version, routes } => self.load_routes(version, routes),
            };
            let _ = socket.reply(request, &answer);
        }
    }

    fn load_routes(&self, version: u64, routes: Vec<Route>) -> AdminAnswer {
        let mut core = self.core.borrow_mut();
        let in_use = core.table.version();
        if version <= in_use {
            return AdminAnswer::Refused {
                reason: format!("version {version} is not newer than {in_use}"),
                version: in_use,
            };
        }
        match RouteTable::new(version, routes, self.config.mutants.clone()) {
            Ok(table) => {
                info!("route table version {version} loaded (was {in_use})");
                core.table = table;
                AdminAnswer::Routes { version }
            }
            Err(error) => {
                warn!("route table version {version} refused: {error}");
                AdminAnswer::Refused {
                    reason: error.to_string(),
                    version: in_use,
                }
            }
        }
    }

    async fn follow_discovery(&self) {
        if self.config.registries.is_empty() {
            return warn!("the gateway knows no discovery replica");
        }
        let mut client = match DiscoveryClient::new(
            0,
            self.config.registries.clone(),
            0,
            self.config.discovery_timeout,
            DiscoveryMutants::none(),
        ) {
            Ok(client) => client,
            Err(error) => return warn!("the gateway cannot follow discovery: {error}"),
        };
        loop {
            for service in &self.config.services {
                let Some(watched) = client.watch(service).await else {
                    continue;
                };
                // Whether the answer says anything about the service.
                let changed = match &watched.answer {
                    WatchAnswer::Resync { .. } => true,
                    WatchAnswer::Events(events) => !events.is_empty(),
                };
                let instances: Vec<String> = client
                    .cache()
                    .healthy(service)
                    .into_iter()
                    .map(|(_, record)| record.address)
                    .filter(|address| parse_addr(address).is_some())
                    .collect();
                let mut core = self.core.borrow_mut();
                if changed {
                    core.upstreams.update_instances(service, instances, now());
                } else {
                    core.upstreams.set_instances(service, instances, now());
                }
                drop(core);
                self.report_breakers();
            }
            time::sleep(self.config.refresh_every).await;
        }
    }

    fn report(&self, event: GatewayEvent) {
        (self.hook)(&event);
    }

    /// Reports the breaker changes the upstream state noted (outside its borrow: the hook may
    /// do anything).
    fn report_breakers(&self) {
        let changes = self.core.borrow_mut().upstreams.take_breaker_changes();
        for (instance, state) in changes {
            self.report(GatewayEvent::Breaker { instance, state });
        }
    }

    async fn serve(&self, request: Request, call: ExternalCall) {
        let request_id =
            (u64::from(self.socket.local_addr().node.0) << 32) | self.next_request.get();
        self.next_request.set(self.next_request.get() + 1);
        let arrived = now();
        let client = request.from().to_string();
        let admitted = {
            let mut core = self.core.borrow_mut();
            let Core {
                table,
                verifier,
                limiter,
                ..
            } = &mut *core;
            let clocks = Clocks {
                monotonic: arrived,
                wall: wall(),
            };
            admit(
                &call.bytes,
                &client,
                request_id,
                clocks,
                &self.config.http,
                table,
                verifier,
                limiter,
            )
        };
        let bytes = match admitted {
            Err(refusal) => {
                debug!(
                    request_id,
                    status = refusal.status,
                    "refused: {}",
                    refusal.reason
                );
                self.report(GatewayEvent::Refused {
                    request_id,
                    status: refusal.status,
                });
                render_refusal(&refusal)
            }
            Ok(admitted) => {
                self.report(GatewayEvent::Admitted {
                    request_id,
                    route: admitted.request.route.clone(),
                    principal: admitted.request.principal.clone(),
                });
                let (status, body) = self
                    .call_upstream(&admitted.service, &admitted.request, arrived)
                    .await;
                self.report(GatewayEvent::Answered { request_id, status });
                render_response(status, &body)
            }
        };
        let _ = self.socket.reply(request, &ExternalAnswer { bytes });
    }

    /// Attempts until an answer, a refused retry, or the route timeout.
    async fn call_upstream(
        &self,
        service: &str,
        message: &BackendRequest,
        arrived: Duration,
    ) -> (u16, serde_json::Value) {
        let mut tried: Vec<String> = Vec::new();
        let mut last = (502u16, serde_json::json!({ "error": "no attempt" }));
        loop {
            let Some(timeout) = attempt_timeout(&self.config.upstream, arrived, now()) else {
                return (
                    504,
                    serde_json::json!({ "error": "the route timeout passed" }),
                );
            };
            let retry = !tried.is_empty();
            let started = self
                .core
                .borrow_mut()
                .upstreams
                .start(service, now(), &tried, retry);
            self.report_breakers();
            let attempt = match started {
                Ok(attempt) => attempt,
                Err(NoAttempt::NoInstance(_)) if !retry => {
                    return (
                        503,
                        serde_json::json!({ "error": format!("no instance of {service}") }),
                    );
                }
                Err(why) => {
                    debug!(request_id = message.request_id, "no retry: {why}");
                    return last;
                }
            };
            let instance = attempt.instance.clone();
            tried.push(instance.clone());
            self.report(GatewayEvent::Attempt {
                request_id: message.request_id,
                instance: instance.clone(),
                retry,
            });
            let addr = parse_addr(&instance).expect("instances are filtered by address");
            let answer: Result<BackendResponse, RpcError> =
                self.upstream_socket.call(addr, message, timeout).await;
            let outcome = match &answer {
                Ok(response) if response.status < 500 => AttemptOutcome::Success,
                Ok(_) => AttemptOutcome::Failure,
                Err(RpcError::Timeout { .. }) => AttemptOutcome::Timeout,
                Err(_) => AttemptOutcome::NotSent,
            };
            self.core
                .borrow_mut()
                .upstreams
                .finish(attempt, outcome, now());
            self.report_breakers();
            last = match answer {
                Ok(response) => (response.status, response.body),
                Err(RpcError::Timeout { .. }) => (
                    504,
                    serde_json::json!({ "error": "the backend did not answer in time" }),
                ),
                Err(error) => (502, serde_json::json!({ "error": error.to_string() })),
            };
            if !may_retry(message, outcome, &self.config.upstream.mutants) {
                if outcome != AttemptOutcome::Success {
                    info!(request_id = message.request_id, %instance, ?outcome, "not retried");
                }
                return last;
            }
            if tried.len() > self.config.upstream.retries_max as usize {
                return last;
            }
        }
    }
}
