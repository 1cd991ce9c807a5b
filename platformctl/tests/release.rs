//! Releases end to end: `platformctl up` with real processes, steady load
//! through the gateway, and the release commands run as an operator would.
//! A healthy green goes through every step with no failed request; a green
//! that fails one call in five, or answers slowly, is rolled back by the
//! rollout itself; an unhealthy target is refused; a rollout whose
//! controller dies is either taken over (`resume`) or aborted by the gateway.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use common::{addr, http, split};

/// Offsets far from the other test files' (up.rs 14000, trace.rs 12500)
/// and from each other's ports (blue and green are 100 apart, metrics 1000).
const HEALTHY: i32 = 11000;
const BAD: i32 = 11250;
const SLOW: i32 = 11750;

fn ctl(data_dir: &Path, offset: i32, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_platformctl"));
    command
        .args(args)
        .env(
            "PLATFORM_ADMIN_URL",
            format!("http://{}", addr(offset, 9901)),
        )
        .env(
            "PLATFORM_GATEWAY_URL",
            format!("http://{}", addr(offset, 8080)),
        )
        .env("PLATFORM_DATA_DIR", data_dir)
        .env("PLATFORM_OPERATOR", "release-test")
        .env_remove("ADMIN_TOKEN");
    command
}

fn run(data_dir: &Path, offset: i32, args: &[&str]) -> Output {
    let output = ctl(data_dir, offset, args)
        .output()
        .expect("platformctl runs");
    eprintln!(
        "$ platformctl {}\n{}{}-> {:?}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        output.status.code()
    );
    output
}

/// A `platformctl` left running in the background (a rollout controller).
fn spawn(data_dir: &Path, offset: i32, args: &[&str]) -> std::process::Child {
    ctl(data_dir, offset, args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("platformctl starts")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn admin(data_dir: &Path, offset: i32, path: &str) -> serde_json::Value {
    let token = std::fs::read_to_string(data_dir.join("admin-token")).expect("token");
    let bearer = format!("Bearer {}", token.trim());
    let reply = http(
        addr(offset, 9901),
        "GET",
        path,
        &[("authorization", &bearer)],
        "",
    )
    .await;
    let (status, body) = split(&reply);
    assert_eq!(status, 200, "{reply}");
    serde_json::from_str(body).expect("json")
}

async fn weights(data_dir: &Path, offset: i32, service: &str) -> (u64, u64) {
    let routes = admin(data_dir, offset, "/admin/routes").await;
    let w = &routes["services"][service]["weights"];
    (
        w["blue"].as_u64().expect("blue"),
        w["green"].as_u64().expect("green"),
    )
}

/// Steady user traffic: reads and, every fifth request, an order; every
/// answer that is not a 200 is a failed request, with the time of the first.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    first_failure_ms: Arc<AtomicI64>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    async fn start(gateway: SocketAddr, email: &str) -> Load {
        let bearer = common::bearer(gateway, email).await;
        let (stop, ok, failed, first) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicI64::new(0)),
        );
        let task = {
            let (stop, ok, failed, first) =
                (stop.clone(), ok.clone(), failed.clone(), first.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    n += 1;
                    let headers = [
                        ("authorization", bearer.as_str()),
                        ("content-type", "application/json"),
                    ];
                    let reply = if n.is_multiple_of(5) {
                        let body = format!(
                            r#"{{"items":[{{"sku":"notebook-2","quantity":1,"unitPriceMinor":500}}],"currency":"EUR","paymentMethod":"pm_card_visa","requestId":"rel-{n}"}}"#
                        );
                        http(gateway, "POST", "/v1/orders", &headers, &body).await
                    } else {
                        http(gateway, "GET", "/v1/orders?pageSize=5", &headers, "").await
                    };
                    if split(&reply).0 == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                            first.store(platform_runtime::time::now_ms(), Ordering::Relaxed);
                        }
                        eprintln!("failed request: {}", reply.lines().next().unwrap_or(""));
                    }
                }
            })
        };
        Load {
            stop,
            ok,
            failed,
            first_failure_ms: first,
            task,
        }
    }

    /// Stops and returns (succeeded, failed, time of the first failure).
    async fn stop(self) -> (u64, u64, i64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.first_failure_ms.load(Ordering::Relaxed),
        )
    }
}

