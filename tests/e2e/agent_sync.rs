//! The agent's update cycle against a real server (in-process, SQLite): enroll, pull, verify,
//! activate, swap, report; and the refusals a compromised server or network cannot get past.

use flotilla_agent::sync::client::{DownloadLimits, ServerClient};
use flotilla_agent::sync::state_dir::StateDir;
use flotilla_agent::sync::trust::Trust;
use flotilla_agent::sync::updater::{system_clock, Cycle, Updater};
use flotilla_agent::sync::ModelSink;
use flotilla_protocol::agent::{sign_desired_state, DesiredState, ModelSlot};
use flotilla_protocol::signing::{SampleTensor, SigningKey};
use flotilla_runtime::Model;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::fleet::{hex_sha, model_bytes, sign, Fleet};

/// Records what the updater installs.
#[derive(Default)]
struct MapSink(Mutex<BTreeMap<String, (String, Arc<Model>)>>);

impl ModelSink for MapSink {
    fn install(&self, name: &str, version: &str, model: Arc<Model>) {
        self.0
            .lock()
            .unwrap()
            .insert(name.to_owned(), (version.to_owned(), model));
    }
    fn remove(&self, name: &str) {
        self.0.lock().unwrap().remove(name);
    }
}

impl MapSink {
    fn version(&self, name: &str) -> Option<String> {
        self.0.lock().unwrap().get(name).map(|(v, _)| v.clone())
    }
}

#[tokio::test]
async fn pulls_verifies_activates_swaps_and_reports() {
    let fleet = Fleet::start().await;
    fleet.publish("fraud-1.0.0.onnx", "1.0.0", Some(1)).await;
    fleet.publish("fraud-1.1.0.onnx", "1.1.0", Some(2)).await;
    fleet.deploy("1.0.0").await;
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MapSink::default());
    let mut agent = fleet.agent(dir.path(), sink.clone()).await;

    agent.cycle(Duration::from_secs(0)).await.unwrap();
    assert_eq!(sink.version("fraud").as_deref(), Some("1.0.0"));
    let v1 = model_bytes("fraud-1.0.0.onnx");
    assert_eq!(
        std::fs::read(dir.path().join("models").join(hex_sha(&v1))).unwrap(),
        v1
    );

    fleet.deploy("1.1.0").await;
    agent.cycle(Duration::from_secs(0)).await.unwrap();
    assert_eq!(sink.version("fraud").as_deref(), Some("1.1.0"));
    assert_eq!(
        agent.state().previous["fraud"].version,
        "1.0.0",
        "the previous version stays for rollback"
    );

    // The server saw the reports.
    let devices = fleet.call("GET", "/api/v1/devices", Value::Null, 200).await;
    let dev = &devices["devices"][0];
    assert_eq!(dev["slots"][0]["state"], "active");
    assert_eq!(dev["slots"][0]["active_version"], "1.1.0");
    assert_eq!(dev["applied_sequence"], dev["desired_sequence"]);

    // A restart loads the installed model from disk without the server.
    let sink2 = Arc::new(MapSink::default());
    let state = StateDir::open(dir.path()).unwrap();
    let identity = state.identity().unwrap().unwrap();
    let trust: flotilla_protocol::registry::TrustRoot = serde_json::from_value(
        fleet
            .call("GET", "/api/v1/trust-root", Value::Null, 200)
            .await,
    )
    .unwrap();
    let offline =
        ServerClient::new("http://127.0.0.1:9", Some(identity.credential.clone())).unwrap();
    let mut restarted = Updater::new(
        state,
        offline,
        identity,
        Trust::new(trust).unwrap(),
        sink2.clone(),
        Arc::new(|| None),
        system_clock(),
        DownloadLimits::default(),
    )
    .unwrap();
    restarted.restore().await.unwrap();
    assert_eq!(sink2.version("fraud").as_deref(), Some("1.1.0"));
    // Offline: the cycle fails, the model keeps serving, the report waits on disk.
    assert!(restarted.cycle(Duration::from_secs(0)).await.is_err());
    assert_eq!(sink2.version("fraud").as_deref(), Some("1.1.0"));
    assert!(
        std::fs::read_dir(dir.path().join("reports"))
            .unwrap()
            .count()
            >= 1
    );
}

