//! The gateway's status document, `GET /admin/status`: per service, the
//! routing (weights, the rollout in progress, the mirror) next to what the
//! gateway sees of each color (endpoint health and versions, and the last
//! minute of live and mirrored calls). The gateway writes it; `platformctl`
//! and the load tools read it through these types, so a document of
//! another shape is refused with the field it lacks, never read as zeros.

use std::collections::BTreeMap;

use platform_runtime::Color;
use serde::{Deserialize, Serialize};

use crate::model::ColorWeights;
use crate::release::{Mirror, Rollout};

/// The whole `/admin/status` document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Unix milliseconds when the gateway took the numbers.
    pub at_ms: i64,
    /// The generation of the routing document the gateway serves from.
    pub generation: u64,
    pub services: BTreeMap<String, ServiceStatus>,
    /// Whether the gateway keeps a caller on one color (`STICKY_CANARY`):
    /// the target's share of calls is then the canary users' share, not
    /// the weight, and the release judge uses the share it observes.
    #[serde(default)]
    pub sticky: bool,
}

/// One service: its routing and the status of each color.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub weights: ColorWeights,
    /// The weights before the latest change.
    pub previous_weights: Option<ColorWeights>,
    /// The rollout in progress, if any.
    pub rollout: Option<Rollout>,
    /// Reads copied to a color that serves nobody yet, if any.
    pub mirror: Option<Mirror>,
    pub colors: ColorStatuses,
}

/// The status of each color of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColorStatuses {
    pub blue: ColorStatus,
    pub green: ColorStatus,
}

impl ColorStatuses {
    pub fn of(&self, color: Color) -> &ColorStatus {
        match color {
            Color::Blue => &self.blue,
            Color::Green => &self.green,
        }
    }
}

/// One color of a service: its weight, the health and versions of its
/// endpoints, and its calls over the last minute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColorStatus {
    /// Its share of the traffic, in percent.
    pub weight: u32,
    /// How many of its endpoints answered SERVING.
    pub healthy: usize,
    /// The releases its endpoints run, sorted, without repeats.
    pub versions: Vec<String>,
    /// The schemas (highest migration known) its endpoints run, sorted,
    /// without repeats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<i64>,
    /// What the health check of each endpoint found.
    pub endpoints: Vec<Probe>,
    /// Live calls.
    pub live: Summary,
    /// Copies of reads sent to it while it is mirrored to.
    pub mirror: Summary,
}

/// Calls to one color over the last minute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub rate_per_second: f64,
    pub requests: u64,
    /// Calls that ended in a server fault.
    pub server_errors: u64,
    /// Server errors per request; 0 when there were no requests.
    pub error_ratio: f64,
    /// The 99th percentile latency, in milliseconds; none when no call was timed.
    pub p99_ms: Option<f64>,
}

