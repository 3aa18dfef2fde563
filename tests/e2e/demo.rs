//! The README's first command, run as a user would: `flotilla-demo` must bring up agents that
//! answer the sample model's recorded inputs exactly as onnxruntime does.

use flotilla_e2e::{expected_model, fresh_binary, outputs_match, Proc};
use serde_json::{json, Value};
use std::process::Command;
use std::time::Duration;

#[test]
fn the_demo_fleet_serves_the_signed_model_correctly() {
    let data = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(fresh_binary("flotilla-demo", "flotilla-demo"));
    cmd.arg("--data-dir").arg(data.path().join("demo")).args([
        "--listen",
        "127.0.0.1:0",
        "--agent-port",
        "0",
        "--agents",
        "3",
    ]);
    let mut demo = Proc::spawn(cmd);
    demo.wait_for_line("Ctrl-C stops", Duration::from_secs(240));
    let agents: Vec<String> = demo
        .drain()
        .iter()
        .filter(|l| l.trim_start().starts_with("demo-"))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect();
    assert_eq!(agents.len(), 3, "agent lines in {:?}", demo.seen);
    // The last agent runs the hybrid policy; the others serve on the edge alone.
    let (edge_agents, hybrid) = agents.split_at(2);

    let http = reqwest::blocking::Client::new();
    let model = expected_model("fraud-1.0.0.onnx");
    // Server-based: the server answers with the inference-only token the demo printed.
    let token = demo
        .seen
        .iter()
        .find_map(|l| l.split("authorization: Bearer ").nth(1))
        .and_then(|rest| rest.split('\'').next())
        .unwrap_or_else(|| panic!("no inference token in {:?}", demo.seen))
        .to_owned();
    let server = demo
        .seen
        .iter()
        .find_map(|l| l.trim_start().strip_prefix("[1/6] server"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_owned();
    for case in expected_model("fraud-1.1.0.onnx")["cases"]
        .as_array()
        .unwrap()
    {
        let answer: Value = http
            .post(format!("{server}/v2/models/fraud/versions/1.1.0/infer"))
            .bearer_auth(&token)
            .json(&json!({ "inputs": case["inputs"] }))
            .send()
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(answer["parameters"]["flotilla_served_by"], "server");
        outputs_match(&case["outputs"], &answer["outputs"]).unwrap();
    }
    // Hybrid: unsure rows come back from the server's 1.1.0, the others from the device.
    let mut by = std::collections::BTreeMap::<String, usize>::new();
    for (request, local, remote) in crate::hybrid::rows() {
        let answer: Value = http
            .post(format!("{}/v2/models/fraud/infer", hybrid[0]))
            .json(&request)
            .send()
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .unwrap();
        let served_by = answer["parameters"]["flotilla_served_by"]
            .as_str()
            .unwrap()
            .to_owned();
        let unsure = crate::hybrid::confidence(&local) < crate::hybrid::THRESHOLD;
        assert_eq!(
            served_by,
            if unsure { "server" } else { "edge" },
            "{answer}"
        );
        outputs_match(if unsure { &remote } else { &local }, &answer["outputs"]).unwrap();
        *by.entry(served_by).or_default() += 1;
    }
    assert!(by.len() == 2, "both paths used: {by:?}");

    for agent in edge_agents {
        for case in model["cases"].as_array().unwrap() {
            let answer: Value = http
                .post(format!("{agent}/v2/models/fraud/infer"))
                .json(&json!({ "inputs": case["inputs"] }))
                .send()
                .unwrap()
                .error_for_status()
                .unwrap()
                .json()
                .unwrap();
            assert_eq!(answer["model_version"], "1.0.0");
            outputs_match(&case["outputs"], &answer["outputs"])
                .unwrap_or_else(|e| panic!("{agent}: {e}"));
        }
        // The agent binary's Prometheus endpoint counts what it served.
        let metrics = http
            .get(format!("{agent}/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let served = metrics
            .lines()
            .find(|l| {
                l.starts_with("flotilla_agent_inferences_total{") && l.contains("model=\"fraud\"")
            })
            .unwrap_or_else(|| panic!("no inference counter in {metrics}"));
        let count: f64 = served.rsplit(' ').next().unwrap().parse().unwrap();
        // The demo's own check plus ours.
        assert!(
            count >= 2.0 * model["cases"].as_array().unwrap().len() as f64,
            "{served}"
        );
    }
    // The publisher key the demo made is private.
    let mode = std::fs::metadata(data.path().join("demo/publisher.key"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    // Ctrl-C/SIGTERM stops the server and takes the agents down with it.
    assert_eq!(demo.terminate(Duration::from_secs(20)), Some(0));
    std::thread::sleep(Duration::from_millis(500));
    for agent in &agents {
        let gone = (0..40).any(|_| {
            let down = http
                .get(format!("{agent}/v2/health/live"))
                .timeout(Duration::from_secs(1))
                .send()
                .is_err();
            if !down {
                std::thread::sleep(Duration::from_millis(250));
            }
            down
        });
        assert!(gone, "{agent} still answers after the demo stopped");
    }
}
