//! The update cycle. For each slot of a verified desired state: check the publisher signatures
//! against the provisioned trust root (before downloading anything), refuse downgrades and
//! incompatible hardware, download resumably within the signed size, check the digest, load and
//! smoke-test the model, then swap it in and persist the new state. Anything that fails keeps the
//! current model serving, is reported with a stable reason, and is retried with backoff.
//!
//! A slot's shadow candidate (a rollout's shadow stage) goes through the same checks, except the
//! downgrade rule (it never answers), into the same content-addressed store, and is handed to
//! the sink to run beside the slot's model. Its failures are its own: reported in the slot's
//! `shadow` status and backed off, they never touch the version that serves.

use crate::shadow::ShadowModel;
use flotilla_protocol::agent::{
    verify_desired_state, DesiredState, DesiredStateHealth, HealthWindow, ModelSlot, ShadowSlot,
    ShadowStatus, SlotState, SlotStatus, StateError, StateRefusal,
};
use flotilla_protocol::signing::{self, ArtifactDigest, ModelFacts, PublicKey, SignedTrustRoot};
use flotilla_runtime::{LoadOptions, Model};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::client::{ClientError, DownloadLimits, Poll, ServerClient};
use super::state_dir::{AgentState, Failure, Identity, Installed, InstalledShadow, StateDir};
use super::trust::Trust;
use super::ModelSink;

mod enroll;
mod reports;
mod rotation;
mod verify;

pub use enroll::ensure_enrolled;
use verify::{check_facts, downgrade_reference, file_sha256, is_sha256_hex, sample_tensors};

/// Seconds since the Unix epoch; injected so tests control time.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;
/// Produces the health window since the last call (the inference side's recorder).
pub type HealthSource = Arc<dyn Fn() -> Option<HealthWindow> + Send + Sync>;
/// Time elapsed on a clock that never jumps (since any fixed point); injected so tests control
/// it. Freshness is judged on it, never on the wall clock alone.
pub type MonotonicClock = Arc<dyn Fn() -> Duration + Send + Sync>;

/// The process's monotonic clock.
pub fn monotonic_clock() -> MonotonicClock {
    let start = std::time::Instant::now();
    Arc::new(move || start.elapsed())
}

/// What one round of [`Updater::cycle`] came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cycle {
    /// Nothing changed, or a changed state was verified and applied.
    Done,
    /// The server sent a desired state the device refused: retry with backoff, not at once.
    StateRefused,
}

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    })
}

/// Reports kept on disk while the server is unreachable: at one a minute, about a week.
pub const MAX_QUEUED_REPORTS: usize = 10_000;

/// The failure code of a download that broke after real progress: retried at once.
const DOWNLOAD_INTERRUPTED: &str = "download_interrupted";
/// What an interrupted attempt must have brought to be resumed at once (or half of what was
/// left): a server that sends a byte and hangs up gets the usual backoff.
const RESUME_PROGRESS: u64 = 64 * 1024;

/// Why one slot's update was refused or failed. `code` is what reports carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotFailure {
    /// Stable code.
    pub code: &'static str,
    /// Detail.
    pub message: String,
}

impl SlotFailure {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// One artifact to verify and fetch: a slot's model, or its shadow candidate.
struct Target<'a> {
    model: &'a str,
    version: &'a str,
    sha256: &'a str,
    size: u64,
    url: &'a str,
    bundles: &'a [String],
    role: Role,
}

/// What a verified artifact will do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Serve requests.
    Slot,
    /// Run beside the slot's model, never answering.
    Shadow,
}

impl<'a> Target<'a> {
    fn slot(slot: &'a ModelSlot) -> Self {
        Target {
            model: &slot.model,
            version: &slot.version,
            sha256: &slot.sha256,
            size: slot.size,
            url: &slot.url,
            bundles: &slot.bundles,
            role: Role::Slot,
        }
    }

    fn shadow(model: &'a str, shadow: &'a ShadowSlot) -> Self {
        Target {
            model,
            version: &shadow.version,
            sha256: &shadow.sha256,
            size: shadow.size,
            url: &shadow.url,
            bundles: &shadow.bundles,
            role: Role::Shadow,
        }
    }
}

