//! Builds the web dashboard (`web/`) and embeds it in the server binary.
//!
//! When the dashboard's sources change, this runs `npm ci` (only when `package-lock.json` is
//! newer than the installed `node_modules`) and `npm run build` (type check, then Vite) into
//! `OUT_DIR`, then writes `web_assets.rs`: one `include_bytes!` per built file, which
//! `routes::dashboard` serves. `FLOTILLA_WEB_DIST` names an already built dashboard instead (for
//! packaging on a machine without Node.js).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Node.js major version Vite needs at least.
const MIN_NODE_MAJOR: u32 = 20;

fn main() {
    if let Err(message) = run() {
        eprintln!("\nerror: cannot build the web dashboard: {message}\n");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest = PathBuf::from(env("CARGO_MANIFEST_DIR")?);
    let web = manifest
        .parent()
        .ok_or("the server crate has no parent folder")?
        .join("web");
    let out = PathBuf::from(env("OUT_DIR")?);
    println!("cargo:rerun-if-env-changed=FLOTILLA_WEB_DIST");
    let dist = match std::env::var_os("FLOTILLA_WEB_DIST") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            println!("cargo:rerun-if-changed={}", dir.display());
            dir
        }
        None => {
            for input in [
                "src",
                "index.html",
                "package.json",
                "package-lock.json",
                "vite.config.ts",
                "tsconfig.json",
            ] {
                println!("cargo:rerun-if-changed={}", web.join(input).display());
            }
            let dist = out.join("web-dist");
            build(&web, &dist)?;
            dist
        }
    };
    if !dist.join("index.html").is_file() {
        return Err(format!("{} has no index.html", dist.display()));
    }
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files)?;
    files.sort();
    let mut code = String::from(
        "/// The built dashboard: (URL path, content type, bytes).\n\
         pub static ASSETS: &[(&str, &str, &[u8])] = &[\n",
    );
    for (url, file) in &files {
        let _ = writeln!(
            code,
            "    ({url:?}, {:?}, include_bytes!({:?})),",
            content_type(file),
            file.display().to_string()
        );
    }
    code.push_str("];\n");
    std::fs::write(out.join("web_assets.rs"), code).map_err(|e| format!("writing: {e}"))
}

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (run through cargo)"))
}

const NEEDS_NODE: &str = "it needs Node.js (20.19 or newer) and npm on PATH. Install them \
    (Debian: `apt-get install nodejs npm`) and build again, or set FLOTILLA_WEB_DIST to a \
    folder holding an already built dashboard (`npm ci && npm run build` in web/ makes \
    web/dist)";

fn build(web: &Path, dist: &Path) -> Result<(), String> {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|_| NEEDS_NODE.to_owned())?;
    let version = String::from_utf8_lossy(&node.stdout);
    let major: u32 = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    if major < MIN_NODE_MAJOR {
        return Err(format!("found Node.js {}; {NEEDS_NODE}", version.trim()));
    }
    if Command::new("npm").arg("--version").output().is_err() {
        return Err(NEEDS_NODE.to_owned());
    }
    let lock = web.join("package-lock.json");
    let installed = web.join("node_modules/.package-lock.json");
    if is_newer(&lock, &installed) {
        npm(web, &["ci", "--no-audit", "--no-fund"], None)?;
    }
    npm(web, &["run", "build"], Some(dist))
}

/// True when `a` was modified after `b`, or `b` is missing.
fn is_newer(a: &Path, b: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(a), modified(b)) {
        (Some(a), Some(b)) => a > b,
        _ => true,
    }
}

fn npm(web: &Path, args: &[&str], out_dir: Option<&Path>) -> Result<(), String> {
    let mut cmd = Command::new("npm");
    cmd.args(args).current_dir(web);
    if let Some(dir) = out_dir {
        cmd.env("FLOTILLA_WEB_OUT_DIR", dir);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run npm: {e}; {NEEDS_NODE}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`npm {}` in {} failed ({status}); its output is above",
            args.join(" "),
            web.display()
        ))
    }
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            collect(root, &path, files)?;
            continue;
        }
        let relative = path
            .strip_prefix(root)
            .map_err(|e| e.to_string())?
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        let absolute = std::fs::canonicalize(&path).map_err(|e| e.to_string())?;
        files.push((format!("/{relative}"), absolute));
    }
    Ok(())
}

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
