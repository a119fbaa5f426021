//! Election (DESIGN.md section 6): every master announces itself with an ephemeral file
//! `/tabula/masters/<master-id>` (contents: its address) and waits for the exclusive lock on
//! `/tabula/master`. The holder is the active master; the lock's sequencer generation is the
//! **master epoch**, which only grows, so two masters never command at the same epoch. After
//! winning, the master records `ActiveMaster` (id, address, epoch) in `/tabula/master`'s
//! contents, a hint for clients and standbys looking for it.
//!
//! Leadership lasts while the session is `Safe`: the moment it is not (jeopardy, expiry, read
//! from the clock at call time by [`Leadership::is_safe`]), the master must stop issuing
//! commands. A master that lost leadership does not campaign again under the same session: its
//! process restarts the campaign with a fresh session.

use std::sync::Arc;
use std::time::Duration;

use tabula_common::{Code, Epoch, Error};
use tabula_lockservice::client::{LockClient, Session, SessionState};
use tabula_lockservice::state::{LockMode, Sequencer};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

/// The lock whose holder is the active master.
pub const MASTER_LOCK: &str = "/tabula/master";
/// The directory of the masters' ephemeral announcement files.
pub const MASTERS_DIR: &str = "/tabula/masters";
/// The lock service's top directory.
pub const ROOT_DIR: &str = "/tabula";
/// How long one blocking acquire waits before the campaign checks its session and retries.
const ACQUIRE_WAIT: Duration = Duration::from_secs(2);

/// Who a master is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterIdentity {
    /// Its id (the name of its announcement file).
    pub id: String,
    /// Its `host:port`.
    pub addr: String,
}

/// The active master's hint in `/tabula/master`: `id addr epoch`, one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveMaster {
    /// Its id.
    pub id: String,
    /// Its address.
    pub addr: String,
    /// Its master epoch.
    pub epoch: Epoch,
}

impl ActiveMaster {
    /// The file contents.
    pub fn encode(&self) -> Vec<u8> {
        format!("{} {} {}", self.id, self.addr, self.epoch.0).into_bytes()
    }

    /// Parses file contents; `None` for an empty or malformed file.
    pub fn decode(contents: &[u8]) -> Option<ActiveMaster> {
        let text = std::str::from_utf8(contents).ok()?;
        let mut parts = text.split_whitespace();
        let id = parts.next()?.to_owned();
        let addr = parts.next()?.to_owned();
        let epoch = Epoch(parts.next()?.parse().ok()?);
        parts
            .next()
            .is_none()
            .then_some(ActiveMaster { id, addr, epoch })
    }
}

/// Reads the active master's hint, if any.
pub async fn active_master(lock: &LockClient) -> Result<Option<ActiveMaster>, Error> {
    match lock.get(MASTER_LOCK).await {
        Ok(info) if !info.lock_holders.is_empty() => Ok(ActiveMaster::decode(&info.contents)),
        Ok(_) => Ok(None),
        Err(e) if e.code == Code::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Lists the announced masters: `(id, address)`, sorted by id.
pub async fn announced_masters(lock: &LockClient) -> Result<Vec<(String, String)>, Error> {
    let listing = match lock.list(MASTERS_DIR).await {
        Ok(l) => l,
        Err(e) if e.code == Code::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for id in listing.children {
        match lock.get(&format!("{MASTERS_DIR}/{id}")).await {
            Ok(info) => out.push((id, String::from_utf8_lossy(&info.contents).into_owned())),
            Err(e) if e.code == Code::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Won leadership: valid while the session is safe.
#[derive(Clone)]
pub struct Leadership {
    session: Arc<Session>,
    sequencer: Sequencer,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("epoch", &self.sequencer.generation)
            .field("session", &self.session.id())
            .finish()
    }
}

impl Leadership {
    /// The master epoch.
    pub fn epoch(&self) -> Epoch {
        Epoch(self.sequencer.generation)
    }

    /// The lock's sequencer.
    pub fn sequencer(&self) -> &Sequencer {
        &self.sequencer
    }

    /// Whether the master may act now: its session's local lease runs.
    pub fn is_safe(&self) -> bool {
        self.session.state() == SessionState::Safe
    }

    /// The session the leadership rests on.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Resolves when the session is no longer `Safe` (cancel-safe).
    pub async fn lost(&self) {
        let mut states = self.session.subscribe();
        loop {
            if *states.borrow_and_update() != SessionState::Safe || !self.is_safe() {
                return;
            }
            // The local lease can run out without a state change being published yet: poll
            // the clock-based state as well.
            tokio::select! {
                changed = states.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    }
}

/// Creates the directories the election uses (idempotent).
pub async fn prepare(lock: &LockClient) -> Result<(), Error> {
    for dir in [ROOT_DIR, MASTERS_DIR, MASTER_LOCK] {
        match lock.create(dir, b"").await {
            Ok(_) => {}
            Err(e) if e.code == Code::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Announces `me` under `/tabula/masters/` with `session`. A leftover file of the same id
/// (impossible with fresh ids) answers `AlreadyExists`.
pub async fn announce(session: &Session, me: &MasterIdentity) -> Result<(), Error> {
    session
        .create_ephemeral(&format!("{MASTERS_DIR}/{}", me.id), me.addr.as_bytes())
        .await
        .map(|_| ())
}

/// Waits for the master lock with `session` until it is won, the session stops being safe
/// or `cancel` fires (both `Unavailable`). On winning, records the hint.
pub async fn campaign(
    lock: &LockClient,
    session: Arc<Session>,
    me: &MasterIdentity,
    cancel: &CancellationToken,
) -> Result<Leadership, Error> {
    loop {
        if session.state() != SessionState::Safe {
            return Err(Error::new(
                Code::Unavailable,
                format!("the master's session is {}", session.state()),
            ));
        }
        let attempt = session.acquire(MASTER_LOCK, LockMode::Exclusive, Some(ACQUIRE_WAIT));
        let won = tokio::select! {
            r = attempt => r?,
            () = cancel.cancelled() => {
                return Err(Error::new(Code::Unavailable, "the campaign was cancelled"));
            }
        };
        let Some(sequencer) = won else {
            debug!(master = %me.id, "still standby");
            continue;
        };
        let leadership = Leadership { session, sequencer };
        let hint = ActiveMaster {
            id: me.id.clone(),
            addr: me.addr.clone(),
            epoch: leadership.epoch(),
        };
        lock.set(MASTER_LOCK, &hint.encode(), None).await?;
        info!(master = %me.id, epoch = leadership.epoch().0, "became the active master");
        return Ok(leadership);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_round_trips_and_rejects_garbage() {
        let hint = ActiveMaster {
            id: "m-1".into(),
            addr: "127.0.0.1:7000".into(),
            epoch: Epoch(42),
        };
        assert_eq!(ActiveMaster::decode(&hint.encode()), Some(hint));
        assert_eq!(ActiveMaster::decode(b""), None);
        assert_eq!(ActiveMaster::decode(b"m-1 addr"), None);
        assert_eq!(ActiveMaster::decode(b"m-1 addr x"), None);
        assert_eq!(ActiveMaster::decode(b"m-1 addr 1 extra"), None);
        assert_eq!(ActiveMaster::decode(&[0xff, 0xfe]), None);
    }
}
