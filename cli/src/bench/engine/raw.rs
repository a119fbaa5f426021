//! The durability ceiling fillsync is compared with: one thread appending a record of key and
//! value bytes to a plain file and fdatasyncing after every append, as fast as the disk allows.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::data::{KEY_BYTES, ValuePool, key};

/// Appends `order.len()` records of key + value to a new file in `dir`, each followed by an
/// fdatasync; returns the time taken.
pub(super) fn append_fdatasync_loop(
    dir: &Path,
    order: &[u64],
    values: &ValuePool,
    done: &AtomicU64,
) -> anyhow::Result<Duration> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("raw.log");
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let mut record = Vec::with_capacity(KEY_BYTES + values.value(0).len());
    let started = Instant::now();
    for &n in order {
        record.clear();
        record.extend_from_slice(&key(n));
        record.extend_from_slice(values.value(n));
        file.write_all(&record)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("appending to {}", path.display()))?;
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(started.elapsed())
}
