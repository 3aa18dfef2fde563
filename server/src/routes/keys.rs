//! `/api/v1/publisher-keys`, `/api/v1/trust/threshold` and `/api/v1/trust-root`.

use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use chrono::Utc;
use flotilla_protocol::registry::{
    PublisherKeyInfo, PublisherKeyList, RegisterKeyRequest, SetThresholdRequest, TrustRoot,
};
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
