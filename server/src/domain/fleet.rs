//! Devices, enrollment, deployments and each device's signed desired state.

use chrono::{DateTime, Duration, Utc};
use flotilla_protocol::agent::{
    sign_desired_state, DesiredState, EnrollRequest, EscalationPolicy, ModelSlot,
    SignedDesiredState,
};
use flotilla_protocol::devices::{CreateEnrollmentTokenRequest, DevicePublicKey};
use flotilla_protocol::labels;
use flotilla_protocol::signing::SigningKey;
use flotilla_protocol::ErrorCode;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

use super::names::{parse_label_name, parse_version, ModelName};
use super::DomainError;
use crate::auth;
use crate::store::{
    DeploymentRecord, DeviceRecord, EnrollmentTokenRecord, RolloutRecord, Store, StoreError,
    VersionRecord,
};

/// Prefix of enrollment token secrets.
pub const ENROLLMENT_PREFIX: &str = "fle_";
/// Prefix of device credentials.
pub const DEVICE_PREFIX: &str = "fld_";
/// How long a signed desired state stays valid.
const STATE_LIFETIME_DAYS: i64 = 7;
/// A stored state is re-signed when it has less than this left.
const STATE_REFRESH_DAYS: i64 = 6;

/// A label selector: every `key=value` must match.
pub type Selector = BTreeMap<String, String>;

/// Parses `key=value[,key=value...]` by the wire's rule (`flotilla_protocol::labels`);
/// empty selects everything.
pub fn parse_selector(text: &str) -> Result<Selector, DomainError> {
    Ok(labels::Selector::parse(text)?.into_terms())
}

/// Canonical text of a selector (sorted `k=v` joined by commas).
pub fn selector_text(s: &Selector) -> String {
    labels::selector_text(s)
}

