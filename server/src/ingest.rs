//! Report ingest with group commit: reports that arrive while a transaction is being written
//! wait for the next one and are written together, so a busy fleet costs one commit per batch
//! rather than one per report. A report is acknowledged only after its batch committed, so an
//! acknowledged report is as durable as before; an idle server writes each report at once.

use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

use crate::store::{NewReport, Store, StoreError};

/// Most reports written in one transaction.
const MAX_BATCH: usize = 256;
/// Reports waiting for a writer before callers wait for room.
const QUEUE: usize = 4096;

struct Job {
    report: NewReport,
    done: oneshot::Sender<Result<bool, StoreError>>,
}

/// The handle the report route writes through.
#[derive(Clone)]
pub struct ReportWriter {
    jobs: mpsc::Sender<Job>,
}

impl ReportWriter {
    /// Starts the batch writers on the current Tokio runtime: several on Postgres, where
    /// transactions run side by side; one on SQLite, which has a single writer anyway.
    pub fn start(store: Arc<dyn Store>) -> Self {
        let (jobs, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let writers = match store.backend() {
            crate::store::Backend::Postgres => 4,
            crate::store::Backend::Sqlite => 1,
        };
        for _ in 0..writers {
            tokio::spawn(write_batches(store.clone(), rx.clone()));
        }
        Self { jobs }
    }

    /// Records a report; false when its `report_seq` was already seen.
    pub async fn record(&self, report: NewReport) -> Result<bool, StoreError> {
        let (done, result) = oneshot::channel();
        let stopped = || StoreError::Unavailable(anyhow::anyhow!("report writer stopped"));
        self.jobs
            .send(Job { report, done })
            .await
            .map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

/// One writer: the reports that queued while a batch was written form the next batch.
async fn write_batches(store: Arc<dyn Store>, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>) {
    loop {
        let mut batch = Vec::new();
        // One writer collects at a time; the others are writing meanwhile.
        if rx.lock().await.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        // Every writer locks device rows in the same order, so concurrent batches cannot
        // deadlock; the sort is stable, so one device's reports keep their order.
        batch.sort_by_key(|j| j.report.device_id);
        let (reports, done): (Vec<NewReport>, Vec<_>) =
            batch.into_iter().map(|j| (j.report, j.done)).unzip();
        match store.record_reports(&reports).await {
            Ok(recorded) => {
                for (done, r) in done.into_iter().zip(recorded) {
                    let _ = done.send(Ok(r));
                }
            }
            // One bad report must not fail the others: write them one by one.
            Err(_) if reports.len() > 1 => {
                for (report, done) in reports.iter().zip(done) {
                    let r = store
                        .record_reports(std::slice::from_ref(report))
                        .await
                        .map(|r| r.first().copied().unwrap_or(false));
                    let _ = done.send(r);
                }
            }
            Err(e) => {
                if let Some(done) = done.into_iter().next() {
                    let _ = done.send(Err(e));
                }
            }
        }
    }
}
