//! Staged, health-gated rollouts: validation, sticky cohorts, what each device runs, the gates
//! measured from device reports, and every transition (engine and operator alike).
//!
//! A rollout overlays the deployments. While it is open (running, waiting for approval or
//! paused), a device that matches its selector and whose bucket is below `bucket_limit` runs the
//! target version, or carries it as a shadow in a shadow stage. Rolling back or aborting sets the
//! limit to 0, so every device returns to what its deployment says; completing makes the target
//! the selector's deployment in the same transaction.

use chrono::{DateTime, Duration, Utc};
use flotilla_protocol::agent::{HealthWindow, ModelSlot, ShadowSlot, SlotState, SlotStatus};
use flotilla_protocol::rollouts::{
    CreateRolloutRequest, DeviceCounts, GateValue, OnFailure, RolloutInfo, RolloutPolicy,
    RolloutState, Stage, Transition,
};
use flotilla_protocol::ErrorCode;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use uuid::Uuid;

use super::fleet::{matches, parse_selector, selector_text, Selector};
use super::names::parse_label_name;
use super::DomainError;
use crate::store::{
    DeploymentRecord, DeviceRecord, PolicyRecord, RolloutEventRecord, RolloutRecord, Store,
    VersionRecord,
};

/// Buckets per rollout: a stage's share is a bucket limit out of this.
pub const BUCKETS: u32 = 10_000;
/// Most stages a policy may have.
const MAX_STAGES: usize = 20;
/// Longest bake time and activation deadline accepted (30 days).
const MAX_SECS: u64 = 30 * 24 * 3600;
/// The actor name of the engine's own transitions.
pub const ENGINE: &str = "engine";

/// A device's sticky bucket in a rollout: the first 4 bytes of
/// `sha256(rollout_id ‖ device_id)` (both as their 16 raw bytes), big-endian, mod 10000.
pub fn bucket(rollout_id: Uuid, device_id: Uuid) -> u32 {
    let mut h = Sha256::new();
    h.update(rollout_id.as_bytes());
    h.update(device_id.as_bytes());
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % BUCKETS
}

fn invalid(message: impl Into<String>) -> DomainError {
    DomainError::invalid(ErrorCode::InvalidArgument, message)
}

/// Checks a policy: 1–20 stages that grow, each with a share in range, gates within their
/// ranges, a deadline and sampling that make sense.
pub fn validate_policy(p: &RolloutPolicy) -> Result<(), DomainError> {
    if p.stages.is_empty() || p.stages.len() > MAX_STAGES {
        return Err(invalid(format!(
            "a policy needs 1 to {MAX_STAGES} stages, not {}",
            p.stages.len()
        )));
    }
    if p.activation_deadline_secs == 0 || p.activation_deadline_secs > MAX_SECS {
        return Err(invalid(format!(
            "activation_deadline_secs must be between 1 and {MAX_SECS}"
        )));
    }
    if !(p.shadow_sample_rate > 0.0 && p.shadow_sample_rate <= 1.0) {
        return Err(invalid("shadow_sample_rate must be in (0, 1]"));
    }
    if !(p.shadow_tolerance.is_finite() && p.shadow_tolerance >= 0.0) {
        return Err(invalid("shadow_tolerance must be a finite number ≥ 0"));
    }
    // Stages grow: percent stages by percent, count stages by count; a shadow stage may repeat
    // the next live stage's share (same devices, first in shadow, then live).
    let mut last_percent: Option<f64> = None;
    let mut last_count: Option<u64> = None;
    let mut last_shadow = false;
    for (i, s) in p.stages.iter().enumerate() {
        let n = i + 1;
        match (s.percent, s.devices) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(invalid(format!(
                    "stage {n}: give exactly one of `percent` and `devices`"
                )))
            }
            (Some(pc), None) => {
                if !(pc.is_finite() && pc > 0.0 && pc <= 100.0) {
                    return Err(invalid(format!(
                        "stage {n}: percent must be above 0 and at most 100, not {pc}"
                    )));
                }
                if let Some(prev) = last_percent {
                    if pc < prev || (pc == prev && !last_shadow) {
                        return Err(invalid(format!(
                            "stage {n}: stages must grow ({pc}% after {prev}%)"
                        )));
                    }
                }
                if last_count.is_some() {
                    return Err(invalid(format!(
                        "stage {n}: do not mix `percent` and `devices` stages"
                    )));
                }
                last_percent = Some(pc);
            }
            (None, Some(c)) => {
                if c == 0 {
                    return Err(invalid(format!("stage {n}: devices must be at least 1")));
                }
                if let Some(prev) = last_count {
                    if c < prev || (c == prev && !last_shadow) {
                        return Err(invalid(format!(
                            "stage {n}: stages must grow ({c} devices after {prev})"
                        )));
                    }
                }
                if last_percent.is_some() {
                    return Err(invalid(format!(
                        "stage {n}: do not mix `percent` and `devices` stages"
                    )));
                }
                last_count = Some(c);
            }
        }
        if s.shadow && n == p.stages.len() {
            return Err(invalid(format!(
                "stage {n}: the last stage cannot be a shadow stage (the candidate would never go live)"
            )));
        }
        if s.bake_secs > MAX_SECS {
            return Err(invalid(format!(
                "stage {n}: bake_secs must be at most {MAX_SECS}"
            )));
        }
        let g = &s.gates;
        for (name, v) in [
            ("max_failed_ratio", g.max_failed_ratio),
            ("max_error_rate", g.max_error_rate),
            ("min_shadow_agreement", g.min_shadow_agreement),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                    return Err(invalid(format!(
                        "stage {n}: {name} must be between 0 and 1, not {v}"
                    )));
                }
            }
        }
        if let Some(v) = g.max_p95_latency_ratio {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(format!(
                    "stage {n}: max_p95_latency_ratio must be a positive number"
                )));
            }
        }
        if g.min_shadow_agreement.is_some() && !s.shadow {
            return Err(invalid(format!(
                "stage {n}: min_shadow_agreement applies only to a shadow stage"
            )));
        }
        last_shadow = s.shadow;
    }
    Ok(())
}

