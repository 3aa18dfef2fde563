//! The signed model registry: publisher keys, the trust policy, models and versions.
//!
//! Publishing a version verifies everything before anything is recorded: the artifact is
//! stored and has the declared size, the signature bundles meet the threshold of active
//! publisher keys over exactly the artifact's digest, the signed facts (if any) name this model
//! and version, versions only go up, and the file is a loadable ONNX graph.

use chrono::{DateTime, Utc};
use flotilla_protocol::registry::{
    CreateModelRequest, CreateVersionRequest, SignerInfo, TensorInfo, TrustRoot, TrustRootKey,
};
use flotilla_protocol::signing::{
    self, ArtifactDigest, PublicKey, RootError, SignedTrustRoot, TrustPolicy, TrustedKey,
    VerifyError,
};
use flotilla_protocol::ErrorCode;
use std::collections::BTreeMap;
use tokio::sync::Semaphore;
use uuid::Uuid;

use super::names::{parse_label_name, parse_version, ModelName};
use super::DomainError;
use crate::blob::{BlobStore, Sha256Digest};
use crate::store::{ModelRecord, PublisherKeyRecord, Store, TrustRootRecord, VersionRecord};

/// Setting key of the global signing threshold.
const THRESHOLD_SETTING: &str = "signing_threshold";
/// At most this many bundles per version (thresholds beyond this are not realistic).
const MAX_BUNDLES: usize = 16;
/// A bundle larger than this is not a signature.
const MAX_BUNDLE_BYTES: usize = 256 * 1024;

/// Registers a publisher key from its SPKI PEM.
pub async fn register_key(
    store: &dyn Store,
    name: &str,
    pem: &str,
    now: DateTime<Utc>,
) -> Result<PublisherKeyRecord, DomainError> {
    let name = parse_label_name("key name", name)?;
    let key = PublicKey::from_pem(pem).map_err(|e| {
        DomainError::invalid(
            ErrorCode::InvalidArgument,
            format!("not a usable public key (SPKI PEM; ed25519, ECDSA P-256 or P-384): {e}"),
        )
    })?;
    let record = PublisherKeyRecord {
        key_id: key.key_id(),
        name,
        algorithm: key.algorithm().as_str().to_owned(),
        public_key_pem: key.to_pem(),
        created_at: now,
        revoked_at: None,
    };
    store
        .insert_publisher_key(&record)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict(_) => DomainError::conflict(
                ErrorCode::Conflict,
                format!(
                    "a publisher key with this key id ({}) or the name `{}` is already registered",
                    record.key_id, record.name
                ),
            ),
            other => other.into(),
        })?;
    Ok(record)
}

/// Revokes a publisher key: its signatures stop counting at once.
pub async fn revoke_key(
    store: &dyn Store,
    key_id: &str,
    now: DateTime<Utc>,
) -> Result<PublisherKeyRecord, DomainError> {
    if key_id.len() != 64 || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DomainError::invalid(
            ErrorCode::InvalidPath,
            format!("`{key_id}` is not a key id (64 hex characters)"),
        ));
    }
    Ok(store.revoke_publisher_key(key_id, now).await?)
}

/// The global signing threshold (1 until an admin sets it).
pub async fn global_threshold(store: &dyn Store) -> Result<u32, DomainError> {
    Ok(store
        .get_setting(THRESHOLD_SETTING)
        .await?
        .and_then(|v| v.parse().ok())
        .unwrap_or(1))
}

/// Sets the global signing threshold; it cannot exceed the number of active keys.
pub async fn set_threshold(store: &dyn Store, threshold: u32) -> Result<(), DomainError> {
    if threshold == 0 {
        return Err(DomainError::invalid(
            ErrorCode::InvalidArgument,
            "threshold must be at least 1",
        ));
    }
    let active = active_keys(store).await?.len();
    if threshold as usize > active {
        return Err(DomainError::invalid(
            ErrorCode::InvalidArgument,
            format!("threshold {threshold} exceeds the {active} active publisher key(s); register more keys first"),
        ));
    }
    store
        .put_setting(THRESHOLD_SETTING, &threshold.to_string())
        .await?;
    Ok(())
}

async fn active_keys(store: &dyn Store) -> Result<Vec<PublisherKeyRecord>, DomainError> {
    Ok(store
        .list_publisher_keys()
        .await?
        .into_iter()
        .filter(|k| k.revoked_at.is_none())
        .collect())
}

