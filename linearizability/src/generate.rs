//! Seeded generators of key-value histories for tests and benchmarks: many clients, many
//! keys, indeterminate operations, adversarial ("hard") keys and one illegal key, shaped
//! like the Jepsen/Porcupine key-value histories that motivated the shared budget.
//!
//! Ordinary keys come from a real execution: each operation takes effect at an instant
//! inside its interval, in the order of those instants, so they are linearizable. A hard key
//! holds `hard_writes` concurrent puts of distinct values and then a read of a value never
//! written: to refute it the search must try every subset of the puts, so it ends unknown
//! under any practical budget. The illegal key is an ordinary key where one read returns a
//! value overwritten before the read was called (values are unique, so nothing else can
//! explain it).

use crate::history::{History, OpId, Operation};
use crate::models::{KvInput, KvOutput};
use std::collections::BTreeMap;

/// The operation type of generated histories.
pub type KvHistory = History<KvInput<u64, u64>, KvOutput<u64>>;

/// What to generate.
#[derive(Clone, Debug)]
pub struct KvHistoryShape {
    /// The seed: the same shape and seed give the same history.
    pub seed: u64,
    /// Clients issuing operations one after the other (each at most one outstanding).
    pub client_count: u64,
    /// Ordinary keys (the illegal key is one of them).
    pub key_count: u64,
    /// Operations on ordinary keys, over all clients.
    pub operation_count: usize,
    /// Out of 1,000 ordinary operations, how many get no response.
    pub indeterminate_per_mille: u64,
    /// Adversarial keys added to the ordinary ones (keys `key_count..`).
    pub hard_key_count: u64,
    /// Concurrent puts on each hard key.
    pub hard_writes: u64,
    /// Whether ordinary key 0 gets a stale read (illegal).
    pub illegal: bool,
}

impl Default for KvHistoryShape {
    /// 50 clients, 20 keys, 5,000 operations, 2% indeterminate, 4 hard keys of 40 puts,
    /// one illegal key.
    fn default() -> Self {
        Self {
            seed: 1,
            client_count: 50,
            key_count: 20,
            operation_count: 5_000,
            indeterminate_per_mille: 20,
            hard_key_count: 4,
            hard_writes: 40,
            illegal: true,
        }
    }
}

/// SplitMix64: a tiny seeded generator, enough for workloads.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

/// An operation being built: its effect instant decides its output.
struct Planned {
    client: u64,
    input: KvInput<u64, u64>,
    call_ns: u64,
    effect_ns: u64,
    return_ns: u64,
    answered: bool,
    /// For an unanswered operation: whether it took effect.
    took_effect: bool,
}

/// Generates a history of `shape` (see the module docs).
pub fn kv_history(shape: &KvHistoryShape) -> KvHistory {
    let mut rng = SplitMix(shape.seed);
    let mut planned = ordinary(shape, &mut rng);
    let end_ns = planned.iter().map(|op| op.return_ns).max().unwrap_or(0) + 10;
    for hard in 0..shape.hard_key_count {
        let key = shape.key_count + hard;
        for writer in 0..shape.hard_writes {
            let value = 1_000_000 * (key + 1) + writer;
            planned.push(fixed(
                writer,
                KvInput::Put { key, value },
                end_ns,
                end_ns + 100,
            ));
        }
        let read = fixed(
            shape.client_count,
            KvInput::Get { key },
            end_ns + 200,
            end_ns + 300,
        );
        planned.push(read);
    }
    planned.sort_by_key(|op| (op.call_ns, op.client));
    let mut operations = outputs(&planned, shape.key_count);
    if shape.illegal {
        make_stale_read(&mut operations);
    }
    let operations: Vec<_> = operations
        .into_iter()
        .enumerate()
        .map(|(id, mut op)| {
            op.id = OpId(id as u64);
            op
        })
        .collect();
    let ops_max = operations.len();
    History::from_operations(operations, ops_max).expect("generated histories are valid")
}

