//! End-to-end: the real `flotilla` binary driving the real `flotilla-server`, as an operator
//! would run them, in a scratch directory with its own HOME (no user config leaks in).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flotilla_e2e::{free_port, fresh_binary, Proc};
use serde_json::Value;

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
    op.cli("trust export --out trust.json").fails(2, "usage");

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
