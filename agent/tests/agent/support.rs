//! Starting the local API with the committed models, and reading `models/expected.json`.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use flotilla_agent::inference::{serve, LocalApi, LocalApiConfig};
use flotilla_runtime::{LoadOptions, Model};
use serde::Deserialize;
use serde_json::Value;

/// Largest difference allowed between the agent's outputs and onnxruntime's.
pub const TOLERANCE: f64 = 1e-5;

pub const FRAUD_1_0: &str = "fraud-1.0.0.onnx";
pub const FRAUD_1_1: &str = "fraud-1.1.0.onnx";
pub const SENSOR: &str = "sensor-anomaly-1.0.0.onnx";
pub const VISION: &str = "vision-cnn-1.0.0.onnx";

/// The models the tests serve by default: (name, version, file).
pub const SAMPLE_MODELS: [(&str, &str, &str); 3] = [
    ("fraud", "1.0.0", FRAUD_1_0),
    ("sensor-anomaly", "1.0.0", SENSOR),
    ("vision-cnn", "1.0.0", VISION),
];

#[derive(Debug, Deserialize)]
pub struct Expected {
    pub models: Vec<ExpectedModel>,
}

#[derive(Debug, Deserialize)]
pub struct ExpectedModel {
    pub file: String,
    pub inputs: Vec<ExpectedSpec>,
    pub outputs: Vec<ExpectedSpec>,
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
pub struct ExpectedSpec {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

#[derive(Debug, Deserialize)]
pub struct Case {
    pub inputs: Vec<ExpectedTensor>,
    pub outputs: Vec<ExpectedTensor>,
}

/// An FP32 tensor; `null` stands for NaN.
#[derive(Debug, Deserialize)]
pub struct ExpectedTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<usize>,
    pub data: Vec<Option<f64>>,
}

pub fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

pub fn expected() -> &'static Expected {
    static EXPECTED: OnceLock<Expected> = OnceLock::new();
    EXPECTED.get_or_init(|| {
        let text = std::fs::read_to_string(models_dir().join("expected.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    })
}

pub fn expected_model(file: &str) -> &'static ExpectedModel {
    expected()
        .models
        .iter()
        .find(|m| m.file == file)
        .unwrap_or_else(|| panic!("{file} is not in expected.json"))
}

/// The model in `file`, loaded once per test binary.
pub fn model(file: &str) -> Arc<Model> {
    static MODELS: OnceLock<Mutex<HashMap<String, Arc<Model>>>> = OnceLock::new();
    let cache = MODELS.get_or_init(Default::default);
    if let Some(model) = cache.lock().unwrap().get(file) {
        return Arc::clone(model);
    }
    let bytes = std::fs::read(models_dir().join(file)).unwrap();
    let model = Arc::new(Model::load(&bytes, &LoadOptions::default()).unwrap());
    cache
        .lock()
        .unwrap()
        .entry(file.to_owned())
        .or_insert(model)
        .clone()
}

/// The local API running on a loopback port.
pub struct TestApi {
    pub base: String,
    pub api: LocalApi,
    pub client: reqwest::Client,
}

impl TestApi {
    /// Starts the API with `config` and `models` (name, version, file) installed.
    pub async fn start(config: LocalApiConfig, models: &[(&str, &str, &str)]) -> TestApi {
        let api = LocalApi::new(&config);
        for (name, version, file) in models {
            api.registry().install(*name, *version, model(file));
        }
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = serve(listener, api.clone()).unwrap();
        tokio::spawn(server);
        TestApi {
            base: format!("http://127.0.0.1:{port}"),
            api,
            client: reqwest::Client::new(),
        }
    }

    /// The API with the three sample models and default settings.
    pub async fn with_samples() -> TestApi {
        TestApi::start(LocalApiConfig::default(), &SAMPLE_MODELS).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        read(response).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap();
        read(response).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        read(response).await
    }
}

/// A body in the binary tensor data extension's form: the JSON `header`, then `binary`.
pub fn binary_body(header: &Value, binary: &[u8]) -> (usize, Vec<u8>) {
    let mut body = serde_json::to_vec(header).unwrap();
    let length = body.len();
    body.extend_from_slice(binary);
    (length, body)
}

impl TestApi {
    /// Posts `body` with `Inference-Header-Content-Length: header_length` and
    /// `Content-Type: application/octet-stream`, as tritonclient's binary requests go.
    pub async fn post_binary(
        &self,
        path: &str,
        header_length: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/octet-stream")
            .header("inference-header-content-length", header_length)
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

/// A response with binary outputs: its JSON part and the bytes after it, checking the
/// extension's headers.
pub async fn read_binary(response: reqwest::Response) -> (Value, Vec<u8>) {
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "application/octet-stream");
    let length: usize = headers["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = response.bytes().await.unwrap();
    let header = serde_json::from_slice(&body[..length]).unwrap();
    (header, body[length..].to_vec())
}

/// Little-endian FP32 bytes.
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// FP32 values from little-endian bytes.
pub fn f32_values(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Status and JSON body (`Value::Null` for an empty body).
pub async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    (status, body)
}

/// Asserts `body` is the Open Inference Protocol's error body, `{"error": "<message>"}`, and
/// returns the message.
pub fn error_message(body: &Value) -> &str {
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("error body is not an object: {body}"));
    assert_eq!(object.len(), 1, "error body has other keys: {body}");
    object["error"]
        .as_str()
        .unwrap_or_else(|| panic!("`error` is not a string: {body}"))
}

/// A tensor's data as nested arrays following its shape.
pub fn nest(data: &[Value], shape: &[usize]) -> Value {
    match shape {
        [] | [_] => Value::Array(data.to_vec()),
        [_, rest @ ..] => {
            let stride: usize = rest.iter().product();
            Value::Array(data.chunks(stride).map(|chunk| nest(chunk, rest)).collect())
        }
    }
}

/// The inference request body for a case of expected.json.
pub fn infer_body(case: &Case, nested: bool) -> Value {
    let inputs: Vec<Value> = case
        .inputs
        .iter()
        .map(|input| {
            let flat: Vec<Value> = input.data.iter().map(|v| serde_json::json!(v)).collect();
            let data = if nested {
                nest(&flat, &input.shape)
            } else {
                Value::Array(flat)
            };
            serde_json::json!({
                "name": input.name,
                "shape": input.shape,
                "datatype": input.datatype,
                "data": data,
            })
        })
        .collect();
    serde_json::json!({ "inputs": inputs })
}

/// Asserts the response's outputs are the case's outputs within [`TOLERANCE`].
pub fn assert_outputs(response: &Value, case: &Case) {
    let outputs = response["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), case.outputs.len(), "{response}");
    for (output, expected) in outputs.iter().zip(&case.outputs) {
        assert_eq!(output["name"], expected.name.as_str());
        assert_eq!(output["datatype"], expected.datatype.as_str());
        assert_eq!(output["shape"], serde_json::json!(expected.shape));
        assert!(
            outputs_match(output, expected),
            "output {} differs: got {}, expected {:?}",
            expected.name,
            output["data"],
            expected.data
        );
    }
}

/// Whether a response output's data equals `expected`'s within [`TOLERANCE`] (NaN = `null`).
pub fn outputs_match(output: &Value, expected: &ExpectedTensor) -> bool {
    let Some(data) = output["data"].as_array() else {
        return false;
    };
    data.len() == expected.data.len()
        && data
            .iter()
            .zip(&expected.data)
            .all(|(got, want)| match want {
                None => got.is_null(),
                Some(want) => got
                    .as_f64()
                    .is_some_and(|got| (got - want).abs() <= TOLERANCE),
            })
}
