//! Server-side inference (`/v2`): who may infer, which version answers, the error contract, the
//! bounded model cache and its metrics, and answers equal to onnxruntime's.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

use crate::helpers::{assert_error, both_backends, spawn_app, spawn_app_with, Db, TestApp};
use crate::registry::{sample_model, sha256_hex, Publisher};

/// Largest difference allowed between the server's outputs and onnxruntime's.
const TOLERANCE: f64 = 1e-5;

/// (model name, version, file) of the committed sample models.
const SAMPLES: [(&str, &str, &str); 3] = [
    ("fraud", "1.0.0", "fraud-1.0.0.onnx"),
    ("sensor-anomaly", "1.0.0", "sensor-anomaly-1.0.0.onnx"),
    ("vision-cnn", "1.0.0", "vision-cnn-1.0.0.onnx"),
];

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// The entry of `models/expected.json` for `file`.
fn expected(file: &str) -> Value {
    let all: Value =
        serde_json::from_slice(&std::fs::read(models_dir().join("expected.json")).unwrap())
            .unwrap();
    all["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["file"] == file)
        .unwrap_or_else(|| panic!("{file} is not in expected.json"))
        .clone()
}

/// The request body of a recorded case.
fn case_body(file: &str, case: usize) -> Value {
    json!({ "inputs": expected(file)["cases"][case]["inputs"] })
}

/// Asserts `response`'s outputs are the recorded case's within [`TOLERANCE`] (`null` = NaN).
fn assert_answers(response: &Value, file: &str, case: usize) {
    let want = &expected(file)["cases"][case]["outputs"];
    let got = response["outputs"]
        .as_array()
        .unwrap_or_else(|| panic!("{response}"));
    assert_eq!(got.len(), want.as_array().unwrap().len(), "{response}");
    for (got, want) in got.iter().zip(want.as_array().unwrap()) {
        assert_eq!(got["name"], want["name"]);
        assert_eq!(got["datatype"], want["datatype"]);
        assert_eq!(got["shape"], want["shape"]);
        let (g, w) = (
            got["data"].as_array().unwrap(),
            want["data"].as_array().unwrap(),
        );
        assert_eq!(g.len(), w.len());
        for (g, w) in g.iter().zip(w) {
            match w.as_f64() {
                None => assert!(g.is_null(), "{file} case {case}: {g} where NaN is expected"),
                Some(w) => {
                    let g = g.as_f64().unwrap_or(f64::NAN);
                    assert!(
                        (g - w).abs() <= TOLERANCE,
                        "{file} case {case}: {g} where onnxruntime gives {w}"
                    );
                }
            }
        }
    }
}

/// Asserts an inference API error: `status`, and a body that is exactly
/// `{"error": "<message>", "code": code}`. Returns the message.
async fn assert_oip_error(res: reqwest::Response, status: u16, code: &str) -> String {
    assert_eq!(res.status().as_u16(), status, "status");
    let body: Value = res.json().await.expect("error body is JSON");
    let object = body.as_object().unwrap_or_else(|| panic!("{body}"));
    assert_eq!(object.len(), 2, "error body has other keys: {body}");
    assert_eq!(body["code"], code, "{body}");
    let message = body["error"].as_str().unwrap_or_else(|| panic!("{body}"));
    assert!(!message.is_empty());
    message.to_owned()
}

impl TestApp {
    /// Creates `model`, uploads `file` and publishes it as `version`, signed by `publisher`.
    async fn publish_sample(&self, publisher: &Publisher, model: &str, version: &str, file: &str) {
        let _ = self.create_model(model).await;
        let bytes = sample_model(file);
        assert!(self.upload(&bytes).await.status().is_success());
        let res = self
            .publish(
                model,
                version,
                &bytes,
                &[publisher.sign(&bytes, model, version)],
            )
            .await;
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    }

    /// A server with a publisher key and the three sample models published as 1.0.0.
    async fn with_samples(&self) -> Publisher {
        let p = Publisher::new();
        assert_eq!(self.register_key("ml-team", &p.pem()).await.status(), 201);
        for (model, version, file) in SAMPLES {
            self.publish_sample(&p, model, version, file).await;
        }
        p
    }

    async fn infer(&self, credential: Option<&str>, path: &str, body: &Value) -> reqwest::Response {
        let mut req = self.client.post(self.url(path)).json(body);
        if let Some(c) = credential {
            req = req.bearer_auth(c);
        }
        req.send().await.unwrap()
    }

    async fn get_as(&self, credential: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(credential)
            .send()
            .await
            .unwrap()
    }

    async fn metrics(&self) -> String {
        let res = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        res.text().await.unwrap()
    }
}

/// The value of the sample `line_start` (`name{labels}`) in Prometheus text, 0 when absent.
fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}

