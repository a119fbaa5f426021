//! Filtered cells and their conversion into a `google.bigtable.v2.Row`: as a message
//! ([`to_proto_row`]), or written straight into a buffer in that message's wire format
//! ([`encode_row`], what `ReadRows` sends: no message tree, no allocation per row).

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{encode_varint, encoded_len_varint};
use tabula_proto::google::bigtable::v2 as pb;

/// One output cell of a filtered row: an engine cell, possibly with its value stripped and
/// labels applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutCell {
    /// Column family.
    pub family: Bytes,
    /// Qualifier.
    pub qualifier: Bytes,
    /// Microseconds.
    pub timestamp: i64,
    /// Value (empty when stripped).
    pub value: Bytes,
    /// Labels applied by `apply_label_transformer` (at most one in practice).
    pub labels: Vec<String>,
}

/// Builds the `Row` message of a filtered row: consecutive cells of one family form a `Family`,
/// consecutive cells of one qualifier within it a `Column` (so cells in [`Filter::apply`]'s
/// order give one `Family` per family and one `Column` per column, cells newest first).
/// `None` if there are no cells: Bigtable does not return empty rows.
///
/// [`Filter::apply`]: super::Filter::apply
pub fn to_proto_row(key: Bytes, cells: Vec<OutCell>) -> Option<pb::Row> {
    if cells.is_empty() {
        return None;
    }
    let mut families: Vec<pb::Family> = Vec::new();
    let mut last_family: Option<Bytes> = None;
    let mut last_qualifier: Option<Bytes> = None;
    for c in cells {
        if last_family.as_ref() != Some(&c.family) {
            families.push(pb::Family {
                name: String::from_utf8_lossy(&c.family).into_owned(),
                columns: Vec::new(),
            });
            last_family = Some(c.family);
            last_qualifier = None;
        }
        let Some(family) = families.last_mut() else {
            continue; // unreachable: a family was pushed above
        };
        if last_qualifier.as_ref() != Some(&c.qualifier) {
            family.columns.push(pb::Column {
                qualifier: c.qualifier.clone(),
                cells: Vec::new(),
            });
            last_qualifier = Some(c.qualifier);
        }
        if let Some(column) = family.columns.last_mut() {
            column.cells.push(pb::Cell {
                timestamp_micros: c.timestamp,
                value: c.value,
                labels: c.labels,
            });
        }
    }
    Some(pb::Row { key, families })
}

/// Appends the wire form of [`to_proto_row`]`(key, cells)` to `buf` as one row of a
/// `tabula.tablet.v1.EncodedRows` (field 1: its tag, the row's length, then the row). The row
/// is byte for byte what prost would write for that message (same grouping, fields in tag
/// order, default values left out). Writes nothing and returns `false` if there are no cells.
pub fn encode_row(key: &[u8], cells: &[OutCell], buf: &mut BytesMut) -> bool {
    if cells.is_empty() {
        return false;
    }
    let families = || cells.chunk_by(|a, b| a.family == b.family);
    let len = bytes_field_len(key) + families().map(|f| nested_len(family_len(f))).sum::<usize>();
    buf.reserve(nested_len(len));
    nested(buf, 1, len);
    bytes_field(buf, 1, key);
    for family in families() {
        nested(buf, 2, family_len(family));
        bytes_field(buf, 1, family_name(family).as_bytes());
        for column in columns(family) {
            nested(buf, 2, column_len(column));
            bytes_field(buf, 1, &column[0].qualifier);
            for cell in column {
                nested(buf, 2, cell_len(cell));
                if cell.timestamp != 0 {
                    buf.put_u8(1 << 3); // field 1, varint
                    encode_varint(cell.timestamp as u64, buf);
                }
                bytes_field(buf, 2, &cell.value);
                for label in &cell.labels {
                    nested(buf, 3, label.len());
                    buf.put_slice(label.as_bytes());
                }
            }
        }
    }
    true
}

/// A family's name as `to_proto_row` gives it (names are UTF-8; anything else is replaced).
fn family_name(family: &[OutCell]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(&family[0].family)
}

/// The columns of one family's cells: runs of one qualifier.
fn columns(family: &[OutCell]) -> std::slice::ChunkBy<'_, OutCell, fn(&OutCell, &OutCell) -> bool> {
    family.chunk_by(|a, b| a.qualifier == b.qualifier)
}

fn family_len(family: &[OutCell]) -> usize {
    bytes_field_len(family_name(family).as_bytes())
        + columns(family)
            .map(|c| nested_len(column_len(c)))
            .sum::<usize>()
}

fn column_len(column: &[OutCell]) -> usize {
    bytes_field_len(&column[0].qualifier)
        + column
            .iter()
            .map(|c| nested_len(cell_len(c)))
            .sum::<usize>()
}

fn cell_len(cell: &OutCell) -> usize {
    let timestamp = if cell.timestamp == 0 {
        0
    } else {
        1 + encoded_len_varint(cell.timestamp as u64)
    };
    timestamp
        + bytes_field_len(&cell.value)
        + cell
            .labels
            .iter()
            .map(|l| nested_len(l.len()))
            .sum::<usize>()
}

