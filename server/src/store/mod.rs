//! Metadata storage: one [`Store`] trait, one implementation per backend.
//!
//! Postgres is the production backend; SQLite is the embedded, zero-configuration default. SQL
//! that both backends accept verbatim lives once, in [`shared`], and each backend adds what only
//! it can do. The conformance suite in `tests/api/store.rs` runs every operation on both.

mod postgres;
mod rollouts;
mod shared;
mod sqlite;

pub use postgres::PostgresStore;
pub use rollouts::{PolicyRecord, RolloutEventRecord, RolloutRecord, WebhookRecord};
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use flotilla_protocol::registry::{SignerInfo, TensorInfo};
use flotilla_protocol::tokens::Role;
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use uuid::Uuid;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// SQLite (embedded).
    Sqlite,
}

/// Storage failures, already sorted by what the caller can do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The addressed row does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A uniqueness rule was violated.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached right now.
    #[error("database unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// Anything else.
    #[error("database error")]
    Other(#[source] anyhow::Error),
}

impl StoreError {
    /// Sorts an sqlx error; `what` names the thing for not-found and conflict messages.
    pub(crate) fn from_sqlx(what: &str, e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound(what.to_owned()),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(format!("{what} already exists"))
            }
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_) => StoreError::Unavailable(e.into()),
            _ => StoreError::Other(e.into()),
        }
    }
}

/// An API token as stored (the secret itself is never stored, only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Token id.
    pub id: Uuid,
    /// Who or what uses it.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// First characters of the secret, for recognising it in listings.
    pub prefix: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry, if any.
    pub expires_at: Option<DateTime<Utc>>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last successful authentication (updated at most once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
}

impl TokenRecord {
    /// Whether the token may authenticate at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

/// A token to insert.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Token id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Hex sha256 of the secret.
    pub secret_hash: String,
    /// First characters of the secret.
    pub prefix: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

/// How a call that changed (or tried to change) state ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    /// It succeeded (2xx/3xx).
    Success,
    /// Authentication or authorisation refused it (401/403).
    Denied,
    /// It failed (any other 4xx/5xx).
    Failed,
}

impl AuditOutcome {
    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failed => "failed",
        }
    }

    /// The outcome an HTTP status means.
    pub fn from_status(status: u16) -> Self {
        match status {
            401 | 403 => AuditOutcome::Denied,
            s if s >= 400 => AuditOutcome::Failed,
            _ => AuditOutcome::Success,
        }
    }
}

/// One audit record: who did what, when, and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// Monotonic id (newest is largest).
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: the token's name, or `anonymous`.
    pub actor: String,
    /// The token used, when one was valid.
    pub token_id: Option<Uuid>,
    /// HTTP method.
    pub method: String,
    /// Route template, e.g. `/api/v1/tokens/{id}`.
    pub route: String,
    /// Concrete path.
    pub path: String,
    /// HTTP status answered.
    pub status: u16,
    /// Outcome.
    pub outcome: String,
    /// What the handler recorded about the change (ids, names), if anything.
    pub detail: Option<serde_json::Value>,
}

/// An audit record to append.
#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: String,
    /// Token used.
    pub token_id: Option<Uuid>,
    /// HTTP method.
    pub method: String,
    /// Route template.
    pub route: String,
    /// Concrete path.
    pub path: String,
    /// Status.
    pub status: u16,
    /// Outcome.
    pub outcome: AuditOutcome,
    /// Handler-provided detail.
    pub detail: Option<serde_json::Value>,
}

/// Which audit records to read: newest first, paged by id.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only records older than this id.
    pub before_id: Option<i64>,
    /// Only this actor.
    pub actor: Option<String>,
    /// Leave out what devices did (their reports, by actors named `device:...`).
    pub exclude_devices: bool,
    /// At most this many (1..=1000).
    pub limit: u32,
}

