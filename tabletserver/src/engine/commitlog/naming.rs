//! Where commit-log segments live on the storage root:
//! `logs/<server-id>/<segment number, 20 decimal digits>.log`.
//!
//! Twenty digits hold any `u64`, so name order is number order and a sorted `list` is log order.

use tabula_common::ServerId;

/// The longest server id accepted, in bytes (a directory name; most file systems allow 255).
pub(crate) const MAX_SERVER_ID_LEN: usize = 255;

const SUFFIX: &str = ".log";
const DIGITS: usize = 20;

/// The commit-log directory of `server`: `logs/<server-id>`.
pub fn server_log_dir(server: &ServerId) -> String {
    format!("logs/{}", server.0)
}

/// The file name of segment `number`.
pub(crate) fn segment_file_name(number: u64) -> String {
    format!("{number:020}{SUFFIX}")
}

/// The path of segment `number` in `dir`.
pub(crate) fn segment_path(dir: &str, number: u64) -> String {
    format!("{dir}/{}", segment_file_name(number))
}

/// The segment number a file name stands for, or `None` if it is not a segment's name.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The last component of a log directory path: the server id its segments must name.
pub(crate) fn dir_server_name(dir: &str) -> &str {
    dir.trim_end_matches('/').rsplit('/').next().unwrap_or(dir)
}

/// Whether `server` can name a commit-log directory: 1 to 255 bytes, one path component.
pub(crate) fn check_server_id(server: &ServerId) -> Result<(), &'static str> {
    let id = server.0.as_str();
    if id.is_empty() {
        return Err("server id is empty");
    }
    if id.len() > MAX_SERVER_ID_LEN {
        return Err("server id is longer than 255 bytes");
    }
    if id == "." || id == ".." || id.contains('/') || id.contains('\0') {
        return Err("server id must be a single path component");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_numerically() {
        assert_eq!(segment_file_name(7), "00000000000000000007.log");
        assert_eq!(
            segment_path("logs/ts1", 12),
            "logs/ts1/00000000000000000012.log"
        );
        assert_eq!(server_log_dir(&ServerId("ts1".into())), "logs/ts1");
        for n in [0, 1, 99, u64::MAX] {
            assert_eq!(parse_segment_file_name(&segment_file_name(n)), Some(n));
        }
        assert!(segment_file_name(9) < segment_file_name(10));
    }

    #[test]
    fn other_names_are_not_segments() {
        for name in [
            "1.log",
            "0000000000000000000a.log",
            "00000000000000000001.txt",
            "",
            ".log",
        ] {
            assert_eq!(parse_segment_file_name(name), None, "{name}");
        }
        assert_eq!(
            parse_segment_file_name("99999999999999999999.log"),
            None,
            "beyond u64"
        );
    }

    #[test]
    fn server_ids_are_single_components() {
        assert!(check_server_id(&ServerId("ts-1.example:9000".into())).is_ok());
        for bad in ["", ".", "..", "a/b", "x\0"] {
            assert!(check_server_id(&ServerId(bad.into())).is_err(), "{bad:?}");
        }
        assert!(check_server_id(&ServerId("x".repeat(256))).is_err());
        assert_eq!(dir_server_name("logs/ts1"), "ts1");
        assert_eq!(dir_server_name("logs/ts1/"), "ts1");
        assert_eq!(dir_server_name("ts1"), "ts1");
    }
}
