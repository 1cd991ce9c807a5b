//! Calls from the gateway to the services: one HTTP/2 client whose
//! connections to each endpoint are reused by every request, the color and
//! endpoint chosen per request from the routing snapshot, and the outcome
//! recorded per service, color and gRPC code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use platform_runtime::Color;
use tracing::Instrument;

use crate::boxed::{BoxBody, full};
use crate::metrics::{GatewayMetrics, RetryLabels, UpstreamLabels, WeightLabels};
use crate::proxy::affinity::Affinity;
use crate::proxy::errors::{Failure, Side};
use crate::proxy::outliers::{Attempt, Outliers, RetryBudget};
use crate::proxy::stats::{Stats, Traffic};
use crate::routing::{Choice, Routing};

#[derive(Debug, Clone)]
pub struct Upstream {
    client: Client<HttpConnector, BoxBody>,
    pub routing: Routing,
    pub metrics: GatewayMetrics,
    /// Outcomes per color for release analysis.
    pub stats: Arc<Stats>,
    timeout: Duration,
    outliers: Arc<Outliers>,
    budget: Arc<RetryBudget>,
    failover: bool,
}

/// How the gateway treats failing endpoints.
#[derive(Debug, Clone, Copy)]
pub struct Resilience {
    pub consecutive_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
    pub retry_ratio: f64,
    pub retries_per_second: f64,
    /// Serve from the other color when every endpoint of the chosen one fails.
    pub failover: bool,
}

/// A unary call's answer: the message, or the service's error.
#[derive(Debug)]
pub struct Answer {
    pub color: Color,
    pub message: Bytes,
}

/// The `grpc-timeout` an attempt carries: what is left of the call's
/// deadline, less the gateway's own margin (a tenth, at most 5 ms), so the
/// service's DEADLINE_EXCEEDED arrives before the gateway's timer fires and
/// the caller learns where the time went.
fn grpc_timeout(remaining: Duration) -> HeaderValue {
    let margin = (remaining / 10).min(Duration::from_millis(5));
    let value = platform_runtime::deadline::grpc_timeout_value(remaining.saturating_sub(margin));
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("30S"))
}

/// The client span of the attempt that answered, carried in the
/// response's extensions to whoever reads the call's status.
#[derive(Debug, Clone)]
pub struct ClientSpan(pub tracing::Span);

/// A client span by the OpenTelemetry RPC conventions for one attempt at
/// `endpoint` (`host:port`): named `package.Service/Method`, with the peer's
/// address and port apart, and the color the gateway chose.
fn client_span(path: &str, endpoint: &str, color: Color) -> tracing::Span {
    let (rpc_service, rpc_method) = platform_runtime::observe::split_path(path);
    let (host, port) = match endpoint.rsplit_once(':') {
        Some((host, port)) => (host, port.parse::<i64>().ok()),
        None => (endpoint, None),
    };
    tracing::info_span!(
        "upstream",
        otel.name = %format_args!("{rpc_service}/{rpc_method}"),
        otel.kind = "client",
        rpc.system = "grpc",
        rpc.service = rpc_service,
        rpc.method = rpc_method,
        server.address = host.trim_start_matches('[').trim_end_matches(']'),
        server.port = port,
        platform.color = color.as_str(),
        rpc.grpc.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
    )
}

/// Records how an attempt ended on its client span.
pub fn finish_span(span: &tracing::Span, code: i32) {
    platform_runtime::observe::record_status(
        span,
        i64::from(code),
        platform_runtime::observe::SpanKind::Client,
    );
}

/// The code a call's outcome is counted under for its color: running out
/// of a deadline the caller set shorter than the gateway's is the caller's
/// doing, not the service's fault, so it counts as CANCELLED, whichever
/// timer (the service's or the gateway's) fired first.
pub fn counted(code: i32, caller_deadline: bool) -> i32 {
    if caller_deadline && code == crate::proxy::errors::DEADLINE_EXCEEDED {
        crate::proxy::errors::CANCELLED
    } else {
        code
    }
}

