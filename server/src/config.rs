//! Typed, layered configuration: defaults < TOML file < `FLOTILLA_*` environment < flags.
//!
//! Unknown keys in the file are rejected. Environment variables are read only for known keys,
//! because the CLI shares the `FLOTILLA_` prefix (`FLOTILLA_URL`, `FLOTILLA_TOKEN`) and a server
//! must not refuse to start because a user's shell has CLI settings in it.

use clap::Parser;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use flotilla_protocol::signing::SigningKey;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Command-line flags of `flotilla-server`. Each flag overrides the file and the environment.
#[derive(Debug, Default, Parser)]
#[command(
    name = "flotilla-server",
    version,
    about = "Flotilla control plane server"
)]
pub struct Flags {
    /// TOML configuration file (also FLOTILLA_CONFIG).
    #[arg(long, env = "FLOTILLA_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080] (also FLOTILLA_LISTEN).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory for the embedded database and local blobs [default: ./flotilla-data] (also FLOTILLA_DATA_DIR).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: postgres://... or sqlite://...; SQLite under the data directory when unset
    /// (also FLOTILLA_DATABASE_URL).
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Where artifacts live: a directory path, file:///dir or s3://bucket/prefix
    /// [default: <data-dir>/blobs] (also FLOTILLA_BLOB_URL).
    #[arg(long, value_name = "URL")]
    pub blob_url: Option<String>,
    /// Log format: human or json (also FLOTILLA_LOG_FORMAT).
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// PEM certificate chain; serve HTTPS when given with --tls-key (also FLOTILLA_TLS_CERT).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert (also FLOTILLA_TLS_KEY).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// S3-compatible object store settings; unset fields fall back to the usual `AWS_*` variables.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    /// Endpoint URL for S3-compatible servers (MinIO, Ceph, R2...). AWS when unset.
    pub endpoint: Option<String>,
    /// Region; `us-east-1` when unset and none in the environment.
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key (redacted in logs).
    #[serde(serialize_with = "ser_secret_opt")]
    pub secret_access_key: Option<SecretString>,
    /// Allow plain-HTTP endpoints (local test servers).
    #[serde(default)]
    pub allow_http: bool,
}

/// All server settings after layering.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Listen address.
    pub listen: SocketAddr,
    /// Data directory (SQLite database, local blobs).
    pub data_dir: PathBuf,
    /// Database URL; SQLite in `data_dir` when unset. Redacted in `Debug` (it may hold a password).
    #[serde(serialize_with = "ser_secret_opt")]
    pub database_url: Option<SecretString>,
    /// Blob store location; `<data_dir>/blobs` when unset.
    pub blob_url: Option<String>,
    /// S3 settings used when `blob_url` is `s3://...`.
    #[serde(default)]
    pub s3: S3Settings,
    /// Log format.
    pub log_format: LogFormat,
    /// TLS certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Largest JSON request body accepted, in bytes.
    pub max_json_body_bytes: usize,
    /// Largest artifact upload accepted, in bytes.
    pub max_artifact_bytes: u64,
    /// Initial admin token for automation, used only when no token exists yet.
    #[serde(serialize_with = "ser_secret_opt")]
    pub bootstrap_token: Option<SecretString>,
    /// Seconds in-flight requests get to finish on SIGTERM/SIGINT.
    pub shutdown_timeout_secs: u64,
    /// HTTP worker threads; the number of cores when 0.
    pub workers: usize,
    /// Database connection pool size.
    pub db_max_connections: u32,
    /// Seconds agents are told to wait between desired-state polls (jittered ±20%).
    pub poll_interval_secs: u64,
    /// Longest a desired-state long-poll is held open, in seconds.
    pub max_long_poll_secs: u64,
    /// Memory budget of the inference cache (loaded model versions), in bytes; each version
    /// counts as an estimate from its file size (see docs/inference.md).
    pub inference_cache_bytes: u64,
    /// Inference jobs running at once; the number of cores when 0. Four times as many requests
    /// may wait for a worker before the server answers 503.
    pub inference_workers: usize,
    /// Largest inference request body accepted, in bytes (after decompression).
    pub max_inference_body_bytes: usize,
    /// Milliseconds between rollout-engine passes (one also runs shortly after reports
    /// arrive); 0 turns the engine off on this replica.
    pub rollout_tick_ms: u64,
    /// The desired-state signing key (PKCS#8 PEM) from a file only its owner may read (0600 or
    /// stricter), instead of the database. Every replica must be given the same key.
    pub server_key_file: Option<PathBuf>,
    /// The desired-state signing key (PKCS#8 PEM) from an environment secret
    /// (`FLOTILLA_SERVER_KEY`), instead of the database. Redacted in `Debug`.
    #[serde(serialize_with = "ser_secret_opt")]
    pub server_key: Option<SecretString>,
    /// Let webhooks call loopback, link-local, private (RFC 1918, ULA), unspecified and
    /// multicast addresses. Off by default: a webhook URL must not reach inside the network.
    pub webhook_allow_private_destinations: bool,
}

