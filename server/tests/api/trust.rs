//! Hostile tests of the trust model: each test is an attack, named after it, that the server
//! must refuse.

use serde_json::{json, Value};

use crate::helpers::{assert_error, both_backends, spawn_app, Db, TestApp};
use crate::registry::Publisher;

impl TestApp {
    async fn audit_entries(&self, limit: u32) -> Vec<Value> {
        let page: Value = self
            .client
            .get(self.url(&format!("/api/v1/audit?limit={limit}")))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["entries"].as_array().unwrap().clone()
    }

    async fn set_global_threshold(&self, threshold: u32) {
        let res = self
            .client
            .put(self.url("/api/v1/trust/threshold"))
            .bearer_auth(&self.admin_token)
            .json(&json!({"threshold": threshold}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
}

async fn create_model_as(
    app: &TestApp,
    token: &str,
    name: &str,
    threshold: u32,
) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/models"))
        .bearer_auth(token)
        .json(&json!({"name": name, "description": "", "signing_threshold": threshold}))
        .send()
        .await
        .unwrap()
}

both_backends!(
    publisher_cannot_lower_model_threshold_below_global,
    publisher_cannot_lower_model_threshold_below_global_on
);
async fn publisher_cannot_lower_model_threshold_below_global_on(db: Db) {
    let app = spawn_app(db).await;
    for name in ["a", "b", "c"] {
        let p = Publisher::new();
        assert_eq!(app.register_key(name, &p.pem()).await.status(), 201);
    }
    app.set_global_threshold(2).await;
    let publisher = app.token_with_role("ci", "publisher").await;

    // One stolen publisher key must not be enough: a publisher may not make its own model 1-of-n.
    let res = create_model_as(&app, &publisher, "fraud", 1).await;
    assert_error(res, 403, "threshold_below_global").await;
    let res = app
        .client
        .get(app.url("/api/v1/models/fraud"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "the refused model was not stored");

    // Equal or stricter stays a publisher's call.
    assert_eq!(
        create_model_as(&app, &publisher, "fraud", 2).await.status(),
        201
    );
    assert_eq!(
        create_model_as(&app, &publisher, "strict", 3)
            .await
            .status(),
        201
    );

    // An admin may lower it, and the audit log says to what and under which global threshold.
    let res = create_model_as(&app, &app.admin_token, "lenient", 1).await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["signing_threshold"], 1);
    let entries = app.audit_entries(1).await;
    assert_eq!(entries[0]["route"], "/api/v1/models");
    assert_eq!(entries[0]["detail"]["model"], "lenient");
    assert_eq!(entries[0]["detail"]["signing_threshold"], 1);
    assert_eq!(entries[0]["detail"]["global_threshold"], 2);
}

both_backends!(
    anonymous_posts_to_unknown_routes_do_not_flood_the_audit_log,
    anonymous_posts_to_unknown_routes_do_not_flood_the_audit_log_on
);
async fn anonymous_posts_to_unknown_routes_do_not_flood_the_audit_log_on(db: Db) {
    let app = spawn_app(db).await;
    let before = app.audit_entries(500).await.len();
    for _ in 0..100 {
        let res = app
            .client
            .post(app.url("/api/v1/nope"))
            .json(&json!({"junk": true}))
            .send()
            .await
            .unwrap();
        assert_error(res, 404, "route_not_found").await;
    }
    assert_eq!(app.audit_entries(500).await.len(), before);
    // A refused anonymous call to a real route is still recorded.
    let res = app
        .client
        .post(app.url("/api/v1/tokens"))
        .json(&json!({"name": "x", "role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(app.audit_entries(500).await.len(), before + 1);
}

both_backends!(
    revoked_device_holding_a_long_poll_gets_401,
    revoked_device_holding_a_long_poll_gets_401_on
);
async fn revoked_device_holding_a_long_poll_gets_401_on(db: Db) {
    let app = spawn_app(db).await;
    held_poll_ends_when_revoked(&app, &app).await;
}

/// The same attack across replicas: the poll is held on one server, the revocation is made on
/// another sharing the Postgres database, and reaches the first through `LISTEN/NOTIFY`.
#[tokio::test]
async fn revoked_device_holding_a_long_poll_on_another_replica_gets_401() {
    let url = crate::helpers::fresh_postgres_database().await;
    let secret = format!("flt_{}", "R".repeat(43));
    let settings = |s: &mut flotilla_server::config::Settings| {
        s.database_url = Some(secrecy::SecretString::from(url.clone()));
        s.bootstrap_token = Some(secrecy::SecretString::from(secret.clone()));
    };
    let a = crate::helpers::spawn_app_with(Db::Postgres, settings).await;
    let b = crate::helpers::spawn_app_with(Db::Postgres, settings).await;
    held_poll_ends_when_revoked(&b, &a).await;
}

/// A device holds a long-poll on `poller`; an admin revokes it on `revoker` (the same server,
/// or another replica): the held poll must end with 401 well before its 30 s wait.
async fn held_poll_ends_when_revoked(poller: &TestApp, revoker: &TestApp) {
    let d = revoker.enroll(json!({"site": "a"})).await;
    let res = poller.poll(&d, None, 0).await;
    assert_eq!(res.status(), 200);
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let started = std::time::Instant::now();
    let poll = {
        let client = poller.client.clone();
        let url = poller.url("/api/v1/agent/desired-state?wait=30");
        let cred = d.credential.clone();
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(cred)
                .header("if-none-match", etag)
                .timeout(std::time::Duration::from_secs(10))
                .send()
                .await
        })
    };
    // The one sleep: long enough for the poll to be held on the server before the revocation
    // (were it not, it would be refused on arrival and the test would still pass).
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let res = revoker
        .client
        .post(revoker.url(&format!("/api/v1/devices/{}/revoke", d.id)))
        .bearer_auth(&revoker.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = poll
        .await
        .unwrap()
        .expect("the held poll answered before the 10 s client timeout");
    assert_error(res, 401, "unauthorized").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

both_backends!(
    device_reporting_an_impossible_health_window_is_refused,
    device_reporting_an_impossible_health_window_is_refused_on
);
async fn device_reporting_an_impossible_health_window_is_refused_on(db: Db) {
    let app = spawn_app(db).await;
    let d = app.enroll(json!({"site": "a"})).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let report = |model: Value| {
        json!({
            "report_seq": 1,
            "created_at": now,
            "applied_sequence": 1,
            "slots": [],
            "health": {"start": now - 60, "end": now, "models": [model]},
        })
    };
    let healthy = json!({"model": "fraud", "version": "1.0.0", "inference_count": 100,
                         "error_count": 1, "latency_ms": {"p50": 0.4, "p95": 0.9, "p99": 1.5}});
    let with = |field: &str, value: Value| {
        let mut m = healthy.clone();
        m[field] = value;
        m
    };
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
    let impossible = [
        with("error_count", json!(101)),
        with("escalations", json!(101)),
        // 60 s cannot hold 10^12 inferences (the bound is 10^6 per second plus 10^6).
        with("inference_count", json!(1_000_000_000_000u64)),
        with("inference_count", json!(u64::MAX)),
        with("latency_ms", json!({"p50": 0.4, "p95": 0.9, "p99": -1.0})),
        with(
            "shadow",
            json!({"version": "1.1.0", "compared": 10, "agreed": 11, "errors": 0}),
        ),
    ];
    for model in impossible {
        assert_error(send(report(model.clone())).await, 422, "invalid_report").await;
    }
    let mut hot = report(healthy.clone());
    hot["health"]["cpu_percent"] = json!(1e300);
    assert_error(send(hot).await, 422, "invalid_report").await;
    let mut backwards = report(healthy.clone());
    backwards["health"]["start"] = json!(now + 10);
    assert_error(send(backwards).await, 422, "invalid_report").await;

    // Nothing of the refused reports was kept: the same sequence number is still free.
    let res = send(report(healthy)).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["accepted"], true);
    let dev = app.get_json(&format!("/api/v1/devices/{}", d.id)).await;
    assert_eq!(dev["health"]["models"][0]["inference_count"], 100);
}

both_backends!(
    device_cannot_download_an_artifact_only_another_device_is_given,
    device_cannot_download_an_artifact_only_another_device_is_given_on
);
async fn device_cannot_download_an_artifact_only_another_device_is_given_on(db: Db) {
    use crate::registry::{sample_model, sha256_hex};
    let app = spawn_app(db).await;
    app.with_fraud_versions().await;
    assert_eq!(app.deploy("fraud", "1.0.0", "site=a").await.status(), 201);
    assert_eq!(app.deploy("fraud", "1.1.0", "site=b").await.status(), 201);
    let a = app.enroll(json!({"site": "a"})).await;
    let own = sha256_hex(&sample_model("fraud-1.0.0.onnx"));
    let others = sha256_hex(&sample_model("fraud-1.1.0.onnx"));
    let get = |hex: String, credential: String| {
        let c = app.client.clone();
        let url = app.url(&format!("/api/v1/artifacts/sha256/{hex}"));
        async move { c.get(url).bearer_auth(credential).send().await.unwrap() }
    };

    let res = get(own.clone(), a.credential.clone()).await;
    assert_eq!(res.status(), 200);
    let cache = res.headers()["cache-control"].to_str().unwrap().to_owned();
    assert!(cache.starts_with("private"), "{cache}");
    assert!(!cache.contains("public"), "{cache}");

    // Another device's artifact answers exactly like one that does not exist.
    let missing = get("0".repeat(64), a.credential.clone()).await;
    let missing_code = assert_error(missing, 404, "not_found").await;
    let refused = get(others.clone(), a.credential.clone()).await;
    let refused_code = assert_error(refused, 404, "not_found").await;
    assert_eq!(
        refused_code.replace(&others, "X"),
        missing_code.replace(&"0".repeat(64), "X")
    );
    let head = app
        .client
        .head(app.url(&format!("/api/v1/artifacts/sha256/{others}")))
        .bearer_auth(&a.credential)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);

    // Operators keep access to every artifact.
    let res = get(others, app.admin_token.clone()).await;
    assert_eq!(res.status(), 200);
}

impl TestApp {
    async fn enrollment_token_info(&self, name: &str) -> Value {
        self.get_json("/api/v1/enrollment-tokens").await["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()
            .clone()
    }
}

both_backends!(
    a_device_cannot_enroll_with_labels_its_token_does_not_allow,
    a_device_cannot_enroll_with_labels_its_token_does_not_allow_on
);
/// Labels choose what a device runs and which rollout cohort it is in. A device asking for a
/// key its token neither sets nor allows (here `tier=canary`, to steer itself into a canary
/// cohort) is refused whole: nothing enrolled, the token not used.
async fn a_device_cannot_enroll_with_labels_its_token_does_not_allow_on(db: Db) {
    let app = spawn_app(db).await;
    let token = app
        .enrollment_token(json!({
            "name": "plant-7", "labels": {"site": "plant-7"},
            "allowed_device_labels": ["class"], "max_uses": 1,
        }))
        .await;
    assert_eq!(
        app.enrollment_token_info("plant-7").await["allowed_device_labels"],
        json!(["class"])
    );
    let msg = assert_error(
        app.try_enroll(&token, json!({"class": "gateway", "tier": "canary"}))
            .await,
        400,
        "label_not_allowed",
    )
    .await;
    assert!(msg.contains("`tier`"), "the refusal names the key: {msg}");
    let devices = app.get_json("/api/v1/devices").await;
    assert_eq!(devices["devices"], json!([]), "nothing was enrolled");
    assert_eq!(
        app.enrollment_token_info("plant-7").await["uses"],
        0,
        "a refused enrollment does not use the token"
    );

    // The token's labels override what the device asks; allowed keys are kept.
    let res = app
        .try_enroll(&token, json!({"site": "plant-9", "class": "gateway"}))
        .await;
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.unwrap()["device_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dev = app.get_json(&format!("/api/v1/devices/{id}")).await;
    assert_eq!(
        dev["labels"],
        json!({"site": "plant-7", "class": "gateway"})
    );
    assert_eq!(app.enrollment_token_info("plant-7").await["uses"], 1);

    // A token that allows nothing: the device may ask only what the token sets.
    let strict = app
        .enrollment_token(json!({"name": "strict", "labels": {"site": "plant-7"}}))
        .await;
    assert_error(
        app.try_enroll(&strict, json!({"class": "gateway"})).await,
        400,
        "label_not_allowed",
    )
    .await;
    assert_eq!(
        app.try_enroll(&strict, json!({"site": "elsewhere"}))
            .await
            .status(),
        201
    );

    // Allowed keys must be label keys.
    let res = app
        .client
        .post(app.url("/api/v1/enrollment-tokens"))
        .bearer_auth(&app.admin_token)
        .json(&json!({"name": "bad", "allowed_device_labels": ["a=b"]}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "invalid_argument").await;
}

/// With an approval token the device waits as `pending` with the labels it was granted (its
/// allowed requests and the token's), which the approver sees in the device list; the audit
/// entry of the enrollment records what it asked for beside what it got.
#[tokio::test]
async fn a_pending_device_shows_the_approver_the_labels_it_asked_for() {
    let app = spawn_app(Db::Sqlite).await;
    let token = app
        .enrollment_token(json!({
            "name": "careful", "labels": {"site": "plant-7"},
            "allowed_device_labels": ["class"], "require_approval": true,
        }))
        .await;
    let res = app
        .try_enroll(&token, json!({"class": "gateway", "site": "plant-9"}))
        .await;
    assert_eq!(res.status(), 201);
    let pending = app.get_json("/api/v1/devices?status=pending").await;
    assert_eq!(
        pending["devices"][0]["labels"],
        json!({"class": "gateway", "site": "plant-7"})
    );
    let entry = app
        .audit_entries(20)
        .await
        .into_iter()
        .find(|e| e["path"] == "/api/v1/enroll")
        .expect("the enrollment is audited");
    let text = entry.to_string();
    assert!(text.contains("requested_labels"), "{text}");
    assert!(text.contains("plant-9"), "{text}");
}

impl TestApp {
    /// `POST /api/v1/agent/credential` with `credential`.
    async fn rotate_with(&self, credential: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/agent/credential"))
            .bearer_auth(credential)
            .send()
            .await
            .unwrap()
    }

    async fn new_credential(&self, credential: &str) -> String {
        let res = self.rotate_with(credential).await;
        assert_eq!(res.status(), 200);
        let v: Value = res.json().await.unwrap();
        let c = v["credential"].as_str().unwrap().to_owned();
        assert!(c.starts_with("fld_"), "{c}");
        c
    }
}

fn as_device(d: &crate::fleet::Device, credential: &str) -> crate::fleet::Device {
    crate::fleet::Device {
        id: d.id.clone(),
        credential: credential.to_owned(),
        server_key: d.server_key.clone(),
    }
}

both_backends!(
    a_rotated_credential_replaces_the_old_one_only_once_it_is_used,
    a_rotated_credential_replaces_the_old_one_only_once_it_is_used_on
);
/// A device whose answer is lost must not be locked out, and once it uses its new credential
/// the old one (perhaps copied off the device) must stop working.
async fn a_rotated_credential_replaces_the_old_one_only_once_it_is_used_on(db: Db) {
    let app = spawn_app(db).await;
    let old = app.enroll(json!({})).await;
    let lost = app.new_credential(&old.credential).await;
    assert_eq!(
        app.poll(&old, None, 0).await.status(),
        200,
        "the old credential works until the new one is used"
    );
    // The answer was lost: the device asks again with the credential it still has. The one
    // it never received is replaced.
    let new = app.new_credential(&old.credential).await;
    assert_ne!(new, lost);
    assert_error(
        app.poll(&as_device(&old, &lost), None, 0).await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(app.poll(&old, None, 0).await.status(), 200);

    // The first use of the new credential retires the old one.
    assert_eq!(
        app.poll(&as_device(&old, &new), None, 0).await.status(),
        200
    );
    assert_error(app.poll(&old, None, 0).await, 401, "unauthorized").await;
    assert_error(app.rotate_with(&old.credential).await, 401, "unauthorized").await;
    assert_eq!(
        app.poll(&as_device(&old, &new), None, 0).await.status(),
        200
    );

    let entries = app.audit_entries(20).await;
    assert!(
        entries
            .iter()
            .any(|e| e["path"] == "/api/v1/agent/credential" && e["outcome"] == "success"),
        "issuing is audited: {entries:?}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["detail"].to_string().contains("old one no longer works")),
        "the switch is audited: {entries:?}"
    );
}

both_backends!(
    a_revoked_device_cannot_rotate_its_credential,
    a_revoked_device_cannot_rotate_its_credential_on
);
/// Revocation must not be undone by a credential issued just before it, nor by asking again.
async fn a_revoked_device_cannot_rotate_its_credential_on(db: Db) {
    let app = spawn_app(db).await;
    let d = app.enroll(json!({})).await;
    let issued = app.new_credential(&d.credential).await;
    let res = app
        .client
        .post(app.url(&format!("/api/v1/devices/{}/revoke", d.id)))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_error(app.rotate_with(&d.credential).await, 401, "unauthorized").await;
    assert_error(app.rotate_with(&issued).await, 401, "unauthorized").await;
    assert_error(
        app.poll(&as_device(&d, &issued), None, 0).await,
        401,
        "unauthorized",
    )
    .await;
    // An operator cannot ask a revoked device to rotate either.
    let res = app
        .client
        .post(app.url(&format!("/api/v1/devices/{}/rotate-credential", d.id)))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_error(res, 409, "conflict").await;
}

/// An operator's request reaches the device as a header on its poll, until it rotates.
#[tokio::test]
async fn an_operator_asks_a_device_to_rotate_through_its_poll() {
    let app = spawn_app(Db::Sqlite).await;
    let d = app.enroll(json!({})).await;
    let res = app.poll(&d, None, 0).await;
    assert!(res.headers().get("flotilla-rotate-credential").is_none());
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    let ask = |token: String| {
        let req = app
            .client
            .post(app.url(&format!("/api/v1/devices/{}/rotate-credential", d.id)))
            .bearer_auth(token);
        async move { req.send().await.unwrap() }
    };
    let viewer = app.token_with_role("v", "viewer").await;
    assert_error(ask(viewer).await, 403, "forbidden").await;
    let operator = app.token_with_role("ops", "operator").await;
    let res = ask(operator).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.json::<Value>().await.unwrap()["credential_rotation_requested"],
        true
    );
    // Even a held poll answers at once (304: the state did not change) with the header.
    let res = app.poll(&d, Some(&etag), 30).await;
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()["flotilla-rotate-credential"], "1");

    let new = app.new_credential(&d.credential).await;
    let res = app.poll(&as_device(&d, &new), Some(&etag), 0).await;
    assert_eq!(res.status(), 304);
    assert!(
        res.headers().get("flotilla-rotate-credential").is_none(),
        "done once the new credential is used"
    );
    let info = app.get_json(&format!("/api/v1/devices/{}", d.id)).await;
    assert_eq!(info["credential_rotation_requested"], false);
}

/// A trust root over `keys` (threshold 1) at `serial`.
fn root_over(serial: u64, keys: &[&Publisher]) -> flotilla_protocol::registry::TrustRoot {
    flotilla_protocol::registry::TrustRoot {
        version: 1,
        serial,
        server_key_pem: None,
        keys: keys
            .iter()
            .enumerate()
            .map(|(i, p)| flotilla_protocol::registry::TrustRootKey {
                key_id: p.key_id(),
                name: format!("k{i}"),
                public_key_pem: p.pem(),
            })
            .collect(),
        threshold: 1,
        model_thresholds: Default::default(),
        digest_only_models: Default::default(),
    }
}

fn signed(
    root: &flotilla_protocol::registry::TrustRoot,
    by: &[&Publisher],
) -> flotilla_protocol::signing::SignedTrustRoot {
    let keys: Vec<_> = by.iter().map(|p| &p.key).collect();
    flotilla_protocol::signing::sign_trust_root(root, &keys).unwrap()
}

async fn publish_root(
    app: &TestApp,
    token: &str,
    root: &flotilla_protocol::signing::SignedTrustRoot,
) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/trust/roots"))
        .bearer_auth(token)
        .json(root)
        .send()
        .await
        .unwrap()
}

both_backends!(
    rotated_trust_roots_must_chain_and_reach_devices,
    rotated_trust_roots_must_chain_and_reach_devices_on
);
async fn rotated_trust_roots_must_chain_and_reach_devices_on(db: Db) {
    let app = spawn_app(db).await;
    let (a, b, c) = (Publisher::new(), Publisher::new(), Publisher::new());
    assert_eq!(app.register_key("a", &a.pem()).await.status(), 201);
    let device = app.enroll(json!({"site": "x"})).await;
    let res = app.poll(&device, None, 0).await;
    assert_eq!(res.headers()["flotilla-trust-root"], "1");

    // The draft names the next serial and the server's key.
    let draft: Value = app
        .client
        .get(app.url("/api/v1/trust/root-draft"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(draft["serial"], 2);
    assert!(draft["server_key_pem"]
        .as_str()
        .unwrap()
        .contains("PUBLIC KEY"));

    // Only an admin publishes; a root must be the next serial and signed by its own keys.
    let viewer = app.token_with_role("v", "viewer").await;
    let two = root_over(2, &[&b]);
    assert_error(
        publish_root(&app, &viewer, &signed(&two, &[&a, &b])).await,
        403,
        "forbidden",
    )
    .await;
    assert_error(
        publish_root(
            &app,
            &app.admin_token,
            &signed(&root_over(3, &[&b]), &[&a, &b]),
        )
        .await,
        409,
        "trust_root_not_next",
    )
    .await;
    assert_error(
        publish_root(&app, &app.admin_token, &signed(&two, &[&a])).await,
        400,
        "trust_root_not_signed_by_itself",
    )
    .await;
    let res = publish_root(&app, &app.admin_token, &signed(&two, &[&a, &b])).await;
    assert_eq!(res.status(), 201);
    // The same serial twice: a conflict, the first one kept.
    assert_error(
        publish_root(
            &app,
            &app.admin_token,
            &signed(&root_over(2, &[&c]), &[&a, &c]),
        )
        .await,
        409,
        "trust_root_not_next",
    )
    .await;

    // From the second rotation on, the server checks the chain as agents do: root 3 needs
    // root 2's key (b), not the original one (a).
    let three = root_over(3, &[&c]);
    assert_error(
        publish_root(&app, &app.admin_token, &signed(&three, &[&a, &c])).await,
        400,
        "trust_root_not_signed_by_current",
    )
    .await;
    assert_eq!(
        publish_root(&app, &app.admin_token, &signed(&three, &[&b, &c]))
            .await
            .status(),
        201
    );

    // The export for new agents is the newest root; devices are told of it and can fetch the
    // chain with their credential.
    let exported: Value = app
        .client
        .get(app.url("/api/v1/trust-root"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(exported["serial"], 3);
    assert_eq!(exported["keys"][0]["key_id"], c.key_id());
    let res = app.poll(&device, None, 0).await;
    assert_eq!(res.headers()["flotilla-trust-root"], "3");
    let chain: Value = app
        .client
        .get(app.url("/api/v1/agent/trust-roots?after=1"))
        .bearer_auth(&device.credential)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let roots = chain["roots"].as_array().unwrap();
    assert_eq!(roots.len(), 2);
    // Byte for byte what the publishers signed: it verifies along the chain.
    let mut current = root_over(1, &[&a]);
    for env in roots {
        let bytes = serde_json::to_vec(env).unwrap();
        current = flotilla_protocol::signing::verify_root_update(&current, &bytes).unwrap();
    }
    assert_eq!(current.serial, 3);
    let res = app
        .client
        .get(app.url("/api/v1/agent/trust-roots"))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "unauthorized").await;
}
