//! The gateway against a real in-process cluster (lock cell, two tablet servers, a master),
//! driven by Cloud Bigtable's own generated gRPC clients (`bigtable_client`,
//! `bigtable_table_admin_client`) exactly as an application would call them.
//!
//! Why not the `bigtable_rs` crate: its code names tonic's `ClientTlsConfig`, which exists
//! only with one of tonic's TLS features; turning that on for this crate's tests would build
//! tonic and every workspace crate above it a second time (plus ring, rustls and gcp_auth),
//! far more than the build budget allows. The official clients' strictness about the
//! `ReadRows` chunk protocol is reproduced by `merge_chunks` below, which refuses every
//! departure from the protocol those clients' row mergers refuse.
//!
//! Covered: create table with families, GC rules and initial splits (`ALREADY_EXISTS` on
//! re-create), get / list, mutate rows (per-entry statuses), read rows (ranges, keys,
//! limits, filters, reversed, large values split into chunks), check-and-mutate (with and
//! without a predicate), read-modify-write (append; 8-byte big-endian increment), sample row
//! keys (last key empty), drop row range (prefix and all), modify column families,
//! consistency tokens, a second gateway seeing the same data, delete table, and the error
//! codes clients rely on; and a table dropped and created again under its name while the
//! gateway holds the old one's handle.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use tabula_client::Client;
use tabula_master::Master;
use tabula_proto::google::bigtable::admin::v2 as admin;
use tabula_proto::google::bigtable::admin::v2::bigtable_table_admin_client::BigtableTableAdminClient;
use tabula_proto::google::bigtable::v2 as bt;
use tabula_proto::google::bigtable::v2::bigtable_client::BigtableClient;
use tabula_tests::master_helpers::{all_served, master_config};
use tabula_tests::{LockCell, eventually, start_tablet_server};
use tokio::sync::oneshot;
use tonic::Code;
use tonic::transport::Channel;

use bt::read_rows_response::cell_chunk::RowStatus;
use bt::row_filter::Filter as F;

use crate::support;

const INSTANCE: &str = "projects/any-project/instances/any-instance";
const TABLE: &str = "projects/any-project/instances/any-instance/tables/t";

/// One cell as the merged rows hold it: family, qualifier, timestamp, value, labels.
type MergedCell = (String, Vec<u8>, i64, Vec<u8>, Vec<String>);

/// Assembles `ReadRows` answers into rows, refusing every departure from the chunk protocol
/// (google/bigtable/v2/bigtable.proto; the official clients' row mergers refuse the same).
fn merge_chunks(
    responses: &[bt::ReadRowsResponse],
    reversed: bool,
) -> Vec<(Vec<u8>, Vec<MergedCell>)> {
    let mut rows: Vec<(Vec<u8>, Vec<MergedCell>)> = Vec::new();
    let mut open: Option<(Vec<u8>, Vec<MergedCell>)> = None;
    let mut family: Option<String> = None;
    let mut qualifier: Option<Vec<u8>> = None;
    let mut partial: Option<MergedCell> = None;
    let mut expected_size = 0i32;
    for chunk in responses.iter().flat_map(|r| r.chunks.iter()) {
        assert!(
            !matches!(chunk.row_status, Some(RowStatus::ResetRow(_))),
            "no resets expected"
        );
        if let Some(cell) = partial.as_mut() {
            // A continuation of a split value: only value bytes (and value_size).
            assert!(chunk.row_key.is_empty() && chunk.family_name.is_none());
            assert!(chunk.qualifier.is_none() && chunk.timestamp_micros == 0);
            assert!(chunk.labels.is_empty());
            cell.3.extend_from_slice(&chunk.value);
        } else {
            if open.is_none() {
                assert!(!chunk.row_key.is_empty(), "a new row must carry its key");
                assert!(
                    chunk.family_name.is_some() && chunk.qualifier.is_some(),
                    "a new row must name its family and qualifier"
                );
                if let Some((last, _)) = rows.last() {
                    if reversed {
                        assert!(chunk.row_key < *last, "rows out of order");
                    } else {
                        assert!(chunk.row_key > *last, "rows out of order");
                    }
                }
                open = Some((chunk.row_key.clone(), Vec::new()));
            } else {
                assert!(
                    chunk.row_key.is_empty(),
                    "only a row's first chunk has the key"
                );
            }
            if let Some(f) = &chunk.family_name {
                assert!(chunk.qualifier.is_some(), "a new family needs a qualifier");
                family = Some(f.clone());
            }
            if let Some(q) = &chunk.qualifier {
                qualifier = Some(q.clone());
            }
            partial = Some((
                family.clone().unwrap(),
                qualifier.clone().unwrap(),
                chunk.timestamp_micros,
                chunk.value.clone(),
                chunk.labels.clone(),
            ));
        }
        if chunk.value_size > 0 {
            assert!(chunk.row_status.is_none(), "a split value cannot end a row");
            assert!(expected_size == 0 || expected_size == chunk.value_size);
            expected_size = chunk.value_size;
            continue;
        }
        let cell = partial.take().unwrap();
        if expected_size > 0 {
            assert_eq!(cell.3.len(), usize::try_from(expected_size).unwrap());
            expected_size = 0;
        }
        open.as_mut().unwrap().1.push(cell);
        if let Some(RowStatus::CommitRow(true)) = chunk.row_status {
            let row = open.take().unwrap();
            assert!(!row.1.is_empty(), "no empty rows");
            rows.push(row);
            family = None;
            qualifier = None;
        }
    }
    assert!(
        open.is_none() && partial.is_none(),
        "the stream ended mid-row"
    );
    rows
}

