//! Prometheus metrics of a service, served over HTTP on the gRPC port + 1000.
//! Every series carries the service, color and version, so blue and green
//! are told apart without relabelling.

use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::Bytes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::config::ServiceConfig;
use crate::exposition::Format;

const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub rpc_service: String,
    pub rpc_method: String,
    pub code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub rpc_service: String,
    pub rpc_method: String,
}

/// The metrics every gRPC server records.
#[derive(Debug, Clone)]
pub struct RpcMetrics {
    pub requests: Family<RpcLabels, Counter>,
    pub duration: Family<RpcLabels, Histogram, fn() -> Histogram>,
    pub in_flight: Family<MethodLabels, Gauge>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    build: &'static str,
    rust_version: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SchemaLabels {
    /// `release` (the highest migration this binary knows) or `database`
    /// (the highest the database had at start).
    of: &'static str,
}

/// The registry of one service process.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    pub rpc: RpcMetrics,
}

impl Metrics {
    pub fn new(config: &ServiceConfig) -> Self {
        let mut registry = Registry::with_labels(
            [
                ("service".into(), config.service.into()),
                ("color".into(), config.color.as_str().into()),
                ("version".into(), config.version.clone().into()),
            ]
            .into_iter(),
        );
        let rpc = RpcMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            in_flight: Family::default(),
        };
        registry.register(
            "rpc_server_requests",
            "gRPC calls handled, by method and status code",
            rpc.requests.clone(),
        );
        registry.register(
            "rpc_server_duration_seconds",
            "Time from request to the end of the response, by method and status code",
            rpc.duration.clone(),
        );
        registry.register(
            "rpc_server_in_flight_requests",
            "gRPC calls being handled now",
            rpc.in_flight.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                build: crate::version::build(),
                rust_version: crate::exposition::RUSTC_VERSION,
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; labels name the release and color",
            build,
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            rpc,
        }
    }

    /// The schema the service runs on, as `schema_version{of}` gauges.
    pub fn schema(&self, schema: crate::storage::Schema) {
        let gauges = Family::<SchemaLabels, Gauge>::default();
        gauges
            .get_or_create(&SchemaLabels { of: "release" })
            .set(schema.release);
        gauges
            .get_or_create(&SchemaLabels { of: "database" })
            .set(schema.database);
        self.register(
            "schema_version",
            "The highest migration this release knows (of=release) and the database has (of=database)",
            gauges,
        );
    }

    /// Adds a service's own metric to the registry.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        if let Ok(mut registry) = self.registry.lock() {
            registry.register(name, help, metric);
        }
    }

    /// The registry in the exposition format `format`.
    pub fn encode(&self, format: Format) -> String {
        match self.registry.lock() {
            Ok(registry) => crate::exposition::encode(&registry, format),
            Err(_) => String::new(),
        }
    }

    /// Serves `GET /metrics` on `listener` until the task is dropped.
    pub async fn serve(self, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: hyper::Request<hyper::body::Incoming>| {
                        let metrics = metrics.clone();
                        async move {
                            if request.uri().path() == "/metrics" {
                                let format = Format::negotiate(
                                    request
                                        .headers()
                                        .get(http::header::ACCEPT)
                                        .and_then(|v| v.to_str().ok()),
                                );
                                hyper::Response::builder()
                                    .header("content-type", format.content_type())
                                    .body(Full::new(Bytes::from(metrics.encode(format))))
                            } else {
                                hyper::Response::builder().status(404).body(Full::new(
                                    Bytes::from_static(b"not found: metrics are at /metrics\n"),
                                ))
                            }
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    }
}