/// The bucket limit of `stage` given the buckets of the devices matching the selector now.
pub fn stage_limit(stage: &Stage, buckets: &mut [u32]) -> u32 {
    match (stage.percent, stage.devices) {
        (Some(pc), _) => ((pc * f64::from(BUCKETS) / 100.0).round() as u32).min(BUCKETS),
        (None, Some(count)) => {
            buckets.sort_unstable();
            let count = usize::try_from(count).unwrap_or(usize::MAX);
            if count >= buckets.len() {
                BUCKETS
            } else if count == 0 {
                0
            } else {
                buckets[count - 1] + 1
            }
        }
        (None, None) => 0,
    }
}

/// Whether two selectors can match one device: unless they disagree on some key's value.
pub fn selectors_overlap(a: &Selector, b: &Selector) -> bool {
    a.iter().all(|(k, v)| b.get(k).is_none_or(|w| w == v))
}

fn eligible(device: &DeviceRecord, selector: &Selector) -> bool {
    device.status == "active" && matches(selector, &device.labels)
}

fn limit_for(r: &RolloutRecord, stage: usize, devices: &[DeviceRecord]) -> u32 {
    let mut buckets: Vec<u32> = devices
        .iter()
        .filter(|d| eligible(d, &r.selector))
        .map(|d| bucket(r.id, d.id))
        .collect();
    r.policy
        .stages
        .get(stage)
        .map_or(0, |s| stage_limit(s, &mut buckets))
}

async fn target_version(
    store: &dyn Store,
    model: &str,
    version: &str,
) -> Result<VersionRecord, DomainError> {
    let record = super::fleet::find_version(store, model, version).await?;
    if record.yanked_at.is_some() {
        return Err(DomainError::conflict(
            ErrorCode::VersionYanked,
            format!(
                "{}@{} is yanked and cannot be rolled out",
                record.model_name, record.version
            ),
        ));
    }
    Ok(record)
}

