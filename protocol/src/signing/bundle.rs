//! The Sigstore bundle (v0.3, JSON) and the DSSE envelope inside it.
//!
//! Only the shape that key-based `model_signing` signatures use is accepted: a bundle with a
//! `dsseEnvelope` (not a `messageSignature`), verification material that at most names the key
//! (`publicKey.hint`), and an empty or ignored transparency-log list. Certificates are not
//! supported: trust comes from the keys in the [`TrustPolicy`](super::TrustPolicy) only.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::strict_json::{self, StrictJsonError};

/// The only bundle media type accepted and produced.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// The only DSSE payload type accepted and produced: an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// Why bytes are not a bundle this crate can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("malformed bundle: {0}")]
    Malformed(String),
    /// An object in the bundle repeats a key.
    #[error("duplicate JSON key `{0}` in bundle")]
    DuplicateKey(String),
}

/// A Sigstore bundle carrying one DSSE envelope: the model signature file (`model.sig`).
///
/// It travels as JSON bytes ([`Bundle::to_json`], [`Bundle::from_json`]); the fields keep the
/// wire text (base64 strings) so a parsed bundle serializes back to the same content.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bundle {
    /// Must be [`BUNDLE_MEDIA_TYPE`]; checked by verification, not by parsing.
    pub media_type: String,
    /// Which key signed (a hint only: trust comes from the trust policy).
    pub verification_material: VerificationMaterial,
    /// The signed payload and its signatures.
    pub dsse_envelope: Envelope,
}

/// `verificationMaterial` of a key-signed bundle.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerificationMaterial {
    /// Names the signing key; absent in bundles from model_signing before 1.0.
    #[serde(default)]
    pub public_key: Option<PublicKeyIdentifier>,
    /// Transparency-log entries; key-signed bundles carry none and Flotilla does not use them.
    #[serde(default)]
    pub tlog_entries: Vec<Value>,
}

/// `verificationMaterial.publicKey`: which key signed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublicKeyIdentifier {
    /// Lowercase hex sha256 of the signer's SPKI PEM text (the upstream tool's convention; see
    /// [`PublicKey::upstream_hint`](super::PublicKey::upstream_hint)).
    #[serde(default)]
    pub hint: Option<String>,
    /// Raw key bytes written by pre-1.0 tools; ignored (a key in the bundle proves nothing).
    #[serde(default)]
    pub raw_bytes: Option<String>,
    /// Key details written by pre-1.0 tools; ignored.
    #[serde(default)]
    pub key_details: Option<String>,
}

/// A DSSE envelope (<https://github.com/secure-systems-lab/dsse>), protobuf-JSON spelling.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Envelope {
    /// Standard base64 of the payload bytes (the in-toto statement JSON).
    pub payload: String,
    /// Must be [`IN_TOTO_PAYLOAD_TYPE`]; part of what is signed (see [`pae`]).
    pub payload_type: String,
    /// One or more signatures over `pae(payload_type, payload)`.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One DSSE signature.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    /// Standard base64 of the signature (64 raw bytes for ed25519, DER for ECDSA).
    pub sig: String,
    /// Unauthenticated key name: Flotilla writes the signer's [`key_id`](super::PublicKey::key_id);
    /// the upstream tool writes `""`.
    #[serde(default)]
    pub keyid: String,
}

/// DSSE pre-authentication encoding: `"DSSEv1" SP len(type) SP type SP len(body) SP body`,
/// lengths in ASCII decimal. This, not the payload alone, is what signatures cover.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let header = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    );
    [header.as_bytes(), payload].concat()
}

impl Bundle {
    /// A bundle around `payload` with the given signatures (raw bytes, key id).
    pub(crate) fn new(
        payload_type: &str,
        payload: &[u8],
        signatures: Vec<(Vec<u8>, String)>,
        hint: Option<String>,
    ) -> Self {
        Bundle {
            media_type: BUNDLE_MEDIA_TYPE.to_owned(),
            verification_material: VerificationMaterial {
                public_key: Some(PublicKeyIdentifier {
                    hint,
                    raw_bytes: None,
                    key_details: None,
                }),
                tlog_entries: Vec::new(),
            },
            dsse_envelope: Envelope {
                payload: STANDARD.encode(payload),
                payload_type: payload_type.to_owned(),
                signatures: signatures
                    .into_iter()
                    .map(|(sig, keyid)| EnvelopeSignature {
                        sig: STANDARD.encode(sig),
                        keyid,
                    })
                    .collect(),
            },
        }
    }

