//! `/api/v1/enrollment-tokens`, `/api/v1/devices` and `/api/v1/deployments`.

use actix_web::{delete, get, post, put, web, HttpRequest, HttpResponse};
use chrono::Utc;
use flotilla_protocol::devices::{
    CohortHealth, CreateEnrollmentTokenRequest, CreatedEnrollmentToken, DeployRequest,
    DeploymentInfo, DeploymentList, DeviceHealthHistory, DeviceInfo, DeviceList,
    EnrollmentTokenInfo, EnrollmentTokenList, SetLabelsRequest,
};
use flotilla_protocol::placement::PlacementReport;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::auth::{audit_detail, Permission, Principal};
use crate::domain::names::ModelName;
use crate::domain::{fleet, health_history, placement as placement_data, DomainError};
use crate::error::ApiError;
use crate::routes::rfc3339;
use crate::startup::AppState;
use crate::store::{DeploymentRecord, DeviceRecord, EnrollmentTokenRecord};

fn token_info(t: &EnrollmentTokenRecord) -> EnrollmentTokenInfo {
    EnrollmentTokenInfo {
        id: t.id.to_string(),
        name: t.name.clone(),
        prefix: t.prefix.clone(),
        labels: t.labels.clone(),
        allowed_device_labels: t.allowed_device_labels.clone(),
        require_approval: t.require_approval,
        max_uses: t.max_uses,
        uses: t.uses,
        created_by: t.created_by.clone(),
        created_at: rfc3339(t.created_at),
        expires_at: rfc3339(t.expires_at),
        revoked_at: t.revoked_at.map(rfc3339),
    }
}

pub(crate) fn device_info(d: &DeviceRecord, deployments: &[DeploymentRecord]) -> DeviceInfo {
    let desired = fleet::applicable(deployments, &d.labels)
        .into_iter()
        .map(|(m, dep)| (m.to_owned(), dep.version.clone()))
        .collect();
    DeviceInfo {
        id: d.id.to_string(),
        name: d.name.clone(),
        status: d.status.clone(),
        labels: d.labels.clone(),
        hardware: d.hardware.clone(),
        agent_version: d.agent_version.clone(),
        enrolled_at: rfc3339(d.enrolled_at),
        last_seen_at: d.last_seen_at.map(rfc3339),
        desired_sequence: d.desired_sequence,
        applied_sequence: d.applied_sequence,
        desired,
        slots: d.slot_status.clone(),
        health: d.last_health.clone(),
        credential_rotation_requested: d.credential_rotation_requested_at.is_some(),
    }
}

