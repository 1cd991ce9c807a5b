//! Release analysis: what the target color did since a step began, next to
//! what the current color did over the same time, judged against the
//! rollout's gates. The numbers come from the gateway's own per-color
//! counters (`/admin/stats`, the default, which needs nothing else) or from
//! Prometheus (`--prometheus`, for many gateway replicas), with the PromQL in
//! `observability/analysis-queries.json` (overridable with `--queries`).

use std::collections::BTreeMap;

use gateway::proxy::stats::{Counts, StatsView, Traffic};
use platform_routing::judge as sequential;
use platform_routing::release::Thresholds;
use platform_runtime::Color;

use super::client::{Admin, Http};
use super::exit::{CtlError, UNREACHABLE, USAGE};

/// What one color did in the window being judged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    pub requests: u64,
    pub server_errors: u64,
    pub p99_ms: Option<f64>,
}

impl Window {
    pub fn error_ratio(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.server_errors as f64 / self.requests as f64
        }
    }

    fn from_counts(counts: &Counts) -> Self {
        Self {
            requests: counts.requests,
            server_errors: counts.server_errors,
            p99_ms: counts.quantile_ms(0.99),
        }
    }
}

/// Tolerance added to the relative gate, so a handful of errors on a quiet
/// current color cannot fail a step by itself.
pub const RELATIVE_SLACK: f64 = 0.005;

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Enough requests, every gate passed.
    Pass,
    /// Every gate passed and the sequential test says the target is no
    /// worse than the live color by its margin: the step may end now.
    Ahead(String),
    /// Both colors fail beyond the limit alike: the platform, not the
    /// release, is in trouble; the rollout should pause, not roll back.
    Incident(String),
    /// Not enough requests yet.
    Wait { have: u64, need: u64 },
    /// A gate failed: which metric, its value and the limit.
    Fail(String),
}

/// Judges the target against the current color with the sequential test of
/// `platform_routing::judge` when the target gets `weight` of the live
/// calls (it may fail a step after every call, before `min_requests`), and
/// against the gates.
pub fn judge(
    target: &Window,
    current: &Window,
    weight: Option<f64>,
    gates: &Thresholds,
) -> Verdict {
    let counts = |w: &Window| sequential::Counts {
        calls: w.requests,
        errors: w.server_errors,
    };
    let settings = sequential::Settings::default();
    let mut ahead = None;
    if let Some(weight) = weight {
        let versus = || {
            format!(
                "error ratio {:.2}% ({} server errors in {} requests) against the current color's {:.2}% ({} in {})",
                target.error_ratio() * 100.0,
                target.server_errors,
                target.requests,
                current.error_ratio() * 100.0,
                current.server_errors,
                current.requests
            )
        };
        match sequential::errors(counts(target), counts(current), weight, settings) {
            sequential::Verdict::Fail { evidence } => {
                return Verdict::Fail(format!(
                    "{}: worse, e-value {evidence:.0} >= {:.0} (sequential test, {:.0}% false alarms at most)",
                    versus(),
                    1.0 / settings.alpha,
                    settings.alpha * 100.0
                ));
            }
            sequential::Verdict::Pass { evidence } => {
                ahead = Some(format!(
                    "{}: no worse than {:.1}x, e-value {evidence:.0} >= {:.0}",
                    versus(),
                    1.0 + settings.margin,
                    1.0 / settings.beta
                ));
            }
            sequential::Verdict::Watch => {}
        }
    }
    if current.requests >= gates.min_requests.max(1)
        && current.error_ratio() > gates.max_error_ratio
        && target.error_ratio() > gates.max_error_ratio
    {
        return Verdict::Incident(format!(
            "both colors fail beyond {:.2}%: the target {:.2}% ({} of {}), the current color {:.2}% ({} of {})",
            gates.max_error_ratio * 100.0,
            target.error_ratio() * 100.0,
            target.server_errors,
            target.requests,
            current.error_ratio() * 100.0,
            current.server_errors,
            current.requests
        ));
    }
    match gates_only(target, current, gates) {
        Verdict::Pass => ahead.map_or(Verdict::Pass, Verdict::Ahead),
        other => other,
    }
}

