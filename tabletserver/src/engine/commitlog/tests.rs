//! Writer and reader together on a real directory (`LocalDir` in a temp dir).
//!
//! Damage is applied with `std::fs`, behind the storage root's back, as a crash or a bad disk
//! would.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use tabula_common::{AppendFile, LocalDir, ReadFile, ServerId, StorageRoot, TabletId};

use super::*;

fn root() -> (tempfile::TempDir, Arc<LocalDir>) {
    let dir = tempfile::tempdir().unwrap();
    let root = LocalDir::open(dir.path().join("root")).unwrap();
    (dir, Arc::new(root))
}

fn server(name: &str) -> ServerId {
    ServerId(name.into())
}

fn tiny(segment_bytes: u64) -> CommitLogOptions {
    CommitLogOptions {
        segment_bytes,
        ..CommitLogOptions::default()
    }
}

fn payload(tablet: u64, seq: u64) -> Vec<u8> {
    format!("t{tablet}-s{seq}-{}", "x".repeat((seq % 7) as usize)).into_bytes()
}

/// `(seq, entry_count, payload)` of replayed records.
type Records = Vec<(u64, u32, Vec<u8>)>;

/// Every record of `tablet` after `after` in `dirs`.
fn replayed(
    storage: &dyn StorageRoot,
    dirs: &[&str],
    tablet: u64,
    after: u64,
) -> Result<(Records, ReplayStats), ReplayError<io::Error>> {
    let dirs: Vec<String> = dirs.iter().map(|d| d.to_string()).collect();
    let mut out = Vec::new();
    let stats = replay(storage, &dirs, TabletId(tablet), after, None, |r| {
        assert_eq!(r.tablet, TabletId(tablet));
        out.push((r.seq, r.entry_count, r.payload.to_vec()));
        Ok::<(), io::Error>(())
    })?;
    Ok((out, stats))
}

fn file_path(root: &LocalDir, path: &str) -> std::path::PathBuf {
    root.path().join(path)
}

#[test]
fn the_log_is_shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<CommitLog>();
}

#[test]
fn group_commit_shares_syncs_and_every_record_replays() {
    let (_d, root) = root();
    let log = CommitLog::open(root.clone(), server("ts1"), CommitLogOptions::default()).unwrap();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let log = &log;
            s.spawn(move || {
                let mut last = None;
                for seq in 1..=200 {
                    let pos = log.append(TabletId(t), seq, 1, &payload(t, seq)).unwrap();
                    assert!(last < Some(pos), "positions grow per thread");
                    last = Some(pos);
                }
            });
        }
    });
    let stats = log.stats();
    assert_eq!(stats.records, 1600);
    assert!(
        stats.syncs < 1600,
        "group commit should share syncs: {stats:?}"
    );
    assert!(stats.batches < 1600, "{stats:?}");
    let dir = log.server_dir();
    let dirs = [dir.as_str()];
    for t in 0..8 {
        let (records, rs) = replayed(root.as_ref(), &dirs, t, 0).unwrap();
        let want: Vec<_> = (1..=200).map(|seq| (seq, 1, payload(t, seq))).collect();
        assert_eq!(records, want, "tablet {t}");
        assert_eq!((rs.records_read, rs.torn_tails), (1600, 0));
    }
}

#[test]
fn rolls_segments_and_replays_across_segments_and_server_dirs() {
    let (_d, root) = root();
    let a = CommitLog::open(root.clone(), server("a"), tiny(300)).unwrap();
    for seq in 1..=40 {
        a.append(TabletId(1), seq * 2 - 1, 2, &payload(1, seq))
            .unwrap();
        a.append(TabletId(2), seq, 1, &payload(2, seq)).unwrap();
    }
    assert!(a.segments().len() >= 5, "{:?}", a.segments());
    assert_eq!(a.stats().segments_created as usize, a.segments().len());
    for path in a.segments() {
        let size = root.size(&path).unwrap();
        assert!(size <= 300, "{path} has {size} bytes");
    }
    // Tablet 1 moves to server b, which continues its sequence.
    let b = CommitLog::open(root.clone(), server("b"), tiny(300)).unwrap();
    for seq in 81..=100 {
        b.append(TabletId(1), seq, 1, &payload(1, seq)).unwrap();
    }
    let (a_dir, b_dir) = (a.server_dir(), b.server_dir());
    let dirs = [a_dir.as_str(), b_dir.as_str()];
    let (records, stats) = replayed(root.as_ref(), &dirs, 1, 0).unwrap();
    let mut want: Vec<_> = (1..=40).map(|s| (s * 2 - 1, 2, payload(1, s))).collect();
    want.extend((81..=100).map(|s| (s, 1, payload(1, s))));
    assert_eq!(records, want);
    assert_eq!(stats.records_read, 100);
    assert_eq!(
        stats.segments as usize,
        a.segments().len() + b.segments().len()
    );
}

