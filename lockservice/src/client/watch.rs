//! `WatchStream`: a watch that survives broken streams without repeating or skipping events.
//!
//! Events arrive in log order and several can share a revision (one log entry can delete a
//! file and unlock it). The stream remembers the last revision it delivered and how many of
//! that revision's events it delivered. When the server stream breaks (the node stops, a
//! transport error, any retryable error) it reopens on another node from that revision and
//! drops the events of it already delivered, then anything older; every node applies the same
//! log, so the events of a revision come in the same order everywhere.
//!
//! Errors end the stream: `Compacted` (the history it needs is gone: reread, then watch from
//! the read's revision + 1), a malformed answer, or no node answering within `op_deadline`.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use tabula_common::Error;
use tabula_proto::tabula::lock::v1 as pb;

use super::connection::{Connection, Plan, Route, error_from_status, retryable};
use super::types::bad_answer;
use crate::api::event_from_proto;
use crate::state::Event;

/// The events of files under a prefix, in log order; see the module doc.
pub struct WatchStream {
    conn: Arc<Connection>,
    prefix: String,
    /// Where delivery stands.
    cursor: Cursor,
    /// The open server stream and the node serving it.
    stream: Option<(tonic::Streaming<pb::WatchResponse>, usize)>,
    /// A node whose stream just broke: the reopen tries it last.
    broken: Option<usize>,
    /// Received, not yet delivered (one response's worth at most).
    pending: VecDeque<Event>,
    /// An error was delivered: nothing more comes.
    done: bool,
}

impl WatchStream {
    /// Opens a watch of `prefix` from revision `from` (not 0).
    pub(super) async fn open(
        conn: Arc<Connection>,
        prefix: String,
        from: u64,
    ) -> Result<WatchStream, Error> {
        let mut w = WatchStream {
            conn,
            prefix,
            cursor: Cursor::new(from),
            stream: None,
            broken: None,
            pending: VecDeque::new(),
            done: false,
        };
        w.reopen().await?;
        Ok(w)
    }

    /// The next event; `None` after an error was delivered. Cancel-safe: dropping the future
    /// loses no event.
    pub async fn next(&mut self) -> Option<Result<Event, Error>> {
        if self.done {
            return None;
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.cursor.delivered(&event);
                return Some(Ok(event));
            }
            if self.stream.is_none()
                && let Err(e) = self.reopen().await
            {
                return Some(Err(self.fail(e)));
            }
            let Some((stream, node)) = self.stream.as_mut() else {
                continue;
            };
            let node = *node;
            match stream.message().await {
                Ok(Some(response)) => {
                    if let Err(e) = self.receive(response) {
                        return Some(Err(self.fail(e)));
                    }
                }
                Ok(None) => self.broke(node, "the node ended the stream"),
                Err(status) => {
                    let e = error_from_status(status);
                    if !retryable(&e.code) {
                        return Some(Err(self.fail(e)));
                    }
                    self.broke(node, &e.to_string());
                }
            }
        }
    }

    /// Opens the server stream where delivery stands, on any node but the one that broke.
    async fn reopen(&mut self) -> Result<(), Error> {
        let from = self.cursor.resume_from();
        let prefix = self.prefix.clone();
        let plan = Plan::new(
            format!("watch {prefix:?} from revision {from}"),
            &self.conn.options,
            Route::Any { avoid: self.broken },
        );
        // No deadline on the request: the stream lasts; the loop's timeout covers opening it.
        let answer = self
            .conn
            .call(plan, |mut rpc, _| {
                let req = pb::WatchRequest {
                    prefix: prefix.clone(),
                    from_revision: from,
                };
                async move { rpc.watch(req).await }
            })
            .await?;
        tracing::debug!(prefix = %self.prefix, from, node = %self.conn.addr(answer.node), "watch stream open");
        self.stream = Some((answer.value, answer.node));
        self.cursor.reopened();
        Ok(())
    }

    /// Queues a response's events that were not delivered before.
    fn receive(&mut self, response: pb::WatchResponse) -> Result<(), Error> {
        for event in response.events {
            let event = event_from_proto(event).map_err(|e| bad_answer("Watch", &e))?;
            if !self.cursor.seen(&event) {
                self.pending.push_back(event);
            }
        }
        Ok(())
    }

    fn broke(&mut self, node: usize, why: &str) {
        tracing::info!(prefix = %self.prefix, node = %self.conn.addr(node), why, "watch stream broke; reopening elsewhere");
        self.stream = None;
        self.broken = Some(node);
    }

    fn fail(&mut self, e: Error) -> Error {
        self.done = true;
        self.stream = None;
        e
    }
}

