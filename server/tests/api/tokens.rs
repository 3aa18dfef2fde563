//! Authentication, roles, token management and the audit trail.

use serde_json::{json, Value};

use crate::helpers::{assert_error, both_backends, spawn_app, spawn_app_with, Db};

both_backends!(
    bootstrap_token_lists_tokens,
    bootstrap_token_lists_tokens_on
);
async fn bootstrap_token_lists_tokens_on(db: Db) {
    let app = spawn_app(db).await;
    let res = app
        .client
        .get(app.url("/api/v1/tokens"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let tokens = body["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["role"], "admin");
    assert_eq!(tokens[0]["name"], "bootstrap-admin");
    assert!(
        tokens[0].get("token").is_none(),
        "listing never shows secrets"
    );
    assert!(app
        .admin_token
        .starts_with(tokens[0]["prefix"].as_str().unwrap()));
}

#[tokio::test]
async fn configured_bootstrap_token_becomes_the_admin_token() {
    let app = spawn_app_with(Db::Sqlite, |s| {
        s.bootstrap_token = Some("automation-secret-0123456789".to_owned().into());
    })
    .await;
    let res = app
        .client
        .get(app.url("/api/v1/whoami"))
        .bearer_auth("automation-secret-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let me: Value = res.json().await.unwrap();
    assert_eq!(me["role"], "admin");
}

#[tokio::test]
async fn bootstrap_happens_only_once() {
    let app = spawn_app(Db::Sqlite).await;
    let settings = crate::helpers::test_settings(None, &app.data_dir);
    let again = flotilla_server::startup::Application::build(settings)
        .await
        .unwrap();
    assert!(
        again.bootstrap_secret().is_none(),
        "a second start must not mint another admin token"
    );
    assert_eq!(app.store.count_tokens().await.unwrap(), 1);
}

#[tokio::test]
async fn requests_without_or_with_bad_tokens_are_401() {
    let app = spawn_app(Db::Sqlite).await;
    let res = app
        .client
        .get(app.url("/api/v1/tokens"))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "unauthorized").await;
    let res = app
        .client
        .post(app.url("/api/v1/tokens"))
        .json(&json!({"name": "x", "role": "viewer"}))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "unauthorized").await;
    let res = app
        .client
        .get(app.url("/api/v1/tokens"))
        .bearer_auth("flt_not_a_real_token")
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "unauthorized").await;
    let res = app
        .client
        .get(app.url("/api/v1/tokens"))
        .header("Authorization", format!("Basic {}", app.admin_token))
        .send()
        .await
        .unwrap();
    assert_error(res, 401, "unauthorized").await;
}

both_backends!(viewer_cannot_mutate, viewer_cannot_mutate_on);
async fn viewer_cannot_mutate_on(db: Db) {
    let app = spawn_app(db).await;
    let viewer = app.token_with_role("dash", "viewer").await;
    let res = app
        .client
        .post(app.url("/api/v1/tokens"))
        .bearer_auth(&viewer)
        .json(&json!({"name": "escalate", "role": "admin"}))
        .send()
        .await
        .unwrap();
    let msg = assert_error(res, 403, "forbidden").await;
    assert!(msg.contains("viewer"), "{msg}");
    // Reads that are not admin-only work for a viewer.
    let res = app
        .client
        .get(app.url("/api/v1/whoami"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // Token listing and the audit log are admin-only.
    for path in ["/api/v1/tokens", "/api/v1/audit"] {
        let res = app
            .client
            .get(app.url(path))
            .bearer_auth(&viewer)
            .send()
            .await
            .unwrap();
        assert_error(res, 403, "forbidden").await;
    }
    for role in ["publisher", "operator"] {
        let t = app.token_with_role(role, role).await;
        let res = app
            .client
            .post(app.url("/api/v1/tokens"))
            .bearer_auth(&t)
            .json(&json!({"name": "x", "role": "viewer"}))
            .send()
            .await
            .unwrap();
        assert_error(res, 403, "forbidden").await;
    }
}

both_backends!(
    revoked_token_stops_working_at_once,
    revoked_token_stops_working_at_once_on
);
async fn revoked_token_stops_working_at_once_on(db: Db) {
    let app = spawn_app(db).await;
    let res = app
        .client
        .post(app.url("/api/v1/tokens"))
        .bearer_auth(&app.admin_token)
        .json(&json!({"name": "ci-bot", "role": "publisher", "expires_in_secs": 3600}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let secret = created["token"].as_str().unwrap().to_owned();
    assert!(created["expires_at"].is_string());
    let id = created["id"].as_str().unwrap();

    let whoami = |t: String| {
        let c = app.client.clone();
        let url = app.url("/api/v1/whoami");
        async move { c.get(url).bearer_auth(t).send().await.unwrap() }
    };
    assert_eq!(whoami(secret.clone()).await.status(), 200);

    let res = app
        .client
        .delete(app.url(&format!("/api/v1/tokens/{id}")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let revoked: Value = res.json().await.unwrap();
    assert!(revoked["revoked_at"].is_string());

    let msg = assert_error(whoami(secret).await, 401, "unauthorized").await;
    assert!(msg.contains("revoked"), "{msg}");
}

#[tokio::test]
async fn the_last_admin_token_cannot_be_revoked() {
    let app = spawn_app(Db::Sqlite).await;
    let list: Value = app
        .client
        .get(app.url("/api/v1/tokens"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = list["tokens"][0]["id"].as_str().unwrap().to_owned();
    let res = app
        .client
        .delete(app.url(&format!("/api/v1/tokens/{id}")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_error(res, 409, "conflict").await;
    // With a second admin it can.
    app.token_with_role("second-admin", "admin").await;
    let res = app
        .client
        .delete(app.url(&format!("/api/v1/tokens/{id}")))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn token_requests_are_validated() {
    let app = spawn_app(Db::Sqlite).await;
    let cases = [
        (json!({"name": "", "role": "viewer"}), "invalid_argument"),
        (
            json!({"name": "x".repeat(65), "role": "viewer"}),
            "invalid_argument",
        ),
        (json!({"name": "x", "role": "root"}), "invalid_json"),
        (
            json!({"name": "x", "role": "viewer", "expires_in_secs": 0}),
            "invalid_argument",
        ),
        (
            json!({"name": "x", "role": "viewer", "surprise": 1}),
            "invalid_json",
        ),
    ];
    for (body, code) in cases {
        let res = app
            .client
            .post(app.url("/api/v1/tokens"))
            .bearer_auth(&app.admin_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_error(res, 400, code).await;
    }
    let res = app
        .client
        .delete(app.url("/api/v1/tokens/..%2F..%2Fetc"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_error(res, 400, "invalid_path").await;
    let res = app
        .client
        .delete(app.url(&format!("/api/v1/tokens/{}", uuid::Uuid::new_v4())))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_error(res, 404, "not_found").await;
}

both_backends!(mutations_are_audited, mutations_are_audited_on);
async fn mutations_are_audited_on(db: Db) {
    let app = spawn_app(db).await;
    let viewer = app.token_with_role("reader", "viewer").await;
    // A refused attempt and an anonymous one are recorded too.
    app.client
        .post(app.url("/api/v1/tokens"))
        .bearer_auth(&viewer)
        .json(&json!({"name": "nope", "role": "admin"}))
        .send()
        .await
        .unwrap();
    app.client
        .post(app.url("/api/v1/tokens"))
        .json(&json!({"name": "nope", "role": "admin"}))
        .send()
        .await
        .unwrap();
    let page: Value = app
        .client
        .get(app.url("/api/v1/audit"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{page}");
    assert_eq!(entries[0]["actor"], "anonymous");
    assert_eq!(entries[0]["outcome"], "denied");
    assert_eq!(entries[0]["status"], 401);
    assert_eq!(entries[1]["actor"], "reader");
    assert_eq!(entries[1]["outcome"], "denied");
    assert_eq!(entries[1]["status"], 403);
    assert_eq!(entries[2]["actor"], "bootstrap-admin");
    assert_eq!(entries[2]["outcome"], "success");
    assert_eq!(entries[2]["method"], "POST");
    assert_eq!(entries[2]["route"], "/api/v1/tokens");
    assert_eq!(entries[2]["detail"]["name"], "reader");
    assert_eq!(entries[2]["detail"]["role"], "viewer");
    assert!(entries[2]["at"].as_str().unwrap().ends_with('Z'));
    // Reads are not audited: the GET above added nothing.
    let again: Value = app
        .client
        .get(app.url("/api/v1/audit?limit=1"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["entries"][0]["id"], entries[0]["id"]);
    assert_eq!(again["next_before"], entries[0]["id"]);
}
