//! Sticky canary: at a split, a user keeps its color request after request
//! (REST and native gRPC alike), different users spread over both colors,
//! an anonymous REST client is sticky through the gateway's cookie, and a
//! weight change only moves users one way. Previews still force a color;
//! east-west calls, and every call with `STICKY_CANARY=false`, are drawn
//! per request.

mod common;

use std::collections::BTreeSet;

use common::{ADMIN_TOKEN, Client, Reply, Stack};

/// The gateway's setting that turns stickiness on (it is off by default).
const STICKY: &[(&str, &str)] = &[("STICKY_CANARY", "true")];

/// Sets the weights of `service` through the admin API.
async fn weights(stack: &Stack, service: &str, blue: u32, green: u32) {
    let mut admin = stack.admin().await;
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let set = admin
        .call(
            "PUT",
            &format!("/admin/routes/{service}/weights"),
            &[("authorization", &auth)],
            &format!(r#"{{"blue":{blue},"green":{green}}}"#),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text());
}

/// The colors that served `n` reads of the user's orders.
async fn colors_of(client: &mut Client, bearer: &str, n: usize) -> Vec<String> {
    let mut colors = Vec::new();
    for _ in 0..n {
        let reply = client
            .call("GET", "/v1/orders", &[("authorization", bearer)], "")
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        colors.push(reply.header("x-served-by").to_owned());
    }
    colors
}

/// The one color of `colors`, which must all be the same.
fn one(colors: &[String], who: &str) -> String {
    let set: BTreeSet<&String> = colors.iter().collect();
    assert_eq!(set.len(), 1, "{who} was served by {colors:?}");
    colors[0].clone()
}

fn set_cookie(reply: &Reply) -> Option<String> {
    reply
        .headers
        .get(http::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_keeps_its_color_and_users_spread_over_both() {
    let stack = Stack::start_with(STICKY, &[]).await;
    weights(&stack, "orders", 50, 50).await;
    let mut client = stack.client().await;

    // 16 users at 50/50: each sticks to one color, and both colors get
    // users (all 16 on one side has a chance of 2^-15).
    let mut users = Vec::new();
    for i in 0..16 {
        let bearer = format!(
            "Bearer {}",
            stack.login(&format!("sticky{i}@example.com")).await
        );
        let color = one(&colors_of(&mut client, &bearer, 8).await, &bearer);
        users.push((bearer, color));
    }
    let spread: BTreeSet<&str> = users.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(spread.len(), 2, "16 users all on {spread:?}");
    let on_green = users.iter().filter(|(_, c)| c == "green").count();
    eprintln!("at 50/50: {on_green} of 16 users on green, each on one color for 8 reads");

    // Native gRPC with the same token: the same user, the same color.
    use platform_proto::orders::v1::{ListOrdersRequest, order_service_client::OrderServiceClient};
    let mut grpc = OrderServiceClient::new(testkit::channel(stack.gateway.addr));
    for (bearer, color) in users.iter().take(4) {
        let token = bearer.trim_start_matches("Bearer ");
        for _ in 0..4 {
            let reply = grpc
                .list_orders(testkit::authed(ListOrdersRequest::default(), token))
                .await
                .expect("gRPC through the gateway");
            let served = reply
                .metadata()
                .get("x-served-by")
                .and_then(|v| v.to_str().ok());
            assert_eq!(served, Some(color.as_str()), "gRPC and REST agree");
        }
    }

    // A preview still forces its color, whatever the user's.
    let (bearer, _) = users
        .iter()
        .find(|(_, c)| c == "blue")
        .expect("a blue user");
    let forced = client
        .call(
            "GET",
            "/v1/orders",
            &[("authorization", bearer), ("x-color", "green")],
            "",
        )
        .await;
    assert_eq!(
        (forced.status, forced.header("x-served-by")),
        (200, "green")
    );

    // A step up keeps every user green already had; a rollback moves all
    // back to the stable color.
    weights(&stack, "orders", 25, 75).await;
    for (bearer, before) in &users {
        let now = one(&colors_of(&mut client, bearer, 3).await, bearer);
        if before == "green" {
            assert_eq!(now, "green", "{bearer} left green when its share grew");
        }
    }
    let mut admin = stack.admin().await;
    let rolled = admin
        .call(
            "POST",
            "/admin/routes/orders/rollback",
            &[("authorization", &format!("Bearer {ADMIN_TOKEN}"))],
            "",
        )
        .await;
    assert_eq!(rolled.status, 200, "{}", rolled.text());
    for (bearer, _) in &users {
        assert_eq!(
            one(&colors_of(&mut client, bearer, 2).await, bearer),
            "blue"
        );
    }
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_makes_an_anonymous_client_sticky_and_east_west_is_drawn() {
    use platform_proto::payments::v1::{
        ChargeRequest, payment_service_client::PaymentServiceClient,
    };
    let stack = Stack::start_with(STICKY, &[]).await;
    // The public routes (keys, register, login) are auth's.
    weights(&stack, "auth", 50, 50).await;
    let mut client = stack.client().await;

    // The first answer sets the cookie, and its id already chose the color.
    let first = client.call("GET", "/v1/auth/jwks", &[], "").await;
    assert_eq!(first.status, 200, "{}", first.text());
    let cookie = set_cookie(&first).expect("a Set-Cookie on an anonymous client's answer");
    for attribute in ["Path=/", "Max-Age=86400", "HttpOnly", "SameSite=Lax"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let pair = cookie.split(';').next().expect("name=value").to_owned();
    assert!(pair.starts_with("platform-affinity="), "{cookie}");
    let mut colors = vec![first.header("x-served-by").to_owned()];
    for _ in 0..15 {
        let reply = client
            .call("GET", "/v1/auth/jwks", &[("cookie", &pair)], "")
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            set_cookie(&reply),
            None,
            "a client with the cookie keeps it"
        );
        colors.push(reply.header("x-served-by").to_owned());
    }
    one(&colors, &pair);

    // Clients that keep no cookie are drawn anew each time: both colors
    // (one color for 24 in a row has a chance of 2^-23).
    let mut drawn = BTreeSet::new();
    for _ in 0..24 {
        let reply = client.call("GET", "/v1/auth/jwks", &[], "").await;
        assert!(set_cookie(&reply).is_some());
        drawn.insert(reply.header("x-served-by").to_owned());
    }
    assert_eq!(drawn.len(), 2, "{drawn:?}");

    // Cookies of the test's choosing: each sticky, together on both colors.
    let mut spread = BTreeSet::new();
    for i in 0..24 {
        let pair = format!("session=x; platform-affinity=test-{i}");
        let mut colors = Vec::new();
        for _ in 0..3 {
            let reply = client
                .call("GET", "/v1/auth/jwks", &[("cookie", &pair)], "")
                .await;
            colors.push(reply.header("x-served-by").to_owned());
        }
        spread.insert(one(&colors, &pair));
    }
    assert_eq!(spread.len(), 2, "{spread:?}");

    // A cookie the gateway could not have set is refused, saying which.
    let bad = client
        .call(
            "GET",
            "/v1/auth/jwks",
            &[("cookie", "platform-affinity=<script>")],
            "",
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains("platform-affinity"), "{}", bad.text());

    // East-west: a service's calls carry the service's token, not a user's,
    // so they are drawn per request even with stickiness on.
    weights(&stack, "payments", 50, 50).await;
    // East-west: a service's calls carry the service's token, not a user's.
    let service_token = stack.platform.orders_token().await;
    let mut payments = PaymentServiceClient::new(testkit::channel(stack.gateway.internal_addr));
    let mut served = BTreeSet::new();
    for i in 0..24 {
        let charge = ChargeRequest {
            order_id: format!("ord_ew{i}"),
            user_id: "usr_ew".into(),
            amount_minor: 100,
            currency: "EUR".into(),
            payment_method: "pm_card_visa".into(),
            idempotency_key: format!("ord_ew{i}"),
        };
        let reply = payments
            .charge(testkit::authed(charge, &service_token))
            .await
            .expect("east-west charge");
        let color = reply
            .metadata()
            .get("x-served-by")
            .and_then(|v| v.to_str().ok());
        served.insert(color.unwrap_or_default().to_owned());
    }
    assert_eq!(served.len(), 2, "{served:?}");
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sticky_off_every_request_is_drawn() {
    let stack = Stack::start_with(&[("STICKY_CANARY", "false")], &[]).await;
    weights(&stack, "orders", 50, 50).await;

    // Off: one user's reads land on both colors, and nobody gets a cookie.
    let bearer = format!("Bearer {}", stack.login("unsticky@example.com").await);
    let mut client = stack.client().await;
    let colors: BTreeSet<String> = colors_of(&mut client, &bearer, 24)
        .await
        .into_iter()
        .collect();
    assert_eq!(colors.len(), 2, "{colors:?}");
    let anonymous = client.call("GET", "/v1/auth/jwks", &[], "").await;
    assert_eq!(anonymous.status, 200);
    assert_eq!(set_cookie(&anonymous), None);

    stack.stop().await;
}
