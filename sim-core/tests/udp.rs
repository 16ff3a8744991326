//! The tokio-style `UdpSocket`: round trips by node name, truncation, connected sockets, every
//! network fault applied to datagrams, crashes, clear errors, and determinism.
#![cfg(madsim)]

use sim_core::net::udp::DATAGRAM_MAX_BYTES;
use sim_core::net::{DropReason, LinkConfig, NetEvent, Socket, UdpSocket};
use sim_core::trace::Event;
use sim_core::{run, time, Report, SimConfig};
use std::cell::RefCell;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
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

fn assert_pass(report: &Report) {
    assert!(report.outcome.is_pass(), "{}", report.outcome);
}

fn net_events(report: &Report) -> Vec<NetEvent> {
    let timeline = report.timeline.as_ref().expect("trace.keep is on");
    (timeline.events.iter())
        .filter_map(|event| match &event.event {
            Event::Net(net) => Some(net.clone()),
            _ => None,
        })
        .collect()
}

fn drops(report: &Report, reason: DropReason) -> usize {
    (net_events(report).iter())
        .filter(|event| matches!(event, NetEvent::Drop { reason: r, .. } if *r == reason))
        .count()
}

fn sends(report: &Report) -> usize {
    (net_events(report).iter())
        .filter(|event| matches!(event, NetEvent::Send { .. }))
        .count()
}

/// A log that node programs fill and the test reads after the run.
type Log<T> = Arc<Mutex<Vec<T>>>;

fn log<T>() -> Log<T> {
    Arc::new(Mutex::new(Vec::new()))
}

fn taken<T: Clone>(log: &Log<T>) -> Vec<T> {
    log.lock().unwrap().clone()
}

/// An io error's kind, for comparing results.
fn kind<T>(result: std::io::Result<T>) -> Option<ErrorKind> {
    result.err().map(|error| error.kind())
}

/// A node that answers every datagram on `port` with the same bytes, until its socket closes.
fn echo_server(sim: &sim_core::Sim, name: &str, port: u16) -> sim_core::NodeId {
    sim.node(name)
        .init(move || async move {
            let socket = UdpSocket::bind(("0.0.0.0", port)).await.unwrap();
            let mut buf = vec![0u8; DATAGRAM_MAX_BYTES];
            while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                socket.send_to(&buf[..len], from).await.unwrap();
            }
        })
        .build()
}

#[test]
fn round_trip_by_node_name() {
    // A client reaches a server by its name and port, and sees the answer come from the
    // server's address; each datagram is one message in the trace, with its bytes.
    let seen: Log<(Vec<u8>, SocketAddr, SocketAddr)> = log();
    let s = seen.clone();
    let report = run(1, config(fixed_latency(5)), move |sim| async move {
        echo_server(&sim, "server", 53);
        sim.node("client")
            .init(move || {
                let seen = s.clone();
                async move {
                    let socket = UdpSocket::bind("0.0.0.0:0").await.unwrap();
                    assert_eq!(socket.send_to(b"hello", "server:53").await.unwrap(), 5);
                    let mut buf = [0u8; 64];
                    let (len, from) = socket.recv_from(&mut buf).await.unwrap();
                    let local = socket.local_addr().unwrap();
                    seen.lock()
                        .unwrap()
                        .push((buf[..len].to_vec(), from, local));
                }
            })
            .build();
        sim.sleep(ms(50)).await;
        Ok(())
    });
    assert_pass(&report);
    let server: SocketAddr = "10.0.0.1:53".parse().unwrap();
    let seen = taken(&seen);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, b"hello");
    assert_eq!(seen[0].1, server);
    assert_eq!(seen[0].2.ip().to_string(), "10.0.0.2");
    assert_eq!(sends(&report), 2);
    // The payload on the wire is the length and the bytes, nothing else.
    let sizes: Vec<u32> = (net_events(&report).iter())
        .filter_map(|event| match event {
            NetEvent::Send { bytes, .. } => Some(*bytes),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, vec![6, 6]);
}

