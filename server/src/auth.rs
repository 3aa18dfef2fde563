//! API-token authentication and role-based authorisation.
//!
//! Tokens are 256-bit random secrets (`flt_` + 43 base62 characters); the database keeps only
//! their sha256, which is enough for high-entropy secrets (no password-hashing needed) and keeps
//! lookups a single indexed query.

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use chrono::Utc;
use flotilla_protocol::tokens::Role;
use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::pin::Pin;
use uuid::Uuid;

use crate::error::ApiError;
use crate::startup::AppState;

/// Prefix of every Flotilla API token, so secret scanners and people recognise them.
pub const TOKEN_PREFIX: &str = "flt_";
const SECRET_LEN: usize = 43;
/// Characters of the secret kept in clear for listings.
const SHOWN_PREFIX_LEN: usize = 12;

/// A new random token secret.
pub fn generate_secret() -> String {
    let body: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(SECRET_LEN)
        .map(char::from)
        .collect();
    format!("{TOKEN_PREFIX}{body}")
}

/// The stored form of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The part of a secret shown in listings.
pub fn shown_prefix(secret: &str) -> String {
    secret.chars().take(SHOWN_PREFIX_LEN).collect()
}

/// Something a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read models, devices, rollouts (not secrets, not the audit log).
    Read,
    /// Read models and their versions (the part of [`Permission::Read`] inference clients get).
    ReadModels,
    /// Run inference on the server's models (`/v2`).
    Infer,
    /// Create, list and revoke API tokens.
    ManageTokens,
    /// Read the audit log.
    ReadAudit,
    /// Register and revoke publisher keys.
    ManageKeys,
    /// Upload and yank model versions.
    Publish,
    /// Manage devices, deployments and rollouts.
    Operate,
}

impl Permission {
    /// Whether `role` grants this permission.
    pub fn granted_to(self, role: Role) -> bool {
        match self {
            Permission::Read => role != Role::Inference,
            Permission::ReadModels => true,
            Permission::Infer => matches!(role, Role::Admin | Role::Operator | Role::Inference),
            Permission::ManageTokens | Permission::ReadAudit | Permission::ManageKeys => {
                role == Role::Admin
            }
            Permission::Publish => matches!(role, Role::Admin | Role::Publisher),
            Permission::Operate => matches!(role, Role::Admin | Role::Operator),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::ReadModels => "read models",
            Permission::Infer => "run inference (admin, operator or inference)",
            Permission::ManageTokens => "manage API tokens (admin)",
            Permission::ReadAudit => "read the audit log (admin)",
            Permission::ManageKeys => "manage publisher keys (admin)",
            Permission::Publish => "publish models (admin or publisher)",
            Permission::Operate => "operate the fleet (admin or operator)",
        }
    }
}

/// The authenticated caller of a request. Extracting it authenticates the request; it is also
/// left in the request's extensions so the audit log knows who acted.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Token id.
    pub token_id: Uuid,
    /// Token name (the audit log's actor).
    pub name: String,
    /// Role.
    pub role: Role,
}

impl Principal {
    /// Fails with 403 unless the principal's role grants `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if permission.granted_to(self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "token `{}` has role `{}`, which may not {}",
                self.name,
                self.role,
                permission.describe()
            )))
        }
    }
}

fn bearer(req: &HttpRequest) -> Result<String, ApiError> {
    let header = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <token>` header"))?;
    let value = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthorized("Authorization header must be `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::unauthorized(
            "Authorization header must be `Bearer <token>`",
        ));
    }
    Ok(token.trim().to_owned())
}

