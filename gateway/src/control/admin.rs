//! The admin API, on its own port and behind a bearer token (compared in
//! constant time): read the routing table, set weights, roll back. Every
//! change goes to the source of truth first, then applies to the next
//! request, and is recorded with who, when, before and after.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use platform_runtime::exposition::Format;

mod guard;
mod releases;

pub(crate) use releases::watchdog;

use crate::boxed::{BoxBody, full};
use crate::control::probe::Prober;
use crate::control::source::RoutingSource;
use crate::proxy::listen::Handler;
use crate::proxy::state::State;
use crate::routing::ColorWeights;

use platform_routing::release::{Moved, Refusal};

/// What the admin API and the control plane's tasks work with: the data
/// plane's state, read only (settings, the published snapshot, outcome
/// counters, readiness); the routing source, the one way to change what is
/// served; and the prober of endpoint health.
#[derive(Debug)]
pub(crate) struct Admin {
    pub proxy: Arc<State>,
    pub source: RoutingSource,
    pub prober: Prober,
}

/// The admin listener's request handler.
#[derive(Debug, Clone)]
pub(crate) struct AdminApi(pub(crate) Arc<Admin>);

impl AdminApi {
    pub(crate) fn new(proxy: Arc<State>, source: RoutingSource) -> Self {
        Self(Arc::new(Admin {
            proxy,
            source,
            prober: Prober::new(),
        }))
    }
}

impl Handler for AdminApi {
    fn handle(
        self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> impl std::future::Future<Output = Response<BoxBody>> + Send + 'static {
        handle(self.0, request, peer)
    }
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response<BoxBody> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response<BoxBody> {
    json(status, &serde_json::json!({ "error": message }))
}

fn authorized(state: &Admin, request: &Request<Incoming>) -> bool {
    let given = crate::proxy::credentials::bearer(request.headers()).unwrap_or("");
    crate::proxy::credentials::same_secret(given, &state.proxy.config.admin_token)
}

async fn handle(
    state: Arc<Admin>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<BoxBody> {
    let path = request.uri().path().to_owned();
    match (request.method(), path.as_str()) {
        (&Method::GET, "/metrics") => {
            let format = Format::negotiate(
                request
                    .headers()
                    .get(http::header::ACCEPT)
                    .and_then(|v| v.to_str().ok()),
            );
            let mut response = Response::new(full(state.proxy.upstream.metrics.encode(format)));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            return response;
        }
        (&Method::GET, "/console") => return crate::control::console::page(),
        (&Method::GET, "/ready") => {
            return if state.proxy.draining() {
                error(StatusCode::SERVICE_UNAVAILABLE, "draining")
            } else if state.proxy.overloaded() {
                // Every slot is taken: new clients are better served elsewhere.
                error(StatusCode::SERVICE_UNAVAILABLE, "overloaded")
            } else {
                json(StatusCode::OK, &serde_json::json!({"status": "ready"}))
            };
        }
        _ => {}
    }
    if !path.starts_with("/admin/") {
        return error(
            StatusCode::NOT_FOUND,
            "not found: the admin API is under /admin/",
        );
    }
    if !authorized(&state, &request) {
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong admin token: send Authorization: Bearer <ADMIN_TOKEN>",
        );
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"admin\""),
        );
        return response;
    }
    let who = request
        .headers()
        .get("x-operator")
        .and_then(|v| v.to_str().ok())
        .map_or_else(
            || format!("admin@{}", peer.ip()),
            |op| format!("{op}@{}", peer.ip()),
        );
    let parts: Vec<&str> = path.trim_start_matches("/admin/").split('/').collect();
    let method = request.method().clone();
    match (method, parts.as_slice()) {
        (Method::GET, ["routes"]) => {
            let snapshot = state.proxy.upstream.routing.snapshot();
            json(
                StatusCode::OK,
                &serde_json::to_value(&snapshot.config).unwrap_or_default(),
            )
        }
        (Method::GET, ["preview"]) => {
            // How to preview a color: the header, and the credential when
            // one is needed (operators hand it to testers; it opens nothing else).
            let config = &state.proxy.config;
            let (mode, token) = match config.color_override {
                crate::config::ColorOverride::Anyone => ("anyone", None),
                crate::config::ColorOverride::PreviewToken => {
                    ("preview-token", config.preview_token.clone())
                }
                crate::config::ColorOverride::Nobody => ("nobody", None),
            };
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "mode": mode,
                    "header": config.color_header.as_str(),
                    "token_header": "x-color-token",
                    "token": token,
                }),
            )
        }
        (Method::GET, ["stats"]) => json(
            StatusCode::OK,
            &serde_json::to_value(state.proxy.upstream.stats.view()).unwrap_or_default(),
        ),
        (Method::GET, ["health"]) => json(StatusCode::OK, &releases::health(&state).await),
        (Method::GET, ["status"]) => json(
            StatusCode::OK,
            &serde_json::to_value(releases::status(&state).await).unwrap_or_default(),
        ),
        (Method::PUT, ["routes", service, "weights"]) => {
            let service = (*service).to_owned();
            let weights: ColorWeights = match body(request).await {
                Ok(w) => w,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("expected {{\"blue\": <0-100>, \"green\": <0-100>}}: {e}"),
                    );
                }
            };
            change(&state, &service, &who, |routing| {
                if routing.rollout.is_some() {
                    return Err(Refusal::Conflict(format!(
                        "a rollout of {service} is running; pause, promote or abort it first"
                    )));
                }
                weights.validate().map_err(Refusal::Invalid)?;
                let before = routing.weights;
                routing.moving_from(before);
                routing.weights = weights;
                Ok(Moved {
                    action: "set-weights",
                    before,
                    after: weights,
                    release: None,
                })
            })
            .await
        }
        (Method::POST, ["routes", service, action])
        | (Method::POST, ["routes", service, "rollout", action]) => {
            let is_rollout = parts.len() == 4 || *action == "rollout";
            releases::act(&state, service, action, is_rollout, &who, request).await
        }
        (_, ["routes"]) | (_, ["routes", _, _]) | (_, ["routes", _, "rollout", _]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET /admin/routes, PUT .../weights, or POST .../switch, .../rollback, .../rollout and .../rollout/<action>",
        ),
        (_, ["stats"]) | (_, ["health"]) | (_, ["status"]) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "use GET")
        }
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("no admin endpoint at {path}"),
        ),
    }
}

