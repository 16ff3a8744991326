//! `File` and `OpenOptions`: open files with a cursor and tokio's I/O traits.

use super::dir::Metadata;
use super::{disk_path, io_error, is_made_dir, FsError};
use crate::disk::{self, DiskError};
use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io::{self, SeekFrom};
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

/// Most bytes one disk operation of a [`File`] reads or writes, as tokio's default buffer
/// size: a larger `poll_read` or `poll_write` does part of the work, as they may.
pub const BUF_BYTES_MAX: usize = 2 * 1024 * 1024;

/// A disk operation in flight, owned so that it outlives the poll that started it.
type Op<T> = Pin<Box<dyn Future<Output = Result<T, DiskError>>>>;

/// The operation a [`File`] has in flight, as tokio's `File` keeps one.
enum InFlight {
    /// A read of bytes from the cursor.
    Read(Op<Vec<u8>>),
    /// A write that `poll_write` already reported as done; returns where it wrote.
    Write {
        op: Op<u64>,
        len: u64,
        /// The cursor before it, restored if it fails (a failed write changes nothing).
        cursor_before: u64,
    },
    /// A seek relative to the end, waiting for the file's length.
    SeekEnd { op: Op<u64>, delta: i64 },
}

/// What a file handle names.
#[derive(Clone)]
enum Target {
    File(Rc<disk::File>),
    /// A directory, opened to sync it (`File::open(dir).await?.sync_all()`).
    Dir(String),
}

/// The mutable part of a [`File`].
struct State {
    /// Where the next read or write starts (unless appending).
    cursor: u64,
    /// Bytes at the cursor, read from the disk and not handed out yet.
    read_ahead: Vec<u8>,
    in_flight: Option<InFlight>,
}

/// An open file (or directory) on the current node's disk, as `tokio::fs::File`.
///
/// It keeps its own cursor and implements [`AsyncRead`], [`AsyncWrite`] and [`AsyncSeek`];
/// each read or write is one operation of [`crate::disk::File`]. As tokio's `File`:
/// - `poll_write` hands its bytes to the disk and reports them written as soon as the
///   operation started; with disk latency, the write is still in flight then, and an error of
///   it is reported by the next operation of the file (`flush` waits for it). Dropping the
///   file lets a write in flight finish in a task of its own, as tokio's does (its error is
///   lost); a crash of the node before it finishes loses it, as it may any unsynced write.
/// - a read in flight is kept if the read is cancelled and handed to the next one.
///
/// A directory opened with [`File::open`] reads nothing; its [`File::sync_all`] is
/// [`crate::disk::sync_dir`], the idiom that makes new and renamed names durable.
pub struct File {
    path: String,
    target: Target,
    readable: bool,
    writable: bool,
    append: bool,
    state: RefCell<State>,
}

impl Drop for File {
    fn drop(&mut self) {
        let Some(InFlight::Write { op, .. }) = self.state.get_mut().in_flight.take() else {
            return;
        };
        // Only from the node's own running code: a file dropped because its node crashed
        // (or at the end of the run) loses the write with the node's other unsynced ones.
        let on_running_node = crate::task::current_node().is_some()
            && crate::world::try_with(|world| world.running()).unwrap_or(false);
        if on_running_node {
            crate::task::spawn(async move {
                let _ = op.await;
            });
        }
    }
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("File")
            .field("path", &self.path)
            .field("dir", &matches!(self.target, Target::Dir(_)))
            .field("cursor", &self.state.borrow().cursor)
            .finish()
    }
}

impl File {
    /// Opens the file (or directory) at `path` for reading, as `tokio::fs::File::open`.
    pub async fn open(path: impl AsRef<Path>) -> io::Result<File> {
        OpenOptions::new().read(true).open(path).await
    }

    /// Opens the file at `path` for writing, creating it or truncating it, as
    /// `tokio::fs::File::create`.
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

    fn new(path: String, target: Target, options: &OpenOptions) -> File {
        File {
            path,
            target,
            readable: options.read,
            writable: options.write || options.append,
            append: options.append,
            state: RefCell::new(State {
                cursor: 0,
                read_ahead: Vec::new(),
                in_flight: None,
            }),
        }
    }

    /// fsync, as `tokio::fs::File::sync_all`: waits for the operation in flight, then makes
    /// the file's writes durable ([`crate::disk::File::sync_all`]); for a directory, makes its
    /// entries' creates, renames and removes durable ([`crate::disk::sync_dir`]).
    pub async fn sync_all(&self) -> io::Result<()> {
        self.finish_in_flight().await?;
        match &self.target {
            Target::File(file) => file.sync_all().await.map_err(io_error),
            Target::Dir(dir) => disk::sync_dir(dir).await.map_err(io_error),
        }
    }

    /// fdatasync, as `tokio::fs::File::sync_data`: the simulated disk syncs the contents and
    /// the length together, so this is [`File::sync_all`].
    pub async fn sync_data(&self) -> io::Result<()> {
        self.sync_all().await
    }

