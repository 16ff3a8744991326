//! Files and directories with the shapes of `tokio::fs`, under each node's data folder.
//!
//! The simulated build's `sim_core::fs` gives every node a disk of its own, with `/` its root.
//! This one keeps that meaning, so that the same node code names the same files in both
//! builds: a path is a path under the current node's data folder
//! ([`NodeSpec::data_dir`](crate::node::NodeSpec)), `/data/log` and `data/log` alike. Every
//! function is tokio's (the same system calls on tokio's blocking thread pool, and
//! [`File`] wraps a `tokio::fs::File`) with the path put under the data folder first.
//! Several nodes in one process (a test) thus never share a file, and a deployment says where
//! each node's data lives, as for [`crate::disk`]. Code that means the machine's own paths
//! (a configuration file in `/etc`) uses `tokio::fs` itself.
//!
//! ```no_run
//! use sim_core::fs;
//! use sim_core::node::{block_on, Cluster};
//! use tokio::io::AsyncWriteExt;
//!
//! block_on(async {
//!     let cluster = Cluster::loopback(&["db"], &std::env::temp_dir().join("fs-demo")).unwrap();
//!     let node = cluster.start(cluster.id("db").unwrap(), || async {
//!         fs::create_dir_all("/data").await.unwrap(); // <data folder>/data, made durably
//!         let mut log = fs::File::create("/data/log").await.unwrap();
//!         log.write_all(b"acknowledged").await.unwrap();
//!         log.sync_all().await.unwrap(); // fsync: the contents are durable...
//!         fs::File::open("/data").await.unwrap().sync_all().await.unwrap(); // ...the name too
//!     });
//!     # drop(node);
//! });
//! ```
//!
//! # Paths
//! A leading `/` names the node's data folder; `.` components are dropped; a `..` component
//! or a Windows prefix fails with [`io::ErrorKind::InvalidInput`] (an [`FsError`] inside), so
//! node code cannot reach outside its data folder; an empty path is `NotFound`, as with std.
//! Outside node code every function fails as the simulated build does (`InvalidInput`, with
//! [`DiskError::NotOnNode`] inside). The data folder is made (with its missing ancestors) on
//! first use: the root always exists, as on the simulated disk.
//!
//! # Directories and durability
//! As the simulated `fs` promises:
//! - [`create_dir`] and [`create_dir_all`] are durable at once: each directory they make is
//!   followed by an fsync of its parent.
//! - A file's name is durable once its directory is synced: `File::open(dir)` then
//!   [`File::sync_all`] is a real fsync of the directory.
//! - Directories of a file are implicit as on the simulated disk: creating a file ([`write()`],
//!   [`copy`], [`rename`]'s target, [`OpenOptions`] with `create` or `create_new`) makes its
//!   missing directories, durably, where tokio would fail with `NotFound`. Code tested in the
//!   simulation thus does not fail in production for a `create_dir_all` it never needed.
//!
//! What the simulation does not have, and a real build allows: renaming a directory (the
//! simulated one fails with `Unsupported`), symbolic links, permissions and timestamps (not
//! shown by [`Metadata`], which keeps the simulated build's API), and an empty directory
//! stays after its last file is removed. [`read_dir`] reads the whole directory at once and
//! gives its entries sorted by name, as the simulated one does, so that node code never
//! depends on an order only the simulation gives.
//!
//! # Errors
//! Errors of the operating system are the [`io::Error`]s tokio returns (their kind and
//! `raw_os_error`; the simulated build has a [`DiskError`] inside them instead, and the same
//! kind: match on kinds to handle both). The checks this module makes before any system call
//! (paths, open options, node code) return the simulated build's errors: an [`FsError`] or a
//! [`DiskError`] inside an [`io::Error`] of the same kind.

