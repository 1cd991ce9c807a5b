//! The release endpoints of the admin API: switch, rollback, rollout and its
//! actions, the health of every endpoint, and the status table that
//! `platformctl status` and the console show. The decisions live in
//! [`platform_routing::release`]; this module reads requests and checks health.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use platform_runtime::Color;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{body, change, error, json as reply, refused};
use crate::boxed::BoxBody;
use crate::control::admin::Admin;
use crate::control::probe::Probe;
use crate::proxy::stats::{SeriesView, Traffic};
use platform_routing::release::{self as rollout, Phase, Plan, Refusal};
use platform_routing::view;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchBody {
    to: Color,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(default)]
    controller: Option<String>,
    #[serde(default)]
    phase: Option<Phase>,
    #[serde(default)]
    step: Option<usize>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    failed: bool,
    #[serde(default)]
    gradual: bool,
}

/// `POST /admin/routes/{service}/{switch|rollback|rollout}` and
/// `POST /admin/routes/{service}/rollout/{action}`.
pub(crate) async fn act(
    state: &Admin,
    service: &str,
    action: &str,
    is_rollout: bool,
    who: &str,
    request: Request<Incoming>,
) -> Response<BoxBody> {
    let now = platform_runtime::time::now_ms;
    match (is_rollout, action) {
        (false, "switch") => {
            let SwitchBody { to } = match body(request).await {
                Ok(b) => b,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("expected {{\"to\": \"blue\"|\"green\"}}: {e}"),
                    );
                }
            };
            if let Err(reason) = healthy(state, service, to).await {
                return refused(&reason);
            }
            change(state, service, who, |r| {
                rollout::switch(r, service, to, who, now())
            })
            .await
        }
        (false, "rollback") => {
            change(state, service, who, |r| {
                rollout::rollback(r, service, who, now())
            })
            .await
        }
        (true, "rollout") => {
            let plan: Plan = match body(request).await {
                Ok(plan) => plan,
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("invalid rollout plan: {e}"),
                    );
                }
            };
            if let Err(reason) = healthy(state, service, plan.to).await {
                return refused(&reason);
            }
            change(state, service, who, |r| {
                rollout::start(r, service, &plan, who, now())
            })
            .await
        }
        (true, action) => {
            let b: ActionBody = match body(request).await {
                Ok(b) => b,
                Err(e) => return error(StatusCode::BAD_REQUEST, &format!("invalid body: {e}")),
            };
            let controller = b.controller.clone().unwrap_or_default();
            match action {
                "advance" => {
                    let (Some(phase), Some(step)) = (b.phase, b.step) else {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "advance needs controller, phase and step",
                        );
                    };
                    change(state, service, who, |r| {
                        rollout::advance(r, service, &controller, phase, step, now())
                    })
                    .await
                }
                "pause" => {
                    change(state, service, who, |r| {
                        rollout::set_paused(r, service, true, None, now())
                    })
                    .await
                }
                "resume" => {
                    change(state, service, who, |r| {
                        rollout::set_paused(r, service, false, b.controller.as_deref(), now())
                    })
                    .await
                }
                "promote" => {
                    change(state, service, who, |r| rollout::promote(r, service, now())).await
                }
                "abort" => {
                    let reason = b
                        .reason
                        .clone()
                        .unwrap_or_else(|| format!("aborted by {who}"));
                    if b.gradual && controller.is_empty() {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "a gradual abort needs the controller that walks it back",
                        );
                    }
                    let gradual = b.gradual.then_some(controller.as_str());
                    change(state, service, who, |r| {
                        rollout::abort(r, service, &reason, b.failed, gradual, now())
                    })
                    .await
                }
                "heartbeat" => heartbeat(state, service, &controller).await,
                other => error(
                    StatusCode::NOT_FOUND,
                    &format!(
                        "no rollout action {other:?}; use advance, pause, resume, promote, abort or heartbeat"
                    ),
                ),
            }
        }
        (false, other) => error(
            StatusCode::NOT_FOUND,
            &format!("no action {other:?}; use switch, rollback or rollout"),
        ),
    }
}

/// A heartbeat changes no weights and bumps no generation.
async fn heartbeat(state: &Admin, service: &str, controller: &str) -> Response<BoxBody> {
    let now = platform_runtime::time::now_ms();
    let result = super::update(state, |config| {
        rollout::service(config, service)
            .and_then(|r| rollout::heartbeat(r, service, controller, now))?;
        Ok(None)
    })
    .await;
    match result {
        Ok(_) => reply(StatusCode::OK, &json!({ "heartbeat_ms": now })),
        Err(response) => response,
    }
}

/// Refuses a color that has no endpoint, or any endpoint not SERVING.
async fn healthy(state: &Admin, service: &str, color: Color) -> Result<(), Refusal> {
    let snapshot = state.proxy.upstream.routing.snapshot();
    if !snapshot.config.services.contains_key(service) {
        return Err(rollout::unknown(&snapshot.config, service));
    }
    let probes = probe_all(state, &snapshot.endpoints(service, color)).await;
    if probes.is_empty() {
        return Err(Refusal::Conflict(format!(
            "{color} of {service} has no endpoints"
        )));
    }
    let sick: Vec<String> = probes
        .iter()
        .filter(|p| !p.serving)
        .map(|p| {
            format!(
                "{}: {}",
                p.endpoint,
                p.error.as_deref().unwrap_or("not serving")
            )
        })
        .collect();
    if sick.is_empty() {
        Ok(())
    } else {
        Err(Refusal::Conflict(format!(
            "{color} of {service} is not healthy: {}",
            sick.join("; ")
        )))
    }
}

async fn probe_all(state: &Admin, endpoints: &[String]) -> Vec<Probe> {
    futures_util::future::join_all(endpoints.iter().map(|e| state.prober.probe(e))).await
}

