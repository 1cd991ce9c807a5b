//! Test support: the services started in-process on loopback ports with a
//! throwaway database, for each storage backend the machine offers.
//!
//! SQLite is always tested. PostgreSQL is tested when `TEST_DATABASE_URL`
//! names a server the tests may create databases on; under CI (`CI` set) it
//! is required, so a CI run can never pass without testing it.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod exposition;
pub mod raw;

use std::net::SocketAddr;
use std::path::Path;

use platform_proto::auth::v1::{
    LoginRequest, RegisterRequest, auth_service_client::AuthServiceClient,
};
use platform_runtime::{Env, RunningService, ServiceConfig};
use sqlx::Connection;
use tempfile::TempDir;
use tonic::transport::Channel;

/// A storage backend under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    /// The admin URL of a PostgreSQL server.
    Postgres(String),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// Whether `python3` can import `module` (`package` on PyPI), for checks
/// made with another ecosystem's own library. Under CI it must
/// (scripts/install-tools.sh installs it); elsewhere a missing one skips
/// `what` with a note.
pub fn python_module(module: &str, package: &str, what: &str) -> bool {
    let probe = std::process::Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output();
    probe.is_ok_and(|out| out.status.success()) || missing(package, what)
}

/// Whether `program` runs (as `program probe`, its version flag), for tests
/// that drive a real tool. Under CI it must (scripts/install-tools.sh
/// installs it); elsewhere a missing one skips `what` with a note.
pub fn tool(program: &str, probe: &str, what: &str) -> bool {
    let runs = std::process::Command::new(program)
        .arg(probe)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    runs || missing(program, what)
}

/// A missing `package`: fails under CI, else skips `what` with a note.
fn missing(package: &str, what: &str) -> bool {
    if std::env::var_os("CI").is_some() {
        panic!("{package} is required under CI (scripts/install-tools.sh installs it)");
    }
    eprintln!("note: {package} is not installed; skipping {what}");
    false
}

/// Every backend this run must test.
pub fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Sqlite];
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => all.push(Backend::Postgres(url)),
        _ if std::env::var_os("CI").is_some() => {
            panic!(
                "CI must test PostgreSQL too: set TEST_DATABASE_URL (scripts/test.sh starts a server)"
            )
        }
        _ => eprintln!("note: TEST_DATABASE_URL is not set; testing SQLite only"),
    }
    all
}

/// A fresh, empty database for `service`: a SQLite file in `dir`, or a new
/// PostgreSQL database on the server. Returns the `DATABASE_URL` value.
pub async fn database(backend: &Backend, dir: &Path, service: &str) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite:{}", dir.join(format!("{service}.db")).display()),
        Backend::Postgres(admin) => {
            let name = format!(
                "t_{}_{}",
                service,
                platform_runtime::ids::new_id("db").trim_start_matches("db_")
            );
            sqlx::any::install_default_drivers();
            let mut conn = sqlx::AnyConnection::connect(admin).await.unwrap();
            sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut conn)
                .await
                .unwrap();
            let _ = conn.close().await;
            with_database(admin, &name)
        }
    }
}

