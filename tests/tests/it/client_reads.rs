//! The client library against real tablet servers, a real master and a real lock cell in
//! process: writes across tablets and scans that return every row exactly once in order
//! (whole table, limited, several ranges) and reversed scans that return exactly the reverse
//! (whole table, a range, a prefix, limited, several ranges); scans in both directions that
//! continue while tablets split and move under them, reads that succeed after a tablet server
//! dies once its tablets are reassigned (the location cache drops the stale entry), and the
//! single-row transactions.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use tabula_client::{
    Client, ClientOptions, Family, Filter, Mutation, ReadOptions, Row, RowRange, RowSet, Rule,
    Table,
};
use tabula_common::Code;
use tabula_master::Master;
use tabula_tests::master_helpers::{WAIT, all_served, master_config};
use tabula_tests::{LockCell, eventually, start_tablet_server};

fn key(i: usize) -> Bytes {
    Bytes::from(format!("row{i:04}"))
}

fn keys(rows: &[Row]) -> Vec<Bytes> {
    rows.iter().map(|r| r.key.clone()).collect()
}

async fn load(table: &Table, n: usize) {
    let entries: Vec<(Bytes, Vec<Mutation>)> = (0..n)
        .map(|i| (key(i), vec![Mutation::set_cell("cf", "q", format!("v{i}"))]))
        .collect();
    let results = table.mutate_rows(entries).await;
    assert_eq!(results.len(), n);
    for (i, r) in results.into_iter().enumerate() {
        assert!(r.is_ok(), "entry {i}: {r:?}");
    }
}

async fn scan_all(table: &Table) -> Vec<Row> {
    table
        .read_rows(RowSet::all(), None)
        .collect_rows()
        .await
        .unwrap()
}

/// The keys `set` reads in `direction`, at most `limit` of them.
async fn scan_keys(table: &Table, set: RowSet, reversed: bool, limit: Option<u64>) -> Vec<Bytes> {
    let options = ReadOptions {
        rows_limit: limit,
        reversed,
        ..ReadOptions::default()
    };
    keys(
        &table
            .read_rows_with(set, options)
            .collect_rows()
            .await
            .unwrap(),
    )
}

