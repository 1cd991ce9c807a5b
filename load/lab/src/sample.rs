//! The gateway's view during a run: every 250 ms, `/admin/status` (weights,
//! whether a rollout runs, the last minute of each color) and `/admin/stats`
//! (cumulative counters, whose differences give rates over any interval).

use std::time::Duration;

use anyhow::Context;
use platform_routing::view;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::http;

/// Calls counted by the gateway for one color of a service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: u64,
    pub server_errors: u64,
}

impl Counts {
    pub fn since(self, earlier: Counts) -> Counts {
        Counts {
            requests: self.requests.saturating_sub(earlier.requests),
            server_errors: self.server_errors.saturating_sub(earlier.server_errors),
        }
    }

    pub fn error_ratio(self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.server_errors as f64 / self.requests as f64
        }
    }
}

/// One look at the service under release.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Unix milliseconds when `/admin/status` was read (the gateway's clock,
    /// which is this machine's).
    pub at_ms: i64,
    pub green_weight: u32,
    /// A rollout is in progress.
    pub rollout: bool,
    /// Live calls since the gateway started.
    pub blue_total: Counts,
    pub green_total: Counts,
    /// Live calls to green over the last 60 s, as `/admin/status` reports them.
    pub green_last_minute: Counts,
}

/// The parts of `/admin/status` the experiment reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub at_ms: i64,
    pub green_weight: u32,
    pub rollout: bool,
    pub green_last_minute: Counts,
}

/// Reads the parts of an `/admin/status` document the experiment needs.
pub fn parse_status(text: &str, service: &str) -> anyhow::Result<Status> {
    let doc: view::Status =
        serde_json::from_str(text).context("/admin/status: not a status document")?;
    let Some(entry) = doc.services.get(service) else {
        anyhow::bail!("/admin/status has no service {service:?}");
    };
    let live = &entry.colors.green.live;
    Ok(Status {
        at_ms: doc.at_ms,
        green_weight: entry.weights.green,
        rollout: entry.rollout.is_some(),
        green_last_minute: Counts {
            requests: live.requests,
            server_errors: live.server_errors,
        },
    })
}

/// Cumulative live counters of both colors from `/admin/stats`; a color
/// that has served nothing yet is absent there and counts zero.
pub fn parse_stats(text: &str, service: &str) -> anyhow::Result<(Counts, Counts)> {
    let doc: Value = serde_json::from_str(text).context("/admin/stats is not JSON")?;
    if !doc["services"].is_object() {
        anyhow::bail!("/admin/stats has no services object");
    }
    let total = |color: &str| {
        let total = &doc["services"][service][color]["live"]["total"];
        Counts {
            requests: total["requests"].as_u64().unwrap_or(0),
            server_errors: total["server_errors"].as_u64().unwrap_or(0),
        }
    };
    Ok((total("blue"), total("green")))
}

/// Where and how to sample.
#[derive(Debug, Clone)]
pub struct Target {
    pub admin_port: u16,
    pub token: String,
    pub service: String,
    pub every: Duration,
}

async fn take(target: &Target) -> anyhow::Result<Sample> {
    let timeout = Duration::from_secs(2);
    let token = Some(target.token.as_str());
    let status = http::get(target.admin_port, "/admin/status", token, timeout).await?;
    if status.status != 200 {
        anyhow::bail!("/admin/status answered {}: {}", status.status, status.body);
    }
    let stats = http::get(target.admin_port, "/admin/stats", token, timeout).await?;
    if stats.status != 200 {
        anyhow::bail!("/admin/stats answered {}: {}", stats.status, stats.body);
    }
    let status = parse_status(&status.body, &target.service)?;
    let (blue_total, green_total) = parse_stats(&stats.body, &target.service)?;
    Ok(Sample {
        at_ms: status.at_ms,
        green_weight: status.green_weight,
        rollout: status.rollout,
        blue_total,
        green_total,
        green_last_minute: status.green_last_minute,
    })
}

/// Samples in the background until [`Sampler::finish`].
pub struct Sampler {
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<Vec<Sample>>>,
    /// The newest sample, for whoever reacts during the run.
    pub latest: watch::Receiver<Option<Sample>>,
}

/// Consecutive failed samples after which the run is declared broken.
const MAX_FAILURES_IN_A_ROW: u32 = 40;

