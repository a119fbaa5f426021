//! What a client asks of one row: a list of mutations applied atomically, in order.
//!
//! `RowMutation::validate` enforces the limits of DESIGN.md section 2; `into_entries` turns a
//! validated mutation (server timestamps already resolved) into memtable entries with one
//! sequence number each; `encode`/`decode` are the commit-log payload codec.
//!
//! `AddToCell` exists only before a write is applied: `Tablet::resolve_aggregates` (under the
//! row's lock) turns each into the `SetCell` of the cell's new sum (`engine::aggregate`), and
//! `validate` refuses one still unresolved, so the commit log only ever holds the four kinds
//! below and replay needs nothing new:
//!
//! ```text
//! payload  = version:u8 (=1) | row_len:varint | row | count:varint | mutation*
//! mutation = tag:u8 | fields
//!   tag 1 SetCell          family:lenbytes qualifier:lenbytes timestamp:i64le value:lenbytes
//!   tag 2 DeleteFromColumn family:lenbytes qualifier:lenbytes start:i64le end:i64le
//!   tag 3 DeleteFromFamily family:lenbytes
//!   tag 4 DeleteFromRow
//! lenbytes = len:varint | bytes
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::key::{CellKey, Entry, Seq, Value};

/// Longest row key of a user table.
pub const MAX_ROW_BYTES: usize = 4 * 1024;
/// Longest row key of the root and METADATA tables, whose keys are a user table's end row
/// behind a 9-byte prefix (`tabula_common::meta::row_key`); also the engine's own limit.
pub const MAX_SYSTEM_ROW_BYTES: usize = MAX_ROW_BYTES + 64;
/// Longest qualifier.
pub const MAX_QUALIFIER_BYTES: usize = 16 * 1024;
/// Largest value.
pub const MAX_VALUE_BYTES: usize = 100 * 1024 * 1024;
/// Most mutations in one row mutation.
pub const MAX_MUTATIONS: usize = 100_000;
/// Longest family name.
pub const MAX_FAMILY_BYTES: usize = 64;

/// One change to a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Writes a cell; `timestamp = -1` asks for server time.
    SetCell {
        /// Column family.
        family: Bytes,
        /// Qualifier.
        qualifier: Bytes,
        /// Microseconds, or -1 for server time.
        timestamp: i64,
        /// Value.
        value: Bytes,
    },
    /// Deletes a column's cells with `start <= timestamp < end`.
    DeleteFromColumn {
        /// Column family.
        family: Bytes,
        /// Qualifier.
        qualifier: Bytes,
        /// First timestamp deleted.
        start: i64,
        /// First timestamp kept (`i64::MAX`: no end).
        end: i64,
    },
    /// Deletes every cell of a family in the row.
    DeleteFromFamily {
        /// Column family.
        family: Bytes,
    },
    /// Deletes every cell of the row.
    DeleteFromRow,
    /// Adds `input` into the Sum-of-Int64 cell at exactly `(family, qualifier, timestamp)`
    /// (absent = 0). Resolved into a `SetCell` before the write is logged; never logged itself.
    AddToCell {
        /// An aggregate column family.
        family: Bytes,
        /// Qualifier.
        qualifier: Bytes,
        /// Microseconds, 0 or more (no server time: the cell to add into is named).
        timestamp: i64,
        /// What to add.
        input: i64,
    },
}

/// A row and the mutations to apply to it atomically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowMutation {
    /// Row key.
    pub row: Bytes,
    /// Applied in order, all or nothing.
    pub mutations: Vec<Mutation>,
}