    /// Cuts or grows (with zeros) the file to `size` bytes, as `tokio::fs::File::set_len`;
    /// the cursor stays where it is. Unsynced until [`File::sync_all`], like a write.
    pub async fn set_len(&self, size: u64) -> io::Result<()> {
        self.finish_in_flight().await?;
        let file = self.disk_file_for("writing", self.writable)?;
        self.state.borrow_mut().read_ahead.clear();
        file.truncate(size).await.map_err(io_error)
    }

    /// The file's metadata, as `tokio::fs::File::metadata`: waits for the operation in
    /// flight, then asks the disk for its length.
    pub async fn metadata(&self) -> io::Result<Metadata> {
        self.finish_in_flight().await?;
        match &self.target {
            Target::File(file) => Ok(Metadata::file(file.len().await.map_err(io_error)?)),
            Target::Dir(_) => Ok(Metadata::dir()),
        }
    }

    /// The whole file from its start, whatever the cursor (for [`super::read`]).
    pub(crate) async fn read_all(&self) -> io::Result<Vec<u8>> {
        let file = self.disk_file_for("reading", self.readable)?;
        file.read_to_end().await.map_err(io_error)
    }

    /// Writes all of `bytes` at the start of the freshly created or truncated file (for
    /// [`super::write`]).
    pub(crate) async fn write_all_at_cursor(&self, bytes: &[u8]) -> io::Result<()> {
        let file = self.disk_file_for("writing", self.writable)?;
        let cursor = self.state.borrow().cursor;
        file.write_at(bytes, cursor).await.map_err(io_error)?;
        self.state.borrow_mut().cursor = cursor + bytes.len() as u64;
        Ok(())
    }

    /// The disk file, if this is a file opened for `access`.
    fn disk_file_for(&self, access: &'static str, allowed: bool) -> io::Result<Rc<disk::File>> {
        let Target::File(file) = &self.target else {
            return Err(io_error(DiskError::IsADirectory {
                path: self.path.clone(),
            }));
        };
        if !allowed {
            return Err(FsError::NotOpenedFor {
                path: self.path.clone(),
                access,
            }
            .into());
        }
        Ok(file.clone())
    }

    async fn finish_in_flight(&self) -> io::Result<()> {
        poll_fn(|cx| self.poll_in_flight(cx)).await
    }

    /// Drives the operation in flight to its end. A read's bytes become the read-ahead (its
    /// error is dropped: nobody waits for it any more); a write's or seek's error is returned.
    fn poll_in_flight(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut state = self.state.borrow_mut();
        let result = match state.in_flight.as_mut() {
            None => return Poll::Ready(Ok(())),
            Some(InFlight::Read(op)) => {
                let bytes = ready!(op.as_mut().poll(cx));
                state.read_ahead = bytes.unwrap_or_default();
                Ok(())
            }
            Some(InFlight::Write {
                op,
                len,
                cursor_before,
            }) => match ready!(op.as_mut().poll(cx)) {
                Ok(offset) => {
                    let end = offset + *len;
                    state.cursor = end;
                    Ok(())
                }
                Err(error) => {
                    state.cursor = *cursor_before;
                    Err(io_error(error))
                }
            },
            Some(InFlight::SeekEnd { op, delta }) => {
                let delta = *delta;
                match ready!(op.as_mut().poll(cx)) {
                    Ok(len) => match len.checked_add_signed(delta) {
                        Some(position) => {
                            state.cursor = position;
                            Ok(())
                        }
                        None => Err(FsError::NegativeSeek {
                            path: self.path.clone(),
                        }
                        .into()),
                    },
                    Err(error) => Err(io_error(error)),
                }
            }
        };
        state.in_flight = None;
        Poll::Ready(result)
    }

    fn poll_read_inner(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let file = self.disk_file_for("reading", self.readable)?;
        loop {
            let mut state = self.state.borrow_mut();
            if !state.read_ahead.is_empty() && state.in_flight.is_none() {
                let count = state.read_ahead.len().min(buf.remaining());
                buf.put_slice(&state.read_ahead[..count]);
                state.read_ahead.drain(..count);
                state.cursor += count as u64;
                return Poll::Ready(Ok(()));
            }
            match state.in_flight.as_mut() {
                None => {
                    if buf.remaining() == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    let len = buf.remaining().min(BUF_BYTES_MAX);
                    let offset = state.cursor;
                    let file = file.clone();
                    state.in_flight = Some(InFlight::Read(Box::pin(async move {
                        let mut bytes = vec![0; len];
                        let count = file.read_at(&mut bytes, offset).await?;
                        bytes.truncate(count);
                        Ok(bytes)
                    })));
                }
                Some(InFlight::Read(op)) => {
                    let result = ready!(op.as_mut().poll(cx));
                    state.in_flight = None;
                    let bytes = result.map_err(io_error)?;
                    if bytes.is_empty() {
                        return Poll::Ready(Ok(())); // end of file
                    }
                    state.read_ahead = bytes;
                }
                Some(_) => {
                    drop(state);
                    ready!(self.poll_in_flight(cx))?;
                }
            }
        }
    }

