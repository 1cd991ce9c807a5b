//! The API page in a real headless Chromium: it loads the OpenAPI document
//! the gateway generates and lists every operation, with no asset from
//! anywhere but the gateway.

mod common;

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_shows_every_operation() {
    if !testkit::tool("chromium", "--version", "the browser check") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let routes = dir.path().join("routes.json");
    std::fs::write(
        &routes,
        r#"{"services":{"orders":{"endpoints":{"blue":["127.0.0.1:9"],"green":[]},"weights":{"blue":100,"green":0}}}}"#,
    )
    .expect("routes");
    let running = common::start_gateway(
        &[("ROUTES_FILE", routes.to_str().expect("utf-8"))],
        &[platform_proto::PLATFORM_DESCRIPTOR_SET],
    )
    .await;
    let url = format!("http://{}/docs", running.addr);
    let profile = dir.path().join("chromium");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=10000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .output()
    })
    .await
    .expect("join")
    .expect("chromium runs");
    let dom = String::from_utf8_lossy(&output.stdout);
    let operations = dom.matches("data-operation=").count();
    assert_eq!(
        operations, 13,
        "the page lists the 13 operations; DOM:\n{dom}"
    );
    for op in ["CreateOrder", "CancelOrder", "StreamNotifications", "Login"] {
        assert!(
            dom.contains(&format!("data-operation=\"{op}\"")),
            "{op} missing"
        );
    }
    assert!(dom.contains("13 operations"), "the page read /openapi.json");
    running.stop().await;
}
