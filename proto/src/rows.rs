//! The rows of a `ReadRowsResponse`: one buffer holding an `EncodedRows`, which a tablet
//! server writes straight from its cells and a client splits into rows that point into it.

use bytes::Bytes;
use prost::Message as _;

use crate::tabula::tablet::v1::{EncodedRows, ReadRowsResponse};

impl ReadRowsResponse {
    /// Each row of the message, still encoded (a `google.bigtable.v2.Row`), pointing into
    /// the message's buffer; an error if `rows` is not an `EncodedRows`.
    pub fn encoded_rows(&self) -> Result<Vec<Bytes>, prost::DecodeError> {
        Ok(EncodedRows::decode(self.rows.clone())?.rows)
    }
}
