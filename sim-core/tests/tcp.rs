//! TCP streams with tokio's API: bytes arrive whole and in order through every fault that a
//! real TCP survives, and the breaks it does not survive come back as the errors a real stack
//! returns.
#![cfg(madsim)]

use sim_core::net::tcp::{TcpListener, TcpStream};
use sim_core::net::{LinkConfig, NetConfig};
use sim_core::{run, time, Report, SimConfig};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PORT: u16 = 7;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Bytes that tell their position apart.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// What the client saw, shared with the test.
type Seen = Arc<Mutex<Vec<String>>>;

/// An echo server on `server` and a client on `client` that sends `len` bytes, shuts down
/// its writing side, reads the echo to the end and records `echoed <n> ok|bad`.
fn echo_run(
    seed: u64,
    config: SimConfig,
    len: usize,
    faults: impl FnOnce(&sim_core::Sim, sim_core::NodeId, sim_core::NodeId) + Send + 'static,
) -> (Report, Vec<String>) {
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let report = run(seed, config, move |sim| async move {
        let server = sim
            .node("server")
            .init(|| async {
                let listener = TcpListener::bind(("0.0.0.0", PORT)).await.unwrap();
                loop {
                    let (mut stream, _) = listener.accept().await.unwrap();
                    sim_core::task::spawn(async move {
                        let mut buf = vec![0; 4096];
                        loop {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    if stream.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = stream.shutdown().await;
                    });
                }
            })
            .build();
        let client = sim
            .node("client")
            .init(move || {
                let log = Arc::clone(&log);
                async move {
                    let stream = TcpStream::connect("server:7").await;
                    let mut stream = match stream {
                        Ok(stream) => stream,
                        Err(error) => {
                            return log
                                .lock()
                                .unwrap()
                                .push(format!("connect {:?}", error.kind()))
                        }
                    };
                    let data = pattern(len);
                    let (mut reader, mut writer) = stream.split();
                    let write = async {
                        let result = writer.write_all(&data).await;
                        let _ = writer.shutdown().await;
                        result
                    };
                    let read = async {
                        let mut echoed = Vec::new();
                        reader.read_to_end(&mut echoed).await.map(|_| echoed)
                    };
                    let (written, echoed) = futures::join!(write, read);
                    match (written, echoed) {
                        (Ok(()), Ok(echoed)) => {
                            let verdict = if echoed == data { "ok" } else { "bad" };
                            log.lock()
                                .unwrap()
                                .push(format!("echoed {} {verdict}", echoed.len()));
                        }
                        (Err(error), _) | (_, Err(error)) => log
                            .lock()
                            .unwrap()
                            .push(format!("failed {:?}", error.kind())),
                    }
                }
            })
            .build();
        faults(&sim, server, client);
        sim.sleep(Duration::from_secs(60)).await;
        Ok(())
    });
    let seen = seen.lock().unwrap().clone();
    (report, seen)
}

fn lossy(loss: f64, duplicate: f64) -> SimConfig {
    SimConfig {
        net: NetConfig {
            link: LinkConfig::default()
                .with_loss(loss)
                .with_duplicate(duplicate)
                .with_latency(ms(1), ms(30)),
            ..NetConfig::default()
        },
        ..SimConfig::default()
    }
}

#[test]
fn bytes_arrive_whole_and_in_order_beyond_the_buffers() {
    // 300 KB is more than both buffers: the writer waits on back-pressure.
    let (report, seen) = echo_run(1, SimConfig::default(), 300_000, |_, _, _| {});
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    assert_eq!(seen, ["echoed 300000 ok"]);
}

#[test]
fn loss_duplication_and_reordering_are_repaired() {
    for seed in 0..5 {
        let (report, seen) = echo_run(seed, lossy(0.2, 0.2), 50_000, |_, _, _| {});
        assert!(report.outcome.is_pass(), "{}", report.outcome);
        assert_eq!(seen, ["echoed 50000 ok"], "seed {seed}");
    }
}

#[test]
fn a_short_partition_only_delays_the_bytes() {
    let (report, seen) = echo_run(2, SimConfig::default(), 200_000, |sim, server, client| {
        let sim = sim.clone();
        sim_core::task::spawn(async move {
            sim.sleep(ms(20)).await;
            sim.net().partition(&[server], &[client]).unwrap();
            sim.sleep(Duration::from_secs(3)).await;
            sim.net().heal_all();
        });
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    assert_eq!(seen, ["echoed 200000 ok"]);
}

#[test]
fn a_long_partition_times_the_connection_out() {
    let (report, seen) = echo_run(3, SimConfig::default(), 200_000, |sim, server, client| {
        let sim = sim.clone();
        sim_core::task::spawn(async move {
            sim.sleep(ms(20)).await;
            sim.net().partition(&[server], &[client]).unwrap();
        });
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    assert_eq!(seen, ["failed TimedOut"]);
}

#[test]
fn a_peer_that_restarted_resets_the_connection() {
    let (report, seen) = echo_run(4, SimConfig::default(), 200_000, |sim, server, _| {
        let sim = sim.clone();
        sim_core::task::spawn(async move {
            sim.sleep(ms(20)).await;
            sim.crash(server);
            sim.restart(server);
        });
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    assert_eq!(seen, ["failed ConnectionReset"]);
}

#[test]
fn a_peer_that_stays_down_times_the_connection_out() {
    let (report, seen) = echo_run(5, SimConfig::default(), 200_000, |sim, server, _| {
        let sim = sim.clone();
        sim_core::task::spawn(async move {
            sim.sleep(ms(20)).await;
            sim.crash(server);
        });
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    assert_eq!(seen, ["failed TimedOut"]);
}

/// Runs `client` on a node beside a `server` node whose `init` is `server`.
fn pair<S, SF, C, CF>(server: S, client: C) -> (Report, Vec<String>)
where
    S: Fn() -> SF + Send + 'static,
    SF: std::future::Future<Output = ()> + 'static,
    C: Fn(Seen) -> CF + Send + 'static,
    CF: std::future::Future<Output = ()> + 'static,
{
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let report = run(9, SimConfig::default(), move |sim| async move {
        sim.node("server").init(server).build();
        sim.node("client")
            .init(move || client(Arc::clone(&log)))
            .build();
        sim.sleep(Duration::from_secs(30)).await;
        Ok(())
    });
    let seen = seen.lock().unwrap().clone();
    (report, seen)
}

#[test]
fn nothing_listening_refuses_the_connection() {
    let (report, seen) = pair(
        || async {},
        |log| async move {
            let error = TcpStream::connect("server:80").await.unwrap_err();
            log.lock().unwrap().push(format!("{:?}", error.kind()));
        },
    );
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    assert_eq!(seen, ["ConnectionRefused"]);
}

#[test]
fn names_and_addresses_resolve_to_nodes() {
    let (report, seen) = pair(
        || async {
            let listener = TcpListener::bind("0.0.0.0:80").await.unwrap();
            let taken = TcpListener::bind("localhost:80").await.unwrap_err();
            assert_eq!(taken.kind(), std::io::ErrorKind::AddrInUse);
            let (stream, peer) = listener.accept().await.unwrap();
            assert_eq!(listener.local_addr().unwrap().to_string(), "10.0.0.1:80");
            assert_eq!(stream.local_addr().unwrap().to_string(), "10.0.0.1:80");
            assert_eq!(peer.ip().to_string(), "10.0.0.2");
            time::sleep(Duration::from_secs(1)).await;
        },
        |log| async move {
            let mut seen = Vec::new();
            let error = TcpStream::connect("nowhere:80").await.unwrap_err();
            seen.push(format!("{:?}", error.kind()));
            let error = TcpListener::bind("server:81").await.unwrap_err();
            seen.push(format!("{:?}", error.kind()));
            let error = TcpStream::connect("server").await.unwrap_err();
            seen.push(format!("{:?}", error.kind()));
            let stream = TcpStream::connect("10.0.0.1:80").await.unwrap();
            seen.push(stream.peer_addr().unwrap().to_string());
            *log.lock().unwrap() = seen;
        },
    );
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    assert_eq!(
        seen,
        [
            "NotFound",
            "AddrNotAvailable",
            "InvalidInput",
            "10.0.0.1:80"
        ]
    );
}

#[test]
fn closing_with_unread_bytes_resets_and_writes_then_fail() {
    let (report, seen) = pair(
        || async {
            let listener = TcpListener::bind("0.0.0.0:80").await.unwrap();
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut byte = [0; 1];
            stream.read_exact(&mut byte).await.unwrap();
            time::sleep(ms(100)).await;
            // Dropped with the client's second write unread: a reset.
            drop(stream);
            time::sleep(Duration::from_secs(5)).await;
        },
        |log| async move {
            let mut stream = TcpStream::connect("server:80").await.unwrap();
            stream.write_all(b"a").await.unwrap();
            time::sleep(ms(50)).await;
            stream.write_all(b"unread").await.unwrap();
            time::sleep(ms(500)).await;
            let mut buf = [0; 8];
            let read = stream.read(&mut buf).await;
            log.lock()
                .unwrap()
                .push(format!("{:?}", read.map_err(|e| e.kind())));
            for _ in 0..2 {
                let write = stream.write(b"more").await;
                log.lock()
                    .unwrap()
                    .push(format!("{:?}", write.map_err(|e| e.kind())));
            }
        },
    );
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    assert_eq!(
        seen,
        [
            "Err(ConnectionReset)",
            "Err(ConnectionReset)",
            "Err(BrokenPipe)"
        ]
    );
}

#[test]
fn a_close_is_end_of_file_and_a_connection_to_a_down_node_times_out() {
    let (report, seen) = pair(
        || async {
            let listener = TcpListener::bind("0.0.0.0:80").await.unwrap();
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.write_all(b"bye").await.unwrap();
            drop(stream);
            time::sleep(Duration::from_secs(1)).await;
            drop(listener);
            time::sleep(Duration::from_secs(60)).await;
        },
        |log| async move {
            let mut stream = TcpStream::connect("server:80").await.unwrap();
            let mut got = String::new();
            stream.read_to_string(&mut got).await.unwrap();
            log.lock().unwrap().push(got);
            time::sleep(Duration::from_secs(2)).await;
            let error = TcpStream::connect("server:80").await.unwrap_err();
            log.lock().unwrap().push(format!("{:?}", error.kind()));
        },
    );
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    assert_eq!(seen, ["bye", "ConnectionRefused"]);
}

#[test]
fn connecting_to_a_node_that_is_down_times_out() {
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let report = run(11, SimConfig::default(), move |sim| async move {
        // Sockets live on nodes.
        let error = TcpStream::connect("server:80").await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::Unsupported);
        let server = sim.node("server").init(|| async {}).build();
        sim.crash(server);
        sim.node("client")
            .init(move || {
                let log = Arc::clone(&log);
                async move {
                    let start = time::now();
                    let error = TcpStream::connect("server:80").await.unwrap_err();
                    let waited = time::now().saturating_duration_since(start);
                    log.lock().unwrap().push(format!(
                        "{:?} after {}s",
                        error.kind(),
                        waited.as_secs()
                    ));
                }
            })
            .build();
        sim.sleep(Duration::from_secs(30)).await;
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    assert_eq!(*seen.lock().unwrap(), ["TimedOut after 5s"]);
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let first = echo_run(21, lossy(0.1, 0.1), 20_000, |_, _, _| {}).0;
    let second = echo_run(21, lossy(0.1, 0.1), 20_000, |_, _, _| {}).0;
    assert_eq!(first.trace_hash, second.trace_hash);
    let other = echo_run(22, lossy(0.1, 0.1), 20_000, |_, _, _| {}).0;
    assert_ne!(first.trace_hash, other.trace_hash);
}

#[test]
fn many_seeds_of_loss_duplication_jitter_and_a_healed_partition() {
    let seeds: u64 = std::env::var("TCP_SEEDS")
        .ok()
        .and_then(|seeds| seeds.parse().ok())
        .unwrap_or(40);
    for seed in 0..seeds {
        let len = 1 + (seed as usize * 7919) % 150_000;
        // Loss that a real TCP rides out (at 30 % a connection times out now and then, here
        // as in a real stack), and a partition shorter than the retransmission budget.
        let loss = (seed % 3) as f64 * 0.05;
        let cut_ms = 10 + seed * 37 % 500;
        let (report, seen) = echo_run(seed, lossy(loss, 0.2), len, move |sim, server, client| {
            let sim = sim.clone();
            sim_core::task::spawn(async move {
                sim.sleep(ms(cut_ms)).await;
                sim.net().partition(&[server], &[client]).unwrap();
                sim.sleep(ms(cut_ms * 3)).await;
                sim.net().heal_all();
            });
        });
        assert!(report.outcome.is_pass(), "{}", report.outcome);
        assert_eq!(seen, [format!("echoed {len} ok")], "seed {seed}");
    }
}

#[test]
fn the_timeline_shows_connections_by_node_name_and_data_as_text() {
    let mut config = SimConfig::default();
    config.trace.keep = true;
    let report = run(12, config, |sim| async move {
        sim.node("primary")
            .init(|| async {
                let listener = TcpListener::bind("0.0.0.0:80").await.unwrap();
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut request = [0; 18];
                stream.read_exact(&mut request).await.unwrap();
                time::sleep(Duration::from_secs(10)).await;
            })
            .build();
        sim.node("client")
            .init(|| async {
                let mut stream = TcpStream::connect("primary:80").await.unwrap();
                stream.write_all(b"GET /kv/a HTTP/1.1").await.unwrap();
                time::sleep(Duration::from_secs(10)).await;
            })
            .build();
        sim.sleep(Duration::from_secs(1)).await;
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    let shown = report
        .timeline
        .as_ref()
        .expect("trace.keep is on")
        .to_string();
    for expected in [
        "tcp-accept",
        "tcp-connect",
        "client:49152 <-> primary:80",
        r#"tcp data seq 0 len 18: "GET /kv/a HTTP/1.1""#,
        "[tcp-accept] primary:80 <-> client:49152",
        "tcp ack 18 window 65518",
    ] {
        assert!(shown.contains(expected), "no {expected:?} in\n{shown}");
    }
}

#[test]
fn a_slow_reader_behind_a_lossy_link_gets_every_byte() {
    // The receiver's window fills and opens again many times; some window updates are lost
    // and the sender's probes recover them.
    for seed in 0..10 {
        let seen: Seen = Arc::default();
        let log = Arc::clone(&seen);
        let report = run(seed, lossy(0.1, 0.1), move |sim| async move {
            sim.node("server")
                .init(move || {
                    let log = Arc::clone(&log);
                    async move {
                        let listener = TcpListener::bind("0.0.0.0:80").await.unwrap();
                        let (mut stream, _) = listener.accept().await.unwrap();
                        time::sleep(Duration::from_secs(2)).await;
                        let mut got = Vec::new();
                        let mut buf = [0; 3000];
                        loop {
                            match stream.read(&mut buf).await {
                                Ok(0) => break,
                                Ok(n) => got.extend_from_slice(&buf[..n]),
                                Err(error) => {
                                    return log.lock().unwrap().push(format!("{error}"));
                                }
                            }
                            time::sleep(ms(5)).await;
                        }
                        let verdict = if got == pattern(200_000) { "ok" } else { "bad" };
                        log.lock()
                            .unwrap()
                            .push(format!("read {} {verdict}", got.len()));
                    }
                })
                .build();
            sim.node("client")
                .init(|| async {
                    let mut stream = TcpStream::connect("server:80").await.unwrap();
                    stream.write_all(&pattern(200_000)).await.unwrap();
                    stream.shutdown().await.unwrap();
                    time::sleep(Duration::from_secs(120)).await;
                })
                .build();
            sim.sleep(Duration::from_secs(60)).await;
            Ok(())
        });
        assert!(report.outcome.is_pass(), "{}", report.outcome);
        assert_eq!(*seen.lock().unwrap(), ["read 200000 ok"], "seed {seed}");
    }
}

#[test]
fn on_an_ordered_link_a_short_partition_only_delays_the_bytes_too() {
    let mut config = lossy(0.0, 0.0);
    config.net.link = config.net.link.with_ordered(true);
    let (report, seen) = echo_run(6, config, 100_000, |sim, server, client| {
        let sim = sim.clone();
        sim_core::task::spawn(async move {
            sim.sleep(ms(20)).await;
            sim.net().partition(&[server], &[client]).unwrap();
            sim.sleep(ms(500)).await;
            sim.net().heal_all();
        });
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    assert_eq!(seen, ["echoed 100000 ok"]);
}

#[test]
fn a_dropped_listener_frees_its_port_at_once() {
    let (report, seen) = pair(
        || async {
            let listener = TcpListener::bind("0.0.0.0:80").await.unwrap();
            drop(listener);
            let again = TcpListener::bind("0.0.0.0:80").await.unwrap();
            let (mut stream, _) = again.accept().await.unwrap();
            stream.write_all(b"hello").await.unwrap();
            time::sleep(Duration::from_secs(1)).await;
        },
        |log| async move {
            time::sleep(ms(10)).await;
            let mut stream = TcpStream::connect("server:80").await.unwrap();
            let mut got = [0; 5];
            stream.read_exact(&mut got).await.unwrap();
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&got).into_owned());
        },
    );
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    assert_eq!(seen, ["hello"]);
}
