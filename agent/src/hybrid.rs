//! Hybrid inference: the device answers, and requests it is unsure about go to a server model.
//!
//! A request escalates when any row of the policy's output has a confidence (its largest value
//! along the last dimension) below the threshold. The server's answer is returned, marked
//! `flotilla_served_by: server`; when the server does not answer within the policy's timeout,
//! or cannot be reached, or refuses, the local answer is returned, marked `edge_fallback`.
//! Counts and round-trip latency are kept per model version for the health report.

use flotilla_protocol::agent::{EscalationPolicy, LatencyMs};
use flotilla_runtime::{Tensor, TensorData};
use hdrhistogram::Histogram;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether the local outputs call for the server: some row of `policy.output` has its largest
/// value below the threshold. An output that is missing or not floating point never escalates
/// (the policy was validated against names, not against this model's types).
pub fn needs_server(policy: &EscalationPolicy, outputs: &[Tensor]) -> bool {
    // A confidence lies in [0, 1]: a threshold above it would send every input out (and take
    // the server's word for every answer) whatever the model says. Such a policy is ignored.
    if !(0.0..=1.0).contains(&policy.threshold) {
        return false;
    }
    let Some(out) = outputs.iter().find(|t| t.name == policy.output) else {
        return false;
    };
    let values: Vec<f64> = match &out.data {
        TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::F64(v) => v.clone(),
        _ => return false,
    };
    let row = if out.shape.len() >= 2 {
        out.shape.last().copied().unwrap_or(1).max(1)
    } else {
        1
    };
    values.chunks(row).any(|r| {
        let best = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // NaN confidence is the least confident of all.
        best.is_nan() || best < policy.threshold
    })
}

/// Longest wait for an escalated answer, whatever the policy says (the server refuses longer
/// policies): a request is never held longer than this for the server.
pub const MAX_ESCALATION_TIMEOUT_MS: u64 = 60_000;
/// Largest escalated answer read; a longer one is not an answer to this request.
pub const MAX_ESCALATION_ANSWER_BYTES: usize = 16 << 20;

/// Checks a server's answer against the local one: every output it returns must be one the
/// local model produced, with the same datatype and shape and finite numbers. Anything else
/// (another model's answer, junk, NaN) is not returned in place of the signed model's answer.
pub fn answer_fits(answer: &Value, local: &[Tensor]) -> Result<(), String> {
    let outputs = answer
        .get("outputs")
        .and_then(Value::as_array)
        .filter(|o| !o.is_empty())
        .ok_or("the answer has no outputs")?;
    for out in outputs {
        let name = out
            .get("name")
            .and_then(Value::as_str)
            .ok_or("an output has no name")?;
        let mine = local
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| format!("output `{name}` is not one the model declares"))?;
        let datatype = out.get("datatype").and_then(Value::as_str);
        if datatype != Some(mine.datatype().name()) {
            return Err(format!(
                "output `{name}` is {datatype:?}, the model's is {}",
                mine.datatype().name()
            ));
        }
        let shape: Option<Vec<usize>> = out.get("shape").and_then(Value::as_array).and_then(|d| {
            d.iter()
                .map(|x| x.as_u64().and_then(|n| usize::try_from(n).ok()))
                .collect()
        });
        if shape.as_deref() != Some(mine.shape.as_slice()) {
            return Err(format!(
                "output `{name}` has shape {shape:?}, the model's is {:?}",
                mine.shape
            ));
        }
        let mut count = 0usize;
        let mut finite = true;
        flatten(out.get("data").unwrap_or(&Value::Null), &mut |v| {
            count += 1;
            finite &= v.as_f64().is_some_and(f64::is_finite) || v.is_boolean();
        });
        if !finite || count != mine.data.len() {
            return Err(format!(
                "output `{name}` holds {count} values (finite: {finite}), its shape needs {}",
                mine.data.len()
            ));
        }
    }
    Ok(())
}

/// Calls `f` on each leaf of a (possibly nested) JSON array; a non-array is one leaf.
fn flatten(v: &Value, f: &mut impl FnMut(&Value)) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, f)),
        leaf => f(leaf),
    }
}

/// Why an escalation produced no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum EscalationError {
    /// No answer within the policy's timeout.
    #[error("the server did not answer within {0} ms")]
    Timeout(u64),
    /// Connection failed.
    #[error("the server is unreachable: {0}")]
    Unreachable(String),
    /// The server answered with an error.
    #[error("the server refused: {0}")]
    Refused(String),
    /// The server's answer does not fit the model's outputs.
    #[error("the server's answer does not fit the model: {0}")]
    Unfit(String),
}

/// Sends escalations to the server with the device credential.
#[derive(Clone)]
pub struct Escalator {
    http: reqwest::Client,
    server: String,
    credential: crate::sync::credential::SharedCredential,
    stats: EscalationStats,
}