/// The trust root the server's keys and thresholds make up now, unsigned: serial 1 when no
/// root was ever rotated, which is what agents are provisioned with then.
async fn computed_root(store: &dyn Store) -> Result<TrustRoot, DomainError> {
    let keys = active_keys(store)
        .await?
        .into_iter()
        .map(|k| TrustRootKey {
            key_id: k.key_id,
            name: k.name,
            public_key_pem: k.public_key_pem,
        })
        .collect();
    let model_thresholds = store
        .list_models()
        .await?
        .into_iter()
        .filter_map(|m| m.signing_threshold.map(|t| (m.name, t)))
        .collect();
    Ok(TrustRoot {
        version: 1,
        serial: 1,
        server_key_pem: None,
        keys,
        threshold: global_threshold(store).await?,
        model_thresholds,
        // Only whoever provisions agents may waive signed facts (`flotilla trust export
        // --digest-only`); the server never does.
        digest_only_models: Default::default(),
    })
}

/// The newest rotated root and what it says (checked when it was stored).
async fn latest_rotated(store: &dyn Store) -> Result<Option<TrustRoot>, DomainError> {
    let Some(record) = store.latest_trust_root().await? else {
        return Ok(None);
    };
    let root = SignedTrustRoot::from_json(record.envelope.as_bytes())
        .and_then(|env| env.unverified_root())
        .map_err(|e| {
            DomainError::internal(anyhow::anyhow!("stored trust root {}: {e}", record.serial))
        })?;
    Ok(Some(root))
}

/// The current trust root, for provisioning agents: the newest root the publishers signed in
/// a rotation, or, before any rotation, the active keys and thresholds (serial 1).
pub async fn trust_root(store: &dyn Store) -> Result<TrustRoot, DomainError> {
    match latest_rotated(store).await? {
        Some(root) => Ok(root),
        None => computed_root(store).await,
    }
}

/// The serial of the newest trust root (1 before any rotation).
pub async fn trust_root_serial(store: &dyn Store) -> Result<u64, DomainError> {
    Ok(store.latest_trust_root().await?.map_or(1, |r| r.serial))
}

/// What the next rotation would sign, for `flotilla trust rotate`: the active keys and
/// thresholds now, the next serial, and the server's desired-state key. Whoever signs it
/// reviews it first; the digest-only list is carried over from the current rotated root.
pub async fn trust_root_draft(
    store: &dyn Store,
    server_key: &PublicKey,
) -> Result<TrustRoot, DomainError> {
    let mut draft = computed_root(store).await?;
    let current = latest_rotated(store).await?;
    draft.serial = current.as_ref().map_or(1, |r| r.serial) + 1;
    draft.digest_only_models = current.map(|r| r.digest_only_models).unwrap_or_default();
    draft.server_key_pem = Some(server_key.to_pem());
    Ok(draft)
}

fn root_error(e: RootError) -> DomainError {
    let code = match &e {
        RootError::Malformed(_) | RootError::WrongPayloadType(_) => ErrorCode::TrustRootMalformed,
        RootError::Invalid(_) => ErrorCode::TrustRootInvalid,
        RootError::NotNext { .. } => {
            return DomainError::conflict(ErrorCode::TrustRootNotNext, e.to_string())
        }
        RootError::NotSignedByCurrent { .. } => ErrorCode::TrustRootNotSignedByCurrent,
        RootError::NotSignedByItself { .. } => ErrorCode::TrustRootNotSignedByItself,
    };
    DomainError::invalid(code, e.to_string())
}

/// Stores a rotated trust root for agents to fetch. The server checks what it can: the root is
/// usable, its serial is the next one, its own keys signed it, and, when an earlier rotated
/// root is stored, a threshold of that root's keys signed it too (the full chain rule agents
/// apply). The first rotation follows the root agents were provisioned with, which the server
/// never saw signed: there the agents' check is the one that counts.
pub async fn publish_trust_root(
    store: &dyn Store,
    envelope: &[u8],
    created_by: &str,
    now: DateTime<Utc>,
) -> Result<TrustRoot, DomainError> {
    let env = SignedTrustRoot::from_json(envelope).map_err(root_error)?;
    let root = env.unverified_root().map_err(root_error)?;
    let keys = root.checked_keys().map_err(root_error)?;
    let current = latest_rotated(store).await?;
    let current_serial = current.as_ref().map_or(1, |r| r.serial);
    if root.serial != current_serial + 1 {
        return Err(root_error(RootError::NotNext {
            got: root.serial,
            current: current_serial,
        }));
    }
    match &current {
        Some(current) => {
            signing::verify_root_update(current, envelope).map_err(root_error)?;
        }
        None => {
            let (signed, needed) = (env.signed_by(&keys), root.threshold as usize);
            if signed < needed {
                return Err(root_error(RootError::NotSignedByItself { signed, needed }));
            }
        }
    }
    store
        .insert_trust_root(&TrustRootRecord {
            serial: root.serial,
            envelope: String::from_utf8_lossy(&env.to_json()).into_owned(),
            created_by: created_by.to_owned(),
            created_at: now,
        })
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict(_) => root_error(RootError::NotNext {
                got: root.serial,
                current: root.serial,
            }),
            other => other.into(),
        })?;
    Ok(root)
}

