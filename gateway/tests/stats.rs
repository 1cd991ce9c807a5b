//! What release analysis reads: the gateway counts every call it makes per
//! color, retried attempts included, server faults apart from client
//! mistakes, and mirrored copies apart from live traffic (their answers
//! never reach the user).

mod common;

use common::{ADMIN_TOKEN, Stack};

fn series(stats: &serde_json::Value, color: &str, traffic: &str) -> (u64, u64) {
    let total = &stats["services"]["orders"][color][traffic]["total"];
    (
        total["requests"].as_u64().unwrap_or(0),
        total["server_errors"].as_u64().unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_is_counted_per_color_and_mirrors_apart() {
    // Green orders fails every call (UNAVAILABLE or INTERNAL); health is spared.
    let stack = Stack::start_with(&[], &[("FAULT_ERROR_RATE", "1".to_owned())]).await;
    let token = stack.login("stats@example.com").await;
    let bearer = format!("Bearer {token}");
    let mut client = stack.client().await;
    let mut admin = stack.admin().await;
    let admin_auth = format!("Bearer {ADMIN_TOKEN}");

    for _ in 0..20 {
        let reply = client
            .call(
                "GET",
                "/v1/orders",
                &[("authorization", &bearer), ("x-color", "green")],
                "",
            )
            .await;
        assert!(reply.status >= 500, "green fails: {}", reply.status);
    }
    for _ in 0..10 {
        let reply = client
            .call("GET", "/v1/orders", &[("authorization", &bearer)], "")
            .await;
        assert_eq!(reply.status, 200);
    }
    for _ in 0..5 {
        let reply = client
            .call(
                "GET",
                "/v1/orders/ord_missing",
                &[("authorization", &bearer)],
                "",
            )
            .await;
        assert_eq!(reply.status, 404);
    }
    let stats = admin
        .call("GET", "/admin/stats", &[("authorization", &admin_auth)], "")
        .await
        .json();
    let (green_calls, green_errors) = series(&stats, "green", "live");
    assert!(
        green_calls >= 20,
        "every attempt on green is counted, retries too: {stats}"
    );
    assert_eq!(green_errors, green_calls, "all of them failed");
    assert_eq!(
        series(&stats, "blue", "live"),
        (15, 0),
        "NOT_FOUND is not a server fault"
    );

    // A rollout that mirrors every read to green before any step.
    let plan = r#"{"to":"green","steps":[10,100],"interval_ms":600000,"thresholds":{"max_error_ratio":0.01,"max_p99_ms":500,"max_relative_error":2,"min_requests":10},"mirror_percent":100,"timeout_ms":600000,"controller":"stats-test"}"#;
    let started = admin
        .call(
            "POST",
            "/admin/routes/orders/rollout",
            &[("authorization", &admin_auth)],
            plan,
        )
        .await;
    assert_eq!(started.status, 200, "{}", started.text());
    for _ in 0..10 {
        let reply = client
            .call("GET", "/v1/orders", &[("authorization", &bearer)], "")
            .await;
        assert_eq!(
            reply.status, 200,
            "users are served by blue while green is mirrored"
        );
        assert_eq!(reply.header("x-served-by"), "blue");
    }
    // Copies are sent in the background: wait for them to be counted.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let stats = admin
            .call("GET", "/admin/stats", &[("authorization", &admin_auth)], "")
            .await
            .json();
        let (mirrored, mirror_errors) = series(&stats, "green", "mirror");
        if mirrored >= 10 {
            assert_eq!(
                mirror_errors, mirrored,
                "the copies failed, the users did not"
            );
            assert_eq!(
                series(&stats, "green", "live").0,
                green_calls,
                "copies are not live traffic"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "copies were not counted: {stats}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    stack.stop().await;
}