/// Bytes of a length-delimited field of `len` bytes with its one-byte tag.
fn nested_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

/// Bytes of a `bytes`/`string` field holding `value`: nothing when empty (proto3 default).
fn bytes_field_len(value: &[u8]) -> usize {
    if value.is_empty() {
        0
    } else {
        nested_len(value.len())
    }
}

/// The tag and length of length-delimited field `field` (< 16) of `len` bytes.
fn nested(buf: &mut BytesMut, field: u8, len: usize) {
    buf.put_u8(field << 3 | 2);
    encode_varint(len as u64, buf);
}

/// A `bytes`/`string` field, left out when empty.
fn bytes_field(buf: &mut BytesMut, field: u8, value: &[u8]) {
    if !value.is_empty() {
        nested(buf, field, value.len());
        buf.put_slice(value);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message as _;
    use tabula_proto::tabula::tablet::v1::EncodedRows;

    use super::*;

    fn out_cell() -> impl Strategy<Value = OutCell> {
        (
            prop::sample::select(vec!["a", "b", "cf", ""]),
            prop::sample::select(vec!["", "q", "qq"]),
            prop_oneof![Just(0i64), Just(-1), any::<i64>()],
            prop::collection::vec(any::<u8>(), 0..300),
            prop::collection::vec("[a-z]{0,3}", 0..2),
        )
            .prop_map(|(f, q, timestamp, value, labels)| OutCell {
                family: Bytes::from(f),
                qualifier: Bytes::from(q),
                timestamp,
                value: Bytes::from(value),
                labels,
            })
    }

    proptest! {
        /// `encode_row` writes exactly what prost writes for `to_proto_row`'s message, for
        /// cells in any order (runs of families and qualifiers), empty keys, values and
        /// names, zero and negative timestamps, and labels.
        #[test]
        fn encode_row_writes_what_prost_writes(
            rows in prop::collection::vec(
                (
                    prop::collection::vec(any::<u8>(), 0..20),
                    prop::collection::vec(out_cell(), 0..12),
                ),
                0..4,
            ),
        ) {
            let mut buf = BytesMut::new();
            let mut expected = EncodedRows::default();
            for (key, cells) in rows {
                let wrote = encode_row(&key, &cells, &mut buf);
                let row = to_proto_row(Bytes::from(key), cells).map(|r| r.encode_to_vec());
                prop_assert_eq!(wrote, row.is_some());
                expected.rows.extend(row.map(Bytes::from));
            }
            let want = expected.encode_to_vec();
            prop_assert_eq!(buf.as_ref(), want.as_slice());
        }
    }

    /// `(timestamp, value, labels)`.
    type CellShape = (i64, Vec<u8>, Vec<String>);
    /// `(qualifier, cells)`.
    type ColumnShape = (Vec<u8>, Vec<CellShape>);
    /// `(family name, columns)`.
    type FamilyShape = (String, Vec<ColumnShape>);

    fn c(f: &str, q: &str, ts: i64, v: &str, labels: &[&str]) -> OutCell {
        OutCell {
            family: Bytes::from(f.to_owned()),
            qualifier: Bytes::from(q.to_owned()),
            timestamp: ts,
            value: Bytes::from(v.to_owned()),
            labels: labels.iter().map(|l| l.to_string()).collect(),
        }
    }

    #[test]
    fn empty_rows_have_no_message() {
        assert_eq!(to_proto_row(Bytes::from_static(b"r"), Vec::new()), None);
    }

    #[test]
    fn cells_group_by_family_then_column() {
        let row = to_proto_row(
            Bytes::from_static(b"r"),
            vec![
                c("a", "x", 3, "1", &[]),
                c("a", "x", 3, "1", &["l"]),
                c("a", "x", 1, "2", &[]),
                c("a", "y", 1, "3", &[]),
                c("b", "x", 1, "4", &[]),
            ],
        )
        .unwrap();
        assert_eq!(row.key, &b"r"[..]);
        let shape: Vec<FamilyShape> = row
            .families
            .into_iter()
            .map(|f| {
                let cols = f
                    .columns
                    .into_iter()
                    .map(|col| {
                        let cells = col
                            .cells
                            .into_iter()
                            .map(|c| (c.timestamp_micros, c.value.to_vec(), c.labels))
                            .collect();
                        (col.qualifier.to_vec(), cells)
                    })
                    .collect();
                (f.name, cols)
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (
                    "a".to_owned(),
                    vec![
                        (
                            b"x".to_vec(),
                            vec![
                                (3, b"1".to_vec(), vec![]),
                                (3, b"1".to_vec(), vec!["l".to_owned()]),
                                (1, b"2".to_vec(), vec![]),
                            ]
                        ),
                        (b"y".to_vec(), vec![(1, b"3".to_vec(), vec![])]),
                    ]
                ),
                (
                    "b".to_owned(),
                    vec![(b"x".to_vec(), vec![(1, b"4".to_vec(), vec![])])]
                ),
            ]
        );
    }
}
