//! CQRS: commands and queries on separate models, over the event store.
//!
//! The write side ([`command`]) validates commands against aggregates folded from the event
//! store ([`crate::event_sourcing`]) and appends their events, idempotently by command id;
//! each answer carries a consistency token (the global position of the command's last
//! event). The read side ([`view_node`]) runs a [`projection`] that consumes the store's
//! subscription (at least once, so idempotently by position) into a read model ([`view`])
//! kept on its own node's disk, atomically with its checkpoint, and answers queries with
//! read-your-writes by token: it waits for its model to reach the token, with a bound, or
//! answers explicitly stale. The [`client`] keeps its reads monotonic.
//!
//! The domain ([`bank`]) is bank accounts: open, deposit, withdraw, transfer (a debit, then a
//! credit), with a balances table and a statements table on the read side, and a
//! conservation rule: `balances + in transit = deposited - withdrawn`, no balance below zero.
//!
//! # Modules
//!
//! * [`bank`]: commands, events (JSON), the command side's account state and its pure
//!   `decide`.
//! * [`view`]: the read model, its fold, its file format, queries, and the rebuild path.
//! * [`projection`]: the sans-IO projection: catch-up, live, gaps, duplicates, poison events.
//! * [`execution`]: the command side's decisions for one attempt at one command, sans-IO.
//! * [`command`]: the command node (a sim-core program) that performs them.
//! * [`view_node`]: the view node (a sim-core program): projection, storage, queries, rebuild.
//! * [`client`]: the client, with read-your-writes and monotonic reads.
//! * [`mutant`]: the deliberately re-introduced bugs, off by default.

pub mod bank;
pub mod client;
pub mod command;
pub mod execution;
pub mod mutant;
pub mod projection;
pub mod view;
pub mod view_node;
