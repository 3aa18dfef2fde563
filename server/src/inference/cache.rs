//! The bounded cache of loaded model versions: a memory budget in bytes, least recently used
//! first out, and one load per version however many requests ask for it at once.
//!
//! A version's cost is estimated before it loads (see [`estimated_cost`]), so the budget holds
//! while loads are in flight. Evicting a version only drops the cache's reference: requests
//! running on it finish, and its memory is freed when the last one does. A version whose cost
//! alone is over the budget is still served, alone in the cache, rather than never.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use flotilla_serving::LoadedModel;
use hashlink::LinkedHashMap;
use tokio::sync::OnceCell;

/// Fixed part of a loaded model's estimated memory, in bytes: the graph, the execution plan and
/// its buffers. The small sample models take 40 to 600 KiB each whatever their file size.
pub const COST_OVERHEAD_BYTES: u64 = 1024 * 1024;

/// A loaded model's estimated memory per byte of its ONNX file. Measured on a MobileNetV2-sized
/// model (14 MB file): 1.1× per loaded copy, about 2.2× while it loads (the file's bytes, the
/// parsed graph and the optimised one at once); the cache counts the peak.
pub const COST_FACTOR: u64 = 2;

/// The memory a model loaded from an `artifact_size`-byte file is counted for.
pub fn estimated_cost(artifact_size: u64) -> u64 {
    COST_OVERHEAD_BYTES.saturating_add(artifact_size.saturating_mul(COST_FACTOR))
}

/// What identifies a cached version. The digest is part of it so a version can never be
/// answered by other bytes than its record names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Model name.
    pub model: String,
    /// Version.
    pub version: String,
    /// Hex sha256 of the artifact.
    pub sha256: String,
}

struct Entry {
    /// Filled by the first request's load; later requests wait on it instead of loading again.
    cell: Arc<OnceCell<Arc<LoadedModel>>>,
    cost: u64,
}

#[derive(Default)]
struct State {
    /// Least recently used first.
    entries: LinkedHashMap<CacheKey, Entry>,
    used: u64,
}

/// The figures `/metrics` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheStats {
    /// The budget, in bytes.
    pub capacity_bytes: u64,
    /// Estimated bytes of the versions cached (loaded or loading).
    pub used_bytes: u64,
    /// Versions cached (loaded or loading).
    pub models: usize,
    /// Requests that found their version cached (loaded or loading).
    pub hits: u64,
    /// Requests that did not, and started a load.
    pub misses: u64,
    /// Versions loaded.
    pub loads: u64,
    /// Loads that failed.
    pub load_failures: u64,
    /// Versions evicted to stay within the budget (or because they were yanked).
    pub evictions: u64,
}

/// Loaded model versions within a memory budget. Shared behind an `Arc`.
pub struct ModelCache {
    capacity: u64,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
    loads: AtomicU64,
    load_failures: AtomicU64,
    evictions: AtomicU64,
}

