//! # harness: find bugs, shrink them, replay them exactly
//!
//! Generic and reusable: a project describes its system as a [`Scenario`] (nodes, workload,
//! invariants, mutants, fault budget) on top of `sim-core`, and gets generated fault plans with
//! swarm testing, shrinking, a seed corpus, `cargo test` integration and the `dst` command line.
//!
//! - [`plan`]: fault plans, plain serde data ([`FaultPlan`], [`Episode`], [`Fault`]).
//! - [`generate`]: `proptest` strategies for swarm profiles and plans within a [`FaultBudget`].
//! - [`scenario`]: the [`Scenario`] trait (the scenario declares, the harness runs the phases
//!   and judges), [`ScenarioSpec`], mutants, [`Env`], [`Observer`].
//! - [`invariant`]: typed [`Invariant`] handles and the [`Violation`]s made from them.
//! - [`case`]: [`Case`], [`Verdict`], running a case, the [`Registry`].
//! - [`shrink`]: from a failing case to a small one.
//! - [`corpus`]: versioned case files under `corpus/<scenario>/`.
//! - [`batch`]: many seeds in parallel, with shrinking and saving.
//! - [`bench`]: `dst bench`, how fast this machine simulates, measured against madsim.
//! - [`merge`]: the shards of a hunt merged into the report of one unsharded run.
//! - [`testing`]: one call to check a scenario in `cargo test`.
//! - [`cli`]: the `dst` command line as a library.
//! - [`mermaid`]: sequence diagrams of a run.
//! - [`history`], [`linearizability`]: re-exports of the standalone `linearizability` crate, a
//!   Porcupine-style checker (Wing & Gong search, Lowe's memoization, P-compositionality)
//!   with shared deterministic budgets that answer "unknown", and ready-made models.

pub mod batch;
pub mod bench;
pub mod case;
pub mod cli;
pub mod corpus;
pub mod explore;
pub mod generate;
pub mod invariant;
pub mod merge;
pub mod mermaid;
pub mod plan;
pub mod plot;
pub mod pool;
pub mod scenario;
pub mod scoreboard;
pub mod shrink;
pub mod testing;

// The checker is its own crate (no simulator, no `--cfg madsim`), re-exported at its old paths
// so `harness::linearizability` and `harness::history` keep working.
pub use ::linearizability;
pub use ::linearizability::history;

mod apply_disk;
mod apply_io;

pub use case::{Case, DynScenario, Registry, RunOptions, RunResult, Verdict, VerdictKind};
pub use generate::{FaultBudget, SwarmProfile};
pub use invariant::{Checked, Invariant, InvariantKind, Violation};
pub use plan::{Episode, Fault, FaultKind, FaultPlan, PartitionShape};
pub use scenario::{Env, MutantSpec, Observer, Scenario, ScenarioSpec};
