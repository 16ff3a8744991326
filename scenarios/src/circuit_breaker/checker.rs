//! The trace checker: an independent oracle fed with what one client's driver observed.
//!
//! The driver hands every step to its tap ([`Observation`]): each input it gave the breaker
//! (acquire attempts, completions, releases, timeouts) with the monotonic reading it used and
//! what the breaker answered, and each request it put on the network. [`TraceChecker::check`]
//! feeds the same inputs, with the same monotonic readings (never the wall clock), to the
//! reference [`Oracle`] and compares, step by step, the decisions, transitions, metrics and
//! deadlines; it also judges every send against the state the *oracle* expects, not the state
//! the breaker claims. [`TraceChecker::finish`] then matches what the service received against
//! the sends the client logged, and checks that every permit was completed or released.
//!
//! A divergence is reported under the always-invariant it breaks (the statics below, such as
//! [`LEGAL_TRANSITIONS`]); the first one ends the check. The states a trace reached are kept as
//! sometimes-invariants ([`TraceChecker::reached`]) for the scenario to report.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use harness::{Checked, Invariant, Violation};
use patterns::circuit_breaker::driver::{Admitted, Observation, Observed};
use patterns::circuit_breaker::oracle::{
    is_legal_transition, Admission, Oracle, Refusal, TransitionRecord,
};
use patterns::circuit_breaker::{
    Completion, Config, ConfigError, EventKind, Metrics, PermitId, PermitKind, RejectReason,
    Rejected, State, TransitionReason, Window,
};

/// No request from a client enters the network while its breaker is open.
pub static OPEN_SENDS_NOTHING: Invariant = Invariant::always(
    "open-sends-nothing",
    "no request from a client enters the network while the oracle says its breaker is open; \
     everything the service received was sent through a breaker",
);
/// Half-open has at most the permitted number of probes out.
pub static HALF_OPEN_PROBES: Invariant = Invariant::always(
    "half-open-probes",
    "half-open admits, and has out, at most the permitted number of probes",
);
/// Only legal transitions, each justified by the oracle's window; none missed.
pub static LEGAL_TRANSITIONS: Invariant = Invariant::always(
    "legal-transitions",
    "only legal, chained transitions; each is the oracle's: every trip justified by its window, \
     none missed (deadlines included)",
);
/// The open wait is measured on the monotonic clock.
pub static MONOTONIC_OPEN_WAIT: Invariant = Invariant::always(
    "monotonic-open-wait",
    "the open wait and the time left open follow the monotonic clock: wall-clock jumps change \
     nothing",
);
/// An outcome from an older epoch decides nothing.
pub static EPOCH_ISOLATION: Invariant = Invariant::always(
    "epoch-isolation",
    "an outcome from an older epoch is not recorded and decides nothing",
);
/// The breaker's metrics equal the oracle's window.
pub static METRICS_MATCH: Invariant = Invariant::always(
    "metrics-match",
    "the breaker's metrics and call classes equal the oracle's window",
);
/// Every permit is completed or released exactly once.
pub static PERMITS_RELEASED_ONCE: Invariant = Invariant::always(
    "permits-released-once",
    "every permit is completed or released exactly once, and a released probe gives its slot \
     back",
);
/// A closed breaker whose whole window failed is open.
pub static OPENS_UNDER_FAILURE: Invariant = Invariant::always(
    "opens-under-failure",
    "a closed window whose calls all failed, with at least the minimum number of calls, has \
     tripped: under persistent failure the breaker opens within one window",
);

/// A breaker opened.
pub static REACHED_OPEN: Invariant = Invariant::sometimes("reached-open", "a breaker opened");
/// A breaker went from open to half-open.
pub static REACHED_HALF_OPEN: Invariant =
    Invariant::sometimes("reached-half-open", "a breaker went half-open");
/// A breaker closed again after half-open.
pub static REACHED_CLOSED_AGAIN: Invariant = Invariant::sometimes(
    "reached-closed-again",
    "a breaker closed again after probes",
);
/// A late outcome from an older epoch was ignored.
pub static STALE_OUTCOME_IGNORED: Invariant = Invariant::sometimes(
    "stale-outcome-ignored",
    "a late outcome from an older epoch was ignored",
);
/// A probe was abandoned by its caller and its slot given back.
pub static PROBE_RELEASED: Invariant = Invariant::sometimes(
    "probe-released",
    "a probe abandoned by its caller gave its slot back",
);
/// Half-open lasted its maximum wait and opened again.
pub static HALF_OPEN_TIMED_OUT: Invariant = Invariant::sometimes(
    "half-open-timed-out",
    "half-open lasted its maximum wait (a probe hung) and opened again",
);

