//! `flotilla keys ...` and `flotilla trust ...`: who may sign, and how many must.

use flotilla_protocol::registry::{
    PublisherKeyInfo, RegisterKeyRequest, SetThresholdRequest, TrustRoot,
};
use flotilla_protocol::signing::{
    sign_trust_root, PublicKey, RootError, SignedTrustRoot, SigningKey,
};

use super::{emit, Context};
use crate::args::{KeysCommand, TrustCommand};
use crate::client::pretty;
use crate::error::CliError;
use crate::files::{self, Mode};
use crate::output::{short_time, short_time_or_dash, Table};
use crate::signing;

/// Runs a `keys` subcommand.
pub fn keys(ctx: &Context, command: KeysCommand) -> Result<(), CliError> {
    match command {
        KeysCommand::Add { public_key, name } => {
            // Parsed here first, so a wrong file (a private key, say) never leaves the machine.
            let (key, pem) = signing::load_public_key(&public_key)?;
            let client = ctx.client()?;
            let registered = client.register_key(&RegisterKeyRequest {
                name,
                public_key_pem: pem,
            })?;
            if registered.value.key_id != key.key_id() {
                return Err(CliError::BadResponse(format!(
                    "the server registered key id {} for a key whose id is {}",
                    registered.value.key_id,
                    key.key_id()
                )));
            }
            if ctx.json {
                emit(pretty(&registered.json));
            } else {
                let k = &registered.value;
                emit(format!(
                    "registered key {} ({}, {})",
                    k.key_id, k.name, k.algorithm
                ));
            }
        }
        KeysCommand::Ls => {
            let list = ctx.client()?.list_keys()?;
            if ctx.json {
                emit(pretty(&list.json));
            } else if list.value.keys.is_empty() {
                emit("no publisher keys");
            } else {
                emit(keys_table(&list.value.keys));
            }
        }
        KeysCommand::Revoke { key_id } => {
            let revoked = ctx.client()?.revoke_key(&key_id)?;
            if ctx.json {
                emit(pretty(&revoked.json));
            } else {
                let k = &revoked.value;
                emit(format!("revoked key {} ({})", k.key_id, k.name));
            }
        }
    }
    Ok(())
}

fn keys_table(keys: &[PublisherKeyInfo]) -> String {
    let mut table = Table::new(["KEY ID", "NAME", "ALGORITHM", "CREATED", "REVOKED"]);
    for k in keys {
        table.row(vec![
            k.key_id.clone(),
            k.name.clone(),
            k.algorithm.clone(),
            short_time(&k.created_at),
            short_time_or_dash(k.revoked_at.as_deref()),
        ]);
    }
    table.render()
}

