//! One node of the continuous-ingest linked list: its 16-byte key, derived from the writer's
//! seed and the node's count; its cells; the checksum over them; and the decoding of a row read
//! back. Pure.
//!
//! Row layout (family [`FAMILY`], every value big-endian):
//!
//! ```text
//! row key  16 bytes  node_key(writer, count)
//! prev     0 or 16   the key of the node this one points to (empty: none yet)
//! writer    8 bytes  the writer's seed
//! count     8 bytes  the node's number within its writer
//! crc       4 bytes  CRC-32C over key | len(prev) as 1 byte | prev | writer | count
//! ```
//!
//! A node is first written at timestamp [`WRITE_MICROS`]; closing a loop rewrites all four cells
//! at [`RELINK_MICROS`], so the newest version is the relinked one whatever order the two writes
//! (and any retried duplicate of the first) reach the server in.
//!
//! The key is a 4-round Feistel network over the 128 bits `(seed, count)` with a 64-bit mixing
//! function as its round function: a bijection, so distinct `(seed, count)` pairs never share a
//! key, and the keys of consecutive counts spread uniformly over the key space (every tablet of
//! an evenly pre-split table gets its share of the load).

use std::fmt;

use bytes::Bytes;
use tabula_client::{Mutation, Row};

/// The column family of the ingest table.
pub(super) const FAMILY: &str = "ci";
/// Qualifier of the pointer to the previous node.
pub(super) const PREV: &str = "prev";
/// Qualifier of the writer's seed.
pub(super) const WRITER: &str = "writer";
/// Qualifier of the node's count.
pub(super) const COUNT: &str = "count";
/// Qualifier of the checksum.
pub(super) const CRC: &str = "crc";
/// Timestamp (microseconds) of a node's first write.
pub(super) const WRITE_MICROS: i64 = 1;
/// Timestamp of the rewrite that closes a loop; newer than the first write.
pub(super) const RELINK_MICROS: i64 = 2;

/// A node's row key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct NodeKey(pub(super) [u8; 16]);

impl NodeKey {
    /// The key of a row, if it has the length of one.
    pub(super) fn from_slice(bytes: &[u8]) -> Option<NodeKey> {
        Some(NodeKey(bytes.try_into().ok()?))
    }
}

impl fmt::Display for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({self})")
    }
}

/// Lowercase hex of `bytes`.
pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// A 64-bit mixing function (the splitmix64 finalizer) keyed by a round constant.
fn mix(x: u64, round: u64) -> u64 {
    let mut z = x ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The key of node `count` of the writer with `seed`.
pub(super) fn node_key(seed: u64, count: u64) -> NodeKey {
    let (mut left, mut right) = (seed, count);
    for round in 1..=4 {
        let next = left ^ mix(right, round);
        left = right;
        right = next;
    }
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&left.to_be_bytes());
    key[8..].copy_from_slice(&right.to_be_bytes());
    NodeKey(key)
}

/// `count - 1` split keys cutting the key space into `count` equal row ranges (8-byte prefixes
/// `i * 2^64 / count`); none for a count of 0 or 1.
pub(super) fn split_keys(count: u32) -> Vec<Vec<u8>> {
    (1..count.max(1))
        .map(|i| {
            let point = (u128::from(i) << 64) / u128::from(count);
            u64::try_from(point)
                .unwrap_or(u64::MAX)
                .to_be_bytes()
                .to_vec()
        })
        .collect()
}

/// A node as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Node {
    /// Its key.
    pub(super) key: NodeKey,
    /// The node it points to, if any.
    pub(super) prev: Option<NodeKey>,
    /// Its writer's seed.
    pub(super) writer: u64,
    /// Its number within the writer.
    pub(super) count: u64,
}

impl Node {
    /// Node `count` of writer `seed`, pointing at `prev`.
    pub(super) fn new(seed: u64, count: u64, prev: Option<NodeKey>) -> Node {
        Node {
            key: node_key(seed, count),
            prev,
            writer: seed,
            count,
        }
    }

    /// The checksum stored in its `crc` cell.
    pub(super) fn crc(&self) -> u32 {
        checksum(&self.key.0, self.prev_bytes(), self.writer, self.count)
    }