/// Whether `labels` satisfy `selector`.
pub fn matches(selector: &Selector, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Checks labels as enrollment and relabelling accept them (the wire's rule).
pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), DomainError> {
    Ok(labels::check_labels(labels)?)
}

fn secret(prefix: &str) -> String {
    auth::generate_secret().replacen(auth::TOKEN_PREFIX, prefix, 1)
}

/// A new device credential (`fld_...`).
pub fn new_device_credential() -> String {
    secret(DEVICE_PREFIX)
}

/// Creates an enrollment token; returns it with its secret.
pub async fn create_enrollment_token(
    store: &dyn Store,
    req: &CreateEnrollmentTokenRequest,
    created_by: &str,
    now: DateTime<Utc>,
) -> Result<(EnrollmentTokenRecord, String), DomainError> {
    let name = parse_label_name("token name", &req.name)?;
    validate_labels(&req.labels)?;
    let allowed_device_labels = parse_allowed_label_keys(&req.allowed_device_labels)?;
    if req.expires_in_secs == 0 || req.expires_in_secs > 366 * 24 * 3600 {
        return Err(DomainError::invalid(
            ErrorCode::InvalidArgument,
            "expires_in_secs must be between 1 and one year",
        ));
    }
    if req.max_uses == 0 || req.max_uses > 100_000 {
        return Err(DomainError::invalid(
            ErrorCode::InvalidArgument,
            "max_uses must be between 1 and 100000",
        ));
    }
    let secret = secret(ENROLLMENT_PREFIX);
    let record = EnrollmentTokenRecord {
        id: Uuid::new_v4(),
        name,
        secret_hash: auth::hash_secret(&secret),
        prefix: auth::shown_prefix(&secret),
        labels: req.labels.clone(),
        allowed_device_labels,
        require_approval: req.require_approval,
        max_uses: req.max_uses,
        uses: 0,
        created_by: created_by.to_owned(),
        created_at: now,
        expires_at: now + Duration::seconds(i64::try_from(req.expires_in_secs).unwrap_or(i64::MAX)),
        revoked_at: None,
    };
    store.insert_enrollment_token(&record).await?;
    Ok((record, secret))
}

/// The label keys a token lets devices set: valid keys, sorted, each once.
fn parse_allowed_label_keys(keys: &[String]) -> Result<Vec<String>, DomainError> {
    if keys.len() > 64 {
        return Err(DomainError::invalid(
            ErrorCode::InvalidArgument,
            "allowed_device_labels may name at most 64 keys",
        ));
    }
    let mut out = std::collections::BTreeSet::new();
    for k in keys {
        let k = parse_label_name("allowed label key", k)?;
        if k.contains('=') || k.contains(',') {
            return Err(DomainError::invalid(
                ErrorCode::InvalidArgument,
                format!("allowed label key `{k}` may not contain '=' or ','"),
            ));
        }
        out.insert(k);
    }
    Ok(out.into_iter().collect())
}

/// The labels a device enrolling with `token` gets: the token's labels, plus those it asked
/// for under keys the token allows. A device is one fleet member, possibly hostile, and labels
/// choose what it runs and which rollout cohort it is in: it must not pick them beyond what
/// the token's creator allowed. A requested key the token sets is overridden, not refused
/// (the agent's own `--label` may name the site the token also names). Any other key refuses
/// the whole enrollment with `label_not_allowed`, naming the key.
pub fn enrollment_labels(
    token: &EnrollmentTokenRecord,
    requested: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, DomainError> {
    let mut labels = BTreeMap::new();
    for (k, v) in requested {
        if token.labels.contains_key(k) {
            continue;
        }
        if !token.allowed_device_labels.iter().any(|a| a == k) {
            return Err(DomainError::invalid(
                ErrorCode::LabelNotAllowed,
                format!("the enrollment token does not let a device set the label `{k}`"),
            ));
        }
        labels.insert(k.clone(), v.clone());
    }
    labels.extend(token.labels.clone());
    Ok(labels)
}

fn unusable_token() -> DomainError {
    DomainError {
        kind: super::Kind::Invalid,
        code: ErrorCode::Unauthorized,
        message: "the enrollment token is unknown, revoked, expired or used up".into(),
        cause: None,
    }
}

/// Enrolls a device with a one-time token. Returns the device and its credential.
///
/// The labels are decided ([`enrollment_labels`]) before the token is used, so a refused
/// device neither exists nor uses up the token. A token's labels and allowed keys never
/// change after it is created, so the decision holds for the use made in the same call.
pub async fn enroll(
    store: &dyn Store,
    req: &EnrollRequest,
    now: DateTime<Utc>,
) -> Result<(DeviceRecord, String), DomainError> {
    let key = DevicePublicKey::parse(&req.device_public_key)?;
    validate_labels(&req.labels)?;
    let token_hash = auth::hash_secret(req.enrollment_token.trim());
    let token = store
        .enrollment_token_by_hash(&token_hash)
        .await?
        .filter(|t| t.revoked_at.is_none() && t.expires_at > now && t.uses < t.max_uses)
        .ok_or_else(unusable_token)?;
    let labels = enrollment_labels(&token, &req.labels)?;
    let id = Uuid::new_v4();
    let name = match &req.name {
        Some(n) => parse_label_name("device name", n)?,
        None => id.to_string(),
    };
    let credential = new_device_credential();
    let device = DeviceRecord {
        id,
        name,
        public_key: key.to_base64(),
        credential_hash: auth::hash_secret(&credential),
        status: "active".into(),
        labels,
        hardware: serde_json::to_value(&req.hardware).unwrap_or_default(),
        agent_version: req.agent_version.chars().take(64).collect(),
        enrollment_token_id: None,
        enrolled_at: now,
        last_seen_at: Some(now),
        desired_sequence: 0,
        desired_hash: None,
        desired_envelope: None,
        desired_expires_at: None,
        applied_sequence: 0,
        last_report_seq: 0,
        slot_status: serde_json::json!([]),
        last_health: None,
        next_credential_hash: None,
        credential_rotation_requested_at: None,
    };
    let device = store
        .enroll_device(&token_hash, &device)
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => unusable_token(),
            other => other.into(),
        })?;
    Ok((device, credential))
}

/// A device by id, or 404.
pub async fn device(store: &dyn Store, id: &str) -> Result<DeviceRecord, DomainError> {
    let id = Uuid::parse_str(id).map_err(|_| {
        DomainError::invalid(ErrorCode::InvalidPath, format!("`{id}` is not a device id"))
    })?;
    store
        .get_device(id)
        .await?
        .ok_or_else(|| DomainError::not_found(format!("device {id} not found")))
}

/// Sets which version of `model` the devices matching `selector` run.
pub async fn deploy(
    store: &dyn Store,
    model: &str,
    version: &str,
    selector: &str,
    escalation: Option<EscalationPolicy>,
    who: &str,
    now: DateTime<Utc>,
) -> Result<(DeploymentRecord, bool), DomainError> {
    if let Some(e) = &escalation {
        check_escalation(store, e).await?;
    }
    let record = find_version(store, model, version).await?;
    if record.yanked_at.is_some() {
        return Err(DomainError::conflict(
            ErrorCode::Conflict,
            format!(
                "{}@{} is yanked and cannot be deployed",
                record.model_name, record.version
            ),
        ));
    }
    let selector = parse_selector(selector)?;
    let deployment = DeploymentRecord {
        id: Uuid::new_v4(),
        model_id: record.model_id,
        model_name: record.model_name,
        version: record.version,
        selector_text: selector_text(&selector),
        selector,
        created_by: who.to_owned(),
        created_at: now,
        updated_at: now,
        escalation,
    };
    let created = store.upsert_deployment(&deployment).await?;
    Ok((deployment, created))
}

