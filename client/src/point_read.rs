//! `Table::read_row`: one row, read by one `ReadRows` call to the tablet that holds it,
//! repeated on any retryable failure (a read is harmless to repeat) after the location cache
//! is corrected as for a write.
//!
//! Not the scan machinery (`scan`): a point read has no cursor to move, nothing to resume
//! and one tablet to ask, and under the paper's random reads the scan path's per-call
//! futures, boxed steps and moves of its state were a tenth of the client's time. The call is
//! read to its end (its trailers), as a scan drains a stream whose limit was reached, so it
//! ends cleanly instead of being reset (see `Scan::drain`).

use bytes::Bytes;
use tabula_common::Error;
use tabula_proto::google::bigtable::v2 as bt;
use tabula_proto::tabula::tablet::v1 as tpb;

use crate::builders::Filter;
use crate::retry::Backoff;
use crate::row::Row;
use crate::scan::decode_rows;
use crate::table::Table;

impl Table {
    /// The row `row` through `filter` (`None`: every cell); `None` if it has no cell.
    pub async fn read_row(
        &self,
        row: impl Into<Bytes>,
        filter: Option<Filter>,
    ) -> Result<Option<Row>, Error> {
        let row: Bytes = row.into();
        let filter = filter.map(Filter::into_proto);
        let mut backoff = Backoff::new(self.client().options());
        loop {
            match self.read_row_once(&row, filter.as_ref()).await {
                Ok(found) => return Ok(found),
                Err(e) => backoff.wait("read a row", e).await?,
            }
        }
    }

    /// One attempt: locate the row's tablet, ask it, read the answer to its end.
    async fn read_row_once(
        &self,
        row: &Bytes,
        filter: Option<&bt::RowFilter>,
    ) -> Result<Option<Row>, Error> {
        let client = self.client();
        let record = client.locate(self.id(), row).await?;
        let request = tpb::ReadRowsRequest {
            tablet: Some(record.tablet_ref()),
            rows: Some(bt::RowSet {
                row_keys: vec![row.to_vec()],
                row_ranges: Vec::new(),
            }),
            filter: filter.cloned(),
            rows_limit: 1,
            reversed: false,
        };
        let mut data = client.channels().data(&record.server_addr)?;
        let answer = self
            .timed(async move {
                let mut stream = data.read_rows(request).await?.into_inner();
                let mut messages = Vec::with_capacity(1);
                while let Some(message) = stream.message().await? {
                    messages.push(message);
                }
                Ok(messages)
            })
            .await;
        self.after_failure(&record, answer.as_ref().err());
        let mut found = None;
        for message in answer? {
            for got in decode_rows(&message)? {
                if got.key != *row || found.is_some() {
                    return Err(Error::internal(format!(
                        "read a row: asked tablet {} for row {:?}, it answered with another row or more than one: {:?}",
                        record.tablet,
                        row.escape_ascii().to_string(),
                        got.key.escape_ascii().to_string()
                    )));
                }
                found = Some(got);
            }
        }
        Ok(found)
    }
}
