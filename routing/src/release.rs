//! Releases as routing state: a switch, a rollout in progress (its plan,
//! step, thresholds and controller), and the history of past releases. They
//! live in the routing document, next to the weights they move, so every
//! gateway replica, `platformctl status` and the console read one truth, a
//! rollout outlives the process that drives it, and a rollout whose driver
//! stopped sending heartbeats is aborted by the gateway, never left half way.
//!
//! Every function here is a pure transition of one service's routing; the
//! admin API runs them inside the source's read-change-write.

use platform_runtime::Color;
use serde::{Deserialize, Serialize};

use crate::model::{ColorWeights, RoutingConfig, ServiceRouting};

/// Analysis gates of a rollout, checked by its controller at every step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// Highest server-error ratio of the target color (0.01 = 1%).
    pub max_error_ratio: f64,
    /// Highest p99 latency of the target color, in milliseconds.
    pub max_p99_ms: f64,
    /// Highest target error ratio as a multiple of the current color's.
    pub max_relative_error: f64,
    /// Requests the target must have served before a step is judged.
    pub min_requests: u64,
    /// How a step is judged: the sequential tests and the gates, or the
    /// gates alone (the judgement before the sequential tests, kept to
    /// compare them).
    #[serde(default)]
    pub judge: Judge,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Judge {
    #[default]
    Sequential,
    Gates,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Reads are copied to the target; nobody is served by it yet.
    Mirroring,
    /// Traffic moves to the target step by step.
    Shifting,
    /// Traffic moves back to the baseline step by step (`abort --gradual`).
    Aborting,
    /// The target has all the traffic; the old color stays up and the
    /// target is still judged, against what the old color did, for
    /// `bake_ms`: an abort now is an instant rollback.
    Baking,
}

/// What a rollout is asked to do; `POST /admin/routes/{service}/rollout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub to: Color,
    pub steps: Vec<u32>,
    pub interval_ms: u64,
    pub thresholds: Thresholds,
    /// Share of safe reads copied to the target before any step; 0 for none.
    #[serde(default)]
    pub mirror_percent: u32,
    /// Abort when the controller has not sent a heartbeat for this long.
    pub timeout_ms: u64,
    pub controller: String,
    /// How long the target keeps being judged at 100% before the rollout
    /// completes (0: it completes with its last step).
    #[serde(default)]
    pub bake_ms: u64,
}

/// A rollout in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub id: String,
    pub target: Color,
    /// The weights before it started: what an abort restores.
    pub baseline: ColorWeights,
    pub steps: Vec<u32>,
    /// Index into `steps` of the share the target has now (Shifting).
    pub step: usize,
    pub phase: Phase,
    pub paused: bool,
    pub interval_ms: u64,
    pub thresholds: Thresholds,
    pub mirror_percent: u32,
    pub started_ms: i64,
    pub step_started_ms: i64,
    pub controller: String,
    pub heartbeat_ms: i64,
    pub timeout_ms: u64,
    pub who: String,
    #[serde(default)]
    pub bake_ms: u64,
}

impl Rollout {
    pub fn is_unattended(&self, now_ms: i64) -> bool {
        now_ms.saturating_sub(self.heartbeat_ms)
            > i64::try_from(self.timeout_ms).unwrap_or(i64::MAX)
    }
}

/// Copies of safe reads sent to a color that serves nobody yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mirror {
    pub to: Color,
    pub percent: u32,
}

/// A finished release, for `history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub id: String,
    pub service: String,
    /// `switch`, `rollout` or `rollback`.
    pub kind: String,
    pub to: Color,
    /// Who started it.
    pub who: String,
    /// Who ended it (an operator, a controller, or the gateway's watchdog).
    #[serde(default)]
    pub ended_by: String,
    pub started_ms: i64,
    pub ended_ms: i64,
    /// `switched`, `completed`, `promoted`, `aborted`, `failed`,
    /// `timed out` or `rolled back`.
    pub outcome: String,
    /// The highest share the target reached, in percent.
    pub peak_weight: u32,
    pub before: ColorWeights,
    pub after: ColorWeights,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Releases kept in the routing document, newest last.
