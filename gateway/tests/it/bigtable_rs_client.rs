//! The gateway driven by a real Cloud Bigtable client from crates.io, `bigtable_rs`, as an
//! application would use it against the emulator: `BigTableConnection::new_with_emulator`
//! is the path `BigTableConnection::new` takes when `BIGTABLE_EMULATOR_HOST` is set (the
//! test calls it directly, since setting a process's environment is `unsafe` in Rust 2024).
//! `bigtable_rs` merges `ReadRows` chunks with its own row merger, so every read below also
//! checks the gateway's chunk protocol against an independent implementation.
//!
//! Covered: `mutate_row` and `mutate_rows` writes (per-entry statuses), `read_rows` with a
//! row range, a filter and `rows_limit`, `check_and_mutate_row` (predicate matched and not),
//! `read_modify_write_row` (append and 8-byte big-endian increment), `sample_row_keys`, and
//! the `NOT_FOUND` a missing table gets. Values read back are asserted exactly.

#![allow(clippy::unwrap_used)]

use crate::support;

use std::time::Duration;

use bigtable_rs::bigtable::{BigTable, BigTableConnection, Error as BtError, RowCell};
use bigtable_rs::google::bigtable::v2 as bt;
use bt::row_filter::Filter as F;
use tabula_client::{Family, GcRule};

const PROJECT: &str = "some-project";
const INSTANCE: &str = "some-instance";
/// The client's own timeout for each call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A cell as the test compares it: family, qualifier, timestamp, value.
type Cell = (String, String, i64, Vec<u8>);

fn key(i: usize) -> Vec<u8> {
    format!("row{i:04}").into_bytes()
}

fn set_cell(family: &str, qualifier: &str, timestamp_micros: i64, value: &[u8]) -> bt::Mutation {
    bt::Mutation {
        mutation: Some(bt::mutation::Mutation::SetCell(bt::mutation::SetCell {
            family_name: family.into(),
            column_qualifier: qualifier.into(),
            timestamp_micros,
            value: value.to_vec(),
        })),
    }
}

fn filter(f: F) -> bt::RowFilter {
    bt::RowFilter { filter: Some(f) }
}

fn chain(filters: Vec<F>) -> bt::RowFilter {
    filter(F::Chain(bt::row_filter::Chain {
        filters: filters.into_iter().map(filter).collect(),
    }))
}

/// The cells of `row` as `(family, qualifier, timestamp, value)`.
fn cells(row: &[RowCell]) -> Vec<Cell> {
    row.iter()
        .map(|c| {
            (
                c.family_name.clone(),
                String::from_utf8(c.qualifier.clone()).unwrap(),
                c.timestamp_micros,
                c.value.clone(),
            )
        })
        .collect()
}

