//! The report queue: reports are written to disk first and sent oldest first, so a device
//! offline for a while replays them in order when the server is back; the queue is bounded.

use flotilla_protocol::agent::AgentReport;

use super::{Updater, MAX_QUEUED_REPORTS};
use crate::sync::client::ClientError;

impl Updater {
    /// Writes a report to the on-disk queue.
    pub fn queue_report(&mut self) -> anyhow::Result<()> {
        self.state.next_report_seq += 1;
        let report = AgentReport {
            report_seq: self.state.next_report_seq,
            created_at: (self.clock)(),
            applied_sequence: self.state.applied_sequence,
            slots: self.slot_statuses(),
            health: (self.health)(),
            desired_state: Some(self.desired_state_health()),
        };
        self.dir.save_state(&self.state)?;
        let path = self
            .dir
            .reports_dir()
            .join(format!("{:020}.json", report.report_seq));
        crate::sync::state_dir::write_atomic(&path, &serde_json::to_vec(&report)?, 0o600)?;
        self.trim_report_queue();
        Ok(())
    }

    /// Keeps at most [`MAX_QUEUED_REPORTS`] on disk: a device offline for months drops its
    /// oldest reports rather than fill its disk (each is a health window; the newest matter).
    fn trim_report_queue(&self) {
        let mut files = self.queued_reports();
        if files.len() <= MAX_QUEUED_REPORTS {
            return;
        }
        let excess = files.len() - MAX_QUEUED_REPORTS;
        tracing::warn!(
            dropped = excess,
            "report queue full; dropping the oldest reports"
        );
        for path in files.drain(..excess) {
            let _ = std::fs::remove_file(path);
        }
    }

    /// The queued report files, oldest first.
    fn queued_reports(&self) -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(self.dir.reports_dir())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        files
    }

    /// Sends queued reports oldest first; stops at the first one the server cannot take now.
    /// Returns how many were delivered.
    pub async fn flush_reports(&self) -> usize {
        let files = self.queued_reports();
        let mut sent = 0;
        for path in files {
            let report: Option<AgentReport> = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let Some(report) = report else {
                let _ = std::fs::remove_file(&path);
                continue;
            };
            match self.client.report(&report).await {
                Ok(()) => {
                    let _ = std::fs::remove_file(&path);
                    sent += 1;
                }
                Err(ClientError::Refused { code, message, .. }) => {
                    // The server will never take this one; do not block the queue behind it.
                    tracing::warn!(%code, %message, "report refused; dropping it");
                    let _ = std::fs::remove_file(&path);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "server unavailable; reports stay queued");
                    break;
                }
            }
        }
        sent
    }
}
