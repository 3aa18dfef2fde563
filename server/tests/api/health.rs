//! Liveness, readiness and metrics.

use serde_json::Value;

use crate::helpers::{both_backends, spawn_app, Db};

both_backends!(health_and_readiness, health_and_readiness_on);
async fn health_and_readiness_on(db: Db) {
    let app = spawn_app(db).await;
    let res = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    let expected = match db {
        Db::Sqlite => "sqlite",
        Db::Postgres => "postgres",
    };
    assert_eq!(body["database"], expected);
}

#[tokio::test]
async fn embedded_default_stores_under_the_data_dir() {
    let app = spawn_app(Db::Sqlite).await;
    assert!(app.data_dir.path().join("flotilla.db").exists());
    assert!(app.data_dir.path().join("blobs").is_dir());
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let app = spawn_app(Db::Sqlite).await;
    for _ in 0..3 {
        let id = uuid::Uuid::new_v4();
        app.client
            .delete(app.url(&format!("/api/v1/tokens/{id}")))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .unwrap();
    }
    app.client
        .get(app.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("flotilla_http_requests_total")
                && l.contains("endpoint=\"/api/v1/tokens/{id}\"")
                && l.contains("status=\"404\"")
        })
        .unwrap_or_else(|| panic!("no per-template counter in:\n{text}"));
    assert!(line.ends_with(" 3"), "{line}");
    assert!(
        text.contains("flotilla_http_requests_duration_seconds_bucket"),
        "latency histogram missing"
    );
    assert!(
        !text.contains("/no/such/route"),
        "unmatched paths must not become labels"
    );
}
