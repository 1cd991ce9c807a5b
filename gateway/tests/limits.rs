//! The gateway's limits, each answering with the status from the one table
//! before (or instead of) loading a service.

mod common;

use std::time::{Duration, Instant};

use common::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_bodies_timeouts_rates_and_shedding() {
    let stack = Stack::start_with(
        &[
            ("ROUTE_BODY_LIMITS", "POST /v1/orders/{order_id}:cancel=64"),
            ("ROUTE_TIMEOUTS", "GET /v1/orders=300"),
            ("RATE_LIMIT_PER_SECOND", "5"),
            ("RATE_LIMIT_BURST", "5"),
            ("MAX_CONCURRENT_REQUESTS", "3"),
            ("MAX_HEADERS", "40"),
            ("MAX_HEADER_BYTES", "16384"),
        ],
        &[("FAULT_LATENCY_MS", "3000".into())],
    )
    .await;
    let token = stack.login("limits@example.com").await;
    let bearer = format!("Bearer {token}");
    let auth = ("authorization", bearer.as_str());

    // 431: too many headers, or headers too large.
    let many: Vec<(String, String)> = (0..60)
        .map(|i| (format!("x-filler-{i}"), "1".to_owned()))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        stack
            .client()
            .await
            .call("GET", "/v1/auth/jwks", &many, "")
            .await
            .status,
        431
    );
    let huge = "x".repeat(20_000);
    assert_eq!(
        stack
            .client()
            .await
            .call("GET", "/v1/auth/jwks", &[("x-huge", &huge)], "")
            .await
            .status,
        431
    );

    // 413 from a per-route body limit, before any service is called.
    let body = format!(r#"{{"order_id":"{}"}}"#, "o".repeat(100));
    let reply = stack
        .client()
        .await
        .call("POST", "/v1/orders/ord_1:cancel", &[auth], &body)
        .await;
    assert_eq!(reply.status, 413, "{}", reply.text());

    // 504 from a per-route timeout: green is slower than the route allows.
    let started = Instant::now();
    let slow = stack
        .client()
        .await
        .call("GET", "/v1/orders", &[auth, ("x-color", "green")], "")
        .await;
    assert_eq!(slow.status, 504, "{}", slow.text());
    assert_eq!(slow.json()["code"], 4);
    assert!(
        started.elapsed() < Duration::from_millis(2000),
        "answered at the 300 ms deadline, not after the service's 3 s"
    );

    // 503 at once when the concurrency limit is full (slow calls hold it).
    let mut holders = Vec::new();
    for _ in 0..3 {
        let mut client = stack.client().await;
        let body = r#"{"items":[{"sku":"sticker-1","quantity":1,"unitPriceMinor":100}],"currency":"EUR","paymentMethod":"pm_card_visa"}"#;
        let bearer = bearer.clone();
        holders.push(tokio::spawn(async move {
            client
                .call(
                    "POST",
                    "/v1/orders",
                    &[("authorization", &bearer), ("x-color", "green")],
                    body,
                )
                .await
                .status
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let shed = stack
        .client()
        .await
        .call("GET", "/v1/auth/jwks", &[], "")
        .await;
    assert_eq!(shed.status, 503, "{}", shed.text());
    assert_eq!(shed.json()["code"], 8, "RESOURCE_EXHAUSTED");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "shed at once, not after a slot freed (the holders take 3 s): {:?}",
        started.elapsed()
    );
    for holder in holders {
        assert_eq!(
            holder.await.expect("join"),
            200,
            "the calls holding the limit finish normally"
        );
    }

    // 429 with Retry-After past the per-client rate; another client is unaffected.
    let other = stack.login("other@example.com").await;
    let mut client = stack.client().await;
    let mut limited = None;
    for _ in 0..20 {
        let reply = client.call("GET", "/v1/auth/me", &[auth], "").await;
        if reply.status == 429 {
            limited = Some(reply);
            break;
        }
    }
    let limited = limited.expect("the rate limit answered 429");
    assert!(
        limited
            .header("retry-after")
            .parse::<u64>()
            .is_ok_and(|s| s >= 1),
        "{:?}",
        limited.headers
    );
    assert_eq!(limited.json()["code"], 8);
    let other = format!("Bearer {other}");
    assert_eq!(
        client
            .call("GET", "/v1/auth/me", &[("authorization", &other)], "")
            .await
            .status,
        200
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stack = Stack::start_with(&[("HEADER_READ_TIMEOUT_MS", "300")], &[]).await;
    let mut stream = tokio::net::TcpStream::connect(stack.gateway.addr)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /v1/auth/jwks HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("write");
    let started = Instant::now();
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "the connection was not closed within 5 s");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "closed after {:?}",
        started.elapsed()
    );
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    // A normal client is served meanwhile.
    assert_eq!(
        stack
            .client()
            .await
            .call("GET", "/v1/auth/jwks", &[], "")
            .await
            .status,
        200
    );
    stack.stop().await;
}
