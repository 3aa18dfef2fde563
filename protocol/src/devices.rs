//! Device management: enrollment tokens, devices and deployments.

use crate::agent::EscalationPolicy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn default_expiry() -> u64 {
    24 * 3600
}

fn one() -> u32 {
    1
}

/// Body of `POST /api/v1/enrollment-tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollmentTokenRequest {
    /// What it is for (`plant-7 gateways`).
    pub name: String,
    /// Labels every device enrolling with it gets (they win over the device's own).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Lifetime in seconds (default one day, at most a year).
    #[serde(default = "default_expiry")]
    pub expires_in_secs: u64,
    /// How many devices may enroll with it (default 1).
    #[serde(default = "one")]
    pub max_uses: u32,
    /// Enrolled devices wait as `pending` until an operator approves them.
    #[serde(default)]
    pub require_approval: bool,
    /// Label keys a device may set itself when it enrolls (default none). A device asking for
    /// any other key is refused (`label_not_allowed`); the token's own `labels` always win.
    #[serde(default)]
    pub allowed_device_labels: Vec<String>,
}

/// An enrollment token as listed (never the secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollmentTokenInfo {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// First characters of the secret.
    pub prefix: String,
    /// Labels applied.
    pub labels: BTreeMap<String, String>,
    /// Label keys a device may set itself when it enrolls.
    #[serde(default)]
    pub allowed_device_labels: Vec<String>,
    /// Whether devices need approval.
    pub require_approval: bool,
    /// Allowed uses.
    pub max_uses: u32,
    /// Uses so far.
    pub uses: u32,
    /// Creator.
    pub created_by: String,
    /// Creation (RFC 3339).
    pub created_at: String,
    /// Expiry (RFC 3339).
    pub expires_at: String,
    /// Revocation (RFC 3339).
    pub revoked_at: Option<String>,
}

/// Answer to `POST /api/v1/enrollment-tokens`: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedEnrollmentToken {
    /// Metadata.
    #[serde(flatten)]
    pub info: EnrollmentTokenInfo,
    /// The secret (`fle_...`) to give the agent (`--enroll-token`).
    pub token: String,
}

/// Body of `GET /api/v1/enrollment-tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollmentTokenList {
    /// Tokens, oldest first.
    pub tokens: Vec<EnrollmentTokenInfo>,
}

/// A device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceInfo {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// `active`, `pending` or `revoked`.
    pub status: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Hardware profile.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub hardware: serde_json::Value,
    /// Agent version.
    pub agent_version: String,
    /// Enrollment (RFC 3339).
    pub enrolled_at: String,
    /// Last contact (RFC 3339).
    pub last_seen_at: Option<String>,
    /// Sequence of the last desired state issued to it.
    pub desired_sequence: u64,
    /// Sequence it last reported applied.
    pub applied_sequence: u64,
    /// What it should run: model → version.
    pub desired: BTreeMap<String, String>,
    /// Per-slot status as last reported.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub slots: serde_json::Value,
    /// Last reported health window.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub health: Option<serde_json::Value>,
    /// An operator asked the device to rotate its credential and it has not used a new one yet.
    #[serde(default)]
    pub credential_rotation_requested: bool,
}

/// Body of `GET /api/v1/devices`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceList {
    /// Devices, by enrollment time.
    pub devices: Vec<DeviceInfo>,
}

/// Body of `PUT /api/v1/devices/{id}/labels`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SetLabelsRequest {
    /// The device's new labels (replacing the old).
    pub labels: BTreeMap<String, String>,
}

/// Body of `PUT /api/v1/deployments`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// Model name.
    pub model: String,
    /// Version to run.
    pub version: String,
    /// Label selector, `key=value[,key=value...]`; empty selects every device.
    #[serde(default)]
    pub selector: String,
    /// Hybrid inference: hard inputs go to a server model.
    #[serde(default)]
    pub escalation: Option<EscalationPolicy>,
}

/// A deployment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentInfo {
    /// Id.
    pub id: String,
    /// Model.
    pub model: String,
    /// Version.
    pub version: String,
    /// Canonical selector.
    pub selector: String,
    /// Who set it.
    pub created_by: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// Devices it currently selects (a more specific deployment of the same model wins).
    pub devices: u64,
    /// Hybrid inference policy, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<EscalationPolicy>,
}

/// Body of `GET /api/v1/deployments`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeploymentList {
    /// Deployments by model and selector.
    pub deployments: Vec<DeploymentInfo>,
}

