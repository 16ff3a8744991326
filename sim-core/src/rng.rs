//! Named, seeded random streams.
//!
//! Every purpose has its own `Xoshiro256++` stream derived from the run's seed and the
//! stream's name, so turning one fault kind on does not shift the decisions of another.
//! Streams are as narrow as the things that draw: each directed link draws from its own
//! ([`link_stream_name`]), each node's disk from its own ([`disk_stream_name`]), so that a
//! fault on one link or disk, or its removal while a plan is shrunk, leaves every other
//! link's and disk's random choices as they were. Workloads should name their own streams
//! (for example `"workload/client-3"`).
//!
//! madsim's own scheduler keeps its separate seeded generator; it decides which ready task runs
//! next.

use rand::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// Network decisions (latency, loss, duplication): the prefix of each link's stream.
pub const NETWORK: &str = "network";
/// Disk decisions (crash models, corruption, latency): the prefix of each disk's stream.
pub const DISK: &str = "disk";

/// The name of the stream of the directed link `from -> to` (node names).
pub fn link_stream_name(from: &str, to: &str) -> String {
    format!("{NETWORK}/{from}->{to}")
}

/// The name of the stream of node `node`'s disk.
pub fn disk_stream_name(node: &str) -> String {
    format!("{DISK}/{node}")
}
/// Clock decisions.
pub const CLOCK: &str = "clock";
/// The workload's default stream.
pub const WORKLOAD: &str = "workload";
/// Fault plan decisions.
pub const FAULTS: &str = "faults";
/// Buggify firing decisions.
pub const BUGGIFY: &str = "buggify";

/// The seed of stream `name` in a run seeded with `seed`.
pub fn stream_seed(seed: u64, name: &str) -> u64 {
    splitmix64(seed ^ crate::trace::hash_str(name))
}

/// A fresh generator for stream `name` of a run seeded with `seed` (usable outside a run).
pub fn new_stream(seed: u64, name: &str) -> Xoshiro256PlusPlus {
    Xoshiro256PlusPlus::seed_from_u64(stream_seed(seed, name))
}

/// SplitMix64: a good 64-bit mixer, used to spread seeds.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Runs `f` with the current run's generator for stream `name`.
///
/// # Panics
/// Outside a run started by [`crate::run`].
#[cfg(madsim)]
pub fn with_stream<R>(name: &str, f: impl FnOnce(&mut Xoshiro256PlusPlus) -> R) -> R {
    crate::world::with(|world| f(world.stream(name)))
}

/// Runs `f` with this thread's generator for stream `name`.
///
/// In a real build (without `--cfg madsim`) every stream is seeded once per thread from the
/// operating system's randomness: production code keeps its names and gets real randomness.
#[cfg(not(madsim))]
pub fn with_stream<R>(name: &str, f: impl FnOnce(&mut Xoshiro256PlusPlus) -> R) -> R {
    use std::cell::RefCell;
    use std::collections::BTreeMap;
    thread_local! {
        static STREAMS: RefCell<BTreeMap<String, Xoshiro256PlusPlus>> =
            const { RefCell::new(BTreeMap::new()) };
    }
    STREAMS.with(|streams| {
        let mut streams = streams.borrow_mut();
        if !streams.contains_key(name) {
            let generator = Xoshiro256PlusPlus::from_rng(rand::rngs::OsRng)
                .expect("the operating system's random source works");
            streams.insert(name.to_owned(), generator);
        }
        f(streams.get_mut(name).expect("inserted above"))
    })
}

/// A handle to a named stream of the current run that implements [`RngCore`], so that
/// `rand::Rng` methods work on it: `sim_core::rng::stream("workload").gen_range(0..10)`.
#[derive(Clone, Debug)]
pub struct Stream {
    name: String,
}

/// A handle to the current run's stream `name` (in a real build: this thread's, seeded from the
/// operating system).
pub fn stream(name: impl Into<String>) -> Stream {
    Stream { name: name.into() }
}

impl RngCore for Stream {
    fn next_u32(&mut self) -> u32 {
        with_stream(&self.name, |rng| rng.next_u32())
    }
    fn next_u64(&mut self) -> u64 {
        with_stream(&self.name, |rng| rng.next_u64())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        with_stream(&self.name, |rng| rng.fill_bytes(dest))
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_by_name_and_seed() {
        let a = new_stream(1, NETWORK).next_u64();
        let b = new_stream(1, DISK).next_u64();
        let c = new_stream(2, NETWORK).next_u64();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, new_stream(1, NETWORK).next_u64());
    }
}
