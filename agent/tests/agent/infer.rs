//! Health, metadata and inference answers against onnxruntime's.

use flotilla_agent::inference::{LocalApiConfig, SERVED_BY_EDGE};
use serde_json::{json, Value};

use crate::support::{
    assert_outputs, binary_body, error_message, expected_model, f32_bytes, f32_values, infer_body,
    read, read_binary, TestApi, FRAUD_1_0, SAMPLE_MODELS,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_match_onnxruntime_for_every_model_flat_and_nested() {
    let app = TestApi::with_samples().await;
    let mut checked = 0;
    for (name, version, file) in SAMPLE_MODELS {
        let expected = expected_model(file);
        for (index, case) in expected.cases.iter().enumerate() {
            for nested in [false, true] {
                // Alternate the unversioned and the versioned endpoint.
                let path = if nested {
                    format!("/v2/models/{name}/versions/{version}/infer")
                } else {
                    format!("/v2/models/{name}/infer")
                };
                let mut body = infer_body(case, nested);
                body["id"] = json!(format!("{name}-{index}-{nested}"));
                let (status, response) = app.post(&path, &body).await;
                assert_eq!(status, 200, "{path}: {response}");
                assert_eq!(response["model_name"], name);
                assert_eq!(response["model_version"], version);
                assert_eq!(response["id"], body["id"]);
                assert_eq!(
                    response["parameters"],
                    json!({ "flotilla_served_by": SERVED_BY_EDGE })
                );
                assert_outputs(&response, case);
                checked += 1;
            }
        }
    }
    // Each model has a single-row and a batch case, each sent flat and nested.
    assert_eq!(checked, 12);
}

/// The binary tensor data extension: inputs as bytes after the JSON part, outputs asked as
/// bytes; the numbers are the JSON answer's, to the bit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_tensors_carry_the_json_answers_bit_for_bit() {
    let app = TestApi::with_samples().await;
    let mut checked = 0;
    for (name, _, file) in SAMPLE_MODELS {
        let path = format!("/v2/models/{name}/infer");
        for case in &expected_model(file).cases {
            let json_body = infer_body(case, false);
            let (status, json_answer) = app.post(&path, &json_body).await;
            assert_eq!(status, 200, "{json_answer}");
            let want: Vec<f32> = json_answer["outputs"][0]["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();

            // Binary inputs, every output binary (`binary_data_output`, no outputs named).
            let input = &json_body["inputs"][0];
            let values: Vec<f32> = input["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let header = json!({
                "id": "bin",
                "parameters": { "binary_data_output": true },
                "inputs": [{ "name": input["name"], "shape": input["shape"], "datatype": "FP32",
                             "parameters": { "binary_data_size": values.len() * 4 } }]
            });
            let (length, body) = binary_body(&header, &f32_bytes(&values));
            let (answer, bytes) = read_binary(
                app.post_binary(&path, &length.to_string(), body.clone())
                    .await,
            )
            .await;
            let output = &answer["outputs"][0];
            assert_eq!(answer["id"], "bin");
            assert_eq!(answer["parameters"]["flotilla_served_by"], SERVED_BY_EDGE);
            assert_eq!(
                output["shape"], json_answer["outputs"][0]["shape"],
                "{answer}"
            );
            assert!(output.get("data").is_none(), "{answer}");
            assert_eq!(
                output["parameters"]["binary_data_size"],
                bytes.len(),
                "{answer}"
            );
            let got = f32_values(&bytes);
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );

            // Binary inputs, the output asked as JSON: a plain JSON answer.
            let mut header = header.clone();
            header["parameters"] = json!({ "binary_data_output": true });
            let output_name = &json_answer["outputs"][0]["name"];
            header["outputs"] =
                json!([{ "name": output_name, "parameters": { "binary_data": false } }]);
            let (length, body) = binary_body(&header, &f32_bytes(&values));
            let response = app.post_binary(&path, &length.to_string(), body).await;
            assert_eq!(response.headers()["content-type"], "application/json");
            assert!(response
                .headers()
                .get("inference-header-content-length")
                .is_none());
            let (status, answer) = read(response).await;
            assert_eq!(status, 200, "{answer}");
            assert_eq!(answer["outputs"], json_answer["outputs"]);

            // JSON inputs, the one output asked as binary.
            let mut body = json_body.clone();
            body["outputs"] =
                json!([{ "name": output_name, "parameters": { "binary_data": true } }]);
            let response = app
                .client
                .post(app.url(&path))
                .json(&body)
                .send()
                .await
                .unwrap();
            let (_, bytes) = read_binary(response).await;
            assert_eq!(f32_values(&bytes), want);
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_server_and_model_metadata() {
    let app = TestApi::with_samples().await;
    assert_eq!(app.get("/v2/health/live").await.0, 200);
    assert_eq!(app.get("/v2/health/ready").await.0, 200);

    let (status, server) = app.get("/v2").await;
    assert_eq!(status, 200);
    assert_eq!(
        server,
        json!({ "name": "flotilla-agent", "version": env!("CARGO_PKG_VERSION"),
                "extensions": ["binary_tensor_data"] })
    );

    for (name, version, file) in SAMPLE_MODELS {
        let expected = expected_model(file);
        let specs = |specs: &[crate::support::ExpectedSpec]| -> Value {
            specs
                .iter()
                .map(|s| json!({ "name": s.name, "datatype": s.datatype, "shape": s.shape }))
                .collect()
        };
        let want = json!({
            "name": name,
            "versions": [version],
            "platform": "onnx",
            "inputs": specs(&expected.inputs),
            "outputs": specs(&expected.outputs),
        });
        for path in [
            format!("/v2/models/{name}"),
            format!("/v2/models/{name}/versions/{version}"),
        ] {
            let (status, metadata) = app.get(&path).await;
            assert_eq!((status, &metadata), (200, &want), "{path}");
            let (status, ready) = app.get(&format!("{path}/ready")).await;
            assert_eq!(status, 200, "{path}/ready: {ready}");
            assert_eq!(ready["ready"], true);
        }
        // Only the current version is served.
        for path in [
            format!("/v2/models/{name}/versions/0.0.1"),
            format!("/v2/models/{name}/versions/0.0.1/ready"),
        ] {
            let (status, body) = app.get(&path).await;
            assert_eq!(status, 404, "{path}: {body}");
            assert!(error_message(&body).contains("0.0.1"), "{body}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_while_a_model_is_loaded() {
    let app = TestApi::start(LocalApiConfig::default(), &[]).await;
    assert_eq!(app.get("/v2/health/live").await.0, 200);
    let (status, body) = app.get("/v2/health/ready").await;
    assert_eq!(status, 400, "{body}");
    assert!(error_message(&body).contains("no model"), "{body}");

    app.api
        .registry()
        .install("fraud", "1.0.0", crate::support::model(FRAUD_1_0));
    assert_eq!(app.get("/v2/health/ready").await.0, 200);
    assert_eq!(app.get("/v2/models/fraud/ready").await.0, 200);

    let removed = app.api.registry().remove("fraud").expect("was installed");
    assert_eq!(removed.version, "1.0.0");
    assert_eq!(app.get("/v2/health/ready").await.0, 400);
    let (status, body) = app.get("/v2/models/fraud/ready").await;
    assert_eq!(status, 404);
    error_message(&body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requested_outputs_are_returned_and_checked() {
    let app = TestApi::with_samples().await;
    let case = &expected_model(FRAUD_1_0).cases[1];
    let mut body = infer_body(case, false);
    body["outputs"] = json!([{ "name": "probabilities", "parameters": { "binary_data": false } }]);
    body["parameters"] = json!({ "binary_data_output": false, "priority": 0 });
    let (status, response) = app.post("/v2/models/fraud/infer", &body).await;
    assert_eq!(status, 200, "{response}");
    assert_outputs(&response, case);
    // No id in the request, none in the response.
    assert!(response.get("id").is_none(), "{response}");

    body["outputs"] = json!([{ "name": "logits" }]);
    let (status, response) = app.post("/v2/models/fraud/infer", &body).await;
    assert_eq!(status, 400);
    assert!(
        error_message(&response).contains("unknown output `logits`"),
        "{response}"
    );

    body["outputs"] = json!([{ "name": "probabilities" }, { "name": "probabilities" }]);
    let (status, response) = app.post("/v2/models/fraud/infer", &body).await;
    assert_eq!(status, 400);
    assert!(
        error_message(&response).contains("more than once"),
        "{response}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_window_and_prometheus_metrics_count_per_model_version() {
    let app = TestApi::with_samples().await;
    let case = &expected_model(FRAUD_1_0).cases[0];
    for _ in 0..5 {
        let (status, _) = app
            .post("/v2/models/fraud/infer", &infer_body(case, false))
            .await;
        assert_eq!(status, 200);
    }
    let mut wrong = infer_body(case, false);
    wrong["inputs"][0]["shape"] = json!([1, 7]);
    assert_eq!(app.post("/v2/models/fraud/infer", &wrong).await.0, 400);

    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    for line in [
        "flotilla_agent_inferences_total{model=\"fraud\",version=\"1.0.0\"} 5",
        "flotilla_agent_invalid_requests_total{model=\"fraud\",version=\"1.0.0\"} 1",
        "flotilla_agent_inference_latency_seconds_count{model=\"fraud\",version=\"1.0.0\"} 5",
        "flotilla_agent_models_loaded 3",
        "flotilla_agent_model_info{model=\"vision-cnn\",version=\"1.0.0\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }

    let window = app.api.recorder().take_window();
    let [fraud] = window.models.as_slice() else {
        panic!("one model version expected: {window:?}");
    };
    assert_eq!(
        (
            fraud.model.as_str(),
            fraud.version.as_str(),
            fraud.inferences,
            fraud.invalid_requests,
            fraud.errors
        ),
        ("fraud", "1.0.0", 5, 1, 0)
    );
    let latency = fraud.latency_ms.expect("latency of 5 runs");
    assert!(latency.p50 > 0.0 && latency.p50 <= latency.p95 && latency.p95 <= latency.p99);
    assert!(app.api.recorder().take_window().models.is_empty());
}
