//! The trace checker: independent rules over what one client was seen to do.
//!
//! Three sources feed it: the driver's tap ([`Observation`]: each input it gave the breaker
//! with the monotonic reading it used, what the breaker answered, the events, metrics and next
//! deadline after it), the network tap (every request the client put on the wire, handed in by
//! the scenario through [`TraceChecker::check_send`]) and, at the end, the service's receive
//! log ([`TraceChecker::finish`]).
//!
//! Each always-invariant is its own rule, with its own bookkeeping ([`rules`]), never a label
//! put on one mismatch:
//! - `open-sends-nothing`: a send seen on the network needs a live permit of the current epoch
//!   and a state (from the breaker's own transition events) that admits calls; an admission
//!   while those events say open is refused; the service received nothing that was not sent.
//! - `half-open-probes`: the checker counts the probes of the current half-open epoch itself.
//! - `legal-transitions`: the events chain and follow the transition relation, and every
//!   decision (transitions, admissions, completions, deadlines) is the reference oracle's
//!   ([`Oracle`], fed with the same inputs and readings): the one rule that compares with it.
//! - `monotonic-open-wait`: from each opening's monotonic time and the wait computed by
//!   [`OpenWaits`] (the oracle's own backoff arithmetic), the open wait ends neither early nor
//!   late, and the time left reported on rejections is right.
//! - `epoch-isolation`: an outcome of a permit from an older epoch records nothing and decides
//!   nothing.
//! - `metrics-match`: the breaker's metrics equal counts the checker keeps itself (its own
//!   window of calls, classed from admission and completion readings).
//! - `permits-released-once`: every permit is completed or released once, and a probe that is
//!   given back frees its slot.
//! - `opens-under-failure`: a closed window whose calls all failed, with at least the minimum
//!   number of calls, has tripped (its own window and the checkers' `calls_min` rule,
//!   [`calls_min_closed`]).
//!
//! The rules of a step run in that order, the comparison with the oracle last, so a bug a
//! specific rule sees is reported by it. The first violation ends the check. The states a
//! trace reached are kept as sometimes-invariants ([`TraceChecker::reached`]).

mod rules;

use std::collections::BTreeMap;
use std::time::Duration;

use harness::{Checked, Invariant, Violation};
use patterns::circuit_breaker::driver::{Admitted, Observation, Observed};
use patterns::circuit_breaker::oracle::{calls_min_closed, OpenWaits, Oracle};
use patterns::circuit_breaker::{
    Completion, Config, ConfigError, EventKind, Metrics, Outcome, PermitId, PermitKind,
    RejectReason, Rejected, State, TransitionReason,
};

use rules::{CallWindow, Expected, FailureWindow, Live, StepContext};

