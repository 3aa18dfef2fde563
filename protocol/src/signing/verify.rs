//! Verifying model signatures against a trust policy (k-of-n publisher keys).

use std::collections::BTreeSet;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::bundle::{pae, Bundle, BundleError, BUNDLE_MEDIA_TYPE, IN_TOTO_PAYLOAD_TYPE};
use super::statement::{parse_statement, ModelFacts, Resource, SignedStatement};
use super::PublicKey;

/// A publisher key the trust policy accepts, with an optional human name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// The key.
    pub key: PublicKey,
    /// Who holds it (`ml-team-ci`), for logs and errors.
    pub name: Option<String>,
}

/// Why a trust policy is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustPolicyError {
    /// The threshold is zero: every model would verify.
    #[error("threshold must be at least 1")]
    ZeroThreshold,
    /// More signatures required than there are keys.
    #[error("threshold {threshold} exceeds the {keys} trusted keys")]
    ThresholdExceedsKeys {
        /// The requested threshold.
        threshold: usize,
        /// How many distinct keys the policy lists.
        keys: usize,
    },
    /// The same key is listed twice (it would still count once).
    #[error("key {0} is listed twice")]
    DuplicateKey(String),
}

/// The publisher trust root: which keys may sign models, and how many distinct ones must.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustPolicy {
    keys: Vec<TrustedKey>,
    threshold: usize,
}

impl TrustPolicy {
    /// A policy requiring `threshold` distinct keys among `keys`.
    pub fn new(keys: Vec<TrustedKey>, threshold: usize) -> Result<Self, TrustPolicyError> {
        if threshold == 0 {
            return Err(TrustPolicyError::ZeroThreshold);
        }
        let mut ids = BTreeSet::new();
        for trusted in &keys {
            let id = trusted.key.key_id();
            if !ids.insert(id.clone()) {
                return Err(TrustPolicyError::DuplicateKey(id));
            }
        }
        if threshold > keys.len() {
            return Err(TrustPolicyError::ThresholdExceedsKeys {
                threshold,
                keys: keys.len(),
            });
        }
        Ok(TrustPolicy { keys, threshold })
    }

    /// A 1-of-1 policy.
    pub fn single(key: PublicKey) -> Self {
        TrustPolicy {
            keys: vec![TrustedKey { key, name: None }],
            threshold: 1,
        }
    }

    /// The trusted keys.
    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// How many distinct trusted keys must have signed.
    pub fn threshold(&self) -> usize {
        self.threshold
    }
}

/// The artifact an agent or the server holds and wants to check against the signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArtifactDigest {
    /// sha256 of the artifact bytes.
    pub sha256: [u8; 32],
    /// Its size in bytes, if known; checked against a signed `size` fact when both exist.
    pub size: Option<u64>,
}

/// What verification established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedModel {
    /// The signed resources (exactly one: the model file).
    pub resources: Vec<Resource>,
    /// The statement's subject digest (sha256 over the resource digests).
    pub subject_digest: [u8; 32],
    /// Flotilla's signed facts, `None` for statements made by the upstream tool.
    pub facts: Option<ModelFacts>,
    /// Key ids of the distinct trusted keys whose signatures verified, sorted.
    pub signers: Vec<String>,
}

