//! A slow, flaky link for real: the agent process in a network namespace joined to the host by a
//! veth pair, both ends shaped with `tc ... tbf`, and the link cut for a few seconds on a timer.
//! The server runs in the host namespace on the veth's host address, so every byte between them
//! crosses the shaped link, and the host end's `tx_bytes` counts what the server sent.
//!
//! Needs root (`ip netns`, `ip link`, `tc`). [`ShapedLink::create`] says why when it cannot; the
//! caller decides whether that skips or fails (the e2e test fails with `CI=true`). Everything it
//! creates is removed on drop, panics included; names are unique per process and link.
//!
//! [`download_over`] is the scenario the e2e test and `flotilla-bench shaped-link` share.

use anyhow::{anyhow, bail, Context as _};
use serde_json::{json, Value};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::control::{Operator, ServerProcess};

/// A veth pair between the host and a fresh network namespace, shaped on both ends.
pub struct ShapedLink {
    /// The namespace's name.
    pub netns: String,
    /// The host end.
    pub host_if: String,
    /// The namespace end.
    pub ns_if: String,
    /// The host end's address (the server listens here).
    pub host_ip: Ipv4Addr,
    /// The namespace end's address (the agent's).
    pub ns_ip: Ipv4Addr,
    outages: Option<Outages>,
}

struct Outages {
    stop: Arc<AtomicBool>,
    begun: Arc<AtomicU32>,
    thread: Option<JoinHandle<()>>,
}

/// Runs a command; its stderr on failure.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl ShapedLink {
    /// Creates the namespace and the veth pair and shapes both directions with
    /// `tbf rate <rate_kbit>kbit`. An error says what was missing (root, `ip`, `tc`, `tbf`).
    pub fn create(rate_kbit: u32) -> Result<Self, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Unique per process and link, and short: interface names have at most 15 bytes.
        let id = (std::process::id().wrapping_mul(16).wrapping_add(n)) & 0xf_ffff;
        let host_ip = Ipv4Addr::new(
            10,
            200 + ((id >> 14) % 50) as u8,
            (id >> 6) as u8,
            ((id & 0x3f) * 4 + 1) as u8,
        );
        let ns_ip = Ipv4Addr::from(u32::from(host_ip) + 1);
        let link = Self {
            netns: format!("flotilla-{id:05x}"),
            host_if: format!("fl{id:05x}h"),
            ns_if: format!("fl{id:05x}a"),
            host_ip,
            ns_ip,
            outages: None,
        };
        // From here on, drop removes whatever was made.
        run("ip", &["netns", "add", &link.netns])?;
        link.set_up(rate_kbit)?;
        Ok(link)
    }

    fn set_up(&self, rate_kbit: u32) -> Result<(), String> {
        let (ns, host, peer) = (&self.netns, &self.host_if, &self.ns_if);
        let rate = format!("{rate_kbit}kbit");
        run(
            "ip",
            &["link", "add", host, "type", "veth", "peer", "name", peer],
        )?;
        run("ip", &["link", "set", peer, "netns", ns])?;
        run(
            "ip",
            &["addr", "add", &format!("{}/30", self.host_ip), "dev", host],
        )?;
        run("ip", &["link", "set", host, "up"])?;
        run(
            "ip",
            &[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/30", self.ns_ip),
                "dev",
                peer,
            ],
        )?;
        run("ip", &["-n", ns, "link", "set", peer, "up"])?;
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        // A bucket of two full frames and a quarter second of queue, as a slow modem or a
        // cellular link buffers.
        let tbf = [
            "root", "tbf", "rate", &rate, "burst", "3kb", "latency", "250ms",
        ];
        let mut host_args = vec!["qdisc", "add", "dev", host];
        host_args.extend(tbf);
        run("tc", &host_args)?;
        let mut ns_args = vec!["netns", "exec", ns, "tc", "qdisc", "add", "dev", peer];
        ns_args.extend(tbf);
        run("ip", &ns_args)?;
        Ok(())
    }

    /// Cuts the link (the namespace end goes down, so the host end loses carrier) for
    /// `down_for` in every `period`, the first cut `period - down_for` from now, until drop.
    pub fn start_outages(&mut self, period: Duration, down_for: Duration) {
        let stop = Arc::new(AtomicBool::new(false));
        let begun = Arc::new(AtomicU32::new(0));
        let (ns, peer) = (self.netns.clone(), self.ns_if.clone());
        let (stop2, begun2) = (stop.clone(), begun.clone());
        // The link's schedule, not synchronisation: a wait that stops early when asked to.
        let wait = move |d: Duration, stop: &AtomicBool| {
            let until = Instant::now() + d;
            while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            !stop.load(Ordering::Relaxed)
        };
        let thread = std::thread::spawn(move || {
            let up = period.saturating_sub(down_for);
            while wait(up, &stop2) {
                begun2.fetch_add(1, Ordering::Relaxed);
                let _ = run("ip", &["-n", &ns, "link", "set", &peer, "down"]);
                wait(down_for, &stop2);
                let _ = run("ip", &["-n", &ns, "link", "set", &peer, "up"]);
            }
        });
        self.outages = Some(Outages {
            stop,
            begun,
            thread: Some(thread),
        });
    }

    /// How many outages have begun so far.
    pub fn outages_begun(&self) -> u32 {
        self.outages
            .as_ref()
            .map_or(0, |o| o.begun.load(Ordering::Relaxed))
    }

    /// Bytes the host end has sent into the link (frames, headers included): what the server
    /// sent the agent.
    pub fn host_tx_bytes(&self) -> u64 {
        std::fs::read_to_string(format!(
            "/sys/class/net/{}/statistics/tx_bytes",
            self.host_if
        ))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
    }

    /// `program` to be run inside the namespace.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]).arg(program);
        cmd
    }
}

