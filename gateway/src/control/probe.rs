//! Health checks of service endpoints for the admin API (`/admin/health`,
//! `/admin/status`) and the checks before a switch or a release: the
//! standard gRPC health service, asked on connections of their own so a
//! probe never waits behind request traffic, within a second.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::Request;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

pub use platform_routing::view::Probe;

use crate::boxed::{BoxBody, full};
use crate::contract::transcode::next_frame;
use crate::proxy::errors::{INTERNAL, code_name};
use crate::proxy::upstream::status_code;

/// The client that probes endpoints.
#[derive(Debug, Clone)]
pub(crate) struct Prober {
    client: Client<HttpConnector, BoxBody>,
}

impl Prober {
    pub(crate) fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .http2_only(true)
            .build(connector);
        Self { client }
    }

    /// Asks `endpoint` for its gRPC health, within a second.
    pub(crate) async fn probe(&self, endpoint: &str) -> Probe {
        let mut probe = Probe {
            endpoint: endpoint.to_owned(),
            serving: false,
            version: None,
            build: None,
            schema: None,
            error: None,
        };
        let request = Request::post(format!("http://{endpoint}/grpc.health.v1.Health/Check"))
            .version(http::Version::HTTP_2)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .header("grpc-timeout", "1000m")
            .body(full(Bytes::from_static(&[0, 0, 0, 0, 0])));
        let request = match request {
            Ok(request) => request,
            Err(e) => {
                probe.error = Some(e.to_string());
                return probe;
            }
        };
        let answer = tokio::time::timeout(Duration::from_secs(1), async {
            let response = self.client.request(request).await.map_err(|e| {
                if e.is_connect() {
                    "connection refused".to_owned()
                } else {
                    e.to_string()
                }
            })?;
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let identity = (
                header("x-service-version"),
                header("x-service-build"),
                header("x-service-schema").and_then(|s| s.parse().ok()),
            );
            if let Some(code) = status_code(response.headers()) {
                return Err(format!("health check answered {}", code_name(code)));
            }
            let collected = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            let code = collected
                .trailers()
                .and_then(status_code)
                .unwrap_or(INTERNAL);
            if code != 0 {
                return Err(format!("health check answered {}", code_name(code)));
            }
            let mut buffer = BytesMut::from(collected.to_bytes().as_ref());
            let message = next_frame(&mut buffer)
                .map_err(|f| f.message.clone())?
                .ok_or_else(|| "empty health answer".to_owned())?;
            let answer = <tonic_health::pb::HealthCheckResponse as prost::Message>::decode(message)
                .map_err(|e| e.to_string())?;
            Ok((answer.status, identity))
        })
        .await;
        match answer {
            Ok(Ok((status, (version, build, schema)))) => {
                probe.version = version;
                probe.build = build;
                probe.schema = schema;
                probe.serving = status
                    == tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
                if !probe.serving {
                    probe.error = Some("NOT_SERVING".into());
                }
            }
            Ok(Err(error)) => probe.error = Some(error),
            Err(_) => probe.error = Some("no answer within 1s".into()),
        }
        probe
    }
}
