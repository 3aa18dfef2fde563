//! The publisher trust root the agent was provisioned with (`flotilla trust export`), and the
//! rotated roots it has accepted since: each one signed by a threshold of the keys of the root
//! before it and of its own (TUF's root chain, [`verify_root_update`]). The server only carries
//! rotated roots; it cannot make one.

use flotilla_protocol::registry::TrustRoot;
use flotilla_protocol::signing::{
    verify_root_update, PublicKey, RootError, SignedTrustRoot, TrustPolicy, TrustedKey,
};
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
        let keys = root
            .checked_keys()
            .map_err(|e| anyhow::anyhow!("trust root: {e}"))?;
        Ok(Self { root, keys })
    }

    /// Which root of the chain this is.
    pub fn serial(&self) -> u64 {
        self.root.serial
    }

    /// The server key the root vouches for, if it names one.
    pub fn server_key(&self) -> Option<PublicKey> {
        self.root.server_key()
    }

    /// Takes `envelope` along the chain: `Ok(false)` for a root this one is already past (by
    /// its claimed serial), `Ok(true)` when it is the next root and checks out (see
    /// [`verify_root_update`]); nothing changes when it is refused.
    pub fn accept(&mut self, envelope: &SignedTrustRoot) -> Result<bool, RootError> {
        let claimed = envelope.unverified_root().map(|r| r.serial);
        if claimed.is_ok_and(|s| s <= self.root.serial) {
            return Ok(false);
        }
        let next = verify_root_update(&self.root, &envelope.to_json())?;
        self.keys = next.checked_keys()?;
        self.root = next;
        Ok(true)
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
