//! A call whose client deadline (`grpc-timeout`) passes while the gateway waits is answered
//! `DEADLINE_EXCEEDED`, which Cloud Bigtable clients retry, and not tonic's own `CANCELLED`
//! ("Timeout expired"), which they do not: through a real gateway (tonic's server and its
//! timeout around the gateway's), over an in-process cluster whose tablet servers were shut
//! down, so that the write cannot finish.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tabula_proto::google::bigtable::admin::v2 as admin;
use tabula_proto::google::bigtable::v2 as bt;
use tonic::Code;

use crate::support;

const INSTANCE: &str = "projects/p/instances/i";
const TABLE: &str = "projects/p/instances/i/tables/deadlines";
/// The client's deadline for the write that cannot finish.
const DEADLINE: Duration = Duration::from_millis(400);

fn write(row: &[u8]) -> bt::MutateRowRequest {
    bt::MutateRowRequest {
        table_name: TABLE.into(),
        row_key: row.to_vec(),
        mutations: vec![bt::Mutation {
            mutation: Some(bt::mutation::Mutation::SetCell(bt::mutation::SetCell {
                family_name: "f".into(),
                column_qualifier: b"q".to_vec(),
                timestamp_micros: 1_000,
                value: b"v".to_vec(),
            })),
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_past_its_client_deadline_is_answered_deadline_exceeded() {
    let mut cluster = support::Cluster::start().await;
    let gateway = cluster.gateway().await;
    let (mut data, mut tables) = support::clients(&gateway.addr).await;
    tables
        .create_table(admin::CreateTableRequest {
            parent: INSTANCE.into(),
            table_id: "deadlines".into(),
            table: Some(admin::Table {
                column_families: HashMap::from([("f".to_owned(), admin::ColumnFamily::default())]),
                ..Default::default()
            }),
            initial_splits: vec![],
        })
        .await
        .unwrap();
    cluster.all_served(3).await;
    // A write within its deadline: the gateway has the table's location cached.
    let mut request = tonic::Request::new(write(b"before"));
    request.set_timeout(Duration::from_secs(30));
    data.mutate_row(request).await.unwrap();

    cluster.stop_tablet_servers().await;
    // The tonic client only sends the deadline (this channel has no timeout of its own), so
    // the answer, and its code, is the server's.
    let mut request = tonic::Request::new(write(b"after"));
    request.set_timeout(DEADLINE);
    let started = Instant::now();
    let status = data.mutate_row(request).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(
        status.code(),
        Code::DeadlineExceeded,
        "answered {status:?} after {took:?}"
    );
    assert!(
        status.message().contains("deadline"),
        "the message says why: {status:?}"
    );
    // Not early (the gateway keeps all but a few ms of the budget), and not much later than
    // the deadline (a loaded machine may delay the answer, never by this much).
    assert!(
        took >= DEADLINE - Duration::from_millis(10) && took < DEADLINE + Duration::from_secs(10),
        "answered after {took:?}"
    );
}
