//! The ways to release green, each done with the operator's own tool
//! (`platformctl`) as a child process, exactly as a person would type it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::Command;
use tokio::sync::watch;

use crate::sample::Sample;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// Every request to green at once; the rollout's analysis rolls back.
    AllAtOnce,
    /// A smoke-checked switch of all traffic; an alert makes the operator roll back.
    BlueGreen,
    /// Traffic moves 5, 25, 50, 100%, judged at every step by the sequential
    /// tests against blue, then the gates (`rollout`'s default judge).
    Canary,
    /// The same canary judged by the gates alone (`--judge gates`): wait for
    /// enough requests, then absolute and relative limits.
    CanaryGates,
    /// Blue/green with `--skip-smoke`: what the switch costs when the smoke
    /// check does not catch the fault.
    BlueGreenUnchecked,
}

impl Strategy {
    pub fn title(self) -> &'static str {
        match self {
            Strategy::AllAtOnce => "all at once",
            Strategy::BlueGreen => "blue/green",
            Strategy::Canary => "canary",
            Strategy::CanaryGates => "canary, gates only",
            Strategy::BlueGreenUnchecked => "blue/green, smoke check skipped",
        }
    }

    /// A switch followed by the operator's alert, not a rollout.
    pub fn is_switch(self) -> bool {
        matches!(self, Strategy::BlueGreen | Strategy::BlueGreenUnchecked)
    }

    /// A canary, whichever its judge.
    pub fn is_canary(self) -> bool {
        matches!(self, Strategy::Canary | Strategy::CanaryGates)
    }

    /// File-name friendly.
    pub fn slug(self) -> &'static str {
        match self {
            Strategy::AllAtOnce => "all-at-once",
            Strategy::BlueGreen => "blue-green",
            Strategy::Canary => "canary",
            Strategy::CanaryGates => "canary-gates",
            Strategy::BlueGreenUnchecked => "blue-green-unchecked",
        }
    }

    /// Capacity needed beside the running version, in percent of the
    /// service's: blue/green keeps a whole second copy, a canary needs what
    /// its largest step sends to the new version, all-at-once replaces in place.
    pub fn extra_capacity_percent(self, peak_weight: u32) -> u32 {
        match self {
            Strategy::AllAtOnce => 0,
            Strategy::BlueGreen | Strategy::BlueGreenUnchecked => 100,
            Strategy::Canary | Strategy::CanaryGates => peak_weight,
        }
    }
}

/// The rollout analysis gates and the operator's alert rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub service: String,
    /// The rollouts take `platformctl rollout`'s own steps, interval and
    /// gates: only what makes the strategy is given (all at once's single
    /// step, the gates-only judge), so the fields below up to the alert
    /// are not passed.
    pub rollout_defaults: bool,
    pub min_requests: u64,
    pub max_error_ratio: f64,
    /// Blue/green: the alert fires on at least this many green server
    /// errors in the last minute ...
    pub alert_min_errors: u64,
    /// ... at an error ratio above this.
    pub alert_max_ratio: f64,
    pub canary_steps: Vec<u32>,
    pub canary_interval: Duration,
    pub all_at_once_interval: Duration,
}

