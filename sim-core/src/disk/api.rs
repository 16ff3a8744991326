//! The node-side API: files on the current node's disk.
//!
//! Every operation runs the same way ([`perform`]): find the node (and check the handle), wait
//! the simulated latency if that fault is on, then, in one step, check again, draw the
//! injected faults, act on the node's disk and record the trace event. An operation takes
//! effect when its latency has passed; one whose future is dropped before (a timeout, a crash)
//! has no effect.

use super::error::{DiskError, DiskErrorKind, DiskOp};
use super::event::DiskEvent;
use super::image::InodeId;
use super::state::{NodeDisk, Settings};
use crate::node::{NodeId, NodeState};
use crate::trace::Event;
use crate::world::World;
use rand::Rng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// An open file on a node's disk, from [`create`] or [`open`].
///
/// It names the file itself, not its path: it follows the file through [`rename`], and once
/// the file is removed (or replaced by a rename onto its path) its operations fail with
/// [`DiskError::Removed`]. It belongs to one incarnation of one node: after the node crashes,
/// its operations fail with [`DiskError::Stale`], so a handle that escaped into shared state
/// cannot act on the disk of the restarted node. Dropping it closes it.
#[derive(Debug)]
pub struct File {
    node: NodeId,
    incarnation: u64,
    inode: InodeId,
    path: String,
}

/// What the trace records of an operation.
struct Record {
    op: DiskOp,
    path: String,
    to: Option<String>,
    offset: u64,
    len: u64,
}

impl Record {
    fn new(op: DiskOp, path: &str) -> Self {
        Record {
            op,
            path: path.to_string(),
            to: None,
            offset: 0,
            len: 0,
        }
    }

    fn event(self, result: Result<(), DiskErrorKind>) -> DiskEvent {
        match self.to {
            Some(to) => DiskEvent::Rename {
                from: self.path,
                to,
                result,
            },
            None => DiskEvent::Op {
                op: self.op,
                path: self.path,
                offset: self.offset,
                len: self.len,
                result,
            },
        }
    }
}

/// What an operation's body works with.
struct Ctx<'a> {
    disk: &'a mut NodeDisk,
    settings: &'a Settings,
    rng: &'a mut Xoshiro256PlusPlus,
    node: NodeId,
    incarnation: u64,
    /// Events to record after the operation's own (fault verdicts, writebacks).
    events: Vec<DiskEvent>,
}

impl Ctx<'_> {
    /// Whether a fault with probability `p` strikes; draws only when `p > 0` so that faults
    /// left off do not shift the disk's other decisions.
    fn strikes(&mut self, p: f64) -> bool {
        p > 0.0 && self.rng.gen_bool(p)
    }

    /// Writes back what the page cache holds past its bounds.
    fn enforce_bounds(&mut self) {
        let events = self.disk.enforce_bounds(self.settings);
        self.events.extend(events);
    }

    /// The name to record for an open file: its current one, else the one it was opened as.
    fn name(&self, file: &File) -> String {
        self.disk
            .name_of(file.inode)
            .unwrap_or(&file.path)
            .to_string()
    }
}

/// Which disk an operation acts on.
enum Target<'a> {
    /// The disk of the node whose code runs now.
    CurrentNode,
    /// The disk (and incarnation) of an open file.
    Handle(&'a File),
}

/// The node an operation acts on and its incarnation, or why it may not act.
fn resolve(world: &World, target: &Target<'_>, path: &str) -> Result<(NodeId, u64), DiskError> {
    let current = world.current_node();
    match target {
        Target::CurrentNode => {
            let node = current.ok_or_else(|| DiskError::NotOnNode { path: path.into() })?;
            Ok((node, world.node(node).incarnation))
        }
        Target::Handle(file) => {
            if current != Some(file.node) {
                let used_on = match current {
                    Some(node) => format!("node {}", world.node(node).name),
                    None => "the supervisor (or a task not spawned through sim_core)".into(),
                };
                return Err(DiskError::WrongNode {
                    path: file.path.clone(),
                    handle_node: file.node,
                    used_on,
                });
            }
            let entry = world.node(file.node);
            if entry.state == NodeState::Down || entry.incarnation != file.incarnation {
                return Err(DiskError::Stale {
                    path: file.path.clone(),
                    node: file.node,
                    handle_incarnation: file.incarnation,
                    current_incarnation: entry.incarnation,
                });
            }
            Ok((file.node, file.incarnation))
        }
    }
}

