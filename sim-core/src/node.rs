//! Nodes and the supervisor's handle, [`Sim`].
//!
//! A node is a named simulated process with an `init` future that runs when the node is added
//! and again on every restart. Crash, restart, pause and resume are the only lifecycle paths,
//! and each applies its effects in one fixed order:
//!
//! 1. the trace event (`crash`, `restart`, `pause`, `resume`);
//! 2. on a crash: the disk's crash model (unsynced writes lost or torn, see [`crate::disk`]);
//! 3. on a crash: the network closes the node's sockets and drops what was queued for it;
//! 4. madsim kills (or restarts, pauses, resumes) the node's tasks.
//!
//! A restart of a node that is still running crashes it first, so a restart can never skip the
//! crash effects. The clock is hardware: it survives crashes.

use crate::time::{ClockConfig, ClockControl, ClockState};
use crate::trace::{Event, NodeEvent};
use futures::future::LocalBoxFuture;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::marker::PhantomData;
use std::rc::Rc;
use std::time::Duration;

pub use crate::node_id::NodeId;

/// Where a node is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Running.
    Up,
    /// Frozen: makes no progress while time and the other nodes go on.
    Paused,
    /// Crashed and not restarted yet.
    Down,
    /// Its `init` future returned.
    Exited,
}

/// A node's program. It lives in the world (a thread-local of the run's thread), so neither it
/// nor the state it captures need be `Send` or `Sync`: madsim's own init closure, which must
/// be, only carries the node's id and looks the program up when it runs.
type InitFn = Rc<dyn Fn() -> LocalBoxFuture<'static, ()>>;

pub(crate) struct NodeEntry {
    pub name: String,
    pub madsim_id: Option<madsim::task::NodeId>,
    pub state: NodeState,
    pub incarnation: u64,
    pub clock: ClockState,
    pub init: Option<InitFn>,
}

/// The supervisor's handle: adds nodes, injects node and clock faults, reads true time.
///
/// It is only usable on the run's thread (it is neither `Send` nor `Sync`).
#[derive(Clone, Debug)]
pub struct Sim {
    _not_send: PhantomData<Rc<()>>,
}

impl Sim {
    pub(crate) fn new() -> Self {
        Sim {
            _not_send: PhantomData,
        }
    }

    /// The run's seed.
    pub fn seed(&self) -> u64 {
        crate::world::with(|world| world.seed)
    }

    /// Starts building a node called `name` (names are unique within a run).
    pub fn node(&self, name: impl Into<String>) -> NodeBuilder {
        NodeBuilder {
            name: name.into(),
            init: None,
            clock: ClockConfig::default(),
        }
    }

    /// The id of the node called `name`.
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        crate::world::with(|world| {
            world
                .nodes
                .iter()
                .position(|node| node.name == name)
                .map(|index| NodeId(index as u32))
        })
    }

    /// All nodes, in the order they were added.
    pub fn nodes(&self) -> Vec<NodeId> {
        crate::world::with(|world| (0..world.nodes.len() as u32).map(NodeId).collect())
    }

    /// The name of a node.
    pub fn node_name(&self, node: NodeId) -> String {
        crate::world::with(|world| world.node(node).name.clone())
    }

    /// Where a node is in its life.
    pub fn node_state(&self, node: NodeId) -> NodeState {
        crate::world::with(|world| world.node(node).state)
    }

    /// How many times a node was restarted.
    pub fn incarnation(&self, node: NodeId) -> u64 {
        crate::world::with(|world| world.node(node).incarnation)
    }

    /// Crashes a node (see the module docs for the order of effects): also an exited one, whose
    /// disk loses what it had not synced. Does nothing if it is already down.
    pub fn crash(&self, node: NodeId) {
        crash(node);
    }

    /// Restarts a node: crashes it first if it is still running or paused, then runs its
    /// `init` again on the surviving disk.
    pub fn restart(&self, node: NodeId) {
        restart(node);
    }

    /// Freezes a node: none of its tasks run until [`Sim::resume`], while time and other
    /// nodes go on (a long GC pause). Messages for it queue up.
    pub fn pause(&self, node: NodeId) {
        let madsim_id = crate::world::with(|world| {
            let entry = world.node(node);
            if entry.state != NodeState::Up {
                return None;
            }
            let id = entry.madsim_id;
            world.node_mut(node).state = NodeState::Paused;
            world.record(Some(node), Event::Node(NodeEvent::Pause));
            id
        });
        if let Some(id) = madsim_id {
            madsim::runtime::Handle::current().pause(id);
        }
    }

    /// Thaws a paused node.
    pub fn resume(&self, node: NodeId) {
        let madsim_id = crate::world::with(|world| {
            let entry = world.node(node);
            if entry.state != NodeState::Paused {
                return None;
            }
            let id = entry.madsim_id;
            world.node_mut(node).state = NodeState::Up;
            world.record(Some(node), Event::Node(NodeEvent::Resume));
            id
        });
        if let Some(id) = madsim_id {
            madsim::runtime::Handle::current().resume(id);
        }
    }

    /// Control of a node's clock.
    pub fn clock(&self, node: NodeId) -> ClockControl {
        // Fail here, with the node's id, rather than later inside a clock operation.
        crate::world::with(|world| {
            world.node(node);
        });
        ClockControl { node }
    }

    /// Spawns a task on `node` from the supervisor (for example a client's workload). The task
    /// dies with the node like any of its tasks; the step limit counts its polls. The future
    /// need not be `Send`.
    pub fn spawn_on<F>(&self, node: NodeId, future: F) -> crate::task::NodeTask<F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let madsim_id = crate::world::with(|world| world.node(node).madsim_id)
            .expect("sim-core: every built node has a madsim id");
        let handle = madsim::runtime::Handle::current()
            .get_node(madsim_id)
            .expect("sim-core: madsim knows every built node");
        let future = crate::task::OneThread::new(crate::task::Counted::new(Some(node), future));
        crate::task::NodeTask::new(handle.spawn(future))
    }

    /// Control of the network: partitions, link faults, hold and release.
    pub fn net(&self) -> crate::net::NetControl {
        crate::net::NetControl::new()
    }

    /// Control of a node's disk: fault modes and corruption.
    pub fn disk(&self, node: NodeId) -> crate::disk::DiskControl {
        crate::world::with(|world| {
            world.node(node);
        });
        crate::disk::DiskControl::new(node)
    }

    /// True simulated time since the start of the run.
    pub fn now(&self) -> Duration {
        crate::world::with(|world| world.now())
    }

    /// Sleeps for `duration` of true time (at least 1 ms).
    pub async fn sleep(&self, duration: Duration) {
        crate::time::sleep(duration).await
    }

    /// Turns buggify on or off for the rest of the run.
    pub fn set_buggify(&self, enabled: bool) {
        crate::world::with(|world| world.buggify.enabled = enabled);
    }

    /// Puts buggify back to the run's configured setting (`SimConfig::buggify.enabled`).
    pub fn reset_buggify(&self) {
        crate::world::with(|world| world.buggify.enabled = world.config.buggify.enabled);
    }
}

