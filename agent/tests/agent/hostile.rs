//! The agent against a hostile server or network: one test per attack of `docs/security.md`
//! that the device itself must stop. The test holds the server's desired-state key (the worst
//! case) but not the publishers' keys, and plays the server with a raw HTTP responder that can
//! send endless, trickled or cut-off answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_agent::hybrid::Escalator;
use flotilla_agent::sync::state_dir::StateDir;
use flotilla_agent::sync::updater::MonotonicClock;
use flotilla_agent::sync::updater::{ensure_enrolled, Cycle, MAX_QUEUED_REPORTS};
use flotilla_protocol::agent::DesiredState;
use flotilla_protocol::agent::{
    sign_desired_state, AgentReport, EnrollRequest, EscalationPolicy, ModelSlot,
    SignedDesiredState, SlotState, SlotStatus,
};
use flotilla_protocol::registry::{TrustRoot, TrustRootChain, TrustRootKey};
use flotilla_protocol::signing::{
    sign_model, sign_trust_root, Resource, SignedTrustRoot, SigningKey,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::device::{model_bytes, Device};
use crate::support::{binary_body, f32_bytes, f32_values, read_binary, TestApi};

/// How the hostile server answers one request.
#[derive(Clone)]
enum Answer {
    /// A complete response.
    Full(&'static str, Vec<u8>),
    /// A complete response with extra header lines (`name: value`).
    Headed(&'static str, Vec<String>, Vec<u8>),
    /// A status line, then body bytes forever (or until the client hangs up), `pause` between
    /// chunks of `chunk` bytes.
    Endless {
        status: &'static str,
        chunk: usize,
        pause: Option<Duration>,
    },
    /// A `200` promising all of `bytes`, but only the first `cut` of them before hanging up;
    /// with a `Range: bytes=N-` header, a `206` with the rest.
    CutThenResume { bytes: Vec<u8>, cut: usize },
}

/// One request as the hostile server saw it.
#[derive(Debug, Clone)]
struct Seen {
    /// `GET /path HTTP/1.1`.
    line: String,
    headers: String,
    body: Vec<u8>,
}

type Route = dyn Fn(&Seen) -> Answer + Send + Sync;

/// A raw HTTP/1.1 responder: one request per connection, answered as `route` says.
struct Hostile {
    base: String,
    /// Body bytes written to clients so far.
    sent: Arc<AtomicU64>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Hostile {
    async fn start(route: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> Hostile {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let sent = Arc::new(AtomicU64::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let route: Arc<Route> = Arc::new(route);
        let (s, r) = (Arc::clone(&sent), Arc::clone(&seen));
        tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                let (sent, seen, route) = (Arc::clone(&s), Arc::clone(&r), Arc::clone(&route));
                tokio::spawn(async move {
                    let _ = serve_one(conn, &route, &sent, &seen).await;
                });
            }
        });
        Hostile { base, sent, seen }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self, line_start: &str) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.line.starts_with(line_start))
            .count()
    }
}

async fn serve_one(
    mut conn: tokio::net::TcpStream,
    route: &Arc<Route>,
    sent: &AtomicU64,
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut byte).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&byte[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let (line, headers) = head.split_once("\r\n").unwrap_or((&head, ""));
    let length: usize = headers
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = conn.read(&mut byte).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&byte[..n]);
    }
    let request = Seen {
        line: line.to_owned(),
        headers: headers.to_owned(),
        body,
    };
    seen.lock().unwrap().push(request.clone());
    match route(&request) {
        Answer::Full(status, body) => {
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes()).await?;
            conn.write_all(&body).await?;
            sent.fetch_add(body.len() as u64, Ordering::SeqCst);
        }
        Answer::Headed(status, extra, body) => {
            let extra: String = extra.iter().map(|h| format!("{h}\r\n")).collect();
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes()).await?;
            conn.write_all(&body).await?;
            sent.fetch_add(body.len() as u64, Ordering::SeqCst);
        }
        Answer::Endless {
            status,
            chunk,
            pause,
        } => {
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            );
            conn.write_all(head.as_bytes()).await?;
            let mut piece = format!("{chunk:x}\r\n").into_bytes();
            piece.extend(std::iter::repeat_n(b' ', chunk));
            piece.extend_from_slice(b"\r\n");
            loop {
                conn.write_all(&piece).await?;
                sent.fetch_add(chunk as u64, Ordering::SeqCst);
                if let Some(p) = pause {
                    tokio::time::sleep(p).await;
                }
            }
        }
        Answer::CutThenResume { bytes, cut } => {
            let from: Option<usize> = request.headers.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                if !k.eq_ignore_ascii_case("range") {
                    return None;
                }
                v.trim()
                    .strip_prefix("bytes=")?
                    .strip_suffix('-')?
                    .parse()
                    .ok()
            });
            match from {
                Some(from) => {
                    let rest = &bytes[from..];
                    let head = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\nConnection: close\r\n\r\n",
                        rest.len(),
                        bytes.len() - 1,
                        bytes.len()
                    );
                    conn.write_all(head.as_bytes()).await?;
                    conn.write_all(rest).await?;
                    sent.fetch_add(rest.len() as u64, Ordering::SeqCst);
                }
                None => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        bytes.len()
                    );
                    conn.write_all(head.as_bytes()).await?;
                    conn.write_all(&bytes[..cut]).await?;
                    sent.fetch_add(cut as u64, Ordering::SeqCst);
                    // The link drops mid-transfer.
                }
            }
        }
    }
    conn.flush().await?;
    Ok(())
}

