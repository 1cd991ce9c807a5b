//! `release-experiment`: releases a faulty `orders` (green, with injected
//! server errors) under the same steady k6 load with each release strategy
//! (all at once, blue/green, canary), each on a freshly started platform,
//! and writes a Markdown report with one SVG plot per strategy.
//!
//! Run it with `bash load/experiment.sh`, which builds the release binaries first.
#![forbid(unsafe_code)]

use load_lab::{k6, platform, report, sample, strategy};

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

use load_lab::figures::Run;
use load_lab::platform::Platform;
use load_lab::sample::Sampler;
use load_lab::strategy::{Cli, Plan, Strategy};

#[derive(Debug, Parser)]
#[command(
    name = "release-experiment",
    about = "Release a faulty orders with several strategies under the same load; report what users saw"
)]
struct Args {
    /// The platformctl binary (a release build, as the figures are about it).
    #[arg(long, default_value = "target/release/platformctl")]
    platformctl: PathBuf,
    /// The k6 scenario.
    #[arg(long, default_value = "load/release.js")]
    script: PathBuf,
    /// Where the report, its plots and the timelines go.
    #[arg(long, default_value = "load/reports")]
    out_dir: PathBuf,
    /// Strategies to run, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "all-at-once,blue-green,blue-green-unchecked,canary"
    )]
    strategies: Vec<Strategy>,
    /// Port offset of the platform (the default keeps every port out of the
    /// ephemeral range and clear of the ports the test suite uses).
    #[arg(long, default_value_t = 13_750, allow_hyphen_values = true)]
    port_offset: i32,
    /// User requests per second.
    #[arg(long, default_value_t = 60)]
    rate: u32,
    /// Length of the load, per strategy.
    #[arg(long, default_value_t = 70)]
    duration_secs: u64,
    /// When the release starts, counted from the first user request.
    #[arg(long, default_value_t = 15)]
    release_at_secs: u64,
    /// Users signed up before the load.
    #[arg(long, default_value_t = 10)]
    users: u32,
    /// Every Nth request creates an order; the others list orders.
    #[arg(long, default_value_t = 10)]
    write_every: u32,
    /// Share of green's calls that fail (FAULT_ERROR_RATE).
    #[arg(long, default_value_t = 0.2)]
    fault_rate: f64,
    /// Rollout analysis: requests green must have served before a step is judged.
    #[arg(long, default_value_t = 20)]
    min_requests: u64,
    /// Rollout analysis and the operator's alert: highest tolerated error ratio.
    #[arg(long, default_value_t = 0.02)]
    max_error_ratio: f64,
    /// The operator's alert after a blue/green switch: server errors of green in the last minute.
    #[arg(long, default_value_t = 5)]
    alert_min_errors: u64,
    /// The canary's steps, in percent.
    #[arg(long, value_delimiter = ',', default_value = "5,25,50,100")]
    canary_steps: Vec<u32>,
    #[arg(long, default_value_t = 10)]
    canary_interval_secs: u64,
    /// How long the all-at-once rollout watches its single step.
    #[arg(long, default_value_t = 20)]
    all_at_once_interval_secs: u64,
    /// Keep each run's data directory, logs and k6 CSV (the path is printed).
    #[arg(long)]
    keep_work: bool,
    /// The command the report gives for a rerun.
    #[arg(long, default_value = "bash load/experiment.sh")]
    rerun_command: String,
}

const SERVICE: &str = "orders";
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
const BLUE_VERSION: &str = "1.0.0";
const GREEN_VERSION: &str = "1.1.0-faulty";

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = tokio::select! {
        outcome = run(args) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; the platform is being stopped")),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn check(args: &Args) -> anyhow::Result<()> {
    if args.strategies.is_empty() {
        bail!("no strategy to run");
    }
    if args.rate == 0 || args.users == 0 || args.write_every == 0 {
        bail!("--rate, --users and --write-every must be above 0");
    }
    if args.release_at_secs + 10 > args.duration_secs {
        bail!(
            "--release-at-secs {} leaves less than 10 s of a {} s load after the release",
            args.release_at_secs,
            args.duration_secs
        );
    }
    if !(0.0..=1.0).contains(&args.fault_rate) {
        bail!("--fault-rate must be between 0 and 1");
    }
    if !args.script.is_file() {
        bail!(
            "{} not found: run from the repository root",
            args.script.display()
        );
    }
    if !args.platformctl.is_file() {
        bail!(
            "{} not found: cargo build --release -p platformctl (load/experiment.sh does)",
            args.platformctl.display()
        );
    }
    Ok(())
}

