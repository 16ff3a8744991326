//! Coverage: the features a run reached, for guided search. Collecting it never changes the
//! run; the same run reaches the same features; a behaviour the other run lacks shows as
//! features of its own; interest points count and stay out of the trace hash.
#![cfg(madsim)]

use sim_core::coverage::{self, Coverage};
use sim_core::net::{Addr, Socket};
use sim_core::{run, Report, SimConfig};
use std::time::Duration;

/// A node that answers every number sent to its port 1 with the same number.
fn echo_server(sim: &sim_core::Sim) -> sim_core::NodeId {
    sim.node("server")
        .init(|| async {
            let socket = Socket::bind(1).expect("free port");
            loop {
                let (from, n): (Addr, u64) = socket.recv().await.expect("open");
                let _ = socket.send(from, &n);
            }
        })
        .build()
}

/// Two nodes ping-pong; with `crash`, the supervisor crashes the server half-way and restarts
/// it; with `interest`, the client marks each answer as an interest point.
fn ping_pong(seed: u64, collect: bool, crash: bool, interest: bool) -> Report {
    let mut config = SimConfig::default();
    config.trace.coverage = collect;
    run(seed, config, move |sim| async move {
        let server = echo_server(&sim);
        sim.node("client")
            .init(move || async move {
                let socket = Socket::bind(1).expect("free port");
                for n in 0..20u64 {
                    let _ = socket.send(Addr::new(server, 1), &n);
                    let answer =
                        sim_core::time::timeout(Duration::from_millis(200), socket.recv::<u64>())
                            .await;
                    if interest && answer.is_ok() {
                        coverage::interest("answered");
                    }
                }
            })
            .build();
        sim_core::time::sleep(Duration::from_millis(300)).await;
        if crash {
            sim.crash(server);
            sim_core::time::sleep(Duration::from_millis(300)).await;
            sim.restart(server);
        }
        sim_core::time::sleep(Duration::from_secs(5)).await;
        Ok(())
    })
}

/// A configuration that collects coverage.
fn collecting() -> SimConfig {
    let mut config = SimConfig::default();
    config.trace.coverage = true;
    config
}

fn features(report: &Report) -> &Coverage {
    report.coverage.as_ref().expect("coverage was on")
}

#[test]
fn coverage_changes_nothing_in_the_run_and_is_the_same_for_the_same_seed() {
    let without = ping_pong(7, false, true, false);
    let with = ping_pong(7, true, true, false);
    let again = ping_pong(7, true, true, false);
    assert!(with.outcome.is_pass(), "{}", with.outcome);
    assert!(without.coverage.is_none());
    assert_eq!(without.trace_hash, with.trace_hash);
    assert_eq!(without.events, with.events);
    assert_eq!(features(&with), features(&again));
    assert!(features(&with).count() > 10, "{:?}", features(&with));
}

#[test]
fn a_crash_shows_as_features_a_quiet_run_lacks() {
    let quiet = ping_pong(7, true, false, false);
    let crashed = ping_pong(7, true, true, false);
    assert!(
        features(&crashed).new_against(features(&quiet)) > 0,
        "a crash and a restart reached nothing new: {:?} vs {:?}",
        features(&crashed),
        features(&quiet)
    );
    assert_ne!(
        features(&crashed).fingerprint(),
        features(&quiet).fingerprint()
    );
}

#[test]
fn interest_points_are_features_outside_the_trace_hash() {
    let plain = ping_pong(7, true, false, false);
    let interested = ping_pong(7, true, false, true);
    assert_eq!(plain.trace_hash, interested.trace_hash);
    assert_eq!(features(&interested).new_against(features(&plain)), 1);
    // Outside a run, it does nothing (and does not panic).
    coverage::interest("outside");
}

#[test]
fn coverage_maps_merge_and_count_what_is_new() {
    let mut seen = Coverage::new();
    let mut run = Coverage::new();
    assert!(run.insert(1 << 50));
    assert!(!run.insert(1 << 50));
    assert!(run.insert_named("sometimes", "leader-elected"));
    assert_eq!(run.count(), 2);
    assert_eq!(run.new_against(&seen), 2);
    assert_eq!(seen.merge(&run), 2);
    assert_eq!(seen.merge(&run), 0);
    assert_eq!(run.new_against(&seen), 0);
    assert_eq!(seen.bits().count(), 2);
}

#[test]
fn ephemeral_port_numbers_are_not_features() {
    // Goal: a run that binds more sockets to port 0 than another reaches nothing new for it:
    // ephemeral ports count sockets like ids, and ids are not behaviour.
    let sockets = |count: u16| {
        run(3, collecting(), move |sim| async move {
            let server = echo_server(&sim);
            sim.node("client")
                .init(move || async move {
                    for n in 0..u64::from(count) {
                        let socket = Socket::bind(0).expect("an ephemeral port");
                        let _ = socket.send(Addr::new(server, 1), &n);
                        let _ = socket.recv::<u64>().await;
                    }
                })
                .build();
            sim_core::time::sleep(Duration::from_secs(2)).await;
            Ok(())
        })
    };
    let (few, many) = (sockets(3), sockets(9));
    assert!(few.outcome.is_pass(), "{}", few.outcome);
    assert_eq!(features(&many).new_against(features(&few)), 0);
}

#[test]
fn a_message_soon_after_a_restart_is_a_feature_one_long_after_is_not() {
    // Goal: how soon after its node's restart a behaviour happens is a feature (in doubling
    // buckets up to about a second), so that a search can climb toward a recovery window;
    // past the window it is only the behaviour.
    let after_restart = |delay_ms: u64| {
        run(5, collecting(), move |sim| async move {
            let server = echo_server(&sim);
            // The client starts with the server, so that by the restart its own start is
            // more than the window behind: only the server's restart can tell the runs apart.
            sim.node("client")
                .init(move || async move {
                    sim_core::time::sleep(Duration::from_millis(1_600 + delay_ms)).await;
                    let socket = Socket::bind(1).expect("free port");
                    let _ = socket.send(Addr::new(server, 1), &1u64);
                    let _ = socket.recv::<u64>().await;
                })
                .build();
            sim_core::time::sleep(Duration::from_millis(1_300)).await;
            sim.crash(server);
            sim_core::time::sleep(Duration::from_millis(300)).await;
            sim.restart(server);
            sim_core::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        })
    };
    let (soon, late) = (after_restart(2), after_restart(2_000));
    assert!(soon.outcome.is_pass(), "{}", soon.outcome);
    assert!(
        features(&soon).new_against(features(&late)) > 0,
        "a message 2 ms after the restart reached nothing one 2 s after did not"
    );
    assert_eq!(features(&late).new_against(features(&soon)), 0);
}
