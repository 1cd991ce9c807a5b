//! Failed attempts per account, so that guessing one account's password is
//! slow however the caller reaches auth (through the gateway or straight to
//! its port). After `max_failures` failures within `window`, the account is
//! locked for `lockout`; each failure after a lock doubles it, up to
//! `max_lockout`; a success forgets the account. Register attempts on an
//! existing email count as failures too, so probing which emails have
//! accounts costs the same as guessing.
//!
//! State is in memory, per process, keyed by a digest of the normalized
//! email, for at most `max_accounts` accounts (the oldest is forgotten).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use sha2::{Digest, Sha256};
use tonic::Status;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    pub max_failures: u32,
    pub window: Duration,
    pub lockout: Duration,
    pub max_lockout: Duration,
    pub max_accounts: usize,
}

/// Whether an attempt on an account may go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on, and report how it ended with this ticket.
    Allow(Ticket),
    /// Locked for this long.
    Locked(Duration),
    /// Enough attempts on this account are already in progress to reach the limit.
    Busy,
}

/// Names one entry of one account, so an attempt that outlived its entry
/// (evicted, forgotten) never changes a newer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    /// Ended without an answer (the caller left, the hash pool was full).
    Abandoned,
}

type Key = [u8; 32];

#[derive(Debug, Clone)]
struct Entry {
    ticket: u64,
    failures: u32,
    window_start: Instant,
    /// Locks so far; while above zero, every failure locks again, for longer.
    strikes: u32,
    locked_until: Option<Instant>,
    in_flight: u32,
}

impl Entry {
    fn new(ticket: u64, now: Instant) -> Self {
        Self {
            ticket,
            failures: 0,
            window_start: now,
            strikes: 0,
            locked_until: None,
            in_flight: 0,
        }
    }

    fn is_idle(&self) -> bool {
        self.failures == 0 && self.strikes == 0 && self.in_flight == 0
    }
}

/// The decisions, on plain data: the caller passes the time in.
#[derive(Debug)]
pub struct LoginThrottle {
    config: ThrottleConfig,
    entries: HashMap<Key, Entry>,
    /// Accounts in the order they were first seen, for eviction; an item whose
    /// ticket no longer matches its entry is stale and skipped.
    order: VecDeque<(u64, Key)>,
    next_ticket: u64,
}

fn key(email: &str) -> Key {
    Sha256::digest(email.as_bytes()).into()
}

impl LoginThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            config,
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_ticket: 0,
        }
    }

    /// Decides whether an attempt on `email` may start at `now`.
    pub fn begin(&mut self, email: &str, now: Instant) -> Verdict {
        let key = key(email);
        if !self.entries.contains_key(&key) {
            self.insert(key, now);
        }
        let config = self.config;
        let Some(entry) = self.entries.get_mut(&key) else {
            return Verdict::Busy;
        };
        forget_old_failures(entry, &config, now);
        if let Some(until) = entry.locked_until.filter(|until| now < *until) {
            return Verdict::Locked(until - now);
        }
        // Attempts in progress count as failures until they end, so a burst
        // of guesses cannot all start before the first one fails.
        let allowed = if entry.strikes > 0 {
            entry.in_flight == 0
        } else {
            entry.failures + entry.in_flight < config.max_failures
        };
        if !allowed {
            return Verdict::Busy;
        }
        entry.in_flight += 1;
        Verdict::Allow(Ticket(entry.ticket))
    }

    /// Records how the attempt started with `ticket` ended.
    pub fn end(&mut self, email: &str, ticket: Ticket, outcome: Outcome, now: Instant) {
        let key = key(email);
        let config = self.config;
        let Some(entry) = self.entries.get_mut(&key).filter(|e| e.ticket == ticket.0) else {
            return;
        };
        entry.in_flight = entry.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Success => {
                entry.failures = 0;
                entry.strikes = 0;
                entry.locked_until = None;
            }
            Outcome::Failure => {
                if entry.failures == 0 && entry.strikes == 0 {
                    entry.window_start = now;
                }
                entry.failures = entry.failures.saturating_add(1);
                if entry.strikes > 0 || entry.failures >= config.max_failures {
                    entry.strikes = entry.strikes.saturating_add(1);
                    entry.locked_until = Some(now + lockout(&config, entry.strikes));
                }
            }
            Outcome::Abandoned => {}
        }
        if entry.is_idle() {
            self.entries.remove(&key);
        }
    }

    fn insert(&mut self, key: Key, now: Instant) {
        while self.entries.len() >= self.config.max_accounts.max(1) {
            let Some((ticket, oldest)) = self.order.pop_front() else {
                break;
            };
            if self
                .entries
                .get(&oldest)
                .is_some_and(|e| e.ticket == ticket)
            {
                self.entries.remove(&oldest);
            }
        }
        // Stale items pile up as accounts are forgotten; drop them now and then.
        if self.order.len() > 2 * self.config.max_accounts + 16 {
            let entries = &self.entries;
            self.order
                .retain(|(ticket, key)| entries.get(key).is_some_and(|e| e.ticket == *ticket));
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.entries.insert(key, Entry::new(ticket, now));
        self.order.push_back((ticket, key));
    }
}

