//! Errors of disk operations.
//!
//! Compiled by both builds: the simulated disk (`disk/`) and the real one (`real/disk.rs`)
//! return the same errors, so node code handles them the same way. Trace tags exist only in
//! the simulated build.

use crate::node::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An operation of the disk API, as named in errors and trace events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskOp {
    /// [`crate::disk::create`].
    Create,
    /// [`crate::disk::open`].
    Open,
    /// [`crate::disk::File::read_at`].
    Read,
    /// [`crate::disk::File::write_at`].
    Write,
    /// [`crate::disk::File::append`].
    Append,
    /// [`crate::disk::File::len`].
    Len,
    /// [`crate::disk::File::truncate`].
    Truncate,
    /// [`crate::disk::File::sync_all`] (fsync of a file).
    SyncAll,
    /// [`crate::disk::sync_dir`] (fsync of a directory).
    SyncDir,
    /// [`crate::disk::rename`].
    Rename,
    /// [`crate::disk::remove`].
    Remove,
    /// [`crate::disk::list`].
    List,
}

impl DiskOp {
    /// The lowercase name, as in traces.
    pub fn name(self) -> &'static str {
        match self {
            DiskOp::Create => "create",
            DiskOp::Open => "open",
            DiskOp::Read => "read",
            DiskOp::Write => "write",
            DiskOp::Append => "append",
            DiskOp::Len => "len",
            DiskOp::Truncate => "truncate",
            DiskOp::SyncAll => "sync_all",
            DiskOp::SyncDir => "sync_dir",
            DiskOp::Rename => "rename",
            DiskOp::Remove => "remove",
            DiskOp::List => "list",
        }
    }

    /// The tag of the operation in the trace hash; never renumber.
    #[cfg(madsim)]
    pub(crate) fn tag(self) -> u8 {
        match self {
            DiskOp::Create => 0,
            DiskOp::Open => 1,
            DiskOp::Read => 2,
            DiskOp::Write => 3,
            DiskOp::Append => 4,
            DiskOp::Len => 5,
            DiskOp::Truncate => 6,
            DiskOp::SyncAll => 7,
            DiskOp::SyncDir => 8,
            DiskOp::Rename => 9,
            DiskOp::Remove => 10,
            DiskOp::List => 11,
        }
    }
}

