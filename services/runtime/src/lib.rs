//! What every service of the platform shares: typed config from the
//! environment, storage with embedded expand/contract migrations, tokens and
//! caller identity, telemetry (JSON logs, OTLP traces, Prometheus metrics),
//! fault injection, and a host that serves a tonic service with health,
//! reflection and a graceful drain.
#![forbid(unsafe_code)]

pub mod caller;
pub mod config;
pub mod deadline;
pub mod exposition;
pub mod fault;
pub mod files;
pub mod host;
pub mod ids;
pub mod metrics;
pub mod observe;
pub mod outgoing;
pub mod paging;
pub mod storage;
pub mod telemetry;
pub mod time;
pub mod tokens;
pub mod validate;
pub mod version;
pub mod writer;

pub use config::{Color, ConfigError, Env, ServiceConfig};
pub use host::{Host, RunningService, StartError};
