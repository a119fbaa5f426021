//! `tabula.lock.v1` <-> `state` conversions. Decoding never panics: a malformed message is an
//! `InvalidArgument` error naming the field.

use tabula_common::{Code, Error};
use tabula_proto::tabula::lock::v1 as pb;

use crate::state::{ClientRef, Event, EventKind, FailReason, LockHolder, LockMode, Sequencer};

/// The deduplication key of a write, if the client sent one (a zero `client_id` means none).
pub fn client_ref(write_id: Option<&pb::WriteId>) -> Option<ClientRef> {
    let w = write_id?;
    (w.client_id != 0).then_some(ClientRef {
        client_id: w.client_id,
        seq: w.seq,
    })
}

/// The wire value of a lock mode.
pub fn mode_to_proto(mode: LockMode) -> i32 {
    match mode {
        LockMode::Exclusive => pb::LockMode::Exclusive as i32,
        LockMode::Shared => pb::LockMode::Shared as i32,
    }
}

/// A lock mode from the wire; unspecified or unknown values are refused.
pub fn mode_from_proto(mode: i32) -> Result<LockMode, Error> {
    match pb::LockMode::try_from(mode) {
        Ok(pb::LockMode::Exclusive) => Ok(LockMode::Exclusive),
        Ok(pb::LockMode::Shared) => Ok(LockMode::Shared),
        Ok(pb::LockMode::Unspecified) | Err(_) => Err(Error::invalid_argument(format!(
            "lock mode {mode} is not EXCLUSIVE (1) or SHARED (2)"
        ))),
    }
}

/// A sequencer on the wire.
pub fn sequencer_to_proto(s: &Sequencer) -> pb::Sequencer {
    pb::Sequencer {
        path: s.path.clone(),
        mode: mode_to_proto(s.mode),
        generation: s.generation,
    }
}

/// A sequencer from the wire.
pub fn sequencer_from_proto(s: pb::Sequencer) -> Result<Sequencer, Error> {
    Ok(Sequencer {
        mode: mode_from_proto(s.mode)?,
        path: s.path,
        generation: s.generation,
    })
}

/// A lock holder on the wire.
pub fn holder_to_proto(h: &LockHolder) -> pb::LockHolder {
    pb::LockHolder {
        session_id: h.session,
        mode: mode_to_proto(h.mode),
        generation: h.generation,
    }
}

/// A lock holder from the wire.
pub fn holder_from_proto(h: &pb::LockHolder) -> Result<LockHolder, Error> {
    Ok(LockHolder {
        session: h.session_id,
        mode: mode_from_proto(h.mode)?,
        generation: h.generation,
    })
}

/// A watch event on the wire.
pub fn event_to_proto(e: &Event) -> pb::Event {
    use pb::event::Kind;
    let kind = match &e.kind {
        EventKind::Created { ephemeral_session } => Kind::Created(pb::event::Created {
            ephemeral_session_id: ephemeral_session.unwrap_or(0),
        }),
        EventKind::Changed => Kind::Changed(pb::event::Changed {}),
        EventKind::Deleted => Kind::Deleted(pb::event::Deleted {}),
        EventKind::Locked {
            session,
            mode,
            generation,
        } => Kind::Locked(pb::event::Locked {
            session_id: *session,
            mode: mode_to_proto(*mode),
            generation: *generation,
        }),
        EventKind::Unlocked { session, mode } => Kind::Unlocked(pb::event::Unlocked {
            session_id: *session,
            mode: mode_to_proto(*mode),
        }),
    };
    pb::Event {
        revision: e.revision,
        path: e.path.clone(),
        kind: Some(kind),
    }
}

