//! Rollouts, their transitions, saved policies and webhooks: the records and the SQL both
//! backends share, expanded per backend by [`rollout_queries!`] like [`super::shared`].

use super::StoreError;
use chrono::{DateTime, Utc};
use flotilla_protocol::rollouts::{RolloutPolicy, RolloutState};
use sqlx::types::Json;
use std::collections::BTreeMap;
use uuid::Uuid;

/// A rollout as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutRecord {
    /// Id (also the cohort hash's salt).
    pub id: Uuid,
    /// Model id.
    pub model_id: Uuid,
    /// Model name.
    pub model_name: String,
    /// Target version.
    pub version: String,
    /// Label selector.
    pub selector: BTreeMap<String, String>,
    /// Its canonical text.
    pub selector_text: String,
    /// The policy.
    pub policy: RolloutPolicy,
    /// The saved policy it came from.
    pub policy_name: Option<String>,
    /// State.
    pub state: RolloutState,
    /// Current stage (0-based).
    pub stage: u32,
    /// Devices whose bucket is below this (0..=10000) are in the rollout.
    pub bucket_limit: u32,
    /// The current stage ships the candidate in shadow.
    pub shadow: bool,
    /// When the current stage opened.
    pub stage_started_at: DateTime<Utc>,
    /// Bumped by every transition (optimistic concurrency).
    pub revision: i64,
    /// The last transition's reason.
    pub reason: String,
    /// Creator.
    pub created_by: String,
    /// Creation.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// One transition of a rollout.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutEventRecord {
    /// Monotonic id (0 before insertion).
    pub id: i64,
    /// The rollout.
    pub rollout_id: Uuid,
    /// When.
    pub at: DateTime<Utc>,
    /// `engine` or the operator's token name.
    pub actor: String,
    /// What happened (`advanced`, `rolled_back`, ...).
    pub event: String,
    /// State before.
    pub from_state: Option<RolloutState>,
    /// State after.
    pub to_state: RolloutState,
    /// Stage after.
    pub stage: u32,
    /// Why.
    pub reason: String,
    /// The numbers behind it.
    pub numbers: serde_json::Value,
}

/// A saved rollout policy.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRecord {
    /// Name.
    pub name: String,
    /// Policy.
    pub policy: RolloutPolicy,
    /// Who saved it.
    pub updated_by: String,
    /// When.
    pub updated_at: DateTime<Utc>,
}

/// A webhook receiving rollout transitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    /// Id.
    pub id: Uuid,
    /// URL.
    pub url: String,
    /// HMAC secret.
    pub secret: String,
    /// Creator.
    pub created_by: String,
    /// Creation.
    pub created_at: DateTime<Utc>,
}

pub(crate) const ROLLOUT_SELECT: &str =
    "SELECT r.id, r.model_id, m.name AS model_name, r.version, \
     r.selector, r.selector_text, r.policy, r.policy_name, r.state, r.stage, r.bucket_limit, \
     r.shadow, r.stage_started_at, r.revision, r.reason, r.created_by, r.created_at, r.updated_at \
     FROM rollouts r JOIN models m ON m.id = r.model_id";

