//! Filtered cells and their conversion into a `google.bigtable.v2.Row` message.

use bytes::Bytes;
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

#[cfg(test)]
mod tests {
    use super::*;

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
