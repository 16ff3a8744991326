//! The real disk: the simulated disk's API on real files, under each node's data folder.
//!
//! Node code keeps the simulated build's calls ([`create`], [`open`], [`rename`], [`remove`],
//! [`replace_durably`], [`list`], [`sync_dir`] and the methods of [`File`]) and its errors
//! ([`DiskError`], the same type in both builds). A path of the simulated disk is a path
//! under the current node's data folder ([`NodeSpec::data_dir`](crate::node::NodeSpec)):
//! `"wal/0001.log"` on node `db` of `Cluster::loopback(&["db"], root)` is
//! `root/db/wal/0001.log`.
//!
//! ```no_run
//! use sim_core::disk;
//! use sim_core::node::{block_on, Cluster};
//!
//! block_on(async {
//!     let cluster = Cluster::loopback(&["db"], &std::env::temp_dir().join("disk-demo")).unwrap();
//!     let db = cluster.id("db").unwrap();
//!     let node = cluster.start(db, || async {
//!         if disk::open("log").await.is_ok() {
//!             return; // a restart: the log survived
//!         }
//!         let log = disk::create("log").await.unwrap();
//!         log.append(b"acknowledged").await.unwrap();
//!         log.sync_all().await.unwrap(); // fsync: the contents are durable...
//!         disk::sync_dir("").await.unwrap(); // ...and so is the new name.
//!     });
//!     # drop(node);
//! });
//! ```
//!
//! # What is real
//! - Every operation is a system call on a real file, run on tokio's blocking thread pool
//!   (`spawn_blocking`), so a slow disk never stalls the node's other tasks. Operations of one
//!   [`File`] run one at a time, in the order they were called, as on the simulated disk,
//!   where each operation is one step.
//! - [`File::sync_all`] is `fsync(2)` ([`std::fs::File::sync_all`]); [`sync_dir`] opens the
//!   directory and fsyncs it; [`replace_durably`] writes `<path>.tmp`, fsyncs it, renames it
//!   over `path` and fsyncs the directory, as in the simulation.
//! - Directories are implicit, as on the simulated disk: [`create`] and [`rename`] make the
//!   missing directories of their path (the node's data folder too, on first use), and fsync
//!   the parent of each directory they make, so that a file in a new directory is durable
//!   after its own [`File::sync_all`] and [`sync_dir`] of its directory, as the simulation
//!   promises. [`list`] lists files only; a directory left empty by removals stays on the
//!   disk (the simulated one forgets it), which [`list`] does not show.
//! - Errors are the simulated build's [`DiskError`]s, mapped from the operating system's:
//!   `ENOENT` is [`DiskError::NotFound`] (also when a directory of the path is a file, as the
//!   simulated disk answers a lookup), `EEXIST` [`DiskError::AlreadyExists`] (or
//!   [`DiskError::IsADirectory`] when a directory is in the way), `EISDIR`
//!   [`DiskError::IsADirectory`], `ENOTDIR` on a create or rename target
//!   [`DiskError::NotADirectory`], `ENOSPC`, `EDQUOT` and `EFBIG` [`DiskError::NoSpace`],
//!   `EIO` [`DiskError::Io`] (the fault the program was tested against), `EINVAL`
//!   [`DiskError::InvalidInput`], `ENAMETOOLONG` [`DiskError::InvalidPath`], and anything else
//!   (permission denied, a read-only file system, too many open files...)
//!   [`DiskError::Os`], with the operating system's kind and message.
//! - Paths are checked as on the simulated disk, before any system call: relative,
//!   `/`-separated, components non-empty, not `.` or `..`, at most [`NAME_BYTES_MAX`] bytes,
//!   the path at most [`PATH_BYTES_MAX`]; an absolute path or a `..` is a
//!   [`DiskError::InvalidPath`], never a file outside the node's data folder. Outside node
//!   code every operation fails with [`DiskError::NotOnNode`], and a [`File`] used by another
//!   node (or outside node code) with [`DiskError::WrongNode`], as in the simulation.
//!
//! # What a real fsync guarantees
//! Once [`File::sync_all`] returned `Ok`, the file's contents and length survive a crash of
//! the process and, on a disk that honours flushes (or has power-loss protection), of the
//! machine. A new or renamed name survives a machine crash only once its directory was synced
//! too ([`sync_dir`]); syncing both directories of a rename across directories is the safe
//! way. A crash of the process alone (or [`NodeHandle::kill`](crate::node::NodeHandle::kill))
//! loses nothing written: the kernel keeps unsynced writes; only power loss or a kernel crash
//! loses them, and then as the simulation's crash model allows at most (a prefix, a subset,
//! torn sectors, depending on the file system).
//!
//! A failed fsync ([`DiskError::Io`]) leaves the unsynced data in an unknown state, and on
//! Linux a later fsync may succeed without having written it (the "fsyncgate" semantics the
//! simulation models): treat it as a crash and recover from what is durable.
//!
//! # What differs from the simulation
//! - There are no injected faults, latency, crash models, corruption or trace events; the
//!   controls (`DiskControl`, `DiskConfig`...) exist only in the simulated build.
//! - An operation whose future is dropped (a timeout, a killed node) may still take effect: its
//!   system call runs to its end on the blocking pool.
//! - A failed write may have written part of its bytes (the simulated disk changes nothing).
//! - A [`File`] whose file was removed or replaced by a rename keeps working on the orphaned
//!   file, as POSIX does (the simulated disk fails it with [`DiskError::Removed`]), and a
//!   [`File`] kept past its node's kill works on (a real crash would have closed it; the
//!   simulated disk fails it with [`DiskError::Stale`]). Neither error occurs in a real build.
//! - Appends through one [`File`] are atomic with respect to each other; appends to one file
//!   through two [`File`]s at once may overwrite each other (each writes at the length it
//!   read).
//!
//! A real disk needs a Unix: positioned reads and writes, and fsync of directories.

