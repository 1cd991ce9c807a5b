//! `capacity`: what the platform costs per request and where it stops
//! keeping up, on this machine. One platform (`platformctl up`, release
//! build, the per-client rate limit off) takes k6's user journeys
//! (`load/scenarios/steady.js`) at rising constant rates; at each step the
//! CPU time of every process (from /proc) and the calls each service served
//! (from its own counters) give CPU per 1,000 calls/s, and k6's per-request
//! output gives latency and failures, all over the same measured window. The knee is the first step where p99 passes 3x the lowest
//! p99 of the steps before it, more than 1% fail, or less than 90% of the
//! offered rate gets through. A second run shows a service bound by a slow downstream: orders
//! with payments 200 ms slower, where CPU stays flat while calls in flight
//! pile up. Writes a Markdown report with SVG plots.
//!
//! Run it with `bash load/capacity.sh`.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use load_lab::platform::{self, Platform};
use load_lab::procs::{self, Counters};
use load_lab::{http, k6, plot, writer};

const SERVICES: [&str; 4] = ["auth", "orders", "payments", "notifications"];
const GROUPS: [&str; 5] = ["gateway", "auth", "orders", "payments", "notifications"];

#[derive(Debug, Parser)]
#[command(
    name = "capacity",
    about = "CPU per request rate, latency against load, the knee; a report with plots"
)]
struct Args {
    #[arg(long, default_value = "target/release/platformctl")]
    platformctl: PathBuf,
    #[arg(long, default_value = "load/scenarios/steady.js")]
    script: PathBuf,
    #[arg(long, default_value = "load/reports")]
    out_dir: PathBuf,
    /// Offered user journeys per second, step by step (stops after the knee).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "25,50,100,200,300,400,600,800,1000,1300,1600"
    )]
    rates: Vec<u32>,
    /// Seconds measured at each step (after a short warm-up).
    #[arg(long, default_value_t = 12)]
    seconds: u64,
    /// The rate of the downstream-bound comparison.
    #[arg(long, default_value_t = 100)]
    bound_rate: u32,
    #[arg(long, default_value_t = 12_025, allow_hyphen_values = true)]
    port_offset: i32,
}

/// One measured step.
#[derive(Debug, Clone, Default)]
struct Step {
    offered: u32,
    /// Journeys per second k6 completed, and HTTP requests per second.
    journeys: f64,
    requests: f64,
    failed: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    /// CPU cores busy per process group, and calls per second it served.
    cores: Counters,
    calls: Counters,
    /// Mean calls in flight in orders, sampled during the step.
    orders_in_flight: f64,
}

impl Step {
    fn cores_per_1000(&self, group: &str) -> Option<f64> {
        let calls = self.calls.get(group).copied().unwrap_or(0.0);
        (calls > 1.0).then(|| self.cores.get(group).copied().unwrap_or(0.0) / calls * 1000.0)
    }
}

struct Layout {
    data_dir: PathBuf,
    offset: i32,
}

impl Layout {
    fn pid_files(&self, group: &str) -> Vec<PathBuf> {
        let run = self.data_dir.join("run");
        match group {
            "gateway" => vec![run.join("gateway.pid")],
            service => ["blue", "green"]
                .iter()
                .map(|c| run.join(format!("{service}-{c}.pid")))
                .collect(),
        }
    }

    fn metrics_ports(&self, service: &str) -> Vec<u16> {
        let index = SERVICES.iter().position(|s| *s == service).unwrap_or(0) as i32;
        [51_051, 51_151]
            .iter()
            .map(|base| u16::try_from(base + index + self.offset).unwrap_or(0))
            .collect()
    }

    fn admin_port(&self) -> u16 {
        u16::try_from(9901 + self.offset).unwrap_or(0)
    }
}

