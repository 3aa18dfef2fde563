//! The signed model registry: keys, models, versions, artifacts.

use flotilla_protocol::signing::{sign_model, ModelFacts, Resource, SigningKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::helpers::{assert_error, both_backends, spawn_app, Db, TestApp};

pub fn sample_model(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// An ed25519 publisher key, generated fresh for the test.
pub struct Publisher {
    pub key: SigningKey,
}

impl Publisher {
    pub fn new() -> Self {
        Self {
            key: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    pub fn pem(&self) -> String {
        self.key.public_key().to_pem()
    }

    pub fn key_id(&self) -> String {
        self.key.public_key().key_id()
    }

    /// A bundle over `bytes`, claiming `model@version`.
    pub fn sign(&self, bytes: &[u8], model: &str, version: &str) -> String {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let facts = ModelFacts {
            model: model.into(),
            version: version.into(),
            release: None,
            size: Some(bytes.len() as u64),
            compatibility: None,
            inputs: None,
            outputs: None,
            sample_input: None,
            rollback_allowed_below: None,
        };
        let bundle = sign_model(
            &self.key,
            &[Resource::single_file(digest)],
            "model.onnx",
            Some(&facts),
        )
        .unwrap();
        String::from_utf8(bundle.to_json()).unwrap()
    }
}

impl TestApp {
    pub async fn register_key(&self, name: &str, pem: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/publisher-keys"))
            .bearer_auth(&self.admin_token)
            .json(&json!({"name": name, "public_key_pem": pem}))
            .send()
            .await
            .unwrap()
    }

    pub async fn create_model(&self, name: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/models"))
            .bearer_auth(&self.admin_token)
            .json(&json!({"name": name, "description": "test model", "labels": {"team": "risk"}}))
            .send()
            .await
            .unwrap()
    }

    pub async fn upload(&self, bytes: &[u8]) -> reqwest::Response {
        self.upload_as(&sha256_hex(bytes), bytes.to_vec()).await
    }

    pub async fn upload_as(&self, hex: &str, bytes: Vec<u8>) -> reqwest::Response {
        self.client
            .put(self.url(&format!("/api/v1/artifacts/sha256/{hex}")))
            .bearer_auth(&self.admin_token)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .unwrap()
    }

    pub async fn publish(
        &self,
        model: &str,
        version: &str,
        bytes: &[u8],
        bundles: &[String],
    ) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/api/v1/models/{model}/versions")))
            .bearer_auth(&self.admin_token)
            .json(&json!({
                "version": version,
                "artifact": {"sha256": sha256_hex(bytes), "size": bytes.len()},
                "bundles": bundles,
            }))
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let res = self
            .client
            .get(self.url(path))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "GET {path}");
        res.json().await.unwrap()
    }

    /// A server with one registered publisher and the model `fraud`.
    pub async fn with_publisher(&self) -> Publisher {
        let p = Publisher::new();
        assert_eq!(self.register_key("ml-team", &p.pem()).await.status(), 201);
        assert_eq!(self.create_model("fraud").await.status(), 201);
        p
    }

    pub async fn version_count(&self, model: &str) -> usize {
        self.get_json(&format!("/api/v1/models/{model}/versions"))
            .await["versions"]
            .as_array()
            .unwrap()
            .len()
    }
}

both_backends!(publish_flow, publish_flow_on);
async fn publish_flow_on(db: Db) {
    let app = spawn_app(db).await;
    let p = app.with_publisher().await;
    let model = sample_model("fraud-1.0.0.onnx");
    let res = app.upload(&model).await;
    assert_eq!(res.status(), 201);
    let stored: Value = res.json().await.unwrap();
    assert_eq!(stored["created"], true);
    assert_eq!(stored["size"], model.len());
    // A second upload of the same bytes is a no-op.
    let res = app.upload(&model).await;
    assert_eq!(res.status(), 200);

    let bundle = p.sign(&model, "fraud", "1.0.0");
    let res = app
        .publish("fraud", "1.0.0", &model, std::slice::from_ref(&bundle))
        .await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let v: Value = app.get_json("/api/v1/models/fraud/versions/1.0.0").await;
    assert_eq!(v["artifact"]["sha256"], sha256_hex(&model));
    assert_eq!(v["artifact"]["size"], model.len());
    assert_eq!(v["signers"][0]["key_id"], p.key_id());
    assert_eq!(v["signers"][0]["name"], "ml-team");
    assert_eq!(
        v["inputs"],
        json!([{"name": "features", "datatype": "FP32", "shape": [-1, 8]}])
    );
    assert_eq!(
        v["outputs"],
        json!([{"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}])
    );
    assert_eq!(v["signed_facts"]["model"], "fraud");
    assert_eq!(v["published_by"], "bootstrap-admin");

    // Same version, same bytes: idempotent.
    let res = app
        .publish("fraud", "1.0.0", &model, std::slice::from_ref(&bundle))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.version_count("fraud").await, 1);

    let next = sample_model("fraud-1.1.0.onnx");
    app.upload(&next).await;
    let res = app
        .publish("fraud", "1.1.0", &next, &[p.sign(&next, "fraud", "1.1.0")])
        .await;
    assert_eq!(res.status(), 201);
    let m = app.get_json("/api/v1/models/fraud").await;
    assert_eq!(m["latest_version"], "1.1.0");
    assert_eq!(m["version_count"], 2);
    assert_eq!(m["labels"]["team"], "risk");
    let list = app.get_json("/api/v1/models/fraud/versions").await;
    let order: Vec<_> = list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].clone())
        .collect();
    assert_eq!(order, [json!("1.1.0"), json!("1.0.0")], "highest first");
    let models = app.get_json("/api/v1/models").await;
    assert_eq!(models["models"][0]["name"], "fraud");
}

#[tokio::test]
async fn artifacts_download_with_range_etag_and_caching() {
    let app = spawn_app(Db::Sqlite).await;
    let model = sample_model("vision-cnn-1.0.0.onnx");
    app.upload(&model).await;
    let url = app.url(&format!("/api/v1/artifacts/sha256/{}", sha256_hex(&model)));
    let res = app
        .client
        .get(&url)
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"sha256:{}\"", sha256_hex(&model)));
    assert!(res.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert_eq!(res.headers()["accept-ranges"], "bytes");
    assert_eq!(res.bytes().await.unwrap().as_ref(), &model[..]);

    let res = app
        .client
        .get(&url)
        .bearer_auth(&app.admin_token)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes 100-199/{}", model.len())
    );
    assert_eq!(res.bytes().await.unwrap().as_ref(), &model[100..200]);

    // Resuming from an offset to the end.
    let res = app
        .client
        .get(&url)
        .bearer_auth(&app.admin_token)
        .header("range", "bytes=40000-")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await.unwrap().as_ref(), &model[40000..]);

    let res = app
        .client
        .get(&url)
        .bearer_auth(&app.admin_token)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);

    let res = app
        .client
        .get(&url)
        .bearer_auth(&app.admin_token)
        .header("range", format!("bytes={}-", model.len() + 10))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes */{}", model.len())
    );
    assert_error(res, 416, "range_not_satisfiable").await;

    let res = app
        .client
        .head(&url)
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], model.len().to_string());
    let missing = app.url(&format!("/api/v1/artifacts/sha256/{}", "0".repeat(64)));
    let res = app
        .client
        .head(&missing)
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = app
        .client
        .get(&missing)
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_error(res, 404, "not_found").await;
    let res = app
        .client
        .get(app.url("/api/v1/artifacts/sha256/..%2F..%2Fetc%2Fpasswd"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "invalid_path").await;
    let res = app.client.get(&url).send().await.unwrap();
    assert_error(res, 401, "unauthorized").await;
}