/// Creates a rollout and opens its first stage.
pub async fn create(
    store: &dyn Store,
    req: &CreateRolloutRequest,
    who: &str,
    now: DateTime<Utc>,
) -> Result<RolloutRecord, DomainError> {
    let (policy, policy_name) = match (&req.policy, &req.policy_name) {
        (Some(p), None) => (p.clone(), None),
        (None, Some(name)) => {
            let saved = store.get_rollout_policy(name).await?.ok_or_else(|| {
                DomainError::not_found(format!("no saved rollout policy is named `{name}`"))
            })?;
            (saved.policy, Some(saved.name))
        }
        _ => {
            return Err(invalid(
                "give exactly one of `policy` (inline) and `policy_name` (a saved policy)",
            ))
        }
    };
    validate_policy(&policy)?;
    let version = target_version(store, &req.model, &req.version).await?;
    let selector = parse_selector(&req.selector)?;
    for other in store.list_open_rollouts().await? {
        if other.model_id == version.model_id && selectors_overlap(&other.selector, &selector) {
            return Err(DomainError::conflict(
                ErrorCode::RolloutOverlap,
                format!(
                    "rollout {} ({}@{}, selector `{}`, {}) already targets devices this one would",
                    other.id,
                    other.model_name,
                    other.version,
                    other.selector_text,
                    other.state.as_str()
                ),
            ));
        }
    }
    let mut r = RolloutRecord {
        id: Uuid::new_v4(),
        model_id: version.model_id,
        model_name: version.model_name.clone(),
        version: version.version.clone(),
        selector_text: selector_text(&selector),
        selector,
        shadow: policy.stages[0].shadow,
        policy,
        policy_name,
        state: RolloutState::Running,
        stage: 0,
        bucket_limit: 0,
        stage_started_at: now,
        revision: 1,
        reason: "created".into(),
        created_by: who.to_owned(),
        created_at: now,
        updated_at: now,
    };
    let devices = store.list_devices().await?;
    r.bucket_limit = limit_for(&r, 0, &devices);
    r.reason = format!("created; stage 1 of {} opened", r.policy.stages.len());
    let event = RolloutEventRecord {
        id: 0,
        rollout_id: r.id,
        at: now,
        actor: who.to_owned(),
        event: "created".into(),
        from_state: None,
        to_state: RolloutState::Running,
        stage: 0,
        reason: r.reason.clone(),
        numbers: serde_json::json!({ "bucket_limit": r.bucket_limit }),
    };
    store.insert_rollout(&r, &event).await?;
    Ok(r)
}

/// A rollout by id, or 404.
pub async fn get(store: &dyn Store, id: &str) -> Result<RolloutRecord, DomainError> {
    let id = Uuid::parse_str(id).map_err(|_| {
        DomainError::invalid(
            ErrorCode::InvalidPath,
            format!("`{id}` is not a rollout id"),
        )
    })?;
    store
        .get_rollout(id)
        .await?
        .ok_or_else(|| DomainError::not_found(format!("rollout {id} not found")))
}

/// Saves (creates or replaces) a named policy after validating it.
pub async fn save_policy(
    store: &dyn Store,
    name: &str,
    policy: &RolloutPolicy,
    who: &str,
    now: DateTime<Utc>,
) -> Result<(PolicyRecord, bool), DomainError> {
    let name = parse_label_name("policy name", name)?;
    validate_policy(policy)?;
    let record = PolicyRecord {
        name,
        policy: policy.clone(),
        updated_by: who.to_owned(),
        updated_at: now,
    };
    let created = store.put_rollout_policy(&record).await?;
    Ok((record, created))
}

/// Applies the open rollouts to a device's slots: the target version (or a shadow of it) for
/// devices in the current cohort. `versions` caches each rollout's target version.
pub fn overlay(
    slots: &mut Vec<ModelSlot>,
    device: &DeviceRecord,
    rollouts: &[(RolloutRecord, VersionRecord)],
) {
    for (r, v) in rollouts {
        if !r.state.is_open()
            || !eligible(device, &r.selector)
            || bucket(r.id, device.id) >= r.bucket_limit
        {
            continue;
        }
        let existing = slots.iter_mut().find(|s| s.model == r.model_name);
        if r.shadow {
            // A shadow runs beside an active version; with none there is nothing to compare.
            if let Some(slot) = existing {
                if slot.version != v.version {
                    slot.shadow = Some(ShadowSlot {
                        version: v.version.clone(),
                        sha256: v.artifact_sha256.clone(),
                        size: v.artifact_size,
                        url: flotilla_protocol::routes::artifact(&v.artifact_sha256),
                        bundles: v.bundles.clone(),
                        sample_rate: r.policy.shadow_sample_rate,
                        tolerance: r.policy.shadow_tolerance,
                    });
                }
            }
            continue;
        }
        let live = ModelSlot {
            model: r.model_name.clone(),
            version: v.version.clone(),
            sha256: v.artifact_sha256.clone(),
            size: v.artifact_size,
            url: flotilla_protocol::routes::artifact(&v.artifact_sha256),
            bundles: v.bundles.clone(),
            escalation: None,
            shadow: None,
        };
        match existing {
            Some(slot) => {
                let escalation = slot.escalation.take();
                *slot = ModelSlot { escalation, ..live };
            }
            None => {
                slots.push(live);
                slots.sort_by(|a, b| a.model.cmp(&b.model));
            }
        }
    }
}

/// The open rollouts with their target versions, for [`overlay`].
pub async fn open_with_versions(
    store: &dyn Store,
) -> Result<Vec<(RolloutRecord, VersionRecord)>, DomainError> {
    let mut out = Vec::new();
    for r in store.list_open_rollouts().await? {
        if let Some(v) = store.get_version(r.model_id, &r.version).await? {
            out.push((r, v));
        }
    }
    Ok(out)
}

