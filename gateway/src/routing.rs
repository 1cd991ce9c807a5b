//! Routing state: per service, the endpoints of each color and the weight of
//! each color. One source of truth (a routing file, or a ConfigMap in a
//! cluster) is read into an immutable snapshot; a change swaps the whole
//! snapshot at once, so a request sees the old state or the new one, never a
//! mix, and the next request after a change already uses it.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use platform_runtime::Color;
use serde::{Deserialize, Serialize};

/// The weight of each color, in percent; they add up to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColorWeights {
    pub blue: u32,
    pub green: u32,
}

impl ColorWeights {
    pub fn validate(&self) -> Result<(), String> {
        // Summed wide: u32 weights near the maximum must not wrap to 100.
        let sum = u64::from(self.blue) + u64::from(self.green);
        if self.blue > 100 || self.green > 100 || sum != 100 {
            return Err(format!(
                "weights are percentages from 0 to 100 that add up to 100, got blue {} + green {} = {sum}",
                self.blue, self.green
            ));
        }
        Ok(())
    }

    pub fn of(&self, color: Color) -> u32 {
        match color {
            Color::Blue => self.blue,
            Color::Green => self.green,
        }
    }
}

/// The endpoints (`host:port`) of each color.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColorEndpoints {
    pub blue: Vec<String>,
    pub green: Vec<String>,
}