use crate::disk::{self, DiskError, DiskErrorKind};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{self, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

pub use std::fs::FileType;

/// Most bytes one read or write of a [`File`] moves at once: tokio's buffer (2 MiB), as in the
/// simulated build; a larger `poll_read` or `poll_write` does part of the work, as they may.
pub const BUF_BYTES_MAX: usize = 2 * 1024 * 1024;

/// Why an operation of this module failed before the operating system was asked (the same
/// type as the simulated build's, whose variants all exist here). Carried inside the
/// [`io::Error`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    /// The path cannot name a file under the node's data folder.
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The path as given.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The directory holds files or directories (the simulated build; a real one returns the
    /// operating system's `DirectoryNotEmpty`).
    #[error("{path}: directory not empty")]
    DirectoryNotEmpty {
        /// The directory.
        path: String,
    },
    /// Directories cannot be renamed on the simulated disk (never returned by a real build,
    /// which renames them).
    #[error("{path}: renaming a directory is not supported by the simulated disk")]
    DirectoryRename {
        /// The directory.
        path: String,
    },
    /// The file was not opened for this access (the simulated build; a real one returns the
    /// operating system's error).
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
    /// A seek to before the start of the file (the simulated build; a real one returns the
    /// operating system's error).
    #[error("{path}: seek to a negative position")]
    NegativeSeek {
        /// The file.
        path: String,
    },
    /// `start_seek` while another operation of the file is in flight (the simulated build; a
    /// real one returns tokio's error).
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

/// The kind of [`io::Error`] a disk error becomes, the closest to what a real OS gives: the
/// same table as the simulated build's ([`DiskErrorKind::io_kind`]).
pub fn disk_error_kind(kind: DiskErrorKind) -> io::ErrorKind {
    kind.io_kind()
}

/// A path of this module, put under the node's data folder.
struct NodePath {
    /// The node's data folder.
    root: PathBuf,
    /// The path below it (empty for the root).
    relative: PathBuf,
}

impl NodePath {
    /// The real path.
    fn real(&self) -> PathBuf {
        self.root.join(&self.relative)
    }

    fn is_root(&self) -> bool {
        self.relative.as_os_str().is_empty()
    }

    /// The path as node code names it, for errors.
    fn shown(&self) -> PathBuf {
        Path::new("/").join(&self.relative)
    }
}

/// Checks `path` and puts it under the current node's data folder.
fn resolve(path: &Path) -> io::Result<NodePath> {
    let invalid = |reason| FsError::InvalidPath {
        path: path.to_path_buf(),
        reason,
    };
    if path.as_os_str().is_empty() {
        return Err(DiskError::NotFound {
            path: String::new(),
        }
        .into());
    }
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Prefix(_) => Err(invalid("Windows path prefixes are not supported"))?,
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => Err(invalid("'..' components are not supported"))?,
            Component::Normal(name) => relative.push(name),
        }
    }
    let shown = relative.to_string_lossy().into_owned();
    let (_, root) = disk::node_root(&shown)?;
    Ok(NodePath { root, relative })
}

/// Runs `work` (system calls) on tokio's blocking pool, as `tokio::fs` does, after making the
/// node's data folder if it is missing.
///
/// # Panics
/// If `work` panicked (a bug of this module), the panic goes on here.
async fn blocking<T: Send + 'static>(
    root: PathBuf,
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let task = tokio::task::spawn_blocking(move || {
        make_root(&root)?;
        work()
    });
    match task.await {
        Ok(result) => result,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(io::Error::new(
            io::ErrorKind::Interrupted,
            format!("the blocking task was cancelled (the runtime shuts down): {error}"),
        )),
    }
}

/// Makes the node's data folder, with a message that says which folder failed.
fn make_root(root: &Path) -> io::Result<()> {
    disk::make_root(root).map_err(|error| {
        io::Error::new(
            error.kind(),
            format!(
                "cannot make the node's data folder {}: {error}",
                root.display()
            ),
        )
    })
}

