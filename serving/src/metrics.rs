//! The Prometheus text exposition of the inference figures, for `/metrics`.
//!
//! Hand-formatted: a few counters, gauges and one summary do not justify a metrics registry
//! crate, and the figures already live in [`HealthRecorder`] (hdrhistogram) and the pool. Every
//! name starts with the host's prefix (`flotilla_agent`, `flotilla_server`), so the agent's and
//! the server's figures never mix in one Prometheus.

use std::fmt::Write;

use super::health::{HealthRecorder, ModelHealth};
use super::pool::InferencePool;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A per-model-version counter: name suffix, help text, and how to read it from the figures.
type Counter = (&'static str, &'static str, fn(&ModelHealth) -> u64);

/// Appends the per-model-version counters and latency summary, the 503 refusals and the pool
/// gauges to `out`, every name prefixed with `prefix` and `_`.
pub fn render(out: &mut String, prefix: &str, pool: &InferencePool, recorder: &HealthRecorder) {
    let (totals, rejected_busy) = recorder.totals();

    let counters: [Counter; 4] = [
        (
            "inferences_total",
            "Inference runs that produced an answer, per model version.",
            |h| h.inferences,
        ),
        (
            "inference_errors_total",
            "Inference runs the engine failed, per model version.",
            |h| h.errors,
        ),
        (
            "non_finite_outputs_total",
            "Answers holding NaN or infinite values, per model version.",
            |h| h.non_finite,
        ),
        (
            "invalid_requests_total",
            "Requests refused as not fitting the model, per model version.",
            |h| h.invalid_requests,
        ),
    ];
    for (suffix, help, value) in counters {
        let name = format!("{prefix}_{suffix}");
        header(out, &name, help, "counter");
        for total in &totals {
            let h = &total.health;
            let _ = writeln!(out, "{name}{} {}", labels(h, None), value(h));
        }
    }

    let name = format!("{prefix}_inference_latency_seconds");
    header(
        out,
        &name,
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

    let name = format!("{prefix}_rejected_busy_total");
    header(
        out,
        &name,
        "Requests refused with 503 because the workers and the queue were full.",
        "counter",
    );
    let _ = writeln!(out, "{name} {rejected_busy}");

    let config = pool.config();
    let gauges = [
        ("pool_workers", "Inference workers.", config.workers),
        (
            "pool_queue_capacity",
            "Requests allowed to wait for a worker.",
            config.queue_depth,
        ),
        ("pool_running", "Inference jobs running.", pool.running()),
        (
            "pool_queued",
            "Requests waiting for a worker.",
            pool.queued(),
        ),
    ];
    for (suffix, help, value) in gauges {
        sample(out, &format!("{prefix}_{suffix}"), help, "gauge", value);
    }
}

/// Appends one unlabelled metric: its `HELP` and `TYPE` lines and its value.
pub fn sample(out: &mut String, name: &str, help: &str, kind: &str, value: impl std::fmt::Display) {
    header(out, name, help, kind);
    let _ = writeln!(out, "{name} {value}");
}

/// Appends the `HELP` and `TYPE` lines of a metric.
pub fn header(out: &mut String, name: &str, help: &str, kind: &str) {
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
pub fn escape(value: &str) -> String {
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
    use crate::health::Outcome;
    use crate::pool::PoolConfig;

    #[test]
    fn renders_counters_summary_and_gauges_under_the_prefix() {
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
        let mut text = String::new();
        render(&mut text, "flotilla_test", &pool, &recorder);
        for line in [
            "# TYPE flotilla_test_inferences_total counter",
            "flotilla_test_inferences_total{model=\"fraud\",version=\"1.0.0\"} 1",
            "flotilla_test_inference_errors_total{model=\"fraud\",version=\"1.0.0\"} 1",
            "flotilla_test_invalid_requests_total{model=\"we\\\"ird\",version=\"1\"} 1",
            "flotilla_test_inference_latency_seconds{model=\"fraud\",version=\"1.0.0\",quantile=\"0.99\"} 0.002",
            "flotilla_test_inference_latency_seconds_sum{model=\"fraud\",version=\"1.0.0\"} 0.003",
            "flotilla_test_inference_latency_seconds_count{model=\"fraud\",version=\"1.0.0\"} 2",
            "flotilla_test_rejected_busy_total 1",
            "flotilla_test_pool_workers 3",
            "flotilla_test_pool_queue_capacity 5",
            "flotilla_test_pool_running 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
