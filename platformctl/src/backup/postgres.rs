//! Backups of a PostgreSQL server with pgBackRest: continuous archiving of
//! the WAL (`archive_command`), full and incremental backups in a local
//! repository, and restore to the latest point or to a time. pgBackRest
//! archives a WAL segment once it is full or `archive_timeout` (60 s) ends
//! it, so the archive alone may lack the last minute; `backup stream` runs
//! pg_receivewal to keep that tail as it is written (with --synchronous a
//! commit waits for it: nothing acknowledged is lost), and a restore adds
//! the streamed tail to what the archive replays.
//!
//! pgBackRest must read the server's data directory, so it runs on the
//! database host as the directory's owner (through runuser when this runs
//! as root).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sqlx::{Connection, Executor, PgConnection};

use platform_runtime::config::DatabaseConfig;
use platform_runtime::time;

const STANZA: &str = "platform";
/// pg_receivewal's replication slot and application name.
const STREAM: &str = "platform_stream";

/// What `backup setup` found out about the server, kept in the repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Settings {
    /// postgres://user@host:port, as given to `platformctl up --postgres`.
    url: String,
    data: PathBuf,
    bin: PathBuf,
    owner: String,
    /// The owner's user id: what the files a restore adds are handed to.
    uid: u32,
}

pub struct Server {
    repo: PathBuf,
    settings: Settings,
}

fn settings_file(repo: &Path) -> PathBuf {
    repo.join("postgres.json")
}

fn config_file(repo: &Path) -> PathBuf {
    repo.join("pgbackrest.conf")
}

/// Whether this process runs as root.
fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The name of the user with `uid`, from /etc/passwd.
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.get(2)? == &uid.to_string()).then(|| fields[0].to_owned())
    })
}

