//! The embedded SQLite store: one file under the data directory, WAL mode.

use super::shared::{impl_store, shared_queries};
use super::{AuditEntry, AuditQuery, NewAuditEntry, NewToken, StoreError, TokenRecord};
use chrono::{DateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use uuid::Uuid;

mod q {
    super::shared_queries!(sqlx::Sqlite);
}

mod rq {
    crate::store::rollouts::rollout_queries!(sqlx::Sqlite);
}

/// Metadata in a SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path` and migrates it.
    pub async fn open(path: &Path, max_connections: u32) -> anyhow::Result<Self> {
        let opts = SqliteConnectOptions::new().filename(path);
        Self::with_options(opts, max_connections).await
    }

    /// Opens a `sqlite:` URL (for example `sqlite:///var/lib/flotilla/db.sqlite`).
    pub async fn connect_url(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("invalid SQLite URL: {e}"))?;
        Self::with_options(opts, max_connections).await
    }

    async fn with_options(
        opts: SqliteConnectOptions,
        max_connections: u32,
    ) -> anyhow::Result<Self> {
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(opts)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open SQLite database: {e}"))?;
        sqlx::migrate!("../migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| anyhow::anyhow!("cannot migrate SQLite database: {e}"))?;
        Ok(Self { pool })
    }
}

impl_store!(SqliteStore, super::Backend::Sqlite, {
    async fn touch_devices(
        &self,
        contacts: &[(uuid::Uuid, chrono::DateTime<chrono::Utc>)],
    ) -> Result<(), StoreError> {
        q::touch_devices(&self.pool, contacts).await
    }

    // One node owns the database file: it always leads, and has no other replica to tell.
    async fn try_lead(&self) -> Result<bool, StoreError> {
        Ok(true)
    }

    async fn notify_fleet_change(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn listen_fleet_changes(
        &self,
        _on_change: Box<dyn Fn() + Send + Sync>,
    ) -> Result<(), StoreError> {
        Ok(())
    }
});
