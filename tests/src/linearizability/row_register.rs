//! A register per row of a Tabula table: the newest cell of one column (`family:qualifier`),
//! read, written and compared-and-set through the client library, with every failure sorted
//! into "certainly not applied" and "outcome unknown" the way the history needs it.
//!
//! - Read: `read_row` through `family`, `qualifier`, newest version only. A failed read is
//!   [`Outcome::Failed`] (it changed nothing; it is dropped from the history).
//! - Write: `mutate_row` with one `SetCell` at the server's time (the newest cell is the last
//!   write as long as server timestamps grow per tablet). `mutate_row` retries internally after
//!   ambiguous failures, so a failed write may have been applied by an earlier attempt:
//!   always [`Outcome::Unknown`].
//! - Compare-and-set: `check_and_mutate_row`. Expecting a value, the predicate is the column's
//!   newest cell with exactly that value (chain: family, qualifier, newest, value regex of the
//!   escaped literal) and the `SetCell` is a true mutation; expecting absence, the predicate is
//!   any cell of the column and the `SetCell` is a false mutation. The library retries only
//!   attempts that cannot have been applied; an attempt that may have been applied ends with an
//!   error whose message says the outcome is unknown (retryable codes) or with its own
//!   non-retryable error. So a failure is [`Outcome::Failed`] only with a retryable code and no
//!   "outcome unknown" (every attempt was refused before applying; the retry budget ran out);
//!   anything else is [`Outcome::Unknown`]. Reading the message is a stopgap: the library has
//!   no typed "maybe applied" yet.

use bytes::Bytes;
use tabula_client::{Filter, Mutation, Table, escape_regex};
use tabula_common::Error;
use tabula_proto::google::bigtable::v2 as bt;

/// How one call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T> {
    /// It answered.
    Ok(T),
    /// It failed and may have been applied.
    Unknown(Error),
    /// It failed and certainly was not applied (or it was a read).
    Failed(Error),
}

/// Whether a failed `check_and_mutate_row` may have been applied (see the module doc).
pub fn conditional_write_may_be_applied(e: &Error) -> bool {
    !e.code.is_retryable() || e.message.contains("outcome unknown")
}

/// Registers in the rows of one table, all in the same column.
#[derive(Debug, Clone)]
pub struct RowRegister {
    table: Table,
    family: String,
    qualifier: Bytes,
}

impl RowRegister {
    /// Registers in column `family:qualifier` of `table`.
    pub fn new(table: Table, family: &str, qualifier: &[u8]) -> RowRegister {
        RowRegister {
            table,
            family: family.to_owned(),
            qualifier: Bytes::copy_from_slice(qualifier),
        }
    }

    fn column(&self) -> Filter {
        Filter::family(&self.family).and(Filter::qualifier(&self.qualifier))
    }

    /// The register in `row`: its newest value, `None` if the cell does not exist.
    pub async fn read(&self, row: &Bytes) -> Outcome<Option<Bytes>> {
        let filter = self.column().and(Filter::latest(1));
        match self.table.read_row(row.clone(), Some(filter)).await {
            Ok(r) => Outcome::Ok(r.and_then(|r| r.value(&self.family, &self.qualifier).cloned())),
            Err(e) => Outcome::Failed(e),
        }
    }

    fn set(&self, value: &Bytes) -> Mutation {
        Mutation::set_cell(self.family.clone(), self.qualifier.clone(), value.clone())
    }

    /// Sets the register in `row` to `value`.
    pub async fn write(&self, row: &Bytes, value: &Bytes) -> Outcome<()> {
        match self
            .table
            .mutate_row(row.clone(), vec![self.set(value)])
            .await
        {
            Ok(()) => Outcome::Ok(()),
            Err(e) => Outcome::Unknown(e),
        }
    }

    /// Sets the register in `row` to `new` if it holds `expect` (`None`: if absent); answers
    /// whether it did.
    pub async fn compare_and_set(
        &self,
        row: &Bytes,
        expect: Option<&Bytes>,
        new: &Bytes,
    ) -> Outcome<bool> {
        let answer = match expect {
            Some(v) => {
                let equals = Filter::from_proto(bt::RowFilter {
                    filter: Some(bt::row_filter::Filter::ValueRegexFilter(
                        escape_regex(v).into_bytes(),
                    )),
                });
                let predicate = self.column().and(Filter::latest(1)).and(equals);
                self.table
                    .check_and_mutate_row(row.clone(), Some(predicate), vec![self.set(new)], vec![])
                    .await
            }
            None => self
                .table
                .check_and_mutate_row(
                    row.clone(),
                    Some(self.column()),
                    vec![],
                    vec![self.set(new)],
                )
                .await
                .map(|exists| !exists),
        };
        match answer {
            Ok(done) => Outcome::Ok(done),
            Err(e) if conditional_write_may_be_applied(&e) => Outcome::Unknown(e),
            Err(e) => Outcome::Failed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use tabula_common::Code;

    use super::*;

    #[test]
    fn only_a_refused_retryable_conditional_write_is_a_definite_failure() {
        let gave_up = Error::new(
            Code::Unavailable,
            "check and mutate a row: gave up after 9 attempts: connection refused",
        );
        assert!(!conditional_write_may_be_applied(&gave_up));
        let unknown = Error::new(
            Code::DeadlineExceeded,
            "outcome unknown (the request may or may not have been applied): no answer",
        );
        assert!(conditional_write_may_be_applied(&unknown));
        // A non-retryable error may come after the apply (the library returns it as is).
        assert!(conditional_write_may_be_applied(&Error::internal("disk")));
    }
}
