//! `judge-sim`'s experiment and report: the scenarios, each run with the new
//! judge (`Judge::Sequential`) and today's gate (`Judge::Gates`) on the same
//! calls, and a Markdown report with SVG plots whose every figure is
//! computed here from the outcomes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use platform_routing::verdict;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use crate::judge_sim::{
    self, Cause, End, LookRate, MAX_ERROR_RATIO, Outage, Outcome, Pair, STEPS, Traffic, percentile,
    wilson,
};

pub const REPORT: &str = "release-judge.md";
pub const FAILED_SVG: &str = "release-judge-failed.svg";
pub const DETECT_SVG: &str = "release-judge-detect.svg";
pub const LOOKS_SVG: &str = "release-judge-looks.svg";

/// A limit with room above a 1% error rate, to see the judges apart from
/// the absolute limit.
pub const ROOMY_LIMIT: f64 = 0.05;

/// How much to simulate.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Rollouts per judge, per row of every scenario.
    pub rollouts: usize,
    /// Steps per weight of the look-frequency curve, and their length.
    pub curve_steps: usize,
    pub curve_calls: u64,
    pub seed: u64,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            rollouts: 1_000,
            curve_steps: 2_000,
            curve_calls: 20_000,
            seed: 1,
        }
    }
}

pub const HEALTHY_RATES: [f64; 3] = [10.0, 40.0, 200.0];
pub const SUBTLE_RATES: [f64; 4] = [10.0, 40.0, 200.0, 1_000.0];
pub const WEIGHTS: [f64; 3] = [0.05, 0.25, 0.5];
pub const CADENCES: [u64; 6] = [1, 10, 20, 100, 1_000, 20_000];

#[derive(Debug, Clone)]
pub struct Results {
    /// Healthy releases: (target and live error rate, limit) x rate.
    pub healthy: Vec<Pair>,
    pub bad: Pair,
    /// The subtle release: limit x rate.
    pub subtle: Vec<Pair>,
    pub slow: Pair,
    pub incident: Pair,
    pub looks: Vec<LookRate>,
}

pub fn bad_traffic() -> Traffic {
    Traffic::errors(40.0, 0.2, 0.001)
}

pub fn slow_traffic() -> Traffic {
    Traffic {
        target_slowed: 0.5,
        extra_ms: 50.0,
        ..Traffic::errors(40.0, 0.0, 0.0)
    }
}

/// When the outage starts, into the 25% step's window.
pub const INCIDENT_AFTER_S: f64 = judge_sim::INTERVAL_S / 2.0;

/// Both colors fail one call in five for 20 s, from the middle of the 25%
/// step, and never otherwise (what a low error rate alone does to the gates
/// is scenario 1's).
pub fn incident_traffic() -> Traffic {
    Traffic {
        outage: Some(Outage {
            step: 1,
            after_s: INCIDENT_AFTER_S,
            lasting_s: 20.0,
            errors: 0.2,
        }),
        ..Traffic::errors(40.0, 0.0, 0.0)
    }
}

pub fn run(plan: &Plan) -> Results {
    let n = plan.rollouts;
    let mut healthy = Vec::new();
    for (errors, limit) in [
        (0.01, MAX_ERROR_RATIO),
        (0.01, ROOMY_LIMIT),
        (0.001, MAX_ERROR_RATIO),
    ] {
        for rate in HEALTHY_RATES {
            let traffic = Traffic::errors(rate, errors, errors);
            healthy.push(judge_sim::pair(&traffic, limit, n, plan.seed));
        }
    }
    let bad = judge_sim::pair(&bad_traffic(), MAX_ERROR_RATIO, n, plan.seed + 1);
    let mut subtle = Vec::new();
    for limit in [MAX_ERROR_RATIO, ROOMY_LIMIT] {
        for rate in SUBTLE_RATES {
            let traffic = Traffic::errors(rate, 0.01, 0.005);
            subtle.push(judge_sim::pair(&traffic, limit, n, plan.seed + 2));
        }
    }
    let slow = judge_sim::pair(&slow_traffic(), MAX_ERROR_RATIO, n, plan.seed + 3);
    let incident = judge_sim::pair(&incident_traffic(), MAX_ERROR_RATIO, n, plan.seed + 4);
    let looks = WEIGHTS
        .iter()
        .flat_map(|w| {
            judge_sim::look_rates(
                *w,
                &CADENCES,
                plan.curve_calls,
                plan.curve_steps,
                plan.seed + 5,
            )
        })
        .collect();
    Results {
        healthy,
        bad,
        subtle,
        slow,
        incident,
        looks,
    }
}

