//! Backups of the embedded store: each service's SQLite database copied
//! online with `VACUUM INTO` (a consistent snapshot taken inside one read
//! transaction, while the services go on writing; a plain copy of a live
//! WAL database can be torn), checked, and put back.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sqlx::{Connection, Executor, SqliteConnection};

use super::manifest::{self, Database, Manifest};

/// The schema a database file is at: its highest migration and its name.
async fn schema(conn: &mut SqliteConnection) -> anyhow::Result<(i64, String)> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT version, name FROM schema_migrations ORDER BY version DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await
            .context("no schema_migrations table: not a database of this platform")?;
    Ok(row.unwrap_or((0, String::new())))
}

/// Copies the live database `source` into the new file `into`, durably.
pub async fn snapshot(service: &str, source: &Path, into: &Path) -> anyhow::Result<Database> {
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}?mode=ro", source.display()))
        .await
        .with_context(|| format!("cannot open {}", source.display()))?;
    // The services write meanwhile; wait for a writer's checkpoint, never fail.
    conn.execute("PRAGMA busy_timeout = 10000").await?;
    let taken_ms = platform_runtime::time::now_ms();
    let (schema, migration) = schema(&mut conn).await?;
    let target = into.display().to_string().replace('\'', "''");
    conn.execute(format!("VACUUM INTO '{target}'").as_str())
        .await
        .with_context(|| format!("cannot copy {} (VACUUM INTO)", source.display()))?;
    conn.close().await?;
    std::fs::File::open(into)?.sync_all()?;
    let (sha256, bytes) = manifest::checksum(into)?;
    Ok(Database {
        service: service.to_owned(),
        file: into
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        schema,
        migration,
        taken_ms,
        bytes,
        sha256,
    })
}

/// Checks one database of a backup: its size and checksum as recorded,
/// SQLite's own integrity check, and its schema as recorded; or what is wrong.
pub async fn check(dir: &Path, database: &Database, thorough: bool) -> anyhow::Result<()> {
    let path = dir.join(&database.file);
    let (sha256, bytes) = manifest::checksum(&path)
        .with_context(|| format!("{}: the copy is missing", database.service))?;
    if bytes != database.bytes {
        bail!(
            "{}: {} has {bytes} bytes, the manifest says {} (truncated or replaced)",
            database.service,
            path.display(),
            database.bytes
        );
    }
    if sha256 != database.sha256 {
        bail!(
            "{}: {} does not match its checksum (damaged)",
            database.service,
            path.display()
        );
    }
    // immutable: never write a journal or -shm file into the backup.
    let mut conn = SqliteConnection::connect(&format!(
        "sqlite://{}?mode=ro&immutable=true",
        path.display()
    ))
    .await
    .with_context(|| format!("{}: cannot open {}", database.service, path.display()))?;
    let pragma = if thorough {
        "PRAGMA integrity_check"
    } else {
        "PRAGMA quick_check"
    };
    let verdict: Vec<(String,)> = sqlx::query_as(pragma)
        .fetch_all(&mut conn)
        .await
        .with_context(|| format!("{}: {pragma} failed", database.service))?;
    if verdict.first().map(|(v,)| v.as_str()) != Some("ok") {
        bail!(
            "{}: SQLite's integrity check failed: {}",
            database.service,
            verdict
                .first()
                .map(|(v,)| v.as_str())
                .unwrap_or("no answer")
        );
    }
    let (schema, _) = schema(&mut conn).await?;
    if schema != database.schema {
        bail!(
            "{}: the copy is at migration {schema}, the manifest says {}",
            database.service,
            database.schema
        );
    }
    Ok(())
}

/// Takes a backup of every service's database in `data_dir` into a new
/// directory of `repo`. Orders is copied before payments, so that every
/// order the copy holds as paid finds its charge in the payments copy (a
/// charge may be newer than its order, never the other way round).
pub async fn take(
    data_dir: &Path,
    repo: &Path,
    release: &str,
) -> anyhow::Result<(PathBuf, Manifest)> {
    let started_ms = platform_runtime::time::now_ms();
    let id = manifest::id_of(started_ms);
    let partial = repo.join(format!(".{id}.partial"));
    std::fs::create_dir_all(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let mut databases = Vec::new();
    for service in ["auth", "orders", "payments", "notifications"] {
        let source = data_dir.join(service).join(format!("{service}.db"));
        if !source.is_file() {
            bail!(
                "no {service} database at {}: start the platform with `platformctl up` (or pass --data-dir)",
                source.display()
            );
        }
        databases.push(snapshot(service, &source, &partial.join(format!("{service}.db"))).await?);
    }
    let manifest = Manifest {
        id: id.clone(),
        store: "sqlite".into(),
        started_ms,
        finished_ms: platform_runtime::time::now_ms(),
        release: release.to_owned(),
        databases,
    };
    manifest.write(&partial)?;
    let dir = repo.join(&id);
    std::fs::rename(&partial, &dir)?;
    manifest::sync_dir(repo)?;
    Ok((dir, manifest))
}

/// Puts a checked copy in place of `service`'s database. What was there
/// (the file and its -wal and -shm) is moved to `aside`, never deleted.
pub fn place(copy: &Path, data_dir: &Path, service: &str, aside: &Path) -> anyhow::Result<()> {
    let dir = data_dir.join(service);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let target = dir.join(format!("{service}.db"));
    let staged = dir.join(format!(".{service}.db.restoring"));
    std::fs::copy(copy, &staged)
        .with_context(|| format!("cannot copy {} to {}", copy.display(), staged.display()))?;
    std::fs::File::open(&staged)?.sync_all()?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let old = dir.join(format!("{service}.db{suffix}"));
        if old.exists() {
            std::fs::create_dir_all(aside)?;
            std::fs::rename(&old, aside.join(format!("{service}.db{suffix}")))
                .with_context(|| format!("cannot move {} aside", old.display()))?;
        }
    }
    std::fs::rename(&staged, &target)?;
    manifest::sync_dir(&dir)
}
