//! One request on the public or internal listener, top to bottom in the
//! order it travels: request id -> span (child of the caller's trace) ->
//! in-flight gauge -> admit (this client's share) -> dispatch (the gateway's
//! own gRPC services, native gRPC, the API docs, or REST) -> `access`
//! (metrics and access log, when the outcome is known).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::boxed::BoxBody;
use crate::proxy::conn::Listener;
use crate::proxy::errors::Failure;
use crate::proxy::grpc;
use crate::proxy::state::State;

/// The request path of the public and internal listeners.
pub(crate) async fn serve_request(
    state: Arc<State>,
    mut request: Request<Incoming>,
    listener: Listener,
    peer: SocketAddr,
) -> Response<BoxBody> {
    let started = Instant::now();
    // A client's request id is kept only when short and plain.
    let request_id = match crate::proxy::forward::request_id(request.headers().get("x-request-id"))
    {
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
    // A server span by the OpenTelemetry HTTP conventions (and the RPC ones
    // for gRPC); its name and outcome are filled in by `access`, once the
    // route is known, since a path holds ids.
    let scheme = if state.tls.is_some() && listener == Listener::Public {
        "https"
    } else {
        "http"
    };
    let (server_address, server_port) = authority(&request, scheme);
    let span = tracing::info_span!(
        "gateway",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        http.request.method = %method,
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        url.path = %path,
        url.scheme = scheme,
        server.address = server_address,
        server.port = server_port,
        network.protocol.version = protocol_version(version),
        client.address = %peer.ip(),
        rpc.system = tracing::field::Empty,
        rpc.service = tracing::field::Empty,
        rpc.method = tracing::field::Empty,
        rpc.grpc.status_code = tracing::field::Empty,
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
            .admission
            .per_client
            .try_take(peer.ip())
            .map(Some)
            .ok_or_else(|| {
                metrics
                    .shed
                    .get_or_create(&crate::metrics::ShedLabels { reason: "client" })
                    .inc();
                crate::proxy::limits::client_over_limit(state.admission.per_client.max())
            }),
        Listener::Internal => Ok(None),
    };
    let response = async {
        if let Err(failure) = host_check(&request) {
            answer(failure)
        } else if let Err(failure) = client_slot.as_ref() {
            answer(failure.clone())
        } else if is_grpc && crate::proxy::local::LocalGrpc::handles(&path) {
            state.local.call(request, listener).await
        } else if is_grpc || listener == Listener::Internal {
            grpc::handle(Arc::clone(&state), request, listener, peer).await
        } else if let Some(page) = crate::proxy::docs::handle(&state, &method, &path) {
            page
        } else {
            crate::proxy::rest::handle(Arc::clone(&state), request, peer).await
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
    crate::proxy::access::Access {
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

/// The host and port the client addressed (`:authority` or `Host`), the
/// port defaulting to the scheme's.
fn authority<B>(request: &Request<B>, scheme: &str) -> (String, Option<i64>) {
    let authority = request.uri().authority().cloned().or_else(|| {
        request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.parse::<http::uri::Authority>().ok())
    });
    let default_port = if scheme == "https" { 443 } else { 80 };
    match authority {
        Some(a) => (
            a.host().to_owned(),
            Some(i64::from(a.port_u16().unwrap_or(default_port))),
        ),
        None => (String::new(), None),
    }
}

fn protocol_version(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => "1.1",
    }
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