pub const MAX_RELEASES: usize = 100;

/// Why a transition was refused: the HTTP status class and what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotFound(String),
    Conflict(String),
    Invalid(String),
}

impl Refusal {
    pub fn message(&self) -> &str {
        match self {
            Refusal::NotFound(m) | Refusal::Conflict(m) | Refusal::Invalid(m) => m,
        }
    }
}

/// Checks a step list: increasing shares in 1..=100 that end at 100.
pub fn check_steps(steps: &[u32]) -> Result<(), String> {
    if steps.is_empty() {
        return Err("the step list is empty; give shares such as 5,25,50,100".into());
    }
    if let Some(bad) = steps.iter().find(|s| **s == 0 || **s > 100) {
        return Err(format!("step {bad} is not a share between 1 and 100"));
    }
    if steps.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!(
            "steps must increase: {}",
            steps
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    if steps.last() != Some(&100) {
        return Err("the last step must be 100".into());
    }
    Ok(())
}

fn weights_with(target: Color, share: u32) -> ColorWeights {
    match target {
        Color::Blue => ColorWeights {
            blue: share,
            green: 100 - share,
        },
        Color::Green => ColorWeights {
            blue: 100 - share,
            green: share,
        },
    }
}

/// The refusal for a service the routing does not name.
pub fn unknown(config: &RoutingConfig, name: &str) -> Refusal {
    let known: Vec<&str> = config.services.keys().map(String::as_str).collect();
    Refusal::NotFound(format!(
        "unknown service {name:?}; known: {}",
        known.join(", ")
    ))
}

/// One service's routing, found or refused.
pub fn service<'a>(
    config: &'a mut RoutingConfig,
    name: &str,
) -> Result<&'a mut ServiceRouting, Refusal> {
    if !config.services.contains_key(name) {
        return Err(unknown(config, name));
    }
    config
        .services
        .get_mut(name)
        .ok_or_else(|| Refusal::NotFound(format!("unknown service {name:?}")))
}

/// A weight change made by a release transition.
#[derive(Debug, Clone, PartialEq)]
pub struct Moved {
    pub action: &'static str,
    pub before: ColorWeights,
    pub after: ColorWeights,
    /// Set when the transition ended a release.
    pub release: Option<Release>,
}

fn running<'a>(routing: &'a mut ServiceRouting, name: &str) -> Result<&'a mut Rollout, Refusal> {
    routing
        .rollout
        .as_mut()
        .ok_or_else(|| Refusal::Conflict(format!("no rollout of {name} is running")))
}

/// Moves all traffic to `to` at once.
pub fn switch(
    routing: &mut ServiceRouting,
    name: &str,
    to: Color,
    who: &str,
    now_ms: i64,
) -> Result<Moved, Refusal> {
    if let Some(rollout) = &routing.rollout {
        return Err(Refusal::Conflict(format!(
            "a rollout of {name} to {} is running; promote or abort it first",
            rollout.target
        )));
    }
    all_to(routing, name, to, AtOnce::Switch, who, now_ms)
}

/// Sends all traffic back to the stable color (see
/// [`ServiceRouting::stable`]); during a rollout, aborts it to its
/// baseline. Rolling back twice changes nothing the second time: it is
/// refused as a conflict that says where the traffic already is, as a
/// switch to the color that already has it is.
pub fn rollback(
    routing: &mut ServiceRouting,
    name: &str,
    who: &str,
    now_ms: i64,
) -> Result<Moved, Refusal> {
    if routing.rollout.is_some() {
        return finish_abort(
            routing,
            name,
            "rolled back",
            "rollback during the rollout",
            now_ms,
        );
    }
    // Files written before the stable color was recorded: the color that
    // had all of the previous weights.
    let stable = routing.stable.or_else(|| {
        let previous = routing.previous_weights?;
        Color::ALL.into_iter().find(|c| previous.of(*c) == 100)
    });
    let to = stable.ok_or_else(|| {
        Refusal::Conflict(format!(
            "{name} has no stable color to roll back to (no color had all of its traffic before); \
             use switch to choose one"
        ))
    })?;
    all_to(routing, name, to, AtOnce::Rollback, who, now_ms)
}