/// Checks that a reversed scan of `set` is exactly the forward scan reversed (and, limited to
/// `n`, its last `n` rows reversed), and answers the forward keys.
async fn reverse_of_forward(table: &Table, set: RowSet, n: u64) -> Vec<Bytes> {
    let forward = scan_keys(table, set.clone(), false, None).await;
    let mut reversed = scan_keys(table, set.clone(), true, None).await;
    reversed.reverse();
    assert_eq!(reversed, forward);
    let mut last = scan_keys(table, set, true, Some(n)).await;
    last.reverse();
    let from = forward.len().saturating_sub(usize::try_from(n).unwrap());
    assert_eq!(last, forward[from..]);
    forward
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_across_tablets_then_scans_return_every_row_once_in_order() {
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let s1 = start_tablet_server(&cell, root.path()).await.unwrap();
    let s2 = start_tablet_server(&cell, root.path()).await.unwrap();
    let master = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let client = Client::connect(&cell.addrs()).await.unwrap();
    all_served(client.channels(), &master, 2).await;
    let admin = client.admin();
    let info = admin
        .create_table("t", &[Family::new("cf")], &[b"row0100", b"row0200"])
        .await
        .unwrap();
    assert_eq!(info.families, vec!["cf".to_owned()]);
    all_served(client.channels(), &master, 5).await;
    let tablets = admin.list_tablets(Some("t")).await.unwrap();
    assert_eq!(tablets.len(), 3, "{tablets:?}");
    let servers: std::collections::BTreeSet<_> =
        tablets.iter().map(|t| t.record.server.clone()).collect();
    println!("table t on {} server(s)", servers.len());
    assert!(
        admin
            .list_tables()
            .await
            .unwrap()
            .iter()
            .any(|t| t.name == "t")
    );
    assert_eq!(admin.get_table("t").await.unwrap().id, info.id);
    assert_eq!(admin.list_servers().await.unwrap().len(), 2);

    let table = client.table("t").await.unwrap();
    assert_eq!(table.id(), info.id);
    assert_eq!(client.table("nope").await.unwrap_err().code, Code::NotFound);
    load(&table, 300).await;
    assert!(client.cached_locations() >= 3);

    // The whole table: every row once, in order, across three tablets.
    let rows = scan_all(&table).await;
    assert_eq!(keys(&rows), (0..300).map(key).collect::<Vec<_>>());
    assert_eq!(rows[250].value("cf", b"q"), Some(&Bytes::from("v250")));

    // A limited scan crossing a tablet boundary.
    let limited = table
        .read_rows_with(
            RowSet::new().range(RowRange::starting_at("row0050")),
            ReadOptions {
                filter: None,
                rows_limit: Some(120),
                reversed: false,
            },
        )
        .collect_rows()
        .await
        .unwrap();
    assert_eq!(keys(&limited), (50..170).map(key).collect::<Vec<_>>());

    // Keys and overlapping ranges in any order: their union, once each, in order.
    let set = RowSet::new()
        .key("row0250")
        .range(RowRange::closed_open("row0195", "row0205"))
        .key("row0010")
        .range(RowRange::prefix("row020"))
        .key("absent");
    let got = table.read_rows(set, None).collect_rows().await.unwrap();
    let mut want: Vec<Bytes> = vec![key(10)];
    want.extend((195..210).map(key));
    want.push(key(250));
    assert_eq!(keys(&got), want);

    // Reversed scans across the three tablets are exactly the reverse of the forward ones:
    // the whole table, a range crossing a boundary, a prefix, several ranges; and limited
    // reversed scans answer the last rows.
    let whole = reverse_of_forward(&table, RowSet::all(), 150).await;
    assert_eq!(whole.len(), 300);
    let range = RowSet::new().range(RowRange::closed("row0050", "row0250"));
    assert_eq!(
        reverse_of_forward(&table, range, 60).await,
        (50..=250).map(key).collect::<Vec<_>>()
    );
    let prefix = RowSet::new().range(RowRange::prefix("row01"));
    assert_eq!(
        reverse_of_forward(&table, prefix, 3).await,
        (100..200).map(key).collect::<Vec<_>>()
    );
    let several = RowSet::new()
        .key("row0250")
        .range(RowRange::closed_open("row0195", "row0205"))
        .key("row0010")
        .range(RowRange::prefix("row020"))
        .range(RowRange::starting_at("row0297"))
        .key("absent");
    let mut want: Vec<Bytes> = vec![key(10)];
    want.extend((195..210).map(key));
    want.push(key(250));
    want.extend((297..300).map(key));
    assert_eq!(reverse_of_forward(&table, several, 5).await, want);
    let filtered = table
        .read_rows_with(
            RowSet::new().range(RowRange::closed("row0098", "row0101")),
            ReadOptions {
                filter: Some(Filter::qualifier("q")),
                reversed: true,
                ..ReadOptions::default()
            },
        )
        .collect_rows()
        .await
        .unwrap();
    assert_eq!(keys(&filtered), [101, 100, 99, 98].map(key));
    assert_eq!(filtered[0].value("cf", b"q"), Some(&Bytes::from("v101")));

    // One row, with and without a filter.
    let row = table.read_row("row0150", None).await.unwrap().unwrap();
    assert_eq!(row.value("cf", b"q"), Some(&Bytes::from("v150")));
    assert!(table.read_row("absent", None).await.unwrap().is_none());
    let none = table
        .read_row("row0150", Some(Filter::qualifier("other")))
        .await
        .unwrap();
    assert!(none.is_none());

    // Single-row transactions.
    let is_v150 = Filter::family("cf")
        .and(Filter::qualifier("q"))
        .and(Filter::latest(1))
        .and(Filter::from_proto(
            tabula_proto::google::bigtable::v2::RowFilter {
                filter: Some(
                    tabula_proto::google::bigtable::v2::row_filter::Filter::ValueRegexFilter(
                        b"v150".to_vec(),
                    ),
                ),
            },
        ));
    let matched = table
        .check_and_mutate_row(
            "row0150",
            Some(is_v150.clone()),
            vec![Mutation::set_cell("cf", "q", "changed")],
            vec![Mutation::set_cell("cf", "miss", "1")],
        )
        .await
        .unwrap();
    assert!(matched);
    let matched = table
        .check_and_mutate_row(
            "row0150",
            Some(is_v150),
            vec![Mutation::set_cell("cf", "q", "again")],
            vec![Mutation::set_cell("cf", "miss", "1")],
        )
        .await
        .unwrap();
    assert!(!matched);
    let row = table.read_row("row0150", None).await.unwrap().unwrap();
    assert_eq!(row.value("cf", b"q"), Some(&Bytes::from("changed")));
    assert_eq!(row.value("cf", b"miss"), Some(&Bytes::from("1")));

    let first = table
        .read_modify_write_row("row0299", vec![Rule::increment("cf", "n", 5)])
        .await
        .unwrap();
    assert_eq!(
        first.value("cf", b"n"),
        Some(&Bytes::from(5i64.to_be_bytes().to_vec()))
    );
    let second = table
        .read_modify_write_row(
            "row0299",
            vec![Rule::increment("cf", "n", 2), Rule::append("cf", "s", "ab")],
        )
        .await
        .unwrap();
    assert_eq!(
        second.value("cf", b"n"),
        Some(&Bytes::from(7i64.to_be_bytes().to_vec()))
    );
    assert_eq!(second.value("cf", b"s"), Some(&Bytes::from("ab")));

    // Deletes, and a per-entry error that is final (an unknown family) beside good entries.
    table
        .mutate_row("row0001", vec![Mutation::delete_row()])
        .await
        .unwrap();
    assert!(table.read_row("row0001", None).await.unwrap().is_none());
    let results = table
        .mutate_rows(vec![
            (key(2), vec![Mutation::set_cell("cf", "x", "1")]),
            (key(102), vec![Mutation::set_cell("nofamily", "x", "1")]),
            (key(202), vec![Mutation::set_cell("cf", "x", "1")]),
        ])
        .await;
    assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
    assert_eq!(results[1].as_ref().unwrap_err().code, Code::NotFound);

    // Samples across tablets: offsets never decrease and the last key is the table's end.
    let samples = table.sample_row_keys().await.unwrap();
    assert!(!samples.is_empty());
    assert!(samples.last().unwrap().row_key.is_empty(), "{samples:?}");
    for pair in samples.windows(2) {
        assert!(pair[0].offset_bytes <= pair[1].offset_bytes, "{samples:?}");
    }

    // Twenty tablets, three records prefetched per METADATA read: a fresh client's reversed
    // scan walks METADATA backwards from the table's end (a miss every few tablets, each
    // caching the tablets before the one it locates) and answers every row once.
    let splits: Vec<Bytes> = (1..20).map(|i| key(i * 10)).collect();
    let splits: Vec<&[u8]> = splits.iter().map(|k| k.as_ref()).collect();
    admin
        .create_table("many", &[Family::new("cf")], &splits)
        .await
        .unwrap();
    all_served(client.channels(), &master, 25).await;
    load(&client.table("many").await.unwrap(), 200).await;
    let options = ClientOptions {
        prefetch_tablets: 3,
        ..ClientOptions::default()
    };
    let fresh = Client::connect_with(&cell.addrs(), options).await.unwrap();
    let many = fresh.table("many").await.unwrap();
    // The last row alone: one METADATA read caches the last tablet and the two before it.
    assert_eq!(
        scan_keys(&many, RowSet::all(), true, Some(1)).await,
        vec![key(199)]
    );
    assert_eq!(fresh.cached_locations(), 3);
    let mut want: Vec<Bytes> = (0..200).map(key).collect();
    want.reverse();
    assert_eq!(scan_keys(&many, RowSet::all(), true, None).await, want);
    assert_eq!(fresh.cached_locations(), 20);
    assert_eq!(
        reverse_of_forward(&many, RowSet::all(), 25).await.len(),
        200
    );

    master.shutdown().await;
    s1.shutdown().await.unwrap();
    s2.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scan_continues_exactly_once_while_its_tablets_split_and_move() {
    scan_while_tablets_split_and_move(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reversed_scan_continues_exactly_once_while_its_tablets_split_and_move() {
    scan_while_tablets_split_and_move(true).await;
}

/// A scan of 600 rows over tablets [-, row0200) [row0200, row0400) [row0400, -): after its
/// first 50 rows (from the first tablet it reads: the first one forward, the last one
/// reversed), the middle tablet splits, the far tablet moves to the other server and the
/// tablet being read splits too; the scan still returns every row exactly once, in order.
async fn scan_while_tablets_split_and_move(reversed: bool) {
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let s1 = start_tablet_server(&cell, root.path()).await.unwrap();
    let s2 = start_tablet_server(&cell, root.path()).await.unwrap();
    let master = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let client = Client::connect(&cell.addrs()).await.unwrap();
    all_served(client.channels(), &master, 2).await;
    let admin = client.admin();
    admin
        .create_table("s", &[Family::new("cf")], &[b"row0200", b"row0400"])
        .await
        .unwrap();
    all_served(client.channels(), &master, 5).await;
    let table = client.table("s").await.unwrap();
    load(&table, 600).await;

    // The scan starts: its first rows come from the first tablet it reads, and the locations
    // of its neighbours are cached (prefetch).
    let options = ReadOptions {
        reversed,
        ..ReadOptions::default()
    };
    let mut scan = table.read_rows_with(RowSet::all(), options);
    let mut got = Vec::new();
    for _ in 0..50 {
        got.push(scan.next_row().await.unwrap().unwrap().key);
    }
    // Under it: the middle tablet splits, the far one moves to the other server, and the one
    // being read splits too. Every cached location of the tablets still to read is stale.
    let (left, right) = admin.split_tablet("s", b"row0300", true).await.unwrap();
    assert_eq!(left.end_row.as_deref(), Some(&b"row0300"[..]));
    assert_eq!(right.start_row.as_ref(), b"row0300");
    let (far_start, reading_split): (&[u8], &[u8]) = if reversed {
        (b"", b"row0500")
    } else {
        (b"row0400", b"row0100")
    };
    let far = admin
        .list_tablets(Some("s"))
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.record.start_row.as_ref() == far_start)
        .unwrap()
        .record;
    let from = far.server.clone().unwrap();
    let to = if &from == s1.server_id() {
        s2.server_id().clone()
    } else {
        s1.server_id().clone()
    };
    let moved = admin.move_tablet(far.tablet, &to).await.unwrap();
    assert!(moved.epoch > far.epoch);
    admin.split_tablet("s", reading_split, true).await.unwrap();
    all_served(client.channels(), &master, 7).await;

    while let Some(row) = scan.next_row().await {
        got.push(row.unwrap().key);
    }
    let mut want: Vec<Bytes> = (0..600).map(key).collect();
    if reversed {
        want.reverse();
    }
    assert_eq!(got, want);
    // A fresh scan sees the same rows through the new locations.
    assert_eq!(scan_keys(&table, RowSet::all(), reversed, None).await, got);

    master.shutdown().await;
    s1.shutdown().await.unwrap();
    s2.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_succeed_after_a_tablet_server_dies_once_its_tablets_are_reassigned() {
    let cell = LockCell::start(1).await.unwrap();
    let root = tempfile::tempdir().unwrap();
    let s1 = start_tablet_server(&cell, root.path()).await.unwrap();
    let s2 = start_tablet_server(&cell, root.path()).await.unwrap();
    let master = Master::start(master_config(&cell, root.path()))
        .await
        .unwrap();
    let client = Client::connect(&cell.addrs()).await.unwrap();
    all_served(client.channels(), &master, 2).await;
    let admin = client.admin();
    admin
        .create_table("k", &[Family::new("cf")], &[b"row0100"])
        .await
        .unwrap();
    all_served(client.channels(), &master, 4).await;
    let table = client.table("k").await.unwrap();
    load(&table, 200).await;
    assert_eq!(scan_all(&table).await.len(), 200);

    // Kill the server of the tablet holding row0150; the client's cache still points at it.
    let victim_id = admin
        .list_tablets(Some("k"))
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.record.start_row.as_ref() == b"row0100")
        .unwrap()
        .record
        .server
        .unwrap();
    let (victim, survivor) = if *s1.server_id() == victim_id {
        (s1, s2)
    } else {
        (s2, s1)
    };
    drop(victim);
    eventually("the dead server's tablets reassigned", WAIT, || async {
        let tablets = admin.list_tablets(None).await.ok()?;
        tablets
            .iter()
            .all(|t| t.record.server.as_ref() == Some(survivor.server_id()))
            .then_some(())
    })
    .await;

    // The next reads succeed: the stale entry fails, is dropped, and METADATA is read again.
    let row = table.read_row("row0150", None).await.unwrap().unwrap();
    assert_eq!(row.value("cf", b"q"), Some(&Bytes::from("v150")));
    assert_eq!(
        keys(&scan_all(&table).await),
        (0..200).map(key).collect::<Vec<_>>()
    );
    table
        .mutate_row("row0199", vec![Mutation::set_cell("cf", "q", "after")])
        .await
        .unwrap();
    let row = table.read_row("row0199", None).await.unwrap().unwrap();
    assert_eq!(row.value("cf", b"q"), Some(&Bytes::from("after")));

    master.shutdown().await;
    survivor.shutdown().await.unwrap();
    cell.shutdown().await.unwrap();
}