/// A registered publisher key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherKeyRecord {
    /// Hex sha256 of the SPKI DER.
    pub key_id: String,
    /// Unique name.
    pub name: String,
    /// `ed25519`, `ecdsa-p256`, `ecdsa-p384`.
    pub algorithm: String,
    /// SPKI PEM.
    pub public_key_pem: String,
    /// Registration time.
    pub created_at: DateTime<Utc>,
    /// Revocation time.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A rotated trust root as stored: the publishers' envelope, kept byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustRootRecord {
    /// Its serial (2 and up).
    pub serial: u64,
    /// The signed envelope (JSON).
    pub envelope: String,
    /// Who uploaded it.
    pub created_by: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A model: a named series of versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRecord {
    /// Id.
    pub id: Uuid,
    /// Unique name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Per-model signing threshold.
    pub signing_threshold: Option<u32>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

/// A published model version.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRecord {
    /// Id.
    pub id: Uuid,
    /// The model's id.
    pub model_id: Uuid,
    /// The model's name.
    pub model_name: String,
    /// Semantic version.
    pub version: String,
    /// Hex sha256 of the model file.
    pub artifact_sha256: String,
    /// Its size.
    pub artifact_size: u64,
    /// The signature bundles, verbatim.
    pub bundles: Vec<String>,
    /// Publishers whose signatures counted.
    pub signers: Vec<SignerInfo>,
    /// Input tensors.
    pub inputs: Vec<TensorInfo>,
    /// Output tensors.
    pub outputs: Vec<TensorInfo>,
    /// Facts the publishers signed.
    pub signed_facts: Option<serde_json::Value>,
    /// Token name of the publisher.
    pub published_by: String,
    /// Publication time.
    pub created_at: DateTime<Utc>,
    /// Yank time.
    pub yanked_at: Option<DateTime<Utc>>,
    /// Yank reason.
    pub yank_reason: Option<String>,
}

/// An enrollment token as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentTokenRecord {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Hex sha256 of the secret.
    pub secret_hash: String,
    /// First characters of the secret.
    pub prefix: String,
    /// Labels given to devices that enroll with it.
    pub labels: BTreeMap<String, String>,
    /// Devices wait as `pending` until approved.
    pub require_approval: bool,
    /// How many devices may use it.
    pub max_uses: u32,
    /// How many have.
    pub uses: u32,
    /// Creator's token name.
    pub created_by: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// Revocation.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Label keys a device may set itself at enrollment (beside the token's own labels).
    pub allowed_device_labels: Vec<String>,
}

/// A device as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRecord {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// ed25519 public key, base64.
    pub public_key: String,
    /// Hex sha256 of the device credential.
    pub credential_hash: String,
    /// `active`, `pending` or `revoked`.
    pub status: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Hardware profile.
    pub hardware: serde_json::Value,
    /// Agent version.
    pub agent_version: String,
    /// The enrollment token used.
    pub enrollment_token_id: Option<Uuid>,
    /// Enrollment time.
    pub enrolled_at: DateTime<Utc>,
    /// Last contact.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// Sequence of the last desired state issued.
    pub desired_sequence: u64,
    /// Hash of that state's slots.
    pub desired_hash: Option<String>,
    /// That state's signed envelope.
    pub desired_envelope: Option<serde_json::Value>,
    /// That state's expiry.
    pub desired_expires_at: Option<DateTime<Utc>>,
    /// Sequence the device last reported applied.
    pub applied_sequence: u64,
    /// Last report counter seen.
    pub last_report_seq: u64,
    /// Last reported slot statuses.
    pub slot_status: serde_json::Value,
    /// Last reported health window.
    pub last_health: Option<serde_json::Value>,
    /// Hex sha256 of a credential issued by a rotation and not used yet: it and
    /// `credential_hash` both work until the device first presents it.
    pub next_credential_hash: Option<String>,
    /// When an operator asked the device to rotate its credential (cleared once it has).
    pub credential_rotation_requested_at: Option<DateTime<Utc>>,
}

/// A device report to record (see [`Store::record_reports`]).
#[derive(Debug, Clone)]
pub struct NewReport {
    /// The device.
    pub device_id: Uuid,
    /// Its report counter.
    pub report_seq: u64,
    /// When it arrived.
    pub at: DateTime<Utc>,
    /// The whole report, as kept in the history.
    pub report: serde_json::Value,
    /// The desired-state sequence it says is applied.
    pub applied_sequence: u64,
    /// Its slot statuses.
    pub slot_status: serde_json::Value,
    /// Its health window, if any.
    pub health: Option<serde_json::Value>,
}

