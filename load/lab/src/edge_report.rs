//! What one phase of `edge-attack` measured and how it reads: the ordinary
//! requests' outcomes and latency, the attack connections the gateway
//! closed, the readiness probes, and the report's table.

use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Jwks,
    Login,
}

impl Route {
    /// Served means the answer the route gives an ordinary client: the keys,
    /// or 401 for the wrong password the client sends on purpose.
    pub fn served(self, status: u16) -> bool {
        match self {
            Route::Jwks => (200..300).contains(&status),
            Route::Login => (200..300).contains(&status) || status == 401,
        }
    }
}

/// One ordinary request: how long after it was due its answer came, and its
/// status or why there was none.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub route: Route,
    pub latency: Duration,
    pub result: Result<u16, &'static str>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ordinary {
    pub sent: usize,
    pub served: usize,
    /// Failures by status code or cause ("timeout", "connect", ...).
    pub failed: BTreeMap<String, usize>,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Ordinary {
    pub fn of(attempts: &[Attempt]) -> Ordinary {
        let mut failed = BTreeMap::new();
        let mut served = 0;
        for attempt in attempts {
            match attempt.result {
                Ok(status) if attempt.route.served(status) => served += 1,
                Ok(status) => *failed.entry(status.to_string()).or_default() += 1,
                Err(cause) => *failed.entry(cause.to_owned()).or_default() += 1,
            }
        }
        let mut latencies: Vec<f64> = attempts
            .iter()
            .map(|a| a.latency.as_secs_f64() * 1000.0)
            .collect();
        latencies.sort_by(f64::total_cmp);
        Ordinary {
            sent: attempts.len(),
            served,
            failed,
            p50_ms: quantile(&latencies, 0.50),
            p99_ms: quantile(&latencies, 0.99),
        }
    }

    /// The share served, 0..=1 (1 when nothing was sent).
    pub fn success_rate(&self) -> f64 {
        if self.sent == 0 {
            return 1.0;
        }
        self.served as f64 / self.sent as f64
    }

    pub fn failures(&self) -> String {
        if self.failed.is_empty() {
            return "0".into();
        }
        let total: usize = self.failed.values().sum();
        let causes: Vec<String> = self
            .failed
            .iter()
            .map(|(cause, n)| format!("{cause}: {n}"))
            .collect();
        format!("{total} ({})", causes.join(", "))
    }
}

/// Nearest-rank quantile of sorted values (0 for none).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (sorted.len() as f64 * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The attack's connections and when the gateway closed them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Closes {
    pub opened: usize,
    /// For each connection the gateway closed (EOF or reset), how long it
    /// had been open.
    pub after: Vec<Duration>,
    /// The times run from the start of the attack instead (a tool that does
    /// not time each connection).
    pub from_attack_start: bool,
}

impl Closes {
    pub fn summary(&self) -> String {
        if self.after.is_empty() {
            return format!("0 of {}", self.opened);
        }
        let mut secs: Vec<f64> = self.after.iter().map(Duration::as_secs_f64).collect();
        secs.sort_by(f64::total_cmp);
        format!(
            "{} of {} after {:.1} s (median; {:.1}-{:.1} s){}",
            secs.len(),
            self.opened,
            quantile(&secs, 0.5),
            secs[0],
            secs[secs.len() - 1],
            if self.from_attack_start {
                " from the attack's start"
            } else {
                " open"
            }
        )
    }
}

/// Answers of the admin port's `GET /ready` during a phase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Readiness {
    pub ok: usize,
    pub unavailable: usize,
    /// Other statuses and no answer at all.
    pub other: usize,
}

impl Readiness {
    pub fn record(&mut self, status: Option<u16>) {
        match status {
            Some(200) => self.ok += 1,
            Some(503) => self.unavailable += 1,
            _ => self.other += 1,
        }
    }

    pub fn summary(&self) -> String {
        let probes = self.ok + self.unavailable + self.other;
        match (self.unavailable, self.other) {
            (0, 0) => format!("200 throughout ({probes} probes)"),
            (u, 0) => format!("503 in {u} of {probes} probes"),
            (u, o) => format!("503 in {u}, no answer or other in {o} of {probes} probes"),
        }
    }
}

/// One phase: what was sent at the gateway and what it did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Phase {
    pub name: String,
    /// Empty for the baseline.
    pub attack: String,
    pub ordinary: Ordinary,
    pub closes: Closes,
    /// What else the attack saw (answers on its streams, the tool used).
    pub notes: String,
    pub readiness: Readiness,
}

impl Phase {
    pub fn passed(&self, threshold: f64) -> bool {
        self.ordinary.success_rate() >= threshold
    }
}

/// How the run was set up, for the report's text.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    pub command: String,
    pub connections: usize,
    pub rate: u32,
    pub seconds: u64,
    pub settle_seconds: u64,
    pub login_every: u32,
    pub ordinary_source: String,
    pub attack_sources: usize,
    pub threshold: f64,
    pub cores: usize,
}

