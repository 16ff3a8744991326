//! # sim-core: the deterministic world
//!
//! sim-core runs a distributed program inside one seeded, single-threaded simulation built on
//! [madsim]. Same seed and same configuration give a byte-identical trace, in one process and
//! across processes, debug and release builds alike.
//!
//! ```no_run
//! use sim_core::{run, SimConfig, time};
//! use std::time::Duration;
//!
//! let report = run(42, SimConfig::default(), |sim| async move {
//!     let server = sim
//!         .node("server")
//!         .init(|| async {
//!             time::sleep(Duration::from_millis(10)).await;
//!         })
//!         .build();
//!     sim.sleep(Duration::from_millis(5)).await;
//!     sim.crash(server);
//!     sim.restart(server);
//!     sim.sleep(Duration::from_millis(50)).await;
//!     Ok(())
//! });
//! assert!(report.outcome.is_pass());
//! println!("trace hash {:016x}", report.trace_hash);
//! ```
//!
//! ## Map of the crate
//! - [`runner`]: [`run`] builds a world from a seed and a [`SimConfig`], runs the supervisor
//!   future on a fresh OS thread and returns a [`Report`] whose [`Outcome`] is one of `pass`,
//!   `violation`, `panic`, `time_limit`, `step_limit`, `deadlock`, `hung`.
//! - [`node`]: named nodes with an `init` that runs again on restart; crash, restart, pause
//!   and resume ([`Sim`] is the supervisor's handle).
//! - [`time`]: per-node monotonic and wall clocks with offset, drift and jumps; sleeps and
//!   timeouts follow the node's clock.
//! - [`rng`]: named, seeded `Xoshiro256++` streams, one per purpose.
//! - [`trace`]: every simulated event with its simulated time and node, a stable 64-bit hash,
//!   and a `tracing` layer that stamps application logs with simulated time and node name.
//! - [`buggify`](mod@buggify): FoundationDB-style code-level fault injection, [`buggify!`].
//! - [`task`]: spawning tasks that the step limit counts.
//! - [`net`]: the simulated network (typed messages, RPC, partitions, loss, duplication...).
//! - [`disk`]: the simulated disk (fsync semantics, crash models, storage faults).
//! - [`fs`]: files and directories with the shapes of `tokio::fs`, a thin layer over [`disk`].
//! - [`bench`]: workloads that measure sim-core against raw madsim (for benchmarks only).
//!
//! ## Time resolution
//! madsim rounds every sleep up to at least 1 ms of simulated time, so every latency and sleep
//! in sim-core is at least 1 ms too.
//!
//! ## What is not supported
//! Calling madsim's `Handle::kill`/`Handle::restart` directly bypasses sim-core's crash effects
//! (disk crash model, network reset) and is unsupported: use [`Sim::crash`] and
//! [`Sim::restart`].
//!
//! ## Two builds: simulated and real
//! With `--cfg madsim` (a simulated build) everything above is simulated. Put this in your
//! workspace's `.cargo/config.toml`:
//! ```toml
//! [build]
//! rustflags = ["--cfg", "madsim"]
//! ```
//! Without it (a real build, for production), the node-facing modules keep their names and
//! signatures and are real: [`net`] sends typed messages and RPC over UDP and re-exports
//! tokio's TCP and UDP sockets, [`disk`] and [`fs`] are files under the node's data folder
//! with a real `fsync`, [`time`] is the operating system's clocks, [`rng`] streams are seeded
//! from the operating system, [`task`] spawns tokio local tasks, and `buggify!` is the
//! constant `false`. Which node a process (or task) is comes from [`node::Cluster`], the
//! deployment's address book. The simulator itself (`run`, `Sim`, faults, the trace hash,
//! taps, controls) exists only in the simulated build. See [`node`] for how a process runs
//! node code for real.

mod node_id;
mod stable_hash;
mod time_shared;

#[cfg(madsim)]
mod run_thread;

pub mod rng;

#[cfg(madsim)]
pub mod bench;
#[cfg(madsim)]
pub mod buggify;
#[cfg(madsim)]
pub mod coverage;
#[cfg(madsim)]
pub mod disk;
#[cfg(madsim)]
pub mod fs;
#[cfg(madsim)]
pub mod net;
#[cfg(madsim)]
pub mod node;
#[cfg(madsim)]
pub mod runner;
#[cfg(madsim)]
pub mod task;
#[cfg(madsim)]
pub mod time;
#[cfg(madsim)]
pub mod trace;
#[cfg(madsim)]
mod world;

#[cfg(madsim)]
pub use node::{NodeBuilder, NodeId, NodeState, Sim};
#[cfg(madsim)]
pub use runner::{
    cap_allocator_arenas, report_error, report_violation, run, ConfigError, Outcome, Report,
    SimConfig, Violation,
};

/// Re-exported so that users name the same madsim as sim-core.
#[cfg(madsim)]
pub use madsim;

// The real build: the same module names, implemented on tokio and the operating system.
#[cfg(not(madsim))]
#[path = "real/buggify.rs"]
pub mod buggify;
#[cfg(not(madsim))]
#[path = "real/disk.rs"]
pub mod disk;
#[cfg(not(madsim))]
#[path = "real/fs.rs"]
pub mod fs;
#[cfg(not(madsim))]
#[path = "real/net/mod.rs"]
pub mod net;
#[cfg(not(madsim))]
#[path = "real/node.rs"]
pub mod node;
#[cfg(not(madsim))]
#[path = "real/task.rs"]
pub mod task;
#[cfg(not(madsim))]
#[path = "real/time.rs"]
pub mod time;
#[cfg(not(madsim))]
#[path = "real/trace.rs"]
pub mod trace;

#[cfg(not(madsim))]
pub use node::{block_on, Cluster, NodeHandle, NodeId};
