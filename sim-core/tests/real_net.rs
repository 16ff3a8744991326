//! The real build's network (no `--cfg madsim`): typed sockets and RPC over real UDP between
//! the nodes of a loopback cluster, what a socket drops and the errors it returns, sharing a
//! socket between tasks, a killed node rebinding its port, and tokio's TCP between nodes.
//!
//! Every test runs on real time, bounded by [`BOUND`]; waits for what must happen are generous
//! (a second), and only what must time out has a short timeout.
#![cfg(not(madsim))]

use futures::future::join_all;
use serde_bytes::ByteBuf;
use sim_core::net::udp::DATAGRAM_MAX_BYTES;
use sim_core::net::{dns, Addr, NetError, Request, RpcError, Socket, MESSAGE_MAX_BYTES};
use sim_core::net::{TcpListener, TcpStream, UdpSocket};
use sim_core::node::{block_on, run_as, Cluster, NodeId};
use std::cell::RefCell;
use std::future::Future;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The longest a test may take; a passing test takes milliseconds.
const BOUND: Duration = Duration::from_secs(5);
/// The timeout of what must succeed.
const GENEROUS: Duration = Duration::from_secs(1);
/// The timeout of what must time out.
const SHORT: Duration = Duration::from_millis(100);

/// Runs `test` on a fresh runtime and `LocalSet`, failing it if it takes longer than [`BOUND`].
fn bounded(test: impl Future<Output = ()>) {
    block_on(async {
        tokio::time::timeout(BOUND, test)
            .await
            .expect("the test ends within its bound");
    });
}

/// A loopback cluster of `names`, installed on this thread, with its data under a temporary
/// folder of its own (these tests write no files).
fn cluster(test: &str, names: &[&str]) -> (Cluster, Vec<NodeId>) {
    let root =
        std::env::temp_dir().join(format!("sim-core-real-net-{}-{test}", std::process::id()));
    let cluster = Cluster::loopback(names, &root).expect("a valid cluster");
    cluster.install();
    let nodes = cluster.nodes();
    (cluster, nodes)
}

/// Binds `port` as node `node`'s code.
async fn bind_on(node: NodeId, port: u16) -> Socket {
    run_as(node, async { Socket::bind(port) })
        .await
        .unwrap_or_else(|error| panic!("node {node} binds port {port}: {error}"))
}

/// Waits (a second at most) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let waited = tokio::time::timeout(GENEROUS, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "{what} within {GENEROUS:?}");
}

/// A server on `node:port` that doubles every `u64`; returns whether it bound, once it tried.
fn start_doubler(
    cluster: &Cluster,
    node: NodeId,
    port: u16,
) -> Rc<RefCell<Vec<Result<u16, NetError>>>> {
    let binds = Rc::new(RefCell::new(Vec::new()));
    let handle = cluster.start(node, {
        let binds = binds.clone();
        move || {
            let binds = binds.clone();
            async move {
                let socket = Socket::bind(port);
                binds.borrow_mut().push(
                    socket
                        .as_ref()
                        .map(|socket| socket.local_addr().port)
                        .map_err(Clone::clone),
                );
                if let Ok(socket) = socket {
                    socket.serve(|_from, n: u64| async move { n * 2 }).await;
                }
            }
        }
    });
    // The node runs until the runtime ends: its handle is not needed to keep it.
    drop(handle);
    binds
}

