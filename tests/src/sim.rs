//! The fleet simulator: thousands of light simulated agents in one process, speaking the real
//! agent protocol (`flotilla_protocol::agent`) to a real server.
//!
//! Each simulated device enrolls with a real enrollment token, long-polls its desired state with
//! `If-None-Match`, verifies the server's signature (device, sequence, expiry), downloads each
//! new artifact and checks its sha256 and size (only the first few devices fetch the bytes of a
//! given artifact, the rest trust them, so ten thousand devices do not cost ten thousand
//! downloads), "activates" it and reports `SlotStatus { state: active, active_version }` with
//! health windows drawn from the behaviour configured for that model version. A version can be
//! made slow, erroneous or unable to activate at runtime, and devices can go offline and come
//! back. It runs no model: it is a load and rollout driver, not an agent.
//!
//! ```no_run
//! # async fn demo(base: &str, token: &str) -> anyhow::Result<()> {
//! use flotilla_e2e::sim::{Behaviour, SimConfig, SimFleet};
//! let fleet = SimFleet::enroll(SimConfig::new(base, token), 1000, |i| {
//!     [("site".to_owned(), format!("s{}", i % 4))].into()
//! })
//! .await?;
//! fleet.set_behaviour("fraud", "1.1.0", Behaviour { error_rate: 0.2, ..Behaviour::default() });
//! fleet.start();
//! fleet.wait_for(std::time::Duration::from_secs(60), |f| f.count_active("fraud", "1.0.0") == 1000).await?;
//! fleet.set_online(0..100, false);
//! # Ok(()) }
//! ```

use anyhow::{anyhow, bail, Context as _};
use flotilla_protocol::agent::{
    verify_desired_state, AgentReport, EnrollRequest, EnrollResponse, HealthWindow, LatencyMs,
    ModelHealth, ModelSlot, SlotState, SlotStatus,
};
use flotilla_protocol::devices::DevicePublicKey;
use flotilla_protocol::routes;
use flotilla_protocol::signing::{PublicKey, SigningKey};
use futures_util::StreamExt as _;
use rand::Rng as _;
use rand_distr::Distribution as _;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How the simulated fleet talks to the server.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Server base URL (`http://127.0.0.1:PORT`).
    pub base_url: String,
    /// An enrollment token with enough uses for every device.
    pub enrollment_token: String,
    /// `?wait=` of each long-poll, seconds.
    pub poll_wait_secs: u64,
    /// Seconds between health reports of a device (jittered ±20 %).
    pub report_interval: Duration,
    /// How many devices download and verify the bytes of each artifact; later ones skip the
    /// download and trust the first ones' check (the server's signature over digest and size
    /// is still verified by every device).
    pub full_downloads: usize,
    /// Enrollments in flight at once.
    pub enroll_concurrency: usize,
    /// Per-request timeout (a long-poll adds its wait to this).
    pub request_timeout: Duration,
}

impl SimConfig {
    /// Defaults: 30 s long-polls, a report a minute, three full downloads per artifact.
    pub fn new(base_url: &str, enrollment_token: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
            enrollment_token: enrollment_token.to_owned(),
            poll_wait_secs: 30,
            report_interval: Duration::from_secs(60),
            full_downloads: 3,
            enroll_concurrency: 16,
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// How devices running one model version behave, as their health windows tell it.
#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    /// Median inference latency, ms.
    pub latency_p50_ms: f64,
    /// 99th percentile latency, ms (log-normal between the two).
    pub latency_p99_ms: f64,
    /// Share of inferences that fail, in [0, 1].
    pub error_rate: f64,
    /// Inferences in each health window.
    pub inferences_per_window: u64,
    /// When set, activating this version fails with this reason (the device keeps its previous
    /// version and reports `failed`).
    pub activation_failure: Option<String>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            latency_p50_ms: 2.0,
            latency_p99_ms: 6.0,
            error_rate: 0.0,
            inferences_per_window: 600,
            activation_failure: None,
        }
    }
}

