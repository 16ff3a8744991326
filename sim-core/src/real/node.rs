//! Nodes in a real build: an address book of the nodes ([`Cluster`]), which node a task belongs
//! to, and a node's life in this process ([`NodeHandle`]: start, kill, restart).
//!
//! In a simulation, sim-core knows every node. In production each process knows the nodes of
//! its deployment from its configuration: a [`Cluster`] lists them, each with a name, an IP
//! address and a data folder, and a [`NodeId`] is a node's index in that list. Node code keeps
//! the simulated build's calls: [`Socket::bind`](crate::net::Socket::bind) binds on the
//! current node's address, [`Addr`](crate::net::Addr) names a node and a port, files open
//! under the node's data folder ([`crate::disk`]), [`task::spawn`](crate::task::spawn) keeps a
//! task on its node.
//!
//! Everything runs on one thread, as in the simulation: node code need not be `Send`, so its
//! tasks are tokio *local* tasks. [`block_on`] runs a future on a current-thread tokio runtime
//! inside a `LocalSet`; call node code from there (or from your own `LocalSet`).
//!
//! ```no_run
//! use sim_core::node::{block_on, Cluster};
//! use sim_core::net::{Addr, Socket};
//! use std::time::Duration;
//!
//! block_on(async {
//!     // Two nodes on loopback addresses of their own, data under a temporary folder.
//!     let cluster = Cluster::loopback(&["server", "client"], &std::env::temp_dir().join("demo"))
//!         .expect("a valid cluster");
//!     let server = cluster.id("server").unwrap();
//!     let node = cluster.start(server, || async {
//!         let socket = Socket::bind(7000).expect("port 7000 is free");
//!         socket.serve(|_from, n: u64| async move { n * 2 }).await;
//!     });
//!     let client = cluster.start(cluster.id("client").unwrap(), move || async move {
//!         let socket = Socket::bind(0).unwrap();
//!         let doubled: u64 = socket
//!             .call(Addr::new(server, 7000), &21u64, Duration::from_secs(1))
//!             .await
//!             .unwrap();
//!         assert_eq!(doubled, 42);
//!     });
//!     node.kill().await; // every task of the node aborted, its sockets closed
//!     node.restart().await; // its init runs again
//!     # drop(client);
//! });
//! ```
//!
//! Several nodes may share one process (tests, or a small deployment); each process installs
//! one cluster per thread. On Linux every address of `127.0.0.0/8` is a loopback address, so
//! [`Cluster::loopback`] gives each node its own; elsewhere add the aliases to the loopback
//! interface or use [`Cluster::add`] with addresses of your own.

pub use crate::node_id::NodeId;

use futures::future::LocalBoxFuture;
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

/// One node of a [`Cluster`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    /// Its name (unique in the cluster).
    pub name: String,
    /// The address its sockets bind on and its peers send to.
    pub ip: IpAddr,
    /// The folder its files live under ([`crate::disk`], [`crate::fs`] with relative paths).
    pub data_dir: PathBuf,
}

/// A cluster that cannot be built as asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClusterError {
    /// Two nodes with one name.
    #[error("node name `{0}` is used twice")]
    DuplicateName(String),
    /// Two nodes with one address.
    #[error("address {0} is given to two nodes")]
    DuplicateIp(IpAddr),
    /// An empty node name.
    #[error("a node name must not be empty")]
    EmptyName,
    /// More nodes than a loopback block holds.
    #[error("at most 254 nodes on loopback, got {0}")]
    TooManyNodes(usize),
}

/// The nodes a process knows: the address book of a real deployment.
///
/// Cheap to clone (shared). A [`NodeId`] is a node's index in the order nodes were added.
#[derive(Clone, Debug, Default)]
pub struct Cluster {
    nodes: Rc<RefCell<Vec<NodeSpec>>>,
}

impl Cluster {
    /// An empty cluster.
    pub fn new() -> Self {
        Cluster::default()
    }

    /// A cluster of `names` on loopback, each node on an address of its own
    /// (`127.<a>.<b>.<index + 1>`, with `<a>.<b>` different for every cluster this process
    /// makes, and derived from the process id, so that parallel tests do not collide), with
    /// its data in `data_root/<name>`.
    pub fn loopback(names: &[&str], data_root: &Path) -> Result<Cluster, ClusterError> {
        static CLUSTERS: AtomicU32 = AtomicU32::new(0);
        if names.len() > 254 {
            return Err(ClusterError::TooManyNodes(names.len()));
        }
        let block = std::process::id()
            .wrapping_mul(97)
            .wrapping_add(CLUSTERS.fetch_add(1, Ordering::Relaxed));
        // Second octet 1..=254, third 0..=255: 65,024 blocks before one repeats.
        let a = 1 + (block / 256) % 254;
        let b = block % 256;
        let cluster = Cluster::new();
        for (index, name) in names.iter().enumerate() {
            let ip = IpAddr::V4(Ipv4Addr::new(127, a as u8, b as u8, index as u8 + 1));
            cluster.add(*name, ip, data_root.join(name))?;
        }
        Ok(cluster)
    }

