//! YCSB's request distributions, ported from its `generator` package so the skew matches:
//! [`Zipfian`] (Gray et al.'s algorithm, constant 0.99, the item count may grow), the
//! [`ScrambledZipfian`] YCSB uses for `requestdistribution=zipfian` (a Zipfian over 10^10
//! items hashed with FNV-64 into the key space, so the popular keys are spread over the
//! table), [`SkewedLatest`] (`requestdistribution=latest`: the newest keys are the most
//! popular) and uniform. Pure: every draw takes the random source as an argument.

use rand::Rng;

/// YCSB's Zipfian constant.
pub(super) const ZIPFIAN_CONSTANT: f64 = 0.99;
/// Items of the Zipfian a [`ScrambledZipfian`] draws from before hashing (YCSB's
/// `ITEM_COUNT`).
const SCRAMBLED_ITEMS: u64 = 10_000_000_000;
/// zeta(10^10, 0.99), precomputed as YCSB does (`ScrambledZipfianGenerator.ZETAN`).
const SCRAMBLED_ZETAN: f64 = 26.469_028_201_783_02;

/// FNV-1 64-bit of the eight little-endian bytes of `value`, as YCSB's `Utils.fnvhash64`
/// (which answers the absolute value of the signed result).
pub(super) fn fnv_hash64(value: u64) -> u64 {
    const OFFSET_BASIS: u64 = 0xCBF2_9CE4_8422_2325;
    const PRIME: u64 = 1_099_511_628_211;
    let mut hash = OFFSET_BASIS;
    let mut v = value;
    for _ in 0..8 {
        hash ^= v & 0xff;
        hash = hash.wrapping_mul(PRIME);
        v >>= 8;
    }
    (hash as i64).unsigned_abs()
}

/// The sum of `1 / i^theta` for `i` in `from + 1 ..= to`.
fn zeta_range(from: u64, to: u64, theta: f64) -> f64 {
    ((from + 1)..=to)
        .map(|i| 1.0 / (i as f64).powf(theta))
        .sum()
}

/// Zipfian over `0..items` (item 0 the most popular), YCSB's `ZipfianGenerator`.
#[derive(Debug, Clone)]
pub(super) struct Zipfian {
    items: u64,
    theta: f64,
    alpha: f64,
    zeta2: f64,
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    /// A Zipfian over `0..items` (at least one item) with YCSB's constant.
    pub(super) fn new(items: u64) -> Zipfian {
        let items = items.max(1);
        let theta = ZIPFIAN_CONSTANT;
        Zipfian::with_zetan(items, zeta_range(0, items, theta))
    }

    fn with_zetan(items: u64, zetan: f64) -> Zipfian {
        let theta = ZIPFIAN_CONSTANT;
        let zeta2 = zeta_range(0, 2, theta);
        let mut z = Zipfian {
            items,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zeta2,
            zetan,
            eta: 0.0,
        };
        z.eta = z.eta_for(items);
        z
    }

    fn eta_for(&self, items: u64) -> f64 {
        (1.0 - (2.0 / items as f64).powf(1.0 - self.theta)) / (1.0 - self.zeta2 / self.zetan)
    }

    /// Items it draws from.
    #[cfg(test)]
    fn items(&self) -> u64 {
        self.items
    }

    /// Draws from `0..items` after growing (or shrinking) to `items` items; growing adds the
    /// new terms to zeta, as YCSB does for `latest`.
    pub(super) fn next_of(&mut self, items: u64, rng: &mut impl Rng) -> u64 {
        let items = items.max(1);
        if items != self.items {
            self.zetan = if items > self.items {
                self.zetan + zeta_range(self.items, items, self.theta)
            } else {
                zeta_range(0, items, self.theta)
            };
            self.items = items;
            self.eta = self.eta_for(items);
        }
        self.next(rng)
    }

