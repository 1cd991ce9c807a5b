//! Protection against too much: a concurrency limit that sheds load with a
//! fast 503 instead of queuing without bound, a concurrency limit per client
//! address (so a few clients cannot take the global one), and a per-client
//! token bucket (keyed by token subject, else client address) that answers
//! 429 with `Retry-After`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::proxy::errors::{Failure, Side};

/// Codes of the two refusals.
const RESOURCE_EXHAUSTED: i32 = 8;

#[derive(Debug, Clone)]
pub struct ConcurrencyLimit {
    permits: Arc<Semaphore>,
    max: usize,
}

impl ConcurrencyLimit {
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// True while every permit is taken: readiness says so, so a load
    /// balancer sends new clients elsewhere.
    pub fn saturated(&self) -> bool {
        self.permits.available_permits() == 0
    }

    /// A permit, or the refusal to answer at once when all are taken.
    pub fn try_acquire(&self) -> Result<OwnedSemaphorePermit, Failure> {
        Arc::clone(&self.permits).try_acquire_owned().map_err(|_| {
            let mut failure = Failure::new(
                RESOURCE_EXHAUSTED,
                format!(
                    "the gateway is at its limit of {} concurrent requests; retry shortly",
                    self.max
                ),
                Side::Gateway,
            );
            failure.http_override = Some(http::StatusCode::SERVICE_UNAVAILABLE);
            failure
        })
    }
}

/// Counts per client address, each capped: requests in progress, or open
/// connections. A slot is given back when its guard is dropped.
#[derive(Debug)]
pub struct PerClient {
    max: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One taken slot of a client; dropping it gives it back.
#[derive(Debug)]
pub struct ClientSlot {
    owner: Arc<PerClient>,
    ip: IpAddr,
}

impl PerClient {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            counts: Mutex::new(HashMap::new()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        match self.counts.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// A slot for `ip`, or None when it holds `max` already.
    pub fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let mut counts = self.counts();
        let count = counts.entry(client_key(ip)).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            owner: Arc::clone(self),
            ip: client_key(ip),
        })
    }

    /// Slots taken by all clients.
    pub fn total(&self) -> usize {
        self.counts().values().sum()
    }

    pub fn max(&self) -> usize {
        self.max
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.owner.counts();
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// The key of a client address: an IPv6 client is its /64 (one host can
/// hold a whole /64), an IPv4-mapped address its IPv4 address.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The refusal of a client over its share of concurrent requests.
pub fn client_over_limit(max: usize) -> Failure {
    Failure::new(
        RESOURCE_EXHAUSTED,
        format!(
            "too many requests in progress from this address (at most {max}); retry when some finish"
        ),
        Side::Downstream,
    )
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets per client: `rate` requests per second, bursts up to `burst`.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
}

/// Buckets kept before idle ones are dropped.
const MAX_BUCKETS: usize = 100_000;

impl RateLimiter {
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            buckets: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Takes one token of `client`, or says how long to wait for one.
    pub fn check(&self, client: &str, now: Instant) -> Result<(), Failure> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let mut buckets = match self.buckets.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if buckets.len() >= MAX_BUCKETS {
            let full_after = Duration::from_secs_f64(self.burst / self.rate);
            buckets.retain(|_, b| now.duration_since(b.last) < full_after);
        }
        let bucket = buckets.entry(client.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        let refill = now.duration_since(bucket.last).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / self.rate).ceil().max(1.0) as u64;
        let mut failure = Failure::new(
            RESOURCE_EXHAUSTED,
            format!(
                "too many requests: the limit is {} per second; retry after {wait} s",
                self.rate
            ),
            Side::Downstream,
        );
        if let Ok(value) = http::HeaderValue::from_str(&wait.to_string()) {
            failure.headers.push((http::header::RETRY_AFTER, value));
        }
        Err(failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_and_are_per_client() {
        let limiter = RateLimiter::new(2.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check("alice", t0).is_ok());
        }
        let refused = limiter.check("alice", t0).expect_err("burst used");
        assert_eq!(refused.http_status(), 429);
        assert_eq!(refused.headers[0].1, "1");
        assert!(
            limiter.check("bob", t0).is_ok(),
            "other clients are not affected"
        );
        assert!(
            limiter
                .check("alice", t0 + Duration::from_millis(500))
                .is_ok(),
            "one token after 0.5 s at 2/s"
        );
        assert!(
            limiter
                .check("alice", t0 + Duration::from_millis(500))
                .is_err()
        );
        assert!(
            RateLimiter::new(0.0, 0.0).check("x", t0).is_ok(),
            "0 turns it off"
        );
    }

    #[test]
    fn clients_are_capped_one_by_one() {
        let limit = PerClient::new(2);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let first = limit.try_take(a).expect("first");
        let _second = limit.try_take(a).expect("second");
        assert!(limit.try_take(a).is_none(), "a third from one address");
        let other = limit.try_take(b);
        assert!(other.is_some(), "another address is not affected");
        drop(first);
        let again = limit.try_take(a);
        assert!(again.is_some(), "a slot comes back when dropped");
        assert_eq!(limit.total(), 3);
        for (ip, key) in [
            ("10.1.2.3", "10.1.2.3"),
            ("::ffff:10.1.2.3", "10.1.2.3"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::"),
        ] {
            let ip: IpAddr = ip.parse().expect("ip");
            assert_eq!(client_key(ip).to_string(), key);
        }
    }

    #[test]
    fn sheds_beyond_the_limit() {
        let limit = ConcurrencyLimit::new(2);
        let a = limit.try_acquire().expect("first");
        let _b = limit.try_acquire().expect("second");
        let refused = limit.try_acquire().expect_err("third");
        assert_eq!((refused.http_status().as_u16(), refused.code), (503, 8));
        drop(a);
        assert!(limit.try_acquire().is_ok());
    }
}
