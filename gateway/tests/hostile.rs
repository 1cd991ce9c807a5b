//! Hostile and careless clients: each case is something cheap for anyone on
//! the internet that must not take the gateway down, mislead a release or
//! leak a secret. Every case is bounded to seconds. Attackers connect from
//! 127.0.0.2, ordinary clients from 127.0.0.1, so per-address limits apply
//! to each as they would to two hosts.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, Stack};
use testkit::raw::{frame, grpc as raw_grpc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A connection from another loopback address than the ordinary clients'.
async fn attacker(target: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.2:0".parse().expect("addr"))
        .expect("bind 127.0.0.2");
    socket.connect(target).await.expect("connect")
}

/// Whether the peer closed `stream` within `within` (EOF or reset), reading
/// and dropping whatever it sent first.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Everything `stream` answers until it closes or `within` passes.
async fn answer(stream: &mut TcpStream, within: Duration) -> String {
    let deadline = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                out.extend_from_slice(&buf[..n]);
                if out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}") {
                    break;
                }
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn green_server_errors(stats: &serde_json::Value) -> (u64, u64) {
    let total = &stats["services"]["orders"]["green"]["live"]["total"];
    (
        total["requests"].as_u64().unwrap_or(0),
        total["server_errors"].as_u64().unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_hold_only_their_own_share() {
    let stack = Stack::start_with(
        &[
            ("MAX_CONCURRENT_REQUESTS", "20"),
            ("MAX_CONCURRENT_REQUESTS_PER_CLIENT", "8"),
            ("BODY_READ_TIMEOUT_MS", "1500"),
        ],
        &[],
    )
    .await;
    let addr = stack.gateway.addr;
    // R.U.D.Y.: a body of 100 bytes announced, one sent, then nothing.
    let mut slow = Vec::new();
    for _ in 0..30 {
        let mut stream = attacker(addr).await;
        stream
            .write_all(
                b"POST /v1/auth/login HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
            )
            .await
            .expect("write");
        slow.push(stream);
    }
    let sent = Instant::now();
    let answers: Vec<_> = slow
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let text = answer(&mut stream, Duration::from_secs(5)).await;
                (text, sent.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Everyone else is served meanwhile, and the gateway stays ready.
    let mut client = stack.client().await;
    for _ in 0..30 {
        let reply = client.call("GET", "/v1/auth/jwks", &[], "").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let ready = stack.admin().await.call("GET", "/ready", &[], "").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    // The attacker's address got its share, refused beyond it at once; the
    // bodies it holds time out (408) and the share comes back.
    let (mut refused, mut timed_out) = (0, 0);
    for handle in answers {
        let (text, elapsed) = handle.await.expect("join");
        if text.starts_with("HTTP/1.1 429") {
            refused += 1;
            assert!(elapsed < Duration::from_millis(1000), "{elapsed:?}");
        } else if text.starts_with("HTTP/1.1 408") {
            timed_out += 1;
            assert!(text.contains("did not arrive"), "{text}");
        } else {
            panic!("neither 429 nor 408: {text:?}");
        }
    }
    assert_eq!((refused, timed_out), (30 - 8, 8));
    let mut again = attacker(addr).await;
    again
        .write_all(b"GET /v1/auth/jwks HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .expect("write");
    assert!(
        answer(&mut again, Duration::from_secs(2))
            .await
            .starts_with("HTTP/1.1 200")
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_gateway_says_so_in_readiness() {
    let stack = Stack::start_with(
        &[("MAX_CONCURRENT_REQUESTS", "2")],
        &[("FAULT_LATENCY_MS", "1500".to_owned())],
    )
    .await;
    let token = stack.login("full@example.com").await;
    let bearer = format!("Bearer {token}");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut client = stack.client().await;
        let bearer = bearer.clone();
        held.push(tokio::spawn(async move {
            client
                .call(
                    "GET",
                    "/v1/orders",
                    &[("authorization", &bearer), ("x-color", "green")],
                    "",
                )
                .await
                .status
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ready = stack.admin().await.call("GET", "/ready", &[], "").await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(ready.text().contains("overloaded"));
    for call in held {
        assert_eq!(call.await.expect("join"), 200);
    }
    let ready = stack.admin().await.call("GET", "/ready", &[], "").await;
    assert_eq!(ready.status, 200, "ready again once the slots are free");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_open_connections_are_closed() {
    let stack = Stack::start_with(
        &[
            ("HEADER_READ_TIMEOUT_MS", "500"),
            ("IDLE_TIMEOUT_MS", "700"),
        ],
        &[],
    )
    .await;
    let addr = stack.gateway.addr;
    let mut cases: Vec<(&str, TcpStream)> = Vec::new();
    for (name, sent) in [
        ("nothing", &b""[..]),
        ("PRI only", &b"PRI"[..]),
        ("half an HTTP/2 preface", &b"PRI * HTTP/2.0\r\n\r\nSM"[..]),
        (
            "a whole HTTP/2 preface",
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
        ),
        (
            "half a request head",
            &b"GET /v1/auth/jwks HTTP/1.1\r\nhost: gw\r\n"[..],
        ),
    ] {
        let mut stream = attacker(addr).await;
        stream.write_all(sent).await.expect("write");
        cases.push((name, stream));
    }
    // And a client that made one request and then says nothing more.
    let mut idle = attacker(addr).await;
    idle.write_all(b"GET /v1/auth/jwks HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .expect("write");
    assert!(
        answer(&mut idle, Duration::from_secs(2))
            .await
            .starts_with("HTTP/1.1 200")
    );
    cases.push(("idle after a request", idle));
    for (name, mut stream) in cases {
        assert!(
            closed_within(&mut stream, Duration::from_secs(4)).await,
            "{name}: still open"
        );
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_client() {
    let stack = Stack::start_with(&[("MAX_CONNECTIONS_PER_CLIENT", "10")], &[]).await;
    let addr = stack.gateway.addr;
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(attacker(addr).await);
    }
    let mut eleventh = attacker(addr).await;
    assert!(
        closed_within(&mut eleventh, Duration::from_secs(2)).await,
        "beyond the cap, closed at once"
    );
    let reply = stack
        .client()
        .await
        .call("GET", "/v1/auth/jwks", &[], "")
        .await;
    assert_eq!(reply.status, 200, "another address is served");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut later = attacker(addr).await;
    later
        .write_all(b"GET /v1/auth/jwks HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .expect("write");
    assert!(
        answer(&mut later, Duration::from_secs(2))
            .await
            .starts_with("HTTP/1.1 200")
    );
    stack.stop().await;
}

/// CPU time (user + system, in clock ticks) the process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = stat.rsplit_once(')').expect("comm").1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_accept_loop_waits() {
    let dir = tempfile::tempdir().expect("dir");
    let routes = dir.path().join("routes.json");
    std::fs::write(
        &routes,
        r#"{"services":{"auth":{"endpoints":{"blue":["127.0.0.1:1"],"green":["127.0.0.1:1"]},"weights":{"blue":100,"green":0}}}}"#,
    )
    .expect("routes");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    // A descriptor limit the connections below exhaust.
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 48 && exec '{}'",
            env!("CARGO_BIN_EXE_gateway")
        ))
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("ADMIN_ADDR", "127.0.0.1:0")
        .env("INTERNAL_ADDR", "127.0.0.1:0")
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("ROUTES_FILE", &routes)
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("gateway");
    let pid = child.id().expect("pid");
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let started = Instant::now();
    while TcpStream::connect(addr).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "gateway did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut held = Vec::new();
    for _ in 0..80 {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
        {
            held.push(stream);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks(pid) - before;
    // A spinning accept loop burns about 200 ticks in 2 s (100 per second).
    assert!(
        used < 40,
        "{used} ticks of CPU in 2 s while out of descriptors"
    );
    drop(held);
    let _ = child.start_kill();
    let _ = child.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_make_a_color_look_broken() {
    let stack = Stack::start_with(&[], &[("FAULT_LATENCY_MS", "400".to_owned())]).await;
    let token = stack.login("steer@example.com").await;
    let bearer = format!("Bearer {token}");
    let addr = stack.gateway.addr;
    let green = [("authorization", bearer.as_str()), ("x-color", "green")];
    let list = "/platform.orders.v1.OrderService/ListOrders";
    for garbage in [
        vec![0xff, 0xff, 0xff],           // shorter than a frame header
        frame(&[0xff, 0xff, 0xff, 0xff]), // not protobuf
        vec![0, 0, 0, 0, 9, 1, 2],        // declares 9 bytes, carries 2
        vec![7, 0, 0, 0, 0],              // an unknown flag
    ] {
        let (status, code, message) = raw_grpc(addr, list, &green, garbage).await;
        assert_eq!((status, code.as_str()), (200, "3"), "{message}");
    }
    let (_, code, _) = raw_grpc(addr, list, &green, vec![1, 0, 0, 0, 1, 0]).await;
    assert_eq!(code, "12", "compressed: UNIMPLEMENTED, said by the gateway");
    // The caller's own tiny deadline runs out on the slow green.
    let mut with_deadline = green.to_vec();
    with_deadline.push(("grpc-timeout", "50m"));
    let (_, code, _) = raw_grpc(addr, list, &with_deadline, frame(&[])).await;
    assert_eq!(code, "4", "DEADLINE_EXCEEDED to the caller");
    // None of it is green's fault.
    let stats = stack
        .admin()
        .await
        .call(
            "GET",
            "/admin/stats",
            &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
            "",
        )
        .await
        .json();
    let (requests, server_errors) = green_server_errors(&stats);
    assert_eq!(server_errors, 0, "{requests} calls reached green: {stats}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_need_their_own_credential() {
    // The default: nobody forces a color.
    let stack = Stack::start_with(&[("COLOR_OVERRIDE", "nobody")], &[]).await;
    let token = stack.login("preview@example.com").await;
    let bearer = format!("Bearer {token}");
    let reply = stack
        .client()
        .await
        .call(
            "GET",
            "/v1/orders",
            &[("authorization", &bearer), ("x-color", "green")],
            "",
        )
        .await;
    assert_eq!(reply.header("x-served-by"), "blue", "x-color ignored");
    stack.stop().await;

    let preview = "preview-credential-0123456789";
    let stack = Stack::start_with(
        &[
            ("COLOR_OVERRIDE", "preview-token"),
            ("PREVIEW_TOKEN", preview),
        ],
        &[],
    )
    .await;
    let token = stack.login("preview@example.com").await;
    let bearer = format!("Bearer {token}");
    let mut client = stack.client().await;
    for (credential, status) in [
        (None, 403),
        (Some("wrong-credential-0123456789"), 403),
        (Some(ADMIN_TOKEN), 403),
        (Some(preview), 200),
    ] {
        let mut headers = vec![("authorization", bearer.as_str()), ("x-color", "green")];
        if let Some(credential) = credential {
            headers.push(("x-color-token", credential));
        }
        let reply = client.call("GET", "/v1/orders", &headers, "").await;
        assert_eq!(reply.status, status, "{credential:?}: {}", reply.text());
        if status == 200 {
            assert_eq!(reply.header("x-served-by"), "green");
        }
    }
    // Operators learn it from the admin API.
    let said = stack
        .admin()
        .await
        .call(
            "GET",
            "/admin/preview",
            &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
            "",
        )
        .await
        .json();
    assert_eq!(said["token"], preview);
    stack.stop().await;

    // Without COLOR_OVERRIDE and PREVIEW_TOKEN, the safe default.
    let env = platform_runtime::Env::from_pairs([
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("ROUTES_FILE", "/nonexistent/routes.json"),
    ]);
    let config = gateway::config::GatewayConfig::from_env(&env).expect("config");
    assert_eq!(
        config.color_override,
        gateway::config::ColorOverride::Nobody
    );
    let mut env = env;
    env.set("PREVIEW_TOKEN", ADMIN_TOKEN);
    let refused = gateway::config::GatewayConfig::from_env(&env).expect_err("same as admin");
    assert!(refused.to_string().contains("PREVIEW_TOKEN"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_services_cannot_take_is_refused_at_the_edge() {
    let stack = Stack::start().await;
    let token = stack.login("headers@example.com").await;
    let mut client = stack.client().await;
    // A 20 KB request id is replaced, not passed on.
    let long_id = "r".repeat(20_000);
    let bearer = format!("Bearer {token}");
    let reply = client
        .call(
            "GET",
            "/v1/orders",
            &[("authorization", &bearer), ("x-request-id", &long_id)],
            "",
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.header("x-request-id").len() < 100);
    assert_eq!(reply.header("x-content-type-options"), "nosniff");
    // A 26 KiB token: 431 with a Status body, over REST and gRPC.
    let huge = format!("Bearer {}", "t".repeat(26 * 1024));
    let reply = client
        .call("GET", "/v1/auth/jwks", &[("authorization", &huge)], "")
        .await;
    assert_eq!(reply.status, 431, "{}", reply.text());
    assert_eq!(reply.json()["code"], 8);
    let (_, code, message) = raw_grpc(
        stack.gateway.addr,
        "/platform.auth.v1.AuthService/GetJwks",
        &[("authorization", &huge)],
        frame(&[]),
    )
    .await;
    assert_eq!(code, "8", "{message}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_admin_input_are_checked() {
    let stack = Stack::start().await;
    let addr = stack.gateway.addr;
    for (name, head) in [
        ("no Host", "GET /v1/auth/jwks HTTP/1.1\r\n\r\n"),
        (
            "two Host",
            "GET /v1/auth/jwks HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
        ),
    ] {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(head.as_bytes()).await.expect("write");
        let text = answer(&mut stream, Duration::from_secs(2)).await;
        assert!(text.starts_with("HTTP/1.1 400"), "{name}: {text}");
    }
    let mut admin = stack.admin().await;
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let reply = admin
        .call(
            "PUT",
            "/admin/routes/orders/weights",
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            r#"{"blue": 4294967295, "green": 101}"#,
        )
        .await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let docs = stack.client().await.call("GET", "/docs", &[], "").await;
    assert!(
        docs.header("content-security-policy")
            .contains("default-src"),
        "{:?}",
        docs.headers
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_reflection_lists_only_public_methods() {
    let stack = Stack::start().await;
    let grpcurl = |addr: SocketAddr, args: &[&str]| {
        let output = std::process::Command::new("grpcurl")
            .arg("-plaintext")
            .arg(addr.to_string())
            .args(args)
            .output()
            .expect("grpcurl (scripts/install-tools.sh installs it)");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let public = grpcurl(
        stack.gateway.addr,
        &["describe", "platform.payments.v1.PaymentService"],
    );
    assert!(public.contains("GetPayment"), "{public}");
    assert!(
        !public.contains("rpc Charge"),
        "internal methods hidden: {public}"
    );
    let auth = grpcurl(
        stack.gateway.addr,
        &["describe", "platform.auth.v1.AuthService"],
    );
    assert!(
        auth.contains("rpc Login") && !auth.contains("rpc IssueServiceToken"),
        "{auth}"
    );
    let internal = grpcurl(
        stack.gateway.internal_addr,
        &["describe", "platform.payments.v1.PaymentService"],
    );
    assert!(internal.contains("Charge"), "{internal}");
    // The health the gateway answers is listed, so grpcurl can call it.
    for addr in [stack.gateway.addr, stack.gateway.internal_addr] {
        let listed = grpcurl(addr, &["list"]);
        assert!(listed.contains("grpc.health.v1.Health"), "{listed}");
    }
    let health = grpcurl(stack.gateway.addr, &["grpc.health.v1.Health/Check"]);
    assert!(health.contains("SERVING"), "{health}");
    stack.stop().await;
}
