//! The simulated disk: fsync semantics, the crash model and storage faults.
//!
//! Each fault test shows the effect with the fault on and its absence with the fault off.
//! Where the effect is drawn from the seed, the test runs several seeds and asserts that the
//! effect shows in at least one of them (and never with the fault off): runs are deterministic,
//! so such a test cannot turn flaky.
#![cfg(madsim)]

use sim_core::disk::{
    self, Corruption, CrashModel, DiskControl, DiskError, DiskErrorKind, DiskEvent, Latency,
};
use sim_core::trace::Event;
use sim_core::{run, NodeId, Report, SimConfig};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECTOR: usize = 512;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn config(crash_model: CrashModel) -> SimConfig {
    let mut config = SimConfig::default();
    config.disk.crash_model = crash_model;
    config
}

/// Only unsynced data may be lost; no tearing, no reordering.
fn lose_only() -> CrashModel {
    CrashModel {
        lose_unsynced: true,
        torn_writes: false,
        reorder_unsynced: false,
    }
}

/// Values shared between node code and the test (node `init`s must be `Send + Sync`).
#[derive(Clone)]
struct Shared<T>(Arc<Mutex<Vec<T>>>);

impl<T> Default for Shared<T> {
    fn default() -> Self {
        Shared(Arc::default())
    }
}

