//! Random command sequences against the invariants, the snapshot round trip and deduplication.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::testutil::Harness;
use super::{ClientRef, FailReason, Limits, LockMode, LockState, Op, Request, Response};

const PATHS: &[&str] = &[
    "/", "/a", "/b", "/a/x", "/a/y", "/b/z", "/a/x/q", "bad", "/a/",
];

/// A session reference: mostly one that was opened (live or not), sometimes any number.
type SessionSel = u8;

#[derive(Debug, Clone)]
enum Step {
    Open(u64),
    Close(SessionSel),
    Expire(Vec<SessionSel>),
    Create(usize, usize, Option<SessionSel>),
    Set(usize, usize, Option<u8>),
    Delete(usize, Option<u8>),
    Acquire(usize, SessionSel, LockMode),
    Release(usize, SessionSel),
    Empty,
}

#[derive(Debug, Clone)]
struct Action {
    step: Step,
    /// Sent by this client (0..3), with its next `seq`.
    client: Option<u64>,
    /// Then sent again, as a retry.
    retry: bool,
}

fn path_sel() -> impl Strategy<Value = usize> {
    0..PATHS.len()
}

fn mode() -> impl Strategy<Value = LockMode> {
    prop_oneof![Just(LockMode::Exclusive), Just(LockMode::Shared)]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => prop_oneof![Just(0u64), Just(1), Just(5_000), Just(20_000)].prop_map(Step::Open),
        1 => any::<u8>().prop_map(Step::Close),
        1 => prop::collection::vec(any::<u8>(), 0..3).prop_map(Step::Expire),
        3 => (path_sel(), 0usize..20, prop::option::of(any::<u8>())).prop_map(|(p, n, s)| Step::Create(p, n, s)),
        2 => (path_sel(), 0usize..20, prop::option::of(any::<u8>())).prop_map(|(p, n, g)| Step::Set(p, n, g)),
        2 => (path_sel(), prop::option::of(any::<u8>())).prop_map(|(p, g)| Step::Delete(p, g)),
        4 => (path_sel(), any::<u8>(), mode()).prop_map(|(p, s, m)| Step::Acquire(p, s, m)),
        2 => (path_sel(), any::<u8>()).prop_map(|(p, s)| Step::Release(p, s)),
        1 => Just(Step::Empty),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    (step(), prop::option::of(0u64..3), any::<bool>()).prop_map(|(step, client, retry)| Action {
        step,
        client,
        retry,
    })
}

/// Runs actions and checks everything after each.
struct Model {
    h: Harness,
    opened: Vec<u64>,
    next_seq: BTreeMap<u64, u64>,
    /// The newest sequencer generation granted per path.
    newest_generation: BTreeMap<String, u64>,
}

impl Model {
    fn new() -> Self {
        let limits = Limits {
            max_contents_bytes: 16,
            max_files: 6,
            max_total_contents_bytes: 40,
            max_sessions: 3,
            max_ttl_ms: 10_000,
            max_events: 12,
            max_dedup_clients: 2,
        };
        Self {
            h: Harness::with_limits(limits),
            opened: Vec::new(),
            next_seq: BTreeMap::new(),
            newest_generation: BTreeMap::new(),
        }
    }

    fn session(&self, sel: SessionSel) -> u64 {
        if sel < 220 && !self.opened.is_empty() {
            self.opened[usize::from(sel) % self.opened.len()]
        } else {
            u64::from(sel)
        }
    }

    fn generation(&self, path: &str, sel: u8) -> u64 {
        match self.h.state.get(path) {
            Some(f) if sel.is_multiple_of(2) => f.generation,
            _ => u64::from(sel),
        }
    }

    fn op(&self, step: &Step) -> Option<Op> {
        let p = |i: &usize| PATHS[*i].to_owned();
        Some(match step {
            Step::Open(ttl_ms) => Op::OpenSession { ttl_ms: *ttl_ms },
            Step::Close(s) => Op::CloseSession {
                session: self.session(*s),
            },
            Step::Expire(ss) => Op::ExpireSessions {
                sessions: ss.iter().map(|s| self.session(*s)).collect(),
            },
            Step::Create(i, n, s) => Op::Create {
                path: p(i),
                contents: vec![b'c'; *n],
                ephemeral_session: s.map(|s| self.session(s)),
            },
            Step::Set(i, n, g) => Op::SetContents {
                path: p(i),
                contents: vec![b's'; *n],
                if_generation: g.map(|g| self.generation(PATHS[*i], g)),
            },
            Step::Delete(i, g) => Op::Delete {
                path: p(i),
                if_generation: g.map(|g| self.generation(PATHS[*i], g)),
            },
            Step::Acquire(i, s, m) => Op::Acquire {
                path: p(i),
                session: self.session(*s),
                mode: *m,
            },
            Step::Release(i, s) => Op::Release {
                path: p(i),
                session: self.session(*s),
            },
            Step::Empty => return None,
        })
    }