/// Everything the updater needs.
pub struct Updater {
    dir: StateDir,
    client: ServerClient,
    identity: Identity,
    /// The key desired states must be signed with: the trust root's, or else the one pinned
    /// at enrollment.
    server_key: PublicKey,
    trust: Trust,
    /// The rotated roots accepted after the provisioned one, as signed (persisted).
    trust_chain: Vec<SignedTrustRoot>,
    /// The newest serial the server named whose roots were refused, and when (monotonic), so
    /// a bad chain is asked for again only after a while.
    root_refused: Option<(u64, Duration)>,
    sink: Arc<dyn ModelSink>,
    health: HealthSource,
    clock: Clock,
    limits: DownloadLimits,
    state: AgentState,
    statuses: BTreeMap<String, SlotStatus>,
    shadow_statuses: BTreeMap<String, ShadowStatus>,
    /// The loaded shadow candidates, so new sampling settings need no reload.
    shadow_models: BTreeMap<String, Arc<Model>>,
    etag: Option<String>,
    /// The last desired state refused, with why (for logs and tests).
    pub last_rejection: Option<StateError>,
    /// Refusals since the last accepted state, for the report.
    refusal: Option<StateRefusal>,
    monotonic: MonotonicClock,
    /// The device's trusted time: an `issued_at` (or a later trusted time) and the monotonic
    /// reading when it was taken. It moves forward with the monotonic clock, never with the
    /// wall clock, which may be at 0 (no RTC) or days off.
    time_anchor: (u64, Duration),
    /// Monotonic reading when a desired state was last verified, this run.
    last_verified: Option<Duration>,
    /// Whether the state was stale at the last look (to log the change once).
    was_stale: bool,
    /// The last verified desired state, applied again when a slot's retry is due (a `304`
    /// brings no new state, and a failed or interrupted download must still be retried).
    current: Option<DesiredState>,
    /// When to rotate the device credential ([`rotation`]).
    credential_rotation: rotation::CredentialRotation,
}

