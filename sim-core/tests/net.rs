//! The simulated network: every fault shown on and off, RPC timeouts, crash effects,
//! encoding, and determinism of network workloads.
//!
//! Most tests script two or three *peers* (nodes that log every `u32` they receive on port
//! [`PORT`] and send the values of a script at given times) and switch faults from the
//! supervisor at fixed simulated times, with fixed latencies where timing matters.
#![cfg(madsim)]

use sim_core::net::{
    Addr, DropReason, LinkConfig, LinkOverride, NetError, NetEvent, RpcError, Socket,
};
use sim_core::trace::Event;
use sim_core::{run, time, NodeId, Report, Sim, SimConfig};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PORT: u16 = 7;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A value received by a peer.
#[derive(Clone, Debug, PartialEq)]
struct Got {
    at: NodeId,
    from: NodeId,
    value: u32,
    time_ns: u64,
}

/// One send of a peer's script: wait `after_ms`, then send `value` to node `to`.
#[derive(Clone, Copy, Debug)]
struct Step {
    after_ms: u64,
    to: u32,
    value: u32,
}

fn step(after_ms: u64, to: u32, value: u32) -> Step {
    Step {
        after_ms,
        to,
        value,
    }
}

/// A value sent and what `send` returned.
type SendResult = (u32, Result<(), NetError>);

/// What the peers of a run saw: values received, and the result of every send.
#[derive(Clone, Default)]
struct Logs {
    got: Arc<Mutex<Vec<Got>>>,
    sent: Arc<Mutex<Vec<SendResult>>>,
}

impl Logs {
    fn values_at(&self, node: u32) -> Vec<u32> {
        let got = self.got.lock().unwrap();
        got.iter()
            .filter(|g| g.at == NodeId(node))
            .map(|g| g.value)
            .collect()
    }
    fn received_at(&self, node: u32) -> Vec<Got> {
        let got = self.got.lock().unwrap();
        got.iter()
            .filter(|g| g.at == NodeId(node))
            .cloned()
            .collect()
    }
    fn sends(&self) -> Vec<SendResult> {
        self.sent.lock().unwrap().clone()
    }
}

/// Adds a peer: it binds [`PORT`] (ordered or not), logs what it receives, runs `script`.
fn peer(sim: &Sim, name: &str, logs: &Logs, script: Vec<Step>, ordered: bool) -> NodeId {
    let logs = logs.clone();
    sim.node(name)
        .init(move || {
            let logs = logs.clone();
            let script = script.clone();
            async move {
                let socket = Rc::new(Socket::bind(PORT).expect("port is free"));
                socket.set_ordered(ordered).unwrap();
                let receiver = socket.clone();
                let got = logs.got.clone();
                sim_core::task::spawn(async move {
                    while let Ok((from, value)) = receiver.recv::<u32>().await {
                        got.lock().unwrap().push(Got {
                            at: receiver.local_addr().node,
                            from: from.node,
                            value,
                            time_ns: time::now().as_nanos(),
                        });
                    }
                });
                for step in script {
                    if step.after_ms > 0 {
                        time::sleep(ms(step.after_ms)).await;
                    }
                    let to = Addr::new(NodeId(step.to), PORT);
                    let result = socket.send(to, &step.value);
                    logs.sent.lock().unwrap().push((step.value, result));
                }
                std::future::pending::<()>().await;
            }
        })
        .build()
}

fn config(link: LinkConfig) -> SimConfig {
    let mut config = SimConfig::default();
    config.net.link = link;
    config.trace.keep = true;
    config
}

fn fixed_latency(latency_ms: u64) -> LinkConfig {
    LinkConfig::default().with_latency(ms(latency_ms), ms(latency_ms))
}

fn net_events(report: &Report) -> Vec<NetEvent> {
    let timeline = report.timeline.as_ref().expect("trace.keep is on");
    timeline
        .events
        .iter()
        .filter_map(|event| match &event.event {
            Event::Net(net) => Some(net.clone()),
            _ => None,
        })
        .collect()
}

fn drops(report: &Report, reason: DropReason) -> usize {
    net_events(report)
        .iter()
        .filter(|event| matches!(event, NetEvent::Drop { reason: r, .. } if *r == reason))
        .count()
}

/// When the messages dropped for `reason` were dropped, in milliseconds.
fn drop_times_ms(report: &Report, reason: DropReason) -> Vec<u64> {
    let timeline = report.timeline.as_ref().expect("trace.keep is on");
    let dropped = |event: &Event| matches!(event, Event::Net(NetEvent::Drop { reason: r, .. }) if *r == reason);
    (timeline.events.iter())
        .filter(|event| dropped(&event.event))
        .map(|event| event.time_ns / 1_000_000)
        .collect()
}

fn assert_pass(report: &Report) {
    assert!(report.outcome.is_pass(), "{}", report.outcome);
}

