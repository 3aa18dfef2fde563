//! `/api/v1/audit`: who changed what, when, and how it ended.

use actix_web::{get, web};
use flotilla_protocol::audit::{AuditEntry, AuditPage};
use serde::Deserialize;

use crate::auth::{Permission, Principal};
use crate::error::ApiError;
use crate::routes::rfc3339;
use crate::startup::AppState;
use crate::store::AuditQuery;

/// Query parameters of the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// Entries per page (1–1000, default 100).
    limit: Option<u32>,
    /// Only entries older than this id (from `next_before`).
    before: Option<i64>,
    /// Only this actor (token name or `anonymous`).
    actor: Option<String>,
    /// `true` leaves out what devices did (their reports), keeping what people and tools did.
    exclude_devices: Option<bool>,
}

/// Reads the audit log, newest first.
#[utoipa::path(
    tag = "audit",
    params(AuditParams),
    responses((status = 200, body = AuditPage), (status = 403, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[get("/audit")]
pub async fn list_audit(
    principal: Principal,
    state: web::Data<AppState>,
    params: web::Query<AuditParams>,
) -> Result<web::Json<AuditPage>, ApiError> {
    principal.require(Permission::ReadAudit)?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            flotilla_protocol::ErrorCode::InvalidQuery,
            "limit must be between 1 and 1000",
        ));
    }
    let entries = state
        .store
        .list_audit(&AuditQuery {
            before_id: params.before,
            actor: params.actor.clone(),
            exclude_devices: params.exclude_devices.unwrap_or(false),
            limit,
        })
        .await?;
    let next_before = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    Ok(web::Json(AuditPage {
        entries: entries
            .into_iter()
            .map(|e| AuditEntry {
                id: e.id,
                at: rfc3339(e.at),
                actor: e.actor,
                token_id: e.token_id.map(|t| t.to_string()),
                method: e.method,
                route: e.route,
                path: e.path,
                status: e.status,
                outcome: e.outcome,
                detail: e.detail,
            })
            .collect(),
        next_before,
    }))
}