impl fmt::Display for DiskOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a disk operation failed.
///
/// Environment faults (`Io`, `NoSpace`) and ordinary file-system answers (`NotFound`,
/// `AlreadyExists`) are for the program to handle; `InvalidPath`, `InvalidInput`, `Stale`,
/// `WrongNode` and `NotOnNode` point at a bug in the program. `Os` is any other error of a real
/// operating system (a real build only: the simulated disk never returns it). Converts into
/// [`std::io::Error`] (the original stays available through
/// `get_ref().downcast_ref::<DiskError>()`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiskError {
    /// No file at this path.
    #[error("{path}: no such file")]
    NotFound {
        /// The path.
        path: String,
    },
    /// A file already exists at this path.
    #[error("{path}: file exists")]
    AlreadyExists {
        /// The path.
        path: String,
    },
    /// The path names a directory (files lie below it), not a file.
    #[error("{path}: is a directory")]
    IsADirectory {
        /// The path.
        path: String,
    },
    /// A component of the path is a file, not a directory.
    #[error("{path}: {file} is a file, not a directory")]
    NotADirectory {
        /// The path.
        path: String,
        /// The component that is a file.
        file: String,
    },
    /// The disk is full (capacity in bytes) or holds as many files as it can.
    #[error("{path}: no space left on the disk ({detail})")]
    NoSpace {
        /// The path.
        path: String,
        /// What ran out.
        detail: String,
    },
    /// An I/O error (EIO): injected by the simulated disk, or the device's in a real build.
    #[cfg_attr(madsim, error("{path}: I/O error during {op} (injected)"))]
    #[cfg_attr(not(madsim), error("{path}: I/O error during {op}"))]
    Io {
        /// The operation that failed.
        op: DiskOp,
        /// The path.
        path: String,
    },
    /// The path is not acceptable.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An argument is out of range (for example an offset past any possible file size).
    #[error("{path}: invalid input: {reason}")]
    InvalidInput {
        /// The path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The handle's file was removed (or replaced by a rename) since it was opened.
    #[error("{path}: the file was removed")]
    Removed {
        /// The path the handle was opened with.
        path: String,
    },
    /// The handle is from an older incarnation of the node (before a crash): it must not act
    /// on the disk of the new one.
    #[error(
        "{path}: stale handle from incarnation {handle_incarnation} of node {node} \
         (the node is now at incarnation {current_incarnation} or down)"
    )]
    Stale {
        /// The path the handle was opened with.
        path: String,
        /// The node.
        node: NodeId,
        /// The incarnation that opened the handle.
        handle_incarnation: u64,
        /// The node's incarnation now.
        current_incarnation: u64,
    },
    /// A handle of one node's disk was used by another node or by the supervisor.
    #[error("{path}: handle of node {handle_node} used on {used_on}")]
    WrongNode {
        /// The path the handle was opened with.
        path: String,
        /// The node whose disk the handle belongs to.
        handle_node: NodeId,
        /// Where it was used: a node, or the supervisor.
        used_on: String,
    },
    /// A node disk operation outside node code (on the supervisor, or in a task not spawned
    /// through [`crate::task::spawn`]); in a simulation the supervisor inspects disks through
    /// `DiskControl` (`Sim::disk`).
    #[cfg_attr(
        madsim,
        error(
            "{path}: disk operation outside node code (use it from a node's init or a task \
             spawned with sim_core::task::spawn; the supervisor uses Sim::disk(node))"
        )
    )]
    #[cfg_attr(
        not(madsim),
        error(
            "{path}: disk operation outside node code (use it from a node started with \
             Cluster::start or run_as, or a task spawned with sim_core::task::spawn)"
        )
    )]
    NotOnNode {
        /// The path.
        path: String,
    },
    /// Another error of the operating system, for which the simulated disk has no counterpart
    /// (a real build only): permission denied, a read-only file system, too many open files...
    #[error("{path}: {op} failed: {detail}")]
    Os {
        /// The operation that failed.
        op: DiskOp,
        /// The path.
        path: String,
        /// The kind of the operating system's error, kept by the conversion into
        /// [`std::io::Error`].
        kind: std::io::ErrorKind,
        /// The operating system's message.
        detail: String,
    },
}

/// The kind of a [`DiskError`], without its details (as recorded in the trace).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskErrorKind {
    /// [`DiskError::NotFound`].
    NotFound,
    /// [`DiskError::AlreadyExists`].
    AlreadyExists,
    /// [`DiskError::IsADirectory`].
    IsADirectory,
    /// [`DiskError::NotADirectory`].
    NotADirectory,
    /// [`DiskError::NoSpace`].
    NoSpace,
    /// [`DiskError::Io`].
    Io,
    /// [`DiskError::InvalidPath`].
    InvalidPath,
    /// [`DiskError::InvalidInput`].
    InvalidInput,
    /// [`DiskError::Removed`].
    Removed,
    /// [`DiskError::Stale`].
    Stale,
    /// [`DiskError::WrongNode`].
    WrongNode,
    /// [`DiskError::NotOnNode`].
    NotOnNode,
    /// [`DiskError::Os`] (a real build only).
    Os,
}

