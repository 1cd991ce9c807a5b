//! The gateway's Prometheus metrics, served on the admin port. Names follow
//! the OpenTelemetry semantic conventions where they exist.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use platform_routing::RoutingConfig;
use platform_runtime::exposition::Format;

const BUCKETS: [f64; 15] = [
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub http_route: String,
    pub http_request_method: String,
    pub http_response_status_code: u16,
    /// The gRPC status of a gRPC call (from its trailers when it has
    /// them), empty for REST.
    pub grpc_code: &'static str,
    pub service: String,
    pub color: &'static str,
    /// `rest`, `grpc` (north-south) or `internal` (east-west).
    pub protocol: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub service: String,
    pub color: &'static str,
    pub grpc_code: &'static str,
    /// `live`, or `mirror` for copies sent to a color under test.
    pub traffic: &'static str,
}

pub const RETRY_REASONS: [&str; 3] = ["connect", "broken", "unavailable"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RetryLabels {
    pub service: String,
    pub color: &'static str,
    /// `connect` (never reached the service), `broken`, or `unavailable`.
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RolloutLabels {
    pub service: String,
    /// `idle`, `mirroring`, `shifting`, `aborting` or `paused`.
    pub state: &'static str,
}

const ROLLOUT_STATES: [&str; 6] = [
    "idle",
    "mirroring",
    "shifting",
    "baking",
    "aborting",
    "paused",
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShedLabels {
    /// `overload` (MAX_CONCURRENT_REQUESTS reached), `client` (a client
    /// address at MAX_CONCURRENT_REQUESTS_PER_CLIENT), `connections` (a
    /// connection closed at once by a connection cap) or `rate_limit`.
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WeightLabels {
    pub service: String,
    pub color: &'static str,
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

#[derive(Debug, Clone)]
pub struct GatewayMetrics {
    registry: Arc<Mutex<Registry>>,
    pub requests: Family<RequestLabels, Histogram, fn() -> Histogram>,
    pub upstream: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    pub in_flight: Gauge,
    pub weights: Family<WeightLabels, Gauge>,
    pub generation: Gauge,
    pub reload_failures: Counter,
    pub retries: Family<RetryLabels, Counter>,
    pub ejections: Family<WeightLabels, Counter>,
    pub color_down: Family<WeightLabels, Gauge>,
    pub shed: Family<ShedLabels, Counter>,
    pub rollout_state: Family<RolloutLabels, Gauge>,
    pub rollout_step: Family<ServiceLabels, Gauge>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    service: &'static str,
    version: &'static str,
    build: &'static str,
    rust_version: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let metrics = Self {
            registry: Arc::new(Mutex::new(Registry::default())),
            requests: Family::new_with_constructor(histogram),
            upstream: Family::new_with_constructor(histogram),
            in_flight: Gauge::default(),
            weights: Family::default(),
            generation: Gauge::default(),
            reload_failures: Counter::default(),
            retries: Family::default(),
            ejections: Family::default(),
            color_down: Family::default(),
            shed: Family::default(),
            rollout_state: Family::default(),
            rollout_step: Family::default(),
        };
        registry.register(
            "http_server_request_duration_seconds",
            "Requests through the gateway by route, method, status, service and color",
            metrics.requests.clone(),
        );
        registry.register(
            "gateway_upstream_duration_seconds",
            "Calls from the gateway to a service, by service, color and gRPC code",
            metrics.upstream.clone(),
        );
        registry.register(
            "http_server_active_requests",
            "Requests being handled now",
            metrics.in_flight.clone(),
        );
        registry.register(
            "gateway_route_weight",
            "Current weight of each color, in percent",
            metrics.weights.clone(),
        );
        registry.register(
            "gateway_routing_generation",
            "Generation of the routing state in use",
            metrics.generation.clone(),
        );
        registry.register(
            "gateway_routing_reload_failures",
            "Routing changes refused because they were invalid",
            metrics.reload_failures.clone(),
        );
        registry.register(
            "gateway_upstream_retries",
            "Calls sent again to another endpoint, by reason",
            metrics.retries.clone(),
        );
        registry.register(
            "gateway_endpoint_ejections",
            "Endpoints taken out after consecutive failures",
            metrics.ejections.clone(),
        );
        registry.register(
            "gateway_color_down",
            "1 while every endpoint of a color with weight is failing",
            metrics.color_down.clone(),
        );
        registry.register(
            "gateway_shed_requests",
            "Requests turned away before any work, by reason",
            metrics.shed.clone(),
        );
        registry.register(
            "gateway_rollout_state",
            "1 for the state a service's rollout is in (idle when there is none)",
            metrics.rollout_state.clone(),
        );
        registry.register(
            "gateway_rollout_step",
            "The step a rollout is at, counting from 1; 0 when there is none",
            metrics.rollout_step.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                service: "gateway",
                version: env!("CARGO_PKG_VERSION"),
                build: platform_runtime::version::build(),
                rust_version: platform_runtime::exposition::RUSTC_VERSION,
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; labels name the release and the compiler",
            build,
        );
        // Exported at zero from the start, so dashboards and alerts see the
        // series before the first event.
        for reason in ["overload", "client", "connections", "rate_limit"] {
            let _ = metrics.shed.get_or_create(&ShedLabels { reason });
        }
        if let Ok(mut slot) = metrics.registry.lock() {
            *slot = registry;
        }
        metrics
    }

    pub fn observe_routing(&self, config: &RoutingConfig) {
        self.generation
            .set(i64::try_from(config.generation).unwrap_or(i64::MAX));
        for (service, routing) in &config.services {
            let (state, step) = match &routing.rollout {
                None => ("idle", 0),
                Some(r) if r.paused => ("paused", r.step + 1),
                Some(r) => match r.phase {
                    platform_routing::release::Phase::Mirroring => ("mirroring", 0),
                    platform_routing::release::Phase::Shifting => ("shifting", r.step + 1),
                    platform_routing::release::Phase::Aborting => ("aborting", r.step + 1),
                    platform_routing::release::Phase::Baking => ("baking", r.step + 1),
                },
            };
            for candidate in ROLLOUT_STATES {
                self.rollout_state
                    .get_or_create(&RolloutLabels {
                        service: service.clone(),
                        state: candidate,
                    })
                    .set(i64::from(candidate == state));
            }
            self.rollout_step
                .get_or_create(&ServiceLabels {
                    service: service.clone(),
                })
                .set(i64::try_from(step).unwrap_or(i64::MAX));
            for color in platform_runtime::Color::ALL {
                let labels = WeightLabels {
                    service: service.clone(),
                    color: color.as_str(),
                };
                self.weights
                    .get_or_create(&labels)
                    .set(i64::from(routing.weights.of(color)));
                // Zero until the first event, rather than absent.
                let _ = self.ejections.get_or_create(&labels);
                let _ = self.color_down.get_or_create(&labels);
                for reason in RETRY_REASONS {
                    let _ = self.retries.get_or_create(&RetryLabels {
                        service: service.clone(),
                        color: color.as_str(),
                        reason,
                    });
                }
            }
        }
    }

    pub fn count_rate_limited(&self) {
        self.shed
            .get_or_create(&ShedLabels {
                reason: "rate_limit",
            })
            .inc();
    }

    /// The registry in the exposition format `format`.
    pub fn encode(&self, format: Format) -> String {
        match self.registry.lock() {
            Ok(registry) => platform_runtime::exposition::encode(&registry, format),
            Err(_) => String::new(),
        }
    }
}
