//! Agent configuration: defaults < TOML file < `FLOTILLA_AGENT_*`-style environment < flags.

use clap::Parser;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `flotilla-agent` flags; each can also come from the environment variable named in its help.
#[derive(Debug, Clone, Parser)]
#[command(name = "flotilla-agent", version, about = "Flotilla edge agent")]
pub struct AgentArgs {
    /// Server URL, e.g. https://flotilla.example.com.
    #[arg(long, env = "FLOTILLA_SERVER")]
    pub server: String,
    /// State directory (identity, models, queued reports).
    #[arg(long, env = "FLOTILLA_STATE_DIR", default_value = "./flotilla-agent")]
    pub state_dir: PathBuf,
    /// One-time enrollment token; needed only for the first start.
    #[arg(long, env = "FLOTILLA_ENROLL_TOKEN", hide_env_values = true)]
    pub enroll_token: Option<String>,
    /// Trust root file (`flotilla trust export`): publisher keys and thresholds.
    #[arg(long, env = "FLOTILLA_TRUST_ROOT")]
    pub trust_root: PathBuf,
    /// The server's desired-state public key (PEM file). Pinned at enrollment when absent.
    #[arg(long, env = "FLOTILLA_SERVER_KEY")]
    pub server_key: Option<PathBuf>,
    /// Local Open Inference Protocol address.
    #[arg(long, env = "FLOTILLA_AGENT_LISTEN", default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Labels to ask for at enrollment, `key=value` (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Device name shown to operators.
    #[arg(long, env = "FLOTILLA_DEVICE_NAME")]
    pub name: Option<String>,
    /// Longest a desired-state long-poll is held, seconds.
    #[arg(long, env = "FLOTILLA_POLL_WAIT", default_value_t = 30)]
    pub poll_wait_secs: u64,
    /// Slowest accepted download, bytes per second.
    #[arg(long, env = "FLOTILLA_MIN_DOWNLOAD_RATE", default_value_t = 64 * 1024)]
    pub min_download_bytes_per_sec: u64,
    /// Inference worker threads (0 = one per core).
    #[arg(long, env = "FLOTILLA_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{s}` is not key=value"))
}

impl AgentArgs {
    /// Labels as a map.
    pub fn label_map(&self) -> BTreeMap<String, String> {
        self.labels.iter().cloned().collect()
    }
}
