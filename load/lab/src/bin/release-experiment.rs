//! `release-experiment`: releases a faulty `orders` (green, with injected
//! server errors) under the same steady k6 load with each release strategy
//! (all at once, blue/green, canary with either judge), each on a freshly
//! started platform, and writes a Markdown report with one SVG plot per
//! strategy; with `--repeat N`, runs every strategy N times, alternating
//! them, and reports each run and each strategy's spread instead.
//!
//! Run it with `bash load/experiment.sh`, which builds the release binaries first.
#![forbid(unsafe_code)]

use load_lab::{k6, platform, repeats, report, sample, strategy};

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

use load_lab::figures::Run;
use load_lab::platform::Platform;
use load_lab::repeats::{Attempt, Row};
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
        default_value = "all-at-once,blue-green,blue-green-unchecked,canary,canary-gates"
    )]
    strategies: Vec<Strategy>,
    /// Run the strategies this many rounds, alternating them run by run, and
    /// write the report of repeated runs (each run, and each strategy's
    /// median, p10/p90, min/max) instead of the one with a plot per strategy.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// The report's file name in --out-dir [default: release-strategies.md,
    /// or release-repeated.md with --repeat above 1].
    #[arg(long)]
    report: Option<String>,
    /// Roll out with `platformctl rollout`'s own steps, interval and gates:
    /// only what makes the strategy is passed (--min-requests,
    /// --max-error-ratio, --canary-steps and the intervals are not).
    #[arg(long)]
    rollout_defaults: bool,
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
    /// Every Nth request creates an order; the others list orders (0: reads only).
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
    /// The command the report gives for a rerun, followed by this run's own
    /// options (all but --platformctl, --script, --out-dir, --keep-work and this one).
    #[arg(long, default_value = "bash load/experiment.sh")]
    rerun_command: String,
}

const SERVICE: &str = "orders";
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
const BLUE_VERSION: &str = "1.0.0";
const GREEN_VERSION: &str = "1.1.0-faulty";
const REPEATED_REPORT: &str = "release-repeated.md";

