//! Rate limiting: GCRA (the generic cell rate algorithm, a token bucket kept as one time
//! stamp per key) on the monotonic clock.
//!
//! A key may make `burst` requests at once and then one every `1 / rate` seconds: over any
//! interval of length `d`, at most `burst + rate * d` requests of a key are admitted. Each key
//! keeps its *theoretical arrival time* (TAT): a request at `t` is admitted when
//! `TAT - t <= (burst - 1) / rate`, and moves the TAT on by `1 / rate`. Arithmetic is in whole
//! nanoseconds, rounded so that the limiter never admits more than the bound.
//!
//! Limits are **per gateway replica**: replicas do not share state, so `n` replicas admit up
//! to `n` times the bound for a key whose requests they all see. The key table is bounded:
//! keys whose bucket is full again are forgotten (the same as never seen); when the table is
//! full of keys that are not, a new key is refused (**fail closed**:
//! [`Decision::TableFull`]), never admitted unchecked.

use crate::gateway::mutant::{Mutant, Mutants};
use std::collections::BTreeMap;
use std::time::Duration;

/// Settings of a limiter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitConfig {
    /// Requests per second, sustained (at least 1).
    pub rate_per_s: u32,
    /// Requests at once (at least 1).
    pub burst: u32,
    /// Most keys tracked at once.
    pub keys_max: usize,
    /// The deliberately broken variants switched on (none in production).
    pub mutants: Mutants,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            rate_per_s: 10,
            burst: 5,
            keys_max: 10_000,
            mutants: Mutants::none(),
        }
    }
}

impl LimitConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), String> {
        if self.rate_per_s == 0 || self.burst == 0 || self.keys_max == 0 {
            return Err("rate_per_s, burst and keys_max must be at least 1".into());
        }
        Ok(())
    }
}

/// A limiter's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Admitted.
    Admit,
    /// Over the limit: the next request of this key is admitted after `retry_after`.
    Deny {
        /// The wait.
        retry_after: Duration,
    },
    /// The key table is full of keys still being limited: refused (fail closed).
    TableFull,
}

/// Per-key GCRA limiter.
#[derive(Clone, Debug)]
pub struct Limiter {
    config: LimitConfig,
    /// Nanoseconds per request.
    emission_ns: u64,
    /// How far the TAT may run ahead of now: (burst - 1) emissions.
    tolerance_ns: u64,
    /// Per key, its theoretical arrival time (ns on the monotonic clock).
    tat: BTreeMap<String, u64>,
}

fn ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Limiter {
    /// A limiter with `config` (checked with [`LimitConfig::validate`]).
    pub fn new(config: LimitConfig) -> Result<Limiter, String> {
        config.validate()?;
        // Rounded up: a slower emission never admits more than the bound.
        let emission_ns = 1_000_000_000u64.div_ceil(u64::from(config.rate_per_s));
        let tolerance_ns = emission_ns * u64::from(config.burst - 1);
        Ok(Limiter {
            config,
            emission_ns,
            tolerance_ns,
            tat: BTreeMap::new(),
        })
    }

    /// Decides a request of `key` at `now` (the node's monotonic clock) and records it when
    /// admitted.
    pub fn check(&mut self, key: &str, now: Duration) -> Decision {
        let now = ns(now);
        if !self.tat.contains_key(key) && self.tat.len() >= self.config.keys_max {
            // Forget the keys whose bucket is full again.
            self.tat.retain(|_, tat| *tat > now);
            if self.tat.len() >= self.config.keys_max {
                return Decision::TableFull;
            }
        }
        let mut tat = self.tat.get(key).copied().unwrap_or(now).max(now);
        if self.config.mutants.contains(Mutant::LimiterRoundsUp) {
            // The bug: the token being earned counts as earned (the debt is rounded down to
            // whole emissions at every check).
            tat = now + (tat - now) / self.emission_ns * self.emission_ns;
        }
        if tat - now > self.tolerance_ns {
            if self.config.mutants.contains(Mutant::LimiterChargesRefusals) {
                // The bug: the refused request is charged as if it had been admitted.
                self.tat.insert(key.to_owned(), tat + self.emission_ns);
            }
            return Decision::Deny {
                retry_after: Duration::from_nanos(tat - now - self.tolerance_ns),
            };
        }
        self.tat.insert(key.to_owned(), tat + self.emission_ns);
        Decision::Admit
    }

    /// Keys tracked now.
    pub fn keys(&self) -> usize {
        self.tat.len()
    }
}
