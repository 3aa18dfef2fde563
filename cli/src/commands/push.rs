//! `flotilla push`: sign (optionally), upload and publish a model version.
//!
//! The steps are each safe to repeat, so a push that failed half-way is simply run again: the
//! model is created unless it exists, the artifact is uploaded unless the server already has
//! those bytes, and publishing the same version with the same artifact again is a no-op.

use flotilla_protocol::registry::{ArtifactRef, CreateModelRequest, CreateVersionRequest};
use reqwest::blocking::Body;

use super::local::{check_facts, digest_model, sign_digest};
use super::{emit, Context};
use crate::args::PushArgs;
use crate::client::{pretty, Client};
use crate::error::CliError;
use crate::files::{self, FileDigest, Mode};
use crate::output::version_details;
use crate::signing;

/// `flotilla push MODEL --name N --version V (--key NAME.key | --sig FILE...)`.
pub fn push(ctx: &Context, args: &PushArgs) -> Result<(), CliError> {
    check_facts(&args.facts)?;
    if args.key.is_none() && (args.options.release.is_some() || !args.options.hardware.is_empty()) {
        return Err(CliError::usage(
            "--release and --hardware are signed facts: they need --key (with --sig, the \
             signature already says what it says)",
        ));
    }
    // Everything that can fail locally fails before the model is hashed or uploaded.
    let client = ctx.client()?;
    let key = args
        .key
        .as_deref()
        .map(signing::load_signing_key)
        .transpose()?;
    let mut bundles = Vec::new();
    for path in &args.sigs {
        bundles.push(files::read_text(path)?);
    }

    let digest = digest_model(ctx, &args.model)?;
    let mut new_signature = None;
    if let Some(key) = &key {
        let signed = sign_digest(key, &args.model, &digest, &args.facts, &args.options)?;
        let text = String::from_utf8_lossy(&signed.bundle.to_json()).into_owned();
        bundles.push(text.clone());
        new_signature = Some(text);
    }

    let name = &args.facts.name;
    let created = client.ensure_model(&CreateModelRequest {
        name: name.clone(),
        description: String::new(),
        labels: Default::default(),
        signing_threshold: None,
    })?;
    if created {
        ctx.note(format!("created model {name}"));
    }

    upload(ctx, &client, args, &digest)?;

    let request = CreateVersionRequest {
        version: args.facts.version.clone(),
        artifact: ArtifactRef {
            sha256: digest.hex(),
            size: digest.size,
        },
        bundles,
    };
    // The server answers 200 with the existing version when this exact version and artifact
    // were published before, so a repeated push succeeds.
    let published = client.create_version(name, &request)?;
    // Kept only once published, so a refused push does not replace a good signature.
    if let (Some(text), false) = (new_signature, args.no_save_sig) {
        let path = files::with_suffix(&args.model, ".sig");
        files::write_atomically(&path, text.as_bytes(), Mode::Public, true)?;
        ctx.note(format!("wrote signature {}", path.display()));
    }
    if ctx.json {
        emit(pretty(&published.json));
    } else {
        emit(format!("published {}", version_details(&published.value)));
    }
    Ok(())
}

/// Uploads the model unless the server already stores its bytes.
fn upload(
    ctx: &Context,
    client: &Client,
    args: &PushArgs,
    digest: &FileDigest,
) -> Result<(), CliError> {
    let hex = digest.hex();
    if client.artifact_exists(&hex)? {
        ctx.note(format!(
            "artifact sha256:{hex} is already stored; not uploading"
        ));
        return Ok(());
    }
    let file = files::open(&args.model)?;
    let bar = ctx.progress(digest.size, "uploading");
    // Streamed: the file is never held in memory. Should it change after hashing, the
    // server refuses the bytes because they no longer match the address.
    let body = Body::sized(bar.wrap_read(file), digest.size);
    let stored = client.upload_artifact(&hex, body);
    bar.finish_and_clear();
    let stored = stored?;
    let expected = ArtifactRef {
        sha256: hex,
        size: digest.size,
    };
    if stored.value.artifact != expected {
        return Err(CliError::BadResponse(format!(
            "the server stored sha256:{} ({} bytes), not sha256:{} ({} bytes)",
            stored.value.artifact.sha256,
            stored.value.artifact.size,
            expected.sha256,
            expected.size
        )));
    }
    ctx.note(format!(
        "uploaded {} ({} bytes)",
        args.model.display(),
        digest.size
    ));
    Ok(())
}
