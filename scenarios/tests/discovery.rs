//! The `discovery` scenario: it passes under its fault budget, each mutant declares the
//! invariant it breaks (tests/scoreboard.rs shows each caught by it), and the check no mutant
//! reaches fails on a hand-made input.

use harness::testing::check;
use harness::Scenario;
use patterns::discovery::mutant::Mutant;
use patterns::discovery::registry::{Answer, WatchEvent};
use patterns::discovery::{Key, Record, Status};
use scenarios::discovery::{never_registered, watch_gap, Discovery};
use std::collections::BTreeMap;

#[test]
fn the_registry_survives_its_fault_budget() {
    // Goal: the unmutated registry keeps every invariant over generated cases (DST_CASES).
    check(Discovery);
}

#[test]
fn every_mutant_is_listed_and_declares_the_invariant_it_breaks() {
    // That each is caught by the invariant it declares is the scoreboard test's to show
    // (tests/scoreboard.rs).
    let listed: BTreeMap<String, Option<String>> = Scenario::spec(&Discovery)
        .mutants
        .into_iter()
        .map(|mutant| (mutant.name, mutant.breaks))
        .collect();
    for mutant in Mutant::all() {
        let name = mutant.as_str();
        assert!(listed.contains_key(name), "{name} is not listed");
        // Measured first catches (`dst mutants discovery --seeds 500`, seeds to catch): 1,
        // 17, 2, 3, 1, 287 (hard), 1, 197 (hard), 169 (hard). A revived heartbeat flaps the record between
        // replicas (the others' expiry comes back by anti-entropy), so the views never agree.
        let expected = match mutant {
            Mutant::LeaseResetOnSync | Mutant::StaleHeartbeatRevives => "views-converge",
            Mutant::ExpiryOnWallClock
            | Mutant::EvictAfterPause
            | Mutant::RestoredLeaseNotRefreshed => "no-premature-expiry",
            Mutant::StaleRegistrationAccepted => "replica-monotonic",
            Mutant::EmptyAnswerWipesCache | Mutant::ResyncReplacesCache => "cache-monotonic",
            Mutant::WatchResumeSkipsOne => "watch-gapless",
        };
        assert_eq!(listed[name], Some(expected.to_string()), "{name}");
    }
}

#[test]
fn a_watch_that_skips_or_repeats_an_event_is_refused() {
    // Goal: `watch-gapless`'s own rule on hand-made answers.
    let event = |replica: u64, seq: u64| WatchEvent {
        replica,
        seq,
        key: Key::new("orders", "instance-1"),
        record: Record {
            address: "instance-1:1".into(),
            incarnation: 1,
            status: Status::Up,
        },
    };
    assert_eq!(watch_gap(2, 4, &[event(2, 5), event(2, 6)]), None);
    assert_eq!(watch_gap(0, 0, &[event(3, 1)]), None);
    assert!(watch_gap(2, 4, &[event(2, 6)]).is_some());
    assert!(watch_gap(2, 4, &[event(2, 5), event(2, 5)]).is_some());
    assert!(watch_gap(2, 4, &[event(1, 5)]).is_some());
}

#[test]
fn an_up_record_nobody_registered_is_refused() {
    // Goal: `registered-before-discovered` fails on an answer showing an incarnation, or an
    // address, no instance registered.
    let registered = BTreeMap::from([(("instance-1".to_string(), 2), "instance-1:2".to_string())]);
    let record = |incarnation: u64, address: &str, status: Status| {
        (
            Key::new("orders", "instance-1"),
            Record {
                address: address.into(),
                incarnation,
                status,
            },
        )
    };
    let answer = |records| Answer {
        replica: 1,
        records,
    };
    assert!(never_registered(
        &registered,
        &answer(vec![record(2, "instance-1:2", Status::Up)])
    )
    .is_empty());
    assert_eq!(
        never_registered(
            &registered,
            &answer(vec![record(3, "instance-1:2", Status::Up)])
        )
        .len(),
        1
    );
    assert_eq!(
        never_registered(
            &registered,
            &answer(vec![record(2, "elsewhere:1", Status::Up)])
        )
        .len(),
        1
    );
    // A down record claims nothing about a registration.
    let down = Status::Down(patterns::discovery::DownReason::Expired);
    assert!(never_registered(&registered, &answer(vec![record(7, "x", down)])).is_empty());
}
