//! Commands that work offline: `keygen`, `sign`, `verify`.

use std::path::{Path, PathBuf};

use flotilla_protocol::signing::{Bundle, ModelFacts, SigningKey};
use rand::rngs::OsRng;
use serde_json::json;

use super::{emit, Context};
use crate::args::{FactsArgs, KeygenArgs, SignArgs, SignOptions, VerifyArgs};
use crate::client::pretty;
use crate::error::CliError;
use crate::files::{self, FileDigest, Mode};
use crate::signing;

/// `flotilla keygen --out NAME`.
pub fn keygen(ctx: &Context, args: &KeygenArgs) -> Result<(), CliError> {
    // `--out ci.key` means the pair ci.key / ci.pub, not ci.key.key.
    let stem = match args.out.extension().and_then(|e| e.to_str()) {
        Some("key" | "pub") => args.out.with_extension(""),
        _ => args.out.clone(),
    };
    let private_path = files::with_suffix(&stem, ".key");
    let public_path = files::with_suffix(&stem, ".pub");
    if !args.force {
        // Checked up front so that neither file is written when one of them exists.
        for path in [&private_path, &public_path] {
            if path.exists() {
                return Err(CliError::usage(format!(
                    "{} already exists; pass --force to replace it",
                    path.display()
                )));
            }
        }
    }
    let key = SigningKey::generate(&mut OsRng);
    let private_pem = key.to_pkcs8_pem().map_err(|e| CliError::Local {
        code: "invalid_key",
        message: e.to_string(),
    })?;
    let public = key.public_key();
    files::write_atomically(
        &private_path,
        private_pem.as_bytes(),
        Mode::Private,
        args.force,
    )?;
    files::write_atomically(
        &public_path,
        public.to_pem().as_bytes(),
        Mode::Public,
        args.force,
    )?;
    if ctx.json {
        emit(pretty(&json!({
            "key_id": public.key_id(),
            "algorithm": public.algorithm().as_str(),
            "private_key": private_path,
            "public_key": public_path,
        })));
    } else {
        emit(format!(
            "wrote {} (private: keep it secret) and {}\nkey id: {}",
            private_path.display(),
            public_path.display(),
            public.key_id()
        ));
    }
    Ok(())
}

/// sha256 and size of a model file, read as a stream with a progress bar.
pub(super) fn digest_model(ctx: &Context, model: &Path) -> Result<FileDigest, CliError> {
    let file = files::open(model)?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = ctx.progress(len, "hashing");
    let digest =
        files::digest_reader(bar.wrap_read(file)).map_err(|e| CliError::io(model.display(), e))?;
    bar.finish_and_clear();
    Ok(digest)
}

/// A signature over a model file and what it says.
pub(super) struct Signed {
    pub bundle: Bundle,
    pub facts: ModelFacts,
    pub key_id: String,
}

/// Signs a model whose digest is known.
pub(super) fn sign_digest(
    key: &SigningKey,
    model: &Path,
    digest: &FileDigest,
    facts: &FactsArgs,
    options: &SignOptions,
) -> Result<Signed, CliError> {
    let facts = signing::model_facts(facts, options, digest);
    let bundle = signing::sign(key, model, digest, &facts)?;
    Ok(Signed {
        bundle,
        facts,
        key_id: key.public_key().key_id(),
    })
}

/// Checks the model name and version before any work is done.
pub(super) fn check_facts(facts: &FactsArgs) -> Result<(), CliError> {
    signing::check_model_name(&facts.name)?;
    signing::check_version(&facts.version)
}

/// `flotilla sign MODEL --key NAME.key --name N --version V`.
pub fn sign(ctx: &Context, args: &SignArgs) -> Result<(), CliError> {
    check_facts(&args.facts)?;
    // Read the key before hashing a possibly large model.
    let key = signing::load_signing_key(&args.key)?;
    let digest = digest_model(ctx, &args.model)?;
    let signed = sign_digest(&key, &args.model, &digest, &args.facts, &args.options)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| files::with_suffix(&args.model, ".sig"));
    // Re-signing replaces the old signature: it is public and can be made again.
    files::write_atomically(&out, &signed.bundle.to_json(), Mode::Public, true)?;
    if ctx.json {
        emit(pretty(&json!({
            "signature": out,
            "key_id": signed.key_id,
            "sha256": digest.hex(),
            "size": digest.size,
            "facts": signed.facts,
        })));
    } else {
        emit(format!(
            "signed {} {} (sha256:{}, {} bytes) with key {}\nwrote {}",
            signed.facts.model,
            signed.facts.version,
            digest.hex(),
            digest.size,
            signed.key_id,
            out.display()
        ));
    }
    Ok(())
}