both_backends!(who_may_infer, who_may_infer_on);
async fn who_may_infer_on(db: Db) {
    let app = spawn_app(db).await;
    app.with_samples().await;
    let infer = "/v2/models/fraud/infer";
    let body = case_body("fraud-1.0.0.onnx", 0);

    let inference = app.token_with_role("scoring-app", "inference").await;
    for role in ["admin", "operator"] {
        let token = app.token_with_role(role, role).await;
        let res = app.infer(Some(&token), infer, &body).await;
        assert_eq!(res.status(), 200, "{role} may infer");
    }
    let res = app.infer(Some(&inference), infer, &body).await;
    assert_eq!(res.status(), 200);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["model_name"], "fraud");
    assert_eq!(answer["model_version"], "1.0.0");
    assert_eq!(
        answer["parameters"],
        json!({"flotilla_served_by": "server"})
    );
    assert_answers(&answer, "fraud-1.0.0.onnx", 0);

    for role in ["viewer", "publisher"] {
        let token = app.token_with_role(role, role).await;
        let msg = assert_oip_error(
            app.infer(Some(&token), infer, &body).await,
            403,
            "forbidden",
        )
        .await;
        assert!(msg.contains(role), "{msg}");
        let res = app.get_as(&token, "/v2/models/fraud").await;
        assert_oip_error(res, 403, "forbidden").await;
    }
    assert_oip_error(app.infer(None, infer, &body).await, 401, "unauthorized").await;
    assert_oip_error(
        app.infer(Some("flt_not-a-token"), infer, &body).await,
        401,
        "unauthorized",
    )
    .await;

    // Devices infer with their own credential (agents escalate hard inputs) until revoked.
    let device = app.enroll(json!({"site": "plant-7"})).await;
    let res = app.infer(Some(&device.credential), infer, &body).await;
    assert_eq!(res.status(), 200);
    let res = app
        .client
        .post(app.url(&format!("/api/v1/devices/{}/revoke", device.id)))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let msg = assert_oip_error(
        app.infer(Some(&device.credential), infer, &body).await,
        401,
        "unauthorized",
    )
    .await;
    assert!(msg.contains("revoked"), "{msg}");

    // The inference role reads models and runs inference, and nothing else.
    assert_eq!(
        app.get_as(&inference, "/v2/models/fraud").await.status(),
        200
    );
    assert_eq!(
        app.get_as(&inference, "/v2/models/fraud/ready")
            .await
            .status(),
        200
    );
    for path in [
        "/api/v1/models",
        "/api/v1/models/fraud/versions/1.0.0",
        "/api/v1/whoami",
    ] {
        assert_eq!(app.get_as(&inference, path).await.status(), 200, "{path}");
    }
    let artifact = format!(
        "/api/v1/artifacts/sha256/{}",
        sha256_hex(&sample_model("fraud-1.0.0.onnx"))
    );
    for path in [
        "/api/v1/devices",
        "/api/v1/deployments",
        "/api/v1/trust-root",
        &artifact,
    ] {
        assert_error(app.get_as(&inference, path).await, 403, "forbidden").await;
    }
    let res = app
        .client
        .post(app.url("/api/v1/models/fraud/versions/1.0.0/yank"))
        .bearer_auth(&inference)
        .send()
        .await
        .unwrap();
    assert_error(res, 403, "forbidden").await;

    // A revoked inference token stops at once.
    let tokens = app.get_json("/api/v1/tokens").await;
    let id = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "scoring-app")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .client
        .delete(app.url(&format!("/api/v1/tokens/{id}")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_oip_error(
        app.infer(Some(&inference), infer, &body).await,
        401,
        "unauthorized",
    )
    .await;

    // Health and server metadata are open, for probes and clients' first questions.
    for (path, key) in [("/v2/health/live", "live"), ("/v2/health/ready", "ready")] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.json::<Value>().await.unwrap()[key], true);
    }
    let server: Value = app
        .client
        .get(app.url("/v2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(server["name"], "flotilla-server");
    assert_eq!(server["extensions"], json!(["binary_tensor_data"]));
}

#[tokio::test]
async fn answers_and_metadata_match_onnxruntime_for_every_sample_model() {
    let app = spawn_app(Db::Sqlite).await;
    app.with_samples().await;
    let token = app.token_with_role("scoring-app", "inference").await;
    for (model, version, file) in SAMPLES {
        let want = expected(file);
        let metadata: Value = app
            .get_as(&token, &format!("/v2/models/{model}/versions/{version}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(metadata["name"], model);
        assert_eq!(metadata["versions"], json!([version]));
        assert_eq!(metadata["platform"], "onnx");
        assert_eq!(metadata["inputs"], want["inputs"], "{model}");
        assert_eq!(metadata["outputs"], want["outputs"], "{model}");

        for (case, recorded) in want["cases"].as_array().unwrap().iter().enumerate() {
            let body = json!({"id": format!("{model}-{case}"), "inputs": recorded["inputs"]});
            // Alternate the versioned path and the baseline one.
            let path = if case % 2 == 0 {
                format!("/v2/models/{model}/versions/{version}/infer")
            } else {
                format!("/v2/models/{model}/infer")
            };
            let res = app.infer(Some(&token), &path, &body).await;
            assert_eq!(res.status(), 200, "{path}");
            let answer: Value = res.json().await.unwrap();
            assert_eq!(answer["id"], format!("{model}-{case}"));
            assert_eq!(answer["model_version"], version);
            assert_answers(&answer, file, case);
        }
    }
}

both_backends!(unknown_and_yanked_versions_are_404, unknown_and_yanked_on);
async fn unknown_and_yanked_on(db: Db) {
    let app = spawn_app(db).await;
    let p = app.with_samples().await;
    app.publish_sample(&p, "fraud", "1.1.0", "fraud-1.1.0.onnx")
        .await;
    let token = app.token_with_role("scoring-app", "inference").await;
    let body = case_body("fraud-1.0.0.onnx", 0);

    let msg = assert_oip_error(
        app.infer(Some(&token), "/v2/models/nope/infer", &body)
            .await,
        404,
        "not_found",
    )
    .await;
    assert!(msg.contains("`nope`"), "{msg}");
    for version in ["9.9.9", "1.0", "latest", "..%2F1.0.0"] {
        let path = format!("/v2/models/fraud/versions/{version}/infer");
        assert_oip_error(
            app.infer(Some(&token), &path, &body).await,
            404,
            "not_found",
        )
        .await;
    }
    let res = app.get_as(&token, "/v2/models/nope/ready").await;
    assert_oip_error(res, 404, "not_found").await;

    // Yanking 1.1.0 stops it being served at once, and the baseline falls back to 1.0.0.
    let served: Value = app
        .infer(Some(&token), "/v2/models/fraud/versions/1.1.0/infer", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(served["model_version"], "1.1.0");
    let res = app
        .client
        .post(app.url("/api/v1/models/fraud/versions/1.1.0/yank"))
        .bearer_auth(&app.admin_token)
        .json(&json!({"reason": "bad calibration"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let msg = assert_oip_error(
        app.infer(Some(&token), "/v2/models/fraud/versions/1.1.0/infer", &body)
            .await,
        404,
        "not_found",
    )
    .await;
    assert!(
        msg.contains("yanked") && msg.contains("bad calibration"),
        "{msg}"
    );
    assert_oip_error(
        app.get_as(&token, "/v2/models/fraud/versions/1.1.0/ready")
            .await,
        404,
        "not_found",
    )
    .await;
    let answer: Value = app
        .infer(Some(&token), "/v2/models/fraud/infer", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["model_version"], "1.0.0");
    let metadata: Value = app
        .get_as(&token, "/v2/models/fraud")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["versions"], json!(["1.0.0"]));
    // Yanking frees the cached copy (the metrics count it as an eviction).
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "flotilla_server_inference_cache_evictions_total"),
        1.0
    );

    // With every version yanked there is nothing to serve.
    app.client
        .post(app.url("/api/v1/models/fraud/versions/1.0.0/yank"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    let msg = assert_oip_error(
        app.infer(Some(&token), "/v2/models/fraud/infer", &body)
            .await,
        404,
        "not_found",
    )
    .await;
    assert!(msg.contains("no published version"), "{msg}");
}

#[tokio::test]
async fn requests_that_do_not_fit_are_400_with_a_code() {
    let app = spawn_app(Db::Sqlite).await;
    app.with_samples().await;
    let token = app.token_with_role("scoring-app", "inference").await;
    let infer = "/v2/models/fraud/infer";
    let features = |shape: Value, datatype: &str, data: Value| json!({"inputs": [{"name": "features", "shape": shape, "datatype": datatype, "data": data}]});
    let cases = [
        (
            features(json!([1, 7]), "FP32", json!([1, 2, 3, 4, 5, 6, 7])),
            "shape",
        ),
        (
            features(json!([1, 8]), "FP64", json!([0, 0, 0, 0, 0, 0, 0, 0])),
            "must be FP32",
        ),
        (features(json!([1, 8]), "FP32", json!([1, 2, 3])), "values"),
        (
            features(json!([1, 8]), "FP32", json!(["x", 0, 0, 0, 0, 0, 0, 0])),
            "invalid data",
        ),
        (json!({"inputs": []}), "missing input `features`"),
        (
            json!({"inputs": [{"name": "nope", "shape": [1], "datatype": "FP32", "data": [1]}]}),
            "unknown input",
        ),
        (json!({"outputs": []}), "malformed"),
    ];
    for (body, needle) in cases {
        let msg = assert_oip_error(
            app.infer(Some(&token), infer, &body).await,
            400,
            "bad_request",
        )
        .await;
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let res = app
        .client
        .post(app.url(infer))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    let msg = assert_oip_error(res, 400, "bad_request").await;
    assert!(msg.contains("malformed"), "{msg}");

    // Wrong methods and unknown paths under /v2 answer in the same form.
    let res = app
        .client
        .get(app.url(infer))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["allow"], "POST");
    assert_oip_error(res, 405, "method_not_allowed").await;
    let res = app.get_as(&token, "/v2/models/fraud/explain").await;
    assert_oip_error(res, 404, "not_found").await;

    // Invalid requests are counted per model version.
    let text = app.metrics().await;
    assert_eq!(
        metric(
            &text,
            "flotilla_server_invalid_requests_total{model=\"fraud\",version=\"1.0.0\"}"
        ),
        6.0,
        "{text}"
    );
}

/// The binary tensor data extension on the server: the JSON answer's numbers as bytes, and
/// malformed bodies refused with a code per kind before anything is decoded.
#[tokio::test]
async fn binary_tensors_are_served_and_malformed_ones_refused_with_a_code() {
    let app = spawn_app(Db::Sqlite).await;
    app.with_samples().await;
    let token = app.token_with_role("scoring-app", "inference").await;
    let infer = "/v2/models/fraud/infer";
    let post_binary = |header: Value, bytes: Vec<u8>, length: Option<String>| {
        let mut body = serde_json::to_vec(&header).unwrap();
        let length = length.unwrap_or_else(|| body.len().to_string());
        body.extend_from_slice(&bytes);
        app.client
            .post(app.url(infer))
            .bearer_auth(&token)
            .header("content-type", "application/octet-stream")
            .header("inference-header-content-length", length)
            .body(body)
            .send()
    };
    let header = |shape: Value, size: Value| {
        json!({ "parameters": { "binary_data_output": true },
                "inputs": [{ "name": "features", "shape": shape, "datatype": "FP32",
                             "parameters": { "binary_data_size": size } }] })
    };
    let case = &expected("fraud-1.0.0.onnx")["cases"][1];
    let values: Vec<f32> = case["inputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let shape = case["inputs"][0]["shape"].clone();

    let res = app
        .infer(Some(&token), infer, &case_body("fraud-1.0.0.onnx", 1))
        .await;
    assert_eq!(res.status(), 200);
    let json_answer: Value = res.json().await.unwrap();
    let res = post_binary(
        header(shape.clone(), json!(bytes.len())),
        bytes.clone(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    let length: usize = res.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = res.bytes().await.unwrap();
    let answer: Value = serde_json::from_slice(&body[..length]).unwrap();
    assert_eq!(answer["parameters"]["flotilla_served_by"], "server");
    let output = &answer["outputs"][0];
    assert_eq!(
        output["shape"], json_answer["outputs"][0]["shape"],
        "{answer}"
    );
    assert_eq!(
        output["parameters"]["binary_data_size"],
        body.len() - length
    );
    let got: Vec<f32> = body[length..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let want: Vec<f32> = json_answer["outputs"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(got, want);

    let n = bytes.len();
    let cases = [
        // The header length beyond the body.
        (
            header(shape.clone(), json!(n)),
            bytes.clone(),
            Some("100000".to_owned()),
            "invalid_binary_header",
        ),
        (
            header(shape.clone(), json!(n)),
            bytes.clone(),
            Some("x".to_owned()),
            "invalid_binary_header",
        ),
        // A size the shape does not need.
        (
            header(json!([1, 8]), json!(n)),
            bytes.clone(),
            None,
            "binary_size_mismatch",
        ),
        // Sizes summing past the body.
        (
            header(shape.clone(), json!(n)),
            bytes[..n / 2].to_vec(),
            None,
            "binary_data_length",
        ),
        // A huge declared size, refused from the sizes alone.
        (
            header(json!([1u64 << 59, 8]), json!(1u64 << 62)),
            bytes.clone(),
            None,
            "binary_data_length",
        ),
    ];
    for (header, bytes, length, code) in cases {
        let res = post_binary(header.clone(), bytes, length).await.unwrap();
        let msg = assert_oip_error(res, 400, code).await;
        assert!(!msg.is_empty(), "{header}");
    }
}

both_backends!(the_baseline_is_the_fleet_wide_deployment, baseline_on);
async fn baseline_on(db: Db) {
    let app = spawn_app(db).await;
    let p = app.with_samples().await;
    app.publish_sample(&p, "fraud", "1.1.0", "fraud-1.1.0.onnx")
        .await;
    let token = app.token_with_role("scoring-app", "inference").await;
    let baseline = |case: usize| {
        let (app, token) = (&app, &token);
        async move {
            let res = app
                .infer(
                    Some(token),
                    "/v2/models/fraud/infer",
                    &case_body("fraud-1.0.0.onnx", case),
                )
                .await;
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }
    };
    // No fleet-wide deployment: the newest published version.
    let answer = baseline(1).await;
    assert_eq!(answer["model_version"], "1.1.0");
    assert_answers(&answer, "fraud-1.1.0.onnx", 1);

    // A deployment to some devices does not change it; one with the empty selector does.
    assert!(app
        .deploy("fraud", "1.0.0", "site=plant-7")
        .await
        .status()
        .is_success());
    assert_eq!(baseline(1).await["model_version"], "1.1.0");
    assert!(app.deploy("fraud", "1.0.0", "").await.status().is_success());
    let answer = baseline(1).await;
    assert_eq!(answer["model_version"], "1.0.0");
    assert_answers(&answer, "fraud-1.0.0.onnx", 1);
    let ready: Value = app
        .get_as(&token, "/v2/models/fraud/ready")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready,
        json!({"name": "fraud", "version": "1.0.0", "ready": true})
    );
    // Both versions stay servable by number.
    let metadata: Value = app
        .get_as(&token, "/v2/models/fraud")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["versions"], json!(["1.1.0", "1.0.0"]));
}

#[tokio::test]
async fn a_small_cache_evicts_the_least_recently_used_model_and_reloads_it() {
    // Room for one sample model, not two.
    let fraud = sample_model("fraud-1.0.0.onnx").len() as u64;
    let budget = flotilla_server::inference::estimated_cost(fraud) + 1;
    let app = spawn_app_with(Db::Sqlite, |s| s.inference_cache_bytes = budget).await;
    app.with_samples().await;
    let token = app.token_with_role("scoring-app", "inference").await;
    let ask = |model: &'static str, file: &'static str| {
        let (app, token) = (&app, &token);
        async move {
            let res = app
                .infer(
                    Some(token),
                    &format!("/v2/models/{model}/infer"),
                    &case_body(file, 0),
                )
                .await;
            assert_eq!(res.status(), 200, "{model}");
            assert_answers(&res.json().await.unwrap(), file, 0);
        }
    };
    let loaded = |text: &str, model: &str| {
        metric(
            text,
            &format!(
                "flotilla_server_inference_model_loaded{{model=\"{model}\",version=\"1.0.0\"}}"
            ),
        ) == 1.0
    };

    ask("fraud", "fraud-1.0.0.onnx").await;
    ask("fraud", "fraud-1.0.0.onnx").await;
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "flotilla_server_inference_cache_loads_total"),
        1.0
    );
    assert_eq!(
        metric(&text, "flotilla_server_inference_cache_hits_total"),
        1.0
    );
    assert!(loaded(&text, "fraud"));

    ask("sensor-anomaly", "sensor-anomaly-1.0.0.onnx").await;
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "flotilla_server_inference_cache_evictions_total"),
        1.0
    );
    assert_eq!(metric(&text, "flotilla_server_inference_cache_models"), 1.0);
    assert!(
        !loaded(&text, "fraud") && loaded(&text, "sensor-anomaly"),
        "{text}"
    );
    assert!(metric(&text, "flotilla_server_inference_cache_bytes") <= budget as f64);

    // The evicted model comes back transparently, at the price of a load.
    ask("fraud", "fraud-1.0.0.onnx").await;
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "flotilla_server_inference_cache_loads_total"),
        3.0
    );
    assert_eq!(
        metric(&text, "flotilla_server_inference_cache_evictions_total"),
        2.0
    );
    assert!(
        loaded(&text, "fraud") && !loaded(&text, "sensor-anomaly"),
        "{text}"
    );
    assert_eq!(
        metric(&text, "flotilla_server_inference_cache_capacity_bytes"),
        budget as f64
    );
    // Per model version figures, as the agent keeps them.
    for (line, value) in [
        (
            "flotilla_server_inferences_total{model=\"fraud\",version=\"1.0.0\"}",
            3.0,
        ),
        (
            "flotilla_server_inferences_total{model=\"sensor-anomaly\",version=\"1.0.0\"}",
            1.0,
        ),
        (
            "flotilla_server_inference_errors_total{model=\"fraud\",version=\"1.0.0\"}",
            0.0,
        ),
        (
            "flotilla_server_inference_latency_seconds_count{model=\"fraud\",version=\"1.0.0\"}",
            3.0,
        ),
    ] {
        assert_eq!(metric(&text, line), value, "{line}\n{text}");
    }
    // The HTTP request metrics are still there.
    assert!(text.contains("flotilla_http_requests_total"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_load_the_model_once() {
    let app = spawn_app(Db::Sqlite).await;
    app.with_samples().await;
    let token = app.token_with_role("scoring-app", "inference").await;
    let body = case_body("vision-cnn-1.0.0.onnx", 0);
    let requests = (0..8).map(|_| app.infer(Some(&token), "/v2/models/vision-cnn/infer", &body));
    for res in futures_util::future::join_all(requests).await {
        assert_eq!(res.status(), 200);
        assert_answers(&res.json().await.unwrap(), "vision-cnn-1.0.0.onnx", 0);
    }
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "flotilla_server_inference_cache_loads_total"),
        1.0
    );
    assert_eq!(
        metric(&text, "flotilla_server_inference_cache_misses_total"),
        1.0
    );
    assert_eq!(
        metric(&text, "flotilla_server_inference_cache_hits_total"),
        7.0
    );
}

#[tokio::test]
async fn only_bytes_that_hash_to_the_published_digest_are_served() {
    let app = spawn_app(Db::Sqlite).await;
    app.with_samples().await;
    let token = app.token_with_role("scoring-app", "inference").await;
    // Someone with access to the blob store swaps fraud 1.0.0's bytes for another loadable
    // model's. Without the digest check the server would answer with the other model.
    let digest = sha256_hex(&sample_model("fraud-1.0.0.onnx"));
    let blob = app.data_dir.path().join("blobs/sha256").join(&digest);
    assert!(blob.exists(), "{}", blob.display());
    std::fs::write(&blob, sample_model("fraud-1.1.0.onnx")).unwrap();

    let body = case_body("fraud-1.0.0.onnx", 0);
    let msg = assert_oip_error(
        app.infer(Some(&token), "/v2/models/fraud/infer", &body)
            .await,
        500,
        "internal",
    )
    .await;
    assert!(!msg.contains(&digest), "5xx messages stay generic: {msg}");
    let text = app.metrics().await;
    assert_eq!(
        metric(&text, "flotilla_server_inference_cache_load_failures_total"),
        1.0
    );
    assert_eq!(metric(&text, "flotilla_server_inference_cache_models"), 0.0);
}

/// NVIDIA's own Triton client (`tritonclient[http]` from PyPI) against the server's endpoint,
/// with an inference token. The interpreter comes from `FLOTILLA_TEST_PYTHON` (set by
/// `scripts/test` to the test venv, which installs `tests/requirements.txt`), or `python3`; a
/// missing client fails the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_talks_to_the_server() {
    let app = spawn_app(Db::Sqlite).await;
    app.with_samples().await;
    let token = app.token_with_role("triton", "inference").await;
    let viewer = app.token_with_role("dash", "viewer").await;
    let python = std::env::var("FLOTILLA_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/api/tritonclient_check.py");
    let url = app.address.trim_start_matches("http://").to_owned();
    let expected = models_dir().join("expected.json");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .args(["--url", &url, "--token", &token, "--viewer-token", &viewer])
            .arg("--expected")
            .arg(&expected)
            .output()
            .unwrap_or_else(|e| panic!("running {python}: {e}"))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tritonclient_check.py failed ({}); install tests/requirements.txt into \
         FLOTILLA_TEST_PYTHON's environment\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    // Server metadata, three models' metadata, six cases, the error checks.
    assert!(
        stdout.contains("tritonclient checks passed: 11"),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
}