/// A version of a model by name, or 404 naming what is missing.
pub async fn find_version(
    store: &dyn Store,
    model: &str,
    version: &str,
) -> Result<VersionRecord, DomainError> {
    let name = ModelName::parse(model)?;
    let m = store
        .get_model(name.as_str())
        .await?
        .ok_or_else(|| DomainError::not_found(format!("model `{name}` not found")))?;
    let v = parse_version(version)?;
    store
        .get_version(m.id, &v.to_string())
        .await?
        .ok_or_else(|| DomainError::not_found(format!("model `{name}` has no version {v}")))
}

/// Longest escalation timeout accepted: past this a device would rather answer itself.
const MAX_ESCALATION_TIMEOUT_MS: u64 = 60_000;

/// An escalation policy must name an output, a finite threshold, a sane timeout and a server
/// model version that exists and is not yanked (or a model with a baseline to fall back on).
async fn check_escalation(store: &dyn Store, e: &EscalationPolicy) -> Result<(), DomainError> {
    let invalid = |m: String| DomainError::invalid(ErrorCode::InvalidArgument, m);
    if e.output.trim().is_empty() {
        return Err(invalid(
            "escalation.output must name the output tensor that holds the confidence".into(),
        ));
    }
    // A confidence lies in [0, 1]; agents ignore a policy outside it.
    if !(0.0..=1.0).contains(&e.threshold) {
        return Err(invalid(
            "escalation.threshold must be a confidence between 0 and 1".into(),
        ));
    }
    if e.timeout_ms == 0 || e.timeout_ms > MAX_ESCALATION_TIMEOUT_MS {
        return Err(invalid(format!(
            "escalation.timeout_ms must be between 1 and {MAX_ESCALATION_TIMEOUT_MS}"
        )));
    }
    let name = ModelName::parse(&e.server_model)?;
    let model = store.get_model(name.as_str()).await?.ok_or_else(|| {
        DomainError::not_found(format!("escalation.server_model `{name}` not found"))
    })?;
    if let Some(version) = &e.server_version {
        let v = parse_version(version)?;
        let record = store
            .get_version(model.id, &v.to_string())
            .await?
            .ok_or_else(|| {
                DomainError::not_found(format!("escalation target {name}@{v} not found"))
            })?;
        if record.yanked_at.is_some() {
            return Err(DomainError::conflict(
                ErrorCode::Conflict,
                format!("escalation target {name}@{v} is yanked"),
            ));
        }
    }
    Ok(())
}

/// For each model, the deployment that applies to a device with `labels`: the most specific
/// matching selector, then the most recently changed.
pub fn applicable<'a>(
    deployments: &'a [DeploymentRecord],
    labels: &BTreeMap<String, String>,
) -> BTreeMap<&'a str, &'a DeploymentRecord> {
    let mut chosen: BTreeMap<&str, &DeploymentRecord> = BTreeMap::new();
    for d in deployments.iter().filter(|d| matches(&d.selector, labels)) {
        let better = match chosen.get(d.model_name.as_str()) {
            None => true,
            Some(cur) => (d.selector.len(), d.updated_at) > (cur.selector.len(), cur.updated_at),
        };
        if better {
            chosen.insert(&d.model_name, d);
        }
    }
    chosen
}

/// Everything besides the device itself that its desired state is computed from: the
/// deployments, the versions they name and the open rollouts with their target versions.
///
/// It changes only when the fleet generation does (deploys and rollout transitions bump it;
/// versions are immutable but for yanking, which leaves running devices alone), so the check-in
/// path loads it once per generation and shares it between devices
/// ([`crate::checkin::CheckinCache::fleet_view`]).
#[derive(Debug)]
pub struct FleetView {
    deployments: Vec<DeploymentRecord>,
    /// The version each deployment names, by deployment id.
    versions: HashMap<Uuid, VersionRecord>,
    rollouts: Vec<(RolloutRecord, VersionRecord)>,
    /// The newest trust root's serial (1 before any rotation), for the agents' hint header.
    trust_root_serial: u64,
}

impl FleetView {
    /// The newest trust root's serial (1 before any rotation).
    pub fn trust_root_serial(&self) -> u64 {
        self.trust_root_serial
    }