/// The two releases that move all traffic at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AtOnce {
    Switch,
    Rollback,
}

/// All traffic to `to` in one change, recorded as a finished release.
fn all_to(
    routing: &mut ServiceRouting,
    name: &str,
    to: Color,
    kind: AtOnce,
    who: &str,
    now_ms: i64,
) -> Result<Moved, Refusal> {
    if routing.weights.of(to) == 100 {
        let why = match kind {
            AtOnce::Switch => String::new(),
            AtOnce::Rollback => ", its stable color: nothing to roll back".to_owned(),
        };
        return Err(Refusal::Conflict(format!(
            "{to} already serves 100% of {name}{why}"
        )));
    }
    if routing.endpoints.of(to).is_empty() {
        return Err(Refusal::Invalid(format!("{name} has no {to} endpoints")));
    }
    let before = routing.weights;
    let after = weights_with(to, 100);
    let (action, outcome) = match kind {
        AtOnce::Switch => {
            routing.moving_from(before);
            ("switch", "switched")
        }
        AtOnce::Rollback => {
            // Back on the stable color, which stays the stable one.
            routing.previous_weights = Some(before);
            routing.stable = Some(to);
            ("rollback", "rolled back")
        }
    };
    routing.weights = after;
    Ok(Moved {
        action,
        before,
        after,
        release: Some(Release {
            id: platform_runtime::ids::new_id("rel"),
            service: name.to_owned(),
            kind: action.into(),
            to,
            who: who.to_owned(),
            ended_by: who.to_owned(),
            started_ms: now_ms,
            ended_ms: now_ms,
            outcome: outcome.into(),
            peak_weight: 100,
            before,
            after,
            detail: String::new(),
        }),
    })
}

/// Starts a rollout: a mirroring phase first if asked, else the first step.
pub fn start(
    routing: &mut ServiceRouting,
    name: &str,
    plan: &Plan,
    who: &str,
    now_ms: i64,
) -> Result<Moved, Refusal> {
    if let Some(rollout) = &routing.rollout {
        return Err(Refusal::Conflict(format!(
            "a rollout of {name} to {} is already running (started by {}); \
             use status, resume, promote or abort",
            rollout.target, rollout.who
        )));
    }
    check_steps(&plan.steps).map_err(Refusal::Invalid)?;
    if plan.interval_ms < 100 {
        return Err(Refusal::Invalid(
            "the step interval must be at least 100ms".into(),
        ));
    }
    if plan.mirror_percent > 100 {
        return Err(Refusal::Invalid("mirror_percent must be 0-100".into()));
    }
    if plan.controller.is_empty() {
        return Err(Refusal::Invalid("a rollout needs a controller id".into()));
    }
    let t = &plan.thresholds;
    if !(0.0..=1.0).contains(&t.max_error_ratio)
        || t.max_p99_ms <= 0.0
        || t.max_relative_error < 1.0
    {
        return Err(Refusal::Invalid(
            "thresholds: max_error_ratio must be 0-1, max_p99_ms above 0, max_relative_error at least 1".into(),
        ));
    }
    let current = routing.weights.of(plan.to);
    if current == 100 {
        return Err(Refusal::Conflict(format!(
            "{} already serves 100% of {name}",
            plan.to
        )));
    }
    if routing.endpoints.of(plan.to).is_empty() {
        return Err(Refusal::Invalid(format!(
            "{name} has no {} endpoints",
            plan.to
        )));
    }
    let before = routing.weights;
    let mirroring = plan.mirror_percent > 0;
    let rollout = Rollout {
        id: platform_runtime::ids::new_id("rel"),
        target: plan.to,
        baseline: before,
        steps: plan.steps.clone(),
        step: 0,
        phase: if mirroring {
            Phase::Mirroring
        } else {
            Phase::Shifting
        },
        paused: false,
        interval_ms: plan.interval_ms,
        thresholds: plan.thresholds.clone(),
        mirror_percent: plan.mirror_percent,
        started_ms: now_ms,
        step_started_ms: now_ms,
        controller: plan.controller.clone(),
        heartbeat_ms: now_ms,
        timeout_ms: plan.timeout_ms,
        who: who.to_owned(),
        bake_ms: plan.bake_ms,
    };
    if mirroring {
        routing.mirror = Some(Mirror {
            to: plan.to,
            percent: plan.mirror_percent,
        });
    } else {
        routing.weights = weights_with(plan.to, plan.steps[0].max(current));
    }
    routing.moving_from(before);
    routing.rollout = Some(rollout);
    Ok(Moved {
        action: "rollout-start",
        before,
        after: routing.weights,
        release: None,
    })
}

