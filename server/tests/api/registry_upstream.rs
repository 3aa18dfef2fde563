//! Bundles made by the real upstream `model_signing` tool (PyPI `model-signing`, ECDSA P-256)
//! are accepted as they are, and refused for the same reasons as ours.

use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::json;
use std::path::Path;
use std::process::Command;

use crate::helpers::{assert_error, spawn_app, Db};
use crate::registry::{sample_model, Publisher};

struct UpstreamKey {
    private_pem_path: std::path::PathBuf,
    public_pem: String,
}

fn p256_key(dir: &Path, name: &str) -> UpstreamKey {
    let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
    let private_pem_path = dir.join(format!("{name}.key"));
    std::fs::write(
        &private_pem_path,
        secret.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let public_pem = secret
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    UpstreamKey {
        private_pem_path,
        public_pem,
    }
}

/// Signs `model` with the real tool and returns the bundle text.
fn upstream_sign(model: &Path, key: &UpstreamKey) -> String {
    let tool =
        std::env::var("FLOTILLA_TEST_MODEL_SIGNING").unwrap_or_else(|_| "model_signing".into());
    let sig = model.with_extension("sig");
    let out = Command::new(&tool)
        .arg("sign")
        .arg("key")
        .arg(model)
        .arg("--private_key")
        .arg(&key.private_pem_path)
        .arg("--signature")
        .arg(&sig)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `{tool}` (pip install model-signing==1.1.1 pyopenssl): {e}")
        });
    assert!(
        out.status.success(),
        "model_signing failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(sig).unwrap()
}

#[tokio::test]
async fn the_real_model_signing_tool_is_accepted_and_checked() {
    let app = spawn_app(Db::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let key = p256_key(dir.path(), "ml-team");
    let model_path = dir.path().join("model.onnx");
    let v1 = sample_model("fraud-1.0.0.onnx");
    std::fs::write(&model_path, &v1).unwrap();
    let bundle = upstream_sign(&model_path, &key);

    assert_eq!(
        app.register_key("ml-team-p256", &key.public_pem)
            .await
            .status(),
        201
    );
    assert_eq!(app.create_model("fraud").await.status(), 201);
    app.upload(&v1).await;
    let res = app
        .publish("fraud", "1.0.0", &v1, std::slice::from_ref(&bundle))
        .await;
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let v = app.get_json("/api/v1/models/fraud/versions/1.0.0").await;
    assert_eq!(v["signers"][0]["name"], "ml-team-p256");
    assert!(
        v["signed_facts"].is_null(),
        "the upstream tool signs no Flotilla facts"
    );
    assert_eq!(v["inputs"][0]["name"], "features");

    // One byte of the model changed.
    let mut tampered = sample_model("fraud-1.1.0.onnx");
    std::fs::write(&model_path, &tampered).unwrap();
    let bundle_11 = upstream_sign(&model_path, &key);
    tampered[10] ^= 0x40;
    app.upload(&tampered).await;
    let res = app.publish("fraud", "1.1.0", &tampered, &[bundle_11]).await;
    assert_error(res, 400, "artifact_mismatch").await;

    // A key that is not registered.
    let v11 = sample_model("fraud-1.1.0.onnx");
    std::fs::write(&model_path, &v11).unwrap();
    app.upload(&v11).await;
    let stranger = p256_key(dir.path(), "stranger");
    let res = app
        .publish(
            "fraud",
            "1.1.0",
            &v11,
            &[upstream_sign(&model_path, &stranger)],
        )
        .await;
    assert_error(res, 400, "untrusted_signer").await;

    // Below the threshold: two keys required, one signed.
    let second = Publisher::new();
    assert_eq!(
        app.register_key("second", &second.pem()).await.status(),
        201
    );
    let res = app
        .client
        .put(app.url("/api/v1/trust/threshold"))
        .bearer_auth(&app.admin_token)
        .json(&json!({"threshold": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let signed_11 = upstream_sign(&model_path, &key);
    let res = app
        .publish("fraud", "1.1.0", &v11, std::slice::from_ref(&signed_11))
        .await;
    assert_error(res, 400, "signature_threshold_not_met").await;
    // With both (upstream P-256 + our ed25519 over the same bytes) it passes the threshold.
    let ours = second.sign(&v11, "fraud", "1.1.0");
    let res = app
        .publish("fraud", "1.1.0", &v11, &[signed_11.clone(), ours])
        .await;
    // The two bundles sign different statements (ours carries facts), which is refused.
    assert_error(res, 400, "signature_invalid").await;

    // A revoked key no longer counts.
    let keys = app.get_json("/api/v1/publisher-keys").await;
    let id = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "ml-team-p256")
        .unwrap()["key_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .client
        .put(app.url("/api/v1/trust/threshold"))
        .bearer_auth(&app.admin_token)
        .json(&json!({"threshold": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .delete(app.url(&format!("/api/v1/publisher-keys/{id}")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = app.publish("fraud", "1.1.0", &v11, &[signed_11]).await;
    assert_error(res, 400, "untrusted_signer").await;
    assert_eq!(app.version_count("fraud").await, 1);
}
