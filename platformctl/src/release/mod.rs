//! The release commands: `status`, `switch`, `rollback`, `rollout` and its
//! `pause`, `resume`, `promote`, `abort`, and `history`. They talk to the
//! gateway's admin API, where the routing state (and the rollout in
//! progress) lives; they keep no state of their own.

mod analysis;
mod client;
mod drive;
pub mod exit;
mod migrate;
mod smoke;
mod status;
mod team;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use platform_routing::release::Release;
use platform_routing::view::{ServiceStatus, Status};
use platform_routing::{Change, ColorWeights, RoutingConfig};
use platform_runtime::Color;
use serde::Serialize;
use serde_json::json;

use client::Admin;
use exit::{CtlError, ENDED, REFUSED, UNHEALTHY, parse_duration};
use gateway::proxy::stats::Traffic;
pub use migrate::{MigrateArgs, migrate};

/// Where the gateway is, and the admin token.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// The gateway's admin API.
    #[arg(
        long,
        env = "PLATFORM_ADMIN_URL",
        default_value = "http://127.0.0.1:9901"
    )]
    admin_url: String,
    /// The gateway's public listener (smoke checks go through it).
    #[arg(
        long,
        env = "PLATFORM_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    gateway_url: String,
    /// The admin token; by default read from <data-dir>/admin-token.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Where `platformctl up` keeps its files.
    #[arg(long, env = "PLATFORM_DATA_DIR", default_value_os_t = crate::default_data_dir())]
    data_dir: PathBuf,
}

impl Target {
    pub(crate) fn admin(&self) -> Result<Admin, CtlError> {
        Admin::new(&self.admin_url, self.admin_token.clone(), &self.data_dir)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorArg {
    Blue,
    Green,
}

impl From<ColorArg> for Color {
    fn from(c: ColorArg) -> Color {
        match c {
            ColorArg::Blue => Color::Blue,
            ColorArg::Green => Color::Green,
        }
    }
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    target: Target,
    /// Refresh every 2 seconds until Ctrl-C.
    #[arg(long)]
    watch: bool,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Debug, Args)]
pub struct SwitchArgs {
    #[command(flatten)]
    target: Target,
    /// auth, orders, payments or notifications
    service: String,
    /// The color to move all traffic to.
    #[arg(long, value_enum)]
    to: ColorArg,
    /// A JSON list of smoke requests instead of the service's defaults.
    #[arg(long)]
    smoke_file: Option<PathBuf>,
    /// Switch without the smoke check (the health check still runs).
    #[arg(long)]
    skip_smoke: bool,
}

#[derive(Debug, Args)]
pub struct SmokeArgs {
    #[command(flatten)]
    target: Target,
    /// auth, orders, payments or notifications
    service: String,
    /// The color to check (forced with the color header).
    #[arg(long, value_enum)]
    color: ColorArg,
    /// A JSON list of smoke requests instead of the service's defaults.
    #[arg(long)]
    smoke_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[command(flatten)]
    target: Target,
    /// auth, orders, payments or notifications
    service: String,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    target: Target,
    /// auth, orders, payments or notifications
    service: String,
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

/// Where analysis reads its numbers.
#[derive(Debug, Clone, Args)]
pub struct AnalysisArgs {
    /// Judge from Prometheus at this URL instead of the gateway's own counters.
    #[arg(long)]
    prometheus: Option<String>,
    /// PromQL for --prometheus (default: observability/analysis-queries.json).
    #[arg(long, requires = "prometheus")]
    queries: Option<PathBuf>,
}

impl AnalysisArgs {
    fn source(&self) -> Result<analysis::Source, CtlError> {
        match &self.prometheus {
            Some(url) => analysis::Source::prometheus(url, self.queries.as_deref()),
            None => Ok(analysis::Source::Gateway),
        }
    }
}

#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(flatten)]
    target: Target,
    /// auth, orders, payments or notifications; several for one release
    /// (moved in lockstep, a service after those it calls, one verdict).
    #[arg(required = true, num_args = 1..)]
    services: Vec<String>,
    /// The color to shift traffic to.
    #[arg(long, value_enum)]
    to: ColorArg,
    /// The target's share at each step, in percent, ending at 100.
    #[arg(long, default_value = "5,25,50,100", value_parser = parse_steps)]
    steps: Steps,
    /// How long each step lasts before it is judged (30s, 2m, 500ms).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    interval: Duration,
    /// Highest server-error ratio of the target (0.01 = 1%).
    #[arg(long, default_value_t = 0.01)]
    max_error_ratio: f64,
    /// Highest p99 latency of the target, in milliseconds.
    #[arg(long, default_value_t = 500.0)]
    max_p99_ms: f64,
    /// Highest target error ratio as a multiple of the current color's (plus 0.5 points).
    #[arg(long, default_value_t = 2.0)]
    max_relative_error: f64,
    /// Requests the target must serve before a step is judged.
    #[arg(long, default_value_t = 50)]
    min_requests: u64,
    /// First copy this share of reads to the target for one interval, answers discarded.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    mirror: Option<u32>,
    /// sequential: the sequential tests of errors and latency against the current color,
    /// then the gates; gates: the gates alone, judged once a step has --min-requests.
    #[arg(long, value_enum, default_value = "sequential")]
    judge: JudgeArg,
    /// After the last step, keep judging the target (at 100%, the old color still up)
    /// against what the old color did, this long; a regression rolls back at once.
    /// Default: one --interval; 0s to complete with the last step.
    #[arg(long, value_parser = parse_duration)]
    bake: Option<Duration>,
    /// Both colors failing alike pause the rollout; if that lasts longer than this,
    /// it is rolled back.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    incident_timeout: Duration,
    /// The gateway aborts the rollout when this command is silent this long.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    analysis: AnalysisArgs,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    target: Target,
    /// auth, orders, payments or notifications
    service: String,
    /// Both colors failing alike pause the rollout; if that lasts longer than this,
    /// it is rolled back.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    incident_timeout: Duration,
    #[command(flatten)]
    analysis: AnalysisArgs,
}

#[derive(Debug, Args)]
pub struct AbortArgs {
    #[command(flatten)]
    target: Target,
    /// auth, orders, payments or notifications
    service: String,
    /// Shift back step by step (one interval each) instead of at once.
    #[arg(long)]
    gradual: bool,
    /// Why, for the history.
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
enum JudgeArg {
    Sequential,
    Gates,
}

#[derive(Debug, Clone)]
pub struct Steps(Vec<u32>);

fn parse_steps(raw: &str) -> Result<Steps, String> {
    let steps = raw
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| format!("{s:?} is not a whole percent"))
        })
        .collect::<Result<Vec<u32>, String>>()?;
    platform_routing::release::check_steps(&steps)?;
    Ok(Steps(steps))
}

