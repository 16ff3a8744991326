//! The registry replica on sim-core: requests over RPC, anti-entropy by datagrams, ticks on
//! the node's monotonic clock, and the state on the node's disk (written to a temporary file,
//! synced, renamed over the old one, directory synced) before any answer that depends on it.
//!
//! One loop takes requests, gossip and ticks (and sends its gossip to every peer each
//! [`RegistryNodeConfig::gossip_every`]), inputs first: after a stall the replica reads the
//! renewals waiting in its inbox before it judges a lease. A crash loses nothing the replica
//! answered: the state was durable before the answer.

use super::mutant::Mutant;
use super::registry::{
    Answer, Gossip, HeartbeatReply, Key, RegisterError, Registration, Replica, ReplicaConfig,
    WatchAnswer,
};
use super::Now;
use futures::{pin_mut, select_biased, FutureExt};
use serde::{Deserialize, Serialize};
use sim_core::disk;
use sim_core::net::{Addr, NetError, Request, Socket};
use sim_core::time;
use std::rc::Rc;
use std::time::Duration;

/// The port registry replicas listen on.
pub const REGISTRY_PORT: u16 = 53;

/// The file holding a replica's state.
const STATE_FILE: &str = "registry.state";

/// A request to a replica.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RegistryRequest {
    /// Register an instance.
    Register(Registration),
    /// Renew an instance's lease.
    Heartbeat {
        /// The instance.
        key: Key,
        /// Its incarnation.
        incarnation: u64,
    },
    /// Deregister an instance.
    Deregister {
        /// The instance.
        key: Key,
        /// Its incarnation.
        incarnation: u64,
    },
    /// Every record of a service.
    Discover {
        /// The service.
        service: String,
    },
    /// The watch events of a service after a cursor.
    Watch {
        /// The service.
        service: String,
        /// The replica that numbered the cursor.
        replica: u64,
        /// The last event applied.
        seq: u64,
    },
}

/// A replica's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RegistryResponse {
    /// To a registration.
    Registered(Result<(), RegisterError>),
    /// To a heartbeat.
    Heartbeat(HeartbeatReply),
    /// To a deregistration: whether it changed the record.
    Deregistered(bool),
    /// To a discovery.
    Discovered(Answer),
    /// To a watch.
    Watched(WatchAnswer),
    /// The replica could not store its state: nothing was answered for certain.
    Unavailable,
    /// The request names an invalid service or instance (empty, or too long).
    Refused(RegisterError),
}

/// How a registry node runs.
#[derive(Clone, Debug)]
pub struct RegistryNodeConfig {
    /// The replica's settings.
    pub replica: ReplicaConfig,
    /// The port it serves on ([`REGISTRY_PORT`] unless a deployment picks another).
    pub port: u16,
    /// The other replicas.
    pub peers: Vec<Addr>,
    /// How often it sends its state to every peer.
    pub gossip_every: Duration,
}

/// Called with `(key, incarnation)` when the replica marks it expired.
pub type OnExpired = Rc<dyn Fn(&Key, u64)>;

/// What a registry node tells its observer (a test harness): decisions, as they are taken.
#[derive(Clone)]
pub struct RegistryHooks {
    /// The replica marked `(key, incarnation)` expired.
    pub on_expired: OnExpired,
}

impl Default for RegistryHooks {
    fn default() -> Self {
        RegistryHooks {
            on_expired: Rc::new(|_, _| {}),
        }
    }
}

fn now() -> Now {
    Now::new(time::now().since_origin(), time::wall())
}

