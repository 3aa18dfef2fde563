//! The fleet simulator against a real server: simulated devices follow deploys, report what
//! they run (and what failed) so the server sees it, and catch up after being offline.

use flotilla_e2e::sim::{Behaviour, SimConfig, SimFleet};
use serde_json::{json, Value};
use std::time::Duration;

use crate::fleet::Fleet;

/// How many devices the server has seen report `state` for `version` of fraud.
async fn reported(fleet: &Fleet, version: &str, state: &str) -> usize {
    let v = fleet.call("GET", "/api/v1/devices", Value::Null, 200).await;
    v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| {
            d["slots"].as_array().is_some_and(|slots| {
                slots.iter().any(|s| {
                    s["model"] == "fraud" && s["version"] == version && s["state"] == state
                })
            })
        })
        .count()
}

async fn wait_reported(fleet: &Fleet, version: &str, state: &str, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while reported(fleet, version, state).await != count {
        assert!(
            std::time::Instant::now() < deadline,
            "the server never saw {count} devices report fraud {version} {state}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_devices_follow_deploys_report_failures_and_come_back() {
    const DEVICES: usize = 40;
    let fleet = Fleet::start().await;
    fleet.publish("fraud-1.0.0.onnx", "1.0.0", Some(1)).await;
    fleet.publish("fraud-1.1.0.onnx", "1.1.0", Some(2)).await;
    fleet.deploy("1.0.0").await;
    let token = fleet
        .call(
            "POST",
            "/api/v1/enrollment-tokens",
            json!({"name": "sim", "labels": {"site": "a"}, "max_uses": DEVICES,
                   "allowed_device_labels": ["rack"]}),
            201,
        )
        .await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut config = SimConfig::new(&fleet.base, &token);
    config.poll_wait_secs = 5;
    config.report_interval = Duration::from_secs(2);
    let sim = SimFleet::enroll(config, DEVICES, |i| {
        [("rack".to_owned(), format!("r{}", i % 4))].into()
    })
    .await
    .unwrap();
    assert_eq!(sim.devices().len(), DEVICES);
    // 1.1.0 fails to activate until further notice.
    sim.set_behaviour(
        "fraud",
        "1.1.0",
        Behaviour {
            activation_failure: Some("smoke_test_failed: NaN in output".into()),
            ..Behaviour::default()
        },
    );
    sim.start();
    sim.wait_for(Duration::from_secs(60), |f| {
        f.count_active("fraud", "1.0.0") == DEVICES
    })
    .await
    .unwrap();
    wait_reported(&fleet, "1.0.0", "active", DEVICES).await;
    // Every artifact was verified, and only the first few devices fetched its bytes.
    let downloaded = sim
        .counters()
        .downloaded_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        downloaded,
        3 * std::fs::metadata(flotilla_e2e::models_dir().join("fraud-1.0.0.onnx"))
            .unwrap()
            .len()
    );

    // Ten devices go offline; the others try 1.1.0, fail, keep serving 1.0.0 and say so.
    sim.set_online(0..10, false);
    fleet.deploy("1.1.0").await;
    sim.wait_for(Duration::from_secs(60), |f| {
        f.count_failed("fraud", "1.1.0") == DEVICES - 10
    })
    .await
    .unwrap();
    assert_eq!(
        sim.version_counts("fraud"),
        [("1.0.0".into(), DEVICES)].into()
    );
    wait_reported(&fleet, "1.1.0", "failed", DEVICES - 10).await;

    // The offline ones come back once 1.1.0 is fixed, and activate it.
    sim.set_behaviour("fraud", "1.1.0", Behaviour::default());
    sim.set_online(0..10, true);
    sim.wait_for(Duration::from_secs(60), |f| {
        f.count_active("fraud", "1.1.0") == 10
    })
    .await
    .unwrap();
    wait_reported(&fleet, "1.1.0", "active", 10).await;
    sim.stop().await;
}
