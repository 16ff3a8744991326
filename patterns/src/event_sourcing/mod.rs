//! Event Sourcing: an event store as a sans-IO state machine, its log format, aggregates with
//! snapshots and upcasting, and a reference model to check it against.
//!
//! Every change is stored as an event in a stream; state is rebuilt by replaying the stream.
//! The store appends atomic batches with an expected version (optimistic concurrency),
//! deduplicates retried appends by event id (also across restarts), makes every append durable
//! before acknowledging it, serves reads by stream and by global position, and feeds
//! subscriptions that catch up and then follow live.
//!
//! # A short tour
//!
//! ```
//! use patterns::event_sourcing::event::{AppendRequest, EventData, EventId, ExpectedVersion};
//! use patterns::event_sourcing::memdisk::MemStore;
//! use patterns::event_sourcing::store::StoreConfig;
//!
//! // `MemStore` drives the sans-IO `Store` over in-memory files that model crashes.
//! let mut disk = MemStore::open(StoreConfig::default()).unwrap();
//! let event = EventData {
//!     event_id: EventId(1),
//!     event_type: "greeted".into(),
//!     schema_version: 1,
//!     payload: b"hello".to_vec(),
//! };
//! let request = AppendRequest {
//!     stream: "greetings".into(),
//!     expected: ExpectedVersion::NoStream,
//!     events: vec![event],
//! };
//! let appended = disk.append_and_settle(request).unwrap();
//! assert_eq!(appended.first_version, 0);
//! // Lose everything that was not synced, then recover from the files.
//! disk.crash_and_recover().unwrap();
//! assert_eq!(disk.store().read_stream("greetings", 0, 10).unwrap().len(), 1);
//! ```
//!
//! # Modules
//!
//! * [`event`]: events, append requests, results and errors, request limits.
//! * [`log`]: the record and checkpoint formats and the recovery scanner (torn tail or
//!   corruption).
//! * [`store`]: the sans-IO store core: effects out (`Write`, `Sync`, `Ack`, `Deliver`, ...),
//!   I/O completions in.
//! * [`aggregate`]: the `Aggregate` trait, replay, snapshots, upcasters.
//! * [`account`]: an example aggregate, a bank account with two event schema versions.
//! * [`model`]: a small, obviously correct reference store used as an oracle.
//! * [`memdisk`]: in-memory files with a crash model and a synchronous driver, for tests.
//! * [`mutant`]: the deliberately re-introduced bugs, off by default.
//! * [`driver`]: the store as a sim-core node (disk and network), and its client.

pub mod account;
pub mod aggregate;
pub mod driver;
pub mod event;
pub mod log;
pub mod memdisk;
pub mod model;
pub mod mutant;
pub mod store;
