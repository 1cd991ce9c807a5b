//! The orders benchmark's figures and its Markdown report: for each backend,
//! each call (GET or POST of an order, through the gateway or straight to
//! orders) measured with each platformctl binary side by side, with the
//! ratio of the last binary to the first.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::usage::PerProcess;

/// The process groups whose CPU is shown apart (both colors of a service
/// together; `postgres` is the database server when there is one); `total`
/// adds every process.
pub const GROUPS: [&str; 6] = [
    "gateway",
    "auth",
    "orders",
    "payments",
    "notifications",
    "postgres",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Call {
    GatewayGet,
    GatewayPost,
    DirectGet,
    DirectPost,
}

impl Call {
    pub const ALL: [Call; 4] = [
        Call::GatewayGet,
        Call::GatewayPost,
        Call::DirectGet,
        Call::DirectPost,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            Call::GatewayGet => "GET /v1/orders/{id}, gateway (REST)",
            Call::GatewayPost => "POST /v1/orders, gateway (REST)",
            Call::DirectGet => "GetOrder, direct to orders (gRPC)",
            Call::DirectPost => "CreateOrder, direct to orders (gRPC)",
        }
    }
}

/// A closed-loop phase's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    pub label: String,
    pub backend: String,
    pub call: Call,
    pub requests: u64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub failed: u64,
    /// CPU ms per call of every process (`gateway`, `orders-blue`, ...).
    pub cpu_ms: PerProcess,
    /// Cores the platform's processes kept busy over the phase.
    pub platform_cores: f64,
    /// Cores the whole machine kept busy: the platform, the load tool, and
    /// anything else running (which makes the phase's figures suspect).
    pub machine_cores: f64,
}

impl Closed {
    /// CPU ms per call of a service's processes (both colors), or of all.
    pub fn cpu_of(&self, group: &str) -> f64 {
        self.in_group(group).map(|(_, ms)| ms).sum::<f64>() + 0.0
    }

    /// The group's CPU ms per call as a table cell, a dash when it has no process.
    fn cpu_cell(&self, group: &str) -> String {
        if self.in_group(group).next().is_none() {
            return "–".into();
        }
        format!("{:.3}", self.cpu_of(group))
    }

    fn in_group<'a>(&'a self, group: &'a str) -> impl Iterator<Item = (&'a String, &'a f64)> {
        self.cpu_ms
            .iter()
            .filter(move |(name, _)| group == "total" || name.split('-').next() == Some(group))
    }
}

/// An open-loop phase: a fixed share of the closed loop's throughput.
#[derive(Debug, Clone, PartialEq)]
pub struct Open {
    pub label: String,
    pub backend: String,
    pub call: Call,
    pub share: f64,
    pub rate: f64,
    pub sent: usize,
    pub failed: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub causes: BTreeMap<String, usize>,
}

/// Resident memory of every process, idle and at its peak under load.
#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    pub label: String,
    pub backend: String,
    pub idle: PerProcess,
    pub peak: PerProcess,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub command: String,
    /// `label=path` of each binary, in the order given.
    pub binaries: Vec<(String, String)>,
    pub backends: Vec<String>,
    pub connections: usize,
    pub seconds: u64,
    pub open_seconds: u64,
    pub cores: usize,
    pub closed: Vec<Closed>,
    pub open: Vec<Open>,
    pub memory: Vec<Memory>,
}

impl Report {
    fn closed(&self, backend: &str, label: &str, call: Call) -> Option<&Closed> {
        self.closed
            .iter()
            .find(|c| c.backend == backend && c.label == label && c.call == call)
    }

    fn labels(&self) -> Vec<&str> {
        self.binaries.iter().map(|(l, _)| l.as_str()).collect()
    }
}

/// `after / before` as `1.23x`, or a dash when either is missing or zero.
pub fn ratio(after: Option<f64>, before: Option<f64>) -> String {
    match (after, before) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() => format!("{:.2}x", a / b),
        _ => "–".into(),
    }
}