/// Far less than an endless answer would have pushed into the agent had it kept reading:
/// what the kernel's socket buffers hold, and the agent's own caps.
const READ_BOUND: u64 = 32 << 20;

fn endless(status: &'static str) -> Answer {
    Answer::Endless {
        status,
        chunk: 64 * 1024,
        pause: None,
    }
}

fn fraud_reason(device: &Device) -> String {
    device.fraud_status().reason.unwrap_or_default()
}

#[tokio::test]
async fn a_removed_slot_re_added_at_an_older_release_is_refused() {
    let mut device = Device::start().await;
    let v1 = device.slot("fraud-1.0.0.onnx", "1.0.0");
    let v11 = device.slot("fraud-1.1.0.onnx", "1.1.0");
    device.apply(vec![v1.clone()]).await;
    device.apply(vec![v11.clone()]).await;
    assert_eq!(device.fraud_status().state, SlotState::Active);
    // The deployment goes away, then comes back one release older: not a rollback anyone
    // signed, so the device refuses it and serves nothing older than it ever verified.
    device.apply(vec![]).await;
    assert!(device.app.api.registry().get("fraud").is_none());
    device.apply(vec![v1.clone()]).await;
    assert_eq!(device.fraud_status().state, SlotState::Failed);
    assert!(
        fraud_reason(&device).starts_with("downgrade_refused"),
        "{}",
        fraud_reason(&device)
    );
    assert!(device.app.api.registry().get("fraud").is_none());

    // The floor is on disk: a restart (and the backoff running out) changes nothing.
    device.restart().await;
    device.now.fetch_add(7200, Ordering::SeqCst);
    device.apply(vec![v1.clone()]).await;
    assert!(
        fraud_reason(&device).starts_with("downgrade_refused"),
        "{}",
        fraud_reason(&device)
    );
    assert_eq!(device.updater.state().floors["fraud"].version, "1.1.0");
    // The newest release itself installs again.
    device.apply(vec![v11.clone()]).await;
    assert_eq!(device.fraud_status().state, SlotState::Active);
    assert_eq!(
        device.app.api.registry().get("fraud").unwrap().version,
        "1.1.0"
    );
}

#[tokio::test]
async fn a_rollouts_one_step_back_to_the_exact_previous_version_still_works() {
    let mut device = Device::start().await;
    let v1 = device.slot("fraud-1.0.0.onnx", "1.0.0");
    let v11 = device.slot("fraud-1.1.0.onnx", "1.1.0");
    device.apply(vec![v1.clone()]).await;
    device.apply(vec![v11.clone()]).await;
    device.apply(vec![v1.clone()]).await;
    assert_eq!(device.fraud_status().state, SlotState::Active);
    assert_eq!(
        device.app.api.registry().get("fraud").unwrap().version,
        "1.0.0"
    );
    // But only one step: the floor stays at 1.1.0.
    assert_eq!(device.updater.state().floors["fraud"].version, "1.1.0");
}

#[tokio::test]
async fn a_state_jumping_to_the_end_of_the_sequence_is_refused_and_the_device_goes_on() {
    let mut device = Device::start().await;
    let v1 = device.slot("fraud-1.0.0.onnx", "1.0.0");
    let mut far = device.next_state(vec![]);
    far.sequence = u64::MAX;
    let err = device.apply_state(&far).await.unwrap_err();
    assert_eq!(err.code(), "sequence_jump_refused");
    // The next state from the real server is taken as if nothing happened.
    device.apply(vec![v1]).await;
    assert_eq!(device.fraud_status().state, SlotState::Active);
    assert!(device.updater.state().accepted_sequence < 10);
}

