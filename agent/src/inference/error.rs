//! The local API's errors and their mapping to HTTP, in the Open Inference Protocol's error
//! format `{"error": "<message>"}` (not the management API's `{"error": {"code", "message"}}`).

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use super::oip::ErrorBody;

/// Why a local API request failed.
#[derive(Debug, thiserror::Error)]
pub enum OipError {
    /// The model, version or route does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or does not fit the model (400).
    #[error("{0}")]
    BadRequest(String),
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
    /// Something failed inside the agent (500). The message is generic; the cause was logged
    /// where the error was made.
    #[error("{0}")]
    Internal(String),
}

impl ResponseError for OipError {
    fn status_code(&self) -> StatusCode {
        match self {
            OipError::NotFound(_) => StatusCode::NOT_FOUND,
            OipError::BadRequest(_) | OipError::NotReady(_) => StatusCode::BAD_REQUEST,
            OipError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            OipError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            OipError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            OipError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if let OipError::Busy(_) = self {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        response.json(ErrorBody {
            error: &self.to_string(),
        })
    }
}
