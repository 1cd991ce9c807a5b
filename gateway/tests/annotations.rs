//! Routes come from annotations alone: a contract the gateway has never seen
//! (tests/protos/echo.proto, compiled here) is served after start-up, with no
//! gateway code that names it, and ambiguous routes are refused.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Value};

mod common;

fn compile(file: &str) -> Vec<u8> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut compiler =
        protox::Compiler::new([format!("{root}/tests/protos"), format!("{root}/../proto")])
            .expect("includes");
    compiler.include_imports(true).include_source_info(true);
    compiler.open_file(file).expect("the test proto compiles");
    compiler.encode_file_descriptor_set()
}

/// A gRPC server for EchoService written against descriptors only: it
/// answers every call with the request inside the response.
async fn echo_server(descriptors: Vec<u8>) -> SocketAddr {
    echo_server_paced(descriptors, Pace::default()).await
}

/// How long the echo server waits before its response head and before the
/// message after it.
#[derive(Debug, Clone, Copy, Default)]
struct Pace {
    head: Duration,
    body: Duration,
    /// The grpc-status its trailers carry (after the message).
    code: u16,
}

async fn echo_server_paced(descriptors: Vec<u8>, pace: Pace) -> SocketAddr {
    let pool = DescriptorPool::decode(descriptors.as_slice()).expect("pool");
    let request_type = pool
        .get_message_by_name("platform.echo.v1.EchoRequest")
        .expect("request");
    let response_type = pool
        .get_message_by_name("platform.echo.v1.EchoResponse")
        .expect("response");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (request_type, response_type) = (request_type.clone(), response_type.clone());
            let service =
                hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let (request_type, response_type) =
                        (request_type.clone(), response_type.clone());
                    async move {
                        let body = request
                            .into_body()
                            .collect()
                            .await
                            .expect("body")
                            .to_bytes();
                        let echoed = DynamicMessage::decode(request_type, &body[5..])
                            .expect("request decodes");
                        let mut response = DynamicMessage::new(response_type);
                        response.set_field_by_name("echoed", Value::Message(echoed));
                        response.set_field_by_name("served_by", Value::String("echo".into()));
                        let message = response.encode_to_vec();
                        let mut framed = BytesMut::new();
                        framed.extend_from_slice(&[0]);
                        framed.extend_from_slice(
                            &u32::try_from(message.len()).expect("len").to_be_bytes(),
                        );
                        framed.extend_from_slice(&message);
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from(pace.code));
                        tokio::time::sleep(pace.head).await;
                        let data = futures_util::stream::once(async move {
                            tokio::time::sleep(pace.body).await;
                            Ok::<_, Infallible>(Frame::data(framed.freeze()))
                        });
                        let frames =
                            data.chain(futures_util::stream::iter([Ok(Frame::trailers(trailers))]));
                        let mut response = http::Response::new(StreamBody::new(frames));
                        response.headers_mut().insert(
                            "content-type",
                            http::HeaderValue::from_static("application/grpc"),
                        );
                        Ok::<_, Infallible>(response)
                    }
                });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A gateway whose one service, `echo`, is served by `echo` on blue, with
