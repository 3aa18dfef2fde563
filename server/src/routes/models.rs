//! `/api/v1/models` and `/api/v1/models/{name}/versions`.

use actix_web::{get, post, web, HttpRequest, HttpResponse};
use chrono::Utc;
use flotilla_protocol::registry::{
    ArtifactRef, CreateModelRequest, CreateVersionRequest, ModelInfo, ModelList, ModelVersionInfo,
    VersionList, YankRequest,
};
use serde_json::json;

use crate::auth::{audit_detail, Permission, Principal};
use crate::domain::registry::{self, PublishContext, ThresholdAuthority};
use crate::error::ApiError;
use crate::routes::rfc3339;
use crate::startup::AppState;
use crate::store::{ModelRecord, Store, VersionRecord};
use flotilla_protocol::tokens::Role;

pub(crate) fn version_info(v: &VersionRecord) -> ModelVersionInfo {
    ModelVersionInfo {
        model: v.model_name.clone(),
        version: v.version.clone(),
        artifact: ArtifactRef {
            sha256: v.artifact_sha256.clone(),
            size: v.artifact_size,
        },
        signers: v.signers.clone(),
        inputs: v.inputs.clone(),
        outputs: v.outputs.clone(),
        signed_facts: v.signed_facts.clone(),
        published_by: v.published_by.clone(),
        created_at: rfc3339(v.created_at),
        yanked_at: v.yanked_at.map(rfc3339),
        yank_reason: v.yank_reason.clone(),
    }
}

async fn model_info(store: &dyn Store, m: &ModelRecord) -> Result<ModelInfo, ApiError> {
    let versions = registry::versions(store, m).await?;
    Ok(ModelInfo {
        name: m.name.clone(),
        description: m.description.clone(),
        labels: m.labels.clone(),
        signing_threshold: m.signing_threshold,
        created_at: rfc3339(m.created_at),
        latest_version: versions
            .iter()
            .find(|v| v.yanked_at.is_none())
            .map(|v| v.version.clone()),
        version_count: versions.len() as u64,
    })
}

/// Creates a model (publisher or admin).
#[utoipa::path(
    tag = "models",
    request_body = CreateModelRequest,
    responses(
        (status = 201, body = ModelInfo),
        (status = 400, body = flotilla_protocol::ApiErrorBody),
        (status = 409, body = flotilla_protocol::ApiErrorBody)
    ),
    security(("bearer" = []))
)]
#[post("/models")]
pub async fn create_model(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    body: web::Json<CreateModelRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Permission::Publish)?;
    let authority = if principal.role == Role::Admin {
        ThresholdAuthority::Admin
    } else {
        ThresholdAuthority::AtLeastGlobal
    };
    let created =
        registry::create_model(state.store.as_ref(), &body, authority, Utc::now()).await?;
    let model = created.model;
    audit_detail(
        &req,
        json!({
            "model": model.name,
            "signing_threshold": model.signing_threshold,
            "global_threshold": created.global_threshold,
        }),
    );
    Ok(HttpResponse::Created().json(model_info(state.store.as_ref(), &model).await?))
}

/// Lists models.
#[utoipa::path(tag = "models", responses((status = 200, body = ModelList)), security(("bearer" = [])))]
#[get("/models")]
pub async fn list_models(
    principal: Principal,
    state: web::Data<AppState>,
) -> Result<web::Json<ModelList>, ApiError> {
    principal.require(Permission::ReadModels)?;
    let mut models = Vec::new();
    for m in state.store.list_models().await? {
        models.push(model_info(state.store.as_ref(), &m).await?);
    }
    Ok(web::Json(ModelList { models }))
}

