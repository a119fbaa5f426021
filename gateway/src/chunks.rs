//! `ReadRows`' chunked response protocol: a `Row` as `CellChunk`s, packed into
//! `ReadRowsResponse` messages. Pure.
//!
//! The protocol (google/bigtable/v2/bigtable.proto, `ReadRowsResponse.CellChunk`), as the
//! official clients' row mergers check it:
//! - the first chunk of a row carries its key, every later chunk of the row leaves it empty;
//! - `family_name` is set on the first chunk of each family run and `qualifier` on the first
//!   chunk of each column (always with a family change too); timestamps and labels on each
//!   cell's first chunk;
//! - a value larger than `MAX_VALUE_CHUNK_BYTES` is split: every chunk of it but the last
//!   carries `value_size` (the whole value's length), the later ones carry only value bytes;
//! - the row's last chunk has `commit_row`. Rows without cells are never sent.
//!
//! A message holds the chunks of whole rows up to about `MAX_MESSAGE_BYTES` (a row larger
//! than that spans several messages), so no message passes gRPC's usual 4 MiB client limit.
//!
//! Progress past rows the filter removed is a message of its own with no chunks and
//! `last_scanned_row_key`, after the message holding the rows before it: rows are pushed
//! whole, so it never falls in the middle of a row.

use tabula_client::Row;
use tabula_proto::google::bigtable::v2 as bt;

use bt::read_rows_response::CellChunk;
use bt::read_rows_response::cell_chunk::RowStatus;

/// The largest piece of a value in one chunk.
pub(crate) const MAX_VALUE_CHUNK_BYTES: usize = 1 << 20;
/// A message is sent once its chunks hold about this many bytes.
pub(crate) const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// The chunks of `row`, in order; empty for a row without cells.
pub(crate) fn row_chunks(row: &Row) -> Vec<CellChunk> {
    let mut out = Vec::new();
    let mut previous: Option<(&str, &[u8])> = None;
    for cell in &row.cells {
        let family_changed = previous.is_none_or(|(f, _)| f != cell.family);
        let column_changed =
            family_changed || previous.is_none_or(|(_, q)| q != cell.qualifier.as_ref());
        previous = Some((cell.family.as_str(), cell.qualifier.as_ref()));
        let pieces: Vec<&[u8]> = if cell.value.is_empty() {
            vec![&[][..]]
        } else {
            cell.value.chunks(MAX_VALUE_CHUNK_BYTES).collect()
        };
        let split = pieces.len() > 1;
        let last_piece = pieces.len() - 1;
        for (i, piece) in pieces.into_iter().enumerate() {
            let first = i == 0;
            out.push(CellChunk {
                row_key: if first && out.is_empty() {
                    row.key.to_vec()
                } else {
                    Vec::new()
                },
                family_name: (first && family_changed).then(|| cell.family.clone()),
                qualifier: (first && column_changed).then(|| cell.qualifier.to_vec()),
                timestamp_micros: if first { cell.timestamp_micros } else { 0 },
                labels: if first {
                    cell.labels.clone()
                } else {
                    Vec::new()
                },
                value: piece.to_vec(),
                value_size: if split && i < last_piece {
                    i32::try_from(cell.value.len()).unwrap_or(i32::MAX)
                } else {
                    0
                },
                row_status: None,
            });
        }
    }
    if let Some(last) = out.last_mut() {
        last.row_status = Some(RowStatus::CommitRow(true));
    }
    out
}

/// Packs rows' chunks into messages: `push` a row, `take` the messages ready to send.
#[derive(Debug, Default)]
pub(crate) struct Packer {
    current: Vec<CellChunk>,
    current_bytes: usize,
    ready: Vec<bt::ReadRowsResponse>,
}

impl Packer {
    /// Adds `row`'s chunks; a full message becomes ready.
    pub(crate) fn push(&mut self, row: &Row) {
        for chunk in row_chunks(row) {
            self.current_bytes += chunk.value.len() + chunk.row_key.len() + 64;
            self.current.push(chunk);
            if self.current_bytes >= MAX_MESSAGE_BYTES {
                self.seal();
            }
        }
    }

    /// The scan looked at every row up to `key` (reversed: down to it): the chunks so far
    /// become a message, then a message with no chunks and `last_scanned_row_key` follows.
    /// The caller passes only keys beyond every row pushed, in scan direction.
    pub(crate) fn scanned(&mut self, key: &[u8]) {
        self.seal();
        self.ready.push(bt::ReadRowsResponse {
            last_scanned_row_key: key.to_vec(),
            ..Default::default()
        });
    }

