//! Helpers shared by the end-to-end tests (run the real binaries as a user would), the fleet
//! simulator ([`sim`]) and what the benchmarks (`flotilla-bench`) are built from.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod control;
pub mod load;
pub mod shaped_link;
pub mod sim;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Path of a workspace binary. The first call in each test process runs
/// `cargo build --workspace --all-targets` into the running test's target directory and profile:
/// a no-op right after `cargo test --workspace --all-targets` (what `scripts/test` runs), and it
/// means a test run on its own never uses a stale binary. (`-p <package>` would resolve features
/// differently and rebuild half the dependency tree.)
pub fn fresh_binary(_package: &str, name: &str) -> PathBuf {
    static BUILT: std::sync::Once = std::sync::Once::new();
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/e2e-<hash> -> target/<profile> -> target
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let target_dir = profile_dir.parent().unwrap().to_path_buf();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--workspace", "--all-targets"])
            .arg("--target-dir")
            .arg(&target_dir);
        // Cargo sets these for the running test. Passed on, they change the fingerprint of
        // build scripts that watch them (ring watches CARGO_MANIFEST_DIR), so the nested
        // build and the next `cargo test` would each rebuild half the dependency tree.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            let set_for_tests = key.starts_with("CARGO_PKG_")
                || key.starts_with("CARGO_BIN_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_MANIFEST_LINKS",
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                ]
                .contains(&key.as_ref());
            if set_for_tests {
                cmd.env_remove(key.as_ref());
            }
        }
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().unwrap();
        assert!(status.success(), "building the workspace binaries failed");
    });
    profile_dir.join(name)
}

/// A process whose stdout lines are collected in the background. Killed on drop.
pub struct Proc {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Proc {
    /// Starts `cmd` with stdout captured (stderr inherited so failures show in test output).
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Waits (at most `timeout`) for a stdout line containing `needle` and returns it.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no line containing `{needle}` within {timeout:?}; saw {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Sends SIGTERM and waits (at most `timeout`) for the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("process did not exit within {timeout:?} of SIGTERM");
    }

    /// Drains stdout lines received so far.
    pub fn drain(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.clone()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Creates a fresh Postgres database and returns its URL; fails loudly when Postgres is down.
pub fn fresh_postgres_database() -> String {
    let admin = std::env::var("FLOTILLA_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("flotilla_test_{}", std::process::id()) + &format!("_{}", free_port());
    let status = Command::new("psql")
        .args([
            admin.as_str(),
            "-q",
            "-c",
            &format!("CREATE DATABASE {name}"),
        ])
        .status()
        .unwrap_or_else(|e| panic!("psql is required for the Postgres end-to-end test: {e}"));
    assert!(
        status.success(),
        "cannot create database on {admin}: is Postgres running?"
    );
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(&admin)
        .to_owned();
    format!("{base}/{name}")
}

/// The repository's `models/` folder.
pub fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models")
}

/// The entry of `models/expected.json` for one sample file: tensors and recorded cases
/// (inputs with onnxruntime's outputs).
pub fn expected_model(file: &str) -> serde_json::Value {
    let all: serde_json::Value =
        serde_json::from_slice(&std::fs::read(models_dir().join("expected.json")).unwrap())
            .unwrap();
    all["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["file"] == file)
        .unwrap_or_else(|| panic!("no {file} in expected.json"))
        .clone()
}

/// Whether an infer response's `outputs` hold every expected output with the same shape and
/// values within `1e-4`; the first difference otherwise.
pub fn outputs_match(
    expected: &serde_json::Value,
    actual: &serde_json::Value,
) -> Result<(), String> {
    for want in expected.as_array().unwrap() {
        let got = actual
            .as_array()
            .and_then(|o| o.iter().find(|o| o["name"] == want["name"]))
            .ok_or_else(|| format!("no output {} in {actual}", want["name"]))?;
        if got["shape"] != want["shape"] {
            return Err(format!("shape {} != {}", got["shape"], want["shape"]));
        }
        let w = want["data"].as_array().unwrap();
        let g = got["data"].as_array().ok_or("data is not an array")?;
        if w.len() != g.len() {
            return Err(format!("{} values, expected {}", g.len(), w.len()));
        }
        for (a, b) in w.iter().zip(g) {
            let (a, b) = (a.as_f64().unwrap(), b.as_f64().ok_or("not a number")?);
            if (a - b).abs() > 1e-4 {
                return Err(format!("{b} where onnxruntime gives {a}"));
            }
        }
    }
    Ok(())
}

/// Percentile (0–100) of `values` (sorted in place), in the values' unit.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * (values.len() as f64)).ceil() as usize;
    values[rank.saturating_sub(1).min(values.len() - 1)]
}