/// Runs one operation; see the module docs.
async fn perform<T>(
    target: Target<'_>,
    mut record: Record,
    body: impl FnOnce(&mut Ctx<'_>, &mut Record) -> Result<T, DiskError>,
) -> Result<T, DiskError> {
    let delay = crate::world::with(|world| {
        let (node, _) = resolve(world, &target, &record.path).inspect_err(|error| {
            let node = world.current_node();
            let event = Record::new(record.op, &record.path).event(Err(error.kind()));
            world.record(node, Event::Disk(event));
        })?;
        let Some(latency) = world.disk.node(node).faults.latency else {
            return Ok(None);
        };
        let mut rng = super::take_rng(world, node);
        let delay = latency.draw(&mut rng);
        super::put_rng(world, node, rng);
        Ok(Some(delay))
    })?;
    if let Some(delay) = delay {
        // Disk latency is physics: true time, not the node's clock.
        madsim::time::sleep(delay).await;
    }
    crate::world::with(|world| {
        let (node, incarnation) = match resolve(world, &target, &record.path) {
            Ok(found) => found,
            Err(error) => {
                let event = Record::new(record.op, &record.path).event(Err(error.kind()));
                world.record(world.current_node(), Event::Disk(event));
                return Err(error);
            }
        };
        let mut rng = super::take_rng(world, node);
        let state = &mut world.disk;
        let mut ctx = Ctx {
            disk: state.nodes.get_mut(&node).expect("every node has a disk"),
            settings: &state.settings,
            rng: &mut rng,
            node,
            incarnation,
            events: Vec::new(),
        };
        let result = body(&mut ctx, &mut record);
        let events = ctx.events;
        super::put_rng(world, node, rng);
        let outcome = result.as_ref().map(|_| ()).map_err(DiskError::kind);
        world.record(Some(node), Event::Disk(record.event(outcome)));
        for event in events {
            world.record(Some(node), Event::Disk(event));
        }
        result
    })
}

/// Creates a new, empty file at `path` on the current node's disk and opens it; fails with
/// [`DiskError::AlreadyExists`] if there is one.
///
/// The new name survives a crash only once its directory is synced ([`sync_dir`]).
/// Directories are implicit: `create("wal/0001")` needs no `mkdir`.
pub async fn create(path: &str) -> Result<File, DiskError> {
    perform(
        Target::CurrentNode,
        Record::new(DiskOp::Create, path),
        |ctx, _| {
            let inode = ctx.disk.create(path, ctx.settings)?;
            ctx.enforce_bounds();
            Ok(File {
                node: ctx.node,
                incarnation: ctx.incarnation,
                inode,
                path: path.to_string(),
            })
        },
    )
    .await
}

/// Opens the existing file at `path` on the current node's disk.
pub async fn open(path: &str) -> Result<File, DiskError> {
    perform(
        Target::CurrentNode,
        Record::new(DiskOp::Open, path),
        |ctx, _| {
            let inode = ctx.disk.lookup(path)?;
            Ok(File {
                node: ctx.node,
                incarnation: ctx.incarnation,
                inode,
                path: path.to_string(),
            })
        },
    )
    .await
}

/// Renames `from` to `to` on the current node's disk, replacing a file at `to` (atomically, as
/// POSIX `rename`). Open handles follow the file.
///
/// The rename survives a crash only once the directory is synced ([`sync_dir`]); until then a
/// crash may leave the old name (and an old file at `to`).
pub async fn rename(from: &str, to: &str) -> Result<(), DiskError> {
    let mut record = Record::new(DiskOp::Rename, from);
    record.to = Some(to.to_string());
    perform(Target::CurrentNode, record, |ctx, _| {
        ctx.disk.rename(from, to)?;
        ctx.enforce_bounds();
        Ok(())
    })
    .await
}

/// Removes the file at `path` from the current node's disk. Open handles to it fail with
/// [`DiskError::Removed`] from then on.
///
/// The removal survives a crash only once the directory is synced ([`sync_dir`]).
pub async fn remove(path: &str) -> Result<(), DiskError> {
    perform(
        Target::CurrentNode,
        Record::new(DiskOp::Remove, path),
        |ctx, _| {
            ctx.disk.remove(path)?;
            ctx.enforce_bounds();
            Ok(())
        },
    )
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
    let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
    sync_dir(dir).await
}

/// The paths of every file below directory `dir` (`""`: the whole disk), sorted.
pub async fn list(dir: &str) -> Result<Vec<String>, DiskError> {
    perform(
        Target::CurrentNode,
        Record::new(DiskOp::List, dir),
        |ctx, record| {
            let paths = ctx.disk.list(dir)?;
            record.len = paths.len() as u64;
            Ok(paths)
        },
    )
    .await
}

/// fsync of directory `dir` (`""`: the root): the creates, renames and removes of its entries
/// become durable. A rename across directories is made durable with everything before it in
/// the other directory too (the file system journals name changes in order).
///
/// May fail with an injected [`DiskError::Io`] (see [`crate::disk`] on fsync failures): then
/// some of those changes are durable and the others are still not.
pub async fn sync_dir(dir: &str) -> Result<(), DiskError> {
    perform(
        Target::CurrentNode,
        Record::new(DiskOp::SyncDir, dir),
        |ctx, record| {
            let fails = ctx.strikes(ctx.disk.faults.fsync_error_probability);
            let failure = fails.then_some(&mut *ctx.rng);
            let (synced, verdict) = ctx.disk.sync_dir(dir, failure)?;
            record.len = synced;
            ctx.events.extend(verdict);
            if fails {
                return Err(DiskError::Io {
                    op: DiskOp::SyncDir,
                    path: dir.to_string(),
                });
            }
            Ok(())
        },
    )
    .await
}

impl File {
    /// The path the file was opened (or created) with.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The node whose disk holds the file.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Reads into `buf` from byte `offset`; returns how many bytes were read (fewer than
    /// `buf.len()` at the end of the file, 0 past it). Reads see unsynced writes.
    ///
    /// May fail with an injected [`DiskError::Io`].
    pub async fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize, DiskError> {
        let mut record = Record::new(DiskOp::Read, &self.path);
        record.offset = offset;
        perform(Target::Handle(self), record, |ctx, record| {
            record.path = ctx.name(self);
            ctx.disk.contents(self.inode, &self.path)?;
            if ctx.strikes(ctx.disk.faults.read_error_probability) {
                return Err(self.io_error(DiskOp::Read));
            }
            let data = ctx.disk.contents(self.inode, &self.path)?;
            let start = usize::try_from(offset).map_or(data.len(), |o| o.min(data.len()));
            let count = buf.len().min(data.len() - start);
            buf[..count].copy_from_slice(&data[start..start + count]);
            record.len = count as u64;
            Ok(count)
        })
        .await
    }

    /// Reads the whole file (a `len` and a `read` operation).
    pub async fn read_to_end(&self) -> Result<Vec<u8>, DiskError> {
        let len = self.len().await?;
        let mut buf = vec![0; usize::try_from(len).expect("file sizes are bounded")];
        let count = self.read_at(&mut buf, 0).await?;
        buf.truncate(count);
        Ok(buf)
    }

    /// Writes all of `buf` at byte `offset`, growing the file (with zeros) as needed. The
    /// write is in the page cache: it survives a crash only after [`File::sync_all`].
    ///
    /// May fail with an injected [`DiskError::Io`] or with [`DiskError::NoSpace`]; a failed
    /// write changes nothing.
    pub async fn write_at(&self, buf: &[u8], offset: u64) -> Result<(), DiskError> {
        let mut record = Record::new(DiskOp::Write, &self.path);
        record.offset = offset;
        record.len = buf.len() as u64;
        perform(Target::Handle(self), record, |ctx, record| {
            record.path = ctx.name(self);
            self.write_in(ctx, buf, offset)
        })
        .await
    }

    /// Writes all of `buf` at the end of the file; returns the offset it was written at. Like
    /// [`File::write_at`] otherwise.
    pub async fn append(&self, buf: &[u8]) -> Result<u64, DiskError> {
        let mut record = Record::new(DiskOp::Append, &self.path);
        record.len = buf.len() as u64;
        perform(Target::Handle(self), record, |ctx, record| {
            record.path = ctx.name(self);
            let offset = ctx.disk.contents(self.inode, &self.path)?.len() as u64;
            record.offset = offset;
            self.write_in(ctx, buf, offset)?;
            Ok(offset)
        })
        .await
    }

    fn write_in(&self, ctx: &mut Ctx<'_>, buf: &[u8], offset: u64) -> Result<(), DiskError> {
        ctx.disk.contents(self.inode, &self.path)?;
        if ctx.strikes(ctx.disk.faults.write_error_probability) {
            return Err(self.io_error(DiskOp::Write));
        }
        ctx.disk.write(self.inode, offset, buf, &self.path)?;
        ctx.enforce_bounds();
        Ok(())
    }

    /// The file's length in bytes, as the running node sees it.
    #[allow(clippy::len_without_is_empty)] // An async length; `len().await? == 0` reads fine.
    pub async fn len(&self) -> Result<u64, DiskError> {
        perform(
            Target::Handle(self),
            Record::new(DiskOp::Len, &self.path),
            |ctx, record| {
                record.path = ctx.name(self);
                let len = ctx.disk.contents(self.inode, &self.path)?.len() as u64;
                record.len = len;
                Ok(len)
            },
        )
        .await
    }

    /// Sets the file's length: cuts it, or grows it with zeros. Unsynced until
    /// [`File::sync_all`], like a write, and may fail like one.
    pub async fn truncate(&self, len: u64) -> Result<(), DiskError> {
        let mut record = Record::new(DiskOp::Truncate, &self.path);
        record.len = len;
        perform(Target::Handle(self), record, |ctx, record| {
            record.path = ctx.name(self);
            ctx.disk.contents(self.inode, &self.path)?;
            if ctx.strikes(ctx.disk.faults.write_error_probability) {
                return Err(self.io_error(DiskOp::Truncate));
            }
            ctx.disk.truncate(self.inode, len, &self.path)?;
            ctx.enforce_bounds();
            Ok(())
        })
        .await
    }

    /// fsync: the file's writes and truncates so far become durable (its contents and length;
    /// not its name: a new or renamed file needs [`sync_dir`] too).
    ///
    /// May fail with an injected [`DiskError::Io`]. After a failure the file's unsynced data
    /// is in an unknown state, as on Linux: see [`crate::disk`] ("fsync failures").
    pub async fn sync_all(&self) -> Result<(), DiskError> {
        perform(
            Target::Handle(self),
            Record::new(DiskOp::SyncAll, &self.path),
            |ctx, record| {
                record.path = ctx.name(self);
                ctx.disk.contents(self.inode, &self.path)?;
                let fails = ctx.strikes(ctx.disk.faults.fsync_error_probability);
                let failure = fails.then_some(&mut *ctx.rng);
                let (synced, verdict) = ctx.disk.sync_file(self.inode, failure, &record.path);
                record.len = synced;
                ctx.events.extend(verdict);
                if fails {
                    return Err(self.io_error(DiskOp::SyncAll));
                }
                Ok(())
            },
        )
        .await
    }

    fn io_error(&self, op: DiskOp) -> DiskError {
        DiskError::Io {
            op,
            path: self.path.clone(),
        }
    }
}
