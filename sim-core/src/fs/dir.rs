//! Directories and metadata: `create_dir`, `read_dir`, `metadata` and their kin.

use super::{disk_path, io_error, is_made_dir, parent, with_made_dirs, FsError};
use crate::disk::{self, DiskError};
use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::task::{Context, Poll};

/// What a path names on the current node's disk.
enum Found {
    /// A file of this length.
    File {
        /// Its length in bytes.
        len: u64,
    },
    /// A directory: the root, a made directory, or one with files below it.
    Dir,
    /// Nothing.
    Missing,
}

/// What `path` names: an `open` (and a `len` for a file) on the disk.
async fn find(path: &str) -> io::Result<Found> {
    if path.is_empty() {
        return Ok(Found::Dir);
    }
    match disk::open(path).await {
        Ok(file) => {
            let len = file.len().await.map_err(io_error)?;
            Ok(Found::File { len })
        }
        Err(DiskError::IsADirectory { .. }) => Ok(Found::Dir),
        Err(DiskError::NotFound { .. }) if is_made_dir(path)? => Ok(Found::Dir),
        Err(DiskError::NotFound { .. }) => Ok(Found::Missing),
        Err(error) => Err(io_error(error)),
    }
}

/// A directory's contents as one `list` of the disk: the paths of the files below it, or
/// `None` when `path` is a file.
async fn files_below(path: &str) -> io::Result<Option<Vec<String>>> {
    match disk::list(path).await {
        Ok(paths) => Ok(Some(paths)),
        Err(DiskError::NotADirectory { .. }) => Ok(None),
        Err(error) => Err(io_error(error)),
    }
}

/// Whether directory `path` exists, given the files below it.
fn dir_exists(path: &str, files: &[String]) -> io::Result<bool> {
    Ok(path.is_empty() || !files.is_empty() || is_made_dir(path)?)
}

/// Makes directory `path` (a disk path) after checking it: its parent must exist.
async fn make_dir(path: &str) -> io::Result<()> {
    let exists = || io_error(DiskError::AlreadyExists { path: path.into() });
    match files_below(path).await? {
        None => return Err(exists()),
        Some(files) if dir_exists(path, &files)? => return Err(exists()),
        Some(_) => {}
    }
    let dir = parent(path);
    match files_below(dir).await? {
        None => {
            return Err(io_error(DiskError::NotADirectory {
                path: path.into(),
                file: dir.into(),
            }))
        }
        Some(files) if !dir_exists(dir, &files)? => {
            return Err(io_error(DiskError::NotFound { path: dir.into() }))
        }
        Some(_) => {}
    }
    with_made_dirs(path, |dirs, dirs_max| {
        if dirs.len() >= dirs_max {
            return Err(io_error(DiskError::NoSpace {
                path: path.into(),
                detail: format!("the disk holds {dirs_max} made directories, its most"),
            }));
        }
        dirs.insert(path.to_string());
        Ok(())
    })?
}

/// Creates directory `path`, as `tokio::fs::create_dir`: fails with `AlreadyExists` if
/// something is there and `NotFound` if its parent is missing. See the module docs for what a
/// directory is on the simulated disk (it is durable at once).
pub async fn create_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = disk_path(path.as_ref())?;
    if path.is_empty() {
        return Err(io_error(DiskError::AlreadyExists { path }));
    }
    make_dir(&path).await
}

/// Creates directory `path` and its missing parents, as `tokio::fs::create_dir_all`; succeeds
/// if it exists already.
pub async fn create_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    let path = disk_path(path.as_ref())?;
    let mut end = 0;
    while end < path.len() {
        end = path[end..]
            .find('/')
            .map_or(path.len(), |slash| end + slash);
        let dir = &path[..end];
        match files_below(dir).await? {
            None if end == path.len() => {
                return Err(io_error(DiskError::AlreadyExists { path: path.clone() }))
            }
            None => {
                return Err(io_error(DiskError::NotADirectory {
                    path: path.clone(),
                    file: dir.into(),
                }))
            }
            Some(files) if dir_exists(dir, &files)? => {}
            Some(_) => make_dir(dir).await?,
        }
        end += 1;
    }
    Ok(())
}

/// Removes the empty directory `path`, as `tokio::fs::remove_dir`: `DirectoryNotEmpty` if
/// anything lies below it, `NotADirectory` for a file, `NotFound` if missing.
pub async fn remove_dir(path: impl AsRef<Path>) -> io::Result<()> {
    let path = disk_path(path.as_ref())?;
    if path.is_empty() {
        return Err(root_removal(&path));
    }
    let Some(files) = files_below(&path).await? else {
        return Err(io_error(DiskError::NotADirectory {
            file: path.clone(),
            path,
        }));
    };
    if !files.is_empty() {
        return Err(FsError::DirectoryNotEmpty { path }.into());
    }
    let prefix = format!("{path}/");
    with_made_dirs(&path, |dirs, _| {
        if dirs
            .range(prefix.clone()..)
            .next()
            .is_some_and(|d| d.starts_with(&prefix))
        {
            return Err(FsError::DirectoryNotEmpty { path: path.clone() }.into());
        }
        if !dirs.remove(&path) {
            return Err(io_error(DiskError::NotFound { path: path.clone() }));
        }
        Ok(())
    })?
}

