//! What every request on the data plane may consult, built once at start:
//! the route table, the upstream client (with the routing snapshot it picks
//! from), token verification, limits and the per-route settings. Handlers
//! read it; only the control plane changes what it points at, by publishing
//! a new routing snapshot.

use std::sync::atomic::{AtomicBool, Ordering};

use http::{HeaderMap, Method};
use platform_runtime::Color;
use platform_runtime::tokens::{TokenError, Verifier};

use crate::config::{ColorOverride, GatewayConfig};
use crate::errors::Failure;
use crate::http_rule::PathTemplate;
use crate::routes::RouteTable;
use crate::source::RoutingSource;
use crate::upstream::Upstream;

/// Everything a request needs, shared by all listeners.
#[derive(Debug)]
pub struct State {
    pub config: GatewayConfig,
    pub table: RouteTable,
    pub upstream: Upstream,
    pub verifier: Verifier,
    pub source: RoutingSource,
    public: Vec<(Method, PathTemplate)>,
    pub(crate) draining: AtomicBool,
    pub(crate) local: crate::local::LocalGrpc,
    limit: crate::limits::ConcurrencyLimit,
    /// Requests in progress per client address on the public listener.
    pub(crate) per_client: std::sync::Arc<crate::limits::PerClient>,
    pub rate: crate::limits::RateLimiter,
    pub(crate) tls: Option<crate::tls::Tls>,
    /// Methods without side effects (reads), which may be mirrored.
    safe_methods: std::collections::HashSet<String>,
    /// Marked idempotent in their contracts: retried like GET routes.
    contract_idempotent: std::collections::HashSet<String>,
}

impl State {
    pub fn new(
        config: GatewayConfig,
        table: RouteTable,
        upstream: Upstream,
        verifier: Verifier,
        source: RoutingSource,
        local: crate::local::LocalGrpc,
    ) -> Result<Self, String> {
        let mut public = Vec::new();
        for (method, template) in &config.public_routes {
            let parsed =
                PathTemplate::parse(template).map_err(|e| format!("invalid PUBLIC_ROUTES: {e}"))?;
            public.push((method.clone(), parsed));
        }
        let tls = config.tls.clone().map(crate::tls::Tls::new).transpose()?;
        let limit = crate::limits::ConcurrencyLimit::new(config.max_concurrent);
        let per_client = crate::limits::PerClient::new(config.max_concurrent_per_client);
        let rate = crate::limits::RateLimiter::new(config.rate_limit, config.rate_burst);
        let safe_methods = table.safe_methods();
        let contract_idempotent = table.idempotent_methods();
        Ok(Self {
            config,
            table,
            upstream,
            verifier,
            source,
            public,
            draining: AtomicBool::new(false),
            local,
            limit,
            per_client,
            rate,
            tls,
            safe_methods,
            contract_idempotent,
        })
    }

    pub fn is_public(&self, method: &Method, path: &str) -> bool {
        self.public
            .iter()
            .any(|(m, t)| m == method && t.matches(path).is_some())
    }

    /// Checks the bearer token and returns its subject; the token itself is
    /// passed on to the service.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<String, Failure> {
        let token = crate::credentials::bearer(headers).ok_or_else(|| {
            Failure::unauthenticated("missing bearer token: send Authorization: Bearer <token>")
        })?;
        match self
            .verifier
            .verify(token, &self.config.tokens.audience)
            .await
        {
            Ok(claims) => Ok(claims.sub),
            Err(TokenError::KeysUnavailable) => Err(Failure::unavailable(
                "the keys that verify tokens cannot be fetched right now",
            )),
            Err(err) => Err(Failure::unauthenticated(err.to_string())),
        }
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
                if crate::credentials::same_secret(token, expected) {
                    Ok(Some(color))
                } else {
                    Err(Failure::new(
                        crate::errors::PERMISSION_DENIED,
                        format!(
                            "forcing a color with {} needs the preview token in x-color-token",
                            self.config.color_header
                        ),
                        crate::errors::Side::Downstream,
                    ))
                }
            }
        }
    }

    /// The deadline of an upstream call on `route`.
    pub fn route_timeout(&self, route: &crate::routes::Route) -> std::time::Duration {
        let template = route.template.to_string();
        self.config
            .route_timeouts
            .iter()
            .find(|((m, t), _)| *m == route.http_method && *t == template)
            .map_or_else(|| self.upstream.default_timeout(), |(_, d)| *d)
    }

    /// The largest body `route` accepts.
    pub fn body_limit(&self, route: &crate::routes::Route) -> usize {
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
        self.contract_idempotent.contains(grpc_path)
            || self
                .config
                .idempotent_methods
                .iter()
                .any(|m| m == grpc_path)
            || self
                .table
                .routes()
                .iter()
                .any(|r| r.grpc_path == grpc_path && r.http_method == Method::GET)
    }

    /// Where to copy this call, if its service mirrors to a color under
    /// test, the method is safe (a read) and the caller chose no color.
    pub fn mirror_to(
        &self,
        service: &str,
        grpc_path: &str,
        forced: Option<Color>,
    ) -> Option<Color> {
        if forced.is_some() || !self.safe_methods.contains(grpc_path) {
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
        self.limit.saturated()
    }

    /// A slot of the global limit for the work upstream, or the fast refusal
    /// (counted as shed).
    pub fn admit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Failure> {
        self.limit.try_acquire().inspect_err(|_| {
            self.upstream
                .metrics
                .shed
                .get_or_create(&crate::metrics::ShedLabels { reason: "overload" })
                .inc();
        })
    }
}