impl Upstream {
    /// The deadline of a call whose route sets none.
    pub fn default_timeout(&self) -> Duration {
        self.timeout
    }

    pub fn new(
        routing: Routing,
        metrics: GatewayMetrics,
        timeout: Duration,
        resilience: Resilience,
    ) -> Self {
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
            stats: Arc::new(Stats::default()),
            timeout,
            outliers: Arc::new(Outliers::new(
                resilience.consecutive_failures,
                resilience.base_ejection,
                resilience.max_ejection,
            )),
            budget: Arc::new(RetryBudget::new(
                resilience.retry_ratio,
                resilience.retries_per_second,
                100.0 + resilience.retries_per_second,
            )),
            failover: resilience.failover,
        }
    }

    /// Records the outcome of a call to a color: its gRPC code and, when
    /// `timed`, how long it took (a stream's length says nothing about the
    /// service, so streams are counted but not timed).
    pub fn record(
        &self,
        service: &str,
        color: Color,
        traffic: Traffic,
        code: i32,
        started: Instant,
        timed: bool,
    ) {
        let elapsed = started.elapsed();
        let counter = self.metrics.upstream.get_or_create(&UpstreamLabels {
            service: service.to_owned(),
            color: color.as_str(),
            grpc_code: crate::proxy::errors::code_name(code),
            traffic: traffic.as_str(),
        });
        if timed {
            counter.observe(elapsed.as_secs_f64());
        }
        self.stats
            .record(service, color, traffic, code, timed.then_some(elapsed));
    }

    /// Sends `call` to a color of `service`, chosen once (`forced`, else by
    /// the call's affinity, else drawn by weight); returns the color
    /// and the response head and body, or a failure to reach it. A call that
    /// never reached a service (connection refused) is retried on another
    /// endpoint of the same color; an idempotent one also when the service
    /// answered UNAVAILABLE or the connection broke; both within the budget.
    pub async fn send(
        &self,
        service: &str,
        forced: Option<Color>,
        mut call: Call,
        timeout: Duration,
    ) -> Result<(Color, Response<Incoming>), (Option<Color>, Failure)> {
        let snapshot = self.routing.snapshot();
        self.budget.deposit(Instant::now());
        // One deadline for the call, however many attempts it takes.
        let deadline = Instant::now() + timeout;
        let mut tried: Vec<String> = Vec::new();
        let mut chosen = forced;
        loop {
            let now = Instant::now();
            let choice = match (chosen, &call.affinity) {
                (Some(color), _) => Choice::Forced(color),
                (None, Some(who)) => Choice::Sticky(who.point(service)),
                (None, None) => Choice::Random,
            };
            let picked = snapshot.pick_where(
                service,
                choice,
                &tried,
                |endpoint| self.outliers.is_ejected(endpoint, now),
                self.failover,
            );
            let (color, endpoint, all_ejected) = match picked {
                Ok(picked) => picked,
                Err(reason) => return Err((chosen, Failure::unavailable(reason))),
            };
            self.metrics
                .color_down
                .get_or_create(&WeightLabels {
                    service: service.to_owned(),
                    color: color.as_str(),
                })
                .set(i64::from(all_ejected));
            if all_ejected {
                tracing::error!(service, %color, "every endpoint of this color is failing while it has weight");
            }
            chosen = Some(color);
            let replayable = matches!(call.body, CallBody::Buffered(_));
            let Some(request) = call.request(&endpoint) else {
                return Err((
                    chosen,
                    Failure::unavailable(format!("{service} ({color}) is unavailable")),
                ));
            };
            let mut request = request;
            let remaining = deadline.saturating_duration_since(Instant::now());
            request
                .headers_mut()
                .insert("grpc-timeout", grpc_timeout(remaining));
            // The upstream call is a child span of the request's span; the
            // service's span becomes its child through the injected context.
            let span = client_span(&call.path, &endpoint, color);
            platform_runtime::telemetry::inject_span_headers(&span, request.headers_mut());
            let started = Instant::now();
            let response = tokio::time::timeout(remaining, self.client.request(request))
                .instrument(span.clone())
                .await;
            let retry_reason = match response {
                Ok(Ok(response))
                    if response.status() != http::StatusCode::OK
                        && status_code(response.headers()).is_none() =>
                {
                    // Not a gRPC answer (a proxy's or the HTTP layer's refusal):
                    // mapped as the gRPC spec maps HTTP statuses, a 4xx kept.
                    let failure = failure_from_http(response.status());
                    finish_span(&span, failure.code);
                    self.outliers.success(&endpoint);
                    self.record(service, color, call.traffic, failure.code, started, true);
                    return Err((chosen, failure));
                }
                Ok(Ok(mut response)) => {
                    let unavailable =
                        status_code(response.headers()) == Some(crate::proxy::errors::UNAVAILABLE);
                    // Whoever reads the call's status closes its span.
                    response.extensions_mut().insert(ClientSpan(span.clone()));
                    if !unavailable {
                        self.outliers.success(&endpoint);
                        return Ok((color, response));
                    }
                    self.fail(service, color, &endpoint);
                    let Some(reason) = retry_reason(Attempt::Unavailable, &call, replayable) else {
                        return Ok((color, response));
                    };
                    finish_span(&span, crate::proxy::errors::UNAVAILABLE);
                    // This attempt's answer is dropped for a retry: count
                    // it here, or analysis would miss the color's failures.
                    self.record(
                        service,
                        color,
                        call.traffic,
                        crate::proxy::errors::UNAVAILABLE,
                        started,
                        true,
                    );
                    reason
                }
                Ok(Err(err)) => {
                    finish_span(&span, crate::proxy::errors::UNAVAILABLE);
                    self.record(
                        service,
                        color,
                        call.traffic,
                        crate::proxy::errors::UNAVAILABLE,
                        started,
                        true,
                    );
                    self.fail(service, color, &endpoint);
                    tracing::warn!(service, %color, endpoint, error = %err, "upstream call failed");
                    let attempt = if err.is_connect() {
                        Attempt::NotConnected
                    } else {
                        Attempt::Broken
                    };
                    let Some(reason) = retry_reason(attempt, &call, replayable) else {
                        return Err((
                            chosen,
                            Failure::unavailable(format!("{service} ({color}) is unavailable")),
                        ));
                    };
                    reason
                }
                Err(_) => {
                    finish_span(&span, crate::proxy::errors::DEADLINE_EXCEEDED);
                    let code = if call.caller_deadline {
                        crate::proxy::errors::CANCELLED
                    } else {
                        crate::proxy::errors::DEADLINE_EXCEEDED
                    };
                    self.record(service, color, call.traffic, code, started, true);
                    return Err((
                        chosen,
                        Failure::new(
                            crate::proxy::errors::DEADLINE_EXCEEDED,
                            format!("{service} ({color}) did not answer in time"),
                            Side::Upstream,
                        ),
                    ));
                }
            };
            tried.push(endpoint);
            if tried.len() > MAX_RETRIES || !self.budget.withdraw(Instant::now()) {
                return Err((
                    chosen,
                    Failure::unavailable(format!("{service} ({color}) is unavailable")),
                ));
            }
            self.metrics
                .retries
                .get_or_create(&RetryLabels {
                    service: service.to_owned(),
                    color: color.as_str(),
                    reason: retry_reason,
                })
                .inc();
        }
    }

    /// Records a failure of `endpoint`, ejecting it after too many.
    fn fail(&self, service: &str, color: Color, endpoint: &str) {
        if let Some(time) = self.outliers.failure(endpoint, Instant::now()) {
            tracing::warn!(service, %color, endpoint, ejected_ms = time.as_millis() as u64, "endpoint ejected");
            self.metrics
                .ejections
                .get_or_create(&WeightLabels {
                    service: service.to_owned(),
                    color: color.as_str(),
                })
                .inc();
        }
    }

    /// A unary call: the one message of the answer, or the failure.
    pub async fn unary(
        &self,
        service: &str,
        forced: Option<Color>,
        call: Call,
        timeout: Duration,
    ) -> Result<Answer, (Option<Color>, Failure)> {
        let started = Instant::now();
        // The deadline covers the whole answer: the head (in `send`) and
        // the body after it, not each of them in turn.
        let deadline = started + timeout;
        let traffic = call.traffic;
        let (color, response) = self.send(service, forced, call, timeout).await?;
        let (mut parts, body) = response.into_parts();
        let span = parts.extensions.remove::<ClientSpan>();
        let record = |code: i32| {
            if let Some(ClientSpan(span)) = &span {
                finish_span(span, code);
            }
            self.record(service, color, traffic, code, started, true);
        };
        let fail = |f: Failure| (Some(color), f);
        if let Some(code) = status_code(&parts.headers) {
            record(code);
            return Err(fail(failure_from(code, &parts.headers)));
        }
        let collected = match tokio::time::timeout_at(deadline.into(), body.collect()).await {
            Ok(Ok(collected)) => collected,
            Ok(Err(e)) => {
                let failure =
                    Failure::unavailable(format!("{service} ({color}) broke the response: {e}"));
                record(failure.code);
                return Err(fail(failure));
            }
            Err(_) => {
                let failure = Failure::new(
                    crate::proxy::errors::DEADLINE_EXCEEDED,
                    format!("{service} ({color}) did not answer in time"),
                    Side::Upstream,
                );
                record(failure.code);
                return Err(fail(failure));
            }
        };
        let trailers = collected.trailers().cloned().unwrap_or_default();
        let code = status_code(&trailers).unwrap_or(crate::proxy::errors::INTERNAL);
        record(code);
        if code != 0 {
            return Err(fail(failure_from(code, &trailers)));
        }
        let mut buffer = BytesMut::from(collected.to_bytes().as_ref());
        let message = crate::contract::transcode::next_frame(&mut buffer)
            .map_err(|mismatch| fail(mismatch.into()))?
            .ok_or_else(|| {
                fail(Failure::new(
                    crate::proxy::errors::INTERNAL,
                    "the service sent no message",
                    Side::Upstream,
                ))
            })?;
        Ok(Answer { color, message })
    }
}