#[cfg(not(unix))]
compile_error!("sim-core's real disk needs a Unix (positioned I/O and fsync of directories)");

#[path = "../disk/error.rs"]
mod error;

pub use error::{DiskError, DiskErrorKind, DiskOp};

use crate::node::NodeId;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Longest accepted path, in bytes (Linux's `PATH_MAX`), before the node's data folder.
pub const PATH_BYTES_MAX: usize = 4096;
/// Longest accepted path component, in bytes (Linux's `NAME_MAX`).
pub const NAME_BYTES_MAX: usize = 255;

/// `EIO`, the same number on every Unix; std gives it no [`io::ErrorKind`] to match.
const EIO: i32 = 5;

/// An open file under a node's data folder, from [`create`] or [`open`] (read and write).
///
/// It names the open file itself (a file descriptor): it follows the file through [`rename`]
/// and keeps working after the file is removed, as POSIX does. It belongs to its node: used
/// by another node, or outside node code, its operations fail with [`DiskError::WrongNode`].
/// Its operations run one at a time, in the order they were called. Dropping it closes it.
#[derive(Debug)]
pub struct File {
    node: NodeId,
    path: String,
    /// The descriptor, behind a lock that each operation takes into its blocking call and holds
    /// until the call ends, even if the operation's future was dropped: so the operations of a
    /// file never overlap (`append` reads the length, then writes at it).
    file: Arc<tokio::sync::Mutex<std::fs::File>>,
}

/// The current node and its data folder, or why a disk operation may not run here.
pub(crate) fn node_root(path: &str) -> Result<(NodeId, PathBuf), DiskError> {
    let node = crate::node::current_node().ok_or_else(|| DiskError::NotOnNode {
        path: path.to_string(),
    })?;
    match crate::node::current_spec() {
        Some((_, spec)) => Ok((node, spec.data_dir)),
        None => Err(DiskError::InvalidInput {
            path: path.to_string(),
            reason: format!(
                "node {node} runs, but the cluster installed on this thread does not list it \
                 (call Cluster::install before run_as)"
            ),
        }),
    }
}

/// What is wrong with `path` as a disk path, if anything (the simulated disk's rules).
fn path_problem(path: &str, allow_root: bool) -> Option<&'static str> {
    if path.is_empty() {
        return (!allow_root).then_some("empty path (the root directory is not a file)");
    }
    if path.len() > PATH_BYTES_MAX {
        return Some("longer than 4096 bytes");
    }
    if path.starts_with('/') {
        return Some("paths are relative to the node's disk: drop the leading '/'");
    }
    if path.contains('\0') {
        return Some("contains a NUL byte");
    }
    for component in path.split('/') {
        match component {
            "" => return Some("empty component ('//' or a trailing '/')"),
            "." | ".." => return Some("'.' and '..' are not supported"),
            name if name.len() > NAME_BYTES_MAX => {
                return Some("a component is longer than 255 bytes")
            }
            _ => {}
        }
    }
    None
}

