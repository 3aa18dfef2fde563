//! The embedded web dashboard.

use crate::helpers::{assert_error, spawn_app, Db};

#[tokio::test]
async fn the_dashboard_is_served_with_a_strict_policy() {
    let app = spawn_app(Db::Sqlite).await;
    let res = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(headers["cache-control"], "no-cache");
    let page = res.text().await.unwrap();
    // The page names its built, content-hashed script; that file is served and cached for good.
    let script = page
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("the page loads a script");
    assert!(
        script.starts_with("/assets/") && script.ends_with(".js"),
        "{script}"
    );
    let res = app.client.get(app.url(script)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/javascript"));
    assert!(res.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert!(!res.bytes().await.unwrap().is_empty());

    let res = app
        .client
        .get(app.url("/assets/nothing-here.js"))
        .send()
        .await
        .unwrap();
    assert_error(res, 404, "not_found").await;
}
