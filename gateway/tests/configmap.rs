//! Routing state in a Kubernetes ConfigMap, against a fake API server run by
//! this test: two gateway replicas share it, a change made through one is
//! served by the other within a second, concurrent changes are both kept,
//! an invalid edit is refused, and nothing but that ConfigMap is touched.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{ADMIN_TOKEN, Stack};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

const TOKEN: &str = "fake-service-account-token";
const OBJECT: &str = "/api/v1/namespaces/platform/configmaps/routing";

#[derive(Default)]
struct Store {
    version: u64,
    data: String,
    /// Every request: method and path with query.
    seen: Vec<String>,
    /// EndpointSlices of the Service `orders-blue`.
    slices: Vec<Value>,
}

#[derive(Clone)]
struct FakeApi {
    store: Arc<Mutex<Store>>,
    changed: Arc<tokio::sync::watch::Sender<u64>>,
}

impl FakeApi {
    fn object(store: &Store) -> Value {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "routing", "namespace": "platform", "resourceVersion": store.version.to_string()},
            "data": {"routes.json": store.data}
        })
    }

    /// An edit made around the gateways (kubectl edit).
    fn edit(&self, data: String) {
        let version = {
            let mut store = self.store.lock().expect("lock");
            store.data = data;
            store.version += 1;
            store.version
        };
        let _ = self.changed.send(version);
    }

    async fn handle(
        self,
        request: http::Request<hyper::body::Incoming>,
    ) -> http::Response<http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>> {
        let target = request
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        self.store
            .lock()
            .expect("lock")
            .seen
            .push(format!("{} {target}", request.method()));
        let reply = |status: u16, body: Value| {
            let mut response =
                http::Response::new(Full::new(Bytes::from(body.to_string())).boxed_unsync());
            *response.status_mut() = http::StatusCode::from_u16(status).expect("status");
            response
        };
        let authorized = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some(&format!("Bearer {TOKEN}"));
        if !authorized {
            return reply(401, json!({"kind": "Status", "code": 401}));
        }
        let path = request.uri().path().to_owned();
        let watching = request
            .uri()
            .query()
            .is_some_and(|q| q.contains("watch=true"));
        match (request.method().clone(), path.as_str()) {
            (http::Method::GET, OBJECT) => {
                reply(200, Self::object(&self.store.lock().expect("lock")))
            }
            (http::Method::PUT, OBJECT) => {
                let body = request
                    .into_body()
                    .collect()
                    .await
                    .expect("body")
                    .to_bytes();
                let object: Value = serde_json::from_slice(&body).expect("json");
                let version = {
                    let mut store = self.store.lock().expect("lock");
                    if object["metadata"]["resourceVersion"].as_str()
                        != Some(&store.version.to_string())
                    {
                        return reply(
                            409,
                            json!({"kind": "Status", "reason": "Conflict", "code": 409}),
                        );
                    }
                    store.data = object["data"]["routes.json"]
                        .as_str()
                        .expect("data")
                        .to_owned();
                    store.version += 1;
                    store.version
                };
                let _ = self.changed.send(version);
                reply(200, Self::object(&self.store.lock().expect("lock")))
            }
            (http::Method::GET, "/api/v1/namespaces/platform/configmaps") if watching => {
                assert!(
                    target.contains("fieldSelector=metadata.name%3Drouting"),
                    "{target}"
                );
                let from: u64 = target
                    .split("resourceVersion=")
                    .nth(1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let changes = self.changed.subscribe();
                let store = self.store.clone();
                let events = futures_util::stream::unfold(from, move |mut last| {
                    let store = store.clone();
                    let mut changes = changes.clone();
                    async move {
                        loop {
                            let object = {
                                let s = store.lock().expect("lock");
                                (s.version > last).then(|| (s.version, Self::object(&s)))
                            };
                            if let Some((version, object)) = object {
                                last = version;
                                let line =
                                    format!("{}\n", json!({"type": "MODIFIED", "object": object}));
                                return Some((
                                    Ok::<_, Infallible>(Frame::data(Bytes::from(line))),
                                    last,
                                ));
                            }
                            if changes.changed().await.is_err() {
                                return None;
                            }
                        }
                    }
                });
                http::Response::new(StreamBody::new(events).boxed_unsync())
            }
            (http::Method::GET, "/apis/discovery.k8s.io/v1/namespaces/platform/endpointslices") => {
                assert!(
                    target.contains("labelSelector=kubernetes.io%2Fservice-name%3Dorders-blue"),
                    "{target}"
                );
                reply(
                    200,
                    json!({"kind": "EndpointSliceList", "items": self.store.lock().expect("lock").slices}),
                )
            }
            _ => reply(404, json!({"kind": "Status", "code": 404})),
        }
    }
}