/// Checks a path, with a clear error.
fn check_path(path: &str, allow_root: bool) -> Result<(), DiskError> {
    match path_problem(path, allow_root) {
        None => Ok(()),
        Some(reason) => Err(DiskError::InvalidPath {
            path: path.to_string(),
            reason,
        }),
    }
}

/// The real path of disk path `path` (`""`: the data folder itself).
fn real_path(root: &Path, path: &str) -> PathBuf {
    if path.is_empty() {
        root.to_path_buf()
    } else {
        root.join(path)
    }
}

/// The directory of a disk path (`""` for the root).
fn parent(path: &str) -> &str {
    path.rfind('/').map_or("", |slash| &path[..slash])
}

pub(crate) fn is_dir(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|metadata| metadata.is_dir())
}

/// The first directory of disk path `path` that is a file on the disk, if any.
fn file_ancestor(root: &Path, path: &str) -> Option<String> {
    let mut end = 0;
    while let Some(slash) = path[end..].find('/') {
        let ancestor = &path[..end + slash];
        match std::fs::metadata(root.join(ancestor)) {
            Ok(metadata) if !metadata.is_dir() => return Some(ancestor.to_string()),
            Ok(_) => {}
            Err(_) => return None,
        }
        end += slash + 1;
    }
    None
}

/// What a failed system call wanted of its path, which decides how its error is answered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Intent {
    /// To find an existing file (open, remove, the source of a rename): a directory of the
    /// path that is a file means the file is not there, as the simulated disk answers.
    Find,
    /// To make a name (create, the target of a rename): such a directory is in the way.
    Make,
}

/// The [`DiskError`] for the operating system's answer `error` to `op` on disk path `path`.
fn os_error(op: DiskOp, root: &Path, path: &str, intent: Intent, error: io::Error) -> DiskError {
    use io::ErrorKind;
    let path_string = || path.to_string();
    if error.raw_os_error() == Some(EIO) {
        return DiskError::Io {
            op,
            path: path_string(),
        };
    }
    match error.kind() {
        ErrorKind::NotFound => {
            return DiskError::NotFound {
                path: path_string(),
            }
        }
        ErrorKind::NotADirectory => {
            return match (intent, file_ancestor(root, path)) {
                (Intent::Make, Some(file)) => DiskError::NotADirectory {
                    path: path_string(),
                    file,
                },
                _ => DiskError::NotFound {
                    path: path_string(),
                },
            }
        }
        _ => {}
    }
    // A directory where a file is expected: EISDIR, or EEXIST for a create, or EPERM for an
    // unlink on some systems.
    if is_dir(&real_path(root, path)) {
        return DiskError::IsADirectory {
            path: path_string(),
        };
    }
    match error.kind() {
        ErrorKind::AlreadyExists => DiskError::AlreadyExists {
            path: path_string(),
        },
        ErrorKind::IsADirectory => DiskError::IsADirectory {
            path: path_string(),
        },
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge => {
            DiskError::NoSpace {
                path: path_string(),
                detail: error.to_string(),
            }
        }
        ErrorKind::InvalidInput => DiskError::InvalidInput {
            path: path_string(),
            reason: error.to_string(),
        },
        ErrorKind::InvalidFilename => DiskError::InvalidPath {
            path: path_string(),
            reason: "too long for the operating system once under the node's data folder",
        },
        kind => DiskError::Os {
            op,
            path: path_string(),
            kind,
            detail: error.to_string(),
        },
    }
}

/// A failure to make the node's data folder `root` (not a disk path: reported as it is).
fn root_error(op: DiskOp, path: &str, root: &Path, error: &io::Error) -> DiskError {
    DiskError::Os {
        op,
        path: path.to_string(),
        kind: error.kind(),
        detail: format!(
            "cannot make the node's data folder {}: {error}",
            root.display()
        ),
    }
}

