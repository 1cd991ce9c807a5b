//! A headless Chromium driven over the Chrome DevTools Protocol, with just
//! enough WebSocket (RFC 6455) to talk to it: the upgrade handshake, masked
//! text frames out, text frames in (any length, fragmented or not), pongs.
#![allow(dead_code)]

use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long any one wait may take: generous, for a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A Chromium process and a DevTools session on its first page.
pub struct Browser {
    child: tokio::process::Child,
    pub page: Page,
}

impl Browser {
    /// Starts Chromium with its profile in `profile` (an empty directory)
    /// and attaches to the blank page it opens.
    pub async fn launch(profile: &Path) -> Browser {
        let mut child = tokio::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");
        let port = devtools_port(profile, &mut child).await;
        let socket_url = page_socket_url(port).await;
        let page = Page {
            socket: WebSocket::connect(&socket_url).await,
            next_id: 0,
            events: Vec::new(),
        };
        Browser { child, page }
    }

    pub async fn close(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Chromium writes the port it chose to `DevToolsActivePort` once it listens.
async fn devtools_port(profile: &Path, child: &mut tokio::process::Child) -> u16 {
    let file: PathBuf = profile.join("DevToolsActivePort");
    let start = Instant::now();
    loop {
        if let Ok(text) = tokio::fs::read_to_string(&file).await
            && let Some(Ok(port)) = text.lines().next().map(str::parse::<u16>)
        {
            return port;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("chromium exited before listening: {status}");
        }
        assert!(
            start.elapsed() < DEADLINE,
            "chromium did not write {} within {DEADLINE:?}",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The DevTools WebSocket address of the first page target.
async fn page_socket_url(port: u16) -> String {
    let start = Instant::now();
    loop {
        if let Some(url) = http_get(port, "/json/list")
            .await
            .and_then(|body| serde_json::from_str::<Value>(&body).ok())
            .and_then(|targets| {
                targets.as_array()?.iter().find_map(|t| {
                    (t["type"] == "page")
                        .then(|| t["webSocketDebuggerUrl"].as_str().map(str::to_owned))
                        .flatten()
                })
            })
        {
            return url;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no page target on DevTools port {port} within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A plain HTTP/1.1 GET on loopback; the body, if the answer was a 200.
/// DevTools keeps the connection open, so the body is read by its length.
async fn http_get(port: u16, path: &str) -> Option<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let mut stream = BufReader::new(stream);
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    stream.get_mut().write_all(request.as_bytes()).await.ok()?;
    let read = async {
        let mut status = String::new();
        stream.read_line(&mut status).await.ok()?;
        let mut length = 0;
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await.ok()? == 0 {
                return None;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().ok()?;
            }
        }
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await.ok()?;
        status
            .starts_with("HTTP/1.1 200")
            .then(|| String::from_utf8_lossy(&body).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()
        .flatten()
}

/// One DevTools session: commands out, their results back, and the events
/// that arrived in between kept in `events`.
pub struct Page {
    socket: WebSocket,
    next_id: u64,
    pub events: Vec<Value>,
}

impl Page {
    /// Sends a command and returns its `result`, or its `error` as `Err`.
    pub async fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let message = json!({"id": id, "method": method, "params": params});
        self.socket.send_text(&message.to_string()).await;
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let text = tokio::time::timeout(left, self.socket.read_text())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} within {DEADLINE:?}"));
            let message: Value = serde_json::from_str(&text).expect("DevTools sends JSON");
            if message["id"] == id {
                return match message.get("error") {
                    Some(error) => Err(error.clone()),
                    None => Ok(message["result"].clone()),
                };
            }
            if message.get("method").is_some() {
                self.events.push(message);
            }
        }
    }

    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .await
            .unwrap_or_else(|error| panic!("{method} failed: {error}"))
    }

    /// Evaluates `expression` in the page (awaiting a promise), returning its
    /// value or, as `Err`, why it threw.
    pub async fn try_eval(&mut self, expression: &str) -> Result<Value, String> {
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        let result = self
            .try_call("Runtime.evaluate", params)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(details) = result.get("exceptionDetails") {
            let text = details["exception"]["description"]
                .as_str()
                .or(details["text"].as_str())
                .unwrap_or("exception");
            return Err(text.to_owned());
        }
        Ok(result["result"]["value"].clone())
    }

    pub async fn eval(&mut self, expression: &str) -> Value {
        self.try_eval(expression)
            .await
            .unwrap_or_else(|e| panic!("{expression}: {e}"))
    }

    /// Evaluates `expression` until it is truthy; panics after [`DEADLINE`]
    /// with `what`, the last value and the page's text.
    pub async fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        let start = Instant::now();
        loop {
            let last = self.try_eval(expression).await;
            match &last {
                Ok(Value::Null | Value::Bool(false)) => {}
                Ok(Value::String(s)) if s.is_empty() => {}
                Ok(Value::Number(n)) if n.as_f64() == Some(0.0) => {}
                Ok(value) => return value.clone(),
                Err(_) => {}
            }
            if start.elapsed() > DEADLINE {
                let text = self
                    .try_eval("document.body ? document.body.innerText : ''")
                    .await;
                panic!(
                    "waited {DEADLINE:?} for {what}; last: {last:?}; page text:\n{}",
                    text.ok()
                        .and_then(|t| t.as_str().map(str::to_owned))
                        .unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Loads `url` and waits until the document is complete.
    pub async fn navigate(&mut self, url: &str) {
        let result = self.call("Page.navigate", json!({"url": url})).await;
        if let Some(error) = result.get("errorText") {
            panic!("cannot load {url}: {error}");
        }
        let check = format!(
            "location.href === {} && document.readyState === 'complete'",
            json!(url)
        );
        self.wait_for(&format!("{url} to load"), &check).await;
    }

    /// A PNG of the viewport.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        let result = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(result["data"].as_str().expect("screenshot data"))
            .expect("base64 PNG")
    }
}

/// A WebSocket client connection: text frames out (masked, as a client must),
/// whole text messages in.
pub struct WebSocket {
    stream: BufReader<TcpStream>,
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Bytes no peer can predict, without a random number crate.
fn unpredictable<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    for chunk in out.chunks_mut(8) {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        let bytes = hasher.finish().to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
    out
}

impl WebSocket {
    /// Connects to a `ws://host:port/path` address and upgrades.
    pub async fn connect(url: &str) -> WebSocket {
        let rest = url.strip_prefix("ws://").expect("a ws:// address");
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let stream = TcpStream::connect(authority)
            .await
            .unwrap_or_else(|e| panic!("connect to {authority}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        let mut stream = BufReader::new(stream);
        let key = base64::engine::general_purpose::STANDARD.encode(unpredictable::<16>());
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .expect("send the upgrade");
        let mut status = String::new();
        stream
            .read_line(&mut status)
            .await
            .expect("read the upgrade answer");
        assert!(
            status.starts_with("HTTP/1.1 101"),
            "{url} refused the upgrade: {status}"
        );
        // The rest of the head; frames may follow in the same read, and stay
        // in the buffer for `read_text`.
        loop {
            let mut line = String::new();
            let n = stream.read_line(&mut line).await.expect("read a header");
            assert!(n > 0, "the connection closed during the upgrade");
            if line == "\r\n" {
                break;
            }
        }
        WebSocket { stream }
    }

    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x80 | opcode);
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | u8::try_from(len).expect("under 126"));
        } else if let Ok(len) = u16::try_from(len) {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&len.to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mask = unpredictable::<4>();
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream
            .get_mut()
            .write_all(&frame)
            .await
            .expect("send a frame");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(OP_TEXT, text.as_bytes()).await;
    }

    /// One frame: FIN, opcode and the unmasked payload.
    async fn read_frame(&mut self) -> (bool, u8, Vec<u8>) {
        let mut head = [0u8; 2];
        self.stream
            .read_exact(&mut head)
            .await
            .expect("the DevTools connection closed");
        let fin = head[0] & 0x80 != 0;
        let opcode = head[0] & 0x0F;
        let masked = head[1] & 0x80 != 0;
        let len = match head[1] & 0x7F {
            126 => u64::from(self.stream.read_u16().await.expect("16-bit length")),
            127 => self.stream.read_u64().await.expect("64-bit length"),
            n => u64::from(n),
        };
        let mut mask = [0u8; 4];
        if masked {
            self.stream.read_exact(&mut mask).await.expect("mask");
        }
        let mut payload = vec![0u8; usize::try_from(len).expect("a frame that fits in memory")];
        self.stream.read_exact(&mut payload).await.expect("payload");
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        (fin, opcode, payload)
    }

    /// The next whole text message, answering pings on the way.
    pub async fn read_text(&mut self) -> String {
        let mut message = Vec::new();
        let mut in_message = false;
        loop {
            let (fin, opcode, payload) = self.read_frame().await;
            match opcode {
                OP_PING => self.send_frame(OP_PONG, &payload).await,
                OP_PONG => {}
                OP_CLOSE => panic!("the DevTools connection was closed by the browser"),
                OP_TEXT | OP_BINARY | OP_CONTINUATION => {
                    assert!(
                        in_message == (opcode == OP_CONTINUATION),
                        "a continuation frame out of place"
                    );
                    in_message = true;
                    message.extend_from_slice(&payload);
                    if fin {
                        return String::from_utf8(message).expect("UTF-8 text");
                    }
                }
                other => panic!("unknown WebSocket opcode {other}"),
            }
        }
    }
}
