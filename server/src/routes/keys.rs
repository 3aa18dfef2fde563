//! `/api/v1/publisher-keys`, `/api/v1/trust/threshold`, `/api/v1/trust-root` and the rotated
//! trust roots (`/api/v1/trust/roots`, and `/api/v1/agent/trust-roots` for devices).

use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use chrono::Utc;
use flotilla_protocol::registry::{
    PublisherKeyInfo, PublisherKeyList, RegisterKeyRequest, SetThresholdRequest, TrustRoot,
    TrustRootChain,
};
use flotilla_protocol::signing::SignedTrustRoot;
use serde_json::json;

use crate::auth::{audit_detail, Permission, Principal};
use crate::domain::registry;
use crate::error::ApiError;
use crate::routes::rfc3339;
use crate::startup::AppState;
use crate::store::PublisherKeyRecord;

fn key_info(k: &PublisherKeyRecord) -> PublisherKeyInfo {
    PublisherKeyInfo {
        key_id: k.key_id.clone(),
        name: k.name.clone(),
        algorithm: k.algorithm.clone(),
        public_key_pem: k.public_key_pem.clone(),
        created_at: rfc3339(k.created_at),
        revoked_at: k.revoked_at.map(rfc3339),
    }
}

/// Registers a publisher public key (admin).
#[utoipa::path(
    tag = "trust",
    request_body = RegisterKeyRequest,
    responses(
        (status = 201, body = PublisherKeyInfo),
        (status = 400, body = flotilla_protocol::ApiErrorBody),
        (status = 409, description = "same key or same name", body = flotilla_protocol::ApiErrorBody)
    ),
    security(("bearer" = []))
)]
#[post("/publisher-keys")]
pub async fn register_key(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<RegisterKeyRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Permission::ManageKeys)?;
    let key = registry::register_key(
        state.store.as_ref(),
        &body.name,
        &body.public_key_pem,
        Utc::now(),
    )
    .await?;
    audit_detail(
        &req,
        json!({"key_id": key.key_id, "name": key.name, "algorithm": key.algorithm}),
    );
    Ok(HttpResponse::Created().json(key_info(&key)))
}