/// What the current stage looks like: devices per state and every gate against its threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct StageView {
    /// Device counts.
    pub devices: DeviceCounts,
    /// Gate values.
    pub gates: Vec<GateValue>,
    /// Versions the selector's devices outside the cohort run, with counts.
    pub previous_versions: BTreeMap<String, u64>,
    /// The minimum bake time has passed.
    pub baked: bool,
}

impl StageView {
    /// The first failed gate, as a reason.
    pub fn breach(&self) -> Option<String> {
        self.gates.iter().find(|g| g.status == "fail").map(|g| {
            let value = g.value.map_or("n/a".into(), |v| format!("{v:.4}"));
            format!("gate {} breached: {value} against {}", g.gate, g.threshold)
        })
    }

    /// Baked, no device pending, and every gate passed.
    pub fn ready(&self) -> bool {
        self.baked && self.devices.pending == 0 && self.gates.iter().all(|g| g.status == "pass")
    }

    /// The numbers recorded with a transition.
    pub fn numbers(&self) -> serde_json::Value {
        serde_json::json!({ "devices": self.devices, "gates": self.gates })
    }
}

#[derive(Default)]
struct Figures {
    inferences: u64,
    errors: u64,
    /// Sum of p95 × inferences, for an inference-weighted mean p95.
    p95_weighted: f64,
    compared: u64,
    agreed: u64,
}

impl Figures {
    fn p95(&self) -> Option<f64> {
        (self.inferences > 0).then(|| self.p95_weighted / self.inferences as f64)
    }

    fn add(&mut self, other: &Figures) {
        self.inferences = self.inferences.saturating_add(other.inferences);
        self.errors = self.errors.saturating_add(other.errors);
        self.p95_weighted += other.p95_weighted;
        self.compared = self.compared.saturating_add(other.compared);
        self.agreed = self.agreed.saturating_add(other.agreed);
    }

    /// These figures scaled down so they weigh as `cap` inferences (ratios are unchanged).
    fn capped(&self, cap: u64) -> Figures {
        if self.inferences <= cap {
            return Figures { ..*self };
        }
        let f = cap as f64 / self.inferences as f64;
        let scale = |v: u64| (v as f64 * f).round() as u64;
        Figures {
            inferences: cap,
            errors: scale(self.errors),
            p95_weighted: self.p95_weighted * f,
            compared: scale(self.compared),
            agreed: scale(self.agreed),
        }
    }

    fn error_rate(&self) -> f64 {
        if self.inferences == 0 {
            if self.errors > 0 {
                1.0
            } else {
                0.0
            }
        } else {
            self.errors as f64 / self.inferences as f64
        }
    }
}

/// How many times the median device's inference count one device may weigh in a gate.
pub const DEVICE_WEIGHT_CAP: u64 = 4;

/// Combines per-device figures so that no single device decides a gate: each device weighs at
/// most [`DEVICE_WEIGHT_CAP`] times the median device's inference count (one device claiming
/// a huge, clean window cannot carry the others), and when at least three devices reported,
/// the one with the highest error rate is left out of the candidate's figures (one device
/// cannot sink the others). A bad
/// version fails on more than one device, so it is still caught.
fn combine(per_device: &HashMap<Uuid, Figures>, trim_worst: bool) -> Figures {
    let mut counts: Vec<u64> = per_device.values().map(|f| f.inferences).collect();
    counts.sort_unstable();
    let median = counts
        .get(counts.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0);
    let cap = median.saturating_mul(DEVICE_WEIGHT_CAP).max(1);
    let mut devices: Vec<(&Uuid, Figures)> = per_device
        .iter()
        .map(|(id, f)| (id, f.capped(cap)))
        .collect();
    // Deterministic whatever the map's order: worst error rate first, then by id.
    devices.sort_by(|(a_id, a), (b_id, b)| {
        b.error_rate()
            .total_cmp(&a.error_rate())
            .then_with(|| a_id.cmp(b_id))
    });
    let skip = usize::from(trim_worst && devices.len() >= 3);
    let mut total = Figures::default();
    for (_, f) in devices.iter().skip(skip) {
        total.add(f);
    }
    total
}

fn slot_of(device: &DeviceRecord, model: &str) -> Option<SlotStatus> {
    let slots: Vec<SlotStatus> = serde_json::from_value(device.slot_status.clone()).ok()?;
    slots.into_iter().find(|s| s.model == model)
}

fn gate(name: &str, value: Option<f64>, threshold: f64, fails: bool, pending: bool) -> GateValue {
    let status = if pending {
        "pending"
    } else if fails {
        "fail"
    } else {
        "pass"
    };
    GateValue {
        gate: name.to_owned(),
        value,
        threshold,
        status: status.to_owned(),
    }
}