#[test]
fn a_long_datagram_is_truncated_and_the_rest_discarded() {
    // As real UDP does: the reader gets what fits in its buffer, and the next read gets the
    // next datagram, not the rest of the long one.
    let seen: Log<Vec<u8>> = log();
    let s = seen.clone();
    let report = run(2, config(fixed_latency(5)), move |sim| async move {
        sim.node("receiver")
            .init(move || {
                let seen = s.clone();
                async move {
                    let socket = UdpSocket::bind("0.0.0.0:9").await.unwrap();
                    let mut small = [0u8; 4];
                    for _ in 0..2 {
                        let len = socket.recv(&mut small).await.unwrap();
                        seen.lock().unwrap().push(small[..len].to_vec());
                    }
                }
            })
            .build();
        sim.node("sender")
            .init(|| async {
                let socket = UdpSocket::bind("0.0.0.0:0").await.unwrap();
                socket.send_to(b"0123456789", "receiver:9").await.unwrap();
                time::sleep(ms(10)).await;
                socket.send_to(b"ab", "receiver:9").await.unwrap();
                std::future::pending::<()>().await;
            })
            .build();
        sim.sleep(ms(50)).await;
        Ok(())
    });
    assert_pass(&report);
    assert_eq!(taken(&seen), vec![b"0123".to_vec(), b"ab".to_vec()]);
}

#[test]
fn connect_sends_to_the_peer_and_receives_only_from_it() {
    // c connects to a; b's datagrams are discarded when c reads, a's arrive, and `send` goes
    // to a. Before connecting, `send` and `peer_addr` fail with NotConnected.
    let seen: Log<String> = log();
    let s = seen.clone();
    let report = run(3, config(fixed_latency(5)), move |sim| async move {
        echo_server(&sim, "a", 7);
        sim.node("b")
            .init(|| async {
                let socket = UdpSocket::bind("0.0.0.0:7").await.unwrap();
                for _ in 0..3 {
                    socket.send_to(b"from b", "c:7").await.unwrap();
                    time::sleep(ms(1)).await;
                }
                std::future::pending::<()>().await;
            })
            .build();
        sim.node("c")
            .init(move || {
                let seen = s.clone();
                async move {
                    let socket = UdpSocket::bind("0.0.0.0:7").await.unwrap();
                    let seen = |line: String| seen.lock().unwrap().push(line);
                    seen(format!("{:?}", kind(socket.send(b"x").await)));
                    seen(format!("{:?}", kind(socket.peer_addr())));
                    socket.connect("a:7").await.unwrap();
                    seen(socket.peer_addr().unwrap().to_string());
                    time::sleep(ms(3)).await;
                    socket.send(b"from c").await.unwrap();
                    let mut buf = [0u8; 16];
                    let (len, from) = socket.recv_from(&mut buf).await.unwrap();
                    seen(format!("{} {from}", String::from_utf8_lossy(&buf[..len])));
                    // Nothing else is queued: b's datagrams were discarded.
                    seen(format!("{:?}", kind(socket.try_recv(&mut buf))));
                }
            })
            .build();
        sim.sleep(ms(50)).await;
        Ok(())
    });
    assert_pass(&report);
    assert_eq!(
        taken(&seen),
        [
            "Some(NotConnected)",
            "Some(NotConnected)",
            "10.0.0.1:7",
            "from c 10.0.0.1:7",
            "Some(WouldBlock)",
        ]
    );
    // b's three datagrams were delivered to c's socket (the OS discards them, not the wire).
    assert_eq!(drops(&report, DropReason::Loss), 0);
}

/// A sender sends `count` numbered datagrams to a receiver, 1 ms apart; returns how many
/// arrived.
fn stream_run(link: LinkConfig, count: u32) -> (usize, Report) {
    let got: Log<u32> = log();
    let g = got.clone();
    let report = run(4, config(link), move |sim| async move {
        sim.node("receiver")
            .init(move || {
                let got = g.clone();
                async move {
                    let socket = UdpSocket::bind("0.0.0.0:9").await.unwrap();
                    let mut buf = [0u8; 4];
                    while let Ok(len) = socket.recv(&mut buf).await {
                        assert_eq!(len, 4);
                        got.lock().unwrap().push(u32::from_le_bytes(buf));
                    }
                }
            })
            .build();
        sim.node("sender")
            .init(move || async move {
                let socket = UdpSocket::bind("0.0.0.0:0").await.unwrap();
                for n in 0..count {
                    socket
                        .send_to(&n.to_le_bytes(), "receiver:9")
                        .await
                        .unwrap();
                    time::sleep(ms(1)).await;
                }
                std::future::pending::<()>().await;
            })
            .build();
        sim.sleep(ms(u64::from(count) + 100)).await;
        Ok(())
    });
    assert_pass(&report);
    let received = got.lock().unwrap().len();
    (received, report)
}

