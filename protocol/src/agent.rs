//! The agent ↔ server protocol (v1): enrollment, the signed desired state, and reports.
//!
//! The desired state is a DSSE envelope signed by the server's ed25519 key, with its own payload
//! type so it can never be confused with a model signature. An agent accepts one only when the
//! signature verifies with the server key it was provisioned with (or pinned at enrollment), it
//! names this device, its sequence is not older than the last one accepted, and it has not
//! expired. Only then is the payload parsed. Publisher signatures on each model are checked
//! separately, against the agent's own trust root.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::signing::{pae, PublicKey, SigningKey};

/// DSSE payload type of a desired state.
pub const DESIRED_STATE_PAYLOAD_TYPE: &str = "application/vnd.flotilla.desired-state.v1+json";

/// Whether `name` is a valid model name ([`crate::names::ModelName`]). Such a name is safe as
/// a file name.
pub fn is_valid_model_name(name: &str) -> bool {
    crate::names::is_model_name(name)
}

/// What a device says about its hardware at enrollment.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HardwareProfile {
    /// CPU architecture (`x86_64`, `aarch64`).
    #[serde(default)]
    pub arch: String,
    /// Operating system (`linux`).
    #[serde(default)]
    pub os: String,
    /// Logical cores.
    #[serde(default)]
    pub cpu_cores: u32,
    /// Memory in MiB.
    #[serde(default)]
    pub memory_mib: u64,
    /// Accelerators, free-form (`jetson-orin`, `coral-tpu`).
    #[serde(default)]
    pub accelerators: Vec<String>,
}

/// Body of `POST /api/v1/enroll`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The one-time enrollment token (`fle_...`).
    pub enrollment_token: String,
    /// The device's ed25519 public key, standard base64 of its 32 bytes.
    pub device_public_key: String,
    /// A name for the device (defaults to the device id).
    #[serde(default)]
    pub name: Option<String>,
    /// Labels the device asks for. The enrollment token's labels win on conflict, and a key the
    /// token neither sets nor lists in `allowed_device_labels` is refused (`label_not_allowed`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Hardware profile.
    #[serde(default)]
    pub hardware: HardwareProfile,
    /// Agent version.
    #[serde(default)]
    pub agent_version: String,
}

/// Answer to `POST /api/v1/enroll`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollResponse {
    /// The new device's id.
    pub device_id: String,
    /// The device's API credential (`fld_...`), sent as `Authorization: Bearer`. Shown once.
    pub credential: String,
    /// `active`, or `pending` until an operator approves the device.
    pub status: String,
    /// The server's desired-state signing key (SPKI PEM), for agents that pin it at enrollment.
    pub server_public_key_pem: String,
    /// Suggested seconds between polls.
    pub poll_interval_secs: u64,
}

/// Header on desired-state answers (`200` and `304`) when an operator asked the device to
/// rotate its credential: the agent then calls [`crate::routes::AGENT_CREDENTIAL`].
pub const ROTATE_CREDENTIAL_HEADER: &str = "flotilla-rotate-credential";

/// Answer to `POST /api/v1/agent/credential`.
///
/// The credential presented keeps working until this one is first used; from then on only
/// this one works. A device should store it durably before using it: if this answer is lost,
/// it asks again with the credential it still has.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewCredential {
    /// The new device credential (`fld_...`). Shown once.
    pub credential: String,
}

/// One model the device should run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ModelSlot {
    /// Model name (also the slot's name on the device).
    pub model: String,
    /// Version to run.
    pub version: String,
    /// Lowercase hex sha256 of the model file.
    pub sha256: String,
    /// Its exact size in bytes: downloads stop there.
    pub size: u64,
    /// Where to download it (path on the server, or an absolute URL).
    pub url: String,
    /// The publisher signature bundles, verbatim.
    pub bundles: Vec<String>,
    /// Hybrid inference: when to ask the server instead of answering locally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<EscalationPolicy>,
    /// A rollout's shadow stage: a candidate version that runs beside this one on live inputs
    /// and never answers a request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowSlot>,
}

