//! `spawn_app`: the real server on port 0 with a fresh database per test, on either backend.

use flotilla_server::config::Settings;
use flotilla_server::rollout_engine::{ManualClock, RolloutEngine};
use flotilla_server::startup::Application;
use flotilla_server::store::Store;
use secrecy::SecretString;
use serde_json::Value;
use std::sync::Arc;
use tempfile::TempDir;

/// Which metadata backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// The Postgres server tests use: `FLOTILLA_TEST_POSTGRES` or the local default.
pub fn postgres_admin_url() -> String {
    std::env::var("FLOTILLA_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Creates a fresh, uniquely named database and returns its URL. Fails loudly (never skips)
/// when Postgres is not reachable.
pub async fn fresh_postgres_database() -> String {
    use sqlx::Connection;
    let admin = postgres_admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!(
            "Postgres is required for these tests and is not reachable at {admin}: {e}\n\
             start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        )
    });
    let name = format!("flotilla_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(&admin)
        .to_owned();
    format!("{base}/{name}")
}

pub struct TestApp {
    pub address: String,
    pub admin_token: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub blobs: flotilla_server::blob::BlobStore,
    pub engine: Arc<RolloutEngine>,
    pub data_dir: TempDir,
}

pub fn test_settings(db: Option<String>, data_dir: &TempDir) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: data_dir.path().to_path_buf(),
        database_url: db.map(SecretString::from),
        workers: 2,
        db_max_connections: 4,
        ..Settings::default()
    }
}

pub async fn spawn_app(db: Db) -> TestApp {
    spawn_app_with(db, |_| {}).await
}

pub async fn spawn_app_with(db: Db, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_inner(db, tweak, None).await
}

/// The app with the rollouts' clock set by the test and the engine's own loop off: the test runs
/// engine passes with `app.engine.tick()`.
/// Settings may be changed by `tweak`.
pub async fn spawn_app_with_clock_and(
    db: Db,
    clock: Arc<ManualClock>,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    spawn_app_inner(
        db,
        |s| {
            s.rollout_tick_ms = 0;
            tweak(s);
        },
        Some(clock),
    )
    .await
}

async fn spawn_app_inner(
    db: Db,
    tweak: impl FnOnce(&mut Settings),
    clock: Option<Arc<ManualClock>>,
) -> TestApp {
    flotilla_server::telemetry::init_for_tests();
    let data_dir = tempfile::tempdir().expect("tempdir");
    let url = match db {
        Db::Sqlite => None,
        Db::Postgres => Some(fresh_postgres_database().await),
    };
    let mut settings = test_settings(url, &data_dir);
    tweak(&mut settings);
    let configured = settings.bootstrap_token.clone();
    let app = match clock {
        None => Application::build(settings).await.expect("build app"),
        Some(clock) => {
            let store = flotilla_server::store::connect(
                settings.database_url.as_ref(),
                &settings.data_dir,
                settings.db_max_connections,
            )
            .await
            .expect("store");
            let blobs = flotilla_server::blob::BlobStore::open(
                settings.blob_url.as_deref(),
                &settings.data_dir,
                &settings.s3,
            )
            .expect("blobs");
            Application::build_with_clock(settings, store, blobs, clock)
                .await
                .expect("build app")
        }
    };
    let address = format!("{}://127.0.0.1:{}", app.scheme(), app.port());
    let admin_token = match app.bootstrap_secret() {
        Some(s) => s.to_owned(),
        None => {
            use secrecy::ExposeSecret;
            configured.expect("no token").expose_secret().to_owned()
        }
    };
    let store = app.store();
    let blobs = app.blobs();
    let engine = app.rollout_engine();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        admin_token,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        store,
        blobs,
        engine,
        data_dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Creates a token with `role` through the API and returns its secret.
    pub async fn token_with_role(&self, name: &str, role: &str) -> String {
        let res = self
            .client
            .post(self.url("/api/v1/tokens"))
            .bearer_auth(&self.admin_token)
            .json(&serde_json::json!({"name": name, "role": role}))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 201, "creating a {role} token");
        let body: Value = res.json().await.expect("json");
        body["token"].as_str().expect("token").to_owned()
    }
}

/// Asserts a response is the JSON error body with `code`, and returns its message.
pub async fn assert_error(res: reqwest::Response, status: u16, code: &str) -> String {
    assert_eq!(res.status().as_u16(), status, "status");
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        ct.starts_with("application/json"),
        "content-type was `{ct}`"
    );
    let body: Value = res.json().await.expect("error body is JSON");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    let message = body["error"]["message"]
        .as_str()
        .expect("message")
        .to_owned();
    assert!(!message.is_empty());
    message
}

/// Runs an async test body once on SQLite and once on Postgres.
macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$body(crate::helpers::Db::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$body(crate::helpers::Db::Postgres).await
            }
        }
    };
}
pub(crate) use both_backends;