async fn read(
    data: &mut BigtableClient<Channel>,
    request: bt::ReadRowsRequest,
) -> Result<Vec<(Vec<u8>, Vec<MergedCell>)>, tonic::Status> {
    let reversed = request.reversed;
    let mut stream = data.read_rows(request).await?.into_inner();
    let mut responses = Vec::new();
    while let Some(r) = stream.message().await? {
        responses.push(r);
    }
    Ok(merge_chunks(&responses, reversed))
}

fn read_request(rows: Option<bt::RowSet>, filter: Option<F>) -> bt::ReadRowsRequest {
    bt::ReadRowsRequest {
        table_name: TABLE.into(),
        rows,
        filter: filter.map(|f| bt::RowFilter { filter: Some(f) }),
        ..Default::default()
    }
}

fn range(start: &str, end: &str) -> bt::RowSet {
    bt::RowSet {
        row_keys: vec![],
        row_ranges: vec![bt::RowRange {
            start_key: Some(bt::row_range::StartKey::StartKeyClosed(start.into())),
            end_key: Some(bt::row_range::EndKey::EndKeyOpen(end.into())),
        }],
    }
}

fn key(i: usize) -> Vec<u8> {
    format!("row{i:04}").into_bytes()
}

fn keys(rows: &[(Vec<u8>, Vec<MergedCell>)]) -> Vec<Vec<u8>> {
    rows.iter().map(|r| r.0.clone()).collect()
}

fn set_cell(family: &str, qualifier: &str, ts: i64, value: &[u8]) -> bt::Mutation {
    bt::Mutation {
        mutation: Some(bt::mutation::Mutation::SetCell(bt::mutation::SetCell {
            family_name: family.into(),
            column_qualifier: qualifier.into(),
            timestamp_micros: ts,
            value: value.to_vec(),
        })),
    }
}

fn mutate(row: &[u8], mutations: Vec<bt::Mutation>) -> bt::MutateRowRequest {
    bt::MutateRowRequest {
        table_name: TABLE.into(),
        row_key: row.to_vec(),
        mutations,
        ..Default::default()
    }
}

fn gc(rule: admin::gc_rule::Rule) -> Option<admin::GcRule> {
    Some(admin::GcRule { rule: Some(rule) })
}

