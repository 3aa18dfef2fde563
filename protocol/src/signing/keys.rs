//! Publisher keys: the public keys a trust root lists, and the ed25519 key Flotilla signs with.
//!
//! Public keys travel as SPKI PEM (`-----BEGIN PUBLIC KEY-----`), the form `openssl` and the
//! upstream `model_signing` tool read and write. A key's id is the lowercase hex sha256 of its
//! SPKI DER, computed from the parsed key, so the same key always has the same id whatever
//! encoding quirks the PEM it came from had.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
/// A string or buffer wiped from memory when dropped (private key PEM).
pub use p256::pkcs8::der::zeroize::Zeroizing;

use ed25519_dalek::Verifier as _;
use p256::elliptic_curve::rand_core::CryptoRngCore;
// The RustCrypto `pkcs8` crate (shared by ed25519-dalek, p256 and p384), reached through p256,
// which re-exports all of it.
use p256::pkcs8::spki::DecodePublicKey;
use p256::pkcs8::{DecodePrivateKey, Document, EncodePrivateKey, LineEnding};
use sha2::{Digest, Sha256};

/// SPKI DER header of an ed25519 key (RFC 8410): the 32-byte key follows.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// SPKI DER header of an uncompressed P-256 key (RFC 5480): the 65-byte SEC1 point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// SPKI DER header of an uncompressed P-384 key (RFC 5480): the 97-byte SEC1 point follows.
const P384_SPKI_PREFIX: [u8; 23] = [
    0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
    0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
];

const PUBLIC_KEY_PEM_LABEL: &str = "PUBLIC KEY";

/// Why a key could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The text is not PEM, or not a `PUBLIC KEY` / `PRIVATE KEY` block.
    #[error("not a PEM {expected} block")]
    NotPem {
        /// The PEM label that was expected.
        expected: &'static str,
    },
    /// The public key is not ed25519, ECDSA P-256 or ECDSA P-384, or is malformed.
    #[error("unsupported or malformed public key (expected ed25519, ECDSA P-256 or P-384)")]
    UnsupportedPublicKey,
    /// The ed25519 public key is of small order: no signature under it means anything.
    #[error("weak ed25519 public key")]
    WeakKey,
    /// The private key is not an unencrypted PKCS#8 ed25519 key.
    #[error("not an unencrypted PKCS#8 ed25519 private key")]
    BadPrivateKey,
}

/// The signature algorithm a [`PublicKey`] verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// Ed25519 (RFC 8032), verified with `verify_strict`.
    Ed25519,
    /// ECDSA over P-256 with SHA-256, DER-encoded signatures.
    EcdsaP256,
    /// ECDSA over P-384 with SHA-384, DER-encoded signatures.
    EcdsaP384,
}

impl KeyAlgorithm {
    /// Stable lowercase name, for logs and CLI output.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::EcdsaP384 => "ecdsa-p384",
        }
    }
}

/// A publisher public key that can verify model signatures.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// An ed25519 key (what Flotilla signs with).
    Ed25519(ed25519_dalek::VerifyingKey),
    /// An ECDSA P-256 key (what the upstream `model_signing` tool often signs with).
    EcdsaP256(p256::ecdsa::VerifyingKey),
    /// An ECDSA P-384 key.
    EcdsaP384(p384::ecdsa::VerifyingKey),
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm())
            .field("key_id", &self.key_id())
            .finish()
    }
}

