//! Progress of long admin operations, on stderr only (stdout keeps the one result): a line
//! every [`INTERVAL`] with the elapsed time, and what is done when that is known.
//!
//! Two shapes: [`while_running`] for one long call (flush, compact: the master does the
//! per-tablet work, so only the time is known), and [`wait_served`] for what the master
//! finishes in its next rounds (the tablets of a new table, a split's children, a merged or
//! moved tablet): the master's tablet list is polled until every wanted tablet is served.

use std::future::Future;
use std::time::{Duration, Instant};

use tabula_client::{Admin, TabletInfo, TabletState};
use tabula_common::Code;

/// How often a progress line is printed.
pub(crate) const INTERVAL: Duration = Duration::from_secs(2);
/// How often the master's tablet list is read while waiting.
const POLL: Duration = Duration::from_millis(300);

/// Whether the master's view says `tablet` is served: assigned, to a server.
pub(crate) fn served(tablet: &TabletInfo) -> bool {
    tablet.record.state == TabletState::Assigned && tablet.record.server.is_some()
}

/// Prints `what: <detail>, Ns elapsed` lines to stderr, at most one per [`INTERVAL`].
pub(crate) struct Progress {
    what: String,
    started: Instant,
    last: Instant,
}

impl Progress {
    /// Starts the clock; nothing is printed before [`INTERVAL`] has passed.
    pub(crate) fn new(what: impl Into<String>) -> Progress {
        let now = Instant::now();
        Progress {
            what: what.into(),
            started: now,
            last: now,
        }
    }

    /// Prints `detail` if a line is due.
    pub(crate) fn tick(&mut self, detail: impl FnOnce() -> String) {
        if self.last.elapsed() >= INTERVAL {
            self.last = Instant::now();
            eprintln!("{}", line(&self.what, &detail(), self.started.elapsed()));
        }
    }

    /// Time since the start.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// One progress line.
pub(crate) fn line(what: &str, detail: &str, elapsed: Duration) -> String {
    format!("{what}: {detail}, {}s elapsed", elapsed.as_secs())
}

/// Runs `call`, printing a progress line every [`INTERVAL`] while it runs.
pub(crate) async fn while_running<T>(what: &str, call: impl Future<Output = T>) -> T {
    let mut progress = Progress::new(what);
    let mut call = std::pin::pin!(call);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + INTERVAL, INTERVAL);
    loop {
        tokio::select! {
            answer = &mut call => return answer,
            _ = ticks.tick() => progress.tick(|| "running".to_owned()),
        }
    }
}

/// Polls the tablets of `table` until `count` says every wanted tablet is served: `count`
/// answers (served, wanted) for a tablet list, and the wait ends when wanted > 0 and all are
/// served. Answers the last list. Gives up after `deadline` with an error saying how far it
/// got (the master goes on; nothing is undone).
pub(crate) async fn wait_served(
    admin: &Admin,
    table: &str,
    what: &str,
    deadline: Duration,
    count: impl Fn(&[TabletInfo]) -> (usize, usize),
) -> anyhow::Result<Vec<TabletInfo>> {
    let mut progress = Progress::new(what);
    let mut last = (0, 0);
    loop {
        match admin.list_tablets(Some(table)).await {
            Ok(tablets) => {
                last = count(&tablets);
                if last.1 > 0 && last.0 == last.1 {
                    return Ok(tablets);
                }
            }
            // The master's picture may not have the new table yet.
            Err(e) if e.code == Code::NotFound || e.code.is_retryable() => {}
            Err(e) => return Err(e.into()),
        }
        if progress.elapsed() >= deadline {
            anyhow::bail!(
                "{what}: {} of {} tablets served after {}s; the master goes on assigning them \
                 (see `tabula tablets {table}`)",
                last.0,
                last.1,
                deadline.as_secs()
            );
        }
        progress.tick(|| format!("{}/{} tablets served", last.0, last.1));
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progress_line_names_the_operation_and_the_time() {
        assert_eq!(
            line(
                "split t",
                "1/2 tablets served",
                Duration::from_millis(4_300)
            ),
            "split t: 1/2 tablets served, 4s elapsed"
        );
    }
}
