//! End-to-end: the real `flotilla` binary driving the real `flotilla-server`, as an operator
//! would run them, in a scratch directory with its own HOME (no user config leaks in).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flotilla_e2e::{free_port, fresh_binary, Proc};
use flotilla_protocol::signing::SigningKey;
use serde_json::{json, Value};

const START: Duration = Duration::from_secs(60);
const ADMIN: &str = "e2e-cli-bootstrap-admin-0123456789";
const FRAUD_1_0_0_SHA256: &str = "acd677248c71ff3e867b154091bc80400be47d6b515d07002794b6c74b3af7e2";

/// A server on a free port with a fresh SQLite database; killed on drop.
struct Server {
    _proc: Proc,
    url: String,
    _dir: tempfile::TempDir,
}

fn start_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new(fresh_binary("flotilla-server", "flotilla-server"));
    cmd.current_dir(dir.path())
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env_remove("FLOTILLA_DATABASE_URL")
        .env_remove("FLOTILLA_DATA_DIR")
        .env("FLOTILLA_BOOTSTRAP_TOKEN", ADMIN)
        .env("RUST_LOG", "warn");
    let mut proc = Proc::spawn(cmd);
    proc.wait_for_line("listening on", START);
    Server {
        _proc: proc,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    }
}

/// A URL where nothing listens.
fn dead_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// One finished `flotilla` run.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "expected success: {self:#?}");
        self
    }

    /// Asserts the exit code and that the last line of stderr is `error: <message> (<code>)`
    /// (status notes may come before it).
    #[track_caller]
    fn fails(self, exit: i32, code: &str) -> Self {
        assert_eq!(self.code, Some(exit), "{self:#?}");
        let last = self.stderr.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("error: ") && last.ends_with(&format!(" ({code})")),
            "expected `error: ... ({code})`: {self:#?}"
        );
        self
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// An operator's scratch directory: HOME, working directory, copies of the sample models.
struct Operator {
    dir: tempfile::TempDir,
    url: String,
    token: Option<String>,
}