/// `flotilla verify MODEL --sig FILE... --pub KEY.pub... [--threshold K]`.
pub fn verify(ctx: &Context, args: &VerifyArgs) -> Result<(), CliError> {
    let mut keys = Vec::new();
    for path in &args.public_keys {
        let (key, _) = signing::load_public_key(path)?;
        keys.push((key_label(path), key));
    }
    let names: Vec<(String, String)> = keys
        .iter()
        .map(|(name, key)| (key.key_id(), name.clone()))
        .collect();
    let bundles = args
        .sigs
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| CliError::io(p.display(), e)))
        .collect::<Result<Vec<_>, _>>()?;
    let digest = digest_model(ctx, &args.model)?;
    let verified = signing::verify_digest(&bundles, keys, args.threshold, &digest)?;
    let signers: Vec<(String, String)> = verified
        .signers
        .iter()
        .map(|id| {
            let name = names
                .iter()
                .find(|(key_id, _)| key_id == id)
                .map(|(_, n)| n.clone())
                .unwrap_or_default();
            (id.clone(), name)
        })
        .collect();
    if ctx.json {
        emit(pretty(&json!({
            "verified": true,
            "sha256": digest.hex(),
            "size": digest.size,
            "signers": signers
                .iter()
                .map(|(key_id, name)| json!({"key_id": key_id, "name": name}))
                .collect::<Vec<_>>(),
            "facts": verified.facts,
        })));
        return Ok(());
    }
    let mut lines = vec![format!(
        "verified {} (sha256:{}, {} bytes): {} of {} required signatures",
        args.model.display(),
        digest.hex(),
        digest.size,
        signers.len(),
        args.threshold
    )];
    for (key_id, name) in &signers {
        lines.push(format!("  signed by {name} ({key_id})"));
    }
    match &verified.facts {
        Some(facts) => lines.push(format!("  facts:    {}", describe_facts(facts))),
        None => lines.push("  facts:    none (signed by another tool)".to_owned()),
    }
    emit(lines.join("\n"));
    Ok(())
}

/// A key's name in `verify` output: its file name without `.pub`.
fn key_label(path: &Path) -> String {
    let name = PathBuf::from(path.file_name().unwrap_or_default());
    match name.extension().and_then(|e| e.to_str()) {
        Some("pub" | "pem") => name.with_extension(""),
        _ => name,
    }
    .to_string_lossy()
    .into_owned()
}