fn controller_id() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        platform_runtime::ids::new_id("ctl")
    )
}

/// `value` as JSON, one line or indented; its keys sorted, as they come
/// from the gateway.
fn to_json(value: &impl Serialize, pretty: bool) -> String {
    let value = serde_json::to_value(value).unwrap_or_default();
    if pretty {
        serde_json::to_string_pretty(&value).unwrap_or_default()
    } else {
        value.to_string()
    }
}

/// `orders: blue 100% / green 0% -> blue 0% / green 100% (generation 7)`.
fn changed(service: &str, change: &Change) -> String {
    format!(
        "{service}: {} -> {} (generation {})",
        weights_line(&change.before),
        weights_line(&change.after),
        change.generation
    )
}

fn weights_line(weights: &ColorWeights) -> String {
    format!("blue {}% / green {}%", weights.blue, weights.green)
}

/// The service's entry in `/admin/status`, or a refusal naming the known ones.
fn service_status<'a>(status: &'a Status, service: &str) -> Result<&'a ServiceStatus, CtlError> {
    status.services.get(service).ok_or_else(|| {
        let known: Vec<&str> = status.services.keys().map(String::as_str).collect();
        CtlError::new(
            REFUSED,
            format!("unknown service {service:?}; known: {}", known.join(", ")),
        )
    })
}

/// Refuses a target that already serves everything, a running rollout, or
/// an unhealthy target.
fn check_target(entry: &ServiceStatus, service: &str, to: Color) -> Result<(), CtlError> {
    if let Some(r) = &entry.rollout {
        return Err(CtlError::new(
            REFUSED,
            format!(
                "a rollout of {service} to {} is already running; see `platformctl status`, or resume, promote or abort it",
                r.target
            ),
        ));
    }
    if entry.weights.of(to) == 100 {
        return Err(CtlError::new(
            REFUSED,
            format!("{to} already serves 100% of {service}"),
        ));
    }
    check_healthy(entry, service, to)
}

