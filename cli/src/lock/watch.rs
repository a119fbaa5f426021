//! `tabula lock watch PATH`: prints the events of the files whose path starts with PATH (a
//! plain string prefix), one line each, until Ctrl-C or SIGTERM. With `--output json`, one
//! JSON object per line. A note saying where the watch starts goes to stderr once it is open.

use clap::Args;
use serde_json::json;
use tabula_lockservice::client::ClientOptions;
use tabula_lockservice::state::{Event, EventKind};

use super::cell;
use super::files::mode_name;
use crate::output::{OutputFormat, print_flushed};
use crate::signal::StopSignals;

/// `tabula lock watch`.
#[derive(Debug, Args)]
pub(crate) struct WatchArgs {
    /// Follow the files whose path starts with this string ("/a" also matches "/ab").
    pub(crate) path: String,
    /// Start at this revision (a `get`'s revision + 1 follows on from that read); default:
    /// from now on.
    #[arg(long, value_name = "R")]
    pub(crate) from_revision: Option<u64>,
}

/// Runs `watch`.
pub(crate) fn run(
    cell_addrs: &[String],
    args: WatchArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let client = cell::connect(cell_addrs, ClientOptions::default())?;
    cell::block_on(async move {
        let mut signals = StopSignals::install()?;
        let from = match args.from_revision {
            Some(r) if r > 0 => r,
            // From now on: the revision a linearizable read sees, plus one.
            _ => client.list("/").await?.revision + 1,
        };
        let mut stream = client.watch(&args.path, from).await?;
        match output {
            OutputFormat::Table => eprintln!(
                "watching {:?} from revision {from}; Ctrl-C to stop",
                args.path
            ),
            OutputFormat::Json => {
                eprintln!(
                    "{}",
                    json!({ "event": "watching", "prefix": args.path, "from_revision": from })
                );
            }
        }
        loop {
            tokio::select! {
                _ = signals.recv() => return Ok(()),
                next = stream.next() => match next {
                    Some(Ok(event)) => print_flushed(&match output {
                        OutputFormat::Table => event_line(&event),
                        OutputFormat::Json => event_json(&event).to_string(),
                    })?,
                    Some(Err(e)) => return Err(e.into()),
                    None => return Ok(()),
                },
            }
        }
    })
}

/// An event's kind: `created`, `changed`, `deleted`, `locked` or `unlocked`.
fn kind_name(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::Created { .. } => "created",
        EventKind::Changed => "changed",
        EventKind::Deleted => "deleted",
        EventKind::Locked { .. } => "locked",
        EventKind::Unlocked { .. } => "unlocked",
    }
}

/// One event for a human: `revision=R path=P kind=K` and the kind's details as `key=value`.
pub(crate) fn event_line(event: &Event) -> String {
    let mut line = format!(
        "revision={} path={} kind={}",
        event.revision,
        event.path,
        kind_name(&event.kind)
    );
    match &event.kind {
        EventKind::Created {
            ephemeral_session: Some(session),
        } => line.push_str(&format!(" ephemeral_session={session}")),
        EventKind::Created {
            ephemeral_session: None,
        }
        | EventKind::Changed
        | EventKind::Deleted => {}
        EventKind::Locked {
            session,
            mode,
            generation,
        } => line.push_str(&format!(
            " session={session} mode={} generation={generation}",
            mode_name(*mode)
        )),
        EventKind::Unlocked { session, mode } => {
            line.push_str(&format!(" session={session} mode={}", mode_name(*mode)));
        }
    }
    line
}

/// One event for a script: the same fields as `event_line`, absent details left out.
pub(crate) fn event_json(event: &Event) -> serde_json::Value {
    let mut doc = json!({
        "revision": event.revision,
        "path": event.path,
        "kind": kind_name(&event.kind),
    });
    let details = match &event.kind {
        EventKind::Created { ephemeral_session } => {
            json!({ "ephemeral_session": ephemeral_session })
        }
        EventKind::Changed | EventKind::Deleted => json!({}),
        EventKind::Locked {
            session,
            mode,
            generation,
        } => json!({ "session": session, "mode": mode_name(*mode), "generation": generation }),
        EventKind::Unlocked { session, mode } => {
            json!({ "session": session, "mode": mode_name(*mode) })
        }
    };
    if let (Some(doc), serde_json::Value::Object(details)) = (doc.as_object_mut(), details) {
        doc.extend(details);
    }
    doc
}

#[cfg(test)]
mod tests {
    use tabula_lockservice::state::LockMode;

    use super::*;

    fn event(kind: EventKind) -> Event {
        Event {
            revision: 17,
            path: "/cell/leader".to_owned(),
            kind,
        }
    }

    #[test]
    fn every_event_kind_prints_on_one_line_with_its_details() {
        let cases = [
            (
                EventKind::Created {
                    ephemeral_session: None,
                },
                "revision=17 path=/cell/leader kind=created",
            ),
            (
                EventKind::Created {
                    ephemeral_session: Some(4),
                },
                "revision=17 path=/cell/leader kind=created ephemeral_session=4",
            ),
            (
                EventKind::Changed,
                "revision=17 path=/cell/leader kind=changed",
            ),
            (
                EventKind::Deleted,
                "revision=17 path=/cell/leader kind=deleted",
            ),
            (
                EventKind::Locked {
                    session: 4,
                    mode: LockMode::Exclusive,
                    generation: 17,
                },
                "revision=17 path=/cell/leader kind=locked session=4 mode=exclusive generation=17",
            ),
            (
                EventKind::Unlocked {
                    session: 4,
                    mode: LockMode::Shared,
                },
                "revision=17 path=/cell/leader kind=unlocked session=4 mode=shared",
            ),
        ];
        for (kind, line) in cases {
            assert_eq!(event_line(&event(kind)), line);
        }
    }

    #[test]
    fn an_event_as_json_has_the_same_fields() {
        let doc = event_json(&event(EventKind::Locked {
            session: 4,
            mode: LockMode::Shared,
            generation: 17,
        }));
        assert_eq!(
            doc,
            json!({
                "revision": 17,
                "path": "/cell/leader",
                "kind": "locked",
                "session": 4,
                "mode": "shared",
                "generation": 17,
            })
        );
        assert_eq!(
            event_json(&event(EventKind::Deleted)),
            json!({ "revision": 17, "path": "/cell/leader", "kind": "deleted" })
        );
    }
}
