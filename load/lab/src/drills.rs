//! Failure drills under load, each with a verdict and its numbers.
//! Every drill starts a fresh platform (`platformctl up --replicas 2`, so
//! each service and color has two processes), runs k6's steady user load
//! (`load/scenarios/steady.js`) and this tool's own order writer, injects
//! its fault, and then checks every acknowledged order (see `integrity`).
//!
//! - `replica-kill`: `kill -9` of a live replica, one service after the
//!   other, again and again (the supervisor restarts each).
//! - `rolling-restart`: every process of every service, both colors, one at
//!   a time: SIGTERM (it drains), restart, wait until SERVING, next; then
//!   the gateway, covered meanwhile by a standby sharing its ports.
//! - `database-restart`: the platform on PostgreSQL; the database is stopped
//!   (fast shutdown) and started again, in the middle of a canary of orders:
//!   both colors fail alike, so the rollout must pause, not roll back, and
//!   complete by itself once the database is back.
//! - `release`: three real releases, built from their commits. Orders from
//!   the oldest (blue) to the expand release (green, its migration applied
//!   at start): a canary rolled back at 50%, rolled forward and promoted;
//!   then the contract release replaces blue (each process restarted on
//!   the new binary, as `helm upgrade` of a color does), takes the traffic
//!   in steps, replaces green, and its contract step is applied
//!   (`platformctl migrate orders --contract`); then a canary rollout of
//!   payments; all under load, through `platformctl`.
//!
//! Pass: no failed request and nothing lost, inconsistent, charged twice or
//! duplicated; for the database drill, failures only while it is down, each
//! a fast 503, and recovery without anyone's help.
//!
//! `bash load/drill.sh` runs them (the `drill` binary); CI runs the short
//! form from `platformctl/tests/drills.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use platform_routing::view;
use platform_runtime::Color;

use crate::integrity::{self, Integrity};
use crate::platform::{self, Platform};
use crate::postgres::Cluster;
use crate::writer::{self, Writer, Written};
use crate::{http, k6};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Drill {
    ReplicaKill,
    RollingRestart,
    DatabaseRestart,
    Release,
    Restore,
}

pub const ALL: [Drill; 5] = [
    Drill::ReplicaKill,
    Drill::RollingRestart,
    Drill::DatabaseRestart,
    Drill::Release,
    Drill::Restore,
];

impl Drill {
    pub fn name(self) -> &'static str {
        match self {
            Drill::ReplicaKill => "replica-kill",
            Drill::RollingRestart => "rolling-restart",
            Drill::DatabaseRestart => "database-restart",
            Drill::Release => "release",
            Drill::Restore => "restore",
        }
    }
}

/// How to run the drills.
#[derive(Debug, Clone)]
pub struct Settings {
    pub platformctl: PathBuf,
    /// The k6 scenario of the background load (`load/scenarios/steady.js`).
    pub script: PathBuf,
    pub port_offset: i32,
    /// User journeys per second from k6.
    pub rate: u32,
    /// Orders per second from the drill's own writer.
    pub write_rate: u32,
    /// Fewer faults, for CI.
    pub short: bool,
    /// The releases before this one, oldest first, for the release drill
    /// (`platformctl releases build <version>`): with two or more, blue
    /// starts on the next-to-last, green on the last, and this release (a
    /// contract release) replaces both in turn; with fewer, both colors run
    /// `platformctl` and the drill is a canary of orders only.
    pub previous: Vec<PathBuf>,
    /// The restore drill: orders in the database before its backup, one
    /// PostgreSQL cycle per size (the last one also restores to before a
    /// bad write), then one SQLite cycle with the largest.
    pub sizes: Vec<u64>,
}

/// What one drill saw.
pub struct Outcome {
    pub drill: Drill,
    /// What was done, for the report.
    pub faults: String,
    pub seconds: f64,
    pub k6_requests: usize,
    pub k6_failed: BTreeMap<u16, usize>,
    pub written: Written,
    pub integrity: Integrity,
    /// Drill-specific figures.
    pub notes: Vec<String>,
    /// Why it failed; empty when it passed.
    pub problems: Vec<String>,
    /// The restore drill's cycles, one per store and size.
    pub restores: Vec<crate::restore::Cycle>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    pub fn writes_failed(&self) -> usize {
        self.written
            .attempts
            .iter()
            .filter(|a| a.status != 200)
            .count()
    }

