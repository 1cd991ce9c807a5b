//! The routing document: per service, the endpoints and weight of each
//! color, the stable color, the rollout in progress and mirror, the change
//! history and the finished releases. This is the one definition of the
//! file (or ConfigMap) that the gateway serves from, `platformctl` drives
//! and the load tools read: plain typed data with its invariants, parsed
//! and written in one place.

use std::collections::BTreeMap;

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
    /// The weights before the latest change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_weights: Option<ColorWeights>,
    /// The stable color: the one that had all the traffic before the latest
    /// release or weight change moved some of it away. `rollback` sends all
    /// traffic back to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<Color>,
    /// The rollout in progress, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::release::Rollout>,
    /// Reads copied to a color that serves nobody yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<crate::release::Mirror>,
}

impl ServiceRouting {
    /// A service that sends all of its traffic to blue, with no release in
    /// progress and no history.
    pub fn on_blue(endpoints: ColorEndpoints) -> Self {
        Self {
            endpoints,
            weights: ColorWeights {
                blue: 100,
                green: 0,
            },
            previous_weights: None,
            stable: None,
            rollout: None,
            mirror: None,
        }
    }

    /// Notes that the weights are about to move away from `before`: they
    /// become the previous weights, and a color that had all the traffic
    /// becomes the stable color.
    pub fn moving_from(&mut self, before: ColorWeights) {
        self.previous_weights = Some(before);
        if let Some(color) = Color::ALL.into_iter().find(|c| before.of(*c) == 100) {
            self.stable = Some(color);
        }
    }
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
    /// Finished releases, newest last (at most [`crate::release::MAX_RELEASES`]).
    #[serde(default)]
    pub releases: Vec<crate::release::Release>,
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
    pub fn record(&mut self, service: &str, who: &str, moved: crate::release::Moved) -> Change {
        if let Some(mut release) = moved.release {
            release.ended_by = who.to_owned();
            crate::release::remember(self, release);
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
}
