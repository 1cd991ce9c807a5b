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
/// at 100%), and the latency bound the `slow` counts were taken against
/// (None when there was no baseline to set it from).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Look {
    pub weight: Option<f64>,
    pub slow_ms: Option<f64>,
}

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

/// Judges the target against the current color: with the sequential tests
/// when the split is known (they may fail a step after any call, before
/// `min_requests`), then against the gates.
pub fn judge(target: &Window, current: &Window, look: Look, gates: &Thresholds) -> Verdict {
    if gates.judge == Judge::Gates {
        return gates_only(target, current, gates);
    }
    let settings = Settings::default();
    let mut errors_fine = None;
    let mut latency_fine = None;
    if let Some(weight) = look.weight {
        let versus = format!(
            "error ratio {:.2}% ({} server errors in {} requests) against the current color's {:.2}% ({} in {})",
            target.error_ratio() * 100.0,
            target.server_errors,
            target.requests,
            current.error_ratio() * 100.0,
            current.server_errors,
            current.requests
        );
        let counts = |w: &Window| Counts {
            calls: w.requests,
            errors: w.server_errors,
        };
        match sequential::errors(counts(target), counts(current), weight, settings) {
            sequential::Verdict::Fail { evidence } => {
                return Verdict::Fail(failed(&versus, evidence, settings));
            }
            sequential::Verdict::Pass { evidence } => {
                errors_fine = Some(passed(&versus, evidence, settings));
            }
            sequential::Verdict::Watch => {}
        }
        if errors_fine.is_none()
            && target.server_errors == 0
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
            let slow = |w: &Window| Counts {
                calls: w.timed,
                errors: w.slow,
            };
            match sequential::errors(slow(target), slow(current), weight, settings) {
                sequential::Verdict::Fail { evidence } => {
                    return Verdict::Fail(format!(
                        "latency: {}",
                        failed(&versus, evidence, settings)
                    ));
                }
                sequential::Verdict::Pass { evidence } => {
                    latency_fine = Some(passed(&versus, evidence, settings));
                }
                sequential::Verdict::Watch => {}
            }
        }
    }
    if let Some(why) = incident(target, current, gates) {
        return Verdict::Incident(why);
    }
    match gates_only(target, current, gates) {
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

fn failed(versus: &str, evidence: f64, settings: Settings) -> String {
    format!(
        "{versus}: worse, e-value {evidence:.0} >= {:.0} (sequential test, {:.0}% false alarms at most)",
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

/// Both colors beyond an absolute limit alike: not the release's doing.
fn incident(target: &Window, current: &Window, gates: &Thresholds) -> Option<String> {
    let enough = current.requests >= gates.min_requests.max(1);
    if enough
        && current.error_ratio() > gates.max_error_ratio
        && target.error_ratio() > gates.max_error_ratio
    {
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

/// The gates alone: absolute limits, and the current color times a factor.
pub fn gates_only(target: &Window, current: &Window, gates: &Thresholds) -> Verdict {
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
    if current.requests >= gates.min_requests.max(1) {
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
            slow_ms: None,
        }
    }

    #[test]
    fn gates_in_order() {
        let quiet = Window::default();
        let none = Look::default();
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
        let mut loose = gates();
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
