//! The public `LockService` API's edge: conversions between `tabula.lock.v1` messages and the
//! state machine's types, shared by the server (`service`) and the client (`client`). Proto
//! types stop here: nothing below `service`/`client` sees them.

mod convert;

pub use convert::{
    client_ref, event_from_proto, event_to_proto, fail_reason_to_error, holder_from_proto,
    holder_to_proto, mode_from_proto, mode_to_proto, sequencer_from_proto, sequencer_to_proto,
};
