//! `/v2`: the Open Inference Protocol (KServe v2 REST) over the published model versions. The
//! protocol itself is `flotilla-serving`'s; these handlers authenticate the caller and pick the
//! endpoint. Errors are the protocol's `{"error": "<message>"}` with a stable `"code"` beside
//! it, not the management API's body. See docs/inference.md.
//!
//! Health and server metadata are open (probes and clients ask them first); model metadata,
//! readiness and inference need an API token whose role may infer, or a device credential.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{get, post, web, HttpRequest, HttpResponse, ResponseError};
use flotilla_serving::OipError;

use crate::auth::InferenceCaller;
use crate::error::ApiError;
use crate::startup::AppState;

/// Whether `path` belongs to the inference API (and so answers errors in its form).
pub fn is_inference_path(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

/// The answer for a `/v2` request no route took: 405 with `Allow` when the path is served with
/// other methods, 404 otherwise.
pub fn not_served(req: &HttpRequest, allowed: &[String]) -> HttpResponse {
    if allowed.is_empty() {
        return OipError::NotFound(format!(
            "no endpoint {} {}; the server serves the Open Inference Protocol under /v2",
            req.method(),
            req.path()
        ))
        .response(flotilla_serving::ErrorStyle::WithCode);
    }
    let allow = allowed.join(", ");
    let mut response = OipError::MethodNotAllowed(format!(
        "{} is not allowed on {}; use {allow}",
        req.method(),
        req.path()
    ))
    .response(flotilla_serving::ErrorStyle::WithCode);
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

/// Runs `answer` for an authenticated caller; otherwise answers the authentication failure in
/// the protocol's form.
async fn for_caller<F, Fut>(
    state: &AppState,
    caller: Result<InferenceCaller, ApiError>,
    answer: F,
) -> HttpResponse
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = HttpResponse>,
{
    match caller {
        Ok(_) => answer().await,
        Err(refused) => {
            let message = refused.to_string();
            let error = match refused.status_code() {
                StatusCode::UNAUTHORIZED => OipError::Unauthorized(message),
                StatusCode::FORBIDDEN => OipError::Forbidden(message),
                StatusCode::SERVICE_UNAVAILABLE => {
                    tracing::error!(error = ?refused, "could not authenticate an inference caller");
                    OipError::Unavailable(message)
                }
                s if s.is_server_error() => {
                    tracing::error!(error = ?refused, "could not authenticate an inference caller");
                    OipError::Internal(message)
                }
                _ => OipError::BadRequest(message),
            };
            state.inference.service().error(&error)
        }
    }
}

/// Server metadata: name `flotilla-server`, version, the protocol extensions supported.
#[utoipa::path(
    tag = "inference",
    responses((status = 200, description = "`{\"name\", \"version\", \"extensions\": [\"binary_tensor_data\"]}`", content_type = "application/json"))
)]
#[get("/v2")]
pub async fn server_metadata(state: web::Data<AppState>) -> HttpResponse {
    state.inference.service().server_metadata()
}

/// Liveness of the inference API: true while the process serves HTTP.
#[utoipa::path(
    tag = "inference",
    responses((status = 200, description = "`{\"live\": true}`", content_type = "application/json"))
)]
#[get("/v2/health/live")]
pub async fn live(state: web::Data<AppState>) -> HttpResponse {
    state.inference.service().live()
}

/// Readiness of the inference API: true while the database answers.
#[utoipa::path(
    tag = "inference",
    responses(
        (status = 200, description = "`{\"ready\": true}`", content_type = "application/json"),
        (status = 400, description = "not ready (`not_ready`)", content_type = "application/json")
    )
)]
#[get("/v2/health/ready")]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    state.inference.service().ready().await
}