impl Operator {
    fn new(url: &str, token: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        for name in ["fraud-1.0.0.onnx", "fraud-1.1.0.onnx"] {
            std::fs::copy(models.join(name), dir.path().join(name)).unwrap();
        }
        Operator {
            dir,
            url: url.to_owned(),
            token: token.map(str::to_owned),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The command with a clean environment: only what the test sets reaches the CLI.
    fn command(&self) -> Command {
        let mut cmd = Command::new(fresh_binary("flotilla-cli", "flotilla"));
        cmd.current_dir(self.dir.path())
            .env("HOME", self.dir.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("FLOTILLA_TOKEN")
            .env("FLOTILLA_URL", &self.url);
        if let Some(token) = &self.token {
            cmd.env("FLOTILLA_TOKEN", token);
        }
        cmd
    }

    fn run_command(mut cmd: Command, args: &[&str]) -> Run {
        let out = cmd.args(args).output().unwrap();
        Run {
            code: out.status.code(),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        Self::run_command(self.command(), args)
    }

    /// Runs a command line split on whitespace: `op.cli("models show fraud")`.
    fn cli(&self, line: &str) -> Run {
        self.run(&line.split_whitespace().collect::<Vec<_>>())
    }

    /// [`Operator::cli`] presenting another token.
    fn cli_as(&self, token: &str, line: &str) -> Run {
        self.run_as(token, &line.split_whitespace().collect::<Vec<_>>())
    }

    fn run_as(&self, token: &str, args: &[&str]) -> Run {
        let mut cmd = self.command();
        cmd.env("FLOTILLA_TOKEN", token);
        Self::run_command(cmd, args)
    }

    /// `keygen --out NAME` then `keys add NAME.pub --name NAME`; returns the key id.
    fn register_new_key(&self, name: &str) -> String {
        let generated = self.run(&["--json", "keygen", "--out", name]).ok().json();
        let key_id = generated["key_id"].as_str().unwrap().to_owned();
        let added = self
            .run(&["keys", "add", &format!("{name}.pub"), "--name", name])
            .ok();
        assert!(added.stdout.contains(&key_id), "{added:#?}");
        key_id
    }
}

#[test]
fn publish_flow_from_keygen_to_models_show() {
    let server = start_server();
    let op = Operator::new(&server.url, Some(ADMIN));

    let keygen = op.cli("keygen --out ml-team").ok();
    let key_id = keygen
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("key id: "))
        .unwrap()
        .to_owned();
    assert_eq!(key_id.len(), 64, "{keygen:#?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(op.path("ml-team.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let added = op
        .run(&["keys", "add", "ml-team.pub", "--name", "ml-team"])
        .ok();
    assert_eq!(
        added.stdout.trim(),
        format!("registered key {key_id} (ml-team, ed25519)")
    );

    let push_1_0_0 =
        "push fraud-1.0.0.onnx --name fraud --version 1.0.0 --key ml-team.key --release 1";
    let pushed = op.cli(push_1_0_0).ok();
    assert!(pushed.stderr.contains("created model fraud"), "{pushed:#?}");
    assert!(
        pushed
            .stderr
            .contains("uploaded fraud-1.0.0.onnx (1101 bytes)"),
        "{pushed:#?}"
    );
    assert!(
        pushed.stdout.starts_with("published fraud 1.0.0\n"),
        "{pushed:#?}"
    );
    for needle in [
        &format!("sha256:{FRAUD_1_0_0_SHA256}") as &str,
        "1101 bytes",
        &format!("ml-team ({key_id})"),
        "features FP32 [-1, 8]",
        "probabilities FP32 [-1, 2]",
    ] {
        assert!(pushed.stdout.contains(needle), "{needle}: {pushed:#?}");
    }
    assert!(
        !pushed.stderr.contains("uploading"),
        "no progress bar when stderr is not a terminal: {pushed:#?}"
    );
    assert!(op.path("fraud-1.0.0.onnx.sig").exists());

    let show = op.cli("models show fraud").ok();
    let row = show
        .stdout
        .lines()
        .find(|l| l.starts_with("1.0.0 "))
        .unwrap_or_else(|| panic!("no 1.0.0 row: {show:#?}"));
    for cell in ["acd677248c71", "1.08 KiB", "ml-team"] {
        assert!(row.contains(cell), "{cell} missing in `{row}`");
    }
    assert!(show.stdout.contains("features FP32 [-1, 8]"), "{show:#?}");
    assert!(
        show.stdout.contains("probabilities FP32 [-1, 2]"),
        "{show:#?}"
    );

    // The same push again: nothing is uploaded, and the existing version is the answer.
    let again = op.cli(push_1_0_0).ok();
    assert!(again.stderr.contains("already stored"), "{again:#?}");
    assert!(!again.stderr.contains("created model"), "{again:#?}");
    assert!(
        again.stdout.starts_with("published fraud 1.0.0\n"),
        "{again:#?}"
    );

    // The same version with other bytes is refused, and the good signature stays.
    let sig_before = std::fs::read(op.path("fraud-1.0.0.onnx.sig")).unwrap();
    std::fs::copy(op.path("fraud-1.1.0.onnx"), op.path("impostor.onnx")).unwrap();
    op.cli("push impostor.onnx --name fraud --version 1.0.0 --key ml-team.key")
        .fails(1, "version_exists");
    assert!(!op.path("impostor.onnx.sig").exists());

    op.cli("push fraud-1.1.0.onnx --name fraud --version 1.1.0 --key ml-team.key --release 2")
        .ok();
    // A downgrade.
    op.cli("push fraud-1.0.0.onnx --name fraud --version 0.9.0 --key ml-team.key")
        .fails(1, "version_not_increasing");
    assert_eq!(
        std::fs::read(op.path("fraud-1.0.0.onnx.sig")).unwrap(),
        sig_before,
        "a refused push keeps the previous signature"
    );

    let models = op.cli("--json models ls").ok().json();
    assert_eq!(models["models"][0]["name"], "fraud");
    assert_eq!(models["models"][0]["latest_version"], "1.1.0");
    assert_eq!(models["models"][0]["version_count"], 2);
    let shown = op.cli("models show fraud --json").ok().json();
    assert_eq!(shown["model"]["name"], "fraud");
    let versions = shown["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1]["version"], "1.0.0");
    assert_eq!(versions[1]["artifact"]["sha256"], FRAUD_1_0_0_SHA256);
    assert_eq!(versions[1]["signers"][0]["key_id"], key_id.as_str());

    // Offline verification of the kept signature.
    let verified = op
        .cli("verify fraud-1.0.0.onnx --sig fraud-1.0.0.onnx.sig --pub ml-team.pub")
        .ok();
    assert!(
        verified
            .stdout
            .contains("model fraud, version 1.0.0, release 1, 1101 bytes"),
        "{verified:#?}"
    );
    assert!(verified.stdout.contains(&key_id), "{verified:#?}");
    op.cli("keygen --out stranger").ok();
    op.cli("verify fraud-1.0.0.onnx --sig fraud-1.0.0.onnx.sig --pub stranger.pub")
        .fails(1, "no_trusted_signature");
    op.cli("verify fraud-1.1.0.onnx --sig fraud-1.0.0.onnx.sig --pub ml-team.pub")
        .fails(1, "artifact_digest_mismatch");

    // Yanking hides the version from `latest` and shows in the table.
    op.cli("models yank fraud 1.1.0 --reason drift").ok();
    let show = op.cli("models show fraud").ok();
    let row = show
        .stdout
        .lines()
        .find(|l| l.starts_with("1.1.0 "))
        .unwrap();
    assert!(row.ends_with("(drift)"), "{row}");
    let models = op.cli("models ls --json").ok().json();
    assert_eq!(models["models"][0]["latest_version"], "1.0.0");
    op.cli("models show nope").fails(1, "not_found");
}

#[test]
fn roles_decide_and_tokens_round_trip() {
    let server = start_server();
    let op = Operator::new(&server.url, Some(ADMIN));
    op.register_new_key("ml-team");

    let viewer = op
        .cli("tokens create --name dashboard --role viewer --json")
        .ok()
        .json();
    let viewer_secret = viewer["token"].as_str().unwrap().to_owned();
    let viewer_id = viewer["id"].as_str().unwrap().to_owned();
    assert!(viewer_secret.starts_with("flt_"), "{viewer}");
    assert_eq!(viewer["role"], "viewer");
    assert_eq!(viewer["expires_at"], Value::Null);

    let publisher = op
        .cli("tokens create --name ci --role publisher --expires-in 30d")
        .ok();
    assert!(
        publisher.stdout.contains("created token ci (publisher"),
        "{publisher:#?}"
    );
    let publisher_secret = publisher.stdout.lines().last().unwrap().trim().to_owned();
    assert!(publisher_secret.starts_with("flt_"), "{publisher:#?}");

    let listed = op.cli("tokens ls").ok();
    for needle in [
        "bootstrap-admin",
        "dashboard",
        "viewer",
        "ci",
        "publisher",
        &viewer_id,
    ] {
        assert!(listed.stdout.contains(needle), "{needle}: {listed:#?}");
    }
    let listed = op.cli("tokens ls --json").ok().json();
    let ci = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci")
        .unwrap()
        .clone();
    assert!(ci["expires_at"].is_string(), "{ci}");

    let me = op.cli_as(&viewer_secret, "whoami").ok();
    assert!(me.stdout.starts_with("dashboard (viewer)"), "{me:#?}");

    // A viewer reads but may not publish, nor manage tokens.
    op.cli_as(&viewer_secret, "models ls").ok();
    let push = "push fraud-1.0.0.onnx --name fraud --version 1.0.0 --key ml-team.key";
    op.cli_as(&viewer_secret, push).fails(1, "forbidden");
    op.cli_as(&viewer_secret, "tokens ls").fails(1, "forbidden");

    // A publisher may.
    let pushed = op
        .cli_as(&publisher_secret, &format!("{push} --json"))
        .ok()
        .json();
    assert_eq!(pushed["published_by"], "ci");
    assert_eq!(pushed["artifact"]["size"], 1101);

    let revoked = op.cli(&format!("tokens revoke {viewer_id}")).ok();
    assert!(revoked.stdout.contains("dashboard"), "{revoked:#?}");
    op.cli_as(&viewer_secret, "whoami").fails(1, "unauthorized");
    let listed = op.cli("tokens ls --json").ok().json();
    let dashboard = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == viewer_id.as_str())
        .unwrap()
        .clone();
    assert!(dashboard["revoked_at"].is_string(), "{dashboard}");
    op.cli("tokens revoke not-an-id").fails(1, "invalid_path");

    // No token at all: refused, with a hint.
    let anonymous = Operator::new(&server.url, None);
    let run = anonymous.run(&["models", "ls"]).fails(1, "unauthorized");
    assert!(run.stderr.contains("no token is configured"), "{run:#?}");
}

#[test]
fn thresholds_count_distinct_signers_and_the_trust_root_exports() {
    let server = start_server();
    let op = Operator::new(&server.url, Some(ADMIN));
    let alice = op.register_new_key("alice");
    let bob = op.register_new_key("bob");
    let set = op.cli("trust threshold 2").ok();
    assert!(set.stdout.contains("set to 2 (2 active keys)"), "{set:#?}");

    for signer in ["alice", "bob"] {
        let signed = op
            .cli(&format!(
                "sign fraud-1.0.0.onnx --key {signer}.key --name fraud --version 1.0.0 \
                 --hardware x86_64,aarch64 --out {signer}.sig --json"
            ))
            .ok()
            .json();
        assert_eq!(signed["sha256"], FRAUD_1_0_0_SHA256);
        assert_eq!(signed["facts"]["compatibility"]["hardware"][1], "aarch64");
    }
    let push = |sigs: &[&str]| {
        let mut line = "push fraud-1.0.0.onnx --name fraud --version 1.0.0".to_owned();
        for sig in sigs {
            line.push_str(&format!(" --sig {sig}"));
        }
        op.cli(&line)
    };
    push(&["alice.sig"]).fails(1, "signature_threshold_not_met");
    // The same key twice still counts once.
    push(&["alice.sig", "alice.sig"]).fails(1, "signature_threshold_not_met");
    let published = push(&["alice.sig", "bob.sig"]).ok();
    assert!(published.stdout.contains(&alice), "{published:#?}");
    assert!(published.stdout.contains(&bob), "{published:#?}");

    let verify = |sigs: &[&str], threshold: &str| {
        let mut line = format!(
            "verify fraud-1.0.0.onnx --pub alice.pub --pub bob.pub --threshold {threshold}"
        );
        for sig in sigs {
            line.push_str(&format!(" --sig {sig}"));
        }
        op.cli(&line)
    };
    let both = verify(&["alice.sig", "bob.sig"], "2").ok();
    assert!(both.stdout.contains("2 of 2 required"), "{both:#?}");
    assert!(both.stdout.contains("hardware x86_64,aarch64"), "{both:#?}");
    verify(&["alice.sig"], "2").fails(1, "signature_threshold_not_met");
    // More signatures than keys cannot be asked for.
    verify(&["alice.sig"], "3").fails(2, "usage");

    op.cli("trust export --out trust.json").ok();
    let root: Value =
        serde_json::from_str(&std::fs::read_to_string(op.path("trust.json")).unwrap()).unwrap();
    assert_eq!(root["threshold"], 2);
    assert_eq!(root["keys"].as_array().unwrap().len(), 2);
    assert!(root.get("digest_only_models").is_none(), "{root}");
    op.cli("trust export --out trust.json").fails(2, "usage");
    // Whoever provisions the agents may waive signed facts for a model, and only a model.
    let waived = op
        .cli("trust export --digest-only upstream --digest-only legacy")
        .ok()
        .json();
    assert_eq!(waived["digest_only_models"], json!(["legacy", "upstream"]));
    op.cli("trust export --digest-only ../x").fails(2, "usage");

    let listed = op.cli("keys ls").ok();
    assert!(
        listed.stdout.contains(&alice) && listed.stdout.contains(&bob),
        "{listed:#?}"
    );
    // Revoking alice would leave fewer active keys than the threshold: lower it first.
    op.cli("trust threshold 1").ok();
    let revoked = op.run(&["keys", "revoke", &alice]).ok();
    assert!(revoked.stdout.contains("alice"), "{revoked:#?}");
    let keys = op.cli("keys ls --json").ok().json();
    let alice_entry = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["key_id"] == alice.as_str())
        .unwrap()
        .clone();
    assert!(alice_entry["revoked_at"].is_string(), "{alice_entry}");
    let root = op.cli("trust export").ok().json();
    assert_eq!(root["keys"].as_array().unwrap().len(), 1);
    assert_eq!(root["keys"][0]["key_id"], bob.as_str());
}

#[test]
fn configuration_precedence_is_flag_then_env_then_file() {
    let server = start_server();
    let op = Operator::new(&server.url, None);
    let config_dir = op.path(".config/flotilla");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("cli.toml"),
        format!("url = \"{}\"\ntoken = \"{ADMIN}\"\n", server.url),
    )
    .unwrap();

    let mut from_file = op.command();
    from_file.env_remove("FLOTILLA_URL");
    let me = Operator::run_command(from_file, &["whoami"]).ok();
    assert!(me.stdout.starts_with("bootstrap-admin (admin)"), "{me:#?}");

    // The environment beats the file...
    let mut env_wins = op.command();
    env_wins.env("FLOTILLA_URL", dead_url());
    Operator::run_command(env_wins, &["whoami"]).fails(3, "unreachable");
    // ...and a flag beats the environment.
    let mut flag_wins = op.command();
    flag_wins.env("FLOTILLA_URL", dead_url());
    Operator::run_command(flag_wins, &["whoami", "--url", &server.url]).ok();
    let mut token_flag = op.command();
    token_flag.env("FLOTILLA_TOKEN", "flt_not_a_real_token");
    Operator::run_command(token_flag, &["whoami"]).fails(1, "unauthorized");
    op.run(&["--token", ADMIN, "whoami"]).ok();

    // --config replaces the default file.
    std::fs::write(op.path("other.toml"), "token = \"flt_wrong\"\n").unwrap();
    op.cli("--config other.toml whoami")
        .fails(1, "unauthorized");
    op.cli("--config missing.toml whoami").fails(2, "config");
    std::fs::write(op.path("typo.toml"), "tokn = \"x\"\n").unwrap();
    let typo = op
        .run(&["--config", "typo.toml", "whoami"])
        .fails(2, "config");
    assert!(typo.stderr.contains("tokn"), "{typo:#?}");
    op.cli("--url localhost:8080 whoami").fails(2, "config");
}

#[test]
fn an_unreachable_server_exits_3() {
    let op = Operator::new(&dead_url(), Some(ADMIN));
    op.cli("models ls").fails(3, "unreachable");
    op.cli("keygen --out k").ok();
    op.cli("push fraud-1.0.0.onnx --name fraud --version 1.0.0 --key k.key")
        .fails(3, "unreachable");
    assert!(
        !op.path("fraud-1.0.0.onnx.sig").exists(),
        "nothing was published, so no signature is kept"
    );
}

#[test]
fn local_mistakes_exit_2_before_anything_is_sent() {
    let op = Operator::new(&dead_url(), Some(ADMIN));
    op.cli("keygen --out k").ok();
    op.cli("keygen --out k").fails(2, "usage");
    let forced = op.cli("keygen --out k --force --json").ok().json();
    assert_eq!(forced["algorithm"], "ed25519");

    let sign = |model: &str, key: &str, name: &str| {
        op.cli(&format!(
            "sign {model} --key {key} --name {name} --version 1.0.0"
        ))
    };
    sign("missing.onnx", "k.key", "fraud").fails(2, "io");
    sign("fraud-1.0.0.onnx", "k.pub", "fraud").fails(2, "invalid_key");
    sign("fraud-1.0.0.onnx", "k.key", "Fraud").fails(2, "usage");
    let signed = sign("fraud-1.0.0.onnx", "k.key", "fraud").ok();
    assert!(
        signed.stdout.contains("wrote fraud-1.0.0.onnx.sig"),
        "{signed:#?}"
    );

    // clap's own usage errors: exit 2 too.
    let run = op.cli("push fraud-1.0.0.onnx --name fraud --version 1.0.0");
    assert_eq!(run.code, Some(2), "{run:#?}");
    // Signed facts need a key to sign them; this fails before the (dead) server is called.
    op.cli(
        "push fraud-1.0.0.onnx --name fraud --version 1.0.0 --sig fraud-1.0.0.onnx.sig --release 3",
    )
    .fails(2, "usage");
}

/// A device enrolled over HTTP, as the agent enrolls.
struct Device {
    id: String,
    credential: String,
    status: String,
}

/// The key as `POST /api/v1/enroll` takes it (the wire's one encoding).
fn enroll_public_key(key: &SigningKey) -> String {
    flotilla_protocol::devices::DevicePublicKey::of(key).to_base64()
}

pub(crate) fn try_enroll(
    url: &str,
    token: &str,
    name: &str,
    labels: Value,
) -> reqwest::blocking::Response {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    reqwest::blocking::Client::new()
        .post(format!("{url}/api/v1/enroll"))
        .json(&json!({
            "enrollment_token": token,
            "device_public_key": enroll_public_key(&key),
            "name": name,
            "labels": labels,
            "hardware": {"arch": "aarch64", "os": "linux", "cpu_cores": 4, "memory_mib": 4096},
            "agent_version": "e2e",
        }))
        .send()
        .unwrap()
}

fn enroll(url: &str, token: &str, name: &str, labels: Value) -> Device {
    let res = try_enroll(url, token, name, labels);
    assert_eq!(res.status(), 201);
    let v: Value = res.json().unwrap();
    Device {
        id: v["device_id"].as_str().unwrap().to_owned(),
        credential: v["credential"].as_str().unwrap().to_owned(),
        status: v["status"].as_str().unwrap().to_owned(),
    }
}

impl Device {
    /// Fetches the desired state as the agent does; returns the status and the sequence (ETag).
    fn poll(&self, url: &str) -> (u16, Option<u64>) {
        let res = reqwest::blocking::Client::new()
            .get(format!("{url}/api/v1/agent/desired-state?wait=0"))
            .bearer_auth(&self.credential)
            .send()
            .unwrap();
        let sequence = res
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim_matches('"').parse().ok());
        (res.status().as_u16(), sequence)
    }

    /// Reports `applied_sequence` applied, fraud `version` serving and a minute of health.
    fn report(&self, url: &str, applied_sequence: u64, version: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let res = reqwest::blocking::Client::new()
            .post(format!("{url}/api/v1/agent/report"))
            .bearer_auth(&self.credential)
            .json(&json!({
                "report_seq": 1,
                "created_at": now,
                "applied_sequence": applied_sequence,
                "slots": [{"model": "fraud", "version": version, "state": "active"}],
                "health": {
                    "start": now - 60,
                    "end": now,
                    "models": [{"model": "fraud", "version": version, "inference_count": 1200,
                                "error_count": 3,
                                "latency_ms": {"p50": 1.5, "p95": 4.0, "p99": 9.0}}],
                    "memory_rss_bytes": 44_040_192u64,
                },
            }))
            .send()
            .unwrap();
        assert_eq!(res.status(), 200);
    }
}

#[test]
fn fleet_flow_from_enrollment_token_to_deleted_device() {
    let server = start_server();
    let url = server.url.as_str();
    let op = Operator::new(url, Some(ADMIN));
    op.register_new_key("ml-team");
    op.cli("push fraud-1.0.0.onnx --name fraud --version 1.0.0 --key ml-team.key")
        .ok();

    // An enrollment token: the secret once, on a line of its own, and how the agent takes it.
    let created = op
        .run(&[
            "enroll-tokens",
            "create",
            "--name",
            "plant-7 gateways",
            "--label",
            "site=plant-7",
            "--allow-label",
            "class",
            "--allow-label",
            "rack",
            "--max-uses",
            "2",
            "--expires-in",
            "3600s",
            "--require-approval",
        ])
        .ok();
    let secret = created
        .stdout
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("fle_"))
        .unwrap_or_else(|| panic!("no secret line: {created:#?}"))
        .to_owned();
    assert!(
        created.stdout.contains(&format!(
            "flotilla-agent --server URL --trust-root trust-root.json --enroll-token {secret}"
        )),
        "{created:#?}"
    );
    assert!(
        created
            .stdout
            .contains("2 devices, which wait for approval"),
        "{created:#?}"
    );
    assert!(
        created.stdout.contains("devices may set: class, rack"),
        "{created:#?}"
    );
    let tokens = op.cli("enroll-tokens ls --json").ok().json();
    let token = tokens["tokens"][0].clone();
    assert_eq!(token["name"], "plant-7 gateways", "{tokens}");
    assert_eq!(token["labels"], json!({"site": "plant-7"}));
    assert_eq!(token["max_uses"], 2);
    assert_eq!(token["require_approval"], true);
    assert_eq!(token["allowed_device_labels"], json!(["class", "rack"]));
    assert!(token.get("token").is_none(), "secrets are never listed");
    let token_id = token["id"].as_str().unwrap().to_owned();