/// Removes directory `path` with everything below it, as `tokio::fs::remove_dir_all`: one
/// `remove` of the disk per file.
pub async fn remove_dir_all(path: impl AsRef<Path>) -> io::Result<()> {
    let path = disk_path(path.as_ref())?;
    if path.is_empty() {
        return Err(root_removal(&path));
    }
    let Some(files) = files_below(&path).await? else {
        return Err(io_error(DiskError::NotADirectory {
            file: path.clone(),
            path,
        }));
    };
    if !dir_exists(&path, &files)? {
        return Err(io_error(DiskError::NotFound { path }));
    }
    for file in &files {
        disk::remove(file).await.map_err(io_error)?;
    }
    let prefix = format!("{path}/");
    with_made_dirs(&path, |dirs, _| {
        dirs.retain(|dir| *dir != path && !dir.starts_with(&prefix));
    })
}

fn root_removal(path: &str) -> io::Error {
    FsError::InvalidPath {
        path: PathBuf::from(format!("/{path}")),
        reason: "the root directory cannot be removed",
    }
    .into()
}

/// Metadata of the file or directory at `path`, as `tokio::fs::metadata`.
pub async fn metadata(path: impl AsRef<Path>) -> io::Result<Metadata> {
    let disk_path = disk_path(path.as_ref())?;
    match find(&disk_path).await? {
        Found::File { len } => Ok(Metadata::file(len)),
        Found::Dir => Ok(Metadata::dir()),
        Found::Missing => Err(io_error(DiskError::NotFound { path: disk_path })),
    }
}

/// Whether something is at `path`, as `tokio::fs::try_exists`: `Ok(false)` when it is not,
/// an error when that cannot be told.
pub async fn try_exists(path: impl AsRef<Path>) -> io::Result<bool> {
    let disk_path = disk_path(path.as_ref())?;
    Ok(!matches!(find(&disk_path).await?, Found::Missing))
}

/// The entries of directory `path`, as `tokio::fs::read_dir`: its files and directories (not
/// those below them), by name, read at once with one `list` of the disk.
pub async fn read_dir(path: impl AsRef<Path>) -> io::Result<ReadDir> {
    let given = path.as_ref().to_path_buf();
    let dir = disk_path(&given)?;
    let Some(files) = files_below(&dir).await? else {
        return Err(io_error(DiskError::NotADirectory {
            file: dir.clone(),
            path: dir,
        }));
    };
    if !dir_exists(&dir, &files)? {
        return Err(io_error(DiskError::NotFound { path: dir }));
    }
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    // Each file below names one entry: itself, or the directory it lies in.
    let mut entries: Vec<(String, bool)> = files
        .iter()
        .map(|file| {
            let rest = &file[prefix.len()..];
            match rest.split_once('/') {
                Some((name, _)) => (name.to_string(), true),
                None => (rest.to_string(), false),
            }
        })
        .collect();
    with_made_dirs(&dir, |dirs, _| {
        let below = dirs.range(prefix.clone()..);
        for made in below.take_while(|d| d.starts_with(&prefix)) {
            if !made[prefix.len()..].contains('/') {
                entries.push((made[prefix.len()..].to_string(), true));
            }
        }
    })?;
    // A made directory where a file of the same name was created through the disk: the file
    // wins (see the module docs).
    entries.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    entries.dedup_by(|later, earlier| later.0 == earlier.0);
    let entries = entries
        .into_iter()
        .map(|(name, is_dir)| DirEntry {
            path: given.join(&name),
            name,
            is_dir,
        })
        .collect();
    Ok(ReadDir { entries })
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
    path: PathBuf,
    name: String,
    is_dir: bool,
}

impl DirEntry {
    /// The entry's name, without its directory.
    pub fn file_name(&self) -> OsString {
        OsString::from(&self.name)
    }

    /// The directory given to [`read_dir`] joined with the entry's name.
    pub fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// Whether it is a file or a directory, as seen when the directory was read.
    pub async fn file_type(&self) -> io::Result<FileType> {
        Ok(FileType {
            is_dir: self.is_dir,
        })
    }

    /// The entry's metadata, read now ([`metadata`] of its path).
    pub async fn metadata(&self) -> io::Result<Metadata> {
        metadata(&self.path).await
    }
}

/// Whether an entry is a file or a directory (there are no symlinks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileType {
    is_dir: bool,
}

impl FileType {
    /// A regular file.
    pub fn is_file(&self) -> bool {
        !self.is_dir
    }

    /// A directory.
    pub fn is_dir(&self) -> bool {
        self.is_dir
    }

    /// Always `false`: the simulated disk has no symlinks.
    pub fn is_symlink(&self) -> bool {
        false
    }
}

/// Metadata of a file or directory: its length and type (the simulated disk keeps no
/// timestamps or permissions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    len: u64,
    file_type: FileType,
}

impl Metadata {
    pub(crate) fn file(len: u64) -> Self {
        Metadata {
            len,
            file_type: FileType { is_dir: false },
        }
    }

    pub(crate) fn dir() -> Self {
        Metadata {
            len: 0,
            file_type: FileType { is_dir: true },
        }
    }

    /// The length in bytes, as the running node sees it (0 for a directory).
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

    /// Always `false`: the simulated disk has no symlinks.
    pub fn is_symlink(&self) -> bool {
        false
    }

    /// Whether it is a file or a directory.
    pub fn file_type(&self) -> FileType {
        self.file_type
    }
}
