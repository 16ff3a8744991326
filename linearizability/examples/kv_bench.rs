//! Measures the checker on generated key-value histories shaped like the issue's: 50
//! clients, 20 keys, 5,000 operations with 2% indeterminate, one illegal key hidden among
//! hard keys (40 concurrent puts then an impossible read: unknown alone under any
//! practical budget).
//!
//! `cargo run --release -p linearizability --example kv_bench`

use linearizability::generate::{kv_history, KvHistoryShape};
use linearizability::models::KeyValue;
use linearizability::{check_parallel, check_with, CheckOptions, PartitionVerdict};
use std::time::Duration;

fn main() {
    let model = KeyValue::new();
    for hard_key_count in [0, 4, 16] {
        let shape = KvHistoryShape {
            hard_key_count,
            ..KvHistoryShape::default()
        };
        let history = kv_history(&shape);
        for threads in [1, 2] {
            let options = CheckOptions {
                threads,
                measure_time: true,
                ..CheckOptions::default()
            };
            let report = if threads == 1 {
                check_with(&model, &history, &options)
            } else {
                check_parallel(&model, &history, &options)
            };
            let illegal = report.partition("0").expect("key 0 is checked");
            let verdict = match &report.result {
                r if r.is_illegal() => "illegal",
                r if r.is_ok() => "linearizable",
                _ => "unknown",
            };
            let stopped = report
                .partitions
                .iter()
                .filter(|p| p.verdict == PartitionVerdict::Stopped)
                .count();
            println!(
                "{} ops, {hard_key_count:>2} hard keys, {threads} thread(s): {verdict} in {:.1} ms; \
                 {} steps in {} rounds; key 0: {} steps, {:.1} ms; {stopped} partitions stopped",
                history.len(),
                ms(report.elapsed),
                report.steps,
                report.rounds,
                illegal.steps,
                ms(illegal.elapsed),
            );
        }
    }
}

fn ms(duration: Option<Duration>) -> f64 {
    duration.unwrap_or_default().as_secs_f64() * 1_000.0
}
