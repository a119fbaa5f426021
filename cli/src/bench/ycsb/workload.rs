//! The YCSB core workloads A to F (their operation mix and default distribution), record
//! keys (`user<fnv hash of the record number>`, YCSB's hashed inserts) and record contents
//! (ten fields `field0`..`field9` of 100 bytes in one column family). Pure.

use bytes::Bytes;
use rand::Rng;

use super::generator::{Distribution, fnv_hash64};

/// The column family every field lives in.
pub(crate) const FAMILY: &str = "cf";
/// Fields per record.
pub(crate) const FIELDS: usize = 10;
/// Bytes per field.
pub(crate) const FIELD_BYTES: usize = 100;
/// Longest scan of workload E (YCSB's `maxscanlength`).
pub(crate) const MAX_SCAN_ROWS: u64 = 100;

/// A YCSB core workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Workload {
    /// Update heavy: 50% reads, 50% updates.
    A,
    /// Read mostly: 95% reads, 5% updates.
    B,
    /// Read only.
    C,
    /// Read latest: 95% reads, 5% inserts, reads skewed to the newest records.
    D,
    /// Short ranges: 95% scans of 1-100 rows, 5% inserts.
    E,
    /// Read-modify-write: 50% reads, 50% read-modify-writes.
    F,
}

/// One kind of YCSB operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum OpKind {
    Read,
    Update,
    Insert,
    Scan,
    ReadModifyWrite,
}

impl OpKind {
    /// Its name in YCSB's output (`[READ]`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            OpKind::Read => "READ",
            OpKind::Update => "UPDATE",
            OpKind::Insert => "INSERT",
            OpKind::Scan => "SCAN",
            OpKind::ReadModifyWrite => "READ-MODIFY-WRITE",
        }
    }
}

impl Workload {
    /// Its letter, lower case.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::A => "a",
            Workload::B => "b",
            Workload::C => "c",
            Workload::D => "d",
            Workload::E => "e",
            Workload::F => "f",
        }
    }

    /// Each operation kind's share of the operations (summing to 1), in YCSB's order.
    pub(crate) fn mix(self) -> &'static [(OpKind, f64)] {
        use OpKind::*;
        match self {
            Workload::A => &[(Read, 0.5), (Update, 0.5)],
            Workload::B => &[(Read, 0.95), (Update, 0.05)],
            Workload::C => &[(Read, 1.0)],
            Workload::D => &[(Read, 0.95), (Insert, 0.05)],
            Workload::E => &[(Scan, 0.95), (Insert, 0.05)],
            Workload::F => &[(Read, 0.5), (ReadModifyWrite, 0.5)],
        }
    }

    /// The request distribution YCSB's workload file names.
    pub(crate) fn default_distribution(self) -> Distribution {
        match self {
            Workload::D => Distribution::Latest,
            _ => Distribution::Zipfian,
        }
    }

    /// The share of inserts (what the key space grows by).
    pub(crate) fn insert_share(self) -> f64 {
        self.mix()
            .iter()
            .filter(|(k, _)| *k == OpKind::Insert)
            .map(|(_, p)| p)
            .sum()
    }

    /// The operation for a uniform draw `u` in `[0, 1)`.
    pub(crate) fn choose(self, u: f64) -> OpKind {
        let mut acc = 0.0;
        let mix = self.mix();
        for &(kind, share) in mix {
            acc += share;
            if u < acc {
                return kind;
            }
        }
        mix[mix.len() - 1].0
    }
}

/// The row key of record `n`: `user` and the decimal FNV-64 hash of `n` (YCSB's
/// `insertorder=hashed`), so consecutive records land all over the key space.
pub(crate) fn record_key(n: u64) -> String {
    format!("user{}", fnv_hash64(n))
}

/// The qualifier of field `i`.
pub(crate) fn field_name(i: usize) -> String {
    format!("field{i}")
}

/// `FIELD_BYTES` random printable bytes (YCSB fills values with random ASCII).
pub(crate) fn field_value(rng: &mut impl Rng) -> Bytes {
    let value: Vec<u8> = (0..FIELD_BYTES)
        .map(|_| rng.random_range(b' '..=b'~'))
        .collect();
    Bytes::from(value)
}

/// `count` split keys cutting `keys` (the table's row keys, any order) into `count + 1`
/// pieces of about equal size: the keys at the quantiles of their sorted order.
pub(crate) fn split_keys(mut keys: Vec<String>, count: usize) -> Vec<String> {
    keys.sort_unstable();
    keys.dedup();
    let pieces = count + 1;
    let mut out: Vec<String> = (1..pieces)
        .filter_map(|i| keys.get(i * keys.len() / pieces).cloned())
        .collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    const ALL: [Workload; 6] = [
        Workload::A,
        Workload::B,
        Workload::C,
        Workload::D,
        Workload::E,
        Workload::F,
    ];

    #[test]
    fn every_mix_sums_to_one_and_draws_in_proportion() {
        let mut rng = StdRng::seed_from_u64(7);
        for w in ALL {
            let total: f64 = w.mix().iter().map(|(_, p)| p).sum();
            assert!((total - 1.0).abs() < 1e-12, "{w:?}");
            let n = 100_000;
            for &(kind, share) in w.mix() {
                let mut r = StdRng::seed_from_u64(7);
                let got = (0..n).filter(|_| w.choose(r.random()) == kind).count();
                let got = got as f64 / n as f64;
                assert!(
                    (got - share).abs() < 0.01,
                    "{w:?} {kind:?}: {got} vs {share}"
                );
            }
            assert_eq!(w.choose(0.999_999_999), w.mix().last().unwrap().0);
            let _ = w.choose(rng.random());
        }
        assert_eq!(Workload::A.choose(0.49), OpKind::Read);
        assert_eq!(Workload::A.choose(0.5), OpKind::Update);
        assert_eq!(Workload::E.choose(0.96), OpKind::Insert);
        assert_eq!(Workload::F.choose(0.7), OpKind::ReadModifyWrite);
        assert_eq!(Workload::D.default_distribution(), Distribution::Latest);
        assert_eq!(Workload::A.default_distribution(), Distribution::Zipfian);
        assert_eq!(Workload::D.insert_share(), 0.05);
        assert_eq!(Workload::A.insert_share(), 0.0);
        assert_eq!(OpKind::ReadModifyWrite.name(), "READ-MODIFY-WRITE");
    }

    #[test]
    fn keys_are_hashed_like_ycsb() {
        assert_eq!(record_key(0), "user6284781860667377211");
        assert_eq!(record_key(1), "user8517097267634966620");
        assert_ne!(record_key(2), record_key(3));
        assert_eq!(field_name(9), "field9");
        let mut rng = StdRng::seed_from_u64(1);
        let v = field_value(&mut rng);
        assert_eq!(v.len(), FIELD_BYTES);
        assert!(v.iter().all(|b| (b' '..=b'~').contains(b)));
    }

    #[test]
    fn split_keys_cut_at_quantiles() {
        let keys: Vec<String> = (0..100).map(|i| format!("k{i:03}")).rev().collect();
        assert_eq!(split_keys(keys.clone(), 3), ["k025", "k050", "k075"]);
        assert_eq!(split_keys(keys.clone(), 0), Vec::<String>::new());
        assert_eq!(split_keys(vec!["a".into()], 2), ["a"]);
        let hashed: Vec<String> = (0..3000).map(record_key).collect();
        let splits = split_keys(hashed.clone(), 2);
        let below = hashed.iter().filter(|k| **k < splits[0]).count();
        assert_eq!(below, 1000);
    }
}
