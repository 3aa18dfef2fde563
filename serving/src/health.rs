//! What is measured about each model version served: counts, errors and latency.
//!
//! The recorder keeps two sets of figures. The *window* is what the agent's update loop sends to
//! the server in its next report and then resets with [`HealthRecorder::take_window`]; the
//! *totals* only grow and feed the Prometheus text at `/metrics`. A host that reports no windows
//! (the server) keeps only the totals ([`HealthRecorder::totals_only`]).

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, to 3 significant digits.
const LATENCY_MAX_MICROS: u64 = 600_000_000;

/// How one request that reached a model version ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The model answered and every output value is finite.
    Ok,
    /// The model answered but some output is NaN or infinite (the request still succeeds).
    NonFinite,
    /// The engine failed on a request that matched the model's signature.
    Error,
}

/// The latency quantiles of a set of inference runs, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyMs {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest run.
    pub max: f64,
}

/// One model version's figures over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelHealth {
    /// Model name.
    pub model: String,
    /// Model version.
    pub version: String,
    /// Runs that produced an answer (including answers with non-finite values).
    pub inferences: u64,
    /// Runs the engine failed.
    pub errors: u64,
    /// Answers holding a NaN or infinite value.
    pub non_finite: u64,
    /// Requests refused as invalid (wrong input name, datatype or shape) before running.
    pub invalid_requests: u64,
    /// Latency of the runs (answers and failures); `None` when nothing ran.
    pub latency_ms: Option<LatencyMs>,
}

/// Everything measured since the previous [`HealthRecorder::take_window`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HealthWindow {
    /// Per model version, ordered by model then version.
    pub models: Vec<ModelHealth>,
    /// Requests refused with 503 because the worker pool and its queue were full.
    pub rejected_busy: u64,
}

#[derive(Debug, Clone)]
struct Stats {
    inferences: u64,
    errors: u64,
    non_finite: u64,
    invalid_requests: u64,
    /// `None` only if hdrhistogram refused the constant bounds, which it does not.
    latency_micros: Option<Histogram<u64>>,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            inferences: 0,
            errors: 0,
            non_finite: 0,
            invalid_requests: 0,
            latency_micros: Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, 3).ok(),
        }
    }

    fn record(&mut self, outcome: Outcome, latency: Duration) {
        match outcome {
            Outcome::Ok => self.inferences += 1,
            Outcome::NonFinite => {
                self.inferences += 1;
                self.non_finite += 1;
            }
            Outcome::Error => self.errors += 1,
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if let Some(histogram) = &mut self.latency_micros {
            histogram.saturating_record(micros.max(1));
        }
    }

    fn health(&self, model: &str, version: &str) -> ModelHealth {
        ModelHealth {
            model: model.to_owned(),
            version: version.to_owned(),
            inferences: self.inferences,
            errors: self.errors,
            non_finite: self.non_finite,
            invalid_requests: self.invalid_requests,
            latency_ms: self.latency_micros.as_ref().and_then(latency_ms),
        }
    }
}

/// The quantiles and maximum, in milliseconds, of latencies recorded in microseconds; `None`
/// for an empty histogram. The agent's reports (runs, escalations, shadow runs) all use it.
pub fn latency_ms(histogram: &Histogram<u64>) -> Option<LatencyMs> {
    if histogram.is_empty() {
        return None;
    }
    let ms = |micros: u64| micros as f64 / 1000.0;
    Some(LatencyMs {
        p50: ms(histogram.value_at_quantile(0.50)),
        p95: ms(histogram.value_at_quantile(0.95)),
        p99: ms(histogram.value_at_quantile(0.99)),
        max: ms(histogram.max()),
    })
}

/// Cumulative figures of one model version, for the Prometheus exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelTotals {
    /// The figures; `latency_ms` covers every run since the recorder was created.
    pub health: ModelHealth,
    /// Sum of all run latencies, in seconds.
    pub latency_sum_seconds: f64,
}

#[derive(Debug, Default)]
struct Figures {
    /// Whether the window is kept at all.
    windowed: bool,
    window: BTreeMap<(String, String), Stats>,
    totals: BTreeMap<(String, String), (Stats, Duration)>,
    window_rejected_busy: u64,
    total_rejected_busy: u64,
}

/// Collects per-model-version counts and latencies from the request handlers.
///
/// One mutex guards the figures: each request holds it for a few map and histogram updates,
/// far less than an inference takes.
#[derive(Debug)]
pub struct HealthRecorder {
    figures: Mutex<Figures>,
}

impl Default for HealthRecorder {
    fn default() -> HealthRecorder {
        HealthRecorder::new()
    }
}

impl HealthRecorder {
    /// An empty recorder keeping a window and the totals.
    pub fn new() -> HealthRecorder {
        HealthRecorder {
            figures: Mutex::new(Figures {
                windowed: true,
                ..Figures::default()
            }),
        }
    }

    /// An empty recorder keeping only the totals: its window stays empty, and each model
    /// version costs one latency histogram instead of two.
    pub fn totals_only() -> HealthRecorder {
        HealthRecorder {
            figures: Mutex::new(Figures::default()),
        }
    }

    fn figures(&self) -> MutexGuard<'_, Figures> {
        // The figures stay consistent even if a holder panicked: every update is a few
        // additions that cannot be left half-done in a harmful way.
        self.figures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one run of `model` `version`.
    pub fn record(&self, model: &str, version: &str, outcome: Outcome, latency: Duration) {
        let key = (model.to_owned(), version.to_owned());
        let mut figures = self.figures();
        if figures.windowed {
            figures
                .window
                .entry(key.clone())
                .or_insert_with(Stats::new)
                .record(outcome, latency);
        }
        let (totals, sum) = figures
            .totals
            .entry(key)
            .or_insert_with(|| (Stats::new(), Duration::ZERO));
        totals.record(outcome, latency);
        *sum = sum.saturating_add(latency);
    }

