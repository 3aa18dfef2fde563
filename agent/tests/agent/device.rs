//! A device as its update loop sees it, with no server process: the test holds the server's
//! desired-state key and a publisher key, signs desired states with the committed models, and
//! serves the artifacts from a small HTTP file server that counts downloads. The updater feeds
//! the real local API (`TestApi`), through the same sink and health window the agent uses.

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use flotilla_agent::app::{health_source, ApiSink};
use flotilla_agent::hybrid::EscalationStats;
use flotilla_agent::inference::LocalApiConfig;
use flotilla_agent::sync::client::{DownloadLimits, ServerClient};
use flotilla_agent::sync::state_dir::{Identity, StateDir};
use flotilla_agent::sync::trust::Trust;
use flotilla_agent::sync::updater::{Clock, HealthSource, Updater};
use flotilla_protocol::agent::{
    sign_desired_state, DesiredState, HealthWindow, ModelHealth, ModelSlot, ShadowSlot, SlotStatus,
    StateError,
};
use flotilla_protocol::registry::{TrustRoot, TrustRootKey};
use flotilla_protocol::signing::{sign_model, ModelFacts, Resource, SampleTensor, SigningKey};
use rand::SeedableRng;
use sha2::{Digest, Sha256};

use crate::support::{models_dir, TestApi};

const DEVICE_ID: &str = "dev-shadow";

pub fn model_bytes(file: &str) -> Vec<u8> {
    std::fs::read(models_dir().join(file)).unwrap()
}

pub fn hex_sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A key made from `seed`, the same on every run.
pub fn key(seed: u64) -> SigningKey {
    SigningKey::generate(&mut rand::rngs::StdRng::seed_from_u64(seed))
}

/// The server's desired-state key every test device pins.
pub fn server_key() -> SigningKey {
    key(2)
}

/// Serves `GET /artifacts/{name}` from memory and counts the requests per name.
#[derive(Default)]
pub struct Artifacts {
    files: Mutex<HashMap<String, Vec<u8>>>,
    requests: Mutex<HashMap<String, usize>>,
}

impl Artifacts {
    /// Makes `bytes` downloadable at the returned path.
    pub fn put(&self, name: &str, bytes: Vec<u8>) -> String {
        self.files.lock().unwrap().insert(name.to_owned(), bytes);
        format!("/artifacts/{name}")
    }

    /// Downloads of `name` so far.
    pub fn downloads(&self, name: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    async fn get(artifacts: web::Data<Arc<Artifacts>>, name: web::Path<String>) -> HttpResponse {
        *artifacts
            .requests
            .lock()
            .unwrap()
            .entry(name.clone())
            .or_default() += 1;
        match artifacts.files.lock().unwrap().get(name.as_str()) {
            Some(bytes) => HttpResponse::Ok().body(bytes.clone()),
            None => HttpResponse::NotFound().finish(),
        }
    }
}

/// A device: its state directory, update loop and local API.
pub struct Device {
    pub updater: Updater,
    pub app: TestApi,
    pub artifacts: Arc<Artifacts>,
    pub publisher: SigningKey,
    pub now: Arc<AtomicU64>,
    health: HealthSource,
    server_key: SigningKey,
    artifacts_base: String,
    sequence: u64,
    dir: tempfile::TempDir,
}

impl Device {
    pub async fn start() -> Device {
        let artifacts = Arc::new(Artifacts::default());
        let data = web::Data::new(Arc::clone(&artifacts));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let artifacts_base = format!("http://{}", listener.local_addr().unwrap());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/artifacts/{name}", web::get().to(Artifacts::get))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);

        let now = Arc::new(AtomicU64::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        ));
        let dir = tempfile::tempdir().unwrap();
        let app = TestApi::start(LocalApiConfig::default(), &[]).await;
        let health = health_source(app.api.clone(), EscalationStats::default(), clock(&now));
        let (publisher, server_key) = (key(1), server_key());
        let updater = updater(
            dir.path(),
            &publisher,
            &server_key,
            &artifacts_base,
            &app,
            health.clone(),
            &now,
        );
        Device {
            updater,
            app,
            artifacts,
            publisher,
            now,
            health,
            server_key,
            artifacts_base,
            sequence: 0,
            dir,
        }
    }

    /// The process after a restart: a new local API and update loop over the same state
    /// directory, restored from disk (no server involved).
    pub async fn restart(&mut self) {
        self.app = TestApi::start(LocalApiConfig::default(), &[]).await;
        self.health = health_source(
            self.app.api.clone(),
            EscalationStats::default(),
            clock(&self.now),
        );
        self.updater = updater(
            self.dir.path(),
            &self.publisher,
            &self.server_key,
            &self.artifacts_base,
            &self.app,
            self.health.clone(),
            &self.now,
        );
        self.updater.restore().await.unwrap();
    }

