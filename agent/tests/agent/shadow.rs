//! Shadow runs: a candidate named by the signed desired state is verified like a slot, runs
//! beside the active version on live requests, never answers, and is reported.

use flotilla_protocol::agent::{ModelSlot, SlotState};
use flotilla_protocol::signing::{SampleTensor, SigningKey};
use flotilla_runtime::Tensor;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::device::{hex_sha, model_bytes, Device};
use crate::support::{
    assert_outputs, error_message, expected_model, infer_body, model, FRAUD_1_0, FRAUD_1_1,
    TOLERANCE,
};

const FRAUD_2_0: &str = "fraud-2.0.0-disagree.onnx";
const FRAUD_FAULTY: &str = "fraud-1.2.0-faulty.onnx";
/// Single-row requests besides expected.json's cases.
const ROWS: usize = 60;

/// Rows on the 1/256 grid in [-2, 2), as models/generate.py draws them (fixed seed).
fn rows(seed: u64, count: usize) -> Vec<[f32; 8]> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| std::array::from_fn(|_| f32::from(rng.gen_range(-512i16..512)) / 256.0))
        .collect()
}

fn row_body(row: &[f32; 8]) -> Value {
    json!({"inputs": [{"name": "features", "shape": [1, 8], "datatype": "FP32", "data": row}]})
}

/// 1.0.0's answer to `row`, computed directly.
fn active_answer(row: &[f32; 8]) -> Vec<f32> {
    let outputs = model(FRAUD_1_0)
        .run(vec![Tensor::new("features", vec![1, 8], row.to_vec())])
        .unwrap();
    outputs[0].data.as_f32().unwrap().to_vec()
}

/// Sends expected.json's fraud 1.0.0 cases and `rows` one by one, asserting that 1.0.0
/// answered each with its own outputs; waits for each request's shadow run to be recorded
/// before the next, so none is skipped. Returns how many requests were sent.
async fn send_and_check(device: &Device, rows: &[[f32; 8]]) -> u64 {
    let mut sent = 0;
    for case in &expected_model(FRAUD_1_0).cases {
        let (status, response) = device
            .app
            .post("/v2/models/fraud/infer", &infer_body(case, false))
            .await;
        assert_eq!(status, 200, "{response}");
        assert_eq!(response["model_version"], "1.0.0");
        assert_outputs(&response, case);
        sent += 1;
        device.shadow_runs(sent).await;
    }
    for row in rows {
        let (status, response) = device
            .app
            .post("/v2/models/fraud/infer", &row_body(row))
            .await;
        assert_eq!(status, 200, "{response}");
        assert_eq!(response["model_version"], "1.0.0");
        let got: Vec<f64> = response["outputs"][0]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let want = active_answer(row);
        assert!(
            got.iter()
                .zip(&want)
                .all(|(g, w)| (g - f64::from(*w)).abs() <= TOLERANCE),
            "{got:?} is not 1.0.0's {want:?}"
        );
        sent += 1;
        device.shadow_runs(sent).await;
    }
    sent
}

async fn with_shadow(file: &str, version: &str) -> Device {
    let mut device = Device::start().await;
    let slot = ModelSlot {
        shadow: Some(device.shadow(file, version)),
        ..device.slot(FRAUD_1_0, "1.0.0")
    };
    device.apply(vec![slot]).await;
    let status = device.fraud_status();
    assert_eq!(
        (status.state, status.active_version.as_deref()),
        (SlotState::Active, Some("1.0.0"))
    );
    let shadow = status.shadow.expect("a shadow status");
    assert_eq!(
        (shadow.version.as_str(), shadow.state, shadow.reason),
        (version, SlotState::Active, None)
    );
    device
}

