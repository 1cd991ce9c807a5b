//! The routing state in a Kubernetes ConfigMap, the source of truth inside a
//! cluster. Every gateway replica watches the one ConfigMap through the API
//! server (a change reaches all of them within a second), and the admin API
//! writes it with optimistic concurrency (the `resourceVersion` it read), so
//! two replicas changing weights at once never lose a change. The service
//! account needs only get, watch and update on that one ConfigMap.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use platform_runtime::{ConfigError, Env};
use serde_json::Value;

use crate::metrics::GatewayMetrics;
use crate::routing::{Change, Routing, RoutingConfig};

const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The key of the ConfigMap that holds the routing document.
pub const KEY: &str = "routes.json";

/// Where the Kubernetes API server is and how to trust and authenticate
/// to it: settings only, read at start; the client is made by
/// [`KubeApi::connect`] when the control plane starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeTarget {
    api: String,
    token_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
}

impl KubeTarget {
    /// The API server from `KUBE_API_URL` or the in-cluster
    /// `KUBERNETES_SERVICE_HOST`/`_PORT`, with the service account's token
    /// and CA (or `KUBE_TOKEN_FILE`, `KUBE_CA_FILE`). `needed_by` names the
    /// setting that needs it, for the error.
    pub fn from_env(env: &Env, needed_by: &str) -> Result<Self, ConfigError> {
        let api = match (
            env.string("KUBE_API_URL"),
            env.string("KUBERNETES_SERVICE_HOST"),
        ) {
            (Some(url), _) => url.trim_end_matches('/').to_owned(),
            (None, Some(host)) => format!(
                "https://{host}:{}",
                env.string_or("KUBERNETES_SERVICE_PORT", "443")
            ),
            (None, None) => {
                return Err(ConfigError::new(
                    "KUBE_API_URL",
                    format!(
                        "{needed_by} needs the API server: run in a cluster or set KUBE_API_URL"
                    ),
                ));
            }
        };
        let token_file = env
            .string("KUBE_TOKEN_FILE")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from(SERVICE_ACCOUNT).join("token")).filter(|p| p.exists()));
        let ca_file = env
            .string("KUBE_CA_FILE")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from(SERVICE_ACCOUNT).join("ca.crt")).filter(|p| p.exists()));
        Ok(Self {
            api,
            token_file,
            ca_file,
        })
    }
}