fn family(rule: Option<admin::GcRule>) -> admin::ColumnFamily {
    admin::ColumnFamily {
        gc_rule: rule,
        value_type: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cloud_bigtable_clients_work_through_the_gateway() {
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let _s1 = start_tablet_server(&cell, root.path()).await.unwrap();
    let _s2 = start_tablet_server(&cell, root.path()).await.unwrap();
    let master = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let native = Client::connect(&cell.addrs()).await.unwrap();
    all_served(native.channels(), &master, 2).await;
    let gateway = support::start_gateway(&cell.addrs()).await;
    let addr = gateway.addr.clone();
    let (mut data, mut tables) = support::clients(&addr).await;

    // --- Table admin: create with families, GC rules and splits. ---
    let max_versions = gc(admin::gc_rule::Rule::MaxNumVersions(2));
    let union = gc(admin::gc_rule::Rule::Union(admin::gc_rule::Union {
        rules: vec![
            admin::GcRule {
                rule: Some(admin::gc_rule::Rule::MaxAge(prost_types::Duration {
                    seconds: 432_000,
                    nanos: 0,
                })),
            },
            admin::GcRule {
                rule: Some(admin::gc_rule::Rule::MaxNumVersions(3)),
            },
        ],
    }));
    let create = admin::CreateTableRequest {
        parent: INSTANCE.into(),
        table_id: "t".into(),
        table: Some(admin::Table {
            column_families: HashMap::from([
                ("cf1".to_owned(), family(max_versions.clone())),
                ("cf2".to_owned(), family(union.clone())),
            ]),
            ..Default::default()
        }),
        initial_splits: ["row0100", "row0200"]
            .iter()
            .map(|k| admin::create_table_request::Split {
                key: k.as_bytes().to_vec(),
            })
            .collect(),
    };
    let created = tables
        .create_table(create.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.name, TABLE);
    assert_eq!(created.column_families["cf1"].gc_rule, max_versions);
    assert_eq!(created.column_families["cf2"].gc_rule, union);
    let again = tables.create_table(create).await.unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");
    all_served(native.channels(), &master, 5).await;
    let tablets = native.admin().list_tablets(Some("t")).await.unwrap();
    assert_eq!(tablets.len(), 3, "initial splits make three tablets");

    let got = tables
        .get_table(admin::GetTableRequest {
            name: TABLE.into(),
            view: admin::table::View::SchemaView as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.column_families.len(), 2);
    assert_eq!(
        got.granularity,
        admin::table::TimestampGranularity::Millis as i32
    );
    let listed = tables
        .list_tables(admin::ListTablesRequest {
            parent: INSTANCE.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed
            .tables
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        vec![TABLE]
    );
    assert!(
        listed.tables[0].column_families.is_empty(),
        "NAME_ONLY by default"
    );
    let missing = tables
        .get_table(admin::GetTableRequest {
            name: format!("{INSTANCE}/tables/nope"),
            view: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let bad_parent = tables
        .list_tables(admin::ListTablesRequest {
            parent: "projects/p".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_parent.code(), Code::InvalidArgument);

    // --- MutateRows: 300 rows across the three tablets, a status per entry. ---
    let entries: Vec<bt::mutate_rows_request::Entry> = (0..300)
        .map(|i| bt::mutate_rows_request::Entry {
            row_key: key(i),
            mutations: vec![
                set_cell("cf1", "q", 1_000, format!("v{i}").as_bytes()),
                set_cell("cf2", "x", -1, b"x"),
            ],
        })
        .collect();
    let mut answers = data
        .mutate_rows(bt::MutateRowsRequest {
            table_name: TABLE.into(),
            entries,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut statuses = Vec::new();
    while let Some(m) = answers.message().await.unwrap() {
        statuses.extend(m.entries);
    }
    assert_eq!(statuses.len(), 300);
    assert!(
        statuses
            .iter()
            .all(|e| e.status.as_ref().unwrap().code == 0)
    );

    // --- ReadRows: whole table, range with a limit, keys, reversed, filters. ---
    let all = read(&mut data, read_request(None, None)).await.unwrap();
    assert_eq!(keys(&all), (0..300).map(key).collect::<Vec<_>>());
    assert_eq!(all[7].1.len(), 2);
    assert_eq!(all[7].1[0].0, "cf1");
    assert_eq!(all[7].1[0].3, b"v7");
    assert_eq!(all[7].1[0].2, 1_000);
    assert!(
        all[7].1[1].2 > 0 && all[7].1[1].0 == "cf2",
        "server time assigned"
    );

    let mut limited = read_request(Some(range("row0050", "row0170")), None);
    limited.rows_limit = 60;
    let rows = read(&mut data, limited).await.unwrap();
    assert_eq!(keys(&rows), (50..110).map(key).collect::<Vec<_>>());

    let mut set = range("row0290", "row0295");
    set.row_keys = vec![key(5), key(150), key(292)];
    let rows = read(&mut data, read_request(Some(set), None))
        .await
        .unwrap();
    let want: Vec<_> = [5, 150, 290, 291, 292, 293, 294].map(key).to_vec();
    assert_eq!(keys(&rows), want);

    let mut reversed = read_request(Some(range("row0095", "row0205")), None);
    reversed.reversed = true;
    reversed.rows_limit = 20;
    let rows = read(&mut data, reversed).await.unwrap();
    assert_eq!(keys(&rows), (185..205).rev().map(key).collect::<Vec<_>>());

    let only_cf2 = read(
        &mut data,
        read_request(
            Some(range("row0010", "row0013")),
            Some(F::FamilyNameRegexFilter("cf2".into())),
        ),
    )
    .await
    .unwrap();
    assert_eq!(only_cf2.len(), 3);
    assert!(only_cf2.iter().all(|r| r.1.len() == 1 && r.1[0].0 == "cf2"));
    // A filter that leaves nothing: no empty rows come back.
    let none = read(
        &mut data,
        read_request(None, Some(F::ValueRegexFilter(b"no such value".to_vec()))),
    )
    .await
    .unwrap();
    assert!(none.is_empty());
    let bad_filter = read(
        &mut data,
        read_request(None, Some(F::RowKeyRegexFilter(b"(".to_vec()))),
    )
    .await
    .unwrap_err();
    assert_eq!(bad_filter.code(), Code::InvalidArgument, "{bad_filter:?}");

    // Versions: the newest first; a per-column limit keeps one.
    data.mutate_row(mutate(&key(1), vec![set_cell("cf1", "q", 2_000, b"newer")]))
        .await
        .unwrap();
    let row = read(
        &mut data,
        read_request(
            Some(bt::RowSet {
                row_keys: vec![key(1)],
                row_ranges: vec![],
            }),
            Some(F::FamilyNameRegexFilter("cf1".into())),
        ),
    )
    .await
    .unwrap();
    let versions: Vec<_> = row[0].1.iter().map(|c| (c.2, c.3.clone())).collect();
    assert_eq!(
        versions,
        vec![(2_000, b"newer".to_vec()), (1_000, b"v1".to_vec())]
    );
    let latest = read(
        &mut data,
        read_request(
            Some(bt::RowSet {
                row_keys: vec![key(1)],
                row_ranges: vec![],
            }),
            Some(F::CellsPerColumnLimitFilter(1)),
        ),
    )
    .await
    .unwrap();
    assert_eq!(latest[0].1.len(), 2);
    assert_eq!(latest[0].1[0].3, b"newer");

    // A value larger than one chunk comes back whole.
    let big: Vec<u8> = (0..3 * (1 << 20) + 17).map(|i| (i % 251) as u8).collect();
    data.mutate_row(mutate(b"big", vec![set_cell("cf1", "blob", 3_000, &big)]))
        .await
        .unwrap();
    let rows = read(
        &mut data,
        read_request(
            Some(bt::RowSet {
                row_keys: vec![b"big".to_vec()],
                row_ranges: vec![],
            }),
            None,
        ),
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1[0].3, big);

    // --- CheckAndMutateRow. ---
    let check = |row: Vec<u8>, predicate: Option<F>| bt::CheckAndMutateRowRequest {
        table_name: TABLE.into(),
        row_key: row,
        predicate_filter: predicate.map(|f| bt::RowFilter { filter: Some(f) }),
        true_mutations: vec![set_cell("cf1", "flag", 5_000, b"yes")],
        false_mutations: vec![set_cell("cf1", "flag", 5_000, b"no")],
        ..Default::default()
    };
    let matched = data
        .check_and_mutate_row(check(key(5), Some(F::ValueRegexFilter(b"v5".to_vec()))))
        .await
        .unwrap()
        .into_inner();
    assert!(matched.predicate_matched);
    let not_matched = data
        .check_and_mutate_row(check(key(6), Some(F::ValueRegexFilter(b"v5".to_vec()))))
        .await
        .unwrap()
        .into_inner();
    assert!(!not_matched.predicate_matched);
    let absent_row = data
        .check_and_mutate_row(check(b"fresh".to_vec(), None))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !absent_row.predicate_matched,
        "no predicate: the row has no cell"
    );
    let present_row = data
        .check_and_mutate_row(check(b"fresh".to_vec(), None))
        .await
        .unwrap()
        .into_inner();
    assert!(
        present_row.predicate_matched,
        "no predicate: now it has one"
    );
    let flags = read(
        &mut data,
        read_request(
            Some(bt::RowSet {
                row_keys: vec![key(5), key(6), b"fresh".to_vec()],
                row_ranges: vec![],
            }),
            Some(F::ColumnQualifierRegexFilter(b"flag".to_vec())),
        ),
    )
    .await
    .unwrap();
    let flags: Vec<_> = flags
        .iter()
        .map(|r| (r.0.clone(), r.1[0].3.clone()))
        .collect();
    assert_eq!(
        flags,
        vec![
            // "no" by the first call, then "yes" over it (same timestamp) by the second.
            (b"fresh".to_vec(), b"yes".to_vec()),
            (key(5), b"yes".to_vec()),
            (key(6), b"no".to_vec()),
        ]
    );

    // --- ReadModifyWriteRow: append and 8-byte big-endian increment. ---
    let rmw = |rules: Vec<bt::read_modify_write_rule::Rule>| bt::ReadModifyWriteRowRequest {
        table_name: TABLE.into(),
        row_key: b"counter".to_vec(),
        rules: rules
            .into_iter()
            .zip(["s", "n"])
            .map(|(rule, q)| bt::ReadModifyWriteRule {
                family_name: "cf1".into(),
                column_qualifier: q.into(),
                rule: Some(rule),
            })
            .collect(),
        ..Default::default()
    };
    use bt::read_modify_write_rule::Rule as R;
    for _ in 0..2 {
        data.read_modify_write_row(rmw(vec![
            R::AppendValue(b"ab".to_vec()),
            R::IncrementAmount(5),
        ]))
        .await
        .unwrap();
    }
    let answer = data
        .read_modify_write_row(rmw(vec![
            R::AppendValue(b"c".to_vec()),
            R::IncrementAmount(-3),
        ]))
        .await
        .unwrap()
        .into_inner()
        .row
        .unwrap();
    assert_eq!(answer.key, &b"counter"[..]);
    let columns: Vec<_> = answer.families[0]
        .columns
        .iter()
        .map(|c| {
            (
                c.qualifier.to_vec(),
                c.cells.len(),
                c.cells[0].value.to_vec(),
            )
        })
        .collect();
    assert_eq!(
        columns,
        vec![
            (b"n".to_vec(), 1, 7i64.to_be_bytes().to_vec()),
            (b"s".to_vec(), 1, b"ababc".to_vec()),
        ]
    );
    data.mutate_row(mutate(
        b"counter",
        vec![set_cell("cf1", "odd", 1_000, b"xyz")],
    ))
    .await
    .unwrap();
    let not_a_number = data
        .read_modify_write_row(bt::ReadModifyWriteRowRequest {
            table_name: TABLE.into(),
            row_key: b"counter".to_vec(),
            rules: vec![bt::ReadModifyWriteRule {
                family_name: "cf1".into(),
                column_qualifier: b"odd".to_vec(),
                rule: Some(R::IncrementAmount(1)),
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(not_a_number.code(), Code::FailedPrecondition);

    // --- SampleRowKeys: the last key is empty (the table's end). ---
    let mut samples = data
        .sample_row_keys(bt::SampleRowKeysRequest {
            table_name: TABLE.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut all_samples = Vec::new();
    while let Some(s) = samples.message().await.unwrap() {
        all_samples.push(s);
    }
    assert!(!all_samples.is_empty());
    assert!(all_samples.last().unwrap().row_key.is_empty());
    assert!(
        all_samples[..all_samples.len() - 1]
            .iter()
            .all(|s| !s.row_key.is_empty())
    );
    assert!(
        all_samples
            .windows(2)
            .all(|w| w[0].offset_bytes <= w[1].offset_bytes)
    );

    // --- Error codes clients rely on. ---
    let no_table = data
        .mutate_row(bt::MutateRowRequest {
            table_name: format!("{INSTANCE}/tables/nope"),
            ..mutate(b"r", vec![set_cell("cf1", "q", 0, b"v")])
        })
        .await
        .unwrap_err();
    assert_eq!(no_table.code(), Code::NotFound);
    let no_table = read(
        &mut data,
        bt::ReadRowsRequest {
            table_name: format!("{INSTANCE}/tables/nope"),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(no_table.code(), Code::NotFound);
    let invalid = [
        mutate(b"", vec![set_cell("cf1", "q", 0, b"v")]),
        mutate(b"r", vec![]),
        mutate(b"r", vec![set_cell("cf1", "q", 1_234, b"v")]),
        bt::MutateRowRequest {
            table_name: "tables/t".into(),
            ..mutate(b"r", vec![set_cell("cf1", "q", 0, b"v")])
        },
    ];
    for request in invalid {
        let e = data.mutate_row(request.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{request:?}: {e:?}");
    }
    let aggregate = data
        .mutate_row(mutate(
            b"r",
            vec![bt::Mutation {
                mutation: Some(bt::mutation::Mutation::AddToCell(
                    bt::mutation::AddToCell::default(),
                )),
            }],
        ))
        .await
        .unwrap_err();
    // An AddToCell naming no family (aggregates/AddToCell themselves: aggregates.rs).
    assert_eq!(aggregate.code(), Code::InvalidArgument, "{aggregate:?}");
    // A per-entry failure leaves the other entries applied.
    let mut answers = data
        .mutate_rows(bt::MutateRowsRequest {
            table_name: TABLE.into(),
            entries: vec![
                bt::mutate_rows_request::Entry {
                    row_key: b"ok".to_vec(),
                    mutations: vec![set_cell("cf1", "q", 0, b"v")],
                },
                bt::mutate_rows_request::Entry {
                    row_key: b"bad".to_vec(),
                    mutations: vec![set_cell("nofamily", "q", 0, b"v")],
                },
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut statuses = Vec::new();
    while let Some(m) = answers.message().await.unwrap() {
        statuses.extend(m.entries);
    }
    statuses.sort_by_key(|e| e.index);
    let codes: Vec<_> = statuses
        .iter()
        .map(|e| e.status.as_ref().unwrap().code)
        .collect();
    assert_eq!(codes, vec![0, Code::NotFound as i32]);
    data.ping_and_warm(bt::PingAndWarmRequest {
        name: INSTANCE.into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let backup = tables
        .create_backup(admin::CreateBackupRequest::default())
        .await
        .unwrap_err();
    assert_eq!(backup.code(), Code::Unimplemented);
    assert!(backup.message().contains("backups"), "{}", backup.message());

    // --- Another gateway (no state) sees the same rows. ---
    let gateway2 = support::start_gateway(&cell.addrs()).await;
    let addr2 = gateway2.addr.clone();
    let (mut data2, _) = support::clients(&addr2).await;
    let seen = read(
        &mut data2,
        read_request(Some(range("row0000", "row0300")), None),
    )
    .await
    .unwrap();
    assert_eq!(seen.len(), 300);

    // --- DropRowRange: a prefix, then everything. ---
    tables
        .drop_row_range(admin::DropRowRangeRequest {
            name: TABLE.into(),
            target: Some(admin::drop_row_range_request::Target::RowKeyPrefix(
                b"row00".to_vec(),
            )),
        })
        .await
        .unwrap();
    let left = read(&mut data, read_request(Some(range("row", "rox")), None))
        .await
        .unwrap();
    assert_eq!(keys(&left), (100..300).map(key).collect::<Vec<_>>());

    // --- ModifyColumnFamilies: create, update, drop. ---
    let modified = tables
        .modify_column_families(admin::ModifyColumnFamiliesRequest {
            name: TABLE.into(),
            modifications: vec![
                admin::modify_column_families_request::Modification {
                    id: "cf3".into(),
                    update_mask: None,
                    r#mod: Some(
                        admin::modify_column_families_request::modification::Mod::Create(family(
                            None,
                        )),
                    ),
                },
                admin::modify_column_families_request::Modification {
                    id: "cf1".into(),
                    update_mask: None,
                    r#mod: Some(
                        admin::modify_column_families_request::modification::Mod::Update(family(
                            gc(admin::gc_rule::Rule::MaxNumVersions(1)),
                        )),
                    ),
                },
                admin::modify_column_families_request::Modification {
                    id: "cf2".into(),
                    update_mask: None,
                    r#mod: Some(
                        admin::modify_column_families_request::modification::Mod::Drop(true),
                    ),
                },
            ],
            ignore_warnings: false,
        })
        .await
        .unwrap()
        .into_inner();
    let mut families: Vec<_> = modified.column_families.keys().cloned().collect();
    families.sort();
    assert_eq!(families, vec!["cf1", "cf3"]);
    assert_eq!(
        modified.column_families["cf1"].gc_rule,
        gc(admin::gc_rule::Rule::MaxNumVersions(1))
    );
    data.mutate_row(mutate(b"row0150", vec![set_cell("cf3", "new", 0, b"n")]))
        .await
        .unwrap();

    // --- Consistency: a token, at once consistent. ---
    let token = tables
        .generate_consistency_token(admin::GenerateConsistencyTokenRequest { name: TABLE.into() })
        .await
        .unwrap()
        .into_inner()
        .consistency_token;
    let consistent = tables
        .check_consistency(admin::CheckConsistencyRequest {
            name: TABLE.into(),
            consistency_token: token,
            mode: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(consistent.consistent);

    tables
        .drop_row_range(admin::DropRowRangeRequest {
            name: TABLE.into(),
            target: Some(admin::drop_row_range_request::Target::DeleteAllDataFromTable(true)),
        })
        .await
        .unwrap();
    let rows = read(&mut data, read_request(None, None)).await.unwrap();
    assert!(rows.is_empty(), "{:?}", keys(&rows));

    // --- DeleteTable: gone for admin and data alike. ---
    tables
        .delete_table(admin::DeleteTableRequest { name: TABLE.into() })
        .await
        .unwrap();
    eventually("the table is gone", Duration::from_secs(30), || {
        let mut tables = tables.clone();
        async move {
            let e = tables
                .get_table(admin::GetTableRequest {
                    name: TABLE.into(),
                    view: 0,
                })
                .await
                .err()?;
            (e.code() == Code::NotFound).then_some(())
        }
    })
    .await;
    let gone = data
        .mutate_row(mutate(b"r", vec![set_cell("cf1", "q", 0, b"v")]))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
}

/// Creates table `t` (family `cf1`) through the gateway; waits until `tablets` are served.
async fn create_t(
    tables: &mut BigtableTableAdminClient<Channel>,
    native: &Client,
    master: &Master,
    tablets: u32,
) {
    tables
        .create_table(admin::CreateTableRequest {
            parent: INSTANCE.into(),
            table_id: "t".into(),
            table: Some(admin::Table {
                column_families: HashMap::from([("cf1".to_owned(), family(None))]),
                ..Default::default()
            }),
            initial_splits: Vec::new(),
        })
        .await
        .unwrap();
    all_served(native.channels(), master, tablets).await;
}

async fn delete_t(tables: &mut BigtableTableAdminClient<Channel>) {
    tables
        .delete_table(admin::DeleteTableRequest { name: TABLE.into() })
        .await
        .unwrap();
}

/// The gateway keeps resolved tables (here for ten minutes, so every call below finds the
/// old table's handle cached): a table dropped and created again under the same name must be
/// the one every call reaches at once — never the dropped one, whose rows must not show, and
/// a write must not be lost or reported done for the dropped table.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_table_dropped_and_created_again_is_reached_at_once() {
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let _s1 = start_tablet_server(&cell, root.path()).await.unwrap();
    let master = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let native = Client::connect(&cell.addrs()).await.unwrap();
    all_served(native.channels(), &master, 2).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let gateway_client = Client::connect(&cell.addrs()).await.unwrap();
    let options = tabula_gateway::ServeOptions {
        table_ttl: Duration::from_secs(600),
    };
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        tabula_gateway::serve_with(listener, gateway_client, options, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let (mut data, mut tables) = support::clients(&addr).await;
    let put = |row: &[u8], value: &[u8]| mutate(row, vec![set_cell("cf1", "q", 1_000, value)]);

    // MutateRow: the old handle is cached by the first write.
    create_t(&mut tables, &native, &master, 3).await;
    data.mutate_row(put(b"old", b"1")).await.unwrap();
    delete_t(&mut tables).await;
    let gone = data.mutate_row(put(b"x", b"1")).await.unwrap_err();
    assert_eq!(
        gone.code(),
        Code::NotFound,
        "a write to a dropped table: {gone:?}"
    );
    create_t(&mut tables, &native, &master, 3).await;
    data.mutate_row(put(b"a", b"1")).await.unwrap(); // cached now
    delete_t(&mut tables).await;
    create_t(&mut tables, &native, &master, 3).await;
    data.mutate_row(put(b"b", b"2")).await.unwrap();
    let rows = read(&mut data, read_request(None, None)).await.unwrap();
    assert_eq!(
        keys(&rows),
        [b"b".to_vec()],
        "the new table holds only the new row"
    );

    // ReadRows on a stale handle: the new table's rows, not an error.
    delete_t(&mut tables).await;
    create_t(&mut tables, &native, &master, 3).await;
    let rows = read(&mut data, read_request(None, None)).await.unwrap();
    assert!(rows.is_empty(), "{:?}", keys(&rows));

    // MutateRows, CheckAndMutateRow, ReadModifyWriteRow and SampleRowKeys on stale handles.
    delete_t(&mut tables).await;
    create_t(&mut tables, &native, &master, 3).await;
    let mut answers = data
        .mutate_rows(bt::MutateRowsRequest {
            table_name: TABLE.into(),
            entries: vec![bt::mutate_rows_request::Entry {
                row_key: b"c".to_vec(),
                mutations: vec![set_cell("cf1", "q", 1_000, b"3")],
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    while let Some(m) = answers.message().await.unwrap() {
        for e in m.entries {
            assert_eq!(e.status.unwrap().code, 0, "entry {}", e.index);
        }
    }
    delete_t(&mut tables).await;
    create_t(&mut tables, &native, &master, 3).await;
    let checked = data
        .check_and_mutate_row(bt::CheckAndMutateRowRequest {
            table_name: TABLE.into(),
            row_key: b"c".to_vec(),
            true_mutations: vec![set_cell("cf1", "q", 1_000, b"true")],
            false_mutations: vec![set_cell("cf1", "q", 1_000, b"false")],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!checked.predicate_matched, "row c is in the dropped table");
    delete_t(&mut tables).await;
    create_t(&mut tables, &native, &master, 3).await;
    let appended = data
        .read_modify_write_row(bt::ReadModifyWriteRowRequest {
            table_name: TABLE.into(),
            row_key: b"c".to_vec(),
            rules: vec![bt::ReadModifyWriteRule {
                family_name: "cf1".into(),
                column_qualifier: b"q".to_vec(),
                rule: Some(bt::read_modify_write_rule::Rule::AppendValue(b"+".to_vec())),
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let cell = &appended.row.unwrap().families[0].columns[0].cells[0];
    assert_eq!(
        cell.value,
        &b"+"[..],
        "appended to an empty cell of the new table"
    );
    delete_t(&mut tables).await;
    create_t(&mut tables, &native, &master, 3).await;
    let mut samples = data
        .sample_row_keys(bt::SampleRowKeysRequest {
            table_name: TABLE.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(samples.message().await.unwrap().is_some());

    // Regexes over bytes (RE2, Latin-1): keys and values that are not UTF-8.
    data.mutate_row(put(b"k\xff\x00\n", b"\xfe\xc3"))
        .await
        .unwrap();
    data.mutate_row(put(b"k\xc3\xa9", b"{\"a\":1}"))
        .await
        .unwrap();
    let by_key = |pattern: &[u8]| read_request(None, Some(F::RowKeyRegexFilter(pattern.to_vec())));
    let by_value = |pattern: &[u8]| read_request(None, Some(F::ValueRegexFilter(pattern.to_vec())));
    let found = |rows: Vec<(Vec<u8>, Vec<MergedCell>)>| keys(&rows);
    let binary = vec![b"k\xff\x00\n".to_vec()];
    let accented = vec![b"k\xc3\xa9".to_vec()];
    for (request, want) in [
        (by_key(b"k\\C\\C\\C"), binary.clone()),
        (by_key(b"k\xff\\x00\n"), binary.clone()),
        (by_key(b"k.."), accented.clone()),
        (by_key(b"k..."), Vec::new()), // `.` skips the `\n`
        (by_key(b"(?s)k..."), binary.clone()),
        (by_value(b"\\xfe[\x80-\xff]"), binary.clone()),
        (by_value(b"{\"a\":1}"), accented.clone()),
    ] {
        let rows = read(&mut data, request.clone()).await.unwrap();
        assert_eq!(found(rows), want, "{:?}", request.filter);
    }
    for pattern in [&b"a**"[..], b"(", b"a{1001}", b"\\1"] {
        let e = read(&mut data, by_value(pattern)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{pattern:?}: {e:?}");
    }

    // Dropped for good: every call says NOT_FOUND, none succeeds on the cached handle.
    delete_t(&mut tables).await;
    assert_eq!(
        data.mutate_row(put(b"d", b"4")).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        read(&mut data, read_request(None, None))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}
