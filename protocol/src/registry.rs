//! The model registry's wire types: publisher keys, the trust root, models, versions and
//! artifacts.
//!
//! Publishing a version is two calls, so large models stream once and retries are cheap:
//! 1. `PUT /api/v1/artifacts/sha256/{hex}` with the raw model bytes. The server hashes while it
//!    stores and refuses bytes that do not match `{hex}`. A `HEAD` on the same URL tells whether
//!    the artifact is already there, so an interrupted or repeated push skips the upload.
//! 2. `POST /api/v1/models/{name}/versions` with [`CreateVersionRequest`]: the version, the
//!    artifact's digest and size, and the signature bundle(s). The server verifies everything
//!    before recording anything.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Body of `POST /api/v1/publisher-keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RegisterKeyRequest {
    /// A name for the key's holder, e.g. `ml-team-ci` (1–64 characters).
    pub name: String,
    /// The public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`): ed25519, ECDSA P-256 or P-384.
    pub public_key_pem: String,
}

/// A registered publisher key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublisherKeyInfo {
    /// Stable key id: lowercase hex sha256 of the key's SPKI DER.
    pub key_id: String,
    /// Its name.
    pub name: String,
    /// `ed25519`, `ecdsa-p256` or `ecdsa-p384`.
    pub algorithm: String,
    /// The public key (SPKI PEM).
    pub public_key_pem: String,
    /// When it was registered (RFC 3339).
    pub created_at: String,
    /// When it was revoked, if it was; revoked keys no longer count toward any threshold.
    pub revoked_at: Option<String>,
}

/// Body of `GET /api/v1/publisher-keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublisherKeyList {
    /// All keys, revoked ones included.
    pub keys: Vec<PublisherKeyInfo>,
}

/// Body of `PUT /api/v1/trust/threshold`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetThresholdRequest {
    /// How many distinct active publisher keys must sign a version (at least 1).
    pub threshold: u32,
}

/// One key of a trust root.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TrustRootKey {
    /// Key id (hex sha256 of SPKI DER).
    pub key_id: String,
    /// Name.
    pub name: String,
    /// Public key (SPKI PEM).
    pub public_key_pem: String,
}

/// The current trust root, exported for provisioning agents (`GET /api/v1/trust-root`):
/// the active publisher keys and the thresholds. Agents get it at install time, never from an
/// unauthenticated fetch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TrustRoot {
    /// Format version of this document (1).
    pub version: u32,
    /// Which root of the chain this is: 1 for a root never rotated, one more for each rotation
    /// (`flotilla trust rotate`). An agent moves from root N only to a root N+1 signed by a
    /// threshold of root N's keys and of its own.
    #[serde(default = "first_serial")]
    pub serial: u64,
    /// The server's desired-state key (SPKI PEM) this root vouches for. When set, agents check
    /// desired states with it instead of the key pinned at enrollment, and a root that names a
    /// new one resets their sequence floor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_key_pem: Option<String>,
    /// Active publisher keys.
    pub keys: Vec<TrustRootKey>,
    /// Signatures needed from distinct keys, unless a model overrides it.
    pub threshold: u32,
    /// Per-model thresholds that override `threshold`.
    #[serde(default)]
    pub model_thresholds: BTreeMap<String, u32>,
    /// Models whose versions may be signed with bundles that bind only the artifact's digest
    /// (the upstream `model_signing` tool's), with no Flotilla facts: for them the model name
    /// and version are the server's word, and the downgrade floor compares semantic versions.
    /// Every other model needs signed facts. Chosen by whoever provisions the agents
    /// (`flotilla trust export --digest-only MODEL`), never by the server.
    #[serde(default, skip_serializing_if = "std::collections::BTreeSet::is_empty")]
    pub digest_only_models: std::collections::BTreeSet<String>,
}

/// Rotated trust roots, oldest first: `GET /api/v1/trust/roots` and
/// `GET /api/v1/agent/trust-roots`. An agent checks each against the one before.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TrustRootChain {
    /// The signed roots, by serial; at most [`TrustRootChain::MAX_ROOTS`] at once.
    pub roots: Vec<crate::signing::SignedTrustRoot>,
}

impl TrustRootChain {
    /// Roots in one answer; a device further behind asks again from the last one.
    pub const MAX_ROOTS: u32 = 32;
}

fn first_serial() -> u64 {
    1
}

/// Body of `POST /api/v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateModelRequest {
    /// Name: 1–64 of `a-z 0-9 - _ .`, starting with a letter or digit.
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: String,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Overrides the global signing threshold for this model.
    #[serde(default)]
    pub signing_threshold: Option<u32>,
}

/// A model (the series of its versions).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelInfo {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Its own signing threshold, if it overrides the global one.
    pub signing_threshold: Option<u32>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// Highest version that is not yanked.
    pub latest_version: Option<String>,
    /// Number of versions, yanked included.
    pub version_count: u64,
}

/// Body of `GET /api/v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelList {
    /// Models by name.
    pub models: Vec<ModelInfo>,
}

/// An artifact reference: digest, size and where to download it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ArtifactRef {
    /// Lowercase hex sha256 of the bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// Answer to `PUT /api/v1/artifacts/sha256/{hex}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArtifactStored {
    /// The artifact.
    #[serde(flatten)]
    pub artifact: ArtifactRef,
    /// False when it was already stored (the upload was a no-op).
    pub created: bool,
}

/// Body of `POST /api/v1/models/{name}/versions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateVersionRequest {
    /// Semantic version, e.g. `1.2.0`; must be higher than every existing version of the model.
    pub version: String,
    /// The uploaded artifact.
    pub artifact: ArtifactRef,
    /// Signature bundles, each the exact text of a `.sig` file (OpenSSF model-signing format).
    pub bundles: Vec<String>,
}

/// An input or output tensor of a model version, as read from its graph.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Open Inference Protocol datatype (`FP32`, `INT64`, ...).
    pub datatype: String,
    /// Shape; `-1` for a dynamic dimension.
    pub shape: Vec<i64>,
}

/// A publisher whose signature counted for a version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SignerInfo {
    /// Key id.
    pub key_id: String,
    /// Key name at the time of publishing.
    pub name: String,
}

/// A published model version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelVersionInfo {
    /// Model name.
    pub model: String,
    /// Version.
    pub version: String,
    /// The model file.
    pub artifact: ArtifactRef,
    /// Publishers whose signatures were verified.
    pub signers: Vec<SignerInfo>,
    /// Input tensors.
    pub inputs: Vec<TensorInfo>,
    /// Output tensors.
    pub outputs: Vec<TensorInfo>,
    /// The Flotilla facts the publishers signed, if any.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub signed_facts: Option<serde_json::Value>,
    /// Who published it (API token name).
    pub published_by: String,
    /// When (RFC 3339).
    pub created_at: String,
    /// When it was yanked, if it was. Yanked versions stay downloadable for devices that run
    /// them but cannot be deployed anew.
    pub yanked_at: Option<String>,
    /// Why it was yanked.
    pub yank_reason: Option<String>,
}

/// Body of `GET /api/v1/models/{name}/versions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionList {
    /// Versions, highest first.
    pub versions: Vec<ModelVersionInfo>,
}

/// Body of `POST /api/v1/models/{name}/versions/{version}/yank`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct YankRequest {
    /// Why (shown to operators).
    #[serde(default)]
    pub reason: String,
}
