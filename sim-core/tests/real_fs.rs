//! The real `fs` (a build without `--cfg madsim`): tokio's files and directories, with each
//! node's paths under its data folder, as in the simulated build.
//!
//! Every test runs its nodes on one thread, in a data folder of its own under the system's
//! temporary folder (removed at the end), within a time bound.
#![cfg(not(madsim))]

use sim_core::disk::{DiskError, DiskErrorKind};
use sim_core::fs::{self, FsError};
use sim_core::node::{block_on, run_as, Cluster};
use std::future::Future;
use std::io::{ErrorKind, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// A data root of its own for one test, removed when dropped.
struct TempRoot(PathBuf);

impl TempRoot {
    fn new(test: &str) -> TempRoot {
        let path =
            std::env::temp_dir().join(format!("sim-core-real-fs-{}-{test}", std::process::id()));
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

/// The kind of an error and the kind of the disk error inside it, if any.
fn kinds(error: std::io::Error) -> (ErrorKind, Option<DiskErrorKind>) {
    let inner = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<DiskError>())
        .map(DiskError::kind);
    (error.kind(), inner)
}

fn fs_error(error: &std::io::Error) -> Option<&FsError> {
    error.get_ref().and_then(|inner| inner.downcast_ref())
}

#[test]
fn files_round_trip_under_the_data_folder() {
    let root = TempRoot::new("round-trip");
    bounded(async {
        let cluster = cluster(&["db"], &root);
        run_as(cluster.id("db").unwrap(), async {
            fs::create_dir_all("/data").await.unwrap();
            let mut log = fs::File::create("/data/log").await.unwrap();
            log.write_all(b"acknowledged").await.unwrap();
            log.sync_all().await.unwrap();
            fs::File::open("/data")
                .await
                .unwrap()
                .sync_all()
                .await
                .unwrap();
            drop(log);

            // `/data/log` and `data/log` are the same file.
            assert_eq!(fs::read("data/log").await.unwrap(), b"acknowledged");
            let mut text = String::new();
            fs::File::open("/data/log")
                .await
                .unwrap()
                .read_to_string(&mut text)
                .await
                .unwrap();
            assert_eq!(text, "acknowledged");

            fs::write("/data/note", "hello").await.unwrap();
            assert_eq!(fs::read_to_string("/./data/note").await.unwrap(), "hello");
            assert_eq!(fs::copy("/data/note", "/data/copy").await.unwrap(), 5);
            fs::rename("/data/copy", "/data/moved").await.unwrap();
            assert!(!fs::try_exists("/data/copy").await.unwrap());
            assert!(fs::try_exists("/data/moved").await.unwrap());
            assert!(!fs::try_exists("/data/note/below").await.unwrap());
            fs::remove_file("/data/moved").await.unwrap();

            let metadata = fs::metadata("/data/log").await.unwrap();
            assert!(metadata.is_file() && !metadata.is_dir());
            assert_eq!(metadata.len(), 12);
            assert!(fs::metadata("/").await.unwrap().is_dir());

            // Invalid UTF-8 fails as tokio's does.
            fs::write("/bin", [0xff, 0xfe]).await.unwrap();
            let error = fs::read_to_string("/bin").await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidData);
        })
        .await;
    });
    let real = root.0.join("db").join("data").join("log");
    assert_eq!(std::fs::read(real).unwrap(), b"acknowledged");
}

#[test]
fn a_file_keeps_a_cursor_and_appends() {
    let root = TempRoot::new("cursor");
    bounded(async {
        let cluster = cluster(&["db"], &root);
        run_as(cluster.id("db").unwrap(), async {
            let mut file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open("f")
                .await
                .unwrap();
            file.write_all(b"0123456789").await.unwrap();
            file.seek(SeekFrom::Start(2)).await.unwrap();
            let mut two = [0u8; 2];
            file.read_exact(&mut two).await.unwrap();
            assert_eq!(&two, b"23");
            assert_eq!(file.seek(SeekFrom::End(-1)).await.unwrap(), 9);
            file.set_len(4).await.unwrap();
            assert_eq!(file.metadata().await.unwrap().len(), 4);
            file.sync_data().await.unwrap();
            drop(file);

            let mut appender = fs::OpenOptions::new().append(true).open("f").await.unwrap();
            appender.write_all(b"+tail").await.unwrap();
            appender.flush().await.unwrap();
            assert_eq!(fs::read("f").await.unwrap(), b"0123+tail");
            assert_eq!(
                kinds(fs::File::create_new("f").await.unwrap_err()).0,
                ErrorKind::AlreadyExists
            );
        })
        .await;
    });
}

#[test]
fn directories_of_a_new_file_are_made_as_on_the_simulated_disk() {
    let root = TempRoot::new("implicit");
    bounded(async {
        let cluster = cluster(&["db"], &root);
        run_as(cluster.id("db").unwrap(), async {
            fs::write("/a/b/c", "deep").await.unwrap();
            fs::File::create("/x/y").await.unwrap();
            fs::copy("/a/b/c", "/copies/c").await.unwrap();
            fs::rename("/x/y", "/moved/here/y").await.unwrap();
            assert!(fs::metadata("/a/b").await.unwrap().is_dir());
            assert_eq!(fs::read("/copies/c").await.unwrap(), b"deep");
            // A file where a directory would be made.
            let error = fs::write("/a/b/c/d", "x").await.unwrap_err();
            assert_eq!(
                kinds(error),
                (ErrorKind::NotADirectory, Some(DiskErrorKind::NotADirectory))
            );
            // Opening without create makes nothing.
            let error = fs::File::open("/none/such").await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::NotFound);
            assert!(!fs::try_exists("/none").await.unwrap());
        })
        .await;
    });
}

