//! The migration runner as releases meet it, on every backend: a release
//! runs beside expand steps it does not know (the previous release during a
//! rollout, or after a rollback), leaves its own contract steps for the
//! operator to apply, refuses to start on a contract step it does not know
//! with one line naming it, and on PostgreSQL a schema change
//! that cannot get its table's lock (a long transaction holds it) gives up
//! after the runner's lock timeout rather than queueing every call.

use std::time::{Duration, Instant};

use platform_runtime::config::DatabaseConfig;
use platform_runtime::storage::{Db, Migration, Steps, StorageError};
use sqlx::Connection;
use testkit::Backend;

const fn step(version: i64, name: &'static str, sql: &'static str, contract: bool) -> Migration {
    Migration {
        version,
        name,
        sqlite: sql,
        postgres: sql,
        contract,
    }
}

const CREATE: Migration = step(
    1,
    "items",
    "CREATE TABLE items (id TEXT PRIMARY KEY)",
    false,
);
const EXPAND: Migration = step(
    2,
    "items_note",
    "ALTER TABLE items ADD COLUMN note TEXT",
    false,
);
const CONTRACT: Migration = step(
    3,
    "items_no_note",
    "ALTER TABLE items DROP COLUMN note",
    true,
);

async fn config(backend: &Backend, dir: &std::path::Path) -> DatabaseConfig {
    let url = testkit::database(backend, dir, "migrations").await;
    match backend {
        Backend::Sqlite => DatabaseConfig::Sqlite(url.trim_start_matches("sqlite:").into()),
        Backend::Postgres(_) => DatabaseConfig::Postgres(url),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_run_beside_expand_steps_and_refuse_contract_steps_they_do_not_know() {
    for backend in testkit::backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(&backend, dir.path()).await;
        // v2 expands; v1 (knowing migration 1 only) still starts on it.
        Db::open(&config, &[CREATE, EXPAND]).await.expect("v2");
        Db::open(&config, &[CREATE])
            .await
            .unwrap_or_else(|e| panic!("{}: v1 beside an expand step: {e}", backend.name()));
        // v3 starts with its contract step waiting (v1 and v2 may still
        // run), and runs on either side of it.
        let waiting = Db::open(&config, &[CREATE, EXPAND, CONTRACT])
            .await
            .expect("v3");
        assert_eq!(
            (waiting.schema().release, waiting.schema().database),
            (3, 2),
            "{}: the contract step waits",
            backend.name()
        );
        Db::open(&config, &[CREATE])
            .await
            .unwrap_or_else(|e| panic!("{}: v1 while the step waits: {e}", backend.name()));
        // Applied by the operator (`platformctl migrate --contract`): v1 and
        // v2 now refuse, naming the step.
        let contracted = Db::open_with(&config, &[CREATE, EXPAND, CONTRACT], Steps::All)
            .await
            .expect("v3 contracts");
        assert_eq!(contracted.schema().database, 3, "{}", backend.name());
        for (release, known) in [(&[CREATE][..], 1), (&[CREATE, EXPAND][..], 2)] {
            let refused = Db::open(&config, release)
                .await
                .expect_err("past a contract step");
            assert!(
                matches!(&refused, StorageError::ContractedPast { version: 3, known: k, .. } if *k == known),
                "{}: {refused}",
                backend.name()
            );
            assert!(
                refused.to_string().contains("migration 3 (items_no_note)"),
                "{refused}"
            );
        }
        Db::open(&config, &[CREATE, EXPAND, CONTRACT])
            .await
            .expect("v3 again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_an_earlier_runner_is_brought_up_to_date() {
    for backend in testkit::backends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config(&backend, dir.path()).await;
        let url = match &config {
            DatabaseConfig::Sqlite(path) => format!("sqlite://{}?mode=rwc", path.display()),
            DatabaseConfig::Postgres(url) => url.clone(),
        };
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&url).await.expect("connect");
        // The bookkeeping table as the runner wrote it before contract steps.
        sqlx::raw_sql(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, \
             checksum TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)",
        )
        .execute(&mut conn)
        .await
        .expect("old table");
        let _ = conn.close().await;
        Db::open(&config, &[CREATE, EXPAND])
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", backend.name()));
        Db::open_with(&config, &[CREATE, EXPAND, CONTRACT], Steps::All)
            .await
            .expect("and on from there");
        assert!(Db::open(&config, &[CREATE]).await.is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_behind_a_long_transaction_gives_up_instead_of_queueing_calls() {
    let Some(Backend::Postgres(admin)) = testkit::backends().into_iter().nth(1) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let url = testkit::database(&Backend::Postgres(admin), dir.path(), "migrations").await;
    let config = DatabaseConfig::Postgres(url.clone());
    Db::open(&config, &[CREATE]).await.expect("first release");

    // A reader in a long transaction holds a lock on the table.
    let mut reader = sqlx::AnyConnection::connect(&url).await.expect("connect");
    sqlx::raw_sql("BEGIN; SELECT count(*) FROM items")
        .execute(&mut reader)
        .await
        .expect("read");
    let started = Instant::now();
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        Db::open(&config, &[CREATE, EXPAND]),
    )
    .await
    .expect("the migration gives up rather than waiting for the lock")
    .expect_err("the schema change cannot get its lock");
    let waited = started.elapsed();
    assert!(
        matches!(&refused, StorageError::Migration { version: 2, .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("lock timeout"), "{refused}");
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(30),
        "gave up after {waited:?}"
    );
    // Once the reader is done, the same release starts.
    sqlx::raw_sql("COMMIT")
        .execute(&mut reader)
        .await
        .expect("commit");
    Db::open(&config, &[CREATE, EXPAND])
        .await
        .expect("the migration applies once the lock is free");
}

/// Every service's migrations: the file's first line says `-- Expand` or
/// `-- Contract`, as the `contract` flag the runner records does.
#[test]
fn each_migration_says_what_it_is_as_its_flag_does() {
    for (service, migrations) in [
        ("auth", auth::MIGRATIONS),
        ("orders", orders::MIGRATIONS),
        ("payments", payments::MIGRATIONS),
        ("notifications", notifications::MIGRATIONS),
    ] {
        for migration in migrations {
            for sql in [migration.sqlite, migration.postgres] {
                let said = if sql.starts_with("-- Contract") {
                    Some(true)
                } else if sql.starts_with("-- Expand") {
                    Some(false)
                } else {
                    None
                };
                assert_eq!(
                    said,
                    Some(migration.contract),
                    "{service} migration {} ({})",
                    migration.version,
                    migration.name
                );
            }
        }
    }
}

/// The check that stops an incompatible release before it takes traffic:
/// an expand migration that drops a column the previous release reads, or
/// adds one it cannot write, is refused with what to do; the same in a
/// contract migration passes; the repository's migrations pass.
#[test]
fn an_expand_migration_that_breaks_the_previous_release_is_refused() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let check = |files: &[std::path::PathBuf]| {
        std::process::Command::new("python3")
            .arg(repo.join("scripts/migration_check.py"))
            .args(files)
            .output()
            .expect("python3 runs")
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let expand = dir.path().join("0003_expand.sql");
    std::fs::write(
        &expand,
        "-- Expand.\nALTER TABLE orders DROP COLUMN request_fingerprint;\n\
         ALTER TABLE orders ADD COLUMN channel TEXT NOT NULL;\n\
         ALTER TABLE orders ADD COLUMN note TEXT;\n",
    )
    .expect("write");
    let refused = check(std::slice::from_ref(&expand));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("drops") && said.contains("request_fingerprint"),
        "{said}"
    );
    assert!(said.contains("required column without a default"), "{said}");
    assert!(
        !said.contains("note"),
        "adding a nullable column is fine: {said}"
    );
    assert!(
        said.contains("`-- Contract` migration of a later release"),
        "{said}"
    );

    let contract = dir.path().join("0004_contract.sql");
    std::fs::write(
        &contract,
        "-- Contract.\nALTER TABLE orders DROP COLUMN request_fingerprint;\n",
    )
    .expect("write");
    assert!(check(&[contract]).status.success());

    let mut ours: Vec<std::path::PathBuf> = Vec::new();
    for service in ["auth", "orders", "payments", "notifications"] {
        for entry in std::fs::read_dir(repo.join("services").join(service).join("migrations"))
            .expect("migrations")
        {
            ours.push(entry.expect("entry").path());
        }
    }
    let output = check(&ours);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
