//! Aggregate column families and millisecond granularity through the Cloud Bigtable API: a
//! table with a Sum-of-Int64 family created through the admin API, concurrent `AddToCell`s
//! summed exactly (also after the tablet server is replaced), `AddToCell` on a plain family
//! refused, `GetTable` showing the value type and `MILLIS`, and server-time writes at whole
//! milliseconds with other explicit timestamps refused. An in-process cluster (lock cell,
//! tablet server, master) behind a gateway on a free port, as in `bigtable_api.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use tabula_client::Client;
use tabula_master::Master;
use tabula_proto::google::bigtable::admin::v2 as admin;
use tabula_proto::google::bigtable::admin::v2::bigtable_table_admin_client::BigtableTableAdminClient;
use tabula_proto::google::bigtable::v2 as bt;
use tabula_proto::google::bigtable::v2::bigtable_client::BigtableClient;
use tabula_tests::master_helpers::{all_served, master_config};
use tabula_tests::{LockCell, start_tablet_server};
use tonic::Code;
use tonic::transport::Channel;

use crate::support;

const INSTANCE: &str = "projects/p/instances/i";
const TABLE: &str = "projects/p/instances/i/tables/counters";
const TASKS: i64 = 8;
const ADDS_PER_TASK: i64 = 200;

fn value(kind: bt::value::Kind) -> Option<bt::Value> {
    Some(bt::Value {
        kind: Some(kind),
        ..bt::Value::default()
    })
}

fn add(family: &str, ts: i64, input: i64) -> bt::Mutation {
    use bt::value::Kind;
    bt::Mutation {
        mutation: Some(bt::mutation::Mutation::AddToCell(bt::mutation::AddToCell {
            family_name: family.into(),
            column_qualifier: value(Kind::RawValue(b"hits".to_vec())),
            timestamp: value(Kind::RawTimestampMicros(ts)),
            input: value(Kind::IntValue(input)),
        })),
    }
}

fn set(ts: i64) -> bt::Mutation {
    bt::Mutation {
        mutation: Some(bt::mutation::Mutation::SetCell(bt::mutation::SetCell {
            family_name: "plain".into(),
            column_qualifier: b"q".to_vec(),
            timestamp_micros: ts,
            value: b"v".to_vec(),
        })),
    }
}

async fn mutate(
    data: &mut BigtableClient<Channel>,
    row: &str,
    mutations: Vec<bt::Mutation>,
) -> Result<(), tonic::Status> {
    data.mutate_row(bt::MutateRowRequest {
        table_name: TABLE.into(),
        row_key: row.as_bytes().to_vec(),
        mutations,
        ..Default::default()
    })
    .await
    .map(|_| ())
}

