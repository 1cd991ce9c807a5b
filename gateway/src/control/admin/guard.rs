//! The gateway's own judgement of every canary step: beside the controller
//! (`platformctl rollout`, which may read Prometheus across replicas and
//! also judges latency and the gates), each gateway replica puts the calls
//! it made itself to the sequential test of server errors, once a second,
//! and rolls a target that is worse than the live color back on its own.
//! A release is then judged even while its controller is gone (between a
//! lost controller and the watchdog's timeout), and a second pair of eyes
//! costs nothing on the request path: the counters are there already.
//!
//! Each replica judges only its own calls, so with `n` replicas the chance
//! of a false rollback is at most `n` times the test's 1%.

use std::collections::BTreeMap;

use platform_routing::judge::{self, Counts, Settings};
use platform_routing::release::{Judge, Phase, Rollout};
use platform_runtime::Color;

use crate::proxy::stats::{StatsView, Traffic};

/// Where a step's window began: which step of which rollout, and the
/// counters of both colors then.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Start {
    rollout: String,
    step: usize,
    weight: u32,
    target: Counts,
    live: Counts,
}

/// The step windows of every service being rolled out.
#[derive(Debug, Default)]
pub(crate) struct Guard {
    starts: BTreeMap<String, Start>,
}

impl Guard {
    /// Looks at every rollout at a known split: the reason to roll back
    /// for each service whose target the test fails.
    pub(crate) fn look<'a>(
        &mut self,
        rollouts: impl Iterator<Item = (&'a str, &'a Rollout, u32)>,
        stats: &StatsView,
        sticky: bool,
    ) -> Vec<(String, String)> {
        let mut seen = BTreeMap::new();
        let mut failed = Vec::new();
        for (service, rollout, weight) in rollouts {
            let judged = rollout.phase == Phase::Shifting
                && !rollout.paused
                && rollout.thresholds.judge == Judge::Sequential
                && weight > 0
                && weight < 100;
            if !judged {
                continue;
            }
            let counts = |color: Color| {
                let total = stats.series(service, color, Traffic::Live).total;
                Counts {
                    calls: total.requests,
                    errors: total.server_errors,
                }
            };
            let now = Start {
                rollout: rollout.id.clone(),
                step: rollout.step,
                weight,
                target: counts(rollout.target),
                live: counts(rollout.target.other()),
            };
            let start = match self.starts.get(service) {
                Some(start)
                    if start.rollout == now.rollout
                        && start.step == now.step
                        && start.weight == now.weight =>
                {
                    start.clone()
                }
                _ => now.clone(),
            };
            let since = |a: Counts, b: Counts| Counts {
                calls: a.calls.saturating_sub(b.calls),
                errors: a.errors.saturating_sub(b.errors),
            };
            let (target, live) = (since(now.target, start.target), since(now.live, start.live));
            let settings = Settings::default();
            let split = if sticky {
                judge::observed_split(target, live)
            } else {
                Some(f64::from(weight) / 100.0)
            };
            if let Some(split) = split
                && let judge::Verdict::Fail { evidence } =
                    judge::errors(target, live, split, settings)
            {
                let ratio = |c: Counts| {
                    if c.calls == 0 {
                        0.0
                    } else {
                        c.errors as f64 / c.calls as f64 * 100.0
                    }
                };
                failed.push((
                    service.to_owned(),
                    format!(
                        "step {}/{} ({weight}%): error ratio {:.2}% ({} server errors in {} requests) against the current color's {:.2}% ({} in {}): worse, e-value {evidence:.0} >= {:.0} (the gateway's own sequential test)",
                        rollout.step + 1,
                        rollout.steps.len(),
                        ratio(target),
                        target.errors,
                        target.calls,
                        ratio(live),
                        live.errors,
                        live.calls,
                        1.0 / settings.alpha
                    ),
                ));
            }
            seen.insert(service.to_owned(), start);
        }
        self.starts = seen;
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::stats::{SeriesView, StatsView};
    use platform_routing::ColorWeights;
    use platform_routing::release::Thresholds;

    fn rollout(id: &str, step: usize) -> Rollout {
        Rollout {
            id: id.into(),
            target: Color::Green,
            baseline: ColorWeights {
                blue: 100,
                green: 0,
            },
            steps: vec![5, 50, 100],
            step,
            phase: Phase::Shifting,
            paused: false,
            interval_ms: 30_000,
            thresholds: Thresholds {
                max_error_ratio: 0.01,
                max_p99_ms: 500.0,
                max_relative_error: 2.0,
                min_requests: 50,
                judge: Judge::Sequential,
            },
            mirror_percent: 0,
            started_ms: 0,
            step_started_ms: 0,
            controller: "c".into(),
            heartbeat_ms: 0,
            timeout_ms: 120_000,
            who: "op".into(),
            bake_ms: 0,
        }
    }

    fn stats(green: (u64, u64), blue: (u64, u64)) -> StatsView {
        let series = |(requests, server_errors): (u64, u64)| {
            let mut view = SeriesView::default();
            view.total.requests = requests;
            view.total.server_errors = server_errors;
            [(Traffic::Live, view)].into()
        };
        let mut view = StatsView::default();
        view.services.insert(
            "orders".into(),
            [(Color::Green, series(green)), (Color::Blue, series(blue))].into(),
        );
        view
    }

    #[test]
    fn a_step_is_judged_from_its_own_start() {
        let mut guard = Guard::default();
        let r = rollout("r1", 0);
        let mut look = |r: &Rollout, weight: u32, green, blue, sticky| {
            guard.look(
                [("orders", r, weight)].into_iter(),
                &stats(green, blue),
                sticky,
            )
        };
        // Errors from before the step do not count: the first look only
        // marks its start.
        assert!(look(&r, 5, (50, 20), (950, 0), false).is_empty());
        // Two errors in the target's next calls at 5%, none on blue.
        let failed = look(&r, 5, (56, 22), (1064, 0), false);
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(
            failed[0]
                .1
                .starts_with("step 1/3 (5%): error ratio 33.33% (2 server errors in 6 requests)"),
            "{}",
            failed[0].1
        );
        // A new step starts a new window; a gates-only rollout is left
        // to its controller.
        let next = rollout("r1", 1);
        assert!(look(&next, 50, (56, 22), (1064, 0), false).is_empty());
        let mut gates = rollout("r2", 0);
        gates.thresholds.judge = Judge::Gates;
        assert!(look(&gates, 5, (0, 0), (0, 0), false).is_empty());
        assert!(look(&gates, 5, (10, 9), (100, 0), false).is_empty());
    }

    #[test]
    fn with_sticky_callers_the_observed_share_is_the_split() {
        let mut guard = Guard::default();
        let r = rollout("r3", 0);
        let mut look =
            |green, blue| guard.look([("orders", &r, 5)].into_iter(), &stats(green, blue), true);
        assert!(look((0, 0), (0, 0)).is_empty());
        // The canary users send half the calls at a weight of 5%: one error
        // each side is no evidence, and too few calls are not judged.
        assert!(look((10, 3), (10, 0)).is_empty());
        assert!(look((500, 5), (500, 5)).is_empty());
        // Ten times the errors of blue over the same number of calls fails.
        assert_eq!(look((1_000, 30), (1_000, 8)).len(), 1);
    }
}
