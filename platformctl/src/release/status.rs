//! `status` and `history`: the state of every service as the gateway sees
//! it, as a table for people or JSON for scripts.

use std::fmt::Write;

use serde_json::Value;

use super::client::Admin;
use super::exit::{CtlError, REFUSED};

fn percent(v: &Value) -> String {
    v.as_f64()
        .map_or("-".into(), |r| format!("{:.2}%", r * 100.0))
}

fn millis(v: &Value) -> String {
    v.as_f64().map_or("-".into(), |ms| format!("{ms:.1} ms"))
}

/// One line on the rollout in progress, or None.
pub fn rollout_line(service: &Value, at_ms: i64) -> Option<String> {
    let r = service.get("rollout").filter(|r| !r.is_null())?;
    let steps = r["steps"].as_array().map_or(0, Vec::len);
    let step = r["step"].as_u64().unwrap_or(0) as usize;
    let share = r["steps"][step].as_u64().unwrap_or(0);
    let target = r["target"].as_str().unwrap_or("?");
    let phase = r["phase"].as_str().unwrap_or("?");
    let left_ms =
        r["step_started_ms"].as_i64().unwrap_or(0) + r["interval_ms"].as_i64().unwrap_or(0) - at_ms;
    let beat = (at_ms - r["heartbeat_ms"].as_i64().unwrap_or(at_ms)).max(0) as f64 / 1000.0;
    let what = match phase {
        "mirroring" => format!("mirroring {}% of reads to {target}", r["mirror_percent"]),
        "aborting" => format!("shifting back from {target}"),
        _ => format!("step {}/{steps} ({share}% to {target})", step + 1),
    };
    let paused = if r["paused"].as_bool() == Some(true) {
        ", PAUSED"
    } else {
        ""
    };
    Some(format!(
        "rollout to {target}: {what}{paused}, {}s left in the step, controller heard {beat:.1}s ago, by {}",
        (left_ms.max(0) + 999) / 1000,
        r["who"].as_str().unwrap_or("?")
    ))
}

/// The table of services x colors.
pub fn table(status: &Value) -> String {
    let mut out = String::new();
    let at_ms = status["at_ms"].as_i64().unwrap_or(0);
    let _ = writeln!(
        out,
        "{:<14} {:<6} {:>6}  {:<16} {:>7}  {:>7}  {:>8}  {:>9}",
        "SERVICE", "COLOR", "WEIGHT", "VERSION", "HEALTHY", "RATE/S", "ERRORS", "P99"
    );
    let empty = serde_json::Map::new();
    for (name, service) in status["services"].as_object().unwrap_or(&empty) {
        for (i, color) in ["blue", "green"].iter().enumerate() {
            let c = &service["colors"][color];
            let endpoints = c["endpoints"].as_array().map_or(0, Vec::len);
            let versions = c["versions"]
                .as_array()
                .map(|v| {
                    v.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "-".into());
            let live = &c["live"];
            let requests = live["requests"].as_u64().unwrap_or(0);
            let _ = writeln!(
                out,
                "{:<14} {:<6} {:>5}%  {:<16} {:>7}  {:>7.1}  {:>8}  {:>9}",
                if i == 0 { name.as_str() } else { "" },
                color,
                c["weight"].as_u64().unwrap_or(0),
                versions,
                format!("{}/{endpoints}", c["healthy"].as_u64().unwrap_or(0)),
                live["rate_per_second"].as_f64().unwrap_or(0.0),
                if requests == 0 {
                    "-".into()
                } else {
                    percent(&live["error_ratio"])
                },
                millis(&live["p99_ms"]),
            );
        }
        if let Some(line) = rollout_line(service, at_ms) {
            let _ = writeln!(out, "  {line}");
        }
        if let Some(m) = service.get("mirror").filter(|m| !m.is_null()) {
            let mirror = &service["colors"][m["to"].as_str().unwrap_or("green")]["mirror"];
            let _ = writeln!(
                out,
                "  mirror to {}: {} copies in the last minute, errors {}, p99 {}",
                m["to"].as_str().unwrap_or("?"),
                mirror["requests"],
                percent(&mirror["error_ratio"]),
                millis(&mirror["p99_ms"])
            );
        }
    }
    let _ = write!(
        out,
        "(rates, errors and p99 over the last minute; errors are server faults only)"
    );
    out
}

/// `history <service>`: finished releases, newest first, and the one running.
pub async fn history(admin: &Admin, service: &str) -> Result<Value, CtlError> {
    let routes = admin.get("/admin/routes").await?;
    if routes["services"].get(service).is_none() {
        return Err(CtlError::new(
            REFUSED,
            format!("unknown service {service:?}"),
        ));
    }
    let mut releases: Vec<Value> = routes["releases"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter(|r| r["service"] == service)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    releases.reverse();
    let running = routes["services"][service]["rollout"].clone();
    Ok(serde_json::json!({ "service": service, "running": running, "releases": releases }))
}

/// The table of `history`'s answer.
pub fn history_table(history: &Value) -> String {
    let service = history["service"].as_str().unwrap_or("?");
    let running = &history["running"];
    let releases = history["releases"].as_array().cloned().unwrap_or_default();
    let mut out = String::new();
    if !running.is_null() {
        let _ = writeln!(
            out,
            "running: rollout to {} started by {}",
            running["target"].as_str().unwrap_or("?"),
            running["who"].as_str().unwrap_or("?")
        );
    }
    let _ = writeln!(
        out,
        "{:<20} {:<9} {:<6} {:<12} {:>5} {:>9}  {:<24} DETAIL",
        "ENDED (UTC)", "KIND", "TO", "OUTCOME", "PEAK", "DURATION", "WHO"
    );
    for r in &releases {
        let ended = r["ended_ms"].as_i64().unwrap_or(0);
        let took = (ended - r["started_ms"].as_i64().unwrap_or(ended)) as f64 / 1000.0;
        let _ = writeln!(
            out,
            "{:<20} {:<9} {:<6} {:<12} {:>4}% {:>8.1}s  {:<24} {}",
            platform_runtime::time::utc(ended),
            r["kind"].as_str().unwrap_or(""),
            r["to"].as_str().unwrap_or(""),
            r["outcome"].as_str().unwrap_or(""),
            r["peak_weight"].as_u64().unwrap_or(0),
            took,
            r["who"].as_str().unwrap_or(""),
            r["detail"].as_str().unwrap_or("")
        );
    }
    if releases.is_empty() {
        let _ = writeln!(out, "(no releases of {service} yet)");
    }
    out.trim_end().to_owned()
}
