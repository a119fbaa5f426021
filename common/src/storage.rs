//! The storage root: the directory tree shared by every server of a cluster, holding SSTables,
//! tablet manifests and commit logs (DESIGN.md section 4).
//!
//! `StorageRoot` is a blocking interface, called from the engine's own threads; `AsyncStorage`
//! wraps it for async code and runs every operation on the blocking pool, never on the executor.
//! Paths are relative, `/`-separated, and may not climb out of the root.
//!
//! Durability rules every implementation keeps: `write_atomic` is temp file + fsync + rename +
//! directory fsync; a newly created append file's directory is fsynced before `create_append`
//! returns; `AppendFile::sync` is fdatasync and an error from it is final.
//!
//! Zeroed append files (`create_append_zeroed`, the commit log's segments): an fdatasync after
//! an append that grew the file must also write the new size and the newly allocated blocks,
//! which on ext4 took each sync from one I/O to three or four and doubled its time. So the file
//! is extended with written zeros a step ahead of the appends, and the appends overwrite them:
//! a sync then writes only data, except the first sync after each step. The file ends in
//! zeros past what was appended until `AppendFile::finish` cuts them off.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

/// A file being appended to (a commit-log segment).
pub trait AppendFile: Send {
    /// Appends `data` (buffered by the OS until `sync`).
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// Makes everything appended so far durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// Bytes appended so far, including what the file held when opened.
    fn len(&self) -> u64;
    /// Whether nothing has been appended.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Syncs, and cuts off the zeros a zeroed file holds past what was appended (size
    /// included), for a file that takes no more appends. A plain file is only synced.
    fn finish(&mut self) -> io::Result<()> {
        self.sync()
    }
}

/// An immutable file opened for random reads (an SSTable).
pub trait ReadFile: Send + Sync {
    /// Reads exactly `len` bytes at `offset`; reading past the end is an `UnexpectedEof` error.
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes>;
    /// The file's size in bytes.
    fn size(&self) -> u64;
}

/// Blocking access to the storage root.
pub trait StorageRoot: Send + Sync + std::fmt::Debug {
    /// Writes `data` to `path` so that a crash leaves either the old file or the whole new one.
    fn write_atomic(&self, path: &str, data: &[u8]) -> io::Result<()>;
    /// Creates `path` (which must not exist) for appending.
    fn create_append(&self, path: &str) -> io::Result<Box<dyn AppendFile>>;
    /// As `create_append`, but the file is kept extended with zeros up to the next multiple
    /// of `step` bytes past what was appended (see the module doc), until `finish`. A root
    /// that cannot do this makes a plain append file.
    fn create_append_zeroed(&self, path: &str, step: u64) -> io::Result<Box<dyn AppendFile>> {
        let _ = step;
        self.create_append(path)
    }
    /// Opens `path` for random reads.
    fn open_read(&self, path: &str) -> io::Result<Arc<dyn ReadFile>>;
    /// Reads the whole file.
    fn read_all(&self, path: &str) -> io::Result<Bytes>;
    /// Reads `len` bytes at `offset`.
    fn read_range(&self, path: &str, offset: u64, len: usize) -> io::Result<Bytes> {
        self.open_read(path)?.read_at(offset, len)
    }
    /// Names (not paths) of the entries directly under `dir`, sorted; empty if `dir` is absent.
    fn list(&self, dir: &str) -> io::Result<Vec<String>>;
    /// Deletes `path`; deleting a missing file is not an error.
    fn delete(&self, path: &str) -> io::Result<()>;
    /// Whether `path` exists.
    fn exists(&self, path: &str) -> io::Result<bool>;
    /// Size of `path` in bytes.
    fn size(&self, path: &str) -> io::Result<u64>;
}

