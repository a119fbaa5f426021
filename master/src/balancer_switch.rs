//! The cluster-wide balancer switch: the lock-service file `/tabula/balancer`, contents `on`
//! or `off` (surrounding whitespace ignored); a missing file means on. It lives in the lock
//! service, not in a master, so a standby that takes over keeps the operator's setting.
//!
//! The active master reads it every round (balancing happens only when it is on *and* the
//! process was not started with `--no-balancer`); `SetBalancer` writes it by compare-and-set
//! on the file's generation, so the previous setting it answers is the one it replaced.
//! Contents that are neither `on` nor `off` are an error to a reader (the round then plans no
//! balancing moves: it cannot tell what the operator wanted); a write replaces them.

use tabula_common::{Code, Error};
use tabula_lockservice::client::LockClient;
use tracing::warn;

/// The switch's file in the lock service.
pub const BALANCER_PATH: &str = "/tabula/balancer";

/// How many times `set` retries a compare-and-set that lost a race with another writer.
const MAX_SET_ATTEMPTS: usize = 16;

/// The file's contents for `enabled`.
pub fn encode(enabled: bool) -> &'static [u8] {
    if enabled { b"on" } else { b"off" }
}

/// The setting `contents` names, or `None` if they name none.
pub fn decode(contents: &[u8]) -> Option<bool> {
    match contents.trim_ascii() {
        b"on" => Some(true),
        b"off" => Some(false),
        _ => None,
    }
}

/// The switch's setting and the file's generation (`None`: no file, so on).
async fn read_raw(lock: &LockClient) -> Result<(Option<bool>, Option<u64>), Error> {
    match lock.get(BALANCER_PATH).await {
        Ok(info) => Ok((decode(&info.contents), Some(info.generation))),
        Err(e) if e.code == Code::NotFound => Ok((Some(true), None)),
        Err(e) => Err(e),
    }
}

/// Whether the switch is on. `Internal` if the file holds neither `on` nor `off`.
pub async fn read(lock: &LockClient) -> Result<bool, Error> {
    match read_raw(lock).await? {
        (Some(on), _) => Ok(on),
        (None, _) => Err(Error::internal(format!(
            "{BALANCER_PATH} holds neither \"on\" nor \"off\""
        ))),
    }
}

/// Sets the switch to `enabled`; answers the setting it replaced (unreadable contents count
/// as the default, on).
pub async fn set(lock: &LockClient, enabled: bool) -> Result<bool, Error> {
    let mut last = None;
    for _ in 0..MAX_SET_ATTEMPTS {
        let (previous, generation) = read_raw(lock).await?;
        let previous = previous.unwrap_or_else(|| {
            warn!(
                path = BALANCER_PATH,
                "replacing unreadable balancer switch contents"
            );
            true
        });
        let written = match generation {
            Some(g) => lock.set(BALANCER_PATH, encode(enabled), Some(g)).await,
            None => lock.create(BALANCER_PATH, encode(enabled)).await,
        };
        match written {
            Ok(_) => return Ok(previous),
            // Someone else wrote between the read and the write: read again.
            Err(e) if matches!(e.code, Code::AlreadyExists | Code::Aborted) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::internal("the balancer switch could not be written")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_round_trip_and_anything_else_is_no_setting() {
        assert_eq!(decode(encode(true)), Some(true));
        assert_eq!(decode(encode(false)), Some(false));
        assert_eq!(decode(b" off\n"), Some(false));
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"OFF"), None);
        assert_eq!(decode(b"yes"), None);
    }
}
