//! The Markdown report, its plots and each run's timeline, all written from
//! the runs' data: every figure and every sentence of the interpretation is
//! computed here, none is typed in.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use platform_routing::judge::Settings;
use platform_routing::verdict::RELATIVE_SLACK;

use crate::figures::{Figures, Run};
use crate::plot::{self, PlotData};
use crate::strategy::{Plan, Strategy};

/// How the experiment was run.
#[derive(Debug, Clone)]
pub struct Setup {
    pub command: String,
    pub rate: u32,
    pub duration_s: u64,
    pub release_at_s: u64,
    pub users: u32,
    pub write_every: u32,
    pub fault_rate: f64,
    pub blue_version: String,
    pub green_version: String,
    pub plan: Plan,
    /// `(flag, value)` of `platformctl rollout --help`'s defaults.
    pub rollout_defaults: Vec<(String, String)>,
    /// How many times each strategy ran.
    pub rounds: u32,
    pub sample_every_ms: u64,
    pub cores: usize,
    pub date: String,
    pub k6_version: String,
    pub elapsed_s: f64,
}

pub const REPORT: &str = "release-strategies.md";

impl Setup {
    /// A default of `platformctl rollout`, as its `--help` gave it.
    pub fn rollout_default(&self, flag: &str) -> Option<&str> {
        self.rollout_defaults
            .iter()
            .find(|(f, _)| f == flag)
            .map(|(_, value)| value.as_str())
    }

    /// The `--green-env` setting that makes green faulty.
    pub fn fault_setting(&self) -> String {
        format!("{}:FAULT_ERROR_RATE={}", self.plan.service, self.fault_rate)
    }

    /// A gate's limit as the rollouts got it: passed on the command line,
    /// or `platformctl`'s default.
    fn gate(&self, flag: &str, passed: Option<String>) -> String {
        match passed {
            Some(value) if !self.plan.rollout_defaults => value,
            _ => self.rollout_default(flag).unwrap_or("?").to_owned(),
        }
    }

    /// How the rollouts among `strategies` were judged, one sentence each.
    pub fn analysis(&self, strategies: &[Strategy]) -> Vec<String> {
        let mut lines = Vec::new();
        if strategies.iter().all(|s| s.is_switch()) {
            return lines;
        }
        let plan = &self.plan;
        lines.push(format!(
            "**Gates** of the rollouts{}: at least {} requests on green before a step is judged \
             by them; then green's error ratio at most {}, its p99 at most {} ms, and its error \
             ratio at most {}x blue's (+{} points); a step fails as soon as a gate does.",
            if plan.rollout_defaults {
                " (`platformctl rollout`'s defaults, from its `--help`)"
            } else {
                ""
            },
            self.gate("--min-requests", Some(plan.min_requests.to_string())),
            self.gate("--max-error-ratio", Some(plan.max_error_ratio.to_string())),
            self.gate("--max-p99-ms", None),
            self.gate("--max-relative-error", None),
            RELATIVE_SLACK * 100.0,
        ));
        let settings = Settings::default();
        let sequential: Vec<&str> = strategies
            .iter()
            .filter(|s| matches!(s, Strategy::Canary | Strategy::AllAtOnce))
            .map(|s| s.title())
            .collect();
        if !sequential.is_empty() {
            lines.push(format!(
                "**Judge** of {} (`--judge sequential`, the default): at every look (twice a \
                 second) sequential tests compare green's server errors, and its calls slower \
                 than blue's p90 before the step, with blue's over the same time at the step's \
                 split; a step fails as soon as green is worse, with at most {}% false alarms \
                 however often they look, before the gates' minimum of requests if the evidence \
                 is there; then the gates above.{}",
                list(&sequential),
                settings.alpha * 100.0,
                if sequential.contains(&Strategy::AllAtOnce.title()) {
                    " At 100% there is no split to compare, so all at once is judged by the \
                     gates alone."
                } else {
                    ""
                }
            ));
        }
        if strategies.contains(&Strategy::CanaryGates) {
            lines.push(format!(
                "**Judge** of {} (`--judge gates`, the judgement before the sequential tests): \
                 the gates alone.",
                Strategy::CanaryGates.title()
            ));
        }
        lines
    }
}

