//! `judge-sim`'s engine: rollouts simulated call by call, judged by the real
//! [`platform_routing::verdict::judge`] (and [`verdict::bake`]) the way
//! `platformctl`'s controller drives them: a look every 0.5 s of simulated
//! time, a step's window counted from the look after it began, a latency
//! bound at the live color's p90 over the minute before the step, Fail
//! rolls back, Ahead advances at once, Pass once the interval is over, Wait
//! beyond three intervals rolls back, Incident pauses until both colors
//! are healthy again. Both judges see the same calls for the same seed.

use platform_routing::judge::{self as sequential, Counts};
use platform_routing::release::{Judge, Thresholds};
use platform_routing::verdict::{self, Evidence, Look, Verdict, Window};

/// `platformctl rollout`'s defaults.
pub const STEPS: [u32; 4] = [5, 25, 50, 100];
pub const INTERVAL_S: f64 = 30.0;
/// `--bake` defaults to one interval.
pub const BAKE_S: f64 = INTERVAL_S;
pub const INCIDENT_TIMEOUT_S: f64 = 600.0;
/// The controller's look (its TICK).
pub const TICK_S: f64 = 0.5;
/// A step without enough requests rolls back after this many intervals.
const PATIENCE: f64 = 3.0;
/// The live color serves alone this long before a rollout starts, so the
/// first step has a latency bound.
pub const WARM_UP_S: f64 = 60.0;
/// A rollout still running after this long is counted as unfinished.
const GIVE_UP_S: f64 = 7_200.0;

/// The gates of a rollout judged by `judge`, with the default limits but
/// `max_error_ratio`.
pub fn thresholds(judge: Judge, max_error_ratio: f64) -> Thresholds {
    Thresholds {
        max_error_ratio,
        max_p99_ms: 500.0,
        max_relative_error: 2.0,
        min_requests: 50,
        judge,
    }
}

/// A small deterministic generator (xorshift64*, seeded through splitmix64
/// so that neighbouring seeds give unrelated streams).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn exponential(&mut self, rate: f64) -> f64 {
        -(1.0 - self.unit()).ln() / rate
    }

    /// Standard normal (Box-Muller, one of the pair).
    fn normal(&mut self) -> f64 {
        let (u, v) = (1.0 - self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Per-call latency: lognormal around `MEDIAN_MS`.
pub const MEDIAN_MS: f64 = 2.5;
pub const SIGMA: f64 = 0.35;

/// The gateway's latency buckets: upper bounds 0.1 ms x 1.25^i.
const BUCKETS: usize = 62;

pub fn bound_ms(bucket: usize) -> f64 {
    0.1 * 1.25f64.powi(bucket as i32)
}

pub fn bucket(ms: f64) -> usize {
    if ms <= 0.1 {
        return 0;
    }
    (((ms / 0.1).ln() / 1.25f64.ln()).ceil() as usize).min(BUCKETS - 1)
}

/// What the colors do. Rates are shares of calls (0.01 = 1%).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Traffic {
    /// Calls per second (Poisson arrivals).
    pub rate: f64,
    pub target_errors: f64,
    pub live_errors: f64,
    /// Share of the target's calls that take `extra_ms` longer.
    pub target_slowed: f64,
    pub extra_ms: f64,
    pub outage: Option<Outage>,
}

impl Traffic {
    pub fn errors(rate: f64, target_errors: f64, live_errors: f64) -> Traffic {
        Traffic {
            rate,
            target_errors,
            live_errors,
            target_slowed: 0.0,
            extra_ms: 0.0,
            outage: None,
        }
    }
}

/// Both colors failing alike for a while: it starts `after_s` into the
/// window of step `step` (an index into [`STEPS`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outage {
    pub step: usize,
    pub after_s: f64,
    pub lasting_s: f64,
    pub errors: f64,
}