/// A deployment: the version of a model that devices matching a selector run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRecord {
    /// Id.
    pub id: Uuid,
    /// Model id.
    pub model_id: Uuid,
    /// Model name.
    pub model_name: String,
    /// Version.
    pub version: String,
    /// Label selector (all must match).
    pub selector: BTreeMap<String, String>,
    /// Canonical text of the selector (`k=v,k2=v2`, sorted).
    pub selector_text: String,
    /// Who set it.
    pub created_by: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Hybrid inference policy of the slot, if any.
    pub escalation: Option<flotilla_protocol::agent::EscalationPolicy>,
}

/// Everything the server persists, behind one interface.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The backend this store runs on.
    fn backend(&self) -> Backend;
    /// Checks the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Number of tokens, revoked ones included.
    async fn count_tokens(&self) -> Result<i64, StoreError>;
    /// Inserts a token; `Conflict` if the secret hash is taken.
    async fn insert_token(&self, token: &NewToken) -> Result<TokenRecord, StoreError>;
    /// The token whose secret hashes to `secret_hash`, active or not.
    async fn token_by_hash(&self, secret_hash: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// All tokens, oldest first.
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// Revokes a token (idempotent: a revoked token keeps its first revocation time).
    async fn revoke_token(&self, id: Uuid, at: DateTime<Utc>) -> Result<TokenRecord, StoreError>;
    /// Records a use of the token, at most once a minute.
    async fn touch_token(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Appends an audit record and returns its id.
    async fn append_audit(&self, entry: &NewAuditEntry) -> Result<i64, StoreError>;
    /// Reads audit records, newest first.
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;

    /// Reads a server setting.
    async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Writes a server setting.
    async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Writes a server setting unless it is already set.
    async fn put_setting_if_absent(&self, key: &str, value: &str) -> Result<(), StoreError>;

    /// Registers a publisher key; `Conflict` if its id or name is taken.
    async fn insert_publisher_key(&self, key: &PublisherKeyRecord) -> Result<(), StoreError>;
    /// All publisher keys, oldest first.
    async fn list_publisher_keys(&self) -> Result<Vec<PublisherKeyRecord>, StoreError>;
    /// Revokes a key (idempotent).
    async fn revoke_publisher_key(
        &self,
        key_id: &str,
        at: DateTime<Utc>,
    ) -> Result<PublisherKeyRecord, StoreError>;

    /// Stores a rotated trust root; `Conflict` if its serial is taken.
    async fn insert_trust_root(&self, root: &TrustRootRecord) -> Result<(), StoreError>;
    /// Rotated trust roots with a serial above `after`, oldest first, at most `limit`.
    async fn list_trust_roots(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<TrustRootRecord>, StoreError>;
    /// The newest rotated trust root, if any.
    async fn latest_trust_root(&self) -> Result<Option<TrustRootRecord>, StoreError>;

    /// Creates a model; `Conflict` if the name is taken.
    async fn insert_model(&self, model: &ModelRecord) -> Result<(), StoreError>;
    /// A model by name.
    async fn get_model(&self, name: &str) -> Result<Option<ModelRecord>, StoreError>;
    /// All models by name.
    async fn list_models(&self) -> Result<Vec<ModelRecord>, StoreError>;

    /// Records a version; `Conflict` if the model already has that version.
    async fn insert_version(&self, version: &VersionRecord) -> Result<(), StoreError>;
    /// A model's versions, in insertion order.
    async fn list_versions(&self, model_id: Uuid) -> Result<Vec<VersionRecord>, StoreError>;
    /// One version of a model.
    async fn get_version(
        &self,
        model_id: Uuid,
        version: &str,
    ) -> Result<Option<VersionRecord>, StoreError>;
    /// Yanks a version (idempotent: the first yank's time and reason stay).
    async fn yank_version(
        &self,
        model_id: Uuid,
        version: &str,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<VersionRecord, StoreError>;

    /// Stores a new enrollment token.
    async fn insert_enrollment_token(&self, t: &EnrollmentTokenRecord) -> Result<(), StoreError>;
    /// All enrollment tokens, oldest first.
    async fn list_enrollment_tokens(&self) -> Result<Vec<EnrollmentTokenRecord>, StoreError>;
    /// Revokes an enrollment token (idempotent).
    async fn revoke_enrollment_token(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<EnrollmentTokenRecord, StoreError>;
    /// In one transaction: uses the enrollment token whose secret hashes to `token_hash` (it must
    /// be unrevoked, unexpired and not used up; otherwise `NotFound`) and inserts the device,
    /// with the token's labels merged over the device's and the token's approval rule applied.
    async fn enroll_device(
        &self,
        token_hash: &str,
        device: &DeviceRecord,
    ) -> Result<DeviceRecord, StoreError>;
    /// The device whose credential, or whose issued but unused next credential, hashes to
    /// `hash`.
    async fn device_by_credential(&self, hash: &str) -> Result<Option<DeviceRecord>, StoreError>;
    /// The enrollment token whose secret hashes to `hash`, whatever its state.
    async fn enrollment_token_by_hash(
        &self,
        hash: &str,
    ) -> Result<Option<EnrollmentTokenRecord>, StoreError>;
    /// Records `next_hash` as the device's next credential, replacing one issued before and
    /// never used; false unless the device is active and `presented_hash` is its current or
    /// next credential. The current credential keeps working.
    async fn issue_next_credential(
        &self,
        id: Uuid,
        presented_hash: &str,
        next_hash: &str,
    ) -> Result<bool, StoreError>;
    /// The device's next credential `next_hash` was used: it becomes the credential, the old
    /// one stops working and an operator's rotation request is done. `None` when `next_hash`
    /// is not (or no longer) the device's next credential.
    async fn promote_next_credential(
        &self,
        id: Uuid,
        next_hash: &str,
    ) -> Result<Option<DeviceRecord>, StoreError>;
    /// Marks that an operator asked the device to rotate its credential.
    async fn request_credential_rotation(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<DeviceRecord, StoreError>;
    /// A device by id.
    async fn get_device(&self, id: Uuid) -> Result<Option<DeviceRecord>, StoreError>;
    /// All devices, by enrollment time.
    async fn list_devices(&self) -> Result<Vec<DeviceRecord>, StoreError>;
    /// Replaces a device's labels.
    async fn set_device_labels(
        &self,
        id: Uuid,
        labels: &BTreeMap<String, String>,
    ) -> Result<DeviceRecord, StoreError>;
    /// Sets a device's status.
    async fn set_device_status(&self, id: Uuid, status: &str) -> Result<DeviceRecord, StoreError>;
    /// Deletes a device and its reports.
    async fn delete_device(&self, id: Uuid) -> Result<(), StoreError>;
    /// Records contact from the device (at most once every few seconds).
    async fn touch_device(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Stores a newly issued desired state if the device's sequence is still `previous`;
    /// false when another request issued one first.
    async fn save_desired_state(
        &self,
        id: Uuid,
        previous: u64,
        sequence: u64,
        hash: &str,
        envelope: &serde_json::Value,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Records a report unless its `report_seq` was seen already (then false).
    #[allow(clippy::too_many_arguments)]
    async fn record_report(
        &self,
        id: Uuid,
        report_seq: u64,
        at: DateTime<Utc>,
        report: &serde_json::Value,
        applied_sequence: u64,
        slot_status: &serde_json::Value,
        health: Option<&serde_json::Value>,
    ) -> Result<bool, StoreError>;
    /// Records reports in one transaction, each unless its `report_seq` was seen already;
    /// returns, per report, whether it was recorded.
    async fn record_reports(&self, reports: &[NewReport]) -> Result<Vec<bool>, StoreError>;
    /// Records contact from many devices in one transaction (each at most once every few
    /// seconds, as [`Store::touch_device`]).
    async fn touch_devices(&self, contacts: &[(Uuid, DateTime<Utc>)]) -> Result<(), StoreError>;
    /// The latest reports of a device, newest first.
    async fn list_reports(
        &self,
        id: Uuid,
        limit: u32,
    ) -> Result<Vec<(DateTime<Utc>, serde_json::Value)>, StoreError>;

    /// The latest reports of every device, newest first: `(device id, received at, report)`.
    async fn recent_reports(
        &self,
        limit: u32,
    ) -> Result<Vec<(Uuid, DateTime<Utc>, serde_json::Value)>, StoreError>;

    /// Creates or updates the deployment of `model_id` for `selector_text`; true when created.
    async fn upsert_deployment(&self, d: &DeploymentRecord) -> Result<bool, StoreError>;
    /// All deployments.
    async fn list_deployments(&self) -> Result<Vec<DeploymentRecord>, StoreError>;
    /// Deletes a deployment.
    async fn delete_deployment(&self, id: Uuid) -> Result<(), StoreError>;

    /// In one transaction: stores a new rollout and its first event.
    async fn insert_rollout(
        &self,
        r: &RolloutRecord,
        event: &RolloutEventRecord,
    ) -> Result<(), StoreError>;
    /// All rollouts, newest first.
    async fn list_rollouts(&self) -> Result<Vec<RolloutRecord>, StoreError>;
    /// Rollouts that still hold devices (running, waiting for approval, paused), oldest first.
    async fn list_open_rollouts(&self) -> Result<Vec<RolloutRecord>, StoreError>;
    /// A rollout by id.
    async fn get_rollout(&self, id: Uuid) -> Result<Option<RolloutRecord>, StoreError>;
    /// In one transaction: writes `r` if the stored revision is still `expected_revision`,
    /// appends `event`, and (when a rollout completes) writes each of `baseline` as its
    /// selector's deployment (an existing one keeps its escalation policy). False when another
    /// writer changed the rollout first.
    async fn transition_rollout(
        &self,
        r: &RolloutRecord,
        expected_revision: i64,
        event: &RolloutEventRecord,
        baseline: &[DeploymentRecord],
    ) -> Result<bool, StoreError>;
    /// A rollout's events oldest first, or (without an id) the latest events of all, newest first.
    async fn list_rollout_events(
        &self,
        rollout_id: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<RolloutEventRecord>, StoreError>;
    /// Saves a policy under its name; true when created.
    async fn put_rollout_policy(&self, p: &PolicyRecord) -> Result<bool, StoreError>;
    /// A saved policy.
    async fn get_rollout_policy(&self, name: &str) -> Result<Option<PolicyRecord>, StoreError>;
    /// All saved policies by name.
    async fn list_rollout_policies(&self) -> Result<Vec<PolicyRecord>, StoreError>;
    /// Deletes a saved policy.
    async fn delete_rollout_policy(&self, name: &str) -> Result<(), StoreError>;
    /// Registers a webhook.
    async fn insert_webhook(&self, w: &WebhookRecord) -> Result<(), StoreError>;
    /// All webhooks.
    async fn list_webhooks(&self) -> Result<Vec<WebhookRecord>, StoreError>;
    /// Deletes a webhook.
    async fn delete_webhook(&self, id: Uuid) -> Result<(), StoreError>;
    /// Every report received since `since`, oldest first, with its device and receive time.
    async fn reports_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, DateTime<Utc>, serde_json::Value)>, StoreError>;

    /// Whether this replica holds (or just took) the rollout engine's leadership. On Postgres a
    /// session advisory lock on a dedicated connection: it is released when the process or its
    /// connection dies, and another replica takes it on its next try. SQLite is one node: always.
    async fn try_lead(&self) -> Result<bool, StoreError>;
    /// Tells every replica that desired states may have changed (Postgres `NOTIFY`).
    async fn notify_fleet_change(&self) -> Result<(), StoreError>;
    /// Calls `on_change` whenever any replica notifies a fleet change, until the process ends
    /// (Postgres `LISTEN`, reconnecting on its own). A no-op on SQLite.
    async fn listen_fleet_changes(
        &self,
        on_change: Box<dyn Fn() + Send + Sync>,
    ) -> Result<(), StoreError>;
}

/// Connects to the database named by `url`, or to SQLite under `data_dir` when there is none,
/// and applies pending migrations.
pub async fn connect(
    url: Option<&SecretString>,
    data_dir: &Path,
    max_connections: u32,
) -> anyhow::Result<Arc<dyn Store>> {
    match url.map(|u| u.expose_secret()) {
        Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
            Ok(Arc::new(PostgresStore::connect(u, max_connections).await?))
        }
        Some(u) if u.starts_with("sqlite:") => Ok(Arc::new(
            SqliteStore::connect_url(u, max_connections).await?,
        )),
        Some(u) => {
            let scheme = u.split(':').next().unwrap_or_default();
            anyhow::bail!(
                "unsupported database URL scheme `{scheme}`: use postgres://... or sqlite://..."
            )
        }
        None => {
            std::fs::create_dir_all(data_dir).map_err(|e| {
                anyhow::anyhow!("cannot create data directory {}: {e}", data_dir.display())
            })?;
            let path = data_dir.join("flotilla.db");
            Ok(Arc::new(SqliteStore::open(&path, max_connections).await?))
        }
    }
}
