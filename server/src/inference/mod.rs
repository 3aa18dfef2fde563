//! Server-side inference: the Open Inference Protocol (`flotilla-serving`) over the published,
//! non-yanked model versions, loaded from the blob store into a bounded cache.
//!
//! Which version answers:
//! - `/v2/models/{name}/versions/{version}/...`: that version, if it is published and not
//!   yanked (a yanked or unknown version is 404).
//! - `/v2/models/{name}/...`: the fleet baseline, the version deployed with the empty
//!   selector; without such a deployment (or if its version was yanked since), the newest
//!   published version that is not yanked.
//!
//! The route handlers (authentication, OpenAPI) are in `routes/inference.rs`.

mod cache;

pub use cache::{
    estimated_cost, CacheKey, CacheStats, ModelCache, COST_FACTOR, COST_OVERHEAD_BYTES,
};

use std::fmt::Write;
use std::sync::Arc;

use flotilla_runtime::{LoadOptions, Model};
use flotilla_serving::metrics::{escape, header, sample};
use flotilla_serving::{
    ErrorStyle, HealthRecorder, InferencePool, LoadedModel, ModelSource, OipError, OipService,
    PoolConfig, ServiceOptions, SERVED_BY_SERVER,
};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::blob::{BlobError, BlobStore, Sha256Digest};
use crate::config::Settings;
use crate::store::{ModelRecord, Store, StoreError, VersionRecord};

/// The name `GET /v2` reports.
pub const SERVER_NAME: &str = "flotilla-server";

/// Models loading at once; each holds its file and two graphs in memory meanwhile.
const CONCURRENT_LOADS: usize = 2;

/// The published model versions, as a [`ModelSource`]: resolved in the store, loaded from the
/// blob store after their digest is checked, kept in a [`ModelCache`].
pub struct PublishedModels {
    store: Arc<dyn Store>,
    blobs: BlobStore,
    cache: ModelCache,
    loading: Semaphore,
}

