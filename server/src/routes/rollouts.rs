//! Rollouts, saved rollout policies and webhooks.

use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use flotilla_protocol::rollouts::{
    CreateRolloutRequest, CreateWebhookRequest, RolloutActionRequest, RolloutInfo, RolloutPolicy,
    SavedPolicy, WebhookInfo,
};
use flotilla_protocol::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::auth::{audit_detail, Permission, Principal};
use crate::domain::rollouts::{self, Action};
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::{PolicyRecord, WebhookRecord};

/// Every transition of a rollout is kept; a page of history this long is plenty.
const HISTORY_LIMIT: u32 = 1000;

/// `GET /api/v1/rollouts` answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RolloutList {
    /// Newest first.
    pub rollouts: Vec<RolloutInfo>,
}

/// Filters for the rollout list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RolloutFilter {
    /// Only this model's rollouts.
    model: Option<String>,
    /// Only rollouts in this state (`running`, `paused`, ...), or `open` for those holding devices.
    state: Option<String>,
}

async fn detailed(
    state: &AppState,
    r: &crate::store::RolloutRecord,
) -> Result<RolloutInfo, ApiError> {
    let store = state.store.as_ref();
    let view = rollouts::view(store, r, state.rollouts.now()).await?;
    let history = store.list_rollout_events(Some(r.id), HISTORY_LIMIT).await?;
    Ok(rollouts::info(r, Some(&view), &history))
}

/// Starts a rollout (operator or admin): its first stage opens at once.
#[utoipa::path(
    tag = "rollouts",
    request_body = CreateRolloutRequest,
    responses(
        (status = 201, body = RolloutInfo),
        (status = 400, body = flotilla_protocol::ApiErrorBody),
        (status = 404, description = "no such model, version or saved policy", body = flotilla_protocol::ApiErrorBody),
        (status = 409, description = "`rollout_overlap`: another open rollout of the model targets the same devices; `version_yanked`", body = flotilla_protocol::ApiErrorBody)
    ),
    security(("bearer" = []))
)]
#[post("/rollouts")]
pub async fn create_rollout(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<CreateRolloutRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Permission::Operate)?;
    let r = rollouts::create(
        state.store.as_ref(),
        &body,
        &principal.name,
        state.rollouts.now(),
    )
    .await?;
    state.fleet_changed();
    if let Some(first) = state
        .store
        .list_rollout_events(Some(r.id), 1)
        .await?
        .first()
    {
        state.rollouts.published(&rollouts::Change {
            rollout: r.clone(),
            event: first.clone(),
            baseline: Vec::new(),
        });
    }
    audit_detail(
        &req,
        json!({"rollout_id": r.id, "model": r.model_name, "version": r.version, "selector": r.selector_text}),
    );
    Ok(HttpResponse::Created().json(detailed(&state, &r).await?))
}

/// Lists rollouts, newest first (without live figures; `GET /rollouts/{id}` has them).
#[utoipa::path(
    tag = "rollouts",
    params(RolloutFilter),
    responses((status = 200, body = RolloutList)),
    security(("bearer" = []))
)]
#[get("/rollouts")]
pub async fn list_rollouts(
    principal: Principal,
    state: web::Data<AppState>,
    filter: web::Query<RolloutFilter>,
) -> Result<web::Json<RolloutList>, ApiError> {
    principal.require(Permission::Read)?;
    let wanted = match filter.state.as_deref() {
        None | Some("open") => None,
        Some(s) => Some(
            flotilla_protocol::rollouts::RolloutState::parse(s).ok_or_else(|| {
                ApiError::bad_request(
                    ErrorCode::InvalidQuery,
                    format!("unknown rollout state `{s}`"),
                )
            })?,
        ),
    };
    let open_only = filter.state.as_deref() == Some("open");
    let all = state.store.list_rollouts().await?;
    Ok(web::Json(RolloutList {
        rollouts: all
            .iter()
            .filter(|r| filter.model.as_deref().is_none_or(|m| r.model_name == m))
            .filter(|r| wanted.is_none_or(|s| r.state == s))
            .filter(|r| !open_only || r.state.is_open())
            .map(|r| rollouts::info(r, None, &[]))
            .collect(),
    }))
}

