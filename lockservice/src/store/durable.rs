//! File-system helpers with the durability rules spelled out: an atomic replace is temp file +
//! fsync + rename + directory fsync; a directory lock keeps two stores off one data directory.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use super::error::StoreError;
use super::record::{decode_blob, encode_blob};

/// Suffix of a file being written before its rename; leftovers are deleted on open.
pub(super) const TMP_SUFFIX: &str = ".tmp";

/// An exclusive advisory lock (`flock`) on `<dir>/LOCK`, held while the value lives.
#[derive(Debug)]
pub(super) struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock or fails with `StoreError::Locked`.
    pub(super) fn acquire(dir: &Path) -> Result<DirLock, StoreError> {
        let path = dir.join("LOCK");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(StoreError::Locked {
                path: dir.to_path_buf(),
            }),
            Err(TryLockError::Error(e)) => Err(StoreError::io("lock", &path, e)),
        }
    }
}

/// Creates `dir` (and parents) and makes its entry durable in its parent.
pub(super) fn create_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| StoreError::io("create directory", dir, e))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// fsyncs a directory, making creations, renames and deletions in it durable.
pub(super) fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync directory", dir, e))
}

/// Replaces `dir/name` with `bytes` atomically and durably.
pub(super) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let path = dir.join(name);
    let mut file = File::create(&tmp).map_err(|e| StoreError::io("create", &tmp, e))?;
    file.write_all(bytes)
        .map_err(|e| StoreError::io("write", &tmp, e))?;
    file.sync_all()
        .map_err(|e| StoreError::io("fsync", &tmp, e))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(|e| StoreError::io("rename", &path, e))?;
    fsync_dir(dir)
}

/// Writes a checksummed blob atomically.
pub(super) fn write_blob(
    dir: &Path,
    name: &str,
    magic: &[u8; 8],
    body: &[u8],
) -> Result<(), StoreError> {
    if u32::try_from(body.len()).is_err() {
        return Err(StoreError::inconsistent(
            &dir.join(name),
            "a blob over 4 GiB cannot be written",
        ));
    }
    write_atomic(dir, name, &encode_blob(magic, body))
}

/// Reads a checksummed blob; `None` if the file does not exist. A damaged blob is an error:
/// blobs are only ever replaced by rename, so a torn one cannot be.
pub(super) fn read_blob(
    dir: &Path,
    name: &str,
    magic: &[u8; 8],
) -> Result<Option<Vec<u8>>, StoreError> {
    let path = dir.join(name);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io("read", &path, e)),
    };
    match decode_blob(magic, &bytes) {
        Ok(body) => Ok(Some(body.to_vec())),
        Err(reason) => Err(StoreError::corrupt(&path, 0, reason)),
    }
}

/// Deletes `dir/name.tmp` left by a crash during an atomic replace.
pub(super) fn remove_leftover_tmp(dir: &Path, name: &str) -> Result<(), StoreError> {
    let tmp: PathBuf = dir.join(format!("{name}{TMP_SUFFIX}"));
    match fs::remove_file(&tmp) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("remove", &tmp, e)),
    }
}
