//! The event store's driver in a real build (no `--cfg madsim`): the store node runs as tasks
//! of a loopback cluster, on real UDP, real files and real fsyncs, and a client node checks
//! what the `event-sourcing` scenario checks a client sees: acknowledged appends with optimistic
//! concurrency, reads back in order, pushes to a subscriber, and after the store node is killed
//! and restarted, every acknowledged event in place, idempotent retries answered with their
//! original result, and new appends served.
//!
//! Real time: every wait for something that must happen is a polling loop with a generous
//! deadline, and the whole test has a bound; nothing relies on a fixed sleep.
#![cfg(not(madsim))]

use patterns::event_sourcing::driver::{
    run_node, CallError, NodeConfig, NodeEvent, NodeHook, Push, Refusal, StoreClient, LOG_PATH,
};
use patterns::event_sourcing::event::{
    AppendError, AppendRequest, Appended, EventData, EventId, ExpectedVersion, RecordedEvent,
};
use patterns::event_sourcing::store::ReadError;
use sim_core::net::{Addr, RpcError};
use sim_core::node::{block_on, run_as, Cluster, NodeHandle};
use sim_core::time;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The store's port: the driver's default, `STORE_PORT` (7), is privileged.
const STORE_PORT: u16 = 7007;
/// Each call's timeout: short enough that a call lost to the kill is retried soon.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// How long anything that must happen may take (a loaded machine's fsyncs are slow).
const MUST_HAPPEN_WITHIN: Duration = Duration::from_secs(10);
/// The bound on a whole test.
const TEST_BOUND: Duration = Duration::from_secs(30);
/// The pause between two polls of a condition.
const POLL_EVERY: Duration = Duration::from_millis(5);

