//! The gateway's log lines are JSON whose values an operator can query:
//! numbers as numbers, names as strings, never a Rust debug rendering of a
//! struct (`ColorWeights { blue: 100, green: 0 }`) inside a string. Read
//! from the log of a real gateway through weight changes, a rollback, a
//! hand edit of the routing file and ordinary calls, written by the same
//! JSON layer the processes use.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ADMIN_TOKEN, Stack};
use tracing_subscriber::layer::SubscriberExt;

/// Everything written to the log, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Captured {
    type Writer = Captured;
    fn make_writer(&'w self) -> Self::Writer {
        self.clone()
    }
}

/// A string that reads like `Name { field: value }`, `Some(..)` or a
/// debug-quoted string: what `?value` puts in a field.
fn looks_like_debug(text: &str) -> bool {
    let struct_like = text.split_once(" { ").is_some_and(|(name, rest)| {
        name.chars().next().is_some_and(char::is_uppercase)
            && name.chars().all(|c| c.is_alphanumeric() || c == '_')
            && rest.ends_with('}')
            && rest.contains(": ")
    });
    struct_like || text.starts_with("Some(") || text.starts_with("\\\"")
}

fn strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
        _ => {}
    }
}

#[test]
fn the_detector_sees_debug_renderings() {
    assert!(looks_like_debug("ColorWeights { blue: 100, green: 0 }"));
    assert!(looks_like_debug("Some(\"green\")"));
    assert!(!looks_like_debug("routing changed"));
    assert!(!looks_like_debug("GET /v1/orders/{id}"));
    assert!(!looks_like_debug("{\"blue\":100}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_hold_plain_values() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(platform_runtime::telemetry::json_log_layer(
            captured.clone(),
        ));
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");

    let stack = Stack::start().await;
    let mut admin = stack.admin().await;
    let with_token = [("authorization", &*format!("Bearer {ADMIN_TOKEN}"))];
    let weights = admin
        .call(
            "PUT",
            "/admin/routes/orders/weights",
            &with_token,
            r#"{"blue":80,"green":20}"#,
        )
        .await;
    assert_eq!(weights.status, 200, "{}", weights.text());
    let rolled = admin
        .call("POST", "/admin/routes/orders/rollback", &with_token, "")
        .await;
    assert_eq!(rolled.status, 200, "{}", rolled.text());
    // A hand edit, by rename, as an editor saves.
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stack.routes_file).expect("file"))
            .expect("json");
    doc["services"]["orders"]["weights"] = serde_json::json!({"blue": 50, "green": 50});
    let edit = stack.routes_file.with_extension("edit");
    std::fs::write(&edit, doc.to_string()).expect("write");
    std::fs::rename(&edit, &stack.routes_file).expect("rename");
    let token = stack.login("logs@example.com").await;
    let bearer = format!("Bearer {token}");
    let mut client = stack.client().await;
    let listed = client
        .call("GET", "/v1/orders", &[("authorization", &bearer)], "")
        .await;
    assert_eq!(listed.status, 200, "{}", listed.text());
    let missing = client
        .call("GET", "/v1/orders/none", &[("authorization", &bearer)], "")
        .await;
    assert_eq!(missing.status, 404, "{}", missing.text());
    // The hand edit is logged once the watcher has applied it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = String::from_utf8(captured.0.lock().expect("log").clone()).expect("UTF-8");
        if text.contains("routing file") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stack.stop().await;

    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let changed: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["message"] == "routing changed")
        .collect();
    assert!(changed.len() >= 2, "no 'routing changed' lines in:\n{text}");
    for line in &changed {
        for field in ["before_blue", "before_green", "after_blue", "after_green"] {
            assert!(line[field].is_u64(), "{field} is not a number: {line}");
        }
    }
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "request" || l["status"].is_u64()),
        "no access log line in:\n{text}"
    );
    assert!(
        text.contains("routing file"),
        "the hand edit is not in:\n{text}"
    );
    for line in &lines {
        let mut values = Vec::new();
        strings(line, &mut values);
        for value in values {
            assert!(
                !looks_like_debug(&value),
                "a debug rendering {value:?} in: {line}"
            );
        }
    }
}
