//! From one run's raw data (k6's requests, the gateway's samples, the
//! commands run) to the figures of the report and the series of its plot.
//! Times are seconds since the run's first user request.

use crate::k6::Outcome;
use crate::sample::{Counts, Sample};
use crate::strategy::{Release, Strategy};

/// Everything one strategy's run produced.
#[derive(Debug, Clone)]
pub struct Run {
    pub strategy: Strategy,
    pub outcomes: Vec<Outcome>,
    pub samples: Vec<Sample>,
    pub release: Release,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub requests: usize,
    pub failed: usize,
    pub failed_after_release: usize,
    /// The failed user requests after the release by HTTP status (0: no answer).
    pub failed_by_status: Vec<(u16, usize)>,
    pub release_s: f64,
    /// When green's weight was back to 0.
    pub rollback_s: Option<f64>,
    pub first_failure_s: Option<f64>,
    pub last_failure_s: Option<f64>,
    /// First failed user request after the release to the rollback.
    pub detect_s: Option<f64>,
    /// Rollback to the last failed user request (0 when none came after).
    pub recover_s: Option<f64>,
    /// Release to rollback: how long green served users.
    pub exposure_s: Option<f64>,
    pub peak_weight: u32,
    /// Highest share of calls green served in any window of about 1 s, in percent.
    pub peak_share: f64,
    pub extra_capacity: u32,
    /// Live calls green served over the run, and its server errors, as the gateway counted them.
    pub green: Counts,
    pub outcome: String,
}

/// One second of user traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Second {
    pub t: f64,
    pub requests: usize,
    pub failed: usize,
}

impl Second {
    pub fn error_percent(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            100.0 * self.failed as f64 / self.requests as f64
        }
    }
}

/// One interval between two samples of the gateway.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// End of the interval.
    pub t: f64,
    pub green_weight: u32,
    pub blue_rps: f64,
    pub green_rps: f64,
    pub blue_errors_ps: f64,
    pub green_errors_ps: f64,
}

impl Interval {
    pub fn green_share(&self) -> Option<f64> {
        let all = self.blue_rps + self.green_rps;
        (all > 0.0).then(|| 100.0 * self.green_rps / all)
    }
}

impl Run {
    /// The first user request: time zero.
    pub fn origin_ms(&self) -> i64 {
        self.outcomes
            .first()
            .map(|o| o.at_ms)
            .unwrap_or(self.release.started_ms)
    }

    pub fn seconds(&self, at_ms: i64) -> f64 {
        (at_ms - self.origin_ms()) as f64 / 1000.0
    }

    /// User requests and failures per second since time zero.
    pub fn per_second(&self) -> Vec<Second> {
        let origin = self.origin_ms();
        let mut seconds: Vec<Second> = Vec::new();
        for outcome in &self.outcomes {
            let Ok(index) = usize::try_from((outcome.at_ms - origin) / 1000) else {
                continue;
            };
            while seconds.len() <= index {
                seconds.push(Second {
                    t: seconds.len() as f64,
                    requests: 0,
                    failed: 0,
                });
            }
            seconds[index].requests += 1;
            seconds[index].failed += usize::from(outcome.failed);
        }
        seconds
    }

    /// Rates between samples at least `min_ms` apart.
    pub fn intervals(&self, min_ms: i64) -> Vec<Interval> {
        let mut intervals = Vec::new();
        let Some(mut from) = self.samples.first() else {
            return intervals;
        };
        for sample in &self.samples[1..] {
            let elapsed = sample.at_ms - from.at_ms;
            if elapsed < min_ms.max(1) {
                continue;
            }
            let per_second = |n: u64| n as f64 * 1000.0 / elapsed as f64;
            let blue = sample.blue_total.since(from.blue_total);
            let green = sample.green_total.since(from.green_total);
            intervals.push(Interval {
                t: self.seconds(sample.at_ms),
                green_weight: sample.green_weight,
                blue_rps: per_second(blue.requests),
                green_rps: per_second(green.requests),
                blue_errors_ps: per_second(blue.server_errors),
                green_errors_ps: per_second(green.server_errors),
            });
            from = sample;
        }
        intervals
    }

