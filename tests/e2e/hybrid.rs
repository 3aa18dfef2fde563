//! Hybrid inference end to end: a real server, the agent binary with an escalation policy.
//! Exactly the inputs the device is unsure about go to the server's model (counted by the agent
//! and by the server), and with the server gone the device still answers every request.

use flotilla_e2e::{expected_model, free_port, outputs_match, Proc};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use crate::agent_process::{start_agent_with, wait_serving, write_trust_root};
use crate::fleet::Fleet;

/// Threshold between the sample rows' confidences under fraud 1.0.0 (none is within 0.01).
pub(crate) const THRESHOLD: f64 = 0.72;

/// Every recorded row of the fraud model as a one-row request, with 1.0.0's (the device's) and
/// 1.1.0's (the server's) answers.
pub(crate) fn rows() -> Vec<(Value, Value, Value)> {
    let local = expected_model("fraud-1.0.0.onnx");
    let server = expected_model("fraud-1.1.0.onnx");
    let mut rows = Vec::new();
    for (lc, sc) in local["cases"]
        .as_array()
        .unwrap()
        .iter()
        .zip(server["cases"].as_array().unwrap())
    {
        assert_eq!(lc["inputs"], sc["inputs"]);
        let features = lc["inputs"][0]["data"].as_array().unwrap();
        let lo = lc["outputs"][0]["data"].as_array().unwrap();
        let so = sc["outputs"][0]["data"].as_array().unwrap();
        for i in 0..features.len() / 8 {
            let request = json!({"inputs": [{"name": "features", "datatype": "FP32",
                "shape": [1, 8], "data": features[i * 8..i * 8 + 8]}]});
            let one = |o: &[Value]| {
                json!([{"name": "probabilities", "datatype": "FP32", "shape": [1, 2],
                        "data": o[i * 2..i * 2 + 2]}])
            };
            rows.push((request, one(lo), one(so)));
        }
    }
    rows
}