/// Refuses a color with no endpoint or any endpoint not SERVING.
fn check_healthy(entry: &ServiceStatus, service: &str, to: Color) -> Result<(), CtlError> {
    let endpoints = &entry.colors.of(to).endpoints;
    let sick: Vec<String> = endpoints
        .iter()
        .filter(|e| !e.serving)
        .map(|e| {
            format!(
                "{}: {}",
                e.endpoint,
                e.error.as_deref().unwrap_or("not serving")
            )
        })
        .collect();
    if endpoints.is_empty() || !sick.is_empty() {
        return Err(CtlError::new(
            UNHEALTHY,
            format!(
                "{to} of {service} is not healthy: {}",
                if sick.is_empty() {
                    "no endpoints".to_owned()
                } else {
                    sick.join("; ")
                }
            ),
        ));
    }
    Ok(())
}

pub async fn status(args: StatusArgs) -> Result<(), CtlError> {
    let admin = args.target.admin()?;
    loop {
        let status: Status = admin.get_as("/admin/status").await?;
        match args.output {
            Output::Json => println!("{}", to_json(&status, false)),
            Output::Table if args.watch => println!("\x1b[2J\x1b[H{}", status::table(&status)),
            Output::Table => println!("{}", status::table(&status)),
        }
        if !args.watch {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            () = platform_runtime::host::shutdown_signal() => return Ok(()),
        }
    }
}

pub async fn switch(args: SwitchArgs) -> Result<(), CtlError> {
    let admin = args.target.admin()?;
    let to = Color::from(args.to);
    let checks = smoke::load(&args.service, args.smoke_file.as_deref())?;
    let status: Status = admin.get_as("/admin/status").await?;
    let entry = service_status(&status, &args.service)?;
    check_target(entry, &args.service, to)?;
    if !args.skip_smoke {
        let gateway = args.target.gateway_url.trim_end_matches('/');
        let sent = smoke::run(&admin, gateway, &args.service, to, &checks).await?;
        eprintln!(
            "smoke check of {to} {} passed: {sent} requests",
            args.service
        );
    }
    let change: Change = admin
        .post_as(
            &format!("/admin/routes/{}/switch", args.service),
            &json!({ "to": to }),
        )
        .await?;
    println!("{}", changed(&args.service, &change));
    Ok(())
}

/// Checks a color's health and sends its smoke requests; changes nothing.
pub async fn smoke(args: SmokeArgs) -> Result<(), CtlError> {
    let admin = args.target.admin()?;
    let color = Color::from(args.color);
    let checks = smoke::load(&args.service, args.smoke_file.as_deref())?;
    let status: Status = admin.get_as("/admin/status").await?;
    let entry = service_status(&status, &args.service)?;
    check_healthy(entry, &args.service, color)?;
    let gateway = args.target.gateway_url.trim_end_matches('/');
    let sent = smoke::run(&admin, gateway, &args.service, color, &checks).await?;
    println!(
        "smoke check of {color} {} passed: {sent} requests",
        args.service
    );
    Ok(())
}

pub async fn rollback(args: ServiceArgs) -> Result<(), CtlError> {
    let admin = args.target.admin()?;
    let change: Change = admin
        .post_as(
            &format!("/admin/routes/{}/rollback", args.service),
            &json!({}),
        )
        .await?;
    println!("{}", changed(&args.service, &change));
    Ok(())
}

/// What the end of a rollout means for the exit code.
fn outcome(release: &Release, service: &str, ok: &[&str]) -> Result<(), CtlError> {
    let outcome = release.outcome.as_str();
    let detail = if release.detail.is_empty() {
        String::new()
    } else {
        format!(": {}", release.detail)
    };
    let line = format!(
        "rollout of {service} to {} {outcome}{detail}; {}",
        release.to,
        weights_line(&release.after)
    );
    if ok.contains(&outcome) {
        println!("{line}");
        Ok(())
    } else if outcome == "failed" {
        Err(CtlError::new(exit::ANALYSIS_FAILED, line))
    } else {
        Err(CtlError::new(ENDED, line))
    }
}

