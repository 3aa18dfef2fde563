//! The Flotilla edge agent: [`sync`] keeps the device in line with its signed desired state,
//! [`inference`] serves the installed models over the Open Inference Protocol (with [`hybrid`]
//! escalations and [`shadow`] runs of rollout candidates), and [`app`] wires both into the
//! process that `flotilla-agent` (and the demo) runs.
//!
//! **Architecture invariant**: the agent never depends on the server crate.

pub mod app;
pub mod config;
pub mod hybrid;
pub mod inference;
pub mod shadow;
pub mod sync;

/// A report's latency figures from a histogram of microseconds (`None` when empty).
pub(crate) fn report_latency(
    histogram: &hdrhistogram::Histogram<u64>,
) -> Option<flotilla_protocol::agent::LatencyMs> {
    flotilla_serving::latency_ms(histogram).map(wire_latency)
}

/// The report's form of the serving code's latency figures (which also carry the maximum).
pub(crate) fn wire_latency(l: flotilla_serving::LatencyMs) -> flotilla_protocol::agent::LatencyMs {
    flotilla_protocol::agent::LatencyMs {
        p50: l.p50,
        p95: l.p95,
        p99: l.p99,
    }
}