    /// Records a request refused as invalid before it ran on `model` `version`.
    pub fn record_invalid(&self, model: &str, version: &str) {
        let key = (model.to_owned(), version.to_owned());
        let mut figures = self.figures();
        if figures.windowed {
            figures
                .window
                .entry(key.clone())
                .or_insert_with(Stats::new)
                .invalid_requests += 1;
        }
        figures
            .totals
            .entry(key)
            .or_insert_with(|| (Stats::new(), Duration::ZERO))
            .0
            .invalid_requests += 1;
    }

    /// Records a request refused with 503 because the worker pool was full.
    pub fn record_rejected_busy(&self) {
        let mut figures = self.figures();
        if figures.windowed {
            figures.window_rejected_busy += 1;
        }
        figures.total_rejected_busy += 1;
    }

    /// The current window, without resetting it.
    pub fn window(&self) -> HealthWindow {
        let figures = self.figures();
        HealthWindow {
            models: figures
                .window
                .iter()
                .map(|((model, version), stats)| stats.health(model, version))
                .collect(),
            rejected_busy: figures.window_rejected_busy,
        }
    }

    /// Returns the current window and starts a new, empty one. The totals are unaffected.
    pub fn take_window(&self) -> HealthWindow {
        let mut figures = self.figures();
        let window = std::mem::take(&mut figures.window);
        let rejected_busy = std::mem::take(&mut figures.window_rejected_busy);
        HealthWindow {
            models: window
                .iter()
                .map(|((model, version), stats)| stats.health(model, version))
                .collect(),
            rejected_busy,
        }
    }

    /// Figures since the recorder was created, per model version, ordered by model then
    /// version; and the total count of 503 refusals.
    pub fn totals(&self) -> (Vec<ModelTotals>, u64) {
        let figures = self.figures();
        let models = figures
            .totals
            .iter()
            .map(|((model, version), (stats, sum))| ModelTotals {
                health: stats.health(model, version),
                latency_sum_seconds: sum.as_secs_f64(),
            })
            .collect();
        (models, figures.total_rejected_busy)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn counts_and_quantiles_per_model_version() {
        let recorder = HealthRecorder::new();
        for i in 1..=100 {
            recorder.record("fraud", "1.0.0", Outcome::Ok, ms(i));
        }
        recorder.record("fraud", "1.0.0", Outcome::Error, ms(1));
        recorder.record("fraud", "1.1.0", Outcome::NonFinite, ms(5));
        recorder.record_invalid("fraud", "1.1.0");
        recorder.record_rejected_busy();

        let window = recorder.window();
        assert_eq!(window.rejected_busy, 1);
        let [old, new] = window.models.as_slice() else {
            panic!("two versions expected: {window:?}");
        };
        assert_eq!(
            (old.version.as_str(), old.inferences, old.errors),
            ("1.0.0", 100, 1)
        );
        let latency = old.latency_ms.unwrap();
        // hdrhistogram keeps 3 significant digits.
        assert!((latency.p50 - 50.0).abs() < 0.1, "{latency:?}");
        assert!((latency.p95 - 95.0).abs() < 0.1, "{latency:?}");
        assert!((latency.p99 - 99.0).abs() < 0.1, "{latency:?}");
        assert!((latency.max - 100.0).abs() < 0.1, "{latency:?}");
        assert_eq!(
            (
                new.inferences,
                new.non_finite,
                new.invalid_requests,
                new.errors
            ),
            (1, 1, 1, 0)
        );
    }

    #[test]
    fn taking_the_window_resets_it_but_not_the_totals() {
        let recorder = HealthRecorder::new();
        recorder.record("fraud", "1.0.0", Outcome::Ok, ms(2));
        recorder.record_rejected_busy();
        let first = recorder.take_window();
        assert_eq!(first.models.len(), 1);
        assert_eq!(first.rejected_busy, 1);
        assert_eq!(recorder.take_window(), HealthWindow::default());

        recorder.record("fraud", "1.0.0", Outcome::Ok, ms(4));
        let second = recorder.take_window();
        assert_eq!(second.models[0].inferences, 1);

        let (totals, rejected) = recorder.totals();
        assert_eq!(rejected, 1);
        assert_eq!(totals[0].health.inferences, 2);
        assert!((totals[0].latency_sum_seconds - 0.006).abs() < 1e-9);
    }

    #[test]
    fn a_totals_only_recorder_keeps_no_window() {
        let recorder = HealthRecorder::totals_only();
        recorder.record("fraud", "1.0.0", Outcome::Ok, ms(2));
        recorder.record_invalid("fraud", "1.0.0");
        recorder.record_rejected_busy();
        assert_eq!(recorder.window(), HealthWindow::default());
        let (totals, rejected) = recorder.totals();
        assert_eq!(rejected, 1);
        assert_eq!(
            (
                totals[0].health.inferences,
                totals[0].health.invalid_requests
            ),
            (1, 1)
        );
    }

    #[test]
    fn a_model_with_only_invalid_requests_has_no_latency() {
        let recorder = HealthRecorder::new();
        recorder.record_invalid("fraud", "1.0.0");
        assert_eq!(recorder.window().models[0].latency_ms, None);
    }
}