    // A device asking for a key the token does not allow is refused, and uses nothing.
    let refused = try_enroll(url, &secret, "gw-16", json!({"tier": "canary"}));
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().unwrap();
    assert_eq!(body["error"]["code"], "label_not_allowed", "{body}");

    // A device enrolls over HTTP; the token's labels win over the ones it asks for, and the
    // keys it allows are kept.
    let device = enroll(
        url,
        &secret,
        "gw-17",
        json!({"site": "spoofed", "class": "edge"}),
    );
    assert_eq!(device.status, "pending");
    let id = device.id.as_str();
    let listed = op.cli("enroll-tokens ls").ok();
    let row = listed.stdout.lines().nth(1).unwrap_or_default();
    for cell in [
        &token_id as &str,
        "site=plant-7",
        "class,rack",
        "1/2",
        "yes",
    ] {
        assert!(row.contains(cell), "{cell} missing in `{row}`");
    }

    let pending = op.cli("devices ls --status pending --json").ok().json();
    assert_eq!(pending["devices"].as_array().unwrap().len(), 1, "{pending}");
    assert_eq!(pending["devices"][0]["id"], id);
    assert_eq!(
        pending["devices"][0]["labels"],
        json!({"class": "edge", "site": "plant-7"})
    );
    let none = op.cli("devices ls --status active").ok();
    assert_eq!(none.stdout, "no devices\n", "{none:#?}");
    let ls = op.cli("devices ls").ok();
    let header = ls.stdout.lines().next().unwrap_or_default();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["ID", "NAME", "STATUS", "LABELS", "LAST", "SEEN", "RUNNING"],
        "{ls:#?}"
    );
    let row = ls.stdout.lines().nth(1).unwrap_or_default();
    for cell in [id, "gw-17", "pending", "class=edge,site=plant-7"] {
        assert!(row.contains(cell), "{cell} missing in `{row}`");
    }
    assert!(row.ends_with(" -"), "nothing running yet: `{row}`");
    assert_eq!(device.poll(url).0, 403, "a pending device gets no state");

    let approved = op.cli(&format!("devices approve {id}")).ok();
    assert_eq!(
        approved.stdout,
        format!("approved device gw-17 ({id}): active\n")
    );

    // Deploying prints what the deployment selects; again, it is an update.
    let deployed = op.cli("deploy fraud@1.0.0 --selector site=plant-7").ok();
    let first = deployed.stdout.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("created deployment ")
            && first.ends_with(": fraud 1.0.0 on site=plant-7"),
        "{deployed:#?}"
    );
    assert!(
        deployed.stdout.contains("selects 1 device:\n"),
        "{deployed:#?}"
    );
    let selected = deployed.stdout.lines().last().unwrap_or_default();
    assert_eq!(
        selected.split_whitespace().collect::<Vec<_>>(),
        [id, "gw-17", "active"],
        "{deployed:#?}"
    );
    let again = op.cli("deploy fraud@1.0.0 --selector site=plant-7").ok();
    assert!(
        again.stdout.starts_with("updated deployment "),
        "{again:#?}"
    );
    let nobody = op.cli("deploy fraud@1.0.0 --selector site=plant-9").ok();
    assert!(
        nobody.stdout.contains("selects no device yet"),
        "{nobody:#?}"
    );
    let deployments = op.cli("deployments ls --json").ok().json();
    let deployments = deployments["deployments"].as_array().unwrap().clone();
    assert_eq!(deployments.len(), 2, "{deployments:?}");
    let plant7 = deployments
        .iter()
        .find(|d| d["selector"] == "site=plant-7")
        .unwrap();
    assert_eq!(plant7["devices"], 1);
    assert_eq!(plant7["version"], "1.0.0");
    let plant7_id = plant7["id"].as_str().unwrap().to_owned();
    let table = op.cli("deployments ls").ok();
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with(&plant7_id))
        .unwrap_or_else(|| panic!("no row for {plant7_id}: {table:#?}"));
    assert_eq!(
        row.split_whitespace().take(5).collect::<Vec<_>>(),
        [plant7_id.as_str(), "fraud", "1.0.0", "site=plant-7", "1"]
    );

    // The device takes its state and reports; `show` puts it all together.
    let (status, sequence) = device.poll(url);
    assert_eq!(status, 200);
    let sequence = sequence.unwrap();
    device.report(url, sequence, "1.0.0");
    let show = op.cli(&format!("devices show {id}")).ok();
    for needle in [
        "gw-17\n".to_owned(),
        format!("  id:          {id}\n"),
        "  status:      active\n".to_owned(),
        "  labels:      class=edge,site=plant-7\n".to_owned(),
        "  hardware:    aarch64, linux, 4 cores, 4.00 GiB\n".to_owned(),
        "  agent:       e2e\n".to_owned(),
        format!("  sequence:    desired {sequence}, applied {sequence}\n"),
        "  should run:  fraud 1.0.0\n".to_owned(),
        "MODEL  VERSION  STATE   SERVING  REASON\nfraud  1.0.0    active  1.0.0    -\n".to_owned(),
        "(60s), memory 42.00 MiB\n".to_owned(),
        "fraud  1.0.0    1200        3       1.5     4.0     9.0\n".to_owned(),
    ] {
        assert!(show.stdout.contains(&needle), "{needle}: {show:#?}");
    }
    let shown = op.cli(&format!("devices show {id} --json")).ok().json();
    assert_eq!(shown["desired"], json!({"fraud": "1.0.0"}));
    assert_eq!(shown["applied_sequence"], sequence);
    assert_eq!(shown["health"]["models"][0]["inference_count"], 1200);
    let ls = op.cli("devices ls --selector site=plant-7,class=edge").ok();
    assert!(
        ls.stdout
            .lines()
            .nth(1)
            .unwrap_or_default()
            .ends_with(" fraud@1.0.0"),
        "{ls:#?}"
    );
    let elsewhere = op
        .cli("devices ls --selector site=plant-9 --json")
        .ok()
        .json();
    assert_eq!(elsewhere["devices"], json!([]));

    // Labels: changes keep the other labels; the desired state follows them.
    let labelled = op
        .cli(&format!("devices label {id} tier=canary class-"))
        .ok();
    assert_eq!(
        labelled.stdout,
        format!("labels of gw-17 ({id}): site=plant-7,tier=canary\nshould run: fraud 1.0.0\n")
    );
    let moved = op
        .cli(&format!("devices label {id} site=plant-9 --json"))
        .ok()
        .json();
    assert_eq!(
        moved["labels"],
        json!({"site": "plant-9", "tier": "canary"})
    );
    assert_eq!(
        moved["desired"],
        json!({"fraud": "1.0.0"}),
        "the plant-9 deployment"
    );
    let replaced = op
        .cli(&format!("devices label {id} --replace site=plant-8"))
        .ok();
    assert_eq!(
        replaced.stdout,
        format!("labels of gw-17 ({id}): site=plant-8\nshould run: nothing (no deployment selects it)\n")
    );
    op.cli(&format!("devices label {id} --replace site-"))
        .fails(2, "usage");
    op.cli(&format!("devices label {id} a=1 a-"))
        .fails(2, "usage");
    let run = op.cli(&format!("devices label {id} tier"));
    assert_eq!(run.code, Some(2), "{run:#?}");
    let run = op.run(&["devices", "label", id, &format!("k={}", "v".repeat(300))]);
    assert_eq!(run.code, Some(2), "{run:#?}");
    op.cli(&format!("devices label {id} --replace site=plant-7"))
        .ok();

    // Removing the deployment: the device is told to run nothing.
    let removed = op.cli(&format!("deployments rm {plant7_id}")).ok();
    assert_eq!(removed.stdout, format!("removed deployment {plant7_id}\n"));
    let shown = op.cli(&format!("devices show {id} --json")).ok().json();
    assert_eq!(shown["desired"], json!({}));
    op.cli(&format!("deployments rm {plant7_id}"))
        .fails(1, "not_found");
    let left = op.cli("deployments ls --json").ok().json();
    assert_eq!(left["deployments"].as_array().unwrap().len(), 1);
    assert_eq!(left["deployments"][0]["selector"], "site=plant-9");

    // Asking for a credential rotation: the device sees it on its next poll.
    let asked = op.cli(&format!("devices rotate-credential {id}")).ok();
    assert!(
        asked.stdout.contains("to rotate its credential"),
        "{asked:#?}"
    );
    let flagged = op.cli(&format!("devices show {id} --json")).ok().json();
    assert_eq!(flagged["credential_rotation_requested"], true, "{flagged}");
    let res = reqwest::blocking::Client::new()
        .get(format!("{url}/api/v1/agent/desired-state?wait=0"))
        .bearer_auth(&device.credential)
        .send()
        .unwrap();
    assert_eq!(res.headers()["flotilla-rotate-credential"], "1");
    op.cli("devices rotate-credential not-an-id")
        .fails(1, "invalid_path");

    // Revoking: the credential stops working, and a revoked device cannot be approved.
    let revoked = op.cli(&format!("devices revoke {id}")).ok();
    assert!(revoked.stdout.contains("no longer works"), "{revoked:#?}");
    assert_eq!(device.poll(url).0, 401);
    let refused = op
        .cli(&format!("devices approve {id}"))
        .fails(1, "conflict");
    assert!(refused.stderr.contains("enroll it again"), "{refused:#?}");
    let listed = op.cli("devices ls --status revoked --json").ok().json();
    assert_eq!(listed["devices"][0]["id"], id);

    let deleted = op.cli(&format!("devices rm {id} --json")).ok().json();
    assert_eq!(deleted, json!({"id": id, "deleted": true}));
    op.cli(&format!("devices show {id}")).fails(1, "not_found");
    op.cli(&format!("devices rm {id}")).fails(1, "not_found");
    op.cli("devices show not-an-id").fails(1, "invalid_path");
    assert_eq!(op.cli("devices ls").ok().stdout, "no devices\n");

    // A revoked enrollment token enrolls nobody, though it had a use left.
    let revoked = op.cli(&format!("enroll-tokens revoke {token_id}")).ok();
    assert_eq!(
        revoked.stdout,
        format!("revoked enrollment token {token_id} (plant-7 gateways)\n")
    );
    assert_eq!(try_enroll(url, &secret, "gw-18", json!({})).status(), 401);
    let tokens = op.cli("enroll-tokens ls --json").ok().json();
    assert!(tokens["tokens"][0]["revoked_at"].is_string(), "{tokens}");
}

