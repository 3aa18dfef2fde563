//! Staged, health-gated rollouts: policies, rollouts, their transitions, and webhooks.
//!
//! A rollout moves one model, for the devices matching a label selector, from the version they
//! run to a target version in stages. Stage k holds the devices whose bucket
//! (first 4 bytes of `sha256(rollout_id ‖ device_id)` mod 10000) is below its share. Each stage
//! bakes for a minimum time and advances only when every gate holds; on a breach the rollout
//! pauses or rolls back, as its policy says.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn default_sample_rate() -> f64 {
    1.0
}

fn default_tolerance() -> f64 {
    1e-3
}

fn default_deadline() -> u64 {
    600
}

/// What a stage checks before it lets the rollout go on. A gate left out is not checked.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Gates {
    /// At least this many of the stage's devices have reported the candidate running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_devices_reporting: Option<u64>,
    /// At most this share (0–1) of the stage's devices failed to activate the candidate (a
    /// device that has not by its activation deadline counts as failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failed_ratio: Option<f64>,
    /// At most this share (0–1) of the candidate's inferences failed or gave NaN/infinite values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    /// The candidate's p95 latency is at most this multiple of the p95 of the devices still on
    /// the previous version (not checked while those devices report no inferences).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p95_latency_ratio: Option<f64>,
    /// In a shadow stage: at least this share (0–1) of compared requests agreed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_shadow_agreement: Option<f64>,
}

/// One stage of a rollout.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// Cumulative share of the selector's devices, 0–100 (exclusive with `devices`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Cumulative number of the selector's devices (exclusive with `percent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<u64>,
    /// Shortest time the stage runs before it may advance, in seconds.
    #[serde(default)]
    pub bake_secs: u64,
    /// Gates checked during and at the end of the stage.
    #[serde(default)]
    pub gates: Gates,
    /// The stage waits for an operator's `approve` once its gates hold.
    #[serde(default)]
    pub manual_approval: bool,
    /// Shadow stage: the stage's devices run the candidate beside their current version, which
    /// keeps answering every request.
    #[serde(default)]
    pub shadow: bool,
}

/// What happens when a gate is breached.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Stop where it is; an operator resumes or aborts.
    Pause,
    /// Send every device of the rollout back to its previous version.
    #[default]
    Rollback,
}

/// How a rollout proceeds: reusable by name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RolloutPolicy {
    /// The stages, growing.
    pub stages: Vec<Stage>,
    /// On a breached gate (default `rollback`).
    #[serde(default)]
    pub on_failure: OnFailure,
    /// Seconds a device has, from its stage opening, to report the candidate active.
    #[serde(default = "default_deadline")]
    pub activation_deadline_secs: u64,
    /// Shadow stages: share of requests also run on the candidate, in (0, 1].
    #[serde(default = "default_sample_rate")]
    pub shadow_sample_rate: f64,
    /// Shadow stages: largest absolute difference that still counts as agreement when the top
    /// class differs.
    #[serde(default = "default_tolerance")]
    pub shadow_tolerance: f64,
}

/// Body of `POST /api/v1/rollouts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateRolloutRequest {
    /// Model name.
    pub model: String,
    /// Version to roll out.
    pub version: String,
    /// Label selector (`key=value,...`); empty means every device.
    #[serde(default)]
    pub selector: String,
    /// The policy, given inline (exclusive with `policy_name`).
    #[serde(default)]
    pub policy: Option<RolloutPolicy>,
    /// A saved policy's name (exclusive with `policy`).
    #[serde(default)]
    pub policy_name: Option<String>,
}

/// Body of `PUT /api/v1/rollout-policies/{name}` and what `GET` returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SavedPolicy {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// The policy.
    pub policy: RolloutPolicy,
    /// Who saved it last.
    #[serde(default)]
    pub updated_by: String,
    /// When (RFC 3339).
    #[serde(default)]
    pub updated_at: String,
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// The current stage is baking.
    Running,
    /// The current stage's gates hold; it waits for an operator's approval.
    WaitingApproval,
    /// Stopped by an operator or a breached gate; devices stay where they are.
    Paused,
    /// Every stage passed: the version is now the selector's deployment.
    Completed,
    /// A gate was breached and every device went back to its previous version.
    RolledBack,
    /// An operator aborted it and every device went back to its previous version.
    Aborted,
}

