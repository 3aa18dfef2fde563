//! Placement data: each device's latest health window, grouped by model version and device
//! class. Pure functions over stored records, so the rules are unit-tested without a database.

use flotilla_protocol::agent::{HardwareProfile, HealthWindow, LatencyMs};
use flotilla_protocol::placement::{EdgePlacement, ServerPlacement};
use flotilla_serving::ModelTotals;
use std::collections::BTreeMap;

use crate::store::DeviceRecord;

/// How a device's class is named when grouping.
pub fn device_class(device: &DeviceRecord, group_by: &str) -> String {
    if group_by == "hardware" {
        return match serde_json::from_value::<HardwareProfile>(device.hardware.clone()) {
            Ok(h) => format!(
                "{}/{} cores/{:.1} GiB",
                h.arch,
                h.cpu_cores,
                h.memory_mib as f64 / 1024.0
            ),
            Err(_) => "(unknown hardware)".to_owned(),
        };
    }
    device
        .labels
        .get(group_by)
        .cloned()
        .unwrap_or_else(|| "(none)".to_owned())
}

#[derive(Default)]
struct Acc {
    devices: u64,
    inferences: u64,
    errors: u64,
    latency: Weighted,
    memory: Vec<u64>,
    escalations: u64,
    fallbacks: u64,
    escalation_latency: Weighted,
}

/// Inference-weighted mean of percentiles: a device that served more counts more.
#[derive(Default)]
pub(crate) struct Weighted {
    weight: u64,
    p50: f64,
    p95: f64,
    p99: f64,
}

impl Weighted {
    pub(crate) fn add(&mut self, l: &LatencyMs, weight: u64) {
        let w = weight as f64;
        self.weight += weight;
        self.p50 += l.p50 * w;
        self.p95 += l.p95 * w;
        self.p99 += l.p99 * w;
    }

    pub(crate) fn mean(&self) -> Option<LatencyMs> {
        (self.weight > 0).then(|| {
            let w = self.weight as f64;
            LatencyMs {
                p50: self.p50 / w,
                p95: self.p95 / w,
                p99: self.p99 / w,
            }
        })
    }
}

pub(crate) fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The edge rows for `model`: one per (version, class), sorted, from the devices' latest
/// health windows (revoked devices excluded).
pub fn edge_rows(devices: &[DeviceRecord], model: &str, group_by: &str) -> Vec<EdgePlacement> {
    let mut groups: BTreeMap<(String, String), Acc> = BTreeMap::new();
    for device in devices.iter().filter(|d| d.status != "revoked") {
        let Some(window) = device
            .last_health
            .as_ref()
            .and_then(|h| serde_json::from_value::<HealthWindow>(h.clone()).ok())
        else {
            continue;
        };
        for m in window.models.iter().filter(|m| m.model == model) {
            let acc = groups
                .entry((m.version.clone(), device_class(device, group_by)))
                .or_default();
            acc.devices += 1;
            acc.inferences += m.inference_count;
            acc.errors += m.error_count;
            acc.latency.add(&m.latency_ms, m.inference_count);
            acc.memory.extend(window.memory_rss_bytes);
            acc.escalations += m.escalations;
            acc.fallbacks += m.escalation_fallbacks;
            if let Some(l) = &m.escalation_latency_ms {
                let answered = m.escalations.saturating_sub(m.escalation_fallbacks);
                acc.escalation_latency.add(l, answered);
            }
        }
    }
    groups
        .into_iter()
        .map(|((version, class), a)| EdgePlacement {
            version,
            class,
            devices: a.devices,
            inferences: a.inferences,
            error_rate: ratio(a.errors, a.inferences),
            latency_ms: a.latency.mean().unwrap_or_default(),
            memory_rss_bytes_mean: (!a.memory.is_empty())
                .then(|| a.memory.iter().sum::<u64>() / a.memory.len() as u64),
            memory_rss_bytes_max: a.memory.iter().copied().max(),
            escalation_rate: ratio(a.escalations, a.inferences),
            escalation_fallbacks: a.fallbacks,
            escalation_latency_ms: a.escalation_latency.mean(),
        })
        .collect()
}

