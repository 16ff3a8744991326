//! The `e2e` scenario: the composed system passes under its fault budget, and each of its
//! mutants (bugs in the glue between the patterns) is caught by the invariant it breaks.

use harness::testing::{check, expect_caught};
use harness::Scenario;
use scenarios::e2e::{EndToEnd, Topology};

#[test]
fn the_composed_system_survives_its_fault_budget() {
    // Goal: the unmutated system keeps every invariant over generated cases (DST_CASES).
    check(EndToEnd::default());
}

#[test]
fn every_mutant_is_caught_by_the_invariant_it_breaks() {
    // Measured first catches: see `dst mutants e2e --seeds 500`.
    let expected = [
        ("adapter-keys-by-request", "command-once"),
        ("principal-from-body", "principal-recorded"),
        ("adapter-acks-on-timeout", "acked-durable"),
        ("ledger-serves-stale-on-error", "read-your-writes"),
        ("ledger-skips-reregistration", "listed-after-heal"),
        ("adapter-retries-commands", "retries-bounded"),
        ("retries-bypass-breaker", "breaker-respected"),
        ("ledger-drops-token", "read-your-writes"),
        ("ledger-view-not-restarted", "visible-after-heal"),
    ];
    let listed: Vec<String> = Scenario::spec(&EndToEnd::default())
        .mutants
        .iter()
        .map(|mutant| mutant.name.clone())
        .collect();
    assert_eq!(
        listed,
        expected
            .iter()
            .map(|(m, _)| m.to_string())
            .collect::<Vec<_>>()
    );
    for (mutant, invariant) in expected {
        let report = expect_caught(&EndToEnd::default(), mutant, invariant, 500);
        println!("{mutant}: caught by seed {}", report.failures[0].seed);
    }
}

#[test]
fn node_counts_are_configurable() {
    // Goal: another topology builds, runs and keeps every invariant (DST_CASES seeds).
    let scenario = EndToEnd {
        topology: Topology {
            gateways: 1,
            accounts: 3,
            ledgers: 1,
            clients: 5,
        },
    };
    assert!(Scenario::spec(&scenario)
        .nodes
        .iter()
        .any(|node| node == "accounts-3"));
    check(scenario);
    let empty = Topology {
        clients: 0,
        ..Topology::default()
    };
    assert_eq!(
        empty.validate(),
        Err("clients: 0, not in 1..=26".to_string())
    );
}