#[test]
fn loss_and_duplication_of_the_link_apply_to_datagrams() {
    let (received, report) = stream_run(LinkConfig::default(), 200);
    assert_eq!(received, 200);
    assert_eq!(drops(&report, DropReason::Loss), 0);

    let (received, report) = stream_run(LinkConfig::default().with_loss(0.3), 200);
    let lost = drops(&report, DropReason::Loss);
    assert!((30..90).contains(&lost), "{lost} lost of 200");
    assert_eq!(received, 200 - lost);

    let (received, report) = stream_run(LinkConfig::default().with_duplicate(0.3), 200);
    let copies = (net_events(&report).iter())
        .filter(|event| matches!(event, NetEvent::Duplicate { .. }))
        .count();
    assert!((30..90).contains(&copies), "{copies} copies of 200");
    assert_eq!(received, 200 + copies);
}

#[test]
fn a_partition_drops_datagrams_until_healed() {
    // Datagrams at 0..30 ms pass, those sent during the cut (30..60 ms) are dropped, those
    // after the heal pass again.
    let got: Log<(u32, u64)> = log();
    let g = got.clone();
    let report = run(5, config(fixed_latency(2)), move |sim| async move {
        let receiver = sim
            .node("receiver")
            .init(move || {
                let got = g.clone();
                async move {
                    let socket = UdpSocket::bind("0.0.0.0:9").await.unwrap();
                    let mut buf = [0u8; 4];
                    while let Ok(len) = socket.recv(&mut buf).await {
                        assert_eq!(len, 4);
                        let at = time::now().as_nanos() / 1_000_000;
                        got.lock().unwrap().push((u32::from_le_bytes(buf), at));
                    }
                }
            })
            .build();
        let sender = sim
            .node("sender")
            .init(|| async {
                let socket = UdpSocket::bind("0.0.0.0:0").await.unwrap();
                for n in 0..9u32 {
                    socket
                        .send_to(&n.to_le_bytes(), "receiver:9")
                        .await
                        .unwrap();
                    time::sleep(ms(10)).await;
                }
                std::future::pending::<()>().await;
            })
            .build();
        sim.sleep(ms(25)).await;
        sim.net().partition(&[sender], &[receiver]).unwrap();
        sim.sleep(ms(30)).await;
        sim.net().heal_all();
        sim.sleep(ms(100)).await;
        Ok(())
    });
    assert_pass(&report);
    let values: Vec<u32> = taken(&got).iter().map(|(value, _)| *value).collect();
    assert_eq!(values, vec![0, 1, 2, 6, 7, 8]);
    assert_eq!(drops(&report, DropReason::Partition), 3);
}