/// A storage root on a local (or network-mounted) directory.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl LocalDir {
    /// Uses `root` (created if missing) as the storage root.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(LocalDir { root })
    }

    /// The directory this root lives in.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn resolve(&self, path: &str) -> io::Result<PathBuf> {
        let rel = Path::new(path);
        let ok = !path.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !ok {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("storage path {path:?} must be relative and stay inside the root"),
            ));
        }
        Ok(self.root.join(rel))
    }

    /// Creates `dir`'s missing parents and fsyncs each directory that gained an entry.
    fn ensure_parent(&self, full: &Path) -> io::Result<()> {
        let Some(parent) = full.parent() else {
            return Ok(());
        };
        if parent.exists() {
            return Ok(());
        }
        self.ensure_parent(parent)?;
        match fs::create_dir(parent) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
            Err(e) => return Err(e),
        }
        if let Some(grand) = parent.parent() {
            sync_dir(grand)?;
        }
        Ok(())
    }

    /// A new append file at `path`, zeroed `step` bytes ahead (0: plain, in append mode).
    fn create_local_append(&self, path: &str, step: u64) -> io::Result<Box<dyn AppendFile>> {
        let full = self.resolve(path)?;
        self.ensure_parent(&full)?;
        let file = OpenOptions::new()
            .append(step == 0)
            .write(true)
            .create_new(true)
            .open(&full)?;
        if let Some(parent) = full.parent() {
            sync_dir(parent)?;
        }
        Ok(Box::new(LocalAppend::new(file, step)))
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What zeroed files are extended with, a piece at a time (no allocation, no page faults).
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

struct LocalAppend {
    file: File,
    len: u64,
    failed: bool,
    /// Zeroed files: the extension step (0 for a plain append file, opened in append mode).
    step: u64,
    /// Zeroed files: bytes of the file, appended data then zeros (`len <= zeroed`).
    zeroed: u64,
}

impl LocalAppend {
    fn new(file: File, step: u64) -> Self {
        LocalAppend {
            file,
            len: 0,
            failed: false,
            step,
            zeroed: 0,
        }
    }

    /// Syncs the data (or, with `all`, the metadata too); an error is final.
    fn sync_file(&mut self, all: bool) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("file failed an earlier sync"));
        }
        let r = if all {
            self.file.sync_all()
        } else {
            self.file.sync_data()
        };
        if r.is_err() {
            // Never retry an fsync: the page cache may have dropped the dirty pages.
            self.failed = true;
        }
        r
    }
}

impl AppendFile for LocalAppend {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(
                "file failed an earlier sync; it takes no more writes",
            ));
        }
        if self.step == 0 {
            self.file.write_all(data)?;
        } else {
            let end = self.len + data.len() as u64;
            if end > self.zeroed {
                let to = end.div_ceil(self.step) * self.step;
                while self.zeroed < to {
                    let n = (to - self.zeroed).min(ZEROS.len() as u64);
                    self.file.write_all_at(&ZEROS[..n as usize], self.zeroed)?;
                    self.zeroed += n;
                }
            }
            self.file.write_all_at(data, self.len)?;
        }
        self.len += data.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.sync_file(false)
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn finish(&mut self) -> io::Result<()> {
        let trim = self.zeroed > self.len;
        if trim && !self.failed {
            self.file.set_len(self.len)?;
            self.zeroed = self.len;
        }
        self.sync_file(trim)
    }
}

struct LocalRead {
    file: File,
    size: u64,
}

impl ReadFile for LocalRead {
    fn read_at(&self, offset: u64, len: usize) -> io::Result<Bytes> {
        let end = offset.checked_add(len as u64);
        if end.is_none_or(|end| end > self.size) {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "read of {len} bytes at {offset} past the end ({})",
                    self.size
                ),
            ));
        }
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(Bytes::from(buf))
    }

    fn size(&self) -> u64 {
        self.size
    }
}

