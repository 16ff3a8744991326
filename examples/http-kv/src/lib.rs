//! # A key-value service over HTTP, written for tokio, tested in simulation
//!
//! A primary-backup key-value store with an HTTP/1.1 interface, written the way a tokio
//! service is written today: [`hyper`] 1.x for the server and the client, `tokio::io` traits,
//! `serde_json` for the state on disk. The service code imports its sockets, tasks, timers and
//! files from one small shim, [`rt`], under tokio's names: under `--cfg madsim` they are
//! sim-core's (simulated TCP, per-node clocks, the simulated disk), otherwise tokio's. The
//! service itself names no simulator.
//!
//! ```text
//! PUT /kv/a  (client)  ->  primary  --PUT /replicate/a-->  backup   (fsync, 204)
//!                                   <--------------------
//!                           primary fsyncs, applies, answers 204
//! GET /kv/a  (client)  ->  primary  --POST /heartbeat--->  backup   (still leading? 204)
//! ```
//!
//! ## Modules
//! - [`service`]: the primary and the backup ([`service::serve`]): synchronous replication,
//!   read barriers at the backup, and the backup's takeover of a silent primary, fenced at
//!   the backup.
//! - [`store`]: a node's state in one JSON file, replaced durably.
//! - [`client`]: hyper's HTTP/1.1 client connections, and [`client::KvClient`], which fails
//!   over from one server to the next.
//! - [`rt`]: the shim, the only module that knows which world it runs in.
//! - `scenario` (under simulation): the `http-kv` scenario, its checks and mutants.

pub mod client;
pub mod rt;
pub mod service;
pub mod store;

#[cfg(madsim)]
pub mod scenario;

#[cfg(madsim)]
pub use scenario::HttpKv;
pub use service::{Bugs, Config, Role};