    /// Parses bundle JSON. Rejects duplicate keys anywhere, unknown fields and missing ones;
    /// does **not** check media type, payload type or signatures (that is
    /// [`verify`](super::verify)'s job).
    pub fn from_json(bytes: &[u8]) -> Result<Self, BundleError> {
        let value = strict_json::parse(bytes).map_err(|e| match e {
            StrictJsonError::DuplicateKey(key) => BundleError::DuplicateKey(key),
            StrictJsonError::Syntax(msg) => BundleError::Malformed(msg),
        })?;
        serde_json::from_value(value).map_err(|e| BundleError::Malformed(e.to_string()))
    }

    /// Serializes the bundle as compact JSON (object keys sorted), the bytes of a `.sig` file.
    pub fn to_json(&self) -> Vec<u8> {
        // Built as a `Value` because that cannot fail, unlike serializing through serde.
        let mut public_key = Map::new();
        if let Some(id) = &self.verification_material.public_key {
            let fields = [
                ("hint", &id.hint),
                ("rawBytes", &id.raw_bytes),
                ("keyDetails", &id.key_details),
            ];
            for (name, field) in fields {
                if let Some(text) = field {
                    public_key.insert(name.to_owned(), Value::String(text.clone()));
                }
            }
        }
        let mut material = Map::new();
        if self.verification_material.public_key.is_some() {
            material.insert("publicKey".to_owned(), Value::Object(public_key));
        }
        material.insert(
            "tlogEntries".to_owned(),
            Value::Array(self.verification_material.tlog_entries.clone()),
        );
        let signatures = self
            .dsse_envelope
            .signatures
            .iter()
            .map(|s| {
                let mut sig = Map::new();
                sig.insert("sig".to_owned(), Value::String(s.sig.clone()));
                sig.insert("keyid".to_owned(), Value::String(s.keyid.clone()));
                Value::Object(sig)
            })
            .collect();
        let mut envelope = Map::new();
        envelope.insert(
            "payload".to_owned(),
            Value::String(self.dsse_envelope.payload.clone()),
        );
        envelope.insert(
            "payloadType".to_owned(),
            Value::String(self.dsse_envelope.payload_type.clone()),
        );
        envelope.insert("signatures".to_owned(), Value::Array(signatures));
        let mut bundle = Map::new();
        bundle.insert(
            "mediaType".to_owned(),
            Value::String(self.media_type.clone()),
        );
        bundle.insert("verificationMaterial".to_owned(), Value::Object(material));
        bundle.insert("dsseEnvelope".to_owned(), Value::Object(envelope));
        Value::Object(bundle).to_string().into_bytes()
    }

    /// The decoded payload bytes (unverified: parse them only after a signature checked out).
    pub fn payload_bytes(&self) -> Result<Vec<u8>, BundleError> {
        STANDARD
            .decode(&self.dsse_envelope.payload)
            .map_err(|e| BundleError::Malformed(format!("payload is not base64: {e}")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // From the DSSE protocol spec.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn json_round_trip() {
        let bundle = Bundle::new(
            IN_TOTO_PAYLOAD_TYPE,
            b"{}",
            vec![(vec![1, 2, 3], "abc".into())],
            Some("hint".into()),
        );
        let json = bundle.to_json();
        assert_eq!(Bundle::from_json(&json).unwrap(), bundle);
        assert_eq!(
            Bundle::from_json(&json).unwrap().payload_bytes().unwrap(),
            b"{}"
        );
    }

    #[test]
    fn rejects_unknown_fields_and_duplicate_keys() {
        let bundle = Bundle::new(IN_TOTO_PAYLOAD_TYPE, b"{}", vec![], None);
        let json = String::from_utf8(bundle.to_json()).unwrap();
        let extra = json.replacen('{', r#"{"messageSignature":{},"#, 1);
        assert!(matches!(
            Bundle::from_json(extra.as_bytes()),
            Err(BundleError::Malformed(_))
        ));
        let dup = json.replacen('{', r#"{"mediaType":"x","#, 1);
        assert_eq!(
            Bundle::from_json(dup.as_bytes()),
            Err(BundleError::DuplicateKey("mediaType".into()))
        );
    }
}