/// Who is asking for a per-model signing threshold, which decides how low it may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdAuthority {
    /// An admin: may set any threshold of at least 1, also below the global one.
    Admin,
    /// Anyone else (a publisher): at least the global threshold. A publisher lowering its own
    /// model's threshold would let one stolen key publish where the fleet asked for several.
    AtLeastGlobal,
}

/// A created model and the global threshold its own was checked against (for the audit log).
#[derive(Debug)]
pub struct CreatedModel {
    /// The stored model.
    pub model: ModelRecord,
    /// The global signing threshold at the time.
    pub global_threshold: u32,
}

/// Creates a model.
pub async fn create_model(
    store: &dyn Store,
    req: &CreateModelRequest,
    authority: ThresholdAuthority,
    now: DateTime<Utc>,
) -> Result<CreatedModel, DomainError> {
    let name = ModelName::parse(&req.name)?;
    if req.description.chars().count() > 2000 {
        return Err(DomainError::invalid(
            ErrorCode::InvalidArgument,
            "description is longer than 2000 characters",
        ));
    }
    if req.signing_threshold == Some(0) {
        return Err(DomainError::invalid(
            ErrorCode::InvalidArgument,
            "signing_threshold must be at least 1",
        ));
    }
    let global = global_threshold(store).await?;
    if let Some(threshold) = req.signing_threshold {
        if threshold < global && authority != ThresholdAuthority::Admin {
            return Err(DomainError::forbidden(
                ErrorCode::ThresholdBelowGlobal,
                format!(
                    "signing_threshold {threshold} is below the global threshold {global}; only an admin may lower a model's threshold"
                ),
            ));
        }
    }
    for (k, v) in &req.labels {
        parse_label_name("label key", k)?;
        if v.chars().count() > 256 {
            return Err(DomainError::invalid(
                ErrorCode::InvalidArgument,
                format!("label `{k}` is longer than 256 characters"),
            ));
        }
    }
    let model = ModelRecord {
        id: Uuid::new_v4(),
        name: name.as_str().to_owned(),
        description: req.description.clone(),
        labels: req.labels.clone(),
        signing_threshold: req.signing_threshold,
        created_at: now,
    };
    store.insert_model(&model).await.map_err(|e| match e {
        crate::store::StoreError::Conflict(_) => DomainError::conflict(
            ErrorCode::Conflict,
            format!("model `{name}` already exists"),
        ),
        other => other.into(),
    })?;
    Ok(CreatedModel {
        model,
        global_threshold: global,
    })
}

/// A model by name, or 404.
pub async fn model(store: &dyn Store, name: &str) -> Result<ModelRecord, DomainError> {
    let name = ModelName::parse(name)?;
    store
        .get_model(name.as_str())
        .await?
        .ok_or_else(|| DomainError::not_found(format!("model `{name}` not found")))
}

/// A model's versions, highest first.
pub async fn versions(
    store: &dyn Store,
    model: &ModelRecord,
) -> Result<Vec<VersionRecord>, DomainError> {
    let mut versions = store.list_versions(model.id).await?;
    versions.sort_by_key(|v| std::cmp::Reverse(semver_of(&v.version)));
    Ok(versions)
}

fn semver_of(v: &str) -> Option<semver::Version> {
    semver::Version::parse(v).ok()
}

/// One version, or 404.
pub async fn version(
    store: &dyn Store,
    model: &ModelRecord,
    version: &str,
) -> Result<VersionRecord, DomainError> {
    let v = parse_version(version)?;
    store
        .get_version(model.id, &v.to_string())
        .await?
        .ok_or_else(|| DomainError::not_found(format!("model `{}` has no version {v}", model.name)))
}

