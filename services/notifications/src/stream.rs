//! Live notification streams. Blue and green (and every replica) share one
//! database but not memory, so new rows are found by polling: one poller per
//! process reads every user's new rows once per interval, only while a stream
//! is open here, and hands each row to the open streams of its user, so the
//! cost of polling does not grow with the number of streams. A Send handled
//! by this process wakes the poller at once instead of waiting for the poll.
//! Rows are read with a look-back window and de-duplicated per stream, so a
//! row that commits after a newer one is still delivered, exactly once.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use platform_proto::notifications::v1::Notification;
use platform_runtime::host::StreamsEnd;
use platform_runtime::time;
use tokio::sync::{Notify, mpsc};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::service::to_message;
use crate::store::{NotificationRow, Store};

/// How far back each poll looks for rows that committed late.
const LOOK_BACK_MS: i64 = 5_000;
/// Messages buffered per stream; the last slot is kept for the error that ends it.
const BUFFER: usize = 64;

/// How live streams are served and bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamConfig {
    /// How often the poller reads new rows while a stream is open.
    pub poll: Duration,
    pub max_per_user: usize,
    pub max_total: usize,
}

/// The live streams of this process and the one poller that feeds them.
#[derive(Debug, Clone)]
pub struct LiveStreams {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: Store,
    config: StreamConfig,
    registry: Mutex<Registry>,
    wake: Notify,
}

impl Shared {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // The registry stays consistent between statements, so a panic elsewhere cannot corrupt it.
        self.registry.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl LiveStreams {
    pub fn new(store: Store, config: StreamConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                config,
                registry: Mutex::new(Registry::default()),
                wake: Notify::new(),
            }),
        }
    }

    /// Opens a stream of `user_id`'s notifications from now on, within the
    /// per-user and per-process limits.
    pub fn open(&self, user_id: String) -> Result<Subscription, Status> {
        let (tx, rx) = mpsc::channel(BUFFER);
        let mut registry = self.shared.registry();
        let was_idle = registry.total == 0;
        let id = registry
            .admit(&user_id, &self.shared.config, time::now_ms(), tx)
            .map_err(Refusal::status)?;
        drop(registry);
        if was_idle {
            self.shared.wake.notify_one();
        }
        Ok(Subscription {
            rx: ReceiverStream::new(rx),
            _open: OpenStream {
                shared: Arc::clone(&self.shared),
                user_id,
                id,
            },
        })
    }

    /// A Send handled here: polls at once when that user has a stream here.
    pub fn sent_to(&self, user_id: &str) {
        if self.shared.registry().by_user.contains_key(user_id) {
            self.shared.wake.notify_one();
        }
    }

    /// The poller: reads new rows of every user while a stream is open and
    /// hands them out; at shutdown it ends every stream with UNAVAILABLE.
    pub async fn run_poller(self, mut streams_end: StreamsEnd) {
        let shared = &self.shared;
        let mut last_poll_ms = time::now_ms();
        loop {
            // No queries while nobody listens.
            let floor = loop {
                if let Some(floor) = shared.registry().floor(last_poll_ms) {
                    break floor;
                }
                tokio::select! {
                    _ = shared.wake.notified() => {}
                    _ = streams_end.wait() => {
                        shared.registry().close();
                        return;
                    }
                }
            };
            let polled_at_ms = time::now_ms();
            match shared.store.since(floor).await {
                Ok(rows) => {
                    last_poll_ms = polled_at_ms;
                    shared.registry().deliver(&rows, floor);
                }
                // The floor stays put, so the next poll reads these rows again.
                Err(err) => tracing::warn!(error = %err, "cannot read new notifications"),
            }
            tokio::select! {
                _ = tokio::time::sleep(shared.config.poll) => {}
                _ = shared.wake.notified() => {}
                _ = streams_end.wait() => {
                    shared.registry().close();
                    return;
                }
            }
        }
    }
}

/// One client's live stream; dropping it (the client left) frees its place.
#[derive(Debug)]
pub struct Subscription {
    rx: ReceiverStream<Result<Notification, Status>>,
    _open: OpenStream,
}

impl Stream for Subscription {
    type Item = Result<Notification, Status>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.get_mut().rx).poll_next(cx)
    }
}

#[derive(Debug)]
struct OpenStream {
    shared: Arc<Shared>,
    user_id: String,
    id: u64,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.shared.registry().remove(&self.user_id, self.id);
    }
}

/// Why a stream was not opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    PerUser(usize),
    Total(usize),
    ShuttingDown,
}

