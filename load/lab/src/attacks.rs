//! The hostile clients of `edge-attack`. Each opens a bounded number of
//! connections to 127.0.0.1, holds them until a given instant, and notes
//! which ones the gateway closed (EOF or reset) and after how long.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::edge_report::Closes;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub enum Attack {
    /// HTTP/2 POSTs whose headers arrive and whose bodies never do.
    SlowH2Bodies {
        connections: usize,
        max_streams: usize,
    },
    /// R.U.D.Y.: HTTP/1.1 POSTs announcing 100 bytes of body, sending one.
    Rudy { connections: usize },
    /// Connections that send nothing, only `PRI`, or half the HTTP/2 preface.
    Idle {
        silent: usize,
        pri: usize,
        half_preface: usize,
    },
    /// Headers a few bytes at a time: slowhttptest -H when given, else our own.
    Slowloris {
        connections: usize,
        slowhttptest: Option<PathBuf>,
        work: PathBuf,
    },
}

impl Attack {
    pub fn name(&self) -> &'static str {
        match self {
            Attack::SlowH2Bodies { .. } => "slow HTTP/2 bodies",
            Attack::Rudy { .. } => "R.U.D.Y.",
            Attack::Idle { .. } => "idle connections",
            Attack::Slowloris { .. } => "slowloris",
        }
    }

    /// What is sent, for the report.
    pub fn describe(&self) -> String {
        match self {
            Attack::SlowH2Bodies {
                connections,
                max_streams,
            } => format!(
                "{connections} h2 connections x up to {max_streams} streams of `POST /v1/auth/login`, headers only"
            ),
            Attack::Rudy { connections } => format!(
                "{connections} HTTP/1.1 `POST /v1/auth/login`, `Content-Length: 100`, 1 byte sent"
            ),
            Attack::Idle {
                silent,
                pri,
                half_preface,
            } => format!("{silent} silent, {pri} `PRI`, {half_preface} half h2 preface"),
            Attack::Slowloris {
                connections,
                slowhttptest,
                ..
            } => match slowhttptest {
                Some(_) => format!("slowhttptest -H, {connections} connections"),
                None => format!("{connections} connections, a header line every 2 s"),
            },
        }
    }
}

/// What the attack saw.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub closes: Closes,
    pub notes: String,
}

