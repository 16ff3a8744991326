//! The log format: round trip, every truncation, every single-bit corruption, the checkpoint
//! slots, and the two recovery mutants that the properties must catch.
//!
//! Mutants exist in simulation builds only (`--cfg madsim`): the tests of a mutant, and the
//! mutant cases of the others, are compiled there only; the rest runs in every build.

use patterns::event_sourcing::event::{EventData, EventId};
use patterns::event_sourcing::log::{
    self, read_checkpoint, scan, scan_with, Batch, Checkpoint, CorruptReason, RecoveryError,
    CHECKPOINT_SLOT_SPACING,
};
#[cfg(madsim)]
use patterns::event_sourcing::mutant::Mutant;
use patterns::event_sourcing::mutant::Mutants;
use proptest::prelude::*;
#[cfg(madsim)]
use proptest::test_runner::TestRunner;
use proptest::test_runner::{Config, RngSeed};
use std::collections::BTreeMap;

/// A fixed seed: the same cases on every run, like every other test here.
fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0xE5_10),
        failure_persistence: None,
        ..Config::default()
    }
}

/// One batch's shape: stream index, and per event its type index and payload.
type BatchShape = (usize, Vec<(usize, Vec<u8>)>);

fn shapes() -> impl Strategy<Value = Vec<BatchShape>> {
    let event = (0..2usize, prop::collection::vec(any::<u8>(), 0..12));
    let batch = (0..3usize, prop::collection::vec(event, 1..4));
    prop::collection::vec(batch, 1..5)
}

/// Turns shapes into batches with consistent versions, positions and unique event ids.
fn build(shapes: &[BatchShape]) -> Vec<Batch> {
    let mut next_versions: BTreeMap<String, u64> = BTreeMap::new();
    let mut position = 0;
    let mut batches = Vec::new();
    for (stream_index, events) in shapes {
        let stream = ["alpha", "beta", "gamma"][*stream_index].to_owned();
        let version = next_versions.entry(stream.clone()).or_default();
        let events: Vec<EventData> = events
            .iter()
            .zip(position..)
            .map(|((type_index, payload), id)| EventData {
                event_id: EventId(u128::from(id) + 1000),
                event_type: ["opened", "deposited"][*type_index].to_owned(),
                schema_version: *type_index as u32 + 1,
                payload: payload.clone(),
            })
            .collect();
        let batch = Batch {
            stream,
            first_version: *version,
            first_position: position,
            events,
        };
        *version = batch.end_version();
        position = batch.end_position();
        batches.push(batch);
    }
    batches
}

/// The encoded log and the end offset of each record.
fn encode_log(batches: &[Batch]) -> (Vec<u8>, Vec<u64>) {
    let mut bytes = Vec::new();
    let mut ends = Vec::new();
    for batch in batches {
        bytes.extend_from_slice(&log::encode(batch));
        ends.push(bytes.len() as u64);
    }
    (bytes, ends)
}

fn scanned(recovery: &log::Recovery) -> Vec<Batch> {
    recovery.batches.iter().map(|s| s.batch.clone()).collect()
}

/// Round trip: a whole log scans back to the same batches, synced or not.
fn check_round_trip(batches: &[Batch]) -> Result<(), String> {
    let (bytes, _) = encode_log(batches);
    for synced_len in [0, bytes.len() as u64] {
        let recovery = scan(&bytes, synced_len).map_err(|e| e.to_string())?;
        if scanned(&recovery) != batches || recovery.torn_tail.is_some() {
            return Err(format!(
                "round trip with synced_len {synced_len}: {recovery:?}"
            ));
        }
        if recovery.valid_len != bytes.len() as u64 {
            return Err(format!(
                "valid_len {} != {}",
                recovery.valid_len,
                bytes.len()
            ));
        }
    }
    Ok(())
}

