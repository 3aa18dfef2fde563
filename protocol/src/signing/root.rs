//! Trust-root rotation: TUF's `root.json` chain, for Flotilla's trust root.
//!
//! An agent is provisioned with a [`TrustRoot`] (serial 1, or whatever the newest root was at
//! install time). A later root reaches it through the server, which cannot forge one: root N+1
//! is a DSSE envelope ([`SignedTrustRoot`]) whose signatures must come from a threshold of
//! root N's keys (the old keys vouch for the change) and a threshold of root N+1's own keys
//! (the new keys are really held), as TUF §5.3.4 asks. Serials go up by exactly one, so a
//! server can neither skip a rotation nor replay an old root. The threshold that counts for a
//! root is its global `threshold`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use super::bundle::pae;
use super::keys::{PublicKey, SigningKey};
use super::strict_json;
use super::verify::TrustedKey;
use crate::registry::TrustRoot;

/// DSSE payload type of a signed trust root.
pub const TRUST_ROOT_PAYLOAD_TYPE: &str = "application/vnd.flotilla.trust-root.v1+json";

/// The largest signed trust root anyone reads (a root lists keys, not models' bytes).
pub const MAX_SIGNED_ROOT_BYTES: usize = 256 * 1024;

/// One signature of a [`SignedTrustRoot`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RootSignature {
    /// Key id of the signer (hex sha256 of its SPKI DER); unauthenticated, a hint only.
    pub keyid: String,
    /// Standard base64 of the signature over the DSSE PAE.
    pub sig: String,
}

/// A trust root in its DSSE envelope, as `flotilla trust rotate` signs it and agents check it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SignedTrustRoot {
    /// [`TRUST_ROOT_PAYLOAD_TYPE`].
    pub payload_type: String,
    /// Standard base64 of the JSON [`TrustRoot`].
    pub payload: String,
    /// Signatures over `pae(payload_type, payload)`.
    pub signatures: Vec<RootSignature>,
}

/// Why a trust root or a rotation was refused. [`RootError::code`] is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootError {
    /// Not a signed trust root, or too large.
    #[error("malformed signed trust root: {0}")]
    Malformed(String),
    /// The envelope's payload type is not a trust root.
    #[error("wrong payload type `{0}`")]
    WrongPayloadType(String),
    /// The root itself is unusable (bad key, unsatisfiable threshold, ...).
    #[error("invalid trust root: {0}")]
    Invalid(String),
    /// Not the next root of the chain.
    #[error("trust root serial {got} does not follow {current} (expected {})", current + 1)]
    NotNext {
        /// The offered serial.
        got: u64,
        /// The serial of the root it would replace.
        current: u64,
    },
    /// Too few of the current root's keys signed the new one.
    #[error(
        "the new trust root is signed by {signed} of the current root's keys; {needed} must sign"
    )]
    NotSignedByCurrent {
        /// Distinct current keys whose signature verified.
        signed: usize,
        /// The current root's threshold.
        needed: usize,
    },
    /// Too few of the new root's own keys signed it.
    #[error("the new trust root is signed by {signed} of its own keys; {needed} must sign")]
    NotSignedByItself {
        /// Distinct new keys whose signature verified.
        signed: usize,
        /// The new root's threshold.
        needed: usize,
    },
}

impl RootError {
    /// Stable code (reports, API errors and CLI messages carry it).
    pub fn code(&self) -> &'static str {
        match self {
            RootError::Malformed(_) | RootError::WrongPayloadType(_) => "trust_root_malformed",
            RootError::Invalid(_) => "trust_root_invalid",
            RootError::NotNext { .. } => "trust_root_not_next",
            RootError::NotSignedByCurrent { .. } => "trust_root_not_signed_by_current",
            RootError::NotSignedByItself { .. } => "trust_root_not_signed_by_itself",
        }
    }
}