    /// Makes the chunks so far a message.
    pub(crate) fn seal(&mut self) {
        if !self.current.is_empty() {
            self.ready.push(bt::ReadRowsResponse {
                chunks: std::mem::take(&mut self.current),
                ..Default::default()
            });
            self.current_bytes = 0;
        }
    }

    /// The messages ready to send.
    pub(crate) fn take(&mut self) -> Vec<bt::ReadRowsResponse> {
        std::mem::take(&mut self.ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use tabula_client::Cell;

    fn cell(family: &str, qualifier: &str, ts: i64, value: Vec<u8>) -> Cell {
        Cell {
            family: family.into(),
            qualifier: Bytes::from(qualifier.to_owned()),
            timestamp_micros: ts,
            value: Bytes::from(value),
            labels: vec![],
        }
    }

    #[test]
    fn families_and_qualifiers_are_set_on_their_first_chunk_only() {
        let row = Row {
            key: Bytes::from("r1"),
            cells: vec![
                cell("a", "x", 2_000, b"new".to_vec()),
                cell("a", "x", 1_000, b"old".to_vec()),
                cell("a", "y", 1_000, b"".to_vec()),
                cell("b", "y", 3_000, b"z".to_vec()),
            ],
        };
        let c = row_chunks(&row);
        assert_eq!(c.len(), 4);
        assert_eq!(c[0].row_key, b"r1");
        assert!(c[1..].iter().all(|c| c.row_key.is_empty()));
        let names: Vec<_> = c
            .iter()
            .map(|c| (c.family_name.as_deref(), c.qualifier.as_deref()))
            .collect();
        assert_eq!(
            names,
            vec![
                (Some("a"), Some(&b"x"[..])),
                (None, None),
                (None, Some(&b"y"[..])),
                (Some("b"), Some(&b"y"[..])),
            ]
        );
        assert_eq!(
            c.iter().map(|c| c.timestamp_micros).collect::<Vec<_>>(),
            vec![2_000, 1_000, 1_000, 3_000]
        );
        assert!(c[..3].iter().all(|c| c.row_status.is_none()));
        assert_eq!(c[3].row_status, Some(RowStatus::CommitRow(true)));
        assert!(
            row_chunks(&Row {
                key: Bytes::from("e"),
                cells: vec![]
            })
            .is_empty()
        );
    }

    #[test]
    fn large_values_are_split_with_value_size_on_all_but_the_last_piece() {
        let big = vec![7u8; 2 * MAX_VALUE_CHUNK_BYTES + 10];
        let row = Row {
            key: Bytes::from("r"),
            cells: vec![cell("f", "q", 5_000, big.clone())],
        };
        let c = row_chunks(&row);
        assert_eq!(c.len(), 3);
        let total = i32::try_from(big.len()).unwrap_or(i32::MAX);
        assert_eq!(
            c.iter().map(|c| c.value_size).collect::<Vec<_>>(),
            vec![total, total, 0]
        );
        assert_eq!(c[0].family_name.as_deref(), Some("f"));
        assert!(c[1].family_name.is_none() && c[1].qualifier.is_none());
        assert_eq!(c[1].timestamp_micros, 0);
        let joined: Vec<u8> = c.iter().flat_map(|c| c.value.clone()).collect();
        assert_eq!(joined, big);
        assert_eq!(c[2].row_status, Some(RowStatus::CommitRow(true)));

        let mut packer = Packer::default();
        packer.push(&row);
        packer.seal();
        let messages = packer.take();
        assert!(messages.len() >= 2, "{}", messages.len());
        assert_eq!(messages.iter().map(|m| m.chunks.len()).sum::<usize>(), 3);
    }

    #[test]
    fn progress_follows_the_rows_before_it_in_a_message_of_its_own() {
        let mut packer = Packer::default();
        packer.push(&Row {
            key: Bytes::from("a"),
            cells: vec![cell("f", "q", 0, b"v".to_vec())],
        });
        packer.scanned(b"m");
        packer.scanned(b"p");
        let m = packer.take();
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].chunks.len(), 1);
        assert!(m[0].last_scanned_row_key.is_empty());
        assert!(m[1].chunks.is_empty() && m[2].chunks.is_empty());
        assert_eq!(m[1].last_scanned_row_key, b"m");
        assert_eq!(m[2].last_scanned_row_key, b"p");
    }

    #[test]
    fn small_rows_share_a_message() {
        let mut packer = Packer::default();
        for k in ["a", "b", "c"] {
            packer.push(&Row {
                key: Bytes::from(k),
                cells: vec![cell("f", "q", 0, b"v".to_vec())],
            });
        }
        assert!(packer.take().is_empty());
        packer.seal();
        let m = packer.take();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].chunks.len(), 3);
        packer.seal();
        assert!(packer.take().is_empty());
    }
}
