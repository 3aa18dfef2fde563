//! The device credential, shared by everything that talks to the server (the update cycle's
//! client, the hybrid escalator), and its rotation.
//!
//! A rotation asks the server for a new credential with the current one, writes it to
//! `identity.json` (atomically, fsynced) and only then uses it. The server keeps the old one
//! valid until the new one is first used, so neither a lost answer nor a crash at any point
//! locks the device out: before the write the device still has the old credential, after it
//! the new one.

use flotilla_protocol::agent::ROTATE_CREDENTIAL_HEADER;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::sync::client::ServerClient;
use crate::sync::state_dir::{Identity, StateDir};

/// Default age after which the agent rotates its credential.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The credential the device presents, replaced in place by a rotation.
#[derive(Clone)]
pub struct SharedCredential(Arc<RwLock<String>>);

impl std::fmt::Debug for SharedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedCredential(<redacted>)")
    }
}

impl SharedCredential {
    /// Holds `credential`.
    pub fn new(credential: String) -> Self {
        Self(Arc::new(RwLock::new(credential)))
    }

    /// The credential to present now.
    pub fn get(&self) -> String {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Presents `credential` from now on.
    pub fn set(&self, credential: String) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = credential;
    }
}

/// Set when a desired-state answer says an operator asked this device to rotate.
#[derive(Debug, Clone, Default)]
pub struct RotationRequest(Arc<AtomicBool>);

impl RotationRequest {
    /// Notes the request if `headers` carry it.
    pub fn note(&self, headers: &reqwest::header::HeaderMap) {
        if headers.contains_key(ROTATE_CREDENTIAL_HEADER) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// Whether a request was noted since the last call.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::SeqCst)
    }
}

/// Whether a credential issued at `issued_at` (Unix seconds; `None` for one from before
/// rotation existed) is due for rotation at `now`. A clock that went back past the issue time
/// (a device without RTC restarting at 1970) counts as due: the age is unknown, and one
/// rotation puts the issue time back on this clock. `max_age` zero never rotates by age.
pub fn due_by_age(issued_at: Option<u64>, now: u64, max_age: Duration) -> bool {
    if max_age.is_zero() {
        return false;
    }
    match issued_at {
        None => true,
        Some(t) => now < t || now - t >= max_age.as_secs(),
    }
}

/// Rotates the device credential: asks the server for a new one, stores it in `identity.json`
/// before anything uses it, then makes `client` (and everything sharing its credential)
/// present it. Returns the new identity.
pub async fn rotate(
    dir: &StateDir,
    client: &ServerClient,
    identity: &Identity,
    now: u64,
) -> anyhow::Result<Identity> {
    let credential = client
        .new_credential()
        .await
        .map_err(|e| anyhow::anyhow!("cannot get a new credential: {e}"))?;
    if !credential.starts_with("fld_")
        || credential.len() > 256
        || !credential
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        anyhow::bail!("the server's new credential is not a device credential");
    }
    let next = Identity {
        credential,
        credential_issued_at: Some(now),
        ..identity.clone()
    };
    // Durable first: a crash after this starts with the new credential, which works; a crash
    // before it keeps the old one, which works until the new one is used.
    dir.save_identity(&next)?;
    client.set_credential(next.credential.clone());
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_decides_with_a_clock_that_may_go_back() {
        let month = Duration::from_secs(30 * 24 * 3600);
        assert!(!due_by_age(Some(1_000), 1_000 + 3600, month));
        assert!(due_by_age(Some(1_000), 1_000 + month.as_secs(), month));
        assert!(due_by_age(None, 5, month), "unknown age: rotate");
        assert!(
            due_by_age(Some(1_800_000_000), 10, month),
            "clock went back"
        );
        assert!(!due_by_age(None, 5, Duration::ZERO), "zero: never by age");
    }

    #[test]
    fn the_credential_never_shows_in_debug_output() {
        let c = SharedCredential::new("fld_secret".into());
        assert!(!format!("{c:?}").contains("fld_secret"));
        c.set("fld_other".into());
        assert_eq!(c.get(), "fld_other");
    }
}
