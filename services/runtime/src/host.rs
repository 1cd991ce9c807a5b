//! Serves one tonic service the way every service of the platform is served:
//! behind the observe and fault layers, beside gRPC health and reflection,
//! with metrics on their own port, and with a graceful stop: health turns
//! NOT_SERVING at once, calls keep being served for the drain delay (so load
//! balancers see it first), then new connections are refused, live streams
//! are told to end, and in-flight calls finish within the shutdown timeout.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tower::ServiceBuilder;

use crate::config::{ServiceConfig, exit_on_error};
use crate::deadline::DeadlineLayer;
use crate::fault::FaultLayer;
use crate::metrics::Metrics;
use crate::observe::ObserveLayer;
use crate::telemetry::Telemetry;

/// Resolves when the service stops: long-lived streams end themselves on it.
#[derive(Debug, Clone)]
pub struct StreamsEnd(watch::Receiver<bool>);

impl StreamsEnd {
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|ended| *ended).await;
    }
}

/// A service whose listeners are bound, ready to serve.
#[derive(Debug)]
pub struct Host {
    config: Arc<ServiceConfig>,
    listener: TcpListener,
    metrics_listener: TcpListener,
    metrics: Metrics,
    streams_end: watch::Sender<bool>,
    schema: Option<crate::storage::Schema>,
}

impl Host {
    pub async fn bind(config: ServiceConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let metrics_listener = TcpListener::bind(config.metrics_listen).await?;
        let metrics = Metrics::new(&config);
        Ok(Self {
            config: Arc::new(config),
            listener,
            metrics_listener,
            metrics,
            streams_end: watch::channel(false).0,
            schema: None,
        })
    }

    /// The schema the service's database was found at, for its answers'
    /// headers and its metrics.
    pub fn runs_on(mut self, schema: crate::storage::Schema) -> Self {
        self.metrics.schema(schema);
        self.schema = Some(schema);
        self
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn streams_end(&self) -> StreamsEnd {
        StreamsEnd(self.streams_end.subscribe())
    }

    /// Starts serving `service` (described by `descriptor` for reflection).
    pub async fn serve<S>(
        self,
        service: S,
        descriptor: &'static [u8],
    ) -> std::io::Result<RunningService>
    where
        S: tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = Infallible,
            > + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let addr = self.listener.local_addr()?;
        let metrics_addr = self.metrics_listener.local_addr()?;
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<S>().await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(descriptor)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .map_err(std::io::Error::other)?;
        let reflection_alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(descriptor)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()
            .map_err(std::io::Error::other)?;

        let (stop, mut stop_requested) = watch::channel(false);
        let (stop_accepting, mut accepting_stopped) = watch::channel(false);
        let metrics_task = tokio::spawn(self.metrics.clone().serve(self.metrics_listener));
        let stack = ServiceBuilder::new()
            // Outermost, so the span and metrics cover the injected faults too.
            .layer(ObserveLayer::new(
                self.metrics.rpc.clone(),
                self.config.color,
                &self.config.version,
                self.schema,
            ))
            // Inside observe, so a call cut by its deadline is recorded
            // as DEADLINE_EXCEEDED, and outside the faults, whose delays
            // count against the deadline as a slow service's would.
            .layer(DeadlineLayer)
            .layer(FaultLayer::new(self.config.faults.clone()))
            .into_inner();
        // A custom incoming stream bypasses tonic's own socket options:
        // without TCP_NODELAY, small HTTP/2 frames on a connection shared by
        // concurrent calls wait for delayed ACKs (tens of milliseconds).
        let incoming = TcpListenerStream::new(self.listener).map(|accepted| {
            if let Ok(stream) = &accepted {
                let _ = stream.set_nodelay(true);
            }
            accepted
        });
        let server = Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(20)))
            .layer(stack)
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_alpha)
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = accepting_stopped.wait_for(|stopped| *stopped).await;
            });
        let mut server = tokio::spawn(server);
        let kill_switch = vec![server.abort_handle(), metrics_task.abort_handle()];
        let config = Arc::clone(&self.config);
        let streams_end = self.streams_end;
        let task = tokio::spawn(async move {
            tokio::select! {
                _ = stop_requested.wait_for(|stop| *stop) => {}
                result = &mut server => {
                    match &result {
                        Ok(Ok(())) => tracing::error!("server stopped by itself"),
                        Ok(Err(error)) => tracing::error!(%error, "server stopped by itself"),
                        Err(error) => tracing::error!(%error, "server task failed"),
                    }
                    metrics_task.abort();
                    return;
                }
            }
            health.set_not_serving::<S>().await;
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            tracing::info!(
                drain_delay_ms = config.drain_delay.as_millis() as u64,
                "draining: health is NOT_SERVING"
            );
            tokio::time::sleep(config.drain_delay).await;
            let _ = stop_accepting.send(true);
            let _ = streams_end.send(true);
            match tokio::time::timeout(config.shutdown_timeout, &mut server).await {
                Ok(_) => tracing::info!("stopped: every call finished"),
                Err(_) => {
                    tracing::warn!(
                        timeout_ms = config.shutdown_timeout.as_millis() as u64,
                        "stopped with calls still running after the shutdown timeout"
                    );
                    server.abort();
                }
            }
            metrics_task.abort();
        });
        Ok(RunningService {
            addr,
            metrics_addr,
            stop,
            task,
            kill_switch,
        })
    }
}