impl Refusal {
    fn status(self) -> Status {
        match self {
            Refusal::PerUser(max) => Status::resource_exhausted(format!(
                "at most {max} live streams per user; close one first"
            )),
            Refusal::Total(max) => Status::resource_exhausted(format!(
                "this server already holds its {max} live streams; retry later"
            )),
            Refusal::ShuttingDown => shutting_down(),
        }
    }
}

fn shutting_down() -> Status {
    Status::unavailable("the server is shutting down; reconnect to continue")
}

#[derive(Debug)]
struct Subscriber {
    id: u64,
    started_ms: i64,
    /// Rows already delivered, by id, with their creation time.
    sent: HashMap<String, i64>,
    tx: mpsc::Sender<Result<Notification, Status>>,
    ended: bool,
}

impl Subscriber {
    /// Hands `row` to the client; false when the stream has ended.
    fn offer(&mut self, row: &NotificationRow) -> bool {
        if self.tx.capacity() <= 1 {
            // A client this far behind would make the poller wait for it.
            let _ = self.tx.try_send(Err(Status::resource_exhausted(
                "the client reads notifications too slowly; reconnect to continue",
            )));
            return false;
        }
        if self.tx.try_send(Ok(to_message(row.clone()))).is_err() {
            return false;
        }
        self.sent.insert(row.id.clone(), row.created_at_ms);
        true
    }
}

/// The open streams of this process, by user.
#[derive(Debug, Default)]
struct Registry {
    next_id: u64,
    by_user: HashMap<String, Vec<Subscriber>>,
    total: usize,
    closed: bool,
}

impl Registry {
    fn admit(
        &mut self,
        user_id: &str,
        config: &StreamConfig,
        now_ms: i64,
        tx: mpsc::Sender<Result<Notification, Status>>,
    ) -> Result<u64, Refusal> {
        if self.closed {
            return Err(Refusal::ShuttingDown);
        }
        if self.by_user.get(user_id).map_or(0, Vec::len) >= config.max_per_user {
            return Err(Refusal::PerUser(config.max_per_user));
        }
        if self.total >= config.max_total {
            return Err(Refusal::Total(config.max_total));
        }
        self.next_id += 1;
        self.by_user
            .entry(user_id.to_owned())
            .or_default()
            .push(Subscriber {
                id: self.next_id,
                started_ms: now_ms,
                sent: HashMap::new(),
                tx,
                ended: false,
            });
        self.total += 1;
        Ok(self.next_id)
    }

    fn remove(&mut self, user_id: &str, id: u64) {
        let Some(streams) = self.by_user.get_mut(user_id) else {
            return;
        };
        let before = streams.len();
        streams.retain(|s| s.id != id);
        self.total -= before - streams.len();
        if streams.is_empty() {
            self.by_user.remove(user_id);
        }
    }

    /// Where the next poll starts: the look-back window behind the last
    /// poll, never before the oldest open stream; None with no stream open.
    fn floor(&self, last_poll_ms: i64) -> Option<i64> {
        let oldest = self
            .by_user
            .values()
            .flatten()
            .map(|s| s.started_ms)
            .min()?;
        Some((last_poll_ms - LOOK_BACK_MS).max(oldest))
    }

    /// Hands each row, once, to the streams of its user opened before it.
    fn deliver(&mut self, rows: &[NotificationRow], floor: i64) {
        for row in rows {
            let Some(streams) = self.by_user.get_mut(&row.user_id) else {
                continue;
            };
            for stream in streams.iter_mut() {
                if stream.ended
                    || row.created_at_ms < stream.started_ms
                    || stream.sent.contains_key(&row.id)
                {
                    continue;
                }
                stream.ended = !stream.offer(row);
            }
        }
        let mut ended = 0;
        self.by_user.retain(|_, streams| {
            let before = streams.len();
            streams.retain(|s| !s.ended);
            ended += before - streams.len();
            // Rows older than the floor are never read again.
            for stream in streams.iter_mut() {
                stream.sent.retain(|_, created_ms| *created_ms >= floor);
            }
            !streams.is_empty()
        });
        self.total -= ended;
    }

