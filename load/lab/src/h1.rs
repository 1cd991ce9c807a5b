//! HTTP/1.1 on loopback: connecting from a chosen local address (the
//! gateway counts its per-client limits per address), and response framing
//! on a kept-alive connection: where the first response in a buffer ends,
//! its status, and whether the server closes the connection after it.

use std::net::IpAddr;

use anyhow::{Context, bail};
use tokio::net::{TcpSocket, TcpStream};

/// A connection to 127.0.0.1:`port` from `source` (any address of 127/8).
pub async fn connect_from(source: IpAddr, port: u16) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind((source, 0).into())?;
    let stream = socket.connect(([127, 0, 0, 1], port).into()).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framed {
    /// Bytes of the whole response, head and body.
    pub len: usize,
    pub status: u16,
    pub close: bool,
}

/// The first whole response at the start of `buf`; `Ok(None)` while more
/// bytes are needed (a body without a length ends only with the connection).
pub fn first_response(buf: &[u8]) -> anyhow::Result<Option<Framed>> {
    let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..split]).context("response headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut length = None;
    let mut chunked = false;
    let mut close = status_line.starts_with("HTTP/1.0");
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().context("bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let body_start = split + 4;
    let body_len = if status < 200 || status == 204 || status == 304 {
        Some(0)
    } else if chunked {
        chunked_len(&buf[body_start..])?
    } else if let Some(length) = length {
        (buf.len() - body_start >= length).then_some(length)
    } else {
        None
    };
    Ok(body_len.map(|body| Framed {
        len: body_start + body,
        status,
        close,
    }))
}

/// Bytes of a chunked body (trailers included) once all of it is in `rest`.
fn chunked_len(rest: &[u8]) -> anyhow::Result<Option<usize>> {
    let mut at = 0;
    loop {
        let Some(end) = rest[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&rest[at..at + end]).context("bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            bail!("bad chunk size {size_text:?}");
        };
        at += end + 2;
        if size == 0 {
            // Trailer lines, if any, then an empty line.
            while let Some(end) = rest[at..].windows(2).position(|w| w == b"\r\n") {
                if end == 0 {
                    return Ok(Some(at + 2));
                }
                at += end + 2;
            }
            return Ok(None);
        }
        if rest.len() < at + size + 2 {
            return Ok(None);
        }
        at += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, expect: Result<Option<(usize, u16, bool)>, &str>) {
        let got = first_response(raw.as_bytes())
            .map(|f| f.map(|f| (f.len, f.status, f.close)))
            .map_err(|e| format!("{e:#}"));
        match (got, expect) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{raw:?}"),
            (Err(err), Err(want)) => assert!(err.contains(want), "{err} vs {want}"),
            (got, want) => panic!("{raw:?}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn framing() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        check(ok, Ok(Some((ok.len(), 200, false))));
        check(
            &format!("{ok}HTTP/1.1 200"),
            Ok(Some((ok.len(), 200, false))),
        );
        check("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}", Ok(None));
        check("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n", Ok(None));
        let closing =
            "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        check(closing, Ok(Some((closing.len(), 503, true))));
        let chunked =
            "HTTP/1.1 401 Unauthorized\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        check(chunked, Ok(Some((chunked.len(), 401, false))));
        check(&chunked[..chunked.len() - 2], Ok(None));
        let trailers =
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\na\r\n0\r\nx-t: 1\r\n\r\n";
        check(trailers, Ok(Some((trailers.len(), 200, false))));
        check(
            "HTTP/1.1 204 No Content\r\n\r\n",
            Ok(Some((27, 204, false))),
        );
        check("HTTP/1.1 200 OK\r\n\r\nuntil the end", Ok(None));
        check(
            "HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n",
            Ok(Some((38, 200, true))),
        );
        check("garbage\r\n\r\n", Err("bad status line"));
        check(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
            Err("bad chunk size"),
        );
    }
}
