//! Server-side inference against the edge: the same published model, asked through the
//! server's `/v2` and through the real agent binary's local API, answers the same.

use flotilla_e2e::{expected_model, free_port, outputs_match};
use serde_json::{json, Value};

use crate::agent_process::{start_agent, wait_serving, write_trust_root};
use crate::fleet::Fleet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_and_an_agent_answer_alike_and_as_onnxruntime_does() {
    let fleet = Fleet::start().await;
    fleet.publish("fraud-1.0.0.onnx", "1.0.0", Some(1)).await;
    fleet.deploy("1.0.0").await;
    let token = fleet
        .call(
            "POST",
            "/api/v1/tokens",
            json!({"name": "scoring-app", "role": "inference"}),
            201,
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let dir = tempfile::tempdir().unwrap();
    let trust = write_trust_root(&fleet, dir.path()).await;
    let port = free_port();
    let enroll = fleet.enrollment_token().await;
    let _agent = start_agent(
        &fleet,
        &dir.path().join("state"),
        &trust,
        port,
        Some(&enroll),
    );
    let http = reqwest::Client::new();
    assert_eq!(
        wait_serving(&http, port, std::time::Duration::from_secs(60)).await,
        "1.0.0"
    );

    let expected = expected_model("fraud-1.0.0.onnx");
    let cases = expected["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for (index, case) in cases.iter().enumerate() {
        let body = json!({"id": format!("case-{index}"), "inputs": case["inputs"]});
        let ask = |url: String, credential: Option<String>| {
            let (http, body) = (http.clone(), body.clone());
            async move {
                let mut request = http.post(url).json(&body);
                if let Some(credential) = credential {
                    request = request.bearer_auth(credential);
                }
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 200);
                response.json::<Value>().await.unwrap()
            }
        };
        let edge = ask(
            format!("http://127.0.0.1:{port}/v2/models/fraud/infer"),
            None,
        )
        .await;
        let pinned = ask(
            format!("{}/v2/models/fraud/versions/1.0.0/infer", fleet.base),
            Some(token.clone()),
        )
        .await;
        // The deployment targets `site=a` only, so the baseline is the newest version.
        let baseline = ask(
            format!("{}/v2/models/fraud/infer", fleet.base),
            Some(token.clone()),
        )
        .await;

        assert_eq!(edge["parameters"]["flotilla_served_by"], "edge");
        for server in [&pinned, &baseline] {
            assert_eq!(server["parameters"]["flotilla_served_by"], "server");
            assert_eq!(server["model_version"], edge["model_version"]);
            assert_eq!(server["id"], format!("case-{index}"));
            outputs_match(&edge["outputs"], &server["outputs"])
                .unwrap_or_else(|e| panic!("case {index}: the server differs from the agent: {e}"));
            outputs_match(&case["outputs"], &server["outputs"])
                .unwrap_or_else(|e| panic!("case {index}, server: {e}"));
        }
        outputs_match(&case["outputs"], &edge["outputs"])
            .unwrap_or_else(|e| panic!("case {index}, agent: {e}"));
    }
}