/// Metadata of the model's baseline version: inputs, outputs, servable versions.
#[utoipa::path(
    tag = "inference",
    params(("name" = String, Path, description = "model name")),
    responses(
        (status = 200, description = "`{\"name\", \"versions\", \"platform\": \"onnx\", \"inputs\", \"outputs\"}`", content_type = "application/json"),
        (status = 401, description = "`unauthorized`", content_type = "application/json"),
        (status = 403, description = "`forbidden`", content_type = "application/json"),
        (status = 404, description = "`not_found`: no such model, or no servable version", content_type = "application/json")
    ),
    security(("bearer" = []), ("device" = []))
)]
#[get("/v2/models/{name}")]
pub async fn model_metadata(
    state: web::Data<AppState>,
    caller: Result<InferenceCaller, ApiError>,
    path: web::Path<String>,
) -> HttpResponse {
    for_caller(&state, caller, || {
        state.inference.service().model_metadata(&path, None)
    })
    .await
}

/// Metadata of one published, non-yanked version.
#[utoipa::path(
    tag = "inference",
    params(("name" = String, Path, description = "model name"), ("version" = String, Path, description = "published version")),
    responses(
        (status = 200, description = "model metadata", content_type = "application/json"),
        (status = 401, description = "`unauthorized`", content_type = "application/json"),
        (status = 403, description = "`forbidden`", content_type = "application/json"),
        (status = 404, description = "`not_found`: no such model or version, or the version is yanked", content_type = "application/json")
    ),
    security(("bearer" = []), ("device" = []))
)]
#[get("/v2/models/{name}/versions/{version}")]
pub async fn version_metadata(
    state: web::Data<AppState>,
    caller: Result<InferenceCaller, ApiError>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (name, version) = path.into_inner();
    for_caller(&state, caller, || {
        state
            .inference
            .service()
            .model_metadata(&name, Some(&version))
    })
    .await
}

/// Whether the model's baseline version is ready (it is loaded if it was not).
#[utoipa::path(
    tag = "inference",
    params(("name" = String, Path, description = "model name")),
    responses(
        (status = 200, description = "`{\"name\", \"version\", \"ready\": true}`", content_type = "application/json"),
        (status = 401, description = "`unauthorized`", content_type = "application/json"),
        (status = 403, description = "`forbidden`", content_type = "application/json"),
        (status = 404, description = "`not_found`", content_type = "application/json")
    ),
    security(("bearer" = []), ("device" = []))
)]
#[get("/v2/models/{name}/ready")]
pub async fn model_ready(
    state: web::Data<AppState>,
    caller: Result<InferenceCaller, ApiError>,
    path: web::Path<String>,
) -> HttpResponse {
    for_caller(&state, caller, || {
        state.inference.service().model_ready(&path, None)
    })
    .await
}

/// Whether a published, non-yanked version is ready (it is loaded if it was not).
#[utoipa::path(
    tag = "inference",
    params(("name" = String, Path, description = "model name"), ("version" = String, Path, description = "published version")),
    responses(
        (status = 200, description = "`{\"name\", \"version\", \"ready\": true}`", content_type = "application/json"),
        (status = 401, description = "`unauthorized`", content_type = "application/json"),
        (status = 403, description = "`forbidden`", content_type = "application/json"),
        (status = 404, description = "`not_found`", content_type = "application/json")
    ),
    security(("bearer" = []), ("device" = []))
)]
#[get("/v2/models/{name}/versions/{version}/ready")]
pub async fn version_ready(
    state: web::Data<AppState>,
    caller: Result<InferenceCaller, ApiError>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (name, version) = path.into_inner();
    for_caller(&state, caller, || {
        state.inference.service().model_ready(&name, Some(&version))
    })
    .await
}

