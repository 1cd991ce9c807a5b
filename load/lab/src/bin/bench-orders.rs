//! `bench-orders`: what reading and creating an order costs, for several
//! platformctl binaries side by side (a frozen "before" build and the
//! current one), on SQLite and on PostgreSQL. For each binary and backend, a
//! fresh platform (`platformctl up`, rate limits and per-client limits off,
//! default logging) takes closed loops of GET and POST through the gateway
//! (wrk) and of GetOrder and CreateOrder straight to orders (h2load), then
//! open loops at shares of each measured throughput; CPU per call of every
//! process from /proc, resident memory idle and at load. Writes a Markdown
//! report with one table per backend.
//!
//! Run it with `bash load/bench-orders.sh`.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use load_lab::orders_bench::{self, Call, Closed, Memory, Open, Report};
use load_lab::platform::{self, Platform};
use load_lab::postgres::Cluster;
use load_lab::usage::{self, PerProcess, Processes};
use load_lab::{grpc, h2load, http, open_loop, wrk};
use tokio::sync::oneshot;

#[derive(Debug, Parser)]
#[command(
    name = "bench-orders",
    about = "GET and POST of orders, through the gateway and direct, for several binaries side by side"
)]
struct Args {
    /// LABEL=PATH of a platformctl binary; repeat it, the first is the baseline.
    #[arg(long = "platformctl", required = true)]
    binaries: Vec<String>,
    /// Backends to run on: sqlite, postgres.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    backends: Vec<String>,
    #[arg(long, default_value = "load/reports/orders-bench.md")]
    report: PathBuf,
    #[arg(long, default_value = "load/wrk")]
    scripts: PathBuf,
    #[arg(long, default_value_t = 13_625, allow_hyphen_values = true)]
    port_offset: i32,
    /// Connections of every closed loop.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds of every closed-loop phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds of every open-loop phase.
    #[arg(long, default_value_t = 10)]
    open_seconds: u64,
    /// Shares of the closed loop's throughput the open loops offer.
    #[arg(long, value_delimiter = ',', default_value = "0.5,0.8")]
    shares: Vec<f64>,
    /// Seconds of unmeasured reads before the first phase.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Orders created to read.
    #[arg(long, default_value_t = 16)]
    orders: usize,
}

/// A binary under test.
#[derive(Debug, Clone)]
struct Binary {
    label: String,
    path: PathBuf,
}

fn binaries(specs: &[String]) -> anyhow::Result<Vec<Binary>> {
    specs
        .iter()
        .map(|spec| {
            let (label, path) = spec
                .split_once('=')
                .with_context(|| format!("--platformctl {spec}: expected LABEL=PATH"))?;
            let path = PathBuf::from(path);
            anyhow::ensure!(path.is_file(), "{} is not a file", path.display());
            Ok(Binary {
                label: label.to_owned(),
                path,
            })
        })
        .collect()
}

/// What the phases need once the platform serves.
struct Fixture {
    token: String,
    order_ids: Vec<String>,
    gateway_port: u16,
    orders_port: u16,
    work: PathBuf,
}