/// The gates alone: absolute limits, and the current color times a factor.
fn gates_only(target: &Window, current: &Window, gates: &Thresholds) -> Verdict {
    if target.requests < gates.min_requests.max(1) {
        return Verdict::Wait {
            have: target.requests,
            need: gates.min_requests.max(1),
        };
    }
    let ratio = target.error_ratio();
    if ratio > gates.max_error_ratio {
        let times = if gates.max_error_ratio > 0.0 {
            format!(" ({:.1}x the limit)", ratio / gates.max_error_ratio)
        } else {
            String::new()
        };
        return Verdict::Fail(format!(
            "error ratio {:.2}% > max {:.2}%{times}: {} server errors in {} requests",
            ratio * 100.0,
            gates.max_error_ratio * 100.0,
            target.server_errors,
            target.requests
        ));
    }
    if let Some(p99) = target.p99_ms
        && p99 > gates.max_p99_ms
    {
        return Verdict::Fail(format!(
            "p99 latency {p99:.1} ms > max {:.1} ms ({:.1}x the limit) over {} requests",
            gates.max_p99_ms,
            p99 / gates.max_p99_ms,
            target.requests
        ));
    }
    if current.requests >= gates.min_requests.max(1) {
        let limit = current.error_ratio() * gates.max_relative_error + RELATIVE_SLACK;
        if ratio > limit {
            return Verdict::Fail(format!(
                "error ratio {:.2}% > {:.1}x the current color's {:.2}% (+{:.1} points): {} server errors in {} requests",
                ratio * 100.0,
                gates.max_relative_error,
                current.error_ratio() * 100.0,
                RELATIVE_SLACK * 100.0,
                target.server_errors,
                target.requests
            ));
        }
    }
    Verdict::Pass
}

/// Where the numbers come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The gateway's counters; the mark is a snapshot taken when the window began.
    Gateway,
    Prometheus {
        url: String,
        queries: BTreeMap<String, String>,
    },
}

/// The start of a window: the counters then (gateway) or the time (Prometheus).
#[derive(Debug, Clone)]
pub struct Mark {
    stats: Option<StatsView>,
    at: std::time::Instant,
}

pub const DEFAULT_QUERIES: &str = include_str!("../../../observability/analysis-queries.json");

impl Source {
    pub fn prometheus(url: &str, queries_file: Option<&std::path::Path>) -> Result<Self, CtlError> {
        let text = match queries_file {
            Some(file) => std::fs::read_to_string(file).map_err(|e| {
                CtlError::usage(format!("cannot read --queries {}: {e}", file.display()))
            })?,
            None => DEFAULT_QUERIES.to_owned(),
        };
        let queries: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|e| {
            CtlError::usage(format!(
                "the queries file is not a JSON object of strings: {e}"
            ))
        })?;
        for key in ["requests", "server_errors", "p99_seconds"] {
            if !queries.contains_key(key) {
                return Err(CtlError::new(
                    USAGE,
                    format!("the queries file has no {key:?} query"),
                ));
            }
        }
        Ok(Source::Prometheus {
            url: url.trim_end_matches('/').to_owned(),
            queries,
        })
    }

    pub async fn mark(&self, admin: &Admin) -> Result<Mark, CtlError> {
        let stats = match self {
            Source::Gateway => Some(stats(admin).await?),
            Source::Prometheus { .. } => None,
        };
        Ok(Mark {
            stats,
            at: std::time::Instant::now(),
        })
    }

    /// What the `target` color did with `traffic`, and what the other color
    /// did with live traffic, since `mark`.
    pub async fn windows(
        &self,
        admin: &Admin,
        mark: &Mark,
        service: &str,
        target: Color,
        traffic: Traffic,
    ) -> Result<(Window, Window), CtlError> {
        match self {
            Source::Gateway => {
                let now = stats(admin).await?;
                let since = |color: Color, traffic: Traffic| {
                    let before = mark
                        .stats
                        .as_ref()
                        .map(|s| s.series(service, color, traffic).total)
                        .unwrap_or_default();
                    Window::from_counts(&now.series(service, color, traffic).total.since(&before))
                };
                Ok((since(target, traffic), since(target.other(), Traffic::Live)))
            }
            Source::Prometheus { url, queries } => {
                let window = |color, traffic| {
                    prometheus_window(admin, url, queries, mark, service, color, traffic)
                };
                Ok((
                    window(target, traffic).await?,
                    window(target.other(), Traffic::Live).await?,
                ))
            }
        }
    }
}

/// What `color` did with `traffic` since `mark`, by the queries.
async fn prometheus_window(
    admin: &Admin,
    url: &str,
    queries: &BTreeMap<String, String>,
    mark: &Mark,
    service: &str,
    color: Color,
    traffic: Traffic,
) -> Result<Window, CtlError> {
    let seconds = mark.at.elapsed().as_secs().max(10);
    let fill = |q: &str| {
        q.replace("$service", service)
            .replace("$color", color.as_str())
            .replace("$traffic", traffic.as_str())
            .replace("$window", &format!("{seconds}s"))
    };
    let http = &admin.http;
    let requests = query(http, url, &fill(&queries["requests"])).await?;
    let errors = query(http, url, &fill(&queries["server_errors"])).await?;
    let p99 = query(http, url, &fill(&queries["p99_seconds"])).await?;
    Ok(Window {
        requests: requests.unwrap_or(0.0).round() as u64,
        server_errors: errors.unwrap_or(0.0).round() as u64,
        p99_ms: p99.filter(|v| v.is_finite()).map(|s| s * 1000.0),
    })
}