#[tokio::test]
async fn freshness_is_judged_on_the_monotonic_clock_not_the_wall_clock() {
    let mut device = Device::start().await;
    let monotonic = Arc::new(AtomicU64::new(0));
    let m = Arc::clone(&monotonic);
    device.updater.set_monotonic_clock(Arc::new(move || {
        Duration::from_secs(m.load(Ordering::SeqCst))
    }));
    let real_now = device.now.load(Ordering::SeqCst);
    let v1 = device.slot("fraud-1.0.0.onnx", "1.0.0");

    // No RTC: the wall clock says 1970. The state is judged by what the device has seen.
    device.now.store(0, Ordering::SeqCst);
    let mut state = device.next_state(vec![v1.clone()]);
    state.issued_at = real_now;
    state.expires_at = real_now + 3600;
    device.apply_state(&state).await.unwrap();
    assert!(!device.updater.desired_state_health().stale);

    // An old state never delivered (a freeze attack replays it) is expired, whatever the wall
    // clock says.
    let mut old = device.next_state(vec![]);
    old.issued_at = real_now - 7200;
    old.expires_at = real_now - 3600;
    let err = device.apply_state(&old).await.unwrap_err();
    assert_eq!(err.code(), "expired_desired_state");

    // A proxy answers 304 for longer than the state lives: the device goes stale on its
    // monotonic clock, keeps serving, and says so in its report, /metrics and readiness.
    monotonic.store(3601, Ordering::SeqCst);
    let health = device.updater.desired_state_health();
    assert!(health.stale, "{health:?}");
    assert_eq!(health.age_secs, Some(3601));
    let _ = device.updater.cycle(Duration::ZERO).await;
    let (status, ready) = device.app.get("/v2/health/ready").await;
    assert_eq!(status, 200, "stale is still ready: {ready}");
    assert_eq!(ready["details"]["desired_state"]["stale"], true, "{ready}");
    assert_eq!(
        crate::shadow::metric(&device, "flotilla_agent_desired_state_stale ").await,
        1
    );
    device.updater.queue_report().unwrap();
    let report = newest_report(&device);
    assert!(report.desired_state.unwrap().stale);
    assert_eq!(
        device.app.api.registry().get("fraud").unwrap().version,
        "1.0.0",
        "the verified model keeps serving"
    );

    // A wall clock eight days ahead does not make a fresh state look expired.
    device.now.store(real_now + 8 * 24 * 3600, Ordering::SeqCst);
    let mut fresh = device.next_state(vec![v1]);
    fresh.issued_at = real_now + 3601;
    fresh.expires_at = real_now + 3601 + 3600;
    device.apply_state(&fresh).await.unwrap();
    assert!(!device.updater.desired_state_health().stale);
}

