//! Corruption tests over committed fixtures: every decoder of disk bytes (SSTable, commit-log
//! segment, row-mutation payload, manifest) turns damaged input into an error of the right kind,
//! never a panic and never wrong data.
//!
//! The fixtures in `tests/fixtures/` are one tablet's storage root, written by the engine's own
//! writers (`SstableWriter`, `CommitLog`, `Manifest::encode`) from the deterministic mutations of
//! `mutation(i)`: the first `FLUSHED` went to the SSTable (and to the log), the `UNFLUSHED` after
//! them only to the log, past the manifest's redo point.
//!
//! ```text
//! sstable/valid.sst                  the tablet's SSTable (512-byte blocks, zstd, filters)
//! sstable/truncated_mid_block.sst    cut in the middle of the middle data block
//! sstable/flip_data_block.sst        one bit flipped in the payload of data block 1
//! sstable/flip_index.sst             one bit flipped in the middle of the block index
//! sstable/flip_footer.sst            one bit flipped in the footer's index length field
//! commitlog/valid.log                the server's segment 1: FLUSHED + UNFLUSHED records
//! commitlog/truncated_mid_record.log cut in the middle of the last record (a torn tail)
//! commitlog/flip_mid_segment.log     one bit flipped in the payload of the middle record
//! manifest/valid.manifest            the tablet's manifest, naming valid.sst and logs/s1
//! manifest/truncated.manifest        cut in half
//! manifest/flip_body.manifest        one bit flipped in the middle of the body
//! parts/<fuzz target>/...            parts of the valid files on their own, each in the input
//!                                    shape of the fuzz target it is named after:
//!   sstable_block/valid.block        data block 0 of valid.sst
//!   sstable_block/zstd_160mib.block  found by fuzzing: a CRC-valid zstd block of one payload
//!                                    byte claiming 160 MiB raw (which used to be allocated)
//!   sstable_index/valid.bin          where the data ends (u64 LE), then the block index
//!   sstable_footer/valid.bin         where the footer starts (u64 LE), then the footer
//!   sstable_properties/valid.bin     the file size (u64 LE), then the properties section
//!   sstable_filter/{row,column}.bin  the two filter sections
//!   commitlog_payload/valid.mutation the payload of record 0 (an encoded row mutation)
//! ```
//!
//! The corrupt variants are derived from the valid files at positions computed from their
//! structure, so they stay meaningful when the valid files are regenerated. Regenerate (only when
//! a format or `mutation(i)` changes on purpose, then review the diff) with
//! `TABULA_REGENERATE_FIXTURES=1 cargo nextest run -p tabula-tabletserver corruption::`;
//! without the variable the committed bytes are used. The fuzz targets in `fuzz/` take these
//! directories as seed corpora.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tabula_common::{
    Clock, FileId, LocalDir, ManualClock, ServerId, StorageRoot, TabletId, Timestamp,
};
use tabula_tabletserver::engine::commitlog::{
    CommitLog, CommitLogError, CommitLogOptions, DamageKind, ReplayError, SegmentDamage, replay,
    scan_segment,
};
use tabula_tabletserver::engine::key::Entry;
use tabula_tabletserver::engine::manifest::{Manifest, ManifestError};
use tabula_tabletserver::engine::sstable::decode::{
    decode_block, decode_file, decode_filter, decode_footer, decode_index, decode_properties,
};
use tabula_tabletserver::engine::sstable::{SstableError, SstableOptions, SstableWriter};
use tabula_tabletserver::engine::{
    CellFilter, Engine, EngineError, EngineOptions, Mutation, Row, RowMutation, ScanOptions,
    Schema, Tablet,
};

const REGENERATE_ENV: &str = "TABULA_REGENERATE_FIXTURES";
const TABLET: TabletId = TabletId(7);
const SERVER: &str = "s1";
const LOG_DIR: &str = "logs/s1";
const SEGMENT_PATH: &str = "logs/s1/00000000000000000001.log";
const SSTABLE: FileId = FileId(0x0196_0000_0000_7ab1_1a5e_0000_0000_0001);
/// Mutations in the SSTable (and in the log, before the redo point).
const FLUSHED: usize = 40;
/// Mutations only in the log, after the redo point.
const UNFLUSHED: usize = 10;
const FOOTER_LEN: usize = 96;

