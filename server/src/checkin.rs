//! What makes an unchanged check-in nearly free: agents poll their desired state every few
//! seconds, and almost every poll finds nothing changed. Two in-memory caches let such a poll be
//! answered without a database round trip, and contact times are written in batches. A third
//! holds what every device's state is computed from (the [`FleetView`]), so a poll that does
//! need its state reads only its own device row.
//!
//! All three caches are keyed to the **fleet generation**, the value of `AppState::fleet_changes`,
//! which is bumped after every change that can alter a device's desired state or its right to
//! call (deploys, label and status changes, revocation, deletion; with several replicas, the
//! changes the others announce through Postgres `LISTEN/NOTIFY` too). An entry made at an
//! older generation is never used, so revoking a device takes effect on its next request, and
//! a deploy recomputes every device's state on its next poll. The generation is read *before*
//! the database is, so an entry computed from data that changed meanwhile is already stale when
//! stored. Entries also expire after a while, as a safety net should a change signal be lost.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use uuid::Uuid;

use crate::domain::fleet::FleetView;
use crate::domain::DomainError;
use crate::store::Store;

/// How long a cached credential is trusted without a change signal.
const CREDENTIAL_MAX_AGE: Duration = Duration::from_secs(300);
/// How long a cached `ETag` is trusted without a change signal. Far below the day a stored
/// desired state has left when it is re-signed, so a re-signing is never missed by much.
const ETAG_MAX_AGE: Duration = Duration::from_secs(600);

/// An authenticated device as the check-in path needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedDevice {
    /// Device id.
    pub id: Uuid,
    /// Device name (the audit trail's actor).
    pub name: String,
}

struct Entry<T> {
    value: T,
    generation: u64,
    at: Instant,
}

impl<T: Clone> Entry<T> {
    fn get(&self, generation: u64, max_age: Duration) -> Option<T> {
        (self.generation == generation && self.at.elapsed() < max_age).then(|| self.value.clone())
    }
}

/// How long the fleet view (deployments, versions, open rollouts) is used without a change
/// signal: short, since it is cheap to reload once for all devices.
const VIEW_MAX_AGE: Duration = Duration::from_secs(60);

/// The credential, `ETag` and fleet-view caches.
#[derive(Default)]
pub struct CheckinCache {
    /// What every device's desired state is computed from, loaded once per generation. Its
    /// lock is held while loading, so a deploy that wakes thousands of polls loads it once.
    view: tokio::sync::Mutex<Option<Entry<Arc<FleetView>>>>,
    /// Hash of an active device's credential → the device.
    credentials: RwLock<HashMap<String, Entry<CachedDevice>>>,
    /// Device → the `ETag` of the desired state last issued to it.
    etags: RwLock<HashMap<Uuid, Entry<String>>>,
    /// Generation the maps were last swept at.
    swept: Mutex<u64>,
    /// The newest trust root's serial, as of the newest fleet view loaded. An `ETag` cached at
    /// a generation implies a view of that generation or later was loaded, so the fast path
    /// can name the serial without the view.
    trust_root_serial: AtomicU64,
}

impl CheckinCache {
    /// The fleet view as of `generation` or later: cached, or read from `store` (and cached)
    /// if the cached one is older, expired or missing.
    pub async fn fleet_view(
        &self,
        store: &dyn Store,
        generation: u64,
    ) -> Result<Arc<FleetView>, DomainError> {
        let mut view = self.view.lock().await;
        // A view loaded at a later generation is newer than this caller needs: also good.
        if let Some(e) = view.as_ref() {
            if e.generation >= generation && e.at.elapsed() < VIEW_MAX_AGE {
                return Ok(e.value.clone());
            }
        }
        let loaded = Arc::new(FleetView::load(store).await?);
        self.trust_root_serial
            .store(loaded.trust_root_serial(), Ordering::Relaxed);
        *view = Some(Entry {
            value: loaded.clone(),
            generation,
            at: Instant::now(),
        });
        Ok(loaded)
    }

    /// The newest trust root's serial as of the newest fleet view loaded (for answers that
    /// need no view).
    pub fn trust_root_serial(&self) -> u64 {
        self.trust_root_serial.load(Ordering::Relaxed)
    }

    /// The active device whose credential hashes to `hash`, if cached at `generation`.
    pub fn device(&self, hash: &str, generation: u64) -> Option<CachedDevice> {
        read(&self.credentials)
            .get(hash)
            .and_then(|e| e.get(generation, CREDENTIAL_MAX_AGE))
    }

