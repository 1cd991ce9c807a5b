//! `edge-attack`: what hostile clients do to the gateway's ordinary clients.
//! One platform (`platformctl up`, the per-client rate limit off) takes an
//! ordinary client's steady requests first alone, then during each attack in
//! turn: slow HTTP/2 bodies, R.U.D.Y., idle connections, slowloris. For each
//! phase: the ordinary requests served and their latency, the attack
//! connections the gateway closed, and the admin port's `/ready`. Writes a
//! Markdown report and fails when an attack phase serves too few ordinary
//! requests.
//!
//! Run it with `bash load/hostile.sh`.
#![forbid(unsafe_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use load_lab::attacks::{self, Attack};
use load_lab::edge_report::{self, Closes, Ordinary, Phase, Readiness, Setup};
use load_lab::platform::{self, Platform};
use load_lab::{http, ordinary};
use tokio::time::Instant;

#[derive(Debug, Parser)]
#[command(
    name = "edge-attack",
    about = "Ordinary clients' success and latency while hostile clients attack the gateway"
)]
struct Args {
    #[arg(long, default_value = "target/release/platformctl")]
    platformctl: PathBuf,
    #[arg(long, default_value = "load/reports/hostile-edge.md")]
    report: PathBuf,
    #[arg(long, default_value_t = 13_250, allow_hyphen_values = true)]
    port_offset: i32,
    /// Least share of ordinary requests served in each attack phase, in percent.
    #[arg(long, default_value_t = 99.0)]
    threshold: f64,
    /// Seconds the ordinary client runs in each phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds each attack runs before the ordinary client starts.
    #[arg(long, default_value_t = 3)]
    settle: u64,
    /// The ordinary client's requests per second, over all its connections.
    #[arg(long, default_value_t = 150)]
    rate: u32,
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Every n-th ordinary request is a login (each costs auth a password hash).
    #[arg(long, default_value_t = 10)]
    login_every: u32,
    #[arg(long, default_value_t = 5)]
    h2_connections: usize,
    /// Streams per HTTP/2 connection, at most (the server's limit applies first).
    #[arg(long, default_value_t = 256)]
    h2_streams: usize,
    #[arg(long, default_value_t = 500)]
    rudy_connections: usize,
    #[arg(long, default_value_t = 500)]
    idle_connections: usize,
    #[arg(long, default_value_t = 100)]
    pri_connections: usize,
    #[arg(long, default_value_t = 100)]
    half_preface_connections: usize,
    #[arg(long, default_value_t = 500)]
    slowloris_connections: usize,
    /// Our own slowloris even when slowhttptest is installed.
    #[arg(long)]
    own_slowloris: bool,
    /// The ordinary client's local address: the gateway's per-client caps
    /// count per address, and an ordinary client is not the attacker.
    #[arg(long, default_value = "127.0.0.2")]
    ordinary_source: Ipv4Addr,
    /// How many local addresses the lab's attackers spread over (127.0.0.10
    /// on), as a few hosts would.
    #[arg(long, default_value_t = 4)]
    attack_sources: u8,
}

impl Args {
    fn attack_sources(&self) -> Vec<IpAddr> {
        (0..self.attack_sources.clamp(1, 200))
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + i)))
            .collect()
    }
}

