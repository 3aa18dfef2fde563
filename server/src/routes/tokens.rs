//! `/api/v1/tokens`: API tokens (admin only) and `/api/v1/whoami`.

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use chrono::{Duration, Utc};
use flotilla_protocol::tokens::{
    CreateTokenRequest, CreatedToken, Role, TokenInfo, TokenList, WhoAmI,
};
use serde_json::json;
use uuid::Uuid;

use crate::auth::{self, audit_detail, Permission, Principal};
use crate::error::ApiError;
use crate::routes::rfc3339;
use crate::startup::AppState;
use crate::store::{NewToken, TokenRecord};

/// The longest lifetime a token may be given (ten years).
const MAX_LIFETIME_SECS: u64 = 10 * 365 * 24 * 3600;

pub(crate) fn token_info(t: &TokenRecord) -> TokenInfo {
    TokenInfo {
        id: t.id.to_string(),
        name: t.name.clone(),
        role: t.role,
        prefix: t.prefix.clone(),
        created_at: rfc3339(t.created_at),
        expires_at: t.expires_at.map(rfc3339),
        revoked_at: t.revoked_at.map(rfc3339),
        last_used_at: t.last_used_at.map(rfc3339),
    }
}

/// A token name: 1–64 printable characters.
fn parse_name(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "token name must be 1 to 64 printable characters",
        ));
    }
    Ok(name.to_owned())
}

fn parse_token_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::bad_request(
            flotilla_protocol::ErrorCode::InvalidPath,
            format!("`{raw}` is not a token id"),
        )
    })
}

/// Creates a token. The secret is in this response only.
#[utoipa::path(
    tag = "tokens",
    request_body = CreateTokenRequest,
    responses(
        (status = 201, body = CreatedToken),
        (status = 400, body = flotilla_protocol::ApiErrorBody),
        (status = 401, body = flotilla_protocol::ApiErrorBody),
        (status = 403, body = flotilla_protocol::ApiErrorBody)
    ),
    security(("bearer" = []))
)]
#[post("/tokens")]
pub async fn create_token(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<CreateTokenRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Permission::ManageTokens)?;
    let body = body.into_inner();
    let name = parse_name(&body.name)?;
    let now = Utc::now();
    let expires_at = match body.expires_in_secs {
        Some(0) => return Err(ApiError::invalid("expires_in_secs must be positive")),
        Some(s) if s > MAX_LIFETIME_SECS => {
            return Err(ApiError::invalid(
                "expires_in_secs may be at most ten years",
            ))
        }
        Some(s) => Some(now + Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX))),
        None => None,
    };
    let secret = auth::generate_secret();
    let record = state
        .store
        .insert_token(&NewToken {
            id: Uuid::new_v4(),
            name,
            role: body.role,
            secret_hash: auth::hash_secret(&secret),
            prefix: auth::shown_prefix(&secret),
            created_at: now,
            expires_at,
        })
        .await?;
    audit_detail(
        &req,
        json!({"token_id": record.id, "name": record.name, "role": record.role}),
    );
    Ok(HttpResponse::Created().json(CreatedToken {
        info: token_info(&record),
        token: secret,
    }))
}

/// Lists all tokens (never their secrets).
#[utoipa::path(
    tag = "tokens",
    responses((status = 200, body = TokenList), (status = 403, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[get("/tokens")]
pub async fn list_tokens(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<web::Json<TokenList>, ApiError> {
    principal.require(Permission::ManageTokens)?;
    let tokens = state.store.list_tokens().await?;
    Ok(web::Json(TokenList {
        tokens: tokens.iter().map(token_info).collect(),
    }))
}

/// Revokes a token; it stops working at once. The last active admin token cannot be revoked.
#[utoipa::path(
    tag = "tokens",
    params(("id" = String, Path, description = "token id")),
    responses(
        (status = 200, body = TokenInfo),
        (status = 404, body = flotilla_protocol::ApiErrorBody),
        (status = 409, description = "it is the last active admin token", body = flotilla_protocol::ApiErrorBody)
    ),
    security(("bearer" = []))
)]
#[delete("/tokens/{id}")]
pub async fn revoke_token(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<web::Json<TokenInfo>, ApiError> {
    principal.require(Permission::ManageTokens)?;
    let id = parse_token_id(&path)?;
    let now = Utc::now();
    let tokens = state.store.list_tokens().await?;
    let target = tokens
        .iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::not_found(format!("token {id} not found")))?;
    let active_admins = tokens
        .iter()
        .filter(|t| t.role == Role::Admin && t.is_active(now))
        .count();
    if target.role == Role::Admin && target.is_active(now) && active_admins <= 1 {
        return Err(ApiError::conflict(
            "this is the last active admin token; create another admin token before revoking it",
        ));
    }
    let record = state.store.revoke_token(id, now).await?;
    audit_detail(&req, json!({"token_id": record.id, "name": record.name}));
    Ok(web::Json(token_info(&record)))
}

/// Who the presented token belongs to.
#[utoipa::path(
    tag = "tokens",
    responses((status = 200, body = WhoAmI), (status = 401, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[get("/whoami")]
pub async fn whoami(principal: Principal) -> web::Json<WhoAmI> {
    web::Json(WhoAmI {
        token_id: principal.token_id.to_string(),
        name: principal.name,
        role: principal.role,
    })
}
