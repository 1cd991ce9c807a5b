//! One order is one trace: every service process exports its spans over OTLP
//! to a receiver inside this test, and the spans of orders, payments and
//! notifications share a trace id, with the internal calls parented on the
//! order's span. The JSON logs of the request carry the same trace id. Every
//! span follows the OpenTelemetry semantic conventions for HTTP and RPC
//! spans (names, attributes and their types, kinds, status).

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tokio_stream::wrappers::TcpListenerStream;

// Outside the ephemeral range, and clear of the ports of tests/up.rs.
const OFFSET: i32 = 12_500;

/// A span as received, with the resource attributes of its process.
#[derive(Debug, Clone)]
struct Received {
    name: String,
    trace_id: Vec<u8>,
    span_id: Vec<u8>,
    parent: Vec<u8>,
    resource: HashMap<String, String>,
    /// 2 server, 3 client (OTLP's SpanKind).
    kind: i32,
    /// Typed as sent: strings as JSON strings, integers as JSON numbers.
    attributes: HashMap<String, serde_json::Value>,
    /// 0 unset, 1 ok, 2 error (OTLP's StatusCode).
    status: i32,
    start: u64,
    end: u64,
}

impl Received {
    fn attr(&self, key: &str) -> Option<&serde_json::Value> {
        self.attributes.get(key)
    }
    fn service(&self) -> &str {
        self.resource.get("service.name").map_or("", String::as_str)
    }
}

