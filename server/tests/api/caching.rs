//! ETags on reads, which make polling (the dashboard's) cheap.

use serde_json::{json, Value};

use crate::helpers::{assert_error, spawn_app, Db};

#[tokio::test]
async fn reads_carry_an_etag_and_answer_304_while_unchanged() {
    let app = spawn_app(Db::Sqlite).await;
    let get = |etag: Option<String>| {
        let mut req = app
            .client
            .get(app.url("/api/v1/models"))
            .bearer_auth(&app.admin_token);
        if let Some(e) = etag {
            req = req.header("if-none-match", e);
        }
        req.send()
    };
    let first = get(None).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["cache-control"], "private, no-cache");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with("W/\""), "{etag}");
    assert_eq!(first.json::<Value>().await.unwrap(), json!({"models": []}));

    let same = get(Some(etag.clone())).await.unwrap();
    assert_eq!(same.status(), 304);
    assert_eq!(same.headers()["etag"].to_str().unwrap(), etag);
    assert!(same.bytes().await.unwrap().is_empty());

    let res = app
        .client
        .post(app.url("/api/v1/models"))
        .bearer_auth(&app.admin_token)
        .json(&json!({"name": "fraud"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let changed = get(Some(etag.clone())).await.unwrap();
    assert_eq!(changed.status(), 200);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);

    // Errors carry no tag, whatever the client sends.
    let res = app
        .client
        .get(app.url("/api/v1/models"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("etag").is_none());
    assert_error(res, 401, "unauthorized").await;
}
