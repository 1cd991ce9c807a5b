//! Native gRPC through the gateway: the request is passed through untouched
//! (streams and trailers included) to the color chosen for its service. On
//! the public listener only methods with an HTTP annotation are reachable;
//! internal methods (Charge, Refund, Send, IssueServiceToken) are refused
//! there and reachable only on the internal listener.

use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::boxed::BoxBody;
use crate::contract::routes::logical_service;
use crate::proxy::access::RouteLabel;
use crate::proxy::conn::Listener;
use crate::proxy::errors::{Failure, Side};
use crate::proxy::state::State;
use crate::proxy::upstream::{Call, CallBody};

pub fn is_grpc(request: &Request<Incoming>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

pub async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
    listener: Listener,
    peer: std::net::SocketAddr,
) -> Response<BoxBody> {
    let path = request.uri().path().to_owned();
    let Some((service_name, _)) = path.trim_start_matches('/').split_once('/') else {
        return Failure::new(
            crate::proxy::errors::UNIMPLEMENTED,
            format!("no gRPC method at {path}"),
            Side::Downstream,
        )
        .into_grpc();
    };
    let Some(method) = state.table.grpc_method(&path) else {
        return Failure::new(
            crate::proxy::errors::UNIMPLEMENTED,
            format!("unknown method {path}"),
            Side::Downstream,
        )
        .into_grpc();
    };
    let public = state.table.routes().iter().any(|r| r.grpc_path == path);
    // Who the call is for, when a verified token says: its color is sticky.
    // Everyone else is drawn per request: a gRPC client keeps no cookie, and
    // on the internal listener the caller is a service, whose token is not
    // checked here and would put all of that service's calls on one color.
    let mut affinity = None;
    if listener == Listener::Public && !public {
        return Failure::new(
            crate::proxy::errors::PERMISSION_DENIED,
            format!("{path} is internal: it is not reachable through the public gateway"),
            Side::Downstream,
        )
        .into_grpc();
    }
    if listener == Listener::Public {
        // The token is checked at the edge for gRPC as for REST: a method is
        // public when a public route leads to it.
        let open = state
            .table
            .routes()
            .iter()
            .filter(|r| r.grpc_path == path)
            .any(|r| {
                state
                    .admission
                    .is_public(&r.http_method, &r.template.openapi_path())
            });
        let client = if open {
            format!("addr:{}", peer.ip())
        } else {
            match state.admission.authenticate(request.headers()).await {
                Ok(subject) => {
                    let client = format!("sub:{subject}");
                    if state.config.sticky_canary {
                        affinity = Some(crate::proxy::affinity::Affinity::User(subject));
                    }
                    client
                }
                Err(failure) => return failure.into_grpc(),
            }
        };
        if let Err(failure) = state
            .admission
            .rate
            .check(&client, std::time::Instant::now())
        {
            state.upstream.metrics.count_rate_limited();
            return failure.into_grpc();
        }
    }
    let mut passed = http::HeaderMap::new();
    if let Err(failure) = crate::proxy::forward::pass_on(request.headers(), &mut passed) {
        return failure.into_grpc();
    }
    let service = logical_service(method.parent_service().package_name());
    // The caller's deadline (grpc-timeout), within the gateway's own.
    let asked = request
        .headers()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(platform_runtime::deadline::parse_grpc_timeout);
    let caller_deadline = asked.is_some_and(|t| t < state.upstream.default_timeout());
    let timeout = asked.map_or(state.upstream.default_timeout(), |t| {
        t.min(state.upstream.default_timeout())
    });
    let forced = match state.forced_color(request.headers()) {
        Ok(color) => color,
        Err(failure) => return failure.into_grpc(),
    };
    let (parts, body) = request.into_parts();
    // A unary request is buffered (within the body limit and deadline) and
    // checked against its contract, so it can be sent again to another
    // endpoint and a client's garbage is refused here as the client's, never
    // counted against a color; a client stream is passed through once.
    let (body, keyed) = if method.is_client_streaming() {
        let stream = body
            .map_err(|e| Box::new(e) as crate::boxed::BoxError)
            .boxed_unsync();
        (CallBody::Streaming(Some(stream)), false)
    } else {
        let framed = match crate::proxy::body::read(
            body,
            state.config.max_body_bytes,
            state.config.body_read_timeout,
        )
        .await
        {
            Ok(framed) => framed,
            Err(failure) => return failure.into_grpc(),
        };
        match crate::contract::transcode::check_unary(&method.input(), &framed) {
            Ok(keyed) => (CallBody::Buffered(framed), keyed),
            Err(mismatch) => return Failure::from(mismatch).into_grpc(),
        }
    };
    // The global slot guards the work upstream, taken once the body is in.
    let _permit = match state.admit() {
        Ok(permit) => permit,
        Err(failure) => return failure.into_grpc(),
    };
    let mut call = Call::grpc(
        &parts
            .uri
            .path_and_query()
            .map_or_else(|| path.clone(), |p| p.to_string()),
        body,
        passed,
        state.idempotent(&path),
    );
    call.keyed = keyed;
    call.caller_deadline = caller_deadline;
    call.affinity = affinity;
    if let Some(color) = state.mirror_to(&service, &path, forced) {
        state.upstream.mirror(&service, &call, color, timeout);
    }
    let started = std::time::Instant::now();
    // A stream's length says nothing about the service: count it, untimed.
    let timed = !method.is_server_streaming() && !method.is_client_streaming();
    let label = |color: Option<platform_runtime::Color>| RouteLabel {
        route: format!("/{service_name}/*"),
        service: service.clone(),
        color: color.map(platform_runtime::Color::as_str),
    };
    match state.upstream.send(&service, forced, call, timeout).await {
        Ok((color, response)) => {
            let (mut parts, body) = response.into_parts();
            parts
                .headers
                .insert("x-served-by", HeaderValue::from_static(color.as_str()));
            // Which build serves is the operator's business, not the caller's.
            for internal in ["x-service-version", "x-service-build", "x-service-schema"] {
                parts.headers.remove(internal);
            }
            parts.extensions.insert(label(Some(color)));
            let span = parts
                .extensions
                .remove::<crate::proxy::upstream::ClientSpan>();
            let body = match crate::proxy::upstream::status_code(&parts.headers) {
                // Trailers-only: the call is over already.
                Some(code) => {
                    if let Some(crate::proxy::upstream::ClientSpan(span)) = &span {
                        crate::proxy::upstream::finish_span(span, code);
                    }
                    state.upstream.record(
                        &service,
                        color,
                        crate::proxy::stats::Traffic::Live,
                        crate::proxy::upstream::counted(code, caller_deadline),
                        started,
                        timed,
                    );
                    body.map_err(|e| Box::new(e) as crate::boxed::BoxError)
                        .boxed_unsync()
                }
                None => crate::proxy::upstream::Recorded::new(
                    body,
                    &state.upstream,
                    &service,
                    color,
                    started,
                    timed,
                    caller_deadline,
                )
                .traced(span)
                .map_err(|e| Box::new(e) as crate::boxed::BoxError)
                .boxed_unsync(),
            };
            Response::from_parts(parts, body)
        }
        Err((color, failure)) => {
            let mut response: Response<BoxBody> = failure.into_grpc();
            response.extensions_mut().insert(label(color));
            response
        }
    }
}