/// A candidate model run in shadow: the agent verifies it like any slot, runs it on (a sample
/// of) the requests the active version answers, compares the two answers and reports how often
/// they agree and how fast the candidate is. Its answers are never returned to a client.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ShadowSlot {
    /// Candidate version.
    pub version: String,
    /// Lowercase hex sha256 of its file.
    pub sha256: String,
    /// Its exact size in bytes.
    pub size: u64,
    /// Where to download it.
    pub url: String,
    /// The publisher signature bundles, verbatim.
    pub bundles: Vec<String>,
    /// Share of requests also run on the candidate, in (0, 1].
    pub sample_rate: f64,
    /// Two answers agree when every row has the same top class (largest value along the last
    /// dimension of every output), or when no value differs by more than this.
    pub tolerance: f64,
}

impl Eq for ShadowSlot {}

/// Hybrid inference for one slot. The agent answers locally; a request with a row whose
/// confidence (the largest value of `output` along its last dimension) is below `threshold` is
/// sent to the server's `server_model`, and the server's answer is returned. If the server does
/// not answer within `timeout_ms`, or is unreachable, the local answer is returned, marked so.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EscalationPolicy {
    /// Output tensor holding per-class scores or a confidence.
    pub output: String,
    /// Confidence below which a request escalates.
    pub threshold: f64,
    /// Model the server answers escalations with.
    pub server_model: String,
    /// Its version; the server's baseline for that model when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// Longest wait for the server's answer, in milliseconds.
    pub timeout_ms: u64,
}

impl Eq for EscalationPolicy {}

/// What a device should run, as signed by the server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DesiredState {
    /// The device this is for.
    pub device_id: String,
    /// Strictly increasing per device.
    pub sequence: u64,
    /// Issue time, Unix seconds.
    pub issued_at: u64,
    /// Expiry time, Unix seconds; agents refuse an expired state.
    pub expires_at: u64,
    /// The models to run.
    pub slots: Vec<ModelSlot>,
}

/// One signature of a [`SignedDesiredState`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StateSignature {
    /// Key id of the signer (hex sha256 of its SPKI DER).
    pub keyid: String,
    /// Standard base64 of the 64-byte ed25519 signature over the DSSE PAE.
    pub sig: String,
}

/// A desired state in its DSSE envelope: `GET /api/v1/agent/desired-state`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SignedDesiredState {
    /// [`DESIRED_STATE_PAYLOAD_TYPE`].
    pub payload_type: String,
    /// Standard base64 of the JSON [`DesiredState`].
    pub payload: String,
    /// Signatures over `pae(payload_type, payload)`.
    pub signatures: Vec<StateSignature>,
}

/// Signs a desired state with the server key.
pub fn sign_desired_state(key: &SigningKey, state: &DesiredState) -> SignedDesiredState {
    // Serialising these plain structs cannot fail; an empty payload would fail verification.
    let payload = serde_json::to_vec(state).unwrap_or_default();
    let sig = key.sign(&pae(DESIRED_STATE_PAYLOAD_TYPE, &payload));
    SignedDesiredState {
        payload_type: DESIRED_STATE_PAYLOAD_TYPE.to_owned(),
        payload: B64.encode(&payload),
        signatures: vec![StateSignature {
            keyid: key.public_key().key_id(),
            sig: B64.encode(sig),
        }],
    }
}