#[tokio::test]
async fn the_signed_sample_input_stops_a_model_that_passes_on_zeros() {
    let fleet = Fleet::start().await;
    fleet.publish("fraud-1.0.0.onnx", "1.0.0", Some(1)).await;
    // The faulty model answers NaN when feature 0 exceeds 0.5: zeros pass, this sample does not.
    let hot = SampleTensor {
        name: "features".into(),
        datatype: "FP32".into(),
        shape: vec![1, 8],
        data: [0.9, 0.1, -0.2, 0.3, 0.0, 0.5, -1.0, 0.25]
            .iter()
            .map(|&v| json!(v))
            .collect(),
    };
    fleet
        .publish_with_sample(
            "fraud-1.2.0-faulty.onnx",
            "1.2.0",
            Some(3),
            Some(vec![hot.clone()]),
        )
        .await;
    fleet.deploy("1.0.0").await;
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MapSink::default());
    let mut agent = fleet.agent(dir.path(), sink.clone()).await;
    agent.cycle(Duration::from_secs(0)).await.unwrap();
    assert_eq!(sink.version("fraud").as_deref(), Some("1.0.0"));

    fleet.deploy("1.2.0").await;
    agent.cycle(Duration::from_secs(0)).await.unwrap();
    assert_eq!(
        sink.version("fraud").as_deref(),
        Some("1.0.0"),
        "the faulty model must not replace the working one"
    );
    let devices = fleet.call("GET", "/api/v1/devices", Value::Null, 200).await;
    let slot = &devices["devices"][0]["slots"][0];
    assert_eq!(slot["state"], "failed", "{slot}");
    assert!(
        slot["reason"]
            .as_str()
            .is_some_and(|r| r.contains("smoke_test_failed")),
        "{slot}"
    );
    assert_eq!(slot["active_version"], "1.0.0");

    // The same bytes with a harmless signed sample pass: the check is the sample, not the file.
    let calm = SampleTensor {
        data: vec![json!(0.0); 8],
        ..hot
    };
    fleet
        .publish_with_sample(
            "fraud-1.2.0-faulty.onnx",
            "1.2.1",
            Some(4),
            Some(vec![calm]),
        )
        .await;
    fleet.deploy("1.2.1").await;
    agent.cycle(Duration::from_secs(0)).await.unwrap();
    assert_eq!(sink.version("fraud").as_deref(), Some("1.2.1"));
}

/// Serves `bytes` to every request, as an attacker's own file server would: returns its URL.
async fn serve_bytes(bytes: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/artifact", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let bytes = bytes.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 4096];
                let _ = conn.read(&mut head).await;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    bytes.len()
                );
                let _ = conn.write_all(answer.as_bytes()).await;
                let _ = conn.write_all(&bytes).await;
            });
        }
    });
    url
}

/// A fleet with fraud 1.0.0 and 1.1.0 published and `deployed` deployed, and one agent serving
/// it: the fleet, the agent's directory, its sink, the agent and its device id.
async fn one_agent_serving(
    deployed: &str,
) -> (Fleet, tempfile::TempDir, Arc<MapSink>, Updater, String) {
    let fleet = Fleet::start().await;
    fleet.publish("fraud-1.0.0.onnx", "1.0.0", Some(1)).await;
    fleet.publish("fraud-1.1.0.onnx", "1.1.0", Some(2)).await;
    fleet.deploy(deployed).await;
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MapSink::default());
    let mut agent = fleet.agent(dir.path(), sink.clone()).await;
    agent.cycle(Duration::from_secs(0)).await.unwrap();
    assert_eq!(sink.version("fraud").as_deref(), Some(deployed));
    let device_id = fleet.call("GET", "/api/v1/devices", Value::Null, 200).await["devices"][0]
        ["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (fleet, dir, sink, agent, device_id)
}

