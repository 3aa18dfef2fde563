//! The production Postgres store.

use super::shared::{impl_store, shared_queries};
use super::{AuditEntry, AuditQuery, NewAuditEntry, NewToken, StoreError, TokenRecord};
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

mod q {
    super::shared_queries!(sqlx::Postgres);
}

/// Metadata in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` and applies pending migrations.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let opts = PgConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("invalid Postgres URL: {e}"))?
            .application_name("flotilla-server");
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to Postgres: {e}"))?;
        sqlx::migrate!("../migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| anyhow::anyhow!("cannot migrate Postgres database: {e}"))?;
        Ok(Self { pool })
    }
}

impl_store!(PostgresStore, super::Backend::Postgres, {
    async fn touch_devices(&self, contacts: &[(Uuid, DateTime<Utc>)]) -> Result<(), StoreError> {
        // One statement, so the device rows are locked only briefly (reports update them too).
        let (ids, times): (Vec<Uuid>, Vec<DateTime<Utc>>) = contacts.iter().copied().unzip();
        sqlx::query(
            "UPDATE devices AS d SET last_seen_at = c.at \
             FROM UNNEST($1::uuid[], $2::timestamptz[]) AS c(id, at) \
             WHERE d.id = c.id AND (d.last_seen_at IS NULL OR d.last_seen_at < c.at - interval '5 seconds')",
        )
        .bind(ids)
        .bind(times)
        .execute(&self.pool)
        .await
        .map(|_| ())
        .map_err(|e| StoreError::from_sqlx("device", e))
    }
});