/// One rollout: its stage, devices per state, the gates against their thresholds, and every
/// transition with its reason.
#[utoipa::path(
    tag = "rollouts",
    params(("id" = String, Path, description = "rollout id")),
    responses((status = 200, body = RolloutInfo), (status = 404, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[get("/rollouts/{id}")]
pub async fn get_rollout(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<web::Json<RolloutInfo>, ApiError> {
    principal.require(Permission::Read)?;
    let r = rollouts::get(state.store.as_ref(), &path).await?;
    Ok(web::Json(detailed(&state, &r).await?))
}

/// Acts on a rollout (operator or admin): `pause`, `resume`, `approve` (a stage waiting for
/// approval), `abort` (every device back to its previous version) or `promote` (the target
/// becomes the selector's deployment now).
#[utoipa::path(
    tag = "rollouts",
    params(
        ("id" = String, Path, description = "rollout id"),
        ("action" = String, Path, description = "pause | resume | approve | abort | promote")
    ),
    request_body(content = RolloutActionRequest, description = "optional reason", content_type = "application/json"),
    responses(
        (status = 200, body = RolloutInfo),
        (status = 404, body = flotilla_protocol::ApiErrorBody),
        (status = 409, description = "`invalid_rollout_state`: the action does not fit the state", body = flotilla_protocol::ApiErrorBody)
    ),
    security(("bearer" = []))
)]
#[post("/rollouts/{id}/{action}")]
pub async fn act(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: Option<web::Json<RolloutActionRequest>>,
) -> Result<web::Json<RolloutInfo>, ApiError> {
    principal.require(Permission::Operate)?;
    let (id, action_name) = path.into_inner();
    let action = Action::parse(&action_name).ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::InvalidPath,
            format!("unknown action `{action_name}`: use pause, resume, approve, abort or promote"),
        )
    })?;
    let reason = body.and_then(|b| b.into_inner().reason);
    let store = state.store.as_ref();
    // An engine pass may commit between our read and our write; read again and retry then.
    for _ in 0..5 {
        let r = rollouts::get(store, &id).await?;
        let now = state.rollouts.now();
        let devices = store.list_devices().await?;
        let view = rollouts::view(store, &r, now).await?;
        let mut c = rollouts::act(
            &r,
            action,
            &principal.name,
            reason.as_deref(),
            &view,
            &devices,
            now,
        )?;
        if rollouts::commit(store, &r, &mut c).await? {
            state.rollouts.published(&c);
            audit_detail(
                &req,
                json!({"rollout_id": r.id, "action": action_name, "state": c.rollout.state.as_str(), "reason": c.event.reason}),
            );
            return Ok(web::Json(detailed(&state, &c.rollout).await?));
        }
    }
    Err(ApiError::new(
        actix_web::http::StatusCode::CONFLICT,
        ErrorCode::Conflict,
        "the rollout kept changing; try again",
    ))
}

fn policy_info(p: &PolicyRecord) -> SavedPolicy {
    SavedPolicy {
        name: p.name.clone(),
        policy: p.policy.clone(),
        updated_by: p.updated_by.clone(),
        updated_at: p
            .updated_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

/// `GET /api/v1/rollout-policies` answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PolicyList {
    /// By name.
    pub policies: Vec<SavedPolicy>,
}

/// Saves a rollout policy under a name for reuse (operator or admin); replaces one of that name.
#[utoipa::path(
    tag = "rollouts",
    params(("name" = String, Path, description = "policy name")),
    request_body = RolloutPolicy,
    responses(
        (status = 201, description = "created", body = SavedPolicy),
        (status = 200, description = "replaced", body = SavedPolicy),
        (status = 400, body = flotilla_protocol::ApiErrorBody)
    ),
    security(("bearer" = []))
)]
#[put("/rollout-policies/{name}")]
pub async fn put_policy(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<RolloutPolicy>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Permission::Operate)?;
    let (p, created) = rollouts::save_policy(
        state.store.as_ref(),
        &path,
        &body,
        &principal.name,
        state.rollouts.now(),
    )
    .await?;
    audit_detail(&req, json!({"policy": p.name, "created": created}));
    let info = policy_info(&p);
    Ok(if created {
        HttpResponse::Created().json(info)
    } else {
        HttpResponse::Ok().json(info)
    })
}

