//! The restore drill: under steady load (k6's user journeys and the
//! drills' order writer), a database with `seed` orders is backed up, the
//! writes go on, and then the data is destroyed (PostgreSQL's data
//! directory removed with the server killed; or the SQLite files, with
//! every process of the platform killed) and restored with `platformctl
//! restore` to the newest point the backups hold. Measured:
//!
//! - RPO: acknowledged orders missing after the restore, and the seconds of
//!   writes they span. PostgreSQL runs `platformctl backup stream
//!   --synchronous`, so every commit waits for the streamed WAL: none may be
//!   missing. A SQLite backup is a snapshot: the orders acknowledged after
//!   it are what it can lose, and the drill checks that exactly those are.
//! - RTO: from the start of the restore (the platform is stopped, a
//!   restore into a running one is refused) to every service SERVING and
//!   the first order acknowledged.
//! - Integrity: every acknowledged order that must survive exists, matches
//!   its charge, and was charged once (`integrity`).
//!
//! With `pitr`, PostgreSQL is then restored to a time just before a bad
//! write (every order of the writer's user cancelled by a mistaken
//! statement): the orders acknowledged before that time are back as they
//! were, and those written after it are the ones missing.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::{AnyConnection, Connection, Executor};

use crate::drills::{self, SERVICES, Settings};
use crate::http;
use crate::integrity::{self, Integrity};
use crate::platform::{self, Platform};
use crate::postgres::Cluster;
use crate::writer::{self, Writer, Written};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Postgres,
    Sqlite,
}

impl Store {
    pub fn name(self) -> &'static str {
        match self {
            Store::Postgres => "PostgreSQL",
            Store::Sqlite => "SQLite",
        }
    }
}

/// A restore to a time before a bad write.
#[derive(Debug, Default)]
pub struct Pitr {
    pub target_ms: i64,
    /// Orders acknowledged before the target time: all must be back, none cancelled.
    pub before: usize,
    pub before_missing: usize,
    pub before_cancelled: usize,
    /// Orders sent after the target time: none may be back.
    pub after: usize,
    pub after_present: usize,
    /// How many orders the bad write cancelled.
    pub cancelled_by_mistake: u64,
    pub restore_s: f64,
    /// The restore's own words: its time and the newest order it holds.
    pub said: String,
}

/// One backup, destruction and restore.
pub struct Cycle {
    pub store: Store,
    pub seeded: u64,
    pub mib: f64,
    pub backup_s: f64,
    pub k6_requests: usize,
    pub k6_failed: usize,
    pub written: Written,
    /// Acknowledged orders missing after the restore, and the seconds
    /// between the first and last of them.
    pub lost: usize,
    pub lost_span_s: f64,
    /// For SQLite: orders acknowledged after the snapshot (what it may lose).
    pub after_snapshot: usize,
    pub restore_s: f64,
    pub serving_s: f64,
    pub first_order_s: f64,
    pub integrity: Integrity,
    pub report: String,
    pub pitr: Option<Pitr>,
    /// PostgreSQL: median commit time with the stream waited for and
    /// without, measured side by side (ms).
    pub commit_ms: Option<(f64, f64)>,
    pub problems: Vec<String>,
}

impl Cycle {
    pub fn line(&self) -> String {
        format!(
            "{} with {} seeded orders ({:.0} MiB): backup {:.1} s; RPO {} acknowledged orders lost{}; RTO {:.1} s (restore {:.1} s, all SERVING at {:.1} s, first order at {:.1} s); {}{}{}",
            self.store.name(),
            self.seeded,
            self.mib,
            self.backup_s,
            self.lost,
            match self.store {
                Store::Sqlite => format!(
                    " ({} acknowledged after the snapshot, over {:.1} s)",
                    self.after_snapshot, self.lost_span_s
                ),
                Store::Postgres => String::new(),
            },
            self.first_order_s,
            self.restore_s,
            self.serving_s,
            self.first_order_s,
            self.integrity.summary(),
            self.pitr
                .as_ref()
                .map(|p| format!(
                    "; restore to before a bad write ({} orders cancelled by mistake): {} acknowledged before it back ({} missing, {} still cancelled), {} sent after it gone ({} back) in {:.1} s",
                    p.cancelled_by_mistake,
                    p.before - p.before_missing,
                    p.before_missing,
                    p.before_cancelled,
                    p.after - p.after_present,
                    p.after_present,
                    p.restore_s
                ))
                .unwrap_or_default(),
            self.problems
                .iter()
                .map(|p| format!("; {p}"))
                .collect::<String>()
        )
    }

    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Runs `platformctl` with `args`; its output, or what it said as the error.
fn ctl(binary: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(binary)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {}", binary.display()))?;
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("platformctl {} failed: {}", args.join(" "), said.trim());
    }
    Ok(said)
}