/// Why an agent refused a desired state. [`StateError::code`] is stable (reports carry it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not a desired-state envelope.
    #[error("malformed desired state: {0}")]
    Malformed(String),
    /// The envelope's payload type is not a desired state.
    #[error("wrong payload type `{0}`")]
    WrongPayloadType(String),
    /// No signature verifies with the server key.
    #[error("desired state is not signed by the server key")]
    BadSignature,
    /// It is for another device.
    #[error("desired state is for device {0}, not this one")]
    WrongDevice(String),
    /// Its sequence is older than one already accepted (a replay).
    #[error("desired state sequence {got} is older than the accepted {accepted}")]
    Replayed {
        /// Sequence received.
        got: u64,
        /// Highest accepted.
        accepted: u64,
    },
    /// It has expired.
    #[error("desired state expired at {0}")]
    Expired(u64),
    /// A slot is unusable (bad model name, bad digest).
    #[error("invalid slot: {0}")]
    InvalidSlot(String),
    /// Its sequence jumps further ahead of the accepted one than any server moves in one step:
    /// accepting it would let one signed state lock the device out of every later one.
    #[error("desired state sequence {got} jumps more than {MAX_SEQUENCE_JUMP} past the accepted {accepted}")]
    SequenceJump {
        /// Sequence received.
        got: u64,
        /// Highest accepted.
        accepted: u64,
    },
}

/// How far one desired state's sequence may move past the highest accepted one. The server
/// adds one per new state, so a device offline for years stays far below it.
pub const MAX_SEQUENCE_JUMP: u64 = 1_000_000;

impl StateError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            StateError::Malformed(_) => "malformed_desired_state",
            StateError::WrongPayloadType(_) => "wrong_payload_type",
            StateError::BadSignature => "bad_server_signature",
            StateError::WrongDevice(_) => "wrong_device",
            StateError::Replayed { .. } => "replayed_desired_state",
            StateError::Expired(_) => "expired_desired_state",
            StateError::InvalidSlot(_) => "invalid_slot",
            StateError::SequenceJump { .. } => "sequence_jump_refused",
        }
    }
}

/// Verifies a desired-state envelope (raw JSON bytes) for `device_id` at `now` (Unix seconds),
/// given the highest sequence already accepted. Parses the payload only after the signature
/// verified.
pub fn verify_desired_state(
    envelope: &[u8],
    server_key: &PublicKey,
    device_id: &str,
    accepted_sequence: u64,
    now: u64,
) -> Result<DesiredState, StateError> {
    let env: SignedDesiredState =
        serde_json::from_slice(envelope).map_err(|e| StateError::Malformed(e.to_string()))?;
    if env.payload_type != DESIRED_STATE_PAYLOAD_TYPE {
        return Err(StateError::WrongPayloadType(env.payload_type));
    }
    let payload = B64
        .decode(env.payload.as_bytes())
        .map_err(|e| StateError::Malformed(format!("payload is not base64: {e}")))?;
    let message = pae(&env.payload_type, &payload);
    let verified = env.signatures.iter().any(|s| {
        B64.decode(s.sig.as_bytes())
            .is_ok_and(|sig| server_key.verify(&message, &sig))
    });
    if !verified {
        return Err(StateError::BadSignature);
    }
    let state: DesiredState =
        serde_json::from_slice(&payload).map_err(|e| StateError::Malformed(e.to_string()))?;
    if state.device_id != device_id {
        return Err(StateError::WrongDevice(state.device_id));
    }
    if state.sequence < accepted_sequence {
        return Err(StateError::Replayed {
            got: state.sequence,
            accepted: accepted_sequence,
        });
    }
    if state.sequence > accepted_sequence.saturating_add(MAX_SEQUENCE_JUMP) {
        return Err(StateError::SequenceJump {
            got: state.sequence,
            accepted: accepted_sequence,
        });
    }
    if state.expires_at <= now {
        return Err(StateError::Expired(state.expires_at));
    }
    let mut seen = std::collections::BTreeSet::new();
    for slot in &state.slots {
        if !is_valid_model_name(&slot.model) {
            return Err(StateError::InvalidSlot(format!(
                "model name `{}`",
                slot.model
            )));
        }
        if !seen.insert(&slot.model) {
            return Err(StateError::InvalidSlot(format!(
                "model `{}` appears twice",
                slot.model
            )));
        }
        let hex_ok = slot.sha256.len() == 64
            && slot
                .sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex_ok {
            return Err(StateError::InvalidSlot(format!("digest `{}`", slot.sha256)));
        }
    }
    Ok(state)
}

