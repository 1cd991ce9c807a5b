//! The user's side: k6 runs a scenario of `load/` and writes every request's
//! outcome to a CSV file (`--out csv`, millisecond timestamps); this module
//! starts it and reads back, per request, when it ended and whether it
//! failed (`http_req_failed`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// One user request of the scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Unix milliseconds.
    pub at_ms: i64,
    pub failed: bool,
    pub method: String,
    /// HTTP status; 0 when no response arrived.
    pub status: u16,
}

/// A k6 CSV file, read once: its header and its records.
pub struct Csv {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Csv {
    pub fn parse(text: &str) -> anyhow::Result<Csv> {
        let mut rows = records(text);
        anyhow::ensure!(!rows.is_empty(), "the k6 CSV file is empty");
        let header = rows.remove(0);
        Ok(Csv { header, rows })
    }

    fn column(&self, name: &str) -> anyhow::Result<usize> {
        self.header
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("the k6 CSV file has no {name} column"))
    }

    /// The samples of `metric` (for example `http_req_duration`, in ms) that
    /// the requests of `scenario` produced between `from_ms` and `to_ms`.
    pub fn samples(
        &self,
        scenario: &str,
        metric: &str,
        (from_ms, to_ms): (i64, i64),
    ) -> anyhow::Result<Vec<f64>> {
        let (name, timestamp, value, scenario_col) = (
            self.column("metric_name")?,
            self.column("timestamp")?,
            self.column("metric_value")?,
            self.column("scenario")?,
        );
        let mut out = Vec::new();
        for record in &self.rows {
            let field = |i: usize| record.get(i).map(String::as_str).unwrap_or_default();
            if field(name) != metric || field(scenario_col) != scenario {
                continue;
            }
            let Some(at) = parse_time(field(timestamp)) else {
                continue;
            };
            if at >= from_ms
                && at <= to_ms
                && let Ok(v) = field(value).parse::<f64>()
            {
                out.push(v);
            }
        }
        Ok(out)
    }
}

/// The requests of `scenario` in a k6 CSV file (setup's sign-ups carry no
/// scenario and are left out), oldest first.
pub fn parse_csv(text: &str, scenario: &str) -> anyhow::Result<Vec<Outcome>> {
    let csv = Csv::parse(text)?;
    let (metric, timestamp, value) = (
        csv.column("metric_name")?,
        csv.column("timestamp")?,
        csv.column("metric_value")?,
    );
    let (method, status, scenario_col) = (
        csv.column("method")?,
        csv.column("status")?,
        csv.column("scenario")?,
    );
    let field = |record: &[String], i: usize| record.get(i).cloned().unwrap_or_default();
    let mut outcomes = Vec::new();
    for (line, record) in csv.rows.iter().enumerate() {
        if field(record, metric) != "http_req_failed" || field(record, scenario_col) != scenario {
            continue;
        }
        let at_ms = parse_time(&field(record, timestamp))
            .with_context(|| format!("k6 CSV record {}: bad timestamp", line + 2))?;
        let value: f64 = field(record, value)
            .parse()
            .with_context(|| format!("k6 CSV record {}: bad metric_value", line + 2))?;
        outcomes.push(Outcome {
            at_ms,
            failed: value > 0.5,
            method: field(record, method),
            status: field(record, status).parse().unwrap_or(0),
        });
    }
    outcomes.sort_by_key(|o| o.at_ms);
    Ok(outcomes)
}

/// A k6 timestamp as Unix milliseconds: `unix_milli` as asked, or whole
/// seconds (k6's default) should the option be ignored.
fn parse_time(text: &str) -> Option<i64> {
    let value: f64 = text.trim().parse().ok()?;
    if !value.is_finite() || value <= 0.0 {
        return None;
    }
    Some(if value < 1e11 {
        (value * 1000.0) as i64
    } else {
        value as i64
    })
}

/// RFC 4180 records: fields separated by commas, quoted when they hold a
/// comma, a quote (doubled) or a line break, as Go's encoding/csv writes them.
fn records(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

/// The k6 binary on PATH.
pub fn find() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("k6"))
        .find(|candidate| candidate.is_file())
        .context("k6 is not installed (not on PATH): run scripts/install-tools.sh")
}

/// One k6 run of the scenario.
#[derive(Debug, Clone)]
pub struct Load {
    pub k6: PathBuf,
    pub script: PathBuf,
    pub base_url: String,
    pub rate: u32,
    pub duration: Duration,
    pub users: u32,
    pub write_every: u32,
    /// The scenario whose requests are read back.
    pub scenario: String,
    /// More environment for the script.
    pub env: Vec<(String, String)>,
}

/// The scenario's name in `load/release.js`.
pub const SCENARIO: &str = "release";

pub struct Running {
    child: Child,
    scenario: String,
    pub csv: PathBuf,
    pub log: PathBuf,
}

impl Load {
    pub fn start(&self, work: &Path) -> anyhow::Result<Running> {
        let csv = work.join("k6.csv");
        let log = work.join("k6.log");
        let log_file = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(&self.k6)
            .arg("run")
            .arg("--quiet")
            .arg("--no-usage-report")
            .arg("--out")
            .arg(format!("csv={}", csv.display()))
            .arg(&self.script)
            .env("BASE_URL", &self.base_url)
            .env("RATE", self.rate.to_string())
            .env("DURATION", format!("{}s", self.duration.as_secs()))
            .env("USERS", self.users.to_string())
            .env("WRITE_EVERY", self.write_every.to_string())
            .env("K6_CSV_TIME_FORMAT", "unix_milli")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.k6.display()))?;
        Ok(Running {
            child,
            scenario: self.scenario.clone(),
            csv,
            log,
        })
    }
}

