//! The rollout controller: it watches the rollout kept in the routing
//! state, judges each step from the analysis source, tells the gateway
//! "next step" or "abort", and sends heartbeats so the gateway knows it is
//! alive. It holds no state the gateway does not: another `platformctl`
//! (`resume`) can take over from where this one stopped.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use gateway::proxy::stats::Traffic;
use platform_routing::RoutingConfig;
use platform_routing::release::{Phase, Release, Rollout, Thresholds};
use platform_runtime::Color;
use serde_json::{Value, json};

use super::analysis::{Look, Mark, Source, Verdict, Window, judge};
use super::client::Admin;
use super::exit::{ANALYSIS_FAILED, CtlError, ENDED, REFUSED, UNREACHABLE};

/// How often the controller looks, and beats.
const TICK: Duration = Duration::from_millis(500);
/// A step without enough requests fails after this many intervals.
const PATIENCE: u32 = 3;

/// Where the rollout is: the step being judged and since when.
#[derive(Debug, Clone, PartialEq)]
struct Position {
    phase: Phase,
    step: usize,
    paused: bool,
    /// The target's share: walking back down (a gradual abort) changes it
    /// without changing the step, and each share lasts an interval.
    weight: u32,
}

/// How long the controller keeps trying while the gateway cannot be
/// reached (a restarting gateway), before it gives up.
const OUTAGE: Duration = Duration::from_secs(30);