    fn prev_bytes(&self) -> &[u8] {
        self.prev.as_ref().map_or(&[], |p| &p.0[..])
    }

    /// The cells that write it at `micros`: `prev`, `writer`, `count`, `crc`.
    pub(super) fn mutations(&self, micros: i64) -> Vec<Mutation> {
        let cell = |qualifier: &'static str, value: Vec<u8>| {
            Mutation::set_cell(FAMILY, qualifier, value).at(micros)
        };
        vec![
            cell(PREV, self.prev_bytes().to_vec()),
            cell(WRITER, self.writer.to_be_bytes().to_vec()),
            cell(COUNT, self.count.to_be_bytes().to_vec()),
            cell(CRC, self.crc().to_be_bytes().to_vec()),
        ]
    }

    /// The `mutate_rows` entry that writes it at `micros`.
    pub(super) fn entry(&self, micros: i64) -> (Bytes, Vec<Mutation>) {
        (Bytes::copy_from_slice(&self.key.0), self.mutations(micros))
    }
}

/// CRC-32C over the node's fields, the prev length making the encoding unambiguous.
fn checksum(key: &[u8], prev: &[u8], writer: u64, count: u64) -> u32 {
    let mut crc = crc32c::crc32c(key);
    crc = crc32c::crc32c_append(crc, &[u8::try_from(prev.len()).unwrap_or(u8::MAX)]);
    crc = crc32c::crc32c_append(crc, prev);
    crc = crc32c::crc32c_append(crc, &writer.to_be_bytes());
    crc32c::crc32c_append(crc, &count.to_be_bytes())
}

/// Why a row read back is not a valid node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Corruption {
    /// The row key is not 16 bytes.
    KeyLength,
    /// A cell is missing or has the wrong length.
    MissingOrMalformedCell(&'static str),
    /// The stored checksum does not match the cells.
    ChecksumMismatch,
    /// The key is not the one `writer` and `count` derive.
    KeyMismatch,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::KeyLength => f.write_str("row key is not 16 bytes"),
            Corruption::MissingOrMalformedCell(q) => {
                write!(f, "cell {FAMILY}:{q} is missing or malformed")
            }
            Corruption::ChecksumMismatch => f.write_str("checksum mismatch"),
            Corruption::KeyMismatch => f.write_str("key does not match writer and count"),
        }
    }
}

/// A row read back: a valid node, or a corrupt row (with its key when it has a node's length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decoded {
    /// A node whose checksum and key match its cells.
    Node(Node),
    /// A row that is not a valid node.
    Corrupt {
        /// The row key.
        row: Bytes,
        /// What is wrong.
        why: Corruption,
    },
}

/// Decodes `row`, using the newest version of each cell.
pub(super) fn decode(row: &Row) -> Decoded {
    match decode_node(row) {
        Ok(node) => Decoded::Node(node),
        Err(why) => Decoded::Corrupt {
            row: row.key.clone(),
            why,
        },
    }
}

