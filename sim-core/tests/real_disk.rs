//! The real disk (a build without `--cfg madsim`): the simulated disk's API on real files
//! under each node's data folder, with real fsyncs.
//!
//! Every test runs its nodes on one thread, in a data folder of its own under the system's
//! temporary folder (removed at the end), within a time bound.
#![cfg(not(madsim))]

use sim_core::disk::{self, DiskError, DiskErrorKind};
use sim_core::node::{block_on, run_as, Cluster};
use sim_core::NodeId;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A data root of its own for one test, removed when dropped.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new(test: &str) -> TempRoot {
        let path =
            std::env::temp_dir().join(format!("sim-core-real-disk-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempRoot(path)
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `test` on a runtime, failing it if it takes longer than the bound.
fn bounded<F: Future<Output = ()>>(test: F) {
    block_on(async {
        tokio::time::timeout(Duration::from_secs(30), test)
            .await
            .expect("the test finished within 30 s");
    });
}

/// A cluster of `names` with its data under `root`, installed on this thread.
fn cluster(names: &[&str], root: &TempRoot) -> Cluster {
    let cluster = Cluster::loopback(names, &root.0).expect("a valid cluster");
    cluster.install();
    cluster
}

fn kind<T: std::fmt::Debug>(result: Result<T, DiskError>) -> DiskErrorKind {
    result.expect_err("an error").kind()
}

#[test]
fn write_append_read_back_and_the_real_file() {
    let root = TempRoot::new("round-trip");
    bounded(async {
        let cluster = cluster(&["db"], &root);
        let db = cluster.id("db").unwrap();
        run_as(db, async {
            let file = disk::create("log").await.unwrap();
            assert_eq!(file.path(), "log");
            assert_eq!(file.node(), db);
            assert_eq!(file.append(b"hello").await.unwrap(), 0);
            assert_eq!(file.append(b" world").await.unwrap(), 5);
            file.write_at(b"W", 6).await.unwrap();
            assert_eq!(file.len().await.unwrap(), 11);
            assert_eq!(file.read_to_end().await.unwrap(), b"hello World");

            let mut buf = [0u8; 8];
            assert_eq!(file.read_at(&mut buf, 6).await.unwrap(), 5);
            assert_eq!(&buf[..5], b"World");
            assert_eq!(file.read_at(&mut buf, 11).await.unwrap(), 0, "at the end");
            assert_eq!(file.read_at(&mut buf, 1 << 40).await.unwrap(), 0, "past it");
            assert_eq!(file.read_at(&mut buf, u64::MAX).await.unwrap(), 0);

            // Past the end: the gap reads as zeros.
            file.write_at(b"!", 13).await.unwrap();
            assert_eq!(file.read_to_end().await.unwrap(), b"hello World\0\0!");
            file.sync_all().await.unwrap();
            disk::sync_dir("").await.unwrap();

            // Another handle sees the same file.
            let again = disk::open("log").await.unwrap();
            assert_eq!(again.len().await.unwrap(), 14);
        })
        .await;
    });
    let real = root.0.join("db").join("log");
    assert_eq!(std::fs::read(real).unwrap(), b"hello World\0\0!");
}

#[test]
fn appends_through_one_handle_never_overlap() {
    let root = TempRoot::new("appends");
    bounded(async {
        let cluster = cluster(&["db"], &root);
        run_as(cluster.id("db").unwrap(), async {
            let file = disk::create("log").await.unwrap();
            let record = [7u8; 1000];
            let appends = (0..20).map(|_| file.append(&record));
            let mut offsets = futures::future::try_join_all(appends).await.unwrap();
            offsets.sort_unstable();
            let expected: Vec<u64> = (0..20).map(|i| i * 1000).collect();
            assert_eq!(offsets, expected);
            assert_eq!(file.len().await.unwrap(), 20_000);
        })
        .await;
    });
}

#[test]
fn truncate_cuts_and_grows_with_zeros() {
    let root = TempRoot::new("truncate");
    bounded(async {
        let cluster = cluster(&["db"], &root);
        run_as(cluster.id("db").unwrap(), async {
            let file = disk::create("f").await.unwrap();
            file.append(b"abcdef").await.unwrap();
            file.truncate(3).await.unwrap();
            assert_eq!(file.read_to_end().await.unwrap(), b"abc");
            file.truncate(5).await.unwrap();
            assert_eq!(file.read_to_end().await.unwrap(), b"abc\0\0");
            file.sync_all().await.unwrap();
        })
        .await;
    });
}

#[test]
fn rename_follows_handles_and_makes_directories_and_sync_dir_syncs() {
    let root = TempRoot::new("rename");
    bounded(async {
        let cluster = cluster(&["db"], &root);
        run_as(cluster.id("db").unwrap(), async {
            // Directories are implicit, as on the simulated disk.
            let file = disk::create("wal/0001.tmp").await.unwrap();
            file.append(b"entry").await.unwrap();
            file.sync_all().await.unwrap();
            disk::rename("wal/0001.tmp", "wal/0001").await.unwrap();
            disk::sync_dir("wal").await.unwrap();
            assert_eq!(
                kind(disk::open("wal/0001.tmp").await),
                DiskErrorKind::NotFound
            );
            assert_eq!(
                disk::open("wal/0001")
                    .await
                    .unwrap()
                    .read_to_end()
                    .await
                    .unwrap(),
                b"entry"
            );
            // The handle follows its file.
            file.append(b"+").await.unwrap();
            assert_eq!(
                disk::open("wal/0001")
                    .await
                    .unwrap()
                    .read_to_end()
                    .await
                    .unwrap(),
                b"entry+"
            );

            // Across directories, to one that does not exist yet.
            disk::rename("wal/0001", "archive/2024/0001").await.unwrap();
            disk::sync_dir("wal").await.unwrap();
            disk::sync_dir("archive/2024").await.unwrap();
            assert_eq!(disk::list("").await.unwrap(), ["archive/2024/0001"]);

            // Onto an existing file: replaced.
            disk::create("other")
                .await
                .unwrap()
                .append(b"old")
                .await
                .unwrap();
            disk::rename("archive/2024/0001", "other").await.unwrap();
            let other = disk::open("other").await.unwrap();
            assert_eq!(other.read_to_end().await.unwrap(), b"entry+");
            // Onto itself: nothing changes.
            disk::rename("other", "other").await.unwrap();
            assert_eq!(other.len().await.unwrap(), 6);

            // A missing directory holds nothing to sync.
            disk::sync_dir("never/made").await.unwrap();
        })
        .await;
    });
}

#[test]
fn replace_durably_swaps_whole_contents_and_leaves_no_temporary() {
    let root = TempRoot::new("replace");
    bounded(async {
        let cluster = cluster(&["db"], &root);
        run_as(cluster.id("db").unwrap(), async {
            disk::replace_durably("state/model", b"version 1")
                .await
                .unwrap();
            disk::replace_durably("state/model", b"v2").await.unwrap();
            let model = disk::open("state/model").await.unwrap();
            assert_eq!(model.read_to_end().await.unwrap(), b"v2");
            // A leftover of a failed attempt is replaced too.
            disk::create("state/model.tmp").await.unwrap();
            disk::replace_durably("state/model", b"v3").await.unwrap();
            assert_eq!(disk::list("").await.unwrap(), ["state/model"]);
            assert_eq!(
                disk::open("state/model")
                    .await
                    .unwrap()
                    .read_to_end()
                    .await
                    .unwrap(),
                b"v3"
            );
        })
        .await;
    });
}

#[test]
fn list_gives_every_file_below_sorted() {
    let root = TempRoot::new("list");
    bounded(async {
        let cluster = cluster(&["db"], &root);
        run_as(cluster.id("db").unwrap(), async {
            // A fresh node: its data folder does not exist yet, and holds nothing.
            assert!(disk::list("").await.unwrap().is_empty());
            for path in ["b", "a/2", "a/1", "a/sub/x", "c/deep/er/file"] {
                disk::create(path).await.unwrap();
            }
            assert_eq!(
                disk::list("").await.unwrap(),
                ["a/1", "a/2", "a/sub/x", "b", "c/deep/er/file"]
            );
            assert_eq!(disk::list("a").await.unwrap(), ["a/1", "a/2", "a/sub/x"]);
            assert!(disk::list("missing").await.unwrap().is_empty());
            assert!(disk::list("b/below-a-file").await.unwrap().is_empty());
            assert_eq!(kind(disk::list("b").await), DiskErrorKind::NotADirectory);
            assert_eq!(
                kind(disk::sync_dir("b").await),
                DiskErrorKind::NotADirectory
            );
            disk::remove("a/sub/x").await.unwrap();
            assert_eq!(disk::list("a").await.unwrap(), ["a/1", "a/2"]);
        })
        .await;
    });
}

#[test]
fn errors_are_the_simulated_disks() {
    let root = TempRoot::new("errors");
    bounded(async {
        let cluster = cluster(&["db"], &root);
        run_as(cluster.id("db").unwrap(), async {
            assert_eq!(kind(disk::open("missing").await), DiskErrorKind::NotFound);
            assert_eq!(kind(disk::remove("missing").await), DiskErrorKind::NotFound);
            assert_eq!(
                kind(disk::rename("missing", "x").await),
                DiskErrorKind::NotFound
            );
            disk::create("file").await.unwrap();
            assert_eq!(
                kind(disk::create("file").await),
                DiskErrorKind::AlreadyExists
            );
            // A directory where a file is expected.
            disk::create("dir/inside").await.unwrap();
            assert_eq!(kind(disk::create("dir").await), DiskErrorKind::IsADirectory);
            assert_eq!(kind(disk::open("dir").await), DiskErrorKind::IsADirectory);
            assert_eq!(kind(disk::remove("dir").await), DiskErrorKind::IsADirectory);
            assert_eq!(
                kind(disk::rename("dir", "elsewhere").await),
                DiskErrorKind::IsADirectory
            );
            assert_eq!(
                kind(disk::rename("file", "dir").await),
                DiskErrorKind::IsADirectory
            );
            // A file where a directory is expected.
            match disk::create("file/below").await {
                Err(DiskError::NotADirectory { path, file }) => {
                    assert_eq!((path.as_str(), file.as_str()), ("file/below", "file"));
                }
                other => panic!("expected NotADirectory, got {other:?}"),
            }
            assert_eq!(
                kind(disk::rename("dir/inside", "file/below").await),
                DiskErrorKind::NotADirectory
            );
            assert_eq!(
                kind(disk::open("file/below").await),
                DiskErrorKind::NotFound
            );

            // Paths that could leave the data folder, or name nothing, are refused before any
            // system call.
            for bad in [
                "/etc/passwd",
                "../escape",
                "a/../../escape",
                "./x",
                "",
                "a//b",
                "a/",
                "nul\0byte",
            ] {
                let error = disk::create(bad).await.expect_err(bad);
                assert_eq!(error.kind(), DiskErrorKind::InvalidPath, "{bad:?}");
                assert_eq!(kind(disk::open(bad).await), DiskErrorKind::InvalidPath);
                assert_eq!(
                    kind(disk::rename("file", bad).await),
                    DiskErrorKind::InvalidPath
                );
            }
            let long_name = "n".repeat(disk::NAME_BYTES_MAX + 1);
            assert_eq!(
                kind(disk::create(&long_name).await),
                DiskErrorKind::InvalidPath
            );
            let long_path = "d/".repeat(disk::PATH_BYTES_MAX / 2 + 1);
            assert_eq!(
                kind(disk::create(&long_path).await),
                DiskErrorKind::InvalidPath
            );
            assert_eq!(kind(disk::list("/").await), DiskErrorKind::InvalidPath);
            assert_eq!(kind(disk::sync_dir("..").await), DiskErrorKind::InvalidPath);

            // An offset past any possible length.
            let file = disk::open("file").await.unwrap();
            assert_eq!(
                kind(file.write_at(b"xy", u64::MAX).await),
                DiskErrorKind::InvalidInput
            );

            // Errors convert into io::Errors of the kind a real OS gives.
            let io: std::io::Error = disk::open("missing").await.unwrap_err().into();
            assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        })
        .await;
    });
    // Nothing escaped the data folder.
    let entries: Vec<_> = std::fs::read_dir(&root.0)
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["db"]);
}

#[test]
fn outside_node_code_and_on_another_node_operations_fail_as_simulated() {
    let root = TempRoot::new("not-on-node");
    bounded(async {
        let cluster = cluster(&["a", "b"], &root);
        let (a, b) = (cluster.id("a").unwrap(), cluster.id("b").unwrap());
        // Not in any node's code.
        for result in [
            disk::create("x").await.map(drop),
            disk::open("x").await.map(drop),
            disk::rename("x", "y").await,
            disk::remove("x").await,
            disk::replace_durably("x", b"").await,
            disk::list("").await.map(drop),
            disk::sync_dir("").await,
        ] {
            let error = result.unwrap_err();
            assert_eq!(error.kind(), DiskErrorKind::NotOnNode);
            assert!(error.to_string().contains("outside node code"), "{error}");
            let io: std::io::Error = error.into();
            assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
        }
        // A handle of node a, used outside node code and on node b.
        let file = run_as(a, disk::create("a-file")).await.unwrap();
        let error = file.append(b"x").await.unwrap_err();
        assert_eq!(error.kind(), DiskErrorKind::WrongNode);
        let error = run_as(b, file.read_to_end()).await.unwrap_err();
        match error {
            DiskError::WrongNode {
                handle_node,
                used_on,
                ..
            } => {
                assert_eq!(handle_node, a);
                assert_eq!(used_on, "node b");
            }
            other => panic!("expected WrongNode, got {other:?}"),
        }
        assert_eq!(run_as(a, file.len()).await.unwrap(), 0);
        // A node the installed cluster does not list: a clear error, not a panic.
        let unknown = run_as(NodeId(99), disk::create("x")).await.unwrap_err();
        assert_eq!(unknown.kind(), DiskErrorKind::InvalidInput);
        assert!(
            unknown.to_string().contains("Cluster::install"),
            "{unknown}"
        );
    });
}

#[test]
fn a_data_folder_that_is_a_file_is_a_clear_error() {
    let root = TempRoot::new("root-is-file");
    std::fs::create_dir_all(&root.0).unwrap();
    std::fs::write(root.0.join("db"), b"not a folder").unwrap();
    bounded(async {
        let cluster = cluster(&["db"], &root);
        run_as(cluster.id("db").unwrap(), async {
            let error = disk::create("x").await.unwrap_err();
            assert_eq!(error.kind(), DiskErrorKind::Os);
            assert!(error.to_string().contains("data folder"), "{error}");
            assert_eq!(kind(disk::open("x").await), DiskErrorKind::NotFound);
        })
        .await;
    });
}

/// Everything a node learnt from its disk at one boot.
#[derive(Debug, PartialEq)]
enum Boot {
    Fresh,
    Found(Vec<u8>, Vec<String>),
}

#[test]
fn what_was_written_survives_a_kill_and_a_restart() {
    let root = TempRoot::new("restart");
    bounded(async {
        let cluster = cluster(&["db"], &root);
        let (boots, mut booted) = tokio::sync::mpsc::unbounded_channel();
        let node = cluster.start(cluster.id("db").unwrap(), move || {
            let boots = boots.clone();
            async move {
                if let Ok(log) = disk::open("log").await {
                    let contents = log.read_to_end().await.unwrap();
                    let files = disk::list("").await.unwrap();
                    boots.send(Boot::Found(contents, files)).unwrap();
                    return;
                }
                let log = disk::create("log").await.unwrap();
                log.append(b"synced").await.unwrap();
                log.sync_all().await.unwrap();
                disk::sync_dir("").await.unwrap();
                // Not synced: a process crash keeps it all the same (the kernel has it).
                log.append(b" + unsynced").await.unwrap();
                disk::create("dir/new").await.unwrap();
                boots.send(Boot::Fresh).unwrap();
                // Keep the node's process alive until it is killed.
                std::future::pending::<()>().await;
            }
        });
        assert_eq!(booted.recv().await, Some(Boot::Fresh));
        node.kill().await;
        assert!(!node.is_running());
        node.restart().await;
        assert_eq!(
            booted.recv().await,
            Some(Boot::Found(
                b"synced + unsynced".to_vec(),
                vec!["dir/new".into(), "log".into()]
            ))
        );
        node.restart().await;
        assert!(matches!(booted.recv().await, Some(Boot::Found(..))));
        assert_eq!(node.incarnation(), 2);
    });
}

#[test]
fn each_node_has_its_own_data_folder() {
    let root = TempRoot::new("per-node");
    bounded(async {
        let cluster = cluster(&["a", "b"], &root);
        for name in ["a", "b"] {
            run_as(cluster.id(name).unwrap(), async move {
                let file = disk::create("id").await.unwrap();
                file.append(name.as_bytes()).await.unwrap();
                file.sync_all().await.unwrap();
            })
            .await;
        }
        for name in ["a", "b"] {
            let contents = run_as(cluster.id(name).unwrap(), async {
                disk::open("id").await.unwrap().read_to_end().await.unwrap()
            })
            .await;
            assert_eq!(contents, name.as_bytes());
        }
    });
    for name in ["a", "b"] {
        let real: &Path = &root.0.join(name).join("id");
        assert_eq!(std::fs::read(real).unwrap(), name.as_bytes());
    }
}
