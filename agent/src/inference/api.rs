//! The local inference API: the Open Inference Protocol (KServe v2 REST) over actix-web.
//!
//! Handlers only extract, resolve the model, check the request against its signature and map
//! results; inference itself runs on the [`InferencePool`].

use std::net::TcpListener;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{self, BodyStream};
use actix_web::dev::{Decompress, Server};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, App, FromRequest, Handler, HttpRequest, HttpResponse, HttpServer, Responder};
use flotilla_runtime::{DataType, RuntimeError, Tensor};
use serde::Deserialize;
use serde_json::json;

use super::error::OipError;
use super::health::{HealthRecorder, Outcome};
use super::metrics;
use super::oip::{
    binary_extension_request, parse_data, InferRequest, InferResponse, ModelMetadata, RequestInput,
    RequestedOutput, ResponseOutput, ResponseParameters, ServerMetadata, TensorMetadata,
    SERVED_BY_EDGE,
};
use super::pool::{InferencePool, PoolConfig, PoolError};
use super::registry::{LoadedModel, ModelRegistry};

/// The name `GET /v2` reports.
pub const SERVER_NAME: &str = "flotilla-agent";

/// The header with which the binary tensor data extension announces the JSON part's length.
const BINARY_HEADER: &str = "inference-header-content-length";

/// Settings of the local inference API, as the agent's configuration file holds them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalApiConfig {
    /// Inference jobs running at once; defaults to the number of cores.
    pub workers: usize,
    /// Requests allowed to wait for a worker; beyond that the API answers 503.
    pub queue_depth: usize,
    /// Largest accepted request body, in bytes (after decompression); default 16 MiB.
    pub body_limit: usize,
    /// Threads accepting and parsing HTTP requests; default 2 (or 1 on a single core).
    pub http_workers: usize,
}

impl Default for LocalApiConfig {
    fn default() -> LocalApiConfig {
        let pool = PoolConfig::default();
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        LocalApiConfig {
            workers: pool.workers,
            queue_depth: pool.queue_depth,
            body_limit: 16 * 1024 * 1024,
            http_workers: cores.min(2),
        }
    }
}

impl LocalApiConfig {
    /// The worker pool part.
    pub fn pool(&self) -> PoolConfig {
        PoolConfig {
            workers: self.workers,
            queue_depth: self.queue_depth,
        }
    }
}

/// Everything the local API's handlers share: the models, the worker pool and the recorder.
/// Cloning is cheap (the parts are `Arc`s) and clones share the same state, so the update loop
/// keeps one to install models and read the health window while the server runs.
#[derive(Debug, Clone)]
pub struct LocalApi {
    registry: Arc<ModelRegistry>,
    pool: Arc<InferencePool>,
    recorder: Arc<HealthRecorder>,
    body_limit: usize,
    http_workers: usize,
}

impl LocalApi {
    /// A local API with an empty registry, a fresh pool and recorder, sized by `config`.
    pub fn new(config: &LocalApiConfig) -> LocalApi {
        LocalApi::from_parts(
            Arc::new(ModelRegistry::new()),
            Arc::new(InferencePool::new(config.pool())),
            Arc::new(HealthRecorder::new()),
        )
        .with_body_limit(config.body_limit)
        .with_http_workers(config.http_workers)
    }

    /// A local API over existing parts, with the default body limit and HTTP workers.
    pub fn from_parts(
        registry: Arc<ModelRegistry>,
        pool: Arc<InferencePool>,
        recorder: Arc<HealthRecorder>,
    ) -> LocalApi {
        let defaults = LocalApiConfig::default();
        LocalApi {
            registry,
            pool,
            recorder,
            body_limit: defaults.body_limit,
            http_workers: defaults.http_workers,
        }
    }

    /// Sets the largest accepted request body, in bytes.
    pub fn with_body_limit(mut self, bytes: usize) -> LocalApi {
        self.body_limit = bytes;
        self
    }

    /// Sets the number of HTTP worker threads [`serve`] starts (at least one).
    pub fn with_http_workers(mut self, threads: usize) -> LocalApi {
        self.http_workers = threads.max(1);
        self
    }

    /// The models served: install and remove versions here.
    pub fn registry(&self) -> &Arc<ModelRegistry> {
        &self.registry
    }

    /// The worker pool inference runs on.
    pub fn pool(&self) -> &Arc<InferencePool> {
        &self.pool
    }

    /// The per-model-version figures: take the health window here.
    pub fn recorder(&self) -> &Arc<HealthRecorder> {
        &self.recorder
    }
}