#[test]
fn a_crash_closes_the_socket_for_good() {
    // The node keeps its first socket in a slot that survives the crash; after the restart
    // that old socket fails with NotConnected while a new one binds the same port and works.
    let seen: Log<String> = log();
    let s = seen.clone();
    let report = run(6, config(fixed_latency(2)), move |sim| async move {
        let slot: Rc<RefCell<Option<UdpSocket>>> = Rc::new(RefCell::new(None));
        let node = sim
            .node("server")
            .init(move || {
                let seen = s.clone();
                let slot = slot.clone();
                async move {
                    let seen = |line: String| seen.lock().unwrap().push(line);
                    let old = slot.borrow_mut().take();
                    if let Some(old) = old {
                        let mut buf = [0u8; 4];
                        seen(format!("{:?}", kind(old.send_to(b"x", "server:5").await)));
                        seen(format!("{:?}", kind(old.try_recv_from(&mut buf))));
                        seen(format!("{:?}", kind(old.recv_from(&mut buf).await)));
                        seen(format!("{:?}", kind(old.connect("server:5").await)));
                    }
                    let socket = UdpSocket::bind("server:5").await.unwrap();
                    seen(socket.local_addr().unwrap().to_string());
                    *slot.borrow_mut() = Some(socket);
                    std::future::pending::<()>().await;
                }
            })
            .build();
        sim.sleep(ms(10)).await;
        sim.crash(node);
        sim.restart(node);
        sim.sleep(ms(10)).await;
        Ok(())
    });
    assert_pass(&report);
    let not_connected = "Some(NotConnected)".to_string();
    assert_eq!(
        taken(&seen),
        [
            "10.0.0.1:5".to_string(),
            not_connected.clone(),
            not_connected.clone(),
            not_connected.clone(),
            not_connected,
            "10.0.0.1:5".to_string(),
        ]
    );
}

#[test]
fn peek_leaves_the_datagram_for_the_next_receive() {
    let seen: Log<String> = log();
    let s = seen.clone();
    let report = run(7, config(fixed_latency(2)), move |sim| async move {
        sim.node("receiver")
            .init(move || {
                let seen = s.clone();
                async move {
                    let socket = UdpSocket::bind("0.0.0.0:9").await.unwrap();
                    let mut buf = [0u8; 8];
                    let (len, from) = socket.peek_from(&mut buf).await.unwrap();
                    let sender = socket.peek_sender().await.unwrap();
                    let seen = |line: String| seen.lock().unwrap().push(line);
                    seen(format!("peek {} {from} {sender}", len));
                    let (len, from) = socket.recv_from(&mut buf).await.unwrap();
                    seen(format!(
                        "recv {} {from}",
                        String::from_utf8_lossy(&buf[..len])
                    ));
                    let len = socket.recv(&mut buf).await.unwrap();
                    seen(format!("recv {}", String::from_utf8_lossy(&buf[..len])));
                }
            })
            .build();
        sim.node("sender")
            .init(|| async {
                let socket = UdpSocket::bind("0.0.0.0:4000").await.unwrap();
                socket.send_to(b"first", "receiver:9").await.unwrap();
                time::sleep(ms(5)).await;
                let target: SocketAddr = "10.0.0.1:9".parse().unwrap();
                socket.try_send_to(b"second", target).unwrap();
                std::future::pending::<()>().await;
            })
            .build();
        sim.sleep(ms(30)).await;
        Ok(())
    });
    assert_pass(&report);
    assert_eq!(
        taken(&seen),
        [
            "peek 5 10.0.0.2:4000 10.0.0.2:4000",
            "recv first 10.0.0.2:4000",
            "recv second",
        ]
    );
}