#[test]
fn after_seq_skips_records_at_or_below_the_redo_point() {
    let (_d, root) = root();
    let log = CommitLog::open(root.clone(), server("ts1"), tiny(500)).unwrap();
    let mut seq = 1;
    for i in 0..30u32 {
        let count = i % 3 + 1;
        log.append(TabletId(5), seq, count, &payload(5, seq))
            .unwrap();
        log.append(TabletId(6), seq, 1, b"other tablet").unwrap();
        seq += u64::from(count);
    }
    let dir = log.server_dir();
    let dirs = [dir.as_str()];
    let (all, _) = replayed(root.as_ref(), &dirs, 5, 0).unwrap();
    assert_eq!(all.len(), 30);
    // A redo point at the end of a mutation's range: everything after it, nothing before.
    let (first_seq, first_count, _) = all[10].clone();
    let redo = first_seq + u64::from(first_count) - 1;
    let (after, stats) = replayed(root.as_ref(), &dirs, 5, redo).unwrap();
    assert_eq!(after, all[11..].to_vec());
    assert_eq!((stats.records_read, stats.records_replayed), (60, 19));
    let (none, _) = replayed(root.as_ref(), &dirs, 5, u64::MAX).unwrap();
    assert!(none.is_empty());
}

#[test]
fn a_reopened_log_starts_a_new_segment_and_keeps_the_old_ones() {
    let (_d, root) = root();
    let first = {
        let log = CommitLog::open(root.clone(), server("ts1"), tiny(200)).unwrap();
        for seq in 1..=10 {
            log.append(TabletId(1), seq, 1, &payload(1, seq)).unwrap();
        }
        log.current_segment()
    };
    let log = CommitLog::open(root.clone(), server("ts1"), tiny(200)).unwrap();
    assert_eq!(log.current_segment(), first + 1);
    assert_eq!(log.segments().len() as u64, first + 1);
    assert_eq!(
        log.segment_tablet_max_seqs(first),
        None,
        "earlier runs are not tracked"
    );
    let pos = log.append(TabletId(1), 11, 1, &payload(1, 11)).unwrap();
    assert_eq!(pos.segment, first + 1);
    let (records, _) = replayed(root.as_ref(), &[&log.server_dir()], 1, 0).unwrap();
    assert_eq!(
        records.iter().map(|r| r.0).collect::<Vec<_>>(),
        (1..=11).collect::<Vec<_>>()
    );
}

/// Writes three segments for tablet 1 (seq 1..) and returns the log's dir, the records'
/// positions and their encoded lengths.
fn three_segments(root: &Arc<LocalDir>) -> (String, Vec<(LogPosition, u64)>) {
    let log = CommitLog::open(root.clone(), server("ts1"), tiny(250)).unwrap();
    let mut positions = Vec::new();
    for seq in 1..=12 {
        let p = payload(1, seq);
        let pos = log.append(TabletId(1), seq, 1, &p).unwrap();
        positions.push((pos, (28 + p.len()) as u64));
    }
    assert_eq!(log.current_segment(), 3, "{positions:?}");
    (log.server_dir(), positions)
}