/// `program` run as `owner` (the data directory's owner).
fn as_owner(owner: &str, program: &Path) -> Command {
    if is_root() && owner != "root" {
        let mut c = Command::new("runuser");
        c.args(["-u", owner, "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Runs `command`; its stdout, or its stderr as the error.
fn output(mut command: Command, what: &str) -> anyhow::Result<String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        let said = if said.trim().is_empty() {
            String::from_utf8_lossy(&out.stdout)
        } else {
            said
        };
        bail!("{what} failed: {}", said.trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `backup setup --postgres URL`.
pub async fn setup(repo: &Path, url: &str) -> anyhow::Result<()> {
    let server = crate::databases::check(url)?.to_owned();
    let mut conn = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {server}"))?;
    let show = |name: &'static str| format!("SELECT current_setting('{name}')");
    let mut get = async |name: &'static str| -> anyhow::Result<String> {
        let (value,): (String,) = sqlx::query_as(&show(name)).fetch_one(&mut conn).await?;
        Ok(value)
    };
    let data = PathBuf::from(get("data_directory").await?);
    let port = get("port").await?;
    let sockets = get("unix_socket_directories").await?;
    let listen = get("listen_addresses").await?;
    let version: u32 = get("server_version_num").await?.parse()?;
    let archive_mode = get("archive_mode").await?;
    let wal_level = get("wal_level").await?;
    let user = get("session_authorization").await?;
    // Recovery refuses to start with less of these than the server had.
    let mut limits = Vec::new();
    for name in [
        "max_connections",
        "max_worker_processes",
        "max_wal_senders",
        "max_prepared_transactions",
        "max_locks_per_transaction",
    ] {
        limits.push((name, get(name).await?));
    }
    let meta = std::fs::metadata(&data).with_context(|| {
        format!(
            "the server's data directory {} is not on this machine: run `backup setup` on the database host",
            data.display()
        )
    })?;
    let owner = user_name(meta.uid()).context("the data directory's owner has no name")?;
    let bin = PathBuf::from(format!("/usr/lib/postgresql/{}/bin", version / 10_000));
    if !bin.join("pg_ctl").is_file() {
        bail!(
            "no PostgreSQL {} binaries at {}: install the server's version",
            version / 10_000,
            bin.display()
        );
    }
    let socket = sockets
        .split(',')
        .next()
        .unwrap_or("/tmp")
        .trim()
        .to_owned();
    for dir in ["pgbackrest", "log", "lock", "spool", "wal"] {
        std::fs::create_dir_all(repo.join(dir))
            .with_context(|| format!("cannot create {}", repo.join(dir).display()))?;
    }
    let repo = std::fs::canonicalize(repo)?;
    let conf = config_file(&repo);
    std::fs::write(
        &conf,
        format!(
            "[global]\n\
             repo1-path={repo}/pgbackrest\n\
             repo1-retention-full=2\n\
             compress-type=lz4\n\
             process-max=2\n\
             start-fast=y\n\
             delta=y\n\
             log-path={repo}/log\n\
             lock-path={repo}/lock\n\
             spool-path={repo}/spool\n\
             log-level-console=warn\n\
             log-level-file=info\n\
             \n\
             [{STANZA}]\n\
             pg1-path={data}\n\
             pg1-port={port}\n\
             pg1-socket-path={socket}\n\
             pg1-user={user}\n",
            repo = repo.display(),
            data = data.display(),
        ),
    )?;
    let settings = Settings {
        url: server.clone(),
        data: data.clone(),
        bin: bin.clone(),
        owner: owner.clone(),
        uid: meta.uid(),
    };
    std::fs::write(
        settings_file(&repo),
        serde_json::to_string_pretty(&settings)? + "\n",
    )?;
    if owner != "root" && is_root() {
        output(
            {
                let mut c = Command::new("chown");
                c.arg("-R").arg(&owner).arg(&repo);
                c
            },
            "chown",
        )?;
    }
    let archive = format!(
        "pgbackrest --config={} --stanza={STANZA} archive-push %p",
        conf.display()
    );
    // What a restored copy of the data directory starts with, too.
    for (name, value) in [
        ("archive_mode", "on".to_owned()),
        ("archive_command", archive),
        ("archive_timeout", "60s".to_owned()),
        ("wal_level", "replica".to_owned()),
        ("port", port.clone()),
        ("listen_addresses", listen),
        ("unix_socket_directories", sockets),
    ]
    .into_iter()
    .chain(limits)
    {
        conn.execute(format!("ALTER SYSTEM SET {name} = {}", quote(&value)).as_str())
            .await
            .with_context(|| format!("cannot set {name}"))?;
    }
    conn.execute("SELECT pg_reload_conf()").await?;
    conn.close().await?;
    let server = Server {
        repo: repo.clone(),
        settings,
    };
    if archive_mode == "off" || wal_level == "minimal" {
        println!("archiving was off: restarting PostgreSQL once to turn it on");
        let log = repo.join("log").join("postgresql.log");
        server.pg_ctl(&[
            "restart",
            "-m",
            "fast",
            "-w",
            "-t",
            "120",
            "-l",
            &log.display().to_string(),
        ])?;
    }
    server.pgbackrest(&["stanza-create"])?;
    server.pgbackrest(&["check"])?;
    println!(
        "pgBackRest is set up: stanza {STANZA}, repository {}, WAL archived from {} (every segment, at the latest after 60 s)\n\
         next: `platformctl backup --repo {}` for a full backup; `platformctl backup stream --repo {}` keeps the last seconds too",
        repo.join("pgbackrest").display(),
        data.display(),
        repo.display(),
        repo.display()
    );
    Ok(())
}

#[derive(Debug, Deserialize)]
struct Info {
    #[serde(default)]
    backup: Vec<BackupInfo>,
    #[serde(default)]
    archive: Vec<ArchiveInfo>,
}

#[derive(Debug, Deserialize)]
struct BackupInfo {
    label: String,
    #[serde(rename = "type")]
    kind: String,
    timestamp: Span,
    info: Sizes,
    /// What `take` recorded: `schema.<service>` (its highest migration) and `release`.
    #[serde(default)]
    annotation: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct Span {
    start: i64,
    stop: i64,
}

#[derive(Debug, Deserialize)]
struct Sizes {
    size: u64,
    repository: RepoSizes,
}

#[derive(Debug, Deserialize)]
struct RepoSizes {
    delta: u64,
}

#[derive(Debug, Deserialize)]
struct ArchiveInfo {
    max: Option<String>,
}

impl Server {
    /// The server `backup setup` prepared for `repo`, if any.
    pub fn configured(repo: &Path) -> anyhow::Result<Option<Server>> {
        let file = settings_file(repo);
        if !file.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&file)?;
        let settings = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is damaged: run `platformctl backup setup` again",
                file.display()
            )
        })?;
        Ok(Some(Server {
            repo: std::fs::canonicalize(repo)?,
            settings,
        }))
    }

    fn pgbackrest(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut command = as_owner(&self.settings.owner, Path::new("pgbackrest"));
        command
            .arg(format!("--config={}", config_file(&self.repo).display()))
            .arg(format!("--stanza={STANZA}"))
            .args(args);
        output(
            command,
            &format!("pgbackrest {}", args.first().unwrap_or(&"")),
        )
    }

    /// pg_ctl with a log file (`-l`) among `args`: the server it starts
    /// must not hold this process's output open.
    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut command = as_owner(&self.settings.owner, &self.settings.bin.join("pg_ctl"));
        command.arg("-D").arg(&self.settings.data).args(args);
        output(command, &format!("pg_ctl {}", args.first().unwrap_or(&"")))
    }

    fn info(&self) -> anyhow::Result<Info> {
        let text = self.pgbackrest(&["info", "--output=json"])?;
        let mut all: Vec<Info> =
            serde_json::from_str(&text).context("pgbackrest info: unexpected answer")?;
        all.pop().context("pgbackrest info: no stanza")
    }

    /// `platformctl backup` on PostgreSQL.
    /// Each service's schema (its highest migration), where its database exists.
    async fn schemas(&self) -> Vec<(String, i64)> {
        let mut found = Vec::new();
        for service in crate::ports::SERVICES {
            let url = format!("{}/platform_{service}", self.settings.url);
            let Ok(mut conn) = PgConnection::connect(&url).await else {
                continue;
            };
            if let Ok((Some(version),)) =
                sqlx::query_as::<_, (Option<i64>,)>("SELECT MAX(version) FROM schema_migrations")
                    .fetch_one(&mut conn)
                    .await
            {
                found.push((service.to_owned(), version));
            }
            let _ = conn.close().await;
        }
        found
    }

    pub async fn take(&self, kind: &str) -> anyhow::Result<()> {
        let started = Instant::now();
        // Recorded with the backup, so a restore can refuse a schema newer
        // than its release before it touches anything.
        let mut args = vec![
            "backup".to_owned(),
            format!("--type={kind}"),
            format!("--annotation=release={}", env!("CARGO_PKG_VERSION")),
        ];
        for (service, version) in self.schemas().await {
            args.push(format!("--annotation=schema.{service}={version}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.pgbackrest(&args)?;
        let info = self.info()?;
        let newest = info.backup.last().context("pgbackrest reports no backup")?;
        self.prune_stream(&info);
        println!(
            "backup {} ({}): {:.1} MiB of data, {:.1} MiB stored, in {:.1} s",
            newest.label,
            newest.kind,
            newest.info.size as f64 / 1048576.0,
            newest.info.repository.delta as f64 / 1048576.0,
            started.elapsed().as_secs_f64()
        );
        Ok(())
    }

    pub fn list(&self) -> anyhow::Result<()> {
        let info = self.info()?;
        if info.backup.is_empty() {
            println!(
                "no backups yet: take one with `platformctl backup --repo {}`",
                self.repo.display()
            );
        } else {
            println!(
                "{:<36} {:<5} {:<21} {:<21} {:>9} {:>9}  schema (migration per service)",
                "LABEL", "TYPE", "STARTED (UTC)", "ENDED (UTC)", "DATA MIB", "STORED"
            );
        }
        for b in &info.backup {
            let schema: Vec<String> = b
                .annotation
                .iter()
                .filter_map(|(k, v)| Some(format!("{} {v}", k.strip_prefix("schema.")?)))
                .collect();
            println!(
                "{:<36} {:<5} {:<21} {:<21} {:>9.1} {:>9.1}  {}",
                b.label,
                b.kind,
                time::utc(b.timestamp.start * 1000),
                time::utc(b.timestamp.stop * 1000),
                b.info.size as f64 / 1048576.0,
                b.info.repository.delta as f64 / 1048576.0,
                if schema.is_empty() {
                    "-".to_owned()
                } else {
                    schema.join(", ")
                }
            );
        }
        if let (Some(first), Some(newest)) = (info.backup.first(), self.newest_wal_ms()) {
            println!(
                "restorable to any time from {} to {} UTC",
                time::utc(first.timestamp.stop * 1000),
                time::utc(newest)
            );
        }
        Ok(())
    }

    pub fn verify(&self, label: Option<&str>) -> anyhow::Result<()> {
        let info = self.info()?;
        if let Some(label) = label
            && label != "latest"
            && !info.backup.iter().any(|b| b.label == label)
        {
            bail!("no backup {label:?}: `platformctl backup list` shows them");
        }
        if info.backup.is_empty() {
            bail!("no backups yet: take one with `platformctl backup`");
        }
        // Every file of every backup and every archived segment, against
        // the checksums pgBackRest recorded.
        let said = self.pgbackrest(&["verify", "--log-level-console=info"])?;
        if said.contains("ERROR") || said.contains("invalid") {
            bail!("pgbackrest verify found damage: {}", said.trim());
        }
        println!(
            "{} backups and the WAL archive: ok (pgbackrest verify checked every file's checksum)",
            info.backup.len()
        );
        Ok(())
    }

    /// The newest moment the repository can restore to: the newest file of
    /// the archive or of the stream.
    fn newest_wal_ms(&self) -> Option<i64> {
        let mut newest = None;
        let archive = self.repo.join("pgbackrest").join("archive").join(STANZA);
        let mut dirs = vec![archive, self.repo.join("wal")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    dirs.push(entry.path());
                } else if let Ok(modified) = meta.modified()
                    && let Ok(since) = modified.duration_since(std::time::UNIX_EPOCH)
                {
                    newest = newest.max(Some(i64::try_from(since.as_millis()).unwrap_or(0)));
                }
            }
        }
        newest
    }

    /// Streamed segments the archive holds as well are not needed any more.
    fn prune_stream(&self, info: &Info) {
        let Some(max) = info.archive.last().and_then(|a| a.max.clone()) else {
            return;
        };
        for entry in std::fs::read_dir(self.repo.join("wal"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.len() >= 24 && !name.ends_with(".partial") && name[..24] < *max.as_str() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn stream_url(&self) -> String {
        format!("{}/postgres?application_name={STREAM}", self.settings.url)
    }

    /// `backup stream`: pg_receivewal in the foreground, restarted when it
    /// stops, until Ctrl-C or SIGTERM.
    pub async fn stream(&self, synchronous: bool) -> anyhow::Result<()> {
        let receivewal = self.settings.bin.join("pg_receivewal");
        let dir = self.repo.join("wal");
        let mut shutdown = std::pin::pin!(platform_runtime::host::shutdown_signal());
        loop {
            // The slot keeps the server from recycling WAL the stream has
            // not got yet; a restored server has none, so it is made again.
            let mut slot = as_owner(&self.settings.owner, &receivewal);
            slot.args([
                "--create-slot",
                "--if-not-exists",
                "-S",
                STREAM,
                "-d",
                &self.stream_url(),
            ]);
            if let Err(err) = output(slot, "pg_receivewal --create-slot") {
                eprintln!("warning: {err:#}; trying again in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    () = &mut shutdown => break,
                }
            }
            let mut command =
                tokio::process::Command::from(as_owner(&self.settings.owner, &receivewal));
            command
                .arg("-D")
                .arg(&dir)
                .args([
                    "-S",
                    STREAM,
                    "--synchronous",
                    "--no-loop",
                    "-d",
                    &self.stream_url(),
                ])
                .kill_on_drop(true);
            let mut child = command.spawn().context("cannot start pg_receivewal")?;
            println!("streaming the WAL into {}", dir.display());
            if synchronous {
                self.synchronous(true).await;
            }
            tokio::select! {
                status = child.wait() => {
                    eprintln!("warning: pg_receivewal stopped ({}); starting it again in 1 s", status?);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                () = &mut shutdown => {
                    if synchronous {
                        self.synchronous(false).await;
                    }
                    if let Some(pid) = child.id() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(0)),
                            nix::sys::signal::Signal::SIGTERM,
                        );
                    }
                    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
                    break;
                }
            }
        }
        Ok(())
    }

    /// Makes commits wait for the stream (on), or not (off), once it streams.
    async fn synchronous(&self, on: bool) {
        let set = async {
            let mut conn =
                PgConnection::connect(&format!("{}/postgres", self.settings.url)).await?;
            if on {
                for _ in 0..100 {
                    let (streaming,): (i64,) = sqlx::query_as(
                        "SELECT COUNT(*) FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'",
                    )
                    .bind(STREAM)
                    .fetch_one(&mut conn)
                    .await?;
                    if streaming > 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            let value = if on { STREAM } else { "" };
            conn.execute(
                format!(
                    "ALTER SYSTEM SET synchronous_standby_names = {}",
                    quote(value)
                )
                .as_str(),
            )
            .await?;
            conn.execute("SELECT pg_reload_conf()").await?;
            anyhow::Ok(())
        };
        match set.await {
            Ok(()) if on => {
                println!("commits wait for the stream (synchronous_standby_names = {STREAM})")
            }
            Ok(()) => println!("commits no longer wait for the stream"),
            Err(err) => eprintln!("warning: cannot change synchronous_standby_names: {err:#}"),
        }
    }

    /// Whether the server answers (it must not, for a restore).
    async fn answers(&self) -> bool {
        tokio::time::timeout(
            Duration::from_secs(2),
            PgConnection::connect(&format!("{}/postgres", self.settings.url)),
        )
        .await
        .is_ok_and(|c| c.is_ok())
    }

    /// `platformctl restore` on PostgreSQL: the whole server, to the newest
    /// point the repository holds or to `target_ms`, started, and checked.
    pub async fn restore(&self, backup: &str, target_ms: Option<i64>) -> anyhow::Result<()> {
        let data = &self.settings.data;
        if self.answers().await || data.join("postmaster.pid").is_file() {
            bail!(
                "PostgreSQL is running on {} (or its postmaster.pid is there): stop it first (pg_ctl -D {} stop); nothing was restored",
                data.display(),
                data.display()
            );
        }
        let info = self.info()?;
        let Some(first) = info.backup.first() else {
            bail!(
                "no backups yet in {}: nothing to restore from",
                self.repo.display()
            );
        };
        let mut args: Vec<String> = vec!["restore".into()];
        if backup != "latest" {
            if !info.backup.iter().any(|b| b.label == backup) {
                bail!("no backup {backup:?}: `platformctl backup list` shows them");
            }
            args.push(format!("--set={backup}"));
        }
        let newest = self.newest_wal_ms().unwrap_or(first.timestamp.stop * 1000);
        // The backup pgBackRest restores from: the one named, else the
        // newest that ended before the target.
        let from = info
            .backup
            .iter()
            .rev()
            .find(|b| match (backup, target_ms) {
                ("latest", Some(target)) => b.timestamp.stop * 1000 <= target,
                ("latest", None) => true,
                (label, _) => b.label == label,
            })
            .unwrap_or(first);
        for (key, value) in &from.annotation {
            let Some(service) = key.strip_prefix("schema.") else {
                continue;
            };
            let version: i64 = value.parse().unwrap_or(0);
            if version > super::known(service) {
                bail!(
                    "backup {} holds {service} at migration {version}, newer than this release knows ({}): restore it with the release that took it ({}); nothing was restored",
                    from.label,
                    super::known(service),
                    from.annotation
                        .get("release")
                        .map_or("unknown", String::as_str)
                );
            }
        }
        if let Some(target) = target_ms {
            if target < first.timestamp.stop * 1000 {
                bail!(
                    "--target-time {} UTC is before the oldest backup ended ({} UTC): pick a later time; nothing was restored",
                    time::utc(target),
                    time::utc(first.timestamp.stop * 1000)
                );
            }
            if target > newest {
                bail!(
                    "--target-time {} UTC is after the newest WAL the repository holds ({} UTC): pick an earlier time, or restore the latest; nothing was restored",
                    time::utc(target),
                    time::utc(newest)
                );
            }
            let ms = target.rem_euclid(1000);
            args.push("--type=time".into());
            args.push(format!("--target={}.{ms:03}+00", time::utc(target)));
            args.push("--target-action=promote".into());
        }
        let started = Instant::now();
        let stamp = super::manifest::id_of(time::now_ms());
        // What was there is moved aside, never deleted.
        let aside = data.with_file_name(format!(
            "{}.replaced-{stamp}",
            data.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        if data.exists() {
            std::fs::rename(data, &aside)
                .with_context(|| format!("cannot move {} aside", data.display()))?;
        }
        std::fs::create_dir_all(data)?;
        std::fs::set_permissions(data, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        self.chown(data)?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.pgbackrest(&args)?;
        let restored = started.elapsed();
        let streamed = self.add_stream(&info)?;
        // The restored server must not wait for a stream that is not there;
        // `backup stream --synchronous` turns waiting on again.
        let auto = data.join("postgresql.auto.conf");
        let mut conf = std::fs::read_to_string(&auto).unwrap_or_default();
        conf.push_str("synchronous_standby_names = ''\n");
        std::fs::write(&auto, conf)?;
        self.chown(&auto)?;
        let log = self.repo.join("log").join("postgresql.log");
        self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            "3600",
            "-l",
            &log.display().to_string(),
        ])?;
        // Started: hot standby answers before recovery ends; wait for the promotion.
        let mut conn = PgConnection::connect(&format!("{}/postgres", self.settings.url)).await?;
        loop {
            let (recovering,): (bool,) = sqlx::query_as("SELECT pg_is_in_recovery()")
                .fetch_one(&mut conn)
                .await?;
            if !recovering {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        conn.close().await?;
        println!(
            "restored {} to {} in {:.1} s (files {:.1} s, {streamed} streamed WAL segments added, replay and promotion {:.1} s); the old data directory is {}",
            data.display(),
            match target_ms {
                Some(t) => format!("{} UTC", time::utc(t)),
                None => "the newest point the repository holds".into(),
            },
            started.elapsed().as_secs_f64(),
            restored.as_secs_f64(),
            (started.elapsed() - restored).as_secs_f64(),
            if aside.exists() {
                aside.display().to_string()
            } else {
                "-".into()
            }
        );
        let orders = DatabaseConfig::Postgres(format!("{}/platform_orders", self.settings.url));
        let payments = DatabaseConfig::Postgres(format!("{}/platform_payments", self.settings.url));
        super::report(&orders, &payments, &self.repo).await?;
        println!(
            "a new full backup starts the restored server's history: platformctl backup --type full --repo {}",
            self.repo.display()
        );
        Ok(())
    }

    fn chown(&self, path: &Path) -> anyhow::Result<()> {
        if is_root() && self.settings.owner != "root" {
            std::os::unix::fs::chown(path, Some(self.settings.uid), None).with_context(|| {
                format!("cannot hand {} to {}", path.display(), self.settings.owner)
            })?;
        }
        Ok(())
    }

    /// Copies the streamed segments the archive lacks into the restored
    /// pg_wal (a partial one under its full name: recovery replays it up to
    /// its last record), and moves the stream's directory aside: the
    /// restored server's stream starts afresh. How many were added.
    fn add_stream(&self, info: &Info) -> anyhow::Result<usize> {
        let stream = self.repo.join("wal");
        let archived = info
            .archive
            .last()
            .and_then(|a| a.max.clone())
            .unwrap_or_default();
        let pg_wal = self.settings.data.join("pg_wal");
        let mut added = 0;
        for entry in std::fs::read_dir(&stream).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let full = name.trim_end_matches(".partial");
            let segment = full.len() == 24 && full.chars().all(|c| c.is_ascii_hexdigit());
            if !(segment && full > archived.as_str() || full.ends_with(".history")) {
                continue;
            }
            let to = pg_wal.join(full);
            std::fs::copy(entry.path(), &to)?;
            self.chown(&to)?;
            added += 1;
        }
        if stream.exists() {
            let aside = self.repo.join(format!(
                "wal.replaced-{}",
                super::manifest::id_of(time::now_ms())
            ));
            std::fs::rename(&stream, aside)?;
        }
        std::fs::create_dir_all(&stream)?;
        self.chown(&stream)?;
        Ok(added)
    }
}