    fn poll_write_inner(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let file = self.disk_file_for("writing", self.writable)?;
        ready!(self.poll_in_flight(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut state = self.state.borrow_mut();
        // Bytes read ahead are not the file's any more once it is written; the cursor is.
        state.read_ahead.clear();
        let len = buf.len().min(BUF_BYTES_MAX);
        let bytes = buf[..len].to_vec();
        let cursor_before = state.cursor;
        let op: Op<u64> = if self.append {
            Box::pin(async move { file.append(&bytes).await })
        } else {
            // The cursor moves now, so that a write after this one lands after it.
            state.cursor += len as u64;
            Box::pin(async move {
                file.write_at(&bytes, cursor_before)
                    .await
                    .map(|()| cursor_before)
            })
        };
        state.in_flight = Some(InFlight::Write {
            op,
            len: len as u64,
            cursor_before,
        });
        drop(state);
        // Without latency the write is done in this poll, and its error reported now.
        match self.poll_in_flight(cx) {
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            _ => Poll::Ready(Ok(len)),
        }
    }

    fn start_seek_inner(&self, position: SeekFrom) -> io::Result<()> {
        let mut state = self.state.borrow_mut();
        if state.in_flight.is_some() {
            return Err(FsError::Busy {
                path: self.path.clone(),
            }
            .into());
        }
        let negative = || -> io::Error {
            FsError::NegativeSeek {
                path: self.path.clone(),
            }
            .into()
        };
        let cursor = match position {
            SeekFrom::Start(offset) => offset,
            SeekFrom::Current(delta) => state
                .cursor
                .checked_add_signed(delta)
                .ok_or_else(negative)?,
            SeekFrom::End(delta) => {
                let Target::File(file) = &self.target else {
                    // A directory has no length to seek from; its position means nothing.
                    return Ok(());
                };
                let file = file.clone();
                state.in_flight = Some(InFlight::SeekEnd {
                    op: Box::pin(async move { file.len().await }),
                    delta,
                });
                state.read_ahead.clear();
                return Ok(());
            }
        };
        state.read_ahead.clear();
        state.cursor = cursor;
        Ok(())
    }
}

impl AsyncRead for File {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.poll_read_inner(cx, buf)
    }
}

impl AsyncWrite for File {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_inner(cx, buf)
    }

    /// Waits for the write in flight; the simulated disk has no user-space buffer beyond it.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_in_flight(cx)
    }

    /// As `poll_flush`: closing a file is dropping it.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_in_flight(cx)
    }
}

impl AsyncSeek for File {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        self.start_seek_inner(position)
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        ready!(self.poll_in_flight(cx))?;
        Poll::Ready(Ok(self.state.borrow().cursor))
    }
}

/// How to open a file, as `tokio::fs::OpenOptions` (and std's), with the same rules:
/// at least one of `read`, `write`, `append`; `truncate`, `create` and `create_new` need
/// `write` or `append`; `truncate` and `append` exclude each other. Otherwise `open` fails
/// with `InvalidInput`.
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

    /// Create the file if it is missing.
    pub fn create(&mut self, create: bool) -> &mut Self {
        self.create = create;
        self
    }

    /// Create the file, failing with `AlreadyExists` if something is there (`create` and
    /// `truncate` are then ignored).
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

    /// Opens `path` with these options: an `open` of the disk, then a `create` if it was
    /// missing and may be created, or a `truncate` if asked. A directory opens only for
    /// reading (to sync it).
    pub async fn open(&self, path: impl AsRef<Path>) -> io::Result<File> {
        self.check()?;
        let path = disk_path(path.as_ref())?;
        let writes = self.write || self.append;
        let is_dir = |path: String| {
            if self.create_new {
                Err(io_error(DiskError::AlreadyExists { path }))
            } else if writes {
                Err(io_error(DiskError::IsADirectory { path }))
            } else {
                Ok(File::new(path.clone(), Target::Dir(path), self))
            }
        };
        if path.is_empty() {
            return is_dir(path);
        }
        if self.create_new {
            if is_made_dir(&path)? {
                return is_dir(path);
            }
            return match disk::create(&path).await {
                Ok(file) => Ok(File::new(path, Target::File(Rc::new(file)), self)),
                Err(DiskError::IsADirectory { path }) => is_dir(path),
                Err(error) => Err(io_error(error)),
            };
        }
        let file = match disk::open(&path).await {
            Ok(file) => {
                if self.truncate {
                    file.truncate(0).await.map_err(io_error)?;
                }
                file
            }
            Err(DiskError::IsADirectory { path }) => return is_dir(path),
            // A file created through the disk at a made directory's path wins (module docs).
            Err(DiskError::NotFound { .. }) if is_made_dir(&path)? => return is_dir(path),
            Err(DiskError::NotFound { .. }) if self.create => {
                disk::create(&path).await.map_err(io_error)?
            }
            Err(error) => return Err(io_error(error)),
        };
        Ok(File::new(path, Target::File(Rc::new(file)), self))
    }
}
