//! Queries that Postgres and SQLite both accept verbatim (`$N` binds, `RETURNING`,
//! `ON CONFLICT`). [`shared_queries!`] expands them once per backend, so each backend's store
//! is concrete code with no generic bounds to read through, and the SQL exists once.

use super::{
    AuditEntry, DeploymentRecord, DeviceRecord, EnrollmentTokenRecord, ModelRecord,
    PublisherKeyRecord, StoreError, TokenRecord, TrustRootRecord, VersionRecord,
};
use chrono::{DateTime, Utc};
use flotilla_protocol::registry::{SignerInfo, TensorInfo};
use sqlx::types::Json;
use std::collections::BTreeMap;
use uuid::Uuid;

pub(crate) const TOKEN_COLUMNS: &str =
    "id, name, role, prefix, created_at, expires_at, revoked_at, last_used_at";

#[derive(sqlx::FromRow)]
pub(crate) struct TokenRow {
    id: Uuid,
    name: String,
    role: String,
    prefix: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
}

impl TryFrom<TokenRow> for TokenRecord {
    type Error = StoreError;
    fn try_from(r: TokenRow) -> Result<Self, StoreError> {
        Ok(TokenRecord {
            id: r.id,
            name: r.name,
            role: r
                .role
                .parse()
                .map_err(|e| StoreError::Other(anyhow::anyhow!("corrupt token row: {e}")))?,
            prefix: r.prefix,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            last_used_at: r.last_used_at,
        })
    }
}

pub(crate) const AUDIT_COLUMNS: &str =
    "id, at, actor, token_id, method, route, path, status, outcome, detail";

#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    id: i64,
    at: DateTime<Utc>,
    actor: String,
    token_id: Option<Uuid>,
    method: String,
    route: String,
    path: String,
    status: i32,
    outcome: String,
    detail: Option<Json<serde_json::Value>>,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        AuditEntry {
            id: r.id,
            at: r.at,
            actor: r.actor,
            token_id: r.token_id,
            method: r.method,
            route: r.route,
            path: r.path,
            status: u16::try_from(r.status).unwrap_or(0),
            outcome: r.outcome,
            detail: r.detail.map(|j| j.0),
        }
    }
}

pub(crate) const KEY_COLUMNS: &str =
    "key_id, name, algorithm, public_key_pem, created_at, revoked_at";

