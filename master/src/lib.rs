//! Placeholder crate: see ARCHITECTURE.md; filled by its own issue.