#[tokio::main]
async fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args = Args::parse();
    let outcome = tokio::select! {
        outcome = run(args, raw) => outcome,
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
    if args.rate == 0 || args.users == 0 || args.repeat == 0 {
        bail!("--rate, --users and --repeat must be above 0");
    }
    if let Some(name) = &args.report
        && (!name.ends_with(".md") || name.contains('/'))
    {
        bail!("--report {name:?}: a file name ending in .md, without a directory");
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

/// `platformctl` must have the release commands this experiment drives;
/// gives `rollout`'s defaults, as its `--help` lists them.
async fn check_release_commands(platformctl: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let mut defaults = Vec::new();
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
        if command == "rollout" {
            defaults = strategy::help_defaults(&String::from_utf8_lossy(&output.stdout));
        }
    }
    Ok(defaults)
}

/// The options of this run worth repeating in a rerun command: all but
/// the paths `load/experiment.sh` sets and the rerun command itself.
fn rerun_options(raw: &[String]) -> Vec<String> {
    const SET_BY_THE_SCRIPT: [&str; 4] =
        ["--platformctl", "--script", "--out-dir", "--rerun-command"];
    // Changes where the work goes, not what is measured.
    const NO_EFFECT: [&str; 1] = ["--keep-work"];
    let mut kept = Vec::new();
    let mut skip_value = false;
    for arg in raw {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        let name = arg.split('=').next().unwrap_or(arg);
        if NO_EFFECT.contains(&name) {
            continue;
        }
        if SET_BY_THE_SCRIPT.contains(&name) {
            skip_value = !arg.contains('=');
            continue;
        }
        kept.push(shell_word(arg));
    }
    kept
}

/// `word`, single-quoted when a shell would split or expand it.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || ",._/=:+-".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

async fn run(args: Args, raw: Vec<String>) -> anyhow::Result<()> {
    let started = Instant::now();
    check(&args)?;
    let k6 = k6::find()?;
    let rollout_defaults = check_release_commands(&args.platformctl).await?;
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
    let programs = Programs {
        platformctl: std::fs::canonicalize(&args.platformctl)?,
        k6,
        script: std::fs::canonicalize(&args.script)?,
    };

    let plan = Plan {
        service: SERVICE.into(),
        rollout_defaults: args.rollout_defaults,
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

    let rounds = args.repeat;
    let mut runs = Vec::new();
    let mut attempts = Vec::new();
    let mut broken_in_a_row = 0;
    for round in 1..=rounds {
        for strategy in &args.strategies {
            let index = attempts.len() + runs.len() + 1;
            let (dir, name) = if rounds == 1 {
                (work_path.join(strategy.slug()), strategy.title().to_owned())
            } else {
                let total = args.strategies.len() * rounds as usize;
                (
                    work_path.join(format!("{index:03}-{}", strategy.slug())),
                    format!("run {index}/{total}, {}", strategy.title()),
                )
            };
            std::fs::create_dir_all(&dir)?;
            let run = run_one(&args, *strategy, &plan, &programs, &dir, &name)
                .await
                .with_context(|| format!("the {name} run"));
            if rounds == 1 {
                let run = run?;
                let f = run.figures();
                eprintln!(
                    "[{name}] {}; {} of {} user requests failed ({} after the release)",
                    f.outcome, f.failed, f.requests, f.failed_after_release
                );
                runs.push(run);
                continue;
            }
            let result = match run {
                Ok(run) => {
                    broken_in_a_row = 0;
                    let row = Row::of(&run);
                    eprintln!(
                        "[{name}] exit code {}; {} user requests failed after the release; \
                         rollback {} after it; green {} calls, {} server errors",
                        row.exit_code
                            .map_or_else(|| "none".into(), |c| c.to_string()),
                        row.failed,
                        row.exposure_s
                            .map_or_else(|| "never".into(), |s| format!("{s:.1} s")),
                        row.green.requests,
                        row.green.server_errors
                    );
                    Ok(row)
                }
                Err(err) => {
                    broken_in_a_row += 1;
                    eprintln!("[{name}] broke: {err:#}");
                    if broken_in_a_row >= 3 {
                        return Err(err.context("three runs in a row broke"));
                    }
                    Err(format!("{err:#}"))
                }
            };
            attempts.push(Attempt {
                index,
                round: round as usize,
                strategy: *strategy,
                result,
            });
        }
    }

    let mut command = args.rerun_command.clone();
    for option in rerun_options(&raw) {
        command.push(' ');
        command.push_str(&option);
    }
    let setup = report::Setup {
        command,
        rate: args.rate,
        duration_s: args.duration_secs,
        release_at_s: args.release_at_secs,
        users: args.users,
        write_every: args.write_every,
        fault_rate: args.fault_rate,
        blue_version: BLUE_VERSION.into(),
        green_version: GREEN_VERSION.into(),
        plan,
        rollout_defaults,
        rounds,
        sample_every_ms: u64::try_from(SAMPLE_EVERY.as_millis()).unwrap_or(250),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        date: utc_date(strategy::now_ms()),
        k6_version,
        elapsed_s: started.elapsed().as_secs_f64(),
    };
    if rounds > 1 {
        let name = args.report.as_deref().unwrap_or(REPEATED_REPORT);
        let path = repeats::write(&args.out_dir, name, &setup, &attempts)?;
        println!("report: {}", path.display());
        for line in repeats::interpretation(&setup, &attempts) {
            println!("  {line}");
        }
        return Ok(());
    }
    let name = args.report.as_deref().unwrap_or(report::REPORT);
    let path = report::write(&args.out_dir, name, &setup, &runs)?;
    println!("report: {}", path.display());
    for run in &runs {
        let f = run.figures();
        println!(
            "  {:<32} failed after release {:>4}   detect {:>7}   recover {:>7}   peak green {:>3}%   extra capacity {:>3}%",
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

/// What a run starts: the operator's tool, the load generator and its scenario.
struct Programs {
    platformctl: PathBuf,
    k6: PathBuf,
    script: PathBuf,
}

/// One strategy on a fresh platform: start it, start the load, release at
/// the set time, wait for the load to end, stop the platform. `name` tells
/// the run apart in progress messages.
async fn run_one(
    args: &Args,
    strategy: Strategy,
    plan: &Plan,
    programs: &Programs,
    dir: &Path,
    name: &str,
) -> anyhow::Result<Run> {
    let config = platform::Config {
        platformctl: programs.platformctl.clone(),
        port_offset: args.port_offset,
        blue_version: BLUE_VERSION.into(),
        green_version: GREEN_VERSION.into(),
        green_env: vec![format!("{SERVICE}:FAULT_ERROR_RATE={}", args.fault_rate)],
        extra_args: Vec::new(),
        ready_timeout: Duration::from_secs(90),
    };
    eprintln!(
        "[{name}] starting the platform (ports {} and {})",
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
        k6: programs.k6.clone(),
        script: programs.script.clone(),
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
        "[{name}] load running ({} requests/s for {} s); release in {} s",
        args.rate, args.duration_secs, args.release_at_secs
    );
    tokio::time::sleep_until((load_started + Duration::from_secs(args.release_at_secs)).into())
        .await;
    let cli = Cli {
        program: programs.platformctl.clone(),
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
        let defaults = Args::try_parse_from(["release-experiment"]).expect("parses");
        assert_eq!(defaults.strategies.last(), Some(&Strategy::CanaryGates));
        assert_eq!((defaults.repeat, defaults.rollout_defaults), (1, false));
    }

    #[test]
    fn rerun_keeps_the_options_of_the_run() {
        let raw = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            rerun_options(&raw(&[
                "--platformctl",
                "target/release/platformctl",
                "--script=load/release.js",
                "--out-dir",
                "load/reports",
                "--strategies",
                "canary,canary-gates",
                "--repeat",
                "20",
                "--rerun-command",
                "x",
                "--keep-work",
                "--report",
                "it's.md",
            ])),
            raw(&[
                "--strategies",
                "canary,canary-gates",
                "--repeat",
                "20",
                "--report",
                "'it'\\''s.md'",
            ])
        );
        assert!(rerun_options(&[]).is_empty());
    }
}
