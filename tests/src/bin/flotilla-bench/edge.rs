//! Benchmarks 4–6 on one real agent process: its footprint (binary size, idle memory, memory per
//! model), inference through its endpoint and in-process against onnxruntime, and hot swaps
//! under load.

use anyhow::{anyhow, bail, Context as _};
use flotilla_e2e::control::{bin_dir, process_memory, wait_ready, Operator, ServerProcess};
use flotilla_e2e::load::histogram;
use flotilla_runtime::{LoadOptions, Model, Tensor};
use rand::{Rng as _, SeedableRng as _};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::report::{mib, ms, ratio, thousands, Report};
use crate::Sizes;

/// One benchmarked model: its name on the server, file and a batch-of-one input.
struct BenchModel {
    name: &'static str,
    path: PathBuf,
    inputs: Value,
}

struct Agent {
    child: Child,
    base: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sample_models(sizes: &Sizes, python: &str, dir: &Path) -> anyhow::Result<Vec<BenchModel>> {
    let mut models = Vec::new();
    for (name, file) in [
        ("fraud", "fraud-1.0.0.onnx"),
        ("sensor-anomaly", "sensor-anomaly-1.0.0.onnx"),
        ("vision-cnn", "vision-cnn-1.0.0.onnx"),
    ] {
        let case = flotilla_e2e::expected_model(file)["cases"][0]["inputs"].clone();
        models.push(BenchModel {
            name,
            path: flotilla_e2e::models_dir().join(file),
            inputs: case,
        });
    }
    if sizes.mobilenet {
        let path = dir.join("mobilenet-v2-like.onnx");
        let status = Command::new(python)
            .arg(flotilla_e2e::models_dir().join("generate.py"))
            .arg("--mobilenet")
            .arg(&path)
            .status()
            .context("running models/generate.py --mobilenet")?;
        if !status.success() {
            bail!("models/generate.py --mobilenet failed");
        }
        // Pixels on a 1/16 grid in [0, 1), fixed seed.
        let mut rng = rand::rngs::StdRng::seed_from_u64(224);
        let data: Vec<f64> = (0..3 * 224 * 224)
            .map(|_| f64::from(rng.gen_range(0..16u8)) / 16.0)
            .collect();
        models.push(BenchModel {
            name: "mobilenet-v2",
            path,
            inputs: json!([{"name": "image", "datatype": "FP32", "shape": [1, 3, 224, 224], "data": data}]),
        });
    }
    Ok(models)
}

pub async fn run(sizes: &Sizes, python: &str, report: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let models = sample_models(sizes, python, dir.path())?;
    let server = ServerProcess::start(&bin_dir()?, &dir.path().join("server"), None, &[]).await?;
    let op = Operator::new(&server.base, &server.admin);
    op.setup_publisher("fraud").await?;
    for m in models.iter().skip(1) {
        op.call("POST", "/api/v1/models", json!({ "name": m.name }), 201)
            .await?;
    }
    // The swap benchmark alternates two real fraud models under increasing release numbers.
    let fraud = |k: usize| {
        let file = if k % 2 == 1 {
            "fraud-1.0.0.onnx"
        } else {
            "fraud-1.1.0.onnx"
        };
        std::fs::read(flotilla_e2e::models_dir().join(file))
    };
    for k in 1..=sizes.swaps + 1 {
        op.publish("fraud", &format!("1.0.{k}"), k as u64, &fraud(k)?)
            .await?;
    }
    for m in models.iter().skip(1) {
        op.publish(m.name, "1.0.0", 1, &std::fs::read(&m.path)?)
            .await?;
    }
    let trust = dir.path().join("trust-root.json");
    std::fs::write(&trust, serde_json::to_vec(&op.trust_root().await?)?)?;
    let token = op.enrollment_token(1, json!({"bench": "edge"})).await?;

    // 6. Footprint: the binary, the idle process, then each model added.
    let agent_bin = bin_dir()?.join("flotilla-agent");
    let built = std::fs::metadata(&agent_bin)?.len();
    let stripped_path = dir.path().join("flotilla-agent.stripped");
    let stripped = Command::new("strip")
        .arg("-o")
        .arg(&stripped_path)
        .arg(&agent_bin)
        .status()
        .ok()
        .filter(|s| s.success())
        .and_then(|_| std::fs::metadata(&stripped_path).ok())
        .map_or(built, |m| m.len());
    let port = flotilla_e2e::free_port();
    let agent = start_agent(&agent_bin, &server.base, dir.path(), &trust, port, &token)?;
    let http = reqwest::Client::new();
    wait_ready(
        &format!("{}/v2/health/live", agent.base),
        Duration::from_secs(30),
    )
    .await?;
    // Let it enroll and settle into polling.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle, _) = process_memory(agent.child.id());
    let mut rows = Vec::new();
    let mut before = idle;
    for m in &models {
        let version = if m.name == "fraud" { "1.0.1" } else { "1.0.0" };
        op.deploy(m.name, version, "bench=edge").await?;
        wait_version(&http, &agent.base, m, version, Duration::from_secs(120)).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (now, _) = process_memory(agent.child.id());
        let file = std::fs::metadata(&m.path)?.len();
        let added = now.saturating_sub(before);
        rows.push(vec![
            m.name.to_owned(),
            format!("{:.1} KiB", file as f64 / 1024.0),
            mib(added),
            ratio(added as f64 / file as f64),
            mib(now),
        ]);
        before = now;
    }
    report.section("6. Agent footprint", &["what", "value"]);
    report.row(vec!["binary as built".into(), mib(built)]);
    report.row(vec!["binary stripped".into(), mib(stripped)]);
    report.row(vec![
        "idle RSS (enrolled, polling, no model)".into(),
        mib(idle),
    ]);
    report.section(
        "6. Agent memory per model (loaded one after another)",
        &[
            "model",
            "file",
            "RSS added",
            "RSS added / file size",
            "RSS after",
        ],
    );
    for r in rows {
        report.row(r);
    }

    // 4. Inference against onnxruntime, one thread each.
    report.section(
        "4. Inference, batch of one, one thread (agent `--workers 1`, tract in-process, onnxruntime 1 intra-op thread)",
        &[
            "model",
            "onnxruntime p50 / p99 / per s",
            "tract in-process p50 / p99 / per s",
            "agent endpoint p50 / p99 / per s",
            "tract / onnxruntime (p50)",
            "agent endpoint / onnxruntime (p50)",
        ],
    );
    for m in &models {
        let iterations = if m.name == "mobilenet-v2" {
            (sizes.infer_iterations / 10).max(20)
        } else {
            sizes.infer_iterations
        };
        let ort = onnxruntime(python, m, dir.path(), iterations)?;
        let tract = in_process(m, iterations)?;
        let endpoint = through_agent(&http, &agent.base, m, iterations).await?;
        let cell = |s: &Stats| format!("{} / {} / {}", ms(s.p50), ms(s.p99), thousands(s.per_s));
        report.row(vec![
            m.name.into(),
            cell(&ort),
            cell(&tract),
            cell(&endpoint),
            ratio(tract.p50 / ort.p50),
            ratio(endpoint.p50 / ort.p50),
        ]);
    }

    // 5. Hot swaps under load.
    swaps(&op, &http, &agent.base, sizes, report).await?;
    drop(agent);
    Ok(())
}

fn start_agent(
    bin: &Path,
    server: &str,
    dir: &Path,
    trust: &Path,
    port: u16,
    token: &str,
) -> anyhow::Result<Agent> {
    let child = Command::new(bin)
        .args(["--server", server])
        .arg("--state-dir")
        .arg(dir.join("agent"))
        .arg("--trust-root")
        .arg(trust)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--workers", "1", "--poll-wait-secs", "5"])
        .args(["--enroll-token", token])
        .env("RUST_LOG", "error")
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null())
        .spawn()
        .context("starting flotilla-agent")?;
    Ok(Agent {
        child,
        base: format!("http://127.0.0.1:{port}"),
    })
}

