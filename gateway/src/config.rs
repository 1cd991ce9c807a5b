//! The gateway's settings, from the environment; a bad value stops it with
//! one line naming the variable (exit code 78).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::Method;
use platform_runtime::config::TokenConfig;
use platform_runtime::{ConfigError, Env};

/// Who may force a color with the color header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColorOverride {
    /// Anyone: for local development only, set explicitly.
    Anyone,
    /// Only requests that also carry `x-color-token: <preview token>`, a
    /// credential with no other power (never the admin token).
    PreviewToken,
    /// Nobody: the header is ignored.
    Nobody,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// The east-west listener: gRPC between services, routed like the edge.
    pub internal_listen: SocketAddr,
    /// The routing file, when the routing state is not in a ConfigMap.
    pub routes_file: Option<PathBuf>,
    /// The routing document `ROUTES_FILE` starts from when it does not exist
    /// yet (`ROUTES_INITIAL`): configuration by environment alone, as in
    /// Compose, with admin changes kept in the file afterwards.
    pub routes_initial: Option<String>,
    /// The routing ConfigMap (`ROUTES_CONFIGMAP`), inside a cluster.
    pub configmap: Option<crate::control::kube::ConfigMapTarget>,
    /// Pods of `k8s:` endpoints, from EndpointSlices.
    pub discovery: Option<crate::control::kube::DiscoveryTarget>,
    pub admin_token: String,
    pub color_header: http::HeaderName,
    pub color_override: ColorOverride,
    /// The credential of previews (`PREVIEW_TOKEN`), when they are allowed.
    pub preview_token: Option<String>,
    /// `STICKY_CANARY`: a caller the gateway can tell apart (token subject,
    /// affinity cookie) keeps its color while the weights stay; off (the
    /// default), every request is drawn by weight, which is what the release
    /// judge's tests assume (the target gets the weight's share of calls).
    pub sticky_canary: bool,
    /// `METHOD /path-template` pairs that need no token.
    pub public_routes: Vec<(Method, String)>,
    pub tokens: TokenConfig,
    pub upstream_timeout: Duration,
    pub max_body_bytes: usize,
    pub watch_interval: Duration,
    pub drain_delay: Duration,
    /// `LISTEN_REUSEPORT=true`: bind with SO_REUSEPORT, so a second gateway
    /// on the same machine can take over the ports while this one drains
    /// (a rolling restart without a load balancer in front).
    pub reuse_port: bool,
    /// Requests handled at once; beyond it, a fast 503.
    pub max_concurrent: usize,
    /// Requests of one client address in progress at once (bodies being
    /// read included); beyond it, a fast 429.
    pub max_concurrent_per_client: usize,
    /// Open connections, in total and per client address; beyond, closed.
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// How long a request body may take to arrive (408 after).
    pub body_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// How long requests in flight may take to finish at shutdown.
    pub shutdown_timeout: Duration,
    /// Requests per second per client (token subject, else address); 0 turns it off.
    pub rate_limit: f64,
    pub rate_burst: f64,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub header_read_timeout: Duration,
    /// Deadline of the upstream call, per route.
    pub route_timeouts: Vec<(RouteKey, Duration)>,
    /// Largest body accepted, per route.
    pub route_body_limits: Vec<(RouteKey, usize)>,
    pub resilience: crate::proxy::upstream::Resilience,
    /// TLS on the public listener, when a certificate and key are given.
    pub tls: Option<crate::proxy::tls::TlsFiles>,
    /// gRPC methods (`/package.Service/Method`) safe to send twice, besides
    /// every method behind a GET route.
    pub idempotent_methods: Vec<String>,
}

/// A route as configuration names it: method and path template.
pub type RouteKey = (Method, String);

/// Parses `METHOD /template=value, ...` entries of `var`.
fn per_route<T: std::str::FromStr>(
    env: &Env,
    var: &str,
    what: &str,
) -> Result<Vec<(RouteKey, T)>, ConfigError> {
    let mut out = Vec::new();
    for entry in env
        .string(var)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let bad = || {
            ConfigError::new(
                var,
                format!(
                    "expected \"METHOD /template={what}\" entries separated by commas, got {entry:?}"
                ),
            )
        };
        let (route, value) = entry.rsplit_once('=').ok_or_else(bad)?;
        let (method, template) = route.trim().split_once(' ').ok_or_else(bad)?;
        let method = method.parse::<Method>().map_err(|_| bad())?;
        let value = value.trim().parse::<T>().map_err(|_| bad())?;
        out.push(((method, template.trim().to_owned()), value));
    }
    Ok(out)
}

/// A secret from `var`, or from the file `<var>_FILE` names.
fn secret(env: &Env, var: &str) -> Result<Option<String>, ConfigError> {
    let file_var = format!("{var}_FILE");
    match (env.string(var), env.string(&file_var)) {
        (Some(value), _) => Ok(Some(value)),
        (None, Some(path)) => std::fs::read_to_string(&path)
            .map(|t| Some(t.trim().to_owned()))
            .map_err(|e| ConfigError::new(&file_var, format!("cannot read {path}: {e}"))),
        (None, None) => Ok(None),
    }
}

