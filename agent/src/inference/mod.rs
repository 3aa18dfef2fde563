//! The agent's local inference API and the models it serves.
//!
//! - [`ModelRegistry`]: the loaded models by name, swapped atomically (in-flight requests finish
//!   on the version they started with).
//! - [`InferencePool`]: the bounded worker pool inference runs on; a full queue means 503.
//! - [`HealthRecorder`]: per-model-version counts and latency, as a window for the update loop's
//!   reports and as Prometheus text at `/metrics`.
//! - [`local_api`] / [`serve`]: the Open Inference Protocol (KServe v2 REST, as Triton serves
//!   it) on a loopback port. See `docs/inference.md`.

mod api;
mod error;
mod health;
mod metrics;
mod oip;
mod pool;
mod registry;

pub use api::{local_api, serve, LocalApi, LocalApiConfig, SERVER_NAME};
pub use error::OipError;
pub use health::{HealthRecorder, HealthWindow, LatencyMs, ModelHealth, ModelTotals, Outcome};
pub use oip::{parse_data, SERVED_BY_EDGE};
pub use pool::{InferencePool, PoolConfig, PoolError};
pub use registry::{LoadedModel, ModelRegistry};
