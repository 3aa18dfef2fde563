//! Devices: enrollment, deployments, the signed desired state and reports.

use base64::Engine as _;
use flotilla_protocol::agent::verify_desired_state;
use flotilla_protocol::signing::{PublicKey, SigningKey};
use serde_json::{json, Value};

use crate::helpers::{assert_error, both_backends, spawn_app, Db, TestApp};
use crate::registry::{sample_model, sha256_hex};

pub struct Device {
    pub id: String,
    pub credential: String,
    pub server_key: PublicKey,
}

impl TestApp {
    pub async fn enrollment_token(&self, body: Value) -> String {
        let res = self
            .client
            .post(self.url("/api/v1/enrollment-tokens"))
            .bearer_auth(&self.admin_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let v: Value = res.json().await.unwrap();
        assert!(v["token"].as_str().unwrap().starts_with("fle_"));
        v["token"].as_str().unwrap().to_owned()
    }

    pub async fn try_enroll(&self, token: &str, labels: Value) -> reqwest::Response {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let raw = key.public_key().to_der();
        // The last 32 bytes of an ed25519 SPKI are the raw key.
        let public = base64::engine::general_purpose::STANDARD.encode(&raw[raw.len() - 32..]);
        self.client
            .post(self.url("/api/v1/enroll"))
            .json(&json!({
                "enrollment_token": token,
                "device_public_key": public,
                "labels": labels,
                "hardware": {"arch": "aarch64", "os": "linux", "cpu_cores": 4, "memory_mib": 4096},
                "agent_version": "test",
            }))
            .send()
            .await
            .unwrap()
    }

    /// Enrolls a device with a token that lets it set the label keys it asks for.
    pub async fn enroll(&self, labels: Value) -> Device {
        let keys: Vec<&String> = labels
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        let token = self
            .enrollment_token(json!({"name": "test", "allowed_device_labels": keys}))
            .await;
        let res = self.try_enroll(&token, labels).await;
        assert_eq!(res.status(), 201);
        let v: Value = res.json().await.unwrap();
        Device {
            id: v["device_id"].as_str().unwrap().to_owned(),
            credential: v["credential"].as_str().unwrap().to_owned(),
            server_key: PublicKey::from_pem(v["server_public_key_pem"].as_str().unwrap()).unwrap(),
        }
    }

    pub async fn poll(&self, d: &Device, etag: Option<&str>, wait: u64) -> reqwest::Response {
        let mut req = self
            .client
            .get(self.url(&format!("/api/v1/agent/desired-state?wait={wait}")))
            .bearer_auth(&d.credential);
        if let Some(e) = etag {
            req = req.header("if-none-match", e);
        }
        req.send().await.unwrap()
    }

    pub async fn deploy(&self, model: &str, version: &str, selector: &str) -> reqwest::Response {
        self.client
            .put(self.url("/api/v1/deployments"))
            .bearer_auth(&self.admin_token)
            .json(&json!({"model": model, "version": version, "selector": selector}))
            .send()
            .await
            .unwrap()
    }

    /// Publishes fraud 1.0.0 and 1.1.0.
    pub async fn with_fraud_versions(&self) {
        let p = self.with_publisher().await;
        for (file, v) in [("fraud-1.0.0.onnx", "1.0.0"), ("fraud-1.1.0.onnx", "1.1.0")] {
            let bytes = sample_model(file);
            self.upload(&bytes).await;
            assert_eq!(
                self.publish("fraud", v, &bytes, &[p.sign(&bytes, "fraud", v)])
                    .await
                    .status(),
                201
            );
        }
    }
}

fn verified(d: &Device, body: &[u8]) -> flotilla_protocol::agent::DesiredState {
    verify_desired_state(body, &d.server_key, &d.id, 0, now())
        .unwrap_or_else(|e| panic!("desired state does not verify: {e}"))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

both_backends!(
    deployments_reach_matching_devices_signed,
    deployments_reach_matching_devices_signed_on
);
async fn deployments_reach_matching_devices_signed_on(db: Db) {
    let app = spawn_app(db).await;
    app.with_fraud_versions().await;
    let plant7 = app.enroll(json!({"site": "plant-7"})).await;
    let plant9 = app.enroll(json!({"site": "plant-9"})).await;

    // Nothing deployed yet: an empty, signed state.
    let res = app.poll(&plant7, None, 0).await;
    assert_eq!(res.status(), 200);
    let etag0 = res.headers()["etag"].to_str().unwrap().to_owned();
    let poll_after: u64 = res.headers()["flotilla-poll-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (24..=36).contains(&poll_after),
        "jittered around 30s: {poll_after}"
    );
    let body = res.bytes().await.unwrap();
    let s0 = verify_desired_state(&body, &plant7.server_key, &plant7.id, 0, now()).unwrap();
    assert!(s0.slots.is_empty());
    assert!(s0.expires_at > now() + 6 * 24 * 3600);

    assert_eq!(
        app.deploy("fraud", "1.0.0", "site=plant-7").await.status(),
        201
    );
    let res = app.poll(&plant7, Some(&etag0), 0).await;
    assert_eq!(res.status(), 200);
    let etag1 = res.headers()["etag"].to_str().unwrap().to_owned();
    let s1 = verify_desired_state(
        &res.bytes().await.unwrap(),
        &plant7.server_key,
        &plant7.id,
        s0.sequence,
        now(),
    )
    .unwrap();
    assert!(s1.sequence > s0.sequence);
    assert_eq!(s1.slots.len(), 1);
    let slot = &s1.slots[0];
    let v1 = sample_model("fraud-1.0.0.onnx");
    assert_eq!(
        (slot.model.as_str(), slot.version.as_str()),
        ("fraud", "1.0.0")
    );
    assert_eq!(slot.sha256, sha256_hex(&v1));
    assert_eq!(slot.size, v1.len() as u64);
    assert_eq!(slot.bundles.len(), 1);

    // Unchanged: 304 with the same ETag.
    let res = app.poll(&plant7, Some(&etag1), 0).await;
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()["etag"].to_str().unwrap(), etag1);

    // The device downloads its artifact with its own credential.
    let res = app
        .client
        .get(app.url(&slot.url))
        .bearer_auth(&plant7.credential)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.bytes().await.unwrap().as_ref(), &v1[..]);