#[test]
fn datagrams_go_both_ways_with_their_senders_addresses() {
    bounded(async {
        let (_cluster, nodes) = cluster("datagrams", &["a", "b"]);
        let (a, b) = (nodes[0], nodes[1]);
        let at_b = bind_on(b, 7000).await;
        let at_a = bind_on(a, 0).await;
        assert_eq!(at_b.local_addr(), Addr::new(b, 7000));
        assert_eq!(at_a.local_addr().node, a);
        assert_ne!(at_a.local_addr().port, 0, "an ephemeral port is a real one");

        at_a.send(Addr::new(b, 7000), "ping").unwrap();
        let (from, text): (Addr, String) = at_b.recv().await.unwrap();
        assert_eq!((from, text.as_str()), (at_a.local_addr(), "ping"));

        at_b.send(from, &("pong", 7u32)).unwrap();
        let (from, answer): (Addr, (String, u32)) = at_a.recv().await.unwrap();
        assert_eq!(from, Addr::new(b, 7000));
        assert_eq!(answer, ("pong".to_string(), 7));

        // Nothing else came; a message that does not decode as the type asked for is consumed
        // and reported with its sender.
        assert_eq!(at_a.try_recv::<String>().unwrap(), None);
        at_b.send(at_a.local_addr(), &[0xffu8; 3]).unwrap();
        let decoded = at_a.recv::<String>().await;
        assert!(
            matches!(&decoded, Err(NetError::Decode { from, .. }) if *from == Addr::new(b, 7000)),
            "{decoded:?}"
        );
        assert_eq!(at_a.queued().unwrap(), 0);

        // A datagram is visible to the non-waiting calls as soon as it arrived.
        at_b.send(at_a.local_addr(), &1u64).unwrap();
        until("the datagram is queued", || at_a.queued().unwrap() == 1).await;
        assert_eq!(
            at_a.try_recv::<u64>().unwrap(),
            Some((Addr::new(b, 7000), 1))
        );
    });
}

#[test]
fn rpc_calls_are_answered_by_serve_and_by_reply() {
    bounded(async {
        let (cluster, nodes) = cluster("rpc", &["server", "client"]);
        let (server, client) = (nodes[0], nodes[1]);
        let binds = start_doubler(&cluster, server, 7000);
        until("the server is bound", || !binds.borrow().is_empty()).await;
        assert_eq!(*binds.borrow(), vec![Ok(7000)]);

        let caller = bind_on(client, 0).await;
        let doubled: u64 = caller
            .call(Addr::new(server, 7000), &21u64, GENEROUS)
            .await
            .unwrap();
        assert_eq!(doubled, 42);
        assert_eq!(caller.pending_calls().unwrap(), 0);

        // Many calls at once on one socket: each gets its own answer.
        let numbers: Vec<u64> = (0..20).collect();
        let calls = numbers
            .iter()
            .map(|n| caller.call::<u64, u64>(Addr::new(server, 7000), n, GENEROUS));
        let answers: Vec<u64> = join_all(calls)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(answers, (0..20).map(|n| n * 2).collect::<Vec<_>>());

        // By hand: the request names its caller and its correlation id.
        let by_hand = bind_on(server, 7001).await;
        let answering = async {
            let (request, text): (Request, String) = by_hand.recv_request().await.unwrap();
            assert_eq!(request.from(), caller.local_addr());
            let id = request.call_id();
            by_hand.reply(request, &text.len()).unwrap();
            id
        };
        let calling = caller.call::<_, usize>(Addr::new(server, 7001), "four", GENEROUS);
        let (id, length) = futures::join!(answering, calling);
        assert_eq!(length, Ok(4));
        assert!(
            id > 20,
            "correlation ids are unique per calling socket: {id}"
        );
    });
}

