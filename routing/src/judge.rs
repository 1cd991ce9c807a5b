//! The release judge's arithmetic: whether a target color's server errors
//! are worse than the live color's over the same calls, decided by a test
//! that may be looked at after every call without inflating false alarms.
//!
//! Each call of a step goes to the target with probability `w` (its
//! weight). If the target's error rate is `R` times the live one's, an
//! error comes from the target with probability
//! `θ(R) = wR / (wR + 1 - w)`, whatever the rates themselves are, so the
//! colors' errors in the order they happen are coin flips with bias `θ`.
//! The judge runs two one-sided mixture sequential probability ratio tests
//! on those flips (a Beta prior mixed over the alternative, truncated to
//! it), each a nonnegative supermartingale under its null hypothesis, so
//! by Ville's inequality the chance that it ever crosses `1/α` is at most
//! `α`, however often it is read:
//!
//! - fail: the null "the target is no worse" (`R ≤ 1`) is rejected;
//! - pass: the null "the target is worse by the margin or more"
//!   (`R ≥ 1 + margin`) is rejected;
//! - otherwise keep watching.
//!
//! Both colors failing alike moves neither test: that is an incident of
//! the platform, for the caller to tell apart with its absolute limits.

/// The counts of one color over the window being judged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub calls: u64,
    /// Server errors only: the caller's own mistakes (4xx) never count.
    pub errors: u64,
}

/// How sure the judge must be, and of what.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// The chance of failing a target that is no worse than the live color
    /// (a false rollback), at most.
    pub alpha: f64,
    /// The chance of passing a target worse than the live color by the
    /// margin, at most.
    pub beta: f64,
    /// How much worse (relative error rate) a target may be and still
    /// pass: 0.5 is one and a half times the live color's error rate.
    pub margin: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            alpha: 0.01,
            beta: 0.05,
            margin: 0.5,
        }
    }
}

/// What the evidence says now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// The target is worse than the live color: roll back now. `evidence`
    /// is the test's e-value (at least `1/alpha`).
    Fail { evidence: f64 },
    /// The target is no worse than the margin: the step may advance.
    Pass { evidence: f64 },
    /// Not enough evidence either way yet.
    Watch,
}

/// Judges `target` against `live` when the target gets `weight` (0 to 1,
/// exclusive) of the calls.
pub fn errors(target: Counts, live: Counts, weight: f64, settings: Settings) -> Verdict {
    let worse = worse(target, live, weight);
    if worse >= 1.0 / settings.alpha {
        return Verdict::Fail { evidence: worse };
    }
    let fine = fine(target, live, weight, settings.margin);
    if fine >= 1.0 / settings.beta {
        return Verdict::Pass { evidence: fine };
    }
    Verdict::Watch
}

/// The evidence that the target is worse than the live color (the e-value
/// of the test against "no worse"); 1 when there is no split to test at.
/// The e-values of successive steps multiply: each step's test starts
/// afresh at its own split, and their product is still an e-process, so
/// one `alpha` holds for a whole rollout.
pub fn worse(target: Counts, live: Counts, weight: f64) -> f64 {
    if !(weight > 0.0 && weight < 1.0) {
        return 1.0;
    }
    e_value_above(target.errors as f64, live.errors as f64, theta(weight, 1.0))
}

/// The evidence that the target is no worse than `1 + margin` times the
/// live color.
pub fn fine(target: Counts, live: Counts, weight: f64, margin: f64) -> f64 {
    if !(weight > 0.0 && weight < 1.0) {
        return 1.0;
    }
    e_value_below(
        target.errors as f64,
        live.errors as f64,
        theta(weight, 1.0 + margin),
    )
}

/// Judges `observed` against a fixed rate `limit` (0 to 1, exclusive): fails
/// once its errors make "the rate is at most `limit`" untenable. Used after
/// promotion, when no live color runs beside the target to compare with,
/// against the rate the old color had (the calls are then the coin flips).
pub fn rate(observed: Counts, limit: f64, settings: Settings) -> Verdict {
    let worse = above(observed, limit);
    if worse >= 1.0 / settings.alpha {
        return Verdict::Fail { evidence: worse };
    }
    Verdict::Watch
}

/// The evidence that `observed`'s error rate is above `limit`; 1 when the
/// limit is not a rate strictly between 0 and 1.
pub fn above(observed: Counts, limit: f64) -> f64 {
    if !(limit > 0.0 && limit < 1.0) {
        return 1.0;
    }
    e_value_above(
        observed.errors as f64,
        observed.calls.saturating_sub(observed.errors) as f64,
        limit,
    )
}

/// A rate that `events` in `calls` is unlikely to be above by chance
/// (about a 97.5% upper bound, from the Poisson approximation): what a
/// baseline measured over a few hundred calls is taken to be, so its noise
/// is not counted as a regression of what is compared with it.
pub fn upper_rate(events: u64, calls: u64) -> f64 {
    let e = events as f64;
    ((e + 2.0 + 2.0 * (e + 1.0).sqrt()) / calls.max(1) as f64).min(1.0)
}

