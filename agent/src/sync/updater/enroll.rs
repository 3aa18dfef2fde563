//! Enrollment: a device key generated on the device, a one-time token, the server's key pinned.

use flotilla_protocol::signing::{self, PublicKey};

use crate::sync::client::ServerClient;
use crate::sync::state_dir::{Identity, StateDir};

/// Enrolls the device unless it already has an identity; returns the identity.
pub async fn ensure_enrolled(
    dir: &StateDir,
    server: &str,
    enroll_token: Option<&str>,
    request: flotilla_protocol::agent::EnrollRequest,
    configured_server_key: Option<&str>,
) -> anyhow::Result<Identity> {
    if let Some(id) = dir.identity()? {
        return Ok(id);
    }
    let token = enroll_token.ok_or_else(|| {
        anyhow::anyhow!("this device is not enrolled yet: give an enrollment token (--enroll-token or FLOTILLA_ENROLL_TOKEN)")
    })?;
    let key_file = dir.device_key_file();
    let key = match std::fs::read_to_string(&key_file) {
        Ok(pem) => signing::SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| anyhow::anyhow!("{}: {e}", key_file.display()))?,
        Err(_) => {
            let key = signing::SigningKey::generate(&mut rand::rngs::OsRng);
            let pem = key.to_pkcs8_pem().map_err(|e| anyhow::anyhow!("{e}"))?;
            crate::sync::state_dir::write_atomic(&key_file, pem.as_bytes(), 0o600)?;
            key
        }
    };
    let public = flotilla_protocol::devices::DevicePublicKey::of(&key).to_base64();
    let mut request = request;
    request.enrollment_token = token.to_owned();
    request.device_public_key = public;
    let client = ServerClient::new(server, None)?;
    let res = client
        .enroll(&request)
        .await
        .map_err(|e| anyhow::anyhow!("enrollment failed: {e}"))?;
    let server_key = match configured_server_key {
        Some(pem) => {
            let configured = PublicKey::from_pem(pem)
                .map_err(|e| anyhow::anyhow!("configured server key: {e}"))?;
            if PublicKey::from_pem(&res.server_public_key_pem)
                .ok()
                .as_ref()
                != Some(&configured)
            {
                anyhow::bail!(
                    "the server's key is not the configured server key; refusing to enroll"
                );
            }
            pem.to_owned()
        }
        None => res.server_public_key_pem.clone(),
    };
    let identity = Identity {
        device_id: res.device_id,
        credential: res.credential,
        server_public_key_pem: server_key,
        credential_issued_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs()),
    };
    dir.save_identity(&identity)?;
    tracing::info!(device_id = %identity.device_id, status = %res.status, "enrolled");
    Ok(identity)
}
