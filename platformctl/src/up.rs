//! `platformctl up`: the whole platform on one machine. Every service runs
//! in both colors as its own process (this binary's `service` command), on
//! the fixed local ports, with both colors of a service sharing one SQLite
//! database in the data directory.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use platform_runtime::Color;
use platform_runtime::host::shutdown_signal;
use tokio::sync::watch;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use platform_routing::{ColorEndpoints, RoutingConfig, ServiceRouting};

use crate::ports::{self, SERVICES};
use crate::supervisor::{ProcessSpec, supervise};

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where databases, keys, logs and pid files live.
    #[arg(long, default_value_os_t = crate::default_data_dir())]
    data_dir: PathBuf,
    /// Shift every port by this much (it may be negative), to run a second platform beside the first.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true,
          value_parser = clap::value_parser!(i32).range(ports::OFFSETS))]
    port_offset: i32,
    /// Version label of the blue processes [default: the version of the
    /// binary they run]
    #[arg(long)]
    blue_version: Option<String>,
    /// Version label of the green processes [default: the version of the
    /// binary they run]
    #[arg(long)]
    green_version: Option<String>,
    /// Extra environment for the green processes, [SERVICE:]KEY=VALUE: of
    /// every service, or of one (for example orders:FAULT_ERROR_RATE=0.2).
    #[arg(long = "green-env", value_parser = parse_setting)]
    green_env: Vec<Setting>,
    /// A platformctl binary of another release to run the green services
    /// from (for example target/release/platformctl built from an earlier
    /// commit), so a real release can be tried: both colors on one database.
    #[arg(long, value_name = "PATH", conflicts_with = "green_ref")]
    green_bin: Option<PathBuf>,
    /// The same for the blue services.
    #[arg(long, value_name = "PATH", conflicts_with = "blue_ref")]
    blue_bin: Option<PathBuf>,
    /// Run the green services from a release of releases.toml (0.1.0) or any
    /// git ref of this clone, built once into target/releases/<commit>
    /// (`platformctl releases build`).
    #[arg(long, value_name = "RELEASE")]
    green_ref: Option<String>,
    /// The same for the blue services.
    #[arg(long, value_name = "RELEASE")]
    blue_ref: Option<String>,
    /// Extra environment for the gateway, KEY=VALUE (for example RATE_LIMIT_PER_SECOND=0).
    #[arg(long = "gateway-env", value_parser = parse_pair)]
    gateway_env: Vec<(String, String)>,
    /// Extra environment for the blue processes, [SERVICE:]KEY=VALUE.
    #[arg(long = "blue-env", value_parser = parse_setting)]
    blue_env: Vec<Setting>,
    /// Also run a local Prometheus (the one on PATH) with the project's rules
    /// and alerts, scraping every process of this platform.
    #[arg(long)]
    observe: bool,
    /// Processes per service and color (1-3): the gateway balances over them,
    /// and the supervisor restarts each one that dies. Replica n listens on
    /// the first one's ports + 200 x (n - 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    replicas: u8,
    /// A PostgreSQL server for every service instead of SQLite, as
    /// postgres://user:password@host:port; each service gets its own
    /// database `platform_<service>` on it (created when missing), shared by
    /// its colors and replicas.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// SQLite: take a backup (`platformctl backup`) this often while the
    /// platform runs, into <data-dir>/backups, keeping the newest
    /// --backup-keep; what a lost disk can cost is at most this much of
    /// writes (for example 15m). PostgreSQL: see `platformctl backup setup`.
    #[arg(long, value_name = "DURATION", value_parser = crate::release::exit::parse_duration,
          conflicts_with = "postgres")]
    backup_every: Option<Duration>,
    /// How many scheduled backups to keep.
    #[arg(long, default_value_t = 96, value_parser = clap::value_parser!(u32).range(1..))]
    backup_keep: u32,
    /// How long to wait for every process to report SERVING.
    #[arg(long, default_value_t = 60)]
    ready_timeout_secs: u64,
}

fn parse_pair(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((k, v))
            if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            Ok((k.to_owned(), v.to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got {raw:?}")),
    }
}

/// A `--blue-env`/`--green-env` setting: for one service, or all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    service: Option<String>,
    key: String,
    value: String,
}

