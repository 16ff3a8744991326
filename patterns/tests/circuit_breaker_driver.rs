//! The async driver on a small simulation: one client node calls one service node.
//!
//! Each test builds the two nodes, drives a few calls through the driver and asserts on what
//! the caller got, what the service received and what the driver reported to its tap.
#![cfg(madsim)]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use patterns::circuit_breaker::driver::{CallError, Driver, Observation, Observed};
use patterns::circuit_breaker::{
    CircuitBreaker, Completion, Config, EventKind, Outcome, RejectReason, State, TransitionReason,
    Window,
};
use sim_core::net::{Addr, Socket};
use sim_core::{time, NodeId, Sim, SimConfig, Violation};

const PORT: u16 = 80;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// What the service does with every request.
#[derive(Clone, Copy, Debug)]
enum Service {
    /// Answers `false` (a failure) at once.
    Failing,
    /// Answers `true` at once.
    Healthy,
    /// Never answers.
    Silent,
}

/// Builds the service node; returns it and the count of requests it received.
fn service(sim: &Sim, behaviour: Service) -> (NodeId, Arc<AtomicU64>) {
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    let node = sim
        .node("service")
        .init(move || {
            let counter = counter.clone();
            async move {
                let socket = Socket::bind(PORT).expect("port free");
                while let Ok((request, _body)) = socket.recv_request::<u64>().await {
                    counter.fetch_add(1, Ordering::SeqCst);
                    match behaviour {
                        Service::Failing => drop(socket.reply(request, &false)),
                        Service::Healthy => drop(socket.reply(request, &true)),
                        Service::Silent => {}
                    }
                }
            }
        })
        .build();
    (node, received)
}

/// Count window of 2, both calls needed, 50 % failures, `open_wait` open, one probe.
fn config(open_wait: Duration) -> Config {
    Config::builder()
        .window(Window::Count { size: 2 })
        .calls_min(2)
        .failure_rate_threshold_percent(50)
        .open_wait_fixed(open_wait)
        .half_open_probes_max(1)
        .build()
        .expect("valid")
}

type Log = Rc<RefCell<Vec<Observation>>>;

/// On the client node: a driver over `config` with a tap that keeps every observation.
async fn driver(config: Config, service: NodeId, call_timeout: Duration) -> (Driver, Log) {
    let breaker = CircuitBreaker::new(config, Driver::read_now()).expect("valid");
    let socket = Socket::bind(0).expect("ephemeral port");
    let driver = Driver::new(breaker, socket, Addr::new(service, PORT), call_timeout);
    let log: Log = Rc::default();
    let tap = log.clone();
    driver.set_tap(move |observation| tap.borrow_mut().push(observation.clone()));
    (driver, log)
}

fn as_outcome(answer: &bool) -> Outcome {
    if *answer {
        Outcome::Success
    } else {
        Outcome::Failure
    }
}

