//! Compactions: minor (frozen memtable -> SSTable), merging (a few SSTables with a memtable
//! into one) and major (everything into one SSTable, dropping what is deleted or past its GC
//! policy). `picker` decides from the tablet's files and `garbage` from what reads saw, purely;
//! `tablet::compact` does the I/O.

mod garbage;
mod picker;

pub use garbage::{GarbageSampler, ReadTrigger, Window, WrittenSince, worth_major};
pub use picker::{Choice, PickerInput, PickerOptions, choose};
