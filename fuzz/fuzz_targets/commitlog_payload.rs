//! A commit-log record payload: `RowMutation::decode`. A payload that decodes must encode and
//! decode back to the same mutation.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tabula_tabletserver::engine::RowMutation;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = RowMutation::decode(Bytes::copy_from_slice(data)) {
        assert_eq!(RowMutation::decode(m.encode()), Ok(m.clone()));
        if m.validate().is_ok() {
            assert_eq!(m.to_entries(1).len(), m.mutations.len());
        }
    }
});
