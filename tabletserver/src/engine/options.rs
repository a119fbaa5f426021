//! Engine and tablet settings, with production defaults and the tiny ones tests use.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::compaction::{PickerOptions, ReadTrigger};
use super::gc_policy::GcPolicy;
use super::sstable::SstableOptions;

/// Settings shared by every tablet of one engine (one tablet server).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// A memtable this large freezes and a new one takes the writes.
    pub memtable_bytes: usize,
    /// Writers wait while this many frozen memtables are still being flushed.
    pub max_frozen_memtables: usize,
    /// How long a writer waits for the flusher before failing with `Stalled`.
    pub write_stall_timeout: Duration,
    /// SSTable block size, compression and bloom settings.
    pub sstable: SstableOptions,
    /// Byte budget of the shared block cache.
    pub block_cache_bytes: usize,
    /// When to merge and when to major-compact.
    pub picker: PickerOptions,
    /// When reads that resolve away much garbage ask for a major compaction.
    pub read_trigger: ReadTrigger,
    /// An SSTable no manifest names is deleted once it is this old (files being written by
    /// another server are not in any manifest yet).
    pub file_gc_grace: Duration,
    /// Asked immediately before every manifest store (flushes, compactions, splits, tablet
    /// create and open); `None` permits every store. See `ManifestWritePermit`.
    pub manifest_write_permit: Option<ManifestWritePermit>,
}

/// Whether this engine may replace manifests on the shared storage root *right now*.
///
/// A tablet server that is no longer sure it owns its tablets (its lock-service session is in
/// jeopardy or lost, or it stopped serving) must not rewrite `tablets/<id>/manifest`: the master
/// may already have given the tablet to a new owner writing the same file. The closure is
/// evaluated at the moment of every store, never cached. When it says no, the store is not
/// made: background flushes and compactions are postponed (retried on the background thread's
/// next tick), and a caller's flush, split, create or open fails with
/// `EngineError::NotPermitted`. Residual window: a process paused between the check and the
/// rename still writes once; epoch-named manifests close it (left for the master issue).
#[derive(Clone)]
pub struct ManifestWritePermit(Arc<dyn Fn() -> bool + Send + Sync>);

impl ManifestWritePermit {
    /// A permit that asks `allowed` at every manifest store.
    pub fn new(allowed: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        ManifestWritePermit(Arc::new(allowed))
    }

    /// Whether a manifest store is permitted now.
    pub fn allows(&self) -> bool {
        (self.0)()
    }
}

impl std::fmt::Debug for ManifestWritePermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ManifestWritePermit(..)")
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            memtable_bytes: 64 * 1024 * 1024,
            max_frozen_memtables: 4,
            write_stall_timeout: Duration::from_secs(30),
            sstable: SstableOptions::default(),
            block_cache_bytes: 256 * 1024 * 1024,
            picker: PickerOptions::default(),
            read_trigger: ReadTrigger::default(),
            file_gc_grace: Duration::from_secs(3600),
            manifest_write_permit: None,
        }
    }
}

impl EngineOptions {
    /// Tiny thresholds so flushes and compactions happen in every test: 64 KiB memtables,
    /// 1 KiB blocks, merges from 3 files.
    pub fn for_tests() -> Self {
        EngineOptions {
            memtable_bytes: 64 * 1024,
            max_frozen_memtables: 4,
            write_stall_timeout: Duration::from_secs(30),
            sstable: SstableOptions {
                block_size_bytes: 1024,
                ..SstableOptions::default()
            },
            block_cache_bytes: 1024 * 1024,
            picker: PickerOptions {
                merge_trigger_files: 3,
                merge_width_files: 3,
                major_trigger_files: 8,
            },
            read_trigger: ReadTrigger::default(),
            file_gc_grace: Duration::ZERO,
            manifest_write_permit: None,
        }
    }
}

/// A tablet's column families and their GC policies, which of them are aggregates, and how
/// finely the table keeps timestamps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    /// Family name -> GC policy.
    pub families: BTreeMap<Bytes, GcPolicy>,
    /// The families whose cells are Sum-of-Int64 aggregates (8-byte big-endian signed
    /// integers that `AddToCell` adds into; `SetCell` is refused). Every other family holds
    /// plain bytes.
    pub aggregates: BTreeSet<Bytes>,
    /// The table's timestamp granularity.
    pub granularity: Granularity,
}

/// How finely a table keeps timestamps (Cloud Bigtable's `Table.granularity`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Granularity {
    /// Any microsecond: Tabula's native tables.
    #[default]
    Micros,
    /// Multiples of 1000 microseconds, client and server timestamps alike (Cloud Bigtable).
    Millis,
}

impl Granularity {
    /// Microseconds per step: 1 or 1000.
    pub fn step_micros(self) -> i64 {
        match self {
            Granularity::Micros => 1,
            Granularity::Millis => 1000,
        }
    }
}

impl Schema {
    /// A schema with `families`, each keeping everything.
    pub fn with_families<'a>(families: impl IntoIterator<Item = &'a str>) -> Self {
        Schema {
            families: families
                .into_iter()
                .map(|f| (Bytes::copy_from_slice(f.as_bytes()), GcPolicy::KeepAll))
                .collect(),
            ..Schema::default()
        }
    }

    /// Whether `family` is an aggregate (Sum of Int64) family.
    pub fn is_aggregate(&self, family: &[u8]) -> bool {
        self.aggregates.contains(family)
    }

    /// The GC policy of `family` (keep everything for a family not in the schema).
    pub fn policy(&self, family: &[u8]) -> GcPolicy {
        self.families.get(family).cloned().unwrap_or_default()
    }

    /// The policy a major compaction applies to `family`: its GC policy, or dropping every
    /// cell of a family the schema no longer has (removed by `ModifyColumnFamilies`).
    pub fn compaction_policy(&self, family: &[u8]) -> GcPolicy {
        self.families
            .get(family)
            .cloned()
            .unwrap_or(GcPolicy::MaxVersions(0))
    }
}