/// Runs `attack` against 127.0.0.1:`port` until `until`, its connections
/// taking their local address from `sources` in turn.
pub async fn run(
    attack: &Attack,
    port: u16,
    sources: &[IpAddr],
    until: Instant,
) -> anyhow::Result<Outcome> {
    if sources.is_empty() {
        bail!("no source address for the attack");
    }
    match attack {
        Attack::SlowH2Bodies {
            connections,
            max_streams,
        } => slow_h2_bodies(port, sources, *connections, *max_streams, until).await,
        Attack::Rudy { connections } => {
            let head = format!(
                "POST /v1/auth/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
                 Content-Length: 100\r\n\r\n{{"
            );
            let held = open_and_hold(
                port,
                sources,
                0,
                *connections,
                head.into_bytes(),
                None,
                until,
            )
            .await;
            Ok(outcome(&[("", held)]))
        }
        Attack::Idle {
            silent,
            pri,
            half_preface,
        } => {
            let (silent, pri, half) = tokio::join!(
                open_and_hold(port, sources, 0, *silent, Vec::new(), None, until),
                open_and_hold(port, sources, *silent, *pri, b"PRI".to_vec(), None, until),
                open_and_hold(
                    port,
                    sources,
                    silent + pri,
                    *half_preface,
                    b"PRI * HTTP/2.0\r\n\r\nSM".to_vec(),
                    None,
                    until
                ),
            );
            Ok(outcome(&[
                ("silent", silent),
                ("PRI", pri),
                ("half preface", half),
            ]))
        }
        Attack::Slowloris {
            connections,
            slowhttptest: Some(tool),
            work,
        } => slowhttptest(tool, work, port, *connections, until).await,
        Attack::Slowloris {
            connections,
            slowhttptest: None,
            ..
        } => {
            let head = format!("GET /v1/auth/jwks HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
            let drip = Some(Duration::from_secs(2));
            let held = open_and_hold(
                port,
                sources,
                0,
                *connections,
                head.into_bytes(),
                drip,
                until,
            )
            .await;
            Ok(outcome(&[("", held)]))
        }
    }
}

/// One held connection: how long it was open when the gateway closed it,
/// and the start of any answer it sent.
#[derive(Debug, Clone)]
struct Held {
    closed_after: Option<Duration>,
    answer: Option<String>,
}

/// What a held connection's first bytes were: an HTTP/1 status, or other bytes.
fn answer_of(first: &[u8]) -> Option<String> {
    if first.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&first[..first.len().min(64)]);
    Some(match text.strip_prefix("HTTP/1.") {
        Some(rest) => rest
            .split(' ')
            .nth(1)
            .map_or("HTTP/1 reply".to_owned(), |code| format!("HTTP {code}")),
        None => "non-HTTP/1 bytes".to_owned(),
    })
}

/// Opens `count` connections (the first one from `sources[skip]`) that send
/// `first` and then hold, or drip a header line every `drip`; `None` for
/// each connection that did not open.
async fn open_and_hold(
    port: u16,
    sources: &[IpAddr],
    skip: usize,
    count: usize,
    first: Vec<u8>,
    drip: Option<Duration>,
    until: Instant,
) -> Vec<Option<Held>> {
    let mut tasks = JoinSet::new();
    for i in 0..count {
        let first = first.clone();
        let source = sources[(skip + i) % sources.len()];
        tasks.spawn(async move {
            let opened = Instant::now();
            let mut stream =
                match tokio::time::timeout(CONNECT_TIMEOUT, crate::h1::connect_from(source, port))
                    .await
                {
                    Ok(Ok(stream)) => stream,
                    _ => return None,
                };
            if !first.is_empty() && stream.write_all(&first).await.is_err() {
                return Some(Held {
                    closed_after: Some(opened.elapsed()),
                    answer: None,
                });
            }
            Some(hold(&mut stream, opened, drip, until).await)
        });
    }
    let mut held = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        held.push(done.unwrap_or(None));
    }
    held
}

/// Reads until the gateway closes the connection or `until` comes.
async fn hold(
    stream: &mut TcpStream,
    opened: Instant,
    drip: Option<Duration>,
    until: Instant,
) -> Held {
    let mut first = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut next_drip = drip.map(|every| Instant::now() + every);
    let mut line = 0u32;
    let closed = loop {
        let drip_at = next_drip.unwrap_or(until).min(until);
        tokio::select! {
            read = stream.read(&mut chunk) => match read {
                Ok(0) | Err(_) => break true,
                Ok(n) => {
                    if first.len() < 64 {
                        first.extend_from_slice(&chunk[..n]);
                    }
                }
            },
            _ = tokio::time::sleep_until(drip_at) => {
                if Instant::now() >= until {
                    break false;
                }
                line += 1;
                let header = format!("X-Slow-{line}: {line}\r\n");
                if stream.write_all(header.as_bytes()).await.is_err() {
                    break true;
                }
                next_drip = drip.map(|every| Instant::now() + every);
            }
        }
    };
    Held {
        closed_after: closed.then(|| opened.elapsed()),
        answer: answer_of(&first),
    }
}

/// The closes over every group, and per group what opened, closed and answered.
fn outcome(groups: &[(&str, Vec<Option<Held>>)]) -> Outcome {
    let mut closes = Closes::default();
    let mut notes = Vec::new();
    for (name, held) in groups {
        let opened: Vec<&Held> = held.iter().flatten().collect();
        let closed = opened.iter().filter(|h| h.closed_after.is_some()).count();
        let mut answers: BTreeMap<&str, usize> = BTreeMap::new();
        for answer in opened.iter().filter_map(|h| h.answer.as_deref()) {
            *answers.entry(answer).or_default() += 1;
        }
        closes.opened += opened.len();
        closes
            .after
            .extend(opened.iter().filter_map(|h| h.closed_after));
        let mut note = format!(
            "{}{} of {} opened, {closed} closed by the gateway",
            if name.is_empty() {
                String::new()
            } else {
                format!("{name}: ")
            },
            opened.len(),
            held.len()
        );
        if !answers.is_empty() {
            let list: Vec<String> = answers.iter().map(|(a, n)| format!("{a} x{n}")).collect();
            note.push_str(&format!(", answered {}", list.join(", ")));
        }
        notes.push(note);
    }
    Outcome {
        closes,
        notes: notes.join("; "),
    }
}

/// What happened to one slow-body stream.
fn stream_fate(answer: Result<Result<http::Response<h2::RecvStream>, h2::Error>, ()>) -> String {
    match answer {
        Ok(Ok(response)) => format!("answered {}", response.status().as_u16()),
        Ok(Err(err)) if err.is_go_away() => "GOAWAY".to_owned(),
        Ok(Err(err)) => match err.reason() {
            Some(reason) => format!("reset ({reason:?})"),
            None => "connection error".to_owned(),
        },
        Err(()) => "still waiting at the end".to_owned(),
    }
}

async fn slow_h2_bodies(
    port: u16,
    sources: &[IpAddr],
    connections: usize,
    max_streams: usize,
    until: Instant,
) -> anyhow::Result<Outcome> {
    let mut tasks = JoinSet::new();
    for i in 0..connections {
        let source = sources[i % sources.len()];
        tasks.spawn(slow_h2_connection(port, source, max_streams, until));
    }
    let mut closes = Closes::default();
    let mut fates: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    while let Some(done) = tasks.join_next().await {
        match done.context("an HTTP/2 attack connection panicked")? {
            Ok((closed_after, streams)) => {
                closes.opened += 1;
                closes.after.extend(closed_after);
                for (fate, n) in streams {
                    *fates.entry(fate).or_default() += n;
                }
            }
            Err(err) => failures.push(format!("{err:#}")),
        }
    }
    if closes.opened == 0 {
        bail!(
            "no HTTP/2 attack connection opened: {}",
            failures.join("; ")
        );
    }
    let streams: usize = fates.values().sum();
    let list: Vec<String> = fates.iter().map(|(f, n)| format!("{f}: {n}")).collect();
    let mut notes = format!(
        "{} connections, {streams} streams opened; {}",
        closes.opened,
        list.join(", ")
    );
    if !failures.is_empty() {
        notes.push_str(&format!(
            "; {} connections failed ({})",
            failures.len(),
            failures[0]
        ));
    }
    Ok(Outcome { closes, notes })
}

/// One HTTP/2 connection whose streams never send their body: when the
/// gateway closed it (if it did) and what became of its streams.
async fn slow_h2_connection(
    port: u16,
    source: IpAddr,
    max_streams: usize,
    until: Instant,
) -> anyhow::Result<(Option<Duration>, BTreeMap<String, usize>)> {
    let opened = Instant::now();
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, crate::h1::connect_from(source, port))
        .await
        .context("connect timed out")??;
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, h2::client::handshake(tcp))
        .await
        .context("HTTP/2 handshake timed out")??;
    let mut driver = tokio::spawn(connection);
    let mut client = tokio::time::timeout(CONNECT_TIMEOUT, client.ready())
        .await
        .context("HTTP/2 connection not ready")??;
    // The server's SETTINGS (its stream limit) arrive just after the handshake.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let streams = client.current_max_send_streams().min(max_streams);
    let mut bodies = Vec::with_capacity(streams);
    let mut answers = JoinSet::new();
    for _ in 0..streams {
        let Ok(Ok(ready)) = tokio::time::timeout(CONNECT_TIMEOUT, client.clone().ready()).await
        else {
            break;
        };
        client = ready;
        let request = http::Request::builder()
            .method("POST")
            .uri(format!("http://127.0.0.1:{port}/v1/auth/login"))
            .header("content-type", "application/json")
            .body(())?;
        let Ok((response, body)) = client.send_request(request, false) else {
            break;
        };
        // The body side stays open (and unsent) as long as it is held here.
        bodies.push(body);
        answers.spawn(async move {
            stream_fate(
                tokio::time::timeout_at(until, response)
                    .await
                    .map_err(|_| ()),
            )
        });
    }
    let closed_after = match tokio::time::timeout_at(until, &mut driver).await {
        Ok(_) => Some(opened.elapsed()),
        Err(_) => None,
    };
    let mut fates = BTreeMap::new();
    while let Some(fate) = answers.join_next().await {
        *fates
            .entry(fate.unwrap_or_else(|_| "lost".to_owned()))
            .or_default() += 1;
    }
    drop(bodies);
    drop(client);
    driver.abort();
    Ok((closed_after, fates))
}

