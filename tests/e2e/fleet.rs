//! A real server in-process (SQLite, temp dir) with a publisher key and the `fraud` model, and
//! the publishing and enrollment steps the agent tests share.

use flotilla_agent::sync::client::{DownloadLimits, ServerClient};
use flotilla_agent::sync::state_dir::StateDir;
use flotilla_agent::sync::trust::Trust;
use flotilla_agent::sync::updater::{ensure_enrolled, system_clock, Updater};
use flotilla_agent::sync::ModelSink;
use flotilla_protocol::agent::EnrollRequest;
use flotilla_protocol::signing::{sign_model, ModelFacts, Resource, SampleTensor, SigningKey};
use flotilla_server::config::Settings;
use flotilla_server::startup::Application;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

pub(crate) fn model_bytes(file: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(file),
    )
    .unwrap()
}

pub(crate) fn hex_sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

pub(crate) fn sign(
    key: &SigningKey,
    bytes: &[u8],
    model: &str,
    version: &str,
    release: Option<u64>,
    sample_input: Option<Vec<SampleTensor>>,
) -> String {
    let facts = ModelFacts {
        model: model.into(),
        version: version.into(),
        release,
        size: Some(bytes.len() as u64),
        compatibility: None,
        inputs: None,
        outputs: None,
        sample_input,
        rollback_allowed_below: None,
    };
    let b = sign_model(
        key,
        &[Resource::single_file(Sha256::digest(bytes).into())],
        "model.onnx",
        Some(&facts),
    )
    .unwrap();
    String::from_utf8(b.to_json()).unwrap()
}

pub(crate) struct Fleet {
    pub(crate) base: String,
    pub(crate) admin: String,
    pub(crate) client: reqwest::Client,
    pub(crate) publisher: SigningKey,
    app_store: Option<Arc<dyn flotilla_server::store::Store>>,
    server: Option<actix_web::dev::ServerHandle>,
    _data: Option<tempfile::TempDir>,
}

impl Fleet {
    pub(crate) async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// [`Fleet::start`] with settings changed first.
    pub(crate) async fn start_with(tweak: impl FnOnce(&mut Settings)) -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut settings = Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data.path().to_path_buf(),
            workers: 2,
            ..Settings::default()
        };
        tweak(&mut settings);
        let app = Application::build(settings).await.unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let admin = app.bootstrap_secret().unwrap().to_owned();
        let app_store = app.store();
        let server = app.handle();
        tokio::spawn(app.run_until_stopped());
        Self::set_up(Self {
            base,
            admin,
            client: reqwest::Client::new(),
            publisher: SigningKey::generate(&mut rand::rngs::OsRng),
            app_store: Some(app_store),
            server: Some(server),
            _data: Some(data),
        })
        .await
    }

    /// The same steps against a server running elsewhere (a process the test started).
    pub(crate) async fn attach(base: &str, admin: &str) -> Self {
        Self::set_up(Self {
            base: base.to_owned(),
            admin: admin.to_owned(),
            client: reqwest::Client::new(),
            publisher: SigningKey::generate(&mut rand::rngs::OsRng),
            app_store: None,
            server: None,
            _data: None,
        })
        .await
    }

    async fn set_up(fleet: Self) -> Self {
        let pem = fleet.publisher.public_key().to_pem();
        fleet
            .call(
                "POST",
                "/api/v1/publisher-keys",
                json!({"name": "ml", "public_key_pem": pem}),
                201,
            )
            .await;
        fleet
            .call("POST", "/api/v1/models", json!({"name": "fraud"}), 201)
            .await;
        fleet
    }

    pub(crate) async fn call(&self, method: &str, path: &str, body: Value, status: u16) -> Value {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let res = self
            .client
            .request(m, format!("{}{path}", self.base))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status, "{method} {path}");
        res.json().await.unwrap_or(Value::Null)
    }

    pub(crate) async fn publish(&self, file: &str, version: &str, release: Option<u64>) {
        self.publish_with_sample(file, version, release, None).await;
    }

    pub(crate) async fn publish_with_sample(
        &self,
        file: &str,
        version: &str,
        release: Option<u64>,
        sample: Option<Vec<SampleTensor>>,
    ) {
        let bytes = model_bytes(file);
        let hex = hex_sha(&bytes);
        let res = self
            .client
            .put(format!("{}/api/v1/artifacts/sha256/{hex}", self.base))
            .bearer_auth(&self.admin)
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
        let bundle = sign(&self.publisher, &bytes, "fraud", version, release, sample);
        self.call(
            "POST",
            "/api/v1/models/fraud/versions",
            json!({"version": version, "artifact": {"sha256": hex, "size": bytes.len()}, "bundles": [bundle]}),
            201,
        )
        .await;
    }

    pub(crate) async fn deploy(&self, version: &str) {
        let res = self
            .client
            .put(format!("{}/api/v1/deployments", self.base))
            .bearer_auth(&self.admin)
            .json(&json!({"model": "fraud", "version": version, "selector": "site=a"}))
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
    }

    pub(crate) async fn agent(&self, dir: &std::path::Path, sink: Arc<dyn ModelSink>) -> Updater {
        let token = self.enrollment_token().await;
        let trust = self.trust_root().await;
        let state = StateDir::open(dir).unwrap();
        let request = EnrollRequest {
            enrollment_token: String::new(),
            device_public_key: String::new(),
            name: Some("test-device".into()),
            labels: BTreeMap::new(),
            hardware: Default::default(),
            agent_version: "test".into(),
        };
        let identity = ensure_enrolled(&state, &self.base, Some(&token), request, None)
            .await
            .unwrap();
        let client = ServerClient::new(&self.base, Some(identity.credential.clone())).unwrap();
        Updater::new(
            state,
            client,
            identity,
            Trust::new(trust).unwrap(),
            sink,
            Arc::new(|| None),
            system_clock(),
            DownloadLimits::default(),
        )
        .unwrap()
    }

    /// Stops the server at once, as an outage would (open connections are dropped).
    pub(crate) async fn stop(&self) {
        self.server.as_ref().unwrap().stop(false).await;
    }

    /// A one-use enrollment token whose devices get `site=a` (what [`Fleet::deploy`] targets).
    pub(crate) async fn enrollment_token(&self) -> String {
        self.call(
            "POST",
            "/api/v1/enrollment-tokens",
            json!({"name": "t", "labels": {"site": "a"}}),
            201,
        )
        .await["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The trust root agents are provisioned with.
    pub(crate) async fn trust_root(&self) -> flotilla_protocol::registry::TrustRoot {
        serde_json::from_value(
            self.call("GET", "/api/v1/trust-root", Value::Null, 200)
                .await,
        )
        .unwrap()
    }

    /// The server's desired-state key, as a compromised server (or a test) would use it.
    pub(crate) async fn server_key(&self) -> SigningKey {
        let pem = self
            .app_store
            .as_ref()
            .unwrap()
            .get_setting("desired_state_signing_key")
            .await
            .unwrap()
            .unwrap();
        SigningKey::from_pkcs8_pem(&pem).unwrap()
    }
}
