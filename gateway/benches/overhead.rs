//! What the gateway costs per request: the same read (`GetOrder`) as a direct
//! gRPC call to the service, as REST through the gateway, and as gRPC through
//! the gateway, measured side by side in one run at a fixed request rate.
//!
//! `cargo bench -p gateway --bench overhead` (env: RATE per second, default
//! 1000; SECONDS per round, default 3; ROUNDS, default 3).
//! The services, the gateway and the load all run in this one process on
//! loopback, so absolute numbers are pessimistic; the differences between
//! the three paths are what it measures.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use platform_proto::orders::v1::{GetOrderRequest, order_service_client::OrderServiceClient};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Direct,
    Rest,
    GrpcViaGateway,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Direct => "gRPC direct to orders",
            Path::Rest => "REST through the gateway",
            Path::GrpcViaGateway => "gRPC through the gateway",
        }
    }
}

/// Sends `count` requests at `rate` per second over 4 connections; returns latencies.
async fn round(
    stack: &common::Stack,
    path: Path,
    token: &str,
    order_id: &str,
    rate: u64,
    seconds: u64,
) -> Vec<Duration> {
    let connections = 4u64;
    let per_connection = rate * seconds / connections;
    let interval = Duration::from_secs_f64(connections as f64 / rate as f64);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (token, order_id) = (token.to_owned(), order_id.to_owned());
        // gRPC straight to orders, or to the gateway.
        let grpc_target = if path == Path::GrpcViaGateway {
            stack.gateway.addr
        } else {
            stack.platform.orders.addr
        };
        let grpc = OrderServiceClient::new(testkit::channel(grpc_target));
        let mut rest = stack.client().await;
        let offset = interval.mul_f64(c as f64 / connections as f64);
        tasks.push(tokio::spawn(async move {
            let bearer = format!("Bearer {token}");
            let rest_path = format!("/v1/orders/{order_id}");
            let start = Instant::now() + offset;
            let mut latencies = Vec::with_capacity(per_connection as usize);
            for i in 0..per_connection {
                let due = start + interval.mul_f64(i as f64);
                tokio::time::sleep_until(due.into()).await;
                let sent = Instant::now();
                let ok = match path {
                    Path::Direct | Path::GrpcViaGateway => grpc
                        .clone()
                        .get_order(testkit::authed(
                            GetOrderRequest {
                                order_id: order_id.clone(),
                            },
                            &token,
                        ))
                        .await
                        .is_ok(),
                    Path::Rest => {
                        rest.call("GET", &rest_path, &[("authorization", bearer.as_str())], "")
                            .await
                            .status
                            == 200
                    }
                };
                assert!(ok, "{path:?} failed");
                // From when the request was due: a late start counts against the path.
                latencies.push(sent.elapsed() + sent.saturating_duration_since(due));
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("load task"));
    }
    all
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    let rate = env_or("RATE", 1000);
    let seconds = env_or("SECONDS", 3);
    let rounds = env_or("ROUNDS", 3);
    let stack = common::Stack::start().await;
    let token = stack.login("bench@example.com").await;
    let mut client = stack.client().await;
    let body = r#"{"items":[{"sku":"sticker-1","quantity":1,"unitPriceMinor":100}],"currency":"EUR","paymentMethod":"pm_card_visa"}"#;
    let bearer = format!("Bearer {token}");
    let order = client
        .call(
            "POST",
            "/v1/orders",
            &[("authorization", bearer.as_str())],
            body,
        )
        .await
        .json();
    let order_id = order["id"].as_str().expect("order id").to_owned();

    let paths = [Path::Direct, Path::Rest, Path::GrpcViaGateway];
    // Warm every path (connections, caches) before measuring.
    for path in paths {
        round(&stack, path, &token, &order_id, rate, 1).await;
    }
    let mut results: Vec<(Path, Vec<Duration>)> = paths.iter().map(|p| (*p, Vec::new())).collect();
    for _ in 0..rounds {
        for (path, latencies) in &mut results {
            latencies.extend(round(&stack, *path, &token, &order_id, rate, seconds).await);
        }
    }
    println!(
        "GetOrder at {rate} req/s, {rounds} interleaved rounds of {seconds} s per path, 4 connections each\n"
    );
    println!("| path | requests | p50 ms | p99 ms | p50 over direct | p99 over direct |");
    println!("|---|---|---|---|---|---|");
    let mut direct = (Duration::ZERO, Duration::ZERO);
    for (path, latencies) in &mut results {
        latencies.sort();
        let (p50, p99) = (quantile(latencies, 0.5), quantile(latencies, 0.99));
        if *path == Path::Direct {
            direct = (p50, p99);
        }
        println!(
            "| {} | {} | {:.3} | {:.3} | {:+.3} ms | {:+.3} ms |",
            path.name(),
            latencies.len(),
            ms(p50),
            ms(p99),
            ms(p50) - ms(direct.0),
            ms(p99) - ms(direct.1)
        );
    }
    stack.stop().await;
}
