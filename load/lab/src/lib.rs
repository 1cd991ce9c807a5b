//! Load tooling for the platform, each part a binary of this crate:
//! `release-experiment` (release strategies under load, `load/experiment.sh`),
//! `drill` (failure drills with an integrity check, `load/drill.sh`),
//! `capacity` (CPU per request rate, the knee, `load/capacity.sh`),
//! `edge-attack` (hostile clients against ordinary ones, `load/hostile.sh`),
//! `bench-orders` (orders' calls, binaries side by side, `load/bench-orders.sh`) and
//! `judge-sim` (the release judge on simulated rollouts, no platform needed).
//! The library is what they share: starting the platform, running k6 and
//! reading its per-request output, sampling the gateway, plotting,
//! driving wrk and h2load.
#![forbid(unsafe_code)]

pub mod attacks;
pub mod drills;
pub mod edge_report;
pub mod figures;
pub mod grpc;
pub mod h1;
pub mod h2load;
pub mod http;
pub mod integrity;
pub mod judge_report;
pub mod judge_sim;
pub mod k6;
pub mod open_loop;
pub mod orders_bench;
pub mod ordinary;
pub mod platform;
pub mod plot;
pub mod postgres;
pub mod procs;
pub mod repeats;
pub mod report;
pub mod restore;
pub mod sample;
pub mod strategy;
pub mod usage;
pub mod writer;
pub mod wrk;
