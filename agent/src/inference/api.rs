//! The local inference API: the Open Inference Protocol endpoints of `flotilla-serving` over
//! the agent's [`ModelRegistry`], plus `/metrics`, on a loopback port.

use std::net::TcpListener;
use std::num::NonZeroUsize;
use std::sync::Arc;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use flotilla_serving::{
    endpoint, ErrorStyle, HealthRecorder, InferencePool, OipError, OipService, PoolConfig,
    ServiceOptions, DEFAULT_BODY_LIMIT, SERVED_BY_EDGE,
};
use serde::Deserialize;

use super::metrics;
use super::registry::ModelRegistry;

/// The name `GET /v2` reports.
pub const SERVER_NAME: &str = "flotilla-agent";

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
            body_limit: DEFAULT_BODY_LIMIT,
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
    service: OipService<ModelRegistry>,
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
        let options = ServiceOptions {
            server_name: SERVER_NAME,
            server_version: env!("CARGO_PKG_VERSION"),
            served_by: SERVED_BY_EDGE,
            log_owner: "agent",
            error_style: ErrorStyle::Plain,
            body_limit: defaults.body_limit,
        };
        LocalApi {
            service: OipService::new(registry, pool, recorder, options),
            http_workers: defaults.http_workers,
        }
    }

    /// Sets the largest accepted request body, in bytes.
    pub fn with_body_limit(mut self, bytes: usize) -> LocalApi {
        self.service.set_body_limit(bytes);
        self
    }

    /// Sets the number of HTTP worker threads [`serve`] starts (at least one).
    pub fn with_http_workers(mut self, threads: usize) -> LocalApi {
        self.http_workers = threads.max(1);
        self
    }

    /// The models served: install and remove versions here.
    pub fn registry(&self) -> &Arc<ModelRegistry> {
        self.service.source()
    }

    /// The worker pool inference runs on.
    pub fn pool(&self) -> &Arc<InferencePool> {
        self.service.pool()
    }

    /// The per-model-version figures: take the health window here.
    pub fn recorder(&self) -> &Arc<HealthRecorder> {
        self.service.recorder()
    }
}

/// Registers the local API's routes, shared state and JSON fallbacks on an actix app:
/// `App::new().configure(local_api(api))`.
pub fn local_api(api: LocalApi) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.app_data(web::Data::new(api.clone()))
            .configure(flotilla_serving::routes(api.service))
            .service(endpoint(
                "/metrics",
                Method::GET,
                ErrorStyle::Plain,
                prometheus,
            ))
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
    let server = HttpServer::new(move || {
        App::new()
            .wrap(from_fn(local_request_guard))
            .configure(local_api(api.clone()))
    })
    .workers(workers)
    .shutdown_timeout(5)
    .disable_signals()
    .listen(listener)?
    .run();
    Ok(server)
}

/// Refuses what only a web page could send the loopback port: a `Host` that is a DNS name
/// other than `localhost` (DNS rebinding: a page whose name now points at 127.0.0.1), and a
/// `POST` whose body a cross-site form can send without asking (`text/plain`, form data).
/// Clients that speak the protocol name an IP or `localhost` and send `application/json`,
/// `application/octet-stream` (binary tensor data) or no `Content-Type` at all (tritonclient):
/// a page must pass a CORS preflight to send the first two cross-site. A body without a type
/// needs none, but a page never reads the answer to it.
async fn local_request_guard(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if let Some(refusal) = local_refusal(request.request()) {
        return Ok(request.into_response(refusal).map_into_right_body());
    }
    next.call(request)
        .await
        .map(ServiceResponse::map_into_left_body)
}

fn local_refusal(request: &HttpRequest) -> Option<HttpResponse> {
    if let Some(host) = request.headers().get(header::HOST) {
        let host = host.to_str().unwrap_or("");
        if !is_local_host(host) {
            return Some(HttpResponse::Forbidden().json(serde_json::json!({
                "error": format!("Host `{host}` is not this device: the local API answers requests to an IP address or localhost")
            })));
        }
    }
    if request.method() == Method::POST {
        if let Some(kind) = request.headers().get(header::CONTENT_TYPE) {
            let essence = kind
                .to_str()
                .unwrap_or("")
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if essence != "application/json" && essence != "application/octet-stream" {
                return Some(HttpResponse::UnsupportedMediaType().json(serde_json::json!({
                    "error": format!("Content-Type `{essence}` is not accepted: send application/json (or application/octet-stream with binary tensor data)")
                })));
            }
        }
    }
    None
}

/// An IP literal (`127.0.0.1:8000`, `[::1]:8000`) or `localhost`, with or without a port.
fn is_local_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

async fn no_route(request: HttpRequest) -> Result<HttpResponse, OipError> {
    Err(OipError::NotFound(format!(
        "no endpoint {} {}; the local API serves the Open Inference Protocol under /v2",
        request.method(),
        request.path()
    )))
}

async fn prometheus(api: web::Data<LocalApi>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(metrics::render(api.registry(), api.pool(), api.recorder()))
}
