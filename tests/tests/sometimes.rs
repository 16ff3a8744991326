//! Every scenario's sometimes-invariants are judged in `cargo test`: one batch of exactly the
//! scenario's batch minimum of seeds (the measured window in which every sometimes-invariant
//! is reached), unmutated, under the whole fault model. A change that makes a state
//! unreachable (a fault that no longer bites, a branch no longer taken) fails here, not only in
//! a long hunt.

use harness::batch::{run_batch, BatchOptions};

#[test]
fn every_scenario_reaches_every_sometimes_invariant_within_its_batch_minimum() {
    let mut problems = Vec::new();
    for scenario in scenarios::registry().all() {
        let spec = scenario.spec();
        let options = BatchOptions {
            seeds: spec.sometimes_batch_min as u64,
            shrink: false,
            ..BatchOptions::default()
        };
        let report = run_batch(scenario.as_ref(), &options, &|| {});
        if !report.sometimes_judged {
            problems.push(format!(
                "{}: not judged: {}",
                spec.name,
                report.sometimes_reason.as_deref().unwrap_or("?")
            ));
        } else if !report.sometimes_unmet.is_empty() {
            problems.push(format!(
                "{}: never reached in {} seeds: {}",
                spec.name,
                report.seeds_run,
                report.sometimes_unmet.join(", ")
            ));
        }
        if report.failed > 0 {
            problems.push(format!(
                "{}: {} of {} seeds failed (first: seed {})",
                spec.name, report.failed, report.seeds_run, report.failures[0].seed
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