/// `platformctl` must have the release commands this experiment drives.
async fn check_release_commands(platformctl: &Path) -> anyhow::Result<()> {
    for command in ["rollout", "switch", "rollback"] {
        let output = tokio::process::Command::new(platformctl)
            .args([command, "--help"])
            .output()
            .await
            .with_context(|| format!("cannot run {}", platformctl.display()))?;
        if !output.status.success() {
            bail!(
                "{} has no `{command}` command: rebuild it from this repository \
                 (cargo build --release -p platformctl)",
                platformctl.display()
            );
        }
    }
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    check(&args)?;
    let k6 = k6::find()?;
    check_release_commands(&args.platformctl).await?;
    let k6_version = tokio::process::Command::new(&k6)
        .arg("version")
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let k6_version = k6_version
        .lines()
        .next()
        .unwrap_or("k6")
        .split(" (")
        .next()
        .unwrap_or("k6")
        .to_owned();
    let platformctl = std::fs::canonicalize(&args.platformctl)?;
    let script = std::fs::canonicalize(&args.script)?;

    let plan = Plan {
        service: SERVICE.into(),
        min_requests: args.min_requests,
        max_error_ratio: args.max_error_ratio,
        alert_min_errors: args.alert_min_errors,
        alert_max_ratio: args.max_error_ratio,
        canary_steps: args.canary_steps.clone(),
        canary_interval: Duration::from_secs(args.canary_interval_secs),
        all_at_once_interval: Duration::from_secs(args.all_at_once_interval_secs),
    };
    let work = tempfile::Builder::new()
        .prefix("release-experiment.")
        .tempdir()
        .context("cannot create a work directory")?;
    // The directory is removed at the end unless asked to keep it.
    let (work_path, _work) = if args.keep_work {
        let path = work.keep();
        eprintln!("work directory (kept): {}", path.display());
        (path, None)
    } else {
        (work.path().to_path_buf(), Some(work))
    };

    let mut runs = Vec::new();
    for strategy in &args.strategies {
        let dir = work_path.join(strategy.slug());
        std::fs::create_dir_all(&dir)?;
        let run = run_one(&args, *strategy, &plan, &platformctl, &k6, &script, &dir)
            .await
            .with_context(|| format!("the {} run", strategy.title()))?;
        let f = run.figures();
        eprintln!(
            "[{}] {}; {} of {} user requests failed ({} after the release)",
            strategy.title(),
            f.outcome,
            f.failed,
            f.requests,
            f.failed_after_release
        );
        runs.push(run);
    }

    let setup = report::Setup {
        command: args.rerun_command.clone(),
        rate: args.rate,
        duration_s: args.duration_secs,
        release_at_s: args.release_at_secs,
        users: args.users,
        write_every: args.write_every,
        fault_rate: args.fault_rate,
        blue_version: BLUE_VERSION.into(),
        green_version: GREEN_VERSION.into(),
        plan,
        sample_every_ms: u64::try_from(SAMPLE_EVERY.as_millis()).unwrap_or(250),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        date: utc_date(strategy::now_ms()),
        k6_version,
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    let path = report::write(&args.out_dir, &setup, &runs)?;
    println!("report: {}", path.display());
    for run in &runs {
        let f = run.figures();
        println!(
            "  {:<12} failed after release {:>4}   detect {:>7}   recover {:>7}   peak green {:>3}%   extra capacity {:>3}%",
            run.strategy.title(),
            f.failed_after_release,
            f.detect_s.map_or("-".into(), |s| format!("{s:.1} s")),
            f.recover_s.map_or("-".into(), |s| format!("{s:.1} s")),
            f.peak_weight,
            f.extra_capacity
        );
    }
    Ok(())
}

/// One strategy on a fresh platform: start it, start the load, release at
/// the set time, wait for the load to end, stop the platform.
async fn run_one(
    args: &Args,
    strategy: Strategy,
    plan: &Plan,
    platformctl: &Path,
    k6: &Path,
    script: &Path,
    dir: &Path,
) -> anyhow::Result<Run> {
    let config = platform::Config {
        platformctl: platformctl.to_path_buf(),
        port_offset: args.port_offset,
        blue_version: BLUE_VERSION.into(),
        green_version: GREEN_VERSION.into(),
        green_env: vec![format!("FAULT_ERROR_RATE={}", args.fault_rate)],
        extra_args: Vec::new(),
        ready_timeout: Duration::from_secs(90),
    };
    eprintln!(
        "[{}] starting the platform (ports {} and {})",
        strategy.title(),
        config.gateway_port(),
        config.admin_port()
    );
    let platform = Platform::start(&config, dir).await?;
    let sampler = Sampler::start(sample::Target {
        admin_port: platform.admin_port,
        token: platform.token.clone(),
        service: SERVICE.into(),
        every: SAMPLE_EVERY,
    });
    let duration = Duration::from_secs(args.duration_secs);
    let load = k6::Load {
        k6: k6.to_path_buf(),
        script: script.to_path_buf(),
        base_url: platform.gateway_url(),
        rate: args.rate,
        duration,
        users: args.users,
        write_every: args.write_every,
        scenario: k6::SCENARIO.into(),
        env: Vec::new(),
    };
    let mut running = load.start(dir)?;
    let load_started = wait_for_load(&sampler, &mut running, Duration::from_secs(120)).await?;
    eprintln!(
        "[{}] load running ({} requests/s for {} s); release in {} s",
        strategy.title(),
        args.rate,
        args.duration_secs,
        args.release_at_secs
    );
    tokio::time::sleep_until((load_started + Duration::from_secs(args.release_at_secs)).into())
        .await;
    let cli = Cli {
        program: platformctl.to_path_buf(),
        admin_url: platform.admin_url(),
        gateway_url: platform.gateway_url(),
        data_dir: platform.data_dir.clone(),
    };
    let release = strategy::release(
        strategy,
        plan,
        &cli,
        sampler.latest.clone(),
        load_started + duration,
    )
    .await?;
    let left = (load_started + duration).saturating_duration_since(Instant::now());
    let outcomes = running.finish(left + Duration::from_secs(60)).await?;
    let samples = sampler.finish().await?;
    platform.stop().await?;
    Ok(Run {
        strategy,
        outcomes,
        samples,
        release,
    })
}

/// Waits for the first calls to orders (k6's setup only signs users up).
async fn wait_for_load(
    sampler: &Sampler,
    running: &mut k6::Running,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let since = Instant::now();
    let mut latest = sampler.latest.clone();
    loop {
        let started = latest
            .borrow_and_update()
            .as_ref()
            .is_some_and(|s| s.blue_total.requests + s.green_total.requests > 0);
        if started {
            return Ok(Instant::now());
        }
        if let Some(status) = running.exited()? {
            bail!(
                "k6 exited ({status}) before the load started: {}",
                platform::tail(&running.log, 15)
            );
        }
        if since.elapsed() > timeout {
            bail!(
                "no request reached orders within {} s of starting k6: {}",
                timeout.as_secs(),
                platform::tail(&running.log, 15)
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), latest.changed()).await;
    }
}

/// `YYYY-MM-DD HH:MM UTC` for Unix milliseconds.
fn utc_date(unix_ms: i64) -> String {
    let stamp = platform_runtime::time::utc(unix_ms);
    format!("{} UTC", stamp.get(..16).unwrap_or(&stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(utc_date(1_795_325_860_650), "2026-11-22 05:37 UTC");
    }

    #[test]
    fn arguments_parse() {
        let args = Args::try_parse_from([
            "release-experiment",
            "--strategies",
            "canary,blue-green",
            "--port-offset",
            "-100",
        ])
        .expect("parses");
        assert_eq!(args.strategies, vec![Strategy::Canary, Strategy::BlueGreen]);
        assert_eq!(args.port_offset, -100);
        assert_eq!(args.canary_steps, vec![5, 25, 50, 100]);
        assert!(Args::try_parse_from(["release-experiment", "--strategies", "yolo"]).is_err());
    }
}