/// The chance that an error comes from the target when it gets `weight`
/// of the calls and fails `ratio` times as often as the live color.
pub fn theta(weight: f64, ratio: f64) -> f64 {
    weight * ratio / (weight * ratio + 1.0 - weight)
}

/// Calls a step must have before the target's observed share of them is
/// used as its split (when callers keep their color, so the weight is not
/// the share): below it, the share is too noisy to test against.
pub const MIN_SPLIT_CALLS: u64 = 40;

/// The target's share of a step's calls, when callers keep their color (a
/// sticky canary): the split to test at, once there are enough calls.
pub fn observed_split(target: Counts, live: Counts) -> Option<f64> {
    let all = target.calls + live.calls;
    (all >= MIN_SPLIT_CALLS && target.calls > 0 && live.calls > 0)
        .then(|| target.calls as f64 / all as f64)
}

/// The uniform prior over the alternative: Beta(1, 1) truncated to it.
const PRIOR: (f64, f64) = (1.0, 1.0);

/// E-value against "θ ≤ θ0" after `k` errors from the target and `rest`
/// from the live color: the likelihood of the flips mixed over θ in
/// (θ0, 1), over their likelihood at θ0.
fn e_value_above(k: f64, rest: f64, theta0: f64) -> f64 {
    let (a, b) = PRIOR;
    let mixed = ln_beta(a + k, b + rest) - ln_beta(a, b)
        + (1.0 - regularized_beta(theta0, a + k, b + rest)).ln()
        - (1.0 - regularized_beta(theta0, a, b)).ln();
    let null = k * theta0.ln() + rest * (1.0 - theta0).ln();
    (mixed - null).exp()
}

/// E-value against "θ ≥ θ1": the same, mixed over θ in (0, θ1).
fn e_value_below(k: f64, rest: f64, theta1: f64) -> f64 {
    let (a, b) = PRIOR;
    let mixed = ln_beta(a + k, b + rest) - ln_beta(a, b)
        + regularized_beta(theta1, a + k, b + rest).ln()
        - regularized_beta(theta1, a, b).ln();
    let null = k * theta1.ln() + rest * (1.0 - theta1).ln();
    (mixed - null).exp()
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, nine terms).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1-x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// The regularized incomplete beta function I_x(a, b), by its continued
/// fraction (modified Lentz), on the side where it converges fast.
fn regularized_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - regularized_beta(1.0 - x, b, a);
    }
    let front = (a * x.ln() + b * (1.0 - x).ln() - ln_beta(a, b)).exp() / a;
    front * continued_fraction(x, a, b)
}