pub(crate) fn confidence(outputs: &Value) -> f64 {
    outputs[0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .fold(f64::MIN, f64::max)
}

/// The agent's answer to one request (which must succeed).
async fn infer_one(http: &reqwest::Client, url: &str, request: &Value) -> Value {
    http.post(url)
        .json(request)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Deploys fraud 1.0.0 to `site=a` with a policy that escalates below `threshold` to the
/// server's 1.1.0, and starts an agent (with `flags`) serving it: its directory, process, port.
async fn serving_with_escalation(
    fleet: &Fleet,
    threshold: f64,
    flags: &[&str],
) -> (tempfile::TempDir, Proc, u16) {
    fleet
        .call(
            "PUT",
            "/api/v1/deployments",
            json!({"model": "fraud", "version": "1.0.0", "selector": "site=a",
                   "escalation": {"output": "probabilities", "threshold": threshold,
                                  "server_model": "fraud", "server_version": "1.1.0",
                                  "timeout_ms": 5000}}),
            201,
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let trust = write_trust_root(fleet, dir.path()).await;
    let port = free_port();
    let token = fleet.enrollment_token().await;
    let agent = start_agent_with(
        fleet,
        &dir.path().join("state"),
        &trust,
        port,
        Some(&token),
        flags,
    );
    wait_serving(&reqwest::Client::new(), port, Duration::from_secs(60)).await;
    (dir, agent, port)
}

/// How many inferences the server's placement report counts for fraud@`version` on the
/// server, with the report itself.
async fn served_by_server(http: &reqwest::Client, fleet: &Fleet, version: &str) -> (u64, Value) {
    let placement: Value = http
        .get(format!("{}/api/v1/placement?model=fraud", fleet.base))
        .bearer_auth(&fleet.admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let served = placement["server"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["version"] == version)
        .map_or(0, |r| r["inferences"].as_u64().unwrap());
    (served, placement)
}

async fn metric(http: &reqwest::Client, url: &str, line_start: &str) -> f64 {
    let text = http.get(url).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_unsure_inputs_reach_the_server_and_its_absence_costs_no_answer() {
    let fleet = Fleet::start().await;
    fleet.publish("fraud-1.0.0.onnx", "1.0.0", Some(1)).await;
    fleet.publish("fraud-1.1.0.onnx", "1.1.0", Some(2)).await;
    let (_dir, _agent, port) = serving_with_escalation(&fleet, THRESHOLD, &[]).await;
    let http = reqwest::Client::new();
    // The policy arrives with the same desired state as the model, but make sure before
    // counting: an unsure row must come back from the server.
    let rows = rows();
    let unsure: Vec<bool> = rows.iter().map(|r| confidence(&r.1) < THRESHOLD).collect();
    let expected_escalations = unsure.iter().filter(|&&u| u).count();
    assert!(expected_escalations > 0 && expected_escalations < rows.len());
    let infer = format!("http://127.0.0.1:{port}/v2/models/fraud/infer");
    let agent_metrics = format!("http://127.0.0.1:{port}/metrics");
    let before = metric(
        &http,
        &agent_metrics,
        "flotilla_agent_escalations_total{model=\"fraud\",version=\"1.0.0\",outcome=\"answered\"}",
    )
    .await;
    assert_eq!(before, 0.0);

    for ((request, local, server), unsure) in rows.iter().zip(&unsure) {
        let answer = infer_one(&http, &infer, request).await;
        let served_by = answer["parameters"]["flotilla_served_by"].as_str().unwrap();
        if *unsure {
            assert_eq!(served_by, "server", "{answer}");
            assert_eq!(answer["model_version"], "1.1.0");
            outputs_match(server, &answer["outputs"]).unwrap();
        } else {
            assert_eq!(served_by, "edge", "{answer}");
            assert_eq!(answer["model_version"], "1.0.0");
            outputs_match(local, &answer["outputs"]).unwrap();
        }
    }
    // Counted on the device ...
    let answered = metric(
        &http,
        &agent_metrics,
        "flotilla_agent_escalations_total{model=\"fraud\",version=\"1.0.0\",outcome=\"answered\"}",
    )
    .await;
    assert_eq!(answered, expected_escalations as f64);
    // ... and on the server, which served 1.1.0 exactly that often.
    let (served, placement) = served_by_server(&http, &fleet, "1.1.0").await;
    assert_eq!(served, expected_escalations as u64, "{placement}");

    // The device reports its escalations in its health window (the latest one is shown).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let devices = fleet.call("GET", "/api/v1/devices", Value::Null, 200).await;
        let health = &devices["devices"][0]["health"];
        let reported = health["models"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["model"] == "fraud"))
            .map_or(0, |m| m["escalations"].as_u64().unwrap_or(0));
        if reported > 0 {
            // A report may fall between two requests and split them over two windows.
            assert!(reported <= expected_escalations as u64, "{health}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no escalations reported: {devices}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The server goes away: every request is still answered, by the device.
    fleet.stop().await;
    for ((request, local, _), unsure) in rows.iter().zip(&unsure) {
        let answer = infer_one(&http, &infer, request).await;
        let served_by = answer["parameters"]["flotilla_served_by"].as_str().unwrap();
        assert_eq!(
            served_by,
            if *unsure { "edge_fallback" } else { "edge" },
            "{answer}"
        );
        assert_eq!(answer["model_version"], "1.0.0");
        outputs_match(local, &answer["outputs"]).unwrap();
    }
    let fallbacks = metric(
        &http,
        &agent_metrics,
        "flotilla_agent_escalations_total{model=\"fraud\",version=\"1.0.0\",outcome=\"fallback\"}",
    )
    .await;
    assert_eq!(fallbacks, expected_escalations as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_provisioned_without_escalation_never_sends_an_input() {
    let fleet = Fleet::start().await;
    fleet.publish("fraud-1.0.0.onnx", "1.0.0", Some(1)).await;
    fleet.publish("fraud-1.1.0.onnx", "1.1.0", Some(2)).await;
    // No confidence is above 1: the server refuses a policy that would escalate everything
    // whatever the model says (agents ignore one, too).
    let refused = fleet
        .call(
            "PUT",
            "/api/v1/deployments",
            json!({"model": "fraud", "version": "1.0.0", "selector": "site=a",
                   "escalation": {"output": "probabilities", "threshold": 1e300,
                                  "server_model": "fraud", "timeout_ms": 5000}}),
            400,
        )
        .await;
    assert_eq!(refused["error"]["code"], "invalid_argument", "{refused}");
    // The server signs a policy that would send every input out (no row is that sure).
    let (_dir, _agent, port) = serving_with_escalation(&fleet, 1.0, &["--no-escalation"]).await;
    let http = reqwest::Client::new();
    let infer = format!("http://127.0.0.1:{port}/v2/models/fraud/infer");
    for (request, local, _) in rows() {
        let answer = infer_one(&http, &infer, &request).await;
        assert_eq!(
            answer["parameters"]["flotilla_served_by"], "edge",
            "{answer}"
        );
        outputs_match(&local, &answer["outputs"]).unwrap();
    }
    let (served, placement) = served_by_server(&http, &fleet, "1.1.0").await;
    assert_eq!(served, 0, "the server answered for the device: {placement}");
}
