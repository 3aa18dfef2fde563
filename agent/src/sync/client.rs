//! The agent's client of the server: enrollment, long-polls, resumable downloads, reports.

use flotilla_protocol::agent::{AgentReport, EnrollRequest, EnrollResponse};
use flotilla_protocol::ApiErrorBody;
use futures_util::StreamExt;
use reqwest::header::{ETAG, IF_NONE_MATCH, RANGE};
use reqwest::StatusCode;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Why a call failed, sorted by what the agent should do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached or answered 5xx: retry with backoff.
    #[error("server unavailable: {0}")]
    Unavailable(String),
    /// The server refused (4xx): retrying the same request will not help.
    #[error("server refused ({status}): {code}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Stable error code.
        code: String,
        /// Message.
        message: String,
    },
    /// The download broke a rule (too long, too slow, too late, wrong digest).
    #[error("download failed: {0}")]
    Download(String),
}

/// Result of a desired-state poll.
#[derive(Debug)]
pub enum Poll {
    /// A (possibly) new envelope, raw bytes, with its ETag.
    Changed {
        /// Raw JSON of the signed envelope, to verify before parsing.
        body: Vec<u8>,
        /// ETag to send next time.
        etag: Option<String>,
    },
    /// Nothing changed.
    Unchanged,
}

/// Download limits: the signed size bounds the bytes; a deadline and a minimum throughput
/// bound the time, so a server that trickles bytes cannot stall updates forever.
#[derive(Debug, Clone, Copy)]
pub struct DownloadLimits {
    /// Least average throughput accepted, bytes per second.
    pub min_bytes_per_sec: u64,
    /// Time allowed on top of `size / min_bytes_per_sec`.
    pub grace: Duration,
}

impl Default for DownloadLimits {
    fn default() -> Self {
        Self {
            min_bytes_per_sec: 64 * 1024,
            grace: Duration::from_secs(30),
        }
    }
}

/// HTTP client for one server.
#[derive(Debug, Clone)]
pub struct ServerClient {
    http: reqwest::Client,
    base: String,
    credential: Option<String>,
}

async fn refused(res: reqwest::Response) -> ClientError {
    let status = res.status().as_u16();
    let body: Option<ApiErrorBody> = res.json().await.ok();
    match body {
        Some(b) => ClientError::Refused {
            status,
            code: b.error.code,
            message: b.error.message,
        },
        None => ClientError::Refused {
            status,
            code: "unknown".into(),
            message: "no error body".into(),
        },
    }
}

fn unavailable(e: reqwest::Error) -> ClientError {
    ClientError::Unavailable(e.to_string())
}