async fn authenticate(req: HttpRequest) -> Result<Principal, ApiError> {
    let secret = bearer(&req)?;
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("application state missing")))?;
    let record = state
        .store
        .token_by_hash(&hash_secret(&secret))
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown API token"))?;
    let now = Utc::now();
    if record.revoked_at.is_some() {
        return Err(ApiError::unauthorized("this API token has been revoked"));
    }
    if !record.is_active(now) {
        return Err(ApiError::unauthorized("this API token has expired"));
    }
    if let Err(e) = state.store.touch_token(record.id, now).await {
        // Bookkeeping only: a failure here must not refuse a valid caller.
        tracing::warn!(error = %e, "could not record token use");
    }
    let principal = Principal {
        token_id: record.id,
        name: record.name,
        role: record.role,
    };
    req.extensions_mut().insert(principal.clone());
    Ok(principal)
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(authenticate(req.clone()))
    }
}

/// What a handler wants the audit log to remember about a change (ids, names; never secrets).
#[derive(Debug, Clone)]
pub struct AuditDetail(pub serde_json::Value);

/// Attaches audit detail to the request being handled.
pub fn audit_detail(req: &HttpRequest, detail: serde_json::Value) {
    req.extensions_mut().insert(AuditDetail(detail));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_prefixed() {
        let a = generate_secret();
        let b = generate_secret();
        assert!(a.starts_with(TOKEN_PREFIX));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + SECRET_LEN);
        assert_ne!(a, b);
        assert_ne!(hash_secret(&a), hash_secret(&b));
        assert_eq!(hash_secret(&a).len(), 64);
    }

    #[test]
    fn role_permissions() {
        use Permission::*;
        for role in Role::ALL {
            assert!(ReadModels.granted_to(role));
            assert_eq!(Read.granted_to(role), role != Role::Inference);
        }
        assert!(ManageTokens.granted_to(Role::Admin));
        assert!(!ManageTokens.granted_to(Role::Operator));
        assert!(!ReadAudit.granted_to(Role::Viewer));
        assert!(Publish.granted_to(Role::Publisher));
        assert!(!Publish.granted_to(Role::Operator));
        assert!(Operate.granted_to(Role::Operator));
        assert!(!Operate.granted_to(Role::Publisher));
        assert!(!Operate.granted_to(Role::Viewer));
        assert!(Infer.granted_to(Role::Admin));
        assert!(Infer.granted_to(Role::Operator));
        assert!(Infer.granted_to(Role::Inference));
        assert!(!Infer.granted_to(Role::Viewer));
        assert!(!Infer.granted_to(Role::Publisher));
        // An inference token does nothing but infer and read models.
        for permission in [ManageTokens, ReadAudit, ManageKeys, Publish, Operate] {
            assert!(!permission.granted_to(Role::Inference), "{permission:?}");
        }
    }
}

/// An enrolled, active device, authenticated by its credential (`fld_...`).
///
/// A device that called recently is recognised from the check-in cache without a database
/// read (see [`crate::checkin`]); the cache forgets everything at each fleet change, so a
/// revoked or deleted device is refused on its next request.
#[derive(Debug, Clone)]
pub struct DevicePrincipal {
    /// Device id.
    pub id: uuid::Uuid,
    /// Device name.
    pub name: String,
    /// The stored device, when authenticating read it (`None` when the cache answered).
    pub record: Option<crate::store::DeviceRecord>,
    /// Hash of the credential presented.
    pub credential_hash: String,
}

async fn authenticate_device(req: HttpRequest) -> Result<DevicePrincipal, ApiError> {
    let secret = bearer(&req)?;
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("application state missing")))?;
    let hash = hash_secret(&secret);
    // Read before the database, so an entry made from data that changes meanwhile is stale.
    let generation = *state.fleet_changes.borrow();
    let principal = match state.checkin.device(&hash, generation) {
        Some(cached) => DevicePrincipal {
            id: cached.id,
            name: cached.name,
            record: None,
            credential_hash: hash.clone(),
        },
        None => {
            let found = crate::domain::credentials::authenticate(state.store.as_ref(), &hash)
                .await?
                .ok_or_else(|| ApiError::unauthorized("unknown device credential"))?;
            let device = found.device;
            check_active(&device)?;
            if found.rotated {
                credential_rotated(&req, state, &device).await;
            }
            let cached = crate::checkin::CachedDevice {
                id: device.id,
                name: device.name.clone(),
            };
            state.checkin.remember_device(&hash, cached, generation);
            DevicePrincipal {
                id: device.id,
                name: device.name.clone(),
                record: Some(device),
                credential_hash: hash.clone(),
            }
        }
    };
    state.contacts.record(principal.id, Utc::now());
    // The audit trail names the device as the actor.
    req.extensions_mut().insert(Principal {
        token_id: principal.id,
        name: format!("device:{}", principal.name),
        role: Role::Viewer,
    });
    Ok(principal)
}

