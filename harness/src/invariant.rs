//! Invariants as values: declared once in a scenario's spec, reported through their handles.
//!
//! ```text
//! static LINEARIZABLE: Invariant = Invariant::always("linearizable", "reads and writes are linearizable");
//! static AVAILABLE: Invariant =
//!     Invariant::eventually("available-after-heal", "a write then a read succeed", Duration::from_secs(2));
//! static RECOVERED: Invariant = Invariant::sometimes("primary-recovered", "a restarted primary recovered");
//! ```
//!
//! A violation can only be made from a handle ([`Invariant::violated`]), and the harness checks
//! at run time that the handle is one the spec declared (a handle of another scenario, or one
//! reported with the wrong kind, ends the run with verdict `error`, never as a failure of the
//! system).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The three kinds of invariant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvariantKind {
    /// Must hold at every step; a violation stops the run (verdict `safety`).
    Always,
    /// Must hold within a stated bound once every fault is healed (verdict `liveness`).
    Eventually,
    /// Must be seen in at least one run of a hunt (judged over the whole hunt).
    Sometimes,
}

impl InvariantKind {
    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            InvariantKind::Always => "always",
            InvariantKind::Eventually => "eventually",
            InvariantKind::Sometimes => "sometimes",
        }
    }
}

/// An invariant a scenario declares: see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Invariant {
    name: &'static str,
    kind: InvariantKind,
    description: &'static str,
    /// For an eventually-invariant: the bound after healing, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    within_ms: Option<u64>,
}

impl Invariant {
    /// An always-invariant.
    pub const fn always(name: &'static str, description: &'static str) -> Self {
        Invariant {
            name,
            kind: InvariantKind::Always,
            description,
            within_ms: None,
        }
    }

    /// An eventually-invariant that must hold within `within` of healing (re-probed until then
    /// by [`crate::Env::eventually`]).
    pub const fn eventually(
        name: &'static str,
        description: &'static str,
        within: Duration,
    ) -> Self {
        Invariant {
            name,
            kind: InvariantKind::Eventually,
            description,
            within_ms: Some(within.as_millis() as u64),
        }
    }

    /// A sometimes-invariant.
    pub const fn sometimes(name: &'static str, description: &'static str) -> Self {
        Invariant {
            name,
            kind: InvariantKind::Sometimes,
            description,
            within_ms: None,
        }
    }

    /// Its name, as in verdicts, case files and `--skip-invariant`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its kind.
    pub fn kind(&self) -> InvariantKind {
        self.kind
    }

    /// What it says.
    pub fn description(&self) -> &'static str {
        self.description
    }

    /// For an eventually-invariant, its bound after healing.
    pub fn within(&self) -> Option<Duration> {
        self.within_ms.map(Duration::from_millis)
    }

    /// A violation of this invariant, with what was seen.
    pub fn violated(&self, message: impl Into<String>) -> Violation {
        Violation {
            invariant: *self,
            message: message.into(),
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// A broken invariant: made only from its handle, with [`Invariant::violated`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    invariant: Invariant,
    message: String,
}

impl Violation {
    /// The broken invariant.
    pub fn invariant(&self) -> &Invariant {
        &self.invariant
    }

    /// What was seen.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violated: {}", self.invariant.name, self.message)
    }
}

impl std::error::Error for Violation {}

/// What a check returns: `Ok`, or the invariant it found broken.
pub type Checked = Result<(), Violation>;