/// How late the driver may handle a deadline: madsim rounds a sleep up to 1 ms of true time,
/// which a drifting clock stretches a little.
pub const DEADLINE_SLACK: Duration = Duration::from_millis(3);

/// Checks one client's trace against the oracle; see the [module docs](self).
#[derive(Debug)]
pub struct TraceChecker {
    client: String,
    config: Config,
    oracle: Oracle,
    /// The breaker's state and epoch as its own transition events tell them.
    reported: (State, u64),
    /// Permits the oracle issued that are neither completed nor released.
    issued: BTreeMap<PermitId, Admission>,
    /// Every permit whose request was sent.
    sent: BTreeSet<PermitId>,
    streak: FailureWindow,
    /// Sometimes-invariants reached, by name.
    reached: BTreeMap<&'static str, &'static Invariant>,
    broken: bool,
}

impl TraceChecker {
    /// A checker for `client`'s breaker, built with `config` at monotonic time `now`.
    pub fn new(client: &str, config: &Config, now: Duration) -> Result<Self, ConfigError> {
        Ok(TraceChecker {
            client: client.to_string(),
            config: config.clone(),
            oracle: Oracle::new(config, now)?,
            reported: (State::Closed, 0),
            issued: BTreeMap::new(),
            sent: BTreeSet::new(),
            streak: FailureWindow::new(config, 0),
            reached: BTreeMap::new(),
            broken: false,
        })
    }

    /// The state the oracle expects now.
    pub fn state(&self) -> State {
        self.oracle.state()
    }

    /// The sometimes-invariants this trace reached.
    pub fn reached(&self) -> impl Iterator<Item = &'static Invariant> + '_ {
        self.reached.values().copied()
    }

    fn reach(&mut self, invariant: &'static Invariant) {
        self.reached.insert(invariant.name(), invariant);
    }

    /// Requests the client logged as sent.
    pub fn sent_count(&self) -> usize {
        self.sent.len()
    }

    /// Checks one step. After the first violation every later step passes unchecked (the run
    /// stops at the first one).
    pub fn check(&mut self, observation: &Observation) -> Checked {
        if self.broken {
            return Ok(());
        }
        let result = self.check_step(observation);
        self.broken = result.is_err();
        result
    }

    fn check_step(&mut self, observation: &Observation) -> Checked {
        let now = observation.at.monotonic;
        let due = self.oracle.deadline();
        let mut completion = None;
        match &observation.observed {
            Observed::Sent { permit } => return self.check_sent(*permit),
            Observed::Acquire(answer) => {
                let expected = self.oracle.acquire(now);
                self.check_events(observation)?;
                self.check_transitions(observation, None)?;
                self.check_acquire(answer, expected)?;
            }
            Observed::Complete {
                permit,
                outcome,
                completion: reported,
            } => {
                let expected = self
                    .oracle
                    .complete(*permit, *outcome, now)
                    .map_err(|error| self.violation(&PERMITS_RELEASED_ONCE, error.to_string()))?;
                completion = Some(expected);
                self.check_events(observation)?;
                self.check_transitions(observation, Some(expected))?;
                self.check_completion(*permit, *reported, expected)?;
            }
            Observed::Release { permit } => {
                let issued = self.issued.get(permit).copied();
                self.oracle
                    .release(*permit, now)
                    .map_err(|error| self.violation(&PERMITS_RELEASED_ONCE, error.to_string()))?;
                self.check_events(observation)?;
                self.check_transitions(observation, None)?;
                self.forget(*permit);
                let probe_of_epoch = issued.is_some_and(|issued| {
                    issued.kind == PermitKind::Probe && issued.epoch == self.oracle.epoch()
                });
                if probe_of_epoch {
                    self.reach(&PROBE_RELEASED);
                }
            }
            Observed::Timeout => {
                self.oracle.timeout(now);
                self.check_events(observation)?;
                self.check_transitions(observation, None)?;
            }
        }
        if matches!(completion, Some(Completion::Stale { .. })) {
            self.reach(&STALE_OUTCOME_IGNORED);
        }
        self.check_deadline_kept(observation, due)?;
        self.check_metrics(observation)?;
        self.check_deadline(observation)
    }

