//! The simulated disk: per-node files with fsync semantics, crash models and storage faults.
//!
//! Every node has its own disk. Node code uses it through the free functions of this module
//! ([`create`], [`open`], [`rename`], [`remove`], [`list`], [`sync_dir`]) and the methods of
//! [`File`] (`read_at`, `write_at`, `append`, `len`, `truncate`, `sync_all`); the supervisor
//! switches faults and inspects a disk through [`DiskControl`], from [`crate::Sim::disk`].
//!
//! ```
//! use sim_core::{disk, run, SimConfig};
//! use std::time::Duration;
//!
//! let report = run(7, SimConfig::default(), |sim| async move {
//!     let node = sim
//!         .node("db")
//!         .init(|| async {
//!             // On restart, `init` runs again on what survived the crash.
//!             if disk::open("log").await.is_ok() {
//!                 return;
//!             }
//!             let log = disk::create("log").await.unwrap();
//!             log.append(b"acknowledged").await.unwrap();
//!             log.sync_all().await.unwrap(); // the contents are durable...
//!             disk::sync_dir("").await.unwrap(); // ...and so is the new name.
//!             log.append(b" + lost").await.unwrap(); // unsynced: a crash may lose it.
//!         })
//!         .build();
//!     sim.sleep(Duration::from_millis(10)).await;
//!     sim.crash(node);
//!     let survived = sim.disk(node).read_file("log").unwrap();
//!     assert!(survived.starts_with(b"acknowledged"));
//!     sim.restart(node);
//!     Ok(())
//! });
//! assert!(report.outcome.is_pass(), "{}", report.outcome);
//! ```
//!
//! # What survives a crash
//! Each disk keeps a *durable image* (what survives power loss) and a *page cache*: the ordered
//! list of operations not synced yet. The running node reads the durable image with the page
//! cache on top. As on Linux (and as POSIX requires, no more):
//! - [`File::sync_all`] (fsync) makes the file's writes and truncates durable, not its name;
//! - [`sync_dir`] (fsync of a directory) makes the creates, renames and removes of its entries
//!   durable. A new file survives a crash only once both were done; a renamed file keeps its
//!   old name until the directory is synced.
//!
//! What was synced is never lost by a crash. What was not is decided per crash, from the
//! stream of the node's disk ([`crate::rng::disk_stream_name`]), within the [`CrashModel`] of
//! the node's disk:
//! - `lose_unsynced` off: nothing unsynced is lost (a drive with power-loss protection: a
//!   crash loses only process memory).
//! - otherwise, with `reorder_unsynced` off, the page cache was written back in order until
//!   the power went: a prefix of the unsynced operations lands (its length uniform from none
//!   to all), the rest is lost;
//! - with `reorder_unsynced` on, any subset of the unsynced writes and truncates lands (each
//!   with probability 1/2), so a later write may survive an earlier one, while the name
//!   operations, which file systems journal in order, land as a prefix;
//! - with `torn_writes` on, a write that did not land may have landed in part: a prefix of
//!   whole sectors of it ([`DiskConfig::sector_size_bytes`]; the first one counted from the
//!   write's start), at least one sector and not all. A write within one sector never tears.
//!
//! On every crash of a node, [`crate::Sim::crash`] and [`crate::Sim::restart`] apply the crash
//! model before madsim stops the node's tasks, so no crash path skips it; a restarted node's
//! `init` sees the surviving disk. A crash of a node whose `init` has returned (its state is
//! `Exited`) is a power loss too: its disk loses what it had not synced. Keep `init` running
//! for as long as the node's process should live: when it returns, the node's tasks stop.
//!
//! # Faults
//! Each disk starts with [`DiskConfig::faults`] and each fault can be switched at run time
//! through [`DiskControl`]:
//! - read, write and fsync errors: an operation fails with [`DiskError::Io`] with a given
//!   probability. A failed read or write changes nothing.
//! - no space: a capacity in bytes; a write or truncate that would need more fails with
//!   [`DiskError::NoSpace`] and changes nothing (no short writes).
//! - corruption: [`DiskControl::corrupt_sector`] flips bits of a sector in the durable image,
//!   recorded as a `Corrupt` trace event, for checksums to catch. It tells whether it hit
//!   fsynced data ([`Corruption::synced`]): the durable image also holds bytes that got there
//!   without a successful fsync (written back, landed at a crash or during a failed fsync),
//!   which the node never took for acknowledged, so damage there is no damage to acknowledged
//!   data, until a later successful fsync of the file vouches for it unrepaired (a
//!   `DamageSynced` event). [`DiskControl::corruptions`] lists them all.
//! - latency: every operation waits a uniform random time within a range (at least 1 ms,
//!   madsim's floor), in true simulated time. Without it, operations take no simulated time.
//!
//! # fsync failures
//! After a failed [`File::sync_all`] the file's unsynced data is in an unknown state, as on
//! Linux since 4.13 (the "fsyncgate" semantics PostgreSQL ran into): the kernel marks the
//! failed pages clean, reports the error once, and a later fsync succeeds without writing them.
//! Here, at the failed fsync each of the file's unsynced writes and truncates independently
//! either reaches the durable image or is dropped for good; none stays pending, so the next
//! fsync succeeds without persisting the dropped ones, while the running node keeps reading
//! what it wrote until it crashes. The only safe reaction is PostgreSQL's: treat a failed
//! fsync as a crash and recover from what is durable. A failed [`sync_dir`] lands a random
//! prefix (not all) of the directory's name operations; the rest stays unsynced.
//!
//! # Bounds
//! A disk holds at most [`DiskFaults::capacity_bytes`] bytes (per file, the larger of its
//! durable and cached size) and [`DiskConfig::files_max`] files. Its page cache holds at most
//! [`DiskConfig::pending_ops_max`] operations and [`DiskConfig::pending_bytes_max`] bytes of
//! writes; past that the oldest unsynced operation is written back to the durable image, as the
//! kernel flushes dirty pages under memory pressure (a `Writeback` trace event). Unsynced data
//! may thus survive a crash, which is always allowed; synced data never depends on it.
//!
//! # Paths, handles and errors
//! Paths are relative and `/`-separated (`"wal/0001.log"`); components are non-empty, not `.`
//! or `..`, at most 255 bytes, and a path at most 4096 bytes. Directories are implicit: they
//! exist when a file lies below them, and the root `""` always does. A [`File`] follows its
//! file through renames; after the file is removed its operations fail with
//! [`DiskError::Removed`], and after the node crashed with [`DiskError::Stale`]. Files are
//! closed by dropping them, so an operation on a closed file cannot be written. Errors are
//! typed ([`DiskError`]) and convert into [`std::io::Error`].
//!
//! # Trace
//! Every operation (kind, file, offset, length, result) and every crash verdict, fsync
//! verdict, writeback, corruption and fault change is a [`DiskEvent`] in the trace hash.