/// One model version's figures from one health window of one device: a point of
/// `GET /api/v1/devices/{id}/health`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthPoint {
    /// When the server received the report (RFC 3339).
    pub at: String,
    /// Window start, Unix seconds (the agent's clock).
    pub start: u64,
    /// Window end, Unix seconds (the agent's clock).
    pub end: u64,
    /// Model.
    pub model: String,
    /// Version.
    pub version: String,
    /// Inferences in the window.
    pub inference_count: u64,
    /// Failed inferences in the window.
    pub error_count: u64,
    /// Latency over the window.
    pub latency_ms: crate::agent::LatencyMs,
    /// Agent resident memory at the window's end, bytes.
    #[serde(default)]
    pub memory_rss_bytes: Option<u64>,
}

/// Body of `GET /api/v1/devices/{id}/health`: the device's reported health windows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceHealthHistory {
    /// The device.
    pub device_id: String,
    /// One point per model version per report, oldest first.
    pub points: Vec<HealthPoint>,
}

/// A model version's figures over one time bucket, summed over a cohort's devices.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CohortHealthPoint {
    /// Bucket start, Unix seconds (when the server received the reports).
    pub start: u64,
    /// Model.
    pub model: String,
    /// Version.
    pub version: String,
    /// Devices that reported this version in the bucket.
    pub devices: u64,
    /// Inferences.
    pub inference_count: u64,
    /// Failed inferences.
    pub error_count: u64,
    /// Errors / inferences (0 without inferences).
    pub error_rate: f64,
    /// Each percentile the inference-weighted mean of the windows' percentiles; absent when the
    /// bucket has no inferences.
    #[serde(default)]
    pub latency_ms: Option<crate::agent::LatencyMs>,
}

/// Body of `GET /api/v1/cohort-health`: how the devices matching a selector behaved over time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CohortHealth {
    /// Canonical selector of the cohort (empty: every device).
    pub selector: String,
    /// Device status the cohort was limited to, if any.
    #[serde(default)]
    pub status: Option<String>,
    /// Model the points are limited to, if any.
    #[serde(default)]
    pub model: Option<String>,
    /// Devices in the cohort.
    pub devices: u64,
    /// Bucket width, seconds.
    pub bucket_secs: u64,
    /// Points by bucket, then model and version.
    pub points: Vec<CohortHealthPoint>,
    /// True when older reports were left out to bound the answer (the oldest buckets may be
    /// incomplete).
    pub truncated: bool,
}

/// A device's public key as `POST /api/v1/enroll` carries it (`device_public_key`): the
/// standard base64 of the 32 raw bytes of an ed25519 key, not PEM or SPKI.
#[derive(Clone, PartialEq, Eq)]
pub struct DevicePublicKey(ed25519_dalek::VerifyingKey);

/// Why a `device_public_key` was refused. The message is the one the server answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("device_public_key must be the base64 of a 32-byte ed25519 public key")]
pub struct DeviceKeyError;

impl DevicePublicKey {
    /// Parses the enrollment encoding: standard base64 (padded) of 32 bytes that are an
    /// ed25519 point of full order.
    pub fn parse(text: &str) -> Result<Self, DeviceKeyError> {
        use base64::Engine as _;
        let bytes: [u8; 32] = base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(DeviceKeyError)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| DeviceKeyError)?;
        if key.is_weak() {
            return Err(DeviceKeyError);
        }
        Ok(Self(key))
    }

    /// The public half of a device's signing key.
    pub fn of(key: &crate::signing::SigningKey) -> Self {
        Self(key.verifying_key())
    }

    /// The enrollment encoding (standard base64 of the 32 raw bytes).
    pub fn to_base64(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(self.0.as_bytes())
    }
}

impl std::fmt::Debug for DevicePublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DevicePublicKey({})", self.to_base64())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod key_tests {
    use super::*;
    use crate::signing::SigningKey;

    #[test]
    fn device_keys_round_trip_and_junk_is_refused() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let public = DevicePublicKey::of(&key);
        let text = public.to_base64();
        assert_eq!(text.len(), 44);
        assert_eq!(DevicePublicKey::parse(&text), Ok(public.clone()));
        // The encoding is the SPKI's last 32 bytes, as it always was on the wire.
        let der = key.public_key().to_der();
        use base64::Engine as _;
        assert_eq!(
            text,
            base64::engine::general_purpose::STANDARD.encode(&der[der.len() - 32..])
        );
        for bad in [
            "",
            "AAAA",
            &text[..43],
            &format!("{text}AAAA"),
            &text.replace('+', "-").replace('/', "_").replace('=', ""),
            // The identity point: of small order, every signature under it is worthless.
            "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            if bad == text {
                continue;
            }
            assert_eq!(DevicePublicKey::parse(bad), Err(DeviceKeyError), "{bad}");
        }
    }
}