/// One row of slowhttptest's CSV: the second since it began, and its
/// connections closed so far and open now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowRow {
    pub second: u64,
    pub closed: usize,
    pub connected: usize,
}

/// slowhttptest's `-g` CSV (`Seconds,Closed,Pending,Connected,...`).
pub fn parse_slowhttptest_csv(text: &str) -> anyhow::Result<Vec<SlowRow>> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .context("empty slowhttptest CSV")?
        .split(',')
        .map(str::trim)
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("slowhttptest CSV has no {name} column"))
    };
    let (seconds, closed, connected) =
        (column("Seconds")?, column("Closed")?, column("Connected")?);
    let mut rows = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let cell = |i: usize| -> anyhow::Result<usize> {
            cells
                .get(i)
                .and_then(|c| c.parse().ok())
                .with_context(|| format!("bad slowhttptest CSV line {line:?}"))
        };
        rows.push(SlowRow {
            second: cell(seconds)? as u64,
            closed: cell(closed)?,
            connected: cell(connected)?,
        });
    }
    Ok(rows)
}

/// Closes from slowhttptest's rows: one per connection closed, timed from
/// the start of the attack (the tool does not time each connection).
fn slow_closes(rows: &[SlowRow]) -> Closes {
    let mut after = Vec::new();
    let mut before = 0;
    for row in rows {
        for _ in before..row.closed {
            after.push(Duration::from_secs(row.second));
        }
        before = before.max(row.closed);
    }
    Closes {
        opened: rows
            .iter()
            .map(|r| r.connected + r.closed)
            .max()
            .unwrap_or(0),
        after,
        from_attack_start: true,
    }
}