mod api;
mod control;
mod error;
mod event;
mod image;
mod page_cache;
mod provenance;
mod state;

pub use api::{create, list, open, remove, rename, replace_durably, sync_dir, File};
pub use control::DiskControl;
pub use error::{DiskError, DiskErrorKind, DiskOp};
pub use event::DiskEvent;
pub use image::{NAME_BYTES_MAX, PATH_BYTES_MAX};
pub use provenance::Corruption;

use crate::node::NodeId;
use crate::trace::Event;
use rand::Rng;
use serde::{Deserialize, Serialize};
use state::{NodeDisk, Settings};
use std::collections::BTreeMap;
use std::time::Duration;

/// Largest accepted capacity of one disk: 1 TiB. The simulated disk keeps files in memory.
pub const CAPACITY_BYTES_MAX: u64 = 1 << 40;

/// Disk settings of a run, the same for every node's disk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskConfig {
    /// Size of a sector, the unit of torn writes and of corruption: a power of two from 1 to
    /// 65536. Default 512.
    pub sector_size_bytes: u32,
    /// What a crash does with unsynced data (each disk starts with it; see
    /// [`DiskControl::set_crash_model`]).
    pub crash_model: CrashModel,
    /// The faults each disk starts with (see [`DiskControl`] to change them at run time).
    pub faults: DiskFaults,
    /// Most unsynced operations in a disk's page cache; past it the oldest is written back.
    pub pending_ops_max: u32,
    /// Most unsynced bytes of writes in a disk's page cache; past it the oldest operation is
    /// written back.
    pub pending_bytes_max: u64,
    /// Most files on one disk; creating more fails with [`DiskError::NoSpace`] (a file system
    /// out of inodes).
    pub files_max: u32,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            sector_size_bytes: 512,
            crash_model: CrashModel::default(),
            faults: DiskFaults::default(),
            pending_ops_max: 4096,
            pending_bytes_max: 16 << 20,
            files_max: 10_000,
        }
    }
}

impl DiskConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        let sector = self.sector_size_bytes;
        if !sector.is_power_of_two() || sector > 65536 {
            return Err(format!(
                "disk.sector_size_bytes must be a power of two from 1 to 65536, got {sector}"
            ));
        }
        if self.files_max == 0 {
            return Err("disk.files_max must be at least 1".into());
        }
        self.faults.validate()
    }
}

/// What a crash does with the data that was not synced. See [`crate::disk`] for the exact
/// distributions. Default: all three on, the most a real disk may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrashModel {
    /// Unsynced operations may be lost. Off: a crash loses nothing written.
    pub lose_unsynced: bool,
    /// A write that did not land may have landed in part, a prefix of whole sectors.
    pub torn_writes: bool,
    /// Unsynced writes may land out of order (any subset), not only as a prefix.
    pub reorder_unsynced: bool,
}

impl Default for CrashModel {
    fn default() -> Self {
        CrashModel {
            lose_unsynced: true,
            torn_writes: true,
            reorder_unsynced: true,
        }
    }
}