    /// Adds a node; its id is its index.
    pub fn add(
        &self,
        name: impl Into<String>,
        ip: IpAddr,
        data_dir: impl Into<PathBuf>,
    ) -> Result<NodeId, ClusterError> {
        let name = name.into();
        let mut nodes = self.nodes.borrow_mut();
        if name.is_empty() {
            return Err(ClusterError::EmptyName);
        }
        if nodes.iter().any(|node| node.name == name) {
            return Err(ClusterError::DuplicateName(name));
        }
        if nodes.iter().any(|node| node.ip == ip) {
            return Err(ClusterError::DuplicateIp(ip));
        }
        let id = NodeId(u32::try_from(nodes.len()).expect("fewer than 2^32 nodes"));
        nodes.push(NodeSpec {
            name,
            ip,
            data_dir: data_dir.into(),
        });
        Ok(id)
    }

    /// The node called `name`.
    pub fn id(&self, name: &str) -> Option<NodeId> {
        let nodes = self.nodes.borrow();
        let index = nodes.iter().position(|node| node.name == name)?;
        Some(NodeId(index as u32))
    }

    /// The node at `ip`.
    pub fn id_of_ip(&self, ip: IpAddr) -> Option<NodeId> {
        let nodes = self.nodes.borrow();
        let index = nodes.iter().position(|node| node.ip == ip)?;
        Some(NodeId(index as u32))
    }

    /// Node `node`'s settings.
    pub fn spec(&self, node: NodeId) -> Option<NodeSpec> {
        self.nodes.borrow().get(node.0 as usize).cloned()
    }

    /// Every node, in id order.
    pub fn nodes(&self) -> Vec<NodeId> {
        (0..self.nodes.borrow().len() as u32).map(NodeId).collect()
    }

    /// Makes this the cluster of the current thread: the one [`Addr`](crate::net::Addr)s are
    /// resolved in. [`Cluster::start`] does it too. A production process calls it once, with
    /// its whole deployment, before it runs node code with [`run_as`].
    pub fn install(&self) {
        CLUSTER.with(|cell| *cell.borrow_mut() = Some(self.clone()));
    }

    /// Starts `node` in this process: its `init` runs as a local task marked as the node's
    /// (call from inside [`block_on`] or a tokio `LocalSet`). `init` runs again on every
    /// [`NodeHandle::restart`].
    ///
    /// # Panics
    /// If `node` is not in the cluster, or outside a `LocalSet`.
    pub fn start<F, Fut>(&self, node: NodeId, init: F) -> NodeHandle
    where
        F: Fn() -> Fut + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        assert!(
            self.spec(node).is_some(),
            "node {node} is not in this cluster"
        );
        self.install();
        let handle = NodeHandle {
            inner: Rc::new(NodeInner {
                node,
                init: Box::new(move || Box::pin(init())),
                tasks: RefCell::new(Vec::new()),
                incarnation: Cell::new(0),
                running: Cell::new(false),
            }),
        };
        RUNNING.with(|running| {
            let mut running = running.borrow_mut();
            running.retain(|other| other.node != node);
            running.push(handle.inner.clone());
        });
        handle.boot();
        handle
    }
}

thread_local! {
    static CLUSTER: RefCell<Option<Cluster>> = const { RefCell::new(None) };
    static RUNNING: RefCell<Vec<Rc<NodeInner>>> = const { RefCell::new(Vec::new()) };
    static CURRENT: Cell<Option<NodeId>> = const { Cell::new(None) };
}

/// The cluster installed on this thread.
pub fn cluster() -> Option<Cluster> {
    CLUSTER.with(|cell| cell.borrow().clone())
}

/// The settings of the node whose code is running, if any.
pub(crate) fn current_spec() -> Option<(NodeId, NodeSpec)> {
    let node = current_node()?;
    let spec = cluster()?.spec(node)?;
    Some((node, spec))
}

/// The node whose task is running (`None` outside node code).
pub fn current_node() -> Option<NodeId> {
    CURRENT.with(|cell| cell.get())
}

/// The address of `node` in the installed cluster.
pub(crate) fn ip_of(node: NodeId) -> Option<IpAddr> {
    Some(cluster()?.spec(node)?.ip)
}