/// Ordinary operations: each client runs one after the other on random keys.
fn ordinary(shape: &KvHistoryShape, rng: &mut SplitMix) -> Vec<Planned> {
    let mut client_free_ns = vec![0u64; shape.client_count.max(1) as usize];
    let mut planned = Vec::with_capacity(shape.operation_count);
    for index in 0..shape.operation_count {
        let client = rng.below(shape.client_count);
        let call_ns = client_free_ns[client as usize] + rng.below(50);
        let return_ns = call_ns + 1 + rng.below(200);
        let effect_ns = call_ns + rng.below(return_ns - call_ns + 1);
        client_free_ns[client as usize] = return_ns + 1;
        let key = rng.below(shape.key_count);
        let input = if rng.below(2) == 0 {
            KvInput::Get { key }
        } else {
            KvInput::Put {
                key,
                value: index as u64 + 1,
            }
        };
        let answered = rng.below(1_000) >= shape.indeterminate_per_mille;
        let took_effect = answered || rng.below(2) == 0;
        planned.push(Planned {
            client,
            input,
            call_ns,
            effect_ns,
            return_ns,
            answered,
            took_effect,
        });
    }
    planned
}

fn fixed(client: u64, input: KvInput<u64, u64>, call_ns: u64, return_ns: u64) -> Planned {
    Planned {
        client,
        input,
        call_ns,
        effect_ns: call_ns,
        return_ns,
        answered: true,
        took_effect: true,
    }
}

/// The operations with their outputs: each takes effect at its instant, in instant order.
/// A read of a hard key (at or above `key_count`) sees a value never written.
fn outputs(
    planned: &[Planned],
    key_count: u64,
) -> Vec<Operation<KvInput<u64, u64>, KvOutput<u64>>> {
    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by_key(|&i| (planned[i].effect_ns, i));
    let mut values: BTreeMap<u64, u64> = BTreeMap::new();
    let mut outputs: Vec<Option<KvOutput<u64>>> = vec![None; planned.len()];
    for i in order {
        let op = &planned[i];
        outputs[i] = Some(match &op.input {
            KvInput::Get { key } if *key >= key_count => KvOutput::GetOk(Some(u64::MAX)),
            KvInput::Get { key } => KvOutput::GetOk(values.get(key).copied()),
            KvInput::Put { key, value } => {
                if op.took_effect {
                    values.insert(*key, *value);
                }
                KvOutput::PutOk
            }
            _ => unreachable!("only gets and puts are generated"),
        });
    }
    planned
        .iter()
        .zip(outputs)
        .map(|(op, output)| Operation {
            id: OpId(0),
            client: op.client,
            input: op.input.clone(),
            call_ns: op.call_ns,
            output: output.filter(|_| op.answered),
            return_ns: op.answered.then_some(op.return_ns),
        })
        .collect()
}

/// Makes the last read of key 0 that has two completed puts before it (one preceding the
/// other) return the first put's value: overwritten before the read was called. The latest
/// such read, so the search has the most to do before it can refute the key.
fn make_stale_read(operations: &mut [Operation<KvInput<u64, u64>, KvOutput<u64>>]) {
    let puts: Vec<usize> = (0..operations.len())
        .filter(|&i| {
            matches!(operations[i].input, KvInput::Put { key: 0, .. })
                && operations[i].is_complete()
        })
        .collect();
    let stale_for = |read: &Operation<_, _>| {
        puts.iter().find_map(|&first| {
            let overwritten = puts.iter().any(|&second| {
                operations[first].precedes(&operations[second]) && operations[second].precedes(read)
            });
            overwritten.then_some(first)
        })
    };
    let reads = (0..operations.len()).filter(|&i| {
        matches!(operations[i].input, KvInput::Get { key: 0 }) && operations[i].is_complete()
    });
    let reads: Vec<usize> = reads.collect();
    for &read in reads.iter().rev() {
        if let Some(first) = stale_for(&operations[read]) {
            let KvInput::Put { value, .. } = operations[first].input else {
                unreachable!("puts were filtered")
            };
            operations[read].output = Some(KvOutput::GetOk(Some(value)));
            return;
        }
    }
}