impl StorageRoot for LocalDir {
    fn write_atomic(&self, path: &str, data: &[u8]) -> io::Result<()> {
        let full = self.resolve(path)?;
        self.ensure_parent(&full)?;
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = full.clone().into_os_string();
        tmp_name.push(format!(".tmp.{}.{n}", std::process::id()));
        let tmp = PathBuf::from(tmp_name);
        let result = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            fs::rename(&tmp, &full)?;
            match full.parent() {
                Some(parent) => sync_dir(parent),
                None => Ok(()),
            }
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn create_append(&self, path: &str) -> io::Result<Box<dyn AppendFile>> {
        self.create_local_append(path, 0)
    }

    fn create_append_zeroed(&self, path: &str, step: u64) -> io::Result<Box<dyn AppendFile>> {
        self.create_local_append(path, step)
    }

    fn open_read(&self, path: &str) -> io::Result<Arc<dyn ReadFile>> {
        let file = File::open(self.resolve(path)?)?;
        let size = file.metadata()?.len();
        Ok(Arc::new(LocalRead { file, size }))
    }

    fn read_all(&self, path: &str) -> io::Result<Bytes> {
        Ok(Bytes::from(fs::read(self.resolve(path)?)?))
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let full = if dir.is_empty() {
            self.root.clone()
        } else {
            self.resolve(dir)?
        };
        let entries = match fs::read_dir(&full) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            match name.into_string() {
                Ok(n) if !n.contains(".tmp.") => names.push(n),
                _ => {}
            }
        }
        names.sort();
        Ok(names)
    }

    fn delete(&self, path: &str) -> io::Result<()> {
        match fs::remove_file(self.resolve(path)?) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn exists(&self, path: &str) -> io::Result<bool> {
        self.resolve(path)?.try_exists()
    }

    fn size(&self, path: &str) -> io::Result<u64> {
        Ok(fs::metadata(self.resolve(path)?)?.len())
    }
}

/// Async access to a storage root: every call runs on tokio's blocking pool.
#[derive(Debug, Clone)]
pub struct AsyncStorage {
    inner: Arc<dyn StorageRoot>,
}

impl AsyncStorage {
    /// Wraps a blocking storage root.
    pub fn new(inner: Arc<dyn StorageRoot>) -> Self {
        AsyncStorage { inner }
    }

