//! The gateway's listeners and the one function that builds the request
//! path. Read top to bottom, it is the order a request travels:
//! request id -> span (child of the caller's trace) -> in-flight gauge ->
//! dispatch (native gRPC, the API docs, or REST) -> `access` (metrics and
//! access log, when the outcome is known).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::Instrument;

use crate::boxed::BoxBody;
use crate::conn::Listener;
use crate::errors::Failure;
use crate::grpc;
use crate::state::State;

/// The request path of the public and internal listeners.
pub async fn serve_request(
    state: Arc<State>,
    mut request: Request<Incoming>,
    listener: Listener,
    peer: SocketAddr,
) -> Response<BoxBody> {
    let started = Instant::now();
    // A client's request id is kept only when short and plain.
    let request_id = match crate::forward::request_id(request.headers().get("x-request-id")) {
        Some(id) => id,
        None => {
            let id = HeaderValue::from_str(&platform_runtime::ids::new_id("req"))
                .unwrap_or(HeaderValue::from_static("req"));
            request.headers_mut().insert("x-request-id", id.clone());
            id
        }
    };
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let version = request.version();
    let span = tracing::info_span!(
        "gateway",
        otel.name = %format_args!("{method} {path}"),
        otel.kind = "server",
        http.request.method = %method,
        url.path = %path,
        trace_id = tracing::field::Empty,
    );
    platform_runtime::telemetry::adopt_parent(&span, request.headers());
    let metrics = state.upstream.metrics.clone();
    metrics.in_flight.inc();
    let is_grpc = grpc::is_grpc(&request);
    let answer = |failure: Failure| {
        if is_grpc {
            failure.into_grpc()
        } else {
            failure.into_http()
        }
    };
    // A client address has its share of requests in progress (bodies being
    // read included), so a few clients cannot take the global limit, which
    // the handlers take once the body is in.
    let client_slot = match listener {
        Listener::Public => state
            .per_client
            .try_take(peer.ip())
            .map(Some)
            .ok_or_else(|| {
                metrics
                    .shed
                    .get_or_create(&crate::metrics::ShedLabels { reason: "client" })
                    .inc();
                crate::limits::client_over_limit(state.per_client.max())
            }),
        Listener::Internal => Ok(None),
    };
    let response = async {
        if let Err(failure) = host_check(&request) {
            answer(failure)
        } else if let Err(failure) = client_slot.as_ref() {
            answer(failure.clone())
        } else if is_grpc && crate::local::LocalGrpc::handles(&path) {
            state.local.call(request, listener).await
        } else if is_grpc || listener == Listener::Internal {
            grpc::handle(Arc::clone(&state), request, listener, peer).await
        } else if let Some(page) = crate::docs::handle(&state, &method, &path) {
            page
        } else {
            crate::rest::handle(Arc::clone(&state), request, peer).await
        }
    }
    .instrument(span.clone())
    .await;
    metrics.in_flight.dec();
    drop(client_slot);
    let mut response = response;
    response
        .headers_mut()
        .insert("x-request-id", request_id.clone());
    // No answer of the gateway is to be sniffed into another type.
    response.headers_mut().insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // While draining, HTTP/1.1 clients are asked to close after this
    // response, so none is left idle on a connection about to be closed
    // (where a request sent at the wrong moment would be lost). HTTP/2
    // clients get a GOAWAY at shutdown instead.
    if state.draining() && version == http::Version::HTTP_11 {
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    crate::access::Access {
        metrics,
        span,
        started,
        request_id,
        method,
        path,
        protocol: match (listener, is_grpc) {
            (Listener::Internal, _) => "internal",
            (_, true) => "grpc",
            _ => "rest",
        },
    }
    .answer(response)
}

/// RFC 9112: an HTTP/1.1 request carries exactly one Host header.
fn host_check<B>(request: &Request<B>) -> Result<(), Failure> {
    let hosts = request.headers().get_all(http::header::HOST).iter().count();
    if request.version() == http::Version::HTTP_11 && hosts != 1 {
        return Err(Failure::bad_request(format!(
            "an HTTP/1.1 request needs exactly one Host header, this one has {hosts}"
        )));
    }
    Ok(())
}

/// The listeners of a running gateway.
#[derive(Debug)]
pub struct RunningGateway {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub internal_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningGateway {
    /// Drains (readiness fails, requests still served for the drain delay),
    /// stops accepting, lets requests finish, and returns.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// A listener; with `reuse_port`, one that another gateway process may
/// share (the kernel spreads new connections over both).
fn bind(addr: SocketAddr, reuse_port: bool) -> std::io::Result<TcpListener> {
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

/// Binds the three listeners and serves until stopped.
pub async fn serve(state: State) -> std::io::Result<RunningGateway> {
    let reuse_port = state.config.reuse_port;
    let public = bind(state.config.listen, reuse_port)?;
    let admin = bind(state.config.admin_listen, reuse_port)?;
    let internal = bind(state.config.internal_listen, reuse_port)?;
    let (addr, admin_addr, internal_addr) = (
        public.local_addr()?,
        admin.local_addr()?,
        internal.local_addr()?,
    );
    let state = Arc::new(state);
    let (stop, stop_rx) = watch::channel(false);
    let control = crate::control::ControlPlane::start(&state);
    let task = tokio::spawn(async move {
        let (accepting_tx, accepting) = watch::channel(true);
        let (closing_tx, closing) = watch::channel(false);
        let (tickets, mut all_closed) = crate::conn::Tickets::new();
        let config = &state.config;
        let limits = || {
            crate::conn::ConnLimits::new(config.max_connections_per_client, config.max_connections)
        };
        let loops = [
            (public, Kind::Public, limits()),
            (internal, Kind::Internal, limits()),
            (admin, Kind::Admin, limits()),
        ]
        .map(|(listener, kind, limits)| {
            tokio::spawn(accept(
                Arc::clone(&state),
                listener,
                Listeners {
                    kind,
                    limits,
                    accepting: accepting.clone(),
                    closing: closing.clone(),
                    tickets: tickets.clone(),
                },
            ))
        });
        let mut stop_rx = stop_rx;
        let _ = stop_rx.wait_for(|s| *s).await;
        state.draining.store(true, Ordering::Relaxed);
        state.local.draining().await;
        tracing::info!(
            drain_delay_ms = state.config.drain_delay.as_millis() as u64,
            "draining: readiness fails"
        );
        tokio::time::sleep(state.config.drain_delay).await;
        let _ = accepting_tx.send(false);
        for l in loops {
            let _ = l.await;
        }
        control.stop();
        // Every connection is asked to close and given the shutdown timeout
        // to finish the requests it has.
        let _ = closing_tx.send(true);
        tickets.close();
        let bound = state.config.shutdown_timeout;
        if tokio::time::timeout(bound, all_closed.recv())
            .await
            .is_err()
        {
            tracing::warn!(
                shutdown_timeout_ms = bound.as_millis() as u64,
                "requests still running at the shutdown timeout; stopping anyway"
            );
        }
    });
    Ok(RunningGateway {
        addr,
        admin_addr,
        internal_addr,
        stop,
        task,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Public,
    Internal,
    Admin,
}

/// What an accept loop shares with the rest of the gateway.
struct Listeners {
    kind: Kind,
    limits: crate::conn::ConnLimits,
    /// Turns false when the gateway stops accepting.
    accepting: watch::Receiver<bool>,
    /// Turns true when connections are asked to close.
    closing: watch::Receiver<bool>,
    tickets: crate::conn::Tickets,
}

async fn accept(state: Arc<State>, listener: TcpListener, mut shared: Listeners) {
    let kind = shared.kind;
    let phases = crate::conn::Phases {
        first_request: state.config.header_read_timeout,
        idle: state.config.idle_timeout,
    };
    let mut failures = 0u32;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shared.accepting.wait_for(|a| !*a) => return,
        };
        let (stream, peer) = match accepted {
            Ok(ok) => {
                failures = 0;
                ok
            }
            Err(err) => {
                // Out of descriptors (EMFILE) or memory: wait, do not spin.
                let wait = crate::conn::accept_backoff(failures);
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
        let activity = crate::conn::Activity::new(Instant::now());
        let shared_state = Arc::clone(&state);
        let tracked = Arc::clone(&activity);
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let state = Arc::clone(&shared_state);
            let in_flight = tracked.request();
            async move {
                let response = match kind {
                    Kind::Public => serve_request(state, request, Listener::Public, peer).await,
                    Kind::Internal => serve_request(state, request, Listener::Internal, peer).await,
                    Kind::Admin => crate::admin::handle(state, request, peer).await,
                };
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| crate::conn::Tracked::new(body, in_flight)),
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
        if let (Kind::Public, Some(tls)) = (kind, &state.tls) {
            // TLS: the handshake has its own deadline, like the headers.
            let (acceptor, deadline) = (tls.acceptor(), state.config.header_read_timeout);
            tokio::spawn(async move {
                let _held = (admitted, ticket);
                let socket = crate::linger::Shared::new(stream);
                let Ok(Ok(stream)) =
                    tokio::time::timeout(deadline, acceptor.accept(socket.clone())).await
                else {
                    return;
                };
                let connection = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .into_owned();
                crate::conn::drive(Box::pin(connection), Arc::clone(&activity), phases, closing)
                    .await;
                // A connection that never sent a request has none on its way.
                if activity.started() {
                    socket.linger().await;
                }
            });
            continue;
        }
        tokio::spawn(async move {
            let _held = (admitted, ticket);
            let socket = crate::linger::Shared::new(stream);
            let connection = builder
                .serve_connection(TokioIo::new(socket.clone()), service)
                .into_owned();
            crate::conn::drive(Box::pin(connection), Arc::clone(&activity), phases, closing).await;
            if activity.started() {
                socket.linger().await;
            }
        });
    }
}

/// HTTP/2 streams one connection may have open at once.
const MAX_STREAMS_PER_CONNECTION: u32 = 100;