impl fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WatchStream")
            .field("prefix", &self.prefix)
            .field("cursor", &self.cursor)
            .field("open", &self.stream.is_some())
            .finish()
    }
}

/// Where delivery stands, and which events of a reopened stream were delivered already.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    /// Where the watch started.
    from: u64,
    /// The last delivered revision and how many of its events were delivered.
    last: Option<(u64, u64)>,
    /// Events of `last`'s revision still to drop from the current stream (delivered before it
    /// was reopened).
    skip: u64,
}

impl Cursor {
    fn new(from: u64) -> Cursor {
        Cursor {
            from,
            last: None,
            skip: 0,
        }
    }

    /// The revision a (re)opened stream starts at: the last delivered one, whose events may
    /// not all have been delivered.
    fn resume_from(&self) -> u64 {
        self.last.map_or(self.from, |(revision, _)| revision)
    }

    /// A stream was opened at `resume_from`: its first events repeat delivered ones.
    fn reopened(&mut self) {
        self.skip = self.last.map_or(0, |(_, count)| count);
    }

    /// Whether `event`, just received, was delivered already (and is to be dropped).
    fn seen(&mut self, event: &Event) -> bool {
        match self.last {
            Some((revision, _)) if event.revision < revision => true,
            Some((revision, _)) if event.revision == revision && self.skip > 0 => {
                self.skip -= 1;
                true
            }
            _ => false,
        }
    }

    /// `event` went to the caller.
    fn delivered(&mut self, event: &Event) {
        self.last = match self.last {
            Some((revision, count)) if revision == event.revision => Some((revision, count + 1)),
            _ => Some((event.revision, 1)),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::EventKind;

    fn event(revision: u64, path: &str) -> Event {
        Event {
            revision,
            path: path.to_owned(),
            kind: EventKind::Changed,
        }
    }

    /// Feeds `received` through the cursor as a stream would, delivering everything not seen.
    fn pass(cursor: &mut Cursor, received: &[Event]) -> Vec<Event> {
        let mut out = Vec::new();
        for e in received {
            if !cursor.seen(e) {
                cursor.delivered(e);
                out.push(e.clone());
            }
        }
        out
    }

    #[test]
    fn a_fresh_cursor_starts_where_asked_and_drops_nothing() {
        let mut c = Cursor::new(7);
        assert_eq!(c.resume_from(), 7);
        c.reopened();
        let all = [event(7, "/a"), event(9, "/b")];
        assert_eq!(pass(&mut c, &all), all);
    }

    #[test]
    fn a_reopened_stream_repeats_nothing_and_skips_nothing() {
        let log = [
            event(5, "/a"),
            event(6, "/b"),
            event(6, "/c"),
            event(6, "/d"),
            event(8, "/e"),
        ];
        // The first stream broke after delivering two of revision 6's three events.
        let mut c = Cursor::new(5);
        assert_eq!(pass(&mut c, &log[..3]), log[..3]);
        assert_eq!(c.resume_from(), 6);
        c.reopened();
        // The new node sends from revision 6 on.
        assert_eq!(pass(&mut c, &log[1..]), log[3..]);
        // Broke again right after revision 8: a reopen from 8 drops the repeat of /e.
        assert_eq!(c.resume_from(), 8);
        c.reopened();
        assert_eq!(
            pass(&mut c, &[event(8, "/e"), event(9, "/f")]),
            [event(9, "/f")]
        );
    }

    #[test]
    fn events_older_than_the_last_delivered_are_dropped() {
        let mut c = Cursor::new(1);
        pass(&mut c, &[event(4, "/a")]);
        c.reopened();
        assert_eq!(
            pass(&mut c, &[event(3, "/z"), event(4, "/a"), event(4, "/b")]),
            [event(4, "/b")]
        );
    }
}