/// Failures older than the window are forgotten; a locked account is
/// forgotten once it has stayed quiet for a window after its lock ended.
fn forget_old_failures(entry: &mut Entry, config: &ThrottleConfig, now: Instant) {
    let expired = match entry.locked_until {
        Some(until) => now >= until + config.window,
        None => entry.strikes == 0 && now >= entry.window_start + config.window,
    };
    if expired {
        entry.failures = 0;
        entry.strikes = 0;
        entry.locked_until = None;
        entry.window_start = now;
    }
}

/// `lockout` doubled for each strike after the first, at most `max_lockout`.
fn lockout(config: &ThrottleConfig, strikes: u32) -> Duration {
    let doublings = strikes.saturating_sub(1).min(30);
    config
        .lockout
        .saturating_mul(1 << doublings)
        .min(config.max_lockout)
}

/// The throttle shared by every call, with the clock at its edge.
#[derive(Debug)]
pub struct Attempts {
    throttle: Mutex<LoginThrottle>,
    refused: Counter,
}

impl Attempts {
    pub fn new(config: ThrottleConfig) -> Self {
        Self {
            throttle: Mutex::new(LoginThrottle::new(config)),
            refused: Counter::default(),
        }
    }

    /// Attempts refused, for `/metrics`.
    pub fn refused(&self) -> &Counter {
        &self.refused
    }

    fn with<T>(&self, f: impl FnOnce(&mut LoginThrottle) -> T) -> T {
        f(&mut self.throttle.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Starts an attempt on `email` (normalized), or the status refusing it.
    pub fn begin(&self, email: &str) -> Result<Attempt<'_>, Status> {
        let status = match self.with(|t| t.begin(email, Instant::now())) {
            Verdict::Allow(ticket) => {
                return Ok(Attempt {
                    attempts: self,
                    email: email.to_owned(),
                    ticket,
                    ended: false,
                });
            }
            Verdict::Locked(wait) => Status::resource_exhausted(format!(
                "too many failed logins for this account; retry in {} s",
                whole_seconds(wait)
            )),
            Verdict::Busy => Status::resource_exhausted(
                "too many logins in progress for this account; retry in a moment",
            ),
        };
        self.refused.inc();
        Err(status)
    }
}

/// Rounds up, so "retry in N s" is never too early.
fn whole_seconds(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// One attempt in progress; dropped without an outcome, it is abandoned.
#[derive(Debug)]
pub struct Attempt<'a> {
    attempts: &'a Attempts,
    email: String,
    ticket: Ticket,
    ended: bool,
}

impl Attempt<'_> {
    pub fn succeeded(mut self) {
        self.end(Outcome::Success);
    }

    pub fn failed(mut self) {
        self.end(Outcome::Failure);
    }

