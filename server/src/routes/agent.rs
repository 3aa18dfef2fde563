//! The agents' API: enrollment, the signed desired state (long-poll) and reports.

use actix_web::http::header;
use actix_web::{get, post, web, HttpRequest, HttpResponse};
use chrono::Utc;
use flotilla_protocol::agent::{
    is_valid_model_name, AgentReport, EnrollRequest, EnrollResponse, NewCredential,
    SignedDesiredState, ROTATE_CREDENTIAL_HEADER,
};
use flotilla_protocol::routes::TRUST_ROOT_HEADER;
use flotilla_protocol::ErrorCode;
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;

use crate::auth::{audit_detail, check_active, DevicePrincipal};
use crate::domain::fleet;
use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::{DeviceRecord, NewReport};

/// Response header with the suggested seconds until the next poll (jittered).
pub const POLL_AFTER_HEADER: &str = "flotilla-poll-after";

/// Enrolls a device with an enrollment token (no API token needed).
#[utoipa::path(
    tag = "agent",
    request_body = EnrollRequest,
    responses(
        (status = 201, body = EnrollResponse),
        (status = 400, description = "`label_not_allowed`: a requested label key the token neither sets nor allows (nothing is created, the token is not used); `invalid_argument`", body = flotilla_protocol::ApiErrorBody),
        (status = 401, description = "the enrollment token is unknown, revoked, expired or used up", body = flotilla_protocol::ApiErrorBody)
    )
)]
#[post("/enroll")]
pub async fn enroll(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<EnrollRequest>,
) -> Result<HttpResponse, ApiError> {
    let (device, credential) = fleet::enroll(state.store.as_ref(), &body, Utc::now())
        .await
        .map_err(|e| {
            if e.code == ErrorCode::Unauthorized {
                ApiError::unauthorized(e.message)
            } else {
                e.into()
            }
        })?;
    audit_detail(
        &req,
        json!({"device_id": device.id, "name": device.name, "status": device.status,
               "labels": device.labels, "requested_labels": body.labels}),
    );
    Ok(HttpResponse::Created().json(EnrollResponse {
        device_id: device.id.to_string(),
        credential,
        status: device.status,
        server_public_key_pem: state.server_key.public_key().to_pem(),
        poll_interval_secs: state.settings.poll_interval_secs,
    }))
}

/// Long-poll parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PollParams {
    /// Hold the request up to this many seconds while the state equals `If-None-Match`.
    wait: Option<u64>,
}

fn poll_after(state: &AppState) -> String {
    let base = state.settings.poll_interval_secs as f64;
    let jittered = base * rand::thread_rng().gen_range(0.8..1.2);
    format!("{}", jittered.round().max(1.0) as u64)
}

/// The device's signed desired state. With `If-None-Match: "<sequence>"` and `?wait=N`, the
/// request is held until the state changes (answered at once) or N seconds pass (304).
#[utoipa::path(
    tag = "agent",
    params(PollParams),
    responses(
        (status = 200, body = SignedDesiredState, headers(("etag" = String, description = "\"<sequence>\""), ("flotilla-poll-after" = u64, description = "seconds until the next poll"), ("flotilla-trust-root" = u64, description = "serial of the newest trust root (fetch `/api/v1/agent/trust-roots` when behind)"), ("flotilla-rotate-credential" = String, description = "`1` when an operator asked the device to rotate its credential (`POST /api/v1/agent/credential`)"))),
        (status = 304, description = "unchanged", headers(("flotilla-trust-root" = u64, description = "serial of the newest trust root"), ("flotilla-rotate-credential" = String, description = "`1` when an operator asked the device to rotate its credential"))),
        (status = 401, body = flotilla_protocol::ApiErrorBody),
        (status = 403, description = "the device awaits approval", body = flotilla_protocol::ApiErrorBody)
    ),
    security(("device" = []))
)]
#[get("/agent/desired-state")]
pub async fn desired_state(
    req: HttpRequest,
    caller: DevicePrincipal,
    state: web::Data<AppState>,
    params: web::Query<PollParams>,
) -> Result<HttpResponse, ApiError> {
    let wait = Duration::from_secs(
        params
            .wait
            .unwrap_or(0)
            .min(state.settings.max_long_poll_secs),
    );
    let deadline = tokio::time::Instant::now() + wait;
    let known = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned());
    // Subscribe before computing so a change in between is not missed; the generation is
    // read at the same point, before the database is.
    let mut changes = state.fleet_changes.subscribe();
    let mut stopping = state.stopping.subscribe();
    let mut generation = *changes.borrow_and_update();
    let mut record = caller.record;
    // An operator asked this device to rotate its credential: said on every answer, and a
    // held poll is answered at once rather than held.
    let mut rotate = false;
    loop {
        // The fast path: this device was given this ETag since the last fleet change, so its
        // state is what the agent has; no database round trip.
        let unchanged =
            known.is_some() && state.checkin.etag(caller.id, generation).as_ref() == known.as_ref();
        let (etag, trust_serial) = if unchanged {
            (
                known.clone().unwrap_or_default(),
                state.checkin.trust_root_serial().to_string(),
            )
        } else {
            let _turn = state
                .state_builds
                .acquire()
                .await
                .map_err(ApiError::internal)?;
            let device = match record.take() {
                Some(device) => device,
                None => active_device(&state, caller.id).await?,
            };
            rotate = device.credential_rotation_requested_at.is_some();
            let view = state
                .checkin
                .fleet_view(state.store.as_ref(), generation)
                .await?;
            let trust_serial = view.trust_root_serial().to_string();
            let (envelope, sequence) = fleet::desired_state(
                state.store.as_ref(),
                &state.server_key,
                &view,
                &device,
                Utc::now(),
            )
            .await?;
            let etag = format!("\"{sequence}\"");
            state.checkin.remember_etag(caller.id, &etag, generation);
            if known.as_deref() != Some(etag.as_str()) {
                let mut res = HttpResponse::Ok();
                res.insert_header((header::ETAG, etag))
                    .insert_header((header::CACHE_CONTROL, "no-store"))
                    .insert_header((POLL_AFTER_HEADER, poll_after(&state)))
                    .insert_header((TRUST_ROOT_HEADER, trust_serial));
                if rotate {
                    res.insert_header((ROTATE_CREDENTIAL_HEADER, "1"));
                }
                return Ok(res.json(envelope));
            }
            (etag, trust_serial)
        };
        // Not held (`wait=0`): answer now, without arming a timer and change watches.
        let changed = !wait.is_zero()
            && !rotate
            && tokio::select! {
                r = changes.changed() => r.is_ok(),
                _ = tokio::time::sleep_until(deadline) => false,
                // Shutting down: answer "unchanged" now; the agent polls again elsewhere or later.
                _ = stopping.wait_for(|s| *s) => false,
            };
        if !changed {
            let mut res = HttpResponse::NotModified();
            res.insert_header((header::ETAG, etag))
                .insert_header((POLL_AFTER_HEADER, poll_after(&state)))
                .insert_header((TRUST_ROOT_HEADER, trust_serial));
            if rotate {
                res.insert_header((ROTATE_CREDENTIAL_HEADER, "1"));
            }
            return Ok(res.finish());
        }
        // Something changed: recompute from the database, which also sees a revocation.
        generation = *changes.borrow_and_update();
    }
}

