//! An async driver: calls a remote service over sim-core RPC through a [`CircuitBreaker`].
//!
//! The driver only pumps; every decision is the core's. For one call it reads the node's two
//! clocks, asks the breaker for a permit, sends the request with [`Socket::call`] and a timeout
//! on the node's monotonic clock, maps the answer to an [`Outcome`] (a timeout is a failure;
//! slowness is judged by the core from the call's duration), and completes the permit. A small
//! task on the node sleeps until the breaker's [`poll_timeout`](CircuitBreaker::poll_timeout)
//! and calls [`handle_timeout`](CircuitBreaker::handle_timeout), so automatic open → half-open
//! and the maximum wait in half-open happen without traffic.
//!
//! ```no_run
//! # use std::time::Duration;
//! # use patterns::circuit_breaker::{driver::Driver, CircuitBreaker, Config, Outcome};
//! # use sim_core::net::{Addr, Socket};
//! # async fn example(service: Addr) -> Result<(), Box<dyn std::error::Error>> {
//! // On a node:
//! let breaker = CircuitBreaker::new(Config::default(), Driver::read_now())?;
//! let socket = Socket::bind(0)?;
//! let driver = Driver::new(breaker, socket, service, Duration::from_millis(300));
//! driver.set_tap(|observation| println!("{observation:?}"));
//! let answer: Result<bool, _> = driver.call(&"ping", |ok: &bool| {
//!     if *ok { Outcome::Success } else { Outcome::Failure }
//! }).await;
//! # Ok(()) }
//! ```
//!
//! # Observations
//! Every input the driver gives the breaker, with the reading it used and what the breaker
//! answered, is handed to the *tap* ([`Driver::set_tap`]) as an [`Observation`], together with
//! the events the input caused, the metrics and the next deadline after it. So is every request
//! put on the network ([`Observed::Sent`]). A checker can feed the same inputs to the
//! [`oracle`](super::oracle) and compare, step by step. Without a tap the events are dropped:
//! the breaker's own queue is drained after every input.
//!
//! # Permits and cancellation
//! A [`PermitGuard`] owns the permit: it is completed by the call, or given back with
//! [`CircuitBreaker::release`] when the guard is dropped (the caller gave up on the call).
//! A guard dropped outside a task of the node (when the node is torn down) releases at the
//! latest reading the driver saw, because the clocks cannot be read there.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use futures::future::{select, Either};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sim_core::net::{Addr, NetError, RpcError, Socket};
use sim_core::time;
use thiserror::Error;

use super::breaker::CircuitBreaker;
use super::event::{Event, EventKind, Metrics};
use super::permit::{Completion, Outcome, Permit, PermitId, PermitKind, Rejected, State};
use super::time::Now;

/// A permit the breaker handed out, as observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admitted {
    /// The permit's id.
    pub permit: PermitId,
    /// The epoch it was admitted in.
    pub epoch: u64,
    /// Normal call or half-open probe.
    pub kind: PermitKind,
}

/// What the driver did, and what the breaker answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// `try_acquire`, and its answer.
    Acquire(Result<Admitted, Rejected>),
    /// `on_result` with `outcome`, and what the breaker did with it.
    Complete {
        /// The permit completed.
        permit: PermitId,
        /// The outcome reported.
        outcome: Outcome,
        /// What the breaker did with it.
        completion: Completion,
    },
    /// `release`: the permit was given back without an outcome.
    Release {
        /// The permit released.
        permit: PermitId,
    },
    /// `handle_timeout`, called by the pump at the breaker's deadline.
    Timeout,
    /// Not an input: the request of `permit` was put on the network.
    Sent {
        /// The permit the request was sent under.
        permit: PermitId,
    },
}

/// One step of the driver: an input (or a send) with the reading it used and what followed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    /// The reading of the node's clocks given to the breaker.
    pub at: Now,
    /// What happened.
    pub observed: Observed,
    /// The events the breaker published during the step, in order.
    pub events: Vec<Event>,
    /// The breaker's metrics after the step.
    pub metrics: Metrics,
    /// The breaker's next deadline after the step ([`CircuitBreaker::poll_timeout`]).
    pub deadline: Option<Duration>,
}

/// Why a call through the driver gave no answer.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CallError {
    /// The breaker did not permit the call: nothing was sent.
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// The call was sent and failed (timeout, or a network error).
    #[error("call failed: {0}")]
    Rpc(#[from] RpcError),
}

type Tap = Box<dyn FnMut(&Observation)>;

/// What the driver, its guards and its pump share on the node.
struct Shared {
    breaker: RefCell<CircuitBreaker>,
    socket: Socket,
    target: Addr,
    call_timeout: Duration,
    tap: RefCell<Option<Tap>>,
    /// The deadline the pump sleeps until, and its waker: an input that changes the breaker's
    /// deadline wakes it.
    pump_deadline: Cell<Option<Duration>>,
    pump_waker: RefCell<Option<Waker>>,
    /// The latest reading given to the breaker.
    latest: Cell<Now>,
}