/// Inference on the model's baseline version (the version deployed with the empty selector,
/// otherwise the newest published one that is not yanked).
#[utoipa::path(
    tag = "inference",
    params(
        ("name" = String, Path, description = "model name"),
        ("Inference-Header-Content-Length" = Option<u64>, Header, description = "length of the JSON part when binary tensor data follows it")
    ),
    request_body(
        description = "Open Inference Protocol request: `{\"id\"?, \"inputs\": [{\"name\", \"shape\", \"datatype\", \"data\"}], \"outputs\"?}`. Alternatively (binary tensor data extension) the JSON request, then the raw little-endian bytes of each input that has `\"parameters\": {\"binary_data_size\": N}` instead of `data`, with `Inference-Header-Content-Length` giving the JSON part's length; `\"binary_data\": true` on an output, or the request parameter `\"binary_data_output\": true`, asks for binary outputs",
        content(
            (Object = "application/json"),
            (Vec<u8> = "application/octet-stream")
        )
    ),
    responses(
        (status = 200, description = "`{\"model_name\", \"model_version\", \"id\"?, \"parameters\": {\"flotilla_served_by\": \"server\"}, \"outputs\"}`; when an output is asked as binary data, that JSON (each binary output with `parameters.binary_data_size` instead of `data`) then the outputs' bytes, with `Inference-Header-Content-Length`",
            content(
                (Object = "application/json"),
                (Vec<u8> = "application/octet-stream")
            )
        ),
        (status = 400, description = "`bad_request`: malformed body, or inputs that do not fit the model; `invalid_binary_header`, `binary_size_mismatch`, `binary_data_length`: malformed binary tensor data", content_type = "application/json"),
        (status = 401, description = "`unauthorized`", content_type = "application/json"),
        (status = 403, description = "`forbidden`", content_type = "application/json"),
        (status = 404, description = "`not_found`", content_type = "application/json"),
        (status = 413, description = "`payload_too_large`", content_type = "application/json"),
        (status = 503, description = "`busy`: workers and queue are full (`Retry-After`); `unavailable`: a dependency is down", content_type = "application/json")
    ),
    security(("bearer" = []), ("device" = []))
)]
#[post("/v2/models/{name}/infer")]
pub async fn infer(
    state: web::Data<AppState>,
    caller: Result<InferenceCaller, ApiError>,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    for_caller(&state, caller, || {
        state
            .inference
            .service()
            .infer(&request, &path, None, payload)
    })
    .await
}

/// Inference on one published, non-yanked version.
#[utoipa::path(
    tag = "inference",
    params(
        ("name" = String, Path, description = "model name"),
        ("version" = String, Path, description = "published version"),
        ("Inference-Header-Content-Length" = Option<u64>, Header, description = "length of the JSON part when binary tensor data follows it")
    ),
    request_body(
        description = "Open Inference Protocol request, JSON or with binary tensor data (as for the baseline version)",
        content(
            (Object = "application/json"),
            (Vec<u8> = "application/octet-stream")
        )
    ),
    responses(
        (status = 200, description = "inference response, JSON or with binary tensor data",
            content(
                (Object = "application/json"),
                (Vec<u8> = "application/octet-stream")
            )
        ),
        (status = 400, description = "`bad_request`, `invalid_binary_header`, `binary_size_mismatch`, `binary_data_length`", content_type = "application/json"),
        (status = 401, description = "`unauthorized`", content_type = "application/json"),
        (status = 403, description = "`forbidden`", content_type = "application/json"),
        (status = 404, description = "`not_found`: no such model or version, or the version is yanked", content_type = "application/json"),
        (status = 413, description = "`payload_too_large`", content_type = "application/json"),
        (status = 503, description = "`busy` or `unavailable`", content_type = "application/json")
    ),
    security(("bearer" = []), ("device" = []))
)]
#[post("/v2/models/{name}/versions/{version}/infer")]
pub async fn version_infer(
    state: web::Data<AppState>,
    caller: Result<InferenceCaller, ApiError>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    let (name, version) = path.into_inner();
    for_caller(&state, caller, || {
        state
            .inference
            .service()
            .infer(&request, &name, Some(&version), payload)
    })
    .await
}
