//! The same release done many times with each strategy, alternating run
//! by run so the machine's noise falls on all of them: per run the figures
//! a judge is measured by (failed user requests, rollout start to rollback,
//! green's calls and server errors as the gateway counted them, the exit
//! code, what decided), and per strategy their spread. Written as a
//! Markdown report, a CSV of the runs and one SVG.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use platform_routing::judge;

use crate::figures::Run;
use crate::plot::{self, Panel};
use crate::report::{self, Setup};
use crate::sample::Counts;
use crate::strategy::{ROLLED_BACK, Strategy};

/// One run of the series: its place, its strategy, and what it gave (or
/// why it broke).
#[derive(Debug, Clone)]
pub struct Attempt {
    /// 1-based, in the order the runs were made.
    pub index: usize,
    /// 1-based: the round of runs it belongs to, one per strategy.
    pub round: usize,
    pub strategy: Strategy,
    pub result: Result<Row, String>,
}

/// The figures of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub exit_code: Option<i32>,
    /// What failed a step, when one failed.
    pub decision: Option<Decision>,
    /// User requests k6 counted as failed from the rollout's start on.
    pub failed: usize,
    pub requests_after: usize,
    /// Rollout start to green's weight back at 0.
    pub exposure_s: Option<f64>,
    /// First failed user request to the rollback.
    pub detect_s: Option<f64>,
    /// Live calls green answered, and its server errors.
    pub green: Counts,
    /// What `platformctl` printed (the first command).
    pub output: String,
}

impl Row {
    pub fn of(run: &Run) -> Row {
        let f = run.figures();
        let first = run.release.commands.first();
        let output = first.map_or_else(String::new, |c| format!("{}{}", c.stdout, c.stderr));
        Row {
            exit_code: first.and_then(|c| c.exit_code),
            decision: Decision::parse(&output),
            failed: f.failed_after_release,
            requests_after: run
                .outcomes
                .iter()
                .filter(|o| o.at_ms >= run.release.started_ms)
                .count(),
            exposure_s: f.exposure_s,
            detect_s: f.detect_s,
            green: f.green,
            output,
        }
    }
}

/// What failed a rollout's step, from what `platformctl` printed:
/// `... failed at step 1/4 (5%): <reason>; rolled back ...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `1/4 (5%)`.
    pub step: String,
    /// Which test or gate: `sequential test of errors`, `error ratio gate`.
    pub kind: String,
    /// Its figures: `e-value 140`, `21.74% > max 1.00%`.
    pub detail: String,
}

impl Decision {
    pub fn parse(output: &str) -> Option<Decision> {
        const MARK: &str = "failed at step ";
        let line = output.lines().find(|l| l.contains(MARK))?;
        let rest = &line[line.find(MARK)? + MARK.len()..];
        let (step, reason) = match rest.find("): ") {
            Some(i) => (&rest[..=i], &rest[i + 3..]),
            None => (rest, ""),
        };
        let reason = reason.split("; rolled back").next().unwrap_or(reason);
        // The figures of a gate come before its first parenthesis or colon.
        let head = |prefix: &str| {
            reason
                .trim_start_matches(prefix)
                .split([':', '('])
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        };
        let (kind, detail) = if let Some(e) = reason.find("e-value ") {
            let value = reason[e + "e-value ".len()..]
                .split_whitespace()
                .next()
                .unwrap_or("?");
            let metric = if reason.starts_with("latency") {
                "latency"
            } else {
                "errors"
            };
            (
                format!("sequential test of {metric}"),
                format!("e-value {value}"),
            )
        } else if reason.starts_with("error ratio") && reason.contains("the current color") {
            ("relative error gate".into(), head("error ratio "))
        } else if reason.starts_with("error ratio") {
            ("error ratio gate".into(), head("error ratio "))
        } else if reason.starts_with("p99 latency") {
            ("p99 gate".into(), head("p99 latency "))
        } else if let Some(why) = reason.strip_prefix("not enough traffic to judge: ") {
            ("not enough traffic".into(), why.to_owned())
        } else {
            ("other".into(), reason.to_owned())
        };
        Some(Decision {
            step: step.to_owned(),
            kind,
            detail,
        })
    }

    pub fn shown(&self) -> String {
        format!("{} ({})", self.kind, self.detail)
    }
}

/// Median, p10, p90, min and max of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub n: usize,
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        Some(Spread {
            n: sorted.len(),
            median: quantile(&sorted, 0.5),
            p10: quantile(&sorted, 0.1),
            p90: quantile(&sorted, 0.9),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        })
    }
}

/// The `q` quantile of sorted values, interpolating linearly between the
/// two nearest (the median of an even count is the mean of the middle two).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let at = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (low, high) = (at.floor() as usize, at.ceil() as usize);
    sorted[low] + (at - low as f64) * (sorted[high] - sorted[low])
}