/// Why a model's signatures were not accepted. [`VerifyError::code`] is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No bundle was given.
    #[error("no signature bundle given")]
    NoBundles,
    /// Not JSON, or JSON of the wrong shape.
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// An object in the bundle or statement repeats a key.
    #[error("duplicate JSON key `{0}`")]
    DuplicateKey(String),
    /// The bundle is not a Sigstore v0.3 bundle.
    #[error("unsupported bundle media type `{0}`")]
    UnsupportedMediaType(String),
    /// The envelope does not carry an in-toto statement.
    #[error("unsupported DSSE payload type `{0}`")]
    UnsupportedPayloadType(String),
    /// The statement is not an in-toto v1 statement.
    #[error("unsupported statement type `{0}`")]
    UnsupportedStatementType(String),
    /// The predicate is not a model-signing v1.0 signature.
    #[error("unsupported predicate type `{0}`")]
    UnsupportedPredicateType(String),
    /// The model was serialized by a method other than `files`.
    #[error("unsupported serialization method `{0}`")]
    UnsupportedSerializationMethod(String),
    /// A digest uses an algorithm other than sha256.
    #[error("unsupported hash algorithm `{0}`")]
    UnsupportedHashAlgorithm(String),
    /// The statement lists several files; Flotilla models are one file.
    #[error("the signature covers {0} files; only single-file models are supported")]
    UnsupportedResourceCount(usize),
    /// No signature verified under any trusted key, and none claimed to be from one.
    #[error("no signature from a trusted key")]
    NoTrustedSignature,
    /// A signature naming a trusted key did not verify (tampering or corruption).
    #[error("bad signature")]
    BadSignature,
    /// Too few distinct trusted keys signed.
    #[error("{have} of {need} required trusted signatures")]
    ThresholdNotMet {
        /// Distinct trusted keys that signed.
        have: usize,
        /// Required by the trust policy.
        need: usize,
    },
    /// Verified bundles sign different statements.
    #[error("the signature bundles sign different statements")]
    StatementMismatch,
    /// The statement's subject digest is not the digest of its resources.
    #[error("the subject digest does not match the listed resources")]
    SubjectDigestMismatch,
    /// The artifact is not the signed file.
    #[error("the artifact's sha256 is not the signed digest")]
    DigestMismatch,
    /// The artifact's size is not the signed size.
    #[error("the artifact is {actual} bytes but {signed} were signed")]
    SizeMismatch {
        /// Size in the signed facts.
        signed: u64,
        /// Size of the artifact.
        actual: u64,
    },
}

impl VerifyError {
    /// A stable snake_case identifier for API error bodies and logs.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::NoBundles => "no_signature_bundles",
            VerifyError::Malformed(_) => "malformed_signature",
            VerifyError::DuplicateKey(_) => "duplicate_json_key",
            VerifyError::UnsupportedMediaType(_) => "unsupported_media_type",
            VerifyError::UnsupportedPayloadType(_) => "unsupported_payload_type",
            VerifyError::UnsupportedStatementType(_) => "unsupported_statement_type",
            VerifyError::UnsupportedPredicateType(_) => "unsupported_predicate_type",
            VerifyError::UnsupportedSerializationMethod(_) => "unsupported_serialization_method",
            VerifyError::UnsupportedHashAlgorithm(_) => "unsupported_hash_algorithm",
            VerifyError::UnsupportedResourceCount(_) => "unsupported_resource_count",
            VerifyError::NoTrustedSignature => "no_trusted_signature",
            VerifyError::BadSignature => "bad_signature",
            VerifyError::ThresholdNotMet { .. } => "signature_threshold_not_met",
            VerifyError::StatementMismatch => "statement_mismatch",
            VerifyError::SubjectDigestMismatch => "subject_digest_mismatch",
            VerifyError::DigestMismatch => "artifact_digest_mismatch",
            VerifyError::SizeMismatch { .. } => "artifact_size_mismatch",
        }
    }
}

impl From<BundleError> for VerifyError {
    fn from(error: BundleError) -> Self {
        match error {
            BundleError::Malformed(msg) => VerifyError::Malformed(msg),
            BundleError::DuplicateKey(key) => VerifyError::DuplicateKey(key),
        }
    }
}

/// What checking one bundle's signatures found.
enum BundleOutcome {
    /// At least one trusted key verified; the statement (parsed from the verified bytes) and
    /// the key ids that signed it.
    Verified(Box<SignedStatement>, BTreeSet<String>),
    /// No trusted key verified; `named_trusted` if a signature claimed a trusted key anyway.
    Unverified { named_trusted: bool },
}