/// Runs a `trust` subcommand.
pub fn trust(ctx: &Context, command: TrustCommand) -> Result<(), CliError> {
    let client = ctx.client()?;
    match command {
        TrustCommand::Threshold { threshold } => {
            let answer = client.set_threshold(&SetThresholdRequest { threshold })?;
            if ctx.json {
                emit(pretty(&answer.json));
            } else {
                let keys = answer.value.keys.len();
                emit(format!(
                    "signing threshold set to {} ({keys} active key{})",
                    answer.value.threshold,
                    if keys == 1 { "" } else { "s" }
                ));
            }
        }
        TrustCommand::Export {
            out,
            force,
            digest_only,
        } => {
            let mut root = client.trust_root()?;
            check_trust_root(&root.value)?;
            for model in digest_only {
                crate::signing::check_model_name(&model)?;
                root.value.digest_only_models.insert(model);
            }
            let json = serde_json::to_value(&root.value)
                .map_err(|e| CliError::BadResponse(e.to_string()))?;
            let text = format!("{}\n", pretty(&json));
            match out {
                None => emit(text),
                Some(path) => {
                    files::write_atomically(&path, text.as_bytes(), Mode::Public, force)?;
                    ctx.note(format!(
                        "wrote the trust root ({} keys, threshold {}) to {}",
                        root.value.keys.len(),
                        root.value.threshold,
                        path.display()
                    ));
                }
            }
        }
        TrustCommand::Rotate {
            keys,
            server_key,
            digest_only,
            current: provisioned,
            out,
            force,
        } => {
            // Keys first: a wrong path fails before anything is asked of the server.
            let signers = keys
                .iter()
                .map(|p| signing::load_signing_key(p))
                .collect::<Result<Vec<_>, _>>()?;
            // What the agents have: the root given with --current, else the server's export.
            let current = match &provisioned {
                Some(path) => read_root(path)?,
                None => client.trust_root()?.value,
            };
            let mut draft = client.trust_root_draft()?.value;
            if let Some(path) = server_key {
                let (_, pem) = signing::load_public_key(&path)?;
                draft.server_key_pem = Some(pem);
            }
            for model in digest_only {
                if !flotilla_protocol::agent::is_valid_model_name(&model) {
                    return Err(CliError::usage(format!("`{model}` is not a model name")));
                }
                draft.digest_only_models.insert(model);
            }
            let refs: Vec<&SigningKey> = signers.iter().collect();
            let signed = sign_trust_root(&draft, &refs).map_err(root_error)?;
            ctx.note(describe_rotation(&current, &draft, &signed));
            match out {
                Some(path) => {
                    let text = format!("{}\n", pretty(&signed));
                    files::write_atomically(&path, text.as_bytes(), Mode::Public, force)?;
                    ctx.note(format!(
                        "wrote trust root {} to {}; add signatures with `flotilla trust sign-root`, then `flotilla trust publish-root`",
                        draft.serial,
                        path.display()
                    ));
                }
                None => {
                    // Published only when the agents will take it; a file may still await
                    // other signers.
                    if let Some(path) = &provisioned {
                        check_against(path, &signed)?;
                    }
                    publish(ctx, &client, &signed)?
                }
            }
        }
        TrustCommand::SignRoot { file, keys } => {
            let mut signed = read_signed_root(&file)?;
            for path in &keys {
                let key = signing::load_signing_key(path)?;
                signed.sign_with(&key).map_err(root_error)?;
            }
            let text = format!("{}\n", pretty(&signed));
            files::write_atomically(&file, text.as_bytes(), Mode::Public, true)?;
            ctx.note(format!(
                "{} now carries {} signature{}",
                file.display(),
                signed.signatures.len(),
                if signed.signatures.len() == 1 {
                    ""
                } else {
                    "s"
                }
            ));
        }
        TrustCommand::PublishRoot { file, current } => {
            let signed = read_signed_root(&file)?;
            if let Some(path) = &current {
                check_against(path, &signed)?;
            }
            publish(ctx, &client, &signed)?;
        }
        TrustCommand::Roots => {
            let chain = client.trust_roots()?;
            if ctx.json {
                emit(pretty(&chain.json));
            } else {
                let mut table = Table::new(["SERIAL", "KEYS", "THRESHOLD", "SERVER KEY"]);
                for env in &chain.value.roots {
                    let root = env.unverified_root().map_err(root_error)?;
                    table.row(vec![
                        root.serial.to_string(),
                        root.keys
                            .iter()
                            .map(|k| k.name.as_str())
                            .collect::<Vec<_>>()
                            .join(","),
                        root.threshold.to_string(),
                        root.server_key()
                            .map_or_else(|| "-".to_owned(), |k| k.key_id()[..16].to_owned()),
                    ]);
                }
                emit(table.render());
            }
        }
    }
    Ok(())
}

fn root_error(e: RootError) -> CliError {
    CliError::Root(e)
}

/// Checks `signed` as an agent holding the root in `path` will.
fn check_against(path: &std::path::Path, signed: &SignedTrustRoot) -> Result<(), CliError> {
    let current = read_root(path)?;
    flotilla_protocol::signing::verify_root_update(&current, &signed.to_json())
        .map(|_| ())
        .map_err(root_error)
}

