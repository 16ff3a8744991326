//! The reference model and its checks, the mutant catalogue, and a group-commit measurement.
//!
//! Mutants exist in simulation builds only (`--cfg madsim`): the tests of a mutant, and the
//! mutant cases of the others, are compiled there only; the rest runs in every build.

use patterns::event_sourcing::event::{
    AppendError, AppendRequest, EventData, EventId, ExpectedVersion, Limits,
};
use patterns::event_sourcing::memdisk::MemStore;
use patterns::event_sourcing::model::{check_log, diff, Model};
#[cfg(madsim)]
use patterns::event_sourcing::mutant::{Mutant, Mutants};
use patterns::event_sourcing::store::{Effect, StoreConfig};
#[cfg(madsim)]
use std::collections::BTreeSet;

fn request(stream: &str, expected: ExpectedVersion, ids: &[u128]) -> AppendRequest {
    let events = ids
        .iter()
        .map(|&id| EventData {
            event_id: EventId(id),
            event_type: "noted".to_owned(),
            schema_version: 1,
            payload: vec![],
        })
        .collect();
    AppendRequest {
        stream: stream.to_owned(),
        expected,
        events,
    }
}

#[test]
fn model_applies_appends_with_versions_retries_and_conflicts() {
    let limits = Limits::default();
    let mut model = Model::new();
    let first = model.append(&request("s", ExpectedVersion::NoStream, &[1, 2]), &limits);
    assert_eq!(
        first.clone().map(|a| (a.first_version, a.last_position)),
        Ok((0, 1))
    );
    let retry = model.append(&request("s", ExpectedVersion::NoStream, &[1, 2]), &limits);
    assert_eq!(retry, first);
    let partial = model.append(&request("s", ExpectedVersion::Any, &[2]), &limits);
    assert_eq!(
        partial,
        Err(AppendError::EventIdConflict {
            event_id: EventId(2)
        })
    );
    let stale = model.append(&request("s", ExpectedVersion::Exactly(0), &[3]), &limits);
    let current = Some(1);
    let expected = ExpectedVersion::Exactly(0);
    assert_eq!(
        stale,
        Err(AppendError::WrongExpectedVersion { expected, current })
    );
    model
        .append(&request("t", ExpectedVersion::Any, &[4]), &limits)
        .unwrap();
    assert_eq!(model.expected_now("s"), ExpectedVersion::Exactly(1));
    assert_eq!(model.read_stream("t", 0, 10)[0].position, 2);
    assert_eq!(model.read_all(1, 1).len(), 1);
    assert_eq!(check_log(model.events()), Ok(()));
}

#[test]
fn check_log_rejects_gaps_duplicates_and_misplaced_positions() {
    let limits = Limits::default();
    let mut model = Model::new();
    model
        .append(&request("s", ExpectedVersion::Any, &[1, 2, 3]), &limits)
        .unwrap();
    let good = model.events().to_vec();

    let mut gap = good.clone();
    gap.remove(1);
    assert!(check_log(&gap).unwrap_err().contains("position"));

    let mut duplicate_version = good.clone();
    duplicate_version[2].version = 1;
    assert!(check_log(&duplicate_version)
        .unwrap_err()
        .contains("version 1, expected 2"));

    assert_eq!(diff(&good, &good), Ok(()));
    assert!(diff(&good, &gap).is_err());
    assert!(diff(&good, &good[..2])
        .unwrap_err()
        .contains("expected 3 events, got 2"));
}

#[cfg(madsim)]
#[test]
fn mutants_have_unique_names_that_parse_back() {
    let names: BTreeSet<&str> = Mutant::all().iter().map(|m| m.as_str()).collect();
    assert_eq!(names.len(), 11);
    for mutant in Mutant::all() {
        assert_eq!(mutant.as_str().parse::<Mutant>(), Ok(*mutant));
        assert!(mutant.description().len() > 40, "{mutant} is documented");
    }
    let error = "ack-after-lunch".parse::<Mutant>().unwrap_err();
    assert_eq!(
        error.to_string(),
        "unknown event-sourcing mutant `ack-after-lunch`"
    );
    // One naming style across scenarios: the old snake_case names are unknown.
    assert!("ack_before_fsync".parse::<Mutant>().is_err());
    assert!(Mutants::default().is_empty(), "off by default");
    let json = serde_json_like(&Mutants::only(Mutant::DropAfterBad));
    assert_eq!(json, ["drop-after-bad"]);
}

/// The mutant names a config serializes, without pulling a JSON crate into the tests.
#[cfg(madsim)]
fn serde_json_like(mutants: &Mutants) -> Vec<&'static str> {
    mutants.iter().map(Mutant::as_str).collect()
}

/// Runs `clients` closed-loop writers (each resubmits when answered) for `appends` appends,
/// with the disk completing one operation per step; returns appends per commit (mean, max).
fn closed_loop(clients: u64, appends: u64) -> (f64, u64) {
    let mut mem = MemStore::open(StoreConfig::default()).unwrap();
    let mut next_id = 0u128;
    let mut submit = |mem: &mut MemStore, client: u64| {
        next_id += 1;
        let stream = format!("client-{client}");
        mem.append(request(&stream, ExpectedVersion::Any, &[next_id]));
    };
    for client in 0..clients {
        submit(&mut mem, client);
    }
    let mut answered = 0;
    while answered < appends {
        assert!(mem.step(), "the store has work while clients wait");
        for effect in mem.take_outputs() {
            if let Effect::Ack { request, result } = effect {
                result.unwrap();
                answered += 1;
                submit(&mut mem, (request - 1) % clients);
            }
        }
    }
    let stats = mem.store().stats();
    (
        stats.appends_per_commit_mean(),
        stats.appends_per_commit_max(),
    )
}

#[test]
fn group_commit_amortises_syncs_across_concurrent_writers() {
    // Goal: measure group commit. One writer gets one append per commit (two syncs each).
    // With n writers the writers split into two cohorts that alternate: while one cohort's
    // commit is in flight, the other cohort's answered writers gather for the next commit,
    // so a commit carries about n/2 appends on average.
    let mut report = Vec::new();
    for clients in [1, 4, 16, 64] {
        let (mean, max) = closed_loop(clients, 2000);
        report.push(format!(
            "{clients} writers: {mean:.2} appends/commit (max {max})"
        ));
        assert!(
            mean >= clients as f64 * 0.45,
            "{clients} writers: mean {mean}"
        );
        assert!(max <= clients);
    }
    eprintln!("{}", report.join("\n"));
}
