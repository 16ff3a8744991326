//! Files and directories with the shapes of `tokio::fs`, over the simulated disk.
//!
//! A service written against `tokio::fs` runs on the simulated disk when its imports are
//! switched by a cfg:
//!
//! ```
//! #[cfg(madsim)]
//! use sim_core::fs;
//! #[cfg(not(madsim))]
//! use tokio::fs;
//! ```
//!
//! This module is a thin layer: every read, write, open, create, rename, remove, listing and
//! sync is one or more calls of [`crate::disk`]'s functions, so injected faults, latency,
//! crash models and trace events apply exactly as to the disk API. Like the disk, it works
//! only in node code (a node's `init` or a task spawned through [`crate::task::spawn`]).
//!
//! ```
//! use sim_core::{fs, run, SimConfig};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! let report = run(7, SimConfig::default(), |sim| async move {
//!     sim.node("db")
//!         .init(|| async {
//!             fs::create_dir_all("/data").await.unwrap();
//!             let mut log = fs::File::create("/data/log").await.unwrap();
//!             log.write_all(b"acknowledged").await.unwrap();
//!             log.sync_all().await.unwrap(); // the contents are durable...
//!             fs::File::open("/data").await.unwrap().sync_all().await.unwrap(); // ...the name too
//!             let mut text = String::new();
//!             fs::File::open("/data/log").await.unwrap().read_to_string(&mut text).await.unwrap();
//!             assert_eq!(text, "acknowledged");
//!         })
//!         .build();
//!     Ok(())
//! });
//! assert!(report.outcome.is_pass(), "{}", report.outcome);
//! ```
//!
//! # Paths
//! Paths are [`std::path::Path`]s on the current node's disk. A leading `/` names the root of
//! that disk (each node has its own), so `/data/log` and `data/log` are the same file; `.`
//! components are dropped. A path that is not UTF-8, holds a `..` component or a Windows
//! prefix fails with [`std::io::ErrorKind::InvalidInput`]; the disk's own limits (255 bytes
//! a component, 4096 a path) apply. An empty path is `NotFound`, as with std.
//!
//! # Directories
//! The disk has no directory entries: a directory exists while a file lies below it, and the
//! root always does. This module adds *made* directories: [`create_dir`] and
//! [`create_dir_all`] remember a directory per node, so that it exists while empty, as std
//! promises ([`metadata`], [`read_dir`], [`File::open`] see it, a second [`create_dir`] fails
//! with `AlreadyExists`, [`remove_dir`] forgets it). What is and is not modelled:
//! - A made directory is durable at once: a crash never loses it, whether or not its parent
//!   was synced (a real file system may lose an unsynced `mkdir`; this model never does, so a
//!   failure it reports is never one that only that loss explains). Making a directory is
//!   not a disk operation and not a trace event; the checks before it are (a `list`).
//! - A file's name is durable once its directory is synced, as on the disk: `File::open(dir)`
//!   then `sync_all` is [`crate::disk::sync_dir`]. Syncing a directory does not sync its
//!   parent; a new file in a directory never synced is still durable after that directory's
//!   sync (the disk tracks names, not directory entries).
//! - Directories cannot be renamed ([`rename`] of one fails with `Unsupported`); a
//!   directory that exists only because files lie below it vanishes when they are removed.
//! - A file created at the path of a made directory through [`crate::disk`] directly hides the
//!   directory (the file wins); through this module that is refused (`IsADirectory`).
//! - There are no permissions, links, timestamps or symlinks.
//!
//! # Errors
//! Every error is an [`std::io::Error`] of the kind a real OS gives, with the
//! [`crate::disk::DiskError`] (or, for what the disk never sees, the [`FsError`]) inside:
//! `err.get_ref().and_then(|e| e.downcast_ref::<DiskError>())`. See [`disk_error_kind`] for
//! the table.

mod dir;
mod file;