/// Why a row mutation was refused before anything was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMutation {
    /// Row key empty or too long.
    #[error("row key must be 1..={MAX_SYSTEM_ROW_BYTES} bytes, got {0}")]
    RowKeyLength(usize),
    /// No mutations.
    #[error("a row mutation needs at least one mutation")]
    Empty,
    /// Too many mutations.
    #[error("a row mutation may hold at most {MAX_MUTATIONS} mutations, got {0}")]
    TooManyMutations(usize),
    /// Bad family name.
    #[error("invalid column family name {0:?}: want [_a-zA-Z0-9][-_.a-zA-Z0-9]*, at most 64 bytes")]
    FamilyName(String),
    /// Qualifier too long.
    #[error("qualifier is {0} bytes, more than {MAX_QUALIFIER_BYTES}")]
    QualifierLength(usize),
    /// Value too large.
    #[error("value is {0} bytes, more than {MAX_VALUE_BYTES}")]
    ValueLength(usize),
    /// Timestamp out of range.
    #[error("timestamp {0} is invalid: want -1 (server time) or 0..i64::MAX")]
    Timestamp(i64),
    /// Empty or inverted delete range.
    #[error("delete range [{0}, {1}) is invalid")]
    DeleteRange(i64, i64),
    /// An AddToCell reached the write path without being resolved into a SetCell.
    #[error("AddToCell must be resolved against the row's current cells before it is written")]
    UnresolvedAggregate,
    /// AddToCell on a family that is not an aggregate.
    #[error(
        "column family {0:?} is not an aggregate family; AddToCell needs a family created with \
         an aggregate value type (Sum of Int64)"
    )]
    NotAggregate(String),
    /// SetCell on an aggregate family.
    #[error(
        "column family {0:?} is an aggregate (Sum of Int64) family; write to it with \
         AddToCell, not SetCell"
    )]
    SetCellOnAggregate(String),
    /// An aggregate cell that does not hold 8 bytes.
    #[error("the aggregate cell holds {0} bytes, not an 8-byte big-endian int64")]
    AggregateCellSize(usize),
    /// A timestamp that is not a whole number of milliseconds on a millisecond table.
    #[error(
        "timestamp {0} is not a multiple of 1000: this table keeps timestamps at millisecond \
         granularity"
    )]
    Granularity(i64),
}