pub async fn rollout(args: RolloutArgs) -> Result<(), CtlError> {
    let admin = args.target.admin()?;
    let source = args.analysis.source()?;
    let to = Color::from(args.to);
    let mut services = args.services.clone();
    services.dedup();
    if services.len() != args.services.len()
        || services
            .iter()
            .enumerate()
            .any(|(i, s)| services[..i].contains(s))
    {
        return Err(CtlError::usage(format!(
            "a service is named twice in {}",
            args.services.join(" ")
        )));
    }
    let services = team::in_dependency_order(&services);
    let status: Status = admin.get_as("/admin/status").await?;
    for service in &services {
        let entry = service_status(&status, service)?;
        check_target(entry, service, to)?;
        // Every source of the judgement answers before the first weight
        // moves: a rollout that cannot read its numbers never starts.
        let read = async {
            let mark = source.mark(&admin, service, to).await?;
            source
                .windows(&admin, &mark, service, to, Traffic::Live)
                .await
        };
        read.await.map_err(|e| {
                CtlError::new(
                    e.code,
                    format!("{}; nothing was changed: the rollout needs its numbers before it moves any traffic", e.message),
                )
            })?;
    }
    let controller = controller_id();
    let plan = json!({
        "to": to,
        "steps": args.steps.0,
        "interval_ms": args.interval.as_millis() as u64,
        "thresholds": {
            "max_error_ratio": args.max_error_ratio,
            "max_p99_ms": args.max_p99_ms,
            "max_relative_error": args.max_relative_error,
            "min_requests": args.min_requests,
            "judge": args.judge,
        },
        "mirror_percent": args.mirror.unwrap_or(0),
        "timeout_ms": args.timeout.as_millis() as u64,
        "controller": controller,
        "bake_ms": args.bake.unwrap_or(args.interval).as_millis() as u64,
    });
    let mut started = Vec::new();
    for service in &services {
        match admin
            .post_as::<Change>(&format!("/admin/routes/{service}/rollout"), &plan)
            .await
        {
            Ok(change) => {
                eprintln!(
                    "rollout of {service} to {to} started: steps {:?} every {:?}; {}",
                    args.steps.0,
                    args.interval,
                    weights_line(&change.after)
                );
                started.push(service.clone());
            }
            Err(e) => {
                // One release: what started goes back.
                for service in &started {
                    let _ = admin
                        .post(
                            &format!("/admin/routes/{service}/rollout/abort"),
                            &json!({ "reason": format!("the release could not start: {}", e.message) }),
                        )
                        .await;
                }
                return Err(e);
            }
        }
    }
    let mut options = drive::Options {
        incident_timeout: args.incident_timeout,
        sticky: status.sticky,
        team: None,
    };
    if let [service] = services.as_slice() {
        let release = drive::drive(&admin, service, &controller, &source, &options).await?;
        return outcome(&release, service, &["completed", "promoted"]);
    }
    let team = std::sync::Arc::new(team::Team::new(services.clone()));
    options.team = Some(team.clone());
    let results = futures_util::future::join_all(
        services
            .iter()
            .map(|service| drive::drive(&admin, service, &controller, &source, &options)),
    )
    .await;
    release_outcome(&admin, &services, results, &team).await
}

/// One verdict for a release of several services: every rollout completed,
/// or the first failure, with every service taken back (those that had
/// completed already are rolled back now).
async fn release_outcome(
    admin: &Admin,
    services: &[String],
    results: Vec<Result<Release, CtlError>>,
    team: &team::Team,
) -> Result<(), CtlError> {
    let failure = results.iter().find_map(|r| r.as_ref().err().cloned());
    let Some(failure) = failure.or_else(|| {
        results
            .iter()
            .flatten()
            .find(|r| !["completed", "promoted"].contains(&r.outcome.as_str()))
            .map(|r| {
                CtlError::new(
                    ENDED,
                    format!("rollout of {} {}: {}", r.service, r.outcome, r.detail),
                )
            })
    }) else {
        for release in results.iter().flatten() {
            outcome(release, &release.service, &["completed", "promoted"])?;
        }
        return Ok(());
    };
    let why = team.failed().unwrap_or_else(|| failure.message.clone());
    let mut back = Vec::new();
    for (service, result) in services.iter().zip(&results) {
        if let Ok(release) = result
            && ["completed", "promoted"].contains(&release.outcome.as_str())
        {
            let _ = admin
                .post(&format!("/admin/routes/{service}/rollback"), &json!({}))
                .await;
        }
        let routes: RoutingConfig = admin.get_as("/admin/routes").await?;
        if let Some(r) = routes.services.get(service) {
            back.push(format!(
                "{service} blue {}% / green {}%",
                r.weights.blue, r.weights.green
            ));
        }
    }
    Err(CtlError::new(
        if failure.code == ENDED {
            ENDED
        } else {
            exit::ANALYSIS_FAILED
        },
        format!(
            "release of {} failed: {why}; every service rolled back: {}",
            services.join(", "),
            back.join(", ")
        ),
    ))
}

