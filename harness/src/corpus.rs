//! The seed corpus: stored cases, replayed forever after.
//!
//! A case file is `corpus/<scenario>/<name>.json`, a JSON object in format version
//! [`FORMAT_VERSION`]:
//!
//! | field | meaning |
//! |---|---|
//! | `version` | format version (1) |
//! | `description` | one line on what the case shows |
//! | `scenario`, `seed`, `mutant`, `faults`, `swarm`, `plan`, `workload` | the [`Case`] |
//! | `verdict`, `invariant` | the expected verdict (`pass`, `safety`, `liveness`, ...) |
//! | `trace_hash` | the expected trace hash, 16 lowercase hex digits |
//! | `skip_invariants` | invariants muted when the case was found (optional; absent: none) |
//!
//! Replaying a file must give the recorded verdict and trace hash. When behaviour changes on
//! purpose, `dst corpus bless` rewrites the hashes; verdicts never change silently (bless
//! refuses a file whose verdict changed). A malformed file or an unknown version is a clear
//! error naming the file.

use crate::case::{Case, VerdictKind};
use crate::generate::SwarmProfile;
use crate::plan::{FaultKind, FaultPlan};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The format version this harness reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// A stored case with its expected verdict and trace hash.
///
/// The [`Case`] fields are spelled out rather than `#[serde(flatten)]`ed: serde cannot flatten
/// and reject unknown fields at once, and a typo in a hand-edited case file must be an error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// Format version.
    pub version: u32,
    /// One line on what the case shows.
    pub description: String,
    /// Scenario name.
    pub scenario: String,
    /// Seed.
    pub seed: u64,
    /// Mutant switched on, if any.
    pub mutant: Option<String>,
    /// Fault kinds the case was allowed to draw.
    pub faults: BTreeSet<FaultKind>,
    /// The drawn swarm profile.
    pub swarm: SwarmProfile,
    /// The fault plan.
    pub plan: FaultPlan,
    /// The scenario's workload.
    pub workload: serde_json::Value,
    /// Expected verdict.
    pub verdict: VerdictKind,
    /// Expected broken invariant (for `safety` and `liveness`).
    pub invariant: Option<String>,
    /// Expected trace hash, 16 lowercase hex digits.
    pub trace_hash: String,
    /// Invariants muted when the case was found (`--skip-invariant`), muted again on replay;
    /// absent when none.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub skip_invariants: BTreeSet<String>,
}

impl CaseFile {
    /// A case file for `case` with its verdict and hash.
    pub fn new(
        case: &Case,
        verdict: VerdictKind,
        invariant: Option<String>,
        trace_hash: u64,
        description: String,
    ) -> Self {
        CaseFile {
            version: FORMAT_VERSION,
            description,
            scenario: case.scenario.clone(),
            seed: case.seed,
            mutant: case.mutant.clone(),
            faults: case.faults.clone(),
            swarm: case.swarm.clone(),
            plan: case.plan.clone(),
            workload: case.workload.clone(),
            verdict,
            invariant,
            trace_hash: hex(trace_hash),
            skip_invariants: BTreeSet::new(),
        }
    }

    /// How to run the case: muting what was muted when it was found.
    pub fn run_options(&self) -> crate::case::RunOptions {
        crate::case::RunOptions {
            skip_invariants: self.skip_invariants.clone(),
            ..crate::case::RunOptions::default()
        }
    }

    /// The case to run.
    pub fn case(&self) -> Case {
        Case {
            scenario: self.scenario.clone(),
            seed: self.seed,
            mutant: self.mutant.clone(),
            faults: self.faults.clone(),
            swarm: self.swarm.clone(),
            plan: self.plan.clone(),
            workload: self.workload.clone(),
        }
    }

    /// The recorded verdict as text, such as `safety (linearizable)`.
    pub fn expected(&self) -> String {
        match &self.invariant {
            Some(invariant) => format!("{} ({invariant})", self.verdict),
            None => self.verdict.to_string(),
        }
    }

    /// Whether `verdict` is the recorded one (kind and invariant).
    pub fn verdict_matches(&self, verdict: &crate::case::Verdict) -> bool {
        verdict.kind == self.verdict && verdict.invariant == self.invariant
    }

    /// The expected trace hash as a number.
    pub fn trace_hash_value(&self) -> Result<u64, String> {
        parse_hex(&self.trace_hash)
    }
}

/// A trace hash as 16 lowercase hex digits.
pub fn hex(hash: u64) -> String {
    format!("{hash:016x}")
}

fn parse_hex(text: &str) -> Result<u64, String> {
    if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("trace_hash must be 16 hex digits, got {text:?}"));
    }
    u64::from_str_radix(text, 16).map_err(|error| error.to_string())
}

/// What can be wrong with a corpus file.
#[derive(Debug, thiserror::Error)]
pub enum CorpusError {
    /// The file cannot be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not a valid case file.
    #[error("{path}: not a valid case file: {error}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: String,
    },
    /// The file is of a version this harness does not read.
    #[error("{path}: case file version {found} is not supported (this dst reads version {FORMAT_VERSION})")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: String,
    },
}