pub use dir::{
    create_dir, create_dir_all, metadata, read_dir, remove_dir, remove_dir_all, try_exists,
    DirEntry, FileType, Metadata, ReadDir,
};
pub use file::{File, OpenOptions, BUF_BYTES_MAX};

use crate::disk::{self, DiskError, DiskErrorKind};
use crate::node::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Component, Path, PathBuf};

/// Why an operation of this module failed where the disk was not asked (it has its own
/// [`DiskError`] otherwise). Carried inside the [`io::Error`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    /// The path cannot name a file on the simulated disk.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The directory holds files or directories.
    #[error("{path}: directory not empty")]
    DirectoryNotEmpty {
        /// The directory.
        path: String,
    },
    /// Directories cannot be renamed on the simulated disk.
    #[error("{path}: renaming a directory is not supported by the simulated disk")]
    DirectoryRename {
        /// The directory.
        path: String,
    },
    /// The file was not opened for this access (`read` or `write` in its [`OpenOptions`]).
    #[error("{path}: the file was not opened for {access}")]
    NotOpenedFor {
        /// The file.
        path: String,
        /// `reading` or `writing`.
        access: &'static str,
    },
    /// The [`OpenOptions`] ask for something std refuses.
    #[error("invalid open options: {reason}")]
    InvalidOptions {
        /// What is wrong.
        reason: &'static str,
    },
    /// A seek to before the start of the file.
    #[error("{path}: seek to a negative position")]
    NegativeSeek {
        /// The file.
        path: String,
    },
    /// `start_seek` while another operation of the file is in flight.
    #[error("{path}: another operation of the file is in flight; call poll_complete first")]
    Busy {
        /// The file.
        path: String,
    },
}

impl FsError {
    /// The kind of [`io::Error`] it becomes.
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            FsError::InvalidPath { .. }
            | FsError::InvalidOptions { .. }
            | FsError::NegativeSeek { .. } => io::ErrorKind::InvalidInput,
            FsError::DirectoryNotEmpty { .. } => io::ErrorKind::DirectoryNotEmpty,
            FsError::DirectoryRename { .. } => io::ErrorKind::Unsupported,
            // Linux says EBADF, whose kind cannot be matched on; Windows says access denied.
            FsError::NotOpenedFor { .. } => io::ErrorKind::PermissionDenied,
            FsError::Busy { .. } => io::ErrorKind::Other,
        }
    }
}

impl From<FsError> for io::Error {
    fn from(error: FsError) -> Self {
        io::Error::new(error.io_kind(), error)
    }
}

/// The kind of [`io::Error`] a disk error becomes in this module, the closest to what a real
/// OS gives:
///
/// | [`DiskErrorKind`] | [`io::ErrorKind`] | why |
/// |---|---|---|
/// | `NotFound` | `NotFound` | ENOENT |
/// | `AlreadyExists` | `AlreadyExists` | EEXIST |
/// | `IsADirectory` | `IsADirectory` | EISDIR |
/// | `NotADirectory` | `NotADirectory` | ENOTDIR |
/// | `NoSpace` | `StorageFull` | ENOSPC (bytes or files) |
/// | `Io` | `Other` | EIO has no matchable kind in std |
/// | `InvalidPath`, `InvalidInput` | `InvalidInput` | EINVAL, ENAMETOOLONG |
/// | `Removed` | `NotFound` | not as on Linux, where an unlinked open file stays usable |
/// | `Stale` | `StaleNetworkFileHandle` | ESTALE: the handle outlived its node's crash |
/// | `WrongNode`, `NotOnNode` | `InvalidInput` | a bug in the program, not an OS answer |
///
/// The same as [`DiskErrorKind::io_kind`], which `?` uses on a bare [`DiskError`].
pub fn disk_error_kind(kind: DiskErrorKind) -> io::ErrorKind {
    kind.io_kind()
}

/// A disk error as the [`io::Error`] this module returns (see [`disk_error_kind`]).
pub(crate) fn io_error(error: DiskError) -> io::Error {
    io::Error::new(disk_error_kind(error.kind()), error)
}

