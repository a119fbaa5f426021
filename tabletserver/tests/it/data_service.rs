//! The data service (`TabletService`) in process over real gRPC: an engine over a temp storage
//! root, a registry with two tablets of table 1 (split at "m") and one of table 2, and a gate
//! whose safety the test controls. Covers the bad-input table (each case: the code, and that
//! nothing was applied), `WrongTablet` routing, `MutateRows` per-entry statuses, atomic
//! check-and-mutate and increments from 16 concurrent clients, append, scans during writes
//! seeing whole mutations only, `ReadRows` row sets, limits, reverse order, filters and
//! message splitting, `SampleRowKeys`, and the gate (closed: `Unavailable`; closed during a
//! write: `Unavailable` with the outcome unknown).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::Bytes;
use prost::Message as _;
use tabula_common::{
    Clock, Code, Epoch, Error, LocalDir, ManualClock, ServerId, StorageRoot, TableId, TabletId,
    Timestamp,
};
use tabula_proto::google::bigtable::v2 as pb;
use tabula_proto::google::bigtable::v2::mutation::{DeleteFromRow, Mutation as M, SetCell};
use tabula_proto::google::bigtable::v2::read_modify_write_rule::Rule;
use tabula_proto::google::bigtable::v2::row_filter::{Chain, Filter as F};
use tabula_proto::google::bigtable::v2::row_range::{EndKey, StartKey};
use tabula_proto::tabula::tablet::v1 as api;
use tabula_proto::tabula::tablet::v1::tablet_service_client::TabletServiceClient;
use tabula_tabletserver::engine::commitlog::{CommitLog, CommitLogOptions};
use tabula_tabletserver::engine::{Engine, EngineOptions, Schema};
use tabula_tabletserver::server::{DataOptions, Gate, Registry, ServedTablet, TabletDataService};
use tokio::sync::oneshot;
use tonic::transport::Channel;

// ---------------------------------------------------------------------------------------------
// The harness.

