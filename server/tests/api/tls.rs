//! HTTPS served directly from a certificate and key.

use crate::helpers::{spawn_app_with, Db};

#[tokio::test]
async fn serves_https_with_the_given_certificate() {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let (c, k) = (cert_path.clone(), key_path.clone());
    let app = spawn_app_with(Db::Sqlite, move |s| {
        s.tls_cert = Some(c);
        s.tls_key = Some(k);
    })
    .await;
    assert!(app.address.starts_with("https://"));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();
    let res = client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    // Plain HTTP on the TLS port does not get an answer it could mistake for success.
    let plain = app.address.replace("https://", "http://");
    let res = reqwest::get(format!("{plain}/healthz")).await;
    assert!(res.is_err() || !res.unwrap().status().is_success());
}

#[tokio::test]
async fn a_missing_certificate_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = crate::helpers::test_settings(None, &dir);
    settings.tls_cert = Some(dir.path().join("nope.pem"));
    settings.tls_key = Some(dir.path().join("nope.key"));
    let err = flotilla_server::startup::Application::build(settings)
        .await
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("nope.pem"), "{err}");
}
