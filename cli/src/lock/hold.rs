//! `tabula lock hold PATH`: takes PATH's lock in a new session and holds it until Ctrl-C or
//! SIGTERM, printing what happens as one line per event (tests and scripts parse them):
//!
//! ```text
//! waiting path=<path>                                    (once, if the first try fails)
//! acquired path=<path> mode=<exclusive|shared> generation=<g> session=<s>
//! holding generation=<g> at_unix_us=<u>                  (every --report-ms, only while safe)
//! state <safe|jeopardy|expired>                          (on each session state change)
//! expired: the session ended; the lock is lost           (then exit 1, nothing released)
//! released path=<path>                                   (after Ctrl-C or SIGTERM, exit 0)
//! ```
//!
//! With `--output json` each line is one JSON object with the same fields and an `"event"`
//! key. Every line is flushed when printed.
//!
//! Invariant: a `holding` line is printed only after `Session::state` answered `Safe`, and its
//! `at_unix_us` is the wall clock read right after that answer: a checker comparing the stamps
//! of several holders sees only instants at which the holder's lease was known to run.
//!
//! The session's state is checked every 50 ms and whenever the session publishes a change.
//! Ctrl-C while still waiting closes the session and exits 0 with nothing held; `--wait-secs`
//! running out is an error (exit 1).

use std::pin::pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use serde_json::json;
use tabula_common::{Code, Error};
use tabula_lockservice::client::{ClientOptions, LockClient, Session, SessionState};
use tabula_lockservice::state::{LockMode, Sequencer};
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::cell;
use super::files::mode_name;
use crate::exit::UsageError;
use crate::output::{OutputFormat, print_flushed};
use crate::signal::StopSignals;

/// Longest single blocking Acquire; the command loops on them while it waits.
const ACQUIRE_CHUNK: Duration = Duration::from_secs(5);
/// How often the session's state is checked even without a published change.
const STATE_POLL: Duration = Duration::from_millis(50);

/// `tabula lock hold`.
#[derive(Debug, Args)]
pub(crate) struct HoldArgs {
    /// The file whose lock to take; created (empty) if missing.
    pub(crate) path: String,
    /// Take the lock shared (many holders) instead of exclusive.
    #[arg(long)]
    pub(crate) shared: bool,
    /// The session's TTL to ask the cell for, in milliseconds.
    #[arg(long, default_value_t = 10_000, value_name = "N")]
    pub(crate) ttl_ms: u64,
    /// Give up waiting for the lock after N seconds (exit 1); default: wait forever.
    #[arg(long, value_name = "N")]
    pub(crate) wait_secs: Option<u64>,
    /// Print a `holding` line every N milliseconds while the session is safe; 0: never.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub(crate) report_ms: u64,
}

/// Runs `hold`.
pub(crate) fn run(
    cell_addrs: &[String],
    args: HoldArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    if args.ttl_ms == 0 {
        return Err(UsageError("--ttl-ms must be positive".to_owned()).into());
    }
    let options = ClientOptions {
        session_ttl: Duration::from_millis(args.ttl_ms),
        ..ClientOptions::default()
    };
    let client = cell::connect(cell_addrs, options)?;
    cell::block_on(hold(client, args, output))
}

