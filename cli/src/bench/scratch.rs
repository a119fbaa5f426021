//! Where a benchmark writes: a fresh temporary directory (removed afterwards) inside
//! `--dir` or the current directory, on a real file system so fdatasync reaches the disk.
//! The file system's type comes from `/proc/self/mounts`, to warn when it is memory-backed.

use std::path::{Path, PathBuf};

use anyhow::Context;
use tempfile::TempDir;

/// File systems whose fdatasync never touches a disk.
const MEMORY_FILESYSTEMS: [&str; 2] = ["tmpfs", "ramfs"];

/// The scratch directory of one run and the type of its file system.
pub(super) struct Scratch {
    pub(super) dir: TempDir,
    pub(super) filesystem: String,
}

impl Scratch {
    /// A fresh directory inside `parent` (the current directory if `None`).
    pub(super) fn create(parent: Option<&Path>) -> anyhow::Result<Scratch> {
        let parent: PathBuf = match parent {
            Some(p) => {
                std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
                p.to_path_buf()
            }
            None => std::env::current_dir().context("finding the current directory")?,
        };
        let dir = tempfile::Builder::new()
            .prefix("tabula-bench-")
            .tempdir_in(&parent)
            .with_context(|| format!("creating a scratch directory in {}", parent.display()))?;
        let canonical = dir
            .path()
            .canonicalize()
            .unwrap_or_else(|_| dir.path().to_path_buf());
        let filesystem = std::fs::read_to_string("/proc/self/mounts")
            .ok()
            .and_then(|mounts| filesystem_of(&mounts, &canonical))
            .unwrap_or_else(|| "unknown file system".to_owned());
        Ok(Scratch { dir, filesystem })
    }

    /// Whether fdatasync on this file system is a no-op, making synced-write numbers meaningless.
    pub(super) fn is_memory_backed(&self) -> bool {
        MEMORY_FILESYSTEMS.contains(&self.filesystem.as_str())
    }
}

/// The type of the file system holding `path`, from the text of `/proc/self/mounts`: the
/// entry with the longest mount point that contains `path` (the last one if mounted over).
fn filesystem_of(mounts: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(_device), Some(mount_point), Some(fs_type)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let mount_point = unescape_mount_point(mount_point);
        if path.starts_with(&mount_point)
            && best
                .as_ref()
                .is_none_or(|(len, _)| mount_point.len() >= *len)
        {
            best = Some((mount_point.len(), fs_type.to_owned()));
        }
    }
    best.map(|(_, fs)| fs)
}

/// Undoes the octal escapes (`\040` for a space) the kernel writes in mount points.
fn unescape_mount_point(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "\
/dev/vda / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw,nosuid 0 0
/dev/vdb /data xfs rw 0 0
/dev/vdc /data/my\\040disk btrfs rw 0 0
tmpfs /tmpfoo tmpfs rw 0 0
";

    #[test]
    fn the_longest_containing_mount_point_wins() {
        let fs = |p: &str| filesystem_of(MOUNTS, Path::new(p));
        assert_eq!(fs("/work/main").as_deref(), Some("ext4"));
        assert_eq!(fs("/tmp/x").as_deref(), Some("tmpfs"));
        assert_eq!(
            fs("/tmpx").as_deref(),
            Some("ext4"),
            "component-wise prefix only"
        );
        assert_eq!(fs("/data/a").as_deref(), Some("xfs"));
        assert_eq!(fs("/data/my disk/a").as_deref(), Some("btrfs"));
        assert_eq!(filesystem_of("", Path::new("/a")), None);
    }

    #[test]
    fn a_scratch_directory_is_created_inside_the_parent_and_removed_on_drop() {
        let parent = tempfile::tempdir().unwrap();
        let scratch = Scratch::create(Some(parent.path())).unwrap();
        let path = scratch.dir.path().to_path_buf();
        assert!(path.starts_with(parent.path()) && path.is_dir());
        assert!(!scratch.filesystem.is_empty());
        drop(scratch);
        assert!(!path.exists());
    }
}
