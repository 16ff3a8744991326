//! Service discovery: a replicated registry of service instances with TTL leases, as sans-IO
//! cores ([`registry`], [`cache`]) and the registry node on sim-core ([`driver`]); the
//! `discovery` scenario (in `scenarios/`) tests it under faults.
//!
//! # Consistency model: available under partitions (AP), convergent
//!
//! Every registry replica accepts registrations, heartbeats, deregistrations and queries on
//! its own, as Eureka and Nacos's ephemeral instances (Distro) do; replicas exchange their
//! whole state by anti-entropy. What a client may see, exactly:
//!
//! * Each instance key (service, instance id) has at most one [`Record`] per replica: an
//!   address, an *incarnation* (a number the instance raises on every start, kept on its own
//!   disk) and a status, `Up` or `Down` (deregistered or expired). Records are ordered by
//!   `(incarnation, Down over Up)` ([`Record::rank`]); a replica replaces a record only with a
//!   higher one, so the records of a key form a join-semilattice: replicas that have exchanged
//!   state hold the same records, whatever the order messages arrived in (duplicated, late,
//!   reordered).
//! * So a `Down` record is never undone by anything of its incarnation or older: an instance
//!   that was deregistered or expired comes back only by registering again with a higher
//!   incarnation (no resurrection from a stale message, Consul#3703).
//! * A query answers from the replica's own records: during a partition, different replicas
//!   may answer differently, and a replica may still show an instance that another replica has
//!   already marked down. Every answer carries the records with their ranks, `Down` ones
//!   included, so a client's cache ([`ClientCache`]) merges answers by rank and never goes
//!   backwards; an empty answer (a replica that knows nothing yet) removes nothing.
//! * Leases are judged by each replica on its own monotonic clock ([`Now::monotonic`]), never
//!   the wall clock (etcd#12291). A heartbeat renews the lease at the replica it reaches; the
//!   replica passes it on by anti-entropy with the lease's *age* (how long ago it was last
//!   renewed), so a replica that learns a lease does not restart it (etcd#9888's leases that
//!   never expire). A replica that notices it was stalled (a tick later than scheduled)
//!   does not count the delay against the leases it holds, since renewals may be waiting in
//!   its inbox (Nacos#8090's mass eviction after a pause).
//! * Bound: a replica marks an instance `Down(Expired)` once it has heard of no renewal for
//!   `ttl` on its own monotonic clock, checked every `tick`; time the replica itself was
//!   stalled (a late tick) is not counted; a replica's restart starts the leases it holds
//!   afresh (their last renewals died with the process), so each restart may add one `ttl`;
//!   and an age learned by anti-entropy is as old as the gossip that carried it, so a gossip
//!   held in the network makes a lease look younger. Once the network is whole and no replica
//!   restarts, every replica has marked a silent instance down within `ttl + tick` plus one
//!   anti-entropy round of its last renewal anywhere.
//! * Two registrations of the same instance and incarnation at two addresses, sent to two
//!   replicas, are both accepted (each replica refuses only what it already holds); the
//!   higher address wins everywhere once the replicas exchange state. Instances must not
//!   reuse an incarnation.
//!
//! # Modules
//! * [`registry`]: one replica's core ([`Replica`]).
//! * [`cache`]: a client's cache of answers and watch events ([`ClientCache`]).
//! * [`mutant`]: the deliberately broken variants.
//! * [`driver`]: the replica's node program.
//! * [`client`]: a client on sim-core: queries, a watch that moves on when its replica fails,
//!   and the cache.

pub mod cache;
pub mod client;
pub mod driver;
pub mod mutant;
pub mod registry;

pub use crate::circuit_breaker::Now;
pub use cache::ClientCache;
pub use client::DiscoveryClient;
pub use registry::{
    DownReason, HeartbeatReply, Key, Record, RegisterError, Registration, Replica, ReplicaConfig,
    Status,
};
