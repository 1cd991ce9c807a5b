//! The real services behind a real gateway, in-process on loopback ports,
//! and an HTTP/1.1 client that keeps one connection alive.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use platform_runtime::RunningService;
use testkit::{Backend, Platform};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Starts a gateway on kernel-chosen loopback ports with no drain delay;
/// `extra` adds to (or overrides) its environment.
pub async fn start_gateway(
    extra: &[(&str, &str)],
    descriptor_sets: &[&[u8]],
) -> gateway::RunningGateway {
    let mut env = platform_runtime::Env::from_pairs([
        ("LISTEN_ADDR", "127.0.0.1:0"),
        ("ADMIN_ADDR", "127.0.0.1:0"),
        ("INTERNAL_ADDR", "127.0.0.1:0"),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("DRAIN_DELAY_MS", "0"),
        // Tests send fast from one user; the limits test turns it on.
        ("RATE_LIMIT_PER_SECOND", "0"),
        // Tests preview colors freely; the hostile-traffic test checks the default.
        ("COLOR_OVERRIDE", "anyone"),
    ]);
    for (key, value) in extra {
        env.set(key, *value);
    }
    let config = gateway::config::GatewayConfig::from_env(&env).expect("gateway config");
    gateway::start(config, descriptor_sets)
        .await
        .expect("gateway starts")
}

pub struct Stack {
    pub platform: Platform,
    pub orders_green: RunningService,
    pub gateway: gateway::RunningGateway,
    pub routes_file: PathBuf,
}

impl Stack {
    pub async fn start() -> Stack {
        Self::start_with(&[], &[]).await
    }

    /// `gateway_env` adds to the gateway's environment, `green_env` to
    /// green orders' (for example an injected latency).
    pub async fn start_with(gateway_env: &[(&str, &str)], green_env: &[(&str, String)]) -> Stack {
        let platform = Platform::start(&Backend::Sqlite).await;
        let db = platform
            .databases
            .iter()
            .find(|(s, _)| *s == "orders")
            .expect("db")
            .1
            .clone();
        let orders_green = testkit::start_service(
            "orders",
            testkit::env(
                platform.dir.path(),
                &db,
                &[
                    ("COLOR", "green".into()),
                    ("AUTH_ADDR", testkit::url(platform.auth.addr)),
                    ("PAYMENTS_ADDR", testkit::url(platform.payments.addr)),
                    (
                        "NOTIFICATIONS_ADDR",
                        testkit::url(platform.notifications.addr),
                    ),
                    ("SERVICE_CLIENT_SECRET", testkit::ORDERS_SECRET.into()),
                ]
                .into_iter()
                .chain(green_env.iter().cloned())
                .collect::<Vec<_>>(),
            ),
        )
        .await;
        let one = |s: &RunningService| serde_json::json!({"endpoints": {"blue": [s.addr.to_string()], "green": [s.addr.to_string()]}, "weights": {"blue": 100, "green": 0}});
        let routes = serde_json::json!({
            "services": {
                "auth": one(&platform.auth),
                "payments": one(&platform.payments),
                "notifications": one(&platform.notifications),
                "orders": {
                    "endpoints": {"blue": [platform.orders.addr.to_string()], "green": [orders_green.addr.to_string()]},
                    "weights": {"blue": 100, "green": 0}
                }
            }
        });
        let routes_file = platform.dir.path().join("routes.json");
        std::fs::write(&routes_file, routes.to_string()).expect("routes file");
        let auth = testkit::url(platform.auth.addr);
        let mut env = vec![
            ("ROUTES_WATCH_MS", "50"),
            ("ROUTES_FILE", routes_file.to_str().expect("utf-8")),
            ("AUTH_ADDR", auth.as_str()),
        ];
        env.extend_from_slice(gateway_env);
        let gateway = start_gateway(&env, &[platform_proto::PLATFORM_DESCRIPTOR_SET]).await;
        Stack {
            platform,
            orders_green,
            gateway,
            routes_file,
        }
    }