#[test]
fn read_dir_lists_entries_by_name_with_node_paths() {
    let root = TempRoot::new("read-dir");
    bounded(async {
        let cluster = cluster(&["db"], &root);
        run_as(cluster.id("db").unwrap(), async {
            // A fresh node's root exists, empty.
            let mut empty = fs::read_dir("/").await.unwrap();
            assert!(empty.next_entry().await.unwrap().is_none());

            for name in ["c", "a", "b"] {
                fs::write(Path::new("/dir").join(name), name).await.unwrap();
            }
            fs::create_dir("/dir/sub").await.unwrap();
            let mut entries = fs::read_dir("/dir").await.unwrap();
            let mut seen = Vec::new();
            while let Some(entry) = entries.next_entry().await.unwrap() {
                let is_dir = entry.file_type().await.unwrap().is_dir();
                assert_eq!(entry.metadata().await.unwrap().is_dir(), is_dir);
                seen.push((entry.file_name(), entry.path(), is_dir));
            }
            let expected: Vec<_> = [("a", false), ("b", false), ("c", false), ("sub", true)]
                .into_iter()
                .map(|(name, is_dir)| (name.into(), Path::new("/dir").join(name), is_dir))
                .collect();
            assert_eq!(seen, expected);

            let error = fs::read_dir("/dir/a").await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::NotADirectory);
            let error = fs::read_dir("/missing").await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::NotFound);
        })
        .await;
    });
}

#[test]
fn directories_are_made_and_removed_as_by_tokio() {
    let root = TempRoot::new("dirs");
    bounded(async {
        let cluster = cluster(&["db"], &root);
        run_as(cluster.id("db").unwrap(), async {
            fs::create_dir("/d").await.unwrap();
            let again = fs::create_dir("/d").await.unwrap_err();
            assert_eq!(again.kind(), ErrorKind::AlreadyExists);
            assert_eq!(
                fs::create_dir("/").await.unwrap_err().kind(),
                ErrorKind::AlreadyExists
            );
            let orphan = fs::create_dir("/none/sub").await.unwrap_err();
            assert_eq!(orphan.kind(), ErrorKind::NotFound);
            fs::create_dir_all("/d/e/f").await.unwrap();
            fs::create_dir_all("/d/e/f").await.unwrap();
            fs::write("/d/file", "x").await.unwrap();
            assert_eq!(
                fs::create_dir_all("/d/file").await.unwrap_err().kind(),
                ErrorKind::AlreadyExists
            );
            assert_eq!(
                fs::create_dir_all("/d/file/below")
                    .await
                    .unwrap_err()
                    .kind(),
                ErrorKind::NotADirectory
            );

            let busy = fs::remove_dir("/d").await.unwrap_err();
            assert_eq!(busy.kind(), ErrorKind::DirectoryNotEmpty);
            fs::remove_dir("/d/e/f").await.unwrap();
            // A real build renames directories (the simulated one refuses).
            fs::rename("/d/e", "/d/renamed").await.unwrap();
            fs::remove_dir_all("/d").await.unwrap();
            assert!(!fs::try_exists("/d").await.unwrap());
            assert_eq!(
                fs::remove_dir("/gone").await.unwrap_err().kind(),
                ErrorKind::NotFound
            );

            // The root stays.
            for error in [
                fs::remove_dir("/").await.unwrap_err(),
                fs::remove_dir_all("/").await.unwrap_err(),
                fs::rename("/", "/elsewhere").await.unwrap_err(),
                fs::rename("/f", "/").await.unwrap_err(),
            ] {
                assert_eq!(error.kind(), ErrorKind::InvalidInput);
                assert!(
                    matches!(fs_error(&error), Some(FsError::InvalidPath { .. })),
                    "{error}"
                );
            }
            assert!(fs::metadata("/").await.unwrap().is_dir());
        })
        .await;
    });
}