#[test]
fn a_torn_tail_of_the_newest_segment_is_skipped_at_every_cut() {
    let (_d, root) = root();
    let (dir, positions) = three_segments(&root);
    let last = format!("{dir}/{:020}.log", 3);
    let full = root.read_all(&last).unwrap();
    let header_len = positions
        .iter()
        .find(|(p, _)| p.segment == 3)
        .map(|(p, _)| p.offset);
    for cut in 0..=full.len() as u64 {
        std::fs::write(file_path(&root, &last), &full[..cut as usize]).unwrap();
        let (records, stats) =
            replayed(root.as_ref(), &[&dir], 1, 0).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        let complete: Vec<u64> = positions
            .iter()
            .zip(1..)
            .filter(|((p, len), _)| p.segment < 3 || p.offset + len <= cut)
            .map(|(_, seq)| seq)
            .collect();
        assert_eq!(
            records.iter().map(|r| r.0).collect::<Vec<_>>(),
            complete,
            "cut {cut}"
        );
        let at_boundary = Some(cut) == header_len
            || positions
                .iter()
                .any(|(p, len)| p.segment == 3 && p.offset + len == cut);
        assert_eq!(stats.torn_tails, u64::from(!at_boundary), "cut {cut}");
    }
    // A zero-filled tail (what a crash leaves of a zeroed segment) ends it, not torn.
    let mut zeroed = full.to_vec();
    zeroed.extend_from_slice(&[0; 1000]);
    std::fs::write(file_path(&root, &last), &zeroed).unwrap();
    let (records, stats) = replayed(root.as_ref(), &[&dir], 1, 0).unwrap();
    assert_eq!(
        (records.len(), stats.torn_tails, stats.zero_tails),
        (12, 0, 1)
    );
}