#[test]
fn a_call_to_a_port_nobody_listens_on_times_out_and_a_late_answer_is_dropped() {
    bounded(async {
        let (_cluster, nodes) = cluster("timeout", &["a", "b"]);
        let (a, b) = (nodes[0], nodes[1]);
        let caller = bind_on(a, 0).await;
        let started = tokio::time::Instant::now();
        let silent = Addr::new(b, 7999);
        let result = caller.call::<_, u64>(silent, &1u64, SHORT).await;
        assert_eq!(
            result,
            Err(RpcError::Timeout {
                to: silent,
                after: SHORT
            })
        );
        assert!(started.elapsed() >= SHORT);
        assert_eq!(
            caller.pending_calls().unwrap(),
            0,
            "a call that gave up frees its slot"
        );

        // A server that answers too late: its answer is dropped, and the next call gets its
        // own answer, not the late one.
        let slow = bind_on(b, 7000).await;
        let late_call = caller.call::<_, u64>(Addr::new(b, 7000), &1u64, SHORT);
        let late_answer = async {
            let (request, n): (Request, u64) = slow.recv_request().await.unwrap();
            tokio::time::sleep(SHORT * 2).await;
            slow.reply(request, &(n * 100)).unwrap();
        };
        let (late, ()) = futures::join!(late_call, late_answer);
        assert_eq!(
            late,
            Err(RpcError::Timeout {
                to: Addr::new(b, 7000),
                after: SHORT
            })
        );
        let answering = async {
            let (request, n): (Request, u64) = slow.recv_request().await.unwrap();
            slow.reply(request, &(n * 2)).unwrap();
        };
        let calling = caller.call::<_, u64>(Addr::new(b, 7000), &2u64, GENEROUS);
        let ((), answer) = futures::join!(answering, calling);
        assert_eq!(answer, Ok(4));
        assert_eq!(caller.queued().unwrap(), 0, "the late answer went nowhere");
    });
}

#[test]
fn one_socket_serves_receives_and_calls_from_several_tasks_at_once() {
    bounded(async {
        let (cluster, nodes) = cluster("concurrent", &["a", "b"]);
        let (a, b) = (nodes[0], nodes[1]);
        // b answers a request `n` with a datagram first, then the response `2n`.
        let ready = Rc::new(RefCell::new(false));
        let _b = cluster.start(b, {
            let ready = ready.clone();
            move || {
                let ready = ready.clone();
                async move {
                    let socket = Socket::bind(7000).unwrap();
                    *ready.borrow_mut() = true;
                    loop {
                        let (request, n): (Request, u64) = socket.recv_request().await.unwrap();
                        socket.send(request.from(), &format!("note {n}")).unwrap();
                        socket.reply(request, &(n * 2)).unwrap();
                    }
                }
            }
        });
        until("b is bound", || *ready.borrow()).await;

        let shared = Rc::new(bind_on(a, 7100).await);
        let serving = tokio::task::spawn_local({
            let shared = shared.clone();
            async move {
                let (request, n): (Request, u64) = shared.recv_request().await.unwrap();
                let from = request.from();
                shared.reply(request, &(n + 1)).unwrap();
                (from, n)
            }
        });
        let reading = tokio::task::spawn_local({
            let shared = shared.clone();
            async move { shared.recv::<String>().await.unwrap() }
        });
        // Both tasks are blocked on the socket before the call goes out on it.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!serving.is_finished() && !reading.is_finished());

        let doubled: u64 = shared
            .call(Addr::new(b, 7000), &21u64, GENEROUS)
            .await
            .unwrap();
        assert_eq!(
            doubled, 42,
            "the response reached the call past the blocked receivers"
        );
        let (from, note) = reading.await.unwrap();
        assert_eq!((from, note.as_str()), (Addr::new(b, 7000), "note 21"));
        assert!(
            !serving.is_finished(),
            "a datagram and a response are not requests"
        );

        let client_on_b = bind_on(b, 0).await;
        let answer: u64 = client_on_b
            .call(Addr::new(a, 7100), &5u64, GENEROUS)
            .await
            .unwrap();
        assert_eq!(answer, 6);
        assert_eq!(serving.await.unwrap(), (client_on_b.local_addr(), 5));
    });
}

