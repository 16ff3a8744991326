//! Upstream calls: which instance gets an attempt, whether a failed attempt may be retried,
//! and how long it may take. Sans-IO: the driver reports every attempt's outcome.
//!
//! * **Balancing**: round robin over the service's instances as discovery last listed them,
//!   skipping ejected instances and instances whose circuit breaker refuses, and preferring
//!   instances this request has not tried yet. An instance discovery no longer lists gets no
//!   new attempt (its state is dropped).
//! * **A breaker per instance** ([`crate::circuit_breaker`]), fed every attempt's outcome.
//! * **Outlier ejection**: [`UpstreamConfig::eject_after_failures`] failures in a row eject
//!   an instance for `ejection_base x n` (the n-th ejection). At most
//!   `ejection_percent_max` % of a service's instances are ejected at once, rounded down, but
//!   at least one when the service has two or more (the documented rule; Envoy#26877 is the
//!   ambiguity it settles).
//! * **Retries** ([`may_retry`]): only when the request is idempotent (GET, HEAD, OPTIONS, PUT,
//!   DELETE, or it carries an `Idempotency-Key`) or the failed attempt surely never reached
//!   the instance (refused before sending); at most [`UpstreamConfig::retries_max`] per
//!   request; and within a budget: retries in flight stay below
//!   `max(retry_concurrency_min, budget_percent % of requests in flight)` (Envoy's retry
//!   budget).
//! * **Timeouts**: an attempt gets `min(per_try_timeout, time left before the route
//!   timeout)`; none starts once the route timeout has passed ([`attempt_timeout`]).

use crate::circuit_breaker::{
    CircuitBreaker, Config as BreakerConfig, Now, Outcome, Permit, State as BreakerState,
};
use crate::gateway::http::BackendRequest;
use crate::gateway::mutant::{Mutant, Mutants};
use std::collections::BTreeMap;
use std::time::Duration;

/// Settings of the upstream side.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Retries per request, at most.
    pub retries_max: u32,
    /// The longest one attempt may take.
    pub per_try_timeout: Duration,
    /// The longest a request may take, all attempts included.
    pub route_timeout: Duration,
    /// Retries in flight may reach this share of requests in flight (%).
    pub budget_percent: u32,
    /// ... or this many, whichever is more.
    pub retry_concurrency_min: u32,
    /// Failures in a row that eject an instance.
    pub eject_after_failures: u32,
    /// The first ejection's length (the n-th lasts n times this).
    pub ejection_base: Duration,
    /// The most instances of a service ejected at once, in % (at least one of two or more).
    pub ejection_percent_max: u32,
    /// Each instance's circuit breaker.
    pub breaker: BreakerConfig,
    /// The deliberately broken variants switched on (none in production).
    pub mutants: Mutants,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            retries_max: 1,
            per_try_timeout: Duration::from_millis(300),
            route_timeout: Duration::from_secs(1),
            budget_percent: 20,
            retry_concurrency_min: 3,
            eject_after_failures: 5,
            ejection_base: Duration::from_secs(1),
            ejection_percent_max: 10,
            breaker: BreakerConfig::default(),
            mutants: Mutants::none(),
        }
    }
}

/// How an attempt ended, as the driver saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// An answer below 500.
    Success,
    /// An answer of 500 or more, or a broken connection after sending.
    Failure,
    /// No answer within the attempt's timeout (it may have reached the instance).
    Timeout,
    /// Refused before anything was sent (the instance surely did not see it).
    NotSent,
}

/// An attempt under way: the instance and its breaker permit.
#[derive(Debug)]
pub struct Attempt {
    /// The instance called.
    pub instance: String,
    /// Whether it is a retry.
    pub retry: bool,
    /// `None` only under [`Mutant::RetriesBypassBreaker`]: the breaker was not asked.
    permit: Option<Permit>,
}

