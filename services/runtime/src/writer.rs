//! Group commit for SQLite. SQLite has one writer per file, and with
//! `synchronous = FULL` it holds the write lock through each commit's fsync;
//! writers from a pool then meet on that lock and SQLite's busy handler puts
//! them to sleep for 1 to 100 ms at a time, whatever the lock's real wait.
//! So a process writes through one connection owned by one task: callers
//! queue their transactions, the task takes everything queued, runs them in
//! one transaction, commits once, and only then answers every caller. One
//! fsync covers the batch, and no caller is answered before its commit is
//! durable.
//!
//! A transaction that fails must not take the others down: the batch is then
//! rolled back, the failed one answered with its error, and the rest run
//! again, each in a savepoint of its own this time (so a second failure
//! costs nothing more). That is why a transaction is a `Fn`: it may run
//! twice, and only the run that is committed is answered. Failures are rare
//! (a duplicate key on a retried request), so the usual batch pays no
//! savepoints. PostgreSQL needs none of this (row locks and its own group
//! commit): there a write is a plain transaction from the pool.

use std::any::Any;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sqlx::{AnyConnection, AnyPool};
use tokio::sync::{mpsc, oneshot};

/// The most transactions one commit covers.
const MAX_BATCH: usize = 128;
/// Transactions waiting for the writer; beyond this callers wait to queue.
const QUEUE: usize = 1024;

type Value = Box<dyn Any + Send>;
type Answer = oneshot::Sender<Result<Value, sqlx::Error>>;
type Run = Box<
    dyn for<'c> Fn(&'c mut AnyConnection) -> BoxFuture<'c, Result<Value, sqlx::Error>>
        + Send
        + Sync,
>;

/// A caller's transaction and where its answer goes.
struct Job {
    run: Run,
    answer: Answer,
}

/// The queue in front of a process's one SQLite writer.
#[derive(Debug, Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task; its connection is taken from `pool` (so it
    /// has the pool's settings) and kept out of it.
    pub fn start(pool: AnyPool) -> Self {
        let (jobs, queue) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, queue));
        Self { jobs }
    }

    /// Runs `transaction` in the next batch and answers after its commit.
    /// A caller that goes away does not cancel it: once queued, it runs.
    pub async fn write<T, F>(&self, transaction: F) -> Result<T, sqlx::Error>
    where
        T: Send + 'static,
        F: for<'c> Fn(&'c mut AnyConnection) -> BoxFuture<'c, Result<T, sqlx::Error>>
            + Send
            + Sync
            + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let run: Run = Box::new(move |conn| {
            let ran = transaction(conn);
            Box::pin(async move { ran.await.map(|value| Box::new(value) as Value) })
        });
        self.jobs
            .send(Job { run, answer })
            .await
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let value = answered.await.map_err(|_| sqlx::Error::WorkerCrashed)??;
        value
            .downcast::<T>()
            .map(|value| *value)
            .map_err(|_| sqlx::Error::Protocol("writer answered with another type".into()))
    }
}

async fn run(pool: AnyPool, mut queue: mpsc::Receiver<Job>) {
    let mut conn: Option<AnyConnection> = None;
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        let batch = std::mem::take(&mut jobs);
        if conn.is_none() {
            match pool.acquire().await {
                Ok(pooled) => conn = Some(pooled.detach()),
                Err(err) => {
                    fail_all(batch, &format!("no database connection: {err}"));
                    continue;
                }
            }
        }
        let Some(writer) = conn.as_mut() else {
            continue;
        };
        if let Err(err) = commit_batch(writer, batch).await {
            tracing::warn!(error = %err, "database write batch failed");
            // A connection that cannot begin or roll back may be broken.
            conn = None;
        }
    }
}

/// Runs a batch in one transaction and answers every job. Errs (with every
/// job answered) when the connection itself failed. A job refused on the
/// way (say, a duplicate of a row another job of the batch wrote) is
/// answered last, once the rest is committed: its caller then finds what
/// refused it.
async fn commit_batch(writer: &mut AnyConnection, batch: Vec<Job>) -> Result<(), sqlx::Error> {
    let mut refused = Vec::new();
    let result = commit_rounds(writer, batch, &mut refused).await;
    for (answer, err) in refused {
        let _ = answer.send(Err(err));
    }
    result
}