/// The injected faults of a disk. Default: none, and a capacity of 64 MiB.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskFaults {
    /// Probability that a read fails with [`DiskError::Io`].
    pub read_error_probability: f64,
    /// Probability that a write, append or truncate fails with [`DiskError::Io`].
    pub write_error_probability: f64,
    /// Probability that a file or directory sync fails with [`DiskError::Io`].
    pub fsync_error_probability: f64,
    /// Capacity of the disk; at most [`CAPACITY_BYTES_MAX`].
    pub capacity_bytes: u64,
    /// Latency of every operation (`None`: none).
    pub latency: Option<Latency>,
}

impl Default for DiskFaults {
    fn default() -> Self {
        DiskFaults {
            read_error_probability: 0.0,
            write_error_probability: 0.0,
            fsync_error_probability: 0.0,
            capacity_bytes: 64 << 20,
            latency: None,
        }
    }
}

impl DiskFaults {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("read_error_probability", self.read_error_probability),
            ("write_error_probability", self.write_error_probability),
            ("fsync_error_probability", self.fsync_error_probability),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("disk.faults.{name} must be within 0..=1, got {p}"));
            }
        }
        if self.capacity_bytes > CAPACITY_BYTES_MAX {
            return Err(format!(
                "disk.faults.capacity_bytes must be at most {CAPACITY_BYTES_MAX}, got {}",
                self.capacity_bytes
            ));
        }
        match self.latency {
            Some(latency) => latency.validate(),
            None => Ok(()),
        }
    }
}

/// A range of disk latency, uniform, in milliseconds of true simulated time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Shortest latency; at least 1 (madsim's floor).
    pub min_ms: u64,
    /// Longest latency; at least `min_ms`, at most one hour.
    pub max_ms: u64,
}

impl Latency {
    /// Checks the range.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_ms == 0 {
            return Err("disk latency min_ms must be at least 1 (madsim's floor is 1 ms)".into());
        }
        if self.max_ms < self.min_ms || self.max_ms > 3_600_000 {
            return Err(format!(
                "disk latency max_ms must be within min_ms..=3600000, got {}..={}",
                self.min_ms, self.max_ms
            ));
        }
        Ok(())
    }

    /// A latency drawn from the range.
    fn draw(&self, rng: &mut impl Rng) -> Duration {
        let ns = rng.gen_range(self.min_ms * 1_000_000..=self.max_ms * 1_000_000);
        Duration::from_nanos(ns)
    }
}

/// The disks of a run.
pub(crate) struct DiskState {
    settings: Settings,
    faults: DiskFaults,
    crash_model: CrashModel,
    nodes: BTreeMap<NodeId, NodeDisk>,
}

impl DiskState {
    pub fn new(config: &DiskConfig) -> Self {
        DiskState {
            settings: Settings::new(config),
            faults: config.faults.clone(),
            crash_model: config.crash_model,
            nodes: BTreeMap::new(),
        }
    }

    /// Gives a new node an empty disk.
    pub fn add_node(&mut self, node: NodeId) {
        let disk = NodeDisk::new(self.faults.clone(), self.crash_model);
        self.nodes.insert(node, disk);
    }

    fn node(&self, node: NodeId) -> &NodeDisk {
        self.nodes
            .get(&node)
            .unwrap_or_else(|| panic!("sim-core: node {node} has no disk"))
    }

    fn node_mut(&mut self, node: NodeId) -> &mut NodeDisk {
        self.nodes
            .get_mut(&node)
            .unwrap_or_else(|| panic!("sim-core: node {node} has no disk"))
    }
}

/// Takes `node`'s disk stream out of its disk, to draw from while the disk is borrowed; give
/// it back with [`put_rng`]. Each node's disk draws from its own stream, named
/// [`crate::rng::disk_stream_name`] and made on first use, so a fault on one node's disk never
/// shifts what another node's disk draws, and a shrunk plan can drop the episodes that do not
/// matter.
pub(crate) fn take_rng(
    world: &mut crate::world::World,
    node: NodeId,
) -> rand_xoshiro::Xoshiro256PlusPlus {
    match world.disk.node_mut(node).rng.take() {
        Some(rng) => rng,
        None => crate::rng::new_stream(
            world.seed,
            &crate::rng::disk_stream_name(&world.node(node).name),
        ),
    }
}

/// Gives back the stream [`take_rng`] took.
pub(crate) fn put_rng(
    world: &mut crate::world::World,
    node: NodeId,
    rng: rand_xoshiro::Xoshiro256PlusPlus,
) {
    world.disk.node_mut(node).rng = Some(rng);
}

/// Crash effects on the disk: the crash model decides what unsynced data survives, the page
/// cache is gone. Called by every crash path of sim-core, with the world borrowed.
pub(crate) fn on_crash(world: &mut crate::world::World, node: NodeId) {
    let mut rng = take_rng(world, node);
    let sector_bytes = world.disk.settings.sector_size_bytes;
    let verdict = world.disk.node_mut(node).crash(&mut rng, sector_bytes);
    put_rng(world, node, rng);
    if let Some(event) = verdict {
        world.record(Some(node), Event::Disk(event));
    }
}
