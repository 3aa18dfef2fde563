//! Shadow runs: a rollout's candidate version runs beside the active one on live inputs and
//! never answers a request.
//!
//! After the active version answered a request with finite values, a sample of such requests
//! (the slot's `sample_rate`) is run again on the candidate, on a blocking thread of its own, so
//! the client's answer never waits for it. At most one candidate run per model is in flight:
//! a sampled request that finds the candidate busy is counted as skipped, so the extra cost is
//! bounded by one inference per model whatever the request rate. The two answers are compared
//! ([`compare`]) and the outcome counted per (model, active version, candidate version), for the
//! health window and for `/metrics`.

use flotilla_protocol::agent::ShadowHealth;
use flotilla_runtime::{Model, Tensor, TensorData};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, to 3 significant digits.
const LATENCY_MAX_MICROS: u64 = 600_000_000;

/// A verified, loaded candidate and how to run it, as the update loop hands it over.
#[derive(Debug, Clone)]
pub struct ShadowModel {
    /// Candidate version.
    pub version: String,
    /// The loaded, smoke-tested candidate.
    pub model: Arc<Model>,
    /// Share of successful requests also run on the candidate, in (0, 1].
    pub sample_rate: f64,
    /// Largest difference between two values that still counts as the same answer.
    pub tolerance: f64,
}

/// How one shadow run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShadowOutcome {
    /// Both answered and the answers agree.
    Agreed,
    /// Both answered and the answers differ.
    Disagreed,
    /// The candidate failed or answered NaN or infinity (not compared).
    Error,
    /// The candidate was still busy with an earlier request.
    Skipped,
}

impl ShadowOutcome {
    /// The `outcome` label of `flotilla_agent_shadow_comparisons_total`.
    pub fn label(self) -> &'static str {
        match self {
            ShadowOutcome::Agreed => "agreed",
            ShadowOutcome::Disagreed => "disagreed",
            ShadowOutcome::Error => "error",
            ShadowOutcome::Skipped => "skipped",
        }
    }
}

/// Compares the active version's outputs with the candidate's.
///
/// A candidate output holding NaN or infinity is an [`ShadowOutcome::Error`]. Otherwise the
/// answers agree when, over every output present in both (by name), either
///
/// - every row has the same top class: the index of the largest value along the last
///   dimension (an output with a single value per row has no classes to pick from, so for it
///   this rule falls back to the tolerance), or
/// - every value differs by at most `tolerance`.
///
/// Answers with no output in common, or a common output whose shapes differ, disagree.
pub fn compare(active: &[Tensor], candidate: &[Tensor], tolerance: f64) -> ShadowOutcome {
    if candidate.iter().any(|t| !t.data.all_finite()) {
        return ShadowOutcome::Error;
    }
    let mut common = 0;
    let mut within_tolerance = true;
    let mut same_top_class = true;
    for a in active {
        let Some(c) = candidate.iter().find(|c| c.name == a.name) else {
            continue;
        };
        common += 1;
        let (x, y) = (values(&a.data), values(&c.data));
        if a.shape != c.shape || x.len() != y.len() {
            return ShadowOutcome::Disagreed;
        }
        let close = x.iter().zip(&y).all(|(x, y)| (x - y).abs() <= tolerance);
        let classes = match a.shape.as_slice() {
            [_, .., last] => *last,
            _ => 1,
        };
        let same_class = if classes < 2 {
            close
        } else {
            x.chunks(classes)
                .zip(y.chunks(classes))
                .all(|(x, y)| argmax(x) == argmax(y))
        };
        within_tolerance &= close;
        same_top_class &= same_class;
    }
    if common > 0 && (within_tolerance || same_top_class) {
        ShadowOutcome::Agreed
    } else {
        ShadowOutcome::Disagreed
    }
}

fn argmax(row: &[f64]) -> usize {
    // The first of equal maxima, the same rule on both sides.
    row.iter()
        .enumerate()
        .fold((0, f64::NEG_INFINITY), |(best, max), (i, &v)| {
            if v > max {
                (i, v)
            } else {
                (best, max)
            }
        })
        .0
}

