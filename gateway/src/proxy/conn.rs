//! Every phase of a connection is bounded. A new connection must complete
//! its first request head within the header deadline (one that sends
//! nothing, only `PRI`, or stops mid-preface is closed); a connection with no
//! request in flight for the idle timeout is asked to close (GOAWAY, or
//! `Connection: close` at the next chance) and closed soon after; and at
//! shutdown, connections are asked to close and waited for up to a bound.
//! The decision is a pure function of what the connection has done; the
//! driver only applies it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Which listener a call came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Public,
    Internal,
}

/// The deadlines a connection lives by.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// From accept to the first complete request head.
    pub first_request: Duration,
    /// With no request in flight, from the end of the last one.
    pub idle: Duration,
}

/// What a connection's requests have done, shared with its watchdog.
#[derive(Debug)]
pub struct Activity {
    opened: Instant,
    started: AtomicBool,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` when the last request ended.
    last_end_ms: AtomicU64,
}

impl Activity {
    pub fn new(opened: Instant) -> Arc<Self> {
        Arc::new(Self {
            opened,
            started: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last_end_ms: AtomicU64::new(0),
        })
    }

    /// Marks a request as started; it is over when the guard is dropped
    /// (after its response body is sent, or abandoned).
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.started.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(Arc::clone(self))
    }

    /// Whether a request ever began on the connection.
    pub fn started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    fn seen(&self, now: Instant) -> Seen {
        Seen {
            started: self.started.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            open_for: now.saturating_duration_since(self.opened),
            since_last_end: now.saturating_duration_since(
                self.opened + Duration::from_millis(self.last_end_ms.load(Ordering::Relaxed)),
            ),
        }
    }
}

/// One request in flight on a connection.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_end_ms.store(ms, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request in flight until it is sent.
    pub struct Tracked<B> {
        #[pin]
        inner: B,
        in_flight: InFlight,
    }
}

impl<B> Tracked<B> {
    pub fn new(inner: B, in_flight: InFlight) -> Self {
        Self { inner, in_flight }
    }
}

impl<B: http_body::Body> http_body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The connections a listener holds: capped per client address and in all.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    per_client: Arc<crate::proxy::limits::PerClient>,
    total: Arc<tokio::sync::Semaphore>,
}

/// An admitted connection's share of the limits, given back on drop.
#[derive(Debug)]
pub struct Admitted {
    _client: crate::proxy::limits::ClientSlot,
    _total: tokio::sync::OwnedSemaphorePermit,
}

impl ConnLimits {
    pub fn new(per_client: usize, total: usize) -> Self {
        Self {
            per_client: crate::proxy::limits::PerClient::new(per_client),
            total: Arc::new(tokio::sync::Semaphore::new(total)),
        }
    }

    /// Room for one more connection from `ip`, or None: close it at once.
    pub fn admit(&self, ip: std::net::IpAddr) -> Option<Admitted> {
        let total = Arc::clone(&self.total).try_acquire_owned().ok()?;
        let client = self.per_client.try_take(ip)?;
        Some(Admitted {
            _client: client,
            _total: total,
        })
    }
}

/// What the watchdog saw of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub started: bool,
    pub in_flight: usize,
    pub open_for: Duration,
    pub since_last_end: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Ask the client to go (GOAWAY / `Connection: close`).
    GoAway,
    /// Drop the connection now: it never became a client.
    Close,
}

/// The pure decision of the watchdog.
pub fn verdict(seen: Seen, phases: Phases) -> Verdict {
    if !seen.started {
        if seen.open_for >= phases.first_request {
            return Verdict::Close;
        }
        return Verdict::Keep;
    }
    if seen.in_flight == 0 && seen.since_last_end >= phases.idle {
        return Verdict::GoAway;
    }
    Verdict::Keep
}

/// A served connection that can be asked to close gracefully.
pub trait Graceful: Future {
    fn go_away(self: Pin<&mut Self>);
}

impl<I, B, S, E> Graceful for hyper_util::server::conn::auto::Connection<'_, I, S, E>
where
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Future: 'static,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper_util::server::conn::auto::HttpServerConnExec<S::Future, B>,
{
    fn go_away(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// How long a connection asked to go may take to finish what it has.
const GOAWAY_GRACE: Duration = Duration::from_secs(5);

/// Serves `connection` until it ends, it breaks a phase deadline, or the
/// gateway stops (then it is asked to close and left to finish).
pub async fn drive<O>(
    mut connection: Pin<Box<dyn Graceful<Output = O> + Send>>,
    activity: Arc<Activity>,
    phases: Phases,
    mut stop: watch::Receiver<bool>,
) {
    let check_every = (phases.first_request.min(phases.idle) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut tick = tokio::time::interval(check_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopping = false;
    let mut idle_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                connection.as_mut().go_away();
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if let Some(since) = idle_since {
                    // Asked to go for idleness and still here: close it.
                    if now.duration_since(since) >= GOAWAY_GRACE {
                        return;
                    }
                    continue;
                }
                match verdict(activity.seen(now), phases) {
                    Verdict::Keep => {}
                    Verdict::Close => return,
                    Verdict::GoAway => {
                        idle_since = Some(now);
                        if !stopping {
                            connection.as_mut().go_away();
                        }
                    }
                }
            }
        }
    }
}

/// Waits for every connection at shutdown: each driver holds a ticket, and
/// the wait ends when the last one is dropped.
#[derive(Debug, Clone)]
pub struct Tickets(Arc<Mutex<Option<tokio::sync::mpsc::Sender<()>>>>);

#[derive(Debug)]
pub struct Ticket(#[allow(dead_code)] tokio::sync::mpsc::Sender<()>);

impl Tickets {
    pub fn new() -> (Self, tokio::sync::mpsc::Receiver<()>) {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        (Self(Arc::new(Mutex::new(Some(tx)))), rx)
    }

    /// A ticket for one more connection; None once closed.
    pub fn issue(&self) -> Option<Ticket> {
        let guard = match self.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.as_ref().map(|tx| Ticket(tx.clone()))
    }

    /// No more tickets: the receiver ends when the issued ones are dropped.
    pub fn close(&self) {
        let mut guard = match self.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        guard.take();
    }
}

/// How long to wait after a failed accept: doubling from 5 ms to 1 s, so a
/// process out of file descriptors does not spin on accept.
pub fn accept_backoff(failures: u32) -> Duration {
    Duration::from_millis(5u64.saturating_mul(1 << failures.min(8))).min(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_phase_has_a_deadline() {
        let phases = Phases {
            first_request: Duration::from_secs(10),
            idle: Duration::from_secs(60),
        };
        let s = Duration::from_secs;
        for (started, in_flight, open_for, since_last_end, want) in [
            (false, 0, s(1), s(1), Verdict::Keep),
            (false, 0, s(10), s(10), Verdict::Close),
            (true, 1, s(10), s(10), Verdict::Keep),
            (true, 1, s(600), s(600), Verdict::Keep),
            (true, 0, s(600), s(59), Verdict::Keep),
            (true, 0, s(600), s(60), Verdict::GoAway),
        ] {
            let seen = Seen {
                started,
                in_flight,
                open_for,
                since_last_end,
            };
            assert_eq!(verdict(seen, phases), want, "{seen:?}");
        }
    }

    #[test]
    fn activity_counts_requests_in_flight() {
        let opened = Instant::now();
        let activity = Activity::new(opened);
        assert!(!activity.seen(opened).started);
        let first = activity.request();
        let second = activity.request();
        assert_eq!(activity.seen(opened).in_flight, 2);
        drop(first);
        drop(second);
        let seen = activity.seen(Instant::now());
        assert!(seen.started);
        assert_eq!(seen.in_flight, 0);
    }

    #[test]
    fn accept_backs_off() {
        assert_eq!(accept_backoff(0), Duration::from_millis(5));
        assert_eq!(accept_backoff(1), Duration::from_millis(10));
        assert_eq!(accept_backoff(30), Duration::from_secs(1));
    }
}
