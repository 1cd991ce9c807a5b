//! Payments over a real socket, on every storage backend.

use platform_proto::payments::v1::{
    ChargeRequest, GetPaymentRequest, ListPaymentsRequest, PaymentStatus, RefundRequest,
    payment_service_client::PaymentServiceClient,
};
use testkit::{Platform, authed, backends, channel};
use tonic::Code;

fn charge(order: &str, user: &str, amount: i64, method: &str, key: &str) -> ChargeRequest {
    ChargeRequest {
        order_id: order.into(),
        user_id: user.into(),
        amount_minor: amount,
        currency: "EUR".into(),
        payment_method: method.into(),
        idempotency_key: key.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_retries_charge_once() {
    for backend in backends() {
        let platform = Platform::start(&backend).await;
        let token = platform.orders_token().await;
        let client = PaymentServiceClient::new(channel(platform.payments.addr));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (mut client, token) = (client.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                client
                    .charge(authed(
                        charge("ord_1", "usr_1", 1999, "pm_card_visa", "ord_1"),
                        &token,
                    ))
                    .await
                    .map(|r| r.into_inner())
            }));
        }
        let mut ids = Vec::new();
        for task in tasks {
            let payment = task.await.expect("join").expect("charge");
            assert_eq!(payment.status, i32::from(PaymentStatus::Approved));
            ids.push(payment.id);
        }
        ids.dedup();
        assert_eq!(
            ids.len(),
            1,
            "{}: one payment for one key, got {ids:?}",
            backend.name()
        );
        let listed = client
            .clone()
            .list_payments(authed(
                ListPaymentsRequest {
                    order_id: "ord_1".into(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .expect("list")
            .into_inner();
        assert_eq!(listed.payments.len(), 1);

        // The same key for a different charge is refused, not silently reused.
        let reused = client
            .clone()
            .charge(authed(
                charge("ord_2", "usr_1", 5, "pm_card_visa", "ord_1"),
                &token,
            ))
            .await
            .expect_err("key reuse");
        assert_eq!(reused.code(), Code::FailedPrecondition);
        platform.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_refuse_a_different_request() {
    for backend in backends() {
        let platform = Platform::start(&backend).await;
        let token = platform.orders_token().await;
        let mut client = PaymentServiceClient::new(channel(platform.payments.addr));
        let paid = client
            .charge(authed(
                charge("ord_5", "usr_5", 1000, "pm_card_visa", "k5"),
                &token,
            ))
            .await
            .expect("charge")
            .into_inner();
        let retry = client
            .charge(authed(
                charge("ord_5", "usr_5", 1000, "pm_card_visa", "k5"),
                &token,
            ))
            .await
            .expect("retry")
            .into_inner();
        assert_eq!(retry.id, paid.id, "{}", backend.name());
        let other_card = client
            .charge(authed(
                charge("ord_5", "usr_5", 1000, "pm_card_amex", "k5"),
                &token,
            ))
            .await
            .expect_err("same key, another payment method");
        assert_eq!(
            (other_card.code(), other_card.message()),
            (
                Code::FailedPrecondition,
                r#"idempotency_key "k5" was already used for a different charge; use a new idempotency_key"#
            ),
            "{}",
            backend.name()
        );

        let refund = |amount: i64, reason: &str| {
            authed(
                RefundRequest {
                    payment_id: paid.id.clone(),
                    amount_minor: amount,
                    idempotency_key: "rk5".into(),
                    reason: reason.into(),
                },
                &token,
            )
        };
        let first = client
            .refund(refund(300, "damaged"))
            .await
            .expect("refund")
            .into_inner();
        let again = client
            .refund(refund(300, "damaged"))
            .await
            .expect("replay")
            .into_inner();
        assert_eq!(again.id, first.id, "{}", backend.name());
        for (what, request) in [
            ("amount", refund(500, "damaged")),
            ("the rest", refund(0, "damaged")),
            ("reason", refund(300, "late")),
        ] {
            let refused = client.refund(request).await.expect_err(what);
            assert_eq!(
                (refused.code(), refused.message()),
                (
                    Code::FailedPrecondition,
                    r#"idempotency_key "rk5" was already used for a different refund; use a new idempotency_key"#
                ),
                "{}: {what}",
                backend.name()
            );
        }
        let after = client
            .get_payment(authed(
                GetPaymentRequest {
                    payment_id: paid.id.clone(),
                },
                &token,
            ))
            .await
            .expect("get")
            .into_inner();
        assert_eq!(after.refunded_minor, 300, "{}", backend.name());
        platform.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refunds_never_exceed_the_charge() {
    for backend in backends() {
        let platform = Platform::start(&backend).await;
        let token = platform.orders_token().await;
        let mut client = PaymentServiceClient::new(channel(platform.payments.addr));
        let paid = client
            .charge(authed(
                charge("ord_9", "usr_9", 1000, "pm_card_visa", "k9"),
                &token,
            ))
            .await
            .expect("charge")
            .into_inner();
        let refund = |amount: i64, key: &str| {
            authed(
                RefundRequest {
                    payment_id: paid.id.clone(),
                    amount_minor: amount,
                    idempotency_key: key.into(),
                    reason: "test".into(),
                },
                &token,
            )
        };
        let first = client
            .refund(refund(300, "r1"))
            .await
            .expect("partial")
            .into_inner();
        assert_eq!(first.amount_minor, 300);
        let again = client
            .refund(refund(300, "r1"))
            .await
            .expect("replay")
            .into_inner();
        assert_eq!(
            again.id,
            first.id,
            "{}: a replayed refund is the same refund",
            backend.name()
        );
        let too_much = client
            .refund(refund(701, "r2"))
            .await
            .expect_err("over refund");
        assert_eq!(too_much.code(), Code::FailedPrecondition);
        assert!(
            too_much.message().contains("only 700 of 1000 EUR is left"),
            "{}",
            too_much.message()
        );

        // Concurrent full refunds: exactly one succeeds.
        let mut tasks = Vec::new();
        for i in 0..8 {
            let mut client = client.clone();
            let request = refund(0, &format!("rest-{i}"));
            tasks.push(tokio::spawn(async move { client.refund(request).await }));
        }
        let mut ok = 0;
        for task in tasks {
            match task.await.expect("join") {
                Ok(r) => {
                    assert_eq!(r.into_inner().amount_minor, 700);
                    ok += 1;
                }
                Err(status) => assert_eq!(status.code(), Code::FailedPrecondition),
            }
        }
        assert_eq!(ok, 1, "{}", backend.name());
        let after = client
            .get_payment(authed(
                GetPaymentRequest {
                    payment_id: paid.id.clone(),
                },
                &token,
            ))
            .await
            .expect("get")
            .into_inner();
        assert_eq!(
            (after.refunded_minor, after.status),
            (1000, i32::from(PaymentStatus::Refunded))
        );

        let declined = client
            .charge(authed(
                charge("ord_8", "usr_9", 1000, "pm_card_chargeDeclined", "k8"),
                &token,
            ))
            .await
            .expect("charge")
            .into_inner();
        assert_eq!(
            (declined.status, declined.decline_reason.as_str()),
            (i32::from(PaymentStatus::Declined), "card_declined")
        );
        let nothing = client
            .refund(authed(
                RefundRequest {
                    payment_id: declined.id,
                    idempotency_key: "r8".into(),
                    ..Default::default()
                },
                &token,
            ))
            .await
            .expect_err("refund of a decline");
        assert_eq!(nothing.code(), Code::FailedPrecondition);
        platform.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_see_only_their_payments_and_cannot_charge() {
    let backend = &backends()[0];
    let platform = Platform::start(backend).await;
    let (alice, alice_token) = platform.user("alice@example.com").await;
    let (_, bob_token) = platform.user("bob@example.com").await;
    let service = platform.orders_token().await;
    let mut client = PaymentServiceClient::new(channel(platform.payments.addr));

    let denied = client
        .charge(authed(
            charge("ord_x", &alice, 100, "pm_card_visa", "kx"),
            &alice_token,
        ))
        .await
        .expect_err("users cannot charge");
    assert_eq!(denied.code(), Code::PermissionDenied);
    let anonymous = client
        .charge(tonic::Request::new(charge(
            "ord_x",
            &alice,
            100,
            "pm_card_visa",
            "kx",
        )))
        .await
        .expect_err("no token");
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let invalid = client
        .charge(authed(
            charge("ord_x", &alice, -5, "pm_card_visa", "kx"),
            &service,
        ))
        .await
        .expect_err("negative amount");
    assert_eq!(invalid.code(), Code::InvalidArgument);

    let payment = client
        .charge(authed(
            charge("ord_x", &alice, 100, "pm_card_visa", "kx"),
            &service,
        ))
        .await
        .expect("charge")
        .into_inner();
    let own = client
        .get_payment(authed(
            GetPaymentRequest {
                payment_id: payment.id.clone(),
            },
            &alice_token,
        ))
        .await
        .expect("owner sees it")
        .into_inner();
    assert_eq!(own.amount_minor, 100);
    let other = client
        .get_payment(authed(
            GetPaymentRequest {
                payment_id: payment.id.clone(),
            },
            &bob_token,
        ))
        .await
        .expect_err("another user's payment");
    assert_eq!(other.code(), Code::NotFound);
    let bobs = client
        .list_payments(authed(
            ListPaymentsRequest {
                order_id: "ord_x".into(),
                ..Default::default()
            },
            &bob_token,
        ))
        .await
        .expect("list")
        .into_inner();
    assert!(bobs.payments.is_empty());
    platform.stop().await;
}