// ---------------------------------------------------------------------------------------------
// The fixtures: what they hold, and how they are made.

/// Mutation `i` of the fixture tablet: rows `row000..row039` first, then later mutations that
/// overwrite and delete in rows the SSTable already holds. Values of row `b` are pseudo-random
/// so that some blocks do not compress.
fn mutation(i: usize) -> RowMutation {
    let row = if i < FLUSHED { i } else { (i * 7) % FLUSHED };
    let ts = 1_000 + 10 * i as i64;
    let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
    let mut mutations = Vec::new();
    if i % 11 == 3 {
        mutations.push(Mutation::DeleteFromRow);
    }
    if i % 7 == 2 {
        mutations.push(Mutation::DeleteFromFamily { family: b("meta") });
    }
    mutations.push(Mutation::SetCell {
        family: b("cf"),
        qualifier: b("a"),
        timestamp: ts,
        value: Bytes::from(format!("value-{i}")),
    });
    mutations.push(Mutation::SetCell {
        family: b("cf"),
        qualifier: b("b"),
        timestamp: ts + 1,
        value: noise(i, 24 + (i % 4) * 60),
    });
    if i.is_multiple_of(5) {
        mutations.push(Mutation::DeleteFromColumn {
            family: b("cf"),
            qualifier: b("a"),
            start: 0,
            end: ts,
        });
    }
    mutations.push(Mutation::SetCell {
        family: b("meta"),
        qualifier: b(""),
        timestamp: ts,
        value: Bytes::from(i.to_string()),
    });
    RowMutation {
        row: Bytes::from(format!("row{row:03}")),
        mutations,
    }
}

