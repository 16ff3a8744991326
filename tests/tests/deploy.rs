//! The deployment files of a long hunt (`deploy/`, README "Spreading a hunt over machines") are
//! valid YAML and fit together: the GitHub Actions matrix and the Kubernetes indexed Job run
//! shards 1..N exactly once each, N being the `/N` of their `--shard`; the judge merges what the
//! shards wrote; and every `dst` command line they run passes `dst`'s own parser.
//!
//! The parser is the real one: `dst-tests-cli` (this crate's binary) is `dst` over the same
//! registry, run with `--help` appended. clap rejects an unknown flag or a bad value (`--shard
//! 9/8`, `--seeds 0`) as it reaches it, and stops without running anything at `--help`; what it
//! checks only after the last argument (a missing positional, conflicting flags) goes unchecked.

use std::path::{Path, PathBuf};
use std::process::Command;
use yaml_rust2::{Yaml, YamlLoader};

/// Where a hunt job's `${{ matrix.shard }}` stands in a GitHub Actions command line.
const MATRIX_SHARD: &str = "${{ matrix.shard }}";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lies in the workspace")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = workspace_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The YAML documents of a file of the workspace.
fn load(relative: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn text<'a>(yaml: &'a Yaml, what: &str) -> &'a str {
    yaml.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {yaml:?}"))
}

fn integer(yaml: &Yaml, what: &str) -> u64 {
    yaml.as_i64()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or_else(|| panic!("{what}: expected a count, got {yaml:?}"))
}

fn list<'a>(yaml: &'a Yaml, what: &str) -> &'a [Yaml] {
    yaml.as_vec()
        .unwrap_or_else(|| panic!("{what}: expected a list, got {yaml:?}"))
}

/// The `dst` invocations of a shell script: for each simple command whose program is `dst` or
/// `./dst`, its arguments up to the next redirection or operator.
fn dst_commands(script: &str) -> Vec<Vec<String>> {
    const OPERATORS: [&str; 5] = ["||", "&&", "|", ";", ">"];
    let mut commands = Vec::new();
    for line in script.lines() {
        let mut current: Option<Vec<String>> = None;
        let mut at_start = true;
        for word in line.split_whitespace() {
            if OPERATORS.iter().any(|op| word.starts_with(op)) || word == "then" {
                commands.extend(current.take());
                at_start = word != ">";
                continue;
            }
            match &mut current {
                Some(arguments) => arguments.push(word.to_string()),
                None if at_start && (word == "dst" || word == "./dst") => {
                    current = Some(Vec::new())
                }
                None => {}
            }
            at_start = false;
        }
        commands.extend(current);
    }
    commands
}

/// The value after `flag` in `arguments`.
fn flag_value<'a>(arguments: &'a [String], flag: &str) -> Option<&'a str> {
    let index = arguments.iter().position(|a| a == flag)?;
    arguments.get(index + 1).map(String::as_str)
}

/// `--shard K/N` of a `dst run`, parsed as `dst` parses it.
fn shard(arguments: &[String]) -> (u64, u64) {
    let value = flag_value(arguments, "--shard")
        .unwrap_or_else(|| panic!("no --shard in dst {}", arguments.join(" ")));
    harness::batch::parse_shard(value).unwrap_or_else(|e| panic!("--shard {value}: {e}"))
}

/// Whether `name` matches `pattern`, whose only wildcard is one `*`.
fn glob_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        Some((head, tail)) => {
            name.len() >= head.len() + tail.len() && name.starts_with(head) && name.ends_with(tail)
        }
        None => pattern == name,
    }
}

/// Runs `dst ARGUMENTS --help` through the real parser; panics with its error line.
fn assert_dst_accepts(arguments: &[String], origin: &str) {
    for argument in arguments {
        assert!(
            !argument.contains('$') && !argument.contains('{'),
            "{origin}: `{argument}` is not expanded in dst {}",
            arguments.join(" ")
        );
    }
    let output = Command::new(env!("CARGO_BIN_EXE_dst-tests-cli"))
        .args(arguments)
        .arg("--help")
        .output()
        .expect("dst-tests-cli runs");
    assert!(
        output.status.success(),
        "{origin}: dst refuses `dst {}`: {}",
        arguments.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// The `run:` scripts of a job's steps.
fn run_scripts(job: &Yaml, job_name: &str) -> Vec<String> {
    list(&job["steps"], job_name)
        .iter()
        .filter_map(|step| step["run"].as_str().map(str::to_string))
        .collect()
}

/// The steps of a job that use `action` (such as `actions/upload-artifact`).
fn steps_using<'a>(job: &'a Yaml, job_name: &str, action: &str) -> Vec<&'a Yaml> {
    list(&job["steps"], job_name)
        .iter()
        .filter(|step| step["uses"].as_str().is_some_and(|u| u.starts_with(action)))
        .collect()
}