async fn stats(admin: &Admin) -> Result<StatsView, CtlError> {
    let value = admin.get("/admin/stats").await?;
    serde_json::from_value(value).map_err(|e| {
        CtlError::new(
            UNREACHABLE,
            format!("the gateway sent unreadable stats: {e}"),
        )
    })
}

/// One instant query; None when it matched no series.
async fn query(http: &Http, base: &str, promql: &str) -> Result<Option<f64>, CtlError> {
    let encoded = percent_encoding::utf8_percent_encode(promql, percent_encoding::NON_ALPHANUMERIC);
    let url = format!("{base}/api/v1/query?query={encoded}");
    let answer = http
        .send(http::Method::GET, &url, &[], None)
        .await
        .map_err(|e| CtlError::new(UNREACHABLE, format!("Prometheus: {e}")))?;
    let json = answer.json();
    if !answer.status.is_success() || json["status"] != "success" {
        return Err(CtlError::new(
            UNREACHABLE,
            format!(
                "Prometheus refused the query {promql}: {}",
                answer.message()
            ),
        ));
    }
    Ok(json["data"]["result"]
        .as_array()
        .and_then(|r| r.first())
        .and_then(|s| s["value"][1].as_str())
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| !v.is_nan()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gates() -> Thresholds {
        Thresholds {
            max_error_ratio: 0.01,
            max_p99_ms: 500.0,
            max_relative_error: 2.0,
            min_requests: 50,
        }
    }

    fn window(requests: u64, server_errors: u64, p99: f64) -> Window {
        Window {
            requests,
            server_errors,
            p99_ms: Some(p99),
        }
    }

    #[test]
    fn gates_in_order() {
        let quiet = Window::default();
        assert_eq!(
            judge(&window(10, 5, 1.0), &quiet, None, &gates()),
            Verdict::Wait { have: 10, need: 50 }
        );
        assert_eq!(
            judge(&window(100, 0, 10.0), &quiet, None, &gates()),
            Verdict::Pass
        );
        let Verdict::Fail(why) = judge(&window(100, 20, 10.0), &quiet, None, &gates()) else {
            panic!("20% errors must fail");
        };
        assert!(
            why.starts_with("error ratio 20.00% > max 1.00% (20.0x the limit)"),
            "{why}"
        );
        let Verdict::Fail(why) = judge(&window(100, 0, 900.0), &quiet, None, &gates()) else {
            panic!("slow must fail");
        };
        assert!(
            why.starts_with("p99 latency 900.0 ms > max 500.0 ms"),
            "{why}"
        );
    }

    #[test]
    fn relative_gate_compares_with_the_current_color() {
        let mut loose = gates();
        loose.max_error_ratio = 0.5;
        // 8% against 1%: above 2x + 0.5 points.
        let Verdict::Fail(why) = judge(&window(100, 8, 1.0), &window(1000, 10, 1.0), None, &loose)
        else {
            panic!("8x the current color must fail");
        };
        assert!(why.contains("2.0x the current color's 1.00%"), "{why}");
        // 2% against 1%: within 2x + 0.5 points.
        assert_eq!(
            judge(&window(100, 2, 1.0), &window(1000, 10, 1.0), None, &loose),
            Verdict::Pass
        );
        // A quiet current color is not compared.
        assert_eq!(
            judge(&window(100, 8, 1.0), &window(3, 0, 1.0), None, &loose),
            Verdict::Pass
        );
    }

    #[test]
    fn the_sequential_test_fails_early_passes_early_and_spares_an_incident() {
        // Two errors in the target's first six calls at 5%, none on the
        // current color: failed before min_requests.
        let Verdict::Fail(why) = judge(
            &window(6, 2, 1.0),
            &window(114, 0, 1.0),
            Some(0.05),
            &gates(),
        ) else {
            panic!("two early errors at 5% must fail");
        };
        assert!(why.contains("sequential test"), "{why}");
        assert!(why.starts_with("error ratio 33.33%"), "{why}");
        // As many errors as the current color, in proportion, over many
        // calls: ahead of the interval.
        let mut loose = gates();
        loose.max_error_ratio = 0.05;
        assert!(matches!(
            judge(
                &window(10_000, 200, 1.0),
                &window(10_000, 200, 1.0),
                Some(0.5),
                &loose
            ),
            Verdict::Ahead(_)
        ));
        // Both colors failing one call in five: an incident, not a rollback.
        let Verdict::Incident(why) = judge(
            &window(100, 20, 1.0),
            &window(1_900, 380, 1.0),
            Some(0.05),
            &gates(),
        ) else {
            panic!("a platform-wide failure must not fail the target");
        };
        assert!(why.starts_with("both colors fail beyond 1.00%"), "{why}");
    }
}
