use flotilla_e2e::{free_port, fresh_binary, fresh_postgres_database, Proc};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

const START: Duration = Duration::from_secs(60);

fn server_in(dir: &std::path::Path, port: u16) -> Command {
    let mut cmd = Command::new(fresh_binary("flotilla-server", "flotilla-server"));
    cmd.current_dir(dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env_remove("FLOTILLA_DATABASE_URL")
        .env_remove("FLOTILLA_BOOTSTRAP_TOKEN")
        .env_remove("FLOTILLA_DATA_DIR")
        .env("RUST_LOG", "warn");
    cmd
}

fn token_from(line: &str) -> String {
    line.trim()
        .trim_start_matches("export FLOTILLA_TOKEN=")
        .to_owned()
}

#[tokio::test]
async fn zero_configuration_start_persists_and_shuts_down_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Proc::spawn(server_in(dir.path(), port));
    let token = token_from(&server.wait_for_line("export FLOTILLA_TOKEN=", START));
    server.wait_for_line("listening on http://127.0.0.1", START);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready: Value = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["database"], "sqlite");
    assert!(
        dir.path().join("flotilla-data/flotilla.db").exists(),
        "stores under ./flotilla-data"
    );
    let res = client
        .get(format!("{base}/api/v1/tokens"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = client
        .post(format!("{base}/api/v1/tokens"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "kept", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    assert_eq!(
        server.terminate(Duration::from_secs(30)),
        Some(0),
        "graceful exit on SIGTERM"
    );

    // A second start keeps the data and prints no new token. (A new client: the old one's
    // pooled connection died with the first server.)
    let client = reqwest::Client::new();
    let mut again = Proc::spawn(server_in(dir.path(), port));
    again.wait_for_line("listening on", START);
    let lines = again.drain();
    assert!(
        !lines.iter().any(|l| l.contains("FLOTILLA_TOKEN")),
        "{lines:?}"
    );
    let list: Value = client
        .get(format!("{base}/api/v1/tokens"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["tokens"].as_array().unwrap().len(), 2);
    assert_eq!(again.terminate(Duration::from_secs(30)), Some(0));
}

#[tokio::test]
async fn database_url_selects_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = server_in(dir.path(), port);
    cmd.env("FLOTILLA_DATABASE_URL", fresh_postgres_database())
        .env("FLOTILLA_BOOTSTRAP_TOKEN", "e2e-bootstrap-token-0123456789");
    let mut server = Proc::spawn(cmd);
    server.wait_for_line("listening on", START);
    let lines = server.drain();
    assert!(
        !lines.iter().any(|l| l.contains("FLOTILLA_TOKEN")),
        "configured token is not printed"
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let ready: Value = client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["database"], "postgres");
    let res = client
        .get(format!("{base}/api/v1/tokens"))
        .bearer_auth("e2e-bootstrap-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(!dir.path().join("flotilla-data/flotilla.db").exists());
}

#[test]
fn bad_configuration_exits_2_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "listen = \"127.0.0.1:1\"\nlisten_port = 3\n",
    )
    .unwrap();
    let out = server_in(dir.path(), free_port())
        .arg("--config")
        .arg("bad.toml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("listen_port"), "{stderr}");
}

#[test]
fn sigterm_answers_held_long_polls_instead_of_waiting_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut server = Proc::spawn(server_in(dir.path(), port));
    let token = token_from(&server.wait_for_line("export FLOTILLA_TOKEN=", START));
    server.wait_for_line("listening on", START);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::blocking::Client::new();
    let enrollment: Value = http
        .post(format!("{base}/api/v1/enrollment-tokens"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "t"}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let device: Value = crate::cli::try_enroll(
        &base,
        enrollment["token"].as_str().unwrap(),
        "d",
        serde_json::json!({}),
    )
    .json()
    .unwrap();
    let credential = device["credential"].as_str().unwrap().to_owned();
    let first = http
        .get(format!("{base}/api/v1/agent/desired-state"))
        .bearer_auth(&credential)
        .send()
        .unwrap();
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();

    // An agent's long-poll, held by the server for up to a minute ...
    let poll = std::thread::spawn(move || {
        reqwest::blocking::Client::new()
            .get(format!("{base}/api/v1/agent/desired-state?wait=60"))
            .bearer_auth(&credential)
            .header("if-none-match", etag)
            .timeout(Duration::from_secs(90))
            .send()
            .map(|r| r.status().as_u16())
    });
    // ... which has reached the server (there is no outside signal for "now holding").
    std::thread::sleep(Duration::from_millis(500));
    // ... does not keep the graceful shutdown (30 s by default) waiting: it is answered
    // "unchanged" at once and the server exits.
    assert_eq!(server.terminate(Duration::from_secs(15)), Some(0));
    assert_eq!(poll.join().unwrap().unwrap(), 304);
}
