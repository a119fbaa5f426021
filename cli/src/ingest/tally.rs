//! The counting core of `tabula verify`, pure: fed every decoded row of one full scan, then the
//! acknowledged keys of the ack log, it answers ITBLL's counts.
//!
//! - REFERENCED: a row that exists and some valid node points at;
//! - UNREFERENCED: a row that exists and nobody points at (the newest batch of an open loop);
//! - UNDEFINED: a key some valid node points at with no row: a node is written only after the
//!   node it points at was acknowledged, so this is a lost acknowledged write;
//! - CRC: rows whose cells do not match their checksum (or are missing, or do not match their
//!   key); such a row still counts as existing, but what it points at is not trusted;
//! - ACKED-MISSING: a key the ack log names with no row.
//!
//! The check passes when UNDEFINED, CRC and ACKED-MISSING are all 0. A node written but never
//! acknowledged is fine wherever it is. Memory: two hash sets of 16-byte keys, one entry per row.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use super::node::{Corruption, Decoded, NodeKey};

/// Most keys of each kind a report names.
pub(super) const MAX_NAMED: usize = 20;

/// The counts so far of one scan.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Rows seen.
    rows: u64,
    /// Keys of rows seen that have a node's length.
    defined: HashSet<NodeKey>,
    /// Keys valid nodes point at, each with the first node seen pointing at it.
    referenced: HashMap<NodeKey, NodeKey>,
    /// Corrupt rows.
    corrupt: u64,
    /// The first `MAX_NAMED` corrupt rows in scan (row) order.
    corrupt_named: Vec<(Bytes, Corruption)>,
}

/// The outcome of a verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Counts {
    /// Rows scanned.
    pub(super) rows: u64,
    /// Rows that exist and are pointed at.
    pub(super) referenced: u64,
    /// Rows that exist and are not pointed at.
    pub(super) unreferenced: u64,
    /// Keys pointed at without a row.
    pub(super) undefined: u64,
    /// Corrupt rows.
    pub(super) crc: u64,
    /// Keys in the ack log.
    pub(super) acked: u64,
    /// Keys in the ack log without a row.
    pub(super) acked_missing: u64,
    /// Up to `MAX_NAMED` undefined keys (smallest first), each with a node pointing at it.
    pub(super) undefined_keys: Vec<(NodeKey, NodeKey)>,
    /// Up to `MAX_NAMED` corrupt rows, in row order, with what is wrong.
    pub(super) crc_rows: Vec<(Bytes, Corruption)>,
    /// Up to `MAX_NAMED` acknowledged keys without a row (smallest first).
    pub(super) acked_missing_keys: Vec<NodeKey>,
}

impl Counts {
    /// Whether nothing acknowledged is lost and nothing is corrupt.
    pub(super) fn passed(&self) -> bool {
        self.undefined == 0 && self.crc == 0 && self.acked_missing == 0
    }
}

impl Tally {
    /// Counts one row of the scan.
    pub(super) fn add(&mut self, row: &Decoded) {
        self.rows += 1;
        match row {
            Decoded::Node(node) => {
                self.defined.insert(node.key);
                if let Some(prev) = node.prev {
                    self.referenced.entry(prev).or_insert(node.key);
                }
            }
            Decoded::Corrupt { row, why } => {
                if let Some(key) = NodeKey::from_slice(row) {
                    self.defined.insert(key);
                }
                self.corrupt += 1;
                if self.corrupt_named.len() < MAX_NAMED {
                    self.corrupt_named.push((row.clone(), *why));
                }
            }
        }
    }

    /// Rows counted so far.
    pub(super) fn rows(&self) -> u64 {
        self.rows
    }

