//! Benchmarks 1 and 2: the desired-state poll (304 and 200) on SQLite and Postgres, and report
//! ingest on Postgres, each beside the trivial actix-web handler under the same load.

use anyhow::{bail, Context as _};
use flotilla_e2e::control::{bin_dir, Operator, ServerProcess};
use flotilla_e2e::load::{self, LoadResult};
use flotilla_e2e::sim::{http_client, SimConfig, SimFleet};
use flotilla_protocol::routes;
use reqwest::header::IF_NONE_MATCH;
use serde_json::json;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::report::{ms, ratio, thousands, Report};
use crate::trivial::TRIVIAL_ETAG;
use crate::Sizes;

/// HTTP workers of the server and of the reference alike.
const WORKERS: usize = 2;

pub async fn run(sizes: &Sizes, postgres: &str, report: &mut Report) -> anyhow::Result<()> {
    report.section(
        &format!(
            "1. Check-in: desired-state polls with {} devices",
            thousands(sizes.devices as f64)
        ),
        &[
            "backend",
            "answer",
            "requests/s",
            "p50",
            "p99",
            "trivial handler requests/s",
            "trivial p99",
            "throughput ratio",
            "p99 ratio",
        ],
    );
    let sqlite_dir = tempfile::tempdir()?;
    let server = ServerProcess::start(&bin_dir()?, sqlite_dir.path(), None, &env()).await?;
    let fleet = prepare_fleet(&server, sizes).await?;
    checkin(&server, &fleet, "SQLite", sizes, report).await?;
    drop(server);

    let Some(db) = PostgresDb::create(postgres)? else {
        report.row(vec![
            "Postgres".into(),
            "skipped: Postgres unreachable".into(),
        ]);
        return Ok(());
    };
    let pg_dir = tempfile::tempdir()?;
    let server = ServerProcess::start(&bin_dir()?, pg_dir.path(), Some(&db.url), &env()).await?;
    let fleet = prepare_fleet(&server, sizes).await?;
    checkin(&server, &fleet, "Postgres", sizes, report).await?;
    ingest(&server, &fleet, sizes, report).await?;
    drop(server);
    drop(db);
    Ok(())
}

fn env() -> Vec<(&'static str, String)> {
    vec![
        ("FLOTILLA_WORKERS", WORKERS.to_string()),
        ("FLOTILLA_DB_MAX_CONNECTIONS", "16".into()),
    ]
}

/// A `flotilla_bench_*` database, dropped with this value.
pub struct PostgresDb {
    admin: String,
    name: String,
    pub url: String,
}

impl PostgresDb {
    /// Creates one; `None` when Postgres is unreachable.
    pub fn create(admin: &str) -> anyhow::Result<Option<Self>> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "flotilla_bench_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let created = Command::new("psql")
            .args([admin, "-qc", &format!("CREATE DATABASE {name}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !created {
            return Ok(None);
        }
        let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
        Ok(Some(Self {
            admin: admin.to_owned(),
            url: format!("{base}/{name}"),
            name,
        }))
    }
}

impl Drop for PostgresDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                self.admin.as_str(),
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .stdout(Stdio::null())
            .status();
    }
}

/// Publishes and deploys the fraud model, enrolls the devices and has each fetch and apply its
/// state once, so every one has an `ETag` and a stored signed state.
pub async fn prepare_fleet(server: &ServerProcess, sizes: &Sizes) -> anyhow::Result<SimFleet> {
    let op = Operator::new(&server.base, &server.admin);
    op.setup_publisher("fraud").await?;
    let bytes = std::fs::read(flotilla_e2e::models_dir().join("fraud-1.0.0.onnx"))?;
    op.publish("fraud", "1.0.0", 1, &bytes).await?;
    op.deploy("fraud", "1.0.0", "fleet=bench").await?;
    let token = op
        .enrollment_token(sizes.devices as u32, json!({"fleet": "bench"}))
        .await?;
    let started = Instant::now();
    let fleet = SimFleet::enroll(SimConfig::new(&server.base, &token), sizes.devices, |i| {
        [("shard".to_owned(), format!("{}", i % 16))].into()
    })
    .await?;
    let enrolled = started.elapsed();
    let failed = fleet.sync_once(32).await;
    if failed > 0 {
        bail!("{failed} simulated devices could not fetch their first state");
    }
    println!(
        "enrolled {} devices in {:.1} s, first states fetched in {:.1} s",
        sizes.devices,
        enrolled.as_secs_f64(),
        (started.elapsed() - enrolled).as_secs_f64()
    );
    Ok(fleet)
}

/// `(credential, etag)` of every device.
fn identities(fleet: &SimFleet) -> Arc<Vec<(String, String)>> {
    Arc::new(
        fleet
            .devices()
            .iter()
            .map(|d| (d.credential.clone(), d.etag().unwrap_or_default()))
            .collect(),
    )
}

/// Polls the desired state of device after device; `stale` sends an `ETag` that never matches.
async fn poll_load(
    base: &str,
    ids: Arc<Vec<(String, String)>>,
    etag_override: Option<&'static str>,
    expect: u16,
    sizes: &Sizes,
) -> anyhow::Result<LoadResult> {
    let http = http_client(Duration::from_secs(30))?;
    let url = Arc::new(format!("{base}{}", routes::AGENT_DESIRED_STATE));
    let c = sizes.concurrency;
    Ok(load::run(
        c,
        sizes.warmup,
        Duration::from_secs(sizes.load_secs),
        move |worker, n| {
            let (http, url, ids) = (http.clone(), url.clone(), ids.clone());
            async move {
                let (cred, etag) = &ids[(worker + n as usize * c) % ids.len()];
                let res = http
                    .get(url.as_str())
                    .bearer_auth(cred)
                    .header(IF_NONE_MATCH, etag_override.unwrap_or(etag))
                    .send()
                    .await;
                match res {
                    Ok(r) => r.status().as_u16() == expect && r.bytes().await.is_ok(),
                    Err(_) => false,
                }
            }
        },
    )
    .await)
}

