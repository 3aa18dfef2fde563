//! A full worker pool answers 503 at once instead of queueing without bound.

use std::sync::Arc;

use flotilla_agent::inference::LocalApiConfig;
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::support::{
    assert_outputs, error_message, expected_model, infer_body, read, TestApi, VISION,
};

const FLOOD: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_and_the_admitted_request_still_succeeds() {
    let config = LocalApiConfig {
        workers: 1,
        queue_depth: 1,
        ..LocalApiConfig::default()
    };
    let app = TestApi::start(config, &[("vision-cnn", "1.0.0", VISION)]).await;

    // Occupy the only worker with a job that holds it until the test opens the gate: a slow
    // model whose slowness the test controls, so nothing depends on timing.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
    let pool = Arc::clone(app.api.pool());
    let blocker = tokio::spawn(async move {
        pool.run(move || {
            started_tx.send(()).unwrap();
            gate_rx.recv().unwrap();
        })
        .await
    });
    started_rx.await.unwrap();

    // The worker is busy and the queue has one place: of the flood, exactly one request is
    // admitted (and waits); every other one is refused at once.
    let case = &expected_model(VISION).cases[1];
    let body = Arc::new(infer_body(case, false));
    let mut pending: FuturesUnordered<_> = (0..FLOOD)
        .map(|_| {
            let request = app
                .client
                .post(app.url("/v2/models/vision-cnn/infer"))
                .json(&*body);
            async move {
                let response = request.send().await.unwrap();
                let retry_after = response.headers().get("retry-after").cloned();
                let (status, body) = read(response).await;
                (status, body, retry_after)
            }
        })
        .collect();
    for _ in 1..FLOOD {
        let (status, body, retry_after) = pending.next().await.unwrap();
        assert_eq!(status, 503, "{body}");
        assert!(error_message(&body).contains("busy"), "{body}");
        assert_eq!(retry_after.unwrap(), "1");
    }

    gate_tx.send(()).unwrap();
    let (status, answer, _) = pending.next().await.unwrap();
    assert_eq!(status, 200, "{answer}");
    assert_outputs(&answer, case);
    assert!(pending.next().await.is_none());
    blocker.await.unwrap().unwrap();

    // Counted, and the pool serves again.
    let window = app.api.recorder().take_window();
    assert_eq!(window.rejected_busy, (FLOOD - 1) as u64);
    assert_eq!(window.models[0].inferences, 1);
    let (status, answer) = app.post("/v2/models/vision-cnn/infer", &body).await;
    assert_eq!(status, 200, "{answer}");
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == format!("flotilla_agent_rejected_busy_total {}", FLOOD - 1)),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_flood_gets_only_answers_or_503() {
    // The vision model on a large batch, with one worker and one queue place: requests are
    // either answered correctly or refused with 503, never anything else.
    let config = LocalApiConfig {
        workers: 1,
        queue_depth: 1,
        ..LocalApiConfig::default()
    };
    let app = TestApi::start(config, &[("vision-cnn", "1.0.0", VISION)]).await;
    let case = &expected_model(VISION).cases[1];
    let mut body = infer_body(case, false);
    let rows = case.inputs[0].shape[0];
    let data = body["inputs"][0]["data"].as_array().unwrap().clone();
    let copies = 64 / rows;
    body["inputs"][0]["shape"][0] = serde_json::json!(rows * copies);
    body["inputs"][0]["data"] = serde_json::Value::Array(
        data.iter()
            .cloned()
            .cycle()
            .take(data.len() * copies)
            .collect(),
    );
    let body = Arc::new(body);

    let mut pending: FuturesUnordered<_> = (0..FLOOD)
        .map(|_| {
            let request = app
                .client
                .post(app.url("/v2/models/vision-cnn/infer"))
                .json(&*body);
            async move { read(request.send().await.unwrap()).await }
        })
        .collect();
    let (mut answered, mut refused) = (0, 0);
    while let Some((status, response)) = pending.next().await {
        match status {
            200 => {
                let outputs = &response["outputs"][0];
                assert_eq!(outputs["shape"], serde_json::json!([rows * copies, 10]));
                answered += 1;
            }
            503 => {
                error_message(&response);
                refused += 1;
            }
            other => panic!("unexpected {other}: {response}"),
        }
    }
    eprintln!("real flood of {FLOOD}: {answered} answered, {refused} refused with 503");
    assert!(
        answered >= 1,
        "at least the first admitted request is answered"
    );
    assert_eq!(answered + refused, FLOOD);
    let window = app.api.recorder().take_window();
    assert_eq!(window.rejected_busy, refused as u64);
}