/// Where a program is on PATH.
fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// Probes the admin port's `/ready` every 250 ms until `until`.
async fn probe_ready(admin_port: u16, until: Instant) -> Readiness {
    let mut readiness = Readiness::default();
    while Instant::now() < until {
        let reply = http::get(admin_port, "/ready", None, Duration::from_secs(1)).await;
        readiness.record(reply.ok().map(|r| r.status));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    readiness
}

/// The ordinary client and the readiness probe, side by side, for one phase.
async fn measure(platform: &Platform, args: &Args, phase: usize) -> (Ordinary, Readiness) {
    let config = ordinary::Config {
        port: platform.gateway_port,
        source: IpAddr::V4(args.ordinary_source),
        phase,
        connections: args.connections,
        rate: args.rate,
        duration: Duration::from_secs(args.seconds),
        login_every: args.login_every,
        timeout: Duration::from_secs(2),
    };
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let (attempts, readiness) = tokio::join!(
        ordinary::run(&config),
        probe_ready(platform.admin_port, until)
    );
    (Ordinary::of(&attempts), readiness)
}

async fn attack_phase(
    platform: &Platform,
    args: &Args,
    attack: &Attack,
    phase: usize,
) -> anyhow::Result<Phase> {
    // The attack holds its connections through the measurement and a little after.
    let until = Instant::now() + Duration::from_secs(args.settle + args.seconds + 1);
    let port = platform.gateway_port;
    let running = {
        let attack = attack.clone();
        let sources = args.attack_sources();
        tokio::spawn(async move { attacks::run(&attack, port, &sources, until).await })
    };
    tokio::time::sleep(Duration::from_secs(args.settle)).await;
    let (ordinary, readiness) = measure(platform, args, phase).await;
    let outcome = tokio::time::timeout_at(until + Duration::from_secs(30), running)
        .await
        .with_context(|| format!("the {} attack did not stop on time", attack.name()))?
        .with_context(|| format!("the {} attack panicked", attack.name()))??;
    // Let the gateway let go of what the attack held before the next phase.
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(Phase {
        name: attack.name().to_owned(),
        attack: attack.describe(),
        ordinary,
        closes: outcome.closes,
        notes: outcome.notes,
        readiness,
    })
}

fn print(phase: &Phase, baseline_p99: f64) {
    let o = &phase.ordinary;
    eprintln!(
        "{:<20} served {}/{} ({:.1}%), failed {}, p50 {:.1} ms, p99 {:.1} ms ({:.1}x), closed {}, /ready {}",
        phase.name,
        o.served,
        o.sent,
        o.success_rate() * 100.0,
        o.failures(),
        o.p50_ms,
        o.p99_ms,
        o.p99_ms / baseline_p99.max(0.001),
        phase.closes.summary(),
        phase.readiness.summary()
    );
}

async fn run(args: &Args, command: String) -> anyhow::Result<bool> {
    if !(0.0..=100.0).contains(&args.threshold) {
        bail!("--threshold is a percentage, 0 to 100");
    }
    if args.rate == 0 || args.seconds == 0 {
        bail!("--rate and --seconds must be above 0");
    }
    let work = tempfile::Builder::new().prefix("edge-attack").tempdir()?;
    let config = platform::Config {
        platformctl: args.platformctl.clone(),
        port_offset: args.port_offset,
        blue_version: "1.0.0".into(),
        green_version: "1.0.0".into(),
        green_env: Vec::new(),
        extra_args: vec![
            "--gateway-env".into(),
            "RATE_LIMIT_PER_SECOND=0".into(),
            "--gateway-env".into(),
            "RUST_LOG=warn".into(),
        ],
        ready_timeout: Duration::from_secs(120),
    };
    let platform = Platform::start(&config, work.path()).await?;
    let slowhttptest = if args.own_slowloris {
        None
    } else {
        which("slowhttptest")
    };
    let attacks = [
        Attack::SlowH2Bodies {
            connections: args.h2_connections,
            max_streams: args.h2_streams,
        },
        Attack::Rudy {
            connections: args.rudy_connections,
        },
        Attack::Idle {
            silent: args.idle_connections,
            pri: args.pri_connections,
            half_preface: args.half_preface_connections,
        },
        Attack::Slowloris {
            connections: args.slowloris_connections,
            slowhttptest,
            work: work.path().to_path_buf(),
        },
    ];

    let (ordinary, readiness) = measure(&platform, args, 0).await;
    let baseline = Phase {
        name: "baseline".into(),
        attack: String::new(),
        ordinary,
        closes: Closes::default(),
        notes: String::new(),
        readiness,
    };
    let baseline_p99 = baseline.ordinary.p99_ms;
    print(&baseline, baseline_p99);
    let mut phases = vec![baseline];
    for (i, attack) in attacks.iter().enumerate() {
        let phase = attack_phase(&platform, args, attack, i + 1).await?;
        print(&phase, baseline_p99);
        phases.push(phase);
    }
    platform.stop().await?;

    let setup = Setup {
        command,
        connections: args.connections,
        rate: args.rate,
        seconds: args.seconds,
        settle_seconds: args.settle,
        login_every: args.login_every,
        ordinary_source: args.ordinary_source.to_string(),
        attack_sources: args.attack_sources().len(),
        threshold: args.threshold / 100.0,
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
    };
    write_report(&args.report, &edge_report::markdown(&setup, &phases))?;
    eprintln!("report: {}", args.report.display());
    Ok(phases.iter().skip(1).all(|p| p.passed(setup.threshold)))
}

fn write_report(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let command = std::iter::once("edge-attack".to_owned())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    match run(&args, command).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!(
                "error: the ordinary client was served less than {}% of the time in an attack phase",
                args.threshold
            );
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
