//! Agent configuration: defaults < TOML file < `FLOTILLA_AGENT_*`-style environment < flags.

use clap::{CommandFactory, Parser};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `flotilla-agent` flags; each can also come from the environment variable named in its help.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "flotilla-agent",
    version,
    about = "Flotilla edge agent",
    args_override_self = true
)]
pub struct AgentArgs {
    /// TOML file with any of these settings (keys as the flags, `-` or `_`; labels as a
    /// `[labels]` table). Environment variables and flags override it.
    #[arg(long, env = "FLOTILLA_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
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
    /// Slowest accepted download, bytes per second, judged over each minute of a transfer.
    #[arg(long, env = "FLOTILLA_MIN_DOWNLOAD_RATE", default_value_t = 1024)]
    pub min_download_bytes_per_sec: u64,
    /// Rotate the device credential when it is this many days old (0: only when an operator
    /// asks, with `flotilla devices rotate-credential`).
    #[arg(long, env = "FLOTILLA_CREDENTIAL_MAX_AGE_DAYS", default_value_t = 30)]
    pub credential_max_age_days: u64,
    /// Inference worker threads (0 = one per core).
    #[arg(long, env = "FLOTILLA_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Log as JSON lines.
    #[arg(long)]
    pub log_json: bool,
    /// Never send an input to the server, whatever escalation policy the server signs: local
    /// answers only (the privacy reason to run on the edge).
    #[arg(long, env = "FLOTILLA_NO_ESCALATION")]
    pub no_escalation: bool,
}

/// A `--label key=value`, by the wire's rule (`flotilla_protocol::labels`): a label the server
/// would refuse at enrollment stops the agent at start, with the server's message.
fn parse_label(s: &str) -> Result<(String, String), String> {
    flotilla_protocol::labels::Label::parse(s)
        .map(|l| (l.key, l.value))
        .map_err(|e| e.to_string())
}

impl AgentArgs {
    /// Labels as a map.
    pub fn label_map(&self) -> BTreeMap<String, String> {
        self.labels.iter().cloned().collect()
    }
}

/// Parses the process arguments, reading `--config FILE` (or `FLOTILLA_AGENT_CONFIG`) first:
/// defaults < file < environment < flags.
pub fn parse_args() -> anyhow::Result<AgentArgs> {
    parse_args_from(std::env::args_os().collect(), |name| std::env::var_os(name))
}

/// [`parse_args`] over explicit arguments and environment (for tests).
pub fn parse_args_from(
    args: Vec<OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> anyhow::Result<AgentArgs> {
    let config = config_path(&args).or_else(|| env("FLOTILLA_AGENT_CONFIG").map(PathBuf::from));
    let mut argv = args;
    if let Some(path) = config {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let from_file =
            file_args(&text, &env).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        // File values go first so that flags given later override them.
        let program = argv
            .first()
            .cloned()
            .unwrap_or_else(|| "flotilla-agent".into());
        argv = std::iter::once(program)
            .chain(from_file)
            .chain(argv.into_iter().skip(1))
            .collect();
    }
    Ok(AgentArgs::try_parse_from(argv)?)
}

fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    None
}

/// Turns the TOML file into flags, skipping settings whose environment variable is set (the
/// environment wins over the file). Unknown keys are errors, as in the server's config.
fn file_args(text: &str, env: &impl Fn(&str) -> Option<OsString>) -> Result<Vec<OsString>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let command = AgentArgs::command();
    let mut out: Vec<OsString> = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        if long == "labels" {
            let labels = value
                .as_table()
                .ok_or("`labels` must be a table of key = \"value\"")?;
            for (k, v) in labels {
                let v = v.as_str().ok_or(format!("label `{k}` must be a string"))?;
                out.push("--label".into());
                out.push(format!("{k}={v}").into());
            }
            continue;
        }
        let arg = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()) && long != "config" && long != "label")
            .ok_or(format!("unknown setting `{key}`"))?;
        if arg
            .get_env()
            .and_then(|name| env(&name.to_string_lossy()))
            .is_some()
        {
            continue;
        }
        match value {
            toml::Value::Boolean(true) => out.push(format!("--{long}").into()),
            toml::Value::Boolean(false) => {}
            toml::Value::String(s) => {
                out.push(format!("--{long}").into());
                out.push(s.into());
            }
            toml::Value::Integer(i) => {
                out.push(format!("--{long}").into());
                out.push(i.to_string().into());
            }
            other => return Err(format!("`{key}` cannot be {}", other.type_str())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(file: &str, flags: &[&str], env: &[(&str, &str)]) -> anyhow::Result<AgentArgs> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, file).unwrap();
        let mut args: Vec<OsString> = vec!["flotilla-agent".into(), "--config".into(), path.into()];
        args.extend(flags.iter().map(OsString::from));
        // clap reads the real environment, so the variables are set for real; only this test
        // sets them, and the other tests give these settings in their file (flags win).
        for (k, v) in env {
            std::env::set_var(k, v);
        }
        let parsed = if env.is_empty() {
            // Blind to the variables another test may have set: every setting comes from the
            // file, whose values are passed as flags and so beat clap's own env lookup.
            parse_args_from(args, |_| None)
        } else {
            parse_args_from(args, |name| std::env::var_os(name))
        };
        for (k, _) in env {
            std::env::remove_var(k);
        }
        parsed
    }

    const FILE: &str = r#"
server = "https://file.example"
trust_root = "/etc/flotilla/trust-root.json"
listen = "127.0.0.1:9000"
poll-wait-secs = 12
log_json = true
[labels]
site = "plant-7"
"#;

    #[test]
    fn the_file_sets_what_flags_and_env_leave_alone() {
        let a = parse(FILE, &[], &[]).unwrap();
        assert_eq!(a.server, "https://file.example");
        assert_eq!(a.listen.port(), 9000);
        assert_eq!(a.poll_wait_secs, 12);
        assert!(a.log_json);
        assert_eq!(a.label_map()["site"], "plant-7");
    }

    #[test]
    fn env_beats_the_file_and_flags_beat_both() {
        let a = parse(
            FILE,
            &["--poll-wait-secs", "3"],
            &[
                ("FLOTILLA_SERVER", "https://env.example"),
                ("FLOTILLA_POLL_WAIT", "7"),
            ],
        )
        .unwrap();
        assert_eq!(a.server, "https://env.example");
        assert_eq!(a.poll_wait_secs, 3);
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused() {
        let e = parse("sever = \"x\"\ntrust_root = \"t\"", &[], &[]).unwrap_err();
        assert!(e.to_string().contains("unknown setting `sever`"), "{e}");
        let e = parse("server = [1]\ntrust_root = \"t\"", &[], &[]).unwrap_err();
        assert!(e.to_string().contains("cannot be array"), "{e}");
        let e = parse(
            "poll_wait_secs = \"soon\"\nserver = \"s\"\ntrust_root = \"t\"",
            &[],
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("soon"), "{e}");
    }
}
