//! Tasks in a real build: tokio local tasks that stay on their node.
//!
//! [`spawn`] spawns a tokio local task (node code need not be `Send`, as in the simulation) and
//! marks it as the current node's, so that sockets and files it opens are the node's and a
//! [`NodeHandle::kill`](crate::node::NodeHandle::kill) aborts it. Call it inside
//! [`block_on`](crate::node::block_on) or a tokio `LocalSet`.

use crate::node::OnNode;
use std::future::Future;

pub use crate::node::current_node;
pub use tokio::task::{yield_now, AbortHandle, JoinError, JoinHandle};

/// Spawns a local task on the current node (or outside any node).
///
/// # Panics
/// Outside a tokio `LocalSet` (use [`block_on`](crate::node::block_on)).
#[track_caller]
pub fn spawn<F>(future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let node = current_node();
    let handle = tokio::task::spawn_local(OnNode::new(node, future));
    if let Some(node) = node {
        crate::node::register(node, handle.abort_handle());
    }
    handle
}