#[test]
fn node_code_alone_binds_and_bad_addresses_are_clear_errors() {
    // No cluster, no node.
    bounded(async {
        assert_eq!(Socket::bind(0).unwrap_err(), NetError::NotOnNode);
    });
    bounded(async {
        let (_cluster, nodes) = cluster("errors", &["a"]);
        let a = nodes[0];
        // A cluster, but not node code.
        assert_eq!(Socket::bind(0).unwrap_err(), NetError::NotOnNode);
        let error = NetError::NotOnNode.to_string();
        assert!(error.contains("run_as"), "{error}");
        // Node code of a node the cluster does not have.
        let stranger = NodeId(99);
        let bound = run_as(stranger, async { Socket::bind(0) }).await;
        assert_eq!(bound.unwrap_err(), NetError::UnknownNode(stranger));
        // Sending to a node the cluster does not have.
        let socket = bind_on(a, 7000).await;
        assert_eq!(
            socket.send(Addr::new(stranger, 1), &1u8),
            Err(NetError::UnknownNode(stranger))
        );
        let call = socket
            .call::<_, u8>(Addr::new(stranger, 1), &1u8, GENEROUS)
            .await;
        assert_eq!(call, Err(RpcError::Net(NetError::UnknownNode(stranger))));
        assert_eq!(socket.pending_calls().unwrap(), 0);
        // A port taken.
        let taken = run_as(a, async { Socket::bind(7000) }).await;
        assert_eq!(taken.unwrap_err(), NetError::AddrInUse(Addr::new(a, 7000)));
        // Ordered sockets are simulation-only.
        assert!(
            matches!(socket.set_ordered(true), Err(NetError::InvalidConfig(why)) if why.contains("simulation-only"))
        );
        assert_eq!(socket.set_ordered(false), Ok(()));
        assert_eq!(socket.is_ordered(), Ok(false));
        // Addresses that are no node's.
        let unknown = dns::socket_addr(Addr::new(stranger, 1)).unwrap_err();
        assert_eq!(unknown.kind(), io::ErrorKind::AddrNotAvailable);
        let localhost = SocketAddr::from((Ipv4Addr::LOCALHOST, 7000));
        assert_eq!(
            dns::sim_addr(localhost).unwrap_err().kind(),
            io::ErrorKind::AddrNotAvailable
        );
        let unspecified = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 7000));
        assert!(
            dns::sim_addr(unspecified).is_err(),
            "outside node code, 0.0.0.0 is no node"
        );
        let here = run_as(a, async { dns::sim_addr(unspecified) })
            .await
            .unwrap();
        assert_eq!(
            here,
            Addr::new(a, 7000),
            "in node code, 0.0.0.0 is the node itself"
        );
    });
    // Node code without a tokio runtime: an error, not tokio's panic.
    let (_cluster, nodes) = cluster("no-runtime", &["a"]);
    let bound = futures::executor::block_on(run_as(nodes[0], async { Socket::bind(0) }));
    assert!(matches!(bound, Err(NetError::InvalidConfig(why)) if why.contains("tokio runtime")));
}

