//! The models the agent serves, by name, swapped atomically.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use flotilla_protocol::agent::{DesiredStateHealth, EscalationPolicy};
use flotilla_runtime::Model;
use flotilla_runtime::Tensor;
use flotilla_serving::{
    Escalation, EscalationRequest, LoadedModel, ModelSource, OipError, SERVED_BY_EDGE_FALLBACK,
    SERVED_BY_SERVER,
};

use crate::hybrid::{needs_server, Escalator};
use crate::shadow::{sampled, ShadowModel, ShadowOutcome, ShadowRunner, ShadowStats};

/// The set of loaded models, one current version per name.
///
/// Reads (every request) are a lock-free load of the current map; writes (installs and
/// removals, a few per hour at most) copy the map and swap it in. Only the current version of
/// each model is served; older versions stay alive only while requests that started on them
/// finish.
#[derive(Debug, Default)]
pub struct ModelRegistry {
    models: ArcSwap<BTreeMap<String, Arc<LoadedModel>>>,
    /// Hybrid inference policies by model name, from the desired state.
    policies: ArcSwap<BTreeMap<String, EscalationPolicy>>,
    /// Who asks the server; set once the device has a credential.
    escalator: std::sync::OnceLock<Escalator>,
    /// Shadow candidates by model name, from the desired state. Never served.
    shadows: ArcSwap<BTreeMap<String, Arc<ShadowRunner>>>,
    /// Outcomes of shadow runs.
    shadow_stats: ShadowStats,
    /// How the update loop judges the desired state (refused, stale).
    desired_state: ArcSwapOption<DesiredStateHealth>,
}

impl ModelRegistry {
    /// An empty registry (the local API is not ready until a model is installed).
    pub fn new() -> ModelRegistry {
        ModelRegistry::default()
    }

    /// Records how the update loop judges the desired state.
    pub fn set_desired_state_health(&self, health: &DesiredStateHealth) {
        self.desired_state.store(Some(Arc::new(health.clone())));
    }

    /// How the update loop last judged the desired state, if it has.
    pub fn desired_state_health(&self) -> Option<Arc<DesiredStateHealth>> {
        self.desired_state.load_full()
    }

    /// Makes `version` the one served under `name`, atomically: every request that resolves
    /// the model after this returns gets the new version, every request that resolved it
    /// before finishes on the old one. Returns the version it replaced, if any, so the caller
    /// can keep it for a local rollback.
    pub fn install(
        &self,
        name: impl Into<String>,
        version: impl Into<String>,
        model: Arc<Model>,
    ) -> Option<Arc<LoadedModel>> {
        let loaded = Arc::new(LoadedModel::new(name, version, model));
        let mut previous = None;
        self.models.rcu(|current| {
            let mut next = BTreeMap::clone(current);
            previous = next.insert(loaded.name.clone(), Arc::clone(&loaded));
            next
        });
        previous
    }

    /// Sets or clears `name`'s hybrid-inference policy.
    pub fn set_escalation(&self, name: &str, policy: Option<EscalationPolicy>) {
        self.policies.rcu(|current| {
            let mut next = BTreeMap::clone(current);
            match &policy {
                Some(p) => next.insert(name.to_owned(), p.clone()),
                None => next.remove(name),
            };
            next
        });
    }

    /// Sets or clears `name`'s shadow candidate. A run of the replaced candidate in flight
    /// finishes and is counted under its own version.
    pub fn set_shadow(&self, name: &str, shadow: Option<ShadowModel>) {
        let runner = shadow.map(|s| Arc::new(ShadowRunner::new(s)));
        self.shadows.rcu(|current| {
            let mut next = BTreeMap::clone(current);
            match &runner {
                Some(r) => next.insert(name.to_owned(), Arc::clone(r)),
                None => next.remove(name),
            };
            next
        });
    }

    /// The version of `name`'s shadow candidate, if it has one.
    pub fn shadow_version(&self, name: &str) -> Option<String> {
        self.shadows
            .load()
            .get(name)
            .map(|r| r.candidate().version.clone())
    }

    /// The outcomes of shadow runs (window and totals).
    pub fn shadow_stats(&self) -> &ShadowStats {
        &self.shadow_stats
    }

    /// Escalations since start per (model, version): (answered by the server, fell back).
    pub fn escalation_totals(&self) -> Vec<((String, String), (u64, u64))> {
        self.escalator
            .get()
            .map(|e| e.stats().totals())
            .unwrap_or_default()
    }

    /// Enables escalations (once; later calls are ignored).
    pub fn set_escalator(&self, escalator: Escalator) {
        let _ = self.escalator.set(escalator);
    }

    /// Stops serving `name` (and forgets its hybrid policy and shadow candidate); returns the
    /// version that was being served. Requests already running on it finish normally.
    pub fn remove(&self, name: &str) -> Option<Arc<LoadedModel>> {
        let mut removed = None;
        self.models.rcu(|current| {
            let mut next = BTreeMap::clone(current);
            removed = next.remove(name);
            next
        });
        self.set_escalation(name, None);
        self.set_shadow(name, None);
        removed
    }

    /// The version currently served under `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedModel>> {
        self.models.load().get(name).cloned()
    }

    /// The model under `name` if its current version is `version`. Older versions are not
    /// served, so asking for one gives `None`, as does an unknown name.
    pub fn get_version(&self, name: &str, version: &str) -> Option<Arc<LoadedModel>> {
        self.get(name).filter(|loaded| loaded.version == version)
    }

    /// Every served model, ordered by name.
    pub fn list(&self) -> Vec<Arc<LoadedModel>> {
        self.models.load().values().cloned().collect()
    }

    /// How many models are served.
    pub fn len(&self) -> usize {
        self.models.load().len()
    }

    /// Whether no model is served (the local API then reports not ready).
    pub fn is_empty(&self) -> bool {
        self.models.load().is_empty()
    }
}

