//! Staged rollouts end to end. Real `flotilla-agent` processes under inference load move through
//! 10% → 50% → 100%; a candidate that fails on some inputs is rolled back after its first stage;
//! and on Postgres, killing the replica that leads the rollout engine loses nothing.

use flotilla_e2e::{free_port, fresh_binary, fresh_postgres_database, Proc};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::agent_process::{start_agent, wait_serving, write_trust_root};
use crate::fleet::Fleet;

const AGENTS: usize = 10;

struct Agents {
    _procs: Vec<Proc>,
    ports: Vec<u16>,
    _dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    /// How many load requests each version answered.
    answered: Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>,
}

impl Drop for Agents {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `n` agent processes serving fraud 1.0.0, each answering a steady trickle of random one-row
/// requests (feature 0 is above 0.5, which makes the faulty model answer NaN, in 3 of 8).
async fn fleet_of_agents(fleet: &Fleet, n: usize) -> Agents {
    let dir = tempfile::tempdir().unwrap();
    let trust = write_trust_root(fleet, dir.path()).await;
    let http = reqwest::Client::new();
    let mut procs = Vec::new();
    let mut ports = Vec::new();
    for i in 0..n {
        let state = dir.path().join(format!("agent-{i}"));
        std::fs::create_dir_all(&state).unwrap();
        let port = free_port();
        let token = fleet.enrollment_token().await;
        procs.push(start_agent(fleet, &state, &trust, port, Some(&token)));
        ports.push(port);
    }
    for &port in &ports {
        assert_eq!(
            wait_serving(&http, port, Duration::from_secs(60)).await,
            "1.0.0"
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    for &port in &ports {
        let (http, stop, answered) = (http.clone(), stop.clone(), answered.clone());
        tokio::spawn(async move {
            // One-row requests drawn as models/generate.py draws the rows it checks the sample
            // models' properties on: 8 features uniform on [-2, 2) in steps of 1/256.
            let mut rng = rand::rngs::StdRng::seed_from_u64(u64::from(port));
            while !stop.load(Ordering::Relaxed) {
                let row: Vec<f32> = (0..8)
                    .map(|_| rng.gen_range(-512i32..512) as f32 / 256.0)
                    .collect();
                let res = http
                    .post(format!("http://127.0.0.1:{port}/v2/models/fraud/infer"))
                    .json(&json!({ "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 8], "data": row}] }))
                    .send()
                    .await;
                if let Ok(body) = match res {
                    Ok(r) => r.json::<Value>().await,
                    Err(e) => Err(e),
                } {
                    if let Some(v) = body["model_version"].as_str() {
                        *answered.lock().unwrap().entry(v.to_owned()).or_insert(0) += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        });
    }
    Agents {
        _procs: procs,
        ports,
        _dir: dir,
        stop,
        answered,
    }
}

/// The version each agent answers with now.
async fn serving(agents: &Agents) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for &port in &agents.ports {
        out.push(wait_serving(&http, port, Duration::from_secs(30)).await);
    }
    out
}

async fn wait_state(fleet: &Fleet, id: &str, want: &[&str], within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let r = fleet
            .call("GET", &format!("/api/v1/rollouts/{id}"), Value::Null, 200)
            .await;
        if want.contains(&r["state"].as_str().unwrap()) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "rollout not {want:?} within {within:?}: {r:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn policy(stages: &[u32]) -> Value {
    let gates = json!({"max_error_rate": 0.02, "max_failed_ratio": 0.0});
    json!({
        "stages": stages.iter().map(|p| json!({"percent": p, "bake_secs": 8, "gates": gates})).collect::<Vec<_>>(),
        "on_failure": "rollback",
        "activation_deadline_secs": 60,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_move_stage_by_stage_and_a_faulty_candidate_is_rolled_back() {
    let fleet = Fleet::start_with(|s| s.rollout_tick_ms = 250).await;
    fleet.publish("fraud-1.0.0.onnx", "1.0.0", Some(1)).await;
    fleet.publish("fraud-1.1.0.onnx", "1.1.0", Some(2)).await;
    // The faulty model passes its smoke test (its signed sample has feature 0 ≤ 0.5).
    fleet
        .publish("fraud-1.2.0-faulty.onnx", "1.2.0", Some(3))
        .await;
    fleet.deploy("1.0.0").await;
    let agents = fleet_of_agents(&fleet, AGENTS).await;

    // A good candidate goes 10% → 50% → 100% and becomes the deployment.
    let r = fleet
        .call(
            "POST",
            "/api/v1/rollouts",
            json!({"model": "fraud", "version": "1.1.0", "selector": "site=a", "policy": policy(&[10, 50, 100])}),
            201,
        )
        .await;
    let id = r["id"].as_str().unwrap().to_owned();
    let done = wait_state(
        &fleet,
        &id,
        &["completed", "rolled_back", "paused"],
        Duration::from_secs(180),
    )
    .await;
    assert_eq!(done["state"], "completed", "{done:#}");
    let events: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["created", "advanced", "advanced", "completed"]);
    // Each stage advanced on real figures: the second and third with inferences on 1.1.0 and
    // no errors.
    for e in &done["history"].as_array().unwrap()[1..] {
        let gate = e["numbers"]["gates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["gate"] == "max_error_rate")
            .unwrap();
        assert_eq!(gate["status"], "pass", "{e:#}");
    }
    assert!(serving(&agents).await.iter().all(|v| v == "1.1.0"));

    // A candidate that answers NaN on about half the inputs is rolled back after its first
    // stage, and every device returns to 1.1.0. The first stage must hold a device: 10% of 10
    // can be none, and then the rollout is aborted and started again.
    let (id, first) = loop {
        let r = fleet
            .call(
                "POST",
                "/api/v1/rollouts",
                json!({"model": "fraud", "version": "1.2.0", "selector": "site=a", "policy": policy(&[10, 50, 100])}),
                201,
            )
            .await;
        let id = r["id"].as_str().unwrap().to_owned();
        let in_stage = r["devices"]["in_stage"].as_u64().unwrap();
        if in_stage > 0 {
            break (id, in_stage);
        }
        fleet
            .call(
                "POST",
                &format!("/api/v1/rollouts/{id}/abort"),
                json!({"reason": "empty first stage"}),
                200,
            )
            .await;
    };
    let done = wait_state(
        &fleet,
        &id,
        &["completed", "rolled_back", "paused"],
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(done["state"], "rolled_back", "{done:#}");
    assert_eq!(done["stage"], 0, "stopped in its first stage");
    let reason = done["reason"].as_str().unwrap();
    assert!(reason.contains("max_error_rate"), "{reason}");
    let last = done["history"].as_array().unwrap().last().unwrap();
    assert_eq!(last["event"], "rolled_back");
    assert_eq!(last["numbers"]["devices"]["in_stage"], first);
    // Every agent is back on the previous version (give the rolled-back ones a poll cycle).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = serving(&agents).await;
        if now.iter().all(|v| v == "1.1.0") {
            break;
        }
        assert!(Instant::now() < deadline, "agents still serve {now:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_stage_reports_agreement_and_stops_a_disagreeing_candidate() {
    let fleet = Fleet::start_with(|s| s.rollout_tick_ms = 250).await;
    fleet.publish("fraud-1.0.0.onnx", "1.0.0", Some(1)).await;
    fleet.publish("fraud-1.1.0.onnx", "1.1.0", Some(2)).await;
    fleet
        .publish("fraud-2.0.0-disagree.onnx", "2.0.0", Some(3))
        .await;
    fleet.deploy("1.0.0").await;
    let agents = fleet_of_agents(&fleet, 4).await;
    let policy = json!({"stages": [
        {"percent": 100, "shadow": true, "bake_secs": 8, "gates": {"min_shadow_agreement": 0.8, "min_devices_reporting": 4}},
        {"percent": 100, "bake_secs": 0}]});

    // A candidate that disagrees with 1.0.0 runs beside it, is measured, and is stopped.
    let done = run_rollout(&fleet, "2.0.0", &policy).await;
    assert_eq!(done["state"], "rolled_back", "{done:#}");
    let last = done["history"].as_array().unwrap().last().unwrap();
    let agreement_gate = gate(last, "min_shadow_agreement");
    let agreement = agreement_gate["value"].as_f64().unwrap();
    assert!(
        agreement < 0.5,
        "2.0.0 disagrees with 1.0.0 on most inputs: {agreement_gate}"
    );
    assert_eq!(last["numbers"]["devices"]["reporting"], 4, "{last:#}");
    // It never answered a request: every answer of the whole run came from 1.0.0.
    let answered = agents.answered.lock().unwrap().clone();
    assert_eq!(
        answered.keys().collect::<Vec<_>>(),
        ["1.0.0"],
        "{answered:?}"
    );
    assert!(answered["1.0.0"] > 100, "{answered:?}");

    // A candidate that agrees passes its shadow stage and then goes live.
    let done = run_rollout(&fleet, "1.1.0", &policy).await;
    assert_eq!(done["state"], "completed", "{done:#}");
    let gate = gate(&done["history"][1], "min_shadow_agreement");
    assert!(
        gate["value"].as_f64().unwrap() >= 0.85,
        "1.1.0 agrees on most rows: {gate}"
    );
    assert!(serving(&agents).await.iter().all(|v| v == "1.1.0"));
}

/// Creates a rollout of `fraud` `version` to `site=a` and waits until it completes, is rolled
/// back or pauses; returns the rollout as `GET /api/v1/rollouts/{id}` shows it then.
async fn run_rollout(fleet: &Fleet, version: &str, policy: &Value) -> Value {
    let r = fleet
        .call(
            "POST",
            "/api/v1/rollouts",
            json!({"model": "fraud", "version": version, "selector": "site=a", "policy": policy}),
            201,
        )
        .await;
    let id = r["id"].as_str().unwrap().to_owned();
    wait_state(
        fleet,
        &id,
        &["completed", "rolled_back", "paused"],
        Duration::from_secs(120),
    )
    .await
}

/// The gate named `name` among the numbers a transition recorded.
fn gate<'a>(transition: &'a Value, name: &str) -> &'a Value {
    transition["numbers"]["gates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == name)
        .unwrap_or_else(|| panic!("no gate {name} in {transition:#}"))
}

/// A server replica on a shared Postgres database, logging its leadership changes.
fn replica(db: &str, port: u16, dir: &std::path::Path) -> Proc {
    let mut cmd = Command::new(fresh_binary("flotilla-server", "flotilla-server"));
    cmd.current_dir(dir)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("FLOTILLA_DATABASE_URL", db)
        .env("FLOTILLA_BOOTSTRAP_TOKEN", TOKEN)
        .env("FLOTILLA_ROLLOUT_TICK_MS", "200")
        .env("FLOTILLA_POLL_INTERVAL_SECS", "1")
        .env_remove("FLOTILLA_DATA_DIR")
        .env("RUST_LOG", "warn,flotilla_server::rollout_engine=info");
    Proc::spawn(cmd)
}

const TOKEN: &str = "e2e-failover-token-0123456789";

struct Sim {
    http: reqwest::Client,
    devices: Vec<(String, String)>,
    seq: u64,
}

impl Sim {
    /// Every simulated device fetches its desired state from `base` and reports the version it
    /// was told as active, with healthy figures.
    async fn report(&mut self, base: &str) {
        self.seq += 1;
        for (id, cred) in &self.devices {
            let res = self
                .http
                .get(format!("{base}/api/v1/agent/desired-state"))
                .bearer_auth(cred)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "device {id}");
            let env: Value = res.json().await.unwrap();
            use base64::Engine as _;
            let payload = base64::engine::general_purpose::STANDARD
                .decode(env["payload"].as_str().unwrap())
                .unwrap();
            let state: Value = serde_json::from_slice(&payload).unwrap();
            let version = state["slots"][0]["version"].as_str().unwrap().to_owned();
            let now = chrono::Utc::now().timestamp();
            let res = self
                .http
                .post(format!("{base}/api/v1/agent/report"))
                .bearer_auth(cred)
                .json(&json!({"report_seq": self.seq, "created_at": now, "applied_sequence": state["sequence"],
                    "slots": [{"model": "fraud", "version": version, "state": "active", "active_version": version}],
                    "health": {"start": now - 1, "end": now, "models": [{"model": "fraud", "version": version,
                        "inference_count": 50, "error_count": 0, "latency_ms": {"p50": 0.3, "p95": 0.8, "p99": 1.0}}]}}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
    }
}

async fn call(http: &reqwest::Client, method: reqwest::Method, url: String, body: Value) -> Value {
    let res = http
        .request(method, &url)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{url}: {}", res.status());
    res.json().await.unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leading_replica_loses_no_rollout_progress() {
    let db = fresh_postgres_database();
    let dir = tempfile::tempdir().unwrap();
    let ports = [free_port(), free_port(), free_port()];
    let mut replicas: Vec<Option<Proc>> = ports
        .iter()
        .map(|&p| Some(replica(&db, p, dir.path())))
        .collect();
    // Replicas migrate the same database at once; each must come up.
    for r in replicas.iter_mut().flatten() {
        r.wait_for_line("listening on", Duration::from_secs(60));
    }
    let base = |i: usize| format!("http://127.0.0.1:{}", ports[i]);
    let http = reqwest::Client::new();

    // Publish fraud 1.0.0 and 1.1.0 through replica 0, deploy 1.0.0, enroll 6 devices.
    let fleet = Fleet::attach(&base(0), TOKEN).await;
    fleet.publish("fraud-1.0.0.onnx", "1.0.0", Some(1)).await;
    fleet.publish("fraud-1.1.0.onnx", "1.1.0", Some(2)).await;
    fleet.deploy("1.0.0").await;
    let mut sim = Sim {
        http: http.clone(),
        devices: Vec::new(),
        seq: 0,
    };
    for _ in 0..6 {
        let token = fleet.enrollment_token().await;
        let key = flotilla_protocol::signing::SigningKey::generate(&mut rand::rngs::OsRng);
        let raw = key.public_key().to_der();
        use base64::Engine as _;
        let public = base64::engine::general_purpose::STANDARD.encode(&raw[raw.len() - 32..]);
        let v = call(
            &http,
            reqwest::Method::POST,
            format!("{}/api/v1/enroll", base(1)),
            json!({"enrollment_token": token, "device_public_key": public}),
        )
        .await;
        sim.devices.push((
            v["device_id"].as_str().unwrap().to_owned(),
            v["credential"].as_str().unwrap().to_owned(),
        ));
    }

    let stages = json!({"stages": [{"devices": 2, "bake_secs": 1}, {"devices": 4, "bake_secs": 1}, {"devices": 6, "bake_secs": 1}],
        "activation_deadline_secs": 120});
    let r = call(
        &http,
        reqwest::Method::POST,
        format!("{}/api/v1/rollouts", base(2)),
        json!({"model": "fraud", "version": "1.1.0", "selector": "site=a", "policy": stages}),
    )
    .await;
    let id = r["id"].as_str().unwrap().to_owned();

    // Exactly one replica leads.
    let leader = wait_leader(&mut replicas, &[0, 1, 2]);
    let others: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let alive = others[0];

    // Stage 1 passes on the leader.
    let show = |i: usize| {
        let http = http.clone();
        let url = format!("{}/api/v1/rollouts/{id}", base(i));
        async move { call(&http, reqwest::Method::GET, url, Value::Null).await }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while show(alive).await["stage"] != 1 {
        assert!(Instant::now() < deadline, "stage 1 never passed");
        sim.report(&base(alive)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Kill the leader outright, mid-rollout.
    let mut dead = replicas[leader].take().unwrap();
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();

    // Another replica takes the lock and carries the rollout to completion.
    let next = wait_leader(&mut replicas, &others);
    assert_ne!(next, leader);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let r = show(alive).await;
        if r["state"] == "completed" {
            let events: Vec<&str> = r["history"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["event"].as_str().unwrap())
                .collect();
            // Nothing lost, nothing done twice.
            assert_eq!(
                events,
                ["created", "advanced", "advanced", "completed"],
                "{r:#}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "rollout did not complete: {r:#}");
        sim.report(&base(alive)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Every device is told to run 1.1.0 by every surviving replica.
    sim.report(&base(others[1])).await;
    let deployments = call(
        &http,
        reqwest::Method::GET,
        format!("{}/api/v1/deployments", base(others[1])),
        Value::Null,
    )
    .await;
    assert_eq!(deployments["deployments"][0]["version"], "1.1.0");
}

/// Waits until one of `candidates` logs that it leads the rollout engine, and returns it.
fn wait_leader(replicas: &mut [Option<Proc>], candidates: &[usize]) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for &i in candidates {
            if let Some(p) = replicas[i].as_mut() {
                if p.drain()
                    .iter()
                    .any(|l| l.contains("this replica now leads the rollout engine"))
                {
                    // A later drain sees the same line again: forget it, so a second call
                    // only finds a new leadership.
                    p.seen.clear();
                    return i;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no replica took the rollout engine's lead"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