/// A client of the Kubernetes API server, with the service account's token.
#[derive(Debug, Clone)]
pub struct KubeApi {
    api: String,
    token_file: Option<PathBuf>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl KubeApi {
    /// A client of `target`; fails when its CA file cannot be read.
    pub fn connect(target: &KubeTarget) -> Result<Self, ConfigError> {
        let connector = connector(target.ca_file.as_deref())?;
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            api: target.api.clone(),
            token_file: target.token_file.clone(),
            client,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, hyper::body::Incoming), String> {
        let url = format!("{}{path}", self.api);
        let mut request = Request::builder()
            .method(method)
            .uri(url)
            .header("accept", "application/json");
        if let Some(file) = &self.token_file {
            // Re-read each time: projected service-account tokens rotate.
            let token = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            request = request.header("authorization", format!("Bearer {}", token.trim()));
        }
        let body = match body {
            Some(v) => {
                request = request.header("content-type", "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let request = request.body(body).map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("the Kubernetes API is unreachable: {e}"))?;
        Ok((response.status(), response.into_body()))
    }

    async fn get_json(&self, path: &str) -> Result<Value, String> {
        let (status, body) = self.call(Method::GET, path, None).await?;
        let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        if status != StatusCode::OK {
            return Err(format!(
                "GET {path}: {status}: {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("GET {path}: {e}"))
    }
}

/// `ROUTES_CONFIGMAP=<namespace>/<name>`: which ConfigMap holds the
/// routing state, and the API server it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapTarget {
    api: KubeTarget,
    namespace: String,
    name: String,
}

impl ConfigMapTarget {
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let Some(target) = env.string("ROUTES_CONFIGMAP") else {
            return Ok(None);
        };
        let (namespace, name) = target
            .split_once('/')
            .filter(|(ns, n)| !ns.is_empty() && !n.is_empty())
            .ok_or_else(|| ConfigError::new("ROUTES_CONFIGMAP", "expected <namespace>/<name>"))?;
        Ok(Some(Self {
            api: KubeTarget::from_env(env, "ROUTES_CONFIGMAP")?,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }))
    }
}

#[derive(Debug, Clone)]
pub struct ConfigMapSource {
    api: KubeApi,
    namespace: String,
    name: String,
}

impl ConfigMapSource {
    pub fn connect(target: &ConfigMapTarget) -> Result<Self, ConfigError> {
        Ok(Self {
            api: KubeApi::connect(&target.api)?,
            namespace: target.namespace.clone(),
            name: target.name.clone(),
        })
    }

    pub fn describe(&self) -> String {
        format!("ConfigMap {}/{} (key {KEY})", self.namespace, self.name)
    }

    fn path(&self) -> String {
        format!(
            "/api/v1/namespaces/{}/configmaps/{}",
            self.namespace, self.name
        )
    }

    /// The ConfigMap object and its routing document.
    async fn get(&self) -> Result<(Value, RoutingConfig), String> {
        let (status, body) = self.api.call(Method::GET, &self.path(), None).await?;
        let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        if status != StatusCode::OK {
            return Err(format!(
                "{}: the API answered {status}: {}",
                self.describe(),
                String::from_utf8_lossy(&bytes)
            ));
        }
        let object: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", self.describe()))?;
        let config = parse(&object).map_err(|e| format!("{}: {e}", self.describe()))?;
        Ok((object, config))
    }

    pub async fn load(&self) -> Result<RoutingConfig, String> {
        self.get().await.map(|(_, config)| config)
    }

    /// Follows the ConfigMap: each change is applied, or refused when invalid.
    pub async fn watch(&self, routing: Routing, metrics: GatewayMetrics) {
        loop {
            if let Err(error) = self.watch_once(&routing, &metrics).await {
                tracing::warn!(%error, "routing watch interrupted; resuming");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn watch_once(&self, routing: &Routing, metrics: &GatewayMetrics) -> Result<(), String> {
        // Start from a fresh read, so a change made while not watching is not missed.
        let (object, config) = self.get().await?;
        routing.apply(metrics, Ok(config), "routing ConfigMap");
        let version = object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let url = format!(
            "/api/v1/namespaces/{}/configmaps?watch=true&fieldSelector=metadata.name%3D{}&resourceVersion={version}",
            self.namespace, self.name
        );
        let (status, mut body) = self.api.call(Method::GET, &url, None).await?;
        if status != StatusCode::OK {
            return Err(format!("watching {} failed: {status}", self.describe()));
        }
        let mut buffer = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| e.to_string())?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buffer.extend_from_slice(&data);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buffer.drain(..=end).collect();
                let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                match event["type"].as_str() {
                    Some("ADDED" | "MODIFIED") => {
                        routing.apply(metrics, parse(&event["object"]), "routing ConfigMap")
                    }
                    Some("DELETED") => {
                        metrics.reload_failures.inc();
                        tracing::error!(
                            "{} was deleted; the last good routing keeps serving",
                            self.describe()
                        );
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Read, change, write with the version read; on a conflict (another
    /// replica wrote first) read again and redo the change.
    pub async fn update(
        &self,
        routing: &Routing,
        metrics: &GatewayMetrics,
        mut change: impl FnMut(&mut RoutingConfig) -> Result<Option<Change>, String>,
    ) -> Result<(RoutingConfig, Option<Change>), String> {
        for _ in 0..5 {
            let (mut object, mut config) = self.get().await?;
            let mut record = change(&mut config)?;
            config.validate()?;
            if let Some(record) = record.as_mut() {
                config.bump(record);
            }
            object["data"][KEY] = Value::String(config.to_json());
            let (status, body) = self
                .api
                .call(Method::PUT, &self.path(), Some(object))
                .await?;
            match status {
                StatusCode::OK | StatusCode::CREATED => {
                    if routing.publish_written(config.clone()) {
                        metrics.observe_routing(&config);
                    }
                    return Ok((config, record));
                }
                StatusCode::CONFLICT => continue,
                other => {
                    let bytes = body
                        .collect()
                        .await
                        .map(|c| c.to_bytes())
                        .unwrap_or_default();
                    return Err(format!(
                        "cannot update {}: {other}: {}",
                        self.describe(),
                        String::from_utf8_lossy(&bytes)
                    ));
                }
            }
        }
        Err(format!(
            "cannot update {}: it kept changing under us; retry",
            self.describe()
        ))
    }
}

fn parse(object: &Value) -> Result<RoutingConfig, String> {
    let text = object["data"][KEY]
        .as_str()
        .ok_or_else(|| format!("the ConfigMap has no data key {KEY:?}"))?;
    RoutingConfig::parse(text)
}

/// HTTPS with the cluster's CA (or plain HTTP for a local API server).
fn connector(
    ca_file: Option<&std::path::Path>,
) -> Result<HttpsConnector<HttpConnector>, ConfigError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(file) = ca_file {
        for cert in CertificateDer::pem_file_iter(file).map_err(|e| {
            ConfigError::new(
                "KUBE_CA_FILE",
                format!("cannot read {}: {e}", file.display()),
            )
        })? {
            let cert = cert.map_err(|e| {
                ConfigError::new("KUBE_CA_FILE", format!("{}: {e}", file.display()))
            })?;
            roots.add(cert).map_err(|e| {
                ConfigError::new("KUBE_CA_FILE", format!("{}: {e}", file.display()))
            })?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ConfigError::new("KUBE_CA_FILE", e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build())
}

/// Pods as endpoints: every `k8s:<service>:<port>` entry of the routing
/// becomes the ready addresses of that Service's EndpointSlices, polled every
/// `every`, so a scaled-up or replaced pod gets traffic within seconds and
/// each pod is balanced per request (no connection pins a Service).
/// `DISCOVERY_NAMESPACE` (default: the service account's namespace): where
/// the Services behind `k8s:` endpoints are, and the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryTarget {
    api: KubeTarget,
    namespace: String,
}

impl DiscoveryTarget {
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let namespace = env.string("DISCOVERY_NAMESPACE").or_else(|| {
            std::fs::read_to_string(PathBuf::from(SERVICE_ACCOUNT).join("namespace"))
                .ok()
                .map(|n| n.trim().to_owned())
        });
        let Some(namespace) = namespace else {
            return Ok(None);
        };
        Ok(Some(Self {
            api: KubeTarget::from_env(env, "DISCOVERY_NAMESPACE")?,
            namespace,
        }))
    }
}

#[derive(Debug, Clone)]
pub struct EndpointDiscovery {
    api: KubeApi,
    namespace: String,
}

impl EndpointDiscovery {
    pub fn connect(target: &DiscoveryTarget) -> Result<Self, ConfigError> {
        Ok(Self {
            api: KubeApi::connect(&target.api)?,
            namespace: target.namespace.clone(),
        })
    }

    /// The ready addresses behind `service` (`ip:port`; the slice's port, else `port`).
    async fn ready(&self, service: &str, port: &str) -> Result<Vec<String>, String> {
        let list = self
            .api
            .get_json(&format!(
                "/apis/discovery.k8s.io/v1/namespaces/{}/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3D{service}",
                self.namespace
            ))
            .await?;
        let mut addresses = Vec::new();
        for slice in list["items"].as_array().into_iter().flatten() {
            let slice_port = slice["ports"][0]["port"].as_u64().map(|p| p.to_string());
            let port = slice_port.as_deref().unwrap_or(port);
            for endpoint in slice["endpoints"].as_array().into_iter().flatten() {
                if endpoint["conditions"]["ready"].as_bool() == Some(false) {
                    continue;
                }
                for address in endpoint["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    let host = if address.contains(':') {
                        format!("[{address}]")
                    } else {
                        address.to_owned()
                    };
                    addresses.push(format!("{host}:{port}"));
                }
            }
        }
        addresses.sort();
        Ok(addresses)
    }

    pub async fn run(&self, routing: Routing, every: Duration) {
        let mut known: Option<crate::routing::Discovered> = None;
        loop {
            let mut found = crate::routing::Discovered::new();
            for target in crate::routing::discovery_targets(&routing.snapshot().config) {
                let Some((service, port)) = target.rsplit_once(':') else {
                    continue;
                };
                match self.ready(service, port).await {
                    Ok(addresses) => {
                        found.insert(target, addresses);
                    }
                    Err(error) => {
                        tracing::warn!(%error, service, "endpoint discovery failed; keeping the last addresses");
                        if let Some(previous) = known.as_ref().and_then(|k| k.get(&target)) {
                            found.insert(target, previous.clone());
                        }
                    }
                }
            }
            if known.as_ref() != Some(&found) {
                let endpoints = serde_json::to_string(&found).unwrap_or_default();
                tracing::info!(endpoints, "discovered endpoints changed");
                routing.set_discovered(found.clone());
                known = Some(found);
            }
            tokio::time::sleep(every).await;
        }
    }
}