fn newest_report(device: &Device) -> AgentReport {
    let dir = StateDir::open(device.dir()).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(dir.reports_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    serde_json::from_slice(&std::fs::read(files.last().unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn an_endless_error_body_on_the_artifact_route_is_not_read() {
    let hostile = Hostile::start(|_| endless("404 Not Found")).await;
    let mut device = Device::start().await;
    let mut slot = device.slot("fraud-1.0.0.onnx", "1.0.0");
    slot.url = format!("{}/api/v1/artifacts/sha256/{}", hostile.base, slot.sha256);
    tokio::time::timeout(Duration::from_secs(60), device.apply(vec![slot]))
        .await
        .expect("the update gave up on the endless body");
    assert_eq!(device.fraud_status().state, SlotState::Failed);
    assert!(
        fraud_reason(&device).starts_with("download_failed"),
        "{}",
        fraud_reason(&device)
    );
    assert!(hostile.sent() < READ_BOUND, "read {} bytes", hostile.sent());
}

#[tokio::test]
async fn endless_and_trickled_error_bodies_on_the_desired_state_route_are_bounded() {
    let hostile = Hostile::start(|_| endless("404 Not Found")).await;
    let device = Device::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut updater = device.updater_at(&hostile.base, dir.path());
    let polled = tokio::time::timeout(Duration::from_secs(60), updater.cycle(Duration::ZERO))
        .await
        .expect("the poll gave up on the endless body");
    assert!(polled.is_err());
    assert!(hostile.sent() < READ_BOUND, "read {} bytes", hostile.sent());

    // One byte every 50 ms, forever: the error body is read for a bounded time only.
    let trickle = Hostile::start(|seen| {
        if seen.line.starts_with("GET") {
            Answer::Endless {
                status: "404 Not Found",
                chunk: 1,
                pause: Some(Duration::from_millis(50)),
            }
        } else {
            Answer::Full("200 OK", br#"{"accepted": true}"#.to_vec())
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut updater = device.updater_at(&trickle.base, dir.path());
    let polled = tokio::time::timeout(Duration::from_secs(60), updater.cycle(Duration::ZERO))
        .await
        .expect("the poll gave up on the trickled body");
    assert!(polled.is_err());
}

#[tokio::test]
async fn an_endless_enrollment_answer_is_refused() {
    let hostile = Hostile::start(|_| endless("200 OK")).await;
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let request = EnrollRequest {
        enrollment_token: String::new(),
        device_public_key: String::new(),
        name: None,
        labels: Default::default(),
        hardware: Default::default(),
        agent_version: "test".into(),
    };
    let enrolled = tokio::time::timeout(
        Duration::from_secs(60),
        ensure_enrolled(&state, &hostile.base, Some("fle_x"), request, None),
    )
    .await
    .expect("enrollment gave up on the endless answer");
    assert!(enrolled.is_err());
    assert!(hostile.sent() < READ_BOUND, "read {} bytes", hostile.sent());
    assert!(state.identity().unwrap().is_none());
}

#[tokio::test]
async fn refused_states_are_retried_with_backoff_and_reported() {
    let mut device = Device::start().await;
    let state = device.next_state(vec![]);
    let mut stripped = sign_desired_state(&crate::device::server_key(), &state);
    stripped.signatures.clear();
    let stripped: Vec<u8> = serde_json::to_vec::<SignedDesiredState>(&stripped).unwrap();
    let hostile = Hostile::start(move |seen| {
        if seen.line.starts_with("GET") {
            Answer::Full("200 OK", stripped.clone())
        } else {
            Answer::Full("200 OK", br#"{"accepted": true}"#.to_vec())
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut updater = device.updater_at(&hostile.base, dir.path());
    assert_eq!(
        updater.cycle(Duration::ZERO).await.unwrap(),
        Cycle::StateRefused
    );
    // The report says why.
    let reports: Vec<AgentReport> = hostile
        .seen()
        .iter()
        .filter(|s| s.line.starts_with("POST"))
        .map(|s| serde_json::from_slice(&s.body).unwrap())
        .collect();
    let refused = reports
        .last()
        .and_then(|r| r.desired_state.clone())
        .and_then(|d| d.refused)
        .expect("the report carries the refusal");
    assert_eq!(refused.code, "bad_server_signature");

    // Left running, the loop does not ask again at once: the first retry waits at least
    // five seconds, so in three there is no second poll.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(updater.run(Duration::from_secs(1), async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop.send(());
    run.await.unwrap();
    let polls = hostile.count("GET");
    assert!(polls <= 2, "{polls} polls in three seconds");
}

#[tokio::test]
async fn a_download_cut_after_real_progress_resumes_at_once() {
    let bytes = model_bytes("vision-cnn-1.0.0.onnx");
    let cut = bytes.len() * 3 / 4;
    let served = bytes.clone();
    let hostile = Hostile::start(move |_| Answer::CutThenResume {
        bytes: served.clone(),
        cut,
    })
    .await;
    let mut device = Device::start().await;
    let mut slot = device.slot("vision-cnn-1.0.0.onnx", "1.0.0");
    slot.url = format!("{}/artifact", hostile.base);
    device.apply(vec![slot]).await;
    let status = device.fraud_status();
    assert_eq!(status.state, SlotState::Downloading, "{status:?}");
    assert!(device.updater.state().failures.is_empty(), "no backoff");
    assert!(device.updater.retry_due());
    // The next round resumes where the link broke (its poll goes nowhere: no server here).
    let _ = device.updater.cycle(Duration::ZERO).await;
    assert_eq!(device.fraud_status().state, SlotState::Active);
    let seen = hostile.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen[1]
            .headers
            .to_ascii_lowercase()
            .contains(&format!("range: bytes={cut}-")),
        "{:?}",
        seen[1]
    );
    assert_eq!(hostile.sent(), bytes.len() as u64, "no byte sent twice");
}

fn policy(threshold: f64) -> EscalationPolicy {
    EscalationPolicy {
        output: "probabilities".into(),
        threshold,
        server_model: "fraud".into(),
        server_version: None,
        timeout_ms: 2000,
    }
}

async fn infer(app: &TestApi) -> Value {
    let (status, body) = app
        .post(
            "/v2/models/fraud/infer",
            &json!({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 8],
                               "data": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn escalation_cannot_replace_the_signed_models_answer() {
    let app = TestApi::start(
        Default::default(),
        &[("fraud", "1.0.0", "fraud-1.0.0.onnx")],
    )
    .await;
    let local = infer(&app).await;
    let junk = |outputs: Value| {
        Answer::Full(
            "200 OK",
            serde_json::to_vec(
                &json!({"model_name": "fraud", "model_version": "9", "outputs": outputs}),
            )
            .unwrap(),
        )
    };
    let wrong = Hostile::start(move |_| {
        junk(
            json!([{"name": "probabilities", "datatype": "FP32", "shape": [1, 3],
                     "data": [1.0, 0.0, 0.0]}]),
        )
    })
    .await;
    app.api
        .registry()
        .set_escalator(Escalator::new(&wrong.base, "fld_x").unwrap());

    // A threshold no confidence can reach would send every input out: ignored.
    app.api
        .registry()
        .set_escalation("fraud", Some(policy(1e300)));
    let answer = infer(&app).await;
    assert_eq!(
        answer["parameters"]["flotilla_served_by"], "edge",
        "{answer}"
    );
    assert_eq!(wrong.count("POST"), 0, "no input left the device");

    // A threshold of 1 escalates this input; the server's answer has the wrong shape, so the
    // device answers with its own.
    app.api
        .registry()
        .set_escalation("fraud", Some(policy(1.0)));
    let answer = infer(&app).await;
    assert_eq!(wrong.count("POST"), 1);
    assert_eq!(
        answer["parameters"]["flotilla_served_by"], "edge_fallback",
        "{answer}"
    );
    assert_eq!(answer["outputs"], local["outputs"]);
}

#[tokio::test]
async fn escalated_answers_that_fit_the_model_are_returned() {
    let app = TestApi::start(
        Default::default(),
        &[("fraud", "1.0.0", "fraud-1.0.0.onnx")],
    )
    .await;
    let fits = Hostile::start(|_| {
        Answer::Full(
            "200 OK",
            serde_json::to_vec(&json!({"model_name": "fraud", "model_version": "1.1.0",
                "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [1, 2],
                             "data": [0.25, 0.75]}]}))
            .unwrap(),
        )
    })
    .await;
    app.api
        .registry()
        .set_escalator(Escalator::new(&fits.base, "fld_x").unwrap());
    app.api
        .registry()
        .set_escalation("fraud", Some(policy(1.0)));
    let answer = infer(&app).await;
    assert_eq!(
        answer["parameters"]["flotilla_served_by"], "server",
        "{answer}"
    );
    assert_eq!(answer["outputs"][0]["data"], json!([0.25, 0.75]));
}

/// A client speaking binary tensors: the device escalates in JSON (the server then answers JSON
/// too) and returns the server's answer in the encoding the client asked for.
#[tokio::test]
async fn binary_requests_escalate_as_json_and_answer_in_binary() {
    let app = TestApi::start(
        Default::default(),
        &[("fraud", "1.0.0", "fraud-1.0.0.onnx")],
    )
    .await;
    let server = Hostile::start(|_| {
        Answer::Full(
            "200 OK",
            serde_json::to_vec(&json!({"model_name": "fraud", "model_version": "1.1.0",
                "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [1, 2],
                             "data": [0.25, 0.75]}]}))
            .unwrap(),
        )
    })
    .await;
    app.api
        .registry()
        .set_escalator(Escalator::new(&server.base, "fld_x").unwrap());
    app.api
        .registry()
        .set_escalation("fraud", Some(policy(1.0)));
    let features = [0.1f32, 0.2, f32::NAN, 0.4, 0.5, 0.6, 0.7, 0.8];
    // tritonclient's default call with binary inputs: no outputs named, binary_data_output.
    let header = json!({
        "id": "b-1",
        "parameters": { "binary_data_output": true },
        "inputs": [{ "name": "features", "shape": [1, 8], "datatype": "FP32",
                     "parameters": { "binary_data_size": 32 } }]
    });
    let (length, body) = binary_body(&header, &f32_bytes(&features));
    let (answer, bytes) = read_binary(
        app.post_binary("/v2/models/fraud/infer", &length.to_string(), body)
            .await,
    )
    .await;
    assert_eq!(
        answer["parameters"]["flotilla_served_by"], "server",
        "{answer}"
    );
    assert_eq!(answer["model_version"], "1.1.0", "{answer}");
    assert_eq!(answer["id"], "b-1", "{answer}");
    assert_eq!(
        answer["outputs"][0]["parameters"]["binary_data_size"], 8,
        "{answer}"
    );
    assert_eq!(f32_values(&bytes), [0.25, 0.75]);

    // What the server was asked: plain JSON, the inputs' values (NaN as null), the output named.
    let seen = server.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let headers = seen[0].headers.to_ascii_lowercase();
    assert!(
        !headers.contains("inference-header-content-length"),
        "{headers}"
    );
    assert!(
        headers.contains("content-type: application/json"),
        "{headers}"
    );
    let asked: Value = serde_json::from_slice(&seen[0].body).unwrap();
    let data = asked["inputs"][0]["data"].as_array().unwrap();
    assert_eq!(data.len(), 8, "{asked}");
    assert!(data[2].is_null(), "{asked}");
    assert_eq!(data[0].as_f64().unwrap() as f32, 0.1);
    assert_eq!(asked["inputs"][0]["shape"], json!([1, 8]));
    assert_eq!(asked["outputs"], json!([{ "name": "probabilities" }]));
    assert!(asked.get("parameters").is_none(), "{asked}");
}

#[tokio::test]
async fn the_local_api_refuses_rebound_hosts_and_cross_site_form_posts() {
    let app = TestApi::start(
        Default::default(),
        &[("fraud", "1.0.0", "fraud-1.0.0.onnx")],
    )
    .await;
    let infer_url = app.url("/v2/models/fraud/infer");
    let body = r#"{"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 8], "data": [0, 0, 0, 0, 0, 0, 0, 0]}]}"#;
    // A page at attacker.example whose name now resolves to 127.0.0.1.
    let rebound = app
        .client
        .get(app.url("/v2/models/fraud"))
        .header("host", "attacker.example:8000")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 403);
    let error: Value = rebound.json().await.unwrap();
    assert!(error["error"].as_str().unwrap().contains("Host"), "{error}");
    // A form on any page can POST text/plain to the loopback port without asking.
    let form = app
        .client
        .post(&infer_url)
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    // What protocol clients send still works: an IP or localhost, JSON.
    for host in [
        "127.0.0.1:8000",
        "localhost:8000",
        "localhost",
        "[::1]:8000",
    ] {
        let ok = app
            .client
            .post(&infer_url)
            .header("host", host)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "{host}");
    }
}

#[tokio::test]
async fn a_device_offline_for_months_keeps_a_bounded_report_queue() {
    let mut device = Device::start().await;
    device.apply(vec![]).await;
    // Months offline: the device is at report 20,000 and its queue holds the last 10,000.
    let state_file = device.dir().join("state.json");
    let mut state: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    state["next_report_seq"] = json!(20_000);
    std::fs::write(&state_file, serde_json::to_vec(&state).unwrap()).unwrap();
    device.restart().await;
    let reports = StateDir::open(device.dir()).unwrap().reports_dir();
    for seq in 1..=MAX_QUEUED_REPORTS as u64 {
        // Written directly: the queue only counts and orders them.
        std::fs::write(reports.join(format!("{seq:020}.json")), b"{}").unwrap();
    }
    device.updater.queue_report().unwrap();
    let files: std::collections::BTreeSet<String> = std::fs::read_dir(&reports)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(files.len(), MAX_QUEUED_REPORTS);
    assert!(
        files.contains(&format!("{:020}.json", 20_001)),
        "the newest stays"
    );
    assert!(
        !files.contains(&format!("{:020}.json", 1)),
        "the oldest went first"
    );
}

/// An upstream-style bundle: it binds `bytes`' digest and nothing else.
fn digest_only_bundle(device: &Device, bytes: &[u8]) -> String {
    let bundle = sign_model(
        &device.publisher,
        &[Resource::single_file(Sha256::digest(bytes).into())],
        "model.onnx",
        None,
    )
    .unwrap();
    String::from_utf8(bundle.to_json()).unwrap()
}

fn digest_only_slot(device: &Device, model: &str, file: &str, version: &str) -> ModelSlot {
    let bytes = model_bytes(file);
    let mut slot = device.slot(file, version);
    slot.model = model.into();
    slot.bundles = vec![digest_only_bundle(device, &bytes)];
    slot
}

fn status_of(device: &Device, model: &str) -> SlotStatus {
    device
        .updater
        .slot_statuses()
        .into_iter()
        .find(|s| s.model == model)
        .unwrap_or_else(|| panic!("no status for {model}"))
}

#[tokio::test]
async fn bundles_without_signed_facts_only_install_for_digest_only_models() {
    let mut device = Device::start().await;
    // Model A's (the sensor model's) upstream-signed artifact offered as model B (fraud),
    // which the trust root does not mark digest-only: its name would be the server's word.
    let as_fraud = digest_only_slot(&device, "fraud", "sensor-anomaly-1.0.0.onnx", "1.0.0");
    device.apply(vec![as_fraud]).await;
    let status = status_of(&device, "fraud");
    assert_eq!(status.state, SlotState::Failed);
    assert!(
        status
            .reason
            .as_deref()
            .unwrap_or("")
            .starts_with("signed_facts_missing"),
        "{status:?}"
    );
    assert!(device.app.api.registry().get("fraud").is_none());

    // The test trust root marks `upstream` digest-only: its versions install, the floor
    // compares semantic versions, and bytes it moved past cannot come back relabelled 99.0.0.
    let v1 = digest_only_slot(&device, "upstream", "fraud-1.0.0.onnx", "1.0.0");
    let v2 = digest_only_slot(&device, "upstream", "fraud-1.1.0.onnx", "2.0.0");
    device.apply(vec![v1.clone()]).await;
    assert_eq!(status_of(&device, "upstream").state, SlotState::Active);
    device.apply(vec![v2.clone()]).await;
    assert_eq!(status_of(&device, "upstream").state, SlotState::Active);
    let relabelled = digest_only_slot(&device, "upstream", "fraud-1.0.0.onnx", "99.0.0");
    device.apply(vec![relabelled]).await;
    let status = status_of(&device, "upstream");
    assert!(
        status
            .reason
            .as_deref()
            .unwrap_or("")
            .starts_with("superseded_artifact"),
        "{status:?}"
    );
    assert_eq!(
        device.app.api.registry().get("upstream").unwrap().version,
        "2.0.0"
    );
    // An older version number is the floor's to refuse.
    let older = digest_only_slot(&device, "upstream", "sensor-anomaly-1.0.0.onnx", "1.5.0");
    device.apply(vec![older]).await;
    assert!(status_of(&device, "upstream")
        .reason
        .as_deref()
        .unwrap_or("")
        .starts_with("downgrade_refused"));
}

/// A server that hands out whatever desired state and trust-root chain the test puts in, and
/// names `named` as the newest trust root.
struct RootServer {
    hostile: Hostile,
    state: Arc<Mutex<Vec<u8>>>,
    chain: Arc<Mutex<Vec<SignedTrustRoot>>>,
}

impl RootServer {
    async fn start(named: u64) -> RootServer {
        let state = Arc::new(Mutex::new(Vec::new()));
        let chain = Arc::new(Mutex::new(Vec::new()));
        let (st, ch) = (Arc::clone(&state), Arc::clone(&chain));
        let hostile = Hostile::start(move |seen| {
            if seen.line.starts_with("GET /api/v1/agent/trust-roots") {
                let roots = ch.lock().unwrap().clone();
                Answer::Full(
                    "200 OK",
                    serde_json::to_vec(&TrustRootChain { roots }).unwrap(),
                )
            } else if seen.line.starts_with("GET") {
                Answer::Headed(
                    "200 OK",
                    vec![format!("flotilla-trust-root: {named}")],
                    st.lock().unwrap().clone(),
                )
            } else {
                Answer::Full("200 OK", br#"{"accepted": true}"#.to_vec())
            }
        })
        .await;
        RootServer {
            hostile,
            state,
            chain,
        }
    }

    fn serve_state(&self, envelope: Vec<u8>) {
        *self.state.lock().unwrap() = envelope;
    }

    fn serve_chain(&self, roots: Vec<SignedTrustRoot>) {
        *self.chain.lock().unwrap() = roots;
    }
}

/// A trust root trusting `keys` (threshold 1), as the test devices' provisioned one is.
fn root_with(serial: u64, keys: &[&SigningKey], server_key: Option<&SigningKey>) -> TrustRoot {
    TrustRoot {
        version: 1,
        serial,
        server_key_pem: server_key.map(|k| k.public_key().to_pem()),
        keys: keys
            .iter()
            .enumerate()
            .map(|(i, k)| TrustRootKey {
                key_id: k.public_key().key_id(),
                name: format!("key-{i}"),
                public_key_pem: k.public_key().to_pem(),
            })
            .collect(),
        threshold: 1,
        model_thresholds: Default::default(),
        digest_only_models: ["upstream".to_owned()].into(),
    }
}

/// A monotonic clock the test moves by hand.
fn hand_clock() -> (Arc<AtomicU64>, MonotonicClock) {
    let secs = Arc::new(AtomicU64::new(0));
    let s = Arc::clone(&secs);
    (
        secs,
        Arc::new(move || Duration::from_secs(s.load(Ordering::SeqCst))),
    )
}

/// `fraud`@`version` from `file`, signed by `key` alone.
fn slot_signed_by(device: &Device, key: &SigningKey, file: &str, version: &str) -> ModelSlot {
    let mut slot = device.slot(file, version);
    slot.bundles = vec![Device::bundle(key, &model_bytes(file), version, None)];
    // The root server answers for the server; the bytes come from the device's file server.
    slot.url = device.artifact_url(&slot.url);
    slot
}

#[tokio::test]
async fn a_trust_root_rotates_only_when_the_old_keys_sign_and_revoked_keys_stop_counting() {
    let mut device = Device::start().await;
    let (old, new, attacker) = (
        device.publisher.clone(),
        crate::device::key(11),
        crate::device::key(12),
    );
    let server = RootServer::start(2).await;
    let dir = tempfile::tempdir().unwrap();
    let mut updater = device.updater_at(&server.hostile.base, dir.path());
    let (mono, clock) = hand_clock();
    updater.set_monotonic_clock(clock);

    // The server (compromised) offers a root trusting a key of its own, signed by that key
    // and the new publisher key, but not by the key the device trusts.
    let next = root_with(2, &[&new, &attacker], None);
    server.serve_chain(vec![sign_trust_root(&next, &[&new, &attacker]).unwrap()]);
    let by_attacker = slot_signed_by(&device, &attacker, "fraud-1.0.0.onnx", "1.0.0");
    let state = device.next_state(vec![by_attacker]);
    server.serve_state(device.sign(&state));
    updater.cycle(Duration::ZERO).await.unwrap();
    assert_eq!(updater.trust_root_serial(), 1);
    let status = updater.slot_statuses().pop().unwrap();
    assert_eq!(status.state, SlotState::Failed, "{status:?}");
    assert!(device.app.api.registry().get("fraud").is_none());
    // It is not fetched again on every poll.
    updater.cycle(Duration::ZERO).await.unwrap();
    assert_eq!(server.hostile.count("GET /api/v1/agent/trust-roots"), 1);

    // The real rotation: the old key vouches for the new one, which signs too. The old key
    // is left out of the new root (revoked).
    let next = root_with(2, &[&new], None);
    server.serve_chain(vec![sign_trust_root(&next, &[&old, &new]).unwrap()]);
    let by_new = slot_signed_by(&device, &new, "fraud-1.0.0.onnx", "1.0.0");
    let state = device.next_state(vec![by_new]);
    server.serve_state(device.sign(&state));
    mono.fetch_add(601, Ordering::SeqCst);
    updater.cycle(Duration::ZERO).await.unwrap();
    assert_eq!(updater.trust_root_serial(), 2);
    assert_eq!(
        updater.slot_statuses().pop().unwrap().state,
        SlotState::Active
    );
    assert_eq!(
        device.app.api.registry().get("fraud").unwrap().version,
        "1.0.0"
    );
    // The revoked key no longer counts: its 1.1.0 is refused, 1.0.0 keeps serving.
    let by_old = slot_signed_by(&device, &old, "fraud-1.1.0.onnx", "1.1.0");
    let state = device.next_state(vec![by_old]);
    server.serve_state(device.sign(&state));
    updater.cycle(Duration::ZERO).await.unwrap();
    let status = updater.slot_statuses().pop().unwrap();
    assert_eq!(status.state, SlotState::Failed, "{status:?}");
    assert_eq!(
        device.app.api.registry().get("fraud").unwrap().version,
        "1.0.0"
    );

    // The accepted chain is on disk and checked again at start: a restart is still on root 2.
    drop(updater);
    let restarted = device.updater_at(&server.hostile.base, dir.path());
    assert_eq!(restarted.trust_root_serial(), 2);
    assert_eq!(restarted.desired_state_health().trust_root_serial, Some(2));
}

#[tokio::test]
async fn a_root_naming_a_new_server_key_resets_the_sequence_floor_and_only_a_signed_one_does() {
    let mut device = Device::start().await;
    let publisher = device.publisher.clone();
    let (old_server, new_server, attacker) = (
        crate::device::server_key(),
        crate::device::key(21),
        crate::device::key(22),
    );
    let server = RootServer::start(2).await;
    let dir = tempfile::tempdir().unwrap();
    let mut updater = device.updater_at(&server.hostile.base, dir.path());
    let (mono, clock) = hand_clock();
    updater.set_monotonic_clock(clock);
    let sign = |key: &SigningKey, state: &DesiredState| {
        serde_json::to_vec(&sign_desired_state(key, state)).unwrap()
    };

    // A root naming the attacker's key, signed only by the attacker: refused, while the old
    // key's states (at sequence 5000) are taken.
    let forged = root_with(2, &[&publisher], Some(&attacker));
    server.serve_chain(vec![sign_trust_root(&forged, &[&attacker]).unwrap()]);
    let mut state = device.next_state(vec![]);
    state.sequence = 5000;
    server.serve_state(sign(&old_server, &state));
    assert_eq!(updater.cycle(Duration::ZERO).await.unwrap(), Cycle::Done);
    assert_eq!(server.hostile.count("GET /api/v1/agent/trust-roots"), 1);
    assert_eq!(updater.trust_root_serial(), 1);
    assert_eq!(updater.state().accepted_sequence, 5000);

    // The state the attacker signs, numbered afresh, is refused too.
    let mut fresh = device.next_state(vec![]);
    fresh.sequence = 1;
    server.serve_state(sign(&attacker, &fresh));
    assert_eq!(
        updater.cycle(Duration::ZERO).await.unwrap(),
        Cycle::StateRefused
    );
    assert_eq!(updater.trust_root_serial(), 1);
    assert_eq!(updater.state().accepted_sequence, 5000);

    // The publishers rotate the server key: the new key's states start again at 1.
    let next = root_with(2, &[&publisher], Some(&new_server));
    server.serve_chain(vec![sign_trust_root(&next, &[&publisher]).unwrap()]);
    server.serve_state(sign(&new_server, &fresh));
    mono.fetch_add(601, Ordering::SeqCst);
    assert_eq!(updater.cycle(Duration::ZERO).await.unwrap(), Cycle::Done);
    assert_eq!(updater.trust_root_serial(), 2);
    assert_eq!(updater.state().accepted_sequence, 1);
    // The old key signs nothing any more, whatever its sequence.
    let mut stale = device.next_state(vec![]);
    stale.sequence = 6000;
    server.serve_state(sign(&old_server, &stale));
    assert_eq!(
        updater.cycle(Duration::ZERO).await.unwrap(),
        Cycle::StateRefused
    );
    assert_eq!(
        updater.last_rejection.as_ref().map(|e| e.code()),
        Some("bad_server_signature")
    );
    // And after a restart the new key is still the one.
    drop(updater);
    let mut restarted = device.updater_at(&server.hostile.base, dir.path());
    let mut again = device.next_state(vec![]);
    again.sequence = 2;
    server.serve_state(sign(&new_server, &again));
    assert_eq!(restarted.cycle(Duration::ZERO).await.unwrap(), Cycle::Done);
    assert_eq!(restarted.state().accepted_sequence, 2);
}