fn ser_secret_opt<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    // Secrets never round-trip through serialisation: only their presence is visible.
    match v {
        Some(_) => s.serialize_some("[redacted]"),
        None => s.serialize_none(),
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./flotilla-data"),
            database_url: None,
            blob_url: None,
            s3: S3Settings::default(),
            log_format: LogFormat::Human,
            tls_cert: None,
            tls_key: None,
            max_json_body_bytes: 1024 * 1024,
            max_artifact_bytes: 8 * 1024 * 1024 * 1024,
            bootstrap_token: None,
            shutdown_timeout_secs: 30,
            workers: 0,
            db_max_connections: 16,
            poll_interval_secs: 30,
            max_long_poll_secs: 60,
            inference_cache_bytes: 512 * 1024 * 1024,
            inference_workers: 0,
            max_inference_body_bytes: flotilla_serving::DEFAULT_BODY_LIMIT,
            rollout_tick_ms: 5000,
            server_key_file: None,
            server_key: None,
            webhook_allow_private_destinations: false,
        }
    }
}

/// Top-level keys read from `FLOTILLA_*` variables (nested keys use `__`, e.g. `FLOTILLA_S3__ENDPOINT`).
const ENV_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "database_url",
    "blob_url",
    "s3",
    "log_format",
    "tls_cert",
    "tls_key",
    "max_json_body_bytes",
    "max_artifact_bytes",
    "bootstrap_token",
    "shutdown_timeout_secs",
    "workers",
    "db_max_connections",
    "poll_interval_secs",
    "max_long_poll_secs",
    "inference_cache_bytes",
    "inference_workers",
    "max_inference_body_bytes",
    "rollout_tick_ms",
    "server_key_file",
    "server_key",
    "webhook_allow_private_destinations",
];

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The layered sources do not form a valid configuration.
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    /// The configuration file named does not exist.
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    /// Settings that parse but contradict each other.
    #[error("invalid configuration: {0}")]
    Inconsistent(String),
}

impl Settings {
    /// Layers defaults, the file named by `flags.config`, the environment and the flags.
    pub fn load(flags: &Flags) -> Result<Self, ConfigError> {
        Self::load_from(flags, Env::prefixed("FLOTILLA_"))
    }

    /// Same as [`Settings::load`] with an explicit environment provider (tests use `Env::raw` maps).
    pub fn load_from(flags: &Flags, env: Env) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = &flags.config {
            if !path.exists() {
                return Err(ConfigError::MissingFile(path.clone()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let env = env.split("__").filter(|key| {
            let top = key
                .as_str()
                .split('.')
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            ENV_KEYS.contains(&top.as_str())
        });
        figment = figment.merge(env);
        figment = figment.merge(Serialized::defaults(FlagOverrides::from(flags)));
        let settings: Settings = figment.extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Inconsistent(
                "tls_cert and tls_key must be given together".into(),
            ));
        }
        if self.max_json_body_bytes < 1024 || self.max_inference_body_bytes < 1024 {
            return Err(ConfigError::Inconsistent(
                "max_json_body_bytes and max_inference_body_bytes must be at least 1024".into(),
            ));
        }
        if self.poll_interval_secs == 0 || self.max_long_poll_secs == 0 {
            return Err(ConfigError::Inconsistent(
                "poll_interval_secs and max_long_poll_secs must be at least 1".into(),
            ));
        }
        if self.db_max_connections == 0 {
            return Err(ConfigError::Inconsistent(
                "db_max_connections must be at least 1".into(),
            ));
        }
        if self.server_key_file.is_some() && self.server_key.is_some() {
            return Err(ConfigError::Inconsistent(
                "server_key_file and server_key name two keys: give one".into(),
            ));
        }
        Ok(())
    }

    /// The desired-state signing key the configuration gives, if it gives one: from
    /// `server_key_file` (refused unless only its owner can read it) or `server_key`.
    pub fn configured_server_key(&self) -> anyhow::Result<Option<SigningKey>> {
        let pem = match (&self.server_key_file, &self.server_key) {
            (Some(path), _) => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::metadata(path)
                        .map_err(|e| anyhow::anyhow!("server_key_file {}: {e}", path.display()))?
                        .permissions()
                        .mode();
                    if mode & 0o077 != 0 {
                        anyhow::bail!(
                            "server_key_file {} is readable by others (mode {:o}): chmod 600 it",
                            path.display(),
                            mode & 0o777
                        );
                    }
                }
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("server_key_file {}: {e}", path.display()))?
            }
            (None, Some(secret)) => secret.expose_secret().to_owned(),
            (None, None) => return Ok(None),
        };
        SigningKey::from_pkcs8_pem(pem.trim())
            .map(Some)
            .map_err(|e| {
                anyhow::anyhow!("the configured server key is not a PKCS#8 ed25519 PEM: {e}")
            })
    }
}

/// Only the flags that were given, so absent flags do not override lower layers.
#[derive(Serialize)]
struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blob_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<LogFormat>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
}

