//! Queries that Postgres and SQLite both accept verbatim (`$N` binds, `RETURNING`,
//! `ON CONFLICT`). [`shared_queries!`] expands them once per backend, so each backend's store
//! is concrete code with no generic bounds to read through, and the SQL exists once.

use super::{AuditEntry, StoreError, TokenRecord};
use chrono::{DateTime, Utc};
use sqlx::types::Json;
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

/// Expands the shared queries as free functions over `sqlx::Pool<$db>`.
macro_rules! shared_queries {
    ($db:ty) => {
        use crate::store::shared::{AuditRow, TokenRow, AUDIT_COLUMNS, TOKEN_COLUMNS};
        use crate::store::{
            AuditEntry, AuditQuery, NewAuditEntry, NewToken, StoreError, TokenRecord,
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
    };
}

pub(super) use shared_queries;

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
            $($extra)*
        }
    };
}

pub(super) use impl_store;
