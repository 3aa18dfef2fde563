//! The Prometheus text exposition of the local API's figures, served at `/metrics`.
//!
//! Hand-formatted: a few counters, gauges and one summary do not justify a metrics registry
//! crate, and the figures already live in [`HealthRecorder`] (hdrhistogram) and the pool.

use std::fmt::Write;

use super::health::{HealthRecorder, ModelHealth};
use super::pool::InferencePool;
use super::registry::ModelRegistry;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A per-model-version counter: name, help text, and how to read it from the figures.
type Counter = (&'static str, &'static str, fn(&ModelHealth) -> u64);

/// Renders every metric of the local API.
pub fn render(registry: &ModelRegistry, pool: &InferencePool, recorder: &HealthRecorder) -> String {
    let (totals, rejected_busy) = recorder.totals();
    let mut out = String::new();

    let counters: [Counter; 4] = [
        (
            "flotilla_agent_inferences_total",
            "Inference runs that produced an answer, per model version.",
            |h| h.inferences,
        ),
        (
            "flotilla_agent_inference_errors_total",
            "Inference runs the engine failed, per model version.",
            |h| h.errors,
        ),
        (
            "flotilla_agent_non_finite_outputs_total",
            "Answers holding NaN or infinite values, per model version.",
            |h| h.non_finite,
        ),
        (
            "flotilla_agent_invalid_requests_total",
            "Requests refused as not fitting the model, per model version.",
            |h| h.invalid_requests,
        ),
    ];
    for (name, help, value) in counters {
        header(&mut out, name, help, "counter");
        for total in &totals {
            let h = &total.health;
            let _ = writeln!(out, "{name}{} {}", labels(h, None), value(h));
        }
    }

    let name = "flotilla_agent_inference_latency_seconds";
    header(
        &mut out,
        name,
        "Time the model took to run, per model version.",
        "summary",
    );
    for total in &totals {
        let h = &total.health;
        if let Some(latency) = h.latency_ms {
            for (quantile, ms) in [
                ("0.5", latency.p50),
                ("0.95", latency.p95),
                ("0.99", latency.p99),
            ] {
                let _ = writeln!(out, "{name}{} {}", labels(h, Some(quantile)), ms / 1000.0);
            }
        }
        let _ = writeln!(
            out,
            "{name}_sum{} {}",
            labels(h, None),
            total.latency_sum_seconds
        );
        let _ = writeln!(
            out,
            "{name}_count{} {}",
            labels(h, None),
            h.inferences + h.errors
        );
    }

    let name = "flotilla_agent_rejected_busy_total";
    header(
        &mut out,
        name,
        "Requests refused with 503 because the workers and the queue were full.",
        "counter",
    );
    let _ = writeln!(out, "{name} {rejected_busy}");

    let config = pool.config();
    let gauges = [
        (
            "flotilla_agent_pool_workers",
            "Inference workers.",
            config.workers,
        ),
        (
            "flotilla_agent_pool_queue_capacity",
            "Requests allowed to wait for a worker.",
            config.queue_depth,
        ),
        (
            "flotilla_agent_pool_running",
            "Inference jobs running.",
            pool.running(),
        ),
        (
            "flotilla_agent_pool_queued",
            "Requests waiting for a worker.",
            pool.queued(),
        ),
        (
            "flotilla_agent_models_loaded",
            "Models being served.",
            registry.len(),
        ),
    ];
    for (name, help, value) in gauges {
        header(&mut out, name, help, "gauge");
        let _ = writeln!(out, "{name} {value}");
    }

    let name = "flotilla_agent_model_info";
    header(
        &mut out,
        name,
        "The version served for each model (always 1).",
        "gauge",
    );
    for loaded in registry.list() {
        let _ = writeln!(
            out,
            "{name}{{model=\"{}\",version=\"{}\"}} 1",
            escape(&loaded.name),
            escape(&loaded.version)
        );
    }
    out
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn labels(health: &ModelHealth, quantile: Option<&str>) -> String {
    let mut text = format!(
        "{{model=\"{}\",version=\"{}\"",
        escape(&health.model),
        escape(&health.version)
    );
    if let Some(quantile) = quantile {
        let _ = write!(text, ",quantile=\"{quantile}\"");
    }
    text.push('}');
    text
}

/// Escapes a label value as the text format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::inference::health::Outcome;
    use crate::inference::pool::PoolConfig;

    #[test]
    fn renders_counters_summary_and_gauges() {
        let recorder = HealthRecorder::new();
        recorder.record("fraud", "1.0.0", Outcome::Ok, Duration::from_millis(1));
        // Below 2048 µs hdrhistogram is exact at 3 significant digits.
        recorder.record("fraud", "1.0.0", Outcome::Error, Duration::from_millis(2));
        recorder.record_invalid("we\"ird", "1");
        recorder.record_rejected_busy();
        let pool = InferencePool::new(PoolConfig {
            workers: 3,
            queue_depth: 5,
        });
        let text = render(&ModelRegistry::new(), &pool, &recorder);
        for line in [
            "# TYPE flotilla_agent_inferences_total counter",
            "flotilla_agent_inferences_total{model=\"fraud\",version=\"1.0.0\"} 1",
            "flotilla_agent_inference_errors_total{model=\"fraud\",version=\"1.0.0\"} 1",
            "flotilla_agent_invalid_requests_total{model=\"we\\\"ird\",version=\"1\"} 1",
            "flotilla_agent_inference_latency_seconds{model=\"fraud\",version=\"1.0.0\",quantile=\"0.99\"} 0.002",
            "flotilla_agent_inference_latency_seconds_sum{model=\"fraud\",version=\"1.0.0\"} 0.003",
            "flotilla_agent_inference_latency_seconds_count{model=\"fraud\",version=\"1.0.0\"} 2",
            "flotilla_agent_rejected_busy_total 1",
            "flotilla_agent_pool_workers 3",
            "flotilla_agent_pool_queue_capacity 5",
            "flotilla_agent_models_loaded 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