/// CPU seconds and served calls of every group, now.
async fn snapshot(layout: &Layout, ticks: f64) -> anyhow::Result<(Counters, Counters)> {
    let mut cpu = Counters::new();
    let mut calls = Counters::new();
    for group in GROUPS {
        let mut spent = 0.0;
        for pid_file in layout.pid_files(group) {
            spent += procs::cpu_seconds(&pid_file, ticks)?;
        }
        cpu.insert(group.to_owned(), spent);
    }
    let gateway = procs::metrics(layout.admin_port()).await?;
    calls.insert(
        "gateway".into(),
        procs::sum_metric(&gateway, "http_server_request_duration_seconds_count", &[]),
    );
    for service in SERVICES {
        let mut served = 0.0;
        for port in layout.metrics_ports(service) {
            let page = procs::metrics(port).await?;
            served += procs::sum_metric(
                &page,
                "rpc_server_requests_total",
                &["grpc.health.v1.Health"],
            );
        }
        calls.insert(service.to_owned(), served);
    }
    Ok((cpu, calls))
}

async fn orders_in_flight(layout: &Layout) -> f64 {
    let mut total = 0.0;
    for port in layout.metrics_ports("orders") {
        if let Ok(page) = procs::metrics(port).await {
            total += procs::sum_metric(
                &page,
                "rpc_server_in_flight_requests",
                &["grpc.health.v1.Health"],
            );
        }
    }
    total
}