/// A trust root file (`flotilla trust export`).
fn read_root(path: &std::path::Path) -> Result<TrustRoot, CliError> {
    let text = files::read_text(path)?;
    serde_json::from_str(&text).map_err(|e| CliError::Local {
        code: "trust_root_malformed",
        message: format!("{}: {e}", path.display()),
    })
}

fn read_signed_root(path: &std::path::Path) -> Result<SignedTrustRoot, CliError> {
    let text = files::read_text(path)?;
    SignedTrustRoot::from_json(text.as_bytes()).map_err(root_error)
}

fn publish(
    ctx: &Context,
    client: &crate::client::Client,
    signed: &SignedTrustRoot,
) -> Result<(), CliError> {
    let answer = client.publish_trust_root(signed)?;
    if ctx.json {
        emit(pretty(&answer.json));
    } else {
        emit(format!(
            "published trust root {}: agents move to it on their next poll",
            answer.value.serial
        ));
    }
    Ok(())
}

/// What a rotation changes, for whoever signs it to read.
fn describe_rotation(current: &TrustRoot, next: &TrustRoot, signed: &SignedTrustRoot) -> String {
    let names = |r: &TrustRoot| -> std::collections::BTreeMap<String, String> {
        r.keys
            .iter()
            .map(|k| (k.key_id.clone(), k.name.clone()))
            .collect()
    };
    let (old, new) = (names(current), names(next));
    let added: Vec<&str> = new
        .iter()
        .filter(|(id, _)| !old.contains_key(*id))
        .map(|(_, n)| n.as_str())
        .collect();
    let removed: Vec<&str> = old
        .iter()
        .filter(|(id, _)| !new.contains_key(*id))
        .map(|(_, n)| n.as_str())
        .collect();
    let list = |v: &[&str]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    let server = match (current.server_key(), next.server_key()) {
        (Some(a), Some(b)) if a.key_id() == b.key_id() => "unchanged".to_owned(),
        (Some(_), Some(b)) => format!("{} (new: agents start a new sequence with it)", &b.key_id()[..16]),
        (None, Some(b)) => format!(
            "{} (agents that pinned another key at enrollment switch to it and start a new sequence)",
            &b.key_id()[..16]
        ),
        (_, None) => "the one pinned at enrollment".to_owned(),
    };
    format!(
        "trust root {} -> {}: keys added {}, removed {}; threshold {} -> {}; server key {}; {} signature{}",
        current.serial,
        next.serial,
        list(&added),
        list(&removed),
        current.threshold,
        next.threshold,
        server,
        signed.signatures.len(),
        if signed.signatures.len() == 1 { "" } else { "s" }
    )
}

/// The trust root is what agents will trust: every key must parse and carry its own id.
fn check_trust_root(root: &TrustRoot) -> Result<(), CliError> {
    for entry in &root.keys {
        let key = PublicKey::from_pem(&entry.public_key_pem)
            .map_err(|e| CliError::BadResponse(format!("trust root key {}: {e}", entry.key_id)))?;
        if key.key_id() != entry.key_id {
            return Err(CliError::BadResponse(format!(
                "trust root lists key id {} for a key whose id is {}",
                entry.key_id,
                key.key_id()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use flotilla_protocol::registry::TrustRootKey;
    use flotilla_protocol::signing::SigningKey;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn trust_roots_with_mislabelled_keys_are_refused() {
        let a = SigningKey::generate(&mut StdRng::seed_from_u64(1)).public_key();
        let b = SigningKey::generate(&mut StdRng::seed_from_u64(2)).public_key();
        let root = |id: String| TrustRoot {
            version: 1,
            keys: vec![TrustRootKey {
                key_id: id,
                name: "ci".into(),
                public_key_pem: a.to_pem(),
            }],
            serial: 1,
            server_key_pem: None,
            threshold: 1,
            model_thresholds: Default::default(),
            digest_only_models: Default::default(),
        };
        check_trust_root(&root(a.key_id())).unwrap();
        let err = check_trust_root(&root(b.key_id())).unwrap_err();
        assert_eq!((err.code(), err.exit_code()), ("bad_response", 3));
    }
}