    pub fn k6_failed_total(&self) -> usize {
        self.k6_failed.values().sum()
    }

    pub fn line(&self) -> String {
        format!(
            "{}: {} in {:.0} s. {}; k6: {} requests, {} failed; writer: {} orders, {} failed ({} sent again with their request id until acknowledged); {}{}",
            self.drill.name(),
            if self.passed() { "PASS" } else { "FAIL" },
            self.seconds,
            self.faults,
            self.k6_requests,
            self.k6_failed_total(),
            self.written.attempts.len(),
            self.writes_failed(),
            self.written.retried,
            self.integrity.summary(),
            self.notes
                .iter()
                .chain(self.problems.iter().map(|p| p as &String))
                .map(|n| format!("; {n}"))
                .collect::<String>(),
        )
    }
}

fn run_platformctl(platform: &Platform, binary: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new(binary)
        .args(args)
        .arg("--data-dir")
        .arg(&platform.data_dir)
        .arg(format!("--admin-url={}", platform.admin_url()))
        .arg(format!("--gateway-url={}", platform.gateway_url()))
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    if !out.status.success() {
        bail!(
            "platformctl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A fresh account through the gateway; its bearer token.
pub async fn sign_up(port: u16, email: &str) -> anyhow::Result<String> {
    let credentials = format!(r#"{{"email":"{email}","password":"correct horse battery"}}"#);
    let timeout = Duration::from_secs(10);
    let registered = http::request(
        port,
        "POST",
        "/v1/auth/register",
        None,
        &credentials,
        timeout,
    )
    .await?;
    anyhow::ensure!(
        registered.status == 200,
        "register {email}: {}",
        registered.body
    );
    let login = http::request(port, "POST", "/v1/auth/login", None, &credentials, timeout).await?;
    anyhow::ensure!(
        login.status == 200,
        "login {email}: {} {}",
        login.status,
        login.body
    );
    let value: serde_json::Value = serde_json::from_str(&login.body).context("login answer")?;
    value["accessToken"]
        .as_str()
        .map(str::to_owned)
        .context("no accessToken in the login answer")
}

fn pid(platform: &Platform, process: &str) -> anyhow::Result<i32> {
    let file = platform.data_dir.join("run").join(format!("{process}.pid"));
    std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .trim()
        .parse()
        .with_context(|| format!("{} holds no pid", file.display()))
}

fn signal(pid: i32, signal: nix::sys::signal::Signal) -> anyhow::Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
        .with_context(|| format!("cannot signal process {pid}"))
}

/// How many endpoints of `service` in `color` answer SERVING, per the
/// gateway's own probes; none while the gateway does not answer at all.
async fn healthy(platform: &Platform, service: &str, color: &str) -> anyhow::Result<usize> {
    let color: Color = color
        .parse()
        .map_err(|()| anyhow::anyhow!("no color {color:?}"))?;
    let Ok(reply) = http::get(
        platform.admin_port,
        "/admin/status",
        Some(&platform.token),
        Duration::from_secs(5),
    )
    .await
    else {
        return Ok(0);
    };
    Ok(color_status(&reply, service, color)?.healthy)
}

/// The name of replica `replica` (0 first) of a service's color, as `up`
/// names its pid file.
fn process_name(service: &str, color: &str, replica: usize) -> String {
    match replica {
        0 => format!("{service}-{color}"),
        n => format!("{service}-{color}-{}", n + 1),
    }
}

pub(crate) const SERVICES: [&str; 4] = ["auth", "orders", "payments", "notifications"];

/// `kill -9` of live (blue) replicas, each service in turn.
async fn replica_kill(platform: &Platform, kills: usize) -> anyhow::Result<(String, Vec<String>)> {
    let mut killed = Vec::new();
    let mut recoveries = Vec::new();
    for n in 0..kills {
        let service = SERVICES[n % SERVICES.len()];
        let name = process_name(service, "blue", (n / SERVICES.len()) % 2);
        signal(pid(platform, &name)?, nix::sys::signal::Signal::SIGKILL)?;
        let since = Instant::now();
        killed.push(name);
        // Back when both replicas answer SERVING again (the supervisor
        // restarts the killed one).
        tokio::time::sleep(Duration::from_millis(200)).await;
        while healthy(platform, service, "blue").await? < 2 {
            anyhow::ensure!(
                since.elapsed() < Duration::from_secs(30),
                "{service} did not come back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        recoveries.push(since.elapsed().as_secs_f64());
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let slowest = recoveries.iter().copied().fold(0.0, f64::max);
    Ok((
        format!("{kills} kills -9 ({})", killed.join(", ")),
        vec![format!(
            "each killed replica back SERVING within {slowest:.1} s"
        )],
    ))
}

/// SIGTERM to every process of every service of `color`, one at a time,
/// the next only once the restarted one serves (the supervisor starts it
/// again from its binary's path, so a binary replaced there is the one that
/// comes back). The processes restarted, and the longest any took.
async fn restart_color(platform: &Platform, color: &str) -> anyhow::Result<(usize, f64)> {
    let mut restarted = 0;
    let mut slowest = 0.0f64;
    for service in SERVICES {
        for replica in 0..2 {
            let name = process_name(service, color, replica);
            let old = pid(platform, &name)?;
            let since = Instant::now();
            signal(old, nix::sys::signal::Signal::SIGTERM)?;
            // Restarted (a new pid) and both replicas SERVING again.
            loop {
                let new = pid(platform, &name).ok();
                if new.is_some_and(|p| p != old) && healthy(platform, service, color).await? == 2 {
                    break;
                }
                anyhow::ensure!(
                    since.elapsed() < Duration::from_secs(60),
                    "{name} did not come back after SIGTERM"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            slowest = slowest.max(since.elapsed().as_secs_f64());
            restarted += 1;
        }
    }
    Ok((restarted, slowest))
}

/// SIGTERM to every process of every service of `colors`, one at a time,
/// then the gateway.
async fn rolling_restart(
    platform: &Platform,
    colors: &[&str],
    work: &Path,
) -> anyhow::Result<(String, Vec<String>)> {
    let mut restarted = 0;
    let mut slowest = 0.0f64;
    for color in colors {
        let (count, longest) = restart_color(platform, color).await?;
        restarted += count;
        slowest = slowest.max(longest);
    }
    let gateway = gateway_restart(platform, work).await?;
    Ok((
        format!(
            "{restarted} service processes restarted one at a time ({} services x {} x 2 replicas), then the gateway",
            SERVICES.len(),
            colors.join(" and ")
        ),
        vec![format!(
            "each service process back SERVING within {slowest:.1} s of its SIGTERM; the gateway restarted in {gateway:.1} s with a standby sharing its ports"
        )],
    ))
}

/// Restarts the gateway without a gap, as a second instance on the same
/// machine would: a standby gateway with the running one's command line and
/// environment shares its ports (SO_REUSEPORT, which `up` turns on), the
/// supervised one is stopped the SIGTERM way (it drains) and comes back,
/// then the standby drains and stops. Returns the seconds it took.
async fn gateway_restart(platform: &Platform, work: &Path) -> anyhow::Result<f64> {
    let old = pid(platform, "gateway")?;
    let nul_separated = |path: String| -> anyhow::Result<Vec<String>> {
        let raw = std::fs::read(&path).with_context(|| format!("cannot read {path}"))?;
        Ok(raw
            .split(|b| *b == 0)
            .filter(|part| !part.is_empty())
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect())
    };
    let exe = std::fs::read_link(format!("/proc/{old}/exe"))?;
    let args = nul_separated(format!("/proc/{old}/cmdline"))?;
    let env = nul_separated(format!("/proc/{old}/environ"))?;
    let log_path = work.join("gateway-standby.log");
    let log = std::fs::File::create(&log_path)?;
    let mut standby = std::process::Command::new(exe)
        .args(args.iter().skip(1))
        .env_clear()
        .envs(env.iter().filter_map(|pair| pair.split_once('=')))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start a standby gateway")?;
    let since = Instant::now();
    let serving = |path: &Path| {
        std::fs::read_to_string(path)
            .map(|t| t.matches("gateway serving").count())
            .unwrap_or(0)
    };
    while serving(&log_path) == 0 {
        if let Some(status) = standby.try_wait()? {
            bail!(
                "the standby gateway exited ({status}): {}",
                platform::tail(&log_path, 5)
            );
        }
        anyhow::ensure!(
            since.elapsed() < Duration::from_secs(30),
            "the standby gateway did not serve"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let main_log = platform.data_dir.join("logs").join("gateway.log");
    let served_before = serving(&main_log);
    signal(old, nix::sys::signal::Signal::SIGTERM)?;
    while serving(&main_log) == served_before || pid(platform, "gateway").ok() == Some(old) {
        anyhow::ensure!(
            since.elapsed() < Duration::from_secs(60),
            "the gateway did not come back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let standby_pid = i32::try_from(standby.id()).context("pid")?;
    signal(standby_pid, nix::sys::signal::Signal::SIGTERM)?;
    let stopping = Instant::now();
    while standby.try_wait()?.is_none() {
        if stopping.elapsed() > Duration::from_secs(30) {
            let _ = standby.kill();
            bail!("the standby gateway did not stop within 30 s of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(since.elapsed().as_secs_f64())
}

/// Stops PostgreSQL for `down`, starts it again.
/// A canary of orders (10/50/100%) with the database restarted during its
/// first step: what the rollout did, and what went wrong with it.
async fn canary_through_outage(
    platform: &Platform,
    binary: &Path,
    cluster: &Cluster,
    down: Duration,
) -> anyhow::Result<((i64, i64), Vec<String>, Vec<String>)> {
    let started = Instant::now();
    let child = std::process::Command::new(binary)
        .args(in_steps("orders", "green", "4s"))
        .args(["--bake", "2s"])
        .arg("--data-dir")
        .arg(&platform.data_dir)
        .arg(format!("--admin-url={}", platform.admin_url()))
        .arg(format!("--gateway-url={}", platform.gateway_url()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    while weight(platform, "orders", Color::Green).await? < 10 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the orders canary did not start in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Watch the rollout through the outage: paused, never back to 0%.
    let watch = {
        let (port, token) = (platform.admin_port, platform.token.clone());
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut paused_at, mut resumed_at, mut lowest) = (None, None, 100u64);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(reply) =
                        http::get(port, "/admin/routes", Some(&token), Duration::from_secs(5)).await
                        && let Ok(routes) = serde_json::from_str::<serde_json::Value>(&reply.body)
                    {
                        let orders = &routes["services"]["orders"];
                        if orders["rollout"].is_object() {
                            lowest = lowest.min(orders["weights"]["green"].as_u64().unwrap_or(0));
                            let paused = orders["rollout"]["paused"] == true;
                            if paused && paused_at.is_none() {
                                paused_at = Some(writer::now_ms());
                            }
                            if !paused && paused_at.is_some() && resumed_at.is_none() {
                                resumed_at = Some(writer::now_ms());
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                (paused_at, resumed_at, lowest)
            })
        };
        (stop, seen)
    };
    let outage = database_restart(cluster, down).await?;
    let output = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .context("the canary did not end within 180 s of the restart")?
    .context("waiting for the canary")?
    .context("the canary's platformctl")?;
    watch.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let (paused_at, resumed_at, lowest) = watch.1.await.context("the canary's watcher")?;
    let said = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    let last = said
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_owned();
    let mut notes = Vec::new();
    let mut problems = Vec::new();
    match (paused_at, resumed_at) {
        (Some(paused), Some(resumed)) => notes.push(format!(
            "canary of orders at 10%: paused {:.1} s after the database stopped (both colors failing alike), resumed by itself {:.1} s after it was back; {last}",
            (paused - outage.0) as f64 / 1000.0,
            (resumed - outage.1) as f64 / 1000.0
        )),
        _ => problems.push(format!(
            "the canary was not paused and resumed through the outage (paused: {}, resumed: {}): {last}",
            paused_at.is_some(),
            resumed_at.is_some()
        )),
    }
    if output.status.code() != Some(0) {
        problems.push(format!(
            "the canary did not complete after the outage (exit {:?}): {last}",
            output.status.code()
        ));
    }
    if lowest == 0 {
        problems.push("the canary was rolled back: green went back to 0%".into());
    }
    Ok((outage, notes, problems))
}

async fn database_restart(cluster: &Cluster, down: Duration) -> anyhow::Result<(i64, i64)> {
    let stopped = writer::now_ms();
    cluster.stop()?;
    tokio::time::sleep(down).await;
    cluster.start()?;
    Ok((stopped, writer::now_ms()))
}

/// The share of `service`'s traffic that `color` has now.
async fn weight(platform: &Platform, service: &str, color: Color) -> anyhow::Result<u32> {
    let reply = http::get(
        platform.admin_port,
        "/admin/status",
        Some(&platform.token),
        Duration::from_secs(5),
    )
    .await?;
    Ok(color_status(&reply, service, color)?.weight)
}

/// `service`'s `color` in an answer of `/admin/status`.
fn color_status(
    reply: &http::Reply,
    service: &str,
    color: Color,
) -> anyhow::Result<view::ColorStatus> {
    if reply.status != 200 {
        bail!("/admin/status answered {}: {}", reply.status, reply.body);
    }
    let status: view::Status =
        serde_json::from_str(&reply.body).context("/admin/status: not a status document")?;
    let entry = status
        .services
        .get(service)
        .with_context(|| format!("/admin/status has no service {service:?}"))?;
    Ok(entry.colors.of(color).clone())
}

/// The arguments of `platformctl rollout <service> --to <color>` in steps
/// of 10/50/100% every `interval`, each judged on at least 5 calls.
fn in_steps<'a>(service: &'a str, to: &'a str, interval: &'a str) -> [&'a str; 10] {
    [
        "rollout",
        service,
        "--to",
        to,
        "--steps",
        "10,50,100",
        "--interval",
        interval,
        "--min-requests",
        "5",
    ]
}

/// Starts `platformctl rollout orders --to green` in steps 10/50/100 and
/// waits until green has 50%.
async fn canary_to_half(
    platform: &Platform,
    binary: &Path,
    interval: &str,
) -> anyhow::Result<std::process::Child> {
    let child = std::process::Command::new(binary)
        .args(in_steps("orders", "green", interval))
        .arg("--data-dir")
        .arg(&platform.data_dir)
        .arg(format!("--admin-url={}", platform.admin_url()))
        .arg(format!("--gateway-url={}", platform.gateway_url()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let deadline = Instant::now() + Duration::from_secs(180);
    while weight(platform, "orders", Color::Green).await? < 50 {
        if Instant::now() > deadline {
            bail!("the orders canary did not reach 50% in 180 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(child)
}

/// Waits for a `platformctl rollout` that was just ended by another command.
async fn ended(mut child: std::process::Child) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .context("waiting for the rollout")?
        .context("the rollout process")?;
    Ok(())
}

/// Where each color's binary lives (a copy `up` runs the color from), and
/// the release that replaces them.
pub struct Upgrade {
    blue: PathBuf,
    green: PathBuf,
    to: PathBuf,
    version: String,
}

impl Upgrade {
    /// Copies of the next-to-last and last of `previous` for blue and
    /// green under `work`; `to` replaces them later.
    fn prepare(previous: &[PathBuf], to: &Path, work: &Path) -> anyhow::Result<Option<Self>> {
        let [.., older, newer] = previous else {
            return Ok(None);
        };
        let upgrade = Self {
            blue: work.join("blue").join("platformctl"),
            green: work.join("green").join("platformctl"),
            to: to.to_path_buf(),
            version: version_of(to)?,
        };
        for (from, at) in [(older, &upgrade.blue), (newer, &upgrade.green)] {
            copy_binary(from, at)?;
        }
        Ok(Some(upgrade))
    }

    /// Puts the new release where `color`'s processes start from.
    fn install(&self, color: Color) -> anyhow::Result<()> {
        let at = match color {
            Color::Blue => &self.blue,
            Color::Green => &self.green,
        };
        copy_binary(&self.to, at)
    }
}

/// Copies an executable into place atomically (a process starting from
/// `to` never sees half a file).
fn copy_binary(from: &Path, to: &Path) -> anyhow::Result<()> {
    let dir = to.parent().context("binary path")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let partial = dir.join(".platformctl.partial");
    std::fs::copy(from, &partial)
        .and_then(|_| std::fs::rename(&partial, to))
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Orders from the older release on blue to the newer on green (its
/// migration applied at start): a canary rolled back at 50%, rolled
/// forward and promoted at 50%; with an `upgrade`, the contract release
/// then replaces both colors in turn and its contract step is applied;
/// then payments rolled out to green in steps.
async fn release(
    platform: &Platform,
    binary: &Path,
    upgrade: Option<&Upgrade>,
    short: bool,
) -> anyhow::Result<(String, Vec<String>)> {
    let interval = if short { "3s" } else { "10s" };
    let since = Instant::now();
    let canary = canary_to_half(platform, binary, interval).await?;
    run_platformctl(platform, binary, &["rollback", "orders"])?;
    ended(canary).await?;
    let back = weight(platform, "orders", Color::Green).await?;
    if back != 0 {
        bail!("after the rollback green still has {back}% of orders");
    }
    // The previous release serves every order again, those the new one
    // wrote included, for a while.
    tokio::time::sleep(Duration::from_secs(if short { 3 } else { 10 })).await;
    let forward = canary_to_half(platform, binary, interval).await?;
    run_platformctl(platform, binary, &["promote", "orders"])?;
    ended(forward).await?;
    let promoted = weight(platform, "orders", Color::Green).await?;
    if promoted != 100 {
        bail!("after the promotion green has {promoted}% of orders");
    }
    let orders_took = since.elapsed().as_secs_f64();
    let mut done =
        "orders: canary 10/50% rolled back at 50%, rolled forward, promoted at 50%".to_owned();
    let mut notes = vec![format!("orders' release took {orders_took:.0} s")];
    if let Some(upgrade) = upgrade {
        let since = Instant::now();
        // The contract release replaces blue (idle now), takes orders in
        // steps, replaces green, and then its contract step is applied.
        upgrade.install(Color::Blue)?;
        restart_color(platform, "blue").await?;
        run_platformctl(platform, binary, &in_steps("orders", "blue", interval))?;
        upgrade.install(Color::Green)?;
        restart_color(platform, "green").await?;
        run_platformctl(platform, binary, &["migrate", "orders", "--contract"])?;
        done.push_str(&format!(
            "; then {} replaced blue, took orders in steps 10/50/100%, replaced green, and its \
             contract step was applied",
            upgrade.version
        ));
        notes.push(format!(
            "the contract release took {:.0} s",
            since.elapsed().as_secs_f64()
        ));
    }
    let since = Instant::now();
    run_platformctl(platform, binary, &in_steps("payments", "green", interval))?;
    done.push_str(&format!(
        "; payments rolled out to green in steps 10/50/100% every {interval}"
    ));
    notes.push(format!(
        "the payments rollout took {:.0} s",
        since.elapsed().as_secs_f64()
    ));
    Ok((done, notes))
}

/// What `platformctl --version` says, without the name.
pub fn version_of(binary: &Path) -> anyhow::Result<String> {
    let out = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let said = String::from_utf8_lossy(&out.stdout);
    said.trim()
        .strip_prefix("platformctl ")
        .map(str::to_owned)
        .with_context(|| format!("{} is not a platformctl binary", binary.display()))
}

/// Waits until `replicas` endpoints of every service and color serve (the
/// gateway is ready before the services are).
pub(crate) async fn serving(
    platform: &Platform,
    replicas: usize,
    within: Duration,
) -> anyhow::Result<()> {
    let since = Instant::now();
    for service in SERVICES {
        for color in ["blue", "green"] {
            while healthy(platform, service, color).await? < replicas {
                anyhow::ensure!(
                    since.elapsed() < within,
                    "{service} {color} is not SERVING {} s after the start",
                    within.as_secs()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    Ok(())
}

/// The drills' steady load: k6's user journeys, then (once k6 has signed
/// its users up and is loading) the order writer as the user of `token`.
pub(crate) async fn steady_load(
    platform: &Platform,
    args: &Settings,
    work: &Path,
    token: &str,
    tag: &str,
) -> anyhow::Result<(k6::Running, Writer)> {
    let load = k6::Load {
        k6: k6::find()?,
        script: args.script.clone(),
        base_url: platform.gateway_url(),
        rate: args.rate,
        duration: Duration::from_secs(3600),
        users: 10,
        write_every: 0,
        scenario: "users".into(),
        env: vec![("STREAMS".into(), "0".into())],
    };
    let running = load.start(work)?;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let writer = Writer::start(
        platform.gateway_port,
        token.to_owned(),
        args.write_rate,
        tag,
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    Ok((running, writer))
}

/// Runs one drill on a fresh platform in `work`.
pub async fn run(drill: Drill, args: &Settings, work: &Path) -> anyhow::Result<Outcome> {
    if drill == Drill::Restore {
        return crate::restore::run(args, work).await;
    }
    // Without k6, fail before anything starts.
    k6::find()?;
    let cluster = match drill {
        Drill::DatabaseRestart => {
            let port = u16::try_from(55_432 + 7 + args.port_offset % 100).unwrap_or(55_439);
            Some(Cluster::create(port)?)
        }
        _ => None,
    };
    let mut extra_args = vec!["--replicas".to_owned(), "2".to_owned()];
    if let Some(cluster) = &cluster {
        extra_args.extend(["--postgres".to_owned(), cluster.url()]);
    }
    let (mut blue_version, mut green_version) = ("1.0.0".to_owned(), "1.1.0".to_owned());
    let upgrade = match drill {
        Drill::Release => Upgrade::prepare(&args.previous, &args.platformctl, work)?,
        _ => None,
    };
    if let Some(upgrade) = &upgrade {
        for (flag, at) in [
            ("--blue-bin", &upgrade.blue),
            ("--green-bin", &upgrade.green),
        ] {
            extra_args.extend([flag.to_owned(), at.display().to_string()]);
        }
        blue_version = version_of(&upgrade.blue)?;
        green_version = version_of(&upgrade.green)?;
    }
    let config = platform::Config {
        platformctl: args.platformctl.clone(),
        port_offset: args.port_offset,
        blue_version,
        green_version,
        green_env: Vec::new(),
        extra_args,
        ready_timeout: Duration::from_secs(120),
    };
    let platform = Platform::start(&config, work).await?;
    serving(&platform, 2, Duration::from_secs(120)).await?;
    let token = sign_up(
        platform.gateway_port,
        &format!("drill-{}@example.com", writer::now_ms()),
    )
    .await?;

    let (running, writer) = steady_load(&platform, args, work, &token, drill.name()).await?;
    let started = Instant::now();
    let mut notes = Vec::new();
    let mut outage = None;
    let mut canary_problems = Vec::new();
    let faults = match drill {
        Drill::ReplicaKill => {
            let (faults, more) = replica_kill(&platform, if args.short { 4 } else { 12 }).await?;
            notes.extend(more);
            faults
        }
        Drill::RollingRestart => {
            let colors: &[&str] = if args.short {
                &["blue"]
            } else {
                &["blue", "green"]
            };
            let (faults, more) = rolling_restart(&platform, colors, work).await?;
            notes.extend(more);
            faults
        }
        Drill::DatabaseRestart => {
            let down = Duration::from_secs(if args.short { 3 } else { 10 });
            let cluster = cluster
                .as_ref()
                .context("the database drill has a cluster")?;
            let (window, more, wrong) =
                canary_through_outage(&platform, &args.platformctl, cluster, down).await?;
            outage = Some(window);
            notes.extend(more);
            canary_problems = wrong;
            format!(
                "PostgreSQL stopped (fast shutdown) for {} s, then started, during the first step of a canary of orders",
                down.as_secs()
            )
        }
        Drill::Release => {
            let (faults, more) =
                release(&platform, &args.platformctl, upgrade.as_ref(), args.short).await?;
            notes.extend(more);
            faults
        }
        Drill::Restore => bail!("the restore drill runs its own platforms (restore::run)"),
    };
    // Load goes on for a while after the fault: recovery is part of the drill.
    tokio::time::sleep(Duration::from_secs(if args.short { 5 } else { 10 })).await;
    let seconds = started.elapsed().as_secs_f64();
    let written = writer.finish(platform.gateway_port, &token).await;
    let outcomes = running.interrupt(Duration::from_secs(30)).await?;
    let integrity = integrity::of_written(platform.gateway_port, &token, &written).await?;
    platform.stop().await?;

    let mut k6_failed = BTreeMap::new();
    for o in outcomes.iter().filter(|o| o.failed) {
        *k6_failed.entry(o.status).or_insert(0) += 1;
    }
    let mut outcome = Outcome {
        drill,
        faults,
        seconds,
        k6_requests: outcomes.len(),
        k6_failed,
        written,
        integrity,
        notes,
        problems: Vec::new(),
        restores: Vec::new(),
    };
    judge(&mut outcome, &outcomes, outage);
    outcome.problems.extend(canary_problems);
    Ok(outcome)
}

/// Fills in what went wrong, if anything.
fn judge(outcome: &mut Outcome, requests: &[k6::Outcome], outage: Option<(i64, i64)>) {
    if !outcome.integrity.ok() {
        outcome.problems.push(outcome.integrity.summary());
    }
    if outcome.written.acks.is_empty() {
        outcome
            .problems
            .push("no order was acknowledged at all".into());
    }
    let writes: Vec<&writer::Attempt> = outcome
        .written
        .attempts
        .iter()
        .filter(|a| a.status != 200)
        .collect();
    match outage {
        None => {
            if outcome.k6_failed_total() > 0 {
                outcome.problems.push(format!(
                    "k6 saw failed requests, by status: {:?}",
                    outcome.k6_failed
                ));
            }
            if let Some(first) = writes.first() {
                outcome.problems.push(format!(
                    "{} order creations failed, the first with {}: {}",
                    writes.len(),
                    first.status,
                    first.body
                ));
            }
        }
        Some((down, up)) => {
            // Failures are allowed while the database is away (and for the
            // pools to reconnect after), as fast, clean 503s.
            let grace = 5_000;
            let outside = requests
                .iter()
                .filter(|r| r.failed && (r.at_ms < down || r.at_ms > up + grace))
                .count()
                + writes
                    .iter()
                    // Ended before the stop, or sent after the grace: a write
                    // in flight when the database went away is in the outage.
                    .filter(|a| a.end_ms() < down || a.at_ms > up + grace)
                    .count();
            if outside > 0 {
                outcome
                    .problems
                    .push(format!("{outside} requests failed outside the outage"));
            }
            let unclean: BTreeMap<u16, usize> = requests
                .iter()
                .filter(|r| r.failed && r.status != 503)
                .map(|r| r.status)
                .chain(writes.iter().filter(|a| a.status != 503).map(|a| a.status))
                .fold(BTreeMap::new(), |mut m, s| {
                    *m.entry(s).or_insert(0) += 1;
                    m
                });
            if !unclean.is_empty() {
                outcome
                    .problems
                    .push(format!("failures other than 503, by status: {unclean:?}"));
            }
            // Fast: every order sent while the database was away was
            // answered (503 or, once it was back, 200) within 2 s.
            let slowest = outcome
                .written
                .attempts
                .iter()
                .filter(|a| a.at_ms >= down && a.at_ms <= up)
                .map(|a| a.took)
                .max()
                .unwrap_or_default();
            if slowest > Duration::from_secs(2) {
                outcome.problems.push(format!(
                    "an order sent during the outage waited {:.1} s for its answer: not fast",
                    slowest.as_secs_f64()
                ));
            }
            // From the database being back to the first acknowledgement the
            // client received (a request may have been sent before).
            let recovered = outcome
                .written
                .attempts
                .iter()
                .filter(|a| a.status == 200)
                .map(|a| a.end_ms() - up)
                .filter(|ms| *ms >= 0)
                .min();
            match recovered {
                Some(ms) => outcome.notes.push(format!(
                    "{} requests failed while it was down; orders sent meanwhile were answered within {} ms; first order acknowledged {:.1} s after the database was back",
                    outcome.k6_failed_total() + writes.len(),
                    slowest.as_millis(),
                    ms as f64 / 1000.0
                )),
                None => outcome.problems.push("no order succeeded after the database came back".into()),
            }
        }
    }
}