async fn infer(http: &reqwest::Client, base: &str, m: &BenchModel) -> anyhow::Result<Value> {
    let res = http
        .post(format!("{base}/v2/models/{}/infer", m.name))
        .json(&json!({ "inputs": m.inputs }))
        .send()
        .await?;
    if !res.status().is_success() {
        bail!("infer answered {}", res.status());
    }
    Ok(res.json().await?)
}

async fn wait_version(
    http: &reqwest::Client,
    base: &str,
    m: &BenchModel,
    version: &str,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(v) = infer(http, base, m).await {
            if v["model_version"] == version {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the agent does not serve {}@{version} within {within:?}",
                m.name
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Stats {
    p50: f64,
    p99: f64,
    per_s: f64,
}

fn stats(latencies_us: &hdrhistogram::Histogram<u64>, total: Duration) -> Stats {
    Stats {
        p50: latencies_us.value_at_quantile(0.5) as f64 / 1000.0,
        p99: latencies_us.value_at_quantile(0.99) as f64 / 1000.0,
        per_s: latencies_us.len() as f64 / total.as_secs_f64().max(1e-9),
    }
}

fn onnxruntime(
    python: &str,
    m: &BenchModel,
    dir: &Path,
    iterations: usize,
) -> anyhow::Result<Stats> {
    let inputs = dir.join(format!("{}.inputs.json", m.name));
    std::fs::write(&inputs, serde_json::to_vec(&m.inputs)?)?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/ort_infer.py");
    let out = Command::new(python)
        .arg(script)
        .arg(&m.path)
        .arg(&inputs)
        .arg(iterations.to_string())
        .arg("1")
        .output()
        .context("running benches/ort_infer.py")?;
    if !out.status.success() {
        bail!(
            "benches/ort_infer.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout)?;
    let num = |k: &str| v[k].as_f64().ok_or_else(|| anyhow!("no {k} in {v}"));
    Ok(Stats {
        p50: num("p50_ms")?,
        p99: num("p99_ms")?,
        per_s: num("per_s")?,
    })
}

fn tensors(inputs: &Value) -> anyhow::Result<Vec<Tensor>> {
    inputs
        .as_array()
        .ok_or_else(|| anyhow!("inputs are not a list"))?
        .iter()
        .map(|t| {
            let shape = t["shape"]
                .as_array()
                .ok_or_else(|| anyhow!("no shape"))?
                .iter()
                .map(|d| {
                    d.as_u64()
                        .map(|d| d as usize)
                        .ok_or_else(|| anyhow!("bad dim"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let data = t["data"]
                .as_array()
                .ok_or_else(|| anyhow!("no data"))?
                .iter()
                .map(|x| {
                    x.as_f64()
                        .map(|x| x as f32)
                        .ok_or_else(|| anyhow!("bad value"))
                })
                .collect::<anyhow::Result<Vec<f32>>>()?;
            let name = t["name"].as_str().ok_or_else(|| anyhow!("no name"))?;
            Ok(Tensor::new(name, shape, data))
        })
        .collect()
}

fn in_process(m: &BenchModel, iterations: usize) -> anyhow::Result<Stats> {
    let model = Model::load(&std::fs::read(&m.path)?, &LoadOptions::default())?;
    let inputs = tensors(&m.inputs)?;
    for _ in 0..(iterations / 20).max(3) {
        model.run(inputs.clone())?;
    }
    let mut hist = histogram();
    let started = Instant::now();
    for _ in 0..iterations {
        let t0 = Instant::now();
        model.run(inputs.clone())?;
        let _ = hist.record((t0.elapsed().as_micros() as u64).max(1));
    }
    Ok(stats(&hist, started.elapsed()))
}

async fn through_agent(
    http: &reqwest::Client,
    base: &str,
    m: &BenchModel,
    iterations: usize,
) -> anyhow::Result<Stats> {
    let body = serde_json::to_vec(&json!({ "inputs": m.inputs }))?;
    let url = format!("{base}/v2/models/{}/infer", m.name);
    let send = || async {
        let res = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("infer answered {}", res.status());
        }
        res.bytes().await?;
        anyhow::Ok(())
    };
    for _ in 0..(iterations / 20).max(3) {
        send().await?;
    }
    let mut hist = histogram();
    let started = Instant::now();
    for _ in 0..iterations {
        let t0 = Instant::now();
        send().await?;
        let _ = hist.record((t0.elapsed().as_micros() as u64).max(1));
    }
    Ok(stats(&hist, started.elapsed()))
}

/// Benchmark 5: four clients keep asking `fraud` while it is swapped `sizes.swaps` times by
/// real deploys; every answer must come from a version that exists and match that version's
/// onnxruntime output.
async fn swaps(
    op: &Operator,
    http: &reqwest::Client,
    base: &str,
    sizes: &Sizes,
    report: &mut Report,
) -> anyhow::Result<()> {
    let case = flotilla_e2e::expected_model("fraud-1.0.0.onnx")["cases"][1].clone();
    let outputs = [
        case["outputs"].clone(),
        flotilla_e2e::expected_model("fraud-1.1.0.onnx")["cases"][1]["outputs"].clone(),
    ];
    let fraud = BenchModel {
        name: "fraud",
        path: PathBuf::new(),
        inputs: case["inputs"].clone(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (http, stop, outputs) = (http.clone(), stop.clone(), outputs.clone());
        let body = serde_json::to_vec(&json!({ "inputs": fraud.inputs }))?;
        let url = format!("{base}/v2/models/fraud/infer");
        clients.spawn(async move {
            let mut samples: Vec<(Instant, u64, bool)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let res = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let ok = match res {
                    Ok(r) if r.status().is_success() => match r.json::<Value>().await {
                        Ok(v) => {
                            // 1.0.k serves fraud-1.0.0 for odd k, fraud-1.1.0 for even k.
                            let k: usize = v["model_version"]
                                .as_str()
                                .and_then(|s| s.rsplit('.').next())
                                .and_then(|k| k.parse().ok())
                                .unwrap_or(0);
                            k > 0
                                && flotilla_e2e::outputs_match(&outputs[(k + 1) % 2], &v["outputs"])
                                    .is_ok()
                        }
                        Err(_) => false,
                    },
                    _ => false,
                };
                samples.push((t0, t0.elapsed().as_micros() as u64, ok));
            }
            samples
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let first_swap = Instant::now();
    let mut swap_ms = histogram();
    for k in 2..=sizes.swaps + 1 {
        let version = format!("1.0.{k}");
        let t0 = Instant::now();
        op.deploy("fraud", &version, "bench=edge").await?;
        wait_version(http, base, &fraud, &version, Duration::from_secs(60)).await?;
        let _ = swap_ms.record((t0.elapsed().as_millis() as u64).max(1));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let last_swap = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    while let Some(r) = clients.join_next().await {
        samples.extend(r?);
    }
    let failed = samples.iter().filter(|s| !s.2).count();
    let mut steady = histogram();
    let mut during = histogram();
    for (t, us, _) in &samples {
        let h = if *t >= first_swap && *t <= last_swap {
            &mut during
        } else {
            &mut steady
        };
        let _ = h.record((*us).max(1));
    }
    let q = |h: &hdrhistogram::Histogram<u64>, p: f64| h.value_at_quantile(p) as f64 / 1000.0;
    report.section(
        &format!(
            "5. Hot swap: {} deploys of `fraud` while 4 clients keep inferring",
            sizes.swaps
        ),
        &[
            "requests",
            "failed or wrong",
            "p99 steady",
            "p99 while swapping",
            "p99 ratio",
            "deploy call → new version answering (median, max)",
        ],
    );
    report.row(vec![
        thousands(samples.len() as f64),
        failed.to_string(),
        ms(q(&steady, 0.99)),
        ms(q(&during, 0.99)),
        ratio(q(&during, 0.99) / q(&steady, 0.99)),
        format!(
            "{} ms, {} ms",
            swap_ms.value_at_quantile(0.5),
            swap_ms.max()
        ),
    ]);
    if failed > 0 {
        bail!("{failed} requests failed or answered wrongly during the swaps");
    }
    Ok(())
}