/// No request from a client enters the network while its breaker is open.
pub static OPEN_SENDS_NOTHING: Invariant = Invariant::always(
    "open-sends-nothing",
    "no request from a client enters the network (as the network tap saw it) while its \
     breaker's own events say it is open, and none without a live permit of the current \
     epoch; no call is admitted while open; everything the service received was sent",
);
/// Half-open has at most the permitted number of probes out.
pub static HALF_OPEN_PROBES: Invariant = Invariant::always(
    "half-open-probes",
    "half-open admits, and has out, at most the permitted number of probes",
);
/// Only legal transitions, each justified by the oracle's window; none missed.
pub static LEGAL_TRANSITIONS: Invariant = Invariant::always(
    "legal-transitions",
    "only legal, chained transitions; each is the reference oracle's: every trip justified by \
     its window, none missed (deadlines included), every decision the oracle's",
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
    "the breaker's metrics and call classes equal the counts the checker keeps itself from \
     the admissions, outcomes and readings it saw",
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

/// Checks one client's trace; see the [module docs](self).
#[derive(Debug)]
pub struct TraceChecker {
    client: String,
    config: Config,
    /// The reference model, for `legal-transitions` only.
    oracle: Oracle,
    /// The breaker's state and epoch as its own transition events tell them.
    reported: (State, u64),
    /// The latest monotonic reading seen (the breaker's `now` never goes back).
    now: Duration,
    /// Permits admitted and neither completed nor released.
    live: BTreeMap<PermitId, Live>,
    /// The next permit id never seen (ids are handed out in order).
    permit_next: u64,
    /// Every permit whose request the network tap saw.
    sent: BTreeMap<PermitId, u64>,
    /// Probe slots taken in the current half-open epoch, by the checker's count.
    probe_slots: u32,
    /// Calls refused since the window started (open keeps the count that led to it).
    not_permitted: u64,
    /// The window the metrics must equal, kept by the checker.
    window: CallWindow,
    /// The closed window of `opens-under-failure`.
    streak: FailureWindow,
    /// The waits of consecutive openings, and the end of the current one.
    open_waits: OpenWaits,
    open_until: Duration,
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
            now,
            live: BTreeMap::new(),
            permit_next: 0,
            sent: BTreeMap::new(),
            probe_slots: 0,
            not_permitted: 0,
            window: CallWindow::closed(config, now),
            streak: FailureWindow::new(config.window, calls_min_closed(config)),
            open_waits: OpenWaits::new(config),
            open_until: now,
            reached: BTreeMap::new(),
            broken: false,
        })
    }

    /// The breaker's state as its own transition events tell it.
    pub fn state(&self) -> State {
        self.reported.0
    }

    /// The sometimes-invariants this trace reached.
    pub fn reached(&self) -> impl Iterator<Item = &'static Invariant> + '_ {
        self.reached.values().copied()
    }

    fn reach(&mut self, invariant: &'static Invariant) {
        self.reached.insert(invariant.name(), invariant);
    }

    /// Requests the network carried for this client, by the tap.
    pub fn sent_count(&self) -> usize {
        self.sent.len()
    }

    /// Checks one step of the driver. After the first violation every later step passes
    /// unchecked (the run stops at the first one).
    pub fn check(&mut self, observation: &Observation) -> Checked {
        if self.broken {
            return Ok(());
        }
        let result = self.check_step(observation);
        self.broken = result.is_err();
        result
    }

    /// Judges a request of `permit` the network tap saw the client send, against the state the
    /// breaker's own events gave since its last step (the driver sends right after admitting,
    /// without yielding, and the scenario drains the tap before every step).
    pub fn check_send(&mut self, permit: PermitId) -> Checked {
        if self.broken {
            return Ok(());
        }
        let result = self.judge_send(permit);
        self.broken = result.is_err();
        result
    }

    /// After the run: every permit was completed or released, and every request the service
    /// received (by permit) was seen on the network.
    pub fn finish(&self, received: impl IntoIterator<Item = PermitId>) -> Checked {
        if !self.live.is_empty() {
            let outstanding: Vec<&PermitId> = self.live.keys().collect();
            return Err(self.violation(
                &PERMITS_RELEASED_ONCE,
                format!("permits never completed nor released: {outstanding:?}"),
            ));
        }
        for permit in received {
            if !self.sent.contains_key(&permit) {
                return Err(self.violation(
                    &OPEN_SENDS_NOTHING,
                    format!(
                        "the service received a request of permit {permit} that the network \
                         never saw the client send"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn violation(&self, invariant: &Invariant, message: impl Into<String>) -> Violation {
        invariant.violated(format!("{}: {}", self.client, message.into()))
    }

    fn judge_send(&mut self, permit: PermitId) -> Checked {
        let (state, epoch) = self.reported;
        if matches!(state, State::Open | State::ForcedOpen) {
            return Err(self.violation(
                &OPEN_SENDS_NOTHING,
                format!(
                    "request of permit {permit} entered the network while the breaker is \
                     {state} (epoch {epoch})"
                ),
            ));
        }
        let Some(live) = self.live.get(&permit) else {
            return Err(self.violation(
                &OPEN_SENDS_NOTHING,
                format!("request sent under permit {permit}, which is not live"),
            ));
        };
        if live.epoch != epoch {
            return Err(self.violation(
                &OPEN_SENDS_NOTHING,
                format!(
                    "request of permit {permit} (epoch {}) sent in epoch {epoch}",
                    live.epoch
                ),
            ));
        }
        *self.sent.entry(permit).or_default() += 1;
        Ok(())
    }

    fn check_step(&mut self, observation: &Observation) -> Checked {
        // A send is no input of the breaker's; it is judged from the network tap, not from
        // what the driver says it sent.
        if let Observed::Sent { .. } = observation.observed {
            return Ok(());
        }
        self.now = self.now.max(observation.at.monotonic);
        let due = self.oracle.deadline();
        let expected = rules::feed_oracle(&mut self.oracle, &observation.observed, self.now);
        let mut step = StepContext::new(self.reported.1);
        self.check_events(observation, &mut step)?;
        match &observation.observed {
            Observed::Acquire(answer) => self.check_acquire(answer)?,
            Observed::Complete {
                permit,
                outcome,
                completion,
            } => self.check_complete(*permit, *outcome, *completion, &step)?,
            Observed::Release { permit } => self.check_release(*permit, &step)?,
            Observed::Timeout | Observed::Sent { .. } => {}
        }
        self.check_opens_under_failure(&step)?;
        self.check_metrics(observation)?;
        self.check_open_deadline(observation)?;
        self.check_against_oracle(observation, &expected, due)
    }
}

impl TraceChecker {
    /// The breaker's own events, in order: transitions must chain and be legal (and an open
    /// wait may not end early); each recorded call must be a live permit's of the current
    /// epoch, classed as the checker classes it.
    fn check_events(&mut self, observation: &Observation, step: &mut StepContext) -> Checked {
        if matches!(self.reported.0, State::Closed | State::MetricsOnly) {
            self.window.advance(self.now);
        }
        let mut leading = true;
        for event in &observation.events {
            match event.kind {
                EventKind::Transition { from, to, reason } => {
                    let timed = matches!(
                        reason,
                        TransitionReason::OpenWaitElapsed
                            | TransitionReason::HalfOpenWaitMaxElapsed
                    );
                    leading &= timed;
                    step.decided |= !timed;
                    self.check_transition_event(from, to, reason, event.epoch)?;
                    self.apply_transition(to, reason);
                    if leading {
                        step.handling_epoch = event.epoch;
                    }
                }
                EventKind::Success { permit, .. } => {
                    leading = false;
                    self.apply_record(observation, permit, rules::Recorded::fast(false), step)?;
                }
                EventKind::Failure { permit, .. } => {
                    leading = false;
                    self.apply_record(observation, permit, rules::Recorded::fast(true), step)?;
                }
                EventKind::Slow { permit, failed, .. } => {
                    leading = false;
                    self.apply_record(observation, permit, rules::Recorded::slow(failed), step)?;
                }
                _ => {}
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
        if !rules::is_legal(from, to, reason) {
            return Err(self.violation(
                &LEGAL_TRANSITIONS,
                format!("illegal transition {from} -> {to} ({reason:?})"),
            ));
        }
        if from == State::Open && to == State::HalfOpen && self.now < self.open_until {
            return Err(self.violation(
                &MONOTONIC_OPEN_WAIT,
                format!(
                    "open -> half-open at {:?} (monotonic), before the open wait ended at {:?}",
                    self.now, self.open_until
                ),
            ));
        }
        self.reported = (to, epoch);
        Ok(())
    }

    /// The checker's own bookkeeping of a transition.
    fn apply_transition(&mut self, to: State, reason: TransitionReason) {
        self.probe_slots = 0;
        self.streak = FailureWindow::new(self.config.window, calls_min_closed(&self.config));
        match to {
            // Open keeps the window (and the refusals) that led to it.
            State::Open => self.open_until = self.now + self.open_waits.next_wait(),
            State::HalfOpen => {
                self.window = CallWindow::half_open(self.config.half_open_probes_max, self.now);
                self.not_permitted = 0;
            }
            _ => {
                self.open_waits.reset();
                self.window = CallWindow::closed(&self.config, self.now);
                self.not_permitted = 0;
            }
        }
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

    fn apply_record(
        &mut self,
        observation: &Observation,
        permit: PermitId,
        recorded: rules::Recorded,
        step: &mut StepContext,
    ) -> Checked {
        let Observed::Complete { outcome, .. } = observation.observed else {
            return Err(self.violation(
                &METRICS_MATCH,
                format!(
                    "a call of permit {permit} recorded after {:?}",
                    observation.observed
                ),
            ));
        };
        let Some(live) = self.live.get(&permit).copied() else {
            return Err(self.violation(
                &PERMITS_RELEASED_ONCE,
                format!("a call of permit {permit}, which is not live, was recorded"),
            ));
        };
        if live.epoch != self.reported.1 {
            return Err(self.violation(
                &EPOCH_ISOLATION,
                format!(
                    "the outcome of permit {permit} from epoch {} was recorded in epoch {}",
                    live.epoch, self.reported.1
                ),
            ));
        }
        let own = rules::Recorded::classify(
            outcome,
            self.now.saturating_sub(live.admitted_at),
            self.config.slow_call_duration_threshold,
        );
        if own != Some(recorded) {
            return Err(self.violation(
                &METRICS_MATCH,
                format!(
                    "permit {permit} ({outcome:?}, {:?} after admission) recorded as {recorded:?}, \
                     the checker classes it {own:?}",
                    self.now.saturating_sub(live.admitted_at)
                ),
            ));
        }
        self.window.push(self.now, recorded);
        if self.reported.0 == State::Closed {
            self.streak.record(self.now, recorded.failed);
        }
        step.recorded.push(permit);
        Ok(())
    }
}

impl TraceChecker {
    fn check_acquire(&mut self, answer: &Result<Admitted, Rejected>) -> Checked {
        let (state, epoch) = self.reported;
        let admitted = match answer {
            Ok(admitted) => admitted,
            Err(rejected) => return self.check_rejection(rejected),
        };
        let permit = admitted.permit;
        if permit.0 < self.permit_next {
            return Err(self.violation(
                &PERMITS_RELEASED_ONCE,
                format!("permit {permit} handed out again"),
            ));
        }
        self.permit_next = permit.0 + 1;
        let live = Live {
            epoch,
            kind: admitted.kind,
            admitted_at: self.now,
        };
        self.live.insert(permit, live);
        match state {
            State::Open | State::ForcedOpen => Err(self.violation(
                &OPEN_SENDS_NOTHING,
                format!("permit {permit} admitted while the breaker's events say {state}"),
            )),
            State::HalfOpen => {
                self.probe_slots += 1;
                let max = self.config.half_open_probes_max;
                if admitted.kind != PermitKind::Probe || self.probe_slots > max {
                    return Err(self.violation(
                        &HALF_OPEN_PROBES,
                        format!(
                            "permit {permit} ({:?}) admitted in half-open epoch {epoch} as slot \
                             {} of {max}",
                            admitted.kind, self.probe_slots
                        ),
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn check_rejection(&mut self, rejected: &Rejected) -> Checked {
        match rejected.reason {
            RejectReason::Open => {
                self.not_permitted += 1;
                if self.now >= self.open_until {
                    return Err(self.violation(
                        &MONOTONIC_OPEN_WAIT,
                        format!(
                            "rejected as open at {:?} (monotonic), after the open wait ended at \
                             {:?}",
                            self.now, self.open_until
                        ),
                    ));
                }
                let left = self.open_until - self.now;
                if rejected.retry_after != Some(left) {
                    return Err(self.violation(
                        &MONOTONIC_OPEN_WAIT,
                        format!(
                            "rejected with {:?} of open wait left; the monotonic clock leaves \
                             {left:?}",
                            rejected.retry_after
                        ),
                    ));
                }
            }
            RejectReason::HalfOpenFull => {
                self.not_permitted += 1;
                let max = self.config.half_open_probes_max;
                if self.reported.0 == State::HalfOpen && self.probe_slots < max {
                    return Err(self.violation(
                        &PERMITS_RELEASED_ONCE,
                        format!(
                            "half-open refused a probe with {} of {max} slots taken: a probe \
                             slot was not given back",
                            self.probe_slots
                        ),
                    ));
                }
            }
            RejectReason::ForcedOpen => {}
        }
        Ok(())
    }

    fn take_live(&mut self, permit: PermitId) -> Result<Live, Violation> {
        self.live.remove(&permit).ok_or_else(|| {
            self.violation(
                &PERMITS_RELEASED_ONCE,
                format!("permit {permit} completed or released, but it is not live"),
            )
        })
    }

    fn check_complete(
        &mut self,
        permit: PermitId,
        outcome: Outcome,
        completion: Completion,
        step: &StepContext,
    ) -> Checked {
        let live = self.take_live(permit)?;
        let text = format!(
            "permit {permit} (epoch {}) completed as {completion:?}",
            live.epoch
        );
        if live.epoch != step.handling_epoch {
            if completion
                != (Completion::Stale {
                    permit_epoch: live.epoch,
                })
                || step.decided
            {
                return Err(self.violation(
                    &EPOCH_ISOLATION,
                    format!(
                        "{text} in epoch {}, deciding {}: a late outcome must be stale and \
                         decide nothing",
                        step.handling_epoch,
                        if step.decided {
                            "a transition"
                        } else {
                            "nothing"
                        }
                    ),
                ));
            }
            self.reach(&STALE_OUTCOME_IGNORED);
            return Ok(());
        }
        if matches!(completion, Completion::Stale { .. }) {
            return Err(self.violation(
                &EPOCH_ISOLATION,
                format!("{text}, although its epoch is the current one"),
            ));
        }
        if self.reported.0 == State::Disabled {
            return Ok(());
        }
        if outcome == Outcome::Ignored {
            self.give_back_probe(live);
            return match completion {
                Completion::Ignored => Ok(()),
                _ => Err(self.violation(&METRICS_MATCH, format!("{text}: it was ignored"))),
            };
        }
        let recorded = step.recorded.contains(&permit);
        match completion {
            Completion::Recorded(_) if recorded => Ok(()),
            _ => Err(self.violation(
                &METRICS_MATCH,
                format!("{text}; its call recorded: {recorded}, and it must be"),
            )),
        }
    }

    fn check_release(&mut self, permit: PermitId, step: &StepContext) -> Checked {
        let live = self.take_live(permit)?;
        if live.epoch == step.handling_epoch && self.give_back_probe(live) {
            self.reach(&PROBE_RELEASED);
        }
        Ok(())
    }

    /// A probe of the current half-open epoch given back frees its slot.
    fn give_back_probe(&mut self, live: Live) -> bool {
        let current = live.epoch == self.reported.1 && self.reported.0 == State::HalfOpen;
        if current && live.kind == PermitKind::Probe {
            self.probe_slots = self.probe_slots.saturating_sub(1);
            return true;
        }
        false
    }

    fn check_opens_under_failure(&self, step: &StepContext) -> Checked {
        if step.recorded.is_empty() || self.reported.0 != State::Closed {
            return Ok(());
        }
        match self.streak.all_failed() {
            Some(calls) => Err(self.violation(
                &OPENS_UNDER_FAILURE,
                format!(
                    "the breaker is still closed although all {calls} calls of its window \
                     failed ({:?}, minimum {})",
                    self.config.window,
                    calls_min_closed(&self.config)
                ),
            )),
            None => Ok(()),
        }
    }

    fn check_metrics(&self, observation: &Observation) -> Checked {
        let made = observation.metrics;
        if made.probe_slots_used != self.probe_slots {
            return Err(self.violation(
                &PERMITS_RELEASED_ONCE,
                format!(
                    "after {:?}: {} probe slots taken, the checker counts {}: a completed or \
                     released probe kept its slot",
                    observation.observed, made.probe_slots_used, self.probe_slots
                ),
            ));
        }
        let counts = self.window.counts();
        let own = Metrics {
            state: self.reported.0,
            epoch: self.reported.1,
            buffered_calls: counts.calls,
            failed_calls: counts.failed,
            slow_calls: counts.slow,
            slow_failed_calls: counts.slow_failed,
            not_permitted_calls: self.not_permitted,
            calls_min: self.window.calls_min(),
            probe_slots_used: self.probe_slots,
        };
        if made == own {
            return Ok(());
        }
        Err(self.violation(
            &METRICS_MATCH,
            format!(
                "after {:?} at {:?}: the breaker's metrics {made:?} differ from the checker's \
                 counts {own:?}",
                observation.observed, observation.at.monotonic
            ),
        ))
    }

    /// With automatic half-open, the deadline of an open breaker is the end of its monotonic
    /// wait.
    fn check_open_deadline(&self, observation: &Observation) -> Checked {
        let auto = self.config.auto_half_open;
        if self.reported.0 != State::Open || !auto || observation.deadline == Some(self.open_until)
        {
            return Ok(());
        }
        Err(self.violation(
            &MONOTONIC_OPEN_WAIT,
            format!(
                "open until {:?} (monotonic), but the breaker's next deadline is {:?}",
                self.open_until, observation.deadline
            ),
        ))
    }
}

impl TraceChecker {
    /// `legal-transitions`, the one rule that compares with the reference oracle: the same
    /// transitions, decisions and deadlines, and a deadline's transition made by the pump.
    fn check_against_oracle(
        &self,
        observation: &Observation,
        expected: &Expected,
        due: Option<Duration>,
    ) -> Checked {
        let made: Vec<(State, State, u64, TransitionReason)> = observation
            .events
            .iter()
            .filter_map(|event| match event.kind {
                EventKind::Transition { from, to, reason } => Some((from, to, event.epoch, reason)),
                _ => None,
            })
            .collect();
        let oracle: Vec<(State, State, u64, TransitionReason)> = self
            .oracle
            .last_transitions()
            .iter()
            .map(|t| (t.from, t.to, t.epoch, t.reason))
            .collect();
        let at = format!(
            "at {:?} (wall {:?}) after {:?}",
            observation.at.monotonic, observation.at.wall, observation.observed
        );
        if made != oracle {
            return Err(self.violation(
                &LEGAL_TRANSITIONS,
                format!("{at}: the breaker made {made:?}, the oracle expected {oracle:?}"),
            ));
        }
        if let Some(text) = rules::decision_mismatch(&observation.observed, expected) {
            return Err(self.violation(&LEGAL_TRANSITIONS, format!("{at}: {text}")));
        }
        self.check_deadline_kept(observation, due)?;
        if observation.deadline != self.oracle.deadline() {
            return Err(self.violation(
                &LEGAL_TRANSITIONS,
                format!(
                    "{at}: in {} the breaker's next deadline is {:?}, the oracle's {:?}",
                    self.oracle.state(),
                    observation.deadline,
                    self.oracle.deadline()
                ),
            ));
        }
        Ok(())
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
}
