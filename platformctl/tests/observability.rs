//! The dashboards and rules are checked against reality: `platformctl up
//! --observe` runs the platform with a real Prometheus (the one installed
//! here) loaded with the project's rules; traffic flows (green failing part
//! of its calls, a rollout mirroring reads to green), and then every
//! recording rule, every expression of every dashboard panel and every
//! template variable must return data through Prometheus' query API, and
//! every alert and annotation expression must at least parse. A dashboard
//! naming a metric the platform does not export fails here.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{addr, http, split};

// Outside the ephemeral range, and clear of every other test's ports.
const OFFSET: i32 = 11_625;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs an instant query: Err(what is wrong) when it does not parse, or
/// Ok(number of series or samples it returned).
async fn query(prometheus: std::net::SocketAddr, expr: &str) -> Result<usize, String> {
    let path = format!("/api/v1/query?query={}", encode(expr));
    let reply = http(prometheus, "GET", &path, &[], "").await;
    let (_, body) = split(&reply);
    // The body may be chunked: the JSON object is between the outer braces.
    let json = match (body.find('{'), body.rfind('}')) {
        (Some(start), Some(end)) => &body[start..=end],
        _ => return Err(format!("no JSON in the answer: {reply}")),
    };
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| format!("{e}: {json}"))?;
    if value["status"] != "success" {
        return Err(value["error"].as_str().unwrap_or("failed").to_owned());
    }
    let result = &value["data"]["result"];
    Ok(match value["data"]["resultType"].as_str() {
        Some("scalar") | Some("string") => 1,
        _ => result.as_array().map_or(0, Vec::len),
    })
}

/// A query as Prometheus sees it once Grafana filled in the variables: one
/// service, both colors, every version.
fn fill(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "10s")
        .replace("$service", "orders")
        .replace("$color", "blue|green")
        .replace("$version", ".*")
}

/// `label_values(metric{...}, label)` as a query returning the values.
fn variable_query(query: &str) -> String {
    let inner = query
        .trim()
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected variable query {query}"));
    let (selector, label) = inner
        .rsplit_once(',')
        .expect("label_values(selector, label)");
    format!("group by ({}) ({})", label.trim(), selector.trim())
}

/// Every (where, expression) of a dashboard: panel targets (rows too),
/// template variables, annotations; `true` when it must return data.
fn dashboard_queries(file: &Path) -> Vec<(String, String, bool)> {
    let text = std::fs::read_to_string(file).expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let name = file
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let mut out = Vec::new();
    let mut panels: Vec<serde_json::Value> =
        dashboard["panels"].as_array().expect("panels").clone();
    while let Some(panel) = panels.pop() {
        if let Some(nested) = panel["panels"].as_array() {
            panels.extend(nested.iter().cloned());
        }
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a Prometheus expr");
            out.push((
                format!("{name} panel {:?}", panel["title"]),
                fill(expr),
                true,
            ));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        let query = variable["query"]["query"].as_str().expect("variable query");
        out.push((
            format!("{name} variable {:?}", variable["name"]),
            fill(&variable_query(query)),
            true,
        ));
    }
    for annotation in dashboard["annotations"]["list"]
        .as_array()
        .expect("annotations")
    {
        if let Some(expr) = annotation["expr"].as_str() {
            out.push((
                format!("{name} annotation {:?}", annotation["name"]),
                fill(expr),
                false,
            ));
        }
    }
    assert!(!out.is_empty(), "{name} has no queries");
    out
}

/// (where, expression, must return data) of every rule: a recording rule is
/// queried by the name it records; an alert must parse (it fires only on
/// trouble).
fn rule_queries() -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for file in ["recording.yml", "alerts.yml"] {
        let path = repo().join("observability/prometheus/rules").join(file);
        let text = std::fs::read_to_string(&path).expect("rules");
        let rules: serde_yaml::Value = serde_yaml::from_str(&text).expect("rules YAML");
        for group in rules["groups"].as_sequence().expect("groups") {
            for rule in group["rules"].as_sequence().expect("rules") {
                let expr = rule["expr"].as_str().expect("expr").to_owned();
                if let Some(record) = rule["record"].as_str() {
                    out.push((format!("{file} record {record}"), record.to_owned(), true));
                } else {
                    let alert = rule["alert"].as_str().expect("alert");
                    out.push((format!("{file} alert {alert}"), expr, false));
                }
            }
        }
    }
    out
}

