//! Model signatures in the OpenSSF model-signing format, and their verification.
//!
//! A signature is a Sigstore bundle (`application/vnd.dev.sigstore.bundle.v0.3+json`) holding a
//! DSSE envelope whose payload is an in-toto Statement v1 with predicate type
//! `https://model_signing/signature/v1.0` (see [`statement`] for the exact layout). This is
//! what the upstream `model_signing sign key` tool (1.x) writes, so bundles it made with ECDSA
//! P-256/P-384 keys verify here unchanged. Flotilla itself signs with ed25519 ([`sign_model`])
//! and adds its facts about the version ([`ModelFacts`]) to the predicate, under the signature.
//!
//! Verification ([`verify`]) follows the trust model of the design (§3): only keys of the
//! [`TrustPolicy`] count, a threshold counts distinct keys, only signature-verified bytes are
//! parsed, and the signed digest must be exactly the artifact's.

mod bundle;
mod keys;
mod root;
mod sign;
pub mod statement;
mod strict_json;
mod verify;

#[cfg(test)]
mod tests;

pub use bundle::{
    pae, Bundle, BundleError, Envelope, EnvelopeSignature, PublicKeyIdentifier,
    VerificationMaterial, BUNDLE_MEDIA_TYPE, IN_TOTO_PAYLOAD_TYPE,
};
pub use keys::{KeyAlgorithm, KeyError, PublicKey, SigningKey, Zeroizing};
pub use root::{
    sign_trust_root, verify_root_update, RootError, RootSignature, SignedTrustRoot,
    MAX_SIGNED_ROOT_BYTES, TRUST_ROOT_PAYLOAD_TYPE,
};
pub use sign::{sign_model, SignError};
pub use statement::{
    combined_digest, Compatibility, ModelFacts, Resource, SampleTensor, TensorSpec, PREDICATE_TYPE,
    SINGLE_FILE_RESOURCE_NAME, STATEMENT_TYPE,
};
pub use verify::{
    verify, ArtifactDigest, TrustPolicy, TrustPolicyError, TrustedKey, VerifiedModel, VerifyError,
};
