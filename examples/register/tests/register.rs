//! The register scenario under the harness: the correct system passes generated cases under
//! every fault kind of its budget, and each mutant is caught, shrunk and replayed exactly.

use harness::case::DynScenario;
use harness::corpus;
use harness::{RunOptions, VerdictKind};
use register_example::Register;

#[test]
fn register_passes_generated_cases_under_faults() {
    harness::testing::check(Register);
}

/// Checks that `mutant` is caught, shrunk to a small plan, and that the saved case replays to
/// the same verdict and trace hash.
fn caught_and_replayed(mutant: &str) {
    let report = harness::testing::expect_caught(&Register, mutant, "linearizable", 500);
    let failure = &report.failures[0];
    assert_eq!(failure.verdict, "safety", "{failure:?}");
    assert_eq!(failure.invariant.as_deref(), Some("linearizable"));
    assert!(failure.episodes.1 <= 2, "plan not shrunk: {}", failure.plan);
    let path = failure.file.as_ref().expect("the failing case is saved");
    let case_file = corpus::load(std::path::Path::new(path)).unwrap();
    assert_eq!(case_file.verdict, VerdictKind::Safety);
    assert_eq!(case_file.mutant.as_deref(), Some(mutant));
    harness::testing::replay_matches(&Register, &case_file).unwrap();
}

#[test]
fn mutant_ack_before_replicate_is_caught() {
    caught_and_replayed("ack-before-replicate");
}

#[test]
fn mutant_read_from_backup_is_caught() {
    caught_and_replayed("read-from-backup");
}

#[test]
fn mutant_no_recovery_is_caught() {
    caught_and_replayed("no-recovery");
}

#[test]
fn without_faults_the_mutants_that_need_a_crash_pass() {
    // A check that passes for the wrong reason is a defect: `no-recovery` only matters after
    // a crash, so without faults it must pass.
    for seed in 0..20 {
        let case = Register.generate(
            seed,
            Some("no-recovery".into()),
            std::collections::BTreeSet::new(),
        );
        let result = Register.run_case(&case, &RunOptions::default()).unwrap();
        assert!(result.verdict.is_pass(), "seed {seed}: {}", result.verdict);
    }
}

#[test]
fn mutant_epoch_churn_is_caught_by_availability() {
    // It needs a Fetch whose answer is lost, or a duplicated or late one: 192 of 5,000 seeds
    // caught it when measured, the first at seed 81.
    let report =
        harness::testing::expect_caught(&Register, "epoch-churn", "available-after-heal", 500);
    let failure = &report.failures[0];
    assert_eq!(failure.verdict, "liveness", "{failure:?}");
}
