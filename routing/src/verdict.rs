//! A rollout step's verdict: what the target color did in the window being
//! judged, next to what the live color did over the same time, decided by
//! the sequential tests of [`crate::judge`] (server errors, and calls
//! slower than a latency bound fixed before the window) and by the gates
//! of the rollout's [`Thresholds`] (absolute limits, and a factor of the
//! live color's error ratio). Pure, so `platformctl`'s controller, the
//! gateway's own check and the lab's simulations judge alike.

use crate::judge::{self as sequential, Counts, Settings};
use crate::release::{Judge, Thresholds};

/// What one color did in the window being judged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    pub requests: u64,
    pub server_errors: u64,
    pub p99_ms: Option<f64>,
    /// Calls that were timed (streams are not), and of them how many took
    /// longer than the step's latency bound ([`Look::slow_ms`]).
    pub timed: u64,
    pub slow: u64,
}

impl Window {
    pub fn error_ratio(&self) -> f64 {
        ratio(self.server_errors, self.requests)
    }

    pub fn slow_ratio(&self) -> f64 {
        ratio(self.slow, self.timed)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// What the sequential tests need besides the counts: the target's share
/// of live calls (None when it is not a known split, as when mirroring or
/// at 100%), the latency bound the `slow` counts were taken against (None
/// when there was no baseline to set it from), and the evidence carried
/// over from the rollout's earlier steps.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Look {
    pub weight: Option<f64>,
    pub slow_ms: Option<f64>,
    pub carried: Evidence,
}

/// The evidence that the target is worse, from the errors test and the
/// latency test: e-values, which multiply from one step to the next (see
/// [`sequential::worse`]), so the rollout as a whole keeps each test's
/// false-alarm bound however many steps it has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evidence {
    pub errors: f64,
    pub latency: f64,
}

impl Default for Evidence {
    fn default() -> Self {
        Self {
            errors: 1.0,
            latency: 1.0,
        }
    }
}

/// The false-rollback budget of a whole rollout, 1%, shared by its tests
/// (each bound holds however often the test is read, and the bounds add
/// up): the errors test 0.75% (two errors in a row on a 5% target with
/// none on the live color are still enough: an e-value of 140); the
/// latency test 0.1% (slow calls come by the tens, so its evidence grows
/// fast); each test of the bake and the absolute limit 0.05% (at a step
/// with no split, where the errors test cannot run, the absolute limit
/// takes the errors test's 0.75%). And the
/// evidence of a color being over the limit that makes an incident.
pub const ERRORS: Settings = Settings {
    alpha: 0.0075,
    beta: 0.05,
    margin: 0.5,
};
pub const LATENCY: Settings = Settings {
    alpha: 0.001,
    beta: 0.05,
    margin: 0.5,
};
pub const BAKE_ALPHA: f64 = 0.0005;
/// The target's timed calls in a step before the latency test may fail
/// it: the first calls to a fresh process are slow (new connections, cold
/// caches), which is no regression.
pub const LATENCY_WARM_UP: u64 = 20;
pub const LIMIT_ALPHA: f64 = 0.0005;
pub const INCIDENT_EVIDENCE: f64 = 20.0;

/// Tolerance added to the relative gate, so a handful of errors on a quiet
/// current color cannot fail a step by itself.
pub const RELATIVE_SLACK: f64 = 0.005;

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Enough requests, every gate passed.
    Pass,
    /// Every gate passed and the sequential tests say the target is no
    /// worse than the live color by their margin: the step may end now.
    Ahead(String),
    /// Both colors fail beyond the limit alike: the platform, not the
    /// release, is in trouble; the rollout should pause, not roll back.
    Incident(String),
    /// Not enough requests yet.
    Wait { have: u64, need: u64 },
    /// A test or gate failed: which metric, its value and the limit.
    Fail(String),
}

fn errors_of(w: &Window) -> Counts {
    Counts {
        calls: w.requests,
        errors: w.server_errors,
    }
}

fn slow_of(w: &Window) -> Counts {
    Counts {
        calls: w.timed,
        errors: w.slow,
    }
}

/// The evidence against the target after this window, the earlier steps'
/// included: what the next step carries.
pub fn evidence(target: &Window, current: &Window, look: Look) -> Evidence {
    let Some(weight) = look.weight else {
        return look.carried;
    };
    let latency = if look.slow_ms.is_some() {
        sequential::worse(slow_of(target), slow_of(current), weight)
    } else {
        1.0
    };
    Evidence {
        errors: look.carried.errors
            * sequential::worse(errors_of(target), errors_of(current), weight),
        latency: look.carried.latency * latency,
    }
}

