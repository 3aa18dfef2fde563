//! The agent's update cycle against a real server (in-process, SQLite): enroll, pull, verify,
//! activate, swap, report; and the refusals a compromised server or network cannot get past.

use flotilla_agent::sync::client::{DownloadLimits, ServerClient};
use flotilla_agent::sync::state_dir::StateDir;
use flotilla_agent::sync::trust::Trust;
use flotilla_agent::sync::updater::{ensure_enrolled, system_clock, Updater};
use flotilla_agent::sync::ModelSink;
use flotilla_protocol::agent::{sign_desired_state, DesiredState, EnrollRequest, ModelSlot};
use flotilla_protocol::signing::{sign_model, ModelFacts, Resource, SigningKey};
use flotilla_runtime::Model;
use flotilla_server::config::Settings;
use flotilla_server::startup::Application;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records what the updater installs.
#[derive(Default)]
struct MapSink(Mutex<BTreeMap<String, (String, Arc<Model>)>>);

impl ModelSink for MapSink {
    fn install(&self, name: &str, version: &str, model: Arc<Model>) {
        self.0
            .lock()
            .unwrap()
            .insert(name.to_owned(), (version.to_owned(), model));
    }
    fn remove(&self, name: &str) {
        self.0.lock().unwrap().remove(name);
    }
}

impl MapSink {
    fn version(&self, name: &str) -> Option<String> {
        self.0.lock().unwrap().get(name).map(|(v, _)| v.clone())
    }
}

fn model_bytes(file: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(file),
    )
    .unwrap()
}