pub fn markdown(report: &Report) -> String {
    let mut out = String::new();
    let labels = report.labels();
    let _ = writeln!(out, "# Orders: before and after, side by side\n");
    let _ = writeln!(
        out,
        "Written by `{}`. Every binary runs the same phases on the same machine ({} cores, \
         shared by the load tools and every process), one platform at a time \
         (`platformctl up`, rate limits and per-client limits off, default logging).\n",
        report.command, report.cores
    );
    for (label, path) in &report.binaries {
        let _ = writeln!(out, "- `{label}`: `{path}`");
    }
    let _ = writeln!(
        out,
        "\nClosed loop: {} connections for {} s each, through the gateway with wrk \
         (every POST with a new `requestId`), straight to orders-blue with h2load \
         (one stream per connection; the same CreateOrder body each time, without a \
         `request_id`, so each one still creates an order). Open loop: the lab's own \
         client at 50% and 80% of each closed-loop throughput for {} s, latency counted \
         from when each request was due. CPU: user + system time from /proc of every \
         process over the phase (PostgreSQL's server and backends as `postgres`), divided \
         by the calls served. Cores busy: the platform's (with PostgreSQL) and the whole \
         machine's over the phase; the difference is the load tool and anything else \
         running, and a platform well under 2 cores at saturation waits on something \
         other than CPU.\n",
        report.connections, report.seconds, report.open_seconds
    );
    let (first, last) = (labels.first().copied(), labels.last().copied());
    let compare = labels.len() > 1;
    for backend in &report.backends {
        let _ = writeln!(out, "## {backend}\n");
        closed_table(
            &mut out,
            report,
            backend,
            &labels,
            compare.then_some((first, last)),
        );
        cpu_table(&mut out, report, backend, &labels);
        open_table(&mut out, report, backend, &labels);
        memory_table(&mut out, report, backend, &labels);
    }
    out
}

