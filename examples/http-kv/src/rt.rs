//! The runtime shim: the only place that knows which world the service runs in.
//!
//! The service ([`crate::service`]) imports its sockets, tasks, timers and files from here,
//! under tokio's names and with tokio's shapes. Under `--cfg madsim` they are sim-core's
//! deterministic ones (simulated TCP with partitions and crashes, per-node clocks, the
//! simulated disk); without it, tokio's own. Nothing else in the service changes between the
//! two builds.

#[cfg(not(madsim))]
pub use real::*;
#[cfg(madsim)]
pub use sim::*;

/// The simulated world: sim-core under tokio's names.
#[cfg(madsim)]
mod sim {
    pub use super::tokio_io::TokioIo;
    pub use sim_core::fs;
    pub use sim_core::net::{TcpListener, TcpStream};
    pub use sim_core::task::{spawn, JoinHandle};
    pub use sim_core::time::{sleep, timeout, Instant};

    /// Marks a point of interest in the run's trace (`dst replay --trace` shows it under the
    /// node's name).
    pub fn note(key: &str, text: String) {
        sim_core::trace::note(key, text);
    }
}

/// The real world: tokio itself.
#[cfg(not(madsim))]
mod real {
    pub use hyper_util::rt::TokioIo;
    pub use tokio::fs;
    pub use tokio::net::{TcpListener, TcpStream};
    pub use tokio::task::{spawn, JoinHandle};
    pub use tokio::time::{sleep, timeout, Instant};

    /// Logs a point of interest.
    pub fn note(key: &str, text: String) {
        tracing::info!(target: "http_kv", key, "{text}");
    }
}

#[cfg(madsim)]
mod tokio_io;