impl TrustRoot {
    /// Checks the root on its own and returns its keys: format version 1, serial at least 1,
    /// every key parsing and carrying its own id, no key twice, every threshold satisfiable
    /// (or nothing could ever install), and the server key, if any, parsing.
    pub fn checked_keys(&self) -> Result<Vec<TrustedKey>, RootError> {
        if self.version != 1 {
            return Err(RootError::Invalid(format!(
                "unsupported format version {}",
                self.version
            )));
        }
        if self.serial == 0 {
            return Err(RootError::Invalid("serial must be at least 1".into()));
        }
        let mut ids = BTreeSet::new();
        let keys = self
            .keys
            .iter()
            .map(|k| {
                let key = PublicKey::from_pem(&k.public_key_pem)
                    .map_err(|e| RootError::Invalid(format!("key `{}`: {e}", k.name)))?;
                if key.key_id() != k.key_id {
                    return Err(RootError::Invalid(format!(
                        "key `{}` does not match its key id",
                        k.name
                    )));
                }
                if !ids.insert(k.key_id.clone()) {
                    return Err(RootError::Invalid(format!(
                        "key `{}` is listed twice",
                        k.name
                    )));
                }
                Ok(TrustedKey {
                    key,
                    name: Some(k.name.clone()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for t in std::iter::once(self.threshold).chain(self.model_thresholds.values().copied()) {
            if t == 0 || t as usize > keys.len() {
                return Err(RootError::Invalid(format!(
                    "threshold {t} is not between 1 and its {} keys",
                    keys.len()
                )));
            }
        }
        if let Some(pem) = &self.server_key_pem {
            PublicKey::from_pem(pem).map_err(|e| RootError::Invalid(format!("server key: {e}")))?;
        }
        Ok(keys)
    }

    /// The server key this root vouches for, if it names one.
    pub fn server_key(&self) -> Option<PublicKey> {
        self.server_key_pem
            .as_deref()
            .and_then(|pem| PublicKey::from_pem(pem).ok())
    }
}

fn malformed(e: strict_json::StrictJsonError) -> RootError {
    RootError::Malformed(match e {
        strict_json::StrictJsonError::DuplicateKey(k) => format!("key `{k}` appears twice"),
        strict_json::StrictJsonError::Syntax(m) => m,
    })
}

impl SignedTrustRoot {
    /// Parses an envelope (bounded, no duplicate keys, no unknown fields). Its payload is not
    /// trusted yet: see [`verify_root_update`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, RootError> {
        if bytes.len() > MAX_SIGNED_ROOT_BYTES {
            return Err(RootError::Malformed(format!(
                "{} bytes is over the {MAX_SIGNED_ROOT_BYTES}-byte limit",
                bytes.len()
            )));
        }
        let value = strict_json::parse(bytes).map_err(malformed)?;
        let env: SignedTrustRoot =
            serde_json::from_value(value).map_err(|e| RootError::Malformed(e.to_string()))?;
        if env.payload_type != TRUST_ROOT_PAYLOAD_TYPE {
            return Err(RootError::WrongPayloadType(env.payload_type));
        }
        Ok(env)
    }

    /// The envelope as JSON bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings and vectors: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    fn payload_bytes(&self) -> Result<Vec<u8>, RootError> {
        B64.decode(self.payload.as_bytes())
            .map_err(|e| RootError::Malformed(format!("payload is not base64: {e}")))
    }

    /// The root inside, **unverified**: for showing what a file proposes and for the server's
    /// own checks, never for trusting it.
    pub fn unverified_root(&self) -> Result<TrustRoot, RootError> {
        let payload = self.payload_bytes()?;
        let value = strict_json::parse(&payload).map_err(malformed)?;
        serde_json::from_value(value).map_err(|e| RootError::Malformed(e.to_string()))
    }

    /// How many distinct `keys` signed this envelope (each counted once, whatever the key ids
    /// written beside the signatures say).
    pub fn signed_by(&self, keys: &[TrustedKey]) -> usize {
        let Ok(payload) = self.payload_bytes() else {
            return 0;
        };
        let message = pae(&self.payload_type, &payload);
        let sigs: Vec<Vec<u8>> = self
            .signatures
            .iter()
            .filter_map(|s| B64.decode(s.sig.as_bytes()).ok())
            .collect();
        keys.iter()
            .filter(|k| sigs.iter().any(|sig| k.key.verify(&message, sig)))
            .count()
    }

    /// Adds `key`'s signature (replacing an earlier one by the same key).
    pub fn sign_with(&mut self, key: &SigningKey) -> Result<(), RootError> {
        let payload = self.payload_bytes()?;
        let keyid = key.public_key().key_id();
        let sig = key.sign(&pae(&self.payload_type, &payload));
        self.signatures.retain(|s| s.keyid != keyid);
        self.signatures.push(RootSignature {
            keyid,
            sig: B64.encode(sig),
        });
        Ok(())
    }
}

/// Wraps `root` in an envelope signed by each of `keys`. The root is checked first.
pub fn sign_trust_root(
    root: &TrustRoot,
    keys: &[&SigningKey],
) -> Result<SignedTrustRoot, RootError> {
    root.checked_keys()?;
    let payload = serde_json::to_vec(root).map_err(|e| RootError::Invalid(e.to_string()))?;
    let mut env = SignedTrustRoot {
        payload_type: TRUST_ROOT_PAYLOAD_TYPE.to_owned(),
        payload: B64.encode(payload),
        signatures: Vec::new(),
    };
    for key in keys {
        env.sign_with(key)?;
    }
    Ok(env)
}

/// The root that follows `current`, if `envelope` is one: the next serial, signed by a
/// threshold of `current`'s keys and of its own. Only signature-checked bytes are parsed as a
/// root.
pub fn verify_root_update(current: &TrustRoot, envelope: &[u8]) -> Result<TrustRoot, RootError> {
    let env = SignedTrustRoot::from_json(envelope)?;
    let current_keys = current.checked_keys()?;
    let needed = current.threshold as usize;
    let signed = env.signed_by(&current_keys);
    if signed < needed {
        return Err(RootError::NotSignedByCurrent { signed, needed });
    }
    let next = env.unverified_root()?;
    if next.serial != current.serial.saturating_add(1) {
        return Err(RootError::NotNext {
            got: next.serial,
            current: current.serial,
        });
    }
    let next_keys = next.checked_keys()?;
    let needed = next.threshold as usize;
    let signed = env.signed_by(&next_keys);
    if signed < needed {
        return Err(RootError::NotSignedByItself { signed, needed });
    }
    Ok(next)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::registry::TrustRootKey;

    fn key(seed: u64) -> SigningKey {
        use rand::{rngs::StdRng, SeedableRng};
        SigningKey::generate(&mut StdRng::seed_from_u64(seed))
    }

    fn root(serial: u64, keys: &[&SigningKey], threshold: u32) -> TrustRoot {
        TrustRoot {
            version: 1,
            serial,
            server_key_pem: None,
            keys: keys
                .iter()
                .enumerate()
                .map(|(i, k)| TrustRootKey {
                    key_id: k.public_key().key_id(),
                    name: format!("k{i}"),
                    public_key_pem: k.public_key().to_pem(),
                })
                .collect(),
            threshold,
            model_thresholds: Default::default(),
            digest_only_models: Default::default(),
        }
    }

    #[test]
    fn a_rotation_needs_the_old_keys_and_the_new_ones() {
        let (a, b, c) = (key(1), key(2), key(3));
        let current = root(1, &[&a, &b], 2);
        let next = root(2, &[&b, &c], 2);
        // All of them: accepted.
        let env = sign_trust_root(&next, &[&a, &b, &c]).unwrap();
        assert_eq!(verify_root_update(&current, &env.to_json()).unwrap(), next);
        // Only the new keys: the old root never agreed.
        let env = sign_trust_root(&next, &[&b, &c]).unwrap();
        assert_eq!(
            verify_root_update(&current, &env.to_json()),
            Err(RootError::NotSignedByCurrent {
                signed: 1,
                needed: 2
            })
        );
        // Only the old keys: nobody showed they hold the new key.
        let env = sign_trust_root(&next, &[&a, &b]).unwrap();
        assert_eq!(
            verify_root_update(&current, &env.to_json()),
            Err(RootError::NotSignedByItself {
                signed: 1,
                needed: 2
            })
        );
    }

    #[test]
    fn one_key_signing_twice_counts_once() {
        let (a, b) = (key(1), key(2));
        let current = root(1, &[&a, &b], 2);
        let next = root(2, &[&a, &b], 2);
        let mut env = sign_trust_root(&next, &[&a]).unwrap();
        let first = env.signatures[0].clone();
        env.signatures.push(RootSignature {
            keyid: b.public_key().key_id(),
            sig: first.sig,
        });
        assert_eq!(
            verify_root_update(&current, &env.to_json())
                .unwrap_err()
                .code(),
            "trust_root_not_signed_by_current"
        );
    }

    #[test]
    fn serials_go_up_by_exactly_one() {
        let a = key(1);
        let current = root(3, &[&a], 1);
        for serial in [1, 3, 5, u64::MAX] {
            let env = sign_trust_root(&root(serial, &[&a], 1), &[&a]).unwrap();
            assert_eq!(
                verify_root_update(&current, &env.to_json()),
                Err(RootError::NotNext {
                    got: serial,
                    current: 3
                }),
                "serial {serial}"
            );
        }
        let env = sign_trust_root(&root(4, &[&a], 1), &[&a]).unwrap();
        assert_eq!(
            verify_root_update(&current, &env.to_json()).unwrap().serial,
            4
        );
    }

    #[test]
    fn tampered_payloads_and_wrong_types_are_refused() {
        let a = key(1);
        let current = root(1, &[&a], 1);
        let mut env = sign_trust_root(&root(2, &[&a], 1), &[&a]).unwrap();
        let mut tampered = root(2, &[&a], 1);
        tampered.digest_only_models.insert("fraud".into());
        env.payload = B64.encode(serde_json::to_vec(&tampered).unwrap());
        assert_eq!(
            verify_root_update(&current, &env.to_json())
                .unwrap_err()
                .code(),
            "trust_root_not_signed_by_current"
        );
        let mut env = sign_trust_root(&root(2, &[&a], 1), &[&a]).unwrap();
        env.payload_type = "application/vnd.flotilla.desired-state.v1+json".into();
        assert_eq!(
            verify_root_update(&current, &env.to_json())
                .unwrap_err()
                .code(),
            "trust_root_malformed"
        );
        let huge = vec![b' '; MAX_SIGNED_ROOT_BYTES + 1];
        assert!(matches!(
            verify_root_update(&current, &huge),
            Err(RootError::Malformed(_))
        ));
    }

    #[test]
    fn unusable_roots_are_refused_even_when_signed() {
        let a = key(1);
        let current = root(1, &[&a], 1);
        // A threshold nobody can meet would lock every device out of updates.
        let mut next = root(2, &[&a], 1);
        next.threshold = 2;
        let payload = serde_json::to_vec(&next).unwrap();
        let mut env = SignedTrustRoot {
            payload_type: TRUST_ROOT_PAYLOAD_TYPE.into(),
            payload: B64.encode(payload),
            signatures: vec![],
        };
        env.sign_with(&a).unwrap();
        assert_eq!(
            verify_root_update(&current, &env.to_json())
                .unwrap_err()
                .code(),
            "trust_root_invalid"
        );
        assert!(sign_trust_root(&next, &[&a]).is_err());
    }
}
