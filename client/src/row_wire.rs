//! A `google.bigtable.v2.Row` decoded straight from its wire form into a [`Row`], the way a
//! scan receives rows (`ReadRowsResponse.rows`, one buffer of encoded rows per message).
//!
//! Going through prost's `bt::Row` first cost four allocations a row (families, the family's
//! name, columns, cells) before `Row::from_proto` flattened them into a fifth; under long
//! scans that was a quarter of the client's time. Here a row takes its cell list and one
//! name per cell, keys and values point into the received buffer, and the result is what
//! `Row::from_proto(bt::Row::decode(..))` gives: fields in any order, unknown fields skipped,
//! the last of a repeated scalar winning, a known field of the wrong wire type an error.

use std::fmt;

use bytes::{Buf, Bytes};
use prost::encoding::{
    DecodeContext, WireType, check_wire_type, decode_key, decode_varint, skip_field,
};

use crate::row::{Cell, Row};

/// Why an encoded row did not decode.
#[derive(Debug)]
pub(crate) enum RowDecodeError {
    /// A malformed key, varint or field.
    Wire(prost::DecodeError),
    /// A length that runs past the end of its message.
    Truncated,
    /// A family name or label that is not UTF-8.
    NotUtf8(&'static str),
}

impl fmt::Display for RowDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowDecodeError::Wire(e) => write!(f, "{e}"),
            RowDecodeError::Truncated => f.write_str("a length runs past the end of its message"),
            RowDecodeError::NotUtf8(what) => write!(f, "a {what} is not UTF-8"),
        }
    }
}

impl From<prost::DecodeError> for RowDecodeError {
    fn from(e: prost::DecodeError) -> Self {
        RowDecodeError::Wire(e)
    }
}

/// The rows of an `EncodedRows` message (`ReadRowsResponse.rows`), in order. Each row's key,
/// qualifiers and values point into `rows`; the framing around them is read in place, so a
/// row costs three reference counts (key, qualifier, value), not one per nested message.
pub(crate) fn decode_rows(rows: &Bytes) -> Result<Vec<Row>, RowDecodeError> {
    let mut out = Vec::new();
    let mut buf = &rows[..];
    while buf.has_remaining() {
        let (tag, wire) = decode_key(&mut buf)?;
        match tag {
            1 => out.push(row(rows, length_delimited(wire, &mut buf)?)?),
            _ => skip(wire, tag, &mut buf)?,
        }
    }
    Ok(out)
}

/// The row encoded in `buf`, its cells in wire order.
#[cfg(test)]
pub(crate) fn decode_row(buf: Bytes) -> Result<Row, RowDecodeError> {
    row(&buf, &buf[..])
}

/// The row encoded in `buf`, a part of `whole`.
fn row(whole: &Bytes, mut buf: &[u8]) -> Result<Row, RowDecodeError> {
    let mut key = Bytes::new();
    let mut cells = Vec::new();
    while buf.has_remaining() {
        let (tag, wire) = decode_key(&mut buf)?;
        match tag {
            1 => key = whole.slice_ref(length_delimited(wire, &mut buf)?),
            2 => family(whole, length_delimited(wire, &mut buf)?, &mut cells)?,
            _ => skip(wire, tag, &mut buf)?,
        }
    }
    Ok(Row { key, cells })
}

/// Appends a `Family`'s cells to `cells`, each named after it.
fn family(whole: &Bytes, mut buf: &[u8], cells: &mut Vec<Cell>) -> Result<(), RowDecodeError> {
    let first = cells.len();
    let mut name = String::new();
    while buf.has_remaining() {
        let (tag, wire) = decode_key(&mut buf)?;
        match tag {
            1 => name = utf8(length_delimited(wire, &mut buf)?, "family name")?,
            2 => column(whole, length_delimited(wire, &mut buf)?, cells)?,
            _ => skip(wire, tag, &mut buf)?,
        }
    }
    // The name may come after the columns: set it once the family is read, cloned for all
    // of its cells but the last, which takes it.
    if let Some((last, rest)) = cells[first..].split_last_mut() {
        for cell in rest {
            cell.family.clone_from(&name);
        }
        last.family = name;
    }
    Ok(())
}