    /// Remembers an active device, as read from the database at `generation`.
    pub fn remember_device(&self, hash: &str, device: CachedDevice, generation: u64) {
        self.sweep(generation);
        write(&self.credentials).insert(
            hash.to_owned(),
            Entry {
                value: device,
                generation,
                at: Instant::now(),
            },
        );
    }

    /// The `ETag` last issued to `device`, if issued at `generation`.
    pub fn etag(&self, device: Uuid, generation: u64) -> Option<String> {
        read(&self.etags)
            .get(&device)
            .and_then(|e| e.get(generation, ETAG_MAX_AGE))
    }

    /// Remembers the `ETag` of the state computed for `device` at `generation`.
    pub fn remember_etag(&self, device: Uuid, etag: &str, generation: u64) {
        self.sweep(generation);
        write(&self.etags).insert(
            device,
            Entry {
                value: etag.to_owned(),
                generation,
                at: Instant::now(),
            },
        );
    }

    /// Drops every entry of older generations once per generation, so the maps hold only what
    /// the current fleet uses.
    fn sweep(&self, generation: u64) {
        {
            let mut swept = self.swept.lock().unwrap_or_else(|p| p.into_inner());
            if *swept == generation {
                return;
            }
            *swept = generation;
        }
        write(&self.credentials).retain(|_, e| e.generation == generation);
        write(&self.etags).retain(|_, e| e.generation == generation);
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    // The maps hold plain data; a panic elsewhere cannot leave them inconsistent.
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

/// Device contact times, kept in memory and written in one statement every few seconds
/// instead of one `UPDATE` per request.
#[derive(Default)]
pub struct ContactLog {
    pending: Mutex<HashMap<Uuid, DateTime<Utc>>>,
}

/// How often contact times are written.
pub const CONTACT_FLUSH_INTERVAL: Duration = Duration::from_secs(5);

impl ContactLog {
    /// Notes that `device` called at `at`.
    pub fn record(&self, device: Uuid, at: DateTime<Utc>) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(device, at);
    }

    /// Writes what was noted since the last flush.
    pub async fn flush(&self, store: &dyn Store) {
        let batch: Vec<(Uuid, DateTime<Utc>)> =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
                .into_iter()
                .collect();
        if batch.is_empty() {
            return;
        }
        if let Err(e) = store.touch_devices(&batch).await {
            // Bookkeeping only: the next contact records them again.
            tracing::warn!(error = %e, devices = batch.len(), "could not record device contact");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn device() -> CachedDevice {
        CachedDevice {
            id: Uuid::new_v4(),
            name: "d".into(),
        }
    }

    #[test]
    fn entries_hold_only_for_their_generation() {
        let cache = CheckinCache::default();
        let d = device();
        cache.remember_device("h", d.clone(), 3);
        cache.remember_etag(d.id, "\"7\"", 3);
        assert_eq!(cache.device("h", 3), Some(d.clone()));
        assert_eq!(cache.etag(d.id, 3).as_deref(), Some("\"7\""));
        // A change (revocation, deploy...) bumps the generation: nothing cached is used.
        assert_eq!(cache.device("h", 4), None);
        assert_eq!(cache.etag(d.id, 4), None);
        assert_eq!(cache.device("other", 3), None);
    }

    #[test]
    fn a_new_generation_sweeps_old_entries() {
        let cache = CheckinCache::default();
        let (a, b) = (device(), device());
        cache.remember_device("a", a.clone(), 1);
        cache.remember_etag(a.id, "\"1\"", 1);
        cache.remember_device("b", b.clone(), 2);
        assert_eq!(read(&cache.credentials).len(), 1);
        assert_eq!(read(&cache.etags).len(), 0);
        assert_eq!(cache.device("b", 2), Some(b));
    }

    #[tokio::test]
    async fn the_fleet_view_is_loaded_once_per_generation() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::SqliteStore::open(&dir.path().join("db"), 1)
            .await
            .unwrap();
        let cache = CheckinCache::default();
        let first = cache.fleet_view(&store, 5).await.unwrap();
        let again = cache.fleet_view(&store, 5).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again), "same generation: loaded once");
        // A caller that read an older generation is served the newer view.
        let older = cache.fleet_view(&store, 4).await.unwrap();
        assert!(Arc::ptr_eq(&first, &older));
        let next = cache.fleet_view(&store, 6).await.unwrap();
        assert!(!Arc::ptr_eq(&first, &next), "a change reloads it");
    }
}