fn continued_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut f = d;
    for m in 1..=300 {
        let m = f64::from(m);
        // Even step.
        let n = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        d = 1.0 + n * d;
        d = if d.abs() < TINY { 1.0 / TINY } else { 1.0 / d };
        c = 1.0 + n / c;
        if c.abs() < TINY {
            c = TINY;
        }
        f *= d * c;
        // Odd step.
        let n = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 + n * d;
        d = if d.abs() < TINY { 1.0 / TINY } else { 1.0 / d };
        c = 1.0 + n / c;
        if c.abs() < TINY {
            c = TINY;
        }
        let step = d * c;
        f *= step;
        if (step - 1.0).abs() < 1e-14 {
            break;
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64*), so every run of these
    /// simulations sees the same calls.
    struct Rng(u64);

    impl Rng {
        fn unit(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// One step of a rollout, judged after every call until a verdict or
    /// `calls` calls: the verdict and the calls it took.
    fn run(
        rng: &mut Rng,
        weight: f64,
        target_rate: f64,
        live_rate: f64,
        calls: u64,
    ) -> (Verdict, u64) {
        let (mut target, mut live) = (Counts::default(), Counts::default());
        for n in 1..=calls {
            let to_target = rng.unit() < weight;
            let (counts, rate) = if to_target {
                (&mut target, target_rate)
            } else {
                (&mut live, live_rate)
            };
            counts.calls += 1;
            if rng.unit() < rate {
                counts.errors += 1;
                match errors(target, live, weight, Settings::default()) {
                    Verdict::Watch => {}
                    verdict => return (verdict, n),
                }
            }
        }
        (Verdict::Watch, calls)
    }

    #[test]
    fn special_functions_match_known_values() {
        // Γ(5) = 24, Γ(0.5) = √π.
        assert!((ln_gamma(5.0) - 24f64.ln()).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
        // I_x(1, 1) = x; I_x(2, 3) = 6x²/2 - 8x³/3 + 3x⁴ ... at 0.3: 0.3483.
        assert!((regularized_beta(0.3, 1.0, 1.0) - 0.3).abs() < 1e-12);
        assert!((regularized_beta(0.3, 2.0, 3.0) - 0.3483).abs() < 1e-4);
        // Symmetry: I_x(a, b) = 1 - I_{1-x}(b, a), and large arguments.
        let (x, a, b) = (0.07, 120.0, 1900.0);
        assert!((regularized_beta(x, a, b) + regularized_beta(1.0 - x, b, a) - 1.0).abs() < 1e-10);
    }

    #[test]
    fn a_release_failing_one_call_in_five_is_caught_within_two_of_its_errors() {
        // At the first step (5%), against a live color failing 0.1%.
        let mut rng = Rng(7);
        for _ in 0..200 {
            let (verdict, _) = run(&mut rng, 0.05, 0.2, 0.001, 20_000);
            assert!(matches!(verdict, Verdict::Fail { .. }), "{verdict:?}");
        }
        // With no errors on the live color, two target errors are enough.
        let two = errors(
            Counts {
                calls: 10,
                errors: 2,
            },
            Counts {
                calls: 190,
                errors: 0,
            },
            0.05,
            Settings::default(),
        );
        assert!(matches!(two, Verdict::Fail { .. }), "{two:?}");
        let one = errors(
            Counts {
                calls: 5,
                errors: 1,
            },
            Counts {
                calls: 95,
                errors: 0,
            },
            0.05,
            Settings::default(),
        );
        assert_eq!(one, Verdict::Watch, "one error is not yet evidence");
    }

    #[test]
    fn a_healthy_release_is_rarely_failed_though_judged_after_every_call() {
        // Both colors fail 1% of calls; 1,000 rollouts at each weight,
        // looked at after every error for 5,000 calls: false rollbacks stay
        // under alpha (1%), with room for the simulation's own noise.
        let mut rng = Rng(11);
        for weight in [0.05, 0.25, 0.5] {
            let failed = (0..1_000)
                .filter(|_| {
                    matches!(
                        run(&mut rng, weight, 0.01, 0.01, 5_000).0,
                        Verdict::Fail { .. }
                    )
                })
                .count();
            assert!(
                failed <= 15,
                "weight {weight}: {failed} false rollbacks in 1000"
            );
        }
    }

    #[test]
    fn a_release_doubling_a_small_error_rate_is_caught() {
        // 1% against 0.5%, half the traffic: caught, and passed (beyond the
        // margin of 1.5x) within what beta allows at most.
        let mut rng = Rng(13);
        let (mut caught, mut passed) = (0, 0);
        for _ in 0..200 {
            match run(&mut rng, 0.5, 0.01, 0.005, 200_000).0 {
                Verdict::Fail { .. } => caught += 1,
                Verdict::Pass { .. } => passed += 1,
                Verdict::Watch => {}
            }
        }
        assert!(
            caught >= 190 && passed <= 5,
            "caught {caught}, passed {passed} of 200"
        );
    }

    #[test]
    fn the_rate_test_holds_its_false_alarms_after_every_call_and_catches_a_fivefold_rate() {
        let mut rng = Rng(11);
        let settings = Settings::default();
        let run = |rng: &mut Rng, rate: f64| {
            let mut counts = Counts::default();
            for _ in 0..5_000 {
                counts.calls += 1;
                if rng.unit() < rate {
                    counts.errors += 1;
                }
                if let Verdict::Fail { .. } = super::rate(counts, 0.01, settings) {
                    return true;
                }
            }
            false
        };
        // At the limit itself, looked at after every call.
        let false_alarms = (0..400).filter(|_| run(&mut rng, 0.01)).count();
        assert!(false_alarms <= 8, "{false_alarms} of 400");
        let caught = (0..100).filter(|_| run(&mut rng, 0.05)).count();
        assert!(caught >= 97, "{caught} of 100");
    }

    #[test]
    fn an_equal_release_passes_and_a_platform_incident_fails_nobody() {
        let mut rng = Rng(17);
        let passed = (0..200)
            .filter(|_| {
                matches!(
                    run(&mut rng, 0.5, 0.02, 0.02, 50_000).0,
                    Verdict::Pass { .. }
                )
            })
            .count();
        assert!(passed >= 190, "passed {passed} of 200");
        // Both colors failing half their calls: the errors split as the
        // calls do, which is no evidence against the target.
        let incident = errors(
            Counts {
                calls: 100,
                errors: 50,
            },
            Counts {
                calls: 1_900,
                errors: 950,
            },
            0.05,
            Settings::default(),
        );
        assert!(!matches!(incident, Verdict::Fail { .. }), "{incident:?}");
    }

    #[test]
    fn weights_outside_a_canary_judge_nothing() {
        let some = Counts {
            calls: 10,
            errors: 5,
        };
        for weight in [0.0, 1.0, f64::NAN] {
            assert_eq!(
                errors(some, some, weight, Settings::default()),
                Verdict::Watch
            );
        }
    }
}