    /// Ends every stream with UNAVAILABLE and refuses new ones.
    fn close(&mut self) {
        self.closed = true;
        for stream in self.by_user.drain().flat_map(|(_, streams)| streams) {
            let _ = stream.tx.try_send(Err(shutting_down()));
        }
        self.total = 0;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const CONFIG: StreamConfig = StreamConfig {
        poll: Duration::from_millis(500),
        max_per_user: 2,
        max_total: 3,
    };

    type Rx = mpsc::Receiver<Result<Notification, Status>>;

    fn open(registry: &mut Registry, user: &str, now_ms: i64) -> Result<(u64, Rx), Refusal> {
        let (tx, rx) = mpsc::channel(BUFFER);
        registry.admit(user, &CONFIG, now_ms, tx).map(|id| (id, rx))
    }

    fn row(id: &str, user: &str, created_at_ms: i64) -> NotificationRow {
        NotificationRow {
            id: id.into(),
            user_id: user.into(),
            kind: "test".into(),
            subject: id.into(),
            body: String::new(),
            created_at_ms,
        }
    }

    fn received(rx: &mut Rx) -> Vec<Result<String, tonic::Code>> {
        let mut out = Vec::new();
        while let Ok(item) = rx.try_recv() {
            out.push(item.map(|n| n.id).map_err(|s| s.code()));
        }
        out
    }

    #[test]
    fn limits_streams_per_user_and_in_total() {
        let mut registry = Registry::default();
        let (a1, _a1) = open(&mut registry, "alice", 0).unwrap();
        let _a2 = open(&mut registry, "alice", 0).unwrap();
        assert_eq!(
            open(&mut registry, "alice", 0).err(),
            Some(Refusal::PerUser(2))
        );
        let _b1 = open(&mut registry, "bob", 0).unwrap();
        assert_eq!(
            open(&mut registry, "carol", 0).err(),
            Some(Refusal::Total(3))
        );
        registry.remove("alice", a1);
        registry.remove("alice", a1);
        assert_eq!(registry.total, 2, "removing twice frees one place");
        assert!(open(&mut registry, "carol", 0).is_ok());
        registry.close();
        assert_eq!(
            open(&mut registry, "dave", 0).err(),
            Some(Refusal::ShuttingDown)
        );
    }

    #[test]
    fn messages_of_refusals() {
        assert_eq!(
            Refusal::PerUser(5).status().message(),
            "at most 5 live streams per user; close one first"
        );
        assert_eq!(
            Refusal::PerUser(5).status().code(),
            tonic::Code::ResourceExhausted
        );
        assert_eq!(
            Refusal::Total(1000).status().code(),
            tonic::Code::ResourceExhausted
        );
        assert_eq!(
            Refusal::ShuttingDown.status().code(),
            tonic::Code::Unavailable
        );
    }

    #[test]
    fn delivers_each_row_once_to_its_users_streams_opened_before_it() {
        let mut registry = Registry::default();
        let (_, mut early) = open(&mut registry, "alice", 100).unwrap();
        let (_, mut late) = open(&mut registry, "alice", 200).unwrap();
        let (_, mut bob) = open(&mut registry, "bob", 100).unwrap();
        let floor = registry.floor(1_000).unwrap();
        assert_eq!(floor, 100, "never before the oldest stream");
        registry.deliver(&[row("n1", "alice", 150), row("n2", "bob", 160)], floor);
        // The next poll reads the same rows again, plus one that committed late.
        registry.deliver(
            &[
                row("n1", "alice", 150),
                row("n0", "alice", 210),
                row("n2", "bob", 160),
            ],
            floor,
        );
        assert_eq!(received(&mut early), [Ok("n1".into()), Ok("n0".into())]);
        assert_eq!(received(&mut late), [Ok("n0".into())]);
        assert_eq!(received(&mut bob), [Ok("n2".into())]);
        assert_eq!(registry.floor(100_000), Some(95_000));
    }

    #[test]
    fn a_left_client_frees_its_place_and_a_slow_one_is_ended() {
        let mut registry = Registry::default();
        let (_, gone) = open(&mut registry, "alice", 0).unwrap();
        drop(gone);
        let (_, mut slow) = open(&mut registry, "bob", 0).unwrap();
        let rows: Vec<_> = (0..BUFFER)
            .map(|i| row(&format!("n{i:03}"), "bob", 1))
            .chain([row("a", "alice", 1)])
            .collect();
        registry.deliver(&rows, 0);
        assert_eq!(registry.total, 0);
        assert!(registry.by_user.is_empty());
        let got = received(&mut slow);
        assert_eq!(got.len(), BUFFER);
        assert_eq!(got.last(), Some(&Err(tonic::Code::ResourceExhausted)));
    }

    #[test]
    fn close_ends_every_stream_with_unavailable() {
        let mut registry = Registry::default();
        let (_, mut a) = open(&mut registry, "alice", 0).unwrap();
        registry.close();
        assert_eq!(received(&mut a), [Err(tonic::Code::Unavailable)]);
        assert!(a.try_recv().is_err(), "and then the stream ends");
        assert_eq!(registry.floor(0), None);
    }
}
