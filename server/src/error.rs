//! The one mapping from failures to HTTP: a status, a stable [`ErrorCode`] and a message.
//! 5xx bodies are opaque; their cause chain goes to the log only.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use flotilla_protocol::{ApiErrorBody, ErrorCode};
use std::fmt;

use crate::store::StoreError;

/// An error answered to an API client.
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    /// Kept for the log; never sent to the client.
    cause: Option<anyhow::Error>,
    /// `Content-Range: bytes */<size>` on 416 answers.
    pub(crate) content_range: Option<actix_web::http::header::HeaderValue>,
}

impl ApiError {
    /// A client error with an explicit status and code.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            cause: None,
            content_range: None,
        }
    }

    /// 400 with the given code.
    pub fn bad_request(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 400 `invalid_argument`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::bad_request(ErrorCode::InvalidArgument, message)
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }

    /// 500 `internal`; the cause is logged, never shown.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: ErrorCode::Internal,
            message: "internal server error; the server log has the details".into(),
            cause: Some(cause.into()),
            content_range: None,
        }
    }

    /// 503 `unavailable`; the cause is logged, never shown.
    pub fn unavailable(what: &str, cause: impl Into<anyhow::Error>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: ErrorCode::Unavailable,
            message: format!("{what} is unavailable; try again later"),
            cause: Some(cause.into()),
            content_range: None,
        }
    }

    /// The stable code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code.as_str(),
            self.message
        )?;
        if let Some(cause) = &self.cause {
            write!(f, " ({cause:#})")?;
        }
        Ok(())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        if let Some(cause) = &self.cause {
            tracing::error!(
                status = self.status.as_u16(),
                code = self.code.as_str(),
                error = format!("{cause:#}"),
                "request failed"
            );
        }
        let mut res = HttpResponse::build(self.status);
        if let Some(range) = &self.content_range {
            res.insert_header((actix_web::http::header::CONTENT_RANGE, range.clone()));
        }
        res.json(ApiErrorBody::new(self.code, self.message.clone()))
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            StoreError::Conflict(what) => ApiError::conflict(what),
            StoreError::Unavailable(cause) => ApiError::unavailable("the database", cause),
            StoreError::Other(cause) => ApiError::internal(cause),
        }
    }
}

impl From<crate::domain::DomainError> for ApiError {
    fn from(e: crate::domain::DomainError) -> Self {
        use crate::domain::Kind;
        let status = match e.kind {
            Kind::Invalid => StatusCode::BAD_REQUEST,
            Kind::Forbidden => StatusCode::FORBIDDEN,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match e.kind {
            Kind::Internal => "internal server error; the server log has the details".to_owned(),
            _ => e.message,
        };
        Self {
            status,
            code: e.code,
            message,
            cause: e.cause,
            content_range: None,
        }
    }
}

/// Maps a bare status (from actix's own errors: unknown route, wrong method, payload limits) to
/// the error body, so no client ever sees an HTML page or an empty error.
pub fn body_for_status(status: StatusCode) -> ApiErrorBody {
    let (code, message) = match status {
        StatusCode::NOT_FOUND => (ErrorCode::RouteNotFound, "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => (
            ErrorCode::MethodNotAllowed,
            "this route does not accept that HTTP method",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (ErrorCode::PayloadTooLarge, "request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            (ErrorCode::UnsupportedMediaType, "unsupported Content-Type")
        }
        StatusCode::UNAUTHORIZED => (ErrorCode::Unauthorized, "authentication required"),
        StatusCode::FORBIDDEN => (ErrorCode::Forbidden, "not allowed"),
        StatusCode::RANGE_NOT_SATISFIABLE => {
            (ErrorCode::RangeNotSatisfiable, "range not satisfiable")
        }
        StatusCode::SERVICE_UNAVAILABLE => (ErrorCode::Unavailable, "service unavailable"),
        s if s.is_server_error() => (
            ErrorCode::Internal,
            "internal server error; the server log has the details",
        ),
        _ => (ErrorCode::BadRequest, "bad request"),
    };
    ApiErrorBody::new(code, message)
}
