//! Shared by the circuit-breaker tests: a lockstep harness that feeds the same inputs to the
//! breaker and to the reference oracle, compares them after every input, and prints an
//! effect trace; and a small script language over it.
//!
//! Script lines (one input each; `#` starts a comment line, echoed in the trace):
//! `acquire [N]`, `ok ID`, `fail ID`, `ignore ID`, `release ID` (ID is a permit number, `p3` or
//! `3`), `wait DURATION` (both clocks), `wall +DURATION` / `wall -DURATION` (wall clock only),
//! `timeout` (at the current time), `timeout-at-deadline` (advance to the next deadline, then
//! `handle_timeout`), `trip`, `reset`, `to STATE`, `metrics` (a timeout, then the metrics),
//! `stale-reading DURATION` (an acquire with a monotonic reading that far in the past). Durations: `250ms`, `2s`, `1.5s`.

#![allow(dead_code)] // Each test crate uses a different part of this module.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use patterns::circuit_breaker::oracle::{self, Oracle};
use patterns::circuit_breaker::{
    CircuitBreaker, Completion, Config, Event, EventKind, Metrics, Now, Outcome, Permit, PermitId,
    Rejected, State, TransitionReason,
};

/// One input.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// A comment echoed in the trace.
    Comment(String),
    /// `try_acquire`.
    Acquire,
    /// `on_result` for the permit with this id.
    Complete(u64, Outcome),
    /// `release` for the permit with this id.
    Release(u64),
    /// Both clocks move forward.
    Wait(Duration),
    /// The wall clock jumps forward (`true`) or backward.
    WallJump(Duration, bool),
    /// `try_acquire` with a monotonic reading this far before the latest one.
    StaleReading(Duration),
    /// `handle_timeout` now.
    Timeout,
    /// Advance to `poll_timeout`, if any, then `handle_timeout`.
    TimeoutAtDeadline,
    /// `trip`.
    Trip,
    /// `reset`.
    Reset,
    /// `transition_to`.
    To(State),
    /// `handle_timeout` now, then print the metrics.
    Metrics,
}

/// The breaker and the oracle, driven in lockstep.
pub struct Lockstep {
    pub breaker: CircuitBreaker,
    pub oracle: Oracle,
    pub now: Now,
    held: BTreeMap<u64, Permit>,
    /// Permits whose admission was published and whose completion was not yet seen.
    published_open: BTreeSet<PermitId>,
    deadline_shown: Option<Duration>,
    pub trace: String,
    /// What the run reached: a label per kind of event and per kind of transition.
    pub coverage: BTreeSet<String>,
}

impl Lockstep {
    /// A breaker and an oracle at time zero.
    pub fn new(config: Config) -> Self {
        let now = Now::new(Duration::ZERO, wall_origin());
        Lockstep {
            oracle: Oracle::new(&config, now.monotonic).expect("valid config"),
            breaker: CircuitBreaker::new(config, now).expect("valid config"),
            now,
            held: BTreeMap::new(),
            published_open: BTreeSet::new(),
            deadline_shown: None,
            trace: String::new(),
            coverage: BTreeSet::new(),
        }
    }

    /// Ids of the permits held, in order.
    pub fn held(&self) -> Vec<u64> {
        self.held.keys().copied().collect()
    }

    /// Applies `step` to both, appends to the trace, and compares them.
    pub fn step(&mut self, step: &Step) -> Result<(), String> {
        if let Step::Comment(text) = step {
            let _ = writeln!(self.trace, "# {text}");
            return Ok(());
        }
        let line = self.describe(step);
        let _ = writeln!(self.trace, "[{}] {line}", stamp(self.now));
        self.apply(step)?;
        let fed_oracle = !matches!(step, Step::Wait(_) | Step::WallJump(..));
        self.drain_events(fed_oracle)?;
        self.compare()
    }

    /// Completes every held permit with a release and checks that every published admission
    /// got exactly one completion event.
    pub fn finish(&mut self) -> Result<(), String> {
        for id in self.held() {
            self.step(&Step::Release(id))?;
        }
        if !self.published_open.is_empty() {
            return Err(format!(
                "permits admitted without a completion event: {:?}",
                self.published_open
            ));
        }
        if self.oracle.outstanding().next().is_some() {
            return Err("the oracle still has outstanding permits".to_owned());
        }
        Ok(())
    }