/// Measures the current stage of `r` from the devices and the reports received since it opened.
pub fn measure(
    r: &RolloutRecord,
    devices: &[DeviceRecord],
    reports: &[(Uuid, DateTime<Utc>, serde_json::Value)],
    now: DateTime<Utc>,
) -> StageView {
    let stage = r
        .policy
        .stages
        .get(r.stage as usize)
        .cloned()
        .unwrap_or(Stage {
            percent: Some(100.0),
            devices: None,
            bake_secs: 0,
            gates: Default::default(),
            manual_approval: false,
            shadow: false,
        });
    let deadline_passed = now
        >= r.stage_started_at
            + Duration::seconds(i64::try_from(r.policy.activation_deadline_secs).unwrap_or(0));
    let mut counts = DeviceCounts::default();
    let mut previous_versions = BTreeMap::new();
    let mut cohort = HashSet::new();
    let mut others = HashSet::new();
    for d in devices.iter().filter(|d| eligible(d, &r.selector)) {
        counts.matching += 1;
        let status = slot_of(d, &r.model_name);
        if bucket(r.id, d.id) >= r.bucket_limit {
            others.insert(d.id);
            if let Some(v) = status.as_ref().and_then(|s| s.active_version.clone()) {
                *previous_versions.entry(v).or_insert(0) += 1;
            }
            continue;
        }
        cohort.insert(d.id);
        counts.in_stage += 1;
        let (active, failed) = match (&status, r.shadow) {
            (Some(s), false) => (
                s.state == SlotState::Active
                    && s.active_version.as_deref().unwrap_or(&s.version) == r.version,
                s.state == SlotState::Failed && s.version == r.version,
            ),
            (Some(s), true) => match &s.shadow {
                Some(sh) if sh.version == r.version => {
                    (sh.state == SlotState::Active, sh.state == SlotState::Failed)
                }
                _ => (false, false),
            },
            (None, _) => (false, false),
        };
        if active {
            counts.active += 1;
        } else if failed || deadline_passed {
            counts.failed += 1;
        } else {
            counts.pending += 1;
        }
    }
    let mut candidates: HashMap<Uuid, Figures> = HashMap::new();
    let mut baselines: HashMap<Uuid, Figures> = HashMap::new();
    let mut reporting = HashSet::new();
    for (device, at, report) in reports {
        if *at < r.stage_started_at {
            continue;
        }
        let in_cohort = cohort.contains(device);
        if !in_cohort && !others.contains(device) {
            continue;
        }
        let Some(window) = report
            .get("health")
            .and_then(|h| serde_json::from_value::<HealthWindow>(h.clone()).ok())
        else {
            continue;
        };
        let candidate = candidates.entry(*device).or_default();
        let baseline = baselines.entry(*device).or_default();
        for m in window.models.iter().filter(|m| m.model == r.model_name) {
            if in_cohort && r.shadow {
                if let Some(sh) = m.shadow.as_ref().filter(|s| s.version == r.version) {
                    reporting.insert(*device);
                    candidate.compared += sh.compared;
                    candidate.agreed += sh.agreed;
                    candidate.errors += sh.errors;
                    let runs = sh.compared + sh.errors;
                    candidate.inferences += runs;
                    if let Some(l) = &sh.latency_ms {
                        candidate.p95_weighted += l.p95 * runs as f64;
                    }
                }
                if m.version != r.version {
                    baseline.inferences += m.inference_count;
                    baseline.p95_weighted += m.latency_ms.p95 * m.inference_count as f64;
                }
            } else if in_cohort && m.version == r.version {
                reporting.insert(*device);
                candidate.inferences += m.inference_count;
                candidate.errors += m.error_count;
                candidate.p95_weighted += m.latency_ms.p95 * m.inference_count as f64;
            } else if !in_cohort && m.version != r.version {
                baseline.inferences += m.inference_count;
                baseline.p95_weighted += m.latency_ms.p95 * m.inference_count as f64;
            }
        }
    }
    candidates.retain(|_, f| f.inferences > 0 || f.errors > 0);
    baselines.retain(|_, f| f.inferences > 0);
    let candidate = combine(&candidates, true);
    // The baseline is only capped: its errors are not judged.
    let baseline = combine(&baselines, false);
    counts.reporting = reporting.len() as u64;
    let baked =
        now >= r.stage_started_at + Duration::seconds(i64::try_from(stage.bake_secs).unwrap_or(0));
    let g = &stage.gates;
    let mut gates = Vec::new();
    if let Some(min) = g.min_devices_reporting {
        let v = counts.reporting;
        // Too few reporting is a reason to wait, not a breach: missing devices become failures
        // at their deadline, which the failed-ratio gate judges.
        gates.push(gate(
            "min_devices_reporting",
            Some(v as f64),
            min as f64,
            false,
            v < min,
        ));
    }
    if let Some(max) = g.max_failed_ratio {
        let v = (counts.in_stage > 0).then(|| counts.failed as f64 / counts.in_stage as f64);
        gates.push(gate(
            "max_failed_ratio",
            v,
            max,
            v.is_some_and(|v| v > max),
            false,
        ));
    }
    // Behaviour gates wait for the candidate's first answers in this stage: a stage must not
    // pass on no evidence. A stage with no device has nothing to measure and does not wait.
    let no_answers = counts.in_stage > 0 && candidate.inferences == 0 && candidate.errors == 0;
    if let Some(max) = g.max_error_rate {
        let v = match (candidate.inferences, candidate.errors) {
            (0, 0) => None,
            (0, _) => Some(1.0),
            (n, e) => Some((e as f64 / n as f64).min(1.0)),
        };
        gates.push(gate(
            "max_error_rate",
            v,
            max,
            v.is_some_and(|v| v > max),
            no_answers,
        ));
    }
    if let Some(max) = g.max_p95_latency_ratio {
        let v = match (candidate.p95(), baseline.p95()) {
            (Some(c), Some(b)) if b > 0.0 => Some(c / b),
            _ => None,
        };
        // With no old-version devices left to compare with, the ratio is not checked.
        gates.push(gate(
            "max_p95_latency_ratio",
            v,
            max,
            v.is_some_and(|v| v > max),
            no_answers,
        ));
    }
    if let Some(min) = g.min_shadow_agreement {
        let v =
            (candidate.compared > 0).then(|| candidate.agreed as f64 / candidate.compared as f64);
        // Agreement is judged once the stage has baked: early answers are too few to judge.
        let pending = v.is_none() || (!baked && v.is_some_and(|v| v < min));
        gates.push(gate(
            "min_shadow_agreement",
            v,
            min,
            baked && v.is_some_and(|v| v < min),
            pending,
        ));
    }
    StageView {
        devices: counts,
        gates,
        previous_versions,
        baked,
    }
}