/// fsync of directory `dir`.
pub(crate) fn fsync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Makes directory `dir` if it is missing and fsyncs its parent, so that its name is durable.
/// `Ok(false)` if it was there (made by a concurrent call counts as there).
pub(crate) fn make_dir_durably(dir: &Path) -> io::Result<bool> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists && is_dir(dir) => {
            return Ok(false)
        }
        Err(error) => return Err(error),
    }
    match dir.parent() {
        // A relative folder's parent may be the working directory itself.
        Some(parent) if parent.as_os_str().is_empty() => fsync_dir(Path::new("."))?,
        Some(parent) => fsync_dir(parent)?,
        None => {}
    }
    Ok(true)
}

/// Makes the node's data folder and its missing ancestors, each durably.
pub(crate) fn make_root(root: &Path) -> io::Result<()> {
    if is_dir(root) {
        return Ok(());
    }
    let missing: Vec<&Path> = root
        .ancestors()
        .filter(|dir| !dir.as_os_str().is_empty())
        .take_while(|dir| !dir.exists())
        .collect();
    for dir in missing.iter().rev() {
        make_dir_durably(dir)?;
    }
    if is_dir(root) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "it is not a directory",
        ))
    }
}

/// Makes the missing directories of disk path `path` (the data folder included), each
/// durably: the simulated disk's directories are implicit.
fn make_parents(op: DiskOp, root: &Path, path: &str) -> Result<(), DiskError> {
    let dir = parent(path);
    if is_dir(&real_path(root, dir)) {
        return Ok(());
    }
    make_root(root).map_err(|error| root_error(op, path, root, &error))?;
    let mut end = 0;
    while let Some(slash) = path[end..].find('/') {
        let ancestor = &path[..end + slash];
        let real = root.join(ancestor);
        match std::fs::metadata(&real) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Err(DiskError::NotADirectory {
                    path: path.to_string(),
                    file: ancestor.to_string(),
                })
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                make_dir_durably(&real)
                    .map_err(|error| os_error(op, root, path, Intent::Make, error))?;
            }
            Err(error) => return Err(os_error(op, root, path, Intent::Make, error)),
        }
        end += slash + 1;
    }
    Ok(())
}

/// Runs `work` (system calls) on tokio's blocking pool.
///
/// # Panics
/// If `work` panicked (a bug of this module), the panic goes on here.
async fn blocking<T: Send + 'static>(
    op: DiskOp,
    path: &str,
    work: impl FnOnce() -> Result<T, DiskError> + Send + 'static,
) -> Result<T, DiskError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(DiskError::Os {
            op,
            path: path.to_string(),
            kind: io::ErrorKind::Interrupted,
            detail: format!("the blocking task was cancelled (the runtime shuts down): {error}"),
        }),
    }
}

/// Creates a new, empty file at `path` under the current node's data folder and opens it;
/// fails with [`DiskError::AlreadyExists`] if there is one.
///
/// The new name survives a machine crash only once its directory is synced ([`sync_dir`]).
/// Directories are implicit: `create("wal/0001")` makes `wal` (durably) if it is missing.
pub async fn create(path: &str) -> Result<File, DiskError> {
    let (node, root) = node_root(path)?;
    check_path(path, false)?;
    let owned = path.to_string();
    let file = blocking(DiskOp::Create, path, move || {
        make_parents(DiskOp::Create, &root, &owned)?;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(root.join(&owned))
            .map_err(|error| os_error(DiskOp::Create, &root, &owned, Intent::Make, error))
    })
    .await?;
    Ok(File::new(node, path, file))
}

/// Opens the existing file at `path` under the current node's data folder.
pub async fn open(path: &str) -> Result<File, DiskError> {
    let (node, root) = node_root(path)?;
    check_path(path, false)?;
    let owned = path.to_string();
    let file = blocking(DiskOp::Open, path, move || {
        let real = root.join(&owned);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&real)
            .map_err(|error| os_error(DiskOp::Open, &root, &owned, Intent::Find, error))?;
        // Not every system refuses to open a directory for writing.
        match file.metadata() {
            Ok(metadata) if metadata.is_dir() => Err(DiskError::IsADirectory { path: owned }),
            Ok(_) => Ok(file),
            Err(error) => Err(os_error(DiskOp::Open, &root, &owned, Intent::Find, error)),
        }
    })
    .await?;
    Ok(File::new(node, path, file))
}

