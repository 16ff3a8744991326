//! sim-core's network against raw madsim `Endpoint`, side by side, in one run:
//!
//! 1. ping-pong between 2 nodes (latency 1-10 ms): messages per wall second;
//! 2. the same with 8 clients sending to one server;
//! 3. simulated seconds per wall second (from the runs of 1 and 2);
//! 4. small runs per second (2 nodes, 100 round trips, a fresh world each): `sim_core::run`
//!    against a raw madsim runtime, both in the calling thread and on a fresh thread per run
//!    (sim-core always uses a fresh thread);
//! 5. empty runs per second (2 nodes, no message: the fixed cost of a run), sim-core against
//!    a raw madsim runtime on a fresh thread;
//! 6. resident memory before and after 100,000 small sim-core runs (`VmRSS` of
//!    `/proc/self/status`).
//!
//! Run with `cargo bench -p sim-core --bench net` (add `-- throughput`, `-- small`, `-- empty`
//! or `-- memory` to run those parts alone). The workloads live in `sim_core::bench`, which
//! `dst bench` shares. Contenders are measured in turn (15 paired rounds for throughputs, judged
//! by the median of their ratios; interleaved runs for run rates) so that the load of a shared
//! machine hits them alike.

#[cfg(madsim)]
use sim_core::bench::{
    madsim_ping_pong, on_fresh_thread, paired_rounds, resident_mib, runs_per_second,
    sim_core_ping_pong, wall_clock, Paired, RunRates,
};

/// Short rounds of each contender in turn, judged by their median (see `paired_rounds`).
#[cfg(madsim)]
const ROUNDS: usize = 15;

#[cfg(madsim)]
fn compare(title: &str, paired: Paired) {
    let (sim_core, madsim) = (paired.ours, paired.theirs);
    let ours = sim_core.messages_per_second();
    let theirs = madsim.messages_per_second();
    println!("{title}");
    println!(
        "  sim-core net     {:>12.0} msgs/s  ({} msgs in {:.3} s wall, {:.1} s simulated)",
        ours,
        sim_core.messages,
        sim_core.wall.as_secs_f64(),
        sim_core.simulated.as_secs_f64()
    );
    println!(
        "  madsim Endpoint  {:>12.0} msgs/s  ({} msgs in {:.3} s wall, {:.1} s simulated)",
        theirs,
        madsim.messages,
        madsim.wall.as_secs_f64(),
        madsim.simulated.as_secs_f64()
    );
    println!(
        "  ratio sim-core / madsim: {:.2} (median of the rounds' ratios)",
        paired.ratio
    );
}

// The benchmark measures the simulator: a real build (no `--cfg madsim`) has nothing to
// measure here, but a bench without the test harness needs a `main` in every build.
#[cfg(not(madsim))]
fn main() {}

#[cfg(madsim)]
fn main() {
    // `cargo bench` passes `--bench`; any other argument names the parts to run.
    let parts: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    println!("sim-core network benchmark (latency 1-10 ms; release build)");
    println!();
    if wanted("throughput") {
        throughput();
    }
    if wanted("small") {
        small_runs();
    }
    if wanted("empty") {
        empty_runs();
    }
    if wanted("memory") {
        memory();
    }
}

#[cfg(madsim)]
fn throughput() {
    let ping_pong = paired_rounds(
        ROUNDS,
        || sim_core_ping_pong(1, 1, 20_000),
        || madsim_ping_pong(1, 1, 20_000),
    );
    compare(
        "1. ping-pong, 2 nodes, 20,000 round trips (15 rounds each, in turn; the median round)",
        ping_pong,
    );
    println!();
    let fan_in = paired_rounds(
        ROUNDS,
        || sim_core_ping_pong(2, 8, 2_500),
        || madsim_ping_pong(2, 8, 2_500),
    );
    compare(
        "2. 8 clients to 1 server, 2,500 round trips each (15 rounds each, in turn; the median round)",
        fan_in,
    );
    println!();
    println!("3. simulated seconds per wall second");
    println!(
        "  ping-pong:  sim-core {:>8.0}x   madsim {:>8.0}x",
        ping_pong.ours.simulated_per_wall(),
        ping_pong.theirs.simulated_per_wall()
    );
    println!(
        "  8 clients:  sim-core {:>8.0}x   madsim {:>8.0}x",
        fan_in.ours.simulated_per_wall(),
        fan_in.theirs.simulated_per_wall()
    );
    println!();
}

#[cfg(madsim)]
fn small_runs() {
    println!("4. small runs per second (2 nodes, 100 round trips, a fresh world each;");
    println!("   2,000 runs per contender, interleaved run by run)");
    let sim_core_run = |seed| sim_core_ping_pong(seed, 1, 100);
    let madsim_fresh = |seed| on_fresh_thread(move || madsim_ping_pong(seed, 1, 100));
    let madsim_here = |seed| madsim_ping_pong(seed, 1, 100);
    let rates = runs_per_second(2_000, &[&sim_core_run, &madsim_fresh, &madsim_here]);
    let names = [
        "sim-core run (fresh thread) ",
        "madsim runtime, fresh thread",
        "madsim runtime, same thread ",
    ];
    println!("                                      total     median run");
    for (name, rate) in names.iter().zip(&rates) {
        println!(
            "  {name}  {:>9.0} runs/s  {:>9.0} runs/s",
            rate.total, rate.median
        );
    }
    let ratio = |other: &RunRates| {
        format!(
            "{:.2} (total), {:.2} (median)",
            rates[0].total / other.total,
            rates[0].median / other.median
        )
    };
    println!(
        "  ratio sim-core / madsim fresh thread: {}",
        ratio(&rates[1])
    );
    println!(
        "  ratio sim-core / madsim same thread:  {}",
        ratio(&rates[2])
    );
    println!();
}

#[cfg(madsim)]
fn empty_runs() {
    println!("5. empty runs per second (2 nodes, no message: the fixed cost of a run;");
    println!("   5,000 runs per contender, interleaved run by run)");
    let sim_core_empty = |seed| sim_core_ping_pong(seed, 1, 0);
    let madsim_empty = |seed| on_fresh_thread(move || madsim_ping_pong(seed, 1, 0));
    let empty = runs_per_second(5_000, &[&sim_core_empty, &madsim_empty]);
    println!(
        "  sim-core run                  {:>9.0} runs/s (total)  {:>9.0} runs/s (median run)",
        empty[0].total, empty[0].median
    );
    println!(
        "  madsim runtime, fresh thread  {:>9.0} runs/s (total)  {:>9.0} runs/s (median run)",
        empty[1].total, empty[1].median
    );
    println!(
        "  ratio sim-core / madsim: {:.2} (total), {:.2} (median)",
        empty[0].total / empty[1].total,
        empty[0].median / empty[1].median
    );
    println!();
}

#[cfg(madsim)]
fn memory() {
    println!("6. resident memory over 100,000 small sim-core runs");
    let before = resident_mib();
    let start = wall_clock();
    let mut after_first_thousand = None;
    for seed in 0..100_000u64 {
        sim_core_ping_pong(seed, 1, 100);
        if seed == 999 {
            after_first_thousand = resident_mib();
        }
    }
    let rate = 100_000.0 / start.elapsed().as_secs_f64();
    let after = resident_mib();
    let show = |mib: Option<f64>| mib.map_or("n/a".to_string(), |m| format!("{m:.1} MiB"));
    println!("  before                {}", show(before));
    println!("  after 1,000 runs      {}", show(after_first_thousand));
    println!("  after 100,000 runs    {}", show(after));
    println!("  ({rate:.0} runs/s over the 100,000)");
}
