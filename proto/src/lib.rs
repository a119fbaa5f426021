//! Generated gRPC code; see build.rs.