/// One call: when it arrives and the draws that decide it, the same for
/// both judges whatever the weights are when it comes.
#[derive(Debug, Clone, Copy)]
struct Call {
    at: f64,
    route: f64,
    error: f64,
    latency_ms: f64,
    slowed: f64,
}

struct Calls {
    rng: Rng,
    rate: f64,
    at: f64,
}

impl Calls {
    fn next(&mut self) -> Call {
        self.at += self.rng.exponential(self.rate);
        Call {
            at: self.at,
            route: self.rng.unit(),
            error: self.rng.unit(),
            latency_ms: MEDIAN_MS * (SIGMA * self.rng.normal()).exp(),
            slowed: self.rng.unit(),
        }
    }
}

/// One color's counters since the simulation began, as the gateway keeps
/// them; a window is the difference of two of these.
#[derive(Debug, Clone, PartialEq)]
struct Tally {
    requests: u64,
    errors: u64,
    buckets: [u64; BUCKETS],
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            requests: 0,
            errors: 0,
            buckets: [0; BUCKETS],
        }
    }
}

impl Tally {
    fn add(&mut self, error: bool, latency_bucket: usize) {
        self.requests += 1;
        self.errors += u64::from(error);
        self.buckets[latency_bucket] += 1;
    }

    /// What happened since `then`, with calls above bucket `slow` counted
    /// slow, as `platformctl` reads the gateway's counters.
    fn window_since(&self, then: &Tally, slow: Option<usize>) -> Window {
        let mut buckets = self.buckets;
        for (b, t) in buckets.iter_mut().zip(then.buckets.iter()) {
            *b -= t;
        }
        let timed: u64 = buckets.iter().sum();
        Window {
            requests: self.requests - then.requests,
            server_errors: self.errors - then.errors,
            p99_ms: quantile(&buckets, timed, 0.99).map(bound_ms),
            timed: slow.map_or(0, |_| timed),
            slow: slow.map_or(0, |i| buckets[i + 1..].iter().sum()),
        }
    }
}

/// The bucket holding quantile `q`, if anything was timed.
fn quantile(buckets: &[u64], timed: u64, q: f64) -> Option<usize> {
    if timed == 0 {
        return None;
    }
    let rank = ((q * timed as f64).ceil() as u64).clamp(1, timed);
    let mut seen = 0;
    buckets.iter().position(|n| {
        seen += n;
        seen >= rank
    })
}

/// The live color's latencies in one-second slots, for its last minute.
struct Minute {
    slots: Vec<(i64, [u64; BUCKETS])>,
}

impl Minute {
    fn new() -> Minute {
        Minute {
            slots: vec![(-1_000, [0; BUCKETS]); 60],
        }
    }

    fn add(&mut self, at: f64, latency_bucket: usize) {
        let second = at.floor() as i64;
        let slot = &mut self.slots[second.rem_euclid(60) as usize];
        if slot.0 != second {
            *slot = (second, [0; BUCKETS]);
        }
        slot.1[latency_bucket] += 1;
    }

    /// The bucket at the p90 of the last minute, given 50 timed calls.
    fn p90(&self, now: f64) -> Option<usize> {
        let second = now.floor() as i64;
        let mut buckets = [0u64; BUCKETS];
        for (at, counts) in &self.slots {
            if *at + 60 > second && *at <= second {
                for (b, n) in buckets.iter_mut().zip(counts) {
                    *b += n;
                }
            }
        }
        let timed: u64 = buckets.iter().sum();
        if timed < 50 {
            return None;
        }
        quantile(&buckets, timed, 0.9)
    }
}

/// Where a window starts: both colors' counters then, and its bound.
#[derive(Debug, Clone)]
struct Mark {
    at: f64,
    target: Tally,
    live: Tally,
    slow: Option<usize>,
}

struct Colors {
    target: Tally,
    live: Tally,
    minute: Minute,
}

impl Colors {
    fn mark(&self, at: f64) -> Mark {
        Mark {
            at,
            target: self.target.clone(),
            live: self.live.clone(),
            slow: self.minute.p90(at),
        }
    }

