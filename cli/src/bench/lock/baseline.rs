//! The durability ceiling the write rates are compared with: one thread appending 256 bytes to
//! a plain file on the cell's file system and fdatasyncing after every append, for a fixed
//! time. Every Raft write waits for at least one such fdatasync (in fact one on the leader and
//! one on a follower), so one client cannot beat this rate; many clients can, by group commit.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

/// Bytes appended before each fdatasync.
pub(super) const RECORD_BYTES: usize = 256;

/// fdatasyncs per second of the loop, run for `duration` on a new file in `dir`, which is
/// removed afterwards.
pub(super) fn fdatasyncs_per_sec(dir: &Path, duration: Duration) -> anyhow::Result<f64> {
    let path = dir.join("fdatasync-baseline.log");
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    let record = [b'r'; RECORD_BYTES];
    let started = Instant::now();
    let mut syncs = 0u64;
    while started.elapsed() < duration {
        file.write_all(&record)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("appending to {}", path.display()))?;
        syncs += 1;
    }
    let elapsed = started.elapsed();
    drop(file);
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    Ok(syncs as f64 / elapsed.as_secs_f64().max(1e-9))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loop_syncs_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let rate = fdatasyncs_per_sec(dir.path(), Duration::from_millis(50)).unwrap();
        assert!(rate > 0.0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