    /// Draws from `0..items`.
    pub(super) fn next(&self, rng: &mut impl Rng) -> u64 {
        let u: f64 = rng.random();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.items - 1);
        }
        let v = (self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        v.min(self.items - 1)
    }
}

/// YCSB's `ScrambledZipfianGenerator`: a Zipfian over 10^10 items, hashed into `0..items`.
#[derive(Debug, Clone)]
pub(super) struct ScrambledZipfian {
    zipfian: Zipfian,
    items: u64,
}

impl ScrambledZipfian {
    /// Over `0..items` (at least one).
    pub(super) fn new(items: u64) -> ScrambledZipfian {
        ScrambledZipfian {
            zipfian: Zipfian::with_zetan(SCRAMBLED_ITEMS, SCRAMBLED_ZETAN),
            items: items.max(1),
        }
    }

    /// Draws from `0..items`.
    pub(super) fn next(&self, rng: &mut impl Rng) -> u64 {
        fnv_hash64(self.zipfian.next(rng)) % self.items
    }
}

/// YCSB's `SkewedLatestGenerator`: `latest - zipfian(latest + 1)`, the newest item the most
/// popular.
#[derive(Debug, Clone)]
pub(super) struct SkewedLatest {
    zipfian: Zipfian,
}

impl SkewedLatest {
    /// For a key space whose newest item is now `latest`.
    pub(super) fn new(latest: u64) -> SkewedLatest {
        SkewedLatest {
            zipfian: Zipfian::new(latest + 1),
        }
    }

    /// Draws from `0..=latest`, `latest` being the newest item now.
    pub(super) fn next(&mut self, latest: u64, rng: &mut impl Rng) -> u64 {
        latest - self.zipfian.next_of(latest + 1, rng).min(latest)
    }
}

/// Which distribution picks the keys of reads, updates and scans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Distribution {
    /// Scrambled Zipfian, constant 0.99 (YCSB's default).
    Zipfian,
    /// Every record equally likely.
    Uniform,
    /// Skewed towards the most recently inserted records (workload D's default).
    Latest,
}

impl Distribution {
    /// Its name in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Distribution::Zipfian => "zipfian",
            Distribution::Uniform => "uniform",
            Distribution::Latest => "latest",
        }
    }
}

/// A key chooser of one client: draws record numbers in `0..=newest`.
#[derive(Debug, Clone)]
pub(super) enum KeyChooser {
    Zipfian(ScrambledZipfian),
    Uniform,
    Latest(SkewedLatest),
}

impl KeyChooser {
    /// A chooser over `records` loaded records, which may grow by about `expected_inserts`
    /// (YCSB sizes its Zipfian for both, and redraws past the newest record).
    pub(super) fn new(distribution: Distribution, records: u64, expected_inserts: u64) -> Self {
        match distribution {
            Distribution::Zipfian => {
                KeyChooser::Zipfian(ScrambledZipfian::new(records + expected_inserts))
            }
            Distribution::Uniform => KeyChooser::Uniform,
            Distribution::Latest => KeyChooser::Latest(SkewedLatest::new(records.max(1) - 1)),
        }
    }

