//! The publisher's side of the demo: a management-API client, and signing and publishing the
//! sample models that ship with the repository.

use anyhow::Context;
use flotilla_protocol::signing::{
    sign_model, ModelFacts, Resource, SampleTensor, SigningKey, TensorSpec,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A sample model compiled into the demo binary, with the reference outputs that
/// `models/generate.py` recorded from onnxruntime.
pub struct SampleModel {
    pub file: &'static str,
    pub version: &'static str,
    pub release: u64,
    pub bytes: &'static [u8],
}

/// The two fraud models the demo publishes: 1.0.0 is deployed, 1.1.0 is there to hot-swap to.
pub const FRAUD: [SampleModel; 2] = [
    SampleModel {
        file: "fraud-1.0.0.onnx",
        version: "1.0.0",
        release: 1,
        bytes: include_bytes!("../../models/fraud-1.0.0.onnx"),
    },
    SampleModel {
        file: "fraud-1.1.0.onnx",
        version: "1.1.0",
        release: 2,
        bytes: include_bytes!("../../models/fraud-1.1.0.onnx"),
    },
];

const EXPECTED: &str = include_str!("../../models/expected.json");

/// The recorded entry of one sample file: tensors and cases (inputs with their outputs).
pub fn expected(file: &str) -> anyhow::Result<Value> {
    let all: Value = serde_json::from_str(EXPECTED).context("models/expected.json")?;
    all["models"]
        .as_array()
        .and_then(|models| models.iter().find(|m| m["file"] == file))
        .cloned()
        .with_context(|| format!("models/expected.json has no entry for {file}"))
}

/// The management API, called with the admin token.
pub struct Api {
    pub base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: String, token: String) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Self { base, token, http })
    }

    /// Sends `body` (JSON) and returns the JSON answer; a refusal becomes an error naming the
    /// server's error code.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            anyhow::bail!("{method} {path}: {status}: {text}");
        }
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }

    /// Uploads an artifact by digest and returns its hex sha256.
    pub async fn upload(&self, bytes: &'static [u8]) -> anyhow::Result<String> {
        let hex = hex::encode(Sha256::digest(bytes));
        let response = self
            .http
            .put(format!("{}/api/v1/artifacts/sha256/{hex}", self.base))
            .bearer_auth(&self.token)
            .body(bytes)
            .send()
            .await?;
        if !response.status().is_success() {
            let status = response.status();
            anyhow::bail!("uploading {hex}: {status}: {}", response.text().await?);
        }
        Ok(hex)
    }
}

fn tensor_specs(v: &Value) -> anyhow::Result<Vec<TensorSpec>> {
    Ok(serde_json::from_value(v.clone())?)
}

/// Signs `model` as `name`@version with its tensors and a smoke-test sample (the first
/// recorded case) in the signed facts, uploads it and publishes the version.
pub async fn publish(
    api: &Api,
    key: &SigningKey,
    name: &str,
    model: &SampleModel,
) -> anyhow::Result<()> {
    let recorded = expected(model.file)?;
    let sample: Vec<SampleTensor> = serde_json::from_value(recorded["cases"][0]["inputs"].clone())
        .context("sample input of the first recorded case")?;
    let facts = ModelFacts {
        model: name.into(),
        version: model.version.into(),
        release: Some(model.release),
        size: Some(model.bytes.len() as u64),
        compatibility: None,
        inputs: Some(tensor_specs(&recorded["inputs"])?),
        outputs: Some(tensor_specs(&recorded["outputs"])?),
        sample_input: Some(sample),
        rollback_allowed_below: None,
    };
    let bundle = sign_model(
        key,
        &[Resource::single_file(Sha256::digest(model.bytes).into())],
        model.file,
        Some(&facts),
    )?;
    let hex = api.upload(model.bytes).await?;
    api.call(
        reqwest::Method::POST,
        &format!("/api/v1/models/{name}/versions"),
        Some(json!({
            "version": model.version,
            "artifact": {"sha256": hex, "size": model.bytes.len()},
            "bundles": [String::from_utf8_lossy(&bundle.to_json())],
        })),
    )
    .await?;
    Ok(())
}