async fn fake_api(data: String) -> (FakeApi, SocketAddr) {
    let api = FakeApi {
        store: Arc::new(Mutex::new(Store {
            version: 1,
            data,
            seen: Vec::new(),
            slices: Vec::new(),
        })),
        changed: Arc::new(tokio::sync::watch::channel(1).0),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = api.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let api = server.clone();
            let service = hyper::service::service_fn(move |request| {
                let api = api.clone();
                async move { Ok::<_, Infallible>(api.handle(request).await) }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (api, addr)
}

async fn replica(
    stack: &Stack,
    api: SocketAddr,
    token_file: &std::path::Path,
) -> gateway::RunningGateway {
    let api = format!("http://{api}");
    let auth = testkit::url(stack.platform.auth.addr);
    common::start_gateway(
        &[
            ("ROUTES_CONFIGMAP", "platform/routing"),
            ("KUBE_API_URL", &api),
            ("KUBE_TOKEN_FILE", token_file.to_str().expect("utf-8")),
            ("AUTH_ADDR", &auth),
        ],
        &[platform_proto::PLATFORM_DESCRIPTOR_SET],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_configmap() {
    let stack = Stack::start().await;
    let token_file = stack.platform.dir.path().join("sa-token");
    std::fs::write(&token_file, TOKEN).expect("token");
    let (api, api_addr) =
        fake_api(std::fs::read_to_string(&stack.routes_file).expect("routes")).await;
    let a = replica(&stack, api_addr, &token_file).await;
    let b = replica(&stack, api_addr, &token_file).await;
    let token = stack.login("cm@example.com").await;
    let bearer = format!("Bearer {token}");
    let mut on_b = common::Client::connect(b.addr).await;
    let served_by = |reply: &common::Reply| reply.header("x-served-by").to_owned();
    assert_eq!(
        served_by(
            &on_b
                .call("GET", "/v1/orders", &[("authorization", &bearer)], "")
                .await
        ),
        "blue"
    );

    // A change through replica A reaches replica B within a second.
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let mut admin_a = common::Client::connect(a.admin_addr).await;
    let set = admin_a
        .call(
            "PUT",
            "/admin/routes/orders/weights",
            &[("authorization", &admin)],
            r#"{"blue":0,"green":100}"#,
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text());
    let changed = Instant::now();
    loop {
        if served_by(
            &on_b
                .call("GET", "/v1/orders", &[("authorization", &bearer)], "")
                .await,
        ) == "green"
        {
            break;
        }
        assert!(
            changed.elapsed() < Duration::from_secs(1),
            "replica B did not see the change within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!(
        "change through replica A served by replica B after {:?}",
        changed.elapsed()
    );

    // Both replicas change weights at once: neither change is lost.
    let mut admin_b = common::Client::connect(b.admin_addr).await;
    let auth = [("authorization", admin.as_str())];
    let (ra, rb) = tokio::join!(
        admin_a.call(
            "PUT",
            "/admin/routes/orders/weights",
            &auth,
            r#"{"blue":50,"green":50}"#
        ),
        admin_b.call(
            "PUT",
            "/admin/routes/payments/weights",
            &auth,
            r#"{"blue":0,"green":100}"#
        ),
    );
    assert_eq!(
        (ra.status, rb.status),
        (200, 200),
        "{} / {}",
        ra.text(),
        rb.text()
    );
    let stored: Value = serde_json::from_str(&api.store.lock().expect("lock").data).expect("json");
    assert_eq!(stored["generation"], 3);
    assert_eq!(
        stored["services"]["orders"]["weights"],
        json!({"blue": 50, "green": 50})
    );
    assert_eq!(
        stored["services"]["payments"]["weights"],
        json!({"blue": 0, "green": 100})
    );

    // An invalid edit around the gateways is refused; the last good state serves.
    api.edit(r#"{"services": {"orders": {"weights": {"blue": 3}}}}"#.into());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = common::Client::connect(b.admin_addr)
        .await
        .call("GET", "/metrics", &[], "")
        .await
        .text();
    assert!(
        metrics.contains("gateway_routing_reload_failures_total 1"),
        "{metrics}"
    );
    let reply = on_b.call("GET", "/admin/routes", &[], "").await;
    assert_eq!(reply.status, 404, "the admin API is not on the public port");
    let mut admin_b = common::Client::connect(b.admin_addr).await;
    let table = admin_b
        .call("GET", "/admin/routes", &[("authorization", &admin)], "")
        .await
        .json();
    assert_eq!(
        table["services"]["orders"]["weights"],
        json!({"blue": 50, "green": 50})
    );

    // Only the one ConfigMap was read, watched and written.
    for request in &api.store.lock().expect("lock").seen {
        assert!(
            request.contains("/api/v1/namespaces/platform/configmaps/routing")
                || request.contains("/api/v1/namespaces/platform/configmaps?watch=true&fieldSelector=metadata.name%3Drouting"),
            "touched something else: {request}"
        );
    }
    a.stop().await;
    b.stop().await;
    stack.stop().await;
}

fn slice(port: u16, ready: bool) -> Value {
    json!({
        "metadata": {"labels": {"kubernetes.io/service-name": "orders-blue"}},
        "ports": [{"port": port}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": ready}}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_come_from_endpoint_slices() {
    use std::sync::atomic::Ordering;
    let stack = Stack::start().await;
    let token_file = stack.platform.dir.path().join("sa-token");
    std::fs::write(&token_file, TOKEN).expect("token");
    // Two "pods" of blue orders, each behind its own address.
    let first = common::Link::start(stack.platform.orders.addr).await;
    let second = common::Link::start(stack.platform.orders.addr).await;
    let (api, api_addr) = fake_api(String::new()).await;
    api.store.lock().expect("lock").slices = vec![
        slice(first.addr.port(), true),
        slice(second.addr.port(), false),
    ];
    let mut routes: Value =
        serde_json::from_str(&std::fs::read_to_string(&stack.routes_file).expect("routes"))
            .expect("json");
    routes["services"]["orders"]["endpoints"]["blue"] = json!(["k8s:orders-blue:50052"]);
    let routes_file = stack.platform.dir.path().join("discovered-routes.json");
    std::fs::write(&routes_file, routes.to_string()).expect("write");
    let api_url = format!("http://{api_addr}");
    let auth = testkit::url(stack.platform.auth.addr);
    let gateway = common::start_gateway(
        &[
            ("ROUTES_FILE", routes_file.to_str().expect("utf-8")),
            ("DISCOVERY_NAMESPACE", "platform"),
            ("KUBE_API_URL", &api_url),
            ("KUBE_TOKEN_FILE", token_file.to_str().expect("utf-8")),
            ("AUTH_ADDR", &auth),
        ],
        &[platform_proto::PLATFORM_DESCRIPTOR_SET],
    )
    .await;
    let token = stack.login("pods@example.com").await;
    let bearer = format!("Bearer {token}");
    let mut client = common::Client::connect(gateway.addr).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    // The ready pod serves; the one not ready gets nothing.
    loop {
        let reply = client
            .call("GET", "/v1/orders", &[("authorization", &bearer)], "")
            .await;
        if reply.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no discovered pod served: {}",
            reply.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(first.accepted.load(Ordering::Relaxed) > 0);
    assert_eq!(
        second.accepted.load(Ordering::Relaxed),
        0,
        "a pod that is not ready gets no traffic"
    );

    // The second pod turns ready: it gets traffic within seconds.
    api.store.lock().expect("lock").slices = vec![
        slice(first.addr.port(), true),
        slice(second.addr.port(), true),
    ];
    let became_ready = Instant::now();
    while second.accepted.load(Ordering::Relaxed) == 0 {
        assert!(
            became_ready.elapsed() < Duration::from_secs(5),
            "the new pod got no traffic within 5 s"
        );
        let reply = client
            .call("GET", "/v1/orders", &[("authorization", &bearer)], "")
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "a pod that turned ready got traffic after {:?}",
        became_ready.elapsed()
    );
    gateway.stop().await;
    first.kill();
    second.kill();
    stack.stop().await;
}
