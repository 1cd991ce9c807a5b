//! The outermost layer of every service: one span per call (child of the
//! caller's trace), the RPC metrics, and one JSON log line when the call
//! ends. The status code is read where gRPC puts it: in the response headers
//! of a trailers-only error, otherwise in the trailers at the end of the body,
//! so streams are measured until they end.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::{MethodLabels, RpcLabels, RpcMetrics};

#[derive(Debug, Clone)]
pub struct ObserveLayer {
    metrics: RpcMetrics,
    release: Release,
}

/// Which release serves: named on every span, so on every log line of a
/// call, and in the headers of every answer (the version label, the build,
/// the schema it knows).
#[derive(Debug, Clone)]
struct Release {
    color: &'static str,
    version: std::sync::Arc<str>,
    headers: std::sync::Arc<http::HeaderMap>,
}

impl ObserveLayer {
    pub fn new(
        metrics: RpcMetrics,
        color: crate::Color,
        version: &str,
        schema: Option<crate::storage::Schema>,
    ) -> Self {
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("x-service-version", Some(version.to_owned())),
            ("x-service-build", Some(crate::version::build().to_owned())),
            ("x-service-schema", schema.map(|s| s.release.to_string())),
        ] {
            if let Some(value) = value.and_then(|v| http::HeaderValue::from_str(&v).ok()) {
                headers.insert(name, value);
            }
        }
        Self {
            metrics,
            release: Release {
                color: color.as_str(),
                version: version.into(),
                headers: std::sync::Arc::new(headers),
            },
        }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            metrics: self.metrics.clone(),
            release: self.release.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: RpcMetrics,
    release: Release,
}

impl<S, B, RB> Service<http::Request<B>> for Observe<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<StatusBody<RB, Record>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let (service, method) = split_path(request.uri().path());
        let span = tracing::info_span!(
            "rpc",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            color = self.release.color,
            version = &*self.release.version,
        );
        let _ = span.set_parent(crate::telemetry::extract(request.headers()));
        span.record("trace_id", crate::telemetry::trace_id(&span));
        let method = MethodLabels {
            rpc_service: service.to_owned(),
            rpc_method: method.to_owned(),
        };
        self.metrics.in_flight.get_or_create(&method).inc();
        let record = Record {
            metrics: self.metrics.clone(),
            method,
            start: Instant::now(),
            span: span.clone(),
            done: false,
        };
        let future = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        // Every answer says which release served it; the gateway's health
        // probes read it for `platformctl status`.
        let identity = std::sync::Arc::clone(&self.release.headers);
        Box::pin(
            async move {
                match future.await {
                    Ok(response) => {
                        let mut record = record;
                        let (mut parts, body) = response.into_parts();
                        for (name, value) in identity.iter() {
                            parts.headers.insert(name, value.clone());
                        }
                        if let Some(code) = parts.headers.get("grpc-status") {
                            // A trailers-only response: the call is over.
                            record.finish(code.as_bytes());
                        }
                        Ok(http::Response::from_parts(
                            parts,
                            StatusBody::new(body, record),
                        ))
                    }
                    Err(err) => {
                        let mut record = record;
                        record.finish(b"2");
                        Err(err)
                    }
                }
            }
            .instrument(span),
        )
    }
}

/// `/package.Service/Method` as (`package.Service`, `Method`).
pub fn split_path(path: &str) -> (&str, &str) {
    let trimmed = path.trim_start_matches('/');
    trimmed.split_once('/').unwrap_or((trimmed, ""))
}

/// The call's outcome, recorded once when its status is known.
#[derive(Debug)]
pub struct Record {
    metrics: RpcMetrics,
    method: MethodLabels,
    start: Instant,
    span: tracing::Span,
    done: bool,
}