/// How a slot is doing on the device.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SlotState {
    /// Downloading the artifact.
    Downloading,
    /// Verifying signatures and digest.
    Verifying,
    /// Serving.
    Active,
    /// The update failed; the previous version (if any) keeps serving.
    Failed,
    /// The device went back to the previous version on its own.
    RolledBack,
}

/// One slot in a report.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SlotStatus {
    /// Model name.
    pub model: String,
    /// The version this status is about (the target, for downloading/failed).
    pub version: String,
    /// State.
    pub state: SlotState,
    /// The version actually serving, if any.
    #[serde(default)]
    pub active_version: Option<String>,
    /// Why it failed (a stable code and message), when it did.
    #[serde(default)]
    pub reason: Option<String>,
    /// The shadow candidate of the slot, when the desired state names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowStatus>,
}

/// How a slot's shadow candidate is doing on the device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ShadowStatus {
    /// Candidate version.
    pub version: String,
    /// `downloading`, `verifying`, `active` (running in shadow) or `failed`.
    pub state: SlotState,
    /// Why it failed, when it did.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Latency quantiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// Inference health of one model version over a window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ModelHealth {
    /// Model.
    pub model: String,
    /// Version.
    pub version: String,
    /// Inferences in the window.
    pub inference_count: u64,
    /// Failed inferences in the window.
    pub error_count: u64,
    /// Latency.
    pub latency_ms: LatencyMs,
    /// Requests sent to the server under the slot's escalation policy (hybrid inference).
    #[serde(default)]
    pub escalations: u64,
    /// Of those, how many got no usable server answer and were answered locally.
    #[serde(default)]
    pub escalation_fallbacks: u64,
    /// Round-trip time of escalations that the server answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_latency_ms: Option<LatencyMs>,
    /// The shadow candidate's figures over the same window, when one ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowHealth>,
}

/// A shadow candidate's figures over a window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ShadowHealth {
    /// Candidate version.
    pub version: String,
    /// Requests run on both models and compared.
    pub compared: u64,
    /// Of those, how many agreed.
    pub agreed: u64,
    /// Candidate runs that failed or gave non-finite values.
    pub errors: u64,
    /// Requests the candidate skipped because it was still busy with earlier ones.
    #[serde(default)]
    pub skipped: u64,
    /// The candidate's own latency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<LatencyMs>,
}

/// A health window.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HealthWindow {
    /// Window start, Unix seconds.
    pub start: u64,
    /// Window end, Unix seconds.
    pub end: u64,
    /// Per model version.
    pub models: Vec<ModelHealth>,
    /// Agent resident memory in bytes.
    #[serde(default)]
    pub memory_rss_bytes: Option<u64>,
    /// Agent CPU use over the window, percent of one core.
    #[serde(default)]
    pub cpu_percent: Option<f64>,
}

/// Body of `POST /api/v1/agent/report`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AgentReport {
    /// Per-device report counter: the server ignores a report it has already seen (replays
    /// from the offline queue are idempotent).
    pub report_seq: u64,
    /// When the agent made it, Unix seconds.
    pub created_at: u64,
    /// The desired-state sequence the device has applied.
    pub applied_sequence: u64,
    /// Per slot.
    #[serde(default)]
    pub slots: Vec<SlotStatus>,
    /// Health since the previous report.
    #[serde(default)]
    pub health: Option<HealthWindow>,
    /// How the device judges its desired state: a refusal, staleness.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_state: Option<DesiredStateHealth>,
}

/// How a device judges its desired state, as its report says: the server learns of a state
/// it refused (wrong key, expired, junk) and of a device serving past its state's expiry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DesiredStateHealth {
    /// The last desired state refused since one was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<StateRefusal>,
    /// True when the last verified state is past its expiry, judged on the device's monotonic
    /// clock from the newest `issued_at` seen (not its wall clock). The device keeps serving
    /// its verified models.
    #[serde(default)]
    pub stale: bool,
    /// Seconds since the device last verified a desired state (monotonic), if it has this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_secs: Option<u64>,
    /// The serial of the trust root the device checks signatures with (1 until a rotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_root_serial: Option<u64>,
}