/// The replica's program: restores its state from disk (an unreadable state stops the node:
/// it never serves what it cannot vouch for), then serves until its node stops.
pub async fn run_registry(config: RegistryNodeConfig, hooks: RegistryHooks) {
    let socket = match Socket::bind(config.port) {
        Ok(socket) => socket,
        Err(error) => {
            // A real build may refuse the port (below 1024 without privileges): say so, once.
            return tracing::error!("the registry cannot bind port {}: {error}", config.port);
        }
    };
    let stored = match disk::open(STATE_FILE).await {
        Ok(file) => file.read_to_end().await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let replica = match Replica::restore(config.replica.clone(), now(), &stored) {
        Ok(replica) => replica,
        Err(error) => {
            tracing::error!(%error, "registry state unreadable: not serving");
            return;
        }
    };
    tracing::info!(replica = replica.id(), "registry replica up");
    let timer_first = config.replica.mutants.contains(Mutant::EvictAfterPause);
    let mut node = RegistryNode {
        replica,
        socket,
        config,
        hooks,
        timer_first,
    };
    node.run().await;
}

/// What the loop took next.
enum Input {
    Request(Result<(Request, RegistryRequest), NetError>),
    Gossip(Result<(Addr, Vec<Gossip>), NetError>),
    Tick,
}

struct RegistryNode {
    replica: Replica,
    socket: Socket,
    config: RegistryNodeConfig,
    hooks: RegistryHooks,
    /// Only under the `evict-after-pause` mutant.
    timer_first: bool,
}

impl RegistryNode {
    /// One loop, inputs before the timer: after a stall (a pause, a slow disk) the replica
    /// reads every renewal waiting in its inbox before it judges a lease.
    async fn run(&mut self) {
        let mut next_gossip = time::now().since_origin();
        loop {
            let deadline = self.replica.poll_timeout();
            let input = {
                let request = self.socket.recv_request::<RegistryRequest>().fuse();
                let gossip = self.socket.recv::<Vec<Gossip>>().fuse();
                let timer =
                    time::sleep_until(time::Instant::from_nanos(deadline.as_nanos() as u64)).fuse();
                pin_mut!(request, gossip, timer);
                if self.timer_first {
                    // The bug of `evict-after-pause`: after a stall the due tick runs before
                    // the renewals waiting in the inbox are read.
                    select_biased! {
                        () = timer => Input::Tick,
                        request = request => Input::Request(request),
                        gossip = gossip => Input::Gossip(gossip),
                    }
                } else {
                    select_biased! {
                        request = request => Input::Request(request),
                        gossip = gossip => Input::Gossip(gossip),
                        () = timer => Input::Tick,
                    }
                }
            };
            match input {
                Input::Request(Ok((request, body))) => {
                    let response = self.handle(body);
                    let response = if self.persist().await {
                        response
                    } else {
                        RegistryResponse::Unavailable
                    };
                    let _ = self.socket.reply(request, &response);
                }
                Input::Gossip(Ok((_, gossip))) => {
                    self.replica.merge(now(), gossip);
                    self.persist().await;
                }
                // A message that does not decode is skipped.
                Input::Request(Err(NetError::Decode { .. }))
                | Input::Gossip(Err(NetError::Decode { .. })) => {}
                Input::Request(Err(_)) | Input::Gossip(Err(_)) => return,
                Input::Tick => {
                    let now = now();
                    for key in self.replica.tick(now) {
                        let incarnation = self.replica.record(&key).map_or(0, |r| r.incarnation);
                        tracing::info!(%key, incarnation, "lease expired");
                        (self.hooks.on_expired)(&key, incarnation);
                    }
                    self.persist().await;
                    if now.monotonic >= next_gossip {
                        next_gossip = now.monotonic + self.config.gossip_every;
                        let gossip = self.replica.gossip(now);
                        for peer in &self.config.peers {
                            let _ = self.socket.send(*peer, &gossip);
                        }
                    }
                }
            }
        }
    }

    fn handle(&mut self, body: RegistryRequest) -> RegistryResponse {
        let now = now();
        let replica = &mut self.replica;
        let checked = match &body {
            RegistryRequest::Register(_) => Ok(()),
            RegistryRequest::Heartbeat { key, .. } | RegistryRequest::Deregister { key, .. } => {
                replica.check_key(key)
            }
            RegistryRequest::Discover { service } | RegistryRequest::Watch { service, .. } => {
                replica.check_service(service)
            }
        };
        if let Err(error) = checked {
            return RegistryResponse::Refused(error);
        }
        match body {
            RegistryRequest::Register(registration) => {
                let key = registration.key.clone();
                let result = replica.register(now, registration);
                tracing::debug!(%key, ?result, "register");
                RegistryResponse::Registered(result)
            }
            RegistryRequest::Heartbeat { key, incarnation } => {
                RegistryResponse::Heartbeat(replica.heartbeat(now, &key, incarnation))
            }
            RegistryRequest::Deregister { key, incarnation } => {
                tracing::debug!(%key, incarnation, "deregister");
                RegistryResponse::Deregistered(replica.deregister(&key, incarnation))
            }
            RegistryRequest::Discover { service } => {
                RegistryResponse::Discovered(replica.discover(&service))
            }
            RegistryRequest::Watch {
                service,
                replica: from,
                seq,
            } => RegistryResponse::Watched(replica.watch(&service, from, seq)),
        }
    }

    /// Stores the state if it changed; false if the disk failed (retried with the next change).
    async fn persist(&mut self) -> bool {
        if !self.replica.take_dirty() {
            return true;
        }
        match disk::replace_durably(STATE_FILE, &self.replica.state_bytes()).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "registry state not stored");
                self.replica.mark_dirty();
                false
            }
        }
    }
}