/// A figure of every run, by strategy.
struct Figure {
    name: &'static str,
    unit: &'static str,
    decimals: usize,
    value: fn(&Row) -> Option<f64>,
}

const FIGURES: [Figure; 5] = [
    Figure {
        name: "failed user requests after the rollout started",
        unit: "",
        decimals: 1,
        value: |r| Some(r.failed as f64),
    },
    Figure {
        name: "rollout start to rollback",
        unit: " s",
        decimals: 1,
        value: |r| r.exposure_s,
    },
    Figure {
        name: "first failed user request to rollback",
        unit: " s",
        decimals: 1,
        value: |r| r.detect_s,
    },
    Figure {
        name: "green calls (gateway)",
        unit: "",
        decimals: 1,
        value: |r| Some(r.green.requests as f64),
    },
    Figure {
        name: "green server errors (gateway)",
        unit: "",
        decimals: 1,
        value: |r| Some(r.green.server_errors as f64),
    },
];

fn number(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

fn shown(value: Option<f64>, unit: &str) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{}{unit}", number(v, 1)))
}

pub fn svg_name(report: &str) -> String {
    format!("{}.svg", report.trim_end_matches(".md"))
}

pub fn csv_name(report: &str) -> String {
    format!("{}-runs.csv", report.trim_end_matches(".md"))
}

/// The strategies in the order they ran.
fn strategies(attempts: &[Attempt]) -> Vec<Strategy> {
    let mut seen = Vec::new();
    for a in attempts {
        if !seen.contains(&a.strategy) {
            seen.push(a.strategy);
        }
    }
    seen
}

fn rows(attempts: &[Attempt], strategy: Strategy) -> Vec<(usize, &Row)> {
    attempts
        .iter()
        .filter(|a| a.strategy == strategy)
        .filter_map(|a| a.result.as_ref().ok().map(|r| (a.round, r)))
        .collect()
}

fn spread_of(attempts: &[Attempt], strategy: Strategy, figure: &Figure) -> Option<Spread> {
    let values: Vec<f64> = rows(attempts, strategy)
        .iter()
        .filter_map(|(_, r)| (figure.value)(r))
        .collect();
    Spread::of(&values)
}

