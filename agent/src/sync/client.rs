//! The agent's client of the server: enrollment, long-polls, resumable downloads, reports.

use flotilla_protocol::agent::{AgentReport, EnrollRequest, EnrollResponse};
use flotilla_protocol::registry::TrustRootChain;
use flotilla_protocol::ApiErrorBody;
use futures_util::StreamExt;
use reqwest::header::{ETAG, IF_NONE_MATCH, RANGE};
use reqwest::StatusCode;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::sync::credential::{RotationRequest, SharedCredential};

mod rotation;

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
        /// The newest trust root's serial, as the server says (a hint: roots are signed).
        trust_root: Option<u64>,
    },
    /// Nothing changed.
    Unchanged {
        /// The newest trust root's serial, as the server says.
        trust_root: Option<u64>,
    },
}

impl Poll {
    /// The trust-root serial the server named.
    pub fn trust_root(&self) -> Option<u64> {
        match self {
            Poll::Changed { trust_root, .. } | Poll::Unchanged { trust_root } => *trust_root,
        }
    }
}

/// Signed trust roots in one answer: at most 32 roots of at most 256 KiB.
const MAX_TRUST_ROOTS_BODY: usize = 8 * 1024 * 1024;

/// Download limits: the signed size bounds the bytes; progress bounds the time. Every
/// `window` must bring at least `min_bytes_per_sec × window` bytes, so a server that trickles
/// bytes or stalls cannot hold an update forever, while a slow or patchy link (a vehicle on
/// 384 kbit/s with outages) keeps going for as long as bytes keep arriving.
#[derive(Debug, Clone, Copy)]
pub struct DownloadLimits {
    /// Least throughput accepted over each window, bytes per second.
    pub min_bytes_per_sec: u64,
    /// The window progress is judged over (also the longest wait for the response headers).
    pub window: Duration,
}

impl Default for DownloadLimits {
    fn default() -> Self {
        Self {
            min_bytes_per_sec: 1024,
            window: Duration::from_secs(60),
        }
    }
}

impl DownloadLimits {
    /// The least a window must bring.
    pub fn bytes_per_window(&self) -> u64 {
        self.min_bytes_per_sec
            .saturating_mul(self.window.as_secs().max(1))
    }
}

/// HTTP client for one server.
#[derive(Debug, Clone)]
pub struct ServerClient {
    http: reqwest::Client,
    base: String,
    credential: Option<SharedCredential>,
    rotation: RotationRequest,
}

/// The most read of an error body: an error code and a message, never a model.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// The longest spent reading an error body.
const ERROR_BODY_TIME: Duration = Duration::from_secs(10);
/// The most read of an enrollment answer.
const MAX_ENROLL_BODY: usize = 1 << 20;
/// The most read of a desired state (a few hundred slots with their bundles).
const MAX_DESIRED_STATE_BODY: usize = 16 << 20;

/// The error of a refused call, reading at most [`MAX_ERROR_BODY`] bytes for at most
/// [`ERROR_BODY_TIME`]: an endless or trickled error body neither fills memory nor holds the
/// update task.
async fn refused(res: reqwest::Response) -> ClientError {
    let status = res.status().as_u16();
    let body = tokio::time::timeout(ERROR_BODY_TIME, read_capped(res, MAX_ERROR_BODY))
        .await
        .ok()
        .and_then(Result::ok);
    let body: Option<ApiErrorBody> = body.and_then(|b| serde_json::from_slice(&b).ok());
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
            credential: credential.map(SharedCredential::new),
            rotation: RotationRequest::default(),
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
            Some(c) => req.bearer_auth(c.get()),
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
            let body = read_capped(res, MAX_ENROLL_BODY).await?;
            serde_json::from_slice(&body).map_err(|e| {
                ClientError::Unavailable(format!("the enrollment answer is not JSON: {e}"))
            })
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
        self.rotation.note(res.headers());
        let trust_root = res
            .headers()
            .get(flotilla_protocol::routes::TRUST_ROOT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        match res.status() {
            StatusCode::NOT_MODIFIED => Ok(Poll::Unchanged { trust_root }),
            s if s.is_success() => {
                let etag = res
                    .headers()
                    .get(ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                // A desired state is small; refuse absurd bodies instead of buffering them.
                let body = read_capped(res, MAX_DESIRED_STATE_BODY).await?;
                Ok(Poll::Changed {
                    body,
                    etag,
                    trust_root,
                })
            }
            s if s.is_server_error() => Err(ClientError::Unavailable(format!("poll answered {s}"))),
            _ => Err(refused(res).await),
        }
    }

    /// The rotated trust roots after `serial`, oldest first, as the server holds them (each is
    /// checked against the one before by the caller).
    pub async fn trust_roots(&self, serial: u64) -> Result<TrustRootChain, ClientError> {
        let url = format!(
            "{}?after={serial}",
            self.url(flotilla_protocol::routes::AGENT_TRUST_ROOTS)
        );
        let res = self
            .authed(self.http.get(url))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(unavailable)?;
        match res.status() {
            s if s.is_success() => {
                let body = read_capped(res, MAX_TRUST_ROOTS_BODY).await?;
                serde_json::from_slice(&body).map_err(|e| ClientError::Refused {
                    status: 200,
                    code: "trust_root_malformed".into(),
                    message: e.to_string(),
                })
            }
            s if s.is_server_error() => Err(ClientError::Unavailable(format!(
                "trust roots answered {s}"
            ))),
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
    /// bytes, refusing a transfer that makes less progress than `limits` ask. Returns when
    /// the file has exactly `size` bytes; on a broken link the bytes received stay in
    /// `partial` for the next attempt to resume.
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
        let mut req = self.authed(self.http.get(self.url(url)));
        if have > 0 {
            req = req.header(RANGE, format!("bytes={have}-"));
        }
        let res = tokio::time::timeout(limits.window, req.send())
            .await
            .map_err(|_| ClientError::Download(format!("no response within {:?}", limits.window)))?
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
        let mut window_end = Instant::now() + limits.window;
        let mut window_bytes = 0u64;
        loop {
            let next = match tokio::time::timeout_at(window_end.into(), body.next()).await {
                Ok(next) => next,
                Err(_) => {
                    // A window is over: enough came in it, or the transfer is stalled.
                    if window_bytes < limits.bytes_per_window() {
                        file.sync_all().map_err(io)?;
                        return Err(ClientError::Download(format!(
                            "stalled: {window_bytes} bytes in {:?}, less than {} bytes/s",
                            limits.window, limits.min_bytes_per_sec
                        )));
                    }
                    window_end = Instant::now() + limits.window;
                    window_bytes = 0;
                    continue;
                }
            };
            let Some(chunk) = next else { break };
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    // A broken link: keep what arrived, the next attempt resumes from it.
                    file.sync_all().map_err(io)?;
                    return Err(unavailable(e));
                }
            };
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
            window_bytes += chunk.len() as u64;
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

/// Reads a body of at most `cap` bytes. A `Content-Length` above it is refused before any of
/// the body is read.
async fn read_capped(res: reqwest::Response, cap: usize) -> Result<Vec<u8>, ClientError> {
    let too_big = || ClientError::Download(format!("response larger than {cap} bytes"));
    if res
        .content_length()
        .is_some_and(|n| n > u64::try_from(cap).unwrap_or(u64::MAX))
    {
        return Err(too_big());
    }
    let mut out = Vec::new();
    let mut stream = res.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(unavailable)?;
        if out.len() + chunk.len() > cap {
            return Err(too_big());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
