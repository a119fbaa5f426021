//! Watch streams: events from this node's applied history, in log order, in batches, through
//! a bounded channel (a slow reader holds back only its own stream).

use std::pin::Pin;

use tabula_common::{Code, Error};
use tabula_proto::tabula::lock::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::event_to_proto;
use crate::state::Compacted;
use crate::store::StateHandle;

/// Batches buffered per stream before the sender waits for the reader.
const STREAM_BUFFER: usize = 16;
/// Most events in one message.
const BATCH_EVENTS: usize = 256;

/// The stream type of `Watch`.
pub(super) type WatchStream =
    Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, tonic::Status>> + Send + 'static>>;

/// Starts streaming the events under `prefix` from `from_revision` (0: from the next applied
/// entry). A history that no longer reaches back to `from_revision` fails the call itself
/// (`Compacted`). The task ends when the reader goes away, the node stops (`stop`), or the
/// history no longer reaches back far enough for a reader that fell behind (`Compacted`, sent
/// as the stream's last item). The task is spawned on `tasks`, which the node waits for when it
/// stops.
pub(super) fn start(
    state: StateHandle,
    prefix: String,
    from_revision: u64,
    stop: CancellationToken,
    tasks: &TaskTracker,
) -> Result<WatchStream, Error> {
    if from_revision != 0 {
        state
            .read(|s| s.watchable_from(from_revision))
            .map_err(|c| compacted(from_revision, c))?;
    }
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tasks.spawn(async move {
        tokio::select! {
            () = pump(&state, &prefix, from_revision, &tx) => {}
            () = stop.cancelled() => {}
            () = tx.closed() => {}
        }
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// The error of a watch from `from`, which the history no longer reaches back to.
fn compacted(from: u64, compacted: Compacted) -> Error {
    Error::new(
        Code::Compacted {
            oldest: compacted.oldest,
        },
        format!(
            "watch from revision {from}: {compacted}; read again, then watch from the read's \
             revision + 1"
        ),
    )
}

type Sender = mpsc::Sender<Result<pb::WatchResponse, tonic::Status>>;

async fn pump(state: &StateHandle, prefix: &str, from_revision: u64, tx: &Sender) {
    let mut applied = state.subscribe();
    let mut next = if from_revision == 0 {
        state.read(|s| s.last_applied_index()) + 1
    } else {
        from_revision
    };
    loop {
        applied.borrow_and_update();
        let read = state.read(|s| {
            s.events_since(next, prefix)
                .map(|events| (events, s.last_applied_index()))
        });
        match read {
            Ok((events, last_applied)) => {
                for chunk in events.chunks(BATCH_EVENTS) {
                    let batch = pb::WatchResponse {
                        events: chunk.iter().map(event_to_proto).collect(),
                    };
                    if tx.send(Ok(batch)).await.is_err() {
                        return;
                    }
                }
                next = next.max(last_applied + 1);
            }
            Err(c) => {
                let _ = tx.send(Err(compacted(next, c).into())).await;
                return;
            }
        }
        if applied.changed().await.is_err() {
            let e = Error::new(
                Code::Unavailable,
                "the node is shutting down; watch elsewhere",
            );
            let _ = tx.send(Err(e.into())).await;
            return;
        }
    }
}
