//! Group commit for SQLite. SQLite has one writer per file, and with
//! `synchronous = FULL` it holds the write lock through each commit's fsync;
//! writers from a pool then meet on that lock and SQLite's busy handler puts
//! them to sleep for 1 to 100 ms at a time, whatever the lock's real wait.
//! So a process writes through one connection owned by one task: callers
//! queue their transactions, the task takes everything queued, runs each
//! one in its own savepoint (a failing one is rolled back alone), commits
//! once, and only then answers every caller. One fsync covers the batch, and
//! no caller is answered before its commit is durable. PostgreSQL needs none
//! of this (it has row locks and its own group commit): there a write is a
//! plain transaction from the pool.

use std::any::Any;

use futures_util::future::BoxFuture;
use sqlx::{AnyConnection, AnyPool};
use tokio::sync::{mpsc, oneshot};

/// The most transactions one commit covers.
const MAX_BATCH: usize = 128;
/// Transactions waiting for the writer; beyond this callers wait to queue.
const QUEUE: usize = 1024;

type Value = Box<dyn Any + Send>;
type Run = Box<
    dyn for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<Value, sqlx::Error>> + Send,
>;

/// A caller's transaction and where its answer goes.
struct Job {
    run: Run,
    answer: oneshot::Sender<Result<Value, sqlx::Error>>,
}

impl Job {
    fn fail(self, why: &str) {
        let _ = self.answer.send(Err(sqlx::Error::Protocol(why.to_owned())));
    }
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
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T, sqlx::Error>>
            + Send
            + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let run: Run = Box::new(move |conn| {
            Box::pin(async move {
                transaction(conn)
                    .await
                    .map(|value| Box::new(value) as Value)
            })
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
        if let Err(err) = exec(writer, "BEGIN IMMEDIATE").await {
            tracing::warn!(error = %err, "database write batch not started");
            fail_all(batch, &format!("cannot start a write: {err}"));
            // A connection that cannot begin may be broken: take a new one.
            conn = None;
            continue;
        }
        match run_batch(writer, batch).await {
            Ok(ran) => {
                let commit = exec(writer, "COMMIT").await;
                if let Err(err) = &commit {
                    tracing::warn!(error = %err, "database write batch not committed");
                    let _ = exec(writer, "ROLLBACK").await;
                }
                for (answer, result) in ran {
                    let _ = answer.send(match (&commit, result) {
                        (Ok(()), result) => result,
                        (Err(err), Ok(_)) => {
                            Err(sqlx::Error::Protocol(format!("commit failed: {err}")))
                        }
                        (Err(_), Err(err)) => Err(err),
                    });
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "database write batch rolled back");
                let _ = exec(writer, "ROLLBACK").await;
                conn = None;
            }
        }
    }
}

type Ran = Vec<(
    oneshot::Sender<Result<Value, sqlx::Error>>,
    Result<Value, sqlx::Error>,
)>;

/// Runs each job in its own savepoint. When a savepoint itself cannot be
/// closed, the whole batch is failed (every caller told) and rolled back.
async fn run_batch(writer: &mut AnyConnection, batch: Vec<Job>) -> Result<Ran, sqlx::Error> {
    let mut ran: Ran = Vec::with_capacity(batch.len());
    let mut batch = batch.into_iter();
    while let Some(job) = batch.next() {
        let step = async {
            exec(writer, "SAVEPOINT job").await?;
            let result = (job.run)(writer).await;
            if result.is_ok() {
                exec(writer, "RELEASE job").await?;
            } else {
                exec(writer, "ROLLBACK TO job").await?;
                exec(writer, "RELEASE job").await?;
            }
            Ok::<_, sqlx::Error>(result)
        };
        match step.await {
            Ok(result) => ran.push((job.answer, result)),
            Err(err) => {
                let why = format!("write rolled back: {err}");
                let _ = job.answer.send(Err(sqlx::Error::Protocol(why.clone())));
                for (answer, _) in ran {
                    let _ = answer.send(Err(sqlx::Error::Protocol(why.clone())));
                }
                fail_all(batch.collect(), &why);
                return Err(err);
            }
        }
    }
    Ok(ran)
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
        job.fail(why);
    }
}

/// Runs `transaction` on a pooled connection in a transaction of its own
/// (PostgreSQL).
pub async fn pooled<T, F>(pool: &AnyPool, transaction: F) -> Result<T, sqlx::Error>
where
    F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T, sqlx::Error>>,
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
    };

    async fn insert(db: &Db, keys: Vec<String>) -> Result<(), sqlx::Error> {
        db.write(move |conn| {
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
        // Many at once, so they share commits; one of them writes a row and
        // then fails on a duplicate.
        let mut calls = Vec::new();
        for i in 0..60 {
            let db = db.clone();
            calls.push(tokio::spawn(async move {
                let mut keys = vec![format!("k{i}")];
                if i == 13 {
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
            if i == 13 {
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
        assert_eq!(count, 60, "59 new rows and the first");
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