/// Judges the target against the current color: with the sequential tests
/// when the split is known (they may fail a step after any call, before
/// `min_requests`), then against the safety net of absolute limits.
pub fn judge(target: &Window, current: &Window, look: Look, gates: &Thresholds) -> Verdict {
    if gates.judge == Judge::Gates {
        return gates_only(target, current, gates);
    }
    let mut errors_fine = None;
    let mut latency_fine = None;
    if let Some(weight) = look.weight {
        let now = evidence(target, current, look);
        let versus = format!(
            "error ratio {:.2}% ({} server errors in {} requests) against the current color's {:.2}% ({} in {})",
            target.error_ratio() * 100.0,
            target.server_errors,
            target.requests,
            current.error_ratio() * 100.0,
            current.server_errors,
            current.requests
        );
        if now.errors >= 1.0 / ERRORS.alpha {
            return Verdict::Fail(failed(&versus, now.errors, look.carried.errors, ERRORS));
        }
        let fine = sequential::fine(errors_of(target), errors_of(current), weight, ERRORS.margin);
        if fine >= 1.0 / ERRORS.beta {
            errors_fine = Some(passed(&versus, fine, ERRORS));
        } else if target.server_errors == 0
            && gates.max_error_ratio > 0.0
            && target.requests as f64 >= 3.0 / gates.max_error_ratio
        {
            // No error in 3/limit calls: the limit is the upper end of a
            // 95% interval of its rate (the rule of three), and errors too
            // rare to compare are no reason to hold the step.
            errors_fine = Some(format!("no server error in {} requests", target.requests));
        }
        if let Some(bound) = look.slow_ms {
            let versus = format!(
                "{:.1}% of calls slower than {bound:.1} ms ({} of {}) against the current color's {:.1}% ({} of {})",
                target.slow_ratio() * 100.0,
                target.slow,
                target.timed,
                current.slow_ratio() * 100.0,
                current.slow,
                current.timed
            );
            if now.latency >= 1.0 / LATENCY.alpha && target.timed >= LATENCY_WARM_UP {
                return Verdict::Fail(format!(
                    "latency: {}",
                    failed(&versus, now.latency, look.carried.latency, LATENCY)
                ));
            }
            let fine = sequential::fine(slow_of(target), slow_of(current), weight, LATENCY.margin);
            if fine >= 1.0 / LATENCY.beta {
                latency_fine = Some(passed(&versus, fine, LATENCY));
            }
        }
    }
    if let Some(why) = incident(target, current, gates) {
        return Verdict::Incident(why);
    }
    // Without a split (at 100%, or mirroring) the errors test cannot run,
    // and its share of the budget goes to the absolute limit.
    let alpha = if look.weight.is_some() {
        LIMIT_ALPHA
    } else {
        ERRORS.alpha
    };
    match safety_net(target, gates, alpha) {
        Verdict::Pass => match (errors_fine, latency_fine, look.slow_ms) {
            (Some(errors), Some(latency), Some(_)) => {
                Verdict::Ahead(format!("{errors}; latency: {latency}"))
            }
            (Some(errors), _, None) => Verdict::Ahead(errors),
            _ => Verdict::Pass,
        },
        other => other,
    }
}

fn failed(versus: &str, evidence: f64, carried: f64, settings: Settings) -> String {
    let earlier = if carried == 1.0 {
        String::new()
    } else {
        format!(", {carried:.2} of it from earlier steps")
    };
    format!(
        "{versus}: worse, e-value {evidence:.0} >= {:.0}{earlier} (sequential test, {}% false alarms at most)",
        1.0 / settings.alpha,
        settings.alpha * 100.0
    )
}

fn passed(versus: &str, evidence: f64, settings: Settings) -> String {
    format!(
        "{versus}: no worse than {:.1}x, e-value {evidence:.0} >= {:.0}",
        1.0 + settings.margin,
        1.0 / settings.beta
    )
}