    fn windows(&self, since: &Mark) -> (Window, Window) {
        (
            self.target.window_since(&since.target, since.slow),
            self.live.window_since(&since.live, since.slow),
        )
    }
}

/// Why a rollout was rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    /// The sequential test of server errors.
    ErrorTest,
    /// The sequential test of slow calls.
    LatencyTest,
    /// An absolute or relative gate.
    Gate,
    /// The bake after promotion: its sequential rate test, or its gates.
    BakeTest,
    BakeGate,
    /// Fewer than `min_requests` in three intervals.
    Starved,
    /// Paused for an incident longer than the incident timeout.
    IncidentTimeout,
}

impl Cause {
    /// Which part of the judge a Fail verdict's reason names.
    pub fn of(why: &str, baking: bool) -> Cause {
        if baking {
            if why.contains("before promotion") {
                Cause::BakeTest
            } else {
                Cause::BakeGate
            }
        } else if why.starts_with("latency:") {
            Cause::LatencyTest
        } else if why.contains("sequential test") {
            Cause::ErrorTest
        } else {
            Cause::Gate
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Cause::ErrorTest => "error test",
            Cause::LatencyTest => "latency test",
            Cause::Gate => "gate",
            Cause::BakeTest => "bake test",
            Cause::BakeGate => "bake gate",
            Cause::Starved => "too few requests",
            Cause::IncidentTimeout => "incident timeout",
        }
    }

    /// A verdict on what the target did, not on how much traffic came.
    pub fn is_judgement(self) -> bool {
        !matches!(self, Cause::Starved | Cause::IncidentTimeout)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Completed,
    RolledBack(Cause),
    Unfinished,
}

/// How one rollout ended, counted from its start (the warm-up excluded).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    pub end: End,
    pub seconds: f64,
    pub calls: u64,
    pub target_calls: u64,
    /// Failed user requests: the target's server errors.
    pub target_errors: u64,
    /// Times it was paused for an incident.
    pub pauses: u32,
    /// The step it ended at (an index into [`STEPS`]; `STEPS.len()` is the
    /// bake), and how long that step's window had run.
    pub step: usize,
    pub step_seconds: f64,
}

impl Outcome {
    pub fn rolled_back(&self) -> bool {
        matches!(self.end, End::RolledBack(_))
    }