impl DiskErrorKind {
    /// The lowercase name, as in traces.
    pub fn name(self) -> &'static str {
        match self {
            DiskErrorKind::NotFound => "not_found",
            DiskErrorKind::AlreadyExists => "already_exists",
            DiskErrorKind::IsADirectory => "is_a_directory",
            DiskErrorKind::NotADirectory => "not_a_directory",
            DiskErrorKind::NoSpace => "no_space",
            DiskErrorKind::Io => "io",
            DiskErrorKind::InvalidPath => "invalid_path",
            DiskErrorKind::InvalidInput => "invalid_input",
            DiskErrorKind::Removed => "removed",
            DiskErrorKind::Stale => "stale",
            DiskErrorKind::WrongNode => "wrong_node",
            DiskErrorKind::NotOnNode => "not_on_node",
            DiskErrorKind::Os => "os",
        }
    }

    /// The tag of the kind in the trace hash; never renumber. (`Os` never reaches a trace: the
    /// simulated disk does not return it.)
    #[cfg(madsim)]
    pub(crate) fn tag(self) -> u8 {
        match self {
            DiskErrorKind::NotFound => 0,
            DiskErrorKind::AlreadyExists => 1,
            DiskErrorKind::IsADirectory => 2,
            DiskErrorKind::NotADirectory => 3,
            DiskErrorKind::NoSpace => 4,
            DiskErrorKind::Io => 5,
            DiskErrorKind::InvalidPath => 6,
            DiskErrorKind::InvalidInput => 7,
            DiskErrorKind::Removed => 8,
            DiskErrorKind::Stale => 9,
            DiskErrorKind::WrongNode => 10,
            DiskErrorKind::NotOnNode => 11,
            DiskErrorKind::Os => 12,
        }
    }

    /// The closest [`std::io::ErrorKind`]: what a real OS returns in the same situation
    /// (`Stale`, a handle that outlived a crash, is ESTALE). `Os` is `Other` here; a
    /// [`DiskError::Os`] converts with the kind it carries.
    pub fn io_kind(self) -> std::io::ErrorKind {
        use std::io::ErrorKind;
        match self {
            DiskErrorKind::NotFound | DiskErrorKind::Removed => ErrorKind::NotFound,
            DiskErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            DiskErrorKind::IsADirectory => ErrorKind::IsADirectory,
            DiskErrorKind::NotADirectory => ErrorKind::NotADirectory,
            DiskErrorKind::NoSpace => ErrorKind::StorageFull,
            DiskErrorKind::Io | DiskErrorKind::Os => ErrorKind::Other,
            DiskErrorKind::Stale => ErrorKind::StaleNetworkFileHandle,
            DiskErrorKind::InvalidPath
            | DiskErrorKind::InvalidInput
            | DiskErrorKind::WrongNode
            | DiskErrorKind::NotOnNode => ErrorKind::InvalidInput,
        }
    }
}

impl fmt::Display for DiskErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl DiskError {
    /// The kind of the error.
    pub fn kind(&self) -> DiskErrorKind {
        match self {
            DiskError::NotFound { .. } => DiskErrorKind::NotFound,
            DiskError::AlreadyExists { .. } => DiskErrorKind::AlreadyExists,
            DiskError::IsADirectory { .. } => DiskErrorKind::IsADirectory,
            DiskError::NotADirectory { .. } => DiskErrorKind::NotADirectory,
            DiskError::NoSpace { .. } => DiskErrorKind::NoSpace,
            DiskError::Io { .. } => DiskErrorKind::Io,
            DiskError::InvalidPath { .. } => DiskErrorKind::InvalidPath,
            DiskError::InvalidInput { .. } => DiskErrorKind::InvalidInput,
            DiskError::Removed { .. } => DiskErrorKind::Removed,
            DiskError::Stale { .. } => DiskErrorKind::Stale,
            DiskError::WrongNode { .. } => DiskErrorKind::WrongNode,
            DiskError::NotOnNode { .. } => DiskErrorKind::NotOnNode,
            DiskError::Os { .. } => DiskErrorKind::Os,
        }
    }

    /// Whether this is an environment fault the program should survive (an injected I/O error
    /// or a full disk), as opposed to a file-system answer or a program bug.
    pub fn is_fault(&self) -> bool {
        matches!(self.kind(), DiskErrorKind::Io | DiskErrorKind::NoSpace)
    }
}

impl From<DiskError> for std::io::Error {
    fn from(error: DiskError) -> Self {
        let kind = match &error {
            DiskError::Os { kind, .. } => *kind,
            _ => error.kind().io_kind(),
        };
        std::io::Error::new(kind, error)
    }
}
