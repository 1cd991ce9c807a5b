//! PostgreSQL migrations under load: a schema change that cannot get its
//! table's lock (a long transaction holds it) gives up after the runner's
//! lock timeout and the service refuses to start, rather than queueing
//! every call behind it; the table stays as it was.

use std::time::{Duration, Instant};

use platform_runtime::config::DatabaseConfig;
use platform_runtime::storage::{Db, Migration, StorageError};
use sqlx::Connection;
use testkit::Backend;

const CREATE: Migration = Migration {
    version: 1,
    name: "items",
    sqlite: "CREATE TABLE items (id TEXT PRIMARY KEY)",
    postgres: "CREATE TABLE items (id TEXT PRIMARY KEY)",
};

const EXPAND: Migration = Migration {
    version: 2,
    name: "items_note",
    sqlite: "ALTER TABLE items ADD COLUMN note TEXT",
    postgres: "ALTER TABLE items ADD COLUMN note TEXT",
};

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
