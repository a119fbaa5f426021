//! `MutateRow` (one row, atomically) and `MutateRows` (many rows, each atomically, each with its
//! own status).
//!
//! `MutateRows` checks the request as a whole first (the tablet ref, the entry count, at most
//! 100k mutations in total, as Cloud Bigtable), then each entry on its own: a bad row key,
//! mutation or family, or a row this server does not serve, fails that entry only. The good
//! entries are applied in lanes — entries of one row always in the same lane, in request
//! order — so that many syncs share one group commit. Before answering, the gate is asked
//! again; if the server stopped being safe, every entry that was applied reports
//! `Unavailable` (outcome unknown).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::Bytes;
use tabula_common::{Code, Error};
use tabula_proto::tabula::tablet::v1 as api;
use tokio::task::JoinSet;

use crate::engine::RowMutation;
use crate::engine::mutation::MAX_MUTATIONS;

use super::field::Field;
use super::{ServedTablet, Shared, blocking, convert, route, with_row_locked};

/// Most lanes one `MutateRows` applies in parallel.
const MAX_LANES: usize = 32;

/// `MutateRow`.
pub(super) async fn mutate_row(shared: &Shared, req: api::MutateRowRequest) -> Result<(), Error> {
    shared.gate.check_serving()?;
    let route = route(req.tablet)?;
    let row = convert::row_key(&Field::Name("row_key"), req.row_key, route.table)?;
    let mutations = convert::mutations(&Field::Name("mutations"), req.mutations, false)?;
    let served = shared.registry.route_row(&route, &row)?;
    convert::check_families(
        &Field::Name("mutations"),
        &mutations,
        &served.tablet.schema(),
    )?;
    served.count_write();
    apply_locked(served, RowMutation { row, mutations }).await?;
    shared.confirm_write()
}

/// Applies `m` under its row's lock (so no check-and-mutate or read-modify-write of the row
/// runs in between): shared, unless `m` adds to aggregate cells, which reads the row.
/// A plain write runs in the caller's task (`Tablet::apply_holding` finishes it in a task of
/// its own if the caller goes away); one with adds, in a task of its own from the start.
async fn apply_locked(served: Arc<ServedTablet>, m: RowMutation) -> Result<(), Error> {
    let row = m.row.clone();
    if !m.has_aggregate_adds() {
        let m = resolve_aggregates(&served, m).await?;
        let lock = served.tablet.lock_row_shared_async(&row).await;
        served.tablet.apply_holding(m, lock).await?;
        return Ok(());
    }
    with_row_locked(served, row, move |served| async move {
        let m = resolve_aggregates(&served, m).await?;
        served.tablet.apply_in_task(m).await?;
        Ok(())
    })
    .await
}

/// `m` with its `AddToCell`s resolved and checked against the schema
/// (`Tablet::resolve_aggregates`); the caller holds the row's lock until `m` is applied. Adds
/// read the row, on the blocking pool; anything else is checked in place.
pub(super) async fn resolve_aggregates(
    served: &Arc<ServedTablet>,
    m: RowMutation,
) -> Result<RowMutation, Error> {
    if !m.has_aggregate_adds() {
        return Ok(served.tablet.resolve_aggregates(m)?);
    }
    let reader = served.clone();
    blocking(move || Ok(reader.tablet.resolve_aggregates(m)?)).await
}

