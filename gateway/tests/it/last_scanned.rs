//! `ReadRows`' `last_scanned_row_key` through the gateway: rows the filter removed are never
//! sent, and a message with no chunks tells the client how far the scan got, after the rows
//! before it and beyond every row sent (forward and reversed); a read whose filter removes
//! nothing sends no such message. An in-process cluster behind a gateway on a free port
//! (`support`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use tabula_proto::google::bigtable::admin::v2 as admin;
use tabula_proto::google::bigtable::v2 as bt;
use tabula_proto::google::bigtable::v2::bigtable_client::BigtableClient;
use tonic::transport::Channel;

use crate::support;

const INSTANCE: &str = "projects/p/instances/i";
const TABLE: &str = "projects/p/instances/i/tables/scanned";
const ROWS: usize = 2_000;

fn key(i: usize) -> Vec<u8> {
    format!("row{i:04}").into_bytes()
}

/// One message of the answer: the row keys whose chunks it holds, and its
/// `last_scanned_row_key`.
#[derive(Debug)]
struct Message {
    rows: Vec<Vec<u8>>,
    chunks: usize,
    last_scanned: Vec<u8>,
}

/// Every message of a `ReadRows` of the whole table.
async fn read(
    data: &mut BigtableClient<Channel>,
    filter: Option<bt::RowFilter>,
    reversed: bool,
) -> Vec<Message> {
    let mut stream = data
        .read_rows(bt::ReadRowsRequest {
            table_name: TABLE.into(),
            filter,
            reversed,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(answer) = stream.message().await.unwrap() {
        out.push(Message {
            rows: answer
                .chunks
                .iter()
                .filter(|c| !c.row_key.is_empty())
                .map(|c| c.row_key.clone())
                .collect(),
            chunks: answer.chunks.len(),
            last_scanned: answer.last_scanned_row_key,
        });
    }
    out
}

/// Checks that progress messages hold no chunks and lie beyond every row before them in scan
/// direction, and that rows after them lie beyond them; the rows and the progress keys.
fn rows_and_progress(messages: &[Message], reversed: bool) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let beyond = |a: &Vec<u8>, b: &Vec<u8>| if reversed { a < b } else { a > b };
    let (mut rows, mut progress): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (Vec::new(), Vec::new());
    let mut last: Option<Vec<u8>> = None;
    for m in messages {
        if !m.last_scanned.is_empty() {
            assert_eq!(m.chunks, 0, "progress comes in a message of its own: {m:?}");
            if let Some(l) = &last {
                assert!(beyond(&m.last_scanned, l), "{m:?} after {l:?}");
            }
            progress.push(m.last_scanned.clone());
            last = Some(m.last_scanned.clone());
        }
        for row in &m.rows {
            if let Some(l) = &last {
                assert!(beyond(row, l), "row {row:?} after {l:?}");
            }
            rows.push(row.clone());
            last = Some(row.clone());
        }
    }
    (rows, progress)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rows_the_filter_removed_are_reported_as_scanned() {
    let cluster = support::Cluster::start().await;
    let gateway = cluster.gateway().await;
    let (mut data, mut tables) = support::clients(&gateway.addr).await;
    tables
        .create_table(admin::CreateTableRequest {
            parent: INSTANCE.into(),
            table_id: "scanned".into(),
            table: Some(admin::Table {
                column_families: HashMap::from([("f".to_owned(), admin::ColumnFamily::default())]),
                ..Default::default()
            }),
            initial_splits: vec![],
        })
        .await
        .unwrap();
    cluster.all_served(3).await;

    for batch in (0..ROWS).collect::<Vec<_>>().chunks(500) {
        let entries = batch
            .iter()
            .map(|i| bt::mutate_rows_request::Entry {
                row_key: key(*i),
                mutations: vec![bt::Mutation {
                    mutation: Some(bt::mutation::Mutation::SetCell(bt::mutation::SetCell {
                        family_name: "f".into(),
                        column_qualifier: b"q".to_vec(),
                        timestamp_micros: 1_000,
                        value: b"v".to_vec(),
                    })),
                }],
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
        while let Some(answer) = answers.message().await.unwrap() {
            assert!(
                answer
                    .entries
                    .iter()
                    .all(|e| e.status.as_ref().unwrap().code == 0)
            );
        }
    }

    let only = |i: usize| bt::RowFilter {
        filter: Some(bt::row_filter::Filter::RowKeyRegexFilter(key(i))),
    };

    // --- Forward: one row kept, then progress to the last row looked at. ---
    let messages = read(&mut data, Some(only(0)), false).await;
    let (rows, progress) = rows_and_progress(&messages, false);
    assert_eq!(rows, vec![key(0)]);
    assert!(
        progress.last().is_some_and(|k| *k > key(0)),
        "no progress beyond the row: {messages:?}"
    );
    assert_eq!(
        progress.last(),
        Some(&key(ROWS - 1)),
        "the scan looked at every row"
    );

    // --- Reversed: the last row kept, then progress down to the first. ---
    let messages = read(&mut data, Some(only(ROWS - 1)), true).await;
    let (rows, progress) = rows_and_progress(&messages, true);
    assert_eq!(rows, vec![key(ROWS - 1)]);
    assert_eq!(progress.last(), Some(&key(0)), "{messages:?}");

    // --- Nothing filtered: rows only, no progress messages. ---
    let messages = read(&mut data, None, false).await;
    let (rows, progress) = rows_and_progress(&messages, false);
    assert_eq!(rows, (0..ROWS).map(key).collect::<Vec<_>>());
    assert!(progress.is_empty(), "{progress:?}");
}
