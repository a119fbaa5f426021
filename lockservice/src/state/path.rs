//! Path validation.