/// Runs k6 at `rate` and measures the middle of the run.
async fn step(
    platform: &Platform,
    layout: &Layout,
    args: &Args,
    rate: u32,
    work: &Path,
) -> anyhow::Result<Step> {
    const USERS: u32 = 20;
    let ticks = procs::clock_ticks();
    let csv = work.join(format!("k6-{rate}.csv"));
    let warm = 3;
    let duration = args.seconds + warm + 2;
    let log = std::fs::File::create(work.join(format!("k6-{rate}.log")))?;
    let mut k6 = tokio::process::Command::new("k6")
        .args(["run", "--quiet", "--no-usage-report", "--out"])
        .arg(format!("csv={}", csv.display()))
        .arg(&args.script)
        .env("K6_CSV_TIME_FORMAT", "unix_milli")
        .env("BASE_URL", platform.gateway_url())
        .env("RATE", rate.to_string())
        .env("DURATION", format!("{duration}s"))
        .env("USERS", USERS.to_string())
        .env("STREAMS", "0")
        // The thresholds are the steady scenario's; here they only inform.
        .env("P95_MS", "100000")
        .env("P99_MS", "100000")
        .env("MAX_ERROR_RATE", "1")
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("cannot start k6 (run scripts/install-tools.sh)")?;
    // The scenario starts after k6's setup signs its users up (two requests
    // each): wait until the gateway has seen more than those, then for the
    // warm-up; only then measure.
    let since = Instant::now();
    let (_, first) = snapshot(layout, ticks).await?;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (_, now) = snapshot(layout, ticks).await?;
        if now["gateway"] - first["gateway"] > f64::from(2 * USERS + 10) {
            break;
        }
        if since.elapsed() > Duration::from_secs(120) {
            bail!("no traffic reached the gateway within 120 s at {rate}/s");
        }
    }
    tokio::time::sleep(Duration::from_secs(warm)).await;
    let started = Instant::now();
    let from_ms = writer::now_ms();
    let (cpu0, calls0) = snapshot(layout, ticks).await?;
    let mut in_flight = Vec::new();
    while started.elapsed() < Duration::from_secs(args.seconds) {
        in_flight.push(orders_in_flight(layout).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (cpu1, calls1) = snapshot(layout, ticks).await?;
    let to_ms = writer::now_ms();
    let elapsed = started.elapsed().as_secs_f64();
    let status = k6.wait().await?;
    if !status.success() {
        eprintln!("note: k6 at {rate}/s exited with {status} (its thresholds inform only here)");
    }
    // Latency, failures and rates of the measured window only.
    let text =
        std::fs::read_to_string(&csv).with_context(|| format!("no k6 output {}", csv.display()))?;
    let window = (from_ms, to_ms);
    let csv = k6::Csv::parse(&text)?;
    let mut durations = csv.samples("users", "http_req_duration", window)?;
    durations.sort_by(f64::total_cmp);
    let failed = csv.samples("users", "http_req_failed", window)?;
    let journeys = csv.samples("users", "iterations", window)?.len();
    let quantile = |q: f64| {
        let i = ((durations.len() as f64 * q).ceil() as usize).clamp(1, durations.len().max(1)) - 1;
        durations.get(i).copied().unwrap_or(0.0)
    };
    let per_second =
        |m: Counters| -> Counters { m.into_iter().map(|(k, v)| (k, v / elapsed)).collect() };
    let window_s = (to_ms - from_ms) as f64 / 1000.0;
    Ok(Step {
        offered: rate,
        journeys: journeys as f64 / window_s,
        requests: durations.len() as f64 / window_s,
        failed: failed.iter().sum::<f64>() / failed.len().max(1) as f64,
        p50_ms: quantile(0.50),
        p95_ms: quantile(0.95),
        p99_ms: quantile(0.99),
        cores: per_second(procs::delta(&cpu1, &cpu0)),
        calls: per_second(procs::delta(&calls1, &calls0)),
        orders_in_flight: in_flight.iter().sum::<f64>() / in_flight.len().max(1) as f64,
    })
}

/// Why `step` is past the knee, if it is; `calm` is the lowest p99 of the
/// steps before it (the first step's may carry a cold start).
fn past_knee(step: &Step, calm: f64) -> Option<String> {
    if step.failed > 0.01 {
        return Some(format!("{:.1}% of requests failed", step.failed * 100.0));
    }
    if step.journeys < 0.9 * f64::from(step.offered) {
        return Some(format!(
            "only {:.0} of {} journeys/s got through",
            step.journeys, step.offered
        ));
    }
    if step.p99_ms > 3.0 * calm.max(1.0) {
        return Some(format!(
            "p99 {:.0} ms, over 3x the lowest before it ({calm:.1} ms)",
            step.p99_ms
        ));
    }
    None
}

async fn start(
    args: &Args,
    work: &Path,
    green_env: Vec<String>,
) -> anyhow::Result<(Platform, Layout)> {
    let config = platform::Config {
        platformctl: args.platformctl.clone(),
        port_offset: args.port_offset,
        blue_version: "1.0.0".into(),
        green_version: "1.0.0".into(),
        green_env,
        // k6 is one client address: per-client limits would measure k6.
        extra_args: [
            "RATE_LIMIT_PER_SECOND=0",
            "MAX_CONCURRENT_REQUESTS_PER_CLIENT=100000",
            "MAX_CONNECTIONS_PER_CLIENT=100000",
        ]
        .into_iter()
        .flat_map(|setting| ["--gateway-env".to_owned(), setting.to_owned()])
        .collect(),
        ready_timeout: Duration::from_secs(120),
    };
    let platform = Platform::start(&config, work).await?;
    let layout = Layout {
        data_dir: platform.data_dir.clone(),
        offset: args.port_offset,
    };
    Ok((platform, layout))
}

fn report(args: &Args, steps: &[Step], knee: Option<(usize, String)>, bound: &[Step; 2]) -> String {
    let mut out = String::from("# Capacity\n\n");
    out.push_str(&format!(
        "Generated by `bash load/capacity.sh` (the `capacity` binary of `load/lab`) on one machine with {} CPU cores, \
         where k6, the gateway and all eight service processes share the cores: the absolute rates are this \
         machine's, the ratios (CPU per call, where latency turns) are what carries over.\n\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    out.push_str(&format!(
        "Each step: k6's user journeys (`load/scenarios/steady.js`: 55% list orders, 20% create (half then read it), \
         10% create and cancel, 15% list notifications) at a constant arrival rate, {} s measured after a warm-up. \
         Latency, failures and rates come from k6's per-request output (the scenario's requests, sign-ups left out), \
         CPU is user + system time from /proc, calls are each process's own request counters (health checks left \
         out), all over the same measured window.\n\n",
        args.seconds
    ));
    out.push_str("| offered journeys/s | achieved | HTTP req/s | failed | p50 ms | p95 ms | p99 ms | gateway cores | auth | orders | payments | notifications |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for s in steps {
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.2}% | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            s.offered,
            s.journeys,
            s.requests,
            s.failed * 100.0,
            s.p50_ms,
            s.p95_ms,
            s.p99_ms,
            s.cores.get("gateway").copied().unwrap_or(0.0),
            s.cores.get("auth").copied().unwrap_or(0.0),
            s.cores.get("orders").copied().unwrap_or(0.0),
            s.cores.get("payments").copied().unwrap_or(0.0),
            s.cores.get("notifications").copied().unwrap_or(0.0),
        ));
    }
    match &knee {
        Some((i, why)) => out.push_str(&format!(
            "\n**Knee: between {} and {} journeys/s offered** ({why} at {}).\n",
            steps[i.saturating_sub(1)].offered,
            steps[*i].offered,
            steps[*i].offered
        )),
        None => out.push_str(
            "\nNo knee within the rates tried: the platform kept up with the last one.\n",
        ),
    }
    // CPU per 1,000 calls/s, from the steps before the knee (the cost of a
    // call, not of queueing).
    let usable: Vec<&Step> = steps
        .iter()
        .take(knee.as_ref().map_or(steps.len(), |(i, _)| *i).max(1))
        .collect();
    out.push_str("\n![latency against load](capacity-latency.svg)\n\n![CPU against load](capacity-cpu.svg)\n\n## CPU per 1,000 calls/s and the HPA targets\n\n");
    out.push_str("| process | calls/s at the last step before the knee | cores per 1,000 calls/s (median of the steps before the knee) | CPU request in the chart | calls/s one pod serves at 70% of it |\n|---|---|---|---|---|\n");
    for group in GROUPS {
        let mut per: Vec<f64> = usable
            .iter()
            .filter_map(|s| s.cores_per_1000(group))
            .collect();
        per.sort_by(f64::total_cmp);
        let median = per.get(per.len() / 2).copied().unwrap_or(0.0);
        let calls = usable
            .last()
            .and_then(|s| s.calls.get(group))
            .copied()
            .unwrap_or(0.0);
        let request = if group == "gateway" { 0.2 } else { 0.1 };
        if median <= 0.0 {
            out.push_str(&format!(
                "| {group} | {calls:.0} | not exercised by these journeys (called at sign-up and log-in: password hashing, CPU-bound) | {:.0}m | - |\n",
                request * 1000.0
            ));
            continue;
        }
        let pod = 0.7 * request / median * 1000.0;
        out.push_str(&format!(
            "| {group} | {calls:.0} | {median:.3} | {:.0}m | {pod:.0} |\n",
            request * 1000.0
        ));
    }
    out.push_str(
        "\nThe charts request 100m CPU per service pod and 200m per gateway pod and scale at 70% of it \
         (`autoscaling.targetCPUUtilizationPercentage`): \
         the last column is the call rate at which one pod reaches that target, from the cost above. \
         `autoscaling.targetRequestsPerSecond` in `helm/values/<service>.yaml` (and in the gateway chart) is set \
         a little under it, so the request-rate metric and CPU agree on when to add a pod; it is used once \
         `autoscaling.adapterMetrics=true` says a metrics adapter serves it.\n",
    );
    out.push_str(&format!(
        "\n## When CPU autoscaling does not help: a slow downstream\n\n\
         The same journeys at {} /s, once as is and once with payments 200 ms slower (green payments with \
         `FAULT_LATENCY_MS=200`, switched live). Orders waits on payments for every order it creates:\n\n\
         | run | orders cores | orders calls/s | orders calls in flight (mean) | p95 ms | p99 ms |\n|---|---|---|---|---|---|\n",
        args.bound_rate
    ));
    for (name, s) in [
        ("payments as is", &bound[0]),
        ("payments +200 ms", &bound[1]),
    ] {
        out.push_str(&format!(
            "| {name} | {:.3} | {:.0} | {:.2} | {:.0} | {:.0} |\n",
            s.cores.get("orders").copied().unwrap_or(0.0),
            s.calls.get("orders").copied().unwrap_or(0.0),
            s.orders_in_flight,
            s.p95_ms,
            s.p99_ms
        ));
    }
    let (a, b) = (&bound[0], &bound[1]);
    out.push_str(&format!(
        "\nOrders' CPU barely moves ({:.3} -> {:.3} cores) while its calls in flight grow {:.0}x: a CPU target \
         would never add a pod, yet each pod holds many more open calls (and their memory, connections and \
         database sessions). For a service bound by a downstream or by I/O, scale on concurrency, calls in \
         flight per pod (Little's law: in flight = rate x latency), or on request rate when the per-pod \
         rate is known; and know that more pods of orders do not make payments faster: the fix for a slow \
         downstream is there (or a timeout and a fallback here). The service chart offers both: \
         `autoscaling.targetInFlightRequests` (pods metric `rpc_server_in_flight_requests`) and \
         `autoscaling.targetRequestsPerSecond` (`rpc_server_requests_per_second`), served by the \
         prometheus-adapter rules in `helm/prometheus-adapter-values.yaml`. CPU scaling fits a service \
         whose cost is its own computation: the gateway (parsing, transcoding, TLS) and auth (password \
         hashing at sign-up and log-in).\n",
        a.cores.get("orders").copied().unwrap_or(0.0),
        b.cores.get("orders").copied().unwrap_or(0.0),
        b.orders_in_flight / a.orders_in_flight.max(0.01)
    ));
    out
}