    /// `path` on this device's artifact server, for update loops talking to another server.
    pub fn artifact_url(&self, path: &str) -> String {
        format!("{}{path}", self.artifacts_base)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A publisher bundle for `bytes` as `fraud`@`version`, signed by `key`.
    pub fn bundle(
        key: &SigningKey,
        bytes: &[u8],
        version: &str,
        sample_input: Option<Vec<SampleTensor>>,
    ) -> String {
        let facts = ModelFacts {
            model: "fraud".into(),
            version: version.into(),
            release: None,
            size: Some(bytes.len() as u64),
            compatibility: None,
            inputs: None,
            outputs: None,
            sample_input,
            rollback_allowed_below: None,
        };
        let bundle = sign_model(
            key,
            &[Resource::single_file(Sha256::digest(bytes).into())],
            "model.onnx",
            Some(&facts),
        )
        .unwrap();
        String::from_utf8(bundle.to_json()).unwrap()
    }

    /// `fraud`@`version` from the committed `file`, published and signed.
    pub fn slot(&self, file: &str, version: &str) -> ModelSlot {
        let bytes = model_bytes(file);
        ModelSlot {
            model: "fraud".into(),
            version: version.into(),
            sha256: hex_sha(&bytes),
            size: bytes.len() as u64,
            bundles: vec![Device::bundle(&self.publisher, &bytes, version, None)],
            url: self.artifacts.put(file, bytes),
            escalation: None,
            shadow: None,
        }
    }

    /// `file` as the shadow candidate `version`, published and signed, on every request.
    pub fn shadow(&self, file: &str, version: &str) -> ShadowSlot {
        let bytes = model_bytes(file);
        ShadowSlot {
            version: version.into(),
            sha256: hex_sha(&bytes),
            size: bytes.len() as u64,
            bundles: vec![Device::bundle(&self.publisher, &bytes, version, None)],
            url: self.artifacts.put(file, bytes),
            sample_rate: 1.0,
            tolerance: 0.0,
        }
    }

    /// The next desired state for this device, issued at the test's wall clock for an hour.
    pub fn next_state(&mut self, slots: Vec<ModelSlot>) -> DesiredState {
        self.sequence += 1;
        let now = self.now.load(Ordering::SeqCst);
        DesiredState {
            device_id: DEVICE_ID.into(),
            sequence: self.sequence,
            issued_at: now,
            expires_at: now + 3600,
            slots,
        }
    }

    /// `state` signed with the server's key, as the wire carries it.
    pub fn sign(&self, state: &DesiredState) -> Vec<u8> {
        serde_json::to_vec(&sign_desired_state(&self.server_key, state)).unwrap()
    }

    /// Has the update loop verify and apply `state`, signed with the server's key.
    pub async fn apply_state(&mut self, state: &DesiredState) -> Result<(), StateError> {
        let envelope = self.sign(state);
        self.updater.apply(&envelope).await
    }

    /// Another update loop with this device's keys and a fresh state directory, talking to
    /// `server` (a hostile one) and feeding this device's local API.
    pub fn updater_at(&self, server: &str, dir: &Path) -> Updater {
        updater(
            dir,
            &self.publisher,
            &self.server_key,
            server,
            &self.app,
            self.health.clone(),
            &self.now,
        )
    }

    /// Signs `slots` as the next desired state and has the update loop apply it.
    pub async fn apply(&mut self, slots: Vec<ModelSlot>) {
        self.sequence += 1;
        let now = self.now.load(Ordering::SeqCst);
        let envelope = sign_desired_state(
            &self.server_key,
            &DesiredState {
                device_id: DEVICE_ID.into(),
                sequence: self.sequence,
                issued_at: now,
                expires_at: now + 3600,
                slots,
            },
        );
        self.updater
            .apply(&serde_json::to_vec(&envelope).unwrap())
            .await
            .unwrap();
    }

    /// The `fraud` slot's status, as the next report would say it.
    pub fn fraud_status(&self) -> SlotStatus {
        self.updater
            .slot_statuses()
            .into_iter()
            .find(|s| s.model == "fraud")
            .expect("a status for fraud")
    }

    /// The health window since the last one, as the next report would carry it.
    pub fn health_window(&self) -> HealthWindow {
        (self.health)().unwrap()
    }

    /// `fraud`@`version`'s entry of a health window.
    pub fn fraud_health(window: &HealthWindow, version: &str) -> ModelHealth {
        window
            .models
            .iter()
            .find(|m| m.model == "fraud" && m.version == version)
            .cloned()
            .unwrap_or_else(|| panic!("no fraud@{version} in {window:?}"))
    }

    /// Waits until `runs` shadow outcomes have been recorded since start.
    pub async fn shadow_runs(&self, runs: u64) {
        let mut recorded = self.app.api.registry().shadow_stats().recorded();
        tokio::time::timeout(Duration::from_secs(60), recorded.wait_for(|&n| n >= runs))
            .await
            .unwrap_or_else(|_| panic!("{runs} shadow runs were not recorded in time"))
            .unwrap();
    }
}

fn clock(now: &Arc<AtomicU64>) -> Clock {
    let now = Arc::clone(now);
    Arc::new(move || now.load(Ordering::SeqCst))
}

/// The device's update loop: provisioned with the publisher's key as its trust root and the
/// server's key pinned, downloading from `artifacts_base`, feeding `app`'s local API.
fn updater(
    dir: &Path,
    publisher: &SigningKey,
    server_key: &SigningKey,
    artifacts_base: &str,
    app: &TestApi,
    health: HealthSource,
    now: &Arc<AtomicU64>,
) -> Updater {
    let trust = TrustRoot {
        version: 1,
        serial: 1,
        server_key_pem: None,
        keys: vec![TrustRootKey {
            key_id: publisher.public_key().key_id(),
            name: "ml".into(),
            public_key_pem: publisher.public_key().to_pem(),
        }],
        threshold: 1,
        model_thresholds: BTreeMap::new(),
        digest_only_models: ["upstream".to_owned()].into(),
    };
    let identity = Identity {
        device_id: DEVICE_ID.into(),
        credential: "fld_test".into(),
        server_public_key_pem: server_key.public_key().to_pem(),
        // Fresh: these tests' servers know nothing of credential rotation.
        credential_issued_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs()),
    };
    Updater::new(
        StateDir::open(dir).unwrap(),
        ServerClient::new(artifacts_base, Some(identity.credential.clone())).unwrap(),
        identity,
        Trust::new(trust).unwrap(),
        Arc::new(ApiSink(app.api.clone())),
        health,
        clock(now),
        DownloadLimits::default(),
    )
    .unwrap()
}