impl<T: Clone> Shared<T> {
    fn push(&self, value: T) {
        self.0.lock().unwrap().push(value);
    }
    fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Runs `script` once on a node `db` (whose process then stays up: sim-core ignores crashes
/// of a node whose `init` returned), crashes the node after 50 ms, and returns what `inspect`
/// reads of the surviving disk.
fn crash_and_inspect<I, Fut, T>(
    seed: u64,
    config: SimConfig,
    script: I,
    inspect: impl FnOnce(DiskControl) -> T + Send + 'static,
) -> T
where
    I: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + 'static,
    T: Send + 'static,
{
    let out = Arc::new(Mutex::new(None));
    let slot = out.clone();
    let report = run(seed, config, move |sim| async move {
        let node = sim
            .node("db")
            .init(move || {
                let script = script();
                async move {
                    script.await;
                    stay_up().await;
                }
            })
            .build();
        sim.sleep(ms(50)).await;
        sim.crash(node);
        *slot.lock().unwrap() = Some(inspect(sim.disk(node)));
        Ok(())
    });
    assert!(report.outcome.is_pass(), "seed {seed}: {}", report.outcome);
    let value = out.lock().unwrap().take();
    value.expect("inspected")
}

/// Keeps the node's process running until it crashes (sim-core does not crash a node whose
/// `init` returned).
async fn stay_up() {
    std::future::pending::<()>().await
}

/// Creates `path` with `data`, syncs it and its directory.
async fn create_synced(path: &str, data: &[u8]) -> disk::File {
    let file = disk::create(path).await.unwrap();
    file.write_at(data, 0).await.unwrap();
    file.sync_all().await.unwrap();
    let dir = path.rfind('/').map_or("", |slash| &path[..slash]);
    disk::sync_dir(dir).await.unwrap();
    file
}

fn disk_events(report: &Report) -> Vec<DiskEvent> {
    let timeline = report.timeline.as_ref().expect("trace kept");
    timeline
        .events
        .iter()
        .filter_map(|event| match &event.event {
            Event::Disk(disk) => Some(disk.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn fsync_synced_data_survives_every_crash_and_unsynced_data_does_not() {
    // Goal: whatever the crash model draws, synced data is there after a crash; the same
    // data written without fsync is lost in some seeds (so the check can fail).
    let base = vec![b'a'; 3 * SECTOR];
    for seed in 0..20 {
        let data = base.clone();
        let survived = crash_and_inspect(
            seed,
            config(CrashModel::default()),
            move || {
                let data = data.clone();
                async move {
                    let file = create_synced("dir/synced", &data).await;
                    // Unsynced activity after the sync, on the same file and on others.
                    file.append(&[b'x'; 2 * SECTOR]).await.unwrap();
                    let other = disk::create("dir/other").await.unwrap();
                    other.write_at(&[b'y'; 4 * SECTOR], 0).await.unwrap();
                    disk::rename("dir/other", "dir/renamed").await.unwrap();
                }
            },
            |disk| disk.read_file("dir/synced"),
        );
        let survived = survived.expect("a synced file and name survive");
        assert_eq!(&survived[..base.len()], &base[..], "seed {seed}");
    }
    let mut lost = 0;
    for seed in 0..20 {
        let survived = crash_and_inspect(
            seed,
            config(CrashModel::default()),
            || async {
                let file = create_synced("f", b"").await;
                file.write_at(&[b'a'; SECTOR], 0).await.unwrap();
            },
            |disk| disk.read_file("f").unwrap(),
        );
        lost += usize::from(survived != vec![b'a'; SECTOR]);
    }
    assert!(lost > 0, "without fsync the data must be lost in some seed");
}

#[test]
fn unsynced_appends_are_lost_at_a_crash_unless_lose_unsynced_is_off() {
    // Goal: with `lose_unsynced` on, an unsynced append is lost in some seeds and, when it
    // survives, it survives whole; with it off, it always survives.
    let script = || async {
        let file = create_synced("log", b"base").await;
        file.append(b"+tail").await.unwrap();
    };
    let mut outcomes = std::collections::BTreeSet::new();
    for seed in 0..10 {
        let survived = crash_and_inspect(seed, config(lose_only()), script, |disk| {
            disk.read_file("log").unwrap()
        });
        assert!(
            survived == b"base" || survived == b"base+tail",
            "seed {seed}: {survived:?}"
        );
        outcomes.insert(survived);
    }
    assert!(outcomes.contains(b"base".as_slice()), "never lost");
    let keep_all = CrashModel {
        lose_unsynced: false,
        ..CrashModel::default()
    };
    for seed in 0..10 {
        let survived = crash_and_inspect(seed, config(keep_all), script, |disk| {
            disk.read_file("log").unwrap()
        });
        assert_eq!(survived, b"base+tail", "seed {seed}");
    }
}

#[test]
fn dir_sync_created_file_may_vanish_without_a_directory_sync() {
    // Goal: an fsynced new file whose directory was not synced may vanish; once the directory
    // is synced, it never does.
    let mut vanished = 0;
    for seed in 0..10 {
        let files = crash_and_inspect(
            seed,
            config(lose_only()),
            || async {
                let file = disk::create("wal/new").await.unwrap();
                file.write_at(b"data", 0).await.unwrap();
                file.sync_all().await.unwrap();
            },
            |disk| disk.files(),
        );
        vanished += usize::from(files.is_empty());
    }
    assert!(vanished > 0, "never vanished without sync_dir");
    for seed in 0..10 {
        let contents = crash_and_inspect(
            seed,
            config(CrashModel::default()),
            || async {
                create_synced("wal/new", b"data").await;
            },
            |disk| disk.read_file("wal/new"),
        );
        assert_eq!(contents.as_deref(), Some(&b"data"[..]), "seed {seed}");
    }
}

#[test]
fn dir_sync_rename_and_remove_may_be_undone_without_a_directory_sync() {
    // Goal: the write-then-rename pattern needs a directory sync after the rename: without it
    // a crash may bring back the old name (and a removed file); with it, never.
    let run_rename = |seed: u64, sync: bool| {
        crash_and_inspect(
            seed,
            config(lose_only()),
            move || async move {
                create_synced("old", b"gone").await;
                create_synced("tmp", b"new").await;
                disk::rename("tmp", "current").await.unwrap();
                disk::remove("old").await.unwrap();
                if sync {
                    disk::sync_dir("").await.unwrap();
                }
            },
            |disk| disk.files(),
        )
    };
    let mut undone = 0;
    for seed in 0..10 {
        let files = run_rename(seed, false);
        assert!(
            files.contains(&"tmp".to_string()) != files.contains(&"current".to_string()),
            "seed {seed}: a rename is atomic: {files:?}"
        );
        undone += usize::from(files.contains(&"tmp".to_string()));
        undone += usize::from(files.contains(&"old".to_string()));
    }
    assert!(undone > 0, "never undone without sync_dir");
    for seed in 0..10 {
        assert_eq!(
            run_rename(seed, true),
            vec!["current".to_string()],
            "seed {seed}"
        );
    }
}

/// Leading bytes `b` then `a`: how many bytes of the new write landed.
fn landed_bytes(contents: &[u8], sectors: usize) -> usize {
    assert_eq!(contents.len(), sectors * SECTOR);
    let new = contents.iter().take_while(|byte| **byte == b'b').count();
    assert!(
        contents[new..].iter().all(|byte| *byte == b'a'),
        "a prefix of new bytes, then old ones"
    );
    new
}

#[test]
fn torn_write_lands_a_prefix_of_whole_sectors_only_when_torn_writes_is_on() {
    // Goal: with `torn_writes`, an unsynced 4-sector overwrite may land in part, cut at a
    // sector boundary; without it, it lands whole or not at all.
    let script = || async {
        let file = create_synced("data", &[b'a'; 4 * SECTOR]).await;
        file.write_at(&[b'b'; 4 * SECTOR], 0).await.unwrap();
    };
    let torn_model = CrashModel {
        torn_writes: true,
        ..lose_only()
    };
    let mut torn = 0;
    for seed in 0..30 {
        let contents = crash_and_inspect(seed, config(torn_model), script, |disk| {
            disk.read_file("data").unwrap()
        });
        let landed = landed_bytes(&contents, 4);
        assert_eq!(landed % SECTOR, 0, "seed {seed}: cut inside a sector");
        torn += usize::from(landed > 0 && landed < 4 * SECTOR);
    }
    assert!(torn > 0, "never torn");
    for seed in 0..30 {
        let contents = crash_and_inspect(seed, config(lose_only()), script, |disk| {
            disk.read_file("data").unwrap()
        });
        let landed = landed_bytes(&contents, 4);
        assert!(landed == 0 || landed == 4 * SECTOR, "seed {seed}: torn");
    }
}

#[test]
fn out_of_order_unsynced_writes_may_land_without_earlier_ones() {
    // Goal: with `reorder_unsynced`, a later unsynced write may survive a crash while an
    // earlier one is lost; without it, what lands is always a prefix.
    let script = || async {
        let file = create_synced("data", &[b'a'; 2 * SECTOR]).await;
        file.write_at(&[b'1'; SECTOR], 0).await.unwrap();
        file.write_at(&[b'2'; SECTOR], SECTOR as u64).await.unwrap();
    };
    let outcome = |seed: u64, model: CrashModel| {
        crash_and_inspect(seed, config(model), script, |disk| {
            let contents = disk.read_file("data").unwrap();
            (contents[0], contents[SECTOR])
        })
    };
    let reorder = CrashModel {
        reorder_unsynced: true,
        ..lose_only()
    };
    let mut out_of_order = 0;
    for seed in 0..20 {
        out_of_order += usize::from(outcome(seed, reorder) == (b'a', b'2'));
    }
    assert!(out_of_order > 0, "the second write never landed alone");
    for seed in 0..20 {
        assert_ne!(outcome(seed, lose_only()), (b'a', b'2'), "seed {seed}");
    }
}

/// FNV-1a, a checksum a storage engine might keep next to its data.
fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[test]
fn corrupt_sector_flips_stored_bits_that_a_checksum_catches_after_restart() {
    // Goal: bit flips in the durable image are recorded in the trace and seen by the node
    // after a restart, so that its checksum fails; without corruption it passes.
    let run_with = |seed: u64, corrupt: bool| {
        let verdicts: Shared<bool> = Shared::default();
        let seen = verdicts.clone();
        let mut config = SimConfig::default();
        config.trace.keep = true;
        let report = run(seed, config, move |sim| async move {
            let node = sim
                .node("db")
                .init(move || {
                    let seen = seen.clone();
                    async move {
                        let Ok(file) = disk::open("record").await else {
                            let mut record = vec![7u8; 3 * SECTOR];
                            record.extend(checksum(&record).to_le_bytes());
                            create_synced("record", &record).await;
                            return stay_up().await;
                        };
                        let record = file.read_to_end().await.unwrap();
                        let (data, sum) = record.split_at(record.len() - 8);
                        seen.push(checksum(data).to_le_bytes() == sum);
                    }
                })
                .build();
            sim.sleep(ms(10)).await;
            if corrupt {
                let corruption = sim.disk(node).corrupt_sector("record", 1).unwrap();
                assert!((1..=8).contains(&corruption.bits));
            }
            sim.restart(node);
            sim.sleep(ms(10)).await;
            Ok(())
        });
        assert!(report.outcome.is_pass(), "{}", report.outcome);
        let corruptions = disk_events(&report)
            .into_iter()
            .filter(|event| matches!(event, DiskEvent::Corrupt { sector: 1, .. }))
            .count();
        (verdicts.take(), corruptions)
    };
    for seed in 0..5 {
        assert_eq!(run_with(seed, true), (vec![false], 1), "seed {seed}");
        assert_eq!(run_with(seed, false), (vec![true], 0), "seed {seed}");
    }
}

#[test]
fn corrupt_sector_shows_at_once_in_a_clean_cache_and_after_a_crash_in_a_dirty_one() {
    // Goal: the running node reads a flipped sector at once when its cached copy is clean; a
    // dirty cached copy hides it until the crash drops the cache.
    let report = run(1, config(lose_only()), |sim| async move {
        let node = sim
            .node("db")
            .init(|| async {
                let file = create_synced("f", &[0u8; 2 * SECTOR]).await;
                file.write_at(&[9u8; SECTOR], SECTOR as u64).await.unwrap();
            })
            .build();
        sim.sleep(ms(10)).await;
        let control = sim.disk(node);
        control.corrupt_sector("f", 0).unwrap();
        control.corrupt_sector("f", 1).unwrap();
        let cached = control.read_file("f").unwrap();
        let stored = control.read_durable("f").unwrap();
        assert_eq!(
            cached[..SECTOR],
            stored[..SECTOR],
            "clean sector: seen at once"
        );
        assert!(cached[..SECTOR].iter().any(|byte| *byte != 0));
        assert_eq!(cached[SECTOR..], [9u8; SECTOR][..], "dirty sector: hidden");
        assert!(stored[SECTOR..].iter().any(|byte| *byte != 0));
        let errors = [
            control.corrupt_sector("f", 2).unwrap_err().kind(),
            control.corrupt_sector("missing", 0).unwrap_err().kind(),
        ];
        assert_eq!(
            errors,
            [DiskErrorKind::InvalidInput, DiskErrorKind::NotFound]
        );
        let corruption = control.corrupt_random_sector(None).unwrap();
        assert_eq!(corruption.path, "f");
        assert!(corruption.sector < 2);
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
}

/// Whether each corruption hit fsynced data, in order.
fn synced_flags(corruptions: &[Corruption]) -> Vec<bool> {
    corruptions.iter().map(|c| c.synced).collect()
}

#[test]
fn corrupt_sector_hits_synced_data_in_a_sector_written_and_fsynced() {
    // Goal: a sector that reached the disk through a successful fsync is acknowledged data:
    // its corruption reports `synced`, in the return value, the list and the trace.
    let mut config = config(lose_only());
    config.trace.keep = true;
    let report = run(1, config, |sim| async move {
        let node = sim
            .node("db")
            .init(|| async {
                create_synced("f", &[1u8; 2 * SECTOR]).await;
                stay_up().await;
            })
            .build();
        sim.sleep(ms(10)).await;
        let corruption = sim.disk(node).corrupt_sector("f", 1).unwrap();
        assert_eq!((corruption.path.as_str(), corruption.sector), ("f", 1));
        assert!(corruption.synced);
        assert_eq!(sim.disk(node).corruptions(), vec![corruption]);
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    let traced: Vec<bool> = disk_events(&report)
        .into_iter()
        .filter_map(|event| match event {
            DiskEvent::Corrupt { synced, .. } => Some(synced),
            _ => None,
        })
        .collect();
    assert_eq!(traced, vec![true]);
}

#[test]
fn corrupt_sector_of_written_back_bytes_is_unsynced_until_an_fsync_vouches_for_them() {
    // Goal: bytes the page cache wrote back under pressure are on the disk but never fsynced:
    // corrupting them is no damage to acknowledged data. A later successful fsync of the file
    // vouches for the flipped bytes still there (it does not rewrite written-back bytes), so
    // that corruption turns synced, and so does any corruption after the fsync.
    let mut config = config(lose_only());
    config.disk.pending_ops_max = 8;
    config.trace.keep = true;
    let report = run(1, config, |sim| async move {
        let node = sim
            .node("db")
            .init(|| async {
                // Sector 0 fsynced; 40 appends of 64 bytes, the first 32 written back (bytes
                // 512..2560: sectors 1 to 4), the last 8 pending (sector 5).
                let file = create_synced("f", &[1u8; SECTOR]).await;
                for round in 0..40u8 {
                    file.append(&[round; 64]).await.unwrap();
                }
                sim_core::time::sleep(ms(20)).await;
                file.sync_all().await.unwrap();
                stay_up().await;
            })
            .build();
        sim.sleep(ms(10)).await;
        let control = sim.disk(node);
        assert_eq!(control.read_durable("f").unwrap().len(), 2560);
        assert!(!control.corrupt_sector("f", 1).unwrap().synced);
        assert!(!control.corrupt_sector("f", 4).unwrap().synced);
        assert!(control.corrupt_sector("f", 0).unwrap().synced);
        assert_eq!(synced_flags(&control.corruptions()), [false, false, true]);
        sim.sleep(ms(20)).await;
        assert_eq!(control.pending_ops(), 0, "the node fsynced");
        assert_eq!(synced_flags(&control.corruptions()), [true, true, true]);
        assert!(control.corrupt_sector("f", 2).unwrap().synced);
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    let damage_synced = disk_events(&report)
        .into_iter()
        .filter(|event| matches!(event, DiskEvent::DamageSynced { path, .. } if path == "f"))
        .count();
    assert_eq!(damage_synced, 1);
}

#[test]
fn corrupt_sector_of_bytes_that_landed_at_a_crash_is_unsynced_until_the_next_fsync() {
    // Goal: unsynced writes that landed at a crash (whole, or torn) are on the disk but the
    // node never learnt they were durable: their corruption is not synced. The restarted node
    // fsyncs the file, after which every byte of it is fsynced.
    let mut config = config(CrashModel {
        lose_unsynced: false,
        torn_writes: false,
        reorder_unsynced: false,
    });
    config.disk.pending_ops_max = 64;
    let report = run(1, config, |sim| async move {
        let node = sim
            .node("db")
            .init(|| async {
                if let Ok(file) = disk::open("f").await {
                    sim_core::time::sleep(ms(20)).await;
                    file.sync_all().await.unwrap();
                    return stay_up().await;
                }
                let file = create_synced("f", &[1u8; SECTOR]).await;
                file.append(&[2u8; 2 * SECTOR]).await.unwrap();
                stay_up().await;
            })
            .build();
        sim.sleep(ms(10)).await;
        sim.crash(node);
        let control = sim.disk(node);
        assert_eq!(control.read_durable("f").unwrap().len(), 3 * SECTOR);
        assert!(!control.corrupt_sector("f", 2).unwrap().synced);
        assert!(control.corrupt_sector("f", 0).unwrap().synced);
        sim.restart(node);
        sim.sleep(ms(5)).await;
        assert!(!control.corrupt_sector("f", 1).unwrap().synced, "not yet");
        sim.sleep(ms(30)).await;
        assert_eq!(synced_flags(&control.corruptions()), [true, true, true]);
        assert!(control.corrupt_sector("f", 1).unwrap().synced);
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
}

#[test]
fn corrupt_sector_of_bytes_landed_by_a_failed_fsync_is_unsynced() {
    // Goal: a write that reached the disk during a failed fsync was never acknowledged (the
    // node got the error): its corruption is not synced. Whether it lands is drawn per seed,
    // so several seeds are run and the landing must show in one of them.
    let mut landed_runs = 0;
    for seed in 0..10 {
        let landed: Shared<bool> = Shared::default();
        let seen = landed.clone();
        let report = run(seed, config(lose_only()), move |sim| async move {
            let node = sim
                .node("db")
                .init(|| async {
                    let file = create_synced("f", &[1u8; SECTOR]).await;
                    sim_core::time::sleep(ms(10)).await;
                    file.append(&[2u8; SECTOR]).await.unwrap();
                    assert!(file.sync_all().await.is_err());
                    stay_up().await;
                })
                .build();
            sim.sleep(ms(5)).await;
            let control = sim.disk(node);
            control.set_fsync_error_probability(1.0).unwrap();
            sim.sleep(ms(10)).await;
            if control.read_durable("f").unwrap().len() == 2 * SECTOR {
                assert!(!control.corrupt_sector("f", 1).unwrap().synced);
                assert!(control.corrupt_sector("f", 0).unwrap().synced);
                seen.push(true);
            }
            Ok(())
        });
        assert!(report.outcome.is_pass(), "seed {seed}: {}", report.outcome);
        landed_runs += landed.take().len();
    }
    assert!(
        landed_runs > 0,
        "the write never landed in the failed fsync"
    );
}

#[test]
fn no_space_when_the_capacity_is_reached_and_none_when_it_is_raised() {
    // Goal: a write past the capacity fails with NoSpace and changes nothing; raising the
    // capacity at run time makes the same write succeed.
    let results: Shared<Result<u64, DiskErrorKind>> = Shared::default();
    let seen = results.clone();
    let mut config = SimConfig::default();
    config.disk.faults.capacity_bytes = 1000;
    let report = run(1, config, move |sim| async move {
        let node = sim
            .node("db")
            .init(move || {
                let seen = seen.clone();
                async move {
                    let file = disk::create("f").await.unwrap();
                    for _ in 0..3 {
                        let written = file.append(&[1; 600]).await.map_err(|e| e.kind());
                        seen.push(written);
                        seen.push(Ok(file.len().await.unwrap()));
                        sim_core::time::sleep(ms(10)).await;
                    }
                }
            })
            .build();
        sim.sleep(ms(15)).await;
        sim.disk(node).set_capacity_bytes(10_000).unwrap();
        sim.sleep(ms(50)).await;
        assert_eq!(sim.disk(node).usage_bytes(), 1200);
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    let expected = [
        Ok(0),
        Ok(600),
        Err(DiskErrorKind::NoSpace),
        Ok(600),
        Ok(600),
        Ok(1200),
    ];
    assert_eq!(results.take()[..6], expected[..]);
}

/// Node `db` syncs "base", appends four records at 10 ms and syncs (the fsync fault is on
/// from 5 to 15 ms when `fail`), syncs again at 20 ms and reads the file; the supervisor
/// crashes it at 30 ms. Returns the node's results, what survived and the fsync verdicts.
fn fsync_failure_run(seed: u64, fail: bool) -> (Vec<String>, String, usize) {
    let results: Shared<String> = Shared::default();
    let seen = results.clone();
    let mut config = SimConfig::default();
    config.trace.keep = true;
    let report = run(seed, config, move |sim| async move {
        let node = sim
            .node("db")
            .init(move || {
                let seen = seen.clone();
                async move {
                    let file = create_synced("log", b"base").await;
                    sim_core::time::sleep(ms(10)).await;
                    for record in ["+1", "+2", "+3", "+4"] {
                        file.append(record.as_bytes()).await.unwrap();
                    }
                    let first = file.sync_all().await.map_err(|e| e.kind());
                    seen.push(format!("{first:?}"));
                    sim_core::time::sleep(ms(10)).await;
                    let second = file.sync_all().await.map_err(|e| e.kind());
                    seen.push(format!("{second:?}"));
                    let cached = file.read_to_end().await.unwrap();
                    seen.push(String::from_utf8(cached).unwrap());
                    stay_up().await;
                }
            })
            .build();
        sim.sleep(ms(5)).await;
        if fail {
            sim.disk(node).set_fsync_error_probability(1.0).unwrap();
        }
        sim.sleep(ms(10)).await;
        sim.disk(node).set_fsync_error_probability(0.0).unwrap();
        sim.sleep(ms(15)).await;
        sim.crash(node);
        let survived = sim.disk(node).read_file("log").unwrap();
        sim_core::trace::note("survived", String::from_utf8(survived).unwrap());
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    let timeline = report.timeline.as_ref().unwrap();
    let survived = timeline
        .events
        .iter()
        .rev()
        .find_map(|event| match &event.event {
            Event::Note { text, .. } => Some(text.clone()),
            _ => None,
        });
    let verdicts = disk_events(&report)
        .into_iter()
        .filter(|event| matches!(event, DiskEvent::FsyncLost { .. }))
        .count();
    (results.take(), survived.unwrap(), verdicts)
}

#[test]
fn fsync_failure_may_drop_data_that_a_later_successful_fsync_does_not_persist() {
    // Goal: Linux fsyncgate semantics. After a failed fsync the node still reads its writes and
    // the next fsync succeeds, yet after a crash some of those writes are gone; with the
    // fault off, synced appends always survive.
    let mut lost = 0;
    for seed in 0..10 {
        let (results, survived, verdicts) = fsync_failure_run(seed, true);
        assert_eq!(
            results,
            ["Err(Io)", "Ok(())", "base+1+2+3+4"],
            "seed {seed}"
        );
        assert_eq!(verdicts, 1);
        lost += usize::from(survived != "base+1+2+3+4");
    }
    assert!(lost > 0, "a failed fsync never lost data");
    for seed in 0..10 {
        let (results, survived, verdicts) = fsync_failure_run(seed, false);
        assert_eq!(results, ["Ok(())", "Ok(())", "base+1+2+3+4"], "seed {seed}");
        assert_eq!((survived.as_str(), verdicts), ("base+1+2+3+4", 0));
    }
}

/// Runs `attempts` operations on node `db` (one per ms, through `op`) while the supervisor
/// switches a fault on at 20 ms and off at 40 ms; returns which attempts failed with `Io`.
fn io_errors_over_time<Op, Fut>(fault: fn(&DiskControl, f64), op: Op) -> Vec<bool>
where
    Op: Fn(disk::File) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = (disk::File, Result<(), DiskError>)> + 'static,
{
    let failures: Shared<bool> = Shared::default();
    let seen = failures.clone();
    let report = run(3, SimConfig::default(), move |sim| async move {
        let node = sim
            .node("db")
            .init(move || {
                let seen = seen.clone();
                async move {
                    let mut file = create_synced("f", &[5; 100]).await;
                    for _ in 0..60 {
                        let (back, result) = op(file).await;
                        file = back;
                        seen.push(matches!(result, Err(DiskError::Io { .. })));
                        sim_core::time::sleep(ms(1)).await;
                    }
                    assert_eq!(file.read_to_end().await.unwrap(), [5; 100]);
                }
            })
            .build();
        sim.sleep(ms(20)).await;
        fault(&sim.disk(node), 0.5);
        sim.sleep(ms(20)).await;
        fault(&sim.disk(node), 0.0);
        sim.sleep(ms(40)).await;
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    failures.take()
}

/// Failures before the fault, while on, and after.
fn split_by_phase(failures: &[bool]) -> (usize, usize, usize) {
    assert_eq!(failures.len(), 60);
    let count = |range: std::ops::Range<usize>| failures[range].iter().filter(|f| **f).count();
    (count(0..15), count(22..38), count(45..60))
}

#[test]
fn read_error_fails_some_reads_while_on_and_none_while_off() {
    // Goal: with a read error probability of 1/2, some reads fail with Io and others succeed
    // with the right data; before and after, none fails.
    let failures = io_errors_over_time(
        |control, p| control.set_read_error_probability(p).unwrap(),
        |file| async move {
            let mut buf = [0u8; 100];
            let result = file.read_at(&mut buf, 0).await.map(|count| {
                assert_eq!((count, buf), (100, [5; 100]));
            });
            (file, result)
        },
    );
    let (before, during, after) = split_by_phase(&failures);
    assert_eq!((before, after), (0, 0));
    assert!(during > 0 && during < 16, "{during} of 16 reads failed");
}

#[test]
fn write_error_fails_some_writes_without_changing_the_file() {
    // Goal: with a write error probability of 1/2, some writes fail with Io and change
    // nothing; before and after, none fails. (Every write rewrites the same bytes, and the node
    // checks the contents at the end.)
    let failures = io_errors_over_time(
        |control, p| control.set_write_error_probability(p).unwrap(),
        |file| async move {
            let result = file.write_at(&[5; 100], 0).await;
            (file, result)
        },
    );
    let (before, during, after) = split_by_phase(&failures);
    assert_eq!((before, after), (0, 0));
    assert!(during > 0 && during < 16, "{during} of 16 writes failed");
    let failed_write = run(1, SimConfig::default(), |sim| async move {
        let node = sim
            .node("db")
            .init(|| async {
                let file = disk::create("f").await.unwrap();
                file.write_at(b"kept", 0).await.unwrap();
            })
            .build();
        sim.sleep(ms(5)).await;
        assert_eq!(sim.disk(node).read_file("f").unwrap(), b"kept");
        Ok(())
    });
    assert!(failed_write.outcome.is_pass());
    let mut config = SimConfig::default();
    config.disk.faults.write_error_probability = 1.0;
    let report = run(1, config, |sim| async move {
        let node = sim
            .node("db")
            .init(|| async {
                let file = disk::create("f").await.unwrap();
                let error = file.write_at(b"lost", 0).await.unwrap_err();
                assert_eq!(error.kind(), DiskErrorKind::Io);
                let error = file.truncate(10).await.unwrap_err();
                assert_eq!(error.kind(), DiskErrorKind::Io);
            })
            .build();
        sim.sleep(ms(5)).await;
        assert_eq!(sim.disk(node).read_file("f").unwrap(), b"");
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
}

#[test]
fn disk_latency_delays_operations_within_the_range_and_not_when_off() {
    // Goal: with latency on, each operation takes a random time within the range (true time);
    // with it off, operations take no simulated time.
    let durations: Shared<Duration> = Shared::default();
    let seen = durations.clone();
    let report = run(5, SimConfig::default(), move |sim| async move {
        let node = sim
            .node("db")
            .init(move || {
                let seen = seen.clone();
                async move {
                    let file = disk::create("f").await.unwrap();
                    for _ in 0..20 {
                        let start = sim_core::time::now();
                        file.append(b"x").await.unwrap();
                        file.sync_all().await.unwrap();
                        seen.push(sim_core::time::now().saturating_duration_since(start));
                        sim_core::time::sleep(ms(20)).await;
                    }
                }
            })
            .build();
        let control = sim.disk(node);
        sim.sleep(ms(210)).await;
        let range = Latency {
            min_ms: 5,
            max_ms: 10,
        };
        control.set_latency(Some(range)).unwrap();
        sim.sleep(ms(500)).await;
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    let durations = durations.take();
    assert_eq!(durations.len(), 20);
    assert!(durations[..10].iter().all(|d| d.is_zero()), "{durations:?}");
    let slow = &durations[11..];
    assert!(
        slow.iter().all(|d| *d >= ms(10) && *d <= ms(20)),
        "{slow:?}"
    );
    let distinct: std::collections::BTreeSet<_> = slow.iter().collect();
    assert!(
        distinct.len() > 3,
        "latencies are drawn, not fixed: {slow:?}"
    );
}

/// A disk workload with random writes, syncs, renames, faults and crashes.
fn crash_workload(seed: u64) -> Report {
    use rand::Rng;
    let mut config = SimConfig::default();
    config.disk.faults.read_error_probability = 0.05;
    config.disk.faults.write_error_probability = 0.05;
    config.disk.faults.fsync_error_probability = 0.05;
    config.disk.faults.latency = Some(Latency {
        min_ms: 1,
        max_ms: 4,
    });
    config.disk.sector_size_bytes = 64;
    run(seed, config, |sim| async move {
        let node = sim
            .node("db")
            .init(|| async {
                let mut rng = sim_core::rng::stream("workload/db");
                let file = match disk::open("log").await {
                    Ok(file) => file,
                    Err(_) => disk::create("log").await.unwrap(),
                };
                for round in 0..30u32 {
                    let len = rng.gen_range(1..300);
                    let _ = file.append(&vec![round as u8; len]).await;
                    if rng.gen_bool(0.3) {
                        let _ = file.sync_all().await;
                        let _ = disk::sync_dir("").await;
                    }
                    if rng.gen_bool(0.1) {
                        let name = format!("snap-{round}");
                        if let Ok(snap) = disk::create(&name).await {
                            let _ = snap
                                .write_at(&file.read_to_end().await.unwrap_or_default(), 0)
                                .await;
                            let _ = disk::rename(&name, "snap").await;
                        }
                    }
                }
            })
            .build();
        let mut faults = sim_core::rng::stream(sim_core::rng::FAULTS);
        for _ in 0..4 {
            sim.sleep(ms(faults.gen_range(5..60))).await;
            sim.restart(node);
            if faults.gen_bool(0.5) {
                let _ = sim.disk(node).corrupt_random_sector(None);
            }
        }
        sim.sleep(ms(500)).await;
        Ok(())
    })
}

#[test]
fn determinism_disk_workload_with_crashes_gives_the_same_trace_for_a_seed() {
    // Goal: the disk's decisions (latency, faults, crash verdicts, corruption) come from the
    // seed only: the same seed gives the same trace hash, different seeds different ones.
    let mut hashes = std::collections::BTreeSet::new();
    for seed in 0..8 {
        let first = crash_workload(seed);
        let second = crash_workload(seed);
        assert!(first.outcome.is_pass(), "seed {seed}: {}", first.outcome);
        assert!(
            first.events > 100,
            "seed {seed}: only {} events",
            first.events
        );
        assert_eq!(first.trace_hash, second.trace_hash, "seed {seed}");
        assert_eq!(first.steps, second.steps, "seed {seed}");
        hashes.insert(first.trace_hash);
    }
    assert_eq!(hashes.len(), 8);
}

#[test]
fn determinism_disk_trace_hashes_match_the_snapshot_in_debug_and_release() {
    // Goal: the disk's trace hash does not depend on the build (CI tests in debug, the
    // command line runs in release): the snapshot pins the hashes of fixed seeds.
    let lines: Vec<String> = (0..4)
        .map(|seed| {
            let report = crash_workload(seed);
            format!(
                "seed {seed}: {:016x} events {} steps {} sim_ns {}",
                report.trace_hash, report.events, report.steps, report.sim_time_ns
            )
        })
        .collect();
    insta::assert_snapshot!("disk_trace_hashes", lines.join("\n"));
}

#[test]
fn restart_runs_init_on_the_surviving_disk() {
    // Goal: `init` of a restarted node sees what survived, and not what was lost.
    let seen: Shared<Vec<String>> = Shared::default();
    let shared = seen.clone();
    let report = run(2, config(lose_only()), move |sim| async move {
        let node = sim
            .node("db")
            .init(move || {
                let shared = shared.clone();
                async move {
                    let files = disk::list("").await.unwrap();
                    shared.push(files.clone());
                    if files.is_empty() {
                        create_synced("kept", b"1").await;
                        disk::create("unsynced").await.unwrap();
                    }
                    stay_up().await;
                }
            })
            .build();
        sim.sleep(ms(10)).await;
        sim.restart(node);
        sim.sleep(ms(10)).await;
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    let seen = seen.take();
    assert_eq!(seen[0], Vec::<String>::new());
    assert!(seen[1].contains(&"kept".to_string()), "{seen:?}");
}

#[test]
fn stale_handle_from_before_a_crash_fails_cleanly() {
    // Goal: a handle that escaped from an older incarnation cannot act on the new one's disk.
    let stash: Arc<Mutex<Option<disk::File>>> = Arc::default();
    let errors: Shared<DiskError> = Shared::default();
    let (stash_in, seen) = (stash.clone(), errors.clone());
    let report = run(1, SimConfig::default(), move |sim| async move {
        let node = sim
            .node("db")
            .init(move || {
                let (stash, seen) = (stash_in.clone(), seen.clone());
                async move {
                    let old = stash.lock().unwrap().take();
                    match old {
                        None => *stash.lock().unwrap() = Some(create_synced("f", b"v1").await),
                        Some(old) => seen.push(old.write_at(b"v2", 0).await.unwrap_err()),
                    }
                    stay_up().await;
                }
            })
            .build();
        sim.sleep(ms(10)).await;
        sim.restart(node);
        sim.sleep(ms(10)).await;
        assert_eq!(sim.disk(node).read_file("f").unwrap(), b"v1");
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    let errors = errors.take();
    assert!(
        matches!(
            errors[..],
            [DiskError::Stale {
                handle_incarnation: 0,
                current_incarnation: 1,
                ..
            }]
        ),
        "{errors:?}"
    );
    assert!(errors[0].to_string().contains("stale handle"));
    drop(stash);
}

#[test]
fn handles_follow_renames_and_fail_once_their_file_is_removed() {
    // Goal: a handle names the file, not the path; after removal it gives a clear error.
    let report = run(1, SimConfig::default(), |sim| async move {
        let node = sim
            .node("db")
            .init(|| async {
                let file = disk::create("a").await.unwrap();
                disk::rename("a", "b").await.unwrap();
                file.write_at(b"through rename", 0).await.unwrap();
                let replaced = disk::create("c").await.unwrap();
                disk::rename("b", "c").await.unwrap();
                let error = replaced.len().await.unwrap_err();
                assert_eq!(error.kind(), DiskErrorKind::Removed);
                disk::remove("c").await.unwrap();
                assert_eq!(file.len().await.unwrap_err().kind(), DiskErrorKind::Removed);
                let error = disk::open("c").await.unwrap_err();
                assert_eq!(error, DiskError::NotFound { path: "c".into() });
            })
            .build();
        sim.sleep(ms(5)).await;
        assert!(sim.disk(node).files().is_empty());
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
}

#[test]
fn bad_paths_and_misplaced_calls_give_clear_errors() {
    // Goal: bad input is a typed error with a message, never a panic.
    let report = run(1, SimConfig::default(), |sim| async move {
        let node = sim
            .node("db")
            .init(|| async {
                for path in ["", "/abs", "a//b", "a/", "a/../b", "nul\0"] {
                    let error = disk::create(path).await.unwrap_err();
                    assert_eq!(error.kind(), DiskErrorKind::InvalidPath, "{path:?}");
                    assert!(error.to_string().contains("invalid path"), "{error}");
                }
                disk::create("dir/file").await.unwrap();
                let errors = [
                    disk::create("dir/file").await.unwrap_err().kind(),
                    disk::create("dir").await.unwrap_err().kind(),
                    disk::create("dir/file/x").await.unwrap_err().kind(),
                    disk::open("dir").await.unwrap_err().kind(),
                    disk::list("dir/file").await.unwrap_err().kind(),
                    disk::rename("missing", "x").await.unwrap_err().kind(),
                    disk::remove("missing").await.unwrap_err().kind(),
                ];
                use DiskErrorKind::*;
                let expected = [
                    AlreadyExists,
                    IsADirectory,
                    NotADirectory,
                    IsADirectory,
                    NotADirectory,
                    NotFound,
                    NotFound,
                ];
                assert_eq!(errors, expected);
                assert_eq!(disk::list("dir").await.unwrap(), ["dir/file"]);
                let io: std::io::Error = disk::open("nope").await.unwrap_err().into();
                assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
                let inner = io.get_ref().unwrap().downcast_ref::<DiskError>().unwrap();
                assert_eq!(inner.kind(), NotFound);
            })
            .build();
        sim.sleep(ms(5)).await;
        let error = disk::create("from-supervisor").await.unwrap_err();
        assert_eq!(error.kind(), DiskErrorKind::NotOnNode);
        let control = sim.disk(node);
        assert!(control.set_read_error_probability(1.5).is_err());
        let zero = Latency {
            min_ms: 0,
            max_ms: 1,
        };
        assert!(control.set_latency(Some(zero)).is_err());
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    let mut config = SimConfig::default();
    config.disk.sector_size_bytes = 1000;
    assert!(config.validate().is_err());
}

#[test]
fn handle_used_on_another_node_fails_with_wrong_node() {
    // Goal: one node's handle cannot reach into another node's disk.
    let stash: Arc<Mutex<Option<disk::File>>> = Arc::default();
    let errors: Shared<DiskErrorKind> = Shared::default();
    let (stash_a, stash_b, seen) = (stash.clone(), stash.clone(), errors.clone());
    let report = run(1, SimConfig::default(), move |sim| async move {
        sim.node("a")
            .init(move || {
                let stash = stash_a.clone();
                async move { *stash.lock().unwrap() = Some(disk::create("f").await.unwrap()) }
            })
            .build();
        sim.node("b")
            .init(move || {
                let (stash, seen) = (stash_b.clone(), seen.clone());
                async move {
                    sim_core::time::sleep(ms(5)).await;
                    let file = stash.lock().unwrap().take().unwrap();
                    seen.push(file.len().await.unwrap_err().kind());
                }
            })
            .build();
        sim.sleep(ms(20)).await;
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    assert_eq!(errors.take(), [DiskErrorKind::WrongNode]);
}

#[test]
fn page_cache_is_bounded_by_writing_back_the_oldest_operations() {
    // Goal: the unsynced operations of a disk stay within `pending_ops_max`; the oldest are
    // written back (and so survive a crash), as under memory pressure.
    let mut config = config(lose_only());
    config.disk.pending_ops_max = 8;
    config.trace.keep = true;
    let report = run(1, config, |sim| async move {
        let node: NodeId = sim
            .node("db")
            .init(|| async {
                let file = create_synced("f", b"").await;
                for round in 0..100u8 {
                    file.append(&[round]).await.unwrap();
                }
            })
            .build();
        sim.sleep(ms(5)).await;
        assert_eq!(sim.disk(node).pending_ops(), 8);
        sim.crash(node);
        let survived = sim.disk(node).read_file("f").unwrap();
        assert!(
            survived.len() >= 92,
            "only {} bytes survived",
            survived.len()
        );
        Ok(())
    });
    assert!(report.outcome.is_pass(), "{}", report.outcome);
    let writebacks = disk_events(&report)
        .into_iter()
        .filter(|event| matches!(event, DiskEvent::Writeback { .. }))
        .count();
    assert_eq!(writebacks, 92);
}

#[test]
fn replace_durably_leaves_the_new_contents_whole_after_any_crash() {
    // Goal: after `replace_durably` returns, every crash the model draws leaves the new
    // contents under the name, and no temporary file.
    for seed in 0..20 {
        let survived = crash_and_inspect(
            seed,
            config(CrashModel::default()),
            || async {
                disk::replace_durably("state/current", &[b'a'; 3 * SECTOR])
                    .await
                    .unwrap();
                disk::replace_durably("state/current", &[b'b'; 2 * SECTOR])
                    .await
                    .unwrap();
            },
            |disk| (disk.read_file("state/current"), disk.files()),
        );
        assert_eq!(survived.0, Some(vec![b'b'; 2 * SECTOR]), "seed {seed}");
        assert_eq!(survived.1, ["state/current"], "seed {seed}");
    }
}