    /// The blocking root, for code that already runs on its own thread.
    pub fn blocking(&self) -> &Arc<dyn StorageRoot> {
        &self.inner
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn StorageRoot) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(inner.as_ref()))
            .await
            .map_err(|e| io::Error::other(format!("storage task failed: {e}")))?
    }

    /// See `StorageRoot::write_atomic`.
    pub async fn write_atomic(&self, path: String, data: Bytes) -> io::Result<()> {
        self.run(move |s| s.write_atomic(&path, &data)).await
    }

    /// See `StorageRoot::read_all`.
    pub async fn read_all(&self, path: String) -> io::Result<Bytes> {
        self.run(move |s| s.read_all(&path)).await
    }

    /// See `StorageRoot::read_range`.
    pub async fn read_range(&self, path: String, offset: u64, len: usize) -> io::Result<Bytes> {
        self.run(move |s| s.read_range(&path, offset, len)).await
    }

    /// See `StorageRoot::list`.
    pub async fn list(&self, dir: String) -> io::Result<Vec<String>> {
        self.run(move |s| s.list(&dir)).await
    }

    /// See `StorageRoot::delete`.
    pub async fn delete(&self, path: String) -> io::Result<()> {
        self.run(move |s| s.delete(&path)).await
    }

    /// See `StorageRoot::exists`.
    pub async fn exists(&self, path: String) -> io::Result<bool> {
        self.run(move |s| s.exists(&path)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, LocalDir) {
        let dir = tempfile::tempdir().unwrap();
        let root = LocalDir::open(dir.path().join("root")).unwrap();
        (dir, root)
    }

    #[test]
    fn atomic_write_replaces_whole_file_and_creates_parents() {
        let (_d, r) = root();
        r.write_atomic("tablets/7/manifest", b"one").unwrap();
        r.write_atomic("tablets/7/manifest", b"two!").unwrap();
        assert_eq!(&r.read_all("tablets/7/manifest").unwrap()[..], b"two!");
        assert_eq!(r.list("tablets/7").unwrap(), vec!["manifest".to_string()]);
        assert_eq!(r.size("tablets/7/manifest").unwrap(), 4);
    }

    #[test]
    fn a_zeroed_file_stays_zero_filled_ahead_of_its_appends_until_finished() {
        let (_d, r) = root();
        let path = "logs/s1/000002.log";
        let mut f = r.create_append_zeroed(path, 8).unwrap();
        f.append(b"abc").unwrap();
        assert_eq!(&r.read_all(path).unwrap()[..], b"abc\0\0\0\0\0");
        f.append(b"defgh").unwrap();
        f.sync().unwrap();
        assert_eq!(
            &r.read_all(path).unwrap()[..],
            b"abcdefgh",
            "exactly one step"
        );
        f.append(b"ijklmnopqr").unwrap();
        assert_eq!(f.len(), 18);
        assert_eq!(r.size(path).unwrap(), 24, "rounded up to the next step");
        assert_eq!(&r.read_all(path).unwrap()[..18], b"abcdefghijklmnopqr");
        f.finish().unwrap();
        assert_eq!(&r.read_all(path).unwrap()[..], b"abcdefghijklmnopqr");
        // A step longer than the zeros written at a time.
        let big = "logs/s1/000004.log";
        let mut f = r.create_append_zeroed(big, 150_000).unwrap();
        f.append(b"big").unwrap();
        let bytes = r.read_all(big).unwrap();
        assert_eq!(bytes.len(), 150_000);
        assert!(bytes[3..].iter().all(|&b| b == 0) && &bytes[..3] == b"big");
        // A plain root's default: finishing a plain file only syncs it.
        let mut plain = r.create_append("logs/s1/000003.log").unwrap();
        plain.append(b"xyz").unwrap();
        plain.finish().unwrap();
        assert_eq!(&r.read_all("logs/s1/000003.log").unwrap()[..], b"xyz");
    }

    #[test]
    fn append_sync_and_ranged_reads() {
        let (_d, r) = root();
        let mut f = r.create_append("logs/s1/000001.log").unwrap();
        f.append(b"hello ").unwrap();
        f.append(b"world").unwrap();
        f.sync().unwrap();
        assert_eq!(f.len(), 11);
        assert_eq!(
            &r.read_range("logs/s1/000001.log", 6, 5).unwrap()[..],
            b"world"
        );
        let err = r.read_range("logs/s1/000001.log", 8, 5).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(
            r.create_append("logs/s1/000001.log").is_err(),
            "append files are created once"
        );
    }

    #[test]
    fn list_delete_and_path_escapes() {
        let (_d, r) = root();
        assert!(r.list("nope").unwrap().is_empty());
        r.write_atomic("sst/b.sst", b"b").unwrap();
        r.write_atomic("sst/a.sst", b"a").unwrap();
        assert_eq!(
            r.list("sst").unwrap(),
            vec!["a.sst".to_string(), "b.sst".to_string()]
        );
        r.delete("sst/a.sst").unwrap();
        r.delete("sst/a.sst").unwrap();
        assert!(!r.exists("sst/a.sst").unwrap());
        for bad in ["../x", "/etc/passwd", "a/../../b", ""] {
            assert_eq!(
                r.read_all(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput,
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn async_wrapper_runs_off_the_executor() {
        let (_d, r) = root();
        let s = AsyncStorage::new(Arc::new(r));
        s.write_atomic("x/y".into(), Bytes::from_static(b"v"))
            .await
            .unwrap();
        assert_eq!(&s.read_all("x/y".into()).await.unwrap()[..], b"v");
        assert_eq!(s.list("x".into()).await.unwrap(), vec!["y".to_string()]);
    }
}