#[tokio::test]
async fn refuses_what_a_compromised_server_sends_and_keeps_serving() {
    let (fleet, dir, sink, mut agent, device_id) = one_agent_serving("1.1.0").await;

    // The attacker holds the server key (the worst case) but not the publisher keys.
    let server_key = fleet.server_key().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut seq = agent.state().accepted_sequence;
    let v11 = model_bytes("fraud-1.1.0.onnx");
    let v1 = model_bytes("fraud-1.0.0.onnx");
    let good_slot = |bytes: &[u8], version: &str, bundle: String| ModelSlot {
        model: "fraud".into(),
        version: version.into(),
        sha256: hex_sha(bytes),
        size: bytes.len() as u64,
        url: format!("/api/v1/artifacts/sha256/{}", hex_sha(bytes)),
        bundles: vec![bundle],
        escalation: None,
        shadow: None,
    };
    let mut envelope = |slots: Vec<ModelSlot>| {
        seq += 1;
        serde_json::to_vec(&sign_desired_state(
            &server_key,
            &DesiredState {
                device_id: device_id.clone(),
                sequence: seq,
                issued_at: now,
                expires_at: now + 3600,
                slots,
            },
        ))
        .unwrap()
    };
    let failure = |agent: &Updater| {
        agent
            .state()
            .failures
            .get("fraud")
            .map(|f| f.reason.clone())
            .unwrap_or_default()
    };

    // 1. A model signed by a key outside the trust root.
    let rogue = SigningKey::generate(&mut rand::rngs::OsRng);
    let junk = model_bytes("fraud-2.0.0-disagree.onnx");
    agent
        .apply(&envelope(vec![good_slot(
            &junk,
            "3.0.0",
            sign(&rogue, &junk, "fraud", "3.0.0", Some(9), None),
        )]))
        .await
        .unwrap();
    assert!(
        failure(&agent).starts_with("no_trusted_signature"),
        "{}",
        failure(&agent)
    );
    assert_eq!(sink.version("fraud").as_deref(), Some("1.1.0"));

    // 2. A downgrade to a properly signed older version with no rollback allowance.
    agent
        .apply(&envelope(vec![good_slot(
            &v1,
            "1.0.0",
            sign(&fleet.publisher, &v1, "fraud", "1.0.0", Some(1), None),
        )]))
        .await
        .unwrap();
    assert!(
        failure(&agent).starts_with("downgrade_refused"),
        "{}",
        failure(&agent)
    );
    assert_eq!(sink.version("fraud").as_deref(), Some("1.1.0"));

    // 3. A signed version relabelled as another. (Each case uses other bytes: the agent backs
    // off from a digest that already failed instead of retrying it at once.)
    let sensor = model_bytes("sensor-anomaly-1.0.0.onnx");
    agent
        .apply(&envelope(vec![good_slot(
            &sensor,
            "9.0.0",
            sign(&fleet.publisher, &sensor, "fraud", "5.0.0", Some(5), None),
        )]))
        .await
        .unwrap();
    assert!(
        failure(&agent).starts_with("signed_facts_mismatch"),
        "{}",
        failure(&agent)
    );

    // 4. Bytes that differ from the signed digest (same size, one byte flipped).
    let faulty = model_bytes("fraud-1.2.0-faulty.onnx");
    let mut tampered = faulty.clone();
    tampered[100] ^= 1;
    // Served by the attacker itself: the real server hands a device only the artifacts its
    // stored desired state names.
    let mut swapped = good_slot(
        &faulty,
        "4.0.0",
        sign(&fleet.publisher, &faulty, "fraud", "4.0.0", Some(10), None),
    );
    swapped.url = serve_bytes(tampered).await;
    agent.apply(&envelope(vec![swapped])).await.unwrap();
    assert!(
        failure(&agent).starts_with("artifact_digest_mismatch"),
        "{}",
        failure(&agent)
    );
    assert_eq!(sink.version("fraud").as_deref(), Some("1.1.0"));

    // 4b. More bytes than the signed size ("endless data"): the download stops at the size.
    let big = model_bytes("vision-cnn-1.0.0.onnx");
    let small = b"a small signed file".repeat(50);
    let mut endless = good_slot(
        &small,
        "4.0.1",
        sign(&fleet.publisher, &small, "fraud", "4.0.1", Some(11), None),
    );
    endless.url = serve_bytes(big).await;
    agent.apply(&envelope(vec![endless])).await.unwrap();
    assert!(
        failure(&agent).starts_with("download_refused"),
        "{}",
        failure(&agent)
    );
    assert!(
        !dir.path().join("partial").join(hex_sha(&small)).exists(),
        "nothing of it is kept"
    );

    // 5. A model name that is a path.
    let mut evil = good_slot(
        &v11,
        "1.1.0",
        sign(&fleet.publisher, &v11, "fraud", "1.1.0", Some(2), None),
    );
    evil.model = "../../etc/x".into();
    assert_eq!(
        agent.apply(&envelope(vec![evil])).await.unwrap_err().code(),
        "invalid_slot"
    );

    // 6. A replayed older desired state.
    let old = envelope(vec![]);
    agent
        .apply(&envelope(vec![good_slot(
            &v11,
            "1.1.0",
            sign(&fleet.publisher, &v11, "fraud", "1.1.0", Some(2), None),
        )]))
        .await
        .unwrap();
    assert_eq!(
        agent.apply(&old).await.unwrap_err().code(),
        "replayed_desired_state"
    );

    // 7. Not signed by the server key at all, and meant for another device.
    let crafted = |key: &SigningKey, device: &str, issued_at: u64, expires_at: u64| {
        serde_json::to_vec(&sign_desired_state(
            key,
            &DesiredState {
                device_id: device.to_owned(),
                sequence: seq + 10,
                issued_at,
                expires_at,
                slots: vec![],
            },
        ))
        .unwrap()
    };
    let forged = crafted(&rogue, &device_id, now, now + 3600);
    assert_eq!(
        agent.apply(&forged).await.unwrap_err().code(),
        "bad_server_signature"
    );
    let other = crafted(&server_key, "someone-else", now, now + 3600);
    assert_eq!(
        agent.apply(&other).await.unwrap_err().code(),
        "wrong_device"
    );
    let expired = crafted(&server_key, &device_id, now - 7200, now - 3600);
    assert_eq!(
        agent.apply(&expired).await.unwrap_err().code(),
        "expired_desired_state"
    );

    // Through all of it, the verified model kept serving.
    assert_eq!(sink.version("fraud").as_deref(), Some("1.1.0"));
    assert_eq!(agent.state().installed["fraud"].version, "1.1.0");
}

