//! The ordinary client: a few kept-alive HTTP/1.1 connections sending
//! requests on a fixed schedule, each request's latency counted from when it
//! was due, so a connection stuck behind a slow answer shows in the figures.

use std::net::IpAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::edge_report::{Attempt, Route};
use crate::h1;

#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    /// The client's own address, apart from the attackers'.
    pub source: IpAddr,
    /// Tells this phase's login emails from other phases'.
    pub phase: usize,
    pub connections: usize,
    /// Requests per second over all connections.
    pub rate: u32,
    pub duration: Duration,
    /// Every n-th request is a login (password hashing is costly for auth).
    pub login_every: u32,
    pub timeout: Duration,
}

/// Sends `rate * duration` requests and returns every one's outcome.
pub async fn run(config: &Config) -> Vec<Attempt> {
    let total = u64::from(config.rate) * config.duration.as_secs();
    crate::open_loop::spread(config.connections, |first, start| {
        let config = config.clone();
        async move { connection(&config, start, first, total).await }
    })
    .await
}

/// Requests `first`, `first + connections`, ... of the schedule, one at a time.
async fn connection(config: &Config, start: Instant, first: u64, total: u64) -> Vec<Attempt> {
    let interval = Duration::from_secs_f64(1.0 / f64::from(config.rate.max(1)));
    // Requests still unsent this long after the schedule ended are not sent.
    let give_up = start + config.duration + config.timeout;
    let mut stream: Option<TcpStream> = None;
    let mut attempts = Vec::new();
    let mut buf = Vec::with_capacity(16 * 1024);
    for k in (first..total).step_by(config.connections.max(1)) {
        let due = start + interval * u32::try_from(k).unwrap_or(u32::MAX);
        tokio::time::sleep_until(due).await;
        let route = if (k + 1) % u64::from(config.login_every.max(1)) == 0 {
            Route::Login
        } else {
            Route::Jwks
        };
        if Instant::now() > give_up {
            attempts.push(Attempt {
                route,
                latency: Instant::now() - due,
                result: Err("not sent (behind schedule)"),
            });
            continue;
        }
        let result = tokio::time::timeout(
            config.timeout,
            exchange(&mut stream, config, route, k, &mut buf),
        )
        .await
        .unwrap_or(Err("timeout"));
        if result.is_err() {
            stream = None;
        }
        attempts.push(Attempt {
            route,
            latency: Instant::now() - due,
            result,
        });
    }
    attempts
}

/// One request on the kept-alive connection (opened first when there is
/// none), which is dropped when the server closes it.
async fn exchange(
    stream: &mut Option<TcpStream>,
    config: &Config,
    route: Route,
    k: u64,
    buf: &mut Vec<u8>,
) -> Result<u16, &'static str> {
    let port = config.port;
    if stream.is_none() {
        let opened = h1::connect_from(config.source, port)
            .await
            .map_err(|_| "connect")?;
        *stream = Some(opened);
    }
    let Some(conn) = stream.as_mut() else {
        return Err("connect");
    };
    let request = match route {
        Route::Jwks => format!("GET /v1/auth/jwks HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"),
        Route::Login => {
            // One email per login: auth locks an account after a few failures.
            let body = format!(
                r#"{{"email":"x{}-{k}@example.com","password":"wrong-password-1"}}"#,
                config.phase
            );
            format!(
                "POST /v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
        }
    };
    conn.write_all(request.as_bytes())
        .await
        .map_err(|_| "write failed")?;
    buf.clear();
    let mut chunk = [0u8; 8192];
    loop {
        match h1::first_response(buf) {
            Ok(Some(framed)) => {
                if framed.close {
                    *stream = None;
                }
                return Ok(framed.status);
            }
            Ok(None) => {}
            Err(_) => return Err("bad response"),
        }
        let n = conn
            .read(&mut chunk)
            .await
            .map_err(|err| match err.kind() {
                std::io::ErrorKind::ConnectionReset => "reset",
                _ => "read failed",
            })?;
        if n == 0 {
            // A response framed by the end of the connection, or none.
            *stream = None;
            return crate::http::parse_reply(buf)
                .map(|reply| reply.status)
                .map_err(|_| "closed");
        }
        if buf.len() > 1024 * 1024 {
            return Err("response too large");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