/// Writes the report and its plots into `dir`.
pub fn write(
    dir: &Path,
    plan: &Plan,
    results: &Results,
    elapsed_s: f64,
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let failed = dir.join(FAILED_SVG);
    draw_failed(&failed, &results.bad)
        .with_context(|| format!("cannot draw {}", failed.display()))?;
    let detect = dir.join(DETECT_SVG);
    draw_detect(&detect, &results.subtle)
        .with_context(|| format!("cannot draw {}", detect.display()))?;
    let looks = dir.join(LOOKS_SVG);
    draw_looks(&looks, &results.looks)
        .with_context(|| format!("cannot draw {}", looks.display()))?;
    let path = dir.join(REPORT);
    std::fs::write(&path, markdown(plan, results, elapsed_s))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

// Figures of a set of outcomes.

fn count(outcomes: &[Outcome], f: impl Fn(&Outcome) -> bool) -> usize {
    outcomes.iter().filter(|o| f(o)).count()
}

fn values(
    outcomes: &[Outcome],
    keep: impl Fn(&Outcome) -> bool,
    of: impl Fn(&Outcome) -> f64,
) -> Vec<f64> {
    outcomes.iter().filter(|o| keep(o)).map(of).collect()
}

fn caused(outcomes: &[Outcome], cause: Cause) -> usize {
    count(outcomes, |o| o.end == End::RolledBack(cause))
}

/// "12.3% [10.4-14.5]": a share with its 95% interval.
fn share_ci(k: usize, n: usize) -> String {
    let (low, high) = wilson(k, n);
    format!("{} [{:.1}-{:.1}]", share(k, n), low * 100.0, high * 100.0)
}

fn share(k: usize, n: usize) -> String {
    if n == 0 {
        return "-".into();
    }
    format!("{:.1}%", 100.0 * k as f64 / n as f64)
}

fn number(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

fn seconds(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1} s"))
}

/// "median (p90)" of `values`.
fn spread(values: &[f64], unit: fn(Option<f64>) -> String) -> String {
    if values.is_empty() {
        return "-".into();
    }
    format!(
        "{} ({})",
        unit(percentile(values, 0.5)),
        unit(percentile(values, 0.9))
    )
}

/// Rollbacks by cause: "error test 3, gate 20".
fn causes(outcomes: &[Outcome]) -> String {
    let all = [
        Cause::ErrorTest,
        Cause::LatencyTest,
        Cause::Gate,
        Cause::BakeTest,
        Cause::BakeGate,
        Cause::Starved,
        Cause::IncidentTimeout,
    ];
    let parts: Vec<String> = all
        .iter()
        .filter_map(|c| {
            let k = caused(outcomes, *c);
            (k > 0).then(|| format!("{} {k}", c.name()))
        })
        .collect();
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

fn percent(rate: f64) -> String {
    let text = format!("{:.2}", rate * 100.0);
    format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
}

/// The latency model's p90.
fn p90_ms() -> f64 {
    judge_sim::MEDIAN_MS * (judge_sim::SIGMA * 1.281_551_6).exp()
}

fn markdown(plan: &Plan, r: &Results, elapsed_s: f64) -> String {
    let mut md = String::new();
    let n = plan.rollouts;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let steps: Vec<String> = STEPS.iter().map(u32::to_string).collect();
    let _ = writeln!(
        md,
        "# The release judge on simulated rollouts\n\n\
         The new judge (`--judge sequential`: sequential tests of server errors and of slow calls \
         against the live color, with the gates as a safety net) and today's gate \
         (`--judge gates`: absolute and relative limits once a step has `--min-requests`) \
         roll out the same simulated releases, call by call. Both are the real \
         `platform_routing::verdict::judge` and `verdict::bake`; only the traffic is simulated.\n\n\
         Rerun (about {elapsed_s:.0} s here, {cores} cores; writes this file and its plots):\n\n\
         ```\ncargo run --release -p load-lab --bin judge-sim\n```\n"
    );
    let _ = writeln!(
        md,
        "## Setup\n\n\
         - `platformctl rollout`'s defaults: steps {}, interval {:.0} s, max error ratio 1%, \
         max p99 500 ms, max relative error 2x (+0.5 points), min requests 50, \
         bake one interval ({:.0} s at 100%), incident timeout {:.0} s. Rows marked \
         \"limit 5%\" change only `--max-error-ratio`.\n\
         - The controller as `platformctl/src/release/drive.rs` drives it: a look every {} s of \
         simulated time; a step's window starts at the first look after the step began (calls \
         in between count for users, not for the window); Fail rolls back at once; Ahead \
         advances at once; Pass advances once the step's interval is over; Wait past three \
         intervals rolls back (\"too few requests\"); Incident pauses, and the rollout goes on \
         once both colors are under the limits over `--min-requests` live calls (the step \
         starts again), or rolls back after the incident timeout. The bake judges the target \
         at 100% against the live color's window of the 50% step.\n\
         - Calls: Poisson arrivals at the given rate, each to the target with probability of \
         the step's weight; server errors independent, at each color's rate. Latency \
         lognormal, median {} ms, sigma {} (p90 {:.1} ms), counted into the gateway's \
         buckets (0.1 ms x 1.25^i). A step's latency bound is the upper end of the bucket \
         holding the live color's p90 over the minute before it ({:.1} ms here; a warm-up \
         minute at 100% on the live color precedes every rollout); slow calls are those \
         above it; p99 comes from the window's buckets.\n\
         - {n} rollouts per row and judge; both judges see the same calls (the same seed, the \
         same draws per call). Intervals are 95% Wilson intervals. \"Failed requests\" are \
         the target's server errors from the rollout's start to the rollback.\n",
        steps.join(","),
        judge_sim::INTERVAL_S,
        judge_sim::BAKE_S,
        judge_sim::INCIDENT_TIMEOUT_S,
        judge_sim::TICK_S,
        judge_sim::MEDIAN_MS,
        judge_sim::SIGMA,
        p90_ms(),
        judge_sim::bound_ms(judge_sim::bucket(p90_ms())),
    );
    md.push_str(&healthy_section(r, n));
    md.push_str(&bad_section(r, n));
    md.push_str(&subtle_section(r, n));
    md.push_str(&slow_section(r, n));
    md.push_str(&incident_section(r, n));
    md.push_str(&looks_section(plan, r));
    md.push_str(&summary(r));
    md
}

fn healthy_section(r: &Results, n: usize) -> String {
    let mut md = String::from(
        "## 1. Healthy releases: false rollbacks\n\n\
         The target fails as often as the live color. The first three rows are the scenario as \
         set (1% on both colors, the default limit of 1%); the next three give the limit room \
         (5%); the last three are a service failing 0.1% of its calls.\n\n\
         | errors (both) | limit | req/s | rolled back by a verdict, new | today's gate | too few requests, new / gate | paused for an incident, new | completed, new / gate | median time to complete, new / gate |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for p in &r.healthy {
        let (s, g) = (&p.sequential, &p.gates);
        let done = |o: &[Outcome]| {
            seconds(percentile(
                &values(o, |o| o.end == End::Completed, |o| o.seconds),
                0.5,
            ))
        };
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {} | {} | {} / {} | {} | {} / {} | {} / {} |",
            percent(p.traffic.live_errors),
            percent(p.max_error_ratio),
            p.traffic.rate,
            share_ci(count(s, Outcome::failed), n),
            share_ci(count(g, Outcome::failed), n),
            share(caused(s, Cause::Starved), n),
            share(caused(g, Cause::Starved), n),
            share(count(s, |o| o.pauses > 0), n),
            share(count(s, |o| o.end == End::Completed), n),
            share(count(g, |o| o.end == End::Completed), n),
            done(s),
            done(g),
        );
    }
    md.push_str(
        "\nWhat rolled them back (rollouts, of the rows at 40 req/s):\n\n\
         | errors (both) | limit | new judge | today's gate |\n|---|---|---|---|\n",
    );
    for p in r.healthy.iter().filter(|p| p.traffic.rate == 40.0) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            percent(p.traffic.live_errors),
            percent(p.max_error_ratio),
            causes(&p.sequential),
            causes(&p.gates)
        );
    }
    md.push('\n');
    md
}