/// Every cell of `row` as (family, timestamp, value), from the chunked answer.
async fn cells(data: &mut BigtableClient<Channel>, row: &str) -> Vec<(String, i64, Vec<u8>)> {
    let mut stream = data
        .read_rows(bt::ReadRowsRequest {
            table_name: TABLE.into(),
            rows: Some(bt::RowSet {
                row_keys: vec![row.as_bytes().to_vec()],
                row_ranges: vec![],
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    let mut family = String::new();
    while let Some(answer) = stream.message().await.unwrap() {
        for chunk in answer.chunks {
            if let Some(f) = chunk.family_name {
                family = f;
            }
            out.push((family.clone(), chunk.timestamp_micros, chunk.value));
        }
    }
    out
}

async fn sum(data: &mut BigtableClient<Channel>, row: &str) -> i64 {
    let found = cells(data, row).await;
    assert_eq!(found.len(), 1, "one aggregate cell expected, got {found:?}");
    let bytes: [u8; 8] = found[0]
        .2
        .as_slice()
        .try_into()
        .expect("an aggregate cell reads as 8 bytes");
    i64::from_be_bytes(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sums_are_exact_typed_and_durable_at_millisecond_granularity() {
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let server = start_tablet_server(&cell, root.path()).await.unwrap();
    let master = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let native = Client::connect(&cell.addrs()).await.unwrap();
    all_served(native.channels(), &master, 2).await;
    let gateway = support::start_gateway(&cell.addrs()).await;
    let addr = gateway.addr.clone();
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut data = BigtableClient::new(channel.clone());
    let mut tables = BigtableTableAdminClient::new(channel.clone());

    // --- A table with an aggregate family, created and described through the admin API. ---
    let sum_type = || {
        use admin::r#type::{Aggregate, Int64, Kind, aggregate};
        admin::Type {
            kind: Some(Kind::AggregateType(Box::new(Aggregate {
                input_type: Some(Box::new(admin::Type {
                    kind: Some(Kind::Int64Type(Int64::default())),
                })),
                state_type: None,
                aggregator: Some(aggregate::Aggregator::Sum(aggregate::Sum {})),
            }))),
        }
    };
    let created = tables
        .create_table(admin::CreateTableRequest {
            parent: INSTANCE.into(),
            table_id: "counters".into(),
            table: Some(admin::Table {
                column_families: HashMap::from([
                    (
                        "sum".to_owned(),
                        admin::ColumnFamily {
                            gc_rule: None,
                            value_type: Some(sum_type()),
                        },
                    ),
                    ("plain".to_owned(), admin::ColumnFamily::default()),
                ]),
                ..Default::default()
            }),
            initial_splits: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(created.column_families["sum"].value_type.is_some());
    all_served(native.channels(), &master, 3).await;
    let described = tables
        .get_table(admin::GetTableRequest {
            name: TABLE.into(),
            view: admin::table::View::SchemaView as i32,
        })
        .await
        .unwrap()
        .into_inner();
    let sum_family = described.column_families["sum"].value_type.clone();
    let is_sum = matches!(
        sum_family.and_then(|t| t.kind),
        Some(admin::r#type::Kind::AggregateType(a))
            if matches!(a.aggregator, Some(admin::r#type::aggregate::Aggregator::Sum(_)))
    );
    assert!(is_sum, "GetTable shows the Sum aggregate: {described:?}");
    assert_eq!(described.column_families["plain"].value_type, None);
    assert_eq!(
        described.granularity,
        admin::table::TimestampGranularity::Millis as i32
    );

    // --- Concurrent adds from several tasks sum exactly. ---
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let mut data = BigtableClient::new(channel.clone());
        tasks.spawn(async move {
            for i in 0..ADDS_PER_TASK {
                mutate(&mut data, "row", vec![add("sum", 5000, task * 1000 + i)])
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let want: i64 = (0..TASKS)
        .flat_map(|t| (0..ADDS_PER_TASK).map(move |i| t * 1000 + i))
        .sum();
    assert_eq!(sum(&mut data, "row").await, want);
    assert_eq!(cells(&mut data, "row").await[0].1, 5000);

    // --- Wrong families and types are refused with INVALID_ARGUMENT. ---
    let e = mutate(&mut data, "row", vec![add("plain", 5000, 1)])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("not an aggregate"), "{e:?}");
    let e = mutate(
        &mut data,
        "row",
        vec![bt::Mutation {
            mutation: Some(bt::mutation::Mutation::SetCell(bt::mutation::SetCell {
                family_name: "sum".into(),
                column_qualifier: b"hits".to_vec(),
                timestamp_micros: 5000,
                value: vec![0; 8],
            })),
        }],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = tables
        .modify_column_families(admin::ModifyColumnFamiliesRequest {
            name: TABLE.into(),
            modifications: vec![admin::modify_column_families_request::Modification {
                id: "plain".into(),
                r#mod: Some(
                    admin::modify_column_families_request::modification::Mod::Update(
                        admin::ColumnFamily {
                            gc_rule: None,
                            value_type: Some(sum_type()),
                        },
                    ),
                ),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // --- Millisecond granularity: server time at whole milliseconds, others refused. ---
    for row in ["m1", "m2", "m3"] {
        mutate(&mut data, row, vec![set(-1)]).await.unwrap();
        let found = cells(&mut data, row).await;
        assert_eq!(found.len(), 1);
        assert!(
            found[0].1 > 0 && found[0].1 % 1000 == 0,
            "server time {found:?}"
        );
    }
    let e = mutate(&mut data, "m4", vec![set(1500)]).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = mutate(&mut data, "m4", vec![add("sum", 1500, 1)])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // ReadModifyWriteRow stamps whole milliseconds too, and leaves aggregate cells alone.
    let rmw = |family: &str| bt::ReadModifyWriteRowRequest {
        table_name: format!("{INSTANCE}/tables/counters"),
        row_key: b"m5".to_vec(),
        rules: vec![bt::ReadModifyWriteRule {
            family_name: family.into(),
            column_qualifier: b"q".to_vec(),
            rule: Some(bt::read_modify_write_rule::Rule::IncrementAmount(1)),
        }],
        ..Default::default()
    };
    for _ in 0..3 {
        let row = data
            .read_modify_write_row(rmw("plain"))
            .await
            .unwrap()
            .into_inner()
            .row
            .unwrap();
        let ts = row.families[0].columns[0].cells[0].timestamp_micros;
        assert!(ts > 0 && ts % 1000 == 0, "read-modify-write time {ts}");
    }
    let e = data.read_modify_write_row(rmw("sum")).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // --- The sum survives the tablet server's replacement, and adds go on from it. ---
    server.shutdown().await.unwrap();
    let _server = start_tablet_server(&cell, root.path()).await.unwrap();
    all_served(native.channels(), &master, 3).await;
    let mut data = BigtableClient::new(channel.clone());
    assert_eq!(sum(&mut data, "row").await, want);
    mutate(&mut data, "row", vec![add("sum", 5000, -want)])
        .await
        .unwrap();
    assert_eq!(sum(&mut data, "row").await, 0);
}