impl Drop for ShapedLink {
    fn drop(&mut self) {
        if let Some(mut o) = self.outages.take() {
            o.stop.store(true, Ordering::Relaxed);
            if let Some(t) = o.thread.take() {
                let _ = t.join();
            }
        }
        // Deleting the namespace deletes its end of the pair, and so the pair; the host end is
        // deleted by name in case the namespace end never moved there.
        let _ = run("ip", &["netns", "del", &self.netns]);
        let _ = run("ip", &["link", "del", &self.host_if]);
    }
}

/// `model` (an ONNX file) grown to `size` bytes by appending a `doc_string` (ModelProto field 6):
/// protobuf readers merge a repeated field into the message, so the model loads and answers as
/// before. A real model of any size with known outputs, for link tests.
pub fn padded_onnx(model: &[u8], size: usize) -> Vec<u8> {
    let mut out = model.to_vec();
    // Tag, length (varint) and the bytes; the length's varint is at most 5 bytes.
    let pad = size.saturating_sub(out.len() + 1 + 5);
    out.push(0x32);
    let mut len = pad as u64;
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend(std::iter::repeat_n(b' ', pad));
    out
}

/// What [`download_over`] saw.
#[derive(Debug, Clone)]
pub struct LinkDownload {
    /// The model's size, bytes.
    pub size: u64,
    /// Bytes the server's end sent from the deploy until the device reported the model active.
    pub bytes_sent: u64,
    /// From the deploy until the server had the device's report of the model active.
    pub arrival: Duration,
    /// Outages begun in that time.
    pub outages: u32,
    /// The agent's log lines naming `download_refused` (there should be none).
    pub refused: Vec<String>,
    /// How often the agent logged that it resumed an interrupted download.
    pub resumed: usize,
    /// The infer answer the agent gave for the model afterwards (through the link).
    pub answer: Value,
}

impl LinkDownload {
    /// Bytes sent per byte of model.
    pub fn ratio(&self) -> f64 {
        self.bytes_sent as f64 / self.size as f64
    }
}