/// Registers the local API's routes, shared state and JSON fallbacks on an actix app:
/// `App::new().configure(local_api(api))`.
pub fn local_api(api: LocalApi) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(api))
            .service(endpoint("/v2", Method::GET, server_metadata))
            .service(endpoint("/v2/", Method::GET, server_metadata))
            .service(endpoint("/v2/health/live", Method::GET, live))
            .service(endpoint("/v2/health/ready", Method::GET, ready))
            .service(endpoint("/v2/models/{name}", Method::GET, model_metadata))
            .service(endpoint(
                "/v2/models/{name}/versions/{version}",
                Method::GET,
                version_metadata,
            ))
            .service(endpoint(
                "/v2/models/{name}/ready",
                Method::GET,
                model_ready,
            ))
            .service(endpoint(
                "/v2/models/{name}/versions/{version}/ready",
                Method::GET,
                version_ready,
            ))
            .service(endpoint("/v2/models/{name}/infer", Method::POST, infer))
            .service(endpoint(
                "/v2/models/{name}/versions/{version}/infer",
                Method::POST,
                version_infer,
            ))
            .service(endpoint("/metrics", Method::GET, prometheus))
            .default_service(web::to(no_route));
    }
}

/// Starts the local API on `listener` (bind it to a loopback address; port 0 in tests) and
/// returns the running server: spawn or await it on a Tokio runtime.
///
/// The server does not install signal handlers: the agent's binary decides when to stop it,
/// through [`Server::handle`] (`handle.stop(true)` lets in-flight requests finish, for up to
/// five seconds).
pub fn serve(listener: TcpListener, api: LocalApi) -> std::io::Result<Server> {
    let workers = api.http_workers;
    let server = HttpServer::new(move || App::new().configure(local_api(api.clone())))
        .workers(workers)
        .shutdown_timeout(5)
        .disable_signals()
        .listen(listener)?
        .run();
    Ok(server)
}

/// One path served with one method; any other method gets a JSON 405 with `Allow`.
fn endpoint<F, Args>(path: &str, method: Method, handler: F) -> actix_web::Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    let allowed = method.clone();
    web::resource(path)
        .route(web::method(method).to(handler))
        .default_service(web::to(move |request: HttpRequest| {
            let allowed = allowed.clone();
            async move {
                let mut response =
                    actix_web::ResponseError::error_response(&OipError::MethodNotAllowed(format!(
                        "{} is not allowed on {}; use {allowed}",
                        request.method(),
                        request.path()
                    )));
                if let Ok(value) = HeaderValue::from_str(allowed.as_str()) {
                    response.headers_mut().insert(header::ALLOW, value);
                }
                response
            }
        }))
}

async fn no_route(request: HttpRequest) -> Result<HttpResponse, OipError> {
    Err(OipError::NotFound(format!(
        "no endpoint {} {}; the local API serves the Open Inference Protocol under /v2",
        request.method(),
        request.path()
    )))
}

async fn server_metadata() -> HttpResponse {
    HttpResponse::Ok().json(ServerMetadata {
        name: SERVER_NAME,
        version: env!("CARGO_PKG_VERSION"),
        extensions: [],
    })
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "live": true }))
}

/// Ready when at least one model is loaded: before the first install the agent has nothing to
/// serve. The protocol answers "false" with a 4xx.
async fn ready(api: web::Data<LocalApi>) -> Result<HttpResponse, OipError> {
    if api.registry.is_empty() {
        return Err(OipError::NotReady(
            "not ready: no model is loaded yet".to_owned(),
        ));
    }
    Ok(HttpResponse::Ok().json(json!({ "ready": true })))
}

/// The model under `name`, at `version` if one is given.
fn resolve(
    api: &LocalApi,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<LoadedModel>, OipError> {
    let current = api
        .registry
        .get(name)
        .ok_or_else(|| OipError::NotFound(format!("model `{name}` is not loaded")))?;
    match version {
        Some(version) if version != current.version => Err(OipError::NotFound(format!(
            "model `{name}` version `{version}` is not served; the current version is `{}`",
            current.version
        ))),
        _ => Ok(current),
    }
}

fn metadata(loaded: &LoadedModel) -> HttpResponse {
    HttpResponse::Ok().json(ModelMetadata {
        name: &loaded.name,
        versions: vec![&loaded.version],
        platform: "onnx",
        inputs: loaded
            .model
            .inputs()
            .iter()
            .map(TensorMetadata::of)
            .collect(),
        outputs: loaded
            .model
            .outputs()
            .iter()
            .map(TensorMetadata::of)
            .collect(),
    })
}

async fn model_metadata(
    api: web::Data<LocalApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, OipError> {
    Ok(metadata(&*resolve(&api, &path, None)?))
}

async fn version_metadata(
    api: web::Data<LocalApi>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, OipError> {
    let (name, version) = path.into_inner();
    Ok(metadata(&*resolve(&api, &name, Some(&version))?))
}

fn model_is_ready(loaded: &LoadedModel) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "name": loaded.name,
        "version": loaded.version,
        "ready": true,
    }))
}

