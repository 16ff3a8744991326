//! The part of `tokio::fs` the service uses, on sim-core's disk.
//!
//! A stand-in until sim-core has a tokio-shaped `fs` of its own; the service only sees
//! tokio's shapes ([`File::create`], `AsyncWriteExt::write_all`, [`File::sync_all`],
//! [`read`], [`rename`]).

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

/// The path as sim-core's disk names it.
fn disk_path(path: &Path) -> io::Result<&str> {
    path.to_str()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a path that is not UTF-8"))
}

/// Reads a whole file (`tokio::fs::read`).
pub async fn read(path: impl AsRef<Path>) -> io::Result<Vec<u8>> {
    let file = sim_core::disk::open(disk_path(path.as_ref())?).await?;
    Ok(file.read_to_end().await?)
}

/// Renames a file, replacing `to` (`tokio::fs::rename`).
pub async fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> io::Result<()> {
    let (from, to) = (disk_path(from.as_ref())?, disk_path(to.as_ref())?);
    Ok(sim_core::disk::rename(from, to).await?)
}

type Pending = Pin<Box<dyn Future<Output = io::Result<usize>>>>;

/// An open file, written at its end (`tokio::fs::File` created with `File::create`).
pub struct File {
    file: Rc<sim_core::disk::File>,
    /// The write in progress: `poll_write` returns once the disk took it.
    writing: Option<Pending>,
}

impl File {
    /// Creates `path`, empty, replacing a file there (`tokio::fs::File::create`).
    pub async fn create(path: impl AsRef<Path>) -> io::Result<File> {
        let path = disk_path(path.as_ref())?;
        match sim_core::disk::remove(path).await {
            Ok(()) | Err(sim_core::disk::DiskError::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
        let file = sim_core::disk::create(path).await?;
        Ok(File {
            file: Rc::new(file),
            writing: None,
        })
    }

    /// fsync: the file's contents become durable (its name needs the directory's fsync).
    pub async fn sync_all(&self) -> io::Result<()> {
        Ok(self.file.sync_all().await?)
    }
}

impl tokio::io::AsyncWrite for File {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.writing.is_none() {
            let (file, bytes) = (self.file.clone(), buf.to_vec());
            self.writing = Some(Box::pin(async move {
                file.append(&bytes).await?;
                Ok(bytes.len())
            }));
        }
        let written = ready!(self.writing.as_mut().expect("set above").as_mut().poll(cx));
        self.writing = None;
        Poll::Ready(written)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