/// Makes the directories `dirs` below `root` that are missing, each followed by an fsync of
/// its parent. A file in the way is `NotADirectory`.
fn make_dirs_durably(root: &Path, dirs: &Path) -> io::Result<()> {
    let mut real = root.to_path_buf();
    let mut made = PathBuf::from("/");
    for component in dirs.components() {
        real.push(component);
        made.push(component);
        match std::fs::metadata(&real) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => {
                return Err(DiskError::NotADirectory {
                    path: Path::new("/").join(dirs).to_string_lossy().into_owned(),
                    file: made.to_string_lossy().into_owned(),
                }
                .into())
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                disk::make_dir_durably(&real)?;
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Makes the missing directories of the file `path` is about to be (implicit directories, as
/// on the simulated disk).
fn make_parents(path: &NodePath) -> io::Result<()> {
    match path.relative.parent() {
        Some(dirs) if !disk::is_dir(&path.root.join(dirs)) => make_dirs_durably(&path.root, dirs),
        _ => Ok(()),
    }
}

/// Reads the whole file at `path`, as `tokio::fs::read`.
pub async fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let path = resolve(path.as_ref())?;
    let real = path.real();
    blocking(path.root, move || std::fs::read(real)).await
}

/// Reads the whole file at `path` as UTF-8, as `tokio::fs::read_to_string`; bytes that are
/// not UTF-8 fail with `InvalidData`.
pub async fn read_to_string(path: impl AsRef<Path>) -> io::Result<String> {
    let path = resolve(path.as_ref())?;
    let real = path.real();
    blocking(path.root, move || std::fs::read_to_string(real)).await
}

/// Creates or truncates the file at `path` and writes `contents`, as `tokio::fs::write` (making
/// its missing directories). Not synced: call [`File::sync_all`] on an open file (and sync its
/// directory) for durability.
pub async fn write(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> io::Result<()> {
    let path = resolve(path.as_ref())?;
    let contents = contents.as_ref().to_vec();
    let root = path.root.clone();
    blocking(root, move || {
        make_parents(&path)?;
        std::fs::write(path.real(), contents)
    })
    .await
}

/// Copies the contents of file `from` to `to` (created or truncated, with its missing
/// directories), as `tokio::fs::copy`; returns the bytes copied.
pub async fn copy(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<u64> {
    let from = resolve(from.as_ref())?;
    let to = resolve(to.as_ref())?;
    let root = to.root.clone();
    blocking(root, move || {
        make_parents(&to)?;
        std::fs::copy(from.real(), to.real())
    })
    .await
}

/// Renames `from` to `to`, replacing a file at `to`, as `tokio::fs::rename` (making the
/// missing directories of `to`). Durable once the directories are synced
/// (`File::open(dir).await?.sync_all()`). The root cannot be renamed nor replaced.
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let from = resolve(from.as_ref())?;
    let to = resolve(to.as_ref())?;
    let root_error = |path: &NodePath, reason| -> io::Error {
        FsError::InvalidPath {
            path: path.shown(),
            reason,
        }
        .into()
    };
    if from.is_root() {
        return Err(root_error(&from, "the root directory cannot be renamed"));
    }
    if to.is_root() {
        return Err(root_error(&to, "the root directory cannot be replaced"));
    }
    let root = to.root.clone();
    blocking(root, move || {
        make_parents(&to)?;
        std::fs::rename(from.real(), to.real())
    })
    .await
}

/// Removes the file at `path`, as `tokio::fs::remove_file`. Durable once its directory is
/// synced.
pub async fn remove_file(path: impl AsRef<Path>) -> io::Result<()> {
    let path = resolve(path.as_ref())?;
    let real = path.real();
    blocking(path.root, move || std::fs::remove_file(real)).await
}

/// Creates directory `path`, as `tokio::fs::create_dir`: fails with `AlreadyExists` if
/// something is there and `NotFound` if its parent is missing. Durable at once (its parent is
/// synced), as the simulated build promises.
pub async fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = resolve(path.as_ref())?;
    let real = path.real();
    blocking(path.root, move || {
        std::fs::create_dir(&real)?;
        match real.parent() {
            Some(parent) => disk::fsync_dir(parent),
            None => Ok(()),
        }
    })
    .await
}

/// Creates directory `path` and its missing parents, as `tokio::fs::create_dir_all`; succeeds
/// if it exists already. Durable at once (the parent of each directory made is synced).
pub async fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    let path = resolve(path.as_ref())?;
    let root = path.root.clone();
    blocking(root, move || {
        if std::fs::metadata(path.real()).is_ok_and(|metadata| !metadata.is_dir()) {
            return Err(DiskError::AlreadyExists {
                path: path.shown().to_string_lossy().into_owned(),
            }
            .into());
        }
        make_dirs_durably(&path.root, &path.relative)
    })
    .await
}

fn root_removal(path: &NodePath) -> io::Error {
    FsError::InvalidPath {
        path: path.shown(),
        reason: "the root directory cannot be removed",
    }
    .into()
}

/// Removes the empty directory `path`, as `tokio::fs::remove_dir`. The root cannot be removed.
pub async fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = resolve(path.as_ref())?;
    if path.is_root() {
        return Err(root_removal(&path));
    }
    let real = path.real();
    blocking(path.root, move || std::fs::remove_dir(real)).await
}

/// Removes directory `path` with everything below it, as `tokio::fs::remove_dir_all`. The
/// root cannot be removed.
pub async fn remove_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    let path = resolve(path.as_ref())?;
    if path.is_root() {
        return Err(root_removal(&path));
    }
    let real = path.real();
    blocking(path.root, move || std::fs::remove_dir_all(real)).await
}