/// The rounds of a batch: all jobs at once, then, after a failure, the
/// others again in savepoints; the failed ones go to `refused`.
async fn commit_rounds(
    writer: &mut AnyConnection,
    mut batch: Vec<Job>,
    refused: &mut Vec<(Answer, sqlx::Error)>,
) -> Result<(), sqlx::Error> {
    let mut careful = false;
    loop {
        if let Err(err) = exec(writer, "BEGIN IMMEDIATE").await {
            fail_all(batch, &format!("cannot start a write: {err}"));
            return Err(err);
        }
        let mut results = Vec::with_capacity(batch.len());
        let mut failed = None;
        let mut broken = None;
        for (i, job) in batch.iter().enumerate() {
            match run_job(writer, &job.run, careful).await {
                Ok(Ok(value)) => results.push(Ok(value)),
                Ok(Err(err)) if careful => results.push(Err(err)),
                Ok(Err(err)) => {
                    failed = Some((i, err));
                    break;
                }
                Err(err) => {
                    broken = Some(err);
                    break;
                }
            }
        }
        if let Some(err) = broken {
            // Nothing in this batch can be trusted: roll it all back.
            let _ = exec(writer, "ROLLBACK").await;
            fail_all(batch, &format!("write rolled back: {err}"));
            return Err(err);
        }
        if let Some((i, err)) = failed {
            // Roll back the batch, answer the failed job, run the others
            // again, each in its own savepoint.
            if let Err(rollback) = exec(writer, "ROLLBACK").await {
                fail_all(batch, &format!("write rolled back: {rollback}"));
                return Err(rollback);
            }
            refused.push((batch.remove(i).answer, err));
            if batch.is_empty() {
                return Ok(());
            }
            careful = true;
            continue;
        }
        let commit = exec(writer, "COMMIT").await;
        if commit.is_err() {
            let _ = exec(writer, "ROLLBACK").await;
        }
        for (job, result) in batch.into_iter().zip(results) {
            let _ = job.answer.send(match (&commit, result) {
                (Ok(()), result) => result,
                (Err(err), Ok(_)) => Err(sqlx::Error::Protocol(format!("commit failed: {err}"))),
                (Err(_), Err(err)) => Err(err),
            });
        }
        return commit;
    }
}

/// Runs one job, in a savepoint of its own when `careful` (its failure then
/// rolls back only what it did). The outer error means the batch can no
/// longer be trusted: a savepoint could not be set or undone.
async fn run_job(
    writer: &mut AnyConnection,
    run: &Run,
    careful: bool,
) -> Result<Result<Value, sqlx::Error>, sqlx::Error> {
    if careful {
        exec(writer, "SAVEPOINT job").await?;
    }
    // A panicking job fails alone, like one that returns an error: what it
    // wrote is rolled back with the batch or its savepoint.
    let result = AssertUnwindSafe(run(writer))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| Err(sqlx::Error::Protocol("the database write panicked".into())));
    if careful {
        if result.is_err() {
            exec(writer, "ROLLBACK TO job").await?;
        }
        exec(writer, "RELEASE job").await?;
    }
    Ok(result)
}

/// One statement on the writer (boxed: it keeps the writer task `Send`).
fn exec<'c>(
    conn: &'c mut AnyConnection,
    sql: &'static str,
) -> BoxFuture<'c, Result<(), sqlx::Error>> {
    let done = sqlx::Executor::execute(conn, sql);
    Box::pin(async move { done.await.map(|_| ()) })
}

fn fail_all(jobs: Vec<Job>, why: &str) {
    for job in jobs {
        let _ = job.answer.send(Err(sqlx::Error::Protocol(why.to_owned())));
    }
}