/// The disk path of `path` (see the module docs): `""` for the root.
pub(crate) fn disk_path(path: &Path) -> io::Result<String> {
    let invalid = |reason| FsError::InvalidPath {
        path: path.to_path_buf(),
        reason,
    };
    if path.as_os_str().is_empty() {
        return Err(io_error(DiskError::NotFound {
            path: String::new(),
        }));
    }
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Prefix(_) => Err(invalid("Windows path prefixes are not supported"))?,
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => Err(invalid("'..' components are not supported"))?,
            Component::Normal(name) => parts.push(name.to_str().ok_or(invalid("not UTF-8"))?),
        }
    }
    Ok(parts.join("/"))
}

/// The directory of a disk path (`""` for the root).
pub(crate) fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |slash| &path[..slash])
}

/// The directories made through [`create_dir`] and [`create_dir_all`], per node (see the
/// module docs); kept in the world.
#[derive(Debug, Default)]
pub(crate) struct FsState {
    dirs: BTreeMap<NodeId, BTreeSet<String>>,
}

/// Runs `body` on the made directories of the current node's disk, with the most it may
/// hold; a call outside node code fails as the disk does.
fn with_made_dirs<R>(
    path: &str,
    body: impl FnOnce(&mut BTreeSet<String>, usize) -> R,
) -> io::Result<R> {
    crate::world::with(|world| {
        let Some(node) = world.current_node() else {
            return Err(io_error(DiskError::NotOnNode { path: path.into() }));
        };
        let dirs_max = world.config.disk.files_max as usize;
        Ok(body(world.fs.dirs.entry(node).or_default(), dirs_max))
    })
}

/// Whether `path` is a made directory of the current node.
fn is_made_dir(path: &str) -> io::Result<bool> {
    with_made_dirs(path, |dirs, _| dirs.contains(path))
}

/// Reads the whole file at `path`, as `tokio::fs::read`.
pub async fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let file = File::open(path).await?;
    file.read_all().await
}

/// Reads the whole file at `path` as UTF-8, as `tokio::fs::read_to_string`; bytes that are
/// not UTF-8 fail with `InvalidData`.
pub async fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
    let bytes = read(path).await?;
    String::from_utf8(bytes).map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}

/// Creates or truncates the file at `path` and writes `contents`, as `tokio::fs::write`. Not
/// synced: call [`File::sync_all`] on an open file (and sync its directory) for durability.
pub async fn write(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> io::Result<()> {
    let file = File::create(path).await?;
    file.write_all_at_cursor(contents.as_ref()).await
}

/// Copies the contents of file `from` to `to` (created or truncated), as `tokio::fs::copy`;
/// returns the bytes copied.
pub async fn copy(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<u64> {
    let bytes = read(from).await?;
    write(to, &bytes).await?;
    Ok(bytes.len() as u64)
}

/// Renames file `from` to `to`, replacing a file at `to`, as `tokio::fs::rename`. Durable once
/// the directories are synced (`File::open(dir).await?.sync_all()`). Renaming a directory
/// fails with `Unsupported`.
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let from = disk_path(from.as_ref())?;
    let to = disk_path(to.as_ref())?;
    if is_made_dir(&from)? || from.is_empty() {
        return Err(FsError::DirectoryRename { path: from }.into());
    }
    if is_made_dir(&to)? {
        return Err(io_error(DiskError::IsADirectory { path: to }));
    }
    match disk::rename(&from, &to).await {
        Err(DiskError::IsADirectory { path }) if path == from => {
            Err(FsError::DirectoryRename { path }.into())
        }
        result => result.map_err(io_error),
    }
}

/// Removes the file at `path`, as `tokio::fs::remove_file`. Durable once its directory is
/// synced.
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    let path = disk_path(path.as_ref())?;
    if path.is_empty() || is_made_dir(&path)? {
        return Err(io_error(DiskError::IsADirectory { path }));
    }
    disk::remove(&path).await.map_err(io_error)
}
