//! `judge-sim`: the release judge on simulated rollouts. Each scenario
//! (a healthy, a bad, a subtle, a slow release, and a platform-wide
//! incident) is rolled out call by call with the new judge and with today's
//! gate on the same calls, driven as `platformctl rollout` drives them;
//! writes `release-judge.md` and its SVG plots. Needs no platform.
//!
//! Run it with `cargo run --release -p load-lab --bin judge-sim`.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use load_lab::judge_report::{self, Plan};

#[derive(Debug, Parser)]
#[command(
    name = "judge-sim",
    about = "Simulated rollouts judged by the new judge and today's gate; a report with plots"
)]
struct Args {
    #[arg(long, default_value = "load/reports")]
    out_dir: PathBuf,
    /// Rollouts per judge in each row of every scenario.
    #[arg(long, default_value_t = Plan::default().rollouts)]
    rollouts: usize,
    /// Healthy steps per weight for the look-frequency curve.
    #[arg(long, default_value_t = Plan::default().curve_steps)]
    curve_steps: usize,
    #[arg(long, default_value_t = Plan::default().seed)]
    seed: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.rollouts > 0, "--rollouts must be at least 1");
    let plan = Plan {
        rollouts: args.rollouts,
        curve_steps: args.curve_steps.max(1),
        seed: args.seed,
        ..Plan::default()
    };
    let started = Instant::now();
    let results = judge_report::run(&plan);
    let path = judge_report::write(
        &args.out_dir,
        &plan,
        &results,
        started.elapsed().as_secs_f64(),
    )
    .context("cannot write the report")?;
    println!(
        "wrote {} in {:.0} s",
        path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