#[test]
fn fleet_commands_refuse_bad_input_locally_or_with_the_servers_code() {
    let server = start_server();
    let op = Operator::new(&server.url, Some(ADMIN));
    op.register_new_key("ml-team");
    op.cli("push fraud-1.0.0.onnx --name fraud --version 1.0.0 --key ml-team.key")
        .ok();

    // Local: no @version, a bad selector or label: clap's usage errors, exit 2.
    for line in [
        "deploy fraud",
        "deploy fraud@latest",
        "deploy Fraud@1.0.0",
        "deploy fraud@1.0.0 --selector site",
        "enroll-tokens create --label site",
        "enroll-tokens create --expires-in 500ms",
        "enroll-tokens create --max-uses 0",
        "devices ls --status gone",
    ] {
        let run = op.cli(line);
        assert_eq!(run.code, Some(2), "{line}: {run:#?}");
        assert!(run.stdout.is_empty(), "{line}: {run:#?}");
    }
    let run = op.cli("deploy fraud");
    assert!(run.stderr.contains("MODEL@VERSION"), "{run:#?}");
    op.cli("enroll-tokens create --label a=1 --label a=2")
        .fails(2, "usage");
    assert_eq!(
        op.cli("deployments ls").ok().stdout,
        "no deployments\n",
        "nothing was sent"
    );
    assert_eq!(
        op.cli("enroll-tokens ls").ok().stdout,
        "no enrollment tokens\n"
    );

    // The server: its code and message, exit 1.
    let run = op.cli("deploy nosuch@1.0.0").fails(1, "not_found");
    assert!(run.stderr.contains("model `nosuch` not found"), "{run:#?}");
    op.cli("deploy fraud@9.9.9").fails(1, "not_found");
    op.cli("models yank fraud 1.0.0").ok();
    let run = op.cli("deploy fraud@1.0.0").fails(1, "conflict");
    assert!(run.stderr.contains("yanked"), "{run:#?}");
    op.cli("enroll-tokens create --expires-in 400d")
        .fails(1, "invalid_argument");
    op.cli("deployments rm not-an-id").fails(1, "invalid_path");
    op.cli("enroll-tokens revoke 00000000-0000-0000-0000-000000000000")
        .fails(1, "not_found");

    // A viewer may look but not change the fleet.
    let viewer = op
        .cli("tokens create --name dashboard --role viewer --json")
        .ok()
        .json();
    let viewer = viewer["token"].as_str().unwrap();
    op.cli_as(viewer, "devices ls").ok();
    op.cli_as(viewer, "deployments ls").ok();
    op.cli_as(viewer, "enroll-tokens create")
        .fails(1, "forbidden");
    op.cli_as(viewer, "deploy fraud@1.0.0")
        .fails(1, "forbidden");

    // Unreachable: exit 3.
    let dead = Operator::new(&dead_url(), Some(ADMIN));
    dead.cli("devices ls").fails(3, "unreachable");
}

