//! The `flotilla-agent` binary as a device runs it, against a real server: hot-swapping under
//! load through a real deploy, and SIGKILL at random points of many updates.

use flotilla_e2e::{expected_model, free_port, fresh_binary, outputs_match, percentile, Proc};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fleet::Fleet;

/// Starts the agent binary; `enroll` only on its first start.
pub(crate) fn start_agent(
    fleet: &Fleet,
    dir: &Path,
    trust: &Path,
    port: u16,
    enroll: Option<&str>,
) -> Proc {
    start_agent_with(fleet, dir, trust, port, enroll, &[])
}

/// [`start_agent`] with more flags.
pub(crate) fn start_agent_with(
    fleet: &Fleet,
    dir: &Path,
    trust: &Path,
    port: u16,
    enroll: Option<&str>,
    flags: &[&str],
) -> Proc {
    let mut cmd = Command::new(fresh_binary("flotilla-agent", "flotilla-agent"));
    cmd.args(flags);
    cmd.args(["--server", &fleet.base])
        .arg("--state-dir")
        .arg(dir)
        .arg("--trust-root")
        .arg(trust)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--workers", "2", "--poll-wait-secs", "5"])
        .env("RUST_LOG", "warn");
    if let Some(token) = enroll {
        cmd.args(["--enroll-token", token]);
    }
    Proc::spawn(cmd)
}

pub(crate) async fn write_trust_root(fleet: &Fleet, dir: &Path) -> std::path::PathBuf {
    let path = dir.join("trust-root.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&fleet.trust_root().await).unwrap(),
    )
    .unwrap();
    path
}