fn values(data: &TensorData) -> Vec<f64> {
    match data {
        TensorData::Bool(v) => v.iter().map(|&b| f64::from(u8::from(b))).collect(),
        TensorData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::U16(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::U32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::U64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::I8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::I16(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
        TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::F64(v) => v.clone(),
    }
}

/// Whether a request is sampled, given a uniform `draw` in [0, 1).
pub fn sampled(sample_rate: f64, draw: f64) -> bool {
    draw < sample_rate
}

/// One model's candidate, ready to run: the model, its settings and its one in-flight slot.
#[derive(Debug)]
pub struct ShadowRunner {
    candidate: ShadowModel,
    in_flight: Arc<Semaphore>,
}

impl ShadowRunner {
    /// A runner for `candidate` with one in-flight slot.
    pub fn new(candidate: ShadowModel) -> ShadowRunner {
        ShadowRunner {
            candidate,
            in_flight: Arc::new(Semaphore::new(1)),
        }
    }

    /// The candidate.
    pub fn candidate(&self) -> &ShadowModel {
        &self.candidate
    }

    /// The in-flight slot, if free. Held for the whole candidate run.
    pub fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.in_flight).try_acquire_owned().ok()
    }

    /// Runs `inputs` on the candidate and compares its answer with `active`'s. Blocking:
    /// call it on a thread of its own. The slot is released before the outcome is recorded, so
    /// whoever sees the outcome finds the candidate free again.
    pub fn run(
        &self,
        slot: OwnedSemaphorePermit,
        inputs: Vec<Tensor>,
        active: &[Tensor],
    ) -> (ShadowOutcome, Duration) {
        let started = Instant::now();
        let answer = self.candidate.model.run(inputs);
        let latency = started.elapsed();
        drop(slot);
        let outcome = match answer {
            Ok(outputs) => compare(active, &outputs, self.candidate.tolerance),
            Err(e) => {
                tracing::debug!(version = %self.candidate.version, error = %e, "shadow run failed");
                ShadowOutcome::Error
            }
        };
        (outcome, latency)
    }
}

/// (model, active version).
type ModelVersion = (String, String);
/// (model, active version, candidate version).
type ShadowKey = (String, String, String);

struct WindowCounts {
    shadow_version: String,
    compared: u64,
    agreed: u64,
    errors: u64,
    skipped: u64,
    /// `None` only if hdrhistogram refused the constant bounds, which it does not.
    latency_micros: Option<Histogram<u64>>,
}

impl WindowCounts {
    fn new(shadow_version: &str) -> WindowCounts {
        WindowCounts {
            shadow_version: shadow_version.to_owned(),
            compared: 0,
            agreed: 0,
            errors: 0,
            skipped: 0,
            latency_micros: Histogram::new_with_bounds(1, LATENCY_MAX_MICROS, 3).ok(),
        }
    }
}

/// Totals since start of one (model, version, candidate), by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShadowTotals {
    /// Answers that agreed.
    pub agreed: u64,
    /// Answers that differed.
    pub disagreed: u64,
    /// Candidate failures and non-finite answers.
    pub errors: u64,
    /// Sampled requests the busy candidate skipped.
    pub skipped: u64,
}

impl ShadowTotals {
    /// Every sampled request so far.
    pub fn runs(&self) -> u64 {
        self.agreed + self.disagreed + self.errors + self.skipped
    }
}

#[derive(Default)]
struct Figures {
    window: BTreeMap<ModelVersion, WindowCounts>,
    totals: BTreeMap<ShadowKey, ShadowTotals>,
}

/// Shadow outcomes per model version: a window for the next report and totals for `/metrics`.
/// Cloning is cheap and clones share the figures.
#[derive(Clone)]
pub struct ShadowStats {
    figures: Arc<Mutex<Figures>>,
    /// Counts every outcome recorded, so tests and callers can wait for runs in flight.
    recorded: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for ShadowStats {
    fn default() -> ShadowStats {
        ShadowStats {
            figures: Arc::default(),
            recorded: Arc::new(tokio::sync::watch::Sender::new(0)),
        }
    }
}

impl std::fmt::Debug for ShadowStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShadowStats").finish_non_exhaustive()
    }
}

impl ShadowStats {
    fn figures(&self) -> MutexGuard<'_, Figures> {
        // A few additions cannot be left half-done in a harmful way.
        self.figures.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one sampled request of `model`@`version` and its candidate `shadow_version`;
    /// `latency` is the candidate's run time (`None` when it did not run).
    pub fn record(
        &self,
        model: &str,
        version: &str,
        shadow_version: &str,
        outcome: ShadowOutcome,
        latency: Option<Duration>,
    ) {
        {
            let mut figures = self.figures();
            let totals = figures
                .totals
                .entry((
                    model.to_owned(),
                    version.to_owned(),
                    shadow_version.to_owned(),
                ))
                .or_default();
            match outcome {
                ShadowOutcome::Agreed => totals.agreed += 1,
                ShadowOutcome::Disagreed => totals.disagreed += 1,
                ShadowOutcome::Error => totals.errors += 1,
                ShadowOutcome::Skipped => totals.skipped += 1,
            }
            let window = figures
                .window
                .entry((model.to_owned(), version.to_owned()))
                .or_insert_with(|| WindowCounts::new(shadow_version));
            // A window reports one candidate: the latest. Figures of one replaced mid-window
            // stay in the totals.
            if window.shadow_version != shadow_version {
                *window = WindowCounts::new(shadow_version);
            }
            match outcome {
                ShadowOutcome::Agreed => {
                    window.compared += 1;
                    window.agreed += 1;
                }
                ShadowOutcome::Disagreed => window.compared += 1,
                ShadowOutcome::Error => window.errors += 1,
                ShadowOutcome::Skipped => window.skipped += 1,
            }
            if let (Some(latency), Some(histogram)) = (latency, window.latency_micros.as_mut()) {
                let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                histogram.saturating_record(micros.max(1));
            }
        }
        self.recorded.send_modify(|n| *n += 1);
    }