/// A desired state the device refused.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct StateRefusal {
    /// Stable code ([`StateError::code`]).
    pub code: String,
    /// Detail.
    pub message: String,
    /// How many states in a row were refused.
    pub count: u64,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn key(seed: u64) -> SigningKey {
        SigningKey::generate(&mut rand::rngs::StdRng::seed_from_u64(seed))
    }

    fn state() -> DesiredState {
        DesiredState {
            device_id: "dev-1".into(),
            sequence: 5,
            issued_at: 1000,
            expires_at: 2000,
            slots: vec![ModelSlot {
                model: "fraud".into(),
                version: "1.0.0".into(),
                sha256: "a".repeat(64),
                size: 10,
                url: "/api/v1/artifacts/sha256/aaaa".into(),
                bundles: vec![],
                escalation: None,
                shadow: None,
            }],
        }
    }

    fn signed(k: &SigningKey, s: &DesiredState) -> Vec<u8> {
        serde_json::to_vec(&sign_desired_state(k, s)).unwrap()
    }

    #[test]
    fn round_trip() {
        let k = key(1);
        let got =
            verify_desired_state(&signed(&k, &state()), &k.public_key(), "dev-1", 5, 1500).unwrap();
        assert_eq!(got, state());
    }

    #[test]
    fn refusals() {
        let k = key(1);
        let other = key(2);
        let env = signed(&k, &state());
        let check = |env: &[u8], device: &str, seq: u64, now: u64| {
            verify_desired_state(env, &k.public_key(), device, seq, now)
                .unwrap_err()
                .code()
        };
        assert_eq!(
            check(&signed(&other, &state()), "dev-1", 0, 1500),
            "bad_server_signature"
        );
        assert_eq!(check(&env, "dev-2", 0, 1500), "wrong_device");
        assert_eq!(check(&env, "dev-1", 6, 1500), "replayed_desired_state");
        assert_eq!(check(&env, "dev-1", 0, 2000), "expired_desired_state");
        let mut far = state();
        far.sequence = u64::MAX;
        assert_eq!(
            check(&signed(&k, &far), "dev-1", 5, 1500),
            "sequence_jump_refused"
        );
        far.sequence = 5 + MAX_SEQUENCE_JUMP;
        verify_desired_state(&signed(&k, &far), &k.public_key(), "dev-1", 5, 1500).unwrap();
        assert_eq!(check(b"{}", "dev-1", 0, 1500), "malformed_desired_state");
        let mut evil = state();
        evil.slots[0].model = "../../etc/x".into();
        assert_eq!(check(&signed(&k, &evil), "dev-1", 0, 1500), "invalid_slot");
        // A tampered payload no longer verifies.
        let mut env: SignedDesiredState = serde_json::from_slice(&env).unwrap();
        let mut s = state();
        s.slots[0].version = "9.9.9".into();
        env.payload = B64.encode(serde_json::to_vec(&s).unwrap());
        assert_eq!(
            check(&serde_json::to_vec(&env).unwrap(), "dev-1", 0, 1500),
            "bad_server_signature"
        );
        // Another payload type (a model signature, say) is refused before anything else.
        env.payload_type = "application/vnd.in-toto+json".into();
        assert_eq!(
            check(&serde_json::to_vec(&env).unwrap(), "dev-1", 0, 1500),
            "wrong_payload_type"
        );
    }

    #[test]
    fn model_names() {
        assert!(is_valid_model_name("fraud-v2.1"));
        for bad in ["", "../x", "a/b", "A", ".x", "a..b"] {
            assert!(!is_valid_model_name(bad), "{bad}");
        }
    }
}
