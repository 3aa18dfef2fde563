//! Benchmark 3: streaming a large model to the server (hashed while written to the local blob
//! store, checked against the digest in the URL) beside `openssl dgst -sha256` of the same file,
//! and the server's resident memory before and at its peak. The client is curl (`-T`), as a
//! user uploading by hand would use.

use anyhow::{bail, Context as _};
use flotilla_e2e::control::{bin_dir, ServerProcess};
use rand::RngCore as _;
use std::io::Write as _;
use std::process::Command;
use std::time::Instant;

use crate::report::{mib, ratio, Report};
use crate::Sizes;

pub async fn run(sizes: &Sizes, report: &mut Report) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("model.bin");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
        let mut chunk = vec![0u8; 1 << 20];
        for _ in 0..sizes.upload_mib {
            rand::thread_rng().fill_bytes(&mut chunk);
            out.write_all(&chunk)?;
        }
        out.flush()?;
    }
    let bytes = std::fs::metadata(&file)?.len();
    // Read once so both sides start from the page cache.
    let _ = Command::new("cat").arg(&file).output();

    let started = Instant::now();
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-r"])
        .arg(&file)
        .output()
        .context("running openssl")?;
    let openssl_secs = started.elapsed().as_secs_f64();
    let hex = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    if hex.len() != 64 {
        bail!("openssl printed no digest");
    }

    let server = ServerProcess::start(&bin_dir()?, &dir.path().join("data"), None, &[]).await?;
    let (idle, _) = server.memory();
    // curl streams the file in large writes; the server's side is what is measured.
    let started = Instant::now();
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "PUT",
            "-T",
        ])
        .arg(&file)
        .args(["-H", &format!("Authorization: Bearer {}", server.admin)])
        .args(["-H", "Content-Type: application/octet-stream"])
        .arg(format!("{}/api/v1/artifacts/sha256/{hex}", server.base))
        .output()
        .context("running curl")?;
    let upload_secs = started.elapsed().as_secs_f64();
    let status = String::from_utf8_lossy(&out.stdout).into_owned();
    if status != "201" {
        bail!("upload answered {status}");
    }
    let (_, peak) = server.memory();
    let size_mib = bytes as f64 / 1048576.0;
    report.section(
        "3. Upload and verify (artifact PUT) against `openssl dgst -sha256`",
        &[
            "size",
            "openssl sha256",
            "upload + verify",
            "ratio",
            "server RSS idle → peak",
        ],
    );
    report.row(vec![
        mib(bytes),
        format!("{:.0} MiB/s", size_mib / openssl_secs),
        format!("{:.0} MiB/s", size_mib / upload_secs),
        ratio(openssl_secs / upload_secs),
        format!("{} → {}", mib(idle), mib(peak)),
    ]);
    Ok(())
}
