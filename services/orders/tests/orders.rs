//! The order flow across all four services, over real sockets, on every
//! storage backend.

use std::time::Duration;

use platform_proto::notifications::v1::{
    ListNotificationsRequest, notification_service_client::NotificationServiceClient,
};
use platform_proto::orders::v1::{
    CancelOrderRequest, CreateOrderRequest, GetOrderRequest, ListOrdersRequest, OrderItem,
    OrderStatus, order_service_client::OrderServiceClient,
};
use platform_proto::payments::v1::{
    ListPaymentsRequest, PaymentStatus, payment_service_client::PaymentServiceClient,
};
use testkit::{Platform, authed, backends, channel};
use tonic::Code;

fn order(method: &str, request_id: &str) -> CreateOrderRequest {
    CreateOrderRequest {
        items: vec![
            OrderItem {
                sku: "book-1".into(),
                quantity: 2,
                unit_price_minor: 1250,
            },
            OrderItem {
                sku: "pen-7".into(),
                quantity: 1,
                unit_price_minor: 199,
            },
        ],
        currency: "eur".into(),
        payment_method: method.into(),
        request_id: request_id.into(),
        ..Default::default()
    }
}

async fn notifications_of(platform: &Platform, token: &str, want: usize) -> Vec<String> {
    let mut client = NotificationServiceClient::new(channel(platform.notifications.addr));
    for _ in 0..100 {
        let list = client
            .list_notifications(authed(ListNotificationsRequest::default(), token))
            .await
            .expect("list")
            .into_inner();
        if list.notifications.len() >= want {
            return list.notifications.into_iter().map(|n| n.kind).collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("fewer than {want} notifications after 10 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_is_charged_notified_and_cancelled() {
    for backend in backends() {
        let platform = Platform::start(&backend).await;
        let (alice, token) = platform.user("alice@example.com").await;
        let (_, bob_token) = platform.user("bob@example.com").await;
        let mut orders = OrderServiceClient::new(channel(platform.orders.addr));

        let paid = orders
            .create_order(authed(order("pm_card_visa", ""), &token))
            .await
            .expect("create")
            .into_inner();
        assert_eq!(
            paid.status,
            i32::from(OrderStatus::Paid),
            "{}",
            backend.name()
        );
        assert_eq!(
            (
                paid.total_minor,
                paid.currency.as_str(),
                paid.user_id.as_str()
            ),
            (2699, "EUR", alice.as_str())
        );
        assert!(paid.payment_id.starts_with("pay_"));

        let declined = orders
            .create_order(authed(order("pm_card_chargeDeclined", ""), &token))
            .await
            .expect("create")
            .into_inner();
        assert_eq!(declined.status, i32::from(OrderStatus::PaymentFailed));
        assert_eq!(declined.failure_reason, "card_declined");

        let mut kinds = notifications_of(&platform, &token, 2).await;
        // Delivered in the background: their order is not the orders' order.
        kinds.sort();
        assert_eq!(kinds, ["order.paid", "order.payment_failed"]);

        // Owner only: another user's order does not exist for them.
        let get = |id: &str, t: &str| {
            authed(
                GetOrderRequest {
                    order_id: id.into(),
                },
                t,
            )
        };
        assert_eq!(
            orders
                .get_order(get(&paid.id, &token))
                .await
                .expect("get")
                .into_inner(),
            paid
        );
        let hidden = orders
            .get_order(get(&paid.id, &bob_token))
            .await
            .expect_err("not bob's");
        assert_eq!(hidden.code(), Code::NotFound);
        let bob_cancel = orders
            .cancel_order(authed(
                CancelOrderRequest {
                    order_id: paid.id.clone(),
                },
                &bob_token,
            ))
            .await
            .expect_err("not bob's");
        assert_eq!(bob_cancel.code(), Code::NotFound);

        let cancelled = orders
            .cancel_order(authed(
                CancelOrderRequest {
                    order_id: paid.id.clone(),
                },
                &token,
            ))
            .await
            .expect("cancel")
            .into_inner();
        assert_eq!(cancelled.status, i32::from(OrderStatus::Cancelled));
        let again = orders
            .cancel_order(authed(
                CancelOrderRequest {
                    order_id: paid.id.clone(),
                },
                &token,
            ))
            .await
            .expect("cancel is idempotent")
            .into_inner();
        assert_eq!(again.status, i32::from(OrderStatus::Cancelled));
        let payments = PaymentServiceClient::new(channel(platform.payments.addr))
            .list_payments(authed(
                ListPaymentsRequest {
                    order_id: paid.id.clone(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .expect("payments")
            .into_inner()
            .payments;
        assert_eq!(payments.len(), 1);
        assert_eq!(
            (payments[0].status, payments[0].refunded_minor),
            (i32::from(PaymentStatus::Refunded), 2699)
        );
        assert_eq!(
            notifications_of(&platform, &token, 3).await[0],
            "order.cancelled"
        );
        platform.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_makes_retries_safe() {
    for backend in backends() {
        let platform = Platform::start(&backend).await;
        let (_, token) = platform.user("alice@example.com").await;
        let (_, bob_token) = platform.user("bob@example.com").await;
        let client = OrderServiceClient::new(channel(platform.orders.addr));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (mut client, token) = (client.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                client
                    .create_order(authed(order("pm_card_visa", "req-42"), &token))
                    .await
            }));
        }
        let mut ids = Vec::new();
        for task in tasks {
            let created = task.await.expect("join").expect("create").into_inner();
            assert_eq!(
                created.status,
                i32::from(OrderStatus::Paid),
                "{}",
                backend.name()
            );
            ids.push(created.id);
        }
        ids.dedup();
        assert_eq!(
            ids.len(),
            1,
            "{}: one order per request id, got {ids:?}",
            backend.name()
        );
        // The same request id from another user is another order.
        let bobs = client
            .clone()
            .create_order(authed(order("pm_card_visa", "req-42"), &bob_token))
            .await
            .expect("create")
            .into_inner();
        assert_ne!(bobs.id, ids[0]);
        let listed = client
            .clone()
            .list_orders(authed(ListOrdersRequest::default(), &token))
            .await
            .expect("list")
            .into_inner();
        assert_eq!(listed.orders.len(), 1);
        platform.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_id_reused_for_a_different_order_is_refused() {
    for backend in backends() {
        let platform = Platform::start(&backend).await;
        let (_, token) = platform.user("alice@example.com").await;
        let mut client = OrderServiceClient::new(channel(platform.orders.addr));
        let first = client
            .create_order(authed(order("pm_card_visa", "req-7"), &token))
            .await
            .expect("create")
            .into_inner();

        // A retry: the same body, spelled as loosely as validation allows.
        let retry = client
            .create_order(authed(
                CreateOrderRequest {
                    currency: " EUR ".into(),
                    ..order("pm_card_visa", "req-7")
                },
                &token,
            ))
            .await
            .expect("retry")
            .into_inner();
        assert_eq!(retry.id, first.id, "{}", backend.name());

        let mut cheaper = order("pm_card_visa", "req-7");
        cheaper.items[0].unit_price_minor = 1;
        let mut more = order("pm_card_visa", "req-7");
        more.items[1].quantity = 3;
        for (what, different) in [
            ("price", cheaper),
            ("quantity", more),
            (
                "currency",
                CreateOrderRequest {
                    currency: "USD".into(),
                    ..order("pm_card_visa", "req-7")
                },
            ),
            ("payment method", order("pm_card_amex", "req-7")),
        ] {
            let refused = client
                .create_order(authed(different, &token))
                .await
                .expect_err(what);
            assert_eq!(
                (refused.code(), refused.message()),
                (
                    Code::FailedPrecondition,
                    r#"request_id "req-7" was already used for a different order; use a new request_id"#
                ),
                "{}: {what}",
                backend.name()
            );
        }

        // Orders stored before fingerprints were recorded match any retry.
        let orders_db = platform
            .databases
            .iter()
            .find(|(s, _)| *s == "orders")
            .expect("db")
            .1
            .clone();
        sqlx::any::install_default_drivers();
        let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&orders_db)
            .await
            .expect("connect");
        sqlx::query("UPDATE orders SET request_fingerprint = NULL WHERE id = $1")
            .bind(&first.id)
            .execute(&mut conn)
            .await
            .expect("clear fingerprint");
        let _ = sqlx::Connection::close(conn).await;
        let legacy = client
            .create_order(authed(order("pm_card_amex", "req-7"), &token))
            .await
            .expect("legacy row replays")
            .into_inner();
        assert_eq!(legacy.id, first.id, "{}", backend.name());
        platform.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_through_every_order() {
    let backend = &backends()[0];
    let platform = Platform::start(backend).await;
    let (_, token) = platform.user("alice@example.com").await;
    let mut client = OrderServiceClient::new(channel(platform.orders.addr));
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(
            client
                .create_order(authed(order("pm_card_visa", ""), &token))
                .await
                .expect("create")
                .into_inner()
                .id,
        );
    }
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_orders(authed(
                ListOrdersRequest {
                    page_size: 2,
                    page_token: page_token.clone(),
                },
                &token,
            ))
            .await
            .expect("list")
            .into_inner();
        assert!(page.orders.len() <= 2);
        seen.extend(page.orders.into_iter().map(|o| o.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    created.reverse();
    assert_eq!(seen, created, "newest first, each once");
    let bad = client
        .list_orders(authed(
            ListOrdersRequest {
                page_size: -1,
                page_token: String::new(),
            },
            &token,
        ))
        .await
        .expect_err("negative page size");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let invalid = client
        .create_order(authed(
            CreateOrderRequest {
                currency: "EUR".into(),
                ..order("pm_card_visa", "")
            },
            &token,
        ))
        .await
        .map(|_| ());
    assert!(invalid.is_ok());
    let empty = client
        .create_order(authed(
            CreateOrderRequest {
                items: vec![],
                ..order("pm_card_visa", "")
            },
            &token,
        ))
        .await
        .expect_err("no items");
    assert_eq!(
        (empty.code(), empty.message()),
        (Code::InvalidArgument, "items must not be empty")
    );
    for code in ["ZZZ", "abc"] {
        let unknown = client
            .create_order(authed(
                CreateOrderRequest {
                    currency: code.into(),
                    ..order("pm_card_visa", "")
                },
                &token,
            ))
            .await
            .expect_err("not a currency");
        assert_eq!(
            (unknown.code(), unknown.message()),
            (
                Code::InvalidArgument,
                format!(
                    "currency {:?} is not an ISO 4217 code",
                    code.to_ascii_uppercase()
                )
                .as_str()
            )
        );
    }
    let anonymous = client
        .create_order(order("pm_card_visa", ""))
        .await
        .expect_err("no token");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_downstream_delay_but_never_lose_orders() {
    let backend = &backends()[0];
    let platform = Platform::start(backend).await;
    let (_, token) = platform.user("alice@example.com").await;
    let mut client = OrderServiceClient::new(channel(platform.orders.addr));

    // Notifications down: the order is still paid; the notice waits in the outbox.
    let Platform {
        auth,
        payments,
        notifications,
        orders,
        dir,
        databases,
        ..
    } = platform;
    let notifications_addr = notifications.addr;
    let db = databases
        .iter()
        .find(|(s, _)| *s == "notifications")
        .expect("db")
        .1
        .clone();
    notifications.stop().await;
    let paid = client
        .create_order(authed(order("pm_card_visa", ""), &token))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(
        paid.status,
        i32::from(OrderStatus::Paid),
        "a notification outage never fails an order"
    );
    let second = client
        .create_order(authed(order("pm_card_visa", ""), &token))
        .await
        .expect("create")
        .into_inner();
    assert_eq!(second.status, i32::from(OrderStatus::Paid));
    // Notifications comes back on the same address: the outbox delivers.
    let env = testkit::env(
        dir.path(),
        &db,
        &[
            ("LISTEN_ADDR", notifications_addr.to_string()),
            ("AUTH_ADDR", testkit::url(auth.addr)),
        ],
    );
    let back = testkit::start_service("notifications", env).await;
    let mut list = NotificationServiceClient::new(channel(back.addr));
    let mut kinds = 0;
    for _ in 0..150 {
        kinds = list
            .list_notifications(authed(ListNotificationsRequest::default(), &token))
            .await
            .expect("list")
            .into_inner()
            .notifications
            .len();
        if kinds == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(kinds, 2, "both orders notified once, after the outage");
    for service in [back, orders, payments, auth] {
        service.stop().await;
    }
}