impl std::fmt::Debug for Escalator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Escalator")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Escalator {
    /// An escalator for `server` (base URL) using the device's credential.
    pub fn new(server: &str, credential: &str) -> anyhow::Result<Self> {
        Self::with_credential(
            server,
            crate::sync::credential::SharedCredential::new(credential.to_owned()),
        )
    }

    /// An escalator presenting `credential`, which a credential rotation replaces in place.
    pub fn with_credential(
        server: &str,
        credential: crate::sync::credential::SharedCredential,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(2))
                .build()?,
            server: server.trim_end_matches('/').to_owned(),
            credential,
            stats: EscalationStats::default(),
        })
    }

    /// The counters reported in health windows.
    pub fn stats(&self) -> &EscalationStats {
        &self.stats
    }

    /// Asks the server's model for an answer to `request` (the client's OIP request body),
    /// counting the attempt for `model`@`version` (the local slot).
    pub async fn ask(
        &self,
        model: &str,
        version: &str,
        policy: &EscalationPolicy,
        request: &Value,
        local: &[Tensor],
    ) -> Result<Value, EscalationError> {
        let path = match &policy.server_version {
            Some(v) => format!("/v2/models/{}/versions/{v}/infer", policy.server_model),
            None => format!("/v2/models/{}/infer", policy.server_model),
        };
        let started = Instant::now();
        let call = async {
            let mut response = self
                .http
                .post(format!("{}{path}", self.server))
                .bearer_auth(self.credential.get())
                .json(request)
                .send()
                .await
                .map_err(|e| EscalationError::Unreachable(e.to_string()))?;
            let status = response.status();
            let mut bytes = Vec::new();
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| EscalationError::Unreachable(e.to_string()))?
            {
                if bytes.len() + chunk.len() > MAX_ESCALATION_ANSWER_BYTES {
                    return Err(EscalationError::Refused(format!(
                        "{status}: the answer is larger than {MAX_ESCALATION_ANSWER_BYTES} bytes"
                    )));
                }
                bytes.extend_from_slice(&chunk);
            }
            let body: Value = serde_json::from_slice(&bytes)
                .map_err(|e| EscalationError::Refused(format!("{status}: {e}")))?;
            if !status.is_success() {
                return Err(EscalationError::Refused(format!(
                    "{status}: {}",
                    body.get("error").unwrap_or(&body)
                )));
            }
            answer_fits(&body, local).map_err(EscalationError::Unfit)?;
            Ok(body)
        };
        let timeout_ms = policy.timeout_ms.min(MAX_ESCALATION_TIMEOUT_MS);
        let result = match tokio::time::timeout(Duration::from_millis(timeout_ms), call).await {
            Ok(r) => r,
            Err(_) => Err(EscalationError::Timeout(timeout_ms)),
        };
        self.stats
            .record(model, version, result.is_ok().then(|| started.elapsed()));
        result
    }
}

/// Escalation counts and round-trip latency per local model version, since the last window,
/// and totals since start (for `/metrics`).
#[derive(Clone, Default)]
pub struct EscalationStats {
    window: Arc<Mutex<BTreeMap<ModelVersion, Counts>>>,
    totals: Arc<Mutex<BTreeMap<ModelVersion, (u64, u64)>>>,
}

/// (model, version).
type ModelVersion = (String, String);

struct Counts {
    escalations: u64,
    fallbacks: u64,
    /// `None` only if hdrhistogram refused the bounds, which it does not for these.
    latency_us: Option<Histogram<u64>>,
}

/// One model version's escalations over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationWindow {
    /// Requests sent to the server.
    pub escalations: u64,
    /// Of those, answered locally because the server did not.
    pub fallbacks: u64,
    /// Round trip of those the server answered.
    pub latency_ms: Option<LatencyMs>,
}

impl EscalationStats {
    fn record(&self, model: &str, version: &str, answered_in: Option<Duration>) {
        if let Ok(mut totals) = self.totals.lock() {
            let t = totals
                .entry((model.to_owned(), version.to_owned()))
                .or_default();
            match answered_in {
                Some(_) => t.0 += 1,
                None => t.1 += 1,
            }
        }
        let Ok(mut map) = self.window.lock() else {
            return;
        };
        let counts = map
            .entry((model.to_owned(), version.to_owned()))
            .or_insert_with(|| Counts {
                escalations: 0,
                fallbacks: 0,
                // 1 µs .. 10 min, 3 significant digits.
                latency_us: Histogram::new_with_bounds(1, 600_000_000, 3).ok(),
            });
        counts.escalations += 1;
        match answered_in {
            Some(d) => {
                let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
                if let Some(h) = counts.latency_us.as_mut() {
                    let _ = h.record(us.min(600_000_000));
                }
            }
            None => counts.fallbacks += 1,
        }
    }

    /// Since start, per (model, version): (answered by the server, fell back).
    pub fn totals(&self) -> Vec<((String, String), (u64, u64))> {
        self.totals
            .lock()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default()
    }

