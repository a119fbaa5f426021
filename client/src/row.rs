//! `Row` and `Cell`: what reads answer, converted from Cloud Bigtable v2's `Row` (families ->
//! columns -> cells) into one flat, ordered list of cells.

use bytes::Bytes;
use tabula_proto::google::bigtable::v2 as bt;

/// One cell of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// Its column family.
    pub family: String,
    /// Its qualifier.
    pub qualifier: Bytes,
    /// Microseconds.
    pub timestamp_micros: i64,
    /// Its value.
    pub value: Bytes,
    /// Labels a filter attached.
    pub labels: Vec<String>,
}

/// A row as a read returned it: its key and cells, ordered by family, qualifier, then
/// timestamp (newest first), as the server sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The row key.
    pub key: Bytes,
    /// Its cells.
    pub cells: Vec<Cell>,
}

impl Row {
    /// From the wire form.
    pub fn from_proto(row: bt::Row) -> Row {
        let count = row
            .families
            .iter()
            .flat_map(|f| &f.columns)
            .map(|c| c.cells.len())
            .sum();
        let mut cells = Vec::with_capacity(count);
        for mut family in row.families {
            // The family's name is cloned for all its cells but the last, which takes it.
            let mut left: usize = family.columns.iter().map(|c| c.cells.len()).sum();
            for column in family.columns {
                let qualifier = column.qualifier;
                for cell in column.cells {
                    left -= 1;
                    cells.push(Cell {
                        family: if left == 0 {
                            std::mem::take(&mut family.name)
                        } else {
                            family.name.clone()
                        },
                        qualifier: qualifier.clone(),
                        timestamp_micros: cell.timestamp_micros,
                        value: cell.value,
                        labels: cell.labels,
                    });
                }
            }
        }
        Row {
            key: row.key,
            cells,
        }
    }

    /// The cells of `family:qualifier`, newest first.
    pub fn cells_of<'a>(
        &'a self,
        family: &'a str,
        qualifier: &'a [u8],
    ) -> impl Iterator<Item = &'a Cell> + 'a {
        self.cells
            .iter()
            .filter(move |c| c.family == family && c.qualifier.as_ref() == qualifier)
    }

    /// The newest value of `family:qualifier`, if any.
    pub fn value(&self, family: &str, qualifier: &[u8]) -> Option<&Bytes> {
        self.cells
            .iter()
            .find(|c| c.family == family && c.qualifier.as_ref() == qualifier)
            .map(|c| &c.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wire_row_flattens_in_order() {
        let cell = |ts, v: &[u8]| bt::Cell {
            timestamp_micros: ts,
            value: Bytes::copy_from_slice(v),
            labels: vec![],
        };
        let wire = bt::Row {
            key: Bytes::from_static(b"r"),
            families: vec![
                bt::Family {
                    name: "cf".into(),
                    columns: vec![
                        bt::Column {
                            qualifier: Bytes::from_static(b"a"),
                            cells: vec![cell(2, b"new"), cell(1, b"old")],
                        },
                        bt::Column {
                            qualifier: Bytes::from_static(b"b"),
                            cells: vec![cell(5, b"x")],
                        },
                    ],
                },
                bt::Family {
                    name: "f2".into(),
                    columns: vec![bt::Column {
                        qualifier: Bytes::from_static(b"a"),
                        cells: vec![cell(7, b"y")],
                    }],
                },
            ],
        };
        let row = Row::from_proto(wire);
        assert_eq!(row.key, Bytes::from("r"));
        let families: Vec<&str> = row.cells.iter().map(|c| c.family.as_str()).collect();
        assert_eq!(families, ["cf", "cf", "cf", "f2"]);
        assert_eq!(row.value("f2", b"a"), Some(&Bytes::from("y")));
        assert_eq!(row.value("cf", b"a"), Some(&Bytes::from("new")));
        assert_eq!(row.cells_of("cf", b"a").count(), 2);
        assert_eq!(row.value("cf", b"b"), Some(&Bytes::from("x")));
        assert_eq!(row.value("cf", b"c"), None);
    }
}
