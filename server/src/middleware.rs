//! Cross-cutting request handling: the audit trail, the JSON error contract, and ETags on
//! reads.

use actix_web::body::{BoxBody, EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::{ErrorHandlerResponse, Next};
use actix_web::{web, HttpMessage, HttpResponse};
use chrono::Utc;
use sha2::{Digest, Sha256};

use crate::auth::{AuditDetail, Principal};
use crate::error::body_for_status;
use crate::startup::AppState;
use crate::store::{AuditOutcome, NewAuditEntry};

/// Writes an audit record for every API call that may change state (any method but GET, HEAD
/// and OPTIONS), whether it succeeded, was refused or failed, except accepted agent reports. The record is written before the
/// response leaves, so a client that saw the response can read its record.
pub async fn audit_trail(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let method = req.method().clone();
    let audited = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS)
        && req.path().starts_with(flotilla_protocol::routes::API_V1);
    if !audited {
        return next.call(req).await;
    }
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let path = req.path().to_owned();
    let res = next.call(req).await?;
    // An accepted agent report is telemetry, kept in the device's report history; a fleet
    // reporting every minute would otherwise fill the audit log with it. Refused and failed
    // reports are still recorded.
    if path == flotilla_protocol::routes::AGENT_REPORT && res.status().is_success() {
        return Ok(res);
    }
    // No route matched, so no handler ran and nothing changed; and no handler authenticated
    // the caller, so recording it would let anyone fill the audit log anonymously.
    if res.request().match_pattern().is_none()
        && res.request().extensions().get::<Principal>().is_none()
    {
        return Ok(res);
    }
    if let Some(state) = state {
        let request = res.request();
        let principal = request.extensions().get::<Principal>().cloned();
        let detail = request
            .extensions()
            .get::<AuditDetail>()
            .map(|d| d.0.clone());
        let status = res.status().as_u16();
        let entry = NewAuditEntry {
            at: Utc::now(),
            actor: principal
                .as_ref()
                .map_or_else(|| "anonymous".to_owned(), |p| p.name.clone()),
            token_id: principal.map(|p| p.token_id),
            method: method.to_string(),
            route: request.match_pattern().unwrap_or_else(|| path.clone()),
            path,
            status,
            outcome: AuditOutcome::from_status(status),
            detail,
        };
        if let Err(e) = state.store.append_audit(&entry).await {
            tracing::error!(error = %e, method = %entry.method, path = %entry.path, "could not write audit record");
        }
    }
    Ok(res)
}

/// Gives actix's own error responses (unknown route, wrong method, body limits...) the JSON
/// error body. Responses that already carry JSON are left alone.
pub fn json_error_body<B>(res: ServiceResponse<B>) -> actix_web::Result<ErrorHandlerResponse<B>> {
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
    }
    let status = res.status();
    let (req, _) = res.into_parts();
    let response: HttpResponse<BoxBody> = HttpResponse::build(status).json(body_for_status(status));
    let res = ServiceResponse::new(req, response).map_into_right_body();
    Ok(ErrorHandlerResponse::Response(res))
}

/// Kept so the type of [`json_error_body`]'s output is nameable in tests.
pub type JsonErrorBody<B> = EitherBody<B, BoxBody>;

/// Gives the management API's successful GET answers a weak `ETag` (a digest of the body) and
/// answers `304 Not Modified` without a body when the client's `If-None-Match` holds it, so
/// pollers such as the dashboard transfer nothing while nothing changed. The answer is still
/// computed; answers that set their own `ETag` (artifacts, desired states) are left alone.
pub async fn etag_for_reads(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let path = req.path();
    let applies = req.method() == Method::GET
        && path.starts_with(flotilla_protocol::routes::API_V1)
        && !path.starts_with(flotilla_protocol::routes::ARTIFACTS_SHA256)
        && !path.starts_with("/api/v1/agent/");
    if !applies {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let if_none_match = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let res = next.call(req).await?;
    if res.status() != StatusCode::OK || res.headers().contains_key(header::ETAG) {
        return Ok(res.map_into_boxed_body());
    }
    let (request, response) = res.into_parts();
    let (mut head, body) = response.into_parts();
    let bytes = match actix_web::body::to_bytes(body).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let e: Box<dyn std::error::Error> = e.into();
            tracing::error!(error = %e, "could not read a response body to tag it");
            return Err(actix_web::error::ErrorInternalServerError(
                "could not produce the response",
            ));
        }
    };
    let digest = Sha256::digest(&bytes);
    let tag = format!("W/\"{}\"", hex::encode(&digest[..16]));
    let matched = if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let headers = head.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(&tag) {
        headers.insert(header::ETAG, v);
    }
    // Tokens authorise these answers: a browser may keep them, but must ask again each time.
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("private, no-cache"),
    );
    let response = if matched {
        headers.remove(header::CONTENT_TYPE);
        let mut r = head.set_body(BoxBody::new(()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        head.set_body(BoxBody::new(bytes))
    };
    Ok(ServiceResponse::new(request, response))
}
