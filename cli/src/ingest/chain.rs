//! One writer's linked lists: which nodes its next batch holds and where they point. Pure; the
//! writer asks for a batch, writes it until every entry is acknowledged, then reports it here.
//!
//! The scheme is HBase ITBLL's. A writer's batches have `width` nodes each, with consecutive
//! counts. A loop is [`LOOP_BATCHES`] fresh batches: node `i` of the loop's first batch points
//! nowhere, node `i` of every later batch points at node `i` of the batch before it. Then the
//! loop is closed: the first batch's nodes are rewritten (at a newer timestamp) so node `i`
//! points at node `i` of the last batch, making `width` circular lists of `LOOP_BATCHES` nodes
//! each, in which every node is referenced. The next loop starts fresh lists.
//!
//! Invariant: a batch only points at nodes of batches already acknowledged (the previous
//! batch, or for the close the loop's last batch), because [`Chain::next_batch`] is asked only
//! after [`Chain::acked`] was told of the batch before. So however the writer dies, a node that
//! exists never points at a node that was not acknowledged: a reference to a missing node is a
//! lost acknowledged write.
//!
//! A run stopped in the middle of a loop (`--duration`) closes it early over the batches it
//! has ([`Chain::closing_batch`]); one stopped by a signal leaves it open: nobody points at its
//! last batch yet (UNREFERENCED), which verify accepts.

use super::node::{Node, RELINK_MICROS, WRITE_MICROS, node_key};

/// Fresh batches in one loop before it is closed.
pub(super) const LOOP_BATCHES: u32 = 25;

/// What a batch does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BatchKind {
    /// Writes new nodes.
    Fresh,
    /// Rewrites the loop's first batch to point at its last batch.
    Close,
}

/// One batch: nodes to write at one timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Batch {
    /// Fresh or closing.
    pub(super) kind: BatchKind,
    /// The count of its first node; the others follow.
    pub(super) first_count: u64,
    /// The nodes.
    pub(super) nodes: Vec<Node>,
    /// The timestamp to write them at.
    pub(super) micros: i64,
}

/// A writer's position in its lists.
#[derive(Debug, Clone)]
pub(super) struct Chain {
    seed: u64,
    width: u64,
    /// The count the next fresh batch starts at.
    next_count: u64,
    /// First count of the current loop's first batch.
    loop_first: u64,
    /// First count of the last acknowledged fresh batch.
    last_first: u64,
    /// Fresh batches acknowledged in the current loop.
    batches_in_loop: u32,
    /// Loops closed so far.
    loops_closed: u64,
}

impl Chain {
    /// A writer with `seed` writing `width` nodes per batch, starting at count 0.
    pub(super) fn new(seed: u64, width: u64) -> Chain {
        Chain {
            seed,
            width: width.max(1),
            next_count: 0,
            loop_first: 0,
            last_first: 0,
            batches_in_loop: 0,
            loops_closed: 0,
        }
    }

    /// Loops closed so far.
    pub(super) fn loops_closed(&self) -> u64 {
        self.loops_closed
    }

    /// The next batch: the loop's close once it has `LOOP_BATCHES` batches, else fresh nodes.
    pub(super) fn next_batch(&self) -> Batch {
        if self.batches_in_loop >= LOOP_BATCHES {
            return self.close();
        }
        let prev =
            |i: u64| (self.batches_in_loop > 0).then(|| node_key(self.seed, self.last_first + i));
        Batch {
            kind: BatchKind::Fresh,
            first_count: self.next_count,
            nodes: (0..self.width)
                .map(|i| Node::new(self.seed, self.next_count + i, prev(i)))
                .collect(),
            micros: WRITE_MICROS,
        }
    }

    /// The batch closing the current loop early, if it has at least two batches (a loop of one
    /// batch would point its nodes at themselves).
    pub(super) fn closing_batch(&self) -> Option<Batch> {
        (self.batches_in_loop >= 2).then(|| self.close())
    }

    fn close(&self) -> Batch {
        Batch {
            kind: BatchKind::Close,
            first_count: self.loop_first,
            nodes: (0..self.width)
                .map(|i| {
                    let last = node_key(self.seed, self.last_first + i);
                    Node::new(self.seed, self.loop_first + i, Some(last))
                })
                .collect(),
            micros: RELINK_MICROS,
        }
    }