/// Why no attempt starts.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoAttempt {
    /// No instance is listed, or every one is ejected or refused by its breaker (503).
    #[error("no instance of {0} is available")]
    NoInstance(String),
    /// The retry budget is spent (the failure is answered as it is).
    #[error("the retry budget is spent")]
    BudgetSpent,
}

struct Instance {
    breaker: CircuitBreaker,
    failures_in_row: u32,
    ejected_until: Option<Duration>,
    ejections: u32,
}

/// The state of every upstream instance of every service.
pub struct Upstreams {
    config: UpstreamConfig,
    /// Per service, its instances as discovery last listed them.
    services: BTreeMap<String, Vec<String>>,
    instances: BTreeMap<String, Instance>,
    cursors: BTreeMap<String, usize>,
    active: u32,
    active_retries: u32,
    /// Breaker states that changed since [`Upstreams::take_breaker_changes`] (a new instance
    /// counts: its breaker starts closed), oldest first.
    breaker_changes: Vec<(String, BreakerState)>,
}

/// Breaker changes kept for [`Upstreams::take_breaker_changes`] before they are compacted.
pub const BREAKER_CHANGES_MAX: usize = 1024;

/// Records a change for [`Upstreams::take_breaker_changes`]. A gateway whose changes are
/// never taken must not grow without bound: beyond [`BREAKER_CHANGES_MAX`], only the latest
/// change of each instance is kept (in the order of those latest changes).
fn record_breaker_change(
    changes: &mut Vec<(String, BreakerState)>,
    instance: &str,
    state: BreakerState,
) {
    changes.push((instance.to_owned(), state));
    if changes.len() > BREAKER_CHANGES_MAX {
        let mut latest: BTreeMap<String, usize> = BTreeMap::new();
        for (index, (name, _)) in changes.iter().enumerate() {
            latest.insert(name.clone(), index);
        }
        let mut index = 0;
        changes.retain(|(name, _)| {
            let keep = latest.get(name) == Some(&index);
            index += 1;
            keep
        });
    }
}

fn now_of(monotonic: Duration) -> Now {
    Now::from_monotonic(monotonic)
}

/// Whether a failed attempt of `request` may be retried: the request is idempotent, or the
/// attempt surely never reached the instance.
pub fn may_retry(request: &BackendRequest, outcome: AttemptOutcome, mutants: &Mutants) -> bool {
    if outcome == AttemptOutcome::Success {
        return false;
    }
    let idempotent = matches!(
        request.method.as_str(),
        "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE"
    ) || request.idempotency_key.is_some();
    idempotent
        || outcome == AttemptOutcome::NotSent
        // The bug: every failure is retried, POSTs included (Istio#13851).
        || mutants.contains(Mutant::RetriesNonIdempotent)
}

/// The timeout of an attempt starting at `now` for a request that arrived at `arrived`:
/// `None` once the route timeout has passed.
pub fn attempt_timeout(
    config: &UpstreamConfig,
    arrived: Duration,
    now: Duration,
) -> Option<Duration> {
    let left = (arrived + config.route_timeout).checked_sub(now)?;
    if config.mutants.contains(Mutant::RetriesPastRouteTimeout) {
        // The bug: the per-try timeout is not capped by what the route has left.
        return (!left.is_zero()).then_some(config.per_try_timeout);
    }
    (!left.is_zero()).then(|| left.min(config.per_try_timeout))
}

impl Upstreams {
    /// Empty: no service known yet.
    pub fn new(config: UpstreamConfig) -> Result<Upstreams, String> {
        CircuitBreaker::new(config.breaker.clone(), now_of(Duration::ZERO))
            .map_err(|error| error.to_string())?;
        Ok(Upstreams {
            config,
            services: BTreeMap::new(),
            instances: BTreeMap::new(),
            cursors: BTreeMap::new(),
            active: 0,
            active_retries: 0,
            breaker_changes: Vec::new(),
        })
    }