async fn set_up(platform: &Platform, args: &Args, work: &Path) -> anyhow::Result<Fixture> {
    let port = platform.gateway_port;
    // A second user takes no load: the reads and writes of one user stay apart from another's.
    load_lab::drills::sign_up(port, "bench-other@example.com").await?;
    let token = load_lab::drills::sign_up(port, "bench@example.com").await?;
    let mut order_ids = Vec::new();
    for k in 0..args.orders.max(1) {
        let body = format!(
            r#"{{"items":[{{"sku":"sticker-1","quantity":1,"unitPriceMinor":100}}],"currency":"EUR","paymentMethod":"pm_card_visa","requestId":"setup-{k}"}}"#
        );
        let reply = http::request(
            port,
            "POST",
            "/v1/orders",
            Some(&token),
            &body,
            Duration::from_secs(10),
        )
        .await?;
        anyhow::ensure!(
            reply.status == 200,
            "create order: {} {}",
            reply.status,
            reply.body
        );
        let order: serde_json::Value = serde_json::from_str(&reply.body)?;
        order_ids.push(order["id"].as_str().context("no order id")?.to_owned());
    }
    let orders_port =
        u16::try_from(50_052 + args.port_offset).context("--port-offset too large")?;
    // h2load cannot see a gRPC status: one real call of each kind first.
    let mut conn = grpc::Connection::open(orders_port).await?;
    let get = conn
        .call(grpc::GET_ORDER, &token, grpc::get_order(&order_ids[0]))
        .await?;
    let create = conn
        .call(grpc::CREATE_ORDER, &token, grpc::create_order(""))
        .await?;
    anyhow::ensure!(
        get == 0 && create == 0,
        "direct calls answered gRPC status {get} and {create}"
    );
    std::fs::write(work.join("get-order.bin"), grpc::get_order(&order_ids[0]))?;
    std::fs::write(work.join("create-order.bin"), grpc::create_order(""))?;
    Ok(Fixture {
        token,
        order_ids,
        gateway_port: port,
        orders_port,
        work: work.to_path_buf(),
    })
}

/// Samples every process's RSS every 250 ms until told to stop; the peaks.
fn sample_rss(processes: Processes) -> (oneshot::Sender<()>, tokio::task::JoinHandle<PerProcess>) {
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let mut peak = PerProcess::new();
        loop {
            if let Ok(now) = processes.rss_mib() {
                peak = usage::max_of(&peak, &now);
            }
            tokio::select! {
                _ = &mut stopped => return peak,
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    });
    (stop, task)
}

/// The closed-loop tool's figures: requests, req/s, p50, p99, failed.
fn closed_loop(
    args: &Args,
    fixture: &Fixture,
    call: Call,
    tag: &str,
    seconds: u64,
) -> anyhow::Result<wrk::Outcome> {
    let auth = format!("authorization: Bearer {}", fixture.token);
    let duration = Duration::from_secs(seconds);
    let gateway = format!("http://127.0.0.1:{}", fixture.gateway_port);
    let direct = format!("http://127.0.0.1:{}", fixture.orders_port);
    let wrk_run = |script: &str, url: String, script_args: Vec<String>| wrk::Run {
        url,
        connections: args.connections,
        threads: 2,
        duration,
        script: Some(args.scripts.join(script)),
        script_args,
        headers: vec![auth.clone()],
    };
    let h2load_run = |path: &str, data: &str| h2load::Run {
        url: format!("{direct}{path}"),
        connections: args.connections,
        threads: 2,
        duration,
        data: fixture.work.join(data),
        headers: vec![
            "content-type: application/grpc".into(),
            "te: trailers".into(),
            auth.clone(),
        ],
        log: fixture.work.join("h2load.log"),
    };
    match call {
        Call::GatewayGet => wrk::run(&wrk_run(
            "get-order.lua",
            format!("{gateway}/v1/orders/{}", fixture.order_ids[0]),
            fixture.order_ids.clone(),
        )),
        Call::GatewayPost => wrk::run(&wrk_run(
            "create-order.lua",
            format!("{gateway}/v1/orders"),
            vec![tag.to_owned()],
        )),
        Call::DirectGet => h2load::run(&h2load_run(grpc::GET_ORDER, "get-order.bin")),
        Call::DirectPost => h2load::run(&h2load_run(grpc::CREATE_ORDER, "create-order.bin")),
    }
}

/// What one closed-loop phase cost.
struct Spent {
    cpu_ms: PerProcess,
    platform_cores: f64,
    machine_cores: f64,
}