#[test]
fn a_message_beyond_one_datagram_goes_over_tcp_up_to_16_mib_and_beyond_is_refused() {
    bounded(async {
        let (_cluster, nodes) = cluster("oversized", &["a", "b"]);
        let (a, b) = (nodes[0], nodes[1]);
        let sender = bind_on(a, 0).await;
        let receiver = bind_on(b, 7000).await;
        // The envelope: a version byte, the kind, the length (3 bytes here) and the bytes.
        let largest = DATAGRAM_MAX_BYTES - 5;
        for length in [largest, largest + 1, 3 << 20] {
            sender
                .send(receiver.local_addr(), &ByteBuf::from(vec![7u8; length]))
                .unwrap();
            let (from, bytes): (Addr, ByteBuf) = receiver.recv().await.unwrap();
            assert_eq!(
                from,
                sender.local_addr(),
                "the sending socket, not the TCP port"
            );
            assert_eq!(
                bytes.len(),
                length,
                "a message of {length} bytes arrives whole"
            );
            assert!(bytes.iter().all(|&byte| byte == 7));
        }

        // RPC both ways: a large request, and a larger response.
        let serving = async {
            let (request, body): (Request, ByteBuf) = receiver.recv_request().await.unwrap();
            assert_eq!(request.from(), sender.local_addr());
            receiver
                .reply(request, &ByteBuf::from(vec![body.len() as u8; 2 << 20]))
                .unwrap();
        };
        let request = ByteBuf::from(vec![1u8; 300_000]);
        let calling = sender.call::<_, ByteBuf>(receiver.local_addr(), &request, GENEROUS);
        let ((), answer) = futures::join!(serving, calling);
        assert_eq!(answer.unwrap().len(), 2 << 20);
        assert_eq!(sender.pending_calls().unwrap(), 0);

        // Beyond 16 MiB on the wire, a message is refused at the sender.
        let too_big = ByteBuf::from(vec![7u8; MESSAGE_MAX_BYTES]);
        let refused = sender.send(receiver.local_addr(), &too_big).unwrap_err();
        assert!(
            matches!(&refused, NetError::Encode(why) if why.contains("16777216")),
            "{refused}"
        );
        let call = sender
            .call::<_, u8>(receiver.local_addr(), &too_big, GENEROUS)
            .await;
        assert!(
            matches!(call, Err(RpcError::Net(NetError::Encode(_)))),
            "{call:?}"
        );
        assert_eq!(sender.pending_calls().unwrap(), 0);

        // A response too big is refused to the server; the caller times out.
        let answering = async {
            let (request, ()) = receiver.recv_request().await.unwrap();
            receiver.reply(request, &too_big).unwrap_err()
        };
        let calling = sender.call::<_, ByteBuf>(receiver.local_addr(), &(), SHORT);
        let (refused, timed_out) = futures::join!(answering, calling);
        assert!(matches!(refused, NetError::Encode(_)));
        assert!(matches!(timed_out, Err(RpcError::Timeout { .. })));

        // A large message to a port nobody listens on is lost, as a datagram is: no error.
        let large = ByteBuf::from(vec![7u8; 100_000]);
        sender.send(Addr::new(b, 7999), &large).unwrap();
        sender.send(receiver.local_addr(), &large).unwrap();
        let (_, bytes): (Addr, ByteBuf) = receiver.recv().await.unwrap();
        assert_eq!(bytes.len(), 100_000, "the socket still works");
    });
}

#[test]
fn a_socket_takes_its_port_for_udp_and_tcp_both() {
    bounded(async {
        let (_cluster, nodes) = cluster("ports", &["a"]);
        let a = nodes[0];
        let ip = dns::node_ip(a).unwrap();
        // A TCP listener on a port makes the socket's bind of it fail, as in a simulation.
        let _listener = TcpListener::bind((ip, 7400)).await.unwrap();
        let taken = run_as(a, async { Socket::bind(7400) }).await.unwrap_err();
        assert_eq!(taken, NetError::AddrInUse(Addr::new(a, 7400)));
        // A socket's port (picked by the operating system or not) is taken for TCP too.
        for port in [0, 7401] {
            let socket = bind_on(a, port).await;
            let picked = socket.local_addr().port;
            let tcp = std::net::TcpListener::bind((ip, picked)).map(|_| ());
            assert_eq!(
                tcp.map_err(|error| error.kind()),
                Err(io::ErrorKind::AddrInUse),
                "port {picked}"
            );
        }
    });
}

/// Log lines, captured from `tracing`.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }
}

impl Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Captures this thread's warnings until the guard drops.
fn capture_warnings() -> (Logs, tracing::subscriber::DefaultGuard) {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    (logs, tracing::subscriber::set_default(subscriber))
}

