//! The agent's local inference API and the models it serves.
//!
//! - [`ModelRegistry`]: the loaded models by name, swapped atomically (in-flight requests finish
//!   on the version they started with); the agent's [`flotilla_serving::ModelSource`].
//! - [`local_api`] / [`serve`]: the Open Inference Protocol (KServe v2 REST, as Triton serves
//!   it) on a loopback port, with `/metrics`. See `docs/inference.md`.
//!
//! The protocol itself (request checking, the worker pool, the health recorder, the error
//! body) is `flotilla-serving`, shared with the server; it is re-exported here under the names
//! the agent has always used.

mod api;
mod metrics;
mod registry;

pub use api::{local_api, serve, LocalApi, LocalApiConfig, SERVER_NAME};
pub use flotilla_serving::{
    parse_data, HealthRecorder, HealthWindow, InferencePool, LatencyMs, LoadedModel, ModelHealth,
    ModelTotals, OipError, Outcome, PoolConfig, PoolError, SERVED_BY_EDGE,
};
pub use registry::ModelRegistry;
