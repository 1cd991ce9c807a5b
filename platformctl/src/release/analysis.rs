//! Release analysis: what the target color did since a step began, next to
//! what the current color did over the same time, judged against the
//! rollout's gates. The numbers come from the gateway's own per-color
//! counters (`/admin/stats`, the default, which needs nothing else) or from
//! Prometheus (`--prometheus`, for many gateway replicas), with the PromQL in
//! `observability/analysis-queries.json` (overridable with `--queries`).

use std::collections::BTreeMap;

use gateway::proxy::stats::{Counts, StatsView, Traffic};
use platform_runtime::Color;

use super::client::{Admin, Http};
use super::exit::{CtlError, UNREACHABLE, USAGE};

pub use platform_routing::verdict::{Evidence, Look, Verdict, Window, bake, evidence, judge};

/// The share of the live color's calls that sets a step's latency bound:
/// calls slower than its p90 before the step are "slow", and the latency
/// test compares how often each color is slow.
const SLOW_QUANTILE: f64 = 0.9;
/// Fewer timed calls than this on the live color before a step set no
/// bound: latency is then left to the p99 gate.
const MIN_BASELINE: u64 = 50;

/// What `counts` did, with its calls slower than `slow` (a bucket index of
/// the gateway's counters) counted as slow.
fn window_of(counts: &Counts, slow: Option<usize>) -> Window {
    let timed: u64 = counts.buckets.iter().sum();
    Window {
        requests: counts.requests,
        server_errors: counts.server_errors,
        p99_ms: counts.quantile_ms(0.99),
        timed: slow.map_or(0, |_| timed),
        slow: slow.map_or(0, |i| counts.buckets.iter().skip(i + 1).sum()),
    }
}

/// The bucket (index, upper bound in ms) at the live color's p90 over the
/// last minute of `view`, when it timed enough calls.
fn slow_bucket(view: &StatsView, service: &str, live: Color) -> Option<(usize, f64)> {
    let minute = view.series(service, live, Traffic::Live).last_minute;
    let timed: u64 = minute.buckets.iter().sum();
    if timed < MIN_BASELINE {
        return None;
    }
    let rank = (SLOW_QUANTILE * timed as f64).ceil() as u64;
    let mut seen = 0;
    for (i, n) in minute.buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return view.bounds_ms.get(i).map(|b| (i, *b));
        }
    }
    None
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

/// The start of a window: the counters then (gateway) or the time
/// (Prometheus), and the latency bound of the window's latency test.
#[derive(Debug, Clone)]
pub struct Mark {
    stats: Option<StatsView>,
    at: std::time::Instant,
    slow: Option<Slow>,
}

/// A latency bound: in milliseconds, with the gateway's bucket index or
/// the Prometheus histogram's `le` it was read from.
#[derive(Debug, Clone)]
struct Slow {
    ms: f64,
    bucket: Option<usize>,
    le: Option<String>,
}

impl Mark {
    /// The latency bound the window's slow counts are taken against.
    pub fn slow_ms(&self) -> Option<f64> {
        self.slow.as_ref().map(|s| s.ms)
    }

    /// Counts slow calls against `other`'s bound from now on.
    pub fn keep_bound_of(&mut self, other: &Mark) {
        self.slow = other.slow.clone();
    }
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