/// Kills the agent before the link goes (a process in a namespace keeps it alive).
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The scenario: a real `flotilla-server` (from `bin_dir`) on the link's host address, the real
/// `flotilla-agent` in the namespace, enrolled; then, with outages of `down_for` every
/// `period`, `model` is deployed as `fraud` 1.0.0 and awaited until the device reports it
/// active (at most `within`), and it is asked to infer `inputs` through the link.
pub async fn download_over(
    link: &mut ShapedLink,
    bin_dir: &Path,
    model: &[u8],
    inputs: &Value,
    (period, down_for): (Duration, Duration),
    within: Duration,
) -> anyhow::Result<LinkDownload> {
    let dir = tempfile::tempdir()?;
    let server = ServerProcess::start_on(
        link.host_ip.into(),
        bin_dir,
        &dir.path().join("server"),
        None,
        &[],
    )
    .await?;
    let op = Operator::new(&server.base, &server.admin);
    op.setup_publisher("fraud").await?;
    op.publish("fraud", "1.0.0", 1, model).await?;
    let trust = dir.path().join("trust-root.json");
    std::fs::write(&trust, serde_json::to_vec(&op.trust_root().await?)?)?;
    let token = op.enrollment_token(1, json!({"link": "shaped"})).await?;

    let log_path = dir.path().join("agent.log");
    let log = std::fs::File::create(&log_path)?;
    let agent_port = 8000;
    let child = link
        .command(&bin_dir.join("flotilla-agent"))
        .args(["--server", &server.base])
        .arg("--state-dir")
        .arg(dir.path().join("agent"))
        .arg("--trust-root")
        .arg(&trust)
        .args(["--listen", &format!("{}:{agent_port}", link.ns_ip)])
        .args(["--workers", "1", "--enroll-token", &token])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting flotilla-agent in the namespace")?;
    let _agent = Agent(child);
    let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // Enrolled (through the link).
    let device = poll_devices(&op, Duration::from_secs(120), |d| d["status"] == "active")
        .await
        .map_err(|e| anyhow!("{e}; agent log:\n{}", log_text()))?;
    let id = device["id"].as_str().unwrap_or_default().to_owned();

    link.start_outages(period, down_for);
    let sent_before = link.host_tx_bytes();
    let deployed = Instant::now();
    op.deploy("fraud", "1.0.0", "link=shaped").await?;
    poll_devices(&op, within, |d| {
        d["id"] == id.as_str()
            && d["slots"].as_array().is_some_and(|slots| {
                slots.iter().any(|s| {
                    s["model"] == "fraud"
                        && s["state"] == "active"
                        && s["active_version"] == "1.0.0"
                })
            })
    })
    .await
    .map_err(|e| anyhow!("{e}; agent log:\n{}", log_text()))?;
    let arrival = deployed.elapsed();
    let bytes_sent = link.host_tx_bytes().saturating_sub(sent_before);
    let outages = link.outages_begun();

    // Served: one answer through the link (retried across an outage).
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("http://{}:{agent_port}/v2/models/fraud/infer", link.ns_ip);
    let deadline = Instant::now() + Duration::from_secs(120);
    let answer = loop {
        match http
            .post(&url)
            .json(&json!({ "inputs": inputs }))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => break r.json::<Value>().await?,
            Ok(r) => bail!("the agent answered {} to infer", r.status()),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => bail!("the agent does not answer through the link: {e}"),
        }
    };
    let text = log_text();
    Ok(LinkDownload {
        size: model.len() as u64,
        bytes_sent,
        arrival,
        outages,
        refused: text
            .lines()
            .filter(|l| l.contains("download_refused"))
            .map(str::to_owned)
            .collect(),
        resumed: text.matches("download interrupted; resuming").count(),
        answer,
    })
}

/// Polls the device list (on the host, off the link) until a device satisfies `done`.
async fn poll_devices(
    op: &Operator,
    within: Duration,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + within;
    loop {
        let list = op.call("GET", "/api/v1/devices", Value::Null, 200).await?;
        if let Some(d) = list["devices"]
            .as_array()
            .and_then(|ds| ds.iter().find(|d| done(d)))
        {
            return Ok(d.clone());
        }
        if Instant::now() > deadline {
            bail!("no device got there within {within:?}: {list}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