impl ServerClient {
    /// A client for `base` (`https://flotilla.example.com`).
    pub fn new(base: &str, credential: Option<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("flotilla-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            credential,
        })
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.credential {
            Some(c) => req.bearer_auth(c),
            None => req,
        }
    }

    /// Enrolls with a one-time token.
    pub async fn enroll(&self, req: &EnrollRequest) -> Result<EnrollResponse, ClientError> {
        let res = self
            .http
            .post(self.url(flotilla_protocol::routes::ENROLL))
            .timeout(Duration::from_secs(30))
            .json(req)
            .send()
            .await
            .map_err(unavailable)?;
        if res.status().is_success() {
            res.json().await.map_err(unavailable)
        } else if res.status().is_server_error() {
            Err(ClientError::Unavailable(format!(
                "enroll answered {}",
                res.status()
            )))
        } else {
            Err(refused(res).await)
        }
    }

    /// Long-polls the desired state for up to `wait`.
    pub async fn poll(&self, etag: Option<&str>, wait: Duration) -> Result<Poll, ClientError> {
        let url = format!(
            "{}?wait={}",
            self.url(flotilla_protocol::routes::AGENT_DESIRED_STATE),
            wait.as_secs()
        );
        let mut req = self
            .authed(self.http.get(url))
            .timeout(wait + Duration::from_secs(15));
        if let Some(e) = etag {
            req = req.header(IF_NONE_MATCH, e);
        }
        let res = req.send().await.map_err(unavailable)?;
        match res.status() {
            StatusCode::NOT_MODIFIED => Ok(Poll::Unchanged),
            s if s.is_success() => {
                let etag = res
                    .headers()
                    .get(ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                // A desired state is small; refuse absurd bodies instead of buffering them.
                let body = read_capped(res, 16 * 1024 * 1024).await?;
                Ok(Poll::Changed { body, etag })
            }
            s if s.is_server_error() => Err(ClientError::Unavailable(format!("poll answered {s}"))),
            _ => Err(refused(res).await),
        }
    }

    /// Sends one report.
    pub async fn report(&self, report: &AgentReport) -> Result<(), ClientError> {
        let res = self
            .authed(
                self.http
                    .post(self.url(flotilla_protocol::routes::AGENT_REPORT)),
            )
            .timeout(Duration::from_secs(30))
            .json(report)
            .send()
            .await
            .map_err(unavailable)?;
        if res.status().is_success() {
            Ok(())
        } else if res.status().is_server_error() {
            Err(ClientError::Unavailable(format!(
                "report answered {}",
                res.status()
            )))
        } else {
            Err(refused(res).await)
        }
    }

    /// Downloads `url` into `partial`, resuming from its current length, never past `size`
    /// bytes, within the time `limits` allow. Returns when the file has exactly `size` bytes.
    pub async fn download(
        &self,
        url: &str,
        partial: &Path,
        size: u64,
        limits: DownloadLimits,
    ) -> Result<(), ClientError> {
        let io = |e: std::io::Error| ClientError::Download(format!("{}: {e}", partial.display()));
        let mut have = std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
        if have > size {
            std::fs::remove_file(partial).map_err(io)?;
            have = 0;
        }
        if have == size {
            return Ok(());
        }
        let budget = Duration::from_secs(size / limits.min_bytes_per_sec.max(1)) + limits.grace;
        let deadline = Instant::now() + budget;
        let mut req = self.authed(self.http.get(self.url(url)));
        if have > 0 {
            req = req.header(RANGE, format!("bytes={have}-"));
        }
        let res = tokio::time::timeout_at(deadline.into(), req.send())
            .await
            .map_err(|_| ClientError::Download("no response before the deadline".into()))?
            .map_err(unavailable)?;
        let resumed = match res.status() {
            StatusCode::PARTIAL_CONTENT => true,
            StatusCode::OK => false,
            s if s.is_server_error() => {
                return Err(ClientError::Unavailable(format!("download answered {s}")))
            }
            _ => return Err(refused(res).await),
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(resumed)
            .write(true)
            .truncate(!resumed)
            .open(partial)
            .map_err(io)?;
        let mut written = if resumed { have } else { 0 };
        let mut body = res.bytes_stream();
        loop {
            let next = tokio::time::timeout_at(deadline.into(), body.next())
                .await
                .map_err(|_| {
                    ClientError::Download(format!(
                        "slower than {} bytes/s",
                        limits.min_bytes_per_sec
                    ))
                })?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(unavailable)?;
            if written + chunk.len() as u64 > size {
                // Endless or oversized data: keep nothing of it.
                drop(file);
                let _ = std::fs::remove_file(partial);
                return Err(ClientError::Download(format!(
                    "the server sent more than the signed {size} bytes"
                )));
            }
            file.write_all(&chunk).map_err(io)?;
            written += chunk.len() as u64;
        }
        file.sync_all().map_err(io)?;
        if written != size {
            return Err(ClientError::Unavailable(format!(
                "download ended at {written} of {size} bytes"
            )));
        }
        Ok(())
    }
}

async fn read_capped(res: reqwest::Response, cap: usize) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    let mut stream = res.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(unavailable)?;
        if out.len() + chunk.len() > cap {
            return Err(ClientError::Download(format!(
                "response larger than {cap} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
