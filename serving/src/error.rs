//! Inference API errors and their mapping to HTTP, in the Open Inference Protocol's error format
//! `{"error": "<message>"}` (not the management API's `{"error": {"code", "message"}}`).
//!
//! The agent answers the protocol's bare form; the server adds a stable `"code"` beside the
//! message ([`ErrorStyle::WithCode`]), which OIP clients ignore and scripts can match on.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use super::binary::BinaryDataError;
use super::oip::ErrorBody;

/// Why an inference API request failed.
#[derive(Debug, thiserror::Error)]
pub enum OipError {
    /// The model, version or route does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or does not fit the model (400).
    #[error("{0}")]
    BadRequest(String),
    /// The binary tensor data after the JSON part does not match what the JSON declares (400),
    /// with a code per kind of mismatch.
    #[error("{0}")]
    BinaryData(#[from] BinaryDataError),
    /// A health check answered false (400, as the protocol asks for a 4xx).
    #[error("{0}")]
    NotReady(String),
    /// The path exists but not with this method (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The body is larger than the configured limit (413).
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The worker pool and its queue are full (503, with `Retry-After`).
    #[error("{0}; retry later")]
    Busy(String),
    /// No credentials, or credentials that are unknown, revoked or expired (401). Only the
    /// server authenticates inference callers.
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials that may not run inference (403).
    #[error("{0}")]
    Forbidden(String),
    /// A dependency (database, blob store) does not answer right now (503). The message is
    /// generic; the cause was logged where the error was made.
    #[error("{0}")]
    Unavailable(String),
    /// Something failed inside the process (500). The message is generic; the cause was logged
    /// where the error was made.
    #[error("{0}")]
    Internal(String),
}

/// How error bodies are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    /// `{"error": "<message>"}`, exactly the protocol's form (the agent).
    Plain,
    /// `{"error": "<message>", "code": "<stable code>"}` (the server).
    WithCode,
}

impl OipError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            OipError::NotFound(_) => StatusCode::NOT_FOUND,
            OipError::BadRequest(_) | OipError::BinaryData(_) | OipError::NotReady(_) => {
                StatusCode::BAD_REQUEST
            }
            OipError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            OipError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            OipError::Busy(_) | OipError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            OipError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            OipError::Forbidden(_) => StatusCode::FORBIDDEN,
            OipError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code written beside the message in [`ErrorStyle::WithCode`]. Where the
    /// management API has the same failure, the code is the same.
    pub fn code(&self) -> &'static str {
        match self {
            OipError::NotFound(_) => "not_found",
            OipError::BadRequest(_) => "bad_request",
            OipError::BinaryData(e) => e.code(),
            OipError::NotReady(_) => "not_ready",
            OipError::MethodNotAllowed(_) => "method_not_allowed",
            OipError::PayloadTooLarge { .. } => "payload_too_large",
            OipError::Busy(_) => "busy",
            OipError::Unauthorized(_) => "unauthorized",
            OipError::Forbidden(_) => "forbidden",
            OipError::Unavailable(_) => "unavailable",
            OipError::Internal(_) => "internal",
        }
    }

    /// The response for this error, its body in `style`.
    pub fn response(&self, style: ErrorStyle) -> HttpResponse {
        let mut response = HttpResponse::build(self.status());
        if let OipError::Busy(_) = self {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        let message = self.to_string();
        response.json(ErrorBody {
            error: &message,
            code: match style {
                ErrorStyle::Plain => None,
                ErrorStyle::WithCode => Some(self.code()),
            },
        })
    }
}

/// Handlers that return `Result<_, OipError>` answer in the protocol's plain form.
impl ResponseError for OipError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        self.response(ErrorStyle::Plain)
    }
}
