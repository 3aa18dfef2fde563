//! Device credentials: recognising a device by the credential it presents, and rotating that
//! credential without enrolling the device again.
//!
//! A rotation is two steps so that a lost answer never locks a device out. The device asks
//! for a new credential with its current one ([`issue_next`]); the server stores the new one's
//! hash beside the old, and both work. The first request made with the new credential
//! ([`authenticate`]) makes it the only one: the old one is refused from then on. Asking again
//! before the new one was used replaces it, so a device whose answer was lost simply asks
//! again with the credential it still has.

use chrono::{DateTime, Utc};
use flotilla_protocol::ErrorCode;
use uuid::Uuid;

use super::DomainError;
use crate::auth;
use crate::store::{DeviceRecord, Store};

/// Who presented a device credential.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The device as stored after this request (with a promoted credential, if it was one).
    pub device: DeviceRecord,
    /// True when this request was the first use of a rotated credential: the old one has just
    /// stopped working (caches of it must be dropped, and the rotation audited).
    pub rotated: bool,
}

/// The device whose credential (or issued, unused next credential) hashes to `hash`; `None`
/// for an unknown credential. The first use of a next credential promotes it, so the old one
/// stops working. The device's status is the caller's to check.
pub async fn authenticate(
    store: &dyn Store,
    hash: &str,
) -> Result<Option<Authenticated>, DomainError> {
    let Some(device) = store.device_by_credential(hash).await? else {
        return Ok(None);
    };
    if device.next_credential_hash.as_deref() != Some(hash) || device.status != "active" {
        // A revoked or pending device's next credential is never promoted: it is refused by
        // status like the current one.
        return Ok(Some(Authenticated {
            device,
            rotated: false,
        }));
    }
    match store.promote_next_credential(device.id, hash).await? {
        Some(device) => Ok(Some(Authenticated {
            device,
            rotated: true,
        })),
        // Another request promoted it (or a new rotation replaced it) meanwhile: what is
        // stored now decides.
        None => Ok(store
            .device_by_credential(hash)
            .await?
            .filter(|d| d.credential_hash == hash)
            .map(|device| Authenticated {
                device,
                rotated: false,
            })),
    }
}

/// Issues a new credential for the active device `id`, which presented the credential hashing
/// to `presented_hash`. The presented credential keeps working until the new one is first
/// used. Returns the new secret (shown once; only its hash is kept).
pub async fn issue_next(
    store: &dyn Store,
    id: Uuid,
    presented_hash: &str,
) -> Result<String, DomainError> {
    let secret = super::fleet::new_device_credential();
    if !store
        .issue_next_credential(id, presented_hash, &auth::hash_secret(&secret))
        .await?
    {
        // Revoked (or its credential rotated) between authentication and now.
        return Err(DomainError::invalid(
            ErrorCode::Unauthorized,
            "this device's credential is no longer valid",
        ));
    }
    Ok(secret)
}

/// An operator asks the device to rotate its credential; it learns so on its next poll.
pub async fn request_rotation(
    store: &dyn Store,
    id: Uuid,
    now: DateTime<Utc>,
) -> Result<DeviceRecord, DomainError> {
    let device = store
        .get_device(id)
        .await?
        .ok_or_else(|| DomainError::not_found(format!("device {id} not found")))?;
    if device.status == "revoked" {
        return Err(DomainError::conflict(
            ErrorCode::Conflict,
            "a revoked device has no credential to rotate; enroll it again",
        ));
    }
    Ok(store.request_credential_rotation(id, now).await?)
}
