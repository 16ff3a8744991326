//! Merging the reports of a sharded hunt (`dst merge`): what one unsharded run of the union of
//! the shards would report, judged the same way.
//!
//! Shards of one hunt share scenario, start, seeds, mutant, fault kinds and muted invariants,
//! and together hold each part `K/N` exactly once. Anything else is refused with a message
//! naming the report at fault.

use crate::batch::BatchReport;
use crate::scenario::ScenarioSpec;
use std::collections::{BTreeMap, BTreeSet};

/// Merges the shard reports `parts` (each with the name of the file it came from) of a hunt
/// of the scenario `spec`, then judges the whole: sometimes-invariants and the inconclusive
/// share (at most `inconclusive_max`). A single unsharded report is judged again as it is.
pub fn merge(
    spec: &ScenarioSpec,
    parts: &[(String, BatchReport)],
    inconclusive_max: f64,
) -> Result<BatchReport, String> {
    let Some((first_name, first)) = parts.first() else {
        return Err("nothing to merge".into());
    };
    for (name, part) in parts {
        check_same_hunt(first_name, first, name, part)?;
        if part.passed + part.failed + part.inconclusive != part.seeds_run {
            return Err(format!(
                "{name}: passed + failed + inconclusive is not seeds_run ({})",
                part.seeds_run
            ));
        }
    }
    check_shards(parts)?;
    let mut merged = first.clone();
    merged.shard = None;
    merged.seeds_run = parts.iter().map(|(_, p)| p.seeds_run).sum();
    merged.passed = parts.iter().map(|(_, p)| p.passed).sum();
    merged.failed = parts.iter().map(|(_, p)| p.failed).sum();
    merged.inconclusive = parts.iter().map(|(_, p)| p.inconclusive).sum();
    merged.determinism_checked = parts.iter().all(|(_, p)| p.determinism_checked);
    merged.nondeterministic = parts.iter().map(|(_, p)| p.nondeterministic).sum();
    merged.failures = parts.iter().flat_map(|(_, p)| p.failures.clone()).collect();
    merged.failures.sort_by_key(|failure| failure.seed);
    point_at_lowest_seeds(&mut merged.failures);
    merged.inconclusive_seeds = parts
        .iter()
        .flat_map(|(_, p)| p.inconclusive_seeds.clone())
        .collect();
    merged.inconclusive_seeds.sort_by_key(|seed| seed.seed);
    let reached: BTreeSet<String> = parts
        .iter()
        .flat_map(|(_, p)| p.sometimes_reached.clone())
        .collect();
    merged.sometimes_reached = reached.into_iter().collect();
    // A batch sums simulated nanoseconds, then divides once: do the same, so that the merged
    // figure is the unsharded one (exact while each shard's total is below 2^52 ns, 52 days).
    let sim_ns: u128 = parts
        .iter()
        .map(|(_, p)| (p.sim_seconds * 1e9).round() as u128)
        .sum();
    merged.sim_seconds = sim_ns as f64 / 1e9;
    // Shards run side by side on different machines: the hunt took as long as the longest.
    merged.wall_seconds = parts
        .iter()
        .map(|(_, p)| p.wall_seconds)
        .fold(0.0, f64::max);
    merged.judge(spec, inconclusive_max);
    Ok(merged)
}

/// Each shard chose the lowest of its own seeds failing each way as the case to shrink and save;
/// across the hunt, only the lowest of all is, and the others point at it (`same_as`), as one
/// unsharded run reports. A shard's own choice keeps its saved file and shrunk plan, which
/// are real, so only `same_as` changes.
fn point_at_lowest_seeds(failures: &mut [crate::batch::Failure]) {
    let settled_as_found = ["nondeterministic", "error", "hung"];
    let mut lowest: BTreeMap<(String, Option<String>), u64> = BTreeMap::new();
    for failure in failures.iter_mut() {
        if settled_as_found.contains(&failure.verdict.as_str()) {
            continue;
        }
        let key = (failure.verdict.clone(), failure.invariant.clone());
        let first = *lowest.entry(key).or_insert(failure.seed);
        failure.same_as = (first != failure.seed).then_some(first);
    }
}

fn check_same_hunt(
    first_name: &str,
    first: &BatchReport,
    name: &str,
    part: &BatchReport,
) -> Result<(), String> {
    let differs = |what: &str, this: String, that: String| {
        Err(format!(
            "{name}: not a shard of the same hunt as {first_name}: {what} {this}, not {that}"
        ))
    };
    if part.scenario != first.scenario {
        return differs("scenario", part.scenario.clone(), first.scenario.clone());
    }
    if (part.start, part.seeds) != (first.start, first.seeds) {
        return differs(
            "seeds",
            format!("--start {} --seeds {}", part.start, part.seeds),
            format!("--start {} --seeds {}", first.start, first.seeds),
        );
    }
    if part.mutant != first.mutant {
        return differs(
            "mutant",
            format!("{:?}", part.mutant),
            format!("{:?}", first.mutant),
        );
    }
    if part.faults != first.faults {
        return differs(
            "faults",
            format!("{:?}", part.faults),
            format!("{:?}", first.faults),
        );
    }
    if part.skipped_invariants != first.skipped_invariants {
        return differs(
            "skipped invariants",
            format!("{:?}", part.skipped_invariants),
            format!("{:?}", first.skipped_invariants),
        );
    }
    Ok(())
}

/// Each part `K/N` exactly once, all of the same `N`; or one unsharded report alone.
fn check_shards(parts: &[(String, BatchReport)]) -> Result<(), String> {
    let (first_name, first) = &parts[0];
    let Some((_, count)) = first.shard else {
        return match parts.get(1) {
            None => Ok(()),
            Some((name, _)) => Err(format!(
                "{name}: {first_name} is a whole (unsharded) run; there is nothing to merge it with"
            )),
        };
    };
    let mut seen: BTreeMap<u64, &str> = BTreeMap::new();
    for (name, part) in parts {
        let Some((k, n)) = part.shard else {
            return Err(format!(
                "{name}: a whole (unsharded) run, not a shard like {first_name}"
            ));
        };
        if n != count {
            return Err(format!(
                "{name}: shard {k}/{n}, but {first_name} is one of {count} shards"
            ));
        }
        if let Some(other) = seen.insert(k, name) {
            return Err(format!("{name}: shard {k}/{n} repeated (also {other})"));
        }
    }
    let missing: Vec<String> = (1..=count)
        .filter(|k| !seen.contains_key(k))
        .map(|k| format!("{k}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "shard {} of {} missing",
            missing.join(", "),
            first.scenario
        ));
    }
    Ok(())
}