impl Plan {
    /// The `platformctl` arguments that release green with `strategy`.
    pub fn release_args(&self, strategy: Strategy) -> Vec<String> {
        let rollout = |steps: String, interval: Duration| {
            let mut args = vec![
                "rollout".to_owned(),
                self.service.clone(),
                "--to".into(),
                "green".into(),
            ];
            if !self.rollout_defaults {
                args.extend([
                    "--steps".into(),
                    steps,
                    "--interval".into(),
                    format!("{}s", interval.as_secs()),
                    "--min-requests".into(),
                    self.min_requests.to_string(),
                    "--max-error-ratio".into(),
                    self.max_error_ratio.to_string(),
                ]);
            } else if strategy == Strategy::AllAtOnce {
                args.extend(["--steps".into(), steps]);
            }
            if strategy == Strategy::CanaryGates {
                args.extend(["--judge".into(), "gates".into()]);
            }
            args
        };
        let canary_steps = || {
            self.canary_steps
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        match strategy {
            Strategy::AllAtOnce => rollout("100".into(), self.all_at_once_interval),
            Strategy::Canary | Strategy::CanaryGates => {
                rollout(canary_steps(), self.canary_interval)
            }
            Strategy::BlueGreen => vec![
                "switch".into(),
                self.service.clone(),
                "--to".into(),
                "green".into(),
            ],
            Strategy::BlueGreenUnchecked => vec![
                "switch".into(),
                self.service.clone(),
                "--to".into(),
                "green".into(),
                "--skip-smoke".into(),
            ],
        }
    }

    /// The operator's alert after a switch: green fails too often.
    pub fn alert(&self, sample: &Sample) -> bool {
        let minute = sample.green_last_minute;
        minute.server_errors >= self.alert_min_errors && minute.error_ratio() > self.alert_max_ratio
    }
}

/// `platformctl` pointed at one running platform.
#[derive(Debug, Clone)]
pub struct Cli {
    pub program: PathBuf,
    pub admin_url: String,
    pub gateway_url: String,
    pub data_dir: PathBuf,
}

/// One finished `platformctl` command.
#[derive(Debug, Clone, PartialEq)]
pub struct CliRun {
    pub args: Vec<String>,
    pub started_ms: i64,
    pub ended_ms: i64,
    /// None when it was killed.
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    /// The command line as typed, without the connection flags.
    pub fn shown(&self) -> String {
        format!("platformctl {}", self.args.join(" "))
    }
}

/// Exit codes of `platformctl` that report a release's outcome rather than
/// a failure to run it (see `platformctl --help`).
pub const SWITCH_REFUSED: i32 = 5;
pub const ROLLED_BACK: i32 = 6;
pub const ENDED_OTHERWISE: i32 = 7;

impl Cli {
    pub async fn run(&self, args: &[String], timeout: Duration) -> anyhow::Result<CliRun> {
        let started_ms = now_ms();
        // The connection flags belong to each subcommand, so they follow its name.
        let (command, rest) = args.split_first().context("no platformctl command")?;
        let child = Command::new(&self.program)
            .arg(command)
            .arg("--admin-url")
            .arg(&self.admin_url)
            .arg("--gateway-url")
            .arg(&self.gateway_url)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(rest)
            .env_remove("ADMIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", self.program.display()))?;
        let output = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "platformctl {} did not finish within {} s",
                    args.join(" "),
                    timeout.as_secs()
                )
            })??;
        let run = CliRun {
            args: args.to_vec(),
            started_ms,
            ended_ms: now_ms(),
            exit_code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        if let Some(code) = run.exit_code
            && code != 0
            && code != SWITCH_REFUSED
            && code != ROLLED_BACK
            && code != ENDED_OTHERWISE
        {
            bail!(
                "{} failed with exit code {code}:\n{}{}",
                run.shown(),
                run.stdout,
                run.stderr
            );
        }
        Ok(run)
    }
}

/// What one release did.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub strategy: Strategy,
    pub started_ms: i64,
    /// Every command run, in order.
    pub commands: Vec<CliRun>,
    /// When the operator's alert fired (blue/green).
    pub alert_ms: Option<i64>,
}

impl Release {
    /// A sentence on how the release ended.
    pub fn outcome(&self) -> String {
        let Some(first) = self.commands.first() else {
            return "nothing was run".into();
        };
        let switch = self.strategy.is_switch();
        match first.exit_code {
            Some(SWITCH_REFUSED) if switch => {
                "switch refused by its smoke check (exit 5): green never took user traffic".into()
            }
            Some(0) if switch && self.commands.len() > 1 => {
                "switched (exit 0); the error alert fired and the operator rolled back".into()
            }
            Some(0) if switch => {
                "switched (exit 0); the alert never fired, green kept all traffic".into()
            }
            Some(ROLLED_BACK) => "the rollout's analysis failed and rolled back (exit 6)".into(),
            Some(ENDED_OTHERWISE) => "the rollout ended without completing (exit 7)".into(),
            Some(0) => "the rollout completed (exit 0): green kept all traffic".into(),
            Some(code) => format!("exit code {code}"),
            None => "killed".into(),
        }
    }
}

/// Releases green with `strategy` now; for blue/green, then plays the
/// operator until `watch_until`: rolls back when the alert fires.
pub async fn release(
    strategy: Strategy,
    plan: &Plan,
    cli: &Cli,
    mut latest: watch::Receiver<Option<Sample>>,
    watch_until: Instant,
) -> anyhow::Result<Release> {
    let started_ms = now_ms();
    let limit = watch_until
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(30))
        + Duration::from_secs(60);
    let first = cli.run(&plan.release_args(strategy), limit).await?;
    let switched = strategy.is_switch() && first.exit_code == Some(0);
    let mut release = Release {
        strategy,
        started_ms,
        commands: vec![first],
        alert_ms: None,
    };
    if !switched {
        return Ok(release);
    }
    // The switch ran first, so the alert may only look at samples taken after it.
    let switched_ms = release.commands[0].ended_ms;
    let deadline = tokio::time::Instant::from_std(watch_until);
    loop {
        let fired = latest
            .borrow_and_update()
            .as_ref()
            .is_some_and(|s| s.at_ms >= switched_ms && plan.alert(s));
        if fired {
            release.alert_ms = Some(now_ms());
            let rollback = vec!["rollback".to_owned(), plan.service.clone()];
            release
                .commands
                .push(cli.run(&rollback, Duration::from_secs(30)).await?);
            return Ok(release);
        }
        tokio::select! {
            changed = latest.changed() => {
                if changed.is_err() {
                    bail!("sampling stopped while watching the switch");
                }
            }
            _ = tokio::time::sleep_until(deadline) => return Ok(release),
        }
    }
}