fn check_controller(rollout: &Rollout, controller: &str) -> Result<(), Refusal> {
    if rollout.controller != controller {
        return Err(Refusal::Conflict(format!(
            "the rollout is driven by controller {} now, not {controller}",
            rollout.controller
        )));
    }
    Ok(())
}

fn ended(
    rollout: &Rollout,
    name: &str,
    outcome: &str,
    detail: &str,
    peak: u32,
    after: ColorWeights,
    now_ms: i64,
) -> Release {
    let before = rollout.baseline;
    Release {
        id: rollout.id.clone(),
        service: name.to_owned(),
        kind: "rollout".into(),
        to: rollout.target,
        who: rollout.who.clone(),
        ended_by: String::new(),
        started_ms: rollout.started_ms,
        ended_ms: now_ms,
        outcome: outcome.to_owned(),
        peak_weight: peak,
        before,
        after,
        detail: detail.to_owned(),
    }
}

/// The highest share the target reached so far.
fn peak(rollout: &Rollout, weights: &ColorWeights) -> u32 {
    let reached = match rollout.phase {
        Phase::Mirroring => 0,
        Phase::Baking => 100,
        Phase::Shifting | Phase::Aborting => rollout.steps.get(rollout.step).copied().unwrap_or(0),
    };
    reached.max(weights.of(rollout.target))
}

/// The controller's verdict "this step passed": the next step, the end of
/// mirroring, or (after the last step) the end of the rollout. `step` and
/// `phase` name what passed, so a repeated call moves nothing twice.
pub fn advance(
    routing: &mut ServiceRouting,
    name: &str,
    controller: &str,
    phase: Phase,
    step: usize,
    now_ms: i64,
) -> Result<Moved, Refusal> {
    let weights = routing.weights;
    let rollout = running(routing, name)?;
    check_controller(rollout, controller)?;
    if rollout.paused {
        return Err(Refusal::Conflict(format!(
            "the rollout of {name} is paused; resume it first"
        )));
    }
    if rollout.phase != phase || rollout.step != step {
        return Err(Refusal::Conflict(format!(
            "the rollout of {name} is at {:?} step {}, not {phase:?} step {step}",
            rollout.phase, rollout.step
        )));
    }
    let before = weights;
    let target = rollout.target;
    let share = match rollout.phase {
        Phase::Mirroring => {
            rollout.phase = Phase::Shifting;
            rollout.step = 0;
            Some(rollout.steps[0].max(weights.of(target)))
        }
        Phase::Shifting if rollout.step + 1 < rollout.steps.len() => {
            rollout.step += 1;
            Some(rollout.steps[rollout.step])
        }
        Phase::Shifting if rollout.bake_ms > 0 => {
            rollout.phase = Phase::Baking;
            rollout.step_started_ms = now_ms;
            rollout.heartbeat_ms = now_ms;
            return Ok(Moved {
                action: "rollout-bake",
                before,
                after: weights,
                release: None,
            });
        }
        Phase::Shifting | Phase::Baking => None,
        Phase::Aborting => {
            // Down one step; steps below the current share, then the baseline.
            let now = weights.of(target);
            let lower = rollout.steps.iter().rev().copied().find(|s| *s < now);
            let baseline = rollout.baseline.of(target);
            match lower.filter(|s| *s > baseline) {
                Some(share) => Some(share),
                None => {
                    let release = ended(
                        rollout,
                        name,
                        "aborted",
                        "shifted back gradually",
                        peak(rollout, &weights),
                        rollout.baseline,
                        now_ms,
                    );
                    let baseline = rollout.baseline;
                    routing.weights = baseline;
                    routing.rollout = None;
                    routing.mirror = None;
                    return Ok(Moved {
                        action: "rollout-abort",
                        before,
                        after: baseline,
                        release: Some(release),
                    });
                }
            }
        }
    };
    match share {
        Some(share) => {
            rollout.step_started_ms = now_ms;
            rollout.heartbeat_ms = now_ms;
            routing.weights = weights_with(target, share);
            routing.mirror = None;
            Ok(Moved {
                action: "rollout-step",
                before,
                after: routing.weights,
                release: None,
            })
        }
        None => {
            let release = ended(rollout, name, "completed", "", 100, weights, now_ms);
            routing.rollout = None;
            routing.mirror = None;
            Ok(Moved {
                action: "rollout-complete",
                before,
                after: weights,
                release: Some(release),
            })
        }
    }
}

