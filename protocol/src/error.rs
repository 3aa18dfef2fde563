//! The one JSON error body every Flotilla API answers with on a 4xx or 5xx:
//! `{"error": {"code": "invalid_json", "message": "..."}}`.
//!
//! `code` is stable: scripts and clients match on it. `message` is for people and may change.

use serde::{Deserialize, Serialize};

/// The body of every error response from the Flotilla server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ApiErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong: a stable machine-readable code and a human message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// Stable, snake_case identifier of the error (see [`ErrorCode`]).
    pub code: String,
    /// Human-readable explanation. Never contains internal details for 5xx errors.
    pub message: String,
}

impl ApiErrorBody {
    /// Builds an error body from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.as_str().to_owned(),
                message: message.into(),
            },
        }
    }
}

macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident => $code:literal),+ $(,)?) => {
        /// Every stable error code the API can answer with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $variant,)+
        }

        impl ErrorCode {
            /// All codes, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The code as it appears on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }

            /// Parses a wire code; `None` for codes this version does not know.
            pub fn parse(code: &str) -> Option<Self> {
                match code {
                    $($code => Some(ErrorCode::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    /// The request body is not valid JSON or does not match the expected shape.
    InvalidJson => "invalid_json",
    /// A query string parameter is malformed.
    InvalidQuery => "invalid_query",
    /// A path parameter is malformed.
    InvalidPath => "invalid_path",
    /// A field has a value that is not allowed.
    InvalidArgument => "invalid_argument",
    /// The request body is larger than the server accepts.
    PayloadTooLarge => "payload_too_large",
    /// The Content-Type is not one this endpoint accepts.
    UnsupportedMediaType => "unsupported_media_type",
    /// No credentials, or credentials that are unknown, revoked or expired.
    Unauthorized => "unauthorized",
    /// Valid credentials whose role does not allow this call.
    Forbidden => "forbidden",
    /// The addressed resource does not exist.
    NotFound => "not_found",
    /// No route matches the request path.
    RouteNotFound => "route_not_found",
    /// The route exists but not for this HTTP method.
    MethodNotAllowed => "method_not_allowed",
    /// The request conflicts with the current state (duplicate name, different content...).
    Conflict => "conflict",
    /// The requested Range cannot be satisfied.
    RangeNotSatisfiable => "range_not_satisfiable",
    /// A dependency (database, blob store) is not available right now.
    Unavailable => "unavailable",
    /// Something failed on the server; details are in the server log only.
    Internal => "internal",
    /// Any other client error.
    BadRequest => "bad_request",
    /// A signature bundle is malformed, does not verify, or is in a form Flotilla does not accept.
    SignatureInvalid => "signature_invalid",
    /// No signature was made by a registered, active publisher key.
    UntrustedSigner => "untrusted_signer",
    /// Fewer distinct publisher keys signed than the threshold requires.
    SignatureThresholdNotMet => "signature_threshold_not_met",
    /// The signed digest or size is not the artifact's, or the bytes are not the named digest.
    ArtifactMismatch => "artifact_mismatch",
    /// The referenced artifact has not been uploaded.
    ArtifactNotFound => "artifact_not_found",
    /// The file is not a loadable ONNX graph.
    InvalidModel => "invalid_model",
    /// This version exists with different content.
    VersionExists => "version_exists",
    /// Versions of a model must only go up.
    VersionNotIncreasing => "version_not_increasing",
    /// The model name or version the publishers signed is not the one being published.
    SignedFactsMismatch => "signed_facts_mismatch",
    /// No active publisher key is registered, so nothing can be verified.
    NoPublisherKeys => "no_publisher_keys",
    /// Another open rollout of the same model targets devices this one would target.
    RolloutOverlap => "rollout_overlap",
    /// The rollout's state does not allow this action (resuming a running rollout...).
    InvalidRolloutState => "invalid_rollout_state",
    /// The version is yanked and cannot be deployed or rolled out.
    VersionYanked => "version_yanked",
    /// Only an admin may give a model a signing threshold below the global one.
    ThresholdBelowGlobal => "threshold_below_global",
    /// An agent report describes a health window that cannot have happened.
    InvalidReport => "invalid_report",
    /// The device asked for a label its enrollment token does not allow it to set.
    LabelNotAllowed => "label_not_allowed",
    /// Inference: `Inference-Header-Content-Length` is not a length, or points beyond the body.
    InvalidBinaryHeader => "invalid_binary_header",
    /// Inference: a `binary_data_size` is not what the tensor's shape and datatype need (or a
    /// BOOL byte is neither 0 nor 1).
    BinarySizeMismatch => "binary_size_mismatch",
    /// Inference: the binary tensors' sizes do not add up to the bytes after the JSON part.
    BinaryDataLength => "binary_data_length",
    /// A webhook URL points at a destination the server will not call (loopback, private...).
    WebhookDestinationRefused => "webhook_destination_refused",
    /// A signed trust root is not an envelope of the trust-root type, or not JSON.
    TrustRootMalformed => "trust_root_malformed",
    /// A trust root is unusable (bad key, unsatisfiable threshold, unknown format version).
    TrustRootInvalid => "trust_root_invalid",
    /// A rotated trust root's serial is not the one after the newest root.
    TrustRootNotNext => "trust_root_not_next",
    /// Too few of the current root's keys signed the new trust root.
    TrustRootNotSignedByCurrent => "trust_root_not_signed_by_current",
    /// Too few of the new trust root's own keys signed it.
    TrustRootNotSignedByItself => "trust_root_not_signed_by_itself",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(*code));
            assert!(
                seen.insert(code.as_str()),
                "duplicate code {}",
                code.as_str()
            );
        }
    }

    #[test]
    fn body_serialises_in_the_documented_shape() {
        let body = ApiErrorBody::new(ErrorCode::Forbidden, "nope");
        let json = serde_json::to_value(&body).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "forbidden", "message": "nope"}})
        );
    }
}
