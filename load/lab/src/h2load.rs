//! h2load, nghttp2's HTTP/2 load tool, as a closed loop over gRPC: a fixed
//! number of connections with one stream each, the same framed request body
//! every time, every request's time in a log file for the percentiles.
//! h2load sees HTTP statuses only (a gRPC error is a 200 with a trailer), so
//! callers check the call once with a real gRPC client first.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::edge_report::quantile;
use crate::wrk::Outcome;

#[derive(Debug, Clone)]
pub struct Run {
    pub url: String,
    pub connections: usize,
    pub threads: usize,
    pub duration: Duration,
    /// The request body: a length-prefixed gRPC message.
    pub data: PathBuf,
    pub headers: Vec<String>,
    /// Where h2load writes every request's time.
    pub log: PathBuf,
}

pub fn run(run: &Run) -> anyhow::Result<Outcome> {
    let _ = std::fs::remove_file(&run.log);
    let mut command = Command::new("h2load");
    command
        .arg("-c")
        .arg(run.connections.max(1).to_string())
        .arg("-t")
        .arg(run.threads.clamp(1, run.connections.max(1)).to_string())
        .arg("-m")
        .arg("1")
        .arg("-D")
        .arg(run.duration.as_secs().max(1).to_string())
        .arg("-d")
        .arg(&run.data)
        .arg("--log-file")
        .arg(&run.log);
    for header in &run.headers {
        command.arg("-H").arg(header);
    }
    let out = command
        .arg(&run.url)
        .output()
        .context("cannot run h2load (Debian: apt-get install nghttp2-client)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "h2load failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (requests, per_second, failed) =
        parse(&text).with_context(|| format!("cannot read h2load's output:\n{text}"))?;
    let mut times = log_times(&run.log)?;
    times.sort_by(f64::total_cmp);
    Ok(Outcome {
        requests,
        per_second,
        p50_ms: quantile(&times, 0.50),
        p99_ms: quantile(&times, 0.99),
        failed,
    })
}

/// Successful requests, requests per second and failures from h2load's summary.
pub fn parse(text: &str) -> anyhow::Result<(u64, f64, u64)> {
    let mut per_second = None;
    let mut succeeded = None;
    let mut failed = 0;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("finished in ") {
            per_second = rest
                .split(", ")
                .nth(1)
                .and_then(|s| s.strip_suffix(" req/s"))
                .and_then(|s| s.parse::<f64>().ok());
        } else if let Some(rest) = line.strip_prefix("requests: ") {
            for part in rest.split(", ") {
                let mut words = part.split_whitespace();
                let count: u64 = words.next().unwrap_or("0").parse()?;
                match words.next() {
                    Some("succeeded") => succeeded = Some(count),
                    Some("failed" | "errored" | "timeout") => failed += count,
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("status codes: ") {
            // A non-2xx answer still counts as succeeded in h2load.
            for part in rest.split(", ").skip(1) {
                failed += part
                    .split_whitespace()
                    .next()
                    .unwrap_or("0")
                    .parse::<u64>()?;
            }
        }
    }
    Ok((
        succeeded.context("no requests line")?,
        per_second.context("no finished line")?,
        failed,
    ))
}

/// Milliseconds from every line of an h2load log (start us, status, duration us).
fn log_times(path: &Path) -> anyhow::Result<Vec<f64>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read h2load's log {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| line.split('\t').nth(2)?.trim().parse::<f64>().ok())
        .map(|us| us / 1000.0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_summary() {
        let text = "starting benchmark...
finished in 10.00s, 13627.40 req/s, 1.20MB/s
requests: 136274 total, 136274 started, 136270 done, 136268 succeeded, 2 failed, 2 errored, 1 timeout
status codes: 136268 2xx, 0 3xx, 3 4xx, 0 5xx
";
        assert_eq!(parse(text).expect("parse"), (136_268, 13_627.4, 8));
        assert!(parse("requests: 1 total\n").is_err());
    }

    #[test]
    fn reads_a_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        std::fs::write(
            &path,
            "1700000000000000\t200\t1500\n1700000000000100\t200\t250\n",
        )
        .expect("write");
        assert_eq!(log_times(&path).expect("read"), vec![1.5, 0.25]);
    }
}