/// Pauses or resumes; a resumed step starts its window again. `controller`
/// (on resume) takes the rollout over when its driver has gone quiet.
pub fn set_paused(
    routing: &mut ServiceRouting,
    name: &str,
    paused: bool,
    controller: Option<&str>,
    now_ms: i64,
) -> Result<Moved, Refusal> {
    let weights = routing.weights;
    let rollout = running(routing, name)?;
    if rollout.phase == Phase::Aborting {
        return Err(Refusal::Conflict(format!(
            "the rollout of {name} is being aborted"
        )));
    }
    if !paused {
        if let Some(controller) = controller {
            // Two seconds without a heartbeat: the old driver is gone.
            if rollout.controller != controller
                && now_ms - rollout.heartbeat_ms < 2_000
                && !rollout.paused
            {
                return Err(Refusal::Conflict(format!(
                    "the rollout of {name} is running and driven by controller {}",
                    rollout.controller
                )));
            }
            rollout.controller = controller.to_owned();
        }
        rollout.step_started_ms = now_ms;
        rollout.heartbeat_ms = now_ms;
    } else if rollout.paused {
        return Err(Refusal::Conflict(format!(
            "the rollout of {name} is already paused"
        )));
    }
    rollout.paused = paused;
    Ok(Moved {
        action: if paused {
            "rollout-pause"
        } else {
            "rollout-resume"
        },
        before: weights,
        after: weights,
        release: None,
    })
}

/// Moves the target to 100% now and ends the rollout.
pub fn promote(routing: &mut ServiceRouting, name: &str, now_ms: i64) -> Result<Moved, Refusal> {
    let before = routing.weights;
    let rollout = running(routing, name)?;
    if rollout.phase == Phase::Aborting {
        return Err(Refusal::Conflict(format!(
            "the rollout of {name} is being aborted"
        )));
    }
    let after = weights_with(rollout.target, 100);
    let release = ended(rollout, name, "promoted", "", 100, after, now_ms);
    routing.weights = after;
    routing.rollout = None;
    routing.mirror = None;
    Ok(Moved {
        action: "rollout-promote",
        before,
        after,
        release: Some(release),
    })
}

/// Ends the rollout at once with the baseline weights back.
fn finish_abort(
    routing: &mut ServiceRouting,
    name: &str,
    outcome: &str,
    reason: &str,
    now_ms: i64,
) -> Result<Moved, Refusal> {
    let before = routing.weights;
    let rollout = running(routing, name)?;
    let baseline = rollout.baseline;
    let release = ended(
        rollout,
        name,
        outcome,
        reason,
        peak(rollout, &before),
        baseline,
        now_ms,
    );
    routing.weights = baseline;
    routing.rollout = None;
    routing.mirror = None;
    Ok(Moved {
        action: "rollout-abort",
        before,
        after: baseline,
        release: Some(release),
    })
}