/// A device used its rotated credential for the first time, so the old one stops working:
/// every replica's caches forget it (the same signal a revocation sends), and the audit log
/// records the rotation (the request may be a GET, which the audit trail leaves out).
async fn credential_rotated(
    req: &HttpRequest,
    state: &AppState,
    device: &crate::store::DeviceRecord,
) {
    state.fleet_changed();
    let entry = crate::store::NewAuditEntry {
        at: Utc::now(),
        actor: format!("device:{}", device.name),
        token_id: Some(device.id),
        method: req.method().to_string(),
        route: req.match_pattern().unwrap_or_else(|| req.path().to_owned()),
        path: req.path().to_owned(),
        status: 200,
        outcome: crate::store::AuditOutcome::Success,
        detail: Some(serde_json::json!({
            "device_id": device.id,
            "credential": "rotated: the new credential is in use, the old one no longer works",
        })),
    };
    if let Err(e) = state.store.append_audit(&entry).await {
        tracing::error!(error = %e, device = %device.id, "could not audit a credential rotation");
    }
    tracing::info!(device = %device.id, "device credential rotated");
}

/// Refuses a device that is not active (401 revoked, 403 awaiting approval).
pub fn check_active(device: &crate::store::DeviceRecord) -> Result<(), ApiError> {
    match device.status.as_str() {
        "active" => Ok(()),
        "pending" => Err(ApiError::forbidden(
            "this device is waiting for an operator to approve it",
        )),
        _ => Err(ApiError::unauthorized("this device has been revoked")),
    }
}

impl FromRequest for DevicePrincipal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(authenticate_device(req.clone()))
    }
}

/// Someone allowed to read artifacts: an API token with read access or an active device.
/// A device may read only the artifacts its desired state names (checked by the route).
#[derive(Debug, Clone)]
pub struct ArtifactReader {
    /// The device asking, when the credential is a device's.
    pub device: Option<uuid::Uuid>,
}

impl FromRequest for ArtifactReader {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let is_device = bearer(&req)
                .map(|t| t.starts_with(crate::domain::fleet::DEVICE_PREFIX))
                .unwrap_or(false);
            if is_device {
                authenticate_device(req)
                    .await
                    .map(|d| ArtifactReader { device: Some(d.id) })
            } else {
                authenticate(req)
                    .await?
                    .require(Permission::Read)
                    .map(|_| ArtifactReader { device: None })
            }
        })
    }
}

/// Someone allowed to run inference on the server's models: an API token whose role grants
/// [`Permission::Infer`], or an active device (agents escalate hard inputs to the server).
#[derive(Debug, Clone)]
pub enum InferenceCaller {
    /// An API token.
    Token(Principal),
    /// An enrolled, active device.
    Device(Box<DevicePrincipal>),
}

impl FromRequest for InferenceCaller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let is_device = bearer(&req)
                .map(|t| t.starts_with(crate::domain::fleet::DEVICE_PREFIX))
                .unwrap_or(false);
            if is_device {
                authenticate_device(req)
                    .await
                    .map(|device| InferenceCaller::Device(Box::new(device)))
            } else {
                let principal = authenticate(req).await?;
                principal.require(Permission::Infer)?;
                Ok(InferenceCaller::Token(principal))
            }
        })
    }
}