/// Every truncation of a valid log recovers as the records wholly inside it, with a torn tail
/// exactly when the cut is not at a record boundary; for every synced length at a boundary at
/// or before the cut.
fn check_truncations(batches: &[Batch], mutants: &Mutants) -> Result<(), String> {
    let (bytes, ends) = encode_log(batches);
    for cut in 0..=bytes.len() as u64 {
        let whole = ends.iter().take_while(|&&end| end <= cut).count();
        let boundary = if whole == 0 { 0 } else { ends[whole - 1] };
        let syncs = std::iter::once(0).chain(ends[..whole].iter().copied());
        for synced_len in syncs {
            let got = scan_with(&bytes[..cut as usize], synced_len, mutants);
            let recovery = got.map_err(|e| format!("cut {cut} synced {synced_len}: {e}"))?;
            let ok = scanned(&recovery) == batches[..whole]
                && recovery.valid_len == boundary
                && recovery.torn_tail.is_some() == (cut != boundary);
            if !ok {
                return Err(format!("cut {cut} synced {synced_len}: {recovery:?}"));
            }
        }
    }
    Ok(())
}

/// The start of the record holding byte `offset`.
fn record_start(ends: &[u64], offset: u64) -> u64 {
    ends.iter()
        .copied()
        .take_while(|&end| end <= offset)
        .last()
        .unwrap_or(0)
}

fn flipped(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut copy = bytes.to_vec();
    copy[bit / 8] ^= 1 << (bit % 8);
    copy
}

/// Every single-bit flip inside a fully synced log is reported as a corrupt record at the
/// start of the damaged record: never accepted, never silently dropped.
fn check_flips_synced(batches: &[Batch], mutants: &Mutants) -> Result<(), String> {
    let (bytes, ends) = encode_log(batches);
    let synced_len = bytes.len() as u64;
    for bit in 0..bytes.len() * 8 {
        let expected_offset = record_start(&ends, (bit / 8) as u64);
        match scan_with(&flipped(&bytes, bit), synced_len, mutants) {
            Err(RecoveryError::CorruptRecord { offset, .. }) if offset == expected_offset => {}
            other => {
                return Err(format!(
                    "bit {bit}: expected corruption at {expected_offset}, got {other:?}"
                ))
            }
        }
    }
    Ok(())
}