impl PublicKey {
    /// Parses an SPKI PEM public key (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let not_pem = KeyError::NotPem {
            expected: PUBLIC_KEY_PEM_LABEL,
        };
        let (label, der) = Document::from_pem(pem.trim()).map_err(|_| not_pem)?;
        if label != PUBLIC_KEY_PEM_LABEL {
            return Err(KeyError::NotPem {
                expected: PUBLIC_KEY_PEM_LABEL,
            });
        }
        Self::from_der(der.as_bytes())
    }

    /// Parses an SPKI DER public key.
    pub fn from_der(der: &[u8]) -> Result<Self, KeyError> {
        // Each decoder checks the algorithm (and curve) identifier, so at most one accepts.
        if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_der(der) {
            if key.is_weak() {
                return Err(KeyError::WeakKey);
            }
            return Ok(PublicKey::Ed25519(key));
        }
        if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_der(der) {
            return Ok(PublicKey::EcdsaP256(key));
        }
        if let Ok(key) = p384::ecdsa::VerifyingKey::from_public_key_der(der) {
            return Ok(PublicKey::EcdsaP384(key));
        }
        Err(KeyError::UnsupportedPublicKey)
    }

    /// The algorithm this key verifies.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self {
            PublicKey::Ed25519(_) => KeyAlgorithm::Ed25519,
            PublicKey::EcdsaP256(_) => KeyAlgorithm::EcdsaP256,
            PublicKey::EcdsaP384(_) => KeyAlgorithm::EcdsaP384,
        }
    }

    /// The canonical SPKI DER encoding (EC points uncompressed, as `openssl` writes them).
    pub fn to_der(&self) -> Vec<u8> {
        // The SPKI structure of each supported key is a fixed header followed by the raw key,
        // so encoding cannot fail; the crates' own encoders return `Result`s we would have to
        // swallow. A unit test checks these bytes against those encoders.
        let (prefix, key): (&[u8], Vec<u8>) = match self {
            PublicKey::Ed25519(k) => (&ED25519_SPKI_PREFIX, k.as_bytes().to_vec()),
            PublicKey::EcdsaP256(k) => (
                &P256_SPKI_PREFIX,
                k.to_encoded_point(false).as_bytes().to_vec(),
            ),
            PublicKey::EcdsaP384(k) => (
                &P384_SPKI_PREFIX,
                k.to_encoded_point(false).as_bytes().to_vec(),
            ),
        };
        [prefix, key.as_slice()].concat()
    }

    /// The SPKI PEM encoding, LF line endings, 64 columns (byte-identical to what `openssl` and
    /// Python's `cryptography` write).
    pub fn to_pem(&self) -> String {
        let body = STANDARD.encode(self.to_der());
        let mut pem = String::with_capacity(body.len() + 64);
        pem.push_str("-----BEGIN PUBLIC KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// Flotilla's stable key id: lowercase hex sha256 of the SPKI DER.
    pub fn key_id(&self) -> String {
        hex::encode(Sha256::digest(self.to_der()))
    }

    /// The key hint the upstream `model_signing` tool writes into
    /// `verificationMaterial.publicKey.hint`: lowercase hex sha256 of the SPKI **PEM** text.
    pub fn upstream_hint(&self) -> String {
        hex::encode(Sha256::digest(self.to_pem().as_bytes()))
    }

    /// Checks `signature` over `message`. Ed25519 uses `verify_strict` (no malleable or
    /// small-order signatures); ECDSA expects a DER signature over SHA-256 (P-256) or SHA-384
    /// (P-384) of the message, as the upstream tool makes.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            PublicKey::Ed25519(key) => match ed25519_dalek::Signature::from_slice(signature) {
                Ok(sig) => key.verify_strict(message, &sig).is_ok(),
                Err(_) => false,
            },
            PublicKey::EcdsaP256(key) => match p256::ecdsa::DerSignature::from_bytes(signature) {
                Ok(sig) => key.verify(message, &sig).is_ok(),
                Err(_) => false,
            },
            PublicKey::EcdsaP384(key) => match p384::ecdsa::DerSignature::from_bytes(signature) {
                Ok(sig) => key.verify(message, &sig).is_ok(),
                Err(_) => false,
            },
        }
    }
}