#[test]
fn github_actions_hunt_runs_each_shard_once_and_the_judge_merges_them_all() {
    let file = "deploy/github-actions/hunt.yml";
    let documents = load(file);
    assert_eq!(documents.len(), 1, "{file}: one document");
    let jobs = &documents[0]["jobs"];

    // The build job: checkout, a toolchain, the release binary as an artifact.
    let build = &jobs["build"];
    assert!(!steps_using(build, "build", "actions/checkout").is_empty());
    assert!(!steps_using(build, "build", "dtolnay/rust-toolchain").is_empty());
    let build_scripts = run_scripts(build, "build").join("\n");
    assert!(
        build_scripts.contains("cargo build --release --locked -p scenarios --bin dst"),
        "{file}: the build job builds dst"
    );

    // The matrix is 1..=N, each once, and each shard runs `--shard K/N` of one hunt.
    let hunt = &jobs["hunt"];
    assert_eq!(text(&hunt["needs"], "hunt.needs"), "build");
    let matrix: Vec<u64> = list(&hunt["strategy"]["matrix"]["shard"], "matrix.shard")
        .iter()
        .map(|value| integer(value, "matrix.shard"))
        .collect();
    let count = matrix.len() as u64;
    let mut sorted = matrix.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=count).collect::<Vec<_>>(), "{file}: matrix");
    let hunt_script = run_scripts(hunt, "hunt")
        .into_iter()
        .find(|script| script.contains("dst run"))
        .expect("a hunt step runs dst run");
    assert!(
        dst_commands(&hunt_script)[0].contains(&"--json".to_string())
            && hunt_script.contains(&format!("> result-{MATRIX_SHARD}.json ")),
        "{file}: each shard writes its --json report to result-K.json: {hunt_script}"
    );
    for k in &matrix {
        let expanded = hunt_script.replace(MATRIX_SHARD, &k.to_string());
        let commands = dst_commands(&expanded);
        assert_eq!(commands.len(), 1, "{file}: one dst per hunt step");
        assert_eq!(shard(&commands[0]), (*k, count), "{file}: shard {k}");
    }

    // Each shard uploads its report and its saved cases.
    let uploads: Vec<&str> = steps_using(hunt, "hunt", "actions/upload-artifact")
        .iter()
        .map(|step| text(&step["with"]["path"], "upload path"))
        .collect();
    assert!(uploads.contains(&format!("result-{MATRIX_SHARD}.json").as_str()));
    let corpus = flag_value(&dst_commands(&hunt_script)[0], "--corpus")
        .expect("the hunt saves its cases with --corpus")
        .to_string();
    assert!(
        uploads
            .iter()
            .any(|path| path.trim_end_matches('/') == corpus),
        "{file}: the cases under {corpus} are uploaded: {uploads:?}"
    );

    // The judge downloads every report and merges them; its status is the merge's.
    let judge = &jobs["judge"];
    assert_eq!(text(&judge["needs"], "judge.needs"), "hunt");
    let download = steps_using(judge, "judge", "actions/download-artifact")
        .into_iter()
        .find(|step| step["with"]["pattern"].as_str().is_some())
        .expect("the judge downloads the reports by pattern");
    let pattern = text(&download["with"]["pattern"], "download pattern");
    for k in &matrix {
        assert!(glob_matches(pattern, &format!("result-{k}")), "{pattern}");
    }
    let folder = text(&download["with"]["path"], "download path");
    let merge_script = run_scripts(judge, "judge")
        .into_iter()
        .find(|script| script.contains("dst merge"))
        .expect("a judge step runs dst merge");
    assert!(
        !merge_script.contains("||"),
        "{file}: the judge fails when dst merge does: {merge_script}"
    );
    let merge = &dst_commands(&merge_script)[0];
    assert_eq!(merge[0], "merge");
    let files = &merge[1..merge.len() - 1];
    assert_eq!(merge.last().map(String::as_str), Some("--json"));
    for k in &matrix {
        let report = format!("{folder}/result-{k}.json");
        assert!(
            files.iter().any(|glob| glob_matches(glob, &report)),
            "{file}: dst merge {files:?} misses {report}"
        );
    }
}

