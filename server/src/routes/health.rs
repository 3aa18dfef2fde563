//! Liveness and readiness.

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