    fn describe(&self, step: &Step) -> String {
        match step {
            Step::Comment(text) => format!("# {text}"),
            Step::Acquire => "acquire".to_owned(),
            Step::Complete(id, outcome) => format!("{} p{id}", outcome_word(*outcome)),
            Step::Release(id) => format!("release p{id}"),
            Step::Wait(d) => format!("wait {d:?}"),
            Step::WallJump(d, forward) => format!("wall {}{d:?}", if *forward { '+' } else { '-' }),
            Step::StaleReading(d) => format!("acquire with a reading {d:?} old"),
            Step::Timeout => "timeout".to_owned(),
            Step::TimeoutAtDeadline => "timeout-at-deadline".to_owned(),
            Step::Trip => "trip".to_owned(),
            Step::Reset => "reset".to_owned(),
            Step::To(state) => format!("to {state}"),
            Step::Metrics => "metrics".to_owned(),
        }
    }

    fn apply(&mut self, step: &Step) -> Result<(), String> {
        match step {
            Step::Comment(_) => Ok(()),
            Step::Acquire => self.acquire_at(self.now),
            Step::Complete(id, outcome) => self.complete(*id, *outcome),
            Step::Release(id) => self.release(*id),
            Step::Wait(d) => {
                self.now = self.now.advanced(*d);
                Ok(())
            }
            Step::WallJump(d, forward) => {
                self.now.wall = if *forward {
                    self.now.wall + *d
                } else {
                    self.now.wall - *d
                };
                self.out(format!("=> wall now {}", wall_offset(self.now)));
                Ok(())
            }
            Step::StaleReading(d) => self.stale_reading(*d),
            Step::Timeout => {
                self.breaker.handle_timeout(self.now);
                self.oracle.timeout(self.now.monotonic);
                Ok(())
            }
            Step::TimeoutAtDeadline => {
                if let Some(deadline) = self.breaker.poll_timeout() {
                    let step = deadline.saturating_sub(self.now.monotonic);
                    self.now = self.now.advanced(step);
                }
                self.breaker.handle_timeout(self.now);
                self.oracle.timeout(self.now.monotonic);
                self.out(format!("=> now {}", stamp(self.now)));
                Ok(())
            }
            Step::Trip | Step::To(_) | Step::Reset => self.manual(step),
            Step::Metrics => {
                // Metrics are as of the latest input: tell both the time first.
                self.breaker.handle_timeout(self.now);
                self.oracle.timeout(self.now.monotonic);
                let metrics = self.breaker.metrics();
                self.out(format!("=> {}", show_metrics(&metrics)));
                Ok(())
            }
        }
    }

    fn acquire_at(&mut self, now: Now) -> Result<(), String> {
        let got = self.breaker.try_acquire(now);
        let want = self.oracle.acquire(now.monotonic);
        match (got, want) {
            (Ok(permit), Ok(admission)) => {
                self.out(format!("=> {} {:?}", permit.id(), permit.kind()));
                let same = permit.id() == admission.permit
                    && permit.epoch() == admission.epoch
                    && permit.kind() == admission.kind;
                self.held.insert(permit.id().0, permit);
                same.then_some(())
                    .ok_or_else(|| format!("admission differs from the oracle's {admission:?}"))
            }
            (Err(rejected), Err(refusal)) => {
                self.out(format!("=> {}", show_rejected(&rejected)));
                let same = rejected.reason == refusal.reason
                    && rejected.retry_after == refusal.retry_after;
                same.then_some(()).ok_or_else(|| {
                    format!("rejection {rejected:?} differs from the oracle's {refusal:?}")
                })
            }
            (got, want) => Err(format!("breaker {got:?}, oracle {want:?}")),
        }
    }

    fn complete(&mut self, id: u64, outcome: Outcome) -> Result<(), String> {
        let permit = self
            .held
            .remove(&id)
            .ok_or_else(|| format!("no held permit p{id}"))?;
        let got = self.breaker.on_result(permit, outcome, self.now);
        let want = self
            .oracle
            .complete(PermitId(id), outcome, self.now.monotonic);
        self.out(format!("=> {}", show_completion(got)));
        match want {
            Ok(want) if want == got => Ok(()),
            want => Err(format!(
                "completion {got:?} differs from the oracle's {want:?}"
            )),
        }
    }

    fn release(&mut self, id: u64) -> Result<(), String> {
        let permit = self
            .held
            .remove(&id)
            .ok_or_else(|| format!("no held permit p{id}"))?;
        self.breaker.release(permit, self.now);
        self.oracle
            .release(PermitId(id), self.now.monotonic)
            .map_err(|error| format!("oracle: {error}"))
    }