async fn model_ready(
    api: web::Data<LocalApi>,
    path: web::Path<String>,
) -> Result<HttpResponse, OipError> {
    Ok(model_is_ready(&*resolve(&api, &path, None)?))
}

async fn version_ready(
    api: web::Data<LocalApi>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, OipError> {
    let (name, version) = path.into_inner();
    Ok(model_is_ready(&*resolve(&api, &name, Some(&version))?))
}

async fn prometheus(api: web::Data<LocalApi>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(metrics::render(&api.registry, &api.pool, &api.recorder))
}

async fn infer(
    api: web::Data<LocalApi>,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, OipError> {
    run_inference(&api, &request, &path, None, payload).await
}

async fn version_infer(
    api: web::Data<LocalApi>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, OipError> {
    let (name, version) = path.into_inner();
    run_inference(&api, &request, &name, Some(&version), payload).await
}

async fn run_inference(
    api: &LocalApi,
    request: &HttpRequest,
    name: &str,
    version: Option<&str>,
    payload: web::Payload,
) -> Result<HttpResponse, OipError> {
    if request.headers().contains_key(BINARY_HEADER) {
        return Err(OipError::BadRequest(
            "the binary tensor data extension (`Inference-Header-Content-Length`) is not \
             supported; send a JSON body with `data` arrays (tritonclient: binary_data=False)"
                .to_owned(),
        ));
    }
    let body = read_body(request, payload, api.body_limit).await?;
    // The request keeps this `Arc` to the end: a swap meanwhile does not affect it.
    let loaded = resolve(api, name, version)?;
    let parsed: InferRequest = serde_json::from_slice(&body)
        .map_err(|e| OipError::BadRequest(format!("malformed inference request: {e}")))?;
    if let Some(reason) = binary_extension_request(&parsed) {
        return Err(OipError::BadRequest(reason));
    }
    let id = parsed.id;
    let CheckedRequest {
        inputs,
        outputs: wanted,
    } = match check_request(&loaded, parsed.inputs, parsed.outputs) {
        Ok(checked) => checked,
        Err(message) => {
            api.recorder.record_invalid(&loaded.name, &loaded.version);
            return Err(OipError::BadRequest(message));
        }
    };

    let model = Arc::clone(&loaded.model);
    let queued_at = Instant::now();
    let ran = api
        .pool
        .run(move || {
            let started = Instant::now();
            let result = model.run(inputs);
            (result, started.elapsed())
        })
        .await;
    let (result, latency) = match ran {
        Ok(ran) => ran,
        Err(busy @ PoolError::Busy { .. }) => {
            api.recorder.record_rejected_busy();
            return Err(OipError::Busy(busy.to_string()));
        }
        Err(PoolError::Failed(cause)) => {
            tracing::error!(model = %loaded.name, version = %loaded.version, %cause, "inference job failed");
            api.recorder.record(
                &loaded.name,
                &loaded.version,
                Outcome::Error,
                queued_at.elapsed(),
            );
            return Err(inference_failed(&loaded));
        }
    };
    let outputs = match result {
        Ok(outputs) => outputs,
        Err(RuntimeError::InvalidInput(message)) => {
            api.recorder.record_invalid(&loaded.name, &loaded.version);
            return Err(OipError::BadRequest(message));
        }
        Err(cause) => {
            tracing::warn!(model = %loaded.name, version = %loaded.version, %cause, "inference failed");
            api.recorder
                .record(&loaded.name, &loaded.version, Outcome::Error, latency);
            return Err(inference_failed(&loaded));
        }
    };
    let outcome = if outputs.iter().all(|t| t.data.all_finite()) {
        Outcome::Ok
    } else {
        Outcome::NonFinite
    };
    api.recorder
        .record(&loaded.name, &loaded.version, outcome, latency);

    let selected: Vec<&Tensor> = match &wanted {
        Some(indices) => indices.iter().filter_map(|&i| outputs.get(i)).collect(),
        None => outputs.iter().collect(),
    };
    Ok(HttpResponse::Ok().json(InferResponse {
        model_name: &loaded.name,
        model_version: &loaded.version,
        id,
        parameters: ResponseParameters {
            flotilla_served_by: SERVED_BY_EDGE,
        },
        outputs: selected.into_iter().map(ResponseOutput::of).collect(),
    }))
}

fn inference_failed(loaded: &LoadedModel) -> OipError {
    OipError::Internal(format!(
        "inference failed on model `{}` version `{}`; the cause is in the agent's log",
        loaded.name, loaded.version
    ))
}

/// Reads the whole body, decompressed, refusing more than `limit` bytes.
async fn read_body(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, OipError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(OipError::PayloadTooLarge { limit });
    }
    let stream = BodyStream::new(Decompress::from_headers(
        payload.into_inner(),
        request.headers(),
    ));
    match body::to_bytes_limited(stream, limit).await {
        Err(_) => Err(OipError::PayloadTooLarge { limit }),
        Ok(Err(e)) => Err(OipError::BadRequest(format!(
            "could not read the request body: {e}"
        ))),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

/// A request that fits its model.
struct CheckedRequest {
    /// The input tensors, in request order (the runtime puts them in graph order).
    inputs: Vec<Tensor>,
    /// Indices of the requested outputs in the model's outputs; `None`: all of them.
    outputs: Option<Vec<usize>>,
}

/// Checks a request against the model's signature and builds its tensors. The error is the
/// message for the client.
fn check_request(
    loaded: &LoadedModel,
    inputs: Vec<RequestInput>,
    outputs: Option<Vec<RequestedOutput>>,
) -> Result<CheckedRequest, String> {
    let specs = loaded.model.inputs();
    let mut given = vec![false; specs.len()];
    let mut tensors = Vec::with_capacity(inputs.len());
    for input in inputs {
        let Some(index) = specs.iter().position(|s| s.name == input.name) else {
            return Err(format!(
                "unknown input `{}`; model `{}` takes {}",
                input.name,
                loaded.name,
                names(specs.iter().map(|s| s.name.as_str()))
            ));
        };
        let spec = &specs[index];
        if std::mem::replace(&mut given[index], true) {
            return Err(format!("input `{}` is given more than once", input.name));
        }
        let datatype = DataType::from_name(&input.datatype).ok_or_else(|| {
            format!(
                "input `{}` has datatype `{}`, which is not supported; supported: {}",
                input.name,
                input.datatype,
                names(DataType::ALL.iter().map(|d| d.name()))
            )
        })?;
        if datatype != spec.datatype {
            return Err(format!(
                "input `{}` must be {}, got {datatype}",
                spec.name, spec.datatype
            ));
        }
        if !spec.accepts_shape(&input.shape) {
            return Err(format!(
                "input `{}` must have shape {} (-1: any size), got {}",
                spec.name,
                shape_text(&spec.shape),
                shape_text(&input.shape)
            ));
        }
        let data = parse_data(datatype, &input.data)
            .map_err(|e| format!("input `{}` has invalid data: {e}", spec.name))?;
        let elements = input
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        if elements != Some(data.len()) {
            return Err(format!(
                "input `{}` has shape {} ({} values) but {} values in `data`",
                spec.name,
                shape_text(&input.shape),
                elements.map_or_else(|| "too many".to_owned(), |n| n.to_string()),
                data.len()
            ));
        }
        tensors.push(Tensor {
            name: input.name,
            shape: input.shape,
            data,
        });
    }
    if let Some(missing) = specs.iter().zip(&given).find(|(_, &g)| !g) {
        return Err(format!("missing input `{}`", missing.0.name));
    }

    let Some(outputs) = outputs else {
        return Ok(CheckedRequest {
            inputs: tensors,
            outputs: None,
        });
    };
    let declared = loaded.model.outputs();
    let mut wanted: Vec<usize> = Vec::with_capacity(outputs.len());
    for output in outputs {
        let Some(index) = declared.iter().position(|s| s.name == output.name) else {
            return Err(format!(
                "unknown output `{}`; model `{}` returns {}",
                output.name,
                loaded.name,
                names(declared.iter().map(|s| s.name.as_str()))
            ));
        };
        if wanted.contains(&index) {
            return Err(format!(
                "output `{}` is requested more than once",
                output.name
            ));
        }
        wanted.push(index);
    }
    Ok(CheckedRequest {
        inputs: tensors,
        outputs: Some(wanted),
    })
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if quoted.is_empty() {
        "nothing".to_owned()
    } else {
        quoted.join(", ")
    }
}

fn shape_text<T: std::fmt::Display>(shape: &[T]) -> String {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    format!("[{}]", dims.join(", "))
}
