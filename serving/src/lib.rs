//! The Open Inference Protocol (KServe v2 REST, as Triton serves it) serving code that the
//! agent's local API and the server's inference endpoints share, so both answer alike.
//!
//! - [`ModelSource`]: where the models come from, the one part each host brings (the agent's
//!   registry of installed versions; the server's cache of published versions).
//! - [`OipService`] / [`routes`]: the endpoints, checking requests against the model's
//!   signature; errors in the protocol's `{"error": "..."}` form ([`OipError`]).
//! - [`binary`]: Triton's binary tensor data extension, raw tensor bytes after the JSON part.
//! - [`InferencePool`]: the bounded worker pool inference runs on; a full queue means 503.
//! - [`HealthRecorder`]: per-model-version counts and latency, as a window for the agent's
//!   reports and as Prometheus text ([`metrics`]).
//!
//! **Architecture invariant**: this crate knows neither the agent nor the server; it depends on
//! `flotilla-runtime` for models and on actix-web for HTTP, never on tract directly.

mod api;
pub mod binary;
mod error;
mod health;
pub mod metrics;
mod oip;
mod pool;
mod source;

pub use api::{
    endpoint, method_not_allowed, routes, OipService, ServiceOptions, DEFAULT_BODY_LIMIT,
};
pub use error::{ErrorStyle, OipError};
pub use health::{
    latency_ms, HealthRecorder, HealthWindow, LatencyMs, ModelHealth, ModelTotals, Outcome,
};
pub use oip::{parse_data, SERVED_BY_EDGE, SERVED_BY_EDGE_FALLBACK, SERVED_BY_SERVER};
pub use pool::{InferencePool, PoolConfig, PoolError};
pub use source::{Escalation, EscalationRequest, LoadedModel, ModelSource};
