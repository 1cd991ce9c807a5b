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

/// Which release serves: named on every span, so on every log line of a call.
#[derive(Debug, Clone)]
struct Release {
    color: &'static str,
    version: std::sync::Arc<str>,
}

impl ObserveLayer {
    pub fn new(metrics: RpcMetrics, color: crate::Color, version: &str) -> Self {
        Self {
            metrics,
            release: Release {
                color: color.as_str(),
                version: version.into(),
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
    type Response = http::Response<ObservedBody<RB>>;
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
            trace_id = tracing::field::Empty,
            color = self.release.color,
            version = &*self.release.version,
        );
        let _ = span.set_parent(crate::telemetry::extract(request.headers()));
        span.record("trace_id", crate::telemetry::trace_id(&span));
        let method = MethodLabels {
            rpc_service: service,
            rpc_method: method,
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
        let version = http::HeaderValue::from_str(&self.release.version).ok();
        Box::pin(
            async move {
                match future.await {
                    Ok(response) => {
                        let mut record = record;
                        let (mut parts, body) = response.into_parts();
                        if let Some(version) = version {
                            parts.headers.insert("x-service-version", version);
                        }
                        if let Some(code) = parts.headers.get("grpc-status") {
                            // A trailers-only response: the call is over.
                            record.finish(code.as_bytes());
                        }
                        Ok(http::Response::from_parts(
                            parts,
                            ObservedBody {
                                inner: body,
                                record,
                            },
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

fn split_path(path: &str) -> (String, String) {
    let trimmed = path.trim_start_matches('/');
    match trimmed.split_once('/') {
        Some((service, method)) => (service.to_owned(), method.to_owned()),
        None => (trimmed.to_owned(), String::new()),
    }
}

struct Record {
    metrics: RpcMetrics,
    method: MethodLabels,
    start: Instant,
    span: tracing::Span,
    done: bool,
}

impl Record {
    fn finish(&mut self, code: &[u8]) {
        if self.done {
            return;
        }
        self.done = true;
        let code = code_name(code);
        let elapsed = self.start.elapsed();
        let labels = RpcLabels {
            rpc_service: self.method.rpc_service.clone(),
            rpc_method: self.method.rpc_method.clone(),
            code,
        };
        self.metrics.requests.get_or_create(&labels).inc();
        self.metrics
            .duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.metrics.in_flight.get_or_create(&self.method).dec();
        self.span.record("rpc.grpc.status_code", code);
        let duration_ms = elapsed.as_secs_f64() * 1000.0;
        let _entered = self.span.enter();
        if self.method.rpc_service.starts_with("grpc.") {
            tracing::debug!(code, duration_ms, "rpc");
        } else {
            tracing::info!(code, duration_ms, "rpc");
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        // The client went away before the end of the response.
        self.finish(b"1");
    }
}

pin_project! {
    /// A response body that records the call when its status arrives.
    pub struct ObservedBody<B> {
        #[pin]
        inner: B,
        record: Record,
    }
}

impl<B: Body> Body for ObservedBody<B> {
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
                    this.record.finish(code.as_bytes());
                }
            }
            Poll::Ready(Some(Err(_))) => this.record.finish(b"13"),
            Poll::Ready(None) => this.record.finish(b"2"),
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
            (
                "platform.orders.v1.OrderService".into(),
                "CreateOrder".into()
            )
        );
        assert_eq!(super::code_name(b"14"), "UNAVAILABLE");
        assert_eq!(super::code_name(b"99"), "UNKNOWN");
    }
}
