//! Calls from the gateway to the services: one HTTP/2 client whose
//! connections to each endpoint are reused by every request, the color and
//! endpoint chosen per request from the routing snapshot, and the outcome
//! recorded per service, color and gRPC code.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use platform_runtime::Color;
use tracing::Instrument;

use crate::errors::{Failure, Side};
use crate::metrics::{GatewayMetrics, UpstreamLabels};
use crate::routing::Routing;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type BoxBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> BoxBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Headers a REST request passes on to the service.
const PASSED_ON: [&str; 4] = ["authorization", "x-request-id", "traceparent", "tracestate"];

#[derive(Debug, Clone)]
pub struct Upstream {
    client: Client<HttpConnector, BoxBody>,
    pub routing: Routing,
    pub metrics: GatewayMetrics,
    timeout: Duration,
}

/// A unary call's answer: the message, or the service's error.
#[derive(Debug)]
pub struct Answer {
    pub color: Color,
    pub message: Bytes,
}

fn grpc_timeout(timeout: Duration) -> HeaderValue {
    HeaderValue::from_str(&format!("{}m", timeout.as_millis().min(99_999_999)))
        .unwrap_or(HeaderValue::from_static("30S"))
}

impl Upstream {
    /// The deadline of a call whose route sets none.
    pub fn default_timeout(&self) -> Duration {
        self.timeout
    }

    pub fn new(routing: Routing, metrics: GatewayMetrics, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .http2_only(true)
            .http2_keep_alive_interval(Some(Duration::from_secs(20)))
            .build(connector);
        Self {
            client,
            routing,
            metrics,
            timeout,
        }
    }

    fn record(&self, service: &str, color: Color, code: i32, started: Instant) {
        self.metrics
            .upstream
            .get_or_create(&UpstreamLabels {
                service: service.to_owned(),
                color: color.as_str(),
                grpc_code: crate::errors::code_name(code),
            })
            .observe(started.elapsed().as_secs_f64());
    }

    /// Sends a gRPC request to a color of `service`; returns the color and the
    /// response head and body, or a failure to reach it.
    pub async fn send(
        &self,
        service: &str,
        forced: Option<Color>,
        mut request: Request<BoxBody>,
        timeout: Duration,
    ) -> Result<(Color, Response<Incoming>), (Option<Color>, Failure)> {
        let (color, endpoint) = self
            .routing
            .snapshot()
            .pick(service, forced)
            .map_err(|e| (None, Failure::unavailable(e)))?;
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        *request.uri_mut() = format!("http://{endpoint}{path}").parse().map_err(|_| {
            (
                Some(color),
                Failure::new(
                    crate::errors::INTERNAL,
                    "invalid upstream address",
                    Side::Gateway,
                ),
            )
        })?;
        // The upstream call is a child span of the request's span; the
        // service's span becomes its child through the injected context.
        let span = tracing::info_span!(
            "upstream",
            otel.name = %format_args!("{service} {path}"),
            otel.kind = "client",
            rpc.system = "grpc",
            service,
            color = color.as_str(),
            server.address = %endpoint,
        );
        platform_runtime::telemetry::inject_span_headers(&span, request.headers_mut());
        let started = Instant::now();
        let response = tokio::time::timeout(timeout, self.client.request(request))
            .instrument(span)
            .await;
        match response {
            Ok(Ok(response)) => Ok((color, response)),
            Ok(Err(err)) => {
                self.record(service, color, crate::errors::UNAVAILABLE, started);
                tracing::warn!(service, %color, endpoint, error = %err, "upstream unreachable");
                Err((
                    Some(color),
                    Failure::unavailable(format!("{service} ({color}) is unavailable")),
                ))
            }
            Err(_) => {
                self.record(service, color, crate::errors::DEADLINE_EXCEEDED, started);
                Err((
                    Some(color),
                    Failure::new(
                        crate::errors::DEADLINE_EXCEEDED,
                        format!("{service} ({color}) did not answer in time"),
                        Side::Upstream,
                    ),
                ))
            }
        }
    }

    /// A unary call with an already framed message.
    pub async fn unary(
        &self,
        service: &str,
        forced: Option<Color>,
        grpc_path: &str,
        framed: Bytes,
        incoming: &HeaderMap,
        timeout: Duration,
    ) -> Result<Answer, (Option<Color>, Failure)> {
        let request = grpc_request(grpc_path, framed, incoming, timeout);
        let started = Instant::now();
        let (color, response) = self.send(service, forced, request, timeout).await?;
        let (parts, body) = response.into_parts();
        let fail = |f: Failure| (Some(color), f);
        if let Some(code) = status_code(&parts.headers) {
            self.record(service, color, code, started);
            return Err(fail(failure_from(code, &parts.headers)));
        }
        let collected = tokio::time::timeout(timeout, body.collect())
            .await
            .map_err(|_| {
                fail(Failure::new(
                    crate::errors::DEADLINE_EXCEEDED,
                    format!("{service} ({color}) did not answer in time"),
                    Side::Upstream,
                ))
            })?
            .map_err(|e| {
                fail(Failure::unavailable(format!(
                    "{service} ({color}) broke the response: {e}"
                )))
            })?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let code = status_code(&trailers).unwrap_or(crate::errors::INTERNAL);
        self.record(service, color, code, started);
        if code != 0 {
            return Err(fail(failure_from(code, &trailers)));
        }
        let mut buffer = BytesMut::from(collected.to_bytes().as_ref());
        let message = crate::transcode::next_frame(&mut buffer)
            .map_err(fail)?
            .ok_or_else(|| {
                fail(Failure::new(
                    crate::errors::INTERNAL,
                    "the service sent no message",
                    Side::Upstream,
                ))
            })?;
        Ok(Answer { color, message })
    }
}

/// A gRPC request to `path` carrying `body`, with the caller's headers that
/// belong to the call and the current trace context.
pub fn grpc_request(
    path: &str,
    body: Bytes,
    incoming: &HeaderMap,
    timeout: Duration,
) -> Request<BoxBody> {
    let mut request = Request::new(full(body));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = path.parse().unwrap_or_default();
    *request.version_mut() = http::Version::HTTP_2;
    let headers = request.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    headers.insert("grpc-timeout", grpc_timeout(timeout));
    for name in PASSED_ON {
        if let Some(value) = incoming.get(name) {
            headers.insert(name, value.clone());
        }
    }
    platform_runtime::telemetry::inject_headers(headers);
    request
}

pub fn status_code(headers: &HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

pub fn failure_from(code: i32, headers: &HeaderMap) -> Failure {
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(|m| {
            percent_encoding::percent_decode_str(m)
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    Failure::new(code, message, Side::Upstream)
}