fn decode_node(row: &Row) -> Result<Node, Corruption> {
    let key = NodeKey::from_slice(&row.key).ok_or(Corruption::KeyLength)?;
    let cell = |q: &'static str| {
        row.value(FAMILY, q.as_bytes())
            .ok_or(Corruption::MissingOrMalformedCell(q))
    };
    let fixed = |q: &'static str| -> Result<[u8; 8], Corruption> {
        cell(q)?[..]
            .try_into()
            .map_err(|_| Corruption::MissingOrMalformedCell(q))
    };
    let prev_bytes = cell(PREV)?;
    let prev = match prev_bytes.len() {
        0 => None,
        _ => Some(NodeKey::from_slice(prev_bytes).ok_or(Corruption::MissingOrMalformedCell(PREV))?),
    };
    let writer = u64::from_be_bytes(fixed(WRITER)?);
    let count = u64::from_be_bytes(fixed(COUNT)?);
    let crc: [u8; 4] = cell(CRC)?[..]
        .try_into()
        .map_err(|_| Corruption::MissingOrMalformedCell(CRC))?;
    if u32::from_be_bytes(crc) != checksum(&key.0, prev_bytes, writer, count) {
        return Err(Corruption::ChecksumMismatch);
    }
    if node_key(writer, count) != key {
        return Err(Corruption::KeyMismatch);
    }
    Ok(Node {
        key,
        prev,
        writer,
        count,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::HashSet;

    use tabula_client::Cell;

    use super::*;

    /// The row a read returns for `node` after its first write.
    pub(in crate::ingest) fn row_of(node: &Node) -> Row {
        Row {
            key: Bytes::copy_from_slice(&node.key.0),
            cells: node
                .mutations(WRITE_MICROS)
                .into_iter()
                .map(|m| match m {
                    Mutation::SetCell {
                        family,
                        qualifier,
                        timestamp_micros,
                        value,
                    } => Cell {
                        family,
                        qualifier,
                        timestamp_micros,
                        value,
                        labels: Vec::new(),
                    },
                    other => panic!("unexpected mutation {other:?}"),
                })
                .collect(),
        }
    }

    #[test]
    fn keys_are_distinct_deterministic_and_spread_over_the_key_space() {
        assert_eq!(node_key(7, 1), node_key(7, 1));
        let mut seen = HashSet::new();
        let mut quarters = [0u32; 4];
        for seed in [1u64, 2, u64::MAX] {
            for count in 0..10_000u64 {
                let key = node_key(seed, count);
                assert!(seen.insert(key), "{key} repeated");
                quarters[usize::from(key.0[0] >> 6)] += 1;
            }
        }
        // 30,000 keys: each quarter of the key space gets about 7,500.
        for q in quarters {
            assert!((6_500..8_500).contains(&q), "{quarters:?}");
        }
    }

    #[test]
    fn split_keys_cut_the_key_space_evenly() {
        assert!(split_keys(0).is_empty());
        assert!(split_keys(1).is_empty());
        assert_eq!(split_keys(2), vec![vec![0x80, 0, 0, 0, 0, 0, 0, 0]]);
        let four = split_keys(4);
        assert_eq!(four.len(), 3);
        assert_eq!(four[0][..2], [0x40, 0]);
        assert_eq!(four[2][..2], [0xc0, 0]);
        assert!(four.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0xab, 0x0f]), "00ab0f");
        assert_eq!(node_key(1, 2).to_string().len(), 32);
    }

    #[test]
    fn a_written_node_decodes_to_itself() {
        let first = Node::new(42, 0, None);
        assert_eq!(decode(&row_of(&first)), Decoded::Node(first.clone()));
        let second = Node::new(42, 1, Some(first.key));
        assert_eq!(decode(&row_of(&second)), Decoded::Node(second));
    }

    #[test]
    fn a_flipped_bit_anywhere_is_corruption() {
        let node = Node::new(9, 3, Some(node_key(9, 2)));
        let clean = row_of(&node);
        for i in 0..clean.cells.len() {
            let mut row = clean.clone();
            let mut value = row.cells[i].value.to_vec();
            value[0] ^= 0x01;
            row.cells[i].value = Bytes::from(value);
            let Decoded::Corrupt { why, .. } = decode(&row) else {
                panic!("cell {i} flipped and still valid");
            };
            assert_eq!(why, Corruption::ChecksumMismatch, "cell {i}");
        }
        let mut row = clean.clone();
        row.cells
            .retain(|c| c.qualifier.as_ref() != COUNT.as_bytes());
        assert!(matches!(
            decode(&row),
            Decoded::Corrupt {
                why: Corruption::MissingOrMalformedCell(COUNT),
                ..
            }
        ));
        let mut row = clean;
        row.key = Bytes::from_static(b"short");
        assert!(matches!(
            decode(&row),
            Decoded::Corrupt {
                why: Corruption::KeyLength,
                ..
            }
        ));
    }

    #[test]
    fn a_valid_node_under_another_key_is_corruption() {
        let node = Node::new(5, 5, None);
        let other = Node::new(5, 6, None);
        // The cells (and checksum) of `other`, stored under `node`'s key: the checksum covers
        // the key, so it fails first.
        let mut row = row_of(&other);
        row.key = Bytes::copy_from_slice(&node.key.0);
        assert!(matches!(decode(&row), Decoded::Corrupt { .. }));
    }
}