    /// Starts a window of `service`'s rollout to `target`: the counters now,
    /// and the latency bound from the live color's last minute.
    pub async fn mark(
        &self,
        admin: &Admin,
        service: &str,
        target: Color,
    ) -> Result<Mark, CtlError> {
        let live = target.other();
        let (stats, slow) = match self {
            Source::Gateway => {
                let view = stats(admin).await?;
                let slow = slow_bucket(&view, service, live).map(|(i, ms)| Slow {
                    ms,
                    bucket: Some(i),
                    le: None,
                });
                (Some(view), slow)
            }
            Source::Prometheus { url, queries } => {
                let slow = match queries.get("latency_buckets") {
                    Some(q) => {
                        let q = fill(q, service, live, Traffic::Live, "1m");
                        prometheus_slow(&query_vector(&admin.http, url, &q).await?)
                    }
                    None => None,
                };
                (None, slow)
            }
        };
        Ok(Mark {
            stats,
            at: std::time::Instant::now(),
            slow,
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
                    let slow = mark.slow.as_ref().and_then(|s| s.bucket);
                    window_of(
                        &now.series(service, color, traffic).total.since(&before),
                        slow,
                    )
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
    let seconds = format!("{}s", mark.at.elapsed().as_secs().max(10));
    let fill = |q: &str| fill(q, service, color, traffic, &seconds);
    let http = &admin.http;
    let requests = query(http, url, &fill(&queries["requests"])).await?;
    let errors = query(http, url, &fill(&queries["server_errors"])).await?;
    let p99 = query(http, url, &fill(&queries["p99_seconds"])).await?;
    let (mut timed, mut slow) = (0, 0);
    if let (Some(bound), Some(q)) = (&mark.slow, queries.get("latency_buckets")) {
        let buckets = query_vector(http, url, &fill(q)).await?;
        let count = |le: &str| {
            buckets
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0, |(_, v)| v.round() as u64)
        };
        timed = count("+Inf");
        let fast = match bound.le.as_deref() {
            Some(le) => count(le),
            None => timed,
        };
        slow = timed.saturating_sub(fast);
    }
    Ok(Window {
        requests: requests.unwrap_or(0.0).round() as u64,
        server_errors: errors.unwrap_or(0.0).round() as u64,
        p99_ms: p99.filter(|v| v.is_finite()).map(|s| s * 1000.0),
        timed,
        slow,
    })
}

fn fill(q: &str, service: &str, color: Color, traffic: Traffic, window: &str) -> String {
    q.replace("$service", service)
        .replace("$color", color.as_str())
        .replace("$traffic", traffic.as_str())
        .replace("$window", window)
}

/// The bound at the live color's p90 from its cumulative buckets (`le`,
/// count) over the last minute, when it timed enough calls.
fn prometheus_slow(buckets: &[(String, f64)]) -> Option<Slow> {
    let mut finite: Vec<(f64, &str, f64)> = buckets
        .iter()
        .filter_map(|(le, n)| {
            le.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .map(|v| (v, le.as_str(), *n))
        })
        .collect();
    finite.sort_by(|a, b| a.0.total_cmp(&b.0));
    let timed = buckets.iter().find(|(le, _)| le == "+Inf")?.1;
    if timed < MIN_BASELINE as f64 {
        return None;
    }
    finite
        .iter()
        .find(|(_, _, n)| *n >= SLOW_QUANTILE * timed)
        .map(|(seconds, le, _)| Slow {
            ms: seconds * 1000.0,
            bucket: None,
            le: Some((*le).to_owned()),
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

/// One instant query of series by `le`: (le, value) for each.
async fn query_vector(
    http: &Http,
    base: &str,
    promql: &str,
) -> Result<Vec<(String, f64)>, CtlError> {
    let json = query_json(http, base, promql).await?;
    Ok(json["data"]["result"]
        .as_array()
        .map(|series| {
            series
                .iter()
                .filter_map(|s| {
                    let le = s["metric"]["le"].as_str()?.to_owned();
                    let value = s["value"][1].as_str()?.parse::<f64>().ok()?;
                    Some((le, value)).filter(|(_, v)| !v.is_nan())
                })
                .collect()
        })
        .unwrap_or_default())
}

/// One instant query; None when it matched no series.
async fn query(http: &Http, base: &str, promql: &str) -> Result<Option<f64>, CtlError> {
    let json = query_json(http, base, promql).await?;
    Ok(json["data"]["result"]
        .as_array()
        .and_then(|r| r.first())
        .and_then(|s| s["value"][1].as_str())
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| !v.is_nan()))
}

async fn query_json(http: &Http, base: &str, promql: &str) -> Result<serde_json::Value, CtlError> {
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
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latency_bound_is_the_live_colors_p90_before_the_step() {
        let mut view = StatsView {
            bounds_ms: gateway::proxy::stats::bounds_ms(),
            ..StatsView::default()
        };
        let mut minute = Counts {
            requests: 100,
            ..Counts::default()
        };
        minute.buckets = vec![0; view.bounds_ms.len()];
        minute.buckets[10] = 85;
        minute.buckets[12] = 10;
        minute.buckets[20] = 5;
        let series = gateway::proxy::stats::SeriesView {
            total: minute.clone(),
            last_minute: minute.clone(),
        };
        view.services.insert(
            "orders".into(),
            [(Color::Blue, [(Traffic::Live, series)].into())].into(),
        );
        let (bucket, ms) = slow_bucket(&view, "orders", Color::Blue).expect("a bound");
        assert_eq!(bucket, 12);
        assert!((ms - view.bounds_ms[12]).abs() < 1e-9);
        // The calls above it are slow; green has no baseline.
        let window = window_of(&minute, Some(bucket));
        assert_eq!((window.timed, window.slow), (100, 5));
        assert_eq!(slow_bucket(&view, "orders", Color::Green), None);
    }

    #[test]
    fn prometheus_buckets_give_the_same_bound() {
        let buckets: Vec<(String, f64)> = [
            ("0.001", 20.0),
            ("0.0025", 85.0),
            ("0.005", 95.0),
            ("0.01", 100.0),
            ("+Inf", 100.0),
        ]
        .iter()
        .map(|(le, n)| ((*le).to_owned(), *n))
        .collect();
        let slow = prometheus_slow(&buckets).expect("a bound");
        assert_eq!(slow.le.as_deref(), Some("0.005"));
        assert!((slow.ms - 5.0).abs() < 1e-9);
        // Too few calls to set one.
        let few: Vec<(String, f64)> = buckets.iter().map(|(l, n)| (l.clone(), n / 10.0)).collect();
        assert!(prometheus_slow(&few).is_none());
    }
}
