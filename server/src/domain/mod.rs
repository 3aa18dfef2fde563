//! Domain logic: decisions about models, keys and versions. Nothing here knows about HTTP; the
//! routes map [`DomainError`] to responses.

pub mod credentials;
pub mod fleet;
pub mod health_history;
pub mod names;
pub mod placement;
pub mod registry;
pub mod reports;
pub mod rollouts;

use flotilla_protocol::ErrorCode;

use crate::blob::BlobError;
use crate::store::StoreError;

/// What kind of failure a domain operation hit, which decides its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request is wrong (400).
    Invalid,
    /// The caller may not do this (403).
    Forbidden,
    /// The thing addressed does not exist (404).
    NotFound,
    /// The request conflicts with what is stored (409).
    Conflict,
    /// A dependency is down (503).
    Unavailable,
    /// A bug or an unexpected failure (500).
    Internal,
}

/// A domain failure with its stable code and a message for people.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DomainError {
    /// Which status it maps to.
    pub kind: Kind,
    /// Stable code.
    pub code: ErrorCode,
    /// Message (never internal details for `Internal`/`Unavailable`).
    pub message: String,
    /// Cause, for the log.
    #[source]
    pub cause: Option<anyhow::Error>,
}

impl DomainError {
    /// A 400-class failure.
    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Invalid,
            code,
            message: message.into(),
            cause: None,
        }
    }
    /// A 403-class failure: the caller is known but may not do this.
    pub fn forbidden(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Forbidden,
            code,
            message: message.into(),
            cause: None,
        }
    }
    /// A 404-class failure.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            kind: Kind::NotFound,
            code: ErrorCode::NotFound,
            message: message.into(),
            cause: None,
        }
    }
    /// A 409-class failure.
    pub fn conflict(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            kind: Kind::Conflict,
            code,
            message: message.into(),
            cause: None,
        }
    }
    /// A 500-class failure.
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self {
            kind: Kind::Internal,
            code: ErrorCode::Internal,
            message: "internal error".into(),
            cause: Some(cause.into()),
        }
    }
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => DomainError::not_found(format!("{what} not found")),
            StoreError::Conflict(what) => DomainError::conflict(ErrorCode::Conflict, what),
            StoreError::Unavailable(cause) => DomainError {
                kind: Kind::Unavailable,
                code: ErrorCode::Unavailable,
                message: "the database is unavailable".into(),
                cause: Some(cause),
            },
            StoreError::Other(cause) => DomainError::internal(cause),
        }
    }
}

impl From<BlobError> for DomainError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::NotFound(d) => DomainError::invalid(
                ErrorCode::ArtifactNotFound,
                format!("artifact {d} has not been uploaded"),
            ),
            BlobError::Store(cause) => DomainError {
                kind: Kind::Unavailable,
                code: ErrorCode::Unavailable,
                message: "the blob store is unavailable".into(),
                cause: Some(cause.into()),
            },
            other => DomainError::internal(other),
        }
    }
}