#[test]
fn rollouts_from_the_command_line() {
    let server = start_server();
    let url = server.url.as_str();
    let op = Operator::new(url, Some(ADMIN));
    op.register_new_key("ml-team");
    op.cli("push fraud-1.0.0.onnx --name fraud --version 1.0.0 --key ml-team.key")
        .ok();
    op.cli("push fraud-1.1.0.onnx --name fraud --version 1.1.0 --key ml-team.key")
        .ok();
    op.cli("deploy fraud@1.0.0 --selector site=a").ok();
    let token = op
        .cli("--json enroll-tokens create --name fleet --label site=a --max-uses 4")
        .ok()
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let devices: Vec<Device> = (0..4)
        .map(|i| enroll(url, &token, &format!("d{i}"), json!({})))
        .collect();

    // Flags describe the policy; a bad one is refused with the server's message.
    op.cli("rollout create fraud@1.1.0 --selector site=a --stages 50%,10%")
        .fails(1, "invalid_argument");
    op.cli("rollout create fraud@1.1.0 --stages ten%")
        .fails(2, "usage");
    let created = op
        .cli("rollout create fraud@1.1.0 --selector site=a --stages 2,4 --bake 0s --approve-each --save-as two-step")
        .ok();
    let id = created
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("created rollout "))
        .unwrap_or_else(|| panic!("{created:#?}"))
        .trim()
        .to_owned();
    assert!(
        created.stderr.contains("saved the policy as `two-step`"),
        "{created:#?}"
    );
    assert!(
        created
            .stdout
            .contains("4 matching, 2 in this stage: 0 active, 2 pending, 0 failed"),
        "{created:#?}"
    );
    // Another open rollout over the same devices is refused, naming this one.
    let clash = op
        .cli("rollout create fraud@1.1.0 --policy two-step")
        .fails(1, "rollout_overlap");
    assert!(clash.stderr.contains(&id), "{clash:#?}");

    // The devices the stage holds report the candidate active.
    for d in &devices {
        let (status, seq) = d.poll(url);
        assert_eq!(status, 200);
        let state = reqwest::blocking::Client::new()
            .get(format!("{url}/api/v1/agent/desired-state"))
            .bearer_auth(&d.credential)
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap();
        use base64::Engine as _;
        let payload = base64::engine::general_purpose::STANDARD
            .decode(state["payload"].as_str().unwrap())
            .unwrap();
        let desired: Value = serde_json::from_slice(&payload).unwrap();
        let version = desired["slots"][0]["version"].as_str().unwrap().to_owned();
        d.report(url, seq.unwrap(), &version);
    }
    // The engine runs every 5 s by default: wait for the stage to pass and wait for approval.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let shown = op.cli(&format!("rollout show {id} --json")).ok().json();
        if shown["state"] == "waiting_approval" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{shown:#}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let shown = op.cli(&format!("rollout show {id}")).ok();
    assert!(
        shown
            .stdout
            .contains("state   WAITING FOR APPROVAL  stage 1/2"),
        "{shown:#?}"
    );
    assert!(
        shown.stdout.contains("2 active, 0 pending, 0 failed"),
        "{shown:#?}"
    );
    let gate = shown
        .stdout
        .lines()
        .find(|l| l.starts_with("max_failed_ratio"))
        .unwrap_or_else(|| panic!("{shown:#?}"));
    assert_eq!(
        gate.split_whitespace().collect::<Vec<_>>(),
        ["max_failed_ratio", "0.0%", "≤", "0.0%", "PASS"]
    );

    op.cli(&format!("rollout resume {id}"))
        .fails(1, "invalid_rollout_state");
    let paused = op
        .run(&[
            "rollout",
            "pause",
            &id,
            "--reason",
            "checking the dashboards",
        ])
        .ok();
    assert!(
        paused.stdout.contains("checking the dashboards"),
        "{paused:#?}"
    );
    op.cli(&format!("rollout resume {id}")).ok();
    let aborted = op.cli(&format!("rollout abort {id}")).ok();
    assert!(aborted.stdout.contains("state   ABORTED"), "{aborted:#?}");
    let listed = op.cli("rollout ls").ok();
    assert!(listed.stdout.contains("aborted"), "{listed:#?}");
    let history = op.cli(&format!("rollout show {id} --json")).ok().json()["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    assert_eq!(
        history,
        [
            "created",
            "waiting_approval",
            "paused",
            "resumed",
            "aborted"
        ]
    );
    let policies = op.cli("rollout policies ls").ok();
    assert!(policies.stdout.contains("two-step"), "{policies:#?}");
}

