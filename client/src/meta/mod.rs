//! METADATA access (DESIGN.md section 5): the typed tablet record (`record`), the root
//! tablet's record in the lock service (`root`), and reading and conditionally writing
//! METADATA rows through the tablet servers (`table`).
//!
//! Reading order: `record`, `root`, `table`.

mod record;
mod root;
mod table;

pub use record::{TabletRecord, TabletState};
pub use root::{ROOT_PATH, read_root, write_root};
pub(crate) use table::from_status;
pub use table::{MetaOptions, MetaTable};