    fn stale_reading(&mut self, back: Duration) -> Result<(), String> {
        // An acquire with an older monotonic reading than the latest (two tasks that read the
        // clock, then call in the other order): it counts as the latest reading.
        let mut earlier = self.now;
        earlier.monotonic = earlier.monotonic.saturating_sub(back);
        self.acquire_at(earlier)
    }

    fn manual(&mut self, step: &Step) -> Result<(), String> {
        let (got, want) = match step {
            Step::Trip => (
                self.breaker.trip(self.now),
                self.oracle.transition_to(State::Open, self.now.monotonic),
            ),
            Step::To(state) => (
                self.breaker.transition_to(*state, self.now),
                self.oracle.transition_to(*state, self.now.monotonic),
            ),
            _ => {
                self.breaker.reset(self.now);
                self.oracle.reset(self.now.monotonic);
                (Ok(()), Ok(()))
            }
        };
        if let Err(error) = got {
            self.out(format!("=> refused: {error}"));
        }
        (got == want)
            .then_some(())
            .ok_or_else(|| format!("manual transition {got:?} differs from the oracle's {want:?}"))
    }

    /// Drains the breaker's events. `fed_oracle`: whether the step was an input of the oracle
    /// (otherwise it must cause no event at all).
    fn drain_events(&mut self, fed_oracle: bool) -> Result<(), String> {
        let mut transitions = Vec::new();
        while let Some(event) = self.breaker.poll_event() {
            self.out(format!("- {}", show_event(&event)));
            self.coverage.insert(coverage_label(&event.kind));
            self.track_permit_events(&event)?;
            if let EventKind::Transition { from, to, reason } = event.kind {
                if !oracle::is_legal_transition(from, to, reason) {
                    return Err(format!("illegal transition {from} -> {to} ({reason:?})"));
                }
                transitions.push((from, to, event.epoch, reason));
            }
        }
        let want: Vec<_> = if fed_oracle {
            let records = self.oracle.last_transitions().iter();
            records.map(|t| (t.from, t.to, t.epoch, t.reason)).collect()
        } else {
            Vec::new()
        };
        if transitions != want {
            return Err(format!(
                "transitions {transitions:?} differ from the oracle's {want:?}"
            ));
        }
        if self.breaker.events_dropped() > 0 {
            self.out(format!(
                "- ({} events dropped so far)",
                self.breaker.events_dropped()
            ));
        }
        Ok(())
    }

    /// Every published admission gets exactly one outcome, stale-outcome or release event.
    fn track_permit_events(&mut self, event: &Event) -> Result<(), String> {
        let completed = match event.kind {
            EventKind::Admitted { permit, .. } => {
                if !self.published_open.insert(permit) {
                    return Err(format!("{permit} admitted twice"));
                }
                return Ok(());
            }
            EventKind::Success { permit, .. }
            | EventKind::Failure { permit, .. }
            | EventKind::Slow { permit, .. }
            | EventKind::Ignored { permit, .. }
            | EventKind::StaleOutcome { permit, .. }
            | EventKind::Released { permit, .. } => permit,
            _ => return Ok(()),
        };
        if self.breaker.events_dropped() == 0 && !self.published_open.remove(&completed) {
            return Err(format!(
                "{completed} completed without a published admission, or twice"
            ));
        }
        Ok(())
    }

    fn compare(&mut self) -> Result<(), String> {
        let deadline = self.breaker.poll_timeout();
        if deadline != self.deadline_shown {
            let shown = deadline.map_or("none".to_owned(), |d| format!("{d:?}"));
            self.out(format!("~ next deadline: {shown}"));
            self.deadline_shown = deadline;
        }
        let (got, want): (Metrics, Metrics) = (self.breaker.metrics(), self.oracle.metrics());
        if got != want {
            return Err(format!("metrics {got:?} differ from the oracle's {want:?}"));
        }
        if deadline != self.oracle.deadline() {
            return Err(format!(
                "deadline {deadline:?} differs from the oracle's {:?}",
                self.oracle.deadline()
            ));
        }
        let probes_max = self.breaker.config().half_open_probes_max;
        if got.probe_slots_used > probes_max {
            return Err(format!(
                "{} probe slots used, at most {probes_max} permitted",
                got.probe_slots_used
            ));
        }
        Ok(())
    }

