//! What release analysis reads: per service, color and traffic kind (live or
//! mirrored), the outcome of every call the gateway made to a service.
//! Counters only grow, so a reader takes two snapshots and compares them
//! over exactly the window it cares about (a rollout step); the last minute
//! is also kept, in one-second slots, for `status` and the console.
//!
//! An outcome is a server fault when its gRPC code maps to an HTTP 5xx in
//! the error table (UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL,
//! UNAVAILABLE, DATA_LOSS); client mistakes such as NOT_FOUND are not.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use platform_runtime::Color;
use serde::{Deserialize, Serialize};

/// Upper bounds of the latency buckets, in milliseconds: 25% apart, from
/// 0.1 ms to about 80 s, so a quantile read from them is within 25%.
pub fn bounds_ms() -> Vec<f64> {
    (0..BUCKETS).map(|i| 0.1 * 1.25f64.powi(i as i32)).collect()
}

const BUCKETS: usize = 62;
const SLOTS: usize = 60;

/// Live traffic, or copies sent to the color under test whose answers are
/// thrown away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Traffic {
    Live,
    Mirror,
}

impl Traffic {
    pub fn as_str(self) -> &'static str {
        match self {
            Traffic::Live => "live",
            Traffic::Mirror => "mirror",
        }
    }
}

/// Counts of calls: how many, how many were server faults, and how their
/// latencies fall into the buckets of [`bounds_ms`] (calls without a
/// latency, such as streams, are counted but not timed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub requests: u64,
    pub server_errors: u64,
    pub buckets: Vec<u64>,
}

impl Counts {
    fn add(&mut self, fault: bool, latency: Option<Duration>) {
        self.requests += 1;
        self.server_errors += u64::from(fault);
        if let Some(latency) = latency {
            if self.buckets.len() < BUCKETS {
                self.buckets.resize(BUCKETS, 0);
            }
            self.buckets[bucket(latency)] += 1;
        }
    }

    fn merge(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.server_errors += other.server_errors;
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
    }

    /// What happened between `earlier` and `self` (both cumulative).
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            requests: self.requests.saturating_sub(earlier.requests),
            server_errors: self.server_errors.saturating_sub(earlier.server_errors),
            buckets: self
                .buckets
                .iter()
                .enumerate()
                .map(|(i, n)| n.saturating_sub(earlier.buckets.get(i).copied().unwrap_or(0)))
                .collect(),
        }
    }

    pub fn error_ratio(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.server_errors as f64 / self.requests as f64
        }
    }

    /// The `q` quantile of the latencies, in milliseconds: the upper bound
    /// of the bucket it falls in. None when nothing was timed.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let timed: u64 = self.buckets.iter().sum();
        if timed == 0 {
            return None;
        }
        let rank = ((q * timed as f64).ceil() as u64).clamp(1, timed);
        let mut seen = 0;
        let bounds = bounds_ms();
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return bounds.get(i).copied();
            }
        }
        bounds.last().copied()
    }
}

fn bucket(latency: Duration) -> usize {
    let ms = latency.as_secs_f64() * 1000.0;
    if ms <= 0.1 {
        return 0;
    }
    let i = ((ms / 0.1).ln() / 1.25f64.ln()).ceil() as usize;
    i.min(BUCKETS - 1)
}

/// The last minute of one series, in one-second slots.
#[derive(Debug, Default)]
struct Series {
    total: Counts,
    slots: Vec<(u64, Counts)>,
}

impl Series {
    fn add(&mut self, second: u64, fault: bool, latency: Option<Duration>) {
        self.total.add(fault, latency);
        if self.slots.is_empty() {
            self.slots = vec![(0, Counts::default()); SLOTS];
        }
        let slot = &mut self.slots[(second % SLOTS as u64) as usize];
        if slot.0 != second {
            *slot = (second, Counts::default());
        }
        slot.1.add(fault, latency);
    }

    fn last_minute(&self, now_second: u64) -> Counts {
        let mut sum = Counts::default();
        for (second, counts) in &self.slots {
            if *second + (SLOTS as u64) > now_second && *second <= now_second {
                sum.merge(counts);
            }
        }
        sum
    }
}

type Key = (String, Color, Traffic);

