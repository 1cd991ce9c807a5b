//! The admin API, on its own port and behind a bearer token (compared in
//! constant time): read the routing table, set weights, roll back. Every
//! change goes to the source of truth first, then applies to the next
//! request, and is recorded with who, when, before and after.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::routing::{Change, ColorWeights};
use crate::server::State;
use crate::upstream::{BoxBody, full};

fn json(status: StatusCode, value: &serde_json::Value) -> Response<BoxBody> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response<BoxBody> {
    json(status, &serde_json::json!({ "error": message }))
}

fn authorized(state: &State, request: &Request<Incoming>) -> bool {
    let given = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let given = Sha256::digest(given.as_bytes());
    let want = Sha256::digest(state.config.admin_token.as_bytes());
    bool::from(given.ct_eq(&want))
}

pub async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<BoxBody> {
    let path = request.uri().path().to_owned();
    match (request.method(), path.as_str()) {
        (&Method::GET, "/metrics") => {
            let mut response = Response::new(full(state.upstream.metrics.encode()));
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            return response;
        }
        (&Method::GET, "/ready") => {
            return if state.draining() {
                error(StatusCode::SERVICE_UNAVAILABLE, "draining")
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
    match (request.method().clone(), parts.as_slice()) {
        (Method::GET, ["routes"]) => {
            let snapshot = state.upstream.routing.snapshot();
            json(
                StatusCode::OK,
                &serde_json::to_value(&snapshot.config).unwrap_or_default(),
            )
        }
        (Method::PUT, ["routes", service, "weights"]) => {
            let service = (*service).to_owned();
            let body = match Limited::new(request.into_body(), 4096).collect().await {
                Ok(body) => body.to_bytes(),
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "the body must be at most 4096 bytes",
                    );
                }
            };
            let weights: ColorWeights = match serde_json::from_slice(&body) {
                Ok(w) => w,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("expected {{\"blue\": <0-100>, \"green\": <0-100>}}: {e}"),
                    );
                }
            };
            change(&state, &service, &who, "set-weights", move |_| Ok(weights)).await
        }
        (Method::POST, ["routes", service, "rollback"]) => {
            let service = (*service).to_owned();
            change(&state, &service, &who, "rollback", |previous| {
                previous.ok_or_else(|| {
                    (
                        StatusCode::CONFLICT,
                        "no previous weights to roll back to".to_owned(),
                    )
                })
            })
            .await
        }
        (_, ["routes"]) | (_, ["routes", _, "weights"]) | (_, ["routes", _, "rollback"]) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "use GET /admin/routes, PUT .../weights or POST .../rollback",
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            &format!("no admin endpoint at {path}"),
        ),
    }
}

async fn change(
    state: &State,
    service: &str,
    who: &str,
    action: &str,
    next: impl Fn(Option<ColorWeights>) -> Result<ColorWeights, (StatusCode, String)>,
) -> Response<BoxBody> {
    let mut refusal = None;
    let result = state
        .source
        .update(&state.upstream.routing, &state.upstream.metrics, |config| {
            let Some(routing) = config.services.get_mut(service) else {
                refusal = Some((
                    StatusCode::NOT_FOUND,
                    format!("unknown service {service:?}"),
                ));
                return Err(String::new());
            };
            let after = match next(routing.previous_weights) {
                Ok(w) => w,
                Err(reason) => {
                    refusal = Some(reason);
                    return Err(String::new());
                }
            };
            if let Err(e) = after.validate() {
                refusal = Some((StatusCode::BAD_REQUEST, e));
                return Err(String::new());
            }
            let before = routing.weights;
            routing.previous_weights = Some(before);
            routing.weights = after;
            Ok(Change {
                generation: 0,
                at_ms: platform_runtime::time::now_ms(),
                who: who.to_owned(),
                service: service.to_owned(),
                action: action.to_owned(),
                before,
                after,
            })
        })
        .await;
    match result {
        Ok((config, record)) => {
            tracing::info!(
                who = %record.who,
                service,
                action,
                generation = config.generation,
                before = ?record.before,
                after = ?record.after,
                "routing changed"
            );
            json(
                StatusCode::OK,
                &serde_json::to_value(&record).unwrap_or_default(),
            )
        }
        Err(message) => match refusal {
            Some((status, reason)) => error(status, &reason),
            None => error(StatusCode::BAD_REQUEST, &message),
        },
    }
}
