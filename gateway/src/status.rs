//! Tabula's public errors as the gRPC statuses Cloud Bigtable clients expect. Pure.
//!
//! Clients decide retries from the code alone: Cloud Bigtable's retryable codes are
//! `UNAVAILABLE`, `DEADLINE_EXCEEDED` and `ABORTED`, so every Tabula code that means "try
//! again" (a moved tablet, a lock-service leader change, a server in jeopardy) becomes
//! `UNAVAILABLE`, and nothing else does. `WrongTablet` never reaches a gateway caller in
//! practice (the client library relocates and retries), but if its retries run out it is
//! still a "try again". Tabula's own metadata (`tabula-code`) is not forwarded.

use tabula_common::{Code, Error};
use tonic::Status;

/// `e` as a Cloud Bigtable status.
pub(crate) fn to_status(e: Error) -> Status {
    Status::new(grpc_code(&e.code), e.message)
}

/// The gRPC code of `code` for a Cloud Bigtable client.
pub(crate) fn grpc_code(code: &Code) -> tonic::Code {
    match code {
        Code::NotFound => tonic::Code::NotFound,
        Code::AlreadyExists => tonic::Code::AlreadyExists,
        Code::InvalidArgument => tonic::Code::InvalidArgument,
        Code::FailedPrecondition => tonic::Code::FailedPrecondition,
        Code::Aborted => tonic::Code::Aborted,
        Code::WrongTablet { .. }
        | Code::NotLeader { .. }
        | Code::SessionExpired
        | Code::Unavailable => tonic::Code::Unavailable,
        Code::DeadlineExceeded => tonic::Code::DeadlineExceeded,
        Code::ResourceExhausted => tonic::Code::ResourceExhausted,
        Code::Compacted { .. } | Code::Internal => tonic::Code::Internal,
    }
}

/// `UNIMPLEMENTED` naming what the gateway does not offer.
pub(crate) fn unimplemented(what: &str) -> Status {
    Status::unimplemented(format!(
        "{what} is not supported by Tabula's Cloud Bigtable gateway"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_try_again_codes_become_retryable_statuses() {
        let retryable = [
            tonic::Code::Unavailable,
            tonic::Code::DeadlineExceeded,
            tonic::Code::Aborted,
        ];
        let cases = [
            (Code::NotFound, tonic::Code::NotFound),
            (Code::AlreadyExists, tonic::Code::AlreadyExists),
            (Code::InvalidArgument, tonic::Code::InvalidArgument),
            (Code::Aborted, tonic::Code::Aborted),
            (Code::FailedPrecondition, tonic::Code::FailedPrecondition),
            (Code::Internal, tonic::Code::Internal),
            (Code::Compacted { oldest: 1 }, tonic::Code::Internal),
            (Code::Unavailable, tonic::Code::Unavailable),
            (
                Code::WrongTablet { hint: "x".into() },
                tonic::Code::Unavailable,
            ),
            (Code::NotLeader { hint: None }, tonic::Code::Unavailable),
            (Code::SessionExpired, tonic::Code::Unavailable),
            (Code::DeadlineExceeded, tonic::Code::DeadlineExceeded),
        ];
        for (code, want) in &cases {
            if !code.is_retryable() && *code != Code::SessionExpired && *code != Code::Aborted {
                assert!(!retryable.contains(want), "{code:?}");
            }
        }
        for (code, want) in cases {
            assert_eq!(grpc_code(&code), want, "{code:?}");
            if code.is_retryable() {
                assert!(retryable.contains(&want), "{code:?}");
            }
        }
        let s = to_status(Error::new(Code::NotFound, "no table named t"));
        assert_eq!(
            (s.code(), s.message()),
            (tonic::Code::NotFound, "no table named t")
        );
    }
}
