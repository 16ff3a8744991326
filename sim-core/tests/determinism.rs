//! Determinism: the same seed and configuration give the same trace hash, twice in one process
//! and across processes (the `insta` snapshot pins the hashes of fixed seeds; CI checks it in
//! debug and `.ci/run` again in release), and different seeds give different traces.
//!
//! The workload is chosen to be hard to keep deterministic: it iterates std `HashMap`s (whose
//! hasher madsim seeds only on a fresh thread), draws from several named streams, sleeps random
//! times on skewed clocks, and crashes, restarts and pauses nodes.
#![cfg(madsim)] // Replaces a blank line: buggify! sites are named by line, the snapshot pins them.
#![allow(clippy::disallowed_types)] // The point is to show that std HashMap order is seeded.

use rand::Rng;
use sim_core::{rng, run, time, trace, Report, SimConfig};
use std::collections::HashMap;
use std::time::Duration;

fn workload(seed: u64, config: SimConfig) -> Report {
    run(seed, config, |sim| async move {
        for index in 0..3u32 {
            let name = format!("node-{index}");
            let stream = format!("workload/{name}");
            sim.node(name)
                .clock(time::ClockConfig {
                    offset_ns: 0,
                    drift_ppm: i64::from(index) * 20_000 - 20_000,
                })
                .init(move || {
                    let stream = stream.clone();
                    async move {
                        let mut peers: HashMap<String, u64> = HashMap::new();
                        for peer in 0..16u64 {
                            peers.insert(format!("peer-{peer}"), peer);
                        }
                        for round in 0..20 {
                            // The iteration order of the map decides what is recorded.
                            let first: Vec<String> = peers.keys().take(3).cloned().collect();
                            let delay = rng::stream(stream.clone()).gen_range(1..20);
                            trace::note(&format!("round {round} {first:?} delay {delay}"), "");
                            time::sleep(Duration::from_millis(delay)).await;
                            if sim_core::buggify!() {
                                trace::note("buggified", "");
                            }
                        }
                    }
                })
                .build();
        }
        let mut faults = rng::stream(rng::FAULTS);
        for _ in 0..5 {
            sim.sleep(Duration::from_millis(faults.gen_range(5..40)))
                .await;
            let victim = sim.nodes()[faults.gen_range(0..3)];
            match faults.gen_range(0..4) {
                0 => sim.crash(victim),
                1 => sim.restart(victim),
                2 => sim.pause(victim),
                _ => sim.resume(victim),
            }
            sim.clock(victim)
                .jump_ns(faults.gen_range(-1_000_000..1_000_000));
        }
        sim.sleep(Duration::from_millis(500)).await;
        Ok(())
    })
}

fn config() -> SimConfig {
    let mut config = SimConfig::default();
    config.buggify.enabled = true;
    config
}

#[test]
fn determinism_same_seed_same_trace_hash_in_one_process() {
    for seed in 0..5 {
        let first = workload(seed, config());
        let second = workload(seed, config());
        assert!(first.outcome.is_pass(), "{}", first.outcome);
        assert!(first.events > 50, "the workload recorded too little");
        assert_eq!(first.trace_hash, second.trace_hash, "seed {seed}");
        assert_eq!(first.steps, second.steps, "seed {seed}");
        assert_eq!(first.sim_time_ns, second.sim_time_ns, "seed {seed}");
    }
}

#[test]
fn determinism_different_seeds_give_different_traces() {
    let hashes: std::collections::BTreeSet<u64> = (0..20)
        .map(|seed| workload(seed, config()).trace_hash)
        .collect();
    assert_eq!(hashes.len(), 20);
}

#[test]
fn determinism_hash_does_not_depend_on_keeping_or_printing_the_trace() {
    let plain = workload(7, config());
    let mut kept = config();
    kept.trace.keep = true;
    kept.trace.log = Some("trace".into());
    let kept = workload(7, kept);
    assert_eq!(plain.trace_hash, kept.trace_hash);
    let timeline = kept.timeline.expect("kept");
    assert_eq!(timeline.first_divergence(&timeline), None);
    assert!(timeline.to_string().contains("node-1"));
}

#[test]
fn determinism_across_processes_and_builds_matches_the_snapshot() {
    let lines: Vec<String> = (0..5)
        .map(|seed| {
            let report = workload(seed, config());
            format!(
                "seed {seed}: {:016x} events {} steps {} sim_ns {}",
                report.trace_hash, report.events, report.steps, report.sim_time_ns
            )
        })
        .collect();
    insta::assert_snapshot!("trace_hashes", lines.join("\n"));
}

#[test]
fn determinism_divergence_names_the_first_differing_event() {
    let mut a = config();
    a.trace.keep = true;
    let first = workload(1, a.clone()).timeline.unwrap();
    let second = workload(2, a).timeline.unwrap();
    let (index, _) = first
        .first_divergence(&second)
        .expect("seeds 1 and 2 differ");
    assert!(index < first.events.len());
}