#[tokio::test]
async fn uploads_that_do_not_match_their_digest_are_refused_and_leave_nothing() {
    let app = spawn_app(Db::Sqlite).await;
    let model = sample_model("fraud-1.0.0.onnx");
    let wrong = sha256_hex(b"other bytes");
    let res = app.upload_as(&wrong, model.clone()).await;
    assert_error(res, 400, "artifact_mismatch").await;
    let path = app.url(&format!("/api/v1/artifacts/sha256/{wrong}"));
    assert_eq!(
        app.client
            .head(&path)
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let path = app.url(&format!("/api/v1/artifacts/sha256/{}", sha256_hex(&model)));
    assert_eq!(
        app.client
            .head(&path)
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let viewer = app.token_with_role("v", "viewer").await;
    let res = app
        .client
        .put(app.url(&format!("/api/v1/artifacts/sha256/{}", sha256_hex(&model))))
        .bearer_auth(&viewer)
        .body(model.clone())
        .send()
        .await
        .unwrap();
    assert_error(res, 403, "forbidden").await;
}

#[tokio::test]
async fn oversized_uploads_are_413() {
    let app = crate::helpers::spawn_app_with(Db::Sqlite, |s| s.max_artifact_bytes = 1000).await;
    let model = sample_model("fraud-1.0.0.onnx");
    assert!(model.len() > 1000);
    let res = app.upload(&model).await;
    assert_error(res, 413, "payload_too_large").await;
}

both_backends!(bad_versions_are_refused_and_leave_no_trace, bad_versions_on);
async fn bad_versions_on(db: Db) {
    let app = spawn_app(db).await;
    let p = app.with_publisher().await;
    let v1 = sample_model("fraud-1.0.0.onnx");
    let v11 = sample_model("fraud-1.1.0.onnx");
    app.upload(&v1).await;
    app.upload(&v11).await;
    assert_eq!(
        app.publish("fraud", "1.0.0", &v1, &[p.sign(&v1, "fraud", "1.0.0")])
            .await
            .status(),
        201
    );

    // One byte of the model changed: the signature covers other bytes.
    let mut tampered = v1.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    app.upload(&tampered).await;
    let res = app
        .publish(
            "fraud",
            "1.0.1",
            &tampered,
            &[p.sign(&v1, "fraud", "1.0.1")],
        )
        .await;
    assert_error(res, 400, "artifact_mismatch").await;

    // Not signed by a registered key.
    let stranger = super::registry::Publisher::new();
    let res = app
        .publish(
            "fraud",
            "1.0.1",
            &v11,
            &[stranger.sign(&v11, "fraud", "1.0.1")],
        )
        .await;
    assert_error(res, 400, "untrusted_signer").await;

    // Same version, different bytes.
    let res = app
        .publish("fraud", "1.0.0", &v11, &[p.sign(&v11, "fraud", "1.0.0")])
        .await;
    assert_error(res, 409, "version_exists").await;

    // Downgrade.
    let res = app
        .publish("fraud", "0.9.0", &v11, &[p.sign(&v11, "fraud", "0.9.0")])
        .await;
    assert_error(res, 409, "version_not_increasing").await;

    // Signed as another version than the one published.
    let res = app
        .publish("fraud", "1.2.0", &v11, &[p.sign(&v11, "fraud", "1.1.0")])
        .await;
    assert_error(res, 400, "signed_facts_mismatch").await;

    // Not an ONNX file at all, and a truncated graph: properly signed, still refused.
    let junk = b"definitely not a model".repeat(20);
    app.upload(&junk).await;
    let res = app
        .publish("fraud", "1.3.0", &junk, &[p.sign(&junk, "fraud", "1.3.0")])
        .await;
    assert_error(res, 400, "invalid_model").await;
    let truncated = v11[..v11.len() / 2].to_vec();
    app.upload(&truncated).await;
    let res = app
        .publish(
            "fraud",
            "1.3.0",
            &truncated,
            &[p.sign(&truncated, "fraud", "1.3.0")],
        )
        .await;
    assert_error(res, 400, "invalid_model").await;

    // Not uploaded.
    let unseen = b"never uploaded".to_vec();
    let res = app
        .publish(
            "fraud",
            "1.3.0",
            &unseen,
            &[p.sign(&unseen, "fraud", "1.3.0")],
        )
        .await;
    assert_error(res, 400, "artifact_not_found").await;

    // Malformed bundles and no bundles.
    let res = app
        .publish(
            "fraud",
            "1.3.0",
            &v11,
            &["{\"not\": \"a bundle\"}".to_owned()],
        )
        .await;
    assert_error(res, 400, "signature_invalid").await;
    let res = app.publish("fraud", "1.3.0", &v11, &[]).await;
    assert_error(res, 400, "signature_invalid").await;
    let dup = p
        .sign(&v11, "fraud", "1.3.0")
        .replacen('{', "{\"mediaType\":\"x\",", 1);
    let res = app.publish("fraud", "1.3.0", &v11, &[dup]).await;
    assert_error(res, 400, "signature_invalid").await;

    // Bad version strings and model names.
    let res = app
        .publish("fraud", "1.3", &v11, &[p.sign(&v11, "fraud", "1.3")])
        .await;
    assert_error(res, 400, "invalid_argument").await;
    let res = app
        .publish("..%2Fx", "1.3.0", &v11, &[p.sign(&v11, "fraud", "1.3.0")])
        .await;
    assert_error(res, 400, "invalid_argument").await;
    let res = app
        .publish("nope", "1.3.0", &v11, &[p.sign(&v11, "nope", "1.3.0")])
        .await;
    assert_error(res, 404, "not_found").await;

    assert_eq!(
        app.version_count("fraud").await,
        1,
        "no refused publish left a trace"
    );
}

both_backends!(threshold_and_revocation, threshold_and_revocation_on);
async fn threshold_and_revocation_on(db: Db) {
    let app = spawn_app(db).await;
    let a = app.with_publisher().await;
    let b = super::registry::Publisher::new();
    assert_eq!(
        app.register_key("security-team", &b.pem()).await.status(),
        201
    );
    // The same key again, or the same name, is a conflict.
    assert_error(
        app.register_key("other-name", &b.pem()).await,
        409,
        "conflict",
    )
    .await;
    assert_error(
        app.register_key(
            "not a key",
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        )
        .await,
        400,
        "invalid_argument",
    )
    .await;

    let res = app
        .client
        .put(app.url("/api/v1/trust/threshold"))
        .bearer_auth(&app.admin_token)
        .json(&json!({"threshold": 3}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "invalid_argument").await;
    let res = app
        .client
        .put(app.url("/api/v1/trust/threshold"))
        .bearer_auth(&app.admin_token)
        .json(&json!({"threshold": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    let v1 = sample_model("fraud-1.0.0.onnx");
    app.upload(&v1).await;
    let res = app
        .publish("fraud", "1.0.0", &v1, &[a.sign(&v1, "fraud", "1.0.0")])
        .await;
    assert_error(res, 400, "signature_threshold_not_met").await;
    // The same key twice still counts once.
    let twice = [a.sign(&v1, "fraud", "1.0.0"), a.sign(&v1, "fraud", "1.0.0")];
    assert_error(
        app.publish("fraud", "1.0.0", &v1, &twice).await,
        400,
        "signature_threshold_not_met",
    )
    .await;
    let both = [a.sign(&v1, "fraud", "1.0.0"), b.sign(&v1, "fraud", "1.0.0")];
    let res = app.publish("fraud", "1.0.0", &v1, &both).await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let v = app.get_json("/api/v1/models/fraud/versions/1.0.0").await;
    assert_eq!(v["signers"].as_array().unwrap().len(), 2);

    // Revoke b: its signatures stop counting at once, and it leaves the trust root.
    let res = app
        .client
        .delete(app.url(&format!("/api/v1/publisher-keys/{}", b.key_id())))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let root = app.get_json("/api/v1/trust-root").await;
    assert_eq!(root["keys"].as_array().unwrap().len(), 1);
    assert_eq!(root["keys"][0]["key_id"], a.key_id());
    assert_eq!(root["threshold"], 2);
    let res = app
        .client
        .put(app.url("/api/v1/trust/threshold"))
        .bearer_auth(&app.admin_token)
        .json(&json!({"threshold": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v11 = sample_model("fraud-1.1.0.onnx");
    app.upload(&v11).await;
    let res = app
        .publish("fraud", "1.1.0", &v11, &[b.sign(&v11, "fraud", "1.1.0")])
        .await;
    assert_error(res, 400, "untrusted_signer").await;
    let keys = app.get_json("/api/v1/publisher-keys").await;
    let revoked: Vec<_> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["revoked_at"].is_string())
        .collect();
    assert_eq!(revoked.len(), 1);
}

#[tokio::test]
async fn roles_and_yank() {
    let app = spawn_app(Db::Sqlite).await;
    let p = app.with_publisher().await;
    let v1 = sample_model("fraud-1.0.0.onnx");
    let v11 = sample_model("fraud-1.1.0.onnx");
    for m in [&v1, &v11] {
        app.upload(m).await;
    }
    app.publish("fraud", "1.0.0", &v1, &[p.sign(&v1, "fraud", "1.0.0")])
        .await;
    app.publish("fraud", "1.1.0", &v11, &[p.sign(&v11, "fraud", "1.1.0")])
        .await;

    let operator = app.token_with_role("ops", "operator").await;
    let publisher = app.token_with_role("ci", "publisher").await;
    let res = app
        .client
        .post(app.url("/api/v1/models/fraud/versions/1.1.0/yank"))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_error(res, 403, "forbidden").await;
    let res = app
        .client
        .post(app.url("/api/v1/publisher-keys"))
        .bearer_auth(&publisher)
        .json(&json!({"name": "sneaky", "public_key_pem": super::registry::Publisher::new().pem()}))
        .send()
        .await
        .unwrap();
    assert_error(res, 403, "forbidden").await;
    let res = app
        .client
        .post(app.url("/api/v1/models/fraud/versions/1.1.0/yank"))
        .bearer_auth(&publisher)
        .json(&json!({"reason": "bad calibration"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    assert!(v["yanked_at"].is_string());
    assert_eq!(v["yank_reason"], "bad calibration");
    let m = app.get_json("/api/v1/models/fraud").await;
    assert_eq!(
        m["latest_version"], "1.0.0",
        "yanked versions are not the latest"
    );
    // A yanked version still counts for ordering: 1.1.0 cannot be reused.
    let res = app
        .publish("fraud", "1.0.5", &v11, &[p.sign(&v11, "fraud", "1.0.5")])
        .await;
    assert_error(res, 409, "version_not_increasing").await;
    let res = app
        .client
        .post(app.url("/api/v1/models/fraud/versions/1.1.0/yank"))
        .bearer_auth(&publisher)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "invalid_json").await;
    let viewer = app.token_with_role("v", "viewer").await;
    let res = app
        .client
        .get(app.url("/api/v1/models"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_error(app.create_model("fraud").await, 409, "conflict").await;
    let res = app
        .client
        .post(app.url("/api/v1/models"))
        .bearer_auth(&app.admin_token)
        .json(&json!({"name": "../etc"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "invalid_argument").await;
}

#[tokio::test]
async fn an_interrupted_upload_leaves_nothing_visible() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app(Db::Sqlite).await;
    let model = sample_model("vision-cnn-1.0.0.onnx");
    let hex = sha256_hex(&model);
    let addr = app.address.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "PUT /api/v1/artifacts/sha256/{hex} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        app.admin_token,
        model.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&model[..model.len() / 3]).await.unwrap();
    conn.flush().await.unwrap();
    drop(conn); // the client goes away a third of the way through

    // The server notices the disconnect asynchronously; wait (bounded) for the staging object to
    // be cleaned up, then check nothing became visible.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let blob_dir = app.data_dir.path().join("blobs");
    loop {
        // Files on disk, including the object store's own temporary part files.
        let files = files_under(&blob_dir);
        if files.is_empty() && app.blobs.staging_count().await.unwrap() == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "left behind: {files:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(app.blobs.list().await.unwrap().is_empty());
    let res = app
        .client
        .head(app.url(&format!("/api/v1/artifacts/sha256/{hex}")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // And the same upload, complete, succeeds afterwards.
    assert_eq!(app.upload(&model).await.status(), 201);
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}