impl Behaviour {
    /// A health window of `model`@`version` under this behaviour between `start` and `end`.
    pub fn window(&self, model: &str, version: &str, rng: &mut impl rand::Rng) -> ModelHealth {
        let p50 = self.latency_p50_ms.max(0.001);
        let p99 = self.latency_p99_ms.max(p50);
        // Log-normal with the given median and 99th percentile (z(0.99) = 2.326).
        let sigma = (p99 / p50).ln() / 2.326;
        let draw = |rng: &mut dyn rand::RngCore, z: f64| {
            let noise: f64 = rand_distr::Normal::new(0.0, 0.03)
                .map(|n| n.sample(rng))
                .unwrap_or(0.0);
            p50 * (sigma * z).exp() * (1.0 + noise).max(0.5)
        };
        let n = self.inferences_per_window;
        let errors = if n == 0 || self.error_rate <= 0.0 {
            0
        } else {
            rand_distr::Binomial::new(n, self.error_rate.clamp(0.0, 1.0))
                .map(|b| b.sample(rng))
                .unwrap_or(0)
        };
        ModelHealth {
            model: model.to_owned(),
            version: version.to_owned(),
            inference_count: n,
            error_count: errors,
            latency_ms: LatencyMs {
                p50: draw(rng, 0.0),
                p95: draw(rng, 1.645),
                p99: draw(rng, 2.326),
            },
            escalations: 0,
            escalation_fallbacks: 0,
            escalation_latency_ms: None,
            shadow: None,
        }
    }
}

/// Counters of what the fleet did, for load figures.
#[derive(Debug, Default)]
pub struct SimCounters {
    /// Desired-state polls answered 200.
    pub states: AtomicU64,
    /// Desired-state polls answered 304.
    pub unchanged: AtomicU64,
    /// Reports accepted by the server.
    pub reports: AtomicU64,
    /// Artifact bytes downloaded.
    pub downloaded_bytes: AtomicU64,
    /// Failed requests (network errors, unexpected statuses, refused states).
    pub errors: AtomicU64,
}

/// One simulated device.
#[derive(Debug)]
pub struct SimDevice {
    /// Index in the fleet.
    pub index: usize,
    /// Device id the server gave it.
    pub id: String,
    /// Its credential (`fld_...`).
    pub credential: String,
    /// Labels it enrolled with.
    pub labels: BTreeMap<String, String>,
    state: Mutex<DeviceState>,
    online: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct DeviceState {
    /// model → active version.
    active: BTreeMap<String, String>,
    /// model → (version, reason) of the last failed activation.
    failed: BTreeMap<String, (String, String)>,
    /// model → version of the last report the server accepted.
    reported: BTreeMap<String, String>,
    etag: Option<String>,
    accepted_sequence: u64,
    applied_sequence: u64,
    report_seq: u64,
    last_report: Option<u64>,
}

impl SimDevice {
    /// model → version this device serves.
    pub fn active(&self) -> BTreeMap<String, String> {
        self.lock().active.clone()
    }

    /// The `ETag` of the last desired state it applied.
    pub fn etag(&self) -> Option<String> {
        self.lock().etag.clone()
    }