impl Setting {
    fn applies_to(&self, service: &str) -> bool {
        self.service.as_deref().is_none_or(|s| s == service)
    }
}

fn parse_setting(raw: &str) -> Result<Setting, String> {
    let (name, value) = raw.split_once('=').unwrap_or((raw, ""));
    let (service, key) = match name.split_once(':') {
        Some((service, key)) if ports::SERVICES.contains(&service) => {
            (Some(service.to_owned()), key)
        }
        Some((service, _)) => {
            return Err(format!(
                "unknown service {service:?} in {raw:?}: expected one of {} before the colon",
                ports::SERVICES.join(", ")
            ));
        }
        None => (None, name),
    };
    let (key, value) = parse_pair(&format!("{key}={value}"))
        .ok()
        .filter(|_| raw.contains('='))
        .ok_or_else(|| format!("expected [SERVICE:]KEY=VALUE, got {raw:?}"))?;
    Ok(Setting {
        service,
        key,
        value,
    })
}

/// A `--blue-bin`/`--green-bin` path must be a platformctl binary.
impl UpArgs {
    /// The version label of `color`'s processes.
    fn version(&self, color: Color) -> &str {
        match color {
            Color::Blue => self.blue_version.as_deref(),
            Color::Green => self.green_version.as_deref(),
        }
        .unwrap_or(env!("CARGO_PKG_VERSION"))
    }
}

/// The version of the platformctl at `bin`, or what is wrong with it.
fn check_binary(flag: &str, bin: &std::path::Path) -> anyhow::Result<String> {
    let answer = std::process::Command::new(bin).arg("--version").output();
    match answer {
        Ok(out)
            if out.status.success()
                && String::from_utf8_lossy(&out.stdout).starts_with("platformctl ") =>
        {
            let said = String::from_utf8_lossy(&out.stdout);
            Ok(said.trim().trim_start_matches("platformctl ").to_owned())
        }
        Ok(out) => bail!(
            "{flag} {}: not a platformctl binary (its --version said {:?})",
            bin.display(),
            String::from_utf8_lossy(&out.stdout).trim()
        ),
        Err(e) => bail!(
            "{flag} {}: cannot run it ({e}): give the path of a platformctl binary, \
             for example target/release/platformctl",
            bin.display()
        ),
    }
}

/// One process of the platform.
struct Process {
    service: &'static str,
    color: Color,
    /// 0 for the first replica.
    replica: usize,
    grpc: u16,
    metrics: u16,
}

impl Process {
    /// `orders-blue` for the first replica, `orders-blue-2` for the second.
    fn name(&self) -> String {
        match self.replica {
            0 => format!("{}-{}", self.service, self.color),
            n => format!("{}-{}-{}", self.service, self.color, n + 1),
        }
    }
}

fn processes(offset: i32, replicas: usize) -> Vec<Process> {
    let mut all = Vec::new();
    for replica in 0..replicas {
        let offset = ports::replica_offset(offset, replica);
        for color in Color::ALL {
            for service in SERVICES {
                all.push(Process {
                    service,
                    color,
                    replica,
                    grpc: ports::grpc(service, color, offset),
                    metrics: ports::metrics(service, color, offset),
                });
            }
        }
    }
    all
}

/// A random secret kept in `path` (made once, readable by its owner only):
/// the service-client secret orders and auth share, the admin token.
fn secret_file(path: &Path) -> anyhow::Result<String> {
    let fresh = platform_runtime::ids::new_secret();
    let kept = platform_runtime::files::create_once(path, fresh.as_bytes(), true)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let secret = String::from_utf8(kept)
        .unwrap_or_default()
        .trim()
        .to_owned();
    if secret.is_empty() {
        anyhow::bail!(
            "{} is empty or not text: delete it and run `platformctl up` again to make a new one",
            path.display()
        );
    }
    Ok(secret)
}