#[tokio::test]
async fn a_forged_sequence_jump_is_overtaken_by_the_server_and_the_device_recovers() {
    let (fleet, _dir, sink, mut agent, device_id) = one_agent_serving("1.0.0").await;

    // Someone holding the server key pushes the device's sequence far ahead (within the jump
    // a device accepts): every state the real server signs is now a "replay" to it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let forged = agent.state().accepted_sequence + 500_000;
    let envelope = serde_json::to_vec(&sign_desired_state(
        &fleet.server_key().await,
        &DesiredState {
            device_id,
            sequence: forged,
            issued_at: now,
            expires_at: now + 3600,
            slots: vec![],
        },
    ))
    .unwrap();
    agent.apply(&envelope).await.unwrap();
    assert_eq!(agent.state().accepted_sequence, forged);

    // The device refuses the server's next state and says so in its report; the server then
    // signs above what the device applied, and the device takes states again.
    fleet.deploy("1.1.0").await;
    assert_eq!(
        agent.cycle(Duration::from_secs(0)).await.unwrap(),
        Cycle::StateRefused
    );
    assert_eq!(
        agent.cycle(Duration::from_secs(0)).await.unwrap(),
        Cycle::Done
    );
    assert_eq!(sink.version("fraud").as_deref(), Some("1.1.0"));
    assert_eq!(agent.state().accepted_sequence, forged + 1);
}

