//! Orders since release 0.2.0: priced from the catalog whatever the client
//! says, refused when the client expected another total, and rows in
//! release 0.1.0's shape read, driven and backfilled, on every backend.

use std::time::Duration;

use orders::catalog::{self, Price};
use platform_proto::orders::v1::{
    CreateOrderRequest, GetOrderRequest, ListCatalogRequest, ListOrdersRequest, OrderItem,
    OrderStatus, order_service_client::OrderServiceClient,
};
use testkit::{Platform, authed, backends, channel};
use tonic::Code;

fn order(sku: &str, quantity: i32, client_price: i64) -> CreateOrderRequest {
    CreateOrderRequest {
        items: vec![OrderItem {
            sku: sku.into(),
            quantity,
            unit_price_minor: client_price,
        }],
        currency: "EUR".into(),
        payment_method: "pm_card_visa".into(),
        ..Default::default()
    }
}

async fn connect(platform: &Platform) -> sqlx::AnyConnection {
    let url = platform
        .databases
        .iter()
        .find(|(s, _)| *s == "orders")
        .expect("orders db")
        .1
        .clone();
    sqlx::any::install_default_drivers();
    <sqlx::AnyConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_priced_from_the_catalog_never_from_the_request() {
    for backend in backends() {
        let name = backend.name();
        let platform = Platform::start(&backend).await;
        let (_, token) = platform.user("shopper@example.com").await;
        let mut client = OrderServiceClient::new(channel(platform.orders.addr));

        let catalog = client
            .list_catalog(authed(
                ListCatalogRequest {
                    currency: "eur".into(),
                },
                &token,
            ))
            .await
            .expect("catalog")
            .into_inner()
            .items;
        let book = catalog
            .iter()
            .find(|i| i.sku == "book-1")
            .expect("book-1 is sold");
        assert_eq!(
            (book.currency.as_str(), book.unit_price_minor),
            ("EUR", 1250)
        );
        assert!(catalog.iter().all(|i| i.currency == "EUR"), "{name}");

        // The client says a book costs one cent: it is charged the
        // catalog's price (OWASP API6), as is a client that sends none.
        for client_price in [1, 0] {
            let paid = client
                .create_order(authed(order("book-1", 2, client_price), &token))
                .await
                .expect("create")
                .into_inner();
            assert_eq!(
                (
                    paid.status,
                    paid.total_minor,
                    paid.items[0].unit_price_minor
                ),
                (i32::from(OrderStatus::Paid), 2500, 1250),
                "{name}: client price {client_price}"
            );
        }

        let unknown = client
            .create_order(authed(order("free-lunch", 1, 1), &token))
            .await
            .expect_err("not sold");
        assert_eq!(unknown.code(), Code::InvalidArgument, "{name}");
        assert!(
            unknown
                .message()
                .starts_with("items[0].sku \"free-lunch\" is not sold in EUR"),
            "{name}: {}",
            unknown.message()
        );

        // A price change reaches new orders only; a client that expected
        // the old total is refused and nothing is charged.
        let mut conn = connect(&platform).await;
        catalog::set(
            &mut conn,
            &Price {
                sku: "book-1".into(),
                currency: "EUR".into(),
                name: "Paperback book".into(),
                unit_price_minor: 1400,
                updated_at_ms: 1,
            },
        )
        .await
        .expect("set price");
        let _ = sqlx::Connection::close(conn).await;
        let before = client
            .list_orders(authed(ListOrdersRequest::default(), &token))
            .await
            .expect("list")
            .into_inner()
            .orders;
        let stale = client
            .create_order(authed(
                CreateOrderRequest {
                    expected_total_minor: 2500,
                    ..order("book-1", 2, 1250)
                },
                &token,
            ))
            .await
            .expect_err("the price changed");
        assert_eq!(
            (stale.code(), stale.message()),
            (
                Code::FailedPrecondition,
                "the catalog prices this order at 28.00 EUR, not the expected_total_minor 25.00 EUR: \
                 prices changed; show the new total and send the order again"
            ),
            "{name}"
        );
        let after = client
            .list_orders(authed(ListOrdersRequest::default(), &token))
            .await
            .expect("list")
            .into_inner()
            .orders;
        assert_eq!(
            after.len(),
            before.len(),
            "{name}: a refused order is not stored"
        );
        let fresh = client
            .create_order(authed(
                CreateOrderRequest {
                    expected_total_minor: 2800,
                    ..order("book-1", 2, 0)
                },
                &token,
            ))
            .await
            .expect("expected total matches")
            .into_inner();
        assert_eq!(fresh.total_minor, 2800, "{name}");
        let old = client
            .get_order(authed(
                GetOrderRequest {
                    order_id: before[0].id.clone(),
                },
                &token,
            ))
            .await
            .expect("get")
            .into_inner();
        assert_eq!(
            old.total_minor, 2500,
            "{name}: placed orders keep their price"
        );
        platform.stop().await;
    }
}

/// Inserts a pending order as release 0.1.0 writes it: the payment method
/// under its old name only, no token.
async fn insert_old_shape(conn: &mut sqlx::AnyConnection, id: &str, user: &str, method: &str) {
    sqlx::query(
        "INSERT INTO orders (id, user_id, request_id, status, total_minor, currency, payment_method, \
         payment_id, failure_reason, created_at_ms, updated_at_ms, request_fingerprint) \
         VALUES ($1, $2, NULL, 'pending', 700, 'EUR', $3, '', '', 1, 1, NULL)",
    )
    .bind(id)
    .bind(user)
    .bind(method)
    .execute(&mut *conn)
    .await
    .expect("insert");
    sqlx::query(
        "INSERT INTO order_items (order_id, line, sku, quantity, unit_price_minor) \
         VALUES ($1, 0, 'mug-3', 1, 700)",
    )
    .bind(id)
    .execute(&mut *conn)
    .await
    .expect("insert item");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_in_the_previous_shape_are_driven_and_backfilled() {
    for backend in backends() {
        let name = backend.name();
        let platform = Platform::start(&backend).await;
        let (user, token) = platform.user("legacy@example.com").await;
        let mut conn = connect(&platform).await;
        // A pending order of 0.1.0 whose process died, plus enough rows for
        // the backfill to take several steps.
        insert_old_shape(
            &mut conn,
            "ord_0legacydeclined",
            &user,
            "pm_card_chargeDeclined",
        )
        .await;
        for n in 0..1_200 {
            sqlx::query(
                "INSERT INTO orders (id, user_id, request_id, status, total_minor, currency, \
                 payment_method, payment_id, failure_reason, created_at_ms, updated_at_ms) \
                 VALUES ($1, 'usr_other', NULL, 'cancelled', 1, 'EUR', $2, '', '', 1, 1)",
            )
            .bind(format!("ord_0bulk{n:05}"))
            .bind(format!("pm_old_{n}"))
            .execute(&mut conn)
            .await
            .expect("bulk insert");
        }
        // The sweeper drives the pending one with the method read from its
        // old column (declined proves it was that one), and the backfill
        // copies every method over.
        let mut client = OrderServiceClient::new(channel(platform.orders.addr));
        let mut settled = None;
        for _ in 0..150 {
            let got = client
                .get_order(authed(
                    GetOrderRequest {
                        order_id: "ord_0legacydeclined".into(),
                    },
                    &token,
                ))
                .await
                .expect("get")
                .into_inner();
            let (missing,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM orders WHERE payment_token IS NULL")
                    .fetch_one(&mut conn)
                    .await
                    .expect("count");
            if got.status != i32::from(OrderStatus::Pending) && missing == 0 {
                settled = Some(got);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let got = settled.unwrap_or_else(|| panic!("{name}: not driven and backfilled in 15 s"));
        assert_eq!(got.status, i32::from(OrderStatus::PaymentFailed), "{name}");
        let (wrong,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM orders WHERE payment_token <> payment_method")
                .fetch_one(&mut conn)
                .await
                .expect("compare");
        assert_eq!(wrong, 0, "{name}: the backfill copies, never invents");
        let _ = sqlx::Connection::close(conn).await;
        platform.stop().await;
    }
}