/// Yanks a version: it can no longer be deployed; devices running it keep their copy.
pub async fn yank(
    store: &dyn Store,
    model: &ModelRecord,
    version: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<VersionRecord, DomainError> {
    let v = parse_version(version)?;
    if reason.chars().count() > 500 {
        return Err(DomainError::invalid(
            ErrorCode::InvalidArgument,
            "reason is longer than 500 characters",
        ));
    }
    Ok(store
        .yank_version(model.id, &v.to_string(), now, reason)
        .await?)
}

/// The outcome of a publish.
#[derive(Debug)]
pub struct Published {
    /// The version as recorded.
    pub version: VersionRecord,
    /// False when the same version with the same artifact already existed (idempotent retry).
    pub created: bool,
}

/// Who is publishing, and the limits that apply.
pub struct PublishContext<'a> {
    /// Metadata.
    pub store: &'a dyn Store,
    /// Artifacts.
    pub blobs: &'a BlobStore,
    /// Bounds how many models are parsed at once (each needs its bytes in memory).
    pub validation: &'a Semaphore,
    /// Name of the publishing token.
    pub publisher: &'a str,
    /// Now.
    pub now: DateTime<Utc>,
}

/// Verifies and records a new version. See the module documentation for the checks.
pub async fn publish_version(
    ctx: &PublishContext<'_>,
    model: &ModelRecord,
    req: CreateVersionRequest,
) -> Result<Published, DomainError> {
    let version = parse_version(&req.version)?;
    let digest = Sha256Digest::parse_hex(&req.artifact.sha256).ok_or_else(|| {
        DomainError::invalid(
            ErrorCode::InvalidArgument,
            "artifact.sha256 must be 64 lowercase hex characters",
        )
    })?;
    if req.bundles.is_empty() {
        return Err(DomainError::invalid(
            ErrorCode::SignatureInvalid,
            "at least one signature bundle is required",
        ));
    }
    if req.bundles.len() > MAX_BUNDLES || req.bundles.iter().any(|b| b.len() > MAX_BUNDLE_BYTES) {
        return Err(DomainError::invalid(
            ErrorCode::SignatureInvalid,
            format!("at most {MAX_BUNDLES} bundles of at most {MAX_BUNDLE_BYTES} bytes each"),
        ));
    }

    // Same version again: idempotent with the same artifact, a conflict otherwise.
    let existing = ctx.store.list_versions(model.id).await?;
    if let Some(same) = existing
        .iter()
        .find(|v| semver_of(&v.version).as_ref() == Some(&version))
    {
        if same.artifact_sha256 == digest.to_hex() && same.artifact_size == req.artifact.size {
            return Ok(Published {
                version: same.clone(),
                created: false,
            });
        }
        return Err(DomainError::conflict(
            ErrorCode::VersionExists,
            format!(
                "{}@{version} already exists with different content (sha256 {}); publish a new version",
                model.name, same.artifact_sha256
            ),
        ));
    }
    if let Some(highest) = existing.iter().filter_map(|v| semver_of(&v.version)).max() {
        if version <= highest {
            return Err(DomainError::conflict(
                ErrorCode::VersionNotIncreasing,
                format!("{}@{version} is not higher than the latest version {highest}; versions only go up", model.name),
            ));
        }
    }

    let stored_size = ctx.blobs.size(&digest).await?.ok_or_else(|| {
        DomainError::invalid(
            ErrorCode::ArtifactNotFound,
            format!("artifact sha256:{} has not been uploaded; PUT it to /api/v1/artifacts/sha256/{} first", digest.to_hex(), digest.to_hex()),
        )
    })?;
    if stored_size != req.artifact.size {
        return Err(DomainError::invalid(
            ErrorCode::ArtifactMismatch,
            format!(
                "artifact size is {stored_size} bytes, not the declared {}",
                req.artifact.size
            ),
        ));
    }

    let (policy, names) = trust_policy(ctx.store, model).await?;
    let bundles: Vec<&[u8]> = req.bundles.iter().map(|b| b.as_bytes()).collect();
    let verified = signing::verify(
        &bundles,
        &policy,
        &ArtifactDigest {
            sha256: digest.0,
            size: Some(stored_size),
        },
    )
    .map_err(verify_error)?;
    if let Some(facts) = &verified.facts {
        if facts.model != model.name || semver_of(&facts.version).as_ref() != Some(&version) {
            return Err(DomainError::invalid(
                ErrorCode::SignedFactsMismatch,
                format!(
                    "the publishers signed this file as {}@{}, not {}@{version}",
                    facts.model, facts.version, model.name
                ),
            ));
        }
    }

    let (inputs, outputs) = inspect_model(ctx, &digest).await?;
    let record = VersionRecord {
        id: Uuid::new_v4(),
        model_id: model.id,
        model_name: model.name.clone(),
        version: version.to_string(),
        artifact_sha256: digest.to_hex(),
        artifact_size: stored_size,
        bundles: req.bundles,
        signers: verified
            .signers
            .iter()
            .map(|id| SignerInfo {
                key_id: id.clone(),
                name: names.get(id).cloned().unwrap_or_default(),
            })
            .collect(),
        inputs,
        outputs,
        signed_facts: verified
            .facts
            .as_ref()
            .and_then(|f| serde_json::to_value(f).ok()),
        published_by: ctx.publisher.to_owned(),
        created_at: ctx.now,
        yanked_at: None,
        yank_reason: None,
    };
    ctx.store
        .insert_version(&record)
        .await
        .map_err(|e| match e {
            // Lost a race with an identical publish: report it like the check above would.
            crate::store::StoreError::Conflict(_) => DomainError::conflict(
                ErrorCode::VersionExists,
                format!("{}@{version} was published concurrently", model.name),
            ),
            other => other.into(),
        })?;
    Ok(Published {
        version: record,
        created: true,
    })
}

