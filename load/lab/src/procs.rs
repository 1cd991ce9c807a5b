//! What the platform's processes cost and do, read from the outside: CPU
//! time from /proc (user + system, per pid file of `platformctl up`) and
//! request counters from their Prometheus endpoints.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::http;

/// Clock ticks per second of /proc's CPU times (`getconf CLK_TCK`).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds (user + system) the process in `pid_file` has used so far.
pub fn cpu_seconds(pid_file: &Path, ticks: f64) -> anyhow::Result<f64> {
    let pid = std::fs::read_to_string(pid_file)
        .with_context(|| format!("cannot read {}", pid_file.display()))?;
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
        .with_context(|| format!("no process {} ({})", pid.trim(), pid_file.display()))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("bad /proc stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / ticks)
}

/// The sum of every sample of `metric` on a /metrics page whose labels
/// contain none of `excluded`.
pub fn sum_metric(page: &str, metric: &str, excluded: &[&str]) -> f64 {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| !excluded.iter().any(|e| l.contains(e)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The /metrics page on 127.0.0.1:`port`.
pub async fn metrics(port: u16) -> anyhow::Result<String> {
    Ok(http::get(port, "/metrics", None, Duration::from_secs(5))
        .await?
        .body)
}

/// A snapshot of named counters, to subtract from a later one.
pub type Counters = BTreeMap<String, f64>;

pub fn delta(later: &Counters, earlier: &Counters) -> Counters {
    later
        .iter()
        .map(|(k, v)| (k.clone(), v - earlier.get(k).copied().unwrap_or(0.0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_a_metric_and_leaves_out_excluded_series() {
        let page = "# HELP rpc_server_requests gRPC calls\n\
            rpc_server_requests_total{service=\"orders\",rpc_method=\"ListOrders\",code=\"OK\"} 200\n\
            rpc_server_requests_total{service=\"orders\",rpc_service=\"grpc.health.v1.Health\",code=\"OK\"} 7\n\
            rpc_server_requests_total{service=\"orders\",rpc_method=\"CreateOrder\",code=\"OK\"} 50\n\
            rpc_server_requests_totally_else 9\n";
        assert_eq!(
            sum_metric(page, "rpc_server_requests_total", &["grpc.health"]),
            250.0
        );
        assert_eq!(sum_metric(page, "rpc_server_requests_total", &[]), 257.0);
    }

    #[test]
    fn cpu_time_of_this_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("me.pid");
        std::fs::write(&pid_file, std::process::id().to_string()).expect("pid");
        let spent = cpu_seconds(&pid_file, clock_ticks()).expect("cpu");
        assert!(spent >= 0.0);
        assert!(cpu_seconds(&dir.path().join("none.pid"), 100.0).is_err());
    }
}
