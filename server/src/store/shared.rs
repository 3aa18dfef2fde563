//! Queries that Postgres and SQLite both accept verbatim (`$N` binds, `RETURNING`,
//! `ON CONFLICT`). [`shared_queries!`] expands them once per backend, so each backend's store
//! is concrete code with no generic bounds to read through, and the SQL exists once.

use super::{AuditEntry, ModelRecord, PublisherKeyRecord, StoreError, TokenRecord, VersionRecord};
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

/// Expands the shared queries as free functions over `sqlx::Pool<$db>`.
macro_rules! shared_queries {
    ($db:ty) => {
        use crate::store::shared::{
            AuditRow, KeyRow, ModelRow, TokenRow, VersionRow, AUDIT_COLUMNS, KEY_COLUMNS,
            MODEL_COLUMNS, TOKEN_COLUMNS, VERSION_SELECT,
        };
        use crate::store::{
            AuditEntry, AuditQuery, ModelRecord, NewAuditEntry, NewToken, PublisherKeyRecord,
            StoreError, TokenRecord, VersionRecord,
        };
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
                 ORDER BY id DESC LIMIT $3"
            );
            let rows = sqlx::query_as::<_, AuditRow>(&sql)
                .bind(q.before_id)
                .bind(q.actor.as_deref())
                .bind(i64::from(q.limit.clamp(1, 1000)))
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
            async fn insert_publisher_key(&self, k: &crate::store::PublisherKeyRecord) -> Result<(), StoreError> {
                q::insert_publisher_key(&self.pool, k).await
            }
            async fn list_publisher_keys(&self) -> Result<Vec<crate::store::PublisherKeyRecord>, StoreError> {
                q::list_publisher_keys(&self.pool).await
            }
            async fn revoke_publisher_key(&self, key_id: &str, at: DateTime<Utc>) -> Result<crate::store::PublisherKeyRecord, StoreError> {
                q::revoke_publisher_key(&self.pool, key_id, at).await
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
            $($extra)*
        }
    };
}

pub(super) use impl_store;