/// Requests through the gateway until stopped: orders created and listed on
/// the live color, reads forced to green (which fails part of them), and
/// notifications.
fn traffic(gateway: std::net::SocketAddr, bearer: String, preview: String, stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let auth = [("authorization", bearer.as_str())];
            let green = [
                ("authorization", bearer.as_str()),
                ("x-color", "green"),
                ("x-color-token", preview.as_str()),
            ];
            let _ = match n % 4 {
                0 => {
                    let body = format!(
                        r#"{{"items":[{{"sku":"mug-3","quantity":1,"unitPriceMinor":700}}],"currency":"EUR","paymentMethod":"pm_card_visa","requestId":"obs-{n}"}}"#
                    );
                    http(gateway, "POST", "/v1/orders", &auth, &body).await
                }
                1 => http(gateway, "GET", "/v1/orders?pageSize=5", &auth, "").await,
                2 => http(gateway, "GET", "/v1/orders?pageSize=5", &green, "").await,
                _ => http(gateway, "GET", "/v1/notifications", &auth, "").await,
            };
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_and_dashboard_query_returns_data_from_the_running_platform() {
    if common::prometheus_missing() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let platform = common::up_with(
        &data,
        OFFSET,
        &[],
        &[
            "--observe",
            "--green-version",
            "2.0.0",
            "--green-env",
            "FAULT_ERROR_RATE=0.3",
        ],
    );
    let (gateway, prometheus) = (addr(OFFSET, 8080), addr(OFFSET, 9090));
    // Prometheus scrapes the gateway, the 8 service processes and itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    while query(prometheus, "up == 1").await != Ok(10) {
        assert!(
            Instant::now() < deadline,
            "not every target is up: {:?}",
            query(prometheus, "up == 1").await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    traffic(
        gateway,
        common::bearer(gateway, "observe@example.com").await,
        std::fs::read_to_string(data.join("preview-token")).expect("preview token"),
        stop.clone(),
    );
    // A rollout that first mirrors reads to green: mirrored traffic and a
    // rollout state to show. Its first step is judged after the test ends.
    let mut rollout = std::process::Command::new(env!("CARGO_BIN_EXE_platformctl"))
        .args([
            "rollout",
            "orders",
            "--to",
            "green",
            "--mirror",
            "50",
            "--interval",
            "5m",
        ])
        .arg("--data-dir")
        .arg(&data)
        .arg(format!("--admin-url=http://{}", addr(OFFSET, 9901)))
        .arg(format!("--gateway-url=http://{gateway}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("platformctl rollout starts");

    let mut checks: Vec<(String, String, bool)> = rule_queries();
    let dashboards = repo().join("observability/grafana/dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dashboards)
        .expect("dashboards")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "overview, blue/green, service, gateway");
    for file in &files {
        checks.extend(dashboard_queries(file));
    }

    // Rules need a few evaluations over the traffic; give them time, then
    // report everything that is still wrong at once.
    let deadline = Instant::now() + Duration::from_secs(120);
    let failures = loop {
        let mut failures = Vec::new();
        for (place, expr, needs_data) in &checks {
            match query(prometheus, expr).await {
                Err(error) => {
                    failures.push(format!("{place}: does not parse: {error}\n    {expr}"))
                }
                Ok(0) if *needs_data => failures.push(format!("{place}: no data\n    {expr}")),
                Ok(_) => {}
            }
        }
        if failures.is_empty() || Instant::now() > deadline {
            break failures;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    stop.store(true, Ordering::Relaxed);
    let _ = rollout.kill();
    let _ = rollout.wait();
    assert!(
        failures.is_empty(),
        "{} of {} queries fail against the running platform:\n{}",
        failures.len(),
        checks.len(),
        failures.join("\n")
    );

    // The check itself can fail: a metric the platform does not export has
    // no data, and broken PromQL does not parse.
    assert_eq!(
        query(
            prometheus,
            &fill("rate(gateway_requests_total{service=\"$service\"}[$__rate_interval])")
        )
        .await,
        Ok(0)
    );
    assert!(query(prometheus, "sum by (service (up)").await.is_err());
    assert!(platform.interrupt().success());
}
