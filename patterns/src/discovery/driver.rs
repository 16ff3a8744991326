//! The registry replica on sim-core: requests over RPC, anti-entropy by datagrams, ticks on
//! the node's monotonic clock, and the state on the node's disk (written to a temporary file,
//! synced, renamed over the old one, directory synced) before any answer that depends on it.
//!
//! Three tasks share the replica: the request loop, the gossip receiver, and the timer
//! (ticks, and a gossip to every peer each [`RegistryNodeConfig::gossip_every`]). A crash
//! loses nothing the replica answered: the state was durable before the answer.

use super::registry::{
    Answer, Gossip, HeartbeatReply, Key, RegisterError, Registration, Replica, ReplicaConfig,
    WatchAnswer,
};
use super::Now;
use futures::lock::Mutex;
use serde::{Deserialize, Serialize};
use sim_core::disk;
use sim_core::net::{Addr, Socket};
use sim_core::time;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// The port registry replicas listen on.
pub const REGISTRY_PORT: u16 = 53;

/// The file holding a replica's state.
const STATE_FILE: &str = "registry.state";
const STATE_TMP: &str = "registry.state.tmp";

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
}

/// How a registry node runs.
#[derive(Clone, Debug)]
pub struct RegistryNodeConfig {
    /// The replica's settings.
    pub replica: ReplicaConfig,
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
    let socket = Rc::new(Socket::bind(REGISTRY_PORT).expect("the registry binds its port"));
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
    let shared = Rc::new(Shared {
        replica: RefCell::new(replica),
        store_lock: Mutex::new(()),
    });
    let timer = sim_core::task::spawn(timer(shared.clone(), socket.clone(), config.clone(), hooks));
    let gossip = sim_core::task::spawn(receive_gossip(shared.clone(), socket.clone()));
    serve(&shared, &socket).await;
    drop((timer, gossip));
}

struct Shared {
    replica: RefCell<Replica>,
    /// One state write at a time.
    store_lock: Mutex<()>,
}

impl Shared {
    /// Stores the state if it changed; false if the disk failed.
    async fn persist(&self) -> bool {
        let _guard = self.store_lock.lock().await;
        let bytes = {
            let mut replica = self.replica.borrow_mut();
            if !replica.take_dirty() {
                return true;
            }
            replica.state_bytes()
        };
        match store(&bytes).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "registry state not stored");
                // Try again with the next change.
                self.replica.borrow_mut().mark_dirty();
                false
            }
        }
    }
}

async fn store(bytes: &[u8]) -> Result<(), disk::DiskError> {
    // A failed earlier attempt may have left the temporary file.
    let _ = disk::remove(STATE_TMP).await;
    let file = disk::create(STATE_TMP).await?;
    file.write_at(bytes, 0).await?;
    file.sync_all().await?;
    disk::rename(STATE_TMP, STATE_FILE).await?;
    disk::sync_dir("").await
}

async fn serve(shared: &Shared, socket: &Socket) {
    loop {
        let Ok((request, body)) = socket.recv_request::<RegistryRequest>().await else {
            return;
        };
        let now = now();
        let response = {
            let mut replica = shared.replica.borrow_mut();
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
        };
        let response = if shared.persist().await {
            response
        } else {
            RegistryResponse::Unavailable
        };
        let _ = socket.reply(request, &response);
    }
}

async fn receive_gossip(shared: Rc<Shared>, socket: Rc<Socket>) {
    loop {
        let Ok((_, gossip)) = socket.recv::<Vec<Gossip>>().await else {
            return;
        };
        shared.replica.borrow_mut().merge(now(), gossip);
        shared.persist().await;
    }
}

async fn timer(
    shared: Rc<Shared>,
    socket: Rc<Socket>,
    config: RegistryNodeConfig,
    hooks: RegistryHooks,
) {
    let mut next_gossip = time::now().since_origin();
    loop {
        let deadline = shared.replica.borrow().poll_timeout();
        time::sleep_until(time::Instant::from_nanos(deadline.as_nanos() as u64)).await;
        let now = now();
        let expired = shared.replica.borrow_mut().tick(now);
        for key in &expired {
            let incarnation = shared
                .replica
                .borrow()
                .record(key)
                .map_or(0, |record| record.incarnation);
            tracing::info!(%key, incarnation, "lease expired");
            (hooks.on_expired)(key, incarnation);
        }
        shared.persist().await;
        if now.monotonic >= next_gossip {
            next_gossip = now.monotonic + config.gossip_every;
            let gossip = shared.replica.borrow().gossip(now);
            for peer in &config.peers {
                let _ = socket.send(*peer, &gossip);
            }
        }
    }
}
