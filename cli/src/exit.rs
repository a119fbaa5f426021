//! Exit codes and error reporting: 0 success, 1 an error reported by the system, 2 bad usage.

use std::fmt;
use std::process::ExitCode;

use crate::output::OutputFormat;

/// Exit code for an error reported by the system (a failed call, an I/O error).
const SYSTEM_ERROR: u8 = 1;
/// Exit code for bad usage, the same code clap uses for its own usage errors.
const USAGE_ERROR: u8 = 2;

/// A usage problem found after parsing (an out-of-range value, a conflicting combination);
/// `tabula` exits with code 2 for it, like for clap's own usage errors.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The exit code for a command's error.
pub(crate) fn code(err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<UsageError>().is_some() {
        USAGE_ERROR
    } else {
        SYSTEM_ERROR
    }
}

/// Prints `err` to stderr in the requested format and returns the matching exit code.
pub(crate) fn report(err: &anyhow::Error, output: OutputFormat) -> ExitCode {
    let code = code(err);
    match output {
        OutputFormat::Table => eprintln!("error: {err:#}"),
        OutputFormat::Json => {
            let kind = if code == USAGE_ERROR {
                "usage"
            } else {
                "system"
            };
            let mut doc = serde_json::json!({ "error": format!("{err:#}"), "kind": kind });
            if let Some(code) = system_code(err) {
                doc["code"] = serde_json::Value::from(code);
            }
            eprintln!("{doc}");
        }
    }
    ExitCode::from(code)
}

/// The tag of the public error code (`not-found`, `aborted`, ...) of a system error that
/// carries one, as its message prints it.
fn system_code(err: &anyhow::Error) -> Option<String> {
    let e = err
        .chain()
        .find_map(|e| e.downcast_ref::<tabula_common::Error>())?;
    let printed = e.to_string();
    printed
        .strip_suffix(&format!(": {}", e.message))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn usage_errors_exit_2_even_with_context() {
        let err = Err::<(), _>(UsageError("--records must be positive".to_owned()))
            .context("bench engine")
            .unwrap_err();
        assert_eq!(code(&err), USAGE_ERROR);
    }

    #[test]
    fn system_errors_with_a_public_code_name_it() {
        let err = anyhow::Error::from(tabula_common::Error::new(
            tabula_common::Code::NotFound,
            "no file /a",
        ));
        assert_eq!(code(&err), SYSTEM_ERROR);
        assert_eq!(system_code(&err).as_deref(), Some("not-found"));
        assert_eq!(system_code(&anyhow::anyhow!("disk full")), None);
    }

    #[test]
    fn other_errors_exit_1() {
        assert_eq!(code(&anyhow::anyhow!("connection refused")), SYSTEM_ERROR);
    }
}