/// Waits until the agent answers inference for `fraud`, and returns the answering version.
pub(crate) async fn wait_serving(http: &reqwest::Client, port: u16, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let case = &expected_model("fraud-1.0.0.onnx")["cases"][0];
    loop {
        if let Ok(r) = http
            .post(format!("http://127.0.0.1:{port}/v2/models/fraud/infer"))
            .json(&json!({ "inputs": case["inputs"] }))
            .send()
            .await
        {
            if r.status().is_success() {
                let body: Value = r.json().await.unwrap();
                return body["model_version"].as_str().unwrap().to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the agent on port {port} does not serve fraud within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request of the load generator.
struct Sample {
    started: Instant,
    latency_ms: f64,
    ok: bool,
    version: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploying_a_new_version_under_load_fails_no_request() {
    let fleet = Fleet::start().await;
    fleet.publish("fraud-1.0.0.onnx", "1.0.0", Some(1)).await;
    fleet.publish("fraud-1.1.0.onnx", "1.1.0", Some(2)).await;
    fleet.deploy("1.0.0").await;
    let dir = tempfile::tempdir().unwrap();
    let trust = write_trust_root(&fleet, dir.path()).await;
    let port = free_port();
    let token = fleet.enrollment_token().await;
    let _agent = start_agent(
        &fleet,
        &dir.path().join("state"),
        &trust,
        port,
        Some(&token),
    );
    let http = reqwest::Client::new();
    assert_eq!(
        wait_serving(&http, port, Duration::from_secs(60)).await,
        "1.0.0"
    );

    // Answers are checked against onnxruntime's for whichever version served them.
    let case = expected_model("fraud-1.0.0.onnx")["cases"][1].clone();
    let out_v1 = case["outputs"].clone();
    let out_v2 = expected_model("fraud-1.1.0.onnx")["cases"][1]["outputs"].clone();
    assert_eq!(
        case["inputs"],
        expected_model("fraud-1.1.0.onnx")["cases"][1]["inputs"]
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (http, stop, body) = (
            http.clone(),
            stop.clone(),
            json!({ "inputs": case["inputs"] }),
        );
        let url = format!("http://127.0.0.1:{port}/v2/models/fraud/infer");
        let (out_v1, out_v2) = (out_v1.clone(), out_v2.clone());
        load.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                let answer = http.post(&url).json(&body).send().await;
                let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
                let (ok, version) = match answer {
                    Ok(r) if r.status().is_success() => {
                        let v: Value = r.json().await.unwrap();
                        let version = v["model_version"].as_str().unwrap().to_owned();
                        let want = if version == "1.0.0" { &out_v1 } else { &out_v2 };
                        (outputs_match(want, &v["outputs"]).is_ok(), Some(version))
                    }
                    _ => (false, None),
                };
                samples.push(Sample {
                    started,
                    latency_ms,
                    ok,
                    version,
                });
            }
            samples
        }));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deployed = Instant::now();
    fleet.deploy("1.1.0").await;
    // Keep the load on until the new version has answered for a while.
    let swapped = loop {
        if wait_serving(&http, port, Duration::from_secs(60)).await == "1.1.0" {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut samples = Vec::new();
    for task in load {
        samples.extend(task.await.unwrap());
    }

    let failed = samples.iter().filter(|s| !s.ok).count();
    let mut before: Vec<f64> = samples
        .iter()
        .filter(|s| s.started < deployed)
        .map(|s| s.latency_ms)
        .collect();
    // "During": from the deploy call until half a second after the new version first answered.
    let mut during: Vec<f64> = samples
        .iter()
        .filter(|s| s.started >= deployed && s.started <= swapped + Duration::from_millis(500))
        .map(|s| s.latency_ms)
        .collect();
    let on_new = samples
        .iter()
        .filter(|s| s.version.as_deref() == Some("1.1.0"))
        .count();
    eprintln!(
        "hot swap through a deploy: {} requests ({} before, {} during, {} on 1.1.0), {failed} failed; \
         p99 before {:.2} ms, during {:.2} ms; swap took {:.0} ms after the deploy call",
        samples.len(),
        before.len(),
        during.len(),
        on_new,
        percentile(&mut before, 99.0),
        percentile(&mut during, 99.0),
        (swapped - deployed).as_secs_f64() * 1000.0
    );
    assert_eq!(
        failed, 0,
        "requests failed or answered wrongly during the swap"
    );
    assert!(!before.is_empty() && !during.is_empty() && on_new > 0);
    assert!(samples
        .iter()
        .filter(|s| s.started > swapped + Duration::from_millis(100))
        .all(|s| s.version.as_deref() == Some("1.1.0")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_of_50_updates_never_leaves_it_unable_to_serve() {
    const UPDATES: u64 = 50;
    let fleet = Fleet::start().await;
    // Fifty releases alternating between two real models, so every update swaps bytes.
    for k in 1..=UPDATES {
        let file = if k % 2 == 1 {
            "fraud-1.0.0.onnx"
        } else {
            "fraud-1.1.0.onnx"
        };
        fleet.publish(file, &format!("1.0.{k}"), Some(k)).await;
    }
    let answers = |version: &str| {
        let k: u64 = version.rsplit('.').next().unwrap().parse().unwrap();
        let file = if k % 2 == 1 {
            "fraud-1.0.0.onnx"
        } else {
            "fraud-1.1.0.onnx"
        };
        expected_model(file)["cases"][0]["outputs"].clone()
    };
    fleet.deploy("1.0.1").await;
    let dir = tempfile::tempdir().unwrap();
    let trust = write_trust_root(&fleet, dir.path()).await;
    let state = dir.path().join("state");
    let port = free_port();
    let token = fleet.enrollment_token().await;
    let http = reqwest::Client::new();
    let mut agent = start_agent(&fleet, &state, &trust, port, Some(&token));
    wait_serving(&http, port, Duration::from_secs(60)).await;

    let case = expected_model("fraud-1.0.0.onnx")["cases"][0].clone();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let mut newest_seen = 1u64;
    for k in 2..=UPDATES {
        fleet.deploy(&format!("1.0.{k}")).await;
        // A random point of the update: polling, downloading, verifying, loading, persisting.
        let delay = rng.gen_range(0..150);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        agent.child.kill().unwrap();
        agent.child.wait().unwrap();

        agent = start_agent(&fleet, &state, &trust, port, None);
        let version = wait_serving(&http, port, Duration::from_secs(30)).await;
        let served: u64 = version.rsplit('.').next().unwrap().parse().unwrap();
        assert!(
            served >= newest_seen && served <= k,
            "after the kill in update {k} (at {delay} ms) it serves {version}"
        );
        newest_seen = newest_seen.max(served);
        // What it serves answers correctly for the bytes of that version.
        let answer: Value = http
            .post(format!("http://127.0.0.1:{port}/v2/models/fraud/infer"))
            .json(&json!({ "inputs": case["inputs"] }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let v = answer["model_version"].as_str().unwrap();
        outputs_match(&answers(v), &answer["outputs"])
            .unwrap_or_else(|e| panic!("update {k}, serving {v}: {e}"));
    }
    // Left alone, it converges on the last release.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = wait_serving(&http, port, Duration::from_secs(30)).await;
        if v == format!("1.0.{UPDATES}") {
            break;
        }
        assert!(Instant::now() < deadline, "stuck on {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing half-downloaded is left behind once it has converged.
    let partial = state.join("partial");
    let leftovers = std::fs::read_dir(&partial).map_or(0, |d| d.count());
    assert_eq!(
        leftovers,
        0,
        "{} holds partial downloads",
        partial.display()
    );
}