    /// A record number in `0..=newest`.
    pub(super) fn next(&mut self, newest: u64, rng: &mut impl Rng) -> u64 {
        match self {
            KeyChooser::Uniform => rng.random_range(0..=newest),
            KeyChooser::Latest(g) => g.next(newest, rng),
            KeyChooser::Zipfian(g) => {
                // YCSB redraws past the newest record; after a few tries take it modulo.
                for _ in 0..16 {
                    let n = g.next(rng);
                    if n <= newest {
                        return n;
                    }
                }
                g.next(rng) % (newest + 1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(42)
    }

    #[test]
    fn fnv_matches_ycsb() {
        // Utils.fnvhash64 of YCSB's Java code (FNV over the 8 bytes, low byte first, abs).
        assert_eq!(fnv_hash64(0), 6_284_781_860_667_377_211);
        assert_eq!(fnv_hash64(1), 8_517_097_267_634_966_620);
        assert_eq!(fnv_hash64(42), 55_488_592_825_689_361);
        assert!(fnv_hash64(u64::MAX) <= i64::MAX as u64 + 1);
    }

    #[test]
    fn zipfian_stays_in_range_and_favours_the_first_items() {
        let z = Zipfian::new(1000);
        let mut r = rng();
        let mut counts = vec![0u64; 1000];
        for _ in 0..100_000 {
            counts[z.next(&mut r) as usize] += 1;
        }
        // With theta 0.99 over 1000 items, item 0 has 1/zeta(1000) ~ 13% of the draws and
        // the first 10 items about 40%.
        let first = counts[0] as f64 / 100_000.0;
        let top10: u64 = counts[..10].iter().sum();
        assert!((0.11..0.16).contains(&first), "{first}");
        assert!(
            (0.35..0.45).contains(&(top10 as f64 / 100_000.0)),
            "{top10}"
        );
        assert!(counts[0] > counts[1] && counts[1] > counts[10] && counts[10] > counts[900]);
    }

    #[test]
    fn zipfian_grows_like_a_fresh_one() {
        let mut grown = Zipfian::new(100);
        let mut r = rng();
        grown.next_of(5000, &mut r);
        let fresh = Zipfian::new(5000);
        assert_eq!(grown.items(), 5000);
        assert!((grown.zetan - fresh.zetan).abs() < 1e-9);
        assert!((grown.eta - fresh.eta).abs() < 1e-9);
    }

    #[test]
    fn scrambled_zipfian_spreads_a_skewed_popularity_over_the_key_space() {
        let z = ScrambledZipfian::new(10_000);
        let mut r = rng();
        let mut counts = vec![0u64; 10_000];
        for _ in 0..200_000 {
            counts[z.next(&mut r) as usize] += 1;
        }
        let mut sorted = counts.clone();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        // Skewed: the 1% most popular keys take a large share of the draws (uniform: 1%).
        let top: u64 = sorted[..100].iter().sum();
        assert!(top as f64 / 200_000.0 > 0.2, "{top}");
        // Scrambled: the most popular key is not key 0, and popular keys are everywhere.
        let hottest = (0..10_000).max_by_key(|&i| counts[i]).unwrap();
        assert_ne!(hottest, 0);
        let upper_half: u64 = counts[5000..].iter().sum();
        assert!((0.2..0.8).contains(&(upper_half as f64 / 200_000.0)));
    }

    #[test]
    fn latest_favours_the_newest_records() {
        let mut g = SkewedLatest::new(999);
        let mut r = rng();
        let draws: Vec<u64> = (0..50_000).map(|_| g.next(999, &mut r)).collect();
        assert!(draws.iter().all(|&d| d <= 999));
        let newest = draws.iter().filter(|&&d| d == 999).count() as f64 / 50_000.0;
        assert!((0.11..0.16).contains(&newest), "{newest}");
        // The key space grows: the newest key moves with it.
        let grown: Vec<u64> = (0..10_000).map(|_| g.next(1999, &mut r)).collect();
        assert!(grown.iter().all(|&d| d <= 1999));
        assert!(grown.iter().filter(|&&d| d == 1999).count() > 1000);
    }

    #[test]
    fn choosers_never_pass_the_newest_record() {
        let mut r = rng();
        for d in [
            Distribution::Zipfian,
            Distribution::Uniform,
            Distribution::Latest,
        ] {
            let mut k = KeyChooser::new(d, 100, 50);
            for newest in [0, 10, 99, 120] {
                for _ in 0..2000 {
                    assert!(k.next(newest, &mut r) <= newest, "{d:?}");
                }
            }
        }
        let mut u = KeyChooser::new(Distribution::Uniform, 100, 0);
        let low = (0..10_000).filter(|_| u.next(99, &mut r) < 50).count();
        assert!((4500..5500).contains(&low), "{low}");
    }
}
