//! The shared runtime, seen through a real service: metrics, injected faults
//! and the graceful drain.

use std::time::{Duration, Instant};

use platform_proto::payments::v1::{
    GetPaymentRequest, payment_service_client::PaymentServiceClient,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic_health_client::{HealthCheckRequest, HealthClient, ServingStatus};

mod tonic_health_client {
    pub use tonic_health::pb::HealthCheckRequest;
    pub use tonic_health::pb::health_check_response::ServingStatus;
    pub use tonic_health::pb::health_client::HealthClient;
}

/// A payments service with its auth; the caller stops both.
struct Running {
    payments: platform_runtime::RunningService,
    auth: platform_runtime::RunningService,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn stop(self) {
        self.payments.stop().await;
        self.auth.stop().await;
    }
}

async fn payments_with(extra: &[(&str, String)]) -> (Running, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let auth_db = testkit::database(&testkit::Backend::Sqlite, dir.path(), "auth").await;
    let auth = testkit::start_service("auth", testkit::env(dir.path(), &auth_db, &[])).await;
    let (_, token) = testkit::register_and_login(auth.addr, "rt@example.com").await;
    let db = testkit::database(&testkit::Backend::Sqlite, dir.path(), "payments").await;
    let mut env = vec![("AUTH_ADDR", testkit::url(auth.addr))];
    env.extend(extra.iter().cloned());
    let payments = testkit::start_service("payments", testkit::env(dir.path(), &db, &env)).await;
    (
        Running {
            payments,
            auth,
            _dir: dir,
        },
        token,
    )
}

async fn get(
    payments: &platform_runtime::RunningService,
    token: &str,
) -> Result<(), tonic::Status> {
    PaymentServiceClient::new(testkit::channel(payments.addr))
        .get_payment(testkit::authed(
            GetPaymentRequest {
                payment_id: "pay_missing".into(),
            },
            token,
        ))
        .await
        .map(|_| ())
}

async fn health(addr: std::net::SocketAddr) -> i32 {
    HealthClient::new(testkit::channel(addr))
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers")
        .into_inner()
        .status
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut body = String::new();
    stream.read_to_string(&mut body).await.expect("read");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_by_method_code_and_color() {
    let (running, token) =
        payments_with(&[("COLOR", "green".into()), ("VERSION", "v9".into())]).await;
    let payments = &running.payments;
    for _ in 0..3 {
        assert_eq!(
            get(payments, &token).await.map_err(|s| s.code()),
            Err(Code::NotFound)
        );
    }
    let text = scrape(payments.metrics_addr).await;
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("rpc_server_requests_total") && l.contains("rpc_method=\"GetPayment\"")
        })
        .unwrap_or_else(|| panic!("no GetPayment series in\n{text}"));
    for label in [
        "color=\"green\"",
        "version=\"v9\"",
        "service=\"payments\"",
        "code=\"NOT_FOUND\"",
    ] {
        assert!(line.contains(label), "{label} missing from {line}");
    }
    assert!(line.ends_with(" 3"), "{line}");
    assert!(text.contains("rpc_server_duration_seconds_bucket"));
    let build = text
        .lines()
        .find(|l| l.starts_with("build_info{"))
        .unwrap_or_else(|| panic!("no build_info in\n{text}"));
    assert!(build.contains("rust_version=\"1."), "{build}");
    // Read as Prometheus reads it, in the format each scrape asked for.
    testkit::exposition::check(
        payments.metrics_addr,
        &[
            ("rpc_server_requests", "counter"),
            ("rpc_server_duration_seconds", "histogram"),
            ("rpc_server_in_flight_requests", "gauge"),
            ("build_info", "gauge"),
        ],
    )
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_and_the_metrics_say_which_build_and_schema_serve() {
    let (running, _token) = payments_with(&[("VERSION", "v9".into())]).await;
    let known = payments::MIGRATIONS
        .iter()
        .map(|m| m.version)
        .max()
        .expect("migrations");
    let answer = HealthClient::new(testkit::channel(running.payments.addr))
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health answers");
    let header = |name: &str| {
        answer
            .metadata()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("x-service-version").as_deref(), Some("v9"));
    let build = header("x-service-build").expect("a build");
    assert!(build.starts_with(env!("CARGO_PKG_VERSION")), "{build}");
    assert_eq!(header("x-service-schema"), Some(known.to_string()));
    let text = scrape(running.payments.metrics_addr).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("build_info{") && l.contains(&format!("build=\"{build}\""))),
        "{text}"
    );
    for of in ["release", "database"] {
        assert!(
            text.lines().any(|l| l.starts_with("schema_version{")
                && l.contains(&format!("of=\"{of}\""))
                && l.ends_with(&format!(" {known}"))),
            "{of}: {text}"
        );
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_that_passes_in_the_service_is_deadline_exceeded() {
    // Every call takes 400 ms; the caller gives it 100 ms. Sent as bytes:
    // a tonic client keeps a timer of its own and would report CANCELLED
    // itself, so only a raw call reads the service's answer.
    let (running, token) = payments_with(&[("FAULT_LATENCY_MS", "400".into())]).await;
    let bearer = format!("Bearer {token}");
    // GetPaymentRequest { payment_id: "pay_missing" }
    let mut message = vec![0x0a, 11];
    message.extend_from_slice(b"pay_missing");
    let started = Instant::now();
    let (_, code, text) = testkit::raw::grpc(
        running.payments.addr,
        "/platform.payments.v1.PaymentService/GetPayment",
        &[("authorization", &bearer), ("grpc-timeout", "100m")],
        testkit::raw::frame(&message),
    )
    .await;
    assert_eq!(code, "4", "DEADLINE_EXCEEDED, not {code} {text}");
    assert!(text.contains("deadline exceeded"), "{text}");
    assert!(
        started.elapsed() < Duration::from_millis(390),
        "answered after {:?}, not at the deadline",
        started.elapsed()
    );
    let text = scrape(running.payments.metrics_addr).await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("rpc_server_requests_total")
                && l.contains("rpc_method=\"GetPayment\"")
                && l.contains("code=\"DEADLINE_EXCEEDED\"")),
        "{text}"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_faults_hit_calls_but_not_health() {
    let (running, token) = payments_with(&[("FAULT_ERROR_RATE", "1".into())]).await;
    for _ in 0..10 {
        let code = get(&running.payments, &token)
            .await
            .expect_err("fault")
            .code();
        assert!(
            matches!(code, Code::Unavailable | Code::Internal),
            "{code:?}"
        );
    }
    assert_eq!(
        health(running.payments.addr).await,
        ServingStatus::Serving as i32
    );
    running.stop().await;

    let (slow, token) = payments_with(&[("FAULT_LATENCY_MS", "300".into())]).await;
    let started = Instant::now();
    assert_eq!(
        get(&slow.payments, &token).await.map_err(|s| s.code()),
        Err(Code::NotFound)
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    slow.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_drains_then_finishes_in_flight_calls() {
    let (running, token) = payments_with(&[
        ("DRAIN_DELAY_MS", "800".into()),
        ("FAULT_LATENCY_MS", "1000".into()),
    ])
    .await;
    let Running {
        payments,
        auth,
        _dir,
    } = running;
    let addr = payments.addr;
    // A call that will still be running when the stop begins.
    let in_flight = {
        let token = token.clone();
        let channel = testkit::channel(addr);
        tokio::spawn(async move {
            PaymentServiceClient::new(channel)
                .get_payment(testkit::authed(
                    GetPaymentRequest {
                        payment_id: "pay_x".into(),
                    },
                    &token,
                ))
                .await
                .map(|_| ())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(payments.stop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Health says NOT_SERVING at once, while calls are still answered.
    assert_eq!(health(addr).await, ServingStatus::NotServing as i32);
    let during_drain = PaymentServiceClient::new(testkit::channel(addr))
        .get_payment(testkit::authed(
            GetPaymentRequest {
                payment_id: "pay_y".into(),
            },
            &token,
        ))
        .await;
    assert_eq!(
        during_drain.map(|_| ()).map_err(|s| s.code()),
        Err(Code::NotFound),
        "served during the drain"
    );
    assert_eq!(
        in_flight.await.expect("join").map_err(|s| s.code()),
        Err(Code::NotFound),
        "the in-flight call finished normally"
    );
    stopping.await.expect("stopped");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
    auth.stop().await;
}