/// Appends a `Column`'s cells to `cells` (their family not yet set).
fn column(whole: &Bytes, mut buf: &[u8], cells: &mut Vec<Cell>) -> Result<(), RowDecodeError> {
    let first = cells.len();
    let mut qualifier: &[u8] = &[];
    while buf.has_remaining() {
        let (tag, wire) = decode_key(&mut buf)?;
        match tag {
            1 => qualifier = length_delimited(wire, &mut buf)?,
            2 => cells.push(cell(whole, length_delimited(wire, &mut buf)?)?),
            _ => skip(wire, tag, &mut buf)?,
        }
    }
    if let Some((last, rest)) = cells[first..].split_last_mut() {
        let qualifier = whole.slice_ref(qualifier);
        for cell in rest {
            cell.qualifier = qualifier.clone();
        }
        last.qualifier = qualifier;
    }
    Ok(())
}

/// A `Cell` (its family and qualifier not yet set).
fn cell(whole: &Bytes, mut buf: &[u8]) -> Result<Cell, RowDecodeError> {
    let mut cell = Cell {
        family: String::new(),
        qualifier: Bytes::new(),
        timestamp_micros: 0,
        value: Bytes::new(),
        labels: Vec::new(),
    };
    let mut value: &[u8] = &[];
    while buf.has_remaining() {
        let (tag, wire) = decode_key(&mut buf)?;
        match tag {
            1 => {
                check_wire_type(WireType::Varint, wire)?;
                // int64: the varint's bits, as prost reads them.
                cell.timestamp_micros = decode_varint(&mut buf)? as i64;
            }
            2 => value = length_delimited(wire, &mut buf)?,
            3 => {
                let label = utf8(length_delimited(wire, &mut buf)?, "label")?;
                cell.labels.push(label);
            }
            _ => skip(wire, tag, &mut buf)?,
        }
    }
    cell.value = whole.slice_ref(value);
    Ok(cell)
}

/// A length-delimited field's contents: the next bytes of `buf`.
fn length_delimited<'a>(wire: WireType, buf: &mut &'a [u8]) -> Result<&'a [u8], RowDecodeError> {
    check_wire_type(WireType::LengthDelimited, wire)?;
    let len = decode_varint(buf)?;
    if len > buf.remaining() as u64 {
        return Err(RowDecodeError::Truncated);
    }
    let (field, rest) = buf.split_at(len as usize);
    *buf = rest;
    Ok(field)
}

fn skip(wire: WireType, tag: u32, buf: &mut &[u8]) -> Result<(), RowDecodeError> {
    Ok(skip_field(wire, tag, buf, DecodeContext::default())?)
}