/// A service being served.
#[derive(Debug)]
pub struct RunningService {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    kill_switch: Vec<tokio::task::AbortHandle>,
}

impl RunningService {
    /// Drains and stops, returning once every call finished or the timeout passed.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }

    /// Stops at once, like `kill -9`: connections are dropped mid-call and
    /// nothing drains. For failure drills in tests.
    pub fn kill(self) {
        for handle in &self.kill_switch {
            handle.abort();
        }
        self.task.abort();
    }

    /// Serves until SIGTERM or SIGINT, then stops gracefully.
    pub async fn until_signal(self) {
        shutdown_signal().await;
        tracing::info!("shutdown signal received");
        self.stop().await;
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The whole life of a service process: config from the environment (a bad
/// value exits with one line and code 78), telemetry, `start`, serving until
/// a signal, a graceful stop, and a flush of the traces.
pub async fn run<F, Fut, E>(service: &'static str, port: u16, start: F)
where
    F: FnOnce(ServiceConfig, crate::Env) -> Fut,
    Fut: Future<Output = Result<RunningService, E>>,
    E: std::fmt::Display,
{
    let env = crate::Env::from_process();
    let config = exit_on_error(ServiceConfig::from_env(service, port, &env));
    if std::env::args().nth(1).as_deref() == Some("healthcheck") {
        std::process::exit(healthcheck(service, config.listen.port()).await);
    }
    let telemetry = match Telemetry::init(&(&config).into()) {
        Ok(t) => t,
        Err(message) => {
            eprintln!("error: {message}");
            std::process::exit(crate::config::EXIT_CONFIG);
        }
    };
    let (color, version) = (config.color, config.version.clone());
    match start(config, env).await {
        Ok(running) => {
            tracing::info!(
                service,
                %color,
                version,
                addr = %running.addr,
                metrics = %running.metrics_addr,
                "serving"
            );
            running.until_signal().await;
        }
        Err(err) => {
            tracing::error!(service, error = %err, "cannot start");
            eprintln!("error: {service} cannot start: {err}");
            telemetry.shutdown();
            std::process::exit(1);
        }
    }
    telemetry.shutdown();
}

/// `<binary> healthcheck`: asks the service listening on this container's
/// port for its gRPC health, for container runtimes whose health checks run
/// a command (the images have no shell or curl). Exit 0 when SERVING.
async fn healthcheck(service: &str, port: u16) -> i32 {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("a loopback URL is valid")
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(2));
    let status = match endpoint.connect().await {
        Ok(channel) => HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status)
            .map_err(|e| e.message().to_owned()),
        Err(e) => Err(e.to_string()),
    };
    match status {
        Ok(s) if s == ServingStatus::Serving as i32 => 0,
        Ok(s) => {
            eprintln!("{service} on port {port} is not serving (health status {s})");
            1
        }
        Err(e) => {
            eprintln!("{service} on port {port} does not answer its health check: {e}");
            1
        }
    }
}

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
    #[error("signing keys: {0}")]
    Keys(#[from] crate::tokens::KeyError),
}