pub fn markdown(setup: &Setup, phases: &[Phase]) -> String {
    let baseline_p99 = phases.first().map_or(0.0, |p| p.ordinary.p99_ms);
    let mut out = String::from("# Hostile clients at the edge\n\n");
    out.push_str(&format!(
        "Generated by `bash load/hostile.sh` (`{}`) on one machine with {} CPU cores shared by the \
         gateway, the services, the attackers and the ordinary client.\n\n",
        setup.command, setup.cores
    ));
    out.push_str(&format!(
        "The ordinary client: {} kept-alive HTTP/1.1 connections from {}, {} requests/s in all for {} s \
         per phase (`GET /v1/auth/jwks`, and every {}th request `POST /v1/auth/login` with a wrong password \
         for an email of its own, so auth's per-account lockout stays out of the way; its 401 counts as \
         served). Latency runs from when a request was due, so a stalled connection shows in it. The \
         attackers connect to 127.0.0.1 from {} local addresses (127.0.0.10 on), as a few hosts would; \
         each attack runs {} s before the measurement and through it. The gateway's per-client rate \
         limiter is off (`RATE_LIMIT_PER_SECOND=0`). A phase passes when at least {:.1}% of its \
         ordinary requests are served.\n\n",
        setup.connections,
        setup.ordinary_source,
        setup.rate,
        setup.seconds,
        setup.login_every,
        setup.attack_sources,
        setup.settle_seconds,
        setup.threshold * 100.0
    ));
    out.push_str(
        "| phase | attack | ordinary sent | served | failed | p50 ms | p99 ms | p99 / baseline | attack connections closed by the gateway | admin `/ready` | verdict |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (i, phase) in phases.iter().enumerate() {
        let o = &phase.ordinary;
        let ratio = if baseline_p99 > 0.0 {
            format!("{:.1}x", o.p99_ms / baseline_p99)
        } else {
            "-".into()
        };
        let attack = if phase.attack.is_empty() {
            "none".to_owned()
        } else {
            phase.attack.clone()
        };
        let closes = if i == 0 {
            "-".to_owned()
        } else {
            phase.closes.summary()
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} ({:.1}%) | {} | {:.1} | {:.1} | {} | {} | {} | {} |\n",
            phase.name,
            attack,
            o.sent,
            o.served,
            o.success_rate() * 100.0,
            o.failures(),
            o.p50_ms,
            o.p99_ms,
            ratio,
            closes,
            phase.readiness.summary(),
            if phase.passed(setup.threshold) {
                "pass"
            } else {
                "**FAIL**"
            }
        ));
    }
    let notes: Vec<&Phase> = phases.iter().filter(|p| !p.notes.is_empty()).collect();
    if !notes.is_empty() {
        out.push_str("\nWhat the attackers saw:\n\n");
        for phase in notes {
            out.push_str(&format!("- {}: {}\n", phase.name, phase.notes));
        }
    }
    let failed: Vec<&str> = phases
        .iter()
        .skip(1)
        .filter(|p| !p.passed(setup.threshold))
        .map(|p| p.name.as_str())
        .collect();
    out.push_str(&if failed.is_empty() {
        "\n**Every attack phase passed.**\n".to_owned()
    } else {
        format!(
            "\n**Failed: {}** (ordinary success rate under {:.1}%).\n",
            failed.join(", "),
            setup.threshold * 100.0
        )
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(route: Route, ms: u64, result: Result<u16, &'static str>) -> Attempt {
        Attempt {
            route,
            latency: Duration::from_millis(ms),
            result,
        }
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        for (q, want) in [(0.5, 50.0), (0.99, 99.0), (1.0, 100.0), (0.0, 1.0)] {
            assert_eq!(quantile(&values, q), want, "q={q}");
        }
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn wrong_password_401_is_served_other_failures_are_counted() {
        let ordinary = Ordinary::of(&[
            attempt(Route::Jwks, 1, Ok(200)),
            attempt(Route::Login, 2, Ok(401)),
            attempt(Route::Jwks, 3, Ok(401)),
            attempt(Route::Login, 4, Ok(503)),
            attempt(Route::Jwks, 5, Ok(503)),
            attempt(Route::Jwks, 2000, Err("timeout")),
        ]);
        assert_eq!((ordinary.sent, ordinary.served), (6, 2));
        assert_eq!(ordinary.failures(), "4 (401: 1, 503: 2, timeout: 1)");
        assert_eq!((ordinary.p50_ms, ordinary.p99_ms), (3.0, 2000.0));
        assert!((ordinary.success_rate() - 2.0 / 6.0).abs() < 1e-9);
        assert_eq!(Ordinary::of(&[]).success_rate(), 1.0);
    }

    #[test]
    fn summaries() {
        let mut closes = Closes {
            opened: 10,
            after: [3, 1, 2].map(Duration::from_secs).to_vec(),
            from_attack_start: false,
        };
        assert_eq!(
            closes.summary(),
            "3 of 10 after 2.0 s (median; 1.0-3.0 s) open"
        );
        closes.from_attack_start = true;
        assert!(closes.summary().ends_with("from the attack's start"));
        closes.after.clear();
        assert_eq!(closes.summary(), "0 of 10");
        let mut ready = Readiness::default();
        ready.record(Some(200));
        assert_eq!(ready.summary(), "200 throughout (1 probes)");
        ready.record(Some(503));
        ready.record(None);
        assert_eq!(
            ready.summary(),
            "503 in 1, no answer or other in 1 of 3 probes"
        );
    }

    #[test]
    fn verdicts_and_table() {
        let phase = |name: &str, served: usize| Phase {
            name: name.into(),
            attack: if name == "baseline" {
                String::new()
            } else {
                "x".into()
            },
            ordinary: Ordinary {
                sent: 100,
                served,
                p99_ms: 10.0,
                ..Ordinary::default()
            },
            ..Phase::default()
        };
        let setup = Setup {
            threshold: 0.99,
            ..Setup::default()
        };
        let text = markdown(
            &setup,
            &[phase("baseline", 100), phase("a", 99), phase("b", 98)],
        );
        assert!(text.contains("| a | x | 100 | 99 (99.0%) |"), "{text}");
        assert!(text.contains("| 1.0x |"), "{text}");
        assert!(text.contains("**Failed: b**"), "{text}");
    }
}