/// Creates an enrollment token (operator or admin). The secret is shown once.
#[utoipa::path(
    tag = "devices",
    request_body = CreateEnrollmentTokenRequest,
    responses((status = 201, body = CreatedEnrollmentToken), (status = 400, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[post("/enrollment-tokens")]
pub async fn create_enrollment_token(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<CreateEnrollmentTokenRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Permission::Operate)?;
    let (token, secret) =
        fleet::create_enrollment_token(state.store.as_ref(), &body, &principal.name, Utc::now())
            .await?;
    audit_detail(
        &req,
        json!({"enrollment_token_id": token.id, "name": token.name, "labels": token.labels,
               "allowed_device_labels": token.allowed_device_labels}),
    );
    Ok(HttpResponse::Created().json(CreatedEnrollmentToken {
        info: token_info(&token),
        token: secret,
    }))
}

/// Lists enrollment tokens (operator or admin).
#[utoipa::path(tag = "devices", responses((status = 200, body = EnrollmentTokenList)), security(("bearer" = [])))]
#[get("/enrollment-tokens")]
pub async fn list_enrollment_tokens(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<web::Json<EnrollmentTokenList>, ApiError> {
    principal.require(Permission::Operate)?;
    let tokens = state.store.list_enrollment_tokens().await?;
    Ok(web::Json(EnrollmentTokenList {
        tokens: tokens.iter().map(token_info).collect(),
    }))
}

/// Revokes an enrollment token (operator or admin).
#[utoipa::path(
    tag = "devices",
    params(("id" = String, Path, description = "enrollment token id")),
    responses((status = 200, body = EnrollmentTokenInfo), (status = 404, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[delete("/enrollment-tokens/{id}")]
pub async fn revoke_enrollment_token(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<web::Json<EnrollmentTokenInfo>, ApiError> {
    principal.require(Permission::Operate)?;
    let id = parse_id(&path, "enrollment token")?;
    let token = state.store.revoke_enrollment_token(id, Utc::now()).await?;
    audit_detail(&req, json!({"enrollment_token_id": token.id}));
    Ok(web::Json(token_info(&token)))
}

fn parse_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::bad_request(
            flotilla_protocol::ErrorCode::InvalidPath,
            format!("`{raw}` is not a {what} id"),
        )
    })
}

/// Filters for the device list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeviceFilter {
    /// Label selector, `key=value[,key=value...]`.
    selector: Option<String>,
    /// `active`, `pending` or `revoked`.
    status: Option<String>,
}

/// Lists devices, optionally filtered by labels and status.
#[utoipa::path(
    tag = "devices",
    params(DeviceFilter),
    responses((status = 200, body = DeviceList), (status = 400, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[get("/devices")]
pub async fn list_devices(
    principal: Principal,
    state: web::Data<AppState>,
    filter: web::Query<DeviceFilter>,
) -> Result<web::Json<DeviceList>, ApiError> {
    principal.require(Permission::Read)?;
    let selector = fleet::parse_selector(filter.selector.as_deref().unwrap_or(""))?;
    check_status(filter.status.as_deref())?;
    let deployments = state.store.list_deployments().await?;
    let devices = state
        .store
        .list_devices()
        .await?
        .iter()
        .filter(|d| fleet::matches(&selector, &d.labels))
        .filter(|d| filter.status.as_ref().is_none_or(|s| &d.status == s))
        .map(|d| device_info(d, &deployments))
        .collect();
    Ok(web::Json(DeviceList { devices }))
}

fn check_status(status: Option<&str>) -> Result<(), ApiError> {
    match status {
        None | Some("active" | "pending" | "revoked") => Ok(()),
        Some(_) => Err(ApiError::bad_request(
            flotilla_protocol::ErrorCode::InvalidQuery,
            "status must be active, pending or revoked",
        )),
    }
}

/// One device.
#[utoipa::path(
    tag = "devices",
    params(("id" = String, Path, description = "device id")),
    responses((status = 200, body = DeviceInfo), (status = 404, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[get("/devices/{id}")]
pub async fn get_device(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<web::Json<DeviceInfo>, ApiError> {
    principal.require(Permission::Read)?;
    let device = fleet::device(state.store.as_ref(), &path).await?;
    let deployments = state.store.list_deployments().await?;
    Ok(web::Json(device_info(&device, &deployments)))
}

/// How many reports the device history returns at most.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// Latest reports to include (1–1000, default 500).
    limit: Option<u32>,
}

/// A device's health over time: one point per model version per report it sent, oldest first.
#[utoipa::path(
    tag = "devices",
    params(("id" = String, Path, description = "device id"), HistoryQuery),
    responses((status = 200, body = DeviceHealthHistory), (status = 404, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[get("/devices/{id}/health")]
pub async fn device_health(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<web::Json<DeviceHealthHistory>, ApiError> {
    principal.require(Permission::Read)?;
    let device = fleet::device(state.store.as_ref(), &path).await?;
    let limit = query.limit.unwrap_or(500).clamp(1, 1000);
    let reports = state.store.list_reports(device.id, limit).await?;
    Ok(web::Json(DeviceHealthHistory {
        device_id: device.id.to_string(),
        points: health_history::device_points(&reports),
    }))
}

/// Which devices, models and time range a cohort's health covers.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CohortQuery {
    /// Label selector, `key=value[,key=value...]`; empty means every device.
    selector: Option<String>,
    /// `active`, `pending` or `revoked`.
    status: Option<String>,
    /// Only this model.
    model: Option<String>,
    /// How far back, seconds (60–604800, default 3600).
    since_secs: Option<u64>,
    /// Bucket width, seconds (at least 10 and since_secs / 1000, default 60).
    bucket_secs: Option<u64>,
}

/// Reports scanned at most for one cohort answer, newest first.
const COHORT_REPORT_LIMIT: u32 = 50_000;

/// How a cohort (the devices matching a selector and status) behaved over time: their health
/// windows summed per time bucket, model and version.
#[utoipa::path(
    tag = "devices",
    params(CohortQuery),
    responses((status = 200, body = CohortHealth), (status = 400, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[get("/cohort-health")]
pub async fn cohort_health(
    principal: Principal,
    state: web::Data<AppState>,
    query: web::Query<CohortQuery>,
) -> Result<web::Json<CohortHealth>, ApiError> {
    principal.require(Permission::Read)?;
    let selector = fleet::parse_selector(query.selector.as_deref().unwrap_or(""))?;
    check_status(query.status.as_deref())?;
    let invalid = |m: &str| ApiError::bad_request(flotilla_protocol::ErrorCode::InvalidQuery, m);
    let since_secs = query.since_secs.unwrap_or(3600);
    if !(60..=7 * 24 * 3600).contains(&since_secs) {
        return Err(invalid("since_secs must be between 60 and 604800"));
    }
    let bucket_secs = query.bucket_secs.unwrap_or(60);
    if bucket_secs < 10 || since_secs / bucket_secs > 1000 {
        return Err(invalid(
            "bucket_secs must be at least 10 and make at most 1000 buckets",
        ));
    }
    let model = query
        .model
        .as_deref()
        .map(ModelName::parse)
        .transpose()
        .map_err(DomainError::from)?
        .map(|m| m.to_string());
    let members: std::collections::HashSet<Uuid> = state
        .store
        .list_devices()
        .await?
        .iter()
        .filter(|d| fleet::matches(&selector, &d.labels))
        .filter(|d| query.status.as_ref().is_none_or(|s| &d.status == s))
        .map(|d| d.id)
        .collect();
    let now = Utc::now();
    let since = now - chrono::Duration::seconds(i64::try_from(since_secs).unwrap_or(3600));
    let reports = state.store.recent_reports(COHORT_REPORT_LIMIT).await?;
    let truncated = reports.len() == COHORT_REPORT_LIMIT as usize
        && reports.last().is_some_and(|(_, at, _)| *at > since);
    Ok(web::Json(CohortHealth {
        selector: fleet::selector_text(&selector),
        status: query.status.clone(),
        model: model.clone(),
        devices: members.len() as u64,
        bucket_secs,
        points: health_history::cohort_points(
            &reports,
            &members,
            model.as_deref(),
            since,
            bucket_secs,
        ),
        truncated,
    }))
}

/// Replaces a device's labels (operator or admin); its desired state follows at once.
#[utoipa::path(
    tag = "devices",
    params(("id" = String, Path, description = "device id")),
    request_body = SetLabelsRequest,
    responses((status = 200, body = DeviceInfo), (status = 404, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[put("/devices/{id}/labels")]
pub async fn set_labels(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<SetLabelsRequest>,
) -> Result<web::Json<DeviceInfo>, ApiError> {
    principal.require(Permission::Operate)?;
    let device = fleet::device(state.store.as_ref(), &path).await?;
    // Same rules as at enrollment.
    fleet::validate_labels(&body.labels)?;
    let device = state
        .store
        .set_device_labels(device.id, &body.labels)
        .await?;
    state.fleet_changed();
    audit_detail(
        &req,
        json!({"device_id": device.id, "labels": device.labels}),
    );
    let deployments = state.store.list_deployments().await?;
    Ok(web::Json(device_info(&device, &deployments)))
}

async fn set_status(
    req: &HttpRequest,
    principal: &Principal,
    state: &AppState,
    id: &str,
    status: &str,
) -> Result<web::Json<DeviceInfo>, ApiError> {
    principal.require(Permission::Operate)?;
    let device = fleet::device(state.store.as_ref(), id).await?;
    if status == "active" && device.status == "revoked" {
        return Err(ApiError::conflict(
            "a revoked device cannot be approved; enroll it again",
        ));
    }
    let device = state.store.set_device_status(device.id, status).await?;
    state.fleet_changed();
    audit_detail(req, json!({"device_id": device.id, "status": status}));
    let deployments = state.store.list_deployments().await?;
    Ok(web::Json(device_info(&device, &deployments)))
}

/// Approves a pending device (operator or admin).
#[utoipa::path(
    tag = "devices",
    params(("id" = String, Path, description = "device id")),
    responses((status = 200, body = DeviceInfo), (status = 409, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[post("/devices/{id}/approve")]
pub async fn approve(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<web::Json<DeviceInfo>, ApiError> {
    set_status(&req, &principal, &state, &path, "active").await
}

/// Revokes a device (operator or admin): its credential stops working at once.
#[utoipa::path(
    tag = "devices",
    params(("id" = String, Path, description = "device id")),
    responses((status = 200, body = DeviceInfo), (status = 404, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[post("/devices/{id}/revoke")]
pub async fn revoke(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<web::Json<DeviceInfo>, ApiError> {
    set_status(&req, &principal, &state, &path, "revoked").await
}

/// Asks a device to rotate its credential (operator or admin). The device learns it from the
/// `flotilla-rotate-credential` header of its next desired-state answer (held polls are
/// answered at once) and calls `POST /api/v1/agent/credential`; until the new credential is
/// first used, `credential_rotation_requested` stays true.
#[utoipa::path(
    operation_id = "rotate_device_credential",
    tag = "devices",
    params(("id" = String, Path, description = "device id")),
    responses(
        (status = 200, body = DeviceInfo),
        (status = 400, description = "`invalid_path`: not a device id", body = flotilla_protocol::ApiErrorBody),
        (status = 401, body = flotilla_protocol::ApiErrorBody),
        (status = 403, description = "the token's role is not operator or admin", body = flotilla_protocol::ApiErrorBody),
        (status = 404, body = flotilla_protocol::ApiErrorBody),
        (status = 409, description = "the device is revoked", body = flotilla_protocol::ApiErrorBody)
    ),
    security(("bearer" = []))
)]
#[post("/devices/{id}/rotate-credential")]
pub async fn rotate_credential(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<web::Json<DeviceInfo>, ApiError> {
    principal.require(Permission::Operate)?;
    let device = fleet::device(state.store.as_ref(), &path).await?;
    let device =
        crate::domain::credentials::request_rotation(state.store.as_ref(), device.id, Utc::now())
            .await?;
    // Wakes the device's held poll, which then answers with the rotation header.
    state.fleet_changed();
    audit_detail(
        &req,
        json!({"device_id": device.id, "credential": "rotation requested"}),
    );
    let deployments = state.store.list_deployments().await?;
    Ok(web::Json(device_info(&device, &deployments)))
}

/// Deletes a device and its report history (operator or admin).
#[utoipa::path(
    tag = "devices",
    params(("id" = String, Path, description = "device id")),
    responses((status = 204, description = "deleted"), (status = 404, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[delete("/devices/{id}")]
pub async fn delete_device(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Permission::Operate)?;
    let device = fleet::device(state.store.as_ref(), &path).await?;
    state.store.delete_device(device.id).await?;
    // Forget its cached credential on every replica, and release its held long-poll.
    state.fleet_changed();
    audit_detail(&req, json!({"device_id": device.id, "name": device.name}));
    Ok(HttpResponse::NoContent().finish())
}

fn deployment_info(
    d: &DeploymentRecord,
    devices: &[DeviceRecord],
    all: &[DeploymentRecord],
) -> DeploymentInfo {
    let count = devices
        .iter()
        .filter(|dev| dev.status != "revoked")
        .filter(|dev| {
            fleet::applicable(all, &dev.labels)
                .get(d.model_name.as_str())
                .is_some_and(|x| x.id == d.id)
        })
        .count();
    DeploymentInfo {
        id: d.id.to_string(),
        model: d.model_name.clone(),
        version: d.version.clone(),
        selector: d.selector_text.clone(),
        created_by: d.created_by.clone(),
        updated_at: rfc3339(d.updated_at),
        devices: count as u64,
        escalation: d.escalation.clone(),
    }
}

/// Sets which version of a model the devices matching a selector run (operator or admin).
/// Updating the same model and selector replaces the version.
#[utoipa::path(
    tag = "devices",
    request_body = DeployRequest,
    responses(
        (status = 201, description = "created", body = DeploymentInfo),
        (status = 200, description = "updated", body = DeploymentInfo),
        (status = 404, body = flotilla_protocol::ApiErrorBody),
        (status = 409, description = "the version is yanked", body = flotilla_protocol::ApiErrorBody)
    ),
    security(("bearer" = []))
)]
#[put("/deployments")]
pub async fn deploy(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<DeployRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Permission::Operate)?;
    let (d, created) = fleet::deploy(
        state.store.as_ref(),
        &body.model,
        &body.version,
        &body.selector,
        body.escalation.clone(),
        &principal.name,
        Utc::now(),
    )
    .await?;
    state.fleet_changed();
    audit_detail(
        &req,
        json!({"model": d.model_name, "version": d.version, "selector": d.selector_text, "escalation": d.escalation}),
    );
    let all = state.store.list_deployments().await?;
    let devices = state.store.list_devices().await?;
    let stored = all
        .iter()
        .find(|x| x.model_id == d.model_id && x.selector_text == d.selector_text)
        .unwrap_or(&d);
    let info = deployment_info(stored, &devices, &all);
    Ok(if created {
        HttpResponse::Created().json(info)
    } else {
        HttpResponse::Ok().json(info)
    })
}

/// Lists deployments with the number of devices each selects.
#[utoipa::path(tag = "devices", responses((status = 200, body = DeploymentList)), security(("bearer" = [])))]
#[get("/deployments")]
pub async fn list_deployments(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<web::Json<DeploymentList>, ApiError> {
    principal.require(Permission::Read)?;
    let all = state.store.list_deployments().await?;
    let devices = state.store.list_devices().await?;
    Ok(web::Json(DeploymentList {
        deployments: all
            .iter()
            .map(|d| deployment_info(d, &devices, &all))
            .collect(),
    }))
}

/// Removes a deployment (operator or admin): its devices stop being told to run that model.
#[utoipa::path(
    tag = "devices",
    params(("id" = String, Path, description = "deployment id")),
    responses((status = 204, description = "deleted"), (status = 404, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[delete("/deployments/{id}")]
pub async fn delete_deployment(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Permission::Operate)?;
    let id = parse_id(&path, "deployment")?;
    state.store.delete_deployment(id).await?;
    state.fleet_changed();
    audit_detail(&req, json!({"deployment_id": id}));
    Ok(HttpResponse::NoContent().finish())
}

/// What to compare in the placement report.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PlacementQuery {
    /// Model name.
    model: String,
    /// `hardware` (default: architecture, cores and memory) or a label key such as `class`.
    group_by: Option<String>,
}

/// How a model's versions behave per device class on the edge, and on the server (any role).
#[utoipa::path(
    tag = "devices",
    params(PlacementQuery),
    responses((status = 200, body = PlacementReport), (status = 400, body = flotilla_protocol::ApiErrorBody), (status = 404, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[get("/placement")]
pub async fn placement(
    principal: Principal,
    state: web::Data<AppState>,
    query: web::Query<PlacementQuery>,
) -> Result<web::Json<PlacementReport>, ApiError> {
    principal.require(Permission::Read)?;
    let name = ModelName::parse(&query.model).map_err(DomainError::from)?;
    if state.store.get_model(name.as_str()).await?.is_none() {
        return Err(DomainError::not_found(format!("model `{name}` not found")).into());
    }
    let group_by = query.group_by.as_deref().unwrap_or("hardware");
    if group_by != "hardware" {
        // Any label key, checked by the enrollment rules.
        fleet::validate_labels(&[(group_by.to_owned(), String::new())].into())?;
    }
    let devices = state.store.list_devices().await?;
    let (served, _) = state.inference.service().recorder().totals();
    Ok(web::Json(PlacementReport {
        model: name.to_string(),
        group_by: group_by.to_owned(),
        edge: placement_data::edge_rows(&devices, name.as_str(), group_by),
        server: placement_data::server_rows(&served, name.as_str()),
    }))
}
