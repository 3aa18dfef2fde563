//! When the update cycle rotates the device credential: when it is older than the configured
//! age, or when an operator asked (a header on the desired-state answer). The rotation itself
//! is [`crate::sync::credential::rotate`].

use std::time::Duration;

use super::Updater;
use crate::sync::credential::{self, DEFAULT_MAX_AGE};

/// Wait after a failed rotation before trying again (the current credential still works).
const RETRY_AFTER: Duration = Duration::from_secs(300);

/// The rotation settings and what is pending.
#[derive(Debug)]
pub(super) struct CredentialRotation {
    /// Rotate when the credential is at least this old (zero: only when asked).
    max_age: Duration,
    /// An operator asked, and the device has not rotated since.
    asked: bool,
    /// Monotonic reading before which no new attempt is made, after a failure.
    retry_at: Option<Duration>,
}

impl Default for CredentialRotation {
    fn default() -> Self {
        Self {
            max_age: DEFAULT_MAX_AGE,
            asked: false,
            retry_at: None,
        }
    }
}

impl Updater {
    /// Rotates the credential once it is `max_age` old (zero: only when an operator asks).
    pub fn set_credential_max_age(&mut self, max_age: Duration) {
        self.credential_rotation.max_age = max_age;
    }

    /// Rotates the credential if it is due or an operator asked. A failure leaves the current
    /// credential in use and is retried a few minutes later.
    pub(super) async fn rotate_credential_when_due(&mut self) {
        if self.client.rotation_requested() {
            self.credential_rotation.asked = true;
        }
        let now = (self.clock)();
        let rotation = &self.credential_rotation;
        let due = rotation.asked
            || credential::due_by_age(self.identity.credential_issued_at, now, rotation.max_age);
        let monotonic = (self.monotonic)();
        if !due || rotation.retry_at.is_some_and(|at| monotonic < at) {
            return;
        }
        match credential::rotate(&self.dir, &self.client, &self.identity, now).await {
            Ok(identity) => {
                tracing::info!(
                    device_id = %identity.device_id,
                    asked = self.credential_rotation.asked,
                    "rotated the device credential"
                );
                self.identity = identity;
                self.credential_rotation.asked = false;
                self.credential_rotation.retry_at = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?RETRY_AFTER, "cannot rotate the device credential; keeping the current one");
                self.credential_rotation.retry_at = Some(monotonic + RETRY_AFTER);
            }
        }
    }
}
