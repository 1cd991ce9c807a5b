//! gRPC as bytes on an HTTP/2 connection of its own, for what a generated
//! client would never send (garbage frames, odd headers) and for reading a
//! server's own answer: a tonic client keeps its own timer for a deadline
//! and reports CANCELLED when it fires, whatever the server would have said.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

/// Sends one gRPC request to `path` with `headers` and `body` (already
/// framed); the HTTP status and the `grpc-status` and `grpc-message` from
/// the head or the trailers ("" when absent).
pub async fn grpc(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String, String) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2 handshake");
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = sender
        .send_request(request.body(Full::new(Bytes::from(body))).expect("request"))
        .await
        .expect("response");
    let status = response.status().as_u16();
    let mut found = response.headers().clone();
    let collected = response.into_body().collect().await.expect("body");
    if let Some(trailers) = collected.trailers() {
        found.extend(trailers.clone());
    }
    let get = |name: &str| {
        found
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    (status, get("grpc-status"), get("grpc-message"))
}

/// `message` as one uncompressed gRPC frame.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&u32::try_from(message.len()).expect("len").to_be_bytes());
    out.extend_from_slice(message);
    out
}