/// `(flag, default)` for every long option of a clap help text that shows
/// a default (`--interval <INTERVAL>  How long ... [default: 30s]`, the
/// default possibly on a later line of the same option).
pub fn help_defaults(help: &str) -> Vec<(String, String)> {
    const MARK: &str = "[default: ";
    let mut found = Vec::new();
    let mut flag: Option<String> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('-') {
            flag = trimmed
                .split([' ', ','])
                .find(|word| word.starts_with("--"))
                .map(|word| word.split('=').next().unwrap_or(word).to_owned());
        }
        if let (Some(name), Some(at)) = (&flag, line.find(MARK)) {
            let value = &line[at + MARK.len()..];
            if let Some(end) = value.find(']') {
                found.push((name.clone(), value[..end].to_owned()));
                flag = None;
            }
        }
    }
    found
}

/// Unix milliseconds on this machine's clock (the gateway's and k6's too).
pub use platform_runtime::time::now_ms;

#[cfg(test)]
impl Plan {
    /// The plan of the committed report, for tests.
    pub fn sample() -> Plan {
        Plan {
            service: "orders".into(),
            rollout_defaults: false,
            min_requests: 20,
            max_error_ratio: 0.02,
            alert_min_errors: 5,
            alert_max_ratio: 0.02,
            canary_steps: vec![5, 25, 50, 100],
            canary_interval: Duration::from_secs(10),
            all_at_once_interval: Duration::from_secs(20),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::Counts;

    fn plan() -> Plan {
        Plan::sample()
    }

    #[test]
    fn commands_per_strategy() {
        let plan = plan();
        assert_eq!(
            plan.release_args(Strategy::Canary).join(" "),
            "rollout orders --to green --steps 5,25,50,100 --interval 10s --min-requests 20 --max-error-ratio 0.02"
        );
        assert_eq!(
            plan.release_args(Strategy::CanaryGates).join(" "),
            "rollout orders --to green --steps 5,25,50,100 --interval 10s --min-requests 20 --max-error-ratio 0.02 --judge gates"
        );
        assert_eq!(
            plan.release_args(Strategy::AllAtOnce).join(" "),
            "rollout orders --to green --steps 100 --interval 20s --min-requests 20 --max-error-ratio 0.02"
        );
        assert_eq!(
            plan.release_args(Strategy::BlueGreen).join(" "),
            "switch orders --to green"
        );
        assert_eq!(
            plan.release_args(Strategy::BlueGreenUnchecked).join(" "),
            "switch orders --to green --skip-smoke"
        );
    }

    #[test]
    fn commands_with_the_rollout_defaults() {
        let plan = Plan {
            rollout_defaults: true,
            ..plan()
        };
        let check = |strategy, expect: &str| {
            assert_eq!(
                plan.release_args(strategy).join(" "),
                expect,
                "{strategy:?}"
            );
        };
        check(Strategy::Canary, "rollout orders --to green");
        check(
            Strategy::CanaryGates,
            "rollout orders --to green --judge gates",
        );
        check(Strategy::AllAtOnce, "rollout orders --to green --steps 100");
        check(Strategy::BlueGreen, "switch orders --to green");
    }

    #[test]
    fn alert_needs_enough_errors_at_a_high_ratio() {
        let plan = plan();
        let check = |requests, server_errors, expect| {
            let sample = Sample {
                at_ms: 0,
                green_weight: 100,
                rollout: false,
                blue_total: Counts::default(),
                green_total: Counts::default(),
                green_last_minute: Counts {
                    requests,
                    server_errors,
                },
            };
            assert_eq!(plan.alert(&sample), expect, "{requests} {server_errors}");
        };
        check(0, 0, false);
        check(10, 4, false);
        check(25, 5, true);
        check(1000, 5, false);
        check(1000, 21, true);
    }

    #[test]
    fn defaults_from_the_help() {
        let short = "Usage: platformctl rollout [OPTIONS] --to <TO> <SERVICE>

Options:
      --steps <STEPS>                    The target's share at each step [default: 5,25,50,100]
      --judge <JUDGE>                    sequential: ... [default: sequential] [possible values: sequential, gates]
  -h, --help                             Print help
";
        let long = "Options:
      --interval <INTERVAL>
          How long each step lasts before it is judged (30s, 2m, 500ms)

          [default: 30s]

      --mirror <MIRROR>
          First copy this share of reads to the target

      --min-requests <MIN_REQUESTS>
          Requests the target must serve before a step is judged
          
          [default: 50]
";
        let pairs = |help| {
            help_defaults(help)
                .into_iter()
                .map(|(f, v)| format!("{f}={v}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            pairs(short),
            vec!["--steps=5,25,50,100", "--judge=sequential"]
        );
        assert_eq!(pairs(long), vec!["--interval=30s", "--min-requests=50"]);
    }

    #[test]
    fn capacity() {
        assert_eq!(Strategy::AllAtOnce.extra_capacity_percent(100), 0);
        assert_eq!(Strategy::BlueGreen.extra_capacity_percent(0), 100);
        assert_eq!(Strategy::Canary.extra_capacity_percent(25), 25);
        assert_eq!(Strategy::CanaryGates.extra_capacity_percent(5), 5);
    }
}
