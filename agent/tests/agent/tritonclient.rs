//! NVIDIA's own Triton client (`tritonclient[http]` from PyPI) against the local API.
//!
//! The Python interpreter comes from `FLOTILLA_TEST_PYTHON` (set by `scripts/test` to the test
//! venv, which installs `tests/requirements.txt`), or `python3`.

use std::path::PathBuf;
use std::process::Command;

use crate::support::{models_dir, TestApi};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tritonclient_talks_to_the_local_api() {
    let app = TestApi::with_samples().await;
    let python = std::env::var("FLOTILLA_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/agent/tritonclient_check.py");
    let url = app.base.trim_start_matches("http://").to_owned();
    let expected = models_dir().join("expected.json");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&python)
            .arg(&script)
            .arg("--url")
            .arg(&url)
            .arg("--expected")
            .arg(&expected)
            .output()
            .unwrap_or_else(|e| panic!("running {python}: {e}"))
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "tritonclient_check.py failed ({}); install tests/requirements.txt into \
         FLOTILLA_TEST_PYTHON's environment\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    // Server metadata, three models' metadata, six cases, the error checks.
    assert!(
        stdout.contains("tritonclient checks passed: 11"),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
}
