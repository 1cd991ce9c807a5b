//! `platformctl`: runs the whole platform on one machine (`up`), runs a
//! single service in the foreground (`service`, what `up` starts for each
//! service and color), and drives releases through the gateway's admin API
//! (`status`, `switch`, `rollback`, `rollout` and its controls, `history`).
#![forbid(unsafe_code)]

mod backup;
mod catalog;
mod databases;
mod observe;
mod ports;
mod release;
mod releases;
mod supervisor;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "platformctl",
    version,
    about = "Run and release the platform",
    after_help = release::exit::HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start all four services in both colors, restart any that dies, stop all on Ctrl-C.
    Up(up::UpArgs),
    /// Run one service in the foreground, configured from the environment.
    Service {
        /// auth, orders, payments or notifications
        name: String,
    },
    /// Run the edge gateway in the foreground, configured from the environment.
    Gateway,
    /// Which migrations a service's database lacks; --contract applies the
    /// contract steps once every endpoint runs a release that knows them.
    #[command(after_help = release::exit::HELP)]
    Migrate(release::MigrateArgs),
    /// The releases recorded in releases.toml; build one to run beside the current.
    Releases(releases::ReleasesArgs),
    /// The prices orders are charged at: list them, or set one.
    Catalog(catalog::CatalogArgs),
    /// Every service x color: weight, version, health, and the last minute's rate, errors and p99.
    #[command(after_help = release::exit::HELP)]
    Status(release::StatusArgs),
    /// Smoke-check a color through the gateway, then move 100% of a service to it at once.
    #[command(after_help = release::exit::HELP)]
    Switch(release::SwitchArgs),
    /// Check a color's health and send its smoke requests through the gateway; changes nothing.
    #[command(after_help = release::exit::HELP)]
    Smoke(release::SmokeArgs),
    /// Restore the previous weights of a service at once (aborts a rollout).
    #[command(after_help = release::exit::HELP)]
    Rollback(release::ServiceArgs),
    /// Shift a service to a color in steps, judging each; roll back by itself on a failed gate.
    #[command(after_help = release::exit::HELP)]
    Rollout(release::RolloutArgs),
    /// Hold a rollout at its current step.
    #[command(after_help = release::exit::HELP)]
    Pause(release::ServiceArgs),
    /// Continue a paused rollout, or take over one whose controller stopped.
    #[command(after_help = release::exit::HELP)]
    Resume(release::ResumeArgs),
    /// Move a rollout's target to 100% now and end the rollout.
    #[command(after_help = release::exit::HELP)]
    Promote(release::ServiceArgs),
    /// End a rollout with its starting weights back (at once, or --gradual).
    #[command(after_help = release::exit::HELP)]
    Abort(release::AbortArgs),
    /// Back up every service's database (SQLite files, or PostgreSQL with
    /// pgBackRest after `backup setup`); list and verify backups.
    Backup(backup::BackupArgs),
    /// Restore the databases from a backup, to its time or to --target-time,
    /// with the platform stopped; then report what is inconsistent.
    Restore(backup::RestoreArgs),
    /// Past switches, rollouts and rollbacks of a service, with their outcome.
    #[command(after_help = release::exit::HELP)]
    History(release::HistoryArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Up(args) => failed_with_line(up::run(args).await),
        Command::Service { name } => run_service(&name).await,
        Command::Gateway => {
            ExitCode::from(u8::try_from(gateway::main_from_env().await).unwrap_or(1))
        }
        Command::Migrate(args) => release::exit::finish(release::migrate(args).await),
        Command::Releases(args) => failed_with_line(releases::run(args)),
        Command::Catalog(args) => failed_with_line(catalog::run(args).await),
        Command::Status(args) => release::exit::finish(release::status(args).await),
        Command::Switch(args) => release::exit::finish(release::switch(args).await),
        Command::Smoke(args) => release::exit::finish(release::smoke(args).await),
        Command::Rollback(args) => release::exit::finish(release::rollback(args).await),
        Command::Rollout(args) => release::exit::finish(release::rollout(args).await),
        Command::Pause(args) => release::exit::finish(release::simple(args, "pause").await),
        Command::Resume(args) => release::exit::finish(release::resume(args).await),
        Command::Promote(args) => release::exit::finish(release::simple(args, "promote").await),
        Command::Abort(args) => release::exit::finish(release::abort(args).await),
        Command::Backup(args) => failed_with_line(backup::backup(args).await),
        Command::Restore(args) => failed_with_line(backup::restore(args).await),
        Command::History(args) => release::exit::finish(release::history(args).await),
    }
}

/// Exit 0, or 1 after one line that says what went wrong.
fn failed_with_line(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

async fn run_service(name: &str) -> ExitCode {
    use platform_runtime::host::run;
    match name {
        "auth" => run("auth", auth::PORT, auth::start).await,
        "orders" => run("orders", orders::PORT, orders::start).await,
        "payments" => run("payments", payments::PORT, payments::start).await,
        "notifications" => run("notifications", notifications::PORT, notifications::start).await,
        other => {
            eprintln!(
                "error: unknown service {other:?}; expected auth, orders, payments or notifications"
            );
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

/// The data directory used when none is given.
fn default_data_dir() -> PathBuf {
    PathBuf::from(".data")
}
