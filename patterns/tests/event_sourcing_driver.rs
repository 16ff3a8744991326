//! The event store's driver on sim-core: a store node and a client node, scripted.
#![cfg(madsim)]

use patterns::event_sourcing::driver::{
    run_node, CallError, NodeConfig, NodeEvent, NodeHook, Refusal, StoreClient, LOG_PATH,
    STORE_PORT,
};
use patterns::event_sourcing::event::{AppendRequest, EventData, EventId, ExpectedVersion};
use sim_core::net::Addr;
use sim_core::{run, time, NodeId, Sim, SimConfig, Violation};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_millis(300);

fn note(id: u128, stream: &str, expected: ExpectedVersion) -> AppendRequest {
    AppendRequest {
        stream: stream.into(),
        expected,
        events: vec![EventData {
            event_id: EventId(id),
            event_type: "noted".into(),
            schema_version: 1,
            payload: vec![id as u8; 700],
        }],
    }
}

/// A store node whose events are collected, and a client node.
fn nodes(sim: &Sim, events: Arc<Mutex<Vec<NodeEvent>>>) -> (NodeId, NodeId) {
    let hook: NodeHook = Arc::new(move |event: &NodeEvent| {
        events.lock().unwrap().push(event.clone());
    });
    let store = sim
        .node("store")
        .init(move || run_node(NodeConfig::default(), hook.clone()))
        .build();
    (store, sim.node("client").build())
}

fn disk_latency() -> SimConfig {
    let mut config = SimConfig::default();
    config.disk.faults.latency = Some(sim_core::disk::Latency {
        min_ms: 2,
        max_ms: 4,
    });
    config
}

/// Waits until the node serves (it answers "recovering" while it opens its files).
async fn wait_until_serving(client: &StoreClient) {
    loop {
        let answer = client.read_all(0, 1).await;
        if !matches!(
            answer,
            Err(CallError::Refused(Refusal::Recovering)) | Err(CallError::Rpc(_)) | Ok(Err(_))
        ) {
            return;
        }
        time::sleep(Duration::from_millis(5)).await;
    }
}

fn check(outcome: Result<(), String>) -> Result<(), Violation> {
    outcome.map_err(|message| Violation::new("driver", message))
}

#[test]
fn node_serves_appends_and_reads_and_keeps_them_through_a_crash() {
    // Goal: an acknowledged append is readable, stays after a crash, and a retry with the same
    // event ids after the restart returns the original result.
    let report = run(1, disk_latency(), |sim| async move {
        let (store, client) = nodes(&sim, Arc::default());
        let server = Addr::new(store, STORE_PORT);
        let first = sim.spawn_on(client, async move {
            let client = StoreClient::bind(server, TIMEOUT).unwrap();
            wait_until_serving(&client).await;
            client
                .append(&note(1, "s", ExpectedVersion::NoStream))
                .await
        });
        let appended = first.await.unwrap().unwrap().unwrap();
        sim.restart(store);
        let second = sim.spawn_on(client, async move {
            let client = StoreClient::bind(server, TIMEOUT).unwrap();
            wait_until_serving(&client).await;
            let retry = client
                .append(&note(1, "s", ExpectedVersion::NoStream))
                .await;
            let events = client.read_stream("s", 0, 10).await;
            (retry.unwrap(), events)
        });
        let (retry, events) = second.await.unwrap();
        check(if retry != Ok(appended) {
            Err(format!("retry answered {retry:?}, first {appended:?}"))
        } else {
            match events {
                Ok(Ok(events)) if events.len() == 1 => Ok(()),
                other => Err(format!("read after restart: {other:?}")),
            }
        })
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
}

#[test]
fn concurrent_appends_share_a_commit() {
    // Goal: appends that arrive while a commit's disk operations are in flight go into the
    // next commit together (the driver keeps taking requests during I/O).
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let report = run(2, disk_latency(), move |sim| async move {
        let (store, client) = nodes(&sim, seen);
        let server = Addr::new(store, STORE_PORT);
        let task = sim.spawn_on(client, async move {
            let client = StoreClient::bind(server, TIMEOUT).unwrap();
            wait_until_serving(&client).await;
            let appends: Vec<AppendRequest> = (1..=8)
                .map(|id| note(id, "audit", ExpectedVersion::Any))
                .collect();
            let calls = appends.iter().map(|append| client.append(append));
            futures::future::join_all(calls).await
        });
        let answers = task.await.unwrap();
        let acked = answers.iter().filter(|a| matches!(a, Ok(Ok(_)))).count();
        check((acked == 8).then_some(()).ok_or(format!("{answers:?}")))
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    let largest = events
        .lock()
        .unwrap()
        .iter()
        .filter_map(|event| match event {
            NodeEvent::Committed { appends, .. } => Some(*appends),
            _ => None,
        })
        .max();
    assert!(largest > Some(1), "largest commit: {largest:?} appends");
}

#[test]
fn node_refuses_to_serve_a_corrupt_log() {
    // Goal: bit rot in the synced log makes the restarted node answer every request with a
    // clear corrupt-log refusal, and report it; it never serves the damaged data.
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let report = run(3, disk_latency(), move |sim| async move {
        let (store, client) = nodes(&sim, seen);
        let server = Addr::new(store, STORE_PORT);
        let first = sim.spawn_on(client, async move {
            let client = StoreClient::bind(server, TIMEOUT).unwrap();
            wait_until_serving(&client).await;
            client
                .append(&note(1, "s", ExpectedVersion::NoStream))
                .await
        });
        first.await.unwrap().unwrap().unwrap();
        sim.disk(store).corrupt_sector(LOG_PATH, 1).unwrap();
        sim.restart(store);
        sim.sleep(Duration::from_millis(100)).await;
        let read = sim.spawn_on(client, async move {
            let client = StoreClient::bind(server, TIMEOUT).unwrap();
            client.read_all(0, 10).await
        });
        check(match read.await.unwrap() {
            Err(CallError::Refused(Refusal::CorruptLog { detail }))
                if detail.contains("corrupt") =>
            {
                Ok(())
            }
            other => Err(format!("read of a corrupt log answered {other:?}")),
        })
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    let refused = events
        .lock()
        .unwrap()
        .iter()
        .any(|event| matches!(event, NodeEvent::RefusedCorrupt { .. }));
    assert!(refused, "the node did not report the corruption");
}
