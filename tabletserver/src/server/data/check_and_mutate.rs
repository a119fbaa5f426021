//! `CheckAndMutateRow`: under the row's lock, read the row through the predicate filter (on the
//! blocking pool); if any cell comes out apply the true mutations, else the false ones. With no predicate the check
//! is whether the row has any cell. A predicate that fails is an answer
//! (`predicate_matched = false`), not an error. Both mutation lists are checked before the
//! read, so bad input never depends on the row's contents; at least one of them must be
//! non-empty (as in Cloud Bigtable).

use tabula_common::Error;
use tabula_proto::tabula::tablet::v1 as api;

use crate::engine::{CellFilter, RowMutation};
use crate::filter::Filter;

use super::field::Field;
use super::{Shared, blocking, convert, route, with_row_locked};

/// `CheckAndMutateRow`; returns whether the predicate matched.
pub(super) async fn check_and_mutate_row(
    shared: &Shared,
    req: api::CheckAndMutateRowRequest,
) -> Result<bool, Error> {
    shared.gate.check_serving()?;
    let route = route(req.tablet)?;
    let row = convert::row_key(&Field::Name("row_key"), req.row_key, route.table)?;
    let predicate = req
        .predicate_filter
        .map(|f| {
            Filter::compile(&f)
                .map_err(|e| Error::invalid_argument(format!("predicate_filter: {e}")))
        })
        .transpose()?;
    if req.true_mutations.is_empty() && req.false_mutations.is_empty() {
        return Err(Error::invalid_argument(
            "true_mutations, false_mutations: at least one mutation is required in one of them",
        ));
    }
    let true_mutations =
        convert::mutations(&Field::Name("true_mutations"), req.true_mutations, true)?;
    let false_mutations =
        convert::mutations(&Field::Name("false_mutations"), req.false_mutations, true)?;
    let served = shared.registry.route_row(&route, &row)?;
    let schema = served.tablet.schema();
    convert::check_families(&Field::Name("true_mutations"), &true_mutations, &schema)?;
    convert::check_families(&Field::Name("false_mutations"), &false_mutations, &schema)?;
    served.count_read();
    served.count_write();
    let key = row.clone();
    let matched = with_row_locked(served, row, move |served| async move {
        let reader = served.clone();
        let row = key.clone();
        let matched = blocking(move || {
            let tablet = &reader.tablet;
            Ok(match &predicate {
                Some(filter) => match tablet.read_row(&row, &filter.pushdown())? {
                    Some(r) => !filter.apply(&r.key, r.cells, &mut rand::rng()).is_empty(),
                    None => false,
                },
                None => {
                    let any = CellFilter {
                        max_versions: Some(1),
                        ..CellFilter::default()
                    };
                    tablet.read_row(&row, &any)?.is_some()
                }
            })
        })
        .await?;
        let mutations = if matched {
            true_mutations
        } else {
            false_mutations
        };
        if !mutations.is_empty() {
            let m = RowMutation {
                row: key,
                mutations,
            };
            let m = super::mutate::resolve_aggregates(&served, m).await?;
            served.tablet.apply_in_task(m).await?;
        }
        Ok(matched)
    })
    .await?;
    shared.confirm_write()?;
    Ok(matched)
}