/// Runs `transaction` on a pooled connection in a transaction of its own
/// (PostgreSQL).
pub async fn pooled<T, F>(pool: &AnyPool, transaction: F) -> Result<T, sqlx::Error>
where
    F: for<'c> Fn(&'c mut AnyConnection) -> BoxFuture<'c, Result<T, sqlx::Error>>,
{
    let mut tx = pool.begin().await?;
    match transaction(&mut tx).await {
        Ok(value) => {
            tx.commit().await?;
            Ok(value)
        }
        Err(err) => {
            let _ = tx.rollback().await;
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::DatabaseConfig;
    use crate::storage::{Db, Migration};

    const TABLE: Migration = Migration {
        version: 1,
        name: "t",
        sqlite: "CREATE TABLE t (k TEXT PRIMARY KEY)",
        postgres: "CREATE TABLE t (k TEXT PRIMARY KEY)",
        contract: false,
    };

    async fn insert(db: &Db, keys: Vec<String>) -> Result<(), sqlx::Error> {
        db.write(move |conn| {
            let keys = keys.clone();
            Box::pin(async move {
                for key in &keys {
                    sqlx::query("INSERT INTO t (k) VALUES ($1)")
                        .bind(key)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        })
        .await
    }

    async fn present(db: &Db, key: &str) -> bool {
        sqlx::query("SELECT k FROM t WHERE k = $1")
            .bind(key)
            .fetch_optional(db.pool())
            .await
            .expect("read")
            .is_some()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_transaction_commits_or_rolls_back_alone_and_is_answered_after_its_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = DatabaseConfig::Sqlite(dir.path().join("w.db"));
        let db = Db::open(&config, &[TABLE]).await.expect("open");
        insert(&db, vec!["taken".into()]).await.expect("first");
        // Many at once, so they share commits; two of them write a row and
        // then fail on a duplicate (the second one in the careful re-run).
        let mut calls = Vec::new();
        for i in 0..60 {
            let db = db.clone();
            calls.push(tokio::spawn(async move {
                let mut keys = vec![format!("k{i}")];
                if i == 13 || i == 31 {
                    keys.push("taken".into());
                }
                let result = insert(&db, keys).await;
                // Answered: another connection must see it committed.
                let seen = present(&db, &format!("k{i}")).await;
                (i, result, seen)
            }));
        }
        for call in calls {
            let (i, result, seen) = call.await.expect("task");
            if i == 13 || i == 31 {
                let err = result.expect_err("the duplicate fails");
                assert!(crate::storage::is_unique_violation(&err), "{err}");
                assert!(!seen, "the failed transaction's first row was rolled back");
            } else {
                result.expect("write");
                assert!(seen, "k{i} answered before it was committed");
            }
        }
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM t")
            .fetch_one(db.pool())
            .await
            .expect("count");
        assert_eq!(count, 59, "58 new rows and the first");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_transaction_is_answered_once_what_refused_it_is_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = DatabaseConfig::Sqlite(dir.path().join("w.db"));
        let db = Db::open(&config, &[TABLE]).await.expect("open");
        for round in 0..40 {
            // Concurrent inserts of one key share a batch: one wins, and the
            // others, refused by the winner's row, must find it committed
            // when they look (as a retry with a request id does).
            let key = format!("same{round}");
            let mut calls = Vec::new();
            for _ in 0..16 {
                let (db, key) = (db.clone(), key.clone());
                calls.push(tokio::spawn(async move {
                    match insert(&db, vec![key.clone()]).await {
                        Ok(()) => true,
                        Err(err) => {
                            assert!(crate::storage::is_unique_violation(&err), "{err}");
                            assert!(
                                present(&db, &key).await,
                                "refused before the winner committed"
                            );
                            false
                        }
                    }
                }));
            }
            let mut won = 0;
            for call in calls {
                won += usize::from(call.await.expect("task"));
            }
            assert_eq!(won, 1, "{key}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_transaction_fails_alone_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = DatabaseConfig::Sqlite(dir.path().join("w.db"));
        let db = Db::open(&config, &[TABLE]).await.expect("open");
        let mut calls = Vec::new();
        for i in 0..20 {
            let db = db.clone();
            calls.push(tokio::spawn(async move {
                let result = db
                    .write(move |conn| {
                        Box::pin(async move {
                            sqlx::query("INSERT INTO t (k) VALUES ($1)")
                                .bind(format!("p{i}"))
                                .execute(&mut *conn)
                                .await?;
                            assert!(i != 7, "a bug in one transaction");
                            Ok(())
                        })
                    })
                    .await;
                (i, result)
            }));
        }
        for call in calls {
            let (i, result) = call.await.expect("task");
            assert_eq!(result.is_err(), i == 7, "p{i}: {result:?}");
        }
        assert!(
            !present(&db, "p7").await,
            "the panicked write was rolled back"
        );
        insert(&db, vec!["after".into()])
            .await
            .expect("the writer still runs");
        assert!(present(&db, "p3").await && present(&db, "after").await);
    }

    #[tokio::test]
    async fn a_commit_survives_reopening_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = DatabaseConfig::Sqlite(dir.path().join("w.db"));
        let db = Db::open(&config, &[TABLE]).await.expect("open");
        insert(&db, vec!["kept".into()]).await.expect("write");
        db.pool().close().await;
        let again = Db::open(&config, &[TABLE]).await.expect("reopen");
        assert!(present(&again, "kept").await);
    }
}
