//! Health over time, from the reports devices sent: one device's windows as points, and a
//! cohort's windows summed per time bucket. Pure functions over stored reports, so the rules are
//! unit-tested without a database.

use chrono::{DateTime, Utc};
use flotilla_protocol::agent::HealthWindow;
use flotilla_protocol::devices::{CohortHealthPoint, HealthPoint};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use uuid::Uuid;

use super::placement::{ratio, Weighted};
use crate::routes::rfc3339;

/// The health window of a stored report, if it carried one.
fn window(report: &serde_json::Value) -> Option<HealthWindow> {
    let health = report.get("health")?;
    serde_json::from_value(health.clone()).ok()
}

/// One device's points, oldest first, from its reports in any order.
pub fn device_points(reports: &[(DateTime<Utc>, serde_json::Value)]) -> Vec<HealthPoint> {
    let mut reports: Vec<_> = reports.iter().collect();
    reports.sort_by_key(|(at, _)| *at);
    let mut points = Vec::new();
    for (at, report) in reports {
        let Some(w) = window(report) else { continue };
        for m in &w.models {
            points.push(HealthPoint {
                at: rfc3339(*at),
                start: w.start,
                end: w.end,
                model: m.model.clone(),
                version: m.version.clone(),
                inference_count: m.inference_count,
                error_count: m.error_count,
                latency_ms: m.latency_ms,
                memory_rss_bytes: w.memory_rss_bytes,
            });
        }
    }
    points
}

#[derive(Default)]
struct Bucket {
    devices: BTreeSet<Uuid>,
    inferences: u64,
    errors: u64,
    latency: Weighted,
}

/// A cohort's points: the windows that `members` reported since `since`, summed per bucket of
/// `bucket_secs` (by the time the server received them), model and version, oldest first.
pub fn cohort_points(
    reports: &[(Uuid, DateTime<Utc>, serde_json::Value)],
    members: &HashSet<Uuid>,
    model: Option<&str>,
    since: DateTime<Utc>,
    bucket_secs: u64,
) -> Vec<CohortHealthPoint> {
    let width = bucket_secs.max(1);
    let mut buckets: BTreeMap<(u64, String, String), Bucket> = BTreeMap::new();
    for (device, at, report) in reports {
        if *at < since || !members.contains(device) {
            continue;
        }
        let Some(w) = window(report) else { continue };
        let secs = u64::try_from(at.timestamp()).unwrap_or(0);
        let start = secs - secs % width;
        for m in w
            .models
            .iter()
            .filter(|m| model.is_none_or(|n| m.model == n))
        {
            let b = buckets
                .entry((start, m.model.clone(), m.version.clone()))
                .or_default();
            b.devices.insert(*device);
            b.inferences += m.inference_count;
            b.errors += m.error_count;
            b.latency.add(&m.latency_ms, m.inference_count);
        }
    }
    buckets
        .into_iter()
        .map(|((start, model, version), b)| CohortHealthPoint {
            start,
            model,
            version,
            devices: b.devices.len() as u64,
            inference_count: b.inferences,
            error_count: b.errors,
            error_rate: ratio(b.errors, b.inferences),
            latency_ms: b.latency.mean(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn report(version: &str, n: u64, errors: u64, p95: f64) -> serde_json::Value {
        json!({"report_seq": 1, "created_at": 0, "applied_sequence": 1, "slots": [],
               "health": {"start": 100, "end": 160, "memory_rss_bytes": 1000, "models": [
                   {"model": "fraud", "version": version, "inference_count": n,
                    "error_count": errors,
                    "latency_ms": {"p50": p95 / 2.0, "p95": p95, "p99": p95 * 2.0}},
                   {"model": "other", "version": "1.0.0", "inference_count": 1,
                    "error_count": 0, "latency_ms": {"p50": 1.0, "p95": 1.0, "p99": 1.0}}]}})
    }

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).unwrap()
    }

    #[test]
    fn device_points_are_oldest_first_one_per_model() {
        let reports = vec![
            (at(2000), report("1.1.0", 10, 1, 4.0)),
            (at(1000), report("1.0.0", 20, 0, 2.0)),
            (at(1500), json!({"report_seq": 2, "slots": []})),
        ];
        let points = device_points(&reports);
        assert_eq!(points.len(), 4);
        assert_eq!(points[0].version, "1.0.0");
        assert_eq!(points[0].at, "1970-01-01T00:16:40Z");
        assert_eq!(points[2].version, "1.1.0");
        assert_eq!(points[2].error_count, 1);
        assert_eq!(points[2].memory_rss_bytes, Some(1000));
    }

    #[test]
    fn cohort_points_sum_members_per_bucket_weighting_latency_by_traffic() {
        let (a, b, outsider) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let members: HashSet<Uuid> = [a, b].into();
        let reports = vec![
            (a, at(1010), report("1.0.0", 30, 0, 2.0)),
            (b, at(1015), report("1.0.0", 10, 2, 6.0)),
            (outsider, at(1020), report("1.0.0", 1000, 1000, 100.0)),
            (a, at(1070), report("1.0.0", 5, 0, 1.0)),
            (a, at(900), report("1.0.0", 5, 5, 1.0)),
        ];
        let points = cohort_points(&reports, &members, Some("fraud"), at(1000), 60);
        assert_eq!(points.len(), 2, "{points:?}");
        let first = &points[0];
        assert_eq!((first.start, first.devices), (960, 2));
        assert_eq!((first.inference_count, first.error_count), (40, 2));
        assert!((first.error_rate - 0.05).abs() < 1e-9);
        // (30 × 2 + 10 × 6) / 40
        assert!((first.latency_ms.unwrap().p95 - 3.0).abs() < 1e-9);
        assert_eq!((points[1].start, points[1].devices), (1020, 1));
        // Without a model filter, every model shows.
        assert_eq!(
            cohort_points(&reports, &members, None, at(1000), 60).len(),
            4
        );
    }
}