/// Retries after the first attempt, at most.
const MAX_RETRIES: usize = 2;

/// A request that can be sent again when its body is buffered.
pub struct Call {
    pub path: String,
    pub headers: HeaderMap,
    pub body: CallBody,
    /// Safe to send twice (a read, or a method marked idempotent): retried
    /// on an UNAVAILABLE answer and on a broken connection.
    pub idempotent: bool,
    /// Carries an idempotency key the service deduplicates by: retried when
    /// the connection broke with it in flight (the service may be gone),
    /// not on an UNAVAILABLE answer (a live service said no; for a shared
    /// dependency another replica would only say it later).
    pub keyed: bool,
    /// The deadline is the caller's own (a `grpc-timeout` shorter than the
    /// gateway's): running out of it is the caller's doing, not a fault of
    /// the service, and is counted as CANCELLED.
    pub caller_deadline: bool,
    /// Live, or a copy whose answer nobody waits for.
    pub traffic: Traffic,
    /// Who the call is for, when the gateway can tell: the same caller gets
    /// the same color while the weights stay. None: drawn by weight.
    pub affinity: Option<Affinity>,
}

pub enum CallBody {
    Buffered(Bytes),
    /// A streamed body can be sent once.
    Streaming(Option<BoxBody>),
}

impl Call {
    /// A gRPC call to `path` carrying `body`, with the caller's headers that
    /// belong to the call (`passed`, from `forward::pass_on`); each attempt
    /// carries what is left of the deadline given to `send`.
    pub fn grpc(path: &str, body: CallBody, passed: HeaderMap, idempotent: bool) -> Self {
        let mut headers = passed;
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
        Self {
            path: path.to_owned(),
            headers,
            body,
            idempotent,
            keyed: false,
            caller_deadline: false,
            traffic: Traffic::Live,
            affinity: None,
        }
    }

