//! A fixed pool of threads for password hashing. Each argon2id hash holds
//! about 19 MiB while it runs, so the number of hashes at once, not the
//! number of callers, must decide the memory of the process: `workers`
//! threads hash, at most `queue` jobs wait, and a job that waited longer
//! than `wait` is refused without being computed.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::oneshot;

/// How many hashes run at once, how many may wait, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    pub workers: usize,
    pub queue: usize,
    pub wait: Duration,
}

/// Why a job was not computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `queue` jobs were already waiting.
    QueueFull,
    /// The job waited longer than `wait` for a thread.
    WaitedTooLong,
    /// The pool is gone: the service is stopping.
    Stopped,
    /// The job panicked.
    Panicked,
}

/// What the pool did, for `/metrics` and for tests.
#[derive(Debug, Clone, Default)]
pub struct PoolStats {
    pub in_flight: Gauge,
    /// The most jobs ever computed at once since the process started.
    pub in_flight_max: Gauge,
    pub queued: Gauge,
    pub completed: Counter,
    pub refused: Counter,
}

type Job = Box<dyn FnOnce(Instant) + Send>;

#[derive(Debug)]
pub struct HashPool {
    jobs: SyncSender<Job>,
    wait: Duration,
    stats: PoolStats,
}

impl HashPool {
    /// Starts `config.workers` threads; they end when the pool is dropped.
    pub fn new(config: PoolConfig) -> std::io::Result<Self> {
        let (jobs, receiver) = std::sync::mpsc::sync_channel::<Job>(config.queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..config.workers.max(1) {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("password-hash-{i}"))
                .spawn(move || work(&receiver))?;
        }
        Ok(Self {
            jobs,
            wait: config.wait,
            stats: PoolStats::default(),
        })
    }

    pub fn stats(&self) -> &PoolStats {
        &self.stats
    }

    /// Runs `job` on a pool thread, or refuses it when the pool is saturated.
    pub async fn run<T, F>(&self, job: F) -> Result<T, Refusal>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let deadline = Instant::now() + self.wait;
        let stats = self.stats.clone();
        let job: Job = Box::new(move |picked: Instant| {
            stats.queued.dec();
            // The caller went away: nobody would read the result.
            if reply.is_closed() {
                return;
            }
            if picked > deadline {
                stats.refused.inc();
                let _ = reply.send(Err(Refusal::WaitedTooLong));
                return;
            }
            let now = stats.in_flight.inc() + 1;
            stats
                .in_flight_max
                .inner()
                .fetch_max(now, Ordering::Relaxed);
            // A panicking job must not take its thread, and a slot, with it.
            let result = std::panic::catch_unwind(AssertUnwindSafe(job));
            stats.in_flight.dec();
            stats.completed.inc();
            let _ = reply.send(result.map_err(|_| Refusal::Panicked));
        });
        self.stats.queued.inc();
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.stats.queued.dec();
                self.stats.refused.inc();
                return Err(Refusal::QueueFull);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.stats.queued.dec();
                return Err(Refusal::Stopped);
            }
        }
        answer.await.unwrap_or(Err(Refusal::Stopped))
    }
}

/// One pool thread: takes jobs until the pool is dropped.
fn work(receiver: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let receiver = receiver.lock().unwrap_or_else(PoisonError::into_inner);
            match receiver.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        job(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use super::*;

    fn pool(workers: usize, queue: usize, wait: Duration) -> Arc<HashPool> {
        Arc::new(
            HashPool::new(PoolConfig {
                workers,
                queue,
                wait,
            })
            .expect("pool"),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_more_than_workers_at_once_and_refuses_beyond_the_queue() {
        let pool = pool(2, 3, Duration::from_secs(10));
        // Two jobs hold both threads until the whole burst has been submitted.
        let gate = Arc::new(Barrier::new(3));
        let mut calls = Vec::new();
        for _ in 0..2 {
            let (pool, gate) = (Arc::clone(&pool), Arc::clone(&gate));
            calls.push(tokio::spawn(async move {
                pool.run(move || {
                    gate.wait();
                })
                .await
            }));
        }
        while pool.stats().in_flight.get() < 2 {
            tokio::task::yield_now().await;
        }
        for _ in 0..10 {
            let pool = Arc::clone(&pool);
            calls.push(tokio::spawn(async move {
                pool.run(|| std::thread::sleep(Duration::from_millis(5)))
                    .await
            }));
        }
        while pool.stats().queued.get() + i64::try_from(pool.stats().refused.get()).expect("small")
            < 10
        {
            tokio::task::yield_now().await;
        }
        gate.wait();
        let mut results = Vec::new();
        for call in calls {
            results.push(call.await.expect("task"));
        }
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let full = results
            .iter()
            .filter(|r| **r == Err(Refusal::QueueFull))
            .count();
        assert_eq!((ok, full), (5, 7), "{results:?}");
        assert_eq!(pool.stats().in_flight_max.get(), 2);
        assert_eq!(pool.stats().completed.get(), 5);
        assert_eq!(pool.stats().in_flight.get(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_that_waited_too_long_is_not_computed() {
        let pool = pool(1, 4, Duration::from_millis(200));
        let slow = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move {
                pool.run(|| std::thread::sleep(Duration::from_millis(1000)))
                    .await
            })
        };
        while pool.stats().in_flight.get() < 1 {
            tokio::task::yield_now().await;
        }
        let computed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = Arc::clone(&computed);
        let late = pool.run(move || flag.store(true, Ordering::Relaxed)).await;
        assert_eq!(late, Err(Refusal::WaitedTooLong));
        assert!(!computed.load(Ordering::Relaxed));
        assert_eq!(slow.await.expect("task"), Ok(()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_job_keeps_its_thread() {
        let pool = pool(1, 1, Duration::from_secs(5));
        assert_eq!(
            pool.run(|| panic!("boom")).await,
            Err::<(), _>(Refusal::Panicked)
        );
        assert_eq!(pool.run(|| 7).await, Ok(7));
    }
}