/// `n` paid orders, each with its item and its approved charge, written
/// straight into the databases (what months of traffic leave behind).
async fn seed(orders: &str, payments: &str, postgres: bool, n: u64) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    const BATCH: u64 = 100_000;
    let (series, id) = if postgres {
        (
            "generate_series($1::bigint, $2::bigint) AS g(x)",
            "'seed-' || lpad(x::text, 9, '0')",
        )
    } else {
        (
            "(WITH RECURSIVE s(x) AS (SELECT $1 UNION ALL SELECT x + 1 FROM s WHERE x < $2) SELECT x FROM s)",
            "printf('seed-%09d', x)",
        )
    };
    let mut conn = AnyConnection::connect(orders)
        .await
        .context("seeding orders")?;
    let mut pay = AnyConnection::connect(payments)
        .await
        .context("seeding payments")?;
    if !postgres {
        for c in [&mut conn, &mut pay] {
            c.execute("PRAGMA busy_timeout = 10000").await?;
        }
    }
    let mut from = 1;
    while from <= n {
        let to = (from + BATCH - 1).min(n);
        let (from_i, to_i) = (i64::try_from(from)?, i64::try_from(to)?);
        let mut tx = conn.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO orders (id, user_id, status, total_minor, currency, payment_method, payment_id, created_at_ms, updated_at_ms) \
             SELECT {id}, 'seed-user-' || (x % 1000), 'paid', 2500, 'EUR', 'pm_card_visa', 'pay-' || {id}, 1700000000000 + x, 1700000000000 + x FROM {series}"
        ))
        .bind(from_i)
        .bind(to_i)
        .execute(&mut *tx)
        .await
        .context("seeding orders")?;
        sqlx::query(&format!(
            "INSERT INTO order_items (order_id, line, sku, quantity, unit_price_minor) SELECT {id}, 0, 'book-1', 2, 1250 FROM {series}"
        ))
        .bind(from_i)
        .bind(to_i)
        .execute(&mut *tx)
        .await
        .context("seeding order items")?;
        tx.commit().await?;
        sqlx::query(&format!(
            "INSERT INTO payments (id, idempotency_key, order_id, user_id, amount_minor, currency, payment_method, status, created_at_ms) \
             SELECT 'pay-' || {id}, {id}, {id}, 'seed-user-' || (x % 1000), 2500, 'EUR', 'pm_card_visa', 'approved', 1700000000000 + x FROM {series}"
        ))
        .bind(from_i)
        .bind(to_i)
        .execute(&mut pay)
        .await
        .context("seeding payments")?;
        from = to + 1;
    }
    Ok(())
}

/// The size of the platform's databases, MiB.
async fn size_mib(store: Store, data_dir: &Path, url: &str) -> anyhow::Result<f64> {
    Ok(match store {
        Store::Sqlite => {
            let mut bytes = 0u64;
            for service in SERVICES {
                for suffix in ["", "-wal"] {
                    bytes += std::fs::metadata(
                        data_dir.join(service).join(format!("{service}.db{suffix}")),
                    )
                    .map(|m| m.len())
                    .unwrap_or(0);
                }
            }
            bytes as f64 / 1048576.0
        }
        Store::Postgres => {
            let mut conn = AnyConnection::connect(&format!("{url}/postgres")).await?;
            let (bytes,): (i64,) = sqlx::query_as(
                "SELECT CAST(SUM(pg_database_size(datname)) AS BIGINT) FROM pg_database WHERE datname LIKE 'platform_%'",
            )
            .fetch_one(&mut conn)
            .await?;
            bytes as f64 / 1048576.0
        }
    })
}

/// Every service and color (one replica each) SERVING.
async fn all_serving(platform: &Platform) -> anyhow::Result<()> {
    drills::serving(platform, 1, Duration::from_secs(180)).await
}