#[test]
fn datagrams_and_frames_from_strangers_or_that_are_no_envelope_are_dropped_with_a_warning() {
    let (logs, _logging) = capture_warnings();
    bounded(async {
        let (_cluster, nodes) = cluster("strangers", &["a", "b"]);
        let (a, b) = (nodes[0], nodes[1]);
        let target = bind_on(a, 7000).await;
        let target_addr = dns::socket_addr(target.local_addr()).unwrap();

        // A plain UDP socket on b's address captures a real envelope.
        let insider = UdpSocket::bind((dns::node_ip(b).unwrap(), 7001))
            .await
            .unwrap();
        let sender = bind_on(a, 0).await;
        sender.send(Addr::new(b, 7001), "hello").unwrap();
        let mut buffer = [0u8; 1024];
        let (length, from) = insider.recv_from(&mut buffer).await.unwrap();
        assert_eq!(dns::sim_addr(from).unwrap(), sender.local_addr());
        let envelope = buffer[..length].to_vec();

        // The same envelope from 127.0.0.1, which no loopback cluster gives a node.
        let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        stranger.send_to(&envelope, target_addr).await.unwrap();
        // Bytes that are no envelope, from a node's address.
        insider
            .send_to(b"\xffnot an envelope", target_addr)
            .await
            .unwrap();
        insider.send_to(&[], target_addr).await.unwrap();
        // Then the envelope from b: the only message the socket keeps.
        insider.send_to(&envelope, target_addr).await.unwrap();
        let (from, text): (Addr, String) = target.recv().await.unwrap();
        assert_eq!((from, text.as_str()), (Addr::new(b, 7001), "hello"));
        assert_eq!(target.queued().unwrap(), 0);

        // A response from another address than the one called is dropped too. The request's
        // envelope turned into a response (kind 2) with another payload, sent from b:7002.
        let forger = UdpSocket::bind((dns::node_ip(b).unwrap(), 7002))
            .await
            .unwrap();
        let answering = async {
            let (length, caller) = insider.recv_from(&mut buffer).await.unwrap();
            let mut response = buffer[..length].to_vec();
            assert_eq!(response[1], 1, "a request's kind");
            response[1] = 2;
            let forged = [&response[..length - 1], &[99u8][..]].concat();
            forger.send_to(&forged, caller).await.unwrap();
            insider.send_to(&response, caller).await.unwrap();
        };
        let calling = target.call::<_, u8>(Addr::new(b, 7001), &5u8, GENEROUS);
        let ((), answer) = futures::join!(answering, calling);
        assert_eq!(
            answer,
            Ok(5),
            "the called address answered; the forger did not count"
        );

        // Over TCP (where large messages come): a frame that announces more than 16 MiB, one
        // cut short, and one from 127.0.0.1 are dropped; the socket goes on.
        let connect_from = |ip| async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(ip, 0)).unwrap();
            socket.connect(target_addr).await.unwrap()
        };
        let b_ip = dns::node_ip(b).unwrap();
        let mut huge = connect_from(b_ip).await;
        huge.write_all(&[0x1b, 0x59, 0xff, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        let mut cut = connect_from(b_ip).await;
        cut.write_all(&[0x1b, 0x59, 0, 0, 0, 100, 1, 0])
            .await
            .unwrap();
        cut.shutdown().await.unwrap();
        let mut framed = vec![0x1b, 0x59];
        framed.extend_from_slice(&(envelope.len() as u32).to_be_bytes());
        framed.extend_from_slice(&envelope);
        let mut stranger = connect_from(Ipv4Addr::LOCALHOST.into()).await;
        stranger.write_all(&framed).await.unwrap();
        stranger.shutdown().await.unwrap();
        let mut insider = connect_from(b_ip).await;
        insider.write_all(&framed).await.unwrap();
        insider.shutdown().await.unwrap();
        let (from, text): (Addr, String) = target.recv().await.unwrap();
        assert_eq!((from, text.as_str()), (Addr::new(b, 0x1b59), "hello"));
        until("the bad frames are dropped", || {
            // Frames are read while the socket is polled.
            target.queued().unwrap();
            let logs = logs.text();
            ["announces 4294967295 bytes", "closed after 8 of"]
                .iter()
                .all(|why| logs.contains(why))
        })
        .await;
        assert_eq!(
            target.queued().unwrap(),
            0,
            "only the insider's frame was kept"
        );
    });
    let logs = logs.text();
    for why in [
        "no node of the cluster",
        "not a sim-core envelope",
        "another address than the one called",
        "announces 4294967295 bytes",
        "closed after 8 of the frame's 106 bytes",
    ] {
        assert!(logs.contains(why), "a warning says `{why}`:\n{logs}");
    }
}