/// The current stage of `r`, measured now.
pub async fn view(
    store: &dyn Store,
    r: &RolloutRecord,
    now: DateTime<Utc>,
) -> Result<StageView, DomainError> {
    let devices = store.list_devices().await?;
    let reports = store.reports_since(r.stage_started_at).await?;
    Ok(measure(r, &devices, &reports, now))
}

/// A transition to record: the rollout after it, the event, and (on completion) the
/// deployments that make the target what the selector's devices run from then on.
#[derive(Debug, Clone)]
pub struct Change {
    /// The rollout after the transition.
    pub rollout: RolloutRecord,
    /// What is recorded.
    pub event: RolloutEventRecord,
    /// The deployment a completed rollout leaves behind.
    pub baseline: Vec<DeploymentRecord>,
}

fn change(
    before: &RolloutRecord,
    mut after: RolloutRecord,
    actor: &str,
    event: &str,
    reason: String,
    numbers: serde_json::Value,
    now: DateTime<Utc>,
) -> Change {
    after.revision = before.revision + 1;
    after.updated_at = now;
    after.reason = reason.clone();
    let baseline: Vec<DeploymentRecord> = (after.state == RolloutState::Completed)
        .then(|| DeploymentRecord {
            id: Uuid::new_v4(),
            model_id: after.model_id,
            model_name: after.model_name.clone(),
            version: after.version.clone(),
            selector: after.selector.clone(),
            selector_text: after.selector_text.clone(),
            created_by: format!("rollout {}", after.id),
            created_at: now,
            updated_at: now,
            escalation: None,
        })
        .into_iter()
        .collect();
    Change {
        event: RolloutEventRecord {
            id: 0,
            rollout_id: after.id,
            at: now,
            actor: actor.to_owned(),
            event: event.to_owned(),
            from_state: Some(before.state),
            to_state: after.state,
            stage: after.stage,
            reason,
            numbers,
        },
        rollout: after,
        baseline,
    }
}

