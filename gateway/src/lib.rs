//! The edge gateway: the one place that knows JSON, and the one place that
//! decides which color serves each request.
#![forbid(unsafe_code)]

pub mod errors;
pub mod http_rule;
pub mod routes;
pub mod transcode;