#[test]
fn kubernetes_indexed_job_runs_one_shard_per_completion_and_the_merge_job_reads_them_all() {
    let hunt_file = "deploy/kubernetes/hunt-job.yaml";
    let documents = load(hunt_file);
    let by_kind = |kind: &str| -> &Yaml {
        documents
            .iter()
            .find(|d| d["kind"].as_str() == Some(kind))
            .unwrap_or_else(|| panic!("{hunt_file}: no {kind}"))
    };
    let claim = text(
        &by_kind("PersistentVolumeClaim")["metadata"]["name"],
        "claim",
    );
    let job = by_kind("Job");
    let spec = &job["spec"];
    assert_eq!(text(&spec["completionMode"], "completionMode"), "Indexed");
    let completions = integer(&spec["completions"], "completions");
    let parallelism = integer(&spec["parallelism"], "parallelism");
    assert!((1..=completions).contains(&parallelism), "{hunt_file}");

    let (hunt_image, mount, hunt_claim, script) = container(job, hunt_file);
    assert_eq!(hunt_claim, claim, "{hunt_file}: the Job mounts the claim");
    assert!(
        script.contains("shard=$((JOB_COMPLETION_INDEX + 1))"),
        "{hunt_file}: the shard is the completion index + 1"
    );
    let mut reports = Vec::new();
    for index in 0..completions {
        let k = index + 1;
        let expanded = script.replace("$shard", &k.to_string());
        let commands = dst_commands(&expanded);
        assert_eq!(commands.len(), 1, "{hunt_file}: one dst per pod");
        assert_eq!(
            shard(&commands[0]),
            (k, completions),
            "{hunt_file}: index {index}"
        );
        let corpus = flag_value(&commands[0], "--corpus").expect("--corpus");
        assert!(
            corpus.starts_with(&format!("{mount}/")),
            "{hunt_file}: {corpus}"
        );
        let report = format!("{mount}/result-{k}.json");
        assert!(
            commands[0].contains(&"--json".to_string())
                && (expanded.contains(&format!("> {report} "))
                    || expanded.contains(&format!("> {report}.part "))
                        && expanded.contains(&format!("mv {report}.part {report}\n"))),
            "{hunt_file}: pod {index} leaves its --json report at {report}"
        );
        reports.push(report);
    }

    let merge_file = "deploy/kubernetes/merge-job.yaml";
    let merge_documents = load(merge_file);
    let merge_job = merge_documents
        .iter()
        .find(|d| d["kind"].as_str() == Some("Job"))
        .unwrap_or_else(|| panic!("{merge_file}: no Job"));
    let (merge_image, merge_mount, merge_claim, merge_script) = container(merge_job, merge_file);
    assert_eq!(merge_image, hunt_image, "{merge_file}: the hunt's image");
    assert_eq!(merge_claim, claim, "{merge_file}: the hunt's claim");
    assert_eq!(
        merge_mount, mount,
        "{merge_file}: mounted where the hunt wrote"
    );
    assert!(
        !merge_script.contains("||"),
        "{merge_file}: fails when dst merge does"
    );
    let merge = &dst_commands(&merge_script)[0];
    assert_eq!(merge[0], "merge");
    for report in &reports {
        assert!(
            merge.iter().any(|glob| glob_matches(glob, report)),
            "{merge_file}: dst merge {merge:?} misses {report}"
        );
    }
}

