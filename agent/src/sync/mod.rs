//! Keeping the device in line with its signed desired state: enrollment, the state directory,
//! the server client and the update cycle (download → verify → load → smoke test → swap →
//! report). Inference itself lives in [`crate::inference`]; this module hands it loaded models
//! through [`ModelSink`].

pub mod client;
pub mod credential;
pub mod state_dir;
pub mod trust;
pub mod updater;

use crate::shadow::ShadowModel;
use flotilla_protocol::agent::{DesiredStateHealth, EscalationPolicy};
use flotilla_runtime::Model;
use std::sync::Arc;

/// Where verified, loaded models go. The local inference API implements it; tests use a map.
pub trait ModelSink: Send + Sync {
    /// Starts serving `model` as `name`@`version`, replacing what served before. Requests in
    /// flight finish on the model they started with.
    fn install(&self, name: &str, version: &str, model: Arc<Model>);
    /// Stops serving `name`.
    fn remove(&self, name: &str);
    /// Sets (or clears) the hybrid-inference policy of `name`.
    fn set_escalation(&self, _name: &str, _policy: Option<EscalationPolicy>) {}
    /// Sets (or clears) the shadow candidate of `name`: run beside it, never served.
    fn set_shadow(&self, _name: &str, _shadow: Option<ShadowModel>) {}
    /// How the device judges its desired state (refused, stale), for `/metrics` and readiness.
    fn set_desired_state_health(&self, _health: &DesiredStateHealth) {}
}