    pub async fn stop(self) {
        self.gateway.stop().await;
        self.orders_green.stop().await;
        self.platform.stop().await;
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.gateway.addr).await
    }

    pub async fn admin(&self) -> Client {
        Client::connect(self.gateway.admin_addr).await
    }

    /// Registers and logs in through the gateway; returns the bearer token.
    pub async fn login(&self, email: &str) -> String {
        let mut client = self.client().await;
        let credentials = format!(r#"{{"email":"{email}","password":"correct horse battery"}}"#);
        let registered = client
            .call("POST", "/v1/auth/register", &[], &credentials)
            .await;
        assert_eq!(registered.status, 200, "{}", registered.text());
        let login = client
            .call("POST", "/v1/auth/login", &[], &credentials)
            .await;
        assert_eq!(login.status, 200, "{}", login.text());
        login.json()["accessToken"]
            .as_str()
            .expect("token")
            .to_owned()
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// One HTTP/1.1 connection, kept alive across calls.
pub struct Client {
    sender: SendRequest<Full<Bytes>>,
    addr: SocketAddr,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(connection);
        Client { sender, addr }
    }

    pub async fn call(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        let mut request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_owned())))
            .expect("request");
        self.sender.ready().await.expect("connection ready");
        let response = self.sender.send_request(request).await.expect("response");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Reply {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }
}

/// A TCP link in front of an endpoint, standing in for its process: `kill`
/// drops every connection and stops listening at once (what `kill -9` looks
/// like from the network), `revive` listens on the same port again.
pub struct Link {
    pub addr: SocketAddr,
    target: SocketAddr,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    /// Connections accepted since the link was (re)started.
    pub accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Link {
    pub async fn start(target: SocketAddr) -> Link {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let link = Link {
            addr,
            target,
            tasks: Default::default(),
            accepted: Default::default(),
        };
        link.serve(listener);
        link
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (target, tasks, accepted) = (self.target, self.tasks.clone(), self.accepted.clone());
        let acceptor = tokio::spawn({
            let tasks = tasks.clone();
            async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let copy = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    tasks.lock().expect("lock").push(copy.abort_handle());
                }
            }
        });
        tasks.lock().expect("lock").push(acceptor.abort_handle());
    }

    pub fn kill(&self) {
        for task in self.tasks.lock().expect("lock").drain(..) {
            task.abort();
        }
    }

    pub async fn revive(&self) {
        self.accepted.store(0, std::sync::atomic::Ordering::Relaxed);
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("bind the same port again");
        self.serve(listener);
    }
}

/// Clients that keep reading `GET /v1/orders`, each on its own kept-alive
/// connection, until stopped; they count what was sent and what failed.
pub struct SteadyReads {
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sent: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    failed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl SteadyReads {
    pub async fn start(
        stack: &Stack,
        bearer: &str,
        clients: usize,
        pause: std::time::Duration,
    ) -> SteadyReads {
        use std::sync::atomic::Ordering;
        let reads = SteadyReads {
            running: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            sent: Default::default(),
            failed: Default::default(),
            tasks: Vec::new(),
        };
        let mut tasks = Vec::new();
        for _ in 0..clients {
            let mut client = stack.client().await;
            let (running, sent, failed) = (
                reads.running.clone(),
                reads.sent.clone(),
                reads.failed.clone(),
            );
            let bearer = bearer.to_owned();
            tasks.push(tokio::spawn(async move {
                while running.load(Ordering::Relaxed) {
                    let reply = client
                        .call(
                            "GET",
                            "/v1/orders",
                            &[("authorization", bearer.as_str())],
                            "",
                        )
                        .await;
                    sent.fetch_add(1, Ordering::Relaxed);
                    if reply.status != 200 {
                        failed.fetch_add(1, Ordering::Relaxed);
                        eprintln!("failed: {} {}", reply.status, reply.text());
                    }
                    if !pause.is_zero() {
                        tokio::time::sleep(pause).await;
                    }
                }
            }));
        }
        SteadyReads { tasks, ..reads }
    }

    /// Stops the clients; returns how many requests were sent and how many failed.
    pub async fn stop(self) -> (usize, usize) {
        use std::sync::atomic::Ordering;
        self.running.store(false, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("client");
        }
        (
            self.sent.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}
