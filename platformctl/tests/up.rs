//! `platformctl up` as a user runs it: real processes on the documented port
//! layout (shifted, so a running platform is not disturbed), called with
//! grpcurl, and `kill -9` of orders and payments under way.

use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use platform_proto::orders::v1::{
    CreateOrderRequest, GetOrderRequest, OrderItem, OrderStatus,
    order_service_client::OrderServiceClient,
};
use platform_proto::payments::v1::{
    ListPaymentsRequest, payment_service_client::PaymentServiceClient,
};
use testkit::authed;

mod common;

use common::{addr, alive, pid, port, up};

// Below the kernel's ephemeral range, so no test's client port can take one.
const OFFSET: i32 = -30_000;

/// Runs grpcurl; `None` when it is not installed outside CI.
fn grpcurl(args: &[&str]) -> Option<serde_json::Value> {
    let output = match Command::new("grpcurl")
        .arg("-plaintext")
        .args(args)
        .output()
    {
        Ok(output) => output,
        Err(_) if std::env::var_os("CI").is_none() => {
            eprintln!("note: grpcurl is not installed; skipping the grpcurl walk-through");
            return None;
        }
        Err(err) => {
            panic!("grpcurl is required under CI (scripts/install-tools.sh installs it): {err}")
        }
    };
    assert!(
        output.status.success(),
        "grpcurl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("utf-8");
    Some(serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

fn order(i: usize) -> CreateOrderRequest {
    // Each request has its own id: a retry of one would return the same order.
    CreateOrderRequest {
        items: vec![OrderItem {
            sku: format!("sku-{i}"),
            quantity: 1,
            unit_price_minor: 100 + i as i64,
        }],
        currency: "EUR".into(),
        payment_method: "pm_card_visa".into(),
        request_id: format!("restart-{i}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_and_kill_9_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut platform = up(&data, OFFSET, &[]);
    let auth = addr(OFFSET, 50051).to_string();

    // The README walk-through, with grpcurl and no proto files.
    if let Some(list) = grpcurl(&[&auth, "list"]) {
        let list = list.as_str().expect("text").to_owned();
        for name in ["grpc.health.v1.Health", "platform.auth.v1.AuthService"] {
            assert!(list.contains(name), "{list}");
        }
        for base in [50051u16, 50052, 50053, 50054, 50151, 50152, 50153, 50154] {
            let health = grpcurl(&[
                &addr(OFFSET, base).to_string(),
                "grpc.health.v1.Health/Check",
            ])
            .expect("health");
            assert_eq!(health["status"], "SERVING", "port {}", port(OFFSET, base));
        }
        let credentials = r#"{"email":"ada@example.com","password":"correct horse battery"}"#;
        grpcurl(&[
            "-d",
            credentials,
            &auth,
            "platform.auth.v1.AuthService/Register",
        ])
        .expect("register");
        let login = grpcurl(&[
            "-d",
            credentials,
            &auth,
            "platform.auth.v1.AuthService/Login",
        ])
        .expect("login");
        let token = login["accessToken"].as_str().expect("token").to_owned();
        let header = format!("authorization: Bearer {token}");
        let body = r#"{"items":[{"sku":"book-1","quantity":2,"unit_price_minor":1250}],"currency":"EUR","payment_method":"pm_card_visa"}"#;
        let orders = addr(OFFSET, 50052).to_string();
        let created = grpcurl(&[
            "-H",
            &header,
            "-d",
            body,
            &orders,
            "platform.orders.v1.OrderService/CreateOrder",
        ])
        .expect("order");
        assert_eq!(created["status"], "ORDER_STATUS_PAID");
        assert_eq!(created["totalMinor"], "2500");
    }

    let (_, token) = testkit::register_and_login(addr(OFFSET, 50051), "kill@example.com").await;
    let blue = OrderServiceClient::new(testkit::channel(addr(OFFSET, 50052)));
    let green = OrderServiceClient::new(testkit::channel(addr(OFFSET, 50152)));
    // A client keeps creating orders through both colors while orders (both
    // colors) and payments are killed with -9 under it and restarted.
    let creator = {
        let (blue, green, token) = (blue.clone(), green.clone(), token.clone());
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(90);
            let mut i = 0;
            while acknowledged.len() < 40 && Instant::now() < deadline {
                let mut client = if i % 2 == 0 {
                    blue.clone()
                } else {
                    green.clone()
                };
                match client.create_order(authed(order(i), &token)).await {
                    Ok(created) => acknowledged.push(created.into_inner()),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
                i += 1;
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let victims = ["orders-blue", "payments-blue", "orders-green"];
    let pids: Vec<i32> = victims.iter().map(|v| pid(&data, v)).collect();
    for p in &pids {
        kill(Pid::from_raw(*p), Signal::SIGKILL).expect("kill -9");
    }
    let acknowledged = creator.await.expect("creator");
    assert_eq!(
        acknowledged.len(),
        40,
        "the killed processes came back and orders flowed again"
    );
    for (victim, old) in victims.iter().zip(&pids) {
        assert_ne!(pid(&data, victim), *old, "{victim} was restarted");
    }

    // Everything acknowledged is there, ends paid, and is charged exactly once.
    let mut payments = PaymentServiceClient::new(testkit::channel(addr(OFFSET, 50153)));
    for ack in &acknowledged {
        let mut final_state = None;
        for _ in 0..200 {
            let got = blue
                .clone()
                .get_order(authed(
                    GetOrderRequest {
                        order_id: ack.id.clone(),
                    },
                    &token,
                ))
                .await
                .expect("acknowledged order exists")
                .into_inner();
            if got.status == i32::from(OrderStatus::Paid) {
                final_state = Some(got);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let got = final_state.unwrap_or_else(|| panic!("order {} did not end paid", ack.id));
        assert_eq!((got.total_minor, &got.items), (ack.total_minor, &ack.items));
        let charged = payments
            .list_payments(authed(
                ListPaymentsRequest {
                    order_id: ack.id.clone(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .expect("payments")
            .into_inner()
            .payments;
        assert_eq!(charged.len(), 1, "order {} charged once", ack.id);
    }

    // Ctrl-C stops every process.
    let all: Vec<i32> = ["auth", "orders", "payments", "notifications"]
        .iter()
        .flat_map(|s| ["blue", "green"].map(|c| format!("{s}-{c}")))
        .map(|name| pid(&data, &name))
        .collect();
    kill(Pid::from_raw(platform.id() as i32), Signal::SIGINT).expect("ctrl-c");
    let status = platform.wait().expect("platformctl exits");
    assert!(status.success(), "{status}");
    for p in all {
        assert!(
            !alive(p),
            "process {p} still running after platformctl stopped"
        );
    }
}
