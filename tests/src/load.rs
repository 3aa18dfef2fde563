//! A closed-loop HTTP load generator: `concurrency` workers each send one request at a time for
//! a fixed duration and record every latency in an HDR histogram.
//!
//! Written on reqwest rather than taken from oha or wrk because the check-in benchmark needs a
//! different credential and `If-None-Match` per simulated device on every request, which those
//! tools cannot vary; the trivial reference handler is measured with this same generator.

use hdrhistogram::Histogram;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one load run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Requests answered with the expected status.
    pub ok: u64,
    /// Requests that failed or got another status.
    pub failed: u64,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
    /// Latencies of all requests, microseconds.
    pub latency_us: Histogram<u64>,
}

impl LoadResult {
    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency quantile (0–1) in milliseconds.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

/// A fresh latency histogram (1 µs to 100 s, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("constant, valid bounds")
}

/// Runs `request(worker, n)` from `concurrency` workers for `duration` (after `warmup`, whose
/// requests are not counted). `request` returns whether the answer was the expected one.
pub async fn run<F, Fut>(
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
    request: F,
) -> LoadResult
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let request = Arc::new(request);
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let request = request.clone();
        workers.spawn(async move {
            let mut hist = histogram();
            let (mut ok, mut failed, mut n) = (0u64, 0u64, 0u64);
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                let good = request(worker, n).await;
                n += 1;
                if sent < measure_from {
                    continue;
                }
                let us = sent.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
                let _ = hist.record(us.max(1));
                if good {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            (hist, ok, failed)
        });
    }
    let mut total = LoadResult {
        ok: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latency_us: histogram(),
    };
    while let Some(Ok((hist, ok, failed))) = workers.join_next().await {
        let _ = total.latency_us.add(&hist);
        total.ok += ok;
        total.failed += failed;
    }
    total.elapsed = Instant::now().saturating_duration_since(measure_from);
    total
}
