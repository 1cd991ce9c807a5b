//! Native gRPC through the gateway: the request is passed through untouched
//! (streams and trailers included) to the color chosen for its service. On
//! the public listener only methods with an HTTP annotation are reachable;
//! internal methods (Charge, Refund, Send, IssueServiceToken) are refused
//! there and reachable only on the internal listener.

use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::errors::{Failure, Side};
use crate::routes::logical_service;
use crate::server::{RouteLabel, State};
use crate::upstream::BoxBody;

/// Which listener a call came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Public,
    Internal,
}

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
) -> Response<BoxBody> {
    let path = request.uri().path().to_owned();
    let Some((service_name, _)) = path.trim_start_matches('/').split_once('/') else {
        return Failure::new(
            crate::errors::UNIMPLEMENTED,
            format!("no gRPC method at {path}"),
            Side::Downstream,
        )
        .into_grpc();
    };
    let Some(method) = state.table.grpc_method(&path) else {
        return Failure::new(
            crate::errors::UNIMPLEMENTED,
            format!("unknown method {path}"),
            Side::Downstream,
        )
        .into_grpc();
    };
    let public = state.table.routes().iter().any(|r| r.grpc_path == path);
    if listener == Listener::Public && !public {
        return Failure::new(
            crate::errors::PERMISSION_DENIED,
            format!("{path} is internal: it is not reachable through the public gateway"),
            Side::Downstream,
        )
        .into_grpc();
    }
    let service = logical_service(method.parent_service().package_name());
    let forced = match state.forced_color(request.headers()) {
        Ok(color) => color,
        Err(failure) => return failure.into_grpc(),
    };
    let (mut parts, body) = request.into_parts();
    parts.version = http::Version::HTTP_2;
    parts.headers.remove(http::header::HOST);
    platform_runtime::telemetry::inject_headers(&mut parts.headers);
    let request = Request::from_parts(
        parts,
        body.map_err(|e| Box::new(e) as crate::upstream::BoxError)
            .boxed_unsync(),
    );
    let label = |color: Option<platform_runtime::Color>| RouteLabel {
        route: format!("/{service_name}/*"),
        service: service.clone(),
        color: color.map(platform_runtime::Color::as_str),
    };
    match state.upstream.send(&service, forced, request).await {
        Ok((color, response)) => {
            let (mut parts, body) = response.into_parts();
            parts
                .headers
                .insert("x-served-by", HeaderValue::from_static(color.as_str()));
            parts.extensions.insert(label(Some(color)));
            Response::from_parts(
                parts,
                body.map_err(|e| Box::new(e) as crate::upstream::BoxError)
                    .boxed_unsync(),
            )
        }
        Err((color, failure)) => {
            let mut response: Response<BoxBody> = failure.into_grpc();
            response.extensions_mut().insert(label(color));
            response
        }
    }
}
