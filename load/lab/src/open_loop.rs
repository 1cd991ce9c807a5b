//! An open-loop client: requests on a fixed schedule over a few kept-alive
//! connections, each request's latency counted from when it was due (not
//! from when it was sent), so a server falling behind shows in the figures
//! instead of slowing the client down. REST through the gateway (HTTP/1.1)
//! or gRPC straight to a service (HTTP/2), every order with its own request id.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::edge_report::quantile;
use crate::{grpc, h1};

/// What each request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `GET /v1/orders/{id}` through the gateway.
    RestGet {
        order_id: String,
    },
    /// `POST /v1/orders` through the gateway, request ids `{tag}-{k}`.
    RestPost {
        tag: String,
    },
    GrpcGet {
        order_id: String,
    },
    GrpcPost {
        tag: String,
    },
}

impl Call {
    fn is_grpc(&self) -> bool {
        matches!(self, Call::GrpcGet { .. } | Call::GrpcPost { .. })
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    pub token: String,
    pub call: Call,
    /// Requests per second over all connections.
    pub rate: f64,
    pub duration: Duration,
    pub connections: usize,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    pub sent: usize,
    pub failed: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Failures by cause (`HTTP 503`, `gRPC 14`, `timeout`, ...).
    pub causes: BTreeMap<String, usize>,
}

/// A request's latency in ms and, when it failed, why.
pub type Result = (f64, Option<String>);

/// Runs the schedule (`rate * duration` requests) and summarizes it.
pub async fn run(config: &Config) -> Outcome {
    let total = (config.rate * config.duration.as_secs_f64()).round() as u64;
    let results = spread(config.connections, |first, start| {
        let config = config.clone();
        async move { connection(&config, start, first, total).await }
    })
    .await;
    summarize(&results)
}

/// Runs one task per connection, all sharing one schedule that starts a
/// moment from now: connection `first` takes requests `first`,
/// `first + connections`, ... (`per_connection` gets `first` and the start).
/// Returns what they all gathered.
pub async fn spread<T, F, Fut>(connections: usize, per_connection: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(u64, Instant) -> Fut,
    Fut: std::future::Future<Output = Vec<T>> + Send + 'static,
{
    let start = Instant::now() + Duration::from_millis(50);
    let mut tasks = tokio::task::JoinSet::new();
    for first in 0..connections.max(1) {
        tasks.spawn(per_connection(first as u64, start));
    }
    let mut gathered = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(mut part) = done {
            gathered.append(&mut part);
        }
    }
    gathered
}

/// Percentiles of the served requests, failures counted by cause.
pub fn summarize(results: &[Result]) -> Outcome {
    let mut served: Vec<f64> = results
        .iter()
        .filter(|r| r.1.is_none())
        .map(|r| r.0)
        .collect();
    served.sort_by(f64::total_cmp);
    let mut causes = BTreeMap::new();
    for cause in results.iter().filter_map(|r| r.1.as_ref()) {
        *causes.entry(cause.clone()).or_insert(0) += 1;
    }
    Outcome {
        sent: results.len(),
        failed: results.len() - served.len(),
        p50_ms: quantile(&served, 0.50),
        p99_ms: quantile(&served, 0.99),
        causes,
    }
}

/// Requests `first`, `first + connections`, ... of the schedule, one at a time.
async fn connection(config: &Config, start: Instant, first: u64, total: u64) -> Vec<Result> {
    let interval = Duration::from_secs_f64(1.0 / config.rate.max(0.001));
    // Requests still unsent this long after the schedule ended are not sent.
    let give_up = start + config.duration + config.timeout;
    let mut link = Link::None;
    let mut results = Vec::new();
    for k in (first..total).step_by(config.connections.max(1)) {
        let due = start + interval.mul_f64(k as f64);
        tokio::time::sleep_until(due).await;
        let failure = if Instant::now() > give_up {
            Some("not sent (behind schedule)".to_owned())
        } else {
            match tokio::time::timeout(config.timeout, exchange(&mut link, config, k)).await {
                Ok(Ok(None)) => None,
                Ok(Ok(Some(cause))) => Some(cause),
                Ok(Err(err)) => Some(format!("{err}")),
                Err(_) => Some("timeout".to_owned()),
            }
        };
        if failure.is_some() {
            link = Link::None;
        }
        results.push(((Instant::now() - due).as_secs_f64() * 1000.0, failure));
    }
    results
}

/// A kept-alive connection of either kind, opened on first use.
enum Link {
    None,
    Http1(TcpStream, Vec<u8>),
    Http2(grpc::Connection),
}

/// One request: `None` when answered with success (2xx, gRPC OK), else
/// the status it was answered with.
async fn exchange(link: &mut Link, config: &Config, k: u64) -> anyhow::Result<Option<String>> {
    if matches!(link, Link::None) {
        *link = if config.call.is_grpc() {
            Link::Http2(grpc::Connection::open(config.port).await?)
        } else {
            let stream = h1::connect_from(IpAddr::V4(Ipv4Addr::LOCALHOST), config.port).await?;
            Link::Http1(stream, Vec::with_capacity(16 * 1024))
        };
    }
    match (link, &config.call) {
        (Link::Http2(conn), Call::GrpcGet { order_id }) => {
            let code = conn
                .call(grpc::GET_ORDER, &config.token, grpc::get_order(order_id))
                .await?;
            Ok((code != 0).then(|| format!("gRPC {code}")))
        }
        (Link::Http2(conn), Call::GrpcPost { tag }) => {
            let body = grpc::create_order(&format!("{tag}-{k}"));
            let code = conn.call(grpc::CREATE_ORDER, &config.token, body).await?;
            Ok((code != 0).then(|| format!("gRPC {code}")))
        }
        (Link::Http1(stream, buf), call) => {
            let request = rest_request(call, config.port, &config.token, k);
            stream.write_all(request.as_bytes()).await?;
            let status = read_response(stream, buf).await?;
            Ok((!(200..300).contains(&status)).then(|| format!("HTTP {status}")))
        }
        _ => anyhow::bail!("a connection of the wrong kind"),
    }
}

/// The HTTP/1.1 request for call number `k`.
pub fn rest_request(call: &Call, port: u16, token: &str, k: u64) -> String {
    match call {
        Call::RestPost { tag } => {
            let body = format!(
                r#"{{"items":[{{"sku":"sticker-1","quantity":1,"unitPriceMinor":100}}],"currency":"EUR","paymentMethod":"pm_card_visa","requestId":"{tag}-{k}"}}"#
            );
            format!(
                "POST /v1/orders HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        }
        Call::RestGet { order_id } | Call::GrpcGet { order_id } => format!(
            "GET /v1/orders/{order_id} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n"
        ),
        Call::GrpcPost { .. } => String::new(),
    }
}

/// Reads one response off the kept-alive connection; its status.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(framed) = h1::first_response(buf)? {
            anyhow::ensure!(!framed.close, "the server closed the connection");
            return Ok(framed.status);
        }
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "the connection closed mid-response");
        anyhow::ensure!(buf.len() < 1024 * 1024, "response too large");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_post_has_its_own_request_id() {
        let call = Call::RestPost { tag: "t".into() };
        let first = rest_request(&call, 1, "tok", 1);
        assert!(first.contains(r#""requestId":"t-1""#));
        assert!(rest_request(&call, 1, "tok", 2).contains(r#""requestId":"t-2""#));
        let (head, body) = first.split_once("\r\n\r\n").expect("head");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(head.contains("Authorization: Bearer tok"));
    }

    #[test]
    fn summarizes_served_latencies_only() {
        let failed = Some("HTTP 503".to_owned());
        let results = [(1.0, None), (3.0, None), (2.0, None), (900.0, failed)];
        let outcome = summarize(&results);
        assert_eq!((outcome.sent, outcome.failed), (4, 1));
        assert_eq!((outcome.p50_ms, outcome.p99_ms), (2.0, 3.0));
        assert_eq!(outcome.causes.get("HTTP 503"), Some(&1));
    }
}