/// Moves `r` to its next stage, or completes it after the last.
fn advance(
    r: &RolloutRecord,
    devices: &[DeviceRecord],
    actor: &str,
    event: &str,
    why: &str,
    numbers: serde_json::Value,
    now: DateTime<Utc>,
) -> Change {
    let next = r.stage as usize + 1;
    let mut after = r.clone();
    if next >= r.policy.stages.len() {
        after.state = RolloutState::Completed;
        after.bucket_limit = BUCKETS;
        after.shadow = false;
        let reason = format!(
            "{why}; every stage passed: {}@{} is now the deployment for `{}`",
            r.model_name,
            r.version,
            if r.selector_text.is_empty() {
                "every device"
            } else {
                &r.selector_text
            }
        );
        return change(r, after, actor, "completed", reason, numbers, now);
    }
    after.state = RolloutState::Running;
    after.stage = u32::try_from(next).unwrap_or(u32::MAX);
    // A stage never shrinks the cohort, even if devices left the selector since.
    after.bucket_limit = limit_for(r, next, devices).max(r.bucket_limit);
    after.shadow = r.policy.stages[next].shadow;
    after.stage_started_at = now;
    let reason = format!(
        "{why}; stage {} of {} opened{}",
        next + 1,
        r.policy.stages.len(),
        if after.shadow { " (shadow)" } else { "" }
    );
    change(r, after, actor, event, reason, numbers, now)
}

fn back_out(
    r: &RolloutRecord,
    state: RolloutState,
    actor: &str,
    event: &str,
    reason: String,
    numbers: serde_json::Value,
    now: DateTime<Utc>,
) -> Change {
    let mut after = r.clone();
    after.state = state;
    after.bucket_limit = 0;
    after.shadow = false;
    change(r, after, actor, event, reason, numbers, now)
}

/// What the engine does with a running rollout now, if anything.
pub fn decide(
    r: &RolloutRecord,
    view: &StageView,
    devices: &[DeviceRecord],
    now: DateTime<Utc>,
) -> Option<Change> {
    // A stage waiting for approval is still watched: a breach then acts as while running.
    if !matches!(
        r.state,
        RolloutState::Running | RolloutState::WaitingApproval
    ) {
        return None;
    }
    let stage_no = r.stage + 1;
    if let Some(breach) = view.breach() {
        return Some(match r.policy.on_failure {
            OnFailure::Rollback => back_out(
                r,
                RolloutState::RolledBack,
                ENGINE,
                "rolled_back",
                format!("stage {stage_no}: {breach}; every device returns to its previous version"),
                view.numbers(),
                now,
            ),
            OnFailure::Pause => {
                let mut after = r.clone();
                after.state = RolloutState::Paused;
                change(
                    r,
                    after,
                    ENGINE,
                    "paused",
                    format!("stage {stage_no}: {breach}; paused for an operator"),
                    view.numbers(),
                    now,
                )
            }
        });
    }
    if r.state != RolloutState::Running || !view.ready() {
        return None;
    }
    let why = format!("stage {stage_no} passed its gates");
    if r.policy.stages[r.stage as usize].manual_approval {
        let mut after = r.clone();
        after.state = RolloutState::WaitingApproval;
        return Some(change(
            r,
            after,
            ENGINE,
            "waiting_approval",
            format!("{why}; waiting for an operator's approval"),
            view.numbers(),
            now,
        ));
    }
    Some(advance(
        r,
        devices,
        ENGINE,
        "advanced",
        &why,
        view.numbers(),
        now,
    ))
}

/// An operator's action on a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop where it is.
    Pause,
    /// Go on after a pause.
    Resume,
    /// Let a stage waiting for approval advance.
    Approve,
    /// Send every device back.
    Abort,
    /// Skip the remaining stages: the target becomes the deployment now.
    Promote,
}

impl Action {
    /// Parses the action path segment.
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "pause" => Action::Pause,
            "resume" => Action::Resume,
            "approve" => Action::Approve,
            "abort" => Action::Abort,
            "promote" => Action::Promote,
            _ => return None,
        })
    }
}