/// Aborts: at once (the baseline weights back in one change), or gradually
/// (the `controller` then walks the shares back down with `advance`).
/// `failed` marks an abort decided by analysis.
pub fn abort(
    routing: &mut ServiceRouting,
    name: &str,
    reason: &str,
    failed: bool,
    gradual: Option<&str>,
    now_ms: i64,
) -> Result<Moved, Refusal> {
    let weights = routing.weights;
    let rollout = running(routing, name)?;
    match gradual {
        Some(controller) => {
            if rollout.phase == Phase::Aborting {
                return Err(Refusal::Conflict(format!(
                    "the rollout of {name} is already being aborted"
                )));
            }
            if rollout.phase == Phase::Mirroring {
                // Nobody is served by the target: nothing to walk back.
                return finish_abort(routing, name, "aborted", reason, now_ms);
            }
            rollout.phase = Phase::Aborting;
            rollout.paused = false;
            rollout.controller = controller.to_owned();
            rollout.heartbeat_ms = now_ms;
            rollout.step_started_ms = now_ms;
            Ok(Moved {
                action: "rollout-abort-gradual",
                before: weights,
                after: weights,
                release: None,
            })
        }
        None => finish_abort(
            routing,
            name,
            if failed { "failed" } else { "aborted" },
            reason,
            now_ms,
        ),
    }
}

/// Records that the controller is alive.
pub fn heartbeat(
    routing: &mut ServiceRouting,
    name: &str,
    controller: &str,
    now_ms: i64,
) -> Result<(), Refusal> {
    let rollout = running(routing, name)?;
    check_controller(rollout, controller)?;
    rollout.heartbeat_ms = now_ms;
    Ok(())
}

/// Aborts the rollout when its controller has been silent past its timeout.
pub fn expire(routing: &mut ServiceRouting, name: &str, now_ms: i64) -> Option<Moved> {
    let rollout = routing.rollout.as_ref()?;
    if !rollout.is_unattended(now_ms) {
        return None;
    }
    let silent = (now_ms - rollout.heartbeat_ms) / 1000;
    let reason = format!(
        "unattended: no controller heartbeat for {silent}s (timeout {}s)",
        rollout.timeout_ms / 1000
    );
    finish_abort(routing, name, "timed out", &reason, now_ms).ok()
}