/// Drives the rollout of `service` as `controller` until it ends; returns
/// the release that ended it. Ctrl-C leaves the rollout where it is, for
/// `resume` or `abort` (or the gateway's timeout).
pub async fn drive(
    admin: &Admin,
    service: &str,
    controller: &str,
    source: &Source,
) -> Result<Release, CtlError> {
    let routes = read_routes(admin).await?;
    let id = rollout_of(&routes, service)
        .map(|r| r.id.clone())
        .unwrap_or_default();
    let mut down_since: Option<Instant> = None;
    loop {
        let attempt = tokio::select! {
            result = drive_rollout(admin, service, controller, source, &id) => result,
            () = platform_runtime::host::shutdown_signal() => {
                return Err(CtlError::new(ENDED, format!(
                    "interrupted; the rollout of {service} stays where it is: \
                     `platformctl resume {service}` continues it, `platformctl abort {service}` ends it, \
                     and unattended the gateway aborts it after its timeout"
                )));
            }
        };
        match attempt {
            Err(e) if e.code == UNREACHABLE => {
                let since = *down_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= OUTAGE {
                    return Err(CtlError::new(
                        UNREACHABLE,
                        format!(
                            "{}; gave up after {}s: the rollout stays in the routing state for `platformctl resume {service}`, \
                         or the gateway aborts it after its timeout",
                            e.message,
                            OUTAGE.as_secs()
                        ),
                    ));
                }
                eprintln!("warning: {}; retrying", e.message);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => return other,
        }
    }
}

async fn drive_rollout(
    admin: &Admin,
    service: &str,
    controller: &str,
    source: &Source,
    id: &str,
) -> Result<Release, CtlError> {
    let mut progress = Progress::new();
    let mut position: Option<Position> = None;
    let mut mark: Option<(Mark, Instant)> = None;
    let mut last_beat = Instant::now();
    loop {
        let routes = read_routes(admin).await?;
        let Some(rollout) = rollout_of(&routes, service).filter(|r| r.id == id) else {
            progress.done();
            return ended(&routes, service, id);
        };
        if rollout.controller != controller {
            progress.done();
            return Err(CtlError::new(
                ENDED,
                format!(
                    "controller {} took the rollout of {service} over; this one stops",
                    rollout.controller
                ),
            ));
        }
        if last_beat.elapsed() >= Duration::from_secs(1) {
            let _ = admin
                .post(
                    &format!("/admin/routes/{service}/rollout/heartbeat"),
                    &json!({ "controller": controller }),
                )
                .await;
            last_beat = Instant::now();
        }
        let now = Position {
            phase: rollout.phase,
            step: rollout.step,
            paused: rollout.paused,
            weight: routes
                .services
                .get(service)
                .map_or(0, |s| s.weights.of(rollout.target)),
        };
        if position.as_ref() != Some(&now) {
            mark = Some((
                source.mark(admin, service, rollout.target).await?,
                Instant::now(),
            ));
            position = Some(now.clone());
        }
        let Some((since, started)) = &mark else {
            continue;
        };
        let interval = Duration::from_millis(rollout.interval_ms);
        let elapsed = started.elapsed();
        let target: Color = rollout.target;
        let gates: &Thresholds = &rollout.thresholds;
        let steps = rollout.steps.len();
        let share = rollout.steps.get(now.step).copied().unwrap_or(0);
        let step_name = match now.phase {
            Phase::Mirroring => format!("mirroring ({}% of reads)", rollout.mirror_percent),
            Phase::Aborting => "shifting back".to_owned(),
            Phase::Shifting => format!("step {}/{steps} ({share}%)", now.step + 1),
        };
        if now.paused {
            progress.show(
                &format!("{service} → {target}: {step_name} PAUSED (platformctl resume {service})"),
                0.0,
            );
            tokio::time::sleep(TICK).await;
            continue;
        }
        let advance = json!({ "controller": controller, "phase": now.phase, "step": now.step });
        if now.phase == Phase::Aborting {
            let weight = routes.services[service].weights.of(target);
            progress.show(
                &format!(
                    "{service} ← {target}: shifting back, {target} at {weight}%, {}s left",
                    left(interval, elapsed)
                ),
                fraction(interval, elapsed),
            );
            if elapsed >= interval {
                act(admin, service, "advance", &advance).await?;
            }
            tokio::time::sleep(TICK).await;
            continue;
        }
        let traffic = if now.phase == Phase::Mirroring {
            Traffic::Mirror
        } else {
            Traffic::Live
        };
        let (tested, current) = source
            .windows(admin, since, service, target, traffic)
            .await?;

        // The sequential test compares live calls at a known split.
        let weight = (now.phase == Phase::Shifting && share > 0 && share < 100)
            .then(|| f64::from(share) / 100.0);
        let look = Look {
            weight,
            slow_ms: since.slow_ms(),
        };
        let verdict = judge(&tested, &current, look, gates);
        progress.show(
            &format!(
                "{service} → {target}: {step_name}, {}s left | {target} {} | {} {}",
                left(interval, elapsed),
                describe(&tested),
                target.other(),
                describe(&current)
            ),
            fraction(interval, elapsed),
        );
        match verdict {
            Verdict::Fail(why) => {
                let reason = format!("{step_name}: {why}");
                let abort = json!({ "reason": reason, "failed": true, "controller": controller });
                if !act(admin, service, "abort", &abort).await? {
                    continue;
                }
                progress.done();
                let routes = read_routes(admin).await?;
                let weights = routes.services.get(service).map(|s| s.weights);
                let weights = weights.map_or("?".to_owned(), |w| {
                    format!("blue {}% / green {}%", w.blue, w.green)
                });
                return Err(CtlError::new(
                    ANALYSIS_FAILED,
                    format!(
                        "rollout of {service} to {target} failed at {reason}; rolled back: {weights}"
                    ),
                ));
            }
            Verdict::Ahead(why) => {
                progress.event(&format!(
                    "{service} → {target}: {step_name} passed early: {why}"
                ));
                act(admin, service, "advance", &advance).await?;
            }
            Verdict::Incident(why) => {
                // Refused: someone acted first; the next look shows what.
                let paused = act(admin, service, "pause", &json!({})).await?;
                if paused {
                    progress.event(&format!(
                        "{service} → {target}: {step_name} paused, not rolled back: {why}; \
                         `platformctl resume {service}` once the platform recovers, or `platformctl abort {service}`"
                    ));
                }
            }
            Verdict::Pass if elapsed >= interval => {
                progress.event(&format!(
                    "{service} → {target}: {step_name} passed: {}",
                    describe(&tested)
                ));
                act(admin, service, "advance", &advance).await?;
            }
            Verdict::Wait { have, need } if elapsed >= interval * PATIENCE => {
                let reason = format!(
                    "{step_name}: not enough traffic to judge: {have} of {need} requests in {}s",
                    elapsed.as_secs()
                );
                let abort = json!({ "reason": reason, "failed": true, "controller": controller });
                if !act(admin, service, "abort", &abort).await? {
                    continue;
                }
                progress.done();
                return Err(CtlError::new(
                    ANALYSIS_FAILED,
                    format!(
                        "rollout of {service} to {target} failed at {reason}; rolled back (lower --min-requests or lengthen --interval on a quiet service)"
                    ),
                ));
            }
            _ => {}
        }
        tokio::time::sleep(TICK).await;
    }
}

/// Asks the gateway to act on the rollout. A refusal means its state moved
/// on (an operator acted first), which the next look shows: false.
async fn act(admin: &Admin, service: &str, action: &str, body: &Value) -> Result<bool, CtlError> {
    match admin
        .post(&format!("/admin/routes/{service}/rollout/{action}"), body)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.code == REFUSED => Ok(false),
        Err(e) => Err(e),
    }
}

