//! One order is one trace: every service process exports its spans over OTLP
//! to a receiver inside this test, and the spans of orders, payments and
//! notifications share a trace id, with the internal calls parented on the
//! order's span. The JSON logs of the request carry the same trace id.

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
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
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
    let body = r#"{"items":[{"sku":"trace-1","quantity":1,"unitPriceMinor":500}],"currency":"EUR","paymentMethod":"pm_card_visa"}"#;
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

    // Wait for the spans of the gateway and all three services.
    let deadline = Instant::now() + Duration::from_secs(30);
    let trace = loop {
        let spans = receiver.0.lock().expect("lock").clone();
        let root = spans.iter().find(|s| s.name == "POST /v1/orders").cloned();
        if let Some(root) = root {
            let trace: Vec<Received> = spans
                .into_iter()
                .filter(|s| s.trace_id == root.trace_id)
                .collect();
            if trace
                .iter()
                .any(|s| s.name.ends_with("NotificationService/Send"))
                && trace.len() >= 9
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
        up_from_create[0].name,
        "orders /platform.orders.v1.OrderService/CreateOrder"
    );
    assert_eq!(
        up_from_create[1].span_id, edge.span_id,
        "{up_from_create:?}"
    );
    for internal in [charge, send] {
        let chain = ancestors(internal);
        assert!(
            chain[0].name.starts_with("payments ") || chain[0].name.starts_with("notifications "),
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
            span.resource.get("deployment.color").map(String::as_str),
            Some("blue")
        );
        assert_eq!(
            span.resource.get("service.version").map(String::as_str),
            Some("1.4.2"),
            "{span:?}"
        );
    }
    let root = create;

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