/// What a health check of one endpoint found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// `host:port`.
    pub endpoint: String,
    /// It answered SERVING.
    pub serving: bool,
    /// The release the endpoint runs, from its `x-service-version` header.
    pub version: Option<String>,
    /// Its build (crate version and commit), from `x-service-build`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    /// The highest migration it knows, from `x-service-schema`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<i64>,
    /// Why it is not serving, when the check itself failed.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A document as the gateway writes it: orders half way through a
    /// rollout to green, payments mirroring reads to green.
    const DOCUMENT: &str = r#"{
      "at_ms": 1700000000250,
      "generation": 12,
      "sticky": false,
      "services": {
        "orders": {
          "weights": {"blue": 75, "green": 25},
          "previous_weights": {"blue": 95, "green": 5},
          "rollout": {
            "id": "rel-1", "target": "green", "baseline": {"blue": 100, "green": 0},
            "steps": [5, 25, 50, 100], "step": 1, "phase": "shifting", "paused": false,
            "interval_ms": 30000,
            "thresholds": {"max_error_ratio": 0.01, "max_p99_ms": 500.0, "max_relative_error": 2.0, "min_requests": 50, "judge": "sequential"},
            "mirror_percent": 0, "started_ms": 1699999990000, "step_started_ms": 1699999995000,
            "controller": "4242-ctl-1", "heartbeat_ms": 1700000000000, "timeout_ms": 120000, "who": "ana", "bake_ms": 30000
          },
          "mirror": null,
          "colors": {
            "blue": {
              "weight": 75, "healthy": 1, "versions": ["1.0.0"], "schemas": [2],
              "endpoints": [{"endpoint": "127.0.0.1:50052", "serving": true, "version": "1.0.0",
                             "build": "0.1.0+0123456789ab", "schema": 2, "error": null}],
              "live": {"rate_per_second": 1.0, "requests": 60, "server_errors": 0, "error_ratio": 0.0, "p99_ms": 2.1},
              "mirror": {"rate_per_second": 0.0, "requests": 0, "server_errors": 0, "error_ratio": 0.0, "p99_ms": null}
            },
            "green": {
              "weight": 25, "healthy": 0, "versions": [],
              "endpoints": [{"endpoint": "127.0.0.1:50152", "serving": false, "version": null, "error": "connection refused"}],
              "live": {"rate_per_second": 0.3333333333333333, "requests": 20, "server_errors": 4, "error_ratio": 0.2, "p99_ms": null},
              "mirror": {"rate_per_second": 0.0, "requests": 0, "server_errors": 0, "error_ratio": 0.0, "p99_ms": null}
            }
          }
        },
        "payments": {
          "weights": {"blue": 100, "green": 0},
          "previous_weights": null,
          "rollout": null,
          "mirror": {"to": "green", "percent": 10},
          "colors": {
            "blue": {
              "weight": 100, "healthy": 1, "versions": ["1.0.0"],
              "endpoints": [{"endpoint": "127.0.0.1:50053", "serving": true, "version": "1.0.0", "error": null}],
              "live": {"rate_per_second": 2.0, "requests": 120, "server_errors": 1, "error_ratio": 0.008333333333333333, "p99_ms": 3.0517578125},
              "mirror": {"rate_per_second": 0.0, "requests": 0, "server_errors": 0, "error_ratio": 0.0, "p99_ms": null}
            },
            "green": {
              "weight": 0, "healthy": 1, "versions": ["2.0.0"],
              "endpoints": [{"endpoint": "127.0.0.1:50153", "serving": true, "version": "2.0.0", "error": null}],
              "live": {"rate_per_second": 0.0, "requests": 0, "server_errors": 0, "error_ratio": 0.0, "p99_ms": null},
              "mirror": {"rate_per_second": 0.2, "requests": 12, "server_errors": 0, "error_ratio": 0.0, "p99_ms": 4.76837158203125}
            }
          }
        }
      }
    }"#;

    #[test]
    fn reads_and_writes_the_gateway_document_unchanged() {
        let status: Status = serde_json::from_str(DOCUMENT).expect("parses");
        let orders = &status.services["orders"];
        assert_eq!(orders.weights.of(Color::Green), 25);
        assert_eq!(
            orders.rollout.as_ref().map(|r| (r.target, r.step)),
            Some((Color::Green, 1))
        );
        assert_eq!(orders.colors.of(Color::Green).live.p99_ms, None);
        assert_eq!(
            orders.colors.of(Color::Green).endpoints[0].error.as_deref(),
            Some("connection refused")
        );
        assert_eq!(
            status.services["payments"].mirror,
            Some(Mirror {
                to: Color::Green,
                percent: 10
            })
        );

        let written = serde_json::to_value(&status).expect("serializes");
        let original: serde_json::Value = serde_json::from_str(DOCUMENT).expect("json");
        assert_eq!(written, original);
        let again: Status = serde_json::from_value(written).expect("parses again");
        assert_eq!(again, status);
    }

    #[test]
    fn refuses_a_document_missing_a_field_and_names_it() {
        let document = DOCUMENT.replacen(r#""healthy": 1, "#, "", 1);
        let err = serde_json::from_str::<Status>(&document).expect_err("incomplete");
        assert!(
            err.to_string().starts_with("missing field `healthy`"),
            "{err}"
        );

        let document = DOCUMENT.replacen(r#""generation": 12,"#, "", 1);
        let err = serde_json::from_str::<Status>(&document).expect_err("incomplete");
        assert!(
            err.to_string().starts_with("missing field `generation`"),
            "{err}"
        );
    }
}