    /// Rolled back by a Fail verdict (a test, a gate or the bake).
    pub fn failed(&self) -> bool {
        matches!(self.end, End::RolledBack(c) if c.is_judgement())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Step(usize),
    Bake,
}

/// The default `--max-error-ratio`.
pub const MAX_ERROR_RATIO: f64 = 0.01;

/// One rollout of `traffic`, judged against `gates`, from the calls of `seed`.
pub fn rollout(traffic: &Traffic, gates: &Thresholds, seed: u64) -> Outcome {
    let mut calls = Calls {
        rng: Rng::new(seed),
        rate: traffic.rate,
        at: 0.0,
    };
    let mut colors = Colors {
        target: Tally::default(),
        live: Tally::default(),
        minute: Minute::new(),
    };
    let mut outage_at: Option<f64> = None;
    let mut outcome = Outcome {
        end: End::Unfinished,
        seconds: 0.0,
        calls: 0,
        target_calls: 0,
        target_errors: 0,
        pauses: 0,
        step: 0,
        step_seconds: 0.0,
    };

    let start = WARM_UP_S;
    let mut stage = Stage::Step(0);
    let mut share = 0.0;
    let mut paused = false;
    // The controller marks a window at the first look after a change.
    let mut moved = true;
    let mut mark = colors.mark(0.0);
    let mut incident: Option<(f64, Mark)> = None;
    let mut baseline: Option<(Window, Option<usize>)> = None;
    // The evidence of the steps before, carried into the next as the
    // controller does.
    let (mut carried, mut latest) = (Evidence::default(), Evidence::default());
    let mut call = calls.next();
    for tick in 0u32.. {
        let t = start + f64::from(tick) * TICK_S;
        while call.at <= t {
            let outage = outage_at
                .zip(traffic.outage)
                .filter(|(from, o)| call.at >= *from && call.at < from + o.lasting_s);
            let to_target = call.route < share;
            let (rate, latency) = if to_target {
                let slowed = call.slowed < traffic.target_slowed;
                let extra = if slowed { traffic.extra_ms } else { 0.0 };
                (traffic.target_errors, call.latency_ms + extra)
            } else {
                (traffic.live_errors, call.latency_ms)
            };
            let rate = outage.map_or(rate, |(_, o)| rate.max(o.errors));
            let error = call.error < rate;
            let b = bucket(latency);
            if to_target {
                colors.target.add(error, b);
            } else {
                colors.live.add(error, b);
                colors.minute.add(call.at, b);
            }
            if call.at >= start {
                outcome.calls += 1;
                if to_target {
                    outcome.target_calls += 1;
                    outcome.target_errors += u64::from(error);
                }
            }
            call = calls.next();
        }
        if tick == 0 {
            share = f64::from(STEPS[0]) / 100.0;
        }
        outcome.seconds = t - start;
        outcome.step = match stage {
            Stage::Step(i) => i,
            Stage::Bake => STEPS.len(),
        };
        if t - start > GIVE_UP_S {
            break;
        }
        if moved {
            mark = colors.mark(t);
            carried = latest;
            if stage == Stage::Bake {
                // The bake counts slow calls against its baseline's bound.
                mark.slow = baseline.as_ref().and_then(|(_, slow)| *slow);
            }
            if let (Stage::Step(i), Some(o)) = (stage, traffic.outage)
                && i == o.step
                && outage_at.is_none()
            {
                outage_at = Some(t + o.after_s);
            }
            moved = false;
        }

        if paused {
            let Some((since, recovery)) = &incident else {
                continue;
            };
            if t - since >= INCIDENT_TIMEOUT_S {
                outcome.end = End::RolledBack(Cause::IncidentTimeout);
                break;
            }
            let (tested, current) = colors.windows(recovery);
            if current.requests < gates.min_requests.max(1) {
                continue;
            }
            let healthy = |w: &Window| {
                w.error_ratio() <= gates.max_error_ratio
                    && w.p99_ms.is_none_or(|p| p <= gates.max_p99_ms)
            };
            if healthy(&tested) && healthy(&current) {
                paused = false;
                moved = true;
                incident = None;
            } else {
                // Still failing: the next recovery window starts now.
                incident = Some((*since, colors.mark(t)));
            }
            continue;
        }

        let elapsed = t - mark.at;
        outcome.step_seconds = elapsed;
        let (tested, current) = colors.windows(&mark);
        let weight = match stage {
            Stage::Step(i) if STEPS[i] < 100 => Some(f64::from(STEPS[i]) / 100.0),
            _ => None,
        };
        let window = match stage {
            Stage::Bake => BAKE_S,
            Stage::Step(_) => INTERVAL_S,
        };
        let verdict = match (&baseline, stage) {
            (Some((before, slow)), Stage::Bake) => {
                verdict::bake(&tested, before, slow.map(bound_ms), gates)
            }
            (None, Stage::Bake) => {
                match verdict::judge(&tested, &current, Look::default(), gates) {
                    Verdict::Wait { .. } => Verdict::Pass,
                    other => other,
                }
            }
            (_, Stage::Step(_)) => {
                let look = Look {
                    weight,
                    slow_ms: mark.slow.map(bound_ms),
                    carried,
                };
                latest = verdict::evidence(&tested, &current, look);
                verdict::judge(&tested, &current, look, gates)
            }
        };
        if weight.is_some() {
            baseline = Some((current, mark.slow));
        }
        let advance = match verdict {
            Verdict::Fail(why) => {
                outcome.end = End::RolledBack(Cause::of(&why, stage == Stage::Bake));
                break;
            }
            Verdict::Ahead(_) => true,
            Verdict::Incident(_) => {
                paused = true;
                moved = true;
                outcome.pauses += 1;
                incident = Some((t, colors.mark(t)));
                false
            }
            Verdict::Pass => elapsed >= window,
            Verdict::Wait { .. } if elapsed >= INTERVAL_S * PATIENCE => {
                outcome.end = End::RolledBack(Cause::Starved);
                break;
            }
            Verdict::Wait { .. } => false,
        };
        if advance {
            moved = true;
            stage = match stage {
                Stage::Step(i) if i + 1 < STEPS.len() => {
                    share = f64::from(STEPS[i + 1]) / 100.0;
                    Stage::Step(i + 1)
                }
                Stage::Step(_) if BAKE_S > 0.0 => Stage::Bake,
                _ => {
                    outcome.end = End::Completed;
                    break;
                }
            };
        }
    }
    outcome
}

/// The rollouts of `traffic` under both judges, seed by seed.
#[derive(Debug, Clone)]
pub struct Pair {
    pub traffic: Traffic,
    pub max_error_ratio: f64,
    pub sequential: Vec<Outcome>,
    pub gates: Vec<Outcome>,
}

pub fn pair(traffic: &Traffic, max_error_ratio: f64, rollouts: usize, seed: u64) -> Pair {
    let (new, old) = (
        thresholds(Judge::Sequential, max_error_ratio),
        thresholds(Judge::Gates, max_error_ratio),
    );
    let both = parallel(rollouts, |i| {
        let seed = seed.wrapping_mul(1_000_003).wrapping_add(i as u64);
        (rollout(traffic, &new, seed), rollout(traffic, &old, seed))
    });
    let (sequential, gates) = both.into_iter().unzip();
    Pair {
        traffic: *traffic,
        max_error_ratio,
        sequential,
        gates,
    }
}

/// `f(0..n)` over the machine's cores, in order.
pub fn parallel<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, |c| c.get());
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    std::thread::scope(|scope| {
        let chunk = n.div_ceil(threads.max(1)).max(1);
        for (c, part) in out.chunks_mut(chunk).enumerate() {
            let f = &f;
            scope.spawn(move || {
                for (j, slot) in part.iter_mut().enumerate() {
                    *slot = Some(f(c * chunk + j));
                }
            });
        }
    });
    out.into_iter().flatten().collect()
}