fn sorted(mut values: Vec<u32>) -> Vec<u32> {
    values.sort_unstable();
    values
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Cut {
    Off,
    Both,
    OneWay,
}

/// Nodes a (n0) and b (n1) exchange values over a 5 ms link: 1 and 2 at 10 ms (in flight
/// when the cut comes at 12 ms), 3 and 4 at 20 ms (during the cut), 5 and 6 at 40 ms (after
/// everything healed at 30 ms).
fn exchange_across_a_cut(cut: Cut) -> (Logs, Report) {
    let logs = Logs::default();
    let l = logs.clone();
    let report = run(1, config(fixed_latency(5)), move |sim| async move {
        let a = peer(
            &sim,
            "a",
            &l,
            vec![step(10, 1, 1), step(10, 1, 3), step(20, 1, 5)],
            false,
        );
        let b = peer(
            &sim,
            "b",
            &l,
            vec![step(10, 0, 2), step(10, 0, 4), step(20, 0, 6)],
            false,
        );
        sim.sleep(ms(12)).await;
        let net = sim.net();
        match cut {
            Cut::Off => {}
            Cut::Both => net.partition(&[a], &[b]).unwrap(),
            Cut::OneWay => net.partition_one_way(&[a], &[b]).unwrap(),
        }
        sim.sleep(ms(18)).await;
        net.heal_all();
        sim.sleep(ms(30)).await;
        Ok(())
    });
    assert_pass(&report);
    (logs, report)
}

#[test]
fn partition_blocks_both_directions_including_messages_in_flight() {
    let (logs, report) = exchange_across_a_cut(Cut::Both);
    assert_eq!(logs.values_at(1), vec![5], "a to b: only after the heal");
    assert_eq!(logs.values_at(0), vec![6], "b to a: only after the heal");
    assert_eq!(drops(&report, DropReason::Partition), 4);

    let (logs, report) = exchange_across_a_cut(Cut::Off);
    assert_eq!(logs.values_at(1), vec![1, 3, 5]);
    assert_eq!(logs.values_at(0), vec![2, 4, 6]);
    assert_eq!(drops(&report, DropReason::Partition), 0);
}

#[test]
fn one_way_partition_blocks_one_direction_only() {
    let (logs, report) = exchange_across_a_cut(Cut::OneWay);
    assert_eq!(logs.values_at(1), vec![5], "a to b is cut, in flight too");
    assert_eq!(logs.values_at(0), vec![2, 4, 6], "b to a still flows");
    assert_eq!(drops(&report, DropReason::Partition), 2);
    let events = net_events(&report);
    assert!(events.contains(&NetEvent::Partition {
        from: vec![NodeId(0)],
        to: vec![NodeId(1)],
        one_way: true
    }));
}

/// Cuts a from {b, c} at 5 ms; with `heal`, heals a-b at 10 ms and everything at 30 ms.
/// a sends 1 to b and 2 to c at 20 ms, 3 to b and 4 to c at 40 ms.
fn partial_heal(heal: bool) -> Logs {
    let logs = Logs::default();
    let l = logs.clone();
    let script = vec![step(20, 1, 1), step(0, 2, 2), step(20, 1, 3), step(0, 2, 4)];
    let report = run(2, config(fixed_latency(3)), move |sim| async move {
        let a = peer(&sim, "a", &l, script, false);
        let b = peer(&sim, "b", &l, vec![], false);
        let c = peer(&sim, "c", &l, vec![], false);
        let net = sim.net();
        sim.sleep(ms(5)).await;
        net.partition(&[a], &[b, c]).unwrap();
        sim.sleep(ms(5)).await;
        if heal {
            net.heal(&[a], &[b]).unwrap();
            assert!(!net.is_cut(a, b) && !net.is_cut(b, a));
            assert!(net.is_cut(a, c) && net.is_cut(c, a));
        }
        sim.sleep(ms(20)).await;
        if heal {
            net.heal_all();
        }
        sim.sleep(ms(30)).await;
        Ok(())
    });
    assert_pass(&report);
    logs
}

#[test]
fn heal_restores_only_the_healed_links_then_heal_all_restores_every_link() {
    let logs = partial_heal(true);
    assert_eq!(logs.values_at(1), vec![1, 3], "a-b healed at 10 ms");
    assert_eq!(logs.values_at(2), vec![4], "a-c healed only at 30 ms");

    let logs = partial_heal(false);
    assert_eq!(logs.values_at(1), Vec::<u32>::new(), "no heal: still cut");
    assert_eq!(logs.values_at(2), Vec::<u32>::new());
}

/// a sends `count` values to b at 10 ms over a 20 ms link with `loss`; with `loss_later`,
/// the supervisor sets that loss on the default link at 15 ms, while they are in flight.
fn lossy_run(loss: f64, loss_later: Option<f64>, count: u32) -> (Logs, Report) {
    let logs = Logs::default();
    let l = logs.clone();
    let script: Vec<Step> = (0..count)
        .map(|value| step(if value == 0 { 10 } else { 0 }, 1, value))
        .collect();
    let link = fixed_latency(20).with_loss(loss);
    let report = run(3, config(link), move |sim| async move {
        peer(&sim, "a", &l, script, false);
        peer(&sim, "b", &l, vec![], false);
        sim.sleep(ms(15)).await;
        if let Some(loss) = loss_later {
            sim.net().set_default(link.with_loss(loss)).unwrap();
        }
        sim.sleep(ms(50)).await;
        Ok(())
    });
    assert_pass(&report);
    (logs, report)
}

#[test]
fn loss_drops_a_share_of_messages_and_applies_to_messages_in_flight() {
    let (logs, report) = lossy_run(0.3, None, 300);
    let received = logs.values_at(1).len();
    assert!(
        (170..=250).contains(&received),
        "received {received} of 300"
    );
    assert_eq!(drops(&report, DropReason::Loss), 300 - received);

    // Switched on while the messages are in flight: they are all lost.
    let (logs, report) = lossy_run(0.0, Some(1.0), 50);
    assert!(logs.values_at(1).is_empty());
    assert_eq!(drops(&report, DropReason::Loss), 50);

    let (logs, report) = lossy_run(0.0, None, 300);
    assert_eq!(logs.values_at(1).len(), 300);
    assert_eq!(drops(&report, DropReason::Loss), 0);
}

fn duplicating_run(duplicate: f64) -> (Logs, Report) {
    let logs = Logs::default();
    let l = logs.clone();
    let script: Vec<Step> = (0..50).map(|value| step(1, 1, value)).collect();
    let link = LinkConfig::default().with_duplicate(duplicate);
    let report = run(4, config(link), move |sim| async move {
        peer(&sim, "a", &l, script, false);
        peer(&sim, "b", &l, vec![], false);
        sim.sleep(ms(200)).await;
        Ok(())
    });
    assert_pass(&report);
    (logs, report)
}

#[test]
fn duplicate_delivers_messages_twice_and_never_copies_a_copy() {
    let (logs, report) = duplicating_run(1.0);
    let twice: Vec<u32> = (0..50).flat_map(|v| [v, v]).collect();
    assert_eq!(sorted(logs.values_at(1)), twice);
    let duplicates = net_events(&report)
        .iter()
        .filter(|event| matches!(event, NetEvent::Duplicate { .. }))
        .count();
    assert_eq!(duplicates, 50);

    let (logs, _) = duplicating_run(0.0);
    assert_eq!(sorted(logs.values_at(1)), (0..50).collect::<Vec<u32>>());
}

/// a sends 0..100 to b at the same instant.
fn burst(link: LinkConfig, ordering: Ordering) -> Logs {
    let logs = Logs::default();
    let l = logs.clone();
    let script: Vec<Step> = (0..100)
        .map(|value| step(if value == 0 { 5 } else { 0 }, 1, value))
        .collect();
    let report = run(5, config(link), move |sim| async move {
        let a = peer(&sim, "a", &l, script, ordering == Ordering::Socket);
        let b = peer(&sim, "b", &l, vec![], false);
        if ordering == Ordering::Link {
            sim.net().set_link(a, b, link.with_ordered(true)).unwrap();
        }
        sim.sleep(ms(100)).await;
        Ok(())
    });
    assert_pass(&report);
    logs
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Ordering {
    Datagram,
    Socket,
    Link,
}

#[test]
fn reorder_comes_from_latency_jitter() {
    let jitter = LinkConfig::default().with_latency(ms(1), ms(10));
    let logs = burst(jitter, Ordering::Datagram);
    let values = logs.values_at(1);
    assert_eq!(sorted(values.clone()), (0..100).collect::<Vec<u32>>());
    assert_ne!(
        values,
        sorted(values.clone()),
        "jitter must reorder a burst"
    );

    // No jitter, no reordering.
    let logs = burst(fixed_latency(5), Ordering::Datagram);
    assert_eq!(logs.values_at(1), (0..100).collect::<Vec<u32>>());
}

#[test]
fn ordered_socket_or_link_never_reorders_despite_jitter() {
    let jitter = LinkConfig::default().with_latency(ms(1), ms(10));
    for ordering in [Ordering::Socket, Ordering::Link] {
        let logs = burst(jitter, ordering);
        assert_eq!(
            logs.values_at(1),
            (0..100).collect::<Vec<u32>>(),
            "{ordering:?}"
        );
    }
    let logs = burst(jitter, Ordering::Datagram);
    assert_ne!(logs.values_at(1), (0..100).collect::<Vec<u32>>());

    // TCP-like: ordered messages are neither lost nor duplicated by the link's settings.
    let lossy = jitter.with_loss(0.5).with_duplicate(0.5);
    let logs = burst(lossy, Ordering::Socket);
    assert_eq!(logs.values_at(1), (0..100).collect::<Vec<u32>>());
    let logs = burst(lossy, Ordering::Datagram);
    assert!(logs.values_at(1).len() < 90, "datagrams are lost");
}

/// An ordered a sends 1 at 10 ms (in flight at the cut), 2 at 20 ms and 3 at 40 ms over a
/// 5 ms link to b; the link a-b is cut at 12 ms and healed at `heal_ms`.
fn ordered_across_a_cut(cut: bool, heal_ms: u64) -> Logs {
    let logs = Logs::default();
    let l = logs.clone();
    let script = vec![step(10, 1, 1), step(10, 1, 2), step(20, 1, 3)];
    let report = run(6, config(fixed_latency(5)), move |sim| async move {
        let a = peer(&sim, "a", &l, script, true);
        let b = peer(&sim, "b", &l, vec![], false);
        sim.sleep(ms(12)).await;
        if cut {
            sim.net().partition(&[a], &[b]).unwrap();
        }
        sim.sleep(ms(heal_ms - 12)).await;
        sim.net().heal_all();
        sim.sleep(ms(60)).await;
        Ok(())
    });
    assert_pass(&report);
    logs
}

#[test]
fn ordered_connection_breaks_on_partition_and_the_sender_learns() {
    let broken = Err(NetError::ConnectionBroken { peer: NodeId(1) });
    // Cut until 30 ms: the send at 20 ms fails, the one after the heal reconnects.
    let logs = ordered_across_a_cut(true, 30);
    assert_eq!(logs.values_at(1), vec![3], "1 was in flight and lost");
    assert_eq!(
        logs.sends(),
        vec![(1, Ok(())), (2, broken.clone()), (3, Ok(()))]
    );

    // Cut and healed before a sends again: it still learns that the connection broke, once.
    let logs = ordered_across_a_cut(true, 13);
    assert_eq!(logs.values_at(1), vec![3]);
    assert_eq!(logs.sends(), vec![(1, Ok(())), (2, broken), (3, Ok(()))]);

    let logs = ordered_across_a_cut(false, 30);
    assert_eq!(logs.values_at(1), vec![1, 2, 3]);
    assert!(logs.sends().iter().all(|(_, result)| result.is_ok()));
}

/// Steps that send `values` to node `to` all at once, `start_ms` after the previous step.
fn burst_from(start_ms: u64, to: u32, values: std::ops::Range<u32>) -> Vec<Step> {
    let first = values.start;
    values
        .map(|value| step(if value == first { start_ms } else { 0 }, to, value))
        .collect()
}

/// With `hold_capacity` 2 and a 5 ms link held from 5 ms to 20 ms: an ordered a sends 0, 1
/// and 2 at 10 ms (2 overflows the hold when `capacity` is 2), 4 at 30 ms and 5 at 31 ms.
fn ordered_hold_run(capacity: usize) -> (Logs, Report) {
    let logs = Logs::default();
    let l = logs.clone();
    let mut script = burst_from(10, 1, 0..3);
    script.extend([step(20, 1, 4), step(1, 1, 5)]);
    let mut config = config(fixed_latency(5));
    config.net.hold_capacity = capacity;
    let report = run(17, config, move |sim| async move {
        let a = peer(&sim, "a", &l, script, true);
        let b = peer(&sim, "b", &l, vec![], false);
        sim.sleep(ms(5)).await;
        sim.net().hold(a, b).unwrap();
        sim.sleep(ms(15)).await;
        sim.net().release(a, b).unwrap();
        sim.sleep(ms(40)).await;
        Ok(())
    });
    assert_pass(&report);
    (logs, report)
}

#[test]
fn ordered_hold_overflow_breaks_the_connection_and_the_receiver_sees_no_gap() {
    let broken = Err(NetError::ConnectionBroken { peer: NodeId(1) });
    let (logs, report) = ordered_hold_run(2);
    // 0 and 1 were sent before the overflow and still arrive; 2 is lost, so the connection
    // broke: a learns it at its next send (4), and 5 opens a new connection.
    assert_eq!(logs.values_at(1), vec![0, 1, 5]);
    assert_eq!(
        logs.sends(),
        vec![
            (0, Ok(())),
            (1, Ok(())),
            (2, Ok(())),
            (4, broken),
            (5, Ok(()))
        ]
    );
    assert_eq!(drops(&report, DropReason::HoldFull), 1);
    assert_eq!(
        drops(&report, DropReason::ConnectionBroken),
        1,
        "the refused 4"
    );

    // Room for all three: nothing is lost, nothing breaks.
    let (logs, report) = ordered_hold_run(3);
    assert_eq!(logs.values_at(1), vec![0, 1, 2, 4, 5]);
    assert!(logs.sends().iter().all(|(_, result)| result.is_ok()));
    assert_eq!(drops(&report, DropReason::HoldFull), 0);
    assert_eq!(drops(&report, DropReason::ConnectionBroken), 0);
}

/// With `in_flight_max` `limit`: an ordered a sends 0, 1 and 2 to b at 10 ms over a 5 ms
/// link, 3 at 20 ms and 4 at 21 ms.
fn ordered_in_flight_run(limit: usize) -> (Logs, Report) {
    let logs = Logs::default();
    let l = logs.clone();
    let mut script = burst_from(10, 1, 0..3);
    script.extend([step(10, 1, 3), step(1, 1, 4)]);
    let mut config = config(fixed_latency(5));
    config.net.in_flight_max = limit;
    let report = run(18, config, move |sim| async move {
        peer(&sim, "a", &l, script, true);
        peer(&sim, "b", &l, vec![], false);
        sim.sleep(ms(40)).await;
        Ok(())
    });
    assert_pass(&report);
    (logs, report)
}

#[test]
fn ordered_in_flight_overflow_breaks_the_connection() {
    let broken = Err(NetError::ConnectionBroken { peer: NodeId(1) });
    // 2 does not fit in the network: 0 and 1, sent before it, still arrive; a learns at 3.
    let (logs, report) = ordered_in_flight_run(2);
    assert_eq!(logs.values_at(1), vec![0, 1, 4]);
    assert_eq!(logs.sends()[2], (2, Ok(())));
    assert_eq!(logs.sends()[3], (3, broken));
    assert_eq!(drops(&report, DropReason::InFlightFull), 1);

    let (logs, report) = ordered_in_flight_run(1_000);
    assert_eq!(logs.values_at(1), vec![0, 1, 2, 3, 4]);
    assert!(logs.sends().iter().all(|(_, result)| result.is_ok()));
    assert_eq!(drops(&report, DropReason::InFlightFull), 0);
}

/// With an inbox of 2: b is paused from 5 ms to `resume_ms`; an ordered a sends 0..5 to b,
/// 2 ms apart from 10 ms over a 5 ms link (arriving at 15, 17, 19, 21 and 23 ms), then 5
/// at 30 ms and 6 at 32 ms.
fn ordered_inbox_run(resume_ms: u64) -> (Logs, Report) {
    let logs = Logs::default();
    let l = logs.clone();
    let mut script: Vec<Step> = (0..5)
        .map(|value| step(if value == 0 { 10 } else { 2 }, 1, value))
        .collect();
    script.extend([step(12, 1, 5), step(2, 1, 6)]);
    let mut config = config(fixed_latency(5));
    config.net.inbox_capacity = 2;
    let report = run(19, config, move |sim| async move {
        peer(&sim, "a", &l, script, true);
        let b = peer(&sim, "b", &l, vec![], false);
        sim.sleep(ms(5)).await;
        sim.pause(b);
        sim.sleep(ms(resume_ms - 5)).await;
        sim.resume(b);
        sim.sleep(ms(40)).await;
        Ok(())
    });
    assert_pass(&report);
    (logs, report)
}

#[test]
fn ordered_inbox_full_drops_the_rest_of_the_connection_in_flight_and_the_sender_learns() {
    let broken = Err(NetError::ConnectionBroken { peer: NodeId(1) });
    // 2 finds the inbox full at 19 ms; b reads 0 and 1 at 20 ms, so 3 and 4 would fit, but
    // they come after a lost message: they are dropped, never delivered after a gap.
    let (logs, report) = ordered_inbox_run(20);
    assert_eq!(logs.values_at(1), vec![0, 1, 6]);
    assert_eq!(logs.sends()[5], (5, broken));
    assert_eq!(logs.sends()[6], (6, Ok(())));
    assert_eq!(drops(&report, DropReason::InboxFull), 1);
    // 3 and 4 in flight, and the refused send of 5.
    assert_eq!(drops(&report, DropReason::ConnectionBroken), 3);

    // b resumes before 2 arrives: nothing is lost.
    let (logs, report) = ordered_inbox_run(18);
    assert_eq!(logs.values_at(1), (0..7).collect::<Vec<u32>>());
    assert_eq!(drops(&report, DropReason::ConnectionBroken), 0);
}

/// An ordered a sends 0, 1 and 2 to b's port, 2 ms apart from 10 ms over a 5 ms link
/// (arriving at 15, 17 and 19 ms), then 3 at 25 ms and 4 at 27 ms; b binds the port at
/// `bind_ms`.
fn ordered_no_socket_run(bind_ms: u64) -> (Logs, Report) {
    let logs = Logs::default();
    let l = logs.clone();
    let script = vec![
        step(10, 1, 0),
        step(2, 1, 1),
        step(2, 1, 2),
        step(11, 1, 3),
        step(2, 1, 4),
    ];
    let report = run(20, config(fixed_latency(5)), move |sim| async move {
        peer(&sim, "a", &l, script, true);
        let got = l.got.clone();
        sim.node("b")
            .init(move || {
                let got = got.clone();
                async move {
                    time::sleep(ms(bind_ms)).await;
                    let socket = Socket::bind(PORT).unwrap();
                    while let Ok((from, value)) = socket.recv::<u32>().await {
                        got.lock().unwrap().push(Got {
                            at: NodeId(1),
                            from: from.node,
                            value,
                            time_ns: time::now().as_nanos(),
                        });
                    }
                }
            })
            .build();
        sim.sleep(ms(40)).await;
        Ok(())
    });
    assert_pass(&report);
    (logs, report)
}

#[test]
fn ordered_no_socket_drops_the_rest_of_the_connection_in_flight_and_the_sender_learns() {
    let broken = Err(NetError::ConnectionBroken { peer: NodeId(1) });
    // 0 finds no socket at 15 ms; 1 and 2, still in flight, must not arrive after that gap.
    let (logs, report) = ordered_no_socket_run(16);
    assert_eq!(logs.values_at(1), vec![4]);
    assert_eq!(logs.sends()[3], (3, broken));
    assert_eq!(drops(&report, DropReason::NoSocket), 1);
    assert_eq!(drops(&report, DropReason::ConnectionBroken), 3);

    let (logs, report) = ordered_no_socket_run(5);
    assert_eq!(logs.values_at(1), vec![0, 1, 2, 3, 4]);
    assert_eq!(drops(&report, DropReason::NoSocket), 0);
}

/// Which node of an ordered connection crashes, and when.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Crashes {
    /// The sender, at 12 ms, with its messages in flight.
    SenderInFlight,
    /// The sender, at 12 ms, with its messages held on the link (from 5 to 13 ms).
    SenderHeld,
    /// The receiver, at 11 ms, restarted at 12 ms.
    Receiver,
}

/// An ordered a sends 1 and 2 to b at 10 ms over a 5 ms link, then 3 at 13 ms and 4 at
/// 14 ms (when it is still up), while `crashes` happens.
fn ordered_crash_run(crashes: Crashes) -> (Logs, Report) {
    let logs = Logs::default();
    let l = logs.clone();
    let script = vec![step(10, 1, 1), step(0, 1, 2), step(3, 1, 3), step(1, 1, 4)];
    let report = run(21, config(fixed_latency(5)), move |sim| async move {
        let a = peer(&sim, "a", &l, script, true);
        let b = peer(&sim, "b", &l, vec![], false);
        let net = sim.net();
        sim.sleep(ms(5)).await;
        if crashes == Crashes::SenderHeld {
            net.hold(a, b).unwrap();
        }
        sim.sleep(ms(6)).await;
        if crashes == Crashes::Receiver {
            sim.crash(b);
        }
        sim.sleep(ms(1)).await;
        match crashes {
            Crashes::Receiver => sim.restart(b),
            Crashes::SenderInFlight | Crashes::SenderHeld => sim.crash(a),
        }
        sim.sleep(ms(1)).await;
        net.release(a, b).unwrap();
        sim.sleep(ms(30)).await;
        Ok(())
    });
    assert_pass(&report);
    (logs, report)
}

#[test]
fn ordered_crash_loses_messages_in_flight_and_stale_ones_never_break_the_next_connection() {
    // The sender crashed: its connection broke and what it had in flight or held is lost,
    // on arrival (15 ms) or at the release (13 ms), never put back in flight.
    for (crashes, at_ms) in [(Crashes::SenderInFlight, 15), (Crashes::SenderHeld, 13)] {
        let (logs, report) = ordered_crash_run(crashes);
        assert_eq!(logs.values_at(1), Vec::<u32>::new(), "{crashes:?}");
        let dropped = drop_times_ms(&report, DropReason::ConnectionBroken);
        assert_eq!(dropped, vec![at_ms, at_ms], "{crashes:?}");
    }

    // The receiver crashed: a learns it once (3), and its new connection (4) is not broken
    // by 1 and 2 arriving too late for the old b.
    let broken = Err(NetError::ConnectionBroken { peer: NodeId(1) });
    let (logs, report) = ordered_crash_run(Crashes::Receiver);
    assert_eq!(logs.values_at(1), vec![4]);
    assert_eq!(
        logs.sends(),
        vec![(1, Ok(())), (2, Ok(())), (3, broken), (4, Ok(()))]
    );
    assert_eq!(drops(&report, DropReason::ConnectionBroken), 3);
}

/// With `hold_capacity` 5 and latencies of 10 to 20 ms: a sends 100 at 3 ms (in flight when
/// the link is held at 5 ms), then 0..10 at 10 ms; the link is released at 50 ms.
fn held_run(hold: bool) -> (Logs, Report) {
    let logs = Logs::default();
    let l = logs.clone();
    let mut script = vec![step(3, 1, 100)];
    script.extend((0..10).map(|value| step(if value == 0 { 7 } else { 0 }, 1, value)));
    let mut config = config(LinkConfig::default().with_latency(ms(10), ms(20)));
    config.net.hold_capacity = 5;
    let report = run(7, config, move |sim| async move {
        let a = peer(&sim, "a", &l, script, false);
        let b = peer(&sim, "b", &l, vec![], false);
        let net = sim.net();
        sim.sleep(ms(5)).await;
        if hold {
            net.hold(a, b).unwrap();
        }
        sim.sleep(ms(35)).await;
        if hold {
            assert!(net.is_held(a, b));
            assert_eq!(net.stats().held, 5);
        }
        sim.sleep(ms(10)).await;
        net.release(a, b).unwrap();
        sim.sleep(ms(50)).await;
        Ok(())
    });
    assert_pass(&report);
    (logs, report)
}

#[test]
fn hold_queues_up_to_its_bound_then_release_delivers_in_order() {
    let (logs, report) = held_run(true);
    assert_eq!(logs.values_at(1), vec![100, 0, 1, 2, 3], "in send order");
    assert!(logs
        .received_at(1)
        .iter()
        .all(|got| got.time_ns >= 50_000_000));
    assert_eq!(drops(&report, DropReason::HoldFull), 6);
    let events = net_events(&report);
    assert!(events.contains(&NetEvent::Release {
        from: NodeId(0),
        to: NodeId(1),
        count: 5
    }));

    let (logs, report) = held_run(false);
    let mut all: Vec<u32> = (0..10).collect();
    all.push(100);
    assert_eq!(sorted(logs.values_at(1)), all);
    assert_eq!(drops(&report, DropReason::HoldFull), 0);
}

#[test]
fn latency_change_applies_to_messages_in_flight() {
    let arrival = |change: bool| {
        let logs = Logs::default();
        let l = logs.clone();
        let report = run(8, config(fixed_latency(100)), move |sim| async move {
            let a = peer(&sim, "a", &l, vec![step(1, 1, 9)], false);
            let b = peer(&sim, "b", &l, vec![], false);
            sim.sleep(ms(10)).await;
            if change {
                sim.net().set_link(a, b, fixed_latency(5)).unwrap();
            }
            sim.sleep(ms(200)).await;
            Ok(())
        });
        assert_pass(&report);
        let got = logs.received_at(1);
        assert_eq!(got.len(), 1);
        got[0].time_ns
    };
    // Sent at 1 ms; the new 5 ms latency is already over at 10 ms, so it arrives 1 ms later.
    let changed = arrival(true);
    assert!((11_000_000..12_000_000).contains(&changed), "{changed}");
    let unchanged = arrival(false);
    assert!(
        (101_000_000..102_000_000).contains(&unchanged),
        "{unchanged}"
    );
}

/// a and b send each other one value at 1 ms over 5 ms links, except a to b takes 50 ms
/// when `override_link`; returns the arrival times at b and at a, and the latencies that
/// `NetControl::link` reports for both directions.
fn override_run(override_link: bool) -> (u64, u64, u64, u64) {
    let logs = Logs::default();
    let l = logs.clone();
    let mut config = config(fixed_latency(5));
    if override_link {
        config.net.links.push(LinkOverride {
            from: NodeId(0),
            to: NodeId(1),
            link: fixed_latency(50),
        });
    }
    let latencies = Arc::new(Mutex::new((0, 0)));
    let seen = latencies.clone();
    let report = run(16, config, move |sim| async move {
        let a = peer(&sim, "a", &l, vec![step(1, 1, 1)], false);
        let b = peer(&sim, "b", &l, vec![step(1, 0, 2)], false);
        let net = sim.net();
        *seen.lock().unwrap() = (
            net.link(a, b).unwrap().latency_min_us,
            net.link(b, a).unwrap().latency_min_us,
        );
        sim.sleep(ms(100)).await;
        Ok(())
    });
    assert_pass(&report);
    let (a_to_b, b_to_a) = *latencies.lock().unwrap();
    let at_b = logs.received_at(1)[0].time_ns;
    let at_a = logs.received_at(0)[0].time_ns;
    (at_b, at_a, a_to_b, b_to_a)
}

#[test]
fn per_link_override_from_the_config_sets_that_link_only() {
    let (at_b, at_a, a_to_b, b_to_a) = override_run(true);
    assert_eq!((a_to_b, b_to_a), (50_000, 5_000));
    assert!((51_000_000..52_000_000).contains(&at_b), "{at_b}");
    assert!((6_000_000..7_000_000).contains(&at_a), "{at_a}");

    let (at_b, at_a, a_to_b, b_to_a) = override_run(false);
    assert_eq!((a_to_b, b_to_a), (5_000, 5_000));
    assert!((6_000_000..7_000_000).contains(&at_b), "{at_b}");
    assert!((6_000_000..7_000_000).contains(&at_a), "{at_a}");
}

/// A server answers `u32` requests with the double after `delay_ms`; a client calls it
/// with a 50 ms timeout at 10 ms and records the result and its pending calls, at once and
/// after the late response would have come.
fn rpc_run(delay_ms: u64) -> (Vec<String>, Report) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let report = run(9, config(fixed_latency(2)), move |sim| async move {
        let server = sim
            .node("server")
            .init(move || async move {
                let socket = Socket::bind(80).unwrap();
                socket
                    .serve(|_from, n: u32| async move {
                        time::sleep(ms(delay_ms)).await;
                        n * 2
                    })
                    .await;
            })
            .build();
        sim.node("client")
            .init(move || {
                let seen = s.clone();
                async move {
                    let socket = Socket::bind(0).unwrap();
                    time::sleep(ms(10)).await;
                    let to = Addr::new(server, 80);
                    let result: Result<u32, RpcError> = socket.call(to, &21u32, ms(50)).await;
                    let pending = socket.pending_calls().unwrap();
                    seen.lock().unwrap().push(format!("{result:?}"));
                    seen.lock().unwrap().push(format!("pending {pending}"));
                    time::sleep(ms(200)).await;
                    let queued = socket.queued().unwrap();
                    let pending = socket.pending_calls().unwrap();
                    seen.lock()
                        .unwrap()
                        .push(format!("later pending {pending} queued {queued}"));
                }
            })
            .build();
        sim.sleep(ms(400)).await;
        Ok(())
    });
    assert_pass(&report);
    let seen = seen.lock().unwrap().clone();
    (seen, report)
}