    fn out(&mut self, text: String) {
        let _ = writeln!(self.trace, "    {text}");
    }
}

/// Runs `script`; on a divergence from the oracle, returns the trace so far and the reason.
pub fn run_script(config: Config, script: &str) -> Result<String, String> {
    let mut lockstep = Lockstep::new(config);
    for step in parse(script) {
        if let Err(reason) = lockstep.step(&step) {
            return Err(format!("{}DIVERGENCE: {reason}\n", lockstep.trace));
        }
    }
    Ok(lockstep.trace)
}

/// Runs `script` and returns its trace; panics if the breaker and the oracle disagree.
pub fn check(config: Config, script: &str) -> String {
    match run_script(config, script) {
        Ok(trace) => trace,
        Err(trace) => panic!("the breaker diverged from the oracle:\n{trace}"),
    }
}

/// Parses a script; panics on a malformed line (scripts are test code).
pub fn parse(script: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for line in script
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
    {
        if let Some(comment) = line.strip_prefix('#') {
            steps.push(Step::Comment(comment.trim().to_owned()));
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let arg = || {
            *words
                .get(1)
                .unwrap_or_else(|| panic!("`{line}` needs an argument"))
        };
        let step = match words[0] {
            "acquire" => {
                let count = words
                    .get(1)
                    .map_or(1, |n| n.parse().expect("acquire count"));
                for _ in 0..count {
                    steps.push(Step::Acquire);
                }
                continue;
            }
            "ok" => Step::Complete(permit_number(arg()), Outcome::Success),
            "fail" => Step::Complete(permit_number(arg()), Outcome::Failure),
            "ignore" => Step::Complete(permit_number(arg()), Outcome::Ignored),
            "release" => Step::Release(permit_number(arg())),
            "wait" => Step::Wait(duration(arg())),
            "wall" => {
                let text = arg();
                Step::WallJump(duration(&text[1..]), text.starts_with('+'))
            }
            "stale-reading" => Step::StaleReading(duration(arg())),
            "timeout" => Step::Timeout,
            "timeout-at-deadline" => Step::TimeoutAtDeadline,
            "trip" => Step::Trip,
            "reset" => Step::Reset,
            "to" => Step::To(state(arg())),
            "metrics" => Step::Metrics,
            other => panic!("unknown script command `{other}`"),
        };
        steps.push(step);
    }
    steps
}

fn permit_number(text: &str) -> u64 {
    text.trim_start_matches('p').parse().expect("permit number")
}

fn duration(text: &str) -> Duration {
    if let Some(ms) = text.strip_suffix("ms") {
        Duration::from_millis(ms.parse().expect("milliseconds"))
    } else if let Some(s) = text.strip_suffix('s') {
        Duration::from_secs_f64(s.parse().expect("seconds"))
    } else {
        panic!("duration `{text}` needs a unit (ms or s)")
    }
}

fn state(text: &str) -> State {
    State::ALL
        .into_iter()
        .find(|state| state.as_str() == text)
        .unwrap_or_else(|| panic!("unknown state `{text}`"))
}

fn outcome_word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "ok",
        Outcome::Failure => "fail",
        Outcome::Ignored => "ignore",
    }
}

/// `t=1.5s`, plus the wall clock's offset from the monotonic one when a jump moved it.
fn stamp(now: Now) -> String {
    let offset = wall_offset(now);
    if offset == "+0ns" {
        format!("t={:?}", now.monotonic)
    } else {
        format!("t={:?} wall{offset}", now.monotonic)
    }
}

/// Where the scripts' wall clock starts: 2023-11-14, far from the Unix epoch so that jumps
/// back stay representable everywhere.
pub fn wall_origin() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// How far the wall clock is from where it would be without jumps.
fn wall_offset(now: Now) -> String {
    let unjumped = wall_origin() + now.monotonic;
    match now.wall.duration_since(unjumped) {
        Ok(ahead) => format!("+{ahead:?}"),
        Err(behind) => format!("-{:?}", behind.duration()),
    }
}

fn show_rejected(rejected: &Rejected) -> String {
    match rejected.retry_after {
        Some(after) => format!(
            "rejected {:?} in {} (retry after {after:?})",
            rejected.reason, rejected.state
        ),
        None => format!("rejected {:?} in {}", rejected.reason, rejected.state),
    }
}