/// Reads and checks a case file.
pub fn load(path: &Path) -> Result<CaseFile, CorpusError> {
    let text = std::fs::read_to_string(path).map_err(|error| CorpusError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    parse(path, &text)
}

/// Parses the text of a case file; `path` only names it in errors.
pub fn parse(path: &Path, text: &str) -> Result<CaseFile, CorpusError> {
    let parse_error = |error: String| CorpusError::Parse {
        path: path.to_path_buf(),
        error,
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|error| parse_error(error.to_string()))?;
    let version = value
        .get("version")
        .ok_or_else(|| parse_error("missing field `version`".into()))?;
    if version.as_u64() != Some(u64::from(FORMAT_VERSION)) {
        return Err(CorpusError::Version {
            path: path.to_path_buf(),
            found: version.to_string(),
        });
    }
    let file: CaseFile =
        serde_json::from_value(value).map_err(|error| parse_error(error.to_string()))?;
    file.trace_hash_value().map_err(parse_error)?;
    Ok(file)
}

/// Writes a case file (pretty JSON, trailing newline), creating folders as needed.
pub fn save(path: &Path, file: &CaseFile) -> Result<(), CorpusError> {
    let io_error = |error| CorpusError::Io {
        path: path.to_path_buf(),
        error,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error)?;
    }
    std::fs::write(path, file_text(file)).map_err(io_error)
}

/// The text a case file is written as: pretty JSON with a trailing newline.
fn file_text(file: &CaseFile) -> String {
    let mut text = serde_json::to_string_pretty(file).expect("case files serialize");
    text.push('\n');
    text
}

/// A case file in `folder` whose bytes are `text`, if there is one.
fn identical_in(folder: &Path, text: &str) -> Option<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(folder)
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .find(|path| std::fs::read(path).is_ok_and(|bytes| bytes == text.as_bytes()))
}

/// Saves a failing case found by a hunt in `dir/<scenario>/`, one file per distinct failure:
/// `[<mutant>-]<verdict>[-<invariant>].json`, replaced by a later find of the same failure
/// unless the file holds a lower seed (then this case is saved beside it, `...-seed<S>.json`).
/// Returns the path; when a case file with the same bytes is in the folder already, that
/// file's path, and nothing is written.
///
/// Named without the seed so that hunting again does not pile up copies of one failure; a
/// case meant to stay goes to the corpus with [`add`], named with its seed.
pub fn save_failure(dir: &Path, file: &CaseFile) -> Result<PathBuf, CorpusError> {
    let folder = dir.join(&file.scenario);
    let text = file_text(file);
    if let Some(same) = identical_in(&folder, &text) {
        return Ok(same);
    }
    let mut name = String::new();
    if let Some(mutant) = &file.mutant {
        name.push_str(mutant);
        name.push('-');
    }
    name.push_str(file.verdict.name());
    if let Some(invariant) = &file.invariant {
        name.push('-');
        name.push_str(invariant);
    }
    let mut path = folder.join(format!("{}.json", file_name_safe(&name)));
    // A lower seed's case of the same failure stays (the batch rule: the lowest failing seed's
    // case is kept); this one goes beside it, named with its seed. That is what keeps the
    // shards of one hunt that share a folder from overwriting each other's cases.
    let kept_seed = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| parse(&path, &text).ok())
        .map(|kept| kept.seed);
    if kept_seed.is_some_and(|kept| kept < file.seed) {
        path = folder.join(format!("{}-seed{}.json", file_name_safe(&name), file.seed));
    }
    save(&path, file)?;
    Ok(path)
}

/// Adds the case file `source` to the corpus `dir` (`dst corpus add`): checks it, and copies
/// it to `dir/<scenario>/[<mutant>-]seed<S>-<verdict>[-<invariant>].json` (numbered if that
/// name is taken). Returns the new path, or `Err` naming the corpus file that has the same
/// bytes already.
pub fn add(dir: &Path, source: &Path) -> Result<Result<PathBuf, PathBuf>, CorpusError> {
    let file = load(source)?;
    let text = file_text(&file);
    let folder = dir.join(&file.scenario);
    if let Some(same) = identical_in(&folder, &text) {
        return Ok(Err(same));
    }
    let path = path_for(dir, &file.case(), file.verdict, file.invariant.as_deref());
    save(&path, &file)?;
    Ok(Ok(path))
}

fn file_name_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Every `*.json` file in `dir/<scenario>/`, sorted.
pub fn list(dir: &Path) -> Result<Vec<PathBuf>, CorpusError> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |error| CorpusError::Io { path, error }
    };
    let mut files = Vec::new();
    if !dir.exists() {
        return Ok(files);
    }
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
        let entry = entry.map_err(io_error(dir))?;
        let folder = entry.path();
        if !folder.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&folder).map_err(io_error(&folder))? {
            let path = file.map_err(io_error(&folder))?.path();
            if path.extension().is_some_and(|ext| ext == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// A new path for a failing case: `<dir>/<scenario>/<mutant->seed<S>-<verdict>[-<invariant>].json`,
/// numbered `-2`, `-3`, ... when that file exists already.
pub fn path_for(dir: &Path, case: &Case, verdict: VerdictKind, invariant: Option<&str>) -> PathBuf {
    let mut name = String::new();
    if let Some(mutant) = &case.mutant {
        name.push_str(mutant);
        name.push('-');
    }
    name.push_str(&format!("seed{}-{}", case.seed, verdict.name()));
    if let Some(invariant) = invariant {
        name.push('-');
        name.push_str(invariant);
    }
    let name = file_name_safe(&name);
    let folder = dir.join(&case.scenario);
    // Never overwrite a case already there (a committed one above all): number the new one.
    let mut path = folder.join(format!("{name}.json"));
    let mut copy = 2;
    while path.exists() {
        path = folder.join(format!("{name}-{copy}.json"));
        copy += 1;
    }
    path
}