/// A client-side breaker in front of one remote service; see the [module docs](self).
///
/// Lives on one node: build it in a task of the node, and share it between the node's tasks
/// with an `Rc`.
pub struct Driver {
    shared: Rc<Shared>,
    pump: sim_core::task::JoinHandle<()>,
}

impl Driver {
    /// A driver that calls `target` from `socket` through `breaker`, each call waiting at most
    /// `call_timeout` on the node's clock. Starts the pump task on the current node.
    pub fn new(
        breaker: CircuitBreaker,
        socket: Socket,
        target: Addr,
        call_timeout: Duration,
    ) -> Driver {
        let shared = Rc::new(Shared {
            breaker: RefCell::new(breaker),
            socket,
            target,
            call_timeout,
            tap: RefCell::new(None),
            pump_deadline: Cell::new(None),
            pump_waker: RefCell::new(None),
            latest: Cell::new(Driver::read_now()),
        });
        let pump = sim_core::task::spawn(pump(shared.clone()));
        Driver { shared, pump }
    }

    /// Reads the current node's monotonic and wall clocks.
    pub fn read_now() -> Now {
        Now::new(time::now().since_origin(), time::wall())
    }

    /// Hands every later [`Observation`] to `tap` (replacing any earlier tap). The tap must
    /// not call the driver.
    pub fn set_tap(&self, tap: impl FnMut(&Observation) + 'static) {
        *self.shared.tap.borrow_mut() = Some(Box::new(tap));
    }

    /// The breaker's state.
    pub fn state(&self) -> State {
        self.shared.breaker.borrow().state()
    }

    /// The breaker's metrics.
    pub fn metrics(&self) -> Metrics {
        self.shared.breaker.borrow().metrics()
    }

    /// The service this driver calls.
    pub fn target(&self) -> Addr {
        self.shared.target
    }

    /// Asks the breaker for a permit now.
    pub fn try_acquire(&self) -> Result<PermitGuard, Rejected> {
        let mut answer = None;
        self.shared.step(Driver::read_now(), |breaker, now| {
            let result = breaker.try_acquire(now);
            let observed = result.as_ref().map(admitted).map_err(|rejected| *rejected);
            answer = Some(result);
            Observed::Acquire(observed)
        });
        let permit = answer.expect("the step ran the input")?;
        Ok(PermitGuard {
            shared: self.shared.clone(),
            permit: Some(permit),
        })
    }

    /// Calls the service with `request` if the breaker permits it; `classify` says whether an
    /// answer is a success or a failure. A timeout or a network error is a failure.
    pub async fn call<Q, R>(
        &self,
        request: &Q,
        classify: impl FnOnce(&R) -> Outcome,
    ) -> Result<R, CallError>
    where
        Q: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let guard = self.try_acquire()?;
        guard.call(request, classify).await
    }
}

