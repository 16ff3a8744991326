//! Stored exploration pools: what one exploration learned, kept in a file so that the next
//! one starts from it, as fuzzers keep a corpus between campaigns.
//!
//! An exploration that starts empty spends its first thousand runs or so filling its pool
//! with cases that are new only because everything is new; the cases that reached rare
//! behaviour, the ones worth deriving from, come later (measured on the hard mutants: derived
//! cases failed two to nine times as often as fresh draws, but mostly after the 1,000th run).
//! A stored pool hands the next exploration that matured state from its first run: the runs
//! that reached each feature, and the cases that reached the rarest ones.
//!
//! `dst run <scenario> --explore --save-pools DIR` writes `DIR/<scenario>.json.gz`;
//! `dst run --explore` and `dst mutants --explore` read `pools/<scenario>.json.gz` when it
//! exists (`--pools DIR` elsewhere, `--no-pools` to start empty). The project's pools are
//! built from unmutated runs: the explorer learns the scenario, never a mutant.
//!
//! The file is gzip-compressed JSON (format [`FORMAT`]). To stay small it keeps the
//! [`CASES_MAX`] cases that reached the rarest features, of each only its rare features (those
//! few runs reached: the ones that weigh in choosing a parent), and a workload as the seed it
//! was drawn from when it was not perturbed.

use crate::case::{Case, DynScenario};
use crate::generate::SwarmProfile;
use crate::plan::{FaultKind, FaultPlan};
use crate::scenario::ScenarioSpec;
use serde::{Deserialize, Serialize};
use sim_core::coverage::COVERAGE_BITS;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The format a pool file declares.
pub const FORMAT: &str = "dst-explore-pool/1";

/// Cases a stored pool keeps at most: the ones that reached the rarest features.
pub const CASES_MAX: usize = 1024;

/// A feature counts as rare, and is stored with the cases that reached it, when at most this
/// share of the runs reached it (or [`RARE_RUNS_MIN`] runs, whichever is more).
pub const RARE_SHARE: f64 = 0.01;

/// See [`RARE_SHARE`].
pub const RARE_RUNS_MIN: u32 = 100;

/// A pool as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredPool {
    /// [`FORMAT`].
    pub format: String,
    /// The scenario explored.
    pub scenario: String,
    /// The first fresh seed of the exploration that wrote it.
    pub start: u64,
    /// Runs behind `hits`: of the exploration that wrote it and of the pools it started from.
    pub runs: u64,
    /// The fault kinds its cases could draw.
    pub faults: BTreeSet<FaultKind>,
    /// Each feature (coverage bit) reached, with the runs that reached it.
    pub hits: Vec<(u32, u32)>,
    /// The cases that reached the rarest features, in the order they ran.
    pub cases: Vec<StoredCase>,
    /// Each case's workload as the scenario takes it, drawn again and checked once however
    /// many explorations start from the pool (`dst mutants --explore` starts one per mutant).
    #[serde(skip)]
    pub(crate) workloads: Workloads,
}

/// [`StoredPool`]'s workloads, once drawn: `None` for one the scenario refuses. A cache of
/// what the stored fields determine, so it takes no part in equality and clones empty.
#[derive(Default)]
pub(crate) struct Workloads(std::sync::OnceLock<Vec<Option<serde_json::Value>>>);

impl Clone for Workloads {
    fn clone(&self) -> Self {
        Workloads::default()
    }
}

impl PartialEq for Workloads {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Workloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Workloads")
    }
}

/// A case of a stored pool (its scenario, mutant and fault kinds are the exploration's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredCase {
    /// The seed of the simulation.
    pub seed: u64,
    /// The swarm profile.
    pub swarm: SwarmProfile,
    /// The fault plan.
    pub plan: FaultPlan,
    /// The workload drawn for this seed, unperturbed: the case's workload is drawn again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_seed: Option<u64>,
    /// The workload, when it is not a draw (`workload_seed` is then absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<serde_json::Value>,
    /// The rare features its run reached.
    pub bits: Vec<u32>,
}

/// A pool file that cannot be read, with why, in one line.
#[derive(Debug, thiserror::Error)]
#[error("pool {path}: {reason}")]
pub struct PoolError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

/// Where `dir` keeps `scenario`'s pool.
pub fn path(dir: &Path, scenario: &str) -> PathBuf {
    dir.join(format!("{scenario}.json.gz"))
}

