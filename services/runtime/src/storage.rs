//! One storage layer for both backends: a SQLite file (the embedded default,
//! shared by both colors on one machine) or PostgreSQL (production, shared by
//! both colors of a service). Queries use `$1` placeholders, which both
//! accept. Migrations are embedded, run at start under a lock so that two
//! colors starting together apply each one once, and are expand/contract:
//! a release only adds (tables, nullable columns, indexes), so the previous
//! release keeps working on the new schema; removals come a release later.

use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::AnyConnection;
use sqlx::any::AnyPoolOptions;
use sqlx::{AnyPool, Connection, Executor};
use tonic::Status;

use crate::config::DatabaseConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One schema change, written for each backend.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
    /// A contract step: it removes or reshapes what earlier releases read,
    /// so once applied, a release that does not know it refuses to start
    /// (an expand step adds only, and earlier releases run beside it).
    pub contract: bool,
}

impl Migration {
    fn sql(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Sqlite => self.sqlite,
            Backend::Postgres => self.postgres,
        }
    }

    fn checksum(&self, backend: Backend) -> String {
        let digest = Sha256::digest(self.sql(backend).as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot open the database: {0}")]
    Open(#[source] sqlx::Error),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "migration {version} ({name}) differs from the one applied to this database; \
         migrations are append-only: add a new one instead"
    )]
    MigrationChanged { version: i64, name: &'static str },
    #[error(
        "the database has migration {version} ({name}), a contract step that removes what \
         earlier releases read, and this release knows migrations up to {known} only: \
         run a release that has migration {version}"
    )]
    ContractedPast {
        version: i64,
        name: String,
        known: i64,
    },
}

/// The schema a release runs on: the highest migration it knows, and the
/// highest the database has (higher during a rollout or after a rollback,
/// when the other release expanded it; lower while a contract step of this
/// release waits for `platformctl migrate --contract`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Schema {
    pub release: i64,
    pub database: i64,
}

/// A connection pool and the backend behind it; on SQLite, also the one
/// writer that commits this process's transactions in groups.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    writer: Option<crate::writer::Writer>,
    schema: Schema,
}

/// Which migrations opening a database applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steps {
    /// Expand steps, up to the first contract step not applied yet: what a
    /// service applies at start (a contract step removes what the other
    /// color may still read, so it waits for an operator).
    Expand,
    /// Every step, contract steps included (`platformctl migrate --contract`,
    /// once no release that reads what they remove runs).
    All,
}

/// How long a call waits for a database connection before UNAVAILABLE.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

impl Db {
    /// Opens the database and applies the expand steps it lacks.
    pub async fn open(
        config: &DatabaseConfig,
        migrations: &[Migration],
    ) -> Result<Self, StorageError> {
        Self::open_with(config, migrations, Steps::Expand).await
    }