pub async fn resume(args: ResumeArgs) -> Result<(), CtlError> {
    let admin = args.target.admin()?;
    let source = args.analysis.source()?;
    let routes: RoutingConfig = admin.get_as("/admin/routes").await?;
    let Some(routing) = routes.services.get(&args.service) else {
        return Err(CtlError::new(
            REFUSED,
            format!("unknown service {:?}", args.service),
        ));
    };
    let Some(rollout) = &routing.rollout else {
        return Err(CtlError::new(
            REFUSED,
            format!("no rollout of {} is running", args.service),
        ));
    };
    let recent = platform_runtime::time::now_ms().saturating_sub(rollout.heartbeat_ms) < 3_000;
    if recent && beats(&admin, &args.service, rollout.heartbeat_ms).await? {
        // Its controller is still there: resume it and let it drive.
        admin
            .post(
                &format!("/admin/routes/{}/rollout/resume", args.service),
                &json!({}),
            )
            .await?;
        println!(
            "rollout of {} resumed; controller {:?} drives it",
            args.service, rollout.controller
        );
        return Ok(());
    }
    let controller = controller_id();
    admin
        .post(
            &format!("/admin/routes/{}/rollout/resume", args.service),
            &json!({ "controller": controller }),
        )
        .await?;
    eprintln!(
        "took the rollout of {} over (its controller was silent); driving it",
        args.service
    );
    let status: Status = admin.get_as("/admin/status").await?;
    let options = drive::Options {
        incident_timeout: args.incident_timeout,
        sticky: status.sticky,
        team: None,
    };
    let release = drive::drive(&admin, &args.service, &controller, &source, &options).await?;
    outcome(&release, &args.service, &["completed", "promoted"])
}

/// Whether the controller of `service`'s rollout is alive: a live one beats
/// every second, so one that has not beaten again within 2.5 s of
/// `last_beat` is gone (a `platformctl rollout` stopped with Ctrl-C), and
/// the rollout is taken over rather than left with nobody judging it.
async fn beats(admin: &Admin, service: &str, last_beat: i64) -> Result<bool, CtlError> {
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let routes: RoutingConfig = admin.get_as("/admin/routes").await?;
        match routes
            .services
            .get(service)
            .and_then(|r| r.rollout.as_ref())
        {
            Some(rollout) if rollout.heartbeat_ms != last_beat => return Ok(true),
            Some(_) => {}
            None => {
                return Err(CtlError::new(
                    REFUSED,
                    format!("the rollout of {service} ended meanwhile"),
                ));
            }
        }
    }
    Ok(false)
}

pub async fn simple(args: ServiceArgs, action: &str) -> Result<(), CtlError> {
    let admin = args.target.admin()?;
    let change: Change = admin
        .post_as(
            &format!("/admin/routes/{}/rollout/{action}", args.service),
            &json!({}),
        )
        .await?;
    match action {
        "promote" => println!(
            "{}: promoted; {}",
            args.service,
            weights_line(&change.after)
        ),
        _ => println!(
            "rollout of {}: {action}d; {}",
            args.service,
            weights_line(&change.after)
        ),
    }
    Ok(())
}

pub async fn abort(args: AbortArgs) -> Result<(), CtlError> {
    let admin = args.target.admin()?;
    let reason = args
        .reason
        .clone()
        .unwrap_or_else(|| "aborted by an operator".into());
    if !args.gradual {
        let change: Change = admin
            .post_as(
                &format!("/admin/routes/{}/rollout/abort", args.service),
                &json!({ "reason": reason }),
            )
            .await?;
        println!(
            "rollout of {} aborted; {}",
            args.service,
            weights_line(&change.after)
        );
        return Ok(());
    }
    let controller = controller_id();
    admin
        .post(
            &format!("/admin/routes/{}/rollout/abort", args.service),
            &json!({ "reason": reason, "gradual": true, "controller": controller }),
        )
        .await?;
    eprintln!("shifting {} back step by step", args.service);
    let release = drive::drive(
        &admin,
        &args.service,
        &controller,
        &analysis::Source::Gateway,
        &drive::Options::default(),
    )
    .await?;
    outcome(&release, &args.service, &["aborted"])
}

pub async fn history(args: HistoryArgs) -> Result<(), CtlError> {
    let admin = args.target.admin()?;
    let history = status::history(&admin, &args.service).await?;
    match args.output {
        Output::Json => println!("{}", to_json(&history, true)),
        Output::Table => println!("{}", status::history_table(&history)),
    }
    Ok(())
}
