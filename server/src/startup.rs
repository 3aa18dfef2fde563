//! Building and running the server: the application state, the route table and the HTTP(S)
//! listener. Tests build the same [`Application`] on port 0.

use actix_web::dev::Server;
use actix_web::middleware::{from_fn, ErrorHandlers};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use actix_web_prom::{PrometheusMetrics, PrometheusMetricsBuilder};
use chrono::Utc;
use flotilla_protocol::tokens::Role;
use flotilla_protocol::ErrorCode;
use secrecy::{ExposeSecret, SecretString};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use tracing_actix_web::TracingLogger;
use utoipa::OpenApi as _;
use utoipa_actix_web::AppExt;
use uuid::Uuid;

use crate::auth;
use crate::blob::BlobStore;
use crate::config::Settings;
use crate::error::ApiError;
use crate::inference::ServerInference;
use crate::middleware::{audit_trail, etag_for_reads, json_error_body};
use crate::openapi::{api_routes, ApiDoc};
use crate::rollout_engine::{Clock, RolloutEngine, SystemClock};
use crate::store::{self, NewToken, Store};
use crate::webhooks::Webhooks;

/// What every handler can reach.
pub struct AppState {
    /// Metadata.
    pub store: Arc<dyn Store>,
    /// Artifacts.
    pub blobs: BlobStore,
    /// The settings the server started with.
    pub settings: Arc<Settings>,
    /// Bounds how many uploaded models are parsed at once (each is held in memory meanwhile).
    pub validation: tokio::sync::Semaphore,
    /// Signs desired states.
    pub server_key: flotilla_protocol::signing::SigningKey,
    /// Bumped whenever anything that feeds desired states changes; wakes long-polls.
    pub fleet_changes: tokio::sync::watch::Sender<u64>,
    /// Set when SIGTERM/SIGINT arrives: held long-polls answer at once instead of keeping the
    /// graceful shutdown waiting for them.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// Server-side inference (`/v2`): the published models, their cache, the worker pool.
    pub inference: ServerInference,
    /// The HTTP request metrics (actix-web-prom), rendered on `/metrics` with inference's.
    pub http_metrics: prometheus::Registry,
    /// Recently authenticated devices and the `ETag`s they were last given, per fleet
    /// generation: unchanged check-ins need no database round trip.
    pub checkin: crate::checkin::CheckinCache,
    /// Device contact times, written in batches.
    pub contacts: crate::checkin::ContactLog,
    /// Agent reports, written with group commit.
    pub reports: crate::ingest::ReportWriter,
    /// Bounds how many desired states are computed at once. A deploy wakes every held
    /// long-poll together; unbounded, thousands of them each queue for the database pool once
    /// per query and time out there, while in this queue they wait their turn and go through.
    pub state_builds: tokio::sync::Semaphore,
    /// Staged rollouts: the engine, its clock, and the transitions' webhooks.
    pub rollouts: Arc<RolloutEngine>,
}

impl AppState {
    /// Wakes every waiting desired-state poll, on this replica and (through the store's
    /// notifications) on every other, so they recompute.
    pub fn fleet_changed(&self) {
        fleet_changed(&self.fleet_changes, &self.store);
    }
}

fn fleet_changed(changes: &tokio::sync::watch::Sender<u64>, store: &Arc<dyn Store>) {
    changes.send_modify(|v| *v = v.wrapping_add(1));
    let store = store.clone();
    tokio::spawn(async move {
        if let Err(e) = store.notify_fleet_change().await {
            tracing::warn!(error = %e, "cannot notify other replicas of a fleet change");
        }
    });
}

/// A bound, not yet running server.
pub struct Application {
    addr: std::net::SocketAddr,
    port: u16,
    tls: bool,
    server: Server,
    bootstrap_secret: Option<String>,
    store: Arc<dyn Store>,
    blobs: BlobStore,
    rollouts: Arc<RolloutEngine>,
}

