//! A run's own thread: a stack overflow names the run's seed, faults that are not a run's go to
//! the handlers they went to before, a thread the watchdog gives up on keeps its stack until it
//! ends, and a deep run's stack pages go back to the kernel.
//!
//! The crashing cases run in a child process: this test binary again, with `CHILD` naming
//! what the child does.
#![cfg(madsim)]

use sim_core::{run, Outcome, SimConfig};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const CHILD: &str = "SIM_CORE_RUN_THREAD_CHILD";

fn empty_run(seed: u64) -> Outcome {
    run(seed, SimConfig::default(), |_sim| async { Ok(()) }).outcome
}

/// Runs the test `test` of this binary in a child process told to do `what`.
fn child(test: &str, what: &str) -> Output {
    Command::new(std::env::current_exe().expect("the test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, what)
        .output()
        .expect("the child test process starts")
}

/// What the child does when it is one; false in the parent.
fn as_child(test: &str) -> bool {
    let Ok(what) = std::env::var(CHILD) else {
        return false;
    };
    match (test, what.as_str()) {
        ("overflow_in_a_run_names_its_seed_and_aborts", "overflow") => {
            let outcome = run(4_021, SimConfig::default(), |_sim| async {
                std::hint::black_box(recurse(u64::MAX));
                Ok(())
            })
            .outcome;
            panic!("the run came back: {outcome:?}");
        }
        ("faults_outside_runs_go_to_the_handlers_they_went_to", "std-thread") => {
            assert_eq!(empty_run(1).name(), "pass");
            #[allow(clippy::disallowed_methods)] // A thread of the test's, outside any run.
            let _ = std::thread::Builder::new()
                .name("not-a-run".into())
                .spawn(|| recurse(u64::MAX))
                .expect("spawn")
                .join();
            panic!("the thread came back");
        }
        ("faults_outside_runs_go_to_the_handlers_they_went_to", "null") => {
            assert_eq!(empty_run(1).name(), "pass");
            // SAFETY: none; this child exists to be killed by this write.
            unsafe { std::ptr::null_mut::<u64>().write_volatile(1) };
            panic!("the write came back");
        }
        ("stacks_are_given_back", "memory") => {
            assert_eq!(empty_run(1).name(), "pass");
            let before = resident_kib();
            let report = run(2, SimConfig::default(), |_sim| async {
                std::hint::black_box(recurse(1_024)); // 4 MiB deep
                Ok(())
            });
            assert_eq!(report.outcome.name(), "pass", "{:?}", report.outcome);
            // Stacks are checked for trimming every 32 runs.
            for seed in 100..132 {
                assert_eq!(empty_run(seed).name(), "pass");
            }
            let grown = resident_kib().saturating_sub(before);
            assert!(grown < 2_048, "a deep run left {grown} KiB resident");
            // A hung run's stack is unmapped once its thread has ended and another run starts.
            assert_eq!(stacks_mapped(), 1);
            assert_eq!(left_spinning(5).name(), "hung");
            assert_eq!(empty_run(3).name(), "pass");
            assert_eq!(stacks_mapped(), 2);
            RELEASE.store(true, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(empty_run(4).name(), "pass");
            assert_eq!(stacks_mapped(), 1);
            true
        }
        _ => panic!("unknown child {what:?} for {test}"),
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn overflow_in_a_run_names_its_seed_and_aborts() {
    let test = "overflow_in_a_run_names_its_seed_and_aborts";
    if as_child(test) {
        return;
    }
    let output = child(test, "overflow");
    let stderr = stderr(&output);
    assert_eq!(output.status.signal(), Some(libc::SIGABRT), "{stderr}");
    assert!(
        stderr.contains(
            "thread 'sim-seed-4021' has overflowed its stack (the sim-core run of seed 4021)"
        ),
        "{stderr}"
    );
}

#[test]
fn faults_outside_runs_go_to_the_handlers_they_went_to() {
    let test = "faults_outside_runs_go_to_the_handlers_they_went_to";
    if as_child(test) {
        return;
    }
    // std's own handler still names its threads...
    let output = child(test, "std-thread");
    let text = stderr(&output);
    assert_eq!(output.status.signal(), Some(libc::SIGABRT), "{text}");
    // (std's line has the thread's id after its name.)
    assert!(text.contains("thread 'not-a-run'"), "{text}");
    assert!(text.contains("has overflowed its stack"), "{text}");
    assert!(!text.contains("sim-seed"), "{text}");
    // ...and a fault that is nobody's overflow still kills with SIGSEGV.
    let output = child(test, "null");
    let text = stderr(&output);
    assert_eq!(output.status.signal(), Some(libc::SIGSEGV), "{text}");
    assert!(!text.contains("overflowed"), "{text}");
}

#[test]
fn stacks_are_given_back() {
    let test = "stacks_are_given_back";
    if as_child(test) {
        return;
    }
    let output = child(test, "memory");
    assert!(output.status.success(), "{}", stderr(&output));
}

/// `VmRSS` of this process, in KiB.
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .expect("VmRSS");
    line.split_whitespace()
        .nth(1)
        .expect("a number")
        .parse()
        .expect("KiB")
}

/// How many 16 MiB run stacks this process has mapped.
fn stacks_mapped() -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("procfs");
    maps.lines()
        .filter(|line| {
            let range = line.split_whitespace().next().expect("a range");
            let (start, end) = range.split_once('-').expect("start-end");
            let start = u64::from_str_radix(start, 16).expect("hex");
            let end = u64::from_str_radix(end, 16).expect("hex");
            end - start == 16 << 20
        })
        .count()
}

/// Set when the test is done with the thread it left spinning.
static RELEASE: AtomicBool = AtomicBool::new(false);

/// A run that spins outside any poll until [`RELEASE`]: the watchdog gives up on it (after
/// its 5 s of grace) and leaves it running, on its stack.
fn left_spinning(seed: u64) -> Outcome {
    let config = SimConfig {
        step_limit: u64::MAX,
        time_limit_ms: u64::MAX / 2,
        wall_limit_ms: 100,
        ..SimConfig::default()
    };
    run(seed, config, |_sim| async {
        let mut depth = 0u64;
        while !RELEASE.load(Ordering::Relaxed) {
            // Keeps using the stack, so that another run lent the same one would corrupt it.
            depth = depth.wrapping_add(std::hint::black_box(recurse(64)));
            std::thread::sleep(Duration::from_millis(1));
        }
        std::hint::black_box(depth);
        Ok(())
    })
    .outcome
}

#[test]
fn a_thread_left_behind_keeps_its_stack_and_the_next_run_gets_another() {
    let outcome = left_spinning(5);
    assert_eq!(outcome.name(), "hung", "{outcome:?}");
    // The same calling thread runs on while the other still spins.
    for seed in 0..20 {
        assert_eq!(empty_run(seed).name(), "pass");
    }
    let report = run(9, SimConfig::default(), |_sim| async {
        std::hint::black_box(recurse(1_000));
        Ok(())
    });
    assert_eq!(report.outcome.name(), "pass", "{:?}", report.outcome);
    RELEASE.store(true, Ordering::Relaxed);
}

/// Recurses `depth` frames of 4 KiB, writing each, and returns a sum of them (`u64::MAX`:
/// until the stack runs out).
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let frame = std::hint::black_box([depth; 512]);
    if depth == 0 {
        return frame[0];
    }
    recurse(depth - 1).wrapping_add(frame[depth as usize % 512])
}
