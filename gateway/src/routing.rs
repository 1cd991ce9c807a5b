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

use crate::metrics::GatewayMetrics;

pub use platform_routing::model::{
    Change, ColorEndpoints, ColorWeights, MAX_CHANGES, RoutingConfig, ServiceRouting,
};

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

    /// Chooses the color (as `choice` says: forced, by the caller's point,
    /// or by a draw) and an endpoint of it that was not `tried`, preferring
    /// endpoints that are not `ejected`. When every endpoint of the color is
    /// ejected, one is used anyway (a color is never emptied by ejection)
    /// unless `failover` allows the other color, which a forced color never
    /// does. Returns the color, the endpoint and whether the whole color is
    /// ejected.
    pub fn pick_where(
        &self,
        service: &str,
        choice: Choice,
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
        let mut color = match choice {
            Choice::Forced(color) => color,
            Choice::Sticky(point) => sticky_color(routing.weights, point),
            Choice::Random => {
                if draw_percent() < routing.weights.blue {
                    Color::Blue
                } else {
                    Color::Green
                }
            }
        };
        let pool = |c: Color| &pools[usize::from(c == Color::Green)];
        let all_ejected = |c: Color| pool(c).endpoints.iter().all(|e| ejected(e));
        let color_down = !pool(color).endpoints.is_empty() && all_ejected(color);
        let forced = matches!(choice, Choice::Forced(_));
        if color_down && failover && !forced {
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

/// How a request's color is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// This color whatever the weights say: a preview, a mirrored copy, the
    /// retry of an attempt that already has its color.
    Forced(Color),
    /// The caller's point, a stable hash of who it is (see
    /// [`sticky_color`]): the same caller gets the same color while the
    /// weights stay.
    Sticky(u64),
    /// A draw by weight, for a caller the gateway cannot tell apart.
    Random,
}

/// The color of the caller at `point` (a position in the whole `u64`
/// range, read as a fraction u in [0, 1)): green when u is below green's
/// share, blue above it. The boundary is the only thing a weight change
/// moves, and always in the same order of callers, so raising a color's
/// share keeps every caller it had and lowering it gives callers back; a
/// rollback (or any 100/0) puts everyone on one color. The order is fixed
/// rather than the target color's, so it cannot flip mid-release whoever
/// the target is: a release to blue takes the callers at the top of the
/// range first.
pub fn sticky_color(weights: ColorWeights, point: u64) -> Color {
    // floor(u * 100), in 0..100: u < green / 100 exactly when this < green.
    let percentile = u32::try_from((u128::from(point) * 100) >> 64).unwrap_or(99);
    if percentile < weights.green {
        Color::Green
    } else {
        Color::Blue
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
        // Rebuilt under the lock, so a change landing meanwhile is kept.
        self.swap(|live| Some(live.config.clone()));
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    pub fn replace(&self, config: RoutingConfig) {
        self.swap(|_| Some(config));
    }

    /// Serves a document this replica has just written, unless a newer
    /// generation is served already: the watch can deliver the next writer's
    /// document before this write's reply arrives, and serving the older one
    /// after it would undo that change here until the next event.
    pub fn publish_written(&self, config: RoutingConfig) -> bool {
        self.swap(|live| (config.generation >= live.config.generation).then_some(config))
    }

    /// Swaps in the snapshot `next` builds from the live one, under the
    /// write lock so that no change is lost between the read and the swap;
    /// `None` keeps the live one.
    fn swap(&self, next: impl FnOnce(&Snapshot) -> Option<RoutingConfig>) -> bool {
        let discovered = self.discovered();
        let mut guard = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        match next(&guard) {
            Some(config) => {
                *guard = Arc::new(Snapshot::new(config, &discovered));
                true
            }
            None => false,
        }
    }

    /// Publishes a document read from a source of truth (the routing file,
    /// the ConfigMap), or refuses an invalid one and keeps serving the last
    /// good state. `from` names the source in the log.
    pub fn apply(
        &self,
        metrics: &GatewayMetrics,
        parsed: Result<RoutingConfig, String>,
        from: &str,
    ) {
        match parsed {
            Ok(config) => {
                if self.snapshot().config != config {
                    tracing::info!(generation = config.generation, "{from} changed; applied");
                    metrics.observe_routing(&config);
                    self.replace(config);
                }
            }
            Err(error) => {
                metrics.reload_failures.inc();
                tracing::error!(%error, "{from} change refused; the last good routing keeps serving");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(blue: u32, green: u32) -> String {
        format!(
            r#"{{"services":{{"orders":{{"endpoints":{{"blue":["127.0.0.1:50052"],"green":["127.0.0.1:50152"]}},"weights":{{"blue":{blue},"green":{green}}}}}}}}}"#
        )
    }

    /// A pick with nothing ejected and nothing tried yet.
    fn pick(
        snapshot: &Snapshot,
        service: &str,
        forced: Option<Color>,
    ) -> Result<(Color, String), String> {
        let choice = forced.map_or(Choice::Random, Choice::Forced);
        snapshot
            .pick_where(service, choice, &[], |_| false, false)
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

    #[test]
    fn a_write_older_than_what_is_served_does_not_undo_it() {
        let document = |blue, generation| {
            let mut config = RoutingConfig::parse(&doc(blue, 100 - blue)).expect("valid");
            config.generation = generation;
            config
        };
        let routing = Routing::new(document(100, 1));
        // The watch delivered generation 3 before our write of 2 returned.
        routing.replace(document(50, 3));
        assert!(!routing.publish_written(document(0, 2)));
        assert_eq!(routing.snapshot().config, document(50, 3));
        assert!(routing.publish_written(document(0, 4)));
        assert_eq!(routing.snapshot().config.generation, 4);
    }

    /// The point of u = `percent` / 100 exactly (rounded up).
    fn at(percent: u32) -> u64 {
        u64::try_from((u128::from(percent) << 64).div_ceil(100)).unwrap_or(u64::MAX)
    }

    #[test]
    fn a_sticky_point_is_green_below_greens_share() {
        let weights = |green: u32| ColorWeights {
            blue: 100 - green,
            green,
        };
        for (green, point, want) in [
            (0, 0, Color::Blue),
            (0, u64::MAX, Color::Blue),
            (100, 0, Color::Green),
            (100, u64::MAX, Color::Green),
            (5, at(5) - 1, Color::Green),
            (5, at(5), Color::Blue),
            (25, at(5), Color::Green),
            (50, at(50) - 1, Color::Green),
            (50, at(50), Color::Blue),
            (99, u64::MAX, Color::Blue),
            (1, 0, Color::Green),
        ] {
            assert_eq!(
                sticky_color(weights(green), point),
                want,
                "green {green}%, point {point}"
            );
        }
    }

    #[test]
    fn a_sticky_caller_fails_over_and_a_forced_one_does_not() {
        let routing = Routing::new(RoutingConfig::parse(&doc(50, 50)).expect("valid"));
        let snapshot = routing.snapshot();
        let blue_down = |e: &str| e == "127.0.0.1:50052";
        let on_blue = Choice::Sticky(u64::MAX);
        let pick = |choice, failover| {
            snapshot
                .pick_where("orders", choice, &[], blue_down, failover)
                .expect("pick")
        };
        assert_eq!(
            pick(on_blue, false).0,
            Color::Blue,
            "no failover: its color"
        );
        let (color, _, down) = pick(on_blue, true);
        assert_eq!((color, down), (Color::Green, true), "failover");
        let (color, _, down) = pick(Choice::Forced(Color::Blue), true);
        assert_eq!((color, down), (Color::Blue, true), "a forced color stays");
        assert_eq!(pick(Choice::Sticky(0), true).0, Color::Green);
        // The same caller, the same color, pick after pick.
        let healthy = |_: &str| false;
        for point in [1, at(30), at(70), u64::MAX - 1] {
            let first = snapshot
                .pick_where("orders", Choice::Sticky(point), &[], healthy, false)
                .expect("pick")
                .0;
            for _ in 0..20 {
                let again = snapshot
                    .pick_where("orders", Choice::Sticky(point), &[], healthy, false)
                    .expect("pick");
                assert_eq!(again.0, first);
            }
        }
    }
}