impl Running {
    /// Whether k6 has exited already (then the run is broken: it should
    /// still be loading).
    pub fn exited(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Waits for k6 to end; it must exit 0 (the scenario has no thresholds).
    pub async fn finish(mut self, timeout: Duration) -> anyhow::Result<Vec<Outcome>> {
        let status = match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status?,
            Err(_) => {
                let _ = self.child.kill().await;
                bail!(
                    "k6 did not finish within {} s (log: {})",
                    timeout.as_secs(),
                    self.log.display()
                );
            }
        };
        if !status.success() {
            bail!(
                "k6 failed ({status}): {}",
                crate::platform::tail(&self.log, 15)
            );
        }
        self.outcomes()
    }

    /// Stops k6 as Ctrl-C does (it ends its iterations and writes its
    /// output) and reads back every request, whatever its thresholds said.
    pub async fn interrupt(mut self, timeout: Duration) -> anyhow::Result<Vec<Outcome>> {
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGINT,
            );
        }
        if tokio::time::timeout(timeout, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        self.outcomes()
    }

    fn outcomes(&self) -> anyhow::Result<Vec<Outcome>> {
        let text = std::fs::read_to_string(&self.csv)
            .with_context(|| format!("cannot read {}", self.csv.display()))?;
        let outcomes = parse_csv(&text, &self.scenario)?;
        if outcomes.is_empty() {
            bail!("k6 recorded no request of the {} scenario", self.scenario);
        }
        Ok(outcomes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "metric_name,timestamp,metric_value,check,error,error_code,expected_response,group,method,name,proto,scenario,service,status,subproto,tls_version,url,extra_tags,metadata
http_req_failed,1795325860763,0.000000,,,,true,::setup,POST,http://127.0.0.1:21080/v1/auth/register,HTTP/1.1,,,200,,,http://127.0.0.1:21080/v1/auth/register,,
http_reqs,1795325861300,1.000000,,,,true,,GET,http://127.0.0.1:21080/v1/orders?pageSize=5,HTTP/1.1,release,,200,,,http://127.0.0.1:21080/v1/orders?pageSize=5,,
http_req_failed,1795325861309,1.000000,,,1503,false,,GET,http://127.0.0.1:21080/v1/orders?pageSize=5,HTTP/1.1,release,,503,,,http://127.0.0.1:21080/v1/orders?pageSize=5,,
http_req_failed,1795325861301,0.000000,,,,true,,POST,http://127.0.0.1:21080/v1/orders,HTTP/1.1,release,,200,,,http://127.0.0.1:21080/v1/orders,,
checks,1795325861302,1.000000,list orders 200,,,,,,,,release,,,,,,,
http_req_failed,1795325861400,1.000000,,\"dial tcp 127.0.0.1:21080: connect: connection refused, again\",1212,false,,GET,\"http://x/v1/orders?a=1,2\",HTTP/1.1,release,,0,,,\"http://x/v1/orders?a=1,2\",,
";

    #[test]
    fn reads_the_scenarios_requests_only() {
        let outcomes = parse_csv(CSV, SCENARIO).expect("parses");
        let got: Vec<_> = outcomes
            .iter()
            .map(|o| (o.at_ms, o.failed, o.method.as_str(), o.status))
            .collect();
        assert_eq!(
            got,
            vec![
                (1_795_325_861_301, false, "POST", 200),
                (1_795_325_861_309, true, "GET", 503),
                (1_795_325_861_400, true, "GET", 0),
            ]
        );
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let err = parse_csv("", SCENARIO).expect_err("empty");
        assert!(err.to_string().contains("empty"), "{err}");
        let err = parse_csv("metric_name,timestamp\n", SCENARIO).expect_err("columns");
        assert!(err.to_string().contains("metric_value"), "{err}");
        let bad = CSV.replace("1795325861309", "soon");
        let err = parse_csv(&bad, SCENARIO).expect_err("timestamp");
        assert!(
            format!("{err:#}").contains("record 4: bad timestamp"),
            "{err:#}"
        );
    }

    #[test]
    fn samples_of_a_metric_within_a_window() {
        let csv = "metric_name,timestamp,metric_value,scenario\n\
            http_req_duration,1795325861000,5.5,users\n\
            http_req_duration,1795325862000,7.0,users\n\
            http_req_duration,1795325862500,9.0,\n\
            iterations,1795325862100,1,users\n\
            http_req_duration,1795325863001,1.0,users\n";
        let window = (1_795_325_861_500, 1_795_325_863_000);
        let csv = Csv::parse(csv).expect("parses");
        assert_eq!(
            csv.samples("users", "http_req_duration", window)
                .expect("samples"),
            vec![7.0]
        );
        assert_eq!(
            csv.samples("users", "iterations", window).expect("samples"),
            vec![1.0]
        );
    }

    #[test]
    fn timestamps_in_seconds_or_milliseconds() {
        assert_eq!(parse_time("1795325861309"), Some(1_795_325_861_309));
        assert_eq!(parse_time("1795325861"), Some(1_795_325_861_000));
        assert_eq!(parse_time("-1"), None);
        assert_eq!(parse_time(""), None);
    }

    #[test]
    fn quoted_fields() {
        assert_eq!(
            records("a,\"b,\"\"c\"\"\",\r\nd"),
            vec![
                vec!["a".to_owned(), "b,\"c\"".to_owned(), String::new()],
                vec!["d".to_owned()]
            ]
        );
    }
}