/// Why a commit-log payload did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt row mutation payload: {0}")]
pub struct DecodeError(pub &'static str);

/// Whether `name` is a valid column family name.
pub fn valid_family_name(name: &[u8]) -> bool {
    let ok_first = |c: u8| c == b'_' || c.is_ascii_alphanumeric();
    let ok_rest = |c: u8| ok_first(c) || c == b'-' || c == b'.';
    match name.split_first() {
        Some((first, rest)) => {
            name.len() <= MAX_FAMILY_BYTES && ok_first(*first) && rest.iter().all(|c| ok_rest(*c))
        }
        None => false,
    }
}

impl Mutation {
    /// The family this mutation touches, if any.
    pub fn family(&self) -> Option<&Bytes> {
        match self {
            Mutation::SetCell { family, .. }
            | Mutation::DeleteFromColumn { family, .. }
            | Mutation::DeleteFromFamily { family }
            | Mutation::AddToCell { family, .. } => Some(family),
            Mutation::DeleteFromRow => None,
        }
    }

    fn validate(&self) -> Result<(), InvalidMutation> {
        if let Some(f) = self.family()
            && !valid_family_name(f)
        {
            return Err(InvalidMutation::FamilyName(
                String::from_utf8_lossy(f).into_owned(),
            ));
        }
        match self {
            Mutation::SetCell {
                qualifier,
                timestamp,
                value,
                ..
            } => {
                if qualifier.len() > MAX_QUALIFIER_BYTES {
                    return Err(InvalidMutation::QualifierLength(qualifier.len()));
                }
                if value.len() > MAX_VALUE_BYTES {
                    return Err(InvalidMutation::ValueLength(value.len()));
                }
                if *timestamp < -1 || *timestamp == i64::MAX {
                    return Err(InvalidMutation::Timestamp(*timestamp));
                }
            }
            Mutation::DeleteFromColumn {
                qualifier,
                start,
                end,
                ..
            } => {
                if qualifier.len() > MAX_QUALIFIER_BYTES {
                    return Err(InvalidMutation::QualifierLength(qualifier.len()));
                }
                if *start < 0 || end <= start {
                    return Err(InvalidMutation::DeleteRange(*start, *end));
                }
            }
            Mutation::DeleteFromFamily { .. } | Mutation::DeleteFromRow => {}
            Mutation::AddToCell { .. } => return Err(InvalidMutation::UnresolvedAggregate),
        }
        Ok(())
    }
}

impl RowMutation {
    /// Checks every limit; a mutation that passes can be logged and applied.
    pub fn validate(&self) -> Result<(), InvalidMutation> {
        if self.row.is_empty() || self.row.len() > MAX_SYSTEM_ROW_BYTES {
            return Err(InvalidMutation::RowKeyLength(self.row.len()));
        }
        if self.mutations.is_empty() {
            return Err(InvalidMutation::Empty);
        }
        if self.mutations.len() > MAX_MUTATIONS {
            return Err(InvalidMutation::TooManyMutations(self.mutations.len()));
        }
        self.mutations.iter().try_for_each(Mutation::validate)
    }

    /// Whether any mutation is an `AddToCell` (resolving it reads the row).
    pub fn has_aggregate_adds(&self) -> bool {
        self.mutations
            .iter()
            .any(|m| matches!(m, Mutation::AddToCell { .. }))
    }

    /// Whether any SetCell asks for server time.
    pub fn needs_server_time(&self) -> bool {
        self.mutations
            .iter()
            .any(|m| matches!(m, Mutation::SetCell { timestamp: -1, .. }))
    }

    /// Replaces every `-1` timestamp with `now`.
    pub fn resolve_server_time(&mut self, now: i64) {
        for m in &mut self.mutations {
            if let Mutation::SetCell { timestamp, .. } = m
                && *timestamp == -1
            {
                *timestamp = now;
            }
        }
    }

    /// The entries this mutation writes, the i-th with sequence number `first_seq + i`.
    pub fn to_entries(&self, first_seq: Seq) -> Vec<Entry> {
        self.clone().into_entries(first_seq)
    }

    /// As `to_entries`, with every byte string of the entries (the row once, each family,
    /// qualifier and value) copied into one buffer they all point into. A memtable scan clones
    /// each entry's four `Bytes`; sharing one reference count keeps that to one cache line per
    /// row mutation instead of four lines per cell (the clones were 16% of a tablet server's
    /// samples under short scans).
    pub fn into_entries(self, first_seq: Seq) -> Vec<Entry> {
        let mut entries = self.into_loose_entries(first_seq);
        pack(&mut entries);
        entries
    }

    /// The entries, each byte string as the mutation held it.
    fn into_loose_entries(self, first_seq: Seq) -> Vec<Entry> {
        let row = self.row;
        self.mutations
            .into_iter()
            .zip(first_seq..)
            .map(|(m, seq)| {
                let (family, qualifier, timestamp, value) = match m {
                    Mutation::SetCell {
                        family,
                        qualifier,
                        timestamp,
                        value,
                    } => (family, Some(qualifier), timestamp, Value::Put(value)),
                    Mutation::DeleteFromColumn {
                        family,
                        qualifier,
                        start,
                        end,
                    } => (
                        family,
                        Some(qualifier),
                        i64::MAX,
                        Value::DeleteColumn { start, end },
                    ),
                    Mutation::DeleteFromFamily { family } => {
                        (family, None, i64::MAX, Value::DeleteFamily)
                    }
                    Mutation::DeleteFromRow => (Bytes::new(), None, i64::MAX, Value::DeleteRow),
                    // `validate` refuses an unresolved add; written anyway, it is the sum of
                    // an absent cell, as `encode` logs it, so replay agrees.
                    Mutation::AddToCell {
                        family,
                        qualifier,
                        timestamp,
                        input,
                    } => (
                        family,
                        Some(qualifier),
                        timestamp,
                        Value::Put(Bytes::copy_from_slice(&input.to_be_bytes())),
                    ),
                };
                Entry {
                    key: CellKey {
                        row: row.clone(),
                        family,
                        qualifier,
                        timestamp,
                        seq,
                    },
                    value,
                }
            })
            .collect()
    }

    /// Bytes of payload this mutation carries, roughly.
    pub fn approximate_size(&self) -> usize {
        self.row.len()
            + self
                .mutations
                .iter()
                .map(|m| match m {
                    Mutation::SetCell {
                        family,
                        qualifier,
                        value,
                        ..
                    } => family.len() + qualifier.len() + value.len() + 16,
                    Mutation::DeleteFromColumn {
                        family, qualifier, ..
                    } => family.len() + qualifier.len() + 24,
                    Mutation::DeleteFromFamily { family } => family.len() + 4,
                    Mutation::DeleteFromRow => 4,
                    Mutation::AddToCell {
                        family, qualifier, ..
                    } => family.len() + qualifier.len() + 24,
                })
                .sum::<usize>()
    }

    /// The commit-log payload.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.approximate_size() + 16);
        out.put_u8(1);
        put_bytes(&mut out, &self.row);
        put_varint(&mut out, self.mutations.len() as u64);
        for m in &self.mutations {
            match m {
                Mutation::SetCell {
                    family,
                    qualifier,
                    timestamp,
                    value,
                } => {
                    out.put_u8(1);
                    put_bytes(&mut out, family);
                    put_bytes(&mut out, qualifier);
                    out.put_i64_le(*timestamp);
                    put_bytes(&mut out, value);
                }
                Mutation::DeleteFromColumn {
                    family,
                    qualifier,
                    start,
                    end,
                } => {
                    out.put_u8(2);
                    put_bytes(&mut out, family);
                    put_bytes(&mut out, qualifier);
                    out.put_i64_le(*start);
                    out.put_i64_le(*end);
                }
                Mutation::DeleteFromFamily { family } => {
                    out.put_u8(3);
                    put_bytes(&mut out, family);
                }
                Mutation::DeleteFromRow => out.put_u8(4),
                // Never logged (see `into_entries`): as the SetCell of an absent cell.
                Mutation::AddToCell {
                    family,
                    qualifier,
                    timestamp,
                    input,
                } => {
                    out.put_u8(1);
                    put_bytes(&mut out, family);
                    put_bytes(&mut out, qualifier);
                    out.put_i64_le(*timestamp);
                    put_bytes(&mut out, &input.to_be_bytes());
                }
            }
        }
        out.freeze()
    }

    /// Decodes a commit-log payload; never panics on bad input.
    pub fn decode(mut buf: Bytes) -> Result<RowMutation, DecodeError> {
        if get_u8(&mut buf)? != 1 {
            return Err(DecodeError("unknown payload version"));
        }
        let row = get_bytes(&mut buf)?;
        let count = get_varint(&mut buf)?;
        if count > MAX_MUTATIONS as u64 {
            return Err(DecodeError("too many mutations"));
        }
        let mut mutations = Vec::with_capacity((count as usize).min(buf.remaining()));
        for _ in 0..count {
            let m = match get_u8(&mut buf)? {
                1 => Mutation::SetCell {
                    family: get_bytes(&mut buf)?,
                    qualifier: get_bytes(&mut buf)?,
                    timestamp: get_i64(&mut buf)?,
                    value: get_bytes(&mut buf)?,
                },
                2 => Mutation::DeleteFromColumn {
                    family: get_bytes(&mut buf)?,
                    qualifier: get_bytes(&mut buf)?,
                    start: get_i64(&mut buf)?,
                    end: get_i64(&mut buf)?,
                },
                3 => Mutation::DeleteFromFamily {
                    family: get_bytes(&mut buf)?,
                },
                4 => Mutation::DeleteFromRow,
                _ => return Err(DecodeError("unknown mutation tag")),
            };
            mutations.push(m);
        }
        if buf.has_remaining() {
            return Err(DecodeError("trailing bytes"));
        }
        Ok(RowMutation { row, mutations })
    }
}

fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.put_slice(b);
}

fn get_u8(buf: &mut Bytes) -> Result<u8, DecodeError> {
    if buf.has_remaining() {
        Ok(buf.get_u8())
    } else {
        Err(DecodeError("truncated"))
    }
}

fn get_i64(buf: &mut Bytes) -> Result<i64, DecodeError> {
    if buf.remaining() >= 8 {
        Ok(buf.get_i64_le())
    } else {
        Err(DecodeError("truncated"))
    }
}

fn get_varint(buf: &mut Bytes) -> Result<u64, DecodeError> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = get_u8(buf)?;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err(DecodeError("varint too long"))
}

fn get_bytes(buf: &mut Bytes) -> Result<Bytes, DecodeError> {
    let len = get_varint(buf)?;
    if len > buf.remaining() as u64 {
        return Err(DecodeError("length past the end"));
    }
    Ok(buf.split_to(len as usize))
}

/// Copies the byte strings of `entries` (which share one row) into one buffer and points the
/// entries into it; see `RowMutation::into_entries`.
fn pack(entries: &mut [Entry]) {
    let Some(first) = entries.first() else {
        return;
    };
    let row_len = first.key.row.len();
    let total = row_len
        + entries
            .iter()
            .map(|e| {
                e.key.family.len()
                    + e.key.qualifier.as_ref().map_or(0, Bytes::len)
                    + match &e.value {
                        Value::Put(v) => v.len(),
                        _ => 0,
                    }
            })
            .sum::<usize>();
    let mut buf = BytesMut::with_capacity(total);
    buf.extend_from_slice(&first.key.row);
    for e in entries.iter() {
        buf.extend_from_slice(&e.key.family);
        if let Some(q) = &e.key.qualifier {
            buf.extend_from_slice(q);
        }
        if let Value::Put(v) = &e.value {
            buf.extend_from_slice(v);
        }
    }
    let buf = buf.freeze();
    let row = buf.slice(..row_len);
    let mut at = row_len;
    let mut take = |len: usize| {
        let piece = buf.slice(at..at + len);
        at += len;
        piece
    };
    for e in entries.iter_mut() {
        debug_assert_eq!(e.key.row, row);
        e.key.row = row.clone();
        e.key.family = take(e.key.family.len());
        if let Some(q) = &mut e.key.qualifier {
            *q = take(q.len());
        }
        if let Value::Put(v) = &mut e.value {
            *v = take(v.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn sample() -> RowMutation {
        RowMutation {
            row: b("row1"),
            mutations: vec![
                Mutation::SetCell {
                    family: b("cf"),
                    qualifier: b("q"),
                    timestamp: -1,
                    value: b("v"),
                },
                Mutation::DeleteFromColumn {
                    family: b("cf"),
                    qualifier: b(""),
                    start: 0,
                    end: 9,
                },
                Mutation::DeleteFromFamily { family: b("cf2") },
                Mutation::DeleteFromRow,
            ],
        }
    }

    #[test]
    fn entries_are_packed_into_one_buffer_with_the_same_contents() {
        let mut m = sample();
        m.mutations.push(Mutation::SetCell {
            family: b("cf"),
            qualifier: b("q2"),
            timestamp: 5,
            value: Bytes::from(vec![7u8; 300]),
        });
        let loose = m.clone().into_loose_entries(40);
        let packed = m.into_entries(40);
        assert_eq!(packed, loose);
        // Every non-empty byte string lies inside the first entry's row buffer's allocation:
        // the row comes first, then the rest in order, with no gaps.
        let start = packed[0].key.row.as_ptr() as usize;
        let mut end = start + packed[0].key.row.len();
        for e in &packed {
            assert_eq!(e.key.row.as_ptr() as usize, start);
            let mut pieces = vec![&e.key.family];
            pieces.extend(e.key.qualifier.as_ref());
            if let Value::Put(v) = &e.value {
                pieces.push(v);
            }
            for piece in pieces.into_iter().filter(|p| !p.is_empty()) {
                assert_eq!(piece.as_ptr() as usize, end, "{e:?}");
                end += piece.len();
            }
        }
        assert_eq!(end - start, 4 + 2 + 1 + 1 + 2 + 3 + 2 + 2 + 300);
        let empty = RowMutation {
            row: b("r"),
            mutations: vec![],
        };
        assert!(empty.into_entries(1).is_empty());
    }

    #[test]
    fn validation_enforces_limits() {
        assert_eq!(sample().validate(), Ok(()));
        let mut m = sample();
        m.row = Bytes::new();
        assert_eq!(m.validate(), Err(InvalidMutation::RowKeyLength(0)));
        m.row = Bytes::from(vec![b'x'; MAX_SYSTEM_ROW_BYTES + 1]);
        assert!(m.validate().is_err());
        let set = |family: &str, ts: i64| RowMutation {
            row: b("r"),
            mutations: vec![Mutation::SetCell {
                family: b(family),
                qualifier: b("q"),
                timestamp: ts,
                value: b("v"),
            }],
        };
        assert!(set("bad name", 1).validate().is_err());
        assert!(set("-x", 1).validate().is_err());
        assert!(set("ok_.-9", 1).validate().is_ok());
        assert_eq!(
            set("cf", -2).validate(),
            Err(InvalidMutation::Timestamp(-2))
        );
        let empty = RowMutation {
            row: b("r"),
            mutations: vec![],
        };
        assert_eq!(empty.validate(), Err(InvalidMutation::Empty));
    }

    #[test]
    fn entries_take_consecutive_seqs_and_sort_as_documented() {
        let mut m = sample();
        m.resolve_server_time(77);
        let entries = m.to_entries(10);
        let seqs: Vec<_> = entries.iter().map(|e| e.key.seq).collect();
        assert_eq!(seqs, vec![10, 11, 12, 13]);
        assert_eq!(entries[0].key.timestamp, 77);
        assert_eq!(entries[3].value, Value::DeleteRow);
        assert!(entries[3].key < entries[0].key, "row tombstone sorts first");
    }

    #[test]
    fn truncated_payloads_are_errors() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(
                RowMutation::decode(bytes.slice(..len)).is_err(),
                "len {len}"
            );
        }
        assert_eq!(RowMutation::decode(bytes).unwrap(), sample());
    }

    fn arb_mutation() -> impl Strategy<Value = Mutation> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..8).prop_map(Bytes::from);
        prop_oneof![
            (bytes(), bytes(), any::<i64>(), bytes()).prop_map(|(f, q, t, v)| Mutation::SetCell {
                family: f,
                qualifier: q,
                timestamp: t,
                value: v
            }),
            (bytes(), bytes(), any::<i64>(), any::<i64>()).prop_map(|(f, q, s, e)| {
                Mutation::DeleteFromColumn {
                    family: f,
                    qualifier: q,
                    start: s,
                    end: e,
                }
            }),
            bytes().prop_map(|f| Mutation::DeleteFromFamily { family: f }),
            Just(Mutation::DeleteFromRow),
        ]
    }

    proptest! {
        #[test]
        fn payload_round_trips(
            row in proptest::collection::vec(any::<u8>(), 0..16),
            ms in proptest::collection::vec(arb_mutation(), 0..8),
        ) {
            let m = RowMutation { row: Bytes::from(row), mutations: ms };
            prop_assert_eq!(RowMutation::decode(m.encode()).unwrap(), m);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = RowMutation::decode(Bytes::from(data));
        }
    }
}