/// The server rows for `model`: what this server process has served, per version.
pub fn server_rows(served: &[ModelTotals], model: &str) -> Vec<ServerPlacement> {
    served
        .iter()
        .map(|t| &t.health)
        .filter(|h| h.model == model)
        .map(|h| ServerPlacement {
            version: h.version.clone(),
            inferences: h.inferences,
            error_rate: ratio(h.errors + h.non_finite, h.inferences),
            latency_ms: h.latency_ms.as_ref().map(|l| LatencyMs {
                p50: l.p50,
                p95: l.p95,
                p99: l.p99,
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::Utc;
    use serde_json::json;
    use uuid::Uuid;

    fn device(labels: &[(&str, &str)], cores: u32, health: serde_json::Value) -> DeviceRecord {
        DeviceRecord {
            id: Uuid::new_v4(),
            name: "d".into(),
            public_key: String::new(),
            credential_hash: Uuid::new_v4().to_string(),
            status: "active".into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            hardware: json!({"arch": "aarch64", "os": "linux", "cpu_cores": cores,
                             "memory_mib": 4096, "accelerators": []}),
            agent_version: "t".into(),
            enrollment_token_id: None,
            enrolled_at: Utc::now(),
            last_seen_at: None,
            desired_sequence: 0,
            desired_hash: None,
            desired_envelope: None,
            desired_expires_at: None,
            applied_sequence: 0,
            last_report_seq: 0,
            slot_status: json!([]),
            last_health: Some(health),
            next_credential_hash: None,
            credential_rotation_requested_at: None,
        }
    }

    fn window(
        version: &str,
        n: u64,
        errors: u64,
        p95: f64,
        esc: u64,
        rss: u64,
    ) -> serde_json::Value {
        json!({"start": 0, "end": 60, "memory_rss_bytes": rss, "models": [
            {"model": "fraud", "version": version, "inference_count": n, "error_count": errors,
             "latency_ms": {"p50": p95 / 2.0, "p95": p95, "p99": p95 * 2.0},
             "escalations": esc, "escalation_fallbacks": 0,
             "escalation_latency_ms": {"p50": 10.0, "p95": 20.0, "p99": 30.0}},
            {"model": "other", "version": "9.0.0", "inference_count": 5, "error_count": 0,
             "latency_ms": {"p50": 1.0, "p95": 1.0, "p99": 1.0}}]})
    }

    #[test]
    fn rows_group_by_version_and_class_with_weighted_latency() {
        let devices = vec![
            device(
                &[("class", "pi")],
                4,
                window("1.0.0", 100, 1, 10.0, 10, 40 << 20),
            ),
            device(
                &[("class", "pi")],
                4,
                window("1.0.0", 300, 3, 20.0, 30, 60 << 20),
            ),
            device(
                &[("class", "jetson")],
                8,
                window("1.0.0", 50, 0, 5.0, 0, 80 << 20),
            ),
            device(&[], 4, window("1.1.0", 10, 5, 1.0, 0, 10 << 20)),
        ];
        let rows = edge_rows(&devices, "fraud", "class");
        let classes: Vec<(&str, &str, u64)> = rows
            .iter()
            .map(|r| (r.version.as_str(), r.class.as_str(), r.devices))
            .collect();
        assert_eq!(
            classes,
            [
                ("1.0.0", "jetson", 1),
                ("1.0.0", "pi", 2),
                ("1.1.0", "(none)", 1)
            ]
        );
        let pi = &rows[1];
        assert_eq!(pi.inferences, 400);
        assert!((pi.error_rate - 0.01).abs() < 1e-12);
        // (100·10 + 300·20) / 400
        assert!((pi.latency_ms.p95 - 17.5).abs() < 1e-9);
        assert!((pi.escalation_rate - 0.1).abs() < 1e-12);
        assert_eq!(pi.memory_rss_bytes_mean, Some(50 << 20));
        assert_eq!(pi.memory_rss_bytes_max, Some(60 << 20));
        assert_eq!(pi.escalation_latency_ms.unwrap().p95, 20.0);
        assert!((rows[2].error_rate - 0.5).abs() < 1e-12);

        let by_hw = edge_rows(&devices, "fraud", "hardware");
        assert!(by_hw.iter().any(|r| r.class == "aarch64/8 cores/4.0 GiB"));
        assert!(edge_rows(&devices, "nosuch", "class").is_empty());
    }

    #[test]
    fn revoked_devices_and_missing_windows_do_not_count() {
        let mut revoked = device(&[], 4, window("1.0.0", 100, 0, 1.0, 0, 1));
        revoked.status = "revoked".into();
        let mut silent = device(&[], 4, json!(null));
        silent.last_health = None;
        assert!(edge_rows(&[revoked, silent], "fraud", "class").is_empty());
    }
}