fn utf8(bytes: &[u8], what: &'static str) -> Result<String, RowDecodeError> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Err(RowDecodeError::NotUtf8(what)),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message as _;
    use tabula_proto::google::bigtable::v2 as bt;

    use super::*;

    fn bytes() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..6).prop_map(Bytes::from)
    }

    fn wire_row() -> impl Strategy<Value = bt::Row> {
        let cell = (
            any::<i64>(),
            bytes(),
            proptest::collection::vec("[a-z]{0,3}", 0..2),
        )
            .prop_map(|(timestamp_micros, value, labels)| bt::Cell {
                timestamp_micros,
                value,
                labels,
            });
        let column = (bytes(), proptest::collection::vec(cell, 0..3))
            .prop_map(|(qualifier, cells)| bt::Column { qualifier, cells });
        let family = ("[a-zé]{0,3}", proptest::collection::vec(column, 0..3))
            .prop_map(|(name, columns)| bt::Family { name, columns });
        (bytes(), proptest::collection::vec(family, 0..3))
            .prop_map(|(key, families)| bt::Row { key, families })
    }

    /// A field written by hand: `tag` with `wire` type 2 (length-delimited) and `body`.
    fn field(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![(tag << 3) | 2, body.len() as u8];
        out.extend_from_slice(body);
        out
    }

    proptest! {
        #[test]
        fn decodes_what_prost_decodes(row in wire_row()) {
            let encoded = Bytes::from(row.encode_to_vec());
            let want = Row::from_proto(bt::Row::decode(encoded.clone()).unwrap());
            prop_assert_eq!(decode_row(encoded).unwrap(), want);
        }

        #[test]
        fn never_panics_on_garbage(buf in proptest::collection::vec(any::<u8>(), 0..64)) {
            let buf = Bytes::from(buf);
            let ours = decode_row(buf.clone()).map_err(|e| e.to_string());
            let prost = bt::Row::decode(buf).map(Row::from_proto);
            prop_assert_eq!(ours.is_ok(), prost.is_ok(), "{:?}", ours);
        }
    }

    #[test]
    fn names_and_qualifiers_may_follow_their_cells() {
        let cell = field(2, b"v");
        let column = [field(2, &cell), field(1, b"q")].concat();
        let family = [field(2, &column), field(2, &column), field(1, b"cf")].concat();
        // An unknown field (tag 9, varint) in the middle is skipped.
        let row = [field(2, &family), vec![9 << 3, 1], field(1, b"r")].concat();
        let row = decode_row(Bytes::from(row)).unwrap();
        assert_eq!(row.key, Bytes::from("r"));
        assert_eq!(row.cells.len(), 2);
        for c in &row.cells {
            assert_eq!((c.family.as_str(), c.qualifier.as_ref()), ("cf", &b"q"[..]));
            assert_eq!(c.value, Bytes::from("v"));
        }
    }

    #[test]
    fn a_message_of_rows_decodes_row_by_row_into_its_buffer() {
        let rows: Vec<bt::Row> = (0..3)
            .map(|i| bt::Row {
                key: Bytes::from(format!("r{i}")),
                families: vec![bt::Family {
                    name: "cf".into(),
                    columns: vec![bt::Column {
                        qualifier: Bytes::from_static(b"q"),
                        cells: vec![bt::Cell {
                            timestamp_micros: i,
                            value: Bytes::from(vec![b'v'; 10]),
                            labels: vec![],
                        }],
                    }],
                }],
            })
            .collect();
        let mut encoded = Vec::new();
        for row in &rows {
            prost::encoding::bytes::encode(1, &row.encode_to_vec(), &mut encoded);
        }
        // An unknown field between the rows is skipped.
        encoded.extend_from_slice(&[2 << 3, 7]);
        let encoded = Bytes::from(encoded);
        let got = decode_rows(&encoded).unwrap();
        let want: Vec<Row> = rows.into_iter().map(Row::from_proto).collect();
        assert_eq!(got, want);
        let range = encoded.as_ptr_range();
        assert!(
            range.contains(&got[2].cells[0].value.as_ptr()),
            "values point into the buffer"
        );
        assert!(decode_rows(&Bytes::from(vec![(1 << 3) | 2, 9, 0])).is_err());
    }

    #[test]
    fn bad_input_is_an_error() {
        // A key of the wrong wire type, a length past the end, a family name not UTF-8.
        assert!(decode_row(Bytes::from(vec![1 << 3, 1])).is_err());
        assert!(matches!(
            decode_row(Bytes::from(vec![(1 << 3) | 2, 5, b'r'])),
            Err(RowDecodeError::Truncated)
        ));
        let family = field(1, &[0xff]);
        assert!(matches!(
            decode_row(Bytes::from(field(2, &family))),
            Err(RowDecodeError::NotUtf8("family name"))
        ));
    }
}