    /// A copy of a buffered call for mirroring; None for a streamed body.
    pub fn mirrored(&self) -> Option<Call> {
        let CallBody::Buffered(body) = &self.body else {
            return None;
        };
        Some(Call {
            path: self.path.clone(),
            headers: self.headers.clone(),
            body: CallBody::Buffered(body.clone()),
            idempotent: self.idempotent,
            keyed: self.keyed,
            caller_deadline: self.caller_deadline,
            traffic: Traffic::Mirror,
            affinity: self.affinity.clone(),
        })
    }

    /// The HTTP/2 request for one attempt at `endpoint`; None once a
    /// streamed body was sent.
    fn request(&mut self, endpoint: &str) -> Option<Request<BoxBody>> {
        let body = match &mut self.body {
            CallBody::Buffered(bytes) => full(bytes.clone()),
            CallBody::Streaming(body) => body.take()?,
        };
        let mut request = Request::new(body);
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = format!("http://{endpoint}{}", self.path).parse().ok()?;
        *request.version_mut() = http::Version::HTTP_2;
        *request.headers_mut() = self.headers.clone();
        Some(request)
    }
}

pub fn status_code(headers: &HeaderMap) -> Option<i32> {
    headers.get("grpc-status")?.to_str().ok()?.parse().ok()
}