/// Builder of a node, from [`Sim::node`].
#[must_use = "call .build() to add the node"]
pub struct NodeBuilder {
    name: String,
    init: Option<InitFn>,
    clock: ClockConfig,
}

impl NodeBuilder {
    /// The node's program: called when the node is added and again on every restart.
    ///
    /// When the future returns, the node exits (as a process whose `main` returns): its other
    /// tasks stop too. Keep `init` pending for as long as the node should run. The closure
    /// should only build the future: madsim calls it while holding its node table lock.
    ///
    /// Neither the closure nor its future need be `Send`: a run is single-threaded, so state
    /// shared between nodes and the scenario can be `Rc<RefCell<..>>`.
    pub fn init<F, Fut>(mut self, init: F) -> Self
    where
        F: Fn() -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.init = Some(Rc::new(move || Box::pin(init())));
        self
    }

    /// The node's clock at the start.
    pub fn clock(mut self, clock: ClockConfig) -> Self {
        self.clock = clock;
        self
    }

    /// Adds the node and starts its `init`.
    ///
    /// # Panics
    /// If a node with the same name exists (a bug in the test, not an environment fault).
    pub fn build(self) -> NodeId {
        let NodeBuilder { name, init, clock } = self;
        let id = crate::world::with(|world| {
            assert!(
                world.nodes.iter().all(|node| node.name != name),
                "sim-core: a node called {name:?} already exists"
            );
            let id = NodeId(world.nodes.len() as u32);
            let now_ns = world.now().as_nanos() as u64;
            world.nodes.push(NodeEntry {
                name: name.clone(),
                madsim_id: None,
                state: NodeState::Up,
                incarnation: 0,
                clock: ClockState::new(clock, now_ns),
                init: init.clone(),
            });
            world.net.add_node(id);
            world.disk.add_node(id);
            world.record(Some(id), Event::Node(NodeEvent::Start));
            id
        });
        let handle = madsim::runtime::Handle::current();
        let mut builder = handle.create_node().name(name);
        if init.is_some() {
            builder = builder.init(move || {
                let init = crate::world::with(|world| world.node(id).init.clone())
                    .expect("sim-core: a node built with init keeps it");
                let program = init();
                crate::task::Counted::new(Some(id), async move {
                    program.await;
                    crate::world::with(|world| {
                        if world.node(id).state == NodeState::Up {
                            world.node_mut(id).state = NodeState::Exited;
                            world.record(Some(id), Event::Node(NodeEvent::Exit));
                        }
                    });
                })
            });
        }
        let madsim_id = builder.build().id();
        crate::world::with(|world| {
            world.node_mut(id).madsim_id = Some(madsim_id);
        });
        id
    }
}

/// Crashes `node`; see [`Sim::crash`].
pub(crate) fn crash(node: NodeId) {
    let madsim_id = crate::world::with(|world| {
        // An exited node is still a machine: a crash is a power loss for its disk too.
        let state = world.node(node).state;
        if !matches!(state, NodeState::Up | NodeState::Paused | NodeState::Exited) {
            return None;
        }
        world.record(Some(node), Event::Node(NodeEvent::Crash));
        crate::disk::on_crash(world, node);
        crate::net::on_crash(world, node);
        let entry = world.node_mut(node);
        entry.state = NodeState::Down;
        entry.clock.sleepers.clear();
        entry.madsim_id
    });
    if let Some(id) = madsim_id {
        madsim::runtime::Handle::current().kill(id);
    }
}

/// Restarts `node`; see [`Sim::restart`].
pub(crate) fn restart(node: NodeId) {
    crash(node);
    let madsim_id = crate::world::with(|world| {
        let entry = world.node_mut(node);
        entry.state = NodeState::Up;
        entry.incarnation += 1;
        let id = entry.madsim_id;
        world.net.restart_node(node);
        world.record(Some(node), Event::Node(NodeEvent::Restart));
        id
    });
    if let Some(id) = madsim_id {
        madsim::runtime::Handle::current().restart(id);
    }
}