/// One closed-loop phase with the CPU every process spent on it.
async fn measure_closed(
    args: &Args,
    fixture: &Fixture,
    processes: &Processes,
    call: Call,
    tag: String,
) -> anyhow::Result<(wrk::Outcome, Spent)> {
    let started = std::time::Instant::now();
    let machine_before = usage::machine_busy_seconds(processes.ticks())?;
    let before = processes.cpu()?;
    let figures =
        tokio::task::block_in_place(|| closed_loop(args, fixture, call, &tag, args.seconds))?;
    let after = processes.cpu()?;
    let machine = usage::machine_busy_seconds(processes.ticks())? - machine_before;
    let elapsed = started.elapsed().as_secs_f64().max(0.001);
    let platform: f64 = after.values().sum::<f64>() - before.values().sum::<f64>();
    let spent = Spent {
        cpu_ms: usage::ms_per_call(&before, &after, figures.requests),
        platform_cores: platform / elapsed,
        machine_cores: machine / elapsed,
    };
    Ok((figures, spent))
}

fn open_call(call: Call, fixture: &Fixture, tag: String) -> (u16, open_loop::Call) {
    let order_id = fixture.order_ids[0].clone();
    match call {
        Call::GatewayGet => (fixture.gateway_port, open_loop::Call::RestGet { order_id }),
        Call::GatewayPost => (fixture.gateway_port, open_loop::Call::RestPost { tag }),
        Call::DirectGet => (fixture.orders_port, open_loop::Call::GrpcGet { order_id }),
        Call::DirectPost => (fixture.orders_port, open_loop::Call::GrpcPost { tag }),
    }
}

/// Every phase for one binary on one backend, into the report.
async fn bench(
    args: &Args,
    binary: &Binary,
    backend: &str,
    report: &mut Report,
) -> anyhow::Result<()> {
    let work = tempfile::Builder::new().prefix("bench-orders").tempdir()?;
    let cluster = match backend {
        "postgres" => Some(Cluster::create_durable(free_port()?)?),
        _ => None,
    };
    let mut extra_args: Vec<String> = [
        "RATE_LIMIT_PER_SECOND=0",
        "MAX_CONCURRENT_REQUESTS_PER_CLIENT=100000",
        "MAX_CONNECTIONS_PER_CLIENT=100000",
    ]
    .iter()
    .flat_map(|pair| ["--gateway-env".to_owned(), (*pair).to_owned()])
    .collect();
    if let Some(cluster) = &cluster {
        extra_args.extend(["--postgres".to_owned(), cluster.url()]);
    }
    let config = platform::Config {
        platformctl: binary.path.clone(),
        port_offset: args.port_offset,
        blue_version: "1.0.0".into(),
        green_version: "1.0.0".into(),
        green_env: Vec::new(),
        extra_args,
        ready_timeout: Duration::from_secs(120),
    };
    let platform = Platform::start(&config, work.path()).await?;
    let fixture = set_up(&platform, args, work.path()).await?;
    let mut processes = Processes::of(&platform.data_dir)?;
    if let Some(cluster) = &cluster {
        processes = processes.with_database(cluster.postmaster_pid()?);
    }
    let idle = processes.rss_mib()?;
    tokio::task::block_in_place(|| {
        closed_loop(
            args,
            &fixture,
            Call::GatewayGet,
            "warmup",
            args.warmup.max(1),
        )
    })?;

    let name = backend_name(backend);
    let (stop, sampler) = sample_rss(processes.clone());
    let mut saturation = Vec::new();
    for call in Call::ALL {
        let tag = format!("{}-{backend}-closed-{}", binary.label, std::process::id());
        let (figures, spent) = measure_closed(args, &fixture, &processes, call, tag).await?;
        let wrk::Outcome {
            requests,
            per_second,
            p50_ms,
            p99_ms,
            failed,
        } = figures;
        eprintln!(
            "{} {name} {}: {per_second:.0} req/s, p50 {p50_ms:.2} ms, p99 {p99_ms:.2} ms, failed {failed}",
            binary.label,
            call.describe()
        );
        let closed = Closed {
            label: binary.label.clone(),
            backend: name.into(),
            call,
            requests,
            per_second,
            p50_ms,
            p99_ms,
            failed,
            cpu_ms: spent.cpu_ms,
            platform_cores: spent.platform_cores,
            machine_cores: spent.machine_cores,
        };
        eprintln!(
            "  CPU ms per call {:.3}; cores busy: platform {:.2}, machine {:.2}",
            closed.cpu_of("total"),
            closed.platform_cores,
            closed.machine_cores
        );
        saturation.push((call, per_second));
        report.closed.push(closed);
    }
    let _ = stop.send(());
    let peak = sampler.await?;
    report.memory.push(Memory {
        label: binary.label.clone(),
        backend: name.into(),
        idle,
        peak,
    });

    for (call, per_second) in saturation {
        for &share in &args.shares {
            let tag = format!(
                "{}-{backend}-open-{share}-{}",
                binary.label,
                std::process::id()
            );
            let (port, open) = open_call(call, &fixture, tag);
            let rate = (per_second * share).max(1.0);
            let outcome = open_loop::run(&open_loop::Config {
                port,
                token: fixture.token.clone(),
                call: open,
                rate,
                duration: Duration::from_secs(args.open_seconds),
                connections: args.connections * 2,
                timeout: Duration::from_secs(5),
            })
            .await;
            eprintln!(
                "{} {name} {} at {:.0} req/s: p50 {:.2} ms, p99 {:.2} ms, failed {} of {} {:?}",
                binary.label,
                call.describe(),
                rate,
                outcome.p50_ms,
                outcome.p99_ms,
                outcome.failed,
                outcome.sent,
                outcome.causes
            );
            report.open.push(Open {
                label: binary.label.clone(),
                backend: name.into(),
                call,
                share,
                rate,
                sent: outcome.sent,
                failed: outcome.failed,
                p50_ms: outcome.p50_ms,
                p99_ms: outcome.p99_ms,
                causes: outcome.causes,
            });
        }
    }
    platform.stop().await?;
    drop(cluster);
    Ok(())
}