#[test]
fn a_full_inbox_drops_arrivals_with_a_warning() {
    let (logs, _logging) = capture_warnings();
    bounded(async {
        let (_cluster, nodes) = cluster("inbox", &["a", "b"]);
        let (a, b) = (nodes[0], nodes[1]);
        let receiver = bind_on(a, 7000).await;
        let sender = bind_on(b, 0).await;
        // In rounds that the operating system's receive buffer holds, each read into the inbox
        // before the next is sent.
        let mut sent = 0;
        for _round in 0..11 {
            for _ in 0..100 {
                sender.send(receiver.local_addr(), &(sent as u32)).unwrap();
                sent += 1;
            }
            let expected = sent.min(1_024);
            until("the round is read into the inbox", || {
                receiver.queued().unwrap() == expected
            })
            .await;
        }
        assert_eq!(
            receiver.queued().unwrap(),
            1_024,
            "the inbox keeps 1,024 messages"
        );
        // The oldest are kept, in order.
        for n in 0..1_024u32 {
            assert_eq!(
                receiver.try_recv::<u32>().unwrap(),
                Some((sender.local_addr(), n))
            );
        }
        assert_eq!(receiver.try_recv::<u32>().unwrap(), None);
    });
    let logs = logs.text();
    assert!(
        logs.contains("unread messages"),
        "a warning says why:\n{logs}"
    );
}

#[test]
fn a_burst_past_tokios_budget_is_read_whole_and_the_socket_stays_armed() {
    bounded(async {
        let (_cluster, nodes) = cluster("burst", &["a", "b"]);
        let (a, b) = (nodes[0], nodes[1]);
        let receiver = Rc::new(bind_on(a, 7000).await);
        let sender = bind_on(b, 0).await;
        // A lone task waits; 150 datagrams (more than tokio's budget of 128 operations per
        // poll, fewer than the receive buffer holds) arrive at once; then one more, later.
        let received = Rc::new(RefCell::new(Vec::new()));
        let reading = tokio::task::spawn_local({
            let (receiver, received) = (receiver.clone(), received.clone());
            async move {
                for _ in 0..151 {
                    let (_, n): (Addr, u32) = receiver.recv().await.unwrap();
                    received.borrow_mut().push(n);
                }
            }
        });
        tokio::task::yield_now().await;
        for n in 0..150u32 {
            sender.send(receiver.local_addr(), &n).unwrap();
        }
        until("the burst is read", || received.borrow().len() == 150).await;
        sender.send(receiver.local_addr(), &150u32).unwrap();
        reading.await.unwrap();
        assert_eq!(*received.borrow(), (0..151).collect::<Vec<u32>>());
    });
}