/// A service's answer that is not gRPC, by its HTTP status: the gRPC
/// spec's mapping, except that a request the service found too large stays
/// the client's (RESOURCE_EXHAUSTED, with the same 4xx).
pub fn failure_from_http(status: http::StatusCode) -> Failure {
    use crate::proxy::errors as e;
    let (code, side) = match status.as_u16() {
        413 | 431 => (e::RESOURCE_EXHAUSTED, Side::Downstream),
        400 => (e::INTERNAL, Side::Upstream),
        401 => (e::UNAUTHENTICATED, Side::Upstream),
        403 => (e::PERMISSION_DENIED, Side::Upstream),
        404 => (e::UNIMPLEMENTED, Side::Upstream),
        429 | 502 | 503 | 504 => (e::UNAVAILABLE, Side::Upstream),
        _ => (e::UNKNOWN, Side::Upstream),
    };
    let mut failure = Failure::new(
        code,
        format!("the service answered HTTP {status} without a gRPC status"),
        side,
    );
    if side == Side::Downstream {
        failure.http_override = Some(status);
    }
    failure
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

impl Upstream {
    /// Copies a safe call to `color` and throws the answer away; only its
    /// outcome is recorded, as mirror traffic.
    pub fn mirror(&self, service: &str, call: &Call, color: Color, timeout: Duration) {
        let Some(copy) = call.mirrored() else {
            return;
        };
        let upstream = self.clone();
        let service = service.to_owned();
        tokio::spawn(async move {
            let _ = upstream.unary(&service, Some(color), copy, timeout).await;
        });
    }
}

/// The retry decision for `call`'s failed attempt (see
/// [`crate::proxy::outliers::retry`]).
fn retry_reason(attempt: Attempt, call: &Call, replayable: bool) -> Option<&'static str> {
    crate::proxy::outliers::retry(attempt, replayable, call.idempotent, call.keyed)
}

/// The gRPC status that a poll of a passed-through response body settles,
/// if it does: the one in its trailers (INTERNAL when they carry none),
/// UNAVAILABLE for a broken body, INTERNAL for one that ended without
/// trailers.
pub fn settled<E>(
    polled: &std::task::Poll<Option<Result<http_body::Frame<Bytes>, E>>>,
) -> Option<i32> {
    use std::task::Poll;
    match polled {
        Poll::Ready(Some(Ok(frame))) => frame
            .trailers_ref()
            .map(|t| status_code(t).unwrap_or(crate::proxy::errors::INTERNAL)),
        Poll::Ready(Some(Err(_))) => Some(crate::proxy::errors::UNAVAILABLE),
        Poll::Ready(None) => Some(crate::proxy::errors::INTERNAL),
        Poll::Pending => None,
    }
}