/// Table 1: tablet 10 `["", "m")` and tablet 11 `["m", end)`; table 2: tablet 20 (all rows).
/// Every tablet at epoch 1 with families `cf` and `cf2`.
struct Harness {
    _dir: tempfile::TempDir,
    registry: Arc<Registry>,
    /// Gate checks still allowed to pass; negative: every check passes.
    allowed: Arc<AtomicI64>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Harness {
    async fn start(options: DataOptions) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let storage: Arc<dyn StorageRoot> = Arc::new(LocalDir::open(dir.path()).unwrap());
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000_000)));
        let log = CommitLog::open(
            storage.clone(),
            ServerId("ts1".into()),
            CommitLogOptions::default(),
        )
        .unwrap();
        let engine = Engine::new(storage, Arc::new(log), clock, EngineOptions::for_tests());
        let registry = Arc::new(Registry::new());
        let tablets = [
            (1, 10, "", Some("m")),
            (1, 11, "m", None),
            (2, 20, "", None),
        ];
        for (table, id, start, end) in tablets {
            let tablet = engine
                .create_tablet(
                    TabletId(id),
                    b(start),
                    end.map(b),
                    Schema::with_families(["cf", "cf2"]),
                )
                .unwrap();
            registry
                .insert(Arc::new(ServedTablet::new(
                    TableId(table),
                    Epoch(1),
                    tablet,
                )))
                .unwrap();
        }
        let allowed = Arc::new(AtomicI64::new(-1));
        let a = allowed.clone();
        let gate = Arc::new(Gate::new(Arc::new(move || {
            let mut v = a.load(Ordering::SeqCst);
            loop {
                if v < 0 {
                    return true;
                }
                if v == 0 {
                    return false;
                }
                match a.compare_exchange(v, v - 1, Ordering::SeqCst, Ordering::SeqCst) {
                    Ok(_) => return true,
                    Err(now) => v = now,
                }
            }
        })));
        let service = TabletDataService::new(registry.clone(), gate, options).into_server();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                }),
        );
        Harness {
            _dir: dir,
            registry,
            allowed,
            addr,
            stop: Some(stop),
        }
    }

    async fn client(&self) -> TabletServiceClient<Channel> {
        TabletServiceClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
            .max_decoding_message_size(256 * 1024 * 1024)
            .max_encoding_message_size(256 * 1024 * 1024)
    }

    /// Every gate check passes (`true`) or fails (`false`) from now on.
    fn set_safe(&self, safe: bool) {
        self.allowed
            .store(if safe { -1 } else { 0 }, Ordering::SeqCst);
    }

    /// The next `n` gate checks pass, later ones fail.
    fn allow_checks(&self, n: i64) {
        self.allowed.store(n, Ordering::SeqCst);
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn test_options() -> DataOptions {
    DataOptions {
        max_message_bytes: 128 * 1024 * 1024,
        max_batch_entries: 100,
        read_batch_bytes: 64 * 1024,
        read_batch_rows: 10,
    }
}

// ---------------------------------------------------------------------------------------------
// Building requests.

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn tref(table: u64, tablet: u64, epoch: u64) -> Option<api::TabletRef> {
    Some(api::TabletRef {
        table_id: table,
        tablet_id: tablet,
        tablet_epoch: epoch,
    })
}

fn cell(family: &str, q: &str, value: impl Into<Vec<u8>>) -> pb::Mutation {
    pb::Mutation {
        mutation: Some(M::SetCell(SetCell {
            family_name: family.into(),
            column_qualifier: q.as_bytes().to_vec(),
            timestamp_micros: -1,
            value: value.into(),
        })),
    }
}

fn rf(f: F) -> pb::RowFilter {
    pb::RowFilter { filter: Some(f) }
}

fn keys(ks: &[&str]) -> Vec<Vec<u8>> {
    ks.iter().map(|k| k.as_bytes().to_vec()).collect()
}

fn range(start: &str, end: &str) -> pb::RowRange {
    pb::RowRange {
        start_key: Some(StartKey::StartKeyClosed(start.as_bytes().to_vec())),
        end_key: Some(EndKey::EndKeyOpen(end.as_bytes().to_vec())),
    }
}

fn code(s: &tonic::Status) -> Code {
    Error::from(s.clone()).code
}

fn is_wrong_tablet(s: &tonic::Status) -> bool {
    matches!(code(s), Code::WrongTablet { .. })
}

async fn mutate(
    c: &mut TabletServiceClient<Channel>,
    tablet: Option<api::TabletRef>,
    row: &str,
    mutations: Vec<pb::Mutation>,
) -> Result<(), tonic::Status> {
    c.mutate_row(api::MutateRowRequest {
        tablet,
        row_key: row.as_bytes().to_vec(),
        mutations,
    })
    .await
    .map(|_| ())
}

/// All rows of a `ReadRows` call, and how many messages carried them.
async fn read(
    c: &mut TabletServiceClient<Channel>,
    req: api::ReadRowsRequest,
) -> Result<(Vec<pb::Row>, Vec<api::ReadRowsResponse>), tonic::Status> {
    let mut stream = c.read_rows(req).await?.into_inner();
    let mut rows = Vec::new();
    let mut messages = Vec::new();
    while let Some(m) = stream.message().await? {
        rows.extend(
            m.encoded_rows()
                .unwrap()
                .into_iter()
                .map(|r| pb::Row::decode(r).unwrap()),
        );
        messages.push(m);
    }
    Ok((rows, messages))
}

fn read_req(tablet: Option<api::TabletRef>, rows: Option<pb::RowSet>) -> api::ReadRowsRequest {
    api::ReadRowsRequest {
        tablet,
        rows,
        filter: None,
        rows_limit: 0,
        reversed: false,
    }
}

/// The row, or `None` if it has no cell.
async fn read_row(
    c: &mut TabletServiceClient<Channel>,
    tablet: Option<api::TabletRef>,
    row: &str,
) -> Option<pb::Row> {
    let set = pb::RowSet {
        row_keys: keys(&[row]),
        row_ranges: vec![],
    };
    let (rows, _) = read(c, read_req(tablet, Some(set))).await.unwrap();
    assert!(rows.len() <= 1);
    rows.into_iter().next()
}

/// The latest value of `family:q` in `row`.
fn value(row: &pb::Row, family: &str, q: &str) -> Option<Vec<u8>> {
    row.families
        .iter()
        .filter(|f| f.name == family)
        .flat_map(|f| &f.columns)
        .find(|c| c.qualifier == q.as_bytes())
        .and_then(|c| c.cells.first())
        .map(|c| c.value.to_vec())
}

fn keys_of(rows: &[pb::Row]) -> Vec<String> {
    rows.iter()
        .map(|r| String::from_utf8(r.key.to_vec()).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Bad input.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_gets_the_right_code_and_nothing_is_applied() {
    let h = Harness::start(test_options()).await;
    let mut c = h.client().await;
    let t = || tref(1, 0, 0);
    let good = || cell("cf", "q", "v");

    // Empty and over-4-KiB row keys.
    let e = mutate(&mut c, t(), "", vec![good()]).await.unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("row_key"), "{e:?}");
    // (This harness serves table 1, METADATA's id, whose keys may be 64 bytes longer than a
    // user table's 4 KiB; the unit tests of the limits cover user tables.)
    let long = "k".repeat(4096 + 65);
    let e = mutate(&mut c, t(), &long, vec![good()]).await.unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e:?}");

    // An unknown family after a good mutation: NotFound, and the good one is not applied.
    let e = mutate(&mut c, t(), "a", vec![good(), cell("nope", "q", "v")])
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::NotFound, "{e:?}");
    assert!(e.message().contains("mutations[1]"), "{e:?}");
    assert!(read_row(&mut c, t(), "a").await.is_none());

    // Bad family syntax, oversize qualifier, oversize value.
    let e = mutate(&mut c, t(), "a", vec![good(), cell("bad name", "q", "v")])
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e:?}");
    let e = mutate(
        &mut c,
        t(),
        "a",
        vec![good(), cell("cf", &"q".repeat(16 * 1024 + 1), "v")],
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message()
            .contains("mutations[1].set_cell.column_qualifier"),
        "{e:?}"
    );
    let huge = vec![7u8; 100 * 1024 * 1024 + 1];
    let e = mutate(&mut c, t(), "a", vec![good(), cell("cf", "q", huge)])
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("mutations[1].set_cell.value"), "{e:?}");
    assert!(read_row(&mut c, t(), "a").await.is_none());

    // Malformed messages: a mutation with no oneof set, no mutations, no tablet ref.
    let e = mutate(
        &mut c,
        t(),
        "a",
        vec![good(), pb::Mutation { mutation: None }],
    )
    .await
    .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e:?}");
    let e = mutate(&mut c, t(), "a", vec![]).await.unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e:?}");
    let e = mutate(&mut c, None, "a", vec![good()]).await.unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("tablet"), "{e:?}");
    let e = c
        .read_modify_write_row(api::ReadModifyWriteRowRequest {
            tablet: t(),
            row_key: b"a".to_vec(),
            rules: vec![
                pb::ReadModifyWriteRule {
                    family_name: "cf".into(),
                    column_qualifier: b"n".to_vec(),
                    rule: Some(Rule::IncrementAmount(1)),
                },
                pb::ReadModifyWriteRule {
                    family_name: "cf".into(),
                    column_qualifier: b"n".to_vec(),
                    rule: None,
                },
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e:?}");
    assert!(read_row(&mut c, t(), "a").await.is_none());

    // An oversize batch: more entries than max_batch_entries.
    let entries = (0..101)
        .map(|i| api::mutate_rows_request::Entry {
            row_key: format!("b{i:03}").into_bytes(),
            mutations: vec![good()],
        })
        .collect();
    let e = c
        .mutate_rows(api::MutateRowsRequest {
            tablet: t(),
            entries,
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e:?}");
    assert!(read_row(&mut c, t(), "b000").await.is_none());

    // An inverted range.
    let set = pb::RowSet {
        row_keys: vec![],
        row_ranges: vec![range("c", "d"), range("f", "e")],
    };
    let e = read(&mut c, read_req(t(), Some(set))).await.unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("row_ranges[1]"), "{e:?}");

    // Bad regexes: in a read filter, and in a check-and-mutate predicate (nothing applied).
    let mut req = read_req(t(), None);
    req.filter = Some(rf(F::ValueRegexFilter(b"a(".to_vec())));
    let e = read(&mut c, req).await.unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e:?}");
    let e = c
        .check_and_mutate_row(api::CheckAndMutateRowRequest {
            tablet: t(),
            row_key: b"a".to_vec(),
            predicate_filter: Some(rf(F::FamilyNameRegexFilter("[".into()))),
            true_mutations: vec![good()],
            false_mutations: vec![good()],
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e:?}");
    // A bad false branch fails the request even when the true branch would be taken.
    let e = c
        .check_and_mutate_row(api::CheckAndMutateRowRequest {
            tablet: t(),
            row_key: b"a".to_vec(),
            predicate_filter: None,
            true_mutations: vec![good()],
            false_mutations: vec![cell("cf", "q", "v"), cell("", "q", "v")],
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("false_mutations[1]"), "{e:?}");
    assert!(read_row(&mut c, t(), "a").await.is_none());

    // Nothing at all reached the tablet.
    let (rows, _) = read(&mut c, read_req(tref(1, 10, 0), None)).await.unwrap();
    assert!(rows.is_empty(), "{rows:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_limit_messages_are_refused() {
    let h = Harness::start(DataOptions {
        max_message_bytes: 1024 * 1024,
        ..test_options()
    })
    .await;
    let mut c = h.client().await;
    let e = mutate(
        &mut c,
        tref(1, 0, 0),
        "a",
        vec![cell("cf", "q", vec![0u8; 2 << 20])],
    )
    .await
    .unwrap_err();
    // tonic refuses it before the service sees it: OUT_OF_RANGE, which the public error code
    // reads as InvalidArgument.
    assert_eq!(e.code(), tonic::Code::OutOfRange, "{e:?}");
    assert_eq!(code(&e), Code::InvalidArgument, "{e:?}");
    assert!(read_row(&mut c, tref(1, 0, 0), "a").await.is_none());
    // Just under the limit is fine.
    mutate(
        &mut c,
        tref(1, 0, 0),
        "a",
        vec![cell("cf", "q", vec![0u8; 1000 * 1000])],
    )
    .await
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Routing.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_outside_the_named_tablet_table_or_epoch_are_wrong_tablet() {
    let h = Harness::start(test_options()).await;
    let mut c = h.client().await;
    let good = || vec![cell("cf", "q", "v")];
    // The right tablet at the right epoch, and by table only.
    mutate(&mut c, tref(1, 10, 1), "a", good()).await.unwrap();
    mutate(&mut c, tref(1, 0, 0), "z", good()).await.unwrap();
    mutate(&mut c, tref(2, 20, 1), "a", good()).await.unwrap();
    // A row of the other tablet, a table not served, a stale epoch, a tablet not served.
    for (tablet, row) in [
        (tref(1, 10, 1), "z"),
        (tref(3, 0, 0), "a"),
        (tref(1, 10, 2), "a"),
        (tref(1, 99, 0), "a"),
        (tref(2, 10, 0), "a"),
    ] {
        let e = mutate(&mut c, tablet, row, good()).await.unwrap_err();
        assert!(is_wrong_tablet(&e), "{tablet:?} {row}: {e:?}");
        assert!(e.metadata().get("tabula-hint").is_some(), "{e:?}");
    }
    // A read crossing the split, and a whole-table read of a split table.
    let set = pb::RowSet {
        row_keys: vec![],
        row_ranges: vec![range("a", "z")],
    };
    let e = read(&mut c, read_req(tref(1, 0, 0), Some(set)))
        .await
        .unwrap_err();
    assert!(is_wrong_tablet(&e), "{e:?}");
    let e = read(&mut c, read_req(tref(1, 0, 0), None))
        .await
        .unwrap_err();
    assert!(is_wrong_tablet(&e), "{e:?}");
    // Keys on both sides of the split.
    let set = pb::RowSet {
        row_keys: keys(&["a", "z"]),
        row_ranges: vec![],
    };
    let e = read(&mut c, read_req(tref(1, 0, 0), Some(set)))
        .await
        .unwrap_err();
    assert!(is_wrong_tablet(&e), "{e:?}");
    // Other RPCs route the same way.
    let e = c
        .read_modify_write_row(api::ReadModifyWriteRowRequest {
            tablet: tref(1, 11, 0),
            row_key: b"a".to_vec(),
            rules: vec![pb::ReadModifyWriteRule {
                family_name: "cf".into(),
                column_qualifier: b"n".to_vec(),
                rule: Some(Rule::IncrementAmount(1)),
            }],
        })
        .await
        .unwrap_err();
    assert!(is_wrong_tablet(&e), "{e:?}");
    let e = c
        .sample_row_keys(api::SampleRowKeysRequest {
            tablet: tref(1, 10, 7),
        })
        .await
        .unwrap_err();
    assert!(is_wrong_tablet(&e), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// MutateRows.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mutate_rows_reports_a_status_per_entry() {
    let h = Harness::start(test_options()).await;
    let mut c = h.client().await;
    let entry = |row: &str, mutations| api::mutate_rows_request::Entry {
        row_key: row.as_bytes().to_vec(),
        mutations,
    };
    let good = |v: &str| vec![cell("cf", "q", v), cell("cf2", "q", v)];
    let resp = c
        .mutate_rows(api::MutateRowsRequest {
            tablet: tref(1, 10, 1),
            entries: vec![
                entry("a", good("1")),
                entry("", good("2")),
                entry("b", vec![cell("cf", "q", "3"), cell("nope", "q", "3")]),
                entry("z", good("4")),
                entry(
                    "c",
                    vec![cell("cf", "q", "5"), pb::Mutation { mutation: None }],
                ),
                entry("d", good("6")),
                entry("a", good("7")),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let got: Vec<(i64, i32, &str)> = resp
        .entries
        .iter()
        .map(|e| (e.index, e.code, e.tabula_code.as_str()))
        .collect();
    let invalid = tonic::Code::InvalidArgument as i32;
    let precondition = tonic::Code::FailedPrecondition as i32;
    assert_eq!(
        got,
        vec![
            (0, 0, ""),
            (1, invalid, "invalid-argument"),
            (2, tonic::Code::NotFound as i32, "not-found"),
            (3, precondition, "wrong-tablet"),
            (4, invalid, "invalid-argument"),
            (5, 0, ""),
            (6, 0, ""),
        ]
    );
    assert!(resp.entries[2].message.contains("entries[2].mutations[1]"));
    let t = || tref(1, 10, 0);
    // Entries of one row apply in request order: "a" ends with the later value.
    let a = read_row(&mut c, t(), "a").await.unwrap();
    assert_eq!(value(&a, "cf", "q").unwrap(), b"7");
    assert_eq!(value(&a, "cf2", "q").unwrap(), b"7");
    assert!(read_row(&mut c, t(), "d").await.is_some());
    assert!(read_row(&mut c, t(), "b").await.is_none());
    assert!(read_row(&mut c, t(), "c").await.is_none());
    assert!(read_row(&mut c, tref(1, 11, 0), "z").await.is_none());
    // A batch with every entry good, larger than the lane count.
    let entries = (0..100)
        .map(|i| entry(&format!("e{i:03}"), good("x")))
        .collect();
    let resp = c
        .mutate_rows(api::MutateRowsRequest {
            tablet: t(),
            entries,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.entries.len(), 100);
    assert!(
        resp.entries
            .iter()
            .enumerate()
            .all(|(i, e)| e.code == 0 && e.index == i as i64)
    );
    let set = pb::RowSet {
        row_keys: vec![],
        row_ranges: vec![range("e", "f")],
    };
    let (rows, _) = read(&mut c, read_req(t(), Some(set))).await.unwrap();
    assert_eq!(rows.len(), 100);
}

// ---------------------------------------------------------------------------------------------
// Single-row transactions.

fn increment(row: &str, q: &str, by: i64) -> api::ReadModifyWriteRowRequest {
    api::ReadModifyWriteRowRequest {
        tablet: tref(1, 0, 0),
        row_key: row.as_bytes().to_vec(),
        rules: vec![pb::ReadModifyWriteRule {
            family_name: "cf".into(),
            column_qualifier: q.as_bytes().to_vec(),
            rule: Some(Rule::IncrementAmount(by)),
        }],
    }
}

fn as_i64(v: &[u8]) -> i64 {
    i64::from_be_bytes(v.try_into().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_increments_lose_no_update() {
    const CLIENTS: usize = 16;
    const EACH: usize = 25;
    let h = Harness::start(test_options()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let mut c = h.client().await;
        tasks.spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..EACH {
                let row = c
                    .read_modify_write_row(increment("counter", "n", 1))
                    .await
                    .unwrap()
                    .into_inner()
                    .row
                    .unwrap();
                assert_eq!(row.key, &b"counter"[..]);
                assert_eq!(row.families.len(), 1);
                seen.push(as_i64(&value(&row, "cf", "n").unwrap()));
            }
            seen
        });
    }
    let mut seen: Vec<i64> = Vec::new();
    while let Some(r) = tasks.join_next().await {
        seen.extend(r.unwrap());
    }
    seen.sort_unstable();
    let total = (CLIENTS * EACH) as i64;
    // Every increment saw a different value: each was atomic.
    assert_eq!(seen, (1..=total).collect::<Vec<_>>());
    let mut c = h.client().await;
    let row = read_row(&mut c, tref(1, 0, 0), "counter").await.unwrap();
    assert_eq!(as_i64(&value(&row, "cf", "n").unwrap()), total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_check_and_mutate_counter_loses_no_update() {
    const CLIENTS: usize = 16;
    const EACH: usize = 6;
    let h = Harness::start(test_options()).await;
    let mut c = h.client().await;
    mutate(&mut c, tref(1, 0, 0), "cas", vec![cell("cf", "n", "0")])
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..CLIENTS {
        let mut c = h.client().await;
        tasks.spawn(async move {
            let mut done = 0;
            let mut attempts = 0;
            while done < EACH {
                attempts += 1;
                assert!(attempts < 100_000, "no progress");
                let row = read_row(&mut c, tref(1, 0, 0), "cas").await.unwrap();
                let current = String::from_utf8(value(&row, "cf", "n").unwrap()).unwrap();
                let next: u64 = current.parse::<u64>().unwrap() + 1;
                // Matches only if the latest value of cf:n is still `current`.
                let predicate = rf(F::Chain(Chain {
                    filters: vec![
                        rf(F::FamilyNameRegexFilter("cf".into())),
                        rf(F::ColumnQualifierRegexFilter(b"n".to_vec())),
                        rf(F::CellsPerColumnLimitFilter(1)),
                        rf(F::ValueRegexFilter(current.clone().into_bytes())),
                    ],
                }));
                let matched = c
                    .check_and_mutate_row(api::CheckAndMutateRowRequest {
                        tablet: tref(1, 0, 0),
                        row_key: b"cas".to_vec(),
                        predicate_filter: Some(predicate),
                        true_mutations: vec![
                            cell("cf", "n", next.to_string()),
                            cell("cf2", &format!("by{client}"), next.to_string()),
                        ],
                        false_mutations: vec![],
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .predicate_matched;
                if matched {
                    done += 1;
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let row = read_row(&mut c, tref(1, 0, 0), "cas").await.unwrap();
    let total = CLIENTS * EACH;
    assert_eq!(
        value(&row, "cf", "n").unwrap(),
        total.to_string().into_bytes()
    );
    // The false branch runs when the predicate fails.
    let matched = c
        .check_and_mutate_row(api::CheckAndMutateRowRequest {
            tablet: tref(1, 0, 0),
            row_key: b"cas".to_vec(),
            predicate_filter: Some(rf(F::ValueRegexFilter(b"never".to_vec()))),
            true_mutations: vec![cell("cf", "t", "yes")],
            false_mutations: vec![cell("cf", "f", "no")],
        })
        .await
        .unwrap()
        .into_inner()
        .predicate_matched;
    assert!(!matched);
    let row = read_row(&mut c, tref(1, 0, 0), "cas").await.unwrap();
    assert_eq!(value(&row, "cf", "f").unwrap(), b"no");
    assert_eq!(value(&row, "cf", "t"), None);
    // No predicate: whether the row has any cell.
    let matched = c
        .check_and_mutate_row(api::CheckAndMutateRowRequest {
            tablet: tref(1, 0, 0),
            row_key: b"empty".to_vec(),
            predicate_filter: None,
            true_mutations: vec![cell("cf", "t", "yes")],
            false_mutations: vec![cell("cf", "f", "no")],
        })
        .await
        .unwrap()
        .into_inner()
        .predicate_matched;
    assert!(!matched);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn append_and_increment_return_the_new_cells() {
    let h = Harness::start(test_options()).await;
    let mut c = h.client().await;
    let rule = |q: &str, r: Rule| pb::ReadModifyWriteRule {
        family_name: "cf".into(),
        column_qualifier: q.as_bytes().to_vec(),
        rule: Some(r),
    };
    let rmw = |rules| api::ReadModifyWriteRowRequest {
        tablet: tref(1, 0, 0),
        row_key: b"r".to_vec(),
        rules,
    };
    mutate(
        &mut c,
        tref(1, 0, 0),
        "r",
        vec![cell("cf", "other", "keep")],
    )
    .await
    .unwrap();
    let row = c
        .read_modify_write_row(rmw(vec![
            rule("s", Rule::AppendValue(b"ab".to_vec())),
            rule("s", Rule::AppendValue(b"c".to_vec())),
            rule("n", Rule::IncrementAmount(5)),
        ]))
        .await
        .unwrap()
        .into_inner()
        .row
        .unwrap();
    // Only the changed cells, one per column.
    let columns: Vec<&[u8]> = row.families[0]
        .columns
        .iter()
        .map(|c| c.qualifier.as_ref())
        .collect();
    assert_eq!(columns, vec![&b"n"[..], b"s"]);
    assert!(row.families[0].columns.iter().all(|c| c.cells.len() == 1));
    assert_eq!(value(&row, "cf", "s").unwrap(), b"abc");
    assert_eq!(as_i64(&value(&row, "cf", "n").unwrap()), 5);
    let row = c
        .read_modify_write_row(rmw(vec![
            rule("s", Rule::AppendValue(b"d".to_vec())),
            rule("n", Rule::IncrementAmount(-7)),
        ]))
        .await
        .unwrap()
        .into_inner()
        .row
        .unwrap();
    assert_eq!(value(&row, "cf", "s").unwrap(), b"abcd");
    assert_eq!(as_i64(&value(&row, "cf", "n").unwrap()), -2);
    // Incrementing a cell that is not 8 bytes fails the whole request; nothing changes.
    let e = c
        .read_modify_write_row(rmw(vec![
            rule("n", Rule::IncrementAmount(1)),
            rule("s", Rule::IncrementAmount(1)),
        ]))
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::FailedPrecondition, "{e:?}");
    let stored = read_row(&mut c, tref(1, 0, 0), "r").await.unwrap();
    assert_eq!(as_i64(&value(&stored, "cf", "n").unwrap()), -2);
    assert_eq!(value(&stored, "cf", "s").unwrap(), b"abcd");
    assert_eq!(value(&stored, "cf", "other").unwrap(), b"keep");
    // An unknown family is NotFound.
    let e = c
        .read_modify_write_row(api::ReadModifyWriteRowRequest {
            tablet: tref(1, 0, 0),
            row_key: b"r".to_vec(),
            rules: vec![pb::ReadModifyWriteRule {
                family_name: "nope".into(),
                column_qualifier: b"n".to_vec(),
                rule: Some(Rule::IncrementAmount(1)),
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::NotFound, "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// Reads.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scans_during_writes_see_whole_mutations_only() {
    const CELLS: usize = 8;
    const ROWS: usize = 20;
    const WRITERS: usize = 4;
    const WRITES_EACH: usize = 150;
    let h = Harness::start(test_options()).await;
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let mut c = h.client().await;
        writers.spawn(async move {
            for i in 0..WRITES_EACH {
                let v = format!("{w}-{i}-{}", "x".repeat(64));
                let mutations = (0..CELLS)
                    .map(|q| cell("cf", &format!("q{q}"), v.clone()))
                    .collect();
                let row = format!("r{:02}", (i * WRITERS + w) % ROWS);
                mutate(&mut c, tref(1, 0, 0), &row, mutations)
                    .await
                    .unwrap();
            }
        });
    }
    // Scan tablet 11 (rows "r..") until the writers are done and once more after, checking
    // every row.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let mut c = h.client().await;
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut scans = 0;
            let mut rows_checked = 0;
            loop {
                let last = stop.load(Ordering::SeqCst);
                let mut req = read_req(tref(1, 11, 0), None);
                req.filter = Some(rf(F::CellsPerColumnLimitFilter(1)));
                req.reversed = scans % 2 == 1;
                let (rows, _) = read(&mut c, req).await.unwrap();
                for row in &rows {
                    let cells: Vec<&bytes::Bytes> = row.families[0]
                        .columns
                        .iter()
                        .map(|col| &col.cells[0].value)
                        .collect();
                    assert_eq!(cells.len(), CELLS, "row {:?}", row.key);
                    assert!(
                        cells.iter().all(|v| *v == cells[0]),
                        "torn row {:?}",
                        row.key
                    );
                    rows_checked += 1;
                }
                scans += 1;
                if last {
                    return (scans, rows_checked, rows.len());
                }
            }
        })
    };
    while let Some(r) = writers.join_next().await {
        r.unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let (scans, rows_checked, last_rows) = reader.await.unwrap();
    assert!(
        scans >= 2 && rows_checked > 0,
        "{scans} scans, {rows_checked} rows"
    );
    assert_eq!(last_rows, ROWS);
}

/// Rows `a00..a49` with `cf:q = key` and `cf2:x = "2"`, in tablet 10.
async fn fifty_rows(c: &mut TabletServiceClient<Channel>) {
    let entries = (0..50)
        .map(|i| {
            let key = format!("a{i:02}");
            api::mutate_rows_request::Entry {
                row_key: key.clone().into_bytes(),
                mutations: vec![cell("cf", "q", key), cell("cf2", "x", "2")],
            }
        })
        .collect();
    let resp = c
        .mutate_rows(api::MutateRowsRequest {
            tablet: tref(1, 10, 0),
            entries,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.entries.iter().all(|e| e.code == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_rows_row_sets_limits_reverse_filters_and_batches() {
    let h = Harness::start(test_options()).await;
    let mut c = h.client().await;
    fifty_rows(&mut c).await;
    let t = || tref(1, 10, 1);
    let row_set = || {
        Some(pb::RowSet {
            row_keys: keys(&["a03", "a01", "a11", "a01", "zz-not-there"]),
            row_ranges: vec![range("a10", "a15"), range("a13", "a14")],
        })
    };
    // "zz-not-there" is past the split: read keys of this tablet only.
    let e = read(&mut c, read_req(t(), row_set())).await.unwrap_err();
    assert!(is_wrong_tablet(&e));
    let row_set = || {
        Some(pb::RowSet {
            row_keys: keys(&["a03", "a01", "a11", "a01", "b-not-there"]),
            row_ranges: vec![range("a10", "a15"), range("a13", "a14")],
        })
    };
    let (rows, _) = read(&mut c, read_req(t(), row_set())).await.unwrap();
    assert_eq!(
        keys_of(&rows),
        vec!["a01", "a03", "a10", "a11", "a12", "a13", "a14"]
    );
    assert_eq!(value(&rows[0], "cf", "q").unwrap(), b"a01");
    assert_eq!(value(&rows[0], "cf2", "x").unwrap(), b"2");

    // rows_limit.
    let mut req = read_req(t(), row_set());
    req.rows_limit = 3;
    let (rows, _) = read(&mut c, req).await.unwrap();
    assert_eq!(keys_of(&rows), vec!["a01", "a03", "a10"]);

    // Reversed, with a limit.
    let mut req = read_req(t(), row_set());
    req.reversed = true;
    req.rows_limit = 4;
    let (rows, _) = read(&mut c, req).await.unwrap();
    assert_eq!(keys_of(&rows), vec!["a14", "a13", "a12", "a11"]);

    // A filter: only cf2, and only rows whose key ends in 1 (rows_limit counts returned rows).
    let mut req = read_req(t(), None);
    req.filter = Some(rf(F::Chain(Chain {
        filters: vec![
            rf(F::RowKeyRegexFilter(b"a.1".to_vec())),
            rf(F::FamilyNameRegexFilter("cf2".into())),
        ],
    })));
    req.rows_limit = 4;
    let (rows, messages) = read(&mut c, req).await.unwrap();
    assert_eq!(keys_of(&rows), vec!["a01", "a11", "a21", "a31"]);
    assert!(
        rows.iter()
            .all(|r| r.families.len() == 1 && r.families[0].name == "cf2")
    );
    assert_eq!(messages.last().unwrap().last_scanned_row_key, b"a31");

    // A response split into several messages (10 rows each in the tests' options), every
    // message carrying the last row it scanned.
    let (rows, messages) = read(&mut c, read_req(t(), None)).await.unwrap();
    assert_eq!(rows.len(), 50);
    assert_eq!(messages.len(), 5);
    for m in &messages {
        let rows = m.encoded_rows().unwrap();
        assert_eq!(rows.len(), 10);
        let last = pb::Row::decode(rows.last().unwrap().clone()).unwrap();
        assert_eq!(m.last_scanned_row_key, last.key);
    }
    assert_eq!(
        keys_of(&rows),
        (0..50).map(|i| format!("a{i:02}")).collect::<Vec<_>>()
    );

    // Rows filtered out still advance last_scanned_row_key.
    let mut req = read_req(t(), None);
    req.filter = Some(rf(F::RowKeyRegexFilter(b"a0[0-2]".to_vec())));
    let (rows, messages) = read(&mut c, req).await.unwrap();
    assert_eq!(keys_of(&rows), vec!["a00", "a01", "a02"]);
    assert_eq!(messages.last().unwrap().last_scanned_row_key, b"a49");

    // An empty range reads nothing; a deleted row is gone.
    let set = pb::RowSet {
        row_keys: vec![],
        row_ranges: vec![range("a05", "a05")],
    };
    let (rows, _) = read(&mut c, read_req(t(), Some(set))).await.unwrap();
    assert!(rows.is_empty());
    mutate(
        &mut c,
        t(),
        "a00",
        vec![pb::Mutation {
            mutation: Some(M::DeleteFromRow(DeleteFromRow {})),
        }],
    )
    .await
    .unwrap();
    assert!(read_row(&mut c, t(), "a00").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_rows_split_messages_by_bytes() {
    let h = Harness::start(test_options()).await;
    let mut c = h.client().await;
    for i in 0..6 {
        mutate(
            &mut c,
            tref(1, 0, 0),
            &format!("big{i}"),
            vec![cell("cf", "q", vec![b'v'; 40 * 1024])],
        )
        .await
        .unwrap();
    }
    let set = pb::RowSet {
        row_keys: vec![],
        row_ranges: vec![range("big", "bih")],
    };
    let (rows, messages) = read(&mut c, read_req(tref(1, 0, 0), Some(set)))
        .await
        .unwrap();
    assert_eq!(rows.len(), 6);
    // 64 KiB per message: two 40 KiB rows each.
    assert_eq!(
        messages.len(),
        3,
        "{:?}",
        messages
            .iter()
            .map(|m| m.encoded_rows().unwrap().len())
            .collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sample_row_keys_are_ordered_and_end_at_the_tablet_end() {
    let h = Harness::start(test_options()).await;
    let mut c = h.client().await;
    for (tablet, prefix) in [(10, "k"), (11, "x")] {
        for batch in 0..4 {
            let entries = (batch * 100..(batch + 1) * 100)
                .map(|i| api::mutate_rows_request::Entry {
                    row_key: format!("{prefix}{i:04}").into_bytes(),
                    mutations: vec![cell("cf", "q", vec![b'v'; 500])],
                })
                .collect();
            c.mutate_rows(api::MutateRowsRequest {
                tablet: tref(1, tablet, 0),
                entries,
            })
            .await
            .unwrap();
        }
        h.registry
            .get(TabletId(tablet))
            .unwrap()
            .tablet
            .flush()
            .unwrap();
    }
    for (tablet, end, prefix) in [(10, &b"m"[..], "k"), (11, &b""[..], "x")] {
        let samples = c
            .sample_row_keys(api::SampleRowKeysRequest {
                tablet: tref(1, tablet, 1),
            })
            .await
            .unwrap()
            .into_inner()
            .samples;
        assert!(samples.len() > 10, "{}", samples.len());
        let (last, inner) = samples.split_last().unwrap();
        assert_eq!(last.row_key, end);
        // The whole tablet (compressed on disk) lies before the end.
        let size = h
            .registry
            .get(TabletId(tablet))
            .unwrap()
            .tablet
            .approximate_size_bytes();
        let end_offset = u64::try_from(last.offset_bytes).unwrap();
        assert!(
            end_offset > size / 2 && end_offset <= size,
            "{end_offset} of {size}"
        );
        assert!(inner.windows(2).all(|w| w[0].row_key < w[1].row_key));
        assert!(
            samples
                .windows(2)
                .all(|w| w[0].offset_bytes <= w[1].offset_bytes)
        );
        assert!(
            inner
                .iter()
                .all(|s| s.row_key.starts_with(prefix.as_bytes()))
        );
    }
    // An empty tablet has only its end.
    let samples = c
        .sample_row_keys(api::SampleRowKeysRequest {
            tablet: tref(2, 20, 0),
        })
        .await
        .unwrap()
        .into_inner()
        .samples;
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].row_key, b"");
    // Routing by table alone works for an unsplit table only.
    c.sample_row_keys(api::SampleRowKeysRequest {
        tablet: tref(2, 0, 0),
    })
    .await
    .unwrap();
    let e = c
        .sample_row_keys(api::SampleRowKeysRequest {
            tablet: tref(1, 0, 0),
        })
        .await
        .unwrap_err();
    assert!(is_wrong_tablet(&e), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// The gate.

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_closed_gate_makes_reads_and_writes_unavailable() {
    let h = Harness::start(test_options()).await;
    let mut c = h.client().await;
    let t = || tref(1, 0, 0);
    mutate(&mut c, t(), "a", vec![cell("cf", "q", "1")])
        .await
        .unwrap();
    h.set_safe(false);
    let e = mutate(&mut c, t(), "a", vec![cell("cf", "q", "2")])
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::Unavailable, "{e:?}");
    let set_keys = || {
        Some(pb::RowSet {
            row_keys: keys(&["a"]),
            row_ranges: vec![],
        })
    };
    let e = read(&mut c, read_req(t(), set_keys())).await.unwrap_err();
    assert_eq!(code(&e), Code::Unavailable, "{e:?}");
    let e = c
        .mutate_rows(api::MutateRowsRequest {
            tablet: t(),
            entries: vec![api::mutate_rows_request::Entry {
                row_key: b"a".to_vec(),
                mutations: vec![cell("cf", "q", "3")],
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::Unavailable, "{e:?}");
    let e = c
        .check_and_mutate_row(api::CheckAndMutateRowRequest {
            tablet: t(),
            row_key: b"a".to_vec(),
            predicate_filter: None,
            true_mutations: vec![cell("cf", "q", "4")],
            false_mutations: vec![],
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::Unavailable, "{e:?}");
    let e = c
        .read_modify_write_row(increment("a", "n", 1))
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::Unavailable, "{e:?}");
    let e = c
        .sample_row_keys(api::SampleRowKeysRequest {
            tablet: tref(1, 10, 0),
        })
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::Unavailable, "{e:?}");
    h.set_safe(true);
    let row = read_row(&mut c, t(), "a").await.unwrap();
    assert_eq!(value(&row, "cf", "q").unwrap(), b"1");
    assert_eq!(value(&row, "cf", "n"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_synced_after_the_gate_closed_is_not_acknowledged() {
    let h = Harness::start(test_options()).await;
    let mut c = h.client().await;
    let t = || tref(1, 0, 0);
    // The check before the write passes; the one after it fails.
    h.allow_checks(1);
    let e = mutate(&mut c, t(), "a", vec![cell("cf", "q", "1")])
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("unknown"), "{e:?}");
    h.allow_checks(1);
    let e = c
        .read_modify_write_row(increment("a", "n", 1))
        .await
        .unwrap_err();
    assert_eq!(code(&e), Code::Unavailable, "{e:?}");
    h.allow_checks(1);
    let resp = c
        .mutate_rows(api::MutateRowsRequest {
            tablet: t(),
            entries: vec![
                api::mutate_rows_request::Entry {
                    row_key: b"b".to_vec(),
                    mutations: vec![cell("cf", "q", "1")],
                },
                api::mutate_rows_request::Entry {
                    row_key: b"c".to_vec(),
                    mutations: vec![cell("nope", "q", "1")],
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.entries[0].code, tonic::Code::Unavailable as i32);
    assert!(resp.entries[0].message.contains("unknown"));
    assert_eq!(resp.entries[1].code, tonic::Code::NotFound as i32);
    // The outcome was unknown to the client; here the writes did reach the tablet.
    h.set_safe(true);
    let row = read_row(&mut c, t(), "a").await.unwrap();
    assert_eq!(value(&row, "cf", "q").unwrap(), b"1");
    assert_eq!(as_i64(&value(&row, "cf", "n").unwrap()), 1);
    assert!(read_row(&mut c, t(), "b").await.is_some());
}
