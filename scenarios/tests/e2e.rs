//! The `e2e` scenario: the composed system passes under its fault budget, and each of its
//! mutants (bugs in the glue between the patterns) declares the invariant it breaks (the
//! scoreboard test, tests/scoreboard.rs, shows each caught by it).

use harness::testing::check;
use harness::Scenario;
use scenarios::e2e::{EndToEnd, Topology};

#[test]
fn the_composed_system_survives_its_fault_budget() {
    // Goal: the unmutated system keeps every invariant over generated cases (DST_CASES).
    check(EndToEnd::default());
}

#[test]
fn every_mutant_declares_the_invariant_it_breaks() {
    // Goal: the mutants, in order, each with the invariant meant to catch it. That each is
    // caught by it is the scoreboard test's to show (tests/scoreboard.rs; measured first
    // catches: `dst mutants e2e --seeds 500`).
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
        ("adapter-replays-by-request-id", "acked-durable"),
        ("ledger-answers-while-opening", "read-your-writes"),
        ("ledger-replays-by-request-id", "read-your-writes"),
    ];
    let listed: Vec<(String, Option<String>)> = Scenario::spec(&EndToEnd::default())
        .mutants
        .into_iter()
        .map(|mutant| (mutant.name, mutant.breaks))
        .collect();
    let expected: Vec<(String, Option<String>)> = expected
        .iter()
        .map(|(mutant, invariant)| (mutant.to_string(), Some(invariant.to_string())))
        .collect();
    assert_eq!(listed, expected);
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
