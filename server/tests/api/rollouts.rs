//! Staged rollouts: cohorts, the engine's decisions on a hand-driven clock, operator actions,
//! validation, saved policies and webhooks.

use chrono::{Duration, TimeZone, Utc};
use flotilla_protocol::agent::verify_desired_state;
use flotilla_server::rollout_engine::ManualClock;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::fleet::Device;
use crate::helpers::{assert_error, both_backends, Db, TestApp};
use crate::registry::sample_model;

struct Fixture {
    app: TestApp,
    clock: Arc<ManualClock>,
    devices: Vec<Device>,
    seq: std::cell::Cell<u64>,
}

fn start() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 12, 0, 0).unwrap()
}

/// The bucket as the design defines it, computed here independently of the server.
fn bucket(rollout: &str, device: &str) -> u32 {
    let r = uuid::Uuid::parse_str(rollout).unwrap();
    let d = uuid::Uuid::parse_str(device).unwrap();
    let h = Sha256::new()
        .chain_update(r.as_bytes())
        .chain_update(d.as_bytes())
        .finalize();
    u32::from_be_bytes([h[0], h[1], h[2], h[3]]) % 10_000
}

impl Fixture {
    /// fraud 1.0.0 deployed to `site=a` on `n` devices; 1.1.0 and the faulty 1.2.0 published.
    async fn new(db: Db, n: usize) -> Fixture {
        Self::new_with(db, n, |_| {}).await
    }

    async fn new_with(
        db: Db,
        n: usize,
        tweak: impl FnOnce(&mut flotilla_server::config::Settings),
    ) -> Fixture {
        let clock = Arc::new(ManualClock::new(start()));
        let app = crate::helpers::spawn_app_with_clock_and(db, clock.clone(), tweak).await;
        let p = app.with_publisher().await;
        for (file, v) in [
            ("fraud-1.0.0.onnx", "1.0.0"),
            ("fraud-1.1.0.onnx", "1.1.0"),
            ("fraud-1.2.0-faulty.onnx", "1.2.0"),
        ] {
            let bytes = sample_model(file);
            app.upload(&bytes).await;
            let res = app
                .publish("fraud", v, &bytes, &[p.sign(&bytes, "fraud", v)])
                .await;
            assert_eq!(res.status(), 201);
        }
        assert_eq!(app.deploy("fraud", "1.0.0", "site=a").await.status(), 201);
        let token = app
            .enrollment_token(json!({"name": "fleet", "max_uses": n, "labels": {"site": "a"}}))
            .await;
        let mut devices = Vec::new();
        for _ in 0..n {
            let res = app.try_enroll(&token, json!({"site": "a"})).await;
            assert_eq!(res.status(), 201);
            let v: Value = res.json().await.unwrap();
            devices.push(Device {
                id: v["device_id"].as_str().unwrap().to_owned(),
                credential: v["credential"].as_str().unwrap().to_owned(),
                server_key: flotilla_protocol::signing::PublicKey::from_pem(
                    v["server_public_key_pem"].as_str().unwrap(),
                )
                .unwrap(),
            });
        }
        Fixture {
            app,
            clock,
            devices,
            seq: std::cell::Cell::new(0),
        }
    }

    /// The (version, shadow version) of fraud the device is told to run.
    async fn desired(&self, d: &Device) -> (String, Option<String>) {
        let res = self.app.poll(d, None, 0).await;
        assert_eq!(res.status(), 200);
        let body = res.bytes().await.unwrap();
        let now = u64::try_from(Utc::now().timestamp()).unwrap();
        let state = verify_desired_state(&body, &d.server_key, &d.id, 0, now).unwrap();
        let slot = state.slots.iter().find(|s| s.model == "fraud").unwrap();
        (
            slot.version.clone(),
            slot.shadow.as_ref().map(|s| s.version.clone()),
        )
    }