    /// When green's weight went back to 0 after the release had raised it:
    /// the first sample that saw it, or the end of the command that did it
    /// when that falls between this sample and the one before.
    pub fn rollback_ms(&self) -> Option<i64> {
        let mut raised_at = None;
        for sample in &self.samples {
            if sample.green_weight > 0 {
                raised_at = Some(sample.at_ms);
            } else if let Some(last_raised) = raised_at {
                let by_command = self
                    .release
                    .commands
                    .iter()
                    .map(|c| c.ended_ms)
                    .filter(|end| *end > last_raised && *end <= sample.at_ms)
                    .min();
                return Some(by_command.unwrap_or(sample.at_ms));
            }
        }
        None
    }

    pub fn figures(&self) -> Figures {
        let release_ms = self.release.started_ms;
        let rollback_ms = self.rollback_ms();
        let failures_after: Vec<i64> = self
            .outcomes
            .iter()
            .filter(|o| o.failed && o.at_ms >= release_ms)
            .map(|o| o.at_ms)
            .collect();
        let mut failed_by_status: Vec<(u16, usize)> = Vec::new();
        for o in self
            .outcomes
            .iter()
            .filter(|o| o.failed && o.at_ms >= release_ms)
        {
            match failed_by_status
                .iter_mut()
                .find(|(status, _)| *status == o.status)
            {
                Some((_, n)) => *n += 1,
                None => failed_by_status.push((o.status, 1)),
            }
        }
        failed_by_status.sort_unstable();
        let first_failure = failures_after.first().copied();
        let last_failure = failures_after.last().copied();
        let detect = match (first_failure, rollback_ms) {
            (Some(first), Some(back)) if first <= back => Some(back - first),
            _ => None,
        };
        let recover = rollback_ms.map(|back| last_failure.map_or(0, |last| (last - back).max(0)));
        let green = match (self.samples.first(), self.samples.last()) {
            (Some(first), Some(last)) => last.green_total.since(first.green_total),
            _ => Counts::default(),
        };
        let peak_weight = self
            .samples
            .iter()
            .map(|s| s.green_weight)
            .max()
            .unwrap_or(0);
        let peak_share = self
            .intervals(1000)
            .iter()
            .filter_map(Interval::green_share)
            .fold(0.0, f64::max);
        let seconds = |ms: i64| ms as f64 / 1000.0;
        Figures {
            requests: self.outcomes.len(),
            failed: self.outcomes.iter().filter(|o| o.failed).count(),
            failed_after_release: failures_after.len(),
            failed_by_status,
            release_s: self.seconds(release_ms),
            rollback_s: rollback_ms.map(|ms| self.seconds(ms)),
            first_failure_s: first_failure.map(|ms| self.seconds(ms)),
            last_failure_s: last_failure.map(|ms| self.seconds(ms)),
            detect_s: detect.map(seconds),
            recover_s: recover.map(seconds),
            exposure_s: rollback_ms.map(|back| seconds(back - release_ms)),
            peak_weight,
            peak_share,
            extra_capacity: self.strategy.extra_capacity_percent(peak_weight),
            green,
            outcome: self.release.outcome(),
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::strategy::CliRun;

    const T0: i64 = 1_700_000_000_000;

    fn outcome(at_s: f64, failed: bool) -> Outcome {
        Outcome {
            at_ms: T0 + (at_s * 1000.0) as i64,
            failed,
            method: "GET".into(),
            status: if failed { 503 } else { 200 },
        }
    }

    /// A canary-like run: 10 requests a second for 40 s; green gets 25% from
    /// 15 s and fails a fifth of its calls; the rollback lands at 22.1 s.
    pub fn synthetic(strategy: Strategy) -> Run {
        let mut outcomes = Vec::new();
        for tenth in 0..400 {
            let t = f64::from(tenth) / 10.0;
            let failed = (15.0..22.0).contains(&t) && tenth % 20 == 13;
            outcomes.push(outcome(t, failed));
        }
        outcomes.push(outcome(22.4, true));
        outcomes.sort_by_key(|o| o.at_ms);
        let mut samples = Vec::new();
        let (mut blue, mut green) = (Counts::default(), Counts::default());
        for quarter in 0..160 {
            let t = f64::from(quarter) / 4.0;
            let on_green = (15.25..22.25).contains(&t);
            let weight = if on_green { 25 } else { 0 };
            if on_green {
                blue.requests += 2;
                green.requests += 1;
                green.server_errors += u64::from(quarter % 5 == 0);
            } else {
                blue.requests += 3;
            }
            samples.push(Sample {
                at_ms: T0 + (t * 1000.0) as i64,
                green_weight: weight,
                rollout: on_green,
                blue_total: blue,
                green_total: green,
                green_last_minute: Counts::default(),
            });
        }
        let command = CliRun {
            args: vec!["rollout".into(), "orders".into()],
            started_ms: T0 + 15_000,
            ended_ms: T0 + 22_100,
            exit_code: Some(6),
            stdout: String::new(),
            stderr: "step 1 (25%): error ratio 0.20 above 0.02; rolled back".into(),
        };
        Run {
            strategy,
            outcomes,
            samples,
            release: Release {
                strategy,
                started_ms: T0 + 15_000,
                commands: vec![command],
                alert_ms: None,
            },
        }
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-6)
    }

    #[test]
    fn figures_of_a_rolled_back_canary() {
        let run = synthetic(Strategy::Canary);
        let f = run.figures();
        assert_eq!(f.requests, 401);
        assert_eq!(f.failed, 4 + 1, "15.3, 17.3, 19.3, 21.3 and 22.4");
        assert_eq!(f.failed_after_release, 5);
        assert_eq!(f.failed_by_status, vec![(503, 5)]);
        assert!((f.release_s - 15.0).abs() < 1e-9);
        // The sample at 22.25 s saw weight 0; the command ended at 22.1 s, after the last raised sample (22.0 s).
        assert!(close(f.rollback_s, 22.1), "{:?}", f.rollback_s);
        assert!(close(f.first_failure_s, 15.3));
        assert!(close(f.detect_s, 22.1 - 15.3), "{:?}", f.detect_s);
        assert!(close(f.recover_s, 0.3), "{:?}", f.recover_s);
        assert!(close(f.exposure_s, 7.1));
        assert_eq!(f.peak_weight, 25);
        assert!(
            (f.peak_share - 100.0 / 3.0).abs() < 1e-6,
            "{}",
            f.peak_share
        );
        assert_eq!(f.extra_capacity, 25);
        assert_eq!(f.green.requests, 28);
        assert!(f.outcome.contains("exit 6"), "{}", f.outcome);
    }

    #[test]
    fn no_rollback_and_no_failure() {
        let mut run = synthetic(Strategy::BlueGreen);
        run.outcomes.iter_mut().for_each(|o| o.failed = false);
        run.samples.iter_mut().for_each(|s| s.green_weight = 0);
        run.release.commands[0].exit_code = Some(5);
        let f = run.figures();
        assert_eq!(
            (f.failed, f.rollback_s, f.detect_s, f.recover_s),
            (0, None, None, None)
        );
        assert_eq!(f.extra_capacity, 100);
        assert!(f.outcome.contains("refused"), "{}", f.outcome);
    }

    #[test]
    fn rollback_without_a_command_is_the_first_sample_at_zero() {
        let mut run = synthetic(Strategy::AllAtOnce);
        run.release.commands.clear();
        assert_eq!(run.rollback_ms(), Some(T0 + 22_250));
        assert_eq!(run.figures().extra_capacity, 0);
    }

    #[test]
    fn seconds_and_intervals() {
        let run = synthetic(Strategy::Canary);
        let seconds = run.per_second();
        assert_eq!(seconds.len(), 40);
        assert_eq!((seconds[15].requests, seconds[15].failed), (10, 1));
        assert!((seconds[15].error_percent() - 10.0).abs() < 1e-9);
        let intervals = run.intervals(1000);
        assert!(intervals.len() >= 35, "{}", intervals.len());
        let before = intervals
            .iter()
            .find(|i| i.t > 5.0)
            .expect("an early interval");
        assert_eq!(before.green_share(), Some(0.0));
        assert!((before.blue_rps - 12.0).abs() < 1e-9, "{}", before.blue_rps);
    }
}