/// both echo routes public and `extra` added to its environment. The
/// temporary directory holds its routing file.
async fn gateway_for(
    echo: SocketAddr,
    descriptors: &[u8],
    extra: &[(&str, &str)],
) -> (gateway::RunningGateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let routes = dir.path().join("routes.json");
    std::fs::write(
        &routes,
        serde_json::json!({"services": {"echo": {
            "endpoints": {"blue": [echo.to_string()], "green": []},
            "weights": {"blue": 100, "green": 0}
        }}})
        .to_string(),
    )
    .expect("routes");
    let mut env = vec![
        ("ROUTES_FILE", routes.to_str().expect("utf-8")),
        (
            "PUBLIC_ROUTES",
            "POST /v1/shelves/{shelf.id}/notes/{note_id}:echo, GET /v1/echo/{note_id}",
        ),
    ];
    env.extend_from_slice(extra);
    let running = common::start_gateway(
        &env,
        &[platform_proto::PLATFORM_DESCRIPTOR_SET, descriptors],
    )
    .await;
    (running, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_new_contract_from_its_annotations() {
    let descriptors = compile("echo.proto");
    let echo = echo_server(descriptors.clone()).await;
    let (running, _dir) = gateway_for(echo, &descriptors, &[]).await;
    let mut client = common::Client::connect(running.addr).await;

    // Nested path variable, body field, repeated and nested query
    // parameters, enum by name, 64-bit integers as strings, a Timestamp,
    // and response_body.
    let reply = client
        .call(
            "POST",
            "/v1/shelves/s1/notes/n%2F1:echo?tags=a&tags=b&mood=MOOD_HAPPY&loud=true&count=18446744073709551615&shelf.label=top",
            &[],
            r#"{"text":"hi","size":"42","at":"2024-01-02T03:04:05Z"}"#,
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.json(),
        serde_json::json!({
            "shelf": {"id": "s1", "label": "top"},
            "noteId": "n/1",
            "note": {"text": "hi", "size": "42", "at": "2024-01-02T03:04:05Z"},
            "tags": ["a", "b"],
            "mood": "MOOD_HAPPY",
            "loud": true,
            "count": "18446744073709551615"
        })
    );
    // The additional binding has no response_body: the whole response.
    let reply = client
        .call("GET", "/v1/echo/n2?note.text=x&tags=only", &[], "")
        .await;
    assert_eq!(
        reply.json(),
        serde_json::json!({"echoed": {"noteId": "n2", "note": {"text": "x"}, "tags": ["only"]}, "servedBy": "echo"})
    );
    let bad = client
        .call("GET", "/v1/echo/n2?mood=MOOD_SAD", &[], "")
        .await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    let openapi = client.call("GET", "/openapi.json", &[], "").await.json();
    assert_eq!(
        openapi["paths"]["/v1/shelves/{shelf.id}/notes/{note_id}:echo"]["post"]["operationId"],
        "Echo"
    );
    running.stop().await;
}

/// A route's deadline bounds the whole answer: a service that sends its
/// head just in time and its message late is cut off at the deadline, not
/// given a second deadline for the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deadline_covers_head_and_body() {
    let descriptors = compile("echo.proto");
    let deadline = Duration::from_millis(600);
    let echo = echo_server_paced(
        descriptors.clone(),
        Pace {
            head: deadline * 8 / 10,
            body: deadline * 3,
            code: 0,
        },
    )
    .await;
    let (running, _dir) = gateway_for(
        echo,
        &descriptors,
        &[("ROUTE_TIMEOUTS", "GET /v1/echo/{note_id}=600")],
    )
    .await;
    let mut client = common::Client::connect(running.addr).await;
    let started = Instant::now();
    let reply = client.call("GET", "/v1/echo/n1", &[], "").await;
    let took = started.elapsed();
    assert_eq!(reply.status, 504, "{}", reply.text());
    // A second timer for the body would answer at 1.8x the deadline; the
    // margin over 1x is for a loaded machine.
    assert!(
        took < deadline * 15 / 10,
        "answered after {took:?} with a deadline of {deadline:?}"
    );
    running.stop().await;
}

/// A native gRPC call answered with a 200 head and a failing status in
/// its trailers is counted and logged with that status, not as a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_counted_by_their_trailers() {
    let descriptors = compile("echo.proto");
    let echo = echo_server_paced(
        descriptors.clone(),
        Pace {
            code: 5,
            ..Pace::default()
        },
    )
    .await;
    let (running, _dir) = gateway_for(echo, &descriptors, &[]).await;
    let stream = tokio::net::TcpStream::connect(running.addr)
        .await
        .expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let request = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{}/platform.echo.v1.EchoService/Echo",
            running.addr
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(&[
            0, 0, 0, 0, 0,
        ])))
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    assert_eq!(response.status(), 200);
    let collected = response.into_body().collect().await.expect("body");
    let trailers = collected.trailers().cloned().unwrap_or_default();
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"5"[..])
    );

    let mut admin = common::Client::connect(running.admin_addr).await;
    let metrics = admin
        .call(
            "GET",
            "/metrics",
            &[("authorization", &format!("Bearer {}", common::ADMIN_TOKEN))],
            "",
        )
        .await
        .text();
    let counted = metrics.lines().find(|l| {
        l.starts_with("http_server_request_duration_seconds_count")
            && l.contains("protocol=\"grpc\"")
            && l.contains("service=\"echo\"")
    });
    let counted = counted.unwrap_or_else(|| panic!("no gRPC request counted:\n{metrics}"));
    assert!(counted.contains("grpc_code=\"NOT_FOUND\""), "{counted}");
    running.stop().await;
}

#[test]
fn ambiguous_routes_are_refused_naming_both() {
    let echo = compile("echo.proto");
    let clash = compile("clash.proto");
    let err = gateway::contract::routes::RouteTable::from_descriptor_sets(&[&echo, &clash])
        .expect_err("two methods claim GET /v1/echo/{...}")
        .to_string();
    assert!(err.contains("platform.echo.v1.EchoService.Echo"), "{err}");
    assert!(err.contains("platform.clash.v1.ClashService.Get"), "{err}");
}
