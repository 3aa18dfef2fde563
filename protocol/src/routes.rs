//! Route paths shared by the server (which serves them) and clients (which call them).

/// Liveness: the process is up.
pub const HEALTHZ: &str = "/healthz";
/// Readiness: the database answers.
pub const READYZ: &str = "/readyz";
/// Prometheus metrics.
pub const METRICS: &str = "/metrics";
/// The OpenAPI document of the management API.
pub const OPENAPI: &str = "/api/openapi.json";
/// Prefix of the versioned management and agent API.
pub const API_V1: &str = "/api/v1";
/// API tokens (admin only).
pub const TOKENS: &str = "/api/v1/tokens";
/// The audit log.
pub const AUDIT: &str = "/api/v1/audit";
/// Who the presented token belongs to.
pub const WHOAMI: &str = "/api/v1/whoami";
/// Publisher keys (admin to change, any role to read).
pub const PUBLISHER_KEYS: &str = "/api/v1/publisher-keys";
/// The global signing threshold.
pub const TRUST_THRESHOLD: &str = "/api/v1/trust/threshold";
/// The exported trust root for provisioning agents.
pub const TRUST_ROOT: &str = "/api/v1/trust-root";
/// What the next trust-root rotation would sign.
pub const TRUST_ROOT_DRAFT: &str = "/api/v1/trust/root-draft";
/// Rotated trust roots: publish (admin) and list.
pub const TRUST_ROOTS: &str = "/api/v1/trust/roots";
/// Rotated trust roots for devices (device credential), `?after=SERIAL`.
pub const AGENT_TRUST_ROOTS: &str = "/api/v1/agent/trust-roots";
/// Response header of the desired-state route: the serial of the newest trust root, so an
/// agent behind it fetches [`AGENT_TRUST_ROOTS`]. Unsigned; the roots themselves are signed.
pub const TRUST_ROOT_HEADER: &str = "flotilla-trust-root";
/// Models.
pub const MODELS: &str = "/api/v1/models";
/// Content-addressed artifacts: append `/{hex}`.
pub const ARTIFACTS_SHA256: &str = "/api/v1/artifacts/sha256";

/// `/api/v1/models/{name}`.
pub fn model(name: &str) -> String {
    format!("{MODELS}/{name}")
}

/// `/api/v1/models/{name}/versions`.
pub fn model_versions(name: &str) -> String {
    format!("{MODELS}/{name}/versions")
}

/// `/api/v1/models/{name}/versions/{version}`.
pub fn model_version(name: &str, version: &str) -> String {
    format!("{MODELS}/{name}/versions/{version}")
}

/// `/api/v1/artifacts/sha256/{hex}`.
pub fn artifact(hex: &str) -> String {
    format!("{ARTIFACTS_SHA256}/{hex}")
}

/// Device enrollment (enrollment token in the body, no API token).
pub const ENROLL: &str = "/api/v1/enroll";
/// The device's signed desired state (device credential).
pub const AGENT_DESIRED_STATE: &str = "/api/v1/agent/desired-state";
/// Device reports (device credential).
pub const AGENT_REPORT: &str = "/api/v1/agent/report";
/// A new device credential for the device presenting its current one (device credential).
pub const AGENT_CREDENTIAL: &str = "/api/v1/agent/credential";
/// Rollouts (operator to create and act; viewer to read).
pub const ROLLOUTS: &str = "/api/v1/rollouts";
/// Saved rollout policies.
pub const ROLLOUT_POLICIES: &str = "/api/v1/rollout-policies";
/// Webhooks receiving rollout transitions (admin).
pub const WEBHOOKS: &str = "/api/v1/webhooks";

/// `/api/v1/rollouts/{id}`.
pub fn rollout(id: &str) -> String {
    format!("{ROLLOUTS}/{id}")
}

/// `/api/v1/rollouts/{id}/{action}` for `pause`, `resume`, `approve`, `abort`, `promote`.
pub fn rollout_action(id: &str, action: &str) -> String {
    format!("{ROLLOUTS}/{id}/{action}")
}

/// `/api/v1/rollout-policies/{name}`.
pub fn rollout_policy(name: &str) -> String {
    format!("{ROLLOUT_POLICIES}/{name}")
}
