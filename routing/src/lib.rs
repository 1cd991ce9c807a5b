//! The routing model, shared by the gateway (which serves from it and is
//! its only writer at run time), `platformctl` (which drives releases
//! through the gateway's admin API and writes the file at `up`) and the
//! load tools (which read it back). [`model`] is the document and its
//! invariants; [`release`] is every transition a release makes, as pure
//! functions of one service's routing; [`view`] is the gateway's status
//! document (`/admin/status`), the routing seen next to each color's health
//! and traffic; [`judge`] is the release judge's arithmetic, a sequential
//! test of a target color's server errors against the live color's;
//! [`verdict`] is a rollout step's whole judgement, those tests and the
//! rollout's gates.

pub mod judge;
pub mod model;
pub mod release;
pub mod verdict;
pub mod view;

pub use model::{Change, ColorEndpoints, ColorWeights, RoutingConfig, ServiceRouting};
