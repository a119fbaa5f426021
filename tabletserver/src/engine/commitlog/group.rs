//! Group commit bookkeeping: a pure state machine, kept under the writer's mutex.
//!
//! Appenders add their encoded record to the pending batch and receive a ticket (the batch's
//! number). Whoever finds the pending batch unwritten and nobody writing becomes the leader:
//! it `take`s the whole batch, writes and syncs it with the mutex released, then `finish`es it
//! and wakes everyone. Followers wait until `turn(ticket)` says their batch is done. So one
//! write + fdatasync covers every record added while the previous batch was being synced.
//!
//! Invariants: at most one batch is in flight (`writing`); batches complete in ticket order;
//! once a batch fails, `stopped` stays set and no ticket completes afterwards.

/// The records of one batch destined for one segment (a batch spans two segments at a roll).
#[derive(Debug)]
pub(crate) struct Chunk {
    pub(crate) segment: u64,
    pub(crate) data: Vec<u8>,
}

/// A batch taken by a leader.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) ticket: u64,
    pub(crate) chunks: Vec<Chunk>,
    pub(crate) records: u64,
    pub(crate) bytes: u64,
}

/// What an appender holding a ticket should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Turn {
    /// Its batch is written (and synced).
    Done,
    /// The log has stopped; its batch will never be written.
    Stopped,
    /// Nobody is writing and its batch is pending: take it and write it.
    Lead,
    /// Another leader is writing; wait for a wake-up.
    Wait,
}

/// The group-commit state.
#[derive(Debug)]
pub(crate) struct Group {
    chunks: Vec<Chunk>,
    records: u64,
    bytes: u64,
    /// Ticket of the pending batch.
    filling: u64,
    /// Highest ticket written.
    done: u64,
    writing: bool,
    stopped: bool,
}

impl Group {
    pub(crate) fn new() -> Group {
        Group {
            chunks: Vec::new(),
            records: 0,
            bytes: 0,
            filling: 1,
            done: 0,
            writing: false,
            stopped: false,
        }
    }

    /// Whether a record of `len` bytes may join the pending batch without it exceeding
    /// `max_bytes`. An empty batch takes any record, so a large record is never refused here.
    pub(crate) fn has_room(&self, len: usize, max_bytes: usize) -> bool {
        self.bytes == 0 || self.bytes.saturating_add(len as u64) <= max_bytes as u64
    }

    /// Adds a record for `segment` to the pending batch; returns the ticket to wait for.
    pub(crate) fn push(&mut self, segment: u64, record: &[u8]) -> u64 {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.segment == segment => chunk.data.extend_from_slice(record),
            _ => self.chunks.push(Chunk {
                segment,
                data: record.to_vec(),
            }),
        }
        self.records += 1;
        self.bytes += record.len() as u64;
        self.filling
    }

    /// What the holder of `ticket` should do.
    pub(crate) fn turn(&self, ticket: u64) -> Turn {
        if self.done >= ticket {
            Turn::Done
        } else if self.stopped {
            Turn::Stopped
        } else if self.writing {
            Turn::Wait
        } else {
            Turn::Lead
        }
    }

    /// Whether a leader is writing a batch.
    pub(crate) fn is_writing(&self) -> bool {
        self.writing
    }

    /// Whether records wait in the pending batch.
    pub(crate) fn has_pending(&self) -> bool {
        self.records > 0
    }

    /// Whether a batch has failed.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Takes the pending batch (possibly empty) for writing. Only when nobody is writing.
    pub(crate) fn take(&mut self) -> Batch {
        debug_assert!(!self.writing && !self.stopped);
        self.writing = true;
        let batch = Batch {
            ticket: self.filling,
            chunks: std::mem::take(&mut self.chunks),
            records: std::mem::take(&mut self.records),
            bytes: std::mem::take(&mut self.bytes),
        };
        self.filling += 1;
        batch
    }

    /// Records the outcome of writing batch `ticket`. A failure stops the log for good.
    pub(crate) fn finish(&mut self, ticket: u64, ok: bool) {
        debug_assert!(self.writing);
        self.writing = false;
        if ok && !self.stopped {
            self.done = ticket;
        } else {
            self.stopped = true;
            self.chunks.clear();
            self.records = 0;
            self.bytes = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_leader_covers_every_record_added_before_it_took_the_batch() {
        let mut g = Group::new();
        let a = g.push(1, b"aa");
        let b = g.push(1, b"bbb");
        assert_eq!(a, b);
        assert_eq!(g.turn(a), Turn::Lead);
        let batch = g.take();
        assert_eq!((batch.ticket, batch.records, batch.bytes), (a, 2, 5));
        assert_eq!(batch.chunks.len(), 1);
        assert_eq!(batch.chunks[0].data, b"aabbb");
        // Records arriving while the batch is written join the next one and wait.
        let c = g.push(1, b"c");
        assert!(c > a);
        assert_eq!(g.turn(a), Turn::Wait);
        assert_eq!(g.turn(c), Turn::Wait);
        g.finish(batch.ticket, true);
        assert_eq!(g.turn(a), Turn::Done);
        assert_eq!(g.turn(c), Turn::Lead);
    }

    #[test]
    fn a_batch_spanning_a_roll_has_one_chunk_per_segment() {
        let mut g = Group::new();
        g.push(1, b"a");
        g.push(2, b"b");
        g.push(2, b"c");
        let batch = g.take();
        let segs: Vec<_> = batch
            .chunks
            .iter()
            .map(|c| (c.segment, c.data.clone()))
            .collect();
        assert_eq!(segs, vec![(1, b"a".to_vec()), (2, b"bc".to_vec())]);
    }

    #[test]
    fn a_failed_batch_stops_everyone_for_good() {
        let mut g = Group::new();
        let a = g.push(1, b"a");
        let batch = g.take();
        let b = g.push(1, b"b");
        g.finish(batch.ticket, false);
        assert_eq!(g.turn(a), Turn::Stopped);
        assert_eq!(g.turn(b), Turn::Stopped);
        assert!(g.is_stopped());
        assert_eq!((g.records, g.bytes, g.chunks.len()), (0, 0, 0));
    }

    #[test]
    fn room_is_bounded_but_an_empty_batch_takes_anything() {
        let mut g = Group::new();
        assert!(g.has_room(1000, 10));
        g.push(1, &[0; 8]);
        assert!(g.has_room(2, 10));
        assert!(!g.has_room(3, 10));
    }
}