    /// Discovery's current list of `service`'s instances. Instances no longer listed get no
    /// new attempt; new ones start with a closed breaker.
    pub fn set_instances(&mut self, service: &str, mut instances: Vec<String>, now: Duration) {
        if self.config.mutants.contains(Mutant::KeepsRemovedInstances) {
            // The bug: what discovery dropped stays listed.
            for known in self.services.get(service).into_iter().flatten() {
                if !instances.contains(known) {
                    instances.push(known.clone());
                }
            }
        }
        for instance in &instances {
            if !self.instances.contains_key(instance) {
                let breaker = CircuitBreaker::new(self.config.breaker.clone(), now_of(now))
                    .expect("the breaker's config was checked");
                let state = Instance {
                    breaker,
                    failures_in_row: 0,
                    ejected_until: None,
                    ejections: 0,
                };
                self.instances.insert(instance.clone(), state);
                record_breaker_change(&mut self.breaker_changes, instance, BreakerState::Closed);
            }
        }
        self.services.insert(service.to_owned(), instances);
        let listed: std::collections::BTreeSet<&String> =
            self.services.values().flatten().collect();
        self.instances.retain(|name, _| listed.contains(name));
    }

    /// As [`Upstreams::set_instances`], for a discovery answer that changed `service` (a
    /// resync, or watch events about it): the state of instances still listed is kept.
    pub fn update_instances(&mut self, service: &str, instances: Vec<String>, now: Duration) {
        if self
            .config
            .mutants
            .contains(Mutant::UpdateRebuildsInstances)
        {
            // The bug (envoy#3930): the service's instances are rebuilt from scratch.
            let old = self.services.remove(service).unwrap_or_default();
            let listed: std::collections::BTreeSet<&String> =
                self.services.values().flatten().collect();
            let dropped: Vec<String> = old
                .into_iter()
                .filter(|name| !listed.contains(name))
                .collect();
            for name in dropped {
                self.instances.remove(&name);
            }
        }
        self.set_instances(service, instances, now);
    }

    /// The breaker states that changed since the last call, oldest first: (instance, new
    /// state). An instance discovery newly lists starts with a closed breaker, and counts.
    pub fn take_breaker_changes(&mut self) -> Vec<(String, BreakerState)> {
        std::mem::take(&mut self.breaker_changes)
    }

    /// Whether `instance` is listed and not ejected at `now` (its breaker aside).
    pub fn is_eligible(&self, instance: &str, now: Duration) -> bool {
        self.instances
            .get(instance)
            .is_some_and(|state| state.ejected_until.is_none_or(|until| until <= now))
    }

    /// Starts an attempt of a request to `service` at `now`; `tried` are the instances the
    /// request already tried; `retry` says whether this is a retry (it needs budget).
    pub fn start(
        &mut self,
        service: &str,
        now: Duration,
        tried: &[String],
        retry: bool,
    ) -> Result<Attempt, NoAttempt> {
        if retry {
            let budget = (self.active * self.config.budget_percent / 100)
                .max(self.config.retry_concurrency_min);
            if self.active_retries >= budget {
                return Err(NoAttempt::BudgetSpent);
            }
        }
        let listed = self.services.get(service).cloned().unwrap_or_default();
        if listed.is_empty() {
            return Err(NoAttempt::NoInstance(service.to_owned()));
        }
        let start = self.cursors.get(service).copied().unwrap_or(0);
        let order: Vec<usize> = (0..listed.len())
            .map(|i| (start + i) % listed.len())
            .collect();
        // Untried instances first, then the others.
        for fresh in [true, false] {
            for &index in &order {
                let name = &listed[index];
                let eligible = if self.config.mutants.contains(Mutant::IgnoresEjection) {
                    self.instances.contains_key(name)
                } else {
                    self.is_eligible(name, now)
                };
                if tried.contains(name) == fresh || !eligible {
                    continue;
                }
                let state = self
                    .instances
                    .get_mut(name)
                    .expect("listed instances have state");
                let before = state.breaker.state();
                let acquired = state.breaker.try_acquire(now_of(now));
                let after = state.breaker.state();
                if after != before {
                    record_breaker_change(&mut self.breaker_changes, name, after);
                }
                // The bug: a retry that the breaker refuses goes out all the same.
                let bypass = retry && self.config.mutants.contains(Mutant::RetriesBypassBreaker);
                let permit = match acquired {
                    Ok(permit) => Some(permit),
                    Err(_) if bypass => None,
                    Err(_) => continue,
                };
                self.cursors.insert(service.to_owned(), index + 1);
                self.active += 1;
                if retry {
                    self.active_retries += 1;
                }
                return Ok(Attempt {
                    instance: name.clone(),
                    retry,
                    permit,
                });
            }
        }
        Err(NoAttempt::NoInstance(service.to_owned()))
    }