/// Runs `client` on a client node next to a service behaving as `behaviour`, and returns the
/// client's result with the number of requests the service received.
fn simulate<T: Send + 'static>(
    behaviour: Service,
    client: impl FnOnce(NodeId) -> futures::future::LocalBoxFuture<'static, T> + Send + 'static,
) -> (T, u64) {
    let result = Arc::new(Mutex::new(None));
    let slot = result.clone();
    let report = sim_core::run(1, SimConfig::default(), move |sim| async move {
        let (service, received) = service(&sim, behaviour);
        let node = sim.node("client").build();
        let value = sim
            .spawn_on(node, client(service))
            .await
            .map_err(|error| Violation::new("client", error.to_string()))?;
        *slot.lock().expect("result lock") = Some((value, received.load(Ordering::SeqCst)));
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    let value = result.lock().expect("result lock").take();
    value.expect("the run finished")
}

fn transitions(log: &[Observation]) -> Vec<(State, State, TransitionReason)> {
    log.iter()
        .flat_map(|observation| &observation.events)
        .filter_map(|event| match event.kind {
            EventKind::Transition { from, to, reason } => Some((from, to, reason)),
            _ => None,
        })
        .collect()
}

#[test]
fn failures_open_the_breaker_and_an_open_breaker_sends_nothing() {
    // Goal: two failed calls trip the breaker; the next calls are rejected by the driver and
    // never reach the service; every request is logged as sent before it goes out.
    let ((answers, sends), received) = simulate(Service::Failing, |service| {
        Box::pin(async move {
            let (driver, log) = driver(config(ms(500)), service, ms(100)).await;
            let mut answers = Vec::new();
            for _ in 0..4 {
                answers.push(driver.call(&7u64, as_outcome).await);
            }
            let sends = log
                .borrow()
                .iter()
                .filter(|o| matches!(o.observed, Observed::Sent { .. }))
                .count();
            (answers, sends)
        })
    });
    assert_eq!(answers[0], Ok(false));
    assert_eq!(answers[1], Ok(false));
    for rejected in &answers[2..] {
        let Err(CallError::Rejected(rejected)) = rejected else {
            panic!("expected a rejection, got {rejected:?}");
        };
        assert_eq!(rejected.reason, RejectReason::Open);
    }
    assert_eq!(received, 2);
    assert_eq!(sends, 2);
}

#[test]
fn pump_moves_open_to_half_open_at_the_deadline_without_traffic() {
    // Goal: with automatic transitions on, the pump hands the breaker its deadline: the
    // breaker is half-open right after the open wait, though no call came.
    let ((state, log), _) = simulate(Service::Failing, |service| {
        Box::pin(async move {
            let config = Config {
                auto_half_open: true,
                ..config(ms(200))
            };
            let (driver, log) = driver(config, service, ms(100)).await;
            for _ in 0..2 {
                let _ = driver.call(&7u64, as_outcome).await;
            }
            assert_eq!(driver.state(), State::Open);
            time::sleep(ms(201)).await;
            let log = log.borrow().clone();
            (driver.state(), log)
        })
    });
    assert_eq!(state, State::HalfOpen);
    let timeout = log
        .iter()
        .find(|o| o.observed == Observed::Timeout)
        .expect("the pump handed over the deadline");
    let opened = log
        .iter()
        .find(|o| o.deadline.is_some())
        .expect("the trip set a deadline");
    let deadline = opened.deadline.expect("found by it");
    // At the deadline, give or take madsim's rounding of a sleep to its time grain.
    assert!(timeout.at.monotonic >= deadline);
    assert!(timeout.at.monotonic < deadline + ms(1), "{timeout:?}");
    assert_eq!(
        transitions(&log).last(),
        Some(&(
            State::Open,
            State::HalfOpen,
            TransitionReason::OpenWaitElapsed
        ))
    );
}

#[test]
fn a_probe_that_never_returns_times_out_as_a_failure_and_the_max_wait_reopens() {
    // Goal: a call without an answer fails at the call timeout; with a maximum wait in
    // half-open shorter than the call timeout, the pump reopens the breaker while the probe
    // hangs (resilience4j#903's fix).
    let (log, received) = simulate(Service::Silent, |service| {
        Box::pin(async move {
            let config = Config {
                half_open_wait_max: Some(ms(100)),
                ..config(ms(50))
            };
            let (driver, log) = driver(config, service, ms(300)).await;
            for _ in 0..2 {
                let answer = driver.call(&7u64, as_outcome).await;
                assert!(matches!(answer, Err(CallError::Rpc(_))), "{answer:?}");
            }
            time::sleep(ms(60)).await;
            let probe = driver.call(&7u64, as_outcome).await;
            assert!(matches!(probe, Err(CallError::Rpc(_))), "{probe:?}");
            let log = log.borrow().clone();
            log
        })
    });
    assert_eq!(received, 3);
    let completions: Vec<(Outcome, Completion)> = log
        .iter()
        .filter_map(|o| match o.observed {
            Observed::Complete {
                outcome,
                completion,
                ..
            } => Some((outcome, completion)),
            _ => None,
        })
        .collect();
    assert!(completions[..2]
        .iter()
        .all(|(outcome, _)| *outcome == Outcome::Failure));
    // The probe's failure came after the breaker had reopened: it is stale.
    assert!(matches!(completions[2].1, Completion::Stale { .. }));
    assert!(transitions(&log).contains(&(
        State::HalfOpen,
        State::Open,
        TransitionReason::HalfOpenWaitMaxElapsed
    )));
}

#[test]
fn an_abandoned_call_releases_its_permit_and_gives_the_probe_slot_back() {
    // Goal: dropping a call drops its guard, which releases the permit; a half-open breaker
    // then admits the next probe, which succeeds and closes it.
    let ((released, state), _) = simulate(Service::Healthy, |service| {
        Box::pin(async move {
            let (driver, log) = driver(config(ms(50)), service, ms(100)).await;
            for _ in 0..2 {
                let guard = driver.try_acquire().expect("closed");
                let _ = guard.complete(Outcome::Failure);
            }
            time::sleep(ms(60)).await;
            let call = driver.call(&7u64, as_outcome);
            // Give up before the answer (1 to 10 ms each way) can come.
            assert!(time::timeout(Duration::from_micros(500), call)
                .await
                .is_err());
            let released = log
                .borrow()
                .iter()
                .any(|o| matches!(o.observed, Observed::Release { .. }));
            assert_eq!(driver.call(&7u64, as_outcome).await, Ok(true));
            (released, driver.state())
        })
    });
    assert!(released);
    assert_eq!(state, State::Closed);
}