/// Every endpoint of every service and color, probed at once.
async fn probe_everything(
    state: &Admin,
    snapshot: &crate::routing::Snapshot,
) -> std::collections::BTreeMap<(String, Color), Vec<Probe>> {
    let pools = snapshot
        .config
        .services
        .keys()
        .flat_map(|name| Color::ALL.map(|color| (name.clone(), color)));
    futures_util::future::join_all(pools.map(|(name, color)| async move {
        let probes = probe_all(state, &snapshot.endpoints(&name, color)).await;
        ((name, color), probes)
    }))
    .await
    .into_iter()
    .collect()
}

/// `GET /admin/health`: every endpoint of every color, probed now.
pub(crate) async fn health(state: &Admin) -> Value {
    let snapshot = state.proxy.upstream.routing.snapshot();
    let mut services = serde_json::Map::new();
    for ((name, color), probes) in probe_everything(state, &snapshot).await {
        let colors = services.entry(name).or_insert_with(|| json!({}));
        colors[color.as_str()] = json!(probes);
    }
    json!({ "services": services })
}

fn summary(series: &SeriesView) -> view::Summary {
    let minute = &series.last_minute;
    view::Summary {
        rate_per_second: series.rate_per_second(),
        requests: minute.requests,
        server_errors: minute.server_errors,
        error_ratio: minute.error_ratio(),
        p99_ms: minute.quantile_ms(0.99),
    }
}

/// `GET /admin/status`: per service and color, the weight, the rollout,
/// endpoint health and versions, and the last minute's rate, server-error
/// ratio and p99.
pub(crate) async fn status(state: &Admin) -> view::Status {
    let snapshot = state.proxy.upstream.routing.snapshot();
    let stats = state.proxy.upstream.stats.view();
    let mut probed = probe_everything(state, &snapshot).await;
    let mut color_status = |name: &str, weight: u32, color: Color| {
        let probes = probed.remove(&(name.to_owned(), color)).unwrap_or_default();
        let mut versions: Vec<String> = probes.iter().filter_map(|p| p.version.clone()).collect();
        versions.sort();
        versions.dedup();
        let mut schemas: Vec<i64> = probes.iter().filter_map(|p| p.schema).collect();
        schemas.sort_unstable();
        schemas.dedup();
        view::ColorStatus {
            weight,
            healthy: probes.iter().filter(|p| p.serving).count(),
            versions,
            schemas,
            endpoints: probes,
            live: summary(&stats.series(name, color, Traffic::Live)),
            mirror: summary(&stats.series(name, color, Traffic::Mirror)),
        }
    };
    let services = snapshot
        .config
        .services
        .iter()
        .map(|(name, routing)| {
            let colors = view::ColorStatuses {
                blue: color_status(name, routing.weights.blue, Color::Blue),
                green: color_status(name, routing.weights.green, Color::Green),
            };
            let service = view::ServiceStatus {
                weights: routing.weights,
                previous_weights: routing.previous_weights,
                rollout: routing.rollout.clone(),
                mirror: routing.mirror,
                colors,
            };
            (name.clone(), service)
        })
        .collect();
    view::Status {
        at_ms: stats.at_ms,
        generation: snapshot.config.generation,
        services,
        sticky: state.proxy.config.sticky_canary,
    }
}

/// Aborts rollouts whose controller went quiet past their timeout, so none
/// is ever left half way, and rolls back a canary step the gateway's own
/// test fails (`guard.rs`). Every replica checks; the source's
/// read-change-write makes only one of them act.
pub(crate) async fn watchdog(state: Arc<Admin>) {
    let mut guard = super::guard::Guard::default();
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let now = platform_runtime::time::now_ms();
        let snapshot = state.proxy.upstream.routing.snapshot();
        let services = &snapshot.config.services;
        let expired: Vec<String> = services
            .iter()
            .filter(|(_, s)| s.rollout.as_ref().is_some_and(|r| r.is_unattended(now)))
            .map(|(name, _)| name.clone())
            .collect();
        for service in expired {
            end(&state, &service, "gateway-watchdog", |r, now| {
                rollout::expire(r, &service, now)
            })
            .await;
        }
        let rollouts = services.iter().filter_map(|(name, s)| {
            s.rollout
                .as_ref()
                .map(|r| (name.as_str(), r, s.weights.of(r.target)))
        });
        let failed = guard.look(
            rollouts,
            &state.proxy.upstream.stats.view(),
            state.proxy.config.sticky_canary,
        );
        for (service, reason) in failed {
            end(&state, &service, "gateway-judge", |r, now| {
                rollout::abort(r, &service, &reason, true, None, now).ok()
            })
            .await;
        }
    }
}

/// Ends `service`'s rollout as the gateway (`who`), by `transition`.
async fn end(
    state: &Admin,
    service: &str,
    who: &str,
    transition: impl Fn(&mut platform_routing::ServiceRouting, i64) -> Option<rollout::Moved>,
) {
    let result = state
        .source
        .update(
            &state.proxy.upstream.routing,
            &state.proxy.upstream.metrics,
            |config| {
                let now = platform_runtime::time::now_ms();
                let moved = config
                    .services
                    .get_mut(service)
                    .and_then(|r| transition(r, now));
                Ok(moved.map(|m| config.record(service, who, m)))
            },
        )
        .await;
    match result {
        Ok((_, Some(record))) => tracing::warn!(
            service,
            who,
            after_blue = record.after.blue,
            after_green = record.after.green,
            action = record.action,
            "rollout ended by the gateway"
        ),
        Ok((_, None)) => {}
        Err(error) => tracing::error!(service, %error, "cannot end the rollout"),
    }
}
