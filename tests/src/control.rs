//! Driving a real server process from outside, as operators and benchmarks do: start the
//! `flotilla-server` binary, publish signed models, deploy, mint enrollment tokens.

use anyhow::{anyhow, bail, Context as _};
use flotilla_protocol::signing::{sign_model, ModelFacts, Resource, SigningKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server (or any HTTP process) started by the benchmarks; killed on drop.
#[derive(Debug)]
pub struct ServerProcess {
    /// The child.
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The admin token it was bootstrapped with.
    pub admin: String,
}

impl ServerProcess {
    /// Starts `flotilla-server` from `bin_dir` on a free port with `data_dir`, an optional
    /// database URL and extra `FLOTILLA_*` settings, and waits for `/readyz`.
    pub async fn start(
        bin_dir: &Path,
        data_dir: &Path,
        database_url: Option<&str>,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        Self::start_on(
            std::net::Ipv4Addr::LOCALHOST.into(),
            bin_dir,
            data_dir,
            database_url,
            env,
        )
        .await
    }

    /// [`ServerProcess::start`] listening on `ip` (the host end of a shaped link, say).
    pub async fn start_on(
        ip: std::net::IpAddr,
        bin_dir: &Path,
        data_dir: &Path,
        database_url: Option<&str>,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let port = crate::free_port();
        let admin = format!("flt_bench{}", rand_suffix());
        let mut cmd = Command::new(bin_dir.join("flotilla-server"));
        cmd.args(["--listen", &format!("{ip}:{port}")])
            .arg("--data-dir")
            .arg(data_dir)
            .env("FLOTILLA_BOOTSTRAP_TOKEN", &admin)
            .env("RUST_LOG", "error")
            // A backtrace per error would make an overloaded server slower still.
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(url) = database_url {
            cmd.args(["--database-url", url]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("starting flotilla-server")?;
        let server = Self {
            child,
            base: format!("http://{ip}:{port}"),
            admin,
        };
        wait_ready(&format!("{}/readyz", server.base), Duration::from_secs(60)).await?;
        Ok(server)
    }

    /// Resident and peak resident memory (VmRSS, VmHWM) in bytes.
    pub fn memory(&self) -> (u64, u64) {
        process_memory(self.child.id())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `url` answers 2xx.
pub async fn wait_ready(url: &str, within: Duration) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + within;
    loop {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{url} did not answer within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// VmRSS and VmHWM of a process, bytes (zeros when unreadable).
pub fn process_memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn rand_suffix() -> String {
    use rand::distributions::Alphanumeric;
    use rand::Rng as _;
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(40)
        .map(char::from)
        .collect()
}

/// An operator's client of a running server.
#[derive(Debug, Clone)]
pub struct Operator {
    /// Base URL.
    pub base: String,
    /// Admin token.
    pub token: String,
    /// HTTP client.
    pub http: reqwest::Client,
    /// The publisher key models are signed with (registered by [`Operator::setup_publisher`]).
    pub publisher: SigningKey,
}

impl Operator {
    /// A client for `base` with an admin `token` and a fresh publisher key.
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            base: base.to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::new(),
            publisher: SigningKey::generate(&mut rand::rngs::OsRng),
        }
    }

    /// Calls the API and checks the status; returns the JSON body (null when empty).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Value,
        status: u16,
    ) -> anyhow::Result<Value> {
        let m = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self
            .http
            .request(m, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if !body.is_null() {
            req = req.json(&body);
        }
        let res = req.send().await?;
        let got = res.status().as_u16();
        let text = res.text().await.unwrap_or_default();
        if got != status {
            bail!("{method} {path} answered {got}, expected {status}: {text}");
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Registers the publisher key and creates `model`.
    pub async fn setup_publisher(&self, model: &str) -> anyhow::Result<()> {
        let pem = self.publisher.public_key().to_pem();
        self.call(
            "POST",
            "/api/v1/publisher-keys",
            json!({"name": "bench", "public_key_pem": pem}),
            201,
        )
        .await?;
        self.call("POST", "/api/v1/models", json!({ "name": model }), 201)
            .await?;
        Ok(())
    }

    /// Uploads `bytes`, signs them as `model`@`version` (release counter `release`) and
    /// publishes the version.
    pub async fn publish(
        &self,
        model: &str,
        version: &str,
        release: u64,
        bytes: &[u8],
    ) -> anyhow::Result<()> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let hex = hex::encode(digest);
        let res = self
            .http
            .put(format!("{}/api/v1/artifacts/sha256/{hex}", self.base))
            .bearer_auth(&self.token)
            .body(bytes.to_vec())
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("artifact upload answered {}", res.status());
        }
        let facts = ModelFacts {
            model: model.into(),
            version: version.into(),
            release: Some(release),
            size: Some(bytes.len() as u64),
            compatibility: None,
            inputs: None,
            outputs: None,
            sample_input: None,
            rollback_allowed_below: None,
        };
        let bundle = sign_model(
            &self.publisher,
            &[Resource::single_file(digest)],
            "model.onnx",
            Some(&facts),
        )
        .map_err(|e| anyhow!("{e}"))?;
        let bundle = String::from_utf8(bundle.to_json())?;
        self.call(
            "POST",
            &format!("/api/v1/models/{model}/versions"),
            json!({"version": version, "artifact": {"sha256": hex, "size": bytes.len()}, "bundles": [bundle]}),
            201,
        )
        .await?;
        Ok(())
    }

    /// Deploys `model`@`version` to the devices matching `selector`.
    pub async fn deploy(&self, model: &str, version: &str, selector: &str) -> anyhow::Result<()> {
        let res = self
            .http
            .put(format!("{}/api/v1/deployments", self.base))
            .bearer_auth(&self.token)
            .json(&json!({"model": model, "version": version, "selector": selector}))
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("deploy answered {}: {}", res.status(), res.text().await?);
        }
        Ok(())
    }

    /// An enrollment token for `uses` devices with `labels`, which lets them set `shard`
    /// themselves (the benchmarks' simulated devices spread over shards).
    pub async fn enrollment_token(&self, uses: u32, labels: Value) -> anyhow::Result<String> {
        let v = self
            .call(
                "POST",
                "/api/v1/enrollment-tokens",
                json!({"name": "bench", "labels": labels, "max_uses": uses,
                       "allowed_device_labels": ["shard"]}),
                201,
            )
            .await?;
        v["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no token in {v}"))
    }

    /// The trust root agents are provisioned with, as JSON.
    pub async fn trust_root(&self) -> anyhow::Result<Value> {
        self.call("GET", "/api/v1/trust-root", Value::Null, 200)
            .await
    }
}

/// The directory of the running executable (where cargo puts the workspace binaries).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("executable has no directory"))
}