    /// After the run: every permit was completed or released, and every request the service
    /// received (by permit) was logged as sent by the client.
    pub fn finish(&self, received: impl IntoIterator<Item = PermitId>) -> Checked {
        let outstanding: Vec<PermitId> = self.oracle.outstanding().collect();
        if !outstanding.is_empty() {
            return Err(self.violation(
                &PERMITS_RELEASED_ONCE,
                format!("permits never completed nor released: {outstanding:?}"),
            ));
        }
        for permit in received {
            if !self.sent.contains(&permit) {
                return Err(self.violation(
                    &OPEN_SENDS_NOTHING,
                    format!(
                        "the service received a request of permit {permit} that the client \
                         never sent through its breaker"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn violation(&self, invariant: &Invariant, message: impl Into<String>) -> Violation {
        invariant.violated(format!("{}: {}", self.client, message.into()))
    }

    /// A request entered the network: the oracle must hold a live permit for it, in a state
    /// that admits calls. (Half-open's bound is judged at admission, against the oracle.)
    fn check_sent(&mut self, permit: PermitId) -> Checked {
        let state = self.oracle.state();
        if matches!(state, State::Open | State::ForcedOpen) {
            return Err(self.violation(
                &OPEN_SENDS_NOTHING,
                format!(
                    "request of permit {permit} entered the network while the breaker is {state} \
                     (epoch {})",
                    self.oracle.epoch()
                ),
            ));
        }
        if !self.issued.contains_key(&permit) {
            return Err(self.violation(
                &PERMITS_RELEASED_ONCE,
                format!("request sent under permit {permit}, which is not live"),
            ));
        }
        self.sent.insert(permit);
        Ok(())
    }

    /// The breaker's own transition events must chain and be legal; its recorded calls feed the
    /// failure window of `opens-under-failure`.
    fn check_events(&mut self, observation: &Observation) -> Checked {
        let mut recorded = false;
        for event in &observation.events {
            match event.kind {
                EventKind::Transition { from, to, reason } => {
                    self.check_transition_event(from, to, reason, event.epoch)?;
                    self.note_transition(to, reason);
                    self.streak = FailureWindow::new(&self.config, event.epoch);
                }
                EventKind::Success { .. } | EventKind::Failure { .. } | EventKind::Slow { .. }
                    if self.reported.0 == State::Closed && self.streak.epoch == event.epoch =>
                {
                    let failed = matches!(
                        event.kind,
                        EventKind::Failure { .. } | EventKind::Slow { failed: true, .. }
                    );
                    self.streak.record(event.at.monotonic, failed);
                    recorded = true;
                }
                _ => {}
            }
        }
        // Judged right after a record, when the breaker evaluates its window.
        if recorded && self.reported.0 == State::Closed {
            if let Some(calls) = self.streak.all_failed() {
                return Err(self.violation(
                    &OPENS_UNDER_FAILURE,
                    format!(
                        "the breaker is still closed although all {calls} calls of its window \
                         failed ({:?}, minimum {})",
                        self.config.window,
                        self.config.calls_min_effective()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_transition_event(
        &mut self,
        from: State,
        to: State,
        reason: TransitionReason,
        epoch: u64,
    ) -> Checked {
        let (state, previous) = self.reported;
        if from != state || epoch != previous + 1 {
            return Err(self.violation(
                &LEGAL_TRANSITIONS,
                format!(
                    "transition {from} -> {to} to epoch {epoch} does not follow {state} in \
                     epoch {previous}"
                ),
            ));
        }
        if !is_legal_transition(from, to, reason) {
            return Err(self.violation(
                &LEGAL_TRANSITIONS,
                format!("illegal transition {from} -> {to} ({reason:?})"),
            ));
        }
        self.reported = (to, epoch);
        Ok(())
    }

    fn note_transition(&mut self, to: State, reason: TransitionReason) {
        match (to, reason) {
            (State::Open, TransitionReason::HalfOpenWaitMaxElapsed) => {
                self.reach(&REACHED_OPEN);
                self.reach(&HALF_OPEN_TIMED_OUT);
            }
            (State::Open, _) => self.reach(&REACHED_OPEN),
            (State::HalfOpen, _) => self.reach(&REACHED_HALF_OPEN),
            (State::Closed, TransitionReason::ProbesPassed) => self.reach(&REACHED_CLOSED_AGAIN),
            _ => {}
        }
    }

    /// The transitions the breaker made in this step must be the oracle's.
    fn check_transitions(
        &self,
        observation: &Observation,
        expected_completion: Option<Completion>,
    ) -> Checked {
        let made: Vec<TransitionRecord> = observation
            .events
            .iter()
            .filter_map(|event| match event.kind {
                EventKind::Transition { from, to, reason } => Some(TransitionRecord {
                    at: event.at.monotonic,
                    from,
                    to,
                    epoch: event.epoch,
                    reason,
                }),
                _ => None,
            })
            .collect();
        let expected = self.oracle.last_transitions();
        let key = |t: &TransitionRecord| (t.from, t.to, t.epoch, t.reason);
        for index in 0..made.len().max(expected.len()) {
            let (made, expected) = (made.get(index), expected.get(index));
            if made.map(key) != expected.map(key) {
                return Err(self.transition_mismatch(
                    observation,
                    made,
                    expected,
                    expected_completion,
                ));
            }
        }
        Ok(())
    }

    fn transition_mismatch(
        &self,
        observation: &Observation,
        made: Option<&TransitionRecord>,
        expected: Option<&TransitionRecord>,
        expected_completion: Option<Completion>,
    ) -> Violation {
        let is = |t: Option<&TransitionRecord>, from: State, to: State| {
            t.is_some_and(|t| t.from == from && t.to == to)
        };
        let text = format!(
            "at {:?} (wall {:?}) after {:?}: the breaker made {}, the oracle expected {}",
            observation.at.monotonic,
            observation.at.wall,
            observation.observed,
            describe(made),
            describe(expected)
        );
        if is(made, State::Open, State::HalfOpen) || is(expected, State::Open, State::HalfOpen) {
            return self.violation(
                &MONOTONIC_OPEN_WAIT,
                format!("{text}; the open wait is measured on the monotonic clock"),
            );
        }
        let stale = matches!(expected_completion, Some(Completion::Stale { .. }));
        if stale && made.is_some() {
            return self.violation(
                &EPOCH_ISOLATION,
                format!("{text}; a late outcome from an older epoch decided a transition"),
            );
        }
        let why = match (made, expected) {
            (Some(_), None) => "a transition the oracle's window does not justify",
            (None, Some(_)) => "a missed transition",
            _ => "a different transition",
        };
        self.violation(&LEGAL_TRANSITIONS, format!("{text}: {why}"))
    }

    fn check_acquire(
        &mut self,
        answer: &Result<Admitted, Rejected>,
        expected: Result<Admission, Refusal>,
    ) -> Checked {
        let text = format!("the breaker answered {answer:?}, the oracle expected {expected:?}");
        match (answer, expected) {
            (Ok(made), Ok(expected)) => {
                if made.permit != expected.permit {
                    return Err(self.violation(&PERMITS_RELEASED_ONCE, text));
                }
                if made.epoch != expected.epoch || made.kind != expected.kind {
                    return Err(self.violation(&LEGAL_TRANSITIONS, text));
                }
                self.issued.insert(made.permit, expected);
                Ok(())
            }
            (Ok(_), Err(refusal)) => Err(match refusal.reason {
                RejectReason::HalfOpenFull => self.violation(
                    &HALF_OPEN_PROBES,
                    format!("{text}: a probe beyond the permitted number"),
                ),
                RejectReason::Open | RejectReason::ForcedOpen => self.violation(
                    &OPEN_SENDS_NOTHING,
                    format!("{text}: a call admitted while open"),
                ),
            }),
            (Err(rejected), Ok(_)) => Err(match rejected.reason {
                RejectReason::HalfOpenFull => self.violation(
                    &PERMITS_RELEASED_ONCE,
                    format!("{text}: a probe slot was not given back"),
                ),
                RejectReason::Open => self.violation(
                    &MONOTONIC_OPEN_WAIT,
                    format!("{text}: still open after the monotonic open wait"),
                ),
                RejectReason::ForcedOpen => self.violation(&LEGAL_TRANSITIONS, text),
            }),
            (Err(rejected), Err(refusal)) => {
                let (state, epoch) = (self.oracle.state(), self.oracle.epoch());
                if rejected.reason != refusal.reason
                    || rejected.state != state
                    || rejected.epoch != epoch
                {
                    return Err(self.violation(&LEGAL_TRANSITIONS, text));
                }
                if rejected.retry_after != refusal.retry_after {
                    return Err(self.violation(
                        &MONOTONIC_OPEN_WAIT,
                        format!("{text}: the open wait left differs"),
                    ));
                }
                Ok(())
            }
        }
    }

    fn check_completion(
        &mut self,
        permit: PermitId,
        reported: Completion,
        expected: Completion,
    ) -> Checked {
        self.forget(permit);
        if reported == expected {
            return Ok(());
        }
        let text =
            format!("permit {permit} completed as {reported:?}, the oracle expected {expected:?}");
        let stale = |c: Completion| matches!(c, Completion::Stale { .. });
        if stale(reported) || stale(expected) {
            return Err(self.violation(&EPOCH_ISOLATION, text));
        }
        Err(self.violation(&METRICS_MATCH, text))
    }

    fn forget(&mut self, permit: PermitId) {
        self.issued.remove(&permit);
    }

    /// A transition due at a deadline must be made at the deadline (by the driver's pump), not
    /// lazily by whatever input comes next.
    fn check_deadline_kept(&self, observation: &Observation, due: Option<Duration>) -> Checked {
        let Some(due) = due else {
            return Ok(());
        };
        let late = observation.at.monotonic > due + DEADLINE_SLACK;
        let timed = self.oracle.last_transitions().iter().find(|t| {
            matches!(
                t.reason,
                TransitionReason::OpenWaitElapsed | TransitionReason::HalfOpenWaitMaxElapsed
            )
        });
        match timed {
            Some(transition) if late => Err(self.violation(
                &LEGAL_TRANSITIONS,
                format!(
                    "{} -> {} was due at {due:?} but made at {:?}, by {:?}: the deadline was \
                     not pumped",
                    transition.from, transition.to, observation.at.monotonic, observation.observed
                ),
            )),
            _ => Ok(()),
        }
    }

    fn check_metrics(&self, observation: &Observation) -> Checked {
        let expected = self.oracle.metrics();
        if observation.metrics == expected {
            return Ok(());
        }
        let slots_only = Metrics {
            probe_slots_used: expected.probe_slots_used,
            ..observation.metrics
        } == expected;
        if slots_only {
            return Err(self.violation(
                &PERMITS_RELEASED_ONCE,
                format!(
                    "after {:?}: {} probe slots taken, the oracle expected {}: a completed or \
                     released probe kept its slot",
                    observation.observed,
                    observation.metrics.probe_slots_used,
                    expected.probe_slots_used
                ),
            ));
        }
        Err(self.violation(
            &METRICS_MATCH,
            format!(
                "after {:?} at {:?}: the breaker's metrics {:?} differ from the oracle's window \
                 {expected:?}",
                observation.observed, observation.at.monotonic, observation.metrics
            ),
        ))
    }

    fn check_deadline(&self, observation: &Observation) -> Checked {
        let expected = self.oracle.deadline();
        if observation.deadline == expected {
            return Ok(());
        }
        let text = format!(
            "in {} the breaker's next deadline is {:?}, the oracle's {expected:?}",
            self.oracle.state(),
            observation.deadline
        );
        match self.oracle.state() {
            State::Open => Err(self.violation(&MONOTONIC_OPEN_WAIT, text)),
            _ => Err(self.violation(
                &LEGAL_TRANSITIONS,
                format!("{text}: the transition at the deadline would be missed"),
            )),
        }
    }
}

fn describe(transition: Option<&TransitionRecord>) -> String {
    match transition {
        None => "no transition".to_string(),
        Some(t) => format!(
            "{} -> {} (epoch {}, {:?}) at {:?}",
            t.from, t.to, t.epoch, t.reason, t.at
        ),
    }
}

/// The calls of the current closed window, by the simplest rule that can fail: a window whose
/// calls all failed, with at least the minimum number of calls, must have tripped, whatever the
/// threshold. Independent of the oracle's and the breaker's windows.
#[derive(Clone, Debug)]
struct FailureWindow {
    epoch: u64,
    window: Window,
    calls_min: usize,
    /// Monotonic second and failure of each call in the window, oldest first.
    calls: VecDeque<(u64, bool)>,
}

impl FailureWindow {
    fn new(config: &Config, epoch: u64) -> Self {
        FailureWindow {
            epoch,
            window: config.window,
            calls_min: config.calls_min_effective() as usize,
            calls: VecDeque::new(),
        }
    }

    fn record(&mut self, at: Duration, failed: bool) {
        let second = at.as_secs();
        self.calls.push_back((second, failed));
        match self.window {
            Window::Count { size } => {
                while self.calls.len() > size as usize {
                    self.calls.pop_front();
                }
            }
            Window::Time { seconds } => {
                while self
                    .calls
                    .front()
                    .is_some_and(|(first, _)| first + u64::from(seconds) <= second)
                {
                    self.calls.pop_front();
                }
            }
        }
    }

    /// The number of calls if the window holds at least the minimum and all of them failed.
    fn all_failed(&self) -> Option<usize> {
        let all = self.calls.iter().all(|(_, failed)| *failed);
        (all && self.calls.len() >= self.calls_min).then_some(self.calls.len())
    }
}
