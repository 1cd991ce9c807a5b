//! `/metrics` read by the Prometheus project's own parsers (the Python
//! `prometheus_client`): the classic text parser for `text/plain;
//! version=0.0.4`, the strict OpenMetrics parser for
//! `application/openmetrics-text`, chosen by the content type the server
//! declared, as a scraper does; and the classic text linted by `promtool
//! check metrics`.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PARSE: &str = r#"
import json, sys
content_type = sys.argv[1]
text = sys.stdin.read()
if content_type.startswith("application/openmetrics-text"):
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
elif content_type.startswith("text/plain"):
    from prometheus_client.parser import text_string_to_metric_families
else:
    sys.exit(f"no Prometheus parser reads {content_type!r}")
families = {}
for family in text_string_to_metric_families(text):
    families[family.name] = family.type
print(json.dumps(families))
"#;

/// `GET /metrics` with `accept` (none when `None`): the declared content
/// type and the body.
pub async fn scrape(addr: SocketAddr, accept: Option<&str>) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{accept}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .expect("a content type");
    (content_type, body.to_owned())
}

/// Each metric family's name and type as the parser of `content_type` reads
/// `body`; panics with the parser's message when it refuses the body.
/// `None` when `prometheus_client` is not installed outside CI.
pub fn parse(content_type: &str, body: &str) -> Option<BTreeMap<String, String>> {
    if !crate::python_module("prometheus_client", "prometheus-client", "the parser check") {
        return None;
    }
    let output = fed(
        Command::new("python3").args(["-c", PARSE, content_type]),
        body,
    )
    .expect("python3 runs");
    assert!(
        output.status.success(),
        "the {content_type} parser refuses the body: {}\n{body}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("families as JSON"))
}

/// `promtool check metrics` (Prometheus's own linter of the classic text
/// format) on `body`; skipped when promtool is not installed outside CI.
fn promtool_lint(body: &str) {
    let output = match fed(Command::new("promtool").args(["check", "metrics"]), body) {
        Ok(output) => output,
        Err(_) if std::env::var_os("CI").is_none() => {
            eprintln!("note: promtool is not installed; skipping its lint");
            return;
        }
        Err(e) => panic!("promtool is required under CI (scripts/install-tools.sh): {e}"),
    };
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `command` with `input` on its standard input; its output, or why
/// it could not be started.
fn fed(command: &mut Command, input: &str) -> std::io::Result<std::process::Output> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write the input");
    Ok(child.wait_with_output().expect("the command ends"))
}

/// What Prometheus sends when it scrapes.
pub const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

/// Scrapes `addr` as Prometheus and as a client that names no format, and
/// checks that each answer is read by the parser of the type it declares,
/// with `expected` families of the given types in both.
pub async fn check(addr: SocketAddr, expected: &[(&str, &str)]) {
    for (accept, declared) in [
        (
            Some(PROMETHEUS_ACCEPT),
            "application/openmetrics-text; version=1.0.0",
        ),
        (None, "text/plain; version=0.0.4"),
    ] {
        let (content_type, body) = scrape(addr, accept).await;
        assert!(
            content_type.starts_with(declared),
            "Accept {accept:?} answered as {content_type}"
        );
        if declared.starts_with("text/plain") {
            promtool_lint(&body);
        }
        let Some(families) = parse(&content_type, &body) else {
            return;
        };
        for (name, kind) in expected {
            assert_eq!(
                families.get(*name).map(String::as_str),
                Some(*kind),
                "{name} read from {content_type} as {:?}: {families:?}",
                families.get(*name)
            );
        }
    }
}
