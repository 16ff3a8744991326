//! The node-facing API of `disk` and `fs`, compiled by both builds: node code written against
//! the simulated modules compiles unchanged against the real ones. Nothing here runs; the test
//! is that it compiles (types, traits and signatures alike).
#![allow(dead_code)] // Never called: compiling is the check.

use sim_core::disk::{self, DiskError, DiskErrorKind, DiskOp};
use sim_core::fs::{self, DirEntry, FileType, FsError, Metadata, OpenOptions, ReadDir};
use std::io;
use std::path::PathBuf;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

fn copy_eq<T: Copy + PartialEq + Eq + std::fmt::Debug>() {}
fn clone_debug<T: Clone + std::fmt::Debug>() {}
fn send_sync<T: Send + Sync>() {}

/// The traits node code may lean on, and the constants it may name.
fn traits_and_constants() {
    copy_eq::<Metadata>();
    copy_eq::<FileType>();
    clone_debug::<DirEntry>();
    clone_debug::<OpenOptions>();
    clone_debug::<FsError>();
    clone_debug::<DiskError>();
    copy_eq::<DiskErrorKind>();
    copy_eq::<DiskOp>();
    send_sync::<disk::File>();
    let _: usize = disk::NAME_BYTES_MAX + disk::PATH_BYTES_MAX + fs::BUF_BYTES_MAX;
    let _: io::ErrorKind = fs::disk_error_kind(DiskErrorKind::NotFound);
    let _: OpenOptions = OpenOptions::default();
}

async fn disk_calls() -> Result<(), DiskError> {
    let _: disk::File = disk::create("a").await?;
    let file: disk::File = disk::open("a").await?;
    let _: &str = file.path();
    let _: sim_core::NodeId = file.node();
    let mut buf = [0u8; 4];
    let _: usize = file.read_at(&mut buf, 0).await?;
    let _: Vec<u8> = file.read_to_end().await?;
    let _: () = file.write_at(b"x", 0).await?;
    let _: u64 = file.append(b"x").await?;
    let _: u64 = file.len().await?;
    let _: () = file.truncate(0).await?;
    let _: () = file.sync_all().await?;
    let _: () = disk::rename("a", "b").await?;
    let _: () = disk::remove("b").await?;
    let _: () = disk::replace_durably("c", b"x").await?;
    let _: Vec<String> = disk::list("").await?;
    let _: () = disk::sync_dir("").await?;
    let error = DiskError::NotFound { path: "x".into() };
    let _: DiskErrorKind = error.kind();
    let _: bool = error.is_fault();
    let _: &str = error.kind().name();
    let _: &str = DiskOp::Read.name();
    let _: io::Error = error.into();
    Ok(())
}

async fn fs_calls() -> io::Result<()> {
    fs::create_dir("/d").await?;
    fs::create_dir_all(String::from("/d/e")).await?;
    fs::write("/d/x", "text").await?;
    fs::write(PathBuf::from("/d/y"), vec![1u8]).await?;
    let _: Vec<u8> = fs::read("/d/x").await?;
    let _: String = fs::read_to_string("/d/x").await?;
    let _: u64 = fs::copy("/d/x", "/d/z").await?;
    fs::rename("/d/z", "/d/w").await?;
    fs::remove_file("/d/w").await?;
    let metadata: Metadata = fs::metadata("/d").await?;
    let _: (u64, bool, bool, bool, FileType) = (
        metadata.len(),
        metadata.is_file(),
        metadata.is_dir(),
        metadata.is_symlink(),
        metadata.file_type(),
    );
    let _: bool = fs::try_exists("/d").await?;
    let mut entries: ReadDir = fs::read_dir("/d").await?;
    while let Some(entry) = entries.next_entry().await? {
        let _: std::ffi::OsString = entry.file_name();
        let _: PathBuf = entry.path();
        let file_type: FileType = entry.file_type().await?;
        let _ = (
            file_type.is_file(),
            file_type.is_dir(),
            file_type.is_symlink(),
        );
        let _: Metadata = entry.metadata().await?;
    }
    let _ = std::future::poll_fn(|cx| entries.poll_next_entry(cx)).await;
    fs::remove_dir("/d/e").await?;
    fs::remove_dir_all("/d").await?;

    let mut written: fs::File = fs::File::create("/f").await?;
    written.write_all(b"x").await?;
    written.flush().await?;
    written.seek(io::SeekFrom::Start(0)).await?;
    let mut text = String::new();
    fs::File::open("/f")
        .await?
        .read_to_string(&mut text)
        .await?;
    let _: fs::File = fs::File::create_new("/g").await?;
    let _: OpenOptions = fs::File::options();
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .append(false)
        .truncate(false)
        .create(true)
        .create_new(false)
        .open("/h")
        .await?;
    opened.sync_all().await?;
    opened.sync_data().await?;
    opened.set_len(3).await?;
    let _: Metadata = opened.metadata().await?;

    let error = FsError::InvalidPath {
        path: "x".into(),
        reason: "r",
    };
    let _: io::ErrorKind = error.io_kind();
    match error {
        FsError::InvalidPath { .. }
        | FsError::DirectoryNotEmpty { .. }
        | FsError::DirectoryRename { .. }
        | FsError::NotOpenedFor { .. }
        | FsError::InvalidOptions { .. }
        | FsError::NegativeSeek { .. }
        | FsError::Busy { .. } => {}
    }
    let _: io::Error = error.into();
    Ok(())
}