async fn trust_policy(
    store: &dyn Store,
    model: &ModelRecord,
) -> Result<(TrustPolicy, BTreeMap<String, String>), DomainError> {
    let keys = active_keys(store).await?;
    if keys.is_empty() {
        return Err(DomainError::invalid(
            ErrorCode::NoPublisherKeys,
            "no active publisher key is registered; an admin must add one (flotilla keys add)",
        ));
    }
    let threshold = match model.signing_threshold {
        Some(t) => t,
        None => global_threshold(store).await?,
    };
    let mut trusted = Vec::with_capacity(keys.len());
    let mut names = BTreeMap::new();
    for k in &keys {
        let key = PublicKey::from_pem(&k.public_key_pem).map_err(DomainError::internal)?;
        names.insert(k.key_id.clone(), k.name.clone());
        trusted.push(TrustedKey {
            key,
            name: Some(k.name.clone()),
        });
    }
    if threshold as usize > trusted.len() {
        return Err(DomainError::invalid(
            ErrorCode::SignatureThresholdNotMet,
            format!(
                "the signing threshold is {threshold} but only {} publisher key(s) are active",
                trusted.len()
            ),
        ));
    }
    let policy = TrustPolicy::new(trusted, threshold as usize).map_err(DomainError::internal)?;
    Ok((policy, names))
}

fn verify_error(e: VerifyError) -> DomainError {
    let code = match &e {
        VerifyError::NoTrustedSignature => ErrorCode::UntrustedSigner,
        VerifyError::ThresholdNotMet { .. } => ErrorCode::SignatureThresholdNotMet,
        VerifyError::SubjectDigestMismatch
        | VerifyError::DigestMismatch
        | VerifyError::SizeMismatch { .. } => ErrorCode::ArtifactMismatch,
        _ => ErrorCode::SignatureInvalid,
    };
    let hint = match code {
        ErrorCode::UntrustedSigner => {
            " (is the signing key registered and not revoked? see `flotilla keys ls`)"
        }
        ErrorCode::ArtifactMismatch => " (the signature was made over different bytes)",
        _ => "",
    };
    DomainError::invalid(
        code,
        format!("signature rejected: {e} [{}]{hint}", e.code()),
    )
}

/// Parses the stored file with the shared runtime and returns its tensors. One model is parsed
/// at a time, so memory stays bounded by the largest model, not by concurrent publishes.
async fn inspect_model(
    ctx: &PublishContext<'_>,
    digest: &Sha256Digest,
) -> Result<(Vec<TensorInfo>, Vec<TensorInfo>), DomainError> {
    let _permit = ctx
        .validation
        .acquire()
        .await
        .map_err(DomainError::internal)?;
    let bytes = ctx.blobs.read_all(digest).await?;
    let signature = tokio::task::spawn_blocking(move || flotilla_runtime::describe(&bytes))
        .await
        .map_err(DomainError::internal)?
        .map_err(|e| {
            DomainError::invalid(
                ErrorCode::InvalidModel,
                format!("not a loadable ONNX model: {e}"),
            )
        })?;
    let convert = |specs: &[flotilla_runtime::TensorSpec]| {
        specs
            .iter()
            .map(|s| TensorInfo {
                name: s.name.clone(),
                datatype: s.datatype.name().to_owned(),
                shape: s.shape.clone(),
            })
            .collect()
    };
    Ok((convert(&signature.inputs), convert(&signature.outputs)))
}