/// A watch event from the wire.
pub fn event_from_proto(e: pb::Event) -> Result<Event, Error> {
    use pb::event::Kind;
    let kind = match e.kind {
        Some(Kind::Created(c)) => EventKind::Created {
            ephemeral_session: (c.ephemeral_session_id != 0).then_some(c.ephemeral_session_id),
        },
        Some(Kind::Changed(_)) => EventKind::Changed,
        Some(Kind::Deleted(_)) => EventKind::Deleted,
        Some(Kind::Locked(l)) => EventKind::Locked {
            session: l.session_id,
            mode: mode_from_proto(l.mode)?,
            generation: l.generation,
        },
        Some(Kind::Unlocked(u)) => EventKind::Unlocked {
            session: u.session_id,
            mode: mode_from_proto(u.mode)?,
        },
        None => {
            return Err(Error::invalid_argument(format!(
                "event at revision {} for {:?} has no kind",
                e.revision, e.path
            )));
        }
    };
    Ok(Event {
        revision: e.revision,
        path: e.path,
        kind,
    })
}

/// The public error for a request the state machine did not apply.
pub fn fail_reason_to_error(reason: FailReason) -> Error {
    match reason {
        FailReason::NotFound => Error::new(Code::NotFound, "no such file or session"),
        FailReason::AlreadyExists => Error::new(Code::AlreadyExists, "the file exists"),
        FailReason::GenerationMismatch { actual } => Error::new(
            Code::Aborted,
            format!("generation mismatch: the file's generation is {actual}"),
        ),
        FailReason::NotEmpty => Error::new(Code::FailedPrecondition, "the file has children"),
        FailReason::NoParent => Error::new(
            Code::FailedPrecondition,
            "the parent directory does not exist",
        ),
        FailReason::SessionGone => {
            Error::new(Code::SessionExpired, "the session is closed or expired")
        }
        FailReason::Invalid(msg) => Error::invalid_argument(msg),
        FailReason::ResourceExhausted(msg) => Error::new(Code::ResourceExhausted, msg),
        FailReason::StaleRequest { last_seq } => Error::new(
            Code::FailedPrecondition,
            format!(
                "a retry of a write older than this client's last applied one (seq {last_seq}); \
                 it was applied once and its answer is no longer kept"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn events_round_trip() {
        let kinds = [
            EventKind::Created {
                ephemeral_session: Some(7),
            },
            EventKind::Created {
                ephemeral_session: None,
            },
            EventKind::Changed,
            EventKind::Deleted,
            EventKind::Locked {
                session: 3,
                mode: LockMode::Shared,
                generation: 9,
            },
            EventKind::Unlocked {
                session: 3,
                mode: LockMode::Exclusive,
            },
        ];
        for kind in kinds {
            let e = Event {
                revision: 9,
                path: "/a/b".into(),
                kind,
            };
            assert_eq!(event_from_proto(event_to_proto(&e)).unwrap(), e);
        }
    }

    #[test]
    fn malformed_messages_are_invalid_arguments() {
        assert_eq!(mode_from_proto(0).unwrap_err().code, Code::InvalidArgument);
        assert_eq!(mode_from_proto(77).unwrap_err().code, Code::InvalidArgument);
        let no_kind = pb::Event {
            revision: 1,
            path: "/x".into(),
            kind: None,
        };
        assert_eq!(
            event_from_proto(no_kind).unwrap_err().code,
            Code::InvalidArgument
        );
        let s = Sequencer {
            path: "/l".into(),
            mode: LockMode::Exclusive,
            generation: 4,
        };
        assert_eq!(sequencer_from_proto(sequencer_to_proto(&s)).unwrap(), s);
    }

    #[test]
    fn write_ids_with_a_zero_client_are_not_deduplicated() {
        assert_eq!(client_ref(None), None);
        let zero = pb::WriteId {
            client_id: 0,
            seq: 5,
        };
        assert_eq!(client_ref(Some(&zero)), None);
        let w = pb::WriteId {
            client_id: 1,
            seq: 5,
        };
        assert_eq!(
            client_ref(Some(&w)),
            Some(ClientRef {
                client_id: 1,
                seq: 5
            })
        );
    }
}