const DEFAULT_PUBLIC: &str = "POST /v1/auth/register, POST /v1/auth/login, GET /v1/auth/jwks";

impl GatewayConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let Some(admin_token) = secret(env, "ADMIN_TOKEN")? else {
            return Err(ConfigError::new(
                "ADMIN_TOKEN",
                "required (or ADMIN_TOKEN_FILE): the bearer token of the admin API, at least 16 characters",
            ));
        };
        if admin_token.len() < 16 {
            return Err(ConfigError::new(
                "ADMIN_TOKEN",
                "must be at least 16 characters",
            ));
        }
        let configmap = crate::control::kube::ConfigMapTarget::from_env(env)?;
        let discovery = crate::control::kube::DiscoveryTarget::from_env(env)?;
        let routes_file = env.string("ROUTES_FILE").map(PathBuf::from);
        let routes_initial = env.string("ROUTES_INITIAL");
        if let Some(initial) = &routes_initial {
            if routes_file.is_none() {
                return Err(ConfigError::new(
                    "ROUTES_INITIAL",
                    "needs ROUTES_FILE: the file it is written to the first time",
                ));
            }
            crate::routing::RoutingConfig::parse(initial)
                .map_err(|e| ConfigError::new("ROUTES_INITIAL", e))?;
        }
        if routes_file.is_none() && configmap.is_none() {
            return Err(ConfigError::new(
                "ROUTES_FILE",
                "required (or ROUTES_CONFIGMAP=<namespace>/<name> in a cluster): where the routing state lives",
            ));
        }
        let color_header = env
            .string_or("COLOR_HEADER", "x-color")
            .parse::<http::HeaderName>()
            .map_err(|_| {
                ConfigError::new("COLOR_HEADER", "expected a header name such as x-color")
            })?;
        let preview_token = secret(env, "PREVIEW_TOKEN")?;
        if preview_token.as_ref().is_some_and(|t| t.len() < 16) {
            return Err(ConfigError::new(
                "PREVIEW_TOKEN",
                "must be at least 16 characters",
            ));
        }
        if preview_token.as_deref() == Some(admin_token.as_str()) {
            return Err(ConfigError::new(
                "PREVIEW_TOKEN",
                "must differ from ADMIN_TOKEN: a preview credential must not open the admin API",
            ));
        }
        // Safe by default: previews need the preview token when there is one,
        // and are off otherwise; `anyone` is for local use and must be asked for.
        let default_override = if preview_token.is_some() {
            "preview-token"
        } else {
            "nobody"
        };
        let color_override = match env.string_or("COLOR_OVERRIDE", default_override).as_str() {
            "anyone" => ColorOverride::Anyone,
            "preview-token" if preview_token.is_some() => ColorOverride::PreviewToken,
            "preview-token" => {
                return Err(ConfigError::new(
                    "COLOR_OVERRIDE",
                    "preview-token needs PREVIEW_TOKEN (or PREVIEW_TOKEN_FILE): the credential previews carry in x-color-token",
                ));
            }
            "nobody" => ColorOverride::Nobody,
            other => {
                return Err(ConfigError::new(
                    "COLOR_OVERRIDE",
                    format!("expected preview-token, nobody or anyone, got {other:?}"),
                ));
            }
        };
        let mut public_routes = Vec::new();
        for entry in env
            .string_or("PUBLIC_ROUTES", DEFAULT_PUBLIC)
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (method, path) = entry.split_once(' ').ok_or_else(|| {
                ConfigError::new(
                    "PUBLIC_ROUTES",
                    format!("expected \"METHOD /path\", got {entry:?}"),
                )
            })?;
            let method = method.parse::<Method>().map_err(|_| {
                ConfigError::new("PUBLIC_ROUTES", format!("invalid method in {entry:?}"))
            })?;
            public_routes.push((method, path.trim().to_owned()));
        }
        let max_body = env
            .parse::<usize>("MAX_BODY_BYTES", "a number of bytes")?
            .unwrap_or(1 << 20);
        Ok(Self {
            listen: env.socket_addr("LISTEN_ADDR", SocketAddr::from(([0, 0, 0, 0], 8080)))?,
            admin_listen: env.socket_addr("ADMIN_ADDR", SocketAddr::from(([0, 0, 0, 0], 9901)))?,
            internal_listen: env
                .socket_addr("INTERNAL_ADDR", SocketAddr::from(([0, 0, 0, 0], 8081)))?,
            routes_file,
            routes_initial,
            configmap,
            discovery,
            admin_token,
            color_header,
            color_override,
            preview_token,
            sticky_canary: env
                .parse::<bool>("STICKY_CANARY", "true or false")?
                .unwrap_or(false),
            public_routes,
            tokens: TokenConfig {
                issuer: env.string_or("AUTH_ISSUER", "platform-auth"),
                audience: env.string_or("AUTH_AUDIENCE", "platform-api"),
                internal_audience: env.string_or("AUTH_INTERNAL_AUDIENCE", "platform-internal"),
                auth_endpoint: env.endpoint("AUTH_ADDR", "http://127.0.0.1:50051")?,
            },
            upstream_timeout: env.millis(
                "UPSTREAM_TIMEOUT_MS",
                Duration::from_secs(30),
                Duration::from_secs(600),
            )?,
            max_body_bytes: max_body,
            watch_interval: env.millis(
                "ROUTES_WATCH_MS",
                Duration::from_millis(200),
                Duration::from_secs(60),
            )?,
            drain_delay: env.millis(
                "DRAIN_DELAY_MS",
                Duration::from_secs(5),
                Duration::from_secs(300),
            )?,
            reuse_port: env
                .parse::<bool>("LISTEN_REUSEPORT", "true or false")?
                .unwrap_or(false),
            max_concurrent: env
                .parse::<usize>("MAX_CONCURRENT_REQUESTS", "a number of requests")?
                .unwrap_or(1024)
                .max(1),
            max_concurrent_per_client: env
                .parse::<usize>("MAX_CONCURRENT_REQUESTS_PER_CLIENT", "a number of requests")?
                .unwrap_or(128)
                .max(1),
            max_connections: env
                .parse::<usize>("MAX_CONNECTIONS", "a number of connections")?
                .unwrap_or(10_000)
                .max(1),
            max_connections_per_client: env
                .parse::<usize>("MAX_CONNECTIONS_PER_CLIENT", "a number of connections")?
                .unwrap_or(256)
                .max(1),
            body_read_timeout: env.millis(
                "BODY_READ_TIMEOUT_MS",
                Duration::from_secs(10),
                Duration::from_secs(300),
            )?,
            idle_timeout: env.millis(
                "IDLE_TIMEOUT_MS",
                Duration::from_secs(120),
                Duration::from_secs(3600),
            )?,
            shutdown_timeout: env.millis(
                "SHUTDOWN_TIMEOUT_MS",
                Duration::from_secs(20),
                Duration::from_secs(600),
            )?,
            rate_limit: env
                .parse::<f64>(
                    "RATE_LIMIT_PER_SECOND",
                    "requests per second (0 turns it off)",
                )?
                .unwrap_or(100.0),
            rate_burst: env
                .parse::<f64>("RATE_LIMIT_BURST", "a number of requests")?
                .unwrap_or(200.0),
            max_headers: env
                .parse::<usize>("MAX_HEADERS", "a number of headers")?
                .unwrap_or(100),
            max_header_bytes: env
                .parse::<usize>("MAX_HEADER_BYTES", "a number of bytes, at least 8192")?
                .unwrap_or(64 * 1024)
                .max(8192),
            header_read_timeout: env.millis(
                "HEADER_READ_TIMEOUT_MS",
                Duration::from_secs(10),
                Duration::from_secs(300),
            )?,
            route_timeouts: per_route::<u64>(env, "ROUTE_TIMEOUTS", "milliseconds")?
                .into_iter()
                .map(|(route, ms)| (route, Duration::from_millis(ms)))
                .collect(),
            route_body_limits: per_route(env, "ROUTE_BODY_LIMITS", "bytes")?,
            tls: match (env.string("TLS_CERT_FILE"), env.string("TLS_KEY_FILE")) {
                (Some(cert), Some(key)) => Some(crate::proxy::tls::TlsFiles {
                    cert: PathBuf::from(cert),
                    key: PathBuf::from(key),
                }),
                (None, None) => None,
                _ => {
                    return Err(ConfigError::new(
                        "TLS_CERT_FILE",
                        "TLS needs both TLS_CERT_FILE and TLS_KEY_FILE (PEM), or neither",
                    ));
                }
            },
            resilience: crate::proxy::upstream::Resilience {
                consecutive_failures: env
                    .parse::<u32>("OUTLIER_CONSECUTIVE_FAILURES", "a number of failures")?
                    .unwrap_or(5),
                base_ejection: env.millis(
                    "OUTLIER_EJECTION_MS",
                    Duration::from_secs(1),
                    Duration::from_secs(600),
                )?,
                max_ejection: env.millis(
                    "OUTLIER_MAX_EJECTION_MS",
                    Duration::from_secs(30),
                    Duration::from_secs(3600),
                )?,
                retry_ratio: env
                    .parse::<f64>("RETRY_BUDGET_RATIO", "a fraction such as 0.2")?
                    .unwrap_or(0.2),
                retries_per_second: env
                    .parse::<f64>("RETRY_BUDGET_PER_SECOND", "retries per second")?
                    .unwrap_or(10.0),
                failover: env
                    .parse::<bool>("FAILOVER_TO_OTHER_COLOR", "true or false")?
                    .unwrap_or(false),
            },
            idempotent_methods: env
                .string("IDEMPOTENT_METHODS")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }
}