    /// Reads the view from the store.
    pub async fn load(store: &dyn Store) -> Result<FleetView, DomainError> {
        let deployments = store.list_deployments().await?;
        let mut versions = HashMap::new();
        for d in &deployments {
            if let Some(v) = store.get_version(d.model_id, &d.version).await? {
                versions.insert(d.id, v);
            }
        }
        let rollouts = super::rollouts::open_with_versions(store).await?;
        Ok(FleetView {
            deployments,
            versions,
            rollouts,
            trust_root_serial: super::registry::trust_root_serial(store).await?,
        })
    }

    /// The slots a device should run, sorted by model: its deployments, then the open rollouts
    /// whose current cohort holds it ([`super::rollouts::overlay`]).
    pub fn slots(&self, device: &DeviceRecord) -> Vec<ModelSlot> {
        let mut slots = Vec::new();
        for (model, d) in applicable(&self.deployments, &device.labels) {
            let Some(v) = self.versions.get(&d.id) else {
                continue;
            };
            slots.push(ModelSlot {
                model: model.to_owned(),
                version: v.version.clone(),
                url: flotilla_protocol::routes::artifact(&v.artifact_sha256),
                sha256: v.artifact_sha256.clone(),
                size: v.artifact_size,
                bundles: v.bundles.clone(),
                escalation: d.escalation.clone(),
                shadow: None,
            });
        }
        super::rollouts::overlay(&mut slots, device, &self.rollouts);
        slots
    }
}

/// The device's current signed desired state: the stored one if nothing changed and it is
/// fresh, otherwise a new one with the next sequence.
pub async fn desired_state(
    store: &dyn Store,
    key: &SigningKey,
    view: &FleetView,
    device: &DeviceRecord,
    now: DateTime<Utc>,
) -> Result<(SignedDesiredState, u64), DomainError> {
    let mut device = device.clone();
    for _attempt in 0..5 {
        let slots = view.slots(&device);
        let hash = hex::encode(Sha256::digest(
            serde_json::to_vec(&slots).unwrap_or_default(),
        ));
        let fresh = device
            .desired_expires_at
            .is_some_and(|e| e - now > Duration::days(STATE_LIFETIME_DAYS - STATE_REFRESH_DAYS));
        // The device applied a sequence this server never issued: someone else signed with the
        // server key (or a restored backup holds an old counter). Issue above it, so the device
        // takes states again, within the jump any device accepts.
        let behind = device.applied_sequence > device.desired_sequence
            && device.applied_sequence - device.desired_sequence
                < flotilla_protocol::agent::MAX_SEQUENCE_JUMP;
        if device.desired_hash.as_deref() == Some(hash.as_str()) && fresh && !behind {
            if let Some(env) = device
                .desired_envelope
                .as_ref()
                .and_then(|e| serde_json::from_value::<SignedDesiredState>(e.clone()).ok())
            {
                return Ok((env, device.desired_sequence));
            }
        }
        let sequence = if behind {
            device.applied_sequence + 1
        } else {
            device.desired_sequence + 1
        };
        let expires_at = now + Duration::days(STATE_LIFETIME_DAYS);
        let state = DesiredState {
            device_id: device.id.to_string(),
            sequence,
            issued_at: unix(now),
            expires_at: unix(expires_at),
            slots,
        };
        let env = sign_desired_state(key, &state);
        let json = serde_json::to_value(&env).map_err(DomainError::internal)?;
        if store
            .save_desired_state(
                device.id,
                device.desired_sequence,
                sequence,
                &hash,
                &json,
                expires_at,
            )
            .await?
        {
            return Ok((env, sequence));
        }
        // Another request issued a state first: start again from what it stored.
        device = store
            .get_device(device.id)
            .await?
            .ok_or_else(|| DomainError::not_found("device not found"))?;
    }
    Err(DomainError::internal(anyhow::anyhow!(
        "desired state kept changing under concurrent updates"
    )))
}

/// Unix seconds.
pub fn unix(t: DateTime<Utc>) -> u64 {
    u64::try_from(t.timestamp()).unwrap_or(0)
}

/// The server's desired-state signing key: created on first start and kept in the database so
/// every replica signs with the same key.
pub async fn server_key(store: &dyn Store) -> anyhow::Result<SigningKey> {
    const SETTING: &str = "desired_state_signing_key";
    if store.get_setting(SETTING).await?.is_none() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let pem = key.to_pkcs8_pem().map_err(|e| anyhow::anyhow!("{e}"))?;
        // Two replicas starting at once: the second write loses harmlessly only if it does not
        // overwrite, so write and then read back whatever won.
        store.put_setting_if_absent(SETTING, pem.as_str()).await?;
    }
    let pem = store
        .get_setting(SETTING)
        .await?
        .ok_or_else(|| anyhow::anyhow!("server signing key missing"))?;
    SigningKey::from_pkcs8_pem(&pem)
        .map_err(|e| anyhow::anyhow!("stored server signing key is invalid: {e}"))
}