fn check_bundle(bytes: &[u8], trust: &TrustPolicy) -> Result<BundleOutcome, VerifyError> {
    let bundle = Bundle::from_json(bytes)?;
    if bundle.media_type != BUNDLE_MEDIA_TYPE {
        return Err(VerifyError::UnsupportedMediaType(bundle.media_type));
    }
    let envelope = &bundle.dsse_envelope;
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(VerifyError::UnsupportedPayloadType(
            envelope.payload_type.clone(),
        ));
    }
    if envelope.signatures.is_empty() {
        return Err(VerifyError::Malformed("envelope has no signatures".into()));
    }
    let payload = bundle.payload_bytes()?;
    let message = pae(&envelope.payload_type, &payload);
    let hint = bundle
        .verification_material
        .public_key
        .as_ref()
        .and_then(|id| id.hint.as_deref());

    let mut signers = BTreeSet::new();
    let mut named_trusted = false;
    for signature in &envelope.signatures {
        let sig = STANDARD
            .decode(&signature.sig)
            .map_err(|e| VerifyError::Malformed(format!("signature is not base64: {e}")))?;
        for trusted in &trust.keys {
            let key_id = trusted.key.key_id();
            // Hints and key ids are unauthenticated: they only decide whether a failure is
            // reported as a bad signature or as the absence of a trusted one.
            if signature.keyid == key_id || hint == Some(trusted.key.upstream_hint().as_str()) {
                named_trusted = true;
            }
            if trusted.key.verify(&message, &sig) {
                signers.insert(key_id);
            }
        }
    }
    if signers.is_empty() {
        return Ok(BundleOutcome::Unverified { named_trusted });
    }
    // Only now, with the payload bytes authenticated, is the statement parsed.
    let statement = parse_statement(&payload)?;
    Ok(BundleOutcome::Verified(Box::new(statement), signers))
}

/// Verifies that `bundles` sign `artifact` under `trust`.
///
/// Every bundle must be well formed (strict JSON, Sigstore v0.3, in-toto DSSE payload). Each
/// DSSE signature is checked against every trusted key over the PAE of the raw payload, and
/// only a payload that verified is parsed. Bundles with no trusted signature add nothing
/// (as in TUF, invalid signatures are ignored), but all verified bundles must sign the same
/// statement. The threshold counts distinct trusted keys, however many signatures each made.
/// Finally the statement must list exactly one resource, whose digest must be the artifact's
/// sha256 (and a signed `size` fact, the artifact's size).
pub fn verify(
    bundles: &[&[u8]],
    trust: &TrustPolicy,
    artifact: &ArtifactDigest,
) -> Result<VerifiedModel, VerifyError> {
    if bundles.is_empty() {
        return Err(VerifyError::NoBundles);
    }
    let mut statement: Option<Box<SignedStatement>> = None;
    let mut signers = BTreeSet::new();
    let mut named_trusted = false;
    for bytes in bundles {
        match check_bundle(bytes, trust)? {
            BundleOutcome::Verified(this, keys) => {
                match &statement {
                    Some(first) if !first.same_content(&this) => {
                        return Err(VerifyError::StatementMismatch)
                    }
                    Some(_) => {}
                    None => statement = Some(this),
                }
                signers.extend(keys);
            }
            BundleOutcome::Unverified { named_trusted: n } => named_trusted |= n,
        }
    }
    let Some(statement) = statement else {
        return Err(if named_trusted {
            VerifyError::BadSignature
        } else {
            VerifyError::NoTrustedSignature
        });
    };
    if signers.len() < trust.threshold {
        return Err(VerifyError::ThresholdNotMet {
            have: signers.len(),
            need: trust.threshold,
        });
    }
    let statement = *statement;
    let [model] = statement.resources.as_slice() else {
        return Err(VerifyError::UnsupportedResourceCount(
            statement.resources.len(),
        ));
    };
    if model.sha256 != artifact.sha256 {
        return Err(VerifyError::DigestMismatch);
    }
    if let (Some(signed), Some(actual)) =
        (statement.facts.as_ref().and_then(|f| f.size), artifact.size)
    {
        if signed != actual {
            return Err(VerifyError::SizeMismatch { signed, actual });
        }
    }
    Ok(VerifiedModel {
        resources: statement.resources,
        subject_digest: statement.subject_digest,
        facts: statement.facts,
        signers: signers.into_iter().collect(),
    })
}
