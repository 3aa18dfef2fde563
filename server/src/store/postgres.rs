//! The production Postgres store.

use super::shared::{impl_store, shared_queries};
use super::{AuditEntry, AuditQuery, NewAuditEntry, NewToken, StoreError, TokenRecord};
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

mod q {
    super::shared_queries!(sqlx::Postgres);
}

mod rq {
    crate::store::rollouts::rollout_queries!(sqlx::Postgres);
}

/// Advisory-lock key of the rollout engine's leadership ("flotilla" in ASCII).
const LEADER_LOCK_KEY: i64 = 0x666c_6f74_696c_6c61;
/// Channel of fleet-change notifications between replicas.
const FLEET_CHANNEL: &str = "flotilla_fleet";

/// Metadata in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// The connection holding the leader lock, while this replica leads.
    leader: Arc<tokio::sync::Mutex<Option<PgConnection>>>,
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
        Ok(Self {
            pool,
            leader: Arc::default(),
        })
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

    async fn try_lead(&self) -> Result<bool, StoreError> {
        let mut held = self.leader.lock().await;
        if let Some(conn) = held.as_mut() {
            if sqlx::query("SELECT 1").execute(&mut *conn).await.is_ok() {
                return Ok(true);
            }
            // The connection died, and the lock with it: try again from scratch.
            *held = None;
        }
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| StoreError::Unavailable(e.into()))?
            .detach();
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LEADER_LOCK_KEY)
            .fetch_one(&mut conn)
            .await
            .map_err(|e| StoreError::Unavailable(e.into()))?;
        if got {
            *held = Some(conn);
        }
        Ok(got)
    }

    async fn notify_fleet_change(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(FLEET_CHANNEL)
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| StoreError::Unavailable(e.into()))
    }

    async fn listen_fleet_changes(
        &self,
        on_change: Box<dyn Fn() + Send + Sync>,
    ) -> Result<(), StoreError> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool)
            .await
            .map_err(|e| StoreError::Unavailable(e.into()))?;
        listener
            .listen(FLEET_CHANNEL)
            .await
            .map_err(|e| StoreError::Unavailable(e.into()))?;
        tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(_)) => on_change(),
                    // The connection dropped and was re-established: a notification may have
                    // been missed, so wake everyone once.
                    Ok(None) => on_change(),
                    Err(e) => {
                        tracing::warn!(error = %e, "fleet-change listener failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(())
    }
});