    /// Reports how `attempt` ended at `now`.
    pub fn finish(&mut self, attempt: Attempt, outcome: AttemptOutcome, now: Duration) {
        self.active = self.active.saturating_sub(1);
        if attempt.retry {
            self.active_retries = self.active_retries.saturating_sub(1);
        }
        let Some(state) = self.instances.get_mut(&attempt.instance) else {
            return; // No longer listed.
        };
        let failed = matches!(outcome, AttemptOutcome::Failure | AttemptOutcome::Timeout);
        let before = state.breaker.state();
        match (outcome, attempt.permit) {
            (_, None) => {} // The breaker was not asked (a mutant's retry).
            (AttemptOutcome::Success, Some(permit)) => {
                state
                    .breaker
                    .on_result(permit, Outcome::Success, now_of(now));
            }
            (AttemptOutcome::Failure | AttemptOutcome::Timeout, Some(permit)) => {
                state
                    .breaker
                    .on_result(permit, Outcome::Failure, now_of(now));
            }
            (AttemptOutcome::NotSent, Some(permit)) => state.breaker.release(permit, now_of(now)),
        }
        let after = state.breaker.state();
        if after != before {
            record_breaker_change(&mut self.breaker_changes, &attempt.instance, after);
        }
        if outcome == AttemptOutcome::NotSent {
            return;
        }
        if !failed {
            state.failures_in_row = 0;
            return;
        }
        state.failures_in_row += 1;
        if state.failures_in_row < self.config.eject_after_failures {
            return;
        }
        // The documented cap: how many of the service's instances may be out at once.
        let service = self
            .services
            .iter()
            .find(|(_, instances)| instances.contains(&attempt.instance))
            .map(|(_, instances)| instances.clone())
            .unwrap_or_default();
        let total = service.len() as u32;
        let cap = (total * self.config.ejection_percent_max / 100).max(u32::from(total >= 2));
        let ejected = service
            .iter()
            .filter(|name| !self.is_eligible(name, now))
            .count() as u32;
        let overshoots = self.config.mutants.contains(Mutant::EjectionOvershoots);
        if ejected < cap || overshoots {
            let state = self
                .instances
                .get_mut(&attempt.instance)
                .expect("checked above");
            state.ejections += 1;
            state.failures_in_row = 0;
            state.ejected_until = Some(now + self.config.ejection_base * state.ejections);
        }
    }

    /// Attempts in flight, and retries among them.
    pub fn in_flight(&self) -> (u32, u32) {
        (self.active, self.active_retries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_never_taken_stay_bounded_and_keep_each_latest_state() {
        let mut changes = Vec::new();
        for round in 0..BREAKER_CHANGES_MAX {
            let state = if round % 2 == 0 {
                BreakerState::Open
            } else {
                BreakerState::Closed
            };
            record_breaker_change(&mut changes, "a", state);
            record_breaker_change(&mut changes, "b", BreakerState::HalfOpen);
        }
        assert!(changes.len() <= BREAKER_CHANGES_MAX);
        let latest_a = changes.iter().rev().find(|(name, _)| name == "a");
        assert_eq!(
            latest_a.map(|(_, state)| *state),
            Some(BreakerState::Closed)
        );
        assert_eq!(
            changes.last(),
            Some(&("b".to_string(), BreakerState::HalfOpen))
        );
    }
}