/// Lists saved rollout policies.
#[utoipa::path(tag = "rollouts", responses((status = 200, body = PolicyList)), security(("bearer" = [])))]
#[get("/rollout-policies")]
pub async fn list_policies(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<web::Json<PolicyList>, ApiError> {
    principal.require(Permission::Read)?;
    let all = state.store.list_rollout_policies().await?;
    Ok(web::Json(PolicyList {
        policies: all.iter().map(policy_info).collect(),
    }))
}

/// One saved rollout policy.
#[utoipa::path(
    tag = "rollouts",
    params(("name" = String, Path, description = "policy name")),
    responses((status = 200, body = SavedPolicy), (status = 404, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[get("/rollout-policies/{name}")]
pub async fn get_policy(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<web::Json<SavedPolicy>, ApiError> {
    principal.require(Permission::Read)?;
    let p = state
        .store
        .get_rollout_policy(&path)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no saved rollout policy is named `{path}`")))?;
    Ok(web::Json(policy_info(&p)))
}

/// Deletes a saved rollout policy (rollouts created from it keep their copy).
#[utoipa::path(
    tag = "rollouts",
    params(("name" = String, Path, description = "policy name")),
    responses((status = 204, description = "deleted"), (status = 404, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[delete("/rollout-policies/{name}")]
pub async fn delete_policy(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Permission::Operate)?;
    state.store.delete_rollout_policy(&path).await?;
    audit_detail(&req, json!({"policy": path.as_str()}));
    Ok(HttpResponse::NoContent().finish())
}

fn webhook_info(w: &WebhookRecord, with_secret: bool) -> WebhookInfo {
    WebhookInfo {
        id: w.id.to_string(),
        url: w.url.clone(),
        secret: with_secret.then(|| w.secret.clone()),
        created_by: w.created_by.clone(),
        created_at: w
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

/// `GET /api/v1/webhooks` answer.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebhookList {
    /// Oldest first (never the secrets).
    pub webhooks: Vec<WebhookInfo>,
}

/// Registers a URL that receives every rollout transition, signed with HMAC-SHA256 (admin).
/// The secret is shown only in this answer.
#[utoipa::path(
    tag = "rollouts",
    request_body = CreateWebhookRequest,
    responses((status = 201, body = WebhookInfo), (status = 400, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[post("/webhooks")]
pub async fn create_webhook(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<CreateWebhookRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Permission::ManageTokens)?;
    let url = body.url.trim();
    let parsed = url.parse::<actix_web::http::Uri>().ok();
    let ok = parsed.as_ref().is_some_and(|u| {
        matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
    });
    if !ok || url.len() > 2048 {
        return Err(ApiError::invalid(
            "url must be an absolute http:// or https:// URL (at most 2048 characters)",
        ));
    }
    if let Err(reason) =
        crate::webhooks::check_url(url, state.settings.webhook_allow_private_destinations)
    {
        return Err(ApiError::new(
            actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
            flotilla_protocol::ErrorCode::WebhookDestinationRefused,
            reason,
        ));
    }
    let secret = match body.secret.as_deref().map(str::trim) {
        Some(s) if s.len() < 16 => {
            return Err(ApiError::invalid("secret must be at least 16 characters"))
        }
        Some(s) => s.to_owned(),
        None => crate::auth::generate_secret(),
    };
    let w = WebhookRecord {
        id: Uuid::new_v4(),
        url: url.to_owned(),
        secret,
        created_by: principal.name.clone(),
        created_at: state.rollouts.now(),
    };
    state.store.insert_webhook(&w).await?;
    // User-info in a URL is a credential: the audit log never sees it.
    audit_detail(
        &req,
        json!({"webhook_id": w.id, "url": crate::webhooks::redacted(&w.url)}),
    );
    Ok(HttpResponse::Created().json(webhook_info(&w, true)))
}

/// Lists webhooks (admin).
#[utoipa::path(tag = "rollouts", responses((status = 200, body = WebhookList)), security(("bearer" = [])))]
#[get("/webhooks")]
pub async fn list_webhooks(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<web::Json<WebhookList>, ApiError> {
    principal.require(Permission::ManageTokens)?;
    let all = state.store.list_webhooks().await?;
    Ok(web::Json(WebhookList {
        webhooks: all.iter().map(|w| webhook_info(w, false)).collect(),
    }))
}

/// Deletes a webhook (admin).
#[utoipa::path(
    tag = "rollouts",
    params(("id" = String, Path, description = "webhook id")),
    responses((status = 204, description = "deleted"), (status = 404, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[delete("/webhooks/{id}")]
pub async fn delete_webhook(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Permission::ManageTokens)?;
    let id = Uuid::parse_str(&path).map_err(|_| {
        ApiError::bad_request(
            ErrorCode::InvalidPath,
            format!("`{path}` is not a webhook id"),
        )
    })?;
    state.store.delete_webhook(id).await?;
    audit_detail(&req, json!({"webhook_id": id}));
    Ok(HttpResponse::NoContent().finish())
}
