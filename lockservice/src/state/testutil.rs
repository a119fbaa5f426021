//! Test helpers: a state with a log index counter, and op builders.

use super::{ClientRef, Event, Limits, LockMode, LockState, Op, Request, Response, Sequencer};

/// A state plus the next log index; every `run` checks the invariants.
pub(super) struct Harness {
    pub(super) state: LockState,
    /// The index of the last entry applied.
    pub(super) index: u64,
}

impl Harness {
    pub(super) fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    pub(super) fn with_limits(limits: Limits) -> Self {
        Self {
            state: LockState::with_limits(limits),
            index: 0,
        }
    }

    pub(super) fn run(&mut self, op: Op) -> Response {
        self.submit(Request { client: None, op })
    }

    pub(super) fn run_as(&mut self, client_id: u64, seq: u64, op: Op) -> Response {
        self.submit(Request {
            client: Some(ClientRef { client_id, seq }),
            op,
        })
    }

    pub(super) fn submit(&mut self, req: Request) -> Response {
        self.index += 1;
        let response = self.state.apply(self.index, &req);
        if let Err(e) = self.state.check_invariants() {
            panic!("invariant broken after {req:?} at {}: {e}", self.index);
        }
        response
    }

    /// Opens a session and returns its id.
    pub(super) fn open(&mut self) -> u64 {
        match self.run(Op::OpenSession { ttl_ms: 10_000 }) {
            Response::SessionOpened { session } => session,
            other => panic!("open session: {other:?}"),
        }
    }

    /// Creates a persistent file, asserting success.
    pub(super) fn mk(&mut self, path: &str) {
        let r = self.run(create(path, b"", None));
        assert_eq!(
            r,
            Response::Done {
                generation: self.index
            },
            "create {path}"
        );
    }

    /// The events the last entry produced.
    pub(super) fn last_events(&self) -> Vec<Event> {
        self.events_at(self.index)
    }

    pub(super) fn events_at(&self, index: u64) -> Vec<Event> {
        match self.state.events_since(index, "") {
            Ok(events) => events.into_iter().filter(|e| e.revision == index).collect(),
            Err(c) => panic!("events at {index}: {c}"),
        }
    }
}

pub(super) fn create(path: &str, contents: &[u8], ephemeral_session: Option<u64>) -> Op {
    Op::Create {
        path: path.to_owned(),
        contents: contents.to_vec(),
        ephemeral_session,
    }
}

pub(super) fn set(path: &str, contents: &[u8], if_generation: Option<u64>) -> Op {
    Op::SetContents {
        path: path.to_owned(),
        contents: contents.to_vec(),
        if_generation,
    }
}

pub(super) fn delete(path: &str, if_generation: Option<u64>) -> Op {
    Op::Delete {
        path: path.to_owned(),
        if_generation,
    }
}

pub(super) fn acquire(path: &str, session: u64, mode: LockMode) -> Op {
    Op::Acquire {
        path: path.to_owned(),
        session,
        mode,
    }
}

pub(super) fn release(path: &str, session: u64) -> Op {
    Op::Release {
        path: path.to_owned(),
        session,
    }
}

pub(super) fn seq(path: &str, mode: LockMode, generation: u64) -> Sequencer {
    Sequencer {
        path: path.to_owned(),
        mode,
        generation,
    }
}
