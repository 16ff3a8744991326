//! Measures the linearizability checker on register histories from 5 clients.
//!
//! `cargo run --release -p linearizability --example register_bench`
//!
//! Each history comes from a sequential execution with overlapping client intervals (so it
//! is linearizable), optionally with some operations left without a response, and a copy
//! where the last read returns a value never written (illegal).

use linearizability::history::History;
use linearizability::models::{Register, RegisterInput, RegisterOutput};
use linearizability::{check, CheckLimits, CheckResult};
use std::time::Duration;

const CLIENT_COUNT: usize = 5;

/// SplitMix64: a tiny seeded generator, enough for a benchmark's workload.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % bound
    }
}

type RegisterHistory = History<RegisterInput<u64>, RegisterOutput<u64>>;

/// What to generate.
#[derive(Clone, Copy)]
struct Workload {
    op_count: usize,
    /// How many operations in a thousand get no response.
    indeterminate_per_mille: u64,
    /// Every write stores a new value (Jepsen's advice), rather than one of 5 values.
    unique_values: bool,
}

/// Operations (40% reads, 40% writes, 20% CAS) from 5 clients, each taking effect inside
/// its interval.
fn register_history(workload: Workload, seed: u64) -> RegisterHistory {
    let mut rng = SplitMix(seed);
    let mut fresh = 5;
    let mut new_value = |rng: &mut SplitMix| {
        if workload.unique_values {
            fresh += 1;
            fresh
        } else {
            rng.below(5)
        }
    };
    let mut history = History::new();
    let mut client_free_ns = [0u64; CLIENT_COUNT];
    let (mut effect_last_ns, mut value) = (0, 0);
    for _ in 0..workload.op_count {
        let client = rng.below(CLIENT_COUNT as u64) as usize;
        let call_ns = client_free_ns[client] + rng.below(1_000);
        let effect_ns = call_ns.max(effect_last_ns + 1) + rng.below(1_000);
        effect_last_ns = effect_ns;
        let return_ns = effect_ns + rng.below(1_000);
        let (input, output) = match rng.below(10) {
            0..=3 => (RegisterInput::Read, RegisterOutput::ReadOk(value)),
            4..=7 => {
                value = new_value(&mut rng);
                (RegisterInput::Write(value), RegisterOutput::WriteOk)
            }
            _ => {
                // Half the CAS operations expect the current value.
                let expected = if rng.below(2) == 0 {
                    value
                } else {
                    rng.below(5)
                };
                let new = new_value(&mut rng);
                let succeeded = expected == value;
                if succeeded {
                    value = new;
                }
                let output = if succeeded {
                    RegisterOutput::CasOk
                } else {
                    RegisterOutput::CasFailed
                };
                (RegisterInput::Cas { expected, new }, output)
            }
        };
        let op = history
            .invoke(client as u64, input, call_ns)
            .expect("below the bound");
        if rng.below(1_000) >= workload.indeterminate_per_mille {
            history
                .complete(op, output, return_ns)
                .expect("return after call");
        }
        client_free_ns[client] = return_ns;
    }
    history
}

/// The same history with a final read of a value never written.
fn with_impossible_read(mut history: RegisterHistory) -> RegisterHistory {
    let end_ns = history
        .operations()
        .iter()
        .filter_map(|op| op.return_ns)
        .max()
        .unwrap_or(0);
    let op = history
        .invoke(0, RegisterInput::Read, end_ns + 1)
        .expect("below the bound");
    history
        .complete(op, RegisterOutput::ReadOk(u64::MAX), end_ns + 2)
        .expect("ordered");
    history
}

// A benchmark measures real elapsed time on purpose; nothing here runs in a simulation.
#[allow(clippy::disallowed_methods)]
fn timed(history: &RegisterHistory) -> (CheckResult, Duration) {
    let start = std::time::Instant::now();
    let result = check(&Register::new(0), history, &CheckLimits::default());
    (result, start.elapsed())
}

fn main() {
    println!(
        "{:>7} {:>7} {:>12} {:>27} {:>10}",
        "ops", "values", "no response", "verdict", "time"
    );
    // 99,999: room for the extra read within the default bound of 100,000 operations.
    for op_count in [1_000, 10_000, 99_999] {
        for (unique_values, indeterminate_per_mille) in
            [(false, 0), (true, 0), (false, 10), (true, 10)]
        {
            let workload = Workload {
                op_count,
                indeterminate_per_mille,
                unique_values,
            };
            let history = register_history(workload, 42);
            let illegal = with_impossible_read(history.clone());
            for history in [history, illegal] {
                let (result, elapsed) = timed(&history);
                let verdict = match result {
                    CheckResult::Ok => "ok",
                    CheckResult::Illegal { .. } => "illegal",
                    CheckResult::Unknown { ref reason } if reason.contains("memo") => {
                        "unknown (memo_entries_max)"
                    }
                    CheckResult::Unknown { .. } => "unknown (steps_max)",
                };
                let open = history
                    .operations()
                    .iter()
                    .filter(|op| !op.is_complete())
                    .count();
                let values = if unique_values { "unique" } else { "5" };
                println!(
                    "{:>7} {:>7} {:>12} {:>27} {:>10.1?}",
                    history.len(),
                    values,
                    open,
                    verdict,
                    elapsed
                );
            }
        }
    }
}
