//! Every stored case in `corpus/` replays to its recorded verdict and trace hash.
//!
//! The cases were written by the release `dst` binary; this test runs in the debug build, so
//! it also shows that traces agree across builds. A behaviour change on purpose is blessed
//! with `dst corpus bless`; verdicts never change silently.

use std::path::Path;

#[test]
fn corpus_replays_to_the_recorded_verdicts_and_trace_hashes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus");
    let replayed = harness::testing::replay_corpus(&scenarios::registry(), &dir);
    assert!(replayed >= 1, "the corpus is empty");
}
