//! The Prometheus text exposition of the local API's figures, served at `/metrics`: the shared
//! inference figures under `flotilla_agent_`, then the models being served.

use std::fmt::Write;

use flotilla_serving::metrics::{escape, header, sample};
use flotilla_serving::{HealthRecorder, InferencePool};

use super::registry::ModelRegistry;
use crate::shadow::ShadowOutcome;

pub use flotilla_serving::metrics::CONTENT_TYPE;

/// Renders every metric of the local API.
pub fn render(registry: &ModelRegistry, pool: &InferencePool, recorder: &HealthRecorder) -> String {
    let mut out = String::new();
    flotilla_serving::metrics::render(&mut out, "flotilla_agent", pool, recorder);
    sample(
        &mut out,
        "flotilla_agent_models_loaded",
        "Models being served.",
        "gauge",
        registry.len(),
    );

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

    let name = "flotilla_agent_escalations_total";
    header(
        &mut out,
        name,
        "Requests sent to the server by hybrid inference: answered by it, or answered locally after it failed.",
        "counter",
    );
    for ((model, version), (answered, fallback)) in registry.escalation_totals() {
        for (outcome, n) in [("answered", answered), ("fallback", fallback)] {
            let _ = writeln!(
                out,
                "{name}{{model=\"{}\",version=\"{}\",outcome=\"{outcome}\"}} {n}",
                escape(&model),
                escape(&version)
            );
        }
    }

    let name = "flotilla_agent_shadow_comparisons_total";
    header(
        &mut out,
        name,
        "Requests also run on a rollout's shadow candidate, by outcome: answers agreed or disagreed, the candidate failed (error), or it was busy (skipped).",
        "counter",
    );
    for ((model, version, shadow_version), totals) in registry.shadow_stats().totals() {
        for (outcome, n) in [
            (ShadowOutcome::Agreed, totals.agreed),
            (ShadowOutcome::Disagreed, totals.disagreed),
            (ShadowOutcome::Error, totals.errors),
            (ShadowOutcome::Skipped, totals.skipped),
        ] {
            let _ = writeln!(
                out,
                "{name}{{model=\"{}\",version=\"{}\",shadow_version=\"{}\",outcome=\"{}\"}} {n}",
                escape(&model),
                escape(&version),
                escape(&shadow_version),
                outcome.label()
            );
        }
    }

    if let Some(state) = registry.desired_state_health() {
        sample(
            &mut out,
            "flotilla_agent_desired_state_stale",
            "1 when the last verified desired state is past its expiry (judged on the monotonic clock); the verified models keep serving.",
            "gauge",
            u8::from(state.stale),
        );
        if let Some(serial) = state.trust_root_serial {
            sample(
                &mut out,
                "flotilla_agent_trust_root_serial",
                "Serial of the trust root the device checks signatures with (1 until a rotation).",
                "gauge",
                serial,
            );
        }
        if let Some(age) = state.age_secs {
            sample(
                &mut out,
                "flotilla_agent_desired_state_age_seconds",
                "Seconds since a desired state was last verified.",
                "gauge",
                age,
            );
        }
        sample(
            &mut out,
            "flotilla_agent_desired_state_refusals",
            "Desired states refused in a row since the last one accepted.",
            "gauge",
            state.refused.as_ref().map_or(0, |r| r.count),
        );
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use flotilla_serving::{Outcome, PoolConfig};

    use super::*;

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
        let registry = ModelRegistry::new();
        let stats = registry.shadow_stats();
        stats.record("fraud", "1.0.0", "1.1.0", ShadowOutcome::Agreed, None);
        stats.record("fraud", "1.0.0", "1.1.0", ShadowOutcome::Skipped, None);
        let text = render(&registry, &pool, &recorder);
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
            "# TYPE flotilla_agent_shadow_comparisons_total counter",
            "flotilla_agent_shadow_comparisons_total{model=\"fraud\",version=\"1.0.0\",shadow_version=\"1.1.0\",outcome=\"agreed\"} 1",
            "flotilla_agent_shadow_comparisons_total{model=\"fraud\",version=\"1.0.0\",shadow_version=\"1.1.0\",outcome=\"disagreed\"} 0",
            "flotilla_agent_shadow_comparisons_total{model=\"fraud\",version=\"1.0.0\",shadow_version=\"1.1.0\",outcome=\"skipped\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