/// False alarms of the new judge's sequential tests at one weight, looking
/// every `every` calls over a healthy step: both colors fail 1% of calls
/// and are as fast.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LookRate {
    pub weight: f64,
    pub every: u64,
    pub steps: usize,
    /// Steps the error test failed (its e-value reached 1/alpha).
    pub error_test: usize,
    /// Steps the latency test failed.
    pub latency_test: usize,
    /// Steps either failed.
    pub either: usize,
}

/// `steps` steps at `weight` of `calls` calls each, never ended early (a
/// pass is ignored, so the tests are read at every look to the end), each
/// read every `every` calls for each of `cadences`. Slow calls are counted
/// against the bucket at the latency model's p90, as the live color's
/// minute before the step would set it.
pub fn look_rates(
    weight: f64,
    cadences: &[u64],
    calls: u64,
    steps: usize,
    seed: u64,
) -> Vec<LookRate> {
    let settings = [verdict::ERRORS, verdict::LATENCY];
    let slow = bucket(MEDIAN_MS * (SIGMA * 1.281_551_6).exp());
    let flags = parallel(steps, |i| {
        let mut rng = Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(i as u64));
        let (mut target, mut live) = ([Counts::default(); 2], [Counts::default(); 2]);
        let mut failed = vec![[false; 2]; cadences.len()];
        // A test reads only the events' counts: unchanged since a cadence's
        // last look, its verdict is too, so it is not computed again.
        let mut read = vec![[(u64::MAX, u64::MAX); 2]; cadences.len()];
        for n in 1..=calls {
            let to_target = rng.unit() < weight;
            let error = rng.unit() < 0.01;
            let slowed = bucket(MEDIAN_MS * (SIGMA * rng.normal()).exp()) > slow;
            let color = if to_target { &mut target } else { &mut live };
            for (counts, event) in color.iter_mut().zip([error, slowed]) {
                counts.calls += 1;
                counts.errors += u64::from(event);
            }
            for ((every, failed), read) in cadences.iter().zip(&mut failed).zip(&mut read) {
                if n % every != 0 {
                    continue;
                }
                for test in 0..2 {
                    let events = (target[test].errors, live[test].errors);
                    if failed[test] || read[test] == events {
                        continue;
                    }
                    read[test] = events;
                    failed[test] = matches!(
                        sequential::errors(target[test], live[test], weight, settings[test]),
                        sequential::Verdict::Fail { .. }
                    );
                }
            }
        }
        failed
    });
    cadences
        .iter()
        .enumerate()
        .map(|(c, every)| LookRate {
            weight,
            every: *every,
            steps,
            error_test: flags.iter().filter(|f| f[c][0]).count(),
            latency_test: flags.iter().filter(|f| f[c][1]).count(),
            either: flags.iter().filter(|f| f[c][0] || f[c][1]).count(),
        })
        .collect()
}

