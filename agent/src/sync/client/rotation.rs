//! The server client's part in credential rotation ([`crate::sync::credential`]).

use flotilla_protocol::agent::NewCredential;
use std::time::Duration;

use super::{read_capped, refused, unavailable, ClientError, ServerClient};
use crate::sync::credential::SharedCredential;

/// The most read of a new-credential answer.
const MAX_CREDENTIAL_BODY: usize = 64 * 1024;

impl ServerClient {
    /// The credential this client presents, to share with other callers of the server.
    pub fn credential(&self) -> Option<SharedCredential> {
        self.credential.clone()
    }

    /// Presents `credential` from now on (as does everything sharing it).
    pub fn set_credential(&self, credential: String) {
        if let Some(c) = &self.credential {
            c.set(credential);
        }
    }

    /// Whether a desired-state answer since the last call said an operator asked this device
    /// to rotate its credential.
    pub fn rotation_requested(&self) -> bool {
        self.rotation.take()
    }

    /// `POST /api/v1/agent/credential`: a new credential. The current one keeps working until
    /// the new one is first used.
    pub async fn new_credential(&self) -> Result<String, ClientError> {
        let res = self
            .authed(
                self.http
                    .post(self.url(flotilla_protocol::routes::AGENT_CREDENTIAL)),
            )
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(unavailable)?;
        if res.status().is_success() {
            let body = read_capped(res, MAX_CREDENTIAL_BODY).await?;
            let answer: NewCredential = serde_json::from_slice(&body).map_err(|e| {
                ClientError::Unavailable(format!("the new-credential answer is not JSON: {e}"))
            })?;
            Ok(answer.credential)
        } else if res.status().is_server_error() {
            Err(ClientError::Unavailable(format!(
                "credential answered {}",
                res.status()
            )))
        } else {
            Err(refused(res).await)
        }
    }
}
