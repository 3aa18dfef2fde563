//! Every error path answers in the Open Inference Protocol's format, `{"error": "..."}`.

use flotilla_agent::inference::LocalApiConfig;
use serde_json::{json, Value};

use crate::support::{
    binary_body, error_message, expected_model, infer_body, read, TestApi, FRAUD_1_0,
};

fn fraud_request() -> Value {
    infer_body(&expected_model(FRAUD_1_0).cases[0], false)
}

/// Sends `body` to fraud's infer endpoint; asserts the status and that the message contains
/// `needle`.
async fn expect_error(app: &TestApi, body: &Value, status: u16, needle: &str) {
    let (got, response) = app.post("/v2/models/fraud/infer", body).await;
    assert_eq!(got, status, "{body} -> {response}");
    let message = error_message(&response);
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_models_and_versions_are_404() {
    let app = TestApi::with_samples().await;
    let body = fraud_request();
    for path in [
        "/v2/models/nope/infer",
        "/v2/models/nope/versions/1.0.0/infer",
        "/v2/models/fraud/versions/9.9.9/infer",
    ] {
        let (status, response) = app.post(path, &body).await;
        assert_eq!(status, 404, "{path}: {response}");
        error_message(&response);
    }
    for path in ["/v2/models/nope", "/v2/models/nope/ready"] {
        let (status, response) = app.get(path).await;
        assert_eq!(status, 404, "{path}: {response}");
        assert!(error_message(&response).contains("`nope` is not loaded"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_do_not_fit_the_model_are_400() {
    let app = TestApi::with_samples().await;
    let valid = fraud_request();

    let mut body = valid.clone();
    body["inputs"][0]["datatype"] = json!("INT64");
    body["inputs"][0]["data"] = json!([1, 2, 3, 4, 5, 6, 7, 8]);
    expect_error(&app, &body, 400, "must be FP32, got INT64").await;

    body["inputs"][0]["datatype"] = json!("FP16");
    expect_error(&app, &body, 400, "`FP16`, which is not supported").await;

    let mut body = valid.clone();
    body["inputs"][0]["shape"] = json!([1, 7]);
    expect_error(&app, &body, 400, "must have shape [-1, 8]").await;

    let mut body = valid.clone();
    body["inputs"][0]["shape"] = json!([2, 8]);
    expect_error(&app, &body, 400, "(16 values) but 8 values").await;

    let mut body = valid.clone();
    body["inputs"][0]["shape"] = json!([-1, 8]);
    expect_error(&app, &body, 400, "malformed inference request").await;

    let mut body = valid.clone();
    body["inputs"][0]["name"] = json!("feature");
    expect_error(
        &app,
        &body,
        400,
        "unknown input `feature`; model `fraud` takes `features`",
    )
    .await;

    let mut body = valid.clone();
    let input = body["inputs"][0].clone();
    body["inputs"] = json!([input.clone(), input]);
    expect_error(&app, &body, 400, "given more than once").await;

    let mut body = valid.clone();
    body["inputs"] = json!([]);
    expect_error(&app, &body, 400, "missing input `features`").await;

    let mut body = valid.clone();
    body["inputs"][0]["data"][3] = json!("0.5");
    expect_error(&app, &body, 400, "invalid data").await;

    let mut body = valid.clone();
    body["inputs"][0]["data"] = json!({ "values": [1] });
    expect_error(&app, &body, 400, "invalid data").await;

    let mut body = valid.clone();
    body.as_object_mut().unwrap().remove("inputs");
    expect_error(&app, &body, 400, "missing field `inputs`").await;

    // The model's own dimension check still answers 400 (an empty batch).
    let mut body = valid.clone();
    body["inputs"][0]["shape"] = json!([0, 8]);
    body["inputs"][0]["data"] = json!([]);
    expect_error(&app, &body, 400, "empty dimension").await;

    // None of these reached the worker pool, and each is counted against the model version.
    let window = app.api.recorder().take_window();
    assert_eq!(window.models.len(), 1, "{window:?}");
    assert_eq!(window.models[0].inferences, 0);
    assert_eq!(window.models[0].invalid_requests, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_is_400() {
    let app = TestApi::with_samples().await;
    for body in ["{", "not json", "{\"inputs\": [}", "", "[]"] {
        let (status, response) = app.post_raw("/v2/models/fraud/infer", body).await;
        assert_eq!(status, 400, "{body:?}: {response}");
        assert!(
            error_message(&response).starts_with("malformed inference request"),
            "{response}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_binary_bodies_are_refused_before_anything_is_decoded() {
    let app = TestApi::with_samples().await;
    let path = "/v2/models/fraud/infer";
    // fraud takes [N, 8] FP32: a [1, 8] input is 32 bytes.
    let header = |shape: Value, size: Value| {
        json!({ "inputs": [{ "name": "features", "shape": shape, "datatype": "FP32",
                             "parameters": { "binary_data_size": size } }] })
    };
    let refused = |response: reqwest::Response, needle: &'static str| async move {
        let (status, body) = read(response).await;
        assert_eq!(status, 400, "{body}");
        let message = error_message(&body);
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    };

    // The header length beyond the body, not a number, or beyond any acceptable body.
    let (length, body) = binary_body(&header(json!([1, 8]), json!(32)), &[0; 32]);
    let beyond = (length + 33).to_string();
    refused(app.post_binary(path, &beyond, body.clone()).await, "only").await;
    refused(
        app.post_binary(path, "12abc", body.clone()).await,
        "length in bytes",
    )
    .await;
    let huge = "99999999999999999999999";
    refused(
        app.post_binary(path, huge, body.clone()).await,
        "length in bytes",
    )
    .await;
    refused(
        app.post_binary(path, "1099511627776", body).await,
        "largest body",
    )
    .await;

    // A binary_data_size that is not what the shape needs.
    let (length, body) = binary_body(&header(json!([1, 8]), json!(31)), &[0; 31]);
    refused(
        app.post_binary(path, &length.to_string(), body).await,
        "need 32",
    )
    .await;
    // Sizes summing past the body.
    let (length, body) = binary_body(&header(json!([1, 8]), json!(32)), &[0; 16]);
    refused(
        app.post_binary(path, &length.to_string(), body).await,
        "only 16 bytes",
    )
    .await;
    // Bytes no input accounts for.
    let (length, body) = binary_body(&header(json!([1, 8]), json!(32)), &[0; 40]);
    refused(
        app.post_binary(path, &length.to_string(), body).await,
        "add up to 32",
    )
    .await;
    // A huge declared size (for a shape that would need it) is refused by arithmetic on the
    // sizes, before any buffer is sized from it.
    let (length, body) = binary_body(&header(json!([1u64 << 59, 8]), json!(1u64 << 62)), &[0; 32]);
    refused(
        app.post_binary(path, &length.to_string(), body).await,
        "only 32 bytes",
    )
    .await;
    let (length, body) = binary_body(&header(json!([1, 8]), json!(-32)), &[0; 32]);
    refused(
        app.post_binary(path, &length.to_string(), body).await,
        "not a size",
    )
    .await;
    // Binary inputs with no header length: the whole body is JSON, no bytes follow it.
    let (_, body) = binary_body(&header(json!([1, 8]), json!(32)), &[]);
    let (status, answer) = app.post_raw(path, body).await;
    assert_eq!(status, 400, "{answer}");
    assert!(error_message(&answer).contains("only 0 bytes"), "{answer}");
    // Both `data` and binary data.
    let mut both = header(json!([1, 8]), json!(32));
    both["inputs"][0]["data"] = json!([0, 0, 0, 0, 0, 0, 0, 0]);
    let (length, body) = binary_body(&both, &[0; 32]);
    refused(
        app.post_binary(path, &length.to_string(), body).await,
        "both",
    )
    .await;

    // Still serving: the same request, well formed.
    let (length, body) = binary_body(&header(json!([1, 8]), json!(32)), &[0; 32]);
    let (status, answer) = read(app.post_binary(path, &length.to_string(), body).await).await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_are_413() {
    let config = LocalApiConfig {
        body_limit: 1024,
        ..LocalApiConfig::default()
    };
    let app = TestApi::start(config, &[("fraud", "1.0.0", FRAUD_1_0)]).await;
    // Small enough: fine.
    let (status, _) = app.post("/v2/models/fraud/infer", &fraud_request()).await;
    assert_eq!(status, 200);

    let mut body = fraud_request();
    body["inputs"][0]["shape"] = json!([64, 8]);
    body["inputs"][0]["data"] = json!(vec![0.5; 512]);
    let (status, response) = app.post("/v2/models/fraud/infer", &body).await;
    assert_eq!(status, 413, "{response}");
    assert!(error_message(&response).contains("1024 bytes"));

    // Without Content-Length (chunked), the limit still holds.
    let bytes = serde_json::to_vec(&body).unwrap();
    let stream = futures_util::stream::iter(
        bytes
            .chunks(100)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let response = app
        .client
        .post(app.url("/v2/models/fraud/infer"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    let (status, response) = read(response).await;
    assert_eq!(status, 413, "{response}");
    error_message(&response);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_wrong_methods_answer_json() {
    let app = TestApi::with_samples().await;
    let (status, body) = app.get("/v2/repository/index").await;
    assert_eq!(status, 404);
    assert!(error_message(&body).contains("/v2/repository/index"));

    let response = app
        .client
        .get(app.url("/v2/models/fraud/infer"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "POST");
    let (status, body) = read(response).await;
    assert_eq!(status, 405);
    assert!(error_message(&body).contains("use POST"));

    let (status, body) = app.post("/v2/health/live", &json!({})).await;
    assert_eq!(status, 405);
    error_message(&body);
}