/// Writes the report `name`, its CSV and its plot into `dir`.
pub fn write(
    dir: &Path,
    name: &str,
    setup: &Setup,
    attempts: &[Attempt],
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let svg = dir.join(svg_name(name));
    plot::panels(
        &svg,
        &format!(
            "A bad release of {}, {} runs of each, alternating",
            setup.plan.service, setup.rounds
        ),
        "run (each judge's 1st, 2nd, ...)",
        &panels(attempts),
    )
    .with_context(|| format!("cannot draw {}", svg.display()))?;
    let csv = dir.join(csv_name(name));
    std::fs::write(&csv, runs_csv(attempts))
        .with_context(|| format!("cannot write {}", csv.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, markdown(name, setup, attempts))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn panels(attempts: &[Attempt]) -> Vec<Panel> {
    let series = |value: fn(&Row) -> Option<f64>| {
        strategies(attempts)
            .into_iter()
            .map(|s| {
                let points = rows(attempts, s)
                    .iter()
                    .filter_map(|(round, r)| value(r).map(|v| (*round as f64, v)))
                    .collect();
                (s.title().to_owned(), points)
            })
            .collect()
    };
    vec![
        Panel {
            caption: "failed user requests after the rollout started (dashed: median)".into(),
            y_desc: "failed requests".into(),
            series: series(|r| Some(r.failed as f64)),
        },
        Panel {
            caption: "rollout start to rollback (dashed: median)".into(),
            y_desc: "seconds".into(),
            series: series(|r| r.exposure_s),
        },
    ]
}

pub fn runs_csv(attempts: &[Attempt]) -> String {
    let mut csv = String::from(
        "run,round,strategy,exit_code,step,decided_by,failed_user_requests_after_start,\
         user_requests_after_start,start_to_rollback_s,first_failure_to_rollback_s,\
         green_calls,green_server_errors,broken\n",
    );
    let quoted = |text: &str| format!("\"{}\"", text.replace('"', "\"\""));
    let opt = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v:.3}"));
    for a in attempts {
        match &a.result {
            Ok(r) => {
                let _ = writeln!(
                    csv,
                    "{},{},{},{},{},{},{},{},{},{},{},{},",
                    a.index,
                    a.round,
                    a.strategy.slug(),
                    r.exit_code.map_or_else(String::new, |c| c.to_string()),
                    quoted(r.decision.as_ref().map_or("", |d| d.step.as_str())),
                    quoted(
                        &r.decision
                            .as_ref()
                            .map_or_else(String::new, Decision::shown)
                    ),
                    r.failed,
                    r.requests_after,
                    opt(r.exposure_s),
                    opt(r.detect_s),
                    r.green.requests,
                    r.green.server_errors
                );
            }
            Err(why) => {
                let _ = writeln!(
                    csv,
                    "{},{},{},,,,,,,,,,{}",
                    a.index,
                    a.round,
                    a.strategy.slug(),
                    quoted(why)
                );
            }
        }
    }
    csv
}

pub fn markdown(name: &str, setup: &Setup, attempts: &[Attempt]) -> String {
    let plan = &setup.plan;
    let strategies = strategies(attempts);
    let titles: Vec<&str> = strategies.iter().map(|s| s.title()).collect();
    let mut md = String::new();
    let release = if setup.fault_rate > 0.0 {
        "A bad release"
    } else {
        "A release that fails nothing"
    };
    let _ = writeln!(
        md,
        "# {release} rolled out {} times with {}\n",
        setup.rounds,
        match titles.as_slice() {
            [one] => (*one).to_owned(),
            all => format!("each of: {}", all.join(" · ")),
        }
    );
    let what = if setup.fault_rate > 0.0 {
        format!(
            "The same bad release of `{}` (green {} fails {}% of its calls with server errors)",
            plan.service,
            setup.green_version,
            number(setup.fault_rate * 100.0, 2)
        )
    } else {
        format!(
            "The same release of `{}` (green {}, with no fault injected: every rollback is a \
             false alarm)",
            plan.service, setup.green_version
        )
    };
    let _ = writeln!(
        md,
        "{what}, released {} times{}, each on a freshly started platform. Per run: the user \
         requests that failed, how long green served users, what the gateway counted, and \
         `platformctl`'s exit code; {}.\n",
        setup.rounds,
        if strategies.len() > 1 {
            " with each strategy, one run after the other and alternating between them"
        } else {
            ", one run after the other"
        },
        if strategies.len() > 1 {
            "per strategy their spread"
        } else {
            "their spread"
        }
    );
    let _ = writeln!(
        md,
        "Rerun (it builds the release binaries, then runs for about {} minutes; `--help` of \
         `target/release/release-experiment` lists the settings):\n",
        (setup.elapsed_s / 60.0).ceil().max(1.0)
    );
    let _ = writeln!(md, "```sh\n{}\n```\n", setup.command);

    let _ = writeln!(md, "## Setup\n");
    let _ = writeln!(md, "- {}", report::platform_line(setup, "run"));
    let _ = writeln!(md, "- {}", report::load_line(setup));
    let _ = writeln!(
        md,
        "- **Release** at {} s into the load, with `platformctl` as an operator types it:",
        setup.release_at_s
    );
    for strategy in &strategies {
        let _ = writeln!(
            md,
            "  - {}: `platformctl {}`",
            strategy.title(),
            plan.release_args(*strategy).join(" ")
        );
    }
    if plan.rollout_defaults {
        let shown: Vec<String> = ["--steps", "--interval", "--judge", "--timeout"]
            .iter()
            .filter_map(|flag| setup.rollout_default(flag).map(|v| format!("`{flag} {v}`")))
            .collect();
        if !shown.is_empty() {
            let _ = writeln!(
                md,
                "- **Rollout defaults** (from `platformctl rollout --help`): {}.",
                shown.join(", ")
            );
        }
    }
    for line in setup.analysis(&strategies) {
        let _ = writeln!(md, "- {line}");
    }
    if strategies.len() > 1 {
        let _ = writeln!(
            md,
            "- **Order**: {} rounds; each round runs {} in this order, so a slow spell of the \
             machine falls on every strategy alike.",
            setup.rounds,
            report::list(&titles)
        );
    }
    let _ = writeln!(
        md,
        "- **Observed**: k6's CSV output for every user request (*failed*: `http_req_failed`, \
         a 4xx/5xx status or no answer, from the rollout's start to the end of the load); the \
         gateway's `/admin/status` and `/admin/stats` every {} ms for green's weight (the \
         rollback is when it is back at 0) and its live calls and server errors; the exit code \
         of `platformctl`.",
        setup.sample_every_ms
    );
    let _ = writeln!(
        md,
        "- **Machine**: {} cores (`nproc`), {}; {}, the load generator and all nine processes \
         share them (and whatever else runs on the machine).\n",
        setup.cores, setup.date, setup.k6_version
    );

    let _ = writeln!(md, "## Summary\n");
    let _ = writeln!(
        md,
        "Over the runs that completed; p10 and p90 interpolate linearly between the nearest \
         runs.\n"
    );
    let _ = writeln!(
        md,
        "| figure | strategy | runs | median | p10 | p90 | min | max |"
    );
    let _ = writeln!(md, "|---|---|--:|--:|--:|--:|--:|--:|");
    for figure in &FIGURES {
        for strategy in &strategies {
            let Some(s) = spread_of(attempts, *strategy, figure) else {
                let _ = writeln!(
                    md,
                    "| {} | {} | 0 | – | – | – | – | – |",
                    figure.name,
                    strategy.title()
                );
                continue;
            };
            let v = |x: f64| format!("{}{}", number(x, figure.decimals), figure.unit);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                figure.name,
                strategy.title(),
                s.n,
                v(s.median),
                v(s.p10),
                v(s.p90),
                v(s.min),
                v(s.max)
            );
        }
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "![per run]({})\n", svg_name(name));

    let _ = writeln!(md, "## What it says\n");
    for line in interpretation(setup, attempts) {
        let _ = writeln!(md, "- {line}");
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## Every run\n");
    let _ = writeln!(
        md,
        "In the order they ran (also in [`{}`]({})).\n",
        csv_name(name),
        csv_name(name)
    );
    let _ = writeln!(
        md,
        "| run | strategy | exit code | step | decided by | failed user requests | user \
         requests | first failure to rollback | rollout start to rollback | green calls | \
         green server errors |"
    );
    let _ = writeln!(md, "|--:|---|--:|---|---|--:|--:|--:|--:|--:|--:|");
    for a in attempts {
        match &a.result {
            Ok(r) => {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    a.index,
                    a.strategy.title(),
                    r.exit_code
                        .map_or_else(|| "killed".into(), |c| c.to_string()),
                    r.decision.as_ref().map_or("–", |d| d.step.as_str()),
                    r.decision
                        .as_ref()
                        .map_or_else(|| "–".to_owned(), Decision::shown),
                    r.failed,
                    r.requests_after,
                    shown(r.detect_s, " s"),
                    shown(r.exposure_s, " s"),
                    r.green.requests,
                    r.green.server_errors
                );
            }
            Err(why) => {
                let _ = writeln!(
                    md,
                    "| {} | {} | – | – | broken: {} | – | – | – | – | – | – |",
                    a.index,
                    a.strategy.title(),
                    why.lines().next().unwrap_or("").replace('|', "/")
                );
            }
        }
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## What `platformctl` printed\n");
    let _ = writeln!(md, "The first completed run of each strategy:\n");
    for strategy in &strategies {
        let Some(a) = attempts
            .iter()
            .find(|a| a.strategy == *strategy && a.result.is_ok())
        else {
            continue;
        };
        let Ok(r) = &a.result else { continue };
        let _ = writeln!(
            md,
            "### {} (run {})\n\n`platformctl {}`, exit code {}:\n",
            strategy.title(),
            a.index,
            plan.release_args(*strategy).join(" "),
            r.exit_code
                .map_or_else(|| "none (killed)".into(), |c| c.to_string())
        );
        let _ = writeln!(md, "```text\n{}\n```\n", report::clipped(&r.output, 20));
    }
    md
}

/// Sentences drawn from the runs.
pub fn interpretation(setup: &Setup, attempts: &[Attempt]) -> Vec<String> {
    let mut lines = Vec::new();
    let strategies = strategies(attempts);
    let spreads = |figure: usize| -> Vec<(Strategy, Spread)> {
        strategies
            .iter()
            .filter_map(|s| spread_of(attempts, *s, &FIGURES[figure]).map(|sp| (*s, sp)))
            .collect()
    };
    let describe = |spreads: &[(Strategy, Spread)], unit: &str| {
        spreads
            .iter()
            .map(|(s, sp)| {
                format!(
                    "{} median {}{unit} (p10 {}, p90 {}; {} to {})",
                    s.title(),
                    number(sp.median, 1),
                    number(sp.p10, 1),
                    number(sp.p90, 1),
                    number(sp.min, 1),
                    number(sp.max, 1)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let failed = spreads(0);
    if !failed.is_empty() {
        lines.push(format!(
            "Failed user requests after the rollout started: {}.",
            describe(&failed, "")
        ));
    }
    let exposure = spreads(1);
    if !exposure.is_empty() {
        lines.push(format!(
            "Rollout start to rollback: {}.",
            describe(&exposure, " s")
        ));
    }
    if let [first, second] = strategies.as_slice() {
        let (mut fewer, mut same, mut more) = (0, 0, 0);
        let mut pairs = 0;
        for round in 1..=setup.rounds as usize {
            let find = |s: Strategy| {
                attempts
                    .iter()
                    .find(|a| a.round == round && a.strategy == s)
                    .and_then(|a| a.result.as_ref().ok())
            };
            if let (Some(a), Some(b)) = (find(*first), find(*second)) {
                pairs += 1;
                match a.failed.cmp(&b.failed) {
                    std::cmp::Ordering::Less => fewer += 1,
                    std::cmp::Ordering::Equal => same += 1,
                    std::cmp::Ordering::Greater => more += 1,
                }
            }
        }
        if pairs > 0 {
            lines.push(format!(
                "Round by round (each round one run of each, one after the other): {} had \
                 fewer failed user requests than {} in {fewer} of {pairs} rounds, as many in \
                 {same}, more in {more}.",
                first.title(),
                second.title()
            ));
        }
    }
    let median_of = |strategy: Strategy, figure: usize| {
        spread_of(attempts, strategy, &FIGURES[figure]).map(|s| s.median)
    };
    if let (Some(test_failed), Some(gates_failed), Some(test_s), Some(gates_s)) = (
        median_of(Strategy::Canary, 0),
        median_of(Strategy::CanaryGates, 0),
        median_of(Strategy::Canary, 1),
        median_of(Strategy::CanaryGates, 1),
    ) && gates_failed > 0.0
        && test_s > 0.0
    {
        lines.push(format!(
            "The sequential test against the gates alone, medians: {} failed user requests \
             against {} ({}% of them), rolled back after {} s against {} s ({:.1}x sooner).",
            number(test_failed, 1),
            number(gates_failed, 1),
            number(100.0 * test_failed / gates_failed, 0),
            number(test_s, 1),
            number(gates_s, 1),
            gates_s / test_s
        ));
    }
    for strategy in &strategies {
        let rows = rows(attempts, *strategy);
        if rows.is_empty() {
            continue;
        }
        let median = |value: fn(&Row) -> Option<f64>| {
            let values: Vec<f64> = rows.iter().filter_map(|(_, r)| value(r)).collect();
            Spread::of(&values).map_or_else(|| "–".to_owned(), |s| number(s.median, 1))
        };
        let mut deciders: Vec<(String, usize)> = Vec::new();
        for (_, r) in &rows {
            let what = r.decision.as_ref().map_or_else(
                || "no failed step".to_owned(),
                |d| format!("the {} at step {}", d.kind, d.step),
            );
            match deciders.iter_mut().find(|(w, _)| *w == what) {
                Some((_, n)) => *n += 1,
                None => deciders.push((what, 1)),
            }
        }
        deciders.sort_by_key(|d| std::cmp::Reverse(d.1));
        lines.push(format!(
            "{}: decided by {}; at a median of {} green calls with {} server errors among \
             them.",
            report::capitalized(strategy.title()),
            deciders
                .iter()
                .map(|(what, n)| format!("{what} in {n} of {} runs", rows.len()))
                .collect::<Vec<_>>()
                .join(", "),
            median(|r| Some(r.green.requests as f64)),
            median(|r| Some(r.green.server_errors as f64))
        ));
        if let Some(sentence) = expectation(setup, *strategy) {
            lines.push(sentence);
        }
    }
    let by_latency: Vec<(usize, &Row)> = attempts
        .iter()
        .filter_map(|a| a.result.as_ref().ok().map(|r| (a.index, r)))
        .filter(|(_, r)| {
            r.decision
                .as_ref()
                .is_some_and(|d| d.kind == "sequential test of latency")
        })
        .collect();
    if !by_latency.is_empty() {
        let runs = by_latency
            .iter()
            .map(|(index, r)| {
                format!(
                    "run {index}: {} of {} green calls had failed",
                    r.green.server_errors, r.green.requests
                )
            })
            .collect::<Vec<_>>()
            .join("; ");
        let meaning = if setup.fault_rate > 0.0 {
            "green's calls were slower than blue's p90 of before the step, which says nothing \
             of its server errors; these runs all release a faulty green, so they cannot tell \
             how often the latency test also stops a release that fails nothing (`--fault-rate \
             0` runs the same without the fault)"
        } else {
            "green fails nothing here, so these are false alarms of the latency test: its calls \
             were slower than blue's p90 of before the step"
        };
        lines.push(format!(
            "In {} of {completed} runs the sequential test of latency, not the one of errors, \
             failed the step ({runs}): {meaning}.",
            by_latency.len(),
            completed = attempts.iter().filter(|a| a.result.is_ok()).count()
        ));
    }
    let mut exits: Vec<(Option<i32>, Vec<usize>)> = Vec::new();
    for a in attempts {
        if let Ok(r) = &a.result {
            match exits.iter_mut().find(|(code, _)| *code == r.exit_code) {
                Some((_, runs)) => runs.push(a.index),
                None => exits.push((r.exit_code, vec![a.index])),
            }
        }
    }
    let meaning = |code: Option<i32>| match code {
        Some(0) => " (the rollout completed: green kept all traffic)".to_owned(),
        Some(ROLLED_BACK) => " (analysis failed, traffic rolled back)".to_owned(),
        Some(code) => format!(" (exit code {code})"),
        None => " (killed)".to_owned(),
    };
    match exits.as_slice() {
        [] => {}
        [(code, runs)] => lines.push(format!(
            "Every one of the {} completed runs exited {}{}.",
            runs.len(),
            code.map_or_else(|| "nothing".into(), |c| c.to_string()),
            meaning(*code)
        )),
        _ => lines.push(format!(
            "Exit codes: {}.",
            exits
                .iter()
                .map(|(code, runs)| format!(
                    "{}{} in {} ({})",
                    code.map_or_else(|| "none".into(), |c| c.to_string()),
                    meaning(*code),
                    if runs.len() == 1 {
                        "1 run".to_owned()
                    } else {
                        format!("{} runs", runs.len())
                    },
                    runs.iter()
                        .map(|i| format!("run {i}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
    let broken: Vec<String> = attempts
        .iter()
        .filter_map(|a| {
            a.result.as_ref().err().map(|why| {
                format!(
                    "run {} ({}): {}",
                    a.index,
                    a.strategy.title(),
                    why.lines().next().unwrap_or("")
                )
            })
        })
        .collect();
    if !broken.is_empty() {
        lines.push(format!(
            "{} run(s) broke and are left out of the figures: {}.",
            broken.len(),
            broken.join("; ")
        ));
    }
    let gaps: Vec<String> = attempts
        .iter()
        .filter_map(|a| {
            let r = a.result.as_ref().ok()?;
            let errors = usize::try_from(r.green.server_errors).unwrap_or(usize::MAX);
            (r.failed != errors).then(|| {
                format!(
                    "run {}: {} failed, {} green server errors",
                    a.index, r.failed, errors
                )
            })
        })
        .collect();
    if gaps.is_empty() {
        lines.push(
            "In every run the user requests that failed were exactly green's server errors as \
             the gateway counted them: the failures came from the release, not from the \
             platform."
                .into(),
        );
    } else {
        lines.push(format!(
            "The user requests that failed and green's server errors differ in {} run(s) ({}): \
             a failure users saw that green did not cause (or the other way round).",
            gaps.len(),
            gaps.join("; ")
        ));
    }
    lines.push(
        "The counts are small and vary run to run: read the medians and the p10 to p90 \
         range, not any single run."
            .into(),
    );
    lines
}

/// What the settings predict for a canary's first step: the gates wait
/// for a number of green calls; while blue fails nothing, the sequential
/// test fails the step at a number of green server errors. Either takes a
/// computable time at the step's share of the load.
fn expectation(setup: &Setup, strategy: Strategy) -> Option<String> {
    let plan = &setup.plan;
    let (min_requests, first_step) = if plan.rollout_defaults {
        let min: f64 = setup.rollout_default("--min-requests")?.parse().ok()?;
        let step: f64 = setup
            .rollout_default("--steps")?
            .split(',')
            .next()?
            .trim()
            .parse()
            .ok()?;
        (min, step)
    } else {
        (
            plan.min_requests as f64,
            f64::from(*plan.canary_steps.first()?),
        )
    };
    let per_second = f64::from(setup.rate) * first_step / 100.0;
    if per_second <= 0.0 || setup.fault_rate <= 0.0 {
        return None;
    }
    let opening = format!(
        "What the settings predict for {}: at {} requests/s and a first step of {}%, green \
         gets about {} calls/s",
        strategy.title(),
        setup.rate,
        number(first_step, 1),
        number(per_second, 1)
    );
    match strategy {
        Strategy::CanaryGates => Some(format!(
            "{opening}, so the gates' {} calls take about {} s to arrive, and about {} of them \
             fail ({}%) before the gates can judge.",
            number(min_requests, 0),
            number(min_requests / per_second, 1),
            number(min_requests * setup.fault_rate, 1),
            number(setup.fault_rate * 100.0, 1)
        )),
        Strategy::Canary => {
            let errors = errors_to_fail(first_step / 100.0)?;
            let calls = errors as f64 / setup.fault_rate;
            Some(format!(
                "{opening}; while blue fails nothing, the sequential test fails the step after \
                 {errors} server errors from green, which at {}% take about {} green calls, \
                 about {} s (the test needs no minimum of calls).",
                number(setup.fault_rate * 100.0, 1),
                number(calls, 1),
                number(calls / per_second, 1)
            ))
        }
        _ => None,
    }
}

/// The fewest server errors from the target, none from the live color,
/// that fail the sequential test at `weight`.
fn errors_to_fail(weight: f64) -> Option<u64> {
    let live = judge::Counts {
        calls: 1_000,
        errors: 0,
    };
    (1..=100).find(|&errors| {
        let target = judge::Counts {
            calls: errors,
            errors,
        };
        matches!(
            judge::errors(target, live, weight, judge::Settings::default()),
            judge::Verdict::Fail { .. }
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::tests::synthetic;
    use crate::report::tests::setup;

    #[test]
    fn quantiles_interpolate() {
        let values: Vec<f64> = (1..=20).map(f64::from).collect();
        let s = Spread::of(&values).expect("values");
        assert_eq!((s.n, s.min, s.max), (20, 1.0, 20.0));
        assert!((s.median - 10.5).abs() < 1e-9, "{}", s.median);
        assert!((s.p10 - 2.9).abs() < 1e-9, "{}", s.p10);
        assert!((s.p90 - 18.1).abs() < 1e-9, "{}", s.p90);
        let one = Spread::of(&[4.0]).expect("one");
        assert_eq!((one.median, one.p10, one.p90), (4.0, 4.0, 4.0));
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[f64::NAN]), None);
    }

    #[test]
    fn decisions() {
        let check = |output: &str, expect: Option<(&str, &str, &str)>| {
            let expect = expect.map(|(step, kind, detail)| Decision {
                step: step.into(),
                kind: kind.into(),
                detail: detail.into(),
            });
            assert_eq!(Decision::parse(output), expect, "{output}");
        };
        check(
            "started\nerror: rollout of orders to green failed at step 1/4 (5%): error ratio \
             100.00% (2 server errors in 2 requests) against the current color's 0.00% (0 in \
             59): worse, e-value 140 >= 100 (sequential test, 1% false alarms at most); rolled \
             back: blue 100% / green 0%",
            Some(("1/4 (5%)", "sequential test of errors", "e-value 140")),
        );
        check(
            "error: rollout of orders to green failed at step 2/4 (25%): latency: 40.0% of calls \
             slower than 3.1 ms (4 of 10) against the current color's 5.0% (2 of 40): worse, \
             e-value 120 >= 100 (sequential test, 1% false alarms at most); rolled back: x",
            Some(("2/4 (25%)", "sequential test of latency", "e-value 120")),
        );
        check(
            "error: rollout of orders to green failed at step 1/4 (5%): error ratio 21.74% > max \
             1.00% (21.7x the limit): 11 server errors in 50 requests; rolled back: blue 100% / \
             green 0%",
            Some(("1/4 (5%)", "error ratio gate", "21.74% > max 1.00%")),
        );
        check(
            "error: rollout of orders to green failed at step 1/4 (5%): error ratio 8.00% > \
             2.0x the current color's 1.00% (+0.5 points): 8 server errors in 100 requests; \
             rolled back: x",
            Some((
                "1/4 (5%)",
                "relative error gate",
                "8.00% > 2.0x the current color's 1.00%",
            )),
        );
        check(
            "error: rollout of orders to green failed at step 1/1 (100%): p99 latency 900.0 ms > \
             max 500.0 ms (1.8x the limit) over 60 requests; rolled back: x",
            Some(("1/1 (100%)", "p99 gate", "900.0 ms > max 500.0 ms")),
        );
        check(
            "error: rollout of orders to green failed at step 1/4 (5%): not enough traffic to \
             judge: 3 of 50 requests in 90s; rolled back (lower --min-requests)",
            Some(("1/4 (5%)", "not enough traffic", "3 of 50 requests in 90s")),
        );
        check("rollout completed", None);
    }

    fn attempts() -> Vec<Attempt> {
        let mut attempts = Vec::new();
        for round in 1..=3 {
            for (i, strategy) in [Strategy::Canary, Strategy::CanaryGates].iter().enumerate() {
                let mut run = synthetic(*strategy);
                if *strategy == Strategy::CanaryGates {
                    // Four more failures, green's server errors alike.
                    let mut added = 0;
                    for o in run.outcomes.iter_mut() {
                        let t = (o.at_ms - run.release.started_ms) as f64 / 1000.0;
                        if (1.0..6.0).contains(&t) && !o.failed && added < 4 {
                            o.failed = true;
                            added += 1;
                        }
                    }
                    if let Some(last) = run.samples.last_mut() {
                        last.green_total.server_errors += 4;
                    }
                    run.release.commands[0].stderr = "error: rollout of orders to green failed \
                        at step 1/4 (25%): error ratio 21.00% > max 1.00% (21.0x the limit): 9 \
                        server errors in 50 requests; rolled back: blue 100% / green 0%"
                        .into();
                }
                attempts.push(Attempt {
                    index: (round - 1) * 2 + i + 1,
                    round,
                    strategy: *strategy,
                    result: Ok(Row::of(&run)),
                });
            }
        }
        attempts.push(Attempt {
            index: 7,
            round: 4,
            strategy: Strategy::Canary,
            result: Err("the gateway is not ready after 90 s".into()),
        });
        attempts
    }

    #[test]
    fn a_release_that_fails_nothing_and_the_latency_test() {
        let mut setup = setup();
        setup.fault_rate = 0.0;
        setup.rounds = 2;
        let mut slow = synthetic(Strategy::Canary);
        slow.release.commands[0].stderr = "error: rollout of orders to green failed at step \
            1/4 (5%): latency: 80.0% of calls slower than 1.5 ms (4 of 5) against the current \
            color's 9.0% (9 of 100): worse, e-value 443 >= 100 (sequential test, 1% false alarms \
            at most); rolled back: blue 100% / green 0%"
            .into();
        let mut completed = synthetic(Strategy::Canary);
        completed.release.commands[0].exit_code = Some(0);
        completed.release.commands[0].stderr.clear();
        let attempts: Vec<Attempt> = [slow, completed]
            .iter()
            .enumerate()
            .map(|(i, run)| Attempt {
                index: i + 1,
                round: i + 1,
                strategy: Strategy::Canary,
                result: Ok(Row::of(run)),
            })
            .collect();
        let md = markdown("x.md", &setup, &attempts);
        for text in [
            "# A release that fails nothing rolled out 2 times with canary\n",
            "released 2 times, one run after the other, each on a freshly started platform",
            "with no fault injected: every rollback is a false alarm",
            "In 1 of 2 runs the sequential test of latency, not the one of errors, failed the step (run 1: 5 of 28 green calls had failed): green fails nothing here, so these are false alarms",
            "Exit codes: 6 (analysis failed, traffic rolled back) in 1 run (run 1); 0 (the rollout completed: green kept all traffic) in 1 run (run 2).",
        ] {
            assert!(md.contains(text), "missing {text:?} in:\n{md}");
        }
        assert!(!md.contains("What the settings predict"), "{md}");
    }

    #[test]
    fn rows_of_a_run() {
        let row = Row::of(&synthetic(Strategy::Canary));
        assert_eq!(row.exit_code, Some(6));
        assert_eq!(row.failed, 5);
        assert_eq!(row.green.requests, 28);
        assert!(row.exposure_s.is_some_and(|s| (s - 7.1).abs() < 1e-6));
    }

    #[test]
    fn the_report_is_written_from_the_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut setup = setup();
        setup.rounds = 3;
        let name = "release-judge-live.md";
        let path = write(dir.path(), name, &setup, &attempts()).expect("writes");
        let md = std::fs::read_to_string(&path).expect("report");
        let svg = std::fs::read_to_string(dir.path().join("release-judge-live.svg")).expect("svg");
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("canary, gates only"));
        let csv =
            std::fs::read_to_string(dir.path().join("release-judge-live-runs.csv")).expect("csv");
        assert_eq!(csv.lines().count(), 1 + 7);
        assert!(
            csv.lines().nth(2).is_some_and(|l| l.starts_with(
                "2,1,canary-gates,6,\"1/4 (25%)\",\"error ratio gate (21.00% > max 1.00%)\",9,"
            )),
            "{csv}"
        );
        for text in [
            "# A bad release rolled out 3 times with each of: canary · canary, gates only",
            "`--green-env orders:FAULT_ERROR_RATE=0.2`",
            "  - canary, gates only: `platformctl rollout orders --to green --steps 5,25,50,100 --interval 10s --min-requests 20 --max-error-ratio 0.02 --judge gates`",
            "| failed user requests after the rollout started | canary | 3 | 5 | 5 | 5 | 5 | 5 |",
            "| failed user requests after the rollout started | canary, gates only | 3 | 9 | 9 | 9 | 9 | 9 |",
            "| rollout start to rollback | canary | 3 | 7.1 s |",
            "![per run](release-judge-live.svg)",
            "Failed user requests after the rollout started: canary median 5 (p10 5, p90 5; 5 to 5); canary, gates only median 9",
            "canary had fewer failed user requests than canary, gates only in 3 of 3 rounds, as many in 0, more in 0.",
            "Canary, gates only: decided by the error ratio gate at step 1/4 (25%) in 3 of 3 runs; at a median of",
            "What the settings predict for canary, gates only: at 60 requests/s and a first step of 5%, green gets about 3 calls/s, so the gates' 20 calls take about 6.7 s to arrive, and about 4 of them fail (20%)",
            "Every one of the 6 completed runs exited 6 (analysis failed, traffic rolled back).",
            "What the settings predict for canary: at 60 requests/s and a first step of 5%, green gets about 3 calls/s; while blue fails nothing, the sequential test fails the step after 2 server errors from green, which at 20% take about 10 green calls, about 3.3 s",
            "The sequential test against the gates alone, medians: 5 failed user requests against 9 (56% of them), rolled back after 7.1 s against 7.1 s (1.0x sooner).",
            "1 run(s) broke and are left out of the figures: run 7 (canary): the gateway is not ready after 90 s.",
            "| 7 | canary | – | – | broken: the gateway is not ready after 90 s |",
            "| 2 | canary, gates only | 6 | 1/4 (25%) | error ratio gate (21.00% > max 1.00%) | 9 |",
            "### canary, gates only (run 2)",
        ] {
            assert!(md.contains(text), "missing {text:?} in:\n{md}");
        }
    }
}
