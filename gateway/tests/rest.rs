//! REST through the gateway to the real services.

mod common;

use common::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_flow_over_rest() {
    let stack = Stack::start().await;
    let token = stack.login("rest@example.com").await;
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    let mut client = stack.client().await;

    let me = client.call("GET", "/v1/auth/me", &auth, "").await;
    assert_eq!(
        (me.status, me.json()["email"].as_str()),
        (200, Some("rest@example.com"))
    );

    let body = r#"{"items":[{"sku":"book-1","quantity":2,"unitPriceMinor":1250}],"currency":"EUR","paymentMethod":"pm_card_visa"}"#;
    let created = client.call("POST", "/v1/orders", &auth, body).await;
    assert_eq!(created.status, 200, "{}", created.text());
    let order = created.json();
    assert_eq!(order["status"], "ORDER_STATUS_PAID");
    assert_eq!(order["totalMinor"], "2500", "int64 as a string");
    assert!(
        order["createdAt"]
            .as_str()
            .expect("timestamp")
            .ends_with('Z')
    );
    assert_eq!(created.header("x-served-by"), "blue");
    assert!(!created.header("x-request-id").is_empty());
    let id = order["id"].as_str().expect("id");

    let got = client
        .call("GET", &format!("/v1/orders/{id}"), &auth, "")
        .await;
    assert_eq!(got.json()["id"], id);
    let listed = client.call("GET", "/v1/orders?pageSize=1", &auth, "").await;
    assert_eq!(listed.json()["orders"].as_array().map(Vec::len), Some(1));
    let payments = client
        .call("GET", &format!("/v1/orders/{id}/payments"), &auth, "")
        .await;
    assert_eq!(
        payments.json()["payments"][0]["status"],
        "PAYMENT_STATUS_APPROVED"
    );
    let cancelled = client
        .call("POST", &format!("/v1/orders/{id}:cancel"), &auth, "{}")
        .await;
    assert_eq!(cancelled.json()["status"], "ORDER_STATUS_CANCELLED");

    // Forcing the idle color serves from green.
    let green = client
        .call(
            "GET",
            &format!("/v1/orders/{id}"),
            &[auth[0], ("x-color", "green")],
            "",
        )
        .await;
    assert_eq!((green.status, green.header("x-served-by")), (200, "green"));

    // Every failure is a google.rpc.Status with the status from the table.
    let check = |reply: &common::Reply, status: u16, code: i64, needle: &str| {
        assert_eq!(reply.status, status, "{}", reply.text());
        let json = reply.json();
        assert_eq!(json["code"], code, "{}", reply.text());
        assert!(
            json["message"].as_str().expect("message").contains(needle),
            "{} lacks {needle}",
            reply.text()
        );
    };
    check(
        &client.call("GET", "/v1/nope", &auth, "").await,
        404,
        5,
        "no route for /v1/nope",
    );
    let wrong = client
        .call("DELETE", &format!("/v1/orders/{id}"), &auth, "")
        .await;
    check(&wrong, 405, 12, "GET");
    assert_eq!(wrong.header("allow"), "GET");
    check(
        &client
            .call("POST", "/v1/orders", &auth, r#"{"items": [}"#)
            .await,
        400,
        3,
        "line 1 column",
    );
    check(
        &client
            .call("POST", "/v1/orders", &auth, r#"{"colour":"red"}"#)
            .await,
        400,
        3,
        "colour",
    );
    check(
        &client
            .call("GET", "/v1/orders/ord_missing", &auth, "")
            .await,
        404,
        5,
        "not found",
    );
    check(
        &client
            .call("POST", "/v1/orders", &auth, r#"{"items":[]}"#)
            .await,
        400,
        3,
        "items must not be empty",
    );
    let anonymous = client.call("GET", "/v1/orders", &[], "").await;
    check(&anonymous, 401, 16, "missing bearer token");
    assert!(anonymous.header("www-authenticate").starts_with("Bearer"));
    let huge = format!(r#"{{"currency":"{}"}}"#, "x".repeat(2 << 20));
    // The server closes a connection whose body it did not read: use another one.
    let too_large = stack
        .client()
        .await
        .call("POST", "/v1/orders", &auth, &huge)
        .await;
    check(&too_large, 413, 8, "larger than 1048576 bytes");
    check(
        &client
            .call("GET", "/v1/orders", &[auth[0], ("x-color", "red")], "")
            .await,
        400,
        3,
        "blue or green",
    );

    // Register twice: the service's ALREADY_EXISTS is a 409.
    let again = client
        .call(
            "POST",
            "/v1/auth/register",
            &[],
            r#"{"email":"rest@example.com","password":"correct horse battery"}"#,
        )
        .await;
    check(&again, 409, 6, "already exists");
    stack.stop().await;
}

type Lines = tokio::io::Lines<tokio::io::BufReader<tokio::net::TcpStream>>;

/// Reads lines until one contains `needle`.
async fn until(lines: &mut Lines, needle: &str) -> String {
    loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line())
            .await
            .expect("a line within 10 s")
            .expect("read")
            .expect("open");
        if line.contains(needle) {
            return line;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_as_ndjson_and_sse_and_ends_with_a_status() {
    let stack = Stack::start().await;
    let token = stack.login("stream@example.com").await;
    let bearer = format!("Bearer {token}");
    let port = stack.gateway.addr;
    // A raw connection: read the stream as it arrives.
    let read_stream = |accept: &'static str| {
        let bearer = bearer.clone();
        async move {
            use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
            let mut stream = tokio::net::TcpStream::connect(port).await.expect("connect");
            let request = format!(
                "GET /v1/notifications:stream HTTP/1.1\r\nHost: x\r\nAuthorization: {bearer}\r\nAccept: {accept}\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await.expect("write");
            BufReader::new(stream).lines()
        }
    };
    let mut ndjson = read_stream("application/x-ndjson").await;
    let mut sse = read_stream("text/event-stream").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut client = stack.client().await;
    let body = r#"{"items":[{"sku":"sticker-1","quantity":1,"unitPriceMinor":100}],"currency":"EUR","paymentMethod":"pm_card_visa"}"#;
    let created = client
        .call(
            "POST",
            "/v1/orders",
            &[("authorization", bearer.as_str())],
            body,
        )
        .await;
    assert_eq!(created.status, 200);

    let line = until(&mut ndjson, "order.paid").await;
    let json: serde_json::Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(json["result"]["kind"], "order.paid");
    assert_eq!(until(&mut sse, "event:").await, "event: result");
    assert!(until(&mut sse, "data:").await.contains("order.paid"));

    // Stopping notifications ends the stream with a final status, not a silent cut.
    let Stack {
        platform,
        orders_green,
        gateway,
        ..
    } = stack;
    let testkit::Platform {
        auth,
        payments,
        notifications,
        orders,
        ..
    } = platform;
    notifications.stop().await;
    let end = until(&mut ndjson, "status").await;
    let json: serde_json::Value = serde_json::from_str(&end).expect("json");
    assert_eq!(json["status"]["code"], 14, "{end}");
    assert_eq!(until(&mut sse, "event:").await, "event: status");
    gateway.stop().await;
    for s in [orders_green, orders, payments, auth] {
        s.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_input_makes_it_answer_500() {
    let stack = Stack::start().await;
    let token = stack.login("garbage@example.com").await;
    let bearer = format!("Bearer {token}");
    let methods = ["GET", "POST", "GET", "POST", "PUT", "DELETE", "PATCH"];
    let routes = [
        "/v1/orders",
        "/v1/orders/{id}",
        "/v1/orders/{id}:cancel",
        "/v1/orders/{id}/payments",
        "/v1/payments/{id}",
        "/v1/notifications",
        "/v1/auth/me",
        "/v1/auth/login",
        "/v1/auth/register",
        "/v1/{id}",
    ];
    let segments = [
        "v1",
        "orders",
        "auth",
        "payments",
        "notifications",
        ":cancel",
        "%",
        "%ff",
        "..",
        "ord_1",
        "",
        "x:y",
        "{id}",
        "me",
    ];
    let queries = [
        "",
        "?pageSize=abc",
        "?page_size=-1",
        "?a.b.c=1",
        "?pageToken=%%%",
        "?x",
        "?pageSize=99999999999",
        "?&&=&",
    ];
    let bodies = [
        "",
        "{",
        "[]",
        "null",
        "{\"items\":\"x\"}",
        "{\"items\":[{\"quantity\":\"NaN\"}]}",
        "{\"currency\":1}",
        "{\"items\":[{\"sku\":\"a\",\"quantity\":2147483648}]}",
        "\u{0}\u{1}",
        "{\"status\":\"ORDER_STATUS_NOPE\"}",
    ];
    // A deterministic walk through combinations: every request gets an
    // answer from the table, never a 500 and never a dropped connection.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut reached_a_service = 0;
    for _ in 0..800 {
        let mut path = routes[next(routes.len())].replace("{id}", segments[next(segments.len())]);
        if next(5) == 0 {
            path.push('/');
            path.push_str(segments[next(segments.len())]);
        }
        path.push_str(queries[next(queries.len())]);
        let method = methods[next(methods.len())];
        let body = if next(2) == 0 {
            ""
        } else {
            bodies[next(bodies.len())]
        };
        let headers: &[(&str, &str)] = if next(5) != 0 {
            &[("authorization", bearer.as_str())]
        } else {
            &[]
        };
        // A fresh connection each time: a request may legitimately close one.
        let reply = stack
            .client()
            .await
            .call(method, &path, headers, body)
            .await;
        assert!(
            reply.status < 500 || reply.status == 503,
            "{method} {path} {body:?} -> {}: {}",
            reply.status,
            reply.text()
        );
        let json = reply.json();
        assert!(
            json["code"].is_i64() || reply.status == 200,
            "{method} {path}: {}",
            reply.text()
        );
        *statuses.entry(reply.status).or_insert(0) += 1;
        if !reply.header("x-served-by").is_empty() {
            reached_a_service += 1;
        }
    }
    eprintln!("statuses: {statuses:?}; {reached_a_service} answered by a service");
    assert!(
        statuses.len() >= 4,
        "the walk reached many outcomes: {statuses:?}"
    );
    assert!(
        reached_a_service >= 15,
        "the walk reached the services too ({reached_a_service})"
    );
    stack.stop().await;
}