#[derive(sqlx::FromRow)]
pub(crate) struct RolloutRow {
    id: Uuid,
    model_id: Uuid,
    model_name: String,
    version: String,
    selector: Json<BTreeMap<String, String>>,
    selector_text: String,
    policy: Json<RolloutPolicy>,
    policy_name: Option<String>,
    state: String,
    stage: i32,
    bucket_limit: i32,
    shadow: bool,
    stage_started_at: DateTime<Utc>,
    revision: i64,
    reason: String,
    created_by: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn state_of(s: &str) -> Result<RolloutState, StoreError> {
    RolloutState::parse(s)
        .ok_or_else(|| StoreError::Other(anyhow::anyhow!("corrupt rollout state `{s}`")))
}

impl TryFrom<RolloutRow> for RolloutRecord {
    type Error = StoreError;
    fn try_from(r: RolloutRow) -> Result<Self, StoreError> {
        Ok(RolloutRecord {
            id: r.id,
            model_id: r.model_id,
            model_name: r.model_name,
            version: r.version,
            selector: r.selector.0,
            selector_text: r.selector_text,
            policy: r.policy.0,
            policy_name: r.policy_name,
            state: state_of(&r.state)?,
            stage: u32::try_from(r.stage).unwrap_or(0),
            bucket_limit: u32::try_from(r.bucket_limit).unwrap_or(0),
            shadow: r.shadow,
            stage_started_at: r.stage_started_at,
            revision: r.revision,
            reason: r.reason,
            created_by: r.created_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

pub(crate) const EVENT_COLUMNS: &str =
    "id, rollout_id, at, actor, event, from_state, to_state, stage, reason, numbers";

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    id: i64,
    rollout_id: Uuid,
    at: DateTime<Utc>,
    actor: String,
    event: String,
    from_state: Option<String>,
    to_state: String,
    stage: i32,
    reason: String,
    numbers: Json<serde_json::Value>,
}

impl TryFrom<EventRow> for RolloutEventRecord {
    type Error = StoreError;
    fn try_from(r: EventRow) -> Result<Self, StoreError> {
        Ok(RolloutEventRecord {
            id: r.id,
            rollout_id: r.rollout_id,
            at: r.at,
            actor: r.actor,
            event: r.event,
            from_state: r.from_state.as_deref().map(state_of).transpose()?,
            to_state: state_of(&r.to_state)?,
            stage: u32::try_from(r.stage).unwrap_or(0),
            reason: r.reason,
            numbers: r.numbers.0,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct PolicyRow {
    name: String,
    policy: Json<RolloutPolicy>,
    updated_by: String,
    updated_at: DateTime<Utc>,
}

impl From<PolicyRow> for PolicyRecord {
    fn from(r: PolicyRow) -> Self {
        PolicyRecord {
            name: r.name,
            policy: r.policy.0,
            updated_by: r.updated_by,
            updated_at: r.updated_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct WebhookRow {
    id: Uuid,
    url: String,
    secret: String,
    created_by: String,
    created_at: DateTime<Utc>,
}

impl From<WebhookRow> for WebhookRecord {
    fn from(r: WebhookRow) -> Self {
        WebhookRecord {
            id: r.id,
            url: r.url,
            secret: r.secret,
            created_by: r.created_by,
            created_at: r.created_at,
        }
    }
}

/// Expands the rollout queries as free functions over `sqlx::Pool<$db>`.
macro_rules! rollout_queries {
    ($db:ty) => {
        use crate::store::rollouts::{
            EventRow, PolicyRecord, PolicyRow, RolloutEventRecord, RolloutRecord, RolloutRow,
            WebhookRecord, WebhookRow, EVENT_COLUMNS, ROLLOUT_SELECT,
        };
        use crate::store::{DeploymentRecord, StoreError};
        use chrono::{DateTime, Utc};
        use sqlx::types::Json;
        use uuid::Uuid;

        type Pool = sqlx::Pool<$db>;
        type Conn = <$db as sqlx::Database>::Connection;

        fn db_err(what: &'static str) -> impl Fn(sqlx::Error) -> StoreError {
            move |e| StoreError::from_sqlx(what, e)
        }

        fn i32_of(v: u32) -> i32 {
            i32::try_from(v).unwrap_or(i32::MAX)
        }

        async fn insert_event(conn: &mut Conn, e: &RolloutEventRecord) -> Result<(), StoreError> {
            sqlx::query(
                "INSERT INTO rollout_events (rollout_id, at, actor, event, from_state, to_state, stage, reason, numbers) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(e.rollout_id)
            .bind(e.at)
            .bind(&e.actor)
            .bind(&e.event)
            .bind(e.from_state.map(|s| s.as_str()))
            .bind(e.to_state.as_str())
            .bind(i32_of(e.stage))
            .bind(&e.reason)
            .bind(Json(&e.numbers))
            .execute(conn)
            .await
            .map(|_| ())
            .map_err(db_err("rollout event"))
        }

        pub(crate) async fn insert_rollout(
            pool: &Pool,
            r: &RolloutRecord,
            event: &RolloutEventRecord,
        ) -> Result<(), StoreError> {
            let mut tx = pool.begin().await.map_err(db_err("rollout"))?;
            sqlx::query(
                "INSERT INTO rollouts (id, model_id, version, selector, selector_text, policy, policy_name, state, \
                 stage, bucket_limit, shadow, stage_started_at, revision, reason, created_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
            )
            .bind(r.id)
            .bind(r.model_id)
            .bind(&r.version)
            .bind(Json(&r.selector))
            .bind(&r.selector_text)
            .bind(Json(&r.policy))
            .bind(&r.policy_name)
            .bind(r.state.as_str())
            .bind(i32_of(r.stage))
            .bind(i32_of(r.bucket_limit))
            .bind(r.shadow)
            .bind(r.stage_started_at)
            .bind(r.revision)
            .bind(&r.reason)
            .bind(&r.created_by)
            .bind(r.created_at)
            .bind(r.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(db_err("rollout"))?;
            insert_event(&mut *tx, event).await?;
            tx.commit().await.map_err(db_err("rollout"))
        }

        pub(crate) async fn list_rollouts(pool: &Pool) -> Result<Vec<RolloutRecord>, StoreError> {
            sqlx::query_as::<_, RolloutRow>(&format!("{ROLLOUT_SELECT} ORDER BY r.created_at DESC"))
                .fetch_all(pool)
                .await
                .map_err(db_err("rollout"))?
                .into_iter()
                .map(TryInto::try_into)
                .collect()
        }

        pub(crate) async fn list_open_rollouts(pool: &Pool) -> Result<Vec<RolloutRecord>, StoreError> {
            sqlx::query_as::<_, RolloutRow>(&format!(
                "{ROLLOUT_SELECT} WHERE r.state IN ('running', 'waiting_approval', 'paused') ORDER BY r.created_at"
            ))
            .fetch_all(pool)
            .await
            .map_err(db_err("rollout"))?
            .into_iter()
            .map(TryInto::try_into)
            .collect()
        }

        pub(crate) async fn get_rollout(pool: &Pool, id: Uuid) -> Result<Option<RolloutRecord>, StoreError> {
            sqlx::query_as::<_, RolloutRow>(&format!("{ROLLOUT_SELECT} WHERE r.id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(db_err("rollout"))?
                .map(TryInto::try_into)
                .transpose()
        }

        pub(crate) async fn transition_rollout(
            pool: &Pool,
            r: &RolloutRecord,
            expected_revision: i64,
            event: &RolloutEventRecord,
            baseline: &[DeploymentRecord],
        ) -> Result<bool, StoreError> {
            let mut tx = pool.begin().await.map_err(db_err("rollout"))?;
            let done = sqlx::query(
                "UPDATE rollouts SET state = $3, stage = $4, bucket_limit = $5, shadow = $6, stage_started_at = $7, \
                 revision = $8, reason = $9, updated_at = $10 WHERE id = $1 AND revision = $2",
            )
            .bind(r.id)
            .bind(expected_revision)
            .bind(r.state.as_str())
            .bind(i32_of(r.stage))
            .bind(i32_of(r.bucket_limit))
            .bind(r.shadow)
            .bind(r.stage_started_at)
            .bind(r.revision)
            .bind(&r.reason)
            .bind(r.updated_at)
            .execute(&mut *tx)
            .await
            .map_err(db_err("rollout"))?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
            insert_event(&mut *tx, event).await?;
            for d in baseline {
                let updated = sqlx::query(
                    "UPDATE deployments SET version = $3, created_by = $4, updated_at = $5 \
                     WHERE model_id = $1 AND selector_text = $2",
                )
                .bind(d.model_id)
                .bind(&d.selector_text)
                .bind(&d.version)
                .bind(&d.created_by)
                .bind(d.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(db_err("deployment"))?;
                if updated.rows_affected() == 0 {
                    sqlx::query(crate::store::shared::INSERT_DEPLOYMENT)
                    .bind(d.id)
                    .bind(d.model_id)
                    .bind(&d.version)
                    .bind(Json(&d.selector))
                    .bind(&d.selector_text)
                    .bind(&d.created_by)
                    .bind(d.created_at)
                    .bind(d.updated_at)
                    .bind(d.escalation.as_ref().map(Json))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err("deployment"))?;
                }
            }
            tx.commit().await.map_err(db_err("rollout"))?;
            Ok(true)
        }

        pub(crate) async fn list_rollout_events(
            pool: &Pool,
            rollout_id: Option<Uuid>,
            limit: u32,
        ) -> Result<Vec<RolloutEventRecord>, StoreError> {
            let rows = match rollout_id {
                Some(id) => sqlx::query_as::<_, EventRow>(&format!(
                    "SELECT {EVENT_COLUMNS} FROM rollout_events WHERE rollout_id = $1 ORDER BY id LIMIT $2"
                ))
                .bind(id)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await,
                None => sqlx::query_as::<_, EventRow>(&format!(
                    "SELECT {EVENT_COLUMNS} FROM rollout_events ORDER BY id DESC LIMIT $1"
                ))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await,
            };
            rows.map_err(db_err("rollout event"))?
                .into_iter()
                .map(TryInto::try_into)
                .collect()
        }

        pub(crate) async fn put_rollout_policy(pool: &Pool, p: &PolicyRecord) -> Result<bool, StoreError> {
            let updated = sqlx::query(
                "UPDATE rollout_policies SET policy = $2, updated_by = $3, updated_at = $4 WHERE name = $1",
            )
            .bind(&p.name)
            .bind(Json(&p.policy))
            .bind(&p.updated_by)
            .bind(p.updated_at)
            .execute(pool)
            .await
            .map_err(db_err("rollout policy"))?;
            if updated.rows_affected() > 0 {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO rollout_policies (name, policy, updated_by, updated_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&p.name)
            .bind(Json(&p.policy))
            .bind(&p.updated_by)
            .bind(p.updated_at)
            .execute(pool)
            .await
            .map(|_| true)
            .map_err(db_err("rollout policy"))
        }

        pub(crate) async fn get_rollout_policy(pool: &Pool, name: &str) -> Result<Option<PolicyRecord>, StoreError> {
            Ok(sqlx::query_as::<_, PolicyRow>(
                "SELECT name, policy, updated_by, updated_at FROM rollout_policies WHERE name = $1",
            )
            .bind(name)
            .fetch_optional(pool)
            .await
            .map_err(db_err("rollout policy"))?
            .map(Into::into))
        }

        pub(crate) async fn list_rollout_policies(pool: &Pool) -> Result<Vec<PolicyRecord>, StoreError> {
            Ok(sqlx::query_as::<_, PolicyRow>(
                "SELECT name, policy, updated_by, updated_at FROM rollout_policies ORDER BY name",
            )
            .fetch_all(pool)
            .await
            .map_err(db_err("rollout policy"))?
            .into_iter()
            .map(Into::into)
            .collect())
        }

        pub(crate) async fn delete_rollout_policy(pool: &Pool, name: &str) -> Result<(), StoreError> {
            let done = sqlx::query("DELETE FROM rollout_policies WHERE name = $1")
                .bind(name)
                .execute(pool)
                .await
                .map_err(db_err("rollout policy"))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound("rollout policy".into()));
            }
            Ok(())
        }

        pub(crate) async fn insert_webhook(pool: &Pool, w: &WebhookRecord) -> Result<(), StoreError> {
            sqlx::query("INSERT INTO webhooks (id, url, secret, created_by, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(w.id)
                .bind(&w.url)
                .bind(&w.secret)
                .bind(&w.created_by)
                .bind(w.created_at)
                .execute(pool)
                .await
                .map(|_| ())
                .map_err(db_err("webhook"))
        }

        pub(crate) async fn list_webhooks(pool: &Pool) -> Result<Vec<WebhookRecord>, StoreError> {
            Ok(sqlx::query_as::<_, WebhookRow>(
                "SELECT id, url, secret, created_by, created_at FROM webhooks ORDER BY created_at",
            )
            .fetch_all(pool)
            .await
            .map_err(db_err("webhook"))?
            .into_iter()
            .map(Into::into)
            .collect())
        }

        pub(crate) async fn delete_webhook(pool: &Pool, id: Uuid) -> Result<(), StoreError> {
            let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await
                .map_err(db_err("webhook"))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound("webhook".into()));
            }
            Ok(())
        }

        pub(crate) async fn reports_since(
            pool: &Pool,
            since: DateTime<Utc>,
        ) -> Result<Vec<(Uuid, DateTime<Utc>, serde_json::Value)>, StoreError> {
            let rows: Vec<(Uuid, DateTime<Utc>, Json<serde_json::Value>)> = sqlx::query_as(
                "SELECT device_id, received_at, report FROM device_reports WHERE received_at >= $1 ORDER BY id",
            )
            .bind(since)
            .fetch_all(pool)
            .await
            .map_err(db_err("report"))?;
            Ok(rows.into_iter().map(|(id, at, r)| (id, at, r.0)).collect())
        }
    };
}

pub(crate) use rollout_queries;