    fn end(&mut self, outcome: Outcome) {
        if !self.ended {
            self.ended = true;
            let (email, ticket) = (&self.email, self.ticket);
            self.attempts
                .with(|t| t.end(email, ticket, outcome, Instant::now()));
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.end(Outcome::Abandoned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: ThrottleConfig = ThrottleConfig {
        max_failures: 3,
        window: Duration::from_secs(60),
        lockout: Duration::from_secs(10),
        max_lockout: Duration::from_secs(35),
        max_accounts: 2,
    };

    /// One step of a script: at `t` seconds, an attempt on `email` that the
    /// throttle answers `want`; allowed attempts end as `outcome` at once.
    #[derive(Debug, Clone, Copy)]
    enum Want {
        Allow,
        Locked(u64),
    }

    fn check(steps: &[(u64, &str, Want, Outcome)]) {
        let start = Instant::now();
        let mut throttle = LoginThrottle::new(CONFIG);
        for (i, &(t, email, want, outcome)) in steps.iter().enumerate() {
            let now = start + Duration::from_secs(t);
            let got = throttle.begin(email, now);
            match (want, got) {
                (Want::Allow, Verdict::Allow(ticket)) => throttle.end(email, ticket, outcome, now),
                (Want::Locked(secs), Verdict::Locked(wait)) if wait.as_secs() == secs => {}
                _ => panic!("step {i} at {t} s on {email}: want {want:?}, got {got:?}"),
            }
        }
    }

    use Outcome::{Failure as F, Success as S};
    use Want::{Allow, Locked};

    #[test]
    fn locks_after_max_failures_and_doubles_up_to_the_cap() {
        let a = "a@example.com";
        check(&[
            (0, a, Allow, F),
            (1, a, Allow, F),
            (2, a, Allow, F),
            // Locked for 10 s from the third failure, even for the right password.
            (3, a, Locked(9), S),
            (11, a, Locked(1), S),
            // After the lock, one more failure locks again for 20 s, then 35 s (the cap).
            (12, a, Allow, F),
            (13, a, Locked(19), F),
            (32, a, Allow, F),
            (32, a, Locked(35), F),
            (67, a, Allow, F),
            (67, a, Locked(35), F),
        ]);
    }

    #[test]
    fn success_forgets_failures() {
        let a = "a@example.com";
        check(&[
            (0, a, Allow, F),
            (1, a, Allow, F),
            (2, a, Allow, S),
            (3, a, Allow, F),
            (4, a, Allow, F),
            (5, a, Allow, F),
            (6, a, Locked(9), S),
            // The lock ends; a success then clears the strikes too.
            (15, a, Allow, S),
            (16, a, Allow, F),
            (17, a, Allow, F),
            (18, a, Allow, F),
            (19, a, Locked(9), F),
        ]);
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let a = "a@example.com";
        check(&[
            (0, a, Allow, F),
            (1, a, Allow, F),
            // The window started at the first failure; 60 s later it starts over.
            (60, a, Allow, F),
            (61, a, Allow, F),
            (62, a, Allow, F),
            (63, a, Locked(9), S),
            // Quiet for a window after the lock ended: a fresh start, not a strike.
            (72 + 60, a, Allow, F),
            (133, a, Allow, F),
        ]);
    }

    #[test]
    fn accounts_are_independent() {
        let (a, b) = ("a@example.com", "b@example.com");
        check(&[
            (0, a, Allow, F),
            (0, a, Allow, F),
            (0, a, Allow, F),
            (1, a, Locked(9), S),
            (1, b, Allow, S),
            (1, b, Allow, F),
        ]);
    }

    #[test]
    fn attempts_in_progress_count_toward_the_limit() {
        let start = Instant::now();
        let a = "a@example.com";
        let mut throttle = LoginThrottle::new(CONFIG);
        let tickets: Vec<Verdict> = (0..4).map(|_| throttle.begin(a, start)).collect();
        assert!(matches!(
            tickets[..3],
            [Verdict::Allow(_), Verdict::Allow(_), Verdict::Allow(_)]
        ));
        assert_eq!(tickets[3], Verdict::Busy);
        for ticket in &tickets[..3] {
            if let Verdict::Allow(ticket) = ticket {
                throttle.end(a, *ticket, Outcome::Failure, start);
            }
        }
        assert_eq!(throttle.begin(a, start), Verdict::Locked(CONFIG.lockout));
        // A locked account that comes back gets one attempt at a time.
        let later = start + CONFIG.lockout;
        assert!(matches!(throttle.begin(a, later), Verdict::Allow(_)));
        assert_eq!(throttle.begin(a, later), Verdict::Busy);
    }

    #[test]
    fn memory_is_bounded_and_the_oldest_account_goes_first() {
        let start = Instant::now();
        let mut throttle = LoginThrottle::new(CONFIG);
        let fail = |throttle: &mut LoginThrottle, email: &str| {
            if let Verdict::Allow(ticket) = throttle.begin(email, start) {
                throttle.end(email, ticket, Outcome::Failure, start);
            }
        };
        for _ in 0..3 {
            fail(&mut throttle, "a@example.com");
        }
        fail(&mut throttle, "b@example.com");
        assert_eq!(throttle.entries.len(), 2);
        fail(&mut throttle, "c@example.com");
        assert_eq!(throttle.entries.len(), 2);
        // a was the oldest: forgotten, so no longer locked.
        assert!(matches!(
            throttle.begin("a@example.com", start),
            Verdict::Allow(_)
        ));
        // Idle accounts take no room.
        let mut throttle = LoginThrottle::new(CONFIG);
        for i in 0..1000 {
            let email = format!("u{i}@example.com");
            if let Verdict::Allow(ticket) = throttle.begin(&email, start) {
                throttle.end(&email, ticket, Outcome::Success, start);
            }
        }
        assert_eq!(throttle.entries.len(), 0);
        assert!(throttle.order.len() <= 2 * CONFIG.max_accounts + 17);
    }

    #[test]
    fn a_stale_ticket_changes_nothing() {
        let start = Instant::now();
        let mut throttle = LoginThrottle::new(CONFIG);
        let Verdict::Allow(old) = throttle.begin("a@example.com", start) else {
            panic!("allowed");
        };
        // a is evicted by two newer accounts, then seen again.
        for email in ["b@example.com", "c@example.com"] {
            let _ = throttle.begin(email, start);
        }
        let _ = throttle.begin("a@example.com", start);
        for _ in 0..5 {
            throttle.end("a@example.com", old, Outcome::Failure, start);
        }
        assert!(matches!(
            throttle.begin("a@example.com", start),
            Verdict::Allow(_)
        ));
    }

    #[test]
    fn retry_seconds_round_up() {
        for (wait, want) in [
            (Duration::from_millis(1), 1),
            (Duration::from_secs(30), 30),
            (Duration::from_millis(30_001), 31),
        ] {
            assert_eq!(whole_seconds(wait), want, "{wait:?}");
        }
    }
}