fn show_completion(completion: Completion) -> String {
    match completion {
        Completion::Recorded(class) => format!("recorded {class:?}"),
        Completion::Ignored => "ignored".to_owned(),
        Completion::Unrecorded => "unrecorded".to_owned(),
        Completion::Stale { permit_epoch } => format!("stale (from epoch {permit_epoch})"),
    }
}

/// One line per event: epoch, then what happened.
pub fn show_event(event: &Event) -> String {
    let what = match event.kind {
        EventKind::Transition { from, to, reason } => {
            format!("transition {from} -> {to} ({})", show_reason(reason))
        }
        EventKind::Admitted { permit, kind } => format!("admitted {permit} {kind:?}"),
        EventKind::Rejected { reason } => format!("rejected {reason:?}"),
        EventKind::Success { permit, duration } => format!("success {permit} in {duration:?}"),
        EventKind::Failure { permit, duration } => format!("failure {permit} in {duration:?}"),
        EventKind::Slow {
            permit,
            duration,
            failed,
        } => {
            format!(
                "slow {} {permit} in {duration:?}",
                if failed { "failure" } else { "success" }
            )
        }
        EventKind::Ignored { permit, duration } => format!("ignored {permit} in {duration:?}"),
        EventKind::StaleOutcome {
            permit,
            permit_epoch,
            outcome,
        } => {
            format!(
                "stale {} {permit} from epoch {permit_epoch}",
                outcome_word(outcome)
            )
        }
        EventKind::Released {
            permit,
            permit_epoch,
        } => format!("released {permit} from epoch {permit_epoch}"),
        EventKind::FailureRateExceeded {
            failed_calls,
            buffered_calls,
            threshold_percent,
        } => {
            format!(
                "failure rate exceeded: {failed_calls}/{buffered_calls} >= {threshold_percent}%"
            )
        }
        EventKind::SlowCallRateExceeded {
            slow_calls,
            buffered_calls,
            threshold_percent,
        } => {
            format!(
                "slow-call rate exceeded: {slow_calls}/{buffered_calls} >= {threshold_percent}%"
            )
        }
    };
    format!("e{} {what}", event.epoch)
}

/// The kind of an event without its data; transitions keep their states and reason.
pub fn coverage_label(kind: &EventKind) -> String {
    match kind {
        EventKind::Transition { from, to, reason } => {
            let reason = match reason {
                TransitionReason::RatesExceeded { .. } => "rates exceeded".to_owned(),
                other => show_reason(*other),
            };
            format!("transition {from} -> {to} ({reason})")
        }
        EventKind::Rejected { reason } => format!("rejected {reason:?}"),
        EventKind::Admitted { kind, .. } => format!("admitted {kind:?}"),
        EventKind::Slow { failed, .. } => format!("slow (failed: {failed})"),
        other => {
            let debug = format!("{other:?}");
            debug
                .split([' ', '{'])
                .next()
                .unwrap_or_default()
                .to_owned()
        }
    }
}

fn show_reason(reason: TransitionReason) -> String {
    match reason {
        TransitionReason::RatesExceeded {
            failure_rate,
            slow_call_rate,
        } => {
            let mut rates = Vec::new();
            if failure_rate {
                rates.push("failure rate");
            }
            if slow_call_rate {
                rates.push("slow-call rate");
            }
            format!("{} exceeded", rates.join(" and "))
        }
        TransitionReason::OpenWaitElapsed => "open wait elapsed".to_owned(),
        TransitionReason::ProbesPassed => "probes passed".to_owned(),
        TransitionReason::HalfOpenWaitMaxElapsed => "half-open wait max elapsed".to_owned(),
        TransitionReason::Manual => "manual".to_owned(),
        TransitionReason::Reset => "reset".to_owned(),
    }
}

/// The metrics on one line; rates print as `-` below the minimum number of calls.
pub fn show_metrics(metrics: &Metrics) -> String {
    let rate = |rate: Option<f64>| rate.map_or("-".to_owned(), |r| format!("{r:.1}%"));
    format!(
        "{} e{}: calls {} (ok {}, failed {}, slow {}, slow failed {}), not permitted {}, min {}, \
         probe slots {}, failure rate {}, slow rate {}",
        metrics.state,
        metrics.epoch,
        metrics.buffered_calls,
        metrics.successful_calls(),
        metrics.failed_calls,
        metrics.slow_calls,
        metrics.slow_failed_calls,
        metrics.not_permitted_calls,
        metrics.calls_min,
        metrics.probe_slots_used,
        rate(metrics.failure_rate_percent()),
        rate(metrics.slow_call_rate_percent()),
    )
}
