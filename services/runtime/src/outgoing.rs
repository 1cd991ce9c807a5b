//! A service's own outgoing gRPC calls (orders -> payments, notifications),
//! each one an OpenTelemetry client span: named `package.Service/Method`,
//! with the `rpc.*` attributes, the peer's `server.address` and
//! `server.port`, the integer `rpc.grpc.status_code` from the answer's head
//! or trailers, and an ERROR status for anything but OK. The span's context
//! travels in the request, so the callee's spans are its children.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::Service;
use tracing::Instrument;

use crate::observe::{Finish, SpanKind, StatusBody, code_number, record_status, split_path};

/// `inner` (a channel to `uri`), with a client span per call.
#[derive(Debug, Clone)]
pub struct Traced<S> {
    inner: S,
    host: Arc<str>,
    port: u16,
}

impl<S> Traced<S> {
    pub fn new(inner: S, uri: &http::Uri) -> Self {
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        Self {
            inner,
            host: uri.host().unwrap_or("").into(),
            port,
        }
    }
}

/// The client span, told the call's status once.
#[derive(Debug)]
pub struct Outcome {
    span: tracing::Span,
    done: bool,
}

impl Finish for Outcome {
    fn finish(&mut self, code: &[u8]) {
        if !self.done {
            self.done = true;
            record_status(&self.span, code_number(code), SpanKind::Client);
        }
    }
}

impl Drop for Outcome {
    fn drop(&mut self) {
        // Dropped before its status: the caller gave up on it.
        self.finish(b"1");
    }
}

impl<S, B, RB> Service<http::Request<B>> for Traced<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<StatusBody<RB, Outcome>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let (service, method) = split_path(request.uri().path());
        let span = tracing::info_span!(
            "rpc.client",
            otel.name = %format_args!("{service}/{method}"),
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            server.address = &*self.host,
            server.port = i64::from(self.port),
            rpc.grpc.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        crate::telemetry::inject_span_headers(&span, request.headers_mut());
        let mut outcome = Outcome {
            span: span.clone(),
            done: false,
        };
        let future = self.inner.call(request);
        Box::pin(
            async move {
                match future.await {
                    Ok(response) => {
                        if let Some(code) = response.headers().get("grpc-status") {
                            // Trailers-only: the status is in the head.
                            outcome.finish(code.as_bytes());
                        }
                        Ok(response.map(|body| StatusBody::new(body, outcome)))
                    }
                    Err(err) => {
                        outcome.finish(b"14");
                        Err(err)
                    }
                }
            }
            .instrument(span),
        )
    }
}