    /// Every device reports what it was told, with `errors` of 100 inferences failing on the
    /// candidate and agreement `agree` of 100 compared requests in shadow.
    async fn report_all(&self, candidate: &str, errors: u64, agree: u64) {
        for d in &self.devices {
            let (version, shadow) = self.desired(d).await;
            let n = self.seq.get() + 1;
            self.seq.set(n);
            let errs = if version == candidate { errors } else { 0 };
            let mut health = json!({"model": "fraud", "version": version, "inference_count": 100,
                "error_count": errs, "latency_ms": {"p50": 0.4, "p95": 1.0, "p99": 1.5}});
            let mut slot = json!({"model": "fraud", "version": version, "state": "active", "active_version": version});
            if let Some(s) = &shadow {
                health["shadow"] = json!({"version": s, "compared": 100, "agreed": agree, "errors": 0,
                    "latency_ms": {"p50": 0.4, "p95": 1.1, "p99": 1.6}});
                slot["shadow"] = json!({"version": s, "state": "active"});
            }
            let now = u64::try_from(Utc::now().timestamp()).unwrap();
            let res = self
                .app
                .client
                .post(self.app.url("/api/v1/agent/report"))
                .bearer_auth(&d.credential)
                .json(&json!({"report_seq": n, "created_at": now, "applied_sequence": 1,
                    "slots": [slot], "health": {"start": now - 10, "end": now, "models": [health]}}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
    }

    async fn create(&self, body: Value) -> Value {
        let res = self.post("/api/v1/rollouts", body).await;
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        res.json().await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.app
            .client
            .post(self.app.url(path))
            .bearer_auth(&self.app.admin_token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn act(&self, id: &str, action: &str) -> reqwest::Response {
        self.post(&format!("/api/v1/rollouts/{id}/{action}"), json!({}))
            .await
    }

    async fn show(&self, id: &str) -> Value {
        self.app.get_json(&format!("/api/v1/rollouts/{id}")).await
    }

    async fn tick(&self) -> usize {
        self.app.engine.tick().await.unwrap().len()
    }

    fn advance(&self, secs: i64) {
        self.clock.advance(Duration::seconds(secs));
    }

    /// How many devices are told to run `version`.
    async fn running(&self, version: &str) -> usize {
        let mut n = 0;
        for d in &self.devices {
            if self.desired(d).await.0 == version {
                n += 1;
            }
        }
        n
    }
}

fn three_stages(gates: Value) -> Value {
    json!({
        "stages": [
            {"percent": 10, "bake_secs": 60, "gates": gates},
            {"percent": 50, "bake_secs": 60, "gates": gates},
            {"percent": 100, "bake_secs": 60, "gates": gates},
        ],
        "on_failure": "rollback",
        "activation_deadline_secs": 300,
    })
}

/// The gate named `name` in a list of gate figures (a rollout's or a transition's).
fn gate(gates: &Value, name: &str) -> Value {
    gates
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["gate"] == name)
        .unwrap_or_else(|| panic!("no gate {name} in {gates:#}"))
        .clone()
}

both_backends!(
    a_rollout_advances_stage_by_stage_to_completion,
    a_rollout_advances_stage_by_stage_to_completion_on
);
async fn a_rollout_advances_stage_by_stage_to_completion_on(db: Db) {
    let f = Fixture::new(db, 20).await;
    let r = f
        .create(
            json!({"model": "fraud", "version": "1.1.0", "selector": "site=a",
            "policy": three_stages(json!({"max_error_rate": 0.05, "max_failed_ratio": 0.0}))}),
        )
        .await;
    let id = r["id"].as_str().unwrap().to_owned();
    assert_eq!(r["state"], "running");
    assert_eq!(r["stage"], 0);
    assert_eq!(r["devices"]["matching"], 20);

    for (stage, limit) in [(0u32, 1000u32), (1, 5000), (2, 10_000)] {
        // Exactly the devices whose bucket is below the stage's share run the candidate.
        let expected = f
            .devices
            .iter()
            .filter(|d| bucket(&id, &d.id) < limit)
            .count();
        assert_eq!(f.running("1.1.0").await, expected, "stage {stage}");
        // Before the candidate has answered anything, its behaviour gates wait.
        let before = f.show(&id).await;
        let error_gate = gate(&before["gates"], "max_error_rate");
        let waits = if stage == 0 && expected == 0 {
            "pass"
        } else {
            "pending"
        };
        assert_eq!(error_gate["status"], waits, "stage {stage}: {error_gate}");
        f.report_all("1.1.0", 0, 100).await;
        let shown = f.show(&id).await;
        assert_eq!(shown["devices"]["in_stage"], expected);
        assert_eq!(shown["devices"]["active"], expected);
        assert_eq!(shown["devices"]["pending"], 0);
        // Baking: nothing moves before the minimum time, however good the figures.
        assert_eq!(f.tick().await, 0, "stage {stage} must bake first");
        f.advance(61);
        assert_eq!(f.tick().await, 1);
        let shown = f.show(&id).await;
        if stage < 2 {
            assert_eq!(shown["state"], "running");
            assert_eq!(shown["stage"], stage + 1);
        } else {
            assert_eq!(shown["state"], "completed");
        }
    }
    // Completion made 1.1.0 the deployment: every device runs it, and keeps running it.
    assert_eq!(f.running("1.1.0").await, 20);
    let deployments = f.app.get_json("/api/v1/deployments").await;
    let site_a = deployments["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["selector"] == "site=a")
        .unwrap()
        .clone();
    assert_eq!(site_a["version"], "1.1.0");
    let shown = f.show(&id).await;
    let events: Vec<&str> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["created", "advanced", "advanced", "completed"]);
    // Every transition carries the numbers it was decided on.
    assert!(shown["history"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("stage 1 passed its gates"));
    // (Stage 1 may hold nobody; stage 2 holds about half the devices.)
    let advanced = &shown["history"][2];
    assert_eq!(advanced["actor"], "engine");
    let error_gate = gate(&advanced["numbers"]["gates"], "max_error_rate");
    assert_eq!(error_gate["value"], 0.0);
    assert_eq!(error_gate["status"], "pass");
    assert!(advanced["numbers"]["devices"]["active"].as_u64().unwrap() > 0);
}

both_backends!(
    a_failing_candidate_is_rolled_back,
    a_failing_candidate_is_rolled_back_on
);
async fn a_failing_candidate_is_rolled_back_on(db: Db) {
    let f = Fixture::new(db, 20).await;
    let gates = json!({"max_error_rate": 0.05});
    let r = f
        .create(json!({"model": "fraud", "version": "1.2.0", "selector": "site=a",
            "policy": {"stages": [{"devices": 2, "bake_secs": 600, "gates": gates},
                                  {"devices": 10, "gates": gates}, {"devices": 20, "gates": gates}]}}))
        .await;
    let id = r["id"].as_str().unwrap().to_owned();
    assert_eq!(r["devices"]["in_stage"], 2);
    f.report_all("1.2.0", 30, 100).await;
    // A breach does not wait for the bake time.
    assert_eq!(f.tick().await, 1);
    let shown = f.show(&id).await;
    assert_eq!(shown["state"], "rolled_back");
    let reason = shown["reason"].as_str().unwrap();
    assert!(reason.contains("max_error_rate"), "{reason}");
    assert!(reason.contains("0.3000"), "{reason}");
    let last = shown["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["event"], "rolled_back");
    assert_eq!(last["numbers"]["gates"][0]["status"], "fail");
    // Every device is back on the previous version.
    assert_eq!(f.running("1.0.0").await, 20);
    // A closed rollout does not block a new one.
    f.create(
        json!({"model": "fraud", "version": "1.1.0", "selector": "site=a",
        "policy": three_stages(json!({}))}),
    )
    .await;
}

both_backends!(
    devices_that_never_activate_count_as_failed,
    devices_that_never_activate_count_as_failed_on
);
async fn devices_that_never_activate_count_as_failed_on(db: Db) {
    let f = Fixture::new(db, 10).await;
    let r = f
        .create(json!({"model": "fraud", "version": "1.1.0", "selector": "site=a",
            "policy": {"stages": [{"devices": 3, "gates": {"max_failed_ratio": 0.0}}, {"devices": 10}],
                       "activation_deadline_secs": 120, "on_failure": "pause"}}))
        .await;
    let id = r["id"].as_str().unwrap().to_owned();
    // Nobody reports. Within the deadline the devices are pending, not failed.
    assert_eq!(f.tick().await, 0);
    let shown = f.show(&id).await;
    assert_eq!(shown["devices"]["pending"], 3);
    assert_eq!(shown["gates"][0]["status"], "pass");
    f.advance(121);
    assert_eq!(f.tick().await, 1);
    let shown = f.show(&id).await;
    assert_eq!(shown["state"], "paused", "on_failure = pause");
    assert!(shown["reason"]
        .as_str()
        .unwrap()
        .contains("max_failed_ratio"));
    let last = shown["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["numbers"]["devices"]["failed"], 3);
    // Paused, the cohort stays where it is.
    assert_eq!(f.running("1.1.0").await, 3);
}

both_backends!(
    a_disagreeing_shadow_never_goes_live,
    a_disagreeing_shadow_never_goes_live_on
);
async fn a_disagreeing_shadow_never_goes_live_on(db: Db) {
    let f = Fixture::new(db, 6).await;
    let policy = json!({"stages": [
        {"devices": 6, "shadow": true, "bake_secs": 30, "gates": {"min_shadow_agreement": 0.9}},
        {"devices": 6}]});
    let r = f
        .create(
            json!({"model": "fraud", "version": "1.1.0", "selector": "site=a", "policy": policy}),
        )
        .await;
    let id = r["id"].as_str().unwrap().to_owned();
    // In shadow, every device keeps answering with 1.0.0 and carries 1.1.0 beside it.
    for d in &f.devices {
        assert_eq!(
            f.desired(d).await,
            ("1.0.0".to_owned(), Some("1.1.0".to_owned()))
        );
    }
    f.report_all("1.1.0", 0, 40).await;
    let shown = f.show(&id).await;
    assert_eq!(shown["devices"]["active"], 6);
    assert_eq!(shown["gates"][0]["gate"], "min_shadow_agreement");
    assert_eq!(shown["gates"][0]["value"], 0.4);
    assert_eq!(
        shown["gates"][0]["status"], "pending",
        "agreement is judged once baked"
    );
    assert_eq!(f.tick().await, 0);
    f.advance(31);
    assert_eq!(f.tick().await, 1);
    let shown = f.show(&id).await;
    assert_eq!(shown["state"], "rolled_back");
    assert!(shown["reason"]
        .as_str()
        .unwrap()
        .contains("min_shadow_agreement"));
    for d in &f.devices {
        assert_eq!(f.desired(d).await, ("1.0.0".to_owned(), None));
    }

    // An agreeing candidate passes its shadow stage and then goes live.
    let r = f
        .create(
            json!({"model": "fraud", "version": "1.1.0", "selector": "site=a", "policy": policy}),
        )
        .await;
    let id = r["id"].as_str().unwrap().to_owned();
    f.report_all("1.1.0", 0, 97).await;
    f.advance(31);
    assert_eq!(f.tick().await, 1);
    let shown = f.show(&id).await;
    assert_eq!(shown["stage"], 1);
    assert_eq!(f.running("1.1.0").await, 6);
}

both_backends!(
    rollouts_are_validated_and_policies_reused,
    rollouts_are_validated_and_policies_reused_on
);
async fn rollouts_are_validated_and_policies_reused_on(db: Db) {
    let f = Fixture::new(db, 2).await;
    let bad = |policy: Value| json!({"model": "fraud", "version": "1.1.0", "policy": policy});
    for (policy, needle) in [
        (json!({"stages": []}), "1 to 20 stages"),
        (
            json!({"stages": [{"percent": 50}, {"percent": 10}]}),
            "must grow",
        ),
        (json!({"stages": [{"percent": 150}]}), "at most 100"),
        (json!({"stages": [{"percent": -1}]}), "above 0"),
        (
            json!({"stages": [{"percent": 10, "devices": 3}]}),
            "exactly one",
        ),
        (
            json!({"stages": [{"percent": 10}, {"devices": 30}]}),
            "do not mix",
        ),
        (
            json!({"stages": [{"percent": 100, "shadow": true}]}),
            "last stage",
        ),
        (
            json!({"stages": [{"percent": 100, "gates": {"max_error_rate": 2}}]}),
            "between 0 and 1",
        ),
        (
            json!({"stages": [{"percent": 100, "gates": {"min_shadow_agreement": 0.9}}]}),
            "shadow stage",
        ),
    ] {
        let msg = assert_error(
            f.post("/api/v1/rollouts", bad(policy)).await,
            400,
            "invalid_argument",
        )
        .await;
        assert!(msg.contains(needle), "`{msg}` should say `{needle}`");
    }
    let res = f
        .post(
            "/api/v1/rollouts",
            json!({"model": "fraud", "version": "9.9.9", "policy": {"stages": [{"percent": 100}]}}),
        )
        .await;
    assert_error(res, 404, "not_found").await;
    let res = f
        .post(
            "/api/v1/rollouts",
            json!({"model": "fraud", "version": "1.1.0"}),
        )
        .await;
    assert_error(res, 400, "invalid_argument").await;
    let res = f
        .post(
            "/api/v1/rollouts",
            json!({"model": "fraud", "version": "1.1.0", "selector": "site"}),
        )
        .await;
    assert_error(res, 400, "invalid_argument").await;
    let res = f.post("/api/v1/rollouts", json!({"model": "fraud"})).await;
    assert_error(res, 400, "invalid_json").await;

    // A yanked version cannot be rolled out.
    let res = f
        .app
        .client
        .post(f.app.url("/api/v1/models/fraud/versions/1.2.0/yank"))
        .bearer_auth(&f.app.admin_token)
        .json(&json!({"reason": "faulty"}))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let res = f
        .post(
            "/api/v1/rollouts",
            json!({"model": "fraud", "version": "1.2.0", "policy": {"stages": [{"percent": 100}]}}),
        )
        .await;
    assert_error(res, 409, "version_yanked").await;

    // Saved policies are validated, listed and used by name.
    let res = f
        .app
        .client
        .put(f.app.url("/api/v1/rollout-policies/careful"))
        .bearer_auth(&f.app.admin_token)
        .json(&three_stages(json!({"max_error_rate": 0.01})))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let res = f
        .app
        .client
        .put(f.app.url("/api/v1/rollout-policies/broken"))
        .bearer_auth(&f.app.admin_token)
        .json(&json!({"stages": [{"percent": 50}, {"percent": 5}]}))
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "invalid_argument").await;
    let listed = f.app.get_json("/api/v1/rollout-policies").await;
    assert_eq!(listed["policies"].as_array().unwrap().len(), 1);
    let r = f
        .create(json!({"model": "fraud", "version": "1.1.0", "selector": "site=a", "policy_name": "careful"}))
        .await;
    assert_eq!(r["policy_name"], "careful");
    assert_eq!(r["policy"]["stages"].as_array().unwrap().len(), 3);
    let res = f
        .post(
            "/api/v1/rollouts",
            json!({"model": "fraud", "version": "1.1.0", "policy_name": "nope"}),
        )
        .await;
    assert_error(res, 404, "not_found").await;

    // Overlapping open rollouts of one model are refused, naming the one in the way; disjoint
    // selectors are fine.
    let res = f
        .post(
            "/api/v1/rollouts",
            json!({"model": "fraud", "version": "1.1.0", "selector": "",
            "policy": {"stages": [{"percent": 100}]}}),
        )
        .await;
    let msg = assert_error(res, 409, "rollout_overlap").await;
    assert!(msg.contains(r["id"].as_str().unwrap()), "{msg}");
    f.create(
        json!({"model": "fraud", "version": "1.1.0", "selector": "site=b",
        "policy": {"stages": [{"percent": 100}]}}),
    )
    .await;
    let listed = f.app.get_json("/api/v1/rollouts?state=running").await;
    assert_eq!(listed["rollouts"].as_array().unwrap().len(), 2);
    let res = f
        .app
        .client
        .get(f.app.url("/api/v1/rollouts?state=exploded"))
        .bearer_auth(&f.app.admin_token)
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "invalid_query").await;
    let res = f
        .app
        .client
        .get(f.app.url("/api/v1/rollouts/not-an-id"))
        .bearer_auth(&f.app.admin_token)
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "invalid_path").await;
}

both_backends!(
    operators_pause_resume_approve_abort_and_promote,
    operators_pause_resume_approve_abort_and_promote_on
);
async fn operators_pause_resume_approve_abort_and_promote_on(db: Db) {
    let f = Fixture::new(db, 10).await;
    let policy = json!({"stages": [
        {"devices": 2, "bake_secs": 0, "manual_approval": true},
        {"devices": 10, "bake_secs": 0}]});
    let r = f
        .create(
            json!({"model": "fraud", "version": "1.1.0", "selector": "site=a", "policy": policy}),
        )
        .await;
    let id = r["id"].as_str().unwrap().to_owned();
    assert_eq!(
        r["devices"]["in_stage"], 2,
        "a count stage holds exactly that many"
    );
    assert_eq!(f.running("1.1.0").await, 2);

    // Approving a stage that is not waiting is refused with a stable code.
    assert_error(f.act(&id, "approve").await, 409, "invalid_rollout_state").await;
    assert_error(f.act(&id, "resume").await, 409, "invalid_rollout_state").await;
    assert_error(f.act(&id, "launch").await, 400, "invalid_path").await;

    let res = f
        .post(
            &format!("/api/v1/rollouts/{id}/pause"),
            json!({"reason": "checking dashboards"}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let shown: Value = res.json().await.unwrap();
    assert_eq!(shown["state"], "paused");
    assert!(shown["reason"]
        .as_str()
        .unwrap()
        .contains("checking dashboards"));
    f.report_all("1.1.0", 0, 100).await;
    assert_eq!(f.tick().await, 0, "a paused rollout does not advance");
    assert_eq!(f.act(&id, "resume").await.status(), 200);
    assert_eq!(f.tick().await, 1);
    assert_eq!(f.show(&id).await["state"], "waiting_approval");
    assert_eq!(f.tick().await, 0, "it waits for a person");
    let res = f.act(&id, "approve").await;
    assert_eq!(res.status(), 200);
    let shown: Value = res.json().await.unwrap();
    assert_eq!(shown["state"], "running");
    assert_eq!(shown["stage"], 1);
    assert_eq!(f.running("1.1.0").await, 10);

    // Viewers read but do not act.
    let viewer = f.app.token_with_role("watcher", "viewer").await;
    let res = f
        .app
        .client
        .post(f.app.url(&format!("/api/v1/rollouts/{id}/abort")))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_error(res, 403, "forbidden").await;

    // Abort sends everyone back.
    assert_eq!(f.act(&id, "abort").await.status(), 200);
    assert_eq!(f.show(&id).await["state"], "aborted");
    assert_eq!(f.running("1.0.0").await, 10);
    assert_error(f.act(&id, "abort").await, 409, "invalid_rollout_state").await;

    // Promote skips the remaining stages.
    let r = f
        .create(
            json!({"model": "fraud", "version": "1.1.0", "selector": "site=a", "policy": policy}),
        )
        .await;
    let id2 = r["id"].as_str().unwrap();
    let res = f
        .post(&format!("/api/v1/rollouts/{id2}/promote"), json!({}))
        .await;
    assert_eq!(res.status(), 200);
    let shown: Value = res.json().await.unwrap();
    assert_eq!(shown["state"], "completed");
    assert_eq!(
        shown["history"].as_array().unwrap().last().unwrap()["event"],
        "promoted"
    );
    assert_eq!(f.running("1.1.0").await, 10);
}

#[tokio::test]
async fn transitions_reach_webhooks_signed_with_hmac() {
    use actix_web::{web, App, HttpRequest, HttpServer};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Vec<u8>)>();
    let receiver = HttpServer::new(move || {
        let tx = tx.clone();
        App::new().route(
            "/hook",
            web::post().to(move |req: HttpRequest, body: web::Bytes| {
                let tx = tx.clone();
                async move {
                    let sig = req
                        .headers()
                        .get("x-flotilla-signature")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let _ = tx.send((sig, body.to_vec()));
                    "ok"
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let port = receiver.addrs()[0].port();
    tokio::spawn(receiver.run());

    // The receiver is on loopback, which a webhook may call only when the server allows it.
    let f = Fixture::new_with(Db::Sqlite, 4, |s| {
        s.webhook_allow_private_destinations = true
    })
    .await;
    let hook = |body: Value| f.post("/api/v1/webhooks", body);
    assert_error(
        hook(json!({"url": "ftp://x/hook"})).await,
        400,
        "invalid_argument",
    )
    .await;
    assert_error(
        hook(json!({"url": "http://127.0.0.1/hook", "secret": "short"})).await,
        400,
        "invalid_argument",
    )
    .await;
    let operator = f.app.token_with_role("ops", "operator").await;
    let res = f
        .app
        .client
        .post(f.app.url("/api/v1/webhooks"))
        .bearer_auth(&operator)
        .json(&json!({"url": "http://127.0.0.1/hook"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 403, "forbidden").await;
    let res = hook(json!({"url": format!("http://127.0.0.1:{port}/hook")})).await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let listed = f.app.get_json("/api/v1/webhooks").await;
    assert!(
        listed["webhooks"][0].get("secret").is_none(),
        "secrets are shown once"
    );

    let r = f
        .create(
            json!({"model": "fraud", "version": "1.1.0", "selector": "site=a",
            "policy": {"stages": [{"devices": 4}]}}),
        )
        .await;
    let id = r["id"].as_str().unwrap().to_owned();
    f.post(
        &format!("/api/v1/rollouts/{id}/pause"),
        json!({"reason": "lunch"}),
    )
    .await;
    let mut events = Vec::new();
    for _ in 0..2 {
        let (sig, body) = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("a webhook delivery")
            .unwrap();
        assert_eq!(sig, flotilla_server::webhooks::signature(&secret, &body));
        assert_ne!(
            sig,
            flotilla_server::webhooks::signature("another-secret-0123456789", &body)
        );
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["kind"], "rollout.transition");
        assert_eq!(v["rollout_id"], id.as_str());
        events.push(v["transition"]["event"].as_str().unwrap().to_owned());
    }
    events.sort();
    assert_eq!(events, ["created", "paused"]);
}

impl Fixture {
    /// Device `i` reports `n` inferences of `version` with `errors` failing.
    async fn report_one(&self, i: usize, version: &str, n: u64, errors: u64) {
        let d = &self.devices[i];
        let seq = self.seq.get() + 1;
        self.seq.set(seq);
        let now = u64::try_from(Utc::now().timestamp()).unwrap();
        let res = self
            .app
            .client
            .post(self.app.url("/api/v1/agent/report"))
            .bearer_auth(&d.credential)
            .json(&json!({"report_seq": seq, "created_at": now, "applied_sequence": 1,
                "slots": [{"model": "fraud", "version": version, "state": "active", "active_version": version}],
                "health": {"start": now - 10, "end": now, "models": [{"model": "fraud", "version": version,
                    "inference_count": n, "error_count": errors,
                    "latency_ms": {"p50": 0.4, "p95": 1.0, "p99": 1.5}}]}}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }

    async fn one_stage_rollout(&self) -> String {
        let r = self
            .create(
                json!({"model": "fraud", "version": "1.2.0", "selector": "site=a",
                "policy": {"stages": [{"percent": 100, "bake_secs": 60,
                                       "gates": {"max_error_rate": 0.05}}],
                           "on_failure": "rollback"}}),
            )
            .await;
        r["id"].as_str().unwrap().to_owned()
    }
}

both_backends!(
    one_device_claiming_a_huge_clean_window_cannot_carry_a_failing_gate,
    one_device_claiming_a_huge_clean_window_cannot_carry_a_failing_gate_on
);
async fn one_device_claiming_a_huge_clean_window_cannot_carry_a_failing_gate_on(db: Db) {
    let f = Fixture::new(db, 4).await;
    let id = f.one_stage_rollout().await;
    // Three devices fail half their requests; the fourth claims a million clean ones, which
    // summed naively would make the error rate 0.00015.
    for i in 0..3 {
        f.report_one(i, "1.2.0", 100, 50).await;
    }
    f.report_one(3, "1.2.0", 1_000_000, 0).await;
    f.tick().await;
    let shown = f.show(&id).await;
    assert_eq!(shown["state"], "rolled_back", "{shown:#}");
    assert!(shown["reason"].as_str().unwrap().contains("max_error_rate"));
}

both_backends!(
    one_device_reporting_many_errors_cannot_force_a_rollback,
    one_device_reporting_many_errors_cannot_force_a_rollback_on
);
async fn one_device_reporting_many_errors_cannot_force_a_rollback_on(db: Db) {
    let f = Fixture::new(db, 4).await;
    let id = f.one_stage_rollout().await;
    for i in 0..3 {
        f.report_one(i, "1.2.0", 100, 0).await;
    }
    f.report_one(3, "1.2.0", 100, 100).await;
    f.tick().await;
    let shown = f.show(&id).await;
    assert_eq!(shown["state"], "running", "{shown:#}");
    let error_gate = gate(&shown["gates"], "max_error_rate");
    assert_eq!(error_gate["status"], "pass", "{error_gate}");
    f.advance(61);
    f.tick().await;
    assert_eq!(f.show(&id).await["state"], "completed");
}

both_backends!(
    webhooks_cannot_reach_inside_the_network,
    webhooks_cannot_reach_inside_the_network_on
);
async fn webhooks_cannot_reach_inside_the_network_on(db: Db) {
    let f = Fixture::new(db, 1).await;
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://localhost/hook",
        "http://[::1]/hook",
        "http://10.0.0.5/hook",
        "http://192.168.1.1/hook",
        "http://172.16.0.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00::1]/hook",
        "http://[fe80::1]/hook",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "http://[::ffff:127.0.0.1]/hook",
    ] {
        let res = f.post("/api/v1/webhooks", json!({"url": url})).await;
        assert_error(res, 422, "webhook_destination_refused").await;
    }
    assert_eq!(
        f.app.get_json("/api/v1/webhooks").await["webhooks"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test]
async fn webhook_credentials_in_the_url_never_reach_the_audit_log() {
    let f = Fixture::new(Db::Sqlite, 1).await;
    let res = f
        .post(
            "/api/v1/webhooks",
            json!({"url": "https://hookuser:hunter2-secret@hooks.example.com/x"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let audit = f.app.get_json("/api/v1/audit?limit=5").await;
    let text = audit.to_string();
    assert!(!text.contains("hunter2-secret"), "{text}");
    assert!(!text.contains("hookuser"), "{text}");
    assert!(text.contains("hooks.example.com"), "{text}");
}

#[test]
fn webhook_delivery_refuses_inside_addresses_after_resolution() {
    use flotilla_server::webhooks::{check_url, destination_refused};
    for ip in [
        "127.0.0.1",
        "10.1.2.3",
        "::1",
        "fd12::1",
        "169.254.1.1",
        "100.64.0.1",
    ] {
        assert!(destination_refused(ip.parse().unwrap()), "{ip}");
    }
    for ip in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"] {
        assert!(!destination_refused(ip.parse().unwrap()), "{ip}");
    }
    assert!(check_url("http://127.0.0.1/x", true).is_ok());
    assert!(check_url("http://127.0.0.1/x", false).is_err());
}