/// `model fraud, version 1.0.0, release 3, 1101 bytes, hardware x86_64,aarch64`.
fn describe_facts(facts: &ModelFacts) -> String {
    let mut parts = vec![
        format!("model {}", facts.model),
        format!("version {}", facts.version),
    ];
    if let Some(release) = facts.release {
        parts.push(format!("release {release}"));
    }
    if let Some(size) = facts.size {
        parts.push(format!("{size} bytes"));
    }
    if let Some(compat) = &facts.compatibility {
        parts.push(format!("hardware {}", compat.hardware.join(",")));
    }
    if let Some(below) = facts.rollback_allowed_below {
        parts.push(format!("rollback allowed below release {below}"));
    }
    parts.join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::args::Connection;

    fn ctx() -> Context {
        Context::new(
            false,
            true,
            Connection {
                url: None,
                token: None,
                config: None,
            },
        )
    }

    fn facts() -> FactsArgs {
        FactsArgs {
            name: "fraud".into(),
            version: "1.0.0".into(),
        }
    }

    fn options() -> SignOptions {
        SignOptions {
            release: Some(2),
            hardware: vec![],
        }
    }

    #[test]
    fn keygen_writes_a_usable_pair_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("ci");
        let args = KeygenArgs {
            out: out.clone(),
            force: false,
        };
        keygen(&ctx(), &args).unwrap();
        let key = signing::load_signing_key(&dir.path().join("ci.key")).unwrap();
        let (public, _) = signing::load_public_key(&dir.path().join("ci.pub")).unwrap();
        assert_eq!(key.public_key(), public);

        let err = keygen(&ctx(), &args).unwrap_err();
        assert_eq!((err.code(), err.exit_code()), ("usage", 2));
        assert_eq!(
            signing::load_signing_key(&dir.path().join("ci.key"))
                .unwrap()
                .public_key(),
            public,
            "the old key is untouched"
        );

        // Only the .pub exists: still refused, and no .key is written.
        std::fs::remove_file(dir.path().join("ci.key")).unwrap();
        assert!(keygen(&ctx(), &args).is_err());
        assert!(!dir.path().join("ci.key").exists());

        keygen(
            &ctx(),
            &KeygenArgs {
                out: dir.path().join("ci.key"),
                force: true,
            },
        )
        .unwrap();
        let (replaced, _) = signing::load_public_key(&dir.path().join("ci.pub")).unwrap();
        assert_ne!(replaced, public);
        assert!(!dir.path().join("ci.key.key").exists());
    }

    #[test]
    fn sign_writes_model_sig_that_verify_accepts() {
        let dir = tempfile::tempdir().unwrap();
        keygen(
            &ctx(),
            &KeygenArgs {
                out: dir.path().join("ci"),
                force: false,
            },
        )
        .unwrap();
        let model = dir.path().join("m.onnx");
        std::fs::write(&model, b"not really onnx").unwrap();
        sign(
            &ctx(),
            &SignArgs {
                model: model.clone(),
                key: dir.path().join("ci.key"),
                facts: facts(),
                options: options(),
                out: None,
            },
        )
        .unwrap();
        let sig = dir.path().join("m.onnx.sig");
        let verify_args = |pubs: Vec<PathBuf>| VerifyArgs {
            model: model.clone(),
            sigs: vec![sig.clone()],
            public_keys: pubs,
            threshold: 1,
        };
        verify(&ctx(), &verify_args(vec![dir.path().join("ci.pub")])).unwrap();

        keygen(
            &ctx(),
            &KeygenArgs {
                out: dir.path().join("other"),
                force: false,
            },
        )
        .unwrap();
        let err = verify(&ctx(), &verify_args(vec![dir.path().join("other.pub")])).unwrap_err();
        assert_eq!((err.code(), err.exit_code()), ("no_trusted_signature", 1));

        std::fs::write(&model, b"tampered").unwrap();
        let err = verify(&ctx(), &verify_args(vec![dir.path().join("ci.pub")])).unwrap_err();
        assert_eq!(err.code(), "artifact_digest_mismatch");
    }

    #[test]
    fn sign_refuses_bad_names_before_reading_anything() {
        let err = sign(
            &ctx(),
            &SignArgs {
                model: "missing.onnx".into(),
                key: "missing.key".into(),
                facts: FactsArgs {
                    name: "Fraud".into(),
                    version: "1.0.0".into(),
                },
                options: options(),
                out: None,
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("not a valid model name"), "{err}");
    }

    #[test]
    fn labels_and_fact_descriptions_read_well() {
        assert_eq!(key_label(Path::new("keys/ml-team.pub")), "ml-team");
        assert_eq!(key_label(Path::new("k.pem")), "k");
        assert_eq!(key_label(Path::new("k")), "k");
        let facts = ModelFacts {
            model: "fraud".into(),
            version: "1.0.0".into(),
            release: Some(3),
            size: Some(1101),
            compatibility: Some(flotilla_protocol::signing::Compatibility {
                hardware: vec!["x86_64".into()],
            }),
            inputs: None,
            outputs: None,
            sample_input: None,
            rollback_allowed_below: None,
        };
        assert_eq!(
            describe_facts(&facts),
            "model fraud, version 1.0.0, release 3, 1101 bytes, hardware x86_64"
        );
    }
}