async fn state_size(base: &str, cred: &str) -> anyhow::Result<usize> {
    let body = reqwest::Client::new()
        .get(format!("{base}{}", routes::AGENT_DESIRED_STATE))
        .bearer_auth(cred)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?;
    Ok(body.len())
}

/// The reference server, on as many workers as the real one.
fn start_trivial(body_bytes: usize) -> anyhow::Result<(ServerProcess, String)> {
    let port = flotilla_e2e::free_port();
    let child = Command::new(std::env::current_exe()?)
        .args([
            "trivial-server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--workers",
            &WORKERS.to_string(),
            "--body-bytes",
            &body_bytes.to_string(),
        ])
        .stdout(Stdio::null())
        .spawn()
        .context("starting the trivial server")?;
    let base = format!("http://127.0.0.1:{port}");
    Ok((
        ServerProcess {
            child,
            base: base.clone(),
            admin: String::new(),
        },
        base,
    ))
}

async fn checkin(
    server: &ServerProcess,
    fleet: &SimFleet,
    backend: &str,
    sizes: &Sizes,
    report: &mut Report,
) -> anyhow::Result<()> {
    let ids = identities(fleet);
    let body_bytes = state_size(&server.base, &ids[0].0).await?;
    let (trivial, trivial_base) = start_trivial(body_bytes)?;
    flotilla_e2e::control::wait_ready(&format!("{trivial_base}/"), Duration::from_secs(10))
        .await
        .ok();
    for (answer, etag, trivial_etag, status) in [
        ("304 unchanged", None, TRIVIAL_ETAG, 304),
        ("200 full state", Some("\"0\""), "\"0\"", 200),
    ] {
        let ours = poll_load(&server.base, ids.clone(), etag, status, sizes).await?;
        let reference = poll_load(
            &trivial_base,
            ids.clone(),
            Some(trivial_etag),
            status,
            sizes,
        )
        .await?;
        report.row(vec![
            backend.into(),
            answer.into(),
            thousands(ours.throughput()),
            ms(ours.quantile_ms(0.5)),
            ms(ours.quantile_ms(0.99)),
            thousands(reference.throughput()),
            ms(reference.quantile_ms(0.99)),
            ratio(ours.throughput() / reference.throughput()),
            ratio(ours.quantile_ms(0.99) / reference.quantile_ms(0.99)),
        ]);
        if ours.failed > 0 {
            bail!(
                "{} {answer} polls got another answer on {backend}",
                ours.failed
            );
        }
    }
    drop(trivial);
    Ok(())
}

/// Benchmark 2: reports (slot status + a health window) from every device in turn.
async fn ingest(
    server: &ServerProcess,
    fleet: &SimFleet,
    sizes: &Sizes,
    report: &mut Report,
) -> anyhow::Result<()> {
    let size = serde_json::to_vec(&fleet.report_for(&fleet.devices()[0]))?.len();
    // Each request carries the next report of its device (its counter grows, so none is a
    // replay), made when it is sent.
    let send = |base: String| {
        let http = http_client(Duration::from_secs(30));
        let fleet = fleet.clone();
        let c = sizes.concurrency;
        async move {
            let http = http?;
            let url = Arc::new(format!("{base}{}", routes::AGENT_REPORT));
            anyhow::Ok(
                load::run(
                    c,
                    sizes.warmup,
                    Duration::from_secs(sizes.load_secs),
                    move |worker, n| {
                        let (http, url, fleet) = (http.clone(), url.clone(), fleet.clone());
                        async move {
                            let devices = fleet.devices();
                            let device = &devices[(worker + n as usize * c) % devices.len()];
                            let Ok(body) = serde_json::to_vec(&fleet.report_for(device)) else {
                                return false;
                            };
                            http.post(url.as_str())
                                .bearer_auth(&device.credential)
                                .header("content-type", "application/json")
                                .body(body)
                                .send()
                                .await
                                .is_ok_and(|r| r.status().is_success())
                        }
                    },
                )
                .await,
            )
        }
    };
    let ours = send(server.base.clone()).await?;
    let (trivial, trivial_base) = start_trivial(16)?;
    flotilla_e2e::control::wait_ready(&format!("{trivial_base}/"), Duration::from_secs(10))
        .await
        .ok();
    let reference = send(trivial_base).await?;
    drop(trivial);
    report.section(
        &format!(
            "2. Report ingest on Postgres, {} devices ({size}-byte reports: slot status + health window)",
            thousands(sizes.devices as f64)
        ),
        &[
            "reports/s",
            "p50",
            "p99",
            "failed",
            "trivial handler requests/s",
            "throughput ratio",
        ],
    );
    report.row(vec![
        thousands(ours.throughput()),
        ms(ours.quantile_ms(0.5)),
        ms(ours.quantile_ms(0.99)),
        ours.failed.to_string(),
        thousands(reference.throughput()),
        ratio(ours.throughput() / reference.throughput()),
    ]);
    Ok(())
}