fn typed(value: Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> serde_json::Value {
    match value.and_then(|v| v.value) {
        Some(Value::StringValue(s)) => serde_json::Value::from(s),
        Some(Value::IntValue(i)) => serde_json::Value::from(i),
        Some(Value::BoolValue(b)) => serde_json::Value::from(b),
        Some(Value::DoubleValue(d)) => serde_json::Value::from(d),
        other => serde_json::Value::from(format!("{other:?}")),
    }
}

/// Attributes the tracing bridge adds unless told not to: noise to a
/// trace search.
const NOISE: [&str; 12] = [
    "busy_ns",
    "idle_ns",
    "thread.id",
    "thread.name",
    "code.filepath",
    "code.namespace",
    "code.lineno",
    "code.file.path",
    "code.function.name",
    "code.line.number",
    "target",
    "level",
];

/// Every departure from the HTTP and RPC span conventions in `spans`.
fn violations(spans: &[Received]) -> Vec<String> {
    let mut found = Vec::new();
    for span in spans {
        let mut fail =
            |what: String| found.push(format!("{} ({}): {what}", span.name, span.service()));
        for key in NOISE {
            if span.attributes.contains_key(key) {
                fail(format!("carries {key}"));
            }
        }
        if span.attr("rpc.system").is_some() {
            let service = span.attr("rpc.service").and_then(|v| v.as_str());
            let method = span.attr("rpc.method").and_then(|v| v.as_str());
            match (service, method) {
                (Some(service), Some(method)) => {
                    if span.name != format!("{service}/{method}") {
                        fail(format!("not named {service}/{method}"));
                    }
                }
                _ => fail("rpc.service or rpc.method missing".into()),
            }
            match span.attr("rpc.grpc.status_code").and_then(|v| v.as_i64()) {
                None => fail(format!(
                    "rpc.grpc.status_code is {:?}, not an integer",
                    span.attr("rpc.grpc.status_code")
                )),
                Some(code) if span.kind == 3 && code != 0 && span.status != 2 => {
                    fail(format!("client span of code {code} is not an error"))
                }
                Some(_) => {}
            }
        }
        if span.kind == 3 {
            match span.attr("server.address").and_then(|v| v.as_str()) {
                Some(address) if !address.contains(':') && !address.is_empty() => {}
                other => fail(format!("server.address {other:?}")),
            }
            if span.attr("server.port").and_then(|v| v.as_i64()).is_none() {
                fail("server.port is not an integer".into());
            }
        }
        if span.kind == 2 && span.attr("http.request.method").is_some() {
            if span
                .attr("http.response.status_code")
                .and_then(|v| v.as_i64())
                .is_none()
            {
                fail("http.response.status_code is not an integer".into());
            }
            for key in ["url.scheme", "server.address", "network.protocol.version"] {
                if span.attr(key).is_none() {
                    fail(format!("{key} missing"));
                }
            }
            if span.attr("server.port").and_then(|v| v.as_i64()).is_none() {
                fail("server.port is not an integer".into());
            }
            if span.attr("rpc.system").is_none() {
                let method = span.attr("http.request.method").and_then(|v| v.as_str());
                match (method, span.attr("http.route").and_then(|v| v.as_str())) {
                    (Some(method), Some(route)) if span.name == format!("{method} {route}") => {}
                    other => fail(format!("HTTP span named apart from its route: {other:?}")),
                }
            }
        }
    }
    found
}

#[derive(Debug, Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Received>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().expect("lock");
        for resource_spans in request.into_inner().resource_spans {
            let resource: HashMap<String, String> = resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|kv| match kv.value?.value? {
                    Value::StringValue(s) => Some((kv.key, s)),
                    _ => None,
                })
                .collect();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    spans.push(Received {
                        name: span.name,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent: span.parent_span_id,
                        resource: resource.clone(),
                        kind: span.kind,
                        attributes: span
                            .attributes
                            .into_iter()
                            .map(|kv| (kv.key, typed(kv.value)))
                            .collect(),
                        status: span.status.map_or(0, |s| s.code),
                        start: span.start_time_unix_nano,
                        end: span.end_time_unix_nano,
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The spans of the two reads: the gateway's server span of each (404
/// included), and the client and server spans of the missing order.
fn reads_arrived(spans: &[Received]) -> bool {
    let of_status = |status: i64| {
        spans.iter().any(|s| {
            s.kind == 2
                && s.service() == "gateway"
                && s.attr("http.request.method") == Some(&serde_json::json!("GET"))
                && s.attr("http.response.status_code") == Some(&serde_json::json!(status))
        })
    };
    let not_found = spans
        .iter()
        .filter(|s| s.name.ends_with("OrderService/GetOrder") && s.status != 1)
        .filter(|s| s.attributes.values().any(|v| v == 5 || v == "NOT_FOUND"))
        .count();
    of_status(200) && of_status(404) && not_found >= 2
}

/// The trace as a waterfall in SVG: one row per span in tree order,
/// indented by depth, a bar from its start to its end, errors in red.
fn waterfall(trace: &[Received]) -> String {
    let origin = trace.iter().map(|s| s.start).min().unwrap_or(0);
    let finish = trace.iter().map(|s| s.end).max().unwrap_or(origin + 1);
    let span_ns = (finish - origin).max(1) as f64;
    let mut rows: Vec<(usize, &Received)> = Vec::new();
    fn walk<'a>(
        trace: &'a [Received],
        parent: &[u8],
        depth: usize,
        rows: &mut Vec<(usize, &'a Received)>,
    ) {
        let mut children: Vec<&Received> = trace.iter().filter(|s| s.parent == parent).collect();
        children.sort_by_key(|s| s.start);
        for child in children {
            rows.push((depth, child));
            walk(trace, &child.span_id, depth + 1, rows);
        }
    }
    let roots: Vec<&Received> = trace
        .iter()
        .filter(|s| !trace.iter().any(|p| p.span_id == s.parent))
        .collect();
    for root in roots {
        rows.push((0, root));
        walk(trace, &root.span_id, 1, &mut rows);
    }
    let (label_width, bar_width, row) = (520.0, 560.0, 22.0);
    let height = 40.0 + row * rows.len() as f64;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" font-family=\"monospace\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"8\" y=\"20\">one POST /v1/orders: {} spans, {:.1} ms</text>\n",
        label_width + bar_width + 90.0,
        rows.len(),
        span_ns / 1e6
    );
    for (i, (depth, span)) in rows.iter().enumerate() {
        let y = 30.0 + row * i as f64;
        let kind = if span.kind == 3 { "client" } else { "server" };
        let x = label_width + bar_width * (span.start - origin) as f64 / span_ns;
        let width = (bar_width * (span.end.saturating_sub(span.start)) as f64 / span_ns).max(1.0);
        let color = match (span.status, span.service()) {
            (2, _) => "#d62728",
            (_, "gateway") => "#7f7f7f",
            (_, "orders") => "#1f77b4",
            (_, "payments") => "#2ca02c",
            _ => "#9467bd",
        };
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\">{} {} ({kind})</text>\n<rect x=\"{x:.1}\" y=\"{}\" width=\"{width:.1}\" height=\"14\" fill=\"{color}\"/>\n<text x=\"{:.1}\" y=\"{}\">{:.2} ms</text>\n",
            8.0 + 14.0 * *depth as f64,
            y + 12.0,
            span.service(),
            span.name.replace('&', "&amp;").replace('<', "&lt;"),
            y,
            x + width + 4.0,
            y + 12.0,
            span.end.saturating_sub(span.start) as f64 / 1e6
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_one_trace_across_services() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let otlp = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let platform = common::up_with(
        &data,
        OFFSET,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
            ("OTEL_BSP_SCHEDULE_DELAY", "200".into()),
        ],
        &["--blue-version", "1.4.2"],
    );
    let (_, token) =
        testkit::register_and_login(common::addr(OFFSET, 50051), "trace@example.com").await;
    // A REST call through the gateway.
    let gateway =
        std::net::SocketAddr::from(([127, 0, 0, 1], u16::try_from(8080 + OFFSET).expect("port")));
    let body = r#"{"items":[{"sku":"notebook-2","quantity":1,"unitPriceMinor":500}],"currency":"EUR","paymentMethod":"pm_card_visa"}"#;
    let bearer = format!("Bearer {token}");
    let reply = common::http(
        gateway,
        "POST",
        "/v1/orders",
        &[("authorization", bearer.as_str())],
        body,
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let order: serde_json::Value =
        serde_json::from_str(reply.split("\r\n\r\n").nth(1).expect("body")).expect("json");
    let order_id = order["id"].as_str().expect("id").to_owned();
    // Read back, and an order that does not exist (404, NOT_FOUND).
    let read = common::http(
        gateway,
        "GET",
        &format!("/v1/orders/{order_id}"),
        &[("authorization", bearer.as_str())],
        "",
    )
    .await;
    assert!(read.starts_with("HTTP/1.1 200"), "{read}");
    let missing = common::http(
        gateway,
        "GET",
        "/v1/orders/ord_missing",
        &[("authorization", bearer.as_str())],
        "",
    )
    .await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");

    // Wait for the spans of the gateway and all three services.
    let deadline = Instant::now() + Duration::from_secs(30);
    let trace = loop {
        let spans = receiver.0.lock().expect("lock").clone();
        let root = spans.iter().find(|s| s.name == "POST /v1/orders").cloned();
        if let Some(root) = root {
            let trace: Vec<Received> = spans
                .iter()
                .filter(|s| s.trace_id == root.trace_id)
                .cloned()
                .collect();
            if trace
                .iter()
                .filter(|s| s.name.ends_with("NotificationService/Send"))
                .count()
                >= 4
                && trace.len() >= 11
                && reads_arrived(&spans)
            {
                break trace;
            }
        }
        assert!(
            Instant::now() < deadline,
            "spans did not arrive within 30 s: {:?}",
            receiver.0.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // A span by the service that recorded it and the end of its name (the
    // gateway's spans of a call end with the same method name).
    let find = |service: &str, name: &str| {
        trace
            .iter()
            .find(|s| {
                s.name.ends_with(name)
                    && s.resource.get("service.name").map(String::as_str) == Some(service)
            })
            .unwrap_or_else(|| panic!("no {name} span of {service} in {trace:?}"))
    };
    let edge = find("gateway", "POST /v1/orders");
    let create = find("orders", "OrderService/CreateOrder");
    let charge = find("payments", "PaymentService/Charge");
    let send = find("notifications", "NotificationService/Send");
    // Each call through the gateway nests under the gateway's spans: walk
    // up from a service's span to the span it must descend from.
    let ancestors = |span: &Received| {
        let mut chain = Vec::new();
        let mut current = span.clone();
        while let Some(parent) = trace.iter().find(|s| s.span_id == current.parent) {
            chain.push(parent.clone());
            current = parent.clone();
        }
        chain
    };
    // Directly: request span -> upstream client span -> CreateOrder.
    let up_from_create = ancestors(create);
    assert_eq!(
        (up_from_create[0].name.as_str(), up_from_create[0].kind),
        ("platform.orders.v1.OrderService/CreateOrder", 3)
    );
    assert_eq!(
        up_from_create[1].span_id, edge.span_id,
        "{up_from_create:?}"
    );
    for internal in [charge, send] {
        let chain = ancestors(internal);
        // The gateway's client span, under its internal server span, under
        // orders' own client span of the call.
        assert_eq!(
            (chain[0].name.as_str(), chain[0].kind, chain[0].service()),
            (internal.name.as_str(), 3, "gateway"),
            "{chain:?}"
        );
        assert_eq!(
            (chain[1].name.as_str(), chain[1].kind, chain[1].service()),
            (internal.name.as_str(), 2, "gateway"),
            "{chain:?}"
        );
        assert_eq!(
            (chain[2].name.as_str(), chain[2].kind, chain[2].service()),
            (internal.name.as_str(), 3, "orders"),
            "{chain:?}"
        );
        let through_gateway = chain
            .iter()
            .take_while(|s| s.span_id != create.span_id)
            .any(|s| s.resource.get("service.name").map(String::as_str) == Some("gateway"));
        assert!(
            through_gateway,
            "east-west goes through the gateway: {chain:?}"
        );
        assert!(
            chain.iter().any(|s| s.span_id == create.span_id),
            "{} descends from CreateOrder",
            internal.name
        );
    }
    assert_eq!(
        edge.resource.get("service.name").map(String::as_str),
        Some("gateway")
    );
    assert!(edge.resource.contains_key("service.version"), "{edge:?}");
    assert!(
        edge.resource
            .get("platform.build")
            .is_some_and(|b| b.starts_with(env!("CARGO_PKG_VERSION"))),
        "{edge:?}"
    );
    // One trace: no span of this request's calls went into another one.
    let others: Vec<Received> = receiver
        .0
        .lock()
        .expect("lock")
        .iter()
        .filter(|s| s.trace_id != edge.trace_id && s.name.ends_with("OrderService/CreateOrder"))
        .cloned()
        .collect();
    assert!(
        others.is_empty(),
        "CreateOrder spans outside the trace: {others:?}"
    );
    for (span, service) in [
        (create, "orders"),
        (charge, "payments"),
        (send, "notifications"),
    ] {
        assert_eq!(
            span.resource.get("service.name").map(String::as_str),
            Some(service)
        );
        assert_eq!(
            span.resource.get("platform.color").map(String::as_str),
            Some("blue")
        );
        assert_eq!(
            span.resource.get("service.version").map(String::as_str),
            Some("1.4.2"),
            "{span:?}"
        );
    }
    let root = create;
    // `TRACE_PICTURE=path` keeps the trace as a picture (README's is one).
    if let Some(path) = std::env::var_os("TRACE_PICTURE") {
        std::fs::write(&path, waterfall(&trace)).expect("write the picture");
    }

    // The conventions, on every span of the order's trace and of the reads.
    let all = receiver.0.lock().expect("lock").clone();
    let wrong = violations(&all);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(
        edge.attr("http.route"),
        Some(&serde_json::json!("/v1/orders"))
    );
    assert_eq!(
        edge.attr("http.response.status_code"),
        Some(&serde_json::json!(200))
    );
    assert!(
        all.iter()
            .all(|s| !s.name.contains(&order_id) && !s.name.contains("ord_missing")),
        "a span named with an id"
    );
    let read_span = all
        .iter()
        .find(|s| {
            s.name == "GET /v1/orders/{order_id}"
                && s.attr("http.response.status_code") == Some(&serde_json::json!(200))
        })
        .unwrap_or_else(|| panic!("no GET span named by its route in {all:?}"));
    assert_eq!(read_span.status, 0);
    // The read of a missing order: the caller's mistake, so the server
    // spans stay unset while the client spans that saw NOT_FOUND are errors.
    let missing: Vec<&Received> = all
        .iter()
        .filter(|s| s.attr("rpc.grpc.status_code") == Some(&serde_json::json!(5)))
        .collect();
    let by = |kind: i32, service: &str| {
        missing
            .iter()
            .find(|s| s.kind == kind && s.service() == service)
            .unwrap_or_else(|| panic!("no NOT_FOUND span of kind {kind} by {service}: {missing:?}"))
    };
    assert_eq!(by(3, "gateway").status, 2, "gateway's client span");
    assert_eq!(by(2, "orders").status, 0, "orders' server span");
    assert!(
        all.iter().any(|s| s.kind == 2
            && s.attr("http.response.status_code") == Some(&serde_json::json!(404))
            && s.status == 0),
        "the 404 server span is not an error"
    );

    // The JSON log lines of the request carry the trace id.
    let trace_id = hex(&root.trace_id);
    let log = std::fs::read_to_string(data.join("logs/orders-blue.log")).expect("log");
    let line = log
        .lines()
        .find(|l| l.contains(&order_id) && l.contains("order charged"))
        .expect("a log line about the order");
    let json: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
    assert_eq!(json["span"]["trace_id"], trace_id.as_str());
    // So do those of every other process the request went through.
    for (log, says) in [
        ("payments-blue", "charged"),
        ("notifications-blue", "sent"),
        ("gateway", "/v1/orders"),
    ] {
        let text = std::fs::read_to_string(data.join(format!("logs/{log}.log"))).expect("log");
        let line = text
            .lines()
            .filter(|l| l.contains(says))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["span"]["trace_id"] == trace_id.as_str());
        assert!(
            line.is_some(),
            "no {log} log line saying {says:?} with trace id {trace_id}"
        );
    }

    assert!(platform.interrupt().success());
}