fn last_release(routes: &serde_json::Value) -> serde_json::Value {
    routes["releases"]
        .as_array()
        .and_then(|r| r.last())
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_rollout_goes_through_every_step_with_no_failed_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let _up = common::up_with(data, HEALTHY, &[], &["--green-version", "2.0.0"]);
    let load = Load::start(addr(HEALTHY, 8080), "healthy@example.com").await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Mirroring first, then three steps; every gate passes.
    let output = run(
        data,
        HEALTHY,
        &[
            "rollout",
            "orders",
            "--to",
            "green",
            "--mirror",
            "50",
            "--steps",
            "10,50,100",
            "--interval",
            "2s",
            "--min-requests",
            "5",
            "--max-p99-ms",
            "2000",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("mirroring (50% of reads) passed"),
        "{}",
        text(&output)
    );
    assert_eq!(weights(data, HEALTHY, "orders").await, (0, 100));
    let stats = admin(data, HEALTHY, "/admin/stats").await;
    let mirrored = stats["services"]["orders"]["green"]["mirror"]["total"]["requests"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        mirrored > 0,
        "reads were copied to green while mirroring: {stats}"
    );

    // status shows the split and the version of each color.
    let status = run(data, HEALTHY, &["status", "--output", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(
        status["services"]["orders"]["colors"]["green"]["weight"],
        100
    );
    assert_eq!(
        status["services"]["orders"]["colors"]["green"]["versions"][0],
        "2.0.0"
    );
    // ...and the schema and build each endpoint runs.
    let known = orders::MIGRATIONS.iter().map(|m| m.version).max();
    let green = &status["services"]["orders"]["colors"]["green"];
    assert_eq!(green["schemas"][0].as_i64(), known, "{green}");
    assert!(
        green["endpoints"][0]["build"]
            .as_str()
            .is_some_and(|b| b.starts_with(env!("CARGO_PKG_VERSION"))),
        "{green}"
    );

    // One call restores the previous weights.
    let output = run(data, HEALTHY, &["rollback", "orders"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(weights(data, HEALTHY, "orders").await, (100, 0));

    // Misuse is refused with a clear line and its exit code.
    let output = run(data, HEALTHY, &["switch", "orders", "--to", "blue"]);
    assert_eq!(output.status.code(), Some(4));
    assert!(
        text(&output).contains("blue already serves 100% of orders"),
        "{}",
        text(&output)
    );
    let output = run(data, HEALTHY, &["rollout", "billing", "--to", "green"]);
    assert_eq!(output.status.code(), Some(4));
    assert!(
        text(&output).contains("unknown service \"billing\""),
        "{}",
        text(&output)
    );
    let output = run(
        data,
        HEALTHY,
        &["rollout", "orders", "--to", "green", "--steps", "50,25"],
    );
    assert_eq!(
        output.status.code(),
        Some(2),
        "a bad step list is a usage error"
    );
    assert!(
        text(&output).contains("steps must increase"),
        "{}",
        text(&output)
    );
    let output = ctl(data, HEALTHY, &["status"])
        .env("PLATFORM_ADMIN_URL", "http://127.0.0.1:9")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    assert!(text(&output).contains("cannot reach"), "{}", text(&output));

    // A controller that dies is taken over by `resume`, which finishes the job.
    let mut controller = spawn(
        data,
        HEALTHY,
        &[
            "rollout",
            "orders",
            "--to",
            "green",
            "--steps",
            "10,100",
            "--interval",
            "2s",
            "--min-requests",
            "5",
            "--max-p99-ms",
            "2000",
            "--timeout",
            "30s",
        ],
    );
    wait_for(data, HEALTHY, |routes| {
        !routes["services"]["orders"]["rollout"].is_null()
    })
    .await;
    let output = run(data, HEALTHY, &["rollout", "orders", "--to", "green"]);
    assert_eq!(output.status.code(), Some(4), "a second rollout is refused");
    assert!(
        text(&output).contains("already running"),
        "{}",
        text(&output)
    );
    controller.kill().expect("kill -9 the controller");
    let _ = controller.wait();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let output = run(data, HEALTHY, &["resume", "orders"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("took the rollout of orders over"),
        "{}",
        text(&output)
    );
    assert_eq!(weights(data, HEALTHY, "orders").await, (0, 100));

    // A controller that dies and is not replaced: the gateway aborts the rollout.
    run(data, HEALTHY, &["rollback", "orders"]);
    let mut controller = spawn(
        data,
        HEALTHY,
        &[
            "rollout",
            "orders",
            "--to",
            "green",
            "--steps",
            "10,100",
            "--interval",
            "60s",
            "--timeout",
            "3s",
        ],
    );
    orders_green_at(data, HEALTHY, 10).await;
    controller.kill().expect("kill -9 the controller");
    let _ = controller.wait();
    let routes = wait_for(data, HEALTHY, |routes| {
        routes["services"]["orders"]["rollout"].is_null()
    })
    .await;
    assert_eq!(routes["services"]["orders"]["weights"]["green"], 0);
    let release = last_release(&routes);
    assert_eq!(release["outcome"], "timed out", "{release}");
    assert_eq!(release["ended_by"], "gateway-watchdog", "{release}");

    // pause holds a step; resume lets its controller go on; a gradual
    // abort walks back down a step per interval, taking the rollout over.
    let mut controller = spawn(
        data,
        HEALTHY,
        &[
            "rollout",
            "orders",
            "--to",
            "green",
            "--steps",
            "10,50,100",
            "--interval",
            "2s",
            "--min-requests",
            "5",
            "--max-p99-ms",
            "2000",
        ],
    );
    orders_green_at(data, HEALTHY, 10).await;
    assert_eq!(
        run(data, HEALTHY, &["pause", "orders"]).status.code(),
        Some(0)
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        weights(data, HEALTHY, "orders").await,
        (90, 10),
        "a paused rollout holds its step"
    );
    let output = run(data, HEALTHY, &["resume", "orders"]);
    assert!(text(&output).contains("resumed"), "{}", text(&output));
    orders_green_at(data, HEALTHY, 50).await;
    let output = run(data, HEALTHY, &["abort", "orders", "--gradual"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(weights(data, HEALTHY, "orders").await, (100, 0));
    let routes = admin(data, HEALTHY, "/admin/routes").await;
    let steps: Vec<u64> = routes["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .rev()
        .take(3)
        .map(|c| c["after"]["green"].as_u64().expect("green"))
        .collect();
    assert_eq!(steps, vec![0, 10, 50], "walked back 50 -> 10 -> 0");
    // Each step back lasts an interval (2 s), the last one included.
    let at: Vec<i64> = routes["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .rev()
        .take(3)
        .map(|c| c["at_ms"].as_i64().expect("at_ms"))
        .collect();
    assert!(
        at[0] - at[1] >= 1_900 && at[1] - at[2] >= 1_900,
        "each step back lasts an interval: {at:?}"
    );
    assert_eq!(
        controller.wait().expect("exit").code(),
        Some(7),
        "the first controller stops once taken over"
    );

    // A rollout whose `platformctl` was stopped with Ctrl-C is taken over
    // by `resume` at once, not left with nobody judging it.
    let mut interrupted = spawn(
        data,
        HEALTHY,
        &[
            "rollout",
            "orders",
            "--to",
            "green",
            "--steps",
            "10,50,100",
            "--interval",
            "2s",
            "--min-requests",
            "5",
            "--max-p99-ms",
            "2000",
        ],
    );
    orders_green_at(data, HEALTHY, 10).await;
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(interrupted.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let _ = interrupted.wait();
    let output = run(data, HEALTHY, &["resume", "orders"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("took the rollout of orders over"),
        "{}",
        text(&output)
    );
    assert_eq!(weights(data, HEALTHY, "orders").await, (0, 100));
    // Back to blue for what follows.
    assert_eq!(
        run(data, HEALTHY, &["switch", "orders", "--to", "blue"])
            .status
            .code(),
        Some(0)
    );

    // promote skips to 100% at once.
    let mut controller = spawn(
        data,
        HEALTHY,
        &[
            "rollout",
            "orders",
            "--to",
            "green",
            "--steps",
            "10,100",
            "--interval",
            "60s",
        ],
    );
    orders_green_at(data, HEALTHY, 10).await;
    assert_eq!(
        run(data, HEALTHY, &["promote", "orders"]).status.code(),
        Some(0)
    );
    assert_eq!(weights(data, HEALTHY, "orders").await, (0, 100));
    assert_eq!(
        controller.wait().expect("exit").code(),
        Some(0),
        "a promoted rollout succeeded"
    );

    let history = run(data, HEALTHY, &["history", "orders"]);
    let history = text(&history);
    for outcome in [
        "completed",
        "rolled back",
        "timed out",
        "aborted",
        "promoted",
    ] {
        assert!(
            history.contains(outcome),
            "history shows {outcome}:\n{history}"
        );
    }

    let (ok, failed, _) = load.stop().await;
    eprintln!("healthy release: {ok} requests succeeded, {failed} failed");
    assert!(ok > 100, "the load ran: {ok}");
    assert_eq!(
        failed, 0,
        "no user request failed during the healthy releases"
    );
}

/// Waits until green serves `share` percent of orders.
async fn orders_green_at(data: &Path, offset: i32, share: u64) {
    wait_for(data, offset, |routes| {
        routes["services"]["orders"]["weights"]["green"] == share
    })
    .await;
}

/// Polls the routing state until `done` holds (within a generous deadline).
async fn wait_for(
    data: &Path,
    offset: i32,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let routes = admin(data, offset, "/admin/routes").await;
        if done(&routes) {
            return routes;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting; routing: {routes}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_release_is_rolled_back_at_the_first_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let _up = common::up_with(
        data,
        BAD,
        &[],
        &[
            "--green-version",
            "2.0.0-bad",
            "--green-env",
            "FAULT_ERROR_RATE=0.2",
        ],
    );
    let load = Load::start(addr(BAD, 8080), "bad@example.com").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // A smoke check of 40 reads finds one call in five failing (it misses
    // with a probability of 0.8^40, about 1 in 7,500) and changes nothing.
    let checks = dir.path().join("smoke.json");
    std::fs::write(
        &checks,
        r#"[{"method": "GET", "path": "/v1/orders?pageSize=1", "auth": true, "expect": [200], "repeat": 40}]"#,
    )
    .expect("smoke file");
    let checks = checks.to_str().expect("utf-8");
    let output = run(
        data,
        BAD,
        &[
            "smoke",
            "orders",
            "--color",
            "green",
            "--smoke-file",
            checks,
        ],
    );
    assert_eq!(output.status.code(), Some(5), "{}", text(&output));
    assert!(
        text(&output)
            .contains("smoke check failed: GET /v1/orders?pageSize=1 through green answered 50"),
        "{}",
        text(&output)
    );
    let output = run(
        data,
        BAD,
        &["smoke", "orders", "--color", "blue", "--smoke-file", checks],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(
        weights(data, BAD, "orders").await,
        (100, 0),
        "smoke checks move no traffic"
    );
    let output = run(
        data,
        BAD,
        &[
            "rollout",
            "orders",
            "--to",
            "green",
            "--steps",
            "5,25,50,100",
            "--interval",
            "20s",
            "--min-requests",
            "20",
        ],
    );
    let said = text(&output);
    assert_eq!(output.status.code(), Some(6), "{said}");
    // The controller or the gateway's own test, whichever looks first.
    assert!(said.contains("step 1/4 (5%)"), "{said}");
    assert!(said.contains("error ratio"), "{said}");
    assert_eq!(
        weights(data, BAD, "orders").await,
        (100, 0),
        "traffic is back on blue"
    );
    let routes = admin(data, BAD, "/admin/routes").await;
    let release = last_release(&routes);
    assert_eq!(
        (release["outcome"].as_str(), release["peak_weight"].as_u64()),
        (Some("failed"), Some(5))
    );
    let first = release.clone();

    // A canary whose controller is gone (started through the admin API by
    // a controller that never looks) is still judged: the gateway's own
    // test rolls it back, long before the watchdog's timeout.
    let token = std::fs::read_to_string(data.join("admin-token")).expect("token");
    let plan = r#"{"to": "green", "steps": [5, 100], "interval_ms": 600000, "timeout_ms": 600000,
        "controller": "gone", "thresholds": {"max_error_ratio": 0.01, "max_p99_ms": 500,
        "max_relative_error": 2, "min_requests": 50}}"#;
    let reply = common::http(
        addr(BAD, 9901),
        "POST",
        "/admin/routes/orders/rollout",
        &[
            ("authorization", &format!("Bearer {}", token.trim())),
            ("content-type", "application/json"),
        ],
        plan,
    )
    .await;
    assert_eq!(split(&reply).0, 200, "{reply}");
    let routes = wait_for(data, BAD, |routes| {
        routes["services"]["orders"]["rollout"].is_null()
    })
    .await;
    assert_eq!(routes["services"]["orders"]["weights"]["green"], 0);
    let release = last_release(&routes);
    assert_eq!(
        (release["outcome"].as_str(), release["ended_by"].as_str()),
        (Some("failed"), Some("gateway-judge")),
        "{release}"
    );
    assert!(
        release["detail"]
            .as_str()
            .is_some_and(|d| d.contains("the gateway's own sequential test")),
        "{release}"
    );
    let release = first;

    // After the rollback, blue serves everything again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (ok, failed, first_failure_ms) = load.stop().await;
    let rolled_back_ms = release["ended_ms"].as_i64().expect("ended");
    let detect_ms = if failed > 0 {
        rolled_back_ms - first_failure_ms
    } else {
        0
    };
    eprintln!(
        "bad release: {failed} of {} user requests failed; first failed request -> rollback: {detect_ms} ms",
        ok + failed
    );
    assert!(
        failed < ok / 10,
        "only the canary's share failed: {failed} of {}",
        ok + failed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_release_fails_the_latency_test_and_an_unhealthy_target_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    // +50 ms on half of green's calls: a p99 far under the 500 ms limit,
    // which only the comparison with blue's latencies can catch.
    let _up = common::up_with(
        data,
        SLOW,
        &[],
        &[
            "--green-env",
            "FAULT_LATENCY_MS=50",
            "--green-env",
            "FAULT_LATENCY_SHARE=0.5",
        ],
    );
    let load = Load::start(addr(SLOW, 8080), "slow@example.com").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let output = run(
        data,
        SLOW,
        &[
            "rollout",
            "orders",
            "--to",
            "green",
            "--steps",
            "10,100",
            "--interval",
            "20s",
            "--min-requests",
            "10",
        ],
    );
    let said = text(&output);
    assert_eq!(output.status.code(), Some(6), "{said}");
    assert!(said.contains("latency: "), "{said}");
    assert!(said.contains("of calls slower than"), "{said}");
    assert_eq!(weights(data, SLOW, "orders").await, (100, 0));

    // A stopped green answers no health check: switch refuses it.
    let green = common::pid(data, "payments-green");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(green),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .expect("stop");
    let output = run(data, SLOW, &["switch", "payments", "--to", "green"]);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(green),
        nix::sys::signal::Signal::SIGCONT,
    )
    .expect("cont");
    assert_eq!(output.status.code(), Some(5), "{}", text(&output));
    assert!(
        text(&output).contains("green of payments is not healthy"),
        "{}",
        text(&output)
    );
    assert_eq!(weights(data, SLOW, "payments").await, (100, 0));

    let (ok, failed, _) = load.stop().await;
    eprintln!(
        "slow release: {failed} of {} user requests failed",
        ok + failed
    );
    assert_eq!(failed, 0, "slow answers are answers");
}

/// A Prometheus scraping the gateway every second, stopped when dropped.
struct Prometheus(std::process::Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const PROMQL: i32 = 13250;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_release_is_caught_through_prometheus() {
    if common::prometheus_missing() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    let _up = common::up_with(data, PROMQL, &[], &["--green-env", "FAULT_ERROR_RATE=0.2"]);
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gateway\n    static_configs:\n      - targets: ['{}']\n",
            addr(PROMQL, 9901)
        ),
    )
    .expect("config");
    let prometheus_addr = addr(PROMQL, 9090);
    let _prometheus = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prometheus_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(prometheus_addr)
        .await
        .is_err()
        || split(&http(prometheus_addr, "GET", "/-/ready", &[], "").await).0 != 200
    {
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus did not get ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let load = Load::start(addr(PROMQL, 8080), "promql@example.com").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A Prometheus that does not answer stops the rollout before any weight
    // moves (exit 3), and leaves no rollout behind.
    let nowhere = run(
        data,
        PROMQL,
        &[
            "rollout",
            "orders",
            "--to",
            "green",
            "--prometheus",
            "http://127.0.0.1:9",
        ],
    );
    let said = text(&nowhere);
    assert_eq!(nowhere.status.code(), Some(3), "{said}");
    assert!(said.contains("nothing was changed"), "{said}");
    assert_eq!(weights(data, PROMQL, "orders").await, (100, 0));
    assert!(
        admin(data, PROMQL, "/admin/routes").await["services"]["orders"]["rollout"].is_null(),
        "no rollout left running"
    );
    let url = format!("http://{prometheus_addr}");
    let output = run(
        data,
        PROMQL,
        &[
            "rollout",
            "orders",
            "--to",
            "green",
            "--steps",
            "5,25,50,100",
            "--interval",
            "20s",
            "--min-requests",
            "10",
            "--prometheus",
            &url,
        ],
    );
    let said = text(&output);
    assert_eq!(output.status.code(), Some(6), "{said}");
    assert!(said.contains("error ratio"), "{said}");
    assert_eq!(weights(data, PROMQL, "orders").await, (100, 0));
    // A query file that names no needed query is a usage error.
    let queries = dir.path().join("queries.json");
    std::fs::write(&queries, r#"{"requests": "vector(1)"}"#).expect("queries");
    let output = run(
        data,
        PROMQL,
        &[
            "rollout",
            "orders",
            "--to",
            "green",
            "--prometheus",
            &url,
            "--queries",
            queries.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains("has no \"server_errors\" query"),
        "{}",
        text(&output)
    );
    let (ok, failed, _) = load.stop().await;
    eprintln!(
        "bad release judged by Prometheus: {failed} of {} user requests failed",
        ok + failed
    );
}

const TEAM: i32 = 10_300;

/// The change that moved `service` to `share` (or started its rollout).
fn change_to(routes: &serde_json::Value, service: &str, share: u64) -> u64 {
    routes["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .rev()
        .find(|c| {
            c["service"] == service
                && c["after"]["green"] == share
                && c["action"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("rollout-"))
        })
        .and_then(|c| c["generation"].as_u64())
        .unwrap_or_else(|| panic!("no change of {service} to {share}%: {routes}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_of_two_services_moves_callee_first_fails_as_one_and_bakes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path();
    // Green orders fails one call in five while this file exists.
    let fault = dir.path().join("green-orders-fails");
    let fault_setting = format!("orders:FAULT_FILE={}", fault.display());
    let _up = common::up_with(
        data,
        TEAM,
        &[],
        &[
            "--green-env",
            "orders:FAULT_ERROR_RATE=0.2",
            "--green-env",
            &fault_setting,
        ],
    );
    let load = Load::start(addr(TEAM, 8080), "team@example.com").await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Orders needs the new payments: payments moves first at every step.
    // Orders fails its first step, and payments goes back with it.
    std::fs::write(&fault, "").expect("fault on");
    let output = run(
        data,
        TEAM,
        &[
            "rollout",
            "orders",
            "payments",
            "--to",
            "green",
            "--steps",
            "5,50,100",
            "--interval",
            "20s",
            "--min-requests",
            "20",
        ],
    );
    let said = text(&output);
    assert_eq!(output.status.code(), Some(6), "{said}");
    assert!(
        said.contains("release of payments, orders failed: orders: "),
        "{said}"
    );
    assert!(said.contains("every service rolled back"), "{said}");
    assert_eq!(weights(data, TEAM, "orders").await, (100, 0));
    assert_eq!(weights(data, TEAM, "payments").await, (100, 0));
    let routes = admin(data, TEAM, "/admin/routes").await;
    assert!(change_to(&routes, "payments", 5) < change_to(&routes, "orders", 5));
    let payments = routes["releases"]
        .as_array()
        .expect("releases")
        .iter()
        .rev()
        .find(|r| r["service"] == "payments")
        .expect("payments' release");
    assert_eq!(payments["outcome"], "failed", "{payments}");
    assert!(
        payments["detail"]
            .as_str()
            .is_some_and(|d| d.contains("the release failed: orders")),
        "{payments}"
    );

    // A regression after promotion, inside the bake window: both services
    // back to the old color at once.
    std::fs::remove_file(&fault).expect("fault off");
    let baking = ctl(
        data,
        TEAM,
        &[
            "rollout",
            "orders",
            "payments",
            "--to",
            "green",
            "--steps",
            "50,100",
            "--interval",
            "3s",
            "--min-requests",
            "10",
            "--bake",
            "60s",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("platformctl starts");
    wait_for(data, TEAM, |routes| {
        routes["services"]["orders"]["rollout"]["phase"] == "baking"
            && routes["services"]["payments"]["rollout"]["phase"] == "baking"
    })
    .await;
    assert!(
        change_to(&admin(data, TEAM, "/admin/routes").await, "payments", 50)
            < change_to(&admin(data, TEAM, "/admin/routes").await, "orders", 50)
    );
    std::fs::write(&fault, "").expect("fault on");
    let output = baking.wait_with_output().expect("the baking rollout");
    let said = text(&output);
    assert_eq!(output.status.code(), Some(6), "{said}");
    assert!(said.contains("baking: error ratio"), "{said}");
    assert!(said.contains("before promotion"), "{said}");
    assert_eq!(weights(data, TEAM, "orders").await, (100, 0));
    assert_eq!(weights(data, TEAM, "payments").await, (100, 0));

    // Healthy: every step, the bake, and both complete.
    std::fs::remove_file(&fault).expect("fault off");
    let output = run(
        data,
        TEAM,
        &[
            "rollout",
            "orders",
            "payments",
            "--to",
            "green",
            "--steps",
            "50,100",
            "--interval",
            "2s",
            "--min-requests",
            "10",
            "--bake",
            "2s",
        ],
    );
    let said = text(&output);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(
        said.contains("rollout of orders to green completed"),
        "{said}"
    );
    assert!(
        said.contains("rollout of payments to green completed"),
        "{said}"
    );
    assert_eq!(weights(data, TEAM, "orders").await, (0, 100));
    assert_eq!(weights(data, TEAM, "payments").await, (0, 100));
    let _ = load.stop().await;
}