impl RolloutState {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Running => "running",
            RolloutState::WaitingApproval => "waiting_approval",
            RolloutState::Paused => "paused",
            RolloutState::Completed => "completed",
            RolloutState::RolledBack => "rolled_back",
            RolloutState::Aborted => "aborted",
        }
    }

    /// Parses [`RolloutState::as_str`].
    pub fn parse(s: &str) -> Option<RolloutState> {
        [
            RolloutState::Running,
            RolloutState::WaitingApproval,
            RolloutState::Paused,
            RolloutState::Completed,
            RolloutState::RolledBack,
            RolloutState::Aborted,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    /// Whether the rollout still holds devices (running, waiting or paused).
    pub fn is_open(self) -> bool {
        matches!(
            self,
            RolloutState::Running | RolloutState::WaitingApproval | RolloutState::Paused
        )
    }
}

/// One gate's value in the current stage against its threshold.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GateValue {
    /// Gate name, as in [`Gates`].
    pub gate: String,
    /// Measured value; `None` while there is nothing to measure.
    pub value: Option<f64>,
    /// The policy's threshold.
    pub threshold: f64,
    /// `pass`, `fail` or `pending` (not measurable yet).
    pub status: String,
}

/// How many of the current stage's devices are where.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeviceCounts {
    /// Devices matching the selector.
    pub matching: u64,
    /// Of those, devices in the current stage's cohort.
    pub in_stage: u64,
    /// Cohort devices running the candidate (in shadow, for a shadow stage).
    pub active: u64,
    /// Cohort devices still downloading or not yet reporting.
    pub pending: u64,
    /// Cohort devices that failed to activate it, or missed the deadline.
    pub failed: u64,
    /// Cohort devices that reported health for the candidate this stage.
    pub reporting: u64,
}

/// One recorded transition of a rollout.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Transition {
    /// When (RFC 3339).
    pub at: String,
    /// Who: `engine`, or the operator token's name.
    pub actor: String,
    /// `created`, `advanced`, `paused`, `resumed`, `waiting_approval`, `approved`, `completed`,
    /// `rolled_back`, `aborted`, `promoted`.
    pub event: String,
    /// State before.
    pub from_state: Option<RolloutState>,
    /// State after.
    pub to_state: RolloutState,
    /// Stage index (0-based) after the transition.
    pub stage: u32,
    /// Why, in words.
    pub reason: String,
    /// The numbers behind it: device counts and gate values at that moment.
    #[serde(default)]
    pub numbers: serde_json::Value,
}

/// A rollout as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutInfo {
    /// Id.
    pub id: String,
    /// Model.
    pub model: String,
    /// Target version.
    pub version: String,
    /// Canonical selector text.
    pub selector: String,
    /// The policy it follows.
    pub policy: RolloutPolicy,
    /// The saved policy it was created from, if any.
    #[serde(default)]
    pub policy_name: Option<String>,
    /// State.
    pub state: RolloutState,
    /// Current stage (0-based).
    pub stage: u32,
    /// When the current stage opened (RFC 3339).
    pub stage_started_at: String,
    /// Creator.
    pub created_by: String,
    /// Creation (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
    /// The last transition's reason.
    pub reason: String,
    /// Devices of the current stage, by state (filled by `GET /api/v1/rollouts/{id}`).
    #[serde(default)]
    pub devices: DeviceCounts,
    /// The current stage's gates against their thresholds (filled by `GET .../{id}`).
    #[serde(default)]
    pub gates: Vec<GateValue>,
    /// Every transition, oldest first (filled by `GET .../{id}`).
    #[serde(default)]
    pub history: Vec<Transition>,
    /// Versions the devices of the selector ran before, with how many ran each.
    #[serde(default)]
    pub previous_versions: BTreeMap<String, u64>,
}

/// Body of the pause, resume, approve, abort and promote actions (all optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RolloutActionRequest {
    /// Why, recorded in the rollout's history.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Body of `POST /api/v1/webhooks`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// `http://` or `https://` URL that receives rollout transitions as JSON POSTs.
    pub url: String,
    /// Shared secret for the `X-Flotilla-Signature: sha256=<hex HMAC-SHA256 of the body>`
    /// header; generated and returned once when absent.
    #[serde(default)]
    pub secret: Option<String>,
}

/// A webhook as listed (the secret only in the create answer).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookInfo {
    /// Id.
    pub id: String,
    /// Target URL.
    pub url: String,
    /// The secret, only in the answer to its creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Creator.
    pub created_by: String,
    /// Creation (RFC 3339).
    pub created_at: String,
}

/// What a webhook receives for each transition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookEvent {
    /// Always `rollout.transition`.
    pub kind: String,
    /// Rollout id.
    pub rollout_id: String,
    /// Model.
    pub model: String,
    /// Target version.
    pub version: String,
    /// The transition.
    pub transition: Transition,
}

/// The HTTP header carrying a webhook body's HMAC.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "X-Flotilla-Signature";
