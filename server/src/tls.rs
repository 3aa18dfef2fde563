//! HTTPS served directly with rustls from PEM files.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// Loads a certificate chain and private key into a rustls server configuration.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let certs: Vec<CertificateDer<'static>> =
        rustls_pemfile::certs(&mut BufReader::new(File::open(cert).map_err(|e| {
            anyhow::anyhow!("cannot read TLS certificate {}: {e}", cert.display())
        })?))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("invalid TLS certificate {}: {e}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("no certificate found in {}", cert.display());
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut BufReader::new(
        File::open(key)
            .map_err(|e| anyhow::anyhow!("cannot read TLS key {}: {e}", key.display()))?,
    ))
    .map_err(|e| anyhow::anyhow!("invalid TLS key {}: {e}", key.display()))?
    .ok_or_else(|| anyhow::anyhow!("no private key found in {}", key.display()))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(config)
}