impl std::fmt::Debug for PublishedModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishedModels")
            .field("blobs", &self.blobs)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl PublishedModels {
    /// Versions from `store` and `blobs`, cached within `cache_bytes`.
    pub fn new(store: Arc<dyn Store>, blobs: BlobStore, cache_bytes: u64) -> PublishedModels {
        PublishedModels {
            store,
            blobs,
            cache: ModelCache::new(cache_bytes),
            loading: Semaphore::new(CONCURRENT_LOADS),
        }
    }

    /// The cache of loaded versions.
    pub fn cache(&self) -> &ModelCache {
        &self.cache
    }

    async fn model(&self, name: &str) -> Result<ModelRecord, OipError> {
        self.store
            .get_model(name)
            .await
            .map_err(store_error)?
            .ok_or_else(|| OipError::NotFound(format!("model `{name}` does not exist")))
    }

    /// The version record that answers for `name` (`version`, or the baseline).
    pub async fn published_version(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<VersionRecord, OipError> {
        let model = self.model(name).await?;
        let Some(version) = version else {
            return self.baseline(&model).await;
        };
        // Stored versions are canonical semver; anything else cannot name one.
        let record = match semver::Version::parse(version) {
            Ok(canonical) => self
                .store
                .get_version(model.id, &canonical.to_string())
                .await
                .map_err(store_error)?,
            Err(_) => None,
        }
        .ok_or_else(|| OipError::NotFound(format!("model `{name}` has no version `{version}`")))?;
        if record.yanked_at.is_some() {
            return Err(OipError::NotFound(format!(
                "model `{name}` version `{version}` is yanked and no longer served{}",
                record
                    .yank_reason
                    .as_deref()
                    .filter(|r| !r.is_empty())
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )));
        }
        Ok(record)
    }

    /// The fleet baseline of `model` (see the module documentation).
    async fn baseline(&self, model: &ModelRecord) -> Result<VersionRecord, OipError> {
        let deployments = self.store.list_deployments().await.map_err(store_error)?;
        let deployed = deployments
            .iter()
            .find(|d| d.model_id == model.id && d.selector.is_empty());
        if let Some(deployed) = deployed {
            let record = self
                .store
                .get_version(model.id, &deployed.version)
                .await
                .map_err(store_error)?;
            if let Some(record) = record.filter(|r| r.yanked_at.is_none()) {
                return Ok(record);
            }
        }
        let versions = self
            .store
            .list_versions(model.id)
            .await
            .map_err(store_error)?;
        newest_servable(versions).ok_or_else(|| {
            OipError::NotFound(format!(
                "model `{}` has no published version that is not yanked",
                model.name
            ))
        })
    }

    /// Reads `record`'s artifact, checks its digest and size, and loads it.
    async fn load(&self, record: &VersionRecord) -> Result<Arc<LoadedModel>, OipError> {
        let (name, version) = (record.model_name.clone(), record.version.clone());
        let failed = |what: &str| {
            OipError::Internal(format!(
                "model `{name}` version `{version}` could not be loaded ({what}); the cause is \
                 in the server's log"
            ))
        };
        let digest = Sha256Digest::parse_hex(&record.artifact_sha256).ok_or_else(|| {
            tracing::error!(model = %name, version = %version, sha256 = %record.artifact_sha256, "stored digest is malformed");
            failed("bad digest")
        })?;
        let _permit = self
            .loading
            .acquire()
            .await
            .map_err(|_| failed("shutting down"))?;
        let bytes = self.blobs.read_all(&digest).await.map_err(|e| match e {
            BlobError::Store(cause) => {
                tracing::error!(model = %name, version = %version, error = %cause, "blob store failed");
                OipError::Unavailable("the blob store is unavailable; try again later".into())
            }
            other => {
                tracing::error!(model = %name, version = %version, error = %other, "artifact unreadable");
                failed("artifact missing")
            }
        })?;
        let size = record.artifact_size;
        // Hashing and parsing are CPU work: off the async threads. Only bytes that hash to the
        // published digest are parsed.
        let loaded = tokio::task::spawn_blocking(move || {
            let actual: [u8; 32] = Sha256::digest(&bytes).into();
            if actual != digest.0 || bytes.len() as u64 != size {
                return Err(format!(
                    "artifact {digest} holds {} bytes hashing to {}, not the published {size} \
                     bytes",
                    bytes.len(),
                    hex::encode(actual)
                ));
            }
            Model::load(&bytes, &LoadOptions::default()).map_err(|e| e.to_string())
        })
        .await;
        match loaded {
            Ok(Ok(model)) => {
                tracing::info!(model = %name, version = %version, "loaded for inference");
                Ok(Arc::new(LoadedModel::new(name, version, Arc::new(model))))
            }
            Ok(Err(cause)) => {
                tracing::error!(model = %name, version = %version, %cause, "model not loaded");
                Err(failed("refused"))
            }
            Err(cause) => {
                tracing::error!(model = %name, version = %version, %cause, "model load did not complete");
                Err(failed("interrupted"))
            }
        }
    }
}

/// The newest version (by semver) that is not yanked.
fn newest_servable(versions: Vec<VersionRecord>) -> Option<VersionRecord> {
    versions
        .into_iter()
        .filter(|v| v.yanked_at.is_none())
        .max_by_key(|v| semver::Version::parse(&v.version).ok())
}

fn store_error(e: StoreError) -> OipError {
    match e {
        StoreError::Unavailable(cause) => {
            tracing::error!(error = format!("{cause:#}"), "database unavailable");
            OipError::Unavailable("the database is unavailable; try again later".into())
        }
        other => {
            tracing::error!(error = format!("{other:#}"), "database error");
            OipError::Internal("internal server error; the server's log has the details".into())
        }
    }
}

impl ModelSource for PublishedModels {
    async fn resolve(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Arc<LoadedModel>, OipError> {
        let record = self.published_version(name, version).await?;
        let key = CacheKey {
            model: record.model_name.clone(),
            version: record.version.clone(),
            sha256: record.artifact_sha256.clone(),
        };
        let cost = estimated_cost(record.artifact_size);
        self.cache
            .get_or_load(key, cost, || self.load(&record))
            .await
    }

    /// Every published version that is not yanked, newest first.
    async fn versions(&self, loaded: &LoadedModel) -> Result<Vec<String>, OipError> {
        let model = self.model(&loaded.name).await?;
        let mut versions: Vec<VersionRecord> = self
            .store
            .list_versions(model.id)
            .await
            .map_err(store_error)?
            .into_iter()
            .filter(|v| v.yanked_at.is_none())
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(semver::Version::parse(&v.version).ok()));
        Ok(versions.into_iter().map(|v| v.version).collect())
    }

    /// Ready while the database answers: every answer starts there.
    async fn ready(&self) -> Result<(), OipError> {
        self.store.ping().await.map_err(|e| {
            tracing::warn!(error = format!("{e:#}"), "not ready for inference");
            OipError::NotReady("not ready: the database does not answer".into())
        })
    }
}

/// The server's inference endpoints and their state.
#[derive(Debug, Clone)]
pub struct ServerInference {
    service: OipService<PublishedModels>,
}

impl ServerInference {
    /// Endpoints over `store` and `blobs`, sized by `settings`.
    pub fn new(store: Arc<dyn Store>, blobs: BlobStore, settings: &Settings) -> ServerInference {
        let defaults = PoolConfig::default();
        let workers = match settings.inference_workers {
            0 => defaults.workers,
            n => n,
        };
        let pool = InferencePool::new(PoolConfig {
            workers,
            queue_depth: 4 * workers,
        });
        let options = ServiceOptions {
            server_name: SERVER_NAME,
            server_version: env!("CARGO_PKG_VERSION"),
            served_by: SERVED_BY_SERVER,
            log_owner: "server",
            error_style: ErrorStyle::WithCode,
            body_limit: settings.max_inference_body_bytes,
        };
        ServerInference {
            service: OipService::new(
                Arc::new(PublishedModels::new(
                    store,
                    blobs,
                    settings.inference_cache_bytes,
                )),
                Arc::new(pool),
                Arc::new(HealthRecorder::totals_only()),
                options,
            ),
        }
    }

    /// The protocol's endpoints.
    pub fn service(&self) -> &OipService<PublishedModels> {
        &self.service
    }

    /// Stops serving a cached copy of a version that was just yanked (later requests are 404
    /// anyway; this frees its memory at once).
    pub fn forget(&self, model: &str, version: &str) {
        self.service.source().cache().forget(model, version);
    }

    /// Appends the inference figures to the Prometheus text: per model version counts, errors
    /// and latency, the pool, and the cache.
    pub fn render_metrics(&self, out: &mut String) {
        let prefix = "flotilla_server";
        flotilla_serving::metrics::render(
            out,
            prefix,
            self.service.pool(),
            self.service.recorder(),
        );
        let cache = self.service.source().cache();
        let stats = cache.stats();
        let counters = [
            (
                "inference_cache_hits_total",
                "Requests whose model version was cached (loaded or loading).",
                stats.hits,
            ),
            (
                "inference_cache_misses_total",
                "Requests whose model version had to be loaded.",
                stats.misses,
            ),
            (
                "inference_cache_loads_total",
                "Model versions loaded from the blob store.",
                stats.loads,
            ),
            (
                "inference_cache_load_failures_total",
                "Model version loads that failed.",
                stats.load_failures,
            ),
            (
                "inference_cache_evictions_total",
                "Model versions evicted from the cache (memory budget or yank).",
                stats.evictions,
            ),
        ];
        for (suffix, help, value) in counters {
            sample(out, &format!("{prefix}_{suffix}"), help, "counter", value);
        }
        let gauges = [
            (
                "inference_cache_bytes",
                "Estimated memory of the cached model versions.",
                stats.used_bytes,
            ),
            (
                "inference_cache_capacity_bytes",
                "The cache's memory budget (inference_cache_bytes).",
                stats.capacity_bytes,
            ),
            (
                "inference_cache_models",
                "Model versions cached (loaded or loading).",
                stats.models as u64,
            ),
        ];
        for (suffix, help, value) in gauges {
            sample(out, &format!("{prefix}_{suffix}"), help, "gauge", value);
        }
        let name = format!("{prefix}_inference_model_loaded");
        header(
            out,
            &name,
            "Model versions loaded for inference (always 1).",
            "gauge",
        );
        for (model, version) in cache.loaded() {
            let _ = writeln!(
                out,
                "{name}{{model=\"{}\",version=\"{}\"}} 1",
                escape(&model),
                escape(&version)
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use chrono::Utc;
    use uuid::Uuid;

    use super::*;

    fn version(v: &str, yanked: bool) -> VersionRecord {
        VersionRecord {
            id: Uuid::new_v4(),
            model_id: Uuid::nil(),
            model_name: "fraud".into(),
            version: v.into(),
            artifact_sha256: String::new(),
            artifact_size: 0,
            bundles: Vec::new(),
            signers: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            signed_facts: None,
            published_by: "test".into(),
            created_at: Utc::now(),
            yanked_at: yanked.then(Utc::now),
            yank_reason: None,
        }
    }

    #[test]
    fn the_newest_servable_version_is_by_semver_and_skips_yanked_ones() {
        let versions = vec![
            version("1.2.0", false),
            version("1.10.0", true),
            version("1.9.0", false),
            version("1.0.0", false),
        ];
        assert_eq!(newest_servable(versions).unwrap().version, "1.9.0");
        assert!(newest_servable(vec![version("1.0.0", true)]).is_none());
    }
}