/// A data root of its own for one test, removed when dropped.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new(test: &str) -> TempRoot {
        let path = std::env::temp_dir().join(format!(
            "patterns-real-event-sourcing-{}-{test}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        TempRoot(path)
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `test` on a runtime of its own, failing it past the bound.
fn bounded<F: Future<Output = ()>>(test: F) {
    block_on(async {
        time::timeout(TEST_BOUND, test)
            .await
            .expect("the test finished within its bound");
    });
}

/// The store node's reports, as a test reads them.
#[derive(Clone, Default)]
struct Reports(Arc<Mutex<Vec<NodeEvent>>>);

impl Reports {
    fn hook(&self) -> NodeHook {
        let reports = self.0.clone();
        Arc::new(move |event: &NodeEvent| {
            reports
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(event.clone());
        })
    }

    fn all(&self) -> Vec<NodeEvent> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn count(&self, wanted: impl Fn(&NodeEvent) -> bool) -> usize {
        self.all().iter().filter(|event| wanted(event)).count()
    }
}

/// A cluster of a store node (started) and a client node (for `run_as`).
struct System {
    cluster: Cluster,
    store: NodeHandle,
    server: Addr,
    reports: Reports,
}

fn start(root: &TempRoot) -> System {
    let cluster = Cluster::loopback(&["store", "client"], &root.0).expect("a valid cluster");
    let store_id = cluster.id("store").expect("the store node");
    let reports = Reports::default();
    let hook = reports.hook();
    let store = cluster.start(store_id, move || {
        let config = NodeConfig {
            port: STORE_PORT,
            ..NodeConfig::default()
        };
        run_node(config, hook.clone())
    });
    System {
        cluster,
        store,
        server: Addr::new(store_id, STORE_PORT),
        reports,
    }
}

fn event(id: u128, event_type: &str) -> EventData {
    EventData {
        event_id: EventId(id),
        event_type: event_type.into(),
        schema_version: 1,
        payload: format!("{{\"order\":{id}}}").into_bytes(),
    }
}

fn append(stream: &str, expected: ExpectedVersion, events: Vec<EventData>) -> AppendRequest {
    AppendRequest {
        stream: stream.into(),
        expected,
        events,
    }
}

impl System {
    /// Waits until the store node has opened its files `opens` times in all: its socket is
    /// bound then. A datagram to a port not bound yet is lost, and its call waits out its
    /// whole timeout.
    async fn wait_until_opened(&self, opens: usize) {
        let deadline = time::now() + MUST_HAPPEN_WITHIN;
        while self
            .reports
            .count(|event| matches!(event, NodeEvent::Opened { .. }))
            < opens
        {
            assert!(time::now() < deadline, "the store did not open its files");
            time::sleep(POLL_EVERY).await;
        }
    }
}

/// Waits until the store serves: it refuses requests while it opens its files, refuses reads
/// while its recovery commit runs (what it recovered is not durable yet), and answers nothing
/// at all before its socket is bound.
async fn wait_until_serving(client: &StoreClient) {
    let deadline = time::now() + MUST_HAPPEN_WITHIN;
    loop {
        match client.read_all(0, 1).await {
            Ok(Ok(_)) => return,
            Err(CallError::Refused(Refusal::Recovering))
            | Ok(Err(ReadError::Recovering))
            | Err(CallError::Rpc(_)) => {}
            other => panic!("the store answered a read with {other:?}"),
        }
        assert!(time::now() < deadline, "the store did not start serving");
        time::sleep(POLL_EVERY).await;
    }
}

/// Appends `request`, retrying it with the same event ids while the answer is lost (an
/// idempotent retry: a second attempt at an append that was stored is answered with the
/// first one's result), until a definite answer.
async fn append_definitely(
    client: &StoreClient,
    request: &AppendRequest,
) -> Result<Appended, AppendError> {
    let deadline = time::now() + MUST_HAPPEN_WITHIN;
    loop {
        match client.append(request).await {
            Ok(Err(AppendError::OutcomeUnknown))
            | Err(CallError::Rpc(RpcError::Timeout { .. })) => {}
            Ok(answer) => return answer,
            Err(error) => panic!("appending to {} failed: {error}", request.stream),
        }
        assert!(time::now() < deadline, "no definite answer to an append");
    }
}

/// Reads every event of the log from position 0.
async fn read_log(client: &StoreClient) -> Vec<RecordedEvent> {
    let deadline = time::now() + MUST_HAPPEN_WITHIN;
    loop {
        match client.read_all(0, 1000).await {
            Ok(Ok(events)) => return events,
            Err(CallError::Rpc(RpcError::Timeout { .. })) => {}
            other => panic!("reading the log answered {other:?}"),
        }
        assert!(time::now() < deadline, "the log could not be read");
    }
}

/// Collects pushes until the subscriber's cursor reaches `end`; subscribes again from its
/// cursor after a silence (a push is a datagram: it may be lost, and a restarted store forgets
/// its subscribers), as the driver asks of subscribers. Returns the events pushed, each once.
async fn follow_until(subscriber: &StoreClient, cursor: &mut u64, end: u64) -> Vec<RecordedEvent> {
    let deadline = time::now() + MUST_HAPPEN_WITHIN;
    let mut received = Vec::new();
    while *cursor < end {
        assert!(
            time::now() < deadline,
            "pushes stopped at {cursor}, before {end}"
        );
        match subscriber.next_push(Duration::from_millis(300)).await {
            Some(Push { events }) => {
                for event in events {
                    // A duplicate or a replay below the cursor is skipped; a gap waits for the
                    // resubscription below.
                    if event.position == *cursor {
                        *cursor += 1;
                        received.push(event);
                    }
                }
            }
            None => {
                let _ = subscriber.subscribe(*cursor).await;
            }
        }
    }
    received
}

#[test]
fn appends_are_acknowledged_with_optimistic_concurrency_read_back_and_pushed() {
    // Goal: on real UDP and real files, appends are acknowledged once durable, a stale
    // expected version is refused and writes nothing, reads give the events back in order, and
    // a subscriber gets the history and then each new commit as pushes.
    let root = TempRoot::new("acknowledged");
    bounded(async {
        let system = start(&root);
        let client_node = system.cluster.id("client").expect("the client node");
        run_as(client_node, async {
            let client = StoreClient::bind(system.server, CALL_TIMEOUT).expect("a client socket");
            system.wait_until_opened(1).await;
            wait_until_serving(&client).await;

            let placed = append_definitely(
                &client,
                &append(
                    "order-1",
                    ExpectedVersion::NoStream,
                    vec![event(1, "placed")],
                ),
            )
            .await
            .expect("the first append is acknowledged");
            assert_eq!((placed.first_version, placed.first_position), (0, 0));
            let paid = append_definitely(
                &client,
                &append(
                    "order-1",
                    ExpectedVersion::Exactly(0),
                    vec![event(2, "paid")],
                ),
            )
            .await
            .expect("an append at the stream's version is acknowledged");
            assert_eq!((paid.first_version, paid.first_position), (1, 1));

            // A writer that read version 0 and missed "paid" is refused, and nothing is stored.
            let stale = append_definitely(
                &client,
                &append(
                    "order-1",
                    ExpectedVersion::Exactly(0),
                    vec![event(3, "paid")],
                ),
            )
            .await;
            assert_eq!(
                stale,
                Err(AppendError::WrongExpectedVersion {
                    expected: ExpectedVersion::Exactly(0),
                    current: Some(1),
                })
            );
            let recreate = append_definitely(
                &client,
                &append(
                    "order-1",
                    ExpectedVersion::NoStream,
                    vec![event(4, "placed")],
                ),
            )
            .await;
            assert!(
                matches!(recreate, Err(AppendError::WrongExpectedVersion { .. })),
                "{recreate:?}"
            );

            // A batch is stored whole, in order.
            let batch = append_definitely(
                &client,
                &append(
                    "order-2",
                    ExpectedVersion::Any,
                    vec![event(5, "placed"), event(6, "cancelled")],
                ),
            )
            .await
            .expect("a batch is acknowledged");
            assert_eq!(
                (
                    batch.first_position,
                    batch.last_position,
                    batch.last_version
                ),
                (2, 3, 1)
            );

            let stream = client.read_stream("order-1", 0, 10).await;
            let stream = stream.expect("an answer").expect("a stream read");
            let ids: Vec<(u64, EventId)> = stream
                .iter()
                .map(|event| (event.version, event.data.event_id))
                .collect();
            assert_eq!(ids, [(0, EventId(1)), (1, EventId(2))]);
            let log = read_log(&client).await;
            let positions: Vec<(u64, EventId)> = log
                .iter()
                .map(|event| (event.position, event.data.event_id))
                .collect();
            let expected = [1, 2, 5, 6].map(EventId);
            let expected: Vec<(u64, EventId)> = (0..).zip(expected).collect();
            assert_eq!(positions, expected);
            assert_eq!(
                log[3].data,
                event(6, "cancelled"),
                "the payload round-trips"
            );

            // A subscriber from the start: the history first, then what commits later.
            let subscriber =
                StoreClient::bind(system.server, CALL_TIMEOUT).expect("a subscriber socket");
            assert_eq!(subscriber.subscribe(0).await, Ok(Ok(())));
            let mut cursor = 0;
            let history = follow_until(&subscriber, &mut cursor, 4).await;
            assert_eq!(history, log);
            let shipped = append_definitely(
                &client,
                &append(
                    "order-1",
                    ExpectedVersion::Exactly(1),
                    vec![event(7, "shipped")],
                ),
            )
            .await
            .expect("an append after the subscription");
            let live = follow_until(&subscriber, &mut cursor, 5).await;
            assert_eq!(live.len(), 1);
            assert_eq!(live[0].position, shipped.first_position);
            assert_eq!(live[0].data, event(7, "shipped"));
        })
        .await;
        let commits = system
            .reports
            .count(|event| matches!(event, NodeEvent::Committed { appends, .. } if *appends > 0));
        assert!(commits >= 1, "{:?}", system.reports.all());
    });
}

#[test]
fn a_killed_store_keeps_every_acknowledged_event_and_answers_retries_with_the_first_result() {
    // Goal: after the store node's process dies (every task aborted, its socket and files
    // dropped) and starts again on the same folder, every acknowledged event is read back in
    // order; a retry of an acknowledged append with the same event ids is answered with its
    // original result and stores nothing twice; a new append goes on after the old ones; and
    // a subscriber that subscribes again from its cursor gets it.
    let root = TempRoot::new("kill-restart");
    bounded(async {
        let system = start(&root);
        let client_node = system.cluster.id("client").expect("the client node");
        run_as(client_node, async {
            let client = StoreClient::bind(system.server, CALL_TIMEOUT).expect("a client socket");
            let subscriber =
                StoreClient::bind(system.server, CALL_TIMEOUT).expect("a subscriber socket");
            system.wait_until_opened(1).await;
            wait_until_serving(&client).await;

            // A few streams, each append at the version its writer read.
            let mut requests = Vec::new();
            let mut acknowledged = Vec::new();
            for step in 0..12u64 {
                let stream = format!("account-{}", step % 3);
                let version = step / 3;
                let expected = match version {
                    0 => ExpectedVersion::NoStream,
                    _ => ExpectedVersion::Exactly(version - 1),
                };
                let request = append(
                    &stream,
                    expected,
                    vec![event(100 + u128::from(step), "moved")],
                );
                let appended = append_definitely(&client, &request)
                    .await
                    .expect("acknowledged");
                assert_eq!(
                    (appended.first_version, appended.first_position),
                    (version, step)
                );
                requests.push(request);
                acknowledged.push(appended);
            }
            assert_eq!(subscriber.subscribe(0).await, Ok(Ok(())));
            let mut cursor = 0;
            follow_until(&subscriber, &mut cursor, 12).await;
            let before = read_log(&client).await;
            assert_eq!(before.len(), 12);

            system.store.kill().await;
            assert!(!system.store.is_running());
            // Nothing answers while the node is down.
            let hasty = StoreClient::bind(system.server, Duration::from_millis(100))
                .expect("a client socket");
            let down = hasty.read_all(0, 1).await;
            assert!(
                matches!(down, Err(CallError::Rpc(RpcError::Timeout { .. }))),
                "a killed store answered {down:?}"
            );
            system.store.restart().await;
            system.wait_until_opened(2).await;
            wait_until_serving(&client).await;

            let after = read_log(&client).await;
            assert_eq!(
                after, before,
                "every acknowledged event, in order, unchanged"
            );
            for (request, appended) in requests.iter().zip(&acknowledged) {
                let stream = client
                    .read_stream(&request.stream, appended.first_version, 1)
                    .await;
                let stream = stream.expect("an answer").expect("a stream read");
                assert_eq!(stream.len(), 1);
                assert_eq!(stream[0].position, appended.first_position);
                assert_eq!(stream[0].data, request.events[0]);
            }

            // Retries of acknowledged appends, as a client that lost the answers sends them:
            // the expected version no longer holds, yet the answer is the original one.
            for index in [0, 7, 11] {
                let retry = append_definitely(&client, &requests[index]).await;
                assert_eq!(retry, Ok(acknowledged[index]), "retry of append {index}");
            }
            assert_eq!(read_log(&client).await.len(), 12, "a retry stores nothing");

            let next = append_definitely(
                &client,
                &append(
                    "account-0",
                    ExpectedVersion::Exactly(3),
                    vec![event(200, "moved")],
                ),
            )
            .await
            .expect("a new append after the restart");
            assert_eq!((next.first_version, next.first_position), (4, 12));

            // The restarted store forgot its subscribers: the subscriber notices the silence
            // and subscribes again from its cursor.
            let resumed = follow_until(&subscriber, &mut cursor, 13).await;
            assert_eq!(resumed.len(), 1);
            assert_eq!(resumed[0].data.event_id, EventId(200));
        })
        .await;

        let reports = system.reports.all();
        let opened: Vec<u64> = reports
            .iter()
            .filter_map(|event| match event {
                NodeEvent::Opened { report } => Some(report.events),
                _ => None,
            })
            .collect();
        assert_eq!(opened, [0, 12], "recovery found every event on disk");
        assert_eq!(
            system
                .reports
                .count(|event| matches!(event, NodeEvent::RetryRecognized)),
            3
        );
        assert!(!reports.iter().any(|event| matches!(
            event,
            NodeEvent::Halted { .. } | NodeEvent::OpenFailed { .. }
        )));
        // The events lived in a real file, in the store node's data folder.
        let log = std::fs::metadata(root.0.join("store").join(LOG_PATH)).expect("the log file");
        assert!(log.len() > 0);
    });
}

#[test]
fn appends_reads_and_pushes_larger_than_a_datagram_go_over_tcp() {
    // Goal: the store accepts payloads of 64 KiB and batches of them, reads return up to
    // 4,096 events, and a push up to 64; a real `Socket` carries each message in one UDP
    // datagram (at most 65,507 bytes) only when it fits, and a longer one over TCP, so all of
    // these work in the real build as they do in a simulation (where messages have no size
    // limit).
    let root = TempRoot::new("large");
    bounded(async {
        let system = start(&root);
        let client_node = system.cluster.id("client").expect("the client node");
        run_as(client_node, async {
            let client = StoreClient::bind(system.server, CALL_TIMEOUT).expect("a client socket");
            let subscriber =
                StoreClient::bind(system.server, CALL_TIMEOUT).expect("a subscriber socket");
            system.wait_until_opened(1).await;
            wait_until_serving(&client).await;
            let _ = subscriber.subscribe(0).await;

            // 8 events of 64 KiB in one append: half a megabyte each way of the call.
            let attachments: Vec<EventData> = (0..8u8)
                .map(|index| EventData {
                    payload: vec![index; 64 * 1024],
                    ..event(u128::from(index) + 1, "attachment")
                })
                .collect();
            let request = append("files", ExpectedVersion::NoStream, attachments.clone());
            let stored = append_definitely(&client, &request).await.expect("stored");
            assert_eq!(stored.first_position, 0);
            // 3,000 small events, in batches of 100 (the most an append takes): a read of
            // them all is ~300 KB.
            for batch in 0..30u128 {
                let events = (0..100)
                    .map(|index| event(100 + batch * 100 + index, "placed"))
                    .collect();
                let request = append(
                    &format!("orders-{batch}"),
                    ExpectedVersion::NoStream,
                    events,
                );
                append_definitely(&client, &request).await.expect("stored");
            }

            let deadline = time::now() + MUST_HAPPEN_WITHIN;
            let log = loop {
                match client.read_all(0, 4096).await {
                    Ok(Ok(events)) => break events,
                    Err(CallError::Rpc(RpcError::Timeout { .. })) => {}
                    other => panic!("reading the log answered {other:?}"),
                }
                assert!(time::now() < deadline, "the log could not be read");
            };
            assert_eq!(log.len(), 3_008, "every event, in one answer");
            for (index, event) in log.iter().take(8).enumerate() {
                assert_eq!(
                    event.data, attachments[index],
                    "attachment {index} read back whole"
                );
            }

            // The subscriber is pushed every event, the attachments in pushes of ~512 KiB.
            let mut cursor = 0;
            let pushed = follow_until(&subscriber, &mut cursor, 3_008).await;
            assert_eq!(pushed, log);
        })
        .await;
    });
}