#[test]
fn bad_datagrams_and_addresses_are_clear_errors() {
    // Each line: what was tried, the error kind, and the error's message.
    let seen: Log<String> = log();
    let s = seen.clone();
    let report = run(8, config(fixed_latency(2)), move |sim| async move {
        let outside = UdpSocket::bind("0.0.0.0:1").await;
        assert_eq!(kind(outside), Some(ErrorKind::Unsupported));
        sim.node("other").init(std::future::pending::<()>).build();
        sim.node("a")
            .init(move || {
                let seen = s.clone();
                async move {
                    let seen = |what: &str, result: std::io::Result<()>| {
                        let line = match result {
                            Ok(()) => format!("{what}: ok"),
                            Err(error) => format!("{what}: {:?}: {error}", error.kind()),
                        };
                        seen.lock().unwrap().push(line);
                    };
                    let socket = UdpSocket::bind("a:0").await.unwrap();
                    let too_large = vec![0u8; DATAGRAM_MAX_BYTES + 1];
                    let result = socket.send_to(&too_large, "other:9").await;
                    seen("too large", result.map(drop));
                    let largest = vec![7u8; DATAGRAM_MAX_BYTES];
                    let result = socket.send_to(&largest, "other:9").await;
                    seen("largest", result.map(drop));
                    let result = UdpSocket::bind("other:9").await;
                    seen("bind other node", result.map(drop));
                    let result = UdpSocket::bind("10.9.9.9:9").await;
                    seen("bind no node", result.map(drop));
                    let result = socket.send_to(b"x", "nowhere:9").await;
                    seen("unknown host", result.map(drop));
                    let result = socket.connect("nowhere:9").await;
                    seen("connect unknown host", result);
                    let result = UdpSocket::bind("nowhere:9").await;
                    seen("bind unknown host", result.map(drop));
                    let result = socket.send_to(b"x", "other").await;
                    seen("no port", result.map(drop));
                    let _typed = Socket::bind(53).unwrap();
                    let result = UdpSocket::bind("127.0.0.1:53").await;
                    seen("port of a typed socket", result.map(drop));
                    let mut buf = [0u8; 1];
                    seen("nothing queued", socket.try_recv_from(&mut buf).map(drop));
                }
            })
            .build();
        sim.sleep(ms(10)).await;
        Ok(())
    });
    assert_pass(&report);
    let seen = taken(&seen);
    let expected = [
        "too large: InvalidInput: datagram of 65508 bytes is larger than UDP's maximum of 65507",
        "largest: ok",
        "bind other node: AddrNotAvailable: cannot bind 10.0.0.1:9: it is the address of node n0, \
         not of this node n1 (10.0.0.2)",
        "bind no node: AddrNotAvailable: 10.9.9.9 is not the address of a node in this run",
        "unknown host: NotFound: failed to lookup address information: no node named \"nowhere\"",
        "connect unknown host: NotFound: failed to lookup address information: no node named \
         \"nowhere\"",
        "bind unknown host: NotFound: failed to lookup address information: no node named \
         \"nowhere\"",
        "no port: InvalidInput: invalid socket address \"other\": expected host:port",
        "port of a typed socket: AddrInUse: address n1:53 is in use",
        "nothing queued: WouldBlock: no datagram is queued",
    ];
    assert_eq!(seen, expected);
    // The largest datagram went on the wire whole: its length prefix is 3 bytes.
    let sizes: Vec<u32> = (net_events(&report).iter())
        .filter_map(|event| match event {
            NetEvent::Send { bytes, .. } => Some(*bytes),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, vec![DATAGRAM_MAX_BYTES as u32 + 3]);
}

/// Two clients ping an echo server by name over a lossy, duplicating link, with a partition
/// and a crash of one client.
fn udp_workload(seed: u64) -> Report {
    let link = LinkConfig::default().with_loss(0.1).with_duplicate(0.1);
    let mut config = SimConfig::default();
    config.net.link = link;
    run(seed, config, |sim| async move {
        let server = echo_server(&sim, "server", 53);
        for name in ["c1", "c2"] {
            sim.node(name)
                .init(|| async {
                    let socket = UdpSocket::bind("0.0.0.0:0").await.unwrap();
                    socket.connect("server:53").await.unwrap();
                    let mut buf = [0u8; 8];
                    for n in 0..40u64 {
                        socket.send(&n.to_le_bytes()).await.unwrap();
                        let _ = time::timeout(ms(20), socket.recv(&mut buf)).await;
                    }
                })
                .build();
        }
        sim.sleep(ms(100)).await;
        let c1 = sim.node_id("c1").unwrap();
        sim.net().partition(&[server], &[c1]).unwrap();
        sim.sleep(ms(100)).await;
        sim.net().heal_all();
        sim.restart(sim.node_id("c2").unwrap());
        sim.sleep(ms(1000)).await;
        Ok(())
    })
}

#[test]
fn determinism_udp_workload_gives_the_same_trace_hash_and_seeds_differ() {
    let first = udp_workload(21);
    let second = udp_workload(21);
    assert_pass(&first);
    assert!(first.events > 100, "only {} events", first.events);
    assert_eq!(first.trace_hash, second.trace_hash);
    assert_eq!(first.steps, second.steps);
    let hashes: std::collections::BTreeSet<u64> =
        (0..6).map(|seed| udp_workload(seed).trace_hash).collect();
    assert_eq!(hashes.len(), 6);
}
