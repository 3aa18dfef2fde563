//! Keys, signing and verification on the operator's machine, over `flotilla_protocol::signing`.

use std::path::Path;

use flotilla_protocol::names::{parse_version, ModelName};
use flotilla_protocol::signing::{
    sign_model, verify, ArtifactDigest, Bundle, Compatibility, ModelFacts, PublicKey, Resource,
    SigningKey, TrustPolicy, TrustedKey, VerifiedModel,
};

use crate::args::{FactsArgs, SignOptions};
use crate::error::CliError;
use crate::files::{self, FileDigest};

/// Reads a private key file (`flotilla keygen`, or `openssl genpkey -algorithm ed25519`).
pub fn load_signing_key(path: &Path) -> Result<SigningKey, CliError> {
    let pem = files::read_text(path)?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| CliError::Local {
        code: "invalid_key",
        message: format!("{}: {e}", path.display()),
    })
}

/// Reads a public key file (SPKI PEM: ed25519, ECDSA P-256 or P-384).
pub fn load_public_key(path: &Path) -> Result<(PublicKey, String), CliError> {
    let pem = files::read_text(path)?;
    let key = PublicKey::from_pem(&pem).map_err(|e| CliError::Local {
        code: "invalid_key",
        message: format!("{}: {e}", path.display()),
    })?;
    Ok((key, pem))
}

/// Checks a model name by the wire's rule (`flotilla_protocol::names`, the server's own), so
/// nobody signs a name the server will refuse; the message is the server's.
pub fn check_model_name(name: &str) -> Result<(), CliError> {
    ModelName::parse(name)
        .map(drop)
        .map_err(|e| CliError::usage(e.to_string()))
}

/// Checks a version is semantic (`1.2.0`, `2.0.0-rc.1`) as the server takes it.
pub fn check_version(version: &str) -> Result<(), CliError> {
    parse_version(version)
        .map(drop)
        .map_err(|e| CliError::usage(e.to_string()))
}

/// The facts signed for `digest` of the model named in `facts`.
pub fn model_facts(facts: &FactsArgs, options: &SignOptions, digest: &FileDigest) -> ModelFacts {
    ModelFacts {
        model: facts.name.clone(),
        version: facts.version.clone(),
        release: options.release,
        size: Some(digest.size),
        compatibility: (!options.hardware.is_empty()).then(|| Compatibility {
            hardware: options.hardware.clone(),
        }),
        inputs: None,
        outputs: None,
        sample_input: None,
        rollback_allowed_below: None,
    }
}

/// Signs a model file whose digest is `digest`; the bundle names the file as the upstream tool
/// does (its file name as subject, one resource `.`).
pub fn sign(
    key: &SigningKey,
    model: &Path,
    digest: &FileDigest,
    facts: &ModelFacts,
) -> Result<Bundle, CliError> {
    let subject = model
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".to_owned());
    sign_model(
        key,
        &[Resource::single_file(digest.sha256)],
        &subject,
        Some(facts),
    )
    .map_err(|e| CliError::Local {
        code: "signing_failed",
        message: e.to_string(),
    })
}

