//! Weighted blue/green routing: flips under a live kept-alive connection,
//! the admin API and its source of truth, and native gRPC through the gateway.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, Stack};

fn admin_auth() -> String {
    format!("Bearer {ADMIN_TOKEN}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flips_apply_to_the_next_request_and_lose_none() {
    let stack = Stack::start().await;
    let token = stack.login("flip@example.com").await;
    let bearer = format!("Bearer {token}");

    // A background client on its own kept-alive connection never stops sending.
    let background = common::SteadyReads::start(&stack, &bearer, 1, Duration::ZERO).await;

    let mut admin = stack.admin().await;
    let mut client = stack.client().await;
    let auth = admin_auth();
    let mut flip_to_first = Vec::new();
    for i in 0..50 {
        let (color, weights) = if i % 2 == 0 {
            ("green", r#"{"blue":0,"green":100}"#)
        } else {
            ("blue", r#"{"blue":100,"green":0}"#)
        };
        let changed = admin
            .call(
                "PUT",
                "/admin/routes/orders/weights",
                &[("authorization", &auth), ("x-operator", "flip-test")],
                weights,
            )
            .await;
        assert_eq!(changed.status, 200, "{}", changed.text());
        let returned = Instant::now();
        let reply = client
            .call(
                "GET",
                "/v1/orders",
                &[("authorization", bearer.as_str())],
                "",
            )
            .await;
        flip_to_first.push(returned.elapsed());
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            reply.header("x-served-by"),
            color,
            "flip {i}: the next request goes to {color}"
        );
    }
    let (sent, failed) = background.stop().await;
    assert!(sent > 50, "the background client kept sending ({sent})");
    assert_eq!(
        failed, 0,
        "{failed} of {sent} requests failed during 50 flips"
    );
    flip_to_first.sort();
    eprintln!(
        "flip-to-first-request over 50 flips: p50 {:?}, max {:?} ({sent} requests alongside, 0 failed)",
        flip_to_first[25], flip_to_first[49]
    );

    // The change is in the source of truth, with its generation and author.
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stack.routes_file).expect("routes file"))
            .expect("json");
    assert_eq!(file["generation"], 50);
    assert_eq!(
        file["changes"][49]["who"]
            .as_str()
            .map(|w| w.starts_with("flip-test@")),
        Some(true)
    );
    assert_eq!(
        file["services"]["orders"]["weights"],
        serde_json::json!({"blue": 100, "green": 0})
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_validates_rolls_back_and_follows_the_file() {
    let stack = Stack::start().await;
    let mut admin = stack.admin().await;
    let auth = admin_auth();
    let with_token = [("authorization", auth.as_str())];

    let denied = admin
        .call(
            "GET",
            "/admin/routes",
            &[("authorization", "Bearer wrong-token-0123456789")],
            "",
        )
        .await;
    assert_eq!(denied.status, 401);
    assert_eq!(
        admin.call("GET", "/admin/routes", &[], "").await.status,
        401
    );
    let table = admin.call("GET", "/admin/routes", &with_token, "").await;
    assert_eq!(table.json()["services"]["orders"]["weights"]["blue"], 100);

    let bad = admin
        .call(
            "PUT",
            "/admin/routes/orders/weights",
            &with_token,
            r#"{"blue":90,"green":20}"#,
        )
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("add up to 100"), "{}", bad.text());
    let unknown = admin
        .call(
            "PUT",
            "/admin/routes/billing/weights",
            &with_token,
            r#"{"blue":50,"green":50}"#,
        )
        .await;
    assert_eq!(unknown.status, 404);
    let garbage = admin
        .call("PUT", "/admin/routes/orders/weights", &with_token, "blue=1")
        .await;
    assert_eq!(garbage.status, 400);
    let nothing_to_undo = admin
        .call("POST", "/admin/routes/orders/rollback", &with_token, "")
        .await;
    assert_eq!(nothing_to_undo.status, 409);

    let set = admin
        .call(
            "PUT",
            "/admin/routes/orders/weights",
            &with_token,
            r#"{"blue":90,"green":10}"#,
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text());
    assert_eq!(
        set.json()["after"],
        serde_json::json!({"blue": 90, "green": 10})
    );
    let rolled = admin
        .call("POST", "/admin/routes/orders/rollback", &with_token, "")
        .await;
    assert_eq!(
        rolled.json()["after"],
        serde_json::json!({"blue": 100, "green": 0})
    );

    // A change made to the file by hand (or by another replica) is applied...
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stack.routes_file).expect("file"))
            .expect("json");
    doc["services"]["orders"]["weights"] = serde_json::json!({"blue": 0, "green": 100});
    let generation_before = doc["generation"].as_u64().expect("generation");
    // By rename, as an editor saves: never read half written.
    let edit = stack.routes_file.with_extension("edit");
    std::fs::write(&edit, doc.to_string()).expect("write");
    std::fs::rename(&edit, &stack.routes_file).expect("rename");
    let token = stack.login("file@example.com").await;
    let bearer = format!("Bearer {token}");
    let mut client = stack.client().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let reply = client
            .call(
                "GET",
                "/v1/orders",
                &[("authorization", bearer.as_str())],
                "",
            )
            .await;
        if reply.header("x-served-by") == "green" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the file change was not applied within 5 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...and recorded: a new generation and a change by the routing file,
    // in the live state and in the file itself.
    let live = admin
        .call("GET", "/admin/routes", &with_token, "")
        .await
        .json();
    assert_eq!(live["generation"], generation_before + 1, "{live}");
    let last = live["changes"].as_array().and_then(|c| c.last()).cloned();
    let last = last.expect("a change entry");
    assert_eq!(last["who"], "routing file", "{last}");
    assert_eq!(last["service"], "orders");
    assert_eq!(last["after"], serde_json::json!({"blue": 0, "green": 100}));
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stack.routes_file).expect("file"))
            .expect("json");
    assert_eq!(file["generation"], generation_before + 1);
    // ...and an invalid one is refused while the last good state keeps
    // serving. Written by rename, so the gateway never reads it half
    // written (that would be a refused reload of its own).
    let tmp = stack.routes_file.with_extension("edit");
    std::fs::write(
        &tmp,
        r#"{"services": {"orders": {"weights": {"blue": 7}}}}"#,
    )
    .expect("write");
    std::fs::rename(&tmp, &stack.routes_file).expect("rename");
    tokio::time::sleep(Duration::from_millis(400)).await;
    for _ in 0..5 {
        let reply = client
            .call(
                "GET",
                "/v1/orders",
                &[("authorization", bearer.as_str())],
                "",
            )
            .await;
        assert_eq!((reply.status, reply.header("x-served-by")), (200, "green"));
    }
    let metrics = admin.call("GET", "/metrics", &[], "").await.text();
    assert!(
        metrics.contains("gateway_routing_reload_failures_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gateway_route_weight{service=\"orders\",color=\"green\"} 100"),
        "{metrics}"
    );
    assert!(
        metrics.contains("http_server_request_duration_seconds_count{http_route=\"/v1/orders\""),
        "{metrics}"
    );
    assert!(
        metrics.contains("build_info{service=\"gateway\",version=\"")
            && !metrics.contains("rust_version=\"\""),
        "{metrics}"
    );
    // Read as Prometheus reads it, in the format each scrape asked for.
    testkit::exposition::check(
        stack.gateway.admin_addr,
        &[
            ("gateway_routing_reload_failures", "counter"),
            ("gateway_upstream_retries", "counter"),
            ("gateway_endpoint_ejections", "counter"),
            ("gateway_shed_requests", "counter"),
            ("http_server_request_duration_seconds", "histogram"),
            ("gateway_route_weight", "gauge"),
            ("build_info", "gauge"),
        ],
    )
    .await;
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_grpc_through_the_gateway() {
    use platform_proto::orders::v1::{ListOrdersRequest, order_service_client::OrderServiceClient};
    use platform_proto::payments::v1::{
        ChargeRequest, payment_service_client::PaymentServiceClient,
    };
    let stack = Stack::start().await;
    let token = stack.login("grpc@example.com").await;
    let mut orders = OrderServiceClient::new(testkit::channel(stack.gateway.addr));
    let listed = orders
        .list_orders(testkit::authed(ListOrdersRequest::default(), &token))
        .await
        .expect("gRPC through the gateway");
    assert_eq!(
        listed
            .metadata()
            .get("x-served-by")
            .and_then(|v| v.to_str().ok()),
        Some("blue")
    );
    let mut forced = testkit::authed(ListOrdersRequest::default(), &token);
    forced
        .metadata_mut()
        .insert("x-color", "green".parse().expect("value"));
    let green = orders.list_orders(forced).await.expect("forced green");
    assert_eq!(
        green
            .metadata()
            .get("x-served-by")
            .and_then(|v| v.to_str().ok()),
        Some("green")
    );

    // Without a token, the gateway itself refuses the call.
    let anonymous = orders
        .list_orders(ListOrdersRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    assert!(
        anonymous.metadata().get("x-served-by").is_none(),
        "refused at the edge, before any service"
    );
    // Public methods need none.
    let jwks = platform_proto::auth::v1::auth_service_client::AuthServiceClient::new(
        testkit::channel(stack.gateway.addr),
    )
    .get_jwks(platform_proto::auth::v1::GetJwksRequest {})
    .await
    .expect("public method without a token");
    assert!(!jwks.into_inner().keys.is_empty());

    // Internal methods are not reachable on the public listener...
    let service_token = stack.platform.orders_token().await;
    let charge = || ChargeRequest {
        order_id: "ord_g".into(),
        user_id: "usr_g".into(),
        amount_minor: 100,
        currency: "EUR".into(),
        payment_method: "pm_card_visa".into(),
        idempotency_key: "ord_g".into(),
    };
    let public = PaymentServiceClient::new(testkit::channel(stack.gateway.addr))
        .charge(testkit::authed(charge(), &service_token))
        .await
        .expect_err("internal on the public port");
    assert_eq!(public.code(), tonic::Code::PermissionDenied);
    // ...but are on the internal (east-west) listener, routed by the same weights.
    let internal = PaymentServiceClient::new(testkit::channel(stack.gateway.internal_addr))
        .charge(testkit::authed(charge(), &service_token))
        .await
        .expect("east-west through the internal listener");
    assert_eq!(
        internal
            .metadata()
            .get("x-served-by")
            .and_then(|v| v.to_str().ok()),
        Some("blue")
    );
    stack.stop().await;
}