/// Every single-bit flip in the unsynced part (after the first record) recovers as the
/// records before the damaged one, with the torn tail starting at the damaged record.
fn check_flips_unsynced(batches: &[Batch], mutants: &Mutants) -> Result<(), String> {
    let (bytes, ends) = encode_log(batches);
    let synced_len = ends[0];
    for bit in synced_len as usize * 8..bytes.len() * 8 {
        let start = record_start(&ends, (bit / 8) as u64);
        let whole = ends.iter().take_while(|&&end| end <= start).count();
        let recovery = scan_with(&flipped(&bytes, bit), synced_len, mutants)
            .map_err(|e| format!("bit {bit}: {e}"))?;
        let torn_at = recovery.torn_tail.as_ref().map(|tail| tail.offset);
        if scanned(&recovery) != batches[..whole] || torn_at != Some(start) {
            return Err(format!(
                "bit {bit}: expected {whole} records and a tail at {start}, got {recovery:?}"
            ));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn log_round_trips(shapes in shapes()) {
        let batches = build(&shapes);
        prop_assert_eq!(check_round_trip(&batches), Ok(()));
    }

    #[test]
    fn every_truncation_recovers_a_clean_prefix(shapes in shapes()) {
        let batches = build(&shapes);
        prop_assert_eq!(check_truncations(&batches, &Mutants::none()), Ok(()));
    }

    #[test]
    fn every_bit_flip_in_the_synced_part_is_reported(shapes in shapes()) {
        let batches = build(&shapes);
        prop_assert_eq!(check_flips_synced(&batches, &Mutants::none()), Ok(()));
    }

    #[test]
    fn every_bit_flip_in_the_unsynced_part_is_a_torn_tail(shapes in shapes()) {
        let batches = build(&shapes);
        prop_assert_eq!(check_flips_unsynced(&batches, &Mutants::none()), Ok(()));
    }
}

/// Runs `check` over the property's cases with `mutant` on and asserts that some case fails.
#[cfg(madsim)]
fn assert_caught(mutant: Mutant, check: fn(&[Batch], &Mutants) -> Result<(), String>) {
    let mutants = Mutants::only(mutant);
    let mut runner = TestRunner::new(config(48));
    let result = runner.run(&shapes(), |shapes| {
        let outcome = check(&build(&shapes), &mutants);
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
        Ok(())
    });
    assert!(result.is_err(), "mutant {mutant} survived the property");
}

#[cfg(madsim)]
#[test]
fn mutant_drop_after_bad_is_caught_by_the_synced_flip_property() {
    assert_caught(Mutant::DropAfterBad, check_flips_synced);
}

#[cfg(madsim)]
#[test]
fn mutant_keep_torn_record_is_caught_by_the_unsynced_flip_property() {
    assert_caught(Mutant::KeepTornRecord, check_flips_unsynced);
}

#[cfg(madsim)]
#[test]
fn mutant_keep_torn_record_is_caught_by_the_truncation_property() {
    assert_caught(Mutant::KeepTornRecord, check_truncations);
}

#[cfg(madsim)]
#[test]
fn the_other_mutants_do_not_touch_the_log_format() {
    // Goal: the log properties judge only the log mutants; the rest must pass them.
    let batches = build(&[
        (0, vec![(1, vec![7; 5])]),
        (1, vec![(0, vec![]), (1, vec![1])]),
    ]);
    for mutant in Mutant::all() {
        if matches!(mutant, Mutant::DropAfterBad | Mutant::KeepTornRecord) {
            continue;
        }
        let mutants = Mutants::only(*mutant);
        assert_eq!(check_truncations(&batches, &mutants), Ok(()), "{mutant}");
        assert_eq!(check_flips_synced(&batches, &mutants), Ok(()), "{mutant}");
        assert_eq!(check_flips_unsynced(&batches, &mutants), Ok(()), "{mutant}");
    }
}

fn three_batches() -> Vec<Batch> {
    build(&[
        (0, vec![(0, b"one".to_vec())]),
        (1, vec![(1, b"two".to_vec()), (1, b"three".to_vec())]),
        (0, vec![(1, b"four".to_vec())]),
    ])
}

#[test]
fn corruption_followed_by_valid_records_is_corruption_not_a_torn_tail() {
    // Goal: a bad first record with valid records after it, inside the synced part, is an
    // error; the same bytes past the synced length are a torn tail from the bad record on.
    let (bytes, ends) = encode_log(&three_batches());
    let damaged = flipped(&bytes, 8 * 20);
    let error = scan(&damaged, ends[2]).unwrap_err();
    assert!(
        matches!(error, RecoveryError::CorruptRecord { offset: 0, .. }),
        "{error:?}"
    );
    let recovery = scan(&damaged, 0).unwrap();
    assert!(recovery.batches.is_empty());
    assert_eq!(recovery.torn_tail.map(|tail| tail.len), Some(ends[2]));
    insta::assert_snapshot!(error.to_string(), @"corrupt record at offset 0 inside the synced part (271 bytes): checksum 0xea3a45ef != stored 0x30c9c633");
}

#[test]
fn zero_filled_tail_is_a_torn_tail() {
    // Goal: a preallocated or hole-filled tail past the synced length is dropped cleanly.
    let (mut bytes, ends) = encode_log(&three_batches());
    bytes.extend_from_slice(&[0; 40]);
    let recovery = scan(&bytes, ends[2]).unwrap();
    assert_eq!(recovery.batches.len(), 3);
    let tail = recovery.torn_tail.unwrap();
    assert_eq!((tail.offset, tail.len), (ends[2], 40));
    assert_eq!(tail.reason, CorruptReason::BadMagic { found: 0 });
}

#[test]
fn log_shorter_than_its_synced_length_is_an_error() {
    let (bytes, ends) = encode_log(&three_batches());
    let error = scan(&bytes[..ends[1] as usize], ends[2]).unwrap_err();
    assert_eq!(
        error,
        RecoveryError::LogShorterThanSynced {
            log_len: ends[1],
            synced_len: ends[2]
        }
    );
}

#[test]
fn synced_length_inside_a_record_is_an_error() {
    let (bytes, ends) = encode_log(&three_batches());
    let error = scan(&bytes, ends[0] + 3).unwrap_err();
    assert!(
        matches!(error, RecoveryError::SyncedLenInsideRecord { .. }),
        "{error:?}"
    );
}

#[test]
fn a_checksum_valid_record_out_of_sequence_is_an_error_even_unsynced() {
    // Goal: a crash cannot write a valid record at the wrong position (a misdirected or
    // replayed write can), so this is reported wherever it is.
    let mut batches = three_batches();
    batches[2].first_position += 1;
    let (bytes, _) = encode_log(&batches);
    let error = scan(&bytes, 0).unwrap_err();
    assert!(
        matches!(
            error,
            RecoveryError::Discontinuous {
                found_position: 4,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn a_checksum_valid_record_that_does_not_parse_is_an_error() {
    let mut record = log::encode(&three_batches()[0]);
    record[12] = 9; // the kind byte
    let body_len = u32::from_le_bytes(record[4..8].try_into().unwrap());
    let crc = crc32c::crc32c(&record[..8]);
    let crc = crc32c::crc32c_append(crc, &record[12..]);
    assert_eq!(body_len as usize, record.len() - 12);
    record[8..12].copy_from_slice(&crc.to_le_bytes());
    let error = scan(&record, 0).unwrap_err();
    insta::assert_snapshot!(error.to_string(), @"malformed record at offset 0: unknown record kind 9");
}

fn checkpoint_file(slots: &[(u64, Checkpoint)]) -> Vec<u8> {
    let mut file = vec![0; (CHECKPOINT_SLOT_SPACING + 24) as usize];
    for (offset, checkpoint) in slots {
        let at = *offset as usize;
        file[at..at + 24].copy_from_slice(&checkpoint.encode());
    }
    file
}

#[test]
fn checkpoint_slots_alternate_and_the_newest_valid_wins() {
    let first = Checkpoint {
        sequence: 1,
        synced_len: 100,
    };
    let second = Checkpoint {
        sequence: 2,
        synced_len: 250,
    };
    assert_eq!(
        (first.slot_offset(), second.slot_offset()),
        (CHECKPOINT_SLOT_SPACING, 0)
    );
    let both = checkpoint_file(&[(0, second), (CHECKPOINT_SLOT_SPACING, first)]);
    assert_eq!(read_checkpoint(&both).unwrap().synced_len(), 250);
    assert_eq!(read_checkpoint(&[]).unwrap().synced_len(), 0);
    // A torn write of checkpoint 3 (slot 1) leaves checkpoint 2 in force.
    let mut torn = both.clone();
    torn[CHECKPOINT_SLOT_SPACING as usize + 5] ^= 0xff;
    let read = read_checkpoint(&torn).unwrap();
    assert_eq!((read.synced_len(), read.damaged_slot), (250, Some(1)));
    // The very first checkpoint write tore: nothing was ever acknowledged.
    let mut first_torn = checkpoint_file(&[(CHECKPOINT_SLOT_SPACING, first)]);
    first_torn.truncate(CHECKPOINT_SLOT_SPACING as usize + 10);
    assert_eq!(read_checkpoint(&first_torn).unwrap().checkpoint, None);
}

#[test]
fn checkpoint_damage_that_no_crash_explains_is_an_error() {
    let first = Checkpoint {
        sequence: 1,
        synced_len: 100,
    };
    let second = Checkpoint {
        sequence: 2,
        synced_len: 250,
    };
    let mut both_bad = checkpoint_file(&[(0, second), (CHECKPOINT_SLOT_SPACING, first)]);
    both_bad[1] ^= 1;
    both_bad[CHECKPOINT_SLOT_SPACING as usize + 1] ^= 1;
    let error = read_checkpoint(&both_bad).unwrap_err();
    insta::assert_snapshot!(error.to_string(), @"the checkpoint is corrupt: both slots are damaged");
    let mut slot0_only = checkpoint_file(&[(0, second)]);
    slot0_only[2] ^= 1;
    assert!(read_checkpoint(&slot0_only).is_err());
}
