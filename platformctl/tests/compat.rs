//! N-1: the previous release of releases.toml, built from its recorded
//! commit (`platformctl releases build`, which scripts/test.sh runs before
//! the tests), runs the blue services; this release runs the green ones, on
//! one schema this release migrated, behind this release's gateway. Real
//! traffic goes to both colors, REST through the gateway and gRPC to each
//! color: sign-up, orders from old clients (no new field) and new ones,
//! lists, cancels and live streams; and the way back that a rollback needs:
//! orders written by this release are read and updated by the previous one,
//! which keeps what it does not know; and this release's contract step,
//! refused while the previous release runs, applied under traffic once
//! both colors run this one. On SQLite and on PostgreSQL.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{addr, http, port, split};
use platform_proto::notifications::v1::{
    StreamNotificationsRequest, notification_service_client::NotificationServiceClient,
};
use platform_proto::orders::v1::{
    CreateOrderRequest, ListOrdersRequest, OrderItem, OrderStatus,
    order_service_client::OrderServiceClient,
};
use serde_json::Value;
use testkit::{Backend, authed, backends, channel};

const SQLITE: i32 = 13_375;
const POSTGRES: i32 = 12_575;

struct Client {
    gateway: std::net::SocketAddr,
    bearer: String,
    token: String,
    preview: String,
}