pub(crate) async fn metric(device: &Device, line_start: &str) -> u64 {
    let text = device
        .app
        .client
        .get(device.app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_candidate_runs_in_shadow_agrees_and_never_answers() {
    let device = with_shadow(FRAUD_1_1, "1.1.0").await;
    let sent = send_and_check(&device, &rows(11, ROWS)).await;

    // The candidate is not addressable: only the active version answers.
    let body = row_body(&rows(11, 1)[0]);
    let (status, response) = device
        .app
        .post("/v2/models/fraud/versions/1.1.0/infer", &body)
        .await;
    assert_eq!(status, 404, "{response}");
    assert!(error_message(&response).contains("current version is `1.0.0`"));
    let (status, _) = device.app.get("/v2/models/fraud/versions/1.1.0").await;
    assert_eq!(status, 404);

    let window = device.health_window();
    let health = Device::fraud_health(&window, "1.0.0");
    assert_eq!(health.inference_count, sent);
    let shadow = health.shadow.expect("shadow figures");
    let agreement = shadow.agreed as f64 / shadow.compared as f64;
    eprintln!("shadow 1.1.0 beside 1.0.0: {shadow:?}, agreement {agreement:.3}");
    assert_eq!(shadow.version, "1.1.0");
    assert_eq!(
        (shadow.compared, shadow.errors, shadow.skipped),
        (sent, 0, 0)
    );
    assert!(agreement >= 0.8, "{shadow:?}");
    assert!(shadow.latency_ms.is_some_and(|l| l.p50 > 0.0), "{shadow:?}");

    let labels = "flotilla_agent_shadow_comparisons_total{model=\"fraud\",version=\"1.0.0\",shadow_version=\"1.1.0\"";
    let agreed = metric(&device, &format!("{labels},outcome=\"agreed\"}}")).await;
    let disagreed = metric(&device, &format!("{labels},outcome=\"disagreed\"}}")).await;
    assert_eq!(
        (agreed, disagreed),
        (shadow.agreed, shadow.compared - shadow.agreed)
    );
    assert_eq!(
        metric(&device, &format!("{labels},outcome=\"error\"}}")).await,
        0
    );

    // The window was taken: the next one starts from zero.
    let next = device.health_window();
    assert!(next.models.is_empty(), "{next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_different_candidate_shows_low_agreement() {
    let device = with_shadow(FRAUD_2_0, "2.0.0").await;
    let sent = send_and_check(&device, &rows(11, ROWS)).await;
    let window = device.health_window();
    let shadow = Device::fraud_health(&window, "1.0.0")
        .shadow
        .expect("shadow figures");
    let agreement = shadow.agreed as f64 / shadow.compared as f64;
    eprintln!("shadow 2.0.0 beside 1.0.0: {shadow:?}, agreement {agreement:.3}");
    assert_eq!((shadow.version.as_str(), shadow.compared), ("2.0.0", sent));
    assert!(agreement <= 0.2, "{shadow:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_finite_candidate_answers_are_errors_not_comparisons() {
    let mut device = Device::start().await;
    let bytes = model_bytes(FRAUD_FAULTY);
    // Its signed sample is harmless, so it passes the smoke test; live rows with feature 0
    // above 0.5 make it answer NaN.
    let calm = SampleTensor {
        name: "features".into(),
        datatype: "FP32".into(),
        shape: vec![1, 8],
        data: vec![json!(0.0); 8],
    };
    let mut shadow = device.shadow(FRAUD_FAULTY, "1.2.0");
    shadow.bundles = vec![Device::bundle(
        &device.publisher,
        &bytes,
        "1.2.0",
        Some(vec![calm]),
    )];
    device
        .apply(vec![ModelSlot {
            shadow: Some(shadow),
            ..device.slot(FRAUD_1_0, "1.0.0")
        }])
        .await;
    assert_eq!(
        device.fraud_status().shadow.unwrap().state,
        SlotState::Active
    );

    let rows = rows(12, ROWS);
    let hot = rows.iter().filter(|r| r[0] > 0.5).count() as u64;
    assert!(hot > 0 && hot < ROWS as u64);
    let sent = send_and_check(&device, &rows).await;
    let window = device.health_window();
    let shadow = Device::fraud_health(&window, "1.0.0").shadow.unwrap();
    eprintln!("faulty shadow: {shadow:?} ({hot} rows with feature 0 > 0.5)");
    // expected.json's two cases: the single row is hot, the batch of six has hot rows too.
    assert_eq!(shadow.errors, hot + 2);
    assert_eq!(shadow.compared, sent - shadow.errors);
    // Elsewhere the faulty model is 1.0.0.
    assert_eq!(shadow.agreed, shadow.compared);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_candidate_fails_alone_and_is_backed_off() {
    let mut device = Device::start().await;
    let active = device.slot(FRAUD_1_0, "1.0.0");
    let with = |shadow| ModelSlot {
        shadow: Some(shadow),
        ..active.clone()
    };
    let case = &expected_model(FRAUD_1_0).cases[1];
    let still_serving = |device: &Device| {
        let status = device.fraud_status();
        assert_eq!(
            (
                status.state,
                status.active_version.as_deref(),
                status.reason
            ),
            (SlotState::Active, Some("1.0.0"), None),
            "the active slot is untouched"
        );
        assert!(device.app.api.registry().shadow_version("fraud").is_none());
    };
    let shadow_reason = |device: &Device| {
        let shadow = device.fraud_status().shadow.expect("a shadow status");
        assert_eq!(shadow.state, SlotState::Failed, "{shadow:?}");
        shadow.reason.unwrap_or_default()
    };

    // 1. Bytes other than the signed digest (one byte flipped, same size).
    let mut swapped = device.shadow(FRAUD_1_1, "1.1.0");
    let mut tampered = model_bytes(FRAUD_1_1);
    tampered[100] ^= 1;
    swapped.url = device.artifacts.put("swapped", tampered);
    device.apply(vec![with(swapped.clone())]).await;
    let reason = shadow_reason(&device);
    assert!(reason.starts_with("artifact_digest_mismatch: "), "{reason}");
    still_serving(&device);
    let (status, response) = device
        .app
        .post("/v2/models/fraud/infer", &infer_body(case, false))
        .await;
    assert_eq!(status, 200);
    assert_eq!(response["model_version"], "1.0.0");
    assert_outputs(&response, case);
    assert_eq!(device.artifacts.downloads("swapped"), 1);

    // The same candidate again: backed off, nothing downloaded, the same reason reported.
    device.apply(vec![with(swapped.clone())]).await;
    assert_eq!(shadow_reason(&device), reason);
    assert_eq!(device.artifacts.downloads("swapped"), 1);
    assert_eq!(device.updater.state().shadow_failures["fraud"].attempts, 1);
    // After the backoff (at most an hour) it is tried again.
    device
        .now
        .fetch_add(3601, std::sync::atomic::Ordering::SeqCst);
    device.apply(vec![with(swapped)]).await;
    assert_eq!(device.artifacts.downloads("swapped"), 2);
    assert_eq!(device.updater.state().shadow_failures["fraud"].attempts, 2);

    // 2. Signed by a key outside the trust root: refused before any download.
    let rogue = SigningKey::generate(&mut rand::rngs::OsRng);
    let mut forged = device.shadow(FRAUD_2_0, "2.0.0");
    forged.bundles = vec![Device::bundle(
        &rogue,
        &model_bytes(FRAUD_2_0),
        "2.0.0",
        None,
    )];
    device.apply(vec![with(forged)]).await;
    let reason = shadow_reason(&device);
    assert!(reason.starts_with("no_trusted_signature: "), "{reason}");
    assert_eq!(device.artifacts.downloads(FRAUD_2_0), 0);
    still_serving(&device);

    // 3. Signed, but as another version than the server names.
    let mut relabelled = device.shadow(FRAUD_1_1, "1.1.0");
    relabelled.version = "1.1.1".into();
    device.apply(vec![with(relabelled)]).await;
    let reason = shadow_reason(&device);
    assert!(reason.starts_with("signed_facts_mismatch: "), "{reason}");

    // 4. A digest that is not one (it would name a file).
    let mut evil = device.shadow(FRAUD_1_1, "1.1.2");
    evil.sha256 = "../../state".into();
    device.apply(vec![with(evil)]).await;
    assert!(shadow_reason(&device).starts_with("invalid_slot: "));

    // 5. A model that fails its signed sample: verified and downloaded, never run.
    let hot = SampleTensor {
        name: "features".into(),
        datatype: "FP32".into(),
        shape: vec![1, 8],
        data: [0.9, 0.1, -0.2, 0.3, 0.0, 0.5, -1.0, 0.25]
            .iter()
            .map(|&v| json!(v))
            .collect(),
    };
    let faulty = model_bytes(FRAUD_FAULTY);
    let mut shadow = device.shadow(FRAUD_FAULTY, "1.2.0");
    shadow.bundles = vec![Device::bundle(
        &device.publisher,
        &faulty,
        "1.2.0",
        Some(vec![hot]),
    )];
    device.apply(vec![with(shadow)]).await;
    let reason = shadow_reason(&device);
    assert!(reason.starts_with("smoke_test_failed: "), "{reason}");
    still_serving(&device);

    // No downgrade rule for a candidate that never answers: an older version may shadow.
    device
        .apply(vec![ModelSlot {
            shadow: Some(device.shadow(FRAUD_1_0, "0.9.0")),
            ..device.slot(FRAUD_1_1, "1.1.0")
        }])
        .await;
    let status = device.fraud_status();
    assert_eq!(status.active_version.as_deref(), Some("1.1.0"));
    assert_eq!(status.shadow.unwrap().state, SlotState::Active);
    assert_eq!(device.updater.state().installed["fraud"].version, "1.1.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promoting_the_candidate_reuses_its_bytes_on_disk() {
    let mut device = with_shadow(FRAUD_1_1, "1.1.0").await;
    assert_eq!(device.artifacts.downloads(FRAUD_1_1), 1);
    let candidate = model_bytes(FRAUD_1_1);
    let file = device.dir().join("models").join(hex_sha(&candidate));
    assert_eq!(std::fs::read(&file).unwrap(), candidate);

    // The next stage: the candidate is the version to run, and no longer a shadow.
    device.apply(vec![device.slot(FRAUD_1_1, "1.1.0")]).await;
    assert_eq!(
        device.artifacts.downloads(FRAUD_1_1),
        1,
        "the bytes on disk were reused"
    );
    let status = device.fraud_status();
    assert_eq!(
        (
            status.state,
            status.active_version.as_deref(),
            status.shadow
        ),
        (SlotState::Active, Some("1.1.0"), None)
    );
    assert!(device.app.api.registry().shadow_version("fraud").is_none());
    assert!(device.updater.state().shadows.is_empty());
    let case = &expected_model(FRAUD_1_1).cases[1];
    let (status, response) = device
        .app
        .post("/v2/models/fraud/infer", &infer_body(case, false))
        .await;
    assert_eq!(status, 200);
    assert_eq!(response["model_version"], "1.1.0");
    assert_outputs(&response, case);
    assert_eq!(device.updater.state().previous["fraud"].version, "1.0.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_candidate_survives_a_restart_and_follows_the_desired_state() {
    let mut device = with_shadow(FRAUD_1_1, "1.1.0").await;
    let registry = |device: &Device| device.app.api.registry().shadow_version("fraud");

    // A restart restores the candidate from disk, checked again, with no download.
    device.restart().await;
    assert_eq!(registry(&device).as_deref(), Some("1.1.0"));
    let shadow = device.fraud_status().shadow.unwrap();
    assert_eq!(
        (shadow.version.as_str(), shadow.state),
        ("1.1.0", SlotState::Active)
    );
    assert_eq!(device.artifacts.downloads(FRAUD_1_1), 1);
    let sent = send_and_check(&device, &rows(13, 3)).await;
    let window = device.health_window();
    assert_eq!(
        Device::fraud_health(&window, "1.0.0")
            .shadow
            .unwrap()
            .compared,
        sent
    );

    // New sampling settings take effect without fetching or reloading anything.
    let mut resampled = device.shadow(FRAUD_1_1, "1.1.0");
    resampled.sample_rate = 0.5;
    let slot = device.slot(FRAUD_1_0, "1.0.0");
    device
        .apply(vec![ModelSlot {
            shadow: Some(resampled),
            ..slot.clone()
        }])
        .await;
    assert_eq!(device.updater.state().shadows["fraud"].sample_rate, 0.5);
    assert_eq!(device.artifacts.downloads(FRAUD_1_1), 1);

    // Another candidate replaces it.
    device
        .apply(vec![ModelSlot {
            shadow: Some(device.shadow(FRAUD_2_0, "2.0.0")),
            ..slot.clone()
        }])
        .await;
    assert_eq!(registry(&device).as_deref(), Some("2.0.0"));
    assert_eq!(device.fraud_status().shadow.unwrap().version, "2.0.0");
    let old = device
        .dir()
        .join("models")
        .join(hex_sha(&model_bytes(FRAUD_1_1)));
    assert!(!old.exists(), "the replaced candidate's file is cleaned up");

    // The desired state drops the shadow: it stops, and its file goes.
    device.apply(vec![slot]).await;
    assert!(registry(&device).is_none());
    assert!(device.fraud_status().shadow.is_none());
    assert!(device.updater.state().shadows.is_empty());
    let dropped = device
        .dir()
        .join("models")
        .join(hex_sha(&model_bytes(FRAUD_2_0)));
    assert!(!dropped.exists());
    // Still serving 1.0.0, whose file stays.
    assert_eq!(
        device.fraud_status().active_version.as_deref(),
        Some("1.0.0")
    );
}