/// Every series, behind one lock held for a few additions at a time.
#[derive(Debug, Default)]
pub struct Stats {
    series: Mutex<BTreeMap<Key, Series>>,
}

/// One series as the admin API shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesView {
    /// Since the gateway started.
    pub total: Counts,
    /// The last 60 seconds.
    pub last_minute: Counts,
}

impl SeriesView {
    pub fn rate_per_second(&self) -> f64 {
        self.last_minute.requests as f64 / SLOTS as f64
    }
}

/// `/admin/stats`: service -> color -> traffic -> series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatsView {
    pub at_ms: i64,
    pub bounds_ms: Vec<f64>,
    pub services: BTreeMap<String, BTreeMap<Color, BTreeMap<Traffic, SeriesView>>>,
}

impl StatsView {
    pub fn series(&self, service: &str, color: Color, traffic: Traffic) -> SeriesView {
        self.services
            .get(service)
            .and_then(|colors| colors.get(&color))
            .and_then(|kinds| kinds.get(&traffic))
            .cloned()
            .unwrap_or_default()
    }
}

impl Stats {
    /// Records one call's outcome.
    pub fn record(
        &self,
        service: &str,
        color: Color,
        traffic: Traffic,
        code: i32,
        latency: Option<Duration>,
    ) {
        let fault = is_server_fault(code);
        let second = (platform_runtime::time::now_ms() / 1000).max(0) as u64;
        let mut series = match self.series.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let key = (service.to_owned(), color, traffic);
        series.entry(key).or_default().add(second, fault, latency);
    }

    pub fn view(&self) -> StatsView {
        let at_ms = platform_runtime::time::now_ms();
        let now_second = (at_ms / 1000).max(0) as u64;
        let series = match self.series.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut view = StatsView {
            at_ms,
            bounds_ms: bounds_ms(),
            services: BTreeMap::new(),
        };
        for ((service, color, traffic), s) in series.iter() {
            view.services
                .entry(service.clone())
                .or_default()
                .entry(*color)
                .or_default()
                .insert(
                    *traffic,
                    SeriesView {
                        total: s.total.clone(),
                        last_minute: s.last_minute(now_second),
                    },
                );
        }
        view
    }
}

/// A server fault: a gRPC code that the error table maps to an HTTP 5xx.
pub fn is_server_fault(code: i32) -> bool {
    crate::proxy::errors::http_status(code).is_server_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_server_codes_only() {
        for code in [2, 4, 12, 13, 14, 15] {
            assert!(is_server_fault(code), "code {code}");
        }
        for code in [0, 1, 3, 5, 6, 7, 8, 9, 10, 11, 16] {
            assert!(!is_server_fault(code), "code {code}");
        }
    }

    #[test]
    fn quantiles_and_windows() {
        let stats = Stats::default();
        for i in 0..100u64 {
            let code = if i < 5 { 14 } else { 5 };
            stats.record(
                "orders",
                Color::Green,
                Traffic::Live,
                code,
                Some(Duration::from_millis(if i == 99 { 400 } else { 2 })),
            );
        }
        let before = stats.view().series("orders", Color::Green, Traffic::Live);
        assert_eq!(before.total.requests, 100);
        assert_eq!(before.total.server_errors, 5);
        assert!((before.total.error_ratio() - 0.05).abs() < 1e-9);
        let p50 = before.total.quantile_ms(0.5).expect("timed");
        assert!((2.0..=2.5).contains(&p50), "p50 {p50}");
        let p99 = before.total.quantile_ms(0.99).expect("timed");
        assert!(
            (2.0..=2.5).contains(&p99),
            "p99 of 100 with one slow: {p99}"
        );
        let max = before.total.quantile_ms(1.0).expect("timed");
        assert!((400.0..=500.0).contains(&max), "max {max}");
        assert_eq!(before.last_minute.requests, 100);

        stats.record("orders", Color::Green, Traffic::Live, 0, None);
        let after = stats.view().series("orders", Color::Green, Traffic::Live);
        let step = after.total.since(&before.total);
        assert_eq!((step.requests, step.server_errors), (1, 0));
        assert_eq!(
            step.quantile_ms(0.99),
            None,
            "an untimed call has no latency"
        );
        assert_eq!(
            stats.view().series("orders", Color::Blue, Traffic::Live),
            SeriesView::default()
        );
    }
}
