//! The supervisor's control of a node's disk: faults, crash model, corruption, inspection.

use super::error::DiskError;
use super::event::DiskEvent;
use super::provenance::Corruption;
use super::state::NodeDisk;
use super::{CrashModel, DiskFaults, Latency};
use crate::node::NodeId;
use crate::runner::ConfigError;
use crate::trace::Event;

/// Control of one node's disk, from [`crate::Sim::disk`]: switch faults on and off at run time,
/// corrupt stored sectors, and look at what the disk holds.
///
/// Every change is a trace event. Inspection ([`DiskControl::read_file`] and friends) is not:
/// it changes nothing.
#[derive(Clone, Copy, Debug)]
pub struct DiskControl {
    node: NodeId,
}

impl DiskControl {
    pub(crate) fn new(node: NodeId) -> Self {
        DiskControl { node }
    }

    fn with_disk<R>(&self, f: impl FnOnce(&mut NodeDisk) -> R) -> R {
        crate::world::with(|world| f(world.disk.node_mut(self.node)))
    }

    fn record(&self, event: DiskEvent) {
        crate::world::with(|world| world.record(Some(self.node), Event::Disk(event)));
    }

    /// The node whose disk this is.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The disk's faults now.
    pub fn faults(&self) -> DiskFaults {
        self.with_disk(|disk| disk.faults.clone())
    }

    /// Sets all of the disk's faults at once.
    pub fn set_faults(&self, faults: DiskFaults) -> Result<(), ConfigError> {
        faults.validate().map_err(ConfigError)?;
        self.with_disk(|disk| disk.faults = faults.clone());
        self.record(DiskEvent::Faults(faults));
        Ok(())
    }

    /// Puts the disk's faults back to the run's configured ones (`SimConfig::disk.faults`).
    pub fn reset_faults(&self) {
        let faults = crate::world::with(|world| world.config.disk.faults.clone());
        self.set_faults(faults)
            .expect("the configured faults were validated with the config");
    }

    fn update(&self, change: impl FnOnce(&mut DiskFaults)) -> Result<(), ConfigError> {
        let mut faults = self.faults();
        change(&mut faults);
        self.set_faults(faults)
    }

    /// Each read fails with [`DiskError::Io`] with probability `p` (0: off).
    pub fn set_read_error_probability(&self, p: f64) -> Result<(), ConfigError> {
        self.update(|faults| faults.read_error_probability = p)
    }

    /// Each write, append and truncate fails with [`DiskError::Io`] with probability `p`.
    pub fn set_write_error_probability(&self, p: f64) -> Result<(), ConfigError> {
        self.update(|faults| faults.write_error_probability = p)
    }

    /// Each file or directory sync fails with [`DiskError::Io`] with probability `p`, leaving
    /// the unsynced data in an unknown state (see [`crate::disk`], "fsync failures").
    pub fn set_fsync_error_probability(&self, p: f64) -> Result<(), ConfigError> {
        self.update(|faults| faults.fsync_error_probability = p)
    }

    /// The disk's capacity: a write that needs more space fails with [`DiskError::NoSpace`].
    /// Lowering it below what the disk holds makes every growing write fail ("no space left").
    pub fn set_capacity_bytes(&self, capacity_bytes: u64) -> Result<(), ConfigError> {
        self.update(|faults| faults.capacity_bytes = capacity_bytes)
    }

    /// Every operation takes a latency drawn from the range (`None`: operations take no time).
    pub fn set_latency(&self, latency: Option<Latency>) -> Result<(), ConfigError> {
        self.update(|faults| faults.latency = latency)
    }

    /// The disk's crash model now.
    pub fn crash_model(&self) -> CrashModel {
        self.with_disk(|disk| disk.crash_model)
    }

    /// Sets what the next crashes do with unsynced data.
    pub fn set_crash_model(&self, model: CrashModel) {
        self.with_disk(|disk| disk.crash_model = model);
        self.record(DiskEvent::CrashModel(model));
    }

    /// Flips between 1 and 8 random bits of sector `sector` of the stored (durable) copy of
    /// the file at `path`, as bit rot would; recorded as a `Corrupt` event. The running node
    /// reads the damage at once if its cached copy of the sector is clean, else after its
    /// next crash. Returns what it did, with whether a flipped bit lay in fsynced data
    /// ([`Corruption::synced`]; a later fsync may still turn it true, see
    /// [`DiskControl::corruptions`]).
    pub fn corrupt_sector(&self, path: &str, sector: u64) -> Result<Corruption, DiskError> {
        let result = crate::world::with(|world| {
            let mut rng = super::take_rng(world, self.node);
            let sector_bytes = world.disk.settings.sector_size_bytes;
            let result =
                world
                    .disk
                    .node_mut(self.node)
                    .corrupt(path, sector, &mut rng, sector_bytes);
            super::put_rng(world, self.node, rng);
            result
        });
        let corruption = result?;
        self.record(DiskEvent::Corrupt {
            path: corruption.path.clone(),
            sector: corruption.sector,
            bits: corruption.bits,
            synced: corruption.synced,
        });
        Ok(corruption)
    }

    /// Corrupts a random sector of the stored copy of the file at `path` (`None`: of a random
    /// non-empty stored file); see [`DiskControl::corrupt_sector`]. Returns what it did, or
    /// `None` when there is no stored data to corrupt.
    pub fn corrupt_random_sector(&self, path: Option<&str>) -> Option<Corruption> {
        let target = crate::world::with(|world| {
            let mut rng = super::take_rng(world, self.node);
            let sector_bytes = world.disk.settings.sector_size_bytes;
            let target = world
                .disk
                .node(self.node)
                .random_sector(path, &mut rng, sector_bytes);
            super::put_rng(world, self.node, rng);
            target
        })?;
        let corruption = self
            .corrupt_sector(&target.0, target.1)
            .expect("a stored sector was chosen");
        Some(corruption)
    }

    /// Every corruption of this disk so far, oldest first. Each one's
    /// [`Corruption::synced`] is as it stands now: a corruption of never-fsynced bytes turns
    /// synced when a later successful fsync of the file vouches for a flipped byte still on
    /// the disk (as recorded by a `DamageSynced` event).
    pub fn corruptions(&self) -> Vec<Corruption> {
        self.with_disk(|disk| disk.provenance.corruptions())
    }

    /// The paths of the files as the running node sees them, sorted.
    pub fn files(&self) -> Vec<String> {
        self.with_disk(|disk| disk.volatile.paths_under(""))
    }

    /// The paths of the files that would survive a crash with everything unsynced lost.
    pub fn durable_files(&self) -> Vec<String> {
        self.with_disk(|disk| disk.durable.paths_under(""))
    }

    /// A file's contents as the running node sees them (after a crash: what survived).
    pub fn read_file(&self, path: &str) -> Option<Vec<u8>> {
        self.with_disk(|disk| disk.volatile.file(path).cloned())
    }

    /// A file's durable contents: what is stored on the disk under that durable name.
    pub fn read_durable(&self, path: &str) -> Option<Vec<u8>> {
        self.with_disk(|disk| disk.durable.file(path).cloned())
    }

    /// How many operations are unsynced (in the page cache).
    pub fn pending_ops(&self) -> usize {
        self.with_disk(|disk| disk.pending.len())
    }

    /// Bytes the disk holds, as counted against its capacity.
    pub fn usage_bytes(&self) -> u64 {
        self.with_disk(|disk| disk.usage_bytes())
    }
}
