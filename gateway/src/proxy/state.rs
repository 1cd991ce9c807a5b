//! What every request on the data plane may consult, built once at start:
//! the route table, the upstream client (with the routing snapshot it picks
//! from), token verification, limits and the per-route settings. Handlers
//! read it; only the control plane changes what it points at, by publishing
//! a new routing snapshot.

use std::sync::atomic::{AtomicBool, Ordering};

use http::HeaderMap;
use platform_runtime::Color;
use platform_runtime::tokens::Verifier;

use crate::config::{ColorOverride, GatewayConfig};
use crate::contract::routes::RouteTable;
use crate::proxy::admit::Admission;
use crate::proxy::errors::Failure;
use crate::proxy::upstream::Upstream;

/// Everything a request needs, shared by all listeners.
#[derive(Debug)]
pub struct State {
    pub config: GatewayConfig,
    /// What the protos say: routes, and which methods are reads or idempotent.
    pub table: RouteTable,
    /// The upstream client, with the routing snapshot it picks from.
    pub upstream: Upstream,
    pub admission: Admission,
    /// The gateway's own gRPC services (health, reflection).
    pub(crate) local: crate::proxy::local::LocalGrpc,
    pub(crate) tls: Option<crate::proxy::tls::Tls>,
    pub(crate) draining: AtomicBool,
}

impl State {
    pub fn new(
        config: GatewayConfig,
        table: RouteTable,
        upstream: Upstream,
        verifier: Verifier,
        local: crate::proxy::local::LocalGrpc,
    ) -> Result<Self, String> {
        let tls = config
            .tls
            .clone()
            .map(crate::proxy::tls::Tls::new)
            .transpose()?;
        let admission = Admission::new(&config, verifier)?;
        Ok(Self {
            config,
            table,
            upstream,
            admission,
            local,
            tls,
            draining: AtomicBool::new(false),
        })
    }

    /// The color the caller asked for with the color header, if allowed.
    pub fn forced_color(&self, headers: &HeaderMap) -> Result<Option<Color>, Failure> {
        let Some(value) = headers.get(&self.config.color_header) else {
            return Ok(None);
        };
        let color = value
            .to_str()
            .ok()
            .and_then(|v| v.parse::<Color>().ok())
            .ok_or_else(|| {
                Failure::bad_request(format!(
                    "{} must be blue or green",
                    self.config.color_header
                ))
            })?;
        match self.config.color_override {
            ColorOverride::Anyone => Ok(Some(color)),
            ColorOverride::Nobody => Ok(None),
            ColorOverride::PreviewToken => {
                let token = headers
                    .get("x-color-token")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let expected = self.config.preview_token.as_deref().unwrap_or_default();
                if crate::proxy::credentials::same_secret(token, expected) {
                    Ok(Some(color))
                } else {
                    Err(Failure::new(
                        crate::proxy::errors::PERMISSION_DENIED,
                        format!(
                            "forcing a color with {} needs the preview token in x-color-token",
                            self.config.color_header
                        ),
                        crate::proxy::errors::Side::Downstream,
                    ))
                }
            }
        }
    }

    /// The deadline of an upstream call on `route`.
    pub fn route_timeout(&self, route: &crate::contract::routes::Route) -> std::time::Duration {
        let template = route.template.to_string();
        self.config
            .route_timeouts
            .iter()
            .find(|((m, t), _)| *m == route.http_method && *t == template)
            .map_or_else(|| self.upstream.default_timeout(), |(_, d)| *d)
    }

    /// The largest body `route` accepts.
    pub fn body_limit(&self, route: &crate::contract::routes::Route) -> usize {
        let template = route.template.to_string();
        self.config
            .route_body_limits
            .iter()
            .find(|((m, t), _)| *m == route.http_method && *t == template)
            .map_or(self.config.max_body_bytes, |(_, n)| *n)
    }

    /// Safe to send twice: behind a GET route, marked idempotent in its
    /// contract, or named in config.
    pub fn idempotent(&self, grpc_path: &str) -> bool {
        self.table.is_idempotent(grpc_path)
            || self
                .config
                .idempotent_methods
                .iter()
                .any(|m| m == grpc_path)
    }

    /// Where to copy this call, if its service mirrors to a color under
    /// test, the method is safe (a read) and the caller chose no color.
    pub fn mirror_to(
        &self,
        service: &str,
        grpc_path: &str,
        forced: Option<Color>,
    ) -> Option<Color> {
        if forced.is_some() || !self.table.is_safe(grpc_path) {
            return None;
        }
        let snapshot = self.upstream.routing.snapshot();
        let mirror = snapshot.config.services.get(service)?.mirror?;
        (crate::routing::draw_percent() < mirror.percent).then_some(mirror.to)
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// True while the gateway sheds load: readiness says so.
    pub fn overloaded(&self) -> bool {
        self.admission.saturated()
    }

    /// A slot of the global limit for the work upstream, or the fast refusal
    /// (counted as shed).
    pub fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Failure> {
        self.admission.try_acquire().inspect_err(|_| {
            self.upstream
                .metrics
                .shed
                .get_or_create(&crate::metrics::ShedLabels { reason: "overload" })
                .inc();
        })
    }
}