#[test]
fn rpc_timeout_when_the_response_is_late_and_the_late_reply_is_freed() {
    let (seen, report) = rpc_run(100);
    assert!(seen[0].starts_with("Err(Timeout"), "{seen:?}");
    assert_eq!(seen[1], "pending 0");
    assert_eq!(seen[2], "later pending 0 queued 0");
    assert_eq!(drops(&report, DropReason::LateReply), 1);

    let (seen, report) = rpc_run(0);
    assert_eq!(seen[0], "Ok(42)");
    assert_eq!(seen[1], "pending 0");
    assert_eq!(drops(&report, DropReason::LateReply), 0);
}

#[test]
fn rpc_concurrent_calls_get_their_own_responses() {
    let results = Arc::new(Mutex::new(Vec::new()));
    let r = results.clone();
    let report = run(10, SimConfig::default(), move |sim| async move {
        let server = sim
            .node("server")
            .init(|| async {
                let socket = Rc::new(Socket::bind(80).unwrap());
                loop {
                    let (request, n) = socket.recv_request::<u32>().await.unwrap();
                    let socket = socket.clone();
                    // Answer out of order: later requests first.
                    sim_core::task::spawn(async move {
                        time::sleep(ms(100 - u64::from(n))).await;
                        socket.reply(request, &(n * 10)).unwrap();
                    });
                }
            })
            .build();
        sim.node("client")
            .init(move || {
                let results = r.clone();
                async move {
                    let socket = Socket::bind(0).unwrap();
                    let to = Addr::new(server, 80);
                    let calls = (0..20u32).map(|n| {
                        let socket = &socket;
                        async move { socket.call::<u32, u32>(to, &n, ms(500)).await }
                    });
                    let answers = futures::future::join_all(calls).await;
                    *results.lock().unwrap() = answers;
                }
            })
            .build();
        sim.sleep(ms(1_000)).await;
        Ok(())
    });
    assert_pass(&report);
    let expected: Vec<Result<u32, RpcError>> = (0..20).map(|n| Ok(n * 10)).collect();
    assert_eq!(*results.lock().unwrap(), expected);
}