/// Reads one row whole through `bigtable_rs`.
async fn read_row(client: &mut BigTable, table: &str, row: &[u8]) -> Vec<RowCell> {
    let rows = client
        .read_rows(bt::ReadRowsRequest {
            table_name: client.get_full_table_name(table),
            rows: Some(bt::RowSet {
                row_keys: vec![row.to_vec()],
                row_ranges: vec![],
            }),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "row {row:?}");
    assert_eq!(rows[0].0, row);
    rows.into_iter().next().unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bigtable_rs_reads_and_writes_through_the_gateway() {
    let cluster = support::Cluster::start().await;
    let families = [
        Family::new("cf1").gc(GcRule::MaxVersions(3)),
        Family::new("cf2"),
    ];
    cluster
        .native
        .admin()
        .create_table("t", &families, &[b"row0100".as_slice()])
        .await
        .unwrap();
    // Root, METADATA and the table's two tablets.
    cluster.all_served(4).await;
    let gateway = cluster.gateway().await;

    let connection = BigTableConnection::new_with_emulator(
        &gateway.addr,
        PROJECT,
        INSTANCE,
        false,
        2,
        Some(CALL_TIMEOUT),
    )
    .unwrap();
    let mut client = connection.client();
    let table = client.get_full_table_name("t");
    assert_eq!(
        table,
        format!("projects/{PROJECT}/instances/{INSTANCE}/tables/t")
    );

    // --- mutate_rows: 200 rows over both tablets, a status per entry. ---
    let entries: Vec<bt::mutate_rows_request::Entry> = (0..200)
        .map(|i| bt::mutate_rows_request::Entry {
            row_key: key(i),
            mutations: vec![
                set_cell("cf1", "q", 1_000, format!("v{i}").as_bytes()),
                set_cell("cf2", "x", 1_000, b"x"),
            ],
            ..Default::default()
        })
        .collect();
    let mut answers = client
        .mutate_rows(bt::MutateRowsRequest {
            table_name: table.clone(),
            entries,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut statuses = Vec::new();
    while let Some(answer) = answers.message().await.unwrap() {
        statuses.extend(answer.entries);
    }
    assert_eq!(statuses.len(), 200);
    assert!(
        statuses
            .iter()
            .all(|e| e.status.as_ref().is_some_and(|s| s.code == 0)),
        "{statuses:?}"
    );

    // --- mutate_row: three versions of one cell, plus cells to append to and increment. ---
    client
        .mutate_row(bt::MutateRowRequest {
            table_name: table.clone(),
            row_key: b"special".to_vec(),
            mutations: vec![
                set_cell("cf1", "q", 1_000, b"old"),
                set_cell("cf1", "q", 2_000, b"new"),
                set_cell("cf1", "a", 1_000, b"x"),
                set_cell("cf2", "n", 1_000, &5i64.to_be_bytes()),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        cells(&read_row(&mut client, "t", b"special").await),
        [
            ("cf1".into(), "a".into(), 1_000, b"x".to_vec()),
            ("cf1".into(), "q".into(), 2_000, b"new".to_vec()),
            ("cf1".into(), "q".into(), 1_000, b"old".to_vec()),
            ("cf2".into(), "n".into(), 1_000, 5i64.to_be_bytes().to_vec()),
        ]
    );

    // --- read_rows: a range across the split, a filter, a row limit. ---
    let rows = client
        .read_rows(bt::ReadRowsRequest {
            table_name: table.clone(),
            rows: Some(bt::RowSet {
                row_keys: vec![],
                row_ranges: vec![bt::RowRange {
                    start_key: Some(bt::row_range::StartKey::StartKeyClosed(key(90))),
                    end_key: Some(bt::row_range::EndKey::EndKeyOpen(key(150))),
                }],
            }),
            filter: Some(chain(vec![
                F::FamilyNameRegexFilter("cf1".into()),
                F::CellsPerColumnLimitFilter(1),
            ])),
            rows_limit: 25,
            ..Default::default()
        })
        .await
        .unwrap();
    let got: Vec<(Vec<u8>, Vec<Cell>)> = rows.iter().map(|(k, c)| (k.clone(), cells(c))).collect();
    let want: Vec<(Vec<u8>, Vec<Cell>)> = (90..115)
        .map(|i| {
            (
                key(i),
                vec![(
                    "cf1".into(),
                    "q".into(),
                    1_000,
                    format!("v{i}").into_bytes(),
                )],
            )
        })
        .collect();
    assert_eq!(got, want);
    // A value filter leaving one row; no empty rows for the others.
    let rows = client
        .read_rows(bt::ReadRowsRequest {
            table_name: table.clone(),
            filter: Some(filter(F::ValueRegexFilter(b"v17\\d".to_vec()))),
            ..Default::default()
        })
        .await
        .unwrap();
    let keys: Vec<Vec<u8>> = rows.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, (170..180).map(key).collect::<Vec<_>>());

    // --- check_and_mutate_row: the predicate decides which mutations apply. ---
    let check = |predicate: &[u8], flag: &str| bt::CheckAndMutateRowRequest {
        table_name: table.clone(),
        row_key: b"special".to_vec(),
        predicate_filter: Some(chain(vec![
            F::ColumnQualifierRegexFilter(b"q".to_vec()),
            F::CellsPerColumnLimitFilter(1),
            F::ValueRegexFilter(predicate.to_vec()),
        ])),
        true_mutations: vec![set_cell("cf1", flag, 3_000, b"matched")],
        false_mutations: vec![set_cell("cf1", flag, 3_000, b"not matched")],
        ..Default::default()
    };
    let matched = client
        .check_and_mutate_row(check(b"new", "flag1"))
        .await
        .unwrap();
    assert!(matched.predicate_matched);
    let not_matched = client
        .check_and_mutate_row(check(b"old", "flag2"))
        .await
        .unwrap();
    assert!(
        !not_matched.predicate_matched,
        "only the newest q is checked"
    );
    let row = cells(&read_row(&mut client, "t", b"special").await);
    assert!(row.contains(&("cf1".into(), "flag1".into(), 3_000, b"matched".to_vec())));
    assert!(row.contains(&("cf1".into(), "flag2".into(), 3_000, b"not matched".to_vec())));

    // --- read_modify_write_row: append and increment, through the raw generated client. ---
    let rule = |qualifier: &str, rule| bt::ReadModifyWriteRule {
        family_name: if qualifier == "n" { "cf2" } else { "cf1" }.into(),
        column_qualifier: qualifier.into(),
        rule: Some(rule),
    };
    let answer = client
        .get_client()
        .read_modify_write_row(bt::ReadModifyWriteRowRequest {
            table_name: table.clone(),
            row_key: b"special".to_vec(),
            rules: vec![
                rule(
                    "a",
                    bt::read_modify_write_rule::Rule::AppendValue(b"yz".to_vec()),
                ),
                rule("n", bt::read_modify_write_rule::Rule::IncrementAmount(37)),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let row = answer.row.unwrap();
    assert_eq!(row.key, b"special");
    let mut changed: Vec<(String, Vec<u8>, Vec<u8>)> = row
        .families
        .iter()
        .flat_map(|f| {
            f.columns.iter().map(|c| {
                assert_eq!(c.cells.len(), 1, "one new cell per rule");
                assert!(c.cells[0].timestamp_micros >= 1_000);
                (
                    f.name.clone(),
                    c.qualifier.clone(),
                    c.cells[0].value.clone(),
                )
            })
        })
        .collect();
    changed.sort();
    assert_eq!(
        changed,
        [
            ("cf1".into(), b"a".to_vec(), b"xyz".to_vec()),
            ("cf2".into(), b"n".to_vec(), 42i64.to_be_bytes().to_vec()),
        ]
    );
    let newest = |row: &[RowCell], qualifier: &[u8]| {
        row.iter()
            .find(|c| c.qualifier == qualifier)
            .map(|c| c.value.clone())
    };
    let row = read_row(&mut client, "t", b"special").await;
    assert_eq!(newest(&row, b"a"), Some(b"xyz".to_vec()));
    assert_eq!(newest(&row, b"n"), Some(42i64.to_be_bytes().to_vec()));

    // --- sample_row_keys: sorted keys, growing offsets, the last key empty. ---
    let mut samples = client
        .sample_row_keys(bt::SampleRowKeysRequest {
            table_name: table.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut all = Vec::new();
    while let Some(sample) = samples.message().await.unwrap() {
        all.push(sample);
    }
    assert!(!all.is_empty());
    assert!(all.last().unwrap().row_key.is_empty(), "{all:?}");
    let keys: Vec<&Vec<u8>> = all[..all.len() - 1].iter().map(|s| &s.row_key).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{all:?}");
    assert!(
        all.windows(2)
            .all(|w| w[0].offset_bytes <= w[1].offset_bytes),
        "{all:?}"
    );

    // --- A missing table: NOT_FOUND, as the client reports it. ---
    let missing = client
        .read_rows(bt::ReadRowsRequest {
            table_name: client.get_full_table_name("no-such-table"),
            ..Default::default()
        })
        .await
        .unwrap_err();
    match missing {
        BtError::RpcError(status) => assert_eq!(status.code(), tonic::Code::NotFound),
        other => panic!("expected NOT_FOUND, got {other:?}"),
    }
}