#[test]
fn bad_paths_options_and_callers_fail_as_simulated() {
    let root = TempRoot::new("errors");
    bounded(async {
        let cluster = cluster(&["db"], &root);
        // Outside node code: the simulated build's error.
        let error = fs::write("/x", "x").await.unwrap_err();
        assert_eq!(
            kinds(error),
            (ErrorKind::InvalidInput, Some(DiskErrorKind::NotOnNode))
        );
        let error = fs::read_dir("/").await.unwrap_err();
        assert_eq!(kinds(error).1, Some(DiskErrorKind::NotOnNode));

        run_as(cluster.id("db").unwrap(), async {
            for escaping in ["../x", "/a/../../x", "a/.."] {
                let error = fs::write(escaping, "x").await.unwrap_err();
                assert_eq!(error.kind(), ErrorKind::InvalidInput, "{escaping}");
                assert!(matches!(
                    fs_error(&error),
                    Some(FsError::InvalidPath { .. })
                ));
                let error = fs::read(escaping).await.unwrap_err();
                assert_eq!(error.kind(), ErrorKind::InvalidInput, "{escaping}");
            }
            let empty = fs::read("").await.unwrap_err();
            assert_eq!(empty.kind(), ErrorKind::NotFound);

            let error = fs::OpenOptions::new().open("/x").await.unwrap_err();
            assert!(matches!(
                fs_error(&error),
                Some(FsError::InvalidOptions { .. })
            ));
            let error = fs::OpenOptions::new()
                .append(true)
                .truncate(true)
                .open("/x")
                .await
                .unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidInput);

            let missing = fs::File::open("/missing").await.unwrap_err();
            assert_eq!(missing.kind(), ErrorKind::NotFound);
            let error = fs::OpenOptions::new()
                .write(true)
                .open("/")
                .await
                .unwrap_err();
            assert_eq!(error.kind(), ErrorKind::IsADirectory);
            let error = fs::remove_file("/missing").await.unwrap_err();
            assert_eq!(error.kind(), ErrorKind::NotFound);
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
fn nodes_see_their_own_files_across_a_restart() {
    let root = TempRoot::new("nodes");
    bounded(async {
        let cluster = cluster(&["a", "b"], &root);
        let (reports, mut reported) = tokio::sync::mpsc::unbounded_channel();
        let mut handles = Vec::new();
        for name in ["a", "b"] {
            let reports = reports.clone();
            handles.push(cluster.start(cluster.id(name).unwrap(), move || {
                let reports = reports.clone();
                async move {
                    let seen = fs::read_to_string("/who").await.ok();
                    if seen.is_none() {
                        fs::write("/who", name).await.unwrap();
                        let file = fs::File::open("/who").await.unwrap();
                        file.sync_all().await.unwrap();
                        fs::File::open("/").await.unwrap().sync_all().await.unwrap();
                    }
                    reports.send((name, seen)).unwrap();
                    std::future::pending::<()>().await;
                }
            }));
        }
        let mut first = vec![
            reported.recv().await.unwrap(),
            reported.recv().await.unwrap(),
        ];
        first.sort();
        assert_eq!(first, [("a", None), ("b", None)]);
        for handle in &handles {
            handle.kill().await;
            handle.restart().await;
        }
        let mut second = vec![
            reported.recv().await.unwrap(),
            reported.recv().await.unwrap(),
        ];
        second.sort();
        assert_eq!(
            second,
            [("a", Some("a".to_string())), ("b", Some("b".to_string()))]
        );
    });
    for name in ["a", "b"] {
        let real = root.0.join(name).join("who");
        assert_eq!(std::fs::read_to_string(real).unwrap(), name);
    }
}
