//! `platformctl backup` and `platformctl restore`: backups of every
//! service's database, checked and restored to a point in time, then a
//! consistency report across orders and payments.
//!
//! The store is the one `platformctl up` runs on: the SQLite files in the
//! data directory (copied online, `sqlite.rs`), or, once `backup setup`
//! has pointed pgBackRest at a PostgreSQL server, that server
//! (`postgres.rs`: continuous WAL archiving, full and incremental backups,
//! the WAL streamed for the last seconds, point-in-time restore).

mod manifest;
mod postgres;
mod reconcile;
mod sqlite;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use platform_runtime::config::DatabaseConfig;
use platform_runtime::time;

use crate::ports::SERVICES;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BackupArgs {
    #[command(subcommand)]
    action: Option<BackupAction>,
    #[command(flatten)]
    place: Place,
    /// PostgreSQL only: full, or incr (what changed since the last backup;
    /// the first one is always full)
    #[arg(long = "type", value_parser = ["full", "incr"], default_value = "incr")]
    kind: String,
}

/// Where the platform's data and its backups are.
#[derive(Debug, Clone, clap::Args)]
pub struct Place {
    /// The data directory of `platformctl up`
    #[arg(long, global = true, default_value_os_t = crate::default_data_dir())]
    data_dir: PathBuf,
    /// Where backups are kept [default: <data-dir>/backups]; put it on
    /// another disk than the data
    #[arg(long, global = true)]
    repo: Option<PathBuf>,
}

impl Place {
    fn repo(&self) -> PathBuf {
        self.repo
            .clone()
            .unwrap_or_else(|| self.data_dir.join("backups"))
    }
}

#[derive(Debug, clap::Subcommand)]
enum BackupAction {
    /// Every backup in the repository, oldest first, with what it holds.
    List,
    /// Check a backup (the newest by default): checksums, and each copy
    /// opened and checked by its database.
    Verify {
        /// A backup's id, as `backup list` prints it
        backup: Option<String>,
    },
    /// PostgreSQL: set up pgBackRest for the server at --postgres (WAL
    /// archiving, a local repository, its stanza); restarts the server
    /// once if archiving was off.
    Setup {
        /// The server, as given to `platformctl up --postgres`
        #[arg(long, value_name = "URL")]
        postgres: String,
    },
    /// The consistency report of orders and payments (what `restore`
    /// prints), on the platform's databases now: after a restore done by
    /// other means (an operator's, a cluster's), or at any time.
    Report {
        /// The PostgreSQL server, as given to `platformctl up --postgres`
        /// [default: the SQLite files in --data-dir]
        #[arg(long, value_name = "URL")]
        postgres: Option<String>,
    },
    /// PostgreSQL: stream the WAL into the repository as it is written
    /// (pg_receivewal), in the foreground; with --synchronous every commit
    /// waits until the stream has it, so no acknowledged write is lost.
    Stream {
        #[arg(long)]
        synchronous: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// A backup's id (SQLite) or label (PostgreSQL), or `latest`
    #[arg(default_value = "latest")]
    backup: String,
    /// Restore the state as of this UTC time (YYYY-MM-DD HH:MM:SS):
    /// PostgreSQL replays its archive up to it; SQLite takes the newest
    /// backup taken before it
    #[arg(long, value_name = "TIME", conflicts_with = "backup")]
    target_time: Option<String>,
    /// SQLite: restore only this service's database (repeatable) [default: all four]
    #[arg(long = "service", value_name = "SERVICE")]
    services: Vec<String>,
    #[command(flatten)]
    place: Place,
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let repo = args.place.repo();
    match &args.action {
        Some(BackupAction::Setup { postgres }) => return postgres::setup(&repo, postgres).await,
        Some(BackupAction::Report { postgres }) => {
            let data_dir = &args.place.data_dir;
            let (orders, payments) = match postgres {
                Some(url) => {
                    let server = crate::databases::check(url)?;
                    (
                        DatabaseConfig::Postgres(format!("{server}/platform_orders")),
                        DatabaseConfig::Postgres(format!("{server}/platform_payments")),
                    )
                }
                None => (
                    crate::databases::of_service(None, data_dir, "orders")
                        .map_err(anyhow::Error::msg)?,
                    crate::databases::of_service(None, data_dir, "payments")
                        .map_err(anyhow::Error::msg)?,
                ),
            };
            return report(&orders, &payments, data_dir).await;
        }
        _ => {}
    }
    if let Some(server) = postgres::Server::configured(&repo)? {
        return match args.action {
            None => server.take(&args.kind).await,
            Some(BackupAction::List) => server.list(),
            Some(BackupAction::Verify { backup }) => server.verify(backup.as_deref()),
            Some(BackupAction::Stream { synchronous }) => server.stream(synchronous).await,
            Some(BackupAction::Setup { .. } | BackupAction::Report { .. }) => {
                unreachable!("handled above")
            }
        };
    }
    match args.action {
        None => take(&args.place, &repo).await,
        Some(BackupAction::List) => list(&repo),
        Some(BackupAction::Verify { backup }) => verify(&repo, backup.as_deref()).await,
        Some(BackupAction::Stream { .. }) => bail!(
            "no PostgreSQL is set up for backups in {}: run `platformctl backup setup --postgres URL` first",
            repo.display()
        ),
        Some(BackupAction::Setup { .. } | BackupAction::Report { .. }) => {
            unreachable!("handled above")
        }
    }
}

/// `up --backup-every`: a backup every `every` until `stop`, keeping the
/// newest `keep`; a failed one is reported and tried again next time.
pub async fn every(
    data_dir: PathBuf,
    every: std::time::Duration,
    keep: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let repo = data_dir.join("backups");
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        match sqlite::take(&data_dir, &repo, env!("CARGO_PKG_VERSION")).await {
            Ok((_, manifest)) => {
                let all = manifest::all(&repo).unwrap_or_default();
                for (dir, _) in all.iter().take(all.len().saturating_sub(keep)) {
                    let _ = std::fs::remove_dir_all(dir);
                }
                println!(
                    "backup {} taken ({:.1} MiB)",
                    manifest.id,
                    manifest.bytes() as f64 / 1048576.0
                );
            }
            Err(err) => eprintln!(
                "warning: the scheduled backup failed: {err:#}; trying again in {} s",
                every.as_secs()
            ),
        }
    }
}