impl Finish for Record {
    fn finish(&mut self, code: &[u8]) {
        if self.done {
            return;
        }
        self.done = true;
        let name = code_name(code);
        let elapsed = self.start.elapsed();
        let labels = RpcLabels {
            rpc_service: self.method.rpc_service.clone(),
            rpc_method: self.method.rpc_method.clone(),
            code: name,
        };
        self.metrics.requests.get_or_create(&labels).inc();
        self.metrics
            .duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.metrics.in_flight.get_or_create(&self.method).dec();
        record_status(&self.span, code_number(code), SpanKind::Server);
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        let _entered = self.span.enter();
        if self.method.rpc_service.starts_with("grpc.") {
            tracing::debug!(code = name, duration_ms, "rpc");
        } else {
            tracing::info!(code = name, duration_ms, "rpc");
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        // The client went away before the end of the response.
        self.finish(b"1");
    }
}

/// What is told the outcome of a call once its gRPC status is known.
pub trait Finish {
    fn finish(&mut self, code: &[u8]);
}

pin_project! {
    /// A gRPC response body that tells `finish` the call's status when it
    /// arrives in the trailers (13 if the body breaks, 2 if it ends with
    /// none).
    #[derive(Debug)]
    pub struct StatusBody<B, F> {
        #[pin]
        inner: B,
        finish: F,
    }
}

impl<B, F> StatusBody<B, F> {
    pub fn new(inner: B, finish: F) -> Self {
        Self { inner, finish }
    }
}

impl<B: Body, F: Finish> Body for StatusBody<B, F> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(|t| t.get("grpc-status")) {
                    this.finish.finish(code.as_bytes());
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish.finish(b"13"),
            Poll::Ready(None) => this.finish.finish(b"2"),
            Poll::Pending => {}
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    Server,
    Client,
}

/// Whether a call that ended with `code` failed, as the OpenTelemetry RPC
/// conventions set a span's status: for a client any code but OK; for a
/// server only the codes that say the server failed (UNKNOWN,
/// DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS),
/// never the caller's mistakes.
pub fn is_error(code: i64, kind: SpanKind) -> bool {
    match kind {
        SpanKind::Client => code != 0,
        SpanKind::Server => matches!(code, 2 | 4 | 12 | 13 | 14 | 15),
    }
}

/// Records `code` on an RPC span: `rpc.grpc.status_code` as the integer
/// the conventions ask for, and an ERROR status with `error.type` (the
/// code's name) when the call failed.
pub fn record_status(span: &tracing::Span, code: i64, kind: SpanKind) {
    span.record("rpc.grpc.status_code", code);
    if is_error(code, kind) {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", code_name(code.to_string().as_bytes()));
    }
}

/// A gRPC status code as a number (2, UNKNOWN, for anything else).
pub fn code_number(code: &[u8]) -> i64 {
    std::str::from_utf8(code)
        .ok()
        .and_then(|c| c.parse().ok())
        .filter(|c| (0..=16).contains(c))
        .unwrap_or(2)
}

/// The canonical name of a gRPC status code, as used in metric labels.
pub fn code_name(code: &[u8]) -> &'static str {
    match code {
        b"0" => "OK",
        b"1" => "CANCELLED",
        b"2" => "UNKNOWN",
        b"3" => "INVALID_ARGUMENT",
        b"4" => "DEADLINE_EXCEEDED",
        b"5" => "NOT_FOUND",
        b"6" => "ALREADY_EXISTS",
        b"7" => "PERMISSION_DENIED",
        b"8" => "RESOURCE_EXHAUSTED",
        b"9" => "FAILED_PRECONDITION",
        b"10" => "ABORTED",
        b"11" => "OUT_OF_RANGE",
        b"12" => "UNIMPLEMENTED",
        b"13" => "INTERNAL",
        b"14" => "UNAVAILABLE",
        b"15" => "DATA_LOSS",
        b"16" => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn splits_grpc_paths() {
        assert_eq!(
            super::split_path("/platform.orders.v1.OrderService/CreateOrder"),
            ("platform.orders.v1.OrderService", "CreateOrder")
        );
        assert_eq!(super::code_name(b"14"), "UNAVAILABLE");
        assert_eq!(super::code_name(b"99"), "UNKNOWN");
        assert_eq!(super::code_number(b"14"), 14);
        assert_eq!(super::code_number(b"99"), 2);
        assert_eq!(super::code_number(b"x"), 2);
    }

    #[test]
    fn span_status_follows_the_rpc_conventions() {
        use super::{SpanKind, is_error};
        for (code, server, client) in [
            (0, false, false),
            (1, false, true),
            (3, false, true),
            (4, true, true),
            (5, false, true),
            (13, true, true),
            (14, true, true),
            (16, false, true),
        ] {
            assert_eq!(is_error(code, SpanKind::Server), server, "{code}");
            assert_eq!(is_error(code, SpanKind::Client), client, "{code}");
        }
    }
}
