//! Tasks that sim-core counts and can stop.
//!
//! Every task spawned through [`spawn`] (and every node's `init` future) is wrapped so that
//! each poll counts as one step of the run: a task that spins on [`yield_now`] ends the run as
//! `step_limit`, never as a hang. Once the run has stopped, wrapped tasks are never polled
//! again, so nothing happens after the first violation.
//!
//! Spawn node tasks through this module rather than `madsim::task::spawn`: sim-core only knows
//! which node a task belongs to (for the trace, the node's clock and its disk) when the task
//! was spawned here.

use crate::node::NodeId;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

pub use madsim::task::{yield_now, AbortHandle, JoinError, JoinHandle};

thread_local! {
    static CURRENT_NODE: Cell<Option<NodeId>> = const { Cell::new(None) };
}

/// The sim-core node whose task is being polled, or `None` on the supervisor.
pub fn current_node() -> Option<NodeId> {
    CURRENT_NODE.with(|cell| cell.get())
}

/// A future that counts its polls as steps and runs with its node marked current.
pub(crate) struct Counted<F> {
    node: Option<NodeId>,
    inner: Pin<Box<F>>,
}

impl<F: Future> Counted<F> {
    pub(crate) fn new(node: Option<NodeId>, future: F) -> Self {
        Counted {
            node,
            inner: Box::pin(future),
        }
    }
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // After a stop the task is frozen: it is never woken again and is dropped at teardown.
        if !crate::world::with(|world| world.step()) {
            return Poll::Pending;
        }
        let previous = CURRENT_NODE.with(|cell| cell.replace(self.node));
        let _restore = RestoreNode(previous);
        self.inner.as_mut().poll(cx)
    }
}

struct RestoreNode(Option<NodeId>);

impl Drop for RestoreNode {
    fn drop(&mut self) {
        CURRENT_NODE.with(|cell| cell.set(self.0));
    }
}

/// Spawns a task on the current node (or on the supervisor), counted by the step limit.
///
/// The future need not be `Send`: the whole simulation runs on one thread.
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let node = current_node();
    let handle = madsim::task::spawn_local(Counted::new(node, future));
    if node.is_none() {
        // Killing nodes at teardown does not reach supervisor tasks: remember them.
        let abort = handle.abort_handle();
        crate::world::with(|world| {
            if world.supervisor_tasks.len() >= 1024 {
                world.supervisor_tasks.retain(|task| !task.is_finished());
            }
            world.supervisor_tasks.push(abort);
        });
    }
    handle
}

/// A value that claims to be `Send` so that madsim's cross-node `spawn` accepts it.
///
/// SAFETY: a simulation runs on exactly one OS thread (madsim's executor polls every task on
/// the thread that called `block_on`, and it forbids spawning threads), so a value inside a
/// run is never touched from two threads. `OneThread` values never leave the run: sim-core
/// creates and unwraps them inside it.
pub(crate) struct OneThread<T>(T);

impl<T> OneThread<T> {
    pub(crate) fn new(value: T) -> Self {
        OneThread(value)
    }
}

// SAFETY: see the type's docs: one thread per run.
unsafe impl<T> Send for OneThread<T> {}

impl<F: Future + Unpin> Future for OneThread<F> {
    type Output = OneThread<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(OneThread)
    }
}

/// A task spawned on another node with [`crate::Sim::spawn_on`]: await it for its output.
pub struct NodeTask<T> {
    inner: JoinHandle<OneThread<T>>,
}

impl<T> NodeTask<T> {
    pub(crate) fn new(inner: JoinHandle<OneThread<T>>) -> Self {
        NodeTask { inner }
    }

    /// Cancels the task.
    pub fn abort(&self) {
        self.inner.abort();
    }

    /// Whether the task finished.
    pub fn is_finished(&self) -> bool {
        self.inner.is_finished()
    }
}

impl<T> Future for NodeTask<T> {
    type Output = Result<T, JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.inner)
            .poll(cx)
            .map(|result| result.map(|value| value.0))
    }
}