/// Renames `from` to `to` under the current node's data folder, replacing a file at `to`
/// (atomically: `rename(2)`). Open handles follow the file. Makes the missing directories of
/// `to`, as [`create`] does.
///
/// The rename survives a machine crash only once the directory is synced ([`sync_dir`]: both
/// directories for a rename across directories).
pub async fn rename(from: &str, to: &str) -> Result<(), DiskError> {
    let (_, root) = node_root(from)?;
    check_path(to, false)?;
    check_path(from, false)?;
    let (from, to) = (from.to_string(), to.to_string());
    let path = from.clone();
    blocking(DiskOp::Rename, &path, move || {
        let real_from = root.join(&from);
        match std::fs::metadata(&real_from) {
            Ok(metadata) if metadata.is_dir() => {
                return Err(DiskError::IsADirectory { path: from });
            }
            Ok(_) => {}
            Err(error) => return Err(os_error(DiskOp::Rename, &root, &from, Intent::Find, error)),
        }
        if from == to {
            return Ok(());
        }
        make_parents(DiskOp::Rename, &root, &to)?;
        std::fs::rename(&real_from, root.join(&to)).map_err(|error| {
            // The source was there a moment ago: an error is about the target.
            if error.kind() == io::ErrorKind::NotFound {
                DiskError::NotFound { path: from }
            } else {
                os_error(DiskOp::Rename, &root, &to, Intent::Make, error)
            }
        })
    })
    .await
}

/// Removes the file at `path` under the current node's data folder. Open handles to it keep
/// working on the orphaned file (POSIX).
///
/// The removal survives a machine crash only once the directory is synced ([`sync_dir`]).
pub async fn remove(path: &str) -> Result<(), DiskError> {
    let (_, root) = node_root(path)?;
    check_path(path, false)?;
    let owned = path.to_string();
    blocking(DiskOp::Remove, path, move || {
        std::fs::remove_file(root.join(&owned))
            .map_err(|error| os_error(DiskOp::Remove, &root, &owned, Intent::Find, error))
    })
    .await
}

/// Replaces the file at `path` with `bytes` so that a crash leaves either the old contents or
/// the new, whole: writes `<path>.tmp` (removing a leftover of a failed attempt first), syncs
/// it, renames it over `path` and syncs the directory. On an error nothing is promised about
/// which contents a crash would leave, but the old file is never damaged.
pub async fn replace_durably(path: &str, bytes: &[u8]) -> Result<(), DiskError> {
    let tmp = format!("{path}.tmp");
    let _ = remove(&tmp).await;
    let file = create(&tmp).await?;
    file.write_at(bytes, 0).await?;
    file.sync_all().await?;
    rename(&tmp, path).await?;
    sync_dir(parent(path)).await
}

/// The paths of every file below directory `dir` (`""`: the whole data folder), sorted, as
/// `/`-separated disk paths. A directory that is missing holds no file. Anything that is not a
/// directory counts as a file (symbolic links are not followed).
pub async fn list(dir: &str) -> Result<Vec<String>, DiskError> {
    let (_, root) = node_root(dir)?;
    check_path(dir, true)?;
    let owned = dir.to_string();
    blocking(DiskOp::List, dir, move || {
        let real = real_path(&root, &owned);
        match std::fs::metadata(&real) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Err(DiskError::NotADirectory {
                    path: owned.clone(),
                    file: owned,
                })
            }
            Err(error) if is_missing(&error) => return Ok(Vec::new()),
            Err(error) => return Err(os_error(DiskOp::List, &root, &owned, Intent::Find, error)),
        }
        let mut files = Vec::new();
        let mut dirs = vec![owned];
        while let Some(dir) = dirs.pop() {
            let entries = match std::fs::read_dir(real_path(&root, &dir)) {
                Ok(entries) => entries,
                // Removed while we listed: it holds nothing any more.
                Err(error) if is_missing(&error) => continue,
                Err(error) => return Err(os_error(DiskOp::List, &root, &dir, Intent::Find, error)),
            };
            for entry in entries {
                let entry = entry
                    .map_err(|error| os_error(DiskOp::List, &root, &dir, Intent::Find, error))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else {
                    return Err(DiskError::InvalidPath {
                        path: format!("{dir}/{}", name.to_string_lossy()),
                        reason:
                            "a file name on the disk is not UTF-8 (made outside sim_core::disk)",
                    });
                };
                let path = if dir.is_empty() {
                    name.to_string()
                } else {
                    format!("{dir}/{name}")
                };
                match entry.file_type() {
                    Ok(kind) if kind.is_dir() => dirs.push(path),
                    Ok(_) => files.push(path),
                    Err(error) if is_missing(&error) => {}
                    Err(error) => {
                        return Err(os_error(DiskOp::List, &root, &path, Intent::Find, error))
                    }
                }
            }
        }
        files.sort();
        Ok(files)
    })
    .await
}

