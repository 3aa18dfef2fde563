//! The agent's state directory. Every file is written atomically (temp file, fsync, rename,
//! fsync of the directory), so a kill at any point leaves either the old or the new version of
//! each file, never a torn one.
//!
//! ```text
//! <state-dir>/
//!   identity.json      device id, credential, pinned server key   (0600)
//!   device.key         the device's ed25519 key, PKCS#8 PEM        (0600)
//!   state.json         accepted sequence, installed, previous and shadow models, failures
//!   models/<sha256>    verified model files, content-addressed
//!   partial/<sha256>   downloads in progress (resumed with Range)
//!   reports/<seq>.json reports not yet delivered, sent in order
//! ```

use flotilla_protocol::agent::EscalationPolicy;
use flotilla_protocol::signing::SampleTensor;
use flotilla_protocol::signing::SignedTrustRoot;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The device's identity after enrollment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Device id.
    pub device_id: String,
    /// API credential (`fld_...`).
    pub credential: String,
    /// The server's desired-state key (SPKI PEM): configured, or pinned at enrollment.
    pub server_public_key_pem: String,
    /// When the credential was issued, Unix seconds on the device's clock (absent in
    /// identities written before credentials rotated: their age is unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_issued_at: Option<u64>,
}

/// A model installed on the device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Installed {
    /// Version.
    pub version: String,
    /// sha256 of the file (its name under `models/`).
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Publisher-signed release counter, if any.
    #[serde(default)]
    pub release: Option<u64>,
    /// The publisher-signed smoke-test input, run again whenever the model is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_input: Option<Vec<SampleTensor>>,
    /// The hybrid-inference policy of the last accepted desired state (restored offline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<EscalationPolicy>,
}

/// A rollout's shadow candidate on the device: verified like an installed model, run beside
/// it, never served.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InstalledShadow {
    /// Candidate version.
    pub version: String,
    /// sha256 of the file (its name under `models/`).
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// The publisher-signed smoke-test input, run again whenever the candidate is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_input: Option<Vec<SampleTensor>>,
    /// Share of requests also run on the candidate.
    pub sample_rate: f64,
    /// Largest difference between values that still counts as the same answer.
    pub tolerance: f64,
}

impl Eq for InstalledShadow {}

impl InstalledShadow {
    /// The facts the smoke test and the file check need, in the form of an installed model.
    pub fn as_installed(&self) -> Installed {
        Installed {
            version: self.version.clone(),
            sha256: self.sha256.clone(),
            size: self.size,
            release: None,
            sample_input: self.sample_input.clone(),
            escalation: None,
        }
    }
}

/// An update that failed, so the agent backs off instead of retrying in a loop.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Failure {
    /// Target version.
    pub version: String,
    /// Target digest.
    pub sha256: String,
    /// Stable code and message.
    pub reason: String,
    /// Attempts so far.
    pub attempts: u32,
    /// Unix seconds of the last attempt.
    pub last_attempt: u64,
}

impl Failure {
    /// The failure of `version` (bytes `sha256`) at `now`, one attempt more than `previous`
    /// when that was the same target: the one backoff rule for slots and shadow candidates.
    pub fn after(
        previous: Option<&Failure>,
        version: &str,
        sha256: &str,
        reason: String,
        now: u64,
    ) -> Failure {
        let attempts = previous
            .filter(|p| p.is_for(version, sha256))
            .map_or(1, |p| p.attempts.saturating_add(1));
        Failure {
            version: version.to_owned(),
            sha256: sha256.to_owned(),
            reason,
            attempts,
            last_attempt: now,
        }
    }

    /// Whether this is the failure of exactly that target (same version and bytes).
    pub fn is_for(&self, version: &str, sha256: &str) -> bool {
        self.version == version && self.sha256 == sha256
    }

    /// Whether the target must still wait at `now`: 60 s after the first failure, doubling up
    /// to an hour.
    pub fn backing_off(&self, now: u64) -> bool {
        let wait = (30u64 << self.attempts.min(6)).min(3600);
        now < self.last_attempt.saturating_add(wait)
    }
}

/// `state.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AgentState {
    /// Highest desired-state sequence accepted (replays below it are refused).
    pub accepted_sequence: u64,
    /// Sequence fully applied.
    pub applied_sequence: u64,
    /// What serves, per model.
    pub installed: BTreeMap<String, Installed>,
    /// What served before, kept on disk for instant local rollback.
    pub previous: BTreeMap<String, Installed>,
    /// Failed updates, per model.
    pub failures: BTreeMap<String, Failure>,
    /// Shadow candidates running beside the installed models, per model.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shadows: BTreeMap<String, InstalledShadow>,
    /// Shadow candidates that failed, per model (backed off like failed updates).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub shadow_failures: BTreeMap<String, Failure>,
    /// Next report counter.
    pub next_report_seq: u64,
    /// Per model, the newest release this device ever verified and installed, whether or not
    /// the model is still assigned: nothing older installs without a signed rollback allowance
    /// (or the one step back to the exact previous version).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub floors: BTreeMap<String, ReleaseFloor>,
    /// The newest `issued_at` of any desired state accepted: a state issued before it is stale
    /// whatever the device's clock says.
    #[serde(default)]
    pub highest_issued_at: u64,
    /// When the last accepted desired state expires (0: none accepted yet).
    #[serde(default)]
    pub state_expires_at: u64,
}

/// The newest release of one model this device ever verified and installed. The two maxima
/// are kept apart: release counters decide when both sides have one, semantic versions
/// otherwise (upstream bundles carry no counter).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ReleaseFloor {
    /// Highest semantic version installed (the raw string if none parsed).
    pub version: String,
    /// Highest publisher-signed release counter installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<u64>,
    /// Digests of digest-only artifacts (no signed version) this device replaced, newest last:
    /// such bytes cannot come back under a new version number, only as the exact previous one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<String>,
}