#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    key_id: String,
    name: String,
    algorithm: String,
    public_key_pem: String,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<KeyRow> for PublisherKeyRecord {
    fn from(r: KeyRow) -> Self {
        PublisherKeyRecord {
            key_id: r.key_id,
            name: r.name,
            algorithm: r.algorithm,
            public_key_pem: r.public_key_pem,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TrustRootRow {
    serial: i64,
    envelope: String,
    created_by: String,
    created_at: DateTime<Utc>,
}

impl From<TrustRootRow> for TrustRootRecord {
    fn from(r: TrustRootRow) -> Self {
        TrustRootRecord {
            serial: u64::try_from(r.serial).unwrap_or(0),
            envelope: r.envelope,
            created_by: r.created_by,
            created_at: r.created_at,
        }
    }
}

pub(crate) const MODEL_COLUMNS: &str =
    "id, name, description, labels, signing_threshold, created_at";

#[derive(sqlx::FromRow)]
pub(crate) struct ModelRow {
    id: Uuid,
    name: String,
    description: String,
    labels: Json<BTreeMap<String, String>>,
    signing_threshold: Option<i32>,
    created_at: DateTime<Utc>,
}

impl From<ModelRow> for ModelRecord {
    fn from(r: ModelRow) -> Self {
        ModelRecord {
            id: r.id,
            name: r.name,
            description: r.description,
            labels: r.labels.0,
            signing_threshold: r.signing_threshold.and_then(|t| u32::try_from(t).ok()),
            created_at: r.created_at,
        }
    }
}

pub(crate) const VERSION_SELECT: &str =
    "SELECT v.id, v.model_id, m.name AS model_name, v.version, \
     v.artifact_sha256, v.artifact_size, v.bundles, v.signers, v.inputs, v.outputs, \
     v.signed_facts, v.published_by, v.created_at, v.yanked_at, v.yank_reason \
     FROM model_versions v JOIN models m ON m.id = v.model_id";

#[derive(sqlx::FromRow)]
pub(crate) struct VersionRow {
    id: Uuid,
    model_id: Uuid,
    model_name: String,
    version: String,
    artifact_sha256: String,
    artifact_size: i64,
    bundles: Json<Vec<String>>,
    signers: Json<Vec<SignerInfo>>,
    inputs: Json<Vec<TensorInfo>>,
    outputs: Json<Vec<TensorInfo>>,
    signed_facts: Option<Json<serde_json::Value>>,
    published_by: String,
    created_at: DateTime<Utc>,
    yanked_at: Option<DateTime<Utc>>,
    yank_reason: Option<String>,
}

impl From<VersionRow> for VersionRecord {
    fn from(r: VersionRow) -> Self {
        VersionRecord {
            id: r.id,
            model_id: r.model_id,
            model_name: r.model_name,
            version: r.version,
            artifact_sha256: r.artifact_sha256,
            artifact_size: u64::try_from(r.artifact_size).unwrap_or(0),
            bundles: r.bundles.0,
            signers: r.signers.0,
            inputs: r.inputs.0,
            outputs: r.outputs.0,
            signed_facts: r.signed_facts.map(|j| j.0),
            published_by: r.published_by,
            created_at: r.created_at,
            yanked_at: r.yanked_at,
            yank_reason: r.yank_reason,
        }
    }
}

pub(crate) const ET_COLUMNS: &str = "id, name, secret_hash, prefix, labels, require_approval, \
     max_uses, uses, created_by, created_at, expires_at, revoked_at, allowed_device_labels";

#[derive(sqlx::FromRow)]
pub(crate) struct EnrollmentTokenRow {
    id: Uuid,
    name: String,
    secret_hash: String,
    prefix: String,
    labels: Json<BTreeMap<String, String>>,
    require_approval: bool,
    max_uses: i32,
    uses: i32,
    created_by: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
    allowed_device_labels: Json<Vec<String>>,
}

impl From<EnrollmentTokenRow> for EnrollmentTokenRecord {
    fn from(r: EnrollmentTokenRow) -> Self {
        EnrollmentTokenRecord {
            id: r.id,
            name: r.name,
            secret_hash: r.secret_hash,
            prefix: r.prefix,
            labels: r.labels.0,
            require_approval: r.require_approval,
            max_uses: u32::try_from(r.max_uses).unwrap_or(0),
            uses: u32::try_from(r.uses).unwrap_or(0),
            created_by: r.created_by,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
            allowed_device_labels: r.allowed_device_labels.0,
        }
    }
}

pub(crate) const DEVICE_COLUMNS: &str = "id, name, public_key, credential_hash, status, labels, \
     hardware, agent_version, enrollment_token_id, enrolled_at, last_seen_at, desired_sequence, \
     desired_hash, desired_envelope, desired_expires_at, applied_sequence, last_report_seq, \
     slot_status, last_health, next_credential_hash, credential_rotation_requested_at";

#[derive(sqlx::FromRow)]
pub(crate) struct DeviceRow {
    id: Uuid,
    name: String,
    public_key: String,
    credential_hash: String,
    status: String,
    labels: Json<BTreeMap<String, String>>,
    hardware: Json<serde_json::Value>,
    agent_version: String,
    enrollment_token_id: Option<Uuid>,
    enrolled_at: DateTime<Utc>,
    last_seen_at: Option<DateTime<Utc>>,
    desired_sequence: i64,
    desired_hash: Option<String>,
    desired_envelope: Option<Json<serde_json::Value>>,
    desired_expires_at: Option<DateTime<Utc>>,
    applied_sequence: i64,
    last_report_seq: i64,
    slot_status: Json<serde_json::Value>,
    last_health: Option<Json<serde_json::Value>>,
    next_credential_hash: Option<String>,
    credential_rotation_requested_at: Option<DateTime<Utc>>,
}

impl From<DeviceRow> for DeviceRecord {
    fn from(r: DeviceRow) -> Self {
        DeviceRecord {
            id: r.id,
            name: r.name,
            public_key: r.public_key,
            credential_hash: r.credential_hash,
            status: r.status,
            labels: r.labels.0,
            hardware: r.hardware.0,
            agent_version: r.agent_version,
            enrollment_token_id: r.enrollment_token_id,
            enrolled_at: r.enrolled_at,
            last_seen_at: r.last_seen_at,
            desired_sequence: u64::try_from(r.desired_sequence).unwrap_or(0),
            desired_hash: r.desired_hash,
            desired_envelope: r.desired_envelope.map(|j| j.0),
            desired_expires_at: r.desired_expires_at,
            applied_sequence: u64::try_from(r.applied_sequence).unwrap_or(0),
            last_report_seq: u64::try_from(r.last_report_seq).unwrap_or(0),
            slot_status: r.slot_status.0,
            last_health: r.last_health.map(|j| j.0),
            next_credential_hash: r.next_credential_hash,
            credential_rotation_requested_at: r.credential_rotation_requested_at,
        }
    }
}

pub(crate) const DEPLOYMENT_SELECT: &str = "SELECT d.id, d.model_id, m.name AS model_name, \
     d.version, d.selector, d.selector_text, d.created_by, d.created_at, d.updated_at, \
     d.escalation FROM deployments d JOIN models m ON m.id = d.model_id";

#[derive(sqlx::FromRow)]
pub(crate) struct DeploymentRow {
    id: Uuid,
    model_id: Uuid,
    model_name: String,
    version: String,
    selector: Json<BTreeMap<String, String>>,
    selector_text: String,
    created_by: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    escalation: Option<Json<flotilla_protocol::agent::EscalationPolicy>>,
}

impl From<DeploymentRow> for DeploymentRecord {
    fn from(r: DeploymentRow) -> Self {
        DeploymentRecord {
            id: r.id,
            model_id: r.model_id,
            model_name: r.model_name,
            version: r.version,
            selector: r.selector.0,
            selector_text: r.selector_text,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
            escalation: r.escalation.map(|j| j.0),
        }
    }
}

/// Inserts a deployment; binds id, model_id, version, selector, selector_text, created_by,
/// created_at, updated_at, escalation (a completed rollout writes one in its transaction too).
pub(crate) const INSERT_DEPLOYMENT: &str = "INSERT INTO deployments (id, model_id, version, \
     selector, selector_text, created_by, created_at, updated_at, escalation) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Expands the shared queries as free functions over `sqlx::Pool<$db>`.
macro_rules! shared_queries {
    ($db:ty) => {
        use crate::store::shared::{
            AuditRow, DeploymentRow, DeviceRow, EnrollmentTokenRow, KeyRow, ModelRow, TokenRow,
            TrustRootRow, VersionRow, AUDIT_COLUMNS, DEPLOYMENT_SELECT, DEVICE_COLUMNS, ET_COLUMNS, KEY_COLUMNS,
            MODEL_COLUMNS, TOKEN_COLUMNS, VERSION_SELECT, INSERT_DEPLOYMENT,
        };
        use crate::store::{
            AuditEntry, AuditQuery, DeploymentRecord, DeviceRecord, EnrollmentTokenRecord,
            ModelRecord, NewAuditEntry, NewToken, PublisherKeyRecord, StoreError, TokenRecord,
            TrustRootRecord, VersionRecord,
        };
        use std::collections::BTreeMap;
        use chrono::{DateTime, Utc};
        use sqlx::types::Json;
        use uuid::Uuid;

        type Pool = sqlx::Pool<$db>;

        pub(crate) async fn ping(pool: &Pool) -> Result<(), StoreError> {
            sqlx::query("SELECT 1")
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(|e| StoreError::Unavailable(e.into()))
        }

        pub(crate) async fn count_tokens(pool: &Pool) -> Result<i64, StoreError> {
            sqlx::query_scalar("SELECT COUNT(*) FROM api_tokens")
                .fetch_one(pool)
                .await
                .map_err(|e| StoreError::from_sqlx("token", e))
        }

        pub(crate) async fn insert_token(
            pool: &Pool,
            t: &NewToken,
        ) -> Result<TokenRecord, StoreError> {
            let sql = format!(
                "INSERT INTO api_tokens (id, name, role, secret_hash, prefix, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {TOKEN_COLUMNS}"
            );
            sqlx::query_as::<_, TokenRow>(&sql)
                .bind(t.id)
                .bind(&t.name)
                .bind(t.role.as_str())
                .bind(&t.secret_hash)
                .bind(&t.prefix)
                .bind(t.created_at)
                .bind(t.expires_at)
                .fetch_one(pool)
                .await
                .map_err(|e| StoreError::from_sqlx("token", e))?
                .try_into()
        }

        pub(crate) async fn token_by_hash(
            pool: &Pool,
            hash: &str,
        ) -> Result<Option<TokenRecord>, StoreError> {
            let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE secret_hash = $1");
            sqlx::query_as::<_, TokenRow>(&sql)
                .bind(hash)
                .fetch_optional(pool)
                .await
                .map_err(|e| StoreError::from_sqlx("token", e))?
                .map(TryInto::try_into)
                .transpose()
        }

        pub(crate) async fn list_tokens(pool: &Pool) -> Result<Vec<TokenRecord>, StoreError> {
            let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id");
            sqlx::query_as::<_, TokenRow>(&sql)
                .fetch_all(pool)
                .await
                .map_err(|e| StoreError::from_sqlx("token", e))?
                .into_iter()
                .map(TryInto::try_into)
                .collect()
        }

        pub(crate) async fn revoke_token(
            pool: &Pool,
            id: Uuid,
            at: DateTime<Utc>,
        ) -> Result<TokenRecord, StoreError> {
            let sql = format!(
                "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 \
                 RETURNING {TOKEN_COLUMNS}"
            );
            sqlx::query_as::<_, TokenRow>(&sql)
                .bind(id)
                .bind(at)
                .fetch_one(pool)
                .await
                .map_err(|e| StoreError::from_sqlx("token", e))?
                .try_into()
        }

        pub(crate) async fn touch_token(
            pool: &Pool,
            id: Uuid,
            at: DateTime<Utc>,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "UPDATE api_tokens SET last_used_at = $2 \
                 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
            )
            .bind(id)
            .bind(at)
            .bind(at - chrono::Duration::seconds(60))
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(|e| StoreError::from_sqlx("token", e))
        }

        pub(crate) async fn append_audit(
            pool: &Pool,
            e: &NewAuditEntry,
        ) -> Result<i64, StoreError> {
            sqlx::query_scalar(
                "INSERT INTO audit_log (at, actor, token_id, method, route, path, status, outcome, detail) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            )
            .bind(e.at)
            .bind(&e.actor)
            .bind(e.token_id)
            .bind(&e.method)
            .bind(&e.route)
            .bind(&e.path)
            .bind(i32::from(e.status))
            .bind(e.outcome.as_str())
            .bind(e.detail.as_ref().map(Json))
            .fetch_one(pool)
            .await
            .map_err(|err| StoreError::from_sqlx("audit record", err))
        }

        pub(crate) async fn list_audit(
            pool: &Pool,
            q: &AuditQuery,
        ) -> Result<Vec<AuditEntry>, StoreError> {
            let sql = format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log \
                 WHERE ($1 IS NULL OR id < $1) AND ($2 IS NULL OR actor = $2) \
                 AND ($4 IS NULL OR actor NOT LIKE $4) \
                 ORDER BY id DESC LIMIT $3"
            );
            let rows = sqlx::query_as::<_, AuditRow>(&sql)
                .bind(q.before_id)
                .bind(q.actor.as_deref())
                .bind(i64::from(q.limit.clamp(1, 1000)))
                .bind(q.exclude_devices.then_some("device:%"))
                .fetch_all(pool)
                .await
                .map_err(|e| StoreError::from_sqlx("audit record", e))?;
            Ok(rows.into_iter().map(AuditEntry::from).collect())
        }

        pub(crate) async fn get_setting(pool: &Pool, key: &str) -> Result<Option<String>, StoreError> {
            sqlx::query_scalar("SELECT value FROM server_settings WHERE key = $1")
                .bind(key)
                .fetch_optional(pool)
                .await
                .map_err(|e| StoreError::from_sqlx("setting", e))
        }

        pub(crate) async fn put_setting(pool: &Pool, key: &str, value: &str) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO server_settings (key, value) VALUES ($1, $2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .bind(key)
            .bind(value)
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(|e| StoreError::from_sqlx("setting", e))
        }

        pub(crate) async fn put_setting_if_absent(pool: &Pool, key: &str, value: &str) -> Result<(), StoreError> {
            sqlx::query("INSERT INTO server_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                .bind(key)
                .bind(value)
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(|e| StoreError::from_sqlx("setting", e))
        }

        pub(crate) async fn insert_publisher_key(
            pool: &Pool,
            k: &PublisherKeyRecord,
        ) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO publisher_keys (key_id, name, algorithm, public_key_pem, created_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&k.key_id)
            .bind(&k.name)
            .bind(&k.algorithm)
            .bind(&k.public_key_pem)
            .bind(k.created_at)
            .bind(k.revoked_at)
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(|e| StoreError::from_sqlx("publisher key (same key or same name)", e))
        }

        pub(crate) async fn list_publisher_keys(
            pool: &Pool,
        ) -> Result<Vec<PublisherKeyRecord>, StoreError> {
            let sql = format!("SELECT {KEY_COLUMNS} FROM publisher_keys ORDER BY created_at, name");
            Ok(sqlx::query_as::<_, KeyRow>(&sql)
                .fetch_all(pool)
                .await
                .map_err(|e| StoreError::from_sqlx("publisher key", e))?
                .into_iter()
                .map(Into::into)
                .collect())
        }

        pub(crate) async fn revoke_publisher_key(
            pool: &Pool,
            key_id: &str,
            at: DateTime<Utc>,
        ) -> Result<PublisherKeyRecord, StoreError> {
            let sql = format!(
                "UPDATE publisher_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE key_id = $1 \
                 RETURNING {KEY_COLUMNS}"
            );
            Ok(sqlx::query_as::<_, KeyRow>(&sql)
                .bind(key_id)
                .bind(at)
                .fetch_one(pool)
                .await
                .map_err(|e| StoreError::from_sqlx("publisher key", e))?
                .into())
        }

        pub(crate) async fn insert_trust_root(pool: &Pool, r: &TrustRootRecord) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO trust_roots (serial, envelope, created_by, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(i64::try_from(r.serial).unwrap_or(i64::MAX))
            .bind(&r.envelope)
            .bind(&r.created_by)
            .bind(r.created_at)
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(|e| StoreError::from_sqlx("trust root (same serial)", e))
        }

        pub(crate) async fn list_trust_roots(
            pool: &Pool,
            after: u64,
            limit: u32,
        ) -> Result<Vec<TrustRootRecord>, StoreError> {
            Ok(sqlx::query_as::<_, TrustRootRow>(
                "SELECT serial, envelope, created_by, created_at FROM trust_roots \
                 WHERE serial > $1 ORDER BY serial LIMIT $2",
            )
            .bind(i64::try_from(after).unwrap_or(i64::MAX))
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await
            .map_err(|e| StoreError::from_sqlx("trust root", e))?
            .into_iter()
            .map(Into::into)
            .collect())
        }

        pub(crate) async fn latest_trust_root(pool: &Pool) -> Result<Option<TrustRootRecord>, StoreError> {
            Ok(sqlx::query_as::<_, TrustRootRow>(
                "SELECT serial, envelope, created_by, created_at FROM trust_roots ORDER BY serial DESC LIMIT 1",
            )
            .fetch_optional(pool)
            .await
            .map_err(|e| StoreError::from_sqlx("trust root", e))?
            .map(Into::into))
        }

        pub(crate) async fn insert_model(pool: &Pool, m: &ModelRecord) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO models (id, name, description, labels, signing_threshold, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(m.id)
            .bind(&m.name)
            .bind(&m.description)
            .bind(Json(&m.labels))
            .bind(m.signing_threshold.and_then(|t| i32::try_from(t).ok()))
            .bind(m.created_at)
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(|e| StoreError::from_sqlx("model", e))
        }

        pub(crate) async fn get_model(pool: &Pool, name: &str) -> Result<Option<ModelRecord>, StoreError> {
            let sql = format!("SELECT {MODEL_COLUMNS} FROM models WHERE name = $1");
            Ok(sqlx::query_as::<_, ModelRow>(&sql)
                .bind(name)
                .fetch_optional(pool)
                .await
                .map_err(|e| StoreError::from_sqlx("model", e))?
                .map(Into::into))
        }

        pub(crate) async fn list_models(pool: &Pool) -> Result<Vec<ModelRecord>, StoreError> {
            let sql = format!("SELECT {MODEL_COLUMNS} FROM models ORDER BY name");
            Ok(sqlx::query_as::<_, ModelRow>(&sql)
                .fetch_all(pool)
                .await
                .map_err(|e| StoreError::from_sqlx("model", e))?
                .into_iter()
                .map(Into::into)
                .collect())
        }

        pub(crate) async fn insert_version(pool: &Pool, v: &VersionRecord) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO model_versions (id, model_id, version, artifact_sha256, artifact_size, \
                 bundles, signers, inputs, outputs, signed_facts, published_by, created_at, yanked_at, yank_reason) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(v.id)
            .bind(v.model_id)
            .bind(&v.version)
            .bind(&v.artifact_sha256)
            .bind(i64::try_from(v.artifact_size).unwrap_or(i64::MAX))
            .bind(Json(&v.bundles))
            .bind(Json(&v.signers))
            .bind(Json(&v.inputs))
            .bind(Json(&v.outputs))
            .bind(v.signed_facts.as_ref().map(Json))
            .bind(&v.published_by)
            .bind(v.created_at)
            .bind(v.yanked_at)
            .bind(v.yank_reason.as_deref())
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(|e| StoreError::from_sqlx("model version", e))
        }

        pub(crate) async fn list_versions(pool: &Pool, model_id: Uuid) -> Result<Vec<VersionRecord>, StoreError> {
            let sql = format!("{VERSION_SELECT} WHERE v.model_id = $1 ORDER BY v.created_at, v.version");
            Ok(sqlx::query_as::<_, VersionRow>(&sql)
                .bind(model_id)
                .fetch_all(pool)
                .await
                .map_err(|e| StoreError::from_sqlx("model version", e))?
                .into_iter()
                .map(Into::into)
                .collect())
        }

        pub(crate) async fn get_version(
            pool: &Pool,
            model_id: Uuid,
            version: &str,
        ) -> Result<Option<VersionRecord>, StoreError> {
            let sql = format!("{VERSION_SELECT} WHERE v.model_id = $1 AND v.version = $2");
            Ok(sqlx::query_as::<_, VersionRow>(&sql)
                .bind(model_id)
                .bind(version)
                .fetch_optional(pool)
                .await
                .map_err(|e| StoreError::from_sqlx("model version", e))?
                .map(Into::into))
        }

        pub(crate) async fn yank_version(
            pool: &Pool,
            model_id: Uuid,
            version: &str,
            at: DateTime<Utc>,
            reason: &str,
        ) -> Result<VersionRecord, StoreError> {
            let updated = sqlx::query(
                "UPDATE model_versions SET yanked_at = COALESCE(yanked_at, $3), \
                 yank_reason = CASE WHEN yanked_at IS NULL THEN $4 ELSE yank_reason END \
                 WHERE model_id = $1 AND version = $2",
            )
            .bind(model_id)
            .bind(version)
            .bind(at)
            .bind(reason)
            .execute(pool)
            .await
            .map_err(|e| StoreError::from_sqlx("model version", e))?;
            if updated.rows_affected() == 0 {
                return Err(StoreError::NotFound("model version".into()));
            }
            get_version(pool, model_id, version)
                .await?
                .ok_or_else(|| StoreError::NotFound("model version".into()))
        }

        fn db_err(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
            move |e| StoreError::from_sqlx(what, e)
        }

        fn i64_of(v: u64) -> i64 {
            i64::try_from(v).unwrap_or(i64::MAX)
        }

        pub(crate) async fn insert_enrollment_token(pool: &Pool, t: &EnrollmentTokenRecord) -> Result<(), StoreError> {
            sqlx::query(&format!(
                "INSERT INTO enrollment_tokens ({ET_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            ))
            .bind(t.id)
            .bind(&t.name)
            .bind(&t.secret_hash)
            .bind(&t.prefix)
            .bind(Json(&t.labels))
            .bind(t.require_approval)
            .bind(i32::try_from(t.max_uses).unwrap_or(i32::MAX))
            .bind(i32::try_from(t.uses).unwrap_or(i32::MAX))
            .bind(&t.created_by)
            .bind(t.created_at)
            .bind(t.expires_at)
            .bind(t.revoked_at)
            .bind(Json(&t.allowed_device_labels))
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(db_err("enrollment token"))
        }

        pub(crate) async fn list_enrollment_tokens(pool: &Pool) -> Result<Vec<EnrollmentTokenRecord>, StoreError> {
            Ok(sqlx::query_as::<_, EnrollmentTokenRow>(&format!(
                "SELECT {ET_COLUMNS} FROM enrollment_tokens ORDER BY created_at, id"
            ))
            .fetch_all(pool)
            .await
            .map_err(db_err("enrollment token"))?
            .into_iter()
            .map(Into::into)
            .collect())
        }

        pub(crate) async fn revoke_enrollment_token(
            pool: &Pool,
            id: Uuid,
            at: DateTime<Utc>,
        ) -> Result<EnrollmentTokenRecord, StoreError> {
            Ok(sqlx::query_as::<_, EnrollmentTokenRow>(&format!(
                "UPDATE enrollment_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING {ET_COLUMNS}"
            ))
            .bind(id)
            .bind(at)
            .fetch_one(pool)
            .await
            .map_err(db_err("enrollment token"))?
            .into())
        }

        pub(crate) async fn enroll_device(
            pool: &Pool,
            token_hash: &str,
            d: &DeviceRecord,
        ) -> Result<DeviceRecord, StoreError> {
            let mut tx = pool.begin().await.map_err(db_err("enrollment"))?;
            let token: EnrollmentTokenRecord = sqlx::query_as::<_, EnrollmentTokenRow>(&format!(
                "UPDATE enrollment_tokens SET uses = uses + 1 \
                 WHERE secret_hash = $1 AND revoked_at IS NULL AND expires_at > $2 AND uses < max_uses \
                 RETURNING {ET_COLUMNS}"
            ))
            .bind(token_hash)
            .bind(d.enrolled_at)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err("enrollment token"))?
            .ok_or_else(|| StoreError::NotFound("usable enrollment token".into()))?
            .into();
            let mut device = d.clone();
            device.labels.extend(token.labels.clone());
            device.status = if token.require_approval { "pending" } else { "active" }.into();
            device.enrollment_token_id = Some(token.id);
            sqlx::query(&format!(
                "INSERT INTO devices ({DEVICE_COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)"
            ))
            .bind(device.id)
            .bind(&device.name)
            .bind(&device.public_key)
            .bind(&device.credential_hash)
            .bind(&device.status)
            .bind(Json(&device.labels))
            .bind(Json(&device.hardware))
            .bind(&device.agent_version)
            .bind(device.enrollment_token_id)
            .bind(device.enrolled_at)
            .bind(device.last_seen_at)
            .bind(i64_of(device.desired_sequence))
            .bind(device.desired_hash.as_deref())
            .bind(device.desired_envelope.as_ref().map(Json))
            .bind(device.desired_expires_at)
            .bind(i64_of(device.applied_sequence))
            .bind(i64_of(device.last_report_seq))
            .bind(Json(&device.slot_status))
            .bind(device.last_health.as_ref().map(Json))
            .bind(device.next_credential_hash.as_deref())
            .bind(device.credential_rotation_requested_at)
            .execute(&mut *tx)
            .await
            .map_err(db_err("device"))?;
            tx.commit().await.map_err(db_err("enrollment"))?;
            Ok(device)
        }

        pub(crate) async fn device_by_credential(pool: &Pool, hash: &str) -> Result<Option<DeviceRecord>, StoreError> {
            // The credential in use, or one issued by a rotation and not used yet.
            let sql = format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE credential_hash = $1 OR next_credential_hash = $1"
            );
            Ok(sqlx::query_as::<_, DeviceRow>(&sql)
                .bind(hash)
                .fetch_optional(pool)
                .await
                .map_err(db_err("device"))?
                .map(Into::into))
        }

        pub(crate) async fn get_device(pool: &Pool, id: Uuid) -> Result<Option<DeviceRecord>, StoreError> {
            let sql = format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = $1");
            Ok(sqlx::query_as::<_, DeviceRow>(&sql)
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(db_err("device"))?
                .map(Into::into))
        }

        pub(crate) async fn list_devices(pool: &Pool) -> Result<Vec<DeviceRecord>, StoreError> {
            Ok(sqlx::query_as::<_, DeviceRow>(&format!("SELECT {DEVICE_COLUMNS} FROM devices ORDER BY enrolled_at, id"))
                .fetch_all(pool)
                .await
                .map_err(db_err("device"))?
                .into_iter()
                .map(Into::into)
                .collect())
        }

        pub(crate) async fn set_device_labels(
            pool: &Pool,
            id: Uuid,
            labels: &BTreeMap<String, String>,
        ) -> Result<DeviceRecord, StoreError> {
            Ok(sqlx::query_as::<_, DeviceRow>(&format!(
                "UPDATE devices SET labels = $2 WHERE id = $1 RETURNING {DEVICE_COLUMNS}"
            ))
            .bind(id)
            .bind(Json(labels))
            .fetch_one(pool)
            .await
            .map_err(db_err("device"))?
            .into())
        }

        pub(crate) async fn set_device_status(pool: &Pool, id: Uuid, status: &str) -> Result<DeviceRecord, StoreError> {
            Ok(sqlx::query_as::<_, DeviceRow>(&format!(
                "UPDATE devices SET status = $2 WHERE id = $1 RETURNING {DEVICE_COLUMNS}"
            ))
            .bind(id)
            .bind(status)
            .fetch_one(pool)
            .await
            .map_err(db_err("device"))?
            .into())
        }

        pub(crate) async fn delete_device(pool: &Pool, id: Uuid) -> Result<(), StoreError> {
            let mut tx = pool.begin().await.map_err(db_err("device"))?;
            sqlx::query("DELETE FROM device_reports WHERE device_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err("device"))?;
            let done = sqlx::query("DELETE FROM devices WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err("device"))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound("device".into()));
            }
            tx.commit().await.map_err(db_err("device"))
        }

        pub(crate) async fn touch_device(pool: &Pool, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
            sqlx::query(
                "UPDATE devices SET last_seen_at = $2 WHERE id = $1 AND (last_seen_at IS NULL OR last_seen_at < $3)",
            )
            .bind(id)
            .bind(at)
            .bind(at - chrono::Duration::seconds(5))
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(db_err("device"))
        }

        pub(crate) async fn enrollment_token_by_hash(pool: &Pool, hash: &str) -> Result<Option<EnrollmentTokenRecord>, StoreError> {
            Ok(sqlx::query_as::<_, EnrollmentTokenRow>(&format!(
                "SELECT {ET_COLUMNS} FROM enrollment_tokens WHERE secret_hash = $1"
            ))
            .bind(hash)
            .fetch_optional(pool)
            .await
            .map_err(db_err("enrollment token"))?
            .map(Into::into))
        }

        pub(crate) async fn issue_next_credential(
            pool: &Pool,
            id: Uuid,
            presented_hash: &str,
            next_hash: &str,
        ) -> Result<bool, StoreError> {
            // Only while the presented credential is still the device's and it is active: a
            // revoked device, or one whose credential was rotated meanwhile, gets nothing.
            let done = sqlx::query(
                "UPDATE devices SET next_credential_hash = $3 \
                 WHERE id = $1 AND status = 'active' AND (credential_hash = $2 OR next_credential_hash = $2)",
            )
            .bind(id)
            .bind(presented_hash)
            .bind(next_hash)
            .execute(pool)
            .await
            .map_err(db_err("device"))?;
            Ok(done.rows_affected() == 1)
        }

        pub(crate) async fn promote_next_credential(
            pool: &Pool,
            id: Uuid,
            next_hash: &str,
        ) -> Result<Option<DeviceRecord>, StoreError> {
            Ok(sqlx::query_as::<_, DeviceRow>(&format!(
                "UPDATE devices SET credential_hash = next_credential_hash, next_credential_hash = NULL, \
                 credential_rotation_requested_at = NULL \
                 WHERE id = $1 AND next_credential_hash = $2 RETURNING {DEVICE_COLUMNS}"
            ))
            .bind(id)
            .bind(next_hash)
            .fetch_optional(pool)
            .await
            .map_err(db_err("device"))?
            .map(Into::into))
        }

        pub(crate) async fn request_credential_rotation(
            pool: &Pool,
            id: Uuid,
            at: DateTime<Utc>,
        ) -> Result<DeviceRecord, StoreError> {
            sqlx::query_as::<_, DeviceRow>(&format!(
                "UPDATE devices SET credential_rotation_requested_at = $2 WHERE id = $1 RETURNING {DEVICE_COLUMNS}"
            ))
            .bind(id)
            .bind(at)
            .fetch_optional(pool)
            .await
            .map_err(db_err("device"))?
            .map(Into::into)
            .ok_or_else(|| StoreError::NotFound("device".into()))
        }

        pub(crate) async fn save_desired_state(
            pool: &Pool,
            id: Uuid,
            previous: u64,
            sequence: u64,
            hash: &str,
            envelope: &serde_json::Value,
            expires_at: DateTime<Utc>,
        ) -> Result<bool, StoreError> {
            let done = sqlx::query(
                "UPDATE devices SET desired_sequence = $3, desired_hash = $4, desired_envelope = $5, \
                 desired_expires_at = $6 WHERE id = $1 AND desired_sequence = $2",
            )
            .bind(id)
            .bind(i64_of(previous))
            .bind(i64_of(sequence))
            .bind(hash)
            .bind(Json(envelope))
            .bind(expires_at)
            .execute(pool)
            .await
            .map_err(db_err("device"))?;
            Ok(done.rows_affected() == 1)
        }

        #[allow(clippy::too_many_arguments)]
        pub(crate) async fn record_report(
            pool: &Pool,
            id: Uuid,
            report_seq: u64,
            at: DateTime<Utc>,
            report: &serde_json::Value,
            applied_sequence: u64,
            slot_status: &serde_json::Value,
            health: Option<&serde_json::Value>,
        ) -> Result<bool, StoreError> {
            let mut tx = pool.begin().await.map_err(db_err("report"))?;
            let recorded = record_report_on(
                &mut tx,
                id,
                report_seq,
                at,
                report,
                applied_sequence,
                slot_status,
                health,
            )
            .await?;
            if recorded {
                tx.commit().await.map_err(db_err("report"))?;
            }
            Ok(recorded)
        }

        pub(crate) async fn record_reports(
            pool: &Pool,
            reports: &[crate::store::NewReport],
        ) -> Result<Vec<bool>, StoreError> {
            let mut tx = pool.begin().await.map_err(db_err("report"))?;
            let mut recorded = Vec::with_capacity(reports.len());
            for r in reports {
                recorded.push(
                    record_report_on(
                        &mut tx,
                        r.device_id,
                        r.report_seq,
                        r.at,
                        &r.report,
                        r.applied_sequence,
                        &r.slot_status,
                        r.health.as_ref(),
                    )
                    .await?,
                );
            }
            tx.commit().await.map_err(db_err("report"))?;
            Ok(recorded)
        }

        /// One report inside the caller's transaction.
        #[allow(clippy::too_many_arguments)]
        async fn record_report_on(
            conn: &mut <$db as sqlx::Database>::Connection,
            id: Uuid,
            report_seq: u64,
            at: DateTime<Utc>,
            report: &serde_json::Value,
            applied_sequence: u64,
            slot_status: &serde_json::Value,
            health: Option<&serde_json::Value>,
        ) -> Result<bool, StoreError> {
            let updated = sqlx::query(
                "UPDATE devices SET last_report_seq = $2, applied_sequence = $3, slot_status = $4, \
                 last_health = COALESCE($5, last_health), last_seen_at = $6 \
                 WHERE id = $1 AND last_report_seq < $2",
            )
            .bind(id)
            .bind(i64_of(report_seq))
            .bind(i64_of(applied_sequence))
            .bind(Json(slot_status))
            .bind(health.map(Json))
            .bind(at)
            .execute(&mut *conn)
            .await
            .map_err(db_err("report"))?;
            if updated.rows_affected() == 0 {
                return Ok(false);
            }
            sqlx::query("INSERT INTO device_reports (device_id, report_seq, received_at, report) VALUES ($1, $2, $3, $4)")
                .bind(id)
                .bind(i64_of(report_seq))
                .bind(at)
                .bind(Json(report))
                .execute(&mut *conn)
                .await
                .map_err(db_err("report"))?;
            Ok(true)
        }

        /// Contact times as one statement per device in one transaction (SQLite, where a
        /// statement costs no round trip); Postgres has a single-statement form.
        #[allow(dead_code)]
        pub(crate) async fn touch_devices(
            pool: &Pool,
            contacts: &[(Uuid, DateTime<Utc>)],
        ) -> Result<(), StoreError> {
            let mut tx = pool.begin().await.map_err(db_err("device"))?;
            for (id, at) in contacts {
                sqlx::query(
                    "UPDATE devices SET last_seen_at = $2 WHERE id = $1 AND (last_seen_at IS NULL OR last_seen_at < $3)",
                )
                .bind(id)
                .bind(at)
                .bind(*at - chrono::Duration::seconds(5))
                .execute(&mut *tx)
                .await
                .map_err(db_err("device"))?;
            }
            tx.commit().await.map_err(db_err("device"))
        }

        pub(crate) async fn list_reports(
            pool: &Pool,
            id: Uuid,
            limit: u32,
        ) -> Result<Vec<(DateTime<Utc>, serde_json::Value)>, StoreError> {
            let rows: Vec<(DateTime<Utc>, Json<serde_json::Value>)> = sqlx::query_as(
                "SELECT received_at, report FROM device_reports WHERE device_id = $1 ORDER BY report_seq DESC LIMIT $2",
            )
            .bind(id)
            .bind(i64::from(limit.clamp(1, 1000)))
            .fetch_all(pool)
            .await
            .map_err(db_err("report"))?;
            Ok(rows.into_iter().map(|(t, j)| (t, j.0)).collect())
        }

        pub(crate) async fn recent_reports(
            pool: &Pool,
            limit: u32,
        ) -> Result<Vec<(Uuid, DateTime<Utc>, serde_json::Value)>, StoreError> {
            // Newest first by the primary key, so the work is bounded by `limit` however long
            // the history is; callers drop what is older than they need.
            let rows: Vec<(Uuid, DateTime<Utc>, Json<serde_json::Value>)> = sqlx::query_as(
                "SELECT device_id, received_at, report FROM device_reports ORDER BY id DESC LIMIT $1",
            )
            .bind(i64::from(limit.clamp(1, 100_000)))
            .fetch_all(pool)
            .await
            .map_err(db_err("report"))?;
            Ok(rows.into_iter().map(|(d, t, j)| (d, t, j.0)).collect())
        }

        pub(crate) async fn upsert_deployment(pool: &Pool, d: &DeploymentRecord) -> Result<bool, StoreError> {
            let updated = sqlx::query(
                "UPDATE deployments SET version = $3, created_by = $4, updated_at = $5, escalation = $6 \
                 WHERE model_id = $1 AND selector_text = $2",
            )
            .bind(d.model_id)
            .bind(&d.selector_text)
            .bind(&d.version)
            .bind(&d.created_by)
            .bind(d.updated_at)
            .bind(d.escalation.as_ref().map(Json))
            .execute(pool)
            .await
            .map_err(db_err("deployment"))?;
            if updated.rows_affected() > 0 {
                return Ok(false);
            }
            sqlx::query(INSERT_DEPLOYMENT)
            .bind(d.id)
            .bind(d.model_id)
            .bind(&d.version)
            .bind(Json(&d.selector))
            .bind(&d.selector_text)
            .bind(&d.created_by)
            .bind(d.created_at)
            .bind(d.updated_at)
            .bind(d.escalation.as_ref().map(Json))
            .execute(pool)
            .await
            .map(|_| true)
            .map_err(db_err("deployment"))
        }

        pub(crate) async fn list_deployments(pool: &Pool) -> Result<Vec<DeploymentRecord>, StoreError> {
            Ok(sqlx::query_as::<_, DeploymentRow>(&format!("{DEPLOYMENT_SELECT} ORDER BY m.name, d.selector_text"))
                .fetch_all(pool)
                .await
                .map_err(db_err("deployment"))?
                .into_iter()
                .map(Into::into)
                .collect())
        }

        pub(crate) async fn delete_deployment(pool: &Pool, id: Uuid) -> Result<(), StoreError> {
            let done = sqlx::query("DELETE FROM deployments WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await
                .map_err(db_err("deployment"))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound("deployment".into()));
            }
            Ok(())
        }
    };
}

pub(crate) use shared_queries;

/// Implements [`super::Store`] for a backend type with a `pool` field and a `q` module made by
/// [`shared_queries!`]. Backend-specific methods are passed in the trailing block.
macro_rules! impl_store {
    ($ty:ty, $backend:expr, { $($extra:tt)* }) => {
        #[async_trait::async_trait]
        impl super::Store for $ty {
            fn backend(&self) -> super::Backend {
                $backend
            }
            async fn ping(&self) -> Result<(), StoreError> {
                q::ping(&self.pool).await
            }
            async fn count_tokens(&self) -> Result<i64, StoreError> {
                q::count_tokens(&self.pool).await
            }
            async fn insert_token(&self, t: &NewToken) -> Result<TokenRecord, StoreError> {
                q::insert_token(&self.pool, t).await
            }
            async fn token_by_hash(&self, h: &str) -> Result<Option<TokenRecord>, StoreError> {
                q::token_by_hash(&self.pool, h).await
            }
            async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
                q::list_tokens(&self.pool).await
            }
            async fn revoke_token(&self, id: Uuid, at: DateTime<Utc>) -> Result<TokenRecord, StoreError> {
                q::revoke_token(&self.pool, id, at).await
            }
            async fn touch_token(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
                q::touch_token(&self.pool, id, at).await
            }
            async fn append_audit(&self, e: &NewAuditEntry) -> Result<i64, StoreError> {
                q::append_audit(&self.pool, e).await
            }
            async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
                q::list_audit(&self.pool, query).await
            }
            async fn get_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
                q::get_setting(&self.pool, key).await
            }
            async fn put_setting(&self, key: &str, value: &str) -> Result<(), StoreError> {
                q::put_setting(&self.pool, key, value).await
            }
            async fn put_setting_if_absent(&self, key: &str, value: &str) -> Result<(), StoreError> {
                q::put_setting_if_absent(&self.pool, key, value).await
            }
            async fn insert_publisher_key(&self, k: &crate::store::PublisherKeyRecord) -> Result<(), StoreError> {
                q::insert_publisher_key(&self.pool, k).await
            }
            async fn list_publisher_keys(&self) -> Result<Vec<crate::store::PublisherKeyRecord>, StoreError> {
                q::list_publisher_keys(&self.pool).await
            }
            async fn revoke_publisher_key(&self, key_id: &str, at: DateTime<Utc>) -> Result<crate::store::PublisherKeyRecord, StoreError> {
                q::revoke_publisher_key(&self.pool, key_id, at).await
            }
            async fn insert_trust_root(&self, r: &crate::store::TrustRootRecord) -> Result<(), StoreError> {
                q::insert_trust_root(&self.pool, r).await
            }
            async fn list_trust_roots(&self, after: u64, limit: u32) -> Result<Vec<crate::store::TrustRootRecord>, StoreError> {
                q::list_trust_roots(&self.pool, after, limit).await
            }
            async fn latest_trust_root(&self) -> Result<Option<crate::store::TrustRootRecord>, StoreError> {
                q::latest_trust_root(&self.pool).await
            }
            async fn insert_model(&self, m: &crate::store::ModelRecord) -> Result<(), StoreError> {
                q::insert_model(&self.pool, m).await
            }
            async fn get_model(&self, name: &str) -> Result<Option<crate::store::ModelRecord>, StoreError> {
                q::get_model(&self.pool, name).await
            }
            async fn list_models(&self) -> Result<Vec<crate::store::ModelRecord>, StoreError> {
                q::list_models(&self.pool).await
            }
            async fn insert_version(&self, v: &crate::store::VersionRecord) -> Result<(), StoreError> {
                q::insert_version(&self.pool, v).await
            }
            async fn list_versions(&self, model_id: Uuid) -> Result<Vec<crate::store::VersionRecord>, StoreError> {
                q::list_versions(&self.pool, model_id).await
            }
            async fn get_version(&self, model_id: Uuid, version: &str) -> Result<Option<crate::store::VersionRecord>, StoreError> {
                q::get_version(&self.pool, model_id, version).await
            }
            async fn yank_version(&self, model_id: Uuid, version: &str, at: DateTime<Utc>, reason: &str) -> Result<crate::store::VersionRecord, StoreError> {
                q::yank_version(&self.pool, model_id, version, at, reason).await
            }
            async fn insert_enrollment_token(&self, t: &crate::store::EnrollmentTokenRecord) -> Result<(), StoreError> {
                q::insert_enrollment_token(&self.pool, t).await
            }
            async fn list_enrollment_tokens(&self) -> Result<Vec<crate::store::EnrollmentTokenRecord>, StoreError> {
                q::list_enrollment_tokens(&self.pool).await
            }
            async fn revoke_enrollment_token(&self, id: Uuid, at: DateTime<Utc>) -> Result<crate::store::EnrollmentTokenRecord, StoreError> {
                q::revoke_enrollment_token(&self.pool, id, at).await
            }
            async fn enroll_device(&self, token_hash: &str, d: &crate::store::DeviceRecord) -> Result<crate::store::DeviceRecord, StoreError> {
                q::enroll_device(&self.pool, token_hash, d).await
            }
            async fn device_by_credential(&self, hash: &str) -> Result<Option<crate::store::DeviceRecord>, StoreError> {
                q::device_by_credential(&self.pool, hash).await
            }
            async fn enrollment_token_by_hash(&self, hash: &str) -> Result<Option<crate::store::EnrollmentTokenRecord>, StoreError> {
                q::enrollment_token_by_hash(&self.pool, hash).await
            }
            async fn issue_next_credential(&self, id: Uuid, presented_hash: &str, next_hash: &str) -> Result<bool, StoreError> {
                q::issue_next_credential(&self.pool, id, presented_hash, next_hash).await
            }
            async fn promote_next_credential(&self, id: Uuid, next_hash: &str) -> Result<Option<crate::store::DeviceRecord>, StoreError> {
                q::promote_next_credential(&self.pool, id, next_hash).await
            }
            async fn request_credential_rotation(&self, id: Uuid, at: DateTime<Utc>) -> Result<crate::store::DeviceRecord, StoreError> {
                q::request_credential_rotation(&self.pool, id, at).await
            }
            async fn get_device(&self, id: Uuid) -> Result<Option<crate::store::DeviceRecord>, StoreError> {
                q::get_device(&self.pool, id).await
            }
            async fn list_devices(&self) -> Result<Vec<crate::store::DeviceRecord>, StoreError> {
                q::list_devices(&self.pool).await
            }
            async fn set_device_labels(&self, id: Uuid, labels: &std::collections::BTreeMap<String, String>) -> Result<crate::store::DeviceRecord, StoreError> {
                q::set_device_labels(&self.pool, id, labels).await
            }
            async fn set_device_status(&self, id: Uuid, status: &str) -> Result<crate::store::DeviceRecord, StoreError> {
                q::set_device_status(&self.pool, id, status).await
            }
            async fn delete_device(&self, id: Uuid) -> Result<(), StoreError> {
                q::delete_device(&self.pool, id).await
            }
            async fn touch_device(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), StoreError> {
                q::touch_device(&self.pool, id, at).await
            }
            async fn save_desired_state(&self, id: Uuid, previous: u64, sequence: u64, hash: &str, envelope: &serde_json::Value, expires_at: DateTime<Utc>) -> Result<bool, StoreError> {
                q::save_desired_state(&self.pool, id, previous, sequence, hash, envelope, expires_at).await
            }
            async fn record_report(&self, id: Uuid, report_seq: u64, at: DateTime<Utc>, report: &serde_json::Value, applied_sequence: u64, slot_status: &serde_json::Value, health: Option<&serde_json::Value>) -> Result<bool, StoreError> {
                q::record_report(&self.pool, id, report_seq, at, report, applied_sequence, slot_status, health).await
            }
            async fn record_reports(&self, reports: &[crate::store::NewReport]) -> Result<Vec<bool>, StoreError> {
                q::record_reports(&self.pool, reports).await
            }
            async fn list_reports(&self, id: Uuid, limit: u32) -> Result<Vec<(DateTime<Utc>, serde_json::Value)>, StoreError> {
                q::list_reports(&self.pool, id, limit).await
            }
            async fn recent_reports(&self, limit: u32) -> Result<Vec<(Uuid, DateTime<Utc>, serde_json::Value)>, StoreError> {
                q::recent_reports(&self.pool, limit).await
            }
            async fn upsert_deployment(&self, d: &crate::store::DeploymentRecord) -> Result<bool, StoreError> {
                q::upsert_deployment(&self.pool, d).await
            }
            async fn list_deployments(&self) -> Result<Vec<crate::store::DeploymentRecord>, StoreError> {
                q::list_deployments(&self.pool).await
            }
            async fn delete_deployment(&self, id: Uuid) -> Result<(), StoreError> {
                q::delete_deployment(&self.pool, id).await
            }
            // Rollouts: the functions `rollout_queries!` made in module `rq`.
            async fn insert_rollout(
                &self,
                r: &crate::store::RolloutRecord,
                event: &crate::store::RolloutEventRecord,
            ) -> Result<(), StoreError> {
                rq::insert_rollout(&self.pool, r, event).await
            }
            async fn list_rollouts(&self) -> Result<Vec<crate::store::RolloutRecord>, StoreError> {
                rq::list_rollouts(&self.pool).await
            }
            async fn list_open_rollouts(&self) -> Result<Vec<crate::store::RolloutRecord>, StoreError> {
                rq::list_open_rollouts(&self.pool).await
            }
            async fn get_rollout(
                &self,
                id: Uuid,
            ) -> Result<Option<crate::store::RolloutRecord>, StoreError> {
                rq::get_rollout(&self.pool, id).await
            }
            async fn transition_rollout(
                &self,
                r: &crate::store::RolloutRecord,
                expected_revision: i64,
                event: &crate::store::RolloutEventRecord,
                baseline: &[crate::store::DeploymentRecord],
            ) -> Result<bool, StoreError> {
                rq::transition_rollout(&self.pool, r, expected_revision, event, baseline).await
            }
            async fn list_rollout_events(
                &self,
                rollout_id: Option<Uuid>,
                limit: u32,
            ) -> Result<Vec<crate::store::RolloutEventRecord>, StoreError> {
                rq::list_rollout_events(&self.pool, rollout_id, limit).await
            }
            async fn put_rollout_policy(
                &self,
                p: &crate::store::PolicyRecord,
            ) -> Result<bool, StoreError> {
                rq::put_rollout_policy(&self.pool, p).await
            }
            async fn get_rollout_policy(
                &self,
                name: &str,
            ) -> Result<Option<crate::store::PolicyRecord>, StoreError> {
                rq::get_rollout_policy(&self.pool, name).await
            }
            async fn list_rollout_policies(
                &self,
            ) -> Result<Vec<crate::store::PolicyRecord>, StoreError> {
                rq::list_rollout_policies(&self.pool).await
            }
            async fn delete_rollout_policy(&self, name: &str) -> Result<(), StoreError> {
                rq::delete_rollout_policy(&self.pool, name).await
            }
            async fn insert_webhook(&self, w: &crate::store::WebhookRecord) -> Result<(), StoreError> {
                rq::insert_webhook(&self.pool, w).await
            }
            async fn list_webhooks(&self) -> Result<Vec<crate::store::WebhookRecord>, StoreError> {
                rq::list_webhooks(&self.pool).await
            }
            async fn delete_webhook(&self, id: Uuid) -> Result<(), StoreError> {
                rq::delete_webhook(&self.pool, id).await
            }
            async fn reports_since(
                &self,
                since: DateTime<Utc>,
            ) -> Result<Vec<(Uuid, DateTime<Utc>, serde_json::Value)>, StoreError> {
                rq::reports_since(&self.pool, since).await
            }
            $($extra)*
        }
    };
}

pub(super) use impl_store;