async fn run(args: &Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out_dir)?;
    let work = tempfile::Builder::new().prefix("capacity").tempdir()?;
    let (platform, layout) = start(args, work.path(), Vec::new()).await?;
    let mut steps: Vec<Step> = Vec::new();
    let mut knee = None;
    for &rate in &args.rates {
        let measured = step(&platform, &layout, args, rate, work.path()).await?;
        eprintln!(
            "{rate:>5}/s offered: {:.0} journeys/s, {:.0} req/s, {:.2}% failed, p99 {:.1} ms, gateway {:.2} cores",
            measured.journeys,
            measured.requests,
            measured.failed * 100.0,
            measured.p99_ms,
            measured.cores.get("gateway").copied().unwrap_or(0.0)
        );
        let calm = steps.iter().map(|s| s.p99_ms).reduce(f64::min);
        let why = calm.and_then(|calm| past_knee(&measured, calm));
        steps.push(measured);
        if let Some(why) = why {
            knee = Some((steps.len() - 1, why));
            break;
        }
    }
    platform.stop().await?;

    // The downstream-bound comparison, on a fresh platform.
    let work2 = tempfile::Builder::new().prefix("capacity").tempdir()?;
    let (platform, layout) = start(args, work2.path(), vec!["FAULT_LATENCY_MS=200".into()]).await?;
    let normal = step(&platform, &layout, args, args.bound_rate, work2.path()).await?;
    let switched = http::request(
        platform.admin_port,
        "PUT",
        "/admin/routes/payments/weights",
        Some(&platform.token),
        r#"{"blue":0,"green":100}"#,
        Duration::from_secs(5),
    )
    .await?;
    anyhow::ensure!(
        switched.status == 200,
        "switching payments: {}",
        switched.body
    );
    let slow = step(&platform, &layout, args, args.bound_rate, work2.path()).await?;
    platform.stop().await?;

    let latency: Vec<(String, Vec<(f64, f64)>)> = [("p50", 0), ("p95", 1), ("p99", 2)]
        .iter()
        .map(|(name, i)| {
            let points = steps
                .iter()
                .map(|s| (s.journeys, [s.p50_ms, s.p95_ms, s.p99_ms][*i]))
                .collect();
            ((*name).to_owned(), points)
        })
        .collect();
    let knee_at = knee.as_ref().map(|(i, _)| ("knee", steps[*i].journeys));
    plot::lines(
        &args.out_dir.join("capacity-latency.svg"),
        "Latency against load",
        ("journeys per second achieved", "milliseconds"),
        &latency,
        knee_at,
    )?;
    let cpu: Vec<(String, Vec<(f64, f64)>)> = GROUPS
        .iter()
        .map(|g| {
            let points = steps
                .iter()
                .map(|s| (s.journeys, s.cores.get(*g).copied().unwrap_or(0.0)))
                .collect();
            ((*g).to_owned(), points)
        })
        .collect();
    plot::lines(
        &args.out_dir.join("capacity-cpu.svg"),
        "CPU against load",
        ("journeys per second achieved", "CPU cores busy"),
        &cpu,
        knee_at,
    )?;
    let path = args.out_dir.join("capacity.md");
    std::fs::write(&path, report(args, &steps, knee, &[normal, slow]))?;
    eprintln!("report: {}", path.display());
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