/// Both colors beyond an absolute limit alike, with evidence (not one
/// unlucky error): not the release's doing.
fn incident(target: &Window, current: &Window, gates: &Thresholds) -> Option<String> {
    let enough = current.requests >= gates.min_requests.max(1);
    // One color with evidence of a rate over the limit, the other over it
    // too (its ratio: the evidence of the color with fewer calls comes
    // later), so an incident is called before the target's own evidence
    // can reach the safety net's.
    let shown =
        |w: &Window| sequential::above(errors_of(w), gates.max_error_ratio) >= INCIDENT_EVIDENCE;
    let over = |w: &Window| w.server_errors >= 3 && w.error_ratio() > gates.max_error_ratio;
    if enough && over(current) && over(target) && (shown(current) || shown(target)) {
        return Some(format!(
            "both colors fail beyond {:.2}%: the target {:.2}% ({} of {}), the current color {:.2}% ({} of {})",
            gates.max_error_ratio * 100.0,
            target.error_ratio() * 100.0,
            target.server_errors,
            target.requests,
            current.error_ratio() * 100.0,
            current.server_errors,
            current.requests
        ));
    }
    match (target.p99_ms, current.p99_ms) {
        (Some(t), Some(c)) if enough && t > gates.max_p99_ms && c > gates.max_p99_ms => {
            Some(format!(
                "both colors are slower than a p99 of {:.1} ms: the target {t:.1} ms, the current color {c:.1} ms",
                gates.max_p99_ms
            ))
        }
        _ => None,
    }
}

/// The absolute limits beside the sequential tests: the error limit when
/// the target's errors are evidence of a rate above it (one unlucky error
/// among the first calls is not), the p99 limit once there are
/// `min_requests` calls. The tests compare the colors far better than a
/// factor of the current color's ratio does, so that gate is left out.
fn safety_net(target: &Window, gates: &Thresholds, alpha: f64) -> Verdict {
    let beyond = sequential::above(errors_of(target), gates.max_error_ratio);
    if beyond >= 1.0 / alpha {
        return Verdict::Fail(format!(
            "error ratio {:.2}% > max {:.2}% ({:.1}x the limit): {} server errors in {} requests, e-value {beyond:.0} >= {:.0}",
            target.error_ratio() * 100.0,
            gates.max_error_ratio * 100.0,
            target.error_ratio() / gates.max_error_ratio,
            target.server_errors,
            target.requests,
            1.0 / alpha
        ));
    }
    let latency_only = Thresholds {
        max_error_ratio: 1.0,
        ..gates.clone()
    };
    limits(target, &Window::default(), &latency_only, false)
}

/// Judges the target after promotion (the bake window), when it serves
/// everything, against `baseline`: what the old color did over the last
/// step it shared (its slow calls counted against the same latency bound,
/// `slow_ms`). The target fails when its error rate, or its share of slow
/// calls, is shown above what the baseline's allows (its rate's upper
/// bound, times the margin), by the one-sample sequential test; and by the
/// safety net. A bake never ends early: it passes when its window is over.
pub fn bake(
    target: &Window,
    baseline: &Window,
    slow_ms: Option<f64>,
    gates: &Thresholds,
) -> Verdict {
    if gates.judge == Judge::Gates {
        return match gates_only(target, baseline, gates) {
            Verdict::Wait { .. } => Verdict::Pass,
            other => other,
        };
    }
    let rate = |c: Counts| {
        if c.calls == 0 {
            0.0
        } else {
            c.errors as f64 / c.calls as f64 * 100.0
        }
    };
    let errors = |c: Counts| {
        format!(
            "error ratio {:.2}% ({} server errors in {} requests)",
            rate(c),
            c.errors,
            c.calls
        )
    };
    if let Some(why) = regressed(errors_of(target), errors_of(baseline), errors) {
        return Verdict::Fail(why);
    }
    if let Some(bound) = slow_ms
        && baseline.timed > 0
    {
        let slow = |c: Counts| {
            format!(
                "{:.1}% of calls slower than {bound:.1} ms ({} of {})",
                rate(c),
                c.errors,
                c.calls
            )
        };
        if let Some(why) = regressed(slow_of(target), slow_of(baseline), slow) {
            return Verdict::Fail(format!("latency: {why}"));
        }
    }
    match safety_net(target, gates, LIMIT_ALPHA) {
        Verdict::Wait { .. } => Verdict::Pass,
        other => other,
    }
}

