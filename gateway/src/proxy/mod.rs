//! The data plane: every request, from the socket to the answer, and
//! nothing that decides what to serve. It reads the routing snapshot the
//! control plane publishes and never reaches the control plane itself.
//!
//! Top to bottom, as a request travels:
//! - listen: [`listen`] (accept within connection limits, phase deadlines),
//!   [`conn`], [`tls`], [`linger`];
//! - admit: [`request`] (request id, span, this client's share), [`admit`]
//!   (public routes, bearer tokens, concurrency and rate, with [`limits`]
//!   and [`credentials`]), [`state`] (the preview color, per-route settings);
//! - dispatch: [`local`] (the gateway's own gRPC services), [`grpc`]
//!   (native gRPC passed through), [`docs`] (the API's pages), [`rest`]
//!   (JSON transcoded by the contract), with [`body`] and [`forward`];
//! - call: [`upstream`] (pick color and endpoint from the snapshot, retries,
//!   failover, mirroring) with [`outliers`] and [`affinity`] (who the caller
//!   is, so its color is sticky);
//! - respond: [`errors`], the one table from failure to status;
//! - observe: [`access`] (metrics and access log at the outcome), [`stats`]
//!   (per-color outcomes for release analysis).

pub mod access;
pub mod admit;
pub mod affinity;
pub mod body;
pub mod conn;
pub mod credentials;
pub mod docs;
pub mod errors;
pub mod forward;
pub mod grpc;
pub mod limits;
pub mod linger;
pub(crate) mod listen;
pub mod local;
pub mod outliers;
pub(crate) mod request;
pub mod rest;
pub mod state;
pub mod stats;
pub mod tls;
pub mod upstream;