/// b is paused at 5 ms; a sends 1..=5 at 10 ms (queued in b's inbox at 15 ms). With `crash`,
/// b crashes at 20 ms, a sends 6 at 21 ms (to the crashed incarnation) and b restarts at
/// 22 ms; without, b resumes at 20 ms. a sends 7 at 30 ms.
fn crash_run(crash: bool) -> (Logs, Report) {
    let logs = Logs::default();
    let l = logs.clone();
    let mut script: Vec<Step> = (1..=5)
        .map(|value| step(if value == 1 { 10 } else { 0 }, 1, value))
        .collect();
    script.push(step(11, 1, 6));
    script.push(step(9, 1, 7));
    let report = run(11, config(fixed_latency(5)), move |sim| async move {
        peer(&sim, "a", &l, script, false);
        let b = peer(&sim, "b", &l, vec![], false);
        sim.sleep(ms(5)).await;
        sim.pause(b);
        sim.sleep(ms(15)).await;
        if crash {
            sim.crash(b);
            sim.sleep(ms(2)).await;
            sim.restart(b);
        } else {
            sim.resume(b);
        }
        sim.sleep(ms(30)).await;
        Ok(())
    });
    assert_pass(&report);
    (logs, report)
}

#[test]
fn crash_drops_queued_messages_and_messages_to_the_old_incarnation() {
    let (logs, report) = crash_run(true);
    assert_eq!(logs.values_at(1), vec![7]);
    assert_eq!(drops(&report, DropReason::Crash), 5);
    assert_eq!(drops(&report, DropReason::StaleIncarnation), 1);

    let (logs, report) = crash_run(false);
    assert_eq!(logs.values_at(1), vec![1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(drops(&report, DropReason::Crash), 0);
}

/// With an inbox of 3, a sends 0..10 to b, 1 ms apart; b is paused meanwhile if `pause`.
fn inbox_run(pause: bool) -> (Logs, Report) {
    let logs = Logs::default();
    let l = logs.clone();
    let script: Vec<Step> = (0..10).map(|value| step(1, 1, value)).collect();
    let mut config = config(fixed_latency(5));
    config.net.inbox_capacity = 3;
    let report = run(12, config, move |sim| async move {
        peer(&sim, "a", &l, script, false);
        let b = peer(&sim, "b", &l, vec![], false);
        sim.sleep(ms(1)).await;
        if pause {
            sim.pause(b);
        }
        sim.sleep(ms(50)).await;
        sim.resume(b);
        sim.sleep(ms(10)).await;
        Ok(())
    });
    assert_pass(&report);
    (logs, report)
}

#[test]
fn paused_node_queues_messages_up_to_its_inbox_capacity() {
    let (logs, report) = inbox_run(true);
    assert_eq!(logs.values_at(1), vec![0, 1, 2]);
    assert_eq!(drops(&report, DropReason::InboxFull), 7);

    let (logs, report) = inbox_run(false);
    assert_eq!(logs.values_at(1), (0..10).collect::<Vec<u32>>());
    assert_eq!(drops(&report, DropReason::InboxFull), 0);
}

#[test]
fn a_receiver_takes_many_messages_per_simulated_millisecond() {
    let logs = Logs::default();
    let l = logs.clone();
    let script: Vec<Step> = (0..1_000)
        .map(|value| step(if value == 0 { 1 } else { 0 }, 1, value))
        .collect();
    let report = run(13, config(fixed_latency(5)), move |sim| async move {
        peer(&sim, "a", &l, script, false);
        peer(&sim, "b", &l, vec![], false);
        sim.sleep(ms(50)).await;
        Ok(())
    });
    assert_pass(&report);
    let got = logs.received_at(1);
    assert_eq!(got.len(), 1_000);
    let first = got.iter().map(|g| g.time_ns).min().unwrap();
    let last = got.iter().map(|g| g.time_ns).max().unwrap();
    assert!(
        last - first < 1_000_000,
        "1000 messages took {} ns",
        last - first
    );
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Hello {
    name: String,
    count: u64,
}

#[test]
fn messages_cross_the_wire_encoded_and_the_trace_records_their_size() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let report = run(14, config(fixed_latency(1)), move |sim| async move {
        sim.node("a")
            .init(|| async {
                let socket = Socket::bind(PORT).unwrap();
                let to = Addr::new(NodeId(1), PORT);
                let hello = Hello {
                    name: "hello".into(),
                    count: 300,
                };
                socket.send(to, &hello).unwrap();
                // `()` encodes to nothing: it cannot decode as a number.
                socket.send(to, &()).unwrap();
            })
            .build();
        sim.node("b")
            .init(move || {
                let seen = s.clone();
                async move {
                    let socket = Socket::bind(PORT).unwrap();
                    let first = socket.recv::<Hello>().await;
                    let second = socket.recv::<u64>().await;
                    seen.lock().unwrap().push(format!("{first:?}"));
                    seen.lock().unwrap().push(format!("{second:?}"));
                }
            })
            .build();
        sim.sleep(ms(10)).await;
        Ok(())
    });
    assert_pass(&report);
    let seen = seen.lock().unwrap().clone();
    assert!(seen[0].contains("name: \"hello\", count: 300"), "{seen:?}");
    assert!(seen[1].starts_with("Err(Decode"), "{seen:?}");
    let hello = Hello {
        name: "hello".into(),
        count: 300,
    };
    let size = postcard::to_allocvec(&hello).unwrap().len() as u32;
    let first_send = net_events(&report)
        .into_iter()
        .find_map(|event| match event {
            NetEvent::Send { bytes, .. } => Some(bytes),
            _ => None,
        });
    assert_eq!(first_send, Some(size));
}

#[test]
fn bad_addresses_and_settings_are_clear_errors() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let report = run(15, SimConfig::default(), move |sim| async move {
        assert_eq!(Socket::bind(1).err(), Some(NetError::NotOnNode));
        let a = sim
            .node("a")
            .init(move || {
                let seen = s.clone();
                async move {
                    let _first = Socket::bind(PORT).unwrap();
                    let second = Socket::bind(PORT).err();
                    let socket = Socket::bind(0).unwrap();
                    let unknown = socket.send(Addr::new(NodeId(99), 1), &1u8).err();
                    let mut seen = seen.lock().unwrap();
                    seen.push(second);
                    seen.push(unknown);
                    seen.push(Some(NetError::AddrInUse(socket.local_addr())));
                }
            })
            .build();
        let net = sim.net();
        let bad = LinkConfig::default().with_loss(1.5);
        assert!(matches!(
            net.set_link(a, a, bad),
            Err(NetError::InvalidConfig(_))
        ));
        let too_fast = LinkConfig::default().with_latency(Duration::ZERO, ms(1));
        assert!(matches!(
            net.set_default(too_fast),
            Err(NetError::InvalidConfig(_))
        ));
        assert_eq!(
            net.partition(&[a], &[NodeId(7)]),
            Err(NetError::UnknownNode(NodeId(7)))
        );
        sim.sleep(ms(5)).await;
        Ok(())
    });
    assert_pass(&report);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen[0],
        Some(NetError::AddrInUse(Addr::new(NodeId(0), PORT)))
    );
    assert_eq!(seen[1], Some(NetError::UnknownNode(NodeId(99))));
    assert_eq!(seen[2].as_ref().map(|_| ()), Some(()));

    let mut config = SimConfig::default();
    config.net.link.latency_min_us = 10;
    assert!(config.validate().is_err());
    config.net.link.latency_min_us = 1_000;
    config.net.inbox_capacity = 0;
    assert!(config.validate().is_err());
}

