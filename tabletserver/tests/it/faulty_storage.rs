//! A `LocalDir` with injected faults, like a full disk or a passing read error, shared by the
//! tests that need storage to fail on cue.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use tabula_common::{AppendFile, LocalDir, ReadFile, StorageRoot};

/// `LocalDir` whose SSTable creation fails while `sstables_broken` is set, and whose reads of
/// `flaky_path` fail `read_failures_left` more times.
#[derive(Debug)]
pub(crate) struct FaultyStorage {
    inner: LocalDir,
    pub(crate) sstables_broken: AtomicBool,
    flaky_path: String,
    pub(crate) read_failures_left: AtomicU64,
}

impl FaultyStorage {
    /// No faults yet; reads of `flaky_path` fail once `read_failures_left` is raised.
    pub(crate) fn new(inner: LocalDir, flaky_path: String) -> FaultyStorage {
        FaultyStorage {
            inner,
            sstables_broken: AtomicBool::new(false),
            flaky_path,
            read_failures_left: AtomicU64::new(0),
        }
    }

    fn check_read(&self, path: &str) -> io::Result<()> {
        let fail = path == self.flaky_path
            && self
                .read_failures_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if fail {
            return Err(io::Error::other(format!(
                "reading {path} failed (injected)"
            )));
        }
        Ok(())
    }
}

impl StorageRoot for FaultyStorage {
    fn write_atomic(&self, path: &str, data: &[u8]) -> io::Result<()> {
        self.inner.write_atomic(path, data)
    }
    fn create_append(&self, path: &str) -> io::Result<Box<dyn AppendFile>> {
        if path.starts_with("sst/") && self.sstables_broken.load(Ordering::SeqCst) {
            return Err(io::Error::other("disk full (injected)"));
        }
        self.inner.create_append(path)
    }
    fn open_read(&self, path: &str) -> io::Result<Arc<dyn ReadFile>> {
        self.check_read(path)?;
        self.inner.open_read(path)
    }
    fn read_all(&self, path: &str) -> io::Result<Bytes> {
        self.check_read(path)?;
        self.inner.read_all(path)
    }
    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn delete(&self, path: &str) -> io::Result<()> {
        self.inner.delete(path)
    }
    fn exists(&self, path: &str) -> io::Result<bool> {
        self.inner.exists(path)
    }
    fn size(&self, path: &str) -> io::Result<u64> {
        self.inner.size(path)
    }
}
