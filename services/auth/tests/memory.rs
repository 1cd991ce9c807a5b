//! Peak resident memory of the auth binary under a burst of logins, straight
//! to its gRPC port (no gateway limits in front). Ignored by default: it
//! spawns the real binary and takes a few seconds. Run with
//! `cargo test -p auth --test memory -- --ignored --nocapture`;
//! `LOGINS` sets the burst size (default 40), `AUTH_BIN` another auth binary
//! to compare with (default: this crate's).
#![allow(clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use platform_proto::auth::v1::{
    LoginRequest, RegisterRequest, auth_service_client::AuthServiceClient,
};
use testkit::channel;
use tonic::Code;

const PASSWORD: &str = "correct horse battery";

/// Kills the child when the test ends, even by a panic.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port the kernel says is free now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// VmHWM (peak RSS) and VmRSS of `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "spawns the auth binary and measures its memory"]
async fn peak_memory_under_concurrent_logins() {
    let logins: usize = std::env::var("LOGINS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics_port) = (free_port(), free_port());
    let binary = std::env::var("AUTH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_auth").into());
    let child = Command::new(binary)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
        .env("DATA_DIR", dir.path())
        .env("RUST_LOG", "warn")
        .env("DRAIN_DELAY_MS", "0")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _process = Process(child);
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut auth = AuthServiceClient::new(channel(addr));

    // One account per login, registered one at a time, so neither the
    // per-account throttle nor a register burst shapes the measurement.
    let email = |i: usize| format!("memory{i}@example.com");
    let started = Instant::now();
    let mut i = 0;
    while i < logins {
        let registered = auth
            .register(RegisterRequest {
                email: email(i),
                password: PASSWORD.into(),
            })
            .await;
        match registered {
            Ok(_) => i += 1,
            Err(status) if status.code() == Code::Unavailable => {
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "auth never served"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("register: {status}"),
        }
    }
    let (idle_peak, idle) = memory_kib(pid);

    let started = Instant::now();
    let burst: Vec<_> = (0..logins)
        .map(|i| {
            let mut auth = auth.clone();
            let email = email(i);
            tokio::spawn(async move {
                auth.login(LoginRequest {
                    email,
                    password: PASSWORD.into(),
                })
                .await
                .map(|_| ())
                .map_err(|s| s.code())
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for call in burst {
        match call.await.unwrap() {
            Ok(()) => ok += 1,
            Err(Code::ResourceExhausted) => refused += 1,
            Err(code) => panic!("login: {code:?}"),
        }
    }
    let elapsed = started.elapsed();
    let (peak, after) = memory_kib(pid);
    println!(
        "{logins} concurrent logins: {ok} ok, {refused} RESOURCE_EXHAUSTED in {:.1} s; \
         VmRSS before the burst {} MiB, VmHWM before {} MiB, VmHWM {} MiB, VmRSS after {} MiB",
        elapsed.as_secs_f64(),
        idle / 1024,
        idle_peak / 1024,
        peak / 1024,
        after / 1024,
    );
}
