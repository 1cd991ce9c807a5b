//! Listening: bind, accept within the connection limits (per client and in
//! total), give each connection its phase deadlines (TLS handshake, first
//! request, idle) and hyper's header and stream limits, and hand each
//! request to the listener's [`Handler`]. Draining and shutdown reach the
//! loops through the `accepting` and `closing` signals.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::boxed::BoxBody;
use crate::proxy::conn::Listener;
use crate::proxy::state::State;

/// What a listener does with each request.
pub(crate) trait Handler: Clone + Send + Sync + 'static {
    fn handle(
        self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<BoxBody>> + Send + 'static;
}

/// The request path of the public or the internal listener.
#[derive(Clone)]
pub(crate) struct Edge {
    pub state: Arc<State>,
    pub listener: Listener,
}

impl Handler for Edge {
    fn handle(
        self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl Future<Output = Response<BoxBody>> + Send + 'static {
        crate::proxy::request::serve_request(self.state, request, self.listener, peer)
    }
}

/// A listener; with `reuse_port`, one that another gateway process may
/// share (the kernel spreads new connections over both).
pub(crate) fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// What an accept loop shares with the rest of the gateway.
pub(crate) struct Listeners {
    /// Serve TLS on this listener when the gateway has a certificate.
    pub tls: bool,
    pub limits: crate::proxy::conn::ConnLimits,
    /// Turns false when the gateway stops accepting.
    pub accepting: watch::Receiver<bool>,
    /// Turns true when connections are asked to close.
    pub closing: watch::Receiver<bool>,
    pub tickets: crate::proxy::conn::Tickets,
}

pub(crate) async fn accept<H: Handler>(
    state: Arc<State>,
    listener: TcpListener,
    handler: H,
    mut shared: Listeners,
) {
    let phases = crate::proxy::conn::Phases {
        first_request: state.config.header_read_timeout,
        idle: state.config.idle_timeout,
    };
    let mut failures = 0u32;
    let mut stopped = false;
    loop {
        let accepted = if stopped {
            // Connections the kernel completed before accepting stopped are
            // taken and served, not reset with the listener.
            match futures_util::FutureExt::now_or_never(listener.accept()) {
                Some(accepted) => accepted,
                None => return,
            }
        } else {
            tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shared.accepting.wait_for(|a| !*a) => {
                    stopped = true;
                    continue;
                }
            }
        };
        let (stream, peer) = match accepted {
            Ok(ok) => {
                failures = 0;
                ok
            }
            Err(_) if stopped => return,
            Err(err) => {
                // Out of descriptors (EMFILE) or memory: wait, do not spin.
                let wait = crate::proxy::conn::accept_backoff(failures);
                failures = failures.saturating_add(1);
                tracing::warn!(error = %err, backoff_ms = wait.as_millis() as u64, "accept failed");
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let Some(admitted) = shared.limits.admit(peer.ip()) else {
            state
                .upstream
                .metrics
                .shed
                .get_or_create(&crate::metrics::ShedLabels {
                    reason: "connections",
                })
                .inc();
            continue;
        };
        let Some(ticket) = shared.tickets.issue() else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let activity = crate::proxy::conn::Activity::new(Instant::now());
        let tracked = Arc::clone(&activity);
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let in_flight = tracked.request();
            let answer = handler.clone().handle(request, peer);
            async move {
                let response = answer.await;
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| crate::proxy::conn::Tracked::new(body, in_flight)),
                )
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // Slow or oversized clients cost little: headers must arrive in time
        // and fit the limits (431 otherwise), and HTTP/2 streams are capped,
        // rapid resets included.
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(state.config.header_read_timeout)
            .max_headers(state.config.max_headers)
            .max_buf_size(state.config.max_header_bytes);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
            .max_pending_accept_reset_streams(Some(50))
            .max_header_list_size(u32::try_from(state.config.max_header_bytes).unwrap_or(u32::MAX))
            .keep_alive_interval(Some(Duration::from_secs(20)))
            .keep_alive_timeout(Duration::from_secs(20));
        let closing = shared.closing.clone();
        if let (true, Some(tls)) = (shared.tls, &state.tls) {
            // TLS: the handshake has its own deadline, like the headers.
            let (acceptor, deadline) = (tls.acceptor(), state.config.header_read_timeout);
            tokio::spawn(async move {
                let _held = (admitted, ticket);
                let socket = crate::proxy::linger::Shared::new(stream);
                let Ok(Ok(stream)) =
                    tokio::time::timeout(deadline, acceptor.accept(socket.clone())).await
                else {
                    return;
                };
                let connection = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                let shutdown = closing.clone();
                crate::proxy::conn::drive(
                    Box::pin(connection),
                    Arc::clone(&activity),
                    phases,
                    closing,
                )
                .await;
                if lingers(&activity, &shutdown) {
                    socket.linger().await;
                }
            });
            continue;
        }
        tokio::spawn(async move {
            let _held = (admitted, ticket);
            let socket = crate::proxy::linger::Shared::new(stream);
            let connection = builder
                .serve_connection(TokioIo::new(socket.clone()), service)
                .into_owned();
            let shutdown = closing.clone();
            crate::proxy::conn::drive(Box::pin(connection), Arc::clone(&activity), phases, closing)
                .await;
            if lingers(&activity, &shutdown) {
                socket.linger().await;
            }
        });
    }
}

/// Whether a connection the gateway closes reads what its client still
/// sends for a moment (see `linger.rs`): one that has served a request may
/// have the next on its way, and at shutdown so may a new one whose first
/// request is being written. One that never became a client before its
/// deadline is dropped, its slot freed at once.
fn lingers(activity: &crate::proxy::conn::Activity, shutdown: &watch::Receiver<bool>) -> bool {
    activity.started() || *shutdown.borrow()
}

/// HTTP/2 streams one connection may have open at once.
const MAX_STREAMS_PER_CONNECTION: u32 = 100;
