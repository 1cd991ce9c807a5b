//! HTTP/1.1 requests to the gateway on loopback: one connection per request
//! (`Connection: close`), so the reply ends where the stream ends and no pool
//! is needed for the few requests a second the tools send themselves.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// `GET path` on 127.0.0.1:`port`, with a bearer token when given.
pub async fn get(
    port: u16,
    path: &str,
    bearer: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<Reply> {
    request(port, "GET", path, bearer, "", timeout).await
}

/// `METHOD path` with a JSON body on 127.0.0.1:`port`.
pub async fn request(
    port: u16,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: &str,
    timeout: Duration,
) -> anyhow::Result<Reply> {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .with_context(|| format!("cannot connect to 127.0.0.1:{port}"))?;
        let auth = bearer
            .map(|token| format!("Authorization: Bearer {token}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        parse_reply(&raw)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .with_context(|| format!("{method} {path} on port {port}: no answer within {timeout:?}"))?
        .with_context(|| format!("{method} {path} on port {port}"))
}

/// A whole HTTP/1.1 response: status line, headers, and a body framed by
/// Content-Length, chunked encoding, or the end of the connection.
pub fn parse_reply(raw: &[u8]) -> anyhow::Result<Reply> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!(
            "incomplete response ({} bytes, no end of headers)",
            raw.len()
        );
    };
    let head = std::str::from_utf8(&raw[..split]).context("response headers are not UTF-8")?;
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().context("bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = length {
        if rest.len() < length {
            bail!("body cut short: {} of {length} bytes", rest.len());
        }
        rest[..length].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Reply {
        status,
        body: String::from_utf8(body).context("response body is not UTF-8")?,
    })
}

fn dechunk(mut rest: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
            bail!("chunked body cut short");
        };
        let size_text = std::str::from_utf8(&rest[..end]).context("bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 {
            bail!("chunk cut short");
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, expect: Result<(u16, &str), &str>) {
        let got = parse_reply(raw.as_bytes())
            .map(|r| (r.status, r.body))
            .map_err(|e| format!("{e:#}"));
        match (got, expect) {
            (Ok((status, body)), Ok((want_status, want_body))) => {
                assert_eq!((status, body.as_str()), (want_status, want_body), "{raw:?}")
            }
            (Err(err), Err(want)) => assert!(err.contains(want), "{err} vs {want}"),
            (got, want) => panic!("{raw:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn framing() {
        check(
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
            Ok((200, "{}")),
        );
        check(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
            Ok((200, "{\"a\":1}")),
        );
        check(
            "HTTP/1.1 401 Unauthorized\r\nconnection: close\r\n\r\nno",
            Ok((401, "no")),
        );
        check(
            "HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}",
            Err("cut short"),
        );
        check("HTTP/1.1 200 OK\r\n", Err("no end of headers"));
        check("garbage\r\n\r\n", Err("bad status line"));
    }
}
