//! The published OpenAPI document covers every route the server serves.

use serde_json::Value;

use crate::helpers::{spawn_app, Db};

/// `(method, full path)` of every handler declared with an actix route macro under
/// `src/routes/`, read from the source so a new handler cannot be forgotten.
fn declared_routes() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let src = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in src.lines().map(str::trim) {
            for method in ["get", "post", "put", "patch", "delete"] {
                let prefix = format!("#[{method}(\"");
                if let Some(rest) = line.strip_prefix(&prefix) {
                    let path = rest.split('"').next().unwrap();
                    // The dashboard, health, metrics and the inference API are served at
                    // the top level; everything else is under the /api/v1 scope.
                    let top_level = path == "/"
                        || ["/assets", "/healthz", "/readyz", "/metrics", "/v2"]
                            .iter()
                            .any(|p| path == *p || path.starts_with(&format!("{p}/")));
                    let full = if top_level {
                        path.to_owned()
                    } else {
                        format!("/api/v1{path}")
                    };
                    out.push((method.to_owned(), full));
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn every_route_is_documented() {
    let app = spawn_app(Db::Sqlite).await;
    let res = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let routes = declared_routes();
    assert!(routes.len() >= 7, "found only {routes:?}");
    for (method, path) in &routes {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is served but missing from the OpenAPI document"
        );
    }
    for path in ["/metrics", "/api/openapi.json"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} undocumented");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn every_documented_path_is_served() {
    let app = spawn_app(Db::Sqlite).await;
    let doc: Value = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
        for method in item.as_object().unwrap().keys() {
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let res = app
                .client
                .request(m, app.url(&concrete))
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body = res.text().await.unwrap_or_default();
            assert!(
                status != 404 || !body.contains("route_not_found"),
                "{method} {path} is documented but not served"
            );
            assert_ne!(
                status, 405,
                "{method} {path} is documented but refuses the method"
            );
        }
    }
}

/// Client generators (the dashboard's openapi-typescript, say) refuse a document where two
/// operations share an id, as two handlers of the same name would make them.
#[tokio::test]
async fn every_operation_id_is_unique() {
    let app = spawn_app(Db::Sqlite).await;
    let doc: Value = app
        .client
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if let Some(id) = op["operationId"].as_str() {
                let at = format!("{method} {path}");
                if let Some(other) = seen.insert(id.to_owned(), at.clone()) {
                    panic!("operationId `{id}` is used by {other} and {at}");
                }
            }
        }
    }
    assert!(seen.len() > 50, "{} operations", seen.len());
}