async fn take(place: &Place, repo: &Path) -> anyhow::Result<()> {
    let (dir, manifest) = sqlite::take(&place.data_dir, repo, env!("CARGO_PKG_VERSION")).await?;
    println!(
        "backup {}: {} databases, {:.1} MiB, in {:.1} s, at {}",
        manifest.id,
        manifest.databases.len(),
        manifest.bytes() as f64 / 1048576.0,
        (manifest.finished_ms - manifest.started_ms) as f64 / 1000.0,
        dir.display()
    );
    Ok(())
}

fn list(repo: &Path) -> anyhow::Result<()> {
    let all = manifest::all(repo)?;
    if all.is_empty() {
        println!(
            "no backups in {}: take one with `platformctl backup`",
            repo.display()
        );
        return Ok(());
    }
    println!(
        "{:<22} {:<21} {:>9}  schema (migration per service)",
        "ID", "TAKEN (UTC)", "MIB"
    );
    for (_, m) in &all {
        let schema: Vec<String> = m
            .databases
            .iter()
            .map(|d| format!("{} {}", d.service, d.schema))
            .collect();
        println!(
            "{:<22} {:<21} {:>9.1}  {}",
            m.id,
            time::utc(m.started_ms),
            m.bytes() as f64 / 1048576.0,
            schema.join(", ")
        );
    }
    Ok(())
}

/// The backup called `name` (`latest` is the newest).
fn find(repo: &Path, name: &str) -> anyhow::Result<(PathBuf, manifest::Manifest)> {
    let mut all = manifest::all(repo)?;
    if all.is_empty() {
        bail!(
            "no backups in {}: take one with `platformctl backup`",
            repo.display()
        );
    }
    if name == "latest" {
        return Ok(all.pop().expect("not empty"));
    }
    all.into_iter()
        .find(|(_, m)| m.id == name)
        .with_context(|| {
            format!(
                "no backup {name:?} in {}: `platformctl backup list` shows them",
                repo.display()
            )
        })
}

/// The highest migration this release of each service knows.
fn known(service: &str) -> i64 {
    let migrations = match service {
        "auth" => auth::MIGRATIONS,
        "orders" => orders::MIGRATIONS,
        "payments" => payments::MIGRATIONS,
        _ => notifications::MIGRATIONS,
    };
    migrations.iter().map(|m| m.version).max().unwrap_or(0)
}

async fn verify(repo: &Path, name: Option<&str>) -> anyhow::Result<()> {
    let (dir, manifest) = find(repo, name.unwrap_or("latest"))?;
    for database in &manifest.databases {
        sqlite::check(&dir, database, true)
            .await
            .with_context(|| format!("backup {} is not usable", manifest.id))?;
        println!(
            "{}: ok ({} bytes, checksum and integrity check pass, migration {} {})",
            database.service, database.bytes, database.schema, database.migration
        );
    }
    println!("backup {}: ok", manifest.id);
    Ok(())
}

/// The platform processes of `platformctl up` that still run in `data_dir`.
fn running(data_dir: &Path) -> Vec<(String, u32)> {
    let Ok(entries) = std::fs::read_dir(data_dir.join("run")) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_stem().map(|n| n.to_string_lossy().into_owned()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "pid")
            && let Ok(pid) = std::fs::read_to_string(&path)
                .unwrap_or_default()
                .trim()
                .parse::<u32>()
            && alive(pid)
        {
            found.push((name, pid));
        }
    }
    found.sort();
    found
}

