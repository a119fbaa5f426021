//! The `(client_id, seq)` table for retried writes.