impl ColorEndpoints {
    pub fn of(&self, color: Color) -> &[String] {
        match color {
            Color::Blue => &self.blue,
            Color::Green => &self.green,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceRouting {
    pub endpoints: ColorEndpoints,
    pub weights: ColorWeights,
    /// What `rollback` goes back to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_weights: Option<ColorWeights>,
    /// The rollout in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::rollout::Rollout>,
    /// Reads copied to a color that serves nobody yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<crate::rollout::Mirror>,
}

/// One recorded change: who, when, what before and after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub generation: u64,
    pub at_ms: i64,
    pub who: String,
    pub service: String,
    pub action: String,
    pub before: ColorWeights,
    pub after: ColorWeights,
}

/// The contents of the source of truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingConfig {
    #[serde(default)]
    pub generation: u64,
    pub services: BTreeMap<String, ServiceRouting>,
    /// The latest changes, newest last (at most [`MAX_CHANGES`]).
    #[serde(default)]
    pub changes: Vec<Change>,
    /// Finished releases, newest last (at most [`crate::rollout::MAX_RELEASES`]).
    #[serde(default)]
    pub releases: Vec<crate::rollout::Release>,
}

pub const MAX_CHANGES: usize = 200;

impl RoutingConfig {
    /// Parses and checks a routing document; the error says what to fix.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: RoutingConfig =
            serde_json::from_str(text).map_err(|e| format!("invalid routing JSON: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.services.is_empty() {
            return Err("no services: the routing document must name at least one".into());
        }
        for (name, service) in &self.services {
            service
                .weights
                .validate()
                .map_err(|e| format!("{name}: {e}"))?;
            for color in Color::ALL {
                for endpoint in service.endpoints.of(color) {
                    let ok = endpoint.rsplit_once(':').is_some_and(|(host, port)| {
                        !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
                    });
                    if !ok {
                        return Err(format!(
                            "{name}: {color} endpoint {endpoint:?} is not host:port"
                        ));
                    }
                }
                if service.weights.of(color) > 0 && service.endpoints.of(color).is_empty() {
                    return Err(format!(
                        "{name}: {color} has weight {} but no endpoints",
                        service.weights.of(color)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Records `change` as the next generation, keeping the newest [`MAX_CHANGES`].
    pub fn bump(&mut self, change: &mut Change) {
        self.generation += 1;
        change.generation = self.generation;
        self.changes.push(change.clone());
        let excess = self.changes.len().saturating_sub(MAX_CHANGES);
        self.changes.drain(..excess);
    }

    /// Records a weight change made by a release transition, and the
    /// release it ended, if any.
    pub fn record(&mut self, service: &str, who: &str, moved: crate::rollout::Moved) -> Change {
        if let Some(mut release) = moved.release {
            release.ended_by = who.to_owned();
            crate::rollout::remember(self, release);
        }
        Change {
            generation: 0,
            at_ms: platform_runtime::time::now_ms(),
            who: who.to_owned(),
            service: service.to_owned(),
            action: moved.action.to_owned(),
            before: moved.before,
            after: moved.after,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// A color's endpoints, taken in turn.
#[derive(Debug)]
struct Pool {
    endpoints: Vec<String>,
    next: AtomicUsize,
}

/// An immutable view of the routing state.
#[derive(Debug)]
pub struct Snapshot {
    pub config: RoutingConfig,
    pools: BTreeMap<String, [Pool; 2]>,
}

/// Endpoints found by discovery: `name:port` of a `k8s:name:port` entry ->
/// the addresses of its ready pods.
pub type Discovered = HashMap<String, Vec<String>>;

/// The prefix of an endpoint that names a Kubernetes Service, whose pods
/// (from its EndpointSlices) are the endpoints.
pub const DISCOVERED: &str = "k8s:";

/// The `name:port` of every discovered endpoint the routing names.
pub fn discovery_targets(config: &RoutingConfig) -> Vec<String> {
    let mut targets: Vec<String> = config
        .services
        .values()
        .flat_map(|s| s.endpoints.blue.iter().chain(&s.endpoints.green))
        .filter_map(|e| e.strip_prefix(DISCOVERED).map(str::to_owned))
        .collect();
    targets.sort();
    targets.dedup();
    targets
}

impl Snapshot {
    /// The endpoints of a color as requests see them (discovery expanded).
    pub fn endpoints(&self, service: &str, color: Color) -> Vec<String> {
        self.pools
            .get(service)
            .map(|pools| pools[usize::from(color == Color::Green)].endpoints.clone())
            .unwrap_or_default()
    }

    fn new(config: RoutingConfig, discovered: &Discovered) -> Self {
        let expand = |endpoints: &[String]| -> Vec<String> {
            endpoints
                .iter()
                .flat_map(|e| match e.strip_prefix(DISCOVERED) {
                    Some(target) => discovered.get(target).cloned().unwrap_or_default(),
                    None => vec![e.clone()],
                })
                .collect()
        };
        let pools = config
            .services
            .iter()
            .map(|(name, s)| {
                let pool = |c: Color| Pool {
                    endpoints: expand(s.endpoints.of(c)),
                    next: AtomicUsize::new(0),
                };
                (name.clone(), [pool(Color::Blue), pool(Color::Green)])
            })
            .collect();
        Self { config, pools }
    }

    /// Chooses the color (by weight, or `forced`) and an endpoint of it that
    /// was not `tried`, preferring endpoints that are not `ejected`. When
    /// every endpoint of the color is ejected, one is used anyway (a color is
    /// never emptied by ejection) unless `failover` allows the other color.
    /// Returns the color, the endpoint and whether the whole color is ejected.
    pub fn pick_where(
        &self,
        service: &str,
        forced: Option<Color>,
        tried: &[String],
        ejected: impl Fn(&str) -> bool,
        failover: bool,
    ) -> Result<(Color, String, bool), String> {
        let routing = self
            .config
            .services
            .get(service)
            .ok_or_else(|| format!("no routing for service {service:?}"))?;
        let pools = self
            .pools
            .get(service)
            .ok_or_else(|| format!("no routing for service {service:?}"))?;
        let mut color = forced.unwrap_or_else(|| {
            if draw_percent() < routing.weights.blue {
                Color::Blue
            } else {
                Color::Green
            }
        });
        let pool = |c: Color| &pools[usize::from(c == Color::Green)];
        let all_ejected = |c: Color| pool(c).endpoints.iter().all(|e| ejected(e));
        let color_down = !pool(color).endpoints.is_empty() && all_ejected(color);
        if color_down && failover && forced.is_none() {
            let other = if color == Color::Blue {
                Color::Green
            } else {
                Color::Blue
            };
            if !pool(other).endpoints.is_empty() && !all_ejected(other) {
                color = other;
            }
        }
        let pool = pool(color);
        let n = pool.endpoints.len();
        if n == 0 {
            return Err(format!("{service} has no {color} endpoints"));
        }
        let start = pool.next.fetch_add(1, Ordering::Relaxed);
        let candidates: Vec<&String> = (0..n)
            .map(|i| &pool.endpoints[(start + i) % n])
            .filter(|e| !tried.contains(e))
            .collect();
        let endpoint = candidates
            .iter()
            .find(|e| !ejected(e))
            .or_else(|| candidates.first())
            .ok_or_else(|| format!("{service} ({color}): every endpoint was tried"))?;
        Ok((color, (*endpoint).clone(), color_down))
    }
}

/// A uniform draw from 0..100, from a per-thread xorshift generator.
pub fn draw_percent() -> u32 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new({
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u8(0);
            h.finish() | 1
        });
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        ((x >> 32) % 100) as u32
    })
}

/// The live routing state, swapped whole on every change.
#[derive(Debug, Clone)]
pub struct Routing {
    current: Arc<RwLock<Arc<Snapshot>>>,
    discovered: Arc<RwLock<Discovered>>,
}

impl Routing {
    pub fn new(config: RoutingConfig) -> Self {
        Self {
            current: Arc::new(RwLock::new(Arc::new(Snapshot::new(
                config,
                &Discovered::new(),
            )))),
            discovered: Arc::new(RwLock::new(Discovered::new())),
        }
    }

    fn discovered(&self) -> Discovered {
        match self.discovered.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// New discovery results: the same routing over the pods that are ready now.
    pub fn set_discovered(&self, discovered: Discovered) {
        match self.discovered.write() {
            Ok(mut guard) => *guard = discovered,
            Err(poisoned) => *poisoned.into_inner() = discovered,
        }
        let config = self.snapshot().config.clone();
        self.replace(config);
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn replace(&self, config: RoutingConfig) {
        let snapshot = Arc::new(Snapshot::new(config, &self.discovered()));
        match self.current.write() {
            Ok(mut guard) => *guard = snapshot,
            Err(poisoned) => *poisoned.into_inner() = snapshot,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_are_percentages_that_add_up() {
        for (blue, green, ok) in [
            (100, 0, true),
            (37, 63, true),
            (0, 100, true),
            (50, 49, false),
            (101, 0, false),
            (u32::MAX, 101, false),
            (u32::MAX, u32::MAX, false),
        ] {
            assert_eq!(
                ColorWeights { blue, green }.validate().is_ok(),
                ok,
                "{blue}/{green}"
            );
        }
    }

    fn doc(blue: u32, green: u32) -> String {
        format!(
            r#"{{"services":{{"orders":{{"endpoints":{{"blue":["127.0.0.1:50052"],"green":["127.0.0.1:50152"]}},"weights":{{"blue":{blue},"green":{green}}}}}}}}}"#
        )
    }

    #[test]
    fn validates_documents() {
        assert!(RoutingConfig::parse(&doc(100, 0)).is_ok());
        let err = RoutingConfig::parse(&doc(90, 20)).expect_err("sum");
        assert_eq!(
            err,
            "orders: weights are percentages from 0 to 100 that add up to 100, got blue 90 + green 20 = 110"
        );
        assert!(
            RoutingConfig::parse("{")
                .expect_err("json")
                .starts_with("invalid routing JSON")
        );
        let no_green = doc(0, 100).replace(r#""green":["127.0.0.1:50152"]"#, r#""green":[]"#);
        assert_eq!(
            RoutingConfig::parse(&no_green).expect_err("empty"),
            "orders: green has weight 100 but no endpoints"
        );
        let bad = doc(100, 0).replace("127.0.0.1:50052", "localhost");
        assert!(
            RoutingConfig::parse(&bad)
                .expect_err("addr")
                .contains("is not host:port")
        );
    }

    /// A pick with nothing ejected and nothing tried yet.
    fn pick(
        snapshot: &Snapshot,
        service: &str,
        forced: Option<Color>,
    ) -> Result<(Color, String), String> {
        snapshot
            .pick_where(service, forced, &[], |_| false, false)
            .map(|(color, endpoint, _)| (color, endpoint))
    }

    #[test]
    fn picks_by_weight_and_balances_endpoints() {
        let mut config = RoutingConfig::parse(&doc(90, 10)).expect("valid");
        config
            .services
            .get_mut("orders")
            .expect("orders")
            .endpoints
            .blue
            .push("127.0.0.1:60052".into());
        let routing = Routing::new(config);
        let snapshot = routing.snapshot();
        let mut counts = BTreeMap::new();
        for _ in 0..10_000 {
            let (color, endpoint) = pick(&snapshot, "orders", None).expect("pick");
            *counts.entry((color.as_str(), endpoint)).or_insert(0) += 1;
        }
        let blue: i32 = counts
            .iter()
            .filter(|((c, _), _)| *c == "blue")
            .map(|(_, n)| n)
            .sum();
        assert!(
            (8_700..=9_300).contains(&blue),
            "blue got {blue} of 10000 at 90%"
        );
        let per_endpoint: Vec<i32> = counts
            .iter()
            .filter(|((c, _), _)| *c == "blue")
            .map(|(_, n)| *n)
            .collect();
        assert!(
            (per_endpoint[0] - per_endpoint[1]).abs() <= 1,
            "round robin: {per_endpoint:?}"
        );
        assert_eq!(
            pick(&snapshot, "orders", Some(Color::Green))
                .expect("forced")
                .0,
            Color::Green
        );
        assert!(pick(&snapshot, "billing", None).is_err());
        routing.replace(RoutingConfig::parse(&doc(0, 100)).expect("valid"));
        assert_eq!(
            pick(&routing.snapshot(), "orders", None).expect("pick").0,
            Color::Green
        );
    }
}