/// The routing document as the gateway serves it.
async fn read_routes(admin: &Admin) -> Result<RoutingConfig, CtlError> {
    let routes = admin.get("/admin/routes").await?;
    serde_json::from_value(routes).map_err(|e| {
        CtlError::new(
            ENDED,
            format!("/admin/routes: the gateway's routing document is not one this platformctl reads: {e}"),
        )
    })
}

fn rollout_of<'a>(routes: &'a RoutingConfig, service: &str) -> Option<&'a Rollout> {
    routes.services.get(service)?.rollout.as_ref()
}

/// The release that ended rollout `id`.
fn ended(routes: &RoutingConfig, service: &str, id: &str) -> Result<Release, CtlError> {
    routes
        .releases
        .iter()
        .rev()
        .find(|r| r.id == id && r.service == service)
        .cloned()
        .ok_or_else(|| {
            CtlError::new(
                ENDED,
                format!("the rollout of {service} ended and left no record"),
            )
        })
}

fn describe(w: &Window) -> String {
    format!(
        "{} req, {:.2}% err, p99 {}",
        w.requests,
        w.error_ratio() * 100.0,
        w.p99_ms.map_or("-".into(), |p| format!("{p:.1} ms"))
    )
}

fn left(interval: Duration, elapsed: Duration) -> u64 {
    interval.saturating_sub(elapsed).as_secs_f64().ceil() as u64
}

fn fraction(interval: Duration, elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() / interval.as_secs_f64().max(0.001)).min(1.0)
}

/// A live bar on a terminal; on a pipe, a line per event and every 5 s.
struct Progress {
    tty: bool,
    last: Option<Instant>,
    drawn: bool,
}

impl Progress {
    fn new() -> Self {
        Self {
            tty: std::io::stderr().is_terminal(),
            last: None,
            drawn: false,
        }
    }

    fn show(&mut self, line: &str, fraction: f64) {
        let mut err = std::io::stderr();
        if self.tty {
            let filled = (fraction * 20.0).round() as usize;
            let bar = format!(
                "[{}{}]",
                "#".repeat(filled),
                ".".repeat(20 - filled.min(20))
            );
            let _ = write!(err, "\r\x1b[2K{bar} {line}");
            let _ = err.flush();
            self.drawn = true;
        } else if self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(5))
        {
            let _ = writeln!(err, "{line}");
            self.last = Some(Instant::now());
        }
    }

    fn event(&mut self, line: &str) {
        self.done();
        eprintln!("{line}");
        self.last = None;
    }

    fn done(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}
