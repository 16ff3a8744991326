//! Network taps: a checker sees every message event live, with node names and typed
//! payloads, exactly as the trace records them, without changing the trace hash.
#![cfg(madsim)]

use serde::{Deserialize, Serialize};
use sim_core::net::{
    Addr, DropReason, LinkConfig, MessageKind, NetEvent, Socket, TapEvent, Tapped,
};
use sim_core::trace::Event;
use sim_core::{rng, run, time, NodeId, Report, SimConfig};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The request of the RPC test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Put {
    key: String,
    value: u64,
}

/// The response of the RPC test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Ack {
    Stored { version: u64 },
}

/// A compact form of a tap event for assertions: what, message id, from and to node names.
fn shape(event: &TapEvent) -> (Tapped, u64, &str, &str) {
    (event.what, event.id, &*event.from_name, &*event.to_name)
}

#[test]
fn a_tap_sees_a_call_its_delivery_and_its_response_with_typed_payloads() {
    let report = run(1, SimConfig::default(), |sim| async move {
        let tap = sim.net().tap(64);
        let server = sim
            .node("server")
            .init(|| async {
                let socket = Socket::bind(80).expect("port 80 is free");
                socket
                    .serve(|_from, put: Put| async move {
                        Ack::Stored {
                            version: put.value + 1,
                        }
                    })
                    .await;
            })
            .build();
        sim.node("client")
            .init(move || async move {
                let socket = Socket::bind(0).expect("an ephemeral port");
                let put = Put {
                    key: "x".into(),
                    value: 41,
                };
                let ack: Ack = socket
                    .call(Addr::new(server, 80), &put, ms(100))
                    .await
                    .expect("no faults");
                assert_eq!(ack, Ack::Stored { version: 42 });
                std::future::pending::<()>().await;
            })
            .build();
        sim.sleep(ms(100)).await;

        let events = tap.drain();
        let shapes: Vec<_> = events.iter().map(shape).collect();
        assert_eq!(
            shapes,
            [
                (Tapped::Send, 0, "client", "server"),
                (Tapped::Deliver, 0, "client", "server"),
                (Tapped::Send, 1, "server", "client"),
                (Tapped::Deliver, 1, "server", "client"),
            ]
        );
        let put = Put {
            key: "x".into(),
            value: 41,
        };
        for request in &events[..2] {
            assert_eq!(request.kind, MessageKind::Request { call: 1 });
            assert_eq!(request.decode::<Put>(), Some(put.clone()));
            assert_eq!(request.to, Addr::new(server, 80));
        }
        for response in &events[2..] {
            assert_eq!(response.kind, MessageKind::Response { call: 1 });
            assert_eq!(response.decode::<Ack>(), Some(Ack::Stored { version: 42 }));
            assert_eq!(response.from, Addr::new(server, 80));
        }
        assert!(
            events[1].time_ns > events[0].time_ns,
            "latency is at least 1 ms"
        );
        assert!(!tap.overflowed());
        assert_eq!(tap.try_next(), None, "drain took everything");
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
}

#[test]
fn a_partitioned_send_shows_as_a_drop_with_its_payload() {
    let report = run(2, SimConfig::default(), |sim| async move {
        let a = sim
            .node("a")
            .init(|| async {
                time::sleep(ms(10)).await;
                let socket = Socket::bind(0).expect("an ephemeral port");
                socket.send(Addr::new(NodeId(1), 7), "hello").unwrap();
                std::future::pending::<()>().await;
            })
            .build();
        let b = sim
            .node("b")
            .init(|| async {
                let _socket = Socket::bind(7).expect("port 7 is free");
                std::future::pending::<()>().await;
            })
            .build();
        sim.net().partition(&[a], &[b]).unwrap();
        let tap = sim.net().tap(16);
        sim.sleep(ms(50)).await;

        let events = tap.drain();
        let shapes: Vec<_> = events.iter().map(shape).collect();
        assert_eq!(
            shapes,
            [
                (Tapped::Send, 0, "a", "b"),
                (Tapped::Drop(DropReason::Partition), 0, "a", "b"),
            ]
        );
        let dropped = &events[1];
        assert_eq!(dropped.kind, MessageKind::Data);
        assert_eq!(dropped.decode::<String>().as_deref(), Some("hello"));
        assert_eq!(dropped.decode::<Ack>(), None, "not that type");
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
}

/// One line per message event, the same from a tap event and from the trace, so that the
/// two can be compared one for one: time, what, id, names and addresses, size, kind.
fn line_of_tap(event: &TapEvent) -> String {
    let link = format!(
        "{}({}) -> {}({})",
        event.from_name, event.from, event.to_name, event.to
    );
    let (id, bytes, kind) = (event.id, event.payload.len(), event.kind);
    let what = match event.what {
        Tapped::Send => format!("send m{id} {link} {bytes} B {kind}"),
        Tapped::Deliver => format!("deliver m{id} {link} {bytes} B"),
        Tapped::Drop(reason) => format!("drop m{id} {link} ({})", reason.name()),
        Tapped::Duplicate { copy } => format!("duplicate m{id} as m{copy}"),
    };
    format!("{} {what}", event.time_ns)
}

fn lines_of_trace(report: &Report) -> Vec<String> {
    let timeline = report.timeline.as_ref().expect("trace.keep is on");
    assert!(!timeline.truncated);
    let name = |addr: Addr| format!("{}({addr})", timeline.node_names[addr.node.0 as usize]);
    let mut lines = Vec::new();
    for event in &timeline.events {
        let Event::Net(net) = &event.event else {
            continue;
        };
        let what = match net {
            NetEvent::Send {
                id,
                from,
                to,
                bytes,
                kind,
            } => format!(
                "send m{id} {} -> {} {bytes} B {kind}",
                name(*from),
                name(*to)
            ),
            NetEvent::Deliver {
                id,
                from,
                to,
                bytes,
            } => format!("deliver m{id} {} -> {} {bytes} B", name(*from), name(*to)),
            NetEvent::Drop {
                id,
                from,
                to,
                reason,
            } => format!(
                "drop m{id} {} -> {} ({})",
                name(*from),
                name(*to),
                reason.name()
            ),
            NetEvent::Duplicate { id, copy } => format!("duplicate m{id} as m{copy}"),
            _ => continue,
        };
        lines.push(format!("{} {what}", event.time_ns));
    }
    lines
}

const DATA_PORT: u16 = 7;
const RPC_PORT: u16 = 8;

/// Three nodes exchange `u32` datagrams (n1's on ordered connections) and RPCs on a lossy,
/// duplicating network while the supervisor partitions, holds, pauses, crashes and restarts;
/// with `tap`, a tap opened first collects every message event (as [`line_of_tap`] lines)
/// until the network is quiet.
fn busy_network(seed: u64, tap: bool) -> (Report, Vec<String>) {
    let mut config = SimConfig::default();
    config.trace.keep = true;
    config.net.link = LinkConfig::default()
        .with_loss(0.1)
        .with_duplicate(0.2)
        .with_latency(ms(1), ms(8));
    config.net.inbox_capacity = 4;
    config.net.hold_capacity = 3;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = lines.clone();
    let report = run(seed, config, move |sim| async move {
        let tap = tap.then(|| sim.net().tap(100_000));
        for index in 0..3u32 {
            sim.node(format!("n{index}"))
                .init(move || async move {
                    let data = Rc::new(Socket::bind(DATA_PORT).expect("port is free"));
                    // n1 sends on ordered connections, which break.
                    data.set_ordered(index == 1).unwrap();
                    let receiver = data.clone();
                    sim_core::task::spawn(
                        async move { while receiver.recv::<u32>().await.is_ok() {} },
                    );
                    sim_core::task::spawn(async {
                        let rpc = Socket::bind(RPC_PORT).expect("port is free");
                        rpc.serve(|_from, n: u32| async move { n + 1 }).await;
                    });
                    let caller = Socket::bind(0).expect("an ephemeral port");
                    let name = format!("tap-test/n{index}");
                    for round in 0..40u32 {
                        let pause = rand::Rng::gen_range(&mut rng::stream(name.clone()), 1..4);
                        time::sleep(ms(pause)).await;
                        let peer = NodeId((index + 1 + round % 2) % 3);
                        let _ = data.send(Addr::new(peer, DATA_PORT), &(index * 1000 + round));
                        if round % 5 == 0 {
                            let to = Addr::new(peer, RPC_PORT);
                            let _: Result<u32, _> = caller.call(to, &round, ms(5)).await;
                        }
                    }
                    std::future::pending::<()>().await;
                })
                .build();
        }
        let [n0, n1, n2] = [NodeId(0), NodeId(1), NodeId(2)];
        let net = sim.net();
        sim.sleep(ms(15)).await;
        net.partition(&[n0], &[n1]).unwrap();
        sim.sleep(ms(15)).await;
        net.heal_all();
        net.hold(n1, n2).unwrap();
        sim.sleep(ms(15)).await;
        net.release(n1, n2).unwrap();
        // Paused, n2 lets its inboxes fill up; its crash drops what they hold.
        sim.pause(n2);
        sim.sleep(ms(15)).await;
        sim.crash(n2);
        sim.sleep(ms(5)).await;
        sim.restart(n2);
        sim.pause(n0);
        sim.sleep(ms(20)).await;
        sim.resume(n0);
        // Every node's rounds end well within this; then nothing moves.
        sim.sleep(ms(1_000)).await;
        if let Some(tap) = tap {
            assert!(!tap.overflowed());
            let events = tap.drain();
            for event in &events {
                assert!(event.decode::<u32>().is_some(), "every payload is a u32");
            }
            let mut out = out.lock().unwrap();
            out.extend(events.iter().map(line_of_tap));
        }
        Ok(())
    });
    let lines = lines.lock().unwrap().clone();
    (report, lines)
}

#[test]
fn tap_events_match_the_traces_net_events_one_for_one() {
    let (report, tapped) = busy_network(3, true);
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    let traced = lines_of_trace(&report);
    assert!(
        traced.len() > 200,
        "a busy network: {} events",
        traced.len()
    );
    assert_eq!(tapped, traced);
    // The workload covers every kind of event and several drop reasons.
    for needle in [
        " send ",
        " deliver ",
        " duplicate ",
        "(partition)",
        "(loss)",
        "(hold_full)",
        "(crash)",
        "(inbox_full)",
        "(late_reply)",
        "(connection_broken)",
    ] {
        assert!(
            traced.iter().any(|line| line.contains(needle)),
            "no {needle:?} in the trace"
        );
    }
}

#[test]
fn a_tap_does_not_change_the_trace_hash() {
    for seed in [3, 4, 5] {
        let (with_tap, tapped) = busy_network(seed, true);
        let (without, _) = busy_network(seed, false);
        assert!(!tapped.is_empty());
        assert_eq!(with_tap.trace_hash, without.trace_hash, "seed {seed}");
        assert_eq!(with_tap.events, without.events, "seed {seed}");
        assert_eq!(with_tap.steps, without.steps, "seed {seed}");
    }
}

#[test]
fn a_full_tap_loses_events_and_says_so() {
    let report = run(6, SimConfig::default(), |sim| async move {
        let tap = sim.net().tap(2);
        sim.node("sender")
            .init(|| async {
                let socket = Socket::bind(DATA_PORT).expect("port is free");
                for value in 0..3u32 {
                    socket
                        .send(Addr::new(NodeId(0), DATA_PORT), &value)
                        .unwrap();
                }
                std::future::pending::<()>().await;
            })
            .build();
        sim.sleep(ms(50)).await;
        assert!(tap.overflowed());
        let kept: Vec<_> = tap.drain().iter().map(|e| (e.what, e.id)).collect();
        assert_eq!(
            kept,
            [(Tapped::Send, 0), (Tapped::Send, 1)],
            "the oldest stay"
        );
        assert!(tap.overflowed(), "stays set after a drain");
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
}

#[test]
fn a_dropped_tap_stops_and_a_new_one_starts_from_its_opening() {
    let report = run(7, SimConfig::default(), |sim| async move {
        let first = sim.net().tap(16);
        let second = sim.net().tap(16);
        sim.node("sender")
            .init(|| async {
                let socket = Socket::bind(DATA_PORT).expect("port is free");
                for value in 0..3u32 {
                    socket
                        .send(Addr::new(NodeId(0), DATA_PORT), &value)
                        .unwrap();
                    time::sleep(ms(20)).await;
                }
                std::future::pending::<()>().await;
            })
            .build();
        sim.sleep(ms(10)).await;
        drop(first);
        let third = sim.net().tap(16);
        sim.sleep(ms(100)).await;
        let ids = |tap: &sim_core::net::NetTap| -> Vec<u64> {
            tap.drain()
                .iter()
                .filter(|e| e.what == Tapped::Send)
                .map(|e| e.id)
                .collect()
        };
        assert_eq!(ids(&second), [0, 1, 2], "the other tap goes on");
        assert_eq!(
            ids(&third),
            [1, 2],
            "a tap sees only what follows its opening"
        );
        drop(second);
        drop(third);
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
}

#[test]
fn next_waits_for_the_next_event() {
    let report = run(8, SimConfig::default(), |sim| async move {
        sim.node("sender")
            .init(|| async {
                time::sleep(ms(30)).await;
                let socket = Socket::bind(DATA_PORT).expect("port is free");
                socket.send(Addr::new(NodeId(0), DATA_PORT), &7u32).unwrap();
                std::future::pending::<()>().await;
            })
            .build();
        let tap = sim.net().tap(16);
        let first = tap.next().await.expect("the run goes on");
        assert_eq!(first.what, Tapped::Send);
        assert!(first.time_ns >= 30_000_000);
        assert_eq!(first.decode::<u32>(), Some(7));
        let second = tap.next().await.expect("the run goes on");
        assert_eq!(second.what, Tapped::Deliver);
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
}
