//! Every error, including actix's own, is the JSON error body: never HTML, never empty.

use crate::helpers::{assert_error, spawn_app, spawn_app_with, Db};

#[tokio::test]
async fn malformed_json_is_400_invalid_json() {
    let app = spawn_app(Db::Sqlite).await;
    let res = app
        .client
        .post(app.url("/api/v1/tokens"))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/json")
        .body("{\"name\": \"x\", \"role\":")
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "invalid_json").await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    let app = spawn_app_with(Db::Sqlite, |s| s.max_json_body_bytes = 4096).await;
    let big = format!(
        "{{\"name\": \"{}\", \"role\": \"viewer\"}}",
        "x".repeat(10_000)
    );
    let res = app
        .client
        .post(app.url("/api/v1/tokens"))
        .bearer_auth(&app.admin_token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_error(res, 413, "payload_too_large").await;
    assert_eq!(
        app.store.count_tokens().await.unwrap(),
        1,
        "nothing was created"
    );
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let app = spawn_app(Db::Sqlite).await;
    let res = app
        .client
        .post(app.url("/api/v1/tokens"))
        .bearer_auth(&app.admin_token)
        .header("content-type", "text/plain")
        .body("{\"name\": \"x\", \"role\": \"viewer\"}")
        .send()
        .await
        .unwrap();
    assert_error(res, 415, "unsupported_media_type").await;
}

#[tokio::test]
async fn unknown_route_is_404_route_not_found() {
    let app = spawn_app(Db::Sqlite).await;
    for path in ["/nope", "/api/v1/nope", "/api/v2/tokens"] {
        let res = app.client.get(app.url(path)).send().await.unwrap();
        assert_error(res, 404, "route_not_found").await;
    }
}

#[tokio::test]
async fn wrong_method_is_405_with_json() {
    let app = spawn_app(Db::Sqlite).await;
    let res = app
        .client
        .put(app.url("/api/v1/tokens"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_error(res, 405, "method_not_allowed").await;
    let res = app.client.post(app.url("/healthz")).send().await.unwrap();
    assert_error(res, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn bad_query_is_400_invalid_query() {
    let app = spawn_app(Db::Sqlite).await;
    for q in ["limit=abc", "limit=0", "bogus=1"] {
        let res = app
            .client
            .get(app.url(&format!("/api/v1/audit?{q}")))
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .unwrap();
        assert_error(res, 400, "invalid_query").await;
    }
}