    /// The counts, given the acknowledged keys.
    pub(super) fn finish(self, acked: &HashSet<NodeKey>) -> Counts {
        let defined_count = u64::try_from(self.defined.len()).unwrap_or(u64::MAX);
        let referenced = self
            .defined
            .iter()
            .filter(|k| self.referenced.contains_key(k))
            .count();
        let referenced = u64::try_from(referenced).unwrap_or(u64::MAX);
        let mut undefined: Vec<(NodeKey, NodeKey)> = self
            .referenced
            .iter()
            .filter(|(k, _)| !self.defined.contains(k))
            .map(|(k, by)| (*k, *by))
            .collect();
        undefined.sort();
        let mut missing: Vec<NodeKey> = acked
            .iter()
            .filter(|k| !self.defined.contains(k))
            .copied()
            .collect();
        missing.sort();
        let count = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        Counts {
            rows: self.rows,
            referenced,
            unreferenced: defined_count - referenced,
            undefined: count(undefined.len()),
            crc: self.corrupt,
            acked: count(acked.len()),
            acked_missing: count(missing.len()),
            undefined_keys: undefined.into_iter().take(MAX_NAMED).collect(),
            crc_rows: self.corrupt_named,
            acked_missing_keys: missing.into_iter().take(MAX_NAMED).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::chain::Chain;
    use crate::ingest::node::tests::row_of;
    use crate::ingest::node::{Node, decode};

    /// The nodes of `batches` acknowledged batches of one writer, and their keys as acked.
    fn ingest(seed: u64, width: u64, batches: usize) -> (Vec<Node>, HashSet<NodeKey>) {
        let mut chain = Chain::new(seed, width);
        let mut nodes: HashMap<NodeKey, Node> = HashMap::new();
        for _ in 0..batches {
            let batch = chain.next_batch();
            for n in &batch.nodes {
                nodes.insert(n.key, n.clone());
            }
            chain.acked(&batch);
        }
        let acked = nodes.keys().copied().collect();
        let mut nodes: Vec<Node> = nodes.into_values().collect();
        nodes.sort_by_key(|n| n.key);
        (nodes, acked)
    }

    fn tally_of(nodes: &[Node], acked: &HashSet<NodeKey>) -> Counts {
        let mut tally = Tally::default();
        for n in nodes {
            tally.add(&decode(&row_of(n)));
        }
        tally.finish(acked)
    }

    #[test]
    fn a_closed_loop_is_all_referenced() {
        let (nodes, acked) = ingest(1, 4, 26);
        let counts = tally_of(&nodes, &acked);
        assert!(counts.passed(), "{counts:?}");
        assert_eq!(
            (
                counts.rows,
                counts.referenced,
                counts.unreferenced,
                counts.acked
            ),
            (100, 100, 0, 100)
        );
    }

    #[test]
    fn an_open_loop_leaves_its_last_batch_unreferenced() {
        let (nodes, acked) = ingest(2, 4, 5);
        let counts = tally_of(&nodes, &acked);
        assert!(counts.passed(), "{counts:?}");
        assert_eq!((counts.referenced, counts.unreferenced), (16, 4));
    }

    #[test]
    fn a_deleted_node_is_undefined_and_acked_missing() {
        let (mut nodes, acked) = ingest(3, 4, 26);
        let gone = nodes.remove(10);
        let counts = tally_of(&nodes, &acked);
        assert!(!counts.passed());
        assert_eq!((counts.undefined, counts.acked_missing), (1, 1));
        assert_eq!(counts.undefined_keys.len(), 1);
        let (key, by) = counts.undefined_keys[0];
        assert_eq!(key, gone.key);
        assert!(
            nodes
                .iter()
                .any(|n| n.key == by && n.prev == Some(gone.key))
        );
        assert_eq!(counts.acked_missing_keys, vec![gone.key]);
        // The node it pointed at lost its only reference.
        assert_eq!(counts.unreferenced, 1);
    }

    #[test]
    fn a_flipped_value_is_a_crc_failure_not_a_loss() {
        let (nodes, acked) = ingest(4, 4, 26);
        let mut tally = Tally::default();
        let mut flipped_key = None;
        for (i, n) in nodes.iter().enumerate() {
            let mut row = row_of(n);
            if i == 7 {
                let mut value = row.cells[0].value.to_vec();
                value[3] ^= 0x40;
                row.cells[0].value = Bytes::from(value);
                flipped_key = Some(row.key.clone());
            }
            tally.add(&decode(&row));
        }
        let counts = tally.finish(&acked);
        assert!(!counts.passed());
        assert_eq!(
            (counts.crc, counts.undefined, counts.acked_missing),
            (1, 0, 0)
        );
        assert_eq!(counts.crc_rows.len(), 1);
        assert_eq!(Some(&counts.crc_rows[0].0), flipped_key.as_ref());
        assert_eq!(counts.crc_rows[0].1, Corruption::ChecksumMismatch);
    }

    #[test]
    fn an_acked_node_missing_from_the_table_is_reported() {
        let (mut nodes, acked) = ingest(5, 4, 5);
        // The last batch: nobody points at it, so only the ack log can tell it is gone.
        let last_key = Node::new(5, 16, None).key;
        nodes.retain(|n| n.key != last_key);
        let counts = tally_of(&nodes, &acked);
        assert!(!counts.passed());
        assert_eq!((counts.undefined, counts.acked_missing), (0, 1));
        assert_eq!(counts.acked_missing_keys, vec![last_key]);
    }

    #[test]
    fn a_node_written_but_never_acked_is_fine() {
        let (mut nodes, acked) = ingest(6, 4, 5);
        // The next batch reached the table, but the writer died before its acknowledgement.
        let mut chain = Chain::new(6, 4);
        for _ in 0..5 {
            let batch = chain.next_batch();
            chain.acked(&batch);
        }
        nodes.extend(chain.next_batch().nodes);
        let counts = tally_of(&nodes, &acked);
        assert!(counts.passed(), "{counts:?}");
        assert_eq!(
            (counts.rows, counts.referenced, counts.unreferenced),
            (24, 20, 4)
        );
        // And the same batch half there: still fine.
        nodes.truncate(22);
        assert!(tally_of(&nodes, &acked).passed());
    }

    #[test]
    fn reports_name_at_most_twenty_keys() {
        let (nodes, acked) = ingest(7, 30, 3);
        // An empty table: all 90 acknowledged nodes are missing.
        let counts = tally_of(&nodes[..0], &acked);
        assert_eq!(counts.acked_missing, 90);
        assert_eq!(counts.acked_missing_keys.len(), MAX_NAMED);
        assert!(counts.acked_missing_keys.windows(2).all(|w| w[0] < w[1]));
    }
}