    /// Takes the figures since the last call, per (model, active version).
    pub fn take_window(&self) -> BTreeMap<(String, String), ShadowHealth> {
        std::mem::take(&mut self.figures().window)
            .into_iter()
            .map(|(key, c)| {
                let latency_ms = c.latency_micros.as_ref().and_then(crate::report_latency);
                (
                    key,
                    ShadowHealth {
                        version: c.shadow_version,
                        compared: c.compared,
                        agreed: c.agreed,
                        errors: c.errors,
                        skipped: c.skipped,
                        latency_ms,
                    },
                )
            })
            .collect()
    }

    /// Totals since start per (model, active version, candidate version).
    pub fn totals(&self) -> Vec<(ShadowKey, ShadowTotals)> {
        self.figures()
            .totals
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// How many outcomes have been recorded since start; changes with every one.
    pub fn recorded(&self) -> tokio::sync::watch::Receiver<u64> {
        self.recorded.subscribe()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn probs(rows: &[[f32; 2]]) -> Vec<Tensor> {
        vec![Tensor::new(
            "probabilities",
            vec![rows.len(), 2],
            rows.iter().flatten().copied().collect::<Vec<f32>>(),
        )]
    }

    #[test]
    fn the_same_top_class_on_every_row_agrees() {
        let active = probs(&[[0.1, 0.9], [0.7, 0.3]]);
        let candidate = probs(&[[0.4, 0.6], [0.51, 0.49]]);
        assert_eq!(compare(&active, &candidate, 0.0), ShadowOutcome::Agreed);
    }

    #[test]
    fn values_within_the_tolerance_agree_even_across_a_class_boundary() {
        let active = probs(&[[0.5, 0.5001]]);
        let candidate = probs(&[[0.5001, 0.5]]);
        assert_eq!(compare(&active, &candidate, 0.001), ShadowOutcome::Agreed);
        assert_eq!(
            compare(&active, &candidate, 0.00001),
            ShadowOutcome::Disagreed
        );
        // A single score per row has no top class: only the tolerance decides.
        let score = |v: f32| vec![Tensor::new("anomaly_score", vec![1, 1], vec![v])];
        assert_eq!(
            compare(&score(0.2), &score(0.25), 0.1),
            ShadowOutcome::Agreed
        );
        assert_eq!(
            compare(&score(0.2), &score(0.9), 0.1),
            ShadowOutcome::Disagreed
        );
    }

    #[test]
    fn one_row_with_another_top_class_disagrees() {
        let active = probs(&[[0.1, 0.9], [0.7, 0.3], [0.2, 0.8]]);
        let candidate = probs(&[[0.1, 0.9], [0.3, 0.7], [0.2, 0.8]]);
        assert_eq!(compare(&active, &candidate, 0.01), ShadowOutcome::Disagreed);
    }

    #[test]
    fn a_shape_mismatch_disagrees() {
        let active = probs(&[[0.1, 0.9], [0.7, 0.3], [0.4, 0.6]]);
        // The same values in the same order: same count, another shape.
        let candidate = vec![Tensor::new(
            "probabilities",
            vec![2, 3],
            vec![0.1f32, 0.9, 0.7, 0.3, 0.4, 0.6],
        )];
        assert_eq!(compare(&active, &candidate, 1.0), ShadowOutcome::Disagreed);
        let fewer = probs(&[[0.1, 0.9]]);
        assert_eq!(compare(&active, &fewer, 1.0), ShadowOutcome::Disagreed);
        let wide = vec![Tensor::new(
            "probabilities",
            vec![1, 4],
            vec![0.1f32, 0.9, 0.7, 0.3],
        )];
        assert_eq!(compare(&active, &wide, 1.0), ShadowOutcome::Disagreed);
    }

    #[test]
    fn only_common_outputs_count_and_none_in_common_disagrees() {
        let mut active = probs(&[[0.1, 0.9]]);
        active.push(Tensor::new("logits", vec![1, 2], vec![-3.0f32, 3.0]));
        let candidate = probs(&[[0.2, 0.8]]);
        assert_eq!(compare(&active, &candidate, 0.0), ShadowOutcome::Agreed);
        let renamed = vec![Tensor::new("scores", vec![1, 2], vec![0.1f32, 0.9])];
        assert_eq!(compare(&active, &renamed, 1.0), ShadowOutcome::Disagreed);
    }

    #[test]
    fn non_finite_candidate_answers_are_errors() {
        let active = probs(&[[0.1, 0.9]]);
        assert_eq!(
            compare(&active, &probs(&[[f32::NAN, f32::NAN]]), 1.0),
            ShadowOutcome::Error
        );
        assert_eq!(
            compare(&active, &probs(&[[f32::INFINITY, 0.0]]), 1.0),
            ShadowOutcome::Error
        );
    }

    #[test]
    fn sampling_follows_the_rate() {
        assert!(sampled(1.0, 0.999_999));
        assert!(sampled(0.25, 0.2));
        assert!(!sampled(0.25, 0.25));
        let draws = (0..1000).map(|i| f64::from(i) / 1000.0);
        assert_eq!(draws.filter(|&d| sampled(0.1, d)).count(), 100);
    }

    #[test]
    fn a_busy_candidate_gives_no_slot_until_the_run_ends() {
        let bytes = include_bytes!("../../models/fraud-1.1.0.onnx");
        let model = Model::load(bytes, &flotilla_runtime::LoadOptions::default()).unwrap();
        let runner = ShadowRunner::new(ShadowModel {
            version: "1.1.0".into(),
            model: Arc::new(model),
            sample_rate: 1.0,
            tolerance: 0.0,
        });
        let slot = runner.try_slot().unwrap();
        assert!(runner.try_slot().is_none(), "one run in flight at most");
        let inputs = vec![Tensor::new("features", vec![1, 8], vec![0.0f32; 8])];
        let active = runner.candidate().model.run(inputs.clone()).unwrap();
        let (outcome, _) = runner.run(slot, inputs, &active);
        assert_eq!(outcome, ShadowOutcome::Agreed);
        assert!(runner.try_slot().is_some(), "free again after the run");
        // Inputs the candidate cannot take are its error, not a disagreement.
        let wrong = vec![Tensor::new("pixels", vec![1, 8], vec![0.0f32; 8])];
        let (outcome, _) = runner.run(runner.try_slot().unwrap(), wrong, &active);
        assert_eq!(outcome, ShadowOutcome::Error);
    }

    #[test]
    fn the_window_reports_the_latest_candidate_and_totals_keep_all() {
        let stats = ShadowStats::default();
        let ms = Some(Duration::from_millis(2));
        stats.record("fraud", "1.0.0", "1.1.0", ShadowOutcome::Agreed, ms);
        stats.record("fraud", "1.0.0", "1.1.0", ShadowOutcome::Disagreed, ms);
        stats.record("fraud", "1.0.0", "1.1.0", ShadowOutcome::Error, ms);
        stats.record("fraud", "1.0.0", "1.1.0", ShadowOutcome::Skipped, None);
        assert_eq!(*stats.recorded().borrow(), 4);
        let window = stats.take_window();
        let h = &window[&("fraud".to_owned(), "1.0.0".to_owned())];
        assert_eq!(
            (
                h.version.as_str(),
                h.compared,
                h.agreed,
                h.errors,
                h.skipped
            ),
            ("1.1.0", 2, 1, 1, 1)
        );
        // Below 2048 µs hdrhistogram is exact.
        assert_eq!(h.latency_ms.unwrap().p99, 2.0);
        assert!(stats.take_window().is_empty(), "taking resets");

        stats.record("fraud", "1.0.0", "1.1.0", ShadowOutcome::Agreed, ms);
        stats.record("fraud", "1.0.0", "2.0.0", ShadowOutcome::Disagreed, None);
        let window = stats.take_window();
        let h = &window[&("fraud".to_owned(), "1.0.0".to_owned())];
        assert_eq!((h.version.as_str(), h.compared, h.agreed), ("2.0.0", 1, 0));
        assert_eq!(h.latency_ms, None);
        let totals = stats.totals();
        assert_eq!(totals.len(), 2);
        assert_eq!(
            totals[0].1,
            ShadowTotals {
                agreed: 2,
                disagreed: 1,
                errors: 1,
                skipped: 1
            }
        );
        assert_eq!(totals[1].1.runs(), 1);
    }
}