/// How many superseded digests a floor remembers.
const SUPERSEDED_KEPT: usize = 32;

impl ReleaseFloor {
    /// Raises the floor to cover `version` and `release`.
    pub fn raise(&mut self, version: &str, release: Option<u64>) {
        let newer = match (
            semver::Version::parse(version),
            semver::Version::parse(&self.version),
        ) {
            (Ok(n), Ok(o)) => n > o,
            (Ok(_), Err(_)) => true,
            _ => self.version.is_empty(),
        };
        if newer {
            self.version = version.to_owned();
        }
        self.release = self.release.max(release);
    }

    /// Records that the digest-only artifact `sha256` was replaced.
    pub fn supersede(&mut self, sha256: &str) {
        self.superseded.retain(|d| d != sha256);
        self.superseded.push(sha256.to_owned());
        if self.superseded.len() > SUPERSEDED_KEPT {
            self.superseded.remove(0);
        }
    }
}

/// Paths inside the state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens (creating) the directory tree.
    pub fn open(root: &Path) -> std::io::Result<Self> {
        for sub in ["models", "partial", "reports"] {
            fs::create_dir_all(root.join(sub))?;
        }
        restrict(root, 0o700)?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A verified model file.
    pub fn model_file(&self, sha256: &str) -> PathBuf {
        self.root.join("models").join(sha256)
    }

    /// A download in progress.
    pub fn partial_file(&self, sha256: &str) -> PathBuf {
        self.root.join("partial").join(sha256)
    }

    /// The report queue directory.
    pub fn reports_dir(&self) -> PathBuf {
        self.root.join("reports")
    }

    /// The device key file.
    pub fn device_key_file(&self) -> PathBuf {
        self.root.join("device.key")
    }

    /// Reads `identity.json`, if enrolled.
    pub fn identity(&self) -> anyhow::Result<Option<Identity>> {
        read_json(&self.root.join("identity.json"))
    }

    /// Writes `identity.json` (0600).
    pub fn save_identity(&self, id: &Identity) -> anyhow::Result<()> {
        write_atomic(
            &self.root.join("identity.json"),
            &serde_json::to_vec_pretty(id)?,
            0o600,
        )
    }

    /// Reads `state.json` (default when absent).
    pub fn state(&self) -> anyhow::Result<AgentState> {
        Ok(read_json(&self.root.join("state.json"))?.unwrap_or_default())
    }

    /// Writes `state.json`.
    pub fn save_state(&self, s: &AgentState) -> anyhow::Result<()> {
        write_atomic(
            &self.root.join("state.json"),
            &serde_json::to_vec_pretty(s)?,
            0o600,
        )
    }

    /// Reads `trust-roots.json`: the rotated trust roots accepted after the provisioned one,
    /// oldest first, as the publishers signed them (checked again on every start).
    pub fn trust_chain(&self) -> anyhow::Result<Vec<SignedTrustRoot>> {
        Ok(read_json(&self.root.join("trust-roots.json"))?.unwrap_or_default())
    }

    /// Writes `trust-roots.json`.
    pub fn save_trust_chain(&self, chain: &[SignedTrustRoot]) -> anyhow::Result<()> {
        write_atomic(
            &self.root.join("trust-roots.json"),
            &serde_json::to_vec_pretty(chain)?,
            0o600,
        )
    }

    /// Deletes model files that are neither installed, previous nor a shadow candidate, and
    /// partial downloads of files that are complete.
    pub fn collect_garbage(&self, state: &AgentState) {
        let keep: std::collections::BTreeSet<&str> = state
            .installed
            .values()
            .chain(state.previous.values())
            .map(|m| m.sha256.as_str())
            .chain(state.shadows.values().map(|s| s.sha256.as_str()))
            .collect();
        for entry in fs::read_dir(self.root.join("models"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(name.as_str()) {
                let _ = fs::remove_file(entry.path());
            }
        }
        // A partial download of bytes that are already installed is left by a kill between
        // the last write and the rename; it will never be resumed.
        for entry in fs::read_dir(self.root.join("partial"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if keep.contains(name.as_str()) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Option<T>> {
    match fs::read(path) {
        Ok(bytes) => {
            Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!("{} is corrupt: {e}", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// Writes `bytes` to `path` atomically with `mode` permissions.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{} has no parent", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    {
        let mut f = open_with_mode(&tmp, mode)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(dir)?;
    Ok(())
}

/// Fsyncs a directory so a rename in it is durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn open_with_mode(path: &Path, mode: u32) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    let f = opts.open(path)?;
    restrict(path, mode)?;
    Ok(f)
}

fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    let _ = (path, mode);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_secrets_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let sd = StateDir::open(dir.path()).unwrap();
        assert_eq!(sd.state().unwrap(), AgentState::default());
        let mut s = AgentState {
            accepted_sequence: 4,
            ..Default::default()
        };
        s.installed.insert(
            "fraud".into(),
            Installed {
                version: "1.0.0".into(),
                sha256: "ab".into(),
                size: 3,
                release: None,
                sample_input: None,
                escalation: None,
            },
        );
        sd.save_state(&s).unwrap();
        assert_eq!(sd.state().unwrap(), s);
        let id = Identity {
            device_id: "d".into(),
            credential: "fld_x".into(),
            server_public_key_pem: "k".into(),
            credential_issued_at: Some(1),
        };
        sd.save_identity(&id).unwrap();
        assert_eq!(sd.identity().unwrap(), Some(id));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("identity.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        fs::write(dir.path().join("state.json"), b"{torn").unwrap();
        assert!(
            sd.state().is_err(),
            "a corrupt state file is an error, not silently empty"
        );
    }
}