/// An ed25519 publisher signing key: the only kind Flotilla signs with.
///
/// `Debug` never shows the secret.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.public_key().key_id())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a fresh key from `rng` (pass `OsRng` in production, a seeded RNG in tests).
    pub fn generate<R: CryptoRngCore + ?Sized>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// Reads an unencrypted PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`), as written by
    /// [`SigningKey::to_pkcs8_pem`] or `openssl genpkey -algorithm ed25519`.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem.trim())
            .map(SigningKey)
            .map_err(|_| KeyError::BadPrivateKey)
    }

    /// Writes the key as unencrypted PKCS#8 PEM (LF line endings). The string is wiped from
    /// memory when dropped.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        self.0
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| KeyError::BadPrivateKey)
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::Ed25519(self.0.verifying_key())
    }

    /// The matching ed25519 verifying key (what device identities are made of).
    pub(crate) fn verifying_key(&self) -> ed25519_dalek::VerifyingKey {
        self.0.verifying_key()
    }

    /// Signs `message` (ed25519 is deterministic: same key and message, same signature).
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer as _;
        self.0.sign(message).to_bytes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use p256::pkcs8::EncodePublicKey;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn seeded_key(seed: u64) -> SigningKey {
        SigningKey::generate(&mut StdRng::seed_from_u64(seed))
    }

    #[test]
    fn fixed_der_headers_match_the_crates_encoders() {
        let ed = seeded_key(1).public_key();
        let PublicKey::Ed25519(inner) = &ed else {
            unreachable!()
        };
        assert_eq!(ed.to_der(), inner.to_public_key_der().unwrap().as_bytes());

        let p256 = p256::ecdsa::SigningKey::random(&mut StdRng::seed_from_u64(2));
        let key = PublicKey::EcdsaP256(*p256.verifying_key());
        assert_eq!(
            key.to_der(),
            p256.verifying_key().to_public_key_der().unwrap().as_bytes()
        );

        let p384 = p384::ecdsa::SigningKey::random(&mut StdRng::seed_from_u64(3));
        let key = PublicKey::EcdsaP384(*p384.verifying_key());
        assert_eq!(
            key.to_der(),
            p384.verifying_key().to_public_key_der().unwrap().as_bytes()
        );
    }

    #[test]
    fn pem_round_trips_and_key_id_is_stable() {
        for key in [
            seeded_key(4).public_key(),
            PublicKey::EcdsaP256(
                *p256::ecdsa::SigningKey::random(&mut StdRng::seed_from_u64(5)).verifying_key(),
            ),
            PublicKey::EcdsaP384(
                *p384::ecdsa::SigningKey::random(&mut StdRng::seed_from_u64(6)).verifying_key(),
            ),
        ] {
            let pem = key.to_pem();
            let back = PublicKey::from_pem(&pem).unwrap();
            assert_eq!(back, key);
            assert_eq!(back.key_id(), key.key_id());
            assert_eq!(back.to_pem(), pem);
            assert_eq!(key.key_id().len(), 64);
            assert_eq!(
                key.key_id(),
                hex::encode(Sha256::digest(key.to_der())),
                "key id is sha256 of the DER"
            );
        }
    }

    #[test]
    fn openssl_written_pems_parse_and_print_back_identically() {
        for (pem, alg) in [
            (
                include_str!("../../testdata/signing/upstream/p256.pub.pem"),
                KeyAlgorithm::EcdsaP256,
            ),
            (
                include_str!("../../testdata/signing/upstream/p384.pub.pem"),
                KeyAlgorithm::EcdsaP384,
            ),
        ] {
            let key = PublicKey::from_pem(pem).unwrap();
            assert_eq!(key.algorithm(), alg);
            assert_eq!(key.to_pem(), pem);
        }
    }

    #[test]
    fn rejects_non_public_key_pem_and_unknown_algorithms() {
        let private = seeded_key(7).to_pkcs8_pem().unwrap();
        assert!(matches!(
            PublicKey::from_pem(&private),
            Err(KeyError::NotPem { .. })
        ));
        assert!(matches!(
            PublicKey::from_pem("hello"),
            Err(KeyError::NotPem { .. })
        ));
        // An X25519 key: valid SPKI, but not a signing algorithm we know.
        let x25519 = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VuAyEAHNnVcCtI6mAT1BdvFxRvtHw29KgqcO8K1Jn6fR7Dv2A=\n-----END PUBLIC KEY-----\n";
        assert!(matches!(
            PublicKey::from_pem(x25519),
            Err(KeyError::UnsupportedPublicKey)
        ));
    }

    #[test]
    fn rejects_weak_ed25519_keys() {
        // The identity point: every "signature" would be forgeable under it.
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        let mut identity = [0u8; 32];
        identity[0] = 1;
        der.extend_from_slice(&identity);
        assert!(matches!(PublicKey::from_der(&der), Err(KeyError::WeakKey)));
    }

    #[test]
    fn signing_key_pkcs8_round_trip_and_seeded_generation_is_deterministic() {
        let key = seeded_key(8);
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        assert_eq!(seeded_key(8).public_key(), key.public_key());
        assert_ne!(seeded_key(9).public_key(), key.public_key());
        assert!(!format!("{key:?}").contains(&hex::encode(key.0.to_bytes())));
        assert!(matches!(
            SigningKey::from_pkcs8_pem(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            ),
            Err(KeyError::BadPrivateKey)
        ));
    }

    #[test]
    fn verify_checks_message_and_key() {
        let key = seeded_key(10);
        let sig = key.sign(b"hello");
        assert!(key.public_key().verify(b"hello", &sig));
        assert!(!key.public_key().verify(b"hellO", &sig));
        assert!(!seeded_key(11).public_key().verify(b"hello", &sig));
        assert!(!key.public_key().verify(b"hello", &sig[..63]));
    }
}
