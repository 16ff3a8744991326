//! The `dst` command line, run as a user runs it: exit codes, JSON on stdout, clean one-line
//! errors for bad input, and a failing case saved by one process and replayed exactly by
//! another.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn dst(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dst"))
        .args(args)
        .output()
        .expect("dst runs")
}

fn stdout_json(output: &Output) -> Value {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {text}"))
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A bad-input error: status 2, a `dst: error:` or usage line, no panic.
fn assert_input_error(output: &Output, needle: &str) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(!text.contains("panicked"), "{text}");
    assert!(text.contains(needle), "{text}");
}

#[test]
fn list_json_names_scenarios_with_invariants_and_mutants() {
    let output = dst(&["list", "--json"]);
    assert!(output.status.success());
    let list = stdout_json(&output);
    let register = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "register")
        .expect("register is listed");
    let invariants = register["invariants"].as_array().unwrap();
    assert!(invariants.contains(&"linearizable".into()));
    assert!(register["mutants"]
        .as_array()
        .unwrap()
        .contains(&"no-recovery".into()));
}

#[test]
fn run_json_reports_the_batch() {
    let args = [
        "run",
        "register",
        "--seeds",
        "12",
        "--json",
        "--check-determinism",
    ];
    let output = dst(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = stdout_json(&output);
    assert_eq!(report["scenario"], "register");
    assert_eq!(report["seeds_run"], 12);
    assert_eq!(report["passed"], 12);
    assert_eq!(report["failed"], 0);
    assert!(report["failures"].as_array().unwrap().is_empty());
    assert!(report["sim_seconds"].as_f64().unwrap() > 0.0);
    assert!(report.get("sometimes_unmet").is_some());
    assert!(report.get("wall_seconds").is_some());
}

#[test]
fn shards_cover_the_seed_range() {
    let mut total = 0;
    for shard in ["1/3", "2/3", "3/3"] {
        let output = dst(&[
            "run", "register", "--seeds", "10", "--shard", shard, "--json",
        ]);
        assert!(output.status.success(), "{}", stderr(&output));
        total += stdout_json(&output)["seeds_run"].as_u64().unwrap();
    }
    assert_eq!(total, 10);
}

#[test]
fn bad_input_gives_a_one_line_error_and_status_2() {
    assert_input_error(&dst(&["run", "no-such-scenario"]), "unknown scenario");
    assert_input_error(
        &dst(&["run", "register", "--mutant", "nope"]),
        "unknown mutant",
    );
    assert_input_error(
        &dst(&["run", "register", "--seeds", "many"]),
        "invalid value",
    );
    assert_input_error(
        &dst(&["run", "register", "--faults", "floods"]),
        "unknown fault kind",
    );
    assert_input_error(&dst(&["run", "register", "--shard", "3/2"]), "expected K/N");
    assert_input_error(
        &dst(&["replay", "/no/such/file.json"]),
        "/no/such/file.json",
    );
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.json");
    std::fs::write(&corrupt, "{\"version\": 1, \"scenario\": ").unwrap();
    assert_input_error(&dst(&["replay", corrupt.to_str().unwrap()]), "corrupt.json");
    std::fs::write(&corrupt, "{\"version\": 7}").unwrap();
    assert_input_error(&dst(&["replay", corrupt.to_str().unwrap()]), "version 7");
}

#[test]
fn a_failure_is_saved_then_replayed_shrunk_and_blessed_by_other_processes() {
    let dir = tempfile::tempdir().unwrap();
    let corpus_dir = dir.path().to_str().unwrap();
    let run = dst(&[
        "run",
        "register",
        "--mutant",
        "no-recovery",
        "--seeds",
        "200",
        "--fail-fast",
        "--jobs",
        "1",
        "--corpus",
        corpus_dir,
        "--json",
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(
        stderr(&run).contains("replay: dst replay"),
        "{}",
        stderr(&run)
    );
    let report = stdout_json(&run);
    let failure = &report["failures"][0];
    assert_eq!(failure["verdict"], "safety");
    assert_eq!(failure["invariant"], "linearizable");
    assert_eq!(failure["trace_hash"].as_str().unwrap().len(), 16);
    let file = failure["file"].as_str().unwrap().to_string();
    assert!(Path::new(&file).exists());

    // A fresh process reproduces verdict and hash.
    let replay = dst(&["replay", &file, "--json"]);
    assert!(replay.status.success(), "{}", stderr(&replay));
    let replayed = stdout_json(&replay);
    assert_eq!(replayed["reproduced"], true);
    assert_eq!(replayed["verdict"], "safety");
    assert_eq!(replayed["trace_hash"], failure["trace_hash"]);

    // The timeline marks the violation; the Mermaid diagram draws the messages.
    let mermaid = dir.path().join("run.mmd");
    let traced = dst(&[
        "replay",
        &file,
        "--trace",
        "--mermaid",
        mermaid.to_str().unwrap(),
    ]);
    assert!(traced.status.success());
    assert!(stderr(&traced).contains(">>>"), "violation not marked");
    let diagram = std::fs::read_to_string(&mermaid).unwrap();
    assert!(diagram.starts_with("sequenceDiagram"));
    assert!(diagram.contains("->>"), "no message drawn");

    // Shrinking again keeps it failing the same way.
    let shrink = dst(&["shrink", &file]);
    assert!(shrink.status.success(), "{}", stderr(&shrink));
    assert_eq!(
        stdout_json(&dst(&["replay", &file, "--json"]))["reproduced"],
        true
    );

    // Bless rewrites a stale hash, and refuses a changed verdict.
    let text = std::fs::read_to_string(&file).unwrap();
    let mut case: Value = serde_json::from_str(&text).unwrap();
    let hash = case["trace_hash"].clone();
    case["trace_hash"] = "0000000000000000".into();
    std::fs::write(&file, serde_json::to_string_pretty(&case).unwrap()).unwrap();
    assert_eq!(dst(&["replay", &file]).status.code(), Some(1));
    let bless = dst(&["corpus", "bless", "--corpus", corpus_dir]);
    assert!(bless.status.success(), "{}", stderr(&bless));
    assert_eq!(
        stdout_json(&dst(&["replay", &file, "--json"]))["reproduced"],
        true
    );
    case["trace_hash"] = hash;
    case["verdict"] = "pass".into();
    std::fs::write(&file, serde_json::to_string_pretty(&case).unwrap()).unwrap();
    let refused = dst(&["corpus", "bless", "--corpus", corpus_dir]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("not blessed"));
}

#[test]
fn faults_none_runs_without_a_plan() {
    let output = dst(&[
        "run", "register", "--seeds", "5", "--faults", "none", "--json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout_json(&output)["passed"], 5);
}
