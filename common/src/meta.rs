//! The METADATA row key and cell names (DESIGN.md section 5), shared by the master, which
//! writes METADATA, and the client library, which reads it to find tablets.
//!
//! A METADATA row describes one tablet and is keyed by the tablet's table and *end* row:
//! `table_id (8 bytes, big-endian) | 0x01 | end_row` for a tablet that ends at `end_row`, and
//! `table_id | 0x02` for the last tablet of a table (no end: +infinity). Within one table the
//! rows order like the end rows (the shared prefix leaves the comparison to `end_row`), and the
//! last tablet's row sorts after every other row of its table and before the next table's.
//! So the tablet holding `row` is the first METADATA row whose key is greater than
//! `lookup_key(table, row)` — which is `row_key(table, Some(row))` itself, because a tablet's
//! end is exclusive.
//!
//! No escaping is needed: only keys of the same table are ever compared by their row part.

use bytes::{BufMut, Bytes, BytesMut};

use crate::ids::TableId;

/// The column family of METADATA rows.
pub const FAMILY: &str = "m";
/// The qualifier of the cell holding the encoded `TabletRecord`.
pub const TABLET_QUALIFIER: &[u8] = b"tablet";

const FINITE: u8 = 0x01;
const INFINITE: u8 = 0x02;

/// The METADATA row key of the tablet of `table` that ends at `end_row` (`None`: the table's
/// last tablet).
pub fn row_key(table: TableId, end_row: Option<&[u8]>) -> Bytes {
    let mut key = BytesMut::with_capacity(9 + end_row.map_or(0, <[u8]>::len));
    key.put_u64(table.0);
    match end_row {
        Some(end) => {
            key.put_u8(FINITE);
            key.put_slice(end);
        }
        None => key.put_u8(INFINITE),
    }
    key.freeze()
}

/// The key after which the METADATA row of the tablet holding `row` comes: the first row
/// whose key is strictly greater than this describes that tablet.
pub fn lookup_key(table: TableId, row: &[u8]) -> Bytes {
    row_key(table, Some(row))
}

/// The first METADATA key of `table` (inclusive): every row of the table is at or after it.
pub fn table_start(table: TableId) -> Bytes {
    let mut key = BytesMut::with_capacity(8);
    key.put_u64(table.0);
    key.freeze()
}

/// The METADATA key after every row of `table` (exclusive end of a scan of the table).
pub fn table_end(table: TableId) -> Bytes {
    match table.0.checked_add(1) {
        Some(next) => table_start(TableId(next)),
        None => Bytes::from_static(&[0xff; 9]),
    }
}

/// The table and end row a METADATA key names, or `None` if it is not one.
pub fn parse_row_key(key: &[u8]) -> Option<(TableId, Option<Bytes>)> {
    if key.len() < 9 {
        return None;
    }
    let (id, rest) = key.split_at(8);
    let table = TableId(u64::from_be_bytes(id.try_into().ok()?));
    match rest[0] {
        FINITE => Some((table, Some(Bytes::copy_from_slice(&rest[1..])))),
        INFINITE if rest.len() == 1 => Some((table, None)),
        _ => None,
    }
}

/// The table whose tablets a METADATA row of `table` lives in: the root tablet (table 0) for
/// METADATA's own tablets, METADATA (table 1) for user tables. The root tablet has no row.
pub fn meta_table_of(table: TableId) -> Option<TableId> {
    match table {
        TableId::ROOT => None,
        TableId::METADATA => Some(TableId::ROOT),
        _ => Some(TableId::METADATA),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_order_like_end_rows_within_a_table() {
        let t = TableId(7);
        let rows: [Option<&[u8]>; 5] = [Some(b""), Some(b"a"), Some(b"a\0"), Some(b"b"), None];
        let keys: Vec<Bytes> = rows.iter().map(|r| row_key(t, *r)).collect();
        for pair in keys.windows(2) {
            assert!(pair[0] < pair[1], "{:?} !< {:?}", pair[0], pair[1]);
        }
    }

    #[test]
    fn tables_do_not_interleave() {
        let last_of_7 = row_key(TableId(7), None);
        let first_of_8 = row_key(TableId(8), Some(b""));
        assert!(last_of_7 < first_of_8);
        assert!(table_start(TableId(8)) <= first_of_8);
        assert!(last_of_7 < table_end(TableId(7)));
        assert_eq!(table_end(TableId(7)), table_start(TableId(8)));
        assert!(row_key(TableId(7), Some(&[0xff; 40])) < last_of_7);
        assert!(table_start(TableId(7)) <= row_key(TableId(7), Some(b"")));
    }

    #[test]
    fn the_holding_tablet_is_the_first_row_after_the_lookup_key() {
        let t = TableId(3);
        // Tablets [.., "g"), ["g", "p"), ["p", ..).
        let rows = [
            row_key(t, Some(b"g")),
            row_key(t, Some(b"p")),
            row_key(t, None),
        ];
        let holder = |row: &[u8]| {
            let k = lookup_key(t, row);
            rows.iter().position(|r| *r > k)
        };
        assert_eq!(holder(b""), Some(0));
        assert_eq!(holder(b"f\xff"), Some(0));
        assert_eq!(holder(b"g"), Some(1));
        assert_eq!(holder(b"o"), Some(1));
        assert_eq!(holder(b"p"), Some(2));
        assert_eq!(holder(&[0xff; 100]), Some(2));
    }

    #[test]
    fn keys_parse_back() {
        for end in [None, Some(&b""[..]), Some(&b"row\x00\x01"[..])] {
            let key = row_key(TableId(42), end);
            assert_eq!(
                parse_row_key(&key),
                Some((TableId(42), end.map(Bytes::copy_from_slice)))
            );
        }
        assert_eq!(parse_row_key(b"short"), None);
        assert_eq!(parse_row_key(&[0, 0, 0, 0, 0, 0, 0, 1, 9]), None);
        assert_eq!(parse_row_key(&[0, 0, 0, 0, 0, 0, 0, 1, 2, 0]), None);
    }

    #[test]
    fn meta_tables() {
        assert_eq!(meta_table_of(TableId::ROOT), None);
        assert_eq!(meta_table_of(TableId::METADATA), Some(TableId::ROOT));
        assert_eq!(meta_table_of(TableId(9)), Some(TableId::METADATA));
    }
}
