//! The demo run: server, publisher, deployment, agents, and the check that they answer right.

use crate::publish::{self, Api, FRAUD};
use crate::DemoArgs;
use anyhow::Context;
use flotilla_protocol::signing::SigningKey;
use flotilla_server::config::Settings;
use flotilla_server::startup::Application;
use reqwest::Method;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MARKER: &str = ".flotilla-demo";
const MODEL: &str = "fraud";
const SELECTOR: &str = "demo=true";
/// The hybrid agent's extra label, and the deployment that gives it an escalation policy.
const HYBRID_LABEL: &str = "mode=hybrid";
const HYBRID_SELECTOR: &str = "demo=true,mode=hybrid";
/// Between the sample rows' confidences under fraud 1.0.0, so some rows escalate and some not.
const HYBRID_THRESHOLD: f64 = 0.72;
/// Largest difference from onnxruntime's recorded output that still counts as the same answer.
const TOLERANCE: f64 = 1e-4;

/// One agent process of the demo.
struct Agent {
    name: String,
    hybrid: bool,
    addr: SocketAddr,
    log: PathBuf,
    child: Child,
}

/// Agents are stopped (their stdin closes) when the demo ends, however it ends.
struct Agents(Vec<Agent>);

impl Drop for Agents {
    fn drop(&mut self) {
        for agent in &mut self.0 {
            drop(agent.child.stdin.take());
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for agent in &mut self.0 {
            while Instant::now() < deadline && matches!(agent.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = agent.child.kill();
            let _ = agent.child.wait();
        }
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = prepare_dir(&args.data_dir)?;
    let settings = Settings {
        listen: args.listen,
        data_dir: dir.join("server"),
        // Nothing of the demo's needs a long graceful stop.
        shutdown_timeout_secs: 2,
        ..Settings::default()
    };
    let app = Application::build(settings)
        .await
        .context("starting the server (another port: --listen 127.0.0.1:PORT)")?;
    let token = app
        .bootstrap_secret()
        .context("a fresh demo server always creates an admin token")?
        .to_owned();
    let base = format!("http://{}", app.local_addr());
    let server = tokio::spawn(app.run_until_stopped());
    println!();
    println!("Flotilla demo");
    println!(
        "  [1/6] server     {base}  (SQLite and blobs under {})",
        dir.join("server").display()
    );

    let api = Api::new(base.clone(), token.clone())?;
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let key_file = dir.join("publisher.key");
    write_private(&key_file, key.to_pkcs8_pem()?.as_bytes())?;
    std::fs::write(dir.join("publisher.pub"), key.public_key().to_pem())?;
    api.call(
        Method::POST,
        "/api/v1/publisher-keys",
        Some(json!({"name": "demo-ml-team", "public_key_pem": key.public_key().to_pem()})),
    )
    .await?;
    let trust_root = dir.join("trust-root.json");
    let root = api.call(Method::GET, "/api/v1/trust-root", None).await?;
    std::fs::write(&trust_root, serde_json::to_vec_pretty(&root)?)?;
    println!(
        "  [2/6] publisher  {} registered; agents trust {}",
        key_file.display(),
        trust_root.display()
    );

    api.call(
        Method::POST,
        "/api/v1/models",
        Some(json!({"name": MODEL, "description": "card fraud scoring (sample model)"})),
    )
    .await?;
    for model in &FRAUD {
        publish::publish(&api, &key, MODEL, model).await?;
    }
    println!(
        "  [3/6] models     {MODEL} 1.0.0 and 1.1.0 signed (ed25519, OpenSSF bundle) and published"
    );

    api.call(
        Method::PUT,
        "/api/v1/deployments",
        Some(json!({"model": MODEL, "version": FRAUD[0].version, "selector": SELECTOR})),
    )
    .await?;
    api.call(
        Method::PUT,
        "/api/v1/deployments",
        Some(
            json!({"model": MODEL, "version": FRAUD[0].version, "selector": HYBRID_SELECTOR,
                    "escalation": {"output": "probabilities", "threshold": HYBRID_THRESHOLD,
                                   "server_model": MODEL, "server_version": FRAUD[1].version,
                                   "timeout_ms": 1000}}),
        ),
    )
    .await?;
    println!(
        "  [4/6] deployed   {MODEL}@{} to devices labelled {SELECTOR}; on {HYBRID_SELECTOR}, \
         inputs with confidence below {HYBRID_THRESHOLD} escalate to the server's {MODEL}@{}",
        FRAUD[0].version, FRAUD[1].version
    );

    let enrollment = api
        .call(
            Method::POST,
            "/api/v1/enrollment-tokens",
            Some(json!({
                "name": "demo",
                "labels": {"demo": "true"},
                // The hybrid agent asks for `mode=hybrid` itself.
                "allowed_device_labels": ["mode"],
                "max_uses": args.agents,
                "expires_in_secs": 3600,
            })),
        )
        .await?;
    let enroll_token = enrollment["token"]
        .as_str()
        .context("enrollment token in the answer")?;
    let agents = Agents(start_agents(&args, &dir, &base, enroll_token, &trust_root)?);
    println!(
        "  [5/6] agents     {} processes enrolling with a one-time token (logs: {})",
        agents.0.len(),
        dir.join("agents").display()
    );

    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let cases = publish::expected(FRAUD[0].file)?["cases"].clone();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    println!("  [6/6] verified   each agent's answers to the recorded inputs match onnxruntime's:");
    let started = Instant::now();
    let mut agents = agents;
    for agent in &mut agents.0 {
        wait_until_serving(&http, agent, deadline).await?;
        let checked = if agent.hybrid {
            // Its unsure rows are answered by the server's 1.1.0: checked row by row below.
            "hybrid, checked below".to_owned()
        } else {
            format!("{} cases match", check_answers(&http, agent, &cases).await?)
        };
        println!(
            "         {}  http://{}  {MODEL} {}  {checked}  (serving after {:.1}s)",
            agent.name,
            agent.addr,
            FRAUD[0].version,
            started.elapsed().as_secs_f64()
        );
    }
    let fleet = wait_for_reports(&api, agents.0.len(), deadline).await?;
    println!("         the server sees {fleet}");

    // The other two paradigms: the server answers itself, and a hybrid device escalates.
    let inference_token = api
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "demo-inference", "role": "inference"})),
        )
        .await?["token"]
        .as_str()
        .context("inference token in the answer")?
        .to_owned();
    let server_cases = publish::expected(FRAUD[1].file)?["cases"].clone();
    let matched = check_server(&http, &base, &inference_token, &server_cases).await?;
    println!(
        "         server     {base}/v2/models/{MODEL}/versions/{}  {matched} cases match",
        FRAUD[1].version
    );
    if let Some(hybrid) = agents.0.iter().find(|a| a.hybrid) {
        let (escalated, rows) = check_hybrid(&http, hybrid, &cases, &server_cases).await?;
        println!(
            "         hybrid     {}: {escalated} of {rows} inputs escalated to the server and answered by it, the rest on the device",
            hybrid.name
        );
    }

    print_next_steps(&base, &token, &inference_token, &dir, &agents.0, &cases)?;
    // The server stops itself on the same signal, but waits for open requests: the agents'
    // long-polls end only when the agents do, so they go first.
    shutdown_signal().await;
    drop(agents);
    drop((api, http));
    let stopped = server.await;
    println!("flotilla-demo stopped; its data stays in {}", dir.display());
    stopped??;
    Ok(())
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}

