//! The rollout engine: on a tick, and soon after device reports arrive, the replica holding the
//! leader lock measures every running rollout and commits what the gates decide. Time comes from
//! an injected [`Clock`], so tests drive stages without sleeping.

use chrono::{DateTime, Utc};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{watch, Notify};

use crate::domain::rollouts::{self, Change};
use crate::domain::DomainError;
use crate::store::Store;
use crate::webhooks::Webhooks;

/// Where the engine and the rollout actions get the time.
pub trait Clock: Send + Sync + 'static {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock tests set and advance by hand.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// Starts at `at`.
    pub fn new(at: DateTime<Utc>) -> ManualClock {
        ManualClock(Mutex::new(at))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: chrono::Duration) {
        let mut t = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Evaluates rollouts and publishes their transitions.
pub struct RolloutEngine {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    webhooks: Webhooks,
    on_change: Box<dyn Fn() + Send + Sync>,
    /// Reports arrived since the last pass.
    nudge: Notify,
    /// Whether this replica held the leader lock at its last pass (for logging changes).
    leading: AtomicBool,
}

impl std::fmt::Debug for RolloutEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolloutEngine").finish_non_exhaustive()
    }
}

impl RolloutEngine {
    /// An engine over `store`; `on_change` runs after every committed transition (it wakes the
    /// agents' long-polls on every replica).
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        webhooks: Webhooks,
        on_change: Box<dyn Fn() + Send + Sync>,
    ) -> RolloutEngine {
        RolloutEngine {
            store,
            clock,
            webhooks,
            on_change,
            nudge: Notify::new(),
            leading: AtomicBool::new(false),
        }
    }

    /// The engine's clock (the rollout actions use it too).
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Asks for a pass soon: a device reported.
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    /// One pass, if this replica leads: returns the transitions committed.
    pub async fn tick(&self) -> Result<Vec<Change>, DomainError> {
        let leads = self.store.try_lead().await?;
        if leads != self.leading.swap(leads, Ordering::Relaxed) {
            if leads {
                tracing::info!("this replica now leads the rollout engine");
            } else {
                tracing::info!("another replica leads the rollout engine");
            }
        }
        if !leads {
            return Ok(Vec::new());
        }
        let changes = rollouts::evaluate_all(self.store.as_ref(), self.clock.now()).await?;
        for c in &changes {
            tracing::info!(
                rollout = %c.rollout.id,
                model = %c.rollout.model_name,
                version = %c.rollout.version,
                event = %c.event.event,
                state = c.rollout.state.as_str(),
                stage = c.rollout.stage + 1,
                reason = %c.event.reason,
                "rollout transition"
            );
            self.published(c);
        }
        Ok(changes)
    }

    /// Tells agents and webhooks about a committed transition (the engine's or an operator's).
    pub fn published(&self, c: &Change) {
        (self.on_change)();
        self.webhooks.deliver(&c.rollout, &c.event);
    }

    /// Runs passes every `every` and shortly after reports, until `stopping` turns true.
    pub async fn run(self: Arc<Self>, every: Duration, mut stopping: watch::Receiver<bool>) {
        // Reports come in bursts; one pass per short quiet spell is enough.
        const SETTLE: Duration = Duration::from_millis(200);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = self.nudge.notified() => tokio::time::sleep(SETTLE).await,
                _ = stopping.changed() => {}
            }
            if *stopping.borrow() {
                return;
            }
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, cause = ?e.cause, "rollout engine pass failed; retrying on the next tick");
            }
        }
    }
}
