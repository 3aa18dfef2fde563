//! Liveness, readiness and metrics.

use actix_web::{get, web, HttpResponse};
use flotilla_protocol::health::HealthStatus;

use crate::error::ApiError;
use crate::startup::AppState;
use crate::store::Backend;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Liveness: answers while the process runs.
#[utoipa::path(tag = "health", responses((status = 200, body = HealthStatus)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthStatus {
        status: "ok".into(),
        database: None,
        version: VERSION.into(),
    })
}

/// Readiness: answers 200 only when the database does.
#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, body = HealthStatus),
        (status = 503, description = "the database does not answer", body = flotilla_protocol::ApiErrorBody)
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.store.ping().await?;
    let database = match state.store.backend() {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    };
    Ok(HttpResponse::Ok().json(HealthStatus {
        status: "ready".into(),
        database: Some(database.into()),
        version: VERSION.into(),
    }))
}

/// Prometheus metrics in the text exposition format: HTTP requests by route template, and the
/// inference figures (per model version counts, errors and latency; the worker pool; the model
/// cache).
#[utoipa::path(
    tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"))
)]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut text = prometheus::TextEncoder::new()
        .encode_to_string(&state.http_metrics.gather())
        .map_err(ApiError::internal)?;
    state.inference.render_metrics(&mut text);
    Ok(HttpResponse::Ok()
        .content_type(flotilla_serving::metrics::CONTENT_TYPE)
        .body(text))
}