fn bad_section(r: &Results, n: usize) -> String {
    let p = &r.bad;
    let mut md = format!(
        "## 2. A bad release: 20% errors on the target, 0.1% on the live color, {:.0} req/s\n\n\
         | judge | rolled back | failed requests before the rollback: median | p90 | max | time to rollback: median (p90) | target calls before it: median (p90) | paused first |\n\
         |---|---|---|---|---|---|---|---|\n",
        p.traffic.rate
    );
    for (name, o) in [("new", &p.sequential), ("today's gate", &p.gates)] {
        let back = |o: &Outcome| o.rolled_back();
        let errors = values(o, back, |o| o.target_errors as f64);
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            share(count(o, back), n),
            number(percentile(&errors, 0.5)),
            number(percentile(&errors, 0.9)),
            number(percentile(&errors, 1.0)),
            spread(&values(o, back, |o| o.seconds), seconds),
            spread(&values(o, back, |o| o.target_calls as f64), number),
            count(o, |o| o.pauses > 0),
        );
    }
    let median = percentile(
        &values(&p.sequential, Outcome::rolled_back, |o| {
            o.target_errors as f64
        }),
        0.5,
    );
    let met = median.is_some_and(|m| m <= 2.0) && count(&p.sequential, Outcome::rolled_back) == n;
    let _ = writeln!(
        md,
        "\nGoal, the new judge's median at most 2 failed requests: **{}** ({}). \
         Rolled back by: new judge {}; today's gate {}. \
         The distribution: [{FAILED_SVG}]({FAILED_SVG}).\n\n![failed requests before the rollback]({FAILED_SVG})\n",
        if met { "met" } else { "missed" },
        number(median),
        causes(&p.sequential),
        causes(&p.gates),
    );
    md
}

