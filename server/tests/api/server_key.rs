//! The desired-state signing key from a private file or an environment secret, instead of the
//! database.

use std::os::unix::fs::PermissionsExt;

use flotilla_protocol::signing::SigningKey;
use flotilla_server::startup::Application;
use secrecy::SecretString;
use serde_json::json;

use crate::helpers::{spawn_app_with, test_settings, Db};

fn key_file(dir: &std::path::Path, mode: u32) -> (SigningKey, std::path::PathBuf) {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let path = dir.join("server-key.pem");
    std::fs::write(&path, key.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    (key, path)
}

#[tokio::test]
async fn the_desired_state_key_comes_from_a_file_only_its_owner_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let (key, path) = key_file(dir.path(), 0o644);
    let data = tempfile::tempdir().unwrap();
    let mut settings = test_settings(None, &data);
    settings.server_key_file = Some(path.clone());
    let err = Application::build(settings).await.err().expect("refused");
    assert!(err.to_string().contains("readable by others"), "{err}");

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let app = spawn_app_with(Db::Sqlite, |s| s.server_key_file = Some(path)).await;
    let device = app.enroll(json!({})).await;
    assert_eq!(device.server_key, key.public_key());
    // The states it signs verify with that key.
    let res = app.poll(&device, None, 0).await;
    assert_eq!(res.status(), 200);
    let envelope = res.bytes().await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    flotilla_protocol::agent::verify_desired_state(
        &envelope,
        &key.public_key(),
        &device.id,
        0,
        now,
    )
    .unwrap();
}

#[tokio::test]
async fn the_desired_state_key_comes_from_an_environment_secret() {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key.to_pkcs8_pem().unwrap().to_string();
    let app = spawn_app_with(Db::Sqlite, |s| s.server_key = Some(SecretString::from(pem))).await;
    let device = app.enroll(json!({})).await;
    assert_eq!(device.server_key, key.public_key());

    // Junk in the secret stops the server with a clear message rather than signing with
    // something else.
    let data = tempfile::tempdir().unwrap();
    let mut settings = test_settings(None, &data);
    settings.server_key = Some(SecretString::from("not a key".to_owned()));
    let err = Application::build(settings).await.err().expect("refused");
    assert!(err.to_string().contains("server key"), "{err}");
}