    /// Takes the counts since the last call, per (model, version).
    pub fn take_window(&self) -> BTreeMap<(String, String), EscalationWindow> {
        let Ok(mut map) = self.window.lock() else {
            return BTreeMap::new();
        };
        std::mem::take(&mut *map)
            .into_iter()
            .map(|(key, c)| {
                let latency_ms = c.latency_us.as_ref().and_then(crate::report_latency);
                (
                    key,
                    EscalationWindow {
                        escalations: c.escalations,
                        fallbacks: c.fallbacks,
                        latency_ms,
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn policy(threshold: f64) -> EscalationPolicy {
        EscalationPolicy {
            output: "probabilities".into(),
            threshold,
            server_model: "fraud".into(),
            server_version: None,
            timeout_ms: 100,
        }
    }

    fn probs(rows: &[[f32; 2]]) -> Vec<Tensor> {
        vec![Tensor::new(
            "probabilities",
            vec![rows.len(), 2],
            rows.iter().flatten().copied().collect::<Vec<f32>>(),
        )]
    }

    #[test]
    fn a_request_escalates_when_any_row_is_unsure() {
        assert!(!needs_server(
            &policy(0.8),
            &probs(&[[0.1, 0.9], [0.85, 0.15]])
        ));
        assert!(needs_server(
            &policy(0.8),
            &probs(&[[0.1, 0.9], [0.3, 0.7]])
        ));
        assert!(needs_server(&policy(0.8), &probs(&[[f32::NAN, 0.1]])));
        // A single score per row is its own confidence.
        let scores = vec![Tensor::new("probabilities", vec![2], vec![0.9f32, 0.5])];
        assert!(needs_server(&policy(0.6), &scores));
        assert!(!needs_server(&policy(0.4), &scores));
        // Another output, or integers, never escalate.
        let mut other = policy(0.8);
        other.output = "logits".into();
        assert!(!needs_server(&other, &probs(&[[0.5, 0.5]])));
        let ints = vec![Tensor::new("probabilities", vec![1, 2], vec![0i64, 1])];
        assert!(!needs_server(&policy(0.8), &ints));
        // No confidence is above 1: such a threshold would send every input out.
        assert!(!needs_server(&policy(1e300), &probs(&[[0.5, 0.5]])));
        assert!(!needs_server(&policy(f64::NAN), &probs(&[[0.5, 0.5]])));
        assert!(needs_server(&policy(1.0), &probs(&[[0.5, 0.5]])));
    }

    #[test]
    fn an_answer_must_fit_the_models_outputs() {
        let local = probs(&[[0.4, 0.6]]);
        let answer = |name: &str, datatype: &str, shape: Value, data: Value| serde_json::json!({"outputs": [{"name": name, "datatype": datatype, "shape": shape, "data": data}]});
        let fits = |a: &Value| answer_fits(a, &local).is_ok();
        assert!(fits(&answer(
            "probabilities",
            "FP32",
            serde_json::json!([1, 2]),
            serde_json::json!([0.9, 0.1])
        )));
        assert!(fits(&answer(
            "probabilities",
            "FP32",
            serde_json::json!([1, 2]),
            serde_json::json!([[0.9, 0.1]])
        )));
        assert!(!fits(&answer(
            "other",
            "FP32",
            serde_json::json!([1, 2]),
            serde_json::json!([0.9, 0.1])
        )));
        assert!(!fits(&answer(
            "probabilities",
            "INT64",
            serde_json::json!([1, 2]),
            serde_json::json!([1, 0])
        )));
        assert!(!fits(&answer(
            "probabilities",
            "FP32",
            serde_json::json!([2, 1]),
            serde_json::json!([0.9, 0.1])
        )));
        assert!(!fits(&answer(
            "probabilities",
            "FP32",
            serde_json::json!([1, 2]),
            serde_json::json!([0.9])
        )));
        assert!(!fits(&answer(
            "probabilities",
            "FP32",
            serde_json::json!([1, 2]),
            serde_json::json!([0.9, "NaN"])
        )));
        assert!(!fits(&serde_json::json!({"outputs": []})));
        assert!(!fits(&serde_json::json!({"error": "x"})));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_counted_fallback() {
        let e = Escalator::new("http://127.0.0.1:9", "fld_x").unwrap();
        let err = e
            .ask("fraud", "1.0.0", &policy(0.8), &serde_json::json!({}), &[])
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                EscalationError::Unreachable(_) | EscalationError::Timeout(_)
            ),
            "{err}"
        );
        let window = e.stats().take_window();
        let w = &window[&("fraud".to_owned(), "1.0.0".to_owned())];
        assert_eq!((w.escalations, w.fallbacks, w.latency_ms), (1, 1, None));
        assert!(e.stats().take_window().is_empty(), "taking resets");
        assert_eq!(
            e.stats().totals(),
            [(("fraud".to_owned(), "1.0.0".to_owned()), (0, 1))],
            "totals do not"
        );
    }
}
