//! wrk, the closed-loop HTTP/1.1 load tool: a fixed number of connections,
//! each sending its next request as soon as the last one is answered. Runs
//! it and reads its text output (`--latency` adds the percentiles).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

/// One closed-loop run.
#[derive(Debug, Clone)]
pub struct Run {
    pub url: String,
    pub connections: usize,
    pub threads: usize,
    pub duration: Duration,
    /// A Lua script that writes the requests (`load/wrk/*.lua`).
    pub script: Option<PathBuf>,
    /// Arguments after `--`, for the script.
    pub script_args: Vec<String>,
    pub headers: Vec<String>,
}

/// What a closed-loop run reported (wrk's, and h2load's too).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub requests: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Requests that failed: answers that were not 2xx or 3xx, socket
    /// errors, timeouts.
    pub failed: u64,
}

pub fn run(run: &Run) -> anyhow::Result<Outcome> {
    let mut command = Command::new("wrk");
    command
        .arg(format!("-t{}", run.threads.max(1)))
        .arg(format!("-c{}", run.connections.max(1)))
        .arg(format!("-d{}s", run.duration.as_secs().max(1)))
        .arg("--latency")
        .arg("--timeout")
        .arg("5s");
    for header in &run.headers {
        command.arg("-H").arg(header);
    }
    if let Some(script) = &run.script {
        command.arg("-s").arg(script);
    }
    command.arg(&run.url);
    if !run.script_args.is_empty() {
        command.arg("--").args(&run.script_args);
    }
    let out = command
        .output()
        .context("cannot run wrk (Debian: apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse(&text).with_context(|| format!("cannot read wrk's output:\n{text}"))
}

/// Reads wrk's report.
pub fn parse(text: &str) -> anyhow::Result<Outcome> {
    let mut requests = None;
    let mut per_second = None;
    let mut p50_ms = None;
    let mut p99_ms = None;
    let mut failed = 0;
    for line in text.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["50%", value] => p50_ms = Some(millis(value)?),
            ["99%", value] => p99_ms = Some(millis(value)?),
            ["Requests/sec:", value] => per_second = Some(value.parse()?),
            [count, "requests", "in", ..] => requests = Some(count.parse()?),
            ["Non-2xx", "or", "3xx", "responses:", count] => failed += count.parse::<u64>()?,
            ["Socket", "errors:", rest @ ..] => {
                failed += rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum::<u64>();
            }
            _ => {}
        }
    }
    Ok(Outcome {
        requests: requests.context("no request count")?,
        per_second: per_second.context("no Requests/sec")?,
        p50_ms: p50_ms.context("no 50% line (run with --latency)")?,
        p99_ms: p99_ms.context("no 99% line (run with --latency)")?,
        failed,
    })
}

/// wrk's durations: `812.00us`, `5.10ms`, `1.02s`, `2.00m`.
fn millis(value: &str) -> anyhow::Result<f64> {
    let split = value
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {value}"))?;
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse()?;
    let factor = match unit {
        "us" => 0.001,
        "ms" => 1.0,
        "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => bail!("unknown unit in {value}"),
    };
    Ok(number * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 10s test @ http://127.0.0.1:22080/v1/orders/x
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.21ms    1.30ms  31.02ms   81.10%
    Req/Sec     3.07k   201.13     3.52k    70.00%
  Latency Distribution
     50%    5.10ms
     75%    5.62ms
     90%    6.31ms
     99%  812.00us
  61234 requests in 10.01s, 21.30MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   6117.28
Transfer/sec:      2.13MB
";

    #[test]
    fn reads_a_report() {
        let outcome = parse(REPORT).expect("parse");
        assert_eq!(outcome.requests, 61_234);
        assert_eq!(outcome.per_second, 6117.28);
        assert_eq!(outcome.p50_ms, 5.1);
        assert!((outcome.p99_ms - 0.812).abs() < 1e-9);
        assert_eq!(outcome.failed, 7);
    }

    #[test]
    fn units() {
        for (text, ms) in [("1.50s", 1500.0), ("250.00us", 0.25), ("2.00m", 120_000.0)] {
            assert!((millis(text).expect(text) - ms).abs() < 1e-9, "{text}");
        }
        assert!(millis("12").is_err());
        assert!(parse("Requests/sec: 1\n").is_err());
    }
}
