//! `flotilla keys ...` and `flotilla trust ...`: who may sign, and how many must.

use flotilla_protocol::registry::{
    PublisherKeyInfo, RegisterKeyRequest, SetThresholdRequest, TrustRoot,
};
use flotilla_protocol::signing::PublicKey;

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
    }
    Ok(())
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
            threshold: 1,
            model_thresholds: Default::default(),
            digest_only_models: Default::default(),
        };
        check_trust_root(&root(a.key_id())).unwrap();
        let err = check_trust_root(&root(b.key_id())).unwrap_err();
        assert_eq!((err.code(), err.exit_code()), ("bad_response", 3));
    }
}
