//! The last step of the request path: each request is counted in the
//! request histogram and gets one access log line, once its outcome is
//! known. For a gRPC call whose status comes in the trailers that is when
//! the trailers pass through, not at the response head, so a call that
//! failed after a 200 head is counted and logged with its real code.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Response};
use http_body::{Body, Frame};

use crate::boxed::{BoxBody, BoxError};
use crate::metrics::{GatewayMetrics, RequestLabels};
use crate::proxy::errors::{Side, code_name};
use crate::proxy::upstream::{settled, status_code};

/// Route, service and color of a response, for metrics and the access log.
#[derive(Debug, Clone)]
pub struct RouteLabel {
    pub route: String,
    pub service: String,
    pub color: Option<&'static str>,
}

/// What is known of a request before its answer.
#[derive(Debug)]
pub(crate) struct Access {
    pub metrics: GatewayMetrics,
    pub span: tracing::Span,
    pub started: Instant,
    pub request_id: HeaderValue,
    pub method: Method,
    pub path: String,
    /// `rest`, `grpc` (north-south) or `internal` (east-west).
    pub protocol: &'static str,
}

/// What the answer adds.
#[derive(Debug)]
struct Outcome {
    status: u16,
    label: Option<RouteLabel>,
    failed_by: Option<Side>,
}

impl Access {
    /// Records the request now, or, for a gRPC answer whose status is still
    /// to come in the trailers, when they pass through.
    pub(crate) fn answer(self, response: Response<BoxBody>) -> Response<BoxBody> {
        let outcome = Outcome {
            status: response.status().as_u16(),
            label: response.extensions().get::<RouteLabel>().cloned(),
            failed_by: response.extensions().get::<Side>().copied(),
        };
        let grpc = self.protocol != "rest";
        match status_code(response.headers()) {
            None if grpc && response.status() == http::StatusCode::OK => {
                let (parts, body) = response.into_parts();
                let body = Finishing {
                    inner: body,
                    pending: Some((self, outcome)),
                };
                Response::from_parts(parts, BoxBody::new(body))
            }
            code => {
                self.record(outcome, code);
                response
            }
        }
    }

    fn record(self, outcome: Outcome, grpc_code: Option<i32>) {
        let (route, service, color) = match &outcome.label {
            Some(l) => (
                l.route.as_str(),
                l.service.as_str(),
                l.color.unwrap_or("none"),
            ),
            None => ("unmatched", "none", "none"),
        };
        self.annotate(&outcome, grpc_code);
        let grpc_code = grpc_code.map_or("", code_name);
        let elapsed = self.started.elapsed();
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                http_route: route.to_owned(),
                http_request_method: self.method.to_string(),
                http_response_status_code: outcome.status,
                grpc_code,
                service: service.to_owned(),
                color,
                protocol: self.protocol,
            })
            .observe(elapsed.as_secs_f64());
        let _entered = self.span.enter();
        tracing::info!(
            request_id = self.request_id.to_str().unwrap_or(""),
            method = %self.method,
            path = self.path,
            route,
            status = outcome.status,
            grpc_code,
            service,
            color,
            failed_by = outcome.failed_by.map_or("", Side::as_str),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "access"
        );
    }
}

impl Access {
    /// Completes the request's server span by the OpenTelemetry
    /// conventions: its name from the route, the status code (HTTP, and
    /// gRPC as an integer), and an ERROR status when the gateway's answer
    /// is a server failure (an HTTP 5xx; for gRPC the server codes).
    fn annotate(&self, outcome: &Outcome, grpc_code: Option<i32>) {
        let span = &self.span;
        let route = outcome.label.as_ref().map(|l| l.route.as_str());
        let grpc = self.protocol != "rest";
        platform_runtime::telemetry::rename(span, span_name(grpc, &self.method, &self.path, route));
        span.record("http.response.status_code", i64::from(outcome.status));
        if grpc {
            if let Some((service, method)) = known_grpc_method(&self.path, route) {
                span.record("rpc.system", "grpc");
                span.record("rpc.service", service);
                span.record("rpc.method", method);
            }
            if let Some(code) = grpc_code {
                platform_runtime::observe::record_status(
                    span,
                    i64::from(code),
                    platform_runtime::observe::SpanKind::Server,
                );
            }
        } else {
            if let Some(route) = route {
                span.record("http.route", route);
            }
            if outcome.status >= 500 {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", outcome.status.to_string());
            }
        }
    }
}

/// `package.Service` and `Method` of a gRPC path the gateway knows: a
/// routed method, or one it answers itself. Anything else is a path a
/// client made up, which must not name spans.
fn known_grpc_method<'p>(path: &'p str, route: Option<&str>) -> Option<(&'p str, &'p str)> {
    let known = route.is_some() || crate::proxy::local::LocalGrpc::METHODS.contains(&path);
    known.then(|| platform_runtime::observe::split_path(path))
}

/// A server span's name by the conventions: `{method} {route}` for HTTP,
/// `package.Service/Method` for gRPC; just the HTTP method when the route
/// is unknown, since a path can hold ids and anything a client sends.
fn span_name(grpc: bool, method: &Method, path: &str, route: Option<&str>) -> String {
    match (grpc, route) {
        (true, _) => known_grpc_method(path, route)
            .map_or_else(|| method.to_string(), |(s, m)| format!("{s}/{m}")),
        (false, Some(route)) => format!("{method} {route}"),
        (false, None) => method.to_string(),
    }
}

/// A gRPC response body passed through as it is, recording its request
/// when the status arrives: in the trailers, or as UNAVAILABLE if the body
/// breaks, or as INTERNAL if it ends with no status (or is dropped first,
/// a client that went away: CANCELLED).
struct Finishing {
    inner: BoxBody,
    pending: Option<(Access, Outcome)>,
}

impl Finishing {
    fn finish(&mut self, code: i32) {
        if let Some((access, outcome)) = self.pending.take() {
            access.record(outcome, Some(code));
        }
    }
}

impl Body for Finishing {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let code = settled(&polled);
        if let Some(code) = code {
            self.finish(code);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Finishing {
    fn drop(&mut self) {
        self.finish(crate::proxy::errors::CANCELLED);
    }
}

#[cfg(test)]
mod tests {
    use super::span_name;
    use http::Method;

    #[test]
    fn spans_are_named_by_route_never_by_path() {
        let get = Method::GET;
        let post = Method::POST;
        for (grpc, method, path, route, name) in [
            (
                false,
                &get,
                "/v1/orders/ord_1",
                Some("/v1/orders/{order_id}"),
                "GET /v1/orders/{order_id}",
            ),
            (
                false,
                &post,
                "/v1/orders",
                Some("/v1/orders"),
                "POST /v1/orders",
            ),
            (false, &get, "/nowhere/ord_1", None, "GET"),
            (
                true,
                &post,
                "/platform.orders.v1.OrderService/GetOrder",
                Some("/platform.orders.v1.OrderService/*"),
                "platform.orders.v1.OrderService/GetOrder",
            ),
            (
                true,
                &post,
                "/grpc.health.v1.Health/Check",
                None,
                "grpc.health.v1.Health/Check",
            ),
            (true, &post, "/made.up.Service/AnyThing", None, "POST"),
        ] {
            assert_eq!(span_name(grpc, method, path, route), name, "{path}");
        }
    }
}