pub fn svg_name(strategy: Strategy) -> String {
    format!("release-{}.svg", strategy.slug())
}

pub fn timeline_name(strategy: Strategy) -> String {
    format!("release-{}-timeline.csv", strategy.slug())
}

/// Writes the report `name`, one SVG and one timeline per run into `dir`.
pub fn write(dir: &Path, name: &str, setup: &Setup, runs: &[Run]) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for run in runs {
        let data = PlotData::of(
            run,
            format!("Releasing a faulty orders: {}", run.strategy.title()),
        );
        let svg = dir.join(svg_name(run.strategy));
        plot::draw(&svg, &data).with_context(|| format!("cannot draw {}", svg.display()))?;
        let timeline = dir.join(timeline_name(run.strategy));
        std::fs::write(&timeline, timeline_csv(run))
            .with_context(|| format!("cannot write {}", timeline.display()))?;
    }
    let path = dir.join(name);
    std::fs::write(&path, markdown(setup, runs))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The gateway's view, one row per interval between samples.
pub fn timeline_csv(run: &Run) -> String {
    let mut csv = String::from(
        "t_s,green_weight,blue_requests_per_s,green_requests_per_s,blue_server_errors_per_s,green_server_errors_per_s\n",
    );
    for i in run.intervals(0) {
        let _ = writeln!(
            csv,
            "{:.3},{},{:.2},{:.2},{:.2},{:.2}",
            i.t, i.green_weight, i.blue_rps, i.green_rps, i.blue_errors_ps, i.green_errors_ps
        );
    }
    csv
}