/// Lists publisher keys, revoked ones included.
#[utoipa::path(tag = "trust", responses((status = 200, body = PublisherKeyList)), security(("bearer" = [])))]
#[get("/publisher-keys")]
pub async fn list_keys(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<web::Json<PublisherKeyList>, ApiError> {
    principal.require(Permission::Read)?;
    let keys = state.store.list_publisher_keys().await?;
    Ok(web::Json(PublisherKeyList {
        keys: keys.iter().map(key_info).collect(),
    }))
}

/// Revokes a publisher key (admin): its signatures stop counting for new versions at once.
#[utoipa::path(
    tag = "trust",
    params(("key_id" = String, Path, description = "key id (hex sha256 of the SPKI DER)")),
    responses((status = 200, body = PublisherKeyInfo), (status = 404, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[delete("/publisher-keys/{key_id}")]
pub async fn revoke_key(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<web::Json<PublisherKeyInfo>, ApiError> {
    principal.require(Permission::ManageKeys)?;
    let key = registry::revoke_key(state.store.as_ref(), &path, Utc::now()).await?;
    audit_detail(&req, json!({"key_id": key.key_id, "name": key.name}));
    Ok(web::Json(key_info(&key)))
}

/// Sets the global signing threshold (admin).
#[utoipa::path(
    tag = "trust",
    request_body = SetThresholdRequest,
    responses((status = 200, body = TrustRoot), (status = 400, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[put("/trust/threshold")]
pub async fn set_threshold(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<SetThresholdRequest>,
) -> Result<web::Json<TrustRoot>, ApiError> {
    principal.require(Permission::ManageKeys)?;
    registry::set_threshold(state.store.as_ref(), body.threshold).await?;
    audit_detail(&req, json!({"threshold": body.threshold}));
    Ok(web::Json(registry::trust_root(state.store.as_ref()).await?))
}

/// The trust root for provisioning agents: active publisher keys and thresholds.
#[utoipa::path(tag = "trust", responses((status = 200, body = TrustRoot)), security(("bearer" = [])))]
#[get("/trust-root")]
pub async fn trust_root(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<web::Json<TrustRoot>, ApiError> {
    principal.require(Permission::Read)?;
    Ok(web::Json(registry::trust_root(state.store.as_ref()).await?))
}

/// What the next trust-root rotation would sign (`flotilla trust rotate` starts from it): the
/// active keys and thresholds, the next serial and the server's desired-state key.
#[utoipa::path(tag = "trust", responses((status = 200, body = TrustRoot)), security(("bearer" = [])))]
#[get("/trust/root-draft")]
pub async fn trust_root_draft(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<web::Json<TrustRoot>, ApiError> {
    principal.require(Permission::Read)?;
    Ok(web::Json(
        registry::trust_root_draft(state.store.as_ref(), &state.server_key.public_key()).await?,
    ))
}

/// Publishes a rotated trust root (admin) for agents to fetch. It must be the next serial,
/// signed by a threshold of its own keys and, after the first rotation, of the previous
/// root's keys; agents check the same, whatever the server says.
#[utoipa::path(
    tag = "trust",
    request_body = SignedTrustRoot,
    responses(
        (status = 201, body = TrustRoot),
        (status = 400, description = "malformed, unusable or not signed by enough keys", body = flotilla_protocol::ApiErrorBody),
        (status = 409, description = "not the next serial", body = flotilla_protocol::ApiErrorBody)
    ),
    security(("bearer" = []))
)]
#[post("/trust/roots")]
pub async fn publish_trust_root(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<SignedTrustRoot>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Permission::ManageKeys)?;
    let root = registry::publish_trust_root(
        state.store.as_ref(),
        &body.to_json(),
        &principal.name,
        Utc::now(),
    )
    .await?;
    audit_detail(
        &req,
        json!({
            "serial": root.serial,
            "keys": root.keys.iter().map(|k| &k.key_id).collect::<Vec<_>>(),
            "threshold": root.threshold,
            "server_key_id": root.server_key().map(|k| k.key_id()),
        }),
    );
    // Devices learn the new serial with their next desired-state answer.
    state.fleet_changed();
    Ok(HttpResponse::Created().json(root))
}

/// The rotated trust roots, oldest first (serial 2 on).
#[utoipa::path(
    tag = "trust",
    params(TrustRootsParams),
    responses((status = 200, body = TrustRootChain)),
    security(("bearer" = []))
)]
#[get("/trust/roots")]
pub async fn list_trust_roots(
    principal: Principal,
    state: web::Data<AppState>,
    params: web::Query<TrustRootsParams>,
) -> Result<web::Json<TrustRootChain>, ApiError> {
    principal.require(Permission::Read)?;
    chain(&state, params.after.unwrap_or(1)).await
}

/// Which rotated roots to return.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TrustRootsParams {
    /// Only roots with a serial above this one (default 1: every rotation).
    after: Option<u64>,
}

/// The rotated trust roots a device needs (`GET /api/v1/agent/trust-roots?after=N`), each the
/// publishers' envelope as signed.
#[utoipa::path(
    tag = "agent",
    params(TrustRootsParams),
    responses(
        (status = 200, body = TrustRootChain),
        (status = 401, body = flotilla_protocol::ApiErrorBody)
    ),
    security(("device" = []))
)]
#[get("/agent/trust-roots")]
pub async fn agent_trust_roots(
    _caller: crate::auth::DevicePrincipal,
    state: web::Data<AppState>,
    params: web::Query<TrustRootsParams>,
) -> Result<web::Json<TrustRootChain>, ApiError> {
    chain(&state, params.after.unwrap_or(1)).await
}

async fn chain(state: &AppState, after: u64) -> Result<web::Json<TrustRootChain>, ApiError> {
    let records = state
        .store
        .list_trust_roots(after, TrustRootChain::MAX_ROOTS)
        .await?;
    let roots = records
        .iter()
        .map(|r| SignedTrustRoot::from_json(r.envelope.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    Ok(web::Json(TrustRootChain { roots }))
}