#[test]
fn trust_roots_rotate_from_the_command_line() {
    let server = start_server();
    let op = Operator::new(&server.url, Some(ADMIN));
    let alice = op.register_new_key("alice");
    // The agents are provisioned with alice's root.
    op.cli("trust export --out provisioned.json").ok();
    let carol = op.register_new_key("carol");
    op.run(&["keys", "revoke", &alice]).ok();

    // Carol alone cannot move agents off alice's root: checked here, nothing published.
    op.cli("trust rotate --key carol.key --current provisioned.json")
        .fails(1, "trust_root_not_signed_by_current");
    let roots = op.cli("trust roots --json").ok().json();
    assert_eq!(roots["roots"], json!([]));

    // Signed in turn by whoever holds each key, then published.
    let wrote = op
        .cli("trust rotate --key carol.key --current provisioned.json --out root-2.json")
        .ok();
    assert!(
        wrote
            .stderr
            .contains("trust root 1 -> 2: keys added carol, removed alice"),
        "{wrote:#?}"
    );
    op.cli("trust sign-root root-2.json --key alice.key").ok();
    let published = op
        .cli("trust publish-root root-2.json --current provisioned.json")
        .ok();
    assert!(
        published.stdout.contains("published trust root 2"),
        "{published:#?}"
    );
    let listed = op.cli("trust roots").ok();
    assert!(listed.stdout.contains("carol"), "{listed:#?}");
    let root = op.cli("trust export").ok().json();
    assert_eq!(root["serial"], 2);
    assert_eq!(root["keys"][0]["key_id"], carol.as_str());

    // The next rotation needs carol (root 2's key): alice's signature no longer counts, and the
    // server checks that itself now.
    op.register_new_key("dave");
    op.cli("trust rotate --key alice.key")
        .fails(1, "trust_root_not_signed_by_current");
    let rotated = op.cli("trust rotate --key carol.key --key dave.key").ok();
    assert!(
        rotated.stdout.contains("published trust root 3"),
        "{rotated:#?}"
    );
    // Junk is refused with a message, locally.
    std::fs::write(op.path("junk.json"), "{\"payloadType\": 1}").unwrap();
    op.cli("trust publish-root junk.json")
        .fails(1, "trust_root_malformed");
}

