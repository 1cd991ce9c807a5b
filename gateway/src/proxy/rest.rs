//! REST calls: route, authenticate, transcode, call the chosen color, and
//! answer JSON (or a stream of JSON for server-streaming RPCs).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use platform_runtime::Color;

use crate::boxed::{BoxBody, full};
use crate::contract::routes::{Found, Route};
use crate::contract::transcode;
use crate::proxy::access::RouteLabel;
use crate::proxy::affinity::Affinity;
use crate::proxy::errors::Failure;
use crate::proxy::state::State;
use crate::proxy::upstream::{Call, CallBody, failure_from, status_code};

fn served_by(response: &mut Response<BoxBody>, color: Option<Color>) {
    if let Some(color) = color {
        response
            .headers_mut()
            .insert("x-served-by", HeaderValue::from_static(color.as_str()));
    }
}

fn labelled(
    mut response: Response<BoxBody>,
    route: &Route,
    color: Option<Color>,
) -> Response<BoxBody> {
    served_by(&mut response, color);
    response.extensions_mut().insert(RouteLabel {
        route: route.template.to_string(),
        service: route.service.clone(),
        color: color.map(Color::as_str),
    });
    response
}

pub async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
    peer: std::net::SocketAddr,
) -> Response<BoxBody> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(str::to_owned);
    let (route, vars) = match state.table.find(&method, &path) {
        Found::Route(route, vars) => (route, vars),
        Found::MethodNotAllowed(allowed) => {
            return Failure::method_not_allowed(&allowed).into_http();
        }
        Found::NotFound => return Failure::not_found(&path).into_http(),
    };
    let fail = |failure: Failure| labelled(failure.into_http(), route, None);
    let mut passed = http::HeaderMap::new();
    if let Err(failure) = crate::proxy::forward::pass_on(request.headers(), &mut passed) {
        return fail(failure);
    }
    // Rate limits are per caller: the token's subject, else the address.
    let subject = if state.admission.is_public(&method, &path) {
        None
    } else {
        match state.admission.authenticate(request.headers()).await {
            Ok(subject) => Some(subject),
            Err(failure) => return fail(failure),
        }
    };
    let client = match &subject {
        Some(subject) => format!("sub:{subject}"),
        None => format!("addr:{}", peer.ip()),
    };
    if let Err(failure) = state
        .admission
        .rate
        .check(&client, std::time::Instant::now())
    {
        state.upstream.metrics.count_rate_limited();
        return fail(failure);
    }
    let forced = match state.forced_color(request.headers()) {
        Ok(color) => color,
        Err(failure) => return fail(failure),
    };
    // Sticky canary: the same caller keeps its color; a caller with neither
    // token nor cookie gets a cookie on whatever the answer is from here on.
    let (affinity, set_cookie) = if state.config.sticky_canary {
        let secure = state.tls.is_some();
        match crate::proxy::affinity::of_rest(subject.as_deref(), request.headers(), secure) {
            Ok((affinity, set_cookie)) => (Some(affinity), set_cookie),
            Err(failure) => return fail(failure),
        }
    } else {
        (None, None)
    };
    let admitted = Admitted {
        route,
        vars,
        query,
        forced,
        passed,
        affinity,
    };
    let mut response = call(&state, admitted, request).await;
    if let Some(cookie) = set_cookie {
        response
            .headers_mut()
            .append(http::header::SET_COOKIE, cookie);
    }
    response
}

/// A REST request past admission: where it goes and what goes with it.
struct Admitted<'a> {
    route: &'a Route,
    vars: Vec<(Vec<String>, String)>,
    query: Option<String>,
    /// The color the caller forced (a preview), if any.
    forced: Option<Color>,
    /// The caller's headers a service may see.
    passed: http::HeaderMap,
    /// Who the caller is, for a sticky color.
    affinity: Option<Affinity>,
}