fn admitted(permit: &Permit) -> Admitted {
    Admitted {
        permit: permit.id(),
        epoch: permit.epoch(),
        kind: permit.kind(),
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.pump.abort();
    }
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("target", &self.shared.target)
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Gives the breaker one input at `now`, then hands the observation to the tap and wakes
    /// the pump if the deadline moved.
    fn step(
        &self,
        now: Now,
        input: impl FnOnce(&mut CircuitBreaker, Now) -> Observed,
    ) -> Option<Duration> {
        let observation = {
            let mut breaker = self.breaker.borrow_mut();
            let observed = input(&mut breaker, now);
            let mut events = Vec::new();
            while let Some(event) = breaker.poll_event() {
                events.push(event);
            }
            Observation {
                at: now,
                observed,
                events,
                metrics: breaker.metrics(),
                deadline: breaker.poll_timeout(),
            }
        };
        let deadline = observation.deadline;
        let latest = self.latest.get();
        self.latest.set(Now {
            monotonic: latest.monotonic.max(now.monotonic),
            wall: now.wall,
        });
        if deadline != self.pump_deadline.get() {
            if let Some(waker) = self.pump_waker.borrow_mut().take() {
                waker.wake();
            }
        }
        log_step(&observation);
        if let Some(tap) = self.tap.borrow_mut().as_mut() {
            tap(&observation);
        }
        deadline
    }

    /// A reading for a guard's drop: the clocks inside a task of the node, else the latest.
    fn now_for_drop(&self) -> Now {
        if sim_core::task::current_node().is_some() {
            Driver::read_now()
        } else {
            self.latest.get()
        }
    }

    fn release(&self, permit: Permit) {
        let id = permit.id();
        self.step(self.now_for_drop(), move |breaker, now| {
            breaker.release(permit, now);
            Observed::Release { permit: id }
        });
    }

    fn complete(&self, permit: Permit, outcome: Outcome) -> Completion {
        let id = permit.id();
        let mut done = None;
        self.step(Driver::read_now(), |breaker, now| {
            let completion = breaker.on_result(permit, outcome, now);
            done = Some(completion);
            Observed::Complete {
                permit: id,
                outcome,
                completion,
            }
        });
        done.expect("the step ran the input")
    }

    /// Waits until the breaker's deadline differs from `expected`.
    fn deadline_changed(&self, expected: Option<Duration>) -> impl Future<Output = ()> + '_ {
        poll_fn(move |cx| {
            if self.breaker.borrow().poll_timeout() != expected {
                return Poll::Ready(());
            }
            *self.pump_waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
    }
}

/// Tells the step's story: transitions at info, every decision on a permit at debug.
fn log_step(observation: &Observation) {
    for event in &observation.events {
        if let EventKind::Transition { from, to, reason } = event.kind {
            tracing::info!(epoch = event.epoch, ?reason, "breaker {from} -> {to}");
        }
    }
    let epoch = observation.metrics.epoch;
    match &observation.observed {
        Observed::Acquire(Ok(admitted)) => tracing::debug!(
            epoch = admitted.epoch,
            kind = ?admitted.kind,
            "permit {} admitted",
            admitted.permit
        ),
        Observed::Acquire(Err(rejected)) => tracing::debug!(
            epoch = rejected.epoch,
            retry_after = ?rejected.retry_after,
            "call rejected: {:?} in {}",
            rejected.reason,
            rejected.state
        ),
        Observed::Complete {
            permit,
            outcome,
            completion,
        } => tracing::debug!(
            epoch,
            "permit {permit} completed: {outcome:?} -> {completion:?}"
        ),
        Observed::Release { permit } => tracing::debug!(epoch, "permit {permit} released"),
        Observed::Sent { permit } => tracing::debug!(epoch, "request of permit {permit} sent"),
        Observed::Timeout => tracing::trace!(epoch, "deadline handled"),
    }
}

/// The pump: sleeps until the breaker's next deadline and hands it the timeout; re-aims when an
/// input moves the deadline.
async fn pump(shared: Rc<Shared>) {
    loop {
        let deadline = shared.breaker.borrow().poll_timeout();
        shared.pump_deadline.set(deadline);
        let Some(at) = deadline else {
            shared.deadline_changed(None).await;
            continue;
        };
        let nanos = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX);
        let sleep = pin!(time::sleep_until(time::Instant::from_nanos(nanos)));
        let changed = pin!(shared.deadline_changed(Some(at)));
        if let Either::Left(_) = select(sleep, changed).await {
            let now = Driver::read_now();
            let next = shared.step(now, |breaker, now| {
                breaker.handle_timeout(now);
                Observed::Timeout
            });
            // The core's contract: a handled timeout leaves no deadline already due. A core
            // that broke it would make this task spin.
            assert!(
                next.is_none_or(|next| next > now.monotonic),
                "handle_timeout at {:?} left the deadline {next:?} due",
                now.monotonic
            );
        }
    }
}

/// An admitted call's permit, released if dropped before it is completed.
#[derive(Debug)]
#[must_use = "a guard dropped at once releases its permit"]
pub struct PermitGuard {
    shared: Rc<Shared>,
    permit: Option<Permit>,
}

impl PermitGuard {
    fn permit(&self) -> &Permit {
        self.permit.as_ref().expect("a live guard holds its permit")
    }

    /// The permit's id.
    pub fn id(&self) -> PermitId {
        self.permit().id()
    }

    /// Normal call or half-open probe.
    pub fn kind(&self) -> PermitKind {
        self.permit().kind()
    }

    /// The epoch the permit was admitted in.
    pub fn epoch(&self) -> u64 {
        self.permit().epoch()
    }

    /// Completes the permit with `outcome` (for a call made some other way).
    pub fn complete(mut self, outcome: Outcome) -> Completion {
        let permit = self.permit.take().expect("a live guard holds its permit");
        self.shared.complete(permit, outcome)
    }

    /// Gives the permit back without an outcome (same as dropping the guard).
    pub fn release(self) {}

    /// Sends `request` to the service and waits for the answer, at most the driver's call
    /// timeout, then completes the permit: `classify` judges an answer; a timeout, a broken
    /// connection or an answer that does not decode is a failure; a local error (the socket
    /// closed) is ignored, since it says nothing about the service.
    pub async fn call<Q, R>(
        self,
        request: &Q,
        classify: impl FnOnce(&R) -> Outcome,
    ) -> Result<R, CallError>
    where
        Q: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let id = self.id();
        let shared = self.shared.clone();
        shared.step(Driver::read_now(), |_, _| Observed::Sent { permit: id });
        // A timeout that fires early (a tight deadline, a slow network): the breaker records a
        // failure for a call the service may still answer, and the permit must come back once.
        let timeout = if sim_core::buggify!() {
            shared.call_timeout / 8
        } else {
            shared.call_timeout
        };
        let answer = shared
            .socket
            .call::<Q, R>(shared.target, request, timeout)
            .await;
        let outcome = match &answer {
            Ok(response) => classify(response),
            Err(RpcError::Timeout { .. })
            | Err(RpcError::Net(NetError::Decode { .. } | NetError::ConnectionBroken { .. })) => {
                Outcome::Failure
            }
            Err(RpcError::Net(_)) => Outcome::Ignored,
        };
        self.complete(outcome);
        answer.map_err(CallError::Rpc)
    }
}

impl Drop for PermitGuard {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            self.shared.release(permit);
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}