/// What the server answers to a refused call: its status, code and message.
fn refusal(res: reqwest::blocking::Response) -> (u16, String, String) {
    let status = res.status().as_u16();
    let body: Value = res.json().unwrap();
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// One wire rule (model name, version, selector, label), written once in `flotilla_protocol`:
/// for each input, the server's answer and the CLI's local check agree. A refusal is the same
/// message from both: the server's 400 `invalid_argument`, and the CLI's exit 2 before anything
/// is sent (a dead server shows nothing was).
#[test]
fn the_cli_refuses_locally_exactly_what_the_server_refuses() {
    let server = start_server();
    let http = reqwest::blocking::Client::new();
    let post = |path: &str, body: Value| {
        http.post(format!("{}{path}", server.url))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .unwrap()
    };
    assert_eq!(
        post("/api/v1/models", json!({"name": "fraud"})).status(),
        201
    );
    let op = Operator::new(&server.url, Some(ADMIN));
    // The local checks run before any call: against a dead server a refusal is still exit 2,
    // and an accepted input gets as far as `unreachable` (exit 3).
    let offline = Operator::new(&dead_url(), Some(ADMIN));
    let long = |n: usize| "a".repeat(n);

    /// How an input reaches the server, and how the CLI is given it.
    enum Case {
        Name(String),
        Version(String),
        Selector(String),
        Label(String, String),
    }
    let cases = [
        Case::Name("a..b".into()),
        Case::Name("../x".into()),
        Case::Name(".x".into()),
        Case::Name("".into()),
        Case::Name("Fraud".into()),
        Case::Name("frä".into()),
        Case::Name(long(65)),
        Case::Name("a.b".into()),
        Case::Name(long(64)),
        Case::Version("1.2".into()),
        Case::Version("v1.0.0".into()),
        Case::Version("01.0.0".into()),
        Case::Version("1.0.0-é".into()),
        Case::Version(format!("1.0.0-{}", long(130))),
        Case::Version("".into()),
        Case::Version("2.0.0-rc.1".into()),
        Case::Selector("site".into()),
        Case::Selector("site=a,site=b".into()),
        Case::Selector("=x".into()),
        Case::Selector(format!("k={}", long(257))),
        Case::Selector(format!("{}=v", long(65))),
        Case::Selector("site=a, class=edge".into()),
        Case::Selector("région=île".into()),
        Case::Label("a,b".into(), "c".into()),
        Case::Label("k".into(), long(257)),
        Case::Label("k".into(), "a\u{1}b".into()),
        Case::Label(long(65), "v".into()),
        Case::Label("région".into(), "île".into()),
    ];
    for case in &cases {
        // The server's answer to the input.
        let (res, args): (_, Vec<String>) = match case {
            Case::Name(name) => (
                post("/api/v1/models", json!({ "name": name })),
                vec!["models".into(), "show".into(), name.clone()],
            ),
            Case::Version(v) => (
                post(
                    "/api/v1/models/fraud/versions",
                    json!({"version": v, "artifact": {"sha256": FRAUD_1_0_0_SHA256, "size": 1}, "bundles": []}),
                ),
                vec!["models".into(), "yank".into(), "fraud".into(), v.clone()],
            ),
            Case::Selector(s) => (
                http.get(format!("{}/api/v1/devices", server.url))
                    .query(&[("selector", s)])
                    .bearer_auth(ADMIN)
                    .send()
                    .unwrap(),
                vec![
                    "devices".into(),
                    "ls".into(),
                    "--selector".into(),
                    s.clone(),
                ],
            ),
            Case::Label(k, v) => (
                post(
                    "/api/v1/enrollment-tokens",
                    json!({"name": "t", "labels": { k.as_str(): v }}),
                ),
                vec![
                    "enroll-tokens".into(),
                    "create".into(),
                    "--label".into(),
                    format!("{k}={v}"),
                ],
            ),
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, code, message) = refusal(res);
        let local = offline.run(&args);
        if status == 400 && code == "invalid_argument" {
            assert_eq!(local.code, Some(2), "{args:?}: {local:#?}");
            assert!(
                local.stderr.contains(&message),
                "{args:?}: the server says `{message}`, the CLI {local:#?}"
            );
        } else {
            // Past the wire rule on the server (created, found, or refused for another
            // reason), and past the CLI's check too: it tried to call.
            assert_ne!(code, "invalid_argument", "{args:?}: {message}");
            assert!(
                (200..500).contains(&status),
                "{args:?}: {status} {code} {message}"
            );
            local.fails(3, "unreachable");
        }
    }
    // And with the server up, a name it refuses never reaches it: the same line, exit 2.
    let run = op.run(&["models", "show", "a..b"]).fails(2, "usage");
    assert!(
        run.stderr.contains("`a..b` is not a valid model name"),
        "{run:#?}"
    );
}