/// Metadata of the file or directory at `path` (following symbolic links), as
/// `tokio::fs::metadata`.
pub async fn metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    let path = resolve(path.as_ref())?;
    let real = path.real();
    blocking(path.root, move || {
        std::fs::metadata(real).map(Metadata::from)
    })
    .await
}

/// Whether something is at `path`, as `tokio::fs::try_exists`: `Ok(false)` when it is not
/// (also below a file, as on the simulated disk), an error when that cannot be told.
pub async fn try_exists(path: impl AsRef<Path>) -> io::Result<bool> {
    let path = resolve(path.as_ref())?;
    let real = path.real();
    blocking(path.root, move || match std::fs::metadata(real) {
        Ok(_) => Ok(true),
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(false)
        }
        Err(error) => Err(error),
    })
    .await
}

/// The entries of directory `path`, as `tokio::fs::read_dir`: its files and directories (not
/// those below them), read at once and sorted by name, as in the simulated build.
pub async fn read_dir(path: impl AsRef<Path>) -> io::Result<ReadDir> {
    let given = path.as_ref().to_path_buf();
    let path = resolve(&given)?;
    let real = path.real();
    blocking(path.root, move || {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(real)? {
            let entry = entry?;
            let name = entry.file_name();
            entries.push(DirEntry {
                path: given.join(&name),
                file_type: entry.file_type()?,
                name,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ReadDir {
            entries: entries.into(),
        })
    })
    .await
}

/// The entries of a directory, from [`read_dir`], sorted by name.
#[derive(Debug)]
pub struct ReadDir {
    entries: VecDeque<DirEntry>,
}

impl ReadDir {
    /// The next entry, or `None` after the last, as `tokio::fs::ReadDir::next_entry`.
    pub async fn next_entry(&mut self) -> io::Result<Option<DirEntry>> {
        Ok(self.entries.pop_front())
    }

    /// The next entry, as `tokio::fs::ReadDir::poll_next_entry`; always ready.
    pub fn poll_next_entry(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<Option<DirEntry>>> {
        Poll::Ready(Ok(self.entries.pop_front()))
    }
}

/// An entry of a directory, from [`ReadDir`].
#[derive(Clone, Debug)]
pub struct DirEntry {
    /// The directory as given to [`read_dir`] (a path of the node, not the real one) joined
    /// with the name: what this module's functions take back.
    path: PathBuf,
    name: OsString,
    file_type: FileType,
}

impl DirEntry {
    /// The entry's name, without its directory.
    pub fn file_name(&self) -> OsString {
        self.name.clone()
    }

    /// The directory given to [`read_dir`] joined with the entry's name.
    pub fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Its type, as seen when the directory was read (a symbolic link is not followed).
    pub async fn file_type(&self) -> io::Result<FileType> {
        Ok(self.file_type)
    }

    /// The entry's metadata, read now ([`metadata`] of its path).
    pub async fn metadata(&self) -> io::Result<Metadata> {
        metadata(&self.path).await
    }
}

/// Metadata of a file or directory: its length and type, the simulated build's API (use
/// `std::fs::metadata` on the data folder for timestamps and permissions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    len: u64,
    file_type: FileType,
}

impl From<std::fs::Metadata> for Metadata {
    fn from(metadata: std::fs::Metadata) -> Self {
        Metadata {
            len: metadata.len(),
            file_type: metadata.file_type(),
        }
    }
}

impl Metadata {
    /// The length in bytes, as the operating system reports it (for a directory, its own
    /// size; the simulated build says 0).
    #[allow(clippy::len_without_is_empty)] // std's Metadata has no is_empty either.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// A regular file.
    pub fn is_file(&self) -> bool {
        self.file_type.is_file()
    }

    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.file_type.is_dir()
    }

    /// A symbolic link: never from [`metadata`], which follows links (a [`DirEntry`]'s type
    /// may be one).
    pub fn is_symlink(&self) -> bool {
        self.file_type.is_symlink()
    }

    /// Its type.
    pub fn file_type(&self) -> FileType {
        self.file_type
    }
}

/// An open file (or directory) under the node's data folder: a `tokio::fs::File`, with the
/// simulated build's API ([`AsyncRead`], [`AsyncWrite`], [`AsyncSeek`], `sync_all`...).
///
/// A directory opened with [`File::open`] reads nothing; its [`File::sync_all`] is a real fsync
/// of the directory, the idiom that makes new and renamed names durable.
#[derive(Debug)]
pub struct File {
    inner: tokio::fs::File,
}

impl File {
    /// Opens the file (or directory) at `path` for reading, as `tokio::fs::File::open`.
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Opens the file at `path` for writing, creating it (and its missing directories) or
    /// truncating it, as `tokio::fs::File::create`.
    pub async fn create(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .await
    }

    /// Creates a new file at `path` for writing; fails with `AlreadyExists` if something is
    /// there, as `tokio::fs::File::create_new`.
    pub async fn create_new(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .await
    }

    /// Options to open a file with, as `tokio::fs::File::options`.
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// fsync (`fsync(2)`), as `tokio::fs::File::sync_all`: waits for the write in flight, then
    /// makes the file's writes durable; for a directory, its entries' creates, renames and
    /// removes.
    pub async fn sync_all(&self) -> io::Result<()> {
        self.inner.sync_all().await
    }

    /// fdatasync, as `tokio::fs::File::sync_data`: the contents and what is needed to read them
    /// back (the length), not the other metadata. (The simulated build syncs both alike.)
    pub async fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data().await
    }

    /// Cuts or grows (with zeros) the file to `size` bytes, as `tokio::fs::File::set_len`.
    pub async fn set_len(&self, size: u64) -> io::Result<()> {
        self.inner.set_len(size).await
    }

    /// The file's metadata, as `tokio::fs::File::metadata`.
    pub async fn metadata(&self) -> io::Result<Metadata> {
        self.inner.metadata().await.map(Metadata::from)
    }
}