/// Appends a finished release to the history, keeping the newest.
pub fn remember(config: &mut RoutingConfig, release: Release) {
    config.releases.push(release);
    let excess = config.releases.len().saturating_sub(MAX_RELEASES);
    config.releases.drain(..excess);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ColorEndpoints;

    fn orders() -> ServiceRouting {
        ServiceRouting::on_blue(ColorEndpoints {
            blue: vec!["127.0.0.1:1".into()],
            green: vec!["127.0.0.1:2".into()],
        })
    }

    fn plan(mirror_percent: u32) -> Plan {
        Plan {
            to: Color::Green,
            steps: vec![5, 50, 100],
            interval_ms: 1000,
            thresholds: Thresholds {
                max_error_ratio: 0.01,
                max_p99_ms: 500.0,
                max_relative_error: 2.0,
                min_requests: 10,
                judge: Judge::Sequential,
            },
            mirror_percent,
            timeout_ms: 5_000,
            controller: "c1".into(),
            bake_ms: 0,
        }
    }

    #[test]
    fn a_bake_keeps_the_rollout_open_at_100_and_an_abort_rolls_back() {
        let mut r = orders();
        let baked = Plan {
            bake_ms: 60_000,
            ..plan(0)
        };
        start(&mut r, "orders", &baked, "op", 0).expect("start");
        advance(&mut r, "orders", "c1", Phase::Shifting, 0, 10).expect("step 2");
        advance(&mut r, "orders", "c1", Phase::Shifting, 1, 20).expect("step 3");
        let bake = advance(&mut r, "orders", "c1", Phase::Shifting, 2, 30).expect("bake");
        assert_eq!((bake.action, bake.release), ("rollout-bake", None));
        assert_eq!(r.weights.green, 100);
        assert_eq!(r.rollout.as_ref().map(|r| r.phase), Some(Phase::Baking));
        // A regression in the window: the baseline back in one change.
        let back = abort(&mut r, "orders", "regressed", true, None, 40).expect("abort");
        assert_eq!(
            back.after,
            ColorWeights {
                blue: 100,
                green: 0
            }
        );
        let release = back.release.expect("release");
        assert_eq!(
            (release.outcome.as_str(), release.peak_weight),
            ("failed", 100)
        );
        // A quiet window completes it.
        start(&mut r, "orders", &baked, "op", 50).expect("start again");
        for step in 0..3 {
            advance(&mut r, "orders", "c1", Phase::Shifting, step, 60).expect("step");
        }
        let done = advance(&mut r, "orders", "c1", Phase::Baking, 2, 90).expect("baked");
        assert_eq!(
            done.release.map(|r| r.outcome),
            Some("completed".to_owned())
        );
        assert!(r.rollout.is_none());
    }

    #[test]
    fn steps_are_checked() {
        assert!(check_steps(&[5, 25, 50, 100]).is_ok());
        assert!(check_steps(&[100]).is_ok());
        assert_eq!(
            check_steps(&[]).expect_err("empty"),
            "the step list is empty; give shares such as 5,25,50,100"
        );
        assert_eq!(
            check_steps(&[50, 25, 100]).expect_err("order"),
            "steps must increase: 50,25,100"
        );
        assert_eq!(
            check_steps(&[5, 50]).expect_err("end"),
            "the last step must be 100"
        );
        assert!(check_steps(&[0, 100]).is_err());
        assert!(check_steps(&[5, 101]).is_err());
    }

    #[test]
    fn a_rollout_walks_its_steps_and_completes() {
        let mut r = orders();
        let moved = start(&mut r, "orders", &plan(0), "op", 0).expect("start");
        assert_eq!(moved.after, ColorWeights { blue: 95, green: 5 });
        assert!(matches!(
            start(&mut r, "orders", &plan(0), "op", 0),
            Err(Refusal::Conflict(_))
        ));
        assert!(matches!(
            switch(&mut r, "orders", Color::Green, "op", 0),
            Err(Refusal::Conflict(_))
        ));
        // A stale verdict moves nothing.
        assert!(advance(&mut r, "orders", "c1", Phase::Shifting, 1, 10).is_err());
        assert!(advance(&mut r, "orders", "c2", Phase::Shifting, 0, 10).is_err());
        advance(&mut r, "orders", "c1", Phase::Shifting, 0, 10).expect("step 2");
        assert_eq!(
            r.weights,
            ColorWeights {
                blue: 50,
                green: 50
            }
        );
        advance(&mut r, "orders", "c1", Phase::Shifting, 1, 20).expect("step 3");
        assert_eq!(r.weights.green, 100);
        let done = advance(&mut r, "orders", "c1", Phase::Shifting, 2, 30).expect("complete");
        let release = done.release.expect("release");
        assert_eq!(
            (release.outcome.as_str(), release.peak_weight),
            ("completed", 100)
        );
        assert!(r.rollout.is_none());
        // Rollback after the rollout: back to where it started.
        rollback(&mut r, "orders", "op", 40).expect("rollback");
        assert_eq!(
            r.weights,
            ColorWeights {
                blue: 100,
                green: 0
            }
        );
    }

    /// Rollback means all traffic to the stable color, however the weights
    /// got where they are, and a second rollback changes nothing.
    #[test]
    fn rollback_goes_to_the_stable_color_once() {
        let mut r = orders();
        switch(&mut r, "orders", Color::Green, "op", 1).expect("switch");
        assert_eq!(r.stable, Some(Color::Blue));
        let back = rollback(&mut r, "orders", "op", 2).expect("rollback");
        assert_eq!(back.after, weights_with(Color::Blue, 100));
        let release = back.release.expect("a release in the history");
        assert_eq!(
            (release.kind.as_str(), release.to),
            ("rollback", Color::Blue)
        );
        let again = rollback(&mut r, "orders", "op", 3).expect_err("nothing to roll back");
        assert!(
            matches!(&again, Refusal::Conflict(m) if m.contains("blue already serves 100%")),
            "{again:?}"
        );
        assert_eq!(r.weights, weights_with(Color::Blue, 100));

        // From a split set by hand, back to the color that had everything.
        r.moving_from(r.weights);
        r.weights = ColorWeights {
            blue: 50,
            green: 50,
        };
        rollback(&mut r, "orders", "op", 4).expect("rollback");
        assert_eq!(r.weights, weights_with(Color::Blue, 100));
    }

    #[test]
    fn mirroring_comes_first_and_failing_restores_the_baseline() {
        let mut r = orders();
        start(&mut r, "orders", &plan(20), "op", 0).expect("start");
        assert_eq!(r.weights.green, 0, "mirroring serves nobody from green");
        assert_eq!(
            r.mirror,
            Some(Mirror {
                to: Color::Green,
                percent: 20
            })
        );
        advance(&mut r, "orders", "c1", Phase::Mirroring, 0, 10).expect("mirror passed");
        assert_eq!((r.weights.green, r.mirror), (5, None));
        let moved =
            abort(&mut r, "orders", "error ratio 0.2 > 0.01", true, None, 20).expect("abort");
        assert_eq!(
            r.weights,
            ColorWeights {
                blue: 100,
                green: 0
            }
        );
        let release = moved.release.expect("release");
        assert_eq!(
            (release.outcome.as_str(), release.peak_weight),
            ("failed", 5)
        );
        assert!(matches!(
            abort(&mut r, "orders", "", false, None, 30),
            Err(Refusal::Conflict(_))
        ));
    }

    #[test]
    fn gradual_abort_walks_back_down() {
        let mut r = orders();
        start(&mut r, "orders", &plan(0), "op", 0).expect("start");
        advance(&mut r, "orders", "c1", Phase::Shifting, 0, 10).expect("50");
        abort(&mut r, "orders", "operator", false, Some("c2"), 20).expect("gradual");
        assert_eq!(r.weights.green, 50, "a gradual abort starts where it is");
        advance(&mut r, "orders", "c2", Phase::Aborting, 1, 30).expect("down");
        assert_eq!(r.weights.green, 5);
        let done = advance(&mut r, "orders", "c2", Phase::Aborting, 1, 40).expect("baseline");
        assert_eq!(
            r.weights,
            ColorWeights {
                blue: 100,
                green: 0
            }
        );
        assert_eq!(done.release.expect("release").outcome, "aborted");
    }

    #[test]
    fn pause_resume_promote_and_timeouts() {
        let mut r = orders();
        start(&mut r, "orders", &plan(0), "op", 0).expect("start");
        set_paused(&mut r, "orders", true, None, 10).expect("pause");
        assert!(
            advance(&mut r, "orders", "c1", Phase::Shifting, 0, 20).is_err(),
            "paused"
        );
        set_paused(&mut r, "orders", false, Some("c9"), 30).expect("resume takes over");
        assert_eq!(r.rollout.as_ref().expect("running").controller, "c9");
        heartbeat(&mut r, "orders", "c9", 1_000).expect("alive");
        assert!(
            heartbeat(&mut r, "orders", "c1", 1_000).is_err(),
            "the old driver is refused"
        );
        let mut expiring = r.clone();
        assert!(
            expire(&mut expiring, "orders", 5_000).is_none(),
            "within the timeout"
        );
        let release = expire(&mut expiring, "orders", 7_000)
            .and_then(|m| m.release)
            .expect("expired");
        assert_eq!(release.outcome, "timed out");
        assert_eq!(expiring.weights.green, 0);
        promote(&mut r, "orders", 2_000).expect("promote");
        assert_eq!(r.weights.green, 100);
        assert!(matches!(
            switch(&mut r, "orders", Color::Green, "op", 0),
            Err(Refusal::Conflict(_))
        ));
    }
}
