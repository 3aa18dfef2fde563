//! Swapping the served version under load fails no request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_agent::inference::LocalApiConfig;
use tokio::sync::watch;

use crate::support::{
    expected_model, infer_body, model, outputs_match, TestApi, FRAUD_1_0, FRAUD_1_1,
};

const TASKS: usize = 8;
const REQUESTS_PER_TASK: usize = 300;
const SWAPS: usize = 10;
/// A swap happens after every this many completed requests, so all swaps land mid-load.
const REQUESTS_BETWEEN_SWAPS: usize = 150;

/// The version installed by swap `i` (swap 0 is the initial install).
fn version_of_swap(i: usize) -> (&'static str, &'static str) {
    if i % 2 == 0 {
        ("1.0.0", FRAUD_1_0)
    } else {
        ("1.1.0", FRAUD_1_1)
    }
}

struct Outcome {
    /// How many swaps had completed when the request was sent.
    swaps_before: usize,
    latency: Duration,
    result: Result<String, String>,
}

fn p99(latencies: &mut [Duration]) -> Duration {
    latencies.sort();
    latencies
        .get((latencies.len() * 99).div_ceil(100).saturating_sub(1))
        .copied()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapping_versions_under_load_fails_no_request() {
    let config = LocalApiConfig {
        queue_depth: TASKS * 2,
        ..LocalApiConfig::default()
    };
    let app = Arc::new(TestApi::start(config, &[("fraud", "1.0.0", FRAUD_1_0)]).await);
    // The same six rows for both versions; expected.json has both versions' answers.
    let case_1_0 = &expected_model(FRAUD_1_0).cases[1];
    let case_1_1 = &expected_model(FRAUD_1_1).cases[1];
    assert_eq!(infer_body(case_1_0, false), infer_body(case_1_1, false));
    let body = Arc::new(infer_body(case_1_0, false));

    let swaps_done = Arc::new(AtomicUsize::new(0));
    let (completed_tx, completed_rx) = watch::channel(0usize);
    let completed_tx = Arc::new(completed_tx);

    let swapper = {
        let app = Arc::clone(&app);
        let swaps_done = Arc::clone(&swaps_done);
        let mut completed = completed_rx.clone();
        tokio::spawn(async move {
            for swap in 1..=SWAPS {
                completed
                    .wait_for(|&n| n >= swap * REQUESTS_BETWEEN_SWAPS)
                    .await
                    .unwrap();
                let (version, file) = version_of_swap(swap);
                app.api.registry().install("fraud", version, model(file));
                swaps_done.store(swap, Ordering::SeqCst);
            }
        })
    };

    let mut clients = Vec::new();
    for _ in 0..TASKS {
        let app = Arc::clone(&app);
        let body = Arc::clone(&body);
        let swaps_done = Arc::clone(&swaps_done);
        let completed_tx = Arc::clone(&completed_tx);
        clients.push(tokio::spawn(async move {
            let mut outcomes = Vec::with_capacity(REQUESTS_PER_TASK);
            for _ in 0..REQUESTS_PER_TASK {
                let swaps_before = swaps_done.load(Ordering::SeqCst);
                let started = Instant::now();
                let sent = app
                    .client
                    .post(app.url("/v2/models/fraud/infer"))
                    .json(&*body)
                    .send()
                    .await;
                let result = match sent {
                    Err(e) => Err(format!("transport: {e}")),
                    Ok(response) => {
                        let (status, json) = crate::support::read(response).await;
                        let version = json["model_version"].as_str().unwrap_or("").to_owned();
                        let case = match version.as_str() {
                            "1.0.0" => Some(case_1_0),
                            "1.1.0" => Some(case_1_1),
                            _ => None,
                        };
                        match case {
                            Some(case)
                                if status == 200
                                    && outputs_match(&json["outputs"][0], &case.outputs[0]) =>
                            {
                                Ok(version)
                            }
                            _ => Err(format!("{status}: {json}")),
                        }
                    }
                };
                outcomes.push(Outcome {
                    swaps_before,
                    latency: started.elapsed(),
                    result,
                });
                completed_tx.send_modify(|n| *n += 1);
            }
            outcomes
        }));
    }
    let mut outcomes = Vec::new();
    for client in clients {
        outcomes.extend(client.await.unwrap());
    }
    swapper.await.unwrap();

    let failures: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err())
        .collect();
    assert_eq!(
        failures.len(),
        0,
        "{} of {} requests failed, the first: {:?}",
        failures.len(),
        outcomes.len(),
        &failures[..failures.len().min(3)]
    );
    assert_eq!(outcomes.len(), TASKS * REQUESTS_PER_TASK);

    // Both versions answered, each with its own outputs (checked above), and every request
    // sent after the last swap completed got the last version.
    let (last_version, _) = version_of_swap(SWAPS);
    let served = |v: &str| {
        outcomes
            .iter()
            .filter(|o| o.result.as_deref() == Ok(v))
            .count()
    };
    assert!(served("1.0.0") > 0 && served("1.1.0") > 0);
    let after_last: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.swaps_before == SWAPS)
        .collect();
    assert!(
        !after_last.is_empty(),
        "no request was sent after the last swap"
    );
    for outcome in &after_last {
        assert_eq!(outcome.result.as_deref(), Ok(last_version));
    }
    let (status, response) = app
        .post("/v2/models/fraud/infer", &infer_body(case_1_0, false))
        .await;
    assert_eq!(status, 200);
    assert_eq!(response["model_version"], last_version);

    // Not asserted (tests never assert wall-clock times); shown with --nocapture.
    let mut before: Vec<Duration> = outcomes
        .iter()
        .filter(|o| o.swaps_before == 0)
        .map(|o| o.latency)
        .collect();
    let mut during: Vec<Duration> = outcomes
        .iter()
        .filter(|o| (1..SWAPS).contains(&o.swaps_before))
        .map(|o| o.latency)
        .collect();
    let mut after: Vec<Duration> = after_last.iter().map(|o| o.latency).collect();
    eprintln!(
        "hot swap: {} requests, {} failures, {SWAPS} swaps; 1.0.0 answered {}, 1.1.0 answered {}; \
         client p99 before {:?} ({} requests), during {:?} ({}), after {:?} ({})",
        outcomes.len(),
        failures.len(),
        served("1.0.0"),
        served("1.1.0"),
        p99(&mut before),
        before.len(),
        p99(&mut during),
        during.len(),
        p99(&mut after),
        after.len(),
    );
}