#[test]
fn damage_in_an_older_segment_is_corrupt() {
    let (_d, root) = root();
    let (dir, positions) = three_segments(&root);
    let first = format!("{dir}/{:020}.log", 1);
    let full = root.read_all(&first).unwrap();
    // Middle of the segment.
    let mut b = full.to_vec();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    std::fs::write(file_path(&root, &first), &b).unwrap();
    let err = replayed(root.as_ref(), &[&dir], 1, 0).unwrap_err();
    match err {
        ReplayError::Log(CommitLogError::Corrupt { path, offset, .. }) => {
            assert_eq!(path, first);
            assert!(offset <= mid as u64, "{offset}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    // Its tail: it was rolled away from, so it was complete; a cut short tail is corruption.
    let (last_pos, _) = positions.iter().rfind(|(p, _)| p.segment == 1).unwrap();
    std::fs::write(
        file_path(&root, &first),
        &full[..last_pos.offset as usize + 5],
    )
    .unwrap();
    let err = replayed(root.as_ref(), &[&dir], 1, 0).unwrap_err();
    assert!(
        matches!(err, ReplayError::Log(CommitLogError::Corrupt { .. })),
        "{err}"
    );
    // Zeros after its last record: it was cut to its records when left, so that is damage too.
    let mut zeroed = full.to_vec();
    zeroed.extend_from_slice(&[0; 64]);
    std::fs::write(file_path(&root, &first), &zeroed).unwrap();
    let err = replayed(root.as_ref(), &[&dir], 1, 0).unwrap_err();
    assert!(
        matches!(err, ReplayError::Log(CommitLogError::Corrupt { .. })),
        "{err}"
    );
    // Damage in the newest segment followed by valid records is corruption as well.
    std::fs::write(file_path(&root, &first), &full).unwrap();
    let newest = format!("{dir}/{:020}.log", 3);
    let (p, _) = positions.iter().find(|(p, _)| p.segment == 3).unwrap();
    let mut b = root.read_all(&newest).unwrap().to_vec();
    b[p.offset as usize + 10] ^= 1;
    std::fs::write(file_path(&root, &newest), &b).unwrap();
    let err = replayed(root.as_ref(), &[&dir], 1, 0).unwrap_err();
    assert!(
        matches!(err, ReplayError::Log(CommitLogError::Corrupt { .. })),
        "{err}"
    );
}

#[test]
fn segments_are_zero_filled_ahead_and_cut_to_their_records_when_left() {
    let (_d, root) = root();
    let log = CommitLog::open(root.clone(), server("ts1"), tiny(4096)).unwrap();
    for seq in 1..=300 {
        log.append(TabletId(1), seq, 1, &payload(1, seq)).unwrap();
    }
    let segments = log.segments();
    assert!(segments.len() >= 2, "{segments:?}");
    let (live, left) = segments.split_last().unwrap();
    let live_len = root.read_all(live).unwrap().len();
    assert_eq!(
        live_len % 4096,
        0,
        "the live segment is whole steps of zeros"
    );
    for path in left {
        let bytes = root.read_all(path).unwrap();
        assert_ne!(
            bytes.last(),
            Some(&0),
            "{path} ends in its last record, not zeros"
        );
    }
    let dir = log.server_dir();
    let (records, stats) = replayed(root.as_ref(), &[&dir], 1, 0).unwrap();
    assert_eq!(records.len(), 300);
    assert_eq!((stats.torn_tails, stats.zero_tails), (0, 1), "the live one");

    // A crash now leaves the live segment as it is; the restarted server replays it all.
    let crashed = tempfile::tempdir().unwrap();
    let copy = Arc::new(LocalDir::open(crashed.path()).unwrap());
    for path in &segments {
        copy.write_atomic(path, &root.read_all(path).unwrap())
            .unwrap();
    }
    let restarted = CommitLog::open(copy.clone(), server("ts1"), tiny(4096)).unwrap();
    restarted.append(TabletId(1), 301, 1, b"after").unwrap();
    let (records, stats) = replayed(copy.as_ref(), &[&dir], 1, 0).unwrap();
    assert_eq!(records.len(), 301);
    assert_eq!((stats.torn_tails, stats.zero_tails), (0, 2));

    // Closing cuts the live segment's zeros too.
    drop(log);
    assert_ne!(root.read_all(live).unwrap().last(), Some(&0));
    let (_, stats) = replayed(root.as_ref(), &[&dir], 1, 0).unwrap();
    assert_eq!((stats.torn_tails, stats.zero_tails), (0, 0));
}

#[test]
fn the_torn_tail_of_a_crashed_run_is_tolerated_after_a_restart() {
    let (_d, root) = root();
    let (dir, positions) = three_segments(&root);
    // The run "crashed" halfway through its last record.
    let last = format!("{dir}/{:020}.log", 3);
    let full = root.read_all(&last).unwrap();
    let (p, len) = positions.last().unwrap();
    std::fs::write(
        file_path(&root, &last),
        &full[..(p.offset + len / 2) as usize],
    )
    .unwrap();
    // The restarted server rolls through a few segments of its own.
    let log = CommitLog::open(root.clone(), server("ts1"), tiny(250)).unwrap();
    for seq in 13..=20 {
        log.append(TabletId(1), seq, 1, &payload(1, seq)).unwrap();
    }
    assert_eq!(log.current_segment(), 5);
    let (records, stats) = replayed(root.as_ref(), &[&dir], 1, 0).unwrap();
    let seqs: Vec<u64> = records.iter().map(|r| r.0).collect();
    assert_eq!(seqs, (1..=11).chain(13..=20).collect::<Vec<_>>());
    assert_eq!(stats.torn_tails, 1);
    // A segment the restarted server rolled away from gets no such allowance.
    let rolled = format!("{dir}/{:020}.log", 4);
    let bytes = root.read_all(&rolled).unwrap();
    std::fs::write(file_path(&root, &rolled), &bytes[..bytes.len() - 3]).unwrap();
    let err = replayed(root.as_ref(), &[&dir], 1, 0).unwrap_err();
    assert!(
        matches!(err, ReplayError::Log(CommitLogError::Corrupt { .. })),
        "{err}"
    );
}

#[test]
fn a_segment_in_the_wrong_directory_is_corrupt() {
    let (_d, root) = root();
    let a = CommitLog::open(root.clone(), server("a"), tiny(1000)).unwrap();
    a.append(TabletId(1), 1, 1, b"x").unwrap();
    let seg = a.segments().pop().unwrap();
    let b_dir = server_log_dir(&server("b"));
    root.write_atomic(
        &format!("{b_dir}/{:020}.log", 1),
        &root.read_all(&seg).unwrap(),
    )
    .unwrap();
    let err = replayed(root.as_ref(), &[&b_dir], 1, 0).unwrap_err();
    assert!(
        matches!(
            err,
            ReplayError::Log(CommitLogError::Corrupt { offset: 0, .. })
        ),
        "{err}"
    );
}

#[test]
fn segment_gc_tracks_tablets_and_spares_the_current_segment() {
    let (_d, root) = root();
    let log = CommitLog::open(root.clone(), server("ts1"), tiny(200)).unwrap();
    for seq in 1..=20 {
        log.append(TabletId(1), seq, 1, &payload(1, seq)).unwrap();
        if seq % 5 == 0 {
            log.append(TabletId(2), seq, 3, b"t2").unwrap();
        }
    }
    let current = log.current_segment();
    assert!(current >= 4);
    let mut max1 = 0;
    for n in 1..=current {
        let seqs = log.segment_tablet_max_seqs(n).unwrap();
        let m = seqs[&TabletId(1)];
        assert!(m > max1, "segment {n}: {seqs:?}");
        max1 = m;
        if let Some(&m2) = seqs.get(&TabletId(2)) {
            assert_eq!(m2 % 5, 2, "tablet 2's max is seq + 2");
        }
    }
    assert_eq!(max1, 20);
    assert_eq!(log.delete_segments_before(3).unwrap(), 2);
    assert_eq!(log.segments().len() as u64, current - 2);
    assert!(!root.exists(&format!("logs/ts1/{:020}.log", 1)).unwrap());
    assert_eq!(log.segment_tablet_max_seqs(1), None);
    assert_eq!(
        log.delete_segments_before(u64::MAX).unwrap() as u64,
        current - 3
    );
    assert_eq!(log.segments(), vec![format!("logs/ts1/{current:020}.log")]);
    let (records, _) = replayed(root.as_ref(), &[&log.server_dir()], 1, 0).unwrap();
    assert_eq!(records.last().map(|r| r.0), Some(20));
    log.append(TabletId(1), 21, 1, b"after gc").unwrap();
}

#[test]
fn unsynced_mode_writes_without_fdatasync() {
    let (_d, root) = root();
    let opts = CommitLogOptions {
        sync: false,
        ..tiny(400)
    };
    let log = CommitLog::open(root.clone(), server("ts1"), opts).unwrap();
    for seq in 1..=50 {
        log.append(TabletId(1), seq, 1, &payload(1, seq)).unwrap();
    }
    let stats = log.stats();
    // One sync at open and one per segment left behind; none per append.
    assert_eq!(stats.syncs, stats.segments_created, "{stats:?}");
    log.sync_now().unwrap();
    assert_eq!(log.stats().syncs, stats.syncs + 1);
    let dir = log.server_dir();
    let dirs = [dir.as_str()];
    drop(log);
    assert_eq!(replayed(root.as_ref(), &dirs, 1, 0).unwrap().0.len(), 50);
}

#[test]
fn bad_records_are_refused_before_touching_the_log() {
    let (_d, root) = root();
    let log = CommitLog::open(root.clone(), server("ts1"), CommitLogOptions::default()).unwrap();
    let big = vec![0u8; MAX_PAYLOAD_BYTES + 1];
    assert!(matches!(
        log.append(TabletId(1), 1, 1, &big),
        Err(CommitLogError::RecordTooLarge { len, .. }) if len == MAX_PAYLOAD_BYTES + 1
    ));
    for (seq, count) in [(0, 1), (1, 0), (u64::MAX, 2)] {
        assert!(matches!(
            log.append(TabletId(1), seq, count, b"x"),
            Err(CommitLogError::InvalidRecord(_))
        ));
    }
    assert_eq!(log.stats().records, 0);
    for bad in ["", "..", "a/b"] {
        let err = CommitLog::open(root.clone(), server(bad), CommitLogOptions::default());
        assert!(
            matches!(err, Err(CommitLogError::InvalidServerId { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn an_apply_error_stops_replay() {
    let (_d, root) = root();
    let log = CommitLog::open(root.clone(), server("ts1"), CommitLogOptions::default()).unwrap();
    for seq in 1..=5 {
        log.append(TabletId(1), seq, 1, b"x").unwrap();
    }
    let mut seen = 0;
    let result = replay(
        root.as_ref(),
        &[log.server_dir()],
        TabletId(1),
        0,
        None,
        |r| {
            seen += 1;
            if r.seq == 3 {
                Err("memtable full")
            } else {
                Ok(())
            }
        },
    );
    assert!(matches!(result, Err(ReplayError::Apply("memtable full"))));
    assert_eq!(seen, 3);
}

/// A storage root whose append files fail `sync` once told to, counting sync calls.
#[derive(Debug)]
struct FailingSync {
    inner: LocalDir,
    fail: Arc<AtomicBool>,
    syncs: Arc<AtomicU64>,
}

struct FailingFile {
    inner: Box<dyn AppendFile>,
    fail: Arc<AtomicBool>,
    syncs: Arc<AtomicU64>,
}

impl AppendFile for FailingFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.append(data)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fdatasync failure"));
        }
        self.inner.sync()
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
}

impl StorageRoot for FailingSync {
    fn write_atomic(&self, path: &str, data: &[u8]) -> io::Result<()> {
        self.inner.write_atomic(path, data)
    }
    fn create_append(&self, path: &str) -> io::Result<Box<dyn AppendFile>> {
        Ok(Box::new(FailingFile {
            inner: self.inner.create_append(path)?,
            fail: self.fail.clone(),
            syncs: self.syncs.clone(),
        }))
    }
    fn open_read(&self, path: &str) -> io::Result<Arc<dyn ReadFile>> {
        self.inner.open_read(path)
    }
    fn read_all(&self, path: &str) -> io::Result<Bytes> {
        self.inner.read_all(path)
    }
    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn delete(&self, path: &str) -> io::Result<()> {
        self.inner.delete(path)
    }
    fn exists(&self, path: &str) -> io::Result<bool> {
        self.inner.exists(path)
    }
    fn size(&self, path: &str) -> io::Result<u64> {
        self.inner.size(path)
    }
}

#[test]
fn a_failed_fdatasync_stops_the_log_for_good() {
    let (_d, local) = root();
    let fail = Arc::new(AtomicBool::new(false));
    let syncs = Arc::new(AtomicU64::new(0));
    let storage = Arc::new(FailingSync {
        inner: (*local).clone(),
        fail: fail.clone(),
        syncs: syncs.clone(),
    });
    let log = CommitLog::open(storage, server("ts1"), CommitLogOptions::default()).unwrap();
    log.append(TabletId(1), 1, 1, b"durable").unwrap();
    fail.store(true, Ordering::SeqCst);
    // Concurrent appenders all fail: the one whose batch failed and those queued behind it.
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let log = &log;
            s.spawn(move || {
                let r = log.append(TabletId(t), 2, 1, b"lost");
                assert!(matches!(r, Err(CommitLogError::Stopped)), "{r:?}");
            });
        }
    });
    let after_failure = syncs.load(Ordering::SeqCst);
    fail.store(false, Ordering::SeqCst);
    assert!(matches!(
        log.append(TabletId(1), 3, 1, b"x"),
        Err(CommitLogError::Stopped)
    ));
    assert!(matches!(log.sync_now(), Err(CommitLogError::Stopped)));
    drop(log);
    assert_eq!(
        syncs.load(Ordering::SeqCst),
        after_failure,
        "an fsync is never retried"
    );
    let (records, _) = replayed(local.as_ref(), &["logs/ts1"], 1, 0).unwrap();
    assert_eq!(records[0], (1, 1, b"durable".to_vec()));
}

/// `enqueue` + `wait_durable` for one record.
async fn append_async(
    log: &Arc<CommitLog>,
    tablet: u64,
    seq: u64,
    data: &[u8],
) -> Result<LogPosition, CommitLogError> {
    let enqueued = log.enqueue(TabletId(tablet), seq, 1, data).await?;
    log.wait_durable(&enqueued).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_appends_share_syncs_mix_with_blocking_ones_and_every_record_replays() {
    let (_d, root) = root();
    let log = Arc::new(
        CommitLog::open(root.clone(), server("ts1"), CommitLogOptions::default()).unwrap(),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..8u64 {
        let log = log.clone();
        tasks.spawn(async move {
            let mut last = None;
            for seq in 1..=200 {
                let pos = append_async(&log, t, seq, &payload(t, seq)).await.unwrap();
                assert!(last < Some(pos), "positions grow per task");
                last = Some(pos);
            }
        });
    }
    // Blocking appenders at the same time, on their own threads: both kinds lead batches.
    let blocking = {
        let log = log.clone();
        tokio::task::spawn_blocking(move || {
            for seq in 1..=200 {
                log.append(TabletId(8), seq, 1, &payload(8, seq)).unwrap();
            }
        })
    };
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    blocking.await.unwrap();
    let stats = log.stats();
    assert_eq!(stats.records, 1800);
    assert!(stats.syncs < 1800, "async appends share syncs: {stats:?}");
    let dir = log.server_dir();
    for t in 0..9 {
        let (records, _) = replayed(root.as_ref(), &[dir.as_str()], t, 0).unwrap();
        let want: Vec<_> = (1..=200).map(|seq| (seq, 1, payload(t, seq))).collect();
        assert_eq!(records, want, "tablet {t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_appends_wait_for_room_when_the_pending_batch_is_full() {
    let (_d, root) = root();
    let opts = CommitLogOptions {
        max_pending_bytes: 256,
        ..CommitLogOptions::default()
    };
    let log = Arc::new(CommitLog::open(root.clone(), server("ts1"), opts).unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..16u64 {
        let log = log.clone();
        tasks.spawn(async move {
            for seq in 1..=50 {
                append_async(&log, t, seq, &[t as u8; 100]).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let stats = log.stats();
    assert_eq!(stats.records, 800);
    // At most two 100-byte records fit in a 256-byte batch (a third would exceed it).
    assert!(stats.batches >= 400, "batches stay bounded: {stats:?}");
    for t in 0..16 {
        let (records, _) = replayed(root.as_ref(), &[log.server_dir().as_str()], t, 0).unwrap();
        assert_eq!(records.len(), 50, "tablet {t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fdatasync_fails_every_async_waiter() {
    let (_d, local) = root();
    let fail = Arc::new(AtomicBool::new(false));
    let syncs = Arc::new(AtomicU64::new(0));
    let storage = Arc::new(FailingSync {
        inner: (*local).clone(),
        fail: fail.clone(),
        syncs: syncs.clone(),
    });
    let log =
        Arc::new(CommitLog::open(storage, server("ts1"), CommitLogOptions::default()).unwrap());
    append_async(&log, 1, 1, b"durable").await.unwrap();
    fail.store(true, Ordering::SeqCst);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..8u64 {
        let log = log.clone();
        tasks.spawn(async move { append_async(&log, t, 2, b"lost").await });
    }
    while let Some(done) = tasks.join_next().await {
        let r = done.unwrap();
        assert!(matches!(r, Err(CommitLogError::Stopped)), "{r:?}");
    }
    fail.store(false, Ordering::SeqCst);
    let r = append_async(&log, 1, 3, b"x").await;
    assert!(matches!(r, Err(CommitLogError::Stopped)), "{r:?}");
    // The failed batch's bytes may be on disk (only its sync failed: outcome unknown), but
    // nothing appended after the failure is.
    let (records, _) = replayed(local.as_ref(), &["logs/ts1"], 1, 0).unwrap();
    assert_eq!(records[0], (1, 1, b"durable".to_vec()));
    assert!(records.iter().all(|r| r.0 != 3), "{records:?}");
}

/// Every record of `tablet` after `after` in the running `log`'s own directory, read through
/// its `replay_view`.
fn replayed_live(
    root: &LocalDir,
    log: &CommitLog,
    tablet: u64,
    after: u64,
) -> Result<(Records, ReplayStats), ReplayError<io::Error>> {
    let view = log.replay_view(TabletId(tablet), after);
    let mut out = Vec::new();
    let stats = replay(
        root,
        &[log.server_dir()],
        TabletId(tablet),
        after,
        Some(&view),
        |r| {
            out.push((r.seq, r.entry_count, r.payload.to_vec()));
            Ok::<(), io::Error>(())
        },
    )?;
    Ok((out, stats))
}

#[test]
fn the_running_logs_view_reads_only_segments_holding_the_tablet() {
    let (_d, root) = root();
    let log = CommitLog::open(root.clone(), server("ts1"), tiny(400)).unwrap();
    for seq in 1..=10 {
        log.append(TabletId(1), seq, 1, &payload(1, seq)).unwrap();
    }
    for seq in 1..=30 {
        log.append(TabletId(2), seq, 1, &payload(2, seq)).unwrap();
    }
    let segments = log.segments().len() as u64;
    assert!(segments >= 4, "{:?}", log.segments());

    let (records, stats) = replayed_live(&root, &log, 1, 0).unwrap();
    assert_eq!(
        records,
        (1..=10).map(|s| (s, 1, payload(1, s))).collect::<Records>()
    );
    assert!(stats.segments < segments, "{stats:?}");
    assert_eq!(stats.segments + stats.skipped, segments, "{stats:?}");
    assert_eq!(
        records,
        replayed(root.as_ref(), &[&log.server_dir()], 1, 0)
            .unwrap()
            .0
    );

    // Past its redo point, or never written here (a split's fresh child): no segment is read.
    for (tablet, after) in [(1, 10), (3, 0)] {
        let (records, stats) = replayed_live(&root, &log, tablet, after).unwrap();
        assert!(records.is_empty());
        assert_eq!((stats.segments, stats.skipped), (0, segments), "{stats:?}");
    }
    // A redo point inside the tablet's records: the rest of them.
    let (records, _) = replayed_live(&root, &log, 1, 6).unwrap();
    assert_eq!(
        records,
        (7..=10).map(|s| (s, 1, payload(1, s))).collect::<Records>()
    );
}

#[test]
fn the_running_logs_view_keeps_segments_of_earlier_runs() {
    let (_d, root) = root();
    let first = CommitLog::open(root.clone(), server("ts1"), CommitLogOptions::default()).unwrap();
    for seq in 1..=5 {
        first.append(TabletId(1), seq, 1, &payload(1, seq)).unwrap();
    }
    drop(first);
    let log = CommitLog::open(root.clone(), server("ts1"), CommitLogOptions::default()).unwrap();
    log.append(TabletId(2), 1, 1, b"other").unwrap();
    let (records, stats) = replayed_live(&root, &log, 1, 0).unwrap();
    assert_eq!(records.len(), 5);
    assert_eq!((stats.segments, stats.skipped), (1, 1), "{stats:?}");
}

/// The race a split's children met: a tablet opening while other tablets append to the
/// segment it reads. Through the view, every replay gets exactly the tablet's records.
#[test]
fn replaying_the_running_log_while_it_is_appended_to_is_consistent() {
    /// Stops the writers however the test ends.
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    const MAX_RECORDS_PER_WRITER: u64 = 20_000;

    let (_d, root) = root();
    let opts = CommitLogOptions {
        sync: false,
        ..tiny(1 << 20)
    };
    let log = Arc::new(CommitLog::open(root.clone(), server("ts1"), opts).unwrap());
    for seq in 1..=20 {
        log.append(TabletId(1), seq, 1, &payload(1, seq)).unwrap();
    }
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let (log, stop) = (log.clone(), stop.0.clone());
            std::thread::spawn(move || {
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) && seq < MAX_RECORDS_PER_WRITER {
                    seq += 1;
                    log.append(TabletId(10 + w), seq, 1, &[7u8; 3000]).unwrap();
                }
            })
        })
        .collect();
    let want: Records = (1..=20).map(|s| (s, 1, payload(1, s))).collect();
    let mut rounds = 0;
    // Replays for as long as the writers write.
    while rounds < 100 || !writers.iter().all(|w| w.is_finished()) {
        let (records, _) = replayed_live(&root, &log, 1, 0).unwrap();
        assert_eq!(records, want);
        rounds += 1;
    }
    drop(stop);
    for w in writers {
        w.join().unwrap();
    }
    assert!(log.segments().len() >= 3, "{:?}", log.segments());
}
