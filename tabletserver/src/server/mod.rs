//! The tablet server around the engine: which tablets it serves (`registry`), whether it may
//! serve at all (`gate`), and the gRPC services — `TabletService` for clients (`data`) and
//! `TabletAdmin` for the master (`admin`) — plus its lock-service membership and metrics.
//!
//! Reading order: `registry`, `gate`, then the services; `metrics` counts requests (a tower
//! layer on the gRPC server) and serves `/metrics` and `/healthz`.

pub mod admin;
pub mod data;
pub mod drop_rows;
pub mod gate;
pub mod membership;
pub mod merge;
pub mod metrics;
pub mod node;
pub mod registry;
pub mod schema;
pub mod splitter;

pub use admin::{SplitPlan, TabletAdminService};
pub use data::{DataOptions, TabletDataService};
pub use gate::{Gate, SafetyCheck};
pub use membership::{Membership, MembershipError};
pub use node::{ServerError, TabletServer, TabletServerConfig, serve};
pub use registry::{Registry, Route, ServedTablet};
pub use splitter::{SplitEvent, SplitterOptions, TabletDescriptor};
