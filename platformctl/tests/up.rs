//! `platformctl up` as a user runs it: real processes on the documented port
//! layout (shifted, so a running platform is not disturbed), called with
//! grpcurl, and `kill -9` of orders and payments under way.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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

// Every port above or below the kernel's ephemeral range (32768-60999),
// so no client port of a test can take one.
const OFFSET: i32 = 14_000;

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
            sku: [
                "book-1",
                "pen-7",
                "sticker-1",
                "notebook-2",
                "mug-3",
                "lamp-5",
            ][i % 6]
                .into(),
            quantity: 1 + i as i32 % 3,
            unit_price_minor: 0,
        }],
        currency: "EUR".into(),
        payment_method: "pm_card_visa".into(),
        request_id: format!("restart-{i}"),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walkthrough_and_kill_9_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let platform = up(&data, OFFSET, &[]);
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

    // The README walk-through through the gateway, as curl would send it.
    let gateway =
        std::net::SocketAddr::from(([127, 0, 0, 1], u16::try_from(8080 + OFFSET).expect("port")));
    let credentials = r#"{"email":"curl@example.com","password":"correct horse battery"}"#;
    let registered = common::http(gateway, "POST", "/v1/auth/register", &[], credentials).await;
    assert!(registered.starts_with("HTTP/1.1 200"), "{registered}");
    let login = common::http(gateway, "POST", "/v1/auth/login", &[], credentials).await;
    let login: serde_json::Value =
        serde_json::from_str(login.split("\r\n\r\n").nth(1).expect("body")).expect("json");
    let bearer = format!("Bearer {}", login["accessToken"].as_str().expect("token"));
    let body = r#"{"items":[{"sku":"book-1","quantity":2,"unitPriceMinor":1250}],"currency":"EUR","paymentMethod":"pm_card_visa"}"#;
    let created = common::http(
        gateway,
        "POST",
        "/v1/orders",
        &[("authorization", bearer.as_str())],
        body,
    )
    .await;
    assert!(created.starts_with("HTTP/1.1 200"), "{created}");
    assert!(
        created.contains("x-served-by: blue") && created.contains("ORDER_STATUS_PAID"),
        "{created}"
    );

    let (_, token) = testkit::register_and_login(addr(OFFSET, 50051), "kill@example.com").await;
    let blue = OrderServiceClient::new(testkit::channel(addr(OFFSET, 50052)));
    let green = OrderServiceClient::new(testkit::channel(addr(OFFSET, 50152)));
    // A client keeps creating orders through both colors while orders (both
    // colors) and payments are killed with -9 under it and restarted.
    let keep_going = Arc::new(AtomicBool::new(true));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let creator = {
        let (blue, green, token) = (blue.clone(), green.clone(), token.clone());
        let (keep_going, acked) = (keep_going.clone(), acked.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while keep_going.load(Ordering::Relaxed) {
                let mut client = if i % 2 == 0 {
                    blue.clone()
                } else {
                    green.clone()
                };
                match client.create_order(authed(order(i), &token)).await {
                    Ok(created) => acked.lock().expect("lock").push(created.into_inner()),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
                i += 1;
            }
        })
    };
    let acked_count = || acked.lock().expect("lock").len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked_count() < 5 {
        assert!(
            Instant::now() < deadline,
            "no orders acknowledged before the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let victims = ["orders-blue", "payments-blue", "orders-green"];
    let pids: Vec<i32> = victims.iter().map(|v| pid(&data, v)).collect();
    for p in &pids {
        kill(Pid::from_raw(*p), Signal::SIGKILL).expect("kill -9");
    }
    // Wait for the supervisor to bring each back, then for 20 more orders.
    for (victim, old) in victims.iter().zip(&pids) {
        while pid(&data, victim) == *old || !alive(pid(&data, victim)) {
            assert!(
                Instant::now() < deadline,
                "{victim} was not restarted within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let after_restart = acked_count();
    while acked_count() < after_restart + 20 {
        assert!(
            Instant::now() < deadline,
            "orders did not flow again after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    keep_going.store(false, Ordering::Relaxed);
    creator.await.expect("creator");
    let acknowledged = acked.lock().expect("lock").clone();

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
    let status = platform.interrupt();
    assert!(status.success(), "{status}");
    for p in all {
        assert!(
            !alive(p),
            "process {p} still running after platformctl stopped"
        );
    }
}

#[test]
fn bad_input_is_a_clear_error_not_a_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let output = Command::new(env!("CARGO_BIN_EXE_platformctl"))
            .args(args)
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .output()
            .expect("runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(
        &[
            "up",
            "--port-offset=11000",
            "--green-env",
            "FAULT_ERROR_RATE=2",
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("invalid FAULT_ERROR_RATE: expected a number from 0 to 1, got 2"),
        "{stderr}"
    );
    let (code, stderr) = run(&["up", "--port-offset=14000", "--replicas=3"], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("puts ports beyond 65535"), "{stderr}");
    let (code, stderr) = run(&["up", "--postgres", "postgres://db.example/orders"], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("names the server, not a database"),
        "{stderr}"
    );
    let (code, stderr) = run(&["up", "--green-env", "not a pair"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("expected [SERVICE:]KEY=VALUE"), "{stderr}");
    let (code, stderr) = run(&["up", "--green-env", "billing:X=1"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("unknown service \"billing\""), "{stderr}");
    let (code, stderr) = run(&["up", "--green-bin", "/nonexistent/platformctl"], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("--green-bin /nonexistent/platformctl: cannot run it"),
        "{stderr}"
    );
    let (code, stderr) = run(&["up", "--blue-bin", "/bin/true"], &[]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("--blue-bin /bin/true: not a platformctl binary"),
        "{stderr}"
    );
    let (code, stderr) = run(&["service", "billing"], &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("unknown service \"billing\""), "{stderr}");
    let (code, stderr) = run(&["service", "payments"], &[("COLOR", "red")]);
    assert_eq!(code, Some(78), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "error: invalid COLOR: expected blue or green, got \"red\""
    );
}

/// `--green-bin`: the green services run from another platformctl binary
/// (here a copy), the blue ones from this one, on one database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_color_can_run_its_own_binary() {
    const BINS: i32 = 12_205;
    let dir = tempfile::tempdir().expect("tempdir");
    let green = dir.path().join("green-release").join("platformctl");
    std::fs::create_dir_all(green.parent().expect("parent")).expect("mkdir");
    std::fs::copy(env!("CARGO_BIN_EXE_platformctl"), &green).expect("copy");
    let data = dir.path().join("data");
    let green_arg = green.display().to_string();
    let _platform = common::up_with(&data, BINS, &[], &["--green-bin", &green_arg]);
    let exe = |name: &str| {
        std::fs::read_link(format!("/proc/{}/exe", pid(&data, name))).expect("exe link")
    };
    for service in ["auth", "orders", "payments", "notifications"] {
        assert_eq!(exe(&format!("{service}-green")), green, "{service}");
        assert_ne!(exe(&format!("{service}-blue")), green, "{service}");
    }
}