/// Verifies bundles over a file's digest with `keys` (name, key), `threshold` of them.
pub fn verify_digest(
    bundles: &[Vec<u8>],
    keys: Vec<(String, PublicKey)>,
    threshold: usize,
    digest: &FileDigest,
) -> Result<VerifiedModel, CliError> {
    let trusted = keys
        .into_iter()
        .map(|(name, key)| TrustedKey {
            key,
            name: Some(name),
        })
        .collect();
    let policy =
        TrustPolicy::new(trusted, threshold).map_err(|e| CliError::usage(e.to_string()))?;
    let slices: Vec<&[u8]> = bundles.iter().map(Vec::as_slice).collect();
    Ok(verify(
        &slices,
        &policy,
        &ArtifactDigest {
            sha256: digest.sha256,
            size: Some(digest.size),
        },
    )?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn key(seed: u64) -> SigningKey {
        SigningKey::generate(&mut StdRng::seed_from_u64(seed))
    }

    fn facts() -> FactsArgs {
        FactsArgs {
            name: "fraud".into(),
            version: "1.0.0".into(),
        }
    }

    fn options() -> SignOptions {
        SignOptions {
            release: Some(3),
            hardware: vec!["x86_64".into(), "aarch64".into()],
        }
    }

    fn digest_of(bytes: &[u8]) -> FileDigest {
        files::digest_reader(bytes).unwrap()
    }

    #[test]
    fn a_signed_file_verifies_with_its_facts_and_only_under_its_key() {
        let signer = key(1);
        let digest = digest_of(b"model bytes");
        let facts = model_facts(&facts(), &options(), &digest);
        let bundle = sign(&signer, Path::new("dir/m.onnx"), &digest, &facts).unwrap();
        let bytes = vec![bundle.to_json()];

        let verified =
            verify_digest(&bytes, vec![("ci".into(), signer.public_key())], 1, &digest).unwrap();
        assert_eq!(verified.signers, [signer.public_key().key_id()]);
        let signed = verified.facts.unwrap();
        assert_eq!(signed.model, "fraud");
        assert_eq!(signed.release, Some(3));
        assert_eq!(signed.size, Some(11));
        assert_eq!(
            signed.compatibility.unwrap().hardware,
            ["x86_64", "aarch64"]
        );

        let wrong =
            verify_digest(&bytes, vec![("x".into(), key(2).public_key())], 1, &digest).unwrap_err();
        assert_eq!(
            (wrong.code(), wrong.exit_code()),
            ("no_trusted_signature", 1)
        );

        let other = digest_of(b"other bytes");
        let err =
            verify_digest(&bytes, vec![("ci".into(), signer.public_key())], 1, &other).unwrap_err();
        assert_eq!(err.code(), "artifact_digest_mismatch");

        let err = verify_digest(
            &bytes,
            vec![
                ("ci".into(), signer.public_key()),
                ("x".into(), key(2).public_key()),
            ],
            2,
            &digest,
        )
        .unwrap_err();
        assert_eq!(err.code(), "signature_threshold_not_met");

        // Asking for more signatures than keys is a usage error, not a verification failure.
        let err = verify_digest(&bytes, vec![("ci".into(), signer.public_key())], 2, &digest)
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn no_hardware_means_no_compatibility_constraint() {
        let digest = digest_of(b"m");
        let f = model_facts(
            &facts(),
            &SignOptions {
                release: None,
                hardware: vec![],
            },
            &digest,
        );
        assert_eq!(f.compatibility, None);
        assert_eq!(f.release, None);
    }

    #[test]
    fn names_and_versions_are_checked_before_signing() {
        for good in ["fraud", "a", "0-x_y.z", &"a".repeat(64)] {
            check_model_name(good).unwrap();
        }
        for bad in [
            "",
            "Fraud",
            "-x",
            ".x",
            "a..b",
            "a/b",
            "a b",
            &"a".repeat(65),
        ] {
            assert_eq!(check_model_name(bad).unwrap_err().exit_code(), 2, "{bad}");
        }
        check_version("1.2.0").unwrap();
        check_version("2.0.0-rc.1").unwrap();
        assert_eq!(check_version("1.2").unwrap_err().code(), "usage");
    }

    #[test]
    fn key_files_round_trip_and_bad_ones_are_invalid_key() {
        let dir = tempfile::tempdir().unwrap();
        let k = key(3);
        let private = dir.path().join("k.key");
        let public = dir.path().join("k.pub");
        std::fs::write(&private, k.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
        std::fs::write(&public, k.public_key().to_pem()).unwrap();
        assert_eq!(
            load_signing_key(&private).unwrap().public_key(),
            k.public_key()
        );
        assert_eq!(load_public_key(&public).unwrap().0, k.public_key());
        // Swapped files.
        assert_eq!(load_signing_key(&public).unwrap_err().code(), "invalid_key");
        assert_eq!(load_public_key(&private).unwrap_err().code(), "invalid_key");
    }
}
