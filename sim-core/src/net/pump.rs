//! The delivery engine: one task per run, on the supervisor, that wakes when the earliest
//! in-flight message is due and delivers everything that is due.
//!
//! It starts with the first socket of the run (so runs without a network schedule exactly as
//! before) and lives on the supervisor, so crashing a node never cancels messages in flight.
//! Every scheduled delivery registers a madsim timer that wakes this task: madsim timers
//! cannot be cancelled, so a timer whose message was dropped wakes the engine for nothing,
//! which costs one poll. Timer callbacks themselves run inside madsim's timer lock, before the
//! clock moves, so deliveries happen in the task, never in the callback.

use super::state;
use crate::world::World;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Starts the delivery engine on the supervisor. Call outside `world::with`.
pub(super) fn start() {
    let supervisor = crate::world::with(|world| world.net.supervisor)
        .expect("sim-core: a socket exists, so a node was added from the supervisor");
    let handle = madsim::runtime::Handle::current();
    let node = handle
        .get_node(supervisor)
        .expect("sim-core: the supervisor's madsim node exists");
    let task = node.spawn(crate::task::Counted::new(None, Pump));
    let abort = task.abort_handle();
    // Killing nodes at teardown does not reach supervisor tasks: the runner aborts these.
    crate::world::with(|world| world.supervisor_tasks.push(abort));
}

/// Makes sure the engine wakes at `deliver_at_ns` (true time since the start of the run).
pub(super) fn arm(world: &World, deliver_at_ns: u64) {
    let Some(waker) = world.net.pump_waker.as_ref() else {
        // Not polled yet: its first poll arms a timer for everything in flight.
        return;
    };
    let handle = world.time_handle();
    let base = *world
        .net
        .time_base
        .get_or_init(|| handle.now_instant() - handle.elapsed());
    let deadline = base + Duration::from_nanos(deliver_at_ns);
    // A madsim sleep registers its timer when polled; the timer wakes the engine.
    let mut sleep = handle.sleep_until(deadline);
    let mut context = Context::from_waker(waker);
    let _ = Pin::new(&mut sleep).poll(&mut context);
}

/// The engine's future; it never completes (the runner aborts it at teardown).
struct Pump;

impl Future for Pump {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        crate::world::with(|world| {
            if !world.running() {
                return;
            }
            let first_poll = match &world.net.pump_waker {
                Some(waker) if waker.will_wake(cx.waker()) => false,
                Some(_) => {
                    world.net.pump_waker = Some(cx.waker().clone());
                    false
                }
                None => {
                    world.net.pump_waker = Some(cx.waker().clone());
                    true
                }
            };
            if first_poll {
                arm_everything_in_flight(world);
            }
            state::deliver_due(world);
        });
        Poll::Pending
    }
}

fn arm_everything_in_flight(world: &World) {
    let mut last = None;
    for &(deliver_at, _) in world.net.in_flight.keys() {
        if last != Some(deliver_at) {
            arm(world, deliver_at);
            last = Some(deliver_at);
        }
    }
}