/// Applies an operator's action: checks it fits the state and computes the transition.
pub fn act(
    r: &RolloutRecord,
    action: Action,
    actor: &str,
    reason: Option<&str>,
    view: &StageView,
    devices: &[DeviceRecord],
    now: DateTime<Utc>,
) -> Result<Change, DomainError> {
    use RolloutState::*;
    let why = |default: &str| {
        let by = format!("{default} by {actor}");
        match reason.map(str::trim).filter(|s| !s.is_empty()) {
            Some(r) => format!("{by}: {r}"),
            None => by,
        }
    };
    let refuse = |what: &str| {
        Err(DomainError::conflict(
            ErrorCode::InvalidRolloutState,
            format!("cannot {what} a rollout that is {}", r.state.as_str()),
        ))
    };
    let numbers = view.numbers();
    Ok(match (action, r.state) {
        (Action::Pause, Running | WaitingApproval) => {
            let mut after = r.clone();
            after.state = Paused;
            change(r, after, actor, "paused", why("paused"), numbers, now)
        }
        (Action::Pause, _) => return refuse("pause"),
        (Action::Resume, Paused) => {
            let mut after = r.clone();
            after.state = Running;
            change(r, after, actor, "resumed", why("resumed"), numbers, now)
        }
        (Action::Resume, _) => return refuse("resume"),
        (Action::Approve, WaitingApproval) => advance(
            r,
            devices,
            actor,
            "approved",
            &why(&format!("stage {} approved", r.stage + 1)),
            numbers,
            now,
        ),
        (Action::Approve, _) => return refuse("approve"),
        (Action::Abort, s) if s.is_open() => back_out(
            r,
            Aborted,
            actor,
            "aborted",
            format!(
                "{}; every device returns to its previous version",
                why("aborted")
            ),
            numbers,
            now,
        ),
        (Action::Abort, _) => return refuse("abort"),
        (Action::Promote, s) if s.is_open() => {
            let mut last = r.clone();
            last.stage = u32::try_from(r.policy.stages.len().saturating_sub(1)).unwrap_or(0);
            let mut c = advance(
                &last,
                devices,
                actor,
                "promoted",
                &why("promoted"),
                numbers,
                now,
            );
            c.event.event = "promoted".into();
            c.event.from_state = Some(r.state);
            c.rollout.revision = r.revision + 1;
            c
        }
        (Action::Promote, _) => return refuse("promote"),
    })
}

/// Writes a change; false when another writer got there first. A completing rollout also moves
/// the more specific deployments of its model inside its selector (a hybrid subgroup, say) to
/// the target, keeping their escalation policies: every device the rollout reached keeps the
/// target.
pub async fn commit(
    store: &dyn Store,
    before: &RolloutRecord,
    c: &mut Change,
) -> Result<bool, DomainError> {
    if c.rollout.state == RolloutState::Completed {
        let r = &c.rollout;
        for d in store.list_deployments().await? {
            let inside = d.model_id == r.model_id
                && d.selector_text != r.selector_text
                && matches(&r.selector, &d.selector);
            if inside {
                c.baseline.push(DeploymentRecord {
                    version: r.version.clone(),
                    updated_at: c.event.at,
                    created_by: format!("rollout {}", r.id),
                    ..d
                });
            }
        }
    }
    Ok(store
        .transition_rollout(&c.rollout, before.revision, &c.event, &c.baseline)
        .await?)
}

/// The API view of a transition.
pub fn transition_info(e: &RolloutEventRecord) -> Transition {
    Transition {
        at: e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        actor: e.actor.clone(),
        event: e.event.clone(),
        from_state: e.from_state,
        to_state: e.to_state,
        stage: e.stage,
        reason: e.reason.clone(),
        numbers: e.numbers.clone(),
    }
}

/// The API view of a rollout; the live figures and history when given.
pub fn info(
    r: &RolloutRecord,
    view: Option<&StageView>,
    history: &[RolloutEventRecord],
) -> RolloutInfo {
    RolloutInfo {
        id: r.id.to_string(),
        model: r.model_name.clone(),
        version: r.version.clone(),
        selector: r.selector_text.clone(),
        policy: r.policy.clone(),
        policy_name: r.policy_name.clone(),
        state: r.state,
        stage: r.stage,
        stage_started_at: r
            .stage_started_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        created_by: r.created_by.clone(),
        created_at: r
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        updated_at: r
            .updated_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        reason: r.reason.clone(),
        devices: view.map(|v| v.devices.clone()).unwrap_or_default(),
        gates: view.map(|v| v.gates.clone()).unwrap_or_default(),
        history: history.iter().map(transition_info).collect(),
        previous_versions: view
            .map(|v| v.previous_versions.clone())
            .unwrap_or_default(),
    }
}

/// One engine pass over every running (or approval-waiting) rollout: measures each and commits what [`decide`]
/// says. Returns the changes committed (for notifications and webhooks).
pub async fn evaluate_all(
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<Vec<Change>, DomainError> {
    let open = store.list_open_rollouts().await?;
    let running: Vec<_> = open
        .into_iter()
        .filter(|r| r.state != RolloutState::Paused)
        .collect();
    if running.is_empty() {
        return Ok(Vec::new());
    }
    let devices = store.list_devices().await?;
    let since = running
        .iter()
        .map(|r| r.stage_started_at)
        .min()
        .unwrap_or(now);
    let reports = store.reports_since(since).await?;
    let mut done = Vec::new();
    for r in &running {
        let view = measure(r, &devices, &reports, now);
        if let Some(mut c) = decide(r, &view, &devices, now) {
            if commit(store, r, &mut c).await? {
                done.push(c);
            }
        }
    }
    Ok(done)
}