pin_project_lite::pin_project! {
    /// A passed-through response body that records the call's outcome when
    /// its status arrives in the trailers (or when the body breaks).
    pub struct Recorded<B> {
        #[pin]
        inner: B,
        upstream: Upstream,
        service: String,
        color: Color,
        traffic: Traffic,
        started: Instant,
        timed: bool,
        caller_deadline: bool,
        span: Option<ClientSpan>,
        done: bool,
    }
}

impl<B> Recorded<B> {
    pub fn new(
        inner: B,
        upstream: &Upstream,
        service: &str,
        color: Color,
        started: Instant,
        timed: bool,
        caller_deadline: bool,
    ) -> Self {
        Self {
            inner,
            upstream: upstream.clone(),
            service: service.to_owned(),
            color,
            traffic: Traffic::Live,
            started,
            timed,
            caller_deadline,
            span: None,
            done: false,
        }
    }

    /// Closes `span` (the attempt's client span) with the call's status.
    pub fn traced(mut self, span: Option<ClientSpan>) -> Self {
        self.span = span;
        self
    }
}

impl<B> http_body::Body for Recorded<B>
where
    B: http_body::Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        let code = settled(&polled);
        if let Some(code) = code
            && !*this.done
        {
            *this.done = true;
            if let Some(ClientSpan(span)) = this.span.take() {
                finish_span(&span, code);
            }
            this.upstream.record(
                this.service,
                *this.color,
                *this.traffic,
                counted(code, *this.caller_deadline),
                *this.started,
                *this.timed,
            );
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

#[cfg(test)]
mod tests {
    use super::failure_from_http;
    use std::time::Duration;

    #[test]
    fn an_attempt_carries_what_is_left_of_the_deadline_less_a_margin() {
        for (remaining, sent) in [
            (Duration::from_secs(30), "29995000u"),
            (Duration::from_millis(100), "95000u"),
            (Duration::from_millis(20), "18000u"),
            (Duration::from_micros(500), "450u"),
            (Duration::ZERO, "0u"),
            (Duration::from_secs(24 * 3600), "86399995m"),
            (Duration::from_secs(400 * 24 * 3600), "34559999S"),
        ] {
            assert_eq!(super::grpc_timeout(remaining), sent, "{remaining:?}");
        }
    }

    #[test]
    fn a_deadline_the_caller_set_is_not_the_services_fault() {
        use crate::proxy::errors::{CANCELLED, DEADLINE_EXCEEDED, INTERNAL};
        for (code, caller_deadline, counted) in [
            (DEADLINE_EXCEEDED, true, CANCELLED),
            (DEADLINE_EXCEEDED, false, DEADLINE_EXCEEDED),
            (INTERNAL, true, INTERNAL),
            (0, true, 0),
        ] {
            assert_eq!(super::counted(code, caller_deadline), counted);
        }
    }

    #[test]
    fn answers_that_are_not_grpc_keep_their_side() {
        for (status, code, http) in [
            (431, crate::proxy::errors::RESOURCE_EXHAUSTED, 431),
            (413, crate::proxy::errors::RESOURCE_EXHAUSTED, 413),
            (400, crate::proxy::errors::INTERNAL, 500),
            (401, crate::proxy::errors::UNAUTHENTICATED, 401),
            (404, crate::proxy::errors::UNIMPLEMENTED, 501),
            (503, crate::proxy::errors::UNAVAILABLE, 503),
            (502, crate::proxy::errors::UNAVAILABLE, 503),
            (418, crate::proxy::errors::UNKNOWN, 500),
        ] {
            let failure = failure_from_http(http::StatusCode::from_u16(status).expect("status"));
            assert_eq!(
                (failure.code, failure.http_status().as_u16()),
                (code, http),
                "{status}"
            );
        }
    }
}