fn backend_name(backend: &str) -> &'static str {
    if backend == "postgres" {
        "PostgreSQL (fsync on)"
    } else {
        "SQLite"
    }
}

/// A port nothing listens on now, for the throwaway PostgreSQL.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn run(args: &Args, command: String) -> anyhow::Result<()> {
    let binaries = binaries(&args.binaries)?;
    for backend in &args.backends {
        if !["sqlite", "postgres"].contains(&backend.as_str()) {
            bail!("unknown backend {backend}: sqlite or postgres");
        }
    }
    if args.seconds == 0 || args.open_seconds == 0 || args.connections == 0 {
        bail!("--seconds, --open-seconds and --connections must be above 0");
    }
    if args
        .shares
        .iter()
        .any(|s| !(0.0..=1.0).contains(s) || *s == 0.0)
    {
        bail!("--shares are fractions of saturation, above 0 and at most 1");
    }
    let mut report = Report {
        command,
        binaries: binaries
            .iter()
            .map(|b| (b.label.clone(), b.path.display().to_string()))
            .collect(),
        backends: args
            .backends
            .iter()
            .map(|b| backend_name(b).to_owned())
            .collect(),
        connections: args.connections,
        seconds: args.seconds,
        open_seconds: args.open_seconds,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        ..Report::default()
    };
    for backend in &args.backends {
        for binary in &binaries {
            bench(args, binary, backend, &mut report)
                .await
                .with_context(|| format!("{} on {backend}", binary.label))?;
        }
    }
    if let Some(dir) = args.report.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.report, orders_bench::markdown(&report))
        .with_context(|| format!("cannot write {}", args.report.display()))?;
    eprintln!("report: {}", args.report.display());
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let command = std::iter::once("bench-orders".to_owned())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    match run(&args, command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
