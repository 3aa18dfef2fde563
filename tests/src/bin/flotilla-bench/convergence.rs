//! Fleet convergence with the simulator: every simulated device long-polls (30 s, the default
//! poll interval) and reports; a deploy changes the version of all of them, and the time until
//! the server has accepted a report of the new version active from every device is compared with
//! the poll interval. The rollout form of this (a stage opening instead of a deploy) waits for
//! the rollout API.

use flotilla_e2e::control::{bin_dir, Operator, ServerProcess};
use flotilla_e2e::sim::{SimConfig, SimFleet};
use serde_json::json;
use std::time::Duration;

use crate::checkin::PostgresDb;
use crate::report::{ratio, thousands, Report};
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
    op.deploy("fraud", "1.1.0", "fleet=bench").await?;
    let active = fleet
        .wait_for(within, |f| f.count_active("fraud", "1.1.0") == n)
        .await?;
    let reported = fleet
        .wait_for(within, |f| f.count_reported("fraud", "1.1.0") == n)
        .await?
        + active;
    fleet.stop().await;
    let c = fleet.counters();
    let errors = c.errors.load(std::sync::atomic::Ordering::Relaxed);
    report.section(
        &format!(
            "7. Convergence of {} simulated agents after a deploy ({backend}, {POLL_INTERVAL_SECS} s long-polls)",
            thousands(n as f64)
        ),
        &[
            "start → all report 1.0.0",
            "deploy → all active on 1.1.0",
            "deploy → all reported",
            "reported / poll interval",
            "request errors (retried)",
        ],
    );
    let poll = Duration::from_secs(POLL_INTERVAL_SECS).as_secs_f64();
    report.row(vec![
        format!("{:.1} s", first.as_secs_f64()),
        format!("{:.1} s", active.as_secs_f64()),
        format!("{:.1} s", reported.as_secs_f64()),
        ratio(reported.as_secs_f64() / poll),
        errors.to_string(),
    ]);
    drop(server);
    drop(db);
    Ok(())
}
