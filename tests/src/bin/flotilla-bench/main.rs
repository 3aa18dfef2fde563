//! `flotilla-bench`: the benchmarks of docs/benchmarks.md. Every figure is printed beside a
//! reference measured in the same run on the same machine (a trivial actix-web handler,
//! `openssl dgst -sha256`, onnxruntime), because absolute numbers on a shared machine drift.
//!
//! Run it through `scripts/bench` (which builds it and prepares Python and Postgres);
//! `--smoke` uses small sizes so CI can keep it working.

mod checkin;
mod convergence;
mod edge;
mod report;
mod shaped;
mod trivial;
mod upload;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

use report::Report;

#[derive(Debug, Parser)]
#[command(about = "Flotilla benchmarks, as ratios to references measured in the same run")]
struct Args {
    #[command(subcommand)]
    command: Option<Internal>,
    /// Which benchmarks to run (all when none is named).
    #[arg(value_enum)]
    only: Vec<Bench>,
    /// Small sizes (CI): a few hundred devices, short runs, a 64 MiB upload.
    #[arg(long)]
    smoke: bool,
    /// Where to write the Markdown report.
    #[arg(long, default_value = "target/bench/report.md")]
    out: PathBuf,
    /// Postgres server for the Postgres runs (a `flotilla_bench_*` database is created on it
    /// and dropped afterwards); the Postgres runs are skipped when it is unreachable.
    #[arg(
        long,
        env = "FLOTILLA_BENCH_POSTGRES",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    postgres: String,
    /// Python with onnxruntime, numpy and onnx (scripts/bench makes one).
    #[arg(long, env = "FLOTILLA_BENCH_PYTHON", default_value = "python3")]
    python: String,
    /// Devices for the check-in, ingest and convergence runs (default 10,000; 300 with --smoke).
    #[arg(long)]
    devices: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum Internal {
    /// The reference: a trivial actix-web handler (started by the check-in benchmark).
    TrivialServer {
        /// Address to listen on.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Worker threads.
        #[arg(long)]
        workers: usize,
        /// Body size of its 200 answer, bytes.
        #[arg(long)]
        body_bytes: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Bench {
    /// Check-in throughput and p99 (304 and 200; SQLite and Postgres) and report ingest.
    Checkin,
    /// Upload and verify against openssl's sha256.
    Upload,
    /// Agent footprint, inference against onnxruntime, hot swaps under load.
    Edge,
    /// Simulated fleet converging on each stage of a rollout as it opens.
    Convergence,
    /// A 14 MB model over a shaped link (384 kbit/s and 1 Mbit/s, outages); needs root; not
    /// run with --smoke.
    ShapedLink,
}

/// Sizes of a run.
#[derive(Debug, Clone)]
pub struct Sizes {
    pub smoke: bool,
    pub devices: usize,
    pub load_secs: u64,
    pub warmup: std::time::Duration,
    pub concurrency: usize,
    pub upload_mib: u64,
    pub infer_iterations: usize,
    pub swaps: usize,
    pub mobilenet: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Internal::TrivialServer {
        listen,
        workers,
        body_bytes,
    }) = args.command
    {
        return trivial::serve(listen, workers, body_bytes);
    }
    let sizes = if args.smoke {
        Sizes {
            smoke: true,
            devices: args.devices.unwrap_or(300),
            load_secs: 2,
            warmup: std::time::Duration::from_millis(500),
            concurrency: 16,
            upload_mib: 64,
            infer_iterations: 100,
            swaps: 2,
            mobilenet: false,
        }
    } else {
        Sizes {
            smoke: false,
            devices: args.devices.unwrap_or(10_000),
            load_secs: 10,
            warmup: std::time::Duration::from_secs(1),
            concurrency: 32,
            upload_mib: 1024,
            infer_iterations: 1000,
            swaps: 10,
            mobilenet: true,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let all = args.only.is_empty();
    let wants = |b: Bench| all || args.only.contains(&b);
    let mut report = Report::new(&sizes);
    runtime.block_on(async {
        if wants(Bench::Checkin) {
            checkin::run(&sizes, &args.postgres, &mut report).await?;
        }
        if wants(Bench::Upload) {
            upload::run(&sizes, &mut report).await?;
        }
        if wants(Bench::Edge) {
            edge::run(&sizes, &args.python, &mut report).await?;
        }
        if wants(Bench::Convergence) {
            convergence::run(&sizes, &args.postgres, &mut report).await?;
        }
        if wants(Bench::ShapedLink) && !sizes.smoke {
            shaped::run(&mut report).await?;
        }
        anyhow::Ok(())
    })?;
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, report.markdown())
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("report written to {}", args.out.display());
    Ok(())
}
