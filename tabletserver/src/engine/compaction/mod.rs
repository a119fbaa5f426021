//! Compactions: minor (frozen memtable -> SSTable), merging (a few SSTables with a memtable
//! into one) and major (everything into one SSTable, dropping what is deleted or past its GC
//! policy). `picker` decides, purely; `run` does the I/O.

mod picker;

pub use picker::{Choice, PickerInput, PickerOptions, choose};
