//! Hostile tests of the trust model: each test is an attack, named after it, that the server
//! must refuse.

use serde_json::{json, Value};

use crate::helpers::{assert_error, both_backends, spawn_app, Db, TestApp};
use crate::registry::Publisher;

impl TestApp {
    async fn audit_entries(&self, limit: u32) -> Vec<Value> {
        let page: Value = self
            .client
            .get(self.url(&format!("/api/v1/audit?limit={limit}")))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["entries"].as_array().unwrap().clone()
    }

    async fn set_global_threshold(&self, threshold: u32) {
        let res = self
            .client
            .put(self.url("/api/v1/trust/threshold"))
            .bearer_auth(&self.admin_token)
            .json(&json!({"threshold": threshold}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
}

async fn create_model_as(
    app: &TestApp,
    token: &str,
    name: &str,
    threshold: u32,
) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/models"))
        .bearer_auth(token)
        .json(&json!({"name": name, "description": "", "signing_threshold": threshold}))
        .send()
        .await
        .unwrap()
}

both_backends!(
    publisher_cannot_lower_model_threshold_below_global,
    publisher_cannot_lower_model_threshold_below_global_on
);
async fn publisher_cannot_lower_model_threshold_below_global_on(db: Db) {
    let app = spawn_app(db).await;
    for name in ["a", "b", "c"] {
        let p = Publisher::new();
        assert_eq!(app.register_key(name, &p.pem()).await.status(), 201);
    }
    app.set_global_threshold(2).await;
    let publisher = app.token_with_role("ci", "publisher").await;

    // One stolen publisher key must not be enough: a publisher may not make its own model 1-of-n.
    let res = create_model_as(&app, &publisher, "fraud", 1).await;
    assert_error(res, 403, "threshold_below_global").await;
    let res = app
        .client
        .get(app.url("/api/v1/models/fraud"))
        .bearer_auth(&app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404, "the refused model was not stored");

    // Equal or stricter stays a publisher's call.
    assert_eq!(
        create_model_as(&app, &publisher, "fraud", 2).await.status(),
        201
    );
    assert_eq!(
        create_model_as(&app, &publisher, "strict", 3)
            .await
            .status(),
        201
    );

    // An admin may lower it, and the audit log says to what and under which global threshold.
    let res = create_model_as(&app, &app.admin_token, "lenient", 1).await;
    assert_eq!(res.status(), 201);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["signing_threshold"], 1);
    let entries = app.audit_entries(1).await;
    assert_eq!(entries[0]["route"], "/api/v1/models");
    assert_eq!(entries[0]["detail"]["model"], "lenient");
    assert_eq!(entries[0]["detail"]["signing_threshold"], 1);
    assert_eq!(entries[0]["detail"]["global_threshold"], 2);
}
