//! An endpoint dies under load: reads keep succeeding (retried on the other
//! endpoint of the color), the dead endpoint is ejected, and traffic returns
//! to it once it is back.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{ADMIN_TOKEN, Link, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_endpoint_loses_no_request_and_comes_back() {
    let stack = Stack::start_with(
        &[
            ("OUTLIER_CONSECUTIVE_FAILURES", "2"),
            ("OUTLIER_EJECTION_MS", "300"),
        ],
        &[],
    )
    .await;
    // Two endpoints for blue orders.
    let first = Link::start(stack.platform.orders.addr).await;
    let second = Link::start(stack.platform.orders.addr).await;
    let mut admin = stack.admin().await;
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let table = admin
        .call("GET", "/admin/routes", &[("authorization", &auth)], "")
        .await
        .json();
    let mut doc = table.clone();
    doc["services"]["orders"]["endpoints"]["blue"] =
        serde_json::json!([first.addr.to_string(), second.addr.to_string()]);
    std::fs::write(&stack.routes_file, doc.to_string()).expect("routes");
    // Served once the gateway has read the edit (a loaded machine may take
    // a few polls).
    let both = serde_json::json!([first.addr.to_string(), second.addr.to_string()]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let live = admin
            .call("GET", "/admin/routes", &[("authorization", &auth)], "")
            .await
            .json();
        if live["services"]["orders"]["endpoints"]["blue"] == both {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the routing file edit was not applied: {live}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let token = stack.login("failover@example.com").await;
    let bearer = format!("Bearer {token}");
    let reads = common::SteadyReads::start(&stack, &bearer, 2, Duration::from_millis(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        second.accepted.load(Ordering::Relaxed) > 0,
        "both endpoints take traffic before the kill"
    );
    second.kill();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let metrics = admin.call("GET", "/metrics", &[], "").await.text();
    assert!(
        metrics.contains("gateway_endpoint_ejections_total{service=\"orders\",color=\"blue\"}"),
        "the dead endpoint was ejected:\n{metrics}"
    );
    second.revive().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (sent, failed) = reads.stop().await;
    eprintln!("{sent} requests, {failed} failed");
    assert!(sent > 100, "a steady stream ({sent})");
    assert_eq!(
        failed, 0,
        "no request failed while an endpoint died and came back"
    );
    assert!(
        second.accepted.load(Ordering::Relaxed) > 0,
        "traffic returned to the revived endpoint"
    );
    let metrics = admin.call("GET", "/metrics", &[], "").await.text();
    assert!(
        metrics.contains("gateway_upstream_retries_total{service=\"orders\",color=\"blue\""),
        "{metrics}"
    );
    first.kill();
    second.kill();
    stack.stop().await;
}
