//! Garbage-collection policy of a column family: which old cells a major compaction may drop.
//!
//! Cloud Bigtable's semantics: `MaxVersions(n)` drops all but the newest n cells of a column,
//! `MaxAge(d)` drops cells older than `now - d`; `Union` drops a cell any child rule drops,
//! `Intersection` drops a cell only when every child rule drops it. `KeepAll` drops nothing.

use std::time::Duration;

/// A family's GC policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GcPolicy {
    /// Never drop a cell for its age or version count.
    #[default]
    KeepAll,
    /// Keep the newest `n` cells of each column.
    MaxVersions(u32),
    /// Keep cells whose timestamp is within this age of now.
    MaxAge(Duration),
    /// Drop a cell that any rule drops.
    Union(Vec<GcPolicy>),
    /// Drop a cell only if every rule drops it.
    Intersection(Vec<GcPolicy>),
}

impl GcPolicy {
    /// Whether the cell that is the `version`-th newest of its column (0 = newest), written at
    /// `timestamp_micros`, may be dropped at `now_micros`.
    pub fn drops(&self, version: usize, timestamp_micros: i64, now_micros: i64) -> bool {
        match self {
            GcPolicy::KeepAll => false,
            GcPolicy::MaxVersions(n) => version >= *n as usize,
            GcPolicy::MaxAge(age) => {
                let age = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
                timestamp_micros < now_micros.saturating_sub(age)
            }
            GcPolicy::Union(rules) => rules
                .iter()
                .any(|r| r.drops(version, timestamp_micros, now_micros)),
            GcPolicy::Intersection(rules) => {
                !rules.is_empty()
                    && rules
                        .iter()
                        .all(|r| r.drops(version, timestamp_micros, now_micros))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY_MICROS: i64 = 86_400_000_000;

    #[test]
    fn rules_combine_like_cloud_bigtable() {
        let now = 10 * DAY_MICROS;
        let versions = GcPolicy::MaxVersions(2);
        let age = GcPolicy::MaxAge(Duration::from_secs(86_400));
        assert!(!versions.drops(1, 0, now));
        assert!(versions.drops(2, now, now));
        assert!(age.drops(0, now - 2 * DAY_MICROS, now));
        assert!(!age.drops(5, now - 1, now));
        let union = GcPolicy::Union(vec![versions.clone(), age.clone()]);
        assert!(union.drops(2, now, now));
        assert!(union.drops(0, 0, now));
        assert!(!union.drops(0, now, now));
        let inter = GcPolicy::Intersection(vec![versions, age]);
        assert!(!inter.drops(2, now, now), "young, so kept");
        assert!(!inter.drops(0, 0, now), "newest, so kept");
        assert!(inter.drops(2, 0, now));
        assert!(!GcPolicy::KeepAll.drops(1_000, 0, now));
        assert!(!GcPolicy::Intersection(vec![]).drops(9, 0, now));
    }
}