/// `500: 3, 503: 4`.
fn statuses(f: &Figures) -> String {
    f.failed_by_status
        .iter()
        .map(|(status, n)| match status {
            0 => format!("no answer: {n}"),
            s => format!("{s}: {n}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `7 (500: 3, 503: 4)`.
fn with_statuses(f: &Figures) -> String {
    match statuses(f) {
        s if s.is_empty() => f.failed_after_release.to_string(),
        s => format!("{} ({s})", f.failed_after_release),
    }
}

fn secs(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |s| format!("{s:.1} s"))
}

fn percent(value: f64) -> String {
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

/// The platform bullet of a report's setup; `afresh_for`: what gets a fresh platform.
pub fn platform_line(setup: &Setup, afresh_for: &str) -> String {
    format!(
        "**Platform**: `platformctl up` (release build) on 127.0.0.1, started afresh for each \
         {afresh_for} (new data directory, routing state and counters). Blue runs version {}, \
         green version {} with `--green-env {}`: that share of the calls to green `{}` fails, \
         half with UNAVAILABLE and half with INTERNAL (HTTP 503 and 500 through the gateway).",
        setup.blue_version,
        setup.green_version,
        setup.fault_setting(),
        setup.plan.service
    )
}

/// The load bullet of a report's setup.
pub fn load_line(setup: &Setup) -> String {
    let mix = if setup.write_every == 0 {
        "every request lists orders (reads only)".to_owned()
    } else {
        format!(
            "every {}th request creates an order, the others list orders",
            setup.write_every
        )
    };
    format!(
        "**Load**: k6 `load/release.js`, a constant arrival rate of {} requests/s for {} s by {} \
         users signed up beforehand; {mix}. Every request's outcome comes from k6's CSV output \
         (`http_req_failed`).",
        setup.rate, setup.duration_s, setup.users
    )
}

pub fn markdown(setup: &Setup, runs: &[Run]) -> String {
    let figures: Vec<(Strategy, Figures)> =
        runs.iter().map(|r| (r.strategy, r.figures())).collect();
    let plan = &setup.plan;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Releasing a faulty version: {}\n",
        runs.iter()
            .map(|r| r.strategy.title())
            .collect::<Vec<_>>()
            .join(" · ")
    );
    let _ = writeln!(
        md,
        "The same faulty release of `orders` (green {} fails {} of its calls) under the same \
         user load, released {}. What users saw, how fast each strategy noticed and undid \
         it, and what it costs in spare capacity.\n",
        setup.green_version,
        percent(setup.fault_rate * 100.0),
        match runs.len() {
            1 => "with one strategy".to_owned(),
            n => format!("with {n} strategies"),
        }
    );
    let _ = writeln!(
        md,
        "Rerun (it builds the release binaries, then runs for about {} minutes; `--help` lists \
         the settings, and `--strategies` runs some of the strategies only):\n",
        (setup.elapsed_s / 60.0).ceil().max(1.0)
    );
    let _ = writeln!(md, "```sh\n{}\n```\n", setup.command);

    let _ = writeln!(md, "## Setup\n");
    let _ = writeln!(md, "- {}", platform_line(setup, "strategy"));
    let _ = writeln!(md, "- {}", load_line(setup));
    let _ = writeln!(
        md,
        "- **Release** at {} s into the load, with `platformctl` as an operator types it:",
        setup.release_at_s
    );
    for run in runs {
        let _ = writeln!(
            md,
            "  - {}: `platformctl {}`{}",
            run.strategy.title(),
            plan.release_args(run.strategy).join(" "),
            if run.strategy.is_switch() {
                format!(
                    "; then an alert checked every {} ms (green has at least {} server errors \
                     in the last minute at an error ratio above {}) makes the operator run \
                     `platformctl rollback {}`",
                    setup.sample_every_ms,
                    plan.alert_min_errors,
                    plan.alert_max_ratio,
                    plan.service
                )
            } else {
                String::new()
            }
        );
    }
    let strategies: Vec<Strategy> = runs.iter().map(|r| r.strategy).collect();
    for line in setup.analysis(&strategies) {
        let _ = writeln!(md, "- {line}");
    }
    let _ = writeln!(
        md,
        "- **Observed**: the gateway's `/admin/status` and `/admin/stats` every {} ms (weights, \
         and cumulative calls and server errors per color, whose differences give the rates; \
         `release-<strategy>-timeline.csv` beside this report).",
        setup.sample_every_ms
    );
    let _ = writeln!(
        md,
        "- **Machine**: {} cores (`nproc`), {}; {}, the load generator and all nine processes \
         share them.\n",
        setup.cores, setup.date, setup.k6_version
    );

    let _ = writeln!(md, "## Results\n");
    let _ = writeln!(
        md,
        "| strategy | outcome | user requests | failed | failed after the release | time to \
         detect | time to recover | release to rollback | peak green weight | peak share \
         green served | green calls (server errors) | extra capacity |"
    );
    let _ = writeln!(md, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for (strategy, f) in &figures {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {}% | {:.0}% | {} ({}) | {}% |",
            strategy.title(),
            f.outcome,
            f.requests,
            f.failed,
            with_statuses(f),
            secs(f.detect_s),
            secs(f.recover_s),
            secs(f.exposure_s),
            f.peak_weight,
            f.peak_share,
            f.green.requests,
            f.green.server_errors,
            f.extra_capacity
        );
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "What the columns mean:\n");
    let _ = writeln!(
        md,
        "- *failed*: user requests k6 counted as failed (`http_req_failed`: a 4xx/5xx status \
         or no answer), over the whole run and from the release on."
    );
    let _ = writeln!(
        md,
        "- *time to detect*: from the first failed user request after the release to the \
         moment green's weight was back at 0 (the first sample that saw it, or the end of the \
         command that did it if earlier); – when no user request failed before that, or when \
         nothing was rolled back."
    );
    let _ = writeln!(
        md,
        "- *time to recover*: from that rollback to the last failed user request (0 when none \
         failed after it)."
    );
    let _ = writeln!(
        md,
        "- *peak share green served*: the largest share of `orders` calls green answered in \
         any interval of about 1 s, from the gateway's counters; *green calls*: live calls \
         green answered over the run, and how many were server errors, as the gateway counted \
         them."
    );
    if runs.iter().any(|r| r.strategy.is_switch()) {
        let _ = writeln!(
            md,
            "- A switch's smoke check sends its own requests to green through the gateway; they \
             count in *green calls* and *peak share green served* but are not user requests."
        );
    }
    let _ = writeln!(
        md,
        "- *extra capacity*: what the release needs beside the running version, in percent of \
         the service: blue/green keeps a whole second copy (100%), a canary needs what its \
         largest step reached, all-at-once replaces in place (0%)."
    );
    if runs.iter().any(|r| r.strategy == Strategy::AllAtOnce) {
        let _ = writeln!(
            md,
            "- *all at once* here moves every request to a green copy that is already running, so \
             its rollback is a weight change. A real in-place replacement has no old copy left: \
             recovering means redeploying the old version, which this local run does not include, \
             so its time to recover here is a lower bound."
        );
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## What the numbers say\n");
    for line in interpretation(&figures) {
        let _ = writeln!(md, "- {line}");
    }
    let _ = writeln!(md);

    let _ = writeln!(md, "## Plots\n");
    let _ = writeln!(
        md,
        "Top: failed user requests per second, in percent. Bottom: green's weight and the \
         share of calls it served. Dashed: the release and the rollback.\n"
    );
    for run in runs {
        let _ = writeln!(md, "### {}\n", run.strategy.title());
        let _ = writeln!(
            md,
            "![{}]({})\n",
            run.strategy.title(),
            svg_name(run.strategy)
        );
    }

    let _ = writeln!(md, "## The commands and what they printed\n");
    for run in runs {
        let _ = writeln!(md, "### {}\n", run.strategy.title());
        for command in &run.release.commands {
            let at = run.seconds(command.started_ms);
            let took = (command.ended_ms - command.started_ms) as f64 / 1000.0;
            let _ = writeln!(
                md,
                "`{}` at {:.1} s, {:.1} s, exit code {}:\n",
                command.shown(),
                at,
                took,
                command
                    .exit_code
                    .map_or_else(|| "none (killed)".to_owned(), |c| c.to_string())
            );
            let _ = writeln!(
                md,
                "```text\n{}\n```\n",
                clipped(&format!("{}{}", command.stdout, command.stderr), 40)
            );
        }
        if let Some(alert) = run.release.alert_ms {
            let _ = writeln!(
                md,
                "The operator's alert fired at {:.1} s.\n",
                run.seconds(alert)
            );
        }
    }
    md
}

/// At most `lines` lines, with a note of what was left out.
pub fn clipped(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.trim_end().lines().collect();
    if all.is_empty() {
        return "(no output)".into();
    }
    if all.len() <= lines {
        return all.join("\n");
    }
    format!(
        "{}\n... ({} more lines)",
        all[..lines].join("\n"),
        all.len() - lines
    )
}

pub fn list(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Sentences drawn from the figures.
pub fn interpretation(figures: &[(Strategy, Figures)]) -> Vec<String> {
    let mut lines = Vec::new();
    if figures.is_empty() {
        return lines;
    }
    let mut by_failures: Vec<&(Strategy, Figures)> = figures.iter().collect();
    by_failures.sort_by_key(|(_, f)| f.failed_after_release);
    let fewest = by_failures[0].1.failed_after_release;
    let best: Vec<&str> = by_failures
        .iter()
        .filter(|(_, f)| f.failed_after_release == fewest)
        .map(|(s, _)| s.title())
        .collect();
    let ranking = by_failures
        .iter()
        .map(|(s, f)| format!("{} {}", s.title(), f.failed_after_release))
        .collect::<Vec<_>>()
        .join(", ");
    if figures.len() == 1 {
        lines.push(format!("Failed user requests after the release: {fewest}."));
    } else {
        lines.push(format!(
            "Fewest failed user requests after the release: {} ({fewest}); in order: {ranking}.",
            list(&best)
        ));
    }
    if let (Some((worst_s, worst)), true) = (by_failures.last(), by_failures.len() > 1)
        && worst.failed_after_release > 0
        && worst.failed_after_release > fewest
    {
        let share = 100.0 * fewest as f64 / worst.failed_after_release as f64;
        lines.push(format!(
            "{} cost users {} failed requests; {} {}.",
            capitalized(worst_s.title()),
            worst.failed_after_release,
            list(&best),
            if fewest == 0 {
                "none".to_owned()
            } else {
                format!("{} of that", percent((share * 10.0).round() / 10.0))
            }
        ));
    }
    let noise: Vec<String> = figures
        .iter()
        .filter(|(_, f)| f.failed_after_release > 0)
        .map(|(s, f)| {
            format!(
                "{} ±{:.1}",
                s.title(),
                (f.failed_after_release as f64).sqrt()
            )
        })
        .collect();
    if !noise.is_empty() && figures.len() > 1 {
        lines.push(format!(
            "Counts this small move between runs: counting noise alone is about ±√n ({}), so \
             differences within that are not a ranking.",
            noise.join(", ")
        ));
    }
    let mut detected: Vec<&(Strategy, Figures)> = figures
        .iter()
        .filter(|(_, f)| f.exposure_s.is_some())
        .collect();
    detected.sort_by(|a, b| {
        a.1.exposure_s
            .unwrap_or(f64::MAX)
            .total_cmp(&b.1.exposure_s.unwrap_or(f64::MAX))
    });
    if let Some((fastest, f)) = detected.first() {
        let others = detected[1..]
            .iter()
            .map(|(s, f)| format!("{} {}", s.title(), secs(f.exposure_s)))
            .collect::<Vec<_>>();
        lines.push(format!(
            "Quickest from release to rollback: {} ({}{}){}.",
            fastest.title(),
            secs(f.exposure_s),
            f.detect_s
                .map(|d| format!(", {} after the first failed user request", secs(Some(d))))
                .unwrap_or_default(),
            if others.is_empty() {
                String::new()
            } else {
                format!("; then {}", others.join(", "))
            }
        ));
    }
    for (strategy, f) in figures {
        if f.peak_weight == 0 {
            lines.push(format!(
                "{}: {}. Users saw {} failed requests after the release; the price is {}% extra \
                 capacity for a second copy that was checked and never served them.",
                capitalized(strategy.title()),
                f.outcome,
                f.failed_after_release,
                f.extra_capacity
            ));
        } else if f.rollback_s.is_none() {
            lines.push(format!(
                "{}: the fault was not caught during the run ({}); green kept {}% of the traffic \
                 and users saw {} failed requests after the release.",
                capitalized(strategy.title()),
                f.outcome,
                f.peak_weight,
                f.failed_after_release
            ));
        }
    }
    let capacity = figures
        .iter()
        .map(|(s, f)| format!("{} {}%", s.title(), f.extra_capacity))
        .collect::<Vec<_>>()
        .join(", ");
    lines.push(format!(
        "Extra capacity needed during the release: {capacity}."
    ));
    let mut judged = Vec::new();
    for (strategy, f) in figures {
        if strategy.is_switch() || f.exposure_s.is_none() {
            continue;
        }
        let exposure = f.exposure_s.unwrap_or(0.0);
        let per_second = if exposure > 0.0 {
            f.failed_after_release as f64 / exposure
        } else {
            0.0
        };
        lines.push(format!(
            "{}: the analysis decided after green had served {} calls, {} at {}% of the \
             traffic; {} failed user requests, {:.1} per second of exposure.",
            capitalized(strategy.title()),
            f.green.requests,
            secs(f.exposure_s),
            f.peak_weight,
            f.failed_after_release,
            per_second
        ));
        judged.push((*strategy, f, exposure, per_second));
    }
    let all_at_once = judged.iter().find(|j| j.0 == Strategy::AllAtOnce);
    for canary in judged.iter().filter(|j| j.0.is_canary()) {
        let Some(all) = all_at_once else { break };
        if all.2 <= 0.0 || canary.3 <= 0.0 {
            continue;
        }
        let (all_failed, canary_failed) =
            (all.1.failed_after_release, canary.1.failed_after_release);
        let reading = if within_noise(all_failed, canary_failed) {
            format!(
                "{}the small step spread the failures over a longer time more than it avoided \
                 them.",
                if canary.0 == Strategy::CanaryGates {
                    "The gates wait for a number of requests, so about that many reached the \
                     faulty version either way: "
                } else {
                    "About as many failed either way (within counting noise): "
                }
            )
        } else {
            format!(
                "The small step kept the failures to {} of all at once's.",
                percent((1000.0 * canary_failed as f64 / all_failed.max(1) as f64).round() / 10.0)
            )
        };
        lines.push(format!(
            "{} against all at once: its {}% step took {:.1}x as long to give the analysis its \
             calls ({} against {} green calls); failures per second of exposure: {:.1} against \
             {:.1}; failed requests in all: {} against {}. {reading}",
            capitalized(canary.0.title()),
            canary.1.peak_weight,
            canary.2 / all.2,
            canary.1.green.requests,
            all.1.green.requests,
            canary.3,
            all.3,
            canary_failed,
            all_failed
        ));
    }
    if let (Some(test), Some(gates)) = (
        judged.iter().find(|j| j.0 == Strategy::Canary),
        judged.iter().find(|j| j.0 == Strategy::CanaryGates),
    ) {
        let (test_failed, gates_failed) =
            (test.1.failed_after_release, gates.1.failed_after_release);
        let reading = if within_noise(test_failed, gates_failed) {
            "Within counting noise of each other: one run of each does not rank the judges \
             (`--repeat` runs each many times)."
                .to_owned()
        } else if test_failed < gates_failed {
            format!(
                "The sequential test cost users {} of the gates' failed requests.",
                percent((1000.0 * test_failed as f64 / gates_failed.max(1) as f64).round() / 10.0)
            )
        } else {
            "The sequential test cost users more failed requests than the gates.".to_owned()
        };
        let judged_by = |j: &(Strategy, &Figures, f64, f64)| {
            format!(
                "rolled back {} after the release, after {} green calls ({}), with {} failed \
                 user requests",
                secs(j.1.exposure_s),
                j.1.green.requests,
                plural(j.1.green.server_errors, "server error"),
                j.1.failed_after_release
            )
        };
        lines.push(format!(
            "The same steps, two judges: the canary judged by the sequential test {}; judged \
             by the gates alone, {}. {reading}",
            judged_by(test),
            judged_by(gates)
        ));
    }
    for (strategy, f) in figures {
        // Without user failures, green's errors can only be a smoke check's own requests.
        if f.failed_after_release == 0 {
            continue;
        }
        let gap = f
            .failed_after_release
            .saturating_sub(f.green.server_errors as usize);
        lines.push(format!(
            "{}: users saw {} failed requests after the release{}; the gateway's counters, \
             which the rollout's analysis and the operator's alert read, hold {} from green{}.",
            capitalized(strategy.title()),
            f.failed_after_release,
            match statuses(f) {
                s if s.is_empty() => s,
                s => format!(" ({s})"),
            },
            plural(f.green.server_errors, "server error"),
            if gap > 0 {
                format!(
                    ": {gap} of the failures users saw {} missing there",
                    if gap == 1 { "is" } else { "are" }
                )
            } else {
                String::new()
            }
        ));
    }
    lines
}

/// Two counts within counting noise (±√n) of each other.
fn within_noise(a: usize, b: usize) -> bool {
    a.abs_diff(b) as f64 <= ((a + b) as f64).sqrt()
}

fn plural(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

pub fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
pub mod tests {

    use super::*;
    use crate::figures::tests::synthetic;

    pub fn setup() -> Setup {
        Setup {
            command: "bash load/experiment.sh".into(),
            rate: 60,
            duration_s: 70,
            release_at_s: 15,
            users: 10,
            write_every: 10,
            fault_rate: 0.2,
            blue_version: "1.0.0".into(),
            green_version: "1.1.0-faulty".into(),
            plan: Plan::sample(),
            rollout_defaults: [
                ("--steps", "5,25,50,100"),
                ("--interval", "30s"),
                ("--max-error-ratio", "0.01"),
                ("--max-p99-ms", "500"),
                ("--max-relative-error", "2"),
                ("--min-requests", "50"),
                ("--judge", "sequential"),
            ]
            .iter()
            .map(|(flag, value)| ((*flag).to_owned(), (*value).to_owned()))
            .collect(),
            rounds: 1,
            sample_every_ms: 250,
            cores: 2,
            date: "2026-01-02 03:04 UTC".into(),
            k6_version: "k6 v1.1.0".into(),
            elapsed_s: 250.0,
        }
    }

    fn runs() -> Vec<Run> {
        let canary = synthetic(Strategy::Canary);
        let mut all = synthetic(Strategy::AllAtOnce);
        // Twice the failures, a slower rollback.
        for o in all.outcomes.iter_mut() {
            let t = (o.at_ms - canary.origin_ms()) / 100;
            if (150..240).contains(&t) && t % 10 == 5 {
                o.failed = true;
                o.status = 500;
            }
        }
        all.release.commands[0].ended_ms += 2000;
        for s in all.samples.iter_mut() {
            let t = (s.at_ms - canary.origin_ms()) as f64 / 1000.0;
            if (15.25..24.25).contains(&t) {
                s.green_weight = 100;
            }
        }
        let mut blue_green = synthetic(Strategy::BlueGreen);
        blue_green
            .outcomes
            .iter_mut()
            .for_each(|o| o.failed = false);
        blue_green.samples.iter_mut().for_each(|s| {
            s.green_weight = 0;
            s.green_total = crate::sample::Counts::default();
        });
        blue_green.release.commands[0].exit_code = Some(5);
        vec![all, blue_green, canary]
    }

    #[test]
    fn the_report_is_written_from_the_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runs = runs();
        let path = write(dir.path(), REPORT, &setup(), &runs).expect("writes");
        let md = std::fs::read_to_string(&path).expect("report");
        for strategy in runs.iter().map(|r| r.strategy) {
            let svg = dir.path().join(svg_name(strategy));
            assert!(
                std::fs::read_to_string(&svg)
                    .expect("svg")
                    .starts_with("<svg")
            );
            assert!(
                md.contains(&format!("({})", svg_name(strategy))),
                "{strategy:?} plot linked"
            );
            let timeline = std::fs::read_to_string(dir.path().join(timeline_name(strategy)))
                .expect("timeline");
            assert!(timeline.lines().count() > 100, "{strategy:?} timeline");
        }
        for text in [
            "```sh\nbash load/experiment.sh\n```",
            "constant arrival rate of 60 requests/s for 70 s",
            "`platformctl rollout orders --to green --steps 5,25,50,100 --interval 10s --min-requests 20 --max-error-ratio 0.02`",
            "`platformctl switch orders --to green`; then an alert",
            "2 cores (`nproc`), 2026-01-02 03:04 UTC",
            "| canary | the rollout's analysis failed and rolled back (exit 6) | 401 | 5 | 5 (503: 5) | 6.8 s | 0.3 s | 7.1 s | 25% | 33% | 28 (5) | 25% |",
            "| blue/green | switch refused by its smoke check (exit 5): green never took user traffic | 401 | 0 | 0 | – | – | – | 0% | 0% |",
            "Fewest failed user requests after the release: blue/green (0); in order: blue/green 0, canary 5,",
            "Quickest from release to rollback: canary (7.1 s, 6.8 s after the first failed user request); then all at once 9.1 s.",
            "Blue/green: switch refused by its smoke check (exit 5): green never took user traffic. Users saw 0 failed requests",
            "All at once cost users 14 failed requests; blue/green none.",
            "Extra capacity needed during the release: all at once 0%, blue/green 100%, canary 25%.",
            "step 1 (25%): error ratio 0.20 above 0.02; rolled back",
            "redeploy",
            "then runs for about 5 minutes; `--help`",
            "counting noise alone is about ±√n (all at once ±3.7, canary ±2.2)",
            "A switch's smoke check sends its own requests to green",
            "or the end of the command that did it",
            "Canary: the analysis decided after green had served 28 calls, 7.1 s at 25% of the traffic; 5 failed user requests, 0.7 per second of exposure.",
            "Canary against all at once: its 25% step took 0.8x as long to give the analysis its calls (28 against 28 green calls); failures per second of exposure: 0.7 against 1.5; failed requests in all: 5 against 14. The small step kept the failures to 35.7% of all at once's.",
            "`--green-env orders:FAULT_ERROR_RATE=0.2`: that share of the calls to green `orders` fails",
            "**Gates** of the rollouts: at least 20 requests on green before a step is judged by them; then green's error ratio at most 0.02, its p99 at most 500 ms, and its error ratio at most 2x blue's (+0.5 points)",
            "**Judge** of all at once and canary (`--judge sequential`, the default): at every look",
            "with at most 1% false alarms however often they look",
            "At 100% there is no split to compare, so all at once is judged by the gates alone.",
            "All at once: users saw 14 failed requests after the release (500: 9, 503: 5); the gateway's counters, which the rollout's analysis and the operator's alert read, hold 5 server errors from green: 9 of the failures users saw are missing there.",
        ] {
            assert!(md.contains(text), "missing {text:?} in:\n{md}");
        }
    }

    #[test]
    fn interpretation_follows_the_numbers() {
        let mut figures: Vec<(Strategy, Figures)> =
            runs().iter().map(|r| (r.strategy, r.figures())).collect();
        let lines = interpretation(&figures);
        assert!(
            lines[0].starts_with("Fewest failed user requests after the release: blue/green (0)"),
            "{lines:?}"
        );
        // Make the canary the only one without failures: the text follows.
        figures[1].1.failed_after_release = 9;
        figures[2].1.failed_after_release = 0;
        let lines = interpretation(&figures);
        assert!(lines[0].contains(": canary (0)"), "{lines:?}");
        assert!(lines[1].contains("cost users"), "{lines:?}");
        let alone = interpretation(&figures[2..]);
        assert_eq!(alone[0], "Failed user requests after the release: 0.");
        // Close totals: the failures were spread out, not avoided.
        figures[0].1.failed_after_release = 7;
        figures[2].1.failed_after_release = 5;
        let lines = interpretation(&figures);
        assert!(
            lines.iter().any(|l| l.contains("spread the failures")),
            "{lines:?}"
        );
    }

    #[test]
    fn the_two_canaries_are_compared() {
        let runs = [
            synthetic(Strategy::Canary),
            synthetic(Strategy::CanaryGates),
        ];
        let mut figures: Vec<(Strategy, Figures)> =
            runs.iter().map(|r| (r.strategy, r.figures())).collect();
        figures[1].1.failed_after_release = 20;
        let lines = interpretation(&figures);
        let line = lines
            .iter()
            .find(|l| l.starts_with("The same steps, two judges"))
            .expect("compared");
        assert_eq!(
            line,
            "The same steps, two judges: the canary judged by the sequential test rolled back \
             7.1 s after the release, after 28 green calls (5 server errors), with 5 failed user \
             requests; judged by the gates alone, rolled back 7.1 s after the release, after 28 \
             green calls (5 server errors), with 20 failed user requests. The sequential test \
             cost users 25% of the gates' failed requests."
        );
        figures[1].1.failed_after_release = 7;
        let lines = interpretation(&figures);
        assert!(
            lines
                .iter()
                .any(|l| l.contains("one run of each does not rank the judges")),
            "{lines:?}"
        );
        let mut setup = setup();
        setup.plan.rollout_defaults = true;
        let analysis = setup.analysis(&[Strategy::Canary, Strategy::CanaryGates]);
        assert!(
            analysis[0].starts_with(
                "**Gates** of the rollouts (`platformctl rollout`'s defaults, from its `--help`): \
                 at least 50 requests on green before a step is judged by them; then green's \
                 error ratio at most 0.01, its p99 at most 500 ms"
            ),
            "{analysis:?}"
        );
        assert!(analysis[1].starts_with("**Judge** of canary (`--judge sequential`"));
        assert!(!analysis[1].contains("At 100%"));
        assert!(analysis[2].starts_with("**Judge** of canary, gates only (`--judge gates`"));
        assert!(setup.analysis(&[Strategy::BlueGreen]).is_empty());
    }

    #[test]
    fn helpers() {
        assert_eq!(percent(20.0), "20%");
        assert_eq!(percent(2.5), "2.5%");
        assert_eq!(list(&["a", "b", "c"]), "a, b and c");
        assert_eq!(plural(1, "server error"), "1 server error");
        assert_eq!(plural(5, "server error"), "5 server errors");
        assert_eq!(clipped("1\n2\n3\n", 2), "1\n2\n... (1 more lines)");
        assert_eq!(clipped("", 2), "(no output)");
    }
}