/// Sends orders until one is acknowledged; when it was.
async fn first_order(port: u16, token: &str) -> anyhow::Result<Instant> {
    let since = Instant::now();
    let mut n = 0;
    loop {
        n += 1;
        let body = format!(
            r#"{{"items":[{{"sku":"pen-7","quantity":1,"unitPriceMinor":199}}],"currency":"EUR","paymentMethod":"pm_card_visa","requestId":"rto-{}-{n}"}}"#,
            writer::now_ms()
        );
        if let Ok(reply) = http::request(
            port,
            "POST",
            "/v1/orders",
            Some(token),
            &body,
            Duration::from_secs(10),
        )
        .await
            && reply.status == 200
        {
            return Ok(Instant::now());
        }
        anyhow::ensure!(
            since.elapsed() < Duration::from_secs(300),
            "no order acknowledged 300 s after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn platform_config(
    settings: &Settings,
    store: Store,
    cluster: Option<&Cluster>,
) -> platform::Config {
    let mut extra_args = vec!["--replicas".to_owned(), "1".to_owned()];
    if let (Store::Postgres, Some(cluster)) = (store, cluster) {
        extra_args.extend(["--postgres".to_owned(), cluster.url()]);
    }
    platform::Config {
        platformctl: settings.platformctl.clone(),
        port_offset: settings.port_offset,
        blue_version: "1.0.0".into(),
        green_version: "1.1.0".into(),
        green_env: Vec::new(),
        extra_args,
        ready_timeout: Duration::from_secs(180),
    }
}

/// One cycle on `store` with `seeded` orders; with `pitr` (PostgreSQL), a
/// restore to before a bad write follows.
pub async fn cycle(
    settings: &Settings,
    work: &Path,
    store: Store,
    seeded: u64,
    pitr: bool,
) -> anyhow::Result<Cycle> {
    let binary = settings.platformctl.as_path();
    let cluster = match store {
        // fsync on: the stream's cost is measured against durable commits.
        Store::Postgres => Some(Cluster::create_durable(
            u16::try_from(55_432 + 8 + settings.port_offset % 100).unwrap_or(55_440),
        )?),
        Store::Sqlite => None,
    };
    let config = platform_config(settings, store, cluster.as_ref());
    let platform = Platform::start(&config, work).await?;
    all_serving(&platform).await?;
    let data_dir = platform.data_dir.clone();
    let data = data_dir.display().to_string();
    let repo = work.join("backups");
    let repo_arg = repo.display().to_string();
    let (orders_url, payments_url) = match &cluster {
        Some(c) => (
            format!("{}/platform_orders", c.url()),
            format!("{}/platform_payments", c.url()),
        ),
        None => (
            format!("sqlite://{}/orders/orders.db", data),
            format!("sqlite://{}/payments/payments.db", data),
        ),
    };
    seed(&orders_url, &payments_url, store == Store::Postgres, seeded).await?;
    let mut stream = None;
    if let Some(cluster) = &cluster {
        ctl(
            binary,
            &[
                "backup",
                "setup",
                "--postgres",
                &cluster.url(),
                "--repo",
                &repo_arg,
            ],
        )?;
        let log = std::fs::File::create(work.join("stream.log"))?;
        stream = Some(
            tokio::process::Command::new(binary)
                .args(["backup", "stream", "--synchronous", "--repo", &repo_arg])
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .context("cannot start platformctl backup stream")?,
        );
        // Setup restarted the server once: the platform reconnects.
        all_serving(&platform).await?;
        synchronous(&cluster.url()).await?;
    }
    let commit_ms = match &cluster {
        Some(cluster) => Some(commit_cost(&cluster.url()).await?),
        None => None,
    };
    let token = drills::sign_up(
        platform.gateway_port,
        &format!("restore-{}@example.com", writer::now_ms()),
    )
    .await?;
    // The RTO probe's own user, so its orders are not the writer's.
    let probe = drills::sign_up(
        platform.gateway_port,
        &format!("probe-{}@example.com", writer::now_ms()),
    )
    .await?;
    let (running, writer) =
        drills::steady_load(&platform, settings, work, &token, "restore").await?;

    let mib = size_mib(
        store,
        &data_dir,
        &cluster.as_ref().map(Cluster::url).unwrap_or_default(),
    )
    .await?;
    let since = Instant::now();
    let backup_started_ms = writer::now_ms();
    match store {
        Store::Postgres => ctl(binary, &["backup", "--type", "full", "--repo", &repo_arg])?,
        Store::Sqlite => ctl(
            binary,
            &["backup", "--data-dir", &data, "--repo", &repo_arg],
        )?,
    };
    let backup_s = since.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(if settings.short { 5 } else { 15 })).await;

    // The data is lost.
    let destroyed_ms = writer::now_ms();
    let stopping = match &cluster {
        Some(cluster) => {
            cluster.destroy()?;
            Some(platform)
        }
        None => {
            platform.kill()?;
            for service in SERVICES {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(
                        data_dir.join(service).join(format!("{service}.db{suffix}")),
                    );
                }
            }
            None
        }
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let restore_started = Instant::now();
    // A restore into a running platform is refused: it is stopped first.
    if let Some(platform) = stopping {
        platform.stop().await.ok();
    }
    let said = ctl(
        binary,
        &["restore", "--data-dir", &data, "--repo", &repo_arg],
    )?;
    let restore_s = restore_started.elapsed().as_secs_f64();
    let mut platform = Platform::start(&config, work).await?;
    all_serving(&platform).await?;
    let serving_s = restore_started.elapsed().as_secs_f64();
    let first = first_order(platform.gateway_port, &probe).await?;
    let first_order_s = (first - restore_started).as_secs_f64();
    tokio::time::sleep(Duration::from_secs(5)).await;

    let written = writer.finish(platform.gateway_port, &token).await;
    let outcomes = running.interrupt(Duration::from_secs(30)).await?;
    let mut problems = Vec::new();
    // What each store promises: PostgreSQL every acknowledged order; a
    // SQLite snapshot those acknowledged before its copy of orders began.
    let snapshot_ms = match store {
        Store::Postgres => destroyed_ms,
        Store::Sqlite => backup_started_ms,
    };
    let integrity = integrity::of_written(platform.gateway_port, &token, &written).await?;
    let acked_at: std::collections::HashMap<&str, i64> = written
        .acks
        .iter()
        .map(|a| (a.id.as_str(), a.at_ms))
        .collect();
    let at_risk = |ms: i64| ms >= snapshot_ms && ms <= destroyed_ms;
    let (expected, unexpected): (Vec<i64>, Vec<i64>) = integrity
        .lost
        .iter()
        .map(|id| acked_at.get(id.as_str()).copied().unwrap_or(0))
        .partition(|ms| at_risk(*ms));
    let after = written.acks.iter().filter(|a| at_risk(a.at_ms)).count();
    let lost = integrity.lost.len();
    let lost_span_s = match (expected.iter().min(), expected.iter().max()) {
        (Some(a), Some(b)) => (b - a) as f64 / 1000.0,
        _ => 0.0,
    };
    if !unexpected.is_empty() {
        problems.push(format!(
            "{} acknowledged orders lost that the backup held",
            unexpected.len()
        ));
    }
    // Orders the snapshot lost are not duplicates; every other order of the
    // user must be one of its acknowledged requests.
    if !integrity.inconsistent.is_empty()
        || !integrity.double_charged.is_empty()
        || integrity.unresolved > 0
        || integrity.duplicates > 0
    {
        problems.push(integrity.summary());
    }
    // Until the data is lost and again once the first order is back, the
    // user journeys must not fail (a request in flight at either edge may).
    let back_ms = writer::now_ms() - i64::try_from(first.elapsed().as_millis()).unwrap_or(0);
    let outside = outcomes
        .iter()
        .filter(|o| o.failed && (o.at_ms < destroyed_ms - 1_000 || o.at_ms > back_ms + 1_000))
        .count();
    if outside > 0 {
        problems.push(format!(
            "{outside} k6 requests failed outside the loss and the restore"
        ));
    }
    if store == Store::Postgres && lost > 0 {
        problems.push(format!(
            "{lost} acknowledged orders lost with the WAL streamed synchronously"
        ));
    }
    let report = said
        .lines()
        .filter(|l| {
            l.starts_with("consistency")
                || l.starts_with("repaired")
                || l.starts_with("needs an operator")
                || l.starts_with("restored")
        })
        .collect::<Vec<_>>()
        .join(" / ");

    let pitr = match (&cluster, pitr) {
        (Some(cluster), true) => {
            let (restarted, pitr) = before_a_bad_write(
                binary,
                platform,
                &config,
                work,
                cluster,
                &repo_arg,
                &token,
                &orders_url,
            )
            .await?;
            platform = restarted;
            Some(pitr)
        }
        _ => None,
    };
    if let Some(p) = &pitr
        && (p.before_missing > 0 || p.before_cancelled > 0 || p.after_present > 0)
    {
        problems.push("the restore to before the bad write did not bring back exactly what was written before it".into());
    }
    platform.stop().await?;
    drop(stream);
    Ok(Cycle {
        store,
        seeded,
        mib,
        backup_s,
        k6_requests: outcomes.len(),
        k6_failed: outcomes.iter().filter(|o| o.failed).count(),
        after_snapshot: after,
        written,
        lost,
        lost_span_s,
        restore_s,
        serving_s,
        first_order_s,
        integrity,
        report,
        pitr,
        commit_ms,
        problems,
    })
}

/// Orders written for a while; a moment noted; every order of the user
/// cancelled by a mistaken statement; orders still written; then the server
/// stopped and restored to the moment noted.
#[allow(clippy::too_many_arguments)]
async fn before_a_bad_write(
    binary: &Path,
    platform: Platform,
    config: &platform::Config,
    work: &Path,
    cluster: &Cluster,
    repo: &str,
    token: &str,
    orders_url: &str,
) -> anyhow::Result<(Platform, Pitr)> {
    let writer = Writer::start(platform.gateway_port, token.to_owned(), 10, "pitr");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let target_ms = writer::now_ms();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cancelled_by_mistake = {
        // The writer's user: the one of the newest order.
        let mut conn = AnyConnection::connect(orders_url).await?;
        let (user,): (String,) = sqlx::query_as(
            "SELECT user_id FROM orders WHERE id NOT LIKE 'seed-%' ORDER BY created_at_ms DESC LIMIT 1",
        )
        .fetch_one(&mut conn)
        .await?;
        sqlx::query("UPDATE orders SET status = 'cancelled' WHERE user_id = $1")
            .bind(&user)
            .execute(&mut conn)
            .await?
            .rows_affected()
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let written = writer.finish(platform.gateway_port, token).await;
    platform.stop().await?;
    cluster.stop()?;
    let since = Instant::now();
    let target = format!(
        "{}.{:03}",
        platform_runtime::time::utc(target_ms),
        target_ms.rem_euclid(1000)
    );
    let data = work.join("data").display().to_string();
    let said = ctl(
        binary,
        &[
            "restore",
            "--target-time",
            &target,
            "--data-dir",
            &data,
            "--repo",
            repo,
        ],
    )?;
    let restore_s = since.elapsed().as_secs_f64();
    let platform = Platform::start(config, work).await?;
    all_serving(&platform).await?;
    let mut pitr = Pitr {
        target_ms,
        cancelled_by_mistake,
        restore_s,
        said: said
            .lines()
            .filter(|l| l.starts_with("restored") || l.starts_with("consistency"))
            .collect::<Vec<_>>()
            .join(" / "),
        ..Pitr::default()
    };
    for ack in &written.acks {
        let reply = http::get(
            platform.gateway_port,
            &format!("/v1/orders/{}", ack.id),
            Some(token),
            Duration::from_secs(10),
        )
        .await?;
        if ack.at_ms < target_ms {
            pitr.before += 1;
            pitr.before_missing += usize::from(reply.status == 404);
            pitr.before_cancelled += usize::from(reply.body.contains("ORDER_STATUS_CANCELLED"));
        } else if request_sent_ms(&ack.request_id) > target_ms {
            pitr.after += 1;
            pitr.after_present += usize::from(reply.status == 200);
        }
    }
    Ok((platform, pitr))
}

/// When the writer sent a request: its id is `<tag>-<ms>-<n>`.
fn request_sent_ms(request_id: &str) -> i64 {
    request_id
        .split('-')
        .nth(1)
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(i64::MAX)
}

/// The restore drill: a PostgreSQL cycle per size in `settings.sizes` (the
/// last with a restore to before a bad write), then SQLite with the largest.
pub async fn run(settings: &Settings, work: &Path) -> anyhow::Result<drills::Outcome> {
    let started = Instant::now();
    let sizes = if settings.sizes.is_empty() {
        vec![0]
    } else {
        settings.sizes.clone()
    };
    let mut cycles = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let dir = work.join(format!("postgres-{size}"));
        std::fs::create_dir_all(&dir)?;
        eprintln!("[restore] PostgreSQL with {size} orders");
        let cycle = cycle(settings, &dir, Store::Postgres, *size, i + 1 == sizes.len()).await?;
        eprintln!("[restore] {}", cycle.line());
        cycles.push(cycle);
    }
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let dir = work.join(format!("sqlite-{largest}"));
    std::fs::create_dir_all(&dir)?;
    eprintln!("[restore] SQLite with {largest} orders");
    let sqlite = cycle(settings, &dir, Store::Sqlite, largest, false).await?;
    eprintln!("[restore] {}", sqlite.line());
    cycles.push(sqlite);
    let main = cycles
        .iter()
        .rposition(|c| c.store == Store::Postgres)
        .unwrap_or(0);
    let written = std::mem::take(&mut cycles[main].written);
    let mut k6_failed = std::collections::BTreeMap::new();
    k6_failed.insert(0, cycles.iter().map(|c| c.k6_failed).sum());
    Ok(drills::Outcome {
        drill: drills::Drill::Restore,
        faults: format!(
            "the data destroyed under load and restored to the newest point: PostgreSQL (data directory removed, server killed) with {} orders, SQLite (every process killed, files removed) with {largest}; PostgreSQL restored to before a bad write",
            sizes
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        seconds: started.elapsed().as_secs_f64(),
        k6_requests: cycles.iter().map(|c| c.k6_requests).sum(),
        k6_failed,
        written,
        integrity: cycles[main].integrity.clone(),
        notes: cycles.iter().map(Cycle::line).collect(),
        problems: cycles
            .iter()
            .flat_map(|c| {
                c.problems
                    .iter()
                    .map(move |p| format!("{} {}: {p}", c.store.name(), c.seeded))
            })
            .collect(),
        restores: cycles,
    })
}

/// Waits until commits wait for the stream: pg_receivewal is a synchronous
/// standby (what RPO 0 rests on).
async fn synchronous(server: &str) -> anyhow::Result<()> {
    let mut conn = AnyConnection::connect(&format!("{server}/postgres")).await?;
    let since = Instant::now();
    loop {
        let state: Option<(String,)> = sqlx::query_as(
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'platform_stream'",
        )
        .fetch_optional(&mut conn)
        .await?;
        if state.is_some_and(|(s,)| s == "sync") {
            return Ok(());
        }
        anyhow::ensure!(
            since.elapsed() < Duration::from_secs(60),
            "the WAL stream is not a synchronous standby 60 s after it started: see stream.log"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The price of `--synchronous`: single-row commits with the stream waited
/// for (`synchronous_commit = on`) and without (`local`), in alternating
/// rounds on one connection; the median of each, ms.
async fn commit_cost(server: &str) -> anyhow::Result<(f64, f64)> {
    let mut conn = AnyConnection::connect(&format!("{server}/postgres")).await?;
    conn.execute("CREATE TABLE IF NOT EXISTS commit_cost (n BIGINT)")
        .await?;
    let (mut on, mut local) = (Vec::new(), Vec::new());
    for round in 0..10 {
        let mode = if round % 2 == 0 { "on" } else { "local" };
        conn.execute(format!("SET synchronous_commit = {mode}").as_str())
            .await?;
        for n in 0..50 {
            let since = Instant::now();
            sqlx::query("INSERT INTO commit_cost (n) VALUES ($1)")
                .bind(i64::from(n))
                .execute(&mut conn)
                .await?;
            let ms = since.elapsed().as_secs_f64() * 1000.0;
            if mode == "on" {
                on.push(ms)
            } else {
                local.push(ms)
            }
        }
    }
    conn.execute("DROP TABLE commit_cost").await?;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok((median(on), median(local)))
}

/// The restore drill's report: one row per cycle, RTO against size, the
/// restore to before a bad write, and the stream's cost.
pub fn markdown(cycles: &[Cycle], plot: Option<&str>) -> String {
    let mut out = String::from(
        "# Restore drill\n\nGenerated by `bash load/drill.sh restore --restore-report load/reports/restore.md` (the `drill` binary of \
         `load/lab`, `restore.rs`). Each cycle starts a fresh platform, writes the orders of its size straight into the \
         databases (paid, each with its item and its approved charge), runs k6's user journeys and the drills' order writer, \
         takes a backup under that load, keeps writing, then destroys the data and restores it with `platformctl restore`. \
         PostgreSQL (fsync on) is backed up by pgBackRest (full backup, WAL archived) with `platformctl backup stream \
         --synchronous` running: the data directory is removed with the server killed. SQLite is backed up with \
         `platformctl backup` (online copies): every process of the platform is killed and the files removed.\n\n\
         - RPO: acknowledged orders missing after the restore.\n\
         - RTO: from the start of the restore (the platform is stopped first: a restore into a running platform is refused) \
         to every service SERVING and the first order acknowledged.\n\
         - Integrity: every acknowledged order that the backup holds exists, matches its charge and was charged once.\n\n\
         | store | orders | data (MiB) | backup (s) | RPO: acknowledged orders lost | restore (s) | all SERVING (s) | RTO: first order (s) | integrity | verdict |\n\
         |---|--:|--:|--:|---|--:|--:|--:|---|---|\n",
    );
    for c in cycles {
        let rpo = match c.store {
            Store::Postgres => format!("{}", c.lost),
            Store::Sqlite => format!(
                "{} (acknowledged after the backup's copy began: {}, over {:.1} s)",
                c.lost, c.after_snapshot, c.lost_span_s
            ),
        };
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.1} | {rpo} | {:.1} | {:.1} | {:.1} | {} | {} |\n",
            c.store.name(),
            c.seeded,
            c.mib,
            c.backup_s,
            c.restore_s,
            c.serving_s,
            c.first_order_s,
            c.integrity.summary(),
            if c.passed() {
                "PASS".to_owned()
            } else {
                format!("FAIL: {}", c.problems.join("; "))
            }
        ));
    }
    if let Some(plot) = plot {
        out.push_str(&format!("\n![RTO by database size]({plot})\n"));
    }
    for c in cycles {
        if let Some(p) = &c.pitr {
            out.push_str(&format!(
                "\n## Restore to before a bad write (PostgreSQL, {} orders)\n\n\
                 Under the writer's load, a time was noted, then a mistaken statement cancelled every order of the writer's \
                 user ({} orders), and orders went on being written for 3 s. The server was stopped and restored with \
                 `platformctl restore --target-time {}` in {:.1} s:\n\n\
                 - orders acknowledged before the target time: {}; back: {}; still cancelled: {};\n\
                 - orders sent after the target time: {}; back: {} (they are what the restore says is gone: it restored \
                 the state as of the target time).\n\n`platformctl restore` said: {}\n",
                c.seeded,
                p.cancelled_by_mistake,
                platform_runtime::time::utc(p.target_ms),
                p.restore_s,
                p.before,
                p.before - p.before_missing,
                p.before_cancelled,
                p.after,
                p.after_present,
                p.said
            ));
        }
    }
    if let Some((on, local)) = cycles.iter().rev().find_map(|c| c.commit_ms) {
        out.push_str(&format!(
            "\n## What streaming the WAL synchronously costs\n\n\
             Single-row commits on one connection, alternating rounds, measured side by side in the last PostgreSQL \
             cycle: median {on:.2} ms when the commit waits for the stream (`synchronous_commit = on` with \
             `synchronous_standby_names = platform_stream`) against {local:.2} ms without (`local`): {:.1}x. \
             What it buys: RPO 0 (above). Without it the archive alone may lack up to `archive_timeout` (60 s) of \
             writes. If the stream stops, commits wait until it is back: `platformctl backup stream` restarts \
             pg_receivewal by itself, and stopping it (SIGTERM) turns the waiting off first.\n",
            on / local.max(1e-9)
        ));
    }
    for c in cycles {
        out.push_str(&format!(
            "\n{} with {} orders, what the restore reported: {}\n",
            c.store.name(),
            c.seeded,
            c.report
        ));
    }
    out
}

/// RTO (and its parts) against the database size, PostgreSQL cycles.
pub fn plot(path: &Path, cycles: &[Cycle]) -> anyhow::Result<()> {
    let pg: Vec<&Cycle> = cycles
        .iter()
        .filter(|c| c.store == Store::Postgres)
        .collect();
    let series = |name: &str, f: fn(&Cycle) -> f64| {
        (
            name.to_owned(),
            pg.iter().map(|c| (c.mib, f(c))).collect::<Vec<_>>(),
        )
    };
    crate::plot::lines(
        path,
        "PostgreSQL restore to the latest point, by database size",
        (
            "databases' size (MiB)",
            "seconds from the start of the restore",
        ),
        &[
            series("platformctl restore done", |c| c.restore_s),
            series("every service SERVING", |c| c.serving_s),
            series("first order acknowledged (RTO)", |c| c.first_order_s),
            series("backup (for comparison)", |c| c.backup_s),
        ],
        None,
    )
}