impl std::fmt::Debug for ModelCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl ModelCache {
    /// An empty cache holding at most `capacity_bytes` of estimated model memory.
    pub fn new(capacity_bytes: u64) -> ModelCache {
        ModelCache {
            capacity: capacity_bytes,
            state: Mutex::new(State::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            loads: AtomicU64::new(0),
            load_failures: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update leaves the map and its byte count consistent before it can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The version under `key`, loading it with `load` unless it is cached or being loaded.
    /// Concurrent callers for the same key share one load. A failed load is not cached: the
    /// next request tries again.
    pub async fn get_or_load<F, Fut, E>(
        &self,
        key: CacheKey,
        cost: u64,
        load: F,
    ) -> Result<Arc<LoadedModel>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Arc<LoadedModel>, E>>,
    {
        let cell = {
            let mut state = self.state();
            let cached = state
                .entries
                .to_back(&key)
                .map(|entry| Arc::clone(&entry.cell));
            match cached {
                Some(cell) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    cell
                }
                None => {
                    self.misses.fetch_add(1, Ordering::Relaxed);
                    let cell = Arc::new(OnceCell::new());
                    state.entries.insert(
                        key.clone(),
                        Entry {
                            cell: Arc::clone(&cell),
                            cost,
                        },
                    );
                    state.used = state.used.saturating_add(cost);
                    self.evict_over_budget(&mut state);
                    cell
                }
            }
        };
        let loaded = cell
            .get_or_try_init(|| async {
                let loaded = load().await?;
                self.loads.fetch_add(1, Ordering::Relaxed);
                Ok(loaded)
            })
            .await;
        match loaded {
            Ok(model) => Ok(Arc::clone(model)),
            Err(e) => {
                self.load_failures.fetch_add(1, Ordering::Relaxed);
                let mut state = self.state();
                // Only this load's entry: a later one for the same key may have replaced it.
                if state
                    .entries
                    .get(&key)
                    .is_some_and(|entry| Arc::ptr_eq(&entry.cell, &cell))
                {
                    if let Some(entry) = state.entries.remove(&key) {
                        state.used = state.used.saturating_sub(entry.cost);
                    }
                }
                Err(e)
            }
        }
    }

    /// Evicts least recently used versions until the budget holds, never the most recent one.
    fn evict_over_budget(&self, state: &mut State) {
        while state.used > self.capacity && state.entries.len() > 1 {
            let Some((key, entry)) = state.entries.pop_front() else {
                break;
            };
            state.used = state.used.saturating_sub(entry.cost);
            self.evictions.fetch_add(1, Ordering::Relaxed);
            tracing::info!(model = %key.model, version = %key.version, "evicted from the inference cache");
        }
    }

    /// Drops every cached copy of `model` `version` (it was yanked).
    pub fn forget(&self, model: &str, version: &str) {
        let mut state = self.state();
        let keys: Vec<CacheKey> = state
            .entries
            .keys()
            .filter(|k| k.model == model && k.version == version)
            .cloned()
            .collect();
        for key in keys {
            if let Some(entry) = state.entries.remove(&key) {
                state.used = state.used.saturating_sub(entry.cost);
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The (model, version) pairs loaded now, least recently used first.
    pub fn loaded(&self) -> Vec<(String, String)> {
        self.state()
            .entries
            .iter()
            .filter(|(_, entry)| entry.cell.initialized())
            .map(|(key, _)| (key.model.clone(), key.version.clone()))
            .collect()
    }

    /// The figures for `/metrics`.
    pub fn stats(&self) -> CacheStats {
        let (used_bytes, models) = {
            let state = self.state();
            (state.used, state.entries.len())
        };
        CacheStats {
            capacity_bytes: self.capacity,
            used_bytes,
            models,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            loads: self.loads.load(Ordering::Relaxed),
            load_failures: self.load_failures.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use flotilla_runtime::{LoadOptions, Model};
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn fraud() -> Arc<Model> {
        let bytes = include_bytes!("../../../models/fraud-1.0.0.onnx");
        Arc::new(Model::load(bytes, &LoadOptions::default()).unwrap())
    }

    fn key(model: &str) -> CacheKey {
        CacheKey {
            model: model.into(),
            version: "1.0.0".into(),
            sha256: "00".into(),
        }
    }

    /// A loader that counts its calls.
    async fn load(
        model: Arc<Model>,
        name: &str,
        calls: &AtomicUsize,
    ) -> Result<Arc<LoadedModel>, String> {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(Arc::new(LoadedModel::new(name, "1.0.0", model)))
    }

    #[tokio::test]
    async fn least_recently_used_versions_leave_first_and_come_back_on_demand() {
        let model = fraud();
        let calls = AtomicUsize::new(0);
        let cache = ModelCache::new(25);
        for name in ["a", "b", "a"] {
            cache
                .get_or_load(key(name), 10, || load(model.clone(), name, &calls))
                .await
                .unwrap();
        }
        // `a` was used last, so `c` pushes out `b`.
        cache
            .get_or_load(key("c"), 10, || load(model.clone(), "c", &calls))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let names: Vec<String> = cache.loaded().into_iter().map(|(m, _)| m).collect();
        assert_eq!(names, ["a", "c"]);
        let stats = cache.stats();
        assert_eq!(
            (stats.used_bytes, stats.evictions, stats.hits, stats.misses),
            (20, 1, 1, 3)
        );
        // `b` loads again, and `a` (now least recently used) goes.
        cache
            .get_or_load(key("b"), 10, || load(model.clone(), "b", &calls))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        let names: Vec<String> = cache.loaded().into_iter().map(|(m, _)| m).collect();
        assert_eq!(names, ["c", "b"]);
    }

    #[tokio::test]
    async fn a_version_over_the_budget_is_served_alone() {
        let model = fraud();
        let calls = AtomicUsize::new(0);
        let cache = ModelCache::new(5);
        for name in ["a", "b"] {
            cache
                .get_or_load(key(name), 10, || load(model.clone(), name, &calls))
                .await
                .unwrap();
        }
        assert_eq!(cache.loaded(), [("b".to_owned(), "1.0.0".to_owned())]);
        assert_eq!(cache.stats().used_bytes, 10);
    }

    #[tokio::test]
    async fn concurrent_first_requests_share_one_load() {
        let model = fraud();
        let calls = AtomicUsize::new(0);
        let cache = ModelCache::new(100);
        let (release, gate) = tokio::sync::watch::channel(false);
        let slow_load = || {
            let (model, mut gate) = (model.clone(), gate.clone());
            let calls = &calls;
            async move {
                gate.wait_for(|open| *open).await.unwrap();
                load(model, "a", calls).await
            }
        };
        let first = cache.get_or_load(key("a"), 10, slow_load);
        let second = cache.get_or_load(key("a"), 10, slow_load);
        let opener = async {
            release.send(true).unwrap();
            Ok::<_, String>(())
        };
        let (first, second, _) = tokio::join!(first, second, opener);
        assert!(Arc::ptr_eq(&first.unwrap(), &second.unwrap()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(cache.stats().loads, 1);
    }

    #[tokio::test]
    async fn failed_loads_are_not_cached() {
        let model = fraud();
        let calls = AtomicUsize::new(0);
        let cache = ModelCache::new(100);
        let failed = cache
            .get_or_load(key("a"), 10, || async {
                Err::<Arc<LoadedModel>, _>("no bytes")
            })
            .await;
        assert_eq!(failed.unwrap_err(), "no bytes");
        let stats = cache.stats();
        assert_eq!(
            (stats.models, stats.used_bytes, stats.load_failures),
            (0, 0, 1)
        );
        cache
            .get_or_load(key("a"), 10, || load(model.clone(), "a", &calls))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn forgetting_a_yanked_version_frees_its_place() {
        let model = fraud();
        let calls = AtomicUsize::new(0);
        let cache = ModelCache::new(100);
        cache
            .get_or_load(key("a"), 10, || load(model.clone(), "a", &calls))
            .await
            .unwrap();
        cache.forget("a", "1.0.0");
        assert_eq!(cache.stats().used_bytes, 0);
        assert!(cache.loaded().is_empty());
    }
}