/// A Job's one container: its image, where it mounts its volume, the claim behind the volume,
/// and the script it runs (`sh -c SCRIPT`).
fn container<'a>(job: &'a Yaml, file: &str) -> (&'a str, &'a str, &'a str, String) {
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(text(&pod["restartPolicy"], "restartPolicy"), "Never");
    let containers = list(&pod["containers"], "containers");
    assert_eq!(containers.len(), 1, "{file}: one container");
    let container = &containers[0];
    let command: Vec<&str> = list(&container["command"], "command")
        .iter()
        .map(|word| text(word, "command"))
        .collect();
    assert_eq!(command, ["/bin/sh", "-c"], "{file}");
    let arguments = list(&container["args"], "args");
    assert_eq!(arguments.len(), 1, "{file}: one script");
    let mounts = list(&container["volumeMounts"], "volumeMounts");
    assert_eq!(mounts.len(), 1, "{file}: one volume");
    let volume = text(&mounts[0]["name"], "volume name");
    let claim = list(&pod["volumes"], "volumes")
        .iter()
        .find(|v| v["name"].as_str() == Some(volume))
        .map(|v| text(&v["persistentVolumeClaim"]["claimName"], "claimName"))
        .unwrap_or_else(|| panic!("{file}: no volume {volume}"));
    (
        text(&container["image"], "image"),
        text(&mounts[0]["mountPath"], "mountPath").trim_end_matches('/'),
        claim,
        text(&arguments[0], "script").to_string(),
    )
}

#[test]
fn every_dst_command_line_of_the_deploy_files_passes_the_real_parser() {
    let github = load("deploy/github-actions/hunt.yml");
    let mut checked = 0;
    let jobs = github[0]["jobs"].as_hash().expect("jobs");
    for (name, job) in jobs {
        let name = text(name, "job name");
        let shards: Vec<u64> = match job["strategy"]["matrix"]["shard"].as_vec() {
            Some(values) => values.iter().map(|v| integer(v, "shard")).collect(),
            None => vec![0],
        };
        for script in run_scripts(job, name) {
            for k in &shards {
                let expanded = script.replace(MATRIX_SHARD, &k.to_string());
                for arguments in dst_commands(&expanded) {
                    assert_dst_accepts(&arguments, &format!("hunt.yml job {name}"));
                    checked += 1;
                }
            }
        }
    }
    for file in [
        "deploy/kubernetes/hunt-job.yaml",
        "deploy/kubernetes/merge-job.yaml",
    ] {
        for document in load(file) {
            if document["kind"].as_str() != Some("Job") {
                continue;
            }
            let completions = document["spec"]["completions"].as_i64().unwrap_or(1) as u64;
            let (_, _, _, script) = container(&document, file);
            for k in 1..=completions {
                let expanded = script.replace("$shard", &k.to_string());
                for arguments in dst_commands(&expanded) {
                    assert_dst_accepts(&arguments, file);
                    checked += 1;
                }
            }
        }
    }
    // 8 shards and a merge in each: a parse that finds no command proves nothing.
    assert!(checked >= 4, "only {checked} dst command lines found");
}

#[test]
fn the_command_line_check_rejects_what_dst_rejects() {
    // The check above is only as good as its two halves: finding the commands and running them.
    let found = dst_commands("./dst run --all --shard 2/8 --json > r.json || test $? -eq 1");
    assert_eq!(found, [["run", "--all", "--shard", "2/8", "--json"]]);
    assert!(dst_commands("chmod +x dst && echo dst > dst").is_empty());
    for bad in [
        &["run", "--all", "--shard", "9/8"][..],
        &["run", "--all", "--no-such-flag"],
        &["merge", "a.json", "--jsn"],
    ] {
        let arguments: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
        let refused = std::panic::catch_unwind(|| assert_dst_accepts(&arguments, "test"));
        assert!(refused.is_err(), "dst {bad:?} passed");
    }
}

#[test]
fn the_readme_shows_the_deploy_files_as_they_are() {
    // The README names the files; any YAML it shows must be one of them, byte for byte.
    let readme = read("README.md");
    let files = [
        "deploy/github-actions/hunt.yml",
        "deploy/kubernetes/hunt-job.yaml",
        "deploy/kubernetes/merge-job.yaml",
        "deploy/kubernetes/Dockerfile",
    ];
    for file in files {
        assert!(readme.contains(file), "README.md does not name {file}");
    }
    let contents: Vec<String> = files.iter().map(|f| read(f)).collect();
    for block in readme.split("```yaml\n").skip(1) {
        let block = &block[..block.find("```").expect("a closed code block")];
        assert!(
            contents.iter().any(|c| c == block),
            "README.md shows YAML that is none of {files:?}:\n{block}"
        );
    }
}
