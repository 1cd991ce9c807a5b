//! `status` and `history`: the state of every service as the gateway sees
//! it, as a table for people or JSON for scripts.

use std::fmt::Write;

use platform_routing::RoutingConfig;
use platform_routing::release::{Phase, Release, Rollout};
use platform_routing::view::Status;
use platform_runtime::Color;
use serde::Serialize;

use super::client::Admin;
use super::exit::{CtlError, REFUSED};

fn percent(ratio: f64) -> String {
    format!("{:.2}%", ratio * 100.0)
}

fn millis(ms: Option<f64>) -> String {
    ms.map_or("-".into(), |ms| format!("{ms:.1} ms"))
}

/// One line on a rollout in progress, as of `at_ms`.
pub fn rollout_line(r: &Rollout, at_ms: i64) -> String {
    let steps = r.steps.len();
    let share = r.steps.get(r.step).copied().unwrap_or(0);
    let target = r.target;
    let window = if r.phase == Phase::Baking {
        r.bake_ms
    } else {
        r.interval_ms
    };
    let interval_ms = i64::try_from(window).unwrap_or(i64::MAX);
    let left_ms = r
        .step_started_ms
        .saturating_add(interval_ms)
        .saturating_sub(at_ms);
    let beat = at_ms.saturating_sub(r.heartbeat_ms).max(0) as f64 / 1000.0;
    let what = match r.phase {
        Phase::Mirroring => format!("mirroring {}% of reads to {target}", r.mirror_percent),
        Phase::Aborting => format!("shifting back from {target}"),
        Phase::Baking => format!("baking ({target} at 100%, still judged)"),
        Phase::Shifting => format!("step {}/{steps} ({share}% to {target})", r.step + 1),
    };
    let paused = if r.paused { ", PAUSED" } else { "" };
    format!(
        "rollout to {target}: {what}{paused}, {}s left in the step, controller heard {beat:.1}s ago, by {}",
        (left_ms.max(0) + 999) / 1000,
        r.who
    )
}

/// The table of services x colors.
pub fn table(status: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:<6} {:>6}  {:<16} {:<6} {:>7}  {:>7}  {:>8}  {:>9}",
        "SERVICE", "COLOR", "WEIGHT", "VERSION", "SCHEMA", "HEALTHY", "RATE/S", "ERRORS", "P99"
    );
    for (name, service) in &status.services {
        for (i, color) in Color::ALL.into_iter().enumerate() {
            let c = service.colors.of(color);
            let versions = if c.versions.is_empty() {
                "-".to_owned()
            } else {
                c.versions.join(",")
            };
            let schemas = if c.schemas.is_empty() {
                "-".to_owned()
            } else {
                let all: Vec<String> = c.schemas.iter().map(i64::to_string).collect();
                all.join(",")
            };
            let live = &c.live;
            let _ = writeln!(
                out,
                "{:<14} {:<6} {:>5}%  {:<16} {:<6} {:>7}  {:>7.1}  {:>8}  {:>9}",
                if i == 0 { name.as_str() } else { "" },
                color.as_str(),
                c.weight,
                versions,
                schemas,
                format!("{}/{}", c.healthy, c.endpoints.len()),
                live.rate_per_second,
                if live.requests == 0 {
                    "-".into()
                } else {
                    percent(live.error_ratio)
                },
                millis(live.p99_ms),
            );
        }
        if let Some(rollout) = &service.rollout {
            let _ = writeln!(out, "  {}", rollout_line(rollout, status.at_ms));
        }
        if let Some(m) = &service.mirror {
            let mirror = &service.colors.of(m.to).mirror;
            let _ = writeln!(
                out,
                "  mirror to {}: {} copies in the last minute, errors {}, p99 {}",
                m.to,
                mirror.requests,
                percent(mirror.error_ratio),
                millis(mirror.p99_ms)
            );
        }
    }
    let _ = write!(
        out,
        "(rates, errors and p99 over the last minute; errors are server faults only)"
    );
    out
}