impl AsyncRead for File {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for File {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl AsyncSeek for File {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        Pin::new(&mut self.get_mut().inner).start_seek(position)
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        Pin::new(&mut self.get_mut().inner).poll_complete(cx)
    }
}

/// How to open a file, as `tokio::fs::OpenOptions` (and std's), with the same rules:
/// at least one of `read`, `write`, `append`; `truncate`, `create` and `create_new` need
/// `write` or `append`; `truncate` and `append` exclude each other. Otherwise `open` fails
/// with `InvalidInput` (an [`FsError::InvalidOptions`] inside, as in the simulated build).
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
}

impl OpenOptions {
    /// All options off.
    pub fn new() -> Self {
        OpenOptions::default()
    }

    /// Open for reading.
    pub fn read(&mut self, read: bool) -> &mut Self {
        self.read = read;
        self
    }

    /// Open for writing at the cursor.
    pub fn write(&mut self, write: bool) -> &mut Self {
        self.write = write;
        self
    }

    /// Open for writing at the end: every write appends, wherever the cursor is.
    pub fn append(&mut self, append: bool) -> &mut Self {
        self.append = append;
        self
    }

    /// Cut an existing file to length 0 when opening it.
    pub fn truncate(&mut self, truncate: bool) -> &mut Self {
        self.truncate = truncate;
        self
    }

    /// Create the file (and its missing directories) if it is missing.
    pub fn create(&mut self, create: bool) -> &mut Self {
        self.create = create;
        self
    }

    /// Create the file (and its missing directories), failing with `AlreadyExists` if
    /// something is there (`create` and `truncate` are then ignored).
    pub fn create_new(&mut self, create_new: bool) -> &mut Self {
        self.create_new = create_new;
        self
    }

    fn check(&self) -> io::Result<()> {
        let invalid = |reason| Err(FsError::InvalidOptions { reason }.into());
        let writes = self.write || self.append;
        if !self.read && !writes {
            return invalid("none of read, write and append is set");
        }
        if (self.truncate || self.create || self.create_new) && !writes {
            return invalid("truncate, create and create_new need write or append");
        }
        if self.truncate && self.append && !self.create_new {
            return invalid("truncate and append exclude each other");
        }
        Ok(())
    }

    /// Opens `path` with these options, as `tokio::fs::OpenOptions::open`. A directory opens
    /// only for reading (to sync it).
    pub async fn open(&self, path: impl AsRef<Path>) -> io::Result<File> {
        self.check()?;
        let path = resolve(path.as_ref())?;
        let options = self.clone();
        let root = path.root.clone();
        let file = blocking(root, move || {
            if options.create || options.create_new {
                make_parents(&path)?;
            }
            std::fs::OpenOptions::new()
                .read(options.read)
                .write(options.write)
                .append(options.append)
                .truncate(options.truncate)
                .create(options.create)
                .create_new(options.create_new)
                .open(path.real())
        })
        .await?;
        Ok(File {
            inner: tokio::fs::File::from_std(file),
        })
    }
}