/// `MutateRows`.
pub(super) async fn mutate_rows(
    shared: &Shared,
    req: api::MutateRowsRequest,
) -> Result<api::MutateRowsResponse, Error> {
    shared.gate.check_serving()?;
    let route = route(req.tablet)?;
    check_batch(&req.entries, shared.options.max_batch_entries)?;
    let count = req.entries.len();
    let mut results: Vec<Option<Result<(), Error>>> = vec![None; count];
    let mut lanes: Vec<Vec<(usize, Arc<ServedTablet>, RowMutation)>> =
        (0..MAX_LANES.min(count)).map(|_| Vec::new()).collect();
    let entries = Field::Name("entries");
    for (i, entry) in req.entries.into_iter().enumerate() {
        let field = entries.at(i);
        let checked = (|| {
            let row = convert::row_key(&field.member("row_key"), entry.row_key, route.table)?;
            let field = field.member("mutations");
            let mutations = convert::mutations(&field, entry.mutations, false)?;
            let served = shared.registry.route_row(&route, &row)?;
            convert::check_families(&field, &mutations, &served.tablet.schema())?;
            Ok::<_, Error>((served, RowMutation { row, mutations }))
        })();
        match checked {
            Ok((served, m)) => {
                let lane = lane_of(&m.row, lanes.len());
                lanes[lane].push((i, served, m));
            }
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    let mut tasks = JoinSet::new();
    for lane in lanes.into_iter().filter(|l| !l.is_empty()) {
        tasks.spawn(async move {
            let mut done = Vec::with_capacity(lane.len());
            for (i, served, m) in lane {
                served.count_write();
                done.push((i, apply_locked(served, m).await));
            }
            done
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let done = joined.map_err(|e| Error::internal(format!("a MutateRows lane failed: {e}")))?;
        for (i, r) in done {
            results[i] = Some(r);
        }
    }
    let unsafe_now = shared.confirm_write().err();
    let entries = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let r = r.unwrap_or_else(|| Err(Error::internal("entry was not processed")));
            let r = match (r, &unsafe_now) {
                (Ok(()), Some(e)) => Err(e.clone()),
                (r, _) => r,
            };
            entry_status(i, r)
        })
        .collect();
    Ok(api::MutateRowsResponse { entries })
}

/// Limits of the request as a whole.
fn check_batch(
    entries: &[api::mutate_rows_request::Entry],
    max_entries: usize,
) -> Result<(), Error> {
    if entries.is_empty() {
        return Err(Error::invalid_argument(
            "entries: at least one entry is required",
        ));
    }
    if entries.len() > max_entries {
        return Err(Error::invalid_argument(format!(
            "entries: at most {max_entries} entries per request, got {}",
            entries.len()
        )));
    }
    let total: usize = entries.iter().map(|e| e.mutations.len()).sum();
    if total > MAX_MUTATIONS {
        return Err(Error::invalid_argument(format!(
            "entries: at most {MAX_MUTATIONS} mutations in all entries together, got {total}"
        )));
    }
    Ok(())
}

fn lane_of(row: &Bytes, lanes: usize) -> usize {
    let mut h = DefaultHasher::new();
    row.hash(&mut h);
    (h.finish() as usize) % lanes.max(1)
}

/// The wire status of entry `index`.
fn entry_status(index: usize, r: Result<(), Error>) -> api::mutate_rows_response::Entry {
    match r {
        Ok(()) => api::mutate_rows_response::Entry {
            index: index as i64,
            code: 0,
            message: String::new(),
            tabula_code: String::new(),
        },
        Err(e) => {
            let status = tonic::Status::from(e.clone());
            let tabula_code = status
                .metadata()
                .get("tabula-code")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let message = match &e.code {
                Code::WrongTablet { hint } if hint != &e.message => {
                    format!("{} ({hint})", e.message)
                }
                _ => e.message,
            };
            api::mutate_rows_response::Entry {
                index: index as i64,
                code: status.code() as i32,
                message,
                tabula_code,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_statuses_carry_grpc_and_tabula_codes() {
        let ok = entry_status(0, Ok(()));
        assert_eq!((ok.code, ok.tabula_code.as_str()), (0, ""));
        let bad = entry_status(3, Err(Error::invalid_argument("nope")));
        assert_eq!(bad.index, 3);
        assert_eq!(bad.code, tonic::Code::InvalidArgument as i32);
        assert_eq!(bad.tabula_code, "invalid-argument");
        let wrong = entry_status(
            1,
            Err(Error::new(Code::WrongTablet { hint: "h".into() }, "h")),
        );
        assert_eq!(wrong.code, tonic::Code::FailedPrecondition as i32);
        assert_eq!(wrong.tabula_code, "wrong-tablet");
    }

    #[test]
    fn one_row_always_takes_one_lane() {
        let row = Bytes::from_static(b"row");
        assert_eq!(lane_of(&row, 7), lane_of(&row.clone(), 7));
        assert_eq!(lane_of(&row, 0), 0);
    }
}
