//! Benchmark 7, rollout convergence with the simulator: every simulated device long-polls (30 s,
//! the default poll interval) and reports. A rollout of a new version opens a 10 % stage, then
//! is promoted to 100 %. For each stage opening, the time until the server has accepted a report
//! of the new version active from every device of the stage is compared with the poll interval.

use anyhow::bail;
use flotilla_e2e::control::{bin_dir, Operator, ServerProcess};
use flotilla_e2e::sim::{SimConfig, SimFleet};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use crate::checkin::PostgresDb;
use crate::report::{mib, ratio, thousands, Report};
use crate::Sizes;

const POLL_INTERVAL_SECS: u64 = 30;

pub async fn run(sizes: &Sizes, postgres: &str, report: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db = PostgresDb::create(postgres)?;
    let env = [
        ("FLOTILLA_WORKERS", "2".to_owned()),
        (
            "FLOTILLA_POLL_INTERVAL_SECS",
            POLL_INTERVAL_SECS.to_string(),
        ),
    ];
    let server = ServerProcess::start(
        &bin_dir()?,
        dir.path(),
        db.as_ref().map(|d| d.url.as_str()),
        &env,
    )
    .await?;
    let backend = if db.is_some() { "Postgres" } else { "SQLite" };
    let op = Operator::new(&server.base, &server.admin);
    op.setup_publisher("fraud").await?;
    for (k, file) in [(1u64, "fraud-1.0.0.onnx"), (2, "fraud-1.1.0.onnx")] {
        let bytes = std::fs::read(flotilla_e2e::models_dir().join(file))?;
        op.publish("fraud", &format!("1.{}.0", k - 1), k, &bytes)
            .await?;
    }
    op.deploy("fraud", "1.0.0", "fleet=bench").await?;
    let token = op
        .enrollment_token(sizes.devices as u32, json!({"fleet": "bench"}))
        .await?;
    let mut config = SimConfig::new(&server.base, &token);
    config.poll_wait_secs = POLL_INTERVAL_SECS;
    config.report_interval = Duration::from_secs(60);
    let fleet = SimFleet::enroll(config, sizes.devices, |_| Default::default()).await?;
    let n = sizes.devices;
    let within = Duration::from_secs(600);

    fleet.start();
    let first = fleet
        .wait_for(within, |f| f.count_reported("fraud", "1.0.0") == n)
        .await?;
    // Let every device settle into a held long-poll.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (holding, _) = server.memory();

    // Stage 1 opens when the rollout is created; its long bake keeps it open until promoted.
    let policy = json!({
        "stages": [{"percent": 10, "bake_secs": 86_400}, {"percent": 100, "bake_secs": 0}],
        "activation_deadline_secs": 3_600,
    });
    let opened = Instant::now();
    let rollout = op
        .call(
            "POST",
            "/api/v1/rollouts",
            json!({"model": "fraud", "version": "1.1.0", "selector": "fleet=bench", "policy": policy}),
            201,
        )
        .await?;
    let id = rollout["id"].as_str().unwrap_or_default().to_owned();
    let info = op
        .call("GET", &format!("/api/v1/rollouts/{id}"), Value::Null, 200)
        .await?;
    let cohort = usize::try_from(info["devices"]["in_stage"].as_u64().unwrap_or(0))?;
    if cohort == 0 || cohort >= n {
        bail!("the 10 % stage holds {cohort} of {n} devices");
    }
    let stage1 = converge(&fleet, opened, cohort, within).await?;
    // Devices outside the cohort must not have moved.
    let moved = fleet.count_reported("fraud", "1.1.0");
    if moved != cohort {
        bail!("{moved} devices report 1.1.0 but the stage holds {cohort}");
    }

    let opened = Instant::now();
    op.call(
        "POST",
        &format!("/api/v1/rollouts/{id}/promote"),
        Value::Null,
        200,
    )
    .await?;
    let stage2 = converge(&fleet, opened, n, within).await?;
    fleet.stop().await;
    let c = fleet.counters();
    let errors = c.errors.load(std::sync::atomic::Ordering::Relaxed);
    report.section(
        &format!(
            "7. Rollout convergence of {} simulated agents ({backend}, {POLL_INTERVAL_SECS} s long-polls)",
            thousands(n as f64)
        ),
        &[
            "stage opening",
            "devices in the stage",
            "→ all active",
            "→ all reported",
            "reported / poll interval",
        ],
    );
    let poll = Duration::from_secs(POLL_INTERVAL_SECS).as_secs_f64();
    for (what, devices, (active, reported)) in [
        ("rollout created, 10 % stage", cohort, stage1),
        ("promoted, 100 % stage", n, stage2),
    ] {
        report.row(vec![
            what.to_owned(),
            thousands(devices as f64),
            format!("{:.1} s", active.as_secs_f64()),
            format!("{:.1} s", reported.as_secs_f64()),
            ratio(reported.as_secs_f64() / poll),
        ]);
    }
    let (_, peak) = server.memory();
    report.note(&format!(
        "Start → all {} devices reporting 1.0.0: {:.1} s. Request errors (retried): {errors}. \
         Server RSS with every device holding a long-poll: {}; peak over the run: {}.",
        thousands(n as f64),
        first.as_secs_f64(),
        mib(holding),
        mib(peak)
    ));
    drop(server);
    drop(db);
    Ok(())
}

/// Waits until `devices` devices are active on 1.1.0, then until the server has accepted a
/// report of it from each; both times are counted from `opened`.
async fn converge(
    fleet: &SimFleet,
    opened: Instant,
    devices: usize,
    within: Duration,
) -> anyhow::Result<(Duration, Duration)> {
    fleet
        .wait_for(within, |f| f.count_active("fraud", "1.1.0") >= devices)
        .await?;
    let active = opened.elapsed();
    fleet
        .wait_for(within, |f| f.count_reported("fraud", "1.1.0") >= devices)
        .await?;
    Ok((active, opened.elapsed()))
}