/// The local API serves the current version of each model; any other version is 404 naming the
/// current one, and the API is ready once a model is installed.
impl ModelSource for ModelRegistry {
    async fn resolve(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<Arc<LoadedModel>, OipError> {
        let current = self
            .get(name)
            .ok_or_else(|| OipError::NotFound(format!("model `{name}` is not loaded")))?;
        match version {
            Some(version) if version != current.version => Err(OipError::NotFound(format!(
                "model `{name}` version `{version}` is not served; the current version is `{}`",
                current.version
            ))),
            _ => Ok(current),
        }
    }

    fn may_escalate(&self, loaded: &LoadedModel) -> bool {
        self.escalator.get().is_some() && self.policies.load().contains_key(&loaded.name)
    }

    async fn escalate(
        &self,
        loaded: &LoadedModel,
        request: &EscalationRequest<'_>,
        outputs: &[Tensor],
    ) -> Escalation {
        // Cloned out: the policy map may be swapped while the server is being asked.
        let policy = self.policies.load().get(&loaded.name).cloned();
        let (Some(policy), Some(escalator)) = (policy, self.escalator.get()) else {
            return Escalation::Local;
        };
        if !needs_server(&policy, outputs) {
            return Escalation::Local;
        }
        // JSON whatever the client sent (binary tensors included), so the server answers JSON.
        let body = request.to_json();
        match escalator
            .ask(&loaded.name, &loaded.version, &policy, &body, outputs)
            .await
        {
            Ok(body) => Escalation::Answered {
                body,
                served_by: SERVED_BY_SERVER,
            },
            Err(e) => {
                tracing::debug!(model = %loaded.name, error = %e, "escalation failed; answering locally");
                Escalation::Fallback {
                    served_by: SERVED_BY_EDGE_FALLBACK,
                }
            }
        }
    }

    fn sample_shadow(&self, loaded: &LoadedModel) -> bool {
        self.shadows
            .load()
            .get(&loaded.name)
            .is_some_and(|r| sampled(r.candidate().sample_rate, rand::random::<f64>()))
    }

    fn run_shadow(&self, loaded: &LoadedModel, inputs: Vec<Tensor>, outputs: &[Tensor]) {
        let Some(runner) = self.shadows.load().get(&loaded.name).cloned() else {
            return;
        };
        let stats = self.shadow_stats.clone();
        let (model, version) = (loaded.name.clone(), loaded.version.clone());
        let Some(slot) = runner.try_slot() else {
            let shadow_version = &runner.candidate().version;
            stats.record(
                &model,
                &version,
                shadow_version,
                ShadowOutcome::Skipped,
                None,
            );
            return;
        };
        let active = outputs.to_vec();
        // Off the request path, outside the worker pool; the slot bounds it to one per model.
        tokio::task::spawn_blocking(move || {
            let (outcome, latency) = runner.run(slot, inputs, &active);
            let shadow_version = &runner.candidate().version;
            stats.record(&model, &version, shadow_version, outcome, Some(latency));
        });
    }

    fn ready_details(&self) -> Option<serde_json::Value> {
        // Still ready when stale (the verified models serve), but it says so.
        let health = self.desired_state.load_full()?;
        serde_json::to_value(&*health)
            .ok()
            .map(|h| serde_json::json!({ "desired_state": h }))
    }

    async fn ready(&self) -> Result<(), OipError> {
        // Before the first install the agent has nothing to serve.
        if self.is_empty() {
            return Err(OipError::NotReady(
                "not ready: no model is loaded yet".to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use flotilla_runtime::LoadOptions;

    use super::*;

    fn fraud() -> Arc<Model> {
        let bytes = include_bytes!("../../../models/fraud-1.0.0.onnx");
        Arc::new(Model::load(bytes, &LoadOptions::default()).unwrap())
    }

    #[test]
    fn install_get_remove() {
        let registry = ModelRegistry::new();
        let model = fraud();
        assert!(registry.is_empty());
        assert!(registry
            .install("fraud", "1.0.0", Arc::clone(&model))
            .is_none());
        registry.install("sensor", "2.0.0", Arc::clone(&model));
        assert_eq!(registry.len(), 2);
        assert_eq!(registry.get("fraud").unwrap().version, "1.0.0");
        assert!(registry.get_version("fraud", "1.0.0").is_some());
        assert!(registry.get_version("fraud", "0.9.0").is_none());
        assert!(registry.get("nope").is_none());
        let names: Vec<String> = registry.list().iter().map(|m| m.name.clone()).collect();
        assert_eq!(names, ["fraud", "sensor"]);

        assert_eq!(registry.remove("sensor").unwrap().version, "2.0.0");
        assert!(registry.remove("sensor").is_none());
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn a_swap_leaves_holders_of_the_old_version_untouched() {
        let registry = ModelRegistry::new();
        let model = fraud();
        registry.install("fraud", "1.0.0", Arc::clone(&model));
        let in_flight = registry.get("fraud").unwrap();

        let previous = registry
            .install("fraud", "1.1.0", Arc::clone(&model))
            .unwrap();
        assert!(Arc::ptr_eq(&previous, &in_flight));
        assert_eq!(in_flight.version, "1.0.0");
        assert_eq!(registry.get("fraud").unwrap().version, "1.1.0");
        // Only the current version is served.
        assert!(registry.get_version("fraud", "1.0.0").is_none());
        // The old version is dropped when its last holder lets go, not before.
        drop(previous);
        assert_eq!(Arc::strong_count(&in_flight), 1);
    }
}