fn subtle_section(r: &Results, n: usize) -> String {
    let mut md = String::from(
        "## 3. A subtle release: 1% errors on the target, 0.5% on the live color\n\n\
         Caught = rolled back by a verdict (not for too few requests). Calls are all calls, \
         and the target's, from the rollout's start to the rollback, over the caught rollouts.\n\n\
         | limit | req/s | caught, new | caught, today's gate | new judge caught it by | calls to rollback, new: median (p90) | today's gate | target calls, new | today's gate | too few requests, new / gate |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for p in &r.subtle {
        let (s, g) = (&p.sequential, &p.gates);
        let calls = |o: &[Outcome]| spread(&values(o, Outcome::failed, |o| o.calls as f64), number);
        let target = |o: &[Outcome]| {
            spread(
                &values(o, Outcome::failed, |o| o.target_calls as f64),
                number,
            )
        };
        let _ = writeln!(
            md,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} / {} |",
            percent(p.max_error_ratio),
            p.traffic.rate,
            share_ci(count(s, Outcome::failed), n),
            share_ci(count(g, Outcome::failed), n),
            causes(&s.iter().filter(|o| o.failed()).copied().collect::<Vec<_>>()),
            calls(s),
            calls(g),
            target(s),
            target(g),
            share(caused(s, Cause::Starved), n),
            share(caused(g, Cause::Starved), n),
        );
    }
    let _ = writeln!(
        md,
        "\nMedian calls to the rollback against traffic: [{DETECT_SVG}]({DETECT_SVG}).\n\n![calls to detect]({DETECT_SVG})\n"
    );
    md
}

fn slow_section(r: &Results, n: usize) -> String {
    let p = &r.slow;
    let mut md = format!(
        "## 4. A slow release: +{:.0} ms on half the target's calls, no errors, {:.0} req/s\n\n\
         | judge | caught | by | calls to rollback: median (p90) | target calls | time to rollback |\n\
         |---|---|---|---|---|---|\n",
        p.traffic.extra_ms, p.traffic.rate
    );
    for (name, o) in [("new", &p.sequential), ("today's gate", &p.gates)] {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} |",
            share_ci(count(o, Outcome::failed), n),
            causes(o),
            spread(&values(o, Outcome::failed, |o| o.calls as f64), number),
            spread(
                &values(o, Outcome::failed, |o| o.target_calls as f64),
                number
            ),
            spread(&values(o, Outcome::failed, |o| o.seconds), seconds),
        );
    }
    md.push('\n');
    md
}

fn incident_section(r: &Results, n: usize) -> String {
    let p = &r.incident;
    let mut md = String::from(
        "## 5. A platform-wide incident during a healthy release\n\n\
         Both colors fail 20% of calls for 20 s from 15 s into the 25% step's window, and \
         none otherwise; 40 req/s.\n\n\
         | judge | paused, then completed | paused, then rolled back | rolled back, never paused | rolled back during the 25% step | completed, never paused | rolled back by |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for (name, o) in [("new", &p.sequential), ("today's gate", &p.gates)] {
        let _ = writeln!(
            md,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            share(count(o, |o| o.pauses > 0 && o.end == End::Completed), n),
            share(count(o, |o| o.pauses > 0 && o.rolled_back()), n),
            share(count(o, |o| o.pauses == 0 && o.rolled_back()), n),
            share(count(o, |o| o.rolled_back() && o.step == 1), n),
            share(count(o, |o| o.pauses == 0 && o.end == End::Completed), n),
            causes(o),
        );
    }
    md.push('\n');
    md
}

fn looks_section(plan: &Plan, r: &Results) -> String {
    let mut md = format!(
        "## The tests' false alarms against how often they are read\n\n\
         One healthy step (both colors 1% errors and the same latency) at a fixed weight, \
         {} calls long ({:.0} s at 200 req/s), never ended early, {} steps per weight; the \
         new judge's two sequential tests read every so many calls. At 200 req/s a look every \
         0.5 s is every 100 calls; at 40 req/s every 20. A test reads only event counts, so \
         reading it after every call is reading it after every error (or slow call).\n\n\
         | weight | read every (calls) | error test failed | latency test failed | either failed |\n\
         |---|---|---|---|---|\n",
        plan.curve_calls,
        plan.curve_calls as f64 / 200.0,
        plan.curve_steps
    );
    for l in &r.looks {
        let _ = writeln!(
            md,
            "| {:.0}% | {} | {} | {} | {} |",
            l.weight * 100.0,
            l.every,
            share_ci(l.error_test, l.steps),
            share_ci(l.latency_test, l.steps),
            share_ci(l.either, l.steps),
        );
    }
    let _ = writeln!(md, "\n![false alarms against looks]({LOOKS_SVG})\n");
    md
}