/// The call upstream of an admitted REST request: its body, the global
/// slot, the transcoded message, the chosen color's answer as JSON.
async fn call(
    state: &State,
    admitted: Admitted<'_>,
    request: Request<Incoming>,
) -> Response<BoxBody> {
    let Admitted {
        route,
        vars,
        query,
        forced,
        passed,
        affinity,
    } = admitted;
    let fail = |failure: Failure| labelled(failure.into_http(), route, None);
    let (parts, body) = request.into_parts();
    let body = match crate::proxy::body::read(
        body,
        state.body_limit(route),
        state.config.body_read_timeout,
    )
    .await
    {
        Ok(body) => body,
        Err(failure) => return fail(failure),
    };
    // The global slot guards the work upstream, taken once the body is in:
    // a client sending its body slowly holds only its own share.
    let _permit = match state.admit() {
        Ok(permit) => permit,
        Err(failure) => return fail(failure),
    };
    let framed = match transcode::request(route, &vars, query.as_deref(), &body) {
        Ok(framed) => framed,
        Err(mismatch) => return fail(mismatch.into()),
    };
    let keyed = !route.server_streaming()
        && transcode::carries_idempotency_key(&route.method.input(), &framed);
    let mut call = Call::grpc(
        &route.grpc_path,
        CallBody::Buffered(framed),
        passed,
        state.idempotent(&route.grpc_path),
    );
    call.keyed = keyed;
    call.affinity = affinity;
    if route.server_streaming() {
        let sse = parts
            .headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/event-stream"));
        return stream(state, route, forced, call, sse).await;
    }
    if let Some(color) = state.mirror_to(&route.service, &route.grpc_path, forced) {
        state
            .upstream
            .mirror(&route.service, &call, color, state.route_timeout(route));
    }
    match state
        .upstream
        .unary(&route.service, forced, call, state.route_timeout(route))
        .await
    {
        Ok(answer) => match transcode::response(route, &answer.message) {
            Ok(json) => {
                let mut response = Response::new(full(json.to_string()));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                labelled(response, route, Some(answer.color))
            }
            Err(mismatch) => labelled(
                Failure::from(mismatch).into_http(),
                route,
                Some(answer.color),
            ),
        },
        Err((color, failure)) => labelled(failure.into_http(), route, color),
    }
}

/// How long a server stream may last.
const STREAM_DEADLINE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// One line (NDJSON) or event (SSE) of a stream.
fn encode(sse: bool, kind: &str, json: &serde_json::Value) -> Bytes {
    if sse {
        Bytes::from(format!("event: {kind}\ndata: {json}\n\n"))
    } else {
        Bytes::from(format!("{}\n", serde_json::json!({ kind: json })))
    }
}

fn status_value(failure: Option<&Failure>) -> serde_json::Value {
    match failure {
        None => serde_json::json!({"code": 0, "message": "OK", "details": []}),
        Some(f) => serde_json::json!({"code": f.code, "message": f.message, "details": []}),
    }
}

/// Turns the gRPC frames of a server stream into lines (or events).
struct Feed {
    body: Incoming,
    buffer: BytesMut,
    done: bool,
    route: Route,
    sse: bool,
}

impl Feed {
    /// Writes the final status line and ends the stream.
    fn end(&mut self, out: &mut BytesMut, failure: Option<&Failure>) {
        out.extend_from_slice(&encode(self.sse, "status", &status_value(failure)));
        self.done = true;
    }

    /// The next piece of the HTTP body: every whole message that arrived.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut out = BytesMut::new();
        while out.is_empty() && !self.done {
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        let code = status_code(trailers).unwrap_or(crate::proxy::errors::INTERNAL);
                        let failure = (code != 0).then(|| failure_from(code, trailers));
                        self.end(&mut out, failure.as_ref());
                        break;
                    }
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                    loop {
                        let json = transcode::next_frame(&mut self.buffer).and_then(|m| {
                            m.map(|m| transcode::response(&self.route, &m)).transpose()
                        });
                        match json {
                            Ok(Some(json)) => {
                                out.extend_from_slice(&encode(self.sse, "result", &json))
                            }
                            Ok(None) => break,
                            Err(mismatch) => {
                                self.end(&mut out, Some(&mismatch.into()));
                                break;
                            }
                        }
                    }
                }
                Some(Err(_)) | None => {
                    let failure = Failure::unavailable("the service ended the stream abruptly");
                    self.end(&mut out, Some(&failure));
                }
            }
        }
        Some(out.freeze())
    }
}

/// A server stream as newline-delimited JSON (`{"result": ...}` per message)
/// or Server-Sent Events (`event: result`). The last line or event is always
/// `status`: code 0 for a clean end, the error otherwise, so a client can
/// tell the end of the stream from a cut connection.
async fn stream(
    state: &State,
    route: &Route,
    forced: Option<Color>,
    call: Call,
    sse: bool,
) -> Response<BoxBody> {
    let (color, response) = match state
        .upstream
        .send(&route.service, forced, call, STREAM_DEADLINE)
        .await
    {
        Ok(ok) => ok,
        Err((color, failure)) => return labelled(failure.into_http(), route, color),
    };
    let (parts, body) = response.into_parts();
    if let Some(code) = status_code(&parts.headers).filter(|c| *c != 0) {
        return labelled(
            failure_from(code, &parts.headers).into_http(),
            route,
            Some(color),
        );
    }
    let feed = Feed {
        body,
        buffer: BytesMut::new(),
        done: false,
        route: route.clone(),
        sse,
    };
    let frames = futures_util::stream::unfold(feed, |mut feed| async move {
        let chunk = feed.next_chunk().await?;
        Some((Ok::<_, crate::boxed::BoxError>(Frame::data(chunk)), feed))
    });
    let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
    let content_type = if sse {
        "text/event-stream"
    } else {
        "application/x-ndjson"
    };
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    labelled(response, route, Some(color))
}
