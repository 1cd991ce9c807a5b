//! Passive health of endpoints and the retry budget.
//!
//! An endpoint that fails several times in a row is ejected for a time that
//! doubles with each ejection; when the time is up, the next request probes
//! it, and a success clears its record. A color never loses all its
//! endpoints to ejection: when every one is ejected, they are used anyway.
//! Retries draw on a budget refilled by a share of first attempts plus a
//! small floor per second, so a dead color cannot multiply the load.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, Default)]
struct Health {
    failures: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
}

#[derive(Debug)]
pub struct Outliers {
    endpoints: Mutex<HashMap<String, Health>>,
    consecutive: u32,
    base: Duration,
    max: Duration,
}

impl Outliers {
    pub fn new(consecutive: u32, base: Duration, max: Duration) -> Self {
        Self {
            endpoints: Mutex::new(HashMap::new()),
            consecutive: consecutive.max(1),
            base,
            max,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Health>) -> T) -> T {
        match self.endpoints.lock() {
            Ok(mut guard) => f(&mut guard),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    pub fn is_ejected(&self, endpoint: &str, now: Instant) -> bool {
        self.with(|map| {
            map.get(endpoint)
                .and_then(|h| h.ejected_until)
                .is_some_and(|until| now < until)
        })
    }

    /// Records a failure; returns how long the endpoint is now ejected for,
    /// when this failure ejected it.
    pub fn failure(&self, endpoint: &str, now: Instant) -> Option<Duration> {
        self.with(|map| {
            let health = map.entry(endpoint.to_owned()).or_default();
            if health.ejected_until.is_some_and(|until| now < until) {
                return None;
            }
            health.failures += 1;
            // A failed probe after an ejection ejects again at once.
            if health.failures >= self.consecutive
                || health.ejections > 0 && health.ejected_until.is_some()
            {
                let factor = 1u32 << health.ejections.min(16);
                let time = self.base.saturating_mul(factor).min(self.max);
                health.ejections += 1;
                health.failures = 0;
                health.ejected_until = Some(now + time);
                return Some(time);
            }
            None
        })
    }

    pub fn success(&self, endpoint: &str) {
        self.with(|map| {
            map.remove(endpoint);
        });
    }
}

/// Tokens for retries: each first attempt deposits `ratio`, and `floor`
/// tokens a second are added on top, up to `cap`.
#[derive(Debug)]
pub struct RetryBudget {
    state: Mutex<(f64, Instant)>,
    ratio: f64,
    floor: f64,
    cap: f64,
}

impl RetryBudget {
    pub fn new(ratio: f64, floor: f64, cap: f64) -> Self {
        Self {
            state: Mutex::new((cap.min(floor), Instant::now())),
            ratio,
            floor,
            cap,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut (f64, Instant)) -> T) -> T {
        match self.state.lock() {
            Ok(mut guard) => f(&mut guard),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    pub fn deposit(&self, now: Instant) {
        self.with(|(tokens, last)| {
            let refill = now.duration_since(*last).as_secs_f64() * self.floor;
            *tokens = (*tokens + refill + self.ratio).min(self.cap);
            *last = now;
        });
    }

    /// Takes a token for one retry, if there is one.
    pub fn withdraw(&self, now: Instant) -> bool {
        self.with(|(tokens, last)| {
            let refill = now.duration_since(*last).as_secs_f64() * self.floor;
            *tokens = (*tokens + refill).min(self.cap);
            *last = now;
            if *tokens >= 1.0 - 1e-9 {
                *tokens -= 1.0;
                true
            } else {
                false
            }
        })
    }
}

/// How an attempt failed, as far as sending it again goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The service answered UNAVAILABLE: it read the call and refused it.
    Unavailable,
    /// No connection could be made: the call never left the gateway.
    NotConnected,
    /// The connection broke with the call in flight: it may have run.
    Broken,
}

/// Whether a failed attempt may be sent to another endpoint, and the reason
/// counted in `gateway_upstream_retries_total`; `None` when the failure is
/// the answer. Only a buffered (`replayable`) call can be sent again; then
/// one that never left is always safe, a refused one only when it is
/// idempotent, and one lost in flight when it is idempotent or carries an
/// idempotency key the service deduplicates on. The retry budget and the
/// attempt cap apply after this.
pub fn retry(
    attempt: Attempt,
    replayable: bool,
    idempotent: bool,
    keyed: bool,
) -> Option<&'static str> {
    if !replayable {
        return None;
    }
    match attempt {
        Attempt::NotConnected => Some("connect"),
        Attempt::Unavailable => idempotent.then_some("unavailable"),
        Attempt::Broken => (idempotent || keyed).then_some("broken"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn retries_only_what_is_safe_to_send_again() {
        use super::Attempt::{Broken, NotConnected, Unavailable};
        // (attempt, replayable, idempotent, keyed) -> retry reason
        let table = [
            (NotConnected, true, false, false, Some("connect")),
            (NotConnected, false, true, true, None),
            (Unavailable, true, true, false, Some("unavailable")),
            (Unavailable, true, false, true, None),
            (Unavailable, true, false, false, None),
            (Unavailable, false, true, false, None),
            (Broken, true, true, false, Some("broken")),
            (Broken, true, false, true, Some("broken")),
            (Broken, true, false, false, None),
            (Broken, false, true, true, None),
        ];
        for (attempt, replayable, idempotent, keyed, want) in table {
            assert_eq!(
                super::retry(attempt, replayable, idempotent, keyed),
                want,
                "{attempt:?} replayable={replayable} idempotent={idempotent} keyed={keyed}"
            );
        }
    }

    use super::*;

    #[test]
    fn ejects_after_consecutive_failures_for_a_growing_time() {
        let outliers = Outliers::new(3, Duration::from_secs(1), Duration::from_secs(30));
        let t0 = Instant::now();
        assert_eq!(outliers.failure("a", t0), None);
        assert_eq!(outliers.failure("a", t0), None);
        assert_eq!(outliers.failure("a", t0), Some(Duration::from_secs(1)));
        assert!(outliers.is_ejected("a", t0));
        assert!(
            !outliers.is_ejected("a", t0 + Duration::from_millis(1001)),
            "probed back after the time"
        );
        // The probe fails: ejected again at once, for twice as long.
        assert_eq!(
            outliers.failure("a", t0 + Duration::from_millis(1001)),
            Some(Duration::from_secs(2))
        );
        outliers.success("a");
        assert!(!outliers.is_ejected("a", t0 + Duration::from_millis(1002)));
        assert_eq!(
            outliers.failure("a", t0),
            None,
            "a success clears the record"
        );
    }

    #[test]
    fn the_budget_bounds_retries() {
        let budget = RetryBudget::new(0.2, 0.0, 10.0);
        let t0 = Instant::now();
        for _ in 0..10 {
            budget.deposit(t0);
        }
        assert!(budget.withdraw(t0), "10 first attempts pay for 2 retries");
        assert!(budget.withdraw(t0));
        assert!(!budget.withdraw(t0));
    }
}
