//! The web dashboard: static files built from `web/` by `build.rs` and embedded in the binary.
//! It is a client of the API like any other; these handlers only serve its files.

use actix_web::http::header;
use actix_web::{get, web, HttpResponse};

use crate::error::ApiError;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));
}

/// What the page may load and run: its own files and the API, nothing inline, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn find(path: &str) -> Option<(&'static str, &'static [u8])> {
    embedded::ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, ct, bytes)| (*ct, *bytes))
}

/// The dashboard's page. Its scripts and styles are under `/assets/`.
#[utoipa::path(
    tag = "dashboard",
    responses((status = 200, description = "the dashboard (HTML)", content_type = "text/html"))
)]
#[get("/")]
pub async fn index() -> Result<HttpResponse, ApiError> {
    let (content_type, bytes) = find("/index.html").ok_or_else(|| {
        ApiError::internal(anyhow::anyhow!(
            "the dashboard was built without index.html"
        ))
    })?;
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        // The page names the current build's files, so it is always revalidated.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("content-security-policy", CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .body(bytes))
}

/// A built script, style sheet or image of the dashboard. Names carry a content hash, so they
/// are cached for good.
#[utoipa::path(
    tag = "dashboard",
    params(("file" = String, Path, description = "file name")),
    responses(
        (status = 200, description = "the file"),
        (status = 404, body = flotilla_protocol::ApiErrorBody)
    )
)]
#[get("/assets/{file}")]
pub async fn asset(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let path = format!("/assets/{file}");
    let (content_type, bytes) = find(&path)
        .ok_or_else(|| ApiError::not_found(format!("the dashboard has no file {path}")))?;
    Ok(HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(bytes))
}