/// Reads `scenario`'s pool from `dir`: `None` when there is none.
pub fn load_for(dir: &Path, scenario: &str) -> Result<Option<StoredPool>, PoolError> {
    let file = path(dir, scenario);
    if !file.exists() {
        return Ok(None);
    }
    let pool = load(&file)?;
    if pool.scenario != scenario {
        return Err(PoolError {
            path: file,
            reason: format!("holds scenario {:?}, not {scenario:?}", pool.scenario),
        });
    }
    Ok(Some(pool))
}

/// Reads a pool file.
pub fn load(file: &Path) -> Result<StoredPool, PoolError> {
    let error = |reason: String| PoolError {
        path: file.to_path_buf(),
        reason,
    };
    let compressed = std::fs::read(file).map_err(|e| error(e.to_string()))?;
    let mut text = String::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .read_to_string(&mut text)
        .map_err(|e| error(format!("not gzip-compressed JSON: {e}")))?;
    let mut pool: StoredPool = serde_json::from_str(&text).map_err(|e| error(e.to_string()))?;
    if pool.format != FORMAT {
        return Err(error(format!(
            "format {:?}, this dst reads {FORMAT:?}",
            pool.format
        )));
    }
    let bits = pool
        .hits
        .iter()
        .map(|&(bit, _)| bit)
        .chain(pool.cases.iter().flat_map(|case| case.bits.iter().copied()));
    if let Some(bit) = bits.into_iter().find(|&bit| bit as usize >= COVERAGE_BITS) {
        return Err(error(format!(
            "coverage bit {bit} out of range (bits are below {COVERAGE_BITS})"
        )));
    }
    for case in &mut pool.cases {
        // A bit listed twice would count twice in how rare the case is.
        case.bits.sort_unstable();
        case.bits.dedup();
    }
    Ok(pool)
}

impl StoredPool {
    /// Writes the pool to `file` (its folder made if missing).
    pub fn save(&self, file: &Path) -> Result<(), PoolError> {
        let error = |reason: String| PoolError {
            path: file.to_path_buf(),
            reason,
        };
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| error(e.to_string()))?;
        }
        let text = serde_json::to_string(self).map_err(|e| error(e.to_string()))?;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder
            .write_all(text.as_bytes())
            .map_err(|e| error(e.to_string()))?;
        let bytes = encoder.finish().map_err(|e| error(e.to_string()))?;
        std::fs::write(file, bytes).map_err(|e| error(e.to_string()))
    }

    /// The runs a feature must have been reached by at most to count as rare.
    pub fn rare_runs_max(runs: u64) -> u32 {
        let share = (runs as f64 * RARE_SHARE) as u64;
        u32::try_from(share).unwrap_or(u32::MAX).max(RARE_RUNS_MIN)
    }

    /// Case `index` as a case of `scenario` with `mutant` on and `faults` allowed; `None`
    /// when it cannot run so (a fault kind not allowed, a plan or workload the scenario
    /// refuses now).
    pub fn case(
        &self,
        index: usize,
        scenario: &dyn DynScenario,
        spec: &ScenarioSpec,
        mutant: Option<String>,
        faults: &BTreeSet<FaultKind>,
    ) -> Option<Case> {
        let stored = self.cases.get(index)?;
        if stored
            .plan
            .episodes
            .iter()
            .any(|episode| !faults.contains(&episode.fault.kind()))
        {
            return None;
        }
        let workloads = self.workloads.0.get_or_init(|| {
            self.cases
                .iter()
                .map(|stored| {
                    let workload = match (&stored.workload, stored.workload_seed) {
                        (Some(workload), _) => workload.clone(),
                        (None, Some(seed)) => {
                            scenario.generate(seed, None, self.faults.clone()).workload
                        }
                        (None, None) => return None,
                    };
                    scenario
                        .check_workload(&workload)
                        .is_ok()
                        .then_some(workload)
                })
                .collect()
        });
        let workload = workloads[index].clone()?;
        let case = Case {
            scenario: self.scenario.clone(),
            seed: stored.seed,
            mutant,
            faults: faults.clone(),
            swarm: stored.swarm.clone(),
            plan: stored.plan.clone(),
            workload,
        };
        crate::case::check_case(spec, &case).is_ok().then_some(case)
    }
}