/// One test of the bake: whether `target`'s rate of events is shown above
/// what `baseline`'s allows (its upper bound, times the margin).
fn regressed(
    target: Counts,
    baseline: Counts,
    describe: impl Fn(Counts) -> String,
) -> Option<String> {
    let limit = sequential::upper_rate(baseline.errors, baseline.calls) * (1.0 + LATENCY.margin);
    let evidence = sequential::above(target, limit);
    (evidence >= 1.0 / BAKE_ALPHA).then(|| {
        format!(
            "{} against {} before promotion: above {:.2}%, e-value {evidence:.0} >= {:.0}",
            describe(target),
            describe(baseline),
            limit * 100.0,
            1.0 / BAKE_ALPHA
        )
    })
}

/// The gates alone: absolute limits, and the current color times a factor.
pub fn gates_only(target: &Window, current: &Window, gates: &Thresholds) -> Verdict {
    limits(target, current, gates, true)
}

/// The gates: the error and p99 limits over `min_requests` calls, and the
/// current color times a factor (if `relative`).
fn limits(target: &Window, current: &Window, gates: &Thresholds, relative: bool) -> Verdict {
    if target.requests < gates.min_requests.max(1) {
        return Verdict::Wait {
            have: target.requests,
            need: gates.min_requests.max(1),
        };
    }
    let ratio = target.error_ratio();
    if ratio > gates.max_error_ratio {
        let times = if gates.max_error_ratio > 0.0 {
            format!(" ({:.1}x the limit)", ratio / gates.max_error_ratio)
        } else {
            String::new()
        };
        return Verdict::Fail(format!(
            "error ratio {:.2}% > max {:.2}%{times}: {} server errors in {} requests",
            ratio * 100.0,
            gates.max_error_ratio * 100.0,
            target.server_errors,
            target.requests
        ));
    }
    if let Some(p99) = target.p99_ms
        && p99 > gates.max_p99_ms
    {
        return Verdict::Fail(format!(
            "p99 latency {p99:.1} ms > max {:.1} ms ({:.1}x the limit) over {} requests",
            gates.max_p99_ms,
            p99 / gates.max_p99_ms,
            target.requests
        ));
    }
    if relative && current.requests >= gates.min_requests.max(1) {
        let limit = current.error_ratio() * gates.max_relative_error + RELATIVE_SLACK;
        if ratio > limit {
            return Verdict::Fail(format!(
                "error ratio {:.2}% > {:.1}x the current color's {:.2}% (+{:.1} points): {} server errors in {} requests",
                ratio * 100.0,
                gates.max_relative_error,
                current.error_ratio() * 100.0,
                RELATIVE_SLACK * 100.0,
                target.server_errors,
                target.requests
            ));
        }
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gates() -> Thresholds {
        Thresholds {
            max_error_ratio: 0.01,
            max_p99_ms: 500.0,
            max_relative_error: 2.0,
            min_requests: 50,
            judge: Judge::Sequential,
        }
    }

    fn window(requests: u64, server_errors: u64, p99: f64) -> Window {
        Window {
            requests,
            server_errors,
            p99_ms: Some(p99),
            ..Window::default()
        }
    }

    fn at(weight: f64) -> Look {
        Look {
            weight: Some(weight),
            ..Look::default()
        }
    }

    fn old() -> Thresholds {
        Thresholds {
            judge: Judge::Gates,
            ..gates()
        }
    }

    #[test]
    fn the_safety_net_needs_evidence_and_the_old_gates_do_not() {
        let quiet = Window::default();
        let none = Look::default();
        // One error among the first 50 calls is 2% > 1% for the old gates;
        // for the safety net it is no evidence of a rate above 1%.
        let Verdict::Fail(why) = judge(&window(50, 1, 1.0), &quiet, none, &old()) else {
            panic!("the old gate fails one early error");
        };
        assert!(why.starts_with("error ratio 2.00% > max 1.00%"), "{why}");
        assert_eq!(
            judge(&window(50, 1, 1.0), &quiet, none, &gates()),
            Verdict::Pass
        );
        // Five errors in ten calls are evidence enough, before min_requests.
        let Verdict::Fail(why) = judge(&window(10, 5, 1.0), &quiet, none, &gates()) else {
            panic!("half the calls failing must fail the limit");
        };
        assert!(
            why.starts_with("error ratio 50.00% > max 1.00% (50.0x the limit)"),
            "{why}"
        );
        assert!(why.contains("e-value"), "{why}");
    }

    #[test]
    fn gates_in_order() {
        let quiet = Window::default();
        let none = Look::default();
        let gates = old;
        assert_eq!(
            judge(&window(10, 5, 1.0), &quiet, none, &gates()),
            Verdict::Wait { have: 10, need: 50 }
        );
        assert_eq!(
            judge(&window(100, 0, 10.0), &quiet, none, &gates()),
            Verdict::Pass
        );
        let Verdict::Fail(why) = judge(&window(100, 20, 10.0), &quiet, none, &gates()) else {
            panic!("20% errors must fail");
        };
        assert!(
            why.starts_with("error ratio 20.00% > max 1.00% (20.0x the limit)"),
            "{why}"
        );
        let Verdict::Fail(why) = judge(&window(100, 0, 900.0), &quiet, none, &gates()) else {
            panic!("slow must fail");
        };
        assert!(
            why.starts_with("p99 latency 900.0 ms > max 500.0 ms"),
            "{why}"
        );
    }

    #[test]
    fn relative_gate_compares_with_the_current_color() {
        let mut loose = old();
        loose.max_error_ratio = 0.5;
        let none = Look::default();
        // 8% against 1%: above 2x + 0.5 points.
        let Verdict::Fail(why) = judge(&window(100, 8, 1.0), &window(1000, 10, 1.0), none, &loose)
        else {
            panic!("8x the current color must fail");
        };
        assert!(why.contains("2.0x the current color's 1.00%"), "{why}");
        // 2% against 1%: within 2x + 0.5 points.
        assert_eq!(
            judge(&window(100, 2, 1.0), &window(1000, 10, 1.0), none, &loose),
            Verdict::Pass
        );
        // A quiet current color is not compared.
        assert_eq!(
            judge(&window(100, 8, 1.0), &window(3, 0, 1.0), none, &loose),
            Verdict::Pass
        );
    }

    #[test]
    fn the_sequential_test_fails_early_passes_early_and_spares_an_incident() {
        // Two errors in the target's first six calls at 5%, none on the
        // current color: failed before min_requests.
        let Verdict::Fail(why) =
            judge(&window(6, 2, 1.0), &window(114, 0, 1.0), at(0.05), &gates())
        else {
            panic!("two early errors at 5% must fail");
        };
        assert!(why.contains("sequential test"), "{why}");
        assert!(why.starts_with("error ratio 33.33%"), "{why}");
        // The gates alone wait for min_requests on the same counts.
        let old = Thresholds {
            judge: Judge::Gates,
            ..gates()
        };
        assert_eq!(
            judge(&window(6, 2, 1.0), &window(114, 0, 1.0), at(0.05), &old),
            Verdict::Wait { have: 6, need: 50 }
        );
        // As many errors as the current color, in proportion, over many
        // calls: ahead of the interval.
        let mut loose = gates();
        loose.max_error_ratio = 0.05;
        assert!(matches!(
            judge(
                &window(10_000, 200, 1.0),
                &window(10_000, 200, 1.0),
                at(0.5),
                &loose
            ),
            Verdict::Ahead(_)
        ));
        // No error in 3/limit calls is no reason to hold the step either.
        assert!(matches!(
            judge(
                &window(300, 0, 1.0),
                &window(5_700, 0, 1.0),
                at(0.05),
                &gates()
            ),
            Verdict::Ahead(_)
        ));
        assert_eq!(
            judge(
                &window(299, 0, 1.0),
                &window(5_681, 0, 1.0),
                at(0.05),
                &gates()
            ),
            Verdict::Pass
        );
        // Both colors failing one call in five: an incident, not a rollback.
        let Verdict::Incident(why) = judge(
            &window(100, 20, 1.0),
            &window(1_900, 380, 1.0),
            at(0.05),
            &gates(),
        ) else {
            panic!("a platform-wide failure must not fail the target");
        };
        assert!(why.starts_with("both colors fail beyond 1.00%"), "{why}");
        // The target over the limit a moment before the current color,
        // which is failing too: no rollback on the absolute limit alone.
        let early = judge(
            &window(100, 2, 1.0),
            &window(1_900, 15, 1.0),
            at(0.05),
            &gates(),
        );
        assert!(!matches!(early, Verdict::Fail(_)), "{early:?}");
        // Evidence carries over from earlier steps: a step that alone would
        // go on fails once the earlier ones' evidence is counted.
        let look = Look {
            carried: Evidence {
                errors: 20.0,
                latency: 1.0,
            },
            ..at(0.5)
        };
        let (target, live) = (window(400, 18, 1.0), window(400, 6, 1.0));
        let mut loose = gates();
        loose.max_error_ratio = 0.1;
        assert!(!matches!(
            judge(&target, &live, at(0.5), &loose),
            Verdict::Fail(_)
        ));
        let Verdict::Fail(why) = judge(&target, &live, look, &loose) else {
            panic!("the earlier steps' evidence counts");
        };
        assert!(why.contains("20.00 of it from earlier steps"), "{why}");
        let carried = evidence(&target, &live, look);
        assert!(
            carried.errors >= 100.0 && carried.latency == 1.0,
            "{carried:?}"
        );
        // Both colors slow beyond the p99 limit: an incident too.
        assert!(matches!(
            judge(
                &window(100, 0, 900.0),
                &window(1_900, 0, 800.0),
                at(0.05),
                &gates()
            ),
            Verdict::Incident(_)
        ));
    }

    #[test]
    fn a_bake_fails_a_regression_against_the_baseline_and_passes_the_same() {
        let baseline = Window {
            timed: 2_000,
            slow: 200,
            ..window(2_000, 2, 5.0)
        };
        let slow_ms = Some(4.2);
        // Errors jump from 0.1% to 5% after promotion.
        let Verdict::Fail(why) = bake(&window(300, 15, 5.0), &baseline, slow_ms, &gates()) else {
            panic!("a regression in the bake window must fail");
        };
        assert!(
            why.contains(
                "against error ratio 0.10% (2 server errors in 2000 requests) before promotion"
            ),
            "{why}"
        );
        // Half the calls slow, against one in ten before.
        let slowed = Window {
            timed: 200,
            slow: 100,
            ..window(200, 0, 60.0)
        };
        let Verdict::Fail(why) = bake(&slowed, &baseline, slow_ms, &gates()) else {
            panic!("a latency regression in the bake window must fail");
        };
        assert!(
            why.starts_with("latency: 50.0% of calls slower than 4.2 ms"),
            "{why}"
        );
        // Like the baseline: never failed, whatever the count.
        let alike = Window {
            timed: 20_000,
            slow: 2_000,
            ..window(20_000, 20, 5.0)
        };
        assert_eq!(bake(&alike, &baseline, slow_ms, &gates()), Verdict::Pass);
        assert_eq!(
            bake(&window(10, 0, 5.0), &baseline, slow_ms, &gates()),
            Verdict::Pass
        );
    }

    fn timed(requests: u64, slow: u64) -> Window {
        Window {
            requests,
            p99_ms: Some(60.0),
            timed: requests,
            slow,
            ..Window::default()
        }
    }

    #[test]
    fn the_latency_test_compares_slow_calls_at_the_split() {
        let look = Look {
            weight: Some(0.25),
            slow_ms: Some(4.2),
            ..Look::default()
        };
        // Half the target's calls slower than the bound (+50 ms on half of
        // them) against one in ten on the current color: failed, with the
        // bound in the reason, while every gate passes.
        let Verdict::Fail(why) = judge(&timed(40, 22), &timed(120, 12), look, &gates()) else {
            panic!("a release slowing half its calls must fail");
        };
        assert!(
            why.starts_with("latency: 55.0% of calls slower than 4.2 ms (22 of 40)"),
            "{why}"
        );
        // The first calls of a fresh process are slow: no failure before
        // the warm-up, however strong the evidence.
        assert!(!matches!(
            judge(&timed(6, 6), &timed(120, 12), look, &gates()),
            Verdict::Fail(_)
        ));
        // The same share of slow calls on both colors: ahead once both
        // tests are sure, never failed.
        let ahead = judge(&timed(2_500, 250), &timed(7_500, 750), look, &gates());
        let Verdict::Ahead(why) = ahead else {
            panic!("alike latencies must pass: {ahead:?}");
        };
        assert!(
            why.contains("latency: 10.0% of calls slower than 4.2 ms"),
            "{why}"
        );
        // Without a bound, latency is left to the p99 gate.
        let blind = Look {
            slow_ms: None,
            ..look
        };
        assert_eq!(
            judge(&timed(40, 22), &timed(120, 12), blind, &gates()),
            Verdict::Wait { have: 40, need: 50 }
        );
    }
}