/// The demo's data folder, emptied if an earlier demo made it. A folder the demo did not make
/// is never deleted.
fn prepare_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        let ours = dir.join(MARKER).exists();
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !ours && !empty {
            anyhow::bail!(
                "{} exists and was not made by flotilla-demo; refusing to replace it (choose another --data-dir)",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("removing the previous demo in {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("agents"))?;
    std::fs::write(
        dir.join(MARKER),
        "made by flotilla-demo; deleted and recreated on its next run\n",
    )?;
    Ok(std::path::absolute(dir)?)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    Ok(())
}

fn agent_addr(args: &DemoArgs, index: u16) -> anyhow::Result<SocketAddr> {
    if args.agent_port == 0 {
        // A free port now; the agent binds it a moment later.
        return Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?);
    }
    let port = args
        .agent_port
        .checked_add(index)
        .context("agent ports run past 65535")?;
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

fn start_agents(
    args: &DemoArgs,
    dir: &Path,
    base: &str,
    enroll_token: &str,
    trust_root: &Path,
) -> anyhow::Result<Vec<Agent>> {
    let exe = std::env::current_exe()?;
    let mut agents = Vec::new();
    for i in 0..args.agents {
        let name = format!("demo-{}", i + 1);
        // The last agent of three or more runs the hybrid policy.
        let hybrid = args.agents >= 3 && i + 1 == args.agents;
        let addr = agent_addr(args, i)?;
        let log = dir.join("agents").join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(&exe)
            .arg("agent")
            .args(["--server", base])
            .arg("--state-dir")
            .arg(dir.join("agents").join(&name))
            .args(["--enroll-token", enroll_token])
            .arg("--trust-root")
            .arg(trust_root)
            .args(["--listen", &addr.to_string(), "--name", &name])
            .args(["--workers", "1"])
            .args(if hybrid {
                vec!["--label", HYBRID_LABEL]
            } else {
                Vec::new()
            })
            .stdin(Stdio::piped())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting agent {name}"))?;
        agents.push(Agent {
            name,
            hybrid,
            addr,
            log,
            child,
        });
    }
    Ok(agents)
}

fn log_tail(agent: &Agent) -> String {
    let text = std::fs::read_to_string(&agent.log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

async fn wait_until_serving(
    http: &reqwest::Client,
    agent: &mut Agent,
    deadline: Instant,
) -> anyhow::Result<()> {
    let url = format!("http://{}/v2/models/{MODEL}/ready", agent.addr);
    loop {
        if let Ok(r) = http.get(&url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if let Some(status) = agent.child.try_wait()? {
            anyhow::bail!(
                "agent {} exited ({status}; other agent ports: --agent-port PORT, or 0 for free ones); its log ends:\n{}",
                agent.name,
                log_tail(agent)
            );
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "agent {} is not serving {MODEL} yet; its log ends:\n{}",
                agent.name,
                log_tail(agent)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Posts an inference request and returns the answer; any refusal is an error.
async fn infer(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    request: &Value,
) -> anyhow::Result<Value> {
    let mut post = http.post(url).json(request);
    if let Some(token) = token {
        post = post.bearer_auth(token);
    }
    Ok(post.send().await?.error_for_status()?.json().await?)
}

/// Sends every recorded case to the agent and compares its answer with onnxruntime's.
async fn check_answers(
    http: &reqwest::Client,
    agent: &Agent,
    cases: &Value,
) -> anyhow::Result<usize> {
    let cases = cases.as_array().context("recorded cases")?;
    for (i, case) in cases.iter().enumerate() {
        let answer = infer(
            http,
            &format!("http://{}/v2/models/{MODEL}/infer", agent.addr),
            None,
            &json!({ "inputs": case["inputs"] }),
        )
        .await?;
        same_outputs(&case["outputs"], &answer["outputs"])
            .with_context(|| format!("agent {} answered case {i} wrongly", agent.name))?;
    }
    Ok(cases.len())
}

/// Checks that `actual` (an infer response's outputs) holds every `expected` output with the
/// same shape and values within [`TOLERANCE`].
pub fn same_outputs(expected: &Value, actual: &Value) -> anyhow::Result<()> {
    for want in expected.as_array().context("expected outputs")? {
        let got = actual
            .as_array()
            .and_then(|outs| outs.iter().find(|o| o["name"] == want["name"]))
            .with_context(|| format!("no output named {}", want["name"]))?;
        anyhow::ensure!(
            got["shape"] == want["shape"],
            "output {} has shape {}, expected {}",
            want["name"],
            got["shape"],
            want["shape"]
        );
        let values = |v: &Value| -> Vec<f64> {
            v.as_array()
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default()
        };
        let (w, g) = (values(&want["data"]), values(&got["data"]));
        anyhow::ensure!(w.len() == g.len(), "output {} length differs", want["name"]);
        for (a, b) in w.iter().zip(&g) {
            anyhow::ensure!(
                (a - b).abs() <= TOLERANCE,
                "output {}: {b} where onnxruntime gives {a}",
                want["name"]
            );
        }
    }
    Ok(())
}

/// Asks the server itself (server-based inference, with an `inference` token).
async fn check_server(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    cases: &Value,
) -> anyhow::Result<usize> {
    let cases = cases.as_array().context("recorded cases")?;
    for (i, case) in cases.iter().enumerate() {
        let url = format!(
            "{base}/v2/models/{MODEL}/versions/{}/infer",
            FRAUD[1].version
        );
        let answer = infer(
            http,
            &url,
            Some(token),
            &json!({ "inputs": case["inputs"] }),
        )
        .await?;
        same_outputs(&case["outputs"], &answer["outputs"])
            .with_context(|| format!("the server answered case {i} wrongly"))?;
    }
    Ok(cases.len())
}

/// Sends each recorded row alone to the hybrid agent: rows the device is unsure about must come
/// back from the server (its model's answer), the others from the device.
async fn check_hybrid(
    http: &reqwest::Client,
    agent: &Agent,
    local_cases: &Value,
    server_cases: &Value,
) -> anyhow::Result<(usize, usize)> {
    let (mut escalated, mut rows) = (0, 0);
    let pairs = local_cases
        .as_array()
        .context("cases")?
        .iter()
        .zip(server_cases.as_array().context("cases")?);
    for (local, server) in pairs {
        let features = local["inputs"][0]["data"].as_array().context("inputs")?;
        let (lo, so) = (
            local["outputs"][0]["data"].as_array().context("outputs")?,
            server["outputs"][0]["data"].as_array().context("outputs")?,
        );
        for i in 0..features.len() / 8 {
            let row = |o: &[Value]| json!([{"name": "probabilities", "shape": [1, 2], "data": o[i * 2..i * 2 + 2]}]);
            let (want_local, want_server) = (row(lo), row(so));
            let confidence = lo[i * 2..i * 2 + 2]
                .iter()
                .filter_map(Value::as_f64)
                .fold(f64::MIN, f64::max);
            let answer = infer(
                http,
                &format!("http://{}/v2/models/{MODEL}/infer", agent.addr),
                None,
                &json!({"inputs": [{"name": "features", "datatype": "FP32",
                                    "shape": [1, 8], "data": features[i * 8..i * 8 + 8]}]}),
            )
            .await?;
            let by = answer["parameters"]["flotilla_served_by"].as_str();
            let unsure = confidence < HYBRID_THRESHOLD;
            let (want_by, want) = if unsure {
                (Some("server"), &want_server)
            } else {
                (Some("edge"), &want_local)
            };
            anyhow::ensure!(
                by == want_by,
                "hybrid agent {}: row {rows} (confidence {confidence:.3}) was served by {by:?}, expected {want_by:?}",
                agent.name
            );
            same_outputs(want, &answer["outputs"])
                .with_context(|| format!("hybrid agent {} row {rows}", agent.name))?;
            escalated += usize::from(unsure);
            rows += 1;
        }
    }
    Ok((escalated, rows))
}

/// Waits until the server has every agent's report of the model active, and describes it.
async fn wait_for_reports(api: &Api, agents: usize, deadline: Instant) -> anyhow::Result<String> {
    loop {
        let devices = api.call(Method::GET, "/api/v1/devices", None).await?;
        let active = devices["devices"]
            .as_array()
            .map(|all| {
                all.iter()
                    .filter(|d| {
                        d["slots"].as_array().is_some_and(|slots| {
                            slots.iter().any(|s| {
                                s["model"] == MODEL
                                    && s["state"] == "active"
                                    && s["active_version"] == FRAUD[0].version
                            })
                        })
                    })
                    .count()
            })
            .unwrap_or(0);
        if active >= agents {
            return Ok(format!(
                "{active} devices reporting {MODEL} {} active",
                FRAUD[0].version
            ));
        }
        if Instant::now() > deadline {
            anyhow::bail!("only {active} of {agents} devices reported {MODEL} active in time");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A one-row request the device is unsure about (confidence below the hybrid threshold).
fn unsure_row(cases: &Value) -> Option<String> {
    for case in cases.as_array()? {
        let features = case["inputs"][0]["data"].as_array()?;
        let out = case["outputs"][0]["data"].as_array()?;
        for i in 0..features.len() / 8 {
            let confidence = out[i * 2..i * 2 + 2]
                .iter()
                .filter_map(Value::as_f64)
                .fold(f64::MIN, f64::max);
            if confidence < HYBRID_THRESHOLD {
                return Some(
                    json!({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 8],
                                       "data": features[i * 8..i * 8 + 8]}]})
                    .to_string(),
                );
            }
        }
    }
    None
}

fn print_next_steps(
    base: &str,
    token: &str,
    inference_token: &str,
    dir: &Path,
    agents: &[Agent],
    cases: &Value,
) -> anyhow::Result<()> {
    let first = &agents[0];
    let body = json!({ "inputs": cases[0]["inputs"] }).to_string();
    let expected = cases[0]["outputs"][0]["data"].to_string();
    println!();
    println!("The fleet is serving. Try it (in another terminal):");
    println!();
    println!("  # ask an agent (Open Inference Protocol, as Triton serves it); expect {expected}");
    println!(
        "  curl -s http://{}/v2/models/{MODEL}/infer -H 'content-type: application/json' \\",
        first.addr
    );
    println!("       -d '{body}'");
    println!();
    println!("  # ask the server itself (server-based), with an inference-only token");
    println!(
        "  curl -s {base}/v2/models/{MODEL}/versions/{}/infer -H 'authorization: Bearer {inference_token}' \\",
        FRAUD[1].version
    );
    println!("       -H 'content-type: application/json' -d '{body}'");
    if let Some(hybrid) = agents.iter().find(|a| a.hybrid) {
        println!();
        println!(
            "  # a hybrid agent: unsure inputs come back with \"flotilla_served_by\": \"server\""
        );
        let unsure = unsure_row(cases).unwrap_or_else(|| body.clone());
        println!(
            "  curl -s http://{}/v2/models/{MODEL}/infer -H 'content-type: application/json' \\",
            hybrid.addr
        );
        println!("       -d '{unsure}'");
    }
    println!();
    println!("  # the operator's view, with the flotilla CLI");
    println!("  export FLOTILLA_URL={base} FLOTILLA_TOKEN={token}");
    println!("  cargo run -q -p flotilla-cli -- devices ls");
    println!("  cargo run -q -p flotilla-cli -- models show {MODEL}");
    println!("  cargo run -q -p flotilla-cli -- placement {MODEL}      # edge vs server, measured");
    println!();
    println!(
        "  # hot-swap the edge agents to 1.1.0 (no request fails; the hybrid agent keeps its own"
    );
    println!("  # more specific deployment), then look again");
    println!("  cargo run -q -p flotilla-cli -- deploy {MODEL}@1.1.0 --selector {SELECTOR}");
    println!();
    println!("  # ...or roll 1.1.0 out in stages (1 agent, then all), each gated on the devices");
    println!(
        "  cargo run -q -p flotilla-cli -- rollout create {MODEL}@1.1.0 --selector {SELECTOR} --stages 1,{} --bake 20s",
        agents.len()
    );
    println!("  cargo run -q -p flotilla-cli -- rollout show <id printed above> --watch");
    println!();
    println!("  # agent metrics (Prometheus) and the server's");
    println!("  curl -s http://{}/metrics | grep flotilla_", first.addr);
    println!("  curl -s {base}/metrics | head");
    println!();
    println!(
        "  Publisher key: {}  Agent logs: {}",
        dir.join("publisher.key").display(),
        dir.join("agents").display()
    );
    println!("Ctrl-C stops the server and the agents.");
    Ok(())
}