/// What the numbers say, each figure in it computed from the outcomes.
fn summary(r: &Results) -> String {
    let mut md = String::from("## What the numbers say\n\n");
    let healthy = |errors: f64, limit: f64, rate: f64| {
        r.healthy.iter().find(|p| {
            p.traffic.live_errors == errors && p.max_error_ratio == limit && p.traffic.rate == rate
        })
    };
    let subtle = |limit: f64, rate: f64| {
        r.subtle
            .iter()
            .find(|p| p.max_error_ratio == limit && p.traffic.rate == rate)
    };
    let rate_of = |o: &[Outcome], f: &dyn Fn(&Outcome) -> bool| share(count(o, f), o.len());
    let of_cause = |o: &[Outcome], causes: &[Cause]| {
        share(causes.iter().map(|c| caused(o, *c)).sum(), o.len())
    };
    let tests = [Cause::ErrorTest, Cause::LatencyTest];

    let bad_median = |o: &[Outcome]| {
        number(percentile(
            &values(o, Outcome::rolled_back, |o| o.target_errors as f64),
            0.5,
        ))
    };
    let _ = writeln!(
        md,
        "- **A bad release** costs a median of {} failed requests with the new judge (the goal \
         was 2 at most), against {} with today's gate, which judges nothing before the target \
         has 50 requests.",
        bad_median(&r.bad.sequential),
        bad_median(&r.bad.gates)
    );
    let paused: Vec<f64> = values(
        &r.bad.sequential,
        |o| o.pauses > 0,
        |o| o.target_errors as f64,
    );
    if !paused.is_empty() {
        let _ = writeln!(
            md,
            "  {} of the new judge's bad rollouts were first paused for an \"incident\" (the live \
             color's window over the limit by chance while the target's was over it too); \
             those cost up to {} failed requests.",
            paused.len(),
            number(percentile(&paused, 1.0)),
        );
    }
    let _ = writeln!(
        md,
        "- **A slow release** is caught in {} of rollouts by the new judge and in {} by today's \
         gate, whose only latency check is a p99 of 500 ms.",
        rate_of(&r.slow.sequential, &Outcome::failed),
        rate_of(&r.slow.gates, &Outcome::failed)
    );
    if let Some(p) = healthy(0.01, MAX_ERROR_RATIO, 40.0) {
        let (s, g) = (&p.sequential, &p.gates);
        let _ = writeln!(
            md,
            "- **Healthy releases failing 1%, with the default limit of 1%**: the new judge \
             rolls back {} at 40 req/s, today's gate {}. The target's true rate sits on the \
             absolute limit, so one error more than average in a window crosses it: today's \
             gate fails it there, while the new judge's safety net needs evidence of a rate \
             above the limit (it rolled back {} by itself). The new judge's sequential tests \
             rolled back {}, within the rollout's false-rollback budget of 1%, and it paused {} \
             for an \"incident\" (both colors over the limit). {}",
            rate_of(s, &Outcome::failed),
            rate_of(g, &Outcome::failed),
            of_cause(s, &[Cause::Gate]),
            of_cause(s, &tests),
            rate_of(s, &|o| o.pauses > 0),
            if count(s, Outcome::failed) * 100 > s.len() {
                "**The goal of at most 1% false rollbacks is missed here.**"
            } else {
                "The goal of at most 1% false rollbacks is met."
            },
        );
    }
    if let Some(p) = healthy(0.01, ROOMY_LIMIT, 40.0) {
        let s = &p.sequential;
        let _ = writeln!(
            md,
            "- With a 5% limit, at 40 req/s, the new judge rolls back {} of healthy releases \
             and today's gate {}. Of the new judge's rollouts, the bake rolled back {}, the \
             steps' safety net {}, the sequential tests {}.",
            rate_of(s, &Outcome::failed),
            rate_of(&p.gates, &Outcome::failed),
            of_cause(s, &[Cause::BakeGate, Cause::BakeTest]),
            of_cause(s, &[Cause::Gate]),
            of_cause(s, &tests),
        );
    }
    if let Some(p) = healthy(0.001, MAX_ERROR_RATIO, 40.0) {
        let _ = writeln!(
            md,
            "- At 0.1% errors the default limit still rolls back {} (new) and {} (gate) of \
             healthy releases at 40 req/s: for today's gate, once a step has 50 requests, a \
             single error among its first 99 target calls is over 1% (and over 2x the live \
             color's rate + 0.5 points); the new judge needs evidence.",
            rate_of(&p.sequential, &Outcome::failed),
            rate_of(&p.gates, &Outcome::failed),
        );
    }
    if let Some(p) = healthy(0.01, MAX_ERROR_RATIO, 10.0) {
        let _ = writeln!(
            md,
            "- At 10 req/s the 5% step gets 0.5 calls/s, about 45 in three intervals: {} (new) \
             and {} (gate) of rollouts are rolled back for too few requests, whatever the \
             release.",
            of_cause(&p.sequential, &[Cause::Starved]),
            of_cause(&p.gates, &[Cause::Starved]),
        );
    }
    let times: Vec<String> = r
        .healthy
        .iter()
        .filter(|p| p.max_error_ratio == ROOMY_LIMIT || p.traffic.live_errors < 0.01)
        .filter(|p| p.traffic.rate >= 40.0)
        .map(|p| {
            let done = |o: &[Outcome]| {
                seconds(percentile(
                    &values(o, |o| o.end == End::Completed, |o| o.seconds),
                    0.5,
                ))
            };
            format!(
                "{} / {} ({} errors, limit {}, {:.0} req/s)",
                done(&p.sequential),
                done(&p.gates),
                percent(p.traffic.live_errors),
                percent(p.max_error_ratio),
                p.traffic.rate
            )
        })
        .collect();
    let _ = writeln!(
        md,
        "- Median time to complete, new judge / today's gate: {}. The new judge's early pass \
         needs both sequential tests sure that the target is no worse than 1.5x the live color \
         (or no error in 3/limit target calls), which a 30 s step at these rates seldom gives.",
        times.join("; ")
    );
    if let (Some(d), Some(g)) = (
        subtle(MAX_ERROR_RATIO, 40.0),
        healthy(0.01, MAX_ERROR_RATIO, 40.0),
    ) {
        let _ = writeln!(
            md,
            "- **The subtle release** (1% against 0.5%) is rolled back by today's gate too: {} \
             at 40 req/s with the default limit. That is not telling 1% from 0.5%: the same gate \
             rolls back {} of the healthy release at 1% against 1%.",
            rate_of(&d.gates, &Outcome::failed),
            rate_of(&g.gates, &Outcome::failed),
        );
    }
    let by_test: Vec<String> = SUBTLE_RATES
        .iter()
        .filter_map(|rate| subtle(ROOMY_LIMIT, *rate))
        .map(|p| {
            format!(
                "{} at {:.0} req/s (and the bake {} more)",
                of_cause(&p.sequential, &[Cause::ErrorTest]),
                p.traffic.rate,
                of_cause(&p.sequential, &[Cause::BakeTest, Cause::BakeGate]),
            )
        })
        .collect();
    let gate_subtle: Vec<String> = SUBTLE_RATES
        .iter()
        .filter_map(|rate| subtle(ROOMY_LIMIT, *rate))
        .map(|p| rate_of(&p.gates, &Outcome::failed))
        .collect();
    let _ = writeln!(
        md,
        "- With a 5% limit, the new judge's error test catches the subtle release during the \
         steps in {}: a 30 s step at low traffic holds too few errors to tell a doubling. Today's \
         gate rolls it back in {} (at 10, 40, 200, 1,000 req/s) on its relative limit, which \
         1% against 0.5% crosses by chance, as 1% against 1% does (scenario 1 at limit 5%).",
        by_test.join(", "),
        gate_subtle.join(", "),
    );
    let i = &r.incident;
    let onset = |o: &Outcome| {
        o.step == 1
            && o.end == End::RolledBack(Cause::Gate)
            && (INCIDENT_AFTER_S..INCIDENT_AFTER_S + 5.0).contains(&o.step_seconds)
    };
    let _ = writeln!(
        md,
        "- **A platform-wide incident** pauses the new judge's rollout, which then goes on, in \
         {} of rollouts; today's gate rolls back {}. The new judge rolls back {} on a gate \
         within 5 s of the outage's start: when the errors start, one color's window may hold \
         enough of them to be evidence before the other's is over the limit at all, and a \
         target that gets the first errors by chance can reach the safety net's evidence \
         first.",
        rate_of(&i.sequential, &|o| o.pauses > 0 && o.end == End::Completed),
        rate_of(&i.gates, &Outcome::rolled_back),
        rate_of(&i.sequential, &onset),
    );
    let worst = |f: fn(&LookRate) -> usize| {
        r.looks
            .iter()
            .map(|l| f(l) as f64 / l.steps.max(1) as f64)
            .fold(0.0, f64::max)
    };
    let (errors, latency) = (worst(|l| l.error_test), worst(|l| l.latency_test));
    // Past alpha only when the whole 95% interval of a rate is above it.
    let past = |f: fn(&LookRate) -> usize, alpha: f64| {
        r.looks.iter().any(|l| wilson(f(l), l.steps).0 > alpha)
    };
    let under = !past(|l| l.error_test, verdict::ERRORS.alpha)
        && !past(|l| l.latency_test, verdict::LATENCY.alpha);
    let _ = writeln!(
        md,
        "- **Reading the tests after every call {}**: over all weights and cadences the error \
         test failed at most {:.2}% of healthy steps and the latency test at most {:.2}% (their \
         alphas are {}% and {}%); reading less often only lowers them. The two tests together \
         reached {:.2}% at most. A rollout's steps multiply their evidence, so these bounds \
         hold for a whole rollout, not for each step (scenario 1's \"error test\" and \
         \"latency test\" counts).\n",
        if under {
            "keeps each test's false alarms within alpha (no 95% interval lies above it)"
        } else {
            "takes a test's false alarms past alpha (a 95% interval lies above it)"
        },
        errors * 100.0,
        latency * 100.0,
        verdict::ERRORS.alpha * 100.0,
        verdict::LATENCY.alpha * 100.0,
        worst(|l| l.either) * 100.0,
    );
    let all = [&r.bad, &r.slow, &r.incident]
        .into_iter()
        .chain(&r.healthy)
        .chain(&r.subtle);
    let unfinished: usize = all
        .map(|p| {
            count(&p.sequential, |o| o.end == End::Unfinished)
                + count(&p.gates, |o| o.end == End::Unfinished)
        })
        .sum();
    if unfinished > 0 {
        let _ = writeln!(
            md,
            "{unfinished} rollouts were still running after two simulated hours; they count \
             as neither completed nor rolled back.\n"
        );
    }
    md.push_str(
        "Not modelled: delays in the counters (they are exact at every look), errors that come \
         in bursts, more than one gateway replica, mirroring, operators acting.\n",
    );
    md
}