#[test]
fn a_killed_node_restarts_on_its_port_and_a_dropped_socket_frees_its_port_at_once() {
    bounded(async {
        let (cluster, nodes) = cluster("restart", &["server", "client"]);
        let (server, client) = (nodes[0], nodes[1]);
        let binds = Rc::new(RefCell::new(Vec::new()));
        let node = cluster.start(server, {
            let binds = binds.clone();
            move || {
                let binds = binds.clone();
                async move {
                    let socket = Socket::bind(7000);
                    binds
                        .borrow_mut()
                        .push(socket.as_ref().map(|_| ()).map_err(Clone::clone));
                    if let Ok(socket) = socket {
                        socket.serve(|_from, n: u64| async move { n * 2 }).await;
                    }
                }
            }
        });
        until("the server is bound", || binds.borrow().len() == 1).await;
        let caller = bind_on(client, 0).await;
        let at = Addr::new(server, 7000);
        assert_eq!(caller.call::<_, u64>(at, &1u64, GENEROUS).await, Ok(2));

        node.kill().await;
        assert!(!node.is_running());
        let down = caller.call::<_, u64>(at, &2u64, SHORT).await;
        assert_eq!(
            down,
            Err(RpcError::Timeout {
                to: at,
                after: SHORT
            })
        );

        node.restart().await;
        until("the server is bound again", || binds.borrow().len() == 2).await;
        assert_eq!(
            *binds.borrow(),
            vec![Ok(()), Ok(())],
            "the restart bound port 7000 again"
        );
        assert_eq!(node.incarnation(), 1);
        assert_eq!(caller.call::<_, u64>(at, &3u64, GENEROUS).await, Ok(6));

        let first = bind_on(client, 7300).await;
        drop(first);
        let again = bind_on(client, 7300).await;
        assert_eq!(again.local_addr(), Addr::new(client, 7300));
    });
}

#[test]
fn tokio_tcp_runs_between_nodes_addressed_through_the_cluster() {
    bounded(async {
        let (cluster, nodes) = cluster("tcp", &["a", "b"]);
        let (a, b) = (nodes[0], nodes[1]);
        let listen_at = dns::socket_addr(Addr::new(a, 7200)).unwrap();
        // a echoes what each connection sends, and notes which node called.
        let callers = Rc::new(RefCell::new(Vec::new()));
        let ready = Rc::new(RefCell::new(false));
        let _a = cluster.start(a, {
            let (callers, ready) = (callers.clone(), ready.clone());
            move || {
                let (callers, ready) = (callers.clone(), ready.clone());
                async move {
                    let listener = TcpListener::bind(listen_at).await.unwrap();
                    assert_eq!(
                        dns::sim_addr(listener.local_addr().unwrap()).unwrap(),
                        Addr::new(a, 7200)
                    );
                    *ready.borrow_mut() = true;
                    loop {
                        let (mut stream, peer) = listener.accept().await.unwrap();
                        callers.borrow_mut().push(dns::sim_addr(peer).ok());
                        sim_core::task::spawn(async move {
                            let mut buffer = [0u8; 64];
                            loop {
                                match stream.read(&mut buffer).await {
                                    Ok(0) | Err(_) => break,
                                    Ok(length) => {
                                        stream.write_all(&buffer[..length]).await.unwrap()
                                    }
                                }
                            }
                        });
                    }
                }
            }
        });
        until("a listens", || *ready.borrow()).await;

        run_as(b, async {
            // From b's own address, so that a can tell which node called.
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket
                .bind(SocketAddr::new(dns::node_ip(b).unwrap(), 0))
                .unwrap();
            let mut stream = socket.connect(listen_at).await.unwrap();
            stream.write_all(b"hello").await.unwrap();
            let mut echo = [0u8; 5];
            stream.read_exact(&mut echo).await.unwrap();
            assert_eq!(&echo, b"hello");

            // The plain re-exported connect works too; it leaves from the kernel's pick of
            // address, which on loopback is 127.0.0.1: no node's.
            let mut plain = TcpStream::connect(listen_at).await.unwrap();
            plain.write_all(b"again").await.unwrap();
            plain.read_exact(&mut echo).await.unwrap();
            assert_eq!(&echo, b"again");
        })
        .await;
        let callers = callers.borrow();
        assert_eq!(callers.len(), 2);
        assert_eq!(callers[0].map(|addr| addr.node), Some(b));
        assert_eq!(callers[1], None, "127.0.0.1 is no node's address");
    });
}