fn hex_sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn sign(
    key: &SigningKey,
    bytes: &[u8],
    model: &str,
    version: &str,
    release: Option<u64>,
) -> String {
    let facts = ModelFacts {
        model: model.into(),
        version: version.into(),
        release,
        size: Some(bytes.len() as u64),
        compatibility: None,
        inputs: None,
        outputs: None,
        sample_input: None,
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

struct Fleet {
    base: String,
    admin: String,
    client: reqwest::Client,
    publisher: SigningKey,
    app_store: Arc<dyn flotilla_server::store::Store>,
    _data: tempfile::TempDir,
}

impl Fleet {
    async fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let settings = Settings {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data.path().to_path_buf(),
            workers: 2,
            ..Settings::default()
        };
        let app = Application::build(settings).await.unwrap();
        let base = format!("http://127.0.0.1:{}", app.port());
        let admin = app.bootstrap_secret().unwrap().to_owned();
        let app_store = app.store();
        tokio::spawn(app.run_until_stopped());
        let fleet = Self {
            base,
            admin,
            client: reqwest::Client::new(),
            publisher: SigningKey::generate(&mut rand::rngs::OsRng),
            app_store,
            _data: data,
        };
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

    async fn call(&self, method: &str, path: &str, body: Value, status: u16) -> Value {
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

    async fn publish(&self, file: &str, version: &str, release: Option<u64>) {
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
        let bundle = sign(&self.publisher, &bytes, "fraud", version, release);
        self.call(
            "POST",
            "/api/v1/models/fraud/versions",
            json!({"version": version, "artifact": {"sha256": hex, "size": bytes.len()}, "bundles": [bundle]}),
            201,
        )
        .await;
    }

    async fn upload_raw(&self, bytes: &[u8]) {
        let res = self
            .client
            .put(format!(
                "{}/api/v1/artifacts/sha256/{}",
                self.base,
                hex_sha(bytes)
            ))
            .bearer_auth(&self.admin)
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success());
    }

    async fn deploy(&self, version: &str) {
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

    async fn agent(&self, dir: &std::path::Path, sink: Arc<MapSink>) -> Updater {
        let token = self
            .call(
                "POST",
                "/api/v1/enrollment-tokens",
                json!({"name": "t", "labels": {"site": "a"}}),
                201,
            )
            .await;
        let trust: flotilla_protocol::registry::TrustRoot = serde_json::from_value(
            self.call("GET", "/api/v1/trust-root", Value::Null, 200)
                .await,
        )
        .unwrap();
        let state = StateDir::open(dir).unwrap();
        let request = EnrollRequest {
            enrollment_token: String::new(),
            device_public_key: String::new(),
            name: Some("test-device".into()),
            labels: BTreeMap::new(),
            hardware: Default::default(),
            agent_version: "test".into(),
        };
        let identity = ensure_enrolled(&state, &self.base, token["token"].as_str(), request, None)
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

    /// The server's desired-state key, as a compromised server (or a test) would use it.
    async fn server_key(&self) -> SigningKey {
        let pem = self
            .app_store
            .get_setting("desired_state_signing_key")
            .await
            .unwrap()
            .unwrap();
        SigningKey::from_pkcs8_pem(&pem).unwrap()
    }
}

#[tokio::test]
async fn pulls_verifies_activates_swaps_and_reports() {
    let fleet = Fleet::start().await;
    fleet.publish("fraud-1.0.0.onnx", "1.0.0", Some(1)).await;
    fleet.publish("fraud-1.1.0.onnx", "1.1.0", Some(2)).await;
    fleet.deploy("1.0.0").await;
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MapSink::default());
    let mut agent = fleet.agent(dir.path(), sink.clone()).await;

    agent.cycle(Duration::from_secs(0)).await.unwrap();
    assert_eq!(sink.version("fraud").as_deref(), Some("1.0.0"));
    let v1 = model_bytes("fraud-1.0.0.onnx");
    assert_eq!(
        std::fs::read(dir.path().join("models").join(hex_sha(&v1))).unwrap(),
        v1
    );

    fleet.deploy("1.1.0").await;
    agent.cycle(Duration::from_secs(0)).await.unwrap();
    assert_eq!(sink.version("fraud").as_deref(), Some("1.1.0"));
    assert_eq!(
        agent.state().previous["fraud"].version,
        "1.0.0",
        "the previous version stays for rollback"
    );

    // The server saw the reports.
    let devices = fleet.call("GET", "/api/v1/devices", Value::Null, 200).await;
    let dev = &devices["devices"][0];
    assert_eq!(dev["slots"][0]["state"], "active");
    assert_eq!(dev["slots"][0]["active_version"], "1.1.0");
    assert_eq!(dev["applied_sequence"], dev["desired_sequence"]);

    // A restart loads the installed model from disk without the server.
    let sink2 = Arc::new(MapSink::default());
    let state = StateDir::open(dir.path()).unwrap();
    let identity = state.identity().unwrap().unwrap();
    let trust: flotilla_protocol::registry::TrustRoot = serde_json::from_value(
        fleet
            .call("GET", "/api/v1/trust-root", Value::Null, 200)
            .await,
    )
    .unwrap();
    let offline =
        ServerClient::new("http://127.0.0.1:9", Some(identity.credential.clone())).unwrap();
    let mut restarted = Updater::new(
        state,
        offline,
        identity,
        Trust::new(trust).unwrap(),
        sink2.clone(),
        Arc::new(|| None),
        system_clock(),
        DownloadLimits::default(),
    )
    .unwrap();
    restarted.restore().await.unwrap();
    assert_eq!(sink2.version("fraud").as_deref(), Some("1.1.0"));
    // Offline: the cycle fails, the model keeps serving, the report waits on disk.
    assert!(restarted.cycle(Duration::from_secs(0)).await.is_err());
    assert_eq!(sink2.version("fraud").as_deref(), Some("1.1.0"));
    assert!(
        std::fs::read_dir(dir.path().join("reports"))
            .unwrap()
            .count()
            >= 1
    );
}

#[tokio::test]
async fn refuses_what_a_compromised_server_sends_and_keeps_serving() {
    let fleet = Fleet::start().await;
    fleet.publish("fraud-1.0.0.onnx", "1.0.0", Some(1)).await;
    fleet.publish("fraud-1.1.0.onnx", "1.1.0", Some(2)).await;
    fleet.deploy("1.1.0").await;
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MapSink::default());
    let mut agent = fleet.agent(dir.path(), sink.clone()).await;
    agent.cycle(Duration::from_secs(0)).await.unwrap();
    assert_eq!(sink.version("fraud").as_deref(), Some("1.1.0"));
    let device_id = fleet.call("GET", "/api/v1/devices", Value::Null, 200).await["devices"][0]
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The attacker holds the server key (the worst case) but not the publisher keys.
    let server_key = fleet.server_key().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut seq = agent.state().accepted_sequence;
    let v11 = model_bytes("fraud-1.1.0.onnx");
    let v1 = model_bytes("fraud-1.0.0.onnx");
    let good_slot = |bytes: &[u8], version: &str, bundle: String| ModelSlot {
        model: "fraud".into(),
        version: version.into(),
        sha256: hex_sha(bytes),
        size: bytes.len() as u64,
        url: format!("/api/v1/artifacts/sha256/{}", hex_sha(bytes)),
        bundles: vec![bundle],
    };
    let mut envelope = |slots: Vec<ModelSlot>| {
        seq += 1;
        serde_json::to_vec(&sign_desired_state(
            &server_key,
            &DesiredState {
                device_id: device_id.clone(),
                sequence: seq,
                issued_at: now,
                expires_at: now + 3600,
                slots,
            },
        ))
        .unwrap()
    };
    let failure = |agent: &Updater| {
        agent
            .state()
            .failures
            .get("fraud")
            .map(|f| f.reason.clone())
            .unwrap_or_default()
    };

    // 1. A model signed by a key outside the trust root.
    let rogue = SigningKey::generate(&mut rand::rngs::OsRng);
    let junk = model_bytes("fraud-2.0.0-disagree.onnx");
    agent
        .apply(&envelope(vec![good_slot(
            &junk,
            "3.0.0",
            sign(&rogue, &junk, "fraud", "3.0.0", Some(9)),
        )]))
        .await
        .unwrap();
    assert!(
        failure(&agent).starts_with("no_trusted_signature"),
        "{}",
        failure(&agent)
    );
    assert_eq!(sink.version("fraud").as_deref(), Some("1.1.0"));

    // 2. A downgrade to a properly signed older version with no rollback allowance.
    agent
        .apply(&envelope(vec![good_slot(
            &v1,
            "1.0.0",
            sign(&fleet.publisher, &v1, "fraud", "1.0.0", Some(1)),
        )]))
        .await
        .unwrap();
    assert!(
        failure(&agent).starts_with("downgrade_refused"),
        "{}",
        failure(&agent)
    );
    assert_eq!(sink.version("fraud").as_deref(), Some("1.1.0"));

    // 3. A signed version relabelled as another. (Each case uses other bytes: the agent backs
    // off from a digest that already failed instead of retrying it at once.)
    let sensor = model_bytes("sensor-anomaly-1.0.0.onnx");
    agent
        .apply(&envelope(vec![good_slot(
            &sensor,
            "9.0.0",
            sign(&fleet.publisher, &sensor, "fraud", "5.0.0", Some(5)),
        )]))
        .await
        .unwrap();
    assert!(
        failure(&agent).starts_with("signed_facts_mismatch"),
        "{}",
        failure(&agent)
    );

    // 4. Bytes that differ from the signed digest (same size, one byte flipped).
    let faulty = model_bytes("fraud-1.2.0-faulty.onnx");
    let mut tampered = faulty.clone();
    tampered[100] ^= 1;
    fleet.upload_raw(&tampered).await;
    let mut swapped = good_slot(
        &faulty,
        "4.0.0",
        sign(&fleet.publisher, &faulty, "fraud", "4.0.0", Some(10)),
    );
    swapped.url = format!("/api/v1/artifacts/sha256/{}", hex_sha(&tampered));
    agent.apply(&envelope(vec![swapped])).await.unwrap();
    assert!(
        failure(&agent).starts_with("artifact_digest_mismatch"),
        "{}",
        failure(&agent)
    );
    assert_eq!(sink.version("fraud").as_deref(), Some("1.1.0"));

    // 4b. More bytes than the signed size ("endless data"): the download stops at the size.
    let big = model_bytes("vision-cnn-1.0.0.onnx");
    fleet.upload_raw(&big).await;
    let small = b"a small signed file".repeat(50);
    let mut endless = good_slot(
        &small,
        "4.0.1",
        sign(&fleet.publisher, &small, "fraud", "4.0.1", Some(11)),
    );
    endless.url = format!("/api/v1/artifacts/sha256/{}", hex_sha(&big));
    agent.apply(&envelope(vec![endless])).await.unwrap();
    assert!(
        failure(&agent).starts_with("download_refused"),
        "{}",
        failure(&agent)
    );
    assert!(
        !dir.path().join("partial").join(hex_sha(&small)).exists(),
        "nothing of it is kept"
    );

    // 5. A model name that is a path.
    let mut evil = good_slot(
        &v11,
        "1.1.0",
        sign(&fleet.publisher, &v11, "fraud", "1.1.0", Some(2)),
    );
    evil.model = "../../etc/x".into();
    assert_eq!(
        agent.apply(&envelope(vec![evil])).await.unwrap_err().code(),
        "invalid_slot"
    );

    // 6. A replayed older desired state.
    let old = envelope(vec![]);
    agent
        .apply(&envelope(vec![good_slot(
            &v11,
            "1.1.0",
            sign(&fleet.publisher, &v11, "fraud", "1.1.0", Some(2)),
        )]))
        .await
        .unwrap();
    assert_eq!(
        agent.apply(&old).await.unwrap_err().code(),
        "replayed_desired_state"
    );

    // 7. Not signed by the server key at all, and meant for another device.
    let forged = serde_json::to_vec(&sign_desired_state(
        &rogue,
        &DesiredState {
            device_id: device_id.clone(),
            sequence: seq + 10,
            issued_at: now,
            expires_at: now + 3600,
            slots: vec![],
        },
    ))
    .unwrap();
    assert_eq!(
        agent.apply(&forged).await.unwrap_err().code(),
        "bad_server_signature"
    );
    let other = serde_json::to_vec(&sign_desired_state(
        &server_key,
        &DesiredState {
            device_id: "someone-else".into(),
            sequence: seq + 10,
            issued_at: now,
            expires_at: now + 3600,
            slots: vec![],
        },
    ))
    .unwrap();
    assert_eq!(
        agent.apply(&other).await.unwrap_err().code(),
        "wrong_device"
    );
    let expired = serde_json::to_vec(&sign_desired_state(
        &server_key,
        &DesiredState {
            device_id: device_id.clone(),
            sequence: seq + 10,
            issued_at: now - 7200,
            expires_at: now - 3600,
            slots: vec![],
        },
    ))
    .unwrap();
    assert_eq!(
        agent.apply(&expired).await.unwrap_err().code(),
        "expired_desired_state"
    );

    // Through all of it, the verified model kept serving.
    assert_eq!(sink.version("fraud").as_deref(), Some("1.1.0"));
    assert_eq!(agent.state().installed["fraud"].version, "1.1.0");
}
