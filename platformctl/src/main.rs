//! `platformctl`: runs the whole platform on one machine (`up`), and runs a
//! single service in the foreground (`service`), which is what `up` starts
//! for each service and color.
#![forbid(unsafe_code)]

mod ports;
mod supervisor;
mod up;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "platformctl", version, about = "Run and release the platform")]
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
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Up(args) => match up::run(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err:#}");
                ExitCode::from(1)
            }
        },
        Command::Service { name } => run_service(&name).await,
        Command::Gateway => {
            ExitCode::from(u8::try_from(gateway::main_from_env().await).unwrap_or(1))
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
