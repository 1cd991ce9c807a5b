//! The edge gateway: the one place that knows JSON, and the one place that
//! decides which color serves each request.
#![forbid(unsafe_code)]

pub mod boxed;
pub mod config;
pub mod contract;
pub mod control;
pub mod metrics;
pub mod proxy;
pub mod routing;
mod server;

use config::GatewayConfig;
use platform_runtime::Env;
use platform_runtime::config::{EXIT_CONFIG, LogFormat};
use platform_runtime::telemetry::{Telemetry, TelemetrySettings};
use platform_runtime::tokens::Verifier;

use control::kube::{ConfigMapSource, EndpointDiscovery};
use control::source::{RoutingFile, RoutingSource};
use proxy::local::LocalGrpc;
use proxy::state::State;
use proxy::upstream::Upstream;

pub use server::RunningGateway;

/// Loads routes and routing, and serves on the configured listeners.
pub async fn start(
    config: GatewayConfig,
    descriptor_sets: &[&[u8]],
) -> Result<RunningGateway, String> {
    let table = contract::routes::RouteTable::from_descriptor_sets(descriptor_sets)
        .map_err(|e| e.to_string())?;
    let source = match (&config.configmap, &config.routes_file) {
        (Some(configmap), _) => RoutingSource::ConfigMap(Box::new(
            ConfigMapSource::connect(configmap).map_err(|e| e.to_string())?,
        )),
        (None, Some(file)) => {
            let file = RoutingFile::new(file.clone());
            if let Some(initial) = &config.routes_initial {
                file.seed(initial)?;
            }
            RoutingSource::File(file)
        }
        (None, None) => return Err("no routing source: set ROUTES_FILE or ROUTES_CONFIGMAP".into()),
    };
    let routing_config = source.load().await?;
    tracing::info!(source = %source.describe(), generation = routing_config.generation, "routing loaded");
    let metrics = metrics::GatewayMetrics::new();
    metrics.observe_routing(&routing_config);
    let routing = routing::Routing::new(routing_config);
    let upstream = Upstream::new(routing, metrics, config.upstream_timeout, config.resilience);
    let discovery = config
        .discovery
        .as_ref()
        .map(EndpointDiscovery::connect)
        .transpose()
        .map_err(|e| e.to_string())?;
    let verifier = Verifier::remote(&config.tokens).map_err(|e| e.to_string())?;
    let public_methods = table.routes().iter().map(|r| r.grpc_path.clone()).collect();
    let local = LocalGrpc::new(descriptor_sets, &public_methods)?;
    let state = State::new(config, table, upstream, verifier, local)?;
    server::serve(state, source, discovery)
        .await
        .map_err(|e| format!("cannot listen: {e}"))
}

/// The gateway process: config from the environment, serve until SIGTERM or
/// Ctrl-C, drain, exit. Returns the exit code.
pub async fn main_from_env() -> i32 {
    let env = Env::from_process();
    let config = match GatewayConfig::from_env(&env) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_CONFIG;
        }
    };
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        return healthcheck(config.admin_listen.port()).await;
    }
    let log_format = if env.string_or("LOG_FORMAT", "json") == "text" {
        LogFormat::Text
    } else {
        LogFormat::Json
    };
    let settings = TelemetrySettings {
        service: "gateway",
        version: env.string_or("VERSION", env!("CARGO_PKG_VERSION")),
        color: None,
        otlp_endpoint: env.string("OTEL_EXPORTER_OTLP_ENDPOINT"),
        log_format,
        log_filter: env.string_or("RUST_LOG", "info"),
    };
    let telemetry = match Telemetry::init(&settings) {
        Ok(t) => t,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_CONFIG;
        }
    };
    let running = match start(config, &[platform_proto::PLATFORM_DESCRIPTOR_SET]).await {
        Ok(running) => running,
        Err(message) => {
            eprintln!("error: {message}");
            telemetry.shutdown();
            return 1;
        }
    };
    tracing::info!(
        addr = %running.addr,
        admin = %running.admin_addr,
        internal = %running.internal_addr,
        "gateway serving"
    );
    platform_runtime::host::shutdown_signal().await;
    running.stop().await;
    telemetry.shutdown();
    0
}

/// `gateway healthcheck`: asks this container's gateway whether it is ready
/// (`GET /ready` on the admin port), for container health checks that run a
/// command. Exit 0 when ready.
async fn healthcheck(admin_port: u16) -> i32 {
    use http_body_util::Empty;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<bytes::Bytes>>();
    let uri = format!("http://127.0.0.1:{admin_port}/ready");
    let uri: http::Uri = uri.parse().expect("a loopback URL is valid");
    match tokio::time::timeout(std::time::Duration::from_secs(2), client.get(uri)).await {
        Ok(Ok(response)) if response.status().is_success() => 0,
        Ok(Ok(response)) => {
            eprintln!("the gateway is not ready: {}", response.status());
            1
        }
        Ok(Err(e)) => {
            eprintln!("the gateway on admin port {admin_port} does not answer: {e}");
            1
        }
        Err(_) => {
            eprintln!("the gateway on admin port {admin_port} did not answer within 2s");
            1
        }
    }
}