/// Three nodes under every fault at once: a server answering RPCs, two clients calling it
/// and gossiping datagrams, loss and duplication, a partition, a hold, and a crash.
fn network_workload(seed: u64) -> Report {
    let link = LinkConfig::default().with_loss(0.1).with_duplicate(0.1);
    let mut config = SimConfig::default();
    config.net.link = link;
    run(seed, config, |sim| async move {
        let server = sim
            .node("server")
            .init(|| async {
                let socket = Socket::bind(80).unwrap();
                socket.serve(|_, n: u64| async move { n + 1 }).await;
            })
            .build();
        for name in ["c1", "c2"] {
            sim.node(name)
                .init(move || async move {
                    let socket = Rc::new(Socket::bind(PORT).unwrap());
                    let gossip = socket.clone();
                    sim_core::task::spawn(
                        async move { while gossip.recv::<u64>().await.is_ok() {} },
                    );
                    for n in 0..40u64 {
                        let _ = socket
                            .call::<u64, u64>(Addr::new(server, 80), &n, ms(30))
                            .await;
                        let peer = if name == "c1" { 2 } else { 1 };
                        let _ = socket.send(Addr::new(NodeId(peer), PORT), &n);
                        time::sleep(ms(3)).await;
                    }
                })
                .build();
        }
        let net = sim.net();
        sim.sleep(ms(40)).await;
        net.partition(&[server], &[NodeId(1)]).unwrap();
        sim.sleep(ms(40)).await;
        net.heal_all();
        net.hold(NodeId(2), server).unwrap();
        sim.sleep(ms(40)).await;
        net.release(NodeId(2), server).unwrap();
        sim.restart(NodeId(1));
        sim.sleep(ms(600)).await;
        Ok(())
    })
}

#[test]
fn determinism_network_workload_gives_the_same_trace_hash_and_seeds_differ() {
    let first = network_workload(21);
    let second = network_workload(21);
    assert_pass(&first);
    assert!(first.events > 300, "only {} events", first.events);
    assert_eq!(first.trace_hash, second.trace_hash);
    assert_eq!(first.steps, second.steps);
    let hashes: std::collections::BTreeSet<u64> = (0..8)
        .map(|seed| network_workload(seed).trace_hash)
        .collect();
    assert_eq!(hashes.len(), 8);
}