/// Writes the routing file with this layout's endpoints and returns what it
/// holds. Everything else in it (weights, releases, rollouts in progress,
/// mirrors, the change history and the generation) survives a restart: the
/// file is the source of truth, so a platform restarted after a switch still
/// routes as switched. The file is replaced atomically; one that is not a
/// valid routing document stops `up` rather than being overwritten.
fn write_routes(path: &Path, offset: i32, replicas: usize) -> anyhow::Result<RoutingConfig> {
    let mut config = match std::fs::read_to_string(path) {
        Ok(text) => RoutingConfig::parse(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e}; fix it, or delete it to start again with every service on blue",
                path.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => RoutingConfig {
            generation: 0,
            services: Default::default(),
            changes: Vec::new(),
            releases: Vec::new(),
        },
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    for service in SERVICES {
        let endpoints = |color| {
            (0..replicas)
                .map(|r| {
                    let offset = ports::replica_offset(offset, r);
                    format!("127.0.0.1:{}", ports::grpc(service, color, offset))
                })
                .collect::<Vec<_>>()
        };
        let endpoints = ColorEndpoints {
            blue: endpoints(Color::Blue),
            green: endpoints(Color::Green),
        };
        match config.services.get_mut(service) {
            Some(kept) => kept.endpoints = endpoints,
            None => {
                config
                    .services
                    .insert(service.to_owned(), ServiceRouting::on_blue(endpoints));
            }
        }
    }
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    platform_runtime::files::replace(path, config.to_json().as_bytes(), false)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(config)
}

/// Where each service's traffic goes, for the banner: `blue 100%` when all
/// of it is on blue, else each service that differs.
fn weights_summary(config: &RoutingConfig) -> String {
    let moved: Vec<String> = config
        .services
        .iter()
        .filter(|(_, s)| s.weights.blue != 100)
        .map(|(name, s)| format!("{name} blue {}% green {}%", s.weights.blue, s.weights.green))
        .collect();
    if moved.is_empty() {
        "blue 100%".to_owned()
    } else {
        format!("everything else blue 100%; {}", moved.join(", "))
    }
}

/// Waits for the gateway's readiness endpoint.
async fn wait_until_ready(
    admin_port: u16,
    since: Instant,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", admin_port)).await {
            let _ = stream
                .write_all(b"GET /ready HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n\r\n")
                .await;
            let mut reply = Vec::new();
            let _ = stream.read_to_end(&mut reply).await;
            if reply.starts_with(b"HTTP/1.1 200") {
                return Ok(since.elapsed());
            }
        }
        if since.elapsed() > timeout {
            bail!("the gateway is not ready after {} s", timeout.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn print_gateway(offset: i32, ready: Duration, data_dir: &Path, routing: &str) {
    let (port, admin, internal) = ports::gateway(offset);
    let rss = rss_mib(&data_dir.join("run").join("gateway.pid"))
        .map(|m| format!("{m:.1} MiB"))
        .unwrap_or_else(|| "?".into());
    println!();
    println!(
        "gateway: http://127.0.0.1:{port} (REST and gRPC; {routing})   ready {} ms   RSS {rss}",
        ready.as_millis()
    );
    println!("  docs:     http://127.0.0.1:{port}/docs");
    println!(
        "  admin:    http://127.0.0.1:{admin}/admin/routes  (token: {})",
        data_dir.join("admin-token").display()
    );
    println!("  console:  http://127.0.0.1:{admin}/console  (the rollout console; same token)");
    println!("  metrics:  http://127.0.0.1:{admin}/metrics");
    println!(
        "  internal: 127.0.0.1:{internal} (east-west gRPC: orders -> payments, notifications)"
    );
    println!();
    println!("try:  curl -s http://127.0.0.1:{port}/v1/auth/jwks");
    println!(
        "      grpcurl -plaintext 127.0.0.1:{} list",
        ports::grpc("auth", Color::Blue, offset)
    );
    let admin_flag = if offset == 0 {
        String::new()
    } else {
        format!(" --admin-url http://127.0.0.1:{admin} --gateway-url http://127.0.0.1:{port}")
    };
    let dir_flag = if data_dir == crate::default_data_dir() {
        String::new()
    } else {
        format!(" --data-dir {}", data_dir.display())
    };
    println!("      platformctl status{admin_flag}{dir_flag}");
}

fn print_observe(offset: i32, data_dir: &Path) {
    let port = crate::observe::port(offset);
    println!();
    println!(
        "prometheus: http://127.0.0.1:{port}   (config and rules: {})",
        data_dir.join("prometheus").display()
    );
    println!("  targets:  http://127.0.0.1:{port}/targets");
    println!("  alerts:   http://127.0.0.1:{port}/alerts");
    println!(
        "  a query:  http://127.0.0.1:{port}/graph?g0.expr=service_color%3Agateway_calls%3Arate1m"
    );
    println!(
        "  dashboards: observability/grafana/dashboards (Grafana and Jaeger: docker compose --profile observability)"
    );
}

pub async fn run(mut args: UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    if let Some(release) = args.blue_ref.take() {
        args.blue_bin = Some(crate::releases::build(
            &release,
            crate::releases::Profile::of_this_binary(),
        )?);
    }
    if let Some(release) = args.green_ref.take() {
        args.green_bin = Some(crate::releases::build(
            &release,
            crate::releases::Profile::of_this_binary(),
        )?);
    }
    // Bad input is reported before anything is probed or written.
    if let Some(url) = &args.postgres {
        crate::databases::check(url)?;
    }
    for (flag, bin, label) in [
        ("--blue-bin", &args.blue_bin, &mut args.blue_version),
        ("--green-bin", &args.green_bin, &mut args.green_version),
    ] {
        if let Some(bin) = bin {
            let version = check_binary(flag, bin)?;
            label.get_or_insert(version);
        }
    }
    let replicas = usize::from(args.replicas);
    let all = processes(args.port_offset, replicas);
    if all.iter().any(|p| p.grpc == 0 || p.metrics == 0) {
        bail!(
            "--port-offset {} with --replicas {} puts ports beyond 65535: use a smaller offset",
            args.port_offset,
            args.replicas
        );
    }
    for process in &all {
        for port in [process.grpc, process.metrics] {
            if TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_err() {
                bail!(
                    "port {port} ({}) is in use: stop the other platform (or process) using it, \
                     or pass --port-offset",
                    process.name()
                );
            }
        }
    }
    let (gateway_port, admin_port, internal_port) = ports::gateway(args.port_offset);
    for port in [gateway_port, admin_port, internal_port] {
        if TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_err() {
            bail!(
                "port {port} (gateway) is in use: stop the other platform (or process) using it, or pass --port-offset"
            );
        }
    }
    let prometheus = if args.observe {
        let found = crate::observe::find();
        if found.is_none() {
            eprintln!(
                "note: --observe needs Prometheus on PATH (Debian: apt-get install prometheus); \
                 starting without it"
            );
        }
        let port = crate::observe::port(args.port_offset);
        if found.is_some()
            && TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).is_err()
        {
            bail!("port {port} (Prometheus) is in use: stop what uses it, or pass --port-offset");
        }
        found
    } else {
        None
    };
    for dir in ["logs", "run"] {
        std::fs::create_dir_all(args.data_dir.join(dir))
            .with_context(|| format!("cannot create {}", args.data_dir.join(dir).display()))?;
    }
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    let secret = secret_file(&data_dir.join("service-client-secret"))?;
    let admin_token_file = data_dir.join("admin-token");
    secret_file(&admin_token_file)?;
    // Previews (x-color) need their own credential, not the admin token.
    let preview_token_file = data_dir.join("preview-token");
    secret_file(&preview_token_file)?;
    let routes_file = data_dir.join("routes.json");
    let routing = weights_summary(&write_routes(&routes_file, args.port_offset, replicas)?);
    let databases = match &args.postgres {
        Some(url) => Some(crate::databases::prepare(url, &SERVICES).await?),
        None => None,
    };
    let internal = format!("http://127.0.0.1:{internal_port}");
    let program = std::env::current_exe().context("cannot find the platformctl binary")?;
    let program_of = |color: Color| {
        let chosen = match color {
            Color::Blue => &args.blue_bin,
            Color::Green => &args.green_bin,
        };
        chosen.clone().unwrap_or_else(|| program.clone())
    };
    let url = |service: &str, color: Color| {
        format!(
            "http://127.0.0.1:{}",
            ports::grpc(service, color, args.port_offset)
        )
    };

    let (stop, stop_rx) = watch::channel(false);
    let (fatal, mut fatal_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for process in &all {
        let version = args.version(process.color);
        let extra = match process.color {
            Color::Blue => &args.blue_env,
            Color::Green => &args.green_env,
        };
        let mut env = vec![
            ("COLOR".to_owned(), process.color.to_string()),
            ("VERSION".to_owned(), version.to_owned()),
            (
                "LISTEN_ADDR".to_owned(),
                format!("127.0.0.1:{}", process.grpc),
            ),
            (
                "METRICS_ADDR".to_owned(),
                format!("127.0.0.1:{}", process.metrics),
            ),
            (
                "DATA_DIR".to_owned(),
                data_dir.join(process.service).display().to_string(),
            ),
            ("AUTH_ADDR".to_owned(), url("auth", Color::Blue)),
            ("DRAIN_DELAY_MS".to_owned(), "500".to_owned()),
        ];
        match process.service {
            "auth" => env.push(("AUTH_SERVICE_CLIENTS".into(), format!("orders={secret}"))),
            "orders" => {
                env.push(("SERVICE_CLIENT_SECRET".into(), secret.clone()));
                // East-west calls go through the gateway's internal listener,
                // so they follow the same color weights as edge traffic.
                env.push(("PAYMENTS_ADDR".into(), internal.clone()));
                env.push(("NOTIFICATIONS_ADDR".into(), internal.clone()));
            }
            _ => {}
        }
        env.extend(
            extra
                .iter()
                .filter(|s| s.applies_to(process.service))
                .map(|s| (s.key.clone(), s.value.clone())),
        );
        if let Some(databases) = &databases {
            env.push(("DATABASE_URL".into(), databases[process.service].clone()));
        }
        let name = process.name();
        let spec = ProcessSpec {
            log: data_dir.join("logs").join(format!("{name}.log")),
            pid_file: data_dir.join("run").join(format!("{name}.pid")),
            name,
            program: program_of(process.color),
            args: vec!["service".into(), process.service.into()],
            env,
            grace: Duration::from_secs(15),
        };
        tasks.push(tokio::spawn(supervise(
            spec,
            stop_rx.clone(),
            fatal.clone(),
        )));
    }

    let gateway_env = vec![
        (
            "LISTEN_ADDR".to_owned(),
            format!("127.0.0.1:{gateway_port}"),
        ),
        ("ADMIN_ADDR".to_owned(), format!("127.0.0.1:{admin_port}")),
        (
            "INTERNAL_ADDR".to_owned(),
            format!("127.0.0.1:{internal_port}"),
        ),
        ("ROUTES_FILE".to_owned(), routes_file.display().to_string()),
        (
            "ADMIN_TOKEN_FILE".to_owned(),
            admin_token_file.display().to_string(),
        ),
        (
            "PREVIEW_TOKEN_FILE".to_owned(),
            preview_token_file.display().to_string(),
        ),
        ("AUTH_ADDR".to_owned(), url("auth", Color::Blue)),
        ("DRAIN_DELAY_MS".to_owned(), "500".to_owned()),
        // A second gateway may share the ports for a rolling restart.
        ("LISTEN_REUSEPORT".to_owned(), "true".to_owned()),
    ];
    let gateway_env = gateway_env
        .into_iter()
        .chain(args.gateway_env.iter().cloned())
        .collect();
    let spec = ProcessSpec {
        log: data_dir.join("logs").join("gateway.log"),
        pid_file: data_dir.join("run").join("gateway.pid"),
        name: "gateway".into(),
        program: program.clone(),
        args: vec!["gateway".into()],
        env: gateway_env,
        grace: Duration::from_secs(30),
    };
    tasks.push(tokio::spawn(supervise(
        spec,
        stop_rx.clone(),
        fatal.clone(),
    )));

    let observing = prometheus.is_some();
    if let Some(program) = prometheus {
        let spec = crate::observe::prepare(program, &data_dir, args.port_offset, replicas)?;
        tasks.push(tokio::spawn(supervise(
            spec,
            stop_rx.clone(),
            fatal.clone(),
        )));
    }

    // One listener for Ctrl-C and SIGTERM from here to the end: a signal
    // sent just after the platform is up (between two listeners) would
    // otherwise be lost and leave `up` running.
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let ready = tokio::select! {
        ready = async {
            let timeout = Duration::from_secs(args.ready_timeout_secs);
            let times = wait_until_serving(&all, started, timeout).await?;
            let gateway = wait_until_ready(admin_port, started, timeout).await?;
            if observing {
                crate::observe::wait_until_ready(args.port_offset, timeout).await?;
            }
            Ok::<_, anyhow::Error>((times, gateway))
        } => ready,
        () = &mut shutdown => Err(anyhow::anyhow!("interrupted before the platform was up")),
        Some(reason) = fatal_rx.recv() => Err(anyhow::anyhow!("{reason}")),
    };
    if let Ok((times, gateway)) = &ready {
        print_endpoints(&all, times, &data_dir, &args);
        print_gateway(args.port_offset, *gateway, &data_dir, &routing);
        if observing {
            print_observe(args.port_offset, &data_dir);
        }
        if let Some(every) = args.backup_every {
            println!(
                "backups: every {} s into {}, the newest {} kept",
                every.as_secs(),
                data_dir.join("backups").display(),
                args.backup_keep
            );
            tasks.push(tokio::spawn(crate::backup::every(
                data_dir.clone(),
                every,
                args.backup_keep as usize,
                stop.subscribe(),
            )));
        }
        println!("Ctrl-C stops everything.");
        shutdown.await;
        println!("stopping every service (SIGTERM, then up to 15 s to drain)...");
    }
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    println!("stopped");
    let logs = data_dir.join("logs");
    ready
        .map(|_| ())
        .map_err(|err| anyhow::anyhow!("{err:#} (logs: {})", logs.display()))
}

/// Waits for every process to report SERVING; returns how long each took
/// from `since` (all of them starting at once, so they share the CPU).
async fn wait_until_serving(
    all: &[Process],
    since: Instant,
    timeout: Duration,
) -> anyhow::Result<Vec<Duration>> {
    let checks = all.iter().map(|process| async move {
        let endpoint = format!("http://127.0.0.1:{}", process.grpc);
        loop {
            if serving(&endpoint).await {
                return Ok(since.elapsed());
            }
            if since.elapsed() > timeout {
                bail!(
                    "{} is not SERVING after {} s",
                    process.name(),
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    futures_util::future::try_join_all(checks).await
}

async fn serving(endpoint: &str) -> bool {
    let Ok(channel) = tonic::transport::Endpoint::from_shared(endpoint.to_owned()) else {
        return false;
    };
    let Ok(channel) = channel
        .connect_timeout(Duration::from_millis(500))
        .connect()
        .await
    else {
        return false;
    };
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32)
}

/// Resident memory of a process, from /proc, in MiB.
fn rss_mib(pid_file: &Path) -> Option<f64> {
    let pid = std::fs::read_to_string(pid_file).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn print_endpoints(all: &[Process], ready: &[Duration], data_dir: &Path, args: &UpArgs) {
    let slowest = ready.iter().max().copied().unwrap_or_default();
    let replicas = match args.replicas {
        1 => String::new(),
        n => format!(" x {n} replicas"),
    };
    println!(
        "platform is up in {:.2} s: 4 services x 2 colors{replicas}, each its own process",
        slowest.as_secs_f64()
    );
    println!();
    println!(
        "{:<16} {:<6} {:<8} {:<17} {:<33} {:>8} {:>8}",
        "service", "color", "version", "gRPC", "metrics", "ready", "RSS"
    );
    for (p, took) in all.iter().zip(ready) {
        let version = args.version(p.color);
        let pid_file = data_dir.join("run").join(format!("{}.pid", p.name()));
        let rss = rss_mib(&pid_file)
            .map(|m| format!("{m:.1} MiB"))
            .unwrap_or_else(|| "?".into());
        let service = match p.replica {
            0 => p.service.to_owned(),
            n => format!("{} #{}", p.service, n + 1),
        };
        println!(
            "{:<16} {:<6} {:<8} {:<17} {:<33} {:>6} ms {:>8}",
            service,
            p.color.as_str(),
            version,
            format!("127.0.0.1:{}", p.grpc),
            format!("http://127.0.0.1:{}/metrics", p.metrics),
            took.as_millis(),
            rss
        );
    }
    println!();
    println!(
        "ready: from start to health SERVING, all {} processes starting at once on this machine",
        all.len()
    );
    println!(
        "data: {}   logs: {}",
        data_dir.display(),
        data_dir.join("logs").display()
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn settings_are_for_every_service_or_one() {
        use super::{Setting, parse_setting};
        let setting = |service: Option<&str>, key: &str, value: &str| Setting {
            service: service.map(str::to_owned),
            key: key.to_owned(),
            value: value.to_owned(),
        };
        assert_eq!(
            parse_setting("FAULT_ERROR_RATE=0.2"),
            Ok(setting(None, "FAULT_ERROR_RATE", "0.2"))
        );
        assert_eq!(
            parse_setting("orders:FAULT_ERROR_RATE=0.2"),
            Ok(setting(Some("orders"), "FAULT_ERROR_RATE", "0.2"))
        );
        assert_eq!(
            parse_setting("OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317"),
            Ok(setting(
                None,
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://127.0.0.1:4317"
            ))
        );
        let orders = parse_setting("orders:X=1").expect("valid");
        assert!(orders.applies_to("orders") && !orders.applies_to("payments"));
        assert!(
            parse_setting("shipping:X=1")
                .expect_err("unknown service")
                .contains("expected one of auth, orders, payments, notifications")
        );
        for bad in ["X", "=1", "orders:=1", "orders:X", "A B=1"] {
            assert!(parse_setting(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_created_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("admin-token");
        let secret = super::secret_file(&path).expect("created");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(super::secret_file(&path).expect("read again"), secret);
    }

    /// A restart keeps everything but the endpoints: releases, a rollout in
    /// progress, a mirror, the history and the generation.
    #[test]
    fn restarting_keeps_the_routing_state() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("routes.json");
        let first = super::write_routes(&path, 0, 1).expect("first start");
        assert_eq!(super::weights_summary(&first), "blue 100%");
        let mut doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        doc["generation"] = serde_json::json!(7);
        doc["services"]["orders"]["weights"] = serde_json::json!({"blue": 0, "green": 100});
        doc["services"]["orders"]["endpoints"]["blue"] = serde_json::json!(["127.0.0.1:1"]);
        doc["services"]["payments"]["mirror"] = serde_json::json!({"to": "green", "percent": 10});
        doc["releases"] = serde_json::json!([{"id": "r1", "service": "orders", "kind": "switch",
            "to": "green", "who": "admin", "ended_by": "admin", "started_ms": 1, "ended_ms": 1,
            "outcome": "switched", "peak_weight": 100,
            "before": {"blue": 100, "green": 0}, "after": {"blue": 0, "green": 100}}]);
        doc["changes"] = serde_json::json!([{"generation": 7, "at_ms": 1, "who": "admin",
            "service": "orders", "action": "switch",
            "before": {"blue": 100, "green": 0}, "after": {"blue": 0, "green": 100}}]);
        let edited = doc.to_string();
        let kept = platform_routing::RoutingConfig::parse(&edited).expect("a valid document");
        std::fs::write(&path, &edited).expect("edit");

        let again = super::write_routes(&path, 0, 1).expect("restart");
        assert_eq!(again.generation, 7);
        assert_eq!(again.changes, kept.changes);
        assert_eq!(again.releases.len(), 1);
        assert_eq!(again.releases, kept.releases);
        assert!(again.services["payments"].mirror.is_some());
        assert_eq!(again.services["orders"].weights.green, 100);
        assert_ne!(
            again.services["orders"].endpoints.blue,
            vec!["127.0.0.1:1".to_owned()]
        );
        assert_eq!(
            again.services["payments"].mirror,
            kept.services["payments"].mirror
        );
        assert!(super::weights_summary(&again).contains("orders blue 0% green 100%"));
        let on_disk =
            platform_routing::RoutingConfig::parse(&std::fs::read_to_string(&path).expect("read"))
                .expect("valid");
        assert_eq!(on_disk, again);
    }

    #[test]
    fn a_broken_routing_file_stops_up_with_what_to_do() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("routes.json");
        std::fs::write(&path, "{ not json").expect("write");
        let error = super::write_routes(&path, 0, 1)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("delete it"), "{error}");
        assert_eq!(std::fs::read_to_string(&path).expect("kept"), "{ not json");
    }
}