    /// Whether the device is online.
    pub fn is_online(&self) -> bool {
        *self.online.borrow()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DeviceState> {
        // A panic while holding this lock would be a simulator bug; keep going with its data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Shared {
    config: SimConfig,
    http: reqwest::Client,
    server_key: PublicKey,
    behaviours: RwLock<HashMap<(String, String), Behaviour>>,
    /// sha256 → devices that started downloading it.
    downloads: Mutex<HashMap<String, usize>>,
    counters: SimCounters,
    stop: watch::Sender<bool>,
}

/// A simulated fleet. Cloning shares it.
#[derive(Clone)]
pub struct SimFleet {
    shared: Arc<Shared>,
    devices: Arc<Vec<Arc<SimDevice>>>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl std::fmt::Debug for SimFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimFleet")
            .field("devices", &self.devices.len())
            .finish_non_exhaustive()
    }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An HTTP client sized for many devices on one host.
pub fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()?)
}

impl SimFleet {
    /// Enrolls `count` devices, each with `labels(index)`. Does not start them.
    pub async fn enroll(
        config: SimConfig,
        count: usize,
        labels: impl Fn(usize) -> BTreeMap<String, String>,
    ) -> anyhow::Result<Self> {
        let http =
            http_client(config.request_timeout + Duration::from_secs(config.poll_wait_secs))?;
        let mut pending = futures_util::stream::iter((0..count).map(|index| {
            let (http, config, labels) = (http.clone(), config.clone(), labels(index));
            async move { enroll_one(&http, &config, index, labels).await }
        }))
        .buffer_unordered(config.enroll_concurrency.max(1));
        let mut devices = Vec::with_capacity(count);
        let mut server_key = None;
        while let Some(result) = pending.next().await {
            let (device, pem) = result?;
            if server_key.is_none() {
                server_key = Some(PublicKey::from_pem(&pem).map_err(|e| anyhow!("{e}"))?);
            }
            devices.push(Arc::new(device));
        }
        drop(pending);
        devices.sort_by_key(|d| d.index);
        let server_key = server_key.ok_or_else(|| anyhow!("a fleet needs at least one device"))?;
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                http,
                server_key,
                behaviours: RwLock::new(HashMap::new()),
                downloads: Mutex::new(HashMap::new()),
                counters: SimCounters::default(),
                stop: watch::channel(false).0,
            }),
            devices: Arc::new(devices),
            tasks: Arc::new(Mutex::new(JoinSet::new())),
        })
    }

    /// Starts every device's poll and report loop on the current Tokio runtime.
    pub fn start(&self) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for device in self.devices.iter() {
            let (shared, device) = (self.shared.clone(), device.clone());
            tasks.spawn(async move { run_device(shared, device).await });
        }
    }

    /// Stops every device loop (in-flight requests are dropped).
    pub async fn stop(&self) {
        self.shared.stop.send_replace(true);
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }

    /// The devices, in enrollment order.
    pub fn devices(&self) -> &[Arc<SimDevice>] {
        &self.devices
    }

    /// What the fleet did so far.
    pub fn counters(&self) -> &SimCounters {
        &self.shared.counters
    }

    /// Sets how devices running `model`@`version` behave from their next window on.
    pub fn set_behaviour(&self, model: &str, version: &str, behaviour: Behaviour) {
        self.shared
            .behaviours
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert((model.to_owned(), version.to_owned()), behaviour);
    }

    /// Takes devices offline (their held polls are dropped, nothing is sent) or back online
    /// (they poll and report at once).
    pub fn set_online(&self, devices: Range<usize>, online: bool) {
        for d in self.devices.get(devices).unwrap_or_default() {
            d.online.send_replace(online);
        }
    }

    /// How many devices serve each version of `model` (devices without it are left out).
    pub fn version_counts(&self, model: &str) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for d in self.devices.iter() {
            if let Some(v) = d.lock().active.get(model) {
                *out.entry(v.clone()).or_insert(0) += 1;
            }
        }
        out
    }

    /// How many devices serve `model`@`version`.
    pub fn count_active(&self, model: &str, version: &str) -> usize {
        self.devices
            .iter()
            .filter(|d| d.lock().active.get(model).is_some_and(|v| v == version))
            .count()
    }

    /// How many devices have had a report saying they serve `model`@`version` accepted by the
    /// server.
    pub fn count_reported(&self, model: &str, version: &str) -> usize {
        self.devices
            .iter()
            .filter(|d| d.lock().reported.get(model).is_some_and(|v| v == version))
            .count()
    }

    /// How many devices failed to activate `model`@`version` last time they tried.
    pub fn count_failed(&self, model: &str, version: &str) -> usize {
        self.devices
            .iter()
            .filter(|d| {
                d.lock()
                    .failed
                    .get(model)
                    .is_some_and(|(v, _)| v == version)
            })
            .count()
    }

    /// Waits (checking every 20 ms) until `done(self)` holds, or fails after `within`.
    pub async fn wait_for(
        &self,
        within: Duration,
        done: impl Fn(&SimFleet) -> bool,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            if done(self) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > within {
                bail!("the simulated fleet did not get there within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Has every online device poll once (without holding the poll), apply what it got and
    /// report, `concurrency` devices at a time; for setting a fleet up without starting it.
    /// Returns how many devices failed.
    pub async fn sync_once(&self, concurrency: usize) -> usize {
        let shared = &self.shared;
        futures_util::stream::iter(self.devices.iter().filter(|d| d.is_online()))
            .map(|device| async move {
                let done = async {
                    poll_once(shared, device, 0).await?;
                    send_report(shared, device).await
                };
                done.await.is_err()
            })
            .buffer_unordered(concurrency.max(1))
            .filter(|failed| std::future::ready(*failed))
            .count()
            .await
    }

    /// A health report of `device` as it would send it now (used by load generators).
    pub fn report_for(&self, device: &SimDevice) -> AgentReport {
        let mut state = device.lock();
        build_report(&self.shared, &mut state)
    }
}

async fn enroll_one(
    http: &reqwest::Client,
    config: &SimConfig,
    index: usize,
    labels: BTreeMap<String, String>,
) -> anyhow::Result<(SimDevice, String)> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let request = EnrollRequest {
        enrollment_token: config.enrollment_token.clone(),
        device_public_key: DevicePublicKey::of(&key).to_base64(),
        name: Some(format!("sim-{index}")),
        labels: labels.clone(),
        hardware: Default::default(),
        agent_version: "flotilla-sim".into(),
    };
    let res = http
        .post(format!("{}{}", config.base_url, routes::ENROLL))
        .json(&request)
        .send()
        .await
        .context("enrolling a simulated device")?;
    if !res.status().is_success() {
        bail!(
            "enrollment of sim-{index} answered {}: {}",
            res.status(),
            res.text().await.unwrap_or_default()
        );
    }
    let answer: EnrollResponse = res.json().await?;
    Ok((
        SimDevice {
            index,
            id: answer.device_id,
            credential: answer.credential,
            labels,
            state: Mutex::new(DeviceState::default()),
            online: watch::channel(true).0,
        },
        answer.server_public_key_pem,
    ))
}

fn behaviour(shared: &Shared, model: &str, version: &str) -> Behaviour {
    shared
        .behaviours
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(&(model.to_owned(), version.to_owned()))
        .cloned()
        .unwrap_or_default()
}

fn build_report(shared: &Shared, state: &mut DeviceState) -> AgentReport {
    let now = unix_now();
    let start = state.last_report.unwrap_or(now.saturating_sub(60));
    state.last_report = Some(now);
    state.report_seq += 1;
    let mut rng = rand::thread_rng();
    let mut slots: Vec<SlotStatus> = state
        .active
        .iter()
        .map(|(model, version)| SlotStatus {
            model: model.clone(),
            version: version.clone(),
            state: SlotState::Active,
            active_version: Some(version.clone()),
            reason: None,
            shadow: None,
        })
        .collect();
    for (model, (version, reason)) in &state.failed {
        slots.retain(|s| &s.model != model);
        slots.push(SlotStatus {
            model: model.clone(),
            version: version.clone(),
            state: SlotState::Failed,
            active_version: state.active.get(model).cloned(),
            reason: Some(reason.clone()),
            shadow: None,
        });
    }
    let models = state
        .active
        .iter()
        .map(|(m, v)| behaviour(shared, m, v).window(m, v, &mut rng))
        .collect();
    AgentReport {
        report_seq: state.report_seq,
        created_at: now,
        applied_sequence: state.applied_sequence,
        slots,
        health: Some(HealthWindow {
            start,
            end: now,
            models,
            memory_rss_bytes: Some(12 << 20),
            cpu_percent: Some(rng.gen_range(1.0..5.0)),
        }),
        desired_state: None,
    }
}

/// Poll, apply, report; repeat. Errors back off a second or two and go on.
async fn run_device(shared: Arc<Shared>, device: Arc<SimDevice>) {
    let mut online = device.online.subscribe();
    let mut stop = shared.stop.subscribe();
    let interval = shared.config.report_interval;
    let mut next_report = tokio::time::Instant::now() + jitter(interval);
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        if !*online.borrow_and_update() {
            tokio::select! {
                _ = online.changed() => continue,
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        let step = async {
            let changed = poll_once(&shared, &device, shared.config.poll_wait_secs).await?;
            if changed || tokio::time::Instant::now() >= next_report {
                send_report(&shared, &device).await?;
                next_report = tokio::time::Instant::now() + jitter(interval);
            }
            anyhow::Ok(())
        };
        let outcome = tokio::select! {
            r = step => Some(r),
            // Going offline drops the held poll.
            _ = online.wait_for(|o| !*o) => None,
            _ = stop.wait_for(|s| *s) => return,
        };
        match outcome {
            Some(Err(_)) => {
                // As the agent does: exponential backoff with jitter, so a struggling server
                // is not hit by the whole fleet again at once.
                shared.counters.errors.fetch_add(1, Ordering::Relaxed);
                failures = (failures + 1).min(5);
                let ceiling = 1000u64 << failures;
                let pause = Duration::from_millis(rand::thread_rng().gen_range(500..ceiling));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
            Some(Ok(())) => failures = 0,
            None => {}
        }
    }
}

fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::thread_rng().gen_range(0.8..1.2))
}

/// One long-poll; true when a new state was applied.
async fn poll_once(shared: &Shared, device: &SimDevice, wait_secs: u64) -> anyhow::Result<bool> {
    let etag = device.lock().etag.clone();
    let mut req = shared
        .http
        .get(format!(
            "{}{}?wait={wait_secs}",
            shared.config.base_url,
            routes::AGENT_DESIRED_STATE,
        ))
        .bearer_auth(&device.credential);
    if let Some(tag) = &etag {
        req = req.header(reqwest::header::IF_NONE_MATCH, tag);
    }
    let res = req.send().await?;
    match res.status().as_u16() {
        304 => {
            shared.counters.unchanged.fetch_add(1, Ordering::Relaxed);
            Ok(false)
        }
        200 => {
            shared.counters.states.fetch_add(1, Ordering::Relaxed);
            let tag = res
                .headers()
                .get(reqwest::header::ETAG)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = res.bytes().await?;
            let accepted = device.lock().accepted_sequence;
            let state =
                verify_desired_state(&body, &shared.server_key, &device.id, accepted, unix_now())?;
            for slot in &state.slots {
                apply_slot(shared, device, slot).await;
            }
            let mut s = device.lock();
            s.accepted_sequence = state.sequence;
            s.applied_sequence = state.sequence;
            s.etag = tag;
            Ok(true)
        }
        other => bail!("desired state answered {other}"),
    }
}

/// Downloads (or trusts an earlier device's download of) a slot's artifact, checks it, and
/// activates it unless its behaviour says activation fails.
async fn apply_slot(shared: &Shared, device: &SimDevice, slot: &ModelSlot) {
    if device.lock().active.get(&slot.model) == Some(&slot.version) {
        return;
    }
    let outcome = match fetch_verified(shared, device, slot).await {
        Err(e) => Err(format!("download_failed: {e}")),
        Ok(()) => match behaviour(shared, &slot.model, &slot.version).activation_failure {
            Some(reason) => Err(reason),
            None => Ok(()),
        },
    };
    let mut s = device.lock();
    match outcome {
        Ok(()) => {
            s.failed.remove(&slot.model);
            s.active.insert(slot.model.clone(), slot.version.clone());
        }
        Err(reason) => {
            s.failed
                .insert(slot.model.clone(), (slot.version.clone(), reason));
        }
    }
}

async fn fetch_verified(
    shared: &Shared,
    device: &SimDevice,
    slot: &ModelSlot,
) -> anyhow::Result<()> {
    // The first `full_downloads` devices to get here fetch the bytes; the rest trust them.
    let fetch = {
        let mut claimed = shared.downloads.lock().unwrap_or_else(|p| p.into_inner());
        let n = claimed.entry(slot.sha256.clone()).or_insert(0);
        *n += 1;
        *n <= shared.config.full_downloads
    };
    if !fetch {
        return Ok(());
    }
    let url = if slot.url.starts_with("http") {
        slot.url.clone()
    } else {
        format!("{}{}", shared.config.base_url, slot.url)
    };
    let res = shared
        .http
        .get(url)
        .bearer_auth(&device.credential)
        .send()
        .await?
        .error_for_status()?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut body = res.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        if size > slot.size {
            bail!("artifact is larger than the signed {} bytes", slot.size);
        }
        hasher.update(&chunk);
    }
    shared
        .counters
        .downloaded_bytes
        .fetch_add(size, Ordering::Relaxed);
    if size != slot.size || hex::encode(hasher.finalize()) != slot.sha256 {
        bail!("artifact does not match the signed digest and size");
    }
    Ok(())
}

async fn send_report(shared: &Shared, device: &SimDevice) -> anyhow::Result<()> {
    let report = {
        let mut s = device.lock();
        build_report(shared, &mut s)
    };
    let res = shared
        .http
        .post(format!(
            "{}{}",
            shared.config.base_url,
            routes::AGENT_REPORT
        ))
        .bearer_auth(&device.credential)
        .json(&report)
        .send()
        .await?;
    if !res.status().is_success() {
        bail!("report answered {}", res.status());
    }
    shared.counters.reports.fetch_add(1, Ordering::Relaxed);
    device.lock().reported = report
        .slots
        .iter()
        .filter_map(|s| Some((s.model.clone(), s.active_version.clone()?)))
        .collect();
    Ok(())
}