    /// Opens the database and applies the `steps` it lacks.
    pub async fn open_with(
        config: &DatabaseConfig,
        migrations: &[Migration],
        steps: Steps,
    ) -> Result<Self, StorageError> {
        sqlx::any::install_default_drivers();
        let (url, backend, max) = match config {
            DatabaseConfig::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|source| StorageError::DataDir {
                        path: dir.display().to_string(),
                        source,
                    })?;
                }
                (
                    format!("sqlite://{}?mode=rwc", path.display()),
                    Backend::Sqlite,
                    8,
                )
            }
            DatabaseConfig::Postgres(url) => (url.clone(), Backend::Postgres, 16),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            // Fail fast: with the database away (or every connection busy)
            // a call is answered UNAVAILABLE within a second instead of
            // queueing; the caller may retry, the gateway sheds nothing.
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A pooled PostgreSQL connection may have died with its server
            // (a restart), so it is pinged before use; a SQLite connection is
            // a file in this process, and the ping is a thread round trip
            // per query for nothing.
            .test_before_acquire(backend == Backend::Postgres)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets blue and green read while one writes; FULL
                        // makes every acknowledged commit durable; the busy
                        // timeout makes writers from the other color wait.
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(StorageError::Open)?;
        let mut db = Self {
            pool,
            backend,
            writer: None,
            schema: Schema::default(),
        };
        db.schema = db.migrate(migrations, steps).await?;
        if backend == Backend::Sqlite {
            db.writer = Some(crate::writer::Writer::start(db.pool.clone()));
        }
        Ok(db)
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The schema this release runs on, as found at start.
    pub fn schema(&self) -> Schema {
        self.schema
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Runs `transaction` atomically and answers once it is durably
    /// committed: on SQLite through the process's group-committing writer
    /// (`writer.rs`), on PostgreSQL as a transaction of its own. An `Err`
    /// from `transaction` rolls back everything it did. It may run more than
    /// once (only the committed run is answered), so it must not act
    /// outside the database.
    pub async fn write<T, F>(&self, transaction: F) -> Result<T, sqlx::Error>
    where
        T: Send + 'static,
        F: for<'c> Fn(
                &'c mut AnyConnection,
            ) -> futures_util::future::BoxFuture<'c, Result<T, sqlx::Error>>
            + Send
            + Sync
            + 'static,
    {
        match &self.writer {
            Some(writer) => writer.write(transaction).await,
            None => crate::writer::pooled(&self.pool, transaction).await,
        }
    }

    async fn migrate(
        &self,
        migrations: &[Migration],
        steps: Steps,
    ) -> Result<Schema, StorageError> {
        let mut conn = self.pool.acquire().await.map_err(StorageError::Open)?;
        let result = migrate_locked(&mut conn, self.backend, migrations, steps).await;
        if result.is_err() {
            // Never hand a connection with an open transaction back to the pool.
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
            let _ = conn.detach().close().await;
        }
        result
    }
}

/// Every PostgreSQL migration runs under these: a schema change waits at
/// most 5 s for a table's lock (behind a long transaction, every call would
/// queue behind the waiting migration), then fails and the service does not
/// start (it is restarted and tries again); no statement runs over a minute
/// (data is moved by batched backfills, never in a migration). squawk's
/// lock and statement timeout rules are met here, not in each file.
pub const POSTGRES_MIGRATION_LIMITS: &str =
    "SET LOCAL lock_timeout = '5s'; SET LOCAL statement_timeout = '60s'";

