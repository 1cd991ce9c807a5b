//! Who may send what, and how much: the routes open without a token, the
//! bearer-token check, the global and per-client concurrency limits and the
//! per-client rate. Each request passes here before any work upstream.

use std::sync::Arc;

use http::{HeaderMap, Method};
use platform_runtime::tokens::{TokenError, Verifier};

use crate::config::GatewayConfig;
use crate::contract::http_rule::PathTemplate;
use crate::proxy::errors::Failure;
use crate::proxy::limits::{ConcurrencyLimit, PerClient, RateLimiter};

#[derive(Debug)]
pub struct Admission {
    /// Routes served without a token (`PUBLIC_ROUTES`).
    public: Vec<(Method, PathTemplate)>,
    verifier: Verifier,
    audience: String,
    /// Requests upstream at once, over all clients.
    limit: ConcurrencyLimit,
    /// Requests in progress per client address on the public listener.
    pub(crate) per_client: Arc<PerClient>,
    pub rate: RateLimiter,
}

impl Admission {
    pub fn new(config: &GatewayConfig, verifier: Verifier) -> Result<Self, String> {
        let mut public = Vec::new();
        for (method, template) in &config.public_routes {
            let parsed =
                PathTemplate::parse(template).map_err(|e| format!("invalid PUBLIC_ROUTES: {e}"))?;
            public.push((method.clone(), parsed));
        }
        Ok(Self {
            public,
            verifier,
            audience: config.tokens.audience.clone(),
            limit: ConcurrencyLimit::new(config.max_concurrent),
            per_client: PerClient::new(config.max_concurrent_per_client),
            rate: RateLimiter::new(config.rate_limit, config.rate_burst),
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
        let token = crate::proxy::credentials::bearer(headers).ok_or_else(|| {
            Failure::unauthenticated("missing bearer token: send Authorization: Bearer <token>")
        })?;
        match self.verifier.verify(token, &self.audience).await {
            Ok(claims) => Ok(claims.sub),
            Err(TokenError::KeysUnavailable) => Err(Failure::unavailable(
                "the keys that verify tokens cannot be fetched right now",
            )),
            Err(err) => Err(Failure::unauthenticated(err.to_string())),
        }
    }

    /// True while every slot of the global limit is taken.
    pub fn saturated(&self) -> bool {
        self.limit.saturated()
    }

    /// A slot of the global limit, or the fast refusal.
    pub fn try_acquire(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Failure> {
        self.limit.try_acquire()
    }
}