    fn run(&mut self, action: &Action) -> Result<(), TestCaseError> {
        let Some(op) = self.op(&action.step) else {
            self.h.index += 1;
            self.h.state.apply_empty(self.h.index);
            return self.check();
        };
        let client = action.client.map(|client_id| {
            let seq = self.next_seq.entry(client_id).or_insert(0);
            *seq += 1;
            ClientRef {
                client_id,
                seq: *seq,
            }
        });
        let req = Request { client, op };
        let before = self.h.state.clone();
        let response = self.h.submit(req.clone());
        self.observe(&before, &response)?;
        self.check()?;
        if action.retry && client.is_some() {
            let applied = self.h.state.clone();
            let again = self.h.submit(req);
            prop_assert_eq!(&again, &response, "a retry answers the same");
            let mut expected = applied;
            expected.last_applied = self.h.index;
            prop_assert_eq!(&self.h.state, &expected, "a retry changes nothing");
        }
        Ok(())
    }

    fn observe(&mut self, before: &LockState, response: &Response) -> Result<(), TestCaseError> {
        match response {
            Response::SessionOpened { session } => {
                prop_assert_eq!(*session, self.h.index);
                self.opened.push(*session);
            }
            Response::Acquired(s) => {
                prop_assert!(self.h.state.check_sequencer(s));
                if s.generation == self.h.index {
                    let newest = self.newest_generation.entry(s.path.clone()).or_insert(0);
                    prop_assert!(s.generation > *newest, "sequencer generations grow");
                    *newest = s.generation;
                } else {
                    prop_assert!(
                        before.check_sequencer(s),
                        "an old sequencer only for a re-acquire"
                    );
                }
            }
            Response::Done { generation } => prop_assert_eq!(*generation, self.h.index),
            Response::LockHeld | Response::Failed(_) => {}
        }
        if let Response::Failed(FailReason::StaleRequest { .. }) = response {
            prop_assert!(false, "fresh seqs are never stale");
        }
        Ok(())
    }

    /// Invariants through the public API (`Harness::submit` checks the internal ones), and the
    /// snapshot round trip.
    fn check(&self) -> Result<(), TestCaseError> {
        let state = &self.h.state;
        let live: Vec<u64> = state.sessions().map(|(id, _)| id).collect();
        let mut stack = vec!["/".to_owned()];
        while let Some(path) = stack.pop() {
            let Some(file) = state.get(&path) else {
                return Err(TestCaseError::fail(format!("{path} listed but missing")));
            };
            let exclusive = file
                .lock_holders
                .iter()
                .filter(|h| h.mode == LockMode::Exclusive)
                .count();
            prop_assert!(exclusive <= 1);
            prop_assert!(
                exclusive == 0 || file.lock_holders.len() == 1,
                "no exclusive+shared mix"
            );
            for holder in &file.lock_holders {
                prop_assert!(live.contains(&holder.session), "lock holders are live");
            }
            if let Some(owner) = file.ephemeral_session {
                prop_assert!(live.contains(&owner), "ephemeral owners are live");
            }
            prop_assert!(file.generation <= state.last_applied_index());
            for child in state.list(&path).unwrap_or_default() {
                stack.push(if path == "/" {
                    format!("/{child}")
                } else {
                    format!("{path}/{child}")
                });
            }
        }
        let restored = LockState::from_snapshot(&state.to_snapshot());
        prop_assert!(
            matches!(&restored, Ok(r) if r == state),
            "snapshot round trip: {:?}",
            restored.err()
        );
        Ok(())
    }
}

proptest! {
    #[test]
    fn random_commands_keep_the_invariants(actions in prop::collection::vec(action(), 1..80)) {
        let mut model = Model::new();
        for action in &actions {
            model.run(action)?;
        }
    }

    #[test]
    fn restoring_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = LockState::from_snapshot(&bytes);
    }

    #[test]
    fn restoring_a_damaged_snapshot_never_panics(
        actions in prop::collection::vec(action(), 1..30),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut model = Model::new();
        for action in &actions {
            model.run(action)?;
        }
        let mut bytes = model.h.state.to_snapshot();
        let at = flip.index(bytes.len());
        bytes[at] = byte;
        if let Ok(state) = LockState::from_snapshot(&bytes) {
            prop_assert!(state.check_invariants().is_ok());
        }
        bytes.truncate(cut.index(bytes.len()));
        let _ = LockState::from_snapshot(&bytes);
    }
}