    /// Records that every node of `batch` (the last one `next_batch` or `closing_batch`
    /// answered) was acknowledged.
    pub(super) fn acked(&mut self, batch: &Batch) {
        match batch.kind {
            BatchKind::Fresh => {
                if self.batches_in_loop == 0 {
                    self.loop_first = batch.first_count;
                }
                self.last_first = batch.first_count;
                self.next_count = batch.first_count + self.width;
                self.batches_in_loop += 1;
            }
            BatchKind::Close => {
                self.batches_in_loop = 0;
                self.loops_closed += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::ingest::node::NodeKey;

    /// Runs `chain` through `batches` acknowledged batches; answers every node's newest state
    /// by key, as a table would hold them.
    fn run(chain: &mut Chain, batches: usize) -> HashMap<NodeKey, Node> {
        let mut table = HashMap::new();
        for _ in 0..batches {
            let batch = chain.next_batch();
            apply(&mut table, &batch);
            chain.acked(&batch);
        }
        table
    }

    fn apply(table: &mut HashMap<NodeKey, Node>, batch: &Batch) {
        for node in &batch.nodes {
            table.insert(node.key, node.clone());
        }
    }

    fn referenced(table: &HashMap<NodeKey, Node>) -> HashSet<NodeKey> {
        table.values().filter_map(|n| n.prev).collect()
    }

    #[test]
    fn a_closed_loop_references_every_node_exactly_once() {
        let mut chain = Chain::new(11, 3);
        let table = run(&mut chain, usize::try_from(LOOP_BATCHES).unwrap() + 1);
        assert_eq!(chain.loops_closed(), 1);
        assert_eq!(table.len(), 3 * 25);
        let refs: Vec<NodeKey> = table.values().filter_map(|n| n.prev).collect();
        assert_eq!(refs.len(), table.len(), "every node points somewhere");
        let unique: HashSet<NodeKey> = refs.iter().copied().collect();
        assert_eq!(unique.len(), refs.len(), "no node is pointed at twice");
        assert!(unique.iter().all(|k| table.contains_key(k)));
        // Following prev from a node walks a cycle of LOOP_BATCHES nodes.
        let start = node_key(11, 0);
        let mut at = start;
        for step in 1..=LOOP_BATCHES {
            at = table[&at].prev.unwrap();
            assert_eq!(at == start, step == LOOP_BATCHES, "step {step}");
        }
    }

    #[test]
    fn batches_point_only_at_the_batch_acknowledged_before() {
        let mut chain = Chain::new(3, 4);
        let first = chain.next_batch();
        assert_eq!(first.kind, BatchKind::Fresh);
        assert!(first.nodes.iter().all(|n| n.prev.is_none()));
        assert_eq!(first.micros, WRITE_MICROS);
        // Not acknowledged yet: asking again answers the same batch.
        assert_eq!(chain.next_batch(), first);
        chain.acked(&first);
        let second = chain.next_batch();
        assert_eq!(second.first_count, 4);
        for (n, p) in second.nodes.iter().zip(&first.nodes) {
            assert_eq!(n.prev, Some(p.key));
        }
    }

    #[test]
    fn loops_follow_one_another_with_fresh_counts() {
        let mut chain = Chain::new(5, 2);
        let per_loop = usize::try_from(LOOP_BATCHES).unwrap() + 1;
        let table = run(&mut chain, 2 * per_loop);
        assert_eq!(chain.loops_closed(), 2);
        assert_eq!(table.len(), 2 * 2 * 25);
        let refs = referenced(&table);
        assert_eq!(refs.len(), table.len());
        let next = chain.next_batch();
        assert_eq!((next.kind, next.first_count), (BatchKind::Fresh, 100));
        assert!(next.nodes.iter().all(|n| n.prev.is_none()));
    }

    #[test]
    fn an_early_close_references_every_node_of_the_partial_loop() {
        let mut chain = Chain::new(8, 5);
        let mut table = run(&mut chain, 1);
        assert_eq!(chain.closing_batch(), None, "one batch does not close");
        table.extend(run(&mut chain, 6));
        let close = chain.closing_batch().unwrap();
        assert_eq!(
            (close.kind, close.micros),
            (BatchKind::Close, RELINK_MICROS)
        );
        apply(&mut table, &close);
        chain.acked(&close);
        assert_eq!(chain.loops_closed(), 1);
        assert_eq!(table.len(), 5 * 7);
        assert_eq!(referenced(&table).len(), table.len());
        assert_eq!(chain.closing_batch(), None);
    }
}