    // The other site gets nothing.
    let res = app.poll(&plant9, None, 0).await;
    assert!(verified(&plant9, &res.bytes().await.unwrap())
        .slots
        .is_empty());

    // A more specific deployment wins for the devices it selects.
    assert_eq!(app.deploy("fraud", "1.1.0", "").await.status(), 201);
    let res = app.poll(&plant9, None, 0).await;
    assert_eq!(
        verified(&plant9, &res.bytes().await.unwrap()).slots[0].version,
        "1.1.0"
    );
    let res = app.poll(&plant7, None, 0).await;
    assert_eq!(
        verified(&plant7, &res.bytes().await.unwrap()).slots[0].version,
        "1.0.0"
    );

    let list = app.get_json("/api/v1/deployments").await;
    let counts: Vec<_> = list["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["selector"].clone(), d["devices"].clone()))
        .collect();
    assert!(
        counts.contains(&(json!("site=plant-7"), json!(1))),
        "{counts:?}"
    );
    assert!(counts.contains(&(json!(""), json!(1))), "{counts:?}");
    let dev = app
        .get_json(&format!("/api/v1/devices/{}", plant7.id))
        .await;
    assert_eq!(dev["desired"]["fraud"], "1.0.0");
}

#[tokio::test]
async fn a_long_poll_wakes_when_the_state_changes() {
    let app = spawn_app(Db::Sqlite).await;
    app.with_fraud_versions().await;
    let d = app.enroll(json!({"site": "a"})).await;
    let res = app.poll(&d, None, 0).await;
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    // The poll waits up to 60 s; it only returns 200 if the deployment below wakes it (a
    // missed wake-up would end in 304 after the wait).
    let poll = {
        let client = app.client.clone();
        let url = app.url("/api/v1/agent/desired-state?wait=60");
        let cred = d.credential.clone();
        let etag = etag.clone();
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(cred)
                .header("if-none-match", etag)
                .send()
                .await
                .unwrap()
        })
    };
    // Let the poll reach the server and start waiting: it is the only request in flight, and a
    // deployment made before it subscribes is still seen (it recomputes before waiting).
    assert_eq!(app.deploy("fraud", "1.0.0", "site=a").await.status(), 201);
    let res = poll.await.unwrap();
    assert_eq!(res.status(), 200);
    assert_ne!(res.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(
        verified(&d, &res.bytes().await.unwrap()).slots[0].version,
        "1.0.0"
    );
}

