//! A release of several services at once (orders 0.4 that needs payments
//! 0.4): one rollout per service, driven in lockstep. A service moves to
//! the next step only once every service of the release has passed the
//! step it is at, and after the services it depends on have moved, so a
//! caller never gets a share of the new version before what it calls does.
//! One verdict: the first failure anywhere ends the whole release, and
//! every service goes back to where it started.

use std::collections::BTreeMap;
use std::sync::Mutex;

use platform_routing::release::Phase;
use tokio::sync::Notify;

/// Who calls whom, east-west: a service's rollout moves after the ones of
/// the services it calls (the `*_ADDR` settings of each service).
pub fn calls(service: &str) -> &'static [&'static str] {
    match service {
        "orders" => &["payments", "notifications"],
        _ => &[],
    }
}

/// `services` in dependency order: a service after every one it calls.
pub fn in_dependency_order(services: &[String]) -> Vec<String> {
    let mut order: Vec<String> = Vec::new();
    let mut left: Vec<String> = services.to_vec();
    while !left.is_empty() {
        let before = left.len();
        left.retain(|s| {
            let waits = calls(s)
                .iter()
                .any(|dep| services.iter().any(|x| x == dep) && !order.iter().any(|x| x == dep));
            if !waits {
                order.push(s.clone());
            }
            waits
        });
        if left.len() == before {
            // A cycle cannot come from `calls`; keep the given order.
            order.append(&mut left);
        }
    }
    order
}

/// Where a member's rollout is, in the order a rollout goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Mirroring,
    Step(usize),
    Baking,
    Done,
}

impl Stage {
    pub fn of(phase: Phase, step: usize) -> Self {
        match phase {
            Phase::Mirroring => Stage::Mirroring,
            Phase::Shifting | Phase::Aborting => Stage::Step(step),
            Phase::Baking => Stage::Baking,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    at: BTreeMap<String, Stage>,
    /// The stage each member has passed, waiting for the others.
    ready: BTreeMap<String, Stage>,
    failed: Option<String>,
}

/// The services of one release and where each is.
#[derive(Debug)]
pub struct Team {
    /// In dependency order.
    pub members: Vec<String>,
    state: Mutex<State>,
    pub wake: Notify,
}

impl Team {
    pub fn new(members: Vec<String>) -> Self {
        let state = State {
            at: members
                .iter()
                .map(|m| (m.clone(), Stage::Mirroring))
                .collect(),
            ..State::default()
        };
        Self {
            members,
            state: Mutex::new(state),
            wake: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `service` is at `stage` now.
    pub fn at(&self, service: &str, stage: Stage) {
        let mut state = self.lock();
        if state.at.get(service) != Some(&stage) {
            state.at.insert(service.to_owned(), stage);
            state.ready.remove(service);
            drop(state);
            self.wake.notify_waiters();
        }
    }

    /// `service` passed `stage`: whether it may move on now. It may once
    /// every member has passed that stage too, and every member it comes
    /// after has moved on already.
    pub fn may_advance(&self, service: &str, stage: Stage) -> bool {
        let mut state = self.lock();
        state.ready.insert(service.to_owned(), stage);
        let mut before = true;
        for member in &self.members {
            if member == service {
                before = false;
                continue;
            }
            let at = state.at.get(member).copied().unwrap_or(Stage::Mirroring);
            let passed = at > stage || (at == stage && state.ready.get(member) == Some(&stage));
            let moved = at > stage;
            if !(if before { moved } else { passed }) {
                return false;
            }
        }
        true
    }

    /// Records the release's failure (the first one wins) and wakes every
    /// member, so each takes its service back at once.
    pub fn fail(&self, service: &str, why: &str) {
        let mut state = self.lock();
        if state.failed.is_none() {
            state.failed = Some(format!("{service}: {why}"));
        }
        drop(state);
        self.wake.notify_waiters();
    }

    pub fn failed(&self) -> Option<String> {
        self.lock().failed.clone()
    }

    /// What is holding `service` back, for its progress line.
    pub fn waiting_for(&self, service: &str, stage: Stage) -> Vec<String> {
        let state = self.lock();
        self.members
            .iter()
            .filter(|m| *m != service)
            .filter(|m| {
                let at = state.at.get(*m).copied().unwrap_or(Stage::Mirroring);
                at < stage || (at == stage && state.ready.get(*m) != Some(&stage))
            })
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_service_comes_after_the_ones_it_calls() {
        assert_eq!(
            in_dependency_order(&names(&["orders", "payments"])),
            names(&["payments", "orders"])
        );
        assert_eq!(
            in_dependency_order(&names(&["notifications", "orders", "auth", "payments"])),
            names(&["notifications", "auth", "payments", "orders"])
        );
        assert_eq!(in_dependency_order(&names(&["orders"])), names(&["orders"]));
    }

    #[test]
    fn members_move_in_lockstep_callee_first() {
        let team = Team::new(names(&["payments", "orders"]));
        team.at("payments", Stage::Step(0));
        team.at("orders", Stage::Step(0));
        // Orders passed step 1 but payments has not moved on yet.
        assert!(!team.may_advance("orders", Stage::Step(0)));
        assert_eq!(
            team.waiting_for("orders", Stage::Step(0)),
            names(&["payments"])
        );
        // Payments passes too: it moves first (orders is ready).
        assert!(team.may_advance("payments", Stage::Step(0)));
        team.at("payments", Stage::Step(1));
        // Now orders follows.
        assert!(team.may_advance("orders", Stage::Step(0)));
        team.at("orders", Stage::Step(1));
        // Payments may not run ahead of orders by two steps.
        assert!(!team.may_advance("payments", Stage::Step(1)));
        assert_eq!(team.failed(), None);
        team.fail("orders", "error ratio 20%");
        team.fail("payments", "later");
        assert_eq!(team.failed().as_deref(), Some("orders: error ratio 20%"));
    }
}