async fn slowhttptest(
    tool: &PathBuf,
    work: &std::path::Path,
    port: u16,
    connections: usize,
    until: Instant,
) -> anyhow::Result<Outcome> {
    let seconds = until
        .saturating_duration_since(Instant::now())
        .as_secs()
        .max(1);
    let prefix = work.join("slowloris");
    let log = std::fs::File::create(work.join("slowhttptest.log"))?;
    let mut child = tokio::process::Command::new(tool)
        .args(["-H", "-c"])
        .arg(connections.to_string())
        .args(["-r", "200", "-i", "2", "-x", "10", "-p", "3", "-g", "-l"])
        .arg(seconds.to_string())
        .arg("-o")
        .arg(&prefix)
        .arg("-u")
        .arg(format!("http://127.0.0.1:{port}/v1/auth/jwks"))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", tool.display()))?;
    let status = tokio::time::timeout_at(until + Duration::from_secs(15), child.wait())
        .await
        .context("slowhttptest did not stop on time")??;
    let csv = prefix.with_extension("csv");
    let text = std::fs::read_to_string(&csv).with_context(|| {
        format!(
            "slowhttptest ({status}) wrote no {}: {}",
            csv.display(),
            crate::platform::tail(&work.join("slowhttptest.log"), 5)
        )
    })?;
    let rows = parse_slowhttptest_csv(&text)?;
    let closes = slow_closes(&rows);
    let peak = rows.iter().map(|r| r.connected).max().unwrap_or(0);
    let notes = format!(
        "slowhttptest -H: {connections} requested from 127.0.0.1 alone (the tool cannot choose its address), \
         at most {peak} open at once, {} closed by the gateway \
         (the tool counts closes per second since the attack began, not per connection)",
        closes.after.len()
    );
    Ok(Outcome { closes, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slowhttptest_csv() {
        let text = "Seconds,Closed,Pending,Connected,Service Available\n\
                    0,0,1,0,20\n1,0,1,18,20\n2,0,0,20,20\n11,5,0,15,20\n12,20,0,0,20\n";
        let rows = parse_slowhttptest_csv(text).expect("parses");
        assert_eq!(rows.len(), 5);
        assert_eq!(
            rows[3],
            SlowRow {
                second: 11,
                closed: 5,
                connected: 15
            }
        );
        let closes = slow_closes(&rows);
        assert_eq!(closes.opened, 20);
        assert_eq!(closes.after.len(), 20);
        assert_eq!(closes.after[0], Duration::from_secs(11));
        assert_eq!(closes.after[19], Duration::from_secs(12));
        assert!(parse_slowhttptest_csv("").is_err());
        assert!(parse_slowhttptest_csv("Seconds,Closed\n1,2\n").is_err());
        assert!(parse_slowhttptest_csv("Seconds,Closed,Connected\n1,x,2\n").is_err());
    }

    #[test]
    fn answers() {
        assert_eq!(answer_of(b""), None);
        assert_eq!(
            answer_of(b"HTTP/1.1 408 Request Timeout\r\n").as_deref(),
            Some("HTTP 408")
        );
        assert_eq!(
            answer_of(b"\x00\x00\x12\x04").as_deref(),
            Some("non-HTTP/1 bytes")
        );
    }
}