both_backends!(
    enrollment_tokens_are_enforced,
    enrollment_tokens_are_enforced_on
);
async fn enrollment_tokens_are_enforced_on(db: Db) {
    let app = spawn_app(db).await;
    let token = app
        .enrollment_token(
            json!({"name": "plant-7 gateways", "labels": {"site": "plant-7"}, "max_uses": 2,
                   "allowed_device_labels": ["class"]}),
        )
        .await;
    let a = app
        .try_enroll(&token, json!({"site": "spoofed", "class": "gateway"}))
        .await;
    assert_eq!(a.status(), 201);
    let a: Value = a.json().await.unwrap();
    assert_eq!(a["status"], "active");
    let dev = app
        .get_json(&format!(
            "/api/v1/devices/{}",
            a["device_id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        dev["labels"],
        json!({"site": "plant-7", "class": "gateway"}),
        "token labels win"
    );
    assert_eq!(dev["hardware"]["arch"], "aarch64");
    assert_eq!(app.try_enroll(&token, json!({})).await.status(), 201);
    let used_up = app.try_enroll(&token, json!({})).await;
    assert_error(used_up, 401, "unauthorized").await;
    assert_error(
        app.try_enroll("fle_nope", json!({})).await,
        401,
        "unauthorized",
    )
    .await;

    let revoked = app.enrollment_token(json!({"name": "r"})).await;
    let list = app.get_json("/api/v1/enrollment-tokens").await;
    let id = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "r")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .client
        .delete(app.url(&format!("/api/v1/enrollment-tokens/{id}")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_error(
        app.try_enroll(&revoked, json!({})).await,
        401,
        "unauthorized",
    )
    .await;
    let used = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "plant-7 gateways")
        .unwrap()["uses"]
        .clone();
    assert_eq!(used, 2);

    // Bad keys and labels are 400s.
    let t = app.enrollment_token(json!({"name": "x"})).await;
    let res = app
        .client
        .post(app.url("/api/v1/enroll"))
        .json(&json!({"enrollment_token": t, "device_public_key": "AAAA"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "invalid_argument").await;
}

#[tokio::test]
async fn expired_enrollment_tokens_are_refused() {
    let app = spawn_app(Db::Sqlite).await;
    let secret = "fle_expired_test_token_0123456789";
    app.store
        .insert_enrollment_token(&flotilla_server::store::EnrollmentTokenRecord {
            id: uuid::Uuid::new_v4(),
            name: "old".into(),
            secret_hash: flotilla_server::auth::hash_secret(secret),
            prefix: "fle_expired".into(),
            labels: Default::default(),
            require_approval: false,
            max_uses: 10,
            uses: 0,
            created_by: "test".into(),
            created_at: chrono::Utc::now() - chrono::Duration::days(2),
            expires_at: chrono::Utc::now() - chrono::Duration::days(1),
            revoked_at: None,
            allowed_device_labels: Vec::new(),
        })
        .await
        .unwrap();
    assert_error(app.try_enroll(secret, json!({})).await, 401, "unauthorized").await;
}

#[tokio::test]
async fn approval_revocation_and_deletion() {
    let app = spawn_app(Db::Sqlite).await;
    let token = app
        .enrollment_token(json!({"name": "careful", "require_approval": true}))
        .await;
    let res = app.try_enroll(&token, json!({})).await;
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["status"], "pending");
    let d = Device {
        id: v["device_id"].as_str().unwrap().to_owned(),
        credential: v["credential"].as_str().unwrap().to_owned(),
        server_key: PublicKey::from_pem(v["server_public_key_pem"].as_str().unwrap()).unwrap(),
    };
    let msg = assert_error(app.poll(&d, None, 0).await, 403, "forbidden").await;
    assert!(msg.contains("approve"), "{msg}");
    let pending = app.get_json("/api/v1/devices?status=pending").await;
    assert_eq!(pending["devices"].as_array().unwrap().len(), 1);

    let viewer = app.token_with_role("v", "viewer").await;
    let res = app
        .client
        .post(app.url(&format!("/api/v1/devices/{}/approve", d.id)))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_error(res, 403, "forbidden").await;
    let operator = app.token_with_role("ops", "operator").await;
    let res = app
        .client
        .post(app.url(&format!("/api/v1/devices/{}/approve", d.id)))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(app.poll(&d, None, 0).await.status(), 200);

    let res = app
        .client
        .post(app.url(&format!("/api/v1/devices/{}/revoke", d.id)))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let msg = assert_error(app.poll(&d, None, 0).await, 401, "unauthorized").await;
    assert!(msg.contains("revoked"), "{msg}");
    let res = app
        .client
        .post(app.url(&format!("/api/v1/devices/{}/approve", d.id)))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_error(res, 409, "conflict").await;

    let res = app
        .client
        .delete(app.url(&format!("/api/v1/devices/{}", d.id)))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = app
        .client
        .get(app.url(&format!("/api/v1/devices/{}", d.id)))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_error(res, 404, "not_found").await;
    let res = app
        .client
        .get(app.url("/api/v1/devices/..%2Fx"))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "invalid_path").await;
}

both_backends!(reports_are_recorded_once, reports_are_recorded_once_on);
async fn reports_are_recorded_once_on(db: Db) {
    let app = spawn_app(db).await;
    let d = app.enroll(json!({"site": "a"})).await;
    let report = json!({
        "report_seq": 1,
        "created_at": now(),
        "applied_sequence": 1,
        "slots": [{"model": "fraud", "version": "1.0.0", "state": "active", "active_version": "1.0.0"}],
        "health": {"start": now() - 60, "end": now(), "memory_rss_bytes": 12_000_000u64,
                   "models": [{"model": "fraud", "version": "1.0.0", "inference_count": 100, "error_count": 1,
                               "latency_ms": {"p50": 0.4, "p95": 0.9, "p99": 1.5}}]},
    });
    let send = |body: Value| {
        let c = app.client.clone();
        let url = app.url("/api/v1/agent/report");
        let cred = d.credential.clone();
        async move {
            c.post(url)
                .bearer_auth(cred)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let res = send(report.clone()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["accepted"], true);
    let res = send(report.clone()).await;
    assert_eq!(
        res.json::<Value>().await.unwrap()["accepted"],
        false,
        "a replay is ignored"
    );
    let dev = app.get_json(&format!("/api/v1/devices/{}", d.id)).await;
    assert_eq!(dev["applied_sequence"], 1);
    assert_eq!(dev["slots"][0]["state"], "active");
    assert_eq!(dev["health"]["models"][0]["inference_count"], 100);
    assert!(dev["last_seen_at"].is_string());

    let mut bad = report.clone();
    bad["report_seq"] = json!(2);
    bad["slots"][0]["model"] = json!("../../etc/x");
    assert_error(send(bad).await, 400, "invalid_argument").await;
    let mut malformed = report.clone();
    malformed["slots"][0]["state"] = json!("exploded");
    assert_error(send(malformed).await, 400, "invalid_json").await;
    let res = app
        .client
        .post(app.url("/api/v1/agent/report"))
        .bearer_auth(&app.admin_token)
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "unauthorized").await;
}

#[tokio::test]
async fn labels_selectors_and_yanked_versions() {
    let app = spawn_app(Db::Sqlite).await;
    app.with_fraud_versions().await;
    let d = app.enroll(json!({"site": "a", "class": "edge"})).await;
    let _other = app.enroll(json!({"site": "b"})).await;
    let sel = app
        .get_json("/api/v1/devices?selector=site%3Da,class%3Dedge")
        .await;
    assert_eq!(sel["devices"].as_array().unwrap().len(), 1);
    let res = app
        .client
        .get(app.url("/api/v1/devices?selector=nonsense"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "invalid_argument").await;

    assert_eq!(app.deploy("fraud", "1.0.0", "site=b").await.status(), 201);
    let res = app.poll(&d, None, 0).await;
    assert!(verified(&d, &res.bytes().await.unwrap()).slots.is_empty());
    let res = app
        .client
        .put(app.url(&format!("/api/v1/devices/{}/labels", d.id)))
        .bearer_auth(&app.admin_token)
        .json(&json!({"labels": {"site": "b"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app.poll(&d, None, 0).await;
    assert_eq!(
        verified(&d, &res.bytes().await.unwrap()).slots.len(),
        1,
        "relabelled into the deployment"
    );

    let res = app
        .client
        .post(app.url("/api/v1/models/fraud/versions/1.1.0/yank"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_error(
        app.deploy("fraud", "1.1.0", "site=b").await,
        409,
        "conflict",
    )
    .await;
    assert_error(
        app.deploy("fraud", "3.0.0", "site=b").await,
        404,
        "not_found",
    )
    .await;
    assert_error(app.deploy("nope", "1.0.0", "").await, 404, "not_found").await;
    assert_error(
        app.deploy("fraud", "1.0.0", "site").await,
        400,
        "invalid_argument",
    )
    .await;
    let publisher = app.token_with_role("ci", "publisher").await;
    let res = app
        .client
        .put(app.url("/api/v1/deployments"))
        .bearer_auth(&publisher)
        .json(&json!({"model": "fraud", "version": "1.0.0", "selector": ""}))
        .send()
        .await
        .unwrap();
    assert_error(res, 403, "forbidden").await;
}

both_backends!(
    escalation_policies_travel_in_the_signed_state,
    escalation_policies_travel_in_the_signed_state_on
);
async fn escalation_policies_travel_in_the_signed_state_on(db: Db) {
    let app = spawn_app(db).await;
    app.with_fraud_versions().await;
    let device = app.enroll(json!({"site": "plant-7"})).await;
    let deploy = |escalation: Value| {
        let app = &app;
        async move {
            app.client
                .put(app.url("/api/v1/deployments"))
                .bearer_auth(&app.admin_token)
                .json(
                    &json!({"model": "fraud", "version": "1.0.0", "selector": "site=plant-7",
                              "escalation": escalation}),
                )
                .send()
                .await
                .unwrap()
        }
    };
    let policy = json!({"output": "probabilities", "threshold": 0.8, "server_model": "fraud",
                        "server_version": "1.1.0", "timeout_ms": 500});
    assert_eq!(deploy(policy.clone()).await.status(), 201);
    let res = app.poll(&device, None, 0).await;
    let state = verified(&device, &res.bytes().await.unwrap());
    let slot = &state.slots[0];
    assert_eq!(slot.version, "1.0.0");
    assert_eq!(
        serde_json::to_value(slot.escalation.as_ref().unwrap()).unwrap(),
        policy
    );
    let listed: Value = app
        .client
        .get(app.url("/api/v1/deployments"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["deployments"][0]["escalation"], policy);

    // Each bad policy is refused with its code, and the stored one stays.
    let bad = |patch: Value| {
        let mut p = policy.clone();
        for (k, v) in patch.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    for (patch, status, code) in [
        (json!({"output": " "}), 400, "invalid_argument"),
        (json!({"timeout_ms": 0}), 400, "invalid_argument"),
        (json!({"timeout_ms": 600_000}), 400, "invalid_argument"),
        (json!({"server_model": "nosuch"}), 404, "not_found"),
        (json!({"server_version": "9.9.9"}), 404, "not_found"),
        (json!({"server_version": "one"}), 400, "invalid_argument"),
        (json!({"threshold": "high"}), 400, "invalid_json"),
        (json!({"extra": 1}), 400, "invalid_json"),
    ] {
        let res = deploy(bad(patch.clone())).await;
        assert_eq!(res.status().as_u16(), status, "{patch}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{patch}: {body}");
    }
    let res = app.poll(&device, None, 0).await;
    let state = verified(&device, &res.bytes().await.unwrap());
    assert_eq!(state.slots[0].escalation.as_ref().unwrap().threshold, 0.8);

    // Deploying without a policy removes it.
    assert_eq!(
        app.deploy("fraud", "1.0.0", "site=plant-7").await.status(),
        200
    );
    let res = app.poll(&device, None, 0).await;
    let state = verified(&device, &res.bytes().await.unwrap());
    assert!(state.slots[0].escalation.is_none());
}

#[tokio::test]
async fn placement_compares_versions_per_device_class() {
    let app = spawn_app(Db::Sqlite).await;
    app.with_fraud_versions().await;
    let report = |version: &str, n: u64, p95: f64, escalations: u64| {
        json!({
            "report_seq": 1, "created_at": now(), "applied_sequence": 1, "slots": [],
            "health": {"start": now() - 60, "end": now(), "memory_rss_bytes": 20_000_000u64,
                       "models": [{"model": "fraud", "version": version, "inference_count": n,
                                   "error_count": 0, "escalations": escalations,
                                   "escalation_fallbacks": escalations.min(1),
                                   "escalation_latency_ms": {"p50": 3.0, "p95": 6.0, "p99": 9.0},
                                   "latency_ms": {"p50": p95 / 2.0, "p95": p95, "p99": p95}}]},
        })
    };
    for (class, version, n, p95, esc) in [
        ("pi", "1.0.0", 100, 4.0, 20),
        ("pi", "1.0.0", 300, 8.0, 0),
        ("jetson", "1.1.0", 50, 1.0, 5),
    ] {
        let d = app.enroll(json!({"class": class})).await;
        let res = app
            .client
            .post(app.url("/api/v1/agent/report"))
            .bearer_auth(&d.credential)
            .json(&report(version, n, p95, esc))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let p = app
        .get_json("/api/v1/placement?model=fraud&group_by=class")
        .await;
    assert_eq!(p["group_by"], "class");
    let rows = p["edge"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{p}");
    assert_eq!(
        (rows[0]["version"].as_str(), rows[0]["class"].as_str()),
        (Some("1.0.0"), Some("pi"))
    );
    assert_eq!(rows[0]["devices"], 2);
    assert_eq!(rows[0]["inferences"], 400);
    assert_eq!(rows[0]["latency_ms"]["p95"], 7.0); // (100·4 + 300·8) / 400
    assert_eq!(rows[0]["escalation_rate"], 0.05);
    assert_eq!(rows[1]["class"], "jetson");
    assert_eq!(rows[1]["escalation_latency_ms"]["p95"], 6.0);
    assert_eq!(p["server"], json!([]), "the server has served nothing yet");
    // What the server itself serves shows up beside the edge.
    let res = app
        .client
        .post(app.url("/v2/models/fraud/versions/1.1.0/infer"))
        .bearer_auth(&app.admin_token)
        .json(
            &json!({"inputs": [{"name": "features", "datatype": "FP32", "shape": [2, 8],
                                  "data": vec![0.5; 16]}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Default grouping is the hardware profile.
    let p = app.get_json("/api/v1/placement?model=fraud").await;
    assert_eq!(p["group_by"], "hardware");
    assert_eq!(p["server"][0]["version"], "1.1.0");
    assert_eq!(p["server"][0]["inferences"], 1);
    assert!(p["server"][0]["latency_ms"]["p95"].as_f64().unwrap() > 0.0);

    let res = app
        .client
        .get(app.url("/api/v1/placement?model=nosuch"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_error(res, 404, "not_found").await;
    let res = app
        .client
        .get(app.url("/api/v1/placement?model=fraud&group_by=a%3Db"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "invalid_argument").await;
    let res = app
        .client
        .get(app.url("/api/v1/placement"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "invalid_query").await;
}

#[tokio::test]
async fn health_history_per_device_and_per_cohort() {
    let app = spawn_app(Db::Sqlite).await;
    app.with_fraud_versions().await;
    let report = |seq: u64, version: &str, n: u64, errors: u64, p95: f64| {
        json!({
            "report_seq": seq, "created_at": now(), "applied_sequence": 1, "slots": [],
            "health": {"start": now() - 60, "end": now() - 60 + seq, "memory_rss_bytes": 1000,
                       "models": [{"model": "fraud", "version": version, "inference_count": n,
                                   "error_count": errors,
                                   "latency_ms": {"p50": p95 / 2.0, "p95": p95, "p99": p95}}]},
        })
    };
    let pi = app.enroll(json!({"class": "pi"})).await;
    let jetson = app.enroll(json!({"class": "jetson"})).await;
    for (device, seq, version, n, errors, p95) in [
        (&pi, 1, "1.0.0", 100, 0, 4.0),
        (&pi, 2, "1.1.0", 100, 10, 8.0),
        (&jetson, 1, "1.1.0", 300, 0, 2.0),
    ] {
        let res = app
            .client
            .post(app.url("/api/v1/agent/report"))
            .bearer_auth(&device.credential)
            .json(&report(seq, version, n, errors, p95))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    let h = app
        .get_json(&format!("/api/v1/devices/{}/health", pi.id))
        .await;
    assert_eq!(h["device_id"], pi.id.as_str());
    let points = h["points"].as_array().unwrap();
    assert_eq!(points.len(), 2, "{h}");
    assert_eq!(points[0]["version"], "1.0.0", "oldest first");
    assert_eq!(points[1]["error_count"], 10);
    assert_eq!(points[1]["latency_ms"]["p95"], 8.0);
    assert_eq!(points[1]["memory_rss_bytes"], 1000);

    // Every device, one bucket wide enough to hold every report.
    let c = app
        .get_json("/api/v1/cohort-health?model=fraud&since_secs=600&bucket_secs=600")
        .await;
    assert_eq!(c["devices"], 2);
    assert_eq!(c["truncated"], false);
    let points = c["points"].as_array().unwrap();
    let v110: Vec<&Value> = points.iter().filter(|p| p["version"] == "1.1.0").collect();
    let inferences: u64 = v110
        .iter()
        .map(|p| p["inference_count"].as_u64().unwrap())
        .sum();
    assert_eq!(inferences, 400, "{c}");
    // A cohort by label sees only its devices.
    let c = app
        .get_json("/api/v1/cohort-health?selector=class%3Djetson&status=active")
        .await;
    assert_eq!(c["selector"], "class=jetson");
    assert_eq!(c["devices"], 1);
    let points = c["points"].as_array().unwrap();
    assert!(!points.is_empty());
    assert!(points.iter().all(|p| p["version"] == "1.1.0"), "{c}");

    for bad in [
        "/api/v1/cohort-health?since_secs=10",
        "/api/v1/cohort-health?since_secs=86400&bucket_secs=10",
        "/api/v1/cohort-health?status=lost",
    ] {
        let res = app
            .client
            .get(app.url(bad))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .unwrap();
        assert_error(res, 400, "invalid_query").await;
    }
    let res = app
        .client
        .get(app.url(&format!("/api/v1/devices/{}/health", uuid::Uuid::new_v4())))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_error(res, 404, "not_found").await;
}

/// Unchanged polls are answered from the check-in cache; deleting the device must still refuse
/// its very next poll, held or not.
#[tokio::test]
async fn a_deleted_device_is_refused_on_its_next_poll() {
    let app = spawn_app(Db::Sqlite).await;
    let d = app.enroll(json!({})).await;
    let first = app.poll(&d, None, 0).await;
    assert_eq!(first.status(), 200);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(app.poll(&d, Some(&etag), 0).await.status(), 304);
    assert_eq!(app.poll(&d, Some(&etag), 0).await.status(), 304);

    // A poll held (or arriving) when the device is deleted is refused.
    let held = {
        let (client, url, credential, etag) = (
            app.client.clone(),
            app.url("/api/v1/agent/desired-state?wait=30"),
            d.credential.clone(),
            etag.clone(),
        );
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(credential)
                .header("if-none-match", etag)
                .send()
                .await
                .unwrap()
        })
    };
    let res = app
        .client
        .delete(app.url(&format!("/api/v1/devices/{}", d.id)))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    assert_error(held.await.unwrap(), 401, "unauthorized").await;
    assert_error(app.poll(&d, Some(&etag), 0).await, 401, "unauthorized").await;
}
