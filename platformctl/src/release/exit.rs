//! The exit codes of the release commands, one per kind of outcome, so a
//! pipeline can tell a refused command from a failed release.

use std::process::ExitCode;

/// Everything went as asked.
pub const OK: u8 = 0;
/// The command line is wrong (clap's own code): unknown flag, bad step list.
pub const USAGE: u8 = 2;
/// The gateway's admin API (or Prometheus) cannot be reached or failed.
pub const UNREACHABLE: u8 = 3;
/// The gateway refused: unknown service, color already active, a rollout
/// already running or none running, wrong admin token.
pub const REFUSED: u8 = 4;
/// The target color is not healthy, or its smoke check failed.
pub const UNHEALTHY: u8 = 5;
/// Analysis failed a gate; traffic was rolled back.
pub const ANALYSIS_FAILED: u8 = 6;
/// The rollout ended another way: aborted, rolled back, timed out, or
/// taken over by another controller.
pub const ENDED: u8 = 7;

/// The table shown at the end of `--help`.
pub const HELP: &str = "Exit codes:
  0  done
  2  bad command line (unknown flag, bad step list, bad duration)
  3  the gateway admin API or Prometheus cannot be reached
  4  refused: unknown service, color already active, rollout already running or none running, wrong token
  5  the target color is not healthy or failed its smoke check
  6  analysis failed a gate: traffic was rolled back (the message names the metric, value and step)
  7  the rollout ended otherwise: aborted, rolled back, timed out, or taken over";

#[derive(Debug, Clone)]
pub struct CtlError {
    pub code: u8,
    pub message: String,
}

impl CtlError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(USAGE, message)
    }
}

pub fn finish(result: Result<(), CtlError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::from(OK),
        Err(err) => {
            eprintln!("error: {}", err.message);
            ExitCode::from(err.code)
        }
    }
}

/// `30s`, `2m`, `500ms`, `1h` or plain seconds.
pub fn parse_duration(raw: &str) -> Result<std::time::Duration, String> {
    let raw = raw.trim();
    let (number, unit) = raw
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((raw, "s"), |i| raw.split_at(i));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("expected a duration such as 30s, 2m or 500ms, got {raw:?}"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit in {raw:?}: use ms, s, m or h")),
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("the duration {raw:?} must be above zero"));
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