impl From<&Flags> for FlagOverrides {
    fn from(f: &Flags) -> Self {
        Self {
            listen: f.listen,
            data_dir: f.data_dir.clone(),
            database_url: f.database_url.clone(),
            blob_url: f.blob_url.clone(),
            log_format: f.log_format,
            tls_cert: f.tls_cert.clone(),
            tls_key: f.tls_key.clone(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;
    use secrecy::ExposeSecret;

    fn flags() -> Flags {
        Flags::default()
    }

    #[test]
    fn defaults_need_no_configuration() {
        Jail::expect_with(|_| {
            let s = Settings::load(&flags()).unwrap();
            assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(s.data_dir, PathBuf::from("./flotilla-data"));
            assert!(s.database_url.is_none());
            assert!(s.bootstrap_token.is_none());
            Ok(())
        });
    }

    #[test]
    fn file_then_env_then_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "f.toml",
                "listen = \"127.0.0.1:9000\"\ndata_dir = \"/from-file\"\nblob_url = \"/blobs-file\"\n",
            )?;
            jail.set_env("FLOTILLA_DATA_DIR", "/from-env");
            jail.set_env("FLOTILLA_BLOB_URL", "/blobs-env");
            let mut f = flags();
            f.config = Some("f.toml".into());
            f.blob_url = Some("/blobs-flag".into());
            let s = Settings::load(&f).unwrap();
            assert_eq!(s.listen.to_string(), "127.0.0.1:9000", "file beats default");
            assert_eq!(s.data_dir, PathBuf::from("/from-env"), "env beats file");
            assert_eq!(s.blob_url.as_deref(), Some("/blobs-flag"), "flag beats env");
            Ok(())
        });
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        Jail::expect_with(|jail| {
            jail.create_file("f.toml", "listne = \"127.0.0.1:9000\"\n")?;
            let mut f = flags();
            f.config = Some("f.toml".into());
            let err = Settings::load(&f).unwrap_err().to_string();
            assert!(err.contains("listne"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn cli_variables_in_the_environment_are_ignored() {
        Jail::expect_with(|jail| {
            jail.set_env("FLOTILLA_TOKEN", "flt_something");
            jail.set_env("FLOTILLA_URL", "http://x");
            assert!(Settings::load(&flags()).is_ok());
            Ok(())
        });
    }

    #[test]
    fn secrets_come_from_env_and_are_redacted_in_debug() {
        Jail::expect_with(|jail| {
            jail.set_env("FLOTILLA_DATABASE_URL", "postgres://u:hunter2@db/x");
            jail.set_env("FLOTILLA_BOOTSTRAP_TOKEN", "flt_bootstrap_secret_value");
            jail.set_env("FLOTILLA_S3__SECRET_ACCESS_KEY", "s3-secret");
            let s = Settings::load(&flags()).unwrap();
            assert_eq!(
                s.database_url.as_ref().unwrap().expose_secret(),
                "postgres://u:hunter2@db/x"
            );
            assert_eq!(
                s.s3.secret_access_key.as_ref().unwrap().expose_secret(),
                "s3-secret"
            );
            let debug = format!("{s:?}");
            assert!(!debug.contains("hunter2"), "{debug}");
            assert!(!debug.contains("flt_bootstrap_secret_value"), "{debug}");
            assert!(!debug.contains("s3-secret"), "{debug}");
            Ok(())
        });
    }

    #[test]
    fn the_shipped_example_config_is_valid() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/flotilla-server.example.toml");
        Jail::expect_with(|_| {
            let mut f = flags();
            f.config = Some(example.into());
            let s = Settings::load(&f).unwrap();
            assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(s.max_artifact_bytes, 8 * 1024 * 1024 * 1024);
            // The example shows the defaults.
            let defaults = Settings::default();
            assert_eq!(s.inference_cache_bytes, defaults.inference_cache_bytes);
            assert_eq!(s.inference_workers, defaults.inference_workers);
            assert_eq!(
                s.max_inference_body_bytes,
                defaults.max_inference_body_bytes
            );
            Ok(())
        });
    }

    #[test]
    fn inference_settings_come_from_file_and_env() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "f.toml",
                "inference_cache_bytes = 1048576\ninference_workers = 3\n",
            )?;
            jail.set_env("FLOTILLA_INFERENCE_WORKERS", "5");
            let mut f = flags();
            f.config = Some("f.toml".into());
            let s = Settings::load(&f).unwrap();
            assert_eq!(s.inference_cache_bytes, 1024 * 1024);
            assert_eq!(s.inference_workers, 5, "env beats file");
            jail.set_env("FLOTILLA_MAX_INFERENCE_BODY_BYTES", "10");
            assert!(Settings::load(&f).is_err());
            Ok(())
        });
    }

    #[test]
    fn missing_config_file_is_an_error() {
        Jail::expect_with(|_| {
            let mut f = flags();
            f.config = Some("nope.toml".into());
            assert!(matches!(
                Settings::load(&f),
                Err(ConfigError::MissingFile(_))
            ));
            Ok(())
        });
    }
}