/// One model.
#[utoipa::path(
    tag = "models",
    params(("name" = String, Path, description = "model name")),
    responses((status = 200, body = ModelInfo), (status = 404, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[get("/models/{name}")]
pub async fn get_model(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<web::Json<ModelInfo>, ApiError> {
    principal.require(Permission::ReadModels)?;
    let model = registry::model(state.store.as_ref(), &path).await?;
    Ok(web::Json(model_info(state.store.as_ref(), &model).await?))
}

/// Publishes a version: verifies the signatures, the artifact and the graph, then records it.
/// Publishing the same version with the same artifact again answers 200 with the existing one.
#[utoipa::path(
    tag = "models",
    params(("name" = String, Path, description = "model name")),
    request_body = CreateVersionRequest,
    responses(
        (status = 201, description = "published", body = ModelVersionInfo),
        (status = 200, description = "already published with the same artifact", body = ModelVersionInfo),
        (status = 400, description = "signature, artifact or model rejected", body = flotilla_protocol::ApiErrorBody),
        (status = 409, description = "version exists with other content, or is not higher than the latest", body = flotilla_protocol::ApiErrorBody)
    ),
    security(("bearer" = []))
)]
#[post("/models/{name}/versions")]
pub async fn publish_version(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<CreateVersionRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Permission::Publish)?;
    let model = registry::model(state.store.as_ref(), &path).await?;
    let ctx = PublishContext {
        store: state.store.as_ref(),
        blobs: &state.blobs,
        validation: &state.validation,
        publisher: &principal.name,
        now: Utc::now(),
    };
    let published = registry::publish_version(&ctx, &model, body.into_inner()).await?;
    let v = &published.version;
    audit_detail(
        &req,
        json!({
            "model": v.model_name, "version": v.version, "sha256": v.artifact_sha256,
            "signers": v.signers.iter().map(|s| &s.key_id).collect::<Vec<_>>(), "created": published.created,
        }),
    );
    let mut res = if published.created {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(res.json(version_info(v)))
}

/// A model's versions, highest first.
#[utoipa::path(
    tag = "models",
    params(("name" = String, Path, description = "model name")),
    responses((status = 200, body = VersionList), (status = 404, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[get("/models/{name}/versions")]
pub async fn list_versions(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<web::Json<VersionList>, ApiError> {
    principal.require(Permission::ReadModels)?;
    let model = registry::model(state.store.as_ref(), &path).await?;
    let versions = registry::versions(state.store.as_ref(), &model).await?;
    Ok(web::Json(VersionList {
        versions: versions.iter().map(version_info).collect(),
    }))
}

/// One version.
#[utoipa::path(
    tag = "models",
    params(("name" = String, Path, description = "model name"), ("version" = String, Path, description = "semantic version")),
    responses((status = 200, body = ModelVersionInfo), (status = 404, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[get("/models/{name}/versions/{version}")]
pub async fn get_version(
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<web::Json<ModelVersionInfo>, ApiError> {
    principal.require(Permission::ReadModels)?;
    let (name, version) = path.into_inner();
    let model = registry::model(state.store.as_ref(), &name).await?;
    let v = registry::version(state.store.as_ref(), &model, &version).await?;
    Ok(web::Json(version_info(&v)))
}

/// Yanks a version (publisher or admin): it can no longer be deployed. Idempotent.
#[utoipa::path(
    tag = "models",
    params(("name" = String, Path, description = "model name"), ("version" = String, Path, description = "semantic version")),
    request_body = YankRequest,
    responses((status = 200, body = ModelVersionInfo), (status = 404, body = flotilla_protocol::ApiErrorBody)),
    security(("bearer" = []))
)]
#[post("/models/{name}/versions/{version}/yank")]
pub async fn yank_version(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<web::Json<ModelVersionInfo>, ApiError> {
    principal.require(Permission::Publish)?;
    let (name, version) = path.into_inner();
    // The body is optional; when present it must be valid.
    let reason = if body.iter().all(u8::is_ascii_whitespace) {
        String::new()
    } else {
        serde_json::from_slice::<YankRequest>(&body)
            .map_err(|e| {
                ApiError::bad_request(
                    flotilla_protocol::ErrorCode::InvalidJson,
                    format!("invalid JSON body: {e}"),
                )
            })?
            .reason
    };
    let model = registry::model(state.store.as_ref(), &name).await?;
    let v = registry::yank(state.store.as_ref(), &model, &version, &reason, Utc::now()).await?;
    // Yanked versions are no longer served; free this replica's loaded copy now.
    state.inference.forget(&v.model_name, &v.version);
    audit_detail(
        &req,
        json!({"model": v.model_name, "version": v.version, "reason": reason}),
    );
    Ok(web::Json(version_info(&v)))
}