/// `len` deterministic pseudo-random bytes (xorshift64).
fn noise(seed: usize, len: usize) -> Bytes {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The first sequence number of each mutation, and one past the last.
fn first_seqs() -> Vec<u64> {
    let mut seqs = vec![1u64];
    for i in 0..FLUSHED + UNFLUSHED {
        let next = seqs[i] + mutation(i).mutations.len() as u64;
        seqs.push(next);
    }
    seqs
}

fn schema() -> Schema {
    Schema::with_families(["cf", "meta"])
}

fn sstable_options() -> SstableOptions {
    SstableOptions {
        block_size_bytes: 512,
        zstd_level: 3,
        bloom_bits_per_key: 10,
        ..SstableOptions::default()
    }
}

/// The SSTable's entries: the first `FLUSHED` mutations, sorted.
fn flushed_entries() -> Vec<Entry> {
    let seqs = first_seqs();
    let mut entries: Vec<Entry> = (0..FLUSHED)
        .flat_map(|i| mutation(i).to_entries(seqs[i]))
        .collect();
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    entries
}

fn expected_manifest() -> Manifest {
    let redo = first_seqs()[FLUSHED] - 1;
    Manifest {
        tablet: TABLET,
        start_row: Bytes::from_static(b"row"),
        end_row: Some(Bytes::from_static(b"rox")),
        redo_seq: redo,
        last_seq: redo,
        sstables: vec![SSTABLE],
        log_dirs: vec![LOG_DIR.into()],
        split_into: Vec::new(),
        // The fixture is a version-2 manifest, which has no mark.
        timestamp_mark: 0,
    }
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The bytes of fixture `name` (`"sstable/valid.sst"`). With `TABULA_REGENERATE_FIXTURES=1`,
/// every fixture is first rewritten by `regenerate_fixtures` (once per process).
fn fixture(name: &str) -> Bytes {
    static REGENERATED: OnceLock<()> = OnceLock::new();
    if std::env::var_os(REGENERATE_ENV).is_some() {
        REGENERATED.get_or_init(regenerate_fixtures);
    }
    let path = fixtures_dir().join(name);
    match std::fs::read(&path) {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => panic!("fixture {}: {e} (see the module doc)", path.display()),
    }
}

/// Writes every fixture from scratch with the engine's writers. Deterministic: on one build it
/// writes the same bytes every time (so concurrent test processes agree), and each file is
/// replaced by a rename, never seen half-written.
fn regenerate_fixtures() {
    let write = |name: &str, bytes: &[u8]| {
        let path = fixtures_dir().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    };

    // The SSTable, through the storage root like a flush writes it.
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn StorageRoot> = Arc::new(LocalDir::open(dir.path()).unwrap());
    let mut writer = SstableWriter::new(
        storage.create_append("table.sst").unwrap(),
        sstable_options(),
    );
    for e in &flushed_entries() {
        writer.add(e).unwrap();
    }
    writer.finish().unwrap();
    let sst = storage.read_all("table.sst").unwrap();
    let sst_parts = SstableParts::of(&sst);
    write("sstable/valid.sst", &sst);
    let mid = &sst_parts.blocks[sst_parts.blocks.len() / 2];
    write(
        "sstable/truncated_mid_block.sst",
        &sst[..mid.start + mid.len() / 2],
    );
    let b1 = &sst_parts.blocks[1];
    write(
        "sstable/flip_data_block.sst",
        &flipped(&sst, b1.start + 5 + (b1.len() - 9) / 2, 0x10),
    );
    let index = &sst_parts.index;
    write(
        "sstable/flip_index.sst",
        &flipped(&sst, index.start + index.len() / 2, 0x04),
    );
    write(
        "sstable/flip_footer.sst",
        &flipped(&sst, sst.len() - FOOTER_LEN + 48, 0x01),
    );
    let with_u64 = |n: usize, part: &std::ops::Range<usize>| {
        let mut out = (n as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&sst[part.clone()]);
        out
    };
    let [row_filter, column_filter] = &sst_parts.filters;
    let footer = sst.len() - FOOTER_LEN..sst.len();
    write(
        "parts/sstable_block/valid.block",
        &sst[sst_parts.blocks[0].clone()],
    );
    write(
        "parts/sstable_block/zstd_160mib.block",
        &zstd_160mib_block(),
    );
    write(
        "parts/sstable_index/valid.bin",
        &with_u64(row_filter.start, &sst_parts.index),
    );
    write(
        "parts/sstable_footer/valid.bin",
        &with_u64(footer.start, &footer),
    );
    write(
        "parts/sstable_properties/valid.bin",
        &with_u64(sst.len(), &sst_parts.properties),
    );
    write("parts/sstable_filter/row.bin", &sst[row_filter.clone()]);
    write(
        "parts/sstable_filter/column.bin",
        &sst[column_filter.clone()],
    );

    // The commit log: every mutation, as the tablet's writes append them.
    let log = CommitLog::open(
        storage.clone(),
        ServerId(SERVER.into()),
        CommitLogOptions::default(),
    )
    .unwrap();
    for (i, &seq) in first_seqs().iter().take(FLUSHED + UNFLUSHED).enumerate() {
        let m = mutation(i);
        let count = u32::try_from(m.mutations.len()).unwrap();
        log.append(TABLET, seq, count, &m.encode()).unwrap();
    }
    drop(log);
    let segment = storage.read_all(SEGMENT_PATH).unwrap();
    let records = record_spans(&segment);
    write("commitlog/valid.log", &segment);
    let last = records.last().unwrap();
    write(
        "commitlog/truncated_mid_record.log",
        &segment[..last.start + last.len() / 2],
    );
    let middle = &records[records.len() / 2];
    write(
        "commitlog/flip_mid_segment.log",
        &flipped(&segment, middle.start + 28 + (middle.len() - 28) / 2, 0x02),
    );
    write(
        "parts/commitlog_payload/valid.mutation",
        &mutation(0).encode(),
    );

    // The manifest.
    let manifest = expected_manifest().encode();
    write("manifest/valid.manifest", &manifest);
    write(
        "manifest/truncated.manifest",
        &manifest[..manifest.len() / 2],
    );
    let body_len = manifest.len() - 16;
    write(
        "manifest/flip_body.manifest",
        &flipped(&manifest, 12 + body_len / 2, 0x80),
    );
}

/// The `sstable_block` fuzz target's first finding, resealed: tag 1 (zstd), raw length
/// 160 MiB, a one-byte payload, a correct CRC32C.
fn zstd_160mib_block() -> Vec<u8> {
    let mut out = vec![1u8];
    out.extend_from_slice(&(160u32 << 20).to_le_bytes());
    out.push(0x82);
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn flipped(bytes: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[at] ^= mask;
    out
}

/// Where the parts of a valid SSTable lie, found through the public decoders.
struct SstableParts {
    blocks: Vec<std::ops::Range<usize>>,
    index: std::ops::Range<usize>,
    properties: std::ops::Range<usize>,
    filters: [std::ops::Range<usize>; 2],
}

impl SstableParts {
    fn of(file: &[u8]) -> SstableParts {
        let footer_at = file.len() - FOOTER_LEN;
        let layout = decode_footer(&file[footer_at..], footer_at as u64).unwrap();
        let us = |r: std::ops::Range<u64>| r.start as usize..r.end as usize;
        let index = us(layout.index);
        let blocks = decode_index(&file[index.clone()], layout.row_filter.start).unwrap();
        SstableParts {
            blocks: blocks.into_iter().map(us).collect(),
            index,
            properties: us(layout.properties),
            filters: [us(layout.row_filter), us(layout.column_filter)],
        }
    }
}

/// A part fixture's leading u64 (LE) and the bytes after it.
fn split_u64(bytes: &[u8]) -> (u64, Bytes) {
    let (n, rest) = bytes.split_first_chunk::<8>().unwrap();
    (u64::from_le_bytes(*n), Bytes::copy_from_slice(rest))
}

/// Each record's byte range in a valid segment.
fn record_spans(segment: &[u8]) -> Vec<std::ops::Range<usize>> {
    scan_segment(segment)
        .map(|r| {
            let r = r.unwrap();
            let start = r.offset as usize;
            start..start + 28 + r.payload.len()
        })
        .collect()
}

/// A segment's records (tablet, seq, entry count, payload) and the damage that ended the scan.
type Scan = (Vec<(TabletId, u64, u32, Bytes)>, Option<SegmentDamage>);

fn scan(segment: &[u8]) -> Scan {
    let mut records = Vec::new();
    let mut damage = None;
    for item in scan_segment(segment) {
        match item {
            Ok(r) => records.push((
                r.tablet,
                r.seq,
                r.entry_count,
                Bytes::copy_from_slice(r.payload),
            )),
            Err(d) => damage = Some(d),
        }
    }
    (records, damage)
}

/// Runs `f`, turning a panic into a test failure that names the input.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => panic!("decoder panicked on {what}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Valid fixtures decode to what was written.

#[test]
fn valid_fixtures_decode_with_known_counts() {
    let entries = flushed_entries();
    assert_eq!(
        entries.len(),
        138,
        "mutation(i) changed: regenerate the fixtures"
    );
    let sst = fixture("sstable/valid.sst");
    assert_eq!(decode_file(sst.clone()).unwrap(), 138);
    let parts = SstableParts::of(&sst);
    assert!(parts.blocks.len() >= 8, "{} blocks", parts.blocks.len());
    let per_block: Vec<usize> = parts
        .blocks
        .iter()
        .map(|b| decode_block(&sst[b.clone()]).unwrap())
        .collect();
    assert_eq!(per_block.iter().sum::<usize>(), entries.len());
    let meta = decode_properties(&sst[parts.properties.clone()], sst.len() as u64).unwrap();
    assert_eq!(meta.entry_count, entries.len() as u64);
    assert_eq!(meta.block_count, parts.blocks.len() as u64);
    assert_eq!(meta.first_key, entries[0].key);
    assert!(
        meta.stored_data_bytes < meta.raw_data_bytes,
        "zstd shrank some blocks"
    );
    let stored_raw = parts.blocks.iter().filter(|b| sst[b.start] == 0).count();
    assert!(stored_raw > 0, "some blocks are stored uncompressed");
    for f in &parts.filters {
        assert!(decode_filter(&sst[f.clone()]).unwrap() > 0);
    }
    let block = fixture("parts/sstable_block/valid.block");
    assert_eq!(block, sst.slice(parts.blocks[0].clone()));
    assert_eq!(decode_block(&block).unwrap(), per_block[0]);
    let (data_end, index) = split_u64(&fixture("parts/sstable_index/valid.bin"));
    assert_eq!(
        decode_index(&index, data_end).unwrap().len(),
        parts.blocks.len()
    );
    let (footer_at, footer) = split_u64(&fixture("parts/sstable_footer/valid.bin"));
    let layout = decode_footer(&footer, footer_at).unwrap();
    assert_eq!(layout.row_filter.start, data_end);
    let (size, properties) = split_u64(&fixture("parts/sstable_properties/valid.bin"));
    assert_eq!(decode_properties(&properties, size).unwrap(), meta);
    for name in ["row", "column"] {
        let filter = fixture(&format!("parts/sstable_filter/{name}.bin"));
        assert!(decode_filter(&filter).unwrap() > 0, "{name} filter");
    }

    let (records, damage) = scan(&fixture("commitlog/valid.log"));
    assert_eq!(damage, None);
    assert_eq!(records.len(), FLUSHED + UNFLUSHED);
    let seqs = first_seqs();
    for (i, (tablet, seq, count, payload)) in records.into_iter().enumerate() {
        let m = mutation(i);
        assert_eq!(
            (tablet, seq, count as usize),
            (TABLET, seqs[i], m.mutations.len())
        );
        assert_eq!(RowMutation::decode(payload).unwrap(), m, "record {i}");
    }
    let header = scan_segment(&fixture("commitlog/valid.log"))
        .header()
        .cloned()
        .unwrap();
    assert_eq!((header.server.0.as_str(), header.segment), (SERVER, 1));
    assert_eq!(
        RowMutation::decode(fixture("parts/commitlog_payload/valid.mutation")).unwrap(),
        mutation(0)
    );

    let manifest = Manifest::decode("valid.manifest", fixture("manifest/valid.manifest")).unwrap();
    assert_eq!(manifest, expected_manifest());
}

// ---------------------------------------------------------------------------------------------
// Corrupt fixtures fail with the right error.

#[test]
fn corrupt_sstables_fail_with_the_right_error() {
    let parts = SstableParts::of(&fixture("sstable/valid.sst"));
    let err = decode_file(fixture("sstable/truncated_mid_block.sst")).unwrap_err();
    assert!(matches!(err, SstableError::BadMagic { .. }), "{err}");

    let err = decode_file(fixture("sstable/flip_data_block.sst")).unwrap_err();
    let block1 = parts.blocks[1].start as u64;
    assert!(
        matches!(err, SstableError::ChecksumMismatch { what: "data block", offset, .. }
            if offset == block1),
        "{err}"
    );

    let err = decode_file(fixture("sstable/flip_index.sst")).unwrap_err();
    let index = parts.index.start as u64;
    assert!(
        matches!(err, SstableError::ChecksumMismatch { what: "index", offset, .. }
            if offset == index),
        "{err}"
    );

    let flip_footer = fixture("sstable/flip_footer.sst");
    let err = decode_file(flip_footer.clone()).unwrap_err();
    assert!(
        matches!(err, SstableError::ChecksumMismatch { what: "footer", .. }),
        "{err}"
    );
    let footer_at = flip_footer.len() - FOOTER_LEN;
    assert!(decode_footer(&flip_footer[footer_at..], footer_at as u64).is_err());

    // Refused before anything the size of the claimed raw length is allocated.
    let err = decode_block(&fixture("parts/sstable_block/zstd_160mib.block")).unwrap_err();
    assert!(
        matches!(&err, SstableError::Corrupt { reason, .. }
            if reason.contains("larger than the zstd frame can inflate to")),
        "{err}"
    );

    // The same damage, seen by the part decoders on their own.
    let flipped_block = fixture("sstable/flip_data_block.sst").slice(parts.blocks[1].clone());
    assert!(matches!(
        decode_block(&flipped_block),
        Err(SstableError::ChecksumMismatch { .. })
    ));
}

#[test]
fn corrupt_log_segments_are_a_torn_tail_or_corruption() {
    let valid = fixture("commitlog/valid.log");
    let spans = record_spans(&valid);
    let (all, _) = scan(&valid);

    // Cut in the middle of the last record: the records before it, then a torn tail.
    let (records, damage) = scan(&fixture("commitlog/truncated_mid_record.log"));
    assert_eq!(records, all[..all.len() - 1]);
    let damage = damage.unwrap();
    assert_eq!(damage.kind, DamageKind::TornTail, "{damage:?}");
    assert_eq!(damage.offset as usize, spans.last().unwrap().start);

    // A flip in the middle record: valid records follow it, so it is corruption, not a tear.
    let middle = spans.len() / 2;
    let (records, damage) = scan(&fixture("commitlog/flip_mid_segment.log"));
    assert_eq!(records, all[..middle]);
    let damage = damage.unwrap();
    assert_eq!(damage.kind, DamageKind::Corrupt, "{damage:?}");
    assert_eq!(damage.offset as usize, spans[middle].start);
}

/// Replays `segment` as the only (so the newest) segment of the fixture server's log.
fn replay_segment(segment: &[u8]) -> Result<(u64, u64), ReplayError<std::convert::Infallible>> {
    let dir = tempfile::tempdir().unwrap();
    let storage = LocalDir::open(dir.path()).unwrap();
    storage.write_atomic(SEGMENT_PATH, segment).unwrap();
    let redo = expected_manifest().redo_seq;
    let stats = replay(&storage, &[LOG_DIR.into()], TABLET, redo, None, |_| Ok(()))?;
    Ok((stats.records_replayed, stats.torn_tails))
}

#[test]
fn replay_tolerates_a_torn_newest_segment_and_refuses_corruption() {
    assert_eq!(
        replay_segment(&fixture("commitlog/valid.log")).unwrap(),
        (UNFLUSHED as u64, 0)
    );
    assert_eq!(
        replay_segment(&fixture("commitlog/truncated_mid_record.log")).unwrap(),
        (UNFLUSHED as u64 - 1, 1),
        "the torn last record is dropped"
    );
    let err = replay_segment(&fixture("commitlog/flip_mid_segment.log")).unwrap_err();
    assert!(
        matches!(
            &err,
            ReplayError::Log(CommitLogError::Corrupt { path, .. }) if path == SEGMENT_PATH
        ),
        "{err}"
    );
}

#[test]
fn corrupt_manifests_fail_with_the_right_error() {
    for (name, reason) in [
        (
            "manifest/truncated.manifest",
            "length does not match the file",
        ),
        ("manifest/flip_body.manifest", "checksum mismatch"),
    ] {
        match Manifest::decode(name, fixture(name)) {
            Err(ManifestError::Corrupt { path, reason: r }) => {
                assert_eq!((path.as_str(), r), (name, reason));
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Every truncation and bit flip of the valid fixtures is detected, and none panics.

#[test]
fn every_sstable_truncation_and_bit_flip_is_an_error() {
    let sst = fixture("sstable/valid.sst");
    for len in 0..sst.len() {
        let r = no_panic(&format!("sstable cut to {len}"), || {
            decode_file(sst.slice(..len))
        });
        assert!(r.is_err(), "sstable cut to {len} decodes");
    }
    // Every bit of every byte: each byte is under a checksum.
    for at in 0..sst.len() {
        for bit in 0..8 {
            let bad = Bytes::from(flipped(&sst, at, 1 << bit));
            let r = no_panic(&format!("sstable byte {at} bit {bit}"), || decode_file(bad));
            assert!(r.is_err(), "a flip of byte {at} bit {bit} goes unnoticed");
        }
    }
    let block = fixture("parts/sstable_block/valid.block");
    for at in 0..block.len() {
        for bit in 0..8 {
            let bad = flipped(&block, at, 1 << bit);
            let r = no_panic(&format!("block byte {at} bit {bit}"), || decode_block(&bad));
            assert!(r.is_err(), "block byte {at} bit {bit}");
        }
        assert!(decode_block(&block[..at]).is_err(), "block cut to {at}");
    }
}

#[test]
fn every_log_truncation_and_bit_flip_is_detected() {
    let valid = fixture("commitlog/valid.log");
    let spans = record_spans(&valid);
    let (all, _) = scan(&valid);
    for len in 0..valid.len() {
        let (records, damage) = no_panic(&format!("segment cut to {len}"), || scan(&valid[..len]));
        let complete = spans.iter().filter(|s| s.end <= len).count();
        assert_eq!(records, all[..complete], "cut to {len}");
        if len == spans[0].start || spans.iter().any(|s| s.end == len) {
            assert_eq!(damage, None, "cut to {len}, on a record boundary");
        } else {
            // A cut that leaves only zero bytes of the next record cannot be told from the
            // zeros a segment is filled with ahead of its records.
            let first = if len > spans[0].start {
                spans[0].start
            } else {
                0
            };
            let start = spans[..complete].last().map_or(first, |s| s.end);
            let zeros = len > start && valid[start..len].iter().all(|&b| b == 0);
            let kind = if zeros {
                DamageKind::ZeroTail
            } else {
                DamageKind::TornTail
            };
            assert_eq!(damage.unwrap().kind, kind, "cut to {len}");
        }
    }
    for (at, bit) in (0..valid.len()).flat_map(|at| (0..8).map(move |bit| (at, bit))) {
        let bad = flipped(&valid, at, 1 << bit);
        let (records, damage) = no_panic(&format!("segment byte {at} bit {bit}"), || scan(&bad));
        let damage =
            damage.unwrap_or_else(|| panic!("a flip of byte {at} bit {bit} goes unnoticed"));
        // The header, or the record holding the flipped byte, is where the scan stops.
        let hit = spans.iter().position(|s| s.contains(&at));
        let (offset, kind) = match hit {
            None => (0, DamageKind::Corrupt),
            Some(k) if k + 1 == spans.len() => (spans[k].start, DamageKind::TornTail),
            Some(k) => (spans[k].start, DamageKind::Corrupt),
        };
        assert_eq!(records, all[..hit.unwrap_or(0)], "flip at {at}");
        assert_eq!(
            (damage.offset as usize, damage.kind),
            (offset, kind),
            "flip at {at}"
        );
    }
}

#[test]
fn every_payload_and_manifest_truncation_and_bit_flip_is_an_error_or_harmless() {
    // A payload has no checksum of its own (its record's covers it): a cut is always an error,
    // a flip must only not panic.
    let (records, _) = scan(&fixture("commitlog/valid.log"));
    for (i, (_, _, _, payload)) in records.iter().enumerate() {
        for len in 0..payload.len() {
            let r = no_panic(&format!("payload {i} cut to {len}"), || {
                RowMutation::decode(payload.slice(..len))
            });
            assert!(r.is_err(), "payload {i} cut to {len}");
        }
        for at in 0..payload.len() {
            let bad = Bytes::from(flipped(payload, at, 1 << (at % 8)));
            let _ = no_panic(&format!("payload {i} byte {at}"), || {
                RowMutation::decode(bad)
            });
        }
    }
    let manifest = fixture("manifest/valid.manifest");
    for len in 0..manifest.len() {
        let r = no_panic(&format!("manifest cut to {len}"), || {
            Manifest::decode("m", manifest.slice(..len))
        });
        assert!(r.is_err(), "manifest cut to {len}");
    }
    for at in 0..manifest.len() {
        for bit in 0..8 {
            let bad = Bytes::from(flipped(&manifest, at, 1 << bit));
            let r = no_panic(&format!("manifest byte {at} bit {bit}"), || {
                Manifest::decode("m", bad)
            });
            assert!(r.is_err(), "manifest byte {at} bit {bit}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The engine: a tablet over the fixtures reads right, or fails; never wrong data.

/// A tablet server's storage root holding the fixture tablet, with `sstable` as its SSTable and
/// `segment` as its old log segment.
struct Server {
    _dir: tempfile::TempDir,
    engine: Arc<Engine>,
}

impl Server {
    fn empty() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn StorageRoot> = Arc::new(LocalDir::open(dir.path()).unwrap());
        Server::start(dir, storage)
    }

    fn with_fixtures(sstable: &str, segment: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn StorageRoot> = Arc::new(LocalDir::open(dir.path()).unwrap());
        storage
            .write_atomic(&Manifest::path(TABLET), &fixture("manifest/valid.manifest"))
            .unwrap();
        storage
            .write_atomic(&format!("sst/{SSTABLE}.sst"), &fixture(sstable))
            .unwrap();
        storage
            .write_atomic(SEGMENT_PATH, &fixture(segment))
            .unwrap();
        Server::start(dir, storage)
    }

    fn start(dir: tempfile::TempDir, storage: Arc<dyn StorageRoot>) -> Server {
        let log = CommitLog::open(
            storage.clone(),
            ServerId(SERVER.into()),
            CommitLogOptions::default(),
        )
        .unwrap();
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000_000)));
        let engine = Engine::new(storage, Arc::new(log), clock, EngineOptions::for_tests());
        Server { _dir: dir, engine }
    }
}

fn scan_rows(t: &Tablet) -> Vec<Result<Row, EngineError>> {
    t.scan(ScanOptions::default()).unwrap().collect()
}

/// What the fixture tablet holds: a fresh tablet given the same writes.
fn reference_rows() -> Vec<Row> {
    let server = Server::empty();
    let t = server
        .engine
        .create_tablet(
            TABLET,
            Bytes::from_static(b"row"),
            Some(Bytes::from_static(b"rox")),
            schema(),
        )
        .unwrap();
    for i in 0..FLUSHED + UNFLUSHED {
        t.apply(mutation(i)).unwrap();
    }
    let rows: Vec<Row> = scan_rows(&t).into_iter().map(Result::unwrap).collect();
    assert_eq!(rows.len(), FLUSHED);
    rows
}

#[test]
fn the_fixture_tablet_opens_and_reads_like_the_writes_it_holds() {
    let reference = reference_rows();
    let server = Server::with_fixtures("sstable/valid.sst", "commitlog/valid.log");
    let t = server.engine.open_tablet(TABLET, schema()).unwrap();
    let rows: Vec<Row> = scan_rows(&t).into_iter().map(Result::unwrap).collect();
    assert_eq!(rows, reference);
}

#[test]
fn a_tablet_over_a_corrupt_sstable_returns_errors_not_wrong_data() {
    let reference = reference_rows();

    // Damage the tail (footer, index) or the end of the file: the tablet does not open.
    for (name, check) in [
        (
            "sstable/truncated_mid_block.sst",
            (|e: &SstableError| matches!(e, SstableError::BadMagic { .. }))
                as fn(&SstableError) -> bool,
        ),
        ("sstable/flip_index.sst", |e| {
            matches!(e, SstableError::ChecksumMismatch { what: "index", .. })
        }),
        ("sstable/flip_footer.sst", |e| {
            matches!(e, SstableError::ChecksumMismatch { what: "footer", .. })
        }),
    ] {
        let server = Server::with_fixtures(name, "commitlog/valid.log");
        match server.engine.open_tablet(TABLET, schema()) {
            Err(EngineError::Sstable(e)) => assert!(check(&e), "{name}: {e}"),
            other => panic!("{name}: {:?}", other.map(|t| t.id())),
        }
    }

    // Damage a data block: the tablet opens (blocks are read lazily) and every read that needs
    // the block fails; every read that succeeds returns what was written.
    let server = Server::with_fixtures("sstable/flip_data_block.sst", "commitlog/valid.log");
    let t = server.engine.open_tablet(TABLET, schema()).unwrap();
    let scanned = scan_rows(&t);
    let errors = scanned.iter().filter(|r| r.is_err()).count();
    assert_eq!(errors, 1, "a scan ends at its first error");
    assert!(matches!(
        scanned.last(),
        Some(Err(EngineError::Sstable(SstableError::ChecksumMismatch {
            what: "data block",
            ..
        })))
    ));
    for (got, want) in scanned
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .zip(&reference)
    {
        assert_eq!(got, want);
    }
    let mut failed = 0;
    for want in &reference {
        match t.read_row(&want.key, &CellFilter::default()) {
            Ok(got) => assert_eq!(got.as_ref(), Some(want)),
            Err(EngineError::Sstable(SstableError::ChecksumMismatch { .. })) => failed += 1,
            Err(e) => panic!("row {:?}: {e}", want.key),
        }
    }
    assert!(failed > 0, "some rows live in the damaged block");
    assert!(failed < reference.len(), "most rows do not");

    // A corrupt log segment (valid records after the damage) stops recovery; a torn newest
    // segment does not.
    let server = Server::with_fixtures("sstable/valid.sst", "commitlog/flip_mid_segment.log");
    assert!(matches!(
        server.engine.open_tablet(TABLET, schema()),
        Err(EngineError::CommitLog(CommitLogError::Corrupt { .. }))
    ));
    let server = Server::with_fixtures("sstable/valid.sst", "commitlog/truncated_mid_record.log");
    assert!(server.engine.open_tablet(TABLET, schema()).is_ok());
}