/// One line of `hold`'s output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// The first try failed; blocking now.
    Waiting { path: &'a str },
    /// The lock is held.
    Acquired {
        sequencer: &'a Sequencer,
        session: u64,
    },
    /// The session was safe at `at_unix_us`.
    Holding { generation: u64, at_unix_us: u64 },
    /// The session's state changed.
    State(SessionState),
    /// The session ended: the lock is lost.
    Expired { path: &'a str },
    /// The lock was released and the session closed.
    Released { path: &'a str },
}

impl Line<'_> {
    /// The line for `--output table`.
    pub(crate) fn text(&self) -> String {
        match self {
            Line::Waiting { path } => format!("waiting path={path}"),
            Line::Acquired { sequencer, session } => format!(
                "acquired path={} mode={} generation={} session={session}",
                sequencer.path,
                mode_name(sequencer.mode),
                sequencer.generation
            ),
            Line::Holding {
                generation,
                at_unix_us,
            } => format!("holding generation={generation} at_unix_us={at_unix_us}"),
            Line::State(state) => format!("state {state}"),
            Line::Expired { .. } => "expired: the session ended; the lock is lost".to_owned(),
            Line::Released { path } => format!("released path={path}"),
        }
    }

    /// The line for `--output json`.
    pub(crate) fn json(&self) -> serde_json::Value {
        match self {
            Line::Waiting { path } => json!({ "event": "waiting", "path": path }),
            Line::Acquired { sequencer, session } => json!({
                "event": "acquired",
                "path": sequencer.path,
                "mode": mode_name(sequencer.mode),
                "generation": sequencer.generation,
                "session": session,
            }),
            Line::Holding {
                generation,
                at_unix_us,
            } => json!({ "event": "holding", "generation": generation, "at_unix_us": at_unix_us }),
            Line::State(state) => json!({ "event": "state", "state": state.to_string() }),
            Line::Expired { path } => json!({
                "event": "expired",
                "path": path,
                "message": "the session ended; the lock is lost",
            }),
            Line::Released { path } => json!({ "event": "released", "path": path }),
        }
    }

    fn print(&self, output: OutputFormat) -> anyhow::Result<()> {
        match output {
            OutputFormat::Table => print_flushed(&self.text()),
            OutputFormat::Json => print_flushed(&self.json().to_string()),
        }
    }
}

/// How waiting for the lock ended, short of an error.
enum Acquire {
    Got(Sequencer),
    Stopped,
    Expired,
    TimedOut,
}

/// How holding the lock ended.
enum Held {
    Stopped,
    Expired,
}

async fn hold(client: LockClient, args: HoldArgs, output: OutputFormat) -> anyhow::Result<()> {
    let mut signals = StopSignals::install()?;
    let session = client.open_session().await?;
    let mut states = StateLog::new(&session, output);
    let outcome = hold_in(&client, &session, &args, &mut states, &mut signals).await;
    let path = args.path.as_str();
    match outcome {
        Ok(Held::Stopped) => stop(session, path, output).await,
        Ok(Held::Expired) => {
            Line::Expired { path }.print(output)?;
            Err(Error::new(
                Code::SessionExpired,
                format!("session {} ended while holding {path}", session.id()),
            )
            .into())
        }
        Err(e) => {
            if let Err(close) = session.close().await {
                eprintln!("warning: could not close the session: {close}");
            }
            if e.is::<Interrupted>() {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

/// Creates the file if needed, waits for the lock, holds it.
async fn hold_in(
    client: &LockClient,
    session: &Session,
    args: &HoldArgs,
    states: &mut StateLog,
    signals: &mut StopSignals,
) -> anyhow::Result<Held> {
    let path = args.path.as_str();
    match client.create(path, b"").await {
        Ok(_) => {}
        Err(e) if e.code == Code::AlreadyExists => {}
        Err(e) => return Err(e.into()),
    }
    let mode = if args.shared {
        LockMode::Shared
    } else {
        LockMode::Exclusive
    };
    let wait = args.wait_secs.map(Duration::from_secs);
    let sequencer = match acquire(session, path, mode, wait, states, signals).await? {
        Acquire::Got(sequencer) => sequencer,
        Acquire::Expired => return Ok(Held::Expired),
        Acquire::Stopped => {
            eprintln!("interrupted while waiting for {path}; nothing held");
            return Err(Interrupted.into());
        }
        Acquire::TimedOut => {
            return Err(Error::new(
                Code::DeadlineExceeded,
                format!(
                    "{path} not acquired within {}s",
                    wait.unwrap_or_default().as_secs()
                ),
            )
            .into());
        }
    };
    Line::Acquired {
        sequencer: &sequencer,
        session: session.id(),
    }
    .print(states.output)?;
    let report = (args.report_ms > 0).then(|| Duration::from_millis(args.report_ms));
    keep(session, &sequencer, report, states, signals).await
}

/// Ctrl-C while waiting: the session is closed and the command ends successfully.
#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Tries once, then blocks in chunks until the lock is taken, the wait runs out, the
/// session expires or a stop signal comes.
async fn acquire(
    session: &Session,
    path: &str,
    mode: LockMode,
    wait: Option<Duration>,
    states: &mut StateLog,
    signals: &mut StopSignals,
) -> anyhow::Result<Acquire> {
    let mut printed_waiting = false;
    let deadline = wait.map(|w| Instant::now() + w);
    let mut chunk = None;
    loop {
        if let Some(done) = attempt(session, path, mode, chunk, states, signals).await? {
            return Ok(done);
        }
        let left = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => ACQUIRE_CHUNK,
        };
        if left.is_zero() {
            return Ok(Acquire::TimedOut);
        }
        if !printed_waiting {
            Line::Waiting { path }.print(states.output)?;
            printed_waiting = true;
        }
        chunk = Some(left.min(ACQUIRE_CHUNK));
    }
}

/// One Acquire waiting up to `wait`, raced against stop signals and the session's state.
/// `None`: the lock is held by others.
async fn attempt(
    session: &Session,
    path: &str,
    mode: LockMode,
    wait: Option<Duration>,
    states: &mut StateLog,
    signals: &mut StopSignals,
) -> anyhow::Result<Option<Acquire>> {
    let mut call = pin!(session.acquire(path, mode, wait));
    loop {
        tokio::select! {
            _ = signals.recv() => return Ok(Some(Acquire::Stopped)),
            r = &mut call => return match r {
                Ok(Some(sequencer)) => Ok(Some(Acquire::Got(sequencer))),
                Ok(None) => Ok(None),
                Err(e) if e.code == Code::SessionExpired => {
                    states.check(session)?;
                    Ok(Some(Acquire::Expired))
                }
                Err(e) => Err(e.into()),
            },
            () = states.wake() => {
                if states.check(session)? == SessionState::Expired {
                    return Ok(Some(Acquire::Expired));
                }
            }
        }
    }
}

/// Holds the lock until a stop signal or the session's end, reporting as asked.
async fn keep(
    session: &Session,
    sequencer: &Sequencer,
    report: Option<Duration>,
    states: &mut StateLog,
    signals: &mut StopSignals,
) -> anyhow::Result<Held> {
    let mut reports = report.map(ticker);
    loop {
        tokio::select! {
            _ = signals.recv() => {
                // A lock whose session already ended cannot be released.
                if states.check(session)? == SessionState::Expired {
                    return Ok(Held::Expired);
                }
                return Ok(Held::Stopped);
            }
            () = states.wake() => {
                if states.check(session)? == SessionState::Expired {
                    return Ok(Held::Expired);
                }
            }
            () = tick(&mut reports) => {
                // The clock is read *before* the check: if the session is Safe at the (later)
                // check, it was Safe at the stamp too. Read after, a pause between the two
                // could stamp an instant the check never vouched for.
                let stamp = now_unix_us();
                let state = session.state();
                let at_unix_us = (state == SessionState::Safe).then_some(stamp);
                if states.show(state)? == SessionState::Expired {
                    return Ok(Held::Expired);
                }
                if let Some(at_unix_us) = at_unix_us {
                    Line::Holding { generation: sequencer.generation, at_unix_us }
                        .print(states.output)?;
                }
            }
        }
    }
}

/// Releases the lock, closes the session, prints `released`. The lock counts as released if
/// either step succeeded (closing the session releases its locks).
async fn stop(session: Session, path: &str, output: OutputFormat) -> anyhow::Result<()> {
    let released = session.release(path).await;
    if let Err(e) = &released {
        eprintln!("warning: release of {path} failed ({e}); closing the session instead");
    }
    let closed = session.close().await;
    match (released, closed) {
        (Ok(()), Err(e)) => {
            eprintln!("warning: could not close the session: {e}");
            Line::Released { path }.print(output)
        }
        (_, Ok(())) => Line::Released { path }.print(output),
        (Err(_), Err(e)) => Err(e.into()),
    }
}

/// The session's state as last printed, and what wakes the command to check it again.
struct StateLog {
    output: OutputFormat,
    shown: SessionState,
    changes: watch::Receiver<SessionState>,
    /// False once the state channel closed (then only the poll wakes).
    changes_open: bool,
    poll: Interval,
}

impl StateLog {
    fn new(session: &Session, output: OutputFormat) -> StateLog {
        StateLog {
            output,
            // Every session starts safe; a change from there is printed.
            shown: SessionState::Safe,
            changes: session.subscribe(),
            changes_open: true,
            poll: ticker(STATE_POLL),
        }
    }

    /// Resolves at the next poll tick or published state change. Cancel-safe.
    async fn wake(&mut self) {
        tokio::select! {
            _ = self.poll.tick() => {}
            r = self.changes.changed(), if self.changes_open => {
                if r.is_err() {
                    self.changes_open = false;
                }
            }
        }
    }

    /// Reads the session's state now and prints it if it changed; answers it.
    fn check(&mut self, session: &Session) -> anyhow::Result<SessionState> {
        self.show(session.state())
    }

    /// Prints `state` if it differs from the last printed one; answers it.
    fn show(&mut self, state: SessionState) -> anyhow::Result<SessionState> {
        if let Some(line) = state_change(&mut self.shown, state) {
            line.print(self.output)?;
        }
        Ok(state)
    }
}

/// The line announcing `now` if it differs from `shown`, which it then becomes.
fn state_change(shown: &mut SessionState, now: SessionState) -> Option<Line<'static>> {
    if *shown == now {
        return None;
    }
    *shown = now;
    Some(Line::State(now))
}

/// An interval whose first tick is one period from now and which does not burst after a
/// stall.
fn ticker(every: Duration) -> Interval {
    let mut interval = tokio::time::interval_at(Instant::now() + every, every);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

/// The next tick of `interval`, never without one. Cancel-safe.
async fn tick(interval: &mut Option<Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Wall-clock microseconds since the Unix epoch (0 before it).
fn now_unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequencer() -> Sequencer {
        Sequencer {
            path: "/cell/master".to_owned(),
            mode: LockMode::Exclusive,
            generation: 41,
        }
    }

    #[test]
    fn every_line_prints_in_the_documented_format() {
        let s = sequencer();
        let cases = [
            (Line::Waiting { path: "/a" }, "waiting path=/a"),
            (
                Line::Acquired {
                    sequencer: &s,
                    session: 7,
                },
                "acquired path=/cell/master mode=exclusive generation=41 session=7",
            ),
            (
                Line::Holding {
                    generation: 41,
                    at_unix_us: 1_700_000_000_000_001,
                },
                "holding generation=41 at_unix_us=1700000000000001",
            ),
            (Line::State(SessionState::Jeopardy), "state jeopardy"),
            (
                Line::Expired { path: "/a" },
                "expired: the session ended; the lock is lost",
            ),
            (Line::Released { path: "/a" }, "released path=/a"),
        ];
        for (line, text) in cases {
            assert_eq!(line.text(), text);
        }
    }

    #[test]
    fn json_lines_carry_the_same_fields_and_an_event_key() {
        let s = Sequencer {
            mode: LockMode::Shared,
            ..sequencer()
        };
        assert_eq!(
            Line::Acquired {
                sequencer: &s,
                session: 7
            }
            .json(),
            json!({
                "event": "acquired",
                "path": "/cell/master",
                "mode": "shared",
                "generation": 41,
                "session": 7,
            })
        );
        assert_eq!(
            Line::Holding {
                generation: 41,
                at_unix_us: 5
            }
            .json(),
            json!({ "event": "holding", "generation": 41, "at_unix_us": 5 })
        );
        assert_eq!(
            Line::State(SessionState::Expired).json(),
            json!({ "event": "state", "state": "expired" })
        );
        assert_eq!(
            Line::Released { path: "/a" }.json(),
            json!({ "event": "released", "path": "/a" })
        );
    }

    #[test]
    fn a_state_is_announced_only_when_it_changes() {
        let mut shown = SessionState::Safe;
        assert_eq!(state_change(&mut shown, SessionState::Safe), None);
        assert_eq!(
            state_change(&mut shown, SessionState::Jeopardy),
            Some(Line::State(SessionState::Jeopardy))
        );
        assert_eq!(state_change(&mut shown, SessionState::Jeopardy), None);
        assert_eq!(
            state_change(&mut shown, SessionState::Safe),
            Some(Line::State(SessionState::Safe))
        );
    }

    #[test]
    fn the_wall_clock_reads_after_2020() {
        assert!(now_unix_us() > 1_577_836_800_000_000);
    }
}