/// Reads a small JSON body; an empty body reads as `{}`.
pub(crate) async fn body<T: serde::de::DeserializeOwned>(
    request: Request<Incoming>,
) -> Result<T, String> {
    let bytes = Limited::new(request.into_body(), 16 * 1024)
        .collect()
        .await
        .map_err(|_| "the body must be at most 16384 bytes".to_owned())?
        .to_bytes();
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

/// Runs `edit` inside the source's read-change-write. A refusal of the
/// edit (unknown service, conflict, bad input) is answered as such; a
/// failure of the source itself is a 503.
pub(crate) async fn update(
    state: &Admin,
    mut edit: impl FnMut(
        &mut crate::routing::RoutingConfig,
    ) -> Result<Option<crate::routing::Change>, Refusal>,
) -> Result<
    (
        crate::routing::RoutingConfig,
        Option<crate::routing::Change>,
    ),
    Response<BoxBody>,
> {
    let mut refusal = None;
    let result = state
        .source
        .update(
            &state.proxy.upstream.routing,
            &state.proxy.upstream.metrics,
            |config| {
                edit(config).map_err(|reason| {
                    refusal = Some(reason);
                    String::new()
                })
            },
        )
        .await;
    result.map_err(|message| match refusal.take() {
        Some(reason) => refused(&reason),
        None => error(StatusCode::SERVICE_UNAVAILABLE, &message),
    })
}

/// Runs a transition of one service's routing, records it, and answers
/// with the change.
pub(crate) async fn change(
    state: &Admin,
    service: &str,
    who: &str,
    mut next: impl FnMut(&mut crate::routing::ServiceRouting) -> Result<Moved, Refusal>,
) -> Response<BoxBody> {
    let result = update(state, |config| {
        let moved = platform_routing::release::service(config, service).and_then(&mut next)?;
        Ok(Some(config.record(service, who, moved)))
    })
    .await;
    match result {
        Ok((config, Some(record))) => {
            tracing::info!(
                who = %record.who,
                service,
                action = %record.action,
                generation = config.generation,
                before_blue = record.before.blue,
                before_green = record.before.green,
                after_blue = record.after.blue,
                after_green = record.after.green,
                "routing changed"
            );
            let mut value = serde_json::to_value(&record).unwrap_or_default();
            value["rollout"] = serde_json::to_value(
                config
                    .services
                    .get(service)
                    .and_then(|s| s.rollout.as_ref()),
            )
            .unwrap_or_default();
            value["release"] = serde_json::to_value(
                config
                    .releases
                    .last()
                    .filter(|r| r.service == service && r.ended_ms >= record.at_ms - 1000),
            )
            .unwrap_or_default();
            json(StatusCode::OK, &value)
        }
        Ok((_, None)) => json(StatusCode::OK, &serde_json::json!({})),
        Err(response) => response,
    }
}

pub(crate) fn refused(reason: &Refusal) -> Response<BoxBody> {
    let status = match reason {
        Refusal::NotFound(_) => StatusCode::NOT_FOUND,
        Refusal::Conflict(_) => StatusCode::CONFLICT,
        Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
    };
    error(status, reason.message())
}