/// A path that is not there: missing, or below a file.
fn is_missing(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// fsync of directory `dir` (`""`: the node's data folder): the creates, renames and removes
/// of its entries become durable. A directory that is missing holds nothing to sync.
///
/// May fail with [`DiskError::Io`] (see the module docs on fsync failures).
pub async fn sync_dir(dir: &str) -> Result<(), DiskError> {
    let (_, root) = node_root(dir)?;
    check_path(dir, true)?;
    let owned = dir.to_string();
    blocking(DiskOp::SyncDir, dir, move || {
        let fail = |error| os_error(DiskOp::SyncDir, &root, &owned, Intent::Find, error);
        let handle = match std::fs::File::open(real_path(&root, &owned)) {
            Ok(handle) => handle,
            Err(error) if is_missing(&error) => return Ok(()),
            Err(error) => return Err(fail(error)),
        };
        if !handle.metadata().map_err(fail)?.is_dir() {
            return Err(DiskError::NotADirectory {
                path: owned.clone(),
                file: owned,
            });
        }
        handle.sync_all().map_err(fail)
    })
    .await
}

impl File {
    fn new(node: NodeId, path: &str, file: std::fs::File) -> File {
        File {
            node,
            path: path.to_string(),
            file: Arc::new(tokio::sync::Mutex::new(file)),
        }
    }

    /// The path the file was opened (or created) with.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The node whose data folder holds the file.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Runs `work` on the descriptor on the blocking pool, after the file's earlier operations,
    /// once the handle is checked to be used on its node.
    async fn run<T: Send + 'static>(
        &self,
        op: DiskOp,
        work: impl FnOnce(&std::fs::File) -> io::Result<T> + Send + 'static,
    ) -> Result<T, DiskError> {
        let current = crate::node::current_node();
        if current != Some(self.node) {
            let used_on = match current {
                Some(node) => match crate::node::cluster().and_then(|c| c.spec(node)) {
                    Some(spec) => format!("node {}", spec.name),
                    None => format!("node {node}"),
                },
                None => "code outside any node (not run through Cluster::start, run_as or \
                         sim_core::task::spawn)"
                    .into(),
            };
            return Err(DiskError::WrongNode {
                path: self.path.clone(),
                handle_node: self.node,
                used_on,
            });
        }
        let file = self.file.clone().lock_owned().await;
        let path = self.path.clone();
        blocking(op, &self.path, move || {
            // A handle's errors name its path; a directory of it in the way cannot be.
            work(&file).map_err(|error| {
                if error.raw_os_error() == Some(EIO) {
                    return DiskError::Io { op, path };
                }
                match error.kind() {
                    io::ErrorKind::StorageFull
                    | io::ErrorKind::QuotaExceeded
                    | io::ErrorKind::FileTooLarge => DiskError::NoSpace {
                        path,
                        detail: error.to_string(),
                    },
                    io::ErrorKind::InvalidInput => DiskError::InvalidInput {
                        path,
                        reason: error.to_string(),
                    },
                    kind => DiskError::Os {
                        op,
                        path,
                        kind,
                        detail: error.to_string(),
                    },
                }
            })
        })
        .await
    }

    /// Reads into `buf` from byte `offset`; returns how many bytes were read (fewer than
    /// `buf.len()` at the end of the file, 0 past it). Reads see unsynced writes.
    ///
    /// May fail with [`DiskError::Io`].
    pub async fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, DiskError> {
        let len = buf.len();
        let bytes = self
            .run(DiskOp::Read, move |file| read_from(file, offset, Some(len)))
            .await?;
        buf[..bytes.len()].copy_from_slice(&bytes);
        Ok(bytes.len())
    }

    /// Reads the whole file.
    pub async fn read_to_end(&self) -> Result<Vec<u8>, DiskError> {
        self.run(DiskOp::Read, |file| read_from(file, 0, None))
            .await
    }

    /// Writes all of `buf` at byte `offset`, growing the file (with zeros) as needed. The
    /// write survives a crash of the machine only after [`File::sync_all`].
    ///
    /// May fail with [`DiskError::Io`] or [`DiskError::NoSpace`]; a failed write may have
    /// written part of `buf`.
    pub async fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DiskError> {
        self.check_end(offset, buf.len())?;
        let bytes = buf.to_vec();
        self.run(DiskOp::Write, move |file| file.write_all_at(&bytes, offset))
            .await
    }

    /// Writes all of `buf` at the end of the file; returns the offset it was written at. Like
    /// [`File::write_at`] otherwise.
    pub async fn append(&self, buf: &[u8]) -> Result<u64, DiskError> {
        let bytes = buf.to_vec();
        self.run(DiskOp::Append, move |file| {
            let offset = file.metadata()?.len();
            if offset.checked_add(bytes.len() as u64).is_none() {
                let reason = overflow_reason(offset, bytes.len());
                return Err(io::Error::new(io::ErrorKind::InvalidInput, reason));
            }
            file.write_all_at(&bytes, offset)?;
            Ok(offset)
        })
        .await
    }

    fn check_end(&self, offset: u64, len: usize) -> Result<(), DiskError> {
        match offset.checked_add(len as u64) {
            Some(_) => Ok(()),
            None => Err(DiskError::InvalidInput {
                path: self.path.clone(),
                reason: overflow_reason(offset, len),
            }),
        }
    }

    /// The file's length in bytes.
    #[allow(clippy::len_without_is_empty)] // An async length; `len().await? == 0` reads fine.
    pub async fn len(&self) -> Result<u64, DiskError> {
        self.run(DiskOp::Len, |file| Ok(file.metadata()?.len()))
            .await
    }

    /// Sets the file's length: cuts it, or grows it with zeros. Survives a crash of the
    /// machine only after [`File::sync_all`], like a write, and may fail like one.
    pub async fn truncate(&self, len: u64) -> Result<(), DiskError> {
        self.run(DiskOp::Truncate, move |file| file.set_len(len))
            .await
    }

    /// fsync (`fsync(2)`): the file's writes and truncates so far become durable (its contents
    /// and length; not its name: a new or renamed file needs [`sync_dir`] too).
    ///
    /// May fail with [`DiskError::Io`]: then the unsynced data is in an unknown state (see the
    /// module docs).
    pub async fn sync_all(&self) -> Result<(), DiskError> {
        self.run(DiskOp::SyncAll, |file| file.sync_all()).await
    }
}

fn overflow_reason(offset: u64, len: usize) -> String {
    format!("offset {offset} + {len} bytes overflows")
}

/// Reads from `offset` up to `limit` bytes (`None`: to the end of the file). A short read
/// means the end of the file.
fn read_from(file: &std::fs::File, offset: u64, limit: Option<usize>) -> io::Result<Vec<u8>> {
    // No real file reaches past `i64::MAX` bytes: nothing to read there.
    if offset > i64::MAX as u64 {
        return Ok(Vec::new());
    }
    let size = match limit {
        Some(limit) => limit,
        None => {
            let len = file.metadata()?.len().saturating_sub(offset);
            // One byte more, to see the end of the file without growing the buffer.
            usize::try_from(len.saturating_add(1)).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    "the file is larger than this machine's address space",
                )
            })?
        }
    };
    let mut bytes = vec![0; size];
    let mut filled = 0;
    loop {
        if filled == bytes.len() {
            if limit.is_some() {
                break;
            }
            // The file grew while it was read: read on to its new end.
            bytes.resize(bytes.len().saturating_mul(2), 0);
        }
        match file.read_at(&mut bytes[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    bytes.truncate(filled);
    Ok(bytes)
}