impl Sampler {
    pub fn start(target: Target) -> Sampler {
        let (stop, mut stopped) = watch::channel(false);
        let (publish, latest) = watch::channel(None);
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut failures = 0;
            let mut tick = tokio::time::interval(target.every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => return Ok(samples),
                }
                match take(&target).await {
                    Ok(sample) => {
                        failures = 0;
                        publish.send_replace(Some(sample.clone()));
                        samples.push(sample);
                    }
                    Err(err) => {
                        failures += 1;
                        if failures >= MAX_FAILURES_IN_A_ROW {
                            return Err(err.context(format!(
                                "the admin API failed {failures} samples in a row"
                            )));
                        }
                    }
                }
            }
        });
        Sampler { stop, task, latest }
    }

    /// Stops sampling; every sample taken, oldest first.
    pub async fn finish(mut self) -> anyhow::Result<Vec<Sample>> {
        let _ = self.stop.send(true);
        (&mut self.task).await.context("the sampler panicked")?
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Orders a step into a rollout to green, auth all on blue.
    const STATUS: &str = r#"{"at_ms":1700000000250,"generation":9,"services":{
        "orders":{"weights":{"blue":75,"green":25},"previous_weights":{"blue":95,"green":5},
          "rollout":{"id":"rel-1","target":"green","baseline":{"blue":100,"green":0},"steps":[5,25,50,100],
            "step":1,"phase":"shifting","paused":false,"interval_ms":2000,
            "thresholds":{"max_error_ratio":0.01,"max_p99_ms":500.0,"max_relative_error":2.0,"min_requests":50},
            "mirror_percent":0,"started_ms":1699999996000,"step_started_ms":1699999999000,
            "controller":"4242-ctl-1","heartbeat_ms":1700000000000,"timeout_ms":120000,"who":"lab"},
          "mirror":null,
          "colors":{
            "blue":{"weight":75,"healthy":1,"versions":["1.0.0"],
              "endpoints":[{"endpoint":"127.0.0.1:50052","serving":true,"version":"1.0.0","error":null}],
              "live":{"rate_per_second":1.0,"requests":60,"server_errors":0,"error_ratio":0.0,"p99_ms":2.1},
              "mirror":{"rate_per_second":0.0,"requests":0,"server_errors":0,"error_ratio":0.0,"p99_ms":null}},
            "green":{"weight":25,"healthy":1,"versions":["2.0.0"],
              "endpoints":[{"endpoint":"127.0.0.1:50152","serving":true,"version":"2.0.0","error":null}],
              "live":{"rate_per_second":0.3333333333333333,"requests":20,"server_errors":4,"error_ratio":0.2,"p99_ms":null},
              "mirror":{"rate_per_second":0.0,"requests":0,"server_errors":0,"error_ratio":0.0,"p99_ms":null}}}},
        "auth":{"weights":{"blue":100,"green":0},"previous_weights":null,"rollout":null,"mirror":null,
          "colors":{
            "blue":{"weight":100,"healthy":1,"versions":["1.0.0"],
              "endpoints":[{"endpoint":"127.0.0.1:50051","serving":true,"version":"1.0.0","error":null}],
              "live":{"rate_per_second":0.5,"requests":30,"server_errors":0,"error_ratio":0.0,"p99_ms":1.2},
              "mirror":{"rate_per_second":0.0,"requests":0,"server_errors":0,"error_ratio":0.0,"p99_ms":null}},
            "green":{"weight":0,"healthy":0,"versions":[],
              "endpoints":[{"endpoint":"127.0.0.1:50151","serving":false,"version":null,"error":"connection refused"}],
              "live":{"rate_per_second":0.0,"requests":0,"server_errors":0,"error_ratio":0.0,"p99_ms":null},
              "mirror":{"rate_per_second":0.0,"requests":0,"server_errors":0,"error_ratio":0.0,"p99_ms":null}}}}}}"#;

    const STATS: &str = r#"{"at_ms":1700000000251,"bounds_ms":[0.1,0.125],"services":{"orders":{
        "blue":{"live":{"total":{"requests":900,"server_errors":1,"buckets":[1,2]},"last_minute":{"requests":5,"server_errors":0,"buckets":[]}}},
        "green":{"live":{"total":{"requests":40,"server_errors":9,"buckets":[]},"last_minute":{"requests":40,"server_errors":9,"buckets":[]}},
                 "mirror":{"total":{"requests":7,"server_errors":7,"buckets":[]},"last_minute":{"requests":7,"server_errors":7,"buckets":[]}}}}}}"#;

    #[test]
    fn status_gives_weights_rollout_and_green_last_minute() {
        let status = parse_status(STATUS, "orders").expect("parses");
        assert_eq!(
            status,
            Status {
                at_ms: 1_700_000_000_250,
                green_weight: 25,
                rollout: true,
                green_last_minute: Counts {
                    requests: 20,
                    server_errors: 4
                },
            }
        );
        let auth = parse_status(STATUS, "auth").expect("parses");
        assert_eq!((auth.green_weight, auth.rollout), (0, false));
        assert_eq!(auth.green_last_minute, Counts::default());
        let err = parse_status(STATUS, "billing").expect_err("unknown service");
        assert!(err.to_string().contains("billing"), "{err}");
        assert!(parse_status("<html>", "orders").is_err());
    }

    #[test]
    fn status_missing_a_field_is_refused_with_its_name() {
        let incomplete = STATUS.replacen(r#""server_errors":4,"#, "", 1);
        let err = parse_status(&incomplete, "orders").expect_err("incomplete");
        let message = format!("{err:#}");
        assert!(message.starts_with("/admin/status"), "{message}");
        assert!(
            message.contains("missing field `server_errors`"),
            "{message}"
        );
    }

    #[test]
    fn stats_give_live_totals_only() {
        let (blue, green) = parse_stats(STATS, "orders").expect("parses");
        assert_eq!(
            (blue, green),
            (
                Counts {
                    requests: 900,
                    server_errors: 1
                },
                Counts {
                    requests: 40,
                    server_errors: 9
                }
            )
        );
        let (blue, green) = parse_stats(STATS, "payments").expect("parses");
        assert_eq!((blue, green), (Counts::default(), Counts::default()));
        assert!(parse_stats("{}", "orders").is_err());
    }

    #[test]
    fn counts_differences() {
        let later = Counts {
            requests: 50,
            server_errors: 10,
        };
        let earlier = Counts {
            requests: 30,
            server_errors: 6,
        };
        assert_eq!(
            later.since(earlier),
            Counts {
                requests: 20,
                server_errors: 4
            }
        );
        assert!((later.since(earlier).error_ratio() - 0.2).abs() < 1e-9);
        assert_eq!(Counts::default().error_ratio(), 0.0);
    }
}