/// `admin` with its database name replaced by `name`.
fn with_database(admin: &str, name: &str) -> String {
    let (base, query) = admin.split_once('?').map_or((admin, ""), |(b, q)| (b, q));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| i + scheme_end);
    let mut url = format!("{}/{}", &base[..path_start], name);
    if !query.is_empty() {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// The environment of a service under test: loopback ports chosen by the
/// kernel, no drain delay, quiet logs.
pub fn env(dir: &Path, database_url: &str, extra: &[(&str, String)]) -> Env {
    let mut env = Env::from_pairs([
        ("LISTEN_ADDR", "127.0.0.1:0"),
        ("METRICS_ADDR", "127.0.0.1:0"),
        ("DRAIN_DELAY_MS", "0"),
        ("SHUTDOWN_TIMEOUT_MS", "5000"),
        ("LOG_FORMAT", "text"),
        ("RUST_LOG", "warn"),
    ]);
    env.set("DATA_DIR", dir.display().to_string());
    env.set("DATABASE_URL", database_url);
    for (k, v) in extra {
        env.set(k, v.clone());
    }
    env
}

/// The secret orders uses in tests to get its service token.
pub const ORDERS_SECRET: &str = "test-orders-secret-0123456789";

/// All four services, running in this process.
pub struct Platform {
    pub backend: Backend,
    pub auth: RunningService,
    pub payments: RunningService,
    pub notifications: RunningService,
    pub orders: RunningService,
    pub dir: TempDir,
    /// The `DATABASE_URL` of each service.
    pub databases: Vec<(&'static str, String)>,
}

/// Starts one service with `env`.
pub async fn start_service(service: &'static str, env: Env) -> RunningService {
    let config = ServiceConfig::from_env(service, 0, &env).unwrap();
    let started = match service {
        "auth" => auth::start(config, env).await,
        "payments" => payments::start(config, env).await,
        "notifications" => notifications::start(config, env).await,
        "orders" => orders::start(config, env).await,
        other => panic!("unknown service {other}"),
    };
    started.unwrap_or_else(|e| panic!("{service} did not start: {e}"))
}

pub fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

impl Platform {
    pub async fn start(backend: &Backend) -> Platform {
        Self::start_with(backend, &[]).await
    }

    /// Starts the four services; `orders_env` adds to the orders environment.
    pub async fn start_with(backend: &Backend, orders_env: &[(&str, String)]) -> Platform {
        let dir = tempfile::tempdir().unwrap();
        let mut databases = Vec::new();
        for service in ["auth", "payments", "notifications", "orders"] {
            databases.push((service, database(backend, dir.path(), service).await));
        }
        let db = |s: &str| {
            databases
                .iter()
                .find(|(n, _)| *n == s)
                .map(|(_, u)| u.clone())
                .unwrap()
        };
        let auth = start_service(
            "auth",
            env(
                dir.path(),
                &db("auth"),
                &[("AUTH_SERVICE_CLIENTS", format!("orders={ORDERS_SECRET}"))],
            ),
        )
        .await;
        let auth_addr = ("AUTH_ADDR", url(auth.addr));
        let payments = start_service(
            "payments",
            env(
                dir.path(),
                &db("payments"),
                std::slice::from_ref(&auth_addr),
            ),
        )
        .await;
        let notifications = start_service(
            "notifications",
            env(
                dir.path(),
                &db("notifications"),
                &[auth_addr.clone(), ("STREAM_POLL_MS", "200".into())],
            ),
        )
        .await;
        let mut extra = vec![
            auth_addr,
            ("PAYMENTS_ADDR", url(payments.addr)),
            ("NOTIFICATIONS_ADDR", url(notifications.addr)),
            ("SERVICE_CLIENT_SECRET", ORDERS_SECRET.into()),
            ("SWEEP_INTERVAL_MS", "200".into()),
            ("PENDING_RETRY_AFTER_MS", "500".into()),
        ];
        extra.extend(orders_env.iter().map(|(k, v)| (*k, v.clone())));
        let orders = start_service("orders", env(dir.path(), &db("orders"), &extra)).await;
        Platform {
            backend: backend.clone(),
            auth,
            payments,
            notifications,
            orders,
            dir,
            databases,
        }
    }

    pub async fn stop(self) {
        self.orders.stop().await;
        self.notifications.stop().await;
        self.payments.stop().await;
        self.auth.stop().await;
    }

    /// Registers a new user and returns `(user_id, access_token)`.
    pub async fn user(&self, email: &str) -> (String, String) {
        register_and_login(self.auth.addr, email).await
    }

    /// A valid internal token of the orders service.
    pub async fn orders_token(&self) -> String {
        let mut auth = AuthServiceClient::new(channel(self.auth.addr));
        auth.issue_service_token(platform_proto::auth::v1::IssueServiceTokenRequest {
            client_id: "orders".into(),
            client_secret: ORDERS_SECRET.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_token
    }
}

/// Registers `email` with a fixed good password and logs in.
pub async fn register_and_login(auth_addr: SocketAddr, email: &str) -> (String, String) {
    let mut auth = AuthServiceClient::new(channel(auth_addr));
    let password = "correct horse battery staple".to_owned();
    let user = auth
        .register(RegisterRequest {
            email: email.into(),
            password: password.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    let token = auth
        .login(LoginRequest {
            email: email.into(),
            password,
        })
        .await
        .unwrap()
        .into_inner()
        .access_token;
    (user.id, token)
}

pub fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(url(addr)).unwrap().connect_lazy()
}

/// A request carrying `token` as its bearer token.
pub fn authed<T>(message: T, token: &str) -> tonic::Request<T> {
    platform_runtime::caller::with_bearer(tonic::Request::new(message), token).unwrap()
}

#[cfg(test)]
mod tests {
    #[test]
    fn replaces_the_database_name() {
        assert_eq!(
            super::with_database(
                "postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable",
                "t_x"
            ),
            "postgres://u:p@127.0.0.1:5432/t_x?sslmode=disable"
        );
        assert_eq!(
            super::with_database("postgres://u@h", "t_y"),
            "postgres://u@h/t_y"
        );
    }
}