/// The stored device, which must still exist and be active.
async fn active_device(state: &AppState, id: uuid::Uuid) -> Result<DeviceRecord, ApiError> {
    let device = state
        .store
        .get_device(id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("this device no longer exists"))?;
    check_active(&device)?;
    Ok(device)
}

/// Records a report: slot states and a health window. Replayed reports (same `report_seq`) are
/// acknowledged and ignored, so an agent's offline queue can be resent safely.
#[utoipa::path(
    tag = "agent",
    request_body = AgentReport,
    responses(
        (status = 200, description = "`{\"accepted\": bool}`: false for a report already recorded"),
        (status = 400, body = flotilla_protocol::ApiErrorBody),
        (status = 401, body = flotilla_protocol::ApiErrorBody)
    ),
    security(("device" = []))
)]
#[post("/agent/report")]
pub async fn report(
    caller: DevicePrincipal,
    state: web::Data<AppState>,
    body: web::Json<AgentReport>,
) -> Result<HttpResponse, ApiError> {
    let report = body.into_inner();
    if report.slots.len() > 256 || report.slots.iter().any(|s| !is_valid_model_name(&s.model)) {
        return Err(ApiError::invalid(
            "report slots must name valid models (at most 256)",
        ));
    }
    if let Some(window) = &report.health {
        crate::domain::reports::validate_health(window).map_err(|e| {
            ApiError::new(
                actix_web::http::StatusCode::UNPROCESSABLE_ENTITY,
                flotilla_protocol::ErrorCode::InvalidReport,
                e.to_string(),
            )
        })?;
    }
    let slot_status = serde_json::to_value(&report.slots).map_err(ApiError::internal)?;
    let health = report
        .health
        .as_ref()
        .map(serde_json::to_value)
        .transpose()
        .map_err(ApiError::internal)?;
    let raw = serde_json::to_value(&report).map_err(ApiError::internal)?;
    // Written together with the reports that arrive meanwhile (one commit per batch).
    let accepted = state
        .reports
        .record(NewReport {
            device_id: caller.id,
            report_seq: report.report_seq,
            // The rollouts' clock: gates compare receive times with stage openings.
            at: state.rollouts.now(),
            report: raw,
            applied_sequence: report.applied_sequence,
            slot_status,
            health,
        })
        .await?;
    if accepted {
        state.rollouts.nudge();
    }
    Ok(HttpResponse::Ok().json(json!({"accepted": accepted})))
}

/// Issues the calling device a new credential. The credential presented keeps working until
/// the new one is first used, so a lost answer never locks the device out (it asks again);
/// from that first use on, only the new one works. A revoked device gets 401.
#[utoipa::path(
    tag = "agent",
    responses(
        (status = 200, body = NewCredential),
        (status = 401, description = "unknown, superseded or revoked credential", body = flotilla_protocol::ApiErrorBody),
        (status = 403, description = "the device awaits approval", body = flotilla_protocol::ApiErrorBody)
    ),
    security(("device" = []))
)]
#[post("/agent/credential")]
pub async fn rotate_credential(
    req: HttpRequest,
    caller: DevicePrincipal,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // The cache may have answered authentication: the status decides from the database.
    active_device(&state, caller.id).await?;
    let credential = crate::domain::credentials::issue_next(
        state.store.as_ref(),
        caller.id,
        &caller.credential_hash,
    )
    .await
    .map_err(|e| {
        if e.code == ErrorCode::Unauthorized {
            ApiError::unauthorized(e.message)
        } else {
            e.into()
        }
    })?;
    audit_detail(
        &req,
        json!({"device_id": caller.id, "credential": "new credential issued; the old one works until it is used"}),
    );
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(NewCredential { credential }))
}