/// `platformctl up` at `offset` with `args`; on PostgreSQL each service
/// gets a fresh database that both colors share. The orders database's URL.
async fn start(
    backend: &Backend,
    data: &Path,
    scratch: &Path,
    offset: i32,
    mut args: Vec<String>,
) -> (common::Up, String) {
    let mut orders_db = format!("sqlite:{}", data.join("orders").join("orders.db").display());
    if let Backend::Postgres(_) = backend {
        for service in ["auth", "orders", "payments", "notifications"] {
            let url = testkit::database(backend, scratch, service).await;
            for color in ["--blue-env", "--green-env"] {
                args.push(color.to_owned());
                args.push(format!("{service}:DATABASE_URL={url}"));
            }
            if service == "orders" {
                orders_db = url;
            }
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (common::up_with(data, offset, &[], &args), orders_db)
}

impl Client {
    /// Cancels `order` through `color`, which must answer it CANCELLED.
    async fn cancel(&self, color: &str, order: &str, backend: &str) {
        let path = format!("/v1/orders/{order}:cancel");
        let (status, cancelled) = self.rest(color, "POST", &path, "{}").await;
        assert_eq!(
            (status, cancelled["status"].as_str()),
            (200, Some("ORDER_STATUS_CANCELLED")),
            "{backend}: {color}: {cancelled}"
        );
    }

    /// A new user of the platform at `offset`, signed up through the
    /// gateway, with the preview credential that forces a color.
    async fn sign_up(data: &Path, offset: i32, email: &str) -> Self {
        let gateway = addr(offset, 8080);
        let bearer = common::bearer(gateway, email).await;
        Client {
            gateway,
            token: bearer.trim_start_matches("Bearer ").to_owned(),
            bearer,
            preview: std::fs::read_to_string(data.join("preview-token"))
                .expect("preview token")
                .trim()
                .to_owned(),
        }
    }

    /// A REST call pinned to `color` (a preview: `x-color` with its token).
    async fn rest(&self, color: &str, method: &str, path: &str, body: &str) -> (u16, Value) {
        let headers = [
            ("authorization", self.bearer.as_str()),
            ("x-color", color),
            ("x-color-token", self.preview.as_str()),
            ("content-type", "application/json"),
        ];
        let reply = http(self.gateway, method, path, &headers, body).await;
        let (status, body) = split(&reply);
        (
            status,
            serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
        )
    }
}

fn item(sku: &str, quantity: i32, client_price: i64) -> OrderItem {
    OrderItem {
        sku: sku.into(),
        quantity,
        unit_price_minor: client_price,
    }
}

async fn connect(database: &str) -> sqlx::AnyConnection {
    sqlx::any::install_default_drivers();
    <sqlx::AnyConnection as sqlx::Connection>::connect(database)
        .await
        .expect("connect")
}

/// The stored payment token of an order (None: not set).
async fn payment_token(database: &str, order: &str) -> Option<String> {
    let mut conn = connect(database).await;
    let (token,): (Option<String>,) =
        sqlx::query_as("SELECT payment_token FROM orders WHERE id = $1")
            .bind(order)
            .fetch_one(&mut conn)
            .await
            .expect("order row");
    let _ = sqlx::Connection::close(conn).await;
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_release_and_this_one_share_the_schema_both_ways() {
    let Some((previous, binary)) = common::previous_release() else {
        return;
    };
    for backend in backends() {
        let offset = match backend {
            Backend::Sqlite => SQLITE,
            Backend::Postgres(_) => POSTGRES,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        both_releases(&backend, &previous, &binary, &data, offset, dir.path()).await;
    }
}

async fn both_releases(
    backend: &Backend,
    previous: &str,
    binary: &Path,
    data: &Path,
    offset: i32,
    scratch: &Path,
) {
    let name = backend.name();
    let blue = vec!["--blue-bin".to_owned(), binary.display().to_string()];
    let (_platform, orders_db) = start(backend, data, scratch, offset, blue).await;

    // Each color runs the release it should, and says so.
    let status = Command::new(env!("CARGO_BIN_EXE_platformctl"))
        .args(["status", "--data-dir"])
        .arg(data)
        .arg(format!(
            "--admin-url=http://127.0.0.1:{}",
            port(offset, 9901)
        ))
        .output()
        .expect("status");
    let table = String::from_utf8_lossy(&status.stdout).into_owned();
    let orders_rows: Vec<&str> = table
        .lines()
        .skip_while(|l| !l.starts_with("orders"))
        .take(2)
        .collect();
    assert!(
        orders_rows[0].contains(&format!(" {previous} ")),
        "{name}: {table}"
    );
    assert!(
        orders_rows[1].contains(&format!(" {} ", env!("CARGO_PKG_VERSION"))),
        "{name}: {table}"
    );

    let client = Client::sign_up(data, offset, "n-1@example.com").await;

    // REST through the gateway, to each color: an old client (the price it
    // sends, no expected total), a new client (the expected total), a list
    // and a cancel of an order the other color wrote.
    let old_body = r#"{"items":[{"sku":"book-1","quantity":2,"unitPriceMinor":1250}],"currency":"EUR","paymentMethod":"pm_card_visa"}"#;
    let new_body = r#"{"items":[{"sku":"book-1","quantity":2,"unitPriceMinor":1250}],"currency":"EUR","paymentMethod":"pm_card_visa","expectedTotalMinor":"2500"}"#;
    let mut written = Vec::new();
    for color in ["blue", "green"] {
        for (client_kind, body) in [("old", old_body), ("new", new_body)] {
            let (status, order) = client.rest(color, "POST", "/v1/orders", body).await;
            assert_eq!(
                status, 200,
                "{name}: {client_kind} client to {color}: {order}"
            );
            assert_eq!(
                (order["status"].as_str(), order["totalMinor"].as_str()),
                (Some("ORDER_STATUS_PAID"), Some("2500")),
                "{name}: {client_kind} client to {color}"
            );
            written.push((color, order["id"].as_str().expect("id").to_owned()));
        }
    }
    // A client that names its own price is charged the catalog's by this
    // release (0.1.0 trusted it; 0.2.0 already did not).
    let cheat = r#"{"items":[{"sku":"book-1","quantity":2,"unitPriceMinor":1}],"currency":"EUR","paymentMethod":"pm_card_visa"}"#;
    let (status, priced) = client.rest("green", "POST", "/v1/orders", cheat).await;
    assert_eq!(
        (status, priced["totalMinor"].as_str()),
        (200, Some("2500")),
        "{name}: {priced}"
    );
    for color in ["blue", "green"] {
        let (status, list) = client
            .rest(color, "GET", "/v1/orders?pageSize=100", "")
            .await;
        assert_eq!(status, 200, "{name}: list on {color}: {list}");
        let ids: Vec<&str> = list["orders"]
            .as_array()
            .expect("orders")
            .iter()
            .filter_map(|o| o["id"].as_str())
            .collect();
        for (_, id) in &written {
            assert!(ids.contains(&id.as_str()), "{name}: {color} lists {id}");
        }
    }

    // The way back: an order this release wrote, read and cancelled by the
    // previous one, keeps what only this release writes.
    let by_green = written[2].1.clone();
    assert_eq!(
        payment_token(&orders_db, &by_green).await.as_deref(),
        Some("pm_card_visa"),
        "{name}"
    );
    let (status, seen) = client
        .rest("blue", "GET", &format!("/v1/orders/{by_green}"), "")
        .await;
    assert_eq!(status, 200, "{name}: {seen}");
    assert_eq!(seen["totalMinor"], "2500", "{name}");
    assert_eq!(seen["items"][0]["unitPriceMinor"], "1250", "{name}");
    client.cancel("blue", &by_green, name).await;
    assert_eq!(
        payment_token(&orders_db, &by_green).await.as_deref(),
        Some("pm_card_visa"),
        "{name}: the previous release's update kept the new column"
    );
    // And forward: an order of the previous release, cancelled by this one.
    let by_blue = written[0].1.clone();
    client.cancel("green", &by_blue, name).await;

    // A price change through the CLI reaches this release's next order.
    let set = Command::new(env!("CARGO_BIN_EXE_platformctl"))
        .args([
            "catalog",
            "set",
            "lamp-5",
            "--currency",
            "EUR",
            "--price",
            "2100",
        ])
        .arg(format!("--database-url={orders_db}"))
        .output()
        .expect("catalog set");
    assert!(
        set.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&set.stderr)
    );
    let lamp = r#"{"items":[{"sku":"lamp-5","quantity":1,"unitPriceMinor":1999}],"currency":"EUR","paymentMethod":"pm_card_visa"}"#;
    let (status, repriced) = client.rest("green", "POST", "/v1/orders", lamp).await;
    assert_eq!(
        (status, repriced["totalMinor"].as_str()),
        (200, Some("2100")),
        "{name}: {repriced}"
    );

    // gRPC to each color directly, with a live stream of notifications open
    // on each color's notifications service.
    for (color, orders_port, notifications_port) in
        [("blue", 50052, 50054), ("green", 50152, 50154)]
    {
        let mut stream = NotificationServiceClient::new(channel(addr(offset, notifications_port)))
            .stream_notifications(authed(StreamNotificationsRequest::default(), &client.token))
            .await
            .unwrap_or_else(|e| panic!("{name}: stream on {color}: {e}"))
            .into_inner();
        let mut orders = OrderServiceClient::new(channel(addr(offset, orders_port)));
        for expected_total_minor in [0, 700] {
            let order = orders
                .create_order(authed(
                    CreateOrderRequest {
                        items: vec![item("mug-3", 1, 700)],
                        currency: "EUR".into(),
                        payment_method: "pm_card_visa".into(),
                        expected_total_minor,
                        ..Default::default()
                    },
                    &client.token,
                ))
                .await
                .unwrap_or_else(|e| panic!("{name}: gRPC create on {color}: {e}"))
                .into_inner();
            assert_eq!(
                (order.status, order.total_minor),
                (i32::from(OrderStatus::Paid), 700),
                "{name}: {color}"
            );
        }
        let listed = orders
            .list_orders(authed(ListOrdersRequest::default(), &client.token))
            .await
            .unwrap_or_else(|e| panic!("{name}: gRPC list on {color}: {e}"))
            .into_inner();
        assert!(!listed.orders.is_empty(), "{name}: {color}");
        let note = tokio::time::timeout(Duration::from_secs(15), stream.message())
            .await
            .unwrap_or_else(|_| panic!("{name}: no notification on {color}'s stream in 15 s"))
            .unwrap_or_else(|e| panic!("{name}: stream on {color}: {e}"))
            .unwrap_or_else(|| panic!("{name}: {color}'s stream ended"));
        assert!(note.kind.starts_with("order."), "{name}: {color}: {note:?}");
    }

    // This release's contract step waits while the previous one runs: the
    // command refuses, names the endpoint and its release, and applies
    // nothing.
    let refused = contract(data, offset, &orders_db);
    assert_eq!(refused.status.code(), Some(4), "{name}: {refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains(&format!(
            "blue 127.0.0.1:{} runs {previous}",
            port(offset, 50052)
        )),
        "{name}: {said}"
    );
    assert!(!applied(&orders_db, CONTRACT).await, "{name}");
}

/// Orders' contract step (migration 4 drops payment_method).
const CONTRACT: i64 = 4;

/// `platformctl migrate orders --contract` against the platform at `offset`.
fn contract(data: &Path, offset: i32, orders_db: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_platformctl"))
        .args(["migrate", "orders", "--contract", "--data-dir"])
        .arg(data)
        .arg(format!(
            "--admin-url=http://127.0.0.1:{}",
            port(offset, 9901)
        ))
        .arg(format!("--database-url={orders_db}"))
        .output()
        .expect("platformctl migrate")
}

/// Whether migration `version` is applied to `database`.
async fn applied(database: &str, version: i64) -> bool {
    let mut conn = connect(database).await;
    let (count,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM schema_migrations WHERE version = $1")
            .bind(version)
            .fetch_one(&mut conn)
            .await
            .expect("schema_migrations");
    let _ = sqlx::Connection::close(conn).await;
    count == 1
}

/// Once both colors run this release, its contract step is applied under
/// traffic to both colors without a failed call (the running processes
/// notice and switch to the new shape), every order keeps its payment
/// method, and the previous release then refuses to start on the database
/// with one line that says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_step_is_applied_live_once_every_endpoint_knows_it() {
    let Some((_, previous)) = common::previous_release() else {
        return;
    };
    for backend in backends() {
        let name = backend.name();
        let offset = match backend {
            Backend::Sqlite => CONTRACT_SQLITE,
            Backend::Postgres(_) => CONTRACT_POSTGRES,
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let (_platform, orders_db) = start(&backend, &data, dir.path(), offset, Vec::new()).await;
        let client =
            std::sync::Arc::new(Client::sign_up(&data, offset, "contract@example.com").await);
        // Orders to both colors, one after the other, until told to stop.
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let traffic = {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let body = r#"{"items":[{"sku":"pen-7","quantity":3}],"currency":"EUR","paymentMethod":"pm_card_visa"}"#;
                for n in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) && n % 2 == 0 {
                        break;
                    }
                    let color = if n % 2 == 0 { "blue" } else { "green" };
                    let (status, order) = client.rest(color, "POST", "/v1/orders", body).await;
                    let id = order["id"].as_str().unwrap_or_default().to_owned();
                    let (read, _) = client
                        .rest(color, "GET", &format!("/v1/orders/{id}"), "")
                        .await;
                    seen.push((status, read, id));
                }
                seen
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let done = contract(&data, offset, &orders_db);
        assert!(done.status.success(), "{name}: {done:?}");
        assert!(applied(&orders_db, CONTRACT).await, "{name}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let seen = traffic.await.expect("traffic");
        let failed: Vec<_> = seen
            .iter()
            .filter(|(c, r, _)| (*c, *r) != (200, 200))
            .collect();
        assert!(
            seen.len() >= 4 && failed.is_empty(),
            "{name}: {} calls, failed: {failed:?}",
            seen.len()
        );
        // Every order, from before and after the step, has its method.
        let mut conn = connect(&orders_db).await;
        let (missing,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM orders WHERE payment_token IS NULL OR payment_token <> 'pm_card_visa'",
        )
        .fetch_one(&mut conn)
        .await
        .expect("count");
        assert_eq!(missing, 0, "{name}");
        let _ = sqlx::Connection::close(conn).await;

        // The previous release refuses the contracted schema, saying why.
        let refused = Command::new(&previous)
            .args(["service", "orders"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", &orders_db)
            .env("SERVICE_CLIENT_SECRET", "unused")
            .env("GRPC_ADDR", "127.0.0.1:0")
            .env("METRICS_ADDR", "127.0.0.1:0")
            .output()
            .expect("previous release runs");
        let said = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success()
                && said.contains(
                    "the database has migration 4 (drop_payment_method), a contract step"
                ),
            "{name}: {said}"
        );
    }
}

const CONTRACT_SQLITE: i32 = 11_025;
const CONTRACT_POSTGRES: i32 = 11_075;
