//! The publisher trust root the agent was provisioned with (`flotilla trust export`), never
//! fetched from the server.

use flotilla_protocol::registry::TrustRoot;
use flotilla_protocol::signing::{PublicKey, TrustPolicy, TrustedKey};
use std::path::Path;

/// Publisher keys and thresholds.
#[derive(Debug, Clone)]
pub struct Trust {
    root: TrustRoot,
    keys: Vec<TrustedKey>,
}

impl Trust {
    /// Reads and checks a trust root file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read trust root {}: {e}", path.display()))?;
        let root: TrustRoot = serde_json::from_slice(&bytes)
            .map_err(|e| anyhow::anyhow!("trust root {} is invalid: {e}", path.display()))?;
        Self::new(root)
    }

    /// Checks a trust root.
    pub fn new(root: TrustRoot) -> anyhow::Result<Self> {
        if root.version != 1 {
            anyhow::bail!("unsupported trust root version {}", root.version);
        }
        let keys = root
            .keys
            .iter()
            .map(|k| {
                let key = PublicKey::from_pem(&k.public_key_pem)
                    .map_err(|e| anyhow::anyhow!("trust root key `{}` is invalid: {e}", k.name))?;
                if key.key_id() != k.key_id {
                    anyhow::bail!("trust root key `{}` does not match its key id", k.name);
                }
                Ok(TrustedKey {
                    key,
                    name: Some(k.name.clone()),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Every threshold must be satisfiable, or the agent could never install anything.
        for t in std::iter::once(root.threshold).chain(root.model_thresholds.values().copied()) {
            if t == 0 || t as usize > keys.len() {
                anyhow::bail!(
                    "trust root threshold {t} is not between 1 and its {} keys",
                    keys.len()
                );
            }
        }
        Ok(Self { root, keys })
    }

    /// Whether `model` may be signed with digest-only bundles (no Flotilla facts).
    pub fn digest_only(&self, model: &str) -> bool {
        self.root.digest_only_models.contains(model)
    }

    /// The policy for `model`.
    pub fn policy(&self, model: &str) -> anyhow::Result<TrustPolicy> {
        let k = self
            .root
            .model_thresholds
            .get(model)
            .copied()
            .unwrap_or(self.root.threshold);
        TrustPolicy::new(self.keys.clone(), k as usize).map_err(|e| anyhow::anyhow!("{e}"))
    }
}
