//! What can go wrong in a command, how it is shown (`error: <message> (<code>)`) and the exit
//! code scripts rely on (documented in `docs/cli.md`).

use std::fmt;
use std::process::ExitCode;

use flotilla_protocol::signing::{RootError, VerifyError};

/// Exit code: the server refused the call (4xx) or a signature did not verify.
pub const EXIT_REFUSED: u8 = 1;
/// Exit code: the command could not run as given (arguments, configuration, local files).
/// clap's own usage errors exit with 2 as well.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the server could not be reached, failed (5xx) or answered nonsense.
pub const EXIT_UNAVAILABLE: u8 = 3;

/// A failed command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments, configuration or local files; `code` is `usage`, `config`, `io`,
    /// `invalid_key` or `signing_failed`.
    #[error("{message}")]
    Local {
        /// Stable code.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// The server answered with an error status.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The server's stable error code (`forbidden`, `conflict`, ...), or `http_<status>`
        /// when the body was not the Flotilla error body (a proxy, say).
        code: String,
        /// The server's message.
        message: String,
    },
    /// No answer: connection refused, DNS, TLS, timeout.
    #[error("{message}")]
    Unreachable {
        /// `unreachable` or `timeout`.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// A success status with a body that is not what the API documents.
    #[error("unexpected answer from the server: {0}")]
    BadResponse(String),
    /// Local signature verification failed.
    #[error("verification failed: {0}")]
    Verify(#[from] VerifyError),
    /// A trust root or rotation does not check out (malformed, or not signed as agents need).
    #[error("{0}")]
    Root(#[from] RootError),
}

impl CliError {
    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::Local {
            code: "usage",
            message: message.into(),
        }
    }

    /// A configuration error (exit 2).
    pub fn config(message: impl Into<String>) -> Self {
        CliError::Local {
            code: "config",
            message: message.into(),
        }
    }

    /// A local file could not be read or written (exit 2).
    pub fn io(what: impl fmt::Display, error: std::io::Error) -> Self {
        CliError::Local {
            code: "io",
            message: format!("{what}: {error}"),
        }
    }

    /// The stable code shown in parentheses.
    pub fn code(&self) -> &str {
        match self {
            CliError::Local { code, .. } | CliError::Unreachable { code, .. } => code,
            CliError::Api { code, .. } => code,
            CliError::BadResponse(_) => "bad_response",
            CliError::Verify(e) => e.code(),
            CliError::Root(e) => e.code(),
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Local { .. } => EXIT_USAGE,
            CliError::Api { status, .. } if *status < 500 => EXIT_REFUSED,
            CliError::Api { .. } | CliError::Unreachable { .. } | CliError::BadResponse(_) => {
                EXIT_UNAVAILABLE
            }
            CliError::Verify(_) | CliError::Root(_) => EXIT_REFUSED,
        }
    }

    /// The server's status, when it answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            CliError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The line printed to stderr: always one line, so scripts can read the code at its end.
    pub fn report(&self) -> String {
        let message = self.to_string();
        let message: Vec<&str> = message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        format!("error: {} ({})", message.join(" "), self.code())
    }
}

impl From<CliError> for ExitCode {
    fn from(error: CliError) -> Self {
        ExitCode::from(error.exit_code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> CliError {
        CliError::Api {
            status,
            code: code.into(),
            message: "m".into(),
        }
    }

    #[test]
    fn exit_codes_follow_the_documented_table() {
        assert_eq!(api(400, "invalid_argument").exit_code(), 1);
        assert_eq!(api(401, "unauthorized").exit_code(), 1);
        assert_eq!(api(403, "forbidden").exit_code(), 1);
        assert_eq!(api(409, "conflict").exit_code(), 1);
        assert_eq!(api(499, "http_499").exit_code(), 1);
        assert_eq!(api(500, "internal").exit_code(), 3);
        assert_eq!(api(503, "unavailable").exit_code(), 3);
        assert_eq!(CliError::Verify(VerifyError::BadSignature).exit_code(), 1);
        assert_eq!(CliError::usage("x").exit_code(), 2);
        assert_eq!(CliError::config("x").exit_code(), 2);
        assert_eq!(
            CliError::io("f", std::io::Error::other("gone")).exit_code(),
            2
        );
        let unreachable = CliError::Unreachable {
            code: "unreachable",
            message: "m".into(),
        };
        assert_eq!(unreachable.exit_code(), 3);
        assert_eq!(CliError::BadResponse("x".into()).exit_code(), 3);
    }

    #[test]
    fn report_is_message_then_code() {
        let e = CliError::Api {
            status: 403,
            code: "forbidden".into(),
            message: "role viewer may not upload artifacts".into(),
        };
        assert_eq!(
            e.report(),
            "error: role viewer may not upload artifacts (forbidden)"
        );
        let e = CliError::Verify(VerifyError::ThresholdNotMet { have: 1, need: 2 });
        assert_eq!(
            e.report(),
            "error: verification failed: 1 of 2 required trusted signatures \
             (signature_threshold_not_met)"
        );
        assert_eq!(
            CliError::io("model.onnx", std::io::Error::other("gone")).report(),
            "error: model.onnx: gone (io)"
        );
        assert_eq!(
            CliError::config("f.toml:\n  | x\n\nbad key\n").report(),
            "error: f.toml: | x bad key (config)"
        );
    }
}