/// The value at quantile `q` (nearest rank) of `values`, sorted or not.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// The Wilson 95% interval of `k` successes in `n`.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n, z) = (k as f64, n as f64, 1.959_964);
    let p = k / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_into_the_gateways_buckets() {
        for (ms, expected) in [
            (0.05, 0),
            (0.1, 0),
            (0.12, 1),
            (0.13, 2),
            (2.5, 15),
            (4.0, 17),
            (1e9, BUCKETS - 1),
        ] {
            assert_eq!(bucket(ms), expected, "{ms} ms");
            assert!(ms > 1e6 || bound_ms(expected) >= ms, "{ms} ms");
        }
    }

    fn tally(counts: &[(usize, u64)], errors: u64) -> Tally {
        let mut t = Tally::default();
        for (b, n) in counts {
            for _ in 0..*n {
                t.add(false, *b);
            }
        }
        t.errors = errors;
        t
    }

    #[test]
    fn a_window_counts_calls_above_the_bound_as_slow_and_reads_p99_from_buckets() {
        let before = tally(&[(10, 5)], 1);
        let mut now = before.clone();
        for (b, n) in [(10, 90), (12, 9), (20, 1)] {
            for _ in 0..n {
                now.add(false, b);
            }
        }
        now.errors += 2;
        let w = now.window_since(&before, Some(10));
        assert_eq!(
            (w.requests, w.server_errors, w.timed, w.slow),
            (100, 2, 100, 10)
        );
        assert_eq!(w.p99_ms, Some(bound_ms(12)));
        let unbound = now.window_since(&before, None);
        assert_eq!((unbound.timed, unbound.slow), (0, 0));
        assert_eq!(
            Tally::default()
                .window_since(&Tally::default(), None)
                .p99_ms,
            None
        );
    }

    #[test]
    fn the_bound_is_the_live_colors_p90_over_its_last_minute() {
        let mut minute = Minute::new();
        for (b, n) in [(10, 85), (12, 10), (20, 5)] {
            for _ in 0..n {
                minute.add(10.5, b);
            }
        }
        assert_eq!(minute.p90(30.0), Some(12));
        assert_eq!(minute.p90(69.9), Some(12));
        assert_eq!(minute.p90(70.0), None, "a minute later, nothing left");
        let mut quiet = Minute::new();
        for _ in 0..49 {
            quiet.add(1.0, 10);
        }
        assert_eq!(
            quiet.p90(2.0),
            None,
            "fewer than 50 timed calls set no bound"
        );
    }

    #[test]
    fn wilson_intervals() {
        let (low, high) = wilson(0, 1_000);
        assert!(
            low < 1e-12 && (high - 0.003_83).abs() < 1e-4,
            "{low} {high}"
        );
        let (low, high) = wilson(10, 1_000);
        assert!((low - 0.005_44).abs() < 1e-4 && (high - 0.018_3).abs() < 1e-4);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn the_judges_reasons_name_their_cause() {
        // Real reasons of the routing crate's judge, so a change of wording
        // there cannot silently move rollbacks between causes here.
        let gates = thresholds(Judge::Sequential, MAX_ERROR_RATIO);
        let w = |requests, server_errors, timed, slow| Window {
            requests,
            server_errors,
            p99_ms: Some(5.0),
            timed,
            slow,
        };
        let at = |weight| Look {
            weight: Some(weight),
            slow_ms: Some(4.4),
            ..Look::default()
        };
        let cause = |verdict: Verdict| match verdict {
            Verdict::Fail(why) => Cause::of(&why, false),
            other => panic!("{other:?}"),
        };
        let errors = verdict::judge(&w(6, 2, 6, 0), &w(114, 0, 114, 10), at(0.05), &gates);
        assert_eq!(cause(errors), Cause::ErrorTest);
        let slow = verdict::judge(&w(40, 0, 40, 22), &w(120, 0, 120, 12), at(0.25), &gates);
        assert_eq!(cause(slow), Cause::LatencyTest);
        let limit = verdict::judge(
            &w(100, 20, 100, 5),
            &w(1_900, 1, 1_900, 95),
            Look::default(),
            &gates,
        );
        assert_eq!(cause(limit), Cause::Gate);
    }

    #[test]
    fn a_rollout_is_the_same_for_the_same_seed() {
        let traffic = Traffic::errors(40.0, 0.01, 0.005);
        let gates = thresholds(Judge::Sequential, MAX_ERROR_RATIO);
        assert_eq!(rollout(&traffic, &gates, 3), rollout(&traffic, &gates, 3));
    }

    #[test]
    fn the_new_judge_stops_a_bad_release_sooner_and_fails_a_healthy_one_less_often() {
        // Scenario 2: 20% errors against 0.1%.
        let bad = pair(&Traffic::errors(40.0, 0.2, 0.001), MAX_ERROR_RATIO, 200, 7);
        let failed = |o: &[Outcome]| {
            let errors: Vec<f64> = o.iter().map(|o| o.target_errors as f64).collect();
            (percentile(&errors, 0.5), percentile(&errors, 0.9))
        };
        assert!(bad.sequential.iter().all(Outcome::rolled_back));
        assert!(bad.gates.iter().all(Outcome::rolled_back));
        let ((new_median, new_p90), (old_median, _)) =
            (failed(&bad.sequential), failed(&bad.gates));
        assert!(new_median <= Some(2.0), "new judge: median {new_median:?}");
        assert!(
            new_p90 < old_median,
            "new p90 {new_p90:?}, gate median {old_median:?}"
        );

        // Scenario 1, with a limit above the 1% both colors fail: the
        // sequential tests alone stay under their alpha (1%) for each of
        // the two tests at each of the three steps they judge, and the new
        // judge rolls back fewer healthy releases than the gate.
        let healthy = pair(&Traffic::errors(40.0, 0.01, 0.01), 0.05, 200, 8);
        let by_tests = healthy
            .sequential
            .iter()
            .filter(|o| {
                matches!(
                    o.end,
                    End::RolledBack(Cause::ErrorTest | Cause::LatencyTest)
                )
            })
            .count();
        assert!(by_tests <= 12, "{by_tests} of 200 rolled back by the tests");
        let rolled_back = |o: &[Outcome]| o.iter().filter(|o| o.failed()).count();
        let (new, old) = (
            rolled_back(&healthy.sequential),
            rolled_back(&healthy.gates),
        );
        assert!(new < old, "new judge {new}, gate {old} of 200");
    }
}
