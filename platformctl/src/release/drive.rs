//! The rollout controller: it watches the rollout kept in the routing
//! state, judges each step from the analysis source, tells the gateway
//! "next step" or "abort", and sends heartbeats so the gateway knows it is
//! alive. It holds no state the gateway does not: another `platformctl`
//! (`resume`) can take over from where this one stopped.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::proxy::stats::Traffic;
use platform_routing::RoutingConfig;
use platform_routing::release::{Phase, Release, Rollout, Thresholds};
use platform_runtime::Color;
use serde_json::{Value, json};

use super::analysis::{Evidence, Look, Mark, Source, Verdict, Window, bake, evidence, judge};
use super::client::Admin;
use super::exit::{ANALYSIS_FAILED, CtlError, ENDED, REFUSED, UNREACHABLE};
use super::team::{Stage, Team};

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

/// How a controller drives: how long an incident may hold a rollout, and
/// the other services of the same release, if any.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// An incident pause longer than this rolls the release back.
    pub incident_timeout: Duration,
    /// The gateway keeps callers on their color (`/admin/status`'s
    /// `sticky`): the split is then the share of calls the target gets.
    pub sticky: bool,
    pub team: Option<Arc<Team>>,
}

/// Drives the rollout of `service` as `controller` until it ends; returns
/// the release that ended it. Ctrl-C leaves the rollout where it is, for
/// `resume` or `abort` (or the gateway's timeout).
pub async fn drive(
    admin: &Admin,
    service: &str,
    controller: &str,
    source: &Source,
    options: &Options,
) -> Result<Release, CtlError> {
    let routes = read_routes(admin).await?;
    let id = rollout_of(&routes, service)
        .map(|r| r.id.clone())
        .unwrap_or_default();
    let mut down_since: Option<Instant> = None;
    let mut looks = Looks::default();
    loop {
        let attempt = tokio::select! {
            result = drive_rollout(admin, service, controller, source, &id, options, &mut looks) => result,
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

/// What the controller remembers between looks: the step being judged and
/// its window, the old color's last window at a known split (the baseline
/// of the bake), and an incident it paused for.
#[derive(Default)]
struct Looks {
    position: Option<Position>,
    mark: Option<(Mark, Instant)>,
    baseline: Option<(Window, Mark)>,
    incident: Option<Incident>,
    /// The evidence against the target from the steps before this one,
    /// and up to the latest look: the next step starts from it.
    carried: Evidence,
    latest: Evidence,
}

/// A pause for an incident of the platform: since when, and the window in
/// which both colors must be healthy again for the rollout to go on.
struct Incident {
    since: Instant,
    recovery: Mark,
}

async fn drive_rollout(
    admin: &Admin,
    service: &str,
    controller: &str,
    source: &Source,
    id: &str,
    options: &Options,
    looks: &mut Looks,
) -> Result<Release, CtlError> {
    let mut progress = Progress::new();
    let mut last_beat = Instant::now();
    loop {
        let routes = read_routes(admin).await?;
        let Some(rollout) = rollout_of(&routes, service).filter(|r| r.id == id) else {
            progress.done();
            let release = ended(&routes, service, id);
            if let Some(team) = &options.team {
                // Ended by someone else (the gateway's own test, an
                // operator): anything but completion ends the release.
                match &release {
                    Ok(r) if ["completed", "promoted"].contains(&r.outcome.as_str()) => {}
                    Ok(r) => team.fail(service, &format!("{}: {}", r.outcome, r.detail)),
                    Err(e) => team.fail(service, &e.message),
                }
                team.at(service, Stage::Done);
            }
            return release;
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
        let target: Color = rollout.target;
        if let Some(team) = &options.team {
            team.at(service, Stage::of(rollout.phase, rollout.step));
            if let Some(why) = team.failed()
                && rollout.phase != Phase::Aborting
            {
                let reason = format!("the release failed: {why}");
                let abort = json!({ "reason": reason, "failed": true, "controller": controller });
                if act(admin, service, "abort", &abort).await? {
                    progress.done();
                    return Err(CtlError::new(
                        ANALYSIS_FAILED,
                        format!("rollout of {service} to {target} rolled back: {reason}"),
                    ));
                }
                continue;
            }
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
        if looks.position.as_ref() != Some(&now) {
            let mut mark = source.mark(admin, service, target).await?;
            if now.phase == Phase::Baking
                && let Some((_, of_step)) = &looks.baseline
            {
                // The bake counts slow calls against the bound the
                // baseline was counted against.
                mark.keep_bound_of(of_step);
            }
            looks.mark = Some((mark, Instant::now()));
            looks.carried = looks.latest;
            if !now.paused {
                looks.incident = None;
            }
            looks.position = Some(now.clone());
        }
        let Some((since, started)) = &looks.mark else {
            continue;
        };
        let interval = Duration::from_millis(rollout.interval_ms);
        let elapsed = started.elapsed();
        let gates: &Thresholds = &rollout.thresholds;
        let steps = rollout.steps.len();
        let share = rollout.steps.get(now.step).copied().unwrap_or(0);
        let step_name = match now.phase {
            Phase::Mirroring => format!("mirroring ({}% of reads)", rollout.mirror_percent),
            Phase::Aborting => "shifting back".to_owned(),
            Phase::Baking => "baking".to_owned(),
            Phase::Shifting => format!("step {}/{steps} ({share}%)", now.step + 1),
        };
        if now.paused {
            if looks.incident.is_some() {
                recover(
                    admin,
                    service,
                    controller,
                    source,
                    options,
                    looks,
                    &mut progress,
                    &step_name,
                    target,
                    gates,
                )
                .await?;
            } else {
                progress.show(
                    &format!(
                        "{service} → {target}: {step_name} PAUSED (platformctl resume {service})"
                    ),
                    0.0,
                );
            }
            pause(options).await;
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
            pause(options).await;
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

        // The sequential tests compare live calls at a known split: the
        // weight, or with sticky callers the share of calls the target got.
        let split = (now.phase == Phase::Shifting && share > 0 && share < 100).then_some(share);
        let weight = split.and_then(|share| {
            if options.sticky {
                let calls = |w: &Window| platform_routing::judge::Counts {
                    calls: w.requests,
                    errors: w.server_errors,
                };
                platform_routing::judge::observed_split(calls(&tested), calls(&current))
            } else {
                Some(f64::from(share) / 100.0)
            }
        });
        let window = if now.phase == Phase::Baking {
            Duration::from_millis(rollout.bake_ms)
        } else {
            interval
        };
        let verdict = match (&looks.baseline, now.phase) {
            (Some((baseline, of_step)), Phase::Baking) => {
                bake(&tested, baseline, of_step.slow_ms(), gates)
            }
            (None, Phase::Baking) => match judge(&tested, &current, Look::default(), gates) {
                Verdict::Wait { .. } => Verdict::Pass,
                other => other,
            },
            _ => {
                let look = Look {
                    weight,
                    slow_ms: since.slow_ms(),
                    carried: looks.carried,
                };
                looks.latest = evidence(&tested, &current, look);
                judge(&tested, &current, look, gates)
            }
        };
        if weight.is_some() {
            looks.baseline = Some((current.clone(), since.clone()));
        }
        let against = if now.phase == Phase::Baking {
            looks.baseline.as_ref().map_or(
                format!("{} {}", target.other(), describe(&current)),
                |(b, _)| format!("{} before promotion {}", target.other(), describe(b)),
            )
        } else {
            format!("{} {}", target.other(), describe(&current))
        };
        progress.show(
            &format!(
                "{service} → {target}: {step_name}, {}s left | {target} {} | {against}",
                left(window, elapsed),
                describe(&tested),
            ),
            fraction(window, elapsed),
        );
        let stage = Stage::of(now.phase, now.step);
        let may_advance = |progress: &mut Progress| match &options.team {
            None => true,
            Some(team) => {
                let go = team.may_advance(service, stage);
                if !go {
                    progress.show(
                        &format!(
                            "{service} → {target}: {step_name} passed, waiting for {}",
                            team.waiting_for(service, stage).join(", ")
                        ),
                        1.0,
                    );
                }
                go
            }
        };
        match verdict {
            Verdict::Fail(why) => {
                let reason = format!("{step_name}: {why}");
                return fail(
                    admin,
                    service,
                    controller,
                    target,
                    &reason,
                    options,
                    &mut progress,
                )
                .await;
            }
            Verdict::Ahead(why) if may_advance(&mut progress) => {
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
                         it goes on by itself once both colors are healthy again for --min-requests calls, \
                         and rolls back if that takes over {}s; `platformctl resume {service}` goes on now, \
                         `platformctl abort {service}` rolls back now",
                        options.incident_timeout.as_secs()
                    ));
                    looks.incident = Some(Incident {
                        since: Instant::now(),
                        recovery: source.mark(admin, service, target).await?,
                    });
                }
            }
            Verdict::Pass if elapsed >= window && may_advance(&mut progress) => {
                progress.event(&format!(
                    "{service} → {target}: {step_name} passed: {}",
                    describe(&tested)
                ));
                act(admin, service, "advance", &advance).await?;
            }
            Verdict::Wait { have, need } if elapsed >= interval * PATIENCE => {
                let reason = format!(
                    "{step_name}: not enough traffic to judge: {have} of {need} requests in {}s \
                     (lower --min-requests or lengthen --interval on a quiet service)",
                    elapsed.as_secs()
                );
                return fail(
                    admin,
                    service,
                    controller,
                    target,
                    &reason,
                    options,
                    &mut progress,
                )
                .await;
            }
            _ => {}
        }
        pause(options).await;
    }
}

/// Rolls the rollout back for `reason`, and the rest of its release.
async fn fail(
    admin: &Admin,
    service: &str,
    controller: &str,
    target: Color,
    reason: &str,
    options: &Options,
    progress: &mut Progress,
) -> Result<Release, CtlError> {
    let abort = json!({ "reason": reason, "failed": true, "controller": controller });
    let acted = act(admin, service, "abort", &abort).await?;
    if let Some(team) = &options.team {
        team.fail(service, reason);
    }
    progress.done();
    if !acted {
        return Err(CtlError::new(
            ENDED,
            format!(
                "rollout of {service} to {target} failed at {reason}, and someone ended it first"
            ),
        ));
    }
    let routes = read_routes(admin).await?;
    let weights = routes.services.get(service).map(|s| s.weights);
    let weights = weights.map_or("?".to_owned(), |w| {
        format!("blue {}% / green {}%", w.blue, w.green)
    });
    Err(CtlError::new(
        ANALYSIS_FAILED,
        format!("rollout of {service} to {target} failed at {reason}; rolled back: {weights}"),
    ))
}

/// While paused for an incident: goes on once both colors are healthy
/// again over `min_requests` calls of the current color, or rolls back
/// after the incident timeout.
#[allow(clippy::too_many_arguments)]
async fn recover(
    admin: &Admin,
    service: &str,
    controller: &str,
    source: &Source,
    options: &Options,
    looks: &mut Looks,
    progress: &mut Progress,
    step_name: &str,
    target: Color,
    gates: &Thresholds,
) -> Result<(), CtlError> {
    let Some(incident) = &looks.incident else {
        return Ok(());
    };
    let lasted = incident.since.elapsed();
    if lasted >= options.incident_timeout {
        let reason = format!(
            "{step_name}: the incident lasted over {}s (--incident-timeout)",
            options.incident_timeout.as_secs()
        );
        return fail(
            admin, service, controller, target, &reason, options, progress,
        )
        .await
        .map(|_| ());
    }
    let (tested, current) = source
        .windows(admin, &incident.recovery, service, target, Traffic::Live)
        .await?;
    progress.show(
        &format!(
            "{service} → {target}: {step_name} PAUSED for an incident ({}s) | {target} {} | {} {}",
            lasted.as_secs(),
            describe(&tested),
            target.other(),
            describe(&current)
        ),
        0.0,
    );
    if current.requests < gates.min_requests.max(1) {
        return Ok(());
    }
    let healthy = |w: &Window| {
        w.error_ratio() <= gates.max_error_ratio && w.p99_ms.is_none_or(|p| p <= gates.max_p99_ms)
    };
    if healthy(&tested) && healthy(&current) {
        if act(
            admin,
            service,
            "resume",
            &json!({ "controller": controller }),
        )
        .await?
        {
            progress.event(&format!(
                "{service} → {target}: the platform recovered after {}s (both colors under the limits over {} calls); {step_name} starts again",
                lasted.as_secs(),
                current.requests
            ));
        }
        looks.incident = None;
    } else {
        // Still failing: the next window starts now.
        let since = incident.since;
        looks.incident = Some(Incident {
            since,
            recovery: source.mark(admin, service, target).await?,
        });
    }
    Ok(())
}

/// Waits for the next look, or for the release to fail elsewhere.
async fn pause(options: &Options) {
    match &options.team {
        Some(team) => {
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                () = team.wake.notified() => {}
            }
        }
        None => tokio::time::sleep(TICK).await,
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
