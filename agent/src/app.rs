//! The agent process: enroll once, then keep the device's models in line with its signed
//! desired state while serving them over the Open Inference Protocol on a local port. The
//! `flotilla-agent` binary is a thin wrapper; the demo runs the same code.

use crate::config::AgentArgs;
use crate::hybrid::{EscalationStats, Escalator};
use crate::inference::{self, LocalApi, LocalApiConfig};
use crate::shadow::ShadowModel;
use crate::sync::client::{DownloadLimits, ServerClient};
use crate::sync::state_dir::StateDir;
use crate::sync::trust::Trust;
use crate::sync::updater::{
    clamp_wait, ensure_enrolled, system_clock, Clock, HealthSource, Updater,
};
use crate::sync::ModelSink;
use flotilla_protocol::agent::{
    DesiredStateHealth, EnrollRequest, EscalationPolicy, HardwareProfile, HealthWindow, LatencyMs,
    ModelHealth,
};
use flotilla_runtime::Model;
use std::sync::Arc;

/// Serves what the updater installs: the update loop's [`ModelSink`] over the local API.
#[derive(Debug)]
pub struct ApiSink(pub LocalApi);

impl ModelSink for ApiSink {
    fn install(&self, name: &str, version: &str, model: Arc<Model>) {
        self.0.registry().install(name, version, model);
    }
    fn remove(&self, name: &str) {
        self.0.registry().remove(name);
    }
    fn set_escalation(&self, name: &str, policy: Option<EscalationPolicy>) {
        self.0.registry().set_escalation(name, policy);
    }
    fn set_shadow(&self, name: &str, shadow: Option<ShadowModel>) {
        self.0.registry().set_shadow(name, shadow);
    }
    fn set_desired_state_health(&self, health: &DesiredStateHealth) {
        self.0.registry().set_desired_state_health(health);
    }
}

/// The health window of each report: the local API's figures per model version, with the
/// escalations and shadow runs of the same version.
pub fn health_source(api: LocalApi, escalations: EscalationStats, clock: Clock) -> HealthSource {
    let start = std::sync::Mutex::new(clock());
    Arc::new(move || {
        let now = clock();
        let from = start
            .lock()
            .map(|mut s| std::mem::replace(&mut *s, now))
            .unwrap_or(now);
        // Shadow figures first: a shadow run is recorded after its request, so each one taken
        // here has its request in the window taken next (or, rarely, in the previous one).
        let mut shadows = api.registry().shadow_stats().take_window();
        let w = api.recorder().take_window();
        let mut escalated = escalations.take_window();
        let mut models: Vec<ModelHealth> = w
            .models
            .into_iter()
            .map(|m| {
                let e = escalated.remove(&(m.model.clone(), m.version.clone()));
                ModelHealth {
                    inference_count: m.inferences,
                    error_count: m.errors + m.non_finite,
                    latency_ms: m
                        .latency_ms
                        .map_or(LatencyMs::default(), crate::wire_latency),
                    escalations: e.as_ref().map_or(0, |e| e.escalations),
                    escalation_fallbacks: e.as_ref().map_or(0, |e| e.fallbacks),
                    escalation_latency_ms: e.and_then(|e| e.latency_ms),
                    shadow: shadows.remove(&(m.model.clone(), m.version.clone())),
                    model: m.model,
                    version: m.version,
                }
            })
            .collect();
        // Shadow runs whose requests fell in the previous window: reported, with no inferences
        // (which weigh nothing in latency figures).
        models.extend(
            shadows
                .into_iter()
                .map(|((model, version), shadow)| ModelHealth {
                    model,
                    version,
                    inference_count: 0,
                    error_count: 0,
                    latency_ms: LatencyMs::default(),
                    escalations: 0,
                    escalation_fallbacks: 0,
                    escalation_latency_ms: None,
                    shadow: Some(shadow),
                }),
        );
        Some(HealthWindow {
            start: from,
            end: now,
            models,
            memory_rss_bytes: rss_bytes(),
            cpu_percent: None,
        })
    })
}

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

fn hardware() -> HardwareProfile {
    HardwareProfile {
        arch: std::env::consts::ARCH.into(),
        os: std::env::consts::OS.into(),
        cpu_cores: std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(1)),
        memory_mib: std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .next()
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
            .map_or(0, |kb| kb / 1024),
        accelerators: Vec::new(),
    }
}

/// Runs the agent until Ctrl-C / SIGTERM or a fatal error.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let dir = StateDir::open(&args.state_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot use state directory {}: {e}",
            args.state_dir.display()
        )
    })?;
    let trust = Trust::load(&args.trust_root)?;
    let configured_key = match &args.server_key {
        Some(p) => {
            Some(std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?)
        }
        None => None,
    };
    let request = EnrollRequest {
        enrollment_token: String::new(),
        device_public_key: String::new(),
        name: args.name.clone(),
        labels: args.label_map(),
        hardware: hardware(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
    };
    let identity = ensure_enrolled(
        &dir,
        &args.server,
        args.enroll_token.as_deref(),
        request,
        configured_key.as_deref(),
    )
    .await?;

    let mut config = LocalApiConfig::default();
    if args.workers > 0 {
        config.workers = args.workers;
    }
    let api = LocalApi::new(&config);
    // One credential for everything that talks to the server, so a rotation reaches all.
    let client = ServerClient::new(&args.server, Some(identity.credential.clone()))?;
    let credential = client
        .credential()
        .ok_or_else(|| anyhow::anyhow!("the server client has no credential"))?;
    let escalator = Escalator::with_credential(&args.server, credential)?;
    let escalations = escalator.stats().clone();
    // With no escalator the registry answers every request locally: its inputs never leave
    // the device, whatever policy a desired state carries.
    if args.no_escalation {
        tracing::info!("escalation is off on this device: every answer is local");
    } else {
        api.registry().set_escalator(escalator);
    }
    let listener = std::net::TcpListener::bind(args.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let server = inference::serve(listener, api.clone())?;
    let handle = server.handle();
    println!(
        "flotilla-agent {} serving the Open Inference Protocol on http://{}",
        identity.device_id, args.listen
    );

    let clock = system_clock();
    let limits = DownloadLimits {
        min_bytes_per_sec: args.min_download_bytes_per_sec,
        ..DownloadLimits::default()
    };
    let mut updater = Updater::new(
        dir,
        client,
        identity,
        trust,
        Arc::new(ApiSink(api.clone())),
        health_source(api, escalations, clock.clone()),
        clock,
        limits,
    )?;
    updater.set_credential_max_age(std::time::Duration::from_secs(
        args.credential_max_age_days.saturating_mul(24 * 3600),
    ));
    // Serve what is installed before talking to the server: offline devices keep working.
    updater.restore().await?;
    let wait = clamp_wait(args.poll_wait_secs);
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let sync = tokio::spawn(updater.run(wait, stop));
    server.await?;
    sync.abort();
    handle.stop(true).await;
    Ok(())
}

/// Installs the agent's log subscriber: human-readable, or JSON lines with `--log-json`;
/// `RUST_LOG` overrides the `info` default.
pub fn init_logging(args: &AgentArgs) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if args.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        // Colour only on a terminal: journald and log files get plain text.
        use std::io::IsTerminal;
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            .with_ansi(std::io::stdout().is_terminal())
            .init();
    }
}