async fn migrate_locked(
    conn: &mut AnyConnection,
    backend: Backend,
    migrations: &[Migration],
    steps: Steps,
) -> Result<Schema, StorageError> {
    let failed = |m: &Migration| {
        let (version, name) = (m.version, m.name);
        move |source| StorageError::Migration {
            version,
            name,
            source,
        }
    };
    let setup = Migration {
        version: 0,
        name: "schema_migrations",
        sqlite: "",
        postgres: "",
        contract: false,
    };
    // Both colors may start at once: one takes the lock, the other waits and
    // then finds the migrations applied.
    match backend {
        Backend::Sqlite => {
            sqlx::raw_sql("BEGIN IMMEDIATE")
                .execute(&mut *conn)
                .await
                .map_err(failed(&setup))?;
        }
        Backend::Postgres => {
            sqlx::raw_sql("BEGIN")
                .execute(&mut *conn)
                .await
                .map_err(failed(&setup))?;
            sqlx::raw_sql("SELECT pg_advisory_xact_lock(7355608)")
                .execute(&mut *conn)
                .await
                .map_err(failed(&setup))?;
            sqlx::raw_sql(POSTGRES_MIGRATION_LIMITS)
                .execute(&mut *conn)
                .await
                .map_err(failed(&setup))?;
        }
    }
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version BIGINT PRIMARY KEY,
            name TEXT NOT NULL,
            checksum TEXT NOT NULL,
            applied_at_ms BIGINT NOT NULL,
            contract INTEGER NOT NULL DEFAULT 0
        )",
    )
    .execute(&mut *conn)
    .await
    .map_err(failed(&setup))?;
    // Written by a release before contract steps were recorded: expand it.
    let has_contract: i64 = sqlx::query_scalar(match backend {
        Backend::Sqlite => {
            "SELECT COUNT(*) FROM pragma_table_info('schema_migrations') WHERE name = 'contract'"
        }
        Backend::Postgres => {
            "SELECT COUNT(*) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'schema_migrations' \
             AND column_name = 'contract'"
        }
    })
    .fetch_one(&mut *conn)
    .await
    .map_err(failed(&setup))?;
    if has_contract == 0 {
        sqlx::raw_sql(
            "ALTER TABLE schema_migrations ADD COLUMN contract INTEGER NOT NULL DEFAULT 0",
        )
        .execute(&mut *conn)
        .await
        .map_err(failed(&setup))?;
    }
    let applied: Vec<(i64, String, String, i64)> = sqlx::query_as(
        "SELECT version, checksum, name, contract FROM schema_migrations ORDER BY version",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(failed(&setup))?;
    let known = migrations.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some((version, _, name, _)) = applied
        .iter()
        .find(|(version, _, _, contract)| *version > known && *contract != 0)
    {
        return Err(StorageError::ContractedPast {
            version: *version,
            name: name.clone(),
            known,
        });
    }
    let mut newest_applied = applied.last().map_or(0, |(version, ..)| *version);
    let mut pending = None;
    for migration in migrations {
        let checksum = migration.checksum(backend);
        match applied.iter().find(|(v, ..)| *v == migration.version) {
            Some((_, existing, ..)) if *existing == checksum => continue,
            Some(_) => {
                return Err(StorageError::MigrationChanged {
                    version: migration.version,
                    name: migration.name,
                });
            }
            None => {}
        }
        if pending.is_some() || (migration.contract && steps == Steps::Expand) {
            // Steps apply in order: nothing after a contract step that waits.
            pending.get_or_insert(migration);
            continue;
        }
        sqlx::raw_sql(migration.sql(backend))
            .execute(&mut *conn)
            .await
            .map_err(failed(migration))?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, checksum, applied_at_ms, contract) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(migration.version)
        .bind(migration.name)
        .bind(checksum)
        .bind(crate::time::now_ms())
        .bind(i64::from(migration.contract))
        .execute(&mut *conn)
        .await
        .map_err(failed(migration))?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "applied migration"
        );
        newest_applied = newest_applied.max(migration.version);
    }
    if let Some(step) = pending {
        tracing::warn!(
            version = step.version,
            name = step.name,
            "migration {} ({}) is a contract step and waits: apply it with `platformctl migrate \
             <service> --contract` once no release older than this one runs",
            step.version,
            step.name
        );
    }
    if let Some((newest, ..)) = applied.last()
        && migrations.iter().all(|m| m.version < *newest)
    {
        tracing::info!(
            schema_version = newest,
            "the schema is newer than this release; running on it (expand/contract)"
        );
    }
    sqlx::raw_sql("COMMIT")
        .execute(&mut *conn)
        .await
        .map_err(failed(&setup))?;
    Ok(Schema {
        release: known,
        database: newest_applied,
    })
}

/// True when `err` is a unique-constraint violation: the database, not a
/// check-then-insert, decided that the row already exists.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Turns a storage failure into the status a caller sees: UNAVAILABLE when
/// the database cannot be reached (safe to retry), INTERNAL otherwise. The
/// details go to the log, not to the caller.
pub fn status(err: sqlx::Error) -> Status {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => {
            tracing::warn!(error = %err, "database unavailable");
            Status::unavailable("the database is unavailable; retry later")
        }
        sqlx::Error::Database(ref db)
            if db.message().contains("locked") || db.message().contains("busy") =>
        {
            tracing::warn!(error = %err, "database busy");
            Status::unavailable("the database is busy; retry later")
        }
        // PostgreSQL going away or not there yet: SQLSTATE class 08
        // (connection exception), 53 (insufficient resources, such as too
        // many connections) and 57 (operator intervention: shutting down,
        // starting up, connection terminated).
        sqlx::Error::Database(ref db)
            if db
                .code()
                .is_some_and(|c| ["08", "53", "57"].iter().any(|class| c.starts_with(class))) =>
        {
            tracing::warn!(error = %err, "database unavailable");
            Status::unavailable("the database is unavailable; retry later")
        }
        other => {
            tracing::error!(error = %other, "storage error");
            Status::internal("internal storage error")
        }
    }
}