impl Updater {
    /// An updater for an enrolled device.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dir: StateDir,
        client: ServerClient,
        identity: Identity,
        trust: Trust,
        sink: Arc<dyn ModelSink>,
        health: HealthSource,
        clock: Clock,
        limits: DownloadLimits,
    ) -> anyhow::Result<Self> {
        let pinned = PublicKey::from_pem(&identity.server_public_key_pem)
            .map_err(|e| anyhow::anyhow!("the pinned server key is invalid: {e}"))?;
        // The roots accepted since provisioning, checked again link by link.
        let mut trust = trust;
        let mut trust_chain = Vec::new();
        for env in dir.trust_chain()? {
            match trust.accept(&env) {
                Ok(true) => trust_chain.push(env),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(serial = trust.serial(), error = %e, "a stored trust root no longer follows the chain; keeping the roots before it");
                    break;
                }
            }
        }
        let server_key = trust.server_key().unwrap_or(pinned);
        let mut state = dir.state()?;
        // States written before floors existed: what is on the device is the floor.
        for (name, m) in state.installed.iter().chain(state.previous.iter()) {
            state
                .floors
                .entry(name.clone())
                .or_default()
                .raise(&m.version, m.release);
        }
        let monotonic = monotonic_clock();
        let time_anchor = (state.highest_issued_at, monotonic());
        Ok(Self {
            dir,
            client,
            identity,
            server_key,
            trust,
            trust_chain,
            root_refused: None,
            sink,
            health,
            clock,
            limits,
            state,
            statuses: BTreeMap::new(),
            shadow_statuses: BTreeMap::new(),
            shadow_models: BTreeMap::new(),
            etag: None,
            last_rejection: None,
            refusal: None,
            time_anchor,
            was_stale: false,
            current: None,
            monotonic,
            last_verified: None,
            credential_rotation: Default::default(),
        })
    }

    /// Uses `clock` as the monotonic clock from now on (tests move it by hand).
    pub fn set_monotonic_clock(&mut self, clock: MonotonicClock) {
        self.time_anchor = (
            self.trusted_now().max(self.state.highest_issued_at),
            clock(),
        );
        self.monotonic = clock;
        self.last_verified = None;
    }

    /// The device's trusted time, Unix seconds: the newest `issued_at` it verified, moved on by
    /// the monotonic clock since.
    pub fn trusted_now(&self) -> u64 {
        let (at, mono) = self.time_anchor;
        at.saturating_add((self.monotonic)().saturating_sub(mono).as_secs())
    }

    /// How the device judges its desired state: what the next report, `/metrics` and the
    /// local readiness details say.
    pub fn desired_state_health(&self) -> DesiredStateHealth {
        let expires = self.state.state_expires_at;
        DesiredStateHealth {
            refused: self.refusal.clone(),
            stale: expires > 0 && self.trusted_now() >= expires,
            age_secs: self
                .last_verified
                .map(|at| (self.monotonic)().saturating_sub(at).as_secs()),
            trust_root_serial: Some(self.trust.serial()),
        }
    }

    fn publish_state_health(&mut self) {
        let health = self.desired_state_health();
        if health.stale && !self.was_stale {
            tracing::warn!(
                expired_at = self.state.state_expires_at,
                "the desired state is past its expiry; serving the verified models"
            );
        }
        self.was_stale = health.stale;
        self.sink.set_desired_state_health(&health);
    }

    /// The persisted state.
    pub fn state(&self) -> &AgentState {
        &self.state
    }

    /// How each slot is doing, with its shadow candidate: what the next report says.
    pub fn slot_statuses(&self) -> Vec<SlotStatus> {
        self.statuses
            .values()
            .map(|s| SlotStatus {
                shadow: self.shadow_statuses.get(&s.model).cloned(),
                ..s.clone()
            })
            .collect()
    }

    /// Loads the installed models from disk into the sink (after a restart). A model whose file
    /// is missing or corrupt falls back to the previous version, if that one is intact.
    pub async fn restore(&mut self) -> anyhow::Result<()> {
        let names: Vec<String> = self.state.installed.keys().cloned().collect();
        for name in names {
            let Some(current) = self.state.installed.get(&name).cloned() else {
                continue;
            };
            match self.load_verified_file(&current).await {
                Ok(model) => {
                    self.sink.install(&name, &current.version, model);
                    self.sink.set_escalation(&name, current.escalation.clone());
                    self.set_status(&name, &current.version, SlotState::Active, None);
                }
                Err(e) => {
                    tracing::error!(model = %name, error = %e.message, "installed model unusable; trying the previous version");
                    let fallback = match self.state.previous.get(&name).cloned() {
                        Some(prev) => self.load_verified_file(&prev).await.ok().map(|m| (prev, m)),
                        None => None,
                    };
                    match fallback {
                        Some((prev, model)) => {
                            self.sink.install(&name, &prev.version, model);
                            self.sink.set_escalation(&name, prev.escalation.clone());
                            self.state.installed.insert(name.clone(), prev.clone());
                            self.state.previous.remove(&name);
                            self.set_status(
                                &name,
                                &prev.version,
                                SlotState::RolledBack,
                                Some(e.code),
                            );
                        }
                        None => {
                            self.state.installed.remove(&name);
                        }
                    }
                }
            }
        }
        let shadows: Vec<(String, InstalledShadow)> = self
            .state
            .shadows
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, shadow) in shadows {
            match self.load_verified_file(&shadow.as_installed()).await {
                Ok(model) => {
                    self.start_shadow(&name, &shadow, model);
                    self.set_shadow_status(&name, &shadow.version, SlotState::Active, None);
                }
                Err(e) => {
                    // The next desired state fetches and checks it again.
                    tracing::warn!(model = %name, version = %shadow.version, error = %e.message, "shadow candidate unusable");
                    self.state.shadows.remove(&name);
                    let reason = format!("{}: {}", e.code, e.message);
                    self.set_shadow_status(
                        &name,
                        &shadow.version,
                        SlotState::Failed,
                        Some(&reason),
                    );
                }
            }
        }
        self.dir.save_state(&self.state)?;
        Ok(())
    }

    async fn load_verified_file(&self, m: &Installed) -> Result<Arc<Model>, SlotFailure> {
        let path = self.dir.model_file(&m.sha256);
        let expected = m.sha256.clone();
        let sample = m.sample_input.clone();
        tokio::task::spawn_blocking(move || {
            let bytes = std::fs::read(&path).map_err(|e| {
                SlotFailure::new("model_file_missing", format!("{}: {e}", path.display()))
            })?;
            if hex::encode(Sha256::digest(&bytes)) != expected {
                return Err(SlotFailure::new(
                    "model_file_corrupt",
                    format!("{} does not hash to its name", path.display()),
                ));
            }
            let model = Model::load(&bytes, &LoadOptions::default())
                .map_err(|e| SlotFailure::new("model_load_failed", e.to_string()))?;
            // The publisher's signed sample when there is one (it exercises real values, where
            // zeros may hide a model that breaks on them), else zeros of the declared shapes.
            let sample = sample
                .map(|s| sample_tensors(&s))
                .transpose()
                .map_err(|e| SlotFailure::new("smoke_test_failed", e))?;
            model
                .smoke_test(sample)
                .map_err(|e| SlotFailure::new("smoke_test_failed", e.to_string()))?;
            Ok(Arc::new(model))
        })
        .await
        .map_err(|e| SlotFailure::new("internal", e.to_string()))?
    }

    fn set_shadow_status(
        &mut self,
        model: &str,
        version: &str,
        state: SlotState,
        reason: Option<&str>,
    ) {
        self.shadow_statuses.insert(
            model.to_owned(),
            ShadowStatus {
                version: version.to_owned(),
                state,
                reason: reason.map(str::to_owned),
            },
        );
    }

    /// Reports progress on `target` in its slot's status or its shadow status.
    fn set_progress(&mut self, target: &Target<'_>, state: SlotState) {
        match target.role {
            Role::Slot => self.set_status(target.model, target.version, state, None),
            Role::Shadow => self.set_shadow_status(target.model, target.version, state, None),
        }
    }

    fn set_status(&mut self, model: &str, version: &str, state: SlotState, reason: Option<&str>) {
        let active_version = self.state.installed.get(model).map(|m| m.version.clone());
        self.statuses.insert(
            model.to_owned(),
            SlotStatus {
                model: model.to_owned(),
                version: version.to_owned(),
                state,
                active_version,
                reason: reason.map(str::to_owned),
                shadow: None,
            },
        );
    }

    /// Records a refusal (of a desired state or a trust root) for the next report, counting
    /// refusals in a row.
    fn note_refusal(&mut self, code: &str, message: String) {
        let count = self
            .refusal
            .as_ref()
            .map_or(1, |r| r.count.saturating_add(1));
        self.refusal = Some(StateRefusal {
            code: code.to_owned(),
            message,
            count,
        });
    }

    /// Verifies and applies one desired-state envelope (raw bytes as received).
    pub async fn apply(&mut self, envelope: &[u8]) -> Result<(), StateError> {
        let now = self.trusted_now();
        let desired = match verify_desired_state(
            envelope,
            &self.server_key,
            &self.identity.device_id,
            self.state.accepted_sequence,
            now,
        ) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(code = e.code(), error = %e, "refused a desired state; keeping the current models");
                self.last_rejection = Some(e.clone());
                self.note_refusal(e.code(), e.to_string());
                self.publish_state_health();
                return Err(e);
            }
        };
        self.refusal = None;
        // Whatever ETag the client holds names another state now.
        self.etag = None;
        let mono = (self.monotonic)();
        self.time_anchor = (now.max(desired.issued_at), mono);
        self.last_verified = Some(mono);
        self.state.highest_issued_at = self.state.highest_issued_at.max(desired.issued_at);
        self.state.state_expires_at = desired.expires_at;
        self.state.accepted_sequence = desired.sequence;
        self.persist();
        self.publish_state_health();
        self.apply_verified(desired).await;
        Ok(())
    }

    async fn apply_verified(&mut self, desired: DesiredState) {
        self.current = Some(desired.clone());
        for slot in &desired.slots {
            self.apply_slot(slot).await;
            self.persist();
            // After the slot: a candidate promoted to it finds its bytes still on disk.
            self.apply_shadow(slot).await;
            self.persist();
        }
        // Models no longer wanted stop serving; their files stay as "previous" for a while.
        let wanted: Vec<&str> = desired.slots.iter().map(|s| s.model.as_str()).collect();
        let unwanted: std::collections::BTreeSet<String> = self
            .state
            .installed
            .keys()
            .chain(self.state.shadows.keys())
            .filter(|m| !wanted.contains(&m.as_str()))
            .cloned()
            .collect();
        for name in unwanted {
            self.sink.remove(&name);
            self.stop_shadow(&name);
            if let Some(old) = self.state.installed.remove(&name) {
                self.state.previous.insert(name.clone(), old);
            }
            self.statuses.remove(&name);
        }
        self.state.applied_sequence = desired.sequence;
        self.persist();
        self.dir.collect_garbage(&self.state);
    }

    async fn apply_slot(&mut self, slot: &ModelSlot) {
        if let Some(failure) = self.backing_off(slot) {
            // Same target failed recently: keep reporting why until the backoff expires.
            let reason = failure.reason.clone();
            self.set_status(&slot.model, &slot.version, SlotState::Failed, Some(&reason));
            return;
        }
        match self.update_slot(slot).await {
            Ok(()) => {
                self.state.failures.remove(&slot.model);
                // The policy may change without the model: it follows the desired state.
                if let Some(installed) = self.state.installed.get_mut(&slot.model) {
                    installed.escalation = slot.escalation.clone();
                }
                self.sink
                    .set_escalation(&slot.model, slot.escalation.clone());
                self.set_status(&slot.model, &slot.version, SlotState::Active, None);
            }
            Err(f) if f.code == DOWNLOAD_INTERRUPTED => {
                tracing::info!(model = %slot.model, version = %slot.version, error = %f.message, "download interrupted; resuming");
                self.state.failures.remove(&slot.model);
                let reason = format!("{}: {}", f.code, f.message);
                self.set_status(
                    &slot.model,
                    &slot.version,
                    SlotState::Downloading,
                    Some(&reason),
                );
            }
            Err(f) => {
                tracing::warn!(model = %slot.model, version = %slot.version, code = f.code, error = %f.message, "update refused; the current model keeps serving");
                let reason = format!("{}: {}", f.code, f.message);
                let failure = Failure::after(
                    self.state.failures.get(&slot.model),
                    &slot.version,
                    &slot.sha256,
                    reason.clone(),
                    (self.clock)(),
                );
                self.state.failures.insert(slot.model.clone(), failure);
                self.set_status(&slot.model, &slot.version, SlotState::Failed, Some(&reason));
            }
        }
    }

    /// Brings `slot`'s shadow candidate in line with the desired state: none, the same one
    /// (its sampling settings may change), or another one (the old one stops at once).
    async fn apply_shadow(&mut self, slot: &ModelSlot) {
        let name = slot.model.as_str();
        let Some(wanted) = &slot.shadow else {
            self.stop_shadow(name);
            return;
        };
        if let Some(current) = self.state.shadows.get(name).cloned() {
            if current.version == wanted.version && current.sha256 == wanted.sha256 {
                if let Some(model) = self.shadow_models.get(name).cloned() {
                    let shadow = InstalledShadow {
                        sample_rate: wanted.sample_rate,
                        tolerance: wanted.tolerance,
                        ..current.clone()
                    };
                    if shadow != current {
                        self.start_shadow(name, &shadow, model);
                        self.state.shadows.insert(name.to_owned(), shadow);
                    }
                    self.set_shadow_status(name, &wanted.version, SlotState::Active, None);
                    return;
                }
            }
            self.stop_shadow(name);
        }
        if let Some(failure) = self.shadow_backing_off(name, wanted) {
            let reason = failure.reason.clone();
            self.set_shadow_status(name, &wanted.version, SlotState::Failed, Some(&reason));
            return;
        }
        match self.install_shadow(name, wanted).await {
            Ok(()) => {
                self.state.shadow_failures.remove(name);
                self.set_shadow_status(name, &wanted.version, SlotState::Active, None);
                tracing::info!(model = %name, version = %wanted.version, "shadow candidate running");
            }
            Err(f) => {
                tracing::warn!(model = %name, version = %wanted.version, code = f.code, error = %f.message, "shadow candidate refused; the current model is unaffected");
                let reason = format!("{}: {}", f.code, f.message);
                let failure = Failure::after(
                    self.state.shadow_failures.get(name),
                    &wanted.version,
                    &wanted.sha256,
                    reason.clone(),
                    (self.clock)(),
                );
                self.state.shadow_failures.insert(name.to_owned(), failure);
                self.set_shadow_status(name, &wanted.version, SlotState::Failed, Some(&reason));
            }
        }
    }

    /// Verifies, fetches, loads and smoke-tests a shadow candidate, then starts it.
    async fn install_shadow(&mut self, name: &str, wanted: &ShadowSlot) -> Result<(), SlotFailure> {
        // The state's signature covered these, but only slot digests are checked on arrival,
        // and the digest names a file.
        if !is_sha256_hex(&wanted.sha256) {
            return Err(SlotFailure::new(
                "invalid_slot",
                format!(
                    "shadow digest `{}` is not lowercase hex sha256",
                    wanted.sha256
                ),
            ));
        }
        // Written so that NaN fails too.
        let usable =
            wanted.sample_rate > 0.0 && wanted.sample_rate <= 1.0 && wanted.tolerance >= 0.0;
        if !usable {
            return Err(SlotFailure::new(
                "invalid_slot",
                format!(
                    "shadow sample rate {} is not in (0, 1] or tolerance {} is negative",
                    wanted.sample_rate, wanted.tolerance
                ),
            ));
        }
        let target = Target::shadow(name, wanted);
        self.set_progress(&target, SlotState::Verifying);
        let facts = self.verify_publishers(&target)?;
        // No downgrade rule: a candidate in shadow never answers a request.
        check_facts(name, &wanted.version, facts.as_ref(), None)?;
        self.fetch_verified(&target).await?;
        let shadow = InstalledShadow {
            version: wanted.version.clone(),
            sha256: wanted.sha256.clone(),
            size: wanted.size,
            sample_input: facts.and_then(|f| f.sample_input),
            sample_rate: wanted.sample_rate,
            tolerance: wanted.tolerance,
        };
        // Only now, with verified bytes, is the candidate parsed.
        let model = self.load_verified_file(&shadow.as_installed()).await?;
        self.start_shadow(name, &shadow, model);
        self.state.shadows.insert(name.to_owned(), shadow);
        Ok(())
    }

    fn start_shadow(&mut self, name: &str, shadow: &InstalledShadow, model: Arc<Model>) {
        self.shadow_models
            .insert(name.to_owned(), Arc::clone(&model));
        self.sink.set_shadow(
            name,
            Some(ShadowModel {
                version: shadow.version.clone(),
                model,
                sample_rate: shadow.sample_rate,
                tolerance: shadow.tolerance,
            }),
        );
    }

    /// Stops `name`'s shadow candidate, if it has one; its file goes with the next clean-up.
    fn stop_shadow(&mut self, name: &str) {
        if self.state.shadows.remove(name).is_some() || self.shadow_models.contains_key(name) {
            self.sink.set_shadow(name, None);
        }
        self.shadow_models.remove(name);
        self.shadow_statuses.remove(name);
    }

    /// The failure to keep reporting while this candidate is still in its backoff window.
    fn shadow_backing_off(&self, name: &str, wanted: &ShadowSlot) -> Option<&Failure> {
        self.state
            .shadow_failures
            .get(name)
            .filter(|f| f.is_for(&wanted.version, &wanted.sha256))
            .filter(|f| f.backing_off((self.clock)()))
    }

    fn persist(&self) {
        if let Err(e) = self.dir.save_state(&self.state) {
            tracing::error!(error = %e, "cannot write the agent state");
        }
    }

    /// The failure to keep reporting while this target is still in its backoff window.
    fn backing_off(&self, slot: &ModelSlot) -> Option<&Failure> {
        let installed = self.state.installed.get(&slot.model);
        if installed.is_some_and(|c| c.sha256 == slot.sha256 && c.version == slot.version) {
            return None;
        }
        self.state
            .failures
            .get(&slot.model)
            .filter(|f| f.is_for(&slot.version, &slot.sha256))
            .filter(|f| f.backing_off((self.clock)()))
    }

    async fn update_slot(&mut self, slot: &ModelSlot) -> Result<(), SlotFailure> {
        let current = self.state.installed.get(&slot.model).cloned();
        if current
            .as_ref()
            .is_some_and(|c| c.sha256 == slot.sha256 && c.version == slot.version)
        {
            return Ok(());
        }
        let target = Target::slot(slot);
        self.set_progress(&target, SlotState::Verifying);
        let facts = self.verify_publishers(&target)?;
        let previous = self.state.previous.get(&slot.model);
        let floor = downgrade_reference(slot, self.state.floors.get(&slot.model), previous);
        check_facts(&slot.model, &slot.version, facts.as_ref(), floor)?;
        // Digest-only bytes carry no signed version: bytes this device moved past cannot
        // return relabelled as a newer version (the exact previous one is not checked).
        if facts.is_none() && floor.is_some_and(|f| f.superseded.contains(&slot.sha256)) {
            return Err(SlotFailure::new(
                "superseded_artifact",
                format!(
                    "these bytes were replaced on this device; they cannot return as {}",
                    slot.version
                ),
            ));
        }
        self.fetch_verified(&target).await?;
        let installed = Installed {
            version: slot.version.clone(),
            sha256: slot.sha256.clone(),
            size: slot.size,
            release: facts.as_ref().and_then(|f| f.release),
            sample_input: facts.and_then(|f| f.sample_input),
            escalation: slot.escalation.clone(),
        };
        // Only now, with verified bytes, is the model parsed.
        let model = self.load_verified_file(&installed).await?;
        self.sink.install(&slot.model, &slot.version, model);
        let floor = self.state.floors.entry(slot.model.clone()).or_default();
        floor.raise(&installed.version, installed.release);
        if let Some(old) = current {
            if old.release.is_none() && old.sha256 != installed.sha256 {
                floor.supersede(&old.sha256);
            }
            self.state.previous.insert(slot.model.clone(), old);
        }
        self.state.installed.insert(slot.model.clone(), installed);
        tracing::info!(model = %slot.model, version = %slot.version, "model activated");
        Ok(())
    }

    /// Makes sure the target's verified bytes are in the content-addressed store. Bytes already
    /// on disk (the previous version, a shadow candidate now promoted, or the same file signed
    /// as another version) are reused: no network needed. Otherwise downloads them (resuming a
    /// partial file), checks the digest and moves them in, where only verified bytes ever land.
    async fn fetch_verified(&mut self, target: &Target<'_>) -> Result<(), SlotFailure> {
        let final_path = self.dir.model_file(target.sha256);
        if file_sha256(&final_path).is_ok_and(|d| d == target.sha256) {
            return Ok(());
        }
        self.set_progress(target, SlotState::Downloading);
        let partial = self.dir.partial_file(target.sha256);
        let size_of = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let before = size_of(&partial);
        self.client
            .download(target.url, &partial, target.size, self.limits)
            .await
            .map_err(|e| {
                // A link that broke after real progress is a slow link, not a bad server:
                // resume at once, with no backoff.
                let gained = size_of(&partial).saturating_sub(before);
                let remaining = target.size.saturating_sub(before);
                if gained > 0 && gained >= RESUME_PROGRESS.min(remaining / 2) {
                    return SlotFailure::new(
                        DOWNLOAD_INTERRUPTED,
                        format!("{e}; {gained} bytes arrived, resuming"),
                    );
                }
                match e {
                    ClientError::Download(m) => SlotFailure::new("download_refused", m),
                    other => SlotFailure::new("download_failed", other.to_string()),
                }
            })?;
        let digest = file_sha256(&partial)
            .map_err(|e| SlotFailure::new("download_failed", e.to_string()))?;
        if digest != target.sha256 {
            let _ = std::fs::remove_file(&partial);
            return Err(SlotFailure::new(
                "artifact_digest_mismatch",
                format!(
                    "downloaded bytes hash to {digest}, not the signed {}",
                    target.sha256
                ),
            ));
        }
        self.set_progress(target, SlotState::Verifying);
        std::fs::rename(&partial, &final_path)
            .and_then(|()| super::state_dir::sync_dir(self.dir.root().join("models").as_path()))
            .map_err(|e| SlotFailure::new("storage_failed", e.to_string()))
    }

    fn verify_publishers(&self, target: &Target<'_>) -> Result<Option<ModelFacts>, SlotFailure> {
        let policy = self
            .trust
            .policy(target.model)
            .map_err(|e| SlotFailure::new("trust_root_unusable", e.to_string()))?;
        let mut sha = [0u8; 32];
        hex::decode_to_slice(target.sha256, &mut sha)
            .map_err(|_| SlotFailure::new("invalid_slot", "digest is not hex"))?;
        let bundles: Vec<&[u8]> = target.bundles.iter().map(|b| b.as_bytes()).collect();
        let verified = signing::verify(
            &bundles,
            &policy,
            &ArtifactDigest {
                sha256: sha,
                size: Some(target.size),
            },
        )
        .map_err(|e| SlotFailure::new(e.code(), e.to_string()))?;
        // A bundle that binds only the digest leaves the model's name and version to the
        // server: model A's artifact could be offered as model B, an old one as 99.0.0. Only
        // models the trust root marks digest-only take such bundles.
        if verified.facts.is_none() && !self.trust.digest_only(target.model) {
            return Err(SlotFailure::new(
                "signed_facts_missing",
                format!(
                    "the publishers' bundle names no model or version, and the trust root does not mark `{}` digest-only",
                    target.model
                ),
            ));
        }
        Ok(verified.facts)
    }

    /// The trust root's serial now.
    pub fn trust_root_serial(&self) -> u64 {
        self.trust.serial()
    }

    /// Walks the trust-root chain up to `named` (the serial the server says is newest): fetches
    /// the rotated roots after the current one and accepts each that a threshold of the keys
    /// before it and of its own signed. A root that names another server key resets the
    /// sequence floor, since the new key's states are numbered afresh. Anything refused leaves
    /// the current root in force and is asked for again only after a while.
    /// Returns whether the device moved to a newer root.
    pub async fn follow_trust_roots(&mut self, named: u64) -> bool {
        /// How long a refused chain is left alone before it is fetched again.
        const REFUSED_RETRY: Duration = Duration::from_secs(600);
        if named <= self.trust.serial() {
            return false;
        }
        let now = (self.monotonic)();
        if let Some((serial, at)) = self.root_refused {
            if serial >= named && now.saturating_sub(at) < REFUSED_RETRY {
                return false;
            }
        }
        let (before, serial_before) = (self.server_key.key_id(), self.trust.serial());
        // Each answer holds a bounded number of roots; a device far behind asks again.
        while self.trust.serial() < named {
            let chain = match self.client.trust_roots(self.trust.serial()).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot fetch the newer trust roots; asking again later");
                    self.root_refused = Some((named, now));
                    break;
                }
            };
            let start = self.trust.serial();
            let mut refused = None;
            for env in chain.roots {
                match self.trust.accept(&env) {
                    Ok(false) => {}
                    Ok(true) => {
                        tracing::info!(
                            serial = self.trust.serial(),
                            "accepted a rotated trust root"
                        );
                        self.trust_chain.push(env);
                    }
                    Err(e) => {
                        refused = Some(e);
                        break;
                    }
                }
            }
            if self.trust.serial() > start {
                if let Err(e) = self.dir.save_trust_chain(&self.trust_chain) {
                    tracing::error!(error = %e, "cannot persist the trust roots");
                }
            }
            if let Some(e) = refused {
                tracing::warn!(code = e.code(), error = %e, serial = self.trust.serial(), "refused a trust root; keeping the current one");
                self.note_refusal(e.code(), e.to_string());
                self.root_refused = Some((named, now));
                break;
            }
            if self.trust.serial() == start {
                // The server named a serial it does not serve.
                self.root_refused = Some((named, now));
                break;
            }
        }
        if let Some(key) = self.trust.server_key() {
            if key.key_id() != before {
                tracing::warn!(server_key = %key.key_id(), "the trust root names a new server key; its desired states start a new sequence");
                self.server_key = key;
                self.state.accepted_sequence = 0;
                self.etag = None;
            }
        }
        let advanced = self.trust.serial() > serial_before;
        if advanced {
            // Refusals under the old root (an unknown signer, say) may not hold under the new
            // one: every slot and candidate is tried again now.
            self.state.failures.clear();
            self.state.shadow_failures.clear();
            self.persist();
        }
        advanced
    }

    /// Whether a slot of the current state is not served yet and not backing off: a failed
    /// update whose backoff expired, or an interrupted download to resume.
    pub fn retry_due(&self) -> bool {
        let Some(desired) = &self.current else {
            return false;
        };
        desired.slots.iter().any(|slot| {
            let done = self
                .state
                .installed
                .get(&slot.model)
                .is_some_and(|c| c.sha256 == slot.sha256 && c.version == slot.version);
            !done && self.backing_off(slot).is_none()
        })
    }

    /// One round: retry what is due, poll (holding up to `wait`, not at all when a retry is
    /// still due), apply a changed state, queue and send a report.
    pub async fn cycle(&mut self, wait: Duration) -> Result<Cycle, ClientError> {
        if self.retry_due() {
            if let Some(desired) = self.current.clone() {
                self.apply_verified(desired).await;
            }
        }
        let wait = if self.retry_due() {
            Duration::ZERO
        } else {
            wait
        };
        let polled = self.client.poll(self.etag.as_deref(), wait).await;
        // A newer trust root first: it may name the key the state is signed with.
        let mut rotated = false;
        if let Some(serial) = polled.as_ref().ok().and_then(Poll::trust_root) {
            rotated = self.follow_trust_roots(serial).await;
        }
        let result = match polled {
            Ok(Poll::Changed { body, etag, .. }) => {
                if self.apply(&body).await.is_ok() {
                    self.etag = etag;
                    Ok(Cycle::Done)
                } else {
                    Ok(Cycle::StateRefused)
                }
            }
            Ok(Poll::Unchanged { .. }) => {
                // The same state under a new root: what it refused may install now.
                if let (true, Some(desired)) = (rotated, self.current.clone()) {
                    self.apply_verified(desired).await;
                }
                Ok(Cycle::Done)
            }
            Err(e) => Err(e),
        };
        self.rotate_credential_when_due().await;
        // Staleness shows without a new state (a proxy answering 304 forever).
        self.publish_state_health();
        if let Err(e) = self.queue_report() {
            tracing::error!(error = %e, "cannot queue a report");
        }
        self.flush_reports().await;
        result
    }

    /// Polls forever (until `shutdown` resolves), backing off with jitter while the server is
    /// unreachable. The models keep serving throughout.
    pub async fn run(mut self, wait: Duration, shutdown: impl std::future::Future<Output = ()>) {
        use backon::BackoffBuilder;
        tokio::pin!(shutdown);
        let builder = backon::ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(Duration::from_secs(60))
            .without_max_times();
        let mut backoff = builder.build();
        // A refused state comes back at once on the next poll (its ETag was not taken): wait
        // before asking again, longer each time, so junk from the server is no busy loop.
        let refusals = backon::ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_secs(5))
            .with_max_delay(Duration::from_secs(600))
            .without_max_times();
        let mut refused = refusals.build();
        loop {
            let outcome = tokio::select! {
                r = self.cycle(wait) => r,
                () = &mut shutdown => return,
            };
            let pause = match outcome {
                Ok(Cycle::Done) => {
                    backoff = builder.build();
                    refused = refusals.build();
                    Duration::ZERO
                }
                Ok(Cycle::StateRefused) => {
                    let d = refused.next().unwrap_or(Duration::from_secs(600));
                    tracing::warn!(retry_in = ?d, "the server's desired state was refused; asking again later");
                    d
                }
                Err(e) => {
                    let d = backoff.next().unwrap_or(Duration::from_secs(60));
                    tracing::warn!(error = %e, retry_in = ?d, "cannot reach the server; serving the current models");
                    d
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = &mut shutdown => return,
            }
        }
    }
}

/// Keeps at most a sane wait for long-polls.
pub fn clamp_wait(secs: u64) -> Duration {
    Duration::from_secs(secs.clamp(1, 300))
}