/// The node at `ip` in the installed cluster.
pub(crate) fn node_of_ip(ip: IpAddr) -> Option<NodeId> {
    cluster()?.id_of_ip(ip)
}

/// Runs `future` as node `node`'s code (for a process that is one node: its `main` after
/// [`Cluster::install`]). Tasks it spawns through [`crate::task::spawn`] are the node's too.
pub async fn run_as<F: Future>(node: NodeId, future: F) -> F::Output {
    OnNode::new(Some(node), future).await
}

/// Runs `future` to completion on a new current-thread tokio runtime (time and I/O on),
/// inside a `LocalSet`, so that node tasks (which need not be `Send`) can be spawned.
///
/// # Panics
/// If the runtime cannot be built (the operating system refuses its resources).
pub fn block_on<F: Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for this thread");
    let local = tokio::task::LocalSet::new();
    let output = local.block_on(&runtime, future);
    // Nodes started here die with the runtime.
    RUNNING.with(|running| running.borrow_mut().clear());
    output
}

struct NodeInner {
    node: NodeId,
    init: Box<dyn Fn() -> LocalBoxFuture<'static, ()>>,
    tasks: RefCell<Vec<tokio::task::AbortHandle>>,
    incarnation: Cell<u64>,
    running: Cell<bool>,
}

/// A node started in this process; see [`Cluster::start`].
#[derive(Clone)]
pub struct NodeHandle {
    inner: Rc<NodeInner>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeHandle")
            .field("node", &self.inner.node)
            .field("incarnation", &self.inner.incarnation.get())
            .field("running", &self.inner.running.get())
            .finish()
    }
}

impl NodeHandle {
    /// The node.
    pub fn id(&self) -> NodeId {
        self.inner.node
    }

    /// How many times the node was restarted.
    pub fn incarnation(&self) -> u64 {
        self.inner.incarnation.get()
    }

    /// Whether the node runs (not killed).
    pub fn is_running(&self) -> bool {
        self.inner.running.get()
    }

    /// Kills the node as a crash of its process would: every task of the node (its `init`, and
    /// what it spawned through [`crate::task::spawn`]) is aborted and dropped, with the sockets
    /// and files they held. Returns once they are all gone (so a restart can bind the same
    /// ports). Unsynced writes are *not* lost: a real kernel keeps them past a process crash;
    /// only a machine crash loses them.
    ///
    /// Not killed: tasks started with tokio's own `spawn` or `spawn_local` (sim-core does not
    /// know they are the node's), and a file operation already handed to tokio's blocking
    /// pool, which completes after the kill (a real crash would stop it). A test that
    /// restarts a node right after a kill while it was writing may see that last write land.
    pub async fn kill(&self) {
        self.inner.running.set(false);
        let tasks = std::mem::take(&mut *self.inner.tasks.borrow_mut());
        for task in &tasks {
            task.abort();
        }
        // An aborted local task is dropped when the LocalSet next runs it.
        while tasks.iter().any(|task| !task.is_finished()) {
            tokio::task::yield_now().await;
        }
    }

    /// Kills the node if it runs, then runs its `init` again.
    pub async fn restart(&self) {
        if self.is_running() {
            self.kill().await;
        }
        self.inner.incarnation.set(self.inner.incarnation.get() + 1);
        self.boot();
    }

    fn boot(&self) {
        self.inner.running.set(true);
        let init = (self.inner.init)();
        let node = self.inner.node;
        let task = tokio::task::spawn_local(OnNode::new(Some(node), init));
        register(node, task.abort_handle());
    }
}

/// Remembers a task of `node`, so that a kill aborts it.
pub(crate) fn register(node: NodeId, task: tokio::task::AbortHandle) {
    RUNNING.with(|running| {
        let running = running.borrow();
        if let Some(inner) = running.iter().find(|inner| inner.node == node) {
            let mut tasks = inner.tasks.borrow_mut();
            if tasks.len() >= 1024 {
                tasks.retain(|task| !task.is_finished());
            }
            tasks.push(task);
        }
    });
}

/// A future that runs with its node marked current, as the simulation's tasks do.
pub(crate) struct OnNode<F> {
    node: Option<NodeId>,
    inner: std::pin::Pin<Box<F>>,
}

impl<F: Future> OnNode<F> {
    pub(crate) fn new(node: Option<NodeId>, future: F) -> Self {
        OnNode {
            node,
            inner: Box::pin(future),
        }
    }
}

impl<F: Future> Future for OnNode<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let previous = CURRENT.with(|cell| cell.replace(self.node));
        let _restore = Restore(previous);
        self.inner.as_mut().poll(cx)
    }
}

struct Restore(Option<NodeId>);

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.with(|cell| cell.set(self.0));
    }
}