/// `history`'s answer: the releases of one service, newest first, and the
/// rollout of it running now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct History {
    pub service: String,
    pub running: Option<Rollout>,
    pub releases: Vec<Release>,
}

/// `history <service>`, from the routing document.
pub async fn history(admin: &Admin, service: &str) -> Result<History, CtlError> {
    let routes: RoutingConfig = admin.get_as("/admin/routes").await?;
    history_of(&routes, service)
}

/// The history of `service` in a routing document; an unknown service is refused.
fn history_of(routes: &RoutingConfig, service: &str) -> Result<History, CtlError> {
    let Some(routing) = routes.services.get(service) else {
        return Err(CtlError::new(
            REFUSED,
            format!("unknown service {service:?}"),
        ));
    };
    let releases = routes
        .releases
        .iter()
        .rev()
        .filter(|r| r.service == service)
        .cloned()
        .collect();
    Ok(History {
        service: service.to_owned(),
        running: routing.rollout.clone(),
        releases,
    })
}

/// The table of `history`'s answer.
pub fn history_table(history: &History) -> String {
    let mut out = String::new();
    if let Some(running) = &history.running {
        let _ = writeln!(
            out,
            "running: rollout to {} started by {}",
            running.target, running.who
        );
    }
    let _ = writeln!(
        out,
        "{:<20} {:<9} {:<6} {:<12} {:>5} {:>9}  {:<24} DETAIL",
        "ENDED (UTC)", "KIND", "TO", "OUTCOME", "PEAK", "DURATION", "WHO"
    );
    for r in &history.releases {
        let took = r.ended_ms.saturating_sub(r.started_ms) as f64 / 1000.0;
        let _ = writeln!(
            out,
            "{:<20} {:<9} {:<6} {:<12} {:>4}% {:>8.1}s  {:<24} {}",
            platform_runtime::time::utc(r.ended_ms),
            r.kind,
            r.to.as_str(),
            r.outcome,
            r.peak_weight,
            took,
            r.who,
            r.detail
        );
    }
    if history.releases.is_empty() {
        let _ = writeln!(out, "(no releases of {} yet)", history.service);
    }
    out.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Orders a step into a paused rollout to green, payments mirroring
    /// reads to green, auth all on blue with a green that does not answer.
    const STATUS: &str = r#"{"at_ms":1700000010000,"generation":9,"services":{
        "auth":{"weights":{"blue":100,"green":0},"previous_weights":null,"rollout":null,"mirror":null,
          "colors":{
            "blue":{"weight":100,"healthy":1,"versions":["1.0.0"],
              "endpoints":[{"endpoint":"127.0.0.1:50051","serving":true,"version":"1.0.0","error":null}],
              "live":{"rate_per_second":0.5,"requests":30,"server_errors":0,"error_ratio":0.0,"p99_ms":1.25},
              "mirror":{"rate_per_second":0.0,"requests":0,"server_errors":0,"error_ratio":0.0,"p99_ms":null}},
            "green":{"weight":0,"healthy":0,"versions":[],
              "endpoints":[{"endpoint":"127.0.0.1:50151","serving":false,"version":null,"error":"connection refused"}],
              "live":{"rate_per_second":0.0,"requests":0,"server_errors":0,"error_ratio":0.0,"p99_ms":null},
              "mirror":{"rate_per_second":0.0,"requests":0,"server_errors":0,"error_ratio":0.0,"p99_ms":null}}}},
        "orders":{"weights":{"blue":75,"green":25},"previous_weights":{"blue":95,"green":5},
          "rollout":{"id":"rel-1","target":"green","baseline":{"blue":100,"green":0},"steps":[5,25,50,100],
            "step":1,"phase":"shifting","paused":true,"interval_ms":30000,
            "thresholds":{"max_error_ratio":0.01,"max_p99_ms":500.0,"max_relative_error":2.0,"min_requests":50},
            "mirror_percent":0,"started_ms":1699999990000,"step_started_ms":1700000000000,
            "controller":"4242-ctl-1","heartbeat_ms":1700000008500,"timeout_ms":120000,"who":"ana"},
          "mirror":null,
          "colors":{
            "blue":{"weight":75,"healthy":2,"versions":["1.0.0"],"schemas":[2],
              "endpoints":[{"endpoint":"127.0.0.1:50052","serving":true,"version":"1.0.0","error":null},
                           {"endpoint":"127.0.0.1:50062","serving":true,"version":"1.0.0","error":null}],
              "live":{"rate_per_second":1.0,"requests":60,"server_errors":0,"error_ratio":0.0,"p99_ms":2.1},
              "mirror":{"rate_per_second":0.0,"requests":0,"server_errors":0,"error_ratio":0.0,"p99_ms":null}},
            "green":{"weight":25,"healthy":1,"versions":["2.0.0","2.0.1"],"schemas":[2,3],
              "endpoints":[{"endpoint":"127.0.0.1:50152","serving":true,"version":"2.0.0","error":null},
                           {"endpoint":"127.0.0.1:50162","serving":true,"version":"2.0.1","error":null}],
              "live":{"rate_per_second":0.3333333333333333,"requests":20,"server_errors":4,"error_ratio":0.2,"p99_ms":null},
              "mirror":{"rate_per_second":0.0,"requests":0,"server_errors":0,"error_ratio":0.0,"p99_ms":null}}}},
        "payments":{"weights":{"blue":100,"green":0},"previous_weights":null,
          "rollout":{"id":"rel-2","target":"green","baseline":{"blue":100,"green":0},"steps":[50,100],
            "step":0,"phase":"mirroring","paused":false,"interval_ms":20000,
            "thresholds":{"max_error_ratio":0.01,"max_p99_ms":500.0,"max_relative_error":2.0,"min_requests":50},
            "mirror_percent":10,"started_ms":1700000001000,"step_started_ms":1700000001000,
            "controller":"77-ctl-2","heartbeat_ms":1700000009800,"timeout_ms":120000,"who":"bo"},
          "mirror":{"to":"green","percent":10},
          "colors":{
            "blue":{"weight":100,"healthy":1,"versions":["1.0.0"],
              "endpoints":[{"endpoint":"127.0.0.1:50053","serving":true,"version":"1.0.0","error":null}],
              "live":{"rate_per_second":2.0,"requests":120,"server_errors":1,"error_ratio":0.008333333333333333,"p99_ms":3.0517578125},
              "mirror":{"rate_per_second":0.0,"requests":0,"server_errors":0,"error_ratio":0.0,"p99_ms":null}},
            "green":{"weight":0,"healthy":1,"versions":["2.0.0"],
              "endpoints":[{"endpoint":"127.0.0.1:50153","serving":true,"version":"2.0.0","error":null}],
              "live":{"rate_per_second":0.0,"requests":0,"server_errors":0,"error_ratio":0.0,"p99_ms":null},
              "mirror":{"rate_per_second":0.2,"requests":12,"server_errors":1,"error_ratio":0.08333333333333333,"p99_ms":4.76837158203125}}}}}}"#;

    /// Orders with two finished releases and a rollout running.
    const ROUTES: &str = r#"{"generation":9,"services":{
        "orders":{"endpoints":{"blue":["127.0.0.1:50052"],"green":["127.0.0.1:50152"]},
          "weights":{"blue":75,"green":25},"previous_weights":{"blue":95,"green":5},"stable":"blue",
          "rollout":{"id":"rel-3","target":"green","baseline":{"blue":100,"green":0},"steps":[5,25,50,100],
            "step":1,"phase":"shifting","paused":false,"interval_ms":30000,
            "thresholds":{"max_error_ratio":0.01,"max_p99_ms":500.0,"max_relative_error":2.0,"min_requests":50},
            "mirror_percent":0,"started_ms":1699999990000,"step_started_ms":1700000000000,
            "controller":"4242-ctl-1","heartbeat_ms":1700000008500,"timeout_ms":120000,"who":"ana"}},
        "payments":{"endpoints":{"blue":["127.0.0.1:50053"],"green":["127.0.0.1:50153"]},
          "weights":{"blue":100,"green":0}}},
      "changes":[],
      "releases":[
        {"id":"rel-1","service":"orders","kind":"switch","to":"green","who":"ana","ended_by":"ana",
         "started_ms":1699990000000,"ended_ms":1699990000500,"outcome":"switched","peak_weight":100,
         "before":{"blue":100,"green":0},"after":{"blue":0,"green":100}},
        {"id":"rel-x","service":"payments","kind":"rollout","to":"green","who":"bo","ended_by":"bo",
         "started_ms":1699991000000,"ended_ms":1699991060000,"outcome":"completed","peak_weight":100,
         "before":{"blue":100,"green":0},"after":{"blue":0,"green":100}},
        {"id":"rel-2","service":"orders","kind":"rollout","to":"blue","who":"ana","ended_by":"4242-ctl-0",
         "started_ms":1699995000000,"ended_ms":1699995042500,"outcome":"failed","peak_weight":25,
         "before":{"blue":0,"green":100},"after":{"blue":0,"green":100},
         "detail":"step 2/4 (25%): error ratio 3.00% above 1.00%"}]}"#;
    #[test]
    fn table_shows_each_color_the_rollouts_and_the_mirror() {
        let status: Status = serde_json::from_str(STATUS).expect("status");
        let expected = [
            "SERVICE        COLOR  WEIGHT  VERSION          SCHEMA HEALTHY   RATE/S    ERRORS        P99",
            "auth           blue     100%  1.0.0            -          1/1      0.5     0.00%     1.2 ms",
            "               green      0%  -                -          0/1      0.0         -          -",
            "orders         blue      75%  1.0.0            2          2/2      1.0     0.00%     2.1 ms",
            "               green     25%  2.0.0,2.0.1      2,3        1/2      0.3    20.00%          -",
            "  rollout to green: step 2/4 (25% to green), PAUSED, 20s left in the step, controller heard 1.5s ago, by ana",
            "payments       blue     100%  1.0.0            -          1/1      2.0     0.83%     3.1 ms",
            "               green      0%  2.0.0            -          1/1      0.0         -          -",
            "  rollout to green: mirroring 10% of reads to green, 11s left in the step, controller heard 0.2s ago, by bo",
            "  mirror to green: 12 copies in the last minute, errors 8.33%, p99 4.8 ms",
            "(rates, errors and p99 over the last minute; errors are server faults only)",
        ];
        assert_eq!(table(&status), expected.join("\n"));
    }

    #[test]
    fn history_lists_one_service_newest_first() {
        let routes: RoutingConfig = serde_json::from_str(ROUTES).expect("routes");
        let history = history_of(&routes, "orders").expect("known");
        let ids: Vec<&str> = history.releases.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["rel-2", "rel-1"]);
        assert_eq!(
            history.running.as_ref().map(|r| r.id.as_str()),
            Some("rel-3")
        );

        let table = history_table(&history);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "running: rollout to green started by ana");
        assert_eq!(
            lines[2],
            "2023-11-14 20:50:42  rollout   blue   failed         25%     42.5s  ana                      step 2/4 (25%): error ratio 3.00% above 1.00%"
        );
        assert!(
            lines[3].starts_with(
                "2023-11-14 19:26:40  switch    green  switched      100%      0.5s  ana"
            ),
            "{table}"
        );

        let err = history_of(&routes, "billing").expect_err("unknown");
        assert_eq!(
            (err.code, err.message.as_str()),
            (REFUSED, "unknown service \"billing\"")
        );
    }
}