// Plots.

const NEW: RGBColor = RGBColor(31, 119, 180);
const OLD: RGBColor = RGBColor(214, 39, 40);
const GREY: RGBColor = RGBColor(90, 90, 90);
const WEIGHT_COLORS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
];

/// A legend's line, dashed or not.
fn swatch(
    (x, y): (i32, i32),
    style: ShapeStyle,
    dashed: bool,
) -> DashedPathElement<std::vec::IntoIter<(i32, i32)>, i32> {
    let (dash, gap) = if dashed { (6, 4) } else { (20, 0) };
    DashedPathElement::new(vec![(x, y), (x + 20, y)], dash, gap, style)
}

/// Charts over a logarithmic x axis, with a linear or logarithmic y axis.
type LogChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<
        plotters::coord::combinators::LogCoord<f64>,
        plotters::coord::types::RangedCoordf64,
    >,
>;

type LogLogChart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<
        plotters::coord::combinators::LogCoord<f64>,
        plotters::coord::combinators::LogCoord<f64>,
    >,
>;

/// Scenario 2: how many failed requests each rollback cost, per judge.
fn draw_failed(path: &Path, bad: &Pair) -> anyhow::Result<()> {
    const LAST: usize = 30;
    let histogram = |o: &[Outcome]| {
        let mut bins = vec![0usize; LAST + 1];
        for o in o.iter().filter(|o| o.rolled_back()) {
            bins[(o.target_errors as usize).min(LAST)] += 1;
        }
        bins
    };
    let (new, old) = (histogram(&bad.sequential), histogram(&bad.gates));
    let n = bad.sequential.len().max(1) as f64;
    let top = new.iter().chain(&old).copied().max().unwrap_or(1) as f64 / n * 100.0;
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .margin(14)
        .caption(
            "A bad release (20% errors, 40 req/s): failed requests before the rollback",
            ("sans-serif", 20),
        )
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5f64..LAST as f64 + 0.5, 0f64..top * 1.1)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_labels(16)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_desc(format!(
            "failed requests (target server errors; {LAST} = {LAST} or more)"
        ))
        .y_desc("% of rollouts")
        .draw()?;
    for (bins, color, offset, name) in [
        (&new, NEW, -0.2, "new judge (sequential)"),
        (&old, OLD, 0.2, "today's gate"),
    ] {
        chart
            .draw_series(bins.iter().enumerate().map(|(k, c)| {
                let x = k as f64 + offset;
                Rectangle::new(
                    [(x - 0.2, 0.0), (x + 0.2, *c as f64 / n * 100.0)],
                    color.filled(),
                )
            }))?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// One line of a scenario-3 panel: a judge at a limit, a figure per rate.
struct Line {
    name: String,
    color: RGBColor,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

fn subtle_lines(subtle: &[Pair], figure: impl Fn(&[Outcome]) -> Option<f64>) -> Vec<Line> {
    let mut lines = Vec::new();
    for limit in [MAX_ERROR_RATIO, ROOMY_LIMIT] {
        for (judge, color) in [("new judge", NEW), ("today's gate", OLD)] {
            let points = subtle
                .iter()
                .filter(|p| p.max_error_ratio == limit)
                .filter_map(|p| {
                    let o = if color == NEW {
                        &p.sequential
                    } else {
                        &p.gates
                    };
                    figure(o).map(|y| (p.traffic.rate, y))
                })
                .collect();
            lines.push(Line {
                name: format!("{judge}, limit {}", percent(limit)),
                color,
                dashed: limit != MAX_ERROR_RATIO,
                points,
            });
        }
    }
    lines
}

/// Scenario 3: the share caught and the calls it took, against traffic.
fn draw_detect(path: &Path, subtle: &[Pair]) -> anyhow::Result<()> {
    let caught = subtle_lines(subtle, |o| {
        Some(count(o, Outcome::failed) as f64 / o.len().max(1) as f64 * 100.0)
    });
    let calls = subtle_lines(subtle, |o| {
        percentile(&values(o, Outcome::failed, |o| o.calls as f64), 0.5)
    });
    let root = SVGBackend::new(path, (1100, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "A subtle release (1% errors against 0.5%), rolled out at several traffic levels",
        ("sans-serif", 20),
    )?;
    let panels = root.split_evenly((1, 2));
    let x = || (8f64..1_300f64).log_scale();

    let mut share = ChartBuilder::on(&panels[0])
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .caption("rolled back by a verdict", ("sans-serif", 16))
        .build_cartesian_2d(x(), 0f64..105f64)?;
    share
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("requests per second")
        .y_desc("% of rollouts")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    draw_lines_linear(&mut share, &caught)?;
    share
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;

    let y: Vec<f64> = calls
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .collect();
    let low = y
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .clamp(1.0, 1e9);
    let high = y.iter().copied().fold(1.0, f64::max);
    let mut effort = ChartBuilder::on(&panels[1])
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .caption(
            "calls until the rollback (median of those rolled back)",
            ("sans-serif", 16),
        )
        .build_cartesian_2d(x(), (low / 2.0..high * 2.0).log_scale())?;
    effort
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("requests per second")
        .y_desc("calls")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    draw_lines_log(&mut effort, &calls)?;
    root.present()?;
    Ok(())
}

fn draw_lines_linear(chart: &mut LogChart<'_, '_>, lines: &[Line]) -> anyhow::Result<()> {
    for line in lines {
        let style = line.color.stroke_width(2);
        let dashed = line.dashed;
        let points = line.points.clone();
        if dashed {
            chart.draw_series(DashedLineSeries::new(points.clone(), 6, 4, style))?
        } else {
            chart.draw_series(LineSeries::new(points.clone(), style))?
        }
        .label(line.name.as_str())
        .legend(move |at| swatch(at, style, dashed));
        chart.draw_series(
            points
                .iter()
                .map(|p| Circle::new(*p, 4, line.color.filled())),
        )?;
    }
    Ok(())
}

fn draw_lines_log(chart: &mut LogLogChart<'_, '_>, lines: &[Line]) -> anyhow::Result<()> {
    for line in lines {
        let style = line.color.stroke_width(2);
        let points = line.points.clone();
        if line.dashed {
            chart.draw_series(DashedLineSeries::new(points.clone(), 6, 4, style))?;
        } else {
            chart.draw_series(LineSeries::new(points.clone(), style))?;
        }
        chart.draw_series(
            points
                .iter()
                .map(|p| Circle::new(*p, 4, line.color.filled())),
        )?;
    }
    Ok(())
}

/// The curve: each test's false alarms against how often it is read.
fn draw_looks(path: &Path, looks: &[LookRate]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = looks
        .iter()
        .map(|l| l.error_test.max(l.latency_test) as f64 / l.steps.max(1) as f64 * 100.0)
        .fold(1.5, f64::max);
    let last = looks.iter().map(|l| l.every).max().unwrap_or(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .margin(14)
        .caption(
            "Healthy steps: false alarms of each sequential test against how often it is read",
            ("sans-serif", 20),
        )
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d((0.8f64..last * 1.25).log_scale(), 0f64..top * 1.15)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE)
        .x_desc("calls between looks (1 = after every call)")
        .y_desc("% of steps failed")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    let mut lines = Vec::new();
    for (weight, color) in WEIGHTS.iter().zip(WEIGHT_COLORS) {
        for (test, dashed) in [("error test", false), ("latency test", true)] {
            let points = looks
                .iter()
                .filter(|l| l.weight == *weight)
                .map(|l| {
                    let k = if dashed { l.latency_test } else { l.error_test };
                    (l.every as f64, k as f64 / l.steps.max(1) as f64 * 100.0)
                })
                .collect();
            lines.push(Line {
                name: format!("{test}, weight {:.0}%", weight * 100.0),
                color,
                dashed,
                points,
            });
        }
    }
    draw_lines_linear(&mut chart, &lines)?;
    let alpha = GREY.stroke_width(1);
    chart
        .draw_series(LineSeries::new(
            vec![
                (0.8, verdict::ERRORS.alpha * 100.0),
                (last * 1.25, verdict::ERRORS.alpha * 100.0),
            ],
            alpha,
        ))?
        .label("alpha of the error test")
        .legend(move |at| swatch(at, alpha, false));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