fn closed_table(
    out: &mut String,
    report: &Report,
    backend: &str,
    labels: &[&str],
    compare: Option<(Option<&str>, Option<&str>)>,
) {
    let _ = writeln!(out, "### Closed loop\n");
    let mut head = "| call |".to_owned();
    let mut rule = "|---|".to_owned();
    for label in labels {
        let _ = write!(
            head,
            " {label} req/s | {label} p50 ms | {label} p99 ms | {label} CPU ms/call |"
        );
        rule.push_str("--:|--:|--:|--:|");
    }
    if let Some((Some(first), Some(last))) = compare {
        let _ = write!(
            head,
            " req/s {last}/{first} | p99 {last}/{first} | CPU/call {last}/{first} |"
        );
        rule.push_str("--:|--:|--:|");
    }
    let _ = writeln!(out, "{head}\n{rule}");
    for call in Call::ALL {
        let mut row = format!("| {} |", call.describe());
        for label in labels {
            match report.closed(backend, label, call) {
                Some(c) => {
                    let failed = if c.failed > 0 {
                        format!(" ({} failed)", c.failed)
                    } else {
                        String::new()
                    };
                    let _ = write!(
                        row,
                        " {:.0}{failed} | {:.2} | {:.2} | {:.3} |",
                        c.per_second,
                        c.p50_ms,
                        c.p99_ms,
                        c.cpu_of("total")
                    );
                }
                None => row.push_str(" – | – | – | – |"),
            }
        }
        if let Some((Some(first), Some(last))) = compare {
            let a = report.closed(backend, last, call);
            let b = report.closed(backend, first, call);
            let _ = write!(
                row,
                " {} | {} | {} |",
                ratio(a.map(|c| c.per_second), b.map(|c| c.per_second)),
                ratio(a.map(|c| c.p99_ms), b.map(|c| c.p99_ms)),
                ratio(a.map(|c| c.cpu_of("total")), b.map(|c| c.cpu_of("total")))
            );
        }
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(out);
}

fn cpu_table(out: &mut String, report: &Report, backend: &str, labels: &[&str]) {
    let _ = writeln!(out, "### CPU ms per call, by process\n");
    let _ = writeln!(
        out,
        "| call | binary | {} | total | platform cores busy | machine cores busy |\n|---|---|{}--:|--:|--:|",
        GROUPS.join(" | "),
        "--:|".repeat(GROUPS.len())
    );
    for call in Call::ALL {
        for label in labels {
            if let Some(c) = report.closed(backend, label, call) {
                let cells: Vec<String> = GROUPS.iter().map(|g| c.cpu_cell(g)).collect();
                let _ = writeln!(
                    out,
                    "| {} | {label} | {} | {:.3} | {:.2} | {:.2} |",
                    call.describe(),
                    cells.join(" | "),
                    c.cpu_of("total"),
                    c.platform_cores,
                    c.machine_cores
                );
            }
        }
    }
    let _ = writeln!(out);
}

fn open_table(out: &mut String, report: &Report, backend: &str, labels: &[&str]) {
    let _ = writeln!(out, "### Open loop\n");
    let _ = writeln!(
        out,
        "| call | share of saturation | binary | rate req/s | p50 ms | p99 ms | failed |\n|---|--:|---|--:|--:|--:|--:|"
    );
    let mut rows: Vec<&Open> = report
        .open
        .iter()
        .filter(|o| o.backend == backend)
        .collect();
    let position = |label: &str| labels.iter().position(|l| *l == label);
    rows.sort_by(|a, b| {
        (a.call, a.share.to_bits(), position(&a.label)).cmp(&(
            b.call,
            b.share.to_bits(),
            position(&b.label),
        ))
    });
    for o in rows {
        let causes: Vec<String> = o.causes.iter().map(|(c, n)| format!("{c}: {n}")).collect();
        let causes = if causes.is_empty() {
            String::new()
        } else {
            format!(" ({})", causes.join(", "))
        };
        let _ = writeln!(
            out,
            "| {} | {:.0}% | {} | {:.0} | {:.2} | {:.2} | {} of {}{causes} |",
            o.call.describe(),
            o.share * 100.0,
            o.label,
            o.rate,
            o.p50_ms,
            o.p99_ms,
            o.failed,
            o.sent
        );
    }
    let _ = writeln!(out);
}

fn memory_table(out: &mut String, report: &Report, backend: &str, labels: &[&str]) {
    let _ = writeln!(
        out,
        "### Resident memory, MiB (idle, then peak under the closed loops)\n"
    );
    let mut head = "| process |".to_owned();
    let mut rule = "|---|".to_owned();
    for label in labels {
        let _ = write!(head, " {label} idle | {label} peak |");
        rule.push_str("--:|--:|");
    }
    let _ = writeln!(out, "{head}\n{rule}");
    let memory: Vec<Option<&Memory>> = labels
        .iter()
        .map(|l| {
            report
                .memory
                .iter()
                .find(|m| m.backend == backend && m.label == *l)
        })
        .collect();
    let mut names: Vec<&String> = memory
        .iter()
        .flatten()
        .flat_map(|m| m.idle.keys())
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let mut row = format!("| {name} |");
        for m in &memory {
            let cell = |values: Option<&PerProcess>| {
                values
                    .and_then(|v| v.get(name))
                    .map_or("–".to_owned(), |v| format!("{v:.1}"))
            };
            let _ = write!(
                row,
                " {} | {} |",
                cell(m.map(|m| &m.idle)),
                cell(m.map(|m| &m.peak))
            );
        }
        let _ = writeln!(out, "{row}");
    }
    let _ = writeln!(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(label: &str, per_second: f64, cpu: f64) -> Closed {
        Closed {
            label: label.into(),
            backend: "SQLite".into(),
            call: Call::GatewayGet,
            requests: 1000,
            per_second,
            p50_ms: 5.0,
            p99_ms: 10.0,
            failed: 0,
            cpu_ms: [("gateway".to_owned(), cpu), ("orders-blue".to_owned(), cpu)]
                .into_iter()
                .collect(),
            platform_cores: 1.5,
            machine_cores: 1.9,
        }
    }

    #[test]
    fn groups_processes_by_service() {
        let mut c = closed("before", 1.0, 0.25);
        c.cpu_ms.insert("orders-green".into(), 0.5);
        assert_eq!(c.cpu_of("orders"), 0.75);
        assert_eq!(c.cpu_of("gateway"), 0.25);
        assert_eq!(c.cpu_of("total"), 1.0);
        assert_eq!(c.cpu_cell("postgres"), "–");
        assert_eq!(c.cpu_of("postgres").to_string(), "0");
        assert_eq!(c.cpu_cell("orders"), "0.750");
    }

    #[test]
    fn ratios() {
        for (after, before, expect) in [
            (Some(2.0), Some(1.0), "2.00x"),
            (Some(1.0), Some(0.0), "–"),
            (None, Some(1.0), "–"),
        ] {
            assert_eq!(ratio(after, before), expect);
        }
    }

    #[test]
    fn a_report_compares_the_last_binary_with_the_first() {
        let report = Report {
            command: "bench-orders".into(),
            binaries: vec![("before".into(), "b".into()), ("after".into(), "a".into())],
            backends: vec!["SQLite".into()],
            closed: vec![closed("before", 6000.0, 0.1), closed("after", 9000.0, 0.05)],
            ..Report::default()
        };
        let text = markdown(&report);
        assert!(text.contains("| req/s after/before |"), "{text}");
        assert!(text.contains("| 6000 | 5.00 | 10.00 | 0.200 | 9000 | 5.00 | 10.00 | 0.100 | 1.50x | 1.00x | 0.50x |"), "{text}");
        assert!(text.contains("| – | – | – | – |"), "{text}");
    }
}
