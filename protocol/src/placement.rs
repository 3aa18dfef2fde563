//! Placement data: how each model version behaves per device class on the edge, and on the
//! server, so operators choose where a model runs from measurements (`GET /api/v1/placement`).

use crate::agent::LatencyMs;
use serde::{Deserialize, Serialize};

/// Body of `GET /api/v1/placement?model=...`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlacementReport {
    /// The model.
    pub model: String,
    /// How devices are grouped: `hardware`, or the label key given.
    pub group_by: String,
    /// On devices: one row per version and device class, from each device's latest health
    /// window.
    pub edge: Vec<EdgePlacement>,
    /// On the server: one row per version it has served (since the server started).
    pub server: Vec<ServerPlacement>,
}

/// A model version on one class of devices.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EdgePlacement {
    /// Version.
    pub version: String,
    /// Device class: `arch/cores/memory` for `hardware`, else the label's value (`(none)` when
    /// a device lacks it).
    pub class: String,
    /// Devices whose latest window has this version.
    pub devices: u64,
    /// Inferences in those windows.
    pub inferences: u64,
    /// Errors / inferences.
    pub error_rate: f64,
    /// Latency percentiles, each the inference-weighted mean of the devices' percentiles.
    pub latency_ms: LatencyMs,
    /// Mean resident memory of those agents, bytes (whole process, all models).
    pub memory_rss_bytes_mean: Option<u64>,
    /// Largest resident memory among them, bytes.
    pub memory_rss_bytes_max: Option<u64>,
    /// Escalations / inferences (hybrid inference).
    pub escalation_rate: f64,
    /// Escalations the server did not answer in time (answered by the device).
    pub escalation_fallbacks: u64,
    /// Round trip of answered escalations as the devices measured it, weighted like
    /// `latency_ms`.
    pub escalation_latency_ms: Option<LatencyMs>,
}

/// A model version served by the server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ServerPlacement {
    /// Version.
    pub version: String,
    /// Inferences served.
    pub inferences: u64,
    /// Errors / inferences.
    pub error_rate: f64,
    /// Latency percentiles measured on the server (model run, without the network).
    pub latency_ms: Option<LatencyMs>,
}