impl Application {
    /// Connects storage, creates the first admin token if there is none, and binds the
    /// listener (port 0 picks a free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store = store::connect(
            settings.database_url.as_ref(),
            &settings.data_dir,
            settings.db_max_connections,
        )
        .await?;
        let blobs = BlobStore::open(
            settings.blob_url.as_deref(),
            &settings.data_dir,
            &settings.s3,
        )?;
        Self::build_with(settings, store, blobs).await
    }

    /// Like [`Application::build`] with storage already opened.
    pub async fn build_with(
        settings: Settings,
        store: Arc<dyn Store>,
        blobs: BlobStore,
    ) -> anyhow::Result<Self> {
        Self::build_with_clock(settings, store, blobs, Arc::new(SystemClock)).await
    }

    /// Like [`Application::build_with`] with the rollouts' clock given (tests set it by hand).
    pub async fn build_with_clock(
        settings: Settings,
        store: Arc<dyn Store>,
        blobs: BlobStore,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let bootstrap_secret =
            bootstrap_admin(store.as_ref(), settings.bootstrap_token.as_ref()).await?;
        let listener = TcpListener::bind(settings.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
        let addr = listener.local_addr()?;
        let port = addr.port();
        let tls = settings.tls_cert.is_some();
        tracing::info!(
            listen = %listener.local_addr()?,
            database = ?store.backend(),
            blobs = blobs.describe(),
            tls,
            "flotilla-server starting"
        );
        // A configured key (file or secret) wins; otherwise the one in the database, created on
        // first start.
        let server_key = match settings.configured_server_key()? {
            Some(key) => key,
            None => crate::domain::fleet::server_key(store.as_ref()).await?,
        };
        let fleet_changes = tokio::sync::watch::channel(0).0;
        let rollouts = {
            let (changes, store2) = (fleet_changes.clone(), store.clone());
            Arc::new(RolloutEngine::new(
                store.clone(),
                clock,
                Webhooks::new(store.clone(), settings.webhook_allow_private_destinations),
                Box::new(move || fleet_changed(&changes, &store2)),
            ))
        };
        {
            // Other replicas' changes wake this one's long-polls too.
            let changes = fleet_changes.clone();
            store
                .listen_fleet_changes(Box::new(move || {
                    changes.send_modify(|v| *v = v.wrapping_add(1));
                }))
                .await?;
        }
        let server = run(
            listener,
            settings,
            Shared {
                store: store.clone(),
                blobs: blobs.clone(),
                server_key,
                fleet_changes,
                rollouts: rollouts.clone(),
            },
        )?;
        Ok(Self {
            addr,
            port,
            tls,
            server,
            bootstrap_secret,
            store,
            blobs,
            rollouts,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// The admin token generated on this start, if this start created one.
    pub fn bootstrap_secret(&self) -> Option<&str> {
        self.bootstrap_secret.as_deref()
    }

    /// A handle that stops the server (tests stop it to play an outage).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// The store, for tests that look behind the API.
    pub fn store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// The blob store, for tests that look behind the API.
    pub fn blobs(&self) -> BlobStore {
        self.blobs.clone()
    }

    /// The rollout engine (tests run its passes by hand with `rollout_tick_ms = 0`).
    pub fn rollout_engine(&self) -> Arc<RolloutEngine> {
        self.rollouts.clone()
    }

    /// Serves until SIGTERM/SIGINT, then lets in-flight requests finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Creates the first admin token when the database has none. With `configured` the caller
/// chose the secret (automation); otherwise a random one is returned for printing once.
async fn bootstrap_admin(
    store: &dyn Store,
    configured: Option<&SecretString>,
) -> anyhow::Result<Option<String>> {
    if store.count_tokens().await? > 0 {
        if configured.is_some() {
            tracing::info!("tokens already exist; FLOTILLA_BOOTSTRAP_TOKEN is ignored");
        }
        return Ok(None);
    }
    let (secret, generated) = match configured {
        Some(s) => {
            let s = s.expose_secret().trim().to_owned();
            if s.len() < 16 {
                anyhow::bail!("FLOTILLA_BOOTSTRAP_TOKEN must be at least 16 characters");
            }
            (s, false)
        }
        None => (auth::generate_secret(), true),
    };
    let inserted = store
        .insert_token(&NewToken {
            id: Uuid::new_v4(),
            name: "bootstrap-admin".into(),
            role: Role::Admin,
            secret_hash: auth::hash_secret(&secret),
            prefix: auth::shown_prefix(&secret),
            created_at: Utc::now(),
            expires_at: None,
        })
        .await;
    match inserted {
        // Replicas starting together on a new database, configured with the same token: one
        // of them stored it first, which is all that was asked.
        Err(store::StoreError::Conflict(_)) if !generated => {
            tracing::info!("another replica created the configured bootstrap token");
            return Ok(None);
        }
        other => {
            other?;
        }
    }
    tracing::info!("created the bootstrap admin token");
    Ok(generated.then_some(secret))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Request metrics. `/metrics` itself is a route (`routes::health::metrics`), which renders
/// this registry and the inference figures.
fn prometheus() -> anyhow::Result<PrometheusMetrics> {
    PrometheusMetricsBuilder::new("flotilla")
        .mask_unmatched_patterns("UNMATCHED")
        .build()
        .map_err(|e| anyhow::anyhow!("cannot set up metrics: {e}"))
}

/// What `run` shares with every worker, made before the server starts.
struct Shared {
    store: Arc<dyn Store>,
    blobs: BlobStore,
    server_key: flotilla_protocol::signing::SigningKey,
    fleet_changes: tokio::sync::watch::Sender<u64>,
    rollouts: Arc<RolloutEngine>,
}

fn run(listener: TcpListener, settings: Settings, shared: Shared) -> anyhow::Result<Server> {
    let settings = Arc::new(settings);
    let metrics = prometheus()?;
    let Shared {
        store,
        blobs,
        server_key,
        fleet_changes,
        rollouts,
    } = shared;
    let state = web::Data::new(AppState {
        inference: ServerInference::new(store.clone(), blobs.clone(), &settings),
        reports: crate::ingest::ReportWriter::start(store.clone()),
        store,
        blobs,
        settings: settings.clone(),
        validation: tokio::sync::Semaphore::new(1),
        server_key,
        fleet_changes,
        stopping: tokio::sync::watch::channel(false).0,
        http_metrics: metrics.registry.clone(),
        checkin: crate::checkin::CheckinCache::default(),
        state_builds: tokio::sync::Semaphore::new(
            (settings.db_max_connections as usize / 2).max(1),
        ),
        contacts: crate::checkin::ContactLog::default(),
        rollouts: rollouts.clone(),
    });
    if settings.rollout_tick_ms > 0 {
        tokio::spawn(rollouts.run(
            Duration::from_millis(settings.rollout_tick_ms),
            state.stopping.subscribe(),
        ));
    }
    tokio::spawn(flush_contacts(state.clone()));
    // actix stops the server on the same signals; this only releases the long-polls, which
    // would otherwise hold the graceful shutdown for up to `shutdown_timeout_secs`.
    let stopping = state.stopping.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        stopping.send_replace(true);
    });
    let json_limit = settings.max_json_body_bytes;
    let openapi = web::Data::new(openapi_document());
    let server = HttpServer::new(move || {
        let (app, _) = App::new()
            .into_utoipa_app()
            .configure(api_routes)
            .split_for_parts();
        app.app_data(state.clone())
            .app_data(openapi.clone())
            .app_data(json_config(json_limit))
            .app_data(web::PayloadConfig::new(json_limit))
            .app_data(web::QueryConfig::default().error_handler(|err, _| {
                ApiError::bad_request(ErrorCode::InvalidQuery, err.to_string()).into()
            }))
            .app_data(web::PathConfig::default().error_handler(|err, _| {
                ApiError::bad_request(ErrorCode::InvalidPath, err.to_string()).into()
            }))
            .route(
                flotilla_protocol::routes::OPENAPI,
                web::get().to(serve_openapi),
            )
            .default_service(web::to(route_not_found))
            .wrap(from_fn(audit_trail))
            .wrap(from_fn(etag_for_reads))
            .wrap(ErrorHandlers::new().default_handler(json_error_body))
            .wrap(metrics.clone())
            .wrap(TracingLogger::default())
    })
    .shutdown_timeout(settings.shutdown_timeout_secs)
    .client_request_timeout(Duration::from_secs(30));
    let server = if settings.workers > 0 {
        server.workers(settings.workers)
    } else {
        server
    };
    let server = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => {
            server.listen_rustls_0_23(listener, crate::tls::server_config(cert, key)?)?
        }
        _ => server.listen(listener)?,
    };
    Ok(server.run())
}

/// Writes device contact times every few seconds, and once more when the server stops.
async fn flush_contacts(state: web::Data<AppState>) {
    let mut stopping = state.stopping.subscribe();
    let mut tick = tokio::time::interval(crate::checkin::CONTACT_FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stop = tokio::select! {
            _ = tick.tick() => false,
            _ = stopping.wait_for(|s| *s) => true,
        };
        state.contacts.flush(state.store.as_ref()).await;
        if stop {
            return;
        }
    }
}

fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(move |err, _req| {
            use actix_web::error::JsonPayloadError as E;
            let api = match &err {
                E::OverflowKnownLength { .. } | E::Overflow { .. } => ApiError::new(
                    actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::PayloadTooLarge,
                    format!("JSON body is larger than {limit} bytes"),
                ),
                E::ContentType => ApiError::new(
                    actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    ErrorCode::UnsupportedMediaType,
                    "expected Content-Type: application/json",
                ),
                E::Deserialize(e) => {
                    ApiError::bad_request(ErrorCode::InvalidJson, format!("invalid JSON body: {e}"))
                }
                other => ApiError::bad_request(ErrorCode::InvalidJson, other.to_string()),
            };
            api.into()
        })
}

/// The OpenAPI document, built from the same route table the server serves.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, paths) = App::new()
        .into_utoipa_app()
        .configure(api_routes)
        .split_for_parts();
    let mut doc = ApiDoc::openapi();
    doc.merge(paths);
    doc
}