/// An operator asks a real agent to rotate its credential: the agent learns it on its poll,
/// stores the new credential before using it, the old one stops working once the new one is
/// used, and after a restart the agent polls with the new one.
#[tokio::test]
async fn an_operator_requested_credential_rotation_reaches_the_agent_and_survives_a_restart() {
    let fleet = Fleet::start().await;
    fleet.publish("fraud-1.0.0.onnx", "1.0.0", Some(1)).await;
    fleet.deploy("1.0.0").await;
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(MapSink::default());
    let mut agent = fleet.agent(dir.path(), sink.clone()).await;
    agent.cycle(Duration::from_secs(0)).await.unwrap();
    assert_eq!(sink.version("fraud").as_deref(), Some("1.0.0"));
    let state = StateDir::open(dir.path()).unwrap();
    let before = state.identity().unwrap().unwrap();

    fleet
        .call(
            "POST",
            &format!("/api/v1/devices/{}/rotate-credential", before.device_id),
            Value::Null,
            200,
        )
        .await;
    // This cycle's poll carries the request; the agent rotates and stores the new credential.
    agent.cycle(Duration::from_secs(0)).await.unwrap();
    let after = state.identity().unwrap().unwrap();
    assert_ne!(after.credential, before.credential, "rotated on disk");
    assert_eq!(after.device_id, before.device_id);
    assert!(after.credential_issued_at.is_some());
    // Its report in the same cycle already used the new one, so the old one is refused.
    let old = fleet
        .client
        .get(format!("{}/api/v1/agent/desired-state?wait=0", fleet.base))
        .bearer_auth(&before.credential)
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401, "the old credential no longer works");
    let device = fleet
        .call(
            "GET",
            &format!("/api/v1/devices/{}", before.device_id),
            Value::Null,
            200,
        )
        .await;
    assert_eq!(device["credential_rotation_requested"], false, "{device}");

    // A restart reads the new credential from the state directory and keeps polling.
    drop(agent);
    let mut restarted = fleet.agent(dir.path(), sink.clone()).await;
    restarted.restore().await.unwrap();
    assert!(matches!(
        restarted.cycle(Duration::from_secs(0)).await,
        Ok(Cycle::Done)
    ));
    assert_eq!(
        state.identity().unwrap().unwrap().credential,
        after.credential,
        "no second rotation without a reason"
    );
}

/// Revoking a publisher key reaches the devices through a trust-root rotation: after it,
/// a version signed only by the new key installs, where before the device refused it.
#[tokio::test]
async fn a_rotated_trust_root_carries_a_new_publisher_key_to_the_devices() {
    let (fleet, _dir, sink, mut agent, _id) = one_agent_serving("1.0.0").await;
    let new = SigningKey::generate(&mut rand::rngs::OsRng);
    fleet
        .call(
            "POST",
            "/api/v1/publisher-keys",
            json!({"name": "ml-2026", "public_key_pem": new.public_key().to_pem()}),
            201,
        )
        .await;
    fleet
        .call(
            "DELETE",
            &format!(
                "/api/v1/publisher-keys/{}",
                fleet.publisher.public_key().key_id()
            ),
            Value::Null,
            200,
        )
        .await;
    // 1.2.0, signed by the new key alone.
    let bytes = model_bytes("fraud-1.0.0.onnx");
    let bundle = sign(&new, &bytes, "fraud", "1.2.0", Some(3), None);
    fleet
        .call(
            "POST",
            "/api/v1/models/fraud/versions",
            json!({"version": "1.2.0", "artifact": {"sha256": hex_sha(&bytes), "size": bytes.len()}, "bundles": [bundle]}),
            201,
        )
        .await;
    fleet.deploy("1.2.0").await;
    agent.cycle(Duration::from_secs(0)).await.unwrap();
    // The device's root does not know the new key yet.
    assert_eq!(sink.version("fraud").as_deref(), Some("1.0.0"));
    assert_eq!(agent.trust_root_serial(), 1);

    // The old key vouches for the new root, the new key signs it too.
    let draft: flotilla_protocol::registry::TrustRoot = serde_json::from_value(
        fleet
            .call("GET", "/api/v1/trust/root-draft", Value::Null, 200)
            .await,
    )
    .unwrap();
    assert_eq!(draft.serial, 2);
    assert_eq!(draft.keys.len(), 1, "the revoked key is out");
    let signed =
        flotilla_protocol::signing::sign_trust_root(&draft, &[&fleet.publisher, &new]).unwrap();
    fleet
        .call(
            "POST",
            "/api/v1/trust/roots",
            serde_json::to_value(&signed).unwrap(),
            201,
        )
        .await;

    // The next cycle follows the root and, under it, installs 1.2.0 at once (the refusal
    // under the old root is not held against it).
    agent.cycle(Duration::from_secs(0)).await.unwrap();
    assert_eq!(agent.trust_root_serial(), 2);
    assert_eq!(sink.version("fraud").as_deref(), Some("1.2.0"));
    let devices = fleet.call("GET", "/api/v1/devices", Value::Null, 200).await;
    assert_eq!(devices["devices"][0]["slots"][0]["active_version"], "1.2.0");
}