/// Whether process `pid` runs (a zombie, killed and not yet reaped, does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

fn refuse_if_running(data_dir: &Path) -> anyhow::Result<()> {
    if let Some((name, pid)) = running(data_dir).first() {
        bail!(
            "the platform is running in {} ({name}, pid {pid}): stop `platformctl up` first; nothing was restored",
            data_dir.display()
        );
    }
    Ok(())
}

pub async fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let repo = args.place.repo();
    let target_ms = match &args.target_time {
        None => None,
        Some(text) => {
            let ms = time::parse_utc(text).with_context(|| {
                format!(
                    "--target-time {text:?}: expected a UTC time such as \"2026-12-03 14:05:00\""
                )
            })?;
            if ms > time::now_ms() {
                bail!("--target-time {text} is in the future: nothing was written after now");
            }
            Some(ms)
        }
    };
    for service in &args.services {
        if !SERVICES.contains(&service.as_str()) {
            bail!("--service {service:?}: expected auth, orders, payments or notifications");
        }
    }
    refuse_if_running(&args.place.data_dir)?;
    if let Some(server) = postgres::Server::configured(&repo)? {
        if !args.services.is_empty() {
            bail!(
                "--service: a PostgreSQL restore is of the whole server (its four databases); \
                 to restore one service, restore into another server and copy that database with pg_dump"
            );
        }
        return server.restore(&args.backup, target_ms).await;
    }
    let (dir, manifest) = match target_ms {
        None => find(&repo, &args.backup)?,
        Some(ms) => {
            let all = manifest::all(&repo)?;
            let oldest = all.first().map(|(_, m)| m.finished_ms);
            all.into_iter()
                .rev()
                .find(|(_, m)| m.finished_ms <= ms)
                .with_context(|| match oldest {
                    Some(oldest) => format!(
                        "--target-time is before the oldest backup (finished {} UTC): pick a later time; nothing was restored",
                        time::utc(oldest)
                    ),
                    None => format!("no backups in {}: take one with `platformctl backup`", repo.display()),
                })?
        }
    };
    let services: Vec<&str> = if args.services.is_empty() {
        SERVICES.to_vec()
    } else {
        args.services.iter().map(String::as_str).collect()
    };
    // Everything is checked before anything is touched.
    let checking = std::time::Instant::now();
    for service in &services {
        let database = manifest
            .database(service)
            .with_context(|| format!("backup {} has no {service} database", manifest.id))?;
        if database.schema > known(service) {
            bail!(
                "backup {} holds {service} at migration {} ({}), newer than this release knows ({}): restore it with the release that took it ({}); nothing was restored",
                manifest.id,
                database.schema,
                database.migration,
                known(service),
                manifest.release
            );
        }
        sqlite::check(&dir, database, false)
            .await
            .with_context(|| {
                format!(
                    "backup {} cannot be restored; nothing was restored",
                    manifest.id
                )
            })?;
    }
    let started = std::time::Instant::now();
    let aside = args
        .place
        .data_dir
        .join("replaced")
        .join(manifest::id_of(time::now_ms()));
    for service in &services {
        let database = manifest.database(service).expect("checked above");
        sqlite::place(
            &dir.join(&database.file),
            &args.place.data_dir,
            service,
            &aside.join(service),
        )?;
        println!(
            "{service}: restored from backup {} (as of {} UTC, migration {})",
            manifest.id,
            time::utc(database.taken_ms),
            database.schema
        );
    }
    println!(
        "restored in {:.1} s (checksums and SQLite's check {:.1} s, copies {:.1} s); what was there before is in {}",
        checking.elapsed().as_secs_f64(),
        (started - checking).as_secs_f64(),
        started.elapsed().as_secs_f64(),
        aside.display()
    );
    let data_dir = &args.place.data_dir;
    report(
        &DatabaseConfig::in_dir(&data_dir.join("orders"), "orders"),
        &DatabaseConfig::in_dir(&data_dir.join("payments"), "payments"),
        data_dir,
    )
    .await?;
    println!(
        "start the platform: platformctl up --data-dir {}",
        data_dir.display()
    );
    Ok(())
}

/// Prints the consistency report and keeps it, in full, in the data directory.
async fn report(
    orders: &DatabaseConfig,
    payments: &DatabaseConfig,
    data_dir: &Path,
) -> anyhow::Result<()> {
    let report = match reconcile::check(orders, payments).await {
        Ok(report) => report,
        Err(err)
            if format!("{err:#}").contains("does not exist")
                || format!("{err:#}").contains("no such table") =>
        {
            println!("consistency: no orders or payments data yet, nothing to reconcile");
            return Ok(());
        }
        Err(err) => return Err(err),
    };
    print!("{}", report.text());
    let path = data_dir.join("consistency-report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!("the full report: {}", path.display());
    Ok(())
}