async fn serve_openapi(doc: web::Data<utoipa::openapi::OpenApi>) -> HttpResponse {
    HttpResponse::Ok().json(doc.get_ref())
}

/// Answers requests no route took: 405 (with `Allow`) when the path is a documented route
/// served for other methods, 404 otherwise. The OpenAPI document is the route table. Under
/// `/v2` the answer is in the inference API's error form.
async fn route_not_found(
    req: HttpRequest,
    doc: web::Data<utoipa::openapi::OpenApi>,
) -> HttpResponse {
    let allowed: Vec<String> = doc
        .paths
        .paths
        .iter()
        .filter(|(pattern, _)| {
            actix_web::dev::ResourceDef::new(pattern.as_str()).is_match(req.path())
        })
        .flat_map(|(_, item)| allowed_methods(item))
        .collect();
    if crate::routes::inference::is_inference_path(req.path()) {
        return crate::routes::inference::not_served(&req, &allowed);
    }
    if allowed.is_empty() {
        return ApiError::new(
            actix_web::http::StatusCode::NOT_FOUND,
            ErrorCode::RouteNotFound,
            format!("no route for {} {}", req.method(), req.path()),
        )
        .error_response();
    }
    let mut res = ApiError::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        format!(
            "{} does not accept {}; it accepts {}",
            req.path(),
            req.method(),
            allowed.join(", ")
        ),
    )
    .error_response();
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&allowed.join(", ")) {
        res.headers_mut().insert(actix_web::http::header::ALLOW, v);
    }
    res
}

fn allowed_methods(item: &utoipa::openapi::PathItem) -> Vec<String> {
    [
        ("GET", item.get.is_some()),
        ("POST", item.post.is_some()),
        ("PUT", item.put.is_some()),
        ("PATCH", item.patch.is_some()),
        ("DELETE", item.delete.is_some()),
    ]
    .into_iter()
    .filter(|(_, present)| *present)
    .map(|(m, _)| m.to_owned())
    .collect()
}
